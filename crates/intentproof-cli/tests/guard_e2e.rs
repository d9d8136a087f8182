//! Guard mode, plan enforcement, end to end: the official Python MCP client
//! (`tests/mcp/plan_session.py`) declares "refund order ORD-1042 and email
//! the receipt" as two steps (the refund at most once and at most 5000
//! cents), then calls a tool outside the plan, an over-limit refund, the
//! refund, a second refund and the receipt, through the gateway in front of
//! a FastMCP server (`tests/mcp/payments_server.py`, which logs every call
//! it receives). Over stdio (`intentproof mcp --enforce plan`) and over
//! Streamable HTTP (`enforce = "plan"` on a `[[mcp.servers]]`):
//! - the three refused calls get the documented JSON-RPC error, with the
//!   plan and the rule, and the server never sees them (its log);
//! - each refusal is a signed event: status `error`, `RefusedByPolicy`,
//!   the rule and the fingerprint of what was enforced (checked against an
//!   independent SHA-256 of its JCS form);
//! - the refused call outside the plan is no `unplanned_call` finding, and
//!   with both steps done the closed plan has no finding at all.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

mod common;

use common::{
    BIN, cli_json, command_server, required_env, start_daemon, start_gateway_daemon, workspace_root,
};

const INTENT: &str = "refund order ORD-1042 and email the receipt";

fn plan_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("plan.json");
    let plan = json!({
        "plan": {
            "intent": INTENT,
            "steps": [
                {"tool": "refund_payment", "purpose": "Refund the customer's card",
                 "max_calls": 1, "constraints": ["amount_cents <= 5000"]},
                {"tool": "send_receipt_email", "purpose": "Email the customer the refund receipt"},
            ],
        },
        "calls": [
            {"tool": "lookup_order", "arguments": {"order_id": "ORD-1042"}},
            {"tool": "refund_payment", "arguments": {"order_id": "ORD-1042", "amount_cents": 9000}},
            {"tool": "refund_payment", "arguments": {"order_id": "ORD-1042", "amount_cents": 4999}},
            {"tool": "refund_payment", "arguments": {"order_id": "ORD-1042", "amount_cents": 100}},
            {"tool": "send_receipt_email", "arguments": {"order_id": "ORD-1042", "email": "ada@example.com"}},
        ],
    });
    std::fs::write(&path, plan.to_string()).unwrap();
    path
}

/// Runs `plan_session.py PLAN target...` and returns its transcript.
fn session(python: &Path, plan: &Path, target: &[&str]) -> Value {
    let args: Vec<&str> = [plan.to_str().unwrap()]
        .into_iter()
        .chain(target.iter().copied())
        .collect();
    serde_json::from_str(&common::python_client(python, "plan_session.py", &args)).unwrap()
}

/// The fingerprint of what the plan enforces, computed here from its
/// definition: `sha256:` + hex(SHA-256(JCS(...))). (serde_json writes
/// objects with sorted keys and no spaces: JCS for these ASCII values.)
fn expected_fingerprint(plan_id: &str, refund: &str, receipt: &str) -> String {
    let doc = json!({
        "enforce": "plan",
        "plan_id": plan_id,
        "steps": [
            {"action": refund, "max_calls": 1, "constraints": ["amount_cents <= 5000"]},
            {"action": receipt, "max_calls": null, "constraints": []},
        ],
    });
    let digest = Sha256::digest(serde_json::to_string(&doc).unwrap().as_bytes());
    format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// Checks what the agent got, what the server saw and what was recorded.
fn assert_enforced(transcript: &Value, server_log: &Path, data: &Path) {
    let steps = transcript["steps"].as_array().unwrap();
    let declared = &steps[2];
    assert_eq!(declared["ok"], true, "{declared:#}");
    // The transcript shows ids as `<uuid>`; the store has them.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (plan_id, correlation) = loop {
        let plans = cli_json(&["plans"], data);
        if let Some(plan) = plans["plans"].as_array().and_then(|p| p.first()) {
            break (
                plan["plan_id"].as_str().unwrap().to_owned(),
                plan["correlation_id"].as_str().unwrap().to_owned(),
            );
        }
        assert!(Instant::now() < deadline, "{plans:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let fingerprint = expected_fingerprint(
        &plan_id,
        "mcp.payments.refund_payment",
        "mcp.payments.send_receipt_email",
    );
    let refused = |rule: &str, message: String| {
        json!({"ok": false, "error": {"code": -32010, "message": message,
               "data": {"reason": rule, "plan_id": "<uuid>", "fingerprint": fingerprint}}})
    };
    let plan_id_shown = "<uuid>";
    let outcome = |i: usize| {
        let step = &steps[3 + i];
        let mut out = json!({"ok": step["ok"]});
        if let Some(error) = step.get("error") {
            out["error"] = error.clone();
        }
        out
    };
    assert_eq!(
        outcome(0),
        refused(
            "plan.not_covered",
            format!(
                "mcp.payments.lookup_order was refused: no step of plan {plan_id_shown} calls it (its steps: mcp.payments.refund_payment, mcp.payments.send_receipt_email); declare a new plan that includes it"
            )
        )
    );
    assert_eq!(
        outcome(1),
        refused(
            "plan.constraint",
            format!(
                "mcp.payments.refund_payment was refused: step 1 of plan {plan_id_shown} allows it only when amount_cents <= 5000 (the arguments have amount_cents = 9000); call it within the plan's bounds, or declare a new plan"
            )
        )
    );
    assert_eq!(outcome(2), json!({"ok": true}));
    assert_eq!(
        outcome(3),
        refused(
            "plan.max_calls",
            format!(
                "mcp.payments.refund_payment was refused: step 1 of plan {plan_id_shown} allows 1 call(s) and 1 were made; declare a new plan for more"
            )
        )
    );
    assert_eq!(outcome(4), json!({"ok": true}));

    // The server saw the two allowed calls and nothing else.
    let seen: Vec<Value> = std::fs::read_to_string(server_log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        seen,
        [
            json!({"tool": "refund_payment", "arguments": {"order_id": "ORD-1042", "amount_cents": 4999, "currency": "EUR"}}),
            json!({"tool": "send_receipt_email", "arguments": {"order_id": "ORD-1042", "email": "ada@example.com"}}),
        ]
    );

    // Every call is one signed event; the refusals say so.
    let events = common::recorded(data, Some(&correlation), "mcp.payments.", 5);
    let facts: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "action": e["action"],
                "status": e["status"],
                "error": e.get("error").map(|err| err["name"].clone()),
                "decision": e["attributes"]["intentproof.guard.decision"],
                "rule": e["attributes"].get("intentproof.guard.rule"),
                "fingerprint": e["attributes"]["intentproof.guard.fingerprint"],
                "step": e["attributes"].get("intentproof.plan.step"),
            })
        })
        .collect();
    let fact = |action: &str, refused_by: Option<&str>, step: Option<u64>| {
        json!({
            "action": format!("mcp.payments.{action}"),
            "status": if refused_by.is_some() { "error" } else { "ok" },
            "error": refused_by.map(|_| "RefusedByPolicy"),
            "decision": if refused_by.is_some() { "refused" } else { "allowed" },
            "rule": refused_by,
            "fingerprint": fingerprint,
            "step": step,
        })
    };
    assert_eq!(
        facts,
        [
            fact("lookup_order", Some("plan.not_covered"), None),
            fact("refund_payment", Some("plan.constraint"), Some(0)),
            fact("refund_payment", None, Some(0)),
            fact("refund_payment", Some("plan.max_calls"), Some(0)),
            fact("send_receipt_email", None, Some(1)),
        ]
    );

    // Refused calls never ran: once the session's plan closes, nothing is
    // flagged (no unplanned call, no missing step).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let plans = cli_json(&["plans"], data);
        let mine = plans["plans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["plan_id"] == plan_id.as_str())
            .cloned()
            .unwrap_or_default();
        if mine["state"] == "closed" {
            assert_eq!(mine["calls"], 2, "{mine:#}");
            assert_eq!(mine["flags"], 0, "{mine:#}");
            break;
        }
        assert!(Instant::now() < deadline, "{plans:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let findings = cli_json(&["findings"], data);
    let mine: Vec<&Value> = findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["correlation_id"] == correlation.as_str())
        .collect();
    assert!(mine.is_empty(), "{findings:#}");

    // The refusals travel in the proof bundle; `verify explain` names them,
    // and the plan's policy, which does not see them, passes.
    let (code, text) = common::export_and_verify(data, &correlation, true);
    assert_eq!(code, Some(0), "{text}");
    for (rule, why) in [
        // (explain clips a message to 120 characters)
        (
            "plan.not_covered",
            format!("mcp.payments.lookup_order was refused: no step of plan {plan_id} calls it"),
        ),
        (
            "plan.constraint",
            format!("mcp.payments.refund_payment was refused: step 1 of plan {plan_id} allows it"),
        ),
        (
            "plan.max_calls",
            format!("mcp.payments.refund_payment was refused: step 1 of plan {plan_id} allows 1"),
        ),
    ] {
        let note = format!(
            "      refused by policy before it reached the server (rule {rule}, policy {fingerprint}): {why}"
        );
        assert!(text.lines().any(|l| l.starts_with(&note)), "{note}\n{text}");
    }
    assert!(
        text.contains("\nVerdict: everything that was intended happened.\n"),
        "{text}"
    );
}

#[test]
fn a_stdio_gateway_refuses_what_the_plan_does_not_cover() {
    let python = required_env("INTENTPROOF_TEST_PYTHON");
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let _daemon = start_daemon(&data);
    let server_log = temp.path().join("server.log");
    let server = workspace_root().join("tests/mcp/payments_server.py");
    let plan = plan_file(temp.path());
    let transcript = session(
        &python,
        &plan,
        &[
            "stdio",
            "--",
            BIN,
            "mcp",
            "--name",
            "payments",
            "--enforce",
            "plan",
            "--data-dir",
            data.to_str().unwrap(),
            "--",
            python.to_str().unwrap(),
            server.to_str().unwrap(),
            server_log.to_str().unwrap(),
        ],
    );
    assert_enforced(&transcript, &server_log, &data);
}

#[test]
fn an_http_gateway_refuses_what_the_plan_does_not_cover() {
    let python = required_env("INTENTPROOF_TEST_PYTHON");
    let temp = tempfile::tempdir().unwrap();
    let server_log = temp.path().join("server.log");
    let server = workspace_root().join("tests/mcp/payments_server.py");
    let table = command_server(
        "payments",
        &[
            python.display().to_string(),
            server.display().to_string(),
            server_log.display().to_string(),
        ],
    ) + "enforce = \"plan\"\n";
    let (_daemon, listen) = start_gateway_daemon(temp.path(), &table);
    let plan = plan_file(temp.path());
    let url = format!("http://{listen}/mcp/payments");
    let transcript = session(&python, &plan, &["http", &url]);
    assert_enforced(&transcript, &server_log, &temp.path().join("data"));
}

#[test]
fn without_a_plan_every_call_is_refused_and_says_how_to_declare_one() {
    let python = required_env("INTENTPROOF_TEST_PYTHON");
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let _daemon = start_daemon(&data);
    let server_log = temp.path().join("server.log");
    let server = workspace_root().join("tests/mcp/payments_server.py");
    let (gateway, mut agent) = common::spawn_gateway(
        Command::new(BIN)
            .args([
                "mcp",
                "--name",
                "payments",
                "--no-autostart",
                "--enforce",
                "plan",
            ])
            .arg("--data-dir")
            .arg(&data)
            .arg("--")
            .arg(&python)
            .arg(&server)
            .arg(&server_log),
    );
    agent.request(1, "initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "guard-e2e", "version": "1"}}));
    let answer = agent.call(2, "lookup_order", json!({"order_id": "ORD-1042"}));
    assert_eq!(
        answer["error"],
        json!({
            "code": -32010,
            "message": "mcp.payments.lookup_order was refused: calls here must follow a declared plan, and none is open for this correlation; declare one first (the plan tool, or POST /v1/plans) with a step for this call",
            "data": {"reason": "plan.none"},
        })
    );
    drop(agent);
    drop(gateway);
    assert!(
        !server_log.exists() || std::fs::read_to_string(&server_log).unwrap().is_empty(),
        "the server saw a refused call"
    );
}

/// A payments API on 127.0.0.1:0 answering every request `{"ok":true}`;
/// returns its base URL and each request it received (`METHOD path body`).
fn payments_api() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some((head, body)) = common::read_http_request(&mut stream) else {
                continue;
            };
            let line = head.lines().next().unwrap_or_default();
            let request: Vec<&str> = line.split(' ').take(2).collect();
            log.lock().unwrap().push(format!(
                "{} {}",
                request.join(" "),
                String::from_utf8_lossy(&body)
            ));
            let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"ok\":true}";
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (base, seen)
}

/// A daemon with a `payments` route (`enforce = "plan"`) in front of
/// [`payments_api`].
struct GuardedRoute {
    _daemon: common::Stopped,
    data: std::path::PathBuf,
    addr: String,
    token: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _temp: tempfile::TempDir,
}

impl GuardedRoute {
    fn start() -> GuardedRoute {
        GuardedRoute::start_with("")
    }

    /// With more config after the route (`[approvals]`, say).
    fn start_with(extra: &str) -> GuardedRoute {
        let temp = tempfile::tempdir().unwrap();
        let data = temp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let (upstream, seen) = payments_api();
        let config = temp.path().join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                "[[http.routes]]\nname = \"payments\"\nupstream = \"{upstream}\"\nenforce = \"plan\"\n{extra}"
            ),
        )
        .unwrap();
        let daemon = common::start_daemon_with(&data, &["--config", config.to_str().unwrap()], &[]);
        let addr = common::daemon_listen(&data);
        let token = std::fs::read_to_string(data.join("token"))
            .unwrap()
            .trim()
            .to_owned();
        GuardedRoute {
            _daemon: daemon,
            data,
            addr,
            token,
            seen,
            _temp: temp,
        }
    }

    /// Declares `plan` with `POST /v1/plans`; its plan id.
    fn declare(&self, plan: &Value) -> String {
        let (status, _, answer) = common::http_exchange(
            &self.addr,
            "POST",
            "/v1/plans",
            &[
                ("Authorization", &format!("Bearer {}", self.token)),
                ("Content-Type", "application/json"),
            ],
            &plan.to_string(),
        );
        assert_eq!(status, 201, "{answer}");
        serde_json::from_str::<Value>(&answer).unwrap()["plan_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A JSON call through the route in `correlation`: status and body.
    fn call(&self, correlation: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
        let (status, _, answer) = common::http_exchange(
            &self.addr,
            method,
            &format!("/proxy/payments{path}"),
            &[
                ("X-IntentProof-Token", &self.token),
                ("X-IntentProof-Correlation-Id", correlation),
                ("Content-Type", "application/json"),
            ],
            body,
        );
        (
            status,
            serde_json::from_str::<Value>(&answer).unwrap_or(Value::Null),
        )
    }
}

#[test]
fn an_http_route_refuses_what_the_plan_does_not_cover() {
    let route = GuardedRoute::start();
    let refund = "http.payments.POST./v1/refunds";
    let receipt = "http.payments.POST./v1/receipts";
    let plan = json!({
        "intent": INTENT,
        "correlation_id": "order-ORD-1042",
        "steps": [
            {"action": refund, "purpose": "Refund the customer's card", "max_calls": 1, "constraints": ["amount_cents <= 5000"]},
            {"action": receipt, "purpose": "Email the customer the refund receipt"},
        ],
    });
    let plan_id = route.declare(&plan);
    let fingerprint = expected_fingerprint(&plan_id, refund, receipt);
    let call =
        |method: &str, path: &str, body: &str| route.call("order-ORD-1042", method, path, body);
    let refused = |rule: &str, error: String| json!({"error": error, "reason": "refused_by_policy", "rule": rule, "plan_id": plan_id, "fingerprint": fingerprint});
    assert_eq!(
        call("GET", "/v1/orders/ORD-1042", ""),
        (
            403,
            refused(
                "plan.not_covered",
                format!(
                    "http.payments.GET./v1/orders/ORD-1042 was refused: no step of plan {plan_id} calls it (its steps: {refund}, {receipt}); declare a new plan that includes it"
                )
            )
        )
    );
    assert_eq!(
        call(
            "POST",
            "/v1/refunds",
            r#"{"order_id":"ORD-1042","amount_cents":9000}"#
        ),
        (
            403,
            refused(
                "plan.constraint",
                format!(
                    "{refund} was refused: step 1 of plan {plan_id} allows it only when amount_cents <= 5000 (the arguments have amount_cents = 9000); call it within the plan's bounds, or declare a new plan"
                )
            )
        )
    );
    assert_eq!(
        call(
            "POST",
            "/v1/refunds",
            r#"{"order_id":"ORD-1042","amount_cents":4999}"#
        ),
        (200, json!({"ok": true}))
    );
    assert_eq!(
        call(
            "POST",
            "/v1/refunds",
            r#"{"order_id":"ORD-1042","amount_cents":100}"#
        ),
        (
            403,
            refused(
                "plan.max_calls",
                format!(
                    "{refund} was refused: step 1 of plan {plan_id} allows 1 call(s) and 1 were made; declare a new plan for more"
                )
            )
        )
    );
    assert_eq!(
        call("POST", "/v1/receipts", r#"{"order_id":"ORD-1042"}"#),
        (200, json!({"ok": true}))
    );
    assert_eq!(
        *route.seen.lock().unwrap(),
        [
            r#"POST /v1/refunds {"order_id":"ORD-1042","amount_cents":4999}"#,
            r#"POST /v1/receipts {"order_id":"ORD-1042"}"#,
        ]
    );
    // A call that names no correlation has no plan, and is told why.
    let (status, _, answer) = common::http_exchange(
        &route.addr,
        "POST",
        "/proxy/payments/v1/receipts",
        &[
            ("X-IntentProof-Token", &route.token),
            ("Content-Type", "application/json"),
        ],
        "{}",
    );
    assert_eq!(status, 403);
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap(),
        json!({"error": format!("{receipt} was refused: calls here must follow a declared plan, and none is open for this correlation; declare one first (the plan tool, or POST /v1/plans) with a step for this call; this call sent no correlation: name the plan's in X-IntentProof-Correlation-Id"),
               "reason": "refused_by_policy", "rule": "plan.none"})
    );
    assert_eq!(route.seen.lock().unwrap().len(), 2);
    // The refusals are events, like the calls.
    let facts: Vec<Value> =
        common::recorded(&route.data, Some("order-ORD-1042"), "http.payments.", 5)
            .iter()
            .map(|e| {
                json!([
                    e["status"],
                    e.pointer("/error/name"),
                    e["attributes"]["intentproof.guard.decision"],
                    e["attributes"].get("intentproof.guard.rule")
                ])
            })
            .collect();
    assert_eq!(
        facts,
        [
            json!(["error", "RefusedByPolicy", "refused", "plan.not_covered"]),
            json!(["error", "RefusedByPolicy", "refused", "plan.constraint"]),
            json!(["ok", null, "allowed", null]),
            json!(["error", "RefusedByPolicy", "refused", "plan.max_calls"]),
            json!(["ok", null, "allowed", null]),
        ]
    );
}

/// A step's last allowed call goes to one caller only: eight refunds sent
/// at once under `max_calls = 1` give one 200 and seven refusals, and the
/// upstream sees one refund.
#[test]
fn concurrent_calls_cannot_share_a_steps_last_call() {
    let route = GuardedRoute::start();
    let plan = json!({
        "intent": "refund order ORD-7 once",
        "correlation_id": "order-ORD-7",
        "steps": [{"action": "http.payments.POST./v1/refunds", "max_calls": 1}],
    });
    route.declare(&plan);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    route
                        .call(
                            "order-ORD-7",
                            "POST",
                            "/v1/refunds",
                            r#"{"order_id":"ORD-7","amount_cents":100}"#,
                        )
                        .0
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [200, 403, 403, 403, 403, 403, 403, 403],
        "{statuses:?}"
    );
    let seen = route.seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
}

#[test]
fn an_http_route_holds_a_large_refund_until_a_person_decides() {
    let route = std::sync::Arc::new(GuardedRoute::start_with(
        "\n[approvals]\ntimeout_secs = 60\n\n[[approvals.rules]]\naction = \"http.payments.POST./v1/refunds\"\nwhen = [\"amount_cents > 100\"]\n",
    ));
    let refund = "http.payments.POST./v1/refunds";
    route.declare(&json!({
        "intent": INTENT,
        "correlation_id": "order-ORD-77",
        "steps": [{"action": refund, "purpose": "Refund the card", "max_calls": 1}],
    }));
    let body = r#"{"order_id":"ORD-77","amount_cents":900}"#;
    // Held until someone decides: decide from the CLI.
    let decide = |decision: &str, reason: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        let id = loop {
            let rows = cli_json(&["approvals"], &route.data);
            if let Some(row) = rows["approvals"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["state"] == "pending")
            {
                assert_eq!(row["action"], refund);
                assert_eq!(row["plan_step"], 0);
                break row["id"].as_str().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "{rows:#}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = Command::new(BIN)
            .args(["approvals", decision, &id, "--reason", reason, "--data-dir"])
            .arg(&route.data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        id
    };
    let caller = std::sync::Arc::clone(&route);
    let denied_call =
        std::thread::spawn(move || caller.call("order-ORD-77", "POST", "/v1/refunds", body));
    let id = decide("deny", "over the limit");
    let (status, answer) = denied_call.join().unwrap();
    assert_eq!(status, 403);
    assert_eq!(
        answer,
        json!({"error": format!("{refund} was refused: approval {id} was denied by owner: over the limit"),
               "reason": "refused_by_policy", "rule": "approval.denied", "approval_id": id})
    );
    assert!(
        route.seen.lock().unwrap().is_empty(),
        "the upstream saw a denied call"
    );
    // The denial gave the step back: asked again, approved, it goes through.
    let caller = std::sync::Arc::clone(&route);
    let approved_call =
        std::thread::spawn(move || caller.call("order-ORD-77", "POST", "/v1/refunds", body));
    decide("approve", "checked");
    let (status, answer) = approved_call.join().unwrap();
    assert_eq!((status, answer), (200, json!({"ok": true})));
    assert_eq!(route.seen.lock().unwrap().len(), 1);
    let events = common::recorded(
        &route.data,
        Some("order-ORD-77"),
        "intentproof.approval.",
        4,
    );
    let decisions: Vec<&str> = events
        .iter()
        .filter_map(|e| e["output"]["decision"].as_str())
        .collect();
    assert_eq!(decisions, ["denied", "approved"]);
}
