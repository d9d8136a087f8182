//! `index/leaves`: the Merkle leaf hash of every journal record, 32 bytes
//! each, in journal order.
//!
//! Derived data like the rest of the index, but a flat file, not a sled
//! tree: the leaves are only ever read all at once (at open), and a sled
//! insert per event cost the writer about 5 µs, a tenth of its time per
//! event under load.
//!
//! Written without `fsync`: the journal is the durable copy. At open only
//! the leaves the last signed checkpoint covers are taken from the file
//! (after a power loss, the unsynced end of it may hold zeros); the rest
//! are hashed from the journal, and the result must give the checkpoint's
//! root, else every leaf is hashed again. A failed write empties the file
//! and stops writing it until the next open, which rebuilds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use intentproof_core::checkpoint::Checkpoint;
use intentproof_core::merkle::{self, Hash, MerkleLog};

use crate::error::StoreError;
use crate::journal;

/// File name under the index directory.
pub(crate) const LEAVES_FILE: &str = "leaves";

/// The open leaves file, positioned at its end.
pub(crate) struct LeafFile {
    path: PathBuf,
    file: File,
    /// A write failed: the file was emptied and is no longer written.
    broken: bool,
}

impl LeafFile {
    /// Opens (or creates) the leaves file of `index_dir` and brings it in
    /// line with the journal of `total` records in `journal_dir`. Returns
    /// the file and the leaves.
    pub(crate) fn open(
        index_dir: &Path,
        journal_dir: &Path,
        total: u64,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(LeafFile, MerkleLog), StoreError> {
        let path = index_dir.join(LEAVES_FILE);
        let io = |op: &'static str| {
            let path = path.clone();
            move |source| StoreError::Io { path, op, source }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("open"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read"))?;
        let (hashes, valid, log) = Self::leaves(&path, bytes, journal_dir, total, checkpoint)?;
        // Cut a torn record, leaves of records the journal no longer has,
        // or (after a mismatch) everything.
        file.set_len(valid as u64 * 32).map_err(io("truncate"))?;
        file.write_all(hashes.get(valid..).unwrap_or_default().as_flattened())
            .map_err(io("write"))?;
        let leaf_file = LeafFile {
            path,
            file,
            broken: false,
        };
        Ok((leaf_file, log))
    }

    /// The leaves as [`LeafFile::open`] finds them, writing nothing: the
    /// file's leaves where it has them (none when it is missing), the rest
    /// hashed from the journal.
    pub(crate) fn read_only(
        index_dir: &Path,
        journal_dir: &Path,
        total: u64,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<MerkleLog, StoreError> {
        let path = index_dir.join(LEAVES_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(StoreError::Io {
                    path,
                    op: "read",
                    source,
                });
            }
        };
        Ok(Self::leaves(&path, bytes, journal_dir, total, checkpoint)?.2)
    }

    /// From the file's `bytes`: every leaf, how many of them the file holds
    /// correctly, and the Merkle log.
    fn leaves(
        path: &Path,
        bytes: Vec<u8>,
        journal_dir: &Path,
        total: u64,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(Vec<Hash>, usize, MerkleLog), StoreError> {
        // Only what the last checkpoint vouches for (its root is checked
        // below); nothing without one.
        let covered = checkpoint.map_or(0, |cp| cp.tree_size).min(total);
        let kept = (bytes.len() / 32).min(usize::try_from(covered).unwrap_or(usize::MAX));
        let mut hashes: Vec<Hash> = bytes
            .chunks_exact(32)
            .take(kept)
            .filter_map(|h| Hash::try_from(h).ok())
            .collect();
        drop(bytes);
        let mut log = Self::hash_from(journal_dir, hashes.len() as u64, total, &mut hashes)?;
        let root_matches = |log: &MerkleLog| {
            checkpoint.is_none_or(|cp| {
                cp.tree_size > total
                    || format!("sha256:{}", merkle::hex(&log.root(cp.tree_size as usize)))
                        == cp.root
            })
        };
        let mut valid = kept;
        if !root_matches(&log) {
            tracing::warn!(
                path = %path.display(),
                "Merkle leaves disagree with the last checkpoint; hashing every journal record again"
            );
            hashes.clear();
            log = Self::hash_from(journal_dir, 0, total, &mut hashes)?;
            valid = 0;
        }
        Ok((hashes, valid, log))
    }

    /// Adds the leaves of journal records `from..` to `hashes` (which holds
    /// `from` leaves) and returns them all as a Merkle log.
    /// Only records before `total`: a reader beside a running writer sees
    /// the journal grow while it hashes.
    fn hash_from(
        journal_dir: &Path,
        from: u64,
        total: u64,
        hashes: &mut Vec<Hash>,
    ) -> Result<MerkleLog, StoreError> {
        journal::read_between(journal_dir, from, total, |_, _, payload| {
            hashes.push(merkle::leaf_hash(payload));
        })?;
        Ok(MerkleLog::from_leaves(hashes.iter().copied()))
    }

    /// Appends leaves (no fsync: see the module docs). A failure is
    /// logged, not returned: the records are in the journal already, and
    /// the next open rebuilds the file from it.
    pub(crate) fn append(&mut self, leaves: &[Hash]) {
        if self.broken {
            return;
        }
        if let Err(e) = self.file.write_all(leaves.as_flattened()) {
            tracing::error!(
                path = %self.path.display(),
                error = %e,
                "cannot write the Merkle leaves file; it is emptied and rebuilt from the journal at the next start"
            );
            let _ = self.file.set_len(0);
            self.broken = true;
        }
    }
}
