//! `ordering`: the `before` action must complete before the `after` action,
//! for the first occurrences or pair by pair (`scope`, `match_by_attribute`).

use std::collections::BTreeMap;

use intentproof_core::canon::canonicalize;
use serde_json::{Map, Value};

use super::super::reasons::Reason;
use super::context::{Ctx, Verdict, fmt_action, verdict};
use super::{Checker, spec_str};

/// Checks an `ordering` rule's spec.
pub(super) fn lint(c: &mut Checker<'_>) {
    let before = c.string("before", true);
    let after = c.string("after", true);
    c.string("match_by_attribute", false);
    c.allowed(&["before", "after", "scope", "match_by_attribute"]);
    c.one_of("scope", &["first-occurrence", "all-occurrences"]);
    if before.is_some() && before == after {
        c.problem("before and after name the same action; the rule could never pass");
    }
}

/// Before-events and after-events sharing a pairing key.
type Pairs = (Vec<usize>, Vec<usize>);

/// An `ordering` rule's spec, as evaluation reads it.
pub(crate) struct OrderingSpec<'a> {
    /// `before`: the action that must come first.
    before: Option<&'a str>,
    /// `after`: the action that must come second.
    after: Option<&'a str>,
    /// `scope: all-occurrences`: pair the k-th `after` with the k-th
    /// `before` (else only the first of each).
    all_occurrences: bool,
    /// `match_by_attribute`: pair within equal values of this attribute.
    match_by_attribute: Option<&'a str>,
}

impl<'a> OrderingSpec<'a> {
    /// Reads `spec` leniently: a field of the wrong type is absent.
    pub(super) fn read(spec: &'a Map<String, Value>) -> OrderingSpec<'a> {
        OrderingSpec {
            before: spec_str(spec, "before"),
            after: spec_str(spec, "after"),
            all_occurrences: spec_str(spec, "scope") == Some("all-occurrences"),
            match_by_attribute: spec_str(spec, "match_by_attribute"),
        }
    }
}

/// Pairs `before` and `after` events and checks each pair's order.
pub(super) fn evaluate(ctx: &Ctx<'_>, spec: &OrderingSpec<'_>) -> Verdict {
    let OrderingSpec {
        before,
        after,
        all_occurrences: all,
        match_by_attribute,
    } = *spec;
    let (b, a) = (fmt_action(before), fmt_action(after));
    let of = |action: Option<&str>| match action {
        Some(x) => ctx.matching(Some(x), None),
        None => Vec::new(),
    };
    let bs = ctx.sorted(of(before));
    let afs = ctx.sorted(of(after));
    if afs.is_empty() {
        return verdict(
            Reason::InconclusiveOrderingAfterMissing,
            ctx.ids(&bs[..bs.len().min(1)]),
            format!("{a} did not occur, so its order after {b} cannot be checked."),
        );
    }
    if bs.is_empty() {
        return verdict(
            Reason::InconclusiveOrderingBeforeMissing,
            ctx.ids(&afs[..1]),
            format!("{a} occurred but {b} never did."),
        );
    }
    let groups: Vec<(Vec<usize>, Vec<usize>)> = match match_by_attribute {
        None => vec![(bs, afs)],
        Some(attr) => {
            let key = |i: &usize| {
                ctx.events[*i]
                    .attributes
                    .get(attr)
                    .map(|v| canonicalize(v).unwrap_or_else(|_| v.to_string().into_bytes()))
            };
            let mut by_key: BTreeMap<Option<Vec<u8>>, Pairs> = BTreeMap::new();
            for i in &bs {
                if let Some(k) = key(i) {
                    by_key.entry(Some(k)).or_default().0.push(*i);
                }
            }
            for i in &afs {
                by_key.entry(key(i)).or_default().1.push(*i);
            }
            let mut groups: Vec<_> = by_key
                .into_values()
                .filter(|(_, a)| !a.is_empty())
                .collect();
            groups.sort_by(|x, y| ctx.cmp(x.1[0], y.1[0]));
            groups
        }
    };
    let mut pass_evidence = Vec::new();
    for (bs, afs) in groups {
        let pairs: Vec<(Option<usize>, usize)> = if all {
            afs.iter()
                .enumerate()
                .map(|(k, &a)| (bs.get(k).copied(), a))
                .collect()
        } else {
            vec![(bs.first().copied(), afs[0])]
        };
        for (bi, ai) in pairs {
            let Some(bi) = bi else {
                return verdict(
                    Reason::FailOrderingUnmatchedPair,
                    ctx.ids(&[ai]),
                    format!(
                        "{a} ({}) has no matching {b} before it.",
                        ctx.events[ai].event_id
                    ),
                );
            };
            if !ctx.precedes(bi, ai) {
                return verdict(
                    Reason::FailOrderingOutOfOrder,
                    ctx.ids(&[bi, ai]),
                    format!(
                        "{a} ({}) completed before {b} ({}).",
                        ctx.events[ai].event_id, ctx.events[bi].event_id
                    ),
                );
            }
            pass_evidence.extend([bi, ai]);
        }
    }
    verdict(
        Reason::PassOrderingSatisfied,
        ctx.ids(&pass_evidence),
        format!("{b} completed before {a}."),
    )
}
