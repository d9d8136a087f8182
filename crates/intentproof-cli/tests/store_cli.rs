//! `intentproof serve`, `events`, `chains`, `store verify` and
//! `store rebuild` as a user runs them: the real binary, a real daemon.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_intentproof");

/// The daemon child, killed if the test panics.
struct Daemon {
    child: Child,
    addr: String,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        let _ = std::fs::remove_file(dir.join("daemon.json"));
        let child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The guard owns the child from here on: a failed start still reaps it.
        let mut daemon = Daemon {
            child,
            addr: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(dir.join("daemon.json")) {
                let info: serde_json::Value = serde_json::from_str(&text).unwrap();
                daemon.addr = info["listen"].as_str().unwrap().to_owned();
                return daemon;
            }
            assert!(Instant::now() < deadline, "daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Raw HTTP/1.1 POST; returns the status code.
    fn post(&self, body: &str) -> u16 {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        write!(
            stream,
            "POST /v1/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response[9..12].parse().unwrap()
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn envelope(id: &str, correlation: &str, action: &str, status: &str) -> String {
    serde_json::json!({"intentproof": "1", "event": {
        "id": id, "correlationId": correlation, "intent": format!("intent of {action}"), "action": action,
        "inputs": [{"orderId": "ORD-1042"}], "status": status, "output": {"ok": status == "ok"},
        "startedAt": "2026-11-28T10:00:00.000Z", "completedAt": "2026-11-28T10:00:00.250Z", "durationMs": 250}})
    .to_string()
}

/// A stopped store with 6 events in 2 chains.
fn populated() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let daemon = Daemon::start(&path);
    for i in 0..6 {
        let correlation = if i < 4 {
            "req_refund_ord_1042"
        } else {
            "req_other"
        };
        let status = if i == 2 { "error" } else { "ok" };
        assert_eq!(
            daemon.post(&envelope(
                &format!("ev-{i}"),
                correlation,
                &format!("step.{i}"),
                status
            )),
            202
        );
    }
    daemon.stop();
    (dir, path)
}

#[test]
fn events_and_chains_print_tables_and_json() {
    let (_guard, dir) = populated();
    let daemon = Daemon::start(&dir);
    let chains = run(&["chains"], &dir);
    assert!(chains.status.success(), "{chains:?}");
    let table = stdout(&chains);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("CORRELATION"), "{table}");
    assert!(
        lines.iter().any(|l| l.starts_with("req_refund_ord_1042")
            && l.contains("     4      1 ")
            && l.contains(" yes ")),
        "{table}"
    );
    assert_eq!(lines.last(), Some(&"2 chains"));

    let events = run(
        &["events", "--correlation", "req_refund_ord_1042", "--json"],
        &dir,
    );
    let json: serde_json::Value = serde_json::from_slice(&events.stdout).unwrap();
    let actions: Vec<&str> = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["step.0", "step.1", "step.2", "step.3"]);
    let errors = run(&["events", "--status", "error"], &dir);
    let text = stdout(&errors);
    assert!(
        text.contains(" step.2 ") && text.ends_with("1 events\n"),
        "{text}"
    );
    daemon.stop();
}

#[test]
fn store_verify_passes_then_names_the_tampered_record() {
    let (_guard, dir) = populated();
    let ok = run(&["store", "verify"], &dir);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert_eq!(
        stdout(&ok),
        "ok: 6 records, 2 chains, 6 signatures verified, 0 from instances with no trusted key, Merkle root matches the signed checkpoint of 6 records\n"
    );

    // Flip one byte inside record 3's payload.
    let segment = dir.join("journal/00000000000000000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let mut at = 8;
    for _ in 0..3 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 16 + len;
    }
    bytes[at + 16 + 30] ^= 0x20;
    std::fs::write(&segment, bytes).unwrap();
    let bad = run(&["store", "verify"], &dir);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.starts_with(&format!("invalid: journal record 3 (segment 00000000000000000000.seg, byte {at}) is damaged: checksum mismatch")),
        "{stderr}"
    );
}

#[test]
fn store_rebuild_on_a_deleted_index_restores_identical_query_results() {
    let (_guard, dir) = populated();
    let snapshot = |dir: &Path| {
        let daemon = Daemon::start(dir);
        let chains = stdout(&run(&["chains", "--json"], dir));
        let events = stdout(&run(&["events", "--json", "--limit", "1000"], dir));
        daemon.stop();
        (chains, events)
    };
    let before = snapshot(&dir);
    std::fs::remove_dir_all(dir.join("index")).unwrap();
    let rebuilt = run(&["store", "rebuild"], &dir);
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    assert_eq!(
        stdout(&rebuilt),
        format!(
            "rebuilt the index of {} from 6 journal records\n",
            dir.display()
        )
    );
    let after = snapshot(&dir);
    assert_eq!(before, after);
    assert!(before.1.contains("\"req_refund_ord_1042\""));
}
