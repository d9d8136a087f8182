//! What the two examples share: a real IntentProof daemon on a temporary
//! data dir, the `IntentProofClient` that delivers events to it, the rmcp
//! plumbing of one session, and the summary they print (no ids, no times:
//! `crates/intentproof-cli/tests/rmcp_library.rs` compares it exactly).

#![allow(dead_code)] // each example uses its part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use intentproof::{
    BodyFormat, Durability, Exporter, HashKey, HttpExporter, HttpExporterConfig, InstanceKey,
    IntentProofClient, IntentProofConfig, RedactionPolicy, Redactor, Sealer,
};
use intentproof_rmcp::rmcp::ClientHandler;
use intentproof_rmcp::rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
};
use intentproof_rmcp::rmcp::service::ClientLifecycleMode;
use serde_json::Value;

/// What the examples return.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The `intentproof` binary: `$INTENTPROOF_BIN`, else `intentproof` on
/// the PATH.
pub fn intentproof_bin() -> PathBuf {
    std::env::var_os("INTENTPROOF_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("intentproof"))
}

/// The two MCP revisions rmcp 3.11 speaks, and how its client opens each.
pub const REVISIONS: [&str; 2] = ["2025-11-25", "2026-07-28"];

/// The client lifecycle of `revision`: the `initialize` handshake, or
/// `server/discover` and stateless requests.
pub fn lifecycle(revision: &str) -> ClientLifecycleMode {
    if revision == "2026-07-28" {
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        }
    } else {
        ClientLifecycleMode::Initialize
    }
}

/// An rmcp client handler that only names itself.
#[derive(Clone)]
pub struct Agent(ClientConfig);

impl Agent {
    /// `name` 1.0.0, offering 2025-11-25 at `initialize`.
    pub fn named(name: &str) -> Agent {
        Agent(
            ClientConfig::new(
                ClientCapabilities::default(),
                Implementation::new(name, "1.0.0"),
            )
            .with_protocol_version(ProtocolVersion::V_2025_11_25),
        )
    }
}

impl ClientHandler for Agent {
    fn get_info(&self) -> ClientConfig {
        self.0.clone()
    }
}

/// `intentproof serve` on a temporary data dir (127.0.0.1, port 0), stopped
/// (SIGKILL, then waited for) when dropped.
pub struct Daemon {
    child: Child,
    bin: PathBuf,
    dir: tempfile::TempDir,
    data: PathBuf,
    listen: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts the daemon of `bin` and waits (at most 30 s) until it listens.
    pub fn start(bin: &Path) -> Result<Daemon> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let log = std::fs::File::create(dir.path().join("serve.log"))?;
        let child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env_remove("INTENTPROOF_CONFIG")
            .env_remove("INTENTPROOF_LISTEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start `{} serve`: {e} (set INTENTPROOF_BIN to the intentproof binary)",
                    bin.display()
                )
            })?;
        let mut daemon = Daemon {
            child,
            bin: bin.to_owned(),
            dir,
            data,
            listen: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        daemon.listen = loop {
            if let Ok(text) = std::fs::read_to_string(daemon.data.join("daemon.json")) {
                let info: Value = serde_json::from_str(&text)?;
                if let Some(listen) = info["listen"].as_str() {
                    break listen.to_owned();
                }
            }
            if let Some(status) = daemon.child.try_wait()? {
                let log = std::fs::read_to_string(daemon.dir.path().join("serve.log"))?;
                return Err(format!("the daemon exited with {status}: {log}").into());
            }
            if Instant::now() > deadline {
                return Err("the daemon did not start within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(daemon)
    }

    /// Runs `intentproof <args> --data-dir <data>`; its standard output.
    fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--data-dir")
            .arg(&self.data)
            .env_remove("INTENTPROOF_SERVER")
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "intentproof {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// The `IntentProofClient` an rmcp client or server records into: every
    /// event redacted (the daemon's default policy and hash key, as the
    /// gateway does), sealed with a fresh instance key the daemon is told
    /// to trust, on disk before the call returns (`Durability::Local`), and
    /// delivered to the daemon's batch ingest in the background.
    pub fn sink(&self, name: &str) -> Result<IntentProofClient> {
        let key = InstanceKey::generate()?;
        self.cli(&["keys", "trust", key.instance_id(), &key.public_key_base64()])?;
        let token = std::fs::read_to_string(self.data.join("token"))?;
        let http = HttpExporter::new(HttpExporterConfig {
            headers: vec![("Authorization".into(), format!("Bearer {}", token.trim()))],
            format: BodyFormat::BareV1,
            ..HttpExporterConfig::new(format!("http://{}/v1/events", self.listen))
        })?;
        let redactor = Redactor::new(
            RedactionPolicy::default_policy(),
            HashKey::load_or_create(&self.data)?,
        );
        let config = IntentProofConfig::default()
            .redactor(Arc::new(redactor))
            .signer(Arc::new(Sealer::new(key)))
            .exporters(vec![Arc::new(http) as Arc<dyn Exporter>])
            .durability(Durability::Local {
                dir: self.dir.path().join(format!("outbox-{name}")),
            });
        Ok(IntentProofClient::try_new(config)?)
    }

    /// What the daemon holds of `correlation`, checked: its events (status,
    /// action, intent, and how redaction stored a card number), the proof
    /// bundle's verdict (`intentproof export`, then `intentproof verify
    /// --key` with the daemon's public key), and the findings.
    pub fn report(&self, correlation: &str) -> Result<Vec<String>> {
        let mut lines = vec!["recorded by the daemon:".to_owned()];
        let page: Value = serde_json::from_str(&self.cli(&[
            "events",
            "--correlation",
            correlation,
            "--limit",
            "100",
            "--json",
        ])?)?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for row in &events {
            let event = &row["event"];
            let text = |key: &str| event[key].as_str().unwrap_or_default().to_owned();
            lines.push(format!(
                "  {:<5} {:<32} {}",
                text("status"),
                text("action"),
                text("intent")
            ));
            if let Some(card) = event.pointer("/inputs/card_number").and_then(Value::as_str) {
                lines.push(format!("        card_number stored as {card:?}"));
            }
        }
        let bundle = self.dir.path().join(format!("{correlation}.proof.tar.zst"));
        let bundle_path = bundle.to_string_lossy().into_owned();
        self.cli(&["export", correlation, "-o", &bundle_path])?;
        let key = self.dir.path().join("daemon.pem");
        std::fs::write(&key, self.cli(&["keys", "show", "--pem"])?)?;
        let verified = Command::new(&self.bin)
            .arg("verify")
            .arg("--key")
            .arg(&key)
            .arg(&bundle)
            .output()?;
        let text = String::from_utf8(verified.stdout)?;
        let signatures = text
            .lines()
            .filter(|l| *l == "- event.signature_valid")
            .count();
        lines.push(format!(
            "bundle: {} (exit {}), {} events, {signatures} event signatures valid",
            text.lines().next().unwrap_or("no verdict"),
            verified.status.code().unwrap_or(-1),
            events.len()
        ));
        let findings: Value = serde_json::from_str(&self.cli(&["findings", "--json"])?)?;
        for finding in findings["findings"].as_array().into_iter().flatten() {
            if finding["correlation_id"] != correlation {
                continue;
            }
            let flag = finding["kind"]
                .as_str()
                .unwrap_or_default()
                .replace('_', " ")
                .to_uppercase();
            lines.push(format!(
                "finding: {flag}: {}",
                finding["message"].as_str().unwrap_or_default()
            ));
        }
        Ok(lines)
    }
}
