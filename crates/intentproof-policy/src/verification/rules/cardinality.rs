//! `cardinality`: an action occurs `exactly` N times, or within `min`/`max`,
//! counting distinct event ids or every event (`count_basis: raw`).

use super::Checker;

/// Checks a `cardinality` rule's spec.
pub(super) fn lint(c: &mut Checker<'_>) {
    let spec = c.spec;
    c.string("action", true);
    c.allowed(&["action", "exactly", "min", "max", "count_basis", "where"]);
    let exactly = c.count("exactly");
    let min = c.count("min");
    let max = c.count("max");
    let has_range = spec.contains_key("min") || spec.contains_key("max");
    if spec.contains_key("exactly") && has_range {
        c.problem("give either exactly or min/max, not both");
    } else if exactly.is_none() && !has_range && !spec.contains_key("exactly") {
        c.problem("no bound: give spec.exactly, or spec.min and/or spec.max");
    }
    c.min_le_max(min, max);
    c.one_of("count_basis", &["logical", "raw"]);
    c.predicate("where");
}
