//! Signed checkpoints of the Merkle log: `(tree_size, root, time, key_id)`
//! signed by the daemon's key, appended to `<data-dir>/checkpoints.jsonl`.
//!
//! A checkpoint commits the daemon to the first `tree_size` journal records.
//! Deleting, editing or reordering any of them later changes the root, so
//! `intentproof store verify` finds it even when every checksum was fixed up.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

pub use intentproof_core::checkpoint::{CHECKPOINT_SCHEMA, Checkpoint};

/// File name of the checkpoint log under the data directory.
pub const CHECKPOINTS_FILE: &str = "checkpoints.jsonl";

/// Why a checkpoint is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("checkpoints {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A line is not a checkpoint.
    #[error(
        "checkpoints {path} line {line}: not a checkpoint ({reason}); the file was edited by hand"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Appends `checkpoint` to the data directory's checkpoint file and fsyncs.
pub fn append(data_dir: &Path, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
    let path = data_dir.join(CHECKPOINTS_FILE);
    let io = |source| CheckpointError::Io {
        path: path.clone(),
        source,
    };
    let mut line = serde_json::to_vec(checkpoint).map_err(|e| io(io::Error::other(e)))?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    file.write_all(&line).map_err(io)?;
    file.sync_data().map_err(io)
}

/// The last checkpoint written, if any.
pub fn latest(data_dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let path = data_dir.join(CHECKPOINTS_FILE);
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CheckpointError::Io { path, source }),
    };
    let mut last = None;
    for (i, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| CheckpointError::Io {
            path: path.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let checkpoint: Checkpoint =
            serde_json::from_str(&line).map_err(|e| CheckpointError::Malformed {
                path: path.clone(),
                line: i + 1,
                reason: e.to_string(),
            })?;
        last = Some(checkpoint);
    }
    Ok(last)
}
