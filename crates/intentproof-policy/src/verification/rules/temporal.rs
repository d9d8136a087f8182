//! `temporal`: the interval between a `from` and a `to` anchor event lies
//! within `min`/`max` (ISO 8601 durations), allowing `clock_skew_tolerance`.

use std::fmt;

use serde_json::{Map, Value};

use super::super::policy::kind;
use super::super::reasons::Reason;
use super::super::time::{human_duration, parse_iso8601_duration};
use super::Checker;
use super::context::{Ctx, Verdict, fmt_action, verdict};

/// Checks a `temporal` rule's spec.
pub(super) fn lint(c: &mut Checker<'_>) {
    let spec = c.spec;
    for end in ["from", "to"] {
        match spec.get(end) {
            Some(Value::Object(o)) => {
                match o.get("action") {
                    Some(Value::String(s)) if !s.is_empty() => {}
                    _ => c.problem(format!(
                        "spec.{end}.action is missing (the action whose time anchors the window)"
                    )),
                }
                if let Some(a) = o.get("anchor")
                    && !matches!(a.as_str(), Some("started_at" | "completed_at"))
                {
                    c.problem(format!(
                        "spec.{end}.anchor {a} is not started_at or completed_at"
                    ));
                }
            }
            Some(other) => c.problem(format!(
                "spec.{end} must be an object {{action, anchor}}, not {}",
                kind(other)
            )),
            None => c.problem(format!("spec.{end} is missing")),
        }
    }
    c.allowed(&["from", "to", "min", "max", "clock_skew_tolerance"]);
    let min = c.duration("min");
    let max = c.duration("max");
    c.duration("clock_skew_tolerance");
    if !spec.contains_key("min") && !spec.contains_key("max") {
        c.problem("no window: give spec.max and/or spec.min (ISO 8601 durations such as PT15M)");
    }
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        c.problem("spec.min is longer than spec.max");
    }
}

/// One end of the window: the earliest timed event of `action`.
#[derive(Clone, Copy)]
struct Anchor<'a> {
    /// `action`; no action, no anchor.
    action: Option<&'a str>,
    /// `anchor: started_at` (else its completion time anchors).
    started: bool,
}

impl<'a> Anchor<'a> {
    /// The end written at `end` (`spec.from` or `spec.to`).
    fn read(end: Option<&'a Value>) -> Anchor<'a> {
        let o = end.and_then(Value::as_object);
        Anchor {
            action: o.and_then(|o| o.get("action")).and_then(Value::as_str),
            started: o.and_then(|o| o.get("anchor")).and_then(Value::as_str) == Some("started_at"),
        }
    }
}

/// A duration field written as something other than an ISO 8601 duration.
#[derive(Clone, Copy)]
struct BadDuration<'a> {
    key: &'static str,
    value: &'a Value,
}

impl fmt::Display for BadDuration<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spec.{} {} is not an ISO 8601 duration",
            self.key, self.value
        )
    }
}

/// A duration field: absent, a duration, or not one.
type Duration<'a> = Result<Option<i128>, BadDuration<'a>>;

/// A `temporal` rule's spec, as evaluation reads it.
pub(crate) struct TemporalSpec<'a> {
    /// `from`: where the window starts.
    from: Anchor<'a>,
    /// `to`: where it ends.
    to: Anchor<'a>,
    /// `min`: the shortest interval allowed.
    min: Duration<'a>,
    /// `max`: the longest interval allowed.
    max: Duration<'a>,
    /// `clock_skew_tolerance`: how far `to` may come before `from`
    /// without failing.
    clock_skew_tolerance: Duration<'a>,
}

impl<'a> TemporalSpec<'a> {
    /// Reads `spec` leniently: an end that is not an object has no action;
    /// a duration that does not parse is kept, for the verdict to name.
    pub(super) fn read(spec: &'a Map<String, Value>) -> TemporalSpec<'a> {
        let dur = |key: &'static str| -> Duration<'a> {
            match spec.get(key) {
                None => Ok(None),
                Some(value) => value
                    .as_str()
                    .and_then(parse_iso8601_duration)
                    .map(Some)
                    .ok_or(BadDuration { key, value }),
            }
        };
        TemporalSpec {
            from: Anchor::read(spec.get("from")),
            to: Anchor::read(spec.get("to")),
            min: dur("min"),
            max: dur("max"),
            clock_skew_tolerance: dur("clock_skew_tolerance"),
        }
    }
}

/// Measures the interval between the anchors against the window.
pub(super) fn evaluate(ctx: &Ctx<'_>, spec: &TemporalSpec<'_>) -> Verdict {
    let TemporalSpec {
        from: Anchor {
            action: from,
            started: from_started,
        },
        to: Anchor {
            action: to,
            started: to_started,
        },
        min,
        max,
        clock_skew_tolerance,
    } = *spec;
    let (min, max, tol) = match (min, max, clock_skew_tolerance) {
        (Ok(min), Ok(max), Ok(tol)) => (min, max, tol),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return verdict(
                Reason::InconclusiveTemporalDurationInvalid,
                Vec::new(),
                format!("{e}; the window cannot be evaluated."),
            );
        }
    };
    if min.is_none() && max.is_none() {
        return verdict(
            Reason::InconclusiveTemporalDurationInvalid,
            Vec::new(),
            "The rule gives neither max nor min; the window cannot be evaluated.".into(),
        );
    }
    let anchor = |action: Option<&str>, started: bool| -> Option<(usize, i128)> {
        let action = action?;
        ctx.matching(Some(action), None)
            .into_iter()
            .filter_map(|i| {
                let t = if started {
                    ctx.started[i]
                } else {
                    ctx.completed[i]
                };
                Some((i, t?))
            })
            .min_by_key(|&(i, t)| (t, i))
    };
    let (fa, ta) = (anchor(from, from_started), anchor(to, to_started));
    let (f, t) = match (fa, ta) {
        (Some(f), Some(t)) => (f, t),
        _ => {
            let found: Vec<usize> = [fa, ta].into_iter().flatten().map(|(i, _)| i).collect();
            let missing = if fa.is_none() {
                fmt_action(from)
            } else {
                fmt_action(to)
            };
            return verdict(
                Reason::InconclusiveTemporalMissingAnchor,
                ctx.ids(&found),
                format!("No timed {missing} event anchors the window."),
            );
        }
    };
    let d = t.1 - f.1;
    let ev = ctx.ids(&[f.0, t.0]);
    let (fs, ts) = (fmt_action(from), fmt_action(to));
    if d < 0 {
        if let Some(tol) = tol.filter(|tol| -d <= *tol) {
            return verdict(
                Reason::InconclusiveTemporalClockSkewWithinTolerance,
                ev,
                format!(
                    "{ts} is {} before {fs}, within the clock-skew tolerance of {}.",
                    human_duration(-d),
                    human_duration(tol)
                ),
            );
        }
        return verdict(
            Reason::FailTemporalNegativeInterval,
            ev,
            format!("{ts} is {} before {fs}.", human_duration(-d)),
        );
    }
    if let Some(max) = max.filter(|m| d > *m) {
        return verdict(
            Reason::FailTemporalExceededMax,
            ev,
            format!(
                "{ts} came {} after {fs}; the maximum is {}.",
                human_duration(d),
                human_duration(max)
            ),
        );
    }
    if let Some(min) = min.filter(|m| d < *m) {
        return verdict(
            Reason::FailTemporalBelowMin,
            ev,
            format!(
                "{ts} came {} after {fs}; the minimum is {}.",
                human_duration(d),
                human_duration(min)
            ),
        );
    }
    verdict(
        Reason::PassTemporalWithinWindow,
        ev,
        format!(
            "{ts} came {} after {fs}, within the window.",
            human_duration(d)
        ),
    )
}
