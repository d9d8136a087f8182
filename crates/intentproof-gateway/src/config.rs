//! Daemon configuration: built-in defaults, then the TOML file, then
//! environment variables, then command-line flags (each overrides the one
//! before).
//!
//! ```toml
//! listen = "127.0.0.1:9787"          # INTENTPROOF_LISTEN
//! data_dir = "/var/lib/intentproof"  # INTENTPROOF_DATA_DIR (default ~/.intentproof)
//! ingest_token = "s3cret"            # INTENTPROOF_INGEST_TOKEN: require it on POST /v1/events
//! mcp_token = "s3cret2"              # INTENTPROOF_MCP_TOKEN: require it on /mcp/<name> (needed off loopback)
//! allowed_hosts = ["gateway.internal"]         # Host names ingest and /mcp answer to (name or name:port)
//! allowed_origins = ["https://app.example.com"] # browser Origins allowed on ingest and /mcp (none by default)
//! tenant_id = "local"                # tenant of events the daemon seals itself
//! max_body_bytes = 1048576           # larger ingest bodies get 413
//! queue_capacity = 65536             # events waiting for the writer; beyond it ingest answers 503
//! index_cache_mb = 32                # INTENTPROOF_INDEX_CACHE_MB: sled's page cache (kept for good)
//! checkpoint_interval_secs = 10      # sign a Merkle checkpoint this often (when the log grew)
//! plan_idle_timeout_secs = 300       # a declared plan with no call for this long closes and is evaluated
//! redaction_policy = "policies/redaction/default.yaml"   # default: the built-in policy
//! verification_policies = ["policies/verification/refund-with-receipt.yaml"]  # need scope.any_event_action_in
//!
//! [mcp]
//! session_idle_timeout_secs = 300    # an idle MCP session ends and its upstream stops
//! max_sessions_per_server = 100      # live sessions per server; more get a JSON-RPC error (503)
//! max_new_sessions_per_sec = 20      # new sessions per second per server; more get 429
//!
//! [[mcp.servers]]                    # served over Streamable HTTP at /mcp/<name>
//! name = "everything"
//! command = ["npx", "-y", "@modelcontextprotocol/server-everything"]
//! default_intents = { echo = "Check the connection" }
//!
//! [[mcp.servers]]                    # a remote Streamable HTTP server (instead of `command`)
//! name = "remote"
//! url = "https://mcp.example.com/mcp"
//! headers = { Authorization = "Bearer ..." }   # sent upstream only; never logged or recorded
//! timeout_ms = 300000                # per forwarded POST; connect_timeout_ms = 10000
//!
//! [[exporters]]                      # forward every stored event, at least once
//! name = "siem"                      # names the durable cursor: keep it stable
//! url = "https://collector.example/v1/events"
//! headers = { Authorization = "Bearer abc" }
//! timeout_ms = 5000
//!
//! [[http.routes]]                    # HTTP API proxy at /proxy/<name>/... (see http_proxy)
//! name = "payments"
//! upstream = "http://127.0.0.1:8080/api"
//! headers = { Authorization = "Bearer sk_live_..." }    # added upstream; the agent never holds them
//! action = ["/v1/refunds/{id}", "/v1/refunds"]          # or a template: "http.{name}.{method}.{path}"
//! timeout_ms = 30000
//! max_body_bytes = 10485760
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The daemon's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on. Loopback by default: the daemon holds audit
    /// records; exposing it is a deliberate choice.
    pub listen: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// When set, `POST /v1/events` requires `Authorization: Bearer <token>`.
    pub ingest_token: Option<String>,
    /// When set, `/mcp/<name>` requires `Authorization: Bearer <token>`;
    /// required to listen beyond loopback with MCP servers configured.
    pub mcp_token: Option<String>,
    /// `Host` names ingest and `/mcp/<name>` answer to besides the listen
    /// address (`name` at any port, `name:port` at that one); others are
    /// refused (DNS rebinding). See [`crate::browser_guard`].
    pub allowed_hosts: Vec<String>,
    /// Browser origins (`https://app.example.com`) allowed to call ingest
    /// and `/mcp/<name>`; a request with any other `Origin` is refused.
    /// None by default.
    pub allowed_origins: Vec<String>,
    /// Tenant id of events the daemon seals itself.
    pub tenant_id: String,
    /// Largest ingest body.
    pub max_body_bytes: usize,
    /// Events waiting for the writer before ingest answers 503.
    pub queue_capacity: usize,
    /// sled's page cache in MiB (`StoreOptions::index_cache_bytes`): the
    /// daemon keeps this much of the index in memory once the index is
    /// that large, idle or not. Default 32 (see
    /// `intentproof_store::DEFAULT_INDEX_CACHE_BYTES` for why).
    pub index_cache_mb: u64,
    /// Seconds between signed checkpoints (0: only at shutdown).
    pub checkpoint_interval_secs: u64,
    /// A plan with no call for this long is closed and evaluated.
    pub plan_idle_timeout_secs: u64,
    /// Redaction policy (YAML) for events the daemon seals; default: the
    /// built-in `policies/redaction/default.yaml`.
    pub redaction_policy: Option<PathBuf>,
    /// Verification policies (JSON or YAML) evaluated on every idle flow
    /// their `scope.any_event_action_in` matches; failures are findings.
    pub verification_policies: Vec<PathBuf>,
    /// Collectors every stored event is forwarded to.
    pub exporters: Vec<ExporterConfig>,
    /// MCP servers served over Streamable HTTP at `/mcp/<name>`.
    pub mcp: McpConfig,
    /// HTTP APIs proxied (and recorded) at `/proxy/<name>/...`.
    pub http: HttpConfig,
}

pub use intentproof_mcp::config::{
    DEFAULT_MCP_CONNECT_TIMEOUT_MS, DEFAULT_MCP_MAX_NEW_SESSIONS_PER_SEC,
    DEFAULT_MCP_MAX_SESSIONS_PER_SERVER, DEFAULT_MCP_SESSION_IDLE_TIMEOUT_SECS,
    DEFAULT_MCP_TIMEOUT_MS, McpConfig, McpServerConfig,
};

/// One daemon exporter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterConfig {
    /// Stable name; keys the durable cursor.
    pub name: String,
    /// Collector URL; each event is POSTed there as its signed v1 JSON.
    pub url: String,
    /// Extra request headers (credentials). Never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Time limit of one delivery attempt.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5000
}

pub use intentproof_api::DEFAULT_PORT;

/// `~/.intentproof`, or `./.intentproof` when there is no home directory.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".intentproof")
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            data_dir: default_data_dir(),
            ingest_token: None,
            mcp_token: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            tenant_id: "local".into(),
            max_body_bytes: 1024 * 1024,
            queue_capacity: 65536,
            index_cache_mb: intentproof_store::DEFAULT_INDEX_CACHE_BYTES / (1024 * 1024),
            checkpoint_interval_secs: 10,
            plan_idle_timeout_secs: intentproof_findings::DEFAULT_PLAN_IDLE_TIMEOUT_SECS,
            redaction_policy: None,
            verification_policies: Vec::new(),
            exporters: Vec::new(),
            mcp: McpConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this config.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line.
        message: String,
    },
    /// An environment variable holds an unusable value.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A value is out of range.
    #[error("config: {0}")]
    Invalid(String),
}

impl Config {
    /// Parses TOML text (`path` names it in errors).
    ///
    /// ```
    /// let c = intentproof_gateway::Config::from_toml("listen = \"127.0.0.1:0\"", "inline".as_ref()).unwrap();
    /// assert_eq!(c.listen.port(), 0);
    /// let e = intentproof_gateway::Config::from_toml("lisen = 1", "inline".as_ref()).unwrap_err();
    /// assert!(e.to_string().contains("unknown field `lisen`"));
    /// ```
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Why this config must not be served as it is: a listen address
    /// beyond loopback with no ingest token (anyone who can reach it could
    /// write events; on loopback, writes come from this machine only).
    /// `serve` refuses to start on it and `doctor` reports it, with this
    /// message.
    pub fn ingest_token_problem(&self) -> Option<String> {
        (!self.listen.ip().is_loopback() && self.ingest_token.is_none()).then(|| {
            format!(
                "listening on {} (not loopback) needs an ingest token: set INTENTPROOF_INGEST_TOKEN or ingest_token in the config, or listen on 127.0.0.1",
                self.listen
            )
        })
    }

    /// Why this config must not be served as it is: MCP servers reachable
    /// beyond loopback with no MCP token (anyone who can reach the address
    /// could run their tools). `serve` refuses to start on it and
    /// `doctor` reports it, with this message.
    pub fn mcp_token_problem(&self) -> Option<String> {
        (!self.mcp.servers.is_empty() && self.mcp_token.is_none() && !self.listen.ip().is_loopback())
            .then(|| format!(
                "listening on {} (not loopback) with MCP servers configured needs an MCP token: set mcp_token in the config (or INTENTPROOF_MCP_TOKEN), or listen on 127.0.0.1",
                self.listen
            ))
    }

    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Applies `INTENTPROOF_LISTEN`, `INTENTPROOF_DATA_DIR`,
    /// `INTENTPROOF_INGEST_TOKEN`, `INTENTPROOF_MCP_TOKEN` and
    /// `INTENTPROOF_INDEX_CACHE_MB` from `env`.
    pub fn apply_env(
        mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        if let Some(value) = env("INTENTPROOF_LISTEN") {
            self.listen =
                value
                    .parse()
                    .map_err(|e: std::net::AddrParseError| ConfigError::Env {
                        name: "INTENTPROOF_LISTEN",
                        value: value.clone(),
                        reason: format!("{e}; use ADDRESS:PORT such as 127.0.0.1:9787"),
                    })?;
        }
        if let Some(value) = env("INTENTPROOF_DATA_DIR") {
            self.data_dir = PathBuf::from(value);
        }
        if let Some(value) = env("INTENTPROOF_INGEST_TOKEN") {
            self.ingest_token = (!value.is_empty()).then_some(value);
        }
        if let Some(value) = env("INTENTPROOF_MCP_TOKEN") {
            self.mcp_token = (!value.is_empty()).then_some(value);
        }
        if let Some(value) = env("INTENTPROOF_INDEX_CACHE_MB") {
            self.index_cache_mb = value.parse().map_err(|e| ConfigError::Env {
                name: "INTENTPROOF_INDEX_CACHE_MB",
                value: value.clone(),
                reason: format!("{e}; use a whole number of MiB such as 32"),
            })?;
        }
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 || self.max_body_bytes > 64 * 1024 * 1024 {
            return Err(ConfigError::Invalid(format!(
                "max_body_bytes = {} is out of range; use 1 to 67108864",
                self.max_body_bytes
            )));
        }
        if self.queue_capacity == 0 {
            return Err(ConfigError::Invalid(
                "queue_capacity must be at least 1".into(),
            ));
        }
        if !(1..=65536).contains(&self.index_cache_mb) {
            return Err(ConfigError::Invalid(format!(
                "index_cache_mb = {} is out of range; use 1 to 65536 (MiB of sled's page cache; default 32)",
                self.index_cache_mb
            )));
        }
        self.mcp.validate().map_err(ConfigError::Invalid)?;
        self.http.validate()?;
        for (key, token) in [
            ("ingest_token", &self.ingest_token),
            ("mcp_token", &self.mcp_token),
        ] {
            if token
                .as_deref()
                .is_some_and(|t| t.trim().is_empty() || t.trim() != t)
            {
                return Err(ConfigError::Invalid(format!(
                    "{key} must not be blank or start or end with whitespace (clients trim what they send)"
                )));
            }
        }
        for host in &self.allowed_hosts {
            if crate::browser_guard::split_host(host).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "allowed_hosts: {host:?} is not a host name; write names such as \"gateway.internal\" or \"gateway.internal:9787\" (no scheme or path)"
                )));
            }
        }
        for origin in &self.allowed_origins {
            let valid = origin.split_once("://").is_some_and(|(scheme, rest)| {
                !scheme.is_empty()
                    && scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                    && crate::browser_guard::split_host(rest.trim_end_matches('/')).is_some()
                    && !rest.trim_end_matches('/').contains('/')
            });
            if !valid {
                return Err(ConfigError::Invalid(format!(
                    "allowed_origins: {origin:?} is not an origin; write scheme://host[:port] such as \"https://app.example.com\" (no path)"
                )));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for exporter in &self.exporters {
            if exporter.name.trim().is_empty() || !names.insert(&exporter.name) {
                return Err(ConfigError::Invalid(format!(
                    "exporter names must be non-empty and unique; {:?} is not",
                    exporter.name
                )));
            }
            if !(exporter.url.starts_with("http://") || exporter.url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "exporter {:?}: url {:?} must start with http:// or https://",
                    exporter.name, exporter.url
                )));
            }
        }
        Ok(())
    }
}

/// The `[http]` section: HTTP APIs the gateway proxies and records at
/// `/proxy/<name>/...` (see [`crate::http_proxy`]).
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
        }
    }
}

impl HttpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let at = format!("http.routes[{i}] ({:?})", route.name);
            let bad = |field: &str, why: String| {
                Err(ConfigError::Invalid(format!("{at}: `{field}` {why}")))
            };
            let valid_name = !route.name.is_empty()
                && route.name.len() <= 64
                && route
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name {
                return bad(
                    "name",
                    "must be 1 to 64 letters, digits, '-' or '_' (it is a URL path segment and part of every action)".into(),
                );
            }
            if !names.insert(&route.name) {
                return bad(
                    "name",
                    "is used by another route; names must be unique".into(),
                );
            }
            if let Err(why) = crate::http_proxy::route::parse_upstream(&route.upstream) {
                return bad("upstream", why);
            }
            if let Some(path) = &route.ca_file
                && let Err(e) = std::fs::metadata(path)
            {
                return bad("ca_file", format!("{}: {e}", path.display()));
            }
            for (name, value) in &route.headers {
                if let Err(why) = crate::http_proxy::route::check_added_header(name, value) {
                    return bad("headers", why);
                }
            }
            for (field, list) in [
                ("record_request_headers", &route.record_request_headers),
                ("record_response_headers", &route.record_response_headers),
            ] {
                for name in list {
                    if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        return bad(field, format!("has {name:?}, which is not a header name"));
                    }
                }
            }
            if let Some(action) = &route.action
                && let Err(why) = crate::http_proxy::route::ActionNamer::new(&route.name, action)
            {
                return bad("action", why);
            }
            if !(1..=3_600_000).contains(&route.timeout_ms) {
                return bad(
                    "timeout_ms",
                    format!("= {} is out of range; use 1 to 3600000", route.timeout_ms),
                );
            }
            if !(1..=86_400_000).contains(&route.idle_timeout_ms) {
                return bad(
                    "idle_timeout_ms",
                    format!(
                        "= {} is out of range; use 1 to 86400000",
                        route.idle_timeout_ms
                    ),
                );
            }
            if !(1..=1024 * 1024 * 1024).contains(&route.max_body_bytes) {
                return bad(
                    "max_body_bytes",
                    format!(
                        "= {} is out of range; use 1 to 1073741824",
                        route.max_body_bytes
                    ),
                );
            }
            if route.record_body_bytes > 16 * 1024 * 1024 {
                return bad(
                    "record_body_bytes",
                    format!(
                        "= {} is out of range; use 0 to 16777216",
                        route.record_body_bytes
                    ),
                );
            }
            if route
                .default_intent
                .as_ref()
                .is_some_and(|i| i.trim().is_empty())
            {
                return bad(
                    "default_intent",
                    "must not be blank; leave it out instead".into(),
                );
            }
        }
        for host in &self.allowed_hosts {
            if host.trim().is_empty() || host.contains(['/', ' ']) {
                return Err(ConfigError::Invalid(format!(
                    "http.allowed_hosts: {host:?} is not a host name; write names such as \"gateway.internal\" (no scheme, path or port)"
                )));
            }
        }
        Ok(())
    }
}
