//! `GET /v1/findings`, and the paging of the live findings `GET /v1/plans`
//! shares.

use super::*;

/// `GET /v1/findings` and `GET /v1/plans` query parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct FindingsParams {
    /// Rows per page (default [`live::DEFAULT_PAGE`], at most
    /// [`live::MAX_PAGE`]).
    pub(crate) limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
    /// The `generation` of an earlier answer: when nothing changed since,
    /// the answer says `"unchanged": true` and holds no rows.
    pub(crate) since: Option<u64>,
    /// Plans only: this correlation's.
    pub(crate) correlation_id: Option<String>,
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

/// Where a page of the live findings stands, on the wire.
pub(super) fn paging<T>(page: &live::Page<T>) -> wire::Paging {
    wire::Paging {
        total: Some(page.total),
        generation: page.generation,
        next_cursor: page.next_cursor.clone(),
        unchanged: false,
    }
}

/// The answer to a caller whose `since` is the current `generation`.
pub(crate) fn unchanged(generation: u64) -> wire::Paging {
    wire::Paging {
        total: None,
        generation,
        next_cursor: None,
        unchanged: true,
    }
}

/// Runs `query` on the live findings, or answers "unchanged" (`page` of
/// no rows) when the caller's `since` is the current generation.
pub(super) async fn findings_query<P: Send + 'static>(
    state: &Shared,
    since: Option<u64>,
    page: fn(wire::Paging) -> P,
    query: impl FnOnce(&live::LiveFindings, std::time::SystemTime) -> Result<P, live::QueryError>
    + Send
    + 'static,
) -> Result<Wire<P>, ApiError> {
    let findings = Arc::clone(&state.findings);
    let answer = tokio::task::spawn_blocking(move || {
        let now = std::time::SystemTime::now();
        if let Some(since) = since {
            let generation = findings.generation(now)?;
            if generation == since {
                return Ok(page(unchanged(generation)));
            }
        }
        query(&findings, now)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(findings_error)?;
    Ok(Wire(answer))
}

async fn list_findings(
    State(state): State<Shared>,
    _auth: Authorized,
    Query(params): Query<FindingsParams>,
) -> Result<Wire<wire::FindingsPage>, ApiError> {
    let FindingsParams {
        limit,
        cursor,
        since,
        ..
    } = params;
    let empty = |paging| wire::FindingsPage {
        findings: Vec::new(),
        paging,
    };
    findings_query(&state, since, empty, move |findings, now| {
        let page =
            findings.findings(now, cursor.as_deref(), limit.unwrap_or(live::DEFAULT_PAGE))?;
        Ok(wire::FindingsPage {
            paging: paging(&page),
            findings: page.rows,
        })
    })
    .await
}

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/findings", get(list_findings))
}
