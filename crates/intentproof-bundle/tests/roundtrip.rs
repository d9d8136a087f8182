//! Bundles we write: determinism, and every tampering fails with its own
//! reason, including an attacker who rebuilds the manifest but cannot sign.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use intentproof_bundle::archive::{ReadLimits, read_archive};
use intentproof_bundle::inclusion::{Checkpoint, EventProof, InclusionProofs};
use intentproof_bundle::manifest::sha256_of;
use intentproof_bundle::{
    BundleInput, ManifestSigner, Report, TrustedKey, VerifyOptions, pack_members, verify,
    verify_reader, write_bundle,
};
use intentproof_core::ExecutionEvent;
use intentproof_core::keys::InstanceKey;
use intentproof_core::merkle::{event_merkle_root, inclusion_proof, leaf_hash, root};
use intentproof_core::seal::{Sealer, sign_v1};
use intentproof_core::tlog::checkpoint::TlogCheckpoint;
use intentproof_core::tlog::note::{KeyType, Note, NoteSigner, NoteVerifier};
use intentproof_core::tlog::proof::TlogProof;
use serde_json::Value;

type Members = Vec<(String, Vec<u8>)>;

fn instance() -> InstanceKey {
    InstanceKey::from_seed("inst_test", [7u8; 32])
}

fn exporter() -> SigningKey {
    SigningKey::from_bytes(&[9u8; 32])
}

/// `n` sealed events over `chains` correlations, as exact JSON lines.
fn sealed_lines(key: &InstanceKey, n: usize, chains: usize) -> Vec<Vec<u8>> {
    let sealer = Sealer::new(key.clone()).with_tenant_id("tnt");
    (0..n)
        .map(|i| {
            let e = ExecutionEvent::builder("Refund", "stripe.refund.create")
                .correlation_id(format!("corr_{}", i % chains))
                .build();
            serde_json::to_vec(&sealer.seal(&e).unwrap().event).unwrap()
        })
        .collect()
}

fn input(events: Vec<Vec<u8>>, key: &InstanceKey) -> BundleInput {
    BundleInput {
        bundle_id: "bnd_1".into(),
        created_at: "2026-05-15T14:30:00Z".into(),
        flow_id: "flow_1".into(),
        tenant_id: "tnt".into(),
        flow: br#"{"flow_id":"flow_1","tenant_id":"tnt","events":[]}"#.to_vec(),
        events,
        attestations: vec![br#"{"attestation_id":"att_1","claim":"ok"}"#.to_vec()],
        policy: br#"{"policy_id":"pol_1","tenant_id":"tnt","rules":[]}"#.to_vec(),
        run: br#"{"run_id":"run_1","flow_id":"flow_1","tenant_id":"tnt","status":"pass"}"#.to_vec(),
        // The event signer's key, and the manifest signer's ([`signed`]).
        keys: BTreeMap::from([
            (key.key_id(), key.verifying_key()),
            ("exporter:k1".into(), exporter().verifying_key()),
        ]),
        export_profile: "full".into(),
        spec_version: "1.0.0".into(),
        ..BundleInput::default()
    }
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

fn with_key() -> VerifyOptions {
    VerifyOptions {
        trusted_keys: vec![TrustedKey {
            key_id: None,
            key: exporter().verifying_key(),
        }],
        ..VerifyOptions::default()
    }
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

fn lines(data: &[u8]) -> Vec<Vec<u8>> {
    data.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| l.iter().copied().chain([b'\n']))
        .collect()
}

/// What an attacker without the exporter's key can do: recompute every
/// file hash and Merkle root; keep the old signature or drop it.
fn rebuild_manifest(members: &mut Members, keep_signature: bool) {
    let mut m: Value = serde_json::from_slice(&get(members, "manifest.json")).unwrap();
    let mut files: Vec<(String, String)> = members
        .iter()
        .filter(|(p, _)| p != "manifest.json")
        .map(|(p, d)| (p.clone(), sha256_of(d)))
        .collect();
    files.sort();
    m["files"] = files
        .into_iter()
        .map(|(path, sha256)| serde_json::json!({"path": path, "sha256": sha256}))
        .collect();
    for (file, field, root_name) in [
        ("events.jsonl", "event_id", "event_merkle_root"),
        (
            "attestations.jsonl",
            "attestation_id",
            "attestation_merkle_root",
        ),
    ] {
        let ids: Vec<String> = lines(&get(members, file))
            .iter()
            .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
            .map(|v| v[field].as_str().unwrap_or("").to_owned())
            .collect();
        m[root_name] = event_merkle_root(&ids).into();
    }
    if !keep_signature {
        m.as_object_mut().unwrap().remove("signature");
    }
    set(
        members,
        "manifest.json",
        serde_json::to_vec_pretty(&m).unwrap(),
    );
}

fn check(members: &Members, options: &VerifyOptions) -> Report {
    verify(&pack_members(members, true).unwrap(), options)
}

fn assert_reason(report: &Report, reason: &str) {
    assert_eq!(
        report.reason,
        reason,
        "{}\n{:?}",
        report.human(),
        report.detail
    );
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn same_input_gives_the_same_bytes_and_verifies() {
    let key = instance();
    let input = input(sealed_lines(&key, 12, 3), &key);
    let a = signed(&input);
    let b = signed(&input);
    assert_eq!(a, b);
    assert_eq!(
        write_bundle(&input, None).unwrap(),
        write_bundle(&input, None).unwrap()
    );

    let report = verify(&a, &with_key());
    assert!(report.passed(), "{}\n{:?}", report.human(), report.detail);
    assert!(
        report
            .findings
            .contains(&"manifest.signature_valid".to_owned())
    );
    assert!(report.findings.contains(&"event_chains_valid:3".to_owned()));
    assert_eq!(report.summary.events_signature_verified, 12);
    assert_eq!(report.summary.chains, 3);
    assert_eq!(report.summary.manifest_signature, "valid");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // The JSON report is machine-readable.
    let json: Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["status"], "pass");
    assert_eq!(json["summary"]["events"], 12);

    // Members are sorted, mode 0644, mtime 0, owner 0/0, no names.
    let plain = zstd::decode_all(&a[..]).unwrap();
    let mut archive = tar::Archive::new(&plain[..]);
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        assert_eq!(h.mode().unwrap(), 0o644);
        assert_eq!(h.mtime().unwrap(), 0);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        assert_eq!(h.username().unwrap(), Some(""));
        names.push(entry.path().unwrap().to_string_lossy().into_owned());
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.contains(&"keys/inst_test:k1.pub".to_owned()));

    // Without a key: passes, and says it is unauthenticated.
    let report = verify(&a, &VerifyOptions::default());
    assert!(report.passed());
    assert_eq!(report.summary.manifest_signature, "unchecked");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("no key was given"))
    );
}

#[test]
fn dropping_or_reordering_events_fails() {
    let key = instance();
    let bundle = signed(&input(sealed_lines(&key, 6, 2), &key));
    let members = unpack(&bundle);
    let events = lines(&get(&members, "events.jsonl"));

    // Dropping a line: the file hash.
    let mut dropped = members.clone();
    let mut ev = events.clone();
    ev.remove(2);
    set(&mut dropped, "events.jsonl", join(&ev));
    assert_reason(&check(&dropped, &with_key()), "bundle.file_hash_mismatch");
    assert_reason(
        &check(&dropped, &VerifyOptions::default()),
        "bundle.file_hash_mismatch",
    );

    // The attacker rebuilds the manifest: the signature no longer holds ...
    let mut rebuilt = dropped.clone();
    rebuild_manifest(&mut rebuilt, true);
    assert_reason(&check(&rebuilt, &with_key()), "bundle.signature_invalid");
    // ... dropping it is refused when a key is given ...
    let mut unsigned = dropped.clone();
    rebuild_manifest(&mut unsigned, false);
    assert_reason(&check(&unsigned, &with_key()), "bundle.manifest_unsigned");
    // ... and even with no key at all, the chain shows the hole.
    let report = check(&unsigned, &VerifyOptions::default());
    assert_reason(&report, "bundle.chain_gap");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.starts_with("chain_gap:corr_0:"))
    );

    // Reordering two events of one chain (lines 0 and 2 are corr_0).
    let mut reordered = members.clone();
    let mut ev = events.clone();
    ev.swap(0, 2);
    set(&mut reordered, "events.jsonl", join(&ev));
    assert_reason(
        &check(&reordered, &VerifyOptions::default()),
        "bundle.file_hash_mismatch",
    );
    rebuild_manifest(&mut reordered, false);
    assert_reason(
        &check(&reordered, &VerifyOptions::default()),
        "bundle.chain_out_of_order",
    );

    // A duplicated line.
    let mut duplicated = members.clone();
    let mut ev = events.clone();
    ev.push(events[0].clone());
    set(&mut duplicated, "events.jsonl", join(&ev));
    rebuild_manifest(&mut duplicated, false);
    assert_reason(
        &check(&duplicated, &VerifyOptions::default()),
        "bundle.event_duplicate",
    );
}

#[test]
fn added_members_fail() {
    let key = instance();
    let bundle = signed(&input(sealed_lines(&key, 4, 1), &key));
    let mut members = unpack(&bundle);
    members.push(("notes.txt".into(), b"trust me".to_vec()));
    let report = check(&members, &VerifyOptions::default());
    assert_reason(&report, "bundle.member_unlisted");
    assert!(
        report
            .findings
            .contains(&"member_unlisted:notes.txt".to_owned())
    );
    // Listed by a rebuilt manifest: the signature catches it.
    rebuild_manifest(&mut members, true);
    assert_reason(&check(&members, &with_key()), "bundle.signature_invalid");
}

#[test]
fn replaced_keys_fail() {
    let key = instance();
    let original = input(sealed_lines(&key, 4, 1), &key);
    let members = unpack(&signed(&original));
    let forger = InstanceKey::from_seed("inst_test", [66u8; 32]);
    let key_path = "keys/inst_test:k1.pub";
    let forged_pem =
        intentproof_core::keys::public_key_to_pem(&forger.verifying_key()).into_bytes();

    // Raw replacement: the file hash.
    let mut replaced = members.clone();
    set(&mut replaced, key_path, forged_pem.clone());
    assert_reason(
        &check(&replaced, &VerifyOptions::default()),
        "bundle.file_hash_mismatch",
    );

    // Replaced, manifest rebuilt: the events no longer verify (reference step 8).
    rebuild_manifest(&mut replaced, false);
    assert_reason(
        &check(&replaced, &VerifyOptions::default()),
        "bundle.object_signature_invalid",
    );

    // The forger also re-signs every event: a verifier that knows the real
    // instance key by id sees the substitution.
    let mut resigned = replaced.clone();
    let events: Vec<Vec<u8>> = lines(&get(&members, "events.jsonl"))
        .iter()
        .map(|l| {
            let mut v: Value = serde_json::from_slice(l).unwrap();
            sign_v1(
                v.as_object_mut().unwrap(),
                forger.signing_key(),
                "inst_test:k1",
            )
            .unwrap();
            serde_json::to_vec(&v).unwrap()
        })
        .collect();
    set(&mut resigned, "events.jsonl", join(&events));
    rebuild_manifest(&mut resigned, false);
    let by_id = VerifyOptions {
        trusted_keys: vec![TrustedKey {
            key_id: Some("inst_test:k1".into()),
            key: key.verifying_key(),
        }],
        ..VerifyOptions::default()
    };
    assert_reason(&check(&resigned, &by_id), "bundle.key_mismatch");
    // With no key at all it is self-consistent, and the report says the
    // keys are the bundle's own.
    let report = check(&resigned, &VerifyOptions::default());
    assert!(report.passed(), "{}", report.human());
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("keys carried in the bundle itself"))
    );
    assert_eq!(report.summary.events_verified_with_unauthenticated_key, 4);
}

#[test]
fn unknown_keys_are_unverified_never_valid() {
    let key = instance();
    let mut no_keys = input(sealed_lines(&key, 3, 1), &key);
    no_keys.keys.clear();
    let bundle = signed(&no_keys);
    let report = verify(&bundle, &VerifyOptions::default());
    assert_reason(&report, "bundle.event_key_unknown");
    assert!(
        report
            .findings
            .contains(&"event.signature_key_unavailable".to_owned())
    );
    assert!(report.detail.unwrap().contains("inst_test:k1"));

    // Given by id, or without an id: verified (the exporter's key is given
    // by id: the bundle does not carry it).
    for key_id in [Some("inst_test:k1".to_owned()), None] {
        let mut options = VerifyOptions {
            trusted_keys: vec![TrustedKey {
                key_id: Some("exporter:k1".into()),
                key: exporter().verifying_key(),
            }],
            ..VerifyOptions::default()
        };
        options.trusted_keys.push(TrustedKey {
            key_id,
            key: key.verifying_key(),
        });
        let report = verify(&bundle, &options);
        assert!(report.passed(), "{}\n{:?}", report.human(), report.detail);
        assert_eq!(report.summary.events_signature_verified, 3);
    }
}

#[test]
fn strict_record_checks() {
    let key = instance();
    let members = unpack(&signed(&input(sealed_lines(&key, 4, 1), &key)));
    let events = lines(&get(&members, "events.jsonl"));
    let no_key = VerifyOptions::default();

    // A line that does not parse (the reference would skip it).
    let mut bad = members.clone();
    let mut ev = events.clone();
    ev.insert(1, b"{not json".to_vec());
    set(&mut bad, "events.jsonl", join(&ev));
    rebuild_manifest(&mut bad, false);
    let report = check(&bad, &no_key);
    assert_reason(&report, "bundle.jsonl_invalid");
    assert!(
        report
            .findings
            .contains(&"jsonl_invalid:events.jsonl:2".to_owned())
    );

    // A v1 event stripped of its signature.
    let mut stripped = members.clone();
    let mut ev = events.clone();
    let mut v: Value = serde_json::from_slice(&ev[3]).unwrap();
    v.as_object_mut().unwrap().remove("signature");
    ev[3] = serde_json::to_vec(&v).unwrap();
    set(&mut stripped, "events.jsonl", join(&ev));
    rebuild_manifest(&mut stripped, false);
    assert_reason(&check(&stripped, &no_key), "bundle.event_unsigned");

    // An event edited after signing (manifest rebuilt).
    let mut edited = members.clone();
    let mut ev = events.clone();
    let mut v: Value = serde_json::from_slice(&ev[1]).unwrap();
    v["action"] = "stripe.refund.cancel".into();
    ev[1] = serde_json::to_vec(&v).unwrap();
    set(&mut edited, "events.jsonl", join(&ev));
    rebuild_manifest(&mut edited, false);
    assert_reason(&check(&edited, &no_key), "bundle.object_signature_invalid");

    // Validly signed, but linked to the wrong predecessor.
    let mut relinked = members.clone();
    let mut ev = events.clone();
    let mut v: Value = serde_json::from_slice(&ev[2]).unwrap();
    v["prev_event_hash"] = format!("sha256:{}", "ab".repeat(32)).into();
    sign_v1(v.as_object_mut().unwrap(), key.signing_key(), &key.key_id()).unwrap();
    ev[2] = serde_json::to_vec(&v).unwrap();
    set(&mut relinked, "events.jsonl", join(&ev));
    rebuild_manifest(&mut relinked, false);
    assert_reason(&check(&relinked, &no_key), "bundle.chain_link_mismatch");

    // Two different events at one position.
    let mut forked = members.clone();
    let mut ev = events.clone();
    let mut v: Value = serde_json::from_slice(&ev[1]).unwrap();
    v["event_id"] = "evt_other".into();
    sign_v1(v.as_object_mut().unwrap(), key.signing_key(), &key.key_id()).unwrap();
    ev.insert(2, serde_json::to_vec(&v).unwrap());
    set(&mut forked, "events.jsonl", join(&ev));
    rebuild_manifest(&mut forked, false);
    assert_reason(&check(&forked, &no_key), "bundle.chain_fork");

    // The manifest's tenant disagrees with flow.json.
    let mut m: Value = serde_json::from_slice(&get(&members, "manifest.json")).unwrap();
    m["tenant_id"] = "tnt_other".into();
    let mut inconsistent = members.clone();
    set(
        &mut inconsistent,
        "manifest.json",
        serde_json::to_vec(&m).unwrap(),
    );
    assert_reason(
        &check(&inconsistent, &no_key),
        "bundle.manifest_inconsistent",
    );
}

fn with_inclusion(key: &InstanceKey, events: Vec<Vec<u8>>) -> BundleInput {
    // The store's log: two unrelated records, then the events, then one more.
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
    let proofs = events
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let id = serde_json::from_slice::<Value>(line).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned();
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

#[test]
fn inclusion_proofs_verify_and_tampering_fails() {
    let key = instance();
    let input = with_inclusion(&key, sealed_lines(&key, 5, 2));
    let bundle = signed(&input);
    let report = verify(&bundle, &with_key());
    assert!(report.passed(), "{}\n{:?}", report.human(), report.detail);
    assert!(
        report
            .findings
            .contains(&"checkpoint.signature_valid".to_owned())
    );
    assert!(
        report
            .findings
            .contains(&"inclusion_proofs_valid:5".to_owned())
    );
    assert_eq!(report.summary.inclusion_proofs_verified, 5);

    let members = unpack(&bundle);
    let proof: Value = serde_json::from_slice(&get(&members, "inclusion_proof.json")).unwrap();
    let no_key = VerifyOptions::default();

    let mut bad_hash = proof.clone();
    let first = bad_hash["proofs"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    bad_hash["proofs"][&first]["proof"][0] = "00".repeat(32).into();
    let mut m = members.clone();
    set(
        &mut m,
        "inclusion_proof.json",
        serde_json::to_vec(&bad_hash).unwrap(),
    );
    rebuild_manifest(&mut m, false);
    assert_reason(&check(&m, &no_key), "bundle.inclusion_proof_invalid");

    let mut missing = proof.clone();
    missing["proofs"].as_object_mut().unwrap().remove(&first);
    let mut m = members.clone();
    set(
        &mut m,
        "inclusion_proof.json",
        serde_json::to_vec(&missing).unwrap(),
    );
    rebuild_manifest(&mut m, false);
    assert_reason(&check(&m, &no_key), "bundle.inclusion_proof_missing");

    let mut moved = proof.clone();
    moved["checkpoint"]["tree_size"] = 99.into();
    let mut m = members.clone();
    set(
        &mut m,
        "inclusion_proof.json",
        serde_json::to_vec(&moved).unwrap(),
    );
    rebuild_manifest(&mut m, false);
    assert_reason(&check(&m, &no_key), "bundle.checkpoint_signature_invalid");
}

#[test]
fn store_checkpoints_are_accepted() {
    // A checkpoint signed by intentproof-store verifies here unchanged.
    let key = instance();
    let events = sealed_lines(&key, 3, 1);
    let leaves: Vec<_> = events.iter().map(|l| leaf_hash(l)).collect();
    let store_cp = intentproof_store::checkpoint::Checkpoint::sign(
        3,
        &root(&leaves),
        "2026-05-15T14:30:00.000Z",
        key.signing_key(),
        &key.key_id(),
    )
    .unwrap();
    let ours: Checkpoint =
        serde_json::from_value(serde_json::to_value(&store_cp).unwrap()).unwrap();
    ours.verify(&key.verifying_key()).unwrap();
    let mut input = input(events.clone(), &key);
    let proofs = events
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let id = serde_json::from_slice::<Value>(l).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned();
            (
                id,
                EventProof::new(i as u64, &inclusion_proof(&leaves, i).unwrap()),
            )
        })
        .collect();
    input.inclusion = Some(InclusionProofs::new(ours, proofs));
    let report = verify(&signed(&input), &with_key());
    assert!(report.passed(), "{}\n{:?}", report.human(), report.detail);
}

#[test]
fn every_single_byte_flip_of_a_signed_bundle_fails() {
    let key = instance();
    let input = with_inclusion(&key, sealed_lines(&key, 2, 1));
    let members = unpack(&signed(&input));
    // The exporter's key given with its id: the signature's key_id is bound too.
    let options = VerifyOptions {
        trusted_keys: vec![TrustedKey {
            key_id: Some("exporter:k1".into()),
            key: exporter().verifying_key(),
        }],
        ..VerifyOptions::default()
    };
    let mut checked = 0;
    for (i, (path, data)) in members.iter().enumerate() {
        // Every byte of the manifest; every third byte of the members it
        // hashes (the golden test flips every byte of those).
        let stride = if path == "manifest.json" { 1 } else { 3 };
        for pos in (0..data.len()).step_by(stride) {
            let mut edited = members.clone();
            edited[i].1[pos] ^= 0x01;
            let report = verify(&pack_members(&edited, false).unwrap(), &options);
            assert!(
                !report.passed(),
                "flipping byte {pos} of {path} was not detected"
            );
            checked += 1;
        }
    }
    assert!(checked > 1500, "{checked}");
}

/// The same matrix on a bundle a real daemon exported (`intentproof demo`;
/// see tests/fixtures/daemon-export/README.md): two signers, two chains,
/// inclusion proofs, a manifest signed by the daemon's key.
#[test]
fn real_daemon_export_tamper_matrix() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/daemon-export");
    let bundle = std::fs::read(dir.join("ORD-1042.proof.tar.zst")).unwrap();
    let daemon_key = intentproof_bundle::parse_public_key_bytes(
        std::fs::read_to_string(dir.join("daemon.pub"))
            .unwrap()
            .trim()
            .as_bytes(),
    )
    .unwrap();
    let members = unpack(&bundle);
    let manifest: Value = serde_json::from_slice(&get(&members, "manifest.json")).unwrap();
    // Given with its id, the key binds the signature's key_id too.
    let with_daemon_key = VerifyOptions {
        trusted_keys: vec![TrustedKey {
            key_id: Some(manifest["signature"]["key_id"].as_str().unwrap().to_owned()),
            key: daemon_key,
        }],
        ..VerifyOptions::default()
    };
    let report = verify(&bundle, &with_daemon_key);
    assert!(report.passed(), "{}\n{:?}", report.human(), report.detail);
    assert!(
        report
            .findings
            .contains(&"manifest.signature_valid".to_owned())
    );
    assert!(
        report
            .findings
            .contains(&"inclusion_proofs_valid:3".to_owned())
    );

    // Every byte of the manifest, every fifth byte of the members it hashes.
    let mut flipped = 0;
    for (i, (path, data)) in members.iter().enumerate() {
        let stride = if path == "manifest.json" { 1 } else { 5 };
        for pos in (0..data.len()).step_by(stride) {
            let mut edited = members.clone();
            edited[i].1[pos] ^= 0x01;
            let report = verify(&pack_members(&edited, false).unwrap(), &with_daemon_key);
            assert!(
                !report.passed(),
                "flipping byte {pos} of {path} was not detected"
            );
            if path != "manifest.json" {
                // run.json's run_id is checked against the manifest first (reference step 2).
                assert!(
                    report.reason == "bundle.file_hash_mismatch"
                        || (path == "run.json"
                            && report.reason == "bundle.verification_profile_invalid"),
                    "byte {pos} of {path}: {}",
                    report.reason
                );
            }
            flipped += 1;
        }
    }
    assert!(flipped > 3000, "{flipped}");

    // Dropping the first event of the gateway's two-event chain.
    let events = lines(&get(&members, "events.jsonl"));
    let first = events
        .iter()
        .position(|l| {
            let v: Value = serde_json::from_slice(l).unwrap();
            v["action"] == "intentproof.plan.declare"
        })
        .unwrap();
    let mut dropped = members.clone();
    let mut ev = events.clone();
    ev.remove(first);
    set(&mut dropped, "events.jsonl", join(&ev));
    assert_reason(
        &check(&dropped, &with_daemon_key),
        "bundle.file_hash_mismatch",
    );
    // The attacker recomputes every hash and root but cannot sign.
    let mut rebuilt = dropped.clone();
    rebuild_manifest(&mut rebuilt, true);
    assert_reason(
        &check(&rebuilt, &with_daemon_key),
        "bundle.signature_invalid",
    );
    let mut unsigned = dropped.clone();
    rebuild_manifest(&mut unsigned, false);
    assert_reason(
        &check(&unsigned, &with_daemon_key),
        "bundle.manifest_unsigned",
    );
    // With no key given, the chain still shows the hole.
    assert_reason(
        &check(&unsigned, &VerifyOptions::default()),
        "bundle.chain_gap",
    );

    // Reordering lines.
    let mut reordered = members.clone();
    let mut ev = events.clone();
    ev.reverse();
    set(&mut reordered, "events.jsonl", join(&ev));
    assert_reason(
        &check(&reordered, &with_daemon_key),
        "bundle.file_hash_mismatch",
    );

    // An added member.
    let mut added = members.clone();
    added.push(("notes.txt".into(), b"trust me".to_vec()));
    assert_reason(&check(&added, &with_daemon_key), "bundle.member_unlisted");

    // A replaced key: its hash, then (manifest rebuilt) the manifest signature,
    // then (unsigned, no key given) the events' own signatures.
    let key_path = members
        .iter()
        .map(|(p, _)| p.clone())
        .find(|p| p.starts_with("keys/"))
        .unwrap();
    let forged = intentproof_core::keys::public_key_to_pem(
        &InstanceKey::from_seed("inst_forger", [66u8; 32]).verifying_key(),
    )
    .into_bytes();
    let mut replaced = members.clone();
    set(&mut replaced, &key_path, forged);
    assert_reason(
        &check(&replaced, &with_daemon_key),
        "bundle.file_hash_mismatch",
    );
    let mut resigned_manifest = replaced.clone();
    rebuild_manifest(&mut resigned_manifest, true);
    assert_reason(
        &check(&resigned_manifest, &with_daemon_key),
        "bundle.signature_invalid",
    );
    rebuild_manifest(&mut replaced, false);
    assert_reason(
        &check(&replaced, &VerifyOptions::default()),
        "bundle.object_signature_invalid",
    );
}

/// The truncation attack: the last 5 events dropped, the Merkle root and
/// file hashes recomputed, the manifest signature stripped (or replaced by
/// the forger's own). Every check passes, so the verdict must be
/// unattested without a key (never [`Verdict::Attested`]), and the
/// exporter's key must fail it.
#[test]
fn a_truncated_bundle_is_never_attested() {
    use ed25519_dalek::Signer;
    use intentproof_bundle::{Attestation, EXIT_UNATTESTED, Verdict};

    let key = instance();
    let bundle = signed(&input(sealed_lines(&key, 8, 1), &key));
    let report = verify(&bundle, &with_key());
    assert_eq!(
        (report.attestation, report.verdict),
        (Attestation::Attested, Verdict::Attested)
    );
    assert_eq!(report.verdict.exit_code(), 0);
    assert_eq!(report.human_verdict(), report.human());
    assert_eq!(report.unattested_because(), None);

    let mut members = unpack(&bundle);
    let events = lines(&get(&members, "events.jsonl"));
    set(&mut members, "events.jsonl", join(&events[..3]));
    rebuild_manifest(&mut members, false);

    // No key: the checks pass (the reference form is a pass), the verdict is not.
    let report = check(&members, &VerifyOptions::default());
    assert!(report.passed(), "{}", report.human());
    assert_eq!(
        (report.attestation, report.verdict),
        (Attestation::ManifestUnsigned, Verdict::Unattested)
    );
    assert_eq!(report.verdict.exit_code(), EXIT_UNATTESTED);
    assert_eq!(report.what_verified(), "3 of 3 event signatures, 1 chain");
    assert_eq!(
        report.unattested_because().unwrap(),
        "the manifest is unsigned, so nothing binds this list of events to an exporter"
    );
    let verdict = report.human_verdict();
    assert_eq!(
        verdict.lines().next().unwrap(),
        "⚠ unattested: 3 of 3 event signatures, 1 chain verify, but the manifest is unsigned, \
         so nothing binds this list of events to an exporter: events may have been left out. \
         Pass --key with the exporter's public key"
    );
    assert!(
        verdict.ends_with("\n- bundle.verify_unattested\n"),
        "{verdict}"
    );
    assert!(!verdict.to_lowercase().contains("complete"), "{verdict}");
    let json: Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(
        (&json["attestation"], &json["verdict"]),
        (&"manifest_unsigned".into(), &"unattested".into())
    );
    // The exporter's key: the manifest must be signed.
    assert_reason(&check(&members, &with_key()), "bundle.manifest_unsigned");

    // Re-signed by the forger: unchecked without a key, invalid with the exporter's.
    let forger = SigningKey::from_bytes(&[3u8; 32]);
    let mut manifest: Value = serde_json::from_slice(&get(&members, "manifest.json")).unwrap();
    let digest =
        intentproof_bundle::manifest::manifest_digest(manifest.as_object().unwrap()).unwrap();
    manifest["signature"] = serde_json::json!({
        "alg": "ed25519",
        "key_id": "forger:k1",
        "value": forger
            .sign(&digest)
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    });
    set(
        &mut members,
        "manifest.json",
        serde_json::to_vec(&manifest).unwrap(),
    );
    let report = check(&members, &VerifyOptions::default());
    assert_eq!(
        (report.attestation, report.verdict),
        (Attestation::ManifestUnchecked, Verdict::Unattested)
    );
    assert_eq!(
        report.unattested_because().unwrap(),
        "the manifest is signed by key \"forger:k1\" and no key was given to check it (anyone \
         can sign with a key of their own)"
    );
    assert_reason(&check(&members, &with_key()), "bundle.signature_invalid");
}

/// `tlog-proofs.jsonl` lines for `events`, at leaves 2.. of a log of
/// `events.len() + 3` records, to a note signed under the daemon's origin
/// and cosigned by `witness`.
fn tlog_lines(
    key: &InstanceKey,
    events: &[Vec<u8>],
    witness: &NoteSigner,
) -> Vec<intentproof_bundle::inclusion::TlogProofLine> {
    let mut log: Vec<Vec<u8>> = vec![b"{\"x\":1}".to_vec(), b"{\"x\":2}".to_vec()];
    log.extend(events.iter().cloned());
    log.push(b"{\"x\":3}".to_vec());
    let leaves: Vec<_> = log.iter().map(|l| leaf_hash(l)).collect();
    let origin = "intentproof-gateway/inst_test";
    let signer = NoteSigner::from_key(origin, KeyType::Ed25519, key.signing_key().clone());
    let cp = TlogCheckpoint::new(origin, leaves.len() as u64, root(&leaves));
    let mut note = Note::new(cp.to_string()).unwrap();
    note.push(signer.sign(note.text(), 0).unwrap());
    note.push(witness.sign(note.text(), 1_765_000_000).unwrap());
    events
        .iter()
        .enumerate()
        .map(|(i, line)| intentproof_bundle::inclusion::TlogProofLine {
            event_id: serde_json::from_slice::<Value>(line).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned(),
            tlog_proof: TlogProof {
                extra: None,
                index: i as u64 + 2,
                hashes: inclusion_proof(&leaves, i + 2).unwrap(),
                checkpoint: note.clone(),
            }
            .to_string(),
            leaf_hash: None,
        })
        .collect()
}

#[test]
fn tlog_proofs_verify_with_witnesses_and_every_byte_of_one_matters() {
    let key = instance();
    let events = sealed_lines(&key, 3, 1);
    let witness = NoteSigner::new("witness.test/w", KeyType::Cosignature, [3u8; 32]);
    let other = NoteSigner::new("witness.test/v", KeyType::Cosignature, [4u8; 32]);
    let mut input = input(events.clone(), &key);
    input.tlog_proofs = tlog_lines(&key, &events, &witness);
    let bundle = signed(&input);
    let required = |witnesses: Vec<NoteVerifier>| VerifyOptions {
        witnesses,
        ..with_key()
    };

    let report = verify(&bundle, &required(vec![witness.verifier()]));
    assert!(report.passed(), "{}\n{:?}", report.human(), report.detail);
    assert_eq!(report.summary.tlog_proofs_verified, 3);
    assert_eq!(report.summary.witnesses_cosigned, vec!["witness.test/w"]);
    assert!(
        report
            .findings
            .contains(&"witness_cosigned:witness.test/w".to_owned())
    );
    assert!(
        report
            .what_verified()
            .ends_with("3 tlog-proofs, cosigned by witness.test/w")
    );
    // Without witnesses the proofs are still checked (and streaming
    // hands over to the buffered verifier: same report).
    let plain = verify(&bundle, &with_key());
    assert!(plain.passed());
    assert_eq!(plain.summary.tlog_proofs_verified, 3);
    // The streaming verifier checks them too, with the same report.
    for options in [with_key(), required(vec![witness.verifier()])] {
        let streamed = verify_reader(&bundle[..], &options).unwrap();
        assert_eq!(streamed, verify(&bundle, &options));
        assert_eq!(streamed.summary.tlog_proofs_verified, 3);
    }
    assert_reason(
        &verify(
            &bundle,
            &required(vec![witness.verifier(), other.verifier()]),
        ),
        "bundle.witness_cosignature_missing",
    );
    // A bundle without the member cannot satisfy a witness.
    let bare = signed(&self::input(events.clone(), &key));
    assert_reason(
        &verify(&bare, &required(vec![witness.verifier()])),
        "bundle.tlog_proof_missing",
    );

    // Every byte of the first line, flipped, fails (the manifest rebuilt
    // each time, so only the tlog-proof check can catch it).
    let members = unpack(&bundle);
    let data = get(&members, "tlog-proofs.jsonl");
    let first_len = data.iter().position(|b| *b == b'\n').unwrap();
    let no_key = VerifyOptions {
        witnesses: vec![witness.verifier()],
        ..VerifyOptions::default()
    };
    let mut m = members.clone();
    rebuild_manifest(&mut m, false);
    assert!(check(&m, &no_key).passed(), "the unsigned rebuild passes");
    for at in 0..first_len {
        let mut flipped = data.clone();
        flipped[at] ^= 0x01;
        let mut m = members.clone();
        set(&mut m, "tlog-proofs.jsonl", flipped);
        rebuild_manifest(&mut m, false);
        let report = check(&m, &no_key);
        // The streaming verifier stops (leaving it to the buffered one) or
        // reports the same.
        if let Ok(streamed) = verify_reader(&pack_members(&m, true).unwrap()[..], &no_key) {
            assert_eq!(streamed, report, "byte {at}");
        }
        assert!(
            [
                "bundle.tlog_proof_invalid",
                "bundle.witness_cosignature_missing"
            ]
            .contains(&report.reason.as_str()),
            "byte {at} ({:?}): {} {:?}",
            data[at] as char,
            report.reason,
            report.detail
        );
    }
}

/// The signer a manifest names is outside the signed bytes: a key given
/// without an id verifies the signature, but names nobody. The name holds
/// only when the bundle carries that key as `keys/<id>.pub` or the key was
/// given with that id; otherwise the report would claim a signer nothing
/// attests (and flipping a byte of the name would go unnoticed).
#[test]
fn a_manifest_signer_name_needs_its_key_bundled_or_given_by_id() {
    let key = instance();
    let mut input = input(sealed_lines(&key, 2, 1), &key);
    input.keys.remove("exporter:k1");
    let bundle = signed(&input);
    assert_reason(
        &verify(&bundle, &with_key()),
        "bundle.manifest_signer_unattested",
    );
    let by_id = VerifyOptions {
        trusted_keys: vec![TrustedKey {
            key_id: Some("exporter:k1".into()),
            key: exporter().verifying_key(),
        }],
        ..VerifyOptions::default()
    };
    assert!(verify(&bundle, &by_id).passed());
    let mut bundled = input.clone();
    bundled
        .keys
        .insert("exporter:k1".into(), exporter().verifying_key());
    let bundle = signed(&bundled);
    let report = verify(&bundle, &with_key());
    assert!(report.passed(), "{}", report.human());
    // Renaming the signer (one byte) is caught.
    let mut members = unpack(&bundle);
    let manifest = String::from_utf8(get(&members, "manifest.json")).unwrap();
    set(
        &mut members,
        "manifest.json",
        manifest
            .replace("\"exporter:k1\"", "\"exporter:k2\"")
            .into_bytes(),
    );
    assert_reason(
        &check(&members, &with_key()),
        "bundle.manifest_signer_unattested",
    );
}

/// A fleet bundle: the events of two daemons, each proven in its own log
/// against a checkpoint that daemon signed (`fleet_inclusion.json`).
#[test]
fn fleet_inclusion_proves_each_event_against_its_own_daemon() {
    use intentproof_bundle::inclusion::{FLEET_INCLUSION_SCHEMA, FleetEventProof, FleetInclusion};
    let daemons = [
        InstanceKey::from_seed("inst_a", [1u8; 32]),
        InstanceKey::from_seed("inst_b", [2u8; 32]),
    ];
    let mut events = Vec::new();
    let mut checkpoints = BTreeMap::new();
    let mut proofs = BTreeMap::new();
    for (d, key) in daemons.iter().enumerate() {
        let mine = sealed_lines(key, 2, 1);
        // Each daemon's log: d unrelated records, then its events.
        let mut log: Vec<Vec<u8>> = (0..=d)
            .map(|i| format!("{{\"x\":{i}}}").into_bytes())
            .collect();
        let first = log.len();
        log.extend(mine.iter().cloned());
        let leaves: Vec<_> = log.iter().map(|l| leaf_hash(l)).collect();
        checkpoints.insert(
            key.instance_id().to_owned(),
            Checkpoint::sign(
                leaves.len() as u64,
                &root(&leaves),
                "2026-05-15T14:30:00.000Z",
                key.signing_key(),
                &key.key_id(),
            )
            .unwrap(),
        );
        for (i, line) in mine.iter().enumerate() {
            let id = serde_json::from_slice::<Value>(line).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned();
            let index = first + i;
            proofs.insert(
                id,
                FleetEventProof {
                    daemon: key.instance_id().to_owned(),
                    leaf_index: index as u64,
                    proof: inclusion_proof(&leaves, index)
                        .unwrap()
                        .iter()
                        .map(intentproof_core::merkle::hex)
                        .collect(),
                },
            );
        }
        events.extend(mine);
    }
    let mut input = input(events, &daemons[0]);
    input
        .keys
        .insert(daemons[1].key_id(), daemons[1].verifying_key());
    input.fleet_inclusion = Some(FleetInclusion {
        schema: FLEET_INCLUSION_SCHEMA.into(),
        checkpoints,
        proofs,
    });
    let bundle = signed(&input);
    let report = verify(&bundle, &with_key());
    assert!(report.passed(), "{}\n{:?}", report.human(), report.detail);
    assert_eq!(report.summary.inclusion_proofs_verified, 4);
    let signed_checkpoints = report
        .findings
        .iter()
        .filter(|f| *f == "checkpoint.signature_valid")
        .count();
    assert_eq!(signed_checkpoints, 2);
    // The streaming verifier hands fleet bundles to the buffered one.
    assert!(verify_reader(&bundle[..], &with_key()).is_err());

    let members = unpack(&bundle);
    let doc: Value = serde_json::from_slice(&get(&members, "fleet_inclusion.json")).unwrap();
    let no_key = VerifyOptions::default();
    let tampered = |edit: &dyn Fn(&mut Value)| {
        let mut doc = doc.clone();
        edit(&mut doc);
        let mut m = members.clone();
        set(
            &mut m,
            "fleet_inclusion.json",
            serde_json::to_vec(&doc).unwrap(),
        );
        rebuild_manifest(&mut m, false);
        check(&m, &no_key)
    };
    let first = doc["proofs"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, p)| p["daemon"] == "inst_a")
        .map(|(id, _)| id.clone())
        .unwrap();
    // An event of daemon a claimed by daemon b's log.
    let report = tampered(&|d| d["proofs"][&first]["daemon"] = "inst_b".into());
    assert_reason(&report, "bundle.inclusion_proof_invalid");
    // A checkpoint filed under another daemon's name.
    let report = tampered(&|d| {
        let checkpoints = d["checkpoints"].as_object_mut().unwrap();
        let (a, b) = (checkpoints["inst_a"].clone(), checkpoints["inst_b"].clone());
        checkpoints.insert("inst_a".into(), b);
        checkpoints.insert("inst_b".into(), a);
    });
    assert_reason(&report, "bundle.inclusion_proof_malformed");
    // A proof left out, one hash changed, a daemon's checkpoint missing.
    let report = tampered(&|d| {
        d["proofs"].as_object_mut().unwrap().remove(&first);
    });
    assert_reason(&report, "bundle.inclusion_proof_missing");
    let report = tampered(&|d| d["proofs"][&first]["proof"][0] = "00".repeat(32).into());
    assert_reason(&report, "bundle.inclusion_proof_invalid");
    let report = tampered(&|d| {
        d["checkpoints"].as_object_mut().unwrap().remove("inst_a");
    });
    assert_reason(&report, "bundle.inclusion_proof_invalid");
}
