//! `intentproof findings` prints every finding kind by its name with the
//! action it is about: a verification policy's failed rule is a `POLICY
//! VIOLATION` row whose ACTION is the action the rule names (not the rule
//! id), and whose message names the policy and the rule.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

mod common;

use common::{BIN, cli_json, daemon_listen, http_exchange, start_daemon_with, workspace_root};

#[test]
fn a_failed_policy_rule_prints_as_policy_violation_with_its_action() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let config = temp.path().join("daemon.toml");
    let policy = workspace_root().join("policies/verification/refund-with-receipt.yaml");
    std::fs::write(
        &config,
        format!(
            "plan_idle_timeout_secs = 1\nverification_policies = [{:?}]\n",
            policy.display().to_string()
        ),
    )
    .unwrap();
    let _daemon = start_daemon_with(&dir, &["--config", config.to_str().unwrap()], &[]);
    let listen = daemon_listen(&dir);
    // A refund and no receipt: rule receipt-sent fails.
    let envelope = json!({"intentproof": "1", "event": {
        "id": "refund-1", "correlationId": "order-1042", "intent": "Refund order 1042",
        "action": "stripe.refund.create", "inputs": [], "status": "ok", "output": {"ok": true},
        "startedAt": "2026-01-01T00:00:00.000Z", "completedAt": "2026-01-01T00:00:00.001Z",
        "durationMs": 1}});
    let (status, _, body) = http_exchange(
        &listen,
        "POST",
        "/v1/events",
        &[("Content-Type", "application/json")],
        &envelope.to_string(),
    );
    assert_eq!(status, 202, "{body}");

    // Due once the flow has been idle for plan_idle_timeout_secs.
    let deadline = Instant::now() + Duration::from_secs(60);
    let findings = loop {
        let body = cli_json(&["findings"], &dir);
        if !body["findings"].as_array().unwrap().is_empty() {
            break body["findings"].clone();
        }
        assert!(Instant::now() < deadline, "no finding: {body:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let message = "policy samples.refund-with-receipt rule receipt-sent: `email.customer.refund_receipt` did not occur (at least 1 required).";
    assert_eq!(
        findings,
        json!([{
            "kind": "policy_violation",
            "plan_id": null,
            "intent": "samples.refund-with-receipt",
            "correlation_id": "order-1042",
            "step_index": null,
            "action": "email.customer.refund_receipt",
            "event_ids": findings[0]["event_ids"],
            "message": message,
            "at": findings[0]["at"],
        }])
    );
    let out = Command::new(BIN)
        .args(["findings", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let at = findings[0]["at"].as_str().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{:<24} {:<18} {:<28} {:<36} MESSAGE\n{at:<24} {:<18} {:<28} {:<36} {message}\n1 finding\n",
            "AT",
            "FLAG",
            "CORRELATION",
            "ACTION",
            "POLICY VIOLATION",
            "order-1042",
            "email.customer.refund_receipt"
        )
    );
}
