//! Throughput of the proof core: sealing, verifying, Merkle roots.
//!
//! `cargo bench -p intentproof-core --bench proof -- --quick`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use intentproof_core::ExecutionEvent;
use intentproof_core::keys::InstanceKey;
use intentproof_core::merkle::{leaf_hash, root};
use intentproof_core::seal::{Sealer, verify_event};
use serde_json::json;

/// An event whose signed v1 form is about 1 KiB.
fn event(i: u64) -> ExecutionEvent {
    ExecutionEvent::builder(
        "Return captured funds to the customer",
        "payments.stripe.refunds.create",
    )
    .correlation_id(format!("corr_{}", i % 64))
    .inputs(json!([{
        "payment_intent_id": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
        "amount_cents": 4999,
        "currency": "usd",
        "reason": "requested_by_customer",
        "metadata": {"order_id": "ord_1042", "note": "customer asked twice, see ticket 88121"}
    }]))
    .output(json!({
        "refund_id": "re_3MtwBwLkdIwHu7ix0p8fTmPa",
        "status": "succeeded",
        "balance_transaction": "txn_1MtwBwLkdIwHu7ixH4jJ4dQK",
        "created": 1_778_509_937,
        "charge": "ch_3MtwBwLkdIwHu7ix1LwLrj2M"
    }))
    .timing("2026-05-11T14:32:17.421Z", "2026-05-11T14:32:18.044Z", 623)
    .attributes(
        [
            ("service", "billing-api".into()),
            ("region", "eu-west-1".into()),
            ("attempt", 1u64.into()),
        ]
        .into_iter()
        .map(|(k, v): (&str, intentproof_core::AttributeValue)| (k.to_owned(), v))
        .collect(),
    )
    .build()
}

fn key() -> InstanceKey {
    InstanceKey::from_seed("inst_01JMR9F0X4M9V0K2YH8M0X3D9N", [42u8; 32])
}

fn sealing(c: &mut Criterion) {
    let sealer = Sealer::new(key()).with_tenant_id("tnt_bench");
    let e = event(0);
    let size = serde_json::to_vec(&sealer.seal(&e).unwrap().event)
        .unwrap()
        .len();
    eprintln!("signed event size: {size} bytes");
    let mut g = c.benchmark_group("seal");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_thread", |b| {
        b.iter(|| black_box(sealer.seal(black_box(&e)).unwrap()))
    });
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    g.throughput(Throughput::Elements(threads as u64));
    g.bench_function(format!("all_cores_x{threads}"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..threads {
                    let sealer = &sealer;
                    s.spawn(move || {
                        let e = event(t as u64);
                        for _ in 0..iters {
                            black_box(sealer.seal(&e).unwrap());
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.finish();
}

fn verifying(c: &mut Criterion) {
    let k = key();
    let sealed = Sealer::new(k.clone()).seal(&event(0)).unwrap().event;
    let vk = k.verifying_key();
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_thread", |b| {
        b.iter(|| black_box(verify_event(black_box(&sealed), &vk).unwrap()))
    });
    g.finish();
}

fn merkle(c: &mut Criterion) {
    let leaves: Vec<[u8; 32]> = (0u32..1_000_000)
        .map(|i| leaf_hash(&i.to_le_bytes()))
        .collect();
    let mut g = c.benchmark_group("merkle");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(leaves.len() as u64));
    g.bench_function("root_1m_leaf_hashes", |b| {
        b.iter(|| black_box(root(black_box(&leaves))))
    });
    g.finish();

    // What the store does per GET /v1/events/{id} and per exported event:
    // an inclusion proof at 1M records, by rehashing vs from MerkleLog.
    let log = intentproof_core::merkle::MerkleLog::from_leaves(leaves.iter().copied());
    let mut g = c.benchmark_group("inclusion_proof_1m");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("rehash_leaves", |b| {
        b.iter(|| {
            black_box(intentproof_core::merkle::inclusion_proof(
                black_box(&leaves),
                777_777,
            ))
        })
    });
    g.bench_function("merkle_log", |b| {
        b.iter(|| black_box(log.inclusion_proof(black_box(777_777), leaves.len())))
    });
    g.bench_function("merkle_log_root", |b| {
        b.iter(|| black_box(log.root(black_box(leaves.len()))))
    });
    g.finish();
}

/// The parts: where a seal's time goes.
fn parts(c: &mut Criterion) {
    use ed25519_dalek::Signer;
    let k = key();
    let sealed = Sealer::new(k.clone()).seal(&event(0)).unwrap().event;
    let obj = sealed.as_object().unwrap().clone();
    let digest = intentproof_core::v1::content_digest(&obj).unwrap();
    let sig = k.signing_key().sign(&digest);
    let vk = k.verifying_key();
    let e = event(0);
    let mut g = c.benchmark_group("parts");
    g.bench_function("to_v1", |b| {
        b.iter(|| black_box(intentproof_core::v1::to_v1(black_box(&e))))
    });
    g.bench_function("canon_sha256", |b| {
        b.iter(|| black_box(intentproof_core::v1::content_digest(black_box(&obj)).unwrap()))
    });
    g.bench_function("ed25519_sign", |b| {
        b.iter(|| black_box(k.signing_key().sign(black_box(&digest))))
    });
    g.bench_function("ed25519_verify_strict", |b| {
        b.iter(|| {
            vk.verify_strict(black_box(&digest), black_box(&sig))
                .unwrap()
        })
    });
    g.bench_function("ed25519_verify", |b| {
        b.iter(|| {
            ed25519_dalek::Verifier::verify(&vk, black_box(&digest), black_box(&sig)).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, sealing, verifying, merkle, parts);
criterion_main!(benches);
