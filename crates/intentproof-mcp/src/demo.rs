//! A tiny built-in MCP server for demos and tests: a payments desk with two
//! tools, `refund_payment` and `send_receipt_email`, and a harmless
//! `lookup_order`. It keeps no state; its answers are deterministic.
//!
//! It is an rmcp server (`#[tool_router]` / `#[tool_handler]`) on stdio, so
//! the protocol is rmcp's: the session-based revisions (`initialize`, the
//! client's version echoed when rmcp supports it, else its newest one) and
//! 2026-07-28 (`server/discover`, or requests carrying the `_meta`
//! envelope), chosen by the first request. The gateway that relays it still
//! forwards bytes; rmcp is only this peer.
//!
//! What the tools accept is what they did when the server was hand-built
//! JSON: the input schemas are spelled out (not derived), tools are listed
//! in their declared order, and a missing argument takes its default
//! (`order_id` "unknown", `amount_cents` 0, `email` "").
//!
//! Run it behind the gateway: `intentproof mcp --name payments -- intentproof demo-server`.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CacheScope, CallToolResult, ContentBlock, Implementation, JsonObject, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};

/// The server's name in `serverInfo`.
pub const NAME: &str = "intentproof-demo-payments";
/// The server's `instructions`.
pub const INSTRUCTIONS: &str = "A demo payments desk: refunds and receipts.";
/// The tools, in the order `tools/list` gives them.
pub const TOOLS: [&str; 3] = ["refund_payment", "send_receipt_email", "lookup_order"];

fn unknown_order() -> String {
    "unknown".into()
}

/// `refund_payment`'s arguments. `card_number` is accepted and not used.
#[derive(Debug, Deserialize)]
struct RefundPayment {
    #[serde(default = "unknown_order")]
    order_id: String,
    #[serde(default)]
    amount_cents: i64,
}

/// `send_receipt_email`'s arguments. `refund_id` is accepted and not used.
#[derive(Debug, Deserialize)]
struct SendReceiptEmail {
    #[serde(default = "unknown_order")]
    order_id: String,
    #[serde(default)]
    email: String,
}

/// `lookup_order`'s arguments.
#[derive(Debug, Deserialize)]
struct LookupOrder {
    #[serde(default = "unknown_order")]
    order_id: String,
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(object) => Arc::new(object),
        _ => unreachable!("an input schema is a JSON object"),
    }
}

fn refund_payment_schema() -> Arc<JsonObject> {
    schema(json!({"type": "object", "properties": {
        "order_id": {"type": "string"}, "amount_cents": {"type": "integer"},
        "card_number": {"type": "string", "description": "Card to refund to (the demo accepts test numbers)."}
    }, "required": ["order_id", "amount_cents"]}))
}

fn send_receipt_email_schema() -> Arc<JsonObject> {
    schema(json!({"type": "object", "properties": {
        "order_id": {"type": "string"}, "email": {"type": "string"}, "refund_id": {"type": "string"}
    }, "required": ["order_id", "email"]}))
}

fn lookup_order_schema() -> Arc<JsonObject> {
    schema(
        json!({"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}),
    )
}

/// A text result with the same data as structured content.
fn text_result(text: String, structured: Value) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(structured);
    result
}

/// The demo payments desk.
#[derive(Debug, Clone)]
pub struct DemoPayments {
    tool_router: ToolRouter<Self>,
}

impl Default for DemoPayments {
    fn default() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl DemoPayments {
    #[tool(
        description = "Refund a captured card payment for an order.",
        input_schema = refund_payment_schema()
    )]
    async fn refund_payment(&self, Parameters(args): Parameters<RefundPayment>) -> CallToolResult {
        let RefundPayment {
            order_id,
            amount_cents: cents,
        } = args;
        let refund_id = format!("re_{}", order_id.replace('-', "_").to_lowercase());
        text_result(
            format!(
                "Refunded {}.{:02} for {order_id}: {refund_id}",
                cents / 100,
                cents % 100
            ),
            json!({"refund_id": refund_id, "status": "succeeded", "amount_cents": cents}),
        )
    }

    #[tool(
        description = "Email the customer a receipt for a refund.",
        input_schema = send_receipt_email_schema()
    )]
    async fn send_receipt_email(
        &self,
        Parameters(args): Parameters<SendReceiptEmail>,
    ) -> CallToolResult {
        text_result(
            format!("Receipt for {} queued to {}", args.order_id, args.email),
            json!({"message_id": "msg_demo_1", "status": "queued"}),
        )
    }

    #[tool(
        description = "Look up an order's status.",
        input_schema = lookup_order_schema()
    )]
    async fn lookup_order(&self, Parameters(args): Parameters<LookupOrder>) -> CallToolResult {
        text_result(
            format!("{}: captured, refundable", args.order_id),
            json!({"order_id": args.order_id, "status": "captured"}),
        )
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoPayments {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(NAME, env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    /// As `#[tool_handler]` would list them, but in [`TOOLS`] order (the
    /// router's own list is sorted by name).
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = self.tool_router.list_all();
        tools.sort_by_key(|tool| TOOLS.iter().position(|name| *name == tool.name));
        let mut result = ListToolsResult::with_all_items(tools);
        if context
            .protocol_version()
            .is_some_and(|version| version >= ProtocolVersion::V_2026_07_28)
        {
            result = result.with_ttl_ms(0).with_cache_scope(CacheScope::Public);
        }
        Ok(result)
    }
}

/// Serves MCP on this process's stdin/stdout until stdin closes.
pub async fn run() -> std::io::Result<()> {
    let service = DemoPayments::default()
        .serve(rmcp::transport::stdio())
        .await
        .map_err(std::io::Error::other)?;
    service.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_router_serves_exactly_the_listed_tools() {
        let mut routed: Vec<String> = DemoPayments::default()
            .tool_router
            .list_all()
            .into_iter()
            .map(|tool| tool.name.into_owned())
            .collect();
        routed.sort();
        let mut listed = TOOLS.map(str::to_owned).to_vec();
        listed.sort();
        assert_eq!(routed, listed);
    }

    #[test]
    fn the_tools_are_described_as_before() {
        let tools: Value =
            serde_json::to_value(DemoPayments::default().tool_router.list_all()).unwrap();
        let by_name = |name: &str| {
            tools
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == name)
                .unwrap()
                .clone()
        };
        assert_eq!(
            by_name("refund_payment"),
            json!({
                "name": "refund_payment",
                "description": "Refund a captured card payment for an order.",
                "inputSchema": {"type": "object", "properties": {
                    "order_id": {"type": "string"}, "amount_cents": {"type": "integer"},
                    "card_number": {"type": "string", "description": "Card to refund to (the demo accepts test numbers)."}
                }, "required": ["order_id", "amount_cents"]}
            })
        );
        assert_eq!(
            by_name("send_receipt_email"),
            json!({
                "name": "send_receipt_email",
                "description": "Email the customer a receipt for a refund.",
                "inputSchema": {"type": "object", "properties": {
                    "order_id": {"type": "string"}, "email": {"type": "string"}, "refund_id": {"type": "string"}
                }, "required": ["order_id", "email"]}
            })
        );
        assert_eq!(
            by_name("lookup_order"),
            json!({
                "name": "lookup_order",
                "description": "Look up an order's status.",
                "inputSchema": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
            })
        );
    }
}
