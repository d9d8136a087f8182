//! The fleet end to end: `intentproof serve` with `[fleet]` replicating into
//! a real PostgreSQL server (from the system's packages, started per test),
//! through SIGKILLs of the daemon mid-load and a 30 s PostgreSQL outage;
//! then every acknowledged event is in PostgreSQL exactly once, the lag
//! gauges are back to 0, `intentproof fleet verify` passes and `doctor`
//! reports the fleet.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Stopped, start_daemon_with};
use intentproof_core::ExecutionEvent;
use intentproof_core::keys::InstanceKey;
use intentproof_core::seal::Sealer;
use intentproof_fleet::FleetConfig;
use intentproof_fleet::testing::PgServer;
use serde_json::json;

/// Rounds that end with a SIGKILL of the daemon.
const KILLS: usize = 10;

fn base(dir: &Path) -> String {
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("daemon.json")).unwrap()).unwrap();
    format!("http://{}", info["listen"].as_str().unwrap())
}

/// Posts fresh single-event correlations until `stop` (or the daemon
/// dies); returns the ids acknowledged (2xx). An event whose outcome is
/// unknown (the connection broke) is sent again, unchanged, next time.
fn load(
    base: &str,
    sealer: &Sealer,
    until: Instant,
    pending: &mut Option<serde_json::Value>,
    acked: &mut Vec<String>,
) {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    while Instant::now() < until {
        let event = pending.take().unwrap_or_else(|| {
            let n = acked.len();
            let built = ExecutionEvent::builder("replicate the fleet", "fleet.step")
                .correlation_id(format!("corr-{n}"))
                .inputs(json!([{"n": n}]))
                .output(json!({"ok": true}))
                .build();
            sealer.seal(&built).unwrap().event
        });
        match http.post(format!("{base}/v1/events")).json(&event).send() {
            Ok(r) if r.status().is_success() => {
                acked.push(event["event_id"].as_str().unwrap().to_owned())
            }
            Ok(r) => panic!("ingest answered {}: {:?}", r.status(), r.text()),
            Err(_) => {
                *pending = Some(event);
                return;
            }
        }
    }
}

fn metric(base: &str, token: &str, name: &str) -> Option<f64> {
    let text = reqwest::blocking::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .ok()?
        .text()
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
}

#[test]
fn every_acknowledged_event_reaches_postgres_once_through_kills_and_an_outage() {
    let mut pg = PgServer::start(false).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "checkpoint_interval_secs = 1\n[fleet]\npostgres_url = \"{}\"\nbatch_records = 500\n",
            pg.url()
        ),
    )
    .unwrap();
    let extra = ["--config", config.to_str().unwrap()];
    let sealer = Sealer::new(InstanceKey::from_seed("sdk-fleet", [3u8; 32]));
    let (mut pending, mut acked) = (None, Vec::new());
    for round in 0..KILLS {
        let mut daemon = start_daemon_with(&data, &extra, &[]);
        let until = Instant::now() + Duration::from_millis(300 + 50 * round as u64);
        let url = base(&data);
        std::thread::scope(|s| {
            s.spawn(|| {
                load(
                    &url,
                    &sealer,
                    until + Duration::from_secs(5),
                    &mut pending,
                    &mut acked,
                )
            });
            std::thread::sleep(until - Instant::now());
            daemon.0.kill().unwrap();
            daemon.0.wait().unwrap();
        });
    }
    assert!(
        acked.len() > 100,
        "only {} events acknowledged",
        acked.len()
    );
    // PostgreSQL away for 30 s while the daemon keeps acknowledging.
    let daemon: Stopped = start_daemon_with(&data, &extra, &[]);
    let url = base(&data);
    let token = std::fs::read_to_string(data.join("token"))
        .unwrap()
        .trim()
        .to_owned();
    pg.pause();
    let before = acked.len();
    load(
        &url,
        &sealer,
        Instant::now() + Duration::from_secs(30),
        &mut pending,
        &mut acked,
    );
    assert!(pending.is_none());
    assert!(
        acked.len() > before + 100,
        "ingest stalled while PostgreSQL was down"
    );
    let lag = metric(&url, &token, "intentproof_fleet_lag_records").unwrap();
    assert!(lag > 0.0, "no lag while PostgreSQL was down");
    assert_eq!(
        metric(&url, &token, "intentproof_fleet_connected"),
        Some(0.0)
    );
    // The lag in seconds grows through the outage (it is the time since the
    // pump last caught up, not since it last copied something).
    let seconds = metric(&url, &token, "intentproof_fleet_lag_seconds").unwrap();
    assert!(seconds >= 25.0, "lag {seconds} s after a 30 s outage");
    pg.resume().unwrap();

    // Caught up: every record and a checkpoint over all of them.
    let fleet = FleetConfig {
        postgres_url: pg.url(),
        ..FleetConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(fleet.connect()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let total = loop {
        let lag = metric(&url, &token, "intentproof_fleet_lag_records");
        let row = rt
            .block_on(client.query_one(
                "SELECT (SELECT count(*) FROM intentproof.records), (SELECT coalesce(max(tree_size), 0) FROM intentproof.checkpoints)",
                &[],
            ))
            .unwrap();
        let (records, checkpointed): (i64, i64) = (row.get(0), row.get(1));
        if lag == Some(0.0) && records > 0 && checkpointed == records {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "replication did not catch up: lag {lag:?}, {records} rows, checkpoint {checkpointed}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        metric(&url, &token, "intentproof_fleet_lag_seconds"),
        Some(0.0)
    );
    assert_eq!(
        metric(&url, &token, "intentproof_fleet_connected"),
        Some(1.0)
    );
    drop(daemon);

    // Exactly once: one row per (daemon, seq) by the key, and per event id.
    let rows = rt
        .block_on(client.query(
            "SELECT event_id, count(*) FROM intentproof.records GROUP BY event_id",
            &[],
        ))
        .unwrap();
    let mut in_pg = std::collections::HashMap::new();
    for row in &rows {
        in_pg.insert(row.get::<_, String>(0), row.get::<_, i64>(1));
    }
    assert!(
        in_pg.values().all(|&n| n == 1),
        "an event is in PostgreSQL twice"
    );
    assert_eq!(in_pg.len() as i64, total);
    let missing: Vec<&String> = acked.iter().filter(|id| !in_pg.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events are not in PostgreSQL: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let seqs = rt
        .block_on(client.query_one(
            "SELECT count(DISTINCT seq), min(seq), max(seq) FROM intentproof.records",
            &[],
        ))
        .unwrap();
    assert_eq!(
        (
            seqs.get::<_, i64>(0),
            seqs.get::<_, i64>(1),
            seqs.get::<_, i64>(2)
        ),
        (total, 0, total - 1)
    );

    // fleet verify and doctor, as a user runs them.
    let out = Command::new(BIN)
        .args(["fleet", "verify", "--config", config.to_str().unwrap()])
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let instance = InstanceKey::load_from(&data)
        .unwrap()
        .instance_id()
        .to_owned();
    assert_eq!(
        stdout,
        format!(
            "✓ {instance}: {total} records, {} checkpoints; {total} records under a verified checkpoint, 0 after the last one\n\
             fleet verified: 1 daemons (event signatures were checked by each daemon at ingest, not here)\n",
            rt.block_on(client.query_one("SELECT count(*) FROM intentproof.checkpoints", &[]))
                .unwrap()
                .get::<_, i64>(0)
        )
    );
    let out = Command::new(BIN)
        .args([
            "doctor",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let url_shown = pg.url();
    assert!(
        stdout.contains(&format!(
            "{url_shown} (schema {}) holds {total} records and ",
            intentproof_fleet::schema::SCHEMA_VERSION
        )),
        "{stdout}"
    );
}
