//! [`EventMeta`]: what the store indexes about one signed v1 event, and the
//! one function that derives it, used alike by live ingest, index catch-up
//! and rebuild.

use ed25519_dalek::VerifyingKey;
use intentproof_core::seal::{self, VerifyError};
use intentproof_core::v1;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Whether an event's signature was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureState {
    /// Verified with the trusted key of its instance.
    Verified,
    /// Its instance has no trusted key yet: stored, but not verified.
    KeyUnknown,
    /// A trusted key exists and the signature does not match it.
    Invalid,
}

impl SignatureState {
    /// Wire spelling: `verified`, `key_unknown`, `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureState::Verified => "verified",
            SignatureState::KeyUnknown => "key_unknown",
            SignatureState::Invalid => "invalid",
        }
    }
}

/// The indexed facts of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    /// `event_id`.
    pub event_id: String,
    /// `instance_id`.
    pub instance_id: String,
    /// `correlation_id`.
    pub correlation_id: String,
    /// `chain_position` (>= 1).
    pub chain_position: u64,
    /// `prev_event_hash`.
    pub prev_event_hash: String,
    /// `"sha256:<hex>"` of the canonical event minus its signature.
    pub content_hash: String,
    /// `intent`.
    pub intent: String,
    /// `action`.
    pub action: String,
    /// `status`: `ok` or `error`.
    pub status: String,
    /// `started_at`.
    pub started_at: String,
    /// `completed_at`.
    pub completed_at: String,
    /// `duration_ms`.
    pub duration_ms: u64,
    /// Signature check result.
    pub signature: SignatureState,
}

/// Why an event cannot be indexed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A required member is missing or has the wrong type.
    #[error("field `{field}` {problem}")]
    Field {
        /// The member's name.
        field: &'static str,
        /// What is wrong, e.g. "is missing" or "must be a string".
        problem: &'static str,
    },
    /// The signature is present but wrong for a trusted key.
    #[error(transparent)]
    Signature(#[from] VerifyError),
    /// The event cannot be canonicalized (so it has no content hash).
    #[error("event cannot be canonicalized: {0}")]
    Canon(String),
}

fn string(value: &Value, field: &'static str) -> Result<String, MetaError> {
    match value.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(MetaError::Field {
            field,
            problem: "must not be empty",
        }),
        Some(_) => Err(MetaError::Field {
            field,
            problem: "must be a string",
        }),
        None => Err(MetaError::Field {
            field,
            problem: "is missing",
        }),
    }
}

fn integer(value: &Value, field: &'static str) -> Result<u64, MetaError> {
    match value.get(field) {
        Some(v) => v.as_u64().ok_or(MetaError::Field {
            field,
            problem: "must be a non-negative integer",
        }),
        None => Err(MetaError::Field {
            field,
            problem: "is missing",
        }),
    }
}

impl EventMeta {
    /// Derives the indexed facts of a signed v1 event, checking its
    /// signature when `key` (the instance's trusted key) is given.
    ///
    /// `Err(MetaError::Signature)` means a trusted key exists and the
    /// signature does not verify (or is malformed); with no key the event is
    /// [`SignatureState::KeyUnknown`]. Use [`EventMeta::from_v1_lenient`]
    /// where a bad signature must be recorded rather than refused.
    pub fn from_v1(value: &Value, key: Option<&VerifyingKey>) -> Result<EventMeta, MetaError> {
        let (mut meta, digest) = Self::unsigned_facts(value)?;
        if let Some(key) = key {
            seal::verify_event_with_digest(value, key, &digest)?;
            meta.signature = SignatureState::Verified;
        }
        Ok(meta)
    }

    /// Like [`EventMeta::from_v1`], but a signature that does not verify
    /// gives [`SignatureState::Invalid`] instead of an error (for rebuild
    /// and verification, which must index what the journal holds).
    pub fn from_v1_lenient(
        value: &Value,
        key: Option<&VerifyingKey>,
    ) -> Result<EventMeta, MetaError> {
        let (mut meta, digest) = Self::unsigned_facts(value)?;
        if let Some(key) = key {
            meta.signature = match seal::verify_event_with_digest(value, key, &digest) {
                Ok(_) => SignatureState::Verified,
                Err(_) => SignatureState::Invalid,
            };
        }
        Ok(meta)
    }

    /// The facts of a stored event, read back from its journal record:
    /// `content_hash` and the signature state come from the index (so the
    /// event is neither canonicalized nor checked again).
    pub fn from_stored(
        value: &Value,
        content_hash: String,
        signature: SignatureState,
    ) -> Result<EventMeta, MetaError> {
        let mut meta = Self::facts(value, |_| Ok(content_hash))?;
        meta.signature = signature;
        Ok(meta)
    }

    /// The facts, and the content digest behind `content_hash` (so the
    /// signature check does not canonicalize and hash the event again).
    fn unsigned_facts(value: &Value) -> Result<(EventMeta, [u8; 32]), MetaError> {
        let mut digest = [0u8; 32];
        let meta = Self::facts(value, |object| {
            digest = v1::content_digest(object).map_err(|e| MetaError::Canon(e.to_string()))?;
            Ok(v1::sha256_prefixed(&digest))
        })?;
        Ok((meta, digest))
    }

    /// The facts, with `content_hash` from `hash` (called once the
    /// position and status are known to be valid).
    fn facts(
        value: &Value,
        hash: impl FnOnce(&serde_json::Map<String, Value>) -> Result<String, MetaError>,
    ) -> Result<EventMeta, MetaError> {
        let object = value.as_object().ok_or(MetaError::Field {
            field: "event",
            problem: "must be a JSON object",
        })?;
        let chain_position = integer(value, "chain_position")?;
        if chain_position == 0 {
            return Err(MetaError::Field {
                field: "chain_position",
                problem: "must be 1 or more",
            });
        }
        let status = string(value, "status")?;
        if status != "ok" && status != "error" {
            return Err(MetaError::Field {
                field: "status",
                problem: "must be \"ok\" or \"error\"",
            });
        }
        let content_hash = hash(object)?;
        let meta = EventMeta {
            event_id: string(value, "event_id")?,
            instance_id: string(value, "instance_id")?,
            correlation_id: string(value, "correlation_id")?,
            chain_position,
            prev_event_hash: string(value, "prev_event_hash")?,
            content_hash,
            intent: string(value, "intent")?,
            action: string(value, "action")?,
            status,
            started_at: string(value, "started_at")?,
            completed_at: string(value, "completed_at")?,
            duration_ms: integer(value, "duration_ms")?,
            signature: SignatureState::KeyUnknown,
        };
        Ok(meta)
    }
}
