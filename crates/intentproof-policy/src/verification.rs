//! Verification policies (`intentproof.policy.v1`) and their evaluator.
//!
//! - [`Policy`]: the JSON form as written, the YAML authoring form compiled
//!   to it ([`Policy::compile`]), its fingerprint ([`Policy::fingerprint`])
//!   and linting ([`Policy::lint`]); [`check_policy`] parses and lints a
//!   policy file's bytes, the one validation the daemon, `doctor` and
//!   `intentproof policy` all run.
//! - [`evaluate`]: a policy over a [`Flow`] (and [`Attestation`]s) gives a
//!   [`Run`] (`intentproof.run.v1`) with one [`Finding`] per rule, each
//!   carrying a [`Reason`] from the spec's `semantics/reasons.json`.
//! - [`DeclaredPlan`]: an agent's plan compiles to a policy
//!   ([`DeclaredPlan::compile`]) and its closed events are flagged by
//!   [`classify_plan`] (incomplete intent, failed step, unplanned call).
//! - [`reference`]: the spec's reference-fixture preparation and comparison.
//!
//! # Semantics
//!
//! Events match a rule when `action` is equal (if given), `where.status` is
//! equal (if given), and `where.attribute` exists and equals `equals` (or is
//! one of `in`) when given. Event order is completion time, ties and events
//! without a time broken by flow position.
//!
//! | category | outcome |
//! |---|---|
//! | required | count of matches (distinct event ids); `min` default 0, `max` unbounded: `missing` (0 < min), `under_min`, `over_max`, else `satisfied` |
//! | forbidden | no `after`: any match is `present`. With `after`: a match completed after the earliest `after` event (filtered by `where_predecessor`) is `after_predecessor`. With `after` + `without_predecessor: P`: a match at or after an `after` event (a match may be its own `after` event) with no non-failed `P` event before it is `without_predecessor`. Else `absent` |
//! | ordering | earliest `before` strictly before earliest `after`: `satisfied`, else `out_of_order`; no `after` event: `inconclusive.after_missing`; no `before`: `inconclusive.before_missing`. `scope: all-occurrences` pairs the k-th `after` with the k-th `before` (`unmatched_pair` when there is none); `match_by_attribute` pairs within equal attribute values |
//! | cardinality | `exactly` -> `not_exact`; `min == max` -> `out_of_range`; `under_min`, `over_max`; `count_basis: raw` counts repeated event ids |
//! | temporal | d = earliest `to` anchor - earliest `from` anchor (`anchor` default `completed_at`): negative -> `clock_skew_within_tolerance` if within `clock_skew_tolerance` else `negative_interval`; > `max` -> `exceeded_max`; < `min` -> `below_min`; no timed anchor event -> `missing_anchor`; no or bad durations -> `duration_invalid` |
//! | consensus | each source votes: an `intentproof_action` source the claim attribute of its latest matching event, else `true`, or `false` when nothing matched; an `external` source the `claim_value` of its latest attestation of the claim (from `source_id`, if given), or nothing. `claim` missing -> `claim_missing`; unsigned attestation with `require_signed_sources` -> `source_stale`; no internal source and no attestation -> `external_unavailable`; live votes differ -> `disagreement`; votes equal to `expected_value` (default `true`) reach the threshold (`unanimous` = all sources, default; `majority`; `agree_at_least`) -> `threshold_met`, else `threshold_unmet` |
//! | value_bound | latest attestation of `claim` (from `source_id`): `claim_missing` (none, or not a number), `operator_unsupported`, `bound_invalid`, `satisfied`/`out_of_range` |
//! | claim_match | latest attestation of `claim`: `expected_missing`, `claim_missing`, `source_unsigned` (with `require_signed`), `matched`/`mismatch` |
//! | other | `inconclusive.unknown.unsupported_rule_category`, category `unknown` |
//!
//! Codes the evaluator never emits are listed in [`RESERVED_REASONS`].

mod eval;
mod input;
mod plan;
mod policy;
mod reasons;
pub mod reference;
mod rules;
mod time;

pub use eval::{
    AttestationSet, EvalOptions, Finding, Outcome, OutcomeCounts, RUN_FINGERPRINT_EXCLUDED_FIELDS,
    RUN_SCHEMA, Run, RunSignature, Severity, SeverityCounts, Summary, ZERO_BUILD_HASH, evaluate,
    scope_matches,
};
pub use input::{
    Attestation, Flow, FlowEvent, InputError, parse_attestations_jsonl, parse_events_jsonl,
};
pub use plan::{
    DeclaredPlan, Flag, FlagKind, MAX_PLAN_STEPS, PLAN_DECLARE_ACTION, PlanArguments, PlanError,
    PlanStep, classify_plan, parse_plan_arguments, plan_declaration_event,
};
pub use policy::{
    FINGERPRINT_EXCLUDED_FIELDS, InvalidPolicy, LintError, MAX_POLICY_BYTES, POLICY_SCHEMA, Policy,
    PolicyError, PolicyFormat, Scope, check_policy, policy_fingerprint,
};
pub use reasons::Reason;

/// The eight rule categories of the policy DSL.
pub const CATEGORIES: [&str; 8] = [
    "required",
    "forbidden",
    "ordering",
    "cardinality",
    "temporal",
    "consensus",
    "value_bound",
    "claim_match",
];

/// Rule severities.
pub const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

/// Codes of `semantics/reasons.json` this evaluator never emits: generic
/// fallbacks for which it always has a more specific code
/// (`fail.ordering.violated`, `fail.temporal.window_violated`,
/// `fail.consensus.insufficient`), and "no handler for this category" codes
/// (it has a handler for every category; an unknown category gets
/// `inconclusive.unknown.unsupported_rule_category`, as the spec says the
/// legacy `inconclusive.required.unsupported_rule_category` is replaced by).
pub const RESERVED_REASONS: [Reason; 6] = [
    Reason::FailOrderingViolated,
    Reason::FailTemporalWindowViolated,
    Reason::FailConsensusInsufficient,
    Reason::InconclusiveRequiredUnsupportedRuleCategory,
    Reason::InconclusiveValueBoundUnsupportedRuleCategory,
    Reason::InconclusiveClaimMatchUnsupportedRuleCategory,
];
