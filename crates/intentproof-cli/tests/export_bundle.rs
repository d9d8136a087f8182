//! `intentproof export`: a real gateway session (a declared two-step plan,
//! one step called) exported as a `full` proof bundle. Two exports are
//! byte-identical, `intentproof verify` passes the bundle and fails it once
//! one byte is flipped; other profiles are refused (400) and an unknown
//! correlation is not found (404).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

mod common;

use common::{BIN, start_daemon, start_gateway};

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn export(correlation: &str, out: &Path, profile: &str, dir: &Path) -> Output {
    run(
        &[
            "export",
            correlation,
            "-o",
            out.to_str().unwrap(),
            "--profile",
            profile,
        ],
        dir,
    )
}

fn verify(file: &Path) -> Output {
    Command::new(BIN).arg("verify").arg(file).output().unwrap()
}

/// Records a session: a declared two-step plan and one of its steps.
/// Returns the session's correlation id.
fn record_session(dir: &Path) -> String {
    let (mut gateway, mut agent) = start_gateway(dir, "payments", &[]);
    agent.request(1, "initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "export-agent", "version": "1"}}));
    let declared = agent.call(
        2,
        "intentproof_declare_plan",
        json!({
            "intent": "refund order ORD-7 and email the receipt",
            "steps": [
                {"tool": "refund_payment", "purpose": "Refund the card"},
                {"tool": "send_receipt_email", "purpose": "Email the receipt"}
            ]
        }),
    );
    assert!(
        declared["result"]["structuredContent"]["plan_id"].is_string(),
        "{declared}"
    );
    let refund = agent.call(
        3,
        "refund_payment",
        json!({"order_id": "ORD-7", "amount_cents": 1250}),
    );
    assert_eq!(refund["result"]["structuredContent"]["status"], "succeeded");
    drop(agent);
    let status = gateway.0.wait().unwrap();
    assert!(status.success(), "gateway exited with {status}");

    let plans = run(&["plans", "--json"], dir);
    assert!(plans.status.success());
    let plans: Value = serde_json::from_slice(&plans.stdout).unwrap();
    plans["plans"][0]["correlation_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_recorded_session_exports_to_a_deterministic_bundle_that_verifies() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let _daemon = start_daemon(&dir);
    let correlation = record_session(&dir);

    // Both events (declaration and refund) are stored.
    let events = run(&["events", "--json", "--correlation", &correlation], &dir);
    let events: Value = serde_json::from_slice(&events.stdout).unwrap();
    assert_eq!(events["events"].as_array().unwrap().len(), 2, "{events}");

    let first = temp.path().join("first.proof.tar.zst");
    let second = temp.path().join("second.proof.tar.zst");
    for out in [&first, &second] {
        let exported = export(&correlation, out, "full", &dir);
        assert!(
            exported.status.success(),
            "export: {}",
            String::from_utf8_lossy(&exported.stderr)
        );
    }
    let a = std::fs::read(&first).unwrap();
    let b = std::fs::read(&second).unwrap();
    assert!(!a.is_empty());
    assert_eq!(a, b, "two exports of an unchanged correlation differ");

    let verified = verify(&first);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "verify: {stdout}\n{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert_eq!(stdout.lines().next(), Some("✓ pass: bundle.verify_pass"));
    for expected in [
        "- event_chains_valid:1",
        "- checkpoint.signature_valid",
        "- inclusion_proofs_valid:2",
    ] {
        assert!(
            stdout.lines().any(|l| l == expected),
            "{expected}: {stdout}"
        );
    }

    // flow.json, policy.json and run.json follow the spec schemas; the
    // policy is the declared plan's, and its run sees the missing step.
    let archive =
        intentproof_bundle::read_archive(&a, &intentproof_bundle::ReadLimits::default()).unwrap();
    let doc = |name: &str| -> Value { serde_json::from_slice(archive.get(name).unwrap()).unwrap() };
    use intentproof_core::schema::{SchemaKind, validate};
    for (name, kind) in [
        ("flow.json", SchemaKind::Flow),
        ("policy.json", SchemaKind::Policy),
        ("run.json", SchemaKind::Run),
    ] {
        if let Err(errors) = validate(kind, &doc(name)) {
            panic!("{name}: {errors:?}");
        }
    }
    assert!(
        doc("policy.json")["policy_id"]
            .as_str()
            .unwrap()
            .starts_with("plan.")
    );
    assert_eq!(doc("run.json")["status"], "fail");
    assert_eq!(doc("flow.json")["correlation_id"], correlation.as_str());

    // `verify explain` says, in words, what was meant, what ran, and which
    // step is missing; `verify replay` prints the failing run.
    let explained = Command::new(BIN)
        .args(["verify", "explain"])
        .arg(&first)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&explained.stdout);
    assert_eq!(
        explained.status.code(),
        Some(1),
        "an incomplete intent exits 1: {text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("Integrity: ✓ pass (bundle.verify_pass)"),
        "{text}"
    );
    assert!(
        lines.contains(&"What was intended: refund order ORD-7 and email the receipt"),
        "{text}"
    );
    assert!(text.contains("mcp.payments.refund_payment"), "{text}");
    let verdict = lines.iter().find(|l| l.starts_with("Verdict: ")).unwrap();
    assert!(
        verdict.starts_with("Verdict: INCOMPLETE. Missing or failed: ")
            && verdict.contains("`mcp.payments.send_receipt_email`"),
        "{verdict}"
    );
    let replayed = Command::new(BIN)
        .args(["verify", "replay"])
        .arg(&first)
        .output()
        .unwrap();
    assert_eq!(replayed.status.code(), Some(1));
    let run: Value = serde_json::from_slice(&replayed.stdout).unwrap();
    assert_eq!(run["schema"], "intentproof.run.v1");
    assert_eq!(run["status"], "fail");

    // One flipped byte in the middle: the bundle fails.
    let mut tampered = a.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    let broken = temp.path().join("broken.proof.tar.zst");
    std::fs::write(&broken, &tampered).unwrap();
    let failed = verify(&broken);
    assert_eq!(
        failed.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&failed.stdout)
    );
    assert!(String::from_utf8_lossy(&failed.stdout).starts_with("✗ fail: "));
}

#[test]
fn other_profiles_are_refused_and_unknown_correlations_are_not_found() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let _daemon = start_daemon(&dir);
    let correlation = record_session(&dir);
    let out = temp.path().join("x.proof.tar.zst");

    let refused = export(&correlation, &out, "auditor", &dir);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("400") && stderr.contains("only \"full\" exists yet"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written on a refusal");

    let missing = export("corr_that_never_was", &out, "full", &dir);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("404") && stderr.contains("corr_that_never_was"),
        "{stderr}"
    );
    assert!(!out.exists());
}
