//! Approvals: calls held for a person (guard mode's `require_approval`).
//!
//! [`Approvals`] is the daemon's registry. A held call's request comes in
//! (from the daemon's own `/mcp/<name>` sessions through
//! [`DaemonApprover`], or from a stdio gateway through `POST
//! /v1/approvals`) and waits, in memory, until an operator decides it
//! (`POST /v1/approvals/{id}`, the CLI, the TUI), until it expires (a
//! denial), or until the asker stops waiting (abandoned). Operators see the
//! arguments redacted with the daemon's redaction policy; the binding
//! (arguments digest, policy fingerprint) is of the call as sent.
//!
//! [`RemoteApprover`] is the stdio gateway's side: it asks the daemon over
//! HTTP and, when the daemon cannot be reached, answers
//! [`Outcome::Unavailable`], so the call is refused (fail closed).
//!
//! What it does not do: record events (the MCP recorder records the
//! request and the decision in the call's chain, so they are sealed with
//! the call), or keep anything across a restart (a pending approval dies
//! with the daemon; its asker gets `unavailable`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use intentproof_api::wire::ApprovalRow;
use intentproof_core::{ExecutionEvent, format_rfc3339_millis};
use intentproof_mcp::approver::Approver;
use intentproof_policy::guard::approval::{Outcome, Request};
use intentproof_policy::redact::Redactor;
use tokio::sync::oneshot;

/// Approvals waiting at once; past it a new request is refused.
pub const MAX_PENDING: usize = 1_000;
/// Decided approvals kept for the listing.
pub const MAX_DECIDED: usize = 200;
/// Longest wait for one decision, whatever the request says.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

struct Waiting {
    row: ApprovalRow,
    answer: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Registry {
    pending: BTreeMap<String, Waiting>,
    decided: VecDeque<ApprovalRow>,
}

impl Registry {
    fn settle(&mut self, mut row: ApprovalRow, outcome: &Outcome) {
        let (state, by, reason, at) = match outcome {
            Outcome::Approved { by, reason, at } => ("approved", Some(by), reason.clone(), at),
            Outcome::Denied { by, reason, at } => ("denied", Some(by), reason.clone(), at),
            Outcome::Expired { at } => ("expired", None, None, at),
            Outcome::Unavailable { reason, at } => ("abandoned", None, Some(reason.clone()), at),
        };
        row.state = state.into();
        row.decided_by = by.cloned();
        row.reason = reason;
        row.decided_at = Some(at.clone());
        if self.decided.len() >= MAX_DECIDED {
            self.decided.pop_back();
        }
        self.decided.push_front(row);
    }
}

/// Why a decision was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideError {
    /// No approval has that id.
    NotFound(String),
    /// It was decided (or expired) already.
    Decided(String),
    /// The body is wrong.
    Invalid(String),
}

/// The daemon's approvals.
pub struct Approvals {
    registry: Mutex<Registry>,
    redactor: Arc<Redactor>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals").finish_non_exhaustive()
    }
}

fn now() -> String {
    format_rfc3339_millis(SystemTime::now())
}

/// Removes a pending approval its asker stopped waiting for.
struct Abandon<'a> {
    approvals: &'a Approvals,
    id: String,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        let mut registry = self.approvals.lock();
        if let Some(waiting) = registry.pending.remove(&self.id) {
            let outcome = Outcome::Unavailable {
                reason: "the gateway that asked stopped waiting".into(),
                at: now(),
            };
            registry.settle(waiting.row, &outcome);
        }
    }
}

impl Approvals {
    /// An empty registry; operators see arguments through `redactor`.
    pub fn new(redactor: Arc<Redactor>) -> Arc<Approvals> {
        Arc::new(Approvals {
            registry: Mutex::new(Registry::default()),
            redactor,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `request` until it is decided or expires.
    pub async fn ask(&self, request: Request) -> Outcome {
        let wait = intentproof_core::parse_rfc3339(&request.expires_at)
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .unwrap_or_default()
            .min(MAX_WAIT);
        let id = request.id.clone();
        let (answer, mut decided) = oneshot::channel();
        {
            let mut registry = self.lock();
            if registry.pending.len() >= MAX_PENDING {
                return Outcome::Unavailable {
                    reason: format!(
                        "{MAX_PENDING} approvals are pending already; decide some first"
                    ),
                    at: now(),
                };
            }
            if registry.pending.contains_key(&id)
                || registry.decided.iter().any(|r| r.request.id == id)
            {
                return Outcome::Unavailable {
                    reason: format!("approval {id} was asked before"),
                    at: now(),
                };
            }
            let mut shown = request;
            shown.arguments = self.redacted(&shown.action, shown.arguments);
            registry.pending.insert(
                id.clone(),
                Waiting {
                    row: ApprovalRow {
                        request: shown,
                        state: "pending".into(),
                        decided_by: None,
                        reason: None,
                        decided_at: None,
                    },
                    answer,
                },
            );
        }
        let abandon = Abandon {
            approvals: self,
            id: id.clone(),
        };
        let outcome = match tokio::time::timeout(wait, &mut decided).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Outcome::Unavailable {
                reason: "the daemon dropped the approval".into(),
                at: now(),
            },
            Err(_) => {
                let expired = {
                    let mut registry = self.lock();
                    registry.pending.remove(&id).map(|waiting| {
                        let outcome = Outcome::Expired { at: now() };
                        registry.settle(waiting.row, &outcome);
                        outcome
                    })
                };
                match expired {
                    Some(outcome) => outcome,
                    // Decided as it expired: the decision stands.
                    None => decided.await.unwrap_or(Outcome::Expired { at: now() }),
                }
            }
        };
        // Decided or expired: no longer pending, so the guard finds nothing.
        drop(abandon);
        outcome
    }

    /// The arguments as operators see them.
    fn redacted(&self, action: &str, arguments: serde_json::Value) -> serde_json::Value {
        let mut event = ExecutionEvent::builder("approval", action)
            .inputs(arguments)
            .build();
        self.redactor.redact_event(&mut event);
        event.inputs.unwrap_or(serde_json::Value::Null)
    }

    /// Pending approvals (oldest first), then decided ones (newest first).
    pub fn list(&self) -> Vec<ApprovalRow> {
        let registry = self.lock();
        let mut pending: Vec<ApprovalRow> =
            registry.pending.values().map(|w| w.row.clone()).collect();
        pending.sort_by(|a, b| a.request.requested_at.cmp(&b.request.requested_at));
        pending.extend(registry.decided.iter().cloned());
        pending
    }

    /// Decides approval `id`: `approve` or not, by `by`, for `reason`
    /// (required to deny).
    pub fn decide(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<String>,
    ) -> Result<ApprovalRow, DecideError> {
        let reason = reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        if !approve && reason.is_none() {
            return Err(DecideError::Invalid(
                "a denial needs a reason: the agent and the record are told why".into(),
            ));
        }
        if reason.as_ref().is_some_and(|r| r.len() > 1_000) {
            return Err(DecideError::Invalid(
                "the reason is longer than 1000 bytes".into(),
            ));
        }
        let mut registry = self.lock();
        let Some(waiting) = registry.pending.remove(id) else {
            return Err(match registry.decided.iter().find(|r| r.request.id == id) {
                Some(row) => DecideError::Decided(format!(
                    "approval {id} is {} already{}",
                    row.state,
                    row.decided_by
                        .as_deref()
                        .map_or_else(String::new, |b| format!(" (by {b})"))
                )),
                None => DecideError::NotFound(format!(
                    "no approval {id}: `intentproof approvals` lists the pending ones"
                )),
            });
        };
        let at = now();
        let outcome = if approve {
            Outcome::Approved {
                by: by.to_owned(),
                reason,
                at,
            }
        } else {
            Outcome::Denied {
                by: by.to_owned(),
                reason,
                at,
            }
        };
        registry.settle(waiting.row, &outcome);
        let row = registry.decided.front().cloned();
        // The asker may be gone (abandoned just now): the decision stands.
        let _ = waiting.answer.send(outcome);
        row.ok_or_else(|| DecideError::NotFound(id.to_owned()))
    }
}

/// The daemon's own sessions ask its registry.
#[derive(Debug, Clone)]
pub struct DaemonApprover(pub Arc<Approvals>);

impl Approver for DaemonApprover {
    fn ask(&self, request: Request) -> BoxFuture<'static, Outcome> {
        let approvals = Arc::clone(&self.0);
        Box::pin(async move { approvals.ask(request).await })
    }
}

/// A stdio gateway asks the daemon of its data dir (`POST /v1/approvals`,
/// which answers once the call is decided). The daemon's address and
/// token are read at each ask: the daemon may have started (or moved)
/// since the gateway did.
#[derive(Debug, Clone)]
pub struct RemoteApprover {
    http: reqwest::Client,
    data_dir: intentproof_api::datadir::DataDir,
    server: Option<String>,
    ingest_token: Option<String>,
}

impl RemoteApprover {
    /// Asks the daemon of `data_dir` (at `server` when given), with the
    /// data dir's token, else `ingest_token`.
    pub fn new(
        data_dir: intentproof_api::datadir::DataDir,
        server: Option<String>,
        ingest_token: Option<String>,
    ) -> Result<RemoteApprover, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(RemoteApprover {
            http,
            data_dir,
            server,
            ingest_token,
        })
    }
}

impl Approver for RemoteApprover {
    fn ask(&self, request: Request) -> BoxFuture<'static, Outcome> {
        let this = self.clone();
        Box::pin(async move {
            let wait = intentproof_core::parse_rfc3339(&request.expires_at)
                .and_then(|at| at.duration_since(SystemTime::now()).ok())
                .unwrap_or_default()
                .min(MAX_WAIT)
                + Duration::from_secs(10);
            let base = this.data_dir.daemon_base(this.server.clone());
            let unavailable = |why: String| Outcome::Unavailable {
                reason: format!("the daemon at {base} could not be asked: {why}"),
                at: now(),
            };
            let body = match serde_json::to_vec(&request) {
                Ok(body) => body,
                Err(e) => return unavailable(format!("the request could not be encoded: {e}")),
            };
            let mut post = this
                .http
                .post(format!("{}/v1/approvals", base.trim_end_matches('/')))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .timeout(wait);
            if let Some(token) = this.data_dir.token().ok().or(this.ingest_token.clone()) {
                post = post.bearer_auth(token.trim());
            }
            match post.send().await {
                Ok(answer) if answer.status().is_success() => match answer.bytes().await {
                    Ok(bytes) => serde_json::from_slice::<Outcome>(&bytes).unwrap_or_else(|e| {
                        unavailable(format!("its answer is not an outcome ({e})"))
                    }),
                    Err(e) => unavailable(e.to_string()),
                },
                Ok(answer) => {
                    let status = answer.status();
                    let body = answer.text().await.unwrap_or_default();
                    unavailable(format!(
                        "{status}: {}",
                        body.chars().take(300).collect::<String>()
                    ))
                }
                Err(e) => unavailable(e.to_string()),
            }
        })
    }
}
