//! The spec's signed event form, `intentproof.event.v1`, and content hashes.
//!
//! The v1 form is snake_case and closed (see the spec's
//! `execution_event.v1.schema.json`). [`to_v1`] and [`from_v1`] map between
//! it and the camelCase [`ExecutionEvent`] without losing anything:
//!
//! - `from_v1(to_v1(e)) == e` for every event `e` that [`from_v1`] could
//!   have produced (in particular every event built with
//!   [`ExecutionEvent::builder`], whose `v1_verbatim` is `None`);
//! - `to_v1(from_v1(v)) == v` for every JSON object `v` whose `schema` is
//!   `"intentproof.event.v1"` and that has the required members
//!   `event_id`, `intent`, `action`, `status`, `started_at`,
//!   `completed_at` and `duration_ms` (so for every valid v1 event).
//!
//! The rule that makes the second direction exact: [`from_v1`] puts each
//! member into its typed field, re-renders that field, and when the result
//! is not exactly the input (`"error": null`, `"attributes": {}`, an `error`
//! object with other keys, `"duration_ms": 1.0`, unknown keys ...) it also
//! keeps the input member in [`ExecutionEvent::v1_verbatim`]; [`to_v1`]
//! renders the typed fields and then puts the verbatim members on top.
//! `inputs` and `output` map to `Some(value)`, so `"output": null` is
//! `Some(Value::Null)` and an absent `output` is `None`.
//!
//! The content hash of an event is `"sha256:" + hex(SHA-256(JCS(event
//! without its top-level "signature")))`, always taken from the raw JSON
//! object ([`content_hash`]), never from a re-serialized struct.
//!
//! ```
//! use intentproof_core::{v1, ExecutionEvent};
//! use serde_json::json;
//!
//! let raw = json!({
//!     "schema": "intentproof.event.v1", "event_id": "01J", "intent": "i", "action": "a",
//!     "status": "ok", "started_at": "2026-01-01T00:00:00.000Z",
//!     "completed_at": "2026-01-01T00:00:00.001Z", "duration_ms": 1,
//!     "error": null, "attributes": {}, "output": null
//! });
//! let event: ExecutionEvent = v1::from_v1(&raw).unwrap();
//! assert_eq!(event.output, Some(serde_json::Value::Null));
//! assert_eq!(serde_json::Value::Object(v1::to_v1(&event)), raw);
//! ```

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

use crate::canon::{self, CanonError};
use crate::event::{
    AttributeValue, Attributes, ErrorInfo, ExecutionEvent, RedactionSummary, Signature, Status,
};

/// The `schema` value of a v1 event.
pub const SCHEMA: &str = "intentproof.event.v1";
/// The only provenance class the spec defines for SDK events.
pub const PROVENANCE_CLASS: &str = "sdk_attested_evidence";
/// The spec version this crate signs.
pub const SPEC_VERSION: &str = "1.0.0";
/// `prev_event_hash` of the first event of a chain.
pub const ZERO_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Why a JSON value is not a v1 event this crate can map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V1Error {
    /// The value is not a JSON object.
    #[error("a v1 event must be a JSON object, not {0}")]
    NotObject(&'static str),
    /// `schema` is missing or is not `intentproof.event.v1`.
    #[error(
        "`schema` is {0}, expected \"intentproof.event.v1\"; \
         this is not a signed-form event (a camelCase ExecutionEvent has no `schema`)"
    )]
    Schema(String),
    /// A member every event carries is missing or has the wrong type.
    #[error("`{field}` must be {expected}; found {found}")]
    Field {
        /// v1 member name.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What was there (`"missing"` or a JSON kind).
        found: String,
    },
}

/// Renders `event` in the v1 form (see the module docs). Unsealed events
/// give a partial v1 object (no `signature`, chain fields only if set).
pub fn to_v1(event: &ExecutionEvent) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("schema".into(), Value::String(SCHEMA.into()));
    m.insert("event_id".into(), Value::String(event.id.clone()));
    put_str(&mut m, "tenant_id", &event.tenant_id);
    put_str(&mut m, "instance_id", &event.instance_id);
    put_str(&mut m, "correlation_id", &event.correlation_id);
    put_str(&mut m, "provenance_class", &event.provenance_class);
    put_str(&mut m, "prev_event_hash", &event.prev_event_hash);
    if let Some(p) = event.chain_position {
        m.insert("chain_position".into(), Value::Number(p.into()));
    }
    m.insert("intent".into(), Value::String(event.intent.clone()));
    m.insert("action".into(), Value::String(event.action.clone()));
    m.insert("status".into(), Value::String(event.status.as_str().into()));
    m.insert("started_at".into(), Value::String(event.started_at.clone()));
    m.insert(
        "completed_at".into(),
        Value::String(event.completed_at.clone()),
    );
    m.insert(
        "duration_ms".into(),
        Value::Number(event.duration_ms.into()),
    );
    if let Some(v) = &event.inputs {
        m.insert("inputs".into(), v.clone());
    }
    if let Some(v) = &event.output {
        m.insert("output".into(), v.clone());
    }
    if let Some(b) = event.untrusted_payload {
        m.insert("untrusted_payload".into(), Value::Bool(b));
    }
    if let Some(e) = &event.error {
        m.insert("error".into(), error_to_v1(e));
    }
    if !event.attributes.is_empty() {
        m.insert("attributes".into(), attributes_to_v1(&event.attributes));
    }
    if let Some(r) = &event.redaction_summary {
        m.insert("redaction_summary".into(), redaction_to_v1(r));
    }
    put_str(&mut m, "spec_version", &event.spec_version);
    put_str(&mut m, "sdk_version", &event.sdk_version);
    if let Some(s) = &event.signature {
        m.insert("signature".into(), signature_to_v1(s));
    }
    if let Some(verbatim) = &event.v1_verbatim {
        for (k, v) in verbatim {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

/// Maps a v1 JSON object to an [`ExecutionEvent`] (see the module docs).
///
/// Only the structure is checked here; use [`crate::schema::validate`] to
/// check a v1 event against the spec's schema.
pub fn from_v1(value: &Value) -> Result<ExecutionEvent, V1Error> {
    let obj = value
        .as_object()
        .ok_or_else(|| V1Error::NotObject(kind(value)))?;
    match obj.get("schema") {
        Some(Value::String(s)) if s == SCHEMA => {}
        Some(other) => return Err(V1Error::Schema(other.to_string())),
        None => return Err(V1Error::Schema("missing".into())),
    }
    let mut verbatim = Map::new();
    let required_str = |field: &'static str| -> Result<String, V1Error> {
        match obj.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            other => Err(field_error(field, "a string", other)),
        }
    };
    let id = required_str("event_id")?;
    let intent = required_str("intent")?;
    let action = required_str("action")?;
    let started_at = required_str("started_at")?;
    let completed_at = required_str("completed_at")?;
    let status = match obj.get("status").and_then(Value::as_str) {
        Some("ok") => Status::Ok,
        Some("error") => Status::Error,
        _ => {
            return Err(field_error(
                "status",
                "\"ok\" or \"error\"",
                obj.get("status"),
            ));
        }
    };
    let duration_ms = match obj.get("duration_ms") {
        Some(Value::Number(n)) => match integral_u64(n) {
            Some(d) => {
                if !n.is_u64() {
                    verbatim.insert("duration_ms".into(), Value::Number(n.clone()));
                }
                d
            }
            None => {
                return Err(field_error(
                    "duration_ms",
                    "a non-negative integer",
                    obj.get("duration_ms"),
                ));
            }
        },
        other => return Err(field_error("duration_ms", "a non-negative integer", other)),
    };

    let mut event = ExecutionEvent::builder(intent, action).build();
    event.id = id;
    event.status = status;
    event.started_at = started_at;
    event.completed_at = completed_at;
    event.duration_ms = duration_ms;

    for (key, v) in obj {
        match key.as_str() {
            "schema" | "event_id" | "intent" | "action" | "status" | "started_at"
            | "completed_at" | "duration_ms" => {}
            "tenant_id" => event.tenant_id = opt_str(key, v, &mut verbatim),
            "instance_id" => event.instance_id = opt_str(key, v, &mut verbatim),
            "correlation_id" => event.correlation_id = opt_str(key, v, &mut verbatim),
            "provenance_class" => event.provenance_class = opt_str(key, v, &mut verbatim),
            "prev_event_hash" => event.prev_event_hash = opt_str(key, v, &mut verbatim),
            "spec_version" => event.spec_version = opt_str(key, v, &mut verbatim),
            "sdk_version" => event.sdk_version = opt_str(key, v, &mut verbatim),
            "chain_position" => {
                event.chain_position = match v {
                    Value::Number(n) => integral_u64(n),
                    _ => None,
                };
                if !matches!(v, Value::Number(n) if n.is_u64()) {
                    verbatim.insert(key.clone(), v.clone());
                }
            }
            "untrusted_payload" => match v {
                Value::Bool(b) => event.untrusted_payload = Some(*b),
                _ => {
                    verbatim.insert(key.clone(), v.clone());
                }
            },
            "inputs" => event.inputs = Some(v.clone()),
            "output" => event.output = Some(v.clone()),
            "error" => event.error = exact(key, v, &mut verbatim, error_from_v1, error_to_v1),
            "attributes" => {
                event.attributes = exact(
                    key,
                    v,
                    &mut verbatim,
                    attributes_from_v1,
                    attributes_to_v1_or_absent,
                )
                .unwrap_or_default()
            }
            "redaction_summary" => {
                event.redaction_summary =
                    exact(key, v, &mut verbatim, redaction_from_v1, redaction_to_v1)
            }
            "signature" => {
                event.signature = exact(key, v, &mut verbatim, signature_from_v1, signature_to_v1)
            }
            _ => {
                verbatim.insert(key.clone(), v.clone());
            }
        }
    }
    if !verbatim.is_empty() {
        event.v1_verbatim = Some(verbatim);
    }
    Ok(event)
}

/// SHA-256 of the canonical form of `v1` without its top-level `signature`.
///
/// ```
/// use serde_json::json;
/// let a = json!({"schema": "intentproof.event.v1", "x": 1});
/// let mut b = a.clone();
/// b["signature"] = json!({"alg": "ed25519", "key_id": "k", "value": "v"});
/// let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
/// assert_eq!(intentproof_core::v1::content_digest(a).unwrap(),
///            intentproof_core::v1::content_digest(b).unwrap());
/// ```
pub fn content_digest(v1: &Map<String, Value>) -> Result<[u8; 32], CanonError> {
    let bytes = canon::canonicalize_object_without(v1, &["signature"])?;
    Ok(Sha256::digest(&bytes).into())
}

/// The content hash `"sha256:<64 lowercase hex>"` of a v1 event object.
///
/// ```
/// let v = serde_json::json!({});
/// assert_eq!(
///     intentproof_core::v1::content_hash(v.as_object().unwrap()).unwrap(),
///     "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
/// );
/// ```
pub fn content_hash(v1: &Map<String, Value>) -> Result<String, CanonError> {
    Ok(sha256_prefixed(&content_digest(v1)?))
}

/// Formats a digest as `"sha256:" + lowercase hex`.
///
/// ```
/// assert_eq!(intentproof_core::v1::sha256_prefixed(&[0xab; 32]).len(), 7 + 64);
/// ```
pub fn sha256_prefixed(digest: &[u8; 32]) -> String {
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    push_hex(&mut s, digest);
    s
}

/// Appends the lowercase hex form of `bytes` to `out`.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
}

// ---------------------------------------------------------------------------

fn kind(v: &Value) -> &'static str {
    crate::event::json_kind(v)
}

fn field_error(field: &'static str, expected: &'static str, found: Option<&Value>) -> V1Error {
    V1Error::Field {
        field,
        expected,
        found: found.map_or_else(|| "missing".to_owned(), |v| kind(v).to_owned()),
    }
}

fn put_str(m: &mut Map<String, Value>, key: &str, v: &Option<String>) {
    if let Some(s) = v {
        m.insert(key.into(), Value::String(s.clone()));
    }
}

fn opt_str(key: &str, v: &Value, verbatim: &mut Map<String, Value>) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        other => {
            verbatim.insert(key.to_owned(), other.clone());
            None
        }
    }
}

/// A number that is a non-negative integer (`3` or `3.0`), as u64.
fn integral_u64(n: &Number) -> Option<u64> {
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    let f = n.as_f64()?;
    (f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64).then_some(f as u64)
}

/// Parses `v` into a typed field; if the typed field does not re-render to
/// exactly `v`, keeps `v` verbatim (and the typed field only when it parsed).
fn exact<T>(
    key: &str,
    v: &Value,
    verbatim: &mut Map<String, Value>,
    parse: impl Fn(&Value) -> Option<T>,
    render: impl Fn(&T) -> Value,
) -> Option<T> {
    match parse(v) {
        Some(t) if render(&t) == *v => Some(t),
        _ => {
            verbatim.insert(key.to_owned(), v.clone());
            None
        }
    }
}

fn error_to_v1(e: &ErrorInfo) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), Value::String(e.name.clone()));
    m.insert("message".into(), Value::String(e.message.clone()));
    if let Some(s) = &e.stack {
        m.insert("stack".into(), Value::String(s.clone()));
    }
    Value::Object(m)
}

fn error_from_v1(v: &Value) -> Option<ErrorInfo> {
    let o = v.as_object()?;
    Some(ErrorInfo {
        name: o.get("name")?.as_str()?.to_owned(),
        message: o.get("message")?.as_str()?.to_owned(),
        stack: match o.get("stack") {
            None => None,
            Some(s) => Some(s.as_str()?.to_owned()),
        },
    })
}

fn attributes_to_v1(a: &Attributes) -> Value {
    Value::Object(
        a.iter()
            .map(|(k, v)| {
                let v = match v {
                    AttributeValue::String(s) => Value::String(s.clone()),
                    AttributeValue::Number(n) => Value::Number(n.clone()),
                    AttributeValue::Bool(b) => Value::Bool(*b),
                };
                (k.clone(), v)
            })
            .collect(),
    )
}

/// What `to_v1` renders for the attributes field: nothing when empty.
fn attributes_to_v1_or_absent(a: &Attributes) -> Value {
    if a.is_empty() {
        // Never equal to an object, so `{}` is kept verbatim.
        Value::Null
    } else {
        attributes_to_v1(a)
    }
}

fn attributes_from_v1(v: &Value) -> Option<Attributes> {
    v.as_object()?
        .iter()
        .map(|(k, v)| {
            AttributeValue::try_from(v.clone())
                .ok()
                .map(|v| (k.clone(), v))
        })
        .collect()
}

fn redaction_to_v1(r: &RedactionSummary) -> Value {
    let mut m = Map::new();
    m.insert(
        "rules_applied".into(),
        Value::Array(r.rules_applied.iter().cloned().map(Value::String).collect()),
    );
    m.insert(
        "fields_redacted_count".into(),
        Value::Number(r.fields_redacted_count.into()),
    );
    m.insert(
        "fields_redacted_paths".into(),
        Value::Array(
            r.fields_redacted_paths
                .iter()
                .cloned()
                .map(Value::String)
                .collect(),
        ),
    );
    if let Some(p) = &r.tenant_redaction_profile_id {
        m.insert(
            "tenant_redaction_profile_id".into(),
            Value::String(p.clone()),
        );
    }
    Value::Object(m)
}

fn redaction_from_v1(v: &Value) -> Option<RedactionSummary> {
    let o = v.as_object()?;
    let strings = |key: &str| -> Option<Vec<String>> {
        match o.get(key) {
            None => Some(Vec::new()),
            Some(v) => v
                .as_array()?
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect(),
        }
    };
    Some(RedactionSummary {
        rules_applied: strings("rules_applied")?,
        fields_redacted_count: match o.get("fields_redacted_count") {
            None => 0,
            Some(n) => n.as_u64()?,
        },
        fields_redacted_paths: strings("fields_redacted_paths")?,
        tenant_redaction_profile_id: match o.get("tenant_redaction_profile_id") {
            None => None,
            Some(s) => Some(s.as_str()?.to_owned()),
        },
    })
}

fn signature_to_v1(s: &Signature) -> Value {
    let mut m = Map::new();
    m.insert("alg".into(), Value::String(s.alg.clone()));
    m.insert("key_id".into(), Value::String(s.key_id.clone()));
    m.insert("value".into(), Value::String(s.value.clone()));
    Value::Object(m)
}

fn signature_from_v1(v: &Value) -> Option<Signature> {
    let o = v.as_object()?;
    Some(Signature {
        alg: o.get("alg")?.as_str()?.to_owned(),
        key_id: o.get("key_id")?.as_str()?.to_owned(),
        value: o.get("value")?.as_str()?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "schema": SCHEMA, "event_id": "e1", "intent": "i", "action": "a", "status": "error",
            "started_at": "s", "completed_at": "c", "duration_ms": 5
        })
    }

    #[test]
    fn odd_members_round_trip_exactly() {
        let extras = [
            ("error", json!(null)),
            ("error", json!({})),
            ("error", json!({"name": "E", "message": "m", "code": 3})),
            ("error", json!({"name": "E", "message": "m"})),
            ("attributes", json!({})),
            ("attributes", json!({"k": 1.5, "s": "x", "b": true})),
            ("attributes", json!({"nested": {"x": 1}})),
            ("redaction_summary", json!({})),
            ("redaction_summary", json!({"fields_redacted_count": -1})),
            (
                "redaction_summary",
                json!({"rules_applied": ["r"], "fields_redacted_count": 1, "fields_redacted_paths": ["$.a"]}),
            ),
            ("duration_ms", json!(5.0)),
            ("chain_position", json!(2.0)),
            ("chain_position", json!(2)),
            ("inputs", json!(null)),
            ("output", json!(null)),
            ("output", json!("x")),
            ("tenant_id", json!(7)),
            ("unknown_member", json!([1])),
            (
                "signature",
                json!({"alg": "ed25519", "key_id": "k", "value": "v"}),
            ),
            ("signature", json!({"alg": "ed25519"})),
        ];
        for (k, v) in extras {
            let mut doc = base();
            doc[k] = v.clone();
            let event = from_v1(&doc).unwrap();
            assert_eq!(Value::Object(to_v1(&event)), doc, "{k}: {v}");
            // And the struct survives the v1 form too.
            assert_eq!(from_v1(&Value::Object(to_v1(&event))).unwrap(), event);
        }
    }

    #[test]
    fn wrong_schema_is_a_clear_error() {
        let mut doc = base();
        doc["schema"] = json!("intentproof.event.v2");
        assert_eq!(
            from_v1(&doc).unwrap_err().to_string(),
            "`schema` is \"intentproof.event.v2\", expected \"intentproof.event.v1\"; \
             this is not a signed-form event (a camelCase ExecutionEvent has no `schema`)"
        );
        let mut doc = base();
        doc.as_object_mut().unwrap().remove("intent");
        assert_eq!(
            from_v1(&doc).unwrap_err().to_string(),
            "`intent` must be a string; found missing"
        );
    }
}
