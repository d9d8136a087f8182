//! The client side: [`RecordingTransport`] shows the recorder every
//! message an rmcp client sends and receives, as JSON-RPC (what the
//! gateway's relay sees between the same client and server), and
//! [`RecordedClient`] is the rmcp client that uses it, with plans and the
//! flow's `_meta`.

use std::collections::VecDeque;
use std::future::Future;

use futures_util::future::Either;
use intentproof::{Plan, PlanDeclaration, PlanError};
use intentproof_mcp::recorder::ClientVerdict;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientJsonRpcMessage, ErrorData,
    GetPromptRequestParams, GetPromptResult, ReadResourceRequestParams, ReadResourceResult,
    RequestMetaObject, ServerJsonRpcMessage,
};
use rmcp::service::{
    ClientInitializeError, ClientLifecycleMode, ClientServiceExt, Peer, QuitReason, RunningService,
};
use rmcp::transport::{IntoTransport, Transport};
use rmcp::{ClientHandler, RoleClient, ServiceError, ServiceExt};
use serde_json::Value;

use crate::recording::Recording;

/// `_meta` key of the correlation id a request belongs to.
pub const CORRELATION_META: &str = "intentproof/correlationId";
/// `_meta` key of a call's own intent.
pub const INTENT_META: &str = "intentproof/intent";
/// `_meta` key of the plan step a call is (0-based).
pub const PLAN_STEP_META: &str = "intentproof/planStep";
/// `_meta` key of the W3C trace context.
pub const TRACEPARENT_META: &str = "traceparent";

const NO_APPROVALS: &str = "the rmcp client wrapper cannot wait for a person's approval; the call was refused (fail closed)";

/// An rmcp client transport whose every message the [`Recording`] sees:
/// what the client sends (before it leaves) and what comes back (before
/// rmcp hands it on), as JSON-RPC.
///
/// What the recorder answers itself (a call of the plan tool, a call the
/// guard refuses) never reaches the server: its answer is handed to the
/// client as if the server had sent it. The first `tools/list` page comes
/// back with the plan tool added, as through the gateway.
///
/// When the transport ends (the server went away) or rmcp closes it (the
/// client stopped), calls still waiting for an answer are recorded as
/// failed (`UpstreamGone`) and the session ends: the open plan is closed.
pub struct RecordingTransport<T> {
    inner: T,
    recording: Recording,
    /// Answers the recorder gave, handed to the client before anything the
    /// server sends next.
    replies: VecDeque<ServerJsonRpcMessage>,
    ended: bool,
}

impl<T> std::fmt::Debug for RecordingTransport<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingTransport")
            .field("recording", &self.recording)
            .field("replies", &self.replies.len())
            .finish_non_exhaustive()
    }
}

impl<T: Transport<RoleClient>> RecordingTransport<T> {
    /// Records what passes through `inner` in `recording`.
    pub fn new(inner: T, recording: Recording) -> Self {
        RecordingTransport {
            inner,
            recording,
            replies: VecDeque::new(),
            ended: false,
        }
    }
}

/// [`RecordingTransport::new`] for anything rmcp takes as a client
/// transport (a [`TokioChildProcess`](rmcp::transport::TokioChildProcess),
/// a Streamable HTTP client, a byte stream, ...).
pub fn recording_transport<X, E, A>(
    transport: X,
    recording: Recording,
) -> RecordingTransport<impl Transport<RoleClient, Error = E> + 'static>
where
    X: IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    RecordingTransport::new(transport.into_transport(), recording)
}

/// The error answer to request `message` (for a reply that could not be
/// read back as one; never expected).
fn error_answer(message: &ClientJsonRpcMessage, why: String) -> Option<ServerJsonRpcMessage> {
    match message {
        ClientJsonRpcMessage::Request(request) => Some(ServerJsonRpcMessage::error(
            ErrorData::internal_error(why, None),
            Some(request.id.clone()),
        )),
        _ => None,
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for RecordingTransport<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let reply = match serde_json::to_value(&item) {
            Ok(message) => match self.recording.on_client(&message) {
                ClientVerdict::Forward => None,
                ClientVerdict::Reply(reply) => Some(reply),
                ClientVerdict::Hold(held) => {
                    match self.recording.refuse_held(&held, NO_APPROVALS) {
                        Some(ClientVerdict::Reply(reply)) => Some(reply),
                        // Refused whatever could be recorded: never forwarded.
                        _ => Some(serde_json::json!({
                            "jsonrpc": "2.0", "id": held.id,
                            "error": {"code": intentproof_policy::guard::REFUSED_CODE, "message": NO_APPROVALS},
                        })),
                    }
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "an outgoing MCP message could not be read as JSON; forwarded unrecorded");
                None
            }
        };
        let answer = reply.and_then(|reply| match serde_json::from_value(reply) {
            Ok(answer) => Some(answer),
            Err(e) => error_answer(
                &item,
                format!("IntentProof could not hand its answer to the client: {e}"),
            ),
        });
        match answer {
            Some(answer) => {
                self.replies.push_back(answer);
                Either::Left(std::future::ready(Ok(())))
            }
            None => Either::Right(self.inner.send(item)),
        }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        if let Some(answer) = self.replies.pop_front() {
            return Some(answer);
        }
        match self.inner.receive().await {
            Some(message) => Some(self.observe(message)),
            None => {
                if !self.ended {
                    self.ended = true;
                    self.recording
                        .upstream_gone("the MCP server closed the connection before answering");
                }
                None
            }
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        // rmcp closes the transport when the client stops: nothing more
        // will be answered, so the session ends here.
        if !self.ended {
            self.ended = true;
            self.recording
                .upstream_gone("the client closed the session before the MCP server answered");
        }
        self.inner.close()
    }
}

impl<T> RecordingTransport<T> {
    /// Shows the recorder a message from the server; the message as the
    /// client gets it.
    fn observe(&self, message: ServerJsonRpcMessage) -> ServerJsonRpcMessage {
        let value = match serde_json::to_value(&message) {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(error = %e, "an incoming MCP message could not be read as JSON; passed on unrecorded");
                return message;
            }
        };
        match self.recording.on_server(&value) {
            Some(replaced) => match serde_json::from_value(replaced) {
                Ok(replaced) => replaced,
                Err(e) => {
                    tracing::warn!(error = %e, "the plan tool could not be added to a tools/list answer");
                    message
                }
            },
            None => message,
        }
    }
}

/// Why a [`RecordedClient`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The MCP exchange failed (transport, or the server's JSON-RPC error).
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The plan was not recorded: the recorder's reason.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// An rmcp client whose calls are recorded in-process, event for event as
/// the gateway's stdio relay (`intentproof mcp -- <server>`) would record
/// them, and that carries its flow to the server in `_meta`.
///
/// Every message passes a [`RecordingTransport`], so whatever is sent (also
/// through [`RecordedClient::peer`] directly) is recorded. The calls of
/// this type ([`call_tool`](RecordedClient::call_tool),
/// [`read_resource`](RecordedClient::read_resource),
/// [`get_prompt`](RecordedClient::get_prompt)) add to the request's
/// `_meta`:
///
/// - `intentproof/correlationId`: the open plan's correlation id, else the
///   session's, so a server that records too ([`crate::Recorded`]) puts the
///   call in the same flow;
/// - `traceparent`: a W3C trace context whose trace id is the correlation
///   id's hex digits (a UUID's; else a random id kept for the session) and
///   whose parent id is new for each request;
/// - `intentproof/intent` (`tools/call` only, unless the caller set it): the
///   purpose of the declared plan's step the call is (by tool name, or
///   `_meta["intentproof/planStep"]`), so a recording server records the
///   intent the client's own record has.
///
/// A caller that sets `intentproof/correlationId` or `traceparent` itself
/// keeps its flow as it is: neither is added then.
///
/// A call's intent is the caller's `_meta["intentproof/intent"]` when set,
/// else its plan step's purpose, else `undeclared` (the gateway's rule).
///
/// [`RecordedClient::close`] ends the session at once (the open plan is
/// closed, its missing steps flagged by the daemon); dropping the client
/// ends it too, once rmcp's service task has stopped and closed the
/// transport.
pub struct RecordedClient<H: ClientHandler = ()> {
    service: RunningService<RoleClient, H>,
    recording: Recording,
    /// Trace id for correlations that are not UUIDs.
    fallback_trace: String,
}

impl<H: ClientHandler> std::fmt::Debug for RecordedClient<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordedClient")
            .field("recording", &self.recording)
            .finish_non_exhaustive()
    }
}

/// 32 lowercase hex digits of a fresh UUIDv7 (never all zero).
fn random_hex32() -> String {
    intentproof_core::new_event_id().replace('-', "")
}

impl<H: ClientHandler> RecordedClient<H> {
    /// Connects `handler` over `transport` (rmcp's `serve`: the
    /// `initialize` handshake), recording in `recording`.
    pub async fn serve<X, E, A>(
        handler: H,
        transport: X,
        recording: Recording,
    ) -> Result<Self, ClientInitializeError>
    where
        X: IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let transport = recording_transport(transport, recording.clone());
        let service = handler.serve(transport).await?;
        Ok(Self::from_service(service, recording))
    }

    /// Connects with an explicit lifecycle: `Initialize` (2025-11-25 and
    /// earlier), `Discover` (2026-07-28: `server/discover`, then stateless
    /// requests carrying the `_meta` envelope), or `Auto`.
    pub async fn serve_with_lifecycle<X, E, A>(
        handler: H,
        transport: X,
        lifecycle: ClientLifecycleMode,
        recording: Recording,
    ) -> Result<Self, ClientInitializeError>
    where
        X: IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let transport = recording_transport(transport, recording.clone());
        let service = handler.serve_with_lifecycle(transport, lifecycle).await?;
        Ok(Self::from_service(service, recording))
    }

    /// Wraps a client already served over a [`RecordingTransport`] of
    /// `recording` (for `serve` variants this type does not offer).
    pub fn from_service(service: RunningService<RoleClient, H>, recording: Recording) -> Self {
        RecordedClient {
            service,
            recording,
            fallback_trace: random_hex32(),
        }
    }

    /// The session's recording.
    pub fn recording(&self) -> &Recording {
        &self.recording
    }

    /// The rmcp peer. Requests sent through it are recorded too, without
    /// the flow's `_meta` ([`RecordedClient::flow_meta`] gives it).
    pub fn peer(&self) -> &Peer<RoleClient> {
        self.service.peer()
    }

    /// The running rmcp client.
    pub fn service(&self) -> &RunningService<RoleClient, H> {
        &self.service
    }

    /// Declares `plan` through the recorder's plan tool (`tools/call` of
    /// `intentproof_declare_plan`, answered in-process, never sent to the
    /// server): recorded as `intentproof.plan.declare`, exactly as through
    /// the gateway. For MCP a step names a tool (`refund_payment`) or a
    /// full action (`mcp.payments.refund_payment`). From then on calls
    /// carry the plan's correlation id, and a step's purpose is the intent
    /// of the calls of its tool.
    pub async fn declare_plan(&self, plan: &PlanDeclaration) -> Result<Plan, Error> {
        let Some(tool) = self.recording.plan_tool() else {
            return Err(PlanError(
                "the plan tool is off (RecorderConfig::plan_tool is None)".into(),
            )
            .into());
        };
        let arguments = match plan.arguments() {
            Value::Object(arguments) => arguments,
            _ => return Err(PlanError("a plan's arguments are a JSON object".into()).into()),
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let result = self.service.peer().call_tool(params).await?;
        let structured = result.structured_content.as_ref();
        let text = |key: &str| {
            structured
                .and_then(|s| s.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match (result.is_error, text("plan_id"), text("correlation_id")) {
            (Some(true), _, _) | (_, None, _) | (_, _, None) => {
                let why = result
                    .content
                    .iter()
                    .find_map(|c| c.as_text().map(|t| t.text.clone()))
                    .unwrap_or_else(|| "the plan was not recorded".into());
                Err(PlanError(why).into())
            }
            (_, Some(plan_id), Some(correlation_id)) => Ok(Plan {
                plan_id,
                correlation_id,
                intent: self.recording.plan().map(|p| p.intent).unwrap_or_default(),
            }),
        }
    }

    /// The `_meta` this client adds to its requests now (see the type's
    /// docs): the correlation id and a new `traceparent`.
    pub fn flow_meta(&self) -> RequestMetaObject {
        let correlation = self.recording.correlation_id();
        let hex: String = correlation.chars().filter(|c| *c != '-').collect();
        let trace = if hex.len() == 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
            && hex.bytes().any(|b| b != b'0')
        {
            hex.to_ascii_lowercase()
        } else {
            self.fallback_trace.clone()
        };
        let span = &random_hex32()[16..];
        let mut meta = RequestMetaObject::new();
        meta.insert(CORRELATION_META.into(), Value::String(correlation));
        meta.insert(
            TRACEPARENT_META.into(),
            Value::String(format!("00-{trace}-{span}-01")),
        );
        meta
    }

    /// `meta` with the flow's keys added where it has none; for a call of
    /// `tool`, also the intent of the plan step it is.
    fn with_flow(
        &self,
        meta: Option<RequestMetaObject>,
        tool: Option<&str>,
    ) -> Option<RequestMetaObject> {
        let mut meta = meta.unwrap_or_default();
        // A caller that names its own flow keeps it whole.
        if !meta.contains_key(CORRELATION_META) && !meta.contains_key(TRACEPARENT_META) {
            meta.extend(self.flow_meta());
        }
        if let Some(tool) = tool
            && !meta.contains_key(INTENT_META)
        {
            let step = meta.get(PLAN_STEP_META).and_then(|step| {
                step.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .or_else(|| step.as_str().and_then(|t| t.trim().parse().ok()))
            });
            if let Some(intent) = self.recording.step_intent(tool, step) {
                meta.insert(INTENT_META.into(), Value::String(intent));
            }
        }
        Some(meta)
    }

    /// `tools/call`, recorded (rmcp's `call_tool`: 2026 `input_required`
    /// rounds are answered through the client handler, one event for the
    /// whole call). A JSON-RPC error or an `isError` result is recorded
    /// and returned as the server sent it.
    pub async fn call_tool(
        &self,
        mut params: CallToolRequestParams,
    ) -> Result<CallToolResult, ServiceError> {
        params.meta = self.with_flow(params.meta.take(), Some(params.name.as_ref()));
        self.service.call_tool(params).await
    }

    /// One `tools/call` round, recorded: a final result, an
    /// `input_required` result or a task handle, as the server answered.
    pub async fn call_tool_once(
        &self,
        mut params: CallToolRequestParams,
    ) -> Result<CallToolResponse, ServiceError> {
        params.meta = self.with_flow(params.meta.take(), Some(params.name.as_ref()));
        self.service.call_tool_once(params).await
    }

    /// `resources/read`, recorded (action `mcp.<server>.resource.read`).
    pub async fn read_resource(
        &self,
        mut params: ReadResourceRequestParams,
    ) -> Result<ReadResourceResult, ServiceError> {
        params.meta = self.with_flow(params.meta.take(), None);
        self.service.read_resource(params).await
    }

    /// `prompts/get`, recorded (action `mcp.<server>.prompt.get`).
    pub async fn get_prompt(
        &self,
        mut params: GetPromptRequestParams,
    ) -> Result<GetPromptResult, ServiceError> {
        params.meta = self.with_flow(params.meta.take(), None);
        self.service.get_prompt(params).await
    }

    /// Ends the session (its open plan is closed: steps that never ran are
    /// flagged) and stops the client. The events are emitted before this
    /// returns; `recording().sink().flush()` waits for their delivery.
    pub async fn close(self) -> Result<QuitReason, tokio::task::JoinError> {
        self.recording.end();
        self.service.cancel().await
    }
}
