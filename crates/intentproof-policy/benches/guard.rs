//! What one guard decision costs (`guard::decide`, `enforce = "plan"`): a
//! ten-step plan, the call matching its last step under two constraints,
//! and a call no step covers (the refusal builds its message); `judge`
//! with every rule on (pin state, plan, eight approval rules), for a call
//! none of the approval rules holds and one the last rule holds. The
//! end-to-end figure (a stdio `tools/call` with enforcement on, against
//! record only) is `bench/mcp_guard.py`; both are in BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use intentproof_policy::guard::{
    ApprovalRule, Call, Constraint, Enforce, GuardPlan, GuardStep, OnToolChange, Rules, StepBounds,
    ToolPin, decide, judge,
};
use serde_json::json;
use std::hint::black_box;

fn decisions(c: &mut Criterion) {
    let mut steps: Vec<GuardStep> = (0..9)
        .map(|i| GuardStep {
            action: format!("mcp.payments.tool_{i}"),
            bounds: StepBounds::default(),
        })
        .collect();
    steps.push(GuardStep {
        action: "mcp.payments.refund_payment".into(),
        bounds: StepBounds {
            max_calls: Some(3),
            constraints: ["amount_cents <= 5000", "currency == \"EUR\""]
                .iter()
                .filter_map(|c| Constraint::parse(c).ok())
                .collect(),
        },
    });
    let calls = vec![0u32; steps.len()];
    let plan = GuardPlan {
        plan_id: "01977b6e-2c4c-7000-8000-000000000001",
        steps: &steps,
        calls: &calls,
    };
    let arguments = json!({"order_id": "ORD-1042", "amount_cents": 4999, "currency": "EUR"});
    c.bench_function("guard allow (10 steps, 2 constraints)", |b| {
        b.iter(|| {
            decide(
                Enforce::Plan,
                Call {
                    action: black_box("mcp.payments.refund_payment"),
                    arguments: black_box(&arguments),
                    step: None,
                },
                Some(black_box(&plan)),
            )
        })
    });
    c.bench_function("guard refuse (not covered)", |b| {
        b.iter(|| {
            decide(
                Enforce::Plan,
                Call {
                    action: black_box("mcp.payments.lookup_order"),
                    arguments: black_box(&arguments),
                    step: None,
                },
                Some(black_box(&plan)),
            )
        })
    });
    let approvals: Vec<ApprovalRule> = (0..7)
        .filter_map(|i| ApprovalRule::parse(&format!("mcp.other_{i}.*"), &[]).ok())
        .chain(ApprovalRule::parse("mcp.payments.refund_*", &["amount_cents > 1000".into()]).ok())
        .collect();
    let rules = Rules {
        enforce: Enforce::Plan,
        on_tool_change: OnToolChange::Block,
        approvals: &approvals,
    };
    let small = json!({"order_id": "ORD-1042", "amount_cents": 999, "currency": "EUR"});
    c.bench_function("guard judge allow (pins, plan, 8 approval rules)", |b| {
        b.iter(|| {
            judge(
                black_box(&rules),
                Call {
                    action: black_box("mcp.payments.refund_payment"),
                    arguments: black_box(&small),
                    step: None,
                },
                Some(black_box(&plan)),
                ToolPin::Pinned,
            )
        })
    });
    c.bench_function("guard judge hold (the last approval rule)", |b| {
        b.iter(|| {
            judge(
                black_box(&rules),
                Call {
                    action: black_box("mcp.payments.refund_payment"),
                    arguments: black_box(&arguments),
                    step: None,
                },
                Some(black_box(&plan)),
                ToolPin::Pinned,
            )
        })
    });
}

criterion_group!(benches, decisions);
criterion_main!(benches);
