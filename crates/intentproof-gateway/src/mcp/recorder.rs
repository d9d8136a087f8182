//! [`Recorder`]: watches one MCP session's JSON-RPC traffic and turns each
//! tool call (and resource read, prompt get) into an event.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime};

use intentproof_core::{
    AttributeValue, Attributes, ErrorInfo, ExecutionEvent, format_rfc3339_millis,
};
use serde_json::{Map, Value, json};

/// Name of the tool the gateway adds by default.
pub const DEFAULT_PLAN_TOOL: &str = "intentproof_declare_plan";
/// Action of the plan declaration event (the policy evaluator's name for
/// it, so the two cannot drift apart).
pub const PLAN_ACTION: &str = intentproof_policy::verification::PLAN_DECLARE_ACTION;
/// Intent of calls no declaration covers.
pub const UNDECLARED: &str = "undeclared";
/// Action of the marker fail-closed mode makes durable before a call is
/// forwarded.
pub const STARTED_ACTION: &str = "intentproof.call.started";

/// How a session is recorded.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// The upstream's name: actions are `mcp.<server>.<tool>`.
    pub server: String,
    /// The plan tool's name, or `None` to not offer it.
    pub plan_tool: Option<String>,
    /// Intents for tools called outside any declaration.
    pub default_intents: BTreeMap<String, String>,
}

impl RecorderConfig {
    /// Defaults for a server: plan tool on, no default intents.
    pub fn new(server: impl Into<String>) -> Self {
        RecorderConfig {
            server: server.into(),
            plan_tool: Some(DEFAULT_PLAN_TOOL.to_owned()),
            default_intents: BTreeMap::new(),
        }
    }
}

/// What to do with a message from the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientVerdict {
    /// Send it upstream unchanged.
    Forward,
    /// Do not forward; answer the agent with this message.
    Reply(Value),
}

/// A declared plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Plan id (a UUIDv7).
    pub id: String,
    /// What the agent means to achieve.
    pub intent: String,
    /// Planned steps: (tool, purpose).
    pub steps: Vec<(String, Option<String>)>,
    /// Whether the steps must happen in order.
    pub ordered: bool,
    /// The correlation id of the plan's calls.
    pub correlation_id: String,
}

#[derive(Debug)]
enum Kind {
    Tool(String),
    ResourceRead,
    PromptGet,
}

#[derive(Debug)]
struct Pending {
    kind: Kind,
    action: String,
    intent: String,
    correlation_id: String,
    inputs: Value,
    attributes: Attributes,
    started: SystemTime,
    clock: Instant,
}

/// Observes one session. Not thread-safe by itself: one per session, owned
/// by the relay loop.
#[derive(Debug)]
pub struct Recorder {
    config: RecorderConfig,
    session_id: String,
    client: Option<(String, String)>,
    pending: HashMap<String, Pending>,
    /// Client request ids of first-page `tools/list` calls.
    tool_lists: HashMap<String, ()>,
    plan: Option<Plan>,
}

fn id_key(id: &Value) -> String {
    id.to_string()
}

/// A string attribute.
pub(crate) fn text_attr(value: impl Into<String>) -> AttributeValue {
    AttributeValue::String(value.into())
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub(crate) fn trace_id(traceparent: &str) -> Option<String> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    match parts.as_slice() {
        [_, trace, span, _]
            if trace.len() == 32
                && span.len() == 16
                && trace.bytes().all(|b| b.is_ascii_hexdigit())
                && trace.bytes().any(|b| b != b'0') =>
        {
            Some(trace.to_ascii_lowercase())
        }
        _ => None,
    }
}

impl Recorder {
    /// A recorder for a new session.
    pub fn new(config: RecorderConfig, session_id: impl Into<String>) -> Self {
        Recorder {
            config,
            session_id: session_id.into(),
            client: None,
            pending: HashMap::new(),
            tool_lists: HashMap::new(),
            plan: None,
        }
    }

    /// The open plan, if any.
    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    /// Calls under way.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Looks at a message from the agent. Events it completes (a cancelled
    /// call, a plan declaration) are pushed to `events`.
    pub fn on_client(
        &mut self,
        message: &Value,
        events: &mut Vec<ExecutionEvent>,
    ) -> ClientVerdict {
        let Some(object) = message.as_object() else {
            // A batch (2025-03-26) is observed item by item and forwarded whole.
            if let Some(items) = message.as_array() {
                for item in items {
                    let _ = self.observe_client(item, events, false);
                }
            }
            return ClientVerdict::Forward;
        };
        let _ = object;
        self.observe_client(message, events, true)
    }

    fn observe_client(
        &mut self,
        message: &Value,
        events: &mut Vec<ExecutionEvent>,
        may_reply: bool,
    ) -> ClientVerdict {
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let id = message.get("id");
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        match (method, id) {
            ("initialize", Some(_)) => {
                let info = &params["clientInfo"];
                if let Some(name) = info.get("name").and_then(Value::as_str) {
                    let version = info
                        .get("version")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    self.client = Some((name.to_owned(), version.to_owned()));
                }
            }
            ("tools/list", Some(id)) if params.get("cursor").is_none() => {
                self.tool_lists.insert(id_key(id), ());
            }
            ("tools/call", Some(id)) => {
                let name = params
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if may_reply && self.config.plan_tool.as_deref() == Some(name.as_str()) {
                    return ClientVerdict::Reply(self.declare_plan(id, &params, events));
                }
                let action = format!("mcp.{}.{}", self.config.server, name);
                let inputs = params
                    .get("arguments")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                self.start(id, Kind::Tool(name), action, inputs, &params);
            }
            ("resources/read", Some(id)) => {
                let action = format!("mcp.{}.resource.read", self.config.server);
                let inputs = json!({"uri": params.get("uri").cloned().unwrap_or(Value::Null)});
                self.start(id, Kind::ResourceRead, action, inputs, &params);
            }
            ("prompts/get", Some(id)) => {
                let action = format!("mcp.{}.prompt.get", self.config.server);
                let inputs = json!({
                    "name": params.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": params.get("arguments").cloned().unwrap_or_else(|| json!({})),
                });
                self.start(id, Kind::PromptGet, action, inputs, &params);
            }
            ("notifications/cancelled", None) => {
                if let Some(request_id) = params.get("requestId") {
                    if let Some(pending) = self.pending.remove(&id_key(request_id)) {
                        let reason = params
                            .get("reason")
                            .and_then(Value::as_str)
                            .unwrap_or("cancelled by the client");
                        let error = ErrorInfo {
                            name: "Cancelled".into(),
                            message: reason.to_owned(),
                            stack: None,
                        };
                        events.push(self.finish(pending, Err(error), None));
                    }
                }
            }
            _ => {}
        }
        ClientVerdict::Forward
    }

    /// Resolves correlation and intent for a call and remembers it.
    fn start(&mut self, id: &Value, kind: Kind, action: String, inputs: Value, params: &Value) {
        let meta = params.get("_meta").and_then(Value::as_object);
        let meta_str = |key: &str| {
            meta.and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let correlation_id = meta_str("intentproof/correlationId")
            .or_else(|| meta_str("traceparent").and_then(|t| trace_id(&t)))
            .or_else(|| self.plan.as_ref().map(|p| p.correlation_id.clone()))
            .unwrap_or_else(|| self.session_id.clone());
        let mut attributes = Attributes::new();
        attributes.insert("mcp.server".into(), text_attr(&self.config.server));
        attributes.insert("mcp.session_id".into(), text_attr(&self.session_id));
        attributes.insert("jsonrpc.id".into(), text_attr(id_key(id)));
        if let Some((name, version)) = &self.client {
            attributes.insert("mcp.client.name".into(), text_attr(name));
            attributes.insert("mcp.client.version".into(), text_attr(version));
        }
        let tool = match &kind {
            Kind::Tool(name) => {
                attributes.insert("mcp.tool".into(), text_attr(name));
                Some(name.clone())
            }
            _ => None,
        };
        // Which plan step this call is, if any: explicit, else by tool name.
        let explicit_step = meta
            .and_then(|m| m.get("intentproof/planStep"))
            .and_then(|s| {
                s.as_u64()
                    .map(|n| n as usize)
                    .or_else(|| s.as_str().and_then(|t| t.trim().parse().ok()))
            });
        let step = self.plan.as_ref().and_then(|plan| {
            explicit_step.filter(|i| *i < plan.steps.len()).or_else(|| {
                let tool = tool.as_deref()?;
                plan.steps
                    .iter()
                    .position(|(t, _)| t == tool || *t == action)
            })
        });
        let intent = meta_str("intentproof/intent")
            .or_else(|| {
                let plan = self.plan.as_ref()?;
                let (_, purpose) = plan.steps.get(step?)?;
                Some(purpose.clone().unwrap_or_else(|| plan.intent.clone()))
            })
            .or_else(|| {
                tool.as_ref()
                    .and_then(|t| self.config.default_intents.get(t).cloned())
            })
            .unwrap_or_else(|| UNDECLARED.to_owned());
        if let (Some(plan), Some(step)) = (&self.plan, step) {
            if plan.correlation_id == correlation_id {
                attributes.insert("intentproof.plan.id".into(), text_attr(&plan.id));
                attributes.insert(
                    "intentproof.plan.step".into(),
                    AttributeValue::from(step as u64),
                );
            }
        }
        self.pending.insert(
            id_key(id),
            Pending {
                kind,
                action,
                intent,
                correlation_id,
                inputs,
                attributes,
                started: SystemTime::now(),
                clock: Instant::now(),
            },
        );
    }

    fn declare_plan(
        &mut self,
        id: &Value,
        params: &Value,
        events: &mut Vec<ExecutionEvent>,
    ) -> Value {
        let arguments = params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let started = SystemTime::now();
        let clock = Instant::now();
        let parsed = parse_plan(&arguments);
        let (plan, result) = match parsed {
            Ok((intent, steps, ordered, correlation)) => {
                let plan = Plan {
                    id: intentproof_core::new_event_id(),
                    intent,
                    steps,
                    ordered,
                    correlation_id: correlation.unwrap_or_else(intentproof_core::new_event_id),
                };
                let listing: Vec<String> = plan
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(i, (tool, purpose))| match purpose {
                        Some(p) => format!("{}. {tool}: {p}", i + 1),
                        None => format!("{}. {tool}", i + 1),
                    })
                    .collect();
                let text = format!(
                    "Plan recorded (plan {}, correlation {}). Intent: {}. Steps:\n{}\nNow make these calls; each is checked against the plan, and steps that never succeed are flagged.",
                    plan.id,
                    plan.correlation_id,
                    plan.intent,
                    listing.join("\n")
                );
                let result = json!({
                    "content": [{"type": "text", "text": text}],
                    "structuredContent": {"plan_id": plan.id, "correlation_id": plan.correlation_id, "steps": plan.steps.len()},
                });
                (Some(plan), result)
            }
            Err(problem) => (
                None,
                json!({"content": [{"type": "text", "text": format!("Plan not recorded: {problem}")}], "isError": true}),
            ),
        };
        let elapsed = clock.elapsed();
        let (correlation_id, intent) = match &plan {
            Some(p) => (p.correlation_id.clone(), p.intent.clone()),
            None => (self.session_id.clone(), UNDECLARED.to_owned()),
        };
        let mut attributes = Attributes::new();
        attributes.insert("mcp.server".into(), text_attr(&self.config.server));
        attributes.insert("mcp.session_id".into(), text_attr(&self.session_id));
        attributes.insert("jsonrpc.id".into(), text_attr(id_key(id)));
        if let Some(p) = &plan {
            attributes.insert("intentproof.plan.id".into(), text_attr(&p.id));
            attributes.insert(
                "intentproof.plan.ordered".into(),
                AttributeValue::from(p.ordered),
            );
        }
        if let Some((name, version)) = &self.client {
            attributes.insert("mcp.client.name".into(), text_attr(name));
            attributes.insert("mcp.client.version".into(), text_attr(version));
        }
        let mut builder = ExecutionEvent::builder(intent, PLAN_ACTION)
            .correlation_id(correlation_id)
            .inputs(arguments)
            .attributes(attributes)
            .timing(
                format_rfc3339_millis(started),
                format_rfc3339_millis(started + elapsed),
                u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            );
        match &plan {
            Some(p) => {
                builder =
                    builder.output(json!({"plan_id": p.id, "correlation_id": p.correlation_id}))
            }
            None => {
                builder = builder.error(ErrorInfo {
                    name: "InvalidPlan".into(),
                    message: result["content"][0]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    stack: None,
                })
            }
        }
        events.push(builder.build());
        if plan.is_some() {
            self.plan = plan;
        }
        json!({"jsonrpc": "2.0", "id": id, "result": result})
    }

    /// Looks at a message from the server. Returns a replacement when the
    /// gateway changes it (the first page of `tools/list` gains the plan
    /// tool); events it completes are pushed to `events`.
    pub fn on_server(
        &mut self,
        message: &Value,
        events: &mut Vec<ExecutionEvent>,
    ) -> Option<Value> {
        if let Some(items) = message.as_array() {
            for item in items {
                let _ = self.on_server(item, events);
            }
            return None;
        }
        // Only responses (an id, no method) complete something.
        if message.get("method").is_some() {
            return None;
        }
        let key = id_key(message.get("id")?);
        if self.tool_lists.remove(&key).is_some() {
            return self.add_plan_tool(message);
        }
        let pending = self.pending.remove(&key)?;
        let outcome = match (message.get("result"), message.get("error")) {
            (_, Some(error)) => Err(ErrorInfo {
                name: format!(
                    "JsonRpcError({})",
                    error.get("code").map(Value::to_string).unwrap_or_default()
                ),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                stack: None,
            }),
            (Some(result), None) => Ok(result.clone()),
            (None, None) => Ok(Value::Null),
        };
        let event = match outcome {
            Ok(result) => {
                let output = output_of(&pending.kind, &result);
                let failed = result.get("isError").and_then(Value::as_bool) == Some(true);
                if failed {
                    let message =
                        first_text(&result).unwrap_or_else(|| "the tool reported an error".into());
                    self.finish(
                        pending,
                        Err(ErrorInfo {
                            name: "ToolError".into(),
                            message,
                            stack: None,
                        }),
                        Some(output),
                    )
                } else {
                    self.finish(pending, Ok(output), None)
                }
            }
            Err(error) => self.finish(pending, Err(error), None),
        };
        events.push(event);
        None
    }

    /// For fail-closed mode: a marker event saying the call `message`
    /// (already seen by [`Recorder::on_client`]) is about to be made. `None`
    /// when `message` is not a recorded call.
    pub fn started_marker(&self, message: &Value) -> Option<ExecutionEvent> {
        let pending = self.pending.get(&id_key(message.get("id")?))?;
        let mut attributes = pending.attributes.clone();
        attributes.insert("intentproof.call.action".into(), text_attr(&pending.action));
        Some(
            ExecutionEvent::builder(pending.intent.clone(), STARTED_ACTION)
                .correlation_id(pending.correlation_id.clone())
                .inputs(json!({"action": pending.action, "inputs": pending.inputs}))
                .attributes(attributes)
                .timing(
                    format_rfc3339_millis(pending.started),
                    format_rfc3339_millis(pending.started),
                    0,
                )
                .build(),
        )
    }

    /// Forgets a call that will not be made (fail-closed refusal).
    pub fn abandon(&mut self, message: &Value) {
        if let Some(id) = message.get("id") {
            self.pending.remove(&id_key(id));
        }
    }

    /// The upstream went away: every call under way fails. Returns the
    /// JSON-RPC error responses the agent must get.
    pub fn on_upstream_gone(
        &mut self,
        reason: &str,
        events: &mut Vec<ExecutionEvent>,
    ) -> Vec<Value> {
        let mut replies = Vec::new();
        let pending: Vec<(String, Pending)> = self.pending.drain().collect();
        for (key, call) in pending {
            let id: Value = serde_json::from_str(&key).unwrap_or(Value::Null);
            replies.push(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": reason}}),
            );
            events.push(self.finish(
                call,
                Err(ErrorInfo {
                    name: "UpstreamGone".into(),
                    message: reason.to_owned(),
                    stack: None,
                }),
                None,
            ));
        }
        replies
    }

    fn add_plan_tool(&self, message: &Value) -> Option<Value> {
        let name = self.config.plan_tool.as_ref()?;
        let tools = message.get("result")?.get("tools")?.as_array()?;
        if tools
            .iter()
            .any(|t| t.get("name").and_then(Value::as_str) == Some(name))
        {
            return None;
        }
        let mut changed = message.clone();
        if let Some(list) = changed
            .pointer_mut("/result/tools")
            .and_then(Value::as_array_mut)
        {
            list.push(plan_tool(name));
        }
        Some(changed)
    }

    fn finish(
        &self,
        pending: Pending,
        outcome: Result<Value, ErrorInfo>,
        error_output: Option<Value>,
    ) -> ExecutionEvent {
        let elapsed = pending.clock.elapsed();
        let mut builder = ExecutionEvent::builder(pending.intent, pending.action)
            .correlation_id(pending.correlation_id)
            .inputs(pending.inputs)
            .attributes(pending.attributes)
            .timing(
                format_rfc3339_millis(pending.started),
                format_rfc3339_millis(pending.started + elapsed),
                u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            );
        match outcome {
            Ok(output) => builder = builder.output(output),
            Err(error) => {
                if let Some(output) = error_output {
                    builder = builder.output(output);
                }
                builder = builder.error(error);
            }
        }
        builder.build()
    }
}

/// The recorded output of a call: for tools the content, structured content
/// and `isError`; for resources and prompts the whole result.
fn output_of(kind: &Kind, result: &Value) -> Value {
    match kind {
        Kind::Tool(_) => {
            let mut out = Map::new();
            for key in ["content", "structuredContent", "isError"] {
                if let Some(v) = result.get(key) {
                    out.insert(key.to_owned(), v.clone());
                }
            }
            Value::Object(out)
        }
        Kind::ResourceRead | Kind::PromptGet => result.clone(),
    }
}

fn first_text(result: &Value) -> Option<String> {
    result
        .get("content")?
        .as_array()?
        .iter()
        .find_map(|c| c.get("text").and_then(Value::as_str))
        .map(str::to_owned)
}

type ParsedPlan = (String, Vec<(String, Option<String>)>, bool, Option<String>);

fn parse_plan(arguments: &Value) -> Result<ParsedPlan, String> {
    let intent = arguments
        .get("intent")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or("`intent` is required: say what you mean to achieve")?
        .to_owned();
    let steps = arguments
        .get("steps")
        .and_then(Value::as_array)
        .ok_or("`steps` is required: a list of {tool, purpose}")?;
    if steps.is_empty() {
        return Err("`steps` is empty: list the tool calls you plan to make".into());
    }
    if steps.len() > 100 {
        return Err("`steps` has more than 100 entries".into());
    }
    let mut parsed = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let tool = step
            .get("tool")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("step {} has no `tool`", i + 1))?;
        let purpose = step
            .get("purpose")
            .and_then(Value::as_str)
            .map(str::to_owned);
        parsed.push((tool.to_owned(), purpose));
    }
    let ordered = arguments
        .get("ordered")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let correlation = arguments
        .get("correlation_id")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    Ok((intent, parsed, ordered, correlation))
}

/// The plan tool's definition, as listed to the agent.
pub fn plan_tool(name: &str) -> Value {
    json!({
        "name": name,
        "description": "Call this FIRST, before any other tool: declare what you intend to achieve and the tool calls you plan to make to achieve it. IntentProof records the plan, ties every following call to it, and flags steps that never succeed and calls outside the plan. Declare again to replace the plan.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "intent": {"type": "string", "description": "The outcome you mean to achieve, in one sentence (e.g. \"refund order ORD-1042 and email the receipt\")."},
                "steps": {
                    "type": "array",
                    "description": "The tool calls you plan to make, in order.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "tool": {"type": "string", "description": "Name of the tool you will call."},
                            "purpose": {"type": "string", "description": "What this call achieves."}
                        },
                        "required": ["tool"]
                    }
                },
                "ordered": {"type": "boolean", "description": "True when the steps must happen in this order."},
                "correlation_id": {"type": "string", "description": "Optional id tying this plan to a ticket or request."}
            },
            "required": ["intent", "steps"]
        }
    })
}
