use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use intentproof_core::ExecutionEvent;
use intentproof_core::backoff::{Backoff, retry_after_header};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::{Delivery, ExportError, ExportErrorHook, Exporter};

/// Builds a custom request body for one event. An `Err` (or a panic) makes
/// the exporter report [`ExportError::BodyHook`] and send the default
/// envelope instead.
pub type BodyHook = Arc<dyn Fn(&ExecutionEvent) -> Result<Value, String> + Send + Sync>;

/// Settings of an [`HttpExporter`].
///
/// ```
/// let config = intentproof::HttpExporterConfig {
///     headers: vec![("Authorization".into(), "Bearer t0ken".into())],
///     ..intentproof::HttpExporterConfig::new("http://127.0.0.1:9787/v1/events")
/// };
/// assert_eq!(config.max_retries, 3);
/// ```
#[derive(Clone)]
pub struct HttpExporterConfig {
    /// Collector URL; every event is POSTed here.
    pub url: String,
    /// Extra request headers, e.g. `Authorization`. Their values are never
    /// logged or included in errors.
    pub headers: Vec<(String, String)>,
    /// Time limit of one attempt (connect + send + response). Default 10 s.
    pub timeout: Duration,
    /// Retries after the first attempt, for 5xx, 429, timeouts and
    /// connection errors. Other 4xx answers are not retried. Default 3.
    pub max_retries: u32,
    /// Wait before the first retry; doubles each retry, capped at 5 s,
    /// with jitter (each wait is between half and all of its step), or
    /// longer when the collector's `Retry-After` asks for it
    /// ([`intentproof_core::backoff`]). Default 200 ms.
    pub backoff: Duration,
    /// What the default body looks like. Default [`BodyFormat::Envelope`].
    pub format: BodyFormat,
    /// Custom body; `None` sends the [`format`](HttpExporterConfig::format)'s body.
    pub body: Option<BodyHook>,
    /// Told about problems that did not stop the export (a failed body
    /// hook). `None` writes them to stderr.
    pub on_error: Option<ExportErrorHook>,
}

impl HttpExporterConfig {
    /// Defaults for a collector at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        HttpExporterConfig {
            url: url.into(),
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            max_retries: 3,
            backoff: Duration::from_millis(200),
            format: BodyFormat::Envelope,
            body: None,
            on_error: None,
        }
    }
}

impl fmt::Debug for HttpExporterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("HttpExporterConfig")
            .field("url", &self.url)
            .field("header_names", &header_names)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("format", &self.format)
            .field("body", &self.body.as_ref().map(|_| "custom"))
            .finish()
    }
}

/// The default request body of an [`HttpExporter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyFormat {
    /// `{"intentproof":"1","event":{...camelCase...}}`: what the seed SDK
    /// generation posts ([`envelope`]).
    #[default]
    Envelope,
    /// The bare signed `intentproof.event.v1` object (snake_case): what the
    /// current reference SDKs post to `/v1/events`. Use it with a client
    /// signer, so the events carry their chain fields and signature.
    BareV1,
}

/// The body the seed SDKs POST: `{"intentproof":"1","event":{...}}`.
///
/// ```
/// let event = intentproof_core::ExecutionEvent::builder("HTTP test", "test.http").build();
/// let body = intentproof::envelope(&event);
/// assert_eq!(body["intentproof"], "1");
/// assert_eq!(body["event"]["action"], "test.http");
/// ```
pub fn envelope(event: &ExecutionEvent) -> Value {
    json!({ "intentproof": "1", "event": event })
}

/// POSTs each event as JSON to a collector, with retries and backoff.
///
/// Redirects are not followed (a collector URL is trusted configuration; a
/// redirect must not move events elsewhere).
///
/// ```no_run
/// use std::sync::Arc;
/// use intentproof::{HttpExporter, HttpExporterConfig, IntentProofClient, IntentProofConfig};
///
/// let http = HttpExporter::new(HttpExporterConfig {
///     headers: vec![("x-api-key".into(), "secret".into())],
///     ..HttpExporterConfig::new("https://collector.example/v1/events")
/// }).expect("valid exporter config");
/// let client = IntentProofClient::new(IntentProofConfig {
///     exporters: Some(vec![Arc::new(http)]),
///     ..Default::default()
/// });
/// ```
pub struct HttpExporter {
    inner: Arc<Inner>,
}

struct Inner {
    config: HttpExporterConfig,
    headers: HeaderMap,
    client: reqwest::Client,
}

impl fmt::Debug for HttpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpExporter")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl HttpExporter {
    /// Checks the configuration and prepares the HTTP client.
    ///
    /// Fails when the URL is not an `http`/`https` URL or a header name or
    /// value is not valid HTTP; the error names which.
    pub fn new(config: HttpExporterConfig) -> Result<Self, ExportError> {
        let url = reqwest::Url::parse(&config.url).map_err(|e| {
            ExportError::Other(format!(
                "HttpExporter url {:?} is not a valid URL ({e}); use e.g. http://127.0.0.1:9787/v1/events",
                config.url
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ExportError::Other(format!(
                "HttpExporter url {:?} has scheme {:?}; use http or https",
                config.url,
                url.scheme()
            )));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ExportError::Other(format!(
                    "HttpExporter header name {name:?} is not a valid HTTP header name"
                ))
            })?;
            let mut header_value = HeaderValue::from_str(value).map_err(|_| {
                ExportError::Other(format!(
                    "HttpExporter header {name:?} has a value that is not valid in HTTP (control characters or non-ASCII)"
                ))
            })?;
            header_value.set_sensitive(true);
            headers.append(header_name, header_value);
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ExportError::Other(format!("could not build the HTTP client: {e}")))?;
        Ok(HttpExporter {
            inner: Arc::new(Inner {
                config,
                headers,
                client,
            }),
        })
    }

    fn report(&self, error: &ExportError) {
        match &self.inner.config.on_error {
            Some(hook) => hook(error),
            None => eprintln!("intentproof: http exporter: {error}"),
        }
    }

    /// The bytes to POST for `event`: the custom body if it works, else the
    /// envelope; should even that fail to serialize, a partial envelope of
    /// the scalar fields, and last a minimal `eventSerializeFailed` marker.
    fn body_for(&self, event: &ExecutionEvent) -> Vec<u8> {
        if let Some(hook) = &self.inner.config.body {
            let built = catch_unwind(AssertUnwindSafe(|| hook(event)))
                .unwrap_or_else(|_| Err("the body hook panicked".to_owned()))
                .and_then(|value| serde_json::to_vec(&value).map_err(|e| e.to_string()));
            match built {
                Ok(bytes) => return bytes,
                Err(reason) => self.report(&ExportError::BodyHook(reason)),
            }
        }
        match self.inner.config.format {
            BodyFormat::Envelope => envelope_bytes(event),
            BodyFormat::BareV1 => serde_json::to_vec(&intentproof_core::v1::to_v1(event))
                .unwrap_or_else(|_| envelope_bytes(event)),
        }
    }
}

/// Full envelope, else partial, else minimal; see [`HttpExporter::body_for`].
fn envelope_bytes(event: &ExecutionEvent) -> Vec<u8> {
    if let Ok(bytes) = serde_json::to_vec(&envelope(event)) {
        return bytes;
    }
    let partial = json!({
        "intentproof": "1",
        "event": {
            "id": event.id,
            "correlationId": event.correlation_id,
            "intent": event.intent,
            "action": event.action,
            "status": event.status,
            "startedAt": event.started_at,
            "completedAt": event.completed_at,
            "durationMs": event.duration_ms,
        },
        "partial": true,
    });
    serde_json::to_vec(&partial).unwrap_or_else(|_| {
        format!(
            "{{\"intentproof\":\"1\",\"eventSerializeFailed\":true,\"id\":{}}}",
            Value::String(event.id.clone())
        )
        .into_bytes()
    })
}

impl Exporter for HttpExporter {
    fn name(&self) -> &str {
        "http"
    }

    fn export(&self, event: &ExecutionEvent) -> Delivery {
        let body = self.body_for(event);
        let inner = Arc::clone(&self.inner);
        Delivery::Pending(Box::pin(async move {
            inner
                .post(&inner.config.url, "application/json", body, false)
                .await
                .map(drop)
        }))
    }

    /// To a URL ending in `/v1/events` (the IntentProof daemon's), the
    /// batch goes as one `POST /v1/events:batch` (newline-delimited bodies);
    /// lines the daemon refuses with a 4xx other than 429 are reported as
    /// refused, and a 503 (full queue, storage error) fails the batch so it
    /// is sent again. To any other URL, one POST per event.
    fn export_batch(&self, events: Arc<[ExecutionEvent]>) -> super::BatchFuture {
        let Some(batch_url) = batch_url(&self.inner.config.url) else {
            let each: Vec<Vec<u8>> = events.iter().map(|e| self.body_for(e)).collect();
            let inner = Arc::clone(&self.inner);
            return Box::pin(async move {
                for body in each {
                    inner
                        .post(&inner.config.url, "application/json", body, false)
                        .await?;
                }
                Ok(super::BatchDelivery::default())
            });
        };
        let mut body = Vec::new();
        for event in events.iter() {
            body.extend_from_slice(&self.body_for(event));
            body.push(b'\n');
        }
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let answer = inner
                .post(&batch_url, "application/x-ndjson", body, true)
                .await?;
            Ok(refused_lines(&answer, events.len()))
        })
    }
}

/// `<base>/v1/events:batch` for a daemon ingest URL `<base>/v1/events`.
fn batch_url(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    if parsed.query().is_some() || !parsed.path().ends_with("/v1/events") {
        return None;
    }
    Some(format!("{url}:batch"))
}

/// The lines of a daemon's batch answer that were refused for good.
fn refused_lines(answer: &[u8], sent: usize) -> super::BatchDelivery {
    let mut delivery = super::BatchDelivery::default();
    let Ok(answer) = serde_json::from_slice::<Value>(answer) else {
        return delivery;
    };
    for result in answer["results"].as_array().into_iter().flatten() {
        let (Some(line), Some(status)) = (result["line"].as_u64(), result["status"].as_u64())
        else {
            continue;
        };
        let index = usize::try_from(line).unwrap_or(usize::MAX).wrapping_sub(1);
        if index < sent && (400..500).contains(&status) && status != 429 {
            let reason = format!(
                "HTTP {status} {}: {}",
                result["reason"].as_str().unwrap_or(""),
                result["error"].as_str().unwrap_or("")
            );
            delivery.refused.push((index, reason));
        }
    }
    delivery
}

impl Inner {
    /// POSTs `body` to `url` with retries; on success, the answer's body
    /// when `want_answer` (else empty).
    async fn post(
        &self,
        url: &str,
        content_type: &'static str,
        body: Vec<u8>,
        want_answer: bool,
    ) -> Result<Vec<u8>, ExportError> {
        let url = &url.to_owned();
        let mut attempts = 0u32;
        let mut backoff = Backoff::new(self.config.backoff, Duration::from_secs(5));
        loop {
            attempts += 1;
            let sent = self
                .client
                .post(url)
                .headers(self.headers.clone())
                .header(CONTENT_TYPE, content_type)
                .body(body.clone())
                .send()
                .await;
            let mut retry_after = None;
            let failure = match sent {
                Ok(response) if response.status().is_success() && !want_answer => {
                    return Ok(Vec::new());
                }
                Ok(response) if response.status().is_success() => match response.bytes().await {
                    Ok(answer) => return Ok(answer.to_vec()),
                    Err(e) => ExportError::Transport {
                        url: url.clone(),
                        reason: describe(&e.without_url()),
                        attempts,
                    },
                },
                Ok(response) => {
                    let status = response.status().as_u16();
                    retry_after = retry_after_header(
                        response
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .map(|v| v.as_bytes()),
                    );
                    let failure = ExportError::HttpStatus {
                        url: url.clone(),
                        status,
                        attempts,
                    };
                    if status < 500 && status != 429 {
                        return Err(failure);
                    }
                    failure
                }
                Err(e) if e.is_timeout() => ExportError::Timeout {
                    url: url.clone(),
                    timeout_ms: u64::try_from(self.config.timeout.as_millis()).unwrap_or(u64::MAX),
                    attempts,
                },
                Err(e) => ExportError::Transport {
                    url: url.clone(),
                    reason: describe(&e.without_url()),
                    attempts,
                },
            };
            if attempts > self.config.max_retries {
                return Err(failure);
            }
            tokio::time::sleep(backoff.next_wait(retry_after)).await;
        }
    }
}

/// An error and its causes on one line.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
