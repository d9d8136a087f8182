//! `consensus`: sources (the flow's actions, external attestations) vote on
//! a claim; they must agree and reach the `threshold` on `expected_value`.

use serde_json::{Map, Value};

use super::super::policy::kind;
use super::super::reasons::Reason;
use super::checker::check_predicate;
use super::context::{Ctx, Predicate, Verdict, json_eq, plural, verdict};
use super::{Checker, spec_str};

/// Checks a `consensus` rule's spec.
pub(super) fn lint(c: &mut Checker<'_>) {
    let spec = c.spec;
    c.string("claim", true);
    c.allowed(&[
        "claim",
        "expected_value",
        "require_signed_sources",
        "sources",
        "threshold",
    ]);
    c.boolean("require_signed_sources");
    let n_sources = match spec.get("sources") {
        Some(Value::Array(sources)) if !sources.is_empty() => {
            for (j, s) in sources.iter().enumerate() {
                let Some(s) = s.as_object() else {
                    c.problem(format!("spec.sources[{j}] must be an object"));
                    continue;
                };
                match s.get("kind").and_then(Value::as_str) {
                    Some("intentproof_action") => {
                        if s.get("action")
                            .and_then(Value::as_str)
                            .is_none_or(|a| a.is_empty())
                        {
                            c.problem(format!("spec.sources[{j}].action is missing (an intentproof_action source names the action whose events vote)"));
                        }
                    }
                    Some("external") => {}
                    _ => c.problem(format!(
                        "spec.sources[{j}].kind must be intentproof_action or external"
                    )),
                }
                if let Some(w) = s.get("where") {
                    check_predicate(&format!("spec.sources[{j}].where"), w, c.at, c.problems);
                }
            }
            sources.len()
        }
        Some(Value::Array(_)) => {
            c.problem("spec.sources is empty; list at least one source");
            0
        }
        Some(other) => {
            c.problem(format!("spec.sources must be a list, not {}", kind(other)));
            0
        }
        None => {
            c.problem("spec.sources is missing");
            0
        }
    };
    match spec.get("threshold") {
        Some(Value::Object(t)) => {
            let modes = [
                t.get("unanimous") == Some(&Value::Bool(true)),
                t.get("majority") == Some(&Value::Bool(true)),
                t.contains_key("agree_at_least"),
            ];
            match modes.iter().filter(|m| **m).count() {
                1 => {}
                0 => c.problem("spec.threshold names no rule: set unanimous: true, majority: true or agree_at_least: N"),
                _ => c.problem("spec.threshold sets more than one of unanimous, majority, agree_at_least; keep one"),
            }
            if let Some(n) = t.get("agree_at_least") {
                match n.as_u64() {
                    Some(n) if n >= 1 => {
                        if n_sources > 0 && n > n_sources as u64 {
                            c.problem(format!("spec.threshold.agree_at_least is {n} but only {n_sources} source(s) are listed"));
                        }
                    }
                    _ => c.problem(format!(
                        "spec.threshold.agree_at_least must be an integer >= 1, not {n}"
                    )),
                }
            }
        }
        Some(other) => c.problem(format!(
            "spec.threshold must be an object, not {}",
            kind(other)
        )),
        None => c.problem("spec.threshold is missing"),
    }
}

/// `expected_value` when the rule gives none.
static TRUE: Value = Value::Bool(true);

/// A source's vote on the claim.
enum Source<'a> {
    /// `kind: intentproof_action`: the flow's events of `action` (that
    /// `where` holds for) vote.
    Action {
        action: Option<&'a str>,
        filter: Option<Predicate<'a>>,
    },
    /// Any other kind (`external`): the latest attestation of the claim
    /// (from `source_id`, if given) votes.
    External { source_id: Option<&'a str> },
}

/// How many agreeing votes pass.
#[derive(Clone, Copy)]
enum Threshold {
    /// `agree_at_least: N` (it wins over `majority`).
    AgreeAtLeast(u64),
    /// `majority: true`: more than half of the sources.
    Majority,
    /// Otherwise (`unanimous: true`, the default): every source.
    Unanimous,
}

/// A `consensus` rule's spec, as evaluation reads it.
pub(crate) struct ConsensusSpec<'a> {
    /// `claim`, when a non-empty string.
    claim: Option<&'a str>,
    /// `expected_value` (default `true`).
    expected: &'a Value,
    /// `require_signed_sources: true`.
    require_signed_sources: bool,
    /// `sources` (none when not a list).
    sources: Vec<Source<'a>>,
    /// `threshold`.
    threshold: Threshold,
}

impl<'a> ConsensusSpec<'a> {
    /// Reads `spec` leniently: a field of the wrong type is absent.
    pub(super) fn read(spec: &'a Map<String, Value>) -> ConsensusSpec<'a> {
        let sources: &[Value] = spec
            .get("sources")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let threshold = spec.get("threshold").and_then(Value::as_object);
        let flag = |k: &str| threshold.and_then(|t| t.get(k)) == Some(&Value::Bool(true));
        ConsensusSpec {
            claim: spec_str(spec, "claim").filter(|c| !c.is_empty()),
            expected: spec.get("expected_value").unwrap_or(&TRUE),
            require_signed_sources: spec.get("require_signed_sources") == Some(&Value::Bool(true)),
            sources: sources
                .iter()
                .map(|s| {
                    if s.get("kind").and_then(Value::as_str) == Some("intentproof_action") {
                        Source::Action {
                            action: s.get("action").and_then(Value::as_str),
                            filter: Predicate::read(s.get("where")),
                        }
                    } else {
                        Source::External {
                            source_id: s.get("source_id").and_then(Value::as_str),
                        }
                    }
                })
                .collect(),
            threshold: match threshold
                .and_then(|t| t.get("agree_at_least"))
                .and_then(Value::as_u64)
            {
                Some(n) => Threshold::AgreeAtLeast(n),
                None if flag("majority") => Threshold::Majority,
                None => Threshold::Unanimous,
            },
        }
    }
}

/// Collects each source's vote, then checks signatures, agreement and
/// the threshold.
pub(super) fn evaluate(ctx: &Ctx<'_>, spec: &ConsensusSpec<'_>) -> Verdict {
    let ConsensusSpec {
        claim,
        expected,
        require_signed_sources: require_signed,
        ref sources,
        threshold,
    } = *spec;
    let Some(claim) = claim else {
        return verdict(
            Reason::InconclusiveConsensusClaimMissing,
            Vec::new(),
            "The consensus rule names no claim.".into(),
        );
    };
    let mut votes: Vec<Option<Value>> = Vec::new();
    let mut ev_events = Vec::new();
    let mut ev_atts: Vec<String> = Vec::new();
    let mut internal = 0usize;
    let mut unsigned = Vec::new();
    for s in sources {
        match s {
            Source::Action {
                action,
                filter: pred,
            } => {
                internal += 1;
                let m = match *action {
                    Some(a) => ctx.matching(Some(a), pred.as_ref()),
                    None => Vec::new(),
                };
                // Present: the claim attribute of the latest match, else true.
                // Absent: false ("it did not happen").
                let vote = match m.iter().copied().max_by(|&a, &b| ctx.cmp(a, b)) {
                    Some(last) => ctx.events[last]
                        .attributes
                        .get(claim)
                        .cloned()
                        .unwrap_or(Value::Bool(true)),
                    None => Value::Bool(false),
                };
                ev_events.extend(m);
                votes.push(Some(vote));
            }
            Source::External { source_id: source } => {
                match ctx.latest_attestation(claim, *source) {
                    Some(a) => {
                        if !a.source_signed {
                            unsigned.push(a.attestation_id.clone());
                        }
                        ev_atts.push(a.attestation_id.clone());
                        votes.push(Some(a.claim_value.clone().unwrap_or(Value::Null)));
                    }
                    None => votes.push(None),
                }
            }
        }
    }
    let ev_events = ctx.ids(&ev_events);
    let with = |reason, summary: String, events: Vec<String>, atts: Vec<String>| Verdict {
        reason,
        events,
        attestations: atts,
        summary,
    };
    if require_signed && !unsigned.is_empty() {
        return with(
            Reason::InconclusiveConsensusSourceStale,
            format!(
                "Attestation(s) {} of `{claim}` carry no source signature, which the rule requires.",
                unsigned.join(", ")
            ),
            ev_events,
            ev_atts,
        );
    }
    let live: Vec<&Value> = votes.iter().flatten().collect();
    if internal == 0 && live.is_empty() {
        return with(
            Reason::InconclusiveConsensusExternalUnavailable,
            format!("No external source attested `{claim}` and the rule has no internal source."),
            ev_events,
            ev_atts,
        );
    }
    if let Some(first) = live.first()
        && live.iter().any(|v| !json_eq(v, first))
    {
        let shown: Vec<String> = live.iter().map(|v| v.to_string()).collect();
        return with(
            Reason::FailConsensusDisagreement,
            format!("Sources disagree about `{claim}`: {}.", shown.join(" vs ")),
            ev_events,
            ev_atts,
        );
    }
    let agree = live.iter().filter(|v| json_eq(v, expected)).count();
    let total = sources.len();
    let (needed, rule) = match threshold {
        Threshold::AgreeAtLeast(n) => (
            usize::try_from(n).unwrap_or(usize::MAX),
            format!("at least {n}"),
        ),
        Threshold::Majority => (total / 2 + 1, format!("a majority of {total}")),
        Threshold::Unanimous => (total.max(1), format!("all {total}")),
    };
    if agree >= needed {
        with(
            Reason::PassConsensusThresholdMet,
            format!(
                "{agree} of {total} source{} agree that `{claim}` is {expected} ({rule} needed).",
                plural(total)
            ),
            ev_events,
            ev_atts,
        )
    } else {
        with(
            Reason::FailConsensusThresholdUnmet,
            format!(
                "{agree} of {total} source{} agree that `{claim}` is {expected}; {rule} needed.",
                plural(total)
            ),
            ev_events,
            ev_atts,
        )
    }
}
