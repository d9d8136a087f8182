//! The fleet: several daemons' signed records in one PostgreSQL database.
//!
//! Each daemon stays local first: its journal, Merkle log and signed
//! checkpoints are the record, acknowledged when fsync'd on its own disk.
//! This crate copies that record into PostgreSQL for one view over many
//! daemons, and checks there that nobody rewrote it.
//!
//! - [`schema`]: the tables (schema `intentproof`), created and upgraded by
//!   numbered migrations at start.
//! - [`replicate`]: the pump that copies one daemon's journal records (the
//!   signed bytes as stored, plus the facts the index keeps) and its
//!   checkpoints, exactly once per `(daemon, seq)`, by a cursor kept in the
//!   same transaction as the rows it moves.
//! - [`verify`]: `intentproof fleet verify`, which recomputes every
//!   daemon's Merkle roots from the rows and checks them against the
//!   checkpoints that daemon signed.
//! - [`testing`]: a throwaway PostgreSQL server for tests and benchmarks.
//!
//! PostgreSQL off this machine is reached over TLS only (verified; see
//! [`config`]); a URL to another host without `sslmode=require` is refused.
//!
//! - [`view`]: the fleet view's reads (`serve --fleet`): events, chains
//!   merged over daemons, the records findings are computed from, the
//!   daemons' checkpoints and leaf hashes that fleet bundles prove with.
//!
//! What it does not do: re-check the events' own signatures (each daemon
//! did at ingest, against keys PostgreSQL does not hold).

pub mod config;
pub mod replicate;
pub mod schema;
pub mod testing;
pub mod verify;
pub mod view;

/// The PostgreSQL client the fleet view's reads take.
pub use tokio_postgres;

pub use config::{FleetConfig, FleetConfigError};
pub use replicate::{ReplicationStatus, Replicator};
pub use verify::{FleetReport, status, verify_fleet};

/// Why a fleet operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] FleetConfigError),
    /// PostgreSQL refused or the connection broke (the message carries
    /// every cause: "error performing TLS handshake: invalid peer
    /// certificate: UnknownIssuer", not just the first line).
    #[error("PostgreSQL: {}", with_causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The local store could not be read.
    #[error("local store: {0}")]
    Store(#[from] intentproof_store::StoreError),
    /// The local checkpoints could not be read.
    #[error("local checkpoints: {0}")]
    Checkpoint(#[from] intentproof_store::checkpoint::CheckpointError),
    /// The database holds a newer schema than this build knows.
    #[error(
        "the fleet database is at schema version {found}, newer than this build's {known}; upgrade intentproof"
    )]
    SchemaTooNew {
        /// Version in the database.
        found: i32,
        /// Newest version this build knows.
        known: i32,
    },
    /// What the daemon holds and what PostgreSQL holds disagree: the
    /// daemon's history changed after it was replicated (or another
    /// daemon uses its name).
    #[error("daemon {daemon}: {detail}")]
    Diverged {
        /// The daemon's name.
        daemon: String,
        /// What disagrees.
        detail: String,
    },
}

/// An error and each of its sources, joined by `: `.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}
