//! Policy files on arbitrary bytes: the verification policy (YAML and
//! detected form: parse, compile, lint, as `check_policy` does for serve,
//! doctor and `policy lint`) and the redaction policy parser, whose
//! policies are then compiled into a redactor and applied.
//!
//! Must hold: no panic; a policy that passes the checks is in the JSON
//! form, compiles to itself and has a fingerprint.
#![no_main]

use intentproof_core::ExecutionEvent;
use intentproof_policy::redact::{HashKey, RedactionPolicy, Redactor};
use intentproof_policy::verification::{Policy, PolicyFormat, check_policy};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    for format in [PolicyFormat::Yaml, PolicyFormat::Detect] {
        if let Ok(policy) = check_policy("fuzz.yaml", data, format) {
            let value = policy.to_value();
            let again = Policy::compile(value.clone())
                .unwrap_or_else(|e| panic!("a checked policy does not compile again: {e}"));
            assert!(
                again == policy,
                "compiling a checked policy changed it: {value}"
            );
            let _ = policy.fingerprint();
            let _ = policy.scope();
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = RedactionPolicy::from_yaml(text) {
        let redactor = Redactor::new(policy, HashKey::from_bytes([3; 32]));
        let mut event: ExecutionEvent = serde_json::from_value(json!({
            "id": "evt_1",
            "intent": "Refund card 4242 4242 4242 4242 for ada@example.com",
            "action": "payments.refund",
            "inputs": {"password": "hunter2", "card": "4111111111111111", "n": [1, {"token": "x"}]},
            "output": "{\"api_key\":\"sk_live_123\"}",
            "status": "ok",
            "startedAt": "2026-01-01T00:00:00.000Z",
            "completedAt": "2026-01-01T00:00:00.001Z",
            "durationMs": 1
        }))
        .expect("the sample event deserializes");
        redactor.redact_event(&mut event);
        assert!(serde_json::to_vec(&event).is_ok());
    }
});
