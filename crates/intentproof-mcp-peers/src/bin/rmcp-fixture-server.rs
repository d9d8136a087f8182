//! A dual-era MCP fixture server on rmcp 3.x: the tools, resource and
//! prompt of `tests/mcp2026/fixture_server.py` (PyPI mcp 2.3.0), so the same
//! transcript clients run against both.
//!
//! Usage:
//!   rmcp-fixture-server stdio
//!   rmcp-fixture-server http PORT   (Streamable HTTP at http://127.0.0.1:PORT/mcp)
//!
//! Both revisions on one endpoint: 2025-11-25 (`initialize`, and over HTTP an
//! `Mcp-Session-Id` session) and 2026-07-28 (`server/discover` or a first
//! request carrying the `_meta` envelope; stateless over HTTP). rmcp picks
//! the era per request (HTTP: the MCP-Protocol-Version header and `_meta`)
//! or from the first request (stdio).
//!
//! Tools (deterministic outputs; task ids and timestamps are not):
//!   echo(text)                 -> text
//!   ask_name()                 -> "Hello, <name>!"; the name is asked of the
//!                                 client: an `input_required` result
//!                                 (multi-round, SEP-2322) at 2026-07-28, an
//!                                 `elicitation/create` request at 2025-11-25
//!   slow_compute(seconds=0.2)  -> "computed 42"; a task (extension
//!                                 io.modelcontextprotocol/tasks, rmcp's
//!                                 TaskManager: flat `resultType: "task"`
//!                                 handle, then tasks/get) when the client
//!                                 declared the extension, else a plain result
//!   always_fails()             -> an isError result
//!   where(region)              -> "region <region>"; `region` carries
//!                                 x-mcp-header "Region" (Mcp-Param-Region)
//! Resource fixture://readme (text); prompt greeting(name).
//! Prints nothing on stdout in http mode; in stdio mode stdout is the protocol.

use std::time::Duration;

use rmcp::{
    ErrorData, RoleServer, ServerHandler, ServiceExt,
    model::*,
    service::RequestContext,
    task_manager::{TaskExit, TaskManager, TaskOptions},
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde_json::{Value, json};

const NAME: &str = "intentproof-rmcp-fixture";
const VERSION: &str = "1.0.0";
const INSTRUCTIONS: &str = "rmcp fixture server for IntentProof's MCP transparency tests.";
const ASK_STATE: &str = "ask-name-round-1";

#[derive(Clone)]
struct Fixture {
    tasks: TaskManager,
}

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("fixture JSON matches the rmcp model")
}

fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text.into())])
}

fn tools() -> Vec<Tool> {
    from_json(json!([
        {
            "name": "echo",
            "description": "Echo the text back",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
        },
        {
            "name": "ask_name",
            "description": "Asks the client for a name (input_required at 2026-07-28, elicitation at 2025-11-25), then greets",
            "inputSchema": {"type": "object", "properties": {}}
        },
        {
            "name": "slow_compute",
            "description": "Task-capable: a task through the io.modelcontextprotocol/tasks extension when the client declared it",
            "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number", "default": 0.2}}}
        },
        {
            "name": "always_fails",
            "description": "Always answers an isError result",
            "inputSchema": {"type": "object", "properties": {}}
        },
        {
            "name": "where",
            "description": "Answers the region it was called for (mirrored into the Mcp-Param-Region header)",
            "inputSchema": {
                "type": "object",
                "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
                "required": ["region"]
            }
        }
    ]))
}

fn name_schema() -> Value {
    json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
}

fn arg_str<'a>(request: &'a CallToolRequestParams, key: &str) -> Result<&'a str, ErrorData> {
    request
        .arguments
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .ok_or_else(|| ErrorData::invalid_params(format!("missing string argument {key:?}"), None))
}

impl Fixture {
    async fn ask_name(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let modern = context
            .protocol_version()
            .is_some_and(|v| !v.has_initialize());
        if !modern {
            // 2025-11-25: a server-to-client elicitation/create request.
            let params: ElicitRequestParams = from_json(json!({
                "mode": "form",
                "message": "What is your name?",
                "requestedSchema": name_schema(),
            }));
            let answer =
                context.peer.create_elicitation(params).await.map_err(|e| {
                    ErrorData::internal_error(format!("elicitation failed: {e}"), None)
                })?;
            let name = answer
                .content
                .as_ref()
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| ErrorData::invalid_params("the elicitation gave no name", None))?;
            return Ok(text_result(format!("Hello, {name}!")).into());
        }
        // 2026-07-28: multi-round (SEP-2322): ask, then answer on the retry.
        match (
            request.request_state.as_deref(),
            request.input_responses.as_ref(),
        ) {
            (None, _) => {
                let mut requests = InputRequests::new();
                requests.insert(
                    "name".into(),
                    InputRequest::Elicitation(from_json(json!({
                        "method": "elicitation/create",
                        "params": {
                            "mode": "form",
                            "message": "What is your name?",
                            "requestedSchema": name_schema(),
                        }
                    }))),
                );
                Ok(InputRequiredResult::new(Some(requests), Some(ASK_STATE.into())).into())
            }
            (Some(ASK_STATE), Some(responses)) => {
                let name = responses
                    .get("name")
                    .and_then(|r| r.get("content"))
                    .and_then(|c| c.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| ErrorData::invalid_params("missing name response", None))?;
                Ok(text_result(format!("Hello, {name}!")).into())
            }
            (state, _) => Err(ErrorData::invalid_params(
                format!("unexpected requestState {state:?}"),
                None,
            )),
        }
    }

    fn slow_compute(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResponse {
        let seconds = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("seconds"))
            .and_then(Value::as_f64)
            .unwrap_or(0.2)
            .clamp(0.0, 30.0);
        let tasks = context
            .client_capabilities()
            .is_some_and(|caps| caps.supports_tasks());
        if !tasks {
            return text_result("computed 42").into();
        }
        let task = self.tasks.spawn(
            TaskOptions::new()
                .with_ttl_ms(60_000)
                .with_poll_interval_ms(100),
            move |ctx| {
                Box::pin(async move {
                    tokio::select! {
                        _ = ctx.cancelled() => Err(TaskExit::Cancelled),
                        _ = tokio::time::sleep(Duration::from_secs_f64(seconds)) => {
                            Ok(text_result("computed 42"))
                        }
                    }
                })
            },
        );
        CallToolResponse::Task(CreateTaskResult::new(task))
    }
}

impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new(NAME, VERSION))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match request.name.as_ref() {
            "echo" => Ok(text_result(arg_str(&request, "text")?).into()),
            "ask_name" => self.ask_name(request, context).await,
            "slow_compute" => Ok(self.slow_compute(&request, &context)),
            "always_fails" => Ok(CallToolResult::error(vec![ContentBlock::text(
                "this tool always fails",
            )])
            .into()),
            "where" => Ok(text_result(format!("region {}", arg_str(&request, "region")?)).into()),
            other => Err(ErrorData::invalid_params(
                format!("Unknown tool: {other}"),
                None,
            )),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(from_json(json!({"resultType": "complete", "resources": [{
            "uri": "fixture://readme",
            "name": "readme",
            "description": "A fixed text",
            "mimeType": "text/plain"
        }]})))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if request.uri != "fixture://readme" {
            return Err(ErrorData::resource_not_found(
                format!("Unknown resource: {}", request.uri),
                Some(json!({"uri": request.uri})),
            ));
        }
        Ok(ReadResourceResponse::Complete(from_json(
            json!({"resultType": "complete", "contents": [{
                "uri": "fixture://readme",
                "mimeType": "text/plain",
                "text": "IntentProof MCP 2026 fixture (rmcp)"
            }]}),
        )))
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(from_json(json!({"resultType": "complete", "prompts": [{
            "name": "greeting",
            "description": "Greets someone",
            "arguments": [{"name": "name", "required": true}]
        }]})))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if request.name != "greeting" {
            return Err(ErrorData::invalid_params(
                format!("Unknown prompt: {}", request.name),
                None,
            ));
        }
        let name = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| ErrorData::invalid_params("missing argument \"name\"", None))?;
        Ok(GetPromptResponse::Complete(from_json(json!({
            "resultType": "complete",
            "description": "Greets someone",
            "messages": [{"role": "user", "content": {"type": "text", "text": format!("Please greet {name}.")}}]
        }))))
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        Ok(GetTaskResult::new(self.tasks.get_task(&request.task_id)?))
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.tasks
            .update_task(&request.task_id, request.input_responses)
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.tasks.cancel_task(&request.task_id)
    }
}

fn usage() -> ! {
    eprintln!("usage: rmcp-fixture-server stdio | rmcp-fixture-server http PORT");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // One task manager for the process: HTTP builds a handler per session
    // (and per stateless request), and tasks/get must find tasks across them.
    let tasks = TaskManager::new();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["stdio"] => {
            let service = Fixture { tasks }.serve(rmcp::transport::stdio()).await?;
            service.waiting().await?;
        }
        ["http", port] => {
            let port: u16 = port.parse().unwrap_or_else(|_| usage());
            let service = StreamableHttpService::new(
                move || {
                    Ok(Fixture {
                        tasks: tasks.clone(),
                    })
                },
                LocalSessionManager::default().into(),
                // RMCP_FIXTURE_JSON_RESPONSE=1: plain JSON answers where
                // rmcp allows (default: SSE response streams).
                StreamableHttpServerConfig::default().with_json_response(
                    std::env::var_os("RMCP_FIXTURE_JSON_RESPONSE").is_some_and(|v| v == "1"),
                ),
            );
            let router = axum::Router::new().nest_service("/mcp", service);
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            axum::serve(listener, router).await?;
        }
        _ => usage(),
    }
    Ok(())
}
