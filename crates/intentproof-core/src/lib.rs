//! The IntentProof record.
//!
//! This crate owns the data every other part of IntentProof writes and
//! reads:
//!
//! - [`ExecutionEvent`]: one tool or function invocation, with its intent,
//!   action, inputs, output, status and timing, spelled in JSON exactly as the
//!   IntentProof SDKs spell it (camelCase).
//! - [`snapshot`]: the JSON-safe, size-bounded serializer that turns
//!   arbitrary inputs and outputs into what an event may carry.
//!
//! What it does **not** do: it starts no threads, opens no sockets, and knows
//! nothing about tokio, HTTP or storage. Exporting events is the job of the
//! `intentproof` crate; storing them is the daemon's.
//!
//! ```
//! use intentproof_core::{ExecutionEvent, Status};
//! use serde_json::json;
//!
//! let event = ExecutionEvent::builder("Initiate refund", "stripe.refunds.create")
//!     .inputs(json!([{"amountCents": 4999}]))
//!     .output(json!({"id": "re_1"}))
//!     .build();
//! assert_eq!(event.status, Status::Ok);
//! let wire = serde_json::to_value(&event).unwrap();
//! assert_eq!(wire["action"], "stripe.refunds.create");
//! assert!(wire.get("error").is_none(), "absent optional fields are omitted");
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod event;
pub mod snapshot;
mod time;

pub use event::{
    AttributeValue, Attributes, ErrorInfo, EventBuilder, EventError, ExecutionEvent,
    RedactionSummary, Signature, Status, new_event_id,
};
pub use snapshot::{SerializeOptions, snapshot, snapshot_value};
pub use time::{format_rfc3339_millis, now_rfc3339_millis};
