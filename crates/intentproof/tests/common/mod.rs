//! A real local HTTP collector for exporter tests: binds 127.0.0.1:0,
//! records every request's headers and body, and answers from a script.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};

/// One received request.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// How the collector answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// Waits this long, then answers 202.
    Delay(Duration),
    /// This status with `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
}

#[derive(Clone, Default)]
struct State {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

/// A running collector.
pub struct Collector {
    pub url: String,
    state: State,
}

impl Collector {
    /// Starts a collector that answers each request with the next scripted
    /// reply, and 202 once the script runs out.
    pub async fn start(script: Vec<Reply>) -> Collector {
        let state = State {
            received: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
        };
        let app_state = state.clone();
        let app = axum::Router::new().route(
            "/v1/events",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let state = app_state.clone();
                async move {
                    use axum::response::IntoResponse;
                    state.received.lock().unwrap().push(Received {
                        headers,
                        body: body.to_vec(),
                        at: std::time::Instant::now(),
                    });
                    let reply = state.script.lock().unwrap().pop_front();
                    match reply {
                        Some(Reply::Status(code)) => {
                            StatusCode::from_u16(code).unwrap().into_response()
                        }
                        Some(Reply::RetryAfter(code, seconds)) => (
                            StatusCode::from_u16(code).unwrap(),
                            [("retry-after", seconds.to_string())],
                        )
                            .into_response(),
                        Some(Reply::Delay(wait)) => {
                            tokio::time::sleep(wait).await;
                            StatusCode::ACCEPTED.into_response()
                        }
                        None => StatusCode::ACCEPTED.into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/events", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Collector { url, state }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }
}

/// The event with `id` and the three timing fields removed, for comparison
/// with the seed's JSON, which omits them.
pub fn without_id_and_timing(event: &intentproof::ExecutionEvent) -> serde_json::Value {
    let mut value = serde_json::to_value(event).unwrap();
    let object = value.as_object_mut().unwrap();
    for key in ["id", "startedAt", "completedAt", "durationMs"] {
        assert!(object.remove(key).is_some(), "event lacks {key}");
    }
    value
}

/// Reads a golden JSON file from `tests/golden/`.
pub fn golden(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}
