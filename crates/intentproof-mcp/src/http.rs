//! The MCP gateway over Streamable HTTP: `POST/GET/DELETE /mcp/<name>` in
//! the daemon. Each MCP session gets its own `Upstream`: a process for a
//! stdio `command`, or its own upstream MCP session for a remote `url`
//! (`mcp::remote`), so sessions never share state, and the same relay
//! rules as stdio apply: messages pass through as they are, only observed,
//! except for the plan tool. Both kinds of upstream hand their messages to
//! one path (`Incoming`), so recording and routing do not depend on the
//! transport.
//!
//! Routing upstream messages back to HTTP streams: a response goes to the
//! stream of the POST that carried its request; a progress notification to
//! the stream of the request that owns its token; any other server-initiated
//! message (sampling, elicitation, roots, logs) to the most recent POST
//! stream still open (the call that caused it), else to the session's GET
//! stream, else it waits until a GET stream opens.
//!
//! Latency: a POST that carries one request (not a batch) is answered with
//! plain `application/json` when its response is the first message for it
//! (most calls): one write, no event-stream framing. Anything the upstream
//! sends first (progress, sampling, ...) switches that POST to an event
//! stream, as does a response slower than [`JSON_WAIT`]. Recorded events
//! are sealed and stored on a thread of their own
//! (the daemon's [`RecordSink`](crate::sink::RecordSink)), after the response is routed, so signing is not
//! on the call's path.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

use super::lines::{Answer, Line, LineCodec, Side};
use super::recorder::{ClientVerdict, DEFAULT_PLAN_TOOL, Recorder, RecorderConfig};
use super::remote::{Deliver, Incoming, RemoteServer, RemoteUpstream, one_line};
use super::stateless::{Lane, method_not_allowed, stateless_version};
use super::stdio::MAX_MESSAGE_BYTES;
pub use super::streamable::SESSION_HEADER;
use super::streamable::{
    JSON_WAIT, Outgoing, accepts_json, json_response, lock, rpc_error, sse_stream, write_stdin,
};
use crate::config::{McpConfig, McpServerConfig};
use crate::pins::Pins;
use crate::sink::RecordSink;
use intentproof_policy::guard::OnToolChange;

/// The header naming the request's protocol version.
const VERSION_HEADER: &str = "mcp-protocol-version";

/// What guard mode needs from the daemon.
#[derive(Debug, Clone)]
pub struct GuardDeps {
    /// Where tool pins are kept (`<data dir>/pins`).
    pub pins_dir: std::path::PathBuf,
    /// Calls held for a person's approval (every server's).
    pub approvals: Arc<[intentproof_policy::guard::ApprovalRule]>,
    /// How long a held call waits.
    pub approval_timeout: Duration,
    /// Who a held call is asked of.
    pub approver: Arc<dyn crate::approver::Approver>,
}

/// All HTTP-served MCP servers and their sessions.
pub struct McpHttp {
    servers: HashMap<String, Server>,
    /// Each server's stateless (2026-07-28) side.
    lanes: HashMap<String, Arc<Lane>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    recording: Arc<dyn RecordSink>,
    limits: SessionLimits,
}

/// Bounds on the session-based revisions' sessions (`[mcp]` in the config).
#[derive(Debug, Clone, Copy)]
struct SessionLimits {
    idle_timeout: Duration,
    max_per_server: usize,
    new_per_sec: u32,
}

struct Server {
    config: McpServerConfig,
    recorder: RecorderConfig,
    /// Set for a remote (`url`) server.
    remote: Option<Arc<RemoteServer>>,
    /// New-session token bucket: (tokens, when last refilled).
    new_sessions: Mutex<(f64, Instant)>,
}

/// Why a new session was not opened.
enum Refused {
    /// `max_sessions_per_server` live sessions already.
    Full(usize),
    /// More than `max_new_sessions_per_sec`.
    TooFast(u32),
}

/// Most events one stream keeps for a client that resumes it, and their
/// bytes; past either the oldest go (a client that comes back that late
/// misses them).
const KEPT_EVENTS: usize = 256;
const KEPT_BYTES: usize = 1024 * 1024;
/// Most recent streams a session keeps for resumption.
const KEPT_STREAMS: usize = 16;
/// One event stream of a session: a POST's (the messages of its requests)
/// or the GET's. Its events carry ids (`<stream>-<n>`) and are kept,
/// bounded, so a client whose connection dropped (or whose stream the
/// upstream closed early) resumes with a GET carrying `Last-Event-ID`: it
/// gets what it missed, then the rest, as the protocol's resumption says.
struct Stream {
    id: u64,
    state: Mutex<StreamState>,
}

struct StreamState {
    /// The connection the client reads now, if any.
    live: Option<mpsc::UnboundedSender<Outgoing>>,
    kept: VecDeque<(u64, Outgoing)>,
    kept_bytes: usize,
    next: u64,
    /// Responses a POST's stream still owes (`None`: the GET stream).
    owed: Option<usize>,
}

impl Stream {
    fn new(id: u64, owed: Option<usize>, live: mpsc::UnboundedSender<Outgoing>) -> Arc<Stream> {
        Arc::new(Stream {
            id,
            state: Mutex::new(StreamState {
                live: Some(live),
                kept: VecDeque::new(),
                kept_bytes: 0,
                next: 0,
                owed,
            }),
        })
    }

    /// Whether a client reads it now.
    fn is_live(&self) -> bool {
        lock(&self.state)
            .live
            .as_ref()
            .is_some_and(|live| !live.is_closed())
    }

    /// Sends one message and keeps it for resumption; `false` when no
    /// client reads the stream now. The last response a POST's stream owes
    /// ends the connection.
    fn send(&self, text: String, response: bool) -> bool {
        let mut state = lock(&self.state);
        state.next += 1;
        let seq = state.next;
        let out = Outgoing {
            text,
            response,
            event_id: Some(format!("{}-{seq}", self.id)),
        };
        state.kept_bytes += out.text.len();
        state.kept.push_back((seq, out.clone()));
        while state.kept.len() > KEPT_EVENTS || state.kept_bytes > KEPT_BYTES {
            match state.kept.pop_front() {
                Some((_, old)) => state.kept_bytes -= old.text.len(),
                None => break,
            }
        }
        let delivered = state
            .live
            .as_ref()
            .is_some_and(|live| live.send(out).is_ok());
        if response && let Some(owed) = &mut state.owed {
            *owed = owed.saturating_sub(1);
            if *owed == 0 {
                state.live = None;
            }
        }
        delivered
    }

    /// Makes a POST's answer an event stream even when its response comes
    /// first (the upstream streams it): a marker the POST reads, never
    /// written or kept.
    fn open_as_events(&self) {
        if let Some(live) = &lock(&self.state).live {
            let _ = live.send(Outgoing::new(String::new(), false));
        }
    }

    /// Whether a response this POST's stream carries is still to come.
    fn owes_responses(&self) -> bool {
        lock(&self.state).owed.is_some_and(|owed| owed > 0)
    }

    /// Ends the client's connection without ending the stream (the
    /// upstream closed its own early, or `sse_close_after_ms` passed): the
    /// client resumes with a GET.
    fn detach(&self) {
        lock(&self.state).live = None;
    }

    /// A client resumes after event `after`: it gets the kept events after
    /// that one, then, unless the stream is complete, what comes next.
    fn resume(&self, after: u64, live: mpsc::UnboundedSender<Outgoing>) {
        let mut state = lock(&self.state);
        for (_, out) in state.kept.iter().filter(|(seq, _)| *seq > after) {
            let _ = live.send(out.clone());
        }
        if state.owed != Some(0) {
            state.live = Some(live);
        }
    }
}

/// The stream and position a `Last-Event-ID` (`<stream>-<n>`) names.
fn last_event_id(headers: &HeaderMap) -> Option<(u64, u64)> {
    let text = headers.get("last-event-id")?.to_str().ok()?;
    let (stream, seq) = text.trim().split_once('-')?;
    Some((stream.parse().ok()?, seq.parse().ok()?))
}

struct Routing {
    /// Request id key -> the stream waiting for its response.
    requests: HashMap<String, Arc<Stream>>,
    /// Progress token key -> request id key.
    tokens: HashMap<String, String>,
    /// Most recently opened request streams (newest last).
    open: Vec<String>,
    /// The session's GET stream.
    standalone: Option<Arc<Stream>>,
    /// Server-initiated messages waiting for a stream.
    backlog: VecDeque<String>,
    /// Recent event streams, for `Last-Event-ID` (newest last, bounded).
    streams: VecDeque<Arc<Stream>>,
}

impl Routing {
    fn remember(&mut self, stream: &Arc<Stream>) {
        self.streams.push_back(Arc::clone(stream));
        while self.streams.len() > KEPT_STREAMS {
            self.streams.pop_front();
        }
    }

    fn forget(&mut self, stream: &Arc<Stream>) {
        self.streams.retain(|s| !Arc::ptr_eq(s, stream));
    }

    fn find(&self, id: u64) -> Option<Arc<Stream>> {
        self.streams.iter().find(|s| s.id == id).cloned()
    }
}

struct Session {
    /// The gateway's session id (the only one the agent sees).
    id: String,
    server: String,
    upstream: Upstream,
    recorder: Mutex<Recorder>,
    routing: Mutex<Routing>,
    /// When the agent last sent a request or opened a stream.
    last_active: Mutex<Instant>,
    /// Calls held for approval right now: the session is not idle.
    held: std::sync::atomic::AtomicUsize,
    /// Numbers the session's event streams.
    next_stream: std::sync::atomic::AtomicU64,
    /// Whether its event streams start with a priming event (an id, empty
    /// data, `retry:`): clients of 2025-11-25 and later resume with it;
    /// older ones may not expect an event without data.
    prime: bool,
}

/// The calls of one POST held for approval: counted while they wait (the
/// session is not idle), and refused if the request ends before they are
/// decided (the client went away), so none stays held or keeps its plan
/// step.
struct HeldCalls<'a> {
    session: &'a Session,
    recording: &'a dyn RecordSink,
    waiting: Vec<Value>,
}

impl<'a> HeldCalls<'a> {
    fn new(session: &'a Session, recording: &'a dyn RecordSink, ids: Vec<Value>) -> Self {
        session
            .held
            .fetch_add(ids.len(), std::sync::atomic::Ordering::Relaxed);
        HeldCalls {
            session,
            recording,
            waiting: ids,
        }
    }

    /// `id` was decided.
    fn done(&mut self, id: &Value) {
        if let Some(at) = self.waiting.iter().position(|w| w == id) {
            self.waiting.remove(at);
            self.session
                .held
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Drop for HeldCalls<'_> {
    fn drop(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let outcome = intentproof_policy::guard::approval::Outcome::Unavailable {
            reason: "the client's request ended while the call waited".into(),
            at: intentproof_core::format_rfc3339_millis(std::time::SystemTime::now()),
        };
        let mut events = Vec::new();
        {
            let mut recorder = lock(&self.session.recorder);
            for id in &self.waiting {
                let _ = recorder.resolve_hold(id, &outcome, &mut events);
            }
        }
        self.recording.record(events);
        self.session
            .held
            .fetch_sub(self.waiting.len(), std::sync::atomic::Ordering::Relaxed);
    }
}

impl Session {
    fn touch(&self) {
        *lock(&self.last_active) = Instant::now();
    }

    /// Idle for `timeout`: no request from the agent for that long, none
    /// waiting for its response, and no GET stream still connected.
    fn idle_for(&self, timeout: Duration) -> bool {
        if lock(&self.last_active).elapsed() < timeout
            || self.held.load(std::sync::atomic::Ordering::Relaxed) > 0
        {
            return false;
        }
        let routing = lock(&self.routing);
        routing.requests.is_empty() && routing.standalone.as_ref().is_none_or(|s| !s.is_live())
    }

    fn new_stream_id(&self) -> u64 {
        self.next_stream
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    /// The priming event's id for stream `id`, when the request's
    /// protocol version (its `MCP-Protocol-Version`, else the session's)
    /// has priming events (2025-11-25 and later: older clients may not
    /// expect an event without data).
    fn priming(&self, id: u64, headers: &HeaderMap) -> Option<String> {
        let prime = match headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok()) {
            Some(version) => version.trim() >= "2025-11-25",
            None => self.prime,
        };
        prime.then(|| format!("{id}-0"))
    }
}

/// A stdio upstream process.
struct StdioUpstream {
    stdin: tokio::sync::Mutex<ChildStdin>,
    child: Mutex<Option<Child>>,
}

/// Where a session's messages go.
enum Upstream {
    /// A process of its own; its stdout lines are read by a task.
    Stdio(Box<StdioUpstream>),
    /// An upstream MCP session of its own on a remote server.
    Remote(RemoteUpstream),
}

impl Upstream {
    /// Sends messages from the agent. `requests` are the ids (JSON text) of
    /// the requests among them, `initialize` that of an `initialize`. A
    /// remote upstream answers failed requests itself (JSON-RPC errors,
    /// through [`Incoming`]); `Err` means the agent must be told here.
    async fn send(
        &self,
        server: &str,
        lines: &[String],
        requests: Vec<String>,
        initialize: Option<String>,
        version: Option<&str>,
    ) -> Result<(), String> {
        match self {
            Upstream::Stdio(stdio) => write_stdin(&stdio.stdin, server, lines).await,
            Upstream::Remote(remote) => remote.post(lines, requests, initialize, version).await,
        }
    }

    /// Ends the upstream side (the agent ended the session, or it
    /// expired): a process is killed and waited for, so none is left
    /// behind, not even as a zombie.
    async fn close(&self) {
        match self {
            Upstream::Stdio(stdio) => {
                let child = lock(&stdio.child).take();
                if let Some(mut child) = child {
                    let _ = child.kill().await;
                }
            }
            Upstream::Remote(remote) => remote.close().await,
        }
    }

    /// Ends the upstream side without waiting (daemon shutdown).
    fn stop(&self) {
        match self {
            Upstream::Stdio(stdio) => {
                if let Some(mut child) = lock(&stdio.child).take() {
                    let _ = child.start_kill();
                }
            }
            Upstream::Remote(remote) => remote.stop(),
        }
    }
}

impl McpHttp {
    /// The gateway for the configured servers (already validated by
    /// [`McpConfig::validate`]); recorded events go to `recording`. Fails when a
    /// remote server's HTTP client cannot be built (its `ca_file`).
    /// `guard` says where tool pins are kept and how held calls are
    /// decided.
    pub fn new(
        config: &McpConfig,
        recording: Arc<dyn RecordSink>,
        guard: GuardDeps,
    ) -> Result<Self, String> {
        let plan_tool = match config.plan_tool.as_deref() {
            None => Some(DEFAULT_PLAN_TOOL.to_owned()),
            Some("") => None,
            Some(name) => Some(name.to_owned()),
        };
        let mut servers = HashMap::new();
        let mut lanes = HashMap::new();
        for server in &config.servers {
            let mut recorder = RecorderConfig::new(&server.name);
            recorder.plan_tool = plan_tool.clone();
            recorder.default_intents = server.default_intents.clone();
            recorder.enforce = server.enforce;
            recorder.on_tool_change = server.on_tool_change;
            if server.on_tool_change != OnToolChange::Off {
                recorder.pins = Some(Arc::new(Pins::open(&guard.pins_dir, &server.name)?));
            }
            recorder.approvals = Arc::clone(&guard.approvals);
            recorder.approval_timeout = guard.approval_timeout;
            recorder.approver = Arc::clone(&guard.approver);
            let remote = match server.url {
                Some(_) => Some(RemoteServer::new(server)?),
                None => None,
            };
            lanes.insert(
                server.name.clone(),
                Arc::new(Lane::new(
                    server,
                    recorder.clone(),
                    remote.clone(),
                    Arc::clone(&recording),
                )),
            );
            servers.insert(
                server.name.clone(),
                Server {
                    config: server.clone(),
                    recorder,
                    remote,
                    new_sessions: Mutex::new((
                        f64::from(config.max_new_sessions_per_sec),
                        Instant::now(),
                    )),
                },
            );
        }
        Ok(McpHttp {
            servers,
            lanes,
            sessions: Mutex::new(HashMap::new()),
            recording,
            limits: SessionLimits {
                idle_timeout: Duration::from_secs(config.session_idle_timeout_secs.max(1)),
                max_per_server: config.max_sessions_per_server.max(1),
                new_per_sec: config.max_new_sessions_per_sec.max(1),
            },
        })
    }

    /// Starts the task that ends idle sessions (see
    /// [`McpConfig::session_idle_timeout_secs`]); it stops by itself once
    /// the gateway is dropped. Checks every quarter of the timeout (at
    /// least every 5 s), so a session lives at most 1.25x the timeout.
    pub fn start_reaper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let gateway = Arc::downgrade(self);
        let period =
            (self.limits.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(gateway) = gateway.upgrade() else {
                    return;
                };
                gateway.end_idle_sessions().await;
            }
        })
    }

    /// Ends every session idle for the timeout, and gives up on calls that
    /// waited that long for the agent's next round (they are recorded as
    /// incomplete); returns how many sessions ended.
    async fn end_idle_sessions(&self) -> usize {
        let now = Instant::now();
        let live: Vec<Arc<Session>> = lock(&self.sessions).values().cloned().collect();
        for session in live {
            let mut events = Vec::new();
            lock(&session.recorder).expire_idle(now, self.limits.idle_timeout, &mut events);
            self.recording.record(events);
        }
        for lane in self.lanes.values() {
            lane.expire_idle(now, self.limits.idle_timeout);
        }
        let idle: Vec<Arc<Session>> = {
            let mut sessions = lock(&self.sessions);
            let ids: Vec<String> = sessions
                .iter()
                .filter(|(_, s)| s.idle_for(self.limits.idle_timeout))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        for session in &idle {
            tracing::info!(
                server = %session.server,
                session = %session.id,
                idle_secs = self.limits.idle_timeout.as_secs(),
                "MCP session ended: idle past mcp.session_idle_timeout_secs"
            );
            self.end(session).await;
        }
        idle.len()
    }

    /// Ends a session already taken out of the table: what it left
    /// unfinished is recorded, then its upstream is closed.
    async fn end(&self, session: &Session) {
        let mut events = Vec::new();
        lock(&session.recorder).on_session_end(&mut events);
        self.recording.record(events);
        session.upstream.close().await;
    }

    /// Live sessions of `server`.
    fn live_sessions(&self, server: &str) -> usize {
        lock(&self.sessions)
            .values()
            .filter(|s| s.server == server)
            .count()
    }

    /// Whether a new session of `name` may open now (takes a token).
    fn admit(&self, name: &str, server: &Server) -> Result<(), Refused> {
        if self.live_sessions(name) >= self.limits.max_per_server {
            return Err(Refused::Full(self.limits.max_per_server));
        }
        let rate = f64::from(self.limits.new_per_sec);
        let mut bucket = lock(&server.new_sessions);
        let now = Instant::now();
        let (tokens, at) = *bucket;
        let tokens = (tokens + now.duration_since(at).as_secs_f64() * rate).min(rate);
        if tokens < 1.0 {
            *bucket = (tokens, now);
            return Err(Refused::TooFast(self.limits.new_per_sec));
        }
        *bucket = (tokens - 1.0, now);
        Ok(())
    }

    /// Whether `name` is a configured server.
    pub fn has(&self, name: &str) -> bool {
        self.servers.contains_key(name)
    }

    /// Stops every session's upstream (the daemon flushes the recording
    /// next).
    pub fn shutdown(&self) {
        let sessions: Vec<Arc<Session>> = lock(&self.sessions).drain().map(|(_, s)| s).collect();
        for session in sessions {
            let mut events = Vec::new();
            lock(&session.recorder).on_session_end(&mut events);
            self.recording.record(events);
            session.upstream.stop();
        }
        for lane in self.lanes.values() {
            lane.stop();
        }
    }

    fn session(&self, headers: &HeaderMap) -> Option<(String, Arc<Session>)> {
        let id = headers.get(SESSION_HEADER)?.to_str().ok()?.to_owned();
        let session = lock(&self.sessions).get(&id).cloned()?;
        Some((id, session))
    }

    /// Opens a session for an `initialize` asking for `version`.
    async fn open_session(
        self: &Arc<Self>,
        name: &str,
        version: &str,
    ) -> Result<(String, Arc<Session>), String> {
        let server = self.servers.get(name).ok_or("unknown server")?;
        let last_active = Mutex::new(Instant::now());
        let next_stream = std::sync::atomic::AtomicU64::new(0);
        // Dates compare as text; the priming event came in 2025-11-25.
        let prime = version >= "2025-11-25";
        let id = intentproof_core::new_event_id();
        let recorder = Mutex::new(Recorder::new(server.recorder.clone(), id.clone()));
        let routing = Mutex::new(Routing {
            requests: HashMap::new(),
            tokens: HashMap::new(),
            open: Vec::new(),
            standalone: None,
            backlog: VecDeque::new(),
            streams: VecDeque::new(),
        });
        let session = if let Some(remote) = &server.remote {
            // Nothing to start: the upstream session begins with the
            // agent's `initialize`, forwarded like any message.
            Arc::new_cyclic(|weak: &Weak<Session>| {
                let deliver = self.deliver_to(weak.clone());
                Session {
                    id: id.clone(),
                    server: name.to_owned(),
                    upstream: Upstream::Remote(RemoteUpstream::new(Arc::clone(remote), deliver)),
                    recorder,
                    routing,
                    last_active,
                    held: std::sync::atomic::AtomicUsize::new(0),
                    next_stream,
                    prime,
                }
            })
        } else {
            let (program, args) = server.config.command.split_first().ok_or("no command")?;
            let mut child = Command::new(program)
                .args(args)
                .envs(&server.config.env)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| {
                    // The agent only sees a 502: the daemon's log says why.
                    let reason = format!("cannot start MCP server {name} (`{program}`): {e}");
                    tracing::warn!(server = %name, error = %e, "{reason}");
                    reason
                })?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err("cannot capture the upstream's stdio".into());
            };
            let session = Arc::new(Session {
                id: id.clone(),
                server: name.to_owned(),
                upstream: Upstream::Stdio(Box::new(StdioUpstream {
                    stdin: tokio::sync::Mutex::new(stdin),
                    child: Mutex::new(Some(child)),
                })),
                recorder,
                routing,
                last_active,
                held: std::sync::atomic::AtomicUsize::new(0),
                next_stream,
                prime,
            });
            let deliver = self.deliver_to(Arc::downgrade(&session));
            let server_name = name.to_owned();
            tokio::spawn(async move {
                let mut lines = FramedRead::new(stdout, LineCodec::new(MAX_MESSAGE_BYTES));
                // Each line is parsed once, in `upstream_message`, which
                // also drops (and logs) a line that is not JSON.
                while let Some(line) = lines.next().await {
                    match line {
                        Ok(Line::Text(line)) => deliver(Incoming::Message(line)),
                        // A bad line does not end the session: an
                        // answer's error takes its place; a server
                        // request cannot be answered from here.
                        Ok(Line::Dropped(dropped)) => {
                            let error = match dropped.answer(Side::Upstream) {
                                Some(Answer::InPlace(error)) => Some(error.to_string()),
                                _ => None,
                            };
                            tracing::warn!(server = %server_name, "{}", dropped.describe(Side::Upstream, error.is_some()));
                            if let Some(error) = error {
                                deliver(Incoming::Message(error));
                            }
                        }
                        Err(e) => {
                            tracing::error!(server = %server_name, error = %e, "reading from the upstream failed");
                        }
                    }
                }
                deliver(Incoming::Gone(format!(
                    "upstream MCP server {server_name} exited before answering; check its stderr"
                )));
            });
            session
        };
        lock(&self.sessions).insert(id.clone(), Arc::clone(&session));
        Ok((id, session))
    }

    /// The callback an upstream hands its messages to. Weak references: the
    /// session owns its upstream, and a message for a session that is gone
    /// has nowhere to go.
    fn deliver_to(self: &Arc<Self>, session: Weak<Session>) -> Deliver {
        let gateway = Arc::downgrade(self);
        Arc::new(move |incoming| {
            let (Some(gateway), Some(session)) = (gateway.upgrade(), session.upgrade()) else {
                return;
            };
            match incoming {
                Incoming::Message(text) => gateway.upstream_message(&session, text),
                Incoming::Gone(reason) => gateway.upstream_gone(&session, &reason),
                Incoming::Streaming(keys) => {
                    let routing = lock(&session.routing);
                    for key in keys {
                        if let Some(stream) = routing.requests.get(&key) {
                            stream.open_as_events();
                        }
                    }
                }
                Incoming::Detached(keys) => {
                    let routing = lock(&session.routing);
                    for key in keys {
                        if let Some(stream) = routing.requests.get(&key) {
                            stream.detach();
                        }
                    }
                }
            }
        })
    }

    /// The upstream is gone: fail what is pending, end the session.
    fn upstream_gone(&self, session: &Session, reason: &str) {
        session.upstream.stop();
        let mut events = Vec::new();
        let replies = {
            let mut recorder = lock(&session.recorder);
            let replies = recorder.on_upstream_gone(reason, &mut events);
            recorder.on_session_end(&mut events);
            replies
        };
        for reply in replies {
            self.route(session, &reply, reply.to_string());
        }
        self.recording.record(events);
        let mut sessions = lock(&self.sessions);
        if sessions
            .get(&session.id)
            .is_some_and(|s| std::ptr::eq(Arc::as_ptr(s), session))
        {
            sessions.remove(&session.id);
        }
    }

    /// One message from the upstream (one line): observed, routed to its
    /// HTTP stream, then its event (if it completes a call) recorded.
    fn upstream_message(&self, session: &Session, line: String) {
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            let shown: String = line.chars().take(200).collect();
            tracing::warn!(server = %session.server, line = %shown, "the upstream wrote a line to stdout that is not a JSON-RPC message; dropped");
            return;
        };
        let mut events = Vec::new();
        let replaced = lock(&session.recorder).on_server(&message, &mut events);
        let text = replaced.as_ref().map_or(line, Value::to_string);
        self.route(session, &message, text);
        self.recording.record(events);
    }

    /// Sends one upstream message to the HTTP stream it belongs to.
    fn route(&self, session: &Session, message: &Value, text: String) {
        let mut routing = lock(&session.routing);
        let is_response = message.get("method").is_none();
        if is_response && let Some(id) = message.get("id") {
            let key = id.to_string();
            if let Some(stream) = routing.requests.remove(&key) {
                // Forgotten before the send (under the lock): nothing
                // reaches this stream for this request afterwards.
                routing.open.retain(|k| *k != key);
                routing.tokens.retain(|_, r| *r != key);
                // Kept for a client that resumes, when none reads now.
                stream.send(text, true);
                return;
            }
        }
        let owner = message
            .pointer("/params/progressToken")
            .and_then(|token| routing.tokens.get(&token.to_string()).cloned())
            .or_else(|| routing.open.last().cloned());
        // A stream nobody reads now keeps the message for a resuming
        // client; it also goes to the GET stream (or waits for one), so a
        // server request is not stuck behind a client that never resumes.
        if let Some(stream) = owner.and_then(|key| routing.requests.get(&key).cloned())
            && stream.send(text.clone(), false)
        {
            return;
        }
        if let Some(stream) = &routing.standalone
            && stream.send(text.clone(), false)
        {
            return;
        }
        if routing.backlog.len() < 1000 {
            routing.backlog.push_back(text);
        }
    }
}

/// `POST /mcp/<name>`. `Origin`, `Host` and the token are checked where
/// the daemon mounts these routes (`intentproof_gateway::browser_guard`).
pub async fn post(
    gateway: Arc<McpHttp>,
    name: String,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !gateway.has(&name) {
        return rpc_error(
            StatusCode::NOT_FOUND,
            &Value::Null,
            -32601,
            &format!(
                "no MCP server named {name:?} is configured; see [[mcp.servers]] in the config"
            ),
        );
    }
    if stateless_version(&headers).is_some()
        && let Some(lane) = gateway.lanes.get(&name)
    {
        return lane.post(headers, body).await;
    }
    // Keep each message's own bytes: forwarding a re-serialization would
    // reorder keys. Line breaks in JSON text are whitespace (inside strings
    // they are always escaped), so they become spaces for the stdio framing.
    let (items, batch): (Vec<(Value, String)>, bool) =
        match serde_json::from_slice::<Vec<Box<serde_json::value::RawValue>>>(&body) {
            Ok(raws) => (
                raws.iter()
                    .filter_map(|raw| {
                        serde_json::from_str(raw.get())
                            .ok()
                            .map(|v| (v, one_line(raw.get())))
                    })
                    .collect(),
                true,
            ),
            Err(_) => match serde_json::from_slice::<Value>(&body) {
                Ok(value) => (
                    vec![(value, one_line(&String::from_utf8_lossy(&body)))],
                    false,
                ),
                Err(_) => {
                    return rpc_error(
                        StatusCode::BAD_REQUEST,
                        &Value::Null,
                        -32700,
                        "Parse error: the body is not JSON",
                    );
                }
            },
        };
    // Errors about the whole POST name its request when it is one.
    let request_id = match items.as_slice() {
        [(only, _)] if !batch => only.get("id").cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let is_initialize = items
        .iter()
        .any(|(m, _)| m.get("method").and_then(Value::as_str) == Some("initialize"));
    let (session_id, session) = match gateway.session(&headers) {
        Some(found) => found,
        None if headers.contains_key(SESSION_HEADER) => {
            return rpc_error(
                StatusCode::NOT_FOUND,
                &request_id,
                -32001,
                "Session not found: initialize a new session",
            );
        }
        None if is_initialize => {
            if let Some(server) = gateway.servers.get(&name) {
                match gateway.admit(&name, server) {
                    Ok(()) => {}
                    Err(Refused::Full(max)) => {
                        return rpc_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &request_id,
                            -32000,
                            &format!(
                                "MCP server {name:?} already has {max} live sessions (mcp.max_sessions_per_server); end one with DELETE, wait for idle ones to expire (mcp.session_idle_timeout_secs = {}), or raise the limit",
                                gateway.limits.idle_timeout.as_secs()
                            ),
                        );
                    }
                    Err(Refused::TooFast(rate)) => {
                        let mut response = rpc_error(
                            StatusCode::TOO_MANY_REQUESTS,
                            &request_id,
                            -32000,
                            &format!(
                                "too many new sessions for MCP server {name:?}: at most {rate} per second (mcp.max_new_sessions_per_sec); retry in a second"
                            ),
                        );
                        response
                            .headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                        return response;
                    }
                }
            }
            let version = items
                .iter()
                .find(|(m, _)| m.get("method").and_then(Value::as_str) == Some("initialize"))
                .and_then(|(m, _)| m.pointer("/params/protocolVersion"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            match gateway.open_session(&name, &version).await {
                Ok(opened) => opened,
                Err(e) => return rpc_error(StatusCode::BAD_GATEWAY, &request_id, -32603, &e),
            }
        }
        None => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &request_id,
                -32600,
                "Bad Request: no Mcp-Session-Id header; send initialize first",
            );
        }
    };
    session.touch();
    let client_version = headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok());
    // Observe; collect what goes upstream and what the gateway answers.
    let mut events = Vec::new();
    let mut forward = Vec::new();
    let mut replies = Vec::new();
    let mut request_ids = Vec::new();
    let mut initialize = None;
    // Held calls wait for their decision here, outside the recorder's lock
    // (the session's other POSTs go on); then they are decided like the rest.
    let mut verdicts = Vec::with_capacity(items.len());
    let mut held = Vec::new();
    {
        let mut recorder = lock(&session.recorder);
        for (i, (item, _)) in items.iter().enumerate() {
            let verdict = recorder.on_client(item, &mut events);
            if let ClientVerdict::Hold(h) = &verdict {
                held.push((i, h.clone(), recorder.approver()));
            }
            verdicts.push(verdict);
        }
    }
    if !held.is_empty() {
        gateway.recording.record(std::mem::take(&mut events));
        let mut waiting = HeldCalls::new(
            &session,
            gateway.recording.as_ref(),
            held.iter().map(|(_, h, _)| h.id.clone()).collect(),
        );
        for (i, h, approver) in held {
            // The call is not routed yet: its progress goes where the
            // session's other messages would (the GET stream, or the latest
            // open request's stream).
            let outcome = crate::approver::ask_with_progress(
                approver.as_ref(),
                &h.request,
                h.progress_token.as_ref(),
                |notice| gateway.route(&session, &notice, notice.to_string()),
            )
            .await;
            session.touch();
            let verdict = lock(&session.recorder).resolve_hold(&h.id, &outcome, &mut events);
            waiting.done(&h.id);
            verdicts[i] = verdict.unwrap_or(ClientVerdict::Reply(Value::Null));
        }
        drop(waiting);
    }
    {
        for ((item, raw), verdict) in items.iter().zip(verdicts) {
            match verdict {
                ClientVerdict::Forward => {
                    if item.get("method").is_some()
                        && let Some(id) = item.get("id")
                    {
                        if item.get("method").and_then(Value::as_str) == Some("initialize") {
                            initialize = Some(id.to_string());
                        }
                        request_ids.push((
                            id.to_string(),
                            item.pointer("/params/_meta/progressToken")
                                .map(Value::to_string),
                        ));
                    }
                    forward.push(raw.clone());
                }
                // A held call cancelled while it waited: nothing to answer.
                ClientVerdict::Reply(Value::Null) => {}
                ClientVerdict::Reply(reply) => replies.push(reply.to_string()),
                ClientVerdict::Hold(_) => {}
            }
        }
    }
    gateway.recording.record(events);
    if request_ids.is_empty() && replies.is_empty() {
        // Notifications and responses only.
        if let Err(e) = session
            .upstream
            .send(&session.server, &forward, Vec::new(), None, client_version)
            .await
        {
            return rpc_error(StatusCode::BAD_GATEWAY, &request_id, -32603, &e);
        }
        let mut response = StatusCode::ACCEPTED.into_response();
        if let Ok(value) = HeaderValue::from_str(&session_id) {
            response.headers_mut().insert(SESSION_HEADER, value);
        }
        return response;
    }
    let (live, mut receiver) = mpsc::unbounded_channel::<Outgoing>();
    // A batch (2025-03-26) keeps the event stream: one object is no answer
    // to an array.
    let single = !batch && request_ids.len() + replies.len() == 1;
    let stream = Stream::new(
        session.new_stream_id(),
        Some(request_ids.len() + replies.len()),
        live,
    );
    {
        let mut routing = lock(&session.routing);
        routing.remember(&stream);
        for (key, token) in &request_ids {
            routing.requests.insert(key.clone(), Arc::clone(&stream));
            routing.open.push(key.clone());
            if let Some(token) = token {
                routing.tokens.insert(token.clone(), key.clone());
            }
        }
    }
    for reply in replies {
        stream.send(reply, true);
    }
    let requests = request_ids.into_iter().map(|(key, _)| key).collect();
    if let Err(e) = session
        .upstream
        .send(
            &session.server,
            &forward,
            requests,
            initialize,
            client_version,
        )
        .await
    {
        return rpc_error(StatusCode::BAD_GATEWAY, &request_id, -32603, &e);
    }
    // A `command` server's framing and stream closes are the gateway's to
    // choose (a `url` server's pass through as it chose them).
    let (answers_json, close_after) = match gateway.servers.get(&name) {
        Some(server) if server.remote.is_none() => (
            server.config.answers_json(),
            server.config.sse_close_after_ms.map(Duration::from_millis),
        ),
        _ => (true, None),
    };
    // One request: if its response is the first message for it, that is
    // the whole answer, as plain JSON (nothing else can be routed to this
    // stream once the response is: see `route`).
    let mut first = None;
    if single && answers_json && accepts_json(&headers) {
        match tokio::time::timeout(JSON_WAIT, receiver.recv()).await {
            Ok(Some(message)) if message.response => {
                // Answered whole: nothing to resume.
                lock(&session.routing).forget(&stream);
                return json_response(Some(&session_id), message.text);
            }
            Ok(message) => first = message,
            Err(_) => {}
        }
    }
    // The stream ends when every request of this POST has its response (the
    // routing table drops its sender then) and the replies are out.
    let priming = session.priming(stream.id, &headers);
    if let (Some(after), Some(_)) = (close_after, &priming) {
        // SEP-1699 polling: the client has the priming event's id to resume
        // from; what comes after the close waits in the stream's buffer.
        let stream = Arc::clone(&stream);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if stream.owes_responses() {
                stream.detach();
            }
        });
    }
    sse_stream(Some(&session_id), priming, first, receiver)
}

/// `GET /mcp/<name>`: the session's stream for server-initiated messages.
pub async fn get(gateway: Arc<McpHttp>, name: String, headers: HeaderMap) -> Response {
    if !gateway.has(&name) {
        return rpc_error(
            StatusCode::NOT_FOUND,
            &Value::Null,
            -32601,
            "no such MCP server",
        );
    }
    if stateless_version(&headers).is_some() {
        return method_not_allowed();
    }
    let Some((session_id, session)) = gateway.session(&headers) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            -32600,
            "Bad Request: a valid Mcp-Session-Id header is required",
        );
    };
    session.touch();
    let (live, receiver) = mpsc::unbounded_channel::<Outgoing>();
    // Resumption: the stream the client names, from the event after the
    // one it names.
    if let Some((id, after)) = last_event_id(&headers) {
        let mut routing = lock(&session.routing);
        if let Some(stream) = routing.find(id) {
            if routing
                .standalone
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s, &stream))
            {
                // What waited for a GET stream is in the replay.
                routing.backlog.clear();
            }
            stream.resume(after, live);
            drop(routing);
            return sse_stream(Some(&session_id), None, None, receiver);
        }
    }
    let stream = Stream::new(session.new_stream_id(), None, live);
    {
        let mut routing = lock(&session.routing);
        while let Some(text) = routing.backlog.pop_front() {
            stream.send(text, false);
        }
        routing.remember(&stream);
        routing.standalone = Some(Arc::clone(&stream));
    }
    sse_stream(
        Some(&session_id),
        session.priming(stream.id, &headers),
        None,
        receiver,
    )
}

/// `DELETE /mcp/<name>`: ends the session and its upstream.
pub async fn delete(gateway: Arc<McpHttp>, headers: HeaderMap) -> Response {
    if stateless_version(&headers).is_some() {
        return method_not_allowed();
    }
    let Some((session_id, session)) = gateway.session(&headers) else {
        return rpc_error(
            StatusCode::NOT_FOUND,
            &Value::Null,
            -32001,
            "Session not found",
        );
    };
    lock(&gateway.sessions).remove(&session_id);
    gateway.end(&session).await;
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn plain_json_only_for_clients_that_accept_it() {
        assert!(accepts_json(&accept(&[
            "application/json, text/event-stream"
        ])));
        assert!(accepts_json(&accept(&[
            "text/event-stream",
            "Application/JSON; q=0.9"
        ])));
        assert!(accepts_json(&accept(&["*/*"])));
        assert!(!accepts_json(&accept(&["text/event-stream"])));
        assert!(!accepts_json(&accept(&["application/json-seq"])));
        assert!(!accepts_json(&HeaderMap::new()));
    }
}
