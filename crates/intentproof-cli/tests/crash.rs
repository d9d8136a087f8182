//! Crash safety of the daemon, end to end with the built `intentproof`
//! binary:
//!
//! - senders post chained events while the daemon is killed with SIGKILL at
//!   random moments; after the last restart every acknowledged event is
//!   served, every chain is complete and verified, and `store verify` passes;
//! - a torn journal tail (a record cut short) is cut away on start, with a
//!   log line saying how many bytes were dropped.
//!
//! The kill delays come from a seeded generator; the seed is printed, and
//! `CRASH_SEED=<n>` replays a run.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use intentproof_core::ExecutionEvent;
use intentproof_core::keys::InstanceKey;
use intentproof_core::seal::Sealer;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_intentproof");
/// Rounds that end with a SIGKILL.
const KILLS: usize = 6;
/// Concurrent senders, one correlation each.
const SENDERS: usize = 6;
/// Events each sender sends after the last restart.
const FINAL_EVENTS: usize = 5;

/// xorshift64*: enough randomness for kill delays, reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn seed() -> u64 {
    match std::env::var("CRASH_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .expect("CRASH_SEED must be an unsigned integer"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

/// A scratch directory, removed afterwards unless `CRASH_KEEP_DIR` is set
/// (then its path is printed, for `intentproof store verify`, `store
/// rebuild` or a look at the daemon logs).
fn scratch() -> (Option<tempfile::TempDir>, PathBuf) {
    let tmp = tempfile::tempdir().expect("create temp dir");
    if std::env::var_os("CRASH_KEEP_DIR").is_some() {
        let path = tmp.keep();
        println!("scratch dir kept: {}", path.display());
        (None, path)
    } else {
        let path = tmp.path().to_owned();
        (Some(tmp), path)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the CLI to completion.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("INTENTPROOF_DATA_DIR")
        .env_remove("INTENTPROOF_SERVER")
        .stdin(Stdio::null())
        .output()
        .expect("run intentproof")
}

fn store_verify(dir: &Path) {
    let out = run(&["store", "verify", "--data-dir", dir.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "store verify failed\nstdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    assert!(stdout.starts_with("ok:"), "store verify printed: {stdout}");
    println!("store verify: {}", stdout.trim_end());
}

/// A running `intentproof serve`. Dropping it kills the process (so a
/// failing test leaves nothing behind).
struct Daemon {
    child: Child,
    base: String,
    token: String,
    log: PathBuf,
}

impl Daemon {
    /// Starts the daemon on an ephemeral port, its stderr going to `log`,
    /// and waits until it has written a `daemon.json` with its own pid.
    fn start(data_dir: &Path, log: &Path) -> Daemon {
        let stderr = File::create(log).expect("create daemon log");
        let child = Command::new(BIN)
            .args([
                "serve",
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .env_remove("INTENTPROOF_DATA_DIR")
            .env_remove("INTENTPROOF_CONFIG")
            .env_remove("INTENTPROOF_LISTEN")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn intentproof serve");
        let mut daemon = Daemon {
            child,
            base: String::new(),
            token: String::new(),
            log: log.to_owned(),
        };
        let pid = daemon.child.id();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = daemon.child.try_wait().expect("poll daemon") {
                panic!(
                    "the daemon exited while starting ({status}); log:\n{}",
                    daemon.log_text()
                );
            }
            // A daemon killed earlier leaves a stale daemon.json: wait for ours.
            let info = fs::read_to_string(data_dir.join("daemon.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok());
            if let Some(info) = info.filter(|i| i["pid"].as_u64() == Some(u64::from(pid))) {
                daemon.base = format!(
                    "http://{}",
                    info["listen"].as_str().expect("listen in daemon.json")
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not start in time; log:\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon.token = fs::read_to_string(data_dir.join("token"))
            .expect("read token")
            .trim()
            .to_owned();
        daemon
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the daemon");
        self.child.wait().expect("reap the daemon");
    }

    /// SIGTERM, then wait for a clean exit.
    fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll daemon") {
                assert!(
                    status.success(),
                    "the daemon stopped with {status}; log:\n{}",
                    self.log_text()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop after SIGTERM; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Already reaped: no signal is sent.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build HTTP client")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("start runtime")
}

async fn get_json(
    http: &reqwest::Client,
    daemon_base: &str,
    token: &str,
    path: &str,
) -> (u16, Value) {
    let response = http
        .get(format!("{daemon_base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    let body = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: body: {e}"));
    (status, body)
}

/// One sender: a correlation of its own, sent strictly in chain order.
struct SenderState {
    index: usize,
    correlation: String,
    /// Sent, but the outcome is unknown (the connection broke): must be
    /// re-sent, unchanged, before anything else in this chain.
    pending: Option<Value>,
    /// Event ids acknowledged with 202 or 200, in chain order.
    acked: Vec<String>,
    /// Acknowledgements that were `duplicate` (re-sends of stored events).
    duplicates: usize,
    /// Re-sends of an unknown-outcome event.
    resent: usize,
}

fn event(sealer: &Sealer, state: &SenderState) -> Value {
    let n = state.acked.len() + 1;
    let built = ExecutionEvent::builder("crash test", "crash.step")
        .correlation_id(state.correlation.clone())
        .inputs(json!([{"sender": state.index, "n": n, "pad": "p".repeat(256)}]))
        .output(json!({"ok": true, "n": n}))
        .build();
    sealer.seal(&built).expect("seal").event
}

/// Sends until the connection fails (the daemon was killed) or, with
/// `until`, until that many events are acknowledged.
async fn send(
    http: reqwest::Client,
    base: String,
    sealer: Arc<Sealer>,
    mut state: SenderState,
    until: Option<usize>,
) -> SenderState {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if state.pending.is_none() && until.is_some_and(|n| state.acked.len() >= n) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "sender {} ran too long",
            state.index
        );
        let resend = state.pending.is_some();
        let event = match state.pending.take() {
            Some(event) => event,
            None => event(&sealer, &state),
        };
        let id = event["event_id"].as_str().expect("event id").to_owned();
        let response = match http
            .post(format!("{base}/v1/events"))
            .json(&event)
            .send()
            .await
        {
            Ok(response) => response,
            Err(_) => {
                state.pending = Some(event);
                return state;
            }
        };
        let status = response.status().as_u16();
        let body: Value = match response.json().await {
            Ok(body) => body,
            Err(_) => {
                // Cut mid-response: the outcome is unknown.
                state.pending = Some(event);
                return state;
            }
        };
        match status {
            202 | 200 => {
                assert_eq!(
                    body["event_id"],
                    id.as_str(),
                    "ack for another event: {body}"
                );
                assert_eq!(
                    body["status"],
                    if status == 202 { "stored" } else { "duplicate" },
                    "{body}"
                );
                if status == 200 {
                    state.duplicates += 1;
                }
                if resend {
                    state.resent += 1;
                }
                state.acked.push(id);
            }
            503 => {
                // Overloaded: retry the same event.
                state.pending = Some(event);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => panic!(
                "sender {} (correlation {}): event {id} answered {status}: {body}",
                state.index, state.correlation
            ),
        }
    }
}

#[test]
fn acknowledged_events_survive_sigkill() {
    let seed = seed();
    println!("crash test seed: {seed} (replay with CRASH_SEED={seed})");
    let mut rng = Rng::new(seed);
    let (_tmp, root) = scratch();
    let data = root.join("data");
    let rt = runtime();

    let key = InstanceKey::from_seed("inst_crash_test", [42u8; 32]);
    let public_key = key.public_key_base64();
    let sealer = Arc::new(Sealer::new(key));
    let mut senders: Vec<SenderState> = (0..SENDERS)
        .map(|index| SenderState {
            index,
            correlation: format!("crash-{seed}-{index}"),
            pending: None,
            acked: Vec::new(),
            duplicates: 0,
            resent: 0,
        })
        .collect();

    for round in 0..KILLS {
        let mut daemon = Daemon::start(&data, &root.join(format!("daemon-{round}.log")));
        if round == 0 {
            let out = run(&[
                "keys",
                "trust",
                "inst_crash_test",
                &public_key,
                "--data-dir",
                data.to_str().unwrap(),
            ]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "keys trust: {}",
                text(&out.stderr)
            );
        }
        let delay = Duration::from_millis(rng.between(50, 400));
        let http = http();
        senders = rt.block_on(async {
            let tasks: Vec<_> = senders
                .drain(..)
                .map(|s| {
                    tokio::spawn(send(
                        http.clone(),
                        daemon.base.clone(),
                        Arc::clone(&sealer),
                        s,
                        None,
                    ))
                })
                .collect();
            tokio::time::sleep(delay).await;
            daemon.kill();
            let mut back = Vec::new();
            for task in tasks {
                back.push(task.await.expect("sender task"));
            }
            back
        });
        let acked: usize = senders.iter().map(|s| s.acked.len()).sum();
        let pending = senders.iter().filter(|s| s.pending.is_some()).count();
        println!(
            "round {round}: SIGKILL after {} ms; {acked} events acknowledged so far, {pending} with unknown outcome",
            delay.as_millis()
        );
    }

    // Last restart: re-send what is unknown, then carry on a little.
    let daemon = Daemon::start(&data, &root.join("daemon-final.log"));
    let http = http();
    senders = rt.block_on(async {
        let tasks: Vec<_> = senders
            .drain(..)
            .map(|s| {
                let until = s.acked.len() + usize::from(s.pending.is_some()) + FINAL_EVENTS;
                tokio::spawn(send(
                    http.clone(),
                    daemon.base.clone(),
                    Arc::clone(&sealer),
                    s,
                    Some(until),
                ))
            })
            .collect();
        let mut back = Vec::new();
        for task in tasks {
            back.push(task.await.expect("sender task"));
        }
        back
    });
    let total: usize = senders.iter().map(|s| s.acked.len()).sum();
    let duplicates: usize = senders.iter().map(|s| s.duplicates).sum();
    let resent: usize = senders.iter().map(|s| s.resent).sum();
    println!(
        "{total} events acknowledged; {resent} unknown-outcome re-sends, {duplicates} of them already stored"
    );
    let log = daemon.log_text();
    assert!(log.contains("intentproof daemon listening"), "log:\n{log}");

    // Collect every discrepancy before failing: which of them show up tells
    // a lost event (journal) from a stale index.
    let problems = rt.block_on(async {
        let (base, token) = (daemon.base.as_str(), daemon.token.as_str());
        let mut problems = Vec::new();
        for sender in &senders {
            let corr = &sender.correlation;
            // The chain: complete, verified, exactly the acknowledged events in order.
            let (status, body) = get_json(&http, base, token, &format!("/v1/chains/{corr}")).await;
            if status != 200 {
                problems.push(format!("GET /v1/chains/{corr}: {status} {body}"));
                continue;
            }
            let chain = &body["chain"];
            if chain["events"] != sender.acked.len() || chain["verified"] != true || chain["gaps"] != 0 {
                problems.push(format!(
                    "chain {corr}: {} events acknowledged, summary {chain}",
                    sender.acked.len()
                ));
            }
            let mut ids: Vec<(u64, String)> = body["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| {
                    (
                        e["event"]["chain_position"].as_u64().expect("chain_position"),
                        e["event"]["event_id"].as_str().expect("id").to_owned(),
                    )
                })
                .collect();
            ids.sort();
            let in_order: Vec<String> = ids.into_iter().map(|(_, id)| id).collect();
            if in_order != sender.acked {
                let missing: Vec<usize> = (0..sender.acked.len())
                    .filter(|&i| !in_order.contains(&sender.acked[i]))
                    .map(|i| i + 1)
                    .collect();
                problems.push(format!(
                    "chain {corr}: GET /v1/chains lists {} events, {} acknowledged; positions missing: {missing:?}",
                    in_order.len(),
                    sender.acked.len()
                ));
            }

            // The same through the event list.
            let path = format!("/v1/events?correlation={corr}&limit={}", sender.acked.len() + 10);
            let (status, body) = get_json(&http, base, token, &path).await;
            let listed = body["events"].as_array().map_or(0, Vec::len);
            if status != 200 || listed != sender.acked.len() {
                problems.push(format!(
                    "GET {path}: {status}, {listed} events, {} acknowledged",
                    sender.acked.len()
                ));
            }

            // And one by one.
            for (i, id) in sender.acked.iter().enumerate() {
                let (status, body) = get_json(&http, base, token, &format!("/v1/events/{id}")).await;
                if status != 200 || body["event"]["event_id"] != id.as_str() {
                    problems.push(format!(
                        "acknowledged event {id} (chain {corr}, position {}) is not served: {status} {body}",
                        i + 1
                    ));
                }
            }
        }
        problems
    });
    daemon.terminate();
    for problem in &problems {
        println!("PROBLEM: {problem}");
    }
    store_verify(&data);
    assert!(
        problems.is_empty(),
        "{} problem(s) after the crashes (seed {seed}):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Highest-named journal segment.
fn last_segment(data: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = fs::read_dir(data.join("journal"))
        .expect("list journal")
        .map(|e| e.expect("journal entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    segments.pop().expect("a journal segment")
}

#[test]
fn torn_journal_tail_is_cut_on_start() {
    let (_tmp, root) = scratch();
    let data = root.join("data");
    let rt = runtime();
    let sealer = Sealer::new(InstanceKey::from_seed("inst_torn_test", [7u8; 32]));

    let daemon = Daemon::start(&data, &root.join("daemon-1.log"));
    let http = http();
    let mut ids = Vec::new();
    rt.block_on(async {
        for n in 0..5 {
            let built = ExecutionEvent::builder("torn test", "torn.step")
                .correlation_id("torn")
                .inputs(json!([n]))
                .output(json!({"n": n}))
                .build();
            let event = sealer.seal(&built).expect("seal").event;
            let response = http
                .post(format!("{}/v1/events", daemon.base))
                .json(&event)
                .send()
                .await
                .expect("post event");
            assert_eq!(response.status().as_u16(), 202);
            ids.push(event["event_id"].as_str().expect("id").to_owned());
        }
    });
    daemon.terminate();

    // A record header claiming 500 bytes of payload, then only 40 of them.
    let segment = last_segment(&data);
    let before = fs::metadata(&segment).expect("stat segment").len();
    let mut torn = Vec::new();
    torn.extend_from_slice(&500u32.to_le_bytes());
    torn.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
    torn.extend_from_slice(&5u64.to_le_bytes());
    torn.extend_from_slice(&[b'x'; 40]);
    OpenOptions::new()
        .append(true)
        .open(&segment)
        .expect("open segment")
        .write_all(&torn)
        .expect("append torn record");

    let daemon = Daemon::start(&data, &root.join("daemon-2.log"));
    let log = daemon.log_text();
    assert!(
        log.contains("torn tail"),
        "no torn-tail line in the log:\n{log}"
    );
    assert!(
        log.contains("dropped 56 bytes"),
        "the log does not say 56 bytes were dropped:\n{log}"
    );
    assert_eq!(
        fs::metadata(&segment).expect("stat segment").len(),
        before,
        "the segment was not cut back"
    );

    rt.block_on(async {
        let (base, token) = (daemon.base.as_str(), daemon.token.as_str());
        for id in &ids {
            let (status, body) = get_json(&http, base, token, &format!("/v1/events/{id}")).await;
            assert_eq!(status, 200, "event {id} lost: {body}");
        }
        let (status, body) = get_json(&http, base, token, "/v1/chains/torn").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["chain"]["events"], 5, "{body}");
        assert_eq!(body["chain"]["gaps"], 0, "{body}");
    });
    daemon.terminate();
    store_verify(&data);
}
