//! Redacting a 1 MiB payload with the default policy.
//!
//! `cargo bench -p intentproof-policy --bench redact`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use intentproof_policy::redact::{HashKey, RedactionPolicy, Redactor};
use serde_json::{Value, json};

const LOREM: &[&str] = &[
    "Customer asked to change the delivery address before shipping.",
    "Refund approved after review of the damaged item photos.",
    "Order placed through the mobile app, promo code applied at checkout.",
    "Escalated to tier 2 support because the payment was declined twice.",
    "The package was left with a neighbour; customer confirmed receipt.",
];

/// A deterministic, realistic mix: nested records, ids, timestamps, prose,
/// numbers, and now and then a secret or personal datum.
fn payload(target_bytes: usize) -> Value {
    let mut records = Vec::new();
    let mut size = 0;
    let mut i = 0u64;
    while size < target_bytes {
        let status = ["open", "paid", "shipped", "refunded"][(i % 4) as usize];
        let mut rec = json!({
            "id": format!("0190b6f2-{:04x}-7000-8000-{:012x}", i % 65536, i * 7919),
            "createdAt": format!("2026-01-{:02}T{:02}:{:02}:00.000Z", 1 + i % 28, i % 24, i % 60),
            "status": status,
            "amountCents": 1000 + (i * 37) % 100_000,
            "currency": "EUR",
            "customer": {
                "name": format!("Customer {i}"),
                "tier": if i.is_multiple_of(3) { "gold" } else { "standard" },
                "address": {
                    "street": format!("{} Rue de la Paix", 1 + i % 200),
                    "city": "Paris",
                    "postalCode": format!("75{:03}", i % 1000),
                    "country": "FR"
                }
            },
            "items": (0..3).map(|j| json!({
                "sku": format!("SKU-{:06}", (i * 3 + j) % 1_000_000),
                "qty": 1 + (i + j) % 5,
                "priceCents": 499 + (i * 13 + j) % 10_000,
                "title": format!("Item {j} of order {i}"),
            })).collect::<Vec<_>>(),
            "notes": LOREM[(i % LOREM.len() as u64) as usize],
            "tags": ["web", "eu", "v2"],
            "metadata": {"source": "checkout", "retries": i % 3, "flags": {"gift": i.is_multiple_of(7)}}
        });
        // Roughly one record in five carries something to redact.
        match i % 10 {
            0 => rec["customer"]["email"] = json!(format!("customer{i}@example.com")),
            3 => rec["payment"] = json!({"card": "4242 4242 4242 4242", "exp": "12/29"}),
            6 => rec["auth"] = json!({"apiKey": "sk_live_0000000000000000EXAMPLE0"}),
            9 => {
                rec["notes"] = json!(format!(
                    "Call back on +33 1 23 45 67 {:02} or use token ghp_000000000000000000000000000000EXAMPLE",
                    i % 100
                ))
            }
            _ => {}
        }
        size += serde_json::to_vec(&rec).map_or(0, |v| v.len()) + 1;
        records.push(rec);
        i += 1;
    }
    json!({"records": records})
}

fn bench(c: &mut Criterion) {
    let redactor = Redactor::new(
        RedactionPolicy::default_policy(),
        HashKey::from_bytes([3; 32]),
    );
    let input = payload(1 << 20);
    let bytes = serde_json::to_vec(&input).map_or(0, |v| v.len());
    let mut group = c.benchmark_group("redact");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("default_policy_1MiB", |b| {
        b.iter_batched_ref(
            || (input.clone(), Value::Null),
            |(inputs, output)| black_box(redactor.apply("shop.orders.export", inputs, output)),
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
