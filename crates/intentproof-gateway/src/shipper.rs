//! [`Shipper`]: seals the events of one `intentproof mcp` process with its
//! own instance key, writes them ahead to a spool file, and delivers the
//! spool to the daemon in order.
//!
//! Two stages, so that neither waits for the other:
//!
//! - **The spool thread** (a plain thread of its own) redacts and seals
//!   each event and appends it to `<data-dir>/spool/<instance>.<pid>.jsonl`
//!   in group commits: woken by an event, it gathers for [`SPOOL_LINGER`]
//!   (5 ms), then takes every event queued (at most [`SPOOL_BATCH`]) and
//!   writes them in one write and one `fdatasync`. An awaited event
//!   (fail-closed mode's "started" record) or the end of the session cuts
//!   the gathering short: it is committed at once, with whatever was
//!   gathered before it. The thread never touches the network.
//! - **Delivery** (a task) takes what was committed and posts it to the
//!   daemon's `POST /v1/events:batch`, up to [`DELIVERY_BATCH`] lines a
//!   request, retrying with backoff while the daemon is unreachable
//!   (starting it when none answers). It holds at most
//!   [`DELIVERY_MEMORY_LINES`] lines in memory; past that, lines wait in
//!   the spool file only and are read back from it in order (`Backlog`),
//!   so a gateway whose daemon stays down keeps its memory flat. Once
//!   everything written is delivered, the spool thread empties the file.
//!
//! # What survives a crash
//!
//! The relay hands a call's event over right after it wrote the answer to
//! the agent. In fail-open mode, an event is in the spool file (written)
//! at most [`SPOOL_LINGER`] plus one commit's sealing and write after
//! that: a SIGKILL loses at most the calls answered within that window
//! (5 ms plus well under a millisecond while the spool keeps up; more on a
//! starved or saturated machine, where commits queue). A power cut can
//! lose the same window plus that commit's `fdatasync`. In fail-closed
//! mode a call is forwarded only once its "started" record is written and
//! fsync'd (exactly its own commit, never delivery), so no call is made
//! unrecorded. `crates/intentproof-cli/tests/spool_sigkill.rs` checks the
//! window with 30 SIGKILLs, the daemon up and down.
//!
//! Spool files of processes that died are adopted by whichever comes
//! first: the next shipper that starts on the data dir, or the daemon when
//! it starts (`serve.rs` ingests them). The adopter renames each to
//! `<file>.adopted-<its pid>` and deletes it only once its lines are safe
//! (copied into the shipper's own spool in one commit; stored or set aside
//! by the daemon), so a crash in between leaves the claimed file for the
//! next adopter (a line delivered twice is stored once: the daemon answers
//! a duplicate as such). Bytes after a file's last newline are a commit a
//! kill cut short: not an event, so they are kept in
//! `spool/torn-tails.txt` ([`TORN_TAILS`]), never delivered.
//!
//! # Permissions
//!
//! The spool directory is created 0700 and every file in it (spools,
//! `rejected.jsonl`) 0600, whatever the umask; so are the data dir
//! ([`DataDir::ensure_private`]) and `daemon.log` of an autostarted daemon.
//!
//! Each process has its own instance key (several `intentproof mcp`
//! processes may write into the same correlation: one key per process keeps
//! their chains apart). The key is trusted by writing it to the data dir's
//! `trusted-keys/` and registering it with a running daemon.

use std::collections::VecDeque;
use std::io::{BufRead, Read, Seek};
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use intentproof_core::ExecutionEvent;
use intentproof_core::backoff::{Backoff, retry_after_header};
use intentproof_core::keys::InstanceKey;
use intentproof_core::seal::Sealer;
use tokio::sync::{mpsc, oneshot};

use intentproof_api::datadir::DataDir;

/// Where and how to deliver.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// The daemon's data dir (spool, token, trusted keys, daemon.json).
    pub data_dir: DataDir,
    /// Daemon URL; `None`: the one in `daemon.json`, else 127.0.0.1:9787.
    pub server: Option<String>,
    /// Start `intentproof serve` on this data dir when no daemon answers.
    pub autostart: Option<PathBuf>,
    /// Bearer token for ingest, if the daemon requires one; without it,
    /// delivery authenticates with the data dir's daemon token.
    pub ingest_token: Option<String>,
    /// Applied to every event before it is sealed (nothing unredacted
    /// reaches the spool or the daemon).
    pub redactor: std::sync::Arc<intentproof_policy::redact::Redactor>,
}

/// Most events one spool commit takes.
pub const SPOOL_BATCH: usize = 1024;
/// How long the spool thread gathers events after the first of a commit
/// (cut short by an awaited event, as in fail-closed mode): with one
/// commit's sealing and write, the fail-open loss window after a SIGKILL.
/// One wake-up and one `fdatasync` per window instead of per call keeps
/// the relay's 2 cores for the relay (stdio added p50 +0.33 ms with a
/// commit per call, +0.12 to +0.15 ms with this; BENCHMARKS.md).
pub const SPOOL_LINGER: Duration = Duration::from_millis(5);
/// Most events one delivery request carries.
pub const DELIVERY_BATCH: usize = 512;
/// Delivery starts once no new event was committed for this long...
pub const DELIVERY_QUIET: Duration = Duration::from_millis(20);
/// ...or once this many wait, however busy the relay is.
pub const DELIVER_EARLY_AT: usize = 4096;
/// Most committed lines delivery holds in memory; past it they wait in the
/// spool file only and are read back from it (`Backlog`), so a gateway
/// whose daemon is down for hours keeps its memory flat.
pub const DELIVERY_MEMORY_LINES: usize = 2 * DELIVER_EARLY_AT;

/// What the spool thread is handed.
enum Spooled {
    /// An event; with a sender, it is answered once the event is on disk
    /// (or with why it could not be).
    Event(
        Box<ExecutionEvent>,
        Option<oneshot::Sender<Result<(), String>>>,
    ),
    /// This many committed lines reached the daemon.
    Delivered(usize),
    /// Pass on to delivery once everything before it is committed.
    Finish(Duration, oneshot::Sender<usize>),
}

/// What delivery is handed.
enum ToDeliver {
    /// Committed lines, and where in the spool file they are (byte
    /// offsets); `None` when they could not be written.
    Lines(Vec<String>, Option<Range<u64>>),
    Finish(Duration, oneshot::Sender<usize>),
}

/// Handle to the spool thread and the delivery task.
pub struct Shipper {
    sender: std::sync::mpsc::Sender<Spooled>,
    instance_id: String,
}

impl Shipper {
    /// Creates this process's instance key, trusts it, and starts the task.
    pub fn start(config: ShipperConfig) -> Result<Shipper, String> {
        Shipper::start_with(config, DELIVERY_MEMORY_LINES)
    }

    /// [`Shipper::start`], delivery holding at most `memory_lines` lines in
    /// memory.
    fn start_with(config: ShipperConfig, memory_lines: usize) -> Result<Shipper, String> {
        let key = InstanceKey::generate().map_err(|e| e.to_string())?;
        config
            .data_dir
            .trust(key.instance_id(), &key.verifying_key())
            .map_err(|e| format!("cannot record this process's key: {e}"))?;
        let instance_id = key.instance_id().to_owned();
        let spool_dir = config.data_dir.path().join("spool");
        if let Err(e) = intentproof_core::private_file::create_private_dir(&spool_dir) {
            // Not fatal: events are still delivered, without a disk copy;
            // fail-closed mode refuses calls instead.
            tracing::error!(spool = %spool_dir.display(), error = %e, "cannot create the spool directory");
        }
        let spool = spool_dir.join(format!("{instance_id}.{}.jsonl", std::process::id()));
        let (sender, receiver) = std::sync::mpsc::channel();
        let (to_delivery, delivery_receiver) = mpsc::unbounded_channel();
        let adopted = adopt_orphans(&spool_dir, &spool);
        let file = open_spool(&spool);
        let spool_thread = SpoolThread {
            sealer: Sealer::new(key.clone()),
            redactor: std::sync::Arc::clone(&config.redactor),
            written: file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map_or(0, |m| m.len()),
            file,
            to_delivery,
            handed_over: 0,
            delivered: 0,
        };
        std::thread::Builder::new()
            .name("intentproof-spool".into())
            .spawn(move || spool_thread.run(receiver, adopted))
            .map_err(|e| format!("cannot start the spool thread: {e}"))?;
        tokio::spawn(deliver(
            config,
            key,
            Backlog::new(spool, memory_lines),
            delivery_receiver,
            sender.clone(),
        ));
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
        let _ = self.sender.send(Spooled::Event(Box::new(event), None));
    }

    /// Queues an event and waits until it is sealed and fsync'd in the
    /// spool: the durability point of fail-closed mode.
    pub async fn send_durable(&self, event: ExecutionEvent) -> Result<(), String> {
        let (done, result) = oneshot::channel();
        self.sender
            .send(Spooled::Event(Box::new(event), Some(done)))
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
        if self.sender.send(Spooled::Finish(wait, done)).is_err() {
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
    /// The daemon is not reachable (or overloaded): keep it and retry,
    /// not before the daemon's `Retry-After` if it sent one.
    Retry(String, Option<Duration>),
}

impl Delivery {
    fn url(&self) -> String {
        self.config
            .data_dir
            .daemon_base(self.config.server.clone())
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

    /// Posts `lines` as one batch; `Done` once the daemon has each line
    /// stored, as a duplicate, or refused for good (set aside).
    async fn post(&mut self, lines: &[String]) -> Posted {
        let url = self.url();
        match self.owns_data_dir(&url).await {
            Ok(true) => {}
            Ok(false) => {
                self.autostart();
                return Posted::Retry(format!("the daemon at {url} serves another data dir"), None);
            }
            Err(e) => {
                if e.is_connect() {
                    self.autostart();
                }
                return Posted::Retry(e.without_url().to_string(), None);
            }
        }
        self.register().await;
        let mut body = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            body.push_str(line);
            body.push('\n');
        }
        let mut request = self
            .http
            .post(format!("{}/v1/events:batch", self.url()))
            .header("content-type", "application/x-ndjson")
            .body(body);
        // Plan and call-completion events are reserved actions, which the
        // daemon takes only from an authenticated sender: the ingest token
        // when one is configured, else the daemon token of this data dir
        // (the daemon that owns it accepts either).
        let token = match &self.config.ingest_token {
            Some(token) => Some(token.clone()),
            None => self.config.data_dir.token().ok(),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                if e.is_connect() {
                    self.autostart();
                }
                return Posted::Retry(e.without_url().to_string(), None);
            }
        };
        let status = response.status();
        if status.as_u16() == 503 {
            // Stored lines come back as duplicates when the batch is re-sent.
            let retry_after = retry_after_header(
                response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .map(|v| v.as_bytes()),
            );
            return Posted::Retry("daemon overloaded".into(), retry_after);
        }
        let body = response.text().await.unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let refused: Vec<usize> = match answer.get("results").and_then(serde_json::Value::as_array)
        {
            Some(results) if status.is_success() => results
                .iter()
                .filter(|r| {
                    r.get("status")
                        .and_then(serde_json::Value::as_u64)
                        .is_some_and(|s| s >= 400)
                })
                .filter_map(|r| r.get("line").and_then(serde_json::Value::as_u64))
                .filter_map(|line| usize::try_from(line).ok()?.checked_sub(1))
                .collect(),
            // The whole batch refused (an old daemon, a token it wants):
            // each line is set aside, as a single refused post was.
            _ => (0..lines.len()).collect(),
        };
        if !refused.is_empty() {
            let kept = self
                .config
                .data_dir
                .path()
                .join("spool")
                .join("rejected.jsonl");
            let text: String = refused
                .iter()
                .filter_map(|i| lines.get(*i))
                .map(|l| format!("{l}\n"))
                .collect();
            let saved = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&kept)
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
            let shown: String = body.chars().take(500).collect();
            tracing::error!(%status, refused = refused.len(), response = %shown, kept = %kept.display(), saved = saved.is_ok(), "the daemon refused events; they were set aside");
        }
        Posted::Done
    }

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
            .mode(0o600)
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

/// Lines taken over from the spool files of processes that are gone.
#[derive(Debug, Default)]
pub(crate) struct Adopted {
    /// Their lines, file after file, in each file's order.
    pub(crate) lines: Vec<String>,
    /// The claimed files: deleted once `lines` are committed to our own
    /// spool, so a crash before that leaves them for the next adopter.
    pub(crate) claimed: Vec<PathBuf>,
}

/// The pid of the process a spool file belongs to: `<instance>.<pid>.jsonl`
/// (its own spool) or `<name>.adopted-<pid>` (claimed by an adopter).
fn spool_owner(path: &Path) -> Option<u32> {
    let extension = path.extension()?.to_str()?;
    if extension == "jsonl" {
        path.file_stem()?.to_str()?.rsplit('.').next()?.parse().ok()
    } else {
        extension.strip_prefix("adopted-")?.parse().ok()
    }
}

/// Spool files of processes that are gone (never written, or claimed by an
/// adopter that died before it had copied them), renamed to
/// `<file>.adopted-<our pid>` (so only one adopter gets each) and read.
pub(crate) fn adopt_orphans(spool_dir: &Path, own: &Path) -> Adopted {
    let mut adopted = Adopted::default();
    let Ok(entries) = std::fs::read_dir(spool_dir) else {
        return adopted;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    // Each file's lines stay together and in order (one instance's chain
    // is in one file, or in copies of it); the order between files does
    // not matter, but a stable one is easier to follow in logs.
    paths.sort();
    for path in paths {
        if path == own {
            continue;
        }
        let Some(pid) = spool_owner(&path) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let claimed = path.with_extension(format!("adopted-{}", std::process::id()));
        if std::fs::rename(&path, &claimed).is_err() {
            continue;
        }
        match std::fs::read_to_string(&claimed) {
            Ok(text) => {
                let (complete, torn) = split_torn_tail(&text);
                if !torn.is_empty() {
                    keep_torn_tail(spool_dir, &claimed, torn);
                }
                adopted.lines.extend(
                    complete
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(str::to_owned),
                );
                adopted.claimed.push(claimed);
            }
            // Kept under its claimed name: the next adopter after this
            // process retries it.
            Err(e) => {
                tracing::error!(spool = %claimed.display(), error = %e, "cannot read a spool left by a process that is gone; it stays for the next gateway or daemon start to try")
            }
        }
    }
    adopted
}

/// Where the torn tails of adopted spool files are kept
/// ([`keep_torn_tail`]).
pub const TORN_TAILS: &str = "torn-tails.txt";

/// A spool file's complete lines, and the bytes after its last newline.
/// Every commit ends with a newline, so bytes after the last one are a
/// commit cut short: a SIGKILL during its `write` (Linux stops a write to
/// a regular file between pages when a fatal signal is pending).
fn split_torn_tail(text: &str) -> (&str, &str) {
    let end = text.rfind('\n').map_or(0, |i| i + 1);
    text.split_at(end)
}

/// Appends a torn tail to `spool/torn-tails.txt` (0600) and says so.
///
/// A torn tail is not an event: a sealed line cut short cannot be
/// verified, and the commit it belonged to never finished, so no
/// fail-closed call went ahead on its strength and the calls of a
/// fail-open one were answered within the loss window. It is not
/// delivered (the daemon would refuse it and it would be mistaken for a
/// refused event in `rejected.jsonl`), but it is kept for a person to
/// look at, as the journal keeps its own torn tails in `quarantine/`.
fn keep_torn_tail(spool_dir: &Path, from: &Path, torn: &str) {
    let kept = spool_dir.join(TORN_TAILS);
    let saved = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&kept)
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{torn}\n").as_bytes()));
    match saved {
        Ok(()) => {
            tracing::warn!(spool = %from.display(), bytes = torn.len(), kept = %kept.display(), "a spool left by a process that is gone ends in a write cut short (a kill mid-commit); those bytes are not an event and are kept aside, not delivered")
        }
        Err(e) => {
            tracing::error!(spool = %from.display(), bytes = torn.len(), error = %e, "a spool left by a process that is gone ends in a write cut short; its bytes could not be kept aside and are not delivered")
        }
    }
}

/// Opens (creates, 0600) the spool file for appending.
fn open_spool(spool: &Path) -> Option<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(spool) {
        Ok(file) => Some(file),
        Err(e) => {
            tracing::error!(spool = %spool.display(), error = %e, "cannot open the spool: events are delivered without a disk copy");
            None
        }
    }
}

/// The spool stage: redact, seal, append, one `fdatasync` per commit.
struct SpoolThread {
    sealer: Sealer,
    redactor: std::sync::Arc<intentproof_policy::redact::Redactor>,
    file: Option<std::fs::File>,
    to_delivery: mpsc::UnboundedSender<ToDeliver>,
    /// Lines handed to delivery since the file was last emptied (written
    /// to it, or not when the write failed), and how many of them reached
    /// the daemon: the file is emptied only when every one did.
    handed_over: usize,
    delivered: usize,
    /// Bytes in the spool file: where the next commit starts.
    written: u64,
}

/// What one commit gathered.
#[derive(Default)]
struct Gathered {
    lines: Vec<String>,
    /// Awaiting their lines' commit (fail-closed mode).
    waiting: Vec<oneshot::Sender<Result<(), String>>>,
    /// Passed on to delivery after the commit.
    finish: Option<(Duration, oneshot::Sender<usize>)>,
}

impl Gathered {
    /// Nothing more joins this commit: the session ends, or it is full.
    fn closed(&self) -> bool {
        self.finish.is_some() || self.lines.len() >= SPOOL_BATCH
    }
}

impl SpoolThread {
    fn run(mut self, receiver: std::sync::mpsc::Receiver<Spooled>, adopted: Adopted) {
        if !adopted.lines.is_empty() || !adopted.claimed.is_empty() {
            // Adopted lines are this process's to deliver now: on its disk
            // first, and only then are the files they came from deleted.
            let on_disk = self.commit(&adopted.lines);
            match &on_disk {
                Ok(_) => {
                    for claimed in &adopted.claimed {
                        let _ = std::fs::remove_file(claimed);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "adopted spool lines not copied; their files stay for the next gateway")
                }
            }
            if !adopted.lines.is_empty() {
                self.hand_over(adopted.lines, on_disk.ok());
            }
        }
        while let Ok(first) = receiver.recv() {
            let mut gathered = Gathered::default();
            // An event nobody waits for starts the gathering window.
            let mut linger_until =
                matches!(first, Spooled::Event(_, None)).then(|| Instant::now() + SPOOL_LINGER);
            self.take(first, &mut gathered);
            while !gathered.closed() {
                if !gathered.waiting.is_empty() {
                    // Someone waits: what is already queued joins, no more.
                    linger_until = None;
                }
                let next = match linger_until {
                    Some(until) => match receiver
                        .recv_timeout(until.saturating_duration_since(Instant::now()))
                    {
                        Ok(message) => Some(message),
                        Err(RecvTimeoutError::Timeout) => {
                            // The window is over: take what is queued.
                            linger_until = None;
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => None,
                    },
                    None => receiver.try_recv().ok(),
                };
                let Some(message) = next else {
                    break;
                };
                self.take(message, &mut gathered);
            }
            let Gathered {
                lines,
                waiting,
                finish,
            } = gathered;
            if !lines.is_empty() {
                let on_disk = self.commit(&lines);
                if let Err(e) = &on_disk {
                    tracing::error!(error = %e, "events not on disk; they are still delivered");
                }
                for done in waiting {
                    let _ = done.send(on_disk.clone().map(|_| ()));
                }
                self.hand_over(lines, on_disk.ok());
            }
            if let Some((wait, done)) = finish {
                let _ = self.to_delivery.send(ToDeliver::Finish(wait, done));
            }
        }
    }

    /// Adds one message to the commit being gathered.
    fn take(&mut self, message: Spooled, gathered: &mut Gathered) {
        match message {
            Spooled::Event(mut event, durable) => {
                self.redactor.redact_event(&mut event);
                match self.sealer.seal(&event) {
                    Ok(sealed) => {
                        gathered.lines.push(sealed.event.to_string());
                        if let Some(done) = durable {
                            gathered.waiting.push(done);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, action = %event.action, "event cannot be sealed; not recorded");
                        if let Some(done) = durable {
                            let _ = done.send(Err(format!("the event cannot be sealed: {e}")));
                        }
                    }
                }
            }
            Spooled::Delivered(n) => {
                self.delivered += n;
                if self.delivered >= self.handed_over {
                    self.empty_file();
                }
            }
            Spooled::Finish(wait, done) => gathered.finish = Some((wait, done)),
        }
    }

    /// Passes committed (or uncommittable) lines on to delivery, with
    /// where they are in the spool file.
    fn hand_over(&mut self, lines: Vec<String>, at: Option<Range<u64>>) {
        self.handed_over += lines.len();
        let _ = self.to_delivery.send(ToDeliver::Lines(lines, at));
    }

    /// Appends `lines` in one write and one `fdatasync`; returns where in
    /// the file they are.
    fn commit(&mut self, lines: &[String]) -> Result<Range<u64>, String> {
        let Some(file) = self.file.as_mut() else {
            return Err("the spool could not be opened".into());
        };
        let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        let start = self.written;
        match std::io::Write::write_all(file, &bytes).and_then(|()| file.sync_data()) {
            Ok(()) => {
                self.written += bytes.len() as u64;
                Ok(start..self.written)
            }
            Err(e) => {
                // Part of it may be in the file: later commits start at
                // its real end.
                self.written = file.metadata().map_or(self.written, |m| m.len());
                Err(format!("cannot write the spool: {e}"))
            }
        }
    }

    /// Everything written was delivered: the file starts over.
    fn empty_file(&mut self) {
        if let Some(file) = &self.file
            && file.set_len(0).is_ok()
        {
            self.handed_over = 0;
            self.delivered = 0;
            self.written = 0;
        }
    }
}

/// Committed lines waiting for the daemon: in memory up to a bound, then
/// only in the spool file, read back from it in order.
///
/// The lines past the bound form one run of the file (byte offsets) that
/// grows with each commit until it is delivered. The spool thread empties
/// the file only once every line handed over was delivered, so the
/// offsets of a pending run stay valid. Lines a failed write left out of
/// the file (rare: a full or failing disk) exist nowhere else: they wait
/// in a queue of their own, delivered last (the daemon takes a chain's
/// events in any order), and past the bound the oldest are dropped with an
/// error naming how many.
struct Backlog {
    spool: PathBuf,
    max_memory: usize,
    /// Lines that are in the spool file too, oldest first.
    memory: VecDeque<String>,
    /// The run of the spool file whose lines are not in memory, and how
    /// many lines it holds.
    file: Option<(Range<u64>, usize)>,
    /// Lines that are not in the spool file.
    off_disk: VecDeque<String>,
}

/// The next batch to post, and where it came from.
struct Batch {
    lines: Vec<String>,
    from: Source,
}

enum Source {
    Memory,
    /// This many bytes from the start of the file's run.
    File(u64),
    OffDisk,
}

impl Backlog {
    fn new(spool: PathBuf, max_memory: usize) -> Backlog {
        Backlog {
            spool,
            max_memory: max_memory.max(1),
            memory: VecDeque::new(),
            file: None,
            off_disk: VecDeque::new(),
        }
    }

    fn len(&self) -> usize {
        self.memory.len() + self.file.as_ref().map_or(0, |(_, n)| *n) + self.off_disk.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a commit's lines, `at` where they are in the spool file.
    /// Returns how many lines not on disk it had to drop (to be counted as
    /// done, so the spool file still empties).
    fn push(&mut self, lines: Vec<String>, at: Option<Range<u64>>) -> usize {
        let Some(at) = at else {
            self.off_disk.extend(lines);
            let over = self.off_disk.len().saturating_sub(self.max_memory);
            if over > 0 {
                tracing::error!(
                    lost = over,
                    "events that could not be written to the spool were dropped: the daemon is unreachable and memory for them is full"
                );
                self.off_disk.drain(..over);
            }
            return over;
        };
        match &mut self.file {
            Some((run, n)) => {
                run.end = at.end;
                *n += lines.len();
            }
            None if self.memory.len() + lines.len() > self.max_memory => {
                tracing::info!(
                    waiting = self.memory.len() + lines.len(),
                    "the daemon is behind: further spooled events wait in the spool file only"
                );
                self.file = Some((at, lines.len()));
            }
            None => self.memory.extend(lines),
        }
        0
    }

    /// The next batch: from memory, else read from the spool file's run,
    /// else the lines not on disk.
    fn next_batch(&self) -> Result<Batch, String> {
        if let Some(lines) = take_batch(&self.memory) {
            return Ok(Batch {
                lines,
                from: Source::Memory,
            });
        }
        if let Some((run, _)) = &self.file {
            return self.read_run(run);
        }
        Ok(Batch {
            lines: take_batch(&self.off_disk).unwrap_or_default(),
            from: Source::OffDisk,
        })
    }

    /// Up to [`DELIVERY_BATCH`] lines from the start of `run`.
    fn read_run(&self, run: &Range<u64>) -> Result<Batch, String> {
        let why =
            |e: std::io::Error| format!("cannot read back the spool {}: {e}", self.spool.display());
        let mut file = std::fs::File::open(&self.spool).map_err(why)?;
        file.seek(std::io::SeekFrom::Start(run.start))
            .map_err(why)?;
        let mut reader = std::io::BufReader::new(file.take(run.end - run.start));
        let (mut lines, mut bytes) = (Vec::new(), 0u64);
        let mut line = Vec::new();
        while lines.len() < DELIVERY_BATCH {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(why)?;
            if read == 0 {
                break;
            }
            bytes += read as u64;
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches('\n');
            if !text.trim().is_empty() {
                lines.push(text.to_owned());
            }
        }
        if bytes == 0 {
            return Err(format!(
                "the spool {} is shorter than what was written to it",
                self.spool.display()
            ));
        }
        Ok(Batch {
            lines,
            from: Source::File(bytes),
        })
    }

    /// `batch` reached the daemon.
    fn delivered(&mut self, batch: &Batch) {
        let n = batch.lines.len();
        match batch.from {
            Source::Memory => drop(self.memory.drain(..n.min(self.memory.len()))),
            Source::File(bytes) => {
                if let Some((run, left)) = &mut self.file {
                    run.start += bytes;
                    *left = left.saturating_sub(n);
                    if run.start >= run.end {
                        self.file = None;
                    }
                }
            }
            Source::OffDisk => drop(self.off_disk.drain(..n.min(self.off_disk.len()))),
        }
    }
}

/// The first [`DELIVERY_BATCH`] lines of `lines`, if any.
fn take_batch(lines: &VecDeque<String>) -> Option<Vec<String>> {
    (!lines.is_empty()).then(|| lines.iter().take(DELIVERY_BATCH).cloned().collect())
}

/// The delivery stage: committed lines to the daemon, in order, in batches.
/// Takes one message from the spool thread: lines join the backlog (lines
/// it had to drop count as done, so the spool file still empties), a
/// finish request sets the deadline.
fn take(
    message: ToDeliver,
    backlog: &mut Backlog,
    spool_thread: &std::sync::mpsc::Sender<Spooled>,
    finishing: &mut Option<(Instant, oneshot::Sender<usize>)>,
) {
    match message {
        ToDeliver::Lines(lines, at) => {
            let dropped = backlog.push(lines, at);
            if dropped > 0 {
                let _ = spool_thread.send(Spooled::Delivered(dropped));
            }
        }
        ToDeliver::Finish(wait, done) => *finishing = Some((Instant::now() + wait, done)),
    }
}

async fn deliver(
    config: ShipperConfig,
    key: InstanceKey,
    mut backlog: Backlog,
    mut receiver: mpsc::UnboundedReceiver<ToDeliver>,
    spool_thread: std::sync::mpsc::Sender<Spooled>,
) {
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
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut retry_after = None;
    let mut finishing: Option<(Instant, oneshot::Sender<usize>)> = None;
    loop {
        let message = if backlog.is_empty() && finishing.is_none() {
            match receiver.recv().await {
                Some(message) => Some(message),
                None => return,
            }
        } else {
            receiver.try_recv().ok()
        };
        let mut next = message;
        loop {
            while let Some(message) = next.take() {
                take(message, &mut backlog, &spool_thread, &mut finishing);
                next = receiver.try_recv().ok();
            }
            // The lines are durable in the spool: deliver once the relay
            // has been quiet for a moment (or a lot is waiting), so that
            // the daemon's ingest does not take the cores from calls.
            if finishing.is_some() || backlog.len() >= DELIVER_EARLY_AT {
                break;
            }
            match tokio::time::timeout(DELIVERY_QUIET, receiver.recv()).await {
                Ok(Some(message)) => next = Some(message),
                Ok(None) | Err(_) => break,
            }
        }
        while !backlog.is_empty() {
            let posted = match backlog.next_batch() {
                Ok(batch) => match delivery.post(&batch.lines).await {
                    Posted::Done => {
                        backlog.delivered(&batch);
                        let _ = spool_thread.send(Spooled::Delivered(batch.lines.len()));
                        backoff.reset();
                        Ok(())
                    }
                    Posted::Retry(why, asked) => {
                        retry_after = asked;
                        Err(why)
                    }
                },
                Err(why) => {
                    tracing::error!(reason = %why, "spooled events cannot be read back; retrying");
                    Err(why)
                }
            };
            if let Err(why) = posted {
                tracing::debug!(reason = %why, "daemon not reachable; events stay spooled");
                break;
            }
            // What came meanwhile joins the next request.
            while let Ok(message) = receiver.try_recv() {
                take(message, &mut backlog, &spool_thread, &mut finishing);
            }
        }
        if let Some((deadline, _)) = &finishing
            && (backlog.is_empty() || Instant::now() >= *deadline)
        {
            if let Some((_, done)) = finishing.take() {
                if backlog.is_empty() {
                    let _ = std::fs::remove_file(&backlog.spool);
                }
                let _ = done.send(backlog.len());
            }
            return;
        }
        if !backlog.is_empty() {
            tokio::time::sleep(backoff.next_wait(retry_after.take())).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A pid no process has now (one that ran and was reaped).
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn spool_owner_reads_both_names() {
        assert_eq!(spool_owner(Path::new("s/inst_A.42.jsonl")), Some(42));
        assert_eq!(spool_owner(Path::new("s/inst_A.42.adopted-7")), Some(7));
        assert_eq!(spool_owner(Path::new("s/rejected.jsonl")), None);
        assert_eq!(spool_owner(Path::new("s/inst_A.42.tmp")), None);
    }

    /// Lines `0..n` as a spool would hold them, with their offsets.
    fn spooled(spool: &Path, n: usize) -> Vec<(String, Range<u64>)> {
        let mut text = String::new();
        let mut lines = Vec::new();
        for i in 0..n {
            let line = format!("{{\"n\":{i}}}");
            let start = text.len() as u64;
            text.push_str(&line);
            text.push('\n');
            lines.push((line, start..text.len() as u64));
        }
        std::fs::write(spool, text).unwrap();
        lines
    }

    #[test]
    fn past_its_bound_the_backlog_reads_lines_back_from_the_spool_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("inst.1.jsonl");
        let lines = spooled(&spool, 1200);
        let mut backlog = Backlog::new(spool.clone(), 8);
        // Commits of 3 lines each, plus one a failed write kept off disk.
        for commit in lines.chunks(3) {
            let at = commit[0].1.start..commit[commit.len() - 1].1.end;
            backlog.push(commit.iter().map(|(l, _)| l.clone()).collect(), Some(at));
        }
        backlog.push(vec!["off-disk".to_owned()], None);
        assert_eq!(backlog.memory.len(), 6, "two commits fit under 8");
        assert_eq!(backlog.file.as_ref().map(|(_, n)| *n), Some(1194));
        assert_eq!(backlog.off_disk.len(), 1);
        assert_eq!(backlog.len(), 1201);

        let mut out = Vec::new();
        let mut sizes = Vec::new();
        while !backlog.is_empty() {
            let batch = backlog.next_batch().unwrap();
            sizes.push(batch.lines.len());
            out.extend(batch.lines.iter().cloned());
            backlog.delivered(&batch);
        }
        let mut expected: Vec<String> = lines.into_iter().map(|(l, _)| l).collect();
        expected.push("off-disk".to_owned());
        assert_eq!(out, expected);
        assert_eq!(
            sizes,
            [
                6,
                DELIVERY_BATCH,
                DELIVERY_BATCH,
                1194 - 2 * DELIVERY_BATCH,
                1
            ]
        );
        assert!(backlog.file.is_none());
    }

    #[test]
    fn lines_kept_off_disk_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut backlog = Backlog::new(dir.path().join("none.jsonl"), 2);
        let dropped: usize = (0..10)
            .map(|i| backlog.push(vec![format!("l{i}")], None))
            .sum();
        // The bound holds; the oldest went, and are counted as done.
        assert_eq!(backlog.off_disk, ["l8", "l9"]);
        assert_eq!(dropped, 8);
        assert!(backlog.memory.is_empty() && backlog.file.is_none());
    }

    /// A fresh data dir, and a shipper config delivering to `url`.
    fn config_for(url: String) -> (tempfile::TempDir, ShipperConfig) {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = DataDir::new(dir.path().join("data"));
        data_dir.ensure_private().unwrap();
        let config = ShipperConfig {
            redactor: std::sync::Arc::new(data_dir.redactor(None).unwrap()),
            data_dir,
            server: Some(url),
            autostart: None,
            ingest_token: None,
        };
        (dir, config)
    }

    /// A stand-in daemon: 503 while `down`, else stores every line and
    /// remembers the actions it got, in order.
    async fn stand_in_daemon(
        down: std::sync::Arc<std::sync::atomic::AtomicBool>,
        got: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) -> String {
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        let batch = move |body: String| async move {
            if down.load(std::sync::atomic::Ordering::SeqCst) {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            let mut results = Vec::new();
            for (i, line) in body.lines().enumerate() {
                let event: serde_json::Value = serde_json::from_str(line).unwrap();
                got.lock()
                    .unwrap()
                    .push(event["action"].as_str().unwrap().to_owned());
                results.push(serde_json::json!({"line": i + 1, "status": 202}));
            }
            axum::Json(serde_json::json!({ "results": results })).into_response()
        };
        let app = axum::Router::new().route("/v1/events:batch", axum::routing::post(batch));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_daemon_back_after_a_long_outage_gets_every_event_once_in_order() {
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let url = stand_in_daemon(down.clone(), got.clone()).await;
        let (dir, config) = config_for(url);
        let shipper = Shipper::start_with(config, 16).unwrap();
        let actions: Vec<String> = (0..300).map(|i| format!("t.{i:03}")).collect();
        for (i, action) in actions.iter().enumerate() {
            shipper.send(ExecutionEvent::builder("outage", action).build());
            if i % 50 == 49 {
                // Several commits, delivery retrying in between.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(got.lock().unwrap().is_empty());
        down.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(shipper.finish(Duration::from_secs(30)).await, 0);
        assert_eq!(*got.lock().unwrap(), actions);
        let spool = dir.path().join("data/spool");
        let left: Vec<_> = std::fs::read_dir(&spool).unwrap().flatten().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// A daemon that asks for time (503 with `Retry-After: 1`, as its
    /// overloaded answers do) gets it; the gap is a lower bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivery_waits_out_the_daemons_retry_after() {
        use axum::response::IntoResponse;
        let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = arrivals.clone();
        let app = axum::Router::new().route(
            "/v1/events:batch",
            axum::routing::post(move |body: String| {
                let sink = sink.clone();
                async move {
                    let mut arrivals = sink.lock().unwrap();
                    arrivals.push(Instant::now());
                    if arrivals.len() == 1 {
                        let busy = axum::http::StatusCode::SERVICE_UNAVAILABLE;
                        return (busy, [("retry-after", "1")]).into_response();
                    }
                    let results: Vec<_> = (1..=body.lines().count())
                        .map(|line| serde_json::json!({"line": line, "status": 202}))
                        .collect();
                    axum::Json(serde_json::json!({ "results": results })).into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let (_dir, config) = config_for(url);
        let shipper = Shipper::start(config).unwrap();
        shipper.send(ExecutionEvent::builder("busy", "t.busy").build());
        assert_eq!(shipper.finish(Duration::from_secs(30)).await, 0);
        let arrivals = arrivals.lock().unwrap().clone();
        assert_eq!(arrivals.len(), 2, "503, then the retry");
        let gap = arrivals[1].duration_since(arrivals[0]);
        assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    }

    #[test]
    fn a_torn_tail_is_kept_aside_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path();
        let gone = dead_pid();
        std::fs::write(
            spool.join(format!("inst_a.{gone}.jsonl")),
            "{\"a\":1}\n{\"a\":2}\n{\"a\":",
        )
        .unwrap();
        std::fs::write(spool.join(format!("inst_b.{gone}.jsonl")), "{\"b\"").unwrap();
        let adopted = adopt_orphans(spool, Path::new(""));
        assert_eq!(adopted.lines, ["{\"a\":1}", "{\"a\":2}"]);
        assert_eq!(adopted.claimed.len(), 2);
        let kept = spool.join(TORN_TAILS);
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "{\"a\":\n{\"b\"\n");
        assert_eq!(
            std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(split_torn_tail(""), ("", ""));
        assert_eq!(split_torn_tail("x\n"), ("x\n", ""));
    }

    #[test]
    fn orphans_are_claimed_not_deleted_and_a_dead_adopters_claim_is_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path();
        let (gone, dead_adopter) = (dead_pid(), dead_pid());
        let me = std::process::id();
        std::fs::write(spool.join(format!("inst_a.{gone}.jsonl")), "a1\n\na2\n").unwrap();
        std::fs::write(
            spool.join(format!("inst_b.{gone}.adopted-{dead_adopter}")),
            "b1\n",
        )
        .unwrap();
        // Pid 1 is alive: its spool is its own.
        std::fs::write(spool.join("inst_c.1.jsonl"), "c1\n").unwrap();
        std::fs::write(spool.join("rejected.jsonl"), "r1\n").unwrap();
        let own = spool.join(format!("inst_d.{me}.jsonl"));
        std::fs::write(&own, "d1\n").unwrap();

        let adopted = adopt_orphans(spool, &own);
        let mut lines = adopted.lines.clone();
        lines.sort();
        assert_eq!(lines, ["a1", "a2", "b1"]);
        let mut claimed: Vec<String> = adopted
            .claimed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        claimed.sort();
        assert_eq!(
            claimed,
            [
                format!("inst_a.{gone}.adopted-{me}"),
                format!("inst_b.{gone}.adopted-{me}")
            ]
        );
        // Still on disk until the adopter has its lines safe.
        assert!(adopted.claimed.iter().all(|p| p.exists()));
        let mut left: Vec<String> = std::fs::read_dir(spool)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected = vec![
            "inst_c.1.jsonl".to_owned(),
            format!("inst_d.{me}.jsonl"),
            "rejected.jsonl".to_owned(),
        ];
        expected.extend(claimed);
        expected.sort();
        assert_eq!(left, expected);
        // This process's claims are its own while it lives.
        assert!(adopt_orphans(spool, &own).lines.is_empty());
    }
}
