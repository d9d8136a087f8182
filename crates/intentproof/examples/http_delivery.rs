//! Seed example 3: proof delivery over HTTP.
//!
//! `HttpExporter` POSTs the same `ExecutionEvent` the `MemoryExporter` keeps,
//! as `{"intentproof": "1", "event": {...}}`. This example starts a small
//! local collector on a free port, so it needs no setup, and prints what the
//! collector received.
//!
//! Run: `cargo run -p intentproof --example http_delivery`

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use intentproof::{
    ExecutionEvent, Exporter, HttpExporter, HttpExporterConfig, IntentProofClient,
    IntentProofConfig, MemoryExporter, WrapOptions,
};

/// Wraps the probe, calls it once with exporters for `collector_url` and
/// memory, waits for delivery, and returns what memory kept.
pub async fn run_probe(
    collector_url: &str,
) -> Result<Vec<ExecutionEvent>, Box<dyn std::error::Error>> {
    let memory = Arc::new(MemoryExporter::new());
    let http = Arc::new(HttpExporter::new(HttpExporterConfig::new(collector_url))?);
    let client = IntentProofClient::new(
        IntentProofConfig::default().exporters(vec![http as Arc<dyn Exporter>, memory.clone()]),
    );
    let run_probe = client.wrap(WrapOptions::new("HTTP test", "test.http"), |_: ()| {
        Ok::<_, Infallible>(42)
    })?;
    run_probe.call(())?;
    client.flush().await;
    Ok(memory.events())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A one-route collector that keeps every body it receives.
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let store = received.clone();
    let app = axum::Router::new().route(
        "/v1/events",
        axum::routing::post(move |body: String| async move {
            if let Ok(mut bodies) = store.lock() {
                bodies.push(body);
            }
            axum::http::StatusCode::ACCEPTED
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/events", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    run_probe(&url).await?;
    let bodies = received
        .lock()
        .map_err(|_| "collector lock poisoned")?
        .clone();
    for body in bodies {
        println!("collector received: {body}");
    }
    Ok(())
}
