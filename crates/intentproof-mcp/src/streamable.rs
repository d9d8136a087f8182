//! What both ways of serving MCP over HTTP share (`http`, the session
//! revisions, and `stateless`, 2026-07-28): the messages of an event
//! stream and how a stream or a plain JSON body answers a POST, JSON-RPC
//! errors as HTTP answers, the `Accept` checks, and writing lines to a
//! stdio upstream's stdin. Neither serving module depends on the other
//! for these.

use std::convert::Infallible;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::mpsc;

/// The header carrying the session id.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// One message for an HTTP stream.
#[derive(Clone)]
pub(crate) struct Outgoing {
    pub(crate) text: String,
    /// The response to a request of the POST that owns the stream (the
    /// upstream's, or the gateway's own reply). A POST with one request is
    /// complete once it has this.
    pub(crate) response: bool,
    /// Its SSE event id (`<stream>-<n>`), on a resumable stream.
    pub(crate) event_id: Option<String>,
}

impl Outgoing {
    /// A message without an event id (a stream that is not resumable).
    pub(crate) fn new(text: String, response: bool) -> Self {
        Outgoing {
            text,
            response,
            event_id: None,
        }
    }
}

/// The `retry:` (milliseconds) the gateway's event streams announce.
const RETRY_MS: u64 = 1000;

/// How long a POST with one request waits for its response to answer it as
/// plain JSON; after that the event stream starts (headers go out), as it
/// does at once when something else comes first. Well under any client's
/// timeout for response headers.
pub(crate) const JSON_WAIT: Duration = Duration::from_secs(1);

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A JSON-RPC error as the HTTP answer. `id` is the request's when the
/// body was one request (`null` when it could not be read, or for a batch).
pub(crate) fn rpc_error(status: StatusCode, id: &Value, code: i64, message: &str) -> Response {
    rpc_error_with(status, id, code, message, None)
}

/// [`rpc_error`] with the error's `data`. Members in the order servers
/// write them (`jsonrpc`, `id`, `error`), as the upstream's own errors are.
pub(crate) fn rpc_error_with(
    status: StatusCode,
    id: &Value,
    code: i64,
    message: &str,
    data: Option<&Value>,
) -> Response {
    let message = Value::from(message);
    let data = data.map_or(String::new(), |d| format!(",\"data\":{d}"));
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}{data}}}}}"#
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn sse_frame(message: &Outgoing) -> Bytes {
    if message.text.is_empty() {
        // The marker of `Stream::open_as_events`.
        return Bytes::new();
    }
    match &message.event_id {
        Some(id) => Bytes::from(format!(
            "id: {id}\nevent: message\ndata: {}\n\n",
            message.text
        )),
        None => Bytes::from(format!("event: message\ndata: {}\n\n", message.text)),
    }
}

/// The event stream of a POST or GET: a priming event when `priming`
/// names its id (an id, `retry:`, empty data: what a client resumes
/// from), `first` (already taken from `receiver`), then the rest until
/// every sender is gone.
pub(crate) fn sse_stream(
    session_id: Option<&str>,
    priming: Option<String>,
    first: Option<Outgoing>,
    receiver: mpsc::UnboundedReceiver<Outgoing>,
) -> Response {
    let priming = priming.map(|id| {
        Ok::<_, Infallible>(Bytes::from(format!(
            "id: {id}\nretry: {RETRY_MS}\ndata:\n\n"
        )))
    });
    let frames = futures_util::stream::iter(priming).chain(
        futures_util::stream::iter(first)
            .chain(tokio_stream_from(receiver))
            .map(|message| Ok::<_, Infallible>(sse_frame(&message))),
    );
    sse_response(session_id, Body::from_stream(frames))
}

/// A POST's only response as a plain JSON body: headers and body leave in
/// one write and the client needs no event-stream parsing.
pub(crate) fn json_response(session_id: Option<&str>, message: String) -> Response {
    let mut response = Response::new(Body::from(message));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(Ok(value)) = session_id.map(HeaderValue::from_str) {
        headers.insert(SESSION_HEADER, value);
    }
    response
}

/// Whether the agent takes a plain JSON answer (the protocol has clients
/// send `Accept: application/json, text/event-stream`).
pub(crate) fn accepts_json(headers: &HeaderMap) -> bool {
    accepts(headers, "application/json")
}

/// Whether `Accept` names `media` (or `*/*`); parameters are ignored.
pub(crate) fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|m| m.split(';').next().unwrap_or(m).trim())
        .any(|m| m.eq_ignore_ascii_case(media) || m == "*/*")
}

fn sse_response(session_id: Option<&str>, body: Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(Ok(value)) = session_id.map(HeaderValue::from_str) {
        headers.insert(SESSION_HEADER, value);
    }
    response
}

fn tokio_stream_from(
    mut receiver: mpsc::UnboundedReceiver<Outgoing>,
) -> impl futures_util::Stream<Item = Outgoing> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

pub(crate) async fn write_stdin(
    stdin: &tokio::sync::Mutex<ChildStdin>,
    server: &str,
    lines: &[String],
) -> Result<(), String> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut bytes = Vec::new();
    for line in lines {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    let mut stdin = stdin.lock().await;
    stdin
        .write_all(&bytes)
        .await
        .and(stdin.flush().await)
        .map_err(|e| format!("the upstream MCP server {server} is not accepting input: {e}"))
}
