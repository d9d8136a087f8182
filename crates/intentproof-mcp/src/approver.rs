//! [`Approver`]: who a held call (guard mode's `require_approval`) is
//! asked of. The daemon's registry answers for its own `/mcp/<name>`
//! sessions; a stdio gateway asks the daemon over HTTP. The relay awaits
//! the outcome without holding up the session's other messages, then hands
//! it to [`crate::recorder::Recorder::resolve_hold`].

use futures_util::future::BoxFuture;
use intentproof_core::{AttributeValue, Attributes, ExecutionEvent, format_rfc3339_millis};
use intentproof_policy::guard::approval::{Outcome, Request};
use serde_json::json;

/// Asks a person about a held call; resolves when they decide, when the
/// request expires, or at once when nobody can be asked.
pub trait Approver: Send + Sync + std::fmt::Debug {
    /// The outcome of `request` (never an error: a failure to ask is
    /// [`Outcome::Unavailable`], so the call is refused, fail closed).
    fn ask(&self, request: Request) -> BoxFuture<'static, Outcome>;
}

/// No approver: every held call is refused, saying why.
#[derive(Debug, Clone)]
pub struct Nobody(pub String);

impl Approver for Nobody {
    fn ask(&self, _request: Request) -> BoxFuture<'static, Outcome> {
        let reason = self.0.clone();
        Box::pin(async move {
            Outcome::Unavailable {
                reason,
                at: intentproof_core::format_rfc3339_millis(std::time::SystemTime::now()),
            }
        })
    }
}

/// How often a client that asked for progress hears that its call still
/// waits for a decision (the first time at once).
pub const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// Asks `approver` about `request`; meanwhile, when the client sent a
/// progress `token`, `notify` gets a `notifications/progress` at once and
/// every [`PROGRESS_EVERY`] (the relay sends it to the client).
pub async fn ask_with_progress(
    approver: &dyn Approver,
    request: &Request,
    token: Option<&serde_json::Value>,
    mut notify: impl FnMut(serde_json::Value),
) -> Outcome {
    let ask = approver.ask(request.clone());
    tokio::pin!(ask);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let mut count = 0u64;
    loop {
        tokio::select! {
            outcome = &mut ask => return outcome,
            _ = tick.tick(), if token.is_some() => {
                count += 1;
                if let Some(token) = token {
                    notify(waiting_notice(token, request, count));
                }
            }
        }
    }
}

/// The `notifications/progress` telling a client its call waits for a
/// person (`count`: 1, 2, ...).
pub fn waiting_notice(
    token: &serde_json::Value,
    request: &Request,
    count: u64,
) -> serde_json::Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": {
            "progressToken": token,
            "progress": count,
            "message": format!(
                "waiting for a person to approve this call (approval {}, expires at {})",
                request.id, request.expires_at
            ),
        },
    })
}

/// Attribute of a held call's events: the approval's id.
pub const APPROVAL_ID_ATTRIBUTE: &str = "intentproof.approval.id";
/// Attribute of an approved call's event: who approved it.
pub const APPROVED_BY_ATTRIBUTE: &str = "intentproof.approval.by";

/// The `intentproof.approval.requested` event of a held call, in its
/// correlation; `attributes` are the caller's (server, session, ...).
pub fn requested_event(request: &Request, attributes: Attributes) -> ExecutionEvent {
    approval_event(
        request,
        intentproof_core::actions::APPROVAL_REQUESTED_ACTION,
        attributes,
        json!({
            "approval_id": request.id,
            "agent": request.agent,
            "server": request.server,
            "tool": request.tool,
            "arguments_digest": request.arguments_digest,
            "policy_fingerprint": request.policy_fingerprint,
            "rule": request.rule,
            "expires_at": request.expires_at,
        }),
        None,
    )
}

/// The `intentproof.approval.decided` event: output = the outcome.
pub fn decided_event(
    request: &Request,
    outcome: &Outcome,
    attributes: Attributes,
) -> ExecutionEvent {
    approval_event(
        request,
        intentproof_core::actions::APPROVAL_DECIDED_ACTION,
        attributes,
        json!({
            "approval_id": request.id,
            "arguments_digest": request.arguments_digest,
            "policy_fingerprint": request.policy_fingerprint,
        }),
        Some(serde_json::to_value(outcome).unwrap_or(serde_json::Value::Null)),
    )
}

fn approval_event(
    request: &Request,
    action: &str,
    mut attributes: Attributes,
    inputs: serde_json::Value,
    output: Option<serde_json::Value>,
) -> ExecutionEvent {
    let now = format_rfc3339_millis(std::time::SystemTime::now());
    attributes.insert(
        APPROVAL_ID_ATTRIBUTE.into(),
        AttributeValue::String(request.id.clone()),
    );
    attributes.insert(
        "intentproof.call.action".into(),
        AttributeValue::String(request.action.clone()),
    );
    let mut builder = ExecutionEvent::builder(request.intent.clone(), action)
        .correlation_id(request.correlation_id.clone())
        .inputs(inputs)
        .attributes(attributes)
        .timing(now.clone(), now, 0);
    if let Some(output) = output {
        builder = builder.output(output);
    }
    builder.build()
}

/// Why a held call of `action` was refused, for the agent and its event;
/// `None` for an approval. `request`: the approval asked, when one was.
pub fn refusal_message(
    action: &str,
    request: Option<&Request>,
    outcome: &Outcome,
) -> Option<String> {
    let approval = request.map_or_else(String::new, |r| format!("approval {} ", r.id));
    let because = |reason: &Option<String>| {
        reason
            .as_deref()
            .map_or_else(String::new, |r| format!(": {r}"))
    };
    Some(match outcome {
        Outcome::Approved { .. } => return None,
        Outcome::Denied { by, reason, .. } => {
            format!(
                "{action} was refused: {approval}was denied by {by}{}",
                because(reason)
            )
        }
        Outcome::Expired { .. } => format!(
            "{action} was refused: nobody decided {approval}before it expired at {}; ask an operator to watch `intentproof approvals` (or the TUI's Approvals view) and call again",
            request.map_or("", |r| r.expires_at.as_str())
        ),
        Outcome::Unavailable { reason, .. } => format!(
            "{action} needs a person's approval and none could be asked ({reason}); it was refused (fail closed)"
        ),
    })
}
