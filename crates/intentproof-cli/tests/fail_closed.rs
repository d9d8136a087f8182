//! `intentproof mcp --fail-closed`: a call is made only after a "started"
//! record of it is on disk; when that cannot be written the agent gets a
//! clear JSON-RPC error and the call is not made.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

mod common;

use common::{BIN, Stopped};

/// Runs a fail-closed gateway over the demo server, makes one
/// `lookup_order` call, and returns the agent's answer to it.
fn one_call(dir: &Path) -> Value {
    let mut gateway = Stopped(
        Command::new(BIN)
            .args([
                "mcp",
                "--name",
                "payments",
                "--fail-closed",
                "--no-autostart",
                "--data-dir",
            ])
            .arg(dir)
            .args(["--", BIN, "demo-server"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = gateway.0.stdin.take().unwrap();
    let mut stdout = BufReader::new(gateway.0.stdout.take().unwrap());
    let mut request = |id: u64, method: &str, params: Value| -> Value {
        writeln!(
            stdin,
            "{}",
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        )
        .unwrap();
        stdin.flush().unwrap();
        loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "gateway closed stdout"
            );
            let reply: Value = serde_json::from_str(&line).unwrap();
            if reply["id"] == json!(id) {
                return reply;
            }
        }
    };
    request(
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
    );
    let listed = request(2, "tools/list", json!({}));
    assert!(
        listed["result"]["tools"].is_array(),
        "listing is not a recorded call: {listed}"
    );
    let answer = request(
        3,
        "tools/call",
        json!({"name": "lookup_order", "arguments": {"order_id": "ORD-9"}}),
    );
    drop(stdin);
    let _ = gateway.0.wait();
    answer
}

#[test]
fn a_call_is_made_after_its_started_record_is_durable() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let answer = one_call(dir);
    assert_eq!(
        answer["result"]["structuredContent"]["status"], "captured",
        "{answer}"
    );
    // No daemon ran: both records wait in the spool, marker first.
    let spooled: Vec<Value> = std::fs::read_dir(dir.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let actions: Vec<&str> = spooled
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["intentproof.call.started", "mcp.payments.lookup_order"]
    );
    assert_eq!(spooled[0]["inputs"]["action"], "mcp.payments.lookup_order");
}

#[test]
fn a_call_that_cannot_be_recorded_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    // A file where the spool directory must go: nothing can be written.
    std::fs::write(dir.join("spool"), b"not a directory").unwrap();
    let answer = one_call(dir);
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("IntentProof could not record this call durably (the spool could not be opened), so it was not made (fail-closed mode)"),
        "{message}"
    );
    assert!(answer.get("result").is_none());
}
