//! `forbidden`: an action must not occur at all, or not after an `after`
//! action (optionally filtered), or not without a `without_predecessor`.

use serde_json::{Map, Value};

use super::super::reasons::Reason;
use super::context::{Ctx, Predicate, Verdict, fmt_action, plural, verdict};
use super::{Checker, spec_str};

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

/// A `forbidden` rule's spec, as evaluation reads it.
pub(crate) struct ForbiddenSpec<'a> {
    /// `action`; `None` forbids every event.
    action: Option<&'a str>,
    /// `where`: only the events it holds for are forbidden.
    filter: Option<Predicate<'a>>,
    /// `after`: the predecessor action that gates the rule.
    after: Option<&'a str>,
    /// `where_predecessor`: which `after` events gate.
    where_predecessor: Option<Predicate<'a>>,
    /// `without_predecessor`: the action a gated match needs before it.
    without_predecessor: Option<&'a str>,
}

impl<'a> ForbiddenSpec<'a> {
    /// Reads `spec` leniently: a field of the wrong type is absent.
    pub(super) fn read(spec: &'a Map<String, Value>) -> ForbiddenSpec<'a> {
        ForbiddenSpec {
            action: spec_str(spec, "action"),
            filter: Predicate::read(spec.get("where")),
            after: spec_str(spec, "after"),
            where_predecessor: Predicate::read(spec.get("where_predecessor")),
            without_predecessor: spec_str(spec, "without_predecessor"),
        }
    }
}

/// Looks for matches: any, after the first gate, or gated without the
/// predecessor.
pub(super) fn evaluate(ctx: &Ctx<'_>, spec: &ForbiddenSpec<'_>) -> Verdict {
    let ForbiddenSpec {
        action,
        filter: ref pred,
        after,
        where_predecessor: ref pred_where,
        without_predecessor,
    } = *spec;
    let a = fmt_action(action);
    let matches = ctx.matching(action, pred.as_ref());
    if matches.is_empty() {
        return verdict(
            Reason::PassForbiddenAbsent,
            Vec::new(),
            format!("{a} did not occur."),
        );
    }
    let Some(after) = after else {
        return verdict(
            Reason::FailForbiddenPresent,
            ctx.ids(&matches),
            format!(
                "{a} occurred {} time{}; it is forbidden.",
                matches.len(),
                plural(matches.len())
            ),
        );
    };
    let gates = ctx.matching(Some(after), pred_where.as_ref());
    if let Some(required) = without_predecessor {
        // Gated matches: at or after an `after` event (a match may be its
        // own `after` event); each needs a non-failed `required` event
        // completed before it.
        let offending: Vec<usize> = matches
            .iter()
            .copied()
            .filter(|&m| gates.iter().any(|&g| g == m || ctx.precedes(g, m)))
            .filter(|&m| {
                !(0..ctx.events.len()).any(|p| {
                    let e = &ctx.events[p];
                    e.action.as_deref() == Some(required)
                        && e.status.as_deref() != Some("error")
                        && ctx.precedes(p, m)
                })
            })
            .collect();
        if offending.is_empty() {
            return verdict(
                Reason::PassForbiddenAbsent,
                Vec::new(),
                format!("Every {a} after `{after}` was preceded by `{required}`."),
            );
        }
        return verdict(
            Reason::FailForbiddenWithoutPredecessor,
            ctx.ids(&offending),
            format!(
                "{a} occurred {} time{} after `{after}` without a preceding `{required}`.",
                offending.len(),
                plural(offending.len())
            ),
        );
    }
    let first_gate = ctx.earliest(&gates);
    let offending: Vec<usize> = match first_gate {
        Some(g) => matches
            .iter()
            .copied()
            .filter(|&m| ctx.precedes(g, m))
            .collect(),
        None => Vec::new(),
    };
    match (first_gate, offending.is_empty()) {
        (Some(g), false) => {
            let mut evidence = vec![g];
            evidence.extend(&offending);
            verdict(
                Reason::FailForbiddenAfterPredecessor,
                ctx.ids(&evidence),
                format!(
                    "{a} occurred {} time{} after `{after}` ({}).",
                    offending.len(),
                    plural(offending.len()),
                    ctx.events[g].event_id
                ),
            )
        }
        _ => verdict(
            Reason::PassForbiddenAbsent,
            Vec::new(),
            format!("{a} did not occur after `{after}`."),
        ),
    }
}
