//! The IntentProof terminal UI (`intentproof tui`), a library the CLI calls.
//!
//! Four views:
//!
//! - **Chains**: one row per correlation (last activity, agent, intents,
//!   events, errors, flags, verified mark); sort, filter, search by id;
//! - **Chain detail**: the declared plan's steps next to the events that
//!   satisfied them (done, failed, missing), then the timeline;
//! - **Event detail**: the whole event, redacted paths marked, hashes,
//!   signature and inclusion proof status;
//! - **Findings**: every open flag, newest first; Enter opens its chain.
//!
//! Data comes through a [`Source`]: the daemon's query API
//! ([`HttpSource`]), or the store opened directly when no daemon runs
//! ([`LocalSource`]), or fixed data ([`MemorySource`]). Sources are called
//! on a worker thread, so a slow daemon never freezes the screen; lists are
//! virtualized (only visible rows are drawn) and kept as compact rows, and
//! a chain's events are fetched only when it is opened. New chains, events
//! and flags appear by polling.
//!
//! The state machine ([`App`]) does no I/O: keys queue [`Request`]s and
//! [`App::apply`] takes [`Reply`]s, so tests drive it with a
//! [`MemorySource`] and ratatui's `TestBackend`.
//!
//! What it does not do: decide anything about the record: findings and
//! plans are `intentproof-findings`', exports the daemon's
//! (`intentproof-gateway`) and verification the bundle verifier's
//! (`intentproof-bundle`); this crate only shows them. It never writes to the data dir: with no
//! daemon, or beside one with `--local`, it reads the store through
//! `Store::open_read_only`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod detail;
pub mod model;
pub mod run;
pub mod source;
pub mod ui;

pub use app::{App, View};
pub use run::{Options, run};
pub use source::{
    HttpSource, LocalSource, MemorySource, Reply, Request, Source, SourceError, serve,
};

/// Runs every request `app` has queued against `source`, inline, until
/// none is left (tests, benchmarks and scripted use).
pub fn settle(app: &mut App, source: &mut dyn Source) {
    while !app.outbox.is_empty() {
        let requests: Vec<Request> = app.outbox.drain(..).collect();
        for request in requests {
            let reply = serve(source, request);
            app.apply(reply);
        }
    }
}
