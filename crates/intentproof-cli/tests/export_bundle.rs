//! `intentproof export`: a real gateway session (a declared two-step plan,
//! one step called) exported as a proof bundle. Two exports are
//! byte-identical, `intentproof verify` passes the bundle and fails it once
//! one byte is flipped. The `auditor` and `counterparty` profiles carry
//! event projections: no payload, withheld fields as hashes, and every
//! tampering fails with its own reason. `minimal-claim` is refused (400)
//! and an unknown correlation is not found (404).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

mod common;

use common::{BIN, start_daemon, start_gateway};

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn export(correlation: &str, out: &Path, profile: &str, dir: &Path) -> Output {
    run(
        &[
            "export",
            correlation,
            "-o",
            out.to_str().unwrap(),
            "--profile",
            profile,
        ],
        dir,
    )
}

/// `intentproof verify --key KEY FILE`.
fn verify(file: &Path, key: &Path) -> Output {
    Command::new(BIN)
        .arg("verify")
        .arg("--key")
        .arg(key)
        .arg(file)
        .output()
        .unwrap()
}

/// The exporter's (the daemon's) public key as the README has reviewers
/// get it: `intentproof keys show` on the daemon's data dir, saved to a file.
fn exporter_key(dir: &Path, out: &Path) -> std::path::PathBuf {
    let shown = run(&["keys", "show"], dir);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let file = out.join("exporter.pub");
    std::fs::write(&file, &shown.stdout).unwrap();
    file
}

/// Records a session: a declared two-step plan and one of its steps.
/// Returns the session's correlation id.
fn record_session(dir: &Path) -> String {
    record_session_for(dir, "ORD-7")
}

/// [`record_session`], refunding order `order` (the plan's intent names
/// ORD-7 whatever `order` is).
fn record_session_for(dir: &Path, order: &str) -> String {
    let (mut gateway, mut agent) = start_gateway(dir, "payments", &[]);
    agent.request(1, "initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "export-agent", "version": "1"}}));
    let declared = agent.call(
        2,
        "intentproof_declare_plan",
        json!({
            "intent": "refund order ORD-7 and email the receipt",
            "steps": [
                {"tool": "refund_payment", "purpose": "Refund the card"},
                {"tool": "send_receipt_email", "purpose": "Email the receipt"}
            ]
        }),
    );
    assert!(
        declared["result"]["structuredContent"]["plan_id"].is_string(),
        "{declared}"
    );
    let refund = agent.call(
        3,
        "refund_payment",
        json!({"order_id": order, "amount_cents": 1250}),
    );
    assert_eq!(refund["result"]["structuredContent"]["status"], "succeeded");
    drop(agent);
    let status = gateway.0.wait().unwrap();
    assert!(status.success(), "gateway exited with {status}");

    let plans = run(&["plans", "--json"], dir);
    assert!(plans.status.success());
    let plans: Value = serde_json::from_slice(&plans.stdout).unwrap();
    plans["plans"][0]["correlation_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_recorded_session_exports_to_a_deterministic_bundle_that_verifies() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let _daemon = start_daemon(&dir);
    let correlation = record_session(&dir);

    // The declaration, the refund, and the plan's close when the session
    // ended are stored.
    let events = run(&["events", "--json", "--correlation", &correlation], &dir);
    let events: Value = serde_json::from_slice(&events.stdout).unwrap();
    assert_eq!(events["events"].as_array().unwrap().len(), 3, "{events}");

    // The plans table keeps its columns aligned for the longest state.
    let plans: Value = serde_json::from_slice(&run(&["plans", "--json"], &dir).stdout).unwrap();
    let plan_id = plans["plans"][0]["plan_id"].as_str().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run(&["plans"], &dir).stdout),
        format!(
            "PLAN                                   STATE                  STEPS CALLS FLAGS INTENT\n\
             {plan_id}   closed (session_ended)     2     1     1 refund order ORD-7 and email the receipt\n\
             1 plan\n"
        )
    );

    let first = temp.path().join("first.proof.tar.zst");
    let second = temp.path().join("second.proof.tar.zst");
    for out in [&first, &second] {
        let exported = export(&correlation, out, "full", &dir);
        assert!(
            exported.status.success(),
            "export: {}",
            String::from_utf8_lossy(&exported.stderr)
        );
        // The hint a new user follows names the key: `verify` without one
        // can only answer "unattested".
        assert_eq!(
            String::from_utf8_lossy(&exported.stdout),
            format!(
                "wrote {0} ({1} bytes, profile full); check it with `intentproof verify --key KEY {0}` (KEY: what `intentproof keys show` prints on the daemon's host)\n",
                out.display(),
                std::fs::metadata(out).unwrap().len()
            )
        );
    }
    let a = std::fs::read(&first).unwrap();
    let b = std::fs::read(&second).unwrap();
    assert!(!a.is_empty());
    assert_eq!(a, b, "two exports of an unchanged correlation differ");

    let key = exporter_key(&dir, temp.path());
    let verified = verify(&first, &key);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "verify: {stdout}\n{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert_eq!(stdout.lines().next(), Some("✓ pass: bundle.verify_pass"));
    for expected in [
        "- manifest.signature_valid",
        "- event_chains_valid:1",
        "- checkpoint.signature_valid",
        "- inclusion_proofs_valid:3",
    ] {
        assert!(
            stdout.lines().any(|l| l == expected),
            "{expected}: {stdout}"
        );
    }

    // flow.json, policy.json and run.json follow the spec schemas; the
    // policy is the declared plan's, and its run sees the missing step.
    let archive =
        intentproof_bundle::read_archive(&a, &intentproof_bundle::ReadLimits::default()).unwrap();
    let doc = |name: &str| -> Value { serde_json::from_slice(archive.get(name).unwrap()).unwrap() };
    use intentproof_core::schema::{SchemaKind, validate};
    for (name, kind) in [
        ("flow.json", SchemaKind::Flow),
        ("policy.json", SchemaKind::Policy),
        ("run.json", SchemaKind::Run),
    ] {
        if let Err(errors) = validate(kind, &doc(name)) {
            panic!("{name}: {errors:?}");
        }
    }
    assert!(
        doc("policy.json")["policy_id"]
            .as_str()
            .unwrap()
            .starts_with("plan.")
    );
    assert_eq!(doc("run.json")["status"], "fail");
    assert_eq!(doc("flow.json")["correlation_id"], correlation.as_str());

    // `verify explain` says, in words, what was meant, what ran, and which
    // step is missing; `verify replay` prints the failing run.
    let explained = Command::new(BIN)
        .args(["verify", "explain", "--key"])
        .arg(&key)
        .arg(&first)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&explained.stdout);
    assert_eq!(
        explained.status.code(),
        Some(1),
        "an incomplete intent exits 1: {text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let daemon_key_id = String::from_utf8(run(&["keys", "show"], &dir).stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("key_id: ").map(str::to_owned))
        .unwrap();
    let n = jsonl(&get(&unpack(&a), "events.jsonl")).len();
    assert_eq!(
        lines[0],
        format!(
            "Integrity: ✓ pass (bundle.verify_pass), attested by key {daemon_key_id}: {n} of {n} \
             event signatures, 1 chain, {n} inclusion proofs, {n} tlog-proofs verify, and the key's holder (the \
             exporter) vouches that these are the events it exported, none added, changed or \
             left out since."
        ),
        "{text}"
    );
    assert!(
        lines.contains(&"What was intended: refund order ORD-7 and email the receipt"),
        "{text}"
    );
    assert!(text.contains("mcp.payments.refund_payment"), "{text}");
    let verdict = lines.iter().find(|l| l.starts_with("Verdict: ")).unwrap();
    assert!(
        verdict.starts_with("Verdict: INCOMPLETE. Missing or failed: ")
            && verdict.contains("`mcp.payments.send_receipt_email`"),
        "{verdict}"
    );
    let replayed = Command::new(BIN)
        .args(["verify", "replay"])
        .arg(&first)
        .output()
        .unwrap();
    assert_eq!(replayed.status.code(), Some(1));
    let run: Value = serde_json::from_slice(&replayed.stdout).unwrap();
    assert_eq!(run["schema"], "intentproof.run.v1");
    assert_eq!(run["status"], "fail");

    // One flipped byte in the middle: the bundle fails.
    let mut tampered = a.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    let broken = temp.path().join("broken.proof.tar.zst");
    std::fs::write(&broken, &tampered).unwrap();
    let failed = verify(&broken, &key);
    assert_eq!(
        failed.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&failed.stdout)
    );
    assert!(String::from_utf8_lossy(&failed.stdout).starts_with("✗ fail: "));
}

#[test]
fn minimal_claim_is_refused_and_unknown_correlations_are_not_found() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let _daemon = start_daemon(&dir);
    let correlation = record_session(&dir);
    let out = temp.path().join("x.proof.tar.zst");

    let refused = export(&correlation, &out, "minimal-claim", &dir);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("400")
            && stderr.contains(
                "export profile \"minimal-claim\" is not available: the profiles are full, auditor and counterparty"
            ),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written on a refusal");

    let missing = export("corr_that_never_was", &out, "full", &dir);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("404") && stderr.contains("corr_that_never_was"),
        "{stderr}"
    );
    assert!(!out.exists());
}

type Members = Vec<(String, Vec<u8>)>;

fn unpack(bytes: &[u8]) -> Members {
    intentproof_bundle::read_archive(bytes, &intentproof_bundle::ReadLimits::default())
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
    members.iter_mut().find(|m| m.0 == path).unwrap().1 = data;
}

fn jsonl(data: &[u8]) -> Vec<Value> {
    data.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

fn to_jsonl(values: &[Value]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| {
            let mut line = serde_json::to_vec(v).unwrap();
            line.push(b'\n');
            line
        })
        .collect()
}

/// Every member's name and bytes, uncompressed (the tar stream).
fn plain_tar(bundle: &[u8]) -> Vec<u8> {
    intentproof_bundle::pack_members(&unpack(bundle), false).unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// What an attacker without the daemon's key can do: recompute every file
/// hash and the event Merkle root; keep the old signature or drop it.
fn rebuild_manifest(members: &mut Members, keep_signature: bool) {
    let mut m: Value = serde_json::from_slice(&get(members, "manifest.json")).unwrap();
    let mut files: Vec<(String, String)> = members
        .iter()
        .filter(|(p, _)| p != "manifest.json")
        .map(|(p, d)| (p.clone(), intentproof_bundle::manifest::sha256_of(d)))
        .collect();
    files.sort();
    m["files"] = files
        .into_iter()
        .map(|(path, sha256)| json!({"path": path, "sha256": sha256}))
        .collect();
    let ids: Vec<String> = jsonl(&get(members, "events.jsonl"))
        .iter()
        .map(|v| v["event_id"].as_str().unwrap().to_owned())
        .collect();
    m["event_merkle_root"] = intentproof_core::merkle::event_merkle_root(&ids).into();
    if !keep_signature {
        m.as_object_mut().unwrap().remove("signature");
    }
    set(
        members,
        "manifest.json",
        serde_json::to_vec_pretty(&m).unwrap(),
    );
}

/// The key id that signed the manifest of a bundle.
fn manifest_signer(members: &Members) -> String {
    let manifest: Value = serde_json::from_slice(&get(members, "manifest.json")).unwrap();
    manifest["signature"]["key_id"].as_str().unwrap().to_owned()
}

/// `intentproof verify` of `members` (plus `args`): exit code, first
/// stdout line, stdout.
fn verify_members(members: &Members, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let file = dir.join("edited.proof.tar.zst");
    std::fs::write(
        &file,
        intentproof_bundle::pack_members(members, true).unwrap(),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("verify")
        .args(args)
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.code(),
        stdout.lines().next().unwrap_or("").to_owned(),
        stdout,
    )
}

fn export_bytes(correlation: &str, profile: &str, name: &str, temp: &Path, dir: &Path) -> Vec<u8> {
    let out = temp.join(name);
    let exported = export(correlation, &out, profile, dir);
    assert!(
        exported.status.success(),
        "export {profile}: {}",
        String::from_utf8_lossy(&exported.stderr)
    );
    std::fs::read(&out).unwrap()
}

/// `"sha256:" + hex(SHA-256(JCS(value)))`, computed here independently.
fn jcs_sha256(value: &Value) -> String {
    let canonical = intentproof_core::canon::canonicalize(value).unwrap();
    intentproof_bundle::manifest::sha256_of(&canonical)
}

/// The order id (an input) and refund id (an output) of the session.
const SECRET_INPUT: &str = "ORD-QX81";
const SECRET_OUTPUT: &str = "re_ord_qx81";

#[test]
fn auditor_and_counterparty_bundles_withhold_payloads_and_verify() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let _daemon = start_daemon(&dir);
    let correlation = record_session_for(&dir, SECRET_INPUT);
    let key = exporter_key(&dir, temp.path());

    let full = export_bytes(
        &correlation,
        "full",
        "full.proof.tar.zst",
        temp.path(),
        &dir,
    );
    let full_tar = plain_tar(&full);
    assert!(contains(&full_tar, SECRET_INPUT) && contains(&full_tar, SECRET_OUTPUT));
    let full_members = unpack(&full);
    let full_events = jsonl(&get(&full_members, "events.jsonl"));
    let full_lines: Vec<Vec<u8>> = get(&full_members, "events.jsonl")
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(full_events.len(), 3);
    let replay_full = Command::new(BIN)
        .args(["verify", "replay"])
        .arg(temp.path().join("full.proof.tar.zst"))
        .output()
        .unwrap();

    for (profile, withheld) in [
        ("auditor", vec!["inputs", "output", "untrusted_payload"]),
        (
            "counterparty",
            vec![
                "attributes",
                "inputs",
                "intent",
                "output",
                "provenance_class",
                "redaction_summary",
                "sdk_version",
                "untrusted_payload",
            ],
        ),
    ] {
        let name = format!("{profile}.proof.tar.zst");
        let a = export_bytes(&correlation, profile, &name, temp.path(), &dir);
        let b = export_bytes(
            &correlation,
            profile,
            "again.proof.tar.zst",
            temp.path(),
            &dir,
        );
        assert_eq!(a, b, "two {profile} exports differ");

        // Verifies, and says what the projection proves. Without a key the
        // manifest is checked with the key the bundle carries, which
        // attests nothing: unattested, exit 3.
        let unattested = Command::new(BIN)
            .arg("verify")
            .arg(temp.path().join(&name))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&unattested.stdout);
        assert_eq!(unattested.status.code(), Some(3), "{profile}: {stdout}");
        let exported = unpack(&std::fs::read(temp.path().join(&name)).unwrap());
        let signer = manifest_signer(&exported);
        let n = jsonl(&get(&exported, "events.jsonl")).len();
        assert_eq!(
            stdout.lines().next().unwrap(),
            format!(
                "⚠ unattested: {n} of {n} event signatures, 1 chain, {n} inclusion proofs, {n} tlog-proofs verify, but \
                 the manifest signature verifies only with the key {signer:?} the bundle itself \
                 carries, which nothing outside the bundle vouches for: events may have been left \
                 out. Pass --key with the exporter's public key"
            )
        );
        assert!(
            stdout.ends_with(
                "\n- manifest.signature_valid_with_bundled_key\n- projection.\
                              {profile}:visible_fields_attested_by_bundle_signer\n- \
                              bundle.verify_unattested\n"
                    .replace("{profile}", profile)
                    .as_str()
            ),
            "{stdout}"
        );
        let verified = verify(&temp.path().join(&name), &key);
        let stdout = String::from_utf8_lossy(&verified.stdout);
        assert_eq!(verified.status.code(), Some(0), "{profile}: {stdout}");
        assert_eq!(stdout.lines().next(), Some("✓ pass: bundle.verify_pass"));
        for expected in [
            "- manifest.signature_valid".to_owned(),
            "- projection_signatures_valid:3".to_owned(),
            "- event_chains_valid:1".to_owned(),
            "- checkpoint.signature_valid".to_owned(),
            "- inclusion_proofs_valid:3".to_owned(),
            format!("- projection.{profile}:visible_fields_attested_by_bundle_signer"),
        ] {
            assert!(
                stdout.lines().any(|l| l == expected),
                "{expected}: {stdout}"
            );
        }

        // No payload anywhere in the archive.
        let tar = plain_tar(&a);
        assert!(!contains(&tar, SECRET_INPUT), "{profile} shows the input");
        assert!(!contains(&tar, SECRET_OUTPUT), "{profile} shows the output");

        // Each line projects the stored event.
        let members = unpack(&a);
        let manifest: Value = serde_json::from_slice(&get(&members, "manifest.json")).unwrap();
        assert_eq!(manifest["verification_profile"]["export_profile"], profile);
        assert_eq!(
            manifest["event_merkle_root"],
            serde_json::from_slice::<Value>(&get(&full_members, "manifest.json")).unwrap()["event_merkle_root"]
        );
        assert_eq!(get(&members, "run.json"), get(&full_members, "run.json"));
        assert_eq!(
            get(&members, "policy.json"),
            get(&full_members, "policy.json")
        );
        let inclusion: Value =
            serde_json::from_slice(&get(&members, "inclusion_proof.json")).unwrap();
        let projections = jsonl(&get(&members, "events.jsonl"));
        assert_eq!(projections.len(), 3);
        for ((p, e), line) in projections.iter().zip(&full_events).zip(&full_lines) {
            let e = e.as_object().unwrap();
            let p = p.as_object().unwrap();
            assert_eq!(p["schema"], "intentproof.event.projection.v1");
            assert_eq!(p["projection"], profile);
            assert_eq!(p["event_signature"], e["signature"]);
            let mut unsigned = e.clone();
            unsigned.remove("signature");
            assert_eq!(
                p["content_hash"],
                jcs_sha256(&Value::Object(unsigned)).as_str()
            );
            let w = p["withheld"].as_object().unwrap();
            let mut names: Vec<&str> = w.keys().map(String::as_str).collect();
            names.sort_unstable();
            // Of the fields the profile withholds, those the event has (the
            // plan's close has no output).
            let expected: Vec<&str> = withheld
                .iter()
                .copied()
                .filter(|f| e.contains_key(*f))
                .collect();
            assert_eq!(names, expected, "{profile} withheld");
            for (field, hash) in w {
                assert_eq!(hash, &jcs_sha256(&e[field]), "{profile} withheld.{field}");
            }
            for (field, value) in p {
                if ![
                    "schema",
                    "projection",
                    "withheld",
                    "content_hash",
                    "event_signature",
                ]
                .contains(&field.as_str())
                {
                    assert_eq!(value, &e[field], "{profile} {field}");
                }
            }
            assert_eq!(
                inclusion["proofs"][e["event_id"].as_str().unwrap()]["leaf_hash"],
                intentproof_core::merkle::hex(&intentproof_core::merkle::leaf_hash(line)).as_str()
            );
        }

        // The plan's rules read actions only: the replay equals the full one.
        let replayed = Command::new(BIN)
            .args(["verify", "replay"])
            .arg(temp.path().join(&name))
            .output()
            .unwrap();
        assert_eq!(replayed.status.code(), Some(1));
        assert_eq!(replayed.stdout, replay_full.stdout);
        assert!(
            replayed.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&replayed.stderr)
        );
    }
}

#[test]
fn tampered_projection_bundles_fail_with_their_own_reason() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let _daemon = start_daemon(&dir);
    let correlation = record_session_for(&dir, SECRET_INPUT);
    let t = temp.path();

    for profile in ["counterparty", "auditor"] {
        let bundle = export_bytes(&correlation, profile, "p.proof.tar.zst", t, &dir);
        let members = unpack(&bundle);
        let events = jsonl(&get(&members, "events.jsonl"));
        let fail = |m: &Members, args: &[&str]| verify_members(m, t, args).1;
        assert!(
            fail(&members, &[]).starts_with("⚠ unattested: "),
            "{}",
            fail(&members, &[])
        );

        // The daemon's public key, given with its id.
        let manifest: Value = serde_json::from_slice(&get(&members, "manifest.json")).unwrap();
        let key_id = manifest["signature"]["key_id"].as_str().unwrap().to_owned();
        let key_file = t.join("daemon.pub");
        std::fs::write(&key_file, get(&members, &format!("keys/{key_id}.pub"))).unwrap();
        let key_arg = format!("{key_id}={}", key_file.display());
        let with_key = ["--key", key_arg.as_str()];
        assert_eq!(fail(&members, &with_key), "✓ pass: bundle.verify_pass");

        // A kept field edited: its file hash.
        let mut edited = events.clone();
        edited[1]["status"] = "error".into();
        let mut m = members.clone();
        set(&mut m, "events.jsonl", to_jsonl(&edited));
        assert_eq!(fail(&m, &[]), "✗ fail: bundle.file_hash_mismatch");
        // ... with the manifest rebuilt but not re-signed: the signature
        // (only it attests a projection's visible fields), key given or not.
        rebuild_manifest(&mut m, true);
        assert_eq!(fail(&m, &with_key), "✗ fail: bundle.signature_invalid");
        let (code, first, stdout) = verify_members(&m, t, &[]);
        assert_eq!(
            (code, first.as_str()),
            (Some(1), "✗ fail: bundle.signature_invalid")
        );
        assert!(
            stdout.contains("- manifest.signature_invalid\n"),
            "{stdout}"
        );
        // ... with the signature dropped: nothing attests the fields.
        let mut unsigned = m.clone();
        rebuild_manifest(&mut unsigned, false);
        assert_eq!(fail(&unsigned, &[]), "✗ fail: bundle.projection_unattested");
        assert_eq!(
            fail(&unsigned, &with_key),
            "✗ fail: bundle.manifest_unsigned"
        );

        // A content hash changed: the event signature no longer covers it.
        let mut edited = events.clone();
        edited[0]["content_hash"] = format!("sha256:{}", "ab".repeat(32)).into();
        let mut m = members.clone();
        set(&mut m, "events.jsonl", to_jsonl(&edited));
        rebuild_manifest(&mut m, true);
        assert_eq!(fail(&m, &[]), "✗ fail: bundle.event_signature_invalid");

        // The first event dropped: the chain has a gap.
        let mut m = members.clone();
        set(&mut m, "events.jsonl", to_jsonl(&events[1..]));
        rebuild_manifest(&mut m, true);
        assert_eq!(fail(&m, &[]), "✗ fail: bundle.chain_gap");

        // The event signer's key removed: the events are unverified, never valid.
        let signer = events[0]["event_signature"]["key_id"].as_str().unwrap();
        let mut m = members.clone();
        m.retain(|(path, _)| *path != format!("keys/{signer}.pub"));
        assert_eq!(m.len(), members.len() - 1);
        rebuild_manifest(&mut m, true);
        assert_eq!(fail(&m, &[]), "✗ fail: bundle.event_key_unknown");

        // A projected event's leaf hash removed: its inclusion proof fails.
        let mut inclusion: Value =
            serde_json::from_slice(&get(&members, "inclusion_proof.json")).unwrap();
        let first_id = events[0]["event_id"].as_str().unwrap();
        inclusion["proofs"][first_id]
            .as_object_mut()
            .unwrap()
            .remove("leaf_hash");
        let mut m = members.clone();
        set(
            &mut m,
            "inclusion_proof.json",
            serde_json::to_vec(&inclusion).unwrap(),
        );
        rebuild_manifest(&mut m, true);
        assert_eq!(fail(&m, &[]), "✗ fail: bundle.inclusion_proof_invalid");

        // The projection relabelled.
        let other = if profile == "auditor" {
            "counterparty"
        } else {
            "auditor"
        };
        let mut edited = events.clone();
        edited[0]["projection"] = other.into();
        let mut m = members.clone();
        set(&mut m, "events.jsonl", to_jsonl(&edited));
        rebuild_manifest(&mut m, true);
        assert_eq!(fail(&m, &[]), "✗ fail: bundle.projection_profile_mismatch");

        // A line mixing forms: a projection that also carries `signature`.
        let mut edited = events.clone();
        edited[0]["signature"] = edited[0]["event_signature"].clone();
        let mut m = members.clone();
        set(&mut m, "events.jsonl", to_jsonl(&edited));
        rebuild_manifest(&mut m, true);
        assert_eq!(fail(&m, &[]), "✗ fail: bundle.projection_malformed");
        // ... or showing a field its profile withholds.
        let mut edited = events.clone();
        edited[1]["inputs"] = json!({"order_id": SECRET_INPUT});
        let mut m = members.clone();
        set(&mut m, "events.jsonl", to_jsonl(&edited));
        rebuild_manifest(&mut m, true);
        assert_eq!(fail(&m, &[]), "✗ fail: bundle.projection_malformed");
    }

    // A full event in a counterparty bundle.
    let full = unpack(&export_bytes(
        &correlation,
        "full",
        "f.proof.tar.zst",
        t,
        &dir,
    ));
    let mut m = unpack(&export_bytes(
        &correlation,
        "counterparty",
        "c.proof.tar.zst",
        t,
        &dir,
    ));
    set(&mut m, "events.jsonl", get(&full, "events.jsonl"));
    rebuild_manifest(&mut m, true);
    assert_eq!(
        verify_members(&m, t, &[]).1,
        "✗ fail: bundle.projection_profile_mismatch"
    );
}

#[test]
fn rules_reading_withheld_fields_are_not_replayed() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let _daemon = start_daemon(&dir);
    let correlation = record_session(&dir);
    let t = temp.path();

    // One rule on the action only, one on an attribute the events carry.
    let policy = json!({
        "policy_id": "attr.check", "tenant_id": "local", "scope": {},
        "rules": [
            {"id": "refunded", "category": "required", "severity": "high",
             "spec": {"action": "mcp.payments.refund_payment"}},
            {"id": "refunded-by-tool", "category": "required", "severity": "high",
             "spec": {"action": "mcp.payments.refund_payment",
                      "where": {"attribute": "mcp.tool", "equals": "refund_payment"}}}
        ]
    });
    let replay = |profile: &str| {
        let mut m = unpack(&export_bytes(
            &correlation,
            profile,
            "r.proof.tar.zst",
            t,
            &dir,
        ));
        set(&mut m, "policy.json", serde_json::to_vec(&policy).unwrap());
        let file = t.join(format!("{profile}-replay.proof.tar.zst"));
        std::fs::write(&file, intentproof_bundle::pack_members(&m, true).unwrap()).unwrap();
        let replayed = Command::new(BIN)
            .args(["verify", "replay"])
            .arg(&file)
            .output()
            .unwrap();
        let explained = Command::new(BIN)
            .args(["verify", "explain"])
            .arg(&file)
            .output()
            .unwrap();
        (replayed, String::from_utf8(explained.stdout).unwrap())
    };

    // auditor keeps attributes: both rules pass.
    let (replayed, _) = replay("auditor");
    assert_eq!(replayed.status.code(), Some(0));
    let run: Value = serde_json::from_slice(&replayed.stdout).unwrap();
    assert_eq!(run["status"], "pass");
    assert_eq!(run["findings"].as_array().unwrap().len(), 2);

    // counterparty withholds them: the second rule is not replayed, and
    // says why; the run is inconclusive, never a pass.
    let (replayed, explained) = replay("counterparty");
    assert_eq!(replayed.status.code(), Some(2));
    let run: Value = serde_json::from_slice(&replayed.stdout).unwrap();
    assert_eq!(run["status"], "inconclusive");
    let findings = run["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0]["rule_id"], "refunded");
    assert_eq!(findings[0]["outcome"], "pass");
    assert_eq!(
        run["summary"]["outcome_counts"],
        json!({"pass": 1, "fail": 0, "inconclusive": 0})
    );
    assert_eq!(
        String::from_utf8_lossy(&replayed.stderr),
        "rule refunded-by-tool: not replayable: the counterparty profile withheld `attributes`, \
         which this rule reads (the full bundle can decide it)\n"
    );
    let lines: Vec<&str> = explained.lines().collect();
    assert!(
        lines.contains(
            &"  ? refunded-by-tool: not replayable: the counterparty profile withheld `attributes`, \
              which this rule reads (the full bundle can decide it)"
        ),
        "{explained}"
    );
    assert!(
        lines.contains(
            &"Verdict: inconclusive: this bundle's profile withheld what some rules read."
        ),
        "{explained}"
    );
}

/// Records a session that declares a two-step plan (look the order up,
/// refund it), does both, then refunds the order `extra` more times: the
/// calls someone editing the bundle would like to hide. Returns the
/// correlation id.
fn record_refunds(dir: &Path, extra: u64) -> String {
    let (mut gateway, mut agent) = start_gateway(dir, "payments", &[]);
    agent.request(1, "initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "export-agent", "version": "1"}}));
    let declared = agent.call(
        2,
        "intentproof_declare_plan",
        json!({
            "intent": "look up order ORD-7 and refund it",
            "steps": [
                {"tool": "lookup_order", "purpose": "Look the order up"},
                {"tool": "refund_payment", "purpose": "Refund the card"}
            ]
        }),
    );
    assert!(
        declared["result"]["structuredContent"]["plan_id"].is_string(),
        "{declared}"
    );
    let looked_up = agent.call(3, "lookup_order", json!({"order_id": "ORD-7"}));
    assert!(looked_up["result"].is_object(), "{looked_up}");
    for id in 4..5 + extra {
        let refund = agent.call(
            id,
            "refund_payment",
            json!({"order_id": "ORD-7", "amount_cents": 1250}),
        );
        assert_eq!(refund["result"]["structuredContent"]["status"], "succeeded");
    }
    drop(agent);
    let status = gateway.0.wait().unwrap();
    assert!(status.success(), "gateway exited with {status}");
    let plans: Value = serde_json::from_slice(&run(&["plans", "--json"], dir).stdout).unwrap();
    plans["plans"][0]["correlation_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The exit code, standard output and standard error of `intentproof verify ARGS FILE`.
fn verify_with(args: &[&str], file: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .arg("verify")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The truncation attack (issue #18): the last 5 events dropped, the event
/// Merkle root and file hashes recomputed, their inclusion proofs pruned,
/// the manifest signature stripped. Every self-consistency check passes, so
/// without the exporter's key `verify` must say that nothing attests the
/// bundle (exit 3, never a plain pass, never "complete"), `verify explain`
/// must name the missing attestation, and the README's commands (which
/// pass `--key`, the output of `intentproof keys show`) must fail.
#[test]
fn a_truncated_bundle_is_never_attested() {
    let temp = tempfile::tempdir().unwrap();
    let t = temp.path();
    let dir = t.join("data");
    std::fs::create_dir(&dir).unwrap();
    let _daemon = start_daemon(&dir);
    let correlation = record_refunds(&dir, 5);
    let events = run(&["events", "--json", "--correlation", &correlation], &dir);
    let events: Value = serde_json::from_slice(&events.stdout).unwrap();
    // The declaration, the lookup, 6 refunds (and the plan's close, if the
    // gateway records one when the session ends).
    let stored = events["events"].as_array().unwrap().len();
    assert!(stored >= 8, "{events}");

    // The README's incident review: the exporter's key, then the export.
    let shown = run(&["keys", "show"], &dir);
    assert!(shown.status.success());
    let exporter = t.join("exporter.pub");
    std::fs::write(&exporter, &shown.stdout).unwrap();
    let exporter = exporter.to_str().unwrap();
    let bundle = export_bytes(&correlation, "full", "incident.proof.tar.zst", t, &dir);
    let exported = t.join("incident.proof.tar.zst");
    let (code, stdout, stderr) = verify_with(&["--key", exporter], &exported);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("✓ pass: bundle.verify_pass\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n- manifest.signature_valid\n"),
        "{stdout}"
    );

    // The attack.
    let mut m = unpack(&bundle);
    let lines: Vec<Vec<u8>> = get(&m, "events.jsonl")
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(lines.len(), stored);
    let kept = &lines[..stored - 5];
    set(
        &mut m,
        "events.jsonl",
        kept.iter()
            .flat_map(|l| [l.as_slice(), b"\n"].concat())
            .collect(),
    );
    let kept_ids: Vec<String> = jsonl(&get(&m, "events.jsonl"))
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    let mut inclusion: Value = serde_json::from_slice(&get(&m, "inclusion_proof.json")).unwrap();
    inclusion["proofs"]
        .as_object_mut()
        .unwrap()
        .retain(|id, _| kept_ids.contains(id));
    set(
        &mut m,
        "inclusion_proof.json",
        serde_json::to_vec(&inclusion).unwrap(),
    );
    // And the dropped events' C2SP proofs (one line per event, in order).
    let tlog: Vec<u8> = get(&m, "tlog-proofs.jsonl")
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .take(kept.len())
        .flat_map(|l| [l, b"\n"].concat())
        .collect();
    set(&mut m, "tlog-proofs.jsonl", tlog);
    rebuild_manifest(&mut m, false);
    let truncated = t.join("truncated.proof.tar.zst");
    std::fs::write(
        &truncated,
        intentproof_bundle::pack_members(&m, true).unwrap(),
    )
    .unwrap();

    // The checks that pass, in the reference verifier's vocabulary.
    let k = kept.len();
    let manifest: Value = serde_json::from_slice(&get(&m, "manifest.json")).unwrap();
    let mut checks: Vec<String> = [
        "verification_profile.present",
        "verification_profile.verifier_version_supported",
        "verification_profile.run_id_valid",
    ]
    .map(String::from)
    .to_vec();
    for file in manifest["files"].as_array().unwrap() {
        checks.push(format!(
            "file_hash_valid:{}",
            file["path"].as_str().unwrap()
        ));
    }
    checks.extend(
        [
            "policy.fingerprint_valid",
            "event_merkle_valid",
            "attestation_merkle_valid",
        ]
        .map(String::from),
    );
    checks.extend(std::iter::repeat_n("event.signature_valid".to_owned(), k));
    checks.push("run.signature_valid".into());
    let lines_of =
        |checks: &[String]| -> String { checks.iter().map(|c| format!("- {c}\n")).collect() };
    let strict = [
        "event_chains_valid:1".to_owned(),
        "checkpoint.signature_valid".to_owned(),
        format!("inclusion_proofs_valid:{k}"),
        format!("tlog_proofs_valid:{k}"),
    ];
    let warnings = format!(
        "warning: the manifest is unsigned: the bundle is self-consistent, but anyone could have \
         built it\nwarning: {k} event signature(s) were checked with keys carried in the bundle \
         itself, and no given key vouches for those keys or the manifest: pass --key\n"
    );
    let what_verified = format!(
        "{k} of {k} event signatures, 1 chain, {k} inclusion proofs, {k} tlog-proofs verify"
    );

    // Without a key: unattested, exit 3, never a plain pass.
    let (code, stdout, stderr) = verify_with(&[], &truncated);
    assert_eq!(
        stdout,
        format!(
            "⚠ unattested: {what_verified}, but the manifest is unsigned, so nothing binds this \
             list of events to an exporter: events may have been left out. Pass --key with the \
             exporter's public key\n{}{}- bundle.verify_unattested\n",
            lines_of(&checks),
            lines_of(&strict)
        )
    );
    assert_eq!(stderr, warnings);
    assert_eq!(code, Some(3));
    assert!(
        !format!("{stdout}{stderr}")
            .to_lowercase()
            .contains("complete")
    );

    // `verify explain` names the missing attestation; what the events show
    // follows, never as the whole story.
    let (code, explained, stderr) = verify_with(&["explain"], &truncated);
    let kept_events = jsonl(&get(&m, "events.jsonl"));
    let mut ran = String::new();
    for e in &kept_events {
        ran.push_str(&format!(
            "  {}  {:<6} {}  (intent: {})\n",
            e["completed_at"].as_str().unwrap(),
            e["status"].as_str().unwrap(),
            e["action"].as_str().unwrap(),
            e["intent"].as_str().unwrap()
        ));
    }
    let policy: Value = serde_json::from_slice(&get(&m, "policy.json")).unwrap();
    assert_eq!(
        explained,
        format!(
            "Integrity: ⚠ NOT ATTESTED: {what_verified}, but the manifest is unsigned, so nothing \
             binds this list of events to an exporter. Nothing shows that no event was left out: \
             the last events of a chain can be dropped without a trace. Pass --key with the \
             exporter's public key.\nWhat follows is only what these events show.\n\n\
             What was intended: look up order ORD-7 and refund it\n\n\
             What ran ({k} events):\n{ran}\n\
             What was checked (policy {}):\n\
             \x20 ✓ step-1: `mcp.payments.lookup_order` occurred 1 time.\n\
             \x20 ✓ step-2: `mcp.payments.refund_payment` occurred {} time{}.\n\n\
             Verdict: everything that was intended happened, as far as these events show; nothing \
             attests that they are all (see Integrity).\n",
            policy["policy_id"].as_str().unwrap(),
            k - 2,
            if k - 2 == 1 { "" } else { "s" }
        )
    );
    assert_eq!(stderr, "");
    assert_eq!(code, Some(3));
    assert!(!explained.to_lowercase().contains("complete"));

    // The README's commands pass the exporter's key: both fail.
    let (code, stdout, stderr) = verify_with(&["--key", exporter], &truncated);
    assert_eq!(
        stdout,
        format!(
            "✗ fail: bundle.manifest_unsigned\n{}- manifest.signature_missing\n",
            lines_of(&checks)
        )
    );
    assert_eq!(
        stderr,
        "bundle.manifest_unsigned: keys were given, but the manifest is unsigned: nothing binds \
         this bundle to those keys (anyone could have rebuilt it)\n"
    );
    assert_eq!(code, Some(1));
    let (code, explained, _) = verify_with(&["explain", "--key", exporter], &truncated);
    assert_eq!(
        explained.lines().take(2).collect::<Vec<_>>(),
        [
            "Integrity: ✗ fail (bundle.manifest_unsigned): keys were given, but the manifest is \
             unsigned: nothing binds this bundle to those keys (anyone could have rebuilt it)",
            "The record cannot be trusted; what follows is only what it claims."
        ]
    );
    assert!(
        explained.ends_with(
            "\nVerdict: everything that was intended happened, as the record claims; but it \
             failed its checks (see Integrity).\n"
        ),
        "{explained}"
    );
    assert_eq!(code, Some(1));

    // Accepted as unattested on request: the reference verifier's report,
    // exit 0, and standard error says what is not attested.
    let (code, stdout, stderr) = verify_with(&["--allow-unattested"], &truncated);
    assert_eq!(
        stdout,
        format!(
            "✓ pass: bundle.verify_pass\n{}{}- bundle.verify_pass\n",
            lines_of(&checks),
            lines_of(&strict)
        )
    );
    assert_eq!(
        stderr,
        format!(
            "{warnings}warning: accepted unattested (--allow-unattested): the manifest is \
             unsigned, so nothing binds this list of events to an exporter: events may have been \
             left out\n"
        )
    );
    assert_eq!(code, Some(0));
}

/// The events the MCP recorder writes for task calls (its module doc,
/// "Tasks"), sealed by an `intentproof mcp` key: a plan over three task
/// tools; each call answered by a task handle (attribute `mcp.task.id`);
/// then one `intentproof.call.completed` per task seen to finish (ok, and
/// failed), linked by `intentproof.call.event_id`. `t-never` never
/// finishes. In correlation `open-flow`, without a plan, one task that
/// never finishes either.
fn task_events(sealer: &intentproof_core::seal::Sealer) -> Vec<Value> {
    use intentproof_core::{AttributeValue, ErrorInfo, ExecutionEvent};
    let attrs = |pairs: &[(&str, &str)]| -> intentproof_core::Attributes {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), AttributeValue::from(*v)))
            .collect()
    };
    let at = |second: u32| format!("2026-07-28T10:00:{second:02}.000Z");
    let seal = |e: ExecutionEvent| sealer.seal(&e).unwrap().event;
    let handle = |id: &str| json!({"resultType": "task", "taskId": id, "status": "working"});
    let declare = seal(
        ExecutionEvent::builder("compute the answers", "intentproof.plan.declare")
            .correlation_id("tasks-flow")
            .inputs(json!({"intent": "compute the answers", "steps": [
                {"tool": "compute_ok", "purpose": "Compute the answer"},
                {"tool": "compute_fail", "purpose": "Run the job that fails"},
                {"tool": "compute_forever", "purpose": "Start the job that never ends"}
            ]}))
            .output(json!({"plan_id": "plan-tasks", "correlation_id": "tasks-flow"}))
            .attributes(attrs(&[
                ("mcp.server", "records"),
                ("intentproof.plan.id", "plan-tasks"),
            ]))
            .timing(at(0), at(0), 0)
            .build(),
    );
    let call = |tool: &str, task: &str, second: u32, correlation: &str| {
        seal(
            ExecutionEvent::builder(format!("run {tool}"), format!("mcp.records.{tool}"))
                .correlation_id(correlation)
                .inputs(json!({}))
                .output(handle(task))
                .attributes(attrs(&[
                    ("mcp.server", "records"),
                    ("mcp.tool", tool),
                    ("mcp.task.id", task),
                    ("mcp.task.status", "working"),
                ]))
                .timing(at(second), at(second), 0)
                .build(),
        )
    };
    let ok = call("compute_ok", "t-ok", 1, "tasks-flow");
    let fails = call("compute_fail", "t-fail", 2, "tasks-flow");
    let never = call("compute_forever", "t-never", 3, "tasks-flow");
    let completion = |call: &Value, task: &str, status: &str, second: u32| {
        let tool = call["attributes"]["mcp.tool"].as_str().unwrap();
        ExecutionEvent::builder(format!("run {tool}"), "intentproof.call.completed")
            .correlation_id("tasks-flow")
            .inputs(json!({"taskId": task}))
            .attributes(attrs(&[
                ("mcp.server", "records"),
                ("mcp.tool", tool),
                (
                    "intentproof.call.event_id",
                    call["event_id"].as_str().unwrap(),
                ),
                ("intentproof.call.action", call["action"].as_str().unwrap()),
                ("mcp.task.id", task),
                ("mcp.task.status", status),
            ]))
            .timing(call["started_at"].as_str().unwrap(), at(second), 0)
    };
    let ok_done = seal(
        completion(&ok, "t-ok", "completed", 5)
            .output(json!({"content": [{"type": "text", "text": "computed 42"}], "isError": false}))
            .build(),
    );
    let failed = seal(
        completion(&fails, "t-fail", "failed", 6)
            .output(json!({"error": {"code": -32603, "message": "job crashed: disk full"}}))
            .error(ErrorInfo {
                name: "TaskFailed".into(),
                message: "job crashed: disk full".into(),
                stack: None,
            })
            .build(),
    );
    let open = call("compute_forever", "t-open", 7, "open-flow");
    vec![declare, ok, fails, never, ok_done, failed, open]
}

/// `verify explain` joins a task call to its `intentproof.call.completed`
/// event (issue #17): the call's line is followed by the task's outcome
/// (status, time, result or error), or by the absence of one; the call is
/// judged by its task, as findings do. `verify replay` evaluates the events
/// as recorded, as the exporter's run.json does.
#[test]
fn explain_shows_each_task_call_with_its_outcome() {
    use intentproof_core::keys::InstanceKey;
    use intentproof_store::{EventMeta, Incoming, Store, StoreOptions};

    let temp = tempfile::tempdir().unwrap();
    let t = temp.path();
    let dir = t.join("data");
    std::fs::create_dir(&dir).unwrap();

    // The events, as a gateway process would have delivered them, written
    // to the store before the daemon starts; the daemon trusts their key.
    let gateway = InstanceKey::from_seed("inst_01M9TASKS0GATEWAY0000000000", [5u8; 32]);
    let public = gateway.verifying_key();
    intentproof_api::datadir::DataDir::new(&dir)
        .trust(gateway.instance_id(), &public)
        .unwrap();
    let sealer = intentproof_core::seal::Sealer::new(gateway.clone()).with_tenant_id("local");
    let events = task_events(&sealer);
    {
        let store = Store::open(&dir, StoreOptions::default(), &|i: &str| {
            (i == gateway.instance_id()).then_some(public)
        })
        .unwrap();
        let incoming = events
            .iter()
            .map(|e| {
                Incoming::new(
                    EventMeta::from_v1(e, Some(&public)).unwrap(),
                    serde_json::to_vec(e).unwrap(),
                )
            })
            .collect();
        let stored = store.append(incoming).unwrap();
        assert!(stored.iter().all(Result::is_ok), "{stored:?}");
    }
    let _daemon = start_daemon(&dir);
    let key = exporter_key(&dir, t);
    let explain = |correlation: &str| {
        let file = t.join(format!("{correlation}.proof.tar.zst"));
        let exported = export(correlation, &file, "full", &dir);
        assert!(
            exported.status.success(),
            "{}",
            String::from_utf8_lossy(&exported.stderr)
        );
        let out = Command::new(BIN)
            .args(["verify", "explain", "--key"])
            .arg(&key)
            .arg(&file)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            file,
        )
    };

    let (code, text, file) = explain("tasks-flow");
    let body = text.split_once("\n\n").unwrap().1;
    assert_eq!(
        body,
        format!(
            "What was intended: compute the answers\n\n\
             What ran (6 events):\n\
             \x20 2026-07-28T10:00:00.000Z  ok     intentproof.plan.declare  (intent: compute the answers)\n\
             \x20 2026-07-28T10:00:01.000Z  ok     mcp.records.compute_ok  (intent: run compute_ok)\n\
             \x20     task t-ok: completed (ok) at 2026-07-28T10:00:05.000Z: computed 42\n\
             \x20 2026-07-28T10:00:02.000Z  ok     mcp.records.compute_fail  (intent: run compute_fail)\n\
             \x20     task t-fail: failed (error) at 2026-07-28T10:00:06.000Z: job crashed: disk full\n\
             \x20 2026-07-28T10:00:03.000Z  ok     mcp.records.compute_forever  (intent: run compute_forever)\n\
             \x20     task t-never: no outcome in this bundle: it was never seen to finish, so the call's `ok` only says that the task started\n\
             \x20 2026-07-28T10:00:05.000Z  ok     intentproof.call.completed  (intent: run compute_ok)\n\
             \x20     the outcome of task t-ok, shown on its call\n\
             \x20 2026-07-28T10:00:06.000Z  error  intentproof.call.completed  (intent: run compute_fail)\n\
             \x20     the outcome of task t-fail, shown on its call\n\n\
             What was checked (policy plan.plan-tasks):\n\
             \x20 ✓ step-1: `mcp.records.compute_ok` occurred 1 time.\n\
             \x20 ✗ step-2: `mcp.records.compute_fail` did not occur (at least 1 required).\n\
             \x20 ✓ step-3: `mcp.records.compute_forever` occurred 1 time.\n\n\
             Verdict: INCOMPLETE. Missing or failed: step-2 `mcp.records.compute_fail`.\n"
        )
    );
    assert!(
        text.starts_with("Integrity: ✓ pass (bundle.verify_pass), attested by key "),
        "{text}"
    );
    assert_eq!(code, Some(1));

    // replay: the events as recorded (the failed task's call says ok).
    let replayed = Command::new(BIN)
        .args(["verify", "replay"])
        .arg(&file)
        .output()
        .unwrap();
    let run: Value = serde_json::from_slice(&replayed.stdout).unwrap();
    assert_eq!(run["status"], "pass", "{run:#}");

    // A task never seen to finish leaves the verdict unsettled, not a pass.
    let (code, text, file) = explain("open-flow");
    let body = text.split_once("\n\n").unwrap().1;
    let policy: Value =
        serde_json::from_slice(&get(&unpack(&std::fs::read(file).unwrap()), "policy.json"))
            .unwrap();
    assert_eq!(
        body,
        format!(
            "What was intended: Recorded actions of open-flow\n\n\
         What ran (1 events):\n\
         \x20 2026-07-28T10:00:07.000Z  ok     mcp.records.compute_forever  (intent: run compute_forever)\n\
         \x20     task t-open: no outcome in this bundle: it was never seen to finish, so the call's `ok` only says that the task started\n\n\
         What was checked (policy {}):\n\
         \x20 ✓ recorded-1: `mcp.records.compute_forever` occurred 1 time.\n\n\
         Verdict: unsettled: never seen to finish: task t-open of `mcp.records.compute_forever`.\n",
            policy["policy_id"].as_str().unwrap()
        )
    );
    assert_eq!(code, Some(1));
}
