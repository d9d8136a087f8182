//! Daemon configuration: built-in defaults, then the TOML file, then
//! environment variables, then command-line flags (each overrides the one
//! before).
//!
//! ```toml
//! listen = "127.0.0.1:9787"          # INTENTPROOF_LISTEN
//! data_dir = "/var/lib/intentproof"  # INTENTPROOF_DATA_DIR (default ~/.intentproof)
//! ingest_token = "s3cret"            # INTENTPROOF_INGEST_TOKEN: require it on POST /v1/events
//! tenant_id = "local"                # tenant of events the daemon seals itself
//! max_body_bytes = 1048576           # larger ingest bodies get 413
//! queue_capacity = 65536             # events waiting for the writer; beyond it ingest answers 503
//! checkpoint_interval_secs = 10      # sign a Merkle checkpoint this often (when the log grew)
//! plan_idle_timeout_secs = 300       # a declared plan with no call for this long closes and is evaluated
//! redaction_policy = "policies/redaction/default.yaml"   # default: the built-in policy
//! verification_policies = ["policies/verification/refund-with-receipt.yaml"]  # need scope.any_event_action_in
//!
//! [[mcp.servers]]                    # served over Streamable HTTP at /mcp/<name>
//! name = "everything"
//! command = ["npx", "-y", "@modelcontextprotocol/server-everything"]
//! default_intents = { echo = "Check the connection" }
//!
//! [[exporters]]                      # forward every stored event, at least once
//! name = "siem"                      # names the durable cursor: keep it stable
//! url = "https://collector.example/v1/events"
//! headers = { Authorization = "Bearer abc" }
//! timeout_ms = 5000
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
    /// Tenant id of events the daemon seals itself.
    pub tenant_id: String,
    /// Largest ingest body.
    pub max_body_bytes: usize,
    /// Events waiting for the writer before ingest answers 503.
    pub queue_capacity: usize,
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
}

/// The `[mcp]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Name of the plan tool added to every server (`""` turns it off;
    /// default `intentproof_declare_plan`).
    pub plan_tool: Option<String>,
    /// The upstream servers.
    pub servers: Vec<McpServerConfig>,
}

/// One upstream MCP server of the HTTP gateway.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Served at `/mcp/<name>`; actions are `mcp.<name>.<tool>`.
    pub name: String,
    /// A stdio server: the command and its arguments (one process per session).
    pub command: Vec<String>,
    /// Extra environment for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Intents for tools called outside any declared plan.
    #[serde(default)]
    pub default_intents: BTreeMap<String, String>,
}

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

/// The default port: the reference SDKs' local ingest port.
pub const DEFAULT_PORT: u16 = 9787;

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
            tenant_id: "local".into(),
            max_body_bytes: 1024 * 1024,
            queue_capacity: 65536,
            checkpoint_interval_secs: 10,
            plan_idle_timeout_secs: 300,
            redaction_policy: None,
            verification_policies: Vec::new(),
            exporters: Vec::new(),
            mcp: McpConfig::default(),
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

    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Applies `INTENTPROOF_LISTEN`, `INTENTPROOF_DATA_DIR` and
    /// `INTENTPROOF_INGEST_TOKEN` from `env`.
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
        let mut servers = std::collections::BTreeSet::new();
        for server in &self.mcp.servers {
            let valid_name = !server.name.is_empty()
                && server
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name || !servers.insert(&server.name) {
                return Err(ConfigError::Invalid(format!(
                    "mcp server names must be unique and use letters, digits, '-' and '_'; {:?} is not",
                    server.name
                )));
            }
            if server.command.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "mcp server {:?}: `command` must name the server's program, e.g. command = [\"npx\", \"-y\", \"@modelcontextprotocol/server-everything\"]",
                    server.name
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
