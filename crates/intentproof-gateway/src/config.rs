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
//! [[webhooks]]                       # each new finding, as a signed webhook-finding.v1 (see webhook)
//! name = "oncall"
//! url = "https://hooks.example/intentproof"
//!
//! [[otlp]]                           # every stored event as a span, OTLP/HTTP (see otlp)
//! name = "collector"
//! endpoint = "http://127.0.0.1:4318/v1/traces"
//!
//! [fleet]                            # replicate the record into PostgreSQL (intentproof_fleet)
//! postgres_url = "postgresql://intentproof@127.0.0.1:5432/intentproof"
//! password_file = "/run/secrets/pg-password"
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

use intentproof_api::DEFAULT_PORT;
use intentproof_http_proxy::config::HttpConfig;
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
    /// Calls held for a person's approval, and who may decide.
    pub approvals: ApprovalsConfig,
    /// C2SP checkpoints, witnesses, and the logs this daemon witnesses.
    pub transparency: TransparencyConfig,
    /// Replication of the record into PostgreSQL (`intentproof_fleet`).
    pub fleet: Option<intentproof_fleet::FleetConfig>,
    /// Receivers of each new finding ([`crate::webhook`]).
    pub webhooks: Vec<WebhookConfig>,
    /// OpenTelemetry collectors every stored event goes to as a span
    /// ([`crate::otlp`]).
    pub otlp: Vec<OtlpConfig>,
}

/// The `[transparency]` section ([`crate::transparency`]).
///
/// ```toml
/// [transparency]
/// origin = "gateway-a.example/intentproof"  # the log's name (default intentproof-gateway/<instance_id>); never change it
/// witness_name = "gateway-a.example/witness" # this daemon's name as a witness (default intentproof-witness/<instance_id>)
///
/// [[transparency.witnesses]]         # send each new checkpoint there (tlog-witness)
/// url = "http://127.0.0.1:9788/v1/witness"   # the witness's prefix; POST <url>/add-checkpoint
/// key = "intentproof-witness/inst_01B+5c1e2b3a+BDtq..."  # its cosignature key (0x04), from `intentproof keys transparency`
///
/// [[transparency.logs]]              # logs this daemon witnesses (cosigns)
/// key = "intentproof-gateway/inst_01A+9c51ce3d+ATtq..."  # the log's key (0x01); its name is the origin
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransparencyConfig {
    /// The log's origin (key name of its checkpoints).
    pub origin: Option<String>,
    /// This daemon's name as a witness.
    pub witness_name: Option<String>,
    /// Witnesses each new checkpoint is sent to.
    pub witnesses: Vec<WitnessConfig>,
    /// Logs this daemon cosigns.
    pub logs: Vec<WitnessedLogConfig>,
}

/// A witness the daemon sends its checkpoints to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness's URL prefix (`<url>/add-checkpoint` is posted to).
    pub url: String,
    /// Its cosignature verifier key (`name+id+base64(0x04 || key)`).
    pub key: String,
    /// Extra request headers (credentials). Never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Time limit of one request.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl WitnessConfig {
    /// The parsed key; a cosignature key.
    pub fn verifier(&self) -> Result<intentproof_core::tlog::note::NoteVerifier, String> {
        let key: intentproof_core::tlog::note::NoteVerifier = self
            .key
            .parse()
            .map_err(|e| format!("transparency.witnesses {}: {e}", self.url))?;
        if key.key_type() != intentproof_core::tlog::note::KeyType::Cosignature {
            return Err(format!(
                "transparency.witnesses {}: key {:?} is not a cosignature key (type 0x04); use the witness key `intentproof keys transparency` prints on the witness",
                self.url, self.key
            ));
        }
        Ok(key)
    }
}

/// A log the daemon witnesses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessedLogConfig {
    /// The log's verifier key (`origin+id+base64(0x01 || key)`).
    pub key: String,
    /// Its origin, when it is not the key's name.
    #[serde(default)]
    pub origin: Option<String>,
}

impl WitnessedLogConfig {
    /// The parsed key; an Ed25519 note key.
    pub fn verifier(&self) -> Result<intentproof_core::tlog::note::NoteVerifier, String> {
        let key: intentproof_core::tlog::note::NoteVerifier = self
            .key
            .parse()
            .map_err(|e| format!("transparency.logs: {e}"))?;
        if key.key_type() != intentproof_core::tlog::note::KeyType::Ed25519 {
            return Err(format!(
                "transparency.logs: key {:?} is not a log key (type 0x01); use the log key `intentproof keys transparency` prints on the log",
                self.key
            ));
        }
        Ok(key)
    }
}

impl TransparencyConfig {
    fn validate(&self) -> Result<(), String> {
        for (what, name) in [
            ("origin", &self.origin),
            ("witness_name", &self.witness_name),
        ] {
            if let Some(name) = name
                && !intentproof_core::tlog::note::is_valid_key_name(name)
            {
                return Err(format!(
                    "transparency.{what} = {name:?}: a key name must be non-empty, without spaces or '+'"
                ));
            }
        }
        for witness in &self.witnesses {
            witness.verifier()?;
            if !(witness.url.starts_with("http://") || witness.url.starts_with("https://")) {
                return Err(format!(
                    "transparency.witnesses: url {:?} must start with http:// or https://",
                    witness.url
                ));
            }
        }
        for log in &self.logs {
            log.verifier()?;
        }
        Ok(())
    }
}

/// The `[approvals]` section: which calls wait for a person, how long, and
/// who may decide.
///
/// ```toml
/// [approvals]
/// timeout_secs = 300                 # a held call nobody decides is refused after this
/// approvers = { ops = "s3cret-ops-token-0123" } # named tokens that may decide (the daemon token decides as "owner")
///
/// [[approvals.rules]]                # the daemon's /mcp/<name> servers and /proxy/<route> calls
/// action = "mcp.payments.refund_*"   # glob over actions
/// when = ["amount_cents > 100"]      # conditions on the arguments (the plan constraint language)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// Longest wait for a decision; then the call is refused (default 300).
    pub timeout_secs: u64,
    /// Named tokens that may list and decide approvals and approve tool
    /// changes; the decision records the name.
    pub approvers: BTreeMap<String, String>,
    /// Which calls wait for a person.
    pub rules: Vec<ApprovalRuleConfig>,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            timeout_secs: intentproof_policy::guard::approval::DEFAULT_TIMEOUT_SECS,
            approvers: BTreeMap::new(),
            rules: Vec::new(),
        }
    }
}

/// One `[[approvals.rules]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRuleConfig {
    /// Glob over actions (`mcp.payments.refund_*`).
    pub action: String,
    /// Conditions on the arguments, all of which must hold.
    #[serde(default)]
    pub when: Vec<String>,
}

impl ApprovalsConfig {
    /// The rules, parsed. The error names the bad rule.
    pub fn parsed_rules(&self) -> Result<Vec<intentproof_policy::guard::ApprovalRule>, String> {
        if self.rules.len() > intentproof_policy::guard::approval::MAX_RULES {
            return Err(format!(
                "approvals.rules: at most {} rules",
                intentproof_policy::guard::approval::MAX_RULES
            ));
        }
        self.rules
            .iter()
            .map(|r| intentproof_policy::guard::ApprovalRule::parse(&r.action, &r.when))
            .collect()
    }

    /// `self_tokens`: the ingest and MCP tokens, which no approver may share.
    fn validate(&self, self_tokens: (&Option<String>, &Option<String>)) -> Result<(), String> {
        if !(1..=86_400).contains(&self.timeout_secs) {
            return Err(format!(
                "approvals.timeout_secs = {} is out of range; use 1 to 86400 (default 300)",
                self.timeout_secs
            ));
        }
        for (name, token) in &self.approvers {
            if name.is_empty()
                || name == "owner"
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
            {
                return Err(format!(
                    "approvals.approvers: {name:?} is not a usable name (letters, digits, - _ . @; `owner` is the daemon token's)"
                ));
            }
            if [&self_tokens.0, &self_tokens.1]
                .iter()
                .any(|t| t.as_deref() == Some(token.as_str()))
            {
                return Err(format!(
                    "approvals.approvers.{name}: the token is also the ingest or MCP token; an approver's token must be its own, or a gateway could approve its own held calls"
                ));
            }
            if token.trim().len() < 16 || token.trim() != token {
                return Err(format!(
                    "approvals.approvers.{name}: the token must be at least 16 characters, with no surrounding whitespace"
                ));
            }
        }
        self.parsed_rules().map(drop)
    }
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

/// One `[[webhooks]]` receiver.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Stable name; names the delivery log (letters, digits, `-`, `_`).
    pub name: String,
    /// Where each document is POSTed.
    pub url: String,
    /// Extra request headers (credentials). Never logged.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Time limit of one delivery attempt.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Base of the document's links (default `http://<listen>`).
    #[serde(default)]
    pub links_base: Option<String>,
}

impl WebhookConfig {
    /// Why this receiver cannot be used, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        let safe = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !safe {
            return Err(format!(
                "webhooks: name {:?} must be 1 to 64 letters, digits, '-' or '_' (it names the delivery log)",
                self.name
            ));
        }
        for (what, url) in [
            ("url", Some(&self.url)),
            ("links_base", self.links_base.as_ref()),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(format!(
                    "webhooks {:?}: {what} {url:?} must start with http:// or https://",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

/// One `[[otlp]]` collector.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Stable name; keys the durable cursor (`otlp:<name>`).
    pub name: String,
    /// The collector's OTLP/HTTP traces URL (`.../v1/traces`).
    pub endpoint: String,
    /// Extra request headers (credentials). Never logged.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Time limit of one request.
    #[serde(default = "default_otlp_timeout_ms")]
    pub timeout_ms: u64,
    /// Add the (redacted) inputs and output as `gen_ai.tool.call.arguments`
    /// and `gen_ai.tool.call.result`.
    #[serde(default)]
    pub include_payloads: bool,
    /// Spans per request (1 to 4096; default 256).
    #[serde(default = "default_batch")]
    pub batch_spans: usize,
    /// Send each new finding as an OTLP log record (default true).
    #[serde(default = "default_true")]
    pub findings: bool,
    /// The collector's OTLP/HTTP logs URL (default: `endpoint` with
    /// `/v1/traces` replaced by `/v1/logs`).
    #[serde(default)]
    pub logs_endpoint: Option<String>,
}

fn default_true() -> bool {
    true
}

fn default_otlp_timeout_ms() -> u64 {
    10_000
}

fn default_batch() -> usize {
    256
}

impl OtlpConfig {
    /// Why this collector cannot be used, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("otlp: name must not be empty (it keys the durable cursor)".into());
        }
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(format!(
                "otlp {:?}: endpoint {:?} must start with http:// or https:// (OTLP/HTTP, e.g. http://collector:4318/v1/traces)",
                self.name, self.endpoint
            ));
        }
        if self.findings && self.logs_url().is_none() {
            return Err(format!(
                "otlp {:?}: endpoint {:?} does not end in /v1/traces, so the findings' logs URL cannot be derived; set logs_endpoint (or findings = false)",
                self.name, self.endpoint
            ));
        }
        if let Some(url) = &self.logs_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!(
                "otlp {:?}: logs_endpoint {url:?} must start with http:// or https://",
                self.name
            ));
        }
        if !(1..=4096).contains(&self.batch_spans) {
            return Err(format!(
                "otlp {:?}: batch_spans = {} must be 1 to 4096",
                self.name, self.batch_spans
            ));
        }
        Ok(())
    }

    /// Where findings go: `logs_endpoint`, else `endpoint` with its
    /// `/v1/traces` replaced by `/v1/logs`.
    pub fn logs_url(&self) -> Option<String> {
        self.logs_endpoint.clone().or_else(|| {
            self.endpoint
                .strip_suffix("/v1/traces")
                .map(|base| format!("{base}/v1/logs"))
        })
    }

    /// The durable cursor's name: `otlp:<name>`.
    pub(crate) fn cursor(&self) -> String {
        format!("otlp:{}", self.name)
    }
}

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
            approvals: ApprovalsConfig::default(),
            transparency: TransparencyConfig::default(),
            fleet: None,
            webhooks: Vec::new(),
            otlp: Vec::new(),
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
        self.http.validate().map_err(ConfigError::Invalid)?;
        self.approvals
            .validate((&self.ingest_token, &self.mcp_token))
            .map_err(ConfigError::Invalid)?;
        self.transparency.validate().map_err(ConfigError::Invalid)?;
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
        let mut hooks = std::collections::BTreeSet::new();
        for hook in &self.webhooks {
            hook.validate().map_err(ConfigError::Invalid)?;
            if !hooks.insert(&hook.name) {
                return Err(ConfigError::Invalid(format!(
                    "webhooks: the name {:?} is used twice; names key the delivery logs",
                    hook.name
                )));
            }
        }
        let mut collectors = std::collections::BTreeSet::new();
        for collector in &self.otlp {
            collector.validate().map_err(ConfigError::Invalid)?;
            if !collectors.insert(&collector.name) {
                return Err(ConfigError::Invalid(format!(
                    "otlp: the name {:?} is used twice; names key the durable cursors",
                    collector.name
                )));
            }
        }
        if let Some(fleet) = &self.fleet {
            fleet
                .batch()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
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
