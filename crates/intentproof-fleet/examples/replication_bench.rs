//! Replication throughput and lag, against a real PostgreSQL server
//! (started here from the system's packages, fsync on).
//!
//! `cargo run --release -p intentproof-fleet --example replication_bench [-- EVENTS]`
//!
//! 1. **cold copy**: a store of EVENTS records (default 100,000) replicated
//!    from nothing, as a daemon does when `[fleet]` is first configured or
//!    PostgreSQL was away: records/s.
//! 2. **PostgreSQL's limit here**: the same rows, already in memory, COPY'd
//!    into an identical table (same indexes) with no store read and no
//!    cursor, side by side in the same run.
//! 3. **burst**: the pump running while EVENTS records are appended as
//!    fast as the store takes them; the seconds from the last append until
//!    the pump's cursor reaches the end (lag back to 0).
//!
//! `replication_bench pg` only starts the server, prints its URL and keeps
//! it until stdin closes (`bench/fleet.sh` runs a daemon against it).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use intentproof_core::ExecutionEvent;
use intentproof_core::keys::InstanceKey;
use intentproof_core::seal::Sealer;
use intentproof_fleet::replicate::{DaemonIdentity, copy_rows};
use intentproof_fleet::testing::PgServer;
use intentproof_fleet::{FleetConfig, Replicator};
use intentproof_store::{EventMeta, Incoming, Store, StoreOptions};
use serde_json::json;

fn die(e: impl std::fmt::Display) -> ! {
    eprintln!("replication_bench: {e}");
    std::process::exit(1)
}

fn events(sealer: &Sealer, key: &InstanceKey, from: usize, n: usize) -> Vec<Incoming> {
    (from..from + n)
        .map(|i| {
            let event = ExecutionEvent::builder("refund the order", "payments.refund")
                .correlation_id(format!("corr-{}", i / 4))
                .inputs(json!([{"order": i, "amount": 1999, "note": "x".repeat(200)}]))
                .output(json!({"ok": true, "refund_id": format!("re_{i}")}))
                .build();
            let sealed = sealer.seal(&event).unwrap_or_else(|e| die(e)).event;
            Incoming::new(
                EventMeta::from_v1(&sealed, Some(&key.verifying_key())).unwrap_or_else(|e| die(e)),
                serde_json::to_vec(&sealed).unwrap_or_else(|e| die(e)),
            )
        })
        .collect()
}

fn open(name: &str, seed: u8) -> (tempfile::TempDir, InstanceKey, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| die(e));
    let key = InstanceKey::from_seed(name, [seed; 32]);
    let vk = key.verifying_key();
    let owner = name.to_owned();
    let trusted = move |i: &str| (i == owner).then_some(vk);
    let store =
        Store::open(dir.path(), StoreOptions::default(), &trusted).unwrap_or_else(|e| die(e));
    (dir, key, Arc::new(store))
}

fn append(store: &Store, batch: Vec<Incoming>) {
    for r in store.append(batch).unwrap_or_else(|e| die(e)) {
        r.unwrap_or_else(|e| die(e));
    }
}

fn identity(key: &InstanceKey) -> DaemonIdentity {
    DaemonIdentity {
        name: key.instance_id().to_owned(),
        public_key: key.public_key_base64(),
        key_id: key.key_id(),
        origin: format!("intentproof-gateway/{}", key.instance_id()),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("pg") {
        let pg = PgServer::start(true).unwrap_or_else(|e| die(e));
        println!("{}", pg.url());
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        drop(pg);
        return;
    }
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let pg = PgServer::start(true).unwrap_or_else(|e| die(e));
    let fleet = FleetConfig {
        postgres_url: pg.url(),
        ..FleetConfig::default()
    };

    // 1. cold copy
    let (dir, key, store) = open("bench-cold", 1);
    let sealer = Sealer::new(key.clone());
    for from in (0..n).step_by(2000) {
        append(&store, events(&sealer, &key, from, 2000.min(n - from)));
    }
    store.flush().unwrap_or_else(|e| die(e));
    let rows = store
        .raw_records(0, n, usize::MAX)
        .unwrap_or_else(|e| die(e));
    let bytes: usize = rows.iter().map(|(_, b)| b.len()).sum();
    let replicator = Replicator::new(
        fleet.clone(),
        identity(&key),
        Arc::clone(&store),
        dir.path().into(),
    )
    .unwrap_or_else(|e| die(e));
    let mut client = replicator.connect().await.unwrap_or_else(|e| die(e));
    let started = Instant::now();
    let mut copied = 0;
    while copied < n as u64 {
        copied += replicator
            .step(&mut client)
            .await
            .unwrap_or_else(|e| die(e))
            .records;
    }
    let cold = started.elapsed();
    println!(
        "cold copy: {n} records ({:.0} B each) in {:.2} s = {:.0} records/s",
        bytes as f64 / n as f64,
        cold.as_secs_f64(),
        n as f64 / cold.as_secs_f64()
    );

    // 2. the same rows, COPY'd straight from memory
    client
        .batch_execute("CREATE TABLE limit_copy (LIKE intentproof.records INCLUDING INDEXES INCLUDING IDENTITY);")
        .await
        .unwrap_or_else(|e| die(e));
    let started = Instant::now();
    for chunk in rows.chunks(4096) {
        let tx = client.transaction().await.unwrap_or_else(|e| die(e));
        copy_rows(&tx, "limit_copy", "limit", chunk)
            .await
            .unwrap_or_else(|e| die(e));
        tx.commit().await.unwrap_or_else(|e| die(e));
    }
    let limit = started.elapsed();
    println!(
        "PostgreSQL here (same rows, COPY from memory, same indexes): {:.2} s = {:.0} records/s",
        limit.as_secs_f64(),
        n as f64 / limit.as_secs_f64()
    );
    drop(rows);

    // 3. burst with the pump running
    let (dir, key, store) = open("bench-burst", 2);
    let replicator = Replicator::new(fleet, identity(&key), Arc::clone(&store), dir.path().into())
        .unwrap_or_else(|e| die(e));
    let status = replicator.status();
    let appended = Arc::new(tokio::sync::Notify::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let pump = tokio::spawn(replicator.run(Arc::clone(&appended), stop_rx));
    let sealer = Sealer::new(key.clone());
    let prepared: Vec<Vec<Incoming>> = (0..n)
        .step_by(2000)
        .map(|from| events(&sealer, &key, from, 2000.min(n - from)))
        .collect();
    while !status.connected.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    for batch in prepared {
        let writer = Arc::clone(&store);
        tokio::task::spawn_blocking(move || append(&writer, batch))
            .await
            .unwrap_or_else(|e| die(e));
        appended.notify_waiters();
    }
    let burst = started.elapsed();
    let at_end = status.next_seq.load(Ordering::Relaxed);
    let end = Instant::now();
    while status.next_seq.load(Ordering::Relaxed) < n as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let lag = end.elapsed();
    println!(
        "burst: {n} records appended in {:.2} s ({:.0}/s), {at_end} replicated meanwhile; lag back to 0 {:.2} s after the last append ({:.0} records/s overall)",
        burst.as_secs_f64(),
        n as f64 / burst.as_secs_f64(),
        lag.as_secs_f64(),
        n as f64 / (burst + lag).as_secs_f64()
    );
    let _ = stop_tx.send(true);
    let _ = pump.await;
}
