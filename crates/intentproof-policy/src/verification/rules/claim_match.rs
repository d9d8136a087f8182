//! `claim_match`: the latest attestation of a claim has `expected_value`
//! (from a signed source, with `require_signed`).

use serde_json::{Map, Value};

use super::super::reasons::Reason;
use super::context::{Ctx, Verdict, json_eq, verdict};
use super::{Checker, spec_str};

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

/// A `claim_match` rule's spec, as evaluation reads it.
pub(crate) struct ClaimMatchSpec<'a> {
    /// `claim` (empty when absent: nothing attests it).
    claim: &'a str,
    /// `source_id`: only attestations from this source count.
    source_id: Option<&'a str>,
    /// `expected_value`.
    expected: Option<&'a Value>,
    /// `require_signed: true`.
    require_signed: bool,
}

impl<'a> ClaimMatchSpec<'a> {
    /// Reads `spec` leniently: a field of the wrong type is absent.
    pub(super) fn read(spec: &'a Map<String, Value>) -> ClaimMatchSpec<'a> {
        ClaimMatchSpec {
            claim: spec_str(spec, "claim").unwrap_or_default(),
            source_id: spec_str(spec, "source_id"),
            expected: spec.get("expected_value"),
            require_signed: spec.get("require_signed") == Some(&Value::Bool(true)),
        }
    }
}

/// Compares the latest attested value of the claim with the expected one.
pub(super) fn evaluate(ctx: &Ctx<'_>, spec: &ClaimMatchSpec<'_>) -> Verdict {
    let ClaimMatchSpec {
        claim,
        source_id,
        expected,
        require_signed,
    } = *spec;
    let Some(expected) = expected else {
        return verdict(
            Reason::InconclusiveClaimMatchExpectedMissing,
            Vec::new(),
            "The rule gives no expected_value.".into(),
        );
    };
    let (a, from) =
        match ctx.attested_claim(claim, source_id, Reason::InconclusiveClaimMatchClaimMissing) {
            Ok(found) => found,
            Err(missing) => return missing,
        };
    let atts = vec![a.attestation_id.clone()];
    let with = |reason, summary| Verdict {
        reason,
        events: Vec::new(),
        attestations: atts.clone(),
        summary,
    };
    if require_signed && !a.source_signed {
        return with(
            Reason::InconclusiveClaimMatchSourceUnsigned,
            format!(
                "The attestation of `{claim}`{from} carries no source signature, which the rule requires."
            ),
        );
    }
    let got = a.claim_value.clone().unwrap_or(Value::Null);
    if json_eq(&got, expected) {
        with(
            Reason::PassClaimMatchMatched,
            format!("`{claim}`{from} is {got}, as expected."),
        )
    } else {
        with(
            Reason::FailClaimMatchMismatch,
            format!("`{claim}`{from} is {got}; expected {expected}."),
        )
    }
}
