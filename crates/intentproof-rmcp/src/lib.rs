//! IntentProof for rmcp, the Rust MCP SDK: an rmcp **client** (an agent)
//! or an rmcp **server** records every tool call it makes or handles, in
//! its own process, as the same [`ExecutionEvent`](intentproof_core::ExecutionEvent)s
//! the IntentProof gateway records for the same calls, with the intent of
//! the plan the agent declared.
//!
//! - [`RecordedClient`]: an rmcp client (any [`ClientHandler`](rmcp::ClientHandler))
//!   whose transport is a [`RecordingTransport`]: `tools/call`,
//!   `resources/read` and `prompts/get` each become one event;
//!   [`RecordedClient::declare_plan`] declares a plan through the gateway's
//!   plan tool (answered in-process, never sent to the server); requests
//!   carry the flow's correlation id and a W3C `traceparent` in `_meta`.
//! - [`Recorded`]: wraps an rmcp server (any [`ServerHandler`](rmcp::ServerHandler))
//!   and records every call it handles, honouring `_meta["intentproof/intent"]`
//!   and `_meta["intentproof/correlationId"]`; it offers the plan tool too.
//! - [`Recording`]: one MCP session: the gateway's
//!   [`Recorder`](intentproof_mcp::recorder::Recorder) and the
//!   [`IntentProofClient`](intentproof::IntentProofClient) its events go
//!   through (redacted, sealed and delivered as that client is configured;
//!   durably with [`Durability::Local`](intentproof::Durability::Local)).
//!
//! Both MCP revisions rmcp 3.11 speaks are recorded as the gateway records
//! them: 2025-11-25 (`initialize`; client and version from the handshake)
//! and 2026-07-28 (`server/discover`, then requests carrying the `_meta`
//! envelope; client and version from each request).
//!
//! **One way to build an event.** Both sides show the gateway's own
//! `Recorder` each message in its JSON-RPC form (the client side: rmcp's
//! outgoing and incoming messages as serialized on the wire; the server
//! side: each handled request with its `_meta` put back into `params`, and
//! the handler's answer), so intent and correlation resolution, plans,
//! multi-round calls, tasks and errors are the gateway's.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use intentproof::{IntentProofClient, IntentProofConfig, PlanDeclaration};
//! use intentproof_rmcp::{RecordedClient, RecorderConfig, Recording};
//! use intentproof_rmcp::rmcp::{model::CallToolRequestParams, transport::TokioChildProcess};
//!
//! let sink = IntentProofClient::new(IntentProofConfig::default());
//! let recording = Recording::new(RecorderConfig::new("payments"), sink.clone());
//! let mut server = tokio::process::Command::new("intentproof");
//! server.arg("demo-server");
//! let client = RecordedClient::serve((), TokioChildProcess::new(server)?, recording).await?;
//! client
//!     .declare_plan(&PlanDeclaration::new("refund order ORD-1042 and email the receipt")
//!         .step("refund_payment", "Refund the customer's card")
//!         .step("send_receipt_email", "Email the customer the refund receipt"))
//!     .await?;
//! let refund = serde_json::json!({"order_id": "ORD-1042", "amount_cents": 4999});
//! client
//!     .call_tool(CallToolRequestParams::new("refund_payment")
//!         .with_arguments(refund.as_object().cloned().unwrap_or_default()))
//!     .await?;
//! client.close().await?; // the plan closes: step 2 never ran (INCOMPLETE INTENT)
//! sink.flush().await;
//! # Ok(()) }
//! ```
//!
//! What it does not do: seal, store or deliver events itself (the
//! [`IntentProofClient`](intentproof::IntentProofClient) it is given does),
//! run the daemon, or relay bytes (that is the gateway, `intentproof mcp`).
//! On the client side a call that approval rules would hold is refused
//! (the wrapper cannot wait for a person); on the server side, requests the
//! handler makes of the client through its peer (2025-era sampling,
//! elicitation) are not seen, so they are not kept in the call's event as
//! the gateway keeps them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod recording;
mod server;

pub use client::{
    CORRELATION_META, Error, INTENT_META, PLAN_STEP_META, RecordedClient, RecordingTransport,
    TRACEPARENT_META, recording_transport,
};
/// The plan open in a session, as the recorder keeps it ([`Recording::plan`]).
pub use intentproof_mcp::recorder::Plan as OpenPlan;
pub use intentproof_mcp::recorder::{DEFAULT_PLAN_TOOL, RecorderConfig, UNDECLARED};
pub use recording::Recording;
pub use server::Recorded;

/// The rmcp these wrappers are built on (3.11): use it for the client and
/// server types, so the versions match.
pub use rmcp;
