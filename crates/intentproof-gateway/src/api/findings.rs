//! `GET /v1/findings`, and the paging of the live findings `GET /v1/plans`
//! shares.

use super::*;

/// `GET /v1/findings` and `GET /v1/plans` query parameters.
#[derive(Debug, Deserialize)]
pub(super) struct FindingsParams {
    /// Rows per page (default [`live::DEFAULT_PAGE`], at most
    /// [`live::MAX_PAGE`]).
    pub(super) limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub(super) cursor: Option<String>,
    /// The `generation` of an earlier answer: when nothing changed since,
    /// the answer says `"unchanged": true` and holds no rows.
    pub(super) since: Option<u64>,
    /// Plans only: this correlation's.
    pub(super) correlation_id: Option<String>,
}

pub(super) fn findings_error(e: live::QueryError) -> ApiError {
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
pub(super) fn page_json<T: serde::Serialize>(name: &str, page: live::Page<T>) -> Value {
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
pub(super) async fn findings_query(
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

async fn list_findings(
    State(state): State<Shared>,
    _auth: Authorized,
    Query(params): Query<FindingsParams>,
) -> Result<Json<Value>, ApiError> {
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

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/findings", get(list_findings))
}
