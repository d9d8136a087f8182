//! `intentproof policy` through the binary: the spec's 13 reference packs,
//! and lint verdicts on the golden policy cases.

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_intentproof");

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/intentproof-spec")
}

#[test]
fn all_reference_packs_pass() {
    let output = Command::new(BIN)
        .args(["policy", "test"])
        .arg(fixtures().join("reference-policies"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.lines().last(),
        Some("25 passed, 0 failed"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 25);
}

#[test]
fn lint_accepts_valid_and_rejects_invalid_golden_policies() {
    let cases = std::fs::read_to_string(fixtures().join("golden/policy_cases.jsonl")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for (i, line) in cases.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let path = dir.path().join(format!("case{i}.json"));
        std::fs::write(&path, serde_json::to_vec(&case["policy"]).unwrap()).unwrap();
        let output = Command::new(BIN)
            .args(["policy", "lint"])
            .arg(&path)
            .output()
            .unwrap();
        let should = case["shouldValidate"].as_bool().unwrap();
        if should {
            valid += 1;
            assert_eq!(
                output.status.code(),
                Some(0),
                "case {i}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        } else {
            invalid += 1;
            assert_eq!(output.status.code(), Some(1), "case {i} should be rejected");
            assert!(
                !output.stderr.is_empty() || !output.stdout.is_empty(),
                "case {i}: no message"
            );
        }
    }
    assert_eq!((valid, invalid), (2, 21));
}
