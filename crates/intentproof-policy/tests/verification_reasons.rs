//! One case per reason code the evaluator emits, for every category: each
//! asserts the exact reason, outcome, rule category and evidence; together
//! with `RESERVED_REASONS` they cover all of `semantics/reasons.json`.

use std::collections::BTreeSet;

use intentproof_core::schema::{SchemaKind, validate};
use intentproof_policy::verification::{
    Attestation, EvalOptions, Flow, FlowEvent, Outcome, Policy, RESERVED_REASONS, Reason, evaluate,
};
use serde_json::{Value, json};

/// An event completed `secs` seconds after 2026-05-16T00:00:00Z (started
/// one second earlier).
fn ev(id: &str, action: &str, status: &str, secs: i64) -> FlowEvent {
    let t = |s: i64| {
        let s = s.rem_euclid(86_400);
        format!(
            "2026-05-16T{:02}:{:02}:{:02}Z",
            s / 3600,
            (s / 60) % 60,
            s % 60
        )
    };
    FlowEvent {
        event_id: id.into(),
        action: Some(action.into()),
        status: Some(status.into()),
        started_at: Some(t(secs - 1)),
        completed_at: Some(t(secs)),
        ..FlowEvent::default()
    }
}

fn with_attr(mut e: FlowEvent, k: &str, v: Value) -> FlowEvent {
    e.attributes.insert(k.into(), v);
    e
}

fn att(id: &str, source: &str, claim: &str, value: Value, signed: bool) -> Attestation {
    Attestation {
        attestation_id: id.into(),
        source_id: Some(source.into()),
        claim: Some(claim.into()),
        claim_value: Some(value),
        received_at: Some("2026-05-16T00:10:00Z".into()),
        source_signed: signed,
        correlation_id: None,
    }
}

struct Case {
    name: &'static str,
    category: &'static str,
    spec: Value,
    events: Vec<FlowEvent>,
    attestations: Vec<Attestation>,
    reason: Reason,
    evidence: &'static [&'static str],
    attestation_evidence: &'static [&'static str],
}

fn case(
    name: &'static str,
    category: &'static str,
    spec: Value,
    events: Vec<FlowEvent>,
    reason: Reason,
    evidence: &'static [&'static str],
) -> Case {
    Case {
        name,
        category,
        spec,
        events,
        attestations: Vec::new(),
        reason,
        evidence,
        attestation_evidence: &[],
    }
}

fn with_atts(mut c: Case, atts: Vec<Attestation>, evidence: &'static [&'static str]) -> Case {
    c.attestations = atts;
    c.attestation_evidence = evidence;
    c
}

fn cases() -> Vec<Case> {
    use Reason::*;
    let pay = |id: &'static str, secs| ev(id, "pay", "ok", secs);
    let refund = "refund.created";
    vec![
        // required
        case(
            "required satisfied",
            "required",
            json!({"action": "pay", "min": 1}),
            vec![pay("e1", 1)],
            PassRequiredSatisfied,
            &["e1"],
        ),
        case(
            "required missing",
            "required",
            json!({"action": "pay", "min": 1}),
            vec![ev("x", "other", "ok", 1)],
            FailRequiredMissing,
            &[],
        ),
        case(
            "required where.status filters",
            "required",
            json!({"action": "pay", "min": 1, "where": {"status": "ok"}}),
            vec![ev("e1", "pay", "error", 1)],
            FailRequiredMissing,
            &[],
        ),
        case(
            "required under_min",
            "required",
            json!({"action": "pay", "min": 2}),
            vec![pay("e1", 1)],
            FailRequiredUnderMin,
            &["e1"],
        ),
        case(
            "required over_max",
            "required",
            json!({"action": "pay", "max": 1}),
            vec![pay("e1", 1), pay("e2", 2)],
            FailRequiredOverMax,
            &["e1", "e2"],
        ),
        case(
            "required where.attribute in",
            "required",
            json!({"action": "pay", "min": 1, "where": {"attribute": "env", "in": ["prod", "live"]}}),
            vec![
                with_attr(pay("e1", 1), "env", json!("test")),
                with_attr(pay("e2", 2), "env", json!("live")),
            ],
            PassRequiredSatisfied,
            &["e2"],
        ),
        // forbidden
        case(
            "forbidden absent",
            "forbidden",
            json!({"action": "drop"}),
            vec![pay("e1", 1)],
            PassForbiddenAbsent,
            &[],
        ),
        case(
            "forbidden present",
            "forbidden",
            json!({"action": "drop"}),
            vec![ev("d1", "drop", "ok", 1)],
            FailForbiddenPresent,
            &["d1"],
        ),
        case(
            "forbidden after_predecessor (double refund)",
            "forbidden",
            json!({"action": "refund", "after": "refund", "where_predecessor": {"status": "ok"}}),
            vec![ev("r1", "refund", "ok", 1), ev("r2", "refund", "ok", 5)],
            FailForbiddenAfterPredecessor,
            &["r1", "r2"],
        ),
        case(
            "forbidden after a failed predecessor is allowed",
            "forbidden",
            json!({"action": "refund", "after": "refund", "where_predecessor": {"status": "ok"}}),
            vec![ev("r1", "refund", "error", 1), ev("r2", "refund", "ok", 5)],
            PassForbiddenAbsent,
            &[],
        ),
        case(
            "forbidden without_predecessor",
            "forbidden",
            json!({"action": "fs.write", "after": "fs.write", "without_predecessor": "plan.declare"}),
            vec![
                ev("w1", "fs.write", "ok", 1),
                ev("p1", "plan.declare", "ok", 2),
                ev("w2", "fs.write", "ok", 3),
            ],
            FailForbiddenWithoutPredecessor,
            &["w1"],
        ),
        case(
            "forbidden with predecessor present passes",
            "forbidden",
            json!({"action": "fs.write", "after": "fs.write", "without_predecessor": "plan.declare"}),
            vec![
                ev("p1", "plan.declare", "ok", 1),
                ev("w1", "fs.write", "ok", 2),
            ],
            PassForbiddenAbsent,
            &[],
        ),
        // ordering
        case(
            "ordering satisfied",
            "ordering",
            json!({"before": "a", "after": "b"}),
            vec![ev("a1", "a", "ok", 1), ev("b1", "b", "ok", 2)],
            PassOrderingSatisfied,
            &["a1", "b1"],
        ),
        case(
            "ordering out_of_order",
            "ordering",
            json!({"before": "a", "after": "b"}),
            vec![ev("b1", "b", "ok", 1), ev("a1", "a", "ok", 2)],
            FailOrderingOutOfOrder,
            &["a1", "b1"],
        ),
        case(
            "ordering before_missing",
            "ordering",
            json!({"before": "a", "after": "b"}),
            vec![ev("b1", "b", "ok", 1)],
            InconclusiveOrderingBeforeMissing,
            &["b1"],
        ),
        case(
            "ordering after_missing",
            "ordering",
            json!({"before": "a", "after": "b"}),
            vec![ev("a1", "a", "ok", 1)],
            InconclusiveOrderingAfterMissing,
            &["a1"],
        ),
        case(
            "ordering unmatched_pair (all-occurrences)",
            "ordering",
            json!({"before": "a", "after": "b", "scope": "all-occurrences"}),
            vec![
                ev("a1", "a", "ok", 1),
                ev("b1", "b", "ok", 2),
                ev("b2", "b", "ok", 3),
            ],
            FailOrderingUnmatchedPair,
            &["b2"],
        ),
        case(
            "ordering match_by_attribute",
            "ordering",
            json!({"before": "a", "after": "b", "match_by_attribute": "order"}),
            vec![
                with_attr(ev("a1", "a", "ok", 1), "order", json!("o1")),
                with_attr(ev("b2", "b", "ok", 2), "order", json!("o2")),
                with_attr(ev("a2", "a", "ok", 3), "order", json!("o2")),
            ],
            FailOrderingOutOfOrder,
            &["a2", "b2"],
        ),
        // cardinality
        case(
            "cardinality exactly satisfied",
            "cardinality",
            json!({"action": "pay", "exactly": 1}),
            vec![pay("e1", 1)],
            PassCardinalitySatisfied,
            &["e1"],
        ),
        case(
            "cardinality not_exact",
            "cardinality",
            json!({"action": "pay", "exactly": 1}),
            vec![pay("e1", 1), pay("e2", 2)],
            FailCardinalityNotExact,
            &["e1", "e2"],
        ),
        case(
            "cardinality under_min",
            "cardinality",
            json!({"action": "pay", "min": 2, "max": 3}),
            vec![pay("e1", 1)],
            FailCardinalityUnderMin,
            &["e1"],
        ),
        case(
            "cardinality over_max",
            "cardinality",
            json!({"action": "pay", "max": 1}),
            vec![pay("e1", 1), pay("e2", 2)],
            FailCardinalityOverMax,
            &["e1", "e2"],
        ),
        case(
            "cardinality out_of_range (min = max)",
            "cardinality",
            json!({"action": "pay", "min": 1, "max": 1}),
            vec![pay("e1", 1), pay("e2", 2)],
            FailCardinalityOutOfRange,
            &["e1", "e2"],
        ),
        case(
            "cardinality logical basis counts an id once",
            "cardinality",
            json!({"action": "pay", "exactly": 1}),
            vec![pay("e1", 1), pay("e1", 1)],
            PassCardinalitySatisfied,
            &["e1"],
        ),
        case(
            "cardinality raw basis counts repeats",
            "cardinality",
            json!({"action": "pay", "exactly": 1, "count_basis": "raw"}),
            vec![pay("e1", 1), pay("e1", 1)],
            FailCardinalityNotExact,
            &["e1"],
        ),
        // temporal
        case(
            "temporal within_window",
            "temporal",
            json!({"from": {"action": "open"}, "to": {"action": "notify"}, "max": "PT5M"}),
            vec![ev("o", "open", "ok", 0), ev("n", "notify", "ok", 60)],
            PassTemporalWithinWindow,
            &["o", "n"],
        ),
        case(
            "temporal exceeded_max",
            "temporal",
            json!({"from": {"action": "open"}, "to": {"action": "notify"}, "max": "PT5M"}),
            vec![ev("o", "open", "ok", 0), ev("n", "notify", "ok", 600)],
            FailTemporalExceededMax,
            &["o", "n"],
        ),
        case(
            "temporal anchor started_at",
            "temporal",
            json!({"from": {"action": "open"}, "to": {"action": "notify", "anchor": "started_at"}, "max": "PT5M"}),
            vec![ev("o", "open", "ok", 0), ev("n", "notify", "ok", 301)],
            PassTemporalWithinWindow,
            &["o", "n"],
        ),
        case(
            "temporal below_min",
            "temporal",
            json!({"from": {"action": "open"}, "to": {"action": "notify"}, "min": "PT1M"}),
            vec![ev("o", "open", "ok", 0), ev("n", "notify", "ok", 30)],
            FailTemporalBelowMin,
            &["o", "n"],
        ),
        case(
            "temporal negative_interval",
            "temporal",
            json!({"from": {"action": "open"}, "to": {"action": "notify"}, "max": "PT5M", "clock_skew_tolerance": "PT5S"}),
            vec![ev("n", "notify", "ok", 0), ev("o", "open", "ok", 10)],
            FailTemporalNegativeInterval,
            &["o", "n"],
        ),
        case(
            "temporal clock_skew_within_tolerance",
            "temporal",
            json!({"from": {"action": "open"}, "to": {"action": "notify"}, "max": "PT5M", "clock_skew_tolerance": "PT5S"}),
            vec![ev("n", "notify", "ok", 0), ev("o", "open", "ok", 2)],
            InconclusiveTemporalClockSkewWithinTolerance,
            &["o", "n"],
        ),
        case(
            "temporal missing_anchor",
            "temporal",
            json!({"from": {"action": "open"}, "to": {"action": "notify"}, "max": "PT5M"}),
            vec![ev("o", "open", "ok", 0)],
            InconclusiveTemporalMissingAnchor,
            &["o"],
        ),
        case(
            "temporal duration_invalid",
            "temporal",
            json!({"from": {"action": "open"}, "to": {"action": "notify"}, "max": "5m"}),
            vec![ev("o", "open", "ok", 0), ev("n", "notify", "ok", 60)],
            InconclusiveTemporalDurationInvalid,
            &[],
        ),
        // consensus
        with_atts(
            case(
                "consensus threshold_met",
                "consensus",
                json!({"claim": refund, "sources": [{"kind": "intentproof_action", "action": "refund", "where": {"status": "ok"}}, {"kind": "external", "source_id": "stripe"}], "threshold": {"unanimous": true}}),
                vec![ev("r1", "refund", "ok", 1)],
                PassConsensusThresholdMet,
                &["r1"],
            ),
            vec![att("att1", "stripe", refund, json!(true), true)],
            &["att1"],
        ),
        with_atts(
            case(
                "consensus disagreement (refund made outside the app)",
                "consensus",
                json!({"claim": refund, "sources": [{"kind": "intentproof_action", "action": "refund"}, {"kind": "external", "source_id": "stripe"}], "threshold": {"unanimous": true}}),
                vec![],
                FailConsensusDisagreement,
                &[],
            ),
            vec![att("att1", "stripe", refund, json!(true), true)],
            &["att1"],
        ),
        case(
            "consensus threshold_unmet (a source is silent)",
            "consensus",
            json!({"claim": refund, "sources": [{"kind": "intentproof_action", "action": "refund"}, {"kind": "external", "source_id": "stripe"}], "threshold": {"unanimous": true}}),
            vec![ev("r1", "refund", "ok", 1)],
            FailConsensusThresholdUnmet,
            &["r1"],
        ),
        with_atts(
            case(
                "consensus majority met",
                "consensus",
                json!({"claim": refund, "sources": [{"kind": "intentproof_action", "action": "refund"}, {"kind": "external", "source_id": "stripe"}, {"kind": "external", "source_id": "bank"}], "threshold": {"majority": true}}),
                vec![ev("r1", "refund", "ok", 1)],
                PassConsensusThresholdMet,
                &["r1"],
            ),
            vec![att("att1", "stripe", refund, json!(true), false)],
            &["att1"],
        ),
        case(
            "consensus external_unavailable",
            "consensus",
            json!({"claim": refund, "sources": [{"kind": "external", "source_id": "stripe"}], "threshold": {"agree_at_least": 1}}),
            vec![],
            InconclusiveConsensusExternalUnavailable,
            &[],
        ),
        with_atts(
            case(
                "consensus source_stale (unsigned)",
                "consensus",
                json!({"claim": refund, "require_signed_sources": true, "sources": [{"kind": "external", "source_id": "stripe"}], "threshold": {"unanimous": true}}),
                vec![],
                InconclusiveConsensusSourceStale,
                &[],
            ),
            vec![att("att1", "stripe", refund, json!(true), false)],
            &["att1"],
        ),
        case(
            "consensus claim_missing",
            "consensus",
            json!({"sources": [{"kind": "intentproof_action", "action": "refund"}], "threshold": {"unanimous": true}}),
            vec![ev("r1", "refund", "ok", 1)],
            InconclusiveConsensusClaimMissing,
            &[],
        ),
        // value_bound
        with_atts(
            case(
                "value_bound satisfied",
                "value_bound",
                json!({"claim": "refund.amount", "operator": "lte", "value": 500, "source_id": "stripe"}),
                vec![],
                PassValueBoundSatisfied,
                &[],
            ),
            vec![att("a1", "stripe", "refund.amount", json!(400), true)],
            &["a1"],
        ),
        with_atts(
            case(
                "value_bound out_of_range",
                "value_bound",
                json!({"claim": "refund.amount", "operator": "lte", "value": 500.0, "source_id": "stripe"}),
                vec![],
                FailValueBoundOutOfRange,
                &[],
            ),
            vec![
                att("a0", "stripe", "refund.amount", json!(100), true),
                att("a1", "stripe", "refund.amount", json!("600.50"), true),
            ],
            &["a1"],
        ),
        with_atts(
            case(
                "value_bound claim_missing (other source)",
                "value_bound",
                json!({"claim": "refund.amount", "operator": "lte", "value": 500, "source_id": "stripe"}),
                vec![],
                InconclusiveValueBoundClaimMissing,
                &[],
            ),
            vec![att("a1", "bank", "refund.amount", json!(400), true)],
            &[],
        ),
        case(
            "value_bound operator_unsupported",
            "value_bound",
            json!({"claim": "refund.amount", "operator": "approx", "value": 500}),
            vec![],
            InconclusiveValueBoundOperatorUnsupported,
            &[],
        ),
        case(
            "value_bound bound_invalid",
            "value_bound",
            json!({"claim": "refund.amount", "operator": "lt", "value": "500"}),
            vec![],
            InconclusiveValueBoundBoundInvalid,
            &[],
        ),
        // claim_match
        with_atts(
            case(
                "claim_match matched",
                "claim_match",
                json!({"claim": "refund.status", "expected_value": "succeeded", "source_id": "stripe", "require_signed": true}),
                vec![],
                PassClaimMatchMatched,
                &[],
            ),
            vec![att(
                "a1",
                "stripe",
                "refund.status",
                json!("succeeded"),
                true,
            )],
            &["a1"],
        ),
        with_atts(
            case(
                "claim_match mismatch",
                "claim_match",
                json!({"claim": "refund.status", "expected_value": "succeeded"}),
                vec![],
                FailClaimMatchMismatch,
                &[],
            ),
            vec![att("a1", "stripe", "refund.status", json!("failed"), true)],
            &["a1"],
        ),
        case(
            "claim_match claim_missing",
            "claim_match",
            json!({"claim": "refund.status", "expected_value": "succeeded"}),
            vec![],
            InconclusiveClaimMatchClaimMissing,
            &[],
        ),
        with_atts(
            case(
                "claim_match source_unsigned",
                "claim_match",
                json!({"claim": "refund.status", "expected_value": "succeeded", "require_signed": true}),
                vec![],
                InconclusiveClaimMatchSourceUnsigned,
                &[],
            ),
            vec![att(
                "a1",
                "stripe",
                "refund.status",
                json!("succeeded"),
                false,
            )],
            &["a1"],
        ),
        case(
            "claim_match expected_missing",
            "claim_match",
            json!({"claim": "refund.status"}),
            vec![],
            InconclusiveClaimMatchExpectedMissing,
            &[],
        ),
        // anything else
        case(
            "unknown category",
            "completion",
            json!({"all_required_ok": true}),
            vec![pay("e1", 1)],
            InconclusiveUnknownUnsupportedRuleCategory,
            &[],
        ),
    ]
}

fn run_case(c: &Case) -> intentproof_policy::verification::Run {
    let policy = Policy::compile(json!({
        "policy_id": "t.reasons",
        "tenant_id": "t",
        "rules": [{"id": "r1", "category": c.category, "severity": "high", "spec": c.spec}],
    }))
    .expect("policy compiles");
    let flow = Flow {
        flow_id: "f".into(),
        events: c.events.clone(),
        ..Flow::default()
    };
    evaluate(&policy, &flow, &c.attestations, &EvalOptions::default())
}

#[test]
fn every_case_gives_its_reason() {
    let mut failures = Vec::new();
    for c in cases() {
        let run = run_case(&c);
        if let Err(e) = validate(SchemaKind::Run, &run.to_value()) {
            failures.push(format!("{}: run invalid: {e:?}", c.name));
        }
        let [f] = run.findings.as_slice() else {
            failures.push(format!("{}: {} findings", c.name, run.findings.len()));
            continue;
        };
        let category = if c.category == "completion" {
            "unknown"
        } else {
            c.category
        };
        let got = (
            f.reason,
            f.outcome,
            f.rule_category.as_str(),
            f.evidence_event_ids.clone(),
            f.evidence_attestation_ids.clone(),
            run.status,
        );
        let want = (
            c.reason,
            c.reason.outcome(),
            category,
            c.evidence.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            c.attestation_evidence
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            c.reason.outcome(),
        );
        if got != want {
            failures.push(format!(
                "{}: got {got:?}, want {want:?} ({})",
                c.name, f.human_summary
            ));
        }
        assert!(!f.human_summary.is_empty());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cases_and_reserved_codes_cover_the_vocabulary() {
    let emitted: BTreeSet<Reason> = cases().iter().map(|c| c.reason).collect();
    let reserved: BTreeSet<Reason> = RESERVED_REASONS.into_iter().collect();
    assert!(
        emitted.is_disjoint(&reserved),
        "{:?}",
        emitted.intersection(&reserved).collect::<Vec<_>>()
    );
    let all: BTreeSet<Reason> = Reason::ALL.iter().copied().collect();
    let covered: BTreeSet<Reason> = emitted.union(&reserved).copied().collect();
    let missing: Vec<_> = all.difference(&covered).map(|r| r.as_str()).collect();
    assert!(
        missing.is_empty(),
        "reason codes without a test: {missing:?}"
    );
    for category in [
        "forbidden",
        "cardinality",
        "consensus",
        "value_bound",
        "claim_match",
    ] {
        assert!(
            emitted
                .iter()
                .any(|r| r.category() == category && r.outcome() == Outcome::Pass)
        );
        assert!(
            emitted
                .iter()
                .any(|r| r.category() == category && r.outcome() != Outcome::Pass)
        );
    }
}

#[test]
fn run_status_and_summary() {
    let policy = Policy::compile(json!({
        "policy_id": "t.mixed",
        "tenant_id": "t",
        "rules": [
            {"id": "ok", "type": "required", "severity": "low", "action": "a", "min": 1},
            {"id": "inc", "type": "ordering", "severity": "critical", "before": "x", "after": "a"},
            {"id": "bad", "type": "forbidden", "severity": "info", "action": "a"},
        ],
    }))
    .expect("compiles");
    let flow = Flow {
        flow_id: "f".into(),
        tenant_id: Some("t".into()),
        events: vec![ev("e1", "a", "ok", 1)],
        ..Flow::default()
    };
    let run = evaluate(&policy, &flow, &[], &EvalOptions::default());
    assert_eq!(run.status, Outcome::Fail);
    let s = run.summary;
    assert_eq!(
        (
            s.outcome_counts.pass,
            s.outcome_counts.fail,
            s.outcome_counts.inconclusive
        ),
        (1, 1, 1)
    );
    assert_eq!(
        (
            s.severity_counts.critical,
            s.severity_counts.high,
            s.severity_counts.medium,
            s.severity_counts.low,
            s.severity_counts.info
        ),
        (1, 0, 0, 1, 1)
    );
    // Without the failing rule the run is inconclusive.
    let mut doc = policy.to_value();
    doc["rules"].as_array_mut().expect("rules").pop();
    doc["policy_fingerprint"] = json!("");
    let policy2 = Policy::compile(doc).expect("compiles");
    let run2 = evaluate(&policy2, &flow, &[], &EvalOptions::default());
    assert_eq!(run2.status, Outcome::Inconclusive);
    // The run fingerprint covers content but not times or signature.
    let opts = EvalOptions {
        started_at: Some("2030-01-01T00:00:00Z".into()),
        ..EvalOptions::default()
    };
    let run3 = evaluate(&policy, &flow, &[], &opts);
    assert_eq!(run3.run_fingerprint, run.run_fingerprint);
    assert_eq!(run3.run_id, run.run_id);
    assert_ne!(run2.run_fingerprint, run.run_fingerprint);
    assert_eq!(run.policy_fingerprint, policy.fingerprint().expect("fp"));
    assert_eq!(
        run.attestation_set.merkle_root,
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    validate(SchemaKind::Run, &run.to_value()).expect("valid run");
}

#[test]
fn scope_with_ignore_flows_with_no_match() {
    let doc = |ignore: bool| {
        json!({
            "policy_id": "t.scope",
            "tenant_id": "t",
            "scope": {"any_event_action_in": ["refund"], "ignore_flows_with_no_match": ignore},
            "rules": [{"id": "r", "type": "required", "action": "refund", "min": 1}],
        })
    };
    let unrelated = Flow {
        flow_id: "f".into(),
        events: vec![ev("e1", "search", "ok", 1)],
        ..Flow::default()
    };
    let ignored = evaluate(
        &Policy::compile(doc(true)).expect("p"),
        &unrelated,
        &[],
        &EvalOptions::default(),
    );
    assert!(ignored.findings.is_empty());
    assert_eq!(ignored.status, Outcome::Pass);
    assert_eq!(ignored.summary.outcome_counts.pass, 0);
    validate(SchemaKind::Run, &ignored.to_value()).expect("valid");
    let evaluated = evaluate(
        &Policy::compile(doc(false)).expect("p"),
        &unrelated,
        &[],
        &EvalOptions::default(),
    );
    assert_eq!(evaluated.status, Outcome::Fail);
    assert_eq!(evaluated.findings[0].reason, Reason::FailRequiredMissing);
    // In scope: evaluated even with ignore_flows_with_no_match.
    let related = Flow {
        flow_id: "f".into(),
        events: vec![ev("e1", "refund", "error", 1)],
        ..Flow::default()
    };
    let run = evaluate(
        &Policy::compile(doc(true)).expect("p"),
        &related,
        &[],
        &EvalOptions::default(),
    );
    assert_eq!(run.findings.len(), 1);
}

#[test]
fn attestations_for_another_correlation_are_left_out() {
    let policy = Policy::compile(json!({
        "policy_id": "t.att", "tenant_id": "t",
        "rules": [{"id": "m", "type": "claim_match", "claim": "c", "expected_value": 1}],
    }))
    .expect("p");
    let flow = Flow {
        flow_id: "f".into(),
        correlation_id: Some("corr1".into()),
        ..Flow::default()
    };
    let mut other = att("a1", "s", "c", json!(1), true);
    other.correlation_id = Some("corr2".into());
    let run = evaluate(&policy, &flow, &[other.clone()], &EvalOptions::default());
    assert_eq!(
        run.findings[0].reason,
        Reason::InconclusiveClaimMatchClaimMissing
    );
    assert!(run.attestation_set.ids.is_empty());
    other.correlation_id = Some("corr1".into());
    let run = evaluate(&policy, &flow, &[other], &EvalOptions::default());
    assert_eq!(run.findings[0].reason, Reason::PassClaimMatchMatched);
    assert_eq!(run.attestation_set.ids, ["a1"]);
}
