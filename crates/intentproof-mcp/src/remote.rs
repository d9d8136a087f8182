//! Remote Streamable HTTP upstreams of the HTTP gateway
//! (`[[mcp.servers]] url = "https://..."`): the client side of the
//! Streamable HTTP transport, as a pipe of JSON-RPC messages.
//!
//! # What it does
//!
//! - **One upstream MCP session per agent session.** Each agent session at
//!   `/mcp/<name>` gets its own [`RemoteUpstream`]; the upstream's
//!   `Mcp-Session-Id` (from its answer to `initialize`) is kept there and
//!   sent on every later request. The agent never sees it: it only holds
//!   the gateway's own session id.
//! - **Messages from the agent** are POSTed as they came (one message, or
//!   several as a JSON array), with `Accept: application/json,
//!   text/event-stream`, the configured `headers` (credentials) and, once
//!   the `initialize` result has named it, `MCP-Protocol-Version`.
//!   [`RemoteUpstream::post`] returns when the upstream's answer has
//!   started (status and headers), so messages reach the upstream in the
//!   order the agent sent them (a `notifications/cancelled` cannot overtake
//!   its request).
//! - **The upstream's answer** (`application/json`: one message or a batch;
//!   `text/event-stream`: any number of messages) is handed message by
//!   message to the relay's [`Deliver`] callback, exactly like a stdio
//!   upstream's stdout lines, so recording, the plan tool, progress,
//!   cancellation and server-to-client requests work the same.
//! - **The GET stream** for server-initiated messages is opened once the
//!   upstream has answered `initialize`; `405` means the upstream offers
//!   none, which is fine.
//! - **Failures answer the agent.** A request the upstream does not answer
//!   (unreachable, timeout, an HTTP error, a stream that ends or breaks
//!   first, a message over [`MAX_MESSAGE_BYTES`]) gets a JSON-RPC error
//!   (code -32603, the reason as message) through the same path, so a
//!   `tools/call` is recorded with status `error`. A JSON-RPC error body
//!   the upstream itself sent for one of the requests is passed on as is.
//!   A `404` on a request carrying the upstream session id means the
//!   upstream ended the session: the gateway session ends too
//!   ([`Incoming::Gone`]), and the agent's next request gets `404` and
//!   re-initializes, as the protocol says.
//! - **Ending**: the agent's `DELETE` sends `DELETE` upstream (a `405`
//!   answer is fine) and stops the session's streams.
//! - **Bounds**: connect timeout (`connect_timeout_ms`, default 10 s); each
//!   POST must deliver every response it owes within `timeout_ms` (default
//!   300 s); messages over [`MAX_MESSAGE_BYTES`]; redirects are never
//!   followed (a `3xx` is an error); environment proxies are not used (they
//!   would see the credentials).
//! - **Secrets**: header values are never logged or recorded; error
//!   messages name the server and its URL (which cannot carry credentials:
//!   the config refuses user info and queries in it).
//!
//! # What it does not do
//!
//! - Resumption only for a POST's answer: when the upstream closes it
//!   before answering, after giving an event id, the gateway resumes it
//!   (a GET with `Last-Event-ID`, after its `retry:`), up to
//!   10 times within `timeout_ms`; a stream with no event id still fails its
//!   unanswered requests. A GET stream the upstream closes is not reopened.
//! - No re-initialization behind the agent's back when the upstream loses
//!   its session: the agent is told (404) and starts over.
//! - The legacy HTTP+SSE transport (2024-11-05 `endpoint` events) is not
//!   supported; SSE lines must end with `\n` or `\r\n` (not a lone `\r`).
//! - The agent's own HTTP headers are not forwarded (its credentials for
//!   the gateway are not the upstream's).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::stdio::MAX_MESSAGE_BYTES;
use crate::config::{
    DEFAULT_MCP_CONNECT_TIMEOUT_MS, DEFAULT_MCP_TIMEOUT_MS, McpServerConfig, check_header,
    check_url,
};
use intentproof_upstream::root_cause;

/// The session header (requests and the answer to `initialize`).
const SESSION_HEADER: &str = "mcp-session-id";
/// The negotiated protocol version header.
const VERSION_HEADER: &str = "mcp-protocol-version";
/// Longest upstream error body shown in an error message (characters).
const SHOWN_ERROR_CHARS: usize = 300;

/// What an upstream produces, for the relay.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// One JSON-RPC message (or batch) as one line of valid JSON text.
    Message(String),
    /// The upstream session is over (the reason); pending calls fail.
    Gone(String),
    /// The upstream answers these requests (ids as JSON text) with an event
    /// stream: the agent's answer is one too.
    Streaming(Vec<String>),
    /// The upstream closed the event stream of these requests (ids as JSON
    /// text) before answering them; it will be resumed, and the agent's
    /// stream is closed too so that it resumes.
    Detached(Vec<String>),
}

/// Where a session's upstream messages go.
pub(crate) type Deliver = Arc<dyn Fn(Incoming) + Send + Sync>;

/// One configured remote server: its URL, credentials and HTTP client (a
/// connection pool shared by its sessions).
pub(crate) struct RemoteServer {
    name: String,
    url: reqwest::Url,
    headers: HeaderMap,
    client: reqwest::Client,
    timeout: Duration,
}

impl RemoteServer {
    /// The server of a validated `[[mcp.servers]]` entry with a `url`.
    pub(crate) fn new(config: &McpServerConfig) -> Result<Arc<RemoteServer>, String> {
        let at = |e: String| format!("mcp server {:?}: {e}", config.name);
        let text = config.url.as_deref().ok_or_else(|| at("no `url`".into()))?;
        check_url(text).map_err(|e| at(format!("`url` {e}")))?;
        let url = reqwest::Url::parse(text).map_err(|e| at(format!("`url` {text:?}: {e}")))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let (name, value) =
                check_header(name, value).map_err(|e| at(format!("`headers` {e}")))?;
            headers.append(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Environment proxies would see the credentials.
            .no_proxy()
            .connect_timeout(Duration::from_millis(
                config
                    .connect_timeout_ms
                    .unwrap_or(DEFAULT_MCP_CONNECT_TIMEOUT_MS),
            ))
            .tcp_nodelay(true);
        if let Some(path) = &config.ca_file {
            builder = intentproof_upstream::trust_ca_file(builder, path).map_err(at)?;
        }
        let client = builder
            .build()
            .map_err(|e| at(format!("cannot build its HTTP client: {e}")))?;
        Ok(Arc::new(RemoteServer {
            name: config.name.clone(),
            url,
            headers,
            client,
            timeout: Duration::from_millis(config.timeout_ms.unwrap_or(DEFAULT_MCP_TIMEOUT_MS)),
        }))
    }

    fn describe(&self) -> String {
        format!("upstream MCP server {:?} ({})", self.name, self.url)
    }

    /// A request to the server with its credentials, and the upstream
    /// `session` when there is one.
    pub(crate) fn request(
        &self,
        method: reqwest::Method,
        session: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .request(method, self.url.clone())
            .headers(self.headers.clone());
        if let Some(id) = session {
            request = request.header(SESSION_HEADER, id);
        }
        request
    }

    /// Sends `request`; `Err` is the reason, naming the server, when no
    /// answer started within `timeout_ms`.
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, String> {
        match tokio::time::timeout(self.timeout, request.send()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.is_connect() => Err(format!(
                "{} is unreachable: {}",
                self.describe(),
                root_cause(&e)
            )),
            Ok(Err(e)) if e.is_timeout() => Err(format!(
                "{} did not accept a connection in time",
                self.describe()
            )),
            Ok(Err(e)) => Err(format!("{} failed: {}", self.describe(), root_cause(&e))),
            Err(_) => Err(format!(
                "{} did not answer within {} ms",
                self.describe(),
                self.timeout.as_millis()
            )),
        }
    }
}

#[derive(Default)]
struct State {
    /// The upstream's session id, once `initialize` was answered.
    session_id: Option<String>,
    /// The negotiated protocol version.
    protocol_version: Option<String>,
    /// Background reads (POST answers, the GET stream).
    tasks: Vec<tokio::task::AbortHandle>,
    closed: bool,
}

struct Inner {
    server: Arc<RemoteServer>,
    deliver: Deliver,
    state: Mutex<State>,
}

/// The upstream side of one agent session.
pub(crate) struct RemoteUpstream {
    inner: Arc<Inner>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A JSON-RPC error response to request `key` (an id as JSON text).
fn error_reply(key: &str, reason: &str) -> String {
    let id: Value = serde_json::from_str(key).unwrap_or(Value::Null);
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": reason}}).to_string()
}

/// JSON text on one line: line breaks in JSON text are whitespace (inside
/// strings they are always escaped), and the relay frames by line.
pub(crate) fn one_line(text: &str) -> String {
    if text.contains(['\n', '\r']) {
        text.replace(['\n', '\r'], " ")
    } else {
        text.to_owned()
    }
}

/// One POST in flight: which requests it carries, which are answered.
struct Exchange {
    inner: Arc<Inner>,
    requests: Vec<String>,
    answered: HashSet<String>,
    /// The id of the `initialize` request in this POST, if any.
    initialize: Option<String>,
}

impl Exchange {
    /// Hands one upstream message (JSON text) to the relay, noting the
    /// responses it carries and the negotiated protocol version.
    fn deliver(&mut self, text: &str) {
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            let shown: String = text.chars().take(200).collect();
            tracing::warn!(server = %self.inner.server.name, message = %shown, "the upstream sent something that is not a JSON-RPC message; dropped");
            return;
        };
        let items = match &message {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        for item in items {
            if item.get("method").is_some() {
                continue;
            }
            let Some(key) = item.get("id").map(Value::to_string) else {
                continue;
            };
            if self.initialize.as_deref() == Some(key.as_str())
                && let Some(version) = item
                    .pointer("/result/protocolVersion")
                    .and_then(Value::as_str)
            {
                lock(&self.inner.state).protocol_version = Some(version.to_owned());
                open_get_stream(&self.inner);
            }
            self.answered.insert(key);
        }
        (self.inner.deliver)(Incoming::Message(one_line(text)));
    }

    /// Every request of this POST still unanswered gets a JSON-RPC error.
    fn fail_unanswered(&mut self, reason: &str) {
        let unanswered: Vec<String> = self
            .requests
            .iter()
            .filter(|k| !self.answered.contains(*k))
            .cloned()
            .collect();
        for key in unanswered {
            self.answered.insert(key.clone());
            (self.inner.deliver)(Incoming::Message(error_reply(&key, reason)));
        }
    }

    fn unanswered(&self) -> bool {
        self.requests.iter().any(|k| !self.answered.contains(k))
    }

    fn unanswered_keys(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|k| !self.answered.contains(*k))
            .cloned()
            .collect()
    }
}

/// Opens the GET stream for server-initiated messages (once).
fn open_get_stream(inner: &Arc<Inner>) {
    let mut state = lock(&inner.state);
    if state.closed {
        return;
    }
    let worker = Arc::clone(inner);
    let task = tokio::spawn(async move {
        let server = &worker.server;
        let request = worker
            .request(reqwest::Method::GET)
            .header(header::ACCEPT, "text/event-stream");
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(server = %server.name, error = %root_cause(&e), "cannot open the upstream's GET stream; server-initiated messages outside calls will not arrive");
                return;
            }
        };
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            tracing::debug!(server = %server.name, "the upstream offers no GET stream (405)");
            return;
        }
        if !status.is_success() || !is_sse(response.headers()) {
            tracing::warn!(server = %server.name, %status, "the upstream refused the GET stream; server-initiated messages outside calls will not arrive");
            return;
        }
        let mut exchange = Exchange {
            inner: Arc::clone(&worker),
            requests: Vec::new(),
            answered: HashSet::new(),
            initialize: None,
        };
        let ended = read_sse(
            response.bytes_stream(),
            None,
            &mut exchange,
            &mut SseParser::default(),
        )
        .await;
        if let Err(e) = ended {
            tracing::warn!(server = %server.name, error = %e, "the upstream's GET stream failed");
        } else {
            tracing::debug!(server = %server.name, "the upstream closed its GET stream");
        }
    });
    state.tasks.retain(|t| !t.is_finished());
    state.tasks.push(task.abort_handle());
}

fn is_sse(headers: &HeaderMap) -> bool {
    content_type(headers).as_deref() == Some("text/event-stream")
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

impl Inner {
    /// A request to the upstream with its credentials, session and version.
    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        self.request_as(method, None)
    }

    /// [`Inner::request`] with the agent's own `MCP-Protocol-Version`
    /// when it sent one (servers frame their answers by it), else the
    /// negotiated one.
    fn request_as(
        &self,
        method: reqwest::Method,
        version: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let state = lock(&self.state);
        let mut request = self.server.request(method, state.session_id.as_deref());
        if let Some(version) = version.or(state.protocol_version.as_deref()) {
            request = request.header(VERSION_HEADER, version);
        }
        request
    }
}

impl RemoteUpstream {
    /// The upstream side of a new agent session; what the upstream sends
    /// goes to `deliver`.
    pub(crate) fn new(server: Arc<RemoteServer>, deliver: Deliver) -> Self {
        RemoteUpstream {
            inner: Arc::new(Inner {
                server,
                deliver,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// POSTs `lines` (JSON-RPC messages from the agent) upstream. `requests`
    /// are the ids (as JSON text) of the requests among them; `initialize`
    /// the id of an `initialize` request. Returns once the upstream's
    /// answer has started; the messages it carries then go to the
    /// [`Deliver`] callback.
    ///
    /// When the POST fails, every request in it is answered with a
    /// JSON-RPC error through the callback and `Ok` is returned; `Err`
    /// (the reason) only when there were no requests to answer.
    pub(crate) async fn post(
        &self,
        lines: &[String],
        requests: Vec<String>,
        initialize: Option<String>,
        version: Option<&str>,
    ) -> Result<(), String> {
        if lines.is_empty() {
            return Ok(());
        }
        let body = match lines {
            [one] => one.clone(),
            many => format!("[{}]", many.join(",")),
        };
        let inner = &self.inner;
        let server = &inner.server;
        let mut exchange = Exchange {
            inner: Arc::clone(inner),
            requests,
            answered: HashSet::new(),
            initialize,
        };
        let fail = |exchange: &mut Exchange, reason: String| {
            if exchange.requests.is_empty() {
                return Err(reason);
            }
            exchange.fail_unanswered(&reason);
            if exchange.initialize.is_some() && lock(&inner.state).session_id.is_none() {
                // No upstream session came of it: the agent's is void too.
                (inner.deliver)(Incoming::Gone(reason));
            }
            Ok(())
        };
        let had_session = lock(&inner.state).session_id.is_some();
        let deadline = Instant::now() + server.timeout;
        let request = inner
            .request_as(reqwest::Method::POST, version)
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        let response = match tokio::time::timeout_at(deadline, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                let why = if e.is_connect() {
                    format!("{} is unreachable: {}", server.describe(), root_cause(&e))
                } else if e.is_timeout() {
                    format!("{} did not accept a connection in time", server.describe())
                } else {
                    format!("{} failed: {}", server.describe(), root_cause(&e))
                };
                return fail(&mut exchange, why);
            }
            Err(_) => {
                return fail(
                    &mut exchange,
                    format!(
                        "{} did not answer within {} ms",
                        server.describe(),
                        server.timeout.as_millis()
                    ),
                );
            }
        };
        let status = response.status();
        if !status.is_success() {
            let gone = status == StatusCode::NOT_FOUND && had_session;
            let detail = read_error_body(response, deadline, &mut exchange).await;
            let reason = if gone {
                format!(
                    "{} ended the session (HTTP 404){detail}; initialize a new session",
                    server.describe()
                )
            } else if status.is_redirection() {
                format!(
                    "{} answered HTTP {status} (redirects are not followed; configure the final URL)",
                    server.describe()
                )
            } else {
                format!("{} answered HTTP {status}{detail}", server.describe())
            };
            tracing::warn!(server = %server.name, %status, "the upstream refused a message");
            let answered = fail(&mut exchange, reason.clone());
            if gone {
                (inner.deliver)(Incoming::Gone(reason));
            }
            return answered;
        }
        if exchange.initialize.is_some()
            && let Some(id) = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
        {
            lock(&inner.state).session_id = Some(id.to_owned());
        }
        if is_sse(response.headers()) && !exchange.requests.is_empty() {
            // The agent's stream becomes an event stream too, as the
            // upstream framed its answer.
            (inner.deliver)(Incoming::Streaming(exchange.requests.clone()));
        }
        let mut state = lock(&inner.state);
        if state.closed {
            drop(state);
            return fail(
                &mut exchange,
                format!("{}: the session ended", server.describe()),
            );
        }
        let task = tokio::spawn(async move {
            let server = Arc::clone(&exchange.inner.server);
            let ended = match content_type(response.headers()).as_deref() {
                _ if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT => Ok(()),
                Some("text/event-stream") => {
                    read_resumable_sse(response, deadline, &mut exchange).await
                }
                Some("application/json") => {
                    read_json(response.bytes_stream(), deadline, &mut exchange).await
                }
                other => Err(format!(
                    "answered with content type {:?}, not application/json or text/event-stream",
                    other.unwrap_or("none")
                )),
            };
            if exchange.unanswered() {
                let reason = match ended {
                    Ok(()) => format!("{} ended its answer without responding", server.describe()),
                    Err(e) => format!("{}: {e}", server.describe()),
                };
                exchange.fail_unanswered(&reason);
            } else if let Err(e) = ended {
                tracing::warn!(server = %server.name, error = %e, "an upstream response stream failed");
            }
        });
        state.tasks.retain(|t| !t.is_finished());
        state.tasks.push(task.abort_handle());
        Ok(())
    }

    /// Ends the upstream session: stops its streams and sends `DELETE`
    /// (bounded by the connect and request timeouts; failures are logged).
    pub(crate) async fn close(&self) {
        close(Arc::clone(&self.inner)).await;
    }

    /// [`RemoteUpstream::close`] without waiting (daemon shutdown).
    pub(crate) fn stop(&self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(close(Arc::clone(&self.inner)));
        }
    }
}

async fn close(inner: Arc<Inner>) {
    let has_session = {
        let mut state = lock(&inner.state);
        state.closed = true;
        for task in state.tasks.drain(..) {
            task.abort();
        }
        state.session_id.is_some()
    };
    if !has_session {
        return;
    }
    let server = &inner.server;
    let request = inner.request(reqwest::Method::DELETE);
    match tokio::time::timeout(server.timeout, request.send()).await {
        // 405: the upstream does not let clients end sessions; 404: it
        // already ended this one.
        Ok(Ok(response))
            if response.status().is_success()
                || response.status() == StatusCode::METHOD_NOT_ALLOWED
                || response.status() == StatusCode::NOT_FOUND => {}
        Ok(Ok(response)) => {
            tracing::warn!(server = %server.name, status = %response.status(), "the upstream refused to end the session");
        }
        Ok(Err(e)) => {
            tracing::warn!(server = %server.name, error = %root_cause(&e), "cannot end the upstream session");
        }
        Err(_) => {
            tracing::warn!(server = %server.name, "the upstream did not answer DELETE in time");
        }
    }
}

/// Reads an error answer's body (bounded) for the message; a JSON-RPC
/// error response to one of the requests is delivered as is.
async fn read_error_body(
    response: reqwest::Response,
    deadline: Instant,
    exchange: &mut Exchange,
) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while body.len() < 64 * 1024 {
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Ok(Some(Ok(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    if let Ok(message) = serde_json::from_str::<Value>(&text) {
        let key = message.get("id").map(Value::to_string);
        if message.get("error").is_some() && key.is_some_and(|k| exchange.requests.contains(&k)) {
            exchange.deliver(&text);
        }
        if let Some(shown) = message.pointer("/error/message").and_then(Value::as_str) {
            return format!(
                ": {}",
                shown.chars().take(SHOWN_ERROR_CHARS).collect::<String>()
            );
        }
    }
    let shown: String = text.trim().chars().take(SHOWN_ERROR_CHARS).collect();
    if shown.is_empty() {
        String::new()
    } else {
        format!(": {shown}")
    }
}

type ByteStream = dyn Stream<Item = reqwest::Result<Bytes>> + Send;

async fn next_chunk(
    chunks: &mut std::pin::Pin<Box<ByteStream>>,
    deadline: Option<Instant>,
) -> Result<Option<Bytes>, String> {
    let next = match deadline {
        Some(at) => tokio::time::timeout_at(at, chunks.next())
            .await
            .map_err(|_| "did not answer in time (timeout_ms)".to_owned())?,
        None => chunks.next().await,
    };
    match next {
        None => Ok(None),
        Some(Ok(chunk)) => Ok(Some(chunk)),
        Some(Err(e)) => Err(format!("the response broke off: {}", root_cause(&e))),
    }
}

fn too_large() -> String {
    format!("sent a message larger than {MAX_MESSAGE_BYTES} bytes")
}

/// An `application/json` answer: one message or a batch.
async fn read_json(
    chunks: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    deadline: Instant,
    exchange: &mut Exchange,
) -> Result<(), String> {
    let mut chunks: std::pin::Pin<Box<ByteStream>> = Box::pin(chunks);
    let mut body = Vec::new();
    while let Some(chunk) = next_chunk(&mut chunks, Some(deadline)).await? {
        if body.len() + chunk.len() > MAX_MESSAGE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body).map_err(|_| "answered with JSON that is not UTF-8")?;
    // A batch is handed over item by item, each with its own bytes; only
    // an array can be one, so a single message is not parsed for it.
    let batch = text
        .trim_start()
        .starts_with('[')
        .then(|| serde_json::from_str::<Vec<Box<serde_json::value::RawValue>>>(&text).ok())
        .flatten();
    match batch {
        Some(items) => {
            for item in items {
                exchange.deliver(item.get());
            }
        }
        None => exchange.deliver(&text),
    }
    Ok(())
}

/// A `text/event-stream` answer: each `message` event's data is one
/// message. Ends when the stream does, or (POST answers) once every
/// request is answered and the upstream closes it.
async fn read_sse(
    chunks: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    deadline: Option<Instant>,
    exchange: &mut Exchange,
    parser: &mut SseParser,
) -> Result<(), String> {
    let mut chunks: std::pin::Pin<Box<ByteStream>> = Box::pin(chunks);
    let mut messages = Vec::new();
    while let Some(chunk) = next_chunk(&mut chunks, deadline).await? {
        parser.feed(&chunk, &mut messages)?;
        for message in messages.drain(..) {
            exchange.deliver(&message);
        }
        if parser.resumed && !exchange.requests.is_empty() && !exchange.unanswered() {
            // A resumed stream may stay open: what was owed has come.
            break;
        }
    }
    Ok(())
}

/// Most times one POST's answer is resumed after the upstream closed its
/// stream early.
const MAX_RESUMES: usize = 10;

/// A POST's event stream, resumed as the protocol says when the upstream
/// closes it before answering: the agent's stream is closed too (it
/// resumes from the gateway with `Last-Event-ID`), and the gateway asks
/// the upstream for the rest with a GET carrying the last event id the
/// upstream gave, after the `retry:` it announced.
async fn read_resumable_sse(
    response: reqwest::Response,
    deadline: Instant,
    exchange: &mut Exchange,
) -> Result<(), String> {
    let mut parser = SseParser::default();
    let mut ended = read_sse(
        response.bytes_stream(),
        Some(deadline),
        exchange,
        &mut parser,
    )
    .await;
    let mut resumes = 0;
    while ended.is_ok() && exchange.unanswered() && resumes < MAX_RESUMES {
        let Some(last) = parser.last_id.clone() else {
            break;
        };
        resumes += 1;
        (exchange.inner.deliver)(Incoming::Detached(exchange.unanswered_keys()));
        let wait = Duration::from_millis(parser.retry.unwrap_or(1000).min(30_000));
        tokio::time::sleep_until(deadline.min(Instant::now() + wait)).await;
        let request = exchange
            .inner
            .request(reqwest::Method::GET)
            .header(header::ACCEPT, "text/event-stream")
            .header("last-event-id", last);
        let response = match tokio::time::timeout_at(deadline, request.send()).await {
            Ok(Ok(response)) if response.status().is_success() && is_sse(response.headers()) => {
                response
            }
            Ok(Ok(response)) => {
                return Err(format!(
                    "closed its event stream early and answered the resuming GET with HTTP {}",
                    response.status()
                ));
            }
            Ok(Err(e)) => {
                return Err(format!(
                    "closed its event stream early and could not be reached to resume it: {}",
                    root_cause(&e)
                ));
            }
            Err(_) => return Err("did not answer in time (timeout_ms)".into()),
        };
        parser.resumed = true;
        ended = read_sse(
            response.bytes_stream(),
            Some(deadline),
            exchange,
            &mut parser,
        )
        .await;
    }
    ended
}

/// Incremental `text/event-stream` parser (the WHATWG rules, minus lone
/// `\r` line ends): yields the data of `message` events (and events with no
/// type); comments, empty events and other types are skipped; the last
/// event id and `retry:` are kept for resumption.
#[derive(Default)]
pub(crate) struct SseParser {
    /// The last event id the stream gave (`id:`), to resume from.
    pub(crate) last_id: Option<String>,
    /// The reconnection time it announced (`retry:`), in milliseconds.
    pub(crate) retry: Option<u64>,
    /// Reading a stream resumed with `Last-Event-ID`.
    pub(crate) resumed: bool,
    buffer: Vec<u8>,
    /// How far `buffer` is known to hold no `\n`.
    scanned: usize,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
}

impl SseParser {
    pub(crate) fn feed(&mut self, chunk: &[u8], out: &mut Vec<String>) -> Result<(), String> {
        self.buffer.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(offset) = self.buffer[start.max(self.scanned)..]
            .iter()
            .position(|b| *b == b'\n')
        {
            let end = start.max(self.scanned) + offset;
            let mut line = &self.buffer[start..end];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            let line = line.to_vec();
            self.line(&line, out)?;
            start = end + 1;
            self.scanned = start;
        }
        self.buffer.drain(..start);
        self.scanned = self.buffer.len();
        if self.buffer.len() > MAX_MESSAGE_BYTES {
            return Err(too_large());
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<String>) -> Result<(), String> {
        if line.is_empty() {
            let data = std::mem::take(&mut self.data);
            let event = self.event.take();
            if std::mem::take(&mut self.has_data)
                && matches!(event.as_deref(), None | Some("message"))
            {
                let text = String::from_utf8(data)
                    .map_err(|_| "sent an event whose data is not UTF-8".to_owned())?;
                if !text.trim().is_empty() {
                    out.push(text);
                }
            }
            return Ok(());
        }
        if line.starts_with(b":") {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &[][..]),
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
                if self.data.len() > MAX_MESSAGE_BYTES {
                    return Err(too_large());
                }
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            // An id with NUL is ignored (the WHATWG rule); an empty one
            // resets it.
            b"id" if !value.contains(&0) => {
                self.last_id =
                    (!value.is_empty()).then(|| String::from_utf8_lossy(value).into_owned());
            }
            b"retry" => {
                if let Some(ms) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<String> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn sse_events_split_anywhere_yield_their_data() {
        let stream = b"id: 1\nevent: message\ndata: {\"a\":\r\ndata: 1}\r\n\r\n: comment\n\nevent: other\ndata: x\n\ndata: {\"b\":2}\n\nid: 2\ndata:\n\n";
        let whole = parse(&[stream]);
        assert_eq!(
            whole,
            vec!["{\"a\":\n1}".to_owned(), "{\"b\":2}".to_owned()]
        );
        for split in 1..stream.len() {
            assert_eq!(
                parse(&[&stream[..split], &stream[split..]]),
                whole,
                "split at {split}"
            );
        }
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse(&bytewise), whole);
    }

    #[test]
    fn an_unterminated_event_is_not_yielded() {
        assert!(parse(&[b"data: {\"a\":1}\n"]).is_empty());
    }

    #[test]
    fn managed_and_bad_headers_are_refused() {
        assert_eq!(
            check_header("Mcp-Session-Id", "x").unwrap_err(),
            "\"Mcp-Session-Id\" cannot be set: the gateway manages it (Accept, Content-Type, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID)"
        );
        assert!(check_header("Authorization", "Bearer x").is_ok());
        assert!(check_header("Host", "x").is_err());
        assert!(check_header("X-Key", "a\nb").is_err());
    }
}
