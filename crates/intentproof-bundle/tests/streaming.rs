//! The streaming verifier (`verify_reader`, and `verify`'s first try) gives
//! the buffered verifier's report, finding for finding, on every bundle it
//! finishes; it finishes every bundle whose checks pass in the usual form,
//! and a changed member with its manifest left as it was (the usual
//! tampering) without the buffered verifier.

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use intentproof_bundle::archive::{ReadLimits, read_archive};
use intentproof_bundle::inclusion::{Checkpoint, EventProof, InclusionProofs};
use intentproof_bundle::manifest::sha256_of;
use intentproof_bundle::{
    BundleInput, ManifestSigner, Report, TrustedKey, VerifyOptions, pack_members, verify,
    verify_buffered, verify_reader, write_bundle,
};
use intentproof_core::ExecutionEvent;
use intentproof_core::canon::canonicalize_object_without;
use intentproof_core::keys::InstanceKey;
use intentproof_core::merkle::{event_merkle_root, inclusion_proof, leaf_hash, root};
use intentproof_core::seal::Sealer;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

type Members = Vec<(String, Vec<u8>)>;

fn instance() -> InstanceKey {
    InstanceKey::from_seed("inst_test", [7u8; 32])
}

fn exporter() -> SigningKey {
    SigningKey::from_bytes(&[9u8; 32])
}

fn sealed_lines(key: &InstanceKey, n: usize, chains: usize) -> Vec<Vec<u8>> {
    let sealer = Sealer::new(key.clone()).with_tenant_id("tnt");
    (0..n)
        .map(|i| {
            let e = ExecutionEvent::builder("Refund", "stripe.refund.create")
                .correlation_id(format!("corr_{}", i % chains))
                .inputs(json!([{"order": format!("ord_{i}"), "pad": "x".repeat(i % 700)}]))
                .build();
            serde_json::to_vec(&sealer.seal(&e).unwrap().event).unwrap()
        })
        .collect()
}

/// A run.json signed (as `RUN` records are: without signature,
/// run_fingerprint, started_at, completed_at) by `key`, pretty-printed, with
/// nested findings.
fn signed_run(key: &InstanceKey, ids: &[String]) -> Vec<u8> {
    let mut run = json!({
        "run_id": "run_1",
        "flow_id": "flow_1",
        "tenant_id": "tnt",
        "status": "pass",
        "started_at": "2026-05-15T14:30:00Z",
        "completed_at": "2026-05-15T14:30:01Z",
        "run_fingerprint": "sha256:00",
        "summary": {"pass": 1, "fail": 0, "note": "é \u{1F600} \"quoted\" \\ \n"},
        "findings": [
            {"rule_id": "r1", "evidence_event_ids": ids, "score": 0.25, "big": 1e21},
            {"rule_id": "r2", "evidence_event_ids": [], "nested": {"z": [1, {"b": 2, "a": 1}], "a": null}},
        ],
        "empty_object": {},
        "empty_array": [],
    });
    let obj = run.as_object().unwrap();
    let canonical = canonicalize_object_without(
        obj,
        &["signature", "run_fingerprint", "started_at", "completed_at"],
    )
    .unwrap();
    let digest: [u8; 32] = Sha256::digest(&canonical).into();
    let signature = key.signing_key().sign(&digest);
    run["signature"] = json!({
        "alg": "ed25519",
        "key_id": key.key_id(),
        "value": base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
    });
    serde_json::to_vec_pretty(&run).unwrap()
}

fn ids_of(lines: &[Vec<u8>]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_slice::<Value>(l).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn input(events: Vec<Vec<u8>>, key: &InstanceKey) -> BundleInput {
    let ids = ids_of(&events);
    let flow = json!({
        "flow_id": "flow_1",
        "tenant_id": "tnt",
        "events": ids.iter().enumerate().map(|(i, id)| json!({"event_id": id, "ordinal": i})).collect::<Vec<_>>(),
        "window": {"from": "a", "to": "b"},
    });
    BundleInput {
        bundle_id: "bnd_1".into(),
        created_at: "2026-05-15T14:30:00Z".into(),
        flow_id: "flow_1".into(),
        tenant_id: "tnt".into(),
        flow: serde_json::to_vec_pretty(&flow).unwrap(),
        run: signed_run(key, &ids),
        events,
        attestations: vec![br#"{"attestation_id":"att_1","claim":"ok"}"#.to_vec()],
        policy: br#"{"policy_id":"pol_1","tenant_id":"tnt","rules":[]}"#.to_vec(),
        // The event signer's key, and the manifest signer's.
        keys: BTreeMap::from([
            (key.key_id(), key.verifying_key()),
            ("exporter:k1".into(), exporter().verifying_key()),
        ]),
        export_profile: "full".into(),
        spec_version: "1.0.0".into(),
        ..BundleInput::default()
    }
}

/// The store's log around the events, and every event's proof.
fn with_inclusion(key: &InstanceKey, events: Vec<Vec<u8>>) -> BundleInput {
    let mut log: Vec<Vec<u8>> = vec![b"{\"x\":1}".to_vec(), b"{\"x\":2}".to_vec()];
    log.extend(events.iter().cloned());
    log.push(b"{\"x\":3}".to_vec());
    let leaves: Vec<_> = log.iter().map(|l| leaf_hash(l)).collect();
    let checkpoint = Checkpoint::sign(
        leaves.len() as u64,
        &root(&leaves),
        "2026-05-15T14:30:00.000Z",
        key.signing_key(),
        &key.key_id(),
    )
    .unwrap();
    let proofs = ids_of(&events)
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            (
                id,
                EventProof::new(i as u64 + 2, &inclusion_proof(&leaves, i + 2).unwrap()),
            )
        })
        .collect();
    let mut input = input(events, key);
    input.inclusion = Some(InclusionProofs::new(checkpoint, proofs));
    input
}

fn signed(input: &BundleInput) -> Vec<u8> {
    let key = exporter();
    write_bundle(
        input,
        Some(&ManifestSigner {
            key: &key,
            key_id: "exporter:k1",
        }),
    )
    .unwrap()
}

fn option_sets(key: &InstanceKey) -> Vec<VerifyOptions> {
    let anonymous = TrustedKey {
        key_id: None,
        key: exporter().verifying_key(),
    };
    let named = TrustedKey {
        key_id: Some("exporter:k1".into()),
        key: exporter().verifying_key(),
    };
    let instance = TrustedKey {
        key_id: Some(key.key_id()),
        key: key.verifying_key(),
    };
    [
        vec![],
        vec![anonymous],
        vec![named.clone()],
        vec![named, instance],
    ]
    .into_iter()
    .flat_map(|trusted_keys| {
        [0, 1, 3].map(|threads| VerifyOptions {
            trusted_keys: trusted_keys.clone(),
            threads,
            ..VerifyOptions::default()
        })
    })
    .collect()
}

/// Reads in pieces of 1 to 13 bytes: every boundary of the streamed
/// parsers is crossed somewhere.
struct Dribble<'a> {
    data: &'a [u8],
    n: usize,
}

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.n = self.n % 13 + 1;
        let k = self.n.min(buf.len()).min(self.data.len());
        buf[..k].copy_from_slice(&self.data[..k]);
        self.data = &self.data[k..];
        Ok(k)
    }
}

/// The streamed report is the buffered one; `verify` gives it too.
#[track_caller]
fn assert_streams(bundle: &[u8], options: &VerifyOptions) -> Report {
    let buffered = verify_buffered(bundle, options);
    let streamed = match verify_reader(bundle, options) {
        Ok(r) => r,
        Err(bail) => panic!(
            "the streaming verifier stopped ({bail:?}); buffered: {}\n{:?}",
            buffered.human(),
            buffered.detail
        ),
    };
    assert_eq!(streamed, buffered);
    assert_eq!(verify(bundle, options), buffered);
    assert!(buffered.passed(), "{:?}", buffered.detail);
    buffered
}

/// Whatever the bundle, `verify` reports what the buffered verifier
/// reports, and the streaming verifier reports the same or stops.
#[track_caller]
fn assert_same(bundle: &[u8], options: &VerifyOptions) -> Report {
    let buffered = verify_buffered(bundle, options);
    assert_eq!(verify(bundle, options), buffered);
    if let Ok(streamed) = verify_reader(bundle, options) {
        assert_eq!(streamed, buffered);
    }
    buffered
}

fn unpack(bytes: &[u8]) -> Members {
    read_archive(bytes, &ReadLimits::default())
        .unwrap()
        .members
        .into_iter()
        .map(|m| (m.path, m.data))
        .collect()
}

fn get(members: &Members, path: &str) -> Vec<u8> {
    members.iter().find(|m| m.0 == path).unwrap().1.clone()
}

fn set(members: &mut Members, path: &str, data: Vec<u8>) {
    match members.iter_mut().find(|m| m.0 == path) {
        Some(m) => m.1 = data,
        None => members.push((path.to_owned(), data)),
    }
}

/// Recomputes the file hashes and Merkle roots; drops the signature.
fn rebuild_manifest(members: &mut Members) {
    let mut m: Value = serde_json::from_slice(&get(members, "manifest.json")).unwrap();
    let mut files: Vec<(String, String)> = members
        .iter()
        .filter(|(p, _)| p != "manifest.json")
        .map(|(p, d)| (p.clone(), sha256_of(d)))
        .collect();
    files.sort();
    m["files"] = files
        .into_iter()
        .map(|(path, sha256)| json!({"path": path, "sha256": sha256}))
        .collect();
    let ids: Vec<String> = get(members, "events.jsonl")
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .map(|v| v["event_id"].as_str().unwrap_or("").to_owned())
        .collect();
    m["event_merkle_root"] = event_merkle_root(&ids).into();
    m.as_object_mut().unwrap().remove("signature");
    set(
        members,
        "manifest.json",
        serde_json::to_vec_pretty(&m).unwrap(),
    );
}

#[test]
fn passing_bundles_stream_to_the_buffered_report() {
    let key = instance();
    let plain = input(sealed_lines(&key, 12, 3), &key);
    let proved = with_inclusion(&key, sealed_lines(&key, 40, 4));
    for (bundle, manifest_signed) in [
        (signed(&plain), true),
        (write_bundle(&plain, None).unwrap(), false),
        (signed(&proved), true),
        (write_bundle(&proved, None).unwrap(), false),
        (
            pack_members(&unpack(&signed(&proved)), false).unwrap(),
            true,
        ),
    ] {
        for options in option_sets(&key) {
            if manifest_signed || options.trusted_keys.is_empty() {
                assert_streams(&bundle, &options);
            } else {
                // Keys given, manifest unsigned: bundle.manifest_unsigned.
                assert_eq!(
                    assert_same(&bundle, &options).reason,
                    "bundle.manifest_unsigned"
                );
            }
        }
    }
    // What the checks found, on the signed bundle with proofs and a key.
    let report = assert_streams(
        &signed(&proved),
        &VerifyOptions {
            trusted_keys: vec![TrustedKey {
                key_id: None,
                key: exporter().verifying_key(),
            }],
            ..VerifyOptions::default()
        },
    );
    assert!(report.attested());
    assert_eq!(report.summary.events, 40);
    assert_eq!(report.summary.events_signature_verified, 40);
    assert_eq!(report.summary.chains, 4);
    assert_eq!(report.summary.inclusion_proofs_verified, 40);
    for finding in [
        "manifest.signature_valid",
        "run.signature_valid",
        "event_chains_valid:4",
        "checkpoint.signature_valid",
        "inclusion_proofs_valid:40",
        "bundle.verify_pass",
    ] {
        assert!(
            report.findings.contains(&finding.to_owned()),
            "{finding}: {:?}",
            report.findings
        );
    }
    assert_eq!(
        report
            .findings
            .iter()
            .filter(|f| *f == "event.signature_valid")
            .count(),
        40
    );
}

/// Thousands of events: many blocks of lines, many jobs, many proofs, read
/// in pieces of 1 to 13 bytes and whole.
#[test]
fn many_events_read_in_small_pieces() {
    let key = instance();
    let bundle = signed(&with_inclusion(&key, sealed_lines(&key, 3000, 7)));
    let options = VerifyOptions {
        trusted_keys: vec![TrustedKey {
            key_id: None,
            key: exporter().verifying_key(),
        }],
        threads: 2,
        ..VerifyOptions::default()
    };
    let buffered = assert_streams(&bundle, &options);
    assert_eq!(buffered.summary.inclusion_proofs_verified, 3000);
    let dribbled = verify_reader(
        Dribble {
            data: &bundle,
            n: 0,
        },
        &options,
    )
    .unwrap();
    assert_eq!(dribbled, buffered);
    let plain = pack_members(&unpack(&bundle), false).unwrap();
    let dribbled = verify_reader(Dribble { data: &plain, n: 5 }, &options).unwrap();
    assert_eq!(dribbled, verify_buffered(&plain, &options));
}

/// The reference tools' golden bundle (projections, unsigned records) and a
/// real daemon export stream to the buffered report.
#[test]
fn golden_and_daemon_bundles_stream() {
    let golden = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/intentproof-spec/golden/counterparty/counterparty-refund.proof.tar.zst"),
    )
    .unwrap();
    let report = assert_streams(&golden, &VerifyOptions::default());
    assert_eq!(report.summary.events_unsigned, 2);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/daemon-export");
    let bundle = std::fs::read(dir.join("ORD-1042.proof.tar.zst")).unwrap();
    let daemon_key = intentproof_bundle::parse_public_key_bytes(
        std::fs::read_to_string(dir.join("daemon.pub"))
            .unwrap()
            .trim()
            .as_bytes(),
    )
    .unwrap();
    for trusted_keys in [
        vec![],
        vec![TrustedKey {
            key_id: None,
            key: daemon_key,
        }],
    ] {
        assert_streams(
            &bundle,
            &VerifyOptions {
                trusted_keys,
                ..VerifyOptions::default()
            },
        );
    }
}

/// Forms the streaming path leaves to the buffered verifier, and edge
/// cases it handles: the report is the buffered one either way.
#[test]
fn unusual_forms_give_the_buffered_report() {
    let key = instance();
    let base = unpack(&signed(&with_inclusion(&key, sealed_lines(&key, 6, 2))));
    let no_key = VerifyOptions::default();
    let case = |edit: &dyn Fn(&mut Members)| -> Report {
        let mut m = base.clone();
        edit(&mut m);
        rebuild_manifest(&mut m);
        assert_same(&pack_members(&m, true).unwrap(), &no_key)
    };

    // run.json's members in reverse order: the same object, so its
    // signature verifies; the streaming path leaves it to the buffered one.
    let reversed = |m: &mut Members| {
        let run: Value = serde_json::from_slice(&get(m, "run.json")).unwrap();
        let members: Vec<String> = run
            .as_object()
            .unwrap()
            .iter()
            .rev()
            .map(|(k, v)| format!("{}: {v}", Value::from(k.as_str())))
            .collect();
        set(
            m,
            "run.json",
            format!("{{{}}}", members.join(", ")).into_bytes(),
        );
    };
    let r = case(&reversed);
    assert!(r.passed(), "{:?}", r.detail);
    assert!(r.findings.contains(&"run.signature_valid".to_owned()));
    let mut m = base.clone();
    reversed(&mut m);
    rebuild_manifest(&mut m);
    assert!(verify_reader(&pack_members(&m, true).unwrap()[..], &no_key).is_err());

    // flow.json that is not an object, or not JSON: nothing to compare.
    for flow in [
        &b"[1, 2]"[..],
        b"",
        b"  ",
        b"{\"flow_id\": \"x\", \"flow_id\": \"flow_1\"}",
    ] {
        let r = case(&|m| set(m, "flow.json", flow.to_vec()));
        assert!(r.passed(), "{flow:?}: {:?}", r.detail);
    }
    let r = case(&|m| set(m, "flow.json", b"{\"flow_id\": \"other\"}".to_vec()));
    assert_eq!(r.reason, "bundle.manifest_inconsistent");
    let r = case(&|m| {
        set(
            m,
            "flow.json",
            b"{\"flow_id\": \"flow_1\", \"tenant_id\": 7, \"e\": [{\"a\":1,\"a\":2}]}".to_vec(),
        )
    });
    assert!(r.passed(), "{:?}", r.detail);

    // CRLF line ends, a blank line, a missing final newline.
    let events = get(&base, "events.jsonl");
    let crlf: Vec<u8> = String::from_utf8(events.clone())
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes();
    let r = case(&|m| set(m, "events.jsonl", crlf.clone()));
    assert!(!r.passed()); // the proofs are over the LF lines
    let r = case(&|m| {
        let mut e = events.clone();
        e.push(b'\n');
        set(m, "events.jsonl", e);
    });
    assert_eq!(r.reason, "bundle.jsonl_invalid");
    let r = case(&|m| set(m, "events.jsonl", events[..events.len() - 1].to_vec()));
    assert!(r.passed(), "{:?}", r.detail);

    // inclusion_proof.json with its members in another order, or escaped ids.
    let proof: Value = serde_json::from_slice(&get(&base, "inclusion_proof.json")).unwrap();
    let proofs_first = format!(
        "{{\"proofs\": {}, \"schema\": {}, \"checkpoint\": {}}}",
        proof["proofs"], proof["schema"], proof["checkpoint"]
    );
    let r = case(&|m| set(m, "inclusion_proof.json", proofs_first.clone().into_bytes()));
    assert!(r.passed(), "{:?}", r.detail);
    let first = proof["proofs"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let escaped = serde_json::to_string(&proof).unwrap().replacen(
        &format!("\"{first}\":{{"),
        &format!("\"\\u{:04x}{}\":{{", first.as_bytes()[0], &first[1..]),
        1,
    );
    assert!(escaped.contains("\\u00"));
    let r = case(&|m| set(m, "inclusion_proof.json", escaped.clone().into_bytes()));
    assert!(r.passed(), "{:?}", r.detail);
}

/// Tampering anywhere: `verify` reports what the buffered verifier reports,
/// and whatever the streaming verifier reports (most of these: the file
/// hashes, the manifest's checks) is that report.
#[test]
fn tampered_bundles_give_the_buffered_report() {
    let key = instance();
    let members = unpack(&signed(&with_inclusion(&key, sealed_lines(&key, 4, 2))));
    let options = option_sets(&key);
    let (mut checked, mut streamed, mut failed) = (0, 0, 0);
    for (i, (path, data)) in members.iter().enumerate() {
        let stride = if path == "manifest.json" { 7 } else { 23 };
        for pos in (0..data.len()).step_by(stride) {
            let mut edited = members.clone();
            edited[i].1[pos] ^= 0x01;
            for rebuild in [false, true] {
                if rebuild {
                    if serde_json::from_slice::<Value>(&get(&edited, "manifest.json")).is_err() {
                        continue;
                    }
                    rebuild_manifest(&mut edited);
                }
                let bundle = pack_members(&edited, true).unwrap();
                let options = &options[checked % options.len()];
                let report = assert_same(&bundle, options);
                if verify_reader(&bundle[..], options).is_ok() {
                    streamed += 1;
                }
                if !report.passed() {
                    failed += 1;
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "{checked}");
    assert!(failed > checked / 2, "{failed} of {checked}");
    // The streaming path names most failures itself.
    assert!(streamed > checked / 2, "{streamed} of {checked}");
}

/// A member changed after export, the manifest left as it was: the
/// streaming path names the failing check itself (step 4 reads no event),
/// even when the change also breaks an event; an attacker who rebuilds the
/// manifest gets the buffered verifier's report of the broken chain.
#[test]
fn changed_members_are_reported_by_the_streaming_path() {
    let key = instance();
    let bundle = signed(&with_inclusion(&key, sealed_lines(&key, 300, 3)));
    let members = unpack(&bundle);
    let options = VerifyOptions {
        trusted_keys: vec![TrustedKey {
            key_id: None,
            key: exporter().verifying_key(),
        }],
        ..VerifyOptions::default()
    };
    for path in [
        "events.jsonl",
        "flow.json",
        "run.json",
        "inclusion_proof.json",
        "policy.json",
    ] {
        let mut m = members.clone();
        let mut data = get(&m, path);
        let at = data.len() / 2;
        // A digit or letter changed in place: the line stays JSON, the
        // chain (or the signature over it) breaks.
        data[at] = if data[at] == b'a' { b'b' } else { b'a' };
        set(&mut m, path, data);
        let tampered = pack_members(&m, true).unwrap();
        let buffered = verify_buffered(&tampered, &options);
        assert_eq!(buffered.reason, "bundle.file_hash_mismatch", "{path}");
        let streamed = verify_reader(&tampered[..], &options)
            .unwrap_or_else(|bail| panic!("{path}: stopped: {bail:?}"));
        assert_eq!(streamed, buffered, "{path}");

        // The manifest rebuilt: `verify` still reports what the buffered
        // verifier does (a broken chain or signature, or a pass where the
        // letter changed is not checked, e.g. in flow.json's list).
        rebuild_manifest(&mut m);
        let rebuilt = pack_members(&m, true).unwrap();
        assert_same(&rebuilt, &VerifyOptions::default());
    }
    // Cut short: the archive's own error, read from memory, is exact too.
    let cut = &bundle[..bundle.len() - 100];
    let report = verify(cut, &options);
    assert_eq!(report, verify_buffered(cut, &options));
    assert_eq!(report.reason, "bundle.archive_malformed");
}

/// An event signature that Ed25519 batch verification accepts and
/// `verify_strict` refuses: `R` is the identity (a point of small order)
/// and `s = k·a`, so `[s]B - [k]A - R` is the identity and every random
/// combination of it vanishes. The verifier used to accept it (its
/// signatures went through `ed25519_dalek::verify_batch` first); it now
/// accepts exactly what `verify_strict` accepts, on both paths.
#[test]
fn signature_acceptance_is_exactly_verify_strict() {
    use curve25519_dalek::scalar::Scalar;
    use sha2::Sha512;

    let key = instance();
    let mut lines = sealed_lines(&key, 3, 1);
    let mut event: serde_json::Map<String, Value> = serde_json::from_slice(&lines[0]).unwrap();
    let digest: [u8; 32] =
        Sha256::digest(canonicalize_object_without(&event, &["signature"]).unwrap()).into();
    let identity = {
        let mut r = [0u8; 32];
        r[0] = 1;
        r
    };
    let mut h = Sha512::new();
    h.update(identity);
    h.update(key.verifying_key().as_bytes());
    h.update(digest);
    let k = Scalar::from_hash(h);
    let s = k * key.signing_key().to_scalar();
    let mut raw = [0u8; 64];
    raw[..32].copy_from_slice(&identity);
    raw[32..].copy_from_slice(s.as_bytes());
    let forged = ed25519_dalek::Signature::from_bytes(&raw);
    let verifying = key.verifying_key();
    assert!(ed25519_dalek::verify_batch(&[&digest[..]], &[forged], &[verifying]).is_ok());
    assert!(verifying.verify_strict(&digest, &forged).is_err());

    event["signature"]["value"] = base64::engine::general_purpose::STANDARD.encode(raw).into();
    lines[0] = serde_json::to_vec(&event).unwrap();
    let bundle = signed(&input(lines, &key));
    let options = VerifyOptions {
        trusted_keys: vec![TrustedKey {
            key_id: None,
            key: exporter().verifying_key(),
        }],
        ..VerifyOptions::default()
    };
    let report = assert_same(&bundle, &options);
    assert_eq!(report.reason, "bundle.object_signature_invalid");
    assert!(
        report
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("signature invalid")),
        "{:?}",
        report.detail
    );
}
