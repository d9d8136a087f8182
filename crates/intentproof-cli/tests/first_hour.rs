//! What a new user meets in the first hour (issue #19, item 6), with the
//! real binary: `intentproof stop` stops the daemon of a data dir and
//! refuses to signal a process it cannot prove is that daemon; errors say
//! each cause once; `keys show --pem` writes a file `--key` reads; doctor
//! does not count an emptied spool file as pending; and a missing MCP
//! upstream command is in the daemon's log, not only in the client's 502.

use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::{BIN, command_server, http_exchange, start_daemon, start_gateway_daemon};

fn run(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    common::clean_env(&mut cmd);
    cmd.args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn daemon_info(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("daemon.json")).unwrap()).unwrap()
}

fn instance_id(dir: &Path) -> String {
    let key: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("instance_key.json")).unwrap())
            .unwrap();
    key["instance_id"].as_str().unwrap().to_owned()
}

#[test]
fn stop_stops_the_daemon_and_waits_until_it_has_exited() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let d = dir.to_str().unwrap();
    let mut daemon = start_daemon(&dir);
    let info = daemon_info(&dir);
    let pid = info["pid"].as_u64().unwrap();
    assert_eq!(pid, u64::from(daemon.0.id()));

    let out = run(&["stop", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "stopped the daemon of {d} (pid {pid}, http://{})\n",
            info["listen"].as_str().unwrap()
        )
    );
    // It has exited (cleanly: SIGTERM drains), and its store is free.
    let status = daemon.0.try_wait().unwrap().expect("the daemon has exited");
    assert!(status.success(), "{status}");
    assert!(!dir.join("daemon.json").exists());
    let verified = run(&["store", "verify", "--data-dir", d]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        text(&verified.stderr)
    );

    let out = run(&["stop", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("no daemon is running on {d} (no daemon.json)\n")
    );
}

#[test]
fn stop_signals_nothing_it_cannot_prove_is_the_data_dirs_daemon() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let d = dir.to_str().unwrap();
    let other_dir = temp.path().join("other");
    let mut other = start_daemon(&other_dir);
    let other_info = daemon_info(&other_dir);
    // `keys new` makes `dir` a data dir with its own instance key.
    assert_eq!(
        run(&["keys", "new", "--data-dir", d]).status.code(),
        Some(0)
    );

    // A stale daemon.json whose address another data dir's daemon answers.
    std::fs::write(dir.join("daemon.json"), other_info.to_string()).unwrap();
    let out = run(&["stop", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: http://{} is answered by daemon instance {}, not by this data dir's ({}); {d}/daemon.json is stale. Nothing was stopped\n",
            other_info["listen"].as_str().unwrap(),
            instance_id(&other_dir),
            instance_id(&dir),
        )
    );
    assert!(
        other.0.try_wait().unwrap().is_none(),
        "the other daemon runs on"
    );

    // A stale daemon.json naming a process that is alive (this test) where
    // nothing answers: not signalled.
    let me = std::process::id();
    std::fs::write(
        dir.join("daemon.json"),
        format!(r#"{{"listen":"127.0.0.1:1","pid":{me}}}"#),
    )
    .unwrap();
    let out = run(&["stop", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: {d}/daemon.json names pid {me}, but nothing answers at http://127.0.0.1:1 ("
        )) && stderr.ends_with(&format!(
            "). Nothing was stopped: if pid {me} is a hung intentproof daemon, `kill {me}` stops it after draining\n"
        )),
        "{stderr}"
    );

    // A stale daemon.json of a process that has exited.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(
        dir.join("daemon.json"),
        format!(r#"{{"listen":"127.0.0.1:1","pid":{gone_pid}}}"#),
    )
    .unwrap();
    let out = run(&["stop", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "no daemon is running on {d} (daemon.json is left from pid {gone_pid}, which has exited)\n"
        )
    );
}

#[test]
fn errors_say_each_cause_once() {
    let temp = tempfile::tempdir().unwrap();
    let missing = temp.path().join("nope");
    let m = missing.to_str().unwrap();
    let out = run(&["events", "--data-dir", m]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: no token in {m}; pass the daemon's --data-dir (or set INTENTPROOF_TOKEN): data dir {m}/token: read token (start `intentproof serve` once to create it): No such file or directory (os error 2)\n"
        )
    );

    let dir = temp.path().join("data");
    let _daemon = start_daemon(&dir);
    let out = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.lines().last(),
        Some(
            format!(
                "error: cannot open the store: the store at {}/index is in use by another process (a daemon is already running on this data dir)",
                dir.display()
            )
            .as_str()
        ),
        "{stderr}"
    );
    assert_eq!(stderr.matches("in use by another process").count(), 1);
}

#[test]
fn keys_show_pem_writes_a_key_file_that_verify_reads() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let d = dir.to_str().unwrap();
    assert_eq!(
        run(&["keys", "new", "--data-dir", d]).status.code(),
        Some(0)
    );

    // The pipeline as a user types it.
    let script = format!(
        "cd '{}' && '{BIN}' keys show --pem --data-dir '{d}' > key.pem",
        temp.path().display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pem = std::fs::read_to_string(temp.path().join("key.pem")).unwrap();
    let lines: Vec<&str> = pem.lines().collect();
    assert_eq!(lines.len(), 3, "{pem}");
    assert_eq!(lines[0], "-----BEGIN PUBLIC KEY-----");
    assert_eq!(lines[2], "-----END PUBLIC KEY-----");
    assert!(pem.ends_with("-----\n"));
    let shown = text(&run(&["keys", "show", "--data-dir", d]).stdout);
    assert!(shown.ends_with(&pem), "{shown}");

    let event = intentproof_core::ExecutionEvent::builder("Refund", "stripe.refunds.create")
        .correlation_id("corr_pem")
        .build();
    let event_file = temp.path().join("event.json");
    std::fs::write(&event_file, serde_json::to_vec(&event).unwrap()).unwrap();
    let key_file = dir.join("instance_key.json");
    let sealed = run(&[
        "event",
        "seal",
        "--key",
        key_file.to_str().unwrap(),
        event_file.to_str().unwrap(),
    ]);
    assert_eq!(sealed.status.code(), Some(0), "{}", text(&sealed.stderr));
    let sealed_file = temp.path().join("sealed.json");
    std::fs::write(&sealed_file, &sealed.stdout).unwrap();
    let sealed: serde_json::Value = serde_json::from_slice(&sealed.stdout).unwrap();

    let script = format!(
        "cd '{}' && '{BIN}' event verify --key key.pem sealed.json",
        temp.path().display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let valid = text(&out.stdout);
    assert!(
        valid.starts_with(&format!(
            "valid: event {}, content hash ",
            sealed["event_id"].as_str().unwrap()
        )),
        "{valid}"
    );
}

#[test]
fn keys_show_pem_of_the_daemon_verifies_its_bundles() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("demo");
    let d = dir.to_str().unwrap();
    let demo = run(&["demo", "--non-interactive", "--data-dir", d]);
    assert_eq!(demo.status.code(), Some(0), "{}", text(&demo.stderr));

    let script = format!(
        "cd '{}' && '{BIN}' keys show --pem --data-dir '{d}' > key.pem && '{BIN}' verify --key key.pem '{d}/ORD-1042.proof.tar.zst'",
        temp.path().display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("✓ pass: bundle.verify_pass\n"),
        "{}",
        text(&out.stdout)
    );
}

/// A doctor's `spool` lines.
fn spool_lines(dir: &str) -> Vec<String> {
    let out = run(&[
        "doctor",
        "--data-dir",
        dir,
        "--server",
        "http://127.0.0.1:1",
    ]);
    text(&out.stdout)
        .lines()
        .filter(|l| l[l.char_indices().nth(2).map_or(0, |(i, _)| i)..].starts_with("spool "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn doctor_counts_spooled_events_not_emptied_files() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let d = dir.to_str().unwrap();
    assert_eq!(
        run(&["keys", "new", "--data-dir", d]).status.code(),
        Some(0)
    );
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    // A shipper that delivered everything empties its file and keeps it.
    std::fs::write(spool.join("inst_a.4242.jsonl"), b"").unwrap();
    assert_eq!(
        spool_lines(d),
        ["✓ spool               no event waits for the daemon"]
    );

    std::fs::write(spool.join("inst_b.4343.jsonl"), b"{\"a\":1}\n{\"b\":2}\n").unwrap();
    std::fs::write(spool.join("rejected.jsonl"), b"{\"c\":3}\n").unwrap();
    assert_eq!(
        spool_lines(d),
        [
            format!(
                "! spool               2 event(s) in 1 spool file(s) wait for the daemon in {}",
                spool.display()
            ),
            format!(
                "! spool               1 event(s) the daemon refused are kept in {}",
                spool.join("rejected.jsonl").display()
            ),
        ]
    );
}

#[test]
fn a_missing_upstream_command_is_in_the_daemon_log() {
    let temp = tempfile::tempdir().unwrap();
    let (_daemon, addr) = start_gateway_daemon(
        temp.path(),
        &command_server("ghost", &["/nonexistent/ghost-mcp-server".into()]),
    );
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"newcomer","version":"1"}}}"#;
    let (status, _, body) = http_exchange(
        &addr,
        "POST",
        "/mcp/ghost",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        initialize,
    );
    assert_eq!(status, 502, "{body}");
    let reason = "cannot start MCP server ghost (`/nonexistent/ghost-mcp-server`): No such file or directory (os error 2)";
    assert!(body.contains(reason), "{body}");
    // Logged before the 502 was sent.
    let log = std::fs::read_to_string(temp.path().join("daemon.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains(reason))
        .unwrap_or_else(|| panic!("no log line about the spawn failure in:\n{log}"));
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains("server=ghost"), "{line}");
    assert!(
        line.ends_with("error=No such file or directory (os error 2)"),
        "{line}"
    );
}
