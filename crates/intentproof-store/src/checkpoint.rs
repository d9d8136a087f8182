//! Signed checkpoints of the Merkle log: `(tree_size, root, time, key_id)`
//! signed by the daemon's key, appended to `<data-dir>/checkpoints.jsonl`.
//!
//! A checkpoint commits the daemon to the first `tree_size` journal records.
//! Deleting, editing or reordering any of them later changes the root, so
//! `intentproof store verify` finds it even when every checksum was fixed up.
//!
//! Each checkpoint is also kept in the C2SP form others read
//! ([`intentproof_core::tlog`]): `<data-dir>/checkpoint-notes.jsonl`, one
//! `{"size": N, "note": "<signed note>"}` a line, the note signed by the
//! daemon key under the log's origin; and the witnesses' cosignatures of
//! them in `<data-dir>/cosignatures.jsonl`, one `{"size": N, "line": "—
//! <witness> <base64>"}` a line. Both files are append-only and fsync'd per
//! line, like `checkpoints.jsonl`. A data directory from before them has
//! only `checkpoints.jsonl`; the daemon signs the note of its latest size
//! at the next checkpoint (`checkpoint_now`), and older sizes keep their
//! JSON checkpoint only.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use intentproof_core::tlog::note::{Note, NoteSignature};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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
    append_line(&data_dir.join(CHECKPOINTS_FILE), checkpoint)
}

/// Appends one JSON line to `path` and fsyncs.
fn append_line<T: Serialize>(path: &Path, value: &T) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    };
    let mut line = serde_json::to_vec(value).map_err(|e| io(io::Error::other(e)))?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    file.write_all(&line).map_err(io)?;
    file.sync_data().map_err(io)
}

/// The last checkpoint written, if any.
pub fn latest(data_dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let mut last = None;
    for_each_line(
        &data_dir.join(CHECKPOINTS_FILE),
        |checkpoint: Checkpoint| last = Some(checkpoint),
    )?;
    Ok(last)
}

/// Every checkpoint written with a tree size above `size`, in order.
pub fn after(data_dir: &Path, size: u64) -> Result<Vec<Checkpoint>, CheckpointError> {
    let mut out = Vec::new();
    for_each_line(&data_dir.join(CHECKPOINTS_FILE), |c: Checkpoint| {
        if c.tree_size > size {
            out.push(c);
        }
    })?;
    Ok(out)
}

/// The C2SP notes written with a size above `size`, by size (the last
/// written for a size when there are several).
pub fn notes_after(data_dir: &Path, size: u64) -> Result<BTreeMap<u64, String>, CheckpointError> {
    let mut out = BTreeMap::new();
    for_each_line(&data_dir.join(NOTES_FILE), |line: NoteLine| {
        if line.size > size {
            out.insert(line.size, line.note);
        }
    })?;
    Ok(out)
}

/// Calls `f` with each line of the JSONL file at `path` (none if it does
/// not exist), in order.
fn for_each_line<T: DeserializeOwned>(
    path: &Path,
    mut f: impl FnMut(T),
) -> Result<(), CheckpointError> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CheckpointError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    for (i, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(&line).map_err(|e| CheckpointError::Malformed {
            path: path.to_owned(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        f(value);
    }
    Ok(())
}

/// File name of the C2SP checkpoint notes under the data directory.
pub const NOTES_FILE: &str = "checkpoint-notes.jsonl";
/// File name of the witnesses' cosignatures under the data directory.
pub const COSIGNATURES_FILE: &str = "cosignatures.jsonl";

/// One line of [`NOTES_FILE`]: a checkpoint note signed by the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteLine {
    /// The tree size the note commits to.
    pub size: u64,
    /// The signed note, as served.
    pub note: String,
}

/// One line of [`COSIGNATURES_FILE`]: a witness's cosignature line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignatureLine {
    /// The tree size of the note it cosigns.
    pub size: u64,
    /// The signature line (`— <name> <base64>`), checked before it was kept.
    pub line: String,
}

/// Appends the note of size `size`.
pub fn append_note(data_dir: &Path, size: u64, note: &Note) -> Result<(), CheckpointError> {
    append_line(
        &data_dir.join(NOTES_FILE),
        &NoteLine {
            size,
            note: note.to_string(),
        },
    )
}

/// Appends a witness's (verified) cosignature of the note of size `size`.
pub fn append_cosignature(
    data_dir: &Path,
    size: u64,
    line: &NoteSignature,
) -> Result<(), CheckpointError> {
    append_line(
        &data_dir.join(COSIGNATURES_FILE),
        &CosignatureLine {
            size,
            line: line.to_string(),
        },
    )
}

/// The note of the largest size that satisfies `wanted(size, cosigners)`
/// (`cosigners`: the names that cosigned it), with every cosignature line
/// kept for it appended. `None` when no note does.
pub fn cosigned_note(
    data_dir: &Path,
    wanted: impl Fn(u64, &[String]) -> bool,
) -> Result<Option<Note>, CheckpointError> {
    let mut cosignatures: BTreeMap<u64, Vec<NoteSignature>> = BTreeMap::new();
    let path = data_dir.join(COSIGNATURES_FILE);
    let mut bad = None;
    for_each_line(
        &path,
        |line: CosignatureLine| match NoteSignature::parse_line(&line.line) {
            Ok(signature) => cosignatures.entry(line.size).or_default().push(signature),
            Err(e) => bad = Some(e.to_string()),
        },
    )?;
    if let Some(reason) = bad {
        return Err(CheckpointError::Malformed {
            path,
            line: 0,
            reason,
        });
    }
    let mut best: Option<NoteLine> = None;
    for_each_line(&data_dir.join(NOTES_FILE), |line: NoteLine| {
        let names: Vec<String> = cosignatures
            .get(&line.size)
            .map(|sigs| sigs.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default();
        if wanted(line.size, &names) && best.as_ref().is_none_or(|b| line.size >= b.size) {
            best = Some(line);
        }
    })?;
    let Some(best) = best else {
        return Ok(None);
    };
    let path = data_dir.join(NOTES_FILE);
    let mut note = Note::parse(&best.note).map_err(|e| CheckpointError::Malformed {
        path,
        line: 0,
        reason: e.to_string(),
    })?;
    for signature in cosignatures.remove(&best.size).unwrap_or_default() {
        note.push(signature);
    }
    Ok(Some(note))
}
