//! MCP revision 2026-07-28 over HTTP: stateless requests at `/mcp/<name>`,
//! served side by side with the session-based revisions ([`super::http`]).
//!
//! # How a request is told apart
//!
//! By its `MCP-Protocol-Version` header alone, as a 2026 server does (PyPI
//! `mcp` 2.3.0 routes on it): a header naming a revision that has no
//! sessions (anything but [`SESSION_REVISIONS`]) makes the POST stateless;
//! no header, or a session-based revision, takes the session path
//! (`initialize`, `Mcp-Session-Id`). A stateless POST needs no state in
//! the gateway from an earlier one: any request may come on any
//! connection, or to another gateway replica.
//!
//! # Where it goes
//!
//! - **A `url` upstream**: the POST is passed on as it came (its body, its
//!   `Accept`, `Content-Type`, `MCP-Protocol-Version`, `Mcp-Method`,
//!   `Mcp-Name`, `Mcp-Param-*` and trace headers, plus the configured
//!   credentials), and the answer comes back as it was: status, content
//!   type and body, SSE `id:` and `retry:` lines included. The upstream
//!   validates headers and answers errors itself, so a client sees what it
//!   sees directly. The gateway only reads along to record.
//! - **A `command` upstream**: one process per server serves every
//!   stateless request (the revision has no per-client state to keep
//!   apart: each request carries its `_meta`), started at the first one and
//!   again after it exits. Request ids of different clients could collide
//!   in that one process, so each request goes upstream under an id of the
//!   gateway's, `"intentproof-<n>:<client id>"`, spliced into the original
//!   bytes (the rest untouched), and its answer comes back under the
//!   client's id. The gateway plays the HTTP part a 2026 server plays: it
//!   checks `Mcp-Method`, `Mcp-Name` and `MCP-Protocol-Version` against
//!   the body (`HeaderMismatch`, -32020, HTTP 400), answers notifications
//!   with 202 and the methods the revision removed (`initialize`, `ping`,
//!   `logging/setLevel`, `resources/(un)subscribe`) with 404/-32601,
//!   refuses batches and GET/DELETE (405, `Allow: POST`), and maps an
//!   upstream JSON-RPC error to the HTTP status a 2026 server gives it
//!   (-32601: 404; -32700/-32600/-32602/-32020/-32021/-32022: 400).
//!   Everything about `_meta` and versions is the upstream's to answer.
//!
//! # Recording
//!
//! One [`Recorder`] per server observes every stateless request; it sees
//! each request under its gateway id, so concurrent clients that use the
//! same ids do not mix, and each event's ids (`jsonrpc.id`, the rounds of
//! a multi-round call) are set back to the client's. Events carry no
//! `mcp.session_id` (the revision has none).
//! Correlation: `_meta["intentproof/correlationId"]`, then `traceparent`,
//! then the plan open on that server's stateless lane, else one id per
//! server for the daemon's run (`stateless-<server>-<uuid>`).
//!
//! # What it does not do
//!
//! - A request a `command` lane refuses at the HTTP layer (a header that
//!   contradicts the body, a removed method) never reached the tool and is
//!   not recorded; a `url` upstream's refusals are answers the gateway
//!   reads, so they are recorded as failed calls.
//! - A `command` upstream's `Mcp-Param-*` headers are not checked against
//!   the tool's `x-mcp-header` schema (a `url` upstream checks its own).
//! - Progress tokens are not rewritten on the shared process: two clients
//!   using the same token at the same moment may see each other's progress.
//! - Server-initiated requests have nowhere to go (the revision replaces
//!   them with multi-round results); such messages are dropped and logged.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use intentproof_core::{AttributeValue, ExecutionEvent};
use serde_json::{Value, json};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

use super::lines::{Answer, Line, LineCodec, Side};
use super::recorder::{ClientVerdict, Recorder, RecorderConfig};
use super::remote::{RemoteServer, SseParser, one_line};
use super::stdio::MAX_MESSAGE_BYTES;
use super::streamable::{
    JSON_WAIT, Outgoing, accepts, accepts_json, json_response, lock, rpc_error, rpc_error_with,
    sse_stream, write_stdin,
};
use crate::config::McpServerConfig;
use crate::sink::RecordSink;

/// The revisions that have sessions (`initialize`, `Mcp-Session-Id`).
pub const SESSION_REVISIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

const VERSION_HEADER: &str = "mcp-protocol-version";
const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";
/// Methods 2026-07-28 removed: a 2026 server answers them "Method not
/// found" (404) at the HTTP layer, before its protocol layer sees them.
const REMOVED_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];
/// Headers of the client's that a `url` upstream gets as they came.
const PASSED_ON: &[&str] = &[
    "accept",
    "content-type",
    VERSION_HEADER,
    METHOD_HEADER,
    NAME_HEADER,
    "traceparent",
    "tracestate",
    "baggage",
    "last-event-id",
];
/// Headers of the upstream's answer that the client gets.
const PASSED_BACK: &[&str] = &["content-type", "cache-control", "retry-after", "allow"];

/// The version of a stateless (2026-07-28 or later) request, from its
/// `MCP-Protocol-Version` header; `None` for the session path.
pub fn stateless_version(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(VERSION_HEADER)?;
    let text = String::from_utf8_lossy(value.as_bytes()).trim().to_owned();
    (!SESSION_REVISIONS.contains(&text.as_str())).then_some(text)
}

/// The HTTP status a 2026 server answers a JSON-RPC error code with.
fn status_of_error(code: i64) -> StatusCode {
    match code {
        -32601 => StatusCode::NOT_FOUND,
        -32700 | -32600 | -32602 | -32020 | -32021 | -32022 => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// GET and DELETE of a stateless client: the revision has neither.
pub fn method_not_allowed() -> Response {
    let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// `text` with its top-level `"id"` member's value replaced by `id` (JSON
/// text), every other byte as it was. `None` when `text` is not an object
/// with an `id`.
pub(crate) fn splice_id(text: &str, id: &str) -> Option<String> {
    // Borrowed raw values point into `text`, so their offsets are exact.
    // Keys with escapes cannot be borrowed; those bodies are re-serialized.
    let splice = || {
        let members: HashMap<&str, &serde_json::value::RawValue> =
            serde_json::from_str(text).ok()?;
        let raw = members.get("id")?.get();
        let start = (raw.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
        let end = start + raw.len();
        (text.get(start..end) == Some(raw))
            .then(|| format!("{}{id}{}", &text[..start], &text[end..]))
    };
    splice().or_else(|| {
        let mut value: Value = serde_json::from_str(text).ok()?;
        let object = value.as_object_mut()?;
        object.get("id")?;
        object.insert("id".into(), serde_json::from_str(id).ok()?);
        Some(value.to_string())
    })
}

/// The stateless side of one configured server.
pub struct Lane {
    server: String,
    recorder: Mutex<Recorder>,
    recording: Arc<dyn RecordSink>,
    next_id: AtomicU64,
    upstream: LaneUpstream,
}

enum LaneUpstream {
    Stdio(Box<StdioLane>),
    Remote(Arc<RemoteServer>),
}

struct StdioLane {
    config: McpServerConfig,
    /// Each tool's `x-mcp-header` arguments, learned from the `tools/list`
    /// answers that pass (bounded), to check `Mcp-Param-*` headers.
    param_headers: Mutex<HashMap<String, Vec<ParamHeader>>>,
    process: tokio::sync::Mutex<Option<Arc<LaneProcess>>>,
    /// Gateway id (JSON text) -> the POST waiting for its answer.
    waiting: Mutex<HashMap<String, Waiter>>,
}

struct LaneProcess {
    stdin: tokio::sync::Mutex<ChildStdin>,
    child: Mutex<Option<Child>>,
}

struct Waiter {
    /// The client's id (JSON text).
    client_id: String,
    stream: mpsc::UnboundedSender<Outgoing>,
    /// The request's progress token (JSON text), if any.
    token: Option<String>,
}

/// Prefix of the ids requests go upstream under.
const GATEWAY_ID_PREFIX: &str = "intentproof-";

/// The id a request goes upstream under: unique in the lane, and carrying
/// the client's id (JSON text) after a `:`, so the client's can be read
/// back from it alone ([`client_id_of`]).
fn gateway_id(n: u64, client_id: &str) -> String {
    Value::String(format!("{GATEWAY_ID_PREFIX}{n}:{client_id}")).to_string()
}

/// The client's id (JSON text) in a gateway id (the id as a JSON value).
fn client_id_of(id: &Value) -> Option<&str> {
    let (_, client) = id
        .as_str()?
        .strip_prefix(GATEWAY_ID_PREFIX)?
        .split_once(':')?;
    Some(client)
}

/// Events as the client would have them: ids the client sent (the
/// `jsonrpc.id` attribute, each multi-round round's `requestId`), and no
/// session attribute (the revision has no sessions).
fn as_the_client_sent(events: &mut [ExecutionEvent]) {
    for event in events {
        event.attributes.remove("mcp.session_id");
        let client = match event.attributes.get("jsonrpc.id") {
            Some(AttributeValue::String(text)) => serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|id| client_id_of(&id).map(str::to_owned)),
            _ => None,
        };
        if let Some(client) = client {
            event
                .attributes
                .insert("jsonrpc.id".into(), AttributeValue::String(client));
        }
        let rounds = event
            .output
            .as_mut()
            .and_then(|o| o.get_mut("rounds"))
            .and_then(Value::as_array_mut);
        for round in rounds.into_iter().flatten() {
            let client = round
                .get("requestId")
                .and_then(client_id_of)
                .and_then(|c| serde_json::from_str::<Value>(c).ok());
            if let (Some(client), Some(object)) = (client, round.as_object_mut()) {
                object.insert("requestId".into(), client);
            }
        }
    }
}

/// A call held for approval whose request may end before it is decided
/// (the client went away): then it is refused, so it stays neither held
/// nor counted.
struct Unanswered<'a> {
    lane: &'a Lane,
    id: Option<Value>,
}

impl Unanswered<'_> {
    /// Decided: nothing to do on drop.
    fn answered(mut self) -> Self {
        self.id = None;
        self
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        let outcome = intentproof_policy::guard::approval::Outcome::Unavailable {
            reason: "the client's request ended while the call waited".into(),
            at: intentproof_core::format_rfc3339_millis(std::time::SystemTime::now()),
        };
        let mut events = Vec::new();
        let _ = lock(&self.lane.recorder).resolve_hold(&id, &outcome, &mut events);
        self.lane.record(events);
    }
}

impl Lane {
    /// The stateless lane of `config` (remote when `remote` is set).
    pub(crate) fn new(
        config: &McpServerConfig,
        recorder: RecorderConfig,
        remote: Option<Arc<RemoteServer>>,
        recording: Arc<dyn RecordSink>,
    ) -> Lane {
        let fallback = format!(
            "stateless-{}-{}",
            config.name,
            intentproof_core::new_event_id()
        );
        Lane {
            server: config.name.clone(),
            recorder: Mutex::new(Recorder::new(recorder, fallback)),
            recording,
            next_id: AtomicU64::new(1),
            upstream: match remote {
                Some(remote) => LaneUpstream::Remote(remote),
                None => LaneUpstream::Stdio(Box::new(StdioLane {
                    config: config.clone(),
                    param_headers: Mutex::new(HashMap::new()),
                    process: tokio::sync::Mutex::new(None),
                    waiting: Mutex::new(HashMap::new()),
                })),
            },
        }
    }

    fn gateway_id(&self, client_id: &str) -> String {
        gateway_id(self.next_id.fetch_add(1, Ordering::Relaxed), client_id)
    }

    fn record(&self, mut events: Vec<ExecutionEvent>) {
        if events.is_empty() {
            return;
        }
        as_the_client_sent(&mut events);
        self.recording.record(events);
    }

    /// Gives up on calls that waited `timeout` for their client's next
    /// round (recorded as incomplete).
    pub fn expire_idle(&self, now: std::time::Instant, timeout: std::time::Duration) {
        let mut events = Vec::new();
        lock(&self.recorder).expire_idle(now, timeout, &mut events);
        self.record(events);
    }

    /// Stops the lane's process (daemon shutdown).
    pub fn stop(&self) {
        if let LaneUpstream::Stdio(stdio) = &self.upstream
            && let Ok(mut process) = stdio.process.try_lock()
            && let Some(process) = process.take()
            && let Some(mut child) = lock(&process.child).take()
        {
            let _ = child.start_kill();
        }
    }

    /// One stateless POST.
    pub async fn post(self: &Arc<Self>, headers: HeaderMap, body: Bytes) -> Response {
        match &self.upstream {
            LaneUpstream::Remote(remote) => self.post_remote(remote, headers, body).await,
            LaneUpstream::Stdio(stdio) => self.post_stdio(stdio, headers, body).await,
        }
    }

    /// Observes a request under a gateway id: `Some(reply)` when the
    /// gateway answers it itself (the plan tool, a refusal), `None` to
    /// forward it. A call held for approval waits here for the decision.
    async fn observe_request(&self, message: &Value, gateway_id: &str) -> Option<Value> {
        let mut seen = message.clone();
        if let (Some(object), Ok(id)) = (seen.as_object_mut(), serde_json::from_str(gateway_id)) {
            object.insert("id".into(), id);
        }
        let mut events = Vec::new();
        let (verdict, approver) = {
            let mut recorder = lock(&self.recorder);
            (recorder.on_client(&seen, &mut events), recorder.approver())
        };
        self.record(std::mem::take(&mut events));
        let verdict = match verdict {
            ClientVerdict::Hold(held) => {
                let waiting = Unanswered {
                    lane: self,
                    id: Some(held.id.clone()),
                };
                let outcome = approver.ask(held.request.clone()).await;
                drop(waiting.answered());
                let verdict = lock(&self.recorder).resolve_hold(&held.id, &outcome, &mut events);
                self.record(events);
                // No longer held (ended meanwhile): never forwarded.
                verdict.unwrap_or_else(|| {
                    ClientVerdict::Reply(serde_json::json!({
                        "jsonrpc": "2.0", "id": held.id,
                        "error": {"code": intentproof_policy::guard::REFUSED_CODE,
                                  "message": "the call ended while it waited for approval; it was not made"},
                    }))
                })
            }
            other => other,
        };
        match verdict {
            ClientVerdict::Reply(reply) => Some(reply),
            _ => None,
        }
    }

    /// Observes an upstream message answering `gateway_id`; returns the
    /// gateway's replacement for it (the plan tool added to a listing).
    fn observe_answer(&self, message: &Value, gateway_id: &str) -> Option<Value> {
        let mut seen = message.clone();
        if let (Some(object), Ok(id)) = (seen.as_object_mut(), serde_json::from_str(gateway_id))
            && object.contains_key("id")
            && !object.contains_key("method")
        {
            object.insert("id".into(), id);
        }
        let mut events = Vec::new();
        let replaced = lock(&self.recorder).on_server(&seen, &mut events);
        self.record(events);
        replaced
    }

    async fn post_remote(
        self: &Arc<Self>,
        remote: &Arc<RemoteServer>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let message: Option<Value> = serde_json::from_slice(&body).ok();
        let request = message
            .as_ref()
            .filter(|m| m.get("method").is_some() && m.get("id").is_some());
        let client_id = request
            .and_then(|m| m.get("id"))
            .map(Value::to_string)
            .unwrap_or_default();
        let gateway_id = self.gateway_id(&client_id);
        if let Some(request) = request
            && let Some(reply) = self.observe_request(request, &gateway_id).await
        {
            return own_reply(&reply, &client_id);
        }
        let mut upstream = remote.request(reqwest::Method::POST, None);
        for (name, value) in &headers {
            let lower = name.as_str();
            if PASSED_ON.contains(&lower) || lower.starts_with("mcp-param-") {
                upstream = upstream.header(name, value);
            }
        }
        let answer = remote.send(upstream.body(body)).await;
        let response = match answer {
            Ok(response) => response,
            Err(reason) => {
                if request.is_some() {
                    let failed = json!({"jsonrpc": "2.0", "id": Value::Null, "error": {"code": -32603, "message": reason}});
                    let _ = self.observe_answer(&failed, &gateway_id);
                }
                let id = serde_json::from_str(&client_id).unwrap_or(Value::Null);
                return rpc_error(StatusCode::BAD_GATEWAY, &id, -32603, &reason);
            }
        };
        let status = response.status();
        let mut out = HeaderMap::new();
        for name in PASSED_BACK {
            for value in response.headers().get_all(*name) {
                out.append(HeaderName::from_static(name), value.clone());
            }
        }
        let sse = out
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        // A first `tools/list` page gains the plan tool: its answer is
        // read whole (bounded) so it can be changed; any other answer
        // streams through as it arrives, read along for the record.
        let lists_tools = request.is_some_and(|m| {
            m.get("method").and_then(Value::as_str) == Some("tools/list")
                && m.pointer("/params/cursor").is_none()
        });
        let this = LaneAnswer {
            lane: self,
            gateway_id,
            client_id,
        };
        if lists_tools || !sse {
            let body = match read_bounded(response).await {
                Ok(body) => body,
                Err(reason) => {
                    let id = serde_json::from_str(&this.client_id).unwrap_or(Value::Null);
                    return rpc_error(StatusCode::BAD_GATEWAY, &id, -32603, &reason);
                }
            };
            // A listing whose stream holds nothing but its answer goes back
            // as one JSON body when the client takes JSON (every MCP client
            // must): rmcp 3.11's client caches a 2026 listing's
            // `x-mcp-header` positions only from an answer it reads off a
            // live stream or a JSON body; one that arrives in the same read
            // as the stream's end can miss the cache (a race in its worker
            // loop), and the next `tools/call` then goes out without its
            // `Mcp-Param-*` headers. A JSON body has no such race.
            let alone = (sse && lists_tools && accepts_json(&headers))
                .then(|| sse_single_message(&body))
                .flatten();
            let body = match (request, alone) {
                (None, _) => body,
                (Some(_), Some(text)) => {
                    out.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    this.rewrite_json(text.into_bytes())
                }
                (Some(_), None) if sse => this.rewrite_sse(&body),
                (Some(_), None) => this.rewrite_json(body),
            };
            let mut answer = Response::new(Body::from(body));
            *answer.status_mut() = status;
            *answer.headers_mut() = out;
            return answer;
        }
        // Streamed: chunks pass on unchanged; a parser beside them feeds
        // the recorder each message.
        let lane_answer = Arc::new(Mutex::new((SseParser::default(), this.owned())));
        let chunks = response.bytes_stream().map(move |chunk| {
            if let Ok(bytes) = &chunk {
                let mut guard = lock(&lane_answer);
                let (parser, answer) = &mut *guard;
                let mut messages = Vec::new();
                if parser.feed(bytes, &mut messages).is_ok() {
                    for text in messages {
                        answer.observe(&text);
                    }
                }
            }
            chunk
        });
        let mut answer = Response::new(Body::from_stream(chunks));
        *answer.status_mut() = status;
        *answer.headers_mut() = out;
        answer
    }

    async fn post_stdio(
        self: &Arc<Self>,
        stdio: &StdioLane,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let accepts_sse = accepts(&headers, "text/event-stream");
        let accepts_json = accepts_json(&headers);
        let message: Value = match serde_json::from_slice(&body) {
            Ok(message) => message,
            Err(_) => {
                return rpc_error(StatusCode::BAD_REQUEST, &Value::Null, -32700, "Parse error");
            }
        };
        let Some(object) = message.as_object() else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                -32600,
                "Invalid Request: MCP 2026-07-28 has no batches; send one JSON-RPC request per POST",
            );
        };
        let Some(method) = object.get("method").and_then(Value::as_str) else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                -32600,
                "Invalid Request: a POST carries a JSON-RPC request or notification",
            );
        };
        let Some(client_id) = object.get("id") else {
            // Notifications have no answer and nothing to go to upstream.
            return StatusCode::ACCEPTED.into_response();
        };
        let client_id = client_id.clone();
        if REMOVED_METHODS.contains(&method) {
            return rpc_error_with(
                StatusCode::NOT_FOUND,
                &client_id,
                -32601,
                "Method not found",
                Some(&Value::from(method)),
            );
        }
        if !accepts_json && !accepts_sse {
            return rpc_error(
                StatusCode::NOT_ACCEPTABLE,
                &client_id,
                -32600,
                "Not Acceptable: the client must accept application/json or text/event-stream",
            );
        }
        if let Err((code, why)) = check_request(&headers, method, object) {
            return rpc_error(StatusCode::BAD_REQUEST, &client_id, code, &why);
        }
        if method == "tools/call" {
            let params = object.get("params");
            let tool = params.and_then(|p| p.get("name")).and_then(Value::as_str);
            let known = tool.and_then(|t| lock(&stdio.param_headers).get(t).cloned());
            if let Some(positions) = known {
                let empty = serde_json::Map::new();
                let arguments = params
                    .and_then(|p| p.get("arguments"))
                    .and_then(Value::as_object)
                    .unwrap_or(&empty);
                if let Err(why) = check_param_headers(&headers, arguments, &positions) {
                    return rpc_error(StatusCode::BAD_REQUEST, &client_id, -32020, &why);
                }
            }
        }
        let client_text = client_id.to_string();
        let gateway_id = self.gateway_id(&client_text);
        if let Some(reply) = self.observe_request(&message, &gateway_id).await {
            return own_reply(&reply, &client_text);
        }
        let raw = one_line(&String::from_utf8_lossy(&body));
        let Some(line) = splice_id(&raw, &gateway_id) else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &client_id,
                -32600,
                "Invalid Request: the gateway cannot read this request's top-level `id`; send one JSON-RPC request object per POST",
            );
        };
        let (stream, mut receiver) = mpsc::unbounded_channel::<Outgoing>();
        lock(&stdio.waiting).insert(
            gateway_id.clone(),
            Waiter {
                client_id: client_text.clone(),
                stream,
                token: message
                    .pointer("/params/_meta/progressToken")
                    .map(Value::to_string),
            },
        );
        let sent = match self.process(stdio).await {
            Ok(process) => write_stdin(&process.stdin, &self.server, &[line]).await,
            Err(e) => Err(e),
        };
        if let Err(reason) = sent {
            lock(&stdio.waiting).remove(&gateway_id);
            let failed = json!({"jsonrpc": "2.0", "id": Value::Null, "error": {"code": -32603, "message": reason}});
            let _ = self.observe_answer(&failed, &gateway_id);
            return rpc_error(StatusCode::BAD_GATEWAY, &client_id, -32603, &reason);
        }
        // The answer alone, as plain JSON, when it comes first (most
        // calls); else an event stream (progress first), or JSON only once
        // the answer is in when the client takes no event stream.
        let mut first = None;
        if accepts_json {
            let wait = if accepts_sse {
                tokio::time::timeout(JSON_WAIT, receiver.recv()).await.ok()
            } else {
                loop {
                    match receiver.recv().await {
                        Some(message) if !message.response => continue,
                        other => break Some(other),
                    }
                }
            };
            match wait {
                Some(Some(message)) if message.response => {
                    return json_answer(message.text);
                }
                Some(message) => first = message,
                None => {}
            }
        }
        sse_stream(None, None, first, receiver)
    }

    /// The lane's process, started when there is none.
    async fn process(self: &Arc<Self>, stdio: &StdioLane) -> Result<Arc<LaneProcess>, String> {
        let mut slot = stdio.process.lock().await;
        if let Some(process) = slot.as_ref() {
            return Ok(Arc::clone(process));
        }
        let name = &self.server;
        let (program, args) = stdio
            .config
            .command
            .split_first()
            .ok_or("no command configured")?;
        let mut child = Command::new(program)
            .args(args)
            .envs(&stdio.config.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                let reason = format!("cannot start MCP server {name} (`{program}`): {e}");
                tracing::error!(server = %name, error = %e, "{reason}");
                reason
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("cannot capture the upstream's stdio".into());
        };
        let process = Arc::new(LaneProcess {
            stdin: tokio::sync::Mutex::new(stdin),
            child: Mutex::new(Some(child)),
        });
        *slot = Some(Arc::clone(&process));
        let lane = Arc::downgrade(self);
        let mine = Arc::downgrade(&process);
        tokio::spawn(async move {
            let mut lines = FramedRead::new(stdout, LineCodec::new(MAX_MESSAGE_BYTES));
            while let Some(line) = lines.next().await {
                let Some(lane) = lane.upgrade() else { return };
                let line = match line {
                    Ok(Line::Text(line)) => line,
                    // A bad line does not end the process: an answer's
                    // error takes its place (under the gateway id, set
                    // back like any answer's); a server request cannot be
                    // answered from here.
                    Ok(Line::Dropped(dropped)) => {
                        let error = match dropped.answer(Side::Upstream) {
                            Some(Answer::InPlace(error)) => Some(error.to_string()),
                            _ => None,
                        };
                        tracing::warn!(server = %lane.server, "{}", dropped.describe(Side::Upstream, error.is_some()));
                        let Some(error) = error else { continue };
                        error
                    }
                    Err(e) => {
                        tracing::error!(server = %lane.server, error = %e, "reading from the upstream failed");
                        continue;
                    }
                };
                let abandoned = lane.upstream_line(&line);
                if let (false, Some(process)) = (abandoned.is_empty(), mine.upgrade()) {
                    lane.cancel(&process, abandoned).await;
                }
            }
            if let Some(lane) = lane.upgrade() {
                lane.process_gone(&mine).await;
            }
        });
        Ok(process)
    }

    /// One line from the shared process. Returns the gateway ids of
    /// requests whose clients went away, to be cancelled upstream.
    fn upstream_line(&self, line: &str) -> Vec<String> {
        let LaneUpstream::Stdio(stdio) = &self.upstream else {
            return Vec::new();
        };
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            let shown: String = line.chars().take(200).collect();
            tracing::warn!(server = %self.server, line = %shown, "the upstream wrote a line to stdout that is not a JSON-RPC message; dropped");
            return Vec::new();
        };
        if message.get("method").is_none() {
            let Some(key) = message.get("id").map(Value::to_string) else {
                return Vec::new();
            };
            if let Some(tools) = message.pointer("/result/tools").and_then(Value::as_array) {
                learn_param_headers(&stdio.param_headers, tools);
            }
            let Some(waiter) = lock(&stdio.waiting).remove(&key) else {
                tracing::debug!(server = %self.server, id = %key, "an answer nobody waits for; dropped");
                return Vec::new();
            };
            let replaced = self.observe_answer(&message, &key);
            let text = match replaced {
                Some(mut changed) => {
                    if let (Some(object), Ok(id)) = (
                        changed.as_object_mut(),
                        serde_json::from_str(&waiter.client_id),
                    ) {
                        object.insert("id".into(), id);
                    }
                    changed.to_string()
                }
                None => splice_id(line, &waiter.client_id).unwrap_or_else(|| line.to_owned()),
            };
            let _ = waiter.stream.send(Outgoing::new(text, true));
            return Vec::new();
        }
        // A notification goes to the stream of the request it belongs to:
        // a subscription's (`subscriptions/listen`: tagged with the
        // request's id, which is the gateway's, so it is set back to the
        // client's) or a progress token's.
        let mut waiting = lock(&stdio.waiting);
        let subscription = message
            .pointer("/params/_meta/io.modelcontextprotocol~1subscriptionId")
            .map(Value::to_string);
        let (key, text) = if let Some(key) = subscription.filter(|k| waiting.contains_key(k)) {
            let client = waiting.get(&key).map(|w| w.client_id.clone());
            let text = client.map(|c| with_subscription_id(line, &message, &key, &c));
            (Some(key), text.unwrap_or_else(|| line.to_owned()))
        } else {
            let token = message
                .pointer("/params/progressToken")
                .map(Value::to_string);
            let key = token.and_then(|token| {
                waiting
                    .iter()
                    .find(|(_, w)| w.token.as_ref() == Some(&token))
                    .map(|(k, _)| k.clone())
            });
            (key, line.to_owned())
        };
        let Some(key) = key else {
            tracing::debug!(server = %self.server, "a server-initiated message on the stateless lane has no stream to go to; dropped");
            return Vec::new();
        };
        let gone = waiting
            .get(&key)
            .is_some_and(|waiter| waiter.stream.send(Outgoing::new(text, false)).is_err());
        if gone {
            // The client went away (it aborts the POST to cancel, in this
            // revision): its request is cancelled upstream.
            waiting.remove(&key);
            return vec![key];
        }
        Vec::new()
    }

    /// Cancels requests upstream whose clients went away (and records them
    /// as cancelled).
    async fn cancel(&self, process: &LaneProcess, gateway_ids: Vec<String>) {
        let mut lines = Vec::new();
        for id in gateway_ids {
            let Ok(id) = serde_json::from_str::<Value>(&id) else {
                continue;
            };
            let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id, "reason": "the client closed its HTTP request"}});
            let mut events = Vec::new();
            let _ = lock(&self.recorder).on_client(&cancel, &mut events);
            self.record(events);
            lines.push(cancel.to_string());
        }
        if let Err(e) = write_stdin(&process.stdin, &self.server, &lines).await {
            tracing::warn!(server = %self.server, error = %e, "cannot cancel a request upstream");
        }
    }

    /// The shared process exited: every request waiting on it fails, and
    /// the next request starts a new one.
    async fn process_gone(&self, gone: &std::sync::Weak<LaneProcess>) {
        let LaneUpstream::Stdio(stdio) = &self.upstream else {
            return;
        };
        {
            let mut slot = stdio.process.lock().await;
            if slot
                .as_ref()
                .is_some_and(|p| std::ptr::eq(Arc::as_ptr(p), gone.as_ptr()))
                && let Some(process) = slot.take()
            {
                let child = lock(&process.child).take();
                if let Some(mut child) = child {
                    let _ = child.kill().await;
                }
            }
        }
        let reason = format!(
            "upstream MCP server {} exited before answering; check its stderr",
            self.server
        );
        tracing::warn!(server = %self.server, "the stateless lane's upstream process exited");
        let waiters: Vec<(String, Waiter)> = lock(&stdio.waiting).drain().collect();
        for (key, waiter) in waiters {
            let failed = json!({"jsonrpc": "2.0", "id": serde_json::from_str::<Value>(&key).unwrap_or(Value::Null), "error": {"code": -32603, "message": reason}});
            let _ = self.observe_answer(&failed, &key);
            let id = serde_json::from_str::<Value>(&waiter.client_id).unwrap_or(Value::Null);
            let _ = waiter.stream.send(Outgoing::new(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": reason}})
                    .to_string(),
                true,
            ));
        }
    }
}

/// `line` (a notification tagged with subscription `key`, a gateway id as
/// JSON text) tagged with the client's id instead: the gateway id's JSON
/// text replaced where it stands, else the message re-serialized.
fn with_subscription_id(line: &str, message: &Value, key: &str, client_id: &str) -> String {
    if line.matches(key).count() == 1 {
        return line.replacen(key, client_id, 1);
    }
    let mut message = message.clone();
    if let (Some(slot), Ok(id)) = (
        message.pointer_mut("/params/_meta/io.modelcontextprotocol~1subscriptionId"),
        serde_json::from_str(client_id),
    ) {
        *slot = id;
    }
    message.to_string()
}

/// The gateway's own answer (the plan tool), under the client's id.
fn own_reply(reply: &Value, client_id: &str) -> Response {
    let mut reply = reply.clone();
    if let (Some(object), Ok(id)) = (reply.as_object_mut(), serde_json::from_str(client_id)) {
        object.insert("id".into(), id);
    }
    json_answer(reply.to_string())
}

/// One JSON-RPC answer as plain JSON, with the HTTP status a 2026 server
/// gives it.
fn json_answer(text: String) -> Response {
    // Only an error answer changes the status: most answers are results,
    // not parsed a second time.
    let status = if text.contains("\"error\"") {
        serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|m| m.pointer("/error/code").and_then(Value::as_i64))
            .map_or(StatusCode::OK, status_of_error)
    } else {
        StatusCode::OK
    };
    let mut response = json_response(None, text);
    *response.status_mut() = status;
    response
}

/// A header value, decoding the `=?base64?...?=` form clients use for
/// values that are not plain ASCII.
fn header_text(value: &HeaderValue) -> Option<String> {
    use base64::Engine as _;
    let text = value.to_str().ok()?.trim();
    if let Some(encoded) = text
        .strip_prefix("=?base64?")
        .and_then(|t| t.strip_suffix("?="))
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        // Only the canonical encoding (what encoders send) names a value.
        if base64::engine::general_purpose::STANDARD.encode(&bytes) != encoded {
            return None;
        }
        return String::from_utf8(bytes).ok();
    }
    Some(text.to_owned())
}

const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
const CLIENT_CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";

/// The checks a 2026-07-28 server makes before its protocol layer sees a
/// request, in its order: the routing headers appear once; `_meta`
/// carries the envelope (-32602); `MCP-Protocol-Version`, `Mcp-Method`
/// and `Mcp-Name` say what the body says (`HeaderMismatch`, -32020).
/// `Err` is (code, message), the messages PyPI `mcp` 2.3.0 sends. The
/// shared upstream process then only ever sees well-formed 2026 requests,
/// so the first one cannot put it in the wrong era.
fn check_request(
    headers: &HeaderMap,
    method: &str,
    object: &serde_json::Map<String, Value>,
) -> Result<(), (i64, String)> {
    for name in [METHOD_HEADER, NAME_HEADER, VERSION_HEADER] {
        if headers.get_all(name).iter().count() > 1 {
            return Err((-32020, format!("{name} header appears more than once")));
        }
    }
    let params = object.get("params");
    let Some(meta) = params
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object)
    else {
        return Err((
            -32602,
            format!(
                "params._meta must be an object carrying the required '{PROTOCOL_VERSION_KEY}' and '{CLIENT_CAPABILITIES_KEY}' envelope keys"
            ),
        ));
    };
    let missing: Vec<&str> = [PROTOCOL_VERSION_KEY, CLIENT_CAPABILITIES_KEY]
        .into_iter()
        .filter(|key| !meta.contains_key(*key))
        .collect();
    if !missing.is_empty() {
        return Err((
            -32602,
            format!(
                "params._meta is missing the required envelope key(s): {}",
                missing.join(", ")
            ),
        ));
    }
    let header = |name: &str| headers.get(name).and_then(header_text);
    if header(VERSION_HEADER).map(Value::String).as_ref() != meta.get(PROTOCOL_VERSION_KEY) {
        return Err((
            -32020,
            "mcp-protocol-version header does not match the request envelope's protocol version"
                .into(),
        ));
    }
    if header(METHOD_HEADER).as_deref() != Some(method) {
        return Err((
            -32020,
            "mcp-method header does not match the request body's method".into(),
        ));
    }
    let named = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(field) = named
        && let Some(body) = params.and_then(|p| p.get(field)).filter(|v| !v.is_null())
        && header(NAME_HEADER).map(Value::String).as_ref() != Some(body)
    {
        return Err((
            -32020,
            format!("mcp-name header does not match the request body's '{field}' parameter"),
        ));
    }
    Ok(())
}

/// One tool argument mirrored into a header (`x-mcp-header`).
#[derive(Debug, Clone, PartialEq)]
struct ParamHeader {
    /// Its `properties` path in the arguments.
    path: Vec<String>,
    /// The header is `Mcp-Param-<token>`.
    token: String,
    /// The schema's `type`, for the integer comparison.
    kind: Option<String>,
}

/// Most tools whose header arguments a lane remembers.
const MAX_KNOWN_TOOLS: usize = 10_000;
/// Deepest `properties` chain searched for `x-mcp-header`.
const MAX_SCHEMA_DEPTH: usize = 32;

/// The `x-mcp-header` arguments of an input schema: only along chains of
/// `properties` (an argument under any other keyword has no fixed place).
fn param_positions(schema: &Value) -> Vec<ParamHeader> {
    let mut found = Vec::new();
    let mut stack = vec![(Vec::new(), schema)];
    while let Some((path, node)) = stack.pop() {
        let Some(object) = node.as_object() else {
            continue;
        };
        if let (false, Some(token)) = (
            path.is_empty(),
            object.get("x-mcp-header").and_then(Value::as_str),
        ) {
            found.push(ParamHeader {
                path: path.clone(),
                token: token.to_owned(),
                kind: object
                    .get("type")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        }
        if path.len() >= MAX_SCHEMA_DEPTH {
            continue;
        }
        if let Some(properties) = object.get("properties").and_then(Value::as_object) {
            for (name, sub) in properties {
                let mut next = path.clone();
                next.push(name.clone());
                stack.push((next, sub));
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

fn learn_param_headers(known: &Mutex<HashMap<String, Vec<ParamHeader>>>, tools: &[Value]) {
    let mut known = lock(known);
    for tool in tools {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            continue;
        };
        let positions = tool
            .get("inputSchema")
            .map(param_positions)
            .unwrap_or_default();
        if known.len() >= MAX_KNOWN_TOOLS && !known.contains_key(name) {
            continue;
        }
        known.insert(name.to_owned(), positions);
    }
}

/// How a client mirrors an argument into a header; `None` when it cannot
/// (objects, arrays).
fn rendered(value: &Value) -> Option<String> {
    match value {
        Value::Bool(b) => Some(b.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether a decoded header value says what the argument says: integers
/// compare by value (`42` is `42.0`), anything else as the client renders.
fn param_matches(kind: Option<&str>, value: &Value, rendered: &str, decoded: &str) -> bool {
    let integral = value.as_i64().map(i128::from).or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 1e18)
            .map(|f| f as i128)
    });
    if let (Some("integer"), Some(number), false) = (kind, integral, value.is_boolean()) {
        let canonical = {
            let digits = decoded.strip_prefix('-').unwrap_or(decoded);
            let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
            !whole.is_empty()
                && whole.bytes().all(|b| b.is_ascii_digit())
                && !fraction.is_empty()
                && fraction.bytes().all(|b| b.is_ascii_digit())
        };
        if canonical {
            let (whole, fraction) = decoded.split_once('.').unwrap_or((decoded, ""));
            return fraction.bytes().all(|b| b == b'0')
                && whole.parse::<i128>().ok() == Some(number);
        }
    }
    decoded == rendered
}

/// The `Mcp-Param-*` rules of 2026-07-28 for one `tools/call`: each
/// mirrored argument and its header are present together and agree.
/// `Err` is the message PyPI `mcp` 2.3.0 sends (`HeaderMismatch`).
fn check_param_headers(
    headers: &HeaderMap,
    arguments: &serde_json::Map<String, Value>,
    positions: &[ParamHeader],
) -> Result<(), String> {
    for position in positions {
        let header = format!("Mcp-Param-{}", position.token);
        let values: Vec<&HeaderValue> = headers.get_all(header.as_str()).iter().collect();
        let raw = values.last().copied();
        let mut node = Some(arguments);
        let mut value = None;
        for (i, key) in position.path.iter().enumerate() {
            let next = node.and_then(|n| n.get(key));
            if i + 1 == position.path.len() {
                value = next.filter(|v| !v.is_null());
            } else {
                node = next.and_then(Value::as_object);
            }
        }
        let argument = format!("'{}'", position.path.join("."));
        if raw.is_some() && values.len() > 1 {
            return Err(format!("{header} header appears more than once"));
        }
        let Some(value) = value else {
            if raw.is_some() {
                return Err(format!(
                    "{header} header is present but the request body's {argument} argument is absent"
                ));
            }
            continue;
        };
        let Some(rendered) = rendered(value) else {
            if raw.is_some() {
                return Err(format!(
                    "{header} header does not match the request body's {argument} argument"
                ));
            }
            continue;
        };
        let Some(raw) = raw else {
            return Err(format!(
                "{header} header is missing but the request body's {argument} argument is present"
            ));
        };
        let Some(decoded) = header_text(raw) else {
            return Err(format!(
                "{header} header carries a malformed base64 sentinel value"
            ));
        };
        if !param_matches(position.kind.as_deref(), value, &rendered, &decoded) {
            return Err(format!(
                "{header} header does not match the request body's {argument} argument"
            ));
        }
    }
    Ok(())
}

/// Reads an upstream answer whole, bounded.
async fn read_bounded(response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| format!("the upstream's answer broke off: {e}"))?;
        if body.len() + chunk.len() > MAX_MESSAGE_BYTES {
            return Err(format!(
                "the upstream's answer is larger than {MAX_MESSAGE_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The data of an event stream's only message, if it holds exactly one,
/// read as the client reads it ([`SseParser`]: events without data, such
/// as a priming event with only an `id`, and events of another type are
/// not messages).
fn sse_single_message(body: &[u8]) -> Option<String> {
    let mut messages = Vec::new();
    SseParser::default().feed(body, &mut messages).ok()?;
    let message = messages.pop()?;
    messages.is_empty().then_some(message)
}

/// One client's request on a `url` lane, for reading its answer.
struct LaneAnswer<'a> {
    lane: &'a Arc<Lane>,
    gateway_id: String,
    client_id: String,
}

/// [`LaneAnswer`] owned by a streamed body.
struct OwnedAnswer {
    lane: Arc<Lane>,
    gateway_id: String,
    client_id: String,
}

impl LaneAnswer<'_> {
    fn owned(&self) -> OwnedAnswer {
        OwnedAnswer {
            lane: Arc::clone(self.lane),
            gateway_id: self.gateway_id.clone(),
            client_id: self.client_id.clone(),
        }
    }

    /// The replacement text for one answer message, if the gateway changes it.
    fn replace(&self, text: &str) -> Option<String> {
        let message: Value = serde_json::from_str(text).ok()?;
        let client_id = serde_json::from_str::<Value>(&self.client_id).ok();
        if message.get("method").is_some() || message.get("id") != client_id.as_ref() {
            return None;
        }
        let mut changed = self.lane.observe_answer(&message, &self.gateway_id)?;
        if let (Some(object), Ok(id)) = (
            changed.as_object_mut(),
            serde_json::from_str(&self.client_id),
        ) {
            object.insert("id".into(), id);
        }
        Some(changed.to_string())
    }

    fn rewrite_json(&self, body: Vec<u8>) -> Vec<u8> {
        match std::str::from_utf8(&body)
            .ok()
            .and_then(|t| self.replace(t))
        {
            Some(text) => text.into_bytes(),
            None => body,
        }
    }

    /// An event stream read whole: each event's data is observed; the one
    /// the gateway changes gets its new data, every other line as it was.
    fn rewrite_sse(&self, body: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(body);
        let mut out = String::with_capacity(text.len());
        for event in text.split_inclusive("\n\n") {
            let data: String = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect::<Vec<_>>()
                .join("\n");
            match (!data.is_empty()).then(|| self.replace(&data)).flatten() {
                Some(new) => {
                    let mut wrote = false;
                    for line in event.split_inclusive('\n') {
                        if line.starts_with("data:") {
                            if !wrote {
                                out.push_str("data: ");
                                out.push_str(&new);
                                out.push('\n');
                                wrote = true;
                            }
                        } else {
                            out.push_str(line);
                        }
                    }
                }
                None => out.push_str(event),
            }
        }
        out.into_bytes()
    }
}

impl OwnedAnswer {
    /// Observes one streamed message (the stream itself is not changed).
    fn observe(&mut self, text: &str) {
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if message.get("method").is_none()
            && message.get("id").map(Value::to_string).as_deref() == Some(self.client_id.as_str())
        {
            let _ = self.lane.observe_answer(&message, &self.gateway_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_with_one_message_is_that_message() {
        let primed = "id: 0\ndata:\n\nid: 1\nevent: message\ndata: {\"id\":1,\"result\":{}}\n\n";
        assert_eq!(
            sse_single_message(primed.as_bytes()).as_deref(),
            Some(r#"{"id":1,"result":{}}"#)
        );
        let crlf = "data: {\"id\":1,\r\ndata: \"result\":{}}\r\n\r\n";
        assert_eq!(
            sse_single_message(crlf.as_bytes()).as_deref(),
            Some("{\"id\":1,\n\"result\":{}}")
        );
        let two = "data: {\"method\":\"notifications/message\"}\n\ndata: {\"id\":1}\n\n";
        assert_eq!(sse_single_message(two.as_bytes()), None);
        assert_eq!(sse_single_message(b"id: 0\n\n"), None);
        // Another event type is not a message; an event cut off before its
        // blank line is never dispatched.
        let typed = "event: ping\ndata: x\n\ndata: {\"id\":1}\n\ndata: {\"id\":2}";
        assert_eq!(
            sse_single_message(typed.as_bytes()).as_deref(),
            Some(r#"{"id":1}"#)
        );
        assert_eq!(sse_single_message(b"data: \xff\n\n"), None);
    }

    #[test]
    fn an_id_is_spliced_into_the_original_bytes() {
        let text = r#"{ "jsonrpc":"2.0", "method":"tools/call","id" : 7 ,"params":{"id":1}}"#;
        assert_eq!(
            splice_id(text, r#""intentproof-1""#).as_deref(),
            Some(
                r#"{ "jsonrpc":"2.0", "method":"tools/call","id" : "intentproof-1" ,"params":{"id":1}}"#
            )
        );
        assert_eq!(
            splice_id(r#"{"id":"a\"b","result":{}}"#, "3").as_deref(),
            Some(r#"{"id":3,"result":{}}"#)
        );
        // An escaped key cannot be borrowed: re-serialized, still right.
        let escaped = splice_id(r#"{"i\u0064":1,"x":2}"#, "5").unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&escaped).unwrap(),
            json!({"id": 5, "x": 2})
        );
        assert_eq!(splice_id(r#"{"method":"x"}"#, "1"), None);
        assert_eq!(splice_id("[1]", "1"), None);
    }

    #[test]
    fn a_gateway_id_carries_the_clients_id_back() {
        let id: Value = serde_json::from_str(&gateway_id(7, r#""a:b""#)).unwrap();
        assert_eq!(id, json!("intentproof-7:\"a:b\""));
        assert_eq!(client_id_of(&id), Some(r#""a:b""#));
        assert_eq!(client_id_of(&json!("other-7:1")), None);
        assert_eq!(client_id_of(&json!(7)), None);
        let mut events = vec![
            ExecutionEvent::builder("i", "a")
                .attributes(
                    [
                        (
                            "jsonrpc.id".to_owned(),
                            AttributeValue::String(gateway_id(3, "12")),
                        ),
                        (
                            "mcp.session_id".to_owned(),
                            AttributeValue::String("s".into()),
                        ),
                    ]
                    .into(),
                )
                .output(json!({"rounds": [{"requestId": "intentproof-2:11"}, {"requestId": 5}]}))
                .build(),
        ];
        as_the_client_sent(&mut events);
        assert_eq!(
            events[0].attributes,
            [("jsonrpc.id".to_owned(), AttributeValue::String("12".into()))].into()
        );
        assert_eq!(
            events[0].output,
            Some(json!({"rounds": [{"requestId": 11}, {"requestId": 5}]}))
        );
    }

    #[test]
    fn stateless_is_told_by_the_version_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(stateless_version(&headers), None);
        headers.insert(VERSION_HEADER, HeaderValue::from_static("2025-11-25"));
        assert_eq!(stateless_version(&headers), None);
        headers.insert(VERSION_HEADER, HeaderValue::from_static("2026-07-28"));
        assert_eq!(stateless_version(&headers).as_deref(), Some("2026-07-28"));
    }

    #[test]
    fn headers_must_say_what_the_body_says() {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}});
        let object = body.as_object().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(VERSION_HEADER, HeaderValue::from_static("2026-07-28"));
        headers.insert(METHOD_HEADER, HeaderValue::from_static("tools/call"));
        headers.insert(NAME_HEADER, HeaderValue::from_static("echo"));
        assert_eq!(check_request(&headers, "tools/call", object), Ok(()));
        headers.insert(NAME_HEADER, HeaderValue::from_static("=?base64?ZWNobw==?="));
        assert_eq!(check_request(&headers, "tools/call", object), Ok(()));
        headers.insert(NAME_HEADER, HeaderValue::from_static("other"));
        assert_eq!(
            check_request(&headers, "tools/call", object).unwrap_err().1,
            "mcp-name header does not match the request body's 'name' parameter"
        );
        headers.insert(NAME_HEADER, HeaderValue::from_static("echo"));
        headers.insert(METHOD_HEADER, HeaderValue::from_static("tools/list"));
        assert_eq!(
            check_request(&headers, "tools/call", object).unwrap_err().1,
            "mcp-method header does not match the request body's method"
        );
        headers.insert(METHOD_HEADER, HeaderValue::from_static("tools/call"));
        headers.insert(VERSION_HEADER, HeaderValue::from_static("2027-01-01"));
        assert_eq!(
            check_request(&headers, "tools/call", object).unwrap_err().1,
            "mcp-protocol-version header does not match the request envelope's protocol version"
        );
        headers.insert(VERSION_HEADER, HeaderValue::from_static("2026-07-28"));
        headers.append(METHOD_HEADER, HeaderValue::from_static("tools/call"));
        assert_eq!(
            check_request(&headers, "tools/call", object).unwrap_err().1,
            "mcp-method header appears more than once"
        );
    }

    #[test]
    fn the_envelope_is_checked_before_the_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(VERSION_HEADER, HeaderValue::from_static("2026-07-28"));
        headers.insert(METHOD_HEADER, HeaderValue::from_static("tools/list"));
        let check = |body: Value| {
            check_request(&headers, "tools/list", body.as_object().unwrap())
                .map_err(|(code, why)| format!("{code} {why}"))
        };
        assert_eq!(
            check(json!({"method": "tools/list"})).unwrap_err(),
            "-32602 params._meta must be an object carrying the required 'io.modelcontextprotocol/protocolVersion' and 'io.modelcontextprotocol/clientCapabilities' envelope keys"
        );
        assert_eq!(
            check(json!({"params": {"_meta": {"io.modelcontextprotocol/clientInfo": {}}}}))
                .unwrap_err(),
            "-32602 params._meta is missing the required envelope key(s): io.modelcontextprotocol/protocolVersion, io.modelcontextprotocol/clientCapabilities"
        );
        assert_eq!(
            check(
                json!({"params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}})
            ),
            Ok(())
        );
        // A malformed or non-canonical base64 value names nothing.
        assert_eq!(
            header_text(&HeaderValue::from_static("=?base64?ZWNobx==?=")),
            None
        );
        assert_eq!(
            header_text(&HeaderValue::from_static("=?base64?ZWNobw==?=")).as_deref(),
            Some("echo")
        );
    }

    #[test]
    fn mirrored_arguments_and_their_headers_must_agree() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "n": {"type": "integer", "x-mcp-header": "N"},
            "nested": {"type": "object", "properties": {"flag": {"type": "boolean", "x-mcp-header": "Flag"}}},
            "other": {"anyOf": [{"x-mcp-header": "Never"}]}
        }});
        let positions = param_positions(&schema);
        let tokens: Vec<&str> = positions.iter().map(|p| p.token.as_str()).collect();
        assert_eq!(tokens, ["N", "Flag", "Region"]);
        let check = |pairs: &[(&'static str, &'static str)], arguments: Value| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(*name, HeaderValue::from_static(value));
            }
            check_param_headers(&headers, arguments.as_object().unwrap(), &positions)
        };
        assert_eq!(
            check(
                &[("mcp-param-region", "eu"), ("mcp-param-n", "42.0")],
                json!({"region": "eu", "n": 42})
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &[("mcp-param-flag", "true")],
                json!({"nested": {"flag": true}})
            ),
            Ok(())
        );
        assert_eq!(
            check(&[], json!({"region": "eu"})).unwrap_err(),
            "Mcp-Param-Region header is missing but the request body's 'region' argument is present"
        );
        assert_eq!(
            check(
                &[("mcp-param-region", "=?base64?SGVsbG8?=")],
                json!({"region": "Hello"})
            )
            .unwrap_err(),
            "Mcp-Param-Region header carries a malformed base64 sentinel value"
        );
        assert_eq!(
            check(&[("mcp-param-region", "us")], json!({"region": "eu"})).unwrap_err(),
            "Mcp-Param-Region header does not match the request body's 'region' argument"
        );
        assert_eq!(
            check(&[("mcp-param-n", "7")], json!({})).unwrap_err(),
            "Mcp-Param-N header is present but the request body's 'n' argument is absent"
        );
        assert_eq!(
            check(&[("mcp-param-n", "42.5")], json!({"n": 42})).unwrap_err(),
            "Mcp-Param-N header does not match the request body's 'n' argument"
        );
    }

    #[test]
    fn error_codes_map_to_the_statuses_a_2026_server_sends() {
        assert_eq!(status_of_error(-32601), StatusCode::NOT_FOUND);
        for code in [-32700, -32600, -32602, -32020, -32021, -32022] {
            assert_eq!(status_of_error(code), StatusCode::BAD_REQUEST);
        }
        assert_eq!(status_of_error(-32603), StatusCode::OK);
        assert_eq!(status_of_error(-32042), StatusCode::OK);
    }
}
