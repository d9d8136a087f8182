//! The daemon's HTTP API as types: every JSON body it answers (and the
//! bodies it takes), shared by the daemon's handlers, [`DaemonClient`]'s
//! typed calls and the terminal UI. A field renamed here is renamed for all
//! three, and a reader that no longer matches the daemon fails to compile
//! instead of reading a missing field as empty.
//!
//! Keys on the wire are in sorted order: the daemon serializes an answer
//! through `serde_json::Value`, whose objects keep their keys sorted, so a
//! field's place in a struct (or a `flatten`ed struct's) does not change a
//! byte of what is sent. That is also what the `json!` bodies before these
//! types gave, byte for byte.
//!
//! Deserializing is lenient where the daemon may grow: unknown fields are
//! ignored, so an older reader keeps working against a newer daemon.
//!
//! [`DaemonClient`]: crate::client::DaemonClient

use std::borrow::Cow;

use intentproof_core::checkpoint::Checkpoint;
use intentproof_policy::verification::PlanStep;
use intentproof_store::ChainSummary;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    /// The daemon's instance id: which data dir it serves.
    pub instance_id: String,
}

/// `POST /v1/events` (202 stored, 200 duplicate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// `stored` or `duplicate`.
    pub status: String,
    /// The event's id.
    pub event_id: String,
    /// Its journal sequence number (the first one stored, for a duplicate).
    pub seq: u64,
}

/// `POST /v1/events:batch`: counts and one result per non-blank line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAnswer {
    /// Events stored now.
    pub stored: usize,
    /// Events already stored.
    pub duplicates: usize,
    /// Lines refused.
    pub rejected: usize,
    /// Per line, in order.
    pub results: Vec<BatchLine>,
}

/// One line's result in a [`BatchAnswer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchLine {
    /// 1-based line number in the request body.
    pub line: usize,
    /// The status a single `POST /v1/events` would have answered.
    pub status: u16,
    /// The event's id, when the line parsed far enough to have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Its journal sequence number, when stored or a duplicate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// A refused line's stable code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A refused line's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl BatchLine {
    /// The result of line `line` with `status` and nothing else yet.
    pub fn new(line: usize, status: u16) -> BatchLine {
        BatchLine {
            line,
            status,
            event_id: None,
            seq: None,
            reason: None,
            error: None,
        }
    }
}

/// One stored event (`GET /v1/events`, the events of `/v1/chains/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBody {
    /// Journal sequence number (= Merkle leaf index).
    pub seq: u64,
    /// `verified`, `key_unknown` or `invalid`.
    pub signature: String,
    /// The signed v1 event, as stored.
    pub event: Value,
    /// The fleet view only (`serve --fleet`): the daemon that stored it,
    /// in whose journal `seq` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<String>,
}

/// `GET /v1/events`: one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsPage {
    /// The events, oldest first.
    pub events: Vec<EventBody>,
    /// Pass as `after` for the next page; `null` at the end.
    pub next_cursor: Option<u64>,
}

/// `GET /v1/events/{id}`: the event and its inclusion proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventWithInclusion {
    /// The event.
    #[serde(flatten)]
    pub body: EventBody,
    /// Its audit path.
    pub inclusion: Inclusion,
}

/// An event's audit path to a tree head: the latest signed checkpoint that
/// covers it or, when none does yet, the store's current (unsigned) root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inclusion {
    /// Leaf index (= the event's `seq`).
    pub leaf_index: u64,
    /// Size of the tree the proof is for.
    pub tree_size: u64,
    /// That tree's root, `sha256:<hex>`.
    pub root: String,
    /// The audit path, hex hashes, leaf to root.
    pub proof: Vec<String>,
    /// The signed checkpoint of that tree, `null` when none covers it yet.
    pub checkpoint: Option<Checkpoint>,
}

/// One chain: its summary, whether it verified, its gaps, and (in
/// `GET /v1/chains` rows) who made its calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// What the store knows of the correlation.
    #[serde(flatten)]
    pub summary: ChainSummary,
    /// No unknown key, no invalid signature, no gap.
    pub verified: bool,
    /// Positions missing from its instance chains.
    pub gaps: u64,
    /// The MCP client's name on its first event (empty when it has none);
    /// listing rows only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

impl Chain {
    /// The chain of `summary`, without an agent.
    pub fn of(summary: ChainSummary) -> Chain {
        Chain {
            verified: summary.verified(),
            gaps: summary.gaps(),
            summary,
            agent: None,
        }
    }
}

/// `GET /v1/chains`: one page, most recent first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainsPage {
    /// The rows.
    pub chains: Vec<Chain>,
    /// Chains in all.
    pub total: usize,
}

/// `GET /v1/chains/{id}`: the chain and every event of it, in journal
/// order. (The daemon writes it a chunk at a time, in this shape.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainWithEvents {
    /// The chain.
    pub chain: Chain,
    /// Its events.
    pub events: Vec<EventBody>,
}

/// `POST /v1/checkpoint`: a new signed tree head and the key to check it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointAnswer {
    /// The checkpoint (`null` while the store is empty).
    pub checkpoint: Option<Checkpoint>,
    /// The daemon's public key, base64.
    pub public_key: String,
}

/// `POST /v1/keys` body: trust `public_key` for `instance_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustKey {
    /// The instance.
    pub instance_id: String,
    /// Its Ed25519 public key, base64 or PEM.
    pub public_key: String,
}

/// `POST /v1/keys` answer: the instance's events re-checked with the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyTrusted {
    /// The instance.
    pub instance_id: String,
    /// Its stored events whose signature now verifies.
    pub events_verified: u64,
    /// Its stored events whose signature does not.
    pub events_invalid: u64,
}

/// `POST /v1/bundles` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequest {
    /// The correlation to export.
    pub correlation_id: String,
    /// `full` (the default), `auditor` or `counterparty`.
    #[serde(default = "full_profile")]
    pub profile: String,
}

fn full_profile() -> String {
    "full".into()
}

/// `POST /v1/plans` answer (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDeclared {
    /// The new plan's id.
    pub plan_id: String,
    /// Its correlation (assigned when the request named none).
    pub correlation_id: String,
    /// How many steps it has.
    pub steps: usize,
    /// The declaration event's id.
    pub event_id: String,
}

/// `POST /v1/plans/{id}/close` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanClosed {
    /// The plan.
    pub plan_id: String,
    /// Always `closed`.
    pub state: String,
    /// What its evaluation found.
    pub findings: Vec<FindingRow>,
}

/// One declared plan and where it stands (`GET /v1/plans` rows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRow {
    /// Plan id.
    pub plan_id: String,
    /// Its correlation id.
    pub correlation_id: String,
    /// What it meant to achieve.
    pub intent: String,
    /// Steps, as actions.
    pub steps: Vec<PlanStep>,
    /// When it was declared.
    pub declared_at: String,
    /// `open` or `closed`.
    pub state: Cow<'static, str>,
    /// Why it closed: `replaced`, `closed` (explicitly), `session_ended`
    /// (the MCP session that declared it ended) or `idle`.
    pub closed_by: Option<Cow<'static, str>>,
    /// For an open plan: when it will close by the idle timeout if nothing
    /// else happens in its correlation (RFC 3339).
    pub closes_at: Option<String>,
    /// Calls made under it.
    pub calls: usize,
    /// Flags raised (closed plans only).
    pub flags: usize,
}

/// One finding (`GET /v1/findings` rows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingRow {
    /// `incomplete_intent`, `failed_step`, `unplanned_call`,
    /// `incomplete_call`, `task_unfinished`, `policy_violation` or
    /// `tool_changed`.
    pub kind: Cow<'static, str>,
    /// The plan concerned (none for a call with no plan at all).
    pub plan_id: Option<String>,
    /// The plan's intent.
    pub intent: Option<String>,
    /// Correlation id.
    pub correlation_id: String,
    /// 0-based step index, for step flags.
    pub step_index: Option<usize>,
    /// The step's or the call's action.
    pub action: String,
    /// Events involved (absent: none).
    #[serde(default)]
    pub event_ids: Vec<String>,
    /// One sentence for people.
    pub message: String,
    /// When the finding became due (plan close, or the call's time).
    pub at: String,
}

/// `GET /v1/findings`: one page, or "unchanged" when the caller's `since`
/// is the current generation (then no rows and no `total`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingsPage {
    /// The rows.
    pub findings: Vec<FindingRow>,
    /// Paging: see [`Paging`].
    #[serde(flatten)]
    pub paging: Paging,
}

/// `GET /v1/plans`: as [`FindingsPage`], of plans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlansPage {
    /// The rows.
    pub plans: Vec<PlanRow>,
    /// Paging: see [`Paging`].
    #[serde(flatten)]
    pub paging: Paging,
}

/// A page of a listing that [`DaemonClient::get_all_pages`] follows.
///
/// [`DaemonClient::get_all_pages`]: crate::client::DaemonClient::get_all_pages
pub trait Paged: serde::de::DeserializeOwned {
    /// One row.
    type Row;
    /// The rows and where the page stands.
    fn into_rows(self) -> (Vec<Self::Row>, Paging);
}

impl Paged for FindingsPage {
    type Row = FindingRow;
    fn into_rows(self) -> (Vec<FindingRow>, Paging) {
        (self.findings, self.paging)
    }
}

impl Paged for PlansPage {
    type Row = PlanRow;
    fn into_rows(self) -> (Vec<PlanRow>, Paging) {
        (self.plans, self.paging)
    }
}

/// Where a page of findings or plans stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paging {
    /// Rows in all (absent when unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
    /// The findings state's generation these rows come from: pass it as
    /// `since` to hear "unchanged" until something changes.
    pub generation: u64,
    /// Where the next page starts (opaque), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Nothing changed since the caller's `since`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

/// Appends `value` to `out` as the daemon answers it: through
/// `serde_json::Value`, so every object's keys are in sorted order (see
/// the module docs). Fails only when `value` cannot be JSON (a map with
/// non-string keys): a bug.
pub fn write_answer<T: Serialize>(out: &mut Vec<u8>, value: &T) -> serde_json::Result<()> {
    serde_json::to_writer(out, &serde_json::to_value(value)?)
}

/// [`write_answer`] into a new buffer; `None` when it fails.
pub fn answer_bytes<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    write_answer(&mut out, value).ok().map(|()| out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_have_sorted_keys_whatever_the_field_order() {
        let row = PlansPage {
            plans: vec![],
            paging: Paging {
                total: Some(0),
                generation: 7,
                next_cursor: None,
                unchanged: false,
            },
        };
        assert_eq!(
            String::from_utf8(answer_bytes(&row).unwrap_or_default()).unwrap_or_default(),
            r#"{"generation":7,"plans":[],"total":0}"#
        );
        let unchanged = FindingsPage {
            findings: vec![],
            paging: Paging {
                total: None,
                generation: 3,
                next_cursor: None,
                unchanged: true,
            },
        };
        assert_eq!(
            serde_json::to_value(&unchanged).unwrap_or_default(),
            json!({"findings": [], "generation": 3, "unchanged": true})
        );
    }

    #[test]
    fn a_chain_row_is_its_summary_plus_verdict_and_agent() {
        let summary = ChainSummary {
            correlation_id: "c".into(),
            events: 2,
            ..ChainSummary::default()
        };
        let mut chain = Chain::of(summary.clone());
        chain.agent = Some("claude".into());
        let mut expected = serde_json::to_value(&summary).unwrap_or_default();
        expected["verified"] = json!(true);
        expected["gaps"] = json!(0);
        expected["agent"] = json!("claude");
        let value = serde_json::to_value(&chain).unwrap_or_default();
        assert_eq!(value, expected);
        let back: Chain = serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, chain);
    }
}

/// `POST /v1/tools/{server}/{tool}/approve` answer: the tool's new pin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolApproved {
    /// The server.
    pub server: String,
    /// The tool.
    pub tool: String,
    /// The digest it was pinned to before (`None`: a tool that appeared
    /// after pinning).
    pub old_digest: Option<String>,
    /// The digest it is pinned to now.
    pub new_digest: String,
    /// Who approved (the token's name).
    pub approved_by: String,
    /// The `intentproof.tools.approved` event.
    pub event_id: String,
}

/// One approval (`GET /v1/approvals` rows, `POST /v1/approvals/{id}`
/// answer): the held call's request and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRow {
    /// The request (arguments redacted).
    #[serde(flatten)]
    pub request: intentproof_policy::guard::approval::Request,
    /// `pending`, `approved`, `denied`, `expired` or `abandoned` (the
    /// asking gateway stopped waiting).
    pub state: String,
    /// Who decided (a token's name).
    #[serde(default)]
    pub decided_by: Option<String>,
    /// Why, when they said.
    #[serde(default)]
    pub reason: Option<String>,
    /// When it was decided, expired or abandoned.
    #[serde(default)]
    pub decided_at: Option<String>,
}

/// `GET /v1/approvals` answer: pending approvals (oldest first), then the
/// latest decided ones (newest first, at most 200).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalsPage {
    /// The rows.
    pub approvals: Vec<ApprovalRow>,
}

/// `POST /v1/approvals/{id}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDecision {
    /// `approve` or `deny`.
    pub decision: String,
    /// Why (required to deny).
    #[serde(default)]
    pub reason: Option<String>,
}
