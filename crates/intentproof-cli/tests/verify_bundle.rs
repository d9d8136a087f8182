//! `intentproof verify` against the reference tools' golden bundle.

use std::path::PathBuf;
use std::process::Command;

fn golden(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/intentproof-spec/golden")
        .join(rel)
}

#[test]
fn golden_counterparty_bundle_verifies_with_the_exact_stdout() {
    let out = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .arg("verify")
        .arg(golden("counterparty/counterparty-refund.proof.tar.zst"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = std::fs::read(golden("counterparty/expected-verify-stdout.txt")).unwrap();
    assert_eq!(out.stdout, expected);
}

#[test]
fn json_report_and_failures() {
    let out = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .args(["verify", "--json"])
        .arg(golden("counterparty/counterparty-refund.proof.tar.zst"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "pass");
    assert_eq!(report["reason"], "bundle.verify_pass");
    assert_eq!(report["summary"]["events"], 2);

    // The empty-tar corpus: fail, exit 1, reason on stdout, detail on stderr.
    let out = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .arg("verify")
        .arg(golden("fuzz-corpora/bundle/empty-tar.bin"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout, "✗ fail: bundle.manifest_missing\n".as_bytes());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no members"));

    // A missing file is an I/O error: exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .args(["verify", "/nonexistent/bundle.proof.tar.zst"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // A --key that is not a key: exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .args(["verify", "--key"])
        .arg(golden("counterparty/expected-verify-stdout.txt"))
        .arg(golden("counterparty/counterparty-refund.proof.tar.zst"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
