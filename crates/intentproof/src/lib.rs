//! IntentProof library mode: wrap the calls that matter, and every call
//! emits one verifiable [`ExecutionEvent`]: its intent, action, inputs,
//! output (or error) and timing.
//!
//! This is the Rust edition of the IntentProof SDK's client API. It owns:
//! the [`IntentProofClient`] and its wrappers ([`Wrapped`],
//! [`WrappedAsync`]), the correlation context that stitches the steps of one
//! flow together, and the [`Exporter`]s that deliver events
//! ([`MemoryExporter`], [`HttpExporter`], [`BoundedQueueExporter`]).
//!
//! It also keeps events durably when asked ([`Durability::Local`]: a local
//! outbox, on disk before the wrapped call returns, delivered from there),
//! seals them with a configured [`Sealer`], and declares plans from code
//! ([`IntentProofClient::declare_plan`]).
//!
//! What it does not do: index, query or verify events, or judge plans: the
//! record's format and its checks live in `intentproof-core`, and storage,
//! findings and proofs in the gateway daemon, where the events go.
//!
//! ```
//! use intentproof::{client, run_with_correlation_id, WrapOptions};
//! use serde_json::json;
//!
//! let create_refund = client()
//!     .wrap(
//!         WrapOptions::new("Initiate refund", "stripe.refunds.create"),
//!         |amount_cents: u64| Ok::<_, std::io::Error>(json!({"id": "re_1", "amountCents": amount_cents})),
//!     )
//!     .unwrap();
//!
//! run_with_correlation_id("req_refund_ord_1042", || create_refund.call(4999)).unwrap().unwrap();
//!
//! let event = client().memory().unwrap().events().pop().unwrap();
//! assert_eq!(event.correlation_id.as_deref(), Some("req_refund_ord_1042"));
//! assert_eq!(event.intent, "Initiate refund");
//! ```
//!
//! Correlation works across nested wraps on one thread and across `.await`
//! in one task; see [`correlation`] for carrying it into spawned tasks.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::sync::OnceLock;

mod client;
pub mod correlation;
mod dispatch;
mod error;
mod exporter;
mod options;
mod outbox;
mod plan;

pub use client::{IntentProofClient, Wrapped, WrappedAsync};
pub use correlation::{
    MAX_CORRELATION_ID_LEN, assert_correlation_id, get_correlation_id, run_with_correlation_id,
    with_correlation_id_async, with_current_correlation,
};
pub use error::{CorrelationError, OptionsError};
pub use exporter::{
    BatchDelivery, BatchFuture, BodyFormat, BodyHook, BoundedQueueExporter, Delivery, ExportError,
    ExportErrorHook, ExportFuture, Exporter, HttpExporter, HttpExporterConfig, MemoryExporter,
    envelope,
};
pub use intentproof_core::keys::InstanceKey;
pub use intentproof_core::seal::Sealer;
pub use intentproof_core::{
    AttributeValue, Attributes, ErrorInfo, ExecutionEvent, SerializeOptions, Status, snapshot,
};
pub use intentproof_policy::redact::{HashKey, RedactionPolicy, Redactor};
pub use options::{
    CaptureError, CaptureInput, CaptureOutput, Durability, ExporterErrorHook, ExporterFailure,
    IntentProofConfig, WrapOptions, assert_wrap_options_shape,
};
pub use outbox::OutboxError;
pub use plan::{Plan, PlanDeclaration, PlanError};

/// This crate's version, e.g. `"0.1.0"`.
///
/// ```
/// assert!(!intentproof::VERSION.is_empty());
/// ```
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A new, isolated client (for tests, workers, multi-tenant setups).
///
/// ```
/// let a = intentproof::create_intent_proof_client(Default::default());
/// let b = intentproof::create_intent_proof_client(Default::default());
/// assert!(!std::sync::Arc::ptr_eq(&a.memory().unwrap(), &b.memory().unwrap()));
/// ```
pub fn create_intent_proof_client(config: IntentProofConfig) -> IntentProofClient {
    IntentProofClient::new(config)
}

/// The process-wide default client, created on first use with the default
/// configuration (one [`MemoryExporter`]). Reconfigure it with
/// [`IntentProofClient::configure`].
///
/// ```
/// let a = intentproof::get_intent_proof_client();
/// let b = intentproof::client();
/// assert!(std::ptr::eq(a, b));
/// ```
pub fn get_intent_proof_client() -> &'static IntentProofClient {
    static CLIENT: OnceLock<IntentProofClient> = OnceLock::new();
    CLIENT.get_or_init(IntentProofClient::default)
}

/// The default singleton; the same as [`get_intent_proof_client`].
pub fn client() -> &'static IntentProofClient {
    get_intent_proof_client()
}
