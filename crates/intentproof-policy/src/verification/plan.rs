//! Declared plans: compiling them to policies, and flagging a closed plan's
//! events (incomplete intent, failed step, unplanned call).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::input::FlowEvent;
use super::policy::{Policy, PolicyError};

/// Action of the event that records a plan declaration; never flagged as
/// unplanned.
pub const PLAN_DECLARE_ACTION: &str = "intentproof.plan.declare";

/// A plan an agent (or a library caller) declared before acting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredPlan {
    /// Plan id (unique within the tenant).
    pub plan_id: String,
    /// What the plan is meant to achieve.
    pub intent: String,
    /// The steps, in the declared order.
    pub steps: Vec<PlanStep>,
    /// True when the steps must happen in this order.
    #[serde(default)]
    pub ordered: bool,
}

/// One step of a [`DeclaredPlan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    /// The action the step calls (the gateway resolves an MCP tool name to
    /// its action before building the plan; `tool` is accepted as an alias).
    #[serde(alias = "tool")]
    pub action: String,
    /// Why the step is taken.
    #[serde(default)]
    pub purpose: String,
}

/// Why a plan cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A step names no action.
    #[error(
        "plan {plan_id:?}: step {step} has an empty action; every step must name the tool/action it calls"
    )]
    EmptyAction {
        /// The plan.
        plan_id: String,
        /// 1-based step number.
        step: usize,
    },
    /// The plan id is empty.
    #[error("the plan has an empty plan_id; give the plan an id")]
    EmptyPlanId,
    /// The compiled policy cannot be fingerprinted.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl DeclaredPlan {
    /// Compiles the plan to a verification policy for `tenant_id`:
    ///
    /// - policy id `plan.<plan_id>`, name = the intent, scope = the steps'
    ///   actions (`ignore_flows_with_no_match: false`);
    /// - per step `n` (1-based), a `required` rule `step-<n>` (severity
    ///   high) on the step's action with `where.status: ok` and `min` = how
    ///   many steps up to this one name that action (1 for the first, 2 for
    ///   the second step calling the same action...);
    /// - when `ordered`, an `ordering` rule `order-<n>-<n+1>` (severity
    ///   medium) between consecutive steps whose actions differ.
    pub fn compile(&self, tenant_id: &str) -> Result<Policy, PlanError> {
        if self.plan_id.is_empty() {
            return Err(PlanError::EmptyPlanId);
        }
        if let Some(i) = self.steps.iter().position(|s| s.action.is_empty()) {
            return Err(PlanError::EmptyAction {
                plan_id: self.plan_id.clone(),
                step: i + 1,
            });
        }
        let mut rules = Vec::new();
        let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
        let mut actions: Vec<&str> = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let count = seen.entry(step.action.as_str()).or_insert(0);
            *count += 1;
            if *count == 1 {
                actions.push(&step.action);
            }
            rules.push(json!({
                "id": format!("step-{}", i + 1),
                "category": "required",
                "severity": "high",
                "spec": {"action": step.action, "min": *count, "where": {"status": "ok"}},
            }));
        }
        if self.ordered {
            for (i, pair) in self.steps.windows(2).enumerate() {
                if pair[0].action != pair[1].action {
                    rules.push(json!({
                        "id": format!("order-{}-{}", i + 1, i + 2),
                        "category": "ordering",
                        "severity": "medium",
                        "spec": {"before": pair[0].action, "after": pair[1].action, "scope": "first-occurrence"},
                    }));
                }
            }
        }
        let doc = json!({
            "schema": super::policy::POLICY_SCHEMA,
            "policy_id": format!("plan.{}", self.plan_id),
            "policy_version": 1,
            "tenant_id": tenant_id,
            "provenance_class": "platform_attested",
            "name": self.intent,
            "description": format!("Compiled from declared plan {}.", self.plan_id),
            "spec_version": "1.0.0",
            "scope": {"any_event_action_in": actions, "ignore_flows_with_no_match": false},
            "rules": rules,
        });
        Ok(Policy::compile(doc)?)
    }
}

/// What a [`Flag`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// A step never succeeded and has no failed attempt either.
    IncompleteIntent,
    /// A step was attempted but every attempt failed.
    FailedStep,
    /// An event whose action no step covers.
    UnplannedCall,
}

/// One finding about a closed plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    /// What is flagged.
    pub kind: FlagKind,
    /// 0-based step index (`None` for an unplanned call).
    pub step_index: Option<usize>,
    /// The step's (or the unplanned event's) action.
    pub action: String,
    /// Events involved: the failed attempts, or the unplanned event; empty
    /// for an incomplete intent.
    pub event_ids: Vec<String>,
    /// One sentence for people.
    pub message: String,
}

/// Flags a closed plan's events.
///
/// - Steps are matched to events by action: the `k`-th step naming an
///   action needs at least `k` events of that action with status `ok`.
/// - A step that is not matched is a [`FlagKind::FailedStep`] when events
///   of its action failed (status `error`), else a
///   [`FlagKind::IncompleteIntent`]; a step gets at most one flag.
/// - Every event (with an action) whose action no step names is a
///   [`FlagKind::UnplannedCall`], except plan declarations
///   ([`PLAN_DECLARE_ACTION`]). Extra calls of a planned action are not
///   flagged.
///
/// Step flags come first (by step), then unplanned calls (in event order).
/// Pure: the caller decides when a plan is closed and stores the flags.
pub fn classify_plan(plan: &DeclaredPlan, events: &[FlowEvent]) -> Vec<Flag> {
    let mut ok: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failed: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for e in events {
        let Some(a) = e.action.as_deref() else {
            continue;
        };
        match e.status.as_deref() {
            Some("error") => failed.entry(a).or_default().push(e.event_id.clone()),
            _ => *ok.entry(a).or_default() += 1,
        }
    }
    let mut flags = Vec::new();
    let mut nth: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let a = step.action.as_str();
        let k = nth.entry(a).or_default();
        *k += 1;
        if ok.get(a).copied().unwrap_or(0) >= *k {
            continue;
        }
        let purpose = if step.purpose.is_empty() {
            String::new()
        } else {
            format!(" ({})", step.purpose)
        };
        match failed.get(a) {
            Some(ids) if !ids.is_empty() => flags.push(Flag {
                kind: FlagKind::FailedStep,
                step_index: Some(i),
                action: a.to_owned(),
                event_ids: ids.clone(),
                message: format!(
                    "Step {} `{a}`{purpose} failed: {} attempt{} returned an error and none succeeded.",
                    i + 1,
                    ids.len(),
                    if ids.len() == 1 { "" } else { "s" }
                ),
            }),
            _ => flags.push(Flag {
                kind: FlagKind::IncompleteIntent,
                step_index: Some(i),
                action: a.to_owned(),
                event_ids: Vec::new(),
                message: format!(
                    "Step {} `{a}`{purpose} never ran: intent {:?} is incomplete.",
                    i + 1,
                    plan.intent
                ),
            }),
        }
    }
    let planned: BTreeSet<&str> = plan.steps.iter().map(|s| s.action.as_str()).collect();
    for e in events {
        let Some(a) = e.action.as_deref() else {
            continue;
        };
        if planned.contains(a) || a == PLAN_DECLARE_ACTION {
            continue;
        }
        flags.push(Flag {
            kind: FlagKind::UnplannedCall,
            step_index: None,
            action: a.to_owned(),
            event_ids: vec![e.event_id.clone()],
            message: format!(
                "`{a}` ({}) was called but no step of plan {:?} covers it.",
                e.event_id, plan.plan_id
            ),
        });
    }
    flags
}

/// Most steps a declaration may list.
pub const MAX_PLAN_STEPS: usize = 100;

/// A plan declaration as an agent sends it, checked: the arguments of the
/// MCP gateway's plan tool and the body of the daemon's `POST /v1/plans`
/// (one format, one parser, so the two cannot drift apart).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanArguments {
    /// What the agent means to achieve (trimmed, not empty).
    pub intent: String,
    /// The steps in the declared order: (`tool` or `action`, `purpose`).
    pub steps: Vec<(String, Option<String>)>,
    /// True when the steps must happen in this order.
    pub ordered: bool,
    /// The correlation the plan's calls will carry, when the agent chose
    /// one (else whoever records the plan assigns one).
    pub correlation_id: Option<String>,
    /// Per step (same order): the calls it allows, for the guard
    /// (`max_calls`, `constraints`); unbounded when the step gives none.
    pub bounds: Vec<crate::guard::StepBounds>,
}

/// The event that records a plan declared outside an MCP session
/// (`POST /v1/plans`, the library's `declare_plan`): action
/// [`PLAN_DECLARE_ACTION`], `intent`, correlation `correlation_id`, inputs =
/// the declaration as sent, output `{plan_id, correlation_id}`,
/// attributes `intentproof.plan.id` and `intentproof.plan.ordered`, timed
/// from `started` for `elapsed`. (The MCP recorder's own declaration event
/// adds the session's attributes.)
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use intentproof_policy::verification::{plan_declaration_event, PLAN_DECLARE_ACTION};
/// let arguments = serde_json::json!({"intent": "Refund", "steps": [{"action": "pay.refund"}]});
/// let event = plan_declaration_event("Refund", arguments, "p1", "c1", false, SystemTime::now(), Duration::ZERO);
/// assert_eq!(event.action, PLAN_DECLARE_ACTION);
/// assert_eq!(event.output, Some(serde_json::json!({"plan_id": "p1", "correlation_id": "c1"})));
/// ```
pub fn plan_declaration_event(
    intent: &str,
    arguments: serde_json::Value,
    plan_id: &str,
    correlation_id: &str,
    ordered: bool,
    started: std::time::SystemTime,
    elapsed: std::time::Duration,
) -> intentproof_core::ExecutionEvent {
    use intentproof_core::{AttributeValue, Attributes, ExecutionEvent, format_rfc3339_millis};
    let mut attributes = Attributes::new();
    attributes.insert("intentproof.plan.id".into(), AttributeValue::from(plan_id));
    attributes.insert(
        "intentproof.plan.ordered".into(),
        AttributeValue::from(ordered),
    );
    ExecutionEvent::builder(intent, PLAN_DECLARE_ACTION)
        .correlation_id(correlation_id)
        .inputs(arguments)
        .attributes(attributes)
        .output(json!({"plan_id": plan_id, "correlation_id": correlation_id}))
        .timing(
            format_rfc3339_millis(started),
            format_rfc3339_millis(started + elapsed),
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        )
        .build()
}

/// Checks a plan declaration: `{"intent": "...", "steps": [{"tool" | "action":
/// "...", "purpose": "..."}], "ordered": bool, "correlation_id": "..."}`.
/// A step names what it calls as `tool` (an MCP tool, resolved to
/// `mcp.<server>.<tool>` by the gateway) or `action` (a full action such as
/// `http.<route>.<METHOD>.<template>`); `tool` wins when both are given.
/// The error names the field that is wrong and what to send instead.
/// Unknown members are ignored (the whole object is recorded as the
/// declaration's inputs).
pub fn parse_plan_arguments(arguments: &serde_json::Value) -> Result<PlanArguments, String> {
    use serde_json::Value;
    if !arguments.is_object() {
        return Err("the plan must be a JSON object {\"intent\", \"steps\"}".into());
    }
    let intent = arguments
        .get("intent")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or("`intent` is required: say what you mean to achieve")?
        .to_owned();
    let steps = arguments
        .get("steps")
        .and_then(Value::as_array)
        .ok_or("`steps` is required: a list of {tool (or action), purpose}")?;
    if steps.is_empty() {
        return Err("`steps` is empty: list the tool calls you plan to make".into());
    }
    if steps.len() > MAX_PLAN_STEPS {
        return Err(format!("`steps` has more than {MAX_PLAN_STEPS} entries"));
    }
    let mut parsed = Vec::with_capacity(steps.len());
    let mut bounds = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let tool = ["tool", "action"]
            .iter()
            .find_map(|key| {
                step.get(key)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
            })
            .ok_or_else(|| {
                format!(
                    "step {} has no `tool` (or `action`): name the tool or action it calls",
                    i + 1
                )
            })?;
        let purpose = step
            .get("purpose")
            .and_then(Value::as_str)
            .map(str::to_owned);
        parsed.push((tool.to_owned(), purpose));
        bounds.push(step_bounds(step, i)?);
    }
    let ordered = arguments
        .get("ordered")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let correlation_id = arguments
        .get("correlation_id")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    Ok(PlanArguments {
        intent,
        steps: parsed,
        ordered,
        correlation_id,
        bounds,
    })
}

/// A step's `max_calls` (a whole number from 1) and `constraints` (strings
/// in [`crate::guard::Constraint`]'s language); the error names step `i`.
fn step_bounds(step: &serde_json::Value, i: usize) -> Result<crate::guard::StepBounds, String> {
    use crate::guard::{Constraint, MAX_CONSTRAINTS};
    use serde_json::Value;
    let max_calls = match step.get("max_calls") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .filter(|n| *n >= 1)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    format!(
                        "step {}: `max_calls` must be a whole number from 1 (how many calls the step allows)",
                        i + 1
                    )
                })?,
        ),
    };
    let constraints = match step.get("constraints") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_CONSTRAINTS => items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| {
                        "each constraint is a string such as \"amount_cents <= 5000\"".to_owned()
                    })
                    .and_then(Constraint::parse)
                    .map_err(|e| format!("step {}: `constraints`: {e}", i + 1))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(format!(
                "step {}: `constraints` must be a list of at most {MAX_CONSTRAINTS} strings such as \"amount_cents <= 5000\"",
                i + 1
            ));
        }
    };
    Ok(crate::guard::StepBounds {
        max_calls,
        constraints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_arguments_take_tool_or_action_and_name_the_bad_field() {
        let parsed = parse_plan_arguments(&json!({
            "intent": " Answer ticket T-42 ",
            "steps": [
                {"tool": "lookup", "purpose": "Read it"},
                {"action": "http.tickets.PATCH./v1/tickets/{id}"},
            ],
            "ordered": true,
            "correlation_id": "ticket-T-42",
        }))
        .unwrap();
        assert_eq!(
            parsed,
            PlanArguments {
                intent: "Answer ticket T-42".into(),
                steps: vec![
                    ("lookup".into(), Some("Read it".into())),
                    ("http.tickets.PATCH./v1/tickets/{id}".into(), None),
                ],
                ordered: true,
                correlation_id: Some("ticket-T-42".into()),
                bounds: vec![crate::guard::StepBounds::default(); 2],
            }
        );
        let problem = |value: serde_json::Value| parse_plan_arguments(&value).unwrap_err();
        assert_eq!(
            problem(json!([])),
            "the plan must be a JSON object {\"intent\", \"steps\"}"
        );
        assert_eq!(
            problem(json!({"intent": " ", "steps": [{"tool": "a"}]})),
            "`intent` is required: say what you mean to achieve"
        );
        assert_eq!(
            problem(json!({"intent": "x", "steps": "a"})),
            "`steps` is required: a list of {tool (or action), purpose}"
        );
        assert_eq!(
            problem(json!({"intent": "x", "steps": []})),
            "`steps` is empty: list the tool calls you plan to make"
        );
        assert_eq!(
            problem(json!({"intent": "x", "steps": vec![json!({"tool": "a"}); 101]})),
            "`steps` has more than 100 entries"
        );
        assert_eq!(
            problem(json!({"intent": "x", "steps": [{"tool": "a"}, {"purpose": "b"}]})),
            "step 2 has no `tool` (or `action`): name the tool or action it calls"
        );
        // A step's bounds for the guard.
        let bounded = parse_plan_arguments(&json!({"intent": "x", "steps": [
            {"tool": "refund", "max_calls": 1, "constraints": ["amount_cents <= 5000"]}]}))
        .unwrap();
        assert_eq!(bounded.bounds[0].max_calls, Some(1));
        assert_eq!(
            bounded.bounds[0].constraints[0].to_string(),
            "amount_cents <= 5000"
        );
        for (step, says) in [
            (
                json!({"tool": "a", "max_calls": 0}),
                "step 1: `max_calls` must be a whole number from 1",
            ),
            (
                json!({"tool": "a", "max_calls": "2"}),
                "step 1: `max_calls` must be a whole number from 1",
            ),
            (
                json!({"tool": "a", "constraints": "x > 1"}),
                "step 1: `constraints` must be a list of at most 16 strings",
            ),
            (
                json!({"tool": "a", "constraints": [1]}),
                "step 1: `constraints`: each constraint is a string",
            ),
            (
                json!({"tool": "a", "constraints": ["x => 1"]}),
                "step 1: `constraints`: \"x => 1\": unknown comparison",
            ),
        ] {
            let e = problem(json!({"intent": "x", "steps": [step]}));
            assert!(e.starts_with(says), "{e}");
        }
    }
}
