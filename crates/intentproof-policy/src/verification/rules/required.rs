//! `required`: an action must occur, between `min` (default 0) and `max`
//! (unbounded) times; counts matching events by distinct event id.

use serde_json::{Map, Value};

use super::super::reasons::Reason;
use super::context::{Ctx, Predicate, Verdict, fmt_action, plural, verdict};
use super::{Checker, spec_str};

/// Checks a `required` rule's spec.
pub(super) fn lint(c: &mut Checker<'_>) {
    c.string("action", true);
    c.allowed(&["action", "min", "max", "where"]);
    let min = c.count("min");
    let max = c.count("max");
    c.min_le_max(min, max);
    c.predicate("where");
}

/// A `required` rule's spec, as evaluation reads it.
pub(crate) struct RequiredSpec<'a> {
    /// `action`; `None` counts every event.
    action: Option<&'a str>,
    /// `where`: only the events it holds for count.
    filter: Option<Predicate<'a>>,
    /// `min` (default 0).
    min: u64,
    /// `max` (unbounded when absent).
    max: Option<u64>,
}

impl<'a> RequiredSpec<'a> {
    /// Reads `spec` leniently: a field of the wrong type is absent.
    pub(super) fn read(spec: &'a Map<String, Value>) -> RequiredSpec<'a> {
        RequiredSpec {
            action: spec_str(spec, "action"),
            filter: Predicate::read(spec.get("where")),
            min: spec.get("min").and_then(Value::as_u64).unwrap_or(0),
            max: spec.get("max").and_then(Value::as_u64),
        }
    }
}

/// Counts the matching events (distinct ids) against `min` and `max`.
pub(super) fn evaluate(ctx: &Ctx<'_>, spec: &RequiredSpec<'_>) -> Verdict {
    let RequiredSpec {
        action,
        filter: ref pred,
        min,
        max,
    } = *spec;
    let ids = ctx.ids(&ctx.matching(action, pred.as_ref()));
    let n = ids.len();
    let a = fmt_action(action);
    let n64 = n as u64;
    if n64 < min {
        if n == 0 {
            return verdict(
                Reason::FailRequiredMissing,
                ids,
                format!("{a} did not occur (at least {min} required)."),
            );
        }
        return verdict(
            Reason::FailRequiredUnderMin,
            ids,
            format!(
                "{a} occurred {n} time{} (at least {min} required).",
                plural(n)
            ),
        );
    }
    if let Some(max) = max.filter(|m| n64 > *m) {
        return verdict(
            Reason::FailRequiredOverMax,
            ids,
            format!(
                "{a} occurred {n} time{} (at most {max} allowed).",
                plural(n)
            ),
        );
    }
    verdict(
        Reason::PassRequiredSatisfied,
        ids,
        format!("{a} occurred {n} time{}.", plural(n)),
    )
}
