//! Per-call overhead of `wrap` (sync and async, MemoryExporter) against
//! calling the function directly.
//!
//! Run: `cargo bench -p intentproof --bench wrap_overhead`

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use intentproof::{IntentProofClient, WrapOptions};
use serde::Serialize;

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Refund {
    payment_intent_id: &'static str,
    amount_cents: u64,
    reason: &'static str,
}

fn refund(input: Refund) -> Result<u64, Infallible> {
    Ok(black_box(input.amount_cents) + 1)
}

fn input() -> Refund {
    Refund {
        payment_intent_id: "pi_3SAMPLEabcdefghijklmnop",
        amount_cents: 4999,
        reason: "requested_by_customer",
    }
}

fn bench(c: &mut Criterion) {
    let client = IntentProofClient::default();
    let memory = client
        .memory()
        .expect("default client keeps a memory exporter");
    let mut group = c.benchmark_group("wrap_overhead");

    group.bench_function("direct", |b| b.iter(|| refund(black_box(input()))));

    let wrapped = client
        .wrap(
            WrapOptions::new("Initiate refund", "stripe.refund.create"),
            refund,
        )
        .expect("valid options");
    group.bench_function("wrapped_sync", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let _ = black_box(wrapped.call(black_box(input())));
            }
            let elapsed = start.elapsed();
            memory.clear(); // keep memory flat across batches, outside the timing
            elapsed
        })
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let wrapped_async = client
        .wrap_async(
            WrapOptions::new("Initiate refund", "stripe.refund.create"),
            |input: Refund| async move { refund(input) },
        )
        .expect("valid options");
    group.bench_function("direct_async", |b| {
        b.to_async(&runtime)
            .iter(|| async { refund(black_box(input())) })
    });
    group.bench_function("wrapped_async", |b| {
        b.iter_custom(|iters| {
            let elapsed = runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let _ = black_box(wrapped_async.call(black_box(input())).await);
                }
                start.elapsed()
            });
            memory.clear();
            elapsed
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
