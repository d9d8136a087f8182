//! The redactor with the built-in policy on an arbitrary JSON event: the
//! input, when it is an event, is redacted as it is; any other JSON value
//! becomes the inputs, output, attributes (an object's scalar members),
//! intent, action and error texts of a sample event.
//!
//! Must hold: no panic; the redacted event still serializes to JSON that
//! parses strictly; redacting it again changes nothing (not the data, not
//! the summary's paths).
#![no_main]

use std::sync::LazyLock;

use intentproof_core::canon::parse_strict;
use intentproof_core::{Attributes, ErrorInfo, ExecutionEvent};
use intentproof_policy::redact::{HashKey, RedactionPolicy, Redactor};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

static REDACTOR: LazyLock<Redactor> = LazyLock::new(|| {
    Redactor::new(
        RedactionPolicy::default_policy(),
        HashKey::from_bytes([5; 32]),
    )
});

fn event_from(value: Value) -> ExecutionEvent {
    if let Ok(event) = serde_json::from_value::<ExecutionEvent>(value.clone()) {
        return event;
    }
    let mut event: ExecutionEvent = serde_json::from_value(json!({
        "id": "evt_1",
        "intent": "intent",
        "action": "tool.call",
        "status": "error",
        "startedAt": "2026-01-01T00:00:00.000Z",
        "completedAt": "2026-01-01T00:00:00.001Z",
        "durationMs": 1
    }))
    .expect("the sample event deserializes");
    let text = match &value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Value::Object(map) = &value {
        let scalars: serde_json::Map<String, Value> = map
            .iter()
            .filter(|(_, v)| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Ok(attributes) = serde_json::from_value::<Attributes>(Value::Object(scalars)) {
            event.attributes = attributes;
        }
    }
    event.intent = text.clone();
    event.action = format!("tool.{text}");
    event.error = Some(ErrorInfo {
        name: text.clone(),
        message: text.clone(),
        stack: Some(text),
    });
    event.inputs = Some(value.clone());
    event.output = Some(value);
    event
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = parse_strict(data) else {
        return;
    };
    let mut event = event_from(value);
    REDACTOR.redact_event(&mut event);
    let bytes = serde_json::to_vec(&event).expect("a redacted event serializes");
    if let Err(e) = parse_strict(&bytes) {
        panic!(
            "a redacted event is not strict JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    let mut twice = event.clone();
    REDACTOR.redact_event(&mut twice);
    assert_eq!(twice, event, "redacting a redacted event changed it");
});
