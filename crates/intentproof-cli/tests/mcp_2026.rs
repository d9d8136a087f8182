//! MCP revision 2026-07-28 through the gateway: a real 2026 client (PyPI
//! `mcp` 2.3.0's `Client`, tests/mcp2026/transcript.py) and a real dual-era
//! server (tests/mcp2026/fixture_server.py, MCPServer 2.3.0) talking
//! directly and through `intentproof`, in every gateway mode (stdio,
//! Streamable HTTP with a `command` upstream, with a `url` upstream), with
//! the client pinned to 2026-07-28, negotiating (`auto`), or on the
//! 2025-11-25 handshake (`legacy`): the transcripts must be identical. Plus
//! the recorded events of a 2026 session, and the conformance suite's 2026
//! alpha (server-stateless, http-header-validation, tools-list): the same
//! per-check results directly and through the gateway.
//!
//! Needs what `./scripts/test` installs: `INTENTPROOF_TEST_PYTHON_MCP2` (a
//! python with mcp 2.3.0), `INTENTPROOF_TEST_NODE22` and
//! `INTENTPROOF_TEST_CONFORMANCE`. Without them the tests fail (never skip).
//! Every process a test starts is stopped when it ends, failing or not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{BIN, Stopped, assert_same_transcript, daemon_listen, required_env, workspace_root};
use serde_json::{Value, json};

/// The gateway's own tool, added to tools/list.
const PLAN_TOOL: &str = "intentproof_declare_plan";
/// What transcript.py sends as clientInfo.
const CLIENT_NAME: &str = "intentproof-mcp2026-transcript";
const CLIENT_VERSION: &str = "1.0.0";
/// A bound on runs that normally take seconds; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(300);
/// The conformance scenarios run directly and through the gateway.
const SCENARIOS: [&str; 3] = ["server-stateless", "http-header-validation", "tools-list"];

fn python() -> PathBuf {
    required_env("INTENTPROOF_TEST_PYTHON_MCP2")
}

fn script(name: &str) -> String {
    workspace_root()
        .join("tests/mcp2026")
        .join(name)
        .canonicalize()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// `python fixture_server.py stdio`.
fn fixture_stdio() -> Vec<String> {
    vec![
        python().to_string_lossy().into_owned(),
        script("fixture_server.py"),
        "stdio".into(),
    ]
}

/// Nothing may redirect an `intentproof` the test runs (or one its children
/// run), and a daemon it starts listens on a free port.
fn clean_env(cmd: &mut Command) -> &mut Command {
    for var in [
        "INTENTPROOF_DATA_DIR",
        "INTENTPROOF_CONFIG",
        "INTENTPROOF_SERVER",
        "INTENTPROOF_INGEST_TOKEN",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("INTENTPROOF_LISTEN", "127.0.0.1:0")
        .env("PYTHONDONTWRITEBYTECODE", "1")
}

/// Runs `cmd` to its end (stdout and stderr captured), killed after `within`.
fn run_bounded(cmd: &mut Command, what: &str, within: Duration) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Stopped(
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot start: {e}")),
    );
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still running after {within:?}; stderr so far:\n{}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

/// tests/mcp2026/transcript.py `--mode MODE ARGS...`: its transcript (one
/// JSON line per step).
fn transcript(mode: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(python());
    cmd.arg(script("transcript.py"))
        .args(["--mode", mode])
        .args(args);
    clean_env(&mut cmd);
    let out = run_bounded(
        &mut cmd,
        &format!("transcript.py --mode {mode} {args:?}"),
        DEADLINE,
    );
    assert!(
        out.status.success(),
        "transcript.py --mode {mode} {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The fixture over Streamable HTTP on a free loopback port; its URL.
fn start_fixture_http(log: &Path) -> (Stopped, String) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut cmd = Command::new(python());
    cmd.arg(script("fixture_server.py"))
        .args(["http", &port.to_string()]);
    clean_env(&mut cmd);
    let mut server = Stopped(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!(
                "fixture_server.py http {port} exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "fixture_server.py did not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, format!("http://127.0.0.1:{port}/mcp"))
}

/// `intentproof serve --config` (127.0.0.1:0, data dir `dir/data`) with
/// `servers` (TOML `[[mcp.servers]]` tables); returns it and its address.
fn start_gateway_daemon(dir: &Path, servers: &str) -> (Stopped, String) {
    let data = dir.join("data");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n\n{servers}",
            data.display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config"]).arg(&config);
    clean_env(&mut cmd);
    let daemon = Stopped(
        cmd.current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let listen = daemon_listen(&data);
    (daemon, listen)
}

/// A `[[mcp.servers]]` table running the fixture over stdio.
fn command_server(name: &str) -> String {
    format!(
        "[[mcp.servers]]\nname = {name:?}\ncommand = {}\n",
        serde_json::to_string(&fixture_stdio()).unwrap()
    )
}

/// A `[[mcp.servers]]` table for a remote Streamable HTTP upstream.
fn url_server(name: &str, url: &str) -> String {
    format!("[[mcp.servers]]\nname = {name:?}\nurl = {url:?}\n")
}

// ---- stdio mode (`intentproof mcp -- python fixture_server.py stdio`) ----------------

fn stdio_gateway_is_transparent(mode: &str) {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data").to_string_lossy().into_owned();
    let fixture = fixture_stdio();
    let fixture: Vec<&str> = fixture.iter().map(String::as_str).collect();
    let mut direct = vec!["stdio", "--"];
    direct.extend(&fixture);
    let mut through = vec![
        "--extra-tool",
        PLAN_TOOL,
        "stdio",
        "--",
        BIN,
        "mcp",
        "--name",
        "fixture",
        "--no-autostart",
        "--data-dir",
        &data,
        "--",
    ];
    through.extend(&fixture);
    let direct = transcript(mode, &direct);
    let through = transcript(mode, &through);
    assert_same_transcript(temp.path(), &direct, &through);
}

#[test]
fn stdio_gateway_is_transparent_to_a_pinned_2026_client() {
    stdio_gateway_is_transparent("2026-07-28");
}

#[test]
fn stdio_gateway_is_transparent_to_an_auto_client() {
    stdio_gateway_is_transparent("auto");
}

#[test]
fn stdio_gateway_is_transparent_to_a_2025_client() {
    stdio_gateway_is_transparent("legacy");
}

// ---- HTTP mode, `command` upstream (/mcp/<name> -> a stdio process) ------------------

fn http_command_upstream_is_transparent(mode: &str) {
    let temp = tempfile::tempdir().unwrap();
    let (daemon, listen) = start_gateway_daemon(temp.path(), &command_server("fixture"));
    let fixture = fixture_stdio();
    let mut direct = vec!["stdio", "--"];
    direct.extend(fixture.iter().map(String::as_str));
    let direct = transcript(mode, &direct);
    let url = format!("http://{listen}/mcp/fixture");
    let through = transcript(mode, &["--extra-tool", PLAN_TOOL, "http", &url]);
    assert_same_transcript(temp.path(), &direct, &through);
    drop(daemon);
}

#[test]
fn http_command_upstream_is_transparent_to_a_pinned_2026_client() {
    http_command_upstream_is_transparent("2026-07-28");
}

#[test]
fn http_command_upstream_is_transparent_to_an_auto_client() {
    http_command_upstream_is_transparent("auto");
}

/// The 2025-11-25 session path (initialize, Mcp-Session-Id) stays
/// transparent with a dual-era upstream.
#[test]
fn http_command_upstream_is_transparent_to_a_2025_client() {
    http_command_upstream_is_transparent("legacy");
}

// ---- HTTP mode, `url` upstream (/mcp/<name> -> the fixture over HTTP) ------------------

fn http_url_upstream_is_transparent(mode: &str) {
    let temp = tempfile::tempdir().unwrap();
    let (fixture, upstream) = start_fixture_http(&temp.path().join("fixture.log"));
    let (daemon, listen) = start_gateway_daemon(temp.path(), &url_server("remote", &upstream));
    let direct = transcript(mode, &["http", &upstream]);
    let url = format!("http://{listen}/mcp/remote");
    let through = transcript(mode, &["--extra-tool", PLAN_TOOL, "http", &url]);
    assert_same_transcript(temp.path(), &direct, &through);
    drop(daemon);
    drop(fixture);
}

#[test]
fn http_url_upstream_is_transparent_to_a_pinned_2026_client() {
    http_url_upstream_is_transparent("2026-07-28");
}

#[test]
fn http_url_upstream_is_transparent_to_an_auto_client() {
    http_url_upstream_is_transparent("auto");
}

#[test]
fn http_url_upstream_is_transparent_to_a_2025_client() {
    http_url_upstream_is_transparent("legacy");
}

// ---- what a 2026 session leaves in the store -----------------------------------------------

/// Every stored event (the `event` objects), once `ready` holds for them
/// (the daemon records calls after answering them; a stdio gateway ships
/// them in the background).
fn wait_for_events(data: &Path, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(BIN)
            .args(["events", "--json", "--limit", "1000", "--data-dir"])
            .arg(data)
            .output()
            .unwrap();
        let events: Vec<Value> = if out.status.success() {
            serde_json::from_slice::<Value>(&out.stdout).unwrap()["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| row["event"].clone())
                .collect()
        } else {
            Vec::new()
        };
        if ready(&events) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "the expected events were not stored within 30 s; stored: {events:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The pinned 2026 transcript's calls as events: `echo` is one event with
/// its inputs and the client's name and version from
/// `_meta["io.modelcontextprotocol/clientInfo"]` (a 2026 client sends no
/// `initialize`).
fn assert_2026_session_recorded(data: &Path, server: &str) {
    let echo_action = format!("mcp.{server}.echo");
    let where_action = format!("mcp.{server}.where");
    let events = wait_for_events(data, |events| {
        [&echo_action, &where_action]
            .iter()
            .all(|a| events.iter().any(|e| e["action"] == json!(a)))
    });
    let echo: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == json!(echo_action))
        .collect();
    assert_eq!(echo.len(), 1, "one echo event: {events:#?}");
    let echo = echo[0];
    assert_eq!(echo["status"], "ok", "{echo:#}");
    assert_eq!(echo["inputs"], json!({"text": "hello"}), "{echo:#}");
    assert_eq!(echo["attributes"]["mcp.server"], server, "{echo:#}");
    assert_eq!(
        echo["attributes"]["mcp.client.name"], CLIENT_NAME,
        "{echo:#}"
    );
    assert_eq!(
        echo["attributes"]["mcp.client.version"], CLIENT_VERSION,
        "{echo:#}"
    );
    let region = events
        .iter()
        .find(|e| e["action"] == json!(where_action))
        .unwrap();
    assert_eq!(region["status"], "ok", "{region:#}");
    assert_eq!(
        region["inputs"],
        json!({"region": "eu-west-1"}),
        "{region:#}"
    );
}

#[test]
fn stdio_gateway_records_a_2026_session() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let daemon = common::start_daemon(&data);
    let data_arg = data.to_string_lossy().into_owned();
    let mut args = vec![
        "--extra-tool",
        PLAN_TOOL,
        "stdio",
        "--",
        BIN,
        "mcp",
        "--name",
        "fixture",
        "--data-dir",
        &data_arg,
        "--",
    ];
    let fixture = fixture_stdio();
    args.extend(fixture.iter().map(String::as_str));
    transcript("2026-07-28", &args);
    assert_2026_session_recorded(&data, "fixture");
    drop(daemon);
}

#[test]
fn http_gateway_records_a_2026_session() {
    let temp = tempfile::tempdir().unwrap();
    let (daemon, listen) = start_gateway_daemon(temp.path(), &command_server("fixture"));
    let url = format!("http://{listen}/mcp/fixture");
    transcript("2026-07-28", &["--extra-tool", PLAN_TOOL, "http", &url]);
    assert_2026_session_recorded(&temp.path().join("data"), "fixture");
    drop(daemon);
}

// ---- the conformance suite's 2026 alpha, directly and through the gateway ------------------

/// Runs the conformance alpha's server `scenario` at 2026-07-28 against
/// `url`; returns its checks (id -> statuses, in the order they ran; an id
/// may repeat) from the `checks.json` it writes under `-o`.
fn conformance(url: &str, scenario: &str, out_dir: &Path) -> (Statuses, Statuses) {
    let node = required_env("INTENTPROOF_TEST_NODE22");
    let suite = required_env("INTENTPROOF_TEST_CONFORMANCE");
    std::fs::create_dir_all(out_dir).unwrap();
    let mut cmd = Command::new(node);
    cmd.arg(suite)
        .args([
            "server",
            "--url",
            url,
            "--spec-version",
            "2026-07-28",
            "--scenario",
        ])
        .arg(scenario)
        .arg("-o")
        .arg(out_dir);
    let out = run_bounded(&mut cmd, &format!("conformance {scenario} {url}"), DEADLINE);
    let runs: Vec<PathBuf> = std::fs::read_dir(out_dir)
        .unwrap()
        .map(|e| e.unwrap().path().join("checks.json"))
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "conformance {scenario} against {url} ({}) wrote {runs:?}; output:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let checks: Value = serde_json::from_slice(&std::fs::read(&runs[0]).unwrap()).unwrap();
    let (mut statuses, mut messages) = (Statuses::new(), Statuses::new());
    for check in checks.as_array().unwrap() {
        let id = check["id"].as_str().unwrap().to_owned();
        if let Some(message) = check["errorMessage"].as_str() {
            messages
                .entry(id.clone())
                .or_default()
                .push(message.to_owned());
        }
        statuses
            .entry(id)
            .or_default()
            .push(check["status"].as_str().unwrap().to_owned());
    }
    (statuses, messages)
}

/// Check id -> one entry per time the check ran.
type Statuses = BTreeMap<String, Vec<String>>;

#[test]
fn conformance_2026_results_are_the_same_directly_and_through_the_gateway() {
    let temp = tempfile::tempdir().unwrap();
    let (fixture, upstream) = start_fixture_http(&temp.path().join("fixture.log"));
    let servers = format!(
        "{}\n{}",
        url_server("remote", &upstream),
        command_server("local")
    );
    let (daemon, listen) = start_gateway_daemon(temp.path(), &servers);
    let targets = [
        ("direct", upstream.clone()),
        ("gateway-url", format!("http://{listen}/mcp/remote")),
        ("gateway-command", format!("http://{listen}/mcp/local")),
    ];
    let mut report = String::new();
    let mut differences = Vec::new();
    for scenario in SCENARIOS {
        let runs: Vec<(Statuses, Statuses)> = targets
            .iter()
            .map(|(name, url)| {
                conformance(
                    url,
                    scenario,
                    &temp.path().join(format!("conf-{name}-{scenario}")),
                )
            })
            .collect();
        let results: Vec<&Statuses> = runs.iter().map(|(statuses, _)| statuses).collect();
        let direct = results[0];
        let failed: Vec<&String> = direct
            .iter()
            .filter(|(_, s)| s.iter().any(|s| s == "FAILURE"))
            .map(|(id, _)| id)
            .collect();
        assert!(
            failed.is_empty(),
            "{scenario}: the fixture itself fails {failed:?}; fix tests/mcp2026/fixture_server.py"
        );
        let ids: std::collections::BTreeSet<&String> =
            results.iter().flat_map(|r| r.keys()).collect();
        report.push_str(&format!(
            "\n{scenario}:\n  {:<72} {:<10} {:<12} {}\n",
            "check", "direct", "gateway-url", "gateway-command"
        ));
        for id in ids {
            let cell = |r: &&Statuses| r.get(id).map_or("-".to_owned(), |s| s.join(","));
            let row: Vec<String> = results.iter().map(cell).collect();
            let mark = if row.iter().all(|c| *c == row[0]) {
                " "
            } else {
                "!"
            };
            report.push_str(&format!(
                "{mark} {id:<72} {:<10} {:<12} {}\n",
                row[0], row[1], row[2]
            ));
            if mark == "!" {
                for ((name, _), (_, messages)) in targets.iter().zip(&runs) {
                    for message in messages.get(id).into_iter().flatten() {
                        report.push_str(&format!("      {name}: {message}\n"));
                    }
                }
            }
        }
        for ((name, _), result) in targets.iter().zip(&results).skip(1) {
            if *result != direct {
                differences.push(format!("{scenario} via {name}"));
            }
        }
    }
    eprintln!("conformance 2026-07-28 per check (! = differs):{report}");
    assert!(
        differences.is_empty(),
        "the gateway changes conformance results ({differences:?}):{report}"
    );
    drop(daemon);
    drop(fixture);
}
