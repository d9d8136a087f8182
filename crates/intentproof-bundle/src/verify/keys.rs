//! Keys: those the caller trusts ([`TrustedKey`]), those the bundle carries
//! (`keys/<key_id>.pub`), and the ring that says which key checks which
//! signature.

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::VerifyingKey;

use super::VerifyOptions;
use crate::manifest::KEYS_DIR;

/// A public key the verifier trusts (from `--key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// The key id it stands for, when known. A key without an id is tried
    /// for the manifest signature and for any signature whose key is not
    /// otherwise known.
    pub key_id: Option<String>,
    /// The key.
    pub key: VerifyingKey,
}

/// Parses a public key file: 32 raw bytes, base64 of 32 bytes, PEM
/// `PUBLIC KEY` (Ed25519 SPKI), or 64 hex digits. Weak (small-order) keys
/// are refused.
pub fn parse_public_key_bytes(bytes: &[u8]) -> Result<VerifyingKey, String> {
    let key = if bytes.len() == 32 {
        let raw: [u8; 32] = bytes.try_into().map_err(|_| "not 32 bytes".to_owned())?;
        VerifyingKey::from_bytes(&raw).map_err(|e| format!("not an Ed25519 public key: {e}"))?
    } else {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| "neither 32 raw bytes nor text (base64, PEM or hex)".to_owned())?
            .trim();
        match crate::inclusion::parse_hash(text) {
            Some(raw) => VerifyingKey::from_bytes(&raw)
                .map_err(|e| format!("not an Ed25519 public key: {e}"))?,
            None => intentproof_core::keys::parse_public_key(text).map_err(|e| e.to_string())?,
        }
    };
    if key.is_weak() {
        return Err("a weak (small-order) Ed25519 key, which anyone can sign for".into());
    }
    Ok(key)
}

pub(super) struct KeyRing {
    /// keys/<id>.pub, parsed (Err: why not).
    pub(super) bundled: BTreeMap<String, Result<VerifyingKey, String>>,
    pub(super) trusted_by_id: HashMap<String, VerifyingKey>,
    anonymous: Vec<VerifyingKey>,
    /// Whether the manifest signature was verified (bundled keys are then
    /// vouched for by a trusted key).
    pub(super) manifest_authenticated: bool,
}

impl KeyRing {
    pub(super) fn bundled(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.bundled.get(key_id).and_then(|k| k.as_ref().ok())
    }

    /// The single key strict checks use for `key_id`, if one is known:
    /// the given key with that id, else the bundled one.
    pub(super) fn strict_key(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.trusted_by_id
            .get(key_id)
            .or_else(|| self.bundled(key_id))
    }

    /// Any key at all for `key_id` (the single key, else the anonymous ones).
    pub(super) fn candidates(&self, key_id: &str) -> Vec<VerifyingKey> {
        match self.strict_key(key_id) {
            Some(k) => vec![*k],
            None => self.anonymous.clone(),
        }
    }
}

pub(super) fn key_ring(
    members: &HashMap<&str, &[u8]>,
    options: &VerifyOptions,
    manifest_authenticated: bool,
) -> KeyRing {
    let mut bundled = BTreeMap::new();
    for (path, bytes) in members {
        if let Some(id) = path
            .strip_prefix(KEYS_DIR)
            .and_then(|p| p.strip_suffix(".pub"))
        {
            bundled.insert(id.to_owned(), parse_public_key_bytes(bytes));
        }
    }
    let mut trusted_by_id = HashMap::new();
    let mut anonymous = Vec::new();
    for k in &options.trusted_keys {
        match &k.key_id {
            Some(id) => {
                trusted_by_id.insert(id.clone(), k.key);
            }
            None => anonymous.push(k.key),
        }
    }
    KeyRing {
        bundled,
        trusted_by_id,
        anonymous,
        manifest_authenticated,
    }
}
