//! `intentproof policy` through the binary: the spec's 13 reference packs,
//! lint verdicts on the golden policy cases, and one verdict on a policy
//! file from `policy lint`, `serve` and `doctor` (the same check, the same
//! message).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::{BIN, clean_env, run_bounded, start_daemon_with};

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

const VALID_CATEGORIES: &str = "valid: required, forbidden, ordering, cardinality, temporal, consensus, value_bound, claim_match";

/// A policy file named by a gateway config, and a data dir a daemon has
/// run on with a valid version of it (so that a `doctor` failure can only
/// be the policy's).
struct PolicySetup {
    _temp: tempfile::TempDir,
    policy: PathBuf,
    config: PathBuf,
    data: PathBuf,
}

fn policy_yaml(scope_key: &str, rule_type: &str) -> String {
    format!(
        "policy_id: p\ntenant_id: t\nscope:\n  {scope_key}: [refund]\nrules:\n  - id: r1\n    type: {rule_type}\n    action: refund\n    min: 1\n"
    )
}

impl PolicySetup {
    fn new() -> PolicySetup {
        let temp = tempfile::tempdir().unwrap();
        let policy = temp.path().join("policy.yaml");
        let config = temp.path().join("gw.toml");
        let data = temp.path().join("data");
        std::fs::write(&policy, policy_yaml("any_event_action_in", "required")).unwrap();
        std::fs::write(
            &config,
            format!("verification_policies = [{:?}]\n", policy.to_str().unwrap()),
        )
        .unwrap();
        drop(start_daemon_with(
            &data,
            &["--config", config.to_str().unwrap()],
            &[],
        ));
        let setup = PolicySetup {
            _temp: temp,
            policy,
            config,
            data,
        };
        let (code, report) = setup.doctor();
        assert_eq!(code, Some(0), "{report}");
        assert!(
            report
                .lines()
                .any(|l| l == format!("✓ verification policy {}", setup.policy.display())),
            "{report}"
        );
        setup
    }

    fn lint(&self) -> Output {
        clean_env(&mut Command::new(BIN))
            .args(["policy", "lint"])
            .arg(&self.policy)
            .output()
            .unwrap()
    }

    /// `serve` with the config; it must refuse to start (a daemon that
    /// starts is killed and fails the test rather than hanging it).
    fn serve(&self) -> Output {
        run_bounded(
            clean_env(&mut Command::new(BIN))
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(&self.data)
                .arg("--config")
                .arg(&self.config),
            "serve with an invalid policy",
            std::time::Duration::from_secs(60),
        )
    }

    /// `doctor` (exit code, report); port 1, where nothing answers, keeps a
    /// daemon of someone else's out of the report.
    fn doctor(&self) -> (Option<i32>, String) {
        let out = clean_env(&mut Command::new(BIN))
            .args(["doctor", "--server", "http://127.0.0.1:1", "--data-dir"])
            .arg(&self.data)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Lint, serve and doctor on the policy now in the file all refuse it
    /// with exactly `problems` (each prefixed with the file's path).
    fn assert_refused_everywhere(&self, problems: &[String]) {
        let path = self.policy.display();
        let lines: Vec<String> = problems.iter().map(|p| format!("{path}: {p}")).collect();

        let lint = self.lint();
        assert_eq!(lint.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&lint.stdout),
            format!("{}\n", lines.join("\n"))
        );

        let serve = self.serve();
        assert_eq!(serve.status.code(), Some(2));
        assert_eq!(
            String::from_utf8_lossy(&serve.stderr),
            format!("error: {}\n", lines.join("\n"))
        );

        let (code, report) = self.doctor();
        assert_eq!(code, Some(1), "{report}");
        let failed: Vec<&str> = report.lines().filter(|l| l.starts_with('✗')).collect();
        let expected: Vec<String> = lines
            .iter()
            .map(|l| format!("✗ verification policy {l}"))
            .collect();
        assert_eq!(failed, expected, "{report}");
        assert!(
            report.contains(&format!(
                "                      fix: correct it and check with `intentproof policy lint {path}`; the daemon will not start until then\n"
            )),
            "{report}"
        );
    }
}

/// A misspelt rule type used to start the daemon (the rule never fired)
/// while lint refused it.
#[test]
fn a_misspelt_rule_type_stops_serve_and_fails_doctor_with_lints_message() {
    let setup = PolicySetup::new();
    std::fs::write(
        &setup.policy,
        policy_yaml("any_event_action_in", "requried"),
    )
    .unwrap();
    setup.assert_refused_everywhere(&[format!(
        "rule \"r1\": type \"requried\" is not a category; {VALID_CATEGORIES}"
    )]);
}

/// A misspelt scope key used to pass lint while the daemon refused it.
#[test]
fn a_misspelt_scope_key_fails_lint_with_the_message_serve_gives() {
    let setup = PolicySetup::new();
    std::fs::write(
        &setup.policy,
        policy_yaml("any_event_actions_in", "required"),
    )
    .unwrap();
    setup.assert_refused_everywhere(&[
        "scope.any_event_actions_in is not a scope field (known: any_event_action_in, ignore_flows_with_no_match); it would be ignored".to_owned(),
        "scope.any_event_action_in is missing: list the actions whose flows this policy governs (a flow is checked when one of its events has one of them)".to_owned(),
    ]);
}

/// `policy test` refuses a pack whose policy the daemon would refuse, with
/// the same message, on each fixture.
#[test]
fn policy_test_runs_the_same_check() {
    let temp = tempfile::tempdir().unwrap();
    let pack = temp.path().join("pack/v1");
    copy_dir(
        &fixtures().join("reference-policies/payments/refund-basic/v1"),
        &pack,
    );
    let policy = pack.join("policy.json");
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&policy).unwrap()).unwrap();
    let scope = doc["scope"].as_object_mut().unwrap();
    let actions = scope.remove("any_event_action_in").unwrap();
    scope.insert("any_event_actions_in".into(), actions);
    doc["policy_fingerprint"] = "".into(); // the content changed; declare none
    std::fs::write(&policy, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = Command::new(BIN)
        .args(["policy", "test"])
        .arg(&pack)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let path = policy.display();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{path}: scope.any_event_actions_in is not a scope field (known: any_event_action_in, ignore_flows_with_no_match); it would be ignored\n\
             {path}: scope.any_event_action_in is missing: list the actions whose flows this policy governs (a flow is checked when one of its events has one of them)\n\
             FAIL  reference.payments.refund-basic.v1/happy-path: the pack's policy is invalid (2 problems above)\n\
             FAIL  reference.payments.refund-basic.v1/missing-refund: the pack's policy is invalid (2 problems above)\n\
             0 passed, 2 failed\n"
        )
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
