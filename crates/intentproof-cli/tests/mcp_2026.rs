//! MCP revision 2026-07-28 through the gateway: a real 2026 client (PyPI
//! `mcp` 2.3.0's `Client`, tests/mcp2026/transcript.py) and a real dual-era
//! server (tests/mcp2026/fixture_server.py, MCPServer 2.3.0) talking
//! directly and through `intentproof`, in every gateway mode (stdio,
//! Streamable HTTP with a `command` upstream, with a `url` upstream), with
//! the client pinned to 2026-07-28, negotiating (`auto`), or on the
//! 2025-11-25 handshake (`legacy`): the transcripts must be identical. Plus
//! the recorded events of a 2026 session, and the official conformance
//! suite's server scenarios, the 2026-07-28 alpha (every scenario) and the
//! released 0.1.16 (2025-11-25 sessions): the same per-check results
//! directly and through the gateway (`url` and `command` upstreams).
//!
//! Needs what `./scripts/test` installs: `INTENTPROOF_TEST_PYTHON_MCP2` (a
//! python with mcp 2.3.0), `INTENTPROOF_TEST_NODE22`,
//! `INTENTPROOF_TEST_CONFORMANCE` (0.2.0-alpha.12) and
//! `INTENTPROOF_TEST_CONFORMANCE_RELEASED` (0.1.16). Without them the tests
//! fail (never skip).
//! Every process a test starts is stopped when it ends, failing or not.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{
    BIN, PEER_DEADLINE, PLAN_TOOL, assert_http_command_upstream_transparent,
    assert_http_url_upstream_transparent, assert_stdio_gateway_transparent, command_server,
    mcp2026_script, pypi_fixture_stdio, python_mcp2, required_env, run_bounded, run_transcript,
    start_gateway_daemon, start_http_fixture, through_stdio_gateway, url_server,
};
use serde_json::{Value, json};

/// What transcript.py sends as clientInfo.
const CLIENT_NAME: &str = "intentproof-mcp2026-transcript";
const CLIENT_VERSION: &str = "1.0.0";

/// tests/mcp2026/transcript.py `--mode MODE ARGS...`: its transcript (one
/// JSON line per step).
fn transcript(mode: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(python_mcp2());
    cmd.arg(mcp2026_script("transcript.py"))
        .args(["--mode", mode])
        .args(args);
    run_transcript(&mut cmd, &format!("transcript.py --mode {mode} {args:?}"))
}

/// The fixture over Streamable HTTP on a free loopback port; its URL.
fn start_fixture_http(log: &Path) -> (common::Stopped, String) {
    let mut cmd = Command::new(python_mcp2());
    cmd.arg(mcp2026_script("fixture_server.py"));
    start_http_fixture(cmd, "fixture_server.py", log)
}

// ---- stdio mode (`intentproof mcp -- python fixture_server.py stdio`) ----------------

fn stdio_gateway_is_transparent(mode: &str) {
    assert_stdio_gateway_transparent(&pypi_fixture_stdio(), |args| transcript(mode, args));
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
    assert_http_command_upstream_transparent(&pypi_fixture_stdio(), |args| transcript(mode, args));
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
    assert_http_url_upstream_transparent(temp.path(), &upstream, |args| transcript(mode, args));
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
    let fixture = pypi_fixture_stdio();
    transcript(
        "2026-07-28",
        &through_stdio_gateway(&data_arg, &[], &fixture),
    );
    assert_2026_session_recorded(&data, "fixture");
    drop(daemon);
}

#[test]
fn http_gateway_records_a_2026_session() {
    let temp = tempfile::tempdir().unwrap();
    let (daemon, listen) = start_gateway_daemon(
        temp.path(),
        &command_server("fixture", &pypi_fixture_stdio()),
    );
    let url = format!("http://{listen}/mcp/fixture");
    transcript("2026-07-28", &["--extra-tool", PLAN_TOOL, "http", &url]);
    assert_2026_session_recorded(&temp.path().join("data"), "fixture");
    drop(daemon);
}

// ---- the conformance suite, directly and through the gateway ------------------------------

/// One release of the official conformance suite (npm
/// `@modelcontextprotocol/conformance`) and how its server scenarios run.
struct Suite {
    /// For messages and the table.
    name: &'static str,
    /// The variable naming its `dist/index.js` (./scripts/test exports it).
    env: &'static str,
    /// `server --url URL` arguments choosing the scenarios.
    args: &'static [&'static str],
    /// Scenarios that must have run (a suite that silently drops one fails).
    required: &'static [&'static [&'static str]],
}

/// 0.2.0-alpha.12: every server scenario of revision 2026-07-28 (`--suite
/// all` includes the pending ones, e.g. http-header-validation). The
/// extension-only scenarios (tasks-*, sep-2640-skills-*) are not in it.
const ALPHA_2026: Suite = Suite {
    name: "conformance 0.2.0-alpha.12 --spec-version 2026-07-28 --suite all",
    env: "INTENTPROOF_TEST_CONFORMANCE",
    args: &["--spec-version", "2026-07-28", "--suite", "all"],
    required: &[&[
        "server-stateless",
        "completion-complete",
        "tools-list",
        "tools-call-simple-text",
        "tools-call-image",
        "tools-call-audio",
        "tools-call-embedded-resource",
        "tools-call-mixed-content",
        "tools-call-error",
        "tools-call-with-progress",
        "json-schema-2020-12",
        "server-sse-multiple-streams",
        "resources-list",
        "resources-read-text",
        "resources-read-binary",
        "resources-templates-read",
        "sep-2164-resource-not-found",
        "prompts-list",
        "prompts-get-simple",
        "prompts-get-with-args",
        "prompts-get-embedded-resource",
        "prompts-get-with-image",
        "dns-rebinding-protection",
        "caching",
        "http-header-validation",
        "http-custom-header-server-validation",
        "input-required-result-basic-elicitation",
        "input-required-result-basic-sampling",
        "input-required-result-basic-list-roots",
        "input-required-result-request-state",
        "input-required-result-multiple-input-requests",
        "input-required-result-multi-round",
        "input-required-result-missing-input-response",
        "input-required-result-non-tool-request",
        "input-required-result-result-type",
        "input-required-result-unsupported-methods",
        "input-required-result-tampered-state",
        "input-required-result-capability-check",
        "input-required-result-ignore-extra-params",
        "input-required-result-validate-input",
    ]],
};

/// The server scenarios of revision 2025-11-25 (sessions: initialize,
/// Mcp-Session-Id), as both suites below run them.
const SCENARIOS_2025: &[&str] = &[
    "server-initialize",
    "logging-set-level",
    "ping",
    "completion-complete",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-with-logging",
    "tools-call-error",
    "tools-call-with-progress",
    "tools-call-sampling",
    "tools-call-elicitation",
    "json-schema-2020-12",
    "elicitation-sep1034-defaults",
    "server-sse-polling",
    "server-sse-multiple-streams",
    "elicitation-sep1330-enums",
    "resources-list",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "resources-subscribe",
    "resources-unsubscribe",
    "prompts-list",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
    "dns-rebinding-protection",
];

/// 0.1.16, the released suite: every server scenario (`--suite all`); its
/// client speaks the 2025 handshake. (Its raw server-sse-polling POST says
/// `MCP-Protocol-Version: 2025-03-26`, so an MCPServer sends no priming
/// event or `retry:` and does not close the stream: two WARNINGs directly.)
const RELEASED: Suite = Suite {
    name: "conformance 0.1.16 --suite all",
    env: "INTENTPROOF_TEST_CONFORMANCE_RELEASED",
    args: &["--suite", "all"],
    required: &[SCENARIOS_2025],
};

/// The alpha at 2025-11-25: the same scenarios plus server-session-lifecycle;
/// its server-sse-polling sends 2025-11-25, so SSE priming, `retry:` and
/// resumption with Last-Event-ID are exercised (all SUCCESS directly).
const ALPHA_2025: Suite = Suite {
    name: "conformance 0.2.0-alpha.12 --spec-version 2025-11-25 --suite all",
    env: "INTENTPROOF_TEST_CONFORMANCE",
    args: &["--spec-version", "2025-11-25", "--suite", "all"],
    required: &[SCENARIOS_2025, &["server-session-lifecycle"]],
};

/// (scenario, check id) -> one entry per time the check ran, in order (an
/// id may repeat within a scenario; INFO-only ones count once).
type Checks = BTreeMap<(String, String), Vec<String>>;

/// `server-<scenario>-<YYYY-MM-DD>T<time>` (a result directory) -> the scenario.
fn scenario_of(dir_name: &str) -> Option<String> {
    let rest = dir_name.strip_prefix("server-")?;
    let bytes = rest.as_bytes();
    let shape = b"-dddd-dd-ddT";
    (0..bytes.len()).find_map(|at| {
        let tail = bytes.get(at..at + shape.len())?;
        let stamp = tail.iter().zip(shape).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            s => c == s,
        });
        (stamp && at > 0).then(|| rest[..at].to_owned())
    })
}

/// One run of `suite`'s server scenarios against `url`: statuses and the
/// error messages, read from the `checks.json` each scenario writes under
/// `-o` (in `server-<scenario>-<timestamp>/`).
fn run_suite(suite: &Suite, url: &str, out_dir: &Path) -> (Checks, Checks) {
    let node = required_env("INTENTPROOF_TEST_NODE22");
    let script = required_env(suite.env);
    std::fs::create_dir_all(out_dir).unwrap();
    let mut cmd = Command::new(node);
    cmd.arg(script)
        .args(["server", "--url", url])
        .args(suite.args)
        .arg("-o")
        .arg(out_dir);
    // It exits non-zero when a check fails; the checks are compared below.
    let out = run_bounded(
        &mut cmd,
        &format!("{} against {url}", suite.name),
        PEER_DEADLINE,
    );
    let (mut statuses, mut messages) = (Checks::new(), Checks::new());
    let mut scenarios = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(out_dir).unwrap() {
        let dir = entry.unwrap().path();
        let file = dir.join("checks.json");
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let scenario = scenario_of(&name)
            .unwrap_or_else(|| panic!("unexpected result directory {name} in {out_dir:?}"));
        assert!(
            file.is_file() && scenarios.insert(scenario.clone()),
            "{}: {name} has no checks.json or ran twice",
            suite.name
        );
        let checks: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        for check in checks.as_array().unwrap() {
            let key = (scenario.clone(), check["id"].as_str().unwrap().to_owned());
            if let Some(message) = check["errorMessage"].as_str() {
                messages
                    .entry(key.clone())
                    .or_default()
                    .push(message.to_owned());
            }
            statuses
                .entry(key)
                .or_default()
                .push(check["status"].as_str().unwrap().to_owned());
        }
    }
    // INFO-only checks are trace records (outgoing-request, incoming-sse-event,
    // ...): how many there are follows timing (an SSE event more or less on a
    // resumed stream), so they count once; verdicts keep their multiplicity.
    for runs in statuses.values_mut() {
        if runs.iter().all(|s| s == "INFO") {
            runs.truncate(1);
        }
    }
    assert!(
        !statuses.is_empty(),
        "{} against {url} ({}) recorded no checks; output:\n{}\n{}",
        suite.name,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (statuses, messages)
}

/// A free loopback port's fixture over HTTP, the gateway with a `url`
/// upstream (a second fixture process, so the runs share no state and can
/// run at once) and a `command` upstream; `suite` runs against the three
/// concurrently. Asserts the direct run covers `suite.required` and fails
/// nothing (else the fixture needs work), then that both gateway runs have
/// exactly the direct per-check statuses. Prints the table of checks that
/// differ or are not SUCCESS directly (with their messages), always.
fn conformance_is_the_same_through_the_gateway(suite: &Suite) {
    let temp = tempfile::tempdir().unwrap();
    let (direct_fixture, direct_url) = start_fixture_http(&temp.path().join("fixture-direct.log"));
    let (upstream_fixture, upstream_url) =
        start_fixture_http(&temp.path().join("fixture-upstream.log"));
    // The `command` upstream is configured as the direct fixture serves
    // HTTP (MCPServer's defaults: event streams, an event store; its
    // test_reconnection closes the stream 100 ms into the call): the
    // gateway answers with event streams and closes a stream whose
    // response has not come 100 ms after its priming event.
    let servers = format!(
        "{}\n{}json_response = false\nsse_close_after_ms = 100\n",
        url_server("remote", &upstream_url),
        command_server("local", &pypi_fixture_stdio())
    );
    let (daemon, listen) = start_gateway_daemon(temp.path(), &servers);
    let targets = [
        ("direct", direct_url),
        ("gateway-url", format!("http://{listen}/mcp/remote")),
        ("gateway-command", format!("http://{listen}/mcp/local")),
    ];
    let runs: Vec<(Checks, Checks)> = std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|(name, url)| {
                let out = temp.path().join(format!("conformance-{name}"));
                scope.spawn(move || run_suite(suite, url, &out))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    drop(daemon);
    drop(upstream_fixture);
    drop(direct_fixture);

    let direct = &runs[0].0;
    let ran: std::collections::BTreeSet<&str> = direct.keys().map(|(s, _)| s.as_str()).collect();
    let missing: Vec<&&str> = suite
        .required
        .iter()
        .flat_map(|list| list.iter())
        .filter(|s| !ran.contains(**s))
        .collect();
    let failed: Vec<String> = direct
        .iter()
        .filter(|(_, s)| s.iter().any(|s| s == "FAILURE"))
        .map(|((scenario, id), _)| format!("{scenario} / {id}"))
        .collect();

    let keys: std::collections::BTreeSet<&(String, String)> = runs
        .iter()
        .flat_map(|(statuses, _)| statuses.keys())
        .collect();
    let mut table = String::new();
    let mut differing = 0;
    for key in &keys {
        let row: Vec<String> = runs
            .iter()
            .map(|(statuses, _)| statuses.get(*key).map_or("-".to_owned(), |s| s.join(",")))
            .collect();
        let differs = row.iter().any(|cell| *cell != row[0]);
        if !differs && row[0].split(',').all(|s| s == "SUCCESS") {
            continue;
        }
        differing += usize::from(differs);
        table.push_str(&format!(
            "{} {:<78} {:<18} {:<18} {}\n",
            if differs { "!" } else { " " },
            format!("{} / {}", key.0, key.1),
            row[0],
            row[1],
            row[2]
        ));
        for ((name, _), (_, messages)) in targets.iter().zip(&runs) {
            for message in messages.get(*key).into_iter().flatten() {
                let message: String = message.chars().take(300).collect();
                table.push_str(&format!("      {name}: {message}\n"));
            }
        }
    }
    let report = format!(
        "{}: {} checks in {} scenarios; {differing} differ (!); the rest of the rows are not SUCCESS directly\n  {:<78} {:<18} {:<18} {}\n{table}",
        suite.name,
        keys.len(),
        ran.len(),
        "scenario / check",
        "direct",
        "gateway-url",
        "gateway-command"
    );
    eprintln!("{report}");
    assert!(
        missing.is_empty(),
        "{}: scenarios did not run directly: {missing:?}",
        suite.name
    );
    assert!(
        failed.is_empty(),
        "{}: the fixture itself fails {failed:?}; fix tests/mcp2026/fixture_server.py",
        suite.name
    );
    let through: Vec<&str> = targets
        .iter()
        .zip(&runs)
        .skip(1)
        .filter(|(_, (statuses, _))| statuses != direct)
        .map(|((name, _), _)| *name)
        .collect();
    assert!(
        through.is_empty(),
        "the gateway changes per-check conformance results ({through:?}):\n{report}"
    );
}

/// The conformance alpha's 2026-07-28 server scenarios (all of them, the
/// pending ones too) give the same per-check results through the gateway,
/// with a `url` and with a `command` upstream, as directly.
#[test]
fn conformance_2026_results_are_the_same_directly_and_through_the_gateway() {
    conformance_is_the_same_through_the_gateway(&ALPHA_2026);
}

/// The released conformance suite (0.1.16, 2025-11-25 sessions) gives the
/// same per-check results through the gateway as directly.
#[test]
fn released_conformance_results_are_the_same_directly_and_through_the_gateway() {
    conformance_is_the_same_through_the_gateway(&RELEASED);
}

/// The alpha's 2025-11-25 server scenarios (sessions, SSE resumption) give
/// the same per-check results through the gateway as directly.
#[test]
fn conformance_2025_results_are_the_same_directly_and_through_the_gateway() {
    conformance_is_the_same_through_the_gateway(&ALPHA_2025);
}
