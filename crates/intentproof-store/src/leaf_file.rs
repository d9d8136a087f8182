//! `index/leaves`: the Merkle leaf hash of every journal record, 32 bytes
//! each, in journal order.
//!
//! Derived data like the rest of the index, but a flat file, not a sled
//! tree: the leaves are read all at once at open, and then one block of
//! 32 ([`LEAF_BLOCK_FLOOR`]) at a time for an inclusion proof (the writer keeps only
//! subtrees of that many leaves and up in memory: a [`BlockLog`]); a sled
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
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use intentproof_core::checkpoint::Checkpoint;
use intentproof_core::merkle::{self, BlockLog, Hash};

use crate::error::StoreError;
use crate::journal;

/// File name under the index directory.
pub(crate) const LEAVES_FILE: &str = "leaves";

/// The writer's Merkle log keeps subtrees of `2^LEAF_BLOCK_FLOOR` leaves
/// and up: 2 MiB at 1M records instead of 64 MiB (one leaf and one cached
/// node per record), for a 1 KiB read and 31 hashes per inclusion proof
/// (about 10 µs; a proof from memory took 4.5 µs).
pub(crate) const LEAF_BLOCK_FLOOR: u32 = 5;

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
    ) -> Result<(LeafFile, BlockLog), StoreError> {
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
        let (hashes, valid) = Self::leaves(&path, bytes, journal_dir, total, checkpoint)?;
        let mut log = BlockLog::new(LEAF_BLOCK_FLOOR);
        log.extend(hashes.iter().copied());
        // Cut a torn record, leaves of records the journal no longer has,
        // or (after a mismatch) everything.
        file.set_len(valid as u64 * 32).map_err(io("truncate"))?;
        file.write_all(hashes.get(valid..).unwrap_or_default().as_flattened())
            .map_err(io("write"))?;
        drop(hashes);
        let leaf_file = LeafFile {
            path,
            file,
            broken: false,
        };
        Ok((leaf_file, log))
    }

    /// The leaves as [`LeafFile::open`] finds them, writing nothing: the
    /// file's leaves where it has them (none when it is missing), the rest
    /// hashed from the journal. All kept in memory (floor 0: the file is
    /// not brought in line with the journal here, so it is never read
    /// again).
    pub(crate) fn read_only(
        index_dir: &Path,
        journal_dir: &Path,
        total: u64,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<BlockLog, StoreError> {
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
        let mut log = BlockLog::new(0);
        log.extend(Self::leaves(&path, bytes, journal_dir, total, checkpoint)?.0);
        Ok(log)
    }

    /// Fills `out` with the leaves from `first` on, from the file; fails if
    /// the file is broken (see [`LeafFile::append`]) or short.
    pub(crate) fn read_at(&self, first: usize, out: &mut [Hash]) -> std::io::Result<()> {
        if self.broken {
            return Err(std::io::Error::other(
                "the leaves file is not written since a failed write",
            ));
        }
        let mut bytes = vec![0u8; out.len() * 32];
        self.file.read_exact_at(&mut bytes, first as u64 * 32)?;
        for (leaf, chunk) in out.iter_mut().zip(bytes.chunks_exact(32)) {
            leaf.copy_from_slice(chunk);
        }
        Ok(())
    }

    /// From the file's `bytes`: every leaf, and how many of them the file
    /// holds correctly.
    fn leaves(
        path: &Path,
        bytes: Vec<u8>,
        journal_dir: &Path,
        total: u64,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(Vec<Hash>, usize), StoreError> {
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
        Self::hash_from(journal_dir, hashes.len() as u64, total, &mut hashes)?;
        let root_matches = |hashes: &[Hash]| {
            checkpoint.is_none_or(|cp| {
                cp.tree_size > total
                    || hashes.get(..cp.tree_size as usize).is_some_and(|covered| {
                        format!("sha256:{}", merkle::hex(&merkle::root(covered))) == cp.root
                    })
            })
        };
        let mut valid = kept;
        if !root_matches(&hashes) {
            tracing::warn!(
                path = %path.display(),
                "Merkle leaves disagree with the last checkpoint; hashing every journal record again"
            );
            hashes.clear();
            Self::hash_from(journal_dir, 0, total, &mut hashes)?;
            valid = 0;
        }
        Ok((hashes, valid))
    }

    /// Adds the leaves of journal records `from..` to `hashes` (which holds
    /// `from` leaves).
    /// Only records before `total`: a reader beside a running writer sees
    /// the journal grow while it hashes.
    fn hash_from(
        journal_dir: &Path,
        from: u64,
        total: u64,
        hashes: &mut Vec<Hash>,
    ) -> Result<(), StoreError> {
        journal::read_between(journal_dir, from, total, |_, _, payload| {
            hashes.push(merkle::leaf_hash(payload));
        })?;
        Ok(())
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
