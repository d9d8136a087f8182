//! The data directory: the daemon's key, the read token, trusted instance
//! keys, and where the running daemon listens.
//!
//! ```text
//! <data-dir>/                 mode 0700
//!   instance_key.json         the daemon's Ed25519 key (0600)
//!   token                     bearer token for reads and admin (0600)
//!   trusted-keys/<id>.pub     public keys of instances whose events verify (0700 / 0600)
//!   daemon.json               {"listen": "127.0.0.1:9787", "pid": 1234} while running
//!   spool/                    `intentproof mcp`'s events before delivery (0700 / 0600)
//!   journal/ index/ checkpoints.jsonl   the store
//! ```
//!
//! Whoever creates the directory (`intentproof serve`, or `intentproof mcp`
//! before any daemon ran) creates it 0700, whatever the umask: it holds
//! keys and events that may carry personal data.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use intentproof_core::keys::{self, InstanceKey};

/// Problems with the data directory.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// File system error.
    #[error("data dir {path}: {op}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Key handling failed.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// A trusted key file is unusable.
    #[error(
        "trusted key {path} is not a valid Ed25519 public key ({reason}); delete it or trust the key again"
    )]
    BadTrustedKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The redaction policy or its key is unusable.
    #[error("redaction: {0}")]
    Redaction(String),
    /// An instance id that cannot be a file name.
    #[error("instance id {0:?} is not valid: use letters, digits, '_' and '-' only")]
    BadInstanceId(String),
}

/// The keys a data directory trusts: every `trusted-keys/*.pub` plus the
/// daemon's own.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: std::collections::HashMap<String, VerifyingKey>,
    daemon: Option<VerifyingKey>,
}

impl KeyRing {
    /// The trusted key of `instance_id`.
    pub fn get(&self, instance_id: &str) -> Option<VerifyingKey> {
        self.keys.get(instance_id).copied()
    }

    /// The daemon's public key (signs checkpoints), if it has one yet.
    pub fn daemon(&self) -> Option<&VerifyingKey> {
        self.daemon.as_ref()
    }

    /// Every (instance, key) pair.
    pub fn entries(&self) -> impl Iterator<Item = (String, VerifyingKey)> + '_ {
        self.keys.iter().map(|(id, key)| (id.clone(), *key))
    }
}

/// The daemon that last started on a data dir, from its `daemon.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonInfo {
    /// The address it listens on, e.g. `127.0.0.1:9787`.
    pub listen: String,
    /// Its process id.
    pub pid: u32,
}

/// A data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> DataDirError + 'a {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// Writes `contents` to a new file with mode 0600, atomically (temp file,
/// fsync, rename).
fn write_private(path: &Path, contents: &[u8]) -> Result<(), DataDirError> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp, "create"))?;
    file.write_all(contents).map_err(io(&tmp, "write"))?;
    file.sync_all().map_err(io(&tmp, "fsync"))?;
    fs::rename(&tmp, path).map_err(io(path, "rename into place"))
}

/// A new random token: 32 bytes, hex.
fn new_token() -> Result<String, DataDirError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| DataDirError::Io {
        path: PathBuf::from("<random>"),
        op: "generate token",
        source: io::Error::other(e.to_string()),
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl DataDir {
    /// The directory at `path` (nothing is created yet).
    pub fn new(path: impl Into<PathBuf>) -> DataDir {
        DataDir { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the directory with mode 0700 when it is missing (its parents
    /// as the umask says); an existing one is left as it is.
    pub fn ensure_private(&self) -> Result<(), DataDirError> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io(parent, "create the parent directory"))?;
        }
        match fs::DirBuilder::new().mode(0o700).create(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && self.path.is_dir() => Ok(()),
            Err(e) => Err(io(&self.path, "create")(e)),
        }
    }

    /// Creates the directory (mode 0700), the daemon key and the token when
    /// missing. Returns the daemon key.
    pub fn ensure(&self) -> Result<InstanceKey, DataDirError> {
        self.ensure_private()?;
        fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700))
            .map_err(io(&self.path, "chmod 0700"))?;
        let key = if InstanceKey::path_in(&self.path).exists() {
            InstanceKey::load_from(&self.path)?
        } else {
            InstanceKey::create_in(&self.path)?
        };
        if !self.token_path().exists() {
            write_private(&self.token_path(), new_token()?.as_bytes())?;
        }
        self.ensure_trusted_dir()?;
        Ok(key)
    }

    /// Where MCP servers' tool pins are kept (`intentproof_mcp::pins`).
    pub fn pins_dir(&self) -> PathBuf {
        self.path.join("pins")
    }

    /// Path of the token file.
    pub fn token_path(&self) -> PathBuf {
        self.path.join("token")
    }

    /// The read/admin token.
    pub fn token(&self) -> Result<String, DataDirError> {
        let path = self.token_path();
        fs::read_to_string(&path)
            .map(|t| t.trim().to_owned())
            .map_err(io(
                &path,
                "read token (start `intentproof serve` once to create it)",
            ))
    }

    fn trusted_dir(&self) -> PathBuf {
        self.path.join("trusted-keys")
    }

    /// `trusted-keys/`, created 0700 when missing.
    fn ensure_trusted_dir(&self) -> Result<(), DataDirError> {
        self.ensure_private()?;
        let dir = self.trusted_dir();
        intentproof_core::private_file::create_private_dir(&dir)
            .map_err(io(&dir, "create trusted-keys"))
    }

    /// Saves `key` as the trusted key of `instance_id`.
    pub fn trust(&self, instance_id: &str, key: &VerifyingKey) -> Result<(), DataDirError> {
        let valid = !instance_id.is_empty()
            && instance_id.len() <= 128
            && instance_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(DataDirError::BadInstanceId(instance_id.to_owned()));
        }
        self.ensure_trusted_dir()?;
        let path = self.trusted_dir().join(format!("{instance_id}.pub"));
        write_private(&path, B64.encode(key.as_bytes()).as_bytes())
    }

    /// The keys in `trusted-keys/` (not the daemon's own).
    fn trusted_keys(&self) -> Result<Vec<(String, VerifyingKey)>, DataDirError> {
        let mut keys = Vec::new();
        let dir = self.trusted_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(keys),
            Err(e) => return Err(io(&dir, "list trusted keys")(e)),
        };
        for entry in entries {
            let path = entry.map_err(io(&dir, "list trusted keys"))?.path();
            let Some(instance) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".pub"))
            else {
                continue;
            };
            let text = fs::read_to_string(&path).map_err(io(&path, "read"))?;
            let key = keys::parse_public_key(&text).map_err(|e| DataDirError::BadTrustedKey {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            keys.push((instance.to_owned(), key));
        }
        Ok(keys)
    }

    /// The trusted keys and the daemon's key, as files hold them now.
    pub fn key_ring(&self) -> Result<KeyRing, DataDirError> {
        let mut keys: std::collections::HashMap<String, VerifyingKey> =
            self.trusted_keys()?.into_iter().collect();
        let daemon = if InstanceKey::path_in(&self.path).exists() {
            let own = InstanceKey::load_from(&self.path)?;
            keys.insert(own.instance_id().to_owned(), own.verifying_key());
            Some(own.verifying_key())
        } else {
            None
        };
        Ok(KeyRing { keys, daemon })
    }

    /// The redactor for events sealed here: `policy` (a YAML file), else the
    /// built-in default; the HMAC key of its `hash` action lives in this
    /// data dir (created 0600 on first use).
    pub fn redactor(
        &self,
        policy: Option<&Path>,
    ) -> Result<intentproof_policy::redact::Redactor, DataDirError> {
        use intentproof_policy::redact::{HashKey, RedactionPolicy, Redactor};
        let policy = match policy {
            Some(path) => {
                let text = fs::read_to_string(path).map_err(io(path, "read redaction policy"))?;
                RedactionPolicy::from_yaml(&text)
                    .map_err(|e| DataDirError::Redaction(format!("{}: {e}", path.display())))?
            }
            None => RedactionPolicy::default_policy(),
        };
        self.ensure_private()?;
        let key = HashKey::load_or_create(&self.path)
            .map_err(|e| DataDirError::Redaction(e.to_string()))?;
        Ok(Redactor::new(policy, key))
    }

    /// Records where the running daemon listens.
    pub fn write_daemon_info(&self, listen: &str) -> Result<(), DataDirError> {
        let info = serde_json::json!({"listen": listen, "pid": std::process::id()});
        write_private(&self.path.join("daemon.json"), info.to_string().as_bytes())
    }

    /// Removes the daemon info file (at shutdown).
    pub fn clear_daemon_info(&self) {
        let _ = fs::remove_file(self.path.join("daemon.json"));
    }

    /// What `daemon.json` says about the daemon that last started on this
    /// data dir: `None` when there is no such file (no daemon ran, or the
    /// last one stopped cleanly). The daemon may since have died without
    /// removing it: ask it (`/healthz`) before trusting the pid.
    pub fn daemon_info(&self) -> Result<Option<DaemonInfo>, DataDirError> {
        let path = self.path.join("daemon.json");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, "read")(e)),
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            io(&path, "parse (delete it if no daemon runs)")(io::Error::other(e.to_string()))
        })?;
        let listen = value.get("listen").and_then(serde_json::Value::as_str);
        let pid = value
            .get("pid")
            .and_then(serde_json::Value::as_u64)
            .and_then(|p| u32::try_from(p).ok());
        match (listen, pid) {
            (Some(listen), Some(pid)) => Ok(Some(DaemonInfo {
                listen: listen.to_owned(),
                pid,
            })),
            _ => Err(io(&path, "read (delete it if no daemon runs)")(
                io::Error::other("it lacks \"listen\" or \"pid\""),
            )),
        }
    }

    /// The URL of the daemon that last started on this data dir, if any.
    pub fn daemon_url(&self) -> Option<String> {
        let text = fs::read_to_string(self.path.join("daemon.json")).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some(format!("http://{}", value.get("listen")?.as_str()?))
    }

    /// The daemon a command talks to: the one it was `given` (see
    /// [`server_given`]), else this data dir's running daemon
    /// (`daemon.json`), else [`default_server`].
    pub fn daemon_base(&self, given: Option<String>) -> String {
        given
            .or_else(|| self.daemon_url())
            .unwrap_or_else(default_server)
    }
}

/// The daemon URL a command was given: its `--server` flag, else a
/// non-empty `$INTENTPROOF_SERVER`.
pub fn server_given(flag: Option<String>) -> Option<String> {
    flag.or_else(|| {
        std::env::var("INTENTPROOF_SERVER")
            .ok()
            .filter(|s| !s.is_empty())
    })
}

/// The daemon's address when nothing else names it: loopback, port
/// [`DEFAULT_PORT`](crate::DEFAULT_PORT).
pub fn default_server() -> String {
    format!("http://127.0.0.1:{}", crate::DEFAULT_PORT)
}
