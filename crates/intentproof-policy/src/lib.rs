//! IntentProof policies.
//!
//! - [`redact`]: redaction policies applied to inputs and outputs before an
//!   event is sealed or stored (library mode and gateway alike).
//! - [`guard`]: whether a call may reach its upstream (`enforce = "plan"`):
//!   the decision engine the MCP relay and the HTTP proxy share.
//! - [`verification`]: the spec's verification policy model
//!   (`intentproof.policy.v1`, JSON and YAML authoring form), its
//!   fingerprint, and the evaluator that turns a flow's events into an
//!   `intentproof.run.v1` run with findings.
//!
//! Pure: no I/O beyond what a caller hands in, no async runtime.
//!
//! What it does not do: load files or watch them (callers read the YAML
//! and hand it in), store runs or findings, or seal anything.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod guard;
pub mod redact;
pub mod verification;
