//! What a durable `wrap` costs the caller: `--threads` threads each call a
//! wrapped function `--calls` times with a signer and
//! `Durability::Local`, and the run prints one JSON line with the latency
//! of each call (p50, p99, microseconds) and the events per second over
//! all threads.
//!
//! With `--url http://HOST:PORT/v1/events --token T` the outbox delivers to
//! that IntentProof daemon while the calls run (end to end: the daemon's
//! work shares the machine); without, to an exporter that only counts;
//! with `BENCH_NO_DELIVERY=1`, to one that always fails (nothing is
//! delivered, so nothing is signed: the commit path alone).
//! `bench/durable_wrap.sh` runs it beside PyPI `intentproof`'s durable wrap.
//!
//! Run: `cargo run --release -p intentproof --example durable_wrap_bench -- --threads 1 --calls 5000`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use intentproof::{
    BodyFormat, Delivery, Durability, ExecutionEvent, Exporter, HttpExporter, HttpExporterConfig,
    InstanceKey, IntentProofClient, IntentProofConfig, Sealer, WrapOptions,
};

/// Counts what it is given.
#[derive(Default)]
struct Count(AtomicU64);

impl Exporter for Count {
    fn name(&self) -> &str {
        "count"
    }

    fn export(&self, _event: &ExecutionEvent) -> Delivery {
        self.0.fetch_add(1, Ordering::Relaxed);
        Delivery::ok()
    }
}

/// Never takes anything (delivery keeps failing).
struct Down;

impl Exporter for Down {
    fn name(&self) -> &str {
        "down"
    }

    fn export(&self, _event: &ExecutionEvent) -> Delivery {
        Delivery::Done(Err(intentproof::ExportError::Other("down".into())))
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = arg(&args, "--threads")
        .unwrap_or_else(|| "1".into())
        .parse()?;
    let calls: usize = arg(&args, "--calls")
        .unwrap_or_else(|| "5000".into())
        .parse()?;
    let scratch = tempfile::tempdir()?;
    let dir = arg(&args, "--dir").map_or_else(|| scratch.path().join("outbox"), Into::into);
    let exporter: Arc<dyn Exporter> = match arg(&args, "--url") {
        Some(url) => Arc::new(HttpExporter::new(HttpExporterConfig {
            headers: vec![(
                "Authorization".into(),
                format!("Bearer {}", arg(&args, "--token").unwrap_or_default()),
            )],
            format: BodyFormat::BareV1,
            ..HttpExporterConfig::new(url)
        })?),
        None if std::env::var_os("BENCH_NO_DELIVERY").is_some() => Arc::new(Down),
        None => Arc::new(Count::default()),
    };
    let sealer = Sealer::new(InstanceKey::from_seed("inst_bench", [5u8; 32]));
    let client = IntentProofClient::try_new(
        IntentProofConfig::default()
            .signer(Arc::new(sealer))
            .exporters(vec![exporter])
            .on_exporter_error(|_| {})
            .durability(Durability::Local { dir }),
    )?;
    let refund = client.wrap(
        WrapOptions::new("Refund order", "stripe.refund.create"),
        |(order, cents): (String, u64)| {
            Ok::<_, std::io::Error>(
                serde_json::json!({"id": format!("re_{order}"), "amount": cents}),
            )
        },
    )?;
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let refund = refund.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::with_capacity(calls);
                for i in 0..calls {
                    let call = Instant::now();
                    let _ = refund.call((format!("ord_{t}_{i}"), 4999));
                    latencies.push(call.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::with_capacity(threads * calls);
    for worker in workers {
        latencies.extend(worker.join().map_err(|_| "a worker panicked")?);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{}",
        serde_json::json!({
            "impl": "rust",
            "threads": threads,
            "calls": latencies.len(),
            "p50_us": at(0.50).as_secs_f64() * 1e6,
            "p99_us": at(0.99).as_secs_f64() * 1e6,
            "events_per_s": latencies.len() as f64 / elapsed.as_secs_f64(),
        })
    );
    Ok(())
}
