//! The MCP gateway: every `tools/call`, `resources/read` and `prompts/get`
//! an agent makes through it becomes one [`ExecutionEvent`](intentproof_core::ExecutionEvent),
//! with the intent the agent declared.
//!
//! **A relay, not a re-implementation.** The gateway forwards JSON-RPC
//! messages between agent and server as they are (the original bytes, not a
//! re-serialization), and only *observes* them, except for two things it
//! owns: the `intentproof_declare_plan` tool it adds to `tools/list`, and
//! calls to that tool, which it answers itself. Everything else (progress
//! tokens, cancellations, server-to-client requests such as sampling,
//! elicitation and roots, list-changed notifications, `_meta`, errors, and
//! methods that do not exist yet) passes through untouched, because request
//! ids and tokens are never rewritten. This is deliberately not built on
//! rmcp's typed client/server handlers: re-serializing through typed structs
//! drops unknown fields and forces id and progress-token remapping, which is
//! exactly the kind of difference an agent could notice.
//!
//! - [`recorder`]: the protocol observer (transport-agnostic).
//! - [`stdio`]: `intentproof mcp -- <command>`: the agent's stdio server.
//! - [`http`]: `/mcp/<name>` in the daemon (Streamable HTTP), in front of
//!   stdio commands or remote Streamable HTTP servers (`remote`); the
//!   session-based revisions (up to 2025-11-25).
//! - [`stateless`]: the same endpoint for revision 2026-07-28's stateless
//!   requests (told apart by their `MCP-Protocol-Version` header).
//! - [`shipper`]: seals events with this process's key, spools them to disk
//!   and delivers them to the daemon (starting it when none answers).

pub mod demo;
pub mod http;
pub mod recorder;
pub(crate) mod remote;
pub mod shipper;
pub mod stateless;
pub mod stdio;
