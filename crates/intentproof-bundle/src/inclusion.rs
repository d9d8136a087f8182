//! `inclusion_proof.json`: proof that each bundled event is in the
//! daemon's signed Merkle log.
//!
//! ```json
//! {
//!   "schema": "intentproof.bundle.inclusion.v1",
//!   "checkpoint": {"schema": "intentproof.checkpoint.v1", "tree_size": 8,
//!                  "root": "sha256:<hex>", "time": "2026-05-15T14:30:00.000Z",
//!                  "key_id": "<instance_id>:k1", "signature": "<base64>"},
//!   "proofs": {"<event_id>": {"leaf_index": 3, "proof": ["<hex>", ...]}}
//! }
//! ```
//!
//! The checkpoint is exactly the store's (`intentproof-store`,
//! `checkpoint.rs`): Ed25519, base64, over `SHA-256(JCS(checkpoint minus
//! signature))`. A leaf is the RFC 6962 leaf hash of the event's exact line
//! bytes in `events.jsonl` (the bytes the store journaled), at `leaf_index`
//! of the checkpoint's tree; `proof` is the RFC 9162 audit path, leaf
//! first, lowercase hex.
//!
//! A projected event (`auditor` / `counterparty` profiles, see
//! [`crate::projection`]) is not the journaled bytes, so its proof also
//! carries `leaf_hash`: the RFC 6962 leaf hash of the full event's
//! journaled line, lowercase hex. The proof then shows that this leaf is in
//! the signed log; that the leaf is the event the projection shows is
//! attested by the bundle signer (the manifest signature covers this
//! file), and whoever holds the full event can recompute both its leaf hash
//! and its content hash. A full event's proof carries no `leaf_hash` (its
//! line is the leaf).
//!
//! `tlog-proofs.jsonl` carries the same proofs in the transparency-log
//! ecosystem's form, one line per event, in events.jsonl's order:
//!
//! ```json
//! {"event_id": "<id>", "tlog_proof": "c2sp.org/tlog-proof@v1\nindex 3\n...", "leaf_hash": "<hex, projections only>"}
//! ```
//!
//! `tlog_proof` is a C2SP `tlog-proof` (save it as `<id>.tlog-proof` and
//! any C2SP verifier reads it): the audit path to a C2SP checkpoint note
//! signed by the daemon under its origin and, when witnesses cosigned it,
//! with their cosignatures; the exporter picks the largest cosigned
//! checkpoint that covers every bundled event, else the latest. The leaf is
//! as above. `intentproof verify --witness NAME=KEY` requires each named
//! witness's cosignature on every event's checkpoint.

use std::collections::BTreeMap;

pub use intentproof_core::checkpoint::{CHECKPOINT_SCHEMA, Checkpoint, parse_hash};

use intentproof_core::merkle::{Hash, hex};
use serde::{Deserialize, Serialize};

/// `schema` of `inclusion_proof.json`.
pub const INCLUSION_SCHEMA: &str = "intentproof.bundle.inclusion.v1";
/// One event's audit path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventProof {
    /// The leaf's index in the checkpoint's tree.
    pub leaf_index: u64,
    /// Sibling hashes, leaf first, lowercase hex.
    pub proof: Vec<String>,
    /// For a projected event only: the leaf hash of the full event's
    /// journaled line, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_hash: Option<String>,
}

impl EventProof {
    /// Builds one from hashes.
    pub fn new(leaf_index: u64, proof: &[Hash]) -> EventProof {
        EventProof {
            leaf_index,
            proof: proof.iter().map(hex).collect(),
            leaf_hash: None,
        }
    }

    /// The same proof for a projected event whose full journaled line has
    /// leaf hash `leaf`.
    pub fn with_leaf_hash(mut self, leaf: &Hash) -> EventProof {
        self.leaf_hash = Some(hex(leaf));
        self
    }

    /// The hashes, or which one is not 64 hex digits.
    pub fn hashes(&self) -> Result<Vec<Hash>, String> {
        parse_hashes(&self.proof)
    }
}

/// An audit path's hashes, or which one is not 64 hex digits.
fn parse_hashes(proof: &[String]) -> Result<Vec<Hash>, String> {
    proof
        .iter()
        .enumerate()
        .map(|(i, h)| {
            parse_hash(h).ok_or_else(|| format!("proof hash #{i} {h:?} is not 64 hex digits"))
        })
        .collect()
}

/// One line of `tlog-proofs.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlogProofLine {
    /// The event.
    pub event_id: String,
    /// Its C2SP `tlog-proof` text.
    pub tlog_proof: String,
    /// For a projected event only: the leaf hash of the full event's
    /// journaled line, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_hash: Option<String>,
}

/// The content of `inclusion_proof.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProofs {
    /// [`INCLUSION_SCHEMA`].
    pub schema: String,
    /// The signed checkpoint all proofs lead to.
    pub checkpoint: Checkpoint,
    /// Audit path per event id.
    pub proofs: BTreeMap<String, EventProof>,
}

impl InclusionProofs {
    /// Proofs against `checkpoint`.
    pub fn new(checkpoint: Checkpoint, proofs: BTreeMap<String, EventProof>) -> Self {
        InclusionProofs {
            schema: INCLUSION_SCHEMA.to_owned(),
            checkpoint,
            proofs,
        }
    }
}

/// `schema` of `fleet_inclusion.json`.
pub const FLEET_INCLUSION_SCHEMA: &str = "intentproof.bundle.fleet-inclusion.v1";

/// The content of `fleet_inclusion.json`: the inclusion proofs of a bundle
/// exported from the fleet view (`serve --fleet`), whose events several
/// daemons stored, each in its own Merkle log.
///
/// ```json
/// {
///   "schema": "intentproof.bundle.fleet-inclusion.v1",
///   "checkpoints": {"<daemon>": {"schema": "intentproof.checkpoint.v1", "tree_size": 8, ...}},
///   "proofs": {"<event_id>": {"daemon": "<daemon>", "leaf_index": 3, "proof": ["<hex>", ...]}}
/// }
/// ```
///
/// Each checkpoint is the one that daemon signed (its key is bundled as
/// `keys/<key_id>.pub`); each event's leaf (the RFC 6962 leaf hash of its
/// line in `events.jsonl`, as that daemon journaled it) leads by its audit
/// path to the root of its daemon's checkpoint. Fleet bundles carry full
/// events only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetInclusion {
    /// [`FLEET_INCLUSION_SCHEMA`].
    pub schema: String,
    /// Per daemon (its instance id), the checkpoint its proofs lead to.
    pub checkpoints: BTreeMap<String, Checkpoint>,
    /// Audit path per event id.
    pub proofs: BTreeMap<String, FleetEventProof>,
}

/// One event's audit path in a fleet bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetEventProof {
    /// The daemon that stored the event (a key of `checkpoints`).
    pub daemon: String,
    /// The leaf's index in that daemon's log.
    pub leaf_index: u64,
    /// Sibling hashes, leaf first, lowercase hex.
    pub proof: Vec<String>,
}

impl FleetEventProof {
    /// The hashes, or which one is not 64 hex digits.
    pub fn hashes(&self) -> Result<Vec<Hash>, String> {
        parse_hashes(&self.proof)
    }
}
