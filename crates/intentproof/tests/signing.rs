//! Library mode with a signer: every event is sealed before export, and the
//! bare-v1 HTTP body is exactly what the reference SDKs post.

mod common;

use std::convert::Infallible;
use std::sync::Arc;

use common::Collector;
use intentproof::{
    BodyFormat, Exporter, HttpExporter, HttpExporterConfig, InstanceKey, IntentProofClient,
    IntentProofConfig, MemoryExporter, Sealer, WrapOptions, run_with_correlation_id,
};
use intentproof_core::schema::{SchemaKind, validate};
use intentproof_core::seal::verify_event;
use serde_json::Value;

const ZERO: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

#[tokio::test]
async fn sealed_events_are_posted_bare_and_verify() {
    let key = InstanceKey::from_seed("inst_library_test", [7u8; 32]);
    let public = key.verifying_key();
    let collector = Collector::start(vec![]).await;
    let memory = Arc::new(MemoryExporter::new());
    let http = HttpExporter::new(HttpExporterConfig {
        format: BodyFormat::BareV1,
        ..HttpExporterConfig::new(&collector.url)
    })
    .unwrap();
    let client = IntentProofClient::new(
        IntentProofConfig::default()
            .exporters(vec![Arc::new(http) as Arc<dyn Exporter>, memory.clone()])
            .signer(Arc::new(Sealer::new(key))),
    );
    let add = client
        .wrap(WrapOptions::new("Add", "math.add"), |(a, b): (i64, i64)| {
            Ok::<_, Infallible>(a + b)
        })
        .unwrap();
    run_with_correlation_id("corr-lib", || {
        assert_eq!(add.call((1, 2)).unwrap(), 3);
        assert_eq!(add.call((3, 4)).unwrap(), 7);
    })
    .unwrap();
    client.flush().await;

    let bodies: Vec<Value> = collector
        .received()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(bodies.len(), 2);
    let mut hashes = Vec::new();
    for body in &bodies {
        assert_eq!(body["schema"], "intentproof.event.v1");
        validate(SchemaKind::ExecutionEvent, body).unwrap();
        hashes.push(verify_event(body, &public).unwrap());
    }
    // Delivery order is not guaranteed: order by position.
    let mut by_position: Vec<(&Value, &String)> = bodies.iter().zip(&hashes).collect();
    by_position.sort_by_key(|(b, _)| b["chain_position"].as_u64());
    assert_eq!(by_position[0].0["chain_position"], 1);
    assert_eq!(by_position[0].0["prev_event_hash"], ZERO);
    assert_eq!(by_position[1].0["chain_position"], 2);
    assert_eq!(
        by_position[1].0["prev_event_hash"],
        Value::String(by_position[0].1.clone())
    );
    assert_eq!(by_position[0].0["inputs"], serde_json::json!([[1, 2]]));
    assert_eq!(by_position[1].0["output"], 7);

    // Memory receives the same sealed events in camelCase.
    let events = memory.events();
    assert_eq!(events[0].chain_position, Some(1));
    assert_eq!(events[1].chain_position, Some(2));
    assert_eq!(events[0].instance_id.as_deref(), Some("inst_library_test"));
    assert_eq!(
        events[0].signature.as_ref().unwrap().key_id,
        "inst_library_test:k1"
    );
}
