//! Spec conformance of the verification policy model and evaluator: the 13
//! reference packs (25 fixtures), the golden policy cases and fingerprint
//! vector, the YAML authoring form, the verifier fuzz corpus, the demo
//! policy, and the sample policies in `policies/verification/`.

use std::fs;
use std::path::{Path, PathBuf};

use intentproof_core::schema::{SchemaKind, validate};
use intentproof_policy::verification::{
    Attestation, EvalOptions, Flow, FlowEvent, Outcome, Policy, PolicyFormat, Reason, evaluate,
    reference::check_reference_fixture,
};
use serde_json::Value;

fn spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/intentproof-spec")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Every `pack.json` under `reference-policies/`, sorted.
fn packs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| n == "pack.json") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&spec_dir().join("reference-policies"), &mut out);
    out
}

#[test]
fn all_reference_fixtures_pass() {
    let packs = packs();
    assert_eq!(packs.len(), 13, "expected 13 reference packs");
    let mut passed = 0;
    let mut failures = Vec::new();
    for pack_path in &packs {
        let dir = pack_path.parent().unwrap_or(Path::new("."));
        let pack = json(pack_path);
        let policy_file = dir.join(pack["policy"].as_str().unwrap_or("policy.json"));
        let policy = Policy::from_json(read(&policy_file).as_bytes()).expect("policy.json parses");
        policy
            .lint()
            .unwrap_or_else(|e| panic!("{}: {e}", policy_file.display()));
        for fixture in pack["fixtures"].as_array().expect("fixtures") {
            let file = |k: &str| dir.join(fixture[k].as_str().expect(k));
            let expected = json(&file("expected_run"));
            let result = check_reference_fixture(
                &policy,
                &json(&file("flow")),
                &read(&file("attestations")),
                &expected,
            );
            let name = format!("{}/{}", pack["reference_id"], fixture["id"]);
            match result {
                Ok(run) => {
                    let value = run.to_value();
                    if let Err(errors) = validate(SchemaKind::Run, &value) {
                        failures.push(format!("{name}: run does not validate: {errors:?}"));
                    }
                    assert_eq!(run.compute_fingerprint(), run.run_fingerprint);
                    passed += 1;
                }
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(passed, 25, "expected 25 reference fixtures");
}

#[test]
fn a_changed_expectation_is_caught() {
    let dir = spec_dir().join("reference-policies/access/production-deploy/v1");
    let policy = Policy::from_json(read(&dir.join("policy.json")).as_bytes()).expect("policy");
    let fixture = dir.join("fixtures/deploy-without-approval");
    let mut expected = json(&fixture.join("expected-run.json"));
    expected["findings"][2]["reason"] = Value::from("fail.ordering.out_of_order");
    let err = check_reference_fixture(&policy, &json(&fixture.join("flow.json")), "", &expected)
        .expect_err("must differ");
    assert!(err.to_string().contains("/findings/2/reason"), "{err}");
}

#[test]
fn yaml_form_equals_json_form_for_every_pack() {
    for pack_path in packs() {
        let dir = pack_path.parent().unwrap_or(Path::new("."));
        let from_json = Policy::from_json(read(&dir.join("policy.json")).as_bytes()).expect("json");
        let from_yaml = Policy::from_yaml(&read(&dir.join("policy.yaml"))).expect("yaml");
        assert_eq!(from_yaml, from_json, "{}", dir.display());
        let fp = from_json.fingerprint().expect("fingerprint");
        assert_eq!(from_yaml.fingerprint().expect("fingerprint"), fp);
        assert_eq!(
            from_json.declared_fingerprint(),
            Some(fp.as_str()),
            "{}",
            dir.display()
        );
    }
}

#[test]
fn fingerprint_vector() {
    let v = json(&spec_dir().join("golden/policy_fingerprint_vector.json"));
    let policy = Policy::from_value(v["policy"].clone()).expect("object");
    let excluded: Vec<&str> = v["excluded_fields"]
        .as_array()
        .expect("excluded_fields")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        excluded,
        intentproof_policy::verification::FINGERPRINT_EXCLUDED_FIELDS
    );
    let expected = format!("sha256:{}", v["expected_sha256_hex"].as_str().expect("hex"));
    assert_eq!(policy.fingerprint().expect("fingerprint"), expected);
}

/// For each invalid golden case, a word its lint message must contain.
const INVALID_CASE_MESSAGES: &[(&str, &[&str])] = &[
    (
        "tnt_acme.missing-required",
        &["rule \"r1\" (required): spec.action is missing"],
    ),
    (
        "tnt_acme.forbidden-missing-action",
        &["rule \"r1\" (forbidden): spec.action is missing"],
    ),
    (
        "tnt_acme.ordering-missing-after",
        &["rule \"r1\" (ordering): spec.after is missing"],
    ),
    (
        "tnt_acme.cardinality-conflict",
        &["rule \"r1\" (cardinality): give either exactly or min/max"],
    ),
    (
        "tnt_acme.temporal-missing-max",
        &["rule \"r1\" (temporal): no window"],
    ),
    (
        "tnt_acme.consensus-missing-claim",
        &["rule \"r1\" (consensus): spec.claim is missing"],
    ),
    (
        "tnt_acme.value-bound-missing-operator",
        &["rule \"r1\" (value_bound): spec.operator is missing"],
    ),
    (
        "tnt_acme.claim-match-missing-value",
        &["rule \"r1\" (claim_match): spec.expected_value is missing"],
    ),
    (
        "tnt_acme.invalid-severity",
        &["rule \"r1\" (required): severity \"urgent\""],
    ),
    (
        "tnt_acme.unknown-category",
        &[
            "rule \"r1\": category \"unknown\" is not a category; valid: required, forbidden, ordering, cardinality, temporal, consensus, value_bound, claim_match",
        ],
    ),
    (
        "tnt_acme.additional-props",
        &["unknown top-level field \"extra_field\""],
    ),
    ("tnt_acme.invalid-operator", &["spec.operator \"approx\""]),
    (
        "tnt_acme.completion-removed",
        &["category \"completion\" is not a category"],
    ),
    (
        "tnt_acme.forbidden-predecessor-mutex",
        &["where_predecessor and without_predecessor cannot both be given"],
    ),
    (
        "tnt_acme.forbidden-where-pred-missing-after",
        &["rule \"r1\" (forbidden): spec.after is missing"],
    ),
    (
        "tnt_acme.forbidden-without-pred-missing-after",
        &["rule \"r1\" (forbidden): spec.after is missing"],
    ),
    ("tnt_acme.cardinality-no-bound", &["no bound"]),
    (
        "tnt_acme.temporal-bad-duration",
        &["spec.max \"5m\" is not an ISO 8601 duration"],
    ),
    ("tnt_acme.temporal-no-bounds", &["no window"]),
    (
        "tnt_acme.missing-provenance",
        &[
            "provenance_class is missing",
            "policy_fingerprint is sha256:missing",
        ],
    ),
];

#[test]
fn golden_policy_cases() {
    let text = read(&spec_dir().join("golden/policy_cases.jsonl"));
    let (mut valid, mut invalid) = (0, 0);
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let case: Value = serde_json::from_str(line).expect("case");
        let should = case["shouldValidate"].as_bool().expect("shouldValidate");
        let policy = Policy::from_value(case["policy"].clone()).expect("object");
        let verdict = policy.lint();
        if should {
            verdict.unwrap_or_else(|e| panic!("case {}: {e}", i + 1));
            let declared = policy
                .declared_fingerprint()
                .expect("valid cases declare one");
            assert_eq!(
                policy.fingerprint().expect("fp"),
                declared,
                "case {}",
                i + 1
            );
            valid += 1;
            continue;
        }
        let err = verdict.expect_err(&format!("case {} must be rejected", i + 1));
        let message = err.to_string();
        invalid += 1;
        let Some(id) = policy.policy_id() else {
            assert!(
                message.contains("schema must be"),
                "case {}: {message}",
                i + 1
            );
            continue;
        };
        let (_, needles) = INVALID_CASE_MESSAGES
            .iter()
            .find(|(pid, _)| *pid == id)
            .unwrap_or_else(|| panic!("no expected message for {id}: {message}"));
        for needle in *needles {
            assert!(
                message.contains(needle),
                "{id}: {needle:?} not in {message}"
            );
        }
    }
    assert_eq!((valid, invalid), (2, 21));
}

#[test]
fn verifier_fuzz_corpus_evaluates_without_panicking() {
    let dir = spec_dir().join("golden/fuzz-corpora/verifier");
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .expect("corpus")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    assert_eq!(entries.len(), 3);
    for path in entries {
        let input = json(&path);
        let policy = Policy::from_value(input["policy"].clone()).expect("policy object");
        let flow = Flow::from_value(&input["flow"]).expect("flow");
        let atts: Vec<Attestation> = input["attestations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| Attestation::from_value(v).ok())
                    .collect()
            })
            .unwrap_or_default();
        let run = evaluate(&policy, &flow, &atts, &EvalOptions::default());
        validate(SchemaKind::Run, &run.to_value())
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let expected = match name {
            "empty-flow-no-rules.json" => (Outcome::Pass, vec![]),
            "required-fail-missing-event.json" => {
                (Outcome::Fail, vec![Reason::FailRequiredMissing])
            }
            "required-pass.json" => (Outcome::Pass, vec![Reason::PassRequiredSatisfied]),
            other => panic!("unexpected corpus file {other}"),
        };
        let reasons: Vec<Reason> = run.findings.iter().map(|f| f.reason).collect();
        assert_eq!((run.status, reasons), expected, "{name}");
    }
}

/// Arbitrary JSON shapes in every slot: never a panic.
#[test]
fn malformed_inputs_do_not_panic() {
    let shapes = [
        Value::Null,
        Value::from(1),
        Value::from("x"),
        serde_json::json!([]),
        serde_json::json!({}),
        serde_json::json!([1, {"a": null}]),
        serde_json::json!({"action": 3, "min": "one", "where": []}),
    ];
    let categories = [
        "required",
        "forbidden",
        "ordering",
        "cardinality",
        "temporal",
        "consensus",
        "value_bound",
        "claim_match",
        "nope",
    ];
    let flow = Flow {
        flow_id: "f".into(),
        events: vec![FlowEvent::new("e1", "a"), FlowEvent::default()],
        ..Flow::default()
    };
    for c in categories {
        for spec in &shapes {
            for key in [
                "action",
                "after",
                "before",
                "where",
                "from",
                "to",
                "max",
                "sources",
                "threshold",
                "claim",
                "value",
                "operator",
                "expected_value",
            ] {
                let mut s = serde_json::Map::new();
                s.insert(key.into(), spec.clone());
                let policy = Policy::from_value(serde_json::json!({
                    "rules": [{"id": "r", "category": c, "spec": s}, spec, {"category": c, "spec": spec}]
                }))
                .expect("object");
                let run = evaluate(&policy, &flow, &[], &EvalOptions::default());
                assert_eq!(run.findings.len(), 3);
                let _ = policy.lint();
            }
        }
    }
}

#[test]
fn demo_policy_and_scenario() {
    let golden = spec_dir().join("golden/demo");
    let policy = Policy::from_yaml(&read(
        &golden.join("policies/refund-with-notification.yaml"),
    ))
    .expect("demo policy compiles");
    policy.lint().expect("compiled demo policy is valid");
    let scenario = json(&golden.join("scenarios/refund.json"));
    for (path, expect) in [
        ("happy_path", None),
        ("divergent_path", Some("fail.required.missing")),
    ] {
        let s = &scenario[path];
        let events = s["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .enumerate()
            .map(|(i, a)| FlowEvent::new(format!("e{i}"), a.as_str().unwrap_or_default()))
            .collect();
        let flow = Flow {
            flow_id: s["correlation_id"].as_str().unwrap_or_default().to_owned(),
            events,
            ..Flow::default()
        };
        let run = evaluate(&policy, &flow, &[], &EvalOptions::default());
        match expect {
            None => assert_eq!(run.status, Outcome::Pass),
            Some(reason) => {
                assert_eq!(run.status, Outcome::Fail);
                assert_eq!(s["expected_reason"], reason);
                let failed: Vec<_> = run
                    .findings
                    .iter()
                    .filter(|f| f.outcome == Outcome::Fail)
                    .collect();
                assert_eq!(failed.len(), 1);
                assert_eq!(failed[0].reason.as_str(), reason);
                assert_eq!(failed[0].rule_id, "require-notify");
            }
        }
    }
}

#[test]
fn fuzz_corpus_yaml_policies_compile() {
    let dir = spec_dir().join("golden/fuzz-corpora/policy");
    for name in ["minimal-required.yaml", "refund-shorthand.yaml"] {
        let policy = Policy::parse(read(&dir.join(name)).as_bytes(), PolicyFormat::Detect)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        policy.lint().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            policy
                .scope()
                .any_event_action_in
                .is_some_and(|l| l.len() == 1),
            "{name}"
        );
    }
}

#[test]
fn sample_policies_lint() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/verification");
    let mut count = 0;
    for entry in fs::read_dir(&dir).expect("policies/verification") {
        let path = entry.expect("entry").path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        if !matches!(ext, "yaml" | "yml" | "json") {
            continue;
        }
        let policy = Policy::parse(read(&path).as_bytes(), PolicyFormat::Detect)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        policy
            .lint()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        count += 1;
    }
    assert!(count >= 2, "expected the sample policies, found {count}");
}

#[test]
fn reason_vocabulary_matches_the_spec() {
    let reasons = json(&spec_dir().join("semantics/reasons.json"));
    let codes: Vec<&str> = reasons["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .filter_map(|r| r["code"].as_str())
        .collect();
    let ours: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(ours, codes);
    for r in Reason::ALL {
        let entry = reasons["reasons"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["code"] == r.as_str()))
            .expect("entry");
        assert_eq!(entry["category"], r.category(), "{r}");
        assert!(r.as_str().starts_with(r.outcome().as_str()), "{r}");
    }
}
