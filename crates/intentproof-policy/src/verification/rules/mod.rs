//! The rule kinds of the policy DSL, one module each: a kind owns its typed
//! spec (`<Kind>Spec::read`), its lint (`lint`) and its evaluation
//! (`evaluate`). [`RuleKind`] names the eight kinds, in the order of
//! [`CATEGORIES`]; [`Rule`] is a rule read into its kind's spec, or
//! [`Rule::Unknown`] when its category is none of them (lint rejects it,
//! evaluation gives `inconclusive.unknown.unsupported_rule_category`).
//!
//! Adding a kind: its name in [`CATEGORIES`], a variant of [`RuleKind`] and
//! of [`Rule`] here, and its module.

mod checker;
mod context;

mod cardinality;
mod claim_match;
mod consensus;
mod forbidden;
mod ordering;
mod required;
mod temporal;
mod unknown;
mod value_bound;

use serde_json::{Map, Value};

use super::CATEGORIES;

pub(crate) use checker::Checker;
pub(crate) use context::{Ctx, Verdict, json_eq};

/// One of the eight rule categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleKind {
    Required,
    Forbidden,
    Ordering,
    Cardinality,
    Temporal,
    Consensus,
    ValueBound,
    ClaimMatch,
}

impl RuleKind {
    /// Every kind, in the order of [`CATEGORIES`].
    const ALL: [RuleKind; CATEGORIES.len()] = [
        RuleKind::Required,
        RuleKind::Forbidden,
        RuleKind::Ordering,
        RuleKind::Cardinality,
        RuleKind::Temporal,
        RuleKind::Consensus,
        RuleKind::ValueBound,
        RuleKind::ClaimMatch,
    ];

    /// The kind a category names, if it is one of the eight.
    pub(crate) fn from_name(name: &str) -> Option<RuleKind> {
        let i = CATEGORIES.iter().position(|c| *c == name)?;
        RuleKind::ALL.get(i).copied()
    }

    /// The category, as policies write it.
    pub(crate) fn name(self) -> &'static str {
        CATEGORIES[self as usize]
    }

    /// Checks a rule's `spec` for this kind.
    pub(crate) fn lint(self, c: &mut Checker<'_>) {
        match self {
            RuleKind::Required => required::lint(c),
            RuleKind::Forbidden => forbidden::lint(c),
            RuleKind::Ordering => ordering::lint(c),
            RuleKind::Cardinality => cardinality::lint(c),
            RuleKind::Temporal => temporal::lint(c),
            RuleKind::Consensus => consensus::lint(c),
            RuleKind::ValueBound => value_bound::lint(c),
            RuleKind::ClaimMatch => claim_match::lint(c),
        }
    }
}

/// A rule's spec, read (leniently) as its kind's type.
pub(crate) enum Rule<'a> {
    Required(required::RequiredSpec<'a>),
    Forbidden(forbidden::ForbiddenSpec<'a>),
    Ordering(ordering::OrderingSpec<'a>),
    Cardinality(cardinality::CardinalitySpec<'a>),
    Temporal(temporal::TemporalSpec<'a>),
    Consensus(consensus::ConsensusSpec<'a>),
    ValueBound(value_bound::ValueBoundSpec<'a>),
    ClaimMatch(claim_match::ClaimMatchSpec<'a>),
    /// A category that is none of the eight (`None`: no category, or not a
    /// string).
    Unknown {
        type_name: Option<&'a str>,
    },
}

impl<'a> Rule<'a> {
    /// Reads a rule of `category` with this `spec`. Evaluation is lenient:
    /// what a spec does not say (or says with the wrong type) is "not
    /// given"; [`RuleKind::lint`] is what reports it.
    pub(crate) fn read(category: Option<&'a str>, spec: &'a Map<String, Value>) -> Rule<'a> {
        let Some(kind) = category.and_then(RuleKind::from_name) else {
            return Rule::Unknown {
                type_name: category,
            };
        };
        match kind {
            RuleKind::Required => Rule::Required(required::RequiredSpec::read(spec)),
            RuleKind::Forbidden => Rule::Forbidden(forbidden::ForbiddenSpec::read(spec)),
            RuleKind::Ordering => Rule::Ordering(ordering::OrderingSpec::read(spec)),
            RuleKind::Cardinality => Rule::Cardinality(cardinality::CardinalitySpec::read(spec)),
            RuleKind::Temporal => Rule::Temporal(temporal::TemporalSpec::read(spec)),
            RuleKind::Consensus => Rule::Consensus(consensus::ConsensusSpec::read(spec)),
            RuleKind::ValueBound => Rule::ValueBound(value_bound::ValueBoundSpec::read(spec)),
            RuleKind::ClaimMatch => Rule::ClaimMatch(claim_match::ClaimMatchSpec::read(spec)),
        }
    }

    /// A finding's `rule_category`: the kind's name, or `unknown`.
    pub(crate) fn category(&self) -> &'static str {
        let kind = match self {
            Rule::Required(_) => RuleKind::Required,
            Rule::Forbidden(_) => RuleKind::Forbidden,
            Rule::Ordering(_) => RuleKind::Ordering,
            Rule::Cardinality(_) => RuleKind::Cardinality,
            Rule::Temporal(_) => RuleKind::Temporal,
            Rule::Consensus(_) => RuleKind::Consensus,
            Rule::ValueBound(_) => RuleKind::ValueBound,
            Rule::ClaimMatch(_) => RuleKind::ClaimMatch,
            Rule::Unknown { .. } => return "unknown",
        };
        kind.name()
    }

    /// The verdict of this rule over the flow in `ctx`.
    pub(crate) fn evaluate(&self, ctx: &Ctx<'_>) -> Verdict {
        match self {
            Rule::Required(spec) => required::evaluate(ctx, spec),
            Rule::Forbidden(spec) => forbidden::evaluate(ctx, spec),
            Rule::Ordering(spec) => ordering::evaluate(ctx, spec),
            Rule::Cardinality(spec) => cardinality::evaluate(ctx, spec),
            Rule::Temporal(spec) => temporal::evaluate(ctx, spec),
            Rule::Consensus(spec) => consensus::evaluate(ctx, spec),
            Rule::ValueBound(spec) => value_bound::evaluate(ctx, spec),
            Rule::ClaimMatch(spec) => claim_match::evaluate(ctx, spec),
            Rule::Unknown { type_name } => unknown::evaluate(*type_name),
        }
    }
}

/// `spec[key]`, when a string.
fn spec_str<'a>(spec: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    spec.get(key).and_then(Value::as_str)
}

/// The lint problem of a rule whose category (`category`, written as
/// `category_field`) is missing, not a string, or not one of the eight.
pub(crate) fn lint_unknown_category(
    at: &str,
    category_field: &str,
    category: Option<&Value>,
) -> String {
    unknown::lint(at, category_field, category)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_categories_agree() {
        for (i, c) in CATEGORIES.iter().enumerate() {
            let k = RuleKind::from_name(c).expect("a kind for every category");
            assert_eq!(k as usize, i);
            assert_eq!(k.name(), *c);
        }
        assert_eq!(RuleKind::from_name("nope"), None);
    }
}
