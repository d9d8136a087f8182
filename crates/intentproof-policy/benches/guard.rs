//! What one guard decision costs (`guard::decide`, `enforce = "plan"`): a
//! ten-step plan, the call matching its last step under two constraints,
//! and a call no step covers (the refusal builds its message). The
//! end-to-end figure (a stdio `tools/call` with enforcement on, against
//! record only) is `bench/mcp_guard.py`; both are in BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use intentproof_policy::guard::{
    Call, Constraint, Enforce, GuardPlan, GuardStep, StepBounds, decide,
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
}

criterion_group!(benches, decisions);
criterion_main!(benches);
