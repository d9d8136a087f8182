//! A rule whose category is missing or not one of the eight: lint names the
//! valid categories; evaluation gives the spec's
//! `inconclusive.unknown.unsupported_rule_category`.

use serde_json::Value;

use super::super::CATEGORIES;
use super::super::policy::kind;
use super::super::reasons::Reason;
use super::context::{Verdict, verdict};

/// The problem with a rule (`at`) whose category (written as
/// `category_field`, `type` or `category`) is `category`, which is missing,
/// not a string, or not a category.
pub(super) fn lint(at: &str, category_field: &str, category: Option<&Value>) -> String {
    match category {
        Some(Value::String(category)) => format!(
            "{at}: {category_field} {category:?} is not a category; valid: {}",
            CATEGORIES.join(", ")
        ),
        Some(other) => format!(
            "{at}: {category_field} must be a string, not {}; valid: {}",
            kind(other),
            CATEGORIES.join(", ")
        ),
        None => format!(
            "{at}: type (category) is missing; valid: {}",
            CATEGORIES.join(", ")
        ),
    }
}

/// The verdict on a rule whose category (`type_name`) is missing or not one
/// of the eight: not evaluated.
pub(super) fn evaluate(type_name: Option<&str>) -> Verdict {
    verdict(
        Reason::InconclusiveUnknownUnsupportedRuleCategory,
        Vec::new(),
        match type_name {
            Some(c) => format!(
                "Rule category {c:?} is not one of {}; the rule was not evaluated.",
                CATEGORIES.join(", ")
            ),
            None => "The rule has no category; it was not evaluated.".to_owned(),
        },
    )
}
