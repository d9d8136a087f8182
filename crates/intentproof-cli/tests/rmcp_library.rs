//! `intentproof-rmcp` (rmcp agents and servers recording in-process) against
//! the real daemon and the real gateway.
//!
//! 1. The crate's two examples (`crates/intentproof-rmcp/examples/`,
//!    compiled in here from their own files) run against `intentproof
//!    serve`; what they print is compared exactly.
//! 2. The same calls, at MCP 2025-11-25 and at 2026-07-28, made three ways
//!    against the same rmcp server (`rmcp-fixture-server` of
//!    `crates/intentproof-mcp-peers`, built as `mcp_rmcp.rs` builds it):
//!    (a) a plain rmcp client through the gateway's stdio relay
//!    (`intentproof mcp --name fixture -- rmcp-fixture-server stdio`);
//!    (b) the same client as an `intentproof_rmcp::RecordedClient`,
//!    straight to the server, recording in-process;
//!    (c) the plain client straight to an `intentproof_rmcp::Recorded`
//!    server (it hands each call on to the fixture, so it answers what the
//!    fixture answers), recording in-process.
//!    All three deliver to one daemon; the stored events of the three flows
//!    are compared field by field: see [`normalized`] for exactly what
//!    differs by construction and is replaced before comparing.

mod common;

// Each example brings its own copy of `examples/common` (they are separate
// programs); here both are compiled into one test binary.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../intentproof-rmcp/examples/rmcp_agent.rs"]
mod rmcp_agent;
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../intentproof-rmcp/examples/rmcp_server.rs"]
mod rmcp_server;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{BIN, Stopped, cli_json, daemon_listen, start_daemon, workspace_root};
use intentproof::{
    BodyFormat, Durability, Exporter, HashKey, HttpExporter, HttpExporterConfig, InstanceKey,
    IntentProofClient, IntentProofConfig, PlanDeclaration, RedactionPolicy, Redactor, Sealer,
};
use intentproof_rmcp::rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientCapabilities, ClientConfig, ErrorData,
    GetPromptRequestParams, GetPromptResponse, Implementation, ProtocolVersion,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use intentproof_rmcp::rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, RequestContext, RunningService,
};
use intentproof_rmcp::rmcp::transport::TokioChildProcess;
use intentproof_rmcp::rmcp::{
    ClientHandler, Peer, RoleClient, RoleServer, ServerHandler, ServiceError, ServiceExt,
};
use intentproof_rmcp::{Recorded, RecordedClient, RecorderConfig, Recording};
use serde_json::{Value, json};

// ---- 1. the examples ---------------------------------------------------------------------

const AGENT_EXAMPLE: &str = r#"== MCP 2025-11-25: an rmcp agent recording its own calls ==
server offers: refund_payment, send_receipt_email, lookup_order, intentproof_declare_plan
plan declared: "refund order ORD-1042 and email the receipt" in flow refund-ORD-1042-2025-11-25
refund_payment -> Refunded 49.99 for ORD-1042: re_ord_1042
the agent stops here: send_receipt_email is never called
recorded by the daemon:
  ok    intentproof.plan.declare         refund order ORD-1042 and email the receipt
  ok    mcp.payments.refund_payment      Refund the customer's card
        card_number stored as "***************4242"
  ok    intentproof.plan.close           refund order ORD-1042 and email the receipt
bundle: ✓ pass: bundle.verify_pass (exit 0), 3 events, 3 event signatures valid
finding: INCOMPLETE INTENT: Step 2 `mcp.payments.send_receipt_email` (Email the customer the refund receipt) never ran: intent "refund order ORD-1042 and email the receipt" is incomplete.
== MCP 2026-07-28: an rmcp agent recording its own calls ==
server offers: refund_payment, send_receipt_email, lookup_order, intentproof_declare_plan
plan declared: "refund order ORD-1042 and email the receipt" in flow refund-ORD-1042-2026-07-28
refund_payment -> Refunded 49.99 for ORD-1042: re_ord_1042
the agent stops here: send_receipt_email is never called
recorded by the daemon:
  ok    intentproof.plan.declare         refund order ORD-1042 and email the receipt
  ok    mcp.payments.refund_payment      Refund the customer's card
        card_number stored as "***************4242"
  ok    intentproof.plan.close           refund order ORD-1042 and email the receipt
bundle: ✓ pass: bundle.verify_pass (exit 0), 3 events, 3 event signatures valid
finding: INCOMPLETE INTENT: Step 2 `mcp.payments.send_receipt_email` (Email the customer the refund receipt) never ran: intent "refund order ORD-1042 and email the receipt" is incomplete.
"#;

const SERVER_EXAMPLE: &str = r#"== MCP 2025-11-25: an rmcp server recording what it handles ==
server offers: refund_payment, send_receipt_email, lookup_order, intentproof_declare_plan
plan tool answered by the server's recorder: 2 steps in flow desk-ORD-7-2025-11-25
refund_payment -> Refunded 12.50 for ORD-7: re_ord_7
the client leaves without calling send_receipt_email
recorded by the daemon:
  ok    intentproof.plan.declare         refund order ORD-7 and email the receipt
  ok    mcp.payments.refund_payment      Refund ORD-7 to the card it was paid with
        card_number stored as "***************4444"
  ok    intentproof.plan.close           refund order ORD-7 and email the receipt
bundle: ✓ pass: bundle.verify_pass (exit 0), 3 events, 3 event signatures valid
finding: INCOMPLETE INTENT: Step 2 `mcp.payments.send_receipt_email` (Email the customer the refund receipt) never ran: intent "refund order ORD-7 and email the receipt" is incomplete.
== MCP 2026-07-28: an rmcp server recording what it handles ==
server offers: refund_payment, send_receipt_email, lookup_order, intentproof_declare_plan
plan tool answered by the server's recorder: 2 steps in flow desk-ORD-7-2026-07-28
refund_payment -> Refunded 12.50 for ORD-7: re_ord_7
the client leaves without calling send_receipt_email
recorded by the daemon:
  ok    intentproof.plan.declare         refund order ORD-7 and email the receipt
  ok    mcp.payments.refund_payment      Refund ORD-7 to the card it was paid with
        card_number stored as "***************4444"
  ok    intentproof.plan.close           refund order ORD-7 and email the receipt
bundle: ✓ pass: bundle.verify_pass (exit 0), 3 events, 3 event signatures valid
finding: INCOMPLETE INTENT: Step 2 `mcp.payments.send_receipt_email` (Email the customer the refund receipt) never ran: intent "refund order ORD-7 and email the receipt" is incomplete.
"#;

#[test]
fn the_rmcp_agent_example_prints_exactly_this() {
    let printed = rmcp_agent::run(Path::new(BIN)).unwrap();
    assert_eq!(printed, AGENT_EXAMPLE);
    // The README shows this output, after the command that prints it.
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let shown = readme
        .split_once("<!-- rmcp-agent:output -->\n```text\n")
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .map(|(block, _)| block)
        .expect("README.md shows the rmcp agent example's output");
    assert_eq!(
        shown, AGENT_EXAMPLE,
        "README.md must show what the example prints"
    );
    assert!(
        readme.contains(
            "INTENTPROOF_BIN=target/debug/intentproof cargo run -q -p intentproof-rmcp --example rmcp_agent\n"
        ),
        "README.md must give the command that runs the example"
    );
}

#[test]
fn the_rmcp_server_example_prints_exactly_this() {
    let printed = rmcp_server::run(Path::new(BIN)).unwrap();
    assert_eq!(printed, SERVER_EXAMPLE);
}

// ---- 2. gateway vs in-process: the peers ---------------------------------------------------

const SERVER: &str = "rmcp-fixture-server";

/// The directory holding `rmcp-fixture-server` (built once per test
/// process, see `common::rmcp_peers_dir`).
fn peers_dir() -> &'static Path {
    common::rmcp_peers_dir()
}

fn fixture_command() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(peers_dir().join(SERVER));
    cmd.arg("stdio");
    cmd
}

/// The client of all three runs: it names itself, nothing else.
#[derive(Clone)]
struct Agent;

impl ClientHandler for Agent {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("equality-agent", "2.0.0"),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }
}

fn lifecycle(revision: &str) -> ClientLifecycleMode {
    match revision {
        "2026-07-28" => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
        _ => ClientLifecycleMode::Initialize,
    }
}

/// A server handing every call on to the fixture (an rmcp client of the
/// same revision): what (c) wraps, so that it answers what the fixture
/// answers.
#[derive(Clone)]
struct Forward {
    upstream: Peer<RoleClient>,
}

fn forwarded(error: ServiceError) -> ErrorData {
    match error {
        ServiceError::McpError(error) => error,
        other => ErrorData::internal_error(other.to_string(), None),
    }
}

impl ServerHandler for Forward {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.upstream
            .call_tool_once(request)
            .await
            .map_err(forwarded)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.upstream
            .read_resource_once(request)
            .await
            .map_err(forwarded)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.upstream
            .get_prompt_once(request)
            .await
            .map_err(forwarded)
    }
}

// ---- 2. the calls ------------------------------------------------------------------------

fn plan() -> PlanDeclaration {
    PlanDeclaration::new("greet, then find the region")
        .step("echo", "Say hello")
        .step("where", "Find the region")
}

fn arguments(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("arguments are an object"),
    }
}

/// What each call answered, as the client saw it (the same three ways).
type Answers = Vec<Value>;

fn seen<T: serde::Serialize>(answer: Result<T, ServiceError>) -> Value {
    match answer {
        Ok(result) => json!({"result": serde_json::to_value(result).unwrap()}),
        Err(ServiceError::McpError(error)) => {
            json!({"error": {"code": error.code.0, "message": error.message}})
        }
        Err(other) => panic!("transport failure: {other}"),
    }
}

/// The fixed calls after the plan: a tool that answers, one that answers
/// `isError`, one that does not exist (a JSON-RPC error), a resource, a
/// prompt. The plan's second step (`where`) is never called.
macro_rules! the_calls {
    ($client:expr) => {{
        let client = $client;
        vec![
            seen(client.call_tool(CallToolRequestParams::new("echo").with_arguments(arguments(json!({"text": "hello"})))).await),
            seen(client.call_tool(CallToolRequestParams::new("always_fails")).await),
            seen(client.call_tool(CallToolRequestParams::new("no_such_tool").with_arguments(arguments(json!({"x": 1})))).await),
            seen(client.read_resource(ReadResourceRequestParams::new("fixture://readme")).await),
            seen(client.get_prompt(GetPromptRequestParams::new("greeting").with_arguments(arguments(json!({"name": "Ada"})))).await),
        ]
    }};
}

/// The plan declared by a plain client: a call of the plan tool.
async fn declare_plainly(client: &RunningService<RoleClient, Agent>) -> String {
    let answer = client
        .call_tool(
            CallToolRequestParams::new(intentproof_rmcp::DEFAULT_PLAN_TOOL)
                .with_arguments(arguments(plan().arguments())),
        )
        .await
        .unwrap();
    answer.structured_content.unwrap()["correlation_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The sink of an in-process recording: what the stdio gateway's shipper
/// does (redaction with the data dir's policy and key, sealing with an
/// instance key of its own that the daemon trusts, batch delivery with the
/// daemon token).
fn sink(data: &Path, outbox: &Path) -> IntentProofClient {
    let key = InstanceKey::generate().unwrap();
    let trusted = Command::new(BIN)
        .args([
            "keys",
            "trust",
            key.instance_id(),
            &key.public_key_base64(),
            "--data-dir",
        ])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    let token = std::fs::read_to_string(data.join("token")).unwrap();
    let http = HttpExporter::new(HttpExporterConfig {
        headers: vec![("Authorization".into(), format!("Bearer {}", token.trim()))],
        format: BodyFormat::BareV1,
        ..HttpExporterConfig::new(format!("http://{}/v1/events", daemon_listen(data)))
    })
    .unwrap();
    let redactor = Redactor::new(
        RedactionPolicy::default_policy(),
        HashKey::load_or_create(data).unwrap(),
    );
    IntentProofClient::try_new(
        IntentProofConfig::default()
            .redactor(Arc::new(redactor))
            .signer(Arc::new(Sealer::new(key)))
            .exporters(vec![Arc::new(http) as Arc<dyn Exporter>])
            .durability(Durability::Local {
                dir: outbox.to_owned(),
            }),
    )
    .unwrap()
}

/// (a) through `intentproof mcp`: the flow's correlation id and answers.
async fn through_the_gateway(revision: &str, data: &Path) -> (String, Answers) {
    let mut gateway = tokio::process::Command::new(BIN);
    gateway
        .args(["mcp", "--name", "fixture", "--no-autostart", "--data-dir"])
        .arg(data)
        .arg("--")
        .arg(peers_dir().join(SERVER))
        .arg("stdio")
        .env_remove("INTENTPROOF_SERVER")
        .env_remove("INTENTPROOF_INGEST_TOKEN");
    let transport = TokioChildProcess::new(gateway).unwrap();
    let client = Agent
        .serve_with_lifecycle(transport, lifecycle(revision))
        .await
        .unwrap();
    let correlation = declare_plainly(&client).await;
    let answers = the_calls!(&client);
    // Closing stdin ends the gateway's session (the plan closes); it then
    // delivers and exits, which `cancel` waits for.
    client.cancel().await.unwrap();
    (correlation, answers)
}

/// (b) an `intentproof_rmcp::RecordedClient` straight to the server.
async fn recorded_client(revision: &str, data: &Path, outbox: &Path) -> (String, Answers) {
    let sink = sink(data, outbox);
    let recording = Recording::new(RecorderConfig::new("fixture"), sink.clone());
    let transport = TokioChildProcess::new(fixture_command()).unwrap();
    let client =
        RecordedClient::serve_with_lifecycle(Agent, transport, lifecycle(revision), recording)
            .await
            .unwrap();
    let correlation = client.declare_plan(&plan()).await.unwrap().correlation_id;
    let answers = the_calls!(&client);
    client.close().await.unwrap();
    sink.flush().await;
    (correlation, answers)
}

/// (c) a plain client straight to an `intentproof_rmcp::Recorded` server.
async fn recorded_server(revision: &str, data: &Path, outbox: &Path) -> (String, Answers) {
    let sink = sink(data, outbox);
    let recording = Recording::new(RecorderConfig::new("fixture"), sink.clone());
    let upstream = Agent
        .serve_with_lifecycle(
            TokioChildProcess::new(fixture_command()).unwrap(),
            lifecycle(revision),
        )
        .await
        .unwrap();
    let forward = Forward {
        upstream: upstream.peer().clone(),
    };
    let (client_end, server_end) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn({
        let recording = recording.clone();
        async move {
            let server = Recorded::new(forward, recording.clone())
                .serve(server_end)
                .await
                .unwrap();
            server.waiting().await.unwrap();
            recording.end();
        }
    });
    let client = Agent
        .serve_with_lifecycle(client_end, lifecycle(revision))
        .await
        .unwrap();
    let correlation = declare_plainly(&client).await;
    let answers = the_calls!(&client);
    client.cancel().await.unwrap();
    server.await.unwrap();
    drop(recording);
    upstream.cancel().await.unwrap();
    sink.flush().await;
    (correlation, answers)
}

// ---- 2. the comparison ---------------------------------------------------------------------

/// The events the daemon on `data` stores in `correlation`, once there are
/// `count` (the gateway delivers after the session; bounded wait).
fn stored(data: &Path, correlation: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = cli_json(
            &["events", "--correlation", correlation, "--limit", "500"],
            data,
        );
        let events: Vec<Value> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["event"].clone())
            .collect();
        if events.len() >= count {
            return events;
        }
        assert!(Instant::now() < deadline, "{correlation}: {events:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Replaces every string equal to a key of `ids` by its value.
fn replace_ids(value: &mut Value, ids: &BTreeMap<String, &str>) {
    match value {
        Value::String(s) => {
            if let Some(placeholder) = ids.get(s.as_str()) {
                *s = (*placeholder).to_owned();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| replace_ids(v, ids)),
        Value::Object(map) => map.values_mut().for_each(|v| replace_ids(v, ids)),
        _ => {}
    }
}

/// One flow's stored events, with what differs between any two recordings
/// by construction replaced:
///
/// - fresh per event: `event_id`; `started_at`, `completed_at` and
///   `duration_ms` (times), removed;
/// - the signer: `instance_id` and `key_id` (the gateway process's key vs
///   the in-process `Sealer`'s), `signature`, `prev_event_hash` (it hashes
///   the previous event, ids and times included), removed;
/// - fresh per session: the session id (attribute `mcp.session_id`), the
///   plan id (attribute `intentproof.plan.id`, the declaration's output,
///   the close event's inputs) and the plan's correlation id (each event's
///   `correlation_id`, the declaration's output): replaced, wherever they
///   appear as a whole string, by `<session>`, `<plan>` and
///   `<correlation>`.
///
/// Everything else is compared as stored: intent, action, inputs, output,
/// status, error, every other attribute (`jsonrpc.id`, `mcp.client.*`,
/// `mcp.protocol.version`, `mcp.server`, `mcp.tool`,
/// `intentproof.plan.step`, ...), `chain_position`, the redaction summary
/// and the rest of the v1 form.
fn normalized(events: &[Value], correlation: &str) -> Vec<Value> {
    let session = events[0]["attributes"]["mcp.session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let plan = events[0]["attributes"]["intentproof.plan.id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ids: BTreeMap<String, &str> = [
        (session, "<session>"),
        (plan, "<plan>"),
        (correlation.to_owned(), "<correlation>"),
    ]
    .into_iter()
    .collect();
    events
        .iter()
        .map(|event| {
            let mut event = event.clone();
            let object = event.as_object_mut().unwrap();
            for field in [
                "event_id",
                "started_at",
                "completed_at",
                "duration_ms",
                "instance_id",
                "key_id",
                "signature",
                "prev_event_hash",
            ] {
                object.remove(field);
            }
            // The RecordedClient puts a W3C traceparent of its own in each
            // request's _meta (RecordedClient::flow_meta), which its record
            // keeps; the plain agents of the other two paths send none.
            if let Some(attributes) = object.get_mut("attributes").and_then(Value::as_object_mut) {
                attributes.remove("intentproof.traceparent");
            }
            replace_ids(&mut event, &ids);
            event
        })
        .collect()
}

/// Fails naming the first field of the first event that differs.
fn assert_same_events(what: &str, expected: &[Value], actual: &[Value]) {
    let actions = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["action"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    assert_eq!(
        actions(actual),
        actions(expected),
        "{what}: not the same events"
    );
    for (i, (want, got)) in expected.iter().zip(actual).enumerate() {
        let (want, got) = (want.as_object().unwrap(), got.as_object().unwrap());
        let fields: std::collections::BTreeSet<&String> = want.keys().chain(got.keys()).collect();
        for field in fields {
            assert_eq!(
                got.get(field),
                want.get(field),
                "{what}: event {i} ({}) differs in `{field}`",
                want["action"]
            );
        }
    }
}

fn gateway_and_wrappers_record_the_same(revision: &str) {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let _daemon: Stopped = start_daemon(&data);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (gateway, gateway_answers) = runtime.block_on(through_the_gateway(revision, &data));
    let (client, client_answers) = runtime.block_on(recorded_client(
        revision,
        &data,
        &temp.path().join("outbox-client"),
    ));
    let (server, server_answers) = runtime.block_on(recorded_server(
        revision,
        &data,
        &temp.path().join("outbox-server"),
    ));

    // Recording changed nothing the client saw.
    assert_eq!(
        client_answers, gateway_answers,
        "{revision}: the RecordedClient's answers"
    );
    assert_eq!(
        server_answers, gateway_answers,
        "{revision}: the Recorded server's answers"
    );
    assert_eq!(gateway_answers[1]["result"]["isError"], true);
    assert_eq!(gateway_answers[2]["error"]["code"], -32602);

    let through_gateway = normalized(&stored(&data, &gateway, 7), &gateway);
    let client_events = stored(&data, &client, 7);
    // Each of the RecordedClient's calls carries (and records) its flow's
    // trace context: the correlation id's digits as the trace id.
    let trace = client.replace('-', "");
    for event in client_events
        .iter()
        .filter(|e| e["attributes"].get("mcp.tool").is_some())
    {
        let traceparent = event["attributes"]["intentproof.traceparent"]
            .as_str()
            .unwrap_or("");
        assert!(
            traceparent.starts_with(&format!("00-{trace}-")),
            "{revision}: {traceparent:?} in {event:#}"
        );
    }
    let by_client = normalized(&client_events, &client);
    let by_server = normalized(&stored(&data, &server, 7), &server);
    assert_same_events(
        &format!("{revision}: RecordedClient vs gateway"),
        &through_gateway,
        &by_client,
    );
    assert_same_events(
        &format!("{revision}: Recorded server vs gateway"),
        &through_gateway,
        &by_server,
    );
    // What they all recorded, in brief.
    let brief: Vec<(String, String, String, Value)> = through_gateway
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
                e["intent"].as_str().unwrap().to_owned(),
                e["attributes"]["mcp.protocol.version"].clone(),
            )
        })
        .collect();
    let step = |action: &str, status: &str, intent: &str, version: Value| {
        (
            action.to_owned(),
            status.to_owned(),
            intent.to_owned(),
            version,
        )
    };
    assert_eq!(
        brief,
        vec![
            step(
                "intentproof.plan.declare",
                "ok",
                "greet, then find the region",
                json!(revision)
            ),
            step("mcp.fixture.echo", "ok", "Say hello", json!(revision)),
            step(
                "mcp.fixture.always_fails",
                "error",
                "undeclared",
                json!(revision)
            ),
            step(
                "mcp.fixture.no_such_tool",
                "error",
                "undeclared",
                json!(revision)
            ),
            step(
                "mcp.fixture.resource.read",
                "ok",
                "undeclared",
                json!(revision)
            ),
            step(
                "mcp.fixture.prompt.get",
                "ok",
                "undeclared",
                json!(revision)
            ),
            step(
                "intentproof.plan.close",
                "ok",
                "greet, then find the region",
                Value::Null
            ),
        ]
    );
}

#[test]
fn gateway_and_wrappers_record_the_same_events_2025_11_25() {
    gateway_and_wrappers_record_the_same("2025-11-25");
}

#[test]
fn gateway_and_wrappers_record_the_same_events_2026_07_28() {
    gateway_and_wrappers_record_the_same("2026-07-28");
}
