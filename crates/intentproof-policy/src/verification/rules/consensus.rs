//! `consensus`: sources (the flow's actions, external attestations) vote on
//! a claim; they must agree and reach the `threshold` on `expected_value`.

use serde_json::Value;

use super::super::policy::kind;
use super::Checker;
use super::checker::check_predicate;

/// Checks a `consensus` rule's spec.
pub(super) fn lint(c: &mut Checker<'_>) {
    let spec = c.spec;
    c.string("claim", true);
    c.allowed(&[
        "claim",
        "expected_value",
        "require_signed_sources",
        "sources",
        "threshold",
    ]);
    c.boolean("require_signed_sources");
    let n_sources = match spec.get("sources") {
        Some(Value::Array(sources)) if !sources.is_empty() => {
            for (j, s) in sources.iter().enumerate() {
                let Some(s) = s.as_object() else {
                    c.problem(format!("spec.sources[{j}] must be an object"));
                    continue;
                };
                match s.get("kind").and_then(Value::as_str) {
                    Some("intentproof_action") => {
                        if s.get("action")
                            .and_then(Value::as_str)
                            .is_none_or(|a| a.is_empty())
                        {
                            c.problem(format!("spec.sources[{j}].action is missing (an intentproof_action source names the action whose events vote)"));
                        }
                    }
                    Some("external") => {}
                    _ => c.problem(format!(
                        "spec.sources[{j}].kind must be intentproof_action or external"
                    )),
                }
                if let Some(w) = s.get("where") {
                    check_predicate(&format!("spec.sources[{j}].where"), w, c.at, c.problems);
                }
            }
            sources.len()
        }
        Some(Value::Array(_)) => {
            c.problem("spec.sources is empty; list at least one source");
            0
        }
        Some(other) => {
            c.problem(format!("spec.sources must be a list, not {}", kind(other)));
            0
        }
        None => {
            c.problem("spec.sources is missing");
            0
        }
    };
    match spec.get("threshold") {
        Some(Value::Object(t)) => {
            let modes = [
                t.get("unanimous") == Some(&Value::Bool(true)),
                t.get("majority") == Some(&Value::Bool(true)),
                t.contains_key("agree_at_least"),
            ];
            match modes.iter().filter(|m| **m).count() {
                1 => {}
                0 => c.problem("spec.threshold names no rule: set unanimous: true, majority: true or agree_at_least: N"),
                _ => c.problem("spec.threshold sets more than one of unanimous, majority, agree_at_least; keep one"),
            }
            if let Some(n) = t.get("agree_at_least") {
                match n.as_u64() {
                    Some(n) if n >= 1 => {
                        if n_sources > 0 && n > n_sources as u64 {
                            c.problem(format!("spec.threshold.agree_at_least is {n} but only {n_sources} source(s) are listed"));
                        }
                    }
                    _ => c.problem(format!(
                        "spec.threshold.agree_at_least must be an integer >= 1, not {n}"
                    )),
                }
            }
        }
        Some(other) => c.problem(format!(
            "spec.threshold must be an object, not {}",
            kind(other)
        )),
        None => c.problem("spec.threshold is missing"),
    }
}
