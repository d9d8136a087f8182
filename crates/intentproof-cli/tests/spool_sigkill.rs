//! What `intentproof mcp` keeps when it is SIGKILLed, and the modes of
//! what it creates.
//!
//! `answered_calls_survive_sigkill`: 30 gateway processes over the demo
//! server, each killed (SIGKILL) right after two bursts of pipelined
//! `tools/call`s: 15 with the daemon up, 15 with it down (each of those
//! starting with the older spools of the ones before pending; a gateway
//! adopts them). Then a daemon (re)start drains what is left. Every call
//! answered more than [`WINDOW`] before its kill must be stored, exactly
//! once (checked by JSON-RPC id); calls answered closer to the kill may be
//! lost. Nothing is set aside as refused (a commit a kill cut short is
//! kept in `spool/torn-tails.txt`, never delivered).
//!
//! `a_data_dir_made_by_the_gateway_is_private`: a data dir first created
//! by `intentproof mcp` under umask 022, its spool, keys, the autostarted
//! daemon's log and `rejected.jsonl`: exact modes 0700 / 0600.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use intentproof_gateway::shipper::{SPOOL_LINGER, TORN_TAILS};
use serde_json::{Value, json};

mod common;

use common::{BIN, child_pids, clean_env, start_daemon};

/// The server name the gateways record under.
const SERVER: &str = "sigkill";
/// Runs per scenario (daemon up, daemon down).
const RUNS: u64 = 15;
/// Calls per burst; two bursts per run.
const BURST: u64 = 12;
/// Between a run's two bursts: longer than [`WINDOW`], so the first
/// burst must always survive the kill.
const PAUSE: Duration = Duration::from_millis(300);
/// From a run's last answer to its kill, run after run: some kills land
/// inside the window, some after it.
const KILL_DELAYS_MS: [u64; 8] = [0, 1, 3, 6, 12, 40, 120, 260];
/// The documented loss window ([`SPOOL_LINGER`] plus one commit's sealing
/// and write) with room for that commit on a shared, loaded 2-core machine
/// running a debug build: a call answered longer than this before the
/// kill must be in the store.
const WINDOW: Duration = SPOOL_LINGER.saturating_add(Duration::from_millis(195));
/// Bound on any one wait (a gateway's answer, a drain).
const DEADLINE: Duration = Duration::from_secs(60);

/// One killed gateway: when each of its calls was answered, and when it
/// was killed.
struct Killed {
    answered: Vec<(u64, Instant)>,
    killed_at: Instant,
}

/// A gateway process over the demo server, driven with raw JSON-RPC lines.
struct Gateway {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Gateway {
    fn start(data: &Path, log: &Path) -> Gateway {
        let mut command = Command::new(BIN);
        clean_env(&mut command)
            .args(["mcp", "--name", SERVER, "--no-autostart", "--data-dir"])
            .arg(data)
            .args(["--", BIN, "demo-server"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap());
        let mut child = command.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut gateway = Gateway {
            child,
            stdin,
            stdout,
        };
        gateway.send(&[
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "spool-sigkill", "version": "1"}}}),
        ]);
        let answer = gateway.read_answer();
        assert_eq!(answer["id"], json!(0), "{answer}");
        assert!(answer["result"].is_object(), "{answer}");
        gateway.send(&[json!({"jsonrpc": "2.0", "method": "notifications/initialized"})]);
        gateway
    }

    /// Writes `messages` in one write (a burst arrives together).
    fn send(&mut self, messages: &[Value]) {
        let text: String = messages.iter().map(|m| format!("{m}\n")).collect();
        self.stdin.write_all(text.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next answer (a message with an id and no method).
    fn read_answer(&mut self) -> Value {
        loop {
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "the gateway closed its stdout"
            );
            let message: Value = serde_json::from_str(&line).unwrap();
            if message.get("id").is_some() && message.get("method").is_none() {
                return message;
            }
        }
    }

    /// Sends `ids` as one burst of `lookup_order` calls; returns when each
    /// was answered (as this side read it: after the gateway wrote it).
    fn burst(&mut self, ids: std::ops::Range<u64>) -> Vec<(u64, Instant)> {
        let calls: Vec<Value> = ids
            .clone()
            .map(|id| {
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "lookup_order", "arguments": {"order_id": format!("ORD-{id}")}}})
            })
            .collect();
        self.send(&calls);
        let mut answered = Vec::new();
        for _ in ids.clone() {
            let answer = self.read_answer();
            let at = Instant::now();
            assert!(answer["result"].is_object(), "{answer}");
            let id = answer["id"].as_u64().unwrap();
            assert!(ids.contains(&id), "{answer}");
            answered.push((id, at));
        }
        answered
    }

    /// SIGKILL; its upstream (which would exit at its stdin's end) is
    /// killed too, and both are reaped, so that the next gateway or daemon
    /// sees this one gone.
    fn kill(mut self) -> Instant {
        let upstream = child_pids(self.child.id());
        let killed_at = Instant::now();
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        for pid in upstream {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        killed_at
    }
}

/// Non-blank lines in the data dir's spool files (`rejected.jsonl` aside).
fn spooled_lines(data: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(data.join("spool")) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name() != "rejected.jsonl")
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count()
        })
        .sum()
}

/// Runs one scenario's gateways on `data` and kills each after its bursts.
fn kill_runs(data: &Path, logs: &Path, first_run: u64, daemon_down: bool) -> Vec<Killed> {
    let mut killed = Vec::new();
    for run in first_run..first_run + RUNS {
        if daemon_down && run > first_run {
            // The older gateways' spools wait: this one adopts them.
            assert!(spooled_lines(data) > 0, "run {run}: no older spool pending");
        }
        let mut gateway = Gateway::start(data, &logs.join(format!("gateway-{run}.log")));
        let base = run * 1000;
        let mut answered = gateway.burst(base + 1..base + 1 + BURST);
        std::thread::sleep(PAUSE);
        answered.extend(gateway.burst(base + 101..base + 101 + BURST));
        let delay = KILL_DELAYS_MS[usize::try_from(run).unwrap() % KILL_DELAYS_MS.len()];
        std::thread::sleep(Duration::from_millis(delay));
        let killed_at = gateway.kill();
        killed.push(Killed {
            answered,
            killed_at,
        });
    }
    killed
}

/// Waits until no spool holds an event (the daemon drained them at its
/// start), failing with the spool's contents.
fn wait_spool_drained(data: &Path) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let pending: Vec<String> = std::fs::read_dir(data.join("spool"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name() != "rejected.jsonl" && e.file_name() != TORN_TAILS)
            .filter(|e| e.metadata().is_ok_and(|m| m.len() > 0))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not drain the spool: {pending:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many times each JSON-RPC id of this server's calls is stored.
fn stored_ids(data: &Path) -> BTreeMap<u64, usize> {
    let mut ids = BTreeMap::new();
    let mut cursor: Option<u64> = None;
    loop {
        let mut command = Command::new(BIN);
        clean_env(&mut command).args(["events", "--json", "--limit", "1000", "--data-dir"]);
        command.arg(data);
        if let Some(cursor) = cursor {
            command.args(["--cursor", &cursor.to_string()]);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let page: Value = serde_json::from_slice(&out.stdout).unwrap();
        for event in page["events"].as_array().unwrap() {
            let event = &event["event"];
            if event["action"] != format!("mcp.{SERVER}.lookup_order") {
                continue;
            }
            let id: u64 = event["attributes"]["jsonrpc.id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            *ids.entry(id).or_insert(0) += 1;
        }
        match page["next_cursor"].as_u64() {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

/// Checks one scenario: every call answered more than [`WINDOW`] before
/// its kill is stored, once; nothing stored that was not sent. Returns
/// (answered, stored, lost inside the window, the oldest lost call's age
/// at its kill).
fn check(
    scenario: &str,
    killed: &[Killed],
    stored: &BTreeMap<u64, usize>,
) -> (usize, usize, usize, Duration) {
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{scenario}: stored more than once: {twice:?}"
    );
    let answered: BTreeSet<u64> = killed
        .iter()
        .flat_map(|k| k.answered.iter().map(|(id, _)| *id))
        .collect();
    let unknown: Vec<_> = stored.keys().filter(|id| !answered.contains(id)).collect();
    assert!(unknown.is_empty(), "{scenario}: never sent: {unknown:?}");
    let mut missing = Vec::new();
    let mut lost_inside = 0;
    let mut oldest_lost = Duration::ZERO;
    for run in killed {
        for (id, at) in &run.answered {
            if stored.contains_key(id) {
                continue;
            }
            let age = run.killed_at.duration_since(*at);
            if age > WINDOW {
                missing.push((*id, age));
            } else {
                lost_inside += 1;
                oldest_lost = oldest_lost.max(age);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{scenario}: calls answered more than {WINDOW:?} before the kill are not stored \
         (id, answered this long before the kill): {missing:?}"
    );
    (answered.len(), stored.len(), lost_inside, oldest_lost)
}

/// Nothing was refused: shows what was, with the daemon's log, if not.
fn assert_nothing_set_aside(data: &Path) {
    let rejected = data.join("spool/rejected.jsonl");
    if let Ok(text) = std::fs::read_to_string(&rejected) {
        // The daemon's log and every gateway's that says why.
        let logs = [data.join("serve.log")]
            .into_iter()
            .chain(
                std::fs::read_dir(data.parent().unwrap())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            )
            .filter_map(|p| Some((std::fs::read_to_string(&p).ok()?, p)))
            .filter(|(text, _)| text.contains("refused"))
            .map(|(text, p)| format!("{}:\n{text}", p.display()))
            .collect::<String>();
        panic!(
            "events were set aside in {}:\n{text}\n{logs}",
            rejected.display()
        );
    }
}

/// Ids of both scenarios stay apart: runs 0..RUNS have the daemon up,
/// RUNS..2*RUNS down.
#[test]
fn answered_calls_survive_sigkill() {
    let up = std::thread::spawn(|| {
        let temp = tempfile::tempdir().unwrap();
        let data = temp.path().join("data");
        let daemon = start_daemon(&data);
        let killed = kill_runs(&data, temp.path(), 0, false);
        // What the last gateways left in the spool goes in at the next start.
        drop(daemon);
        let _daemon = start_daemon(&data);
        wait_spool_drained(&data);
        let stored = stored_ids(&data);
        assert_nothing_set_aside(&data);
        check("daemon up", &killed, &stored)
    });
    let down = std::thread::spawn(|| {
        let temp = tempfile::tempdir().unwrap();
        let data = temp.path().join("data");
        let killed = kill_runs(&data, temp.path(), RUNS, true);
        let _daemon = start_daemon(&data);
        wait_spool_drained(&data);
        let stored = stored_ids(&data);
        assert_nothing_set_aside(&data);
        check("daemon down", &killed, &stored)
    });
    for (scenario, result) in [("daemon up", up.join()), ("daemon down", down.join())] {
        let (answered, stored, lost_inside, oldest_lost) =
            result.unwrap_or_else(|e| std::panic::resume_unwind(e));
        eprintln!(
            "{scenario}: {RUNS} kills, {answered} calls answered, {stored} stored, \
             {lost_inside} lost within {WINDOW:?} of a kill (the oldest answered \
             {oldest_lost:?} before it)"
        );
    }
}

/// The mode bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The one file in `dir` whose name ends with `suffix`.
fn only_file(dir: &Path, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "{}: {found:?}", dir.display());
    found.into_iter().next().unwrap()
}

/// `intentproof mcp ARGS` under umask 022, over the demo server, stdio piped.
fn gateway_umask_022(data: &Path, extra: &[&str], log: &Path) -> Gateway {
    let mut command = Command::new("sh");
    clean_env(&mut command)
        .args([
            "-c",
            "umask 022 && exec \"$@\"",
            "sh",
            BIN,
            "mcp",
            "--name",
            SERVER,
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .args(["--", BIN, "demo-server"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    let mut child = command.spawn().unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut gateway = Gateway {
        child,
        stdin,
        stdout,
    };
    gateway.send(&[
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "spool-modes", "version": "1"}}}),
    ]);
    assert!(gateway.read_answer()["result"].is_object());
    gateway
}

/// Stops the daemon a gateway started on a data dir, even when the test fails.
struct StopDaemon(PathBuf);

impl Drop for StopDaemon {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["stop", "--data-dir"])
            .arg(&self.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn a_data_dir_made_by_the_gateway_is_private() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let _stop = StopDaemon(data.clone());

    // First run, no daemon: the gateway creates the data dir, its key, the
    // spool. Killed once its call is spooled.
    let mut gateway = gateway_umask_022(&data, &["--no-autostart"], &temp.path().join("1.log"));
    gateway.burst(1..2);
    let deadline = Instant::now() + DEADLINE;
    while spooled_lines(&data) < 1 {
        assert!(Instant::now() < deadline, "the call was never spooled");
        std::thread::sleep(Duration::from_millis(10));
    }
    let spool = only_file(&data.join("spool"), ".jsonl");
    let trusted = only_file(&data.join("trusted-keys"), ".pub");
    let hash_key = only_file(&data, "redaction-hash.key");
    gateway.kill();
    for (path, expected) in [
        (&data, 0o700),
        (&data.join("spool"), 0o700),
        (&spool, 0o600),
        (&data.join("trusted-keys"), 0o700),
        (&trusted, 0o600),
        (&hash_key, 0o600),
    ] {
        assert_eq!(
            format!("{:o}", mode(path)),
            format!("{expected:o}"),
            "{}",
            path.display()
        );
    }

    // Second run, autostart: it adopts the first run's spool and one with
    // a line the daemon refuses (set aside in rejected.jsonl), starts the
    // daemon (its log next to the data), delivers, and ends.
    let dead_pid = {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    std::fs::write(
        data.join("spool")
            .join(format!("inst_gone.{dead_pid}.jsonl")),
        "{\"not\": \"an event\"}\n",
    )
    .unwrap();
    let mut gateway = gateway_umask_022(&data, &[], &temp.path().join("2.log"));
    gateway.burst(2..3);
    drop(gateway.stdin);
    let status = gateway.child.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(temp.path().join("2.log")).unwrap_or_default()
    );
    let stored = stored_ids(&data);
    assert_eq!(stored, BTreeMap::from([(1, 1), (2, 1)]));
    assert_eq!(
        std::fs::read_to_string(data.join("spool/rejected.jsonl")).unwrap(),
        "{\"not\": \"an event\"}\n"
    );
    for (path, expected) in [
        (&data, 0o700),
        (&data.join("daemon.log"), 0o600),
        (&data.join("spool/rejected.jsonl"), 0o600),
    ] {
        assert_eq!(
            format!("{:o}", mode(path)),
            format!("{expected:o}"),
            "{}",
            path.display()
        );
    }
}
