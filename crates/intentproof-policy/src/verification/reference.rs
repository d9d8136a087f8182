//! The spec's reference fixtures (`reference-policies/<domain>/<name>/v1/`):
//! the fixture preparation and comparison described in the spec README,
//! section "Reference fixtures". Pure: the caller reads the files.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::eval::{EvalOptions, Run, evaluate};
use super::input::{Flow, InputError, parse_attestations_jsonl};
use super::policy::Policy;

/// Top-level run fields dropped before comparing with `expected-run.json`.
pub const REFERENCE_DROPPED_RUN_FIELDS: [&str; 6] = [
    "provenance_class",
    "run_id",
    "run_fingerprint",
    "signature",
    "started_at",
    "completed_at",
];

/// Why a reference fixture did not pass.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The flow or attestations cannot be read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// `expected-run.json` is not usable.
    #[error("expected-run.json: {0}")]
    Expected(String),
    /// The run differs from the expected run.
    #[error("run differs from expected-run.json: {}", .0.join("; "))]
    Mismatch(Vec<String>),
}

const T0: (&str, &str) = ("2026-05-16T00:00:00Z", "2026-05-16T00:00:01Z");
const T_LATER: (&str, &str) = ("2026-05-16T00:05:00Z", "2026-05-16T00:05:01Z");
const T_LATE: (&str, &str) = ("2026-05-16T00:30:00Z", "2026-05-16T00:30:01Z");

/// Prepares a fixture flow (whose events are bare references) as the spec
/// README says: each referenced event gets its action from the expected
/// run's evidence (the rule's `spec.action` for required, forbidden and
/// cardinality findings; `[before, after]` for ordering, a lone id getting
/// `after` for `inconclusive.ordering.before_missing` and `before` for
/// `after_missing`; `[from, to]` for temporal), status `ok`, the first event
/// times 00:00:00/00:00:01, later ones 00:05:00/00:05:01, and the `to`
/// event of a failing temporal rule 00:30:00/00:30:01 (2026-05-16, UTC).
pub fn prepare_reference_flow(
    flow: &Value,
    expected_run: &Value,
    policy: &Policy,
) -> Result<Flow, FixtureError> {
    let mut flow = Flow::from_value(flow)?;
    let findings = expected_run
        .get("findings")
        .and_then(Value::as_array)
        .ok_or_else(|| FixtureError::Expected("findings is missing".into()))?;
    let mut actions: HashMap<String, String> = HashMap::new();
    let mut late: Vec<String> = Vec::new();
    for f in findings {
        let text = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or_default();
        let rule_id = text("rule_id");
        let ids: Vec<String> = f
            .get("evidence_event_ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let Some(rule) = policy.rule(rule_id) else {
            return Err(FixtureError::Expected(format!(
                "finding for rule {rule_id:?}, which the policy does not have"
            )));
        };
        let empty = Map::new();
        let spec = rule
            .get("spec")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let s = |k: &str| spec.get(k).and_then(Value::as_str).map(str::to_owned);
        let nested = |k: &str| {
            spec.get(k)
                .and_then(|o| o.get("action"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let assigned: Vec<Option<String>> = match text("rule_category") {
            "required" | "forbidden" | "cardinality" => vec![s("action"); ids.len()],
            "ordering" => match (ids.len(), text("reason")) {
                (1, "inconclusive.ordering.before_missing") => vec![s("after")],
                (1, _) => vec![s("before")],
                _ => vec![s("before"), s("after")],
            },
            "temporal" => {
                if text("outcome") == "fail" {
                    late.extend(ids.get(1).cloned());
                }
                vec![nested("from"), nested("to")]
            }
            _ => Vec::new(),
        };
        for (id, action) in ids.iter().zip(assigned) {
            if let Some(action) = action {
                actions.entry(id.clone()).or_insert(action);
            }
        }
    }
    for (i, e) in flow.events.iter_mut().enumerate() {
        if let Some(a) = actions.get(&e.event_id) {
            e.action = Some(a.clone());
        }
        e.status = Some("ok".into());
        let (start, end) = if late.contains(&e.event_id) {
            T_LATE
        } else if i == 0 {
            T0
        } else {
            T_LATER
        };
        e.started_at = Some(start.into());
        e.completed_at = Some(end.into());
    }
    Ok(flow)
}

/// A run (or expected run) with the fields the README drops: top level
/// [`REFERENCE_DROPPED_RUN_FIELDS`]; in each finding `provenance_class`,
/// `human_summary`, an empty `evidence_attestation_ids`, and
/// `evidence_event_ids` of temporal and `inconclusive.ordering.*` findings.
pub fn reference_comparable(run: &Value) -> Value {
    let mut run = run.clone();
    if let Some(o) = run.as_object_mut() {
        for k in REFERENCE_DROPPED_RUN_FIELDS {
            o.remove(k);
        }
        if let Some(Value::Array(findings)) = o.get_mut("findings") {
            for f in findings.iter_mut().filter_map(Value::as_object_mut) {
                f.remove("provenance_class");
                f.remove("human_summary");
                if f.get("evidence_attestation_ids")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty)
                {
                    f.remove("evidence_attestation_ids");
                }
                let temporal = f.get("rule_category").and_then(Value::as_str) == Some("temporal");
                let ordering_inc = f
                    .get("reason")
                    .and_then(Value::as_str)
                    .is_some_and(|r| r.starts_with("inconclusive.ordering."));
                if temporal || ordering_inc {
                    f.remove("evidence_event_ids");
                }
            }
        }
    }
    run
}

/// Evaluates one reference fixture and compares it with its expected run.
///
/// The run is made with the expected run's `verifier_version` and
/// `verifier_build_hash` (the reference tools' identity, `1.0.0` and a zero
/// hash): those name the verifier, not the verdict.
pub fn check_reference_fixture(
    policy: &Policy,
    flow: &Value,
    attestations_jsonl: &str,
    expected_run: &Value,
) -> Result<Run, FixtureError> {
    let flow = prepare_reference_flow(flow, expected_run, policy)?;
    let attestations = parse_attestations_jsonl(attestations_jsonl)?;
    let text = |k: &str| {
        expected_run
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let defaults = EvalOptions::default();
    let options = EvalOptions {
        verifier_version: text("verifier_version").unwrap_or(defaults.verifier_version),
        verifier_build_hash: text("verifier_build_hash").unwrap_or(defaults.verifier_build_hash),
        ..EvalOptions::default()
    };
    let run = evaluate(policy, &flow, &attestations, &options);
    let mut differences = Vec::new();
    diff(
        "",
        &reference_comparable(expected_run),
        &reference_comparable(&run.to_value()),
        &mut differences,
    );
    if differences.is_empty() {
        Ok(run)
    } else {
        Err(FixtureError::Mismatch(differences))
    }
}

/// Lists where `got` differs from `expected` (`/findings/1/reason:
/// expected "x", got "y"`).
pub fn diff(path: &str, expected: &Value, got: &Value, out: &mut Vec<String>) {
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) => {
            for (k, ev) in e {
                let p = format!("{path}/{k}");
                match g.get(k) {
                    Some(gv) => diff(&p, ev, gv, out),
                    None => out.push(format!("{p}: expected {ev}, missing")),
                }
            }
            for (k, gv) in g {
                if !e.contains_key(k) {
                    out.push(format!("{path}/{k}: not expected, got {gv}"));
                }
            }
        }
        (Value::Array(e), Value::Array(g)) if e.len() == g.len() => {
            for (i, (ev, gv)) in e.iter().zip(g).enumerate() {
                diff(&format!("{path}/{i}"), ev, gv, out);
            }
        }
        _ => {
            if !super::rules::json_eq(expected, got) {
                let p = if path.is_empty() { "/" } else { path };
                out.push(format!("{p}: expected {expected}, got {got}"));
            }
        }
    }
}
