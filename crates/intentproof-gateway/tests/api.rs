//! The daemon over real HTTP: ingest of both shapes, every documented
//! refusal (and that the daemon keeps serving after each), auth, queries,
//! key trust, metrics, exporters.

use std::sync::{Arc, Mutex};

use intentproof_core::ExecutionEvent;
use intentproof_core::keys::InstanceKey;
use intentproof_core::seal::Sealer;
use intentproof_gateway::config::ExporterConfig;
use intentproof_gateway::{Config, Daemon};
use serde_json::{Value, json};

struct Fixture {
    daemon: Daemon,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    token: String,
}

async fn start_with(configure: impl FnOnce(&mut Config)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        checkpoint_interval_secs: 0,
        ..Config::default()
    };
    configure(&mut config);
    let daemon = Daemon::start(config).await.unwrap();
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    Fixture {
        daemon,
        dir,
        http: reqwest::Client::new(),
        token,
    }
}

async fn start() -> Fixture {
    start_with(|_| {}).await
}

impl Fixture {
    async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        self.post_to("/v1/events", "application/json", body).await
    }

    async fn post_batch(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        self.post_to("/v1/events:batch", "application/x-ndjson", body)
            .await
    }

    async fn post_to(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.daemon.url()))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.daemon.url()))
            .bearer_auth(&self.token)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn trust(&self, key: &InstanceKey) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/v1/keys", self.daemon.url()))
            .bearer_auth(&self.token)
            .json(&json!({"instance_id": key.instance_id(), "public_key": key.public_key_base64()}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn sdk_key() -> InstanceKey {
    InstanceKey::from_seed("inst_api_test", [5u8; 32])
}

fn sealed(sealer: &Sealer, correlation: &str, action: &str) -> Value {
    let event = ExecutionEvent::builder("intent", action)
        .correlation_id(correlation)
        .inputs(json!([{"amountCents": 4999}]))
        .output(json!({"id": "re_1"}))
        .build();
    sealer.seal(&event).unwrap().event
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[tokio::test]
async fn signed_events_are_stored_verified_and_resends_are_idempotent() {
    let f = start().await;
    f.trust(&sdk_key()).await;
    let sealer = Sealer::new(sdk_key());
    let first = sealed(&sealer, "corr-1", "refund.create");
    let second = sealed(&sealer, "corr-1", "email.send");
    assert_eq!(
        f.post(bytes(&first)).await,
        (
            202,
            json!({"status": "stored", "event_id": first["event_id"], "seq": 0})
        )
    );
    assert_eq!(f.post(bytes(&second)).await.0, 202);
    assert_eq!(
        f.post(bytes(&first)).await,
        (
            200,
            json!({"status": "duplicate", "event_id": first["event_id"], "seq": 0})
        )
    );

    let (status, chain) = f.get("/v1/chains/corr-1").await;
    assert_eq!(status, 200);
    assert_eq!(chain["chain"]["events"], 2);
    assert_eq!(chain["chain"]["verified"], true);
    assert_eq!(
        chain["events"][0]["event"], first,
        "the stored event is byte-for-byte the signed one"
    );
    assert_eq!(chain["events"][1]["signature"], "verified");

    let (status, one) = f
        .get(&format!(
            "/v1/events/{}",
            second["event_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["inclusion"]["leaf_index"], 1);
    assert_eq!(one["inclusion"]["tree_size"], 2);
    assert_eq!(one["inclusion"]["proof"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_seed_envelope_is_sealed_by_the_daemon_and_continues_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        checkpoint_interval_secs: 0,
        ..Config::default()
    };
    let envelope = |id: &str| {
        json!({"intentproof": "1", "event": {
        "id": id, "correlationId": "req_refund_ord_1042", "intent": "Refund", "action": "stripe.refund.create",
        "inputs": [], "status": "ok", "output": 42,
        "startedAt": "2026-01-01T00:00:00.000Z", "completedAt": "2026-01-01T00:00:00.001Z", "durationMs": 1}})
    };
    for (round, id) in ["ev-1", "ev-2"].iter().enumerate() {
        let daemon = Daemon::start(config.clone()).await.unwrap();
        let response = reqwest::Client::new()
            .post(format!("{}/v1/events", daemon.url()))
            .json(&envelope(id))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202, "round {round}");
        daemon.stop().await.unwrap();
    }
    let f = Fixture {
        daemon: Daemon::start(config).await.unwrap(),
        token: std::fs::read_to_string(dir.path().join("token")).unwrap(),
        http: reqwest::Client::new(),
        dir,
    };
    let (_, chain) = f.get("/v1/chains/req_refund_ord_1042").await;
    assert_eq!(chain["chain"]["events"], 2);
    assert_eq!(chain["chain"]["verified"], true, "{chain}");
    let positions: Vec<&Value> = chain["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["event"]["chain_position"])
        .collect();
    assert_eq!(
        positions,
        vec![&json!(1), &json!(2)],
        "the restarted daemon continued its chain"
    );
    assert_eq!(chain["events"][0]["event"]["event_id"], "ev-1");
    assert_eq!(chain["events"][0]["event"]["output"], 42);
}

#[tokio::test]
async fn bad_input_gets_its_status_and_a_message_naming_the_cause() {
    let f = start().await;
    f.trust(&sdk_key()).await;
    let sealer = Sealer::new(sdk_key());
    let good = sealed(&sealer, "corr-bad", "a.b");

    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        (
            "malformed JSON",
            b"{\"schema\": ".to_vec(),
            400,
            "malformed_json",
            "input is not valid JSON: EOF while parsing a value at line 1 column 11",
        ),
        (
            "duplicate keys",
            b"{\"a\":1,\"a\":2}".to_vec(),
            400,
            "malformed_json",
            "duplicate object key \"a\"",
        ),
        (
            "not an object",
            b"[1,2]".to_vec(),
            400,
            "invalid_event",
            "body must be a JSON object",
        ),
        (
            "wrong type",
            {
                let mut e = good.clone();
                e["chain_position"] = json!("one");
                bytes(&e)
            },
            400,
            "invalid_event",
            "chain_position",
        ),
        (
            "missing field",
            {
                let mut e = good.clone();
                e.as_object_mut().unwrap().remove("action");
                bytes(&e)
            },
            400,
            "invalid_event",
            "\"action\" is a required property",
        ),
        (
            "unknown field",
            {
                let mut e = good.clone();
                e["extra"] = json!(1);
                bytes(&e)
            },
            400,
            "invalid_event",
            "extra",
        ),
        (
            "envelope without intent",
            bytes(&json!({"intentproof": "1", "event": {"id": "x", "action": "a"}})),
            400,
            "invalid_event",
            "field `event`: missing field `intent`",
        ),
        (
            "envelope forging sealed members",
            bytes(&json!({"intentproof": "1", "event": {
                "id": "x", "intent": "i", "action": "a", "status": "ok",
                "startedAt": "2026-01-01T00:00:00.000Z", "completedAt": "2026-01-01T00:00:00.001Z",
                "durationMs": 1,
                "v1Verbatim": {"redaction_summary": {"policy_id": "forged", "redacted_paths": []}}}})),
            400,
            "invalid_event",
            "field `event.v1Verbatim` is not part of an envelope event",
        ),
        (
            "envelope version",
            bytes(&json!({"intentproof": "2", "event": {}})),
            400,
            "invalid_event",
            "field `intentproof` must be \"1\"",
        ),
        (
            "bad signature",
            {
                let mut e = good.clone();
                e["intent"] = json!("changed after signing");
                bytes(&e)
            },
            422,
            "bad_signature",
            "does not verify with key inst_api_test:k1",
        ),
        (
            "oversized body",
            vec![b' '; 1024 * 1024 + 1],
            413,
            "too_large",
            "body is larger than 1048576 bytes",
        ),
    ];
    for (name, body, status, reason, needle) in cases {
        let (got_status, got) = f.post(body).await;
        assert_eq!(got_status, status, "{name}: {got}");
        assert_eq!(got["reason"], reason, "{name}: {got}");
        let message = got["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{name}: {message:?} does not contain {needle:?}"
        );
    }
    // Still serving, and the good event goes in.
    assert_eq!(f.post(bytes(&good)).await.0, 202);

    // Chain conflicts: a forked position 1, and a replayed id with other content.
    let fork = sealed(&Sealer::new(sdk_key()), "corr-bad", "a.fork");
    let (status, body) = f.post(bytes(&fork)).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (409, Some("chain_conflict")),
        "{body}"
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("chain fork: position 1 of (inst_api_test, corr-bad)")
    );
    let mut replay = good.clone();
    replay["output"] = json!({"id": "re_2"});
    let mut map = replay.as_object().unwrap().clone();
    intentproof_core::seal::sign_v1(&mut map, sdk_key().signing_key(), &sdk_key().key_id())
        .unwrap();
    let (status, body) = f.post(bytes(&Value::Object(map))).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("is already used by a different event"),
        "{body}"
    );

    let (_, healthz) = f.get("/healthz").await;
    assert_eq!(healthz["status"], "ok");
    assert!(
        healthz["instance_id"]
            .as_str()
            .unwrap()
            .starts_with("inst_")
    );
    let metrics = f
        .http
        .get(format!("{}/metrics", f.daemon.url()))
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "intentproof_events_ingested_total 1",
        "intentproof_events_rejected_total{reason=\"malformed_json\"} 2",
        "intentproof_events_rejected_total{reason=\"invalid_event\"} 7",
        "intentproof_events_rejected_total{reason=\"bad_signature\"} 1",
        "intentproof_events_rejected_total{reason=\"too_large\"} 1",
        "intentproof_events_rejected_total{reason=\"chain_conflict\"} 2",
        "intentproof_fsync_seconds_count 3",
        "intentproof_journal_records 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "metrics lack {line:?}:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn unknown_keys_are_stored_unverified_until_trusted() {
    let f = start().await;
    let sealer = Sealer::new(sdk_key());
    let event = sealed(&sealer, "corr-u", "a.b");
    assert_eq!(f.post(bytes(&event)).await.0, 202);
    let (_, chains) = f.get("/v1/chains").await;
    assert_eq!(chains["chains"][0]["verified"], false);
    assert_eq!(chains["chains"][0]["key_unknown"], 1);
    let (_, events) = f.get("/v1/events?correlation=corr-u").await;
    assert_eq!(events["events"][0]["signature"], "key_unknown");
    assert_eq!(
        f.trust(&sdk_key()).await,
        (
            200,
            json!({"instance_id": "inst_api_test", "events_verified": 1, "events_invalid": 0})
        )
    );
    let (_, chains) = f.get("/v1/chains").await;
    assert_eq!(chains["chains"][0]["verified"], true);
    assert!(f.dir.path().join("trusted-keys/inst_api_test.pub").exists());
}

#[tokio::test]
async fn reads_and_admin_need_the_token_ingest_is_open_unless_configured() {
    let f = start_with(|c| c.ingest_token = Some("ingest-secret".into())).await;
    for path in ["/v1/events", "/v1/chains", "/v1/checkpoint", "/metrics"] {
        let response = f
            .http
            .get(format!("{}{path}", f.daemon.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{path}");
        let wrong = f
            .http
            .get(format!("{}{path}", f.daemon.url()))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status().as_u16(), 401, "{path}");
    }
    let sealer = Sealer::new(sdk_key());
    let event = sealed(&sealer, "corr-t", "a.b");
    let (status, body) = f.post(bytes(&event)).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("unauthorized"))
    );
    let response = f
        .http
        .post(format!("{}/v1/events", f.daemon.url()))
        .bearer_auth("ingest-secret")
        .header("content-type", "application/json")
        .body(bytes(&event))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let token_mode = std::fs::metadata(f.dir.path().join("token")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(token_mode.permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn event_queries_filter_and_page() {
    let f = start().await;
    let sealer = Sealer::new(sdk_key());
    for i in 0..5 {
        let corr = if i % 2 == 0 { "even" } else { "odd" };
        assert_eq!(
            f.post(bytes(&sealed(&sealer, corr, &format!("act.{}", i % 3))))
                .await
                .0,
            202
        );
    }
    let (_, page) = f.get("/v1/events?correlation=even").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    let (_, page) = f.get("/v1/events?action=act.0").await;
    let seqs: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![0, 3]);
    let (_, page) = f.get("/v1/events?limit=2").await;
    assert_eq!(page["next_cursor"], 1);
    let (_, rest) = f.get("/v1/events?limit=10&cursor=1").await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 3);
    assert_eq!(rest["next_cursor"], Value::Null);
    let (status, body) = f.get("/v1/events?status=maybe").await;
    assert_eq!((status, body["reason"].as_str()), (400, Some("bad_query")));
    let (status, _) = f.get("/v1/chains/nope").await;
    assert_eq!(status, 404);
    let (status, cp) = f.get("/v1/checkpoint").await;
    assert_eq!(status, 200);
    assert_eq!(cp["checkpoint"]["tree_size"], 5);
}

#[tokio::test]
async fn exporters_deliver_every_event_and_resume_from_their_cursor() {
    // A collector that records bodies.
    let received = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/collect",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}/collect", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        checkpoint_interval_secs: 0,
        exporters: vec![ExporterConfig {
            name: "test".into(),
            url: collector,
            headers: Default::default(),
            timeout_ms: 2000,
        }],
        ..Config::default()
    };
    let sealer = Sealer::new(sdk_key());
    let events: Vec<Value> = (0..6).map(|_| sealed(&sealer, "corr-x", "a.b")).collect();
    for (round, batch) in events.chunks(3).enumerate() {
        let daemon = Daemon::start(config.clone()).await.unwrap();
        for event in batch {
            let response = reqwest::Client::new()
                .post(format!("{}/v1/events", daemon.url()))
                .header("content-type", "application/json")
                .body(bytes(event))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 202);
        }
        // Wait (bounded) until the exporter caught up, then restart.
        let want = 3 * (round + 1);
        for _ in 0..500 {
            if received.lock().unwrap().len() >= want {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        daemon.stop().await.unwrap();
    }
    assert_eq!(
        *received.lock().unwrap(),
        events,
        "each event once, in order, across a restart"
    );
}

/// A collector that asks for time (429 with `Retry-After: 1`) gets it: the
/// pump's retry comes no sooner, however short its own first step (200
/// ms). The gap is a lower bound: a slow machine only makes it longer.
#[tokio::test]
async fn an_exporter_waits_out_the_collectors_retry_after() {
    use axum::response::IntoResponse;
    let arrivals = Arc::new(Mutex::new(Vec::<std::time::Instant>::new()));
    let sink = arrivals.clone();
    let app = axum::Router::new().route(
        "/collect",
        axum::routing::post(move || {
            let sink = sink.clone();
            async move {
                let mut arrivals = sink.lock().unwrap();
                arrivals.push(std::time::Instant::now());
                if arrivals.len() == 1 {
                    (
                        axum::http::StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "1")],
                    )
                        .into_response()
                } else {
                    axum::http::StatusCode::OK.into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}/collect", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let f = start_with(|c| {
        c.exporters = vec![ExporterConfig {
            name: "slow".into(),
            url: collector,
            headers: Default::default(),
            timeout_ms: 2000,
        }];
    })
    .await;
    let sealer = Sealer::new(sdk_key());
    let (status, _) = f.post(bytes(&sealed(&sealer, "corr-ra", "a.b"))).await;
    assert_eq!(status, 202);
    for _ in 0..1000 {
        if arrivals.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 2, "429, then the retry");
    let gap = arrivals[1].duration_since(arrivals[0]);
    assert!(
        gap >= std::time::Duration::from_secs(1),
        "retried after {gap:?}"
    );
}

#[tokio::test]
async fn configured_verification_policies_flag_violating_flows() {
    let policy = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../policies/verification/refund-with-receipt.yaml");
    let f = start_with(|c| {
        c.verification_policies = vec![policy];
        c.plan_idle_timeout_secs = 0;
    })
    .await;
    let envelope = |id: &str, correlation: &str, action: &str| {
        json!({"intentproof": "1", "event": {
        "id": id, "correlationId": correlation, "intent": "Refund", "action": action,
        "inputs": [], "status": "ok", "output": {"ok": true},
        "startedAt": "2026-01-01T00:00:00.000Z", "completedAt": "2026-01-01T00:00:00.001Z", "durationMs": 1}})
    };
    // Complete flow: refund then receipt. Incomplete flow: refund only.
    for (id, corr, action) in [
        ("a1", "complete", "stripe.refund.create"),
        ("a2", "complete", "email.customer.refund_receipt"),
        ("b1", "incomplete", "stripe.refund.create"),
        ("c1", "unrelated", "inventory.count"),
    ] {
        assert_eq!(f.post(bytes(&envelope(id, corr, action))).await.0, 202);
    }
    let (status, body) = f.get("/v1/findings").await;
    assert_eq!(status, 200);
    let findings: Vec<(&str, &str, &str)> = body["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap(),
                f["correlation_id"].as_str().unwrap(),
                f["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        findings,
        // The action the failed rule (receipt-sent) requires.
        vec![(
            "policy_violation",
            "incomplete",
            "email.customer.refund_receipt"
        )],
        "{body}"
    );
}

#[tokio::test]
async fn a_verification_policy_without_scope_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, "policy_id: p\ntenant_id: t\nrules:\n  - id: r\n    type: required\n    action: a\n    min: 1\n").unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        verification_policies: vec![policy],
        ..Config::default()
    };
    let err = Daemon::start(config).await.err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: scope.any_event_action_in is missing: list the actions whose flows this policy governs (a flow is checked when one of its events has one of them)",
            dir.path().join("p.yaml").display()
        )
    );
    assert!(
        !dir.path().join("data").exists(),
        "refused before the data dir is made"
    );
}

#[tokio::test]
async fn bundles_export_in_the_counterparty_profile_and_refuse_minimal_claim() {
    let f = start().await;
    f.trust(&sdk_key()).await;
    let sealer = Sealer::new(sdk_key());
    for action in ["refund.create", "email.send"] {
        let event = sealed(&sealer, "corr-b", action);
        assert_eq!(f.post(bytes(&event)).await.0, 202);
    }
    let bundle = |profile: &'static str| {
        f.http
            .post(format!("{}/v1/bundles", f.daemon.url()))
            .bearer_auth(&f.token)
            .json(&json!({"correlation_id": "corr-b", "profile": profile}))
            .send()
    };

    let response = bundle("counterparty").await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/zstd");
    let bytes = response.bytes().await.unwrap();
    let report = intentproof_bundle::verify(&bytes, &intentproof_bundle::VerifyOptions::default());
    assert!(report.passed(), "{}\n{:?}", report.human(), report.detail);
    assert_eq!(report.summary.events_projected, 2);
    // Without --key the manifest signature, which alone attests the
    // projected fields, is still checked, against the bundled key.
    assert_eq!(report.summary.manifest_signature, "valid_with_bundled_key");
    assert!(
        !report.warnings.iter().any(|w| w.contains("not checked")),
        "{:?}",
        report.warnings
    );
    assert!(
        report
            .findings
            .contains(&"projection.counterparty:visible_fields_attested_by_bundle_signer".into())
    );
    let archive =
        intentproof_bundle::read_archive(&bytes, &intentproof_bundle::ReadLimits::default())
            .unwrap();
    let events = String::from_utf8(archive.get("events.jsonl").unwrap().to_vec()).unwrap();
    assert_eq!(events.lines().count(), 2);
    // The output (`re_1`) and the inputs (`amountCents`) are withheld.
    assert!(
        !events.contains("re_1") && !events.contains("amountCents"),
        "{events}"
    );
    assert!(
        events.contains(r#""projection":"counterparty""#),
        "{events}"
    );

    let response = bundle("minimal-claim").await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "reason": "unsupported_profile",
            "error": "export profile \"minimal-claim\" is not available: the profiles are full, auditor and counterparty"
        })
    );
}

#[tokio::test]
async fn a_batch_answers_each_line_like_a_single_post_and_can_be_resent() {
    let f = start().await;
    f.trust(&sdk_key()).await;
    let sealer = Sealer::new(sdk_key());
    let chain: Vec<Value> = (0..3)
        .map(|i| sealed(&sealer, "corr-batch", &format!("step.{i}")))
        .collect();
    let mut bad_signature = sealed(&sealer, "corr-other", "x");
    bad_signature["intent"] = json!("edited after signing");
    let fork = sealed(&Sealer::new(sdk_key()), "corr-batch", "fork");
    let line = |v: &Value| String::from_utf8(bytes(v)).unwrap();
    // Blank lines are skipped (line numbers still count them); a CRLF is fine.
    let body = format!(
        "{}\n{}\r\n\n{{\"event_id\": 1\n{}\n{}\n{}\n",
        line(&chain[0]),
        line(&chain[1]),
        line(&bad_signature),
        line(&fork),
        line(&chain[2]),
    );
    let (status, answer) = f.post_batch(body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["stored"], 3);
    assert_eq!(answer["duplicates"], 0);
    assert_eq!(answer["rejected"], 3);
    let results = answer["results"].as_array().unwrap();
    let summary: Vec<(u64, u64, &str)> = results
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["status"].as_u64().unwrap(),
                r["reason"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, 202, "-"),
            (2, 202, "-"),
            (4, 400, "malformed_json"),
            (5, 422, "bad_signature"),
            (6, 409, "chain_conflict"),
            (7, 202, "-"),
        ]
    );
    assert_eq!(results[0]["event_id"], chain[0]["event_id"]);
    assert_eq!(results[0]["seq"], 0);
    assert_eq!(results[5]["seq"], 2);
    assert!(
        results[4]["error"]
            .as_str()
            .unwrap()
            .starts_with("chain fork: position 1 of (inst_api_test, corr-batch)"),
        "{}",
        results[4]
    );

    // The chain is stored in order, byte for byte, and verifies.
    let (_, stored) = f.get("/v1/chains/corr-batch").await;
    assert_eq!(stored["chain"]["events"], 3);
    assert_eq!(stored["chain"]["verified"], true);
    for (i, event) in chain.iter().enumerate() {
        assert_eq!(&stored["events"][i]["event"], event);
    }

    // Re-sending the whole batch is safe: stored lines are duplicates.
    let (status, again) = f.post_batch(body).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&again["stored"], &again["duplicates"], &again["rejected"]),
        (&json!(0), &json!(3), &json!(3))
    );
    assert_eq!(again["results"][0]["status"], 200);

    // Refusals of the batch as a whole.
    assert_eq!(f.post_batch("\n \n").await.1["reason"], "empty_batch");
    let too_many = format!("{}\n", line(&chain[0])).repeat(10_001);
    let (status, refused) = f.post_batch(too_many).await;
    assert_eq!(
        (status, &refused["reason"]),
        (413, &json!("too_many_events"))
    );
    assert_eq!(
        refused["error"],
        "the batch holds 10001 events; send at most 10000 per request"
    );
    let (status, refused) = f.post_batch(vec![b' '; 16 * 1024 * 1024 + 1]).await;
    assert_eq!((status, &refused["reason"]), (413, &json!("too_large")));
    // And the daemon still serves single events.
    let next = sealed(&sealer, "corr-batch", "step.3");
    assert_eq!(f.post(bytes(&next)).await.0, 202);
}

/// `GET /v1/chains/{id}` streams its events a chunk at a time (256 per
/// chunk): a chain of several chunks, and one of exactly two, come back
/// whole, in order, as one JSON document.
#[tokio::test]
async fn a_long_chain_is_streamed_whole_and_in_order() {
    let f = start().await;
    f.trust(&sdk_key()).await;
    for (correlation, n) in [("corr-long", 600), ("corr-512", 512), ("corr-one", 1)] {
        let sealer = Sealer::new(sdk_key());
        let chain: Vec<Value> = (0..n)
            .map(|i| sealed(&sealer, correlation, &format!("step.{i}")))
            .collect();
        let body: String = chain
            .iter()
            .map(|v| format!("{}\n", String::from_utf8(bytes(v)).unwrap()))
            .collect();
        let (status, answer) = f.post_batch(body).await;
        assert_eq!((status, &answer["stored"]), (200, &json!(n)), "{answer}");

        let (status, stored) = f.get(&format!("/v1/chains/{correlation}")).await;
        assert_eq!(status, 200);
        assert_eq!(stored["chain"]["events"], n);
        assert_eq!(stored["chain"]["verified"], true);
        let events = stored["events"].as_array().unwrap();
        assert_eq!(events.len(), n);
        for (i, (got, sent)) in events.iter().zip(&chain).enumerate() {
            assert_eq!(&got["event"], sent, "event {i} of {correlation}");
            assert_eq!(got["signature"], "verified");
        }
    }
}

/// A damaged journal record does not hide the other chains from
/// `GET /v1/chains` (the list reads each chain's first event for its
/// agent); the damaged chain's own answer reports the damage.
#[tokio::test]
async fn a_damaged_record_does_not_hide_the_chain_list() {
    let f = start().await;
    f.trust(&sdk_key()).await;
    let sealer = Sealer::new(sdk_key());
    let body: String = ["corr-damaged", "corr-intact"]
        .iter()
        .map(|c| {
            format!(
                "{}\n",
                String::from_utf8(bytes(&sealed(&sealer, c, "step"))).unwrap()
            )
        })
        .collect();
    let (status, answer) = f.post_batch(body).await;
    assert_eq!((status, &answer["stored"]), (200, &json!(2)), "{answer}");

    // Change one byte of the first record on disk.
    let mut damaged = false;
    for file in std::fs::read_dir(f.dir.path().join("journal")).unwrap() {
        let path = file.unwrap().path();
        let mut data = std::fs::read(&path).unwrap();
        if let Some(at) = data.windows(12).position(|w| w == b"corr-damaged") {
            data[at + 5] = b'X';
            std::fs::write(&path, data).unwrap();
            damaged = true;
        }
    }
    assert!(damaged, "no journal record of corr-damaged found");

    let (status, list) = f.get("/v1/chains").await;
    assert_eq!(status, 200, "{list}");
    let mut ids: Vec<&str> = list["chains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["correlation_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["corr-damaged", "corr-intact"]);
    let (status, _) = f.get("/v1/chains/corr-intact").await;
    assert_eq!(status, 200);
    let (status, damaged) = f.get("/v1/chains/corr-damaged").await;
    assert_eq!(status, 500, "{damaged}");
    assert!(
        damaged["error"].as_str().unwrap().contains("checksum"),
        "{damaged}"
    );
}
