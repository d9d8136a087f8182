//! The fleet view's chain query at scale: `GET /v1/chains/{id}` answered
//! by `intentproof serve --fleet` from a PostgreSQL holding EVENTS events
//! (default 10,000,000), as a user sees it (HTTP, JSON), side by side with
//! the bare SQL query it makes (the database's own floor) in the same run.
//!
//! `cargo run --release -p intentproof-gateway --example fleet_view_bench [-- EVENTS [QUERIES]]`
//!
//! The rows are made by PostgreSQL (`generate_series`), not replicated:
//! three daemons, chains of 10 events spread over all three (a flow over
//! replicas), each row's bytes a ~600-byte event-shaped JSON document. The
//! secondary indexes are built after the load (as a restore would), then
//! `ANALYZE`. QUERIES (default 2,000) chains picked at random across the
//! whole table, one request at a time on a warm server; p50 / p99 / max.
//! Then the chains list's first page and pages of events from random
//! places (200 each).

use std::time::{Duration, Instant};

use intentproof_api::datadir::DataDir;
use intentproof_fleet::FleetConfig;
use intentproof_fleet::testing::PgServer;
use intentproof_gateway::fleet_view::{self, FleetView};

fn die(e: impl std::fmt::Display) -> ! {
    eprintln!("fleet_view_bench: {e}");
    std::process::exit(1)
}

/// A small xorshift: reproducible picks without a dependency.
struct Picks(u64);

impl Picks {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (n = {})",
        ms(at(0.50)),
        ms(at(0.99)),
        ms(samples[samples.len() - 1]),
        samples.len()
    )
}

const SECONDARY: &[&str] = &[
    "CREATE INDEX records_by_correlation ON intentproof.records (correlation_id, daemon, seq)",
    "CREATE INDEX records_by_event_id ON intentproof.records (event_id)",
    "CREATE INDEX records_by_completed_at ON intentproof.records (completed_at)",
    "CREATE UNIQUE INDEX records_by_row_id ON intentproof.records (row_id)",
    "CREATE INDEX records_by_action ON intentproof.records (action text_pattern_ops, correlation_id)",
];

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: u64 = args
        .get(1)
        .map_or(Ok(10_000_000), |a| a.parse())
        .unwrap_or_else(|e| die(e));
    let queries: usize = args
        .get(2)
        .map_or(Ok(2_000), |a| a.parse())
        .unwrap_or_else(|e| die(e));
    let chains = events.div_ceil(10);
    let pg = PgServer::start(false).unwrap_or_else(|e| die(e));
    let config = FleetConfig {
        postgres_url: pg.url(),
        ..FleetConfig::default()
    };
    let mut client = config.connect().await.unwrap_or_else(|e| die(e));
    intentproof_fleet::schema::migrate(&mut client)
        .await
        .unwrap_or_else(|e| die(e));

    // The load: rows first, then the indexes.
    let started = Instant::now();
    client
        .batch_execute(
            "SET maintenance_work_mem = '1GB';
             DROP INDEX intentproof.records_by_correlation, intentproof.records_by_event_id,
                 intentproof.records_by_completed_at, intentproof.records_by_row_id,
                 intentproof.records_by_action;
             INSERT INTO intentproof.daemons (daemon, public_key, key_id, origin)
                 SELECT 'inst_bench_' || d, 'AAAA', 'inst_bench_' || d || ':k1', 'bench/' || d
                 FROM generate_series(0, 2) d;",
        )
        .await
        .unwrap_or_else(|e| die(e));
    let step = 1_000_000u64;
    let mut from = 0;
    while from < events {
        let to = (from + step).min(events);
        client
            .execute(
                "INSERT INTO intentproof.records (daemon, seq, event_id, instance_id, correlation_id,
                     chain_position, prev_event_hash, content_hash, intent, action, status,
                     started_at, completed_at, duration_ms, signature, bytes)
                 SELECT 'inst_bench_' || (i % 3), i / 3, 'evt-' || i, 'inst_bench_' || (i % 3),
                     'corr-' || (i / 10), i % 10 + 1, 'sha256:' || md5(i::text), 'sha256:' || md5((i + 1)::text),
                     'refund the order', 'mcp.payments.refund', 'ok',
                     to_char(timestamp '2026-12-01' + i * interval '1 millisecond', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                     to_char(timestamp '2026-12-01' + (i + 1) * interval '1 millisecond', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                     1, 'verified',
                     convert_to(json_build_object('schema', 'intentproof.event.v1', 'event_id', 'evt-' || i,
                         'correlation_id', 'corr-' || (i / 10), 'action', 'mcp.payments.refund',
                         'intent', 'refund the order', 'status', 'ok',
                         'inputs', json_build_array(json_build_object('order', i, 'note', repeat('x', 300))),
                         'output', json_build_object('ok', true))::text, 'UTF8')
                 FROM generate_series($1::bigint, $2::bigint - 1) i",
                &[&(from as i64), &(to as i64)],
            )
            .await
            .unwrap_or_else(|e| die(e));
        from = to;
        eprintln!(
            "loaded {from} rows ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    }
    for sql in SECONDARY {
        client.batch_execute(sql).await.unwrap_or_else(|e| die(e));
    }
    client
        .batch_execute(
            "INSERT INTO intentproof.chains
                 SELECT correlation_id, min(started_at), max(completed_at), count(*), 0
                 FROM intentproof.records GROUP BY correlation_id;
             UPDATE intentproof.totals SET chains = (SELECT count(*) FROM intentproof.chains);
             UPDATE intentproof.daemons d SET next_seq = (SELECT count(*) FROM intentproof.records r WHERE r.daemon = d.daemon);
             ANALYZE;",
        )
        .await
        .unwrap_or_else(|e| die(e));
    let size: String = client
        .query_one(
            "SELECT pg_size_pretty(pg_total_relation_size('intentproof.records'))",
            &[],
        )
        .await
        .unwrap_or_else(|e| die(e))
        .get(0);
    eprintln!(
        "{events} events in {chains} chains loaded and indexed in {:.0} s ({size} with indexes)",
        started.elapsed().as_secs_f64()
    );

    // The fleet view, over HTTP.
    let dir = tempfile::tempdir().unwrap_or_else(|e| die(e));
    let view = FleetView::open(
        DataDir::new(dir.path().join("fleet")),
        config,
        Duration::from_secs(300),
    )
    .unwrap_or_else(|e| die(e));
    let running = fleet_view::start(view, "127.0.0.1:0".parse().unwrap_or_else(|e| die(e)))
        .await
        .unwrap_or_else(|e| die(e));
    let token = std::fs::read_to_string(dir.path().join("fleet/token")).unwrap_or_else(|e| die(e));
    let http = reqwest::Client::new();
    let mut picks = Picks(0x9e37_79b9_7f4a_7c15);
    let url = running.url();
    let get = |id: u64| {
        http.get(format!("{url}/v1/chains/corr-{id}"))
            .bearer_auth(token.trim())
            .send()
    };
    for _ in 0..200 {
        let _ = get(picks.next(chains)).await;
    }
    let mut through_view = Vec::with_capacity(queries);
    let mut bytes = 0;
    for _ in 0..queries {
        let id = picks.next(chains);
        let t = Instant::now();
        let answer = get(id).await.unwrap_or_else(|e| die(e));
        if !answer.status().is_success() {
            die(format!("corr-{id}: {}", answer.status()));
        }
        let body = answer.bytes().await.unwrap_or_else(|e| die(e));
        through_view.push(t.elapsed());
        bytes += body.len();
    }
    // The first page of the chains list, and pages of events from random
    // places (the cursor is a row_id).
    let mut list = Vec::with_capacity(200);
    for _ in 0..200 {
        let t = Instant::now();
        let answer = http
            .get(format!("{url}/v1/chains?limit=100"))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap_or_else(|e| die(e));
        if !answer.status().is_success() {
            die(format!("/v1/chains: {}", answer.status()));
        }
        let _ = answer.bytes().await.unwrap_or_else(|e| die(e));
        list.push(t.elapsed());
    }
    let mut pages = Vec::with_capacity(200);
    for _ in 0..200 {
        let cursor = picks.next(events);
        let t = Instant::now();
        let answer = http
            .get(format!("{url}/v1/events?limit=100&cursor={cursor}"))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap_or_else(|e| die(e));
        if !answer.status().is_success() {
            die(format!("/v1/events: {}", answer.status()));
        }
        let _ = answer.bytes().await.unwrap_or_else(|e| die(e));
        pages.push(t.elapsed());
    }
    // The same query, bare SQL on one connection (the floor).
    let statement = client
        .prepare(
            "SELECT row_id, daemon, seq, event_id, instance_id, correlation_id, chain_position, prev_event_hash, content_hash, intent, action, status, started_at, completed_at, duration_ms, signature, bytes FROM intentproof.records WHERE correlation_id = $1 ORDER BY daemon, seq LIMIT 100001",
        )
        .await
        .unwrap_or_else(|e| die(e));
    let mut bare = Vec::with_capacity(queries);
    for _ in 0..queries {
        let id = format!("corr-{}", picks.next(chains));
        let t = Instant::now();
        let rows = client
            .query(&statement, &[&id])
            .await
            .unwrap_or_else(|e| die(e));
        bare.push(t.elapsed());
        if rows.len() != 10 {
            die(format!("{id}: {} rows", rows.len()));
        }
    }
    println!(
        "GET /v1/chains/{{id}} through the fleet view ({events} events, 10 a chain, {} bytes an answer): {}",
        bytes / queries,
        percentiles(through_view)
    );
    println!(
        "the same SELECT, bare, on one connection:                                      {}",
        percentiles(bare)
    );
    println!(
        "GET /v1/chains?limit=100 (the first page, 1,000,000 chains):                       {}",
        percentiles(list)
    );
    println!(
        "GET /v1/events?limit=100&cursor=<random row_id>:                               {}",
        percentiles(pages)
    );
    running.stop().await;
}
