//! Sessions of the session-based MCP revisions over HTTP (`/mcp/<name>`)
//! are bounded: idle ones end and their upstream processes are reaped,
//! live ones are capped per server, and new ones are rate-limited, each
//! refusal a JSON-RPC error that says which limit and what to do.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{
    BIN, Stopped, child_pids, command_server, http_exchange, rss_kib, start_gateway_daemon,
};

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"abandoner","version":"1"}}}"#;
const HEADERS: &[(&str, &str)] = &[
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
];

/// A daemon serving the built-in demo server at `/mcp/demo` with `[mcp]`
/// settings `mcp`.
fn start(dir: &Path, mcp: &str) -> (Stopped, String) {
    let demo = command_server("demo", &[BIN.into(), "demo-server".into()]);
    start_gateway_daemon(dir, &format!("[mcp]\n{mcp}\n\n{demo}"))
}

/// Opens a session; returns (status, session id or "", body).
fn initialize(addr: &str) -> (u16, String, String) {
    let (status, headers, body) = http_exchange(addr, "POST", "/mcp/demo", HEADERS, INITIALIZE);
    let session = headers
        .iter()
        .find(|(n, _)| n == "mcp-session-id")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    (status, session, body)
}

fn wait_for_children(pid: u32, count: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = child_pids(pid).len();
        if now == count || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn abandoned_sessions_expire_and_their_upstream_processes_are_reaped() {
    let temp = tempfile::tempdir().unwrap();
    let (daemon, addr) = start(
        temp.path(),
        "session_idle_timeout_secs = 20\nmax_sessions_per_server = 200\nmax_new_sessions_per_sec = 100000",
    );
    let pid = daemon.0.id();
    // Warm up (allocator, runtime threads, the upstream spawn path): one
    // session, abandoned and expired, before the baseline is taken.
    let (status, _, _) = initialize(&addr);
    assert_eq!(status, 200);
    assert_eq!(wait_for_children(pid, 0), 0);
    let baseline = rss_kib(pid);

    let mut sessions = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let (status, session, body) = initialize(&addr);
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            answer["result"]["serverInfo"]["name"],
            "intentproof-demo-payments"
        );
        assert!(sessions.insert(session), "session ids are unique");
    }
    assert_eq!(
        child_pids(pid).len(),
        200,
        "one upstream process per session"
    );
    let busy = rss_kib(pid);

    // Nobody comes back: after the idle timeout every process is gone
    // (killed and waited for: not even a zombie is left).
    assert_eq!(
        wait_for_children(pid, 0),
        0,
        "upstream processes left after the idle timeout"
    );
    // A request on an expired session is told to start over.
    let (status, headers, body) = http_exchange(
        &addr,
        "POST",
        "/mcp/demo",
        &[
            HEADERS[0],
            HEADERS[1],
            ("Mcp-Session-Id", sessions.iter().next().unwrap()),
        ],
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#,
    );
    assert_eq!(status, 404, "{headers:?}");
    assert_eq!(
        body,
        r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32001,"message":"Session not found: initialize a new session"}}"#
    );
    // Memory comes back: within 10 % of the warmed-up idle daemon.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = rss_kib(pid);
    while after * 10 > baseline * 11 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = rss_kib(pid);
    }
    eprintln!("daemon RSS: idle {baseline} KiB, 200 sessions {busy} KiB, after expiry {after} KiB");
    assert!(
        after * 10 <= baseline * 11,
        "daemon RSS {after} KiB after the sessions expired, idle {baseline} KiB (more than +10 %)"
    );
    drop(daemon);
}

#[test]
fn past_the_limits_initialize_gets_a_clear_json_rpc_error() {
    let temp = tempfile::tempdir().unwrap();
    let (daemon, addr) = start(
        temp.path(),
        "session_idle_timeout_secs = 600\nmax_sessions_per_server = 2\nmax_new_sessions_per_sec = 1",
    );
    let (status, first, _) = initialize(&addr);
    assert_eq!(status, 200);
    // The bucket holds one new session per second: the next at once is
    // refused, and says when to retry.
    let (status, headers, body) = http_exchange(&addr, "POST", "/mcp/demo", HEADERS, INITIALIZE);
    assert_eq!(status, 429);
    assert!(
        headers.contains(&("retry-after".into(), "1".into())),
        "{headers:?}"
    );
    assert_eq!(
        body,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"too many new sessions for MCP server \"demo\": at most 1 per second (mcp.max_new_sessions_per_sec); retry in a second"}}"#
    );
    std::thread::sleep(Duration::from_millis(1100));
    let (status, _, _) = initialize(&addr);
    assert_eq!(status, 200);
    // Two live sessions: the cap.
    std::thread::sleep(Duration::from_millis(1100));
    let (status, _, body) = http_exchange(&addr, "POST", "/mcp/demo", HEADERS, INITIALIZE);
    assert_eq!(status, 503);
    assert_eq!(
        body,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"MCP server \"demo\" already has 2 live sessions (mcp.max_sessions_per_server); end one with DELETE, wait for idle ones to expire (mcp.session_idle_timeout_secs = 600), or raise the limit"}}"#
    );
    // Ending one makes room.
    let (status, _, _) = http_exchange(
        &addr,
        "DELETE",
        "/mcp/demo",
        &[("Mcp-Session-Id", &first)],
        "",
    );
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(1100));
    let (status, _, _) = initialize(&addr);
    assert_eq!(status, 200);
    assert_eq!(child_pids(daemon.0.id()).len(), 2);
    drop(daemon);
}
