//! `intentproof mcp -- <command>` (the stdio MCP gateway) as an agent runs it:
//! the real binary between a real MCP client and a real MCP server
//! (`@modelcontextprotocol/server-everything`), or a misbehaving fake one
//! (`tests/mcp/fake_server.py`), with the events checked through the CLI
//! (`intentproof chains` / `events`) against the real daemon.
//!
//! Needs what `./scripts/test` installs: `INTENTPROOF_TEST_PYTHON` (a python
//! with the official `mcp` client) and `INTENTPROOF_TEST_NODE_EVERYTHING`
//! (server-everything's `dist/index.js`). Without them the tests fail (never
//! skip). Every daemon runs on `127.0.0.1:0` (`INTENTPROOF_LISTEN` for the
//! ones the gateway starts), and every daemon and gateway a test starts is
//! stopped when it ends, failing or not.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

mod common;

use common::clean_env;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_intentproof");
/// Generous: a bound on things that normally take (milli)seconds, never a
/// timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);
const HOW: &str = "run ./scripts/test once: it installs the MCP test deps into .ci-deps/ and \
                   exports INTENTPROOF_TEST_PYTHON (venv python with `mcp`) and \
                   INTENTPROOF_TEST_NODE_EVERYTHING (server-everything's dist/index.js)";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn env_file(var: &str) -> PathBuf {
    let path = match std::env::var_os(var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!("{var} is not set: {HOW}"),
    };
    assert!(
        path.is_file(),
        "{var}={} does not exist: {HOW}",
        path.display()
    );
    path
}

fn python() -> PathBuf {
    env_file("INTENTPROOF_TEST_PYTHON")
}

/// `node <server-everything> stdio`.
fn everything() -> Vec<String> {
    let index = env_file("INTENTPROOF_TEST_NODE_EVERYTHING");
    vec![
        "node".into(),
        index.to_string_lossy().into_owned(),
        "stdio".into(),
    ]
}

fn mcp_script(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp")
        .join(name);
    path.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `python tests/mcp/fake_server.py MODE`.
fn fake_server(mode: &str) -> Vec<String> {
    vec![
        python().to_string_lossy().into_owned(),
        mcp_script("fake_server.py").to_string_lossy().into_owned(),
        mode.into(),
    ]
}

fn intentproof() -> Command {
    let mut cmd = Command::new(BIN);
    clean_env(&mut cmd);
    cmd.stdin(Stdio::null());
    cmd
}

fn run_json(args: &[&str], data_dir: &Path) -> Value {
    let out = intentproof()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run intentproof");
    assert!(
        out.status.success(),
        "intentproof {args:?} exited {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "intentproof {args:?}: not JSON ({e}): {}",
            text(&out.stdout)
        )
    })
}

/// Every stored event (the `event` objects), in store order.
fn all_events(data_dir: &Path) -> Vec<Value> {
    let json = run_json(&["events", "--json", "--limit", "1000"], data_dir);
    json["events"]
        .as_array()
        .expect("events array")
        .iter()
        .map(|e| e["event"].clone())
        .collect()
}

fn chains(data_dir: &Path) -> Vec<Value> {
    run_json(&["chains", "--json"], data_dir)["chains"]
        .as_array()
        .expect("chains array")
        .clone()
}

/// Polls until `count` events are stored (the daemon must be up); returns them.
fn wait_for_events(data_dir: &Path, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if data_dir.join("daemon.json").exists() {
            let out = intentproof()
                .args(["events", "--json", "--limit", "1000", "--data-dir"])
                .arg(data_dir)
                .output()
                .expect("run intentproof events");
            if out.status.success() {
                let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                if let Some(events) = json["events"].as_array()
                    && events.len() >= count
                {
                    return events.iter().map(|e| e["event"].clone()).collect();
                }
            }
        }
        if Instant::now() > deadline {
            let have = if data_dir.join("daemon.json").exists() {
                all_events(data_dir)
            } else {
                Vec::new()
            };
            panic!(
                "expected {count} events in {}, have {}: {:#?}\nspool: {:?}\ndaemon.log: {}",
                data_dir.display(),
                have.len(),
                have.iter().map(|e| e["action"].clone()).collect::<Vec<_>>(),
                spool_files(data_dir),
                std::fs::read_to_string(data_dir.join("daemon.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every chain is verified: signatures good, no gaps, keys known.
fn assert_chains_verified(data_dir: &Path) -> Vec<Value> {
    let chains = chains(data_dir);
    assert!(!chains.is_empty(), "no chains in {}", data_dir.display());
    for chain in &chains {
        assert_eq!(
            chain["verified"],
            json!(true),
            "chain not verified: {chain:#}"
        );
        assert_eq!(chain["gaps"], json!(0), "chain has gaps: {chain:#}");
        assert_eq!(chain["invalid_signatures"], json!(0), "{chain:#}");
        assert_eq!(chain["key_unknown"], json!(0), "{chain:#}");
    }
    chains
}

/// (file name, non-empty lines) of each spool file.
fn spool_files(data_dir: &Path) -> Vec<(String, usize)> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("spool")) else {
        return Vec::new();
    };
    let mut files: Vec<(String, usize)> = entries
        .flatten()
        .map(|e| {
            let lines = std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count();
            (e.file_name().to_string_lossy().into_owned(), lines)
        })
        .collect();
    files.sort();
    files
}

fn spool_pending(data_dir: &Path) -> usize {
    spool_files(data_dir).iter().map(|(_, n)| n).sum()
}

/// Pids of the live `intentproof serve` processes on `data_dir` (whoever
/// started them: the test, or a gateway).
fn daemons_of(data_dir: &Path) -> Vec<u32> {
    let wanted = data_dir.as_os_str().to_string_lossy().into_owned();
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_ours = args.first().is_some_and(|a| a.ends_with("intentproof"))
            && args.iter().any(|a| a == "serve")
            && args.contains(&wanted);
        // A zombie keeps its /proc entry: only count the running.
        let running = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        if is_ours && running {
            pids.push(pid);
        }
    }
    pids
}

fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn sigkill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn wait_child(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh data dir; on drop every daemon serving it is stopped (SIGTERM,
/// then SIGKILL), including daemons a gateway started.
struct Scene {
    dir: tempfile::TempDir,
    /// Daemons this test started itself (reaped here).
    daemons: Vec<Child>,
}

impl Scene {
    fn new() -> Scene {
        Scene {
            dir: tempfile::tempdir().expect("tempdir"),
            daemons: Vec::new(),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `intentproof serve --listen 127.0.0.1:0` on the data dir; waits until
    /// it has written `daemon.json`. Returns its pid.
    fn start_daemon(&mut self) -> u32 {
        let data = self.data();
        std::fs::create_dir_all(&data).unwrap();
        let _ = std::fs::remove_file(data.join("daemon.json"));
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.file("test-daemon.log"))
            .unwrap();
        let child = intentproof()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn intentproof serve");
        let pid = child.id();
        self.daemons.push(child);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(info) = std::fs::read_to_string(data.join("daemon.json")) {
                let info: Value = serde_json::from_str(&info).unwrap_or(Value::Null);
                if info["pid"] == json!(pid) {
                    return pid;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not start: {}",
                std::fs::read_to_string(self.file("test-daemon.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to a daemon this test started; waits for it to exit.
    fn stop_daemon(&mut self, pid: u32) {
        sigterm(pid);
        let child = self
            .daemons
            .iter_mut()
            .find(|c| c.id() == pid)
            .expect("a daemon this test started");
        let status = wait_child(child, DEADLINE);
        assert!(status.is_some(), "daemon {pid} did not stop on SIGTERM");
    }

    /// A gateway on this scene's data dir, its stderr in `<name>.stderr`.
    fn gateway(&self, name: &str, extra: &[&str], upstream: &[String]) -> Gateway {
        Gateway::spawn(
            &self.data(),
            &self.file(&format!("{name}.stderr")),
            name,
            extra,
            upstream,
        )
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let data = self.data();
        for pid in daemons_of(&data) {
            sigterm(pid);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !daemons_of(&data).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in daemons_of(&data) {
            sigkill(pid);
        }
        for child in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One `intentproof mcp` process driven line by line over its stdio: the
/// test is the agent. Killed on drop.
struct Gateway {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: PathBuf,
    next_id: u64,
    /// Server-to-client messages other than responses to our requests.
    others: Vec<Value>,
}

impl Gateway {
    fn spawn(
        data_dir: &Path,
        stderr: &Path,
        name: &str,
        extra: &[&str],
        upstream: &[String],
    ) -> Gateway {
        let log = File::create(stderr).expect("create gateway stderr file");
        let mut child = intentproof()
            .args(["mcp", "--name", name, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .arg("--")
            .args(upstream)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn intentproof mcp");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Gateway {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: stderr.to_owned(),
            next_id: 1,
            others: Vec::new(),
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{message}").expect("write to the gateway");
        stdin.flush().unwrap();
    }

    /// Sends a request; returns the response (the whole message).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let message: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                        panic!("the gateway wrote a line that is not JSON ({e}): {line}")
                    });
                    if message.get("method").is_none() && message["id"] == json!(id) {
                        return message;
                    }
                    if message.get("method").is_some() && message.get("id").is_some() {
                        // A server-to-client request: we declared no capabilities.
                        let reply = json!({"jsonrpc": "2.0", "id": message["id"],
                            "error": {"code": -32601, "message": "not supported by this test client"}});
                        self.send(&reply);
                    }
                    self.others.push(message);
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no response to {method} (id {id}) within {DEADLINE:?}; gateway stderr:\n{}",
                    self.stderr()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the gateway closed its stdout before answering {method} (id {id}); exit {:?}; stderr:\n{}",
                    self.child.try_wait(),
                    self.stderr()
                ),
            }
        }
    }

    fn initialize(&mut self) -> Value {
        let response = self.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "mcp-stdio-test", "version": "1.0.0"}}),
        );
        assert!(
            response.get("result").is_some(),
            "initialize failed: {response}"
        );
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        response
    }

    fn tool_names(&mut self) -> Vec<String> {
        let response = self.request("tools/list", json!({}));
        response["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("tools/list: {response}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn call(&mut self, tool: &str, arguments: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": arguments}))
    }

    /// A call that must succeed; returns its result.
    fn call_ok(&mut self, tool: &str, arguments: Value) -> Value {
        let response = self.call(tool, arguments);
        let result = response
            .get("result")
            .unwrap_or_else(|| panic!("{tool}: {response}\nstderr:\n{}", self.stderr()));
        assert_ne!(result["isError"], json!(true), "{tool}: {response}");
        result.clone()
    }

    fn declare_plan(&mut self, plan: Value) -> Value {
        let result = self.call_ok("intentproof_declare_plan", plan);
        result["structuredContent"].clone()
    }

    /// Waits for the gateway to exit on its own (stdin left as is).
    fn wait_exit(&mut self) -> i32 {
        let status = wait_child(&mut self.child, DEADLINE)
            .unwrap_or_else(|| panic!("the gateway did not exit; stderr:\n{}", self.stderr()));
        status.code().unwrap_or(-1)
    }

    /// Closes its stdin (the agent is done) and waits for it to exit.
    fn close(&mut self) -> i32 {
        self.stdin = None;
        self.wait_exit()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a tests/mcp script with the test environment; kept as a child so
/// several can run at once.
fn spawn_script(script: &str, args: &[&str], stderr: &Path) -> Child {
    let mut cmd = Command::new(python());
    clean_env(&mut cmd);
    cmd.arg(mcp_script(script))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(stderr).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"))
}

fn finish_script(child: Child, what: &str, stderr: &Path) -> Output {
    let out = child.wait_with_output().expect("wait for the script");
    assert!(
        out.status.success(),
        "{what} exited {:?}\nstderr:\n{}",
        out.status,
        std::fs::read_to_string(stderr).unwrap_or_default()
    );
    out
}

fn event_with<'a>(events: &'a [Value], action: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["action"] == action).collect()
}

/// The first text content of a recorded tool output.
fn output_text(event: &Value) -> String {
    event["output"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn transcript_through_the_gateway_equals_direct() {
    let scene = Scene::new();
    let data = scene.data();
    let upstream = everything();
    let upstream: Vec<&str> = upstream.iter().map(String::as_str).collect();
    let data_arg = data.to_string_lossy().into_owned();

    // Both sessions at once: the transcript takes ~12 s, mostly waiting.
    let mut direct_args = vec!["stdio", "--"];
    direct_args.extend(&upstream);
    let mut gateway_args = vec![
        "--extra-tool",
        "intentproof_declare_plan",
        "stdio",
        "--",
        BIN,
        "mcp",
        "--name",
        "everything",
        "--data-dir",
        &data_arg,
        "--",
    ];
    gateway_args.extend(&upstream);
    let direct_err = scene.file("direct.stderr");
    let gateway_err = scene.file("gateway.stderr");
    let direct = spawn_script("transcript.py", &direct_args, &direct_err);
    let through = spawn_script("transcript.py", &gateway_args, &gateway_err);
    let direct = finish_script(direct, "transcript.py (direct)", &direct_err);
    let through = finish_script(through, "transcript.py (through the gateway)", &gateway_err);

    if direct.stdout != through.stdout {
        let (a, b) = (scene.file("direct.json"), scene.file("gateway.json"));
        std::fs::write(&a, &direct.stdout).unwrap();
        std::fs::write(&b, &through.stdout).unwrap();
        let diff = Command::new("diff")
            .arg("-u")
            .arg(&a)
            .arg(&b)
            .output()
            .unwrap();
        panic!(
            "the transcript through the gateway differs from the direct one:\n{}",
            text(&diff.stdout)
        );
    }
    let transcript: Value = serde_json::from_slice(&direct.stdout).unwrap();
    let step = |name: &str| {
        transcript["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name} in the transcript"))
            .clone()
    };
    let read_uri = step("resources/list+read")["read_uri"].clone();
    let prompt = step("prompts/get");

    // One event per call the transcript made, in order (one session, one
    // gateway process: one chain).
    let events = wait_for_events(&data, 9);
    let expected: Vec<(&str, Value, &str)> = vec![
        ("echo", json!({"message": "hello"}), "ok"),
        ("get-sum", json!({"a": 2, "b": 3}), "ok"),
        ("resource.read", json!({"uri": read_uri}), "ok"),
        (
            "prompt.get",
            json!({"name": prompt["name"], "arguments": prompt["arguments"]}),
            "ok",
        ),
        (
            "trigger-long-running-operation",
            json!({"duration": 0.6, "steps": 3}),
            "ok",
        ),
        (
            "trigger-long-running-operation",
            json!({"duration": 3, "steps": 3}),
            "error",
        ),
        (
            "trigger-sampling-request",
            json!({"prompt": "hello from intentproof", "maxTokens": 16}),
            "ok",
        ),
        ("trigger-elicitation-request", json!({}), "ok"),
        ("get-roots-list", json!({}), "ok"),
    ];
    let got: Vec<(String, Value, String)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["inputs"].clone(),
                e["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, Value, String)> = expected
        .iter()
        .map(|(tool, inputs, status)| {
            (
                format!("mcp.everything.{tool}"),
                inputs.clone(),
                (*status).to_owned(),
            )
        })
        .collect();
    assert_eq!(got, want, "events: {events:#?}");
    for event in &events {
        assert_eq!(event["intent"], "undeclared", "{event:#}");
        assert_eq!(event["attributes"]["mcp.server"], "everything", "{event:#}");
        assert_eq!(
            event["attributes"]["mcp.client.name"], "intentproof-mcp-transcript",
            "{event:#}"
        );
    }
    assert_eq!(output_text(&events[0]), "Echo: hello");
    assert!(output_text(&events[1]).contains('5'), "{:#}", events[1]);
    assert_eq!(events[2]["output"]["contents"][0]["uri"], read_uri);
    assert_eq!(
        events[3]["output"]["messages"], prompt["result"]["messages"],
        "{:#}",
        events[3]
    );
    assert!(
        output_text(&events[4]).starts_with("Long running operation completed"),
        "{:#}",
        events[4]
    );
    assert_eq!(events[5]["error"]["name"], "Cancelled", "{:#}", events[5]);
    assert_eq!(
        events[5]["error"]["message"],
        step("cancel")["reason"],
        "{:#}",
        events[5]
    );
    let outputs = |e: &Value| e["output"].to_string();
    assert!(outputs(&events[6]).contains("sampled: "), "{:#}", events[6]);
    assert!(
        outputs(&events[8]).contains("file:///tmp/intentproof-roots"),
        "{:#}",
        events[8]
    );
    // The same session: one correlation, one chain, verified.
    let chains = assert_chains_verified(&data);
    assert_eq!(chains.len(), 1, "{chains:#?}");
    assert_eq!(chains[0]["events"], json!(9));
    assert_eq!(chains[0]["errors"], json!(1));
    assert_eq!(chains[0]["correlation_id"], events[0]["correlation_id"]);
}

#[test]
fn plan_intents() {
    let mut scene = Scene::new();
    let data = scene.data();
    scene.start_daemon();
    let fixture = mcp_script("fixtures/plan_intents.json");
    let plan: Value = serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    let correlation = plan["plan"]["correlation_id"].as_str().unwrap().to_owned();
    let data_arg = data.to_string_lossy().into_owned();
    let fixture_arg = fixture.to_string_lossy().into_owned();
    let upstream = everything();
    let mut args = vec![
        "--require-ok",
        &fixture_arg,
        "stdio",
        "--",
        BIN,
        "mcp",
        "--name",
        "everything",
        "--data-dir",
        &data_arg,
        "--",
    ];
    args.extend(upstream.iter().map(String::as_str));
    let stderr = scene.file("plan_session.stderr");
    let session = spawn_script("plan_session.py", &args, &stderr);
    let out = finish_script(session, "plan_session.py", &stderr);
    let transcript: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        transcript["steps"][2]["step"], "tools/call intentproof_declare_plan",
        "{transcript:#}"
    );

    // declaration + 3 calls + the plan's close when the session ended
    let events = wait_for_events(&data, 5);
    assert_eq!(events.len(), 5, "{events:#?}");
    for event in &events {
        assert_eq!(event["correlation_id"], correlation.as_str(), "{event:#}");
    }
    let declared = event_with(&events, "intentproof.plan.declare");
    assert_eq!(declared.len(), 1, "{events:#?}");
    let declared = declared[0];
    assert_eq!(declared["status"], "ok", "{declared:#}");
    assert_eq!(declared["intent"], plan["plan"]["intent"], "{declared:#}");
    assert_eq!(declared["inputs"], plan["plan"], "{declared:#}");
    let plan_id = declared["attributes"]["intentproof.plan.id"].clone();
    assert!(plan_id.is_string(), "{declared:#}");
    assert_eq!(declared["output"]["plan_id"], plan_id, "{declared:#}");

    let steps = plan["plan"]["steps"].as_array().unwrap();
    for (tool, step) in [("echo", 0u64), ("get-sum", 1)] {
        let found = event_with(&events, &format!("mcp.everything.{tool}"));
        assert_eq!(found.len(), 1, "{events:#?}");
        let event = found[0];
        assert_eq!(event["status"], "ok", "{event:#}");
        assert_eq!(
            event["intent"], steps[step as usize]["purpose"],
            "{event:#}"
        );
        assert_eq!(
            event["attributes"]["intentproof.plan.id"], plan_id,
            "{event:#}"
        );
        assert_eq!(
            event["attributes"]["intentproof.plan.step"],
            json!(step),
            "{event:#}"
        );
    }
    assert_eq!(
        output_text(event_with(&events, "mcp.everything.echo")[0]),
        "Echo: planned hello"
    );
    let outside = event_with(&events, "mcp.everything.get-annotated-message");
    assert_eq!(outside.len(), 1, "{events:#?}");
    assert_eq!(outside[0]["intent"], "undeclared", "{:#}", outside[0]);
    assert_eq!(outside[0]["inputs"], json!({"messageType": "success"}));
    assert!(
        outside[0]["attributes"]
            .get("intentproof.plan.step")
            .is_none(),
        "{:#}",
        outside[0]
    );
    assert!(event_with(&events, "mcp.everything.get-tiny-image").is_empty());
    let closed = event_with(&events, "intentproof.plan.close");
    assert_eq!(closed.len(), 1, "{events:#?}");
    assert_eq!(
        closed[0]["inputs"],
        json!({"plan_id": plan_id, "reason": "session_ended"})
    );

    let chains = assert_chains_verified(&data);
    assert_eq!(chains.len(), 1, "{chains:#?}");
    assert_eq!(chains[0]["correlation_id"], correlation.as_str());
    assert_eq!(chains[0]["events"], json!(5));
}

#[test]
fn three_gateways_at_once_without_a_daemon() {
    let scene = Scene::new();
    let data = scene.data();
    assert!(daemons_of(&data).is_empty());
    let upstream = everything();
    let barrier = Arc::new(Barrier::new(3));
    let sessions: Vec<_> = (0..3)
        .map(|i| {
            let gateway = scene.gateway(&format!("everything{i}"), &[], &upstream);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut gateway = gateway;
                gateway.initialize();
                let tools = gateway.tool_names();
                assert!(
                    tools.iter().any(|t| t == "intentproof_declare_plan"),
                    "{tools:?}"
                );
                // Every gateway's first event at about the same moment: each
                // finds no daemon and tries to start one.
                barrier.wait();
                let plan = gateway.declare_plan(json!({
                    "intent": format!("session {i}"),
                    "steps": [{"tool": "echo", "purpose": format!("echo from {i}")}],
                    "correlation_id": format!("three-at-once-{i}"),
                }));
                assert_eq!(plan["correlation_id"], format!("three-at-once-{i}"));
                let echoed = gateway.call_ok("echo", json!({"message": format!("hello {i}")}));
                assert_eq!(echoed["content"][0]["text"], format!("Echo: hello {i}"));
                gateway.call_ok("get-sum", json!({"a": i, "b": 10}));
                let code = gateway.close();
                (code, gateway.stderr())
            })
        })
        .collect();
    for (i, session) in sessions.into_iter().enumerate() {
        let (code, stderr) = session.join().expect("session thread");
        assert_eq!(code, 0, "gateway {i} exited {code}; stderr:\n{stderr}");
    }

    // Per session: the declaration, two calls, the plan's close.
    let events = wait_for_events(&data, 12);
    assert_eq!(events.len(), 12, "{events:#?}");
    for i in 0..3 {
        let correlation = format!("three-at-once-{i}");
        let mut actions: Vec<&str> = events
            .iter()
            .filter(|e| e["correlation_id"] == correlation.as_str())
            .map(|e| e["action"].as_str().unwrap_or_default())
            .collect();
        actions.sort();
        assert_eq!(
            actions,
            vec![
                "intentproof.plan.close",
                "intentproof.plan.declare",
                &format!("mcp.everything{i}.echo"),
                &format!("mcp.everything{i}.get-sum"),
            ],
            "{events:#?}"
        );
    }
    let chains = assert_chains_verified(&data);
    assert_eq!(chains.len(), 3, "{chains:#?}");
    assert_eq!(spool_pending(&data), 0, "{:?}", spool_files(&data));

    // Exactly one daemon serves the data dir: the one in daemon.json.
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("daemon.json")).unwrap()).unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let daemons = daemons_of(&data);
        if daemons.len() == 1 {
            assert_eq!(json!(daemons[0]), info["pid"], "daemon.json: {info}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected one daemon on the data dir, found {daemons:?}\ndaemon.log:\n{}",
            std::fs::read_to_string(data.join("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn daemon_stopped_mid_session() {
    let mut scene = Scene::new();
    let data = scene.data();
    let first = scene.start_daemon();
    // No autostart: while the daemon is down, events can only wait in the spool.
    let mut gateway = scene.gateway("everything", &["--no-autostart"], &everything());
    gateway.initialize();
    let echo = |g: &mut Gateway, message: &str| {
        let result = g.call_ok("echo", json!({"message": message}));
        assert_eq!(result["content"][0]["text"], format!("Echo: {message}"));
    };
    echo(&mut gateway, "before 1");
    echo(&mut gateway, "before 2");
    wait_for_events(&data, 2);

    scene.stop_daemon(first);
    assert!(daemons_of(&data).is_empty());
    for i in 1..=3 {
        echo(&mut gateway, &format!("while down {i}"));
    }
    // All three are on disk, waiting.
    let deadline = Instant::now() + DEADLINE;
    while spool_pending(&data) < 3 {
        assert!(Instant::now() < deadline, "spool: {:?}", spool_files(&data));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gateway.alive(), "stderr:\n{}", gateway.stderr());

    scene.start_daemon();
    echo(&mut gateway, "after 1");
    echo(&mut gateway, "after 2");
    let code = gateway.close();
    assert_eq!(code, 0, "stderr:\n{}", gateway.stderr());

    let events = wait_for_events(&data, 7);
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["inputs"]["message"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        messages,
        vec![
            "before 1",
            "before 2",
            "while down 1",
            "while down 2",
            "while down 3",
            "after 1",
            "after 2"
        ],
        "{events:#?}"
    );
    assert!(events.iter().all(|e| e["status"] == "ok"), "{events:#?}");
    let chains = assert_chains_verified(&data);
    assert_eq!(chains.len(), 1, "{chains:#?}");
    assert_eq!(chains[0]["events"], json!(7));
    assert_eq!(spool_pending(&data), 0, "{:?}", spool_files(&data));
    assert!(!data.join("spool/rejected.jsonl").exists());
}

#[test]
fn upstream_crash_mid_call() {
    let mut scene = Scene::new();
    let data = scene.data();
    scene.start_daemon();

    // crash-on-call: the pending call gets an error; the gateway ends.
    let mut gateway = scene.gateway("fake", &[], &fake_server("crash-on-call"));
    gateway.initialize();
    assert_eq!(
        gateway.tool_names(),
        vec!["echo".to_owned(), "intentproof_declare_plan".to_owned()]
    );
    let response = gateway.call("echo", json!({"message": "doomed"}));
    let message = response["error"]["message"].as_str().unwrap_or_else(|| {
        panic!(
            "expected a JSON-RPC error, got {response}\nstderr:\n{}",
            gateway.stderr()
        )
    });
    assert!(
        message.contains("exit status: 3"),
        "the error should say the upstream exited (status 3): {response}"
    );
    assert_eq!(response["id"], json!(3), "{response}");
    let events = wait_for_events(&data, 1);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["action"], "mcp.fake.echo");
    assert_eq!(events[0]["status"], "error", "{:#}", events[0]);
    assert_eq!(events[0]["inputs"], json!({"message": "doomed"}));
    assert_eq!(
        events[0]["error"]["name"], "UpstreamGone",
        "{:#}",
        events[0]
    );
    assert_eq!(events[0]["error"]["message"], message, "{:#}", events[0]);
    assert!(gateway.stderr().contains("fake_server: crashing"));
    // Its exit is checked at the end: the garbage session runs meanwhile.
    let mut crashed = gateway;

    // garbage: non-JSON lines on the upstream's stdout are dropped and
    // reported; the session goes on.
    let mut gateway = scene.gateway("garbage", &[], &fake_server("garbage"));
    gateway.initialize();
    assert!(gateway.tool_names().contains(&"echo".to_owned()));
    for i in 0..2 {
        let result = gateway.call_ok("echo", json!({"message": format!("through {i}")}));
        assert_eq!(result["content"][0]["text"], format!("Echo: through {i}"));
    }
    let ping = gateway.request("ping", json!({}));
    assert_eq!(ping["result"], json!({}), "{ping}");
    assert!(gateway.alive(), "stderr:\n{}", gateway.stderr());
    let code = gateway.close();
    let stderr = gateway.stderr();
    assert_eq!(code, 0, "stderr:\n{stderr}");
    assert!(
        stderr.contains("not a JSON-RPC message") && stderr.contains("this is not json"),
        "stderr should warn about the non-JSON line:\n{stderr}"
    );

    let events = wait_for_events(&data, 3);
    let garbage = event_with(&events, "mcp.garbage.echo");
    assert_eq!(garbage.len(), 2, "{events:#?}");
    assert!(garbage.iter().all(|e| e["status"] == "ok"), "{events:#?}");
    assert_chains_verified(&data);
    assert_eq!(spool_pending(&data), 0, "{:?}", spool_files(&data));

    // With its upstream gone, the crash-on-call gateway has nothing left to
    // relay: it must exit (status 1) by itself, the agent's stdin still
    // open, once its event is delivered (it waits at most 10 s for that;
    // it was delivered long ago, see above).
    let status = wait_child(&mut crashed.child, Duration::from_secs(20));
    assert!(
        status.is_some(),
        "the gateway whose upstream crashed is still running with the agent's stdin open \
         (it exits only once the agent writes another line or closes stdin); stderr:\n{}",
        crashed.stderr()
    );
    assert_eq!(
        status.unwrap().code(),
        Some(1),
        "stderr:\n{}",
        crashed.stderr()
    );
}
