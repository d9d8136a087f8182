//! `required`: an action must occur, between `min` (default 0) and `max`
//! (unbounded) times; counts matching events by distinct event id.

use super::Checker;

/// Checks a `required` rule's spec.
pub(super) fn lint(c: &mut Checker<'_>) {
    c.string("action", true);
    c.allowed(&["action", "min", "max", "where"]);
    let min = c.count("min");
    let max = c.count("max");
    c.min_le_max(min, max);
    c.predicate("where");
}
