//! What the daemon's handlers and tasks share: the store, the writer, the
//! sealer, keys, tokens and counters ([`AppState`]), and the two things
//! done with them outside any one route: recording the daemon's own events
//! and signing checkpoints.

use std::sync::Arc;

use intentproof_api::datadir::DataDir;
use intentproof_mcp::http::McpHttp;
use intentproof_store::Store;
use intentproof_store::checkpoint::{self as store_checkpoint, Checkpoint};

use crate::ingest::{self, DaemonSealer, TrustedKeys};
use crate::metrics::{Metrics, RejectReason};
use crate::writer::Writer;

/// Everything the handlers share.
pub struct AppState {
    /// The store (queries; appends go through `writer`).
    pub store: Arc<Store>,
    /// The group-commit writer.
    pub writer: Writer,
    /// The daemon's sealer for envelope events.
    pub sealer: DaemonSealer,
    /// Trusted instance keys.
    pub keys: TrustedKeys,
    /// Bearer token for reads and admin.
    pub token: String,
    /// Bearer token for ingest, when configured.
    pub ingest_token: Option<String>,
    /// Named tokens that may decide approvals (`[approvals] approvers`).
    pub approvers: std::collections::BTreeMap<String, String>,
    /// Calls held for a person's approval.
    pub approvals: Arc<crate::approvals::Approvals>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The data directory.
    pub data_dir: DataDir,
    /// Largest ingest body.
    pub max_body_bytes: usize,
    /// The daemon's signing key, for checkpoints.
    pub daemon_key: intentproof_core::keys::InstanceKey,
    /// Idle time after which a declared plan closes.
    pub plan_idle_timeout: std::time::Duration,
    /// Configured verification policies.
    pub policies: Arc<Vec<intentproof_policy::verification::Policy>>,
    /// Plans and findings, kept up to date by the writer.
    pub findings: Arc<intentproof_findings::live::LiveFindings>,
    /// The MCP gateway over HTTP (set once at start).
    pub mcp: std::sync::OnceLock<Arc<McpHttp>>,
    /// The HTTP API proxy (set once at start, when routes are configured).
    pub http: std::sync::OnceLock<Arc<intentproof_http_proxy::HttpProxy>>,
    /// Threads that check batch lines.
    pub bulk: crate::bulk::BulkPool,
    /// C2SP identities and the witness's state.
    pub transparency: Arc<crate::transparency::Transparency>,
    /// The latest JSON checkpoint (read from `checkpoints.jsonl` once at
    /// start); its lock also keeps two checkpoints from being signed at
    /// once.
    pub latest_checkpoint: std::sync::Mutex<Option<Checkpoint>>,
}

/// How long the daemon's own events wait for room in a full write queue
/// before they are given up (and counted as rejected).
const OWN_EVENTS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Records events the daemon made itself (MCP over HTTP, the HTTP API
/// proxy): seal each, then hand them to the writer as one commit, waiting
/// (bounded) for room in the write queue but not for the commit. Runs on
/// the recording thread ([`crate::recording`]).
pub fn record_own_events(state: &AppState, events: Vec<intentproof_core::ExecutionEvent>) {
    let mut sealed = Vec::with_capacity(events.len());
    for event in &events {
        match ingest::seal_incoming(event, &state.sealer) {
            Ok(incoming) => sealed.push(incoming),
            Err(e) => {
                tracing::error!(action = %event.action, error = %e, "a gateway event could not be sealed and was not recorded")
            }
        }
    }
    let count = sealed.len();
    if count > 0
        && state
            .writer
            .submit_all_waiting(sealed, OWN_EVENTS_PATIENCE)
            .is_err()
    {
        for _ in 0..count {
            state.metrics.rejected(RejectReason::Overloaded);
        }
        tracing::error!(
            count,
            "the write queue stayed full for {OWN_EVENTS_PATIENCE:?} (or the writer stopped): gateway events were not recorded; raise queue_capacity in the daemon config, or reduce the load"
        );
    }
}

impl AppState {
    /// Signs a checkpoint of the current tree if the last one is older, and
    /// returns the latest. Used by the API, the periodic task and shutdown.
    /// Each size gets both forms: the JSON checkpoint (`checkpoints.jsonl`,
    /// what bundles' `inclusion_proof.json` carries) and the C2SP note
    /// (`checkpoint-notes.jsonl`); a data directory from before notes gets
    /// the note of its latest size here.
    pub fn checkpoint_now(&self) -> Result<Option<Checkpoint>, String> {
        let mut latest = self
            .latest_checkpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = self.store.dir();
        let size = self.store.tree_size();
        if size == 0 {
            return Ok(latest.clone());
        }
        let note_current = self
            .transparency
            .latest_note()
            .is_some_and(|(noted, _)| noted == size);
        let json_current = latest.as_ref().is_some_and(|cp| cp.tree_size == size);
        if json_current && note_current {
            return Ok(latest.clone());
        }
        let root = self.store.root(size).map_err(|e| e.to_string())?;
        if !note_current {
            self.transparency.write_note(dir, size, &root)?;
        }
        if !json_current {
            let key = &self.daemon_key;
            let cp = Checkpoint::sign(
                size,
                &root,
                &intentproof_core::now_rfc3339_millis(),
                key.signing_key(),
                &key.key_id(),
            )?;
            store_checkpoint::append(dir, &cp).map_err(|e| e.to_string())?;
            *latest = Some(cp);
        }
        Ok(latest.clone())
    }
}
