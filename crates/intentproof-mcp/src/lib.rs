//! The MCP gateway: every `tools/call`, `resources/read` and `prompts/get`
//! an agent makes through it becomes one [`ExecutionEvent`](intentproof_core::ExecutionEvent),
//! with the intent the agent declared. Both eras of the protocol: the
//! session-based revisions (up to 2025-11-25) and 2026-07-28's stateless
//! requests.
//!
//! **A relay, not a re-implementation.** The gateway forwards JSON-RPC
//! messages between agent and server as they are (the original bytes, not a
//! re-serialization), and only *observes* them, except for what it owns:
//! the `intentproof_declare_plan` tool it adds to `tools/list`, calls to
//! that tool, which it answers itself, what guard mode refuses or hides, and (on a shared stateless process
//! only) request ids, which it splices so clients cannot collide.
//! Everything else (progress tokens, cancellations, server-to-client
//! requests such as sampling, elicitation and roots, list-changed
//! notifications, `_meta`, errors, and methods that do not exist yet)
//! passes through untouched. This is deliberately not built on rmcp's
//! typed client/server handlers: re-serializing through typed structs
//! drops unknown fields and forces id and progress-token remapping, which
//! is exactly the kind of difference an agent could notice.
//!
//! - [`recorder`]: the protocol observer (transport-agnostic): one event
//!   per logical call (multi-round calls, tasks).
//! - [`stdio`]: `intentproof mcp -- <command>`: the agent's stdio server.
//! - [`lines`]: bounded stdio framing; a bad line is dropped, not fatal.
//! - [`http`]: `/mcp/<name>` (Streamable HTTP) for the session-based
//!   revisions, in front of stdio commands or remote servers (`remote`);
//!   sessions bounded and reaped.
//! - [`stateless`]: the same endpoint for 2026-07-28's stateless requests
//!   (told apart by their `MCP-Protocol-Version` header).
//! - [`pins`]: tool-definition pins per server, kept in the data dir.
//! - [`approver`]: who a call held for approval is asked of.
//! - [`config`]: the `[mcp]` section of the daemon's config.
//! - [`sink`]: where events go. This crate reaches the daemon only through
//!   [`sink::RecordSink`] (HTTP mode) and [`sink::StdioSink`] (stdio mode).
//! - [`demo`]: the built-in demo payments server (`intentproof demo-server`).
//!
//! What it does not do: seal, sign, store or deliver events (the daemon and
//! the stdio shipper in `intentproof-gateway` do), route HTTP (the daemon
//! mounts [`http::post`], [`http::get`] and [`http::delete`]), or read the
//! daemon's state.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod approver;
pub mod config;
pub mod demo;
pub mod http;
pub mod lines;
pub mod pins;
pub mod recorder;
pub(crate) mod remote;
pub mod sink;
pub mod stateless;
pub mod stdio;
mod streamable;

/// What [`parse_sse`] read from an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseRead {
    /// The data of each `message` event (or event with no type), in order.
    pub messages: Vec<String>,
    /// The last event id (`id:`), kept to resume from.
    pub last_id: Option<String>,
    /// The reconnection time (`retry:`) in milliseconds.
    pub retry: Option<u64>,
}

/// Feeds `chunks`, in order, to the `text/event-stream` parser of remote
/// upstreams (the one `remote` and `stateless` use) and returns what it
/// read, or its first error (a message over the size limit, data that is
/// not UTF-8). For fuzzing and tests only: the relay drives the parser
/// itself, chunk by chunk as the upstream's body arrives.
#[doc(hidden)]
pub fn parse_sse(chunks: &[&[u8]]) -> Result<SseRead, String> {
    let mut parser = remote::SseParser::default();
    let mut messages = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, &mut messages)?;
    }
    Ok(SseRead {
        messages,
        last_id: parser.last_id,
        retry: parser.retry,
    })
}
