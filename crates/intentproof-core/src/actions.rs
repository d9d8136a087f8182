//! The names of the events the gateway records about calls and plans, as
//! opposed to the calls themselves: the vocabulary the MCP recorder writes
//! and the findings read, kept in one place so the two cannot drift apart.
//! (The plan declaration's action is the policy evaluator's
//! `PLAN_DECLARE_ACTION`, in `intentproof-policy`.)

/// Action of the marker fail-closed mode makes durable before a call is
/// forwarded.
pub const STARTED_ACTION: &str = "intentproof.call.started";
/// Action of the event that closes a plan (`intentproof plans --close`,
/// and the recorder when the session that declared the plan ends).
pub const PLAN_CLOSE_ACTION: &str = "intentproof.plan.close";
/// `inputs.reason` of a plan close recorded because its session ended.
pub const SESSION_ENDED: &str = "session_ended";
/// Action of the event that completes a task-augmented call.
pub const COMPLETED_ACTION: &str = "intentproof.call.completed";
/// `error.name` of a call the client never finished (it stopped after the
/// server asked for input).
pub const INCOMPLETE_CALL: &str = "IncompleteCall";
/// Action of the event that pins a server's tool definitions (its first
/// `tools/list`): output `{"server", "tools": [{"name", "digest"}]}`.
pub const TOOLS_PINNED_ACTION: &str = "intentproof.tools.pinned";
/// Action of the event that records tool definitions differing from their
/// pins: output `{"server", "on_tool_change", "tools": [{"name",
/// "old_digest", "new_digest", "fields"}]}`.
pub const TOOLS_CHANGED_ACTION: &str = "intentproof.tools.changed";
/// Action of the event that records an operator approving a changed tool
/// definition: inputs `{"server", "tool", "digest"}`, output `{"old_digest",
/// "new_digest"}`, attribute `intentproof.operator`.
pub const TOOLS_APPROVED_ACTION: &str = "intentproof.tools.approved";
/// Action of the event that records a call held for a person's approval.
pub const APPROVAL_REQUESTED_ACTION: &str = "intentproof.approval.requested";
/// Action of the event that records the decision on a held call
/// (approved, denied, or expired).
pub const APPROVAL_DECIDED_ACTION: &str = "intentproof.approval.decided";
