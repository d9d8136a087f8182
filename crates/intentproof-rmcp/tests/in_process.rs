//! The wrappers in one process, over an in-memory pipe, with events kept
//! in a `MemoryExporter`: what each side records, exactly (ids and times
//! replaced), what the server gets, and what the caller gets back.
//!
//! The comparison with the gateway (the same calls through `intentproof
//! mcp`, field by field) and the examples against the real daemon are in
//! `crates/intentproof-cli/tests/rmcp_library.rs`, which has the binary.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use intentproof::{ExecutionEvent, IntentProofClient, IntentProofConfig, PlanDeclaration};
use intentproof_mcp::approver::Approver;
use intentproof_mcp::demo::DemoPayments;
use intentproof_policy::guard::ApprovalRule;
use intentproof_policy::guard::approval::{Outcome, Request};
use intentproof_rmcp::rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ClientConfig,
    ContentBlock, ErrorData, Implementation, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, RequestMetaObject, ServerCapabilities, ServerConfig, Tool,
};
use intentproof_rmcp::rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, RequestContext, RunningService,
};
use intentproof_rmcp::rmcp::{
    ClientHandler, RoleClient, RoleServer, ServerHandler, ServiceError, ServiceExt,
};
use intentproof_rmcp::{
    CORRELATION_META, DEFAULT_PLAN_TOOL, INTENT_META, PLAN_STEP_META, Recorded, RecordedClient,
    RecorderConfig, Recording, TRACEPARENT_META,
};
use serde_json::{Value, json};

const REVISIONS: [&str; 2] = ["2025-11-25", "2026-07-28"];

fn lifecycle(revision: &str) -> ClientLifecycleMode {
    match revision {
        "2026-07-28" => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
        _ => ClientLifecycleMode::Initialize,
    }
}

#[derive(Clone)]
struct Agent;

impl ClientHandler for Agent {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("test-agent", "0.9.1"),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }
}

fn memory_sink() -> IntentProofClient {
    IntentProofClient::new(IntentProofConfig::default())
}

fn events(sink: &IntentProofClient) -> Vec<ExecutionEvent> {
    sink.memory().unwrap().events()
}

fn object(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("an object"),
    }
}

fn call(tool: &str, arguments: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(tool.to_owned()).with_arguments(object(arguments))
}

/// The events as JSON without ids and times; the session id, plan id and
/// correlation id replaced by `<session>`, `<plan>`, `<correlation>`.
fn normalized(
    events: &[ExecutionEvent],
    session: &str,
    plan: &str,
    correlation: &str,
) -> Vec<Value> {
    let ids: BTreeMap<&str, &str> = [
        (session, "<session>"),
        (plan, "<plan>"),
        (correlation, "<correlation>"),
    ]
    .into_iter()
    .collect();
    fn replace(value: &mut Value, ids: &BTreeMap<&str, &str>) {
        match value {
            Value::String(s) => {
                if let Some(p) = ids.get(s.as_str()) {
                    *s = (*p).to_owned();
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| replace(v, ids)),
            Value::Object(map) => map.values_mut().for_each(|v| replace(v, ids)),
            _ => {}
        }
    }
    events
        .iter()
        .map(|event| {
            let mut value = serde_json::to_value(event).unwrap();
            let map = value.as_object_mut().unwrap();
            for key in ["id", "startedAt", "completedAt", "durationMs"] {
                map.remove(key);
            }
            // A recorded W3C trace context: the flow's (the correlation
            // id's digits as trace id), with a parent id new per request.
            if let Some(traceparent) = map
                .get_mut("attributes")
                .and_then(|a| a.get_mut("intentproof.traceparent"))
            {
                let text = traceparent.as_str().unwrap_or("");
                let trace = correlation.replace('-', "");
                assert!(
                    text.starts_with(&format!("00-{trace}-")) && text.len() == 55,
                    "{text:?} is not the flow's trace context"
                );
                *traceparent = Value::from("00-<trace>-<parent>-01");
            }
            replace(&mut value, &ids);
            value
        })
        .collect()
}

/// A server that says what reached it: each tool call's name and `_meta`.
#[derive(Clone, Default)]
struct Probe {
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    /// Told when `hang` has arrived.
    hung: Arc<tokio::sync::Notify>,
}

impl ServerHandler for Probe {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tool = |name: &str| -> Tool {
            serde_json::from_value(json!({"name": name, "inputSchema": {"type": "object"}}))
                .unwrap()
        };
        Ok(ListToolsResult::with_all_items(vec![
            tool("echo"),
            tool("fail"),
            tool("hang"),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.calls.lock().unwrap().push((
            request.name.to_string(),
            serde_json::to_value(&context.meta).unwrap(),
        ));
        match request.name.as_ref() {
            "echo" => Ok(CallToolResult::success(vec![ContentBlock::text(
                request
                    .arguments
                    .and_then(|a| a.get("text").cloned())
                    .unwrap_or_default()
                    .to_string(),
            )])
            .into()),
            "fail" => Ok(CallToolResult::error(vec![ContentBlock::text("it failed")]).into()),
            "hang" => {
                self.hung.notify_one();
                std::future::pending().await
            }
            other => Err(ErrorData::invalid_params(format!("no tool {other}"), None)),
        }
    }
}

/// `server` on one end of a pipe (plain rmcp, or wrapped); the other end.
fn serve<S: intentproof_rmcp::rmcp::Service<RoleServer>>(
    server: S,
) -> (
    tokio::io::DuplexStream,
    tokio::task::JoinHandle<RunningService<RoleServer, S>>,
) {
    let (client_end, server_end) = tokio::io::duplex(1 << 16);
    let running = tokio::spawn(async move { server.serve(server_end).await.unwrap() });
    (client_end, running)
}

fn refund_plan() -> PlanDeclaration {
    PlanDeclaration::new("refund order ORD-1 and email the receipt")
        .step("refund_payment", "Refund the card")
        .step("send_receipt_email", "Email the receipt")
}

#[tokio::test]
async fn the_client_records_each_call_with_the_intent_of_its_plan_step() {
    for revision in REVISIONS {
        let sink = memory_sink();
        let recording = Recording::new(RecorderConfig::new("payments"), sink.clone());
        let session = recording.session_id().to_owned();
        let (pipe, _server) = serve(DemoPayments::default());
        let client =
            RecordedClient::serve_with_lifecycle(Agent, pipe, lifecycle(revision), recording)
                .await
                .unwrap();
        let plan = client.declare_plan(&refund_plan()).await.unwrap();
        assert_eq!(plan.intent, "refund order ORD-1 and email the receipt");
        let refunded = client
            .call_tool(call(
                "refund_payment",
                json!({"order_id": "ORD-1", "amount_cents": 250}),
            ))
            .await
            .unwrap();
        assert_eq!(
            refunded.structured_content.unwrap()["refund_id"],
            "re_ord_1"
        );
        let missing = client
            .call_tool(call("no_such_tool", json!({})))
            .await
            .unwrap_err();
        let ServiceError::McpError(missing) = missing else {
            panic!("{missing:?}")
        };
        assert_eq!(
            (missing.code.0, missing.message.as_ref()),
            (-32602, "tool not found")
        );
        client.close().await.unwrap();

        let client_attributes = |id: &str| {
            json!({"jsonrpc.id": id, "mcp.client.name": "test-agent", "mcp.client.version": "0.9.1",
                   "mcp.protocol.version": revision, "mcp.server": "payments", "mcp.session_id": "<session>"})
        };
        let mut declared = client_attributes("1");
        declared["intentproof.plan.id"] = json!("<plan>");
        declared["intentproof.plan.ordered"] = json!(false);
        let mut refund = client_attributes("2");
        refund["intentproof.plan.id"] = json!("<plan>");
        refund["intentproof.plan.step"] = json!(0);
        refund["mcp.tool"] = json!("refund_payment");
        // Each call carries the flow's trace context (RecordedClient::flow_meta).
        refund["intentproof.traceparent"] = json!("00-<trace>-<parent>-01");
        let mut unknown = client_attributes("3");
        unknown["mcp.tool"] = json!("no_such_tool");
        unknown["intentproof.traceparent"] = json!("00-<trace>-<parent>-01");
        assert_eq!(
            normalized(
                &events(&sink),
                &session,
                &plan.plan_id,
                &plan.correlation_id
            ),
            vec![
                json!({"correlationId": "<correlation>", "intent": "refund order ORD-1 and email the receipt",
                       "action": "intentproof.plan.declare", "status": "ok",
                       "inputs": refund_plan().arguments(),
                       "output": {"plan_id": "<plan>", "correlation_id": "<correlation>"},
                       "attributes": declared}),
                json!({"correlationId": "<correlation>", "intent": "Refund the card",
                       "action": "mcp.payments.refund_payment", "status": "ok",
                       "inputs": {"order_id": "ORD-1", "amount_cents": 250},
                       "output": {"content": [{"type": "text", "text": "Refunded 2.50 for ORD-1: re_ord_1"}],
                                  "structuredContent": {"refund_id": "re_ord_1", "status": "succeeded", "amount_cents": 250},
                                  "isError": false},
                       "attributes": refund}),
                json!({"correlationId": "<correlation>", "intent": "undeclared",
                       "action": "mcp.payments.no_such_tool", "status": "error", "inputs": {},
                       "error": {"name": "JsonRpcError(-32602)", "message": "tool not found"},
                       "attributes": unknown}),
                json!({"correlationId": "<correlation>", "intent": "refund order ORD-1 and email the receipt",
                       "action": "intentproof.plan.close", "status": "ok",
                       "inputs": {"plan_id": "<plan>", "reason": "session_ended"},
                       "attributes": {"mcp.server": "payments", "mcp.session_id": "<session>"}}),
            ],
            "{revision}"
        );
    }
}

#[tokio::test]
async fn the_plan_tool_is_listed_and_answered_in_process_never_by_the_server() {
    for revision in REVISIONS {
        let probe = Probe::default();
        let (pipe, _server) = serve(probe.clone());
        let sink = memory_sink();
        let recording = Recording::new(RecorderConfig::new("probe"), sink.clone());
        let client =
            RecordedClient::serve_with_lifecycle(Agent, pipe, lifecycle(revision), recording)
                .await
                .unwrap();
        let names: Vec<String> = client
            .peer()
            .list_all_tools()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        assert_eq!(
            names,
            ["echo", "fail", "hang", DEFAULT_PLAN_TOOL],
            "{revision}"
        );
        client
            .declare_plan(
                &PlanDeclaration::new("echo twice")
                    .step("echo", "first")
                    .step("echo", "second"),
            )
            .await
            .unwrap();
        // A plan the recorder refuses is an error naming the problem.
        let refused = client
            .declare_plan(&PlanDeclaration::new("nothing"))
            .await
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "invalid plan: Plan not recorded: `steps` is empty: list the tool calls you plan to make"
        );
        client
            .call_tool(call("echo", json!({"text": "hi"})))
            .await
            .unwrap();
        client.close().await.unwrap();
        let reached: Vec<String> = probe
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(
            reached,
            ["echo"],
            "{revision}: only the echo reached the server"
        );
        let recorded: Vec<(String, String)> = events(&sink)
            .into_iter()
            .map(|e| (e.action, e.status.as_str().to_owned()))
            .collect();
        assert_eq!(
            recorded,
            [
                ("intentproof.plan.declare".to_owned(), "ok".to_owned()),
                ("intentproof.plan.declare".to_owned(), "error".to_owned()),
                ("mcp.probe.echo".to_owned(), "ok".to_owned()),
                ("intentproof.plan.close".to_owned(), "ok".to_owned()),
            ],
            "{revision}"
        );
    }
}

#[tokio::test]
async fn requests_carry_the_flow_and_the_step_intent_in_meta() {
    for revision in REVISIONS {
        let probe = Probe::default();
        let (pipe, _server) = serve(probe.clone());
        let recording = Recording::new(RecorderConfig::new("probe"), memory_sink());
        let session = recording.session_id().to_owned();
        let client =
            RecordedClient::serve_with_lifecycle(Agent, pipe, lifecycle(revision), recording)
                .await
                .unwrap();
        // Before any plan: the session is the flow.
        client.call_tool(call("fail", json!({}))).await.unwrap();
        let plan = client
            .declare_plan(
                &PlanDeclaration::new("say things")
                    .step("echo", "greet")
                    .step("echo", "repeat"),
            )
            .await
            .unwrap();
        client
            .call_tool(call("echo", json!({"text": "a"})))
            .await
            .unwrap();
        // The caller's own `_meta` wins; an explicit step picks its purpose.
        let mut own = call("echo", json!({"text": "b"}));
        let mut meta = RequestMetaObject::new();
        meta.insert(PLAN_STEP_META.into(), json!(1));
        meta.insert(CORRELATION_META.into(), json!("caller-flow"));
        own.meta = Some(meta);
        client.call_tool(own).await.unwrap();
        client.close().await.unwrap();

        let calls = probe.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 3);
        let hex = |id: &str| id.replace('-', "");
        let trace = |meta: &Value| -> (String, String) {
            let parts: Vec<String> = meta[TRACEPARENT_META]
                .as_str()
                .unwrap()
                .split('-')
                .map(str::to_owned)
                .collect();
            assert_eq!(
                (parts.len(), parts[0].as_str(), parts[3].as_str()),
                (4, "00", "01"),
                "{meta}"
            );
            assert_eq!(parts[2].len(), 16);
            (parts[1].clone(), parts[2].clone())
        };
        let before = &calls[0].1;
        assert_eq!(before[CORRELATION_META], json!(session), "{revision}");
        assert_eq!(trace(before).0, hex(&session));
        assert_eq!(before.get(INTENT_META), None, "no plan, no step intent");
        let planned = &calls[1].1;
        assert_eq!(planned[CORRELATION_META], json!(plan.correlation_id));
        assert_eq!(trace(planned).0, hex(&plan.correlation_id));
        assert_eq!(planned[INTENT_META], "greet");
        let own = &calls[2].1;
        assert_eq!(own[CORRELATION_META], "caller-flow");
        assert_eq!(
            own.get(TRACEPARENT_META),
            None,
            "the caller's flow is kept whole"
        );
        assert_eq!(own[INTENT_META], "repeat");
        // Each request is a span of its own.
        assert_ne!(trace(before).1, trace(planned).1);
        // 2026-07-28 requests carry rmcp's envelope as well.
        assert_eq!(
            planned.get("io.modelcontextprotocol/protocolVersion"),
            (revision == "2026-07-28").then(|| json!(revision)).as_ref()
        );
    }
}

#[tokio::test]
async fn a_recording_server_joins_the_flow_and_intent_of_a_recording_client() {
    for revision in REVISIONS {
        let server_sink = memory_sink();
        let server_recording = Recording::new(RecorderConfig::new("payments"), server_sink.clone());
        let server_session = server_recording.session_id().to_owned();
        let (pipe, server) = serve(Recorded::new(
            DemoPayments::default(),
            server_recording.clone(),
        ));
        let client_sink = memory_sink();
        let client = RecordedClient::serve_with_lifecycle(
            Agent,
            pipe,
            lifecycle(revision),
            Recording::new(RecorderConfig::new("payments"), client_sink.clone()),
        )
        .await
        .unwrap();
        let plan = client.declare_plan(&refund_plan()).await.unwrap();
        client
            .call_tool(call(
                "refund_payment",
                json!({"order_id": "ORD-2", "amount_cents": 100}),
            ))
            .await
            .unwrap();
        client.close().await.unwrap();
        server.await.unwrap().waiting().await.unwrap();
        server_recording.end();

        let recorded = normalized(
            &events(&server_sink),
            &server_session,
            &plan.plan_id,
            &plan.correlation_id,
        );
        assert_eq!(
            recorded,
            vec![json!({
                "correlationId": "<correlation>", "intent": "Refund the card",
                "action": "mcp.payments.refund_payment", "status": "ok",
                "inputs": {"order_id": "ORD-2", "amount_cents": 100},
                "output": {"content": [{"type": "text", "text": "Refunded 1.00 for ORD-2: re_ord_2"}],
                           "structuredContent": {"refund_id": "re_ord_2", "status": "succeeded", "amount_cents": 100},
                           "isError": false},
                "attributes": {"jsonrpc.id": "2", "mcp.client.name": "test-agent", "mcp.client.version": "0.9.1",
                               "mcp.protocol.version": revision, "mcp.server": "payments",
                               "mcp.session_id": "<session>", "mcp.tool": "refund_payment",
                               "intentproof.traceparent": "00-<trace>-<parent>-01"}
            })],
            "{revision}: the server's own record of the call, in the client's flow"
        );
    }
}

#[tokio::test]
async fn a_recorded_server_offers_the_plan_tool_and_honours_intent_meta() {
    for revision in REVISIONS {
        let probe = Probe::default();
        let sink = memory_sink();
        let recording = Recording::new(RecorderConfig::new("probe"), sink.clone());
        let session = recording.session_id().to_owned();
        let (pipe, server) = serve(Recorded::new(probe.clone(), recording.clone()));
        let client = Agent
            .serve_with_lifecycle(pipe, lifecycle(revision))
            .await
            .unwrap();
        let names: Vec<String> = client
            .list_all_tools()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        assert_eq!(names, ["echo", "fail", "hang", DEFAULT_PLAN_TOOL]);
        let declared = client
            .call_tool(call(
                DEFAULT_PLAN_TOOL,
                json!({"intent": "echo and fail",
                "steps": [{"tool": "echo", "purpose": "say it"}, {"tool": "fail"}]}),
            ))
            .await
            .unwrap();
        let structured = declared.structured_content.unwrap();
        let (plan_id, correlation) = (
            structured["plan_id"].as_str().unwrap().to_owned(),
            structured["correlation_id"].as_str().unwrap().to_owned(),
        );
        let mut echo = call("echo", json!({"text": "x"}));
        let mut meta = RequestMetaObject::new();
        meta.insert(INTENT_META.into(), json!("say it my way"));
        echo.meta = Some(meta);
        client.call_tool(echo).await.unwrap();
        // An isError answer reaches the client as the handler gave it.
        let failed = client.call_tool(call("fail", json!({}))).await.unwrap();
        assert_eq!(failed.is_error, Some(true));
        client.cancel().await.unwrap();
        server.await.unwrap().waiting().await.unwrap();
        recording.end();

        let reached: Vec<String> = probe
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(
            reached,
            ["echo", "fail"],
            "{revision}: the plan tool never reached the handler"
        );
        let brief: Vec<(String, String, String, Value)> =
            normalized(&events(&sink), &session, &plan_id, &correlation)
                .into_iter()
                .map(|e| {
                    (
                        e["action"].as_str().unwrap().to_owned(),
                        e["intent"].as_str().unwrap().to_owned(),
                        e["status"].as_str().unwrap().to_owned(),
                        e["attributes"]["mcp.protocol.version"].clone(),
                    )
                })
                .collect();
        let row =
            |a: &str, i: &str, s: &str, v: Value| (a.to_owned(), i.to_owned(), s.to_owned(), v);
        assert_eq!(
            brief,
            vec![
                row(
                    "intentproof.plan.declare",
                    "echo and fail",
                    "ok",
                    json!(revision)
                ),
                row("mcp.probe.echo", "say it my way", "ok", json!(revision)),
                row("mcp.probe.fail", "echo and fail", "error", json!(revision)),
                row("intentproof.plan.close", "echo and fail", "ok", Value::Null),
            ],
            "{revision}"
        );
    }
}

#[tokio::test]
async fn a_server_that_goes_away_fails_the_call_under_way_and_closes_the_plan() {
    let probe = Probe::default();
    let (pipe, server) = serve(probe.clone());
    let sink = memory_sink();
    let recording = Recording::new(RecorderConfig::new("probe"), sink.clone());
    let client = Arc::new(RecordedClient::serve(Agent, pipe, recording).await.unwrap());
    client
        .declare_plan(
            &PlanDeclaration::new("wait")
                .step("hang", "wait forever")
                .step("echo", "then speak"),
        )
        .await
        .unwrap();
    let hung = probe.hung.notified();
    let call_under_way = tokio::spawn({
        let client = Arc::clone(&client);
        async move { client.call_tool(call("hang", json!({}))).await }
    });
    hung.await;
    server.await.unwrap().cancel().await.unwrap();
    let error = call_under_way.await.unwrap().unwrap_err();
    assert!(matches!(error, ServiceError::TransportClosed), "{error:?}");
    let recorded: Vec<(String, String, Option<String>)> = events(&sink)
        .into_iter()
        .map(|e| {
            (
                e.action,
                e.intent,
                e.error.map(|e| format!("{}: {}", e.name, e.message)),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [
            (
                "intentproof.plan.declare".to_owned(),
                "wait".to_owned(),
                None
            ),
            (
                "mcp.probe.hang".to_owned(),
                "wait forever".to_owned(),
                Some(
                    "UpstreamGone: the MCP server closed the connection before answering"
                        .to_owned()
                )
            ),
            ("intentproof.plan.close".to_owned(), "wait".to_owned(), None),
        ]
    );
}

#[tokio::test]
async fn dropping_the_client_ends_the_session() {
    let (pipe, _server) = serve(DemoPayments::default());
    let sink = memory_sink();
    let client = RecordedClient::serve(
        Agent,
        pipe,
        Recording::new(RecorderConfig::new("payments"), sink.clone()),
    )
    .await
    .unwrap();
    client.declare_plan(&refund_plan()).await.unwrap();
    drop(client);
    // The session ends when rmcp's service task lets go of the transport.
    let deadline = Instant::now() + Duration::from_secs(30);
    while events(&sink).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no plan close after the client was dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let actions: Vec<String> = events(&sink).into_iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        ["intentproof.plan.declare", "intentproof.plan.close"]
    );
}

/// Approves every call it is asked about.
#[derive(Debug)]
struct Yes;

impl Approver for Yes {
    fn ask(&self, _request: Request) -> futures_util::future::BoxFuture<'static, Outcome> {
        Box::pin(async {
            Outcome::Approved {
                by: "tester".into(),
                reason: None,
                at: "2026-01-01T00:00:00.000Z".into(),
            }
        })
    }
}

fn guarded(approver: Option<Arc<dyn Approver>>) -> RecorderConfig {
    let mut config = RecorderConfig::new("probe");
    config.approvals = Arc::from(vec![ApprovalRule::parse_flag("mcp.probe.echo").unwrap()]);
    if let Some(approver) = approver {
        config.approver = approver;
    }
    config
}

#[tokio::test]
async fn a_call_held_for_approval_is_refused_by_the_client_and_never_sent() {
    let probe = Probe::default();
    let (pipe, _server) = serve(probe.clone());
    let sink = memory_sink();
    let client = RecordedClient::serve(Agent, pipe, Recording::new(guarded(None), sink.clone()))
        .await
        .unwrap();
    let refused = client
        .call_tool(call("echo", json!({"text": "x"})))
        .await
        .unwrap_err();
    let ServiceError::McpError(refused) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(refused.code.0, -32010);
    client.close().await.unwrap();
    assert!(
        probe.calls.lock().unwrap().is_empty(),
        "the held call reached the server"
    );
    let last = events(&sink).pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.error.map(|e| e.name)),
        ("mcp.probe.echo", Some("RefusedByPolicy".to_owned()))
    );
}

#[tokio::test]
async fn a_recorded_server_asks_its_approver_about_a_held_call() {
    for (approver, reached, status) in [
        (
            Some(Arc::new(Yes) as Arc<dyn Approver>),
            vec!["echo".to_owned()],
            "ok",
        ),
        (None, vec![], "error"),
    ] {
        let probe = Probe::default();
        let sink = memory_sink();
        let recording = Recording::new(guarded(approver), sink.clone());
        let (pipe, _server) = serve(Recorded::new(probe.clone(), recording));
        let client: RunningService<RoleClient, Agent> = Agent.serve(pipe).await.unwrap();
        let answer = client.call_tool(call("echo", json!({"text": "x"}))).await;
        assert_eq!(answer.is_ok(), status == "ok", "{answer:?}");
        client.cancel().await.unwrap();
        let got: Vec<String> = probe
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(got, reached);
        let call_event = events(&sink)
            .into_iter()
            .find(|e| e.action == "mcp.probe.echo")
            .unwrap();
        assert_eq!(call_event.status.as_str(), status);
    }
}
