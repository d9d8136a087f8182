//! What every kind's evaluation works with: the flow's events in order
//! ([`Ctx`]), event predicates (`where`), the latest attestation of a claim,
//! and the [`Verdict`] a kind returns.

use std::cmp::Ordering;
use std::collections::HashSet;

use serde_json::Value;

use super::super::input::{Attestation, FlowEvent};
use super::super::reasons::Reason;
use super::super::time::parse_rfc3339;

/// A kind's verdict on a rule: the finding without the rule's identity.
pub(crate) struct Verdict {
    pub(crate) reason: Reason,
    pub(crate) events: Vec<String>,
    pub(crate) attestations: Vec<String>,
    pub(crate) summary: String,
}

/// A verdict resting on events only.
pub(super) fn verdict(reason: Reason, events: Vec<String>, summary: String) -> Verdict {
    Verdict {
        reason,
        events,
        attestations: Vec::new(),
        summary,
    }
}

/// The flow's events (with their parsed times) and attestations.
pub(crate) struct Ctx<'a> {
    pub(super) events: &'a [FlowEvent],
    pub(super) started: Vec<Option<i128>>,
    pub(super) completed: Vec<Option<i128>>,
    attestations: &'a [&'a Attestation],
}

/// An attribute/status predicate (`where`, `where_predecessor`).
pub(super) struct Predicate<'a> {
    status: Option<&'a str>,
    attribute: Option<&'a str>,
    equals: Option<&'a Value>,
    one_of: Option<&'a [Value]>,
}

impl<'a> Predicate<'a> {
    /// The predicate written at `v`; `None` when absent or not an object.
    pub(super) fn read(v: Option<&'a Value>) -> Option<Predicate<'a>> {
        let o = v?.as_object()?;
        Some(Predicate {
            status: o.get("status").and_then(Value::as_str),
            attribute: o.get("attribute").and_then(Value::as_str),
            equals: o.get("equals"),
            one_of: o.get("in").and_then(Value::as_array).map(Vec::as_slice),
        })
    }

    fn holds(&self, e: &FlowEvent) -> bool {
        if let Some(s) = self.status
            && e.status.as_deref() != Some(s)
        {
            return false;
        }
        if let Some(attr) = self.attribute {
            let Some(v) = e.attributes.get(attr) else {
                return false;
            };
            if let Some(eq) = self.equals
                && !json_eq(v, eq)
            {
                return false;
            }
            if let Some(list) = self.one_of
                && !list.iter().any(|x| json_eq(v, x))
            {
                return false;
            }
        }
        true
    }
}

/// JSON equality with numbers compared by value (`1 == 1.0`).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// `` `action` ``, or "any action" when the rule names none.
pub(super) fn fmt_action(a: Option<&str>) -> String {
    match a {
        Some(a) => format!("`{a}`"),
        None => "any action".to_owned(),
    }
}

/// The plural `s` for `n` things.
pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl<'a> Ctx<'a> {
    /// The context of a flow's `events` and `attestations`.
    pub(crate) fn new(events: &'a [FlowEvent], attestations: &'a [&'a Attestation]) -> Ctx<'a> {
        let t = |s: &Option<String>| s.as_deref().and_then(parse_rfc3339);
        Ctx {
            events,
            started: events.iter().map(|e| t(&e.started_at)).collect(),
            completed: events.iter().map(|e| t(&e.completed_at)).collect(),
            attestations,
        }
    }

    /// Indexes of events matching `action` (if given) and `pred` (if given).
    pub(super) fn matching(
        &self,
        action: Option<&str>,
        pred: Option<&Predicate<'_>>,
    ) -> Vec<usize> {
        (0..self.events.len())
            .filter(|&i| {
                let e = &self.events[i];
                action.is_none_or(|a| e.action.as_deref() == Some(a))
                    && pred.is_none_or(|p| p.holds(e))
            })
            .collect()
    }

    /// Event order: completion times when both are known, ties (and
    /// unknown times) broken by flow position.
    pub(super) fn cmp(&self, a: usize, b: usize) -> Ordering {
        match (self.completed[a], self.completed[b]) {
            (Some(x), Some(y)) => x.cmp(&y).then(a.cmp(&b)),
            _ => a.cmp(&b),
        }
    }

    pub(super) fn precedes(&self, a: usize, b: usize) -> bool {
        a != b && self.cmp(a, b) == Ordering::Less
    }

    pub(super) fn earliest(&self, idx: &[usize]) -> Option<usize> {
        idx.iter().copied().min_by(|&a, &b| self.cmp(a, b))
    }

    pub(super) fn sorted(&self, mut idx: Vec<usize>) -> Vec<usize> {
        idx.sort_by(|&a, &b| self.cmp(a, b));
        idx
    }

    pub(super) fn ids(&self, idx: &[usize]) -> Vec<String> {
        let mut seen = HashSet::new();
        idx.iter()
            .map(|&i| self.events[i].event_id.clone())
            .filter(|id| seen.insert(id.clone()))
            .collect()
    }

    /// The latest attestation of `claim` (from `source`, if given): latest
    /// `received_at`, then latest in input order.
    pub(super) fn latest_attestation(
        &self,
        claim: &str,
        source: Option<&str>,
    ) -> Option<&'a Attestation> {
        self.attestations
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                a.claim.as_deref() == Some(claim)
                    && source.is_none_or(|s| a.source_id.as_deref() == Some(s))
            })
            .max_by_key(|(i, a)| (a.received_at.as_deref().and_then(parse_rfc3339), *i))
            .map(|(_, a)| *a)
    }

    /// The latest attestation of the rule's `claim` (from its `source_id`,
    /// when given) and the " from `source`" phrase for summaries; when
    /// there is none, the `missing` verdict that says so.
    pub(super) fn attested_claim(
        &self,
        claim: &str,
        source: Option<&str>,
        missing: Reason,
    ) -> Result<(&'a Attestation, String), Verdict> {
        let from = source.map(|s| format!(" from `{s}`")).unwrap_or_default();
        match self
            .latest_attestation(claim, source)
            .filter(|_| !claim.is_empty())
        {
            Some(a) => Ok((a, from)),
            None => Err(verdict(
                missing,
                Vec::new(),
                format!("No attestation of `{claim}`{from}."),
            )),
        }
    }
}
