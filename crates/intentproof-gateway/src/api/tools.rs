//! `POST /v1/tools/{server}/{tool}/approve` (body, optional:
//! `{"digest": "sha256:…"}`, `Content-Type: application/json`): an operator
//! accepts the changed definition of a pinned tool (guard mode's tool
//! pinning, `intentproof_mcp::pins`). The pins file of the server (in the
//! data dir, shared with `intentproof mcp` gateways) is updated and an
//! `intentproof.tools.approved` event is stored, sealed by the daemon, in
//! the server's pin correlation (`tools:<server>`), naming who approved.
//! The daemon token approves as `owner`, an approver's token
//! (`[approvals] approvers`) under its name. With `digest`, the approval holds only if the definition seen last is
//! still that one (what the operator looked at with `tools diff`): 409
//! otherwise.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use intentproof_api::wire;
use intentproof_core::actions::TOOLS_APPROVED_ACTION;
use intentproof_core::{AttributeValue, Attributes, ExecutionEvent};
use intentproof_mcp::pins::Pins;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, Operator, Shared, Wire, store_own_event};

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/tools/{server}/{tool}/approve", post(approve))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    digest: Option<String>,
}

async fn approve(
    State(state): State<Shared>,
    operator: Operator,
    Path((server, tool)): Path<(String, String)>,
    body: Option<Json<ApproveBody>>,
) -> Result<Wire<wire::ToolApproved>, ApiError> {
    let dir = state.data_dir.pins_dir();
    let by = operator.name.clone();
    let digest = body.and_then(|Json(b)| b.digest);
    let (server_name, tool_name) = (server.clone(), tool.clone());
    let approved = tokio::task::spawn_blocking(move || {
        let pins = Pins::open(&dir, &server_name)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_server", e))?;
        if !pins.path().exists() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_pinned",
                format!(
                    "server {server_name:?} has no pins in {}: turn on_tool_change on for it and list its tools first",
                    dir.display()
                ),
            ));
        }
        pins.approve(&tool_name, digest.as_deref(), &by)
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, "not_approved", e))
    })
    .await
    .map_err(ApiError::internal)??;
    let mut attributes = Attributes::new();
    attributes.insert("mcp.server".into(), AttributeValue::from(server.as_str()));
    attributes.insert(
        "intentproof.operator".into(),
        AttributeValue::from(operator.name.as_str()),
    );
    let event = ExecutionEvent::builder(
        format!("approve the changed definition of tool {tool} of server {server}"),
        TOOLS_APPROVED_ACTION,
    )
    .correlation_id(intentproof_mcp::pins::correlation(&server))
    .inputs(json!({"server": server, "tool": tool, "digest": approved.new_digest}))
    .output(json!({"old_digest": approved.old_digest, "new_digest": approved.new_digest}))
    .attributes(attributes)
    .build();
    let event_id = event.id.clone();
    store_own_event(&state, event, "tool approval").await?;
    Ok(Wire(wire::ToolApproved {
        server,
        tool,
        old_digest: approved.old_digest,
        new_digest: approved.new_digest,
        approved_by: operator.name,
        event_id,
    }))
}
