//! `temporal`: the interval between a `from` and a `to` anchor event lies
//! within `min`/`max` (ISO 8601 durations), allowing `clock_skew_tolerance`.

use serde_json::Value;

use super::super::policy::kind;
use super::Checker;

/// Checks a `temporal` rule's spec.
pub(super) fn lint(c: &mut Checker<'_>) {
    let spec = c.spec;
    for end in ["from", "to"] {
        match spec.get(end) {
            Some(Value::Object(o)) => {
                match o.get("action") {
                    Some(Value::String(s)) if !s.is_empty() => {}
                    _ => c.problem(format!(
                        "spec.{end}.action is missing (the action whose time anchors the window)"
                    )),
                }
                if let Some(a) = o.get("anchor")
                    && !matches!(a.as_str(), Some("started_at" | "completed_at"))
                {
                    c.problem(format!(
                        "spec.{end}.anchor {a} is not started_at or completed_at"
                    ));
                }
            }
            Some(other) => c.problem(format!(
                "spec.{end} must be an object {{action, anchor}}, not {}",
                kind(other)
            )),
            None => c.problem(format!("spec.{end} is missing")),
        }
    }
    c.allowed(&["from", "to", "min", "max", "clock_skew_tolerance"]);
    let min = c.duration("min");
    let max = c.duration("max");
    c.duration("clock_skew_tolerance");
    if !spec.contains_key("min") && !spec.contains_key("max") {
        c.problem("no window: give spec.max and/or spec.min (ISO 8601 durations such as PT15M)");
    }
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        c.problem("spec.min is longer than spec.max");
    }
}
