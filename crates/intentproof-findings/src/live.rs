//! Plans and findings kept up to date as events commit, so that a query
//! pages through what is already known instead of recomputing the store.
//!
//! This is derived state, never stored: the daemon builds it at start by
//! replaying the journal in order ([`LiveFindings::replay`]: one read and
//! parse of every event, about as long as `store verify` reads), and the
//! writer hands it each committed batch ([`LiveFindings::committed`])
//! before any request of the batch is answered, so a finding is visible as
//! soon as its event is acknowledged. Replaying a journal and following
//! its commits give the same state. It answers what
//! [`plans_and_findings`](super::plans_and_findings) (the reference, which
//! the tests compare it against) would answer at the same moment, in the
//! same order.
//!
//! A correlation is followed from its first event that can matter (a plan
//! declaration, a gateway call, a task completion, an incomplete call; any
//! event when policies are configured), so plain SDK traffic costs no
//! memory here. Per correlation it keeps: the open plan and its calls (action, status,
//! task id), the task completions seen, the incomplete calls, the task
//! calls of a correlation with no plan, and the time of its last event.
//! A closed plan keeps only its rows (its calls are dropped): the rare
//! completion that arrives after its call's plan closed re-reads that one
//! correlation from the store.
//!
//! What depends on the clock (plans closing when idle, a plan-less task
//! never finished, policies evaluated on idle flows) is evaluated lazily:
//! each correlation waiting for an idle deadline sits in a deadline-ordered
//! set, and a query first settles the deadlines that passed, so no query
//! scans every correlation. The clock only moves forward here: a plan seen
//! closed by idleness stays closed if the system clock is set back (until
//! its correlation gets an event).
//!
//! Every change bumps a generation number; a reader that passes the
//! generation it last saw learns in a few bytes that nothing changed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use intentproof_core::actions::TOOLS_CHANGED_ACTION;
use intentproof_policy::verification::{DeclaredPlan, FlowEvent, Policy, classify_plan};
use intentproof_store::{Appended, ChainConflict, EventMeta, Incoming, Store, StoreError};
use serde::{Deserialize, Serialize};

use serde_json::Value;

use crate::{
    COMPLETED_ACTION, FindingRow, INCOMPLETE_CALL, NEVER_FINISHED, PLAN_ACTION, PLAN_CLOSE_ACTION,
    PlanRow, SESSION_ENDED, declared_plan_of, incomplete_call_row, is_call, is_refused_request,
    is_server_request, kind_name, parse_time, task_unfinished_row,
};

/// Rows a page holds when the query names no `limit`.
pub const DEFAULT_PAGE: usize = 500;
/// Most rows one page holds, whatever the query asks.
pub const MAX_PAGE: usize = 5_000;

/// What findings need from an event beyond its indexed meta.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EventFacts {
    /// Attribute `mcp.task.id` (a call answered by a task handle).
    task_id: Option<String>,
    /// Attribute `intentproof.plan.id`.
    plan_attribute: Option<String>,
    /// Attribute `intentproof.call.event_id` (a completion's call).
    call_event_id: Option<String>,
    /// A call the guard refused (not a call: it never ran).
    refused: bool,
    /// The error message of an `IncompleteCall` event.
    incomplete: Option<String>,
    /// The plan a declaration declares.
    declared: Option<DeclaredPlan>,
    /// A plan close: its target plan id and why it closed.
    close: Option<(Option<String>, &'static str)>,
    /// The output of an `intentproof.tools.changed` event.
    tool_changes: Option<Value>,
}

/// The members of an event [`EventFacts::from_bytes`] reads; the rest of
/// the event is skipped without being built.
#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    attributes: Option<PeekAttributes>,
    #[serde(default)]
    error: Option<PeekError>,
}

#[derive(Deserialize)]
struct PeekAttributes {
    #[serde(rename = "mcp.task.id", default)]
    task_id: Option<Value>,
    #[serde(rename = "intentproof.plan.id", default)]
    plan_id: Option<Value>,
    #[serde(rename = "intentproof.call.event_id", default)]
    call_event_id: Option<Value>,
    #[serde(rename = "intentproof.guard.decision", default)]
    guard_decision: Option<Value>,
}

#[derive(Deserialize)]
struct PeekError {
    #[serde(default)]
    name: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
}

fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_owned)
}

impl EventFacts {
    /// The facts of an event's JSON (`action` from its meta).
    pub fn from_value(action: &str, event: &Value) -> EventFacts {
        let attribute = |key: &str| text(event.get("attributes").and_then(|a| a.get(key)));
        let incomplete = (event.pointer("/error/name").and_then(Value::as_str)
            == Some(INCOMPLETE_CALL))
        .then(|| text(event.pointer("/error/message")).unwrap_or_else(|| NEVER_FINISHED.into()));
        EventFacts {
            task_id: attribute(crate::TASK_ID_ATTRIBUTE),
            plan_attribute: attribute("intentproof.plan.id"),
            call_event_id: attribute(crate::CALL_EVENT_ID_ATTRIBUTE),
            refused: crate::is_guard_refusal(event),
            incomplete,
            declared: (action == PLAN_ACTION)
                .then(|| declared_plan_of(event))
                .flatten(),
            close: (action == PLAN_CLOSE_ACTION).then(|| {
                let by = match event.pointer("/inputs/reason").and_then(Value::as_str) {
                    Some(SESSION_ENDED) => "session_ended",
                    _ => "closed",
                };
                (text(event.pointer("/inputs/plan_id")), by)
            }),
            tool_changes: (action == TOOLS_CHANGED_ACTION)
                .then(|| event.get("output").cloned().unwrap_or(Value::Null)),
        }
    }

    /// The facts of an event's stored bytes. Only plan declarations and
    /// closes are parsed whole; other events have their attributes and
    /// error read and everything else skipped (the writer calls this for
    /// every event it commits). `None`: the bytes are not JSON.
    pub fn from_bytes(action: &str, bytes: &[u8]) -> Option<EventFacts> {
        if action != PLAN_ACTION
            && action != PLAN_CLOSE_ACTION
            && action != TOOLS_CHANGED_ACTION
            && let Ok(peek) = serde_json::from_slice::<Peek>(bytes)
        {
            let attributes = peek.attributes.as_ref();
            let error = peek.error.as_ref();
            let incomplete = (error.and_then(|e| e.name.as_ref()).and_then(Value::as_str)
                == Some(INCOMPLETE_CALL))
            .then(|| {
                text(error.and_then(|e| e.message.as_ref()))
                    .unwrap_or_else(|| NEVER_FINISHED.into())
            });
            return Some(EventFacts {
                task_id: text(attributes.and_then(|a| a.task_id.as_ref())),
                plan_attribute: text(attributes.and_then(|a| a.plan_id.as_ref())),
                call_event_id: text(attributes.and_then(|a| a.call_event_id.as_ref())),
                refused: attributes
                    .and_then(|a| a.guard_decision.as_ref())
                    .and_then(Value::as_str)
                    == Some("refused"),
                incomplete,
                declared: None,
                close: None,
                tool_changes: None,
            });
        }
        // A shape the peek does not take (attributes not an object, ...):
        // read it as the reference does.
        let event: Value = serde_json::from_slice(bytes).ok()?;
        Some(EventFacts::from_value(action, &event))
    }
}

/// Position of a finding in the reference's order: newest `at` first, then
/// as the reference lists them (planned correlations, plan-less ones,
/// policy flows; each by correlation id, then by journal order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FindingKey {
    at: Reverse<String>,
    tier: u8,
    correlation: Arc<str>,
    part: u64,
    seq: u64,
    index: u64,
}

/// Position of a plan: newest declaration first, then by correlation id
/// and journal order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PlanKey {
    declared_at: Reverse<String>,
    correlation: Arc<str>,
    seq: u64,
}

/// Findings of correlations that declared a plan.
const TIER_PLANNED: u8 = 0;
/// Findings of gateway calls in correlations that never did.
const TIER_UNPLANNED: u8 = 1;
/// Policy violations.
const TIER_POLICY: u8 = 2;
/// Tool definitions that changed since they were pinned.
const TIER_TOOLS: u8 = 3;

/// A call made under an open plan: what its classification needs.
#[derive(Debug, Clone)]
struct Call {
    event_id: String,
    action: String,
    status: String,
    task_id: Option<String>,
}

#[derive(Debug, Clone)]
struct OpenPlan {
    plan: DeclaredPlan,
    seq: u64,
    declared_at: String,
    /// The last call's `completed_at` (the declaration's before any call).
    last_at: String,
    calls: Vec<Call>,
}

/// A task call of a correlation with no plan.
#[derive(Debug, Clone)]
struct PlanlessTask {
    seq: u64,
    event_id: String,
    action: String,
    intent: String,
    task_id: String,
}

#[derive(Debug, Default)]
struct FlowState {
    /// Latest `completed_at` (the chain summary's `last_at`).
    last_at: String,
    /// An event whose action starts with the declaration's was seen.
    planned: bool,
    /// Task completions: call event id -> the latest completion's status.
    completions: HashMap<String, String>,
    /// Incomplete calls: (seq, action is `mcp.*`, finding).
    incomplete: Vec<(u64, bool, FindingRow)>,
    current: Option<OpenPlan>,
    /// Journal ranges (declaration seq, closing seq) of closed plans.
    closed: Vec<(u64, u64)>,
    /// Task calls while the correlation has no plan.
    tasks: Vec<PlanlessTask>,
    /// Rows that stay as they are until the correlation is re-read.
    fixed: Vec<FindingKey>,
    fixed_plans: Vec<PlanKey>,
    /// Rows redrawn when the correlation changes or a deadline passes.
    shown: Vec<FindingKey>,
    shown_plans: Vec<PlanKey>,
    /// When `shown` next changes by the clock alone.
    deadline: Option<SystemTime>,
    /// Policy findings of the flow as it stands, once evaluated.
    policy_rows: Option<Vec<(u64, u64, FindingRow)>>,
}

/// A page of findings or plans.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    /// The rows, in the reference's order.
    pub rows: Vec<T>,
    /// Where the next page starts, when there is one (opaque).
    pub next_cursor: Option<String>,
    /// How many rows there are in all.
    pub total: usize,
    /// The state's generation these rows come from.
    pub generation: u64,
}

/// A query's cursor is not one this daemon gave.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the cursor is not one this daemon gave: pass the next_cursor of an earlier answer, or leave it out to start from the first row"
)]
pub struct BadCursor;

/// The state could not follow the store (a read failed): its answers
/// would be wrong, so queries are refused until a restart rebuilds it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "findings are not up to date: reading the store failed ({0}); restart the daemon to rebuild them from the journal"
)]
pub struct Stale(pub String);

/// Why a query failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    /// See [`BadCursor`].
    #[error(transparent)]
    Cursor(#[from] BadCursor),
    /// See [`Stale`].
    #[error(transparent)]
    Stale(#[from] Stale),
}

/// A row's position, written into a cursor and read back.
trait CursorKey: Sized {
    fn to_json(&self) -> Value;
    fn from_json(value: &Value) -> Option<Self>;
}

impl CursorKey for FindingKey {
    fn to_json(&self) -> Value {
        serde_json::json!([
            self.at.0,
            self.tier,
            &*self.correlation,
            self.part,
            self.seq,
            self.index
        ])
    }

    fn from_json(value: &Value) -> Option<FindingKey> {
        let [at, tier, correlation, part, seq, index] = value.as_array()?.as_slice() else {
            return None;
        };
        Some(FindingKey {
            at: Reverse(at.as_str()?.to_owned()),
            tier: u8::try_from(tier.as_u64()?).ok()?,
            correlation: Arc::from(correlation.as_str()?),
            part: part.as_u64()?,
            seq: seq.as_u64()?,
            index: index.as_u64()?,
        })
    }
}

impl CursorKey for PlanKey {
    fn to_json(&self) -> Value {
        serde_json::json!([self.declared_at.0, &*self.correlation, self.seq])
    }

    fn from_json(value: &Value) -> Option<PlanKey> {
        let [declared_at, correlation, seq] = value.as_array()?.as_slice() else {
            return None;
        };
        Some(PlanKey {
            declared_at: Reverse(declared_at.as_str()?.to_owned()),
            correlation: Arc::from(correlation.as_str()?),
            seq: seq.as_u64()?,
        })
    }
}

/// A cursor is the hex of its key's JSON: opaque to readers, checked when
/// read back.
fn encode_cursor<K: CursorKey>(key: &K) -> String {
    key.to_json()
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Longest cursor accepted (a key holds a timestamp and a correlation id).
const MAX_CURSOR: usize = 4 * 1024;

fn decode_cursor<K: CursorKey>(cursor: &str) -> Result<K, BadCursor> {
    if cursor.len() > MAX_CURSOR || !cursor.len().is_multiple_of(2) {
        return Err(BadCursor);
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| {
            cursor
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or(BadCursor)?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| BadCursor)?;
    K::from_json(&value).ok_or(BadCursor)
}

/// The plans and findings of a store, kept up to date (see the module
/// docs). Shared by the writer (which feeds it) and the queries.
pub struct LiveFindings {
    state: Mutex<State>,
}

struct State {
    store: Arc<Store>,
    idle: Duration,
    policies: Arc<Vec<Policy>>,
    flows: HashMap<Arc<str>, FlowState>,
    findings: BTreeMap<FindingKey, FindingRow>,
    plans: BTreeMap<PlanKey, PlanRow>,
    /// Correlations whose rows change at a time: (when, correlation).
    deadlines: BTreeSet<(SystemTime, Arc<str>)>,
    /// Completions in correlations with no plan, by call event id: how
    /// many such correlations hold one (the reference pools them).
    planless_completed: HashMap<String, usize>,
    /// Task calls of plan-less correlations: call event id -> correlation.
    task_owner: HashMap<String, Arc<str>>,
    /// Correlations to redraw at the end of the batch.
    dirty: HashSet<Arc<str>>,
    /// The latest time a query asked at.
    clock: SystemTime,
    generation: u64,
    stale: Option<String>,
}

impl LiveFindings {
    /// Builds the state of `store` by replaying its journal in order.
    /// Costs one read and parse of every stored event (and, with
    /// `policies`, one evaluation of every flow idle at the first query).
    pub fn replay(
        store: Arc<Store>,
        idle: Duration,
        policies: Arc<Vec<Policy>>,
    ) -> Result<LiveFindings, StoreError> {
        let mut state = State {
            store: Arc::clone(&store),
            idle,
            policies,
            flows: HashMap::new(),
            findings: BTreeMap::new(),
            plans: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            planless_completed: HashMap::new(),
            task_owner: HashMap::new(),
            dirty: HashSet::new(),
            clock: SystemTime::UNIX_EPOCH,
            // Starts at the time of the start (µs): a reader holding a
            // generation of an earlier daemon run cannot be told
            // "unchanged" by this one.
            generation: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(0)),
            stale: None,
        };
        for seq in 0..store.tree_size() {
            let Some(stored) = store.by_seq(seq)? else {
                continue;
            };
            let meta = &stored.entry.meta;
            let facts = EventFacts::from_value(&meta.action, &stored.event);
            state.apply(seq, meta, facts, false)?;
        }
        state.redraw_dirty()?;
        Ok(LiveFindings {
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a committed batch: `batch` as handed to
    /// [`Store::append`], `outcomes` what it answered. Events stored anew
    /// are applied in journal order; duplicates and refusals are not.
    pub fn committed(&self, batch: &[Incoming], outcomes: &[Result<Appended, ChainConflict>]) {
        let mut state = self.lock();
        if state.stale.is_some() {
            return;
        }
        let mut result = Ok(());
        for (incoming, outcome) in batch.iter().zip(outcomes) {
            let Ok(Appended::Stored { seq }) = outcome else {
                continue;
            };
            let meta = &incoming.meta;
            // The writer stores only events that parsed; a record that
            // does not is what the reference reads as an error too.
            let Some(facts) = EventFacts::from_bytes(&meta.action, &incoming.bytes) else {
                result = Err(format!("journal record {seq} is not JSON"));
                break;
            };
            if let Err(e) = state.apply(*seq, meta, facts, false) {
                result = Err(e.to_string());
                break;
            }
        }
        let result = result.and_then(|()| state.redraw_dirty().map_err(|e| e.to_string()));
        if let Err(why) = result {
            tracing::error!(error = %why, "findings could not follow a commit; queries are refused until a restart");
            state.stale = Some(why);
        }
    }

    /// A page of findings as of `now`, after `cursor`, at most `limit`
    /// (bounded by [`MAX_PAGE`]).
    pub fn findings(
        &self,
        now: SystemTime,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<FindingRow>, QueryError> {
        let mut state = self.lock();
        state.settle(now)?;
        let after: Option<FindingKey> = cursor.map(decode_cursor).transpose()?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(page(
            state.findings.range((start, Bound::Unbounded)),
            state.findings.len(),
            limit,
            state.generation,
        ))
    }

    /// A page of plans as of `now`, after `cursor`, at most `limit`; only
    /// `correlation`'s when given.
    pub fn plans(
        &self,
        now: SystemTime,
        cursor: Option<&str>,
        limit: usize,
        correlation: Option<&str>,
    ) -> Result<Page<PlanRow>, QueryError> {
        let mut state = self.lock();
        state.settle(now)?;
        let after: Option<PlanKey> = cursor.map(decode_cursor).transpose()?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let generation = state.generation;
        match correlation {
            None => Ok(page(
                state.plans.range((start, Bound::Unbounded)),
                state.plans.len(),
                limit,
                generation,
            )),
            Some(id) => {
                let mine: BTreeMap<&PlanKey, &PlanRow> = state
                    .flows
                    .get(id)
                    .into_iter()
                    .flat_map(|f| f.fixed_plans.iter().chain(&f.shown_plans))
                    .filter_map(|k| state.plans.get_key_value(k))
                    .collect();
                let total = mine.len();
                let rows = mine.into_iter().filter(|(k, _)| match &start {
                    Bound::Excluded(after) => *k > after,
                    _ => true,
                });
                Ok(page(rows, total, limit, generation))
            }
        }
    }

    /// The current generation, after settling the deadlines due at `now`.
    pub fn generation(&self, now: SystemTime) -> Result<u64, QueryError> {
        let mut state = self.lock();
        state.settle(now)?;
        Ok(state.generation)
    }

    /// The plan `plan_id` (the first in the listing's order) and, when it
    /// is closed, its findings.
    pub fn plan(
        &self,
        now: SystemTime,
        plan_id: &str,
    ) -> Result<Option<(PlanRow, Vec<FindingRow>)>, QueryError> {
        let mut state = self.lock();
        state.settle(now)?;
        let Some(plan) = state.plans.values().find(|p| p.plan_id == plan_id).cloned() else {
            return Ok(None);
        };
        let findings = state
            .flows
            .get(plan.correlation_id.as_str())
            .into_iter()
            .flat_map(|f| f.fixed.iter().chain(&f.shown))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter_map(|k| state.findings.get(k))
            .filter(|f| f.plan_id.as_deref() == Some(plan_id))
            .cloned()
            .collect();
        Ok(Some((plan, findings)))
    }
}

fn page<'a, K: CursorKey + 'a, T: Clone + 'a>(
    rows: impl Iterator<Item = (&'a K, &'a T)>,
    total: usize,
    limit: usize,
    generation: u64,
) -> Page<T> {
    let limit = limit.clamp(1, MAX_PAGE);
    let mut out = Vec::new();
    let mut last = None;
    let mut more = false;
    for (key, row) in rows {
        if out.len() == limit {
            more = true;
            break;
        }
        out.push(row.clone());
        last = Some(key);
    }
    Page {
        rows: out,
        next_cursor: if more { last.map(encode_cursor) } else { None },
        total,
        generation,
    }
}

impl State {
    /// Moves the clock to `now` (never back) and redraws the correlations
    /// whose deadline passed.
    fn settle(&mut self, now: SystemTime) -> Result<(), Stale> {
        if let Some(why) = &self.stale {
            return Err(Stale(why.clone()));
        }
        self.clock = self.clock.max(now);
        while let Some((due, correlation)) = self.deadlines.first().cloned()
            && due <= self.clock
        {
            self.deadlines.remove(&(due, Arc::clone(&correlation)));
            if let Err(e) = self.redraw(&correlation) {
                let why = e.to_string();
                self.stale = Some(why.clone());
                return Err(Stale(why));
            }
        }
        Ok(())
    }

    fn insert_finding(&mut self, key: FindingKey, row: FindingRow) {
        self.findings.insert(key, row);
        self.generation += 1;
    }

    /// Applies one event, in journal order. `rebuilding`: the correlation
    /// is being re-read from the store with its completions known.
    fn apply(
        &mut self,
        seq: u64,
        meta: &EventMeta,
        facts: EventFacts,
        rebuilding: bool,
    ) -> Result<(), StoreError> {
        if let Some(output) = &facts.tool_changes {
            // Fixed rows of their own tier: nothing later changes them.
            let correlation: Arc<str> = Arc::from(meta.correlation_id.as_str());
            for (index, row) in crate::tool_changed_rows(meta, output)
                .into_iter()
                .enumerate()
            {
                let key = finding_key(&row, TIER_TOOLS, &correlation, 0, seq, index as u64);
                self.insert_finding(key, row);
            }
        }
        let (correlation, mut flow) = match self.flows.remove_entry(meta.correlation_id.as_str()) {
            Some(found) => found,
            // A correlation is followed from its first event that can
            // matter (every one, with policies): 100,000 correlations of
            // plain SDK events cost nothing here.
            None if !self.policies.is_empty() || matters(meta, &facts) => {
                // Its earlier events moved its last activity: the chain
                // summary has it (and this batch's events, all applied
                // before anything reads it).
                let last_at = match rebuilding {
                    true => String::new(),
                    false => self
                        .store
                        .chain_summary(&meta.correlation_id)?
                        .map(|s| s.last_at)
                        .unwrap_or_default(),
                };
                (
                    Arc::from(meta.correlation_id.as_str()),
                    FlowState {
                        last_at,
                        ..FlowState::default()
                    },
                )
            }
            None => return Ok(()),
        };
        self.dirty.insert(Arc::clone(&correlation));
        flow.policy_rows = None;
        if meta.completed_at > flow.last_at {
            flow.last_at.clone_from(&meta.completed_at);
        }
        let action = meta.action.as_str();
        let mut reread = false;
        if action == COMPLETED_ACTION
            && !rebuilding
            && let Some(call) = &facts.call_event_id
        {
            let new = flow
                .completions
                .insert(call.clone(), meta.status.clone())
                .is_none();
            if !flow.planned && new {
                *self.planless_completed.entry(call.clone()).or_default() += 1;
                if let Some(owner) = self.task_owner.get(call) {
                    self.dirty.insert(Arc::clone(owner));
                }
            }
            if flow.planned && !flow.closed.is_empty() {
                reread = self.closed_call(&correlation, &flow, call)?;
            }
        }
        if let Some(why) = &facts.incomplete {
            let row = incomplete_call_row(meta, facts.plan_attribute.as_deref(), why);
            let mcp = action.starts_with("mcp.");
            if flow.planned || mcp {
                let tier = if flow.planned {
                    TIER_PLANNED
                } else {
                    TIER_UNPLANNED
                };
                let key = finding_key(&row, tier, &correlation, 0, seq, 0);
                flow.fixed.push(key.clone());
                self.insert_finding(key, row.clone());
            }
            flow.incomplete.push((seq, mcp, row));
        }
        if action.starts_with(PLAN_ACTION) && !flow.planned {
            self.make_planned(&correlation, &mut flow);
        }
        if flow.planned {
            self.apply_planned(&correlation, &mut flow, seq, meta, facts);
        } else {
            let mcp = action.starts_with("mcp.");
            if (mcp || action.starts_with("http.")) && !is_refused_request(action) && !facts.refused
            {
                if mcp && let Some(task_id) = facts.task_id {
                    flow.tasks.push(PlanlessTask {
                        seq,
                        event_id: meta.event_id.clone(),
                        action: meta.action.clone(),
                        intent: meta.intent.clone(),
                        task_id,
                    });
                    self.task_owner
                        .insert(meta.event_id.clone(), Arc::clone(&correlation));
                }
                if !(mcp && is_server_request(action)) {
                    let row = FindingRow {
                        kind: "unplanned_call".into(),
                        plan_id: None,
                        intent: None,
                        correlation_id: meta.correlation_id.clone(),
                        step_index: None,
                        action: meta.action.clone(),
                        event_ids: vec![meta.event_id.clone()],
                        message: format!("{} was called with no plan declared", meta.action),
                        at: meta.completed_at.clone(),
                    };
                    let part = if mcp { 0 } else { 1 };
                    let key = finding_key(&row, TIER_UNPLANNED, &correlation, part, seq, 2);
                    flow.fixed.push(key.clone());
                    self.insert_finding(key, row);
                }
            }
        }
        self.flows.insert(Arc::clone(&correlation), flow);
        if reread {
            self.reread(&correlation, seq)?;
        }
        Ok(())
    }

    /// Whether completed call `call` is one of a closed plan of
    /// `correlation` (its classification must then be redone).
    fn closed_call(
        &self,
        correlation: &str,
        flow: &FlowState,
        call: &str,
    ) -> Result<bool, StoreError> {
        if flow
            .current
            .as_ref()
            .is_some_and(|open| open.calls.iter().any(|c| c.event_id == call))
        {
            return Ok(false);
        }
        let Some(stored) = self.store.get(call)? else {
            return Ok(false);
        };
        let seq = stored.entry.seq;
        Ok(stored.entry.meta.correlation_id == correlation
            && flow
                .closed
                .iter()
                .any(|&(from, to)| from <= seq && seq <= to))
    }

    /// The correlation declared its first plan: what was said about its
    /// calls without a plan no longer holds.
    fn make_planned(&mut self, correlation: &Arc<str>, flow: &mut FlowState) {
        for key in flow.fixed.drain(..) {
            self.findings.remove(&key);
            self.generation += 1;
        }
        for (seq, _, row) in &flow.incomplete {
            let key = finding_key(row, TIER_PLANNED, correlation, 0, *seq, 0);
            flow.fixed.push(key.clone());
            self.findings.insert(key, row.clone());
            self.generation += 1;
        }
        for call in flow.completions.keys() {
            if let Some(n) = self.planless_completed.get_mut(call) {
                *n -= 1;
                if *n == 0 {
                    self.planless_completed.remove(call);
                }
            }
            if let Some(owner) = self.task_owner.get(call) {
                self.dirty.insert(Arc::clone(owner));
            }
        }
        for task in flow.tasks.drain(..) {
            self.task_owner.remove(&task.event_id);
        }
        flow.planned = true;
    }

    fn apply_planned(
        &mut self,
        correlation: &Arc<str>,
        flow: &mut FlowState,
        seq: u64,
        meta: &EventMeta,
        facts: EventFacts,
    ) {
        let action = meta.action.as_str();
        if action == PLAN_ACTION {
            if let Some(plan) = facts.declared {
                if let Some(open) = flow.current.take() {
                    self.close(correlation, flow, open, "replaced", &meta.completed_at, seq);
                }
                flow.current = Some(OpenPlan {
                    plan,
                    seq,
                    declared_at: meta.started_at.clone(),
                    last_at: meta.completed_at.clone(),
                    calls: Vec::new(),
                });
            }
            return;
        }
        if action == PLAN_CLOSE_ACTION {
            if let Some((target, by)) = facts.close
                && let Some(open) = flow.current.take()
            {
                if target.as_deref() == Some(open.plan.plan_id.as_str()) {
                    self.close(correlation, flow, open, by, &meta.completed_at, seq);
                } else {
                    flow.current = Some(open);
                }
            }
            return;
        }
        if !is_call(action) || facts.refused {
            return;
        }
        if let Some(open) = flow.current.as_mut() {
            open.calls.push(Call {
                event_id: meta.event_id.clone(),
                action: meta.action.clone(),
                status: meta.status.clone(),
                task_id: facts.task_id,
            });
            open.last_at.clone_from(&meta.completed_at);
        }
    }

    /// Closes `open` (replaced or closed by event `seq`): its rows no
    /// longer change, and its calls are let go.
    fn close(
        &mut self,
        correlation: &Arc<str>,
        flow: &mut FlowState,
        open: OpenPlan,
        by: &'static str,
        at: &str,
        seq: u64,
    ) {
        let (row, findings) = plan_rows(
            &open,
            correlation,
            Some(by),
            at,
            &flow.completions,
            self.idle,
        );
        let plan_key = plan_key(&open, correlation);
        // The rows drawn while it was open (or idle) are replaced by these.
        flow.shown_plans.retain(|k| *k != plan_key);
        self.plans.remove(&plan_key);
        let mine = |k: &FindingKey| k.tier == TIER_PLANNED && k.part == 1 && k.seq == open.seq;
        for key in flow.shown.iter().filter(|k| mine(k)) {
            self.findings.remove(key);
        }
        flow.shown.retain(|k| !mine(k));
        flow.fixed_plans.push(plan_key.clone());
        self.plans.insert(plan_key, row);
        for (i, finding) in findings.into_iter().enumerate() {
            let key = finding_key(&finding, TIER_PLANNED, correlation, 1, open.seq, i as u64);
            flow.fixed.push(key.clone());
            self.findings.insert(key, finding);
        }
        self.generation += 1;
        flow.closed.push((open.seq, seq));
    }

    /// Re-reads `correlation` from the store up to journal record `upto`
    /// (a completion arrived for a call of a plan already closed).
    fn reread(&mut self, correlation: &Arc<str>, upto: u64) -> Result<(), StoreError> {
        let mut chain = self.store.chain(correlation)?;
        chain.retain(|e| e.entry.seq <= upto);
        chain.sort_by_key(|e| e.entry.seq);
        if let Some(mut old) = self.flows.remove(correlation) {
            for key in old.fixed.drain(..).chain(old.shown.drain(..)) {
                self.findings.remove(&key);
            }
            for key in old.fixed_plans.drain(..).chain(old.shown_plans.drain(..)) {
                self.plans.remove(&key);
            }
            if let Some(due) = old.deadline {
                self.deadlines.remove(&(due, Arc::clone(correlation)));
            }
        }
        // Only a correlation with a plan is re-read: it is planned from
        // its first event on, as the reference reads it.
        let mut fresh = FlowState {
            planned: true,
            ..FlowState::default()
        };
        for e in &chain {
            if e.entry.meta.action == COMPLETED_ACTION
                && let Some(call) = e
                    .event
                    .get("attributes")
                    .and_then(|a| a.get(crate::CALL_EVENT_ID_ATTRIBUTE))
                    .and_then(Value::as_str)
            {
                fresh
                    .completions
                    .insert(call.to_owned(), e.entry.meta.status.clone());
            }
        }
        self.flows.insert(Arc::clone(correlation), fresh);
        for e in &chain {
            let meta = &e.entry.meta;
            let facts = EventFacts::from_value(&meta.action, &e.event);
            self.apply(e.entry.seq, meta, facts, true)?;
        }
        self.generation += 1;
        Ok(())
    }

    fn redraw_dirty(&mut self) -> Result<(), StoreError> {
        let dirty: Vec<Arc<str>> = self.dirty.drain().collect();
        for correlation in dirty {
            self.redraw(&correlation)?;
        }
        Ok(())
    }

    /// Redraws the rows of `correlation` that depend on the clock: its
    /// open plan, its plan-less task calls never finished, its policy
    /// findings; and files its next deadline.
    fn redraw(&mut self, correlation: &Arc<str>) -> Result<(), StoreError> {
        let Some(mut flow) = self.flows.remove(correlation) else {
            return Ok(());
        };
        let now = self.clock;
        let mut old: Vec<(FindingKey, FindingRow)> = flow
            .shown
            .drain(..)
            .filter_map(|k| self.findings.remove_entry(&k))
            .collect();
        let mut old_plans: Vec<(PlanKey, PlanRow)> = flow
            .shown_plans
            .drain(..)
            .filter_map(|k| self.plans.remove_entry(&k))
            .collect();
        if let Some(due) = flow.deadline.take() {
            self.deadlines.remove(&(due, Arc::clone(correlation)));
        }
        let mut rows: Vec<(FindingKey, FindingRow)> = Vec::new();
        let mut plans: Vec<(PlanKey, PlanRow)> = Vec::new();
        let is_due = |due: Option<SystemTime>| due.is_some_and(|d| d <= now);
        let chain_due = parse_time(&flow.last_at).and_then(|t| t.checked_add(self.idle));
        let chain_idle = is_due(chain_due);
        if let Some(open) = &flow.current {
            let due = parse_time(&open.last_at).and_then(|t| t.checked_add(self.idle));
            let (row, findings) = plan_rows(
                open,
                correlation,
                is_due(due).then_some("idle"),
                &open.last_at,
                &flow.completions,
                self.idle,
            );
            plans.push((plan_key(open, correlation), row));
            for (i, finding) in findings.into_iter().enumerate() {
                let key = finding_key(&finding, TIER_PLANNED, correlation, 1, open.seq, i as u64);
                rows.push((key, finding));
            }
        }
        if !flow.planned && chain_idle {
            for task in &flow.tasks {
                if self.planless_completed.contains_key(&task.event_id) {
                    continue;
                }
                let row = task_unfinished_row(
                    &task.event_id,
                    &task.action,
                    &task.intent,
                    correlation,
                    &task.task_id,
                    None,
                    &flow.last_at,
                );
                rows.push((
                    finding_key(&row, TIER_UNPLANNED, correlation, 0, task.seq, 1),
                    row,
                ));
            }
        }
        if !self.policies.is_empty() && chain_idle {
            if flow.policy_rows.is_none() {
                flow.policy_rows = Some(self.policy_rows(correlation, &flow.last_at)?);
            }
            for (policy, index, row) in flow.policy_rows.iter().flatten() {
                let key = finding_key(row, TIER_POLICY, correlation, *policy, *index, 0);
                rows.push((key, row.clone()));
            }
        }
        let next = self.next_deadline(&flow, chain_due);
        if let Some(due) = next {
            self.deadlines.insert((due, Arc::clone(correlation)));
            flow.deadline = Some(due);
        }
        old.sort_by(|a, b| a.0.cmp(&b.0));
        old_plans.sort_by(|a, b| a.0.cmp(&b.0));
        let mut new = rows.clone();
        new.sort_by(|a, b| a.0.cmp(&b.0));
        let mut new_plans = plans.clone();
        new_plans.sort_by(|a, b| a.0.cmp(&b.0));
        if old != new || old_plans != new_plans {
            self.generation += 1;
        }
        for (key, row) in rows {
            flow.shown.push(key.clone());
            self.findings.insert(key, row);
        }
        for (key, row) in plans {
            flow.shown_plans.push(key.clone());
            self.plans.insert(key, row);
        }
        self.flows.insert(Arc::clone(correlation), flow);
        Ok(())
    }

    /// The earliest deadline that can change what `flow` shows: its open
    /// plan's, and its chain's when plan-less tasks or policies wait on it.
    fn next_deadline(&self, flow: &FlowState, chain_due: Option<SystemTime>) -> Option<SystemTime> {
        let now = self.clock;
        let later = |due: Option<SystemTime>| due.filter(|d| *d > now);
        let plan_due = flow.current.as_ref().and_then(|open| {
            later(parse_time(&open.last_at).and_then(|t| t.checked_add(self.idle)))
        });
        let chain_matters = !self.policies.is_empty() || (!flow.planned && !flow.tasks.is_empty());
        let chain_due = if chain_matters {
            later(chain_due)
        } else {
            None
        };
        match (plan_due, chain_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The policy findings of flow `correlation` (idle, last event at
    /// `last_at`), as the reference evaluates them: (policy index, index
    /// of the finding, row).
    fn policy_rows(
        &self,
        correlation: &str,
        last_at: &str,
    ) -> Result<Vec<(u64, u64, FindingRow)>, StoreError> {
        Ok(
            crate::policy_rows(self.store.as_ref(), &self.policies, correlation, last_at)?
                .into_iter()
                .enumerate()
                .map(|(index, (policy, row))| (policy as u64, index as u64, row))
                .collect(),
        )
    }
}

/// Whether `meta`'s event can change what a correlation with no state
/// yet shows: a plan declaration, a task completion, an incomplete call,
/// or a gateway call (an unplanned call).
fn matters(meta: &EventMeta, facts: &EventFacts) -> bool {
    let action = meta.action.as_str();
    action.starts_with(PLAN_ACTION)
        || (action == COMPLETED_ACTION && facts.call_event_id.is_some())
        || facts.incomplete.is_some()
        || ((action.starts_with("mcp.") || action.starts_with("http."))
            && !is_refused_request(action))
}

fn finding_key(
    row: &FindingRow,
    tier: u8,
    correlation: &Arc<str>,
    part: u64,
    seq: u64,
    index: u64,
) -> FindingKey {
    FindingKey {
        at: Reverse(row.at.clone()),
        tier,
        correlation: Arc::clone(correlation),
        part,
        seq,
        index,
    }
}

fn plan_key(open: &OpenPlan, correlation: &Arc<str>) -> PlanKey {
    PlanKey {
        declared_at: Reverse(open.declared_at.clone()),
        correlation: Arc::clone(correlation),
        seq: open.seq,
    }
}

/// A plan's row and, once closed (`closed_by`), its findings: flags, then
/// its task calls never seen finished; as the reference builds them.
fn plan_rows(
    open: &OpenPlan,
    correlation: &str,
    closed_by: Option<&'static str>,
    closed_at: &str,
    completions: &HashMap<String, String>,
    idle: Duration,
) -> (PlanRow, Vec<FindingRow>) {
    let plan = &open.plan;
    let correlation = correlation.to_owned();
    let mut findings = Vec::new();
    if closed_by.is_some() {
        let flow: Vec<FlowEvent> = open
            .calls
            .iter()
            .map(|c| {
                let mut event = FlowEvent::new(&c.event_id, &c.action);
                // A task call ends as its task did.
                event.status = Some(completions.get(&c.event_id).unwrap_or(&c.status).clone());
                event
            })
            .collect();
        for flag in classify_plan(plan, &flow) {
            findings.push(FindingRow {
                kind: kind_name(flag.kind).into(),
                plan_id: Some(plan.plan_id.clone()),
                intent: Some(plan.intent.clone()),
                correlation_id: correlation.clone(),
                step_index: flag.step_index,
                action: flag.action,
                event_ids: flag.event_ids,
                message: flag.message,
                at: closed_at.to_owned(),
            });
        }
        for call in &open.calls {
            if completions.contains_key(&call.event_id) {
                continue;
            }
            if let Some(task_id) = &call.task_id {
                findings.push(task_unfinished_row(
                    &call.event_id,
                    &call.action,
                    "",
                    &correlation,
                    task_id,
                    Some(plan),
                    closed_at,
                ));
            }
        }
    }
    let row = PlanRow {
        plan_id: plan.plan_id.clone(),
        correlation_id: correlation,
        intent: plan.intent.clone(),
        steps: plan.steps.clone(),
        declared_at: open.declared_at.clone(),
        state: if closed_by.is_some() {
            "closed".into()
        } else {
            "open".into()
        },
        closed_by: closed_by.map(Into::into),
        closes_at: match closed_by {
            None => {
                parse_time(closed_at).map(|t| intentproof_core::format_rfc3339_millis(t + idle))
            }
            Some(_) => None,
        },
        calls: open.calls.len(),
        flags: findings.len(),
    };
    (row, findings)
}
