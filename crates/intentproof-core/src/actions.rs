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
