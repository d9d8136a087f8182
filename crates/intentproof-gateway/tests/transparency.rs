//! Two daemons witnessing each other over real HTTP (C2SP tlog-witness):
//! every checkpoint of one is cosigned by the other, a forked log is
//! refused with 409 and the reason, the witness endpoint answers the
//! protocol's statuses, `GET /v1/consistency` proofs verify, and a data
//! directory from before checkpoint notes gets one.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use intentproof_bundle::{Report, TrustedKey, Verdict, VerifyOptions, verify};
use intentproof_core::keys::InstanceKey;
use intentproof_core::merkle::verify_consistency;
use intentproof_core::tlog::checkpoint::TlogCheckpoint;
use intentproof_core::tlog::note::{Note, NoteVerifier};
use intentproof_core::tlog::witness::AddCheckpoint;
use intentproof_gateway::config::{TransparencyConfig, WitnessConfig, WitnessedLogConfig};
use intentproof_gateway::transparency::Transparency;
use intentproof_gateway::{Config, Daemon};
use serde_json::json;

/// The log and witness keys a daemon with this data dir will use.
fn keys_of(dir: &Path) -> (NoteVerifier, NoteVerifier) {
    let key = InstanceKey::load_from(dir)
        .or_else(|_| {
            std::fs::create_dir_all(dir).unwrap();
            InstanceKey::create_in(dir)
        })
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let t = Transparency::new(&TransparencyConfig::default(), &key, scratch.path()).unwrap();
    (t.log_key(), t.witness_key())
}

fn config(dir: &Path, listen: SocketAddr, transparency: TransparencyConfig) -> Config {
    Config {
        listen,
        data_dir: dir.to_owned(),
        checkpoint_interval_secs: 0,
        transparency,
        ..Config::default()
    }
}

fn witnessing(log: &NoteVerifier, witness: Option<(&Daemon, &NoteVerifier)>) -> TransparencyConfig {
    TransparencyConfig {
        logs: vec![WitnessedLogConfig {
            key: log.to_string(),
            origin: None,
        }],
        witnesses: witness
            .map(|(daemon, key)| WitnessConfig {
                url: format!("{}/v1/witness", daemon.url()),
                key: key.to_string(),
                headers: Default::default(),
                timeout_ms: 5000,
            })
            .into_iter()
            .collect(),
        ..TransparencyConfig::default()
    }
}

async fn ingest(daemon: &Daemon, ids: &[&str]) {
    for id in ids {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/events", daemon.url()))
            .json(&json!({"intentproof": "1", "event": {
                "id": id, "correlationId": "corr-t", "intent": "Refund", "action": "stripe.refund.create",
                "inputs": [], "status": "ok", "output": 42,
                "startedAt": "2026-01-01T00:00:00.000Z", "completedAt": "2026-01-01T00:00:00.001Z", "durationMs": 1}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202, "{id}");
    }
}

async fn get_text(daemon: &Daemon, dir: &Path, path: &str) -> (u16, String) {
    let token = std::fs::read_to_string(dir.join("token")).unwrap();
    let response = reqwest::Client::new()
        .get(format!("{}{path}", daemon.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The checkpoint note once it carries a cosignature by `witness` (the
/// witness client runs in the background; generous deadline, no timing
/// asserted).
async fn cosigned(daemon: &Daemon, dir: &Path, witness: &NoteVerifier) -> Note {
    for _ in 0..300 {
        let (status, text) = get_text(daemon, dir, "/v1/checkpoint").await;
        assert_eq!(status, 200, "{text}");
        let note = Note::parse(&text).unwrap();
        if note.verify(witness).unwrap().is_some() {
            return note;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no cosignature by {witness} within 30 s");
}

async fn export(daemon: &Daemon, dir: &Path, correlation: &str) -> Vec<u8> {
    let token = std::fs::read_to_string(dir.join("token")).unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/bundles", daemon.url()))
        .bearer_auth(token)
        .json(&json!({"correlation_id": correlation}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.bytes().await.unwrap().to_vec()
}

fn verify_with(bundle: &[u8], daemon_key: &Path, witnesses: &[NoteVerifier]) -> Report {
    let key = InstanceKey::load_from(daemon_key).unwrap();
    let options = VerifyOptions {
        trusted_keys: vec![TrustedKey {
            key_id: Some(key.key_id()),
            key: key.verifying_key(),
        }],
        witnesses: witnesses.to_vec(),
        ..VerifyOptions::default()
    };
    verify(bundle, &options)
}

async fn post_witness(daemon: &Daemon, body: String, origin: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/witness/add-checkpoint", daemon.url()))
        .body(body);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_witness_each_other_and_a_fork_is_refused() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (log_a, witness_a) = keys_of(dir_a.path());
    let (log_b, witness_b) = keys_of(dir_b.path());
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();

    // A first (it witnesses B), then B (sending to A), then A again on
    // its port, now sending to B.
    let a = Daemon::start(config(dir_a.path(), any, witnessing(&log_b, None)))
        .await
        .unwrap();
    let b = Daemon::start(config(
        dir_b.path(),
        any,
        witnessing(&log_a, Some((&a, &witness_a))),
    ))
    .await
    .unwrap();
    let port_a: SocketAddr = a.url().trim_start_matches("http://").parse().unwrap();
    a.stop().await.unwrap();
    let a = Daemon::start(config(
        dir_a.path(),
        port_a,
        witnessing(&log_b, Some((&b, &witness_b))),
    ))
    .await
    .unwrap();

    ingest(&a, &["a-1", "a-2", "a-3"]).await;
    ingest(&b, &["b-1", "b-2"]).await;
    let note_a = cosigned(&a, dir_a.path(), &witness_b).await;
    let note_b = cosigned(&b, dir_b.path(), &witness_a).await;
    assert!(note_a.verify(&log_a).unwrap().is_some());
    assert!(note_b.verify(&log_b).unwrap().is_some());
    let cp_a = TlogCheckpoint::parse(note_a.text()).unwrap();
    assert_eq!((cp_a.origin.as_str(), cp_a.size), (log_a.name(), 3));
    assert_eq!(TlogCheckpoint::parse(note_b.text()).unwrap().size, 2);

    // A grows: the next checkpoint is cosigned too, through a
    // consistency proof from 3.
    ingest(&a, &["a-4", "a-5"]).await;
    let grown = loop {
        let note = cosigned(&a, dir_a.path(), &witness_b).await;
        if TlogCheckpoint::parse(note.text()).unwrap().size == 5 {
            break note;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let cp_5 = TlogCheckpoint::parse(grown.text()).unwrap();
    let (status, proof) = get_text(&a, dir_a.path(), "/v1/consistency?from=3&to=5").await;
    assert_eq!(status, 200, "{proof}");
    let proof: Vec<[u8; 32]> = proof
        .lines()
        .map(|l| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(l)
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    verify_consistency(3, 5, &cp_a.root, &cp_5.root, &proof).unwrap();
    // Independent implementations read the daemon's note and proof alike.
    let theirs = signed_note::Note::from_bytes(grown.to_string().as_bytes()).unwrap();
    let vkey = signed_note::StandardVerifier::new(&log_a.to_string()).unwrap();
    let (verified, unverified) = theirs
        .verify(&signed_note::VerifierList::new(vec![Box::new(vkey)]))
        .unwrap();
    assert_eq!(
        (verified.len(), unverified.len()),
        (1, 1),
        "A's signature, B's cosignature"
    );
    let parsed = tlog_tiles::Checkpoint::from_bytes(grown.text().as_bytes()).unwrap();
    assert_eq!((parsed.origin(), parsed.size()), (log_a.name(), 5));
    let tiles: Vec<tlog_tiles::Hash> = proof.iter().map(|h| tlog_tiles::Hash(*h)).collect();
    tlog_tiles::check_tree(
        &tiles,
        5,
        tlog_tiles::Hash(cp_5.root),
        3,
        tlog_tiles::Hash(cp_a.root),
    )
    .unwrap();

    // A bundle of A carries tlog-proofs to the cosigned checkpoint:
    // `--witness B` passes; flipping any byte of a tlog-proof fails.
    let bundle = export(&a, dir_a.path(), "corr-t").await;
    let report = verify_with(&bundle, dir_a.path(), std::slice::from_ref(&witness_b));
    assert_eq!(report.verdict, Verdict::Attested, "{}", report.human());
    assert_eq!(report.summary.tlog_proofs_verified, 5);
    assert_eq!(
        report.summary.witnesses_cosigned,
        vec![witness_b.name().to_owned()]
    );
    assert!(report.findings.contains(&"tlog_proofs_valid:5".to_owned()));
    let wrong_witness = verify_with(&bundle, dir_a.path(), std::slice::from_ref(&witness_a));
    assert_eq!(wrong_witness.reason, "bundle.witness_cosignature_missing");
    let archive = intentproof_bundle::read_archive(&bundle, &Default::default()).unwrap();
    let proofs = archive
        .members
        .iter()
        .find(|m| m.path == "tlog-proofs.jsonl")
        .expect("a tlog-proofs.jsonl member");
    let text = String::from_utf8(proofs.data.clone()).unwrap();
    assert_eq!(text.lines().count(), 5);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let tlog =
        intentproof_core::tlog::proof::TlogProof::parse(first["tlog_proof"].as_str().unwrap())
            .unwrap();
    assert_eq!(tlog.index, 0);
    assert!(tlog.checkpoint.verify(&witness_b).unwrap().is_some());
    let (status, body) = get_text(&a, dir_a.path(), "/v1/consistency?from=4&to=9").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("from <= to <= 5"), "{body}");

    // Fork: A's store is rewritten (same key, other events, same size).
    a.stop().await.unwrap();
    let forked_dir = tempfile::tempdir().unwrap();
    for file in ["instance_key.json", "token"] {
        std::fs::copy(dir_a.path().join(file), forked_dir.path().join(file)).unwrap();
    }
    let forked = Daemon::start(config(
        forked_dir.path(),
        any,
        TransparencyConfig::default(),
    ))
    .await
    .unwrap();
    ingest(&forked, &["x-1", "x-2", "x-3", "x-4", "x-5"]).await;
    let (_, text) = get_text(&forked, forked_dir.path(), "/v1/checkpoint").await;
    let fork_note = Note::parse(&text).unwrap();
    assert!(
        fork_note.verify(&log_a).unwrap().is_some(),
        "same key, same origin"
    );
    assert_ne!(
        TlogCheckpoint::parse(fork_note.text()).unwrap().root,
        cp_5.root
    );
    let refused = post_witness(
        &b,
        AddCheckpoint {
            old: 5,
            proof: vec![],
            checkpoint: fork_note.clone(),
        }
        .to_string(),
        None,
    )
    .await;
    assert_eq!(refused.status().as_u16(), 409);
    let reason = refused.headers()["intentproof-refusal"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.starts_with("the log forked: checkpoint of size 5 has root"),
        "{reason}"
    );
    assert_eq!(refused.headers()["content-type"], "text/x.tlog.size");
    assert_eq!(refused.text().await.unwrap(), "5\n");
    // Grown past the witnessed size, its proof cannot lead back: 422.
    ingest(&forked, &["x-6"]).await;
    let (_, text) = get_text(&forked, forked_dir.path(), "/v1/checkpoint").await;
    let (_, proof) = get_text(&forked, forked_dir.path(), "/v1/consistency?from=5&to=6").await;
    let body = format!("old 5\n{proof}\n{text}");
    let refused = post_witness(&b, body, None).await;
    assert_eq!(refused.status().as_u16(), 422);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("is not an extension of what this witness cosigned")
    );
    // The forked A's bundle has no cosigned checkpoint: --witness B fails.
    let forked_bundle = export(&forked, forked_dir.path(), "corr-t").await;
    let report = verify_with(
        &forked_bundle,
        forked_dir.path(),
        std::slice::from_ref(&witness_b),
    );
    assert_eq!(
        report.reason,
        "bundle.witness_cosignature_missing",
        "{}",
        report.human()
    );
    assert!(
        report
            .detail
            .unwrap()
            .contains("is not cosigned by witness")
    );
    assert_eq!(
        verify_with(&forked_bundle, forked_dir.path(), &[]).verdict,
        Verdict::Attested,
        "without --witness it is a consistent bundle of its own log"
    );
    // The refusals are counted on B's /metrics.
    let (_, metrics) = get_text(&b, dir_b.path(), "/metrics").await;
    assert!(
        metrics.contains("intentproof_witnessed_checkpoints_total{result=\"refused\"} 2\n"),
        "{metrics}"
    );
    assert!(!metrics.contains("intentproof_witnessed_checkpoints_total{result=\"cosigned\"} 0\n"));
    // B still holds A's true root, durably.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir_b.path().join("witness-state.json")).unwrap())
            .unwrap();
    assert_eq!(state["logs"][log_a.name()]["size"], 5);
    forked.stop().await.unwrap();
    b.stop().await.unwrap();

    // Restarted, B still has A's cosignature of its own checkpoint (read
    // back from its files): its bundle still passes --witness A.
    let b = Daemon::start(config(dir_b.path(), any, witnessing(&log_a, None)))
        .await
        .unwrap();
    let bundle = export(&b, dir_b.path(), "corr-t").await;
    let report = verify_with(&bundle, dir_b.path(), std::slice::from_ref(&witness_a));
    assert_eq!(report.verdict, Verdict::Attested, "{}", report.human());
    assert_eq!(
        report.summary.witnesses_cosigned,
        vec![witness_a.name().to_owned()]
    );
    let (_, note) = get_text(&b, dir_b.path(), "/v1/checkpoint").await;
    assert!(
        Note::parse(&note)
            .unwrap()
            .verify(&witness_a)
            .unwrap()
            .is_some(),
        "{note}"
    );
    b.stop().await.unwrap();
}

#[tokio::test]
async fn the_witness_endpoint_answers_the_protocol_statuses() {
    let (dir_log, dir_w) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (log_key, _) = keys_of(dir_log.path());
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let log = Daemon::start(config(dir_log.path(), any, TransparencyConfig::default()))
        .await
        .unwrap();
    let w = Daemon::start(config(dir_w.path(), any, witnessing(&log_key, None)))
        .await
        .unwrap();
    ingest(&log, &["e-1", "e-2"]).await;
    let (_, text) = get_text(&log, dir_log.path(), "/v1/checkpoint").await;
    let note = Note::parse(&text).unwrap();
    let request = |old: u64| {
        AddCheckpoint {
            old,
            proof: vec![],
            checkpoint: note.clone(),
        }
        .to_string()
    };

    // A web page may not post here.
    let page = post_witness(&w, request(0), Some("https://evil.example")).await;
    assert_eq!(page.status().as_u16(), 403);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("web pages may not write")
    );
    // Malformed: 400 with the reason.
    let bad = post_witness(&w, "old x\n\n".into(), None).await;
    assert_eq!(bad.status().as_u16(), 400);
    assert_eq!(
        bad.text().await.unwrap(),
        "the first line must be \"old <decimal>\", got \"old x\"\n"
    );
    // Unknown origin: 404.
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = Daemon::start(config(
        stranger_dir.path(),
        any,
        TransparencyConfig::default(),
    ))
    .await
    .unwrap();
    ingest(&stranger, &["s-1"]).await;
    let (_, other) = get_text(&stranger, stranger_dir.path(), "/v1/checkpoint").await;
    let unknown = post_witness(&w, format!("old 0\n\n{other}"), None).await;
    assert_eq!(unknown.status().as_u16(), 404);
    stranger.stop().await.unwrap();
    // Signed by another key under the trusted origin: 403.
    let mut impostor = Note::new(note.text()).unwrap();
    impostor.push(
        intentproof_core::tlog::note::NoteSigner::new(
            log_key.name(),
            intentproof_core::tlog::note::KeyType::Ed25519,
            [1u8; 32],
        )
        .sign(note.text(), 0)
        .unwrap(),
    );
    let forbidden = post_witness(&w, format!("old 0\n\n{impostor}"), None).await;
    assert_eq!(forbidden.status().as_u16(), 403);
    // Accepted once; a stale `old` then gets 409 with the recorded size.
    let ok = post_witness(&w, request(0), None).await;
    assert_eq!(ok.status().as_u16(), 200);
    let line = ok.text().await.unwrap();
    assert!(line.starts_with("\u{2014} intentproof-witness/"), "{line}");
    let stale = post_witness(&w, request(0), None).await;
    assert_eq!(stale.status().as_u16(), 409);
    assert_eq!(stale.headers()["content-type"], "text/x.tlog.size");
    assert_eq!(stale.text().await.unwrap(), "2\n");
    // Re-sending the same checkpoint from its size is cosigned again.
    assert_eq!(
        post_witness(&w, request(2), None).await.status().as_u16(),
        200
    );
    // old above the checkpoint's size: 400. Too large a body: 413.
    assert_eq!(
        post_witness(&w, request(3), None).await.status().as_u16(),
        400
    );
    let huge = post_witness(&w, "x".repeat(70_000), None).await;
    assert_eq!(huge.status().as_u16(), 413);
    log.stop().await.unwrap();
    w.stop().await.unwrap();
}

#[tokio::test]
async fn a_data_dir_from_before_notes_gets_one_for_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (log_key, _) = keys_of(dir.path());
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let daemon = Daemon::start(config(dir.path(), any, TransparencyConfig::default()))
        .await
        .unwrap();
    ingest(&daemon, &["o-1", "o-2", "o-3"]).await;
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    let json: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/checkpoint", daemon.url()))
        .bearer_auth(&token)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["checkpoint"]["tree_size"], 3);
    daemon.stop().await.unwrap();
    // What an older daemon left: checkpoints.jsonl only.
    std::fs::remove_file(dir.path().join("checkpoint-notes.jsonl")).unwrap();
    let before = std::fs::read(dir.path().join("checkpoints.jsonl")).unwrap();
    let daemon = Daemon::start(config(dir.path(), any, TransparencyConfig::default()))
        .await
        .unwrap();
    let (status, text) = get_text(&daemon, dir.path(), "/v1/checkpoint").await;
    assert_eq!(status, 200, "{text}");
    let note = Note::parse(&text).unwrap();
    assert!(note.verify(&log_key).unwrap().is_some());
    let cp = TlogCheckpoint::parse(note.text()).unwrap();
    assert_eq!(cp.size, 3);
    assert_eq!(
        format!("sha256:{}", intentproof_core::merkle::hex(&cp.root)),
        json["checkpoint"]["root"].as_str().unwrap()
    );
    assert_eq!(
        std::fs::read(dir.path().join("checkpoints.jsonl")).unwrap(),
        before,
        "the JSON checkpoints are left as they were"
    );
    daemon.stop().await.unwrap();
}

#[test]
fn the_readme_transparency_snippet_loads() {
    let readme = include_str!("../../../README.md");
    let from = readme
        .find("### Witnessed checkpoints (C2SP)")
        .expect("the README section");
    let block = &readme[from..];
    let start = block.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = block[start..].find("```").expect("its end");
    let config = Config::from_toml(&block[start..start + end], "README".as_ref())
        .unwrap_or_else(|e| panic!("{e}"));
    let t = &config.transparency;
    assert_eq!(t.origin.as_deref(), Some("gateway-a.example/log"));
    assert_eq!(
        t.witnesses[0].verifier().unwrap().name(),
        "gateway-b.example/witness"
    );
    assert_eq!(
        t.logs[0].verifier().unwrap().name(),
        "gateway-b.example/log"
    );
    // A log key where a witness key belongs is refused, naming both.
    let swapped = format!(
        "[[transparency.witnesses]]\nurl = \"http://x/v1/witness\"\nkey = \"{}\"\n",
        t.logs[0].key
    );
    let err = Config::from_toml(&swapped, "swapped".as_ref())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is not a cosignature key (type 0x04)"),
        "{err}"
    );
}
