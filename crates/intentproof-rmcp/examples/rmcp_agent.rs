//! An rmcp agent that records its own tool calls: it declares a plan of
//! two steps, performs only the first, and closes. The record ends in a
//! verified proof bundle and an INCOMPLETE INTENT finding.
//!
//! The server is IntentProof's demo payments desk (an rmcp server, run in
//! this process over an in-memory pipe, not recording anything itself);
//! the events go to a real daemon (`intentproof serve` on a temporary data
//! dir). Both MCP revisions run, one after the other.
//!
//! ```text
//! INTENTPROOF_BIN=target/debug/intentproof cargo run -p intentproof-rmcp --example rmcp_agent
//! ```

#[path = "common/mod.rs"]
mod common;

use common::{Agent, Daemon, REVISIONS, Result, intentproof_bin, lifecycle};
use intentproof::PlanDeclaration;
use intentproof_mcp::demo::DemoPayments;
use intentproof_rmcp::rmcp::ServiceExt;
use intentproof_rmcp::rmcp::model::CallToolRequestParams;
use intentproof_rmcp::{RecordedClient, RecorderConfig, Recording};
use serde_json::json;

/// One agent session at `revision`; what it did, then what the daemon
/// holds of it.
async fn session(daemon: &Daemon, revision: &str) -> Result<Vec<String>> {
    let mut out = vec![format!(
        "== MCP {revision}: an rmcp agent recording its own calls =="
    )];
    // The server: an ordinary rmcp server on one end of a pipe.
    let (agent_end, server_end) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move {
        let server = DemoPayments::default().serve(server_end).await?;
        server.waiting().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    });

    // The agent: an rmcp client whose transport records every call.
    let sink = daemon.sink(&format!("agent-{revision}"))?;
    let recording = Recording::new(RecorderConfig::new("payments"), sink.clone());
    let client = RecordedClient::serve_with_lifecycle(
        Agent::named("refund-agent"),
        agent_end,
        lifecycle(revision),
        recording,
    )
    .await?;
    let tools = client.peer().list_all_tools().await?;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    out.push(format!("server offers: {}", names.join(", ")));

    let correlation = format!("refund-ORD-1042-{revision}");
    let plan = client
        .declare_plan(
            &PlanDeclaration::new("refund order ORD-1042 and email the receipt")
                .step("refund_payment", "Refund the customer's card")
                .step(
                    "send_receipt_email",
                    "Email the customer the refund receipt",
                )
                .correlation_id(&correlation),
        )
        .await?;
    out.push(format!(
        "plan declared: {:?} in flow {}",
        plan.intent, plan.correlation_id
    ));

    let arguments =
        json!({"order_id": "ORD-1042", "amount_cents": 4999, "card_number": "4242 4242 4242 4242"});
    let refund = client
        .call_tool(
            CallToolRequestParams::new("refund_payment")
                .with_arguments(arguments.as_object().cloned().unwrap_or_default()),
        )
        .await?;
    let said = refund
        .content
        .iter()
        .find_map(|c| c.as_text().map(|t| t.text.clone()))
        .unwrap_or_default();
    out.push(format!("refund_payment -> {said}"));
    out.push("the agent stops here: send_receipt_email is never called".into());

    // Closing ends the session: the plan is closed with its step 2 undone.
    client.close().await?;
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
