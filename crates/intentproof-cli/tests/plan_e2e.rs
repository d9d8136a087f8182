//! Issue scenario end to end through the MCP gateway: an agent declares
//! "refund order ORD-1042 and email the receipt" with two steps, calls only
//! the refund (with a card number in its arguments) plus one call outside
//! the plan. While the session lasts, `intentproof findings` says the plan
//! is open and when it closes; when the agent leaves, the plan closes with
//! its session and `intentproof findings` names the missing step and the
//! unplanned call at once (not after the 300 s plan idle timeout); the card
//! number is stored masked.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

mod common;

use common::{BIN, cli_json, start_daemon, start_gateway};

#[test]
fn a_plan_with_a_missing_step_is_flagged_and_the_card_is_masked() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let _daemon = start_daemon(dir);

    let (mut gateway, mut agent) = start_gateway(dir, "payments", &[]);
    agent.request(1, "initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e-agent", "version": "1"}}));
    let tools = agent.request(2, "tools/list", json!({}));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "refund_payment",
            "send_receipt_email",
            "lookup_order",
            "intentproof_declare_plan"
        ]
    );

    let declared = agent.call(
        3,
        "intentproof_declare_plan",
        json!({
            "intent": "refund order ORD-1042 and email the receipt",
            "steps": [
                {"tool": "refund_payment", "purpose": "Refund the customer's card"},
                {"tool": "send_receipt_email", "purpose": "Email the customer the refund receipt"}
            ]
        }),
    );
    let plan_id = declared["result"]["structuredContent"]["plan_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refund = agent.call(
        4,
        "refund_payment",
        json!({"order_id": "ORD-1042", "amount_cents": 4999, "card_number": "4242 4242 4242 4242"}),
    );
    assert_eq!(refund["result"]["structuredContent"]["status"], "succeeded");
    let lookup = agent.call(5, "lookup_order", json!({"order_id": "ORD-1042"}));
    assert!(lookup["result"].is_object());

    // While the session lasts the plan is open: never shown as failed, and
    // `findings` says when it will close. (The calls are recorded after
    // they are answered: wait for both.)
    let deadline = Instant::now() + Duration::from_secs(60);
    let plans = loop {
        let plans = cli_json(&["plans"], dir);
        if plans["plans"][0]["calls"] == 2 {
            break plans;
        }
        assert!(Instant::now() < deadline, "{plans:#}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(plans["plans"][0]["state"], "open");
    let closes_at = plans["plans"][0]["closes_at"].as_str().unwrap().to_owned();
    assert_eq!(
        cli_json(&["findings"], dir)["findings"],
        json!([]),
        "an open plan is never shown as failed"
    );
    let table = Command::new(BIN)
        .args(["findings", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&table.stdout),
        format!(
            "{:<24} {:<18} {:<28} {:<36} MESSAGE\n0 findings\n\
             1 plan still open, not evaluated yet: a plan closes when the MCP session that declared it ends, when it is idle until the time below, or now with `intentproof plans --close <PLAN>`\n\
             \x20 {plan_id}  closes by {closes_at}  refund order ORD-1042 and email the receipt\n",
            "AT", "FLAG", "CORRELATION", "ACTION"
        )
    );

    // The agent leaves: the plan closes with its session, and its findings
    // are due at once.
    drop(agent);
    let status = gateway.0.wait().unwrap();
    assert!(status.success(), "gateway exited with {status}");
    let left = Instant::now();
    let plans = loop {
        let plans = cli_json(&["plans"], dir);
        if plans["plans"][0]["state"] == "closed" {
            break plans;
        }
        assert!(Instant::now() < deadline, "{plans:#}");
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!(
        "the plan was closed {:?} after the gateway exited",
        left.elapsed()
    );
    assert_eq!(plans["plans"][0]["closed_by"], "session_ended");
    assert_eq!(plans["plans"][0]["closes_at"], json!(null));

    let findings = cli_json(&["findings"], dir)["findings"]
        .as_array()
        .unwrap()
        .clone();
    let summary: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "incomplete_intent".to_owned(),
                "mcp.payments.send_receipt_email".to_owned()
            ),
            (
                "unplanned_call".to_owned(),
                "mcp.payments.lookup_order".to_owned()
            ),
        ]
    );
    let missing = findings[0]["message"].as_str().unwrap();
    assert!(
        missing.contains("send_receipt_email")
            && missing.contains("Email the customer the refund receipt"),
        "{missing}"
    );
    let table = Command::new(BIN)
        .args(["findings", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("INCOMPLETE INTENT") && table.contains("UNPLANNED CALL"),
        "{table}"
    );

    // The refund's event carries the plan's intent and a masked card.
    let correlation = plans["plans"][0]["correlation_id"].as_str().unwrap();
    let events = cli_json(&["events", "--correlation", correlation], dir);
    let refund_event = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["event"])
        .find(|e| e["action"] == "mcp.payments.refund_payment")
        .unwrap()
        .clone();
    assert_eq!(refund_event["intent"], "Refund the customer's card");
    let card = refund_event["inputs"]["card_number"].as_str().unwrap();
    assert!(
        card.ends_with("4242") && !card.contains("4242 4242"),
        "card stored as {card:?}"
    );
    assert!(
        refund_event["redaction_summary"]["fields_redacted_paths"]
            .as_array()
            .unwrap()
            .contains(&json!("$.inputs.card_number")),
        "{refund_event}"
    );
    // And no byte of the journal holds the number.
    for entry in std::fs::read_dir(dir.join("journal")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "seg") {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("4242 4242 4242 4242") && !text.contains("4242424242424242"),
                "card number in {}",
                path.display()
            );
        }
    }
}
