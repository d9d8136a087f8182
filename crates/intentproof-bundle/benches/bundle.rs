//! Writing and verifying a bundle of 100,000 events (one instance key,
//! 1,000 correlations, so 1,000 chains of 100).
//!
//! `cargo bench -p intentproof-bundle --bench bundle -- --warm-up-time 1 --measurement-time 10`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use intentproof_bundle::{
    BundleInput, ManifestSigner, TrustedKey, VerifyOptions, verify, write_bundle,
};
use intentproof_core::ExecutionEvent;
use intentproof_core::keys::InstanceKey;
use intentproof_core::seal::Sealer;
use serde_json::json;

const EVENTS: usize = 100_000;
const CHAINS: usize = 1_000;

fn input() -> BundleInput {
    let key = InstanceKey::from_seed("inst_bench", [7u8; 32]);
    let sealer = Sealer::new(key.clone()).with_tenant_id("tnt");
    let events = (0..EVENTS)
        .map(|i| {
            let e = ExecutionEvent::builder("Refund the order", "stripe.refunds.create")
                .correlation_id(format!("corr_{:04}", i % CHAINS))
                .inputs(json!([{"amountCents": 4999, "order": format!("ord_{i}")}]))
                .output(json!({"id": format!("re_{i}"), "status": "succeeded"}))
                .build();
            serde_json::to_vec(&sealer.seal(&e).expect("seal").event).expect("json")
        })
        .collect();
    BundleInput {
        bundle_id: "bnd_bench".into(),
        created_at: "2026-05-15T14:30:00Z".into(),
        flow_id: "flow_bench".into(),
        tenant_id: "tnt".into(),
        flow: br#"{"flow_id":"flow_bench","tenant_id":"tnt"}"#.to_vec(),
        events,
        policy: br#"{"policy_id":"pol","tenant_id":"tnt","rules":[]}"#.to_vec(),
        run: br#"{"run_id":"run_bench","flow_id":"flow_bench","tenant_id":"tnt"}"#.to_vec(),
        keys: BTreeMap::from([(key.key_id(), key.verifying_key())]),
        export_profile: "full".into(),
        spec_version: "1.0.0".into(),
        ..BundleInput::default()
    }
}

fn bench(c: &mut Criterion) {
    let input = input();
    let exporter = SigningKey::from_bytes(&[9u8; 32]);
    let signer = ManifestSigner {
        key: &exporter,
        key_id: "exporter:k1",
    };
    let bytes = write_bundle(&input, Some(&signer)).expect("write");
    let options = VerifyOptions {
        trusted_keys: vec![TrustedKey {
            key_id: None,
            key: exporter.verifying_key(),
        }],
        ..VerifyOptions::default()
    };
    let report = verify(&bytes, &options);
    assert!(report.passed(), "{:?}", report.detail);
    eprintln!(
        "bundle: {} events, {} bytes compressed, {} chains",
        report.summary.events,
        bytes.len(),
        report.summary.chains
    );

    let mut group = c.benchmark_group("bundle_100k");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("write", |b| {
        b.iter(|| write_bundle(black_box(&input), Some(&signer)).expect("write"))
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            let r = verify(black_box(&bytes), &options);
            assert!(r.passed());
            r
        })
    });
    let one_thread = VerifyOptions {
        threads: 1,
        ..options.clone()
    };
    group.bench_function("verify_1_thread", |b| {
        b.iter(|| verify(black_box(&bytes), &one_thread))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
