//! The log's checkpoints and proofs between them:
//!
//! - `GET /v1/checkpoint`: the latest checkpoint (signed now if the tree
//!   grew since, [`AppState::checkpoint_now`]) as the C2SP signed note with
//!   every witness cosignature kept for it, `text/plain` — what C2SP
//!   clients and witnesses read. With `Accept: application/json` it is the
//!   JSON form of before (`{"checkpoint": {...}, "public_key": ...}`).
//! - `GET /v1/consistency?from=M&to=N`: the RFC 6962 consistency proof
//!   between tree sizes M and N, `text/plain`, one base64 hash a line (the
//!   form of a tlog-witness request); 400 unless `0 <= M <= N <= tree size`.
//! - `POST /v1/witness/add-checkpoint`: the `tlog-witness` endpoint
//!   ([`crate::transparency`]).
//!
//! The two reads need the daemon token like every read.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use intentproof_core::tlog::witness::{MAX_ADD_CHECKPOINT_BYTES, Refusal, SIZE_CONTENT_TYPE};

use super::*;
use crate::transparency::WitnessAnswer;

/// Whether the client asked for JSON rather than the note.
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            let first = accept.split(',').next().unwrap_or("");
            first.split(';').next().unwrap_or("").trim() == "application/json"
        })
}

fn plain(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn get_checkpoint(
    State(state): State<Shared>,
    _auth: Authorized,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let worker = Arc::clone(&state);
    let (cp, note) = tokio::task::spawn_blocking(move || {
        let cp = worker.checkpoint_now()?;
        Ok::<_, String>((cp, worker.transparency.latest_note().map(|(_, note)| note)))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    if wants_json(&headers) {
        return Ok(Wire(wire::CheckpointAnswer {
            checkpoint: cp,
            public_key: state.daemon_key.public_key_base64(),
        })
        .into_response());
    }
    match note {
        Some(note) => Ok(plain(StatusCode::OK, note.to_string())),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_checkpoint",
            "the log is empty: there is no checkpoint until the first event is stored".to_owned(),
        )),
    }
}

async fn get_consistency(
    State(state): State<Shared>,
    _auth: Authorized,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let size = |name: &str| -> Result<u64, ApiError> {
        let text = query.get(name).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_sizes",
                format!("missing `{name}`: ask /v1/consistency?from=<old size>&to=<new size>"),
            )
        })?;
        intentproof_core::tlog::checkpoint::parse_decimal(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_sizes",
                format!("`{name}` = {text:?} is not a tree size (a decimal)"),
            )
        })
    };
    let (from, to) = (size("from")?, size("to")?);
    let tree = state.store.tree_size();
    if from > to || to > tree {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_sizes",
            format!(
                "no consistency proof from {from} to {to}: sizes need from <= to <= {tree} (the tree size now)"
            ),
        ));
    }
    let worker = Arc::clone(&state);
    let proof = tokio::task::spawn_blocking(move || worker.store.consistency_proof(from, to))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let mut body = String::new();
    for hash in proof {
        body.push_str(&B64.encode(hash));
        body.push('\n');
    }
    Ok(plain(StatusCode::OK, body))
}

async fn add_checkpoint(State(state): State<Shared>, body: Bytes) -> Response {
    if body.len() > MAX_ADD_CHECKPOINT_BYTES {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("an add-checkpoint body is at most {MAX_ADD_CHECKPOINT_BYTES} bytes\n"),
        );
    }
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return plain(StatusCode::BAD_REQUEST, "the body is not UTF-8\n".into());
    };
    let worker = Arc::clone(&state);
    let answer = tokio::task::spawn_blocking(move || worker.transparency.add_checkpoint(&text))
        .await
        .unwrap_or_else(|e| Err(WitnessAnswer::Failed(e.to_string())));
    state.metrics.witnessed(answer.is_ok());
    match answer {
        Ok(line) => plain(StatusCode::OK, format!("{line}\n")),
        Err(WitnessAnswer::Refused(refusal)) => {
            tracing::warn!(status = refusal.status(), reason = %refusal, "witness: checkpoint refused");
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let reason = axum::http::HeaderValue::from_str(
                &refusal
                    .to_string()
                    .chars()
                    .filter(|c| c.is_ascii() && !c.is_ascii_control())
                    .collect::<String>(),
            )
            .unwrap_or_else(|_| axum::http::HeaderValue::from_static("refused"));
            let mut response = match &refusal {
                Refusal::Conflict { recorded, .. } => (
                    status,
                    [(header::CONTENT_TYPE, SIZE_CONTENT_TYPE)],
                    format!("{recorded}\n"),
                )
                    .into_response(),
                other => plain(status, format!("{other}\n")),
            };
            response.headers_mut().insert("intentproof-refusal", reason);
            response
        }
        Err(WitnessAnswer::Failed(why)) => {
            tracing::error!(error = %why, "witness: cannot record a checkpoint");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the witness could not record the checkpoint: {why}\n"),
            )
        }
    }
}

pub(super) fn routes(guard: &Arc<BrowserGuard>) -> Router<Shared> {
    Router::new()
        .route("/v1/checkpoint", get(get_checkpoint))
        .route("/v1/consistency", get(get_consistency))
        .route(
            "/v1/witness/add-checkpoint",
            post(add_checkpoint)
                .layer(DefaultBodyLimit::max(MAX_ADD_CHECKPOINT_BYTES))
                .layer(axum::middleware::from_fn_with_state(
                    guard.on(Surface::Witness),
                    browser_guard::check,
                )),
        )
}
