//! OpenTelemetry export end to end: a daemon with `[[otlp]]` records real
//! calls (MCP over HTTP to the rmcp fixture server at 2025-11-25 with a
//! session and at 2026-07-28 stateless with a `traceparent`, an `isError`
//! tool, and a call through the HTTP API proxy), and the spans it sends are
//! decoded by an independent OTLP implementation (the OpenTelemetry
//! project's protobuf definitions, PyPI `opentelemetry-proto`, run by
//! `tests/otlp/decode.py`), then checked attribute by attribute.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    answering_server as http_server, cli_json, http_exchange, mcp_http_session, required_env,
    rmcp_peers_dir, start_gateway_daemon, start_http_fixture, workspace_root,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn derived(label: &str, value: &str, n: usize) -> String {
    let digest = Sha256::digest(format!("{label}\n{value}").as_bytes());
    digest[..n].iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn spans_follow_the_mcp_and_genai_conventions_and_decode_with_the_official_protos() {
    let python = required_env("INTENTPROOF_TEST_PYTHON");
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let (collector, requests) = http_server("200 OK", "{}");
    let (tickets, _) = http_server("200 OK", r#"{"id":"T-42","status":"open"}"#);
    let (_fixture, fixture_url) = start_http_fixture(
        Command::new(rmcp_peers_dir().join("rmcp-fixture-server")),
        "rmcp fixture",
        &dir.join("fixture.log"),
    );
    let (_daemon, addr) = start_gateway_daemon(
        dir,
        &format!(
            "[[mcp.servers]]\nname = \"fixture\"\nurl = \"{fixture_url}\"\n\n\
             [[http.routes]]\nname = \"tickets\"\nupstream = \"{tickets}\"\naction = [\"/v1/tickets/{{id}}\"]\n\n\
             [[otlp]]\nname = \"collector\"\nendpoint = \"{collector}/v1/traces\"\n"
        ),
    );
    let data = dir.join("data");
    let token = std::fs::read_to_string(data.join("token"))
        .unwrap()
        .trim()
        .to_owned();
    let json_headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];

    // 2025-11-25: a session, an echo and an isError tool.
    let session = mcp_http_session(&addr, "/mcp/fixture", "otlp-test");
    let in_session = [
        json_headers[0],
        json_headers[1],
        ("Mcp-Session-Id", session.as_str()),
        ("MCP-Protocol-Version", "2025-11-25"),
    ];
    for call in [
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"always_fails","arguments":{}}}"#,
    ] {
        let (status, _, body) = http_exchange(&addr, "POST", "/mcp/fixture", &in_session, call);
        assert_eq!(status, 200, "{body}");
    }
    // 2026-07-28: stateless, with the caller's trace context in _meta.
    let call_2026 = json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "traced"}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "otlp-test", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
            "traceparent": TRACEPARENT,
        }},
    })
    .to_string();
    let (status, _, body) = http_exchange(
        &addr,
        "POST",
        "/mcp/fixture",
        &[
            json_headers[0],
            json_headers[1],
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "echo"),
        ],
        &call_2026,
    );
    assert_eq!(status, 200, "{body}");
    // An HTTP API call through the proxy.
    let (status, _, body) = http_exchange(
        &addr,
        "GET",
        "/proxy/tickets/v1/tickets/T-42",
        &[
            ("X-IntentProof-Token", &token),
            ("X-IntentProof-Correlation-Id", "ticket-T-42"),
        ],
        "",
    );
    assert_eq!(status, 200, "{body}");

    // The recorded events, as the CLI lists them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let listed = cli_json(&["events"], &data);
        // Each stored event with its journal seq beside it.
        let events: Vec<Value> = listed["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|row| {
                let mut event = row["event"].clone();
                event["seq"] = row["seq"].clone();
                event
            })
            .collect();
        if events.len() >= 4 {
            break events;
        }
        assert!(Instant::now() < deadline, "{listed:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(events.len(), 4, "{events:#?}");
    // What the collector received on `path`, decoded by the official protos.
    let decoded = |path: &str, logs: bool| -> Vec<Value> {
        let bodies = requests.lock().unwrap().clone();
        let mut files = Vec::new();
        for (i, (line, body)) in bodies.iter().enumerate() {
            if line == &format!("POST {path} HTTP/1.1") {
                let file = dir.join(format!("request-{i}.bin"));
                std::fs::write(&file, body).unwrap();
                files.push(file);
            }
        }
        let mut cmd = Command::new(&python);
        cmd.arg(workspace_root().join("tests/otlp/decode.py"));
        if logs {
            cmd.arg("--logs");
        }
        let out = cmd.args(&files).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (spans, records) = loop {
        let (spans, records) = (decoded("/v1/traces", false), decoded("/v1/logs", true));
        if spans.len() >= 4 && records.len() >= 4 {
            break (spans, records);
        }
        assert!(
            Instant::now() < deadline,
            "{} spans, {} log records",
            spans.len(),
            records.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(spans.len(), 4);
    assert_eq!(
        records.len(),
        4,
        "one finding per unplanned call: {records:#?}"
    );
    let findings = cli_json(&["findings"], &data);
    let instance = events[0]["instance_id"].as_str().unwrap();
    let by_action: BTreeMap<String, (&Value, &Value)> = events
        .iter()
        .map(|e| {
            let span = spans
                .iter()
                .find(|s| s["attributes"]["intentproof.event.id"] == e["event_id"])
                .unwrap_or_else(|| panic!("no span for {e:#}"));
            (
                format!(
                    "{}#{}",
                    e["action"].as_str().unwrap(),
                    e["attributes"]["jsonrpc.id"].as_str().unwrap_or("")
                ),
                (e, span),
            )
        })
        .collect();
    let evidence = |event: &Value| {
        json!({
            "intentproof.event.id": event["event_id"],
            "intentproof.content_hash": intentproof_core::v1::content_hash(
                &event.as_object().unwrap().iter().filter(|(k, _)| *k != "seq").map(|(k, v)| (k.clone(), v.clone())).collect()
            ).unwrap(),
            "intentproof.correlation_id": event["correlation_id"],
            "intentproof.intent": event["intent"],
            "intentproof.action": event["action"],
            "intentproof.leaf_index": event["seq"],
        })
    };
    let merged = |a: Value, b: Value| {
        let mut a = a.as_object().unwrap().clone();
        a.extend(b.as_object().unwrap().clone());
        Value::Object(a)
    };

    // The 2025-11-25 echo.
    let (event, span) = by_action["mcp.fixture.echo#2"];
    assert_eq!(span["name"], "tools/call echo");
    assert_eq!(span["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(span["scope"], "intentproof-gateway");
    assert_eq!(span["resource"]["service.name"], "intentproof-gateway");
    assert_eq!(span["resource"]["service.instance.id"], instance);
    assert_eq!(
        span["status"],
        json!({"code": "STATUS_CODE_UNSET", "message": ""})
    );
    let correlation = event["correlation_id"].as_str().unwrap();
    assert_eq!(
        span["trace_id"],
        derived("intentproof.trace", correlation, 16)
    );
    assert_eq!(
        span["span_id"],
        derived("intentproof.span", event["event_id"].as_str().unwrap(), 8)
    );
    assert_eq!(span["parent_span_id"], "");
    assert_eq!(
        span["attributes"],
        merged(
            json!({
                "mcp.method.name": "tools/call",
                "gen_ai.tool.name": "echo",
                "gen_ai.operation.name": "execute_tool",
                "jsonrpc.request.id": "2",
                "mcp.protocol.version": "2025-11-25",
                "mcp.session.id": event["attributes"]["mcp.session_id"],
                "network.transport": "tcp",
            }),
            evidence(event)
        )
    );
    assert!(span["end_time_unix_nano"].as_u64() >= span["start_time_unix_nano"].as_u64());

    // isError.
    let (event, span) = by_action["mcp.fixture.always_fails#3"];
    assert_eq!(span["name"], "tools/call always_fails");
    assert_eq!(span["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(span["status"]["message"], event["error"]["message"]);
    assert_eq!(
        span["attributes"],
        merged(
            json!({
                "mcp.method.name": "tools/call",
                "gen_ai.tool.name": "always_fails",
                "gen_ai.operation.name": "execute_tool",
                "jsonrpc.request.id": "3",
                "mcp.protocol.version": "2025-11-25",
                "mcp.session.id": event["attributes"]["mcp.session_id"],
                "network.transport": "tcp",
                "error.type": "tool_error",
            }),
            evidence(event)
        )
    );

    // 2026-07-28 with a traceparent: the caller's trace, no MCP session.
    let (event, span) = by_action["mcp.fixture.echo#7"];
    assert_eq!(span["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(span["parent_span_id"], "b7ad6b7169203331");
    assert_eq!(
        span["attributes"],
        merged(
            json!({
                "mcp.method.name": "tools/call",
                "gen_ai.tool.name": "echo",
                "gen_ai.operation.name": "execute_tool",
                "jsonrpc.request.id": "7",
                "mcp.protocol.version": "2026-07-28",
                "network.transport": "tcp",
            }),
            evidence(event)
        )
    );

    // The HTTP route.
    let (event, span) = by_action["http.tickets.GET./v1/tickets/{id}#"];
    assert_eq!(span["name"], "GET /v1/tickets/{id}");
    assert_eq!(
        span["trace_id"],
        derived("intentproof.trace", "ticket-T-42", 16)
    );
    assert_eq!(
        span["attributes"],
        merged(
            json!({
                "http.request.method": "GET",
                "http.route": "/v1/tickets/{id}",
                "http.response.status_code": 200,
            }),
            evidence(event)
        )
    );

    // Each unplanned call's finding, as a log record on the call's span.
    let rows = findings["findings"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{findings:#}");
    for row in rows {
        let event_id = row["event_ids"][0].as_str().unwrap();
        let span = spans
            .iter()
            .find(|s| s["attributes"]["intentproof.event.id"] == event_id)
            .unwrap();
        let record = records
            .iter()
            .find(|r| r["attributes"]["intentproof.event.ids"][0] == event_id)
            .unwrap_or_else(|| panic!("no log record for {row:#}"));
        assert_eq!(record["event_name"], "intentproof.finding");
        assert_eq!(record["severity_number"], "SEVERITY_NUMBER_WARN");
        assert_eq!(record["body"], row["message"]);
        assert_eq!(record["trace_id"], span["trace_id"]);
        assert_eq!(record["span_id"], span["span_id"]);
        assert_eq!(record["resource"]["service.instance.id"], instance);
        let id = record["attributes"]["intentproof.finding.id"]
            .as_str()
            .unwrap();
        assert!(id.starts_with("fnd_") && id.len() == 36, "{id}");
        assert_eq!(
            record["attributes"],
            json!({
                "intentproof.finding.id": id,
                "intentproof.finding.kind": "unplanned_call",
                "intentproof.correlation_id": row["correlation_id"],
                "intentproof.action": row["action"],
                "intentproof.event.ids": [event_id],
            })
        );
    }
    // Each finding once: the delivery log has four, and nothing more came.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(decoded("/v1/logs", true).len(), 4);
    let delivered = std::fs::read_to_string(data.join("otlp/collector.jsonl")).unwrap();
    assert_eq!(delivered.lines().count(), 4);
}
