//! What the proxy writes down: bounded body captures, the response body
//! wrapper that records the call when the stream ends, and the event.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use futures_util::Stream;
use futures_util::stream::BoxStream;
use intentproof_core::{Attributes, ErrorInfo, ExecutionEvent, format_rfc3339_millis};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use intentproof_mcp::sink::RecordSink;

/// Whether a body with these headers is JSON the proxy may record as JSON:
/// `application/json` or `application/*+json`, not content-encoded.
pub fn is_json(headers: &HeaderMap) -> bool {
    if headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"))
    {
        return false;
    }
    let Some(media) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media = media
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// The selected headers of a message, as recorded: lowercase names, one
/// string per header (an array when it repeats), credentials redacted.
pub(crate) fn recorded_headers(headers: &HeaderMap, names: &[HeaderName]) -> Value {
    let mut out = Map::new();
    for name in names {
        let values: Vec<Value> = headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        match values.len() {
            0 => {}
            1 => {
                out.insert(
                    name.as_str().to_owned(),
                    values.into_iter().next().unwrap_or_default(),
                );
            }
            _ => {
                out.insert(name.as_str().to_owned(), Value::Array(values));
            }
        }
    }
    intentproof_policy::redact::redact_headers(&mut out);
    Value::Object(out)
}

/// A body as it passes: its size always, its JSON while it is JSON and
/// within `cap`, else its SHA-256. Memory: at most `cap` bytes.
pub(crate) struct BodyCapture {
    buffer: Option<Vec<u8>>,
    cap: usize,
    hasher: Option<Sha256>,
    size: u64,
}

impl BodyCapture {
    pub(crate) fn new(json: bool, cap: usize) -> Self {
        let buffer = (json && cap > 0).then(Vec::new);
        BodyCapture {
            hasher: buffer.is_none().then(Sha256::new),
            buffer,
            cap,
            size: 0,
        }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        if let Some(buffer) = self.buffer.as_mut() {
            if buffer.len() + chunk.len() <= self.cap {
                buffer.extend_from_slice(chunk);
                return;
            }
            // Over the cap: from here on only the hash.
            let mut hasher = Sha256::new();
            hasher.update(&buffer[..]);
            self.buffer = None;
            self.hasher = Some(hasher);
        }
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(chunk);
        }
    }

    /// Adds `body_bytes` and either `body` (JSON, to be redacted when the
    /// event is sealed) or `body_sha256` to `out`.
    pub(crate) fn finish(self, out: &mut Map<String, Value>) {
        out.insert("body_bytes".into(), Value::from(self.size));
        if self.size == 0 {
            return;
        }
        let digest = match (self.buffer, self.hasher) {
            (Some(buffer), _) => match intentproof_core::canon::parse_strict(&buffer) {
                Ok(value) => {
                    out.insert("body".into(), value);
                    return;
                }
                // Not JSON after all, or JSON that cannot be sealed exactly
                // (duplicate keys, unsafe integers): size and hash.
                Err(_) => Sha256::digest(&buffer),
            },
            (None, Some(hasher)) => hasher.finalize(),
            (None, None) => return,
        };
        let digest: [u8; 32] = digest.into();
        out.insert(
            "body_sha256".into(),
            Value::String(format!("sha256:{}", intentproof_core::merkle::hex(&digest))),
        );
    }
}

/// A call under way: everything its event needs except how it ended.
pub(crate) struct Call {
    pub intent: String,
    pub action: String,
    pub correlation_id: String,
    pub inputs: Value,
    pub attributes: Attributes,
    pub started: SystemTime,
    pub clock: Instant,
}

impl Call {
    /// The event of this call.
    pub(crate) fn event(self, output: Option<Value>, error: Option<ErrorInfo>) -> ExecutionEvent {
        let elapsed = self.clock.elapsed();
        let mut builder = ExecutionEvent::builder(self.intent, self.action)
            .correlation_id(self.correlation_id)
            .inputs(self.inputs)
            .attributes(self.attributes)
            .timing(
                format_rfc3339_millis(self.started),
                format_rfc3339_millis(self.started + elapsed),
                u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            );
        if let Some(output) = output {
            builder = builder.output(output);
        }
        if let Some(error) = error {
            builder = builder.error(error);
        }
        builder.build()
    }
}

pub(crate) fn error_info(name: &str, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo {
        name: name.to_owned(),
        message: message.into(),
        stack: None,
    }
}

pub(crate) use intentproof_upstream::root_cause;

/// How a response body ended.
enum Ended {
    Complete,
    Failed(String),
    Dropped,
}

/// The upstream response body on its way to the agent. Chunks pass through
/// as they arrive (nothing but the bounded [`BodyCapture`] is kept); the
/// call is recorded once, when the stream ends, fails, or is dropped (the
/// agent went away, or the server stopped polling after the last byte).
pub(crate) struct RecordingBody {
    inner: BoxStream<'static, reqwest::Result<Bytes>>,
    capture: Option<BodyCapture>,
    /// Bytes the response must carry (`Content-Length`, or 0 for bodiless
    /// responses): reaching it means complete even if never polled again.
    expected: Option<u64>,
    pending: Option<Pending>,
}

struct Pending {
    call: Call,
    recording: Arc<dyn RecordSink>,
    status: StatusCode,
    headers: Value,
    error_on_4xx: bool,
}

impl RecordingBody {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        inner: BoxStream<'static, reqwest::Result<Bytes>>,
        capture: BodyCapture,
        expected: Option<u64>,
        call: Call,
        recording: Arc<dyn RecordSink>,
        status: StatusCode,
        headers: Value,
        error_on_4xx: bool,
    ) -> Self {
        RecordingBody {
            inner,
            capture: Some(capture),
            expected,
            pending: Some(Pending {
                call,
                recording,
                status,
                headers,
                error_on_4xx,
            }),
        }
    }

    fn record(&mut self, ended: Ended) {
        let (Some(pending), Some(capture)) = (self.pending.take(), self.capture.take()) else {
            return;
        };
        let size = capture.size();
        let ended = match ended {
            Ended::Dropped if self.expected == Some(size) => Ended::Complete,
            other => other,
        };
        let mut output = Map::new();
        output.insert("status".into(), Value::from(pending.status.as_u16()));
        output.insert("headers".into(), pending.headers);
        capture.finish(&mut output);
        let error = match ended {
            Ended::Complete => status_error(pending.status, pending.error_on_4xx),
            Ended::Failed(cause) => Some(error_info(
                "BodyError",
                format!("the upstream's response body failed after {size} bytes: {cause}"),
            )),
            Ended::Dropped => Some(error_info(
                "ClientAborted",
                format!("the agent closed the connection after {size} bytes of the response body"),
            )),
        };
        let event = pending.call.event(Some(Value::Object(output)), error);
        pending.recording.record(vec![event]);
    }
}

/// The error of a complete response: 5xx always, 4xx when configured.
pub(crate) fn status_error(status: StatusCode, error_on_4xx: bool) -> Option<ErrorInfo> {
    (status.is_server_error() || (error_on_4xx && status.is_client_error()))
        .then(|| error_info("HttpError", format!("the upstream answered {status}")))
}

impl Stream for RecordingBody {
    type Item = reqwest::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(capture) = this.capture.as_mut() {
                    capture.feed(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                let cause = if e.is_timeout() {
                    "no data within idle_timeout_ms".to_owned()
                } else {
                    root_cause(&e)
                };
                this.record(Ended::Failed(cause));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.record(Ended::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for RecordingBody {
    fn drop(&mut self) {
        self.record(Ended::Dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn finished(capture: BodyCapture) -> Value {
        let mut out = Map::new();
        capture.finish(&mut out);
        Value::Object(out)
    }

    #[test]
    fn json_within_the_cap_is_kept_everything_else_is_size_and_hash() {
        let mut c = BodyCapture::new(true, 64);
        c.feed(br#"{"a":"#);
        c.feed(b"1}");
        assert_eq!(finished(c), json!({"body_bytes": 7, "body": {"a": 1}}));

        let mut c = BodyCapture::new(true, 4);
        c.feed(br#"{"a":"#);
        c.feed(b"1}");
        assert_eq!(
            finished(c),
            json!({"body_bytes": 7, "body_sha256": format!("sha256:{}", intentproof_core::merkle::hex(&Sha256::digest(br#"{"a":1}"#).into()))})
        );

        let mut c = BodyCapture::new(false, 1 << 20);
        c.feed(b"hello");
        assert_eq!(
            finished(c),
            json!({"body_bytes": 5, "body_sha256": "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"})
        );

        // Unsafe integers cannot be sealed exactly: hashed, not rounded.
        let mut c = BodyCapture::new(true, 64);
        c.feed(b"[100000000000000000000]");
        assert!(finished(c).get("body_sha256").is_some());

        assert_eq!(
            finished(BodyCapture::new(true, 64)),
            json!({"body_bytes": 0})
        );
    }

    #[test]
    fn json_means_a_json_media_type_without_content_encoding() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        assert!(is_json(&h(&[(
            "content-type",
            "application/json; charset=utf-8"
        )])));
        assert!(is_json(&h(&[("content-type", "application/problem+json")])));
        assert!(!is_json(&h(&[("content-type", "text/event-stream")])));
        assert!(!is_json(&h(&[])));
        assert!(!is_json(&h(&[
            ("content-type", "application/json"),
            ("content-encoding", "gzip")
        ])));
    }
}
