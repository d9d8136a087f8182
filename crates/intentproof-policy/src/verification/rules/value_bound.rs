//! `value_bound`: the latest attested value of a numeric claim satisfies
//! `operator` `value` (`lt`, `lte`, `gt`, `gte`, `eq`, `ne`).

use serde_json::Value;

use super::super::policy::kind;
use super::Checker;

/// The comparison operators a `value_bound` rule may name.
const OPERATORS: [&str; 6] = ["lt", "lte", "gt", "gte", "eq", "ne"];

/// Checks a `value_bound` rule's spec.
pub(super) fn lint(c: &mut Checker<'_>) {
    let spec = c.spec;
    c.string("claim", true);
    c.string("source_id", false);
    c.allowed(&["claim", "operator", "value", "source_id"]);
    match spec.get("operator") {
        Some(Value::String(op)) if OPERATORS.contains(&op.as_str()) => {}
        Some(other) => c.problem(format!(
            "spec.operator {other} is not one of {}",
            OPERATORS.join(", ")
        )),
        None => c.problem(format!(
            "spec.operator is missing (one of {})",
            OPERATORS.join(", ")
        )),
    }
    match spec.get("value") {
        Some(v) if v.is_number() => {}
        Some(other) => c.problem(format!("spec.value must be a number, not {}", kind(other))),
        None => c.problem("spec.value is missing (the numeric bound)"),
    }
}
