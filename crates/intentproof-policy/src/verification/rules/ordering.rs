//! `ordering`: the `before` action must complete before the `after` action,
//! for the first occurrences or pair by pair (`scope`, `match_by_attribute`).

use super::Checker;

/// Checks an `ordering` rule's spec.
pub(super) fn lint(c: &mut Checker<'_>) {
    let before = c.string("before", true);
    let after = c.string("after", true);
    c.string("match_by_attribute", false);
    c.allowed(&["before", "after", "scope", "match_by_attribute"]);
    c.one_of("scope", &["first-occurrence", "all-occurrences"]);
    if before.is_some() && before == after {
        c.problem("before and after name the same action; the rule could never pass");
    }
}
