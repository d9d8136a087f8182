//! Durable IntentProof storage.
//!
//! - [`journal`]: append-only, fsync'd, CRC-checked segment files holding
//!   the exact signed event bytes. The source of truth: nothing acknowledged
//!   is ever lost, a torn tail is cut and kept aside on open.
//! - [`Store`]: the journal plus a sled index (events by id, chains by
//!   correlation, indexes by action, status and time, chain summaries), a
//!   Merkle log over journal order, and chain enforcement per
//!   (instance, correlation) as the reference ingest does it.
//! - [`verify`]: offline replay of a data directory: journal integrity,
//!   chains, signatures, Merkle root against the last signed checkpoint.
//!
//! What it does not do: it speaks no HTTP and starts no runtime; only one
//! process (the daemon) may open a store to write, because sled locks its
//! directory ([`Store::open_read_only`] reads a stopped daemon's store
//! without writing to it). The index is derived data: [`rebuild`]
//! recreates it from the journal.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checkpoint;
mod codec;
mod error;
/// The journal, from its own crate ([`intentproof_journal`]), under its
/// old path: `crate::journal::...` and `intentproof_store::journal::...`
/// name the same items as before the move.
pub use intentproof_journal as journal;
mod leaf_file;
pub mod meta;
mod store;
mod types;
pub mod verify;

pub use error::StoreError;
pub use meta::{EventMeta, MetaError, SignatureState};
pub use store::{ChainConflict, GENESIS_HASH, Store};
pub use types::{
    Appended, ChainSummary, DEFAULT_INDEX_CACHE_BYTES, EventPage, EventQuery, Incoming, IndexEntry,
    InstanceChain, MAX_PAGE, StoreOptions, StoredEvent, WriteHold, in_chain_order,
};
pub use verify::{VerifyReport, rebuild, verify};
