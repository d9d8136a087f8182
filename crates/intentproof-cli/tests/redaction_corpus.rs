//! No secret reaches disk, whichever way a call comes in (issue 18, item 1).
//!
//! A corpus of secret placements, each a unique marker that a rule of the
//! default redaction policy matches (a value under a credential key such as
//! `password`, or a `ghp_` GitHub token anywhere in a value), in every
//! caller-controlled field (intent, attributes, error name / message /
//! stack / data, inputs, output, HTTP headers and query strings, MCP
//! `_meta` the gateway keeps) and every shape (plain, nested 20 deep,
//! nested 12 deep, JSON text in a string, JSON text in JSON text), is sent
//! through envelope ingest (single and batch), the MCP gateway over stdio
//! (`intentproof mcp`) and over HTTP (`/mcp/<name>`), both to
//! `tests/redaction/echo_server.py` (which answers with what it got, so
//! the secrets come back in outputs and errors), and the HTTP API proxy
//! (to an upstream that echoes the body and adds a secret header). Then a
//! byte search of the whole test directory (journal, index, spool, the
//! daemon's and the gateway's logs, and the members of one exported bundle
//! per correlation) finds none of the markers, while a canary sent next to
//! them in the clear is found (so the search can see what is stored).
//! Representative events' redaction summaries are checked exactly.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

use common::{
    Agent, BIN, Stopped, clean_env, cli_json, command_server, http_exchange, run_bounded,
    start_gateway_daemon, workspace_root,
};

/// Sent in the clear next to the secrets: the search must find it.
const CANARY: &str = "canary-rdx-kept-in-the-clear";

/// The secret markers sent so far, each with where it was placed.
#[derive(Default)]
struct Corpus {
    markers: Vec<(String, String)>,
}

impl Corpus {
    /// A GitHub token (the `github-tokens` value rule) placed at `place`.
    fn ghp(&mut self, place: &str) -> String {
        let marker = format!("ghp_Rdx{:03}{}", self.markers.len(), "Corpus".repeat(5));
        self.markers.push((place.to_owned(), marker.clone()));
        marker
    }

    /// A value for a credential key (the `secret-keys` / `http-headers`
    /// key rules) placed at `place`.
    fn key(&mut self, place: &str) -> String {
        let marker = format!("kv-rdx-{:03}-credential-value", self.markers.len());
        self.markers.push((place.to_owned(), marker.clone()));
        marker
    }
}

/// `leaf` under `depth` levels of `{"a": ...}`.
fn nested(depth: usize, leaf: Value) -> Value {
    (0..depth).fold(leaf, |inner, _| json!({ "a": inner }))
}

/// `value` as JSON text.
fn text(value: Value) -> String {
    value.to_string()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn echo_server() -> Vec<String> {
    let script = workspace_root().join("tests/redaction/echo_server.py");
    vec![
        "python3".into(),
        script
            .canonicalize()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
    ]
}

/// An HTTP API on 127.0.0.1:0 that answers every request with its own body
/// (JSON) and an `x-leak` header holding `leak`. The thread ends with the
/// test process.
fn echo_api(leak: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some((_, body)) = common::read_http_request(&mut stream) else {
                continue;
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-leak: {leak}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    base
}

/// A camelCase envelope event in correlation `correlation`.
fn envelope_event(id: &str, correlation: &str, fields: Value) -> Value {
    let mut event = json!({
        "id": id, "correlationId": correlation, "action": "corpus.call",
        "status": "ok", "startedAt": "2026-01-01T00:00:00.000Z",
        "completedAt": "2026-01-01T00:00:00.001Z", "durationMs": 1,
    });
    for (k, v) in fields.as_object().unwrap() {
        event[k] = v.clone();
    }
    event
}

/// The stored events of `correlation` once there are `count`, in order.
fn events_of(data: &Path, correlation: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = cli_json(&["events", "--correlation", correlation], data);
        let events: Vec<Value> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["event"].clone())
            .collect();
        if events.len() >= count {
            assert_eq!(events.len(), count, "{correlation}: {events:#?}");
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "{correlation}: {} of {count} events stored",
            events.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The redaction summary's paths of the stored event whose `key` is `value`.
fn paths_where(events: &[Value], key: &str, value: &str) -> Vec<String> {
    let event = events
        .iter()
        .find(|e| e["attributes"][key] == value)
        .unwrap_or_else(|| panic!("no event with {key} = {value}: {events:#?}"));
    serde_json::from_value(event["redaction_summary"]["fields_redacted_paths"].clone()).unwrap()
}

fn paths_of(event: &Value) -> Vec<String> {
    serde_json::from_value(event["redaction_summary"]["fields_redacted_paths"].clone()).unwrap()
}

fn sorted(paths: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = paths.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Every regular file under `dir`; the members of `.proof.tar.zst` files
/// are returned instead of the compressed bytes.
fn searchable_files(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            searchable_files(&path, out);
        } else if kind.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            if path.to_string_lossy().ends_with(".proof.tar.zst") {
                let archive = intentproof_bundle::read_archive(
                    &bytes,
                    &intentproof_bundle::ReadLimits::default(),
                )
                .unwrap();
                for member in archive.members {
                    out.push((path.join(&member.path), member.data));
                }
            } else {
                out.push((path, bytes));
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn post_mcp(addr: &str, session: &str, body: &Value) -> (u16, Vec<(String, String)>, String) {
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2025-06-18"),
    ];
    if !session.is_empty() {
        headers.push(("Mcp-Session-Id", session));
    }
    http_exchange(addr, "POST", "/mcp/echo", &headers, &body.to_string())
}

/// The MCP calls both gateways get (after `initialize`), in correlation
/// `correlation`; each call's `jsonrpc.id` attribute names it.
fn mcp_calls(corpus: &mut Corpus, lane: &str, correlation: &str) -> Vec<Value> {
    let meta = |intent: Option<String>| {
        let mut m = json!({"intentproof/correlationId": correlation});
        if let Some(intent) = intent {
            m["intentproof/intent"] = json!(intent);
        }
        m
    };
    let call = |id: u64, name: &str, arguments: Value, meta: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": name, "arguments": arguments, "_meta": meta}})
    };
    vec![
        call(
            11,
            "echo",
            json!({
                "password": corpus.key(&format!("{lane} inputs.password (and echoed)")),
                "note": format!("see {}", corpus.ghp(&format!("{lane} inputs.note"))),
                "canary": CANARY,
            }),
            meta(Some(format!(
                "sync {}",
                corpus.ghp(&format!("{lane} _meta intent"))
            ))),
        ),
        call(
            12,
            "echo",
            json!({
                "deep": nested(20, json!({"password": corpus.key(&format!("{lane} 20 deep"))})),
                "deep12": nested(12, json!({"v": corpus.ghp(&format!("{lane} 12 deep"))})),
            }),
            meta(None),
        ),
        call(
            13,
            "echo",
            json!({"s": text(json!({
                "token": corpus.key(&format!("{lane} JSON text token")),
                "v": corpus.ghp(&format!("{lane} JSON text value")),
            }))}),
            meta(None),
        ),
        call(
            14,
            "echo",
            json!({"s": text(json!({"inner": text(json!({
                "secret": corpus.key(&format!("{lane} JSON text in JSON text")),
            }))}))}),
            meta(None),
        ),
        call(
            15,
            "fail",
            json!({
                "message": format!("denied {}", corpus.ghp(&format!("{lane} error.message"))),
                "data": {
                    "password": corpus.key(&format!("{lane} error data")),
                    "s": text(json!({"api_key": corpus.key(&format!("{lane} error data JSON text"))})),
                },
            }),
            meta(None),
        ),
    ]
}

/// `intentproof mcp` over the echo server on `data`, stderr to `log`.
fn start_stdio_gateway(data: &Path, log: &Path) -> (Stopped, Agent) {
    let mut cmd = Command::new(BIN);
    clean_env(&mut cmd);
    let mut child: Child = cmd
        .args(["mcp", "--name", "echo", "--data-dir"])
        .arg(data)
        .arg("--")
        .args(echo_server())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let agent = Agent::attach(&mut child);
    (Stopped(child), agent)
}

#[test]
fn no_secret_placement_reaches_disk_and_summaries_name_the_paths() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let data = dir.join("data");
    let mut corpus = Corpus::default();

    let leak = corpus.ghp("proxy response header x-leak");
    let upstream = echo_api(format!("leak {leak}"));
    let config = format!(
        "{}\n[[http.routes]]\nname = \"api\"\nupstream = \"{upstream}\"\n\
         record_request_headers = [\"x-note\", \"x-auth-token\", \"x-blob\"]\n\
         record_response_headers = [\"x-leak\"]\n",
        command_server("echo", &echo_server())
    );
    let (daemon, addr) = start_gateway_daemon(dir, &config);
    let token = std::fs::read_to_string(data.join("token"))
        .unwrap()
        .trim()
        .to_owned();

    // --- Envelope ingest, one event per shape. ---
    let corr = "redaction-envelope";
    let plain = envelope_event(
        "rdx-plain",
        corr,
        json!({
            "intent": format!("refund {}", corpus.ghp("intent plain")),
            "status": "error",
            "inputs": {
                "password": corpus.key("inputs.password"),
                "card": {"note": corpus.ghp("inputs.card.note")},
                "canary": CANARY,
            },
            "output": {"token": corpus.key("output.token"), "text": corpus.ghp("output.text")},
            "attributes": {
                "case": "plain",
                "password": corpus.key("attributes.password"),
                "note": format!("see {}", corpus.ghp("attributes.note")),
            },
            "error": {
                "name": format!("Err:{}", corpus.ghp("error.name")),
                "message": format!("failed {}", corpus.ghp("error.message")),
                "stack": format!("at x ({})", corpus.ghp("error.stack")),
            },
        }),
    );
    let deep = envelope_event(
        "rdx-deep",
        corr,
        json!({
            "intent": "deep",
            "inputs": nested(20, json!({"password": corpus.key("inputs 20 deep")})),
            "output": nested(20, json!({"v": corpus.ghp("output 20 deep")})),
            "attributes": {
                "case": "deep",
                "blob": text(nested(20, json!({"secret": corpus.key("attribute JSON text 20 deep")}))),
            },
            "status": "error",
            "error": {
                "name": "E",
                "message": text(nested(20, json!({"token": corpus.key("error.message JSON text 20 deep")}))),
            },
        }),
    );
    let json_text = envelope_event(
        "rdx-json-text",
        corr,
        json!({
            "intent": text(json!({"credentials": corpus.key("intent JSON text")})),
            "inputs": {"s": text(json!({
                "password": corpus.key("inputs JSON text key"),
                "v": corpus.ghp("inputs JSON text value"),
                "deep12": nested(12, json!({"password": corpus.key("inputs JSON text 12 deep")})),
            }))},
            "output": {"s": text(json!({"token": corpus.key("output JSON text")}))},
            "attributes": {
                "case": "json-text",
                "blob": text(json!({"secret": corpus.key("attributes JSON text")})),
            },
            "status": "error",
            "error": {
                "name": "E",
                "message": text(json!({"api_key": corpus.key("error.message JSON text")})),
                "stack": text(json!({"frames": [corpus.ghp("error.stack JSON text")]})),
            },
        }),
    );
    let twice = |inner: Value| text(json!({"inner": text(inner)}));
    let json_in_json = envelope_event(
        "rdx-json-in-json",
        corr,
        json!({
            "intent": twice(json!({"secret": corpus.key("intent JSON text in JSON text")})),
            "inputs": {"s": twice(json!({"password": corpus.key("inputs JSON text in JSON text")}))},
            "output": [twice(json!({"v": corpus.ghp("output JSON text in JSON text")}))],
            "attributes": {
                "case": "json-in-json",
                "blob": twice(json!({"token": corpus.key("attributes JSON text in JSON text")})),
            },
            "status": "error",
            "error": {
                "name": "E",
                "message": twice(json!({"passwd": corpus.key("error.message JSON text in JSON text")})),
                "stack": twice(json!({"v": corpus.ghp("error.stack JSON text in JSON text")})),
            },
        }),
    );
    // Error `data` could reach the signed form only as a verbatim v1
    // member, which an envelope may no longer carry (it would override
    // what the daemon seals): refused, so its secrets never reach disk.
    // (Error data from MCP servers is kept in outputs: the lanes below.)
    let error_data = envelope_event(
        "rdx-error-data",
        corr,
        json!({
            "intent": "error data",
            "attributes": {"case": "error-data"},
            "status": "error",
            "error": {"name": "E", "message": "m", "data": {"password": corpus.key("error.data (ignored member)")}},
            "v1Verbatim": {"error": {"name": "E", "message": "m", "data": {
                "password": corpus.key("error.data.password"),
                "why": corpus.ghp("error.data.why"),
            }}},
        }),
    );
    let post = |event: &Value| {
        http_exchange(
            &addr,
            "POST",
            "/v1/events",
            &[("Content-Type", "application/json")],
            &json!({"intentproof": "1", "event": event}).to_string(),
        )
    };
    for event in [&plain, &deep, &json_text, &json_in_json] {
        let (status, _, body) = post(event);
        assert_eq!(status, 202, "{body}");
    }
    let (status, _, body) = post(&error_data);
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"reason": "invalid_event", "error": "field `event.v1Verbatim` is not part of an envelope event: send each member as its own camelCase field (or send a signed intentproof.event.v1 event instead)"})
    );
    // Batch ingest: two envelope lines.
    let batch: Vec<String> = (0..2)
        .map(|i| {
            let event = envelope_event(
                &format!("rdx-batch-{i}"),
                "redaction-batch",
                json!({
                    "intent": format!("batch {}", corpus.ghp("batch intent")),
                    "inputs": {"s": text(json!({"password": corpus.key("batch inputs JSON text")}))},
                    "attributes": {"case": format!("batch-{i}")},
                }),
            );
            json!({"intentproof": "1", "event": event}).to_string()
        })
        .collect();
    let (status, _, body) = http_exchange(
        &addr,
        "POST",
        "/v1/events:batch",
        &[("Content-Type", "application/x-ndjson")],
        &(batch.join("\n") + "\n"),
    );
    assert!((200..300).contains(&status), "{status} {body}");

    // --- The MCP gateway over stdio. ---
    let (mut gateway, mut agent) = start_stdio_gateway(&data, &dir.join("stdio.log"));
    let client = format!(
        "agent {}",
        corpus.ghp("stdio clientInfo (kept as mcp.client.name)")
    );
    agent.request(
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": client, "version": "1"}}),
    );
    writeln!(
        agent.stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    for call in mcp_calls(&mut corpus, "stdio", "redaction-stdio") {
        let id = call["id"].as_u64().unwrap();
        let reply = agent.request(id, "tools/call", call["params"].clone());
        assert!(
            reply.get("result").is_some() || reply.get("error").is_some(),
            "{reply}"
        );
    }
    // The session ends; the gateway delivers what it spooled, then exits.
    drop(agent);
    let deadline = Instant::now() + Duration::from_secs(60);
    while gateway.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "intentproof mcp did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }

    // --- The MCP gateway over HTTP (a session-based revision). ---
    let client = format!(
        "agent {}",
        corpus.ghp("http clientInfo (kept as mcp.client.name)")
    );
    let (status, headers, body) = post_mcp(
        &addr,
        "",
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": client, "version": "1"}}}),
    );
    assert_eq!(status, 200, "{body}");
    let session = headers
        .iter()
        .find(|(n, _)| n == "mcp-session-id")
        .map(|(_, v)| v.clone())
        .expect("a session id");
    let (status, _, body) = post_mcp(
        &addr,
        &session,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    assert_eq!(status, 202, "{body}");
    for call in mcp_calls(&mut corpus, "http", "redaction-http") {
        let (status, _, body) = post_mcp(&addr, &session, &call);
        assert_eq!(status, 200, "{body}");
        // The upstream's own bytes (Python spells `"id": 11`).
        assert!(body.contains(&format!("\"id\": {}", call["id"])), "{body}");
    }

    // --- The HTTP API proxy. ---
    let query = format!(
        "api_key={}&q={}&data={}",
        corpus.key("query api_key"),
        corpus.ghp("query q"),
        percent_encode(&text(json!({"password": corpus.key("query JSON text")}))),
    );
    let path = format!(
        "/proxy/api/v1/things/{}?{query}",
        corpus.ghp("proxy path (and action)")
    );
    let intent = format!("proxy {}", corpus.ghp("proxy intent header"));
    let note = format!("see {}", corpus.ghp("request header x-note"));
    let auth = corpus.key("request header x-auth-token");
    let blob = text(json!({"secret": corpus.key("request header x-blob JSON text")}));
    let body = json!({
        "password": corpus.key("proxy body password (and echoed)"),
        "s": text(json!({"token": corpus.key("proxy body JSON text (and echoed)")})),
        "deep": nested(20, json!({"password": corpus.key("proxy body 20 deep")})),
        "canary": CANARY,
    });
    let (status, _, answer) = http_exchange(
        &addr,
        "POST",
        &path,
        &[
            ("X-IntentProof-Token", &token),
            ("X-IntentProof-Intent", &intent),
            ("X-IntentProof-Correlation-Id", "redaction-proxy"),
            ("Content-Type", "application/json"),
            ("x-note", &note),
            ("x-auth-token", &auth),
            ("x-blob", &blob),
        ],
        &body.to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        body.to_string(),
        "the agent gets the upstream's bytes"
    );

    assert!(
        corpus.markers.len() >= 40,
        "{} placements",
        corpus.markers.len()
    );

    // --- What was stored (read before the daemon stops). ---
    let envelope = events_of(&data, corr, 4);
    let batch = events_of(&data, "redaction-batch", 2);
    let lanes = [
        ("stdio", events_of(&data, "redaction-stdio", 5)),
        ("http", events_of(&data, "redaction-http", 5)),
    ];
    let proxy = events_of(&data, "redaction-proxy", 1);

    // --- One exported bundle per correlation, then the daemon stops. ---
    let bundles = dir.join("bundles");
    std::fs::create_dir_all(&bundles).unwrap();
    for correlation in [
        corr,
        "redaction-batch",
        "redaction-stdio",
        "redaction-http",
        "redaction-proxy",
    ] {
        let out = bundles.join(format!("{correlation}.proof.tar.zst"));
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd)
            .args(["export", correlation, "--output"])
            .arg(&out)
            .arg("--data-dir")
            .arg(&data);
        let done = run_bounded(&mut cmd, "intentproof export", Duration::from_secs(120));
        assert!(
            done.status.success(),
            "export {correlation}: {}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    drop(daemon);

    // --- The byte search. ---
    let mut files = Vec::new();
    searchable_files(dir, &mut files);
    let leaks: Vec<String> = corpus
        .markers
        .iter()
        .flat_map(|(place, marker)| {
            files
                .iter()
                .filter(|(_, bytes)| contains(bytes, marker))
                .map(move |(path, _)| format!("{place}: {marker} in {}", path.display()))
        })
        .collect();
    assert_eq!(leaks, Vec::<String>::new());
    let seen = |part: &str| {
        files
            .iter()
            .any(|(path, bytes)| path.to_string_lossy().contains(part) && contains(bytes, CANARY))
    };
    assert!(seen("/journal/"), "the canary is not in the journal");
    for correlation in [corr, "redaction-stdio", "redaction-http", "redaction-proxy"] {
        assert!(
            seen(&format!("{correlation}.proof.tar.zst/")),
            "the canary is not in the {correlation} bundle"
        );
    }

    // --- What the summaries say. ---
    let by_id = |id: &str| {
        envelope
            .iter()
            .find(|e| e["event_id"] == id)
            .unwrap_or_else(|| panic!("{id}: {envelope:#?}"))
            .clone()
    };
    assert_eq!(
        paths_of(&by_id("rdx-plain")),
        sorted(&[
            "$.attributes.note",
            "$.attributes.password",
            "$.error.message",
            "$.error.name",
            "$.error.stack",
            "$.inputs.card.note",
            "$.inputs.password",
            "$.intent",
            "$.output.text",
            "$.output.token",
        ])
    );
    // Cut by max_depth (16), not redacted: no path, the marker in the data.
    let deep_event = by_id("rdx-deep");
    assert_eq!(paths_of(&deep_event), Vec::<String>::new());
    let mut at16 = &deep_event["inputs"];
    for _ in 0..16 {
        at16 = &at16["a"];
    }
    assert_eq!(at16, "[MaxDepth]");
    assert_eq!(
        paths_of(&by_id("rdx-json-text")),
        sorted(&[
            "$.attributes.blob<json>.secret",
            "$.error.message<json>.api_key",
            "$.error.stack<json>.frames[0]",
            "$.inputs.s<json>.deep12.a.a.a.a.a.a.a.a.a.a.a.a.password",
            "$.inputs.s<json>.password",
            "$.inputs.s<json>.v",
            "$.intent<json>.credentials",
            "$.output.s<json>.token",
        ])
    );
    assert_eq!(
        by_id("rdx-json-text")["intent"],
        r#"{"credentials":"[REDACTED:secret-keys]"}"#
    );
    assert_eq!(
        paths_of(&by_id("rdx-json-in-json")),
        sorted(&[
            "$.attributes.blob<json>.inner<json>.token",
            "$.error.message<json>.inner<json>.passwd",
            "$.error.stack<json>.inner<json>.v",
            "$.inputs.s<json>.inner<json>.password",
            "$.intent<json>.inner<json>.secret",
            "$.output[0]<json>.inner<json>.v",
        ])
    );
    for event in &batch {
        assert_eq!(
            paths_of(event),
            sorted(&["$.inputs.s<json>.password", "$.intent"])
        );
    }
    for (lane, events) in &lanes {
        assert_eq!(
            paths_where(events, "jsonrpc.id", "11"),
            sorted(&[
                "$.attributes['mcp.client.name']",
                "$.inputs.note",
                "$.inputs.password",
                "$.intent",
                "$.output.content[0].text<json>.note",
                "$.output.content[0].text<json>.password",
                "$.output.structuredContent.note",
                "$.output.structuredContent.password",
            ]),
            "{lane}"
        );
        assert_eq!(
            paths_where(events, "jsonrpc.id", "14"),
            sorted(&[
                "$.attributes['mcp.client.name']",
                "$.inputs.s<json>.inner<json>.secret",
                "$.output.content[0].text<json>.s<json>.inner<json>.secret",
                "$.output.structuredContent.s<json>.inner<json>.secret",
            ]),
            "{lane}"
        );
        assert_eq!(
            paths_where(events, "jsonrpc.id", "15"),
            sorted(&[
                "$.attributes['mcp.client.name']",
                "$.error.message",
                "$.inputs.data.password",
                "$.inputs.data.s<json>.api_key",
                "$.inputs.message",
                "$.output.error.data.password",
                "$.output.error.data.s<json>.api_key",
            ]),
            "{lane}"
        );
    }
    assert_eq!(
        paths_of(&proxy[0]),
        sorted(&[
            "$.action",
            "$.inputs.body.password",
            "$.inputs.body.s<json>.token",
            "$.inputs.headers['x-auth-token']",
            "$.inputs.headers['x-blob']<json>.secret",
            "$.inputs.headers['x-note']",
            "$.inputs.path",
            "$.inputs.query.api_key",
            "$.inputs.query.data<json>.password",
            "$.inputs.query.q",
            "$.intent",
            "$.output.body.password",
            "$.output.body.s<json>.token",
            "$.output.headers['x-leak']",
        ])
    );
}
