//! A tiny built-in MCP server for demos and tests: a payments desk with two
//! tools, `refund_payment` and `send_receipt_email`, and a harmless
//! `lookup_order`. It speaks MCP over stdio (newline-delimited JSON-RPC) and
//! keeps no state; its answers are deterministic.
//!
//! Run it behind the gateway: `intentproof mcp --name payments -- intentproof demo-server`.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The server's tools.
pub fn tools() -> Value {
    json!([
        {
            "name": "refund_payment",
            "description": "Refund a captured card payment for an order.",
            "inputSchema": {"type": "object", "properties": {
                "order_id": {"type": "string"}, "amount_cents": {"type": "integer"},
                "card_number": {"type": "string", "description": "Card to refund to (the demo accepts test numbers)."}
            }, "required": ["order_id", "amount_cents"]}
        },
        {
            "name": "send_receipt_email",
            "description": "Email the customer a receipt for a refund.",
            "inputSchema": {"type": "object", "properties": {
                "order_id": {"type": "string"}, "email": {"type": "string"}, "refund_id": {"type": "string"}
            }, "required": ["order_id", "email"]}
        },
        {
            "name": "lookup_order",
            "description": "Look up an order's status.",
            "inputSchema": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
        }
    ])
}

fn text_result(text: String, structured: Value) -> Value {
    json!({"content": [{"type": "text", "text": text}], "structuredContent": structured})
}

/// Answers one request, or `None` for notifications.
pub fn answer(message: &Value) -> Option<Value> {
    let id = message.get("id")?.clone();
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let result = match method {
        "initialize" => json!({
            "protocolVersion": params.get("protocolVersion").cloned().unwrap_or_else(|| json!("2025-06-18")),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "intentproof-demo-payments", "version": env!("CARGO_PKG_VERSION")},
            "instructions": "A demo payments desk: refunds and receipts."
        }),
        "ping" => json!({}),
        "tools/list" => json!({"tools": tools()}),
        "tools/call" => {
            let args = params
                .get("arguments")
                .cloned()
                .unwrap_or_else(|| json!({}));
            let order = args
                .get("order_id")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned();
            match params.get("name").and_then(Value::as_str) {
                Some("refund_payment") => {
                    let cents = args
                        .get("amount_cents")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    let refund_id = format!("re_{}", order.replace('-', "_").to_lowercase());
                    text_result(
                        format!(
                            "Refunded {}.{:02} for {order}: {refund_id}",
                            cents / 100,
                            cents % 100
                        ),
                        json!({"refund_id": refund_id, "status": "succeeded", "amount_cents": cents}),
                    )
                }
                Some("send_receipt_email") => {
                    let email = args
                        .get("email")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    text_result(
                        format!("Receipt for {order} queued to {email}"),
                        json!({"message_id": "msg_demo_1", "status": "queued"}),
                    )
                }
                Some("lookup_order") => text_result(
                    format!("{order}: captured, refundable"),
                    json!({"order_id": order, "status": "captured"}),
                ),
                other => {
                    return Some(
                        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": format!("unknown tool {other:?}")}}),
                    );
                }
            }
        }
        _ => {
            return Some(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("method not found: {method}")}}),
            );
        }
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// Serves MCP on this process's stdin/stdout until stdin closes.
pub async fn run() -> std::io::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(reply) = answer(&message) {
            out.write_all(format!("{reply}\n").as_bytes()).await?;
            out.flush().await?;
        }
    }
    Ok(())
}
