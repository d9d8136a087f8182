//! Conformance with the IntentProof spec's golden files (copied into
//! `tests/fixtures/intentproof-spec/`, commit 8cdc72b).

use std::fs;
use std::path::PathBuf;

use intentproof_core::canon::{canonicalize, canonicalize_bytes, parse_strict};
use intentproof_core::keys::{InstanceKey, parse_seed};
use intentproof_core::schema::{SchemaKind, validate};
use intentproof_core::seal::{Sealer, sign_v1, verify_event};
use intentproof_core::v1;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/intentproof-spec/golden")
}

fn read(rel: &str) -> String {
    let path = fixtures().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_trimmed(rel: &str) -> String {
    read(rel).trim_end_matches(['\n', '\r']).to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_jcs_vector_matches_byte_for_byte() {
    let text = read("jcs_vectors.jsonl");
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case = parse_strict(line.as_bytes()).unwrap();
        let expected = case["expected"].as_str().unwrap();
        let got = canonicalize(&case["input"]).unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), expected, "vector {line}");
        n += 1;
    }
    assert_eq!(n, 10, "all vectors were read");
}

#[test]
fn policy_fingerprint_vector() {
    let vector = parse_strict(read("policy_fingerprint_vector.json").as_bytes()).unwrap();
    let mut policy = vector["policy"].as_object().unwrap().clone();
    for field in vector["excluded_fields"].as_array().unwrap() {
        assert!(policy.remove(field.as_str().unwrap()).is_some());
    }
    let digest = Sha256::digest(canonicalize(&Value::Object(policy)).unwrap());
    assert_eq!(
        hex(&digest),
        vector["expected_sha256_hex"].as_str().unwrap()
    );
}

#[test]
fn every_canon_fuzz_corpus_file_is_idempotent() {
    let dir = fixtures().join("fuzz-corpora/canon");
    let mut n = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let raw = fs::read(&path).unwrap();
        let once = canonicalize_bytes(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let twice = canonicalize_bytes(&once).unwrap();
        assert_eq!(once, twice, "{}", path.display());
        n += 1;
    }
    assert_eq!(n, 20);
}

#[test]
fn canon_corpus_outputs_are_the_expected_bytes() {
    // A few outputs pinned by hand from RFC 8785's rules, so idempotence
    // alone cannot hide a wrong-but-stable canonical form.
    let cases = [
        ("number-scientific-large.json", "1e+22"),
        ("number-safe-integer-boundary.json", "9007199254740992"),
        ("string-control-escape.json", "\"\\u0001\""),
        (
            "utf16-key-ordering.json",
            "{\"\u{1F600}\":2,\"\u{E000}\":1}",
        ),
        (
            "nested-objects-sorted.json",
            r#"{"a":[{"b":2,"c":3}],"z":{"a":1,"b":2}}"#,
        ),
    ];
    for (file, want) in cases {
        let raw = fs::read(fixtures().join("fuzz-corpora/canon").join(file)).unwrap();
        assert_eq!(
            String::from_utf8(canonicalize_bytes(&raw).unwrap()).unwrap(),
            want,
            "{file}"
        );
    }
}

fn golden_event() -> Value {
    parse_strict(read("sdk-signing/signing_unsigned_event.json").as_bytes()).unwrap()
}

fn golden_key() -> InstanceKey {
    let seed = parse_seed(&read("sdk-signing/signing_private_key_b64.txt")).unwrap();
    InstanceKey::from_seed("inst_golden_test", seed.to_bytes())
}

#[test]
fn sdk_signing_vector_byte_for_byte() {
    let event = golden_event();
    let obj = event.as_object().unwrap();
    let canonical =
        intentproof_core::canon::canonicalize_object_without(obj, &["signature"]).unwrap();
    assert_eq!(
        String::from_utf8(canonical).unwrap(),
        read_trimmed("sdk-signing/signing_canonical_utf8.txt")
    );
    assert_eq!(
        v1::content_hash(obj).unwrap(),
        read_trimmed("sdk-signing/signing_event_hash.txt")
    );

    let key = golden_key();
    let mut signed = obj.clone();
    let hash = sign_v1(&mut signed, key.signing_key(), &key.key_id()).unwrap();
    assert_eq!(hash, read_trimmed("sdk-signing/signing_event_hash.txt"));
    assert_eq!(signed["signature"]["alg"], "ed25519");
    assert_eq!(signed["signature"]["key_id"], "inst_golden_test:k1");
    assert_eq!(
        signed["signature"]["value"],
        read_trimmed("sdk-signing/signing_signature_b64.txt")
    );
    let signed = Value::Object(signed);
    verify_event(&signed, &key.verifying_key()).unwrap();
    validate(SchemaKind::ExecutionEvent, &signed).unwrap();
}

#[test]
fn sealer_reproduces_the_golden_signed_event() {
    // The whole path: v1 -> ExecutionEvent -> Sealer -> v1 must give the
    // golden bytes and signature (the golden event is position 1 of its chain).
    let event = v1::from_v1(&golden_event()).unwrap();
    let sealed = Sealer::new(golden_key()).seal(&event).unwrap();
    assert_eq!(
        sealed.content_hash,
        read_trimmed("sdk-signing/signing_event_hash.txt")
    );
    assert_eq!(
        sealed.event["signature"]["value"],
        read_trimmed("sdk-signing/signing_signature_b64.txt")
    );
    let mut without = sealed.event.as_object().unwrap().clone();
    without.remove("signature");
    assert_eq!(Value::Object(without), golden_event());
}

#[test]
fn golden_event_round_trips_through_execution_event() {
    let golden = golden_event();
    let event = v1::from_v1(&golden).unwrap();
    assert_eq!(Value::Object(v1::to_v1(&event)), golden);
    // And through the camelCase JSON form too.
    let camel = serde_json::to_value(&event).unwrap();
    let back: intentproof_core::ExecutionEvent = serde_json::from_value(camel).unwrap();
    assert_eq!(Value::Object(v1::to_v1(&back)), golden);
}

fn check_cases(rel: &str, kind: SchemaKind) -> usize {
    let text = read(rel);
    let mut n = 0;
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let case = parse_strict(line.as_bytes()).unwrap();
        let case = case.as_object().unwrap();
        let should = case["shouldValidate"].as_bool().unwrap();
        let doc_keys: Vec<&String> = case.keys().filter(|k| *k != "shouldValidate").collect();
        let doc_key = if doc_keys.len() == 1 {
            doc_keys[0].clone()
        } else {
            // e.g. agent-manifest cases carry a `source_bundle` beside the doc.
            kind.stem().replace('-', "_")
        };
        let doc = &case[&doc_key];
        let verdict = validate(kind, doc);
        assert_eq!(
            verdict.is_ok(),
            should,
            "{rel} case {i} (`{doc_key}`): expected shouldValidate={should}, got {verdict:?}"
        );
        if should && kind == SchemaKind::Policy {
            let mut policy = doc.as_object().unwrap().clone();
            let claimed = policy["policy_fingerprint"].as_str().unwrap().to_owned();
            for f in ["policy_fingerprint", "signed_at", "signature"] {
                policy.remove(f);
            }
            let digest = Sha256::digest(canonicalize(&Value::Object(policy)).unwrap());
            assert_eq!(
                claimed,
                format!("sha256:{}", hex(&digest)),
                "{rel} case {i}"
            );
        }
        n += 1;
    }
    n
}

#[test]
fn every_golden_case_validates_as_the_spec_says() {
    let mut files = 0;
    let mut cases = 0;
    for entry in fs::read_dir(fixtures()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(stem) = name.strip_suffix("_cases.jsonl") else {
            continue;
        };
        let kind = SchemaKind::from_stem(stem).unwrap_or_else(|| panic!("no schema for {name}"));
        cases += check_cases(&name, kind);
        files += 1;
    }
    assert_eq!(files, 11, "one cases file per schema");
    assert!(cases >= 50, "{cases}");
    assert_eq!(
        check_cases(
            "multi-agent/execution_event_cases.jsonl",
            SchemaKind::ExecutionEvent
        ),
        4
    );
}
