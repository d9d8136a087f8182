//! `Redactor::redact_event` covers every caller-controlled field (intent,
//! action, attributes, error parts, verbatim v1 members) and JSON text held
//! in strings, with exact results and summaries.

use intentproof_core::{AttributeValue, ErrorInfo, ExecutionEvent};
use intentproof_policy::redact::{
    HashKey, JSON_TEXT_MAX_BYTES, JSON_TEXT_UNCHECKED_MARKER, RedactionPolicy, Redactor,
};
use serde_json::{Value, json};

const GHP: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";

fn redactor() -> Redactor {
    Redactor::new(
        RedactionPolicy::default_policy(),
        HashKey::from_bytes([0x42; 32]),
    )
}

fn paths(event: &ExecutionEvent) -> Vec<String> {
    event
        .redaction_summary
        .as_ref()
        .map(|s| s.fields_redacted_paths.clone())
        .unwrap_or_default()
}

#[test]
fn intent_action_attributes_and_error_parts_are_redacted() {
    let mut event =
        ExecutionEvent::builder(format!("rotate {GHP}"), format!("http.gh.GET./repos/{GHP}"))
            .attributes(
                [
                    ("password", AttributeValue::from("hunter2")),
                    ("note", format!("token {GHP}").into()),
                    (
                        "mcp.session_id",
                        "0190b6f2-4c1e-7a3b-8d2f-0123456789ab".into(),
                    ),
                    ("jsonrpc.id", "7".into()),
                    ("count", 3.into()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            )
            .build();
    event.error = Some(ErrorInfo {
        name: format!("Err:{GHP}"),
        message: "plain".into(),
        stack: Some(format!("at x ({GHP})")),
    });
    redactor().redact_event(&mut event);
    let red = "[REDACTED:github-tokens]";
    assert_eq!(event.intent, format!("rotate {red}"));
    assert_eq!(event.action, format!("http.gh.GET./repos/{red}"));
    let attrs: Vec<(&str, AttributeValue)> = event
        .attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    assert_eq!(
        attrs,
        vec![
            ("count", AttributeValue::from(3)),
            ("jsonrpc.id", "7".into()),
            (
                "mcp.session_id",
                "0190b6f2-4c1e-7a3b-8d2f-0123456789ab".into()
            ),
            ("note", format!("token {red}").into()),
            ("password", "[REDACTED:secret-keys]".into()),
        ]
    );
    let err = event.error.as_ref().unwrap();
    assert_eq!(err.name, format!("Err:{red}"));
    assert_eq!(err.message, "plain");
    assert_eq!(err.stack.as_deref(), Some(format!("at x ({red})").as_str()));
    assert_eq!(
        paths(&event),
        vec![
            "$.action",
            "$.attributes.note",
            "$.attributes.password",
            "$.error.name",
            "$.error.stack",
            "$.intent",
        ]
    );
    let summary = event.redaction_summary.unwrap();
    assert_eq!(summary.rules_applied, vec!["github-tokens", "secret-keys"]);
    assert_eq!(summary.fields_redacted_count, 6);
}

#[test]
fn json_text_in_strings_is_redacted_by_key_and_value_rules() {
    let inner = json!({"token": "t-1", "keep": 1}).to_string();
    let mut event = ExecutionEvent::builder("i", "a")
        .inputs(json!({
            "s": json!({"password": "p-1", "n": [1, {"apiKey": "k"}]}).to_string(),
            "twice": json!({"inner": inner, "v": GHP}).to_string(),
            "spaced": " [ {\"ok\": true} ] ",
            "notJson": "{password: p-2}",
            "log": "[INFO] started",
        }))
        .output(json!([json!({"secret": "s-1"}).to_string()]))
        .build();
    event.intent = json!({"credentials": "c-1"}).to_string();
    redactor().redact_event(&mut event);
    let inputs = event.inputs.clone().unwrap();
    assert_eq!(
        inputs["s"],
        r#"{"n":[1,{"apiKey":"[REDACTED:http-headers]"}],"password":"[REDACTED:secret-keys]"}"#
    );
    assert_eq!(
        inputs["twice"],
        json!({"inner": r#"{"keep":1,"token":"[REDACTED:secret-keys]"}"#, "v": "[REDACTED:github-tokens]"})
            .to_string()
    );
    // Unchanged JSON text keeps its exact bytes; text that is not JSON is
    // only scanned by the value rules.
    assert_eq!(inputs["spaced"], " [ {\"ok\": true} ] ");
    assert_eq!(inputs["notJson"], "{password: p-2}");
    assert_eq!(inputs["log"], "[INFO] started");
    assert_eq!(
        event.output,
        Some(json!([r#"{"secret":"[REDACTED:secret-keys]"}"#]))
    );
    assert_eq!(event.intent, r#"{"credentials":"[REDACTED:secret-keys]"}"#);
    assert_eq!(
        paths(&event),
        vec![
            "$.inputs.s<json>.n[1].apiKey",
            "$.inputs.s<json>.password",
            "$.inputs.twice<json>.inner<json>.token",
            "$.inputs.twice<json>.v",
            "$.intent<json>.credentials",
            "$.output[0]<json>.secret",
        ]
    );
}

#[test]
fn verbatim_v1_members_such_as_error_data_are_redacted() {
    let raw = json!({
        "schema": "intentproof.event.v1", "event_id": "01J", "intent": "i", "action": "a",
        "status": "error", "started_at": "2026-01-01T00:00:00.000Z",
        "completed_at": "2026-01-01T00:00:00.001Z", "duration_ms": 1,
        "error": {"name": "E", "message": "m", "data": {"password": "p-3", "why": GHP}}
    });
    let mut event = intentproof_core::v1::from_v1(&raw).unwrap();
    redactor().redact_event(&mut event);
    let v1 = Value::Object(intentproof_core::v1::to_v1(&event));
    assert_eq!(
        v1["error"],
        json!({"name": "E", "message": "m", "data": {"password": "[REDACTED:secret-keys]", "why": "[REDACTED:github-tokens]"}})
    );
    assert_eq!(
        paths(&event),
        vec!["$.error.data.password", "$.error.data.why"]
    );
}

#[test]
fn json_text_is_bounded_in_size_and_depth() {
    // Deeper than the parser's 128 levels: the whole text is cut.
    let deep = format!(
        "{}{{\"password\":\"p-4\"}}{}",
        "[".repeat(200),
        "]".repeat(200)
    );
    // Over the size bound and valid JSON: not parsed, replaced.
    let big = json!({"password": "p-5", "pad": "x".repeat(JSON_TEXT_MAX_BYTES)}).to_string();
    // Within the bounds but deeper than max_depth (16): the deep part is cut.
    let mut nested = json!({"password": "p-6"});
    for _ in 0..20 {
        nested = json!({"a": nested});
    }
    let mut event = ExecutionEvent::builder("i", "a")
        .inputs(json!({"deep": deep, "big": big, "nested": nested.to_string()}))
        .build();
    redactor().redact_event(&mut event);
    let inputs = event.inputs.unwrap();
    assert_eq!(inputs["deep"], "[MaxDepth]");
    assert_eq!(inputs["big"], JSON_TEXT_UNCHECKED_MARKER);
    let text = inputs["nested"].as_str().unwrap();
    assert!(!text.contains("p-6"), "{text}");
    assert!(text.contains("\"[MaxDepth]\""), "{text}");
    assert_eq!(
        paths(&ExecutionEvent::builder("i", "a").build()),
        Vec::<String>::new()
    );
}
