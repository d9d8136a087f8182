//! The library's durable outbox (`Durability::Local`) against the real
//! daemon, with SIGKILL.
//!
//! A child process (this test binary again, running
//! [`durable_child`] with `INTENTPROOF_DURABLE_CHILD` set) wraps calls in a
//! loop with a signer and prints the marker of every call whose `wrap`
//! returned. It is killed with SIGKILL 20 times at random moments; each new
//! child opens the same outbox and delivers what its predecessor left. A
//! last child only flushes. Then every printed marker must be in the
//! daemon exactly once, and no event id twice.
//!
//! The kill delays come from a seeded generator; the seed is printed, and
//! `CRASH_SEED=<n>` replays a run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Stopped, daemon_listen, start_daemon};
use intentproof::{
    BodyFormat, Durability, Exporter, HttpExporter, HttpExporterConfig, IntentProofClient,
    IntentProofConfig, WrapOptions,
};
use intentproof_core::keys::InstanceKey;
use intentproof_core::seal::Sealer;
use serde_json::Value;

/// Rounds that end with a SIGKILL.
const KILLS: usize = 20;
const CHILD_ENV: &str = "INTENTPROOF_DURABLE_CHILD";
const ACTION: &str = "test.durable.call";

/// xorshift64*: reproducible kill delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
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
            .unwrap_or(1)
            .max(1),
    }
}

/// The client a child uses: sealed, durable in `outbox`, delivered to the
/// daemon's batch ingest with the daemon token. Every delivery failure is
/// counted in `failures` and written to stderr (kept by the parent).
fn durable_client(
    outbox: &Path,
    url: &str,
    token: &str,
    failures: Arc<AtomicUsize>,
) -> IntentProofClient {
    let http = HttpExporter::new(HttpExporterConfig {
        headers: vec![("Authorization".into(), format!("Bearer {token}"))],
        format: BodyFormat::BareV1,
        ..HttpExporterConfig::new(url)
    })
    .expect("exporter config");
    let sealer = Sealer::new(InstanceKey::from_seed("inst_durable_test", [7u8; 32]));
    IntentProofClient::try_new(
        IntentProofConfig::default()
            .signer(Arc::new(sealer))
            .exporters(vec![Arc::new(http) as Arc<dyn Exporter>])
            .on_exporter_error(move |failure| {
                failures.fetch_add(1, Ordering::SeqCst);
                eprintln!("delivery failed: {}: {}", failure.exporter, failure.error);
            })
            .durability(Durability::Local {
                dir: outbox.to_owned(),
            }),
    )
    .expect("the outbox opens")
}

/// The child: not a test of its own (it returns at once without
/// `INTENTPROOF_DURABLE_CHILD`).
#[test]
fn durable_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).expect("child spec");
    let outbox = Path::new(spec["outbox"].as_str().expect("outbox"));
    let failures = Arc::new(AtomicUsize::new(0));
    let client = durable_client(
        outbox,
        spec["url"].as_str().expect("url"),
        spec["token"].as_str().expect("token"),
        Arc::clone(&failures),
    );
    let run = spec["run"].as_u64().expect("run");
    if spec["drain"].as_bool() == Some(true) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // `flush` returns after a failed attempt too (the delivery task
        // retries with backoff): flush until one ends with no failure.
        loop {
            let before = failures.load(Ordering::SeqCst);
            runtime.block_on(client.flush());
            if failures.load(Ordering::SeqCst) == before {
                break;
            }
        }
        println!("drained");
        return;
    }
    let call = client
        .wrap(
            WrapOptions::new("Survive SIGKILL", ACTION),
            |marker: String| Ok::<_, std::io::Error>(marker.len()),
        )
        .expect("wrap");
    let correlation = format!("durable-run-{run}");
    let mut stdout = std::io::stdout().lock();
    for i in 0.. {
        let marker = format!("r{run}-c{i}");
        client
            .with_correlation_id(&correlation, || call.call(marker.clone()))
            .expect("call");
        // Printed only after `wrap` returned: the parent holds us to it.
        use std::io::Write;
        writeln!(stdout, "returned {marker}").expect("stdout");
        stdout.flush().expect("stdout");
    }
}

#[test]
fn every_call_whose_wrap_returned_survives_sigkill_once() {
    let seed = seed();
    println!("CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let outbox = tmp.path().join("outbox");
    let daemon: Stopped = start_daemon(&data);
    let url = format!("http://{}/v1/events", daemon_listen(&data));
    let token = std::fs::read_to_string(data.join("token"))
        .expect("daemon token")
        .trim()
        .to_owned();
    let me = std::env::current_exe().expect("test binary");
    let child = |run: usize, drain: bool| {
        let spec = serde_json::json!({
            "outbox": outbox, "url": url, "token": token, "run": run, "drain": drain,
        });
        Command::new(&me)
            .args([
                "--exact",
                "durable_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, spec.to_string())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::create(tmp.path().join(format!("child-{run}.stderr")))
                    .expect("child stderr"),
            )
            .spawn()
            .expect("spawn child")
    };

    let mut returned: Vec<String> = Vec::new();
    for run in 0..KILLS {
        let mut process = child(run, false);
        let stdout = process.stdout.take().expect("child stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| line.strip_prefix("returned ").map(str::to_owned))
                .collect::<Vec<String>>()
        });
        // The child needs some milliseconds to start and deliver its
        // predecessor's backlog: kill anywhere from before its first call
        // to well into its loop.
        std::thread::sleep(Duration::from_millis(20 + rng.next() % 400));
        process.kill().expect("SIGKILL");
        let status = process.wait().expect("wait");
        assert_eq!(
            status.code(),
            None,
            "run {run}: the child must die by the signal"
        );
        let markers = reader.join().expect("reader");
        returned.extend(markers);
    }
    let mut drain = child(KILLS, true);
    let drain_stderr = || {
        std::fs::read_to_string(tmp.path().join(format!("child-{KILLS}.stderr")))
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = drain.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the draining child did not finish; its stderr:\n{}",
            drain_stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the draining child failed: {status}");
    assert!(
        returned.len() > KILLS,
        "the children returned from only {} calls: the kills came too early to test anything",
        returned.len()
    );

    // Everything in the daemon: page through the test's events.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let stored = runtime.block_on(async {
        let http = reqwest::Client::new();
        let base = url.trim_end_matches("/v1/events");
        let mut stored = Vec::new();
        let mut cursor: Option<u64> = None;
        loop {
            let mut path = format!("{base}/v1/events?action={ACTION}&limit=1000");
            if let Some(cursor) = cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page: Value = http
                .get(&path)
                .bearer_auth(&token)
                .send()
                .await
                .expect("GET /v1/events")
                .json()
                .await
                .expect("events page");
            for event in page["events"].as_array().expect("events") {
                let event = &event["event"];
                stored.push((
                    event["event_id"].as_str().expect("event_id").to_owned(),
                    event["inputs"][0].as_str().expect("marker").to_owned(),
                ));
            }
            match page["next_cursor"].as_u64() {
                Some(next) => cursor = Some(next),
                None => break stored,
            }
        }
    });
    let mut per_marker: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, marker) in &stored {
        *per_marker.entry(marker.as_str()).or_default() += 1;
    }
    let ids: BTreeSet<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    let missing: Vec<&String> = returned
        .iter()
        .filter(|m| !per_marker.contains_key(m.as_str()))
        .collect();
    let twice: Vec<(&&str, &usize)> = per_marker.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "{KILLS} SIGKILLs: {} calls returned, {} events stored ({} distinct ids)",
        returned.len(),
        stored.len(),
        ids.len()
    );
    let drained = drain_stderr();
    if !drained.is_empty() {
        println!("the draining child's stderr:\n{drained}");
    }
    assert!(
        missing.is_empty(),
        "{} calls whose wrap returned are not in the daemon (the first: {:?}); the draining child's stderr:\n{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        drain_stderr()
    );
    assert_eq!(
        twice,
        Vec::<(&&str, &usize)>::new(),
        "calls stored more than once"
    );
    assert_eq!(ids.len(), stored.len(), "an event id stored twice");
    drop(daemon);
}

/// A plan declared without the token: the daemon refuses the reserved
/// action for good, the outbox keeps the declaration in `refused.ndjson`
/// (and says so), and the ordinary call beside it is stored.
#[test]
fn a_plan_sent_without_the_token_is_kept_as_refused_not_lost() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let outbox = tmp.path().join("outbox");
    let daemon = start_daemon(&data);
    let url = format!("http://{}/v1/events", daemon_listen(&data));
    let http = HttpExporter::new(HttpExporterConfig {
        format: BodyFormat::BareV1,
        ..HttpExporterConfig::new(&url)
    })
    .expect("exporter config");
    let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&reports);
    let client = IntentProofClient::try_new(
        IntentProofConfig::default()
            .signer(Arc::new(Sealer::new(InstanceKey::from_seed(
                "inst_no_token",
                [8u8; 32],
            ))))
            .exporters(vec![Arc::new(http) as Arc<dyn Exporter>])
            .durability(Durability::Local {
                dir: outbox.clone(),
            })
            .on_exporter_error(move |failure| {
                seen.lock()
                    .expect("reports")
                    .push(failure.error.to_string());
            }),
    )
    .expect("the outbox opens");
    let plan = client
        .declare_plan(
            intentproof::PlanDeclaration::new("Refund order 7").step("payments.refund", "Refund"),
        )
        .expect("a valid plan");
    let refund = client
        .wrap(
            WrapOptions::new("Refund", "payments.refund"),
            |cents: u64| Ok::<_, std::io::Error>(cents),
        )
        .expect("wrap");
    client
        .with_correlation_id(&plan.correlation_id, || refund.call(700))
        .expect("call");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(client.flush());

    let refused = std::fs::read_to_string(outbox.join("refused.ndjson")).expect("refused.ndjson");
    let lines: Vec<Value> = refused
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{refused}");
    assert_eq!(lines[0]["seq"], 0);
    let reason = lines[0]["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with(
            "http: HTTP 403 reserved_action: action \"intentproof.plan.declare\" is reserved"
        ),
        "{reason}"
    );
    // Kept as the signed body, ready to send again with the token.
    let kept = &lines[0]["event"];
    assert_eq!(kept["action"], "intentproof.plan.declare");
    intentproof_core::seal::verify_event(
        kept,
        &InstanceKey::from_seed("inst_no_token", [8u8; 32]).verifying_key(),
    )
    .expect("the kept event still verifies");
    // Sent again with the token, it is taken.
    let token = std::fs::read_to_string(data.join("token")).expect("daemon token");
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .post(&url)
            .bearer_auth(token.trim())
            .json(kept)
            .send()
            .await
            .expect("POST /v1/events")
            .status()
            .as_u16()
    });
    assert_eq!(status, 202);
    let reports = reports.lock().expect("reports").clone();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].contains("refused for good"), "{reports:?}");
    // The call was stored; the declaration is now too.
    let events = common::cli_json(&["events", "--correlation", &plan.correlation_id], &data);
    let actions: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event"]["action"].as_str().expect("action"))
        .collect();
    // In the order they arrived: the declaration (chain position 1) was
    // sent again after the call (position 2) was stored.
    assert_eq!(actions, ["payments.refund", "intentproof.plan.declare"]);
    drop(daemon);
}
