//! The witnessed log as a user runs it, with the binary: `intentproof keys
//! transparency` gives each daemon's C2SP keys; daemon B witnesses daemon
//! A (`[[transparency.logs]]`), A sends its checkpoints to B
//! (`[[transparency.witnesses]]`, every second); a bundle `intentproof
//! export`s from A verifies with `intentproof verify --witness
//! NAME=KEY`, a bundle from a forked A (its store rewritten, same key)
//! fails it, and `GET /v1/checkpoint` is the cosigned note.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::json;

mod common;

use common::{BIN, daemon_listen, http_exchange, start_daemon_with};

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// (log key, witness key) as `intentproof keys transparency` prints them.
fn transparency_keys(dir: &Path) -> (String, String) {
    let d = dir.to_str().unwrap();
    ok(run(&["keys", "new", "--data-dir", d]));
    let text = ok(run(&["keys", "transparency", "--data-dir", d]));
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_owned()
    };
    (field("log: "), field("witness: "))
}

fn ingest(addr: &str, ids: &[&str]) {
    for id in ids {
        let body = json!({"intentproof": "1", "event": {
            "id": id, "correlationId": "corr-w", "intent": "Refund", "action": "stripe.refund.create",
            "inputs": [], "status": "ok", "output": 42,
            "startedAt": "2026-01-01T00:00:00.000Z", "completedAt": "2026-01-01T00:00:00.001Z", "durationMs": 1}});
        let (status, _, text) = http_exchange(
            addr,
            "POST",
            "/v1/events",
            &[("Content-Type", "application/json")],
            &body.to_string(),
        );
        assert_eq!(status, 202, "{text}");
    }
}

fn checkpoint(addr: &str, dir: &Path) -> String {
    let token = std::fs::read_to_string(dir.join("token")).unwrap();
    let auth = format!("Bearer {token}");
    let (status, _, text) = http_exchange(
        addr,
        "GET",
        "/v1/checkpoint",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status, 200, "{text}");
    text
}

fn export(dir: &Path, out: &Path) {
    ok(run(&[
        "export",
        "corr-w",
        "-o",
        out.to_str().unwrap(),
        "--data-dir",
        dir.to_str().unwrap(),
    ]));
}

fn verify(bundle: &Path, dir: &Path, witnesses: &[&str]) -> Output {
    let key = dir.join("exporter.pem");
    std::fs::write(
        &key,
        ok(run(&[
            "keys",
            "show",
            "--pem",
            "--data-dir",
            dir.to_str().unwrap(),
        ])),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("verify").arg("--key").arg(&key);
    for w in witnesses {
        cmd.args(["--witness", w]);
    }
    cmd.arg(bundle).output().unwrap()
}

#[test]
fn a_bundle_verifies_with_its_witness_and_a_forked_log_s_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (log_a, _) = transparency_keys(&dir_a);
    let (_, witness_b) = transparency_keys(&dir_b);
    assert!(log_a.starts_with("intentproof-gateway/inst_"), "{log_a}");
    assert!(
        witness_b.starts_with("intentproof-witness/inst_"),
        "{witness_b}"
    );

    let config_b = tmp.path().join("b.toml");
    std::fs::write(
        &config_b,
        format!("[[transparency.logs]]\nkey = \"{log_a}\"\n"),
    )
    .unwrap();
    let _b = start_daemon_with(&dir_b, &["--config", config_b.to_str().unwrap()], &[]);
    let addr_b = daemon_listen(&dir_b);
    let config_a = tmp.path().join("a.toml");
    std::fs::write(
        &config_a,
        format!(
            "checkpoint_interval_secs = 1\n\n[[transparency.witnesses]]\nurl = \"http://{addr_b}/v1/witness\"\nkey = \"{witness_b}\"\n"
        ),
    )
    .unwrap();
    let a = start_daemon_with(&dir_a, &["--config", config_a.to_str().unwrap()], &[]);
    let addr_a = daemon_listen(&dir_a);
    ingest(&addr_a, &["w-1", "w-2", "w-3"]);

    // The periodic checkpoint reaches B; B's cosignature comes back.
    let witness_name = witness_b.split('+').next().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let note = loop {
        let note = checkpoint(&addr_a, &dir_a);
        if note.contains(&format!("\u{2014} {witness_name} ")) {
            break note;
        }
        assert!(Instant::now() < deadline, "no cosignature: {note}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        note.starts_with(&format!("{}\n3\n", log_a.split('+').next().unwrap())),
        "{note}"
    );

    // `intentproof doctor` names the witness and what it cosigned.
    let doctor = |dir: &Path| -> String {
        let out = run(&[
            "doctor",
            "--data-dir",
            dir.to_str().unwrap(),
            "--config",
            config_a.to_str().unwrap(),
        ]);
        String::from_utf8(out.stdout).unwrap()
    };
    let report = doctor(&dir_a);
    let witness_line = report
        .lines()
        .find(|l| l.contains(" witness "))
        .unwrap_or_else(|| panic!("no witness line: {report}"));
    assert!(
        witness_line.starts_with("\u{2713}")
            && witness_line.ends_with(&format!("{witness_name} cosigned size 3 of 3")),
        "{report}"
    );

    let bundle = tmp.path().join("a.proof.tar.zst");
    export(&dir_a, &bundle);
    let passed = verify(&bundle, &dir_a, &[&witness_b]);
    let stdout = ok(passed);
    assert!(
        stdout.starts_with("\u{2713} pass: bundle.verify_pass\n"),
        "{stdout}"
    );
    assert!(stdout.contains("- tlog_proofs_valid:3\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("- witness_cosigned:{witness_name}\n")),
        "{stdout}"
    );
    // NAME=KEY form: the witness's name and its public key (what `keys
    // show` prints on B).
    let shown = ok(run(&[
        "keys",
        "show",
        "--data-dir",
        dir_b.to_str().unwrap(),
    ]));
    let raw = shown
        .lines()
        .find_map(|l| l.strip_prefix("public_key: "))
        .unwrap()
        .to_owned();
    ok(verify(&bundle, &dir_a, &[&format!("{witness_name}={raw}")]));
    // Another witness name with the same key is another key ID: refused.
    let wrong = verify(&bundle, &dir_a, &[&format!("someone-else={raw}")]);
    assert_eq!(wrong.status.code(), Some(1));
    drop(a);

    // Forked A: its store rewritten after B witnessed it (same key).
    let dir_f = tmp.path().join("forked");
    std::fs::create_dir_all(&dir_f).unwrap();
    for file in ["instance_key.json", "token"] {
        std::fs::copy(dir_a.join(file), dir_f.join(file)).unwrap();
    }
    let _f = start_daemon_with(&dir_f, &["--config", config_a.to_str().unwrap()], &[]);
    let addr_f = daemon_listen(&dir_f);
    ingest(&addr_f, &["f-1", "f-2", "f-3"]);
    let forked_bundle = tmp.path().join("forked.proof.tar.zst");
    export(&dir_f, &forked_bundle);
    let failed = verify(&forked_bundle, &dir_f, &[&witness_b]);
    assert_eq!(failed.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&failed.stdout);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stdout.starts_with("\u{2717} fail: bundle.witness_cosignature_missing"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("is not cosigned by witness {witness_name}")),
        "{stderr}"
    );
    // Without --witness it is a consistent, attested bundle of its own log.
    ok(verify(&forked_bundle, &dir_f, &[]));
    // The forked log's doctor says the witness cosigned none of it.
    let report = doctor(&dir_f);
    assert!(
        report.contains(&format!("{witness_name} at http://{addr_b}/v1/witness has cosigned none of this log's checkpoints (latest size 3)")),
        "{report}"
    );
    // B refused the fork: its log says so, with the reason.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(dir_b.join("serve.log")).unwrap();
        if log.contains("the log forked: checkpoint of size 3 has root") {
            break;
        }
        assert!(Instant::now() < deadline, "B did not log the fork: {log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
