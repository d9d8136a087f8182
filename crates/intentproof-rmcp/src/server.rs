//! The server side: [`Recorded`] wraps an rmcp server (any
//! [`ServerHandler`](rmcp::ServerHandler), or any `Service<RoleServer>`)
//! and shows the recorder each request it handles and each answer, as
//! JSON-RPC.

use std::borrow::Cow;
use std::sync::{Mutex, PoisonError};

use intentproof_mcp::recorder::ClientVerdict;
use rmcp::model::{
    CallToolResult, ClientNotification, ClientRequest, ErrorData, ListToolsResult, ProtocolVersion,
    ServerConfig, ServerResult,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, RoleServer, Service};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::recording::Recording;

/// The JSON-RPC code of a call the guard refused (`-32010`).
const REFUSED_CODE: i32 = -32010;
const _: () = assert!(REFUSED_CODE as i64 == intentproof_policy::guard::REFUSED_CODE);

/// An rmcp server that records every call it handles in-process, event for
/// event as the gateway would record the same calls relayed to it.
///
/// Every request and notification is delegated to the inner server
/// unchanged, except what the gateway itself answers: calls of the plan
/// tool (`intentproof_declare_plan`, which the first `tools/list` page
/// lists), answered by the recorder, and what its guard refuses (when
/// [`RecorderConfig`](intentproof_mcp::recorder::RecorderConfig) enforces
/// anything). The recorder sees each request with its `_meta` put back
/// into `params` (rmcp moves it to [`RequestContext::meta`]), so
/// `_meta["intentproof/correlationId"]` (a [`crate::RecordedClient`] sends
/// it), `traceparent`, `_meta["intentproof/intent"]` and
/// `_meta["intentproof/planStep"]` count as they do through the gateway,
/// and a 2026-07-28 request's `io.modelcontextprotocol/protocolVersion`
/// and `clientInfo` give the event's `mcp.protocol.version` and
/// `mcp.client.*`. In a 2025-era session the `initialize` request and the
/// version rmcp negotiated give them.
///
/// A call held for approval (approval rules in the config) is asked of the
/// config's approver and waits for the decision (without the progress
/// notices the gateway sends meanwhile).
///
/// One `Recorded` is one session: serve it on one connection (stdio, a
/// Streamable HTTP session). For 2026-07-28's stateless HTTP, where rmcp
/// builds a server per request, build each from one shared [`Recording`]
/// so that a plan declared in one request covers the next. The recorder
/// follows calls by JSON-RPC id: two clients of one shared `Recording`
/// using the same id at the same moment would be confused (the gateway's
/// stateless lane rewrites ids for this; this wrapper does not).
///
/// The session ends (its plan is closed) with [`Recording::end`], or when
/// the last clone of its `Recording` is dropped.
pub struct Recorded<S> {
    inner: S,
    recording: Recording,
    /// The id of a 2025-era `initialize` request whose answer the recorder
    /// has not seen yet: it is shown the version rmcp negotiated (known from
    /// the next message on).
    initialize: Mutex<Option<Value>>,
}

impl<S> std::fmt::Debug for Recorded<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorded")
            .field("recording", &self.recording)
            .finish_non_exhaustive()
    }
}

impl<S: Service<RoleServer>> Recorded<S> {
    /// `inner`, recorded in `recording`.
    pub fn new(inner: S, recording: Recording) -> Self {
        Recorded {
            inner,
            recording,
            initialize: Mutex::new(None),
        }
    }

    /// The session's recording ([`Recording::end`] closes its plan).
    pub fn recording(&self) -> &Recording {
        &self.recording
    }

    /// The wrapped server.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Shows the recorder the answer to a 2025-era `initialize` once rmcp
    /// has negotiated the session's version (the peer info it keeps).
    fn settle_initialize(&self, peer: &Peer<RoleServer>) {
        let mut pending = self
            .initialize
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(id) = pending.take() else {
            return;
        };
        let version = peer.peer_info().map(|info| info.protocol_version.clone());
        let result = match version {
            Some(version) => json!({"protocolVersion": version}),
            None => json!({}),
        };
        let _ = self
            .recording
            .on_server(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
    }
}

/// `message` (a request or notification) as JSON-RPC, `_meta` put back
/// into its params; `id` for a request.
fn json_rpc(
    message: &impl Serialize,
    meta: &Map<String, Value>,
    id: Option<&Value>,
) -> Option<Value> {
    let mut value = match serde_json::to_value(message) {
        Ok(Value::Object(value)) => value,
        Ok(_) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "an MCP request could not be read as JSON; handled unrecorded");
            return None;
        }
    };
    value.insert("jsonrpc".into(), Value::String("2.0".into()));
    if let Some(id) = id {
        value.insert("id".into(), id.clone());
    }
    if !meta.is_empty() {
        let params = value
            .entry("params")
            .or_insert_with(|| Value::Object(Map::new()));
        if !params.is_object() {
            *params = Value::Object(Map::new());
        }
        if let Some(params) = params.as_object_mut() {
            let merged = match params.remove("_meta") {
                Some(Value::Object(mut own)) => {
                    own.extend(meta.clone());
                    own
                }
                _ => meta.clone(),
            };
            params.insert("_meta".into(), Value::Object(merged));
        }
    }
    Some(Value::Object(value))
}

/// The answer the recorder gave (a JSON-RPC response) to `request`.
fn answer(request: &ClientRequest, reply: Value) -> Result<ServerResult, ErrorData> {
    let read_error = |e: serde_json::Error| {
        ErrorData::internal_error(
            format!("IntentProof could not hand its answer to the client: {e}"),
            None,
        )
    };
    if let Some(error) = reply.get("error") {
        return Err(serde_json::from_value(error.clone()).map_err(read_error)?);
    }
    let result = reply.get("result").cloned().unwrap_or(Value::Null);
    match request {
        ClientRequest::CallToolRequest(_) => serde_json::from_value::<CallToolResult>(result)
            .map(ServerResult::CallToolResult)
            .map_err(read_error),
        _ => serde_json::from_value::<ServerResult>(result).map_err(read_error),
    }
}

impl<S: Service<RoleServer>> Service<RoleServer> for Recorded<S> {
    async fn handle_request(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        self.settle_initialize(&context.peer);
        let id = serde_json::to_value(&context.id).ok();
        let Some(message) = json_rpc(&request, &context.meta, id.as_ref()) else {
            return self.inner.handle_request(request, context).await;
        };
        if matches!(request, ClientRequest::InitializeRequest(_)) {
            // The client's name and the version it asked for; the answer
            // (the negotiated version) follows with the next message.
            let _ = self.recording.on_client(&message);
            *self
                .initialize
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = id;
            return self.inner.handle_request(request, context).await;
        }
        match self.recording.on_client(&message) {
            ClientVerdict::Forward => {}
            ClientVerdict::Reply(reply) => return answer(&request, reply),
            ClientVerdict::Hold(held) => {
                let outcome = self.recording.approver().ask(held.request.clone()).await;
                match self.recording.resolve_hold(&held.id, &outcome) {
                    Some(ClientVerdict::Forward) => {}
                    Some(ClientVerdict::Reply(reply)) => return answer(&request, reply),
                    // No longer held (cancelled meanwhile): not handled.
                    _ => {
                        return Err(ErrorData::new(
                            rmcp::model::ErrorCode(REFUSED_CODE),
                            "the call was no longer waiting for approval; it was not made",
                            None,
                        ));
                    }
                }
            }
        }
        let result = self.inner.handle_request(request, context).await;
        let response = match &result {
            Ok(value) => serde_json::to_value(value)
                .map(|value| json!({"jsonrpc": "2.0", "id": id, "result": value})),
            Err(error) => serde_json::to_value(error)
                .map(|error| json!({"jsonrpc": "2.0", "id": id, "error": error})),
        };
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(error = %e, "an MCP answer could not be read as JSON; not recorded");
                return result;
            }
        };
        let replaced = self.recording.on_server(&response);
        match (result, replaced) {
            // The first tools/list page, with the plan tool.
            (Ok(ServerResult::ListToolsResult(listed)), Some(replaced)) => {
                match replaced
                    .get("result")
                    .cloned()
                    .map(serde_json::from_value::<ListToolsResult>)
                {
                    Some(Ok(with_plan_tool)) => Ok(ServerResult::ListToolsResult(with_plan_tool)),
                    _ => {
                        tracing::warn!("the plan tool could not be added to a tools/list answer");
                        Ok(ServerResult::ListToolsResult(listed))
                    }
                }
            }
            (result, _) => result,
        }
    }

    async fn handle_notification(
        &self,
        notification: ClientNotification,
        context: NotificationContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.settle_initialize(&context.peer);
        if let Some(message) = json_rpc(&notification, &context.meta, None) {
            // A cancellation ends its call (recorded as cancelled).
            let _ = self.recording.on_client(&message);
        }
        self.inner.handle_notification(notification, context).await
    }

    fn get_info(&self) -> ServerConfig {
        self.inner.get_info()
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        self.inner.supported_protocol_versions()
    }
}
