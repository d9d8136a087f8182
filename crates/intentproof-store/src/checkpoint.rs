//! Signed checkpoints of the Merkle log: `(tree_size, root, time, key_id)`
//! signed by the daemon's key, appended to `<data-dir>/checkpoints.jsonl`.
//!
//! A checkpoint commits the daemon to the first `tree_size` journal records.
//! Deleting, editing or reordering any of them later changes the root, so
//! `intentproof store verify` finds it even when every checksum was fixed up.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use intentproof_core::canon::canonicalize;
use intentproof_core::merkle::{Hash, hex};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `schema` of a checkpoint line.
pub const CHECKPOINT_SCHEMA: &str = "intentproof.checkpoint.v1";
/// File name under the data directory.
pub const CHECKPOINTS_FILE: &str = "checkpoints.jsonl";

/// One signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Always [`CHECKPOINT_SCHEMA`].
    pub schema: String,
    /// Records covered: the first `tree_size` of the journal.
    pub tree_size: u64,
    /// `"sha256:<hex>"` RFC 6962 root of those records.
    pub root: String,
    /// When it was signed (RFC 3339 UTC, milliseconds).
    pub time: String,
    /// The signing key, `<instance_id>:k1`.
    pub key_id: String,
    /// Base64 Ed25519 signature over SHA-256(JCS(checkpoint minus signature)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

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
    /// The signature does not verify.
    #[error(
        "checkpoint of tree size {0} has a bad signature: it was not signed by this daemon's key, or was edited"
    )]
    BadSignature(u64),
}

fn digest(checkpoint: &Checkpoint) -> Result<[u8; 32], String> {
    let mut unsigned = checkpoint.clone();
    unsigned.signature = None;
    let value = serde_json::to_value(&unsigned).map_err(|e| e.to_string())?;
    let canonical = canonicalize(&value).map_err(|e| e.to_string())?;
    Ok(Sha256::digest(&canonical).into())
}

impl Checkpoint {
    /// Signs a checkpoint of `tree_size` records with root `root`.
    pub fn sign(tree_size: u64, root: &Hash, key: &SigningKey, key_id: &str) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            schema: CHECKPOINT_SCHEMA.to_owned(),
            tree_size,
            root: format!("sha256:{}", hex(root)),
            time: intentproof_core::now_rfc3339_millis(),
            key_id: key_id.to_owned(),
            signature: None,
        };
        // Strings and small integers only: canonicalization cannot fail.
        if let Ok(d) = digest(&checkpoint) {
            checkpoint.signature = Some(B64.encode(key.sign(&d).to_bytes()));
        }
        checkpoint
    }

    /// Checks the signature with the daemon's public key.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), CheckpointError> {
        let bad = || CheckpointError::BadSignature(self.tree_size);
        let sig = self.signature.as_deref().ok_or_else(bad)?;
        let bytes: [u8; 64] = B64
            .decode(sig)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        let d = digest(self).map_err(|_| bad())?;
        key.verify_strict(&d, &Signature::from_bytes(&bytes))
            .map_err(|_| bad())
    }
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
