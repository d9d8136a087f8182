//! Runs the built `intentproof` binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn golden(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/intentproof-spec/golden/sdk-signing")
        .join(rel)
}

fn trimmed(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim_end().to_owned()
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_intentproof"));
    cmd.args(args)
        .env_remove("INTENTPROOF_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    // A command that fails on its arguments may exit before it reads its
    // input: the write then meets a closed pipe, which is not the test's
    // concern (its exit status and stderr are).
    if let Err(e) = input.write_all(stdin.unwrap_or_default()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn seal_golden() -> Value {
    let seed = golden("signing_private_key_b64.txt");
    let event = golden("signing_unsigned_event.json");
    let out = run(
        &[
            "event",
            "seal",
            "--key",
            seed.to_str().unwrap(),
            "--instance-id",
            "inst_golden_test",
            event.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn seal_reproduces_the_golden_signature() {
    let sealed = seal_golden();
    assert_eq!(
        sealed["signature"]["value"],
        trimmed(&golden("signing_signature_b64.txt"))
    );
    assert_eq!(sealed["signature"]["key_id"], "inst_golden_test:k1");
}

fn verify(key: &str, event: &Value) -> Output {
    let bytes = serde_json::to_vec(event).unwrap();
    run(&["event", "verify", "--key", key, "-"], Some(&bytes))
}

#[test]
fn verify_accepts_the_sealed_event_with_seed_or_public_key() {
    let sealed = seal_golden();
    let seed = golden("signing_private_key_b64.txt");
    let out = verify(seed.to_str().unwrap(), &sealed);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&trimmed(&golden("signing_event_hash.txt"))));

    // The public key, raw base64 and PEM, from a key made from the same seed.
    let key = intentproof_core::keys::InstanceKey::from_seed(
        "inst_golden_test",
        intentproof_core::keys::parse_seed(&trimmed(&seed))
            .unwrap()
            .to_bytes(),
    );
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("pub.pem");
    std::fs::write(&pem, key.public_key_pem()).unwrap();
    assert_eq!(
        verify(pem.to_str().unwrap(), &sealed).status.code(),
        Some(0)
    );
    assert_eq!(
        verify(&key.public_key_base64(), &sealed).status.code(),
        Some(0)
    );
}

/// Changes one character of a JSON value (string, number or boolean).
fn mutate(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let mut chars: Vec<char> = s.chars().collect();
            match chars.last_mut() {
                Some(c) => *c = if *c == 'A' { 'B' } else { 'A' },
                None => chars.push('x'),
            }
            Value::String(chars.into_iter().collect())
        }
        Value::Number(n) => serde_json::json!(n.as_u64().unwrap_or(0) + 1),
        Value::Bool(b) => Value::Bool(!b),
        Value::Null => Value::String("x".into()),
        Value::Array(items) => {
            let mut items = items.clone();
            items[0] = mutate(&items[0]);
            Value::Array(items)
        }
        Value::Object(m) if m.is_empty() => serde_json::json!({"x": 1}),
        Value::Object(m) => {
            let mut m = m.clone();
            let first = m.keys().next().unwrap().clone();
            let changed = mutate(&m[&first]);
            m.insert(first, changed);
            Value::Object(m)
        }
    }
}

#[test]
fn verify_rejects_a_one_character_change_in_each_field() {
    let sealed = seal_golden();
    let seed = golden("signing_private_key_b64.txt");
    let seed = seed.to_str().unwrap();
    let fields: Vec<String> = sealed.as_object().unwrap().keys().cloned().collect();
    assert!(fields.len() >= 21, "{fields:?}");
    let mut paths: Vec<Vec<String>> = fields.iter().map(|f| vec![f.clone()]).collect();
    for sub in ["alg", "key_id", "value"] {
        paths.push(vec!["signature".into(), sub.into()]);
    }
    for path in paths {
        let mut event = sealed.clone();
        let slot = path.iter().fold(&mut event, |v, k| &mut v[k.as_str()]);
        *slot = mutate(slot);
        let out = verify(seed, &event);
        assert_eq!(
            out.status.code(),
            Some(1),
            "change of {path:?} accepted: stdout {} stderr {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).starts_with("invalid: "),
            "{path:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn verify_says_why() {
    let sealed = seal_golden();
    let seed = golden("signing_private_key_b64.txt");
    let mut edited = sealed.clone();
    edited["intent"] = Value::String("Golden wrap fixturE".into());
    let out = verify(seed.to_str().unwrap(), &edited);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "invalid: signature of event 01JMR9F0X4M9V0K2YH8M0X3D9N (chain position 1) does not \
         verify with key inst_golden_test:k1: the event was changed after it was signed, or \
         another key signed it"
    );
    let mut unsigned = sealed;
    unsigned.as_object_mut().unwrap().remove("signature");
    let out = verify(seed.to_str().unwrap(), &unsigned);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("has no `signature`"));
}

#[test]
fn usage_and_io_errors_exit_2() {
    let out = run(
        &["event", "verify", "--key", "/no/such/key", "-"],
        Some(b"{}"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("does not exist"));
    let out = run(&["event", "frobnicate"], None);
    assert_eq!(out.status.code(), Some(2));
    let seed = golden("signing_private_key_b64.txt");
    let out = run(
        &[
            "event",
            "verify",
            "--key",
            seed.to_str().unwrap(),
            "/no/such/file.json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn canon_prints_exact_bytes_from_stdin() {
    let out = run(
        &["event", "canon", "-"],
        Some(br#"{"b": 1.0, "a": [1e21, "\u00e9"]}"#),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "{\"a\":[1e+21,\"\u{e9}\"],\"b\":1}");
    let out = run(&["event", "canon", "-"], Some(br#"{"a": 1, "a": 2}"#));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("duplicate object key \"a\""));
    let event = golden("signing_unsigned_event.json");
    let out = run(&["event", "canon", event.to_str().unwrap()], None);
    assert_eq!(
        text(&out.stdout),
        trimmed(&golden("signing_canonical_utf8.txt"))
    );
}

#[test]
fn keys_new_show_and_seal_a_camel_case_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let out = run(&["keys", "new", "--data-dir", d], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let created = text(&out.stdout);
    let out = run(&["keys", "new", "--data-dir", d], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("already exists"));
    let out = run(&["keys", "show", "--data-dir", d], None);
    assert_eq!(out.status.code(), Some(0));
    let shown = text(&out.stdout);
    assert!(created.ends_with(&shown), "{created} / {shown}");
    assert!(shown.contains("-----BEGIN PUBLIC KEY-----"));
    let instance = shown
        .lines()
        .find_map(|l| l.strip_prefix("instance_id: "))
        .unwrap()
        .to_owned();
    assert!(instance.starts_with("inst_"));

    // Env var instead of the flag.
    let out = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .args(["keys", "show"])
        .env("INTENTPROOF_DATA_DIR", d)
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), shown);

    let key_file = data.join("instance_key.json");
    let camel = intentproof_core::ExecutionEvent::builder("Refund", "stripe.refunds.create")
        .correlation_id("corr_1")
        .inputs(serde_json::json!([{"amountCents": 4999}]))
        .output(serde_json::json!({"id": "re_1"}))
        .build();
    let bytes = serde_json::to_vec(&camel).unwrap();
    let out = run(
        &["event", "seal", "--key", key_file.to_str().unwrap(), "-"],
        Some(&bytes),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let sealed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sealed["instance_id"], instance.as_str());
    assert_eq!(sealed["tenant_id"], "local");
    assert_eq!(sealed["chain_position"], 1);
    assert_eq!(sealed["untrusted_payload"], true);
    let out = verify(key_file.to_str().unwrap(), &sealed);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
