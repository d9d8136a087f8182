//! HTTP routes. Handlers are thin: check auth, call a plain function,
//! answer one of `intentproof_api::wire`'s types (through [`Wire`], so the
//! bytes are the same whatever the type's field order). Every error body
//! is `{"error": <what and what to do>, "reason": <stable code>}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use intentproof_api::same_token;
use intentproof_api::shapes::{chain_row, event_body, event_with_inclusion};
use intentproof_api::wire;
use intentproof_core::keys::parse_public_key;
use intentproof_store::{Appended, EventQuery, Store};
use serde::Deserialize;

mod approvals;
mod bundles;
mod chains;
pub mod checkpoint;
mod events;
mod findings;
mod health;
mod keys;
mod mcp;
mod plans;
mod proxy;
mod tools;

pub use events::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS, batch_lines};
// What the fleet view (`crate::fleet_view`) answers the same way.
pub(crate) use bundles::{bundle_answer, export_refused, export_request};
pub(crate) use chains::ChainParams;
pub(crate) use events::EventParams;
pub(crate) use findings::{FindingsParams, unchanged};
pub(crate) use keys::trust_request;

use crate::browser_guard::{self, BrowserGuard, Surface, bearer};
pub use crate::error::ApiError;
use crate::error::retry_shortly;
use crate::ingest::{self, Caller};
use crate::metrics::RejectReason;
pub use crate::state::AppState;
use intentproof_findings::live;
use intentproof_mcp::http::McpHttp;

type Shared = Arc<AppState>;

/// The router with every route, one router per resource; `guard` keeps
/// web pages out of ingest and `/mcp/<name>` ([`browser_guard`]).
pub fn router(state: Shared, guard: Arc<BrowserGuard>) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .merge(events::routes(&guard))
        .merge(chains::routes())
        .merge(checkpoint::routes(&guard))
        .merge(keys::routes())
        .merge(plans::routes())
        .merge(findings::routes())
        .merge(bundles::routes())
        .merge(mcp::routes(&guard))
        .merge(proxy::routes())
        .merge(tools::routes())
        .merge(approvals::routes())
        .merge(health::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// A typed answer: `T` (an `intentproof_api::wire` type) as JSON, its
/// objects' keys in sorted order ([`intentproof_api::wire::answer_bytes`]).
pub(crate) struct Wire<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Wire<T> {
    fn into_response(self) -> Response {
        match intentproof_api::wire::answer_bytes(&self.0) {
            Some(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
            None => ApiError::internal("an answer could not be encoded as JSON").into_response(),
        }
    }
}

/// A request that carries the daemon's token (`Authorization: Bearer
/// <token>`): the extractor every read and admin handler takes, so none can
/// forget the check. Its rejection is the 401 every route answers.
pub(crate) struct Authorized;

impl axum::extract::FromRequestParts<Shared> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Shared,
    ) -> Result<Self, ApiError> {
        require_token(state, &parts.headers).map(|()| Authorized)
    }
}

/// A request from someone who may decide (approve a held call or a
/// changed tool): the daemon token (named `owner`) or a named approver's
/// token (`[approvals] approvers`). `name` is recorded with the decision.
pub(crate) struct Operator {
    pub name: String,
}

/// The name the daemon token decides as.
pub(crate) const OWNER: &str = "owner";

impl axum::extract::FromRequestParts<Shared> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Shared,
    ) -> Result<Self, ApiError> {
        let given = bearer(&parts.headers);
        if let Some(given) = given {
            if same_token(given, &state.token) {
                return Ok(Operator { name: OWNER.into() });
            }
            // Every approver is compared, so the time taken does not say
            // which name matched.
            let mut found = None;
            for (name, token) in &state.approvers {
                if same_token(given, token) && found.is_none() {
                    found = Some(name.clone());
                }
            }
            if let Some(name) = found {
                return Ok(Operator { name });
            }
        }
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "deciding needs `Authorization: Bearer <token>`: the daemon token (in {}) or an approver's token ([approvals] approvers)",
                state.data_dir.token_path().display()
            ),
        ))
    }
}

/// Whether the request carries a token that may submit on a gateway's
/// behalf (declare a plan, ask for an approval): the daemon token or the
/// ingest token (`X-IntentProof-Token: <daemon token>` too, as on proxy
/// calls).
pub(crate) fn may_submit(state: &AppState, headers: &HeaderMap) -> bool {
    let daemon = |given: &str| same_token(given, &state.token);
    let ingest = |given: &str| {
        state
            .ingest_token
            .as_deref()
            .is_some_and(|expected| same_token(given, expected))
    };
    bearer(headers).is_some_and(|given| daemon(given) || ingest(given))
        || headers
            .get(intentproof_http_proxy::TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|given| daemon(given.trim()))
}

fn require_token(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    require_bearer(headers, &state.token, &state.data_dir.token_path())
}

/// `Authorization: Bearer <token>` with `token`, else the 401 naming the
/// file that holds it.
pub(crate) fn require_bearer(
    headers: &HeaderMap,
    token: &str,
    token_path: &std::path::Path,
) -> Result<(), ApiError> {
    match bearer(headers) {
        Some(given) if same_token(given, token) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "this endpoint needs `Authorization: Bearer <token>`; the token is in {}",
                token_path.display()
            ),
        )),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, intentproof_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
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
