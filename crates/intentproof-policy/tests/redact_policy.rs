//! Policy parsing, key matching, actions, limits, overrides, headers and
//! the hash key file.

use intentproof_core::RedactionSummary;
use intentproof_policy::redact::{
    Detector, HashKey, HashKeyError, PolicyError, RedactionPolicy, Redactor, redact_headers,
};
use serde_json::{Value, json};

fn key(b: u8) -> HashKey {
    HashKey::from_bytes([b; 32])
}

fn redactor(yaml: &str) -> Redactor {
    Redactor::new(
        RedactionPolicy::from_yaml(yaml).expect("valid policy"),
        key(1),
    )
}

fn summary(rules: &[&str], paths: &[&str], policy: &str) -> RedactionSummary {
    RedactionSummary {
        rules_applied: rules.iter().map(|s| s.to_string()).collect(),
        fields_redacted_count: paths.len() as u64,
        fields_redacted_paths: paths.iter().map(|s| s.to_string()).collect(),
        tenant_redaction_profile_id: Some(policy.to_owned()),
    }
}

/// Runs `r` on `inputs` (output null) and returns (inputs, summary).
fn run(r: &Redactor, action: &str, inputs: Value) -> (Value, RedactionSummary) {
    let mut inputs = inputs;
    let mut output = Value::Null;
    let s = r.apply(action, &mut inputs, &mut output);
    assert_eq!(output, Value::Null);
    (inputs, s)
}

#[test]
fn default_policy_covers_every_detector_in_order() {
    let p = RedactionPolicy::default_policy();
    assert_eq!(p.id(), "default");
    assert_eq!(
        p.rule_ids(),
        vec![
            "secret-keys",
            "private-keys",
            "gcp-service-accounts",
            "jwts",
            "bearer-tokens",
            "aws-access-keys",
            "aws-secret-keys",
            "gcp-api-keys",
            "github-tokens",
            "slack-tokens",
            "slack-webhooks",
            "stripe-keys",
            "card-numbers",
            "ibans",
            "emails",
            "phones",
        ]
    );
    let text = RedactionPolicy::default_policy_yaml();
    for d in Detector::ALL {
        assert!(
            text.contains(&format!("detector: {} }}", d.name())),
            "{}",
            d.name()
        );
    }
    let limits = p.limits();
    assert_eq!(
        (limits.max_depth, limits.max_keys, limits.max_string_length),
        (16, 500, 16384)
    );
}

#[test]
fn keys_match_regardless_of_case_and_separators() {
    let r = redactor(
        "version: 1\nid: p\nrules:\n  - id: k\n    match: { keys: [api_key, password] }\n    action: redact\n",
    );
    let (out, s) = run(
        &r,
        "a",
        json!({
            "api_key": 1, "apiKey": 2, "API-KEY": 3, "api.key": 4, "Api Key": 5, "APIKEY": 6,
            "PassWord": "x", "pass_word": "y", "api_keys": "kept", "apikeyid": "kept",
        }),
    );
    assert_eq!(
        out,
        json!({
            "api_key": "[REDACTED:http-headers]", "apiKey": "[REDACTED:http-headers]",
            "API-KEY": "[REDACTED:http-headers]", "api.key": "[REDACTED:http-headers]",
            "Api Key": "[REDACTED:http-headers]", "APIKEY": "[REDACTED:http-headers]",
            "PassWord": "[REDACTED:k]", "pass_word": "[REDACTED:k]",
            "api_keys": "kept", "apikeyid": "kept",
        })
    );
    // Every spelling of `api_key` normalizes to `apikey`, which the built-in
    // `*-Api-Key` header rule (always first) matches too.
    assert_eq!(
        s,
        summary(
            &["http-headers", "k"],
            &[
                "$.inputs.APIKEY",
                "$.inputs.PassWord",
                "$.inputs.apiKey",
                "$.inputs.api_key",
                "$.inputs.pass_word",
                "$.inputs['API-KEY']",
                "$.inputs['Api Key']",
                "$.inputs['api.key']",
            ],
            "p"
        )
    );
    assert_eq!(s.fields_redacted_count, 8);
}

#[test]
fn keyed_actions_mask_hash_and_drop_whole_values() {
    let r = redactor(
        r#"
version: 1
id: p
rules:
  - id: m
    match: { keys: [card] }
    action: { mask: { keep_last: 4 } }
  - id: h
    match: { keys: [email, "*_id"] }
    action: hash
  - id: d
    match: { keys: [ssn] }
    action: drop
"#,
    );
    let (out, s) = run(
        &r,
        "a",
        json!([{"card": "4111-1111-1111-1111", "email": "ada@example.com", "ssn": "078-05-1120",
                "user_id": 12345, "nested": {"card": 4111111111111111_u64, "ssn": null}}]),
    );
    assert_eq!(
        out,
        json!([{
            "card": "***************1111",
            "email": "hmac-sha256:cd0779a6ee2092a88db69b0d568dd6e9bb308884e58645aadbc55e5419d1e275",
            "user_id": "hmac-sha256:cd60b16ebd553d6a091b1f39415f5797a71e6a94e333f58472376d56a7a93f12",
            "nested": {"card": "************1111", "ssn": null}
        }])
    );
    assert_eq!(
        s,
        summary(
            &["d", "h", "m"],
            &[
                "$.inputs[0].card",
                "$.inputs[0].email",
                "$.inputs[0].nested.card",
                "$.inputs[0].ssn",
                "$.inputs[0].user_id",
            ],
            "p"
        )
    );
}

#[test]
fn hash_is_stable_for_equal_values_and_differs_across_keys() {
    let yaml =
        "version: 1\nid: p\nrules:\n  - id: e\n    match: { detector: email }\n    action: hash\n";
    let policy = RedactionPolicy::from_yaml(yaml).expect("valid");
    let a = Redactor::new(policy.clone(), key(1));
    let b = Redactor::new(policy, key(2));
    let input = json!(["ada@example.com", "to: ada@example.com", "bob@example.com"]);
    let (out_a, _) = run(&a, "x", input.clone());
    let (out_a2, _) = run(&a, "y", input.clone());
    let (out_b, _) = run(&b, "x", input);
    assert_eq!(out_a, out_a2);
    assert_eq!(
        out_a,
        json!([
            "hmac-sha256:cd0779a6ee2092a88db69b0d568dd6e9bb308884e58645aadbc55e5419d1e275",
            "to: hmac-sha256:cd0779a6ee2092a88db69b0d568dd6e9bb308884e58645aadbc55e5419d1e275",
            "hmac-sha256:b8a9416ad6258030c90f4832681c28bcd9b61f7b417da5b80b070a52347253c8",
        ])
    );
    assert_eq!(
        out_b,
        json!([
            "hmac-sha256:6ca1ae3e6906c76ce2c7e87baee04b4b6d620f6dc28b411c94e87b401307c628",
            "to: hmac-sha256:6ca1ae3e6906c76ce2c7e87baee04b4b6d620f6dc28b411c94e87b401307c628",
            "hmac-sha256:6d501063f384b586c16beae569714d7faf889fe8a968e48445cbe63b040c54a9",
        ])
    );
}

#[test]
fn value_rules_replace_spans_and_drop_fields_or_array_items() {
    let r = redactor(
        r#"
version: 1
id: p
rules:
  - id: orders
    match: { regex: "ORD-[0-9]+" }
    action: drop
  - id: pw
    match: { regex: "password=([^&\\s]+)" }
    action: redact
"#,
    );
    let (out, s) = run(
        &r,
        "a",
        json!({"list": ["a", "ref ORD-1", "b"], "ref": "ORD-2", "url": "https://x/?user=ada&password=hunter2&x=1", "n": 1}),
    );
    assert_eq!(
        out,
        json!({"list": ["a", "[DROPPED:orders]", "b"], "url": "https://x/?user=ada&password=[REDACTED:pw]&x=1", "n": 1})
    );
    assert_eq!(
        s,
        summary(
            &["orders", "pw"],
            &["$.inputs.list[1]", "$.inputs.ref", "$.inputs.url"],
            "p"
        )
    );
    let (out, s) = run(&r, "a", json!("ORD-3"));
    assert_eq!(out, json!("[DROPPED:orders]"));
    assert_eq!(s, summary(&["orders"], &["$.inputs"], "p"));
}

#[test]
fn headers_are_always_redacted() {
    let r = redactor("version: 1\nid: empty\n");
    let (out, s) = run(
        &r,
        "http.request",
        json!({"headers": {"authorization": "Bearer x", "COOKIE": "a=b", "set-cookie": "c=d",
               "Proxy-Authorization": "Basic y", "x-api-key": "k", "X-Goog-Api-Key": "g",
               "Content-Type": "text/plain", "X-Request-Id": "r"}}),
    );
    assert_eq!(
        out,
        json!({"headers": {"authorization": "[REDACTED:http-headers]", "COOKIE": "[REDACTED:http-headers]",
               "set-cookie": "[REDACTED:http-headers]", "Proxy-Authorization": "[REDACTED:http-headers]",
               "x-api-key": "[REDACTED:http-headers]", "X-Goog-Api-Key": "[REDACTED:http-headers]",
               "Content-Type": "text/plain", "X-Request-Id": "r"}})
    );
    assert_eq!(s.rules_applied, vec!["http-headers"]);
    assert_eq!(s.fields_redacted_count, 6);

    let mut h =
        json!({"Authorization": "Bearer x", "Cookie": "a", "Accept": "*/*", "X-Api-Key": null});
    let map = h.as_object_mut().expect("object");
    assert_eq!(redact_headers(map), 2);
    assert_eq!(
        h,
        json!({"Authorization": "[REDACTED:http-headers]", "Cookie": "[REDACTED:http-headers]", "Accept": "*/*", "X-Api-Key": null})
    );

    let err = RedactionPolicy::from_yaml(
        "version: 1\nid: p\nrules:\n  - id: http-headers\n    match: { keys: [x] }\n    action: drop\n",
    )
    .expect_err("reserved id");
    assert_eq!(
        err.to_string(),
        "redaction policy: rule `http-headers`: `rules[0].id`: `http-headers` is reserved for the built-in header rule"
    );
}

#[test]
fn overrides_apply_by_action_glob() {
    let r = redactor(
        r#"
version: 1
id: p
rules:
  - id: emails
    match: { detector: email }
    action: redact
overrides:
  - id: fs-output
    actions: ["mcp.filesystem.*"]
    capture_output: false
  - id: orders
    actions: ["shop.orders.?et", "shop.refunds.*"]
    rules:
      - id: order-ids
        match: { regex: "ORD-[0-9]+" }
        action: hash
"#,
    );
    let mut inputs = json!({"path": "/etc/passwd", "owner": "ada@example.com"});
    let mut output = json!("root:x:0:0:root:/root:/bin/bash");
    let s = r.apply("mcp.filesystem.read_file", &mut inputs, &mut output);
    assert_eq!(
        inputs,
        json!({"path": "/etc/passwd", "owner": "[REDACTED:emails]"})
    );
    assert_eq!(output, json!("[NOT_CAPTURED:fs-output]"));
    assert_eq!(
        s,
        summary(
            &["emails", "fs-output"],
            &["$.inputs.owner", "$.output"],
            "p"
        )
    );

    // Not matching: output kept, no order-id rule.
    let mut inputs = json!(["ORD-77"]);
    let mut output = json!("ok");
    let s = r.apply("mcp.git.status", &mut inputs, &mut output);
    assert_eq!((inputs, output), (json!(["ORD-77"]), json!("ok")));
    assert_eq!(s, summary(&[], &[], "p"));

    for action in ["shop.orders.get", "shop.orders.set", "shop.refunds.create"] {
        let (out, s) = run(&r, action, json!(["ORD-77"]));
        assert_eq!(
            out,
            json!(["hmac-sha256:260d11f6e14d2164dc4691731d282e54fc6a2d2faa0391c707540cfd2fcac1c8"]),
            "{action}"
        );
        assert_eq!(s, summary(&["order-ids"], &["$.inputs[0]"], "p"));
    }
    let (out, _) = run(&r, "shop.orders.list", json!(["ORD-77"]));
    assert_eq!(out, json!(["ORD-77"]), "`?` is one character");
}

fn deep(levels: usize) -> Value {
    let mut v = json!("bottom");
    for _ in 0..levels {
        v = Value::Array(vec![v]);
    }
    v
}

#[test]
fn limits_bound_deep_wide_and_long_inputs() {
    let r = redactor(
        r#"
version: 1
id: small
limits: { max_depth: 3, max_keys: 3, max_string_length: 10 }
rules:
  - id: cards
    match: { detector: credit_card }
    action: mask
  - id: blob
    match: { keys: [blob] }
    action: hash
"#,
    );
    // Deep: far deeper than any stack could recurse through.
    let (out, s) = run(&r, "a", deep(200_000));
    assert_eq!(out, json!([[["[MaxDepth]"]]]));
    assert_eq!(s, summary(&[], &[], "small"));

    // Wide.
    let wide: serde_json::Map<String, Value> = (0..10_000)
        .map(|i| (format!("k{i:05}"), json!(i)))
        .collect();
    let (out, _) = run(
        &r,
        "a",
        json!({"w": wide, "a": (0..10_000).collect::<Vec<_>>()}),
    );
    assert_eq!(
        out,
        json!({
            "a": [0, 1, 2, "[+9997 more items]"],
            "w": {"k00000": 0, "k00001": 1, "k00002": 2, "[truncated]": "9997 more keys"}
        })
    );

    // Long, with a card straddling the cut: masked before the cut.
    let long = format!("aaaa 4242 4242 4242 4242 {}", "x".repeat(1_000_000));
    let (out, s) = run(&r, "a", json!([long]));
    assert_eq!(out, json!(["aaaa *****…[truncated 1000015 chars]"]));
    assert_eq!(s, summary(&["cards"], &["$.inputs[0]"], "small"));

    // A hashed container is bounded before it is serialized.
    let mut blob = serde_json::Map::new();
    blob.insert("blob".into(), deep(200_000));
    let (out, s) = run(&r, "a", Value::Object(blob));
    let hashed = out["blob"].as_str().expect("hashed");
    assert!(
        hashed.starts_with("hmac-sha256:") && hashed.len() == 12 + 64,
        "{hashed}"
    );
    assert_eq!(s, summary(&["blob"], &["$.inputs.blob"], "small"));
}

#[test]
fn bad_policies_name_the_problem() {
    let cases: &[(&str, &str)] = &[
        ("version: [1", "redaction policy is not valid YAML: "),
        (
            "- 1\n- 2\n",
            "redaction policy: `(document)`: must be a mapping, found a list",
        ),
        (
            "id: p\n",
            "redaction policy: `version`: missing (expected `version: 1`)",
        ),
        (
            "version: 2\nid: p\n",
            "redaction policy: `version`: unsupported version 2 (expected 1)",
        ),
        ("version: 1\n", "redaction policy: `id`: missing"),
        (
            "version: 1\nid: p\nrulez: []\n",
            "redaction policy: `rulez`: unknown field (expected one of: version, id, description, limits, rules, overrides)",
        ),
        (
            "version: 1\nid: p\nlimits: { max_depth: 0 }\n",
            "redaction policy: `limits.max_depth`: must be an integer from 1 to 128, found 0",
        ),
        (
            "version: 1\nid: p\nlimits: { max_keys: many }\n",
            "redaction policy: `limits.max_keys`: must be a positive integer, found `many`",
        ),
        (
            "version: 1\nid: p\nrules:\n  - match: { keys: [a] }\n    action: redact\n",
            "redaction policy: rule `rules[0]`: `rules[0].id`: missing",
        ),
        (
            "version: 1\nid: p\nrules:\n  - id: a\n    match: { keys: [a] }\n    action: redact\n  - id: a\n    match: { keys: [b] }\n    action: redact\n",
            "redaction policy: rule `a`: `rules[1].id`: duplicate id (rule and override ids must be unique)",
        ),
        (
            "version: 1\nid: p\nrules:\n  - id: bad id\n    match: { keys: [a] }\n    action: redact\n",
            "redaction policy: rule `bad id`: `rules[0].id`: `bad id` may only contain ASCII letters, digits, `-`, `_`, `.` and `:`",
        ),
        (
            "version: 1\nid: p\nrules:\n  - id: r\n    action: redact\n",
            "redaction policy: rule `r`: `rules[0].match`: missing (one of `keys`, `detector`, `regex`)",
        ),
        (
            "version: 1\nid: p\nrules:\n  - id: r\n    match: { keys: [a], regex: b }\n    action: redact\n",
            "redaction policy: rule `r`: `rules[0].match`: must have exactly one of `keys`, `detector`, `regex`, found 2",
        ),
        (
            "version: 1\nid: p\nrules:\n  - id: r\n    match: { keys: [] }\n    action: redact\n",
            "redaction policy: rule `r`: `rules[0].match.keys`: must be a non-empty list of strings, found a list",
        ),
        (
            "version: 1\nid: p\nrules:\n  - id: r\n    match: { keys: [ok, 3] }\n    action: redact\n",
            "redaction policy: rule `r`: `rules[0].match.keys[1]`: must be a string, found a number",
        ),
        (
            "version: 1\nid: p\nrules:\n  - id: r\n    match: { keys: [\"_-\"] }\n    action: redact\n",
            "redaction policy: rule `r`: `rules[0].match.keys[0]`: `_-` has nothing to match once `_ - .` and spaces are removed",
        ),
        (
            "version: 1\nid: p\nrules:\n  - id: r\n    match: { regex: \"(unclosed\" }\n    action: redact\n",
            "redaction policy: rule `r`: `rules[0].match.regex`: invalid regular expression: regex parse error:\n    (unclosed\n    ^\nerror: unclosed group",
        ),
        (
            "version: 1\nid: p\nrules:\n  - id: r\n    match: { regex: \"a*\" }\n    action: redact\n",
            "redaction policy: rule `r`: `rules[0].match.regex`: `a*` matches the empty string",
        ),
        (
            "version: 1\nid: p\nrules:\n  - id: r\n    match: { keys: [a] }\n    action: erase\n",
            "redaction policy: rule `r`: `rules[0].action`: unknown action `erase` (expected redact, mask, hash or drop)",
        ),
        (
            "version: 1\nid: p\nrules:\n  - id: r\n    match: { keys: [a] }\n    action: { mask: { keep_first: 2 } }\n",
            "redaction policy: rule `r`: `rules[0].action.mask.keep_first`: unknown field (expected one of: keep_last)",
        ),
        (
            "version: 1\nid: p\nrules:\n  - id: r\n    match: { keys: [a] }\n    action: { mask: { keep_last: -1 } }\n",
            "redaction policy: rule `r`: `rules[0].action.mask.keep_last`: must be an integer from 0 to 16, found -1",
        ),
        (
            "version: 1\nid: p\nrules:\n  - id: r\n    match: { keys: [a] }\n    action: redact\n    severity: high\n",
            "redaction policy: rule `r`: `rules[0].severity`: unknown field (expected one of: id, description, match, action)",
        ),
        (
            "version: 1\nid: p\noverrides:\n  - capture_output: false\n",
            "redaction policy: `overrides[0].actions`: missing (a list of action globs)",
        ),
        (
            "version: 1\nid: p\noverrides:\n  - actions: [\"a.*\"]\n    capture_output: no-thanks\n",
            "redaction policy: `overrides[0].capture_output`: must be true or false, found `no-thanks`",
        ),
        (
            "version: 1\nid: p\noverrides:\n  - actions: [\"a.*\"]\n    rules:\n      - id: x\n        match: { detector: emial }\n        action: hash\n",
            "redaction policy: rule `x`: `overrides[0].rules[0].match.detector`: unknown detector `emial` (known: email, phone, credit_card, iban, jwt, bearer_token, aws_access_key_id, aws_secret_access_key, gcp_api_key, gcp_service_account, github_token, slack_token, slack_webhook, stripe_key, private_key)",
        ),
    ];
    for (yaml, want) in cases {
        let err = RedactionPolicy::from_yaml(yaml).expect_err(yaml);
        let got = err.to_string();
        if matches!(err, PolicyError::Yaml(_)) {
            assert!(got.starts_with(want), "{yaml:?}: {got}");
        } else {
            assert_eq!(&got, want, "{yaml:?}");
        }
    }
}

#[test]
fn hash_key_file_is_created_once_private_and_reloaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let a = HashKey::load_or_create(&data).expect("create");
    let b = HashKey::load_or_create(&data).expect("load");
    assert_eq!(a.hash("x"), b.hash("x"));
    let path = HashKey::path_in(&data);
    assert_eq!(std::fs::read(&path).expect("read").len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(
        std::fs::read_dir(&data).expect("dir").count(),
        1,
        "no temp file left"
    );

    let other = tempfile::tempdir().expect("tempdir");
    let c = HashKey::load_or_create(other.path()).expect("create");
    assert_ne!(a.hash("x"), c.hash("x"), "fresh keys are random");

    std::fs::write(&path, b"short").expect("write");
    match HashKey::load_or_create(&data) {
        Err(e @ HashKeyError::Malformed { len: 5, .. }) => {
            assert!(
                e.to_string()
                    .ends_with("must hold exactly 32 bytes, found 5"),
                "{e}"
            );
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}
