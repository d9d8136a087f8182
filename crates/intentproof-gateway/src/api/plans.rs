//! `POST /v1/plans`: declare a plan over plain HTTP, for agents that do not
//! speak MCP (HTTP-proxy agents, SDKs in any language).
//!
//! The body is the MCP plan tool's arguments, checked by the same parser
//! ([`parse_plan_arguments`]): `{"intent", "steps": [{"tool" | "action",
//! "purpose"}], "ordered", "correlation_id"}`. The daemon records exactly
//! the event the MCP plan tool records (action `intentproof.plan.declare`,
//! inputs = the body, output `{plan_id, correlation_id}`, attributes
//! `intentproof.plan.id` and `intentproof.plan.ordered`), sealed with its
//! own key, and answers 201 once it is stored: a proxied call sent after
//! the answer with `X-IntentProof-Correlation-Id: <correlation_id>` is
//! checked against the plan. With no `correlation_id`, the daemon assigns
//! one (a UUIDv7) and returns it.
//!
//! Steps are kept as sent: with no MCP server to resolve bare tool names
//! against, a step names the full action it calls
//! (`http.<route>.<METHOD>.<template>`, `mcp.<server>.<tool>`, or an SDK's
//! own action such as `stripe.refund.create`).
//!
//! Authentication: `Authorization: Bearer <token>` with the daemon token
//! (the data dir's `token` file) or, when one is configured, the ingest
//! token; `X-IntentProof-Token: <daemon token>` too, as on proxy calls.
//! The body must be `Content-Type: application/json`.
//!
//! It does not record refused declarations (401, 415, 400): unlike an MCP
//! session, a refused request has no flow to record it in.

use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use intentproof_core::canon::parse_strict;
use intentproof_policy::verification::{
    PlanArguments, parse_plan_arguments, plan_declaration_event,
};
use serde_json::json;

use std::sync::Arc;

use intentproof_findings::live;

use super::findings::{FindingsParams, findings_error, findings_query, paging};
use super::{ApiError, Authorized, Shared, Wire, may_submit, store_own_event};
use axum::Router;
use axum::extract::{Path, Query};
use axum::routing::{get, post};
use intentproof_api::wire;
use intentproof_http_proxy::{MAX_CORRELATION_BYTES, is_valid_correlation_id};

fn invalid_plan(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_plan", message)
}

/// Handles `POST /v1/plans`.
pub(super) async fn declare_plan(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = SystemTime::now();
    let clock = Instant::now();
    if !may_submit(&state, &headers) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "declaring a plan needs `Authorization: Bearer <token>`: the daemon token (in {}) or the ingest token",
                state.data_dir.token_path().display()
            ),
        ));
    }
    if !intentproof_http_proxy::is_json(&headers) {
        let sent = headers.get(axum::http::header::CONTENT_TYPE).map_or_else(
            || "no Content-Type".to_owned(),
            |v| format!("Content-Type {:?}", String::from_utf8_lossy(v.as_bytes())),
        );
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("{sent}: send the plan as `Content-Type: application/json`"),
        ));
    }
    let body = body.map_err(|rejection| {
        let reason = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "malformed_body"
        };
        ApiError::new(rejection.status(), reason, rejection.body_text())
    })?;
    let arguments = parse_strict(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()))?;
    let PlanArguments {
        intent,
        steps,
        ordered,
        correlation_id,
        ..
    } = parse_plan_arguments(&arguments).map_err(invalid_plan)?;
    if let Some(chosen) = &correlation_id
        && !is_valid_correlation_id(chosen)
    {
        return Err(invalid_plan(format!(
            "`correlation_id` must be 1 to {MAX_CORRELATION_BYTES} visible ASCII characters (proxied calls name it in X-IntentProof-Correlation-Id); leave it out to get one"
        )));
    }
    let plan_id = intentproof_core::new_event_id();
    let correlation_id = correlation_id.unwrap_or_else(intentproof_core::new_event_id);
    let event = plan_declaration_event(
        &intent,
        arguments,
        &plan_id,
        &correlation_id,
        ordered,
        started,
        clock.elapsed(),
    );
    let event_id = event.id.clone();
    store_own_event(&state, event, "plan declaration").await?;
    Ok((
        StatusCode::CREATED,
        Wire(wire::PlanDeclared {
            plan_id,
            correlation_id,
            steps: steps.len(),
            event_id,
        }),
    )
        .into_response())
}

async fn list_plans(
    State(state): State<Shared>,
    _auth: Authorized,
    Query(params): Query<FindingsParams>,
) -> Result<Wire<wire::PlansPage>, ApiError> {
    let FindingsParams {
        limit,
        cursor,
        since,
        correlation_id,
    } = params;
    let empty = |paging| wire::PlansPage {
        plans: Vec::new(),
        paging,
    };
    findings_query(&state, since, empty, move |findings, now| {
        let page = findings.plans(
            now,
            cursor.as_deref(),
            limit.unwrap_or(live::DEFAULT_PAGE),
            correlation_id.as_deref(),
        )?;
        Ok(wire::PlansPage {
            paging: paging(&page),
            plans: page.rows,
        })
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

/// Closes an open plan by recording an `intentproof.plan.close` event in
/// its correlation; the plan is then evaluated.
async fn close_plan(
    State(state): State<Shared>,
    _auth: Authorized,
    Path(id): Path<String>,
) -> Result<Wire<wire::PlanClosed>, ApiError> {
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
                plan.closed_by.as_deref().unwrap_or("closed")
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
    Ok(Wire(wire::PlanClosed {
        plan_id: id,
        state: "closed".into(),
        findings: mine,
    }))
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/plans", get(list_plans).post(declare_plan))
        .route("/v1/plans/{id}/close", post(close_plan))
}
