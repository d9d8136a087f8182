//! What the views show: compact rows, parsed once from the daemon's JSON
//! (or the store's types), and the plan-versus-events derivation of the
//! chain detail.
//!
//! Rows keep only what a view draws (boxed strings, small integers), so
//! 100,000 chains stay a few tens of megabytes; whole events are fetched
//! on demand, one chain or one event at a time.

use std::collections::HashMap;

use intentproof_api::wire;
use intentproof_findings::{CALL_EVENT_ID_ATTRIBUTE, TASK_ID_ATTRIBUTE, is_call};
use serde_json::Value;

/// One kind of flag a chain can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlagKind {
    /// A declared step never succeeded.
    IncompleteIntent,
    /// A call that no declared step covers.
    UnplannedCall,
    /// A declared step that only failed.
    FailedStep,
    /// A configured verification policy failed.
    PolicyViolation,
    /// A gap in the hash chain, or a signature that is invalid or unverifiable.
    Integrity,
    /// An MCP call the client never finished (it stopped after the server
    /// asked for input, or never answered a server request).
    IncompleteCall,
    /// An MCP task whose outcome was never seen.
    TaskUnfinished,
    /// A tool whose definition changed since it was pinned (guard mode).
    ToolChanged,
}

impl FlagKind {
    /// Every kind, in column order.
    pub const ALL: [FlagKind; 8] = [
        FlagKind::IncompleteIntent,
        FlagKind::UnplannedCall,
        FlagKind::FailedStep,
        FlagKind::PolicyViolation,
        FlagKind::Integrity,
        FlagKind::IncompleteCall,
        FlagKind::TaskUnfinished,
        FlagKind::ToolChanged,
    ];

    /// The kind of a finding's `kind` string (`incomplete_intent`, ...).
    pub fn from_finding(kind: &str) -> Option<FlagKind> {
        match kind {
            "incomplete_intent" => Some(FlagKind::IncompleteIntent),
            "unplanned_call" => Some(FlagKind::UnplannedCall),
            "failed_step" => Some(FlagKind::FailedStep),
            "policy_violation" => Some(FlagKind::PolicyViolation),
            "incomplete_call" => Some(FlagKind::IncompleteCall),
            "task_unfinished" => Some(FlagKind::TaskUnfinished),
            "tool_changed" => Some(FlagKind::ToolChanged),
            _ => None,
        }
    }

    /// One letter for the compact flag column.
    pub fn code(self) -> char {
        match self {
            FlagKind::IncompleteIntent => 'I',
            FlagKind::UnplannedCall => 'U',
            FlagKind::FailedStep => 'F',
            FlagKind::PolicyViolation => 'P',
            FlagKind::Integrity => 'C',
            FlagKind::IncompleteCall => 'N',
            FlagKind::TaskUnfinished => 'T',
            FlagKind::ToolChanged => 'D',
        }
    }

    /// Words for people.
    pub fn words(self) -> &'static str {
        match self {
            FlagKind::IncompleteIntent => "incomplete intent",
            FlagKind::UnplannedCall => "unplanned call",
            FlagKind::FailedStep => "failed step",
            FlagKind::PolicyViolation => "policy violation",
            FlagKind::Integrity => "chain/signature problem",
            FlagKind::IncompleteCall => "incomplete call",
            FlagKind::TaskUnfinished => "task unfinished",
            FlagKind::ToolChanged => "tool changed",
        }
    }

    /// The name used in filters (`flag:incomplete`).
    pub fn filter_name(self) -> &'static str {
        match self {
            FlagKind::IncompleteIntent => "incomplete",
            FlagKind::UnplannedCall => "unplanned",
            FlagKind::FailedStep => "failed",
            FlagKind::PolicyViolation => "policy",
            FlagKind::Integrity => "integrity",
            FlagKind::IncompleteCall => "call",
            FlagKind::TaskUnfinished => "task",
            FlagKind::ToolChanged => "tool",
        }
    }

    fn bit(self) -> u8 {
        match self {
            FlagKind::IncompleteIntent => 1,
            FlagKind::UnplannedCall => 2,
            FlagKind::FailedStep => 4,
            FlagKind::PolicyViolation => 8,
            FlagKind::Integrity => 16,
            FlagKind::IncompleteCall => 32,
            FlagKind::TaskUnfinished => 64,
            FlagKind::ToolChanged => 128,
        }
    }
}

/// A set of [`FlagKind`]s, one byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FlagSet(u8);

impl FlagSet {
    /// Adds a kind.
    pub fn insert(&mut self, kind: FlagKind) {
        self.0 |= kind.bit();
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: FlagKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// No flag at all.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many kinds are set.
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// Both sets.
    pub fn union(self, other: FlagSet) -> FlagSet {
        FlagSet(self.0 | other.0)
    }

    /// The kinds set, in column order.
    pub fn kinds(self) -> impl Iterator<Item = FlagKind> {
        FlagKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }

    /// Letters of the kinds set (`IU`), empty when none.
    pub fn codes(self) -> String {
        self.kinds().map(FlagKind::code).collect()
    }

    /// Words of the kinds set, comma separated.
    pub fn words(self) -> String {
        self.kinds()
            .map(FlagKind::words)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Integrity facts of a chain, from the daemon's chain summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Integrity {
    /// Positions missing from an instance's hash chain.
    pub gaps: u32,
    /// Events signed by an instance with no trusted key.
    pub key_unknown: u32,
    /// Events whose signature does not verify.
    pub invalid_signatures: u32,
}

impl Integrity {
    /// No gap, every signature verified.
    pub fn verified(self) -> bool {
        self.gaps == 0 && self.key_unknown == 0 && self.invalid_signatures == 0
    }

    /// `✓` verified, `✗` a gap or a bad signature, `?` only unknown keys.
    pub fn mark(self) -> &'static str {
        if self.gaps > 0 || self.invalid_signatures > 0 {
            "✗"
        } else if self.key_unknown > 0 {
            "?"
        } else {
            "✓"
        }
    }

    /// Words: `verified`, or what is wrong.
    pub fn describe(self) -> String {
        if self.verified() {
            return "verified (chain complete, every signature checked)".into();
        }
        let mut why = Vec::new();
        if self.gaps > 0 {
            why.push(format!("{} missing position(s)", self.gaps));
        }
        if self.invalid_signatures > 0 {
            why.push(format!("{} invalid signature(s)", self.invalid_signatures));
        }
        if self.key_unknown > 0 {
            why.push(format!(
                "{} event(s) from an untrusted key",
                self.key_unknown
            ));
        }
        format!("NOT verified: {}", why.join(", "))
    }
}

/// One row of the chains view: one correlation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainRow {
    /// The correlation id.
    pub correlation_id: Box<str>,
    /// Earliest event start (RFC 3339 UTC).
    pub first_at: Box<str>,
    /// Latest event completion (RFC 3339 UTC).
    pub last_at: Box<str>,
    /// The agent or client that made the calls (MCP client name), or empty.
    pub agent: Box<str>,
    /// Distinct intents, `; ` separated.
    pub intents: Box<str>,
    /// Events stored.
    pub events: u32,
    /// Events with status `error`.
    pub errors: u32,
    /// Chain and signature facts.
    pub integrity: Integrity,
    /// Open flags (findings, plus [`FlagKind::Integrity`]).
    pub flags: FlagSet,
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The strings of array `key` of `value` (non-strings skipped; none when
/// `value` or the array is missing).
pub(crate) fn strs_of<'a>(value: Option<&'a Value>, key: &str) -> Vec<&'a str> {
    value
        .and_then(|v| v.get(key))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

impl ChainRow {
    /// A row from one element of `GET /v1/chains` (or `chain` of
    /// `GET /v1/chains/{id}`).
    pub fn from_wire(chain: &wire::Chain) -> ChainRow {
        let summary = &chain.summary;
        let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let integrity = Integrity {
            gaps: count(chain.gaps),
            key_unknown: count(summary.key_unknown),
            invalid_signatures: count(summary.invalid_signatures),
        };
        let mut flags = FlagSet::default();
        if !integrity.verified() {
            flags.insert(FlagKind::Integrity);
        }
        ChainRow {
            correlation_id: summary.correlation_id.as_str().into(),
            first_at: summary.first_at.as_str().into(),
            last_at: summary.last_at.as_str().into(),
            agent: chain.agent.as_deref().unwrap_or_default().into(),
            intents: summary.intents.join("; ").into(),
            events: count(summary.events),
            errors: count(summary.errors),
            integrity,
            flags,
        }
    }

    /// The flags a row has from its own facts (integrity) plus `findings`.
    pub fn with_findings(&self, findings: FlagSet) -> FlagSet {
        let mut own = FlagSet::default();
        if !self.integrity.verified() {
            own.insert(FlagKind::Integrity);
        }
        own.union(findings)
    }
}

/// One finding (an open flag) of the findings view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What kind of flag.
    pub kind: FlagKind,
    /// The correlation it is in.
    pub correlation_id: String,
    /// The plan concerned, if any.
    pub plan_id: Option<String>,
    /// 0-based step index, for step flags.
    pub step_index: Option<usize>,
    /// The step's or the call's action (the rule id for policies).
    pub action: String,
    /// Events involved.
    pub event_ids: Vec<String>,
    /// One sentence for people.
    pub message: String,
    /// When it became due (RFC 3339 UTC).
    pub at: String,
}

impl Finding {
    /// A finding from one element of `GET /v1/findings`; `None` for a kind
    /// this UI does not know.
    pub fn from_wire(row: &wire::FindingRow) -> Option<Finding> {
        Some(Finding {
            kind: FlagKind::from_finding(&row.kind)?,
            correlation_id: row.correlation_id.clone(),
            plan_id: row.plan_id.clone(),
            step_index: row.step_index,
            action: row.action.clone(),
            event_ids: row.event_ids.clone(),
            message: row.message.clone(),
            at: row.at.clone(),
        })
    }
}

/// One step of a declared plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepInfo {
    /// The action that satisfies it (`mcp.<server>.<tool>`).
    pub action: String,
    /// Why the agent meant to call it.
    pub purpose: String,
}

/// A declared plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInfo {
    /// Plan id.
    pub plan_id: String,
    /// Its correlation.
    pub correlation_id: String,
    /// What it meant to achieve.
    pub intent: String,
    /// Its steps.
    pub steps: Vec<StepInfo>,
    /// When it was declared.
    pub declared_at: String,
    /// Still open (not yet evaluated).
    pub open: bool,
    /// Why it closed: `replaced`, `closed` or `idle`.
    pub closed_by: Option<String>,
}

impl PlanInfo {
    /// A plan from one element of `GET /v1/plans`.
    pub fn from_wire(row: &wire::PlanRow) -> PlanInfo {
        PlanInfo {
            plan_id: row.plan_id.clone(),
            correlation_id: row.correlation_id.clone(),
            intent: row.intent.clone(),
            steps: row
                .steps
                .iter()
                .map(|s| StepInfo {
                    action: s.action.clone(),
                    purpose: s.purpose.clone(),
                })
                .collect(),
            declared_at: row.declared_at.clone(),
            open: row.state == "open",
            closed_by: row.closed_by.as_deref().map(str::to_owned),
        }
    }
}

/// Action of a plan declaration event.
pub const PLAN_DECLARE: &str = "intentproof.plan.declare";
/// Action of an explicit plan close.
pub const PLAN_CLOSE: &str = "intentproof.plan.close";
/// Action of a fail-closed "started" marker (not a call).
pub const CALL_STARTED: &str = "intentproof.call.started";
/// Action of a task call's completion event (not a call: its call's
/// outcome).
pub const CALL_COMPLETED: &str = intentproof_findings::COMPLETED_ACTION;

/// One event of a chain's timeline (compact).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventRow {
    /// Event id.
    pub id: Box<str>,
    /// Journal sequence number.
    pub seq: u64,
    /// Signing instance.
    pub instance: Box<str>,
    /// Position in the instance's chain.
    pub position: u64,
    /// Action.
    pub action: Box<str>,
    /// Intent.
    pub intent: Box<str>,
    /// Status `ok` (else `error`).
    pub ok: bool,
    /// Start (RFC 3339 UTC).
    pub started_at: Box<str>,
    /// Completion (RFC 3339 UTC).
    pub completed_at: Box<str>,
    /// Duration.
    pub duration_ms: u64,
    /// Signature state: `verified`, `key_unknown` or `invalid`.
    pub signature: Box<str>,
    /// The plan a declaration event declared.
    pub declares: Option<Box<str>>,
    /// The plan a close event closed.
    pub closes: Option<Box<str>>,
    /// The call a task completion event completes (its event id).
    pub completes: Option<Box<str>>,
    /// A call answered by a task handle (it has `mcp.task.id`).
    pub task: bool,
    /// A call the guard refused: it never reached its server.
    pub refused: bool,
    /// An approval record: `held` (the request), else the decision
    /// (`approved`, `denied`, `expired`, `unavailable`).
    pub approval: Option<Box<str>>,
}

impl EventRow {
    /// A row from one stored event; `None` when it has no event id.
    pub fn from_wire(row: &wire::EventBody) -> Option<EventRow> {
        let event = &row.event;
        let action = str_of(event, "action");
        let plan_ref = |pointer: &str| {
            event
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(Box::<str>::from)
        };
        let attribute = |name: &str| {
            event
                .get("attributes")
                .and_then(|a| a.get(name))
                .and_then(Value::as_str)
        };
        Some(EventRow {
            id: event.get("event_id")?.as_str()?.into(),
            seq: row.seq,
            instance: str_of(event, "instance_id").into(),
            position: event
                .get("chain_position")
                .and_then(Value::as_u64)
                .unwrap_or_default(),
            action: action.into(),
            intent: str_of(event, "intent").into(),
            ok: str_of(event, "status") == "ok",
            started_at: str_of(event, "started_at").into(),
            completed_at: str_of(event, "completed_at").into(),
            duration_ms: event
                .get("duration_ms")
                .and_then(Value::as_u64)
                .unwrap_or_default(),
            signature: row.signature.as_str().into(),
            declares: if action == PLAN_DECLARE && str_of(event, "status") == "ok" {
                plan_ref("/output/plan_id")
            } else {
                None
            },
            closes: if action == PLAN_CLOSE {
                plan_ref("/inputs/plan_id")
            } else {
                None
            },
            completes: if action == CALL_COMPLETED {
                attribute(CALL_EVENT_ID_ATTRIBUTE).map(Box::<str>::from)
            } else {
                None
            },
            task: attribute(TASK_ID_ATTRIBUTE).is_some(),
            refused: event
                .get("attributes")
                .and_then(Value::as_object)
                .is_some_and(intentproof_policy::guard::refused),
            approval: match action {
                intentproof_core::actions::APPROVAL_REQUESTED_ACTION => Some("held".into()),
                intentproof_core::actions::APPROVAL_DECIDED_ACTION => {
                    Some(plan_ref("/output/decision").unwrap_or_else(|| "?".into()))
                }
                _ => None,
            },
        })
    }
}

/// A chain opened in the detail view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainDetail {
    /// Its summary row.
    pub row: ChainRow,
    /// MCP client name and version (from the events' attributes).
    pub client: Option<String>,
    /// MCP server name.
    pub server: Option<String>,
    /// Its declared plans, oldest first.
    pub plans: Vec<PlanInfo>,
    /// Its events, in journal order.
    pub events: Vec<EventRow>,
}

impl ChainDetail {
    /// The detail from `GET /v1/chains/{id}` and the chain's plans.
    pub fn from_wire(body: &wire::ChainWithEvents, mut plans: Vec<PlanInfo>) -> ChainDetail {
        let row = ChainRow::from_wire(&body.chain);
        let mut events: Vec<EventRow> =
            body.events.iter().filter_map(EventRow::from_wire).collect();
        events.sort_by_key(|e| e.seq);
        let attr = |name: &str| {
            body.events.iter().find_map(|e| {
                e.event
                    .get("attributes")
                    .and_then(|a| a.get(name))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        };
        let client = attr("mcp.client.name").map(|name| match attr("mcp.client.version") {
            Some(version) => format!("{name} {version}"),
            None => name,
        });
        plans.retain(|p| *p.correlation_id == *row.correlation_id);
        plans.sort_by(|a, b| a.declared_at.cmp(&b.declared_at));
        ChainDetail {
            client,
            server: attr("mcp.server"),
            row,
            plans,
            events,
        }
    }
}

/// Where a declared step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    /// A call of its action succeeded.
    Done,
    /// A call of its action succeeded, but only by starting a task whose
    /// outcome was never seen (a `task unfinished` finding once the plan
    /// closes; while it is open, the task may still be running).
    Unfinished,
    /// Its action was called, and every call failed (a task call counts
    /// as its task ended).
    Failed,
    /// The plan closed and its action was never called.
    Missing,
    /// The plan is still open and its action was not called yet.
    Pending,
}

impl StepState {
    /// Symbol and word: `✓ done`, `… unfinished`, `✗ failed`,
    /// `! missing`, `… pending`.
    pub fn label(self) -> &'static str {
        match self {
            StepState::Done => "✓ done",
            StepState::Unfinished => "… unfinished",
            StepState::Failed => "✗ failed",
            StepState::Missing => "! missing",
            StepState::Pending => "… pending",
        }
    }
}

/// One step next to the events that satisfied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepView {
    /// The step.
    pub step: StepInfo,
    /// Where it stands.
    pub state: StepState,
    /// Indexes (into [`ChainDetail::events`]) of its calls.
    pub events: Vec<usize>,
    /// One per call in `events`: the index of its task completion event,
    /// if it has one.
    pub completions: Vec<Option<usize>>,
}

/// A plan with its steps resolved against the chain's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanView {
    /// The plan.
    pub plan: PlanInfo,
    /// Its steps.
    pub steps: Vec<StepView>,
    /// Indexes of calls made under it that no step covers.
    pub unplanned: Vec<usize>,
}

/// Resolves every plan of `detail` against its events, as the daemon's
/// findings do (`intentproof_findings`): a plan's calls are the
/// events after its declaration up to the next declaration (or its explicit
/// close) that are calls (`findings::is_call`: not declarations, closes,
/// fail-closed markers, task completions or server requests). A task call
/// ends as its completion event says; the `k`-th step naming an action
/// needs `k` calls of it that did not fail (`classify_plan`). A step only a
/// task never seen finished satisfies is [`StepState::Unfinished`].
pub fn plan_views(detail: &ChainDetail) -> Vec<PlanView> {
    let events = &detail.events;
    // Task completions by their call's event id (the last one counts).
    let completions: HashMap<&str, usize> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| Some((e.completes.as_deref()?, i)))
        .collect();
    let completion_of = |i: usize| completions.get(&*events[i].id).copied();
    // A call failed when it (or, for a task call, its task) ended in error.
    let failed = |i: usize| !completion_of(i).map_or(events[i].ok, |c| events[c].ok);
    let unfinished = |i: usize| events[i].task && completion_of(i).is_none();
    detail
        .plans
        .iter()
        .map(|plan| {
            let start = events
                .iter()
                .position(|e| e.declares.as_deref() == Some(plan.plan_id.as_str()));
            let calls: Vec<usize> = match start {
                Some(start) => (start + 1..events.len())
                    .take_while(|&i| {
                        events[i].declares.is_none()
                            && events[i].closes.as_deref() != Some(plan.plan_id.as_str())
                    })
                    .filter(|&i| is_call(&events[i].action) && !events[i].refused)
                    .collect(),
                None => Vec::new(),
            };
            let mut nth: HashMap<&str, usize> = HashMap::new();
            let steps = plan
                .steps
                .iter()
                .map(|step| {
                    let k = nth.entry(step.action.as_str()).or_default();
                    *k += 1;
                    let k = *k;
                    let mine: Vec<usize> = calls
                        .iter()
                        .copied()
                        .filter(|&i| *events[i].action == *step.action)
                        .collect();
                    let succeeded = mine.iter().filter(|&&i| !failed(i)).count();
                    let finished = mine
                        .iter()
                        .filter(|&&i| !failed(i) && !unfinished(i))
                        .count();
                    let state = if finished >= k {
                        StepState::Done
                    } else if succeeded >= k {
                        StepState::Unfinished
                    } else if mine.iter().any(|&i| failed(i)) {
                        StepState::Failed
                    } else if plan.open {
                        StepState::Pending
                    } else {
                        StepState::Missing
                    };
                    StepView {
                        step: step.clone(),
                        state,
                        completions: mine.iter().map(|&i| completion_of(i)).collect(),
                        events: mine,
                    }
                })
                .collect();
            let unplanned = calls
                .iter()
                .copied()
                .filter(|&i| !plan.steps.iter().any(|s| *s.action == *events[i].action))
                .collect();
            PlanView {
                plan: plan.clone(),
                steps,
                unplanned,
            }
        })
        .collect()
}

/// Flags per correlation, from findings.
pub fn flags_by_chain(findings: &[Finding]) -> HashMap<String, FlagSet> {
    let mut map: HashMap<String, FlagSet> = HashMap::new();
    for f in findings {
        map.entry(f.correlation_id.clone())
            .or_default()
            .insert(f.kind);
    }
    map
}

/// The checkpoint an inclusion proof leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Records it covers.
    pub tree_size: u64,
    /// When it was signed.
    pub time: String,
    /// Its signing key.
    pub key_id: String,
    /// Whether its signature verifies with the data dir's daemon key
    /// (`None`: that key is not available here).
    pub signature_ok: Option<bool>,
}

/// An event's inclusion proof in the store's Merkle log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inclusion {
    /// Leaf index (= journal sequence number).
    pub leaf_index: u64,
    /// Size of the tree the proof is for.
    pub tree_size: u64,
    /// Root of that tree (`sha256:<hex>`).
    pub root: String,
    /// Hashes in the audit path.
    pub proof_len: usize,
    /// The signed checkpoint of that tree, when there is one.
    pub checkpoint: Option<CheckpointInfo>,
}

/// One event, whole, for the event detail view.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDetail {
    /// Journal sequence number.
    pub seq: u64,
    /// Signature state: `verified`, `key_unknown` or `invalid`.
    pub signature: String,
    /// The signed v1 event.
    pub event: Value,
    /// Its content hash (`sha256:<hex>`), computed here.
    pub content_hash: Option<String>,
    /// Its inclusion proof, when the source gives one.
    pub inclusion: Option<Inclusion>,
}

impl EventDetail {
    /// The detail from `GET /v1/events/{id}`; `daemon_key` checks the
    /// checkpoint's signature.
    pub fn from_wire(
        body: wire::EventWithInclusion,
        daemon_key: Option<&ed25519_dalek::VerifyingKey>,
    ) -> EventDetail {
        let inc = body.inclusion;
        let checkpoint = inc.checkpoint.map(|cp| CheckpointInfo {
            signature_ok: daemon_key.map(|k| cp.verify(k).is_ok()),
            tree_size: cp.tree_size,
            time: cp.time,
            key_id: cp.key_id,
        });
        let inclusion = Inclusion {
            leaf_index: inc.leaf_index,
            tree_size: inc.tree_size,
            root: inc.root,
            proof_len: inc.proof.len(),
            checkpoint,
        };
        EventDetail {
            seq: body.body.seq,
            signature: body.body.signature,
            content_hash: content_hash(&body.body.event),
            event: body.body.event,
            inclusion: Some(inclusion),
        }
    }
}

/// The content hash of a signed v1 event (over the event minus its
/// signature, canonicalized).
pub fn content_hash(event: &Value) -> Option<String> {
    intentproof_core::v1::content_hash(event.as_object()?).ok()
}

/// The outcome of verifying a chain (`v`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOutcome {
    /// Whether everything checked held.
    pub passed: bool,
    /// One line: what was checked and the verdict.
    pub headline: String,
    /// Details (findings, warnings), one per line.
    pub details: Vec<String>,
}
