//! Where the data comes from: the [`Source`] trait and its three
//! implementations.
//!
//! - [`HttpSource`]: the daemon's query API (`/v1/chains`, `/v1/findings`,
//!   `/v1/plans`, `/v1/events/{id}`, `POST /v1/bundles`), with the token
//!   from the data dir;
//! - [`LocalSource`]: the store itself, opened when no daemon answers. It
//!   only reads (opening does let the index catch up with the journal, as
//!   every open does); exporting needs the daemon, which signs checkpoints;
//! - [`MemorySource`]: fixed data, for tests, demos and benchmarks.
//!
//! The UI never calls a source on its own thread: [`serve`] runs one
//! [`Request`] and returns its [`Reply`], on a worker thread
//! ([`crate::run`]) or, in tests, inline.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ed25519_dalek::VerifyingKey;
use intentproof_api::client::{ClientError, DaemonClient};
use intentproof_api::datadir::{DataDir, KeyRing};
use intentproof_api::shapes::{chain_row, event_body, event_with_inclusion};
use intentproof_api::wire;
use intentproof_store::{Store, StoreOptions};
use serde_json::Value;

use crate::model::{ChainDetail, ChainRow, EventDetail, Finding, PlanInfo, VerifyOutcome};

/// Why a source could not answer. The text says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

impl SourceError {
    fn new(message: impl Into<String>) -> SourceError {
        SourceError(message.into())
    }
}

impl From<ClientError> for SourceError {
    fn from(e: ClientError) -> SourceError {
        SourceError(e.to_string())
    }
}

/// One page of chains, most recent activity first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainsPage {
    /// The rows of this page.
    pub rows: Vec<ChainRow>,
    /// How many chains there are in all.
    pub total: usize,
}

/// What the TUI reads. Every call may block (network, disk); the UI calls
/// it off its own thread.
pub trait Source: Send {
    /// Where the data comes from, for the status line.
    fn label(&self) -> String;
    /// Chains `offset..offset + limit`, most recent activity first.
    fn chains(&mut self, offset: usize, limit: usize) -> Result<ChainsPage, SourceError>;
    /// Every open finding, newest first; `None` when they did not change
    /// since this source last answered (the daemon says so in a few bytes,
    /// instead of sending them all again).
    fn findings(&mut self) -> Result<Option<Vec<Finding>>, SourceError>;
    /// One chain with its plans and events.
    fn chain(&mut self, correlation_id: &str) -> Result<ChainDetail, SourceError>;
    /// One event, whole, with its inclusion proof.
    fn event(&mut self, event_id: &str) -> Result<EventDetail, SourceError>;
    /// A proof bundle (`.proof.tar.zst` bytes) of one chain.
    fn export(&mut self, correlation_id: &str, profile: &str) -> Result<Vec<u8>, SourceError>;
    /// Verifies one chain.
    fn verify(&mut self, correlation_id: &str) -> Result<VerifyOutcome, SourceError>;
    /// Calls held for a person's approval, pending first (the daemon holds
    /// them: other sources have none).
    fn approvals(&mut self) -> Result<Vec<wire::ApprovalRow>, SourceError> {
        Err(SourceError::new(
            "approvals are held by the daemon: start the TUI while it runs (not --local)",
        ))
    }
    /// Approves or denies one (`reason` is required to deny).
    fn decide(
        &mut self,
        id: &str,
        approve: bool,
        reason: Option<String>,
    ) -> Result<wire::ApprovalRow, SourceError> {
        let _ = (id, approve, reason);
        Err(SourceError::new(
            "approvals are decided through the daemon: start the TUI while it runs (not --local)",
        ))
    }
}

/// Work for a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A page of chains (the initial load, page by page).
    Chains {
        /// First row.
        offset: usize,
        /// Rows.
        limit: usize,
    },
    /// The most recent chains, to merge (live updates).
    Poll {
        /// Rows.
        limit: usize,
    },
    /// Every finding.
    Findings,
    /// One chain's detail.
    Chain(String),
    /// One event's detail.
    Event(String),
    /// Export a chain's bundle to a file.
    Export {
        /// The chain.
        correlation_id: String,
        /// The export profile (`full`, `auditor`, `counterparty`).
        profile: String,
        /// Where to write it.
        path: PathBuf,
    },
    /// Verify a chain.
    Verify(String),
    /// The approvals.
    Approvals,
    /// Approve or deny one.
    Decide {
        /// The approval.
        id: String,
        /// Approve (else deny).
        approve: bool,
        /// Why.
        reason: Option<String>,
    },
}

/// A source's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A page of the initial load.
    Chains {
        /// Its offset.
        offset: usize,
        /// The page, or why there is none.
        page: Result<ChainsPage, SourceError>,
    },
    /// The most recent chains.
    Polled(Result<ChainsPage, SourceError>),
    /// Every finding (`None`: unchanged since the last answer).
    Findings(Result<Option<Vec<Finding>>, SourceError>),
    /// A chain's detail.
    Chain(String, Result<ChainDetail, SourceError>),
    /// An event's detail.
    Event(String, Result<EventDetail, SourceError>),
    /// A bundle was written (path, bytes).
    Exported(String, Result<(PathBuf, usize), SourceError>),
    /// A chain was verified.
    Verified(String, Result<VerifyOutcome, SourceError>),
    /// The approvals.
    Approvals(Result<Vec<wire::ApprovalRow>, SourceError>),
    /// An approval was decided (its id).
    Decided(String, Result<Box<wire::ApprovalRow>, SourceError>),
}

/// Runs one request against `source`.
pub fn serve(source: &mut dyn Source, request: Request) -> Reply {
    match request {
        Request::Chains { offset, limit } => Reply::Chains {
            offset,
            page: source.chains(offset, limit),
        },
        Request::Poll { limit } => Reply::Polled(source.chains(0, limit)),
        Request::Findings => Reply::Findings(source.findings()),
        Request::Chain(id) => {
            let detail = source.chain(&id);
            Reply::Chain(id, detail)
        }
        Request::Event(id) => {
            let detail = source.event(&id);
            Reply::Event(id, detail)
        }
        Request::Export {
            correlation_id,
            profile,
            path,
        } => {
            let written = source
                .export(&correlation_id, &profile)
                .and_then(|bytes| write_atomically(&path, &bytes).map(|()| (path, bytes.len())));
            Reply::Exported(correlation_id, written)
        }
        Request::Verify(id) => {
            let outcome = source.verify(&id);
            Reply::Verified(id, outcome)
        }
        Request::Approvals => Reply::Approvals(source.approvals()),
        Request::Decide {
            id,
            approve,
            reason,
        } => {
            let row = source.decide(&id, approve, reason).map(Box::new);
            Reply::Decided(id, row)
        }
    }
}

/// [`intentproof_bundle::write_file_atomically`], with the error this
/// module reports.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SourceError> {
    intentproof_bundle::write_file_atomically(path, bytes)
        .map_err(|e| SourceError::new(format!("cannot write {}: {e}", path.display())))
}

/// Verifies bundle bytes offline, trusting the data dir's daemon key.
fn verify_bundle(bytes: &[u8], daemon: Option<VerifyingKey>) -> VerifyOutcome {
    let options = intentproof_bundle::VerifyOptions {
        trusted_keys: daemon
            .into_iter()
            .map(|key| intentproof_bundle::TrustedKey { key_id: None, key })
            .collect(),
        ..Default::default()
    };
    let report = intentproof_bundle::verify(bytes, &options);
    // Only an attested bundle passes: without the daemon's key nothing
    // shows that no event was left out (the CLI's verdict, exit 3).
    let passed = report.attested();
    let s = &report.summary;
    let verdict = match report.verdict {
        intentproof_bundle::Verdict::Attested => "✓ pass",
        intentproof_bundle::Verdict::Unattested => "⚠ unattested",
        intentproof_bundle::Verdict::Fail => "✗ fail",
    };
    let headline = format!(
        "bundle verify: {verdict} {}: {} events, {} signatures, {} inclusion proofs, manifest signature {}",
        report.reason,
        s.events,
        s.events_signature_verified,
        s.inclusion_proofs_verified,
        s.manifest_signature,
    );
    let mut details: Vec<String> = report.findings.iter().map(|f| format!("- {f}")).collect();
    if let Some(detail) = &report.detail {
        details.push(detail.clone());
    }
    details.extend(report.warnings.iter().map(|w| format!("warning: {w}")));
    if let Some(why) = report.unattested_because() {
        details.push(format!(
            "not attested: {why}; events may have been left out"
        ));
    }
    VerifyOutcome {
        passed,
        headline,
        details,
    }
}

/// The daemon's query API.
pub struct HttpSource {
    client: DaemonClient,
    /// What it reads: `daemon`, or `fleet view`.
    kind: &'static str,
    daemon_key: Option<VerifyingKey>,
    /// The findings' generation this source last read.
    findings_seen: Option<u64>,
}

impl HttpSource {
    /// A client of the daemon at `base` (`http://127.0.0.1:9787`), with the
    /// read `token`; `daemon_key` (from the data dir) checks checkpoints
    /// and bundle manifests.
    pub fn new(
        base: &str,
        token: String,
        daemon_key: Option<VerifyingKey>,
    ) -> Result<HttpSource, SourceError> {
        Ok(HttpSource {
            client: DaemonClient::new(base, token, Some(Duration::from_secs(60)))?,
            kind: "daemon",
            daemon_key,
            findings_seen: None,
        })
    }

    /// The same source, labelled as the fleet view (`serve --fleet`).
    pub fn fleet(mut self) -> HttpSource {
        self.kind = "fleet view";
        self
    }

    /// Whether a daemon answers `/healthz` at `base` within `timeout`.
    pub fn probe(base: &str, timeout: Duration) -> bool {
        DaemonClient::probe(base, timeout)
    }
}

impl Source for HttpSource {
    fn label(&self) -> String {
        format!("{} {}", self.kind, self.client.base())
    }

    fn approvals(&mut self) -> Result<Vec<wire::ApprovalRow>, SourceError> {
        let page: wire::ApprovalsPage = self.client.get(&["v1", "approvals"], &[])?;
        Ok(page.approvals)
    }

    fn decide(
        &mut self,
        id: &str,
        approve: bool,
        reason: Option<String>,
    ) -> Result<wire::ApprovalRow, SourceError> {
        let body = wire::ApprovalDecision {
            decision: if approve { "approve" } else { "deny" }.to_owned(),
            reason,
        };
        Ok(self.client.post(&["v1", "approvals", id], Some(&body))?)
    }

    fn chains(&mut self, offset: usize, limit: usize) -> Result<ChainsPage, SourceError> {
        let page: wire::ChainsPage = self.client.get(
            &["v1", "chains"],
            &[("offset", offset.to_string()), ("limit", limit.to_string())],
        )?;
        Ok(ChainsPage {
            rows: page.chains.iter().map(ChainRow::from_wire).collect(),
            total: page.total,
        })
    }

    fn findings(&mut self) -> Result<Option<Vec<Finding>>, SourceError> {
        let Some((rows, generation)) = self.client.get_all_pages::<wire::FindingsPage>(
            &["v1", "findings"],
            &[],
            self.findings_seen,
        )?
        else {
            return Ok(None);
        };
        self.findings_seen = Some(generation);
        Ok(Some(rows.iter().filter_map(Finding::from_wire).collect()))
    }

    fn chain(&mut self, correlation_id: &str) -> Result<ChainDetail, SourceError> {
        let body: wire::ChainWithEvents =
            self.client.get(&["v1", "chains", correlation_id], &[])?;
        // This chain's plans only, not every plan of the store.
        let plans = self
            .client
            .get_all_pages::<wire::PlansPage>(
                &["v1", "plans"],
                &[("correlation_id", correlation_id.to_owned())],
                None,
            )?
            .map(|(rows, _)| rows.iter().map(PlanInfo::from_wire).collect())
            .unwrap_or_default();
        Ok(ChainDetail::from_wire(&body, plans))
    }

    fn event(&mut self, event_id: &str) -> Result<EventDetail, SourceError> {
        let body: wire::EventWithInclusion = self.client.get(&["v1", "events", event_id], &[])?;
        Ok(EventDetail::from_wire(body, self.daemon_key.as_ref()))
    }

    fn export(&mut self, correlation_id: &str, profile: &str) -> Result<Vec<u8>, SourceError> {
        let request = wire::ExportRequest {
            correlation_id: correlation_id.to_owned(),
            profile: profile.to_owned(),
        };
        Ok(self
            .client
            .post_bytes(&["v1", "bundles"], Some(&request), &mut |_| {})?)
    }

    fn verify(&mut self, correlation_id: &str) -> Result<VerifyOutcome, SourceError> {
        let bytes = self.export(correlation_id, "full")?;
        Ok(verify_bundle(&bytes, self.daemon_key))
    }
}

fn store_error(e: impl std::fmt::Display) -> SourceError {
    SourceError::new(format!("store: {e}"))
}

/// The store, opened by this process because no daemon answers.
pub struct LocalSource {
    dir: PathBuf,
    store: Store,
    keys: KeyRing,
    idle_timeout: Duration,
}

impl LocalSource {
    /// Opens the store of `data_dir`, read-only (beside a running daemon
    /// too: see [`Store::open_read_only`]).
    pub fn open(data_dir: &Path) -> Result<LocalSource, SourceError> {
        let dir = DataDir::new(data_dir);
        if !data_dir.join("journal").exists() {
            return Err(SourceError::new(format!(
                "{} has no store (no journal/): start `intentproof serve --data-dir {}` or pass the daemon's --data-dir",
                data_dir.display(),
                data_dir.display()
            )));
        }
        let keys = dir
            .key_ring()
            .map_err(|e| SourceError::new(e.to_string()))?;
        let store = Store::open_read_only(data_dir, StoreOptions::default(), &|i| keys.get(i))
            .map_err(|e| match e {
                intentproof_store::StoreError::Locked(_) => SourceError::new(format!(
                    "the store in {} is locked by a daemon that does not answer; pass its --server, or stop it",
                    data_dir.display()
                )),
                other => store_error(other),
            },
        )?;
        let idle_timeout =
            Duration::from_secs(intentproof_findings::DEFAULT_PLAN_IDLE_TIMEOUT_SECS);
        Ok(LocalSource {
            dir: data_dir.to_owned(),
            store,
            keys,
            idle_timeout,
        })
    }
}

impl Source for LocalSource {
    fn label(&self) -> String {
        format!("store {} (no daemon; read-only)", self.dir.display())
    }

    fn chains(&mut self, offset: usize, limit: usize) -> Result<ChainsPage, SourceError> {
        // Only this reader has the store open (no daemon writes it), so
        // pages read one at a time are consistent; `chains_page` decodes
        // just each summary's `last_at` to sort, and the page in full.
        let (total, summaries) = self.store.chains_page(offset, limit).map_err(store_error)?;
        let rows = summaries
            .into_iter()
            .map(|s| ChainRow::from_wire(&chain_row(&self.store, s)))
            .collect();
        Ok(ChainsPage { rows, total })
    }

    fn findings(&mut self) -> Result<Option<Vec<Finding>>, SourceError> {
        let (_, findings) = intentproof_findings::plans_and_findings(
            &self.store,
            self.idle_timeout,
            SystemTime::now(),
            &[],
        )
        .map_err(store_error)?;
        Ok(Some(
            findings.iter().filter_map(Finding::from_wire).collect(),
        ))
    }

    fn chain(&mut self, correlation_id: &str) -> Result<ChainDetail, SourceError> {
        let summary = self
            .store
            .chain_summary(correlation_id)
            .map_err(store_error)?
            .ok_or_else(|| SourceError::new(format!("no chain {correlation_id:?}")))?;
        let events = self.store.chain(correlation_id).map_err(store_error)?;
        let (plans, _) = intentproof_findings::plans_and_findings(
            &self.store,
            self.idle_timeout,
            SystemTime::now(),
            &[],
        )
        .map_err(store_error)?;
        let plans = plans
            .iter()
            .filter(|p| p.correlation_id == correlation_id)
            .map(PlanInfo::from_wire)
            .collect();
        let body = wire::ChainWithEvents {
            chain: wire::Chain::of(summary),
            events: events.into_iter().map(event_body).collect(),
        };
        Ok(ChainDetail::from_wire(&body, plans))
    }

    fn event(&mut self, event_id: &str) -> Result<EventDetail, SourceError> {
        let body = event_with_inclusion(&self.store, event_id)
            .map_err(store_error)?
            .ok_or_else(|| SourceError::new(format!("no event {event_id}")))?;
        Ok(EventDetail::from_wire(body, self.keys.daemon()))
    }

    fn export(&mut self, _correlation_id: &str, _profile: &str) -> Result<Vec<u8>, SourceError> {
        Err(SourceError::new(
            "exporting a bundle needs the daemon (it signs the checkpoint the proofs lead to): start `intentproof serve`, or use `intentproof export` then",
        ))
    }

    fn verify(&mut self, correlation_id: &str) -> Result<VerifyOutcome, SourceError> {
        let events: Vec<Value> = self
            .store
            .chain(correlation_id)
            .map_err(store_error)?
            .into_iter()
            .map(|e| e.event)
            .collect();
        let keys = &self.keys;
        let lookup = |key_id: &str| keys.get(key_id.split(':').next().unwrap_or(key_id));
        Ok(
            match intentproof_core::seal::verify_chain(&events, lookup) {
                Ok(summary) => VerifyOutcome {
                    passed: true,
                    headline: format!(
                        "chain verify: ✓ pass: {} events in {} hash chain(s), every signature and link checked (inclusion proofs need the daemon's bundle)",
                        summary.events, summary.chains
                    ),
                    details: Vec::new(),
                },
                Err(e) => VerifyOutcome {
                    passed: false,
                    headline: format!("chain verify: ✗ fail: {e}"),
                    details: Vec::new(),
                },
            },
        )
    }
}

/// Fixed data in memory.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    /// Chains, most recent first.
    pub chains: Vec<ChainRow>,
    /// Findings, newest first.
    pub findings: Vec<Finding>,
    /// Chain details by correlation id.
    pub details: Vec<ChainDetail>,
    /// Event details.
    pub events: Vec<EventDetail>,
    /// What `export` returns for every chain, when set.
    pub bundle: Option<Vec<u8>>,
    /// What `verify` returns for every chain, when set.
    pub verify: Option<VerifyOutcome>,
}

impl Source for MemorySource {
    fn label(&self) -> String {
        "memory".into()
    }

    fn chains(&mut self, offset: usize, limit: usize) -> Result<ChainsPage, SourceError> {
        Ok(ChainsPage {
            rows: self
                .chains
                .iter()
                .skip(offset)
                .take(limit)
                .cloned()
                .collect(),
            total: self.chains.len(),
        })
    }

    fn findings(&mut self) -> Result<Option<Vec<Finding>>, SourceError> {
        Ok(Some(self.findings.clone()))
    }

    fn chain(&mut self, correlation_id: &str) -> Result<ChainDetail, SourceError> {
        self.details
            .iter()
            .find(|d| &*d.row.correlation_id == correlation_id)
            .cloned()
            .ok_or_else(|| SourceError::new(format!("no chain {correlation_id:?}")))
    }

    fn event(&mut self, event_id: &str) -> Result<EventDetail, SourceError> {
        self.events
            .iter()
            .find(|e| e.event.get("event_id").and_then(Value::as_str) == Some(event_id))
            .cloned()
            .ok_or_else(|| SourceError::new(format!("no event {event_id}")))
    }

    fn export(&mut self, _correlation_id: &str, _profile: &str) -> Result<Vec<u8>, SourceError> {
        self.bundle
            .clone()
            .ok_or_else(|| SourceError::new("this source cannot export"))
    }

    fn verify(&mut self, _correlation_id: &str) -> Result<VerifyOutcome, SourceError> {
        self.verify
            .clone()
            .ok_or_else(|| SourceError::new("this source cannot verify"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_are_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.proof.tar.zst");
        write_atomically(&path, b"bundle").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"bundle");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no partial file is left behind");
        let missing = dir.path().join("no/such/dir/x.proof.tar.zst");
        assert!(write_atomically(&missing, b"x").is_err());
    }

    #[test]
    fn the_local_store_pages_chains_most_recent_first() {
        use intentproof_core::ExecutionEvent;
        use intentproof_core::keys::InstanceKey;
        use intentproof_core::seal::Sealer;
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreOptions::default(), &|_| None).unwrap();
            let sealer = Sealer::new(InstanceKey::from_seed("inst_tui_test", [4u8; 32]));
            for (i, correlation) in ["c-a", "c-b", "c-c"].iter().enumerate() {
                let event = ExecutionEvent::builder("intent", "a.b")
                    .correlation_id(*correlation)
                    .timing(
                        format!("2026-01-0{}T00:00:00.000Z", i + 1),
                        format!("2026-01-0{}T00:00:01.000Z", i + 1),
                        1000,
                    )
                    .build();
                let sealed = sealer.seal(&event).unwrap().event;
                let meta = intentproof_store::EventMeta::from_v1(&sealed, None).unwrap();
                let bytes = serde_json::to_vec(&sealed).unwrap();
                store
                    .append(vec![intentproof_store::Incoming::new(meta, bytes)])
                    .unwrap();
            }
        }
        let mut source = LocalSource::open(dir.path()).unwrap();
        let ids = |page: &ChainsPage| -> Vec<String> {
            page.rows
                .iter()
                .map(|r| r.correlation_id.to_string())
                .collect()
        };
        let first = source.chains(0, 2).unwrap();
        assert_eq!(
            (first.total, ids(&first)),
            (3, vec!["c-c".into(), "c-b".into()])
        );
        let rest = source.chains(2, 2).unwrap();
        assert_eq!((rest.total, ids(&rest)), (3, vec!["c-a".to_owned()]));
    }
}
