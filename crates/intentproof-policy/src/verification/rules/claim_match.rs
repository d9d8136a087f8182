//! `claim_match`: the latest attestation of a claim has `expected_value`
//! (from a signed source, with `require_signed`).

use super::Checker;

/// Checks a `claim_match` rule's spec.
pub(super) fn lint(c: &mut Checker<'_>) {
    let spec = c.spec;
    c.string("claim", true);
    c.string("source_id", false);
    c.boolean("require_signed");
    c.allowed(&["claim", "expected_value", "source_id", "require_signed"]);
    if !spec.contains_key("expected_value") {
        c.problem("spec.expected_value is missing (the value the claim must have)");
    }
}
