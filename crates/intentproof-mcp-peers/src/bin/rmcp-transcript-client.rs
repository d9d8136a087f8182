//! A normalized transcript of one fixed session with an MCP fixture server
//! (tests/mcp2026/fixture_server.py or rmcp-fixture-server: the same tools,
//! resource and prompt), seen by an rmcp 3.x client at a chosen revision.
//! The rmcp counterpart of tests/mcp2026/transcript.py.
//!
//! Usage:
//!   rmcp-transcript-client --mode MODE [--extra-tool NAME]... stdio -- <command> [args...]
//!   rmcp-transcript-client --mode MODE [--extra-tool NAME]... http <url>
//!
//! MODE: 2026-07-28 (rmcp's discover lifecycle: `server/discover`, then
//! stateless requests with the `_meta` envelope), 2025-11-25 (the
//! `initialize` handshake), or auto (discover, falling back to initialize).
//!
//! Prints one canonical JSON line (sorted keys) per step: what the client
//! saw (results and errors), with volatile values replaced by placeholders
//! (task ids, timestamps). A transparent gateway gives byte-identical output.
//! Exit 0 with the transcript on stdout; 1 with `rmcp-transcript-client:
//! FAIL: <step>: <why>` on stderr when a check fails; 2 on bad usage.
//!
//! --extra-tool NAME: NAME must be in tools/list (a gateway's own tool, e.g.
//! intentproof_declare_plan); it is checked, then left out, and nothing else is.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::{
    ClientHandler, ClientLifecycleMode, ClientServiceExt, ErrorData, RoleClient, ServiceError,
    model::*,
    service::{RequestContext, RunningService},
    transport::{StreamableHttpClientTransport, TokioChildProcess},
};
use serde_json::{Value, json};

const PROG: &str = "rmcp-transcript-client";
const CLIENT_NAME: &str = "intentproof-rmcp-transcript";
const CLIENT_VERSION: &str = "1.0.0";
const TASKS: &str = "io.modelcontextprotocol/tasks";
const ELICITED_NAME: &str = "Ada";
const POLL: Duration = Duration::from_millis(100);

fn step_timeout() -> Duration {
    let secs = std::env::var("INTENTPROOF_MCP_STEP_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(30.0);
    Duration::from_secs_f64(secs)
}

struct Fail(String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail(e.to_string())
    }
}

/// The client side: answers elicitations with a fixed name and remembers them
/// (a 2025 server's `elicitation/create`, or a 2026 `input_required` round,
/// which rmcp fulfils through this same handler).
#[derive(Clone)]
struct Transcriber {
    config: ClientConfig,
    elicitations: Arc<Mutex<Vec<Value>>>,
}

impl ClientHandler for Transcriber {
    fn get_info(&self) -> ClientConfig {
        self.config.clone()
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.elicitations
            .lock()
            .unwrap()
            .push(serde_json::to_value(&request).unwrap_or(Value::Null));
        Ok(serde_json::from_value(json!({
            "action": "accept",
            "content": {"name": ELICITED_NAME}
        }))
        .expect("an ElicitResult"))
    }
}

// ---- normalization ----------------------------------------------------------

struct Normalizer {
    task_ids: Vec<(String, String)>,
    timestamp: regex::Regex,
}

impl Normalizer {
    fn new() -> Self {
        Normalizer {
            task_ids: Vec::new(),
            timestamp: regex::Regex::new(
                r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?",
            )
            .unwrap(),
        }
    }

    fn task_placeholder(&mut self, id: &str) -> String {
        if let Some((_, p)) = self.task_ids.iter().find(|(real, _)| real == id) {
            return p.clone();
        }
        let p = format!("<task-id-{}>", self.task_ids.len() + 1);
        self.task_ids.push((id.to_owned(), p.clone()));
        p
    }

    /// Sorted keys (a BTreeMap-backed object whatever serde_json's features),
    /// task ids and timestamps replaced.
    fn normalize(&mut self, value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut out: BTreeMap<String, Value> = BTreeMap::new();
                for (k, v) in map {
                    let v = match (k.as_str(), v) {
                        ("taskId", Value::String(id)) => Value::String(self.task_placeholder(id)),
                        _ => self.normalize(v),
                    };
                    out.insert(k.clone(), v);
                }
                Value::Object(out.into_iter().collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(|v| self.normalize(v)).collect()),
            Value::String(s) => {
                let mut s = s.clone();
                for (real, placeholder) in &self.task_ids {
                    s = s.replace(real, placeholder);
                }
                Value::String(self.timestamp.replace_all(&s, "<timestamp>").into_owned())
            }
            other => other.clone(),
        }
    }
}

/// Canonical text of a normalized value: keys sorted at every level.
fn canonical(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let sorted: BTreeMap<&String, &Value> = map.iter().collect();
                out.push('{');
                for (i, (k, v)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    write(v, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(v, out);
                }
                out.push(']');
            }
            other => out.push_str(&serde_json::to_string(other).unwrap()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn dump<T: serde::Serialize>(x: &T) -> Value {
    serde_json::to_value(x).unwrap_or_else(|e| json!({"unserializable": e.to_string()}))
}

fn error_of(e: &ServiceError) -> Value {
    match e {
        ServiceError::McpError(err) => {
            let mut error = json!({"code": err.code.0, "message": err.message});
            if let Some(data) = &err.data {
                error["data"] = data.clone();
            }
            json!({"error": error})
        }
        other => {
            json!({"exception": format!("{other:?}").split(['(', ' ', '{']).next().unwrap_or(""), "message": other.to_string()})
        }
    }
}

fn first_text(v: &Value) -> Option<&str> {
    v.pointer("/result/content/0/text").and_then(Value::as_str)
}

// ---- the session --------------------------------------------------------------

struct Run {
    client: Arc<RunningService<RoleClient, Transcriber>>,
    elicitations: Arc<Mutex<Vec<Value>>>,
    norm: Normalizer,
    extra_tools: Vec<String>,
}

impl Run {
    async fn step<F, Fut>(&mut self, name: &str, f: F) -> Result<(), Fail>
    where
        F: FnOnce(Arc<RunningService<RoleClient, Transcriber>>) -> Fut,
        Fut: Future<Output = Result<Value, Fail>>,
    {
        let within = step_timeout();
        let body = match tokio::time::timeout(within, f(self.client.clone())).await {
            Ok(Ok(body)) => body,
            Ok(Err(Fail(why))) => return Err(Fail(format!("step {name}: {why}"))),
            Err(_) => {
                return Err(Fail(format!(
                    "step {name}: no answer within {}s",
                    within.as_secs_f64()
                )));
            }
        };
        let mut entry = body;
        entry["step"] = json!(name);
        let elicited: Vec<Value> = std::mem::take(&mut *self.elicitations.lock().unwrap());
        if !elicited.is_empty() {
            entry["elicitations"] = Value::Array(elicited);
        }
        let line = canonical(&self.norm.normalize(&entry));
        println!("{line}");
        Ok(())
    }
}

async fn call(client: &RunningService<RoleClient, Transcriber>, tool: &str, args: Value) -> Value {
    let params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    match client.call_tool(params).await {
        Ok(result) => json!({"result": dump(&result)}),
        Err(e) => error_of(&e),
    }
}

async fn drive(run: &mut Run) -> Result<(), Fail> {
    run.step("connect", |c| {
        let info = c.peer_info().map(|i| dump(&*i));
        async move { Ok(json!({"peer": info})) }
    })
    .await?;

    let extra = run.extra_tools.clone();
    run.step("tools/list", |c| async move {
        let tools = c.list_all_tools().await.map_err(|e| Fail(format!("{e}")))?;
        let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        names.sort();
        let mut dedup = names.clone();
        dedup.dedup();
        if dedup.len() != names.len() {
            return Err(Fail(format!(
                "duplicate tool names in tools/list: {names:?}"
            )));
        }
        for t in &extra {
            if !names.contains(t) {
                return Err(Fail(format!(
                    "expected extra tool {t:?} is not in tools/list ({names:?})"
                )));
            }
        }
        let mut kept: Vec<&Tool> = tools
            .iter()
            .filter(|t| !extra.iter().any(|x| *x == *t.name))
            .collect();
        kept.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(json!({
            "names": kept.iter().map(|t| t.name.to_string()).collect::<Vec<_>>(),
            "tools": kept.iter().map(|t| dump(*t)).collect::<Vec<_>>(),
        }))
    })
    .await?;

    run.step("tools/call echo", |c| async move {
        let r = call(&c, "echo", json!({"text": "hello"})).await;
        if r.pointer("/result/content") != Some(&json!([{"type": "text", "text": "hello"}])) {
            return Err(Fail(format!("unexpected echo result {r}")));
        }
        Ok(r)
    })
    .await?;

    let elicitations = run.elicitations.clone();
    run.step("tools/call ask_name", |c| async move {
        let r = call(&c, "ask_name", json!({})).await;
        let want = format!("Hello, {ELICITED_NAME}!");
        if first_text(&r) != Some(want.as_str()) {
            return Err(Fail(format!("unexpected ask_name result {r}")));
        }
        let n = elicitations.lock().unwrap().len();
        if n != 1 {
            return Err(Fail(format!("expected one elicitation, got {n}")));
        }
        Ok(r)
    })
    .await?;

    run.step("tools/call always_fails", |c| async move {
        let r = call(&c, "always_fails", json!({})).await;
        if r.pointer("/result/isError") != Some(&json!(true)) {
            return Err(Fail(format!("expected an isError result, got {r}")));
        }
        Ok(r)
    })
    .await?;

    run.step("tools/call where", |c| async move {
        let r = call(&c, "where", json!({"region": "eu-west-1"})).await;
        if first_text(&r) != Some("region eu-west-1") {
            return Err(Fail(format!("unexpected where result {r}")));
        }
        Ok(r)
    })
    .await?;

    run.step("task slow_compute", |c| async move {
        let params = CallToolRequestParams::new("slow_compute")
            .with_arguments(json!({"seconds": 0.2}).as_object().cloned().unwrap());
        let first = match c.call_tool_once(params).await {
            Ok(first) => first,
            Err(e) => return Ok(error_of(&e)),
        };
        let (created, task_id) = match &first {
            CallToolResponse::Task(created) => (dump(created), created.task.task_id.clone()),
            CallToolResponse::Complete(result) => return Ok(json!({"result": dump(result)})),
            CallToolResponse::InputRequired(r) => {
                return Err(Fail(format!("unexpected input_required {}", dump(r))));
            }
            _ => return Err(Fail("unexpected tools/call response kind".into())),
        };
        let mut out = json!({"result": created});
        for _ in 0..200 {
            tokio::time::sleep(POLL).await;
            match c.peer().get_task(GetTaskParams::new(task_id.clone())).await {
                Err(e) => {
                    out["tasks/get"] = error_of(&e);
                    return Ok(out);
                }
                Ok(got) => {
                    let status = got.task.status();
                    if status == TaskStatus::Working {
                        continue;
                    }
                    out["tasks/get"] = json!({"result": dump(&got)});
                    if status != TaskStatus::Completed {
                        return Err(Fail(format!("task ended {status:?}: {}", dump(&got))));
                    }
                    return Ok(out);
                }
            }
        }
        Err(Fail("task still working after 200 polls".into()))
    })
    .await?;

    run.step("resources/list+read", |c| async move {
        let listed = c.list_resources(None).await?;
        let uris: Vec<String> = listed.resources.iter().map(|r| r.uri.to_string()).collect();
        let read = c
            .read_resource(ReadResourceRequestParams::new("fixture://readme"))
            .await?;
        Ok(json!({"listed": dump(&listed), "uris": uris, "read": dump(&read)}))
    })
    .await?;

    run.step("prompts/list+get", |c| async move {
        let listed = c.list_prompts(None).await?;
        let got = c
            .get_prompt(
                GetPromptRequestParams::new("greeting")
                    .with_arguments(json!({"name": "Ada"}).as_object().cloned().unwrap()),
            )
            .await?;
        Ok(json!({"listed": dump(&listed), "result": dump(&got)}))
    })
    .await?;

    run.step("tools/call no_such_tool", |c| async move {
        Ok(call(&c, "no_such_tool", json!({})).await)
    })
    .await?;

    run.step("resources/read fixture://missing", |c| async move {
        Ok(
            match c
                .read_resource(ReadResourceRequestParams::new("fixture://missing"))
                .await
            {
                Ok(r) => json!({"result": dump(&r)}),
                Err(e) => error_of(&e),
            },
        )
    })
    .await?;
    Ok(())
}

fn client_config(mode: &str) -> ClientConfig {
    let capabilities: ClientCapabilities = serde_json::from_value(json!({
        "elicitation": {"form": {}},
        "extensions": {TASKS: {}}
    }))
    .expect("client capabilities");
    let version = if mode == "2025-11-25" {
        ProtocolVersion::V_2025_11_25
    } else {
        ProtocolVersion::LATEST_WITH_INITIALIZE
    };
    ClientConfig::new(
        capabilities,
        Implementation::new(CLIENT_NAME, CLIENT_VERSION),
    )
    .with_protocol_version(version)
}

fn lifecycle(mode: &str) -> ClientLifecycleMode {
    match mode {
        "2026-07-28" => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
        "auto" => ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        },
        _ => ClientLifecycleMode::Initialize,
    }
}

async fn amain(
    mode: String,
    transport: String,
    target: Vec<String>,
    extra: Vec<String>,
) -> Result<(), Fail> {
    let elicitations = Arc::new(Mutex::new(Vec::new()));
    let handler = Transcriber {
        config: client_config(&mode),
        elicitations: elicitations.clone(),
    };
    let within = step_timeout();
    let client = if transport == "stdio" {
        let mut cmd = tokio::process::Command::new(&target[0]);
        cmd.args(&target[1..]);
        let child = TokioChildProcess::new(cmd)
            .map_err(|e| Fail(format!("cannot start {:?}: {e}", target[0])))?;
        tokio::time::timeout(
            within,
            handler.serve_with_lifecycle(child, lifecycle(&mode)),
        )
        .await
        .map_err(|_| Fail("connect: no answer in time".into()))?
        .map_err(|e| Fail(format!("connect: {e}")))?
    } else {
        let http = StreamableHttpClientTransport::from_uri(target[0].clone());
        tokio::time::timeout(within, handler.serve_with_lifecycle(http, lifecycle(&mode)))
            .await
            .map_err(|_| Fail("connect: no answer in time".into()))?
            .map_err(|e| Fail(format!("connect: {e}")))?
    };
    let mut run = Run {
        client: Arc::new(client),
        elicitations,
        norm: Normalizer::new(),
        extra_tools: extra,
    };
    let outcome = drive(&mut run).await;
    if let Ok(client) = Arc::try_unwrap(run.client) {
        let _ = tokio::time::timeout(Duration::from_secs(10), client.cancel()).await;
    }
    outcome
}

fn main() {
    let usage = format!(
        "usage: {PROG} --mode 2026-07-28|2025-11-25|auto [--extra-tool NAME]... stdio -- <command> [args...]\n       {PROG} --mode 2026-07-28|2025-11-25|auto [--extra-tool NAME]... http <url>"
    );
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut mode = None;
    let mut extra = Vec::new();
    let mut i = 0;
    while i < argv.len() && argv[i] != "stdio" && argv[i] != "http" {
        match argv[i].as_str() {
            "--mode" if i + 1 < argv.len() => {
                mode = Some(argv[i + 1].clone());
                i += 2;
            }
            "--extra-tool" if i + 1 < argv.len() => {
                extra.push(argv[i + 1].clone());
                i += 2;
            }
            o => {
                eprintln!("{PROG}: unknown option {o}\n{usage}");
                std::process::exit(2);
            }
        }
    }
    let Some(mode) = mode.filter(|m| ["2026-07-28", "2025-11-25", "auto"].contains(&m.as_str()))
    else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    if i >= argv.len() {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let transport = argv[i].clone();
    let mut rest: Vec<String> = argv[i + 1..].to_vec();
    if transport == "stdio" && rest.first().map(String::as_str) == Some("--") {
        rest.remove(0);
    }
    if rest.is_empty() || (transport == "http" && rest.len() != 1) {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let outcome = runtime.block_on(amain(mode, transport, rest, extra));
    runtime.shutdown_timeout(Duration::from_secs(2));
    if let Err(Fail(why)) = outcome {
        eprintln!("{PROG}: FAIL: {why}");
        std::process::exit(1);
    }
}
