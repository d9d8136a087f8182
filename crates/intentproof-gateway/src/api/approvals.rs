//! Approvals of held calls (guard mode's `require_approval`; the registry
//! is [`crate::approvals`]):
//!
//! - `POST /v1/approvals`: a gateway asks (body: the request,
//!   `intentproof_policy::guard::approval::Request`; the daemon or ingest
//!   token). The answer comes when the call is decided, expires or cannot
//!   be held: the outcome, `{"decision": "approved" | "denied" | "expired"
//!   | "unavailable", ...}`.
//! - `GET /v1/approvals`: pending approvals, then recent decisions (an
//!   operator: the daemon token, named `owner`, or an `[approvals]
//!   approvers` token).
//! - `POST /v1/approvals/{id}`: an operator decides (body `{"decision":
//!   "approve" | "deny", "reason"}`; a denial needs a reason); 404 unknown,
//!   409 decided already.
//!
//! Every body is `Content-Type: application/json` (a page cannot post one
//! without a preflight), and every route needs a bearer token.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use intentproof_api::wire;
use intentproof_policy::guard::approval::{Outcome, Request};

use super::{ApiError, Operator, Shared, Wire, may_submit};
use crate::approvals::DecideError;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/approvals", get(list).post(ask))
        .route("/v1/approvals/{id}", post(decide))
}

async fn ask(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(request): Json<Request>,
) -> Result<Wire<Outcome>, ApiError> {
    if !may_submit(&state, &headers) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "asking for an approval needs `Authorization: Bearer <token>`: the daemon token (in {}) or the ingest token",
                state.data_dir.token_path().display()
            ),
        ));
    }
    if request.id.is_empty() || request.id.len() > 128 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "`id` must be 1 to 128 characters",
        ));
    }
    Ok(Wire(state.approvals.ask(request).await))
}

async fn list(State(state): State<Shared>, _operator: Operator) -> Wire<wire::ApprovalsPage> {
    Wire(wire::ApprovalsPage {
        approvals: state.approvals.list(),
    })
}

async fn decide(
    State(state): State<Shared>,
    operator: Operator,
    Path(id): Path<String>,
    Json(body): Json<wire::ApprovalDecision>,
) -> Result<Wire<wire::ApprovalRow>, ApiError> {
    let approve = match body.decision.as_str() {
        "approve" => true,
        "deny" => false,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_decision",
                format!("`decision` is {other:?}: send \"approve\" or \"deny\""),
            ));
        }
    };
    state
        .approvals
        .decide(&id, approve, &operator.name, body.reason)
        .map(Wire)
        .map_err(|e| match e {
            DecideError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            DecideError::Decided(m) => ApiError::new(StatusCode::CONFLICT, "decided", m),
            DecideError::Invalid(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_decision", m)
            }
        })
}
