//! The `[mcp]` section of the daemon's configuration: the servers served
//! at `/mcp/<name>` and the bounds on their sessions. The daemon's config
//! (`intentproof-gateway`) embeds it and calls [`McpConfig::validate`], so
//! a config that loads is one this crate can serve.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::http::{HeaderName, HeaderValue};
use intentproof_policy::guard::{Enforce, OnToolChange};
use serde::Deserialize;

/// The `[mcp]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Name of the plan tool added to every server (`""` turns it off;
    /// default `intentproof_declare_plan`).
    pub plan_tool: Option<String>,
    /// A session (of the session-based revisions, up to 2025-11-25) with
    /// no request, no call in flight and no open stream for this long is
    /// ended: its upstream process is stopped (or its remote session
    /// deleted). Default 300.
    pub session_idle_timeout_secs: u64,
    /// Live sessions per server; an `initialize` past it is refused with
    /// a JSON-RPC error (HTTP 503). Default 100.
    pub max_sessions_per_server: usize,
    /// New sessions per second per server (a token bucket holding as many);
    /// an `initialize` beyond it is refused (HTTP 429, `Retry-After: 1`).
    /// Default 20.
    pub max_new_sessions_per_sec: u32,
    /// The upstream servers.
    pub servers: Vec<McpServerConfig>,
}

/// Default of [`McpConfig::session_idle_timeout_secs`].
pub const DEFAULT_MCP_SESSION_IDLE_TIMEOUT_SECS: u64 = 300;
/// Default of [`McpConfig::max_sessions_per_server`].
pub const DEFAULT_MCP_MAX_SESSIONS_PER_SERVER: usize = 100;
/// Default of [`McpConfig::max_new_sessions_per_sec`].
pub const DEFAULT_MCP_MAX_NEW_SESSIONS_PER_SEC: u32 = 20;

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            plan_tool: None,
            session_idle_timeout_secs: DEFAULT_MCP_SESSION_IDLE_TIMEOUT_SECS,
            max_sessions_per_server: DEFAULT_MCP_MAX_SESSIONS_PER_SERVER,
            max_new_sessions_per_sec: DEFAULT_MCP_MAX_NEW_SESSIONS_PER_SEC,
            servers: Vec::new(),
        }
    }
}

/// One upstream MCP server of the HTTP gateway: a stdio `command` (one
/// process per agent session) or a remote Streamable HTTP `url` (one
/// upstream MCP session per agent session). Exactly one of the two.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Served at `/mcp/<name>`; actions are `mcp.<name>.<tool>`.
    pub name: String,
    /// A stdio server: the command and its arguments (one process per session).
    #[serde(default)]
    pub command: Vec<String>,
    /// Extra environment for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A remote Streamable HTTP server: its MCP endpoint
    /// (`https://mcp.example.com/mcp`).
    #[serde(default)]
    pub url: Option<String>,
    /// Headers sent with every request to `url` (credentials). Never logged
    /// or recorded; `Debug` shows their names only.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `url` only: longest wait for the upstream to answer one forwarded
    /// POST (all the JSON-RPC responses it carries); default 300000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `url` only: time allowed to connect; default 10000.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// `url` only: a PEM file of extra CA certificates trusted for this
    /// `https` upstream (a private CA), besides the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Intents for tools called outside any declared plan.
    #[serde(default)]
    pub default_intents: BTreeMap<String, String>,
    /// `command` only, session-based revisions: how a POST carrying one
    /// request is answered when its response comes first and the client
    /// accepts both framings. `true` (default): as plain JSON (one write,
    /// the fastest). `false`: always as an event stream (with a priming
    /// event for clients of 2025-11-25 and later), as MCP SDK servers
    /// answer sessions by default. (2026-07-28 stateless requests are
    /// answered as a 2026 server does: plain JSON when the answer comes
    /// first, its error codes mapped to HTTP statuses. A `url` upstream's
    /// framing is passed through as the upstream chose.)
    #[serde(default)]
    pub json_response: Option<bool>,
    /// `command` only, session-based revisions: a POST's event stream whose
    /// response has not come this many ms after its priming event is
    /// closed (SEP-1699 polling); the client reconnects with `GET` and
    /// `Last-Event-ID` and gets the response from the gateway's buffer.
    /// Frees connections that long calls would hold (e.g. behind proxies
    /// with idle timeouts). Only for clients of 2025-11-25 and later (the
    /// ones sent a priming event). Off by default.
    #[serde(default)]
    pub sse_close_after_ms: Option<u64>,
    /// What the guard enforces on this server's `tools/call`: `off` (the
    /// default: record only) or `plan` (a call no step of its
    /// correlation's open plan covers is refused before it reaches the
    /// server; see `intentproof_policy::guard`).
    #[serde(default)]
    pub enforce: Enforce,
    /// Tool-definition pinning: `off` (the default), or what a tool whose
    /// definition changed since it was pinned (or that appeared after)
    /// meets until `intentproof tools approve`: `flag` (recorded, a `TOOL
    /// CHANGED` finding), `hide` (also left out of `tools/list` and its
    /// calls refused), `block` (also its calls refused). Pins are kept in
    /// `<data dir>/pins/<name>.json`.
    #[serde(default)]
    pub on_tool_change: OnToolChange,
}

/// Default of [`McpServerConfig::timeout_ms`].
pub const DEFAULT_MCP_TIMEOUT_MS: u64 = 300_000;
/// Default of [`McpServerConfig::connect_timeout_ms`].
pub const DEFAULT_MCP_CONNECT_TIMEOUT_MS: u64 = 10_000;

impl McpServerConfig {
    /// A stdio server with every default.
    pub fn stdio(name: impl Into<String>, command: Vec<String>) -> Self {
        McpServerConfig {
            name: name.into(),
            command,
            env: BTreeMap::new(),
            url: None,
            headers: BTreeMap::new(),
            timeout_ms: None,
            connect_timeout_ms: None,
            ca_file: None,
            default_intents: BTreeMap::new(),
            json_response: None,
            sse_close_after_ms: None,
            enforce: Enforce::Off,
            on_tool_change: OnToolChange::Off,
        }
    }

    /// Whether a `command` server's lone response goes out as plain JSON
    /// (see [`McpServerConfig::json_response`]).
    pub fn answers_json(&self) -> bool {
        self.json_response.unwrap_or(true)
    }

    /// A remote Streamable HTTP server with every default.
    pub fn remote(name: impl Into<String>, url: impl Into<String>) -> Self {
        McpServerConfig {
            url: Some(url.into()),
            ..Self::stdio(name, Vec::new())
        }
    }

    /// Checks the `command` / `url` choice and the remote settings.
    fn validate(&self) -> Result<(), String> {
        let bad =
            |field: &str, why: &str| Err(format!("mcp server {:?}: `{field}` {why}", self.name));
        if let Some(ms) = self.sse_close_after_ms
            && !(1..=3_600_000).contains(&ms)
        {
            return bad(
                "sse_close_after_ms",
                &format!("= {ms} is out of range; use 1 to 3600000 (or leave it out: off)"),
            );
        }
        let Some(url) = &self.url else {
            if self.command.is_empty() {
                return Err(format!(
                    "mcp server {:?}: set `command` (a stdio server, e.g. command = [\"npx\", \"-y\", \"@modelcontextprotocol/server-everything\"]) or `url` (a remote Streamable HTTP server, e.g. url = \"https://mcp.example.com/mcp\")",
                    self.name
                ));
            }
            for (field, set) in [
                ("headers", !self.headers.is_empty()),
                ("timeout_ms", self.timeout_ms.is_some()),
                ("connect_timeout_ms", self.connect_timeout_ms.is_some()),
                ("ca_file", self.ca_file.is_some()),
            ] {
                if set {
                    return bad(
                        field,
                        "applies only to a remote server (`url`), not to `command`",
                    );
                }
            }
            return Ok(());
        };
        if !self.command.is_empty() {
            return bad(
                "command",
                "and `url` are both set; a server is either a stdio `command` or a remote `url`, not both",
            );
        }
        for (field, set) in [
            ("env", !self.env.is_empty()),
            ("json_response", self.json_response.is_some()),
            ("sse_close_after_ms", self.sse_close_after_ms.is_some()),
        ] {
            if set {
                return bad(
                    field,
                    "applies only to a stdio `command`, not to a remote `url`",
                );
            }
        }
        if let Err(why) = check_url(url) {
            return bad("url", &why);
        }
        for (name, value) in &self.headers {
            if let Err(why) = check_header(name, value) {
                return bad("headers", &why);
            }
        }
        for (field, value, max) in [
            ("timeout_ms", self.timeout_ms, 86_400_000),
            ("connect_timeout_ms", self.connect_timeout_ms, 3_600_000),
        ] {
            if let Some(v) = value
                && !(1..=max).contains(&v)
            {
                return bad(field, &format!("= {v} is out of range; use 1 to {max}"));
            }
        }
        if let Some(path) = &self.ca_file
            && let Err(e) = std::fs::metadata(path)
        {
            return bad("ca_file", &format!("{}: {e}", path.display()));
        }
        Ok(())
    }
}

impl std::fmt::Debug for McpServerConfig {
    /// Header values are credentials: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServerConfig")
            .field("name", &self.name)
            .field("command", &self.command)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("url", &self.url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("ca_file", &self.ca_file)
            .field("default_intents", &self.default_intents)
            .field("json_response", &self.json_response)
            .field("sse_close_after_ms", &self.sse_close_after_ms)
            .finish()
    }
}

impl McpConfig {
    /// Checks the bounds and every server; the error names the setting and
    /// what to write instead.
    pub fn validate(&self) -> Result<(), String> {
        if self.session_idle_timeout_secs == 0 {
            return Err(
                "mcp.session_idle_timeout_secs must be at least 1 (seconds an idle MCP session lives)"
                    .into(),
            );
        }
        if self.max_sessions_per_server == 0 || self.max_new_sessions_per_sec == 0 {
            return Err(
                "mcp.max_sessions_per_server and mcp.max_new_sessions_per_sec must be at least 1"
                    .into(),
            );
        }
        let mut servers = std::collections::BTreeSet::new();
        for server in &self.servers {
            let valid_name = !server.name.is_empty()
                && server
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name || !servers.insert(&server.name) {
                return Err(format!(
                    "mcp server names must be unique and use letters, digits, '-' and '_'; {:?} is not",
                    server.name
                ));
            }
            server.validate()?;
            if server.enforce == Enforce::Plan && self.plan_tool.as_deref() == Some("") {
                return Err(format!(
                    "mcp server {:?}: `enforce = \"plan\"` needs the plan tool, and mcp.plan_tool = \"\" turns it off: no plan could be declared and every call would be refused",
                    server.name
                ));
            }
        }
        Ok(())
    }
}

/// Headers a remote upstream's transport (`remote`) sets itself: the
/// config may not.
const MANAGED_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

/// Checks a remote server's `url` (config validation).
pub(crate) fn check_url(text: &str) -> Result<(), String> {
    intentproof_upstream::parse_upstream(text).map(|_| ())
}

/// Checks one configured header: the HTTP proxy's rules (no hop-by-hop,
/// `Host`, `Content-Length`, `Expect`, `X-IntentProof-*`), and none the
/// transport manages (`Accept`, `Content-Type`, `Mcp-Session-Id`,
/// `MCP-Protocol-Version`, `Last-Event-ID`).
pub(crate) fn check_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (parsed, value) = intentproof_upstream::check_added_header(name, value)?;
    if MANAGED_HEADERS.contains(&parsed.as_str()) {
        return Err(format!(
            "{name:?} cannot be set: the gateway manages it (Accept, Content-Type, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID)"
        ));
    }
    Ok((parsed, value))
}
