//! Findings to a webhook: the spec's golden document verifies with its
//! published key by our method, and a real local HTTP receiver that fails
//! three times gets one signed, schema-valid `webhook-finding.v1` per
//! finding, exactly once, also across a daemon restart.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use intentproof_core::ExecutionEvent;
use intentproof_core::keys::{InstanceKey, parse_public_key};
use intentproof_core::schema::{SchemaKind, validate};
use intentproof_core::seal::Sealer;
use intentproof_gateway::config::WebhookConfig;
use intentproof_gateway::webhook::verify;
use intentproof_gateway::{Config, Daemon};
use serde_json::Value;

fn spec(path: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/intentproof-spec")
            .join(path),
    )
    .unwrap()
}

#[test]
fn the_spec_golden_document_verifies_with_its_published_key_by_our_method() {
    let key = parse_public_key(&spec("well-known-keys/webhook-signer-2026q2.pem")).unwrap();
    let mut checked = 0;
    for line in spec("golden/webhook-finding_cases.jsonl").lines() {
        let case: Value = serde_json::from_str(line).unwrap();
        let doc = &case["webhook_finding"];
        let valid = validate(SchemaKind::WebhookFinding, doc).is_ok();
        assert_eq!(valid, case["shouldValidate"] == true, "{line}");
        if valid {
            verify(doc, &key).unwrap();
            let mut edited = doc.clone();
            edited["finding"]["severity"] = "low".into();
            assert_eq!(
                verify(&edited, &key).unwrap_err(),
                "the signature does not verify with this key"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 1);
}

/// A receiver that answers 500 to its first `failures` requests, then 200;
/// it keeps every body it accepted.
#[derive(Default)]
struct Receiver {
    failures: usize,
    requests: usize,
    accepted: Vec<Value>,
}

async fn receive(State(receiver): State<Arc<Mutex<Receiver>>>, body: String) -> StatusCode {
    let mut r = receiver.lock().unwrap();
    r.requests += 1;
    if r.requests <= r.failures {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    r.accepted.push(serde_json::from_str(&body).unwrap());
    StatusCode::NO_CONTENT
}

async fn start_receiver(failures: usize) -> (SocketAddr, Arc<Mutex<Receiver>>) {
    let state = Arc::new(Mutex::new(Receiver {
        failures,
        ..Receiver::default()
    }));
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, state)
}

async fn wait_for(receiver: &Arc<Mutex<Receiver>>, accepted: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.lock().unwrap().accepted.len() < accepted {
        assert!(
            Instant::now() < deadline,
            "the receiver got {} of {accepted}",
            receiver.lock().unwrap().accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts one unplanned gateway call per correlation.
async fn calls(daemon: &Daemon, sealer: &Sealer, correlations: &[&str]) {
    let body: String = correlations
        .iter()
        .map(|c| {
            let event = ExecutionEvent::builder("pay", "mcp.s.pay")
                .correlation_id(*c)
                .build();
            format!("{}\n", sealer.seal(&event).unwrap().event)
        })
        .collect();
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/events:batch", daemon.url()))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_finding_reaches_a_flaky_receiver_exactly_once_signed_and_valid() {
    let (addr, receiver) = start_receiver(3).await;
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        checkpoint_interval_secs: 0,
        webhooks: vec![WebhookConfig {
            name: "oncall".into(),
            url: format!("http://{addr}/hook"),
            headers: Default::default(),
            timeout_ms: 5000,
            links_base: Some("https://gateway.example".into()),
        }],
        ..Config::default()
    };
    let daemon = Daemon::start(config.clone()).await.unwrap();
    let daemon_key = InstanceKey::load_from(dir.path()).unwrap().verifying_key();
    let sealer = Sealer::new(InstanceKey::generate().unwrap());
    calls(&daemon, &sealer, &["order-1", "order-2"]).await;
    wait_for(&receiver, 2).await;
    {
        let r = receiver.lock().unwrap();
        assert_eq!(r.requests, 5, "3 refused attempts, then one each");
        let mut correlations = Vec::new();
        for doc in &r.accepted {
            validate(SchemaKind::WebhookFinding, doc).unwrap_or_else(|e| panic!("{e:?}\n{doc:#}"));
            verify(doc, &daemon_key).unwrap();
            assert_eq!(doc["schema"], "intentproof.webhook_finding.v1");
            assert_eq!(doc["event_type"], "finding.emitted");
            assert_eq!(doc["tenant_id"], "local");
            assert_eq!(doc["signature"]["key_id"], "platform@webhook-signer-2026q2");
            let finding = &doc["finding"];
            assert_eq!(finding["rule_id"], "gateway.unplanned_call");
            assert_eq!(finding["rule_category"], "forbidden");
            assert_eq!(finding["outcome"], "fail");
            assert_eq!(finding["reason"], "fail.forbidden.present");
            assert_eq!(finding["evidence_event_ids"].as_array().unwrap().len(), 1);
            let corr = doc["context"]["correlation_id"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(doc["context"]["flow_id"], corr.as_str());
            assert_eq!(
                doc["links"]["flow_detail"],
                format!("https://gateway.example/v1/chains/{corr}").as_str()
            );
            assert!(doc["delivery_id"].as_str().unwrap().starts_with("del_"));
            correlations.push(corr);
        }
        correlations.sort();
        assert_eq!(correlations, ["order-1", "order-2"]);
    }
    let log = dir.path().join("webhooks/oncall.jsonl");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("webhooks"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    daemon.stop().await.unwrap();

    // Restarted: what was delivered is not sent again; a new finding is.
    let daemon = Daemon::start(config).await.unwrap();
    calls(&daemon, &sealer, &["order-3"]).await;
    wait_for(&receiver, 3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    {
        let r = receiver.lock().unwrap();
        assert_eq!(r.accepted.len(), 3);
        assert_eq!(r.requests, 6);
        assert_eq!(r.accepted[2]["context"]["correlation_id"], "order-3");
    }
    daemon.stop().await.unwrap();
}
