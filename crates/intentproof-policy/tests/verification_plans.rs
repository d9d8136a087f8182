//! Declared plans: compilation to a policy, and flags on a closed plan.

use intentproof_core::schema::{SchemaKind, validate};
use intentproof_policy::verification::{
    DeclaredPlan, EvalOptions, Flag, FlagKind, Flow, FlowEvent, Outcome, Policy, PolicyFormat,
    Reason, classify_plan, evaluate,
};
use serde_json::json;

fn refund_plan(ordered: bool) -> DeclaredPlan {
    serde_json::from_value(json!({
        "plan_id": "p1",
        "intent": "Refund order ORD-1042 and tell the customer",
        "steps": [
            {"tool": "stripe.refund.create", "purpose": "return the money"},
            {"action": "email.customer.refund_receipt", "purpose": "send the receipt"},
        ],
        "ordered": ordered,
    }))
    .expect("plan deserializes (tool and action both accepted)")
}

fn ev(id: &str, action: &str, status: &str) -> FlowEvent {
    FlowEvent {
        status: Some(status.into()),
        ..FlowEvent::new(id, action)
    }
}

#[test]
fn plan_compiles_to_required_and_ordering_rules() {
    let policy = refund_plan(true).compile("tnt_local").expect("compiles");
    policy.lint().expect("compiled plan is a valid policy");
    let rules = policy.to_value()["rules"].clone();
    assert_eq!(
        rules,
        json!([
            {"id": "step-1", "category": "required", "severity": "high",
             "spec": {"action": "stripe.refund.create", "min": 1, "where": {"status": "ok"}}},
            {"id": "step-2", "category": "required", "severity": "high",
             "spec": {"action": "email.customer.refund_receipt", "min": 1, "where": {"status": "ok"}}},
            {"id": "order-1-2", "category": "ordering", "severity": "medium",
             "spec": {"before": "stripe.refund.create", "after": "email.customer.refund_receipt", "scope": "first-occurrence"}},
        ])
    );
    assert_eq!(policy.policy_id(), Some("plan.p1"));
    assert_eq!(policy.tenant_id(), Some("tnt_local"));
    let unordered = refund_plan(false).compile("tnt_local").expect("compiles");
    assert_eq!(unordered.rules().len(), 2);
    assert_ne!(unordered.fingerprint().ok(), policy.fingerprint().ok());
}

#[test]
fn repeated_step_actions_need_one_success_each() {
    let plan: DeclaredPlan = serde_json::from_value(json!({
        "plan_id": "p2", "intent": "edit twice",
        "steps": [{"tool": "fs.read"}, {"tool": "fs.write"}, {"tool": "fs.read"}],
        "ordered": true,
    }))
    .expect("plan");
    let policy = plan.compile("t").expect("compiles");
    policy.lint().expect("valid");
    let v = policy.to_value();
    assert_eq!(v["rules"][2]["spec"]["min"], 2);
    let events = vec![ev("r1", "fs.read", "ok"), ev("w1", "fs.write", "ok")];
    let flags = classify_plan(&plan, &events);
    assert_eq!(flags.len(), 1, "{flags:?}");
    assert_eq!(
        (flags[0].kind, flags[0].step_index),
        (FlagKind::IncompleteIntent, Some(2))
    );
}

#[test]
fn compiled_plan_evaluates() {
    let policy = refund_plan(true).compile("tnt_local").expect("compiles");
    let flow = |events| Flow {
        flow_id: "f".into(),
        events,
        ..Flow::default()
    };
    let done = flow(vec![
        ev("e1", "stripe.refund.create", "ok"),
        ev("e2", "email.customer.refund_receipt", "ok"),
    ]);
    let run = evaluate(&policy, &done, &[], &EvalOptions::default());
    assert_eq!(run.status, Outcome::Pass);
    validate(SchemaKind::Run, &run.to_value()).expect("valid run");
    let half = flow(vec![ev("e1", "stripe.refund.create", "ok")]);
    let run = evaluate(&policy, &half, &[], &EvalOptions::default());
    assert_eq!(run.status, Outcome::Fail);
    let reasons: Vec<Reason> = run.findings.iter().map(|f| f.reason).collect();
    assert_eq!(
        reasons,
        [
            Reason::PassRequiredSatisfied,
            Reason::FailRequiredMissing,
            Reason::InconclusiveOrderingAfterMissing
        ]
    );
}

#[test]
fn only_the_refund_done_flags_the_email_step_as_incomplete() {
    let flags = classify_plan(
        &refund_plan(true),
        &[ev("e1", "stripe.refund.create", "ok")],
    );
    assert_eq!(
        flags,
        [Flag {
            kind: FlagKind::IncompleteIntent,
            step_index: Some(1),
            action: "email.customer.refund_receipt".into(),
            event_ids: vec![],
            message: flags[0].message.clone(),
        }]
    );
    assert!(
        flags[0].message.contains("email.customer.refund_receipt"),
        "{}",
        flags[0].message
    );
    assert!(
        flags[0].message.contains("send the receipt"),
        "{}",
        flags[0].message
    );
}

#[test]
fn an_extra_call_is_unplanned() {
    let events = [
        ev("d1", "intentproof.plan.declare", "ok"),
        ev("e1", "stripe.refund.create", "ok"),
        ev("x1", "stripe.customer.delete", "ok"),
        ev("e2", "email.customer.refund_receipt", "ok"),
        ev("e3", "stripe.refund.create", "ok"),
        FlowEvent {
            event_id: "ref".into(),
            ..FlowEvent::default()
        },
    ];
    let flags = classify_plan(&refund_plan(true), &events);
    assert_eq!(flags.len(), 1, "{flags:?}");
    assert_eq!(flags[0].kind, FlagKind::UnplannedCall);
    assert_eq!(flags[0].step_index, None);
    assert_eq!(flags[0].action, "stripe.customer.delete");
    assert_eq!(flags[0].event_ids, ["x1"]);
}

#[test]
fn a_step_that_only_failed_is_a_failed_step() {
    let events = [
        ev("e1", "stripe.refund.create", "ok"),
        ev("m1", "email.customer.refund_receipt", "error"),
        ev("m2", "email.customer.refund_receipt", "error"),
    ];
    let flags = classify_plan(&refund_plan(true), &events);
    assert_eq!(flags.len(), 1, "{flags:?}");
    assert_eq!(flags[0].kind, FlagKind::FailedStep);
    assert_eq!(flags[0].step_index, Some(1));
    assert_eq!(flags[0].event_ids, ["m1", "m2"]);
    // A failure followed by a success is not flagged.
    let recovered = [
        ev("e1", "stripe.refund.create", "error"),
        ev("e2", "stripe.refund.create", "ok"),
        ev("m1", "email.customer.refund_receipt", "ok"),
    ];
    assert!(classify_plan(&refund_plan(true), &recovered).is_empty());
    // Flags serialize for storage.
    let v = serde_json::to_value(&flags[0]).expect("serializes");
    assert_eq!(v["kind"], "failed_step");
}

#[test]
fn empty_action_is_rejected_with_the_step() {
    let plan: DeclaredPlan = serde_json::from_value(json!({
        "plan_id": "p", "intent": "i", "steps": [{"tool": "a"}, {"tool": ""}],
    }))
    .expect("plan");
    let err = plan.compile("t").expect_err("empty action");
    assert!(err.to_string().contains("step 2"), "{err}");
}

#[test]
fn sample_policies_behave() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/verification");
    let load = |name: &str| {
        let text = std::fs::read_to_string(dir.join(name)).expect("sample");
        Policy::parse(text.as_bytes(), PolicyFormat::Yaml).expect("compiles")
    };
    let flow = |events| Flow {
        flow_id: "f".into(),
        events,
        ..Flow::default()
    };
    let at = |mut e: FlowEvent, s: u32| {
        e.completed_at = Some(format!("2026-05-16T00:00:{s:02}Z"));
        e
    };

    let refund = load("refund-with-receipt.yaml");
    let ok = flow(vec![
        at(ev("e1", "stripe.refund.create", "ok"), 1),
        at(ev("e2", "email.customer.refund_receipt", "ok"), 2),
    ]);
    assert_eq!(
        evaluate(&refund, &ok, &[], &EvalOptions::default()).status,
        Outcome::Pass
    );
    let double = flow(vec![
        at(ev("e1", "stripe.refund.create", "ok"), 1),
        at(ev("e2", "email.customer.refund_receipt", "ok"), 2),
        at(ev("e3", "stripe.refund.create", "ok"), 3),
    ]);
    let run = evaluate(&refund, &double, &[], &EvalOptions::default());
    assert_eq!(run.status, Outcome::Fail);
    assert_eq!(
        run.findings[3].reason,
        Reason::FailForbiddenAfterPredecessor
    );

    let fs = load("agent-filesystem-requires-plan.yaml");
    let unplanned = flow(vec![at(ev("w1", "mcp.filesystem.write_file", "ok"), 1)]);
    let run = evaluate(&fs, &unplanned, &[], &EvalOptions::default());
    assert_eq!(run.status, Outcome::Fail);
    assert_eq!(
        run.findings[0].reason,
        Reason::FailForbiddenWithoutPredecessor
    );
    assert_eq!(run.findings[0].evidence_event_ids, ["w1"]);
    let planned = flow(vec![
        at(ev("p1", "intentproof.plan.declare", "ok"), 1),
        at(ev("w1", "mcp.filesystem.write_file", "ok"), 2),
        at(ev("m1", "mcp.filesystem.move_file", "ok"), 3),
    ]);
    assert_eq!(
        evaluate(&fs, &planned, &[], &EvalOptions::default()).status,
        Outcome::Pass
    );
    let failed_plan = flow(vec![
        at(ev("p1", "intentproof.plan.declare", "error"), 1),
        at(ev("w1", "mcp.filesystem.delete_file", "ok"), 2),
    ]);
    let run = evaluate(&fs, &failed_plan, &[], &EvalOptions::default());
    assert_eq!(run.status, Outcome::Fail);
    // Out of scope (read-only session): ignored, no findings.
    let reads = flow(vec![at(ev("r1", "mcp.filesystem.read_file", "ok"), 1)]);
    let run = evaluate(&fs, &reads, &[], &EvalOptions::default());
    assert!(run.findings.is_empty());
}
