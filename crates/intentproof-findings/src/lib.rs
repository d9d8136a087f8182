//! Plans and findings, derived from the store on demand.
//!
//! A plan is a declaration event (`intentproof.plan.declare`); its calls are
//! the events of its correlation that follow it, up to the next declaration
//! in that correlation. A plan closes when it is replaced by a new
//! declaration, when it is closed explicitly (an `intentproof.plan.close`
//! event), or after an idle timeout with no event in its correlation. Open
//! plans are shown as open, never as failed. A closed plan's events are
//! classified by `intentproof_policy::verification::classify_plan` into
//! **incomplete intent**, **failed step** and **unplanned call** flags.
//! Gateway-recorded calls (actions `mcp.*`, and `http.*` from the HTTP API
//! proxy) in a correlation that never declared a plan are unplanned calls
//! too. Server-to-client requests the MCP gateway records
//! (`mcp.<server>.elicitation.create`, `.sampling.create`) are part of the
//! call under way, not calls of their own: never planned or unplanned.
//!
//! Two findings come from the MCP recorder's records:
//!
//! - **incomplete call**: an event whose `error.name` is `IncompleteCall`
//!   (the server asked for input and the client never continued, or never
//!   answered a server request); due when recorded.
//! - **task unfinished**: a call answered by a task handle (attribute
//!   `mcp.task.id`) with no `intentproof.call.completed` event naming it
//!   (`intentproof.call.event_id`) in its correlation, once its plan closed
//!   (or, with no plan, once the correlation has been idle for the idle
//!   timeout). A task call that has a completion event takes the
//!   completion's status in plan classification: a step whose only call's
//!   task failed did not succeed.
//!
//! Nothing here is stored separately: findings are a pure function of the
//! journal (and the clock, for idle timeouts), so they can never disagree
//! with the record and survive an index rebuild unchanged. [`live`] keeps
//! the same answers up to date as events commit, for the daemon.
//!
//! What it does not do: write the store, serve HTTP or decide how findings
//! are shown; the daemon (`intentproof-gateway`) serves them, and the TUI
//! computes them here from a store it opened read-only.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use intentproof_policy::verification::{
    DeclaredPlan, EvalOptions, FlagKind, Flow, FlowEvent, Outcome, PlanStep, Policy, classify_plan,
    evaluate, scope_matches,
};
use intentproof_store::{EventMeta, IndexEntry, Store, StoreError, StoredEvent};
use serde_json::Value;

/// Action of the event that completes a task call (the MCP recorder's).
pub use intentproof_core::actions::COMPLETED_ACTION;
use intentproof_core::actions::{
    INCOMPLETE_CALL, SESSION_ENDED, STARTED_ACTION, TOOLS_CHANGED_ACTION,
};
use intentproof_policy::verification::PLAN_DECLARE_ACTION as PLAN_ACTION;

/// Action of a plan close (explicit, or the declaring session ended).
pub use intentproof_core::actions::PLAN_CLOSE_ACTION;

/// How long a plan stays open with no event in its correlation, unless
/// configured (the daemon's `plan_idle_timeout_secs`).
pub const DEFAULT_PLAN_IDLE_TIMEOUT_SECS: u64 = 300;

pub mod live;
/// Attribute of a completion event naming its call's event id.
pub const CALL_EVENT_ID_ATTRIBUTE: &str = "intentproof.call.event_id";
/// Attribute of a call answered by a task handle: the task's id.
pub const TASK_ID_ATTRIBUTE: &str = "mcp.task.id";

pub use intentproof_api::wire::{FindingRow, PlanRow};

pub(crate) fn kind_name(kind: FlagKind) -> &'static str {
    match kind {
        FlagKind::IncompleteIntent => "incomplete_intent",
        FlagKind::FailedStep => "failed_step",
        FlagKind::UnplannedCall => "unplanned_call",
    }
}

fn attribute<'a>(stored: &'a StoredEvent, key: &str) -> Option<&'a str> {
    stored.event.get("attributes")?.get(key)?.as_str()
}

/// A server-to-client request recorded inside a call (elicitation,
/// sampling): not a call of its own.
pub fn is_server_request(action: &str) -> bool {
    action.starts_with("mcp.")
        && (action.ends_with(".elicitation.create") || action.ends_with(".sampling.create"))
}

/// A request the HTTP proxy refused (`http.<route>.refused`, or
/// `http.refused` for an unknown route): recorded evidence of a refusal,
/// never forwarded, so not a call. Route names cannot contain `.`, and the
/// proxy's default action names (`http.<route>.<METHOD>.<path>`) have more
/// segments, so no proxied call is named like this (unless a route's
/// `action` template is written to).
pub fn is_refused_request(action: &str) -> bool {
    action == "http.refused"
        || action
            .strip_prefix("http.")
            .and_then(|rest| rest.strip_suffix(".refused"))
            .is_some_and(|route| !route.is_empty() && !route.contains('.'))
}

/// Whether `event` is a call the guard refused before it reached its
/// upstream (`intentproof.guard.decision = refused`): evidence of the
/// refusal, not a call a plan is judged on (it never ran).
pub fn is_guard_refusal(event: &Value) -> bool {
    event
        .get("attributes")
        .and_then(Value::as_object)
        .is_some_and(intentproof_policy::guard::refused)
}

/// Whether an event of `action` is a call a plan is judged on. Plan
/// declarations and closes, fail-closed markers, task completions, server
/// requests, approval records and requests the HTTP proxy refused are not. (The TUI's plan
/// panel uses this too, so the two cannot drift apart.)
pub fn is_call(action: &str) -> bool {
    action != PLAN_ACTION
        && action != PLAN_CLOSE_ACTION
        && action != STARTED_ACTION
        && action != COMPLETED_ACTION
        && !is_server_request(action)
        && !is_refused_request(action)
        && !action.starts_with(APPROVAL_ACTIONS)
}

/// The prefix of the approval events (requested, decided): records about a
/// held call, not calls.
const APPROVAL_ACTIONS: &str = "intentproof.approval.";

/// The `tool_changed` findings of an `intentproof.tools.changed` event
/// (`m`, its `output`): one per tool, in the event's order. The one
/// builder, for the reference and the live findings.
pub(crate) fn tool_changed_rows(m: &EventMeta, output: &Value) -> Vec<FindingRow> {
    let server = output.get("server").and_then(Value::as_str).unwrap_or("?");
    let mode = output
        .get("on_tool_change")
        .and_then(Value::as_str)
        .unwrap_or("flag");
    let effect = match mode {
        "hide" => "hidden from the agent and its calls refused",
        "block" => "its calls refused",
        _ => "flagged only",
    };
    let tools = output.get("tools").and_then(Value::as_array);
    tools
        .into_iter()
        .flatten()
        .filter_map(|tool| {
            let name = tool.get("name")?.as_str()?;
            let fields: Vec<&str> = tool
                .get("fields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let what = match tool.get("old_digest").and_then(Value::as_str) {
                Some(old) => format!(
                    "changed since it was pinned ({} differ; {old} -> {})",
                    fields.join(", "),
                    tool.get("new_digest").and_then(Value::as_str).unwrap_or("?")
                ),
                None => "appeared after the server's tools were pinned".to_owned(),
            };
            Some(FindingRow {
                kind: "tool_changed".into(),
                plan_id: None,
                intent: Some(m.intent.clone()),
                correlation_id: m.correlation_id.clone(),
                step_index: None,
                action: format!("mcp.{server}.{name}"),
                event_ids: vec![m.event_id.clone()],
                message: format!(
                    "tool {name} of server {server} {what}; {effect} until approved (intentproof tools diff {server} {name})"
                ),
                at: m.completed_at.clone(),
            })
        })
        .collect()
}

/// The finding of a call the client never finished, if `stored` is one.
fn incomplete_call(stored: &StoredEvent) -> Option<FindingRow> {
    if stored.event.pointer("/error/name").and_then(Value::as_str) != Some(INCOMPLETE_CALL) {
        return None;
    }
    let why = stored
        .event
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or(NEVER_FINISHED);
    Some(incomplete_call_row(
        &stored.entry.meta,
        attribute(stored, "intentproof.plan.id"),
        why,
    ))
}

/// Why an incomplete call ended, when its error says nothing.
pub(crate) const NEVER_FINISHED: &str = "the client never finished it";

/// The `incomplete_call` finding of the event `m`: `plan_id` is its
/// `intentproof.plan.id` attribute, `why` its error message.
pub(crate) fn incomplete_call_row(m: &EventMeta, plan_id: Option<&str>, why: &str) -> FindingRow {
    FindingRow {
        kind: "incomplete_call".into(),
        plan_id: plan_id.map(str::to_owned),
        intent: Some(m.intent.clone()),
        correlation_id: m.correlation_id.clone(),
        step_index: None,
        action: m.action.clone(),
        event_ids: vec![m.event_id.clone()],
        message: format!("{} never finished: {why}", m.action),
        at: m.completed_at.clone(),
    }
}

/// The finding of a task call with no completion.
fn task_unfinished(
    stored: &StoredEvent,
    task_id: &str,
    plan: Option<&DeclaredPlan>,
    at: &str,
) -> FindingRow {
    let m = &stored.entry.meta;
    task_unfinished_row(
        &m.event_id,
        &m.action,
        &m.intent,
        &m.correlation_id,
        task_id,
        plan,
        at,
    )
}

/// The `task_unfinished` finding of call `event_id` (`action`, `intent`)
/// in `correlation_id`.
pub(crate) fn task_unfinished_row(
    event_id: &str,
    action: &str,
    intent: &str,
    correlation_id: &str,
    task_id: &str,
    plan: Option<&DeclaredPlan>,
    at: &str,
) -> FindingRow {
    FindingRow {
        kind: "task_unfinished".into(),
        plan_id: plan.map(|p| p.plan_id.clone()),
        intent: Some(plan.map_or_else(|| intent.to_owned(), |p| p.intent.clone())),
        correlation_id: correlation_id.to_owned(),
        step_index: None,
        action: action.to_owned(),
        event_ids: vec![event_id.to_owned()],
        message: format!(
            "{action} started task {task_id} and its outcome (completed, failed or cancelled) was never seen"
        ),
        at: at.to_owned(),
    }
}

/// A stored event as the policy evaluator reads it.
pub fn flow_event(stored: &StoredEvent) -> FlowEvent {
    let m = &stored.entry.meta;
    let mut event = FlowEvent::new(&m.event_id, &m.action);
    event.status = Some(m.status.clone());
    event.started_at = Some(m.started_at.clone());
    event.completed_at = Some(m.completed_at.clone());
    if let Some(attributes) = stored.event.get("attributes").and_then(Value::as_object) {
        event.attributes = attributes.clone();
    }
    event
}

/// The plan a declaration event declares. Steps naming a bare tool become
/// `mcp.<server>.<tool>` actions; steps naming a full `mcp.` or `http.`
/// action keep it (a plan may span MCP servers and HTTP APIs).
pub fn declared_plan(stored: &StoredEvent) -> Option<DeclaredPlan> {
    declared_plan_of(&stored.event)
}

/// [`declared_plan`] of a declaration event's JSON.
pub(crate) fn declared_plan_of(event: &Value) -> Option<DeclaredPlan> {
    if event.get("status").and_then(Value::as_str) != Some("ok") {
        return None;
    }
    let plan_id = event.pointer("/output/plan_id")?.as_str()?.to_owned();
    let inputs = event.get("inputs")?;
    let server = event
        .pointer("/attributes/mcp.server")
        .and_then(Value::as_str);
    let steps = inputs
        .get("steps")?
        .as_array()?
        .iter()
        .filter_map(|step| {
            let tool = step.get("tool").or_else(|| step.get("action"))?.as_str()?;
            let action = match server {
                Some(server) if !tool.starts_with("mcp.") && !tool.starts_with("http.") => {
                    format!("mcp.{server}.{tool}")
                }
                _ => tool.to_owned(),
            };
            Some(PlanStep {
                action,
                purpose: step
                    .get("purpose")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            })
        })
        .collect();
    Some(DeclaredPlan {
        plan_id,
        intent: inputs.get("intent")?.as_str()?.to_owned(),
        steps,
        ordered: inputs
            .get("ordered")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

pub(crate) fn parse_time(text: &str) -> Option<SystemTime> {
    intentproof_core::parse_rfc3339(text)
}

/// What the reference [`plans_and_findings`] reads: a daemon's [`Store`],
/// or events held in memory ([`MemorySource`]: the fleet view's, read
/// from PostgreSQL across daemons). `seq` orders the events: a store's
/// journal order, or the fleet's merged order.
pub trait EventSource {
    /// Index entries whose action starts with `prefix`, in `seq` order.
    fn entries_with_action_prefix(&self, prefix: &str) -> Result<Vec<IndexEntry>, StoreError>;
    /// Every event of `correlation`.
    fn chain(&self, correlation: &str) -> Result<Vec<StoredEvent>, StoreError>;
    /// The event of `entry`.
    fn read_entry(&self, entry: IndexEntry) -> Result<StoredEvent, StoreError>;
    /// The latest `completed_at` of `correlation`'s events.
    fn last_at(&self, correlation: &str) -> Result<Option<String>, StoreError>;
    /// Every correlation and its latest `completed_at`.
    fn correlations(&self) -> Result<Vec<(String, String)>, StoreError>;
}

impl EventSource for Store {
    fn entries_with_action_prefix(&self, prefix: &str) -> Result<Vec<IndexEntry>, StoreError> {
        Store::entries_with_action_prefix(self, prefix)
    }
    fn chain(&self, correlation: &str) -> Result<Vec<StoredEvent>, StoreError> {
        Store::chain(self, correlation)
    }
    fn read_entry(&self, entry: IndexEntry) -> Result<StoredEvent, StoreError> {
        Store::read_entry(self, entry)
    }
    fn last_at(&self, correlation: &str) -> Result<Option<String>, StoreError> {
        Ok(self.chain_summary(correlation)?.map(|s| s.last_at))
    }
    fn correlations(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .chains(usize::MAX)?
            .into_iter()
            .map(|s| (s.correlation_id, s.last_at))
            .collect())
    }
}

/// Events held in memory as their signed bytes, in the order given (entry
/// `seq` = position; the fleet view's, merged from several daemons). An
/// event is parsed only when the reference reads it (a planned flow, a
/// gateway call's attributes), so what it holds is the bytes and the facts.
#[derive(Debug, Default)]
pub struct MemorySource {
    entries: Vec<IndexEntry>,
    bytes: Vec<Vec<u8>>,
    by_correlation: HashMap<String, Vec<usize>>,
    /// A flow's last activity when it has events not held here.
    last_at: HashMap<String, String>,
}

impl MemorySource {
    /// Holds `records` (facts and signed bytes) in this order.
    pub fn new(records: Vec<(EventMeta, Vec<u8>)>) -> MemorySource {
        let mut source = MemorySource::default();
        for (i, (meta, bytes)) in records.into_iter().enumerate() {
            source
                .by_correlation
                .entry(meta.correlation_id.clone())
                .or_default()
                .push(i);
            source.entries.push(IndexEntry {
                seq: i as u64,
                segment: 0,
                offset: 0,
                len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
                meta,
            });
            source.bytes.push(bytes);
        }
        source
    }

    /// Each correlation's latest `completed_at` over all its events, where
    /// the source holds only some of them (a flow's idleness is judged by
    /// its last event of any kind).
    pub fn with_last_at(mut self, last_at: HashMap<String, String>) -> MemorySource {
        self.last_at = last_at;
        self
    }

    fn stored(&self, i: usize) -> Result<StoredEvent, StoreError> {
        let (Some(entry), Some(bytes)) = (self.entries.get(i), self.bytes.get(i)) else {
            return Err(StoreError::BadIndex(format!("position {i}")));
        };
        let event = serde_json::from_slice(bytes).map_err(|e| {
            StoreError::BadIndex(format!("event {} is not JSON ({e})", entry.meta.event_id))
        })?;
        Ok(StoredEvent {
            entry: entry.clone(),
            event,
        })
    }
}

impl EventSource for MemorySource {
    fn entries_with_action_prefix(&self, prefix: &str) -> Result<Vec<IndexEntry>, StoreError> {
        Ok(self
            .entries
            .iter()
            .filter(|e| e.meta.action.starts_with(prefix))
            .cloned()
            .collect())
    }
    fn chain(&self, correlation: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.by_correlation
            .get(correlation)
            .into_iter()
            .flatten()
            .map(|&i| self.stored(i))
            .collect()
    }
    fn read_entry(&self, entry: IndexEntry) -> Result<StoredEvent, StoreError> {
        self.stored(usize::try_from(entry.seq).unwrap_or(usize::MAX))
    }
    fn last_at(&self, correlation: &str) -> Result<Option<String>, StoreError> {
        let held = self
            .by_correlation
            .get(correlation)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.entries.get(i))
            .map(|e| &e.meta.completed_at)
            .max();
        Ok(held.max(self.last_at.get(correlation)).cloned())
    }
    fn correlations(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        for correlation in self.by_correlation.keys() {
            if let Some(last) = self.last_at(correlation)? {
                out.push((correlation.clone(), last));
            }
        }
        Ok(out)
    }
}

/// A finished stretch of a chain: the plan, its declaration, its calls, why
/// it closed (`None`: still open) and when.
type Segment<'a> = (
    DeclaredPlan,
    &'a StoredEvent,
    Vec<&'a StoredEvent>,
    Option<&'static str>,
    String,
);

/// Every plan and every finding, newest first. `policies` are the
/// configured verification policies: each is evaluated on every flow
/// (correlation) its `scope.any_event_action_in` matches, once the flow has
/// been idle for `idle_timeout`; failed rules are `policy_violation`s.
pub fn plans_and_findings<S: EventSource + ?Sized>(
    store: &S,
    idle_timeout: Duration,
    now: SystemTime,
    policies: &[Policy],
) -> Result<(Vec<PlanRow>, Vec<FindingRow>), StoreError> {
    let mut plans = Vec::new();
    let mut findings = Vec::new();
    let declarations = store.entries_with_action_prefix(PLAN_ACTION)?;
    let planned: BTreeSet<String> = declarations
        .iter()
        .map(|e| e.meta.correlation_id.clone())
        .collect();
    for correlation in &planned {
        let mut chain = store.chain(correlation)?;
        chain.sort_by_key(|e| e.entry.seq);
        // Task calls' completions, by the call's event id.
        let completions: HashMap<&str, &StoredEvent> = chain
            .iter()
            .filter(|e| e.entry.meta.action == COMPLETED_ACTION)
            .filter_map(|e| Some((attribute(e, CALL_EVENT_ID_ATTRIBUTE)?, e)))
            .collect();
        findings.extend(chain.iter().filter_map(incomplete_call));
        // Split the chain at each declaration.
        let mut current: Option<(DeclaredPlan, &StoredEvent, Vec<&StoredEvent>)> = None;
        let mut finished: Vec<Segment<'_>> = Vec::new();
        for stored in &chain {
            let action = stored.entry.meta.action.as_str();
            if action == PLAN_ACTION {
                if let Some(plan) = declared_plan(stored) {
                    if let Some((p, d, calls)) = current.take() {
                        finished.push((
                            p,
                            d,
                            calls,
                            Some("replaced"),
                            stored.entry.meta.completed_at.clone(),
                        ));
                    }
                    current = Some((plan, stored, Vec::new()));
                }
                continue;
            }
            if action == PLAN_CLOSE_ACTION {
                let target = stored
                    .event
                    .pointer("/inputs/plan_id")
                    .and_then(Value::as_str);
                let by = match stored
                    .event
                    .pointer("/inputs/reason")
                    .and_then(Value::as_str)
                {
                    Some(SESSION_ENDED) => "session_ended",
                    _ => "closed",
                };
                if let Some((p, d, calls)) = current.take() {
                    if target == Some(p.plan_id.as_str()) {
                        finished.push((
                            p,
                            d,
                            calls,
                            Some(by),
                            stored.entry.meta.completed_at.clone(),
                        ));
                    } else {
                        current = Some((p, d, calls));
                    }
                }
                continue;
            }
            // Fail-closed markers, task completions, server requests and
            // refused calls are not calls.
            if !is_call(action) || is_guard_refusal(&stored.event) {
                continue;
            }
            if let Some((_, _, calls)) = current.as_mut() {
                calls.push(stored);
            }
        }
        if let Some((p, d, calls)) = current.take() {
            let last = calls.last().copied().unwrap_or(d);
            let last_at = last.entry.meta.completed_at.clone();
            let idle = parse_time(&last_at)
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|quiet| quiet >= idle_timeout);
            finished.push((p, d, calls, idle.then_some("idle"), last_at));
        }
        for (plan, declaration, calls, closed_by, closed_at) in finished {
            let flags = match closed_by {
                Some(_) => {
                    let flow: Vec<FlowEvent> = calls
                        .iter()
                        .map(|e| {
                            let mut flow = flow_event(e);
                            // A task call ends as its task did.
                            if let Some(done) = completions.get(e.entry.meta.event_id.as_str()) {
                                flow.status = Some(done.entry.meta.status.clone());
                            }
                            flow
                        })
                        .collect();
                    classify_plan(&plan, &flow)
                }
                None => Vec::new(),
            };
            let unfinished: Vec<FindingRow> = match closed_by {
                Some(_) => calls
                    .iter()
                    .filter(|e| !completions.contains_key(e.entry.meta.event_id.as_str()))
                    .filter_map(|e| {
                        let task_id = attribute(e, TASK_ID_ATTRIBUTE)?;
                        Some(task_unfinished(e, task_id, Some(&plan), &closed_at))
                    })
                    .collect(),
                None => Vec::new(),
            };
            for flag in &flags {
                findings.push(FindingRow {
                    kind: kind_name(flag.kind).into(),
                    plan_id: Some(plan.plan_id.clone()),
                    intent: Some(plan.intent.clone()),
                    correlation_id: correlation.clone(),
                    step_index: flag.step_index,
                    action: flag.action.clone(),
                    event_ids: flag.event_ids.clone(),
                    message: flag.message.clone(),
                    at: closed_at.clone(),
                });
            }
            plans.push(PlanRow {
                plan_id: plan.plan_id.clone(),
                correlation_id: correlation.clone(),
                intent: plan.intent.clone(),
                steps: plan.steps.clone(),
                declared_at: declaration.entry.meta.started_at.clone(),
                state: if closed_by.is_some() {
                    "closed".into()
                } else {
                    "open".into()
                },
                closed_by: closed_by.map(Into::into),
                // An open plan's `closed_at` is its last activity.
                closes_at: match closed_by {
                    None => parse_time(&closed_at)
                        .map(|t| intentproof_core::format_rfc3339_millis(t + idle_timeout)),
                    Some(_) => None,
                },
                calls: calls.len(),
                flags: flags.len() + unfinished.len(),
            });
            findings.extend(unfinished);
        }
    }
    // Gateway calls in correlations that never declared a plan.
    let mut unplanned: BTreeMap<String, Vec<IndexEntry>> = BTreeMap::new();
    let gateway_calls = store
        .entries_with_action_prefix("mcp.")?
        .into_iter()
        .chain(store.entries_with_action_prefix("http.")?);
    for entry in gateway_calls {
        // A refused HTTP request is not a call, planned or not; nor is a
        // call the guard refused (an error event: only those are read).
        if is_refused_request(&entry.meta.action)
            || (entry.meta.status == "error"
                && is_guard_refusal(&store.read_entry(entry.clone())?.event))
        {
            continue;
        }
        if !planned.contains(&entry.meta.correlation_id) {
            unplanned
                .entry(entry.meta.correlation_id.clone())
                .or_default()
                .push(entry);
        }
    }
    // Completed task calls of those correlations.
    let mut completed: HashSet<String> = HashSet::new();
    for entry in store.entries_with_action_prefix(COMPLETED_ACTION)? {
        if planned.contains(&entry.meta.correlation_id) {
            continue;
        }
        let stored = store.read_entry(entry)?;
        if let Some(call) = attribute(&stored, CALL_EVENT_ID_ATTRIBUTE) {
            completed.insert(call.to_owned());
        }
    }
    for (correlation, entries) in unplanned {
        let idle = store
            .last_at(&correlation)?
            .and_then(|last_at| parse_time(&last_at).map(|t| (t, last_at)))
            .filter(|(t, _)| {
                now.duration_since(*t)
                    .is_ok_and(|quiet| quiet >= idle_timeout)
            })
            .map(|(_, at)| at);
        for entry in entries {
            if entry.meta.action.starts_with("mcp.") {
                let stored = store.read_entry(entry.clone())?;
                findings.extend(incomplete_call(&stored));
                if let (Some(task_id), Some(at)) = (attribute(&stored, TASK_ID_ATTRIBUTE), &idle)
                    && !completed.contains(&entry.meta.event_id)
                {
                    findings.push(task_unfinished(&stored, task_id, None, at));
                }
                if is_server_request(&entry.meta.action) {
                    continue;
                }
            }
            findings.push(FindingRow {
                kind: "unplanned_call".into(),
                plan_id: None,
                intent: None,
                correlation_id: correlation.clone(),
                step_index: None,
                action: entry.meta.action.clone(),
                event_ids: vec![entry.meta.event_id.clone()],
                message: format!("{} was called with no plan declared", entry.meta.action),
                at: entry.meta.completed_at.clone(),
            });
        }
    }
    if !policies.is_empty() {
        findings.extend(policy_violations(store, idle_timeout, now, policies)?);
    }
    for entry in store.entries_with_action_prefix(TOOLS_CHANGED_ACTION)? {
        if entry.meta.action != TOOLS_CHANGED_ACTION {
            continue;
        }
        let stored = store.read_entry(entry)?;
        let output = stored.event.get("output").cloned().unwrap_or(Value::Null);
        findings.extend(tool_changed_rows(&stored.entry.meta, &output));
    }
    plans.sort_by(|a, b| b.declared_at.cmp(&a.declared_at));
    findings.sort_by(|a, b| b.at.cmp(&a.at));
    Ok((plans, findings))
}

fn policy_violations<S: EventSource + ?Sized>(
    store: &S,
    idle_timeout: Duration,
    now: SystemTime,
    policies: &[Policy],
) -> Result<Vec<FindingRow>, StoreError> {
    let mut out = Vec::new();
    for (correlation, last_at) in store.correlations()? {
        let idle = parse_time(&last_at)
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|quiet| quiet >= idle_timeout);
        if !idle {
            continue;
        }
        out.extend(
            policy_rows(store, policies, &correlation, &last_at)?
                .into_iter()
                .map(|(_, row)| row),
        );
    }
    Ok(out)
}

/// The failed rules of `policies` on the chain of `correlation` (idle,
/// last event at `last_at`), in policy order: (policy index, row). The one
/// builder of policy rows, for the reference and the live findings.
pub(crate) fn policy_rows<S: EventSource + ?Sized>(
    store: &S,
    policies: &[Policy],
    correlation: &str,
    last_at: &str,
) -> Result<Vec<(usize, FindingRow)>, StoreError> {
    let mut chain = store.chain(correlation)?;
    chain.sort_by(|a, b| {
        a.entry
            .meta
            .completed_at
            .cmp(&b.entry.meta.completed_at)
            .then(a.entry.seq.cmp(&b.entry.seq))
    });
    let flow = Flow {
        flow_id: correlation.to_owned(),
        tenant_id: None,
        correlation_id: Some(correlation.to_owned()),
        flow_merkle_root: None,
        closed_at: None,
        // A call the guard refused never ran: policies do not see it.
        events: chain
            .iter()
            .filter(|stored| !is_guard_refusal(&stored.event))
            .map(flow_event)
            .collect(),
    };
    let mut out = Vec::new();
    for (p, policy) in policies.iter().enumerate() {
        if !scope_matches(policy, &flow) {
            continue;
        }
        let run = evaluate(policy, &flow, &[], &EvalOptions::default());
        for finding in run.findings.iter().filter(|f| f.outcome == Outcome::Fail) {
            // The action the rule is about (what a person looks for in the
            // ACTION column), else its evidence's, else the rule.
            let action = rule_action(policy, &finding.rule_id)
                .or_else(|| {
                    chain
                        .iter()
                        .find(|e| finding.evidence_event_ids.contains(&e.entry.meta.event_id))
                        .map(|e| e.entry.meta.action.clone())
                })
                .unwrap_or_else(|| finding.rule_id.clone());
            out.push((
                p,
                FindingRow {
                    kind: "policy_violation".into(),
                    plan_id: None,
                    intent: policy.policy_id().map(str::to_owned),
                    correlation_id: correlation.to_owned(),
                    step_index: None,
                    action,
                    event_ids: finding.evidence_event_ids.clone(),
                    message: format!(
                        "policy {} rule {}: {}",
                        policy.policy_id().unwrap_or("?"),
                        finding.rule_id,
                        finding.human_summary
                    ),
                    at: last_at.to_owned(),
                },
            ));
        }
    }
    Ok(out)
}

/// The action a verification rule names: `action` (required, forbidden,
/// count rules), else `after` (ordering: the one that came too early),
/// else `before`; in the rule's `spec` or written flat.
pub(crate) fn rule_action(policy: &Policy, rule_id: &str) -> Option<String> {
    let rule = policy.rule(rule_id)?;
    let spec = rule.get("spec").and_then(Value::as_object);
    ["action", "after", "before"].iter().find_map(|key| {
        spec.and_then(|s| s.get(*key))
            .or_else(|| rule.get(*key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use intentproof_core::ExecutionEvent;
    use intentproof_core::keys::InstanceKey;
    use intentproof_core::seal::Sealer;
    use intentproof_mcp::recorder::{ClientVerdict, Recorder, RecorderConfig};
    use intentproof_store::{EventMeta, Incoming, StoreOptions};
    use serde_json::json;

    /// A store holding `events`, sealed in order.
    fn store_of(events: &[ExecutionEvent]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default(), &|_| None).unwrap();
        let sealer = Sealer::new(InstanceKey::generate().unwrap());
        for event in events {
            let sealed = sealer.seal(event).unwrap();
            let meta = EventMeta::from_v1(&sealed.event, None).unwrap();
            let bytes = serde_json::to_vec(&sealed.event).unwrap();
            let appended = store.append(vec![Incoming::new(meta, bytes)]).unwrap();
            assert!(appended[0].is_ok(), "{appended:?}");
        }
        (dir, store)
    }

    /// Runs a session through a recorder: (from the client?, message).
    fn session(messages: &[(bool, Value)]) -> Vec<ExecutionEvent> {
        let mut recorder = Recorder::new(RecorderConfig::new("srv"), "sess");
        let mut events = Vec::new();
        for (from_client, message) in messages {
            if *from_client {
                let verdict = recorder.on_client(message, &mut events);
                assert!(matches!(
                    verdict,
                    ClientVerdict::Forward | ClientVerdict::Reply(_)
                ));
            } else {
                recorder.on_server(message, &mut events);
            }
        }
        recorder.on_session_end(&mut events);
        events
    }

    fn declare(steps: Value) -> (bool, Value) {
        (
            true,
            json!({"jsonrpc":"2.0","id":"p","method":"tools/call","params":{"name":"intentproof_declare_plan","arguments":{"intent":"compute","steps":steps,"correlation_id":"flow-1"}}}),
        )
    }

    fn call(id: u64, tool: &str) -> (bool, Value) {
        (
            true,
            json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}}),
        )
    }

    fn answer(id: u64, result: Value) -> (bool, Value) {
        (false, json!({"jsonrpc":"2.0","id":id,"result":result}))
    }

    fn findings_of(events: &[ExecutionEvent]) -> Vec<(String, String, Option<usize>)> {
        let (_dir, store) = store_of(events);
        let later = SystemTime::now() + Duration::from_secs(3600);
        let (_, findings) =
            plans_and_findings(&store, Duration::from_secs(60), later, &[]).unwrap();
        let mut out: Vec<_> = findings
            .into_iter()
            .map(|f| (f.kind.into_owned(), f.action, f.step_index))
            .collect();
        out.sort();
        out
    }

    fn kinds(list: &[(&str, &str, Option<usize>)]) -> Vec<(String, String, Option<usize>)> {
        let mut out: Vec<_> = list
            .iter()
            .map(|(k, a, s)| ((*k).to_owned(), (*a).to_owned(), *s))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_step_whose_task_failed_did_not_succeed() {
        let events = session(&[
            declare(json!([{"tool": "slow"}])),
            call(1, "slow"),
            answer(
                1,
                json!({"resultType":"task","taskId":"t1","status":"working"}),
            ),
            (
                true,
                json!({"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{"taskId":"t1"}}),
            ),
            answer(
                2,
                json!({"resultType":"task","taskId":"t1","status":"failed","statusMessage":"boom"}),
            ),
        ]);
        // Declaration, call, completion, and the close at session end.
        assert_eq!(events.len(), 4);
        assert_eq!(
            findings_of(&events),
            kinds(&[("failed_step", "mcp.srv.slow", Some(0))])
        );
        // The same task completed: nothing to say.
        let events = session(&[
            declare(json!([{"tool": "slow"}])),
            call(1, "slow"),
            answer(
                1,
                json!({"resultType":"task","taskId":"t1","status":"working"}),
            ),
            (
                true,
                json!({"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{"taskId":"t1"}}),
            ),
            answer(
                2,
                json!({"resultType":"task","taskId":"t1","status":"completed","result":{"content":[]}}),
            ),
        ]);
        assert_eq!(findings_of(&events), kinds(&[]));
    }

    #[test]
    fn a_task_never_seen_finished_is_flagged_when_its_plan_closes() {
        let events = session(&[
            declare(json!([{"tool": "slow"}])),
            call(1, "slow"),
            answer(1, json!({"task":{"taskId":"t1","status":"working"}})),
        ]);
        assert_eq!(
            findings_of(&events),
            kinds(&[("task_unfinished", "mcp.srv.slow", None)])
        );
        // Without a plan: unplanned, and unfinished once idle.
        let events = session(&[
            call(1, "slow"),
            answer(1, json!({"task":{"taskId":"t1","status":"working"}})),
        ]);
        assert_eq!(
            findings_of(&events),
            kinds(&[
                ("task_unfinished", "mcp.srv.slow", None),
                ("unplanned_call", "mcp.srv.slow", None),
            ])
        );
        // Not yet idle: only the unplanned call.
        let (_dir, store) = store_of(&events);
        let (_, findings) =
            plans_and_findings(&store, Duration::from_secs(60), SystemTime::now(), &[]).unwrap();
        assert_eq!(
            findings.iter().map(|f| &*f.kind).collect::<Vec<_>>(),
            vec!["unplanned_call"]
        );
    }

    #[test]
    fn an_abandoned_multi_round_call_is_an_incomplete_call() {
        let ask = answer(
            1,
            json!({"resultType":"input_required","inputRequests":{"n":{"method":"elicitation/create","params":{"message":"name?"}}},"requestState":"s"}),
        );
        let events = session(&[
            declare(json!([{"tool": "ask"}])),
            call(1, "ask"),
            ask.clone(),
        ]);
        assert_eq!(
            findings_of(&events),
            kinds(&[
                ("failed_step", "mcp.srv.ask", Some(0)),
                ("incomplete_call", "mcp.srv.ask", None),
            ])
        );
        let events = session(&[call(1, "ask"), ask]);
        assert_eq!(
            findings_of(&events),
            kinds(&[
                ("incomplete_call", "mcp.srv.ask", None),
                ("unplanned_call", "mcp.srv.ask", None),
            ])
        );
    }

    #[test]
    fn server_requests_are_not_calls() {
        // Answered after its call finished: an event of its own.
        let events = session(&[
            declare(json!([{"tool": "book"}])),
            call(1, "book"),
            (
                false,
                json!({"jsonrpc":"2.0","id":0,"method":"elicitation/create","params":{"message":"date?","requestedSchema":{}}}),
            ),
            answer(1, json!({"content":[]})),
            (
                true,
                json!({"jsonrpc":"2.0","id":0,"result":{"action":"accept","content":{}}}),
            ),
        ]);
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                PLAN_ACTION,
                "mcp.srv.book",
                "mcp.srv.elicitation.create",
                PLAN_CLOSE_ACTION
            ]
        );
        assert_eq!(findings_of(&events), kinds(&[]));
    }

    /// An event the HTTP proxy records, in correlation `c-http`.
    fn proxied(action: &str, refused: bool) -> ExecutionEvent {
        let builder = ExecutionEvent::builder("undeclared", action).correlation_id("c-http");
        if refused {
            builder
                .output(json!({"status": 400}))
                .error(intentproof_core::ErrorInfo {
                    name: "Refused".into(),
                    message: "path tricks".into(),
                    stack: None,
                })
                .build()
        } else {
            builder.output(json!({"status": 200})).build()
        }
    }

    #[test]
    fn a_refused_http_request_is_not_a_call() {
        for refused in ["http.pay.refused", "http.refused"] {
            assert!(is_refused_request(refused), "{refused}");
            assert!(!is_call(refused), "{refused}");
        }
        for call in [
            "http.pay.GET./v1/refunds",
            "http.pay.GET./refused",
            "http..refused",
            "mcp.pay.refused",
        ] {
            assert!(is_call(call), "{call}");
        }
        // No plan: the proxied call is unplanned, the refused probes are not.
        let events = [
            proxied("http.pay.refused", true),
            proxied("http.refused", true),
            proxied("http.pay.GET./v1/refunds", false),
        ];
        assert_eq!(
            findings_of(&events),
            kinds(&[("unplanned_call", "http.pay.GET./v1/refunds", None)])
        );
        // Under a plan (declared over HTTP: steps name full actions): the
        // refused probe is neither a step nor an unplanned call.
        let declaration = ExecutionEvent::builder("Refund ORD-7", PLAN_ACTION)
            .correlation_id("c-http")
            .inputs(json!({"intent": "Refund ORD-7", "steps": [
                {"action": "http.pay.POST./v1/refunds"},
                {"action": "http.pay.GET./v1/refunds"},
            ]}))
            .output(json!({"plan_id": "plan-7", "correlation_id": "c-http"}))
            .build();
        let events = [
            declaration,
            proxied("http.pay.refused", true),
            proxied("http.pay.GET./v1/refunds", false),
        ];
        assert_eq!(
            findings_of(&events),
            kinds(&[("incomplete_intent", "http.pay.POST./v1/refunds", Some(0))])
        );
    }

    #[test]
    fn event_times_parse() {
        let t = parse_time("2026-05-11T14:32:17.421Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
            1_778_509_937_421
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}
