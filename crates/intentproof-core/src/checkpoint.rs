//! Signed checkpoints of a Merkle log: `(tree_size, root, time, key_id)`,
//! Ed25519-signed over `SHA-256(JCS(checkpoint minus signature))`, base64.
//!
//! The store signs them over its journal; bundles carry one so each event's
//! inclusion proof can be checked offline. One type serves both, so the
//! two can never disagree on the format.
//!
//! ```
//! use intentproof_core::checkpoint::Checkpoint;
//! use intentproof_core::keys::InstanceKey;
//! let key = InstanceKey::from_seed("inst_cp", [1u8; 32]);
//! let cp = Checkpoint::sign(3, &[7u8; 32], "2026-01-01T00:00:00.000Z", key.signing_key(), &key.key_id()).unwrap();
//! cp.verify(&key.verifying_key()).unwrap();
//! assert_eq!(cp.root_hash().unwrap(), [7u8; 32]);
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canon::canonicalize;
use crate::merkle::{Hash, hex};

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
        crate::keys::verify_strict(key, &digest, &Signature::from_bytes(&bytes)).map_err(|_| {
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
