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
    /// Collectors every stored event is forwarded to.
    pub exporters: Vec<ExporterConfig>,
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
            exporters: Vec::new(),
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
