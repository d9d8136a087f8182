//! The IntentProof daemon (`intentproof serve`).
//!
//! It owns one data directory: the store (journal + sled index), the
//! daemon's signing key, the read token and the trusted instance keys. It
//! serves, on loopback by default:
//!
//! - ingest: `POST /v1/events` (bare signed v1 events from the reference
//!   SDKs, or the seed SDK's `{"intentproof":"1","event":{...}}` envelope,
//!   which the daemon seals with its own key), out of web pages' reach
//!   ([`browser_guard`]);
//! - queries: `/v1/events`, `/v1/events/{id}`, `/v1/chains`,
//!   `/v1/chains/{id}`, `/v1/checkpoint`, `/metrics` (bearer token);
//! - admin: `POST /v1/keys` (trust an instance's public key);
//! - the HTTP API proxy: `/proxy/<route>/...` (the `intentproof-http-proxy`
//!   crate, fed through the [`recording`] thread);
//! - the MCP gateway over HTTP: `/mcp/<name>` (the `intentproof-mcp`
//!   crate, fed through the [`recording`] thread), and [`shipper`], the
//!   stdio gateway's way to the daemon;
//! - `/healthz`.
//!
//! Writes go through one group-commit writer thread ([`writer`]) so every
//! acknowledged event is fsync'd; exporters ([`pump`]) read the store by
//! durable cursor. Handlers are thin: they parse, check and hand over to
//! plain functions in [`ingest`] and the store.
//!
//! What it does not do: own the record format (`intentproof-core`),
//! storage (`intentproof-store`), the MCP protocol (`intentproof-mcp`),
//! the HTTP proxy (`intentproof-http-proxy`), plans and findings
//! (`intentproof-findings`) or what readers share with it (the data dir,
//! the client, the JSON shapes: `intentproof-api`). It is the only process
//! that opens the store to write.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod approvals;
pub mod browser_guard;
pub mod bulk;
pub mod config;
pub mod error;
pub mod export;
mod finding_delivery;
pub mod fleet_view;
pub mod ingest;
pub mod metrics;
pub mod otlp;
pub mod pump;
pub mod recording;
pub mod serve;
pub mod shipper;
pub mod state;
pub mod transparency;
pub mod webhook;
pub mod writer;

pub use config::Config;
pub use serve::{Daemon, serve};
