//! `forbidden`: an action must not occur at all, or not after an `after`
//! action (optionally filtered), or not without a `without_predecessor`.

use super::Checker;

/// Checks a `forbidden` rule's spec.
pub(super) fn lint(c: &mut Checker<'_>) {
    let spec = c.spec;
    c.string("action", true);
    c.string("after", false);
    c.string("without_predecessor", false);
    c.allowed(&[
        "action",
        "after",
        "where_predecessor",
        "where",
        "without_predecessor",
    ]);
    c.predicate("where");
    c.predicate("where_predecessor");
    let has = |k: &str| spec.contains_key(k);
    if has("where_predecessor") && has("without_predecessor") {
        c.problem("where_predecessor and without_predecessor cannot both be given; keep one");
    }
    if (has("where_predecessor") || has("without_predecessor")) && !has("after") {
        c.problem("spec.after is missing (where_predecessor and without_predecessor need the predecessor action in after)");
    }
}
