//! `[fleet]` settings and the connection to PostgreSQL.
//!
//! ```toml
//! [fleet]
//! postgres_url = "postgresql://intentproof@127.0.0.1:5432/intentproof"
//! password_file = "/run/secrets/pg-password"   # or password_env = "PGPASSWORD"
//! ```
//!
//! The password never sits in the URL we log: [`FleetConfig::display_url`]
//! drops it, and a password given in the URL itself is accepted but
//! redacted the same way.
//!
//! **TLS.** A database on loopback or a Unix socket is reached in the
//! clear. Any other host must be asked for TLS (`?sslmode=require` in the
//! URL), else the config is refused: events would cross the network in
//! clear text. With TLS the server's certificate is always verified, chain
//! and host name (stricter than libpq's `require`): against the platform's
//! trust store, or against `ca_file` (a PEM bundle) for a private CA, as
//! most PostgreSQL deployments use. `allow_cleartext = true` lifts the
//! refusal for a private network trusted end to end (a compose network on
//! one machine), with a warning at every connection.

use std::path::PathBuf;

use serde::Deserialize;
use tokio_postgres::config::{Host, SslMode};

/// The `[fleet]` table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// `postgresql://user@host:port/db` (key=value form also accepted).
    pub postgres_url: String,
    /// A file whose first line is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Records per replication transaction (default 4096, at most 65536).
    #[serde(default)]
    pub batch_records: Option<usize>,
    /// PEM file of the CA that signed the server's certificate (TLS only);
    /// default: the platform's trust store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Allow a database on another host without TLS. Only for a private
    /// network you trust end to end (a compose network on one machine):
    /// the daemon logs a warning at every connection.
    #[serde(default)]
    pub allow_cleartext: bool,
}

/// Records per replication transaction unless configured.
pub const DEFAULT_BATCH_RECORDS: usize = 4096;
/// Most records one transaction may carry.
pub const MAX_BATCH_RECORDS: usize = 65536;
/// Most bytes of records one transaction carries (then it commits).
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// Why `[fleet]` is unusable.
#[derive(Debug, thiserror::Error)]
pub enum FleetConfigError {
    /// The URL does not parse.
    #[error(
        "[fleet] postgres_url {url}: {reason}; write it as postgresql://user@host:port/database"
    )]
    Url {
        /// The URL without its password.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The password file cannot be read.
    #[error("[fleet] password_file {path}: {source}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The password variable is not set.
    #[error("[fleet] password_env: the environment variable {0} is not set")]
    PasswordEnv(String),
    /// A remote host without TLS.
    #[error(
        "[fleet] postgres_url {url}: host {host} is not loopback or a Unix socket, and the URL does not ask for TLS; events would cross the network in clear text. Add ?sslmode=require (and ca_file for a private CA)"
    )]
    NotLocal {
        /// The URL without its password.
        url: String,
        /// The host refused.
        host: String,
    },
    /// The TLS settings are unusable.
    #[error("[fleet] TLS: {0}")]
    Tls(String),
    /// `batch_records` out of range.
    #[error("[fleet] batch_records = {0}: must be 1..={MAX_BATCH_RECORDS}")]
    Batch(usize),
}

impl FleetConfig {
    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn display_url(&self) -> String {
        redact_url(&self.postgres_url)
    }

    /// Records per transaction.
    pub fn batch(&self) -> Result<usize, FleetConfigError> {
        match self.batch_records {
            None => Ok(DEFAULT_BATCH_RECORDS),
            Some(n) if (1..=MAX_BATCH_RECORDS).contains(&n) => Ok(n),
            Some(n) => Err(FleetConfigError::Batch(n)),
        }
    }

    /// The connection settings, password included (from the file or the
    /// variable when given), checked to stay on this machine.
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, FleetConfigError> {
        let mut config: tokio_postgres::Config =
            self.postgres_url
                .parse()
                .map_err(|e: tokio_postgres::Error| FleetConfigError::Url {
                    url: self.display_url(),
                    reason: e.to_string(),
                })?;
        let tls = config.get_ssl_mode() == SslMode::Require;
        for host in config.get_hosts() {
            if let Host::Tcp(name) = host
                && !tls
                && !self.allow_cleartext
            {
                let local = name == "localhost"
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !local {
                    return Err(FleetConfigError::NotLocal {
                        url: self.display_url(),
                        host: name.clone(),
                    });
                }
            }
        }
        if let Some(path) = &self.password_file {
            let text =
                std::fs::read_to_string(path).map_err(|source| FleetConfigError::PasswordFile {
                    path: path.clone(),
                    source,
                })?;
            config.password(text.lines().next().unwrap_or("").as_bytes());
        } else if let Some(var) = &self.password_env {
            let value =
                std::env::var(var).map_err(|_| FleetConfigError::PasswordEnv(var.clone()))?;
            config.password(value.as_bytes());
        }
        config.application_name("intentproof");
        config.connect_timeout(std::time::Duration::from_secs(10));
        Ok(config)
    }

    /// Connects (over TLS when the URL asks for it); the connection's I/O
    /// runs on its own task, which ends when the client is dropped.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, crate::FleetError> {
        let config = self.pg_config()?;
        if self.allow_cleartext && config.get_ssl_mode() != SslMode::Require {
            tracing::warn!(postgres = %self.display_url(), "[fleet] allow_cleartext: events may cross the network to PostgreSQL unencrypted");
        }
        let client = if config.get_ssl_mode() == SslMode::Disable {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "PostgreSQL connection closed");
                }
            });
            client
        } else {
            let tls = tokio_postgres_rustls_improved::MakeRustlsConnect::new(self.tls_config()?);
            let (client, connection) = config.connect(tls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "PostgreSQL connection closed");
                }
            });
            client
        };
        Ok(client)
    }

    /// The TLS client settings: aws-lc-rs, and the platform's verifier or
    /// the roots of `ca_file`.
    fn tls_config(&self) -> Result<rustls::ClientConfig, FleetConfigError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let tls = |e: &dyn std::fmt::Display| FleetConfigError::Tls(e.to_string());
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(&e))?;
        let config = match &self.ca_file {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                    FleetConfigError::Tls(format!("ca_file {}: {e}", path.display()))
                })?;
                for cert in certs {
                    let cert = cert.map_err(|e| {
                        FleetConfigError::Tls(format!("ca_file {}: {e}", path.display()))
                    })?;
                    roots.add(cert).map_err(|e| {
                        FleetConfigError::Tls(format!("ca_file {}: {e}", path.display()))
                    })?;
                }
                if roots.is_empty() {
                    return Err(FleetConfigError::Tls(format!(
                        "ca_file {} holds no certificate",
                        path.display()
                    )));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => {
                use rustls_platform_verifier::BuilderVerifierExt;
                builder
                    .with_platform_verifier()
                    .map_err(|e| tls(&e))?
                    .with_no_client_auth()
            }
        };
        Ok(config)
    }
}

/// `url` with the password (between `user:` and `@`, or `password=`)
/// replaced by `***`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{}", redact_query(tail));
        }
        return format!("{scheme}://{authority}{}", redact_query(tail));
    }
    // key=value form
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some(("password", _)) => "password=***".to_owned(),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn redact_query(tail: &str) -> String {
    match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("password", _)) => "password=***".to_owned(),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgresql://ip:s3cret@127.0.0.1:5432/db?sslmode=disable&password=x"),
            "postgresql://ip:***@127.0.0.1:5432/db?sslmode=disable&password=***"
        );
        assert_eq!(
            redact_url("postgres://ip@localhost/db"),
            "postgres://ip@localhost/db"
        );
        assert_eq!(
            redact_url("host=127.0.0.1 user=ip password=s3cret dbname=db"),
            "host=127.0.0.1 user=ip password=*** dbname=db"
        );
    }

    #[test]
    fn remote_hosts_are_refused_without_tls() {
        let config = FleetConfig {
            postgres_url: "postgresql://ip:pw@db.example.com/db".into(),
            ..FleetConfig::default()
        };
        let err = config.pg_config().unwrap_err().to_string();
        assert!(err.contains("host db.example.com is not loopback"), "{err}");
        assert!(err.contains("Add ?sslmode=require"), "{err}");
        assert!(!err.contains("pw@"), "{err}");
        let tls = FleetConfig {
            postgres_url: "postgresql://ip:pw@db.example.com/db?sslmode=require".into(),
            ..FleetConfig::default()
        };
        assert!(tls.pg_config().is_ok());
        let cleartext = FleetConfig {
            postgres_url: "postgresql://ip:pw@postgres:5432/db".into(),
            allow_cleartext: true,
            ..FleetConfig::default()
        };
        assert!(cleartext.pg_config().is_ok());
        for ok in [
            "postgresql://ip@127.0.0.1:5432/db",
            "postgresql://ip@localhost/db",
            "postgresql://ip@[::1]:5432/db",
            "host=/run/postgresql user=ip dbname=db",
        ] {
            let config = FleetConfig {
                postgres_url: ok.into(),
                ..FleetConfig::default()
            };
            assert!(config.pg_config().is_ok(), "{ok}");
        }
    }

    #[test]
    fn password_comes_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let config = FleetConfig {
            postgres_url: "postgresql://ip@127.0.0.1/db".into(),
            password_file: Some(path),
            ..FleetConfig::default()
        };
        assert_eq!(
            config.pg_config().unwrap().get_password(),
            Some(&b"s3cret"[..])
        );
    }
}
