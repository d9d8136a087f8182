//! HTTP routes. Handlers are thin: check auth, call a plain function,
//! shape the JSON. Every error body is `{"error": <what and what to do>,
//! "reason": <stable code>}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use intentproof_api::same_token;
pub use intentproof_api::shapes::{
    chain_json, chain_row_json, event_json, event_with_inclusion_json,
};
use intentproof_core::keys::parse_public_key;
use intentproof_store::checkpoint::{self, Checkpoint};
use intentproof_store::{Appended, EventQuery, Store};
use serde::Deserialize;
use serde_json::{Value, json};

mod plans;

use crate::browser_guard::{self, BrowserGuard, Surface};
use crate::ingest::{self, Caller, DaemonSealer, TrustedKeys};
use crate::metrics::{Metrics, RejectReason};
use crate::writer::Writer;
use intentproof_api::datadir::DataDir;
use intentproof_findings::live;
use intentproof_mcp::{self as mcp, http::McpHttp};

/// Everything the handlers share.
pub struct AppState {
    /// The store (queries; appends go through `writer`).
    pub store: Arc<Store>,
    /// The group-commit writer.
    pub writer: Writer,
    /// The daemon's sealer for envelope events.
    pub sealer: DaemonSealer,
    /// Trusted instance keys.
    pub keys: TrustedKeys,
    /// Bearer token for reads and admin.
    pub token: String,
    /// Bearer token for ingest, when configured.
    pub ingest_token: Option<String>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The data directory.
    pub data_dir: DataDir,
    /// Largest ingest body.
    pub max_body_bytes: usize,
    /// The daemon's signing key, for checkpoints.
    pub daemon_key: intentproof_core::keys::InstanceKey,
    /// Idle time after which a declared plan closes.
    pub plan_idle_timeout: std::time::Duration,
    /// Configured verification policies.
    pub policies: Arc<Vec<intentproof_policy::verification::Policy>>,
    /// Plans and findings, kept up to date by the writer.
    pub findings: Arc<intentproof_findings::live::LiveFindings>,
    /// The MCP gateway over HTTP (set once at start).
    pub mcp: std::sync::OnceLock<Arc<McpHttp>>,
    /// The HTTP API proxy (set once at start, when routes are configured).
    pub http: std::sync::OnceLock<Arc<intentproof_http_proxy::HttpProxy>>,
    /// Threads that check batch lines.
    pub bulk: crate::bulk::BulkPool,
}

/// How long the daemon's own events wait for room in a full write queue
/// before they are given up (and counted as rejected).
const OWN_EVENTS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Records events the daemon made itself (MCP over HTTP, the HTTP API
/// proxy): seal each, then hand them to the writer as one commit, waiting
/// (bounded) for room in the write queue but not for the commit. Runs on
/// the recording thread ([`crate::recording`]).
pub fn record_own_events(state: &AppState, events: Vec<intentproof_core::ExecutionEvent>) {
    let mut sealed = Vec::with_capacity(events.len());
    for event in &events {
        match ingest::seal_incoming(event, &state.sealer) {
            Ok(incoming) => sealed.push(incoming),
            Err(e) => {
                tracing::error!(action = %event.action, error = %e, "a gateway event could not be sealed and was not recorded")
            }
        }
    }
    let count = sealed.len();
    if count > 0
        && state
            .writer
            .submit_all_waiting(sealed, OWN_EVENTS_PATIENCE)
            .is_err()
    {
        for _ in 0..count {
            state.metrics.rejected(RejectReason::Overloaded);
        }
        tracing::error!(
            count,
            "the write queue stayed full for {OWN_EVENTS_PATIENCE:?} (or the writer stopped): gateway events were not recorded; raise queue_capacity in the daemon config, or reduce the load"
        );
    }
}

type Shared = Arc<AppState>;

/// An error response.
pub struct ApiError {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

impl ApiError {
    /// An error answered with `status` and `{"error": message, "reason": reason}`.
    pub(crate) fn new(
        status: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            reason,
            message: message.into(),
        }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(intentproof_api::ErrorBody::new(self.reason, self.message)),
        )
            .into_response();
        retry_shortly(&mut response);
        response
    }
}

/// A 503 says when to come back: a full write queue drains within a
/// second or so, and senders (the gateways' delivery, SDKs, exporters)
/// wait at least this long. Every 503 the daemon builds goes through here.
fn retry_shortly(response: &mut Response) {
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
}

/// The router with every route; `guard` keeps web pages out of ingest and
/// `/mcp/<name>` ([`browser_guard`]).
pub fn router(state: Shared, guard: Arc<BrowserGuard>) -> Router {
    let limit = state.max_body_bytes;
    let guarded =
        |surface| axum::middleware::from_fn_with_state(guard.on(surface), browser_guard::check);
    Router::new()
        .route(
            "/v1/events",
            post(ingest_event)
                .layer(guarded(Surface::Ingest))
                .get(list_events),
        )
        .route(
            "/v1/events:batch",
            post(ingest_batch)
                .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
                .layer(guarded(Surface::IngestBatch)),
        )
        .route("/v1/events/{id}", get(get_event))
        .route("/v1/chains", get(list_chains))
        .route("/v1/chains/{id}", get(get_chain))
        .route("/v1/checkpoint", get(get_checkpoint))
        .route("/v1/keys", post(trust_key))
        .route("/v1/plans", get(list_plans).post(plans::declare_plan))
        .route("/v1/plans/{id}/close", post(close_plan))
        .route("/v1/findings", get(list_findings))
        .route("/v1/bundles", post(export_bundle))
        .route(
            "/mcp/{name}",
            post(mcp_post)
                .get(mcp_get)
                .delete(mcp_delete)
                .layer(guarded(Surface::Mcp)),
        )
        .route("/proxy/{name}", any(http_proxy))
        .route("/proxy/{name}/", any(http_proxy))
        .route("/proxy/{name}/{*rest}", any(http_proxy))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn require_token(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match bearer(headers) {
        Some(given) if same_token(given, &state.token) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "this endpoint needs `Authorization: Bearer <token>`; the token is in {}",
                state.data_dir.token_path().display()
            ),
        )),
    }
}

/// Most events in one `POST /v1/events:batch` body.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Largest `POST /v1/events:batch` body.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

fn body_or_error(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
    what: &str,
) -> Result<Bytes, ApiError> {
    match body {
        Ok(body) => Ok(body),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            state.metrics.rejected(RejectReason::TooLarge);
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body is larger than {limit} bytes; {what}"),
            ))
        }
        Err(rejection) => {
            state.metrics.rejected(RejectReason::MalformedJson);
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                rejection.body_text(),
            ))
        }
    }
}

/// Counts a refused body and gives its status and reason.
fn refused(state: &AppState, e: &ingest::IngestError) -> (StatusCode, &'static str) {
    state.metrics.rejected(e.reason());
    match e.reason() {
        RejectReason::BadSignature => (StatusCode::UNPROCESSABLE_ENTITY, "bad_signature"),
        RejectReason::MalformedJson => (StatusCode::BAD_REQUEST, "malformed_json"),
        RejectReason::Unauthorized => (StatusCode::FORBIDDEN, "reserved_action"),
        _ => (StatusCode::BAD_REQUEST, "invalid_event"),
    }
}

/// What the writer said about one event, as the status, reason and message
/// (or seq) the API answers with. Counts refusals.
enum Answer {
    Stored(u64),
    Duplicate(u64),
    Refused(ApiError),
}

fn overloaded(state: &AppState) -> ApiError {
    state.metrics.rejected(RejectReason::Overloaded);
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "the write queue is full; retry shortly",
    )
}

fn answer(state: &AppState, outcome: Option<crate::writer::Outcome>) -> Answer {
    match outcome {
        Some(Ok(Ok(Appended::Stored { seq }))) => Answer::Stored(seq),
        Some(Ok(Ok(Appended::Duplicate { seq }))) => Answer::Duplicate(seq),
        Some(Ok(Err(conflict))) => {
            state.metrics.rejected(RejectReason::ChainConflict);
            Answer::Refused(ApiError::new(
                StatusCode::CONFLICT,
                "chain_conflict",
                conflict.to_string(),
            ))
        }
        Some(Err(storage)) => {
            state.metrics.rejected(RejectReason::StorageError);
            Answer::Refused(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_error",
                format!("the event was not stored: {storage}"),
            ))
        }
        None => Answer::Refused(ApiError::internal("the writer stopped before answering")),
    }
}

/// Who sent an ingest request, as [`browser_guard::check`] found; a
/// request it did not see is anonymous.
fn caller_of(caller: Option<axum::Extension<Caller>>) -> Caller {
    caller.map_or(Caller::Anonymous, |caller| caller.0)
}

async fn ingest_event(
    State(state): State<Shared>,
    caller: Option<axum::Extension<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = caller_of(caller);
    let body = body_or_error(
        &state,
        body,
        state.max_body_bytes,
        "trim the event's inputs and output (capture hooks, redaction) or raise max_body_bytes",
    )?;
    // Parsing, schema validation and one signature check or seal cost tens
    // of microseconds of CPU: done on the request's own task, because a
    // `spawn_blocking` hand-off (two wake-ups and context switches per
    // event) cost more than the work under load. (An envelope's first
    // event in a chain reads that chain's head from sled, a cached read.)
    let incoming = match ingest::prepare(&body, &state.keys, &state.sealer, caller) {
        Ok(incoming) => incoming,
        Err(e) => {
            let (status, reason) = refused(&state, &e);
            return Err(ApiError::new(status, reason, e.to_string()));
        }
    };
    let event_id = incoming.meta.event_id.clone();
    let reply = state
        .writer
        .submit(incoming)
        .map_err(|_| overloaded(&state))?;
    match answer(&state, reply.await.ok()) {
        Answer::Stored(seq) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"status": "stored", "event_id": event_id, "seq": seq})),
        )
            .into_response()),
        // 200 is a success for the reference SDKs too.
        Answer::Duplicate(seq) => Ok((
            StatusCode::OK,
            Json(json!({"status": "duplicate", "event_id": event_id, "seq": seq})),
        )
            .into_response()),
        Answer::Refused(e) => Err(e),
    }
}

/// The event lines of a `POST /v1/events:batch` body: each non-blank line
/// with its 1-based line number, without its `\n` or `\r\n`. Public for
/// fuzzing and tests (`fuzz/`); the handler is its only other caller.
pub fn batch_lines(body: &Bytes) -> Vec<(usize, Bytes)> {
    body.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| line.iter().any(|b| !b.is_ascii_whitespace()))
        .map(|(i, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            (i + 1, body.slice_ref(line))
        })
        .collect()
}

/// `POST /v1/events:batch`: newline-delimited events (each line one body
/// `POST /v1/events` accepts), checked on all cores and appended in line
/// order. Answers 200 with one result per line (`status` is what
/// `POST /v1/events` would have answered for that line), or 503 with the
/// same results when any line hit a full queue or a storage error: the
/// whole batch can then be re-sent, since stored lines come back as
/// duplicates.
async fn ingest_batch(
    State(state): State<Shared>,
    caller: Option<axum::Extension<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = caller_of(caller);
    let body = body_or_error(
        &state,
        body,
        MAX_BATCH_BYTES,
        "split the batch (at most 16 MiB and 10,000 events per request)",
    )?;
    let lines = batch_lines(&body);
    if lines.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_batch",
            "the batch holds no events: send one event per line (newline-delimited JSON)",
        ));
    }
    if lines.len() > MAX_BATCH_EVENTS {
        state.metrics.rejected(RejectReason::TooLarge);
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!(
                "the batch holds {} events; send at most {MAX_BATCH_EVENTS} per request",
                lines.len()
            ),
        ));
    }
    let prepared = prepare_on_all_cores(&state, lines, caller).await?;
    // Lines that passed the checks go to the writer as one job, in line
    // order (so a chain's events in one batch keep their order), answered
    // with one wake-up.
    let mut checked = Vec::with_capacity(prepared.len());
    let mut incoming = Vec::new();
    for (line, result) in prepared {
        checked.push((
            line,
            result.map(|event| {
                let event_id = event.meta.event_id.clone();
                incoming.push(event);
                event_id
            }),
        ));
    }
    let submitted = incoming.len();
    let outcomes: Vec<Answer> = if submitted == 0 {
        Vec::new()
    } else {
        match state.writer.submit_all(incoming) {
            Ok(reply) => match reply.await {
                Ok(outcomes) => outcomes
                    .into_iter()
                    .map(|outcome| answer(&state, Some(outcome)))
                    .collect(),
                Err(_) => (0..submitted).map(|_| answer(&state, None)).collect(),
            },
            Err(_) => (0..submitted)
                .map(|_| Answer::Refused(overloaded(&state)))
                .collect(),
        }
    };
    let mut outcomes = outcomes.into_iter();
    let mut results = Vec::with_capacity(checked.len());
    let (mut stored, mut duplicates, mut rejected, mut retry) = (0usize, 0usize, 0usize, false);
    for (line, slot) in checked {
        let result = match slot {
            Ok(event_id) => match outcomes.next().unwrap_or_else(|| answer(&state, None)) {
                Answer::Stored(seq) => {
                    stored += 1;
                    json!({"line": line, "status": 202, "event_id": event_id, "seq": seq})
                }
                Answer::Duplicate(seq) => {
                    duplicates += 1;
                    json!({"line": line, "status": 200, "event_id": event_id, "seq": seq})
                }
                Answer::Refused(e) => {
                    rejected += 1;
                    retry |= e.status == StatusCode::SERVICE_UNAVAILABLE;
                    json!({"line": line, "status": e.status.as_u16(), "event_id": event_id, "reason": e.reason, "error": e.message})
                }
            },
            Err(e) => {
                rejected += 1;
                retry |= e.status == StatusCode::SERVICE_UNAVAILABLE;
                json!({"line": line, "status": e.status.as_u16(), "reason": e.reason, "error": e.message})
            }
        };
        results.push(result);
    }
    let status = if retry {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let mut response = (
        status,
        Json(json!({
            "stored": stored,
            "duplicates": duplicates,
            "rejected": rejected,
            "results": results,
        })),
    )
        .into_response();
    retry_shortly(&mut response);
    Ok(response)
}

/// Checks a batch's lines on the bulk threads, one share per core (a
/// 10,000-event batch is ~0.5 s of CPU: too long for a runtime worker).
async fn prepare_on_all_cores(
    state: &Shared,
    lines: Vec<(usize, Bytes)>,
    caller: Caller,
) -> Result<Vec<(usize, Result<intentproof_store::Incoming, ApiError>)>, ApiError> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let share = lines.len().div_ceil(cores).max(1);
    let mut lines = lines.into_iter();
    let mut tasks = Vec::new();
    loop {
        let chunk: Vec<(usize, Bytes)> = lines.by_ref().take(share).collect();
        if chunk.is_empty() {
            break;
        }
        let worker = Arc::clone(state);
        tasks.push(state.bulk.run(move || {
            chunk
                .into_iter()
                .map(|(line, bytes)| {
                    let result = if bytes.len() > worker.max_body_bytes {
                        worker.metrics.rejected(RejectReason::TooLarge);
                        Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "too_large",
                            format!(
                                "line is larger than {} bytes (max_body_bytes)",
                                worker.max_body_bytes
                            ),
                        ))
                    } else {
                        ingest::prepare(&bytes, &worker.keys, &worker.sealer, caller).map_err(|e| {
                            let (status, reason) = refused(&worker, &e);
                            ApiError::new(status, reason, e.to_string())
                        })
                    };
                    (line, result)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut prepared = Vec::new();
    for task in futures_util::future::join_all(tasks).await {
        prepared.extend(
            task.ok_or_else(|| ApiError::internal("a batch share was not checked (bulk pool)"))?,
        );
    }
    Ok(prepared)
}

/// Query parameters of `GET /v1/events`.
#[derive(Debug, Deserialize)]
pub struct EventParams {
    correlation: Option<String>,
    action: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<u64>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, intentproof_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

async fn list_events(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<EventParams>,
) -> Result<Json<Value>, ApiError> {
    require_token(&state, &headers)?;
    if let Some(status) = &params.status
        && status != "ok"
        && status != "error"
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("status={status:?}: use ok or error"),
        ));
    }
    let query = EventQuery {
        correlation_id: params.correlation,
        action: params.action,
        status: params.status,
        since: params.since,
        until: params.until,
        after: params.cursor,
        limit: params.limit.unwrap_or(100),
    };
    let store = Arc::clone(&state.store);
    let page = blocking(move || store.events(&query)).await?;
    Ok(Json(json!({
        "events": page.events.iter().map(event_json).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor,
    })))
}

async fn get_event(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_token(&state, &headers)?;
    let worker = Arc::clone(&state);
    let found = blocking(move || {
        let Some(stored) = worker.store.get(&id)? else {
            return Ok(None);
        };
        let signed = checkpoint::latest(worker.store.dir())
            .ok()
            .flatten()
            .filter(|cp| cp.tree_size > stored.entry.seq);
        let size = signed
            .as_ref()
            .map_or(worker.store.tree_size(), |cp| cp.tree_size);
        let proof = worker.store.inclusion_proof(stored.entry.seq, size)?;
        let root = worker.store.root(size);
        Ok(Some((stored, size, proof, root, signed)))
    })
    .await?;
    let Some((stored, size, proof, root, signed)) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no event with that id",
        ));
    };
    Ok(Json(event_with_inclusion_json(
        &stored,
        size,
        &proof,
        &root,
        signed.as_ref(),
    )))
}

/// Query parameters of `GET /v1/chains`.
#[derive(Debug, Deserialize)]
pub struct ChainParams {
    limit: Option<usize>,
    /// Skip this many chains first (paging; the answer's `total` says how many there are).
    offset: Option<usize>,
}

async fn list_chains(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<ChainParams>,
) -> Result<Json<Value>, ApiError> {
    require_token(&state, &headers)?;
    let store = Arc::clone(&state.store);
    let limit = params.limit.unwrap_or(100).clamp(1, 10_000);
    let offset = params.offset.unwrap_or(0);
    let (total, chains) = blocking(move || {
        let (total, summaries) = store.chains_page(offset, limit)?;
        let page: Vec<Value> = summaries
            .iter()
            .map(|summary| chain_row_json(&store, summary))
            .collect();
        Ok((total, page))
    })
    .await?;
    Ok(Json(json!({"chains": chains, "total": total})))
}

async fn get_chain(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_token(&state, &headers)?;
    // `{"chain": ..., "events": [...]}`, the events read and written a
    // chunk at a time: the whole chain at once took ~28 KB of memory per
    // event (parsed, copied, serialized) for as long as the answer lasted.
    // The first chunk is read before answering, so a store that cannot be
    // read still gets a 500, not a cut answer.
    let store = Arc::clone(&state.store);
    let first = tokio::task::spawn_blocking(move || {
        let Some(summary) = store.chain_summary(&id).map_err(std::io::Error::other)? else {
            return Ok(None);
        };
        let mut entries = store
            .chain_entries(&id)
            .map_err(std::io::Error::other)?
            .into_iter();
        let mut chunk = br#"{"chain":"#.to_vec();
        serde_json::to_writer(&mut chunk, &chain_json(&summary))?;
        chunk.extend_from_slice(br#","events":["#);
        let done = chain_chunk(&store, &mut entries, &mut chunk, true)?;
        Ok::<_, std::io::Error>(Some((chunk, entries, done)))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let Some((chunk, entries, done)) = first else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no chain with that correlation id",
        ));
    };
    let store = Arc::clone(&state.store);
    let rest = futures_util::stream::try_unfold((entries, done), move |(mut entries, done)| {
        let store = Arc::clone(&store);
        async move {
            if done {
                return Ok(None);
            }
            let (chunk, entries, done) = tokio::task::spawn_blocking(move || {
                let mut chunk = Vec::new();
                let done = chain_chunk(&store, &mut entries, &mut chunk, false)?;
                Ok::<_, std::io::Error>((chunk, entries, done))
            })
            .await
            .map_err(std::io::Error::other)?
            .inspect_err(|e| {
                tracing::error!(error = %e, "a chain's answer was cut: an event could not be read");
            })?;
            Ok(Some((Bytes::from(chunk), (entries, done))))
        }
    });
    let body = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(chunk)) }),
        rest,
    );
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

/// Events per chunk of a streamed chain.
const CHAIN_CHUNK_EVENTS: usize = 256;

/// Appends up to [`CHAIN_CHUNK_EVENTS`] events of `entries` to `chunk`
/// (each after a comma, except the chain's very first), and the closing
/// `]}` once there are no more; true then.
fn chain_chunk(
    store: &Store,
    entries: &mut std::vec::IntoIter<intentproof_store::IndexEntry>,
    chunk: &mut Vec<u8>,
    first: bool,
) -> std::io::Result<bool> {
    for (i, entry) in entries.by_ref().take(CHAIN_CHUNK_EVENTS).enumerate() {
        if !(first && i == 0) {
            chunk.push(b',');
        }
        let stored = store.read_entry(entry).map_err(std::io::Error::other)?;
        serde_json::to_writer(&mut *chunk, &event_json(&stored))?;
    }
    if entries.len() > 0 {
        return Ok(false);
    }
    chunk.extend_from_slice(b"]}");
    Ok(true)
}

/// Signs a checkpoint of the current tree if the last one is older, and
/// returns the latest. Used by the API, the periodic task and shutdown.
pub fn checkpoint_now(state: &AppState) -> Result<Option<Checkpoint>, String> {
    let latest = checkpoint::latest(state.store.dir()).map_err(|e| e.to_string())?;
    let size = state.store.tree_size();
    if size == 0 || latest.as_ref().is_some_and(|cp| cp.tree_size == size) {
        return Ok(latest);
    }
    let key = &state.daemon_key;
    let cp = Checkpoint::sign(
        size,
        &state.store.root(size),
        &intentproof_core::now_rfc3339_millis(),
        key.signing_key(),
        &key.key_id(),
    )?;
    checkpoint::append(state.store.dir(), &cp).map_err(|e| e.to_string())?;
    Ok(Some(cp))
}

async fn get_checkpoint(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_token(&state, &headers)?;
    let worker = Arc::clone(&state);
    let cp = tokio::task::spawn_blocking(move || checkpoint_now(&worker))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "checkpoint": cp,
        "public_key": state.daemon_key.public_key_base64(),
    })))
}

/// Body of `POST /v1/keys`.
#[derive(Debug, Deserialize)]
pub struct TrustRequest {
    instance_id: String,
    public_key: String,
}

async fn trust_key(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Json<TrustRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    require_token(&state, &headers)?;
    let Json(request) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "{}; send {{\"instance_id\": \"inst_...\", \"public_key\": \"<base64 or PEM>\"}}",
                e.body_text()
            ),
        )
    })?;
    let key = parse_public_key(&request.public_key)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_key", e.to_string()))?;
    state
        .data_dir
        .trust(&request.instance_id, &key)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_key", e.to_string()))?;
    state.keys.insert(request.instance_id.clone(), key);
    let store = Arc::clone(&state.store);
    let instance = request.instance_id.clone();
    let (verified, invalid) = blocking(move || store.retrust(&instance, &key)).await?;
    Ok(Json(json!({
        "instance_id": request.instance_id,
        "events_verified": verified,
        "events_invalid": invalid,
    })))
}

fn mcp_gateway(state: &AppState) -> Result<Arc<McpHttp>, ApiError> {
    state.mcp.get().cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no MCP servers are configured; add [[mcp.servers]] to the config",
        )
    })
}

async fn mcp_post(
    State(state): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    Ok(mcp::http::post(mcp_gateway(&state)?, name, headers, body).await)
}

async fn mcp_get(
    State(state): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(mcp::http::get(mcp_gateway(&state)?, name, headers).await)
}

async fn mcp_delete(
    State(state): State<Shared>,
    Path(_name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(mcp::http::delete(mcp_gateway(&state)?, headers).await)
}

/// `/proxy/<name>/...`: the HTTP API proxy (auth and everything else in
/// [`intentproof_http_proxy`]).
async fn http_proxy(State(state): State<Shared>, request: axum::extract::Request) -> Response {
    match state.http.get() {
        Some(proxy) => intentproof_http_proxy::handle(Arc::clone(proxy), request).await,
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no HTTP routes are configured; add [[http.routes]] to the config",
        )
        .into_response(),
    }
}

/// `GET /v1/findings` and `GET /v1/plans` query parameters.
#[derive(Debug, Deserialize)]
pub struct FindingsParams {
    /// Rows per page (default [`live::DEFAULT_PAGE`], at most
    /// [`live::MAX_PAGE`]).
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// The `generation` of an earlier answer: when nothing changed since,
    /// the answer says `"unchanged": true` and holds no rows.
    since: Option<u64>,
    /// Plans only: this correlation's.
    correlation_id: Option<String>,
}

fn findings_error(e: live::QueryError) -> ApiError {
    match e {
        live::QueryError::Cursor(e) => {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_cursor", e.to_string())
        }
        live::QueryError::Stale(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "findings_stale",
            e.to_string(),
        ),
    }
}

/// One page of `rows` under `name`, with its cursor, total and generation.
fn page_json<T: serde::Serialize>(name: &str, page: live::Page<T>) -> Value {
    let mut body = json!({
        name: page.rows,
        "total": page.total,
        "generation": page.generation,
    });
    if let Some(cursor) = page.next_cursor {
        body["next_cursor"] = json!(cursor);
    }
    body
}

/// Runs `query` on the live findings, or answers "unchanged" when the
/// caller's `since` is the current generation.
async fn findings_query(
    state: &Shared,
    name: &'static str,
    since: Option<u64>,
    query: impl FnOnce(&live::LiveFindings, std::time::SystemTime) -> Result<Value, live::QueryError>
    + Send
    + 'static,
) -> Result<Json<Value>, ApiError> {
    let findings = Arc::clone(&state.findings);
    let answer = tokio::task::spawn_blocking(move || {
        let now = std::time::SystemTime::now();
        if let Some(since) = since {
            let generation = findings.generation(now)?;
            if generation == since {
                return Ok(json!({name: [], "generation": generation, "unchanged": true}));
            }
        }
        query(&findings, now)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(findings_error)?;
    Ok(Json(answer))
}

async fn list_plans(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<FindingsParams>,
) -> Result<Json<Value>, ApiError> {
    require_token(&state, &headers)?;
    let FindingsParams {
        limit,
        cursor,
        since,
        correlation_id,
    } = params;
    findings_query(&state, "plans", since, move |findings, now| {
        let page = findings.plans(
            now,
            cursor.as_deref(),
            limit.unwrap_or(live::DEFAULT_PAGE),
            correlation_id.as_deref(),
        )?;
        Ok(page_json("plans", page))
    })
    .await
}

async fn list_findings(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<FindingsParams>,
) -> Result<Json<Value>, ApiError> {
    require_token(&state, &headers)?;
    let FindingsParams {
        limit,
        cursor,
        since,
        ..
    } = params;
    findings_query(&state, "findings", since, move |findings, now| {
        let page =
            findings.findings(now, cursor.as_deref(), limit.unwrap_or(live::DEFAULT_PAGE))?;
        Ok(page_json("findings", page))
    })
    .await
}

/// The plan `id` and its findings, as of now.
async fn plan_by_id(
    state: &Shared,
    id: &str,
) -> Result<
    Option<(
        intentproof_findings::PlanRow,
        Vec<intentproof_findings::FindingRow>,
    )>,
    ApiError,
> {
    let findings = Arc::clone(&state.findings);
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || findings.plan(std::time::SystemTime::now(), &id))
        .await
        .map_err(ApiError::internal)?
        .map_err(findings_error)
}

/// Seals an event the daemon makes on a request's behalf (a plan
/// declaration or close) and waits until it is stored, so that what the
/// request answers is already in the journal (and the next proxied call
/// sees the plan). `what` names the event in errors.
pub(crate) async fn store_own_event(
    state: &Shared,
    event: intentproof_core::ExecutionEvent,
    what: &str,
) -> Result<u64, ApiError> {
    let worker = Arc::clone(state);
    let incoming =
        tokio::task::spawn_blocking(move || ingest::seal_incoming(&event, &worker.sealer))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
    let answer = state.writer.submit(incoming).map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the write queue is full; retry shortly",
        )
    })?;
    match answer.await {
        Ok(Ok(Ok(Appended::Stored { seq } | Appended::Duplicate { seq }))) => Ok(seq),
        other => Err(ApiError::internal(format!(
            "the {what} event was not stored: {other:?}"
        ))),
    }
}

/// Closes an open plan by recording an `intentproof.plan.close` event in
/// its correlation; the plan is then evaluated.
async fn close_plan(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_token(&state, &headers)?;
    let Some((plan, _)) = plan_by_id(&state, &id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no plan with that id",
        ));
    };
    if plan.state != "open" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "plan_closed",
            format!(
                "plan {id} is already closed ({})",
                plan.closed_by.unwrap_or("closed")
            ),
        ));
    }
    let event = intentproof_core::ExecutionEvent::builder(
        plan.intent.clone(),
        intentproof_findings::PLAN_CLOSE_ACTION,
    )
    .correlation_id(plan.correlation_id.clone())
    .inputs(json!({"plan_id": id}))
    .build();
    // A proxied call answered before this request is recorded after its
    // body ended, a few milliseconds later: let it reach the writer first,
    // or the close would judge the plan without it.
    if let Some(proxy) = state.http.get().cloned() {
        tokio::task::spawn_blocking(move || proxy.flush_recorded())
            .await
            .map_err(ApiError::internal)?;
    }
    store_own_event(&state, event, "close").await?;
    let mine = plan_by_id(&state, &id)
        .await?
        .map(|(_, findings)| findings)
        .unwrap_or_default();
    Ok(Json(
        json!({"plan_id": id, "state": "closed", "findings": mine}),
    ))
}

/// Body of `POST /v1/bundles`.
#[derive(Debug, Deserialize)]
pub struct BundleRequest {
    correlation_id: String,
    #[serde(default = "default_profile")]
    profile: String,
}

fn default_profile() -> String {
    "full".into()
}

/// Exports one correlation as a proof bundle (`.proof.tar.zst` bytes).
async fn export_bundle(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Json<BundleRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    use crate::export::{self, ExportError};
    require_token(&state, &headers)?;
    let Json(request) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "{}; send {{\"correlation_id\": \"...\", \"profile\": \"full\"}}",
                e.body_text()
            ),
        )
    })?;
    let worker = Arc::clone(&state);
    let exported = tokio::task::spawn_blocking(move || {
        export::export_bundle(&worker, &request.correlation_id, &request.profile)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| match &e {
        ExportError::UnsupportedProfile(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_profile",
            e.to_string(),
        ),
        ExportError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        ExportError::KeyUnknown { .. } => {
            ApiError::new(StatusCode::CONFLICT, "key_unknown", e.to_string())
        }
        ExportError::Store(_) | ExportError::Internal(_) => ApiError::internal(e),
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zstd".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}.proof.tar.zst\"",
                    exported.bundle_id
                ),
            ),
        ],
        exported.bytes,
    )
        .into_response())
}

/// Liveness, plus the daemon's instance id so a client can tell which
/// data dir it serves.
async fn healthz(State(state): State<Shared>) -> Json<Value> {
    Json(json!({"status": "ok", "instance_id": state.daemon_key.instance_id()}))
}

async fn metrics(State(state): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_token(&state, &headers)?;
    let text = state.metrics.render(state.store.tree_size());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_503_tells_the_sender_when_to_retry_and_other_errors_do_not() {
        let busy =
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "full").into_response();
        assert_eq!(
            busy.headers()
                .get(axum::http::header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        let bad = ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", "bad").into_response();
        assert!(bad.headers().get(axum::http::header::RETRY_AFTER).is_none());
        // The batch route builds its 503 itself (a body of per-line
        // results), through the same helper.
        let mut batch = (StatusCode::SERVICE_UNAVAILABLE, "{}").into_response();
        retry_shortly(&mut batch);
        assert_eq!(
            batch
                .headers()
                .get(axum::http::header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
    }
}
