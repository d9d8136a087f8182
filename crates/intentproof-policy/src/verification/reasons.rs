//! The stable reason codes of `semantics/reasons.json` (spec version 0.2.0).
//!
//! Findings carry a [`Reason`] and nothing else, so a run can only ever use
//! codes from the spec's vocabulary.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Outcome;

macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident => $code:literal,)*) => {
        /// A finding's reason code (`<outcome>.<category>.<specifier>`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[$doc])* $name,)*
        }

        impl Reason {
            /// Every code, in the order of `semantics/reasons.json`.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            /// The code, e.g. `"fail.required.missing"`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => $code,)*
                }
            }
        }
    };
}

reasons! {
    /// `pass.required.satisfied`: Required action occurred within the configured min/max bounds.
    PassRequiredSatisfied => "pass.required.satisfied",
    /// `fail.required.missing`: Required action did not occur at all in the matched scope.
    FailRequiredMissing => "fail.required.missing",
    /// `fail.required.under_min`: Required action occurred but fewer times than the configured minimum.
    FailRequiredUnderMin => "fail.required.under_min",
    /// `fail.required.over_max`: Required action occurred more times than the configured maximum.
    FailRequiredOverMax => "fail.required.over_max",
    /// `pass.forbidden.absent`: Forbidden action did not occur (or only occurred outside its gate).
    PassForbiddenAbsent => "pass.forbidden.absent",
    /// `fail.forbidden.present`: Forbidden action occurred and no gating clause is configured.
    FailForbiddenPresent => "fail.forbidden.present",
    /// `fail.forbidden.after_predecessor`: Forbidden action occurred after its configured predecessor action.
    FailForbiddenAfterPredecessor => "fail.forbidden.after_predecessor",
    /// `fail.forbidden.without_predecessor`: Forbidden action occurred without the required predecessor action.
    FailForbiddenWithoutPredecessor => "fail.forbidden.without_predecessor",
    /// `pass.ordering.satisfied`: All matched after-events were preceded by their before-event.
    PassOrderingSatisfied => "pass.ordering.satisfied",
    /// `fail.ordering.out_of_order`: An after-event occurred earlier than its paired before-event within scope.
    FailOrderingOutOfOrder => "fail.ordering.out_of_order",
    /// `fail.ordering.unmatched_pair`: Pair-scoped ordering rule saw an after-event with no matching before-event.
    FailOrderingUnmatchedPair => "fail.ordering.unmatched_pair",
    /// `fail.ordering.violated`: Generic ordering violation when a more specific reason does not apply.
    FailOrderingViolated => "fail.ordering.violated",
    /// `inconclusive.ordering.before_missing`: After-event is present but no before-event exists anywhere in the flow.
    InconclusiveOrderingBeforeMissing => "inconclusive.ordering.before_missing",
    /// `pass.cardinality.satisfied`: Action count satisfies the configured exactly / min / max bounds.
    PassCardinalitySatisfied => "pass.cardinality.satisfied",
    /// `fail.cardinality.not_exact`: Action count does not equal the configured exactly value.
    FailCardinalityNotExact => "fail.cardinality.not_exact",
    /// `fail.cardinality.under_min`: Action count is below the configured minimum.
    FailCardinalityUnderMin => "fail.cardinality.under_min",
    /// `fail.cardinality.over_max`: Action count exceeds the configured maximum.
    FailCardinalityOverMax => "fail.cardinality.over_max",
    /// `fail.cardinality.out_of_range`: Action count falls outside the configured range when min/max share a single specifier.
    FailCardinalityOutOfRange => "fail.cardinality.out_of_range",
    /// `pass.temporal.within_window`: Interval between the configured anchors falls within the allowed window.
    PassTemporalWithinWindow => "pass.temporal.within_window",
    /// `fail.temporal.negative_interval`: to-anchor occurred before from-anchor beyond the clock-skew tolerance.
    FailTemporalNegativeInterval => "fail.temporal.negative_interval",
    /// `fail.temporal.below_min`: Interval is shorter than the configured minimum.
    FailTemporalBelowMin => "fail.temporal.below_min",
    /// `fail.temporal.exceeded_max`: Interval is longer than the configured maximum.
    FailTemporalExceededMax => "fail.temporal.exceeded_max",
    /// `fail.temporal.window_violated`: Generic temporal-window violation when a more specific reason does not apply.
    FailTemporalWindowViolated => "fail.temporal.window_violated",
    /// `inconclusive.temporal.missing_anchor`: from-anchor or to-anchor event is absent from the flow.
    InconclusiveTemporalMissingAnchor => "inconclusive.temporal.missing_anchor",
    /// `inconclusive.temporal.clock_skew_within_tolerance`: Negative interval is within the configured clock-skew tolerance.
    InconclusiveTemporalClockSkewWithinTolerance => "inconclusive.temporal.clock_skew_within_tolerance",
    /// `inconclusive.temporal.duration_invalid`: Temporal max (or min) duration in the rule is missing or not parseable as an ISO-8601 duration, so the window cannot be evaluated.
    InconclusiveTemporalDurationInvalid => "inconclusive.temporal.duration_invalid",
    /// `pass.consensus.threshold_met`: Configured consensus threshold met with no live disagreement.
    PassConsensusThresholdMet => "pass.consensus.threshold_met",
    /// `fail.consensus.threshold_unmet`: Insufficient agreeing sources to satisfy the configured threshold.
    FailConsensusThresholdUnmet => "fail.consensus.threshold_unmet",
    /// `fail.consensus.disagreement`: Two or more live sources actively disagree on the claim value.
    FailConsensusDisagreement => "fail.consensus.disagreement",
    /// `fail.consensus.insufficient`: Generic consensus shortfall when a more specific reason does not apply.
    FailConsensusInsufficient => "fail.consensus.insufficient",
    /// `inconclusive.consensus.external_unavailable`: All external sources unavailable and no internal source exists.
    InconclusiveConsensusExternalUnavailable => "inconclusive.consensus.external_unavailable",
    /// `inconclusive.consensus.source_stale`: Required signature missing or invalid while require_signed_sources is true.
    InconclusiveConsensusSourceStale => "inconclusive.consensus.source_stale",
    /// `pass.value_bound.satisfied`: Claim value falls within the configured numeric bound.
    PassValueBoundSatisfied => "pass.value_bound.satisfied",
    /// `fail.value_bound.out_of_range`: Claim value violates the configured numeric bound (lt/lte/gt/gte/eq/neq).
    FailValueBoundOutOfRange => "fail.value_bound.out_of_range",
    /// `inconclusive.value_bound.claim_missing`: Configured claim was not emitted by the named source for the flow.
    InconclusiveValueBoundClaimMissing => "inconclusive.value_bound.claim_missing",
    /// `pass.claim_match.matched`: Claim value equals the configured expected value.
    PassClaimMatchMatched => "pass.claim_match.matched",
    /// `fail.claim_match.mismatch`: Claim value differs from the configured expected value.
    FailClaimMatchMismatch => "fail.claim_match.mismatch",
    /// `inconclusive.claim_match.claim_missing`: Configured claim was not emitted by the named source for the flow.
    InconclusiveClaimMatchClaimMissing => "inconclusive.claim_match.claim_missing",
    /// `inconclusive.claim_match.source_unsigned`: Required source signature missing or invalid while require_signed is true.
    InconclusiveClaimMatchSourceUnsigned => "inconclusive.claim_match.source_unsigned",
    /// `inconclusive.required.unsupported_rule_category`: Legacy reserved code; verifiers should use inconclusive.unknown.unsupported_rule_category for unrecognized rule category strings.
    InconclusiveRequiredUnsupportedRuleCategory => "inconclusive.required.unsupported_rule_category",
    /// `inconclusive.unknown.unsupported_rule_category`: Rule category is not a known policy DSL kind (malformed policy or verifier mismatch); see rule_category on the finding.
    InconclusiveUnknownUnsupportedRuleCategory => "inconclusive.unknown.unsupported_rule_category",
    /// `inconclusive.ordering.after_missing`: After-action from the rule was not found in the flow.
    InconclusiveOrderingAfterMissing => "inconclusive.ordering.after_missing",
    /// `inconclusive.consensus.claim_missing`: Consensus rule is missing a claim identifier in spec.
    InconclusiveConsensusClaimMissing => "inconclusive.consensus.claim_missing",
    /// `inconclusive.value_bound.operator_unsupported`: Value bound rule uses an operator this verifier does not implement.
    InconclusiveValueBoundOperatorUnsupported => "inconclusive.value_bound.operator_unsupported",
    /// `inconclusive.value_bound.bound_invalid`: Value bound rule has a non-numeric bound or otherwise invalid bound spec.
    InconclusiveValueBoundBoundInvalid => "inconclusive.value_bound.bound_invalid",
    /// `inconclusive.claim_match.expected_missing`: Claim match rule is missing expected_value in spec.
    InconclusiveClaimMatchExpectedMissing => "inconclusive.claim_match.expected_missing",
    /// `inconclusive.claim_match.unsupported_rule_category`: claim_match rule was not evaluated because this verifier runtime has no handler for that category.
    InconclusiveClaimMatchUnsupportedRuleCategory => "inconclusive.claim_match.unsupported_rule_category",
    /// `inconclusive.value_bound.unsupported_rule_category`: value_bound rule was not evaluated because this verifier runtime has no handler for that category.
    InconclusiveValueBoundUnsupportedRuleCategory => "inconclusive.value_bound.unsupported_rule_category",
}

impl Reason {
    /// Looks a code up; `None` when it is not in the vocabulary.
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == code)
    }

    /// The outcome the code's first segment names.
    pub fn outcome(self) -> Outcome {
        let code = self.as_str();
        if code.starts_with("pass.") {
            Outcome::Pass
        } else if code.starts_with("fail.") {
            Outcome::Fail
        } else {
            Outcome::Inconclusive
        }
    }

    /// The rule category the code's second segment names (`unknown` for
    /// [`Reason::InconclusiveUnknownUnsupportedRuleCategory`]).
    pub fn category(self) -> &'static str {
        self.as_str().split('.').nth(1).unwrap_or("unknown")
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Reason::from_code(&code).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown reason code {code:?} (not in semantics/reasons.json)"
            ))
        })
    }
}
