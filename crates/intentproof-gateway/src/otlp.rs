//! OpenTelemetry export (`[[otlp]]`): every stored event as one span, over
//! OTLP/HTTP (protobuf) to any collector, by the same durable cursor as
//! the other exporters (moved only after the collector answered 2xx).
//!
//! ```toml
//! [[otlp]]
//! name = "collector"                          # names the durable cursor: keep it stable
//! endpoint = "http://127.0.0.1:4318/v1/traces"
//! headers = { Authorization = "Bearer ..." }  # sent, never logged
//! include_payloads = false                    # gen_ai.tool.call.arguments / .result (redacted as stored)
//! ```
//!
//! **Spans** follow the OpenTelemetry MCP and GenAI semantic conventions:
//!
//! - an MCP call: name `{mcp.method.name} {target}` (`tools/call echo`),
//!   `mcp.method.name`, `jsonrpc.request.id`, `mcp.protocol.version`,
//!   `mcp.session.id` (only at revisions with sessions: not 2026-07-28),
//!   `network.transport` (`tcp` for calls the daemon recorded on
//!   `/mcp/<name>`; absent when the daemon cannot know it), and for tools
//!   `gen_ai.tool.name` and `gen_ai.operation.name = execute_tool`;
//!   `error.type` is `tool_error` for an `isError` result, the JSON-RPC
//!   error code for an error answer;
//! - an HTTP-proxy call: name `{http.request.method} {http.route}`,
//!   `http.request.method`, `http.route` (the matched path template),
//!   `http.response.status_code`, `error.type` (the status code, 4xx/5xx);
//! - any other event: name = its action.
//!
//! Every span carries the evidence: `intentproof.event.id`,
//! `intentproof.content_hash`, `intentproof.correlation_id`,
//! `intentproof.intent`, `intentproof.action`, `intentproof.leaf_index`
//! (the journal seq, so an inclusion proof can be asked for). The trace id
//! is the call's `traceparent`'s when it sent one (and the span is its
//! child), else derived from the correlation id, so one flow is one trace;
//! the span id is derived from the event id. Payloads (the conventions'
//! opt-in `gen_ai.tool.call.arguments` / `.result`) only with
//! `include_payloads`, as stored: redacted.
//!
//! **Findings** go out as OTLP log records (to `logs_endpoint`, by default
//! the traces URL with `/v1/logs`): event name `intentproof.finding`,
//! severity WARN, the finding's message as body, attributes
//! `intentproof.finding.id` / `.kind`, `intentproof.correlation_id`,
//! `intentproof.action`, `intentproof.event.ids` (and the plan, intent and
//! step when there are), and the trace and span ids of its first evidence
//! event's span, so a backend shows the finding on that span. Each finding
//! once per collector: delivered ids are kept in
//! `<data-dir>/otlp/<name>.jsonl` ([`crate::finding_delivery`]).
//!
//! What it does not do (yet): gRPC, and metrics.

use std::sync::Arc;
use std::time::Duration;

use intentproof_core::backoff::Backoff;
use intentproof_store::Store;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use crate::config::OtlpConfig;
use crate::finding_delivery::{DeliveryLog, all_findings};
use crate::metrics::Metrics;
use crate::state::AppState;
use intentproof_api::wire::FindingRow;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::ArrayValue;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// `n` bytes of SHA-256 over `label` and `value`: stable ids.
fn derived_id(label: &str, value: &str, n: usize) -> Vec<u8> {
    let digest = Sha256::digest(format!("{label}\n{value}").as_bytes());
    digest[..n].to_vec()
}

/// The trace id and parent span id of a W3C `traceparent`.
fn parse_traceparent(text: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let parts: Vec<&str> = text.trim().split('-').collect();
    let [version, trace, parent, _flags] = parts.as_slice() else {
        return None;
    };
    let hex = |s: &str, len: usize| -> Option<Vec<u8>> {
        if s.len() != len * 2 {
            return None;
        }
        (0..len)
            .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
            .collect()
    };
    let (trace, parent) = (hex(trace, 16)?, hex(parent, 8)?);
    let valid = version.len() == 2
        && *version != "ff"
        && trace.iter().any(|b| *b != 0)
        && parent.iter().any(|b| *b != 0);
    valid.then_some((trace, parent))
}

fn nanos(rfc3339: &str) -> u64 {
    intentproof_core::parse_rfc3339(rfc3339)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The span of stored event `event` (journal record `seq`, content hash
/// `content_hash` as indexed). `daemon` is the daemon's instance id: MCP
/// calls it sealed itself came over HTTP.
pub fn span_of(
    event: &Value,
    seq: u64,
    content_hash: &str,
    daemon: &str,
    include_payloads: bool,
) -> Span {
    let field = |k: &str| event.get(k).and_then(Value::as_str).unwrap_or("");
    let attrs = event.get("attributes").and_then(Value::as_object);
    let attr = |k: &str| -> Option<String> {
        attrs.and_then(|a| a.get(k)).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    };
    let action = field("action");
    let failed = field("status") == "error";
    let error_name = event.pointer("/error/name").and_then(Value::as_str);
    let mut attributes = Vec::new();
    let mut name = action.to_owned();
    let mut tool_call = false;
    if action.starts_with("mcp.") && attr("mcp.server").is_some() {
        let server = attr("mcp.server").unwrap_or_default();
        let rest = action
            .strip_prefix(&format!("mcp.{server}."))
            .unwrap_or(action);
        let (method, target) = if let Some(tool) = attr("mcp.tool") {
            tool_call = true;
            ("tools/call".to_owned(), Some(tool))
        } else if let Some(method) = attr("mcp.method") {
            (method, None)
        } else if rest == "resource.read" {
            ("resources/read".to_owned(), None)
        } else if rest == "prompt.get" {
            ("prompts/get".to_owned(), None)
        } else {
            (rest.to_owned(), None)
        };
        name = match &target {
            Some(target) => format!("{method} {target}"),
            None => method.clone(),
        };
        attributes.push(text("mcp.method.name", &method));
        if let Some(tool) = &target {
            attributes.push(text("gen_ai.tool.name", tool));
            attributes.push(text("gen_ai.operation.name", "execute_tool"));
        }
        if let Some(id) = attr("jsonrpc.id") {
            attributes.push(text("jsonrpc.request.id", id));
        }
        let version = attr("mcp.protocol.version");
        if let Some(version) = &version {
            attributes.push(text("mcp.protocol.version", version));
        }
        // 2026-07-28 is stateless: its recorder session id is ours, not MCP's.
        let stateless = version.as_deref().is_some_and(|v| v >= "2026-07-28");
        if let (false, Some(session)) = (stateless, attr("mcp.session_id")) {
            attributes.push(text("mcp.session.id", session));
        }
        if field("instance_id") == daemon {
            attributes.push(text("network.transport", "tcp"));
        }
        if failed {
            let kind = match error_name {
                Some("ToolError") => "tool_error".to_owned(),
                Some(other) => other
                    .strip_prefix("JsonRpcError(")
                    .and_then(|c| c.strip_suffix(')'))
                    .unwrap_or(other)
                    .to_owned(),
                None => "_OTHER".to_owned(),
            };
            attributes.push(text("error.type", kind));
        }
    } else if action.starts_with("http.") && attr("http.method").is_some() {
        let method = attr("http.method").unwrap_or_default();
        let route = attr("http.path_template").unwrap_or_else(|| {
            event
                .pointer("/inputs/path")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        });
        name = format!("{method} {route}");
        attributes.push(text("http.request.method", &method));
        attributes.push(text("http.route", &route));
        let status = attr("http.status_code").and_then(|s| s.parse::<i64>().ok());
        if let Some(code) = status {
            attributes.push(int("http.response.status_code", code));
        }
        if failed {
            let kind = match status {
                Some(code) if code >= 400 => code.to_string(),
                _ => error_name.unwrap_or("_OTHER").to_owned(),
            };
            attributes.push(text("error.type", kind));
        }
    }
    if include_payloads && (tool_call || action.starts_with("http.")) {
        if let Some(inputs) = event.get("inputs") {
            attributes.push(text("gen_ai.tool.call.arguments", inputs.to_string()));
        }
        if let Some(output) = event.get("output") {
            attributes.push(text("gen_ai.tool.call.result", output.to_string()));
        }
    }
    attributes.push(text("intentproof.event.id", field("event_id")));
    attributes.push(text("intentproof.content_hash", content_hash));
    attributes.push(text("intentproof.correlation_id", field("correlation_id")));
    attributes.push(text("intentproof.intent", field("intent")));
    attributes.push(text("intentproof.action", action));
    attributes.push(int(
        "intentproof.leaf_index",
        i64::try_from(seq).unwrap_or(i64::MAX),
    ));

    let (trace_id, parent_span_id) = trace_of(event);
    let status = if failed {
        Status {
            code: status::StatusCode::Error as i32,
            message: event
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        }
    } else {
        Status::default()
    };
    Span {
        trace_id,
        span_id: derived_id("intentproof.span", field("event_id"), 8),
        parent_span_id,
        name,
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: nanos(field("started_at")),
        end_time_unix_nano: nanos(field("completed_at")),
        attributes,
        status: Some(status),
        ..Span::default()
    }
}

/// The trace id of an event's span, and its parent span id (empty when it
/// has none): its `traceparent`'s when it came with one, else derived
/// from its correlation id.
fn trace_of(event: &Value) -> (Vec<u8>, Vec<u8>) {
    let traceparent = event
        .pointer("/attributes/intentproof.traceparent")
        .and_then(Value::as_str)
        .and_then(parse_traceparent);
    match traceparent {
        Some((trace, parent)) => (trace, parent),
        None => (
            derived_id(
                "intentproof.trace",
                event
                    .get("correlation_id")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                16,
            ),
            Vec::new(),
        ),
    }
}

/// The log record of finding `row` (id `id`); `evidence` is its first
/// evidence event, whose span it is attached to.
pub fn log_of(row: &FindingRow, id: &str, evidence: Option<&Value>) -> LogRecord {
    let mut attributes = vec![
        text("intentproof.finding.id", id),
        text("intentproof.finding.kind", row.kind.as_ref()),
        text("intentproof.correlation_id", &row.correlation_id),
        text("intentproof.action", &row.action),
        KeyValue {
            key: "intentproof.event.ids".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: row
                        .event_ids
                        .iter()
                        .map(|e| AnyValue {
                            value: Some(any_value::Value::StringValue(e.clone())),
                        })
                        .collect(),
                })),
            }),
            ..KeyValue::default()
        },
    ];
    if let Some(plan) = &row.plan_id {
        attributes.push(text("intentproof.plan.id", plan));
    }
    if let Some(intent) = &row.intent {
        attributes.push(text("intentproof.intent", intent));
    }
    if let Some(step) = row.step_index {
        attributes.push(int(
            "intentproof.step.index",
            i64::try_from(step).unwrap_or(i64::MAX),
        ));
    }
    let (trace_id, span_id) = match evidence {
        Some(event) => (
            trace_of(event).0,
            derived_id(
                "intentproof.span",
                event.get("event_id").and_then(Value::as_str).unwrap_or(""),
                8,
            ),
        ),
        None => (
            derived_id("intentproof.trace", &row.correlation_id, 16),
            Vec::new(),
        ),
    };
    LogRecord {
        time_unix_nano: nanos(&row.at),
        observed_time_unix_nano: nanos(&intentproof_core::now_rfc3339_millis()),
        severity_number: SeverityNumber::Warn as i32,
        severity_text: "WARN".into(),
        event_name: "intentproof.finding".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(row.message.clone())),
        }),
        attributes,
        trace_id,
        span_id,
        ..LogRecord::default()
    }
}

fn resource(daemon: &str) -> Resource {
    Resource {
        attributes: vec![
            text("service.name", "intentproof-gateway"),
            text("service.instance.id", daemon),
            text("service.version", env!("CARGO_PKG_VERSION")),
        ],
        ..Resource::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "intentproof-gateway".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..InstrumentationScope::default()
    }
}

/// One logs export request of `records`, under the daemon's resource.
pub fn logs_request_of(records: Vec<LogRecord>, daemon: &str) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(daemon)),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// One export request of `spans`, under the daemon's resource.
pub fn request_of(spans: Vec<Span>, daemon: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(daemon)),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// Runs one collector until `stop` turns true.
pub async fn run(
    config: OtlpConfig,
    store: Arc<Store>,
    daemon: String,
    appended: Arc<Notify>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut headers = crate::pump::request_headers(&config.name, &config.headers);
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static("application/x-protobuf"),
    );
    let client = match crate::pump::delivery_client(config.timeout_ms) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(otlp = %config.name, error = %e, "OTLP export disabled: cannot build HTTP client");
            return;
        }
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        if *stop.borrow() {
            return;
        }
        let wake = appended.notified();
        let (reader, cursor_name, batch, payloads, who) = (
            Arc::clone(&store),
            config.cursor(),
            config.batch_spans,
            config.include_payloads,
            daemon.clone(),
        );
        let next = tokio::task::spawn_blocking(move || {
            let cursor = reader.cursor(&cursor_name)?;
            let mut spans = Vec::new();
            for seq in cursor..cursor + batch as u64 {
                match reader.by_seq(seq)? {
                    Some(stored) => spans.push(span_of(
                        &stored.event,
                        seq,
                        &stored.entry.meta.content_hash,
                        &who,
                        payloads,
                    )),
                    None => break,
                }
            }
            Ok::<_, intentproof_store::StoreError>((cursor, spans))
        })
        .await;
        let (cursor, spans) = match next {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::error!(otlp = %config.name, error = %e, "OTLP export cannot read the store");
                (0, Vec::new())
            }
            Err(_) => return,
        };
        if spans.is_empty() {
            tokio::select! {
                _ = wake => {}
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        let count = spans.len() as u64;
        let body = request_of(spans, &daemon).encode_to_vec();
        let sent = client
            .post(&config.endpoint)
            .headers(headers.clone())
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                metrics.otlp(true, count);
                backoff.reset();
                let (writer, name) = (Arc::clone(&store), config.cursor());
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || writer.set_cursor(&name, cursor + count))
                        .await
                {
                    tracing::error!(otlp = %config.name, error = %e, "OTLP export cannot save its cursor");
                }
            }
            failed => {
                metrics.otlp(false, count);
                let log = |why: &str, wait: Duration| {
                    tracing::warn!(otlp = %config.name, record = cursor, error = %why, retry_in_ms = wait.as_millis() as u64, "OTLP export failed; will retry");
                };
                if !crate::pump::back_off(failed, &mut backoff, &mut stop, log).await {
                    return;
                }
            }
        }
    }
}

/// Runs the findings side of one collector until `stop` turns true: each
/// new finding as a log record, once (see the module docs).
pub async fn run_findings(
    config: OtlpConfig,
    state: Arc<AppState>,
    appended: Arc<Notify>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(url) = config.logs_url() else {
        return;
    };
    let mut headers = crate::pump::request_headers(&config.name, &config.headers);
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static("application/x-protobuf"),
    );
    let client = match crate::pump::delivery_client(config.timeout_ms) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(otlp = %config.name, error = %e, "OTLP findings disabled: cannot build HTTP client");
            return;
        }
    };
    let daemon = state.daemon_key.instance_id().to_owned();
    let sent = {
        let (dir, name) = (state.data_dir.path().to_owned(), config.name.clone());
        match tokio::task::spawn_blocking(move || DeliveryLog::open(&dir, "otlp", &name)).await {
            Ok(log) => log,
            Err(_) => return,
        }
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut seen_generation = None;
    let mut listed_at = std::time::Instant::now()
        .checked_sub(crate::finding_delivery::LISTING_GAP)
        .unwrap_or_else(std::time::Instant::now);
    loop {
        if *stop.borrow() {
            return;
        }
        let wake = appended.notified();
        let generation = state.findings.generation(std::time::SystemTime::now()).ok();
        if generation.is_none() || generation != seen_generation {
            listed_at = std::time::Instant::now();
            // The new findings, each with its first evidence event, as records.
            let (reader, log) = (Arc::clone(&state), sent.clone());
            let built = tokio::task::spawn_blocking(move || {
                let rows = all_findings(&reader.findings)?;
                let mut out = Vec::new();
                for row in rows {
                    let id = crate::webhook::finding_id(&row);
                    if log.contains(&id) {
                        continue;
                    }
                    let evidence = match row.event_ids.first() {
                        Some(event_id) => reader
                            .store
                            .get(event_id)
                            .map_err(|e| e.to_string())?
                            .map(|stored| stored.event),
                        None => None,
                    };
                    out.push((id.clone(), log_of(&row, &id, evidence.as_ref())));
                    if out.len() >= FINDINGS_PER_REQUEST {
                        break;
                    }
                }
                Ok::<_, String>(out)
            })
            .await;
            let pending = match built {
                Ok(Ok(pending)) => pending,
                Ok(Err(e)) => {
                    tracing::error!(otlp = %config.name, error = %e, "OTLP findings cannot be listed");
                    Vec::new()
                }
                Err(_) => return,
            };
            if pending.is_empty() {
                seen_generation = generation;
            } else {
                let count = pending.len() as u64;
                let (ids, records): (Vec<String>, Vec<LogRecord>) = pending.into_iter().unzip();
                let body = logs_request_of(records, &daemon).encode_to_vec();
                let sent_ok = client
                    .post(&url)
                    .headers(headers.clone())
                    .body(body)
                    .send()
                    .await;
                match sent_ok {
                    Ok(response) if response.status().is_success() => {
                        metrics.otlp_findings(true, count);
                        backoff.reset();
                        let log = sent.clone();
                        let recorded = tokio::task::spawn_blocking(move || {
                            let pairs: Vec<(&str, Option<&str>)> =
                                ids.iter().map(|id| (id.as_str(), None)).collect();
                            log.record(&pairs)
                        })
                        .await;
                        if let Ok(Err(e)) = recorded {
                            tracing::error!(otlp = %config.name, error = %e, "findings exported, but the delivery log cannot be written: they may be sent again after a restart");
                        }
                        // More may be waiting: look again at once.
                        continue;
                    }
                    failed => {
                        metrics.otlp_findings(false, count);
                        let log = |why: &str, wait: Duration| {
                            tracing::warn!(otlp = %config.name, error = %why, retry_in_ms = wait.as_millis() as u64, "OTLP findings export failed; will retry");
                        };
                        if !crate::pump::back_off(failed, &mut backoff, &mut stop, log).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        }
        if !crate::finding_delivery::next_look(wake, listed_at, &mut stop).await {
            return;
        }
    }
}

/// Findings per logs request.
const FINDINGS_PER_REQUEST: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parts_and_refusals() {
        let (trace, parent) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let hex: String = trace.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent, vec![0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }
}
