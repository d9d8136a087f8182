//! The rule kinds of the policy DSL, one module each, owning its lint.
//! [`RuleKind`] names the eight kinds, in the order of [`CATEGORIES`]; a
//! category that is none of them is unknown.
//!
//! Adding a kind: its name in [`CATEGORIES`], a variant of [`RuleKind`]
//! here, and its module.

mod checker;

mod cardinality;
mod claim_match;
mod consensus;
mod forbidden;
mod ordering;
mod required;
mod temporal;
mod unknown;
mod value_bound;

use serde_json::Value;

use super::CATEGORIES;

pub(crate) use checker::Checker;

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
