//! `POST /v1/events` and `POST /v1/events:batch` (ingest, behind the
//! browser guard), `GET /v1/events` and `GET /v1/events/{id}`.

use super::*;

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
            Wire(wire::Accepted {
                status: "stored".into(),
                event_id,
                seq,
            }),
        )
            .into_response()),
        // 200 is a success for the reference SDKs too.
        Answer::Duplicate(seq) => Ok((
            StatusCode::OK,
            Wire(wire::Accepted {
                status: "duplicate".into(),
                event_id,
                seq,
            }),
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
                kept @ (Answer::Stored(seq) | Answer::Duplicate(seq)) => {
                    // The statuses a single POST /v1/events answers with.
                    let status = if matches!(kept, Answer::Stored(_)) {
                        stored += 1;
                        202
                    } else {
                        duplicates += 1;
                        200
                    };
                    wire::BatchLine {
                        event_id: Some(event_id),
                        seq: Some(seq),
                        ..wire::BatchLine::new(line, status)
                    }
                }
                Answer::Refused(e) => {
                    rejected += 1;
                    retry |= e.status == StatusCode::SERVICE_UNAVAILABLE;
                    wire::BatchLine {
                        event_id: Some(event_id),
                        ..e.batch_line(line)
                    }
                }
            },
            Err(e) => {
                rejected += 1;
                retry |= e.status == StatusCode::SERVICE_UNAVAILABLE;
                e.batch_line(line)
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
        Wire(wire::BatchAnswer {
            stored,
            duplicates,
            rejected,
            results,
        }),
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

/// Query parameters of `GET /v1/events` (the fleet view's too).
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

impl EventParams {
    /// The store query these parameters ask for; a status other than `ok`
    /// or `error` is a 400.
    pub(crate) fn into_query(self) -> Result<EventQuery, ApiError> {
        if let Some(status) = &self.status
            && status != "ok"
            && status != "error"
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("status={status:?}: use ok or error"),
            ));
        }
        Ok(EventQuery {
            correlation_id: self.correlation,
            action: self.action,
            status: self.status,
            since: self.since,
            until: self.until,
            after: self.cursor,
            limit: self.limit.unwrap_or(100),
        })
    }
}

async fn list_events(
    State(state): State<Shared>,
    _auth: Authorized,
    Query(params): Query<EventParams>,
) -> Result<Wire<wire::EventsPage>, ApiError> {
    let query = params.into_query()?;
    let store = Arc::clone(&state.store);
    let page = blocking(move || store.events(&query)).await?;
    Ok(Wire(wire::EventsPage {
        events: page.events.into_iter().map(event_body).collect(),
        next_cursor: page.next_cursor,
    }))
}

async fn get_event(
    State(state): State<Shared>,
    _auth: Authorized,
    Path(id): Path<String>,
) -> Result<Wire<wire::EventWithInclusion>, ApiError> {
    let store = Arc::clone(&state.store);
    match blocking(move || event_with_inclusion(&store, &id)).await? {
        Some(body) => Ok(Wire(body)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no event with that id",
        )),
    }
}

pub(super) fn routes(guard: &Arc<BrowserGuard>) -> Router<Shared> {
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
}
