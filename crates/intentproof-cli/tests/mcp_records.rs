//! What the stdio MCP gateway records for 2026-07-28 multi-round calls and
//! tasks (ARCHITECTURE.md, "One event per logical call"), end to end: a
//! scripted agent (this test) speaks 2026 JSON-RPC through the real
//! `intentproof mcp` to `tests/mcp-records/server.py`, a server whose every
//! answer is fixed, with a real daemon (`intentproof serve`, port 0, temp
//! data dir) storing the events. Checked, exactly:
//!
//! 1. a multi-round call (`input_required`, then a retry with
//!    `requestState`) is ONE event: the final output plus `output.rounds`
//!    naming both JSON-RPC ids, attribute `mcp.rounds` = 2;
//! 2. a task that completes: the call event carries `mcp.task.id`, and a
//!    linked `intentproof.call.completed` event (status ok) the result;
//! 3. a task that fails: its completion is status `error` (`TaskFailed`)
//!    and, once the plan closes, its step is a FAILED STEP;
//! 4. a task never seen to finish and a multi-round call never retried are
//!    TASK UNFINISHED (once the plan closes) and INCOMPLETE CALL (once the
//!    session ends, when the agent closes stdin), as `intentproof events
//!    --json`, `intentproof findings` (every line) and `plans --close` say;
//! 5. the terminal UI (in tmux) shows the N and T flags on the chain and on
//!    the events they name.
//!
//! Needs `python3` (standard library only) and, for the UI, `tmux`: missing,
//! the tests fail with what to install (they never skip). Every process a
//! test starts (daemon, gateway and its server, tmux) is stopped when it
//! ends, failing or not.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

use common::{BIN, Stopped, Tmux, cli_json, start_daemon, workspace_root};

/// Generous: a bound on things that take milliseconds, never a timing
/// assertion.
const DEADLINE: Duration = Duration::from_secs(60);
const SERVER: &str = "records";
const CORRELATION: &str = "records-flow";
const CLIENT: &str = "records-agent";
const INTENT: &str = "greet the user, compute the answer and confirm the order";

/// The plan's steps: (tool, purpose).
const STEPS: [(&str, &str); 5] = [
    ("ask_name", "Greet the user by name"),
    ("compute_ok", "Compute the answer"),
    ("compute_fail", "Run the job that fails"),
    ("compute_forever", "Start the job that never ends"),
    ("confirm", "Confirm the order"),
];

fn python3() -> &'static str {
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => "python3",
        other => panic!(
            "python3 is required to run tests/mcp-records/server.py and was not found or does not run ({other:?}): install Python 3 (Debian/Ubuntu: apt-get install python3)"
        ),
    }
}

fn server_script() -> PathBuf {
    let path = workspace_root().join("tests/mcp-records/server.py");
    path.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What a 2026-07-28 client puts in every request's `_meta`.
fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": CLIENT, "version": "0.1.0"},
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}}
    })
}

/// What the server puts in every result's `_meta`.
fn server_meta() -> Value {
    json!({"io.modelcontextprotocol/serverInfo": {"name": "records-server", "version": "1.0.0"}})
}

/// A scripted 2026 agent on the gateway's stdio. Answers are read by a
/// thread so that a gateway that never answers fails the test instead of
/// hanging it.
struct Agent {
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Sent as `_meta["intentproof/correlationId"]` when set.
    correlation: Option<&'static str>,
}

impl Agent {
    /// Sends a request (with the 2026 `_meta`) and returns its response.
    fn request(&mut self, id: u64, method: &str, mut params: Value) -> Value {
        params["_meta"] = meta();
        if let Some(correlation) = self.correlation {
            params["_meta"]["intentproof/correlationId"] = json!(correlation);
        }
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no answer to {message} within {DEADLINE:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the gateway closed stdout before answering {message}")
                }
            };
            let reply: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("the gateway wrote a non-JSON line {line:?}: {e}"));
            if reply["id"] == json!(id) {
                return reply;
            }
        }
    }

    fn call(&mut self, id: u64, tool: &str, mut params: Value) -> Value {
        params["name"] = json!(tool);
        self.request(id, "tools/call", params)
    }

    /// Sends `message` as it is (no `_meta` added).
    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next line the gateway writes, as JSON.
    fn next(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|e| panic!("no line from the gateway within {DEADLINE:?}: {e}"));
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the gateway wrote a non-JSON line {line:?}: {e}"))
    }

    /// The agent is done: closes the gateway's stdin.
    fn close(&mut self) {
        drop(self.stdin.take());
    }
}

/// Starts `intentproof mcp --name records -- python3 server.py` on `dir`
/// (its stderr in `dir/gateway.log`).
fn start_gateway(dir: &Path) -> (Stopped, Agent) {
    let mut gateway = Stopped(
        Command::new(BIN)
            .args(["mcp", "--name", SERVER, "--no-autostart", "--data-dir"])
            .arg(dir)
            .arg("--")
            .arg(python3())
            .arg(server_script())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(dir.join("gateway.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let stdout = gateway.0.stdout.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let agent = Agent {
        stdin: gateway.0.stdin.take(),
        lines,
        correlation: None,
    };
    (gateway, agent)
}

fn ok_reply(id: u64, result: Value) -> Value {
    let mut result = result;
    result["_meta"] = server_meta();
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn task(id: &str, status: &str) -> Value {
    json!({
        "resultType": "task", "taskId": id, "status": status,
        "createdAt": "2026-07-28T10:00:00Z",
        "lastUpdatedAt": if status == "working" { "2026-07-28T10:00:00Z" } else { "2026-07-28T10:00:05Z" },
        "ttlMs": 60000
    })
}

fn ask_name_input() -> Value {
    json!({"name": {"method": "elicitation/create", "params": {
        "message": "What is your name?", "mode": "form",
        "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    }}})
}

fn confirm_input() -> Value {
    json!({"confirm": {"method": "elicitation/create", "params": {
        "message": "Confirm the order?", "mode": "form",
        "requestedSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    }}})
}

fn ada() -> Value {
    json!({"name": {"action": "accept", "content": {"name": "Ada"}}})
}

fn plan_arguments() -> Value {
    json!({
        "intent": INTENT,
        "correlation_id": CORRELATION,
        "steps": STEPS.iter().map(|(tool, purpose)| json!({"tool": tool, "purpose": purpose})).collect::<Vec<_>>(),
    })
}

/// The session: list tools, declare the plan, a multi-round call that
/// completes, a task that completes (seen working first), one that fails,
/// one never seen finished, a multi-round call never retried; then the
/// agent closes stdin. Every answer is checked to be the server's, as sent.
/// Returns the plan id.
fn record_session(dir: &Path) -> String {
    let (mut gateway, mut agent) = start_gateway(dir);

    let tools = agent.request(1, "tools/list", json!({}));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("tools/list: {tools}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ask_name",
            "confirm",
            "compute_ok",
            "compute_fail",
            "compute_forever",
            "book",
            "intentproof_declare_plan"
        ],
        "{tools}"
    );

    let declared = agent.call(
        2,
        "intentproof_declare_plan",
        json!({"arguments": plan_arguments()}),
    );
    let plan_id = declared["result"]["structuredContent"]["plan_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the plan tool answered {declared}"))
        .to_owned();
    assert_eq!(
        declared["result"]["structuredContent"],
        json!({"plan_id": plan_id, "correlation_id": CORRELATION, "steps": 5})
    );

    // 1. Multi-round: input_required, then the retry with requestState.
    let asked = agent.call(3, "ask_name", json!({"arguments": {}}));
    assert_eq!(
        asked,
        ok_reply(
            3,
            json!({"resultType": "input_required", "inputRequests": ask_name_input(), "requestState": "s1"})
        )
    );
    let greeted = agent.call(
        4,
        "ask_name",
        json!({"arguments": {}, "requestState": "s1", "inputResponses": ada()}),
    );
    assert_eq!(
        greeted,
        ok_reply(
            4,
            json!({"content": [{"type": "text", "text": "Hello, Ada!"}], "isError": false, "resultType": "complete"})
        )
    );

    // 2. A task that completes (working on the first look).
    let handle = agent.call(5, "compute_ok", json!({"arguments": {"n": 6}}));
    assert_eq!(handle, ok_reply(5, task("t-ok", "working")));
    let working = agent.request(6, "tasks/get", json!({"taskId": "t-ok"}));
    assert_eq!(working, ok_reply(6, task("t-ok", "working")));
    let done = agent.request(7, "tasks/get", json!({"taskId": "t-ok"}));
    let mut completed = task("t-ok", "completed");
    completed["result"] =
        json!({"content": [{"type": "text", "text": "computed 42"}], "isError": false});
    assert_eq!(done, ok_reply(7, completed));

    // 3. A task that fails.
    let handle = agent.call(8, "compute_fail", json!({"arguments": {}}));
    assert_eq!(handle, ok_reply(8, task("t-fail", "working")));
    let failed = agent.request(9, "tasks/get", json!({"taskId": "t-fail"}));
    let mut failed_task = task("t-fail", "failed");
    failed_task["error"] = json!({"code": -32603, "message": "job crashed: disk full"});
    assert_eq!(failed, ok_reply(9, failed_task));

    // 4. A task never seen to finish, and a multi-round call never retried.
    let handle = agent.call(10, "compute_forever", json!({"arguments": {}}));
    assert_eq!(handle, ok_reply(10, task("t-never", "working")));
    let still = agent.request(11, "tasks/get", json!({"taskId": "t-never"}));
    assert_eq!(still, ok_reply(11, task("t-never", "working")));
    let confirm = agent.call(12, "confirm", json!({"arguments": {}}));
    assert_eq!(
        confirm,
        ok_reply(
            12,
            json!({"resultType": "input_required", "inputRequests": confirm_input(), "requestState": "c1"})
        )
    );

    // The agent leaves: the session ends.
    agent.close();
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = gateway.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not exit after the agent closed stdin"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.success(),
        "the gateway exited with {status}: {}",
        std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default()
    );
    plan_id
}

/// The plan's correlation's events (oldest first), once there are `n`.
fn events(dir: &Path, n: usize) -> Vec<Value> {
    events_of(dir, CORRELATION, n)
}

/// `correlation`'s events (oldest first), once there are `n`.
fn events_of(dir: &Path, correlation: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let body = cli_json(&["events", "--correlation", correlation], dir);
        let mut rows = body["events"].as_array().unwrap().clone();
        if rows.len() >= n {
            assert_eq!(rows.len(), n, "more events than expected: {body:#}");
            rows.sort_by_key(|r| r["seq"].as_u64().unwrap());
            assert!(
                rows.iter().all(|r| r["signature"] == "verified"),
                "{body:#}"
            );
            return rows.into_iter().map(|r| r["event"].clone()).collect();
        }
        assert!(
            Instant::now() < deadline,
            "not {n} events in {correlation} after {DEADLINE:?}: {body:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The parts of an event these tests pin down (ids and times vary).
fn essentials(event: &Value) -> Value {
    let mut out = json!({});
    for key in [
        "action",
        "intent",
        "correlation_id",
        "status",
        "inputs",
        "output",
        "error",
        "attributes",
    ] {
        if let Some(value) = event.get(key) {
            out[key] = value.clone();
        }
    }
    out
}

/// Attributes every call of the session carries.
fn call_attributes(session: &str, jsonrpc_id: u64, tool: &str, plan_id: &str, step: u64) -> Value {
    json!({
        "mcp.server": SERVER,
        "mcp.session_id": session,
        "jsonrpc.id": jsonrpc_id.to_string(),
        "mcp.client.name": CLIENT,
        "mcp.client.version": "0.1.0",
        "mcp.protocol.version": "2026-07-28",
        "mcp.tool": tool,
        "intentproof.plan.id": plan_id,
        "intentproof.plan.step": step,
    })
}

/// Attributes of a task's completion event.
fn completion_attributes(
    session: &str,
    jsonrpc_id: u64,
    tool: &str,
    call_event_id: &str,
    task_id: &str,
    status: &str,
) -> Value {
    json!({
        "mcp.server": SERVER,
        "mcp.session_id": session,
        "jsonrpc.id": jsonrpc_id.to_string(),
        "mcp.client.name": CLIENT,
        "mcp.client.version": "0.1.0",
        "mcp.protocol.version": "2026-07-28",
        "mcp.tool": tool,
        "intentproof.call.event_id": call_event_id,
        "intentproof.call.action": format!("mcp.{SERVER}.{tool}"),
        "mcp.task.id": task_id,
        "mcp.task.status": status,
    })
}

fn findings_table(dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(["findings", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `intentproof findings`' table: the header, one line per finding, the
/// count (the CLI's own column widths).
fn table(rows: &[(&str, &str, &str, &str)]) -> String {
    table_of(CORRELATION, rows)
}

/// [`table`] for another correlation.
fn table_of(correlation: &str, rows: &[(&str, &str, &str, &str)]) -> String {
    let mut out = format!(
        "{:<24} {:<18} {:<28} {:<36} MESSAGE\n",
        "AT", "FLAG", "CORRELATION", "ACTION"
    );
    for (at, flag, action, message) in rows {
        out.push_str(&format!(
            "{at:<24} {flag:<18} {correlation:<28} {action:<36} {message}\n"
        ));
    }
    let noun = if rows.len() == 1 {
        "finding"
    } else {
        "findings"
    };
    out.push_str(&format!("{} {noun}\n", rows.len()));
    out
}

const INCOMPLETE_MESSAGE: &str = "mcp.records.confirm never finished: the server asked for input (1 round) and the client never sent it: the session ended first";
const UNFINISHED_MESSAGE: &str = "mcp.records.compute_forever started task t-never and its outcome (completed, failed or cancelled) was never seen";
const FAILED_TASK_MESSAGE: &str = "Step 3 `mcp.records.compute_fail` (Run the job that fails) failed: 1 attempt returned an error and none succeeded.";
const FAILED_CONFIRM_MESSAGE: &str = "Step 5 `mcp.records.confirm` (Confirm the order) failed: 1 attempt returned an error and none succeeded.";

#[test]
fn multi_round_calls_and_tasks_are_recorded_and_flagged() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let _daemon = start_daemon(dir);
    let plan_id = record_session(dir);

    // Nine events: the declaration, four calls, two completions, the call
    // left waiting for input and the plan's close (both recorded when the
    // session ended).
    let events = events(dir, 9);
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "intentproof.plan.declare",
            "mcp.records.ask_name",
            "mcp.records.compute_ok",
            "intentproof.call.completed",
            "mcp.records.compute_fail",
            "intentproof.call.completed",
            "mcp.records.compute_forever",
            "mcp.records.confirm",
            "intentproof.plan.close",
        ]
    );
    let session = events[0]["attributes"]["mcp.session_id"]
        .as_str()
        .expect("the declaration names the session")
        .to_owned();
    assert!(!session.is_empty());
    let id = |i: usize| events[i]["event_id"].as_str().unwrap().to_owned();

    // The declaration.
    assert_eq!(
        essentials(&events[0]),
        json!({
            "action": "intentproof.plan.declare",
            "intent": INTENT,
            "correlation_id": CORRELATION,
            "status": "ok",
            "inputs": plan_arguments(),
            "output": {"plan_id": plan_id, "correlation_id": CORRELATION},
            "attributes": {
                "mcp.server": SERVER,
                "mcp.session_id": session,
                "jsonrpc.id": "2",
                "mcp.client.name": CLIENT,
                "mcp.client.version": "0.1.0",
                "mcp.protocol.version": "2026-07-28",
                "intentproof.plan.id": plan_id,
                "intentproof.plan.ordered": false,
            },
        })
    );

    // 1. The multi-round call: one event, the final output, both rounds.
    let mut attributes = call_attributes(&session, 3, "ask_name", &plan_id, 0);
    attributes["mcp.rounds"] = json!(2);
    assert_eq!(
        essentials(&events[1]),
        json!({
            "action": "mcp.records.ask_name",
            "intent": "Greet the user by name",
            "correlation_id": CORRELATION,
            "status": "ok",
            "inputs": {},
            "output": {
                "content": [{"type": "text", "text": "Hello, Ada!"}],
                "isError": false,
                "rounds": [
                    {"requestId": 3, "inputRequests": ask_name_input(), "requestState": "s1"},
                    {"requestId": 4, "inputResponses": ada()},
                ],
            },
            "attributes": attributes,
        })
    );

    // 2. The task that completed: the call (its handle), then the linked
    // completion carrying the task's result.
    let mut attributes = call_attributes(&session, 5, "compute_ok", &plan_id, 1);
    attributes["mcp.task.id"] = json!("t-ok");
    attributes["mcp.task.status"] = json!("working");
    assert_eq!(
        essentials(&events[2]),
        json!({
            "action": "mcp.records.compute_ok",
            "intent": "Compute the answer",
            "correlation_id": CORRELATION,
            "status": "ok",
            "inputs": {"n": 6},
            "output": task("t-ok", "working"),
            "attributes": attributes,
        })
    );
    assert_eq!(
        essentials(&events[3]),
        json!({
            "action": "intentproof.call.completed",
            "intent": "Compute the answer",
            "correlation_id": CORRELATION,
            "status": "ok",
            "inputs": {"taskId": "t-ok"},
            "output": {"content": [{"type": "text", "text": "computed 42"}], "isError": false},
            "attributes": completion_attributes(&session, 7, "compute_ok", &id(2), "t-ok", "completed"),
        })
    );

    // 3. The task that failed: its completion is an error.
    let mut attributes = call_attributes(&session, 8, "compute_fail", &plan_id, 2);
    attributes["mcp.task.id"] = json!("t-fail");
    attributes["mcp.task.status"] = json!("working");
    assert_eq!(
        essentials(&events[4]),
        json!({
            "action": "mcp.records.compute_fail",
            "intent": "Run the job that fails",
            "correlation_id": CORRELATION,
            "status": "ok",
            "inputs": {},
            "output": task("t-fail", "working"),
            "attributes": attributes,
        })
    );
    assert_eq!(
        essentials(&events[5]),
        json!({
            "action": "intentproof.call.completed",
            "intent": "Run the job that fails",
            "correlation_id": CORRELATION,
            "status": "error",
            "inputs": {"taskId": "t-fail"},
            "output": {"error": {"code": -32603, "message": "job crashed: disk full"}},
            "error": {"name": "TaskFailed", "message": "job crashed: disk full"},
            "attributes": completion_attributes(&session, 9, "compute_fail", &id(4), "t-fail", "failed"),
        })
    );

    // 4. The task never seen finished: its call only. The call never
    // retried: an IncompleteCall event with its one round.
    let mut attributes = call_attributes(&session, 10, "compute_forever", &plan_id, 3);
    attributes["mcp.task.id"] = json!("t-never");
    attributes["mcp.task.status"] = json!("working");
    assert_eq!(
        essentials(&events[6]),
        json!({
            "action": "mcp.records.compute_forever",
            "intent": "Start the job that never ends",
            "correlation_id": CORRELATION,
            "status": "ok",
            "inputs": {},
            "output": task("t-never", "working"),
            "attributes": attributes,
        })
    );
    let mut attributes = call_attributes(&session, 12, "confirm", &plan_id, 4);
    attributes["mcp.rounds"] = json!(1);
    assert_eq!(
        essentials(&events[7]),
        json!({
            "action": "mcp.records.confirm",
            "intent": "Confirm the order",
            "correlation_id": CORRELATION,
            "status": "error",
            "inputs": {},
            "output": {"rounds": [
                {"requestId": 12, "inputRequests": confirm_input(), "requestState": "c1"},
            ]},
            "error": {
                "name": "IncompleteCall",
                "message": "the server asked for input (1 round) and the client never sent it: the session ended first",
            },
            "attributes": attributes,
        })
    );

    // The session ended, and the plan it declared closed with it (after
    // the session's last call event): its findings are due now, not after
    // the daemon's plan idle timeout (300 s here).
    let close = &events[8];
    assert_eq!(
        essentials(close),
        json!({
            "action": "intentproof.plan.close",
            "intent": INTENT,
            "correlation_id": CORRELATION,
            "status": "ok",
            "inputs": {"plan_id": plan_id, "reason": "session_ended"},
            "attributes": {"mcp.server": SERVER, "mcp.session_id": session},
        })
    );
    let closed_at = close["completed_at"].as_str().unwrap().to_owned();
    let incomplete_at = events[7]["completed_at"].as_str().unwrap().to_owned();
    let incomplete = json!({
        "kind": "incomplete_call",
        "plan_id": plan_id,
        "intent": "Confirm the order",
        "correlation_id": CORRELATION,
        "step_index": null,
        "action": "mcp.records.confirm",
        "event_ids": [id(7)],
        "message": INCOMPLETE_MESSAGE,
        "at": incomplete_at,
    });
    // It cannot be closed twice.
    let again = Command::new(BIN)
        .args(["plans", "--close", &plan_id, "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(!again.status.success(), "{}", text(&again.stdout));
    assert!(
        text(&again.stderr).contains(&format!("plan {plan_id} is already closed (session_ended)")),
        "{}",
        text(&again.stderr)
    );
    let plans = cli_json(&["plans"], dir);
    assert_eq!(plans["plans"][0]["state"], "closed", "{plans:#}");
    assert_eq!(plans["plans"][0]["closed_by"], "session_ended", "{plans:#}");
    assert_eq!(plans["plans"][0]["calls"], 5, "{plans:#}");
    assert_eq!(plans["plans"][0]["flags"], 3, "{plans:#}");
    let mut expected = vec![
        json!({
            "kind": "failed_step",
            "plan_id": plan_id,
            "intent": INTENT,
            "correlation_id": CORRELATION,
            "step_index": 2,
            "action": "mcp.records.compute_fail",
            "event_ids": [id(4)],
            "message": FAILED_TASK_MESSAGE,
            "at": closed_at,
        }),
        json!({
            "kind": "failed_step",
            "plan_id": plan_id,
            "intent": INTENT,
            "correlation_id": CORRELATION,
            "step_index": 4,
            "action": "mcp.records.confirm",
            "event_ids": [id(7)],
            "message": FAILED_CONFIRM_MESSAGE,
            "at": closed_at,
        }),
        json!({
            "kind": "task_unfinished",
            "plan_id": plan_id,
            "intent": INTENT,
            "correlation_id": CORRELATION,
            "step_index": null,
            "action": "mcp.records.compute_forever",
            "event_ids": [id(6)],
            "message": UNFINISHED_MESSAGE,
            "at": closed_at,
        }),
    ];
    let mut rows = vec![
        (
            closed_at.as_str(),
            "FAILED STEP",
            "mcp.records.compute_fail",
            FAILED_TASK_MESSAGE,
        ),
        (
            closed_at.as_str(),
            "FAILED STEP",
            "mcp.records.confirm",
            FAILED_CONFIRM_MESSAGE,
        ),
        (
            closed_at.as_str(),
            "TASK UNFINISHED",
            "mcp.records.compute_forever",
            UNFINISHED_MESSAGE,
        ),
    ];
    let incomplete_row = (
        incomplete_at.as_str(),
        "INCOMPLETE CALL",
        "mcp.records.confirm",
        INCOMPLETE_MESSAGE,
    );
    // Newest first; the incomplete call (recorded just before the close)
    // comes first when both fell in the same millisecond.
    if incomplete_at == closed_at {
        expected.insert(0, incomplete);
        rows.insert(0, incomplete_row);
    } else {
        expected.push(incomplete);
        rows.push(incomplete_row);
    }
    assert_eq!(
        cli_json(&["findings"], dir),
        json!({ "findings": expected })
    );
    assert_eq!(findings_table(dir), table(&rows));
}

/// Without a plan: the call left waiting for input is an INCOMPLETE CALL
/// as soon as the session ends, and the task never seen finished a TASK
/// UNFINISHED once the correlation has been idle for the daemon's
/// `plan_idle_timeout_secs` (1 s here); both calls are unplanned.
#[test]
fn without_a_plan_the_abandoned_calls_are_flagged_when_the_session_ends_and_idles() {
    const NO_PLAN: &str = "records-no-plan";
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let config = temp.path().join("daemon.toml");
    std::fs::write(&config, "plan_idle_timeout_secs = 1\n").unwrap();
    let _daemon = common::start_daemon_with(&dir, &["--config", config.to_str().unwrap()], &[]);
    let (mut gateway, mut agent) = start_gateway(&dir);
    agent.correlation = Some(NO_PLAN);
    let handle = agent.call(1, "compute_forever", json!({"arguments": {}}));
    assert_eq!(handle, ok_reply(1, task("t-never", "working")));
    let confirm = agent.call(2, "confirm", json!({"arguments": {}}));
    assert_eq!(
        confirm,
        ok_reply(
            2,
            json!({"resultType": "input_required", "inputRequests": confirm_input(), "requestState": "c1"})
        )
    );
    // Apart in time from the task's call, so the findings' order (by time)
    // is fixed.
    std::thread::sleep(Duration::from_millis(50));
    agent.close();
    let status = gateway.0.wait().unwrap();
    assert!(status.success(), "the gateway exited with {status}");

    let events = events_of(&dir, NO_PLAN, 2);
    let session = events[0]["attributes"]["mcp.session_id"].as_str().unwrap();
    let attributes = |id: u64, tool: &str| {
        json!({
            "mcp.server": SERVER,
            "mcp.session_id": session,
            "jsonrpc.id": id.to_string(),
            "mcp.client.name": CLIENT,
            "mcp.client.version": "0.1.0",
            "mcp.protocol.version": "2026-07-28",
            "mcp.tool": tool,
        })
    };
    let mut forever = attributes(1, "compute_forever");
    forever["mcp.task.id"] = json!("t-never");
    forever["mcp.task.status"] = json!("working");
    let mut confirm = attributes(2, "confirm");
    confirm["mcp.rounds"] = json!(1);
    assert_eq!(
        events.iter().map(essentials).collect::<Vec<_>>(),
        vec![
            json!({
                "action": "mcp.records.compute_forever",
                "intent": "undeclared",
                "correlation_id": NO_PLAN,
                "status": "ok",
                "inputs": {},
                "output": task("t-never", "working"),
                "attributes": forever,
            }),
            json!({
                "action": "mcp.records.confirm",
                "intent": "undeclared",
                "correlation_id": NO_PLAN,
                "status": "error",
                "inputs": {},
                "output": {"rounds": [
                    {"requestId": 2, "inputRequests": confirm_input(), "requestState": "c1"},
                ]},
                "error": {
                    "name": "IncompleteCall",
                    "message": "the server asked for input (1 round) and the client never sent it: the session ended first",
                },
                "attributes": confirm,
            }),
        ]
    );

    // Once idle: the task too.
    let deadline = Instant::now() + DEADLINE;
    let findings = loop {
        let findings = cli_json(&["findings"], &dir);
        if findings.to_string().contains("task_unfinished") {
            break findings;
        }
        assert!(
            Instant::now() < deadline,
            "no task_unfinished after {DEADLINE:?}: {findings:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let forever_id = events[0]["event_id"].as_str().unwrap();
    let confirm_id = events[1]["event_id"].as_str().unwrap();
    let forever_at = events[0]["completed_at"].as_str().unwrap();
    let confirm_at = events[1]["completed_at"].as_str().unwrap();
    let unfinished = "mcp.records.compute_forever started task t-never and its outcome (completed, failed or cancelled) was never seen";
    assert_eq!(
        findings,
        json!({"findings": [
            {
                "kind": "task_unfinished",
                "plan_id": null,
                "intent": "undeclared",
                "correlation_id": NO_PLAN,
                "step_index": null,
                "action": "mcp.records.compute_forever",
                "event_ids": [forever_id],
                "message": unfinished,
                "at": confirm_at,
            },
            {
                "kind": "incomplete_call",
                "plan_id": null,
                "intent": "undeclared",
                "correlation_id": NO_PLAN,
                "step_index": null,
                "action": "mcp.records.confirm",
                "event_ids": [confirm_id],
                "message": INCOMPLETE_MESSAGE,
                "at": confirm_at,
            },
            {
                "kind": "unplanned_call",
                "plan_id": null,
                "intent": null,
                "correlation_id": NO_PLAN,
                "step_index": null,
                "action": "mcp.records.confirm",
                "event_ids": [confirm_id],
                "message": "mcp.records.confirm was called with no plan declared",
                "at": confirm_at,
            },
            {
                "kind": "unplanned_call",
                "plan_id": null,
                "intent": null,
                "correlation_id": NO_PLAN,
                "step_index": null,
                "action": "mcp.records.compute_forever",
                "event_ids": [forever_id],
                "message": "mcp.records.compute_forever was called with no plan declared",
                "at": forever_at,
            },
        ]})
    );
    assert_eq!(
        findings_table(&dir),
        table_of(
            NO_PLAN,
            &[
                (
                    confirm_at,
                    "TASK UNFINISHED",
                    "mcp.records.compute_forever",
                    unfinished
                ),
                (
                    confirm_at,
                    "INCOMPLETE CALL",
                    "mcp.records.confirm",
                    INCOMPLETE_MESSAGE
                ),
                (
                    confirm_at,
                    "UNPLANNED CALL",
                    "mcp.records.confirm",
                    "mcp.records.confirm was called with no plan declared"
                ),
                (
                    forever_at,
                    "UNPLANNED CALL",
                    "mcp.records.compute_forever",
                    "mcp.records.compute_forever was called with no plan declared"
                ),
            ]
        )
    );
}

/// The one line of `screen` holding `needle`.
fn line_with<'a>(screen: &'a str, needle: &str) -> &'a str {
    let lines: Vec<&str> = screen.lines().filter(|l| l.contains(needle)).collect();
    match lines.as_slice() {
        [line] => line,
        _ => panic!("not exactly one line with {needle:?}:\n{screen}"),
    }
}

/// The flag cell of a line (`! <codes>` in the compact column, or `·`).
fn flag_of(line: &str) -> String {
    match line.find("! ") {
        Some(at) => line[at..]
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
        None => "·".to_owned(),
    }
}

#[test]
fn the_tui_shows_the_incomplete_call_and_unfinished_task_flags() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let _daemon = start_daemon(&dir);
    record_session(&dir);
    // The session's end closed its plan.
    events(&dir, 9);

    let command = format!("{BIN} tui --data-dir '{}' --poll-ms 300", dir.display());
    let tmux = Tmux::start(&command, 160, 48);
    // The chains view (wide): the chain's flags by name.
    let screen = tmux.wait_for("the chains view with the chain", |s| {
        s.contains("1 Chains 1/1") && s.contains(CORRELATION)
    });
    let row = line_with(&screen, CORRELATION);
    assert!(
        row.contains("! failed,call,task"),
        "the chain row does not carry the failed, call and task flags:\n{screen}"
    );

    // The chain: its flags in words, and each flagged event's letters in
    // the timeline (F failed step, N incomplete call, T task unfinished).
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the chain detail", |s| {
        s.contains(&format!("Chain {CORRELATION}")) && s.contains("Timeline")
    });
    assert!(
        screen.contains("! flags: failed step, incomplete call, task unfinished"),
        "{screen}"
    );
    let timeline = screen
        .split_once("Timeline")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no timeline:\n{screen}"));
    for (action, flag, status) in [
        ("mcp.records.ask_name", "·", "✓ ok"),
        ("mcp.records.compute_ok", "·", "✓ ok"),
        ("mcp.records.compute_fail", "! F", "✓ ok"),
        ("mcp.records.compute_forever", "! T", "✓ ok"),
        ("mcp.records.confirm", "! FN", "✗ error"),
    ] {
        let line = line_with(timeline, action);
        assert_eq!(flag_of(line), flag, "{action}: {line}\n{screen}");
        assert!(line.contains(status), "{action}: {line}\n{screen}");
    }

    // The plan panel says what findings say: a task call ends as its task
    // did (step 3 failed, step 4 unfinished), completions are not calls
    // (no unplanned row). Each step's line names its tool and, for a task
    // call, how the task ended.
    let panel = screen
        .split_once("Timeline")
        .map(|(panel, _)| panel)
        .unwrap_or_else(|| panic!("no plan panel:\n{screen}"));
    for (step, label, tool, right) in [
        (1, "✓ done", "ask_name", "✓ ok"),
        (2, "✓ done", "compute_ok", "✓ task ok → #"),
        (3, "✗ failed", "compute_fail", "✗ task error → #"),
        (4, "… unfinished", "compute_forever", "… task unfinished"),
        (5, "✗ failed", "confirm", "✗ error"),
    ] {
        let line = line_with(panel, &format!("{step}. {label:<13} {tool} —"));
        assert!(line.contains(right), "step {step}: {line}\n{screen}");
    }
    assert!(
        !panel.contains("unplanned") && !panel.contains("not in plan") && !panel.contains(" + "),
        "the plan panel shows a call outside the plan:\n{screen}"
    );

    // The chains filter: `flag:call` and `flag:task` keep the chain,
    // `flag:unplanned` (a flag it does not have) leaves it out. Each key
    // waits for the screen the previous one leads to (an Escape followed
    // at once by a letter would read as Alt+letter).
    tmux.keys(&["Escape"]);
    tmux.wait_for("the chains view again", |s| {
        !s.contains("Timeline") && s.contains("INTENTS")
    });
    for (filter, shown) in [
        ("flag:call", "1 Chains 1/1"),
        ("flag:task", "1 Chains 1/1"),
        ("flag:unplanned", "1 Chains 0/1"),
    ] {
        tmux.keys(&["f"]);
        tmux.wait_for("the filter prompt", |s| s.contains("f filter: "));
        tmux.literal(filter);
        tmux.keys(&["Enter"]);
        let applied = format!("filter: {filter}");
        tmux.wait_for(&format!("the {filter} filter ({shown})"), |s| {
            s.contains(&applied)
                && !s.contains("f filter: ")
                && s.contains(shown)
                && s.contains(CORRELATION) == shown.ends_with("1/1")
        });
        tmux.keys(&["Escape"]);
        tmux.wait_for("the filter cleared", |s| {
            !s.contains("filter: flag:") && s.contains("1 Chains 1/1") && s.contains(CORRELATION)
        });
    }

    tmux.keys(&["q"]);
    tmux.wait_exit("q");
}

/// A 2025-era server request (`elicitation/create` sent by the server while
/// a `tools/call` waits) is part of that call's one event: output member
/// `serverRequests` with the request and the client's answer, attribute
/// `mcp.server_requests`; no event of its own.
#[test]
fn a_2025_server_request_is_part_of_the_call_it_was_made_for() {
    const FLOW: &str = "records-2025";
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let _daemon = start_daemon(dir);
    let (mut gateway, mut agent) = start_gateway(dir);
    agent.send(
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "agent-2025", "version": "3.1"}}}),
    );
    assert_eq!(agent.next()["result"]["protocolVersion"], "2025-11-25");
    agent.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    agent.send(
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "book", "arguments": {"room": "A"},
        "_meta": {"intentproof/correlationId": FLOW}}}),
    );
    let ask = json!({"message": "Which date?", "mode": "form", "requestedSchema": {
        "type": "object", "properties": {"date": {"type": "string"}}, "required": ["date"]}});
    assert_eq!(
        agent.next(),
        json!({"jsonrpc": "2.0", "id": "srv-1", "method": "elicitation/create", "params": ask})
    );
    let answer = json!({"action": "accept", "content": {"date": "2026-12-24"}});
    agent.send(&json!({"jsonrpc": "2.0", "id": "srv-1", "result": answer}));
    let booked = agent.next();
    assert_eq!(
        booked,
        ok_reply(
            1,
            json!({"content": [{"type": "text", "text": "Booked for 2026-12-24."}], "isError": false, "resultType": "complete"})
        )
    );
    agent.close();
    let status = gateway.0.wait().unwrap();
    assert!(status.success(), "the gateway exited with {status}");

    let events = events_of(dir, FLOW, 1);
    let session = events[0]["attributes"]["mcp.session_id"].as_str().unwrap();
    assert_eq!(
        essentials(&events[0]),
        json!({
            "action": "mcp.records.book",
            "intent": "undeclared",
            "correlation_id": FLOW,
            "status": "ok",
            "inputs": {"room": "A"},
            "output": {
                "content": [{"type": "text", "text": "Booked for 2026-12-24."}],
                "isError": false,
                "serverRequests": [{"requestId": "srv-1", "method": "elicitation/create",
                                    "params": ask, "result": answer}]
            },
            "attributes": {
                "mcp.server": SERVER,
                "mcp.session_id": session,
                "jsonrpc.id": "1",
                "mcp.client.name": "agent-2025",
                "mcp.client.version": "3.1",
                "mcp.protocol.version": "2025-11-25",
                "mcp.tool": "book",
                "mcp.server_requests": 1
            }
        })
    );
}
