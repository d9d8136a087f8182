//! `cardinality`: an action occurs `exactly` N times, or within `min`/`max`,
//! counting distinct event ids or every event (`count_basis: raw`).

use serde_json::{Map, Value};

use super::super::reasons::Reason;
use super::context::{Ctx, Predicate, Verdict, fmt_action, plural, verdict};
use super::{Checker, spec_str};

/// Checks a `cardinality` rule's spec.
pub(super) fn lint(c: &mut Checker<'_>) {
    let spec = c.spec;
    c.string("action", true);
    c.allowed(&["action", "exactly", "min", "max", "count_basis", "where"]);
    let exactly = c.count("exactly");
    let min = c.count("min");
    let max = c.count("max");
    let has_range = spec.contains_key("min") || spec.contains_key("max");
    if spec.contains_key("exactly") && has_range {
        c.problem("give either exactly or min/max, not both");
    } else if exactly.is_none() && !has_range && !spec.contains_key("exactly") {
        c.problem("no bound: give spec.exactly, or spec.min and/or spec.max");
    }
    c.min_le_max(min, max);
    c.one_of("count_basis", &["logical", "raw"]);
    c.predicate("where");
}

/// The count a `cardinality` rule allows.
#[derive(Clone, Copy)]
enum Bound {
    /// `exactly` (it wins over `min`/`max`).
    Exactly(u64),
    /// `min` and/or `max`.
    Range { min: Option<u64>, max: Option<u64> },
}

/// A `cardinality` rule's spec, as evaluation reads it.
pub(crate) struct CardinalitySpec<'a> {
    /// `action`; `None` counts every event.
    action: Option<&'a str>,
    /// `where`: only the events it holds for count.
    filter: Option<Predicate<'a>>,
    /// `count_basis: raw`: count every event, repeated ids too.
    raw: bool,
    /// `exactly`, or `min`/`max`.
    bound: Bound,
}

impl<'a> CardinalitySpec<'a> {
    /// Reads `spec` leniently: a field of the wrong type is absent.
    pub(super) fn read(spec: &'a Map<String, Value>) -> CardinalitySpec<'a> {
        let count = |k: &str| spec.get(k).and_then(Value::as_u64);
        CardinalitySpec {
            action: spec_str(spec, "action"),
            filter: Predicate::read(spec.get("where")),
            raw: spec_str(spec, "count_basis") == Some("raw"),
            bound: match count("exactly") {
                Some(e) => Bound::Exactly(e),
                None => Bound::Range {
                    min: count("min"),
                    max: count("max"),
                },
            },
        }
    }
}

/// Counts the matching events against `exactly`, or `min` and `max`.
pub(super) fn evaluate(ctx: &Ctx<'_>, spec: &CardinalitySpec<'_>) -> Verdict {
    let CardinalitySpec {
        action,
        filter: ref pred,
        raw,
        bound,
    } = *spec;
    let a = fmt_action(action);
    let matched = ctx.matching(action, pred.as_ref());
    let ids = ctx.ids(&matched);
    let n = if raw { matched.len() } else { ids.len() };
    let n64 = n as u64;
    let counted = format!("{a} occurred {n} time{}", plural(n));
    let (min, max) = match bound {
        Bound::Exactly(e) => {
            return if n64 == e {
                verdict(
                    Reason::PassCardinalitySatisfied,
                    ids,
                    format!("{counted}, exactly as required."),
                )
            } else {
                verdict(
                    Reason::FailCardinalityNotExact,
                    ids,
                    format!("{counted}; exactly {e} required."),
                )
            };
        }
        Bound::Range { min, max } => (min, max),
    };
    if let (Some(lo), Some(hi)) = (min, max)
        && lo == hi
        && n64 != lo
    {
        return verdict(
            Reason::FailCardinalityOutOfRange,
            ids,
            format!("{counted}; the range min = max = {lo} requires exactly {lo}."),
        );
    }
    if let Some(lo) = min.filter(|lo| n64 < *lo) {
        return verdict(
            Reason::FailCardinalityUnderMin,
            ids,
            format!("{counted}; at least {lo} required."),
        );
    }
    if let Some(hi) = max.filter(|hi| n64 > *hi) {
        return verdict(
            Reason::FailCardinalityOverMax,
            ids,
            format!("{counted}; at most {hi} allowed."),
        );
    }
    verdict(
        Reason::PassCardinalitySatisfied,
        ids,
        format!("{counted}, within bounds."),
    )
}
