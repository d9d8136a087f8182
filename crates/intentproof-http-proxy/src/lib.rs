//! The HTTP API proxy: agents call plain HTTP tools (payments, email,
//! ticketing APIs) through `/proxy/<route>/<path>` on the daemon, and every
//! call becomes one [`ExecutionEvent`](intentproof_core::ExecutionEvent),
//! sealed by the daemon's sealer (which redacts first) and written by the one writer, like the MCP
//! gateway's events.
//!
//! # What it does
//!
//! - **Routes** come from `[[http.routes]]` ([`config::HttpRouteConfig`]):
//!   `/proxy/<name>/<rest>?<query>` goes to `<upstream><rest>?<query>`. The
//!   upstream URL is built only from the configured base and the checked
//!   rest of the path, never from the `Host` header, an absolute-form
//!   request target or anything else the agent sends, so only configured
//!   upstreams are reachable. Redirects are returned to the agent, not
//!   followed, unless `follow_redirects = true`, and then only to the same
//!   upstream (same host and port, under the base path), at most 10.
//! - **Headers**: end-to-end request headers are forwarded except
//!   hop-by-hop ones (and those a `Connection` header names), `Host`,
//!   `Content-Length`, `Expect`, every `X-IntentProof-*` header, and an
//!   `Authorization: Bearer <daemon token>`. The route's `headers`
//!   (credentials) are then set, replacing what the agent sent under those
//!   names, so the agent never needs to hold them. `traceparent` is
//!   forwarded (it is meant to travel end to end) and also read. Response
//!   headers are forwarded except hop-by-hop ones.
//! - **Intent and correlation**: `X-IntentProof-Correlation-Id`, else the
//!   trace id of `traceparent`, else a new id per call. The intent is
//!   `X-IntentProof-Intent`, else, when the correlation has an open
//!   declared plan (its latest `intentproof.plan.declare` event, not closed
//!   and not idle for `plan_idle_timeout_secs`; declared through an MCP
//!   plan tool, or over plain HTTP with `POST /v1/plans`, whose answer
//!   names the correlation to send), the purpose of the plan
//!   step naming this call's action (or the plan's intent), else the
//!   route's `default_intent`, else `"undeclared"` (the precedence of the
//!   MCP [`Recorder`](intentproof_mcp::recorder::Recorder)).
//! - **Actions**: `http.<name>.<METHOD>.<path>` by default; `action` is
//!   either a template using `{name}`, `{method}` and `{path}`, or a list of
//!   path templates (`/v1/refunds/{id}`) so that ids do not explode the
//!   action space (the first matching template names the action; a path no
//!   template matches is named by itself). The matched template is the
//!   `http.path_template` attribute.
//! - **The event**: inputs `{method, path, query (object, decoded), headers
//!   (the route's record_request_headers), body | body_sha256, body_bytes}`;
//!   output `{status, headers (record_response_headers), body |
//!   body_sha256, body_bytes}`. JSON bodies (`application/json`,
//!   `application/*+json`, not content-encoded) up to `record_body_bytes`
//!   are recorded as JSON, redacted before sealing; all other bodies as size
//!   and SHA-256. Credential headers are always redacted
//!   ([`intentproof_policy::redact::redact_headers`], and the sealer's
//!   built-in rule again). Attributes: `http.route`, `http.method`,
//!   `http.status_code`, `http.path_template`, and `intentproof.plan.id` /
//!   `intentproof.plan.step` when a plan step matched. Status `error` for
//!   5xx (`HttpError`), 4xx only with `error_on_4xx = true` (by default a
//!   4xx is the tool answering, not failing), connection failures
//!   (`ConnectError`, 502 to the agent), timeouts (`Timeout`, 504), other
//!   upstream failures (`UpstreamError`, 502), a body that breaks mid-way
//!   (`BodyError`) and an agent that hangs up early (`ClientAborted`).
//! - **Streaming**: response bodies pass through chunk by chunk (SSE,
//!   chunked, large downloads) with constant memory: only a JSON body up to
//!   `record_body_bytes` is kept, anything else is hashed as it passes. The
//!   call is recorded when the body ends (or fails, or the agent goes away).
//! - **Refusals**: after authentication, every refused request is recorded
//!   with status `error` (`Refused`) and answered with 4xx and the daemon's
//!   `{"error", "reason"}` body: `http.<name>.refused` for a configured
//!   route (absolute-form target `absolute_target`, a `Host` that is not the
//!   daemon's `host_not_allowed`, path tricks `bad_path`, malformed
//!   `X-IntentProof-*` headers `bad_header`), and `http.refused` for an
//!   unknown route name (`unknown_route`, 404): route names cannot contain
//!   `.`, so the two never collide. Findings never count a refusal as a
//!   call ([`intentproof_findings::is_call`]). A body over `max_body_bytes` gets 413
//!   (`too_large`) and is recorded under the call's own action
//!   (`RequestTooLarge`).
//!
//! # Authentication
//!
//! The proxy spends the route's credentials, so it is not open: every call
//! carries the daemon token (the `token` file in the data dir) in
//! `X-IntentProof-Token`. That header keeps `Authorization` free for the
//! upstream. An agent that sends the token as `Authorization: Bearer
//! <token>` is accepted too, and that header is then never forwarded.
//! Unauthenticated requests get 401 and are not recorded (otherwise any
//! local process could fill the journal).
//!
//! # What it does not do
//!
//! - Request bodies are read whole (bounded by `max_body_bytes`) before
//!   forwarding, so they can be recorded; response bodies are streamed.
//! - No `Upgrade` (WebSocket) and no HTTP trailers; `Location` headers of
//!   unfollowed redirects are passed back unchanged (they name the
//!   upstream, not the proxy).
//! - The agent's response does not wait for the record to be fsync'd (the
//!   record is made when the body ends, after the agent has it); like the
//!   MCP gateway over HTTP, a full write queue drops the record with an
//!   error log and a metrics count instead of failing the call.

pub mod config;
mod record;
mod route;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use intentproof_core::{AttributeValue, Attributes, ErrorInfo};
use intentproof_policy::guard::{self, Decision, Enforce, GuardPlan, GuardStep, StepBounds};
use intentproof_policy::verification::DeclaredPlan;
use intentproof_store::{Store, StoreError};
use serde_json::{Map, Value, json};

use self::record::{BodyCapture, Call, RecordingBody, error_info, recorded_headers, root_cause};
use self::route::{
    ActionNamer, TargetPath, Upstream, check_added_header, check_path, is_hop_by_hop,
    parse_upstream,
};
use crate::config::HttpConfig;
use intentproof_mcp::recorder::{PLAN_ACTION, UNDECLARED, text_attr};
use intentproof_mcp::sink::RecordSink;

pub use self::record::is_json;

/// Header carrying the daemon token on proxy calls.
pub const TOKEN_HEADER: &str = "x-intentproof-token";
/// Header carrying the call's intent.
pub const INTENT_HEADER: &str = "x-intentproof-intent";
/// Header carrying the call's correlation id.
pub const CORRELATION_HEADER: &str = "x-intentproof-correlation-id";
/// Action of a refused request whose route name is not configured.
pub const UNKNOWN_ROUTE_ACTION: &str = "http.refused";

/// Longest intent header accepted (bytes).
const MAX_INTENT_BYTES: usize = 1024;
/// Longest correlation id accepted (bytes).
pub const MAX_CORRELATION_BYTES: usize = 256;
/// Longest request target kept in a refusal record (characters).
const MAX_RECORDED_TARGET: usize = 2048;
/// Redirects followed at most, when following is on.
const MAX_REDIRECTS: usize = 10;

struct Route {
    name: String,
    upstream: Upstream,
    client: reqwest::Client,
    added: HeaderMap,
    namer: ActionNamer,
    timeout: Duration,
    max_body_bytes: usize,
    record_body_bytes: usize,
    error_on_4xx: bool,
    default_intent: Option<String>,
    record_request: Vec<HeaderName>,
    record_response: Vec<HeaderName>,
    enforce: Enforce,
}

/// The configured routes and what the proxy needs from the daemon.
pub struct HttpProxy {
    routes: HashMap<String, Route>,
    allowed_hosts: Vec<String>,
    recording: Arc<dyn RecordSink>,
    store: Arc<Store>,
    plan_idle_timeout: Duration,
    /// What was read of each correlation's plans ([`open_plan`]).
    plan_follows: Arc<PlanFollows>,
    /// Calls the guard let through per plan and step (`enforce = "plan"`
    /// routes), counted from the store when a plan is first seen.
    guard_calls: Arc<GuardCalls>,
    token: String,
    token_path: PathBuf,
    /// Calls held for a person's approval, and who is asked.
    approvals: Approvals,
}

/// Approval rules and who decides (`[approvals]` in the daemon's config).
#[derive(Debug, Clone)]
pub struct Approvals {
    /// The rules (every route's).
    pub rules: Arc<[guard::ApprovalRule]>,
    /// How long a held call waits.
    pub timeout: Duration,
    /// Who is asked.
    pub approver: Arc<dyn intentproof_mcp::approver::Approver>,
}

/// What the daemon hands the proxy.
pub struct ProxyDeps {
    /// Where recorded events go (the daemon seals and stores them).
    pub recording: Arc<dyn RecordSink>,
    /// The store, to find a correlation's open plan.
    pub store: Arc<Store>,
    /// When a declared plan counts as closed for lack of calls.
    pub plan_idle_timeout: Duration,
    /// The daemon token proxy calls must carry.
    pub token: String,
    /// Where that token is (for error messages).
    pub token_path: PathBuf,
    /// The daemon's listen address (its IP is an allowed `Host`).
    pub listen: SocketAddr,
    /// Calls held for a person's approval.
    pub approvals: Approvals,
}

fn header_names(names: &[String]) -> Result<Vec<HeaderName>, String> {
    names
        .iter()
        .map(|n| {
            HeaderName::from_bytes(n.as_bytes()).map_err(|_| format!("{n:?} is not a header name"))
        })
        .collect()
}

pub(crate) use intentproof_upstream::trust_ca_file;

impl HttpProxy {
    /// The proxy for `config` (already validated: [`HttpConfig::validate`]).
    pub fn new(config: &HttpConfig, deps: ProxyDeps) -> Result<HttpProxy, String> {
        let mut routes = HashMap::new();
        for route in &config.routes {
            let at = |e: String| format!("http route {:?}: {e}", route.name);
            let upstream = parse_upstream(&route.upstream).map_err(at)?;
            let mut added = HeaderMap::new();
            for (name, value) in &route.headers {
                let (name, value) = check_added_header(name, value).map_err(at)?;
                added.append(name, value);
            }
            let namer = match &route.action {
                Some(action) => ActionNamer::new(&route.name, action).map_err(at)?,
                None => ActionNamer::default_namer(),
            };
            let redirect = if route.follow_redirects {
                let within = upstream.clone();
                reqwest::redirect::Policy::custom(move |attempt| {
                    if attempt.previous().len() >= MAX_REDIRECTS || !within.contains(attempt.url())
                    {
                        attempt.stop()
                    } else {
                        attempt.follow()
                    }
                })
            } else {
                reqwest::redirect::Policy::none()
            };
            let timeout = Duration::from_millis(route.timeout_ms);
            let mut builder = reqwest::Client::builder()
                .redirect(redirect)
                // Environment proxies would see the route's credentials.
                .no_proxy()
                .connect_timeout(timeout)
                .read_timeout(Duration::from_millis(route.idle_timeout_ms))
                .tcp_nodelay(true);
            if let Some(path) = &route.ca_file {
                builder = trust_ca_file(builder, path).map_err(at)?;
            }
            let client = builder
                .build()
                .map_err(|e| at(format!("cannot build its HTTP client: {e}")))?;
            routes.insert(
                route.name.clone(),
                Route {
                    name: route.name.clone(),
                    upstream,
                    client,
                    added,
                    namer,
                    timeout,
                    max_body_bytes: route.max_body_bytes,
                    record_body_bytes: route.record_body_bytes,
                    error_on_4xx: route.error_on_4xx,
                    default_intent: route.default_intent.clone(),
                    enforce: route.enforce,
                    record_request: header_names(&route.record_request_headers).map_err(at)?,
                    record_response: header_names(&route.record_response_headers).map_err(at)?,
                },
            );
        }
        let mut allowed_hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .map(String::from)
            .to_vec();
        let ip = deps.listen.ip();
        if !ip.is_unspecified() {
            allowed_hosts.push(match ip {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            });
        }
        allowed_hosts.extend(config.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()));
        Ok(HttpProxy {
            routes,
            allowed_hosts,
            recording: deps.recording,
            store: deps.store,
            plan_idle_timeout: deps.plan_idle_timeout,
            plan_follows: Arc::default(),
            guard_calls: Arc::default(),
            token: deps.token,
            token_path: deps.token_path,
            approvals: deps.approvals,
        })
    }

    fn is_gateway_bearer(&self, value: &HeaderValue) -> bool {
        value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| intentproof_api::same_token(given.trim(), &self.token))
    }

    fn authenticated(&self, headers: &HeaderMap) -> bool {
        let via_header = headers
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|given| intentproof_api::same_token(given.trim(), &self.token));
        via_header
            || headers
                .get_all(header::AUTHORIZATION)
                .iter()
                .any(|v| self.is_gateway_bearer(v))
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST) else {
            return true;
        };
        let Ok(host) = host.to_str() else {
            return false;
        };
        let host = host.trim();
        let name = if host.starts_with('[') {
            host.split_inclusive(']').next().unwrap_or(host)
        } else {
            host.split(':').next().unwrap_or(host)
        };
        let name = name.to_ascii_lowercase();
        self.allowed_hosts.contains(&name)
    }

    /// Hands over (blocking, bounded) the calls recorded so far, so that an
    /// event the daemon stores next (a plan close) is ordered after every
    /// call whose answer had already ended.
    pub fn flush_recorded(&self) {
        self.recording.flush();
    }

    fn record(&self, call: Call, output: Option<Value>, error: Option<ErrorInfo>) {
        self.recording.record(vec![call.event(output, error)]);
    }
}

/// The error body every daemon route uses ([`intentproof_api::ErrorBody`]).
fn error_response(status: StatusCode, reason: &'static str, message: &str) -> Response {
    (
        status,
        axum::Json(intentproof_api::ErrorBody::new(reason, message)),
    )
        .into_response()
}

/// Intent and correlation the agent sent.
#[derive(Default)]
struct Declared {
    intent: Option<String>,
    correlation_id: Option<String>,
}

fn declared(headers: &HeaderMap) -> Result<Declared, String> {
    let intent = match headers.get(INTENT_HEADER) {
        None => None,
        Some(value) => {
            let text = std::str::from_utf8(value.as_bytes())
                .map_err(|_| "X-IntentProof-Intent is not UTF-8".to_owned())?
                .trim();
            if text.is_empty() || text.len() > MAX_INTENT_BYTES {
                return Err(format!(
                    "X-IntentProof-Intent must be 1 to {MAX_INTENT_BYTES} bytes"
                ));
            }
            Some(text.to_owned())
        }
    };
    let correlation_id = match headers.get(CORRELATION_HEADER) {
        None => headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(intentproof_mcp::recorder::trace_id),
        Some(value) => {
            let text = value.to_str().map(str::trim).unwrap_or_default();
            if !is_valid_correlation_id(text) {
                return Err(format!(
                    "X-IntentProof-Correlation-Id must be 1 to {MAX_CORRELATION_BYTES} visible ASCII characters"
                ));
            }
            Some(text.to_owned())
        }
    };
    Ok(Declared {
        intent,
        correlation_id,
    })
}

/// Whether `text` can travel in `X-IntentProof-Correlation-Id`: 1 to
/// [`MAX_CORRELATION_BYTES`] visible ASCII characters. `POST /v1/plans`
/// holds a chosen correlation id to the same rule, so every plan it
/// records can be named by proxied calls.
pub fn is_valid_correlation_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_CORRELATION_BYTES
        && text.bytes().all(|b| b.is_ascii_graphic())
}

/// Splits `/proxy/<name><rest>` into the name and the rest (`""` or `/...`).
fn split_target(path: &str) -> (&str, &str) {
    let after = path.strip_prefix("/proxy/").unwrap_or_default();
    match after.find('/') {
        Some(at) => (&after[..at], &after[at..]),
        None => (after, ""),
    }
}

/// A refused request: answered with 4xx, recorded as `Refused`.
fn refuse(
    proxy: &HttpProxy,
    route: Option<&Route>,
    parts: &Parts,
    context: &Declared,
    (started, clock): (SystemTime, Instant),
    (status, reason, message): (StatusCode, &'static str, String),
) -> Response {
    let action = match route {
        Some(route) => format!("http.{}.refused", route.name),
        None => UNKNOWN_ROUTE_ACTION.to_owned(),
    };
    let target: String = parts
        .uri
        .to_string()
        .chars()
        .take(MAX_RECORDED_TARGET)
        .collect();
    let mut inputs = Map::new();
    inputs.insert("method".into(), Value::from(parts.method.as_str()));
    inputs.insert("target".into(), Value::from(target));
    if let Some(host) = parts.headers.get(header::HOST) {
        inputs.insert(
            "host".into(),
            Value::from(String::from_utf8_lossy(host.as_bytes()).into_owned()),
        );
    }
    let mut attributes = Attributes::new();
    if let Some(route) = route {
        attributes.insert("http.route".into(), text_attr(&route.name));
    }
    attributes.insert("http.method".into(), text_attr(parts.method.as_str()));
    attributes.insert("http.refused.reason".into(), text_attr(reason));
    let call = Call {
        intent: context
            .intent
            .clone()
            .unwrap_or_else(|| UNDECLARED.to_owned()),
        action,
        correlation_id: context
            .correlation_id
            .clone()
            .unwrap_or_else(intentproof_core::new_event_id),
        inputs: Value::Object(inputs),
        attributes,
        started,
        clock,
    };
    proxy.record(
        call,
        Some(json!({"status": status.as_u16()})),
        Some(error_info("Refused", message.clone())),
    );
    error_response(status, reason, &message)
}

enum BodyError {
    TooLarge,
    Failed(String),
}

async fn read_body(body: Body, max: usize, declared: Option<u64>) -> Result<Bytes, BodyError> {
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Failed(root_cause(&e)))?;
        if buffer.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buffer))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The query string as an object (decoded; repeated keys become arrays), so
/// key rules such as `api_key` redact it.
fn query_object(url: &reqwest::Url) -> Value {
    let mut out = Map::new();
    for (key, value) in url.query_pairs() {
        let value = Value::String(value.into_owned());
        match out.get_mut(key.as_ref()) {
            None => {
                out.insert(key.into_owned(), value);
            }
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
        }
    }
    Value::Object(out)
}

/// What the proxy has read of one correlation's plans.
#[derive(Clone, Default)]
struct PlanFollow {
    /// The highest seq of the correlation read so far.
    through: Option<u64>,
    /// The latest valid declaration unless closed since: its seq and the
    /// SHA-256 of its plan id. The plan is read again when needed, so an
    /// entry's size does not depend on what the events hold.
    open: Option<(u64, [u8; 32])>,
}

/// Correlations whose plans the proxy follows. Beyond this many it starts
/// over: a forgotten correlation is read in full once more.
const PLAN_FOLLOWS: usize = 10_000;

/// The correlations the proxy has read plans of.
type PlanFollows = std::sync::Mutex<HashMap<String, PlanFollow>>;

/// The open declared plan of `correlation`: its latest valid declaration,
/// unless closed explicitly since or idle. Mirrors the rules of
/// [`intentproof_findings`]. Reads only what the correlation stored since the
/// last call (`follows`): reading the whole chain on every call made a
/// long task's calls slower and slower (13 ms per call at ~3,500 events).
fn open_plan(
    store: &Store,
    follows: &PlanFollows,
    correlation: &str,
    idle: Duration,
    now: SystemTime,
) -> Result<Option<OpenPlan>, StoreError> {
    let lock = || {
        follows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let mut follow = lock().get(correlation).cloned().unwrap_or_default();
    let (events, through) = store.correlation_actions_after(
        correlation,
        &[PLAN_ACTION, intentproof_findings::PLAN_CLOSE_ACTION],
        follow.through,
    )?;
    let digest = |plan_id: &str| -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(plan_id.as_bytes()).into()
    };
    for stored in &events {
        if stored.entry.meta.action == PLAN_ACTION {
            if let Some(plan) = intentproof_findings::declared_plan(stored) {
                follow.open = Some((stored.entry.seq, digest(&plan.plan_id)));
            }
        } else if let Some(closed) = stored
            .event
            .pointer("/inputs/plan_id")
            .and_then(Value::as_str)
            && follow.open.is_some_and(|(_, open)| open == digest(closed))
        {
            follow.open = None;
        }
    }
    follow.through = through;
    let open = follow.open;
    {
        let mut follows = lock();
        // Another call may have read further meanwhile: keep the furthest.
        if follows
            .get(correlation)
            .is_none_or(|known| known.through < follow.through)
        {
            if follows.len() >= PLAN_FOLLOWS && !follows.contains_key(correlation) {
                follows.clear();
            }
            follows.insert(correlation.to_owned(), follow);
        }
    }
    let Some((seq, _)) = open else {
        return Ok(None);
    };
    let Some(declaration) = store.by_seq(seq)? else {
        return Ok(None);
    };
    let Some(plan) = intentproof_findings::declared_plan(&declaration) else {
        return Ok(None);
    };
    // The bounds a guarded route enforces, as the declaration gave them
    // (a declaration whose bounds do not parse bounds nothing).
    let bounds = declaration
        .event
        .get("inputs")
        .and_then(|inputs| intentproof_policy::verification::parse_plan_arguments(inputs).ok())
        .map(|parsed| parsed.bounds)
        .filter(|bounds| bounds.len() == plan.steps.len())
        .unwrap_or_else(|| vec![StepBounds::default(); plan.steps.len()]);
    let plan = OpenPlan {
        guard_steps: plan
            .steps
            .iter()
            .zip(bounds)
            .map(|(step, bounds)| GuardStep {
                action: step.action.clone(),
                bounds,
            })
            .collect(),
        plan,
    };
    let idle_now = store.chain_summary(correlation)?.is_some_and(|summary| {
        humantime::parse_rfc3339_weak(&summary.last_at)
            .ok()
            .and_then(|last| now.duration_since(last).ok())
            .is_some_and(|quiet| quiet >= idle)
    });
    Ok((!idle_now).then_some(plan))
}

/// A correlation's open plan, with the bounds of its steps.
struct OpenPlan {
    plan: DeclaredPlan,
    /// Its steps as the guard sees them.
    guard_steps: Vec<GuardStep>,
}

/// Plans whose calls the guard counts, at most this many (then the counts
/// are read from the store again).
const GUARD_PLANS: usize = 10_000;

/// Calls the guard let through, per plan id and step.
type GuardCalls = std::sync::Mutex<HashMap<String, Vec<u32>>>;

/// Makes sure `counts` holds the calls the guard let through so far under
/// each step of `plan` in `correlation`: counted once from the store
/// (events of the plan marked allowed), then kept by [`decide_counted`].
fn load_guard_counts(
    store: &Store,
    counts: &GuardCalls,
    correlation: &str,
    plan: &OpenPlan,
) -> Result<(), StoreError> {
    let lock = || {
        counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if lock().contains_key(&plan.plan.plan_id) {
        return Ok(());
    }
    let mut made = vec![0u32; plan.guard_steps.len()];
    for stored in store.chain(correlation)? {
        let attributes = stored.event.get("attributes");
        let attribute = |key: &str| attributes.and_then(|a| a.get(key));
        if attribute("intentproof.plan.id").and_then(Value::as_str) == Some(&plan.plan.plan_id)
            && attribute(guard::DECISION_ATTRIBUTE).and_then(Value::as_str) == Some("allowed")
            && let Some(step) = attribute("intentproof.plan.step")
                .and_then(Value::as_u64)
                .and_then(|s| usize::try_from(s).ok())
            && let Some(n) = made.get_mut(step)
        {
            *n = n.saturating_add(1);
        }
    }
    let mut counts = lock();
    if counts.len() >= GUARD_PLANS {
        counts.clear();
    }
    counts.entry(plan.plan.plan_id.clone()).or_insert(made);
    Ok(())
}

/// Decides `call` under `plan` and, when it is let through, counts it
/// against its step, both under one lock: two calls racing for a step's
/// last allowed call cannot both get it.
fn decide_counted(
    counts: &GuardCalls,
    enforce: Enforce,
    call: guard::Call<'_>,
    plan: Option<&OpenPlan>,
) -> Decision {
    let Some(open) = plan else {
        return guard::decide(enforce, call, None);
    };
    let mut counts = counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let made = counts
        .entry(open.plan.plan_id.clone())
        .or_insert_with(|| vec![0; open.guard_steps.len()]);
    let decision = guard::decide(
        enforce,
        call,
        Some(&GuardPlan {
            plan_id: &open.plan.plan_id,
            steps: &open.guard_steps,
            calls: made,
        }),
    );
    if let Decision::Allow { step: Some(step) } = decision
        && let Some(n) = made.get_mut(step)
    {
        *n = n.saturating_add(1);
    }
    decision
}

/// The step of `plan` that names `action`. A plan declared through an MCP
/// server's plan tool prefixes bare step names with `mcp.<server>.`, so
/// that form matches too.
fn plan_step(plan: &DeclaredPlan, action: &str) -> Option<usize> {
    let suffix = format!(".{action}");
    plan.steps.iter().position(|s| {
        s.action == action || (s.action.starts_with("mcp.") && s.action.ends_with(&suffix))
    })
}

/// Handles one `/proxy/<name>/...` request.
pub async fn handle(proxy: Arc<HttpProxy>, request: Request) -> Response {
    let started = SystemTime::now();
    let clock = Instant::now();
    let (parts, body) = request.into_parts();
    if !proxy.authenticated(&parts.headers) {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            &format!(
                "the HTTP proxy needs the daemon token in `X-IntentProof-Token: <token>`; the token is in {}",
                proxy.token_path.display()
            ),
        );
    }
    let (name, rest) = split_target(parts.uri.path());
    let route = proxy.routes.get(name);
    let at = (started, clock);
    let context = match declared(&parts.headers) {
        Ok(context) => context,
        Err(message) => {
            return refuse(
                &proxy,
                route,
                &parts,
                &Declared::default(),
                at,
                (StatusCode::BAD_REQUEST, "bad_header", message),
            );
        }
    };
    let refused = |status, reason, message: String| {
        refuse(
            &proxy,
            route,
            &parts,
            &context,
            at,
            (status, reason, message),
        )
    };
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        return refused(
            StatusCode::BAD_REQUEST,
            "absolute_target",
            "absolute-form request targets (a full URL in the request line) are refused; send the path only, /proxy/<route>/...".into(),
        );
    }
    if !proxy.host_allowed(&parts.headers) {
        return refused(
            StatusCode::BAD_REQUEST,
            "host_not_allowed",
            "the Host header names a host this daemon does not serve; call it by its listen address (or add the name to http.allowed_hosts)".into(),
        );
    }
    let Some(route) = route else {
        let mut names: Vec<&str> = proxy.routes.keys().map(String::as_str).collect();
        names.sort_unstable();
        return refused(
            StatusCode::NOT_FOUND,
            "unknown_route",
            format!(
                "no HTTP route named {name:?} is configured (configured: {}); see [[http.routes]]",
                names.join(", ")
            ),
        );
    };
    let path = match check_path(rest) {
        Ok(path) => path,
        Err(why) => return refused(StatusCode::BAD_REQUEST, "bad_path", why),
    };
    let url = match route.upstream.url(&path.raw, parts.uri.query()) {
        Ok(url) => url,
        Err(why) => return refused(StatusCode::BAD_REQUEST, "bad_path", why),
    };
    forward(&proxy, route, parts, body, context, path, url, at).await
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    proxy: &Arc<HttpProxy>,
    route: &Route,
    parts: Parts,
    body: Body,
    context: Declared,
    path: TargetPath,
    url: reqwest::Url,
    (started, clock): (SystemTime, Instant),
) -> Response {
    let method = parts.method.clone();
    let (action, template) = route.namer.name(&route.name, method.as_str(), &path);
    let mut inputs = Map::new();
    inputs.insert("method".into(), Value::from(method.as_str()));
    inputs.insert(
        "path".into(),
        Value::from(if path.raw.is_empty() {
            "/"
        } else {
            path.raw.as_str()
        }),
    );
    if url.query().is_some() {
        inputs.insert("query".into(), query_object(&url));
    }
    inputs.insert(
        "headers".into(),
        recorded_headers(&parts.headers, &route.record_request),
    );
    let mut attributes = Attributes::new();
    attributes.insert("http.route".into(), text_attr(&route.name));
    attributes.insert("http.method".into(), text_attr(method.as_str()));
    if let Some(template) = &template {
        attributes.insert("http.path_template".into(), text_attr(template));
    }
    // The W3C trace context the call came with (kept so an OpenTelemetry
    // export joins the caller's trace).
    if let Some(traceparent) = parts
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|t| t.len() <= 128 && intentproof_mcp::recorder::trace_id(t).is_some())
    {
        attributes.insert(
            "intentproof.traceparent".into(),
            text_attr(traceparent.trim()),
        );
    }

    // Intent: explicit, else the open plan's step, else the route default.
    let plan = match &context.correlation_id {
        Some(correlation) => {
            let store = Arc::clone(&proxy.store);
            let follows = Arc::clone(&proxy.plan_follows);
            let correlation = correlation.clone();
            let idle = proxy.plan_idle_timeout;
            match tokio::task::spawn_blocking(move || {
                open_plan(&store, &follows, &correlation, idle, SystemTime::now())
            })
            .await
            {
                Ok(Ok(plan)) => plan,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the correlation's plan; recording the call without it");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "plan lookup failed");
                    None
                }
            }
        }
        None => None,
    };
    let step = plan
        .as_ref()
        .map(|open| &open.plan)
        .and_then(|plan| Some((plan, plan_step(plan, &action)?)));
    let intent = context
        .intent
        .clone()
        .or_else(|| {
            let (plan, index) = step?;
            let purpose = plan.steps[index].purpose.trim();
            Some(if purpose.is_empty() {
                plan.intent.clone()
            } else {
                purpose.to_owned()
            })
        })
        .or_else(|| route.default_intent.clone())
        .unwrap_or_else(|| UNDECLARED.to_owned());
    if let Some((plan, index)) = step {
        attributes.insert("intentproof.plan.id".into(), text_attr(&plan.plan_id));
        attributes.insert(
            "intentproof.plan.step".into(),
            AttributeValue::from(index as u64),
        );
    }
    let correlation_id = context
        .correlation_id
        .clone()
        .unwrap_or_else(intentproof_core::new_event_id);

    let bytes = read_body(body, route.max_body_bytes, content_length(&parts.headers)).await;
    let mut call = Call {
        intent,
        action,
        correlation_id,
        inputs: Value::Null,
        attributes,
        started,
        clock,
    };
    let bytes = match bytes {
        Ok(bytes) => bytes,
        Err(failure) => {
            call.inputs = Value::Object(inputs);
            let (status, reason, name, message) = match failure {
                BodyError::TooLarge => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "RequestTooLarge",
                    format!(
                        "the request body is larger than max_body_bytes = {} of route {:?}; it was not forwarded",
                        route.max_body_bytes, route.name
                    ),
                ),
                BodyError::Failed(cause) => (
                    StatusCode::BAD_REQUEST,
                    "body_error",
                    "RequestBodyError",
                    format!("the request body could not be read: {cause}"),
                ),
            };
            proxy.record(
                call,
                Some(json!({"status": status.as_u16()})),
                Some(error_info(name, message.clone())),
            );
            return error_response(status, reason, &message);
        }
    };
    let mut capture = BodyCapture::new(record::is_json(&parts.headers), route.record_body_bytes);
    capture.feed(&bytes);
    capture.finish(&mut inputs);
    call.inputs = Value::Object(inputs);

    if route.enforce != Enforce::Off || !proxy.approvals.rules.is_empty() {
        let arguments = if record::is_json(&parts.headers) {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        let sent = context.correlation_id.is_some();
        // A route that enforces no plan reads no plan counts (approval only).
        let enforced = plan.as_ref().filter(|_| route.enforce == Enforce::Plan);
        call = match guard_call(proxy, call, enforced, route, &arguments, sent).await {
            Ok(call) => call,
            Err(refused) => return refused,
        };
    }

    // What goes upstream.
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + route.added.len());
    for (name, value) in &parts.headers {
        let skip = is_hop_by_hop(name, &parts.headers)
            || route::is_managed(name.as_str())
            || (name == header::AUTHORIZATION && proxy.is_gateway_bearer(value));
        if !skip {
            headers.append(name.clone(), value.clone());
        }
    }
    for name in route.added.keys() {
        headers.remove(name);
    }
    for (name, value) in &route.added {
        headers.append(name.clone(), value.clone());
    }
    let has_body = !bytes.is_empty() || parts.headers.contains_key(header::CONTENT_LENGTH);
    let mut upstream = route.client.request(method.clone(), url).headers(headers);
    if has_body {
        upstream = upstream.body(bytes);
    }
    let sent = tokio::time::timeout(route.timeout, upstream.send()).await;
    let response = match sent {
        Ok(Ok(response)) => response,
        Err(_) => return failed(proxy, call, timeout_failure(route)),
        Ok(Err(e)) => return failed(proxy, call, send_failure(route, &e)),
    };

    let status = response.status();
    call.attributes.insert(
        "http.status_code".into(),
        AttributeValue::from(status.as_u16()),
    );
    let upstream_headers = response.headers().clone();
    let mut out_headers = HeaderMap::with_capacity(upstream_headers.len());
    for (name, value) in &upstream_headers {
        if !is_hop_by_hop(name, &upstream_headers) {
            out_headers.append(name.clone(), value.clone());
        }
    }
    let bodiless = method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let expected = if bodiless {
        Some(0)
    } else {
        content_length(&upstream_headers)
    };
    let body = RecordingBody::new(
        response.bytes_stream().boxed(),
        BodyCapture::new(record::is_json(&upstream_headers), route.record_body_bytes),
        expected,
        call,
        Arc::clone(&proxy.recording),
        status,
        recorded_headers(&upstream_headers, &route.record_response),
        route.error_on_4xx,
    );
    let mut answer = Response::new(Body::from_stream(body));
    *answer.status_mut() = status;
    *answer.headers_mut() = out_headers;
    answer
}

/// The guard's decision on a call of a route with `enforce = "plan"`: an
/// allowed call counts against its step and says so in its event; a
/// refused one is recorded now and answered with 403, never forwarded.
async fn guard_call(
    proxy: &Arc<HttpProxy>,
    mut call: Call,
    plan: Option<&OpenPlan>,
    route: &Route,
    arguments: &Value,
    correlation_sent: bool,
) -> Result<Call, Response> {
    // The counts are read from the store once per plan; after that a call
    // neither clones the plan nor leaves its task.
    if let Some(open) = plan
        && !proxy
            .guard_calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&open.plan.plan_id)
    {
        let store = Arc::clone(&proxy.store);
        let counts = Arc::clone(&proxy.guard_calls);
        let correlation = call.correlation_id.clone();
        let view = OpenPlan {
            plan: open.plan.clone(),
            guard_steps: open.guard_steps.clone(),
        };
        let loaded = tokio::task::spawn_blocking(move || {
            load_guard_counts(&store, &counts, &correlation, &view)
        })
        .await;
        if !matches!(loaded, Ok(Ok(()))) {
            // Fail closed: without the counts no bound can be checked.
            let message = "the plan's calls could not be read from the store, so the call was not checked; retry shortly";
            proxy.record(
                call,
                None,
                Some(error_info(guard::REFUSED_ERROR_NAME, message.to_owned())),
            );
            return Err(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "guard_unavailable",
                message,
            ));
        }
    }
    let decision = decide_counted(
        &proxy.guard_calls,
        route.enforce,
        guard::Call {
            action: &call.action,
            arguments,
            step: None,
        },
        plan,
    );
    let fingerprint = |open: &OpenPlan| guard::fingerprint(&open.plan.plan_id, &open.guard_steps);
    match decision {
        // `decide` (plan enforcement) never holds a call: approval is next.
        Decision::Allow { step } | Decision::Hold { step, .. } => {
            let rule = guard::approval::matching(&proxy.approvals.rules, &call.action, arguments);
            if route.enforce != Enforce::Off || rule.is_some() {
                call.attributes
                    .insert(guard::DECISION_ATTRIBUTE.into(), text_attr("allowed"));
            }
            if let (Some(open), Some(step)) = (plan, step) {
                call.attributes.insert(
                    guard::FINGERPRINT_ATTRIBUTE.into(),
                    text_attr(fingerprint(open)),
                );
                call.attributes
                    .insert("intentproof.plan.id".into(), text_attr(&open.plan.plan_id));
                call.attributes.insert(
                    "intentproof.plan.step".into(),
                    AttributeValue::from(step as u64),
                );
            }
            match rule {
                Some(rule) => hold_call(proxy, call, route, arguments, rule, plan, step).await,
                None => Ok(call),
            }
        }
        Decision::Refuse(mut refusal) => {
            if refusal.rule == "plan.none" && !correlation_sent {
                // The likely cause: the plan exists, the call did not say
                // which correlation it belongs to.
                refusal.message.push_str(
                    "; this call sent no correlation: name the plan's in X-IntentProof-Correlation-Id",
                );
            }
            let applied = plan.filter(|_| refusal.rule != "plan.none");
            call.attributes
                .insert(guard::DECISION_ATTRIBUTE.into(), text_attr("refused"));
            call.attributes
                .insert(guard::RULE_ATTRIBUTE.into(), text_attr(refusal.rule));
            let mut body = json!({
                "error": refusal.message,
                "reason": "refused_by_policy",
                "rule": refusal.rule,
            });
            if let Some(open) = applied {
                let fingerprint = fingerprint(open);
                call.attributes
                    .insert(guard::FINGERPRINT_ATTRIBUTE.into(), text_attr(&fingerprint));
                body["plan_id"] = json!(open.plan.plan_id);
                body["fingerprint"] = json!(fingerprint);
            }
            proxy.record(
                call,
                None,
                Some(error_info(
                    guard::REFUSED_ERROR_NAME,
                    refusal.message.clone(),
                )),
            );
            Err((StatusCode::FORBIDDEN, axum::Json(body)).into_response())
        }
    }
}

/// Holds a call an approval rule matched until a person decides: the
/// request and the decision are recorded in its correlation; an approved
/// call goes on, any other is refused (403) and recorded so, and gives
/// back the plan step it was counted for.
async fn hold_call(
    proxy: &Arc<HttpProxy>,
    mut call: Call,
    route: &Route,
    arguments: &Value,
    rule: usize,
    plan: Option<&OpenPlan>,
    step: Option<usize>,
) -> Result<Call, Response> {
    use intentproof_mcp::approver::{
        APPROVAL_ID_ATTRIBUTE, APPROVED_BY_ATTRIBUTE, decided_event, refusal_message,
        requested_event,
    };
    let approvals = &proxy.approvals;
    let now = SystemTime::now();
    let request = guard::approval::Request {
        id: intentproof_core::new_event_id(),
        correlation_id: call.correlation_id.clone(),
        // Proxied calls carry the daemon token: no agent of their own.
        agent: "unknown".to_owned(),
        server: route.name.clone(),
        tool: call.action.clone(),
        action: call.action.clone(),
        arguments: arguments.clone(),
        arguments_digest: guard::approval::arguments_digest(arguments),
        policy_fingerprint: guard::approval::fingerprint(&approvals.rules),
        rule: approvals
            .rules
            .get(rule)
            .map(guard::ApprovalRule::describe)
            .unwrap_or_default(),
        intent: call.intent.clone(),
        plan_id: plan.map(|p| p.plan.plan_id.clone()),
        plan_step: step,
        requested_at: intentproof_core::format_rfc3339_millis(now),
        expires_at: intentproof_core::format_rfc3339_millis(now + approvals.timeout),
    };
    let mut attributes = Attributes::new();
    attributes.insert("http.route".into(), text_attr(&route.name));
    proxy
        .recording
        .record(vec![requested_event(&request, attributes.clone())]);
    let outcome = approvals.approver.ask(request.clone()).await;
    proxy
        .recording
        .record(vec![decided_event(&request, &outcome, attributes)]);
    call.attributes
        .insert(APPROVAL_ID_ATTRIBUTE.into(), text_attr(&request.id));
    let Some(message) = refusal_message(&call.action, Some(&request), &outcome) else {
        if let guard::approval::Outcome::Approved { by, .. } = &outcome {
            call.attributes
                .insert(APPROVED_BY_ATTRIBUTE.into(), text_attr(by));
        }
        return Ok(call);
    };
    if let (Some(open), Some(step)) = (plan, step)
        && let Some(made) = proxy
            .guard_calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(&open.plan.plan_id)
            .and_then(|counts| counts.get_mut(step))
    {
        *made = made.saturating_sub(1);
    }
    let rule = outcome
        .refusal_rule()
        .unwrap_or(guard::approval::UNAVAILABLE_RULE);
    call.attributes
        .insert(guard::DECISION_ATTRIBUTE.into(), text_attr("refused"));
    call.attributes
        .insert(guard::RULE_ATTRIBUTE.into(), text_attr(rule));
    proxy.record(
        call,
        None,
        Some(error_info(guard::REFUSED_ERROR_NAME, message.clone())),
    );
    let body = json!({
        "error": message,
        "reason": "refused_by_policy",
        "rule": rule,
        "approval_id": request.id,
    });
    Err((StatusCode::FORBIDDEN, axum::Json(body)).into_response())
}

type Failure = (StatusCode, &'static str, &'static str, String);

/// Records a call that got no upstream response and answers the agent.
fn failed(proxy: &HttpProxy, call: Call, (status, reason, name, message): Failure) -> Response {
    proxy.record(call, None, Some(error_info(name, message.clone())));
    error_response(status, reason, &message)
}

fn send_failure(route: &Route, e: &reqwest::Error) -> Failure {
    if e.is_timeout() {
        timeout_failure(route)
    } else if e.is_connect() {
        (
            StatusCode::BAD_GATEWAY,
            "upstream_unreachable",
            "ConnectError",
            format!(
                "cannot connect to the upstream of route {:?}: {}",
                route.name,
                root_cause(e)
            ),
        )
    } else {
        (
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "UpstreamError",
            format!(
                "the upstream of route {:?} failed: {}",
                route.name,
                root_cause(e)
            ),
        )
    }
}

fn timeout_failure(route: &Route) -> Failure {
    (
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_timeout",
        "Timeout",
        format!(
            "the upstream of route {:?} did not answer within timeout_ms = {}",
            route.name,
            route.timeout.as_millis()
        ),
    )
}
