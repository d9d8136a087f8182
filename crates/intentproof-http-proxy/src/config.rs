//! The `[http]` section of the daemon's config: the upstream APIs the proxy
//! serves at `/proxy/<name>/...`, and the host names it answers to. The
//! daemon's config holds it and calls [`HttpConfig::validate`] (in `route`,
//! with the rules it checks).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The `[http]` section: HTTP APIs the gateway proxies and records at
/// `/proxy/<name>/...` (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// The upstream APIs.
    pub routes: Vec<HttpRouteConfig>,
    /// Host names (the `Host` header, without port) the proxy answers to
    /// besides `localhost`, `127.0.0.1`, `[::1]` and the listen address.
    /// Requests naming any other host are refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

/// How a route names its calls' actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAction {
    /// A template using `{name}`, `{method}` and `{path}` (the path after
    /// the route prefix), e.g. `"http.{name}.{method}.{path}"`.
    Template(String),
    /// Path templates such as `/v1/refunds/{id}`: a call's action is
    /// `http.<name>.<METHOD>.<first matching template>` (the literal path
    /// when none matches).
    Paths(Vec<String>),
}

impl<'de> Deserialize<'de> for HttpAction {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = HttpAction;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a template string such as \"http.{name}.{method}.{path}\", or a list of path templates such as [\"/v1/refunds/{id}\"]",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HttpAction, E> {
                Ok(HttpAction::Template(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<HttpAction, A::Error> {
                let mut paths = Vec::new();
                while let Some(path) = seq.next_element::<String>()? {
                    paths.push(path);
                }
                Ok(HttpAction::Paths(paths))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// One `[[http.routes]]` entry: an upstream API served at `/proxy/<name>/`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRouteConfig {
    /// Served at `/proxy/<name>/...`; actions start with `http.<name>.`.
    pub name: String,
    /// Base URL (`http://host:port/base/path`); the request path after
    /// `/proxy/<name>` is appended to it. The only host this route reaches.
    pub upstream: String,
    /// Headers added to every upstream request, replacing any the agent
    /// sent with the same name (credentials: the agent never holds them).
    /// Never recorded or logged.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Action naming; default `"http.{name}.{method}.{path}"`.
    #[serde(default)]
    pub action: Option<HttpAction>,
    /// Time allowed to connect and receive the response headers.
    #[serde(default = "default_http_timeout_ms")]
    pub timeout_ms: u64,
    /// Longest silence allowed while the response body streams.
    #[serde(default = "default_http_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Largest request body; larger ones get 413 and are not forwarded.
    #[serde(default = "default_http_max_body_bytes")]
    pub max_body_bytes: usize,
    /// JSON bodies up to this size are recorded (redacted); larger ones,
    /// like non-JSON bodies, are recorded as size and SHA-256.
    #[serde(default = "default_http_record_body_bytes")]
    pub record_body_bytes: usize,
    /// Follow redirects (only to the same upstream, at most 10).
    #[serde(default)]
    pub follow_redirects: bool,
    /// A PEM file of extra CA certificates trusted for this `https`
    /// upstream (a private CA), besides the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Record 4xx answers with status `error` (default: `ok`).
    #[serde(default)]
    pub error_on_4xx: bool,
    /// Intent of calls no header and no open plan explains.
    #[serde(default)]
    pub default_intent: Option<String>,
    /// Request headers recorded in the event's inputs (redacted).
    #[serde(default = "default_record_request_headers")]
    pub record_request_headers: Vec<String>,
    /// Response headers recorded in the event's output (redacted).
    #[serde(default = "default_record_response_headers")]
    pub record_response_headers: Vec<String>,
    /// `off` (the default: record only) or `plan`: a call no step of its
    /// correlation's open plan covers (or with no open plan, or outside a
    /// step's `max_calls` and `constraints`, checked on the JSON body) is
    /// refused with 403 before it reaches the upstream, and recorded.
    #[serde(default)]
    pub enforce: intentproof_policy::guard::Enforce,
}

impl std::fmt::Debug for HttpRouteConfig {
    /// Header values are credentials: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRouteConfig")
            .field("name", &self.name)
            .field("upstream", &self.upstream)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("action", &self.action)
            .field("timeout_ms", &self.timeout_ms)
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("record_body_bytes", &self.record_body_bytes)
            .field("follow_redirects", &self.follow_redirects)
            .field("ca_file", &self.ca_file)
            .field("error_on_4xx", &self.error_on_4xx)
            .field("default_intent", &self.default_intent)
            .field("record_request_headers", &self.record_request_headers)
            .field("record_response_headers", &self.record_response_headers)
            .field("enforce", &self.enforce)
            .finish()
    }
}

fn default_http_timeout_ms() -> u64 {
    30_000
}

fn default_http_idle_timeout_ms() -> u64 {
    60_000
}

fn default_http_max_body_bytes() -> usize {
    10 * 1024 * 1024
}

fn default_http_record_body_bytes() -> usize {
    1024 * 1024
}

fn default_record_request_headers() -> Vec<String> {
    ["accept", "content-type", "idempotency-key"]
        .map(String::from)
        .to_vec()
}

fn default_record_response_headers() -> Vec<String> {
    ["content-type", "location", "retry-after"]
        .map(String::from)
        .to_vec()
}

impl HttpRouteConfig {
    /// A route with every default (for tests and embedding).
    pub fn new(name: impl Into<String>, upstream: impl Into<String>) -> Self {
        HttpRouteConfig {
            name: name.into(),
            upstream: upstream.into(),
            headers: BTreeMap::new(),
            action: None,
            timeout_ms: default_http_timeout_ms(),
            idle_timeout_ms: default_http_idle_timeout_ms(),
            max_body_bytes: default_http_max_body_bytes(),
            record_body_bytes: default_http_record_body_bytes(),
            follow_redirects: false,
            ca_file: None,
            error_on_4xx: false,
            default_intent: None,
            record_request_headers: default_record_request_headers(),
            record_response_headers: default_record_response_headers(),
            enforce: intentproof_policy::guard::Enforce::Off,
        }
    }
}
