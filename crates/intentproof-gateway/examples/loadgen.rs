//! Load generator for the daemon's benchmarks (see `bench/README.md`).
//!
//! ```text
//! loadgen ingest --data-dir D --events 200000 --concurrency 64   closed loop: events/s, latency
//! loadgen rate   --data-dir D --rate 1000 --seconds 30           open loop: latency at a fixed rate
//! loadgen query  --data-dir D --prefix fill --correlations 100000 --queries 2000
//! ```
//!
//! Events are signed `intentproof.event.v1` objects of about `--size` bytes,
//! `--chain-len` per correlation (`<prefix>-<n>`), all sealed BEFORE the clock
//! starts. The generator's key is trusted on the daemon first (`POST
//! /v1/keys`), so stored events verify. With `--data-dir` the daemon's
//! address, pid and token come from `daemon.json` and `token`; its RSS
//! (`VmRSS`) and CPU time are sampled from `/proc` while the load runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use intentproof_core::ExecutionEvent;
use intentproof_core::keys::InstanceKey;
use intentproof_core::seal::Sealer;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "IntentProof daemon load generator")]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Closed loop: send pre-signed events as fast as C connections allow.
    Ingest(IngestArgs),
    /// Open loop: send at a fixed rate; latency from each event's scheduled time.
    Rate(RateArgs),
    /// Query latency: GET /v1/chains/{c} and GET /v1/events?correlation=c.
    Query(QueryArgs),
}

#[derive(Args, Clone)]
struct Target {
    /// The daemon's data dir (daemon.json, token).
    #[arg(long)]
    data_dir: PathBuf,
    /// Client runtime worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

#[derive(Args, Clone)]
struct EventShape {
    /// Correlation id prefix: correlations are `<prefix>-0`, `<prefix>-1`, ...
    #[arg(long, default_value = "lg")]
    prefix: String,
    /// Events per correlation (chain length).
    #[arg(long, default_value_t = 10)]
    chain_len: usize,
    /// Approximate size of one signed event in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Seed of the generator's instance key (one byte, repeated).
    #[arg(long, default_value_t = 77)]
    key_seed: u8,
}

#[derive(Args)]
struct IngestArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    shape: EventShape,
    /// Events to send.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Pre-sign and send this many events at a time (bounds memory when
    /// filling a large store); only sending is timed.
    #[arg(long, default_value_t = 200_000)]
    chunk: usize,
    /// Skip the correlations below this index (continue an earlier fill).
    #[arg(long, default_value_t = 0)]
    first_correlation: usize,
    /// Events per request: above 1, consecutive events go newline-joined
    /// to `POST /v1/events:batch` (latencies are then per request).
    #[arg(long, default_value_t = 1)]
    batch: usize,
}

#[derive(Args)]
struct RateArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    shape: EventShape,
    /// Events per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Duration of the run.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

#[derive(Args)]
struct QueryArgs {
    #[command(flatten)]
    target: Target,
    /// Correlation prefix used when the store was filled.
    #[arg(long, default_value = "fill")]
    prefix: String,
    /// Correlations that exist under the prefix.
    #[arg(long, default_value_t = 100_000)]
    correlations: usize,
    /// Queries of each kind.
    #[arg(long, default_value_t = 2000)]
    queries: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Also time this many GET /v1/events/{id} (with inclusion proof).
    #[arg(long, default_value_t = 200)]
    by_id: usize,
    /// Random seed for picking correlations.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The daemon under test.
struct Daemon {
    base: String,
    pid: u32,
    token: String,
}

impl Daemon {
    fn from_data_dir(dir: &Path) -> Result<Daemon> {
        let info_path = dir.join("daemon.json");
        let text = std::fs::read_to_string(&info_path)
            .with_context(|| format!("read {} (is the daemon running?)", info_path.display()))?;
        let info: Value = serde_json::from_str(&text).context("parse daemon.json")?;
        let listen = info["listen"]
            .as_str()
            .ok_or_else(|| anyhow!("no listen in daemon.json"))?;
        let pid = info["pid"]
            .as_u64()
            .ok_or_else(|| anyhow!("no pid in daemon.json"))?;
        let token = std::fs::read_to_string(dir.join("token")).context("read token")?;
        Ok(Daemon {
            base: format!("http://{listen}"),
            pid: u32::try_from(pid).context("pid")?,
            token: token.trim().to_owned(),
        })
    }
}

/// Resident set size of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// Clock ticks per second (USER_HZ): 100 on Linux.
const TICKS: f64 = 100.0;

/// Samples the daemon's RSS while a phase runs.
struct Monitor {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
    pid: u32,
    started: Instant,
    daemon_cpu: Option<u64>,
    own_cpu: Option<u64>,
}

struct Usage {
    rss_before_kib: u64,
    rss_peak_kib: u64,
    rss_after_kib: u64,
    daemon_cpu_pct: f64,
    loadgen_cpu_pct: f64,
}

impl Monitor {
    fn start(pid: u32) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let thread = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = rss_kib(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Monitor {
            stop,
            thread: Some(thread),
            pid,
            started: Instant::now(),
            daemon_cpu: cpu_ticks(&pid.to_string()),
            own_cpu: cpu_ticks("self"),
            peak,
        }
    }

    fn finish(mut self, rss_before_kib: u64) -> Usage {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let pct = |before: Option<u64>, after: Option<u64>| match (before, after) {
            (Some(b), Some(a)) => (a.saturating_sub(b)) as f64 / TICKS / elapsed * 100.0,
            _ => f64::NAN,
        };
        let after = rss_kib(self.pid).unwrap_or(0);
        Usage {
            rss_before_kib,
            rss_peak_kib: self.peak.load(Ordering::Relaxed).max(after),
            rss_after_kib: after,
            daemon_cpu_pct: pct(self.daemon_cpu, cpu_ticks(&self.pid.to_string())),
            loadgen_cpu_pct: pct(self.own_cpu, cpu_ticks("self")),
        }
    }
}

impl Usage {
    fn print(&self) {
        println!(
            "daemon RSS: {:.1} MiB before, {:.1} MiB peak, {:.1} MiB after; CPU: daemon {:.0}%, loadgen {:.0}% (of one core)",
            self.rss_before_kib as f64 / 1024.0,
            self.rss_peak_kib as f64 / 1024.0,
            self.rss_after_kib as f64 / 1024.0,
            self.daemon_cpu_pct,
            self.loadgen_cpu_pct
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn latency_line(label: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    println!(
        "{label}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms p99.9={:.2} ms max={:.2} ms",
        samples.len(),
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 90.0)),
        ms(percentile(&samples, 99.0)),
        ms(percentile(&samples, 99.9)),
        ms(samples.last().copied().unwrap_or_default()),
    );
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("start the async runtime")
}

fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .build()
        .context("build the HTTP client")
}

fn key(shape: &EventShape) -> InstanceKey {
    InstanceKey::from_seed(
        format!("inst_loadgen_{}", shape.key_seed),
        [shape.key_seed; 32],
    )
}

/// Trusts the generator's key on the daemon.
async fn trust(http: &reqwest::Client, daemon: &Daemon, key: &InstanceKey) -> Result<()> {
    let body = json!({"instance_id": key.instance_id(), "public_key": key.public_key_base64()});
    let response = http
        .post(format!("{}/v1/keys", daemon.base))
        .bearer_auth(&daemon.token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .context("POST /v1/keys")?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("POST /v1/keys answered {status}: {text}");
    }
    Ok(())
}

fn build_event(
    shape: &EventShape,
    correlation: usize,
    position: usize,
    pad: usize,
) -> ExecutionEvent {
    ExecutionEvent::builder("load test", "loadgen.step")
        .correlation_id(format!("{}-{correlation}", shape.prefix))
        .inputs(json!([{"correlation": correlation, "step": position, "pad": "x".repeat(pad)}]))
        .output(json!({"ok": true, "step": position}))
        .build()
}

/// Padding that brings a signed event to about `shape.size` bytes.
fn padding(shape: &EventShape) -> Result<usize> {
    let probe = Sealer::new(key(shape));
    let sealed = probe
        .seal(&build_event(shape, 0, 1, 0))
        .context("seal a probe event")?;
    let bare = serde_json::to_vec(&sealed.event)
        .context("serialize")?
        .len();
    Ok(shape.size.saturating_sub(bare))
}

/// Signed events with their place in the send order.
type Placed = Vec<(usize, Vec<u8>)>;

/// Seals every event of correlations `first..first + count`, chain order
/// kept per correlation; the result is interleaved position by position, so
/// consecutive events belong to different correlations.
fn presign(shape: &EventShape, first: usize, count: usize, pad: usize) -> Result<Vec<Vec<u8>>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let len = shape.chain_len;
    let parts: Vec<Result<Placed>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || -> Result<Placed> {
                    let sealer = Sealer::new(key(shape));
                    let mut out = Vec::new();
                    for c in (0..count).filter(|c| c % threads == t) {
                        for position in 1..=len {
                            let sealed = sealer
                                .seal(&build_event(shape, first + c, position, pad))
                                .context("seal")?;
                            let bytes = serde_json::to_vec(&sealed.event).context("serialize")?;
                            out.push(((position - 1) * count + c, bytes));
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a signing thread panicked")))
            })
            .collect()
    });
    let mut events = vec![Vec::new(); count * len];
    for part in parts {
        for (index, bytes) in part? {
            events[index] = bytes;
        }
    }
    Ok(events)
}

#[derive(Default)]
struct Tally {
    stored: AtomicU64,
    duplicate: AtomicU64,
    overloaded: AtomicU64,
    refused: AtomicU64,
    errors: AtomicU64,
}

impl Tally {
    fn print(&self) {
        println!(
            "answers: {} stored (202), {} duplicate (200), {} overloaded retries (503), {} refused (4xx/5xx), {} transport errors",
            self.stored.load(Ordering::Relaxed),
            self.duplicate.load(Ordering::Relaxed),
            self.overloaded.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        );
    }
}

/// Posts one event until it gets a final answer (503 is retried).
async fn post(http: &reqwest::Client, url: &str, body: &[u8], tally: &Tally) {
    loop {
        let sent = http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                if tally.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("transport error: {e}");
                }
                return;
            }
        };
        let status = response.status().as_u16();
        let text = response.bytes().await.unwrap_or_default();
        if url.ends_with(":batch") && status == 200 {
            let answer: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
            let count = |k: &str| answer[k].as_u64().unwrap_or(0);
            tally.stored.fetch_add(count("stored"), Ordering::Relaxed);
            tally
                .duplicate
                .fetch_add(count("duplicates"), Ordering::Relaxed);
            if tally
                .refused
                .fetch_add(count("rejected"), Ordering::Relaxed)
                < 5
                && count("rejected") > 0
            {
                eprintln!("refused in batch: {}", String::from_utf8_lossy(&text));
            }
            return;
        }
        match status {
            202 => tally.stored.fetch_add(1, Ordering::Relaxed),
            200 => tally.duplicate.fetch_add(1, Ordering::Relaxed),
            503 => {
                tally.overloaded.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            _ => {
                if tally.refused.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("refused: {status} {}", String::from_utf8_lossy(&text));
                }
                0
            }
        };
        return;
    }
}

fn ingest(args: IngestArgs) -> Result<()> {
    let daemon = Daemon::from_data_dir(&args.target.data_dir)?;
    let rt = runtime(args.target.threads)?;
    let http = http_client()?;
    let shape = &args.shape;
    rt.block_on(trust(&http, &daemon, &key(shape)))?;
    let pad = padding(shape)?;
    let per_chunk = (args.chunk / shape.chain_len).max(1);
    let correlations = args.events.div_ceil(shape.chain_len);
    let batch = args.batch.max(1);
    let url = if batch > 1 {
        format!("{}/v1/events:batch", daemon.base)
    } else {
        format!("{}/v1/events", daemon.base)
    };
    let tally = Arc::new(Tally::default());
    let rss_idle = rss_kib(daemon.pid).unwrap_or(0);
    println!(
        "ingest: {} events ({correlations} correlations x {}), ~{} bytes each, {} connections, {batch} per request; daemon pid {} RSS {:.1} MiB",
        correlations * shape.chain_len,
        shape.chain_len,
        shape.size,
        args.concurrency,
        daemon.pid,
        rss_idle as f64 / 1024.0
    );
    let mut sent_total = 0usize;
    let mut timed = Duration::ZERO;
    let mut latencies = Vec::new();
    let mut usage = Vec::new();
    let mut done = 0;
    while done < correlations {
        let count = per_chunk.min(correlations - done);
        let signing = Instant::now();
        let events = Arc::new(presign(shape, args.first_correlation + done, count, pad)?);
        let bytes: usize = events.iter().map(Vec::len).sum();
        println!(
            "  signed {} events ({:.1} MiB, mean {} bytes) in {:.1} s",
            events.len(),
            bytes as f64 / 1048576.0,
            bytes / events.len().max(1),
            signing.elapsed().as_secs_f64()
        );
        let next = Arc::new(AtomicUsize::new(0));
        let rss_before = rss_kib(daemon.pid).unwrap_or(0);
        let monitor = Monitor::start(daemon.pid);
        let started = Instant::now();
        let chunk_latencies: Vec<Duration> = rt.block_on(async {
            let workers: Vec<_> = (0..args.concurrency)
                .map(|_| {
                    let (http, url, events, next, tally) = (
                        http.clone(),
                        url.clone(),
                        Arc::clone(&events),
                        Arc::clone(&next),
                        Arc::clone(&tally),
                    );
                    tokio::spawn(async move {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(batch, Ordering::Relaxed);
                            if i >= events.len() {
                                break;
                            }
                            let body = if batch == 1 {
                                events[i].clone()
                            } else {
                                events[i..(i + batch).min(events.len())].join(&b'\n')
                            };
                            let t = Instant::now();
                            post(&http, &url, &body, &tally).await;
                            mine.push(t.elapsed());
                        }
                        mine
                    })
                })
                .collect();
            let mut all = Vec::new();
            for worker in workers {
                if let Ok(mine) = worker.await {
                    all.extend(mine);
                }
            }
            all
        });
        let elapsed = started.elapsed();
        let u = monitor.finish(rss_before);
        println!(
            "  sent {} in {:.2} s: {:.0} events/s",
            events.len(),
            elapsed.as_secs_f64(),
            events.len() as f64 / elapsed.as_secs_f64()
        );
        sent_total += events.len();
        timed += elapsed;
        latencies.extend(chunk_latencies);
        usage.push(u);
        done += count;
    }
    println!(
        "RESULT ingest: {sent_total} events in {:.2} s = {:.0} events/s with {} connections, {batch} per request",
        timed.as_secs_f64(),
        sent_total as f64 / timed.as_secs_f64().max(1e-9),
        args.concurrency
    );
    latency_line("RESULT ingest latency per request (closed loop)", latencies);
    tally.print();
    let peak = usage.iter().map(|u| u.rss_peak_kib).max().unwrap_or(0);
    if let Some(last) = usage.last() {
        let mean = |f: fn(&Usage) -> f64| usage.iter().map(f).sum::<f64>() / usage.len() as f64;
        Usage {
            rss_before_kib: rss_idle,
            rss_peak_kib: peak,
            rss_after_kib: last.rss_after_kib,
            daemon_cpu_pct: mean(|u| u.daemon_cpu_pct),
            loadgen_cpu_pct: mean(|u| u.loadgen_cpu_pct),
        }
        .print();
    }
    Ok(())
}

fn rate(args: RateArgs) -> Result<()> {
    let daemon = Daemon::from_data_dir(&args.target.data_dir)?;
    let rt = runtime(args.target.threads)?;
    let http = http_client()?;
    let shape = &args.shape;
    rt.block_on(trust(&http, &daemon, &key(shape)))?;
    let pad = padding(shape)?;
    let total = usize::try_from(args.rate * args.seconds).context("too many events")?;
    let correlations = total.div_ceil(shape.chain_len);
    let events = Arc::new(presign(shape, 0, correlations, pad)?);
    println!(
        "rate: {} events at {} events/s (open loop), ~{} bytes each",
        events.len(),
        args.rate,
        shape.size
    );
    let url = format!("{}/v1/events", daemon.base);
    let tally = Arc::new(Tally::default());
    let rss_before = rss_kib(daemon.pid).unwrap_or(0);
    let monitor = Monitor::start(daemon.pid);
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(events.len())));
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let behind = rt.block_on(async {
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(events.len());
        let mut behind = Duration::ZERO;
        for i in 0..events.len() {
            let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
            tokio::time::sleep_until(due).await;
            behind = behind.max(tokio::time::Instant::now() - due);
            let (http, url, events, tally, latencies) = (
                http.clone(),
                url.clone(),
                Arc::clone(&events),
                Arc::clone(&tally),
                Arc::clone(&latencies),
            );
            tasks.push(tokio::spawn(async move {
                post(&http, &url, &events[i], &tally).await;
                // From the scheduled time: a slow daemon cannot hide queueing.
                let latency = tokio::time::Instant::now() - due;
                if let Ok(mut l) = latencies.lock() {
                    l.push(latency);
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        behind
    });
    let usage = monitor.finish(rss_before);
    let samples = std::mem::take(
        &mut *latencies
            .lock()
            .map_err(|_| anyhow!("latency lock poisoned"))?,
    );
    latency_line(
        &format!("RESULT latency at {} events/s", args.rate),
        samples,
    );
    println!("scheduler lag (max): {:.2} ms", ms(behind));
    tally.print();
    usage.print();
    Ok(())
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1) as u64) as usize
    }
}

async fn timed_get(
    http: &reqwest::Client,
    daemon: &Daemon,
    path: &str,
) -> Result<(Duration, Value)> {
    let t = Instant::now();
    let response = http
        .get(format!("{}{path}", daemon.base))
        .bearer_auth(&daemon.token)
        .header("accept", "application/json")
        .send()
        .await
        .with_context(|| format!("GET {path}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .with_context(|| format!("GET {path}: body"))?;
    let elapsed = t.elapsed();
    if !status.is_success() {
        bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
    }
    let value = serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))?;
    Ok((elapsed, value))
}

fn query(args: QueryArgs) -> Result<()> {
    let daemon = Daemon::from_data_dir(&args.target.data_dir)?;
    let rt = runtime(args.target.threads)?;
    let http = http_client()?;
    let daemon = Arc::new(daemon);
    let rss_before = rss_kib(daemon.pid).unwrap_or(0);
    let monitor = Monitor::start(daemon.pid);
    let rng = Arc::new(Mutex::new(Rng(args.seed.max(1))));
    let left = Arc::new(AtomicUsize::new(args.queries));
    let by_id_left = Arc::new(AtomicUsize::new(args.by_id));
    let results = rt.block_on(async {
        let workers: Vec<_> = (0..args.concurrency.max(1))
            .map(|_| {
                let (http, daemon, rng, left, by_id_left) = (
                    http.clone(),
                    Arc::clone(&daemon),
                    Arc::clone(&rng),
                    Arc::clone(&left),
                    Arc::clone(&by_id_left),
                );
                let (prefix, correlations) = (args.prefix.clone(), args.correlations);
                tokio::spawn(async move {
                    let mut chains = Vec::new();
                    let mut lists = Vec::new();
                    let mut by_id = Vec::new();
                    let mut sizes = Vec::new();
                    while left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        let c = rng
                            .lock()
                            .map_err(|_| anyhow!("rng lock poisoned"))?
                            .below(correlations);
                        let correlation = format!("{prefix}-{c}");
                        let (t, chain) =
                            timed_get(&http, &daemon, &format!("/v1/chains/{correlation}")).await?;
                        chains.push(t);
                        sizes.push(chain["chain"]["events"].as_u64().unwrap_or(0));
                        let path = format!("/v1/events?correlation={correlation}&limit=100");
                        let (t, list) = timed_get(&http, &daemon, &path).await?;
                        lists.push(t);
                        let id = list["events"][0]["event"]["event_id"]
                            .as_str()
                            .map(str::to_owned);
                        if let Some(id) = id
                            && by_id_left
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok()
                        {
                            let (t, _) =
                                timed_get(&http, &daemon, &format!("/v1/events/{id}")).await?;
                            by_id.push(t);
                        }
                    }
                    Ok::<_, anyhow::Error>((chains, lists, by_id, sizes))
                })
            })
            .collect();
        let mut all = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for worker in workers {
            let (a, b, c, d) = worker.await.map_err(|e| anyhow!("query worker: {e}"))??;
            all.0.extend(a);
            all.1.extend(b);
            all.2.extend(c);
            all.3.extend(d);
        }
        Ok::<_, anyhow::Error>(all)
    })?;
    let usage = monitor.finish(rss_before);
    let (chains, lists, by_id, sizes) = results;
    let mean_len = sizes.iter().sum::<u64>() as f64 / sizes.len().max(1) as f64;
    let (_, records) = rt.block_on(timed_get(&http, &daemon, "/v1/checkpoint"))?;
    println!(
        "query: {} correlations under {:?}, mean chain length {mean_len:.1}; store holds {} records (last checkpoint)",
        args.correlations, args.prefix, records["checkpoint"]["tree_size"]
    );
    latency_line("RESULT GET /v1/chains/{id}", chains);
    latency_line("RESULT GET /v1/events?correlation=", lists);
    latency_line("RESULT GET /v1/events/{id} (with inclusion proof)", by_id);
    usage.print();
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Mode::Ingest(args) => ingest(args),
        Mode::Rate(args) => rate(args),
        Mode::Query(args) => query(args),
    }
}
