//! An rmcp server with built-in recording: IntentProof's demo payments desk
//! wrapped in `Recorded`, so every call it handles becomes an event in this
//! process. An ordinary rmcp client (recording nothing) declares a plan of
//! two steps through the plan tool the server now offers, makes one call
//! (naming its own intent in `_meta`), skips the other, and leaves. The
//! record ends in a verified proof bundle and an INCOMPLETE INTENT finding.
//!
//! Client and server run in this process over an in-memory pipe; the events
//! go to a real daemon (`intentproof serve` on a temporary data dir). Both
//! MCP revisions run, one after the other.
//!
//! ```text
//! INTENTPROOF_BIN=target/debug/intentproof cargo run -p intentproof-rmcp --example rmcp_server
//! ```

#[path = "common/mod.rs"]
mod common;

use common::{Agent, Daemon, REVISIONS, Result, intentproof_bin, lifecycle};
use intentproof_mcp::demo::DemoPayments;
use intentproof_rmcp::rmcp::ServiceExt;
use intentproof_rmcp::rmcp::model::{CallToolRequestParams, RequestMetaObject};
use intentproof_rmcp::rmcp::service::ClientServiceExt;
use intentproof_rmcp::{DEFAULT_PLAN_TOOL, INTENT_META, Recorded, RecorderConfig, Recording};
use serde_json::{Value, json};

fn object(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// One session at `revision`; what happened, then what the daemon holds.
async fn session(daemon: &Daemon, revision: &str) -> Result<Vec<String>> {
    let mut out = vec![format!(
        "== MCP {revision}: an rmcp server recording what it handles =="
    )];
    let (client_end, server_end) = tokio::io::duplex(1 << 16);

    // The server: the demo desk, recorded. One `Recording` per session.
    let sink = daemon.sink(&format!("server-{revision}"))?;
    let recording = Recording::new(RecorderConfig::new("payments"), sink.clone());
    let server = tokio::spawn({
        let recording = recording.clone();
        async move {
            let server = Recorded::new(DemoPayments::default(), recording.clone())
                .serve(server_end)
                .await?;
            server.waiting().await?;
            // The client left: the session ends, its plan is closed.
            recording.end();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }
    });

    // The client: plain rmcp, nothing recorded on its side.
    let client = Agent::named("desk-client")
        .serve_with_lifecycle(client_end, lifecycle(revision))
        .await?;
    let tools = client.list_all_tools().await?;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    out.push(format!("server offers: {}", names.join(", ")));

    let correlation = format!("desk-ORD-7-{revision}");
    let plan = client
        .call_tool(
            CallToolRequestParams::new(DEFAULT_PLAN_TOOL).with_arguments(object(json!({
                "intent": "refund order ORD-7 and email the receipt",
                "steps": [
                    {"tool": "refund_payment", "purpose": "Refund the customer's card"},
                    {"tool": "send_receipt_email", "purpose": "Email the customer the refund receipt"}
                ],
                "correlation_id": correlation,
            }))),
        )
        .await?;
    out.push(format!(
        "plan tool answered by the server's recorder: {} steps in flow {}",
        plan.structured_content
            .as_ref()
            .and_then(|s| s.get("steps"))
            .cloned()
            .unwrap_or_default(),
        plan.structured_content
            .as_ref()
            .and_then(|s| s.get("correlation_id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    ));

    // The call names its own intent in `_meta`; the server honours it.
    let mut meta = RequestMetaObject::new();
    meta.insert(
        INTENT_META.into(),
        Value::String("Refund ORD-7 to the card it was paid with".into()),
    );
    let mut refund = CallToolRequestParams::new("refund_payment").with_arguments(object(
        json!({"order_id": "ORD-7", "amount_cents": 1250, "card_number": "5555 5555 5555 4444"}),
    ));
    refund.meta = Some(meta);
    let refunded = client.call_tool(refund).await?;
    let said = refunded
        .content
        .iter()
        .find_map(|c| c.as_text().map(|t| t.text.clone()))
        .unwrap_or_default();
    out.push(format!("refund_payment -> {said}"));
    out.push("the client leaves without calling send_receipt_email".into());

    client.cancel().await?;
    server.await??;
    sink.flush().await;
    out.extend(daemon.report(&correlation)?);
    Ok(out)
}

/// Runs the example against the daemon of `bin`; what it prints.
pub fn run(bin: &std::path::Path) -> Result<String> {
    let daemon = Daemon::start(bin)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut out = Vec::new();
    for revision in REVISIONS {
        out.extend(runtime.block_on(session(&daemon, revision))?);
    }
    Ok(out.join("\n") + "\n")
}

fn main() -> Result<()> {
    print!("{}", run(&intentproof_bin())?);
    Ok(())
}
