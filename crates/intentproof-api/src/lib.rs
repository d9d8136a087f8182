//! What a reader of the IntentProof daemon shares with it: the data
//! directory's layout ([`datadir`]), the daemon's default port, the
//! [`client`] of its HTTP API (used by the CLI's commands and the terminal
//! UI), and the [`shapes`] of the JSON it answers, which a reader with no
//! daemon builds from the store itself.
//!
//! What it does not do: serve HTTP, write the store or hold any of the
//! daemon's state. Nothing here depends on axum, so a reader (the TUI)
//! links no server.

pub mod client;
pub mod datadir;
pub mod shapes;

/// The default port: the reference SDKs' local ingest port.
pub const DEFAULT_PORT: u16 = 9787;

/// The export profiles the daemon can produce: `full` (events as stored),
/// `auditor` (no payloads) and `counterparty` (identity, chain, action,
/// status, timing). The schema's fourth, `minimal-claim`, is not produced.
pub const SUPPORTED_PROFILES: [&str; 3] = ["full", "auditor", "counterparty"];
