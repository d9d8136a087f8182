//! The corpus: every secret and PII kind, redacted by the default policy,
//! compared with an exact expected result and summary.

use intentproof_core::{ExecutionEvent, RedactionSummary};
use intentproof_policy::redact::{Detector, HashKey, RedactionPolicy, Redactor};
use serde_json::Value;

const CORPUS: &str = include_str!("fixtures/redaction_corpus.json");
const EXPECTED: &str = include_str!("fixtures/redaction_corpus.expected.json");

fn redactor() -> Redactor {
    Redactor::new(
        RedactionPolicy::default_policy(),
        HashKey::from_bytes([0x42; 32]),
    )
}

fn load(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

#[test]
fn default_policy_redacts_the_corpus_exactly() {
    let corpus = load(CORPUS);
    let expected = load(EXPECTED);
    let mut inputs = corpus["inputs"].clone();
    let mut output = corpus["output"].clone();
    let action = corpus["action"].as_str().expect("action");
    let summary = redactor().apply(action, &mut inputs, &mut output);
    if std::env::var_os("PRINT_CORPUS").is_some() {
        let got = serde_json::json!({"inputs": inputs, "output": output, "summary": summary});
        println!("{}", serde_json::to_string_pretty(&got).expect("json"));
    }
    assert_eq!(inputs, expected["inputs"]);
    assert_eq!(output, expected["output"]);
    let want: RedactionSummary =
        serde_json::from_value(expected["summary"].clone()).expect("summary");
    assert_eq!(summary, want);
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| strings(i, out)),
        _ => {}
    }
}

#[test]
fn corpus_input_has_every_detector_and_output_has_none() {
    let corpus = load(CORPUS);
    let mut found = std::collections::HashSet::new();
    let mut all = Vec::new();
    strings(&corpus["inputs"], &mut all);
    strings(&corpus["output"], &mut all);
    for s in &all {
        found.extend(Detector::scan(s).into_iter().map(|(d, _)| d));
    }
    for d in Detector::ALL {
        assert!(found.contains(&d), "corpus lacks a {} value", d.name());
    }
    let expected = load(EXPECTED);
    let mut left = Vec::new();
    strings(&expected["inputs"], &mut left);
    strings(&expected["output"], &mut left);
    for s in &left {
        assert_eq!(Detector::scan(s), vec![], "{s}");
    }
}

#[test]
fn redact_event_fills_the_summary_and_scans_errors() {
    let mut event = ExecutionEvent::builder("Refund", "stripe.refunds.create")
        .inputs(serde_json::json!([{"amountCents": 4999, "customerEmail": "ada@example.com"}]))
        .build();
    event.error = Some(intentproof_core::ErrorInfo {
        name: "AuthError".into(),
        message: "key sk_live_0000000000000000EXAMPLE0 was revoked".into(),
        stack: None,
    });
    event.untrusted_payload = Some(true);
    event.redaction_summary = Some(RedactionSummary {
        rules_applied: vec!["sdk-local".into()],
        fields_redacted_count: 1,
        fields_redacted_paths: vec!["$.inputs[0].ssn".into()],
        tenant_redaction_profile_id: None,
    });
    redactor().redact_event(&mut event);
    assert_eq!(
        event.inputs,
        Some(serde_json::json!([{
            "amountCents": 4999,
            "customerEmail": "hmac-sha256:ecf1c1cd04d9c5e9e2db502a9143e61b7ee1984696bc8a3d23096e8be9ae8b54"
        }]))
    );
    assert_eq!(event.output, None, "an absent output stays absent");
    assert_eq!(
        event.error.as_ref().map(|e| e.message.as_str()),
        Some("key [REDACTED:stripe-keys] was revoked")
    );
    assert_eq!(event.untrusted_payload, Some(true), "left as it was");
    assert_eq!(
        event.redaction_summary,
        Some(RedactionSummary {
            rules_applied: vec!["emails".into(), "sdk-local".into(), "stripe-keys".into()],
            fields_redacted_count: 3,
            fields_redacted_paths: vec![
                "$.error.message".into(),
                "$.inputs[0].customerEmail".into(),
                "$.inputs[0].ssn".into(),
            ],
            tenant_redaction_profile_id: Some("default".into()),
        })
    );
}
