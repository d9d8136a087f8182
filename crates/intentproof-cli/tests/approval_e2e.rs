//! Guard mode, human approval, end to end. A stdio gateway (`intentproof
//! mcp --require-approval 'mcp.payments.refund_payment:amount_cents >
//! 100'`) in front of the built-in payments server holds a large refund;
//! the operator decides in the TUI (under tmux) and the CLI:
//! - the held call appears in the TUI's Approvals view with its intent and
//!   arguments; `y` lets it through and the agent gets the server's result;
//!   a client that asked for progress hears that its call waits (over
//!   stdio, and over HTTP with the official Python client);
//! - the same refund with other arguments is held anew (the first approval
//!   does not cover it); `n` + a reason denies it and the agent gets the
//!   documented error with the reason;
//! - a refund nobody decides is refused when it expires;
//! - with no daemon to ask, a call needing approval is refused at once
//!   (fail closed), saying so;
//! - requests and decisions are signed events in the call's chain, the
//!   exported bundle verifies and `verify explain` names who decided,
//!   when, and the arguments digest.

use std::io::{BufRead, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

mod common;

use common::{Agent, BIN, Tmux, cli_json, start_daemon, start_gateway};

const RULE: &str = "mcp.payments.refund_payment:amount_cents > 100";

/// Sends a request and returns its response and every other message the
/// gateway wrote before it (notifications).
fn request_seeing(agent: &mut Agent, id: u64, method: &str, params: Value) -> (Value, Vec<Value>) {
    let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    writeln!(agent.stdin, "{message}").unwrap();
    agent.stdin.flush().unwrap();
    let mut others = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            agent.stdout.read_line(&mut line).unwrap() > 0,
            "gateway closed stdout"
        );
        let reply: Value = serde_json::from_str(&line).unwrap();
        if reply["id"] == json!(id) && reply.get("method").is_none() {
            return (reply, others);
        }
        others.push(reply);
    }
}

/// `tools/call` params of a refund; with a progress token `p<id>`.
fn refund(id: u64, cents: i64, progress: bool) -> Value {
    let mut params = json!({"name": "refund_payment", "arguments": {"order_id": "ORD-1042", "amount_cents": cents}});
    if progress {
        params["_meta"] = json!({"progressToken": format!("p{id}")});
    }
    params
}

fn digest(arguments: &Value) -> String {
    let hex: String = Sha256::digest(serde_json::to_vec(arguments).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

#[test]
fn a_held_call_is_approved_or_denied_in_the_tui() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let _daemon = start_daemon(&data);
    let (gateway, mut agent) = start_gateway(
        &data,
        "payments",
        &["--require-approval", RULE, "--approval-timeout", "120"],
    );
    agent.request(
        1,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "approval-e2e", "version": "1"}}),
    );
    // A small refund is not held.
    let small = agent.request(2, "tools/call", refund(2, 100, false));
    assert_eq!(
        small["result"]["structuredContent"]["status"], "succeeded",
        "{small:#}"
    );

    let command = format!("{BIN} tui --data-dir '{}' --poll-ms 200", data.display());
    let tmux = Tmux::start(&command, 120, 30);
    tmux.wait_for("the TUI", |s| s.contains("2 Findings"));
    tmux.keys(&["3"]);
    tmux.wait_for("the empty Approvals view", |s| {
        s.contains("[3 Approvals 0]") && s.contains("no call waits for approval")
    });

    // The large refund waits for a person; the agent hears so at once.
    let (sender, answers) = std::sync::mpsc::channel();
    let agent_thread = std::thread::spawn(move || {
        let first = request_seeing(&mut agent, 3, "tools/call", refund(3, 150, true));
        sender.send(first).unwrap();
        let second = request_seeing(&mut agent, 4, "tools/call", refund(4, 250, false));
        sender.send(second).unwrap();
        agent
    });
    let screen = tmux.wait_for("the held call in the Approvals view", |s| {
        s.contains("3 Approvals 1") && s.contains("⏸ pending")
    });
    assert!(screen.contains("mcp.payments.refund_payment"), "{screen}");
    assert!(
        screen.contains(r#"{"amount_cents":150,"order_id":"ORD-1042"}"#),
        "{screen}"
    );
    assert!(
        screen.contains("rule mcp.payments.refund_payment when amount_cents > 100"),
        "{screen}"
    );
    assert!(screen.contains("agent approval-e2e"), "{screen}");
    tmux.keys(&["y"]);
    let (approved, notices) = answers.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(
        approved["result"]["structuredContent"],
        json!({"refund_id": "re_ord_1042", "status": "succeeded", "amount_cents": 150}),
        "{approved:#}"
    );
    let notice = notices
        .iter()
        .find(|n| n["method"] == "notifications/progress")
        .unwrap_or_else(|| panic!("no progress notification: {notices:#?}"));
    assert_eq!(notice["params"]["progressToken"], "p3");
    assert_eq!(notice["params"]["progress"], 1);
    assert!(
        notice["params"]["message"]
            .as_str()
            .unwrap()
            .starts_with("waiting for a person to approve this call (approval "),
        "{notice:#}"
    );
    tmux.wait_for("the approval shown as approved", |s| {
        s.contains("✓ approved")
    });

    // Other arguments: not covered by the first approval; denied.
    let screen = tmux.wait_for("the second held call", |s| {
        s.contains("3 Approvals 1") && s.contains(r#""amount_cents":250"#)
    });
    assert!(screen.contains("⏸ pending"), "{screen}");
    // The pending one is listed first.
    tmux.keys(&["g", "n"]);
    tmux.literal("not this order");
    tmux.keys(&["Enter"]);
    let (denied, _) = answers.recv_timeout(Duration::from_secs(60)).unwrap();
    let rows = cli_json(&["approvals"], &data);
    let second_id = rows["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["arguments"]["amount_cents"] == 250)
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .unwrap();
    assert_eq!(
        denied["error"],
        json!({"code": -32010,
               "message": format!("mcp.payments.refund_payment was refused: approval {second_id} was denied by owner: not this order"),
               "data": {"reason": "approval.denied", "approval_id": second_id}})
    );
    tmux.wait_for("the denial", |s| s.contains("⊘ denied"));
    let agent = agent_thread.join().unwrap();
    drop(agent);
    drop(gateway);

    // The record: requested and decided events in the call's chain, the
    // approved call with who let it through, the denied one refused.
    let requested = common::recorded_in_time(&data, "intentproof.approval.requested", 2);
    let decided = common::recorded_in_time(&data, "intentproof.approval.decided", 2);
    let first_args = json!({"order_id": "ORD-1042", "amount_cents": 150});
    assert_eq!(
        requested[0]["inputs"]["arguments_digest"],
        digest(&first_args)
    );
    assert_eq!(
        requested[0]["inputs"]["rule"],
        "mcp.payments.refund_payment when amount_cents > 100"
    );
    assert_eq!(decided[0]["output"]["decision"], "approved");
    assert_eq!(decided[0]["output"]["by"], "owner");
    assert_eq!(
        decided[1]["output"],
        json!({"decision": "denied", "by": "owner", "reason": "not this order", "at": decided[1]["output"]["at"]})
    );
    let calls = common::recorded_in_time(&data, "mcp.payments.refund_payment", 3);
    assert_eq!(calls[1]["status"], "ok");
    assert_eq!(calls[1]["attributes"]["intentproof.approval.by"], "owner");
    assert_eq!(
        calls[1]["attributes"]["intentproof.guard.decision"],
        "allowed"
    );
    assert_eq!(calls[2]["status"], "error");
    assert_eq!(calls[2]["error"]["name"], "RefusedByPolicy");
    assert_eq!(
        calls[2]["attributes"]["intentproof.guard.rule"],
        "approval.denied"
    );
    let correlation = calls[1]["correlation_id"].as_str().unwrap().to_owned();
    assert_eq!(requested[0]["correlation_id"], correlation.as_str());

    // The bundle carries them, verifies, and explain names the decisions.
    let (code, text) = common::export_and_verify(&data, &correlation, true);
    assert_eq!(code, Some(0), "{text}");
    let approved_at = decided[0]["output"]["at"].as_str().unwrap();
    let approval = decided[0]["inputs"]["approval_id"].as_str().unwrap();
    let line = format!(
        "      approved by owner at {approved_at}, arguments digest {} (approval {approval})",
        digest(&first_args)
    );
    assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("      denied by owner at ") && l.ends_with(": not this order")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == format!("      let through by owner (approval {approval})")),
        "{text}"
    );
}

#[test]
fn a_call_nobody_decides_expires_and_one_with_no_daemon_is_refused_at_once() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let daemon = start_daemon(&data);
    let (gateway, mut agent) = start_gateway(
        &data,
        "payments",
        &["--require-approval", RULE, "--approval-timeout", "1"],
    );
    agent.request(1, "initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}));
    let expired = agent.request(2, "tools/call", refund(2, 500, false));
    let message = expired["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("mcp.payments.refund_payment was refused: nobody decided approval ")
            && message.contains(" before it expired at "),
        "{expired:#}"
    );
    assert_eq!(expired["error"]["data"]["reason"], "approval.expired");
    let rows = cli_json(&["approvals"], &data);
    assert_eq!(rows["approvals"][0]["state"], "expired", "{rows:#}");
    drop(agent);
    drop(gateway);

    // No daemon: refused at once, saying why.
    drop(daemon);
    let (gateway, mut agent) = start_gateway(&data, "payments", &["--require-approval", RULE]);
    agent.request(1, "initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}));
    let refused = agent.request(2, "tools/call", refund(2, 500, false));
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("mcp.payments.refund_payment needs a person's approval and none could be asked (the daemon at http://")
            && message.ends_with("; it was refused (fail closed)"),
        "{refused:#}"
    );
    assert_eq!(refused["error"]["data"]["reason"], "approval.unavailable");
    drop(agent);
    drop(gateway);
}

#[test]
fn an_http_session_holds_a_call_until_a_named_approver_decides() {
    let python = common::required_env("INTENTPROOF_TEST_PYTHON");
    let temp = tempfile::tempdir().unwrap();
    let ops_token = "ops-token-0123456789abcdef";
    let table = common::command_server("payments", &[BIN.to_owned(), "demo-server".to_owned()])
        + &format!(
            "\n[approvals]\ntimeout_secs = 120\napprovers = {{ ops = {ops_token:?} }}\n\n[[approvals.rules]]\naction = \"mcp.payments.refund_*\"\nwhen = [\"amount_cents > 100\"]\n"
        );
    let (_daemon, listen) = common::start_gateway_daemon(temp.path(), &table);
    let data = temp.path().join("data");
    let script = temp.path().join("script.json");
    std::fs::write(
        &script,
        json!({"steps": [{"call": "refund_payment", "arguments": {"order_id": "ORD-9", "amount_cents": 900}, "progress": true}]}).to_string(),
    )
    .unwrap();
    let url = format!("http://{listen}/mcp/payments");
    let session = std::thread::spawn(move || {
        common::python_client(
            &python,
            "tool_session.py",
            &[script.to_str().unwrap(), "http", &url],
        )
    });
    // The operator sees it pending and approves it under their name.
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let rows = cli_json(&["approvals"], &data);
        if let Some(row) = rows["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["state"] == "pending")
        {
            assert_eq!(row["action"], "mcp.payments.refund_payment");
            assert_eq!(
                row["arguments"],
                json!({"order_id": "ORD-9", "amount_cents": 900})
            );
            break row["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "{rows:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    // The daemon token cannot be mistaken for ops: the name comes from the token.
    let approved = Command::new(BIN)
        .args([
            "approvals",
            "approve",
            &id,
            "--reason",
            "checked with finance",
            "--json",
            "--data-dir",
        ])
        .arg(&data)
        .env("INTENTPROOF_TOKEN", ops_token)
        .output()
        .unwrap();
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );
    let row: Value = serde_json::from_slice(&approved.stdout).unwrap();
    assert_eq!(
        (row["state"].as_str(), row["decided_by"].as_str()),
        (Some("approved"), Some("ops"))
    );
    let again = Command::new(BIN)
        .args([
            "approvals",
            "deny",
            &id,
            "--reason",
            "too late",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains(&format!("approval {id} is approved already (by ops)"))
    );
    let transcript: Value = serde_json::from_str(&session.join().unwrap()).unwrap();
    let call = &transcript["steps"][1];
    assert_eq!(call["ok"], true, "{transcript:#}");
    assert_eq!(call["result"]["structuredContent"]["amount_cents"], 900);
    // The client asked for progress: it heard the call wait.
    let notices = call["progress"].as_array().unwrap();
    assert!(!notices.is_empty(), "{transcript:#}");
    assert_eq!(notices[0]["progress"], 1.0);
    assert!(
        notices[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("waiting for a person to approve this call (approval "),
        "{transcript:#}"
    );
    let decided = common::recorded_in_time(&data, "intentproof.approval.decided", 1);
    assert_eq!(decided[0]["output"]["by"], "ops");
    assert_eq!(decided[0]["output"]["reason"], "checked with finance");
}

#[test]
fn a_held_call_whose_client_goes_away_is_refused_and_recorded() {
    use std::io::Read;
    let temp = tempfile::tempdir().unwrap();
    let table = common::command_server("payments", &[BIN.to_owned(), "demo-server".to_owned()])
        + "\n[[approvals.rules]]\naction = \"mcp.payments.refund_payment\"\n";
    let (_daemon, listen) = common::start_gateway_daemon(temp.path(), &table);
    let data = temp.path().join("data");
    let post = |body: Value, session: Option<&str>| -> std::net::TcpStream {
        let body = body.to_string();
        let mut stream = std::net::TcpStream::connect(&listen).unwrap();
        let session = session.map_or_else(String::new, |s| format!("Mcp-Session-Id: {s}\r\n"));
        write!(
            stream,
            "POST /mcp/payments HTTP/1.1\r\nHost: {listen}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n{session}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        stream
    };
    let mut init = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "goes-away", "version": "1"}}}),
        None,
    );
    let mut answer = String::new();
    init.read_to_string(&mut answer).unwrap();
    let session = answer
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id: "))
        .unwrap_or_else(|| panic!("{answer}"))
        .trim()
        .to_owned();
    drop(post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&session),
    ));
    let call = post(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "refund_payment", "arguments": {"order_id": "ORD-5", "amount_cents": 10}}}),
        Some(&session),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while cli_json(&["approvals"], &data)["approvals"][0]["state"] != "pending" {
        assert!(Instant::now() < deadline, "never held");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The client goes away: the call is refused, recorded, and not pending.
    drop(call);
    let refused = common::recorded_in_time(&data, "mcp.payments.refund_payment", 1);
    assert_eq!(
        refused[0]["attributes"]["intentproof.guard.rule"],
        "approval.unavailable"
    );
    assert_eq!(
        refused[0]["error"]["message"],
        "mcp.payments.refund_payment needs a person's approval and none could be asked (the client's request ended while the call waited); it was refused (fail closed)"
    );
    assert_eq!(
        cli_json(&["approvals"], &data)["approvals"][0]["state"],
        "abandoned"
    );
}
