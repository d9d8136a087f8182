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

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use intentproof_core::canon::canonicalize;
use intentproof_core::merkle::{Hash, hex};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `schema` of `inclusion_proof.json`.
pub const INCLUSION_SCHEMA: &str = "intentproof.bundle.inclusion.v1";
/// `schema` of a store checkpoint.
pub const CHECKPOINT_SCHEMA: &str = "intentproof.checkpoint.v1";

/// A signed store checkpoint (same form as the store's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// [`CHECKPOINT_SCHEMA`].
    pub schema: String,
    /// Records covered.
    pub tree_size: u64,
    /// `"sha256:<hex>"` RFC 6962 root.
    pub root: String,
    /// When it was signed.
    pub time: String,
    /// The signing key.
    pub key_id: String,
    /// Base64 Ed25519 signature over SHA-256(JCS(checkpoint minus signature)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Checkpoint {
    /// The digest the signature covers.
    pub fn digest(&self) -> Result<[u8; 32], String> {
        let mut unsigned = self.clone();
        unsigned.signature = None;
        let value = serde_json::to_value(&unsigned).map_err(|e| e.to_string())?;
        let canonical = canonicalize(&value).map_err(|e| e.to_string())?;
        Ok(Sha256::digest(&canonical).into())
    }

    /// Signs a checkpoint of `tree_size` leaves with root `root` at `time`.
    pub fn sign(
        tree_size: u64,
        root: &Hash,
        time: &str,
        key: &SigningKey,
        key_id: &str,
    ) -> Result<Checkpoint, String> {
        let mut checkpoint = Checkpoint {
            schema: CHECKPOINT_SCHEMA.to_owned(),
            tree_size,
            root: format!("sha256:{}", hex(root)),
            time: time.to_owned(),
            key_id: key_id.to_owned(),
            signature: None,
        };
        let digest = checkpoint.digest()?;
        checkpoint.signature = Some(B64.encode(key.sign(&digest).to_bytes()));
        Ok(checkpoint)
    }

    /// Checks the signature with `key`; says what is wrong otherwise.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), String> {
        let sig = self
            .signature
            .as_deref()
            .ok_or_else(|| "the checkpoint is unsigned".to_owned())?;
        let bytes: [u8; 64] = B64
            .decode(sig)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "the checkpoint signature is not base64 of 64 bytes".to_owned())?;
        let digest = self.digest()?;
        key.verify_strict(&digest, &Signature::from_bytes(&bytes))
            .map_err(|_| {
                format!(
                    "the checkpoint signature does not verify with key {}",
                    self.key_id
                )
            })
    }

    /// The root as 32 bytes.
    pub fn root_hash(&self) -> Result<Hash, String> {
        parse_hash(self.root.strip_prefix("sha256:").unwrap_or("")).ok_or_else(|| {
            format!(
                "checkpoint root {:?} is not \"sha256:\" + 64 hex",
                self.root
            )
        })
    }
}

/// One event's audit path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventProof {
    /// The leaf's index in the checkpoint's tree.
    pub leaf_index: u64,
    /// Sibling hashes, leaf first, lowercase hex.
    pub proof: Vec<String>,
}

impl EventProof {
    /// Builds one from hashes.
    pub fn new(leaf_index: u64, proof: &[Hash]) -> EventProof {
        EventProof {
            leaf_index,
            proof: proof.iter().map(hex).collect(),
        }
    }

    /// The hashes, or which one is not 64 hex digits.
    pub fn hashes(&self) -> Result<Vec<Hash>, String> {
        self.proof
            .iter()
            .enumerate()
            .map(|(i, h)| {
                parse_hash(h).ok_or_else(|| format!("proof hash #{i} {h:?} is not 64 hex digits"))
            })
            .collect()
    }
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

/// Parses 64 lowercase or uppercase hex digits.
pub fn parse_hash(text: &str) -> Option<Hash> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}
