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
//! - The proof core, all pure functions over bytes and JSON values:
//!   - [`canon`]: RFC 8785 canonical JSON (and strict parsing that rejects
//!     duplicate keys and integers beyond 2^53);
//!   - [`v1`]: the spec's signed form `intentproof.event.v1`, a lossless
//!     mapping to and from [`ExecutionEvent`], and content hashes;
//!   - [`keys`]: Ed25519 instance keys (`inst_<ULID>`, key id `<id>:k1`),
//!     stored 0600, exported as base64 or PEM;
//!   - [`seal`]: the thread-safe [`seal::Sealer`] (per-correlation hash
//!     chains, Ed25519 signatures) and event / chain verification with
//!     errors that say exactly what is wrong;
//!   - [`merkle`]: RFC 6962 / 9162 tree hashes, inclusion and consistency
//!     proofs, and the bundle's `event_merkle_root`;
//!   - [`schema`]: validation against the spec's embedded JSON Schemas.
//! - [`backoff`]: the one retry schedule (exponential, jittered, honouring
//!   `Retry-After`) of every loop in IntentProof that retries over the
//!   network; it computes waits, it never sleeps.
//!
//! What it does **not** do: it starts no threads, opens no sockets, and knows
//! nothing about tokio, HTTP or storage (the one file it writes is an
//! instance key, through [`keys::InstanceKey::create_in`]). Exporting events is the job of the
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

pub mod actions;
pub mod backoff;
pub mod canon;
pub mod checkpoint;
mod event;
pub mod keys;
pub mod merkle;
pub mod private_file;
pub mod schema;
pub mod seal;
pub mod snapshot;
mod time;
pub mod tlog;
pub mod v1;

pub use event::{
    AttributeValue, Attributes, ErrorInfo, EventBuilder, EventError, ExecutionEvent,
    RedactionSummary, Signature, Status, new_event_id,
};
pub use snapshot::{SerializeOptions, snapshot, snapshot_value};
pub use time::{format_rfc3339_millis, now_rfc3339_millis, parse_rfc3339};
