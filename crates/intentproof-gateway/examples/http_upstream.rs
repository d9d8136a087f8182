//! A small HTTP API for the HTTP proxy benchmark (`bench/http_proxy.sh`):
//! the upstream both the direct and the proxied runs call.
//!
//! ```text
//! http_upstream [ADDR]     default 127.0.0.1:0; prints `listening <addr>` first
//! GET  /api/v1/refunds/{id}   {"id": "<id>", "status": "succeeded", "amount": 4999, "currency": "eur"}
//! POST /api/v1/refunds        the request body back, as application/json
//! ```
//!
//! One runtime worker thread, so on a small machine the upstream takes one
//! core at most and leaves the other to the load generator and the daemon.

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};

async fn refund(Path(id): Path<String>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"id":"{id}","status":"succeeded","amount":4999,"currency":"eur"}}"#),
    )
}

async fn create(body: Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            println!("listening {}", listener.local_addr()?);
            let app = Router::new()
                .route("/api/v1/refunds/{id}", get(refund))
                .route("/api/v1/refunds", post(create));
            axum::serve(listener, app).await
        })
}
