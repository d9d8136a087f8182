//! Event projections: what the `auditor` and `counterparty` export
//! profiles put in `events.jsonl` instead of the full signed events.
//!
//! A projection (`intentproof.event.projection.v1`) of a signed
//! `intentproof.event.v1` event is one JSON object:
//!
//! ```json
//! {"schema": "intentproof.event.projection.v1", "projection": "counterparty",
//!  "event_id": "...", "chain_position": 2, "prev_event_hash": "sha256:...", ...,
//!  "withheld": {"inputs": "sha256:<hex>", "intent": "sha256:<hex>", ...},
//!  "content_hash": "sha256:<hex>",
//!  "event_signature": {"alg": "ed25519", "key_id": "...", "value": "..."}}
//! ```
//!
//! - the kept fields ([`Profile::keeps`]) are copied verbatim;
//! - `withheld` maps every other field of the event (but `schema` and
//!   `signature`) to `"sha256:" + hex(SHA-256(JCS(value)))`
//!   ([`withheld_hash`]), so whoever holds the full event can check a
//!   disclosed value against the bundle;
//! - `content_hash` is the full event's content hash: what its signature
//!   covers and what the next event's `prev_event_hash` carries;
//! - `event_signature` is the event's original `signature`, under another
//!   name, because the reference verifier checks a top-level `signature`
//!   against the line itself.
//!
//! The event signature attests `content_hash` and, through
//! `prev_event_hash`, the chain. It does not attest the visible fields:
//! that a projection's visible fields are those of the event its
//! `content_hash` names is attested by the bundle signer (the manifest
//! signature). The source `schema` is always `intentproof.event.v1`
//! (only those events are projected), so it is replaced, not withheld.
//!
//! The line is the JCS canonical form of the object, so the same event
//! gives the same bytes.

use intentproof_core::canon::{CanonError, canonicalize};
use intentproof_core::v1::{SCHEMA as EVENT_SCHEMA, content_hash, sha256_prefixed};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `schema` of a projection.
pub const PROJECTION_SCHEMA: &str = "intentproof.event.projection.v1";

/// Members a projection has besides the kept event fields.
pub const PROJECTION_MEMBERS: [&str; 5] = [
    "schema",
    "projection",
    "withheld",
    "content_hash",
    "event_signature",
];

/// Fields the `auditor` profile withholds (besides `signature`, which
/// moves to `event_signature`).
pub const AUDITOR_WITHHELD: [&str; 3] = ["inputs", "output", "untrusted_payload"];

/// The only fields the `counterparty` profile keeps.
pub const COUNTERPARTY_KEPT: [&str; 12] = [
    "event_id",
    "tenant_id",
    "instance_id",
    "correlation_id",
    "chain_position",
    "prev_event_hash",
    "action",
    "status",
    "started_at",
    "completed_at",
    "duration_ms",
    "spec_version",
];

/// A projecting export profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Everything but the payloads (`inputs`, `output`, `untrusted_payload`).
    Auditor,
    /// Identity, chain, action, status and timing only
    /// ([`COUNTERPARTY_KEPT`]).
    Counterparty,
}

impl Profile {
    /// The profile named `name` (`auditor` or `counterparty`); `None` for
    /// any other name, `full` included.
    pub fn from_name(name: &str) -> Option<Profile> {
        match name {
            "auditor" => Some(Profile::Auditor),
            "counterparty" => Some(Profile::Counterparty),
            _ => None,
        }
    }

    /// Its name, as in `verification_profile.export_profile`.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Auditor => "auditor",
            Profile::Counterparty => "counterparty",
        }
    }

    /// Whether the profile copies the event field `field` into the projection.
    pub fn keeps(self, field: &str) -> bool {
        if matches!(field, "schema" | "signature") {
            return false;
        }
        match self {
            Profile::Auditor => !AUDITOR_WITHHELD.contains(&field),
            Profile::Counterparty => COUNTERPARTY_KEPT.contains(&field),
        }
    }
}

/// Why an event cannot be projected.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Not a signed `intentproof.event.v1` event.
    #[error("not a signed {EVENT_SCHEMA} event: {0}")]
    NotSignedEvent(String),
    /// A value cannot be canonicalized.
    #[error("cannot canonicalize the event: {0}")]
    Canon(#[from] CanonError),
}

/// `"sha256:" + hex(SHA-256(JCS(value)))`: how a withheld value is committed to.
///
/// ```
/// let h = intentproof_bundle::projection::withheld_hash(&serde_json::json!({"b": 1, "a": 2})).unwrap();
/// // SHA-256 of `{"a":2,"b":1}`.
/// assert_eq!(h, intentproof_bundle::manifest::sha256_of(br#"{"a":2,"b":1}"#));
/// ```
pub fn withheld_hash(value: &Value) -> Result<String, CanonError> {
    Ok(sha256_prefixed(
        &Sha256::digest(canonicalize(value)?).into(),
    ))
}

/// The projection of a signed v1 event with `profile`, as one line (JCS,
/// no newline).
pub fn project(event: &Map<String, Value>, profile: Profile) -> Result<Vec<u8>, ProjectionError> {
    if event.get("schema").and_then(Value::as_str) != Some(EVENT_SCHEMA) {
        return Err(ProjectionError::NotSignedEvent(
            "its schema is not intentproof.event.v1".into(),
        ));
    }
    let Some(signature @ Value::Object(_)) = event.get("signature") else {
        return Err(ProjectionError::NotSignedEvent(
            "it has no signature".into(),
        ));
    };
    let mut out = Map::new();
    let mut withheld = Map::new();
    for (field, value) in event {
        if profile.keeps(field) {
            out.insert(field.clone(), value.clone());
        } else if !matches!(field.as_str(), "schema" | "signature") {
            withheld.insert(field.clone(), Value::String(withheld_hash(value)?));
        }
    }
    out.insert("schema".into(), PROJECTION_SCHEMA.into());
    out.insert("projection".into(), profile.name().into());
    out.insert("withheld".into(), Value::Object(withheld));
    out.insert("content_hash".into(), content_hash(event)?.into());
    out.insert("event_signature".into(), signature.clone());
    Ok(canonicalize(&Value::Object(out))?)
}

/// Whether a JSON line looks like a projection: its `schema` is
/// [`PROJECTION_SCHEMA`] or it has any member only projections have.
pub fn is_projection(obj: &Map<String, Value>) -> bool {
    obj.get("schema").and_then(Value::as_str) == Some(PROJECTION_SCHEMA)
        || PROJECTION_MEMBERS[1..].iter().any(|m| obj.contains_key(*m))
}

fn sha256_ref(value: &Value) -> Option<[u8; 32]> {
    value
        .as_str()?
        .strip_prefix("sha256:")
        .and_then(intentproof_core::checkpoint::parse_hash)
}

/// The `content_hash` digest of a projection, if it is `"sha256:<64 hex>"`.
pub fn content_digest(obj: &Map<String, Value>) -> Option<[u8; 32]> {
    obj.get("content_hash").and_then(sha256_ref)
}

/// Checks that a line [`is_projection`] is a well-formed projection of the
/// profile it names: the projection schema, no top-level `signature` (a
/// full event's), a `content_hash`, an `event_signature` object, `withheld`
/// hashes only of fields the profile does not keep, and no visible field
/// the profile does not keep (which would mix full and projected forms).
pub fn check_form(obj: &Map<String, Value>) -> Result<Profile, String> {
    let name = obj.get("projection").and_then(Value::as_str).unwrap_or("");
    let profile = Profile::from_name(name)
        .ok_or_else(|| format!("`projection` is {name:?}, not auditor or counterparty"))?;
    match obj.get("schema").and_then(Value::as_str) {
        Some(PROJECTION_SCHEMA) => {}
        other => {
            return Err(format!(
                "`schema` is {other:?}, not {PROJECTION_SCHEMA:?}: the line mixes a full event and a projection"
            ));
        }
    }
    if obj.contains_key("signature") {
        return Err(
            "it has a top-level `signature`, which only full events carry (a projection carries `event_signature`)"
                .into(),
        );
    }
    if content_digest(obj).is_none() {
        return Err("`content_hash` is not \"sha256:<64 hex>\"".into());
    }
    if !obj.get("event_signature").is_some_and(Value::is_object) {
        return Err("`event_signature` is missing or not an object".into());
    }
    let Some(Value::Object(withheld)) = obj.get("withheld") else {
        return Err("`withheld` is missing or not an object".into());
    };
    for (field, hash) in withheld {
        if profile.keeps(field) || matches!(field.as_str(), "schema" | "signature") {
            return Err(format!(
                "`withheld` names {field:?}, which the {} profile does not withhold",
                profile.name()
            ));
        }
        if sha256_ref(hash).is_none() {
            return Err(format!("`withheld.{field}` is not \"sha256:<64 hex>\""));
        }
    }
    for field in obj.keys() {
        if !PROJECTION_MEMBERS.contains(&field.as_str()) && !profile.keeps(field) {
            return Err(format!(
                "it shows {field:?}, which the {} profile withholds",
                profile.name()
            ));
        }
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Map<String, Value> {
        let v = json!({
            "schema": EVENT_SCHEMA, "event_id": "evt_1", "instance_id": "inst_a",
            "correlation_id": "c", "chain_position": 1,
            "prev_event_hash": intentproof_core::v1::ZERO_HASH,
            "intent": "refund", "action": "refund", "status": "ok",
            "inputs": {"card": "4242"}, "output": {"id": "re_1"}, "attributes": {"k": 1},
            "signature": {"alg": "ed25519", "key_id": "inst_a:k1", "value": "AAAA"}
        });
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn projections_keep_withhold_and_check() {
        let e = event();
        for profile in [Profile::Auditor, Profile::Counterparty] {
            let line = project(&e, profile).unwrap();
            let v = intentproof_core::canon::parse_strict(&line).unwrap();
            let o = v.as_object().unwrap();
            assert!(is_projection(o));
            assert_eq!(check_form(o).unwrap(), profile);
            assert_eq!(o["content_hash"], content_hash(&e).unwrap().as_str());
            assert_eq!(o["event_signature"], e["signature"]);
            assert_eq!(
                o["withheld"]["inputs"],
                withheld_hash(&json!({"card": "4242"})).unwrap().as_str()
            );
            assert!(!o.contains_key("inputs") && !o.contains_key("signature"));
        }
        let line = project(&e, Profile::Counterparty).unwrap();
        let v = intentproof_core::canon::parse_strict(&line).unwrap();
        let o = v.as_object().unwrap();
        assert!(!o.contains_key("intent") && !o.contains_key("attributes"));
        assert!(o["withheld"].get("intent").is_some());

        // Mixing forms fails.
        let mut mixed = o.clone();
        mixed.insert("signature".into(), e["signature"].clone());
        assert!(check_form(&mixed).unwrap_err().contains("signature"));
        let mut shown = o.clone();
        shown.insert("intent".into(), "refund".into());
        assert!(check_form(&shown).unwrap_err().contains("withholds"));
        let mut v1 = o.clone();
        v1.insert("schema".into(), EVENT_SCHEMA.into());
        assert!(check_form(&v1).unwrap_err().contains("mixes"));
    }

    #[test]
    fn unsigned_or_foreign_events_are_not_projected() {
        let mut e = event();
        e.remove("signature");
        assert!(project(&e, Profile::Auditor).is_err());
        let mut e = event();
        e.insert("schema".into(), "other".into());
        assert!(project(&e, Profile::Auditor).is_err());
    }
}
