//! A 50 MB download through the HTTP API proxy streams with constant
//! memory. Its own test binary: a counting global allocator measures the
//! peak heap of the whole process (upstream, daemon and client all run
//! here), and no other test may allocate alongside.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures_util::StreamExt;
use intentproof_gateway::{Config, Daemon};
use intentproof_http_proxy::config::HttpRouteConfig;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SIZE: usize = 50 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// Byte `i` of the download: a pattern, so nothing holds the whole file.
fn chunk(n: usize) -> Bytes {
    Bytes::from(
        (0..CHUNK)
            .map(|i| ((n * CHUNK + i) % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

async fn download() -> Response {
    let chunks =
        futures_util::stream::iter((0..SIZE / CHUNK).map(|n| Ok::<_, std::io::Error>(chunk(n))));
    Response::builder()
        .header("content-type", "application/octet-stream")
        .header("content-length", SIZE.to_string())
        .body(Body::from_stream(chunks))
        .unwrap()
}

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Streams a response, returning (status, headers without `date`, size, SHA-256).
async fn fetch(request: reqwest::RequestBuilder) -> (u16, Vec<(String, String)>, usize, String) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(k, _)| k.as_str() != "date")
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    let mut hasher = Sha256::new();
    let mut size = 0;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        size += chunk.len();
        hasher.update(&chunk);
    }
    let digest: [u8; 32] = hasher.finalize().into();
    (
        status,
        headers,
        size,
        format!("sha256:{}", intentproof_core::merkle::hex(&digest)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_download_streams_through_with_constant_memory() {
    let upstream =
        serve(axum::Router::new().route("/files/big.bin", axum::routing::get(download))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        checkpoint_interval_secs: 0,
        ..Config::default()
    };
    config.http.routes = vec![HttpRouteConfig::new(
        "files",
        format!("http://{upstream}/files"),
    )];
    let daemon = Daemon::start(config).await.unwrap();
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    let http = reqwest::Client::new();

    let direct = fetch(http.get(format!("http://{upstream}/files/big.bin"))).await;
    assert_eq!((direct.0, direct.2), (200, SIZE));

    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let proxied = fetch(
        http.get(format!("{}/proxy/files/big.bin", daemon.url()))
            .header("x-intentproof-token", &token)
            .header("x-intentproof-correlation-id", "c-download"),
    )
    .await;
    let grew = PEAK.load(Ordering::Relaxed) - before;
    eprintln!("heap growth during the proxied download: {grew} bytes");
    assert_eq!(
        proxied, direct,
        "the proxied download differs from the direct one"
    );
    // Upstream, daemon and client together: buffers of a few chunks, never
    // the file (50 MiB).
    assert!(
        grew < 8 * 1024 * 1024,
        "the heap grew by {grew} bytes during a {SIZE}-byte download"
    );

    let event = loop {
        let page: Value = http
            .get(format!("{}/v1/events?correlation=c-download", daemon.url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(event) = page["events"].as_array().unwrap().first() {
            break event["event"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(event["status"], "ok");
    assert_eq!(event["action"], "http.files.GET./big.bin");
    assert_eq!(
        event["output"],
        json!({
            "status": 200,
            "headers": {"content-type": "application/octet-stream"},
            "body_bytes": SIZE,
            "body_sha256": direct.3,
        })
    );
    daemon.stop().await.unwrap();
}
