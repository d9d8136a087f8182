//! [`Shipper`]: seals the events of one `intentproof mcp` process with its
//! own instance key, writes them ahead to a spool file, and delivers the
//! spool to the daemon in order.
//!
//! Every event is appended (and `fdatasync`ed) to
//! `<data-dir>/spool/<instance>.<pid>.jsonl` before delivery is tried, so an
//! event survives the daemon being down, and this process dying. Delivery
//! starts the daemon when none answers. Spool files left by processes that
//! died are adopted by the next shipper that starts.
//!
//! Each process has its own instance key (several `intentproof mcp`
//! processes may write into the same correlation: one key per process keeps
//! their chains apart). The key is trusted by writing it to the data dir's
//! `trusted-keys/` and registering it with a running daemon.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use intentproof_core::ExecutionEvent;
use intentproof_core::keys::InstanceKey;
use intentproof_core::seal::Sealer;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use crate::config::DEFAULT_PORT;
use crate::datadir::DataDir;

/// Where and how to deliver.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// The daemon's data dir (spool, token, trusted keys, daemon.json).
    pub data_dir: DataDir,
    /// Daemon URL; `None`: the one in `daemon.json`, else 127.0.0.1:9787.
    pub server: Option<String>,
    /// Start `intentproof serve` on this data dir when no daemon answers.
    pub autostart: Option<PathBuf>,
    /// Bearer token for ingest, if the daemon requires one.
    pub ingest_token: Option<String>,
    /// Applied to every event before it is sealed (nothing unredacted
    /// reaches the spool or the daemon).
    pub redactor: std::sync::Arc<intentproof_policy::redact::Redactor>,
}

enum Message {
    /// An event; with a sender, it is answered once the event is on disk
    /// (or with why it could not be).
    Event(
        Box<ExecutionEvent>,
        Option<oneshot::Sender<Result<(), String>>>,
    ),
    Finish(Duration, oneshot::Sender<usize>),
}

/// Handle to the shipping task.
pub struct Shipper {
    sender: mpsc::UnboundedSender<Message>,
    instance_id: String,
}

impl Shipper {
    /// Creates this process's instance key, trusts it, and starts the task.
    pub fn start(config: ShipperConfig) -> Result<Shipper, String> {
        let key = InstanceKey::generate().map_err(|e| e.to_string())?;
        config
            .data_dir
            .trust(key.instance_id(), &key.verifying_key())
            .map_err(|e| format!("cannot record this process's key: {e}"))?;
        let instance_id = key.instance_id().to_owned();
        let spool_dir = config.data_dir.path().join("spool");
        if let Err(e) = std::fs::create_dir_all(&spool_dir) {
            // Not fatal: events are still delivered, without a disk copy;
            // fail-closed mode refuses calls instead.
            tracing::error!(spool = %spool_dir.display(), error = %e, "cannot create the spool directory");
        }
        let spool = spool_dir.join(format!("{instance_id}.{}.jsonl", std::process::id()));
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(config, key, spool, receiver));
        Ok(Shipper {
            sender,
            instance_id,
        })
    }

    /// This process's instance id.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Queues an event; never blocks.
    pub fn send(&self, event: ExecutionEvent) {
        let _ = self.sender.send(Message::Event(Box::new(event), None));
    }

    /// Queues an event and waits until it is sealed and fsync'd in the
    /// spool: the durability point of fail-closed mode.
    pub async fn send_durable(&self, event: ExecutionEvent) -> Result<(), String> {
        let (done, result) = oneshot::channel();
        self.sender
            .send(Message::Event(Box::new(event), Some(done)))
            .map_err(|_| "the recorder has stopped".to_owned())?;
        result
            .await
            .map_err(|_| "the recorder has stopped".to_owned())?
    }

    /// Tries to deliver everything for at most `wait`; returns how many
    /// events are still only in the spool (delivered later by another
    /// process or the daemon's next start).
    pub async fn finish(&self, wait: Duration) -> usize {
        let (done, result) = oneshot::channel();
        if self.sender.send(Message::Finish(wait, done)).is_err() {
            return 0;
        }
        result.await.unwrap_or(0)
    }
}

struct Delivery {
    config: ShipperConfig,
    http: reqwest::Client,
    registered: bool,
    /// The URL whose daemon was checked to own this data dir.
    checked_url: Option<String>,
    last_autostart: Option<Instant>,
    key: InstanceKey,
}

enum Posted {
    /// Stored, duplicate, or refused for good (logged): done with it.
    Done,
    /// The daemon is not reachable (or overloaded): keep it and retry.
    Retry(String),
}

impl Delivery {
    fn url(&self) -> String {
        self.config
            .server
            .clone()
            .or_else(|| self.config.data_dir.daemon_url())
            .unwrap_or_else(|| format!("http://127.0.0.1:{DEFAULT_PORT}"))
            .trim_end_matches('/')
            .to_owned()
    }

    async fn register(&mut self) {
        if self.registered {
            return;
        }
        let Ok(token) = self.config.data_dir.token() else {
            return;
        };
        let body = serde_json::json!({"instance_id": self.key.instance_id(), "public_key": self.key.public_key_base64()});
        let sent = self
            .http
            .post(format!("{}/v1/keys", self.url()))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            self.registered = true;
        }
    }

    /// Whether the daemon at `url` is this data dir's (a daemon of another
    /// data dir may listen on the default port).
    async fn owns_data_dir(&mut self, url: &str) -> Result<bool, reqwest::Error> {
        // An explicitly configured daemon is trusted as given.
        if self.checked_url.as_deref() == Some(url) || self.config.server.is_some() {
            return Ok(true);
        }
        let Ok(own) = InstanceKey::load_from(self.config.data_dir.path()) else {
            // No daemon key yet: no daemon of ours ever ran; one will start.
            return Ok(false);
        };
        let body = self
            .http
            .get(format!("{url}/healthz"))
            .send()
            .await?
            .bytes()
            .await?;
        let health: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let ours = health
            .get("instance_id")
            .and_then(serde_json::Value::as_str)
            == Some(own.instance_id());
        if ours {
            self.checked_url = Some(url.to_owned());
        }
        Ok(ours)
    }

    async fn post(&mut self, line: &str) -> Posted {
        let url = self.url();
        match self.owns_data_dir(&url).await {
            Ok(true) => {}
            Ok(false) => {
                self.autostart();
                return Posted::Retry(format!("the daemon at {url} serves another data dir"));
            }
            Err(e) => {
                if e.is_connect() {
                    self.autostart();
                }
                return Posted::Retry(e.without_url().to_string());
            }
        }
        self.register().await;
        let mut request = self
            .http
            .post(format!("{}/v1/events", self.url()))
            .header("content-type", "application/json")
            .body(line.to_owned());
        if let Some(token) = &self.config.ingest_token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Posted::Done,
            Ok(response) if response.status().as_u16() == 503 => {
                Posted::Retry("daemon overloaded".into())
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                let kept = self
                    .config
                    .data_dir
                    .path()
                    .join("spool")
                    .join("rejected.jsonl");
                let saved = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&kept)
                    .and_then(|mut f| {
                        std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes())
                    });
                tracing::error!(%status, response = %body, kept = %kept.display(), saved = saved.is_ok(), "the daemon refused an event; it was set aside");
                Posted::Done
            }
            Err(e) => {
                if e.is_connect() {
                    self.autostart();
                }
                Posted::Retry(e.without_url().to_string())
            }
        }
    }

    /// Starts `intentproof serve` in the background, at most every 5 s.
    fn autostart(&mut self) {
        let Some(program) = &self.config.autostart else {
            return;
        };
        if self
            .last_autostart
            .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
        {
            return;
        }
        self.last_autostart = Some(Instant::now());
        let log = self.config.data_dir.path().join("daemon.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map(std::process::Stdio::from)
            .unwrap_or_else(|_| std::process::Stdio::null());
        let mut command = std::process::Command::new(program);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(self.config.data_dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr);
        // Its own process group: a Ctrl-C aimed at the agent must not stop it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        match command.spawn() {
            Ok(child) => {
                tracing::info!(pid = child.id(), log = %log.display(), "no daemon answered: started one")
            }
            Err(e) => tracing::error!(error = %e, "no daemon answered and starting one failed"),
        }
    }
}

/// Spool files of processes that are gone, renamed to `spool` (so only one
/// adopter gets each) and read.
pub(crate) fn adopt_orphans(spool_dir: &Path, own: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let Ok(entries) = std::fs::read_dir(spool_dir) else {
        return lines;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == own || path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let Some(pid) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.rsplit('.').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let claimed = path.with_extension(format!("adopted-{}", std::process::id()));
        if std::fs::rename(&path, &claimed).is_err() {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(&claimed) {
            lines.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned),
            );
        }
        let _ = std::fs::remove_file(&claimed);
    }
    lines
}

async fn run(
    config: ShipperConfig,
    key: InstanceKey,
    spool: PathBuf,
    mut receiver: mpsc::UnboundedReceiver<Message>,
) {
    let sealer = Sealer::new(key.clone());
    let spool_dir = spool.parent().map(Path::to_owned).unwrap_or_default();
    let mut file = match tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spool)
        .await
    {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!(spool = %spool.display(), error = %e, "cannot open the spool: events are delivered without a disk copy");
            None
        }
    };
    let mut queue: VecDeque<String> = adopt_orphans(&spool_dir, &spool).into();
    if let Some(f) = file.as_mut() {
        for line in &queue {
            let _ = f.write_all(format!("{line}\n").as_bytes()).await;
        }
        let _ = f.sync_data().await;
    }
    let mut delivery = Delivery {
        config,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default(),
        registered: false,
        checked_url: None,
        last_autostart: None,
        key,
    };
    let mut backoff = Duration::from_millis(100);
    let mut finishing: Option<(Instant, oneshot::Sender<usize>)> = None;
    loop {
        // Take what arrived; wait only when there is nothing to deliver.
        let message = if queue.is_empty() && finishing.is_none() {
            receiver.recv().await
        } else {
            match receiver.try_recv() {
                Ok(m) => Some(m),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) if queue.is_empty() => return,
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            }
        };
        match message {
            Some(Message::Event(mut event, durable)) => {
                delivery.config.redactor.redact_event(&mut event);
                let written = match sealer.seal(&event) {
                    Ok(sealed) => {
                        let line = sealed.event.to_string();
                        let on_disk = match file.as_mut() {
                            Some(f) => async {
                                f.write_all(format!("{line}\n").as_bytes()).await?;
                                f.sync_data().await
                            }
                            .await
                            .map_err(|e| format!("cannot write the spool: {e}")),
                            None => Err("the spool could not be opened".to_owned()),
                        };
                        match (&on_disk, durable.is_some()) {
                            // A fail-closed marker that is not on disk: the call
                            // is refused, so the marker must not be recorded.
                            (Err(_), true) => {}
                            (Err(e), false) => {
                                tracing::error!(error = %e, "event not on disk; it is still delivered");
                                queue.push_back(line);
                            }
                            (Ok(()), _) => queue.push_back(line),
                        }
                        on_disk
                    }
                    Err(e) => {
                        tracing::error!(error = %e, action = %event.action, "event cannot be sealed; not recorded");
                        Err(format!("the event cannot be sealed: {e}"))
                    }
                };
                if let Some(done) = durable {
                    let _ = done.send(written);
                }
                continue;
            }
            Some(Message::Finish(wait, done)) => {
                finishing = Some((Instant::now() + wait, done));
            }
            None if queue.is_empty() && finishing.is_none() => return,
            None => {}
        }
        // Deliver in order.
        while let Some(line) = queue.front() {
            match delivery.post(line).await {
                Posted::Done => {
                    queue.pop_front();
                    backoff = Duration::from_millis(100);
                }
                Posted::Retry(why) => {
                    tracing::debug!(reason = %why, "daemon not reachable; events stay spooled");
                    break;
                }
            }
        }
        if queue.is_empty()
            && let Some(f) = file.as_mut()
        {
            let _ = f.set_len(0).await;
        }
        if let Some((deadline, _)) = &finishing
            && (queue.is_empty() || Instant::now() >= *deadline)
        {
            if let Some((_, done)) = finishing.take() {
                if queue.is_empty() {
                    let _ = tokio::fs::remove_file(&spool).await;
                }
                let _ = done.send(queue.len());
            }
            return;
        }
        if !queue.is_empty() {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// `intentproof mcp`'s events: sealed with this process's key, spooled,
/// delivered to the daemon.
impl intentproof_mcp::sink::StdioSink for Shipper {
    fn send(&self, event: ExecutionEvent) {
        Shipper::send(self, event);
    }

    fn send_durable(
        &self,
        event: ExecutionEvent,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send {
        Shipper::send_durable(self, event)
    }

    fn finish(&self, wait: Duration) -> impl std::future::Future<Output = usize> + Send {
        Shipper::finish(self, wait)
    }
}
