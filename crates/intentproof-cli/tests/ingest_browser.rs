//! Ingest and `/mcp/<name>` that a web page cannot reach (issue 18): the
//! forging request a page could send (`text/plain`, a foreign `Origin`, a
//! rebound `Host`) is refused at each step, reserved `intentproof.*`
//! actions need a token, an anonymous envelope is sealed marked as such,
//! and the MCP gateway applies the same Origin and Host rules plus its own
//! token. Against the real `intentproof serve`.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

mod common;

use common::{BIN, Stopped, clean_env, command_server, http_exchange, start_gateway_daemon};

/// One request on a fresh connection with `headers` (the `Host` too); the
/// status and the JSON body.
fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let (status, _, text) = http_exchange(addr, method, path, headers, body);
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, body)
}

/// A seed SDK envelope with `action`, in correlation `correlation`.
fn envelope(id: &str, correlation: &str, action: &str) -> String {
    json!({"intentproof": "1", "event": {
        "id": id, "correlationId": correlation, "intent": "Close the refund plan",
        "action": action, "inputs": [], "status": "ok", "output": null,
        "startedAt": "2026-01-01T00:00:00.000Z", "completedAt": "2026-01-01T00:00:00.001Z",
        "durationMs": 1}})
    .to_string()
}

fn token(data: &Path) -> String {
    std::fs::read_to_string(data.join("token"))
        .unwrap()
        .trim()
        .to_owned()
}

const DEMO: &str = "demo";

fn demo_server() -> String {
    command_server(DEMO, &[BIN.into(), "demo-server".into()])
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"browser-test","version":"1"}}}"#;

#[test]
fn the_forging_request_is_refused_at_each_step_and_reserved_actions_need_a_token() {
    let temp = tempfile::tempdir().unwrap();
    let (_daemon, addr) = start_gateway_daemon(temp.path(), &demo_server());
    let data = temp.path().join("data");
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let forged = envelope("ev-forged", "corr-forged", "intentproof.plan.close");

    // The issue's request as a page sends it: refused for its Origin first...
    let (status, body) = send(
        &addr,
        "POST",
        "/v1/events",
        &[
            ("Host", "evil.example"),
            ("Origin", "http://evil.example"),
            ("Content-Type", "text/plain"),
        ],
        &forged,
    );
    assert_eq!(
        (status, body),
        (
            403,
            json!({"reason": "origin_not_allowed", "error": "requests from Origin \"http://evil.example\" are refused: web pages may not write to the daemon; if this origin is yours, add it to allowed_origins in the daemon config"})
        )
    );
    // ...for its Host (DNS rebinding) without one...
    let (status, body) = send(
        &addr,
        "POST",
        "/v1/events",
        &[("Host", "evil.example"), ("Content-Type", "text/plain")],
        &forged,
    );
    assert_eq!(
        (status, body),
        (
            421,
            json!({"reason": "host_not_allowed", "error": format!("Host \"evil.example\" is not this daemon (it answers as 127.0.0.1:{port}, localhost:{port} and [::1]:{port}); a name that resolves here can be a DNS rebinding attack. If you reach the daemon by that name, add it to allowed_hosts in the daemon config")})
        )
    );
    // ...for its type at the right Host (localhost names the daemon too)...
    let localhost = format!("localhost:{port}");
    for (route, content_type, accepted) in [
        (
            "/v1/events",
            Some("text/plain"),
            "`Content-Type: application/json`",
        ),
        ("/v1/events", None, "`Content-Type: application/json`"),
        (
            "/v1/events:batch",
            Some("text/plain;charset=UTF-8"),
            "`Content-Type: application/x-ndjson` or `Content-Type: application/json`",
        ),
    ] {
        let mut headers = vec![("Host", localhost.as_str())];
        headers.extend(content_type.map(|t| ("Content-Type", t)));
        let (status, body) = send(&addr, "POST", route, &headers, &forged);
        let what = content_type.map_or("no Content-Type".to_owned(), |t| {
            format!("Content-Type {t:?}")
        });
        assert_eq!(
            (status, body),
            (
                415,
                json!({"reason": "unsupported_media_type", "error": format!("{what} is refused here (a web page can send it without asking first): send {accepted}")})
            ),
            "{route} {content_type:?}"
        );
    }
    // ...and, sent as JSON, for its reserved action without a token.
    let json_at = |host: &str, bearer: Option<&str>, content_type: &str| {
        let mut headers = vec![
            ("Host", host.to_owned()),
            ("Content-Type", content_type.to_owned()),
        ];
        headers.extend(bearer.map(|t| ("Authorization", format!("Bearer {t}"))));
        headers
    };
    let post = |path: &str, headers: &[(&str, String)], body: &str| {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        send(&addr, "POST", path, &headers, body)
    };
    let (status, body) = post(
        "/v1/events",
        &json_at(&addr, None, "application/json"),
        &forged,
    );
    assert_eq!(
        (status, body),
        (
            403,
            json!({"reason": "reserved_action", "error": "action \"intentproof.plan.close\" is reserved for IntentProof's own events (intentproof.*): send it with `Authorization: Bearer <token>`, the ingest token (ingest_token in the daemon config; INTENTPROOF_INGEST_TOKEN for the SDKs) or the daemon token in <data-dir>/token"})
        )
    );
    // A batch refuses the reserved line and keeps the other.
    let batch = format!(
        "{}\n{}\n",
        envelope("ev-batch-1", "corr-batch", "intentproof.call.completed"),
        envelope("ev-batch-2", "corr-batch", "refunds.create")
    );
    let (status, body) = post(
        "/v1/events:batch",
        &json_at(&addr, None, "application/x-ndjson"),
        &batch,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["stored"],
            &body["rejected"],
            &body["results"][0]["status"],
            &body["results"][0]["reason"],
            &body["results"][1]["status"]
        ),
        (
            &json!(1),
            &json!(1),
            &json!(403),
            &json!("reserved_action"),
            &json!(202)
        )
    );

    // With the daemon token, the same event is accepted.
    let daemon_token = token(&data);
    let (status, body) = post(
        "/v1/events",
        &json_at(
            &addr,
            Some(&daemon_token),
            "application/json; charset=utf-8",
        ),
        &forged,
    );
    assert_eq!((status, &body["status"]), (202, &json!("stored")), "{body}");
    // An anonymous envelope is stored, marked as unauthenticated in what
    // the daemon signed; a caller's own claim to the contrary is replaced.
    let mut claimed: Value =
        serde_json::from_str(&envelope("ev-anon", "corr-anon", "refunds.create")).unwrap();
    claimed["event"]["attributes"] =
        json!({"intentproof.ingest.authenticated": true, "shop": "eu"});
    let (status, _) = post(
        "/v1/events",
        &json_at(&addr, None, "application/json"),
        &claimed.to_string(),
    );
    assert_eq!(status, 202);
    let read = |correlation: &str| {
        let (status, _, body) = http_exchange(
            &addr,
            "GET",
            &format!("/v1/events?correlation={correlation}"),
            &[("Authorization", &format!("Bearer {daemon_token}"))],
            "",
        );
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        page["events"][0]["event"].clone()
    };
    assert_eq!(
        read("corr-anon")["attributes"],
        json!({"intentproof.ingest.authenticated": false, "shop": "eu"})
    );
    let authenticated = read("corr-forged");
    assert_eq!(authenticated["action"], "intentproof.plan.close");
    assert_eq!(authenticated.get("attributes"), None, "{authenticated}");

    // /mcp/<name>: the same Origin and Host refusals, as JSON-RPC errors.
    let mcp = |headers: &[(&str, &str)]| {
        let mut all = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        all.extend_from_slice(headers);
        send(&addr, "POST", "/mcp/demo", &all, INITIALIZE)
    };
    let (status, body) = mcp(&[("Host", &addr), ("Origin", "http://evil.example")]);
    assert_eq!(status, 403);
    assert_eq!(
        (
            &body["id"],
            &body["error"]["code"],
            &body["error"]["data"]["reason"]
        ),
        (&Value::Null, &json!(-32600), &json!("origin_not_allowed"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"http://evil.example\"")
    );
    let (status, body) = mcp(&[("Host", &format!("evil.example:{port}"))]);
    assert_eq!(
        (status, &body["error"]["data"]["reason"]),
        (421, &json!("host_not_allowed"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("\"evil.example:{port}\""))
    );
    // A client at the listen address gets the server (no token configured),
    // also with the daemon's own origin (what the MCP conformance suite sends).
    let own_origin = format!("http://{addr}");
    let (status, _, body) = http_exchange(
        &addr,
        "POST",
        "/mcp/demo",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Origin", &own_origin),
        ],
        INITIALIZE,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"serverInfo\""), "{body}");
}

#[test]
fn configured_tokens_are_required_and_the_ingest_token_allows_reserved_actions() {
    let temp = tempfile::tempdir().unwrap();
    let settings = format!(
        "ingest_token = \"ingest-secret\"\nmcp_token = \"mcp-secret\"\nallowed_hosts = [\"gateway.internal\"]\nallowed_origins = [\"https://app.example.com\"]\n\n{}",
        demo_server()
    );
    let (_daemon, addr) = start_gateway_daemon(temp.path(), &settings);
    let daemon_token = token(&temp.path().join("data"));
    let ingest = |id: &str, bearer: Option<&str>| {
        let event = envelope(id, "corr-1", "intentproof.plan.declare");
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            ("Host", "gateway.internal"),
            ("Origin", "https://app.example.com"),
            ("Content-Type", "application/json"),
        ];
        headers.extend(auth.as_deref().map(|a| ("Authorization", a)));
        send(&addr, "POST", "/v1/events", &headers, &event)
    };
    let (status, body) = ingest("ev-1", None);
    assert_eq!(
        (status, body),
        (
            401,
            json!({"reason": "unauthorized", "error": "ingest needs `Authorization: Bearer <ingest token>` (INTENTPROOF_INGEST_TOKEN on the SDK side)"})
        )
    );
    assert_eq!(ingest("ev-1", Some("wrong")).0, 401);
    assert_eq!(ingest("ev-1", Some("ingest-secret")).0, 202);
    // The daemon token (what `intentproof mcp` sends) is accepted too.
    assert_eq!(ingest("ev-2", Some(&daemon_token)).0, 202);

    let initialize = |bearer: Option<&str>| {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        headers.extend(auth.as_deref().map(|a| ("Authorization", a)));
        http_exchange(&addr, "POST", "/mcp/demo", &headers, INITIALIZE)
    };
    let (status, headers, body) = initialize(None);
    assert_eq!(status, 401, "{body}");
    assert!(headers.contains(&(
        "www-authenticate".into(),
        "Bearer realm=\"intentproof\"".into()
    )));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": "this MCP gateway needs `Authorization: Bearer <mcp token>` (mcp_token in the daemon config): add the header to the client's server entry", "data": {"reason": "unauthorized"}}})
    );
    assert_eq!(initialize(Some("ingest-secret")).0, 401);
    let (status, _, body) = initialize(Some("mcp-secret"));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn serve_refuses_mcp_servers_beyond_loopback_without_an_mcp_token() {
    let temp = tempfile::tempdir().unwrap();
    let config = temp.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "ingest_token = \"ingest-secret\"\ndata_dir = {:?}\n\n{}",
            temp.path().join("data").display().to_string(),
            demo_server()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config"]).arg(&config);
    clean_env(&mut cmd);
    // Refused before it binds or creates anything.
    cmd.env("INTENTPROOF_LISTEN", "0.0.0.0:0")
        .env_remove("INTENTPROOF_MCP_TOKEN");
    let output = common::run_bounded(
        cmd.stdin(Stdio::null()),
        "serve on 0.0.0.0 with an MCP server and no mcp_token",
        std::time::Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("listening on 0.0.0.0:0 (not loopback) with MCP servers configured needs an MCP token: set mcp_token in the config (or INTENTPROOF_MCP_TOKEN), or listen on 127.0.0.1"),
        "{stderr}"
    );
    assert!(
        !temp.path().join("data").exists(),
        "refused before the data dir"
    );
    // doctor names the same problem, with the same words.
    let mut doctor = Command::new(BIN);
    clean_env(&mut doctor)
        .args(["doctor", "--config"])
        .arg(&config)
        .env("INTENTPROOF_LISTEN", "0.0.0.0:0")
        .env_remove("INTENTPROOF_MCP_TOKEN");
    let output = common::run_bounded(
        doctor.stdin(Stdio::null()),
        "doctor on the same config",
        std::time::Duration::from_secs(60),
    );
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        report.lines().any(|l| l
            == "✗ config              listening on 0.0.0.0:0 (not loopback) with MCP servers configured needs an MCP token: set mcp_token in the config (or INTENTPROOF_MCP_TOKEN), or listen on 127.0.0.1"),
        "{report}"
    );
    // With the token it starts.
    cmd.env("INTENTPROOF_MCP_TOKEN", "mcp-secret")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _daemon = Stopped(cmd.spawn().unwrap());
    common::daemon_listen(&temp.path().join("data"));
}
