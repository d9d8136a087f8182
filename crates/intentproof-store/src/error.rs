//! [`StoreError`]: what can go wrong with the store as a whole (the
//! journal, the index, its files, the lock). Why one event is refused is
//! not here: that is a chain conflict, an answer per event.
//!
//! It names only the journal's and the event facts' errors, so every other
//! module of the crate can return it without depending on the store.

use std::path::PathBuf;

use crate::journal::JournalError;
use crate::meta::MetaError;

/// Errors of the store (not of one event: see
/// [`ChainConflict`](crate::ChainConflict)).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The index failed.
    #[error(
        "index (sled) at {path}: {source}; if it is damaged, stop the daemon and run `intentproof store rebuild`"
    )]
    Index {
        /// The index directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// A journal record is not an event the index can hold.
    #[error("journal record {seq} is not a valid event: {source}; run `intentproof store verify`")]
    BadRecord {
        /// The record's sequence number.
        seq: u64,
        /// What is wrong.
        source: MetaError,
    },
    /// Another process holds the store (sled locks its directory).
    #[error(
        "the store at {0} is in use by another process (a daemon is already running on this data dir)"
    )]
    Locked(PathBuf),
    /// An earlier commit reached the journal but not the index. Appending
    /// more would index them around a hole (and miss re-sends of what is
    /// in it), so appends are refused until a restart re-indexes.
    #[error(
        "the index could not be updated after journal records were written ({0}); appends are refused until the daemon restarts and re-indexes the journal"
    )]
    Stalled(String),
    /// A file of the index (outside sled) failed.
    #[error(
        "index file {path}: {op}: {source}; check the disk (space, permissions): the file is rebuilt from the journal at the next start"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store was opened with
    /// [`Store::open_read_only`](crate::Store::open_read_only).
    #[error(
        "the store at {0} is open read-only (a viewer's copy); writes go through the daemon (`intentproof serve`)"
    )]
    ReadOnly(PathBuf),
    /// The index was written by a newer build.
    #[error(
        "the index was written by a newer intentproof (index format {found}; this build reads {supported}): run that newer intentproof, or `intentproof store rebuild` to index the journal with this one"
    )]
    NewerIndex {
        /// The format on disk.
        found: u64,
        /// The format this build writes.
        supported: u64,
    },
    /// Index data could not be decoded.
    #[error("index entry {0} is unreadable; stop the daemon and run `intentproof store rebuild`")]
    BadIndex(String),
}
