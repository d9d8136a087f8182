//! [`Recording`]: one MCP session's recorder (the gateway's
//! [`Recorder`]) and the [`IntentProofClient`] its events go through.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use intentproof::IntentProofClient;
use intentproof_core::{ExecutionEvent, format_rfc3339_millis};
use intentproof_mcp::approver::Approver;
use intentproof_mcp::recorder::{ClientVerdict, Held, Plan, Recorder, RecorderConfig};
use intentproof_policy::guard::approval::Outcome;
use serde_json::Value;

/// One MCP session as the gateway would record it: every message of the
/// session is shown to the gateway's own [`Recorder`] in its JSON-RPC form,
/// and every event the recorder completes is handed to an
/// [`IntentProofClient`] ([`IntentProofClient::emit`]: redacted, sealed and
/// delivered as that client is configured, durably with
/// [`Durability::Local`](intentproof::Durability::Local)).
///
/// Cheap to clone; clones share the session. When the last clone is
/// dropped the session ends ([`Recording::end`]), unless it already has.
///
/// Events are emitted in the order the recorder completes them, under the
/// session's lock, so a plan's close is always after the session's last
/// call in its chain.
#[derive(Clone)]
pub struct Recording {
    inner: Arc<Inner>,
}

struct Inner {
    session_id: String,
    server: String,
    plan_tool: Option<String>,
    recorder: Mutex<Recorder>,
    sink: IntentProofClient,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("session_id", &self.inner.session_id)
            .field("sink", &self.inner.sink)
            .finish_non_exhaustive()
    }
}

impl Recording {
    /// A new session (its id a fresh UUIDv7, as the gateway gives each
    /// session) recorded with `config` (actions `mcp.<config.server>.<tool>`,
    /// the plan tool, default intents) into `sink`.
    pub fn new(config: RecorderConfig, sink: IntentProofClient) -> Self {
        Self::with_session_id(config, intentproof_core::new_event_id(), sink)
    }

    /// [`Recording::new`] with a session id of the caller's (the attribute
    /// `mcp.session_id`, and the correlation of calls outside any plan).
    pub fn with_session_id(
        config: RecorderConfig,
        session_id: impl Into<String>,
        sink: IntentProofClient,
    ) -> Self {
        let session_id = session_id.into();
        Recording {
            inner: Arc::new(Inner {
                plan_tool: config.plan_tool.clone(),
                server: config.server.clone(),
                recorder: Mutex::new(Recorder::new(config, session_id.clone())),
                session_id,
                sink,
            }),
        }
    }

    /// The session's id.
    pub fn session_id(&self) -> &str {
        &self.inner.session_id
    }

    /// The plan tool's name (`None`: no plan tool).
    pub fn plan_tool(&self) -> Option<&str> {
        self.inner.plan_tool.as_deref()
    }

    /// The client events go through.
    pub fn sink(&self) -> &IntentProofClient {
        &self.inner.sink
    }

    /// The plan open in this session, if any.
    pub fn plan(&self) -> Option<Plan> {
        self.inner.lock().plan().cloned()
    }

    /// The correlation a call without its own would be recorded in: the open
    /// plan's, else the session's.
    pub fn correlation_id(&self) -> String {
        self.inner
            .lock()
            .plan()
            .map(|p| p.correlation_id.clone())
            .unwrap_or_else(|| self.inner.session_id.clone())
    }

    /// The intent the recorder gives a `tools/call` of `tool` under the open
    /// plan: the purpose of the step it is (`step`, the call's
    /// `_meta["intentproof/planStep"]`, when in range; else the first step
    /// naming the tool or its action), else the plan's intent. `None` with
    /// no plan or no such step (the recorder's rule, so a client can tell a
    /// recording server the same intent).
    pub fn step_intent(&self, tool: &str, step: Option<usize>) -> Option<String> {
        let recorder = self.inner.lock();
        let plan = recorder.plan()?;
        let action = format!("mcp.{}.{tool}", self.inner.server);
        let index = step.filter(|i| *i < plan.steps.len()).or_else(|| {
            plan.steps
                .iter()
                .position(|(t, _)| t == tool || *t == action)
        })?;
        let (_, purpose) = plan.steps.get(index)?;
        Some(purpose.clone().unwrap_or_else(|| plan.intent.clone()))
    }

    /// Ends the session ([`Recorder::on_session_end`]): calls left waiting
    /// for the client's input become `IncompleteCall` events and, once no
    /// call waits for the server, the open plan is closed
    /// (`intentproof.plan.close`, reason `session_ended`), so the daemon
    /// flags its steps that never ran (INCOMPLETE INTENT) at once.
    /// Idempotent.
    pub fn end(&self) {
        self.inner
            .record(|recorder, events| recorder.on_session_end(events));
    }

    /// The server went away before answering: calls under way are recorded
    /// as failed (`UpstreamGone`), then the session ends.
    pub(crate) fn upstream_gone(&self, reason: &str) {
        self.inner.record(|recorder, events| {
            let _ = recorder.on_upstream_gone(reason, events);
            recorder.on_session_end(events);
        });
    }

    /// Shows the recorder a message from the client.
    pub(crate) fn on_client(&self, message: &Value) -> ClientVerdict {
        self.inner
            .record(|recorder, events| recorder.on_client(message, events))
    }

    /// Shows the recorder a message from the server; the message as the
    /// client must get it, when the recorder changes it (the first
    /// `tools/list` page gains the plan tool).
    pub(crate) fn on_server(&self, message: &Value) -> Option<Value> {
        self.inner
            .record(|recorder, events| recorder.on_server(message, events))
    }

    /// Who a held call is asked of.
    pub(crate) fn approver(&self) -> Arc<dyn Approver> {
        self.inner.lock().approver()
    }

    /// What becomes of a held call now that `outcome` is known (recorded).
    pub(crate) fn resolve_hold(&self, id: &Value, outcome: &Outcome) -> Option<ClientVerdict> {
        self.inner
            .record(|recorder, events| recorder.resolve_hold(id, outcome, events))
    }

    /// Refuses a held call at once (fail closed): `why` says why nobody
    /// could be asked.
    pub(crate) fn refuse_held(&self, held: &Held, why: &str) -> Option<ClientVerdict> {
        let outcome = Outcome::Unavailable {
            reason: why.to_owned(),
            at: format_rfc3339_millis(std::time::SystemTime::now()),
        };
        self.resolve_hold(&held.id, &outcome)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Recorder> {
        // The recorder is only changed by its own methods, which leave it
        // consistent between calls: a panic elsewhere cannot half-update it.
        self.recorder.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the recorder and emits what it completed, in order,
    /// before the lock is released.
    fn record<R>(&self, f: impl FnOnce(&mut Recorder, &mut Vec<ExecutionEvent>) -> R) -> R {
        let mut recorder = self.lock();
        let mut events = Vec::new();
        let out = f(&mut recorder, &mut events);
        for event in &events {
            self.sink.emit(event);
        }
        out
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.record(|recorder, events| recorder.on_session_end(events));
    }
}
