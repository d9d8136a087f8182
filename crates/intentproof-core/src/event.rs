//! [`ExecutionEvent`]: the record of one invocation.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Outcome of one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The wrapped call returned normally.
    Ok,
    /// The wrapped call failed (returned an error, or panicked).
    Error,
}

impl Status {
    /// The wire spelling: `"ok"` or `"error"`.
    ///
    /// ```
    /// assert_eq!(intentproof_core::Status::Error.as_str(), "error");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attribute value. The seed's contract allows only strings, numbers and
/// booleans, so nested objects cannot sneak into attributes.
///
/// ```
/// use intentproof_core::AttributeValue;
/// assert_eq!(AttributeValue::from("stripe"), AttributeValue::String("stripe".into()));
/// assert_eq!(serde_json::to_string(&AttributeValue::from(3)).unwrap(), "3");
/// assert!(serde_json::from_str::<AttributeValue>("{}").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// A string value.
    String(String),
    /// A number (integer or float) value.
    Number(serde_json::Number),
    /// A boolean value.
    Bool(bool),
}

impl From<&str> for AttributeValue {
    fn from(value: &str) -> Self {
        AttributeValue::String(value.to_owned())
    }
}

impl From<String> for AttributeValue {
    fn from(value: String) -> Self {
        AttributeValue::String(value)
    }
}

impl From<bool> for AttributeValue {
    fn from(value: bool) -> Self {
        AttributeValue::Bool(value)
    }
}

macro_rules! attribute_from_integer {
    ($($t:ty),*) => {$(
        impl From<$t> for AttributeValue {
            fn from(value: $t) -> Self {
                AttributeValue::Number(value.into())
            }
        }
    )*};
}
attribute_from_integer!(i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);

impl TryFrom<f64> for AttributeValue {
    type Error = EventError;

    /// Fails for NaN and infinities, which JSON cannot carry.
    fn try_from(value: f64) -> Result<Self, Self::Error> {
        serde_json::Number::from_f64(value)
            .map(AttributeValue::Number)
            .ok_or(EventError::NonFiniteAttribute(value))
    }
}

impl TryFrom<Value> for AttributeValue {
    type Error = EventError;

    /// Accepts JSON strings, numbers and booleans; rejects the rest.
    fn try_from(value: Value) -> Result<Self, Self::Error> {
        match value {
            Value::String(s) => Ok(AttributeValue::String(s)),
            Value::Number(n) => Ok(AttributeValue::Number(n)),
            Value::Bool(b) => Ok(AttributeValue::Bool(b)),
            other => Err(EventError::AttributeType(json_kind(&other))),
        }
    }
}

/// Attribute map of an event. Sorted by key, so output is deterministic.
pub type Attributes = BTreeMap<String, AttributeValue>;

/// What went wrong in a failed invocation.
///
/// ```
/// let e = intentproof_core::EventError::AttributeType("object");
/// assert!(e.to_string().contains("object"));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    /// An attribute was given a JSON value that is not a string, number or boolean.
    #[error(
        "attribute values must be a string, number or boolean, not {0}; \
         flatten the value or encode it as a string"
    )]
    AttributeType(&'static str),
    /// A float attribute was NaN or infinite.
    #[error("attribute value {0} is not a finite number; JSON cannot carry it")]
    NonFiniteAttribute(f64),
}

/// The `error` object of a failed event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Error kind, e.g. the error type's name (`"RuntimeError"`).
    pub name: String,
    /// Human-readable message.
    pub message: String,
    /// Optional stack or cause chain; omitted when the client is configured
    /// not to include stacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

/// Redaction metadata added when an event is sealed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedactionSummary {
    /// Ids of the redaction rules that changed something.
    #[serde(default)]
    pub rules_applied: Vec<String>,
    /// How many fields were redacted.
    #[serde(default)]
    pub fields_redacted_count: u64,
    /// JSON paths of the redacted fields.
    #[serde(default)]
    pub fields_redacted_paths: Vec<String>,
    /// The tenant's redaction profile, when one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_redaction_profile_id: Option<String>,
}

/// An Ed25519 signature over the event's content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signature {
    /// Always `"ed25519"` today.
    pub alg: String,
    /// `<instance_id>:k1`.
    pub key_id: String,
    /// Base64 signature bytes.
    pub value: String,
}

/// One invocation of a tool or function: what it was meant to do (intent),
/// what ran (action), with what (inputs), what came out (output or error),
/// and when.
///
/// The JSON form is camelCase, exactly as the IntentProof SDKs emit it;
/// optional fields that are absent are omitted, never `null`. The sealing
/// fields (`tenantId` ... `signature`) are empty until an event is sealed.
///
/// ```
/// use intentproof_core::ExecutionEvent;
/// let json = r#"{"id":"0190b6f2-0000-7000-8000-000000000000","intent":"HTTP test",
///   "action":"test.http","inputs":[],"status":"ok","output":42,
///   "startedAt":"2026-01-01T00:00:00.000Z","completedAt":"2026-01-01T00:00:00.001Z",
///   "durationMs":1}"#;
/// let event: ExecutionEvent = serde_json::from_str(json).unwrap();
/// assert_eq!(event.output, Some(serde_json::json!(42)));
/// assert_eq!(event.correlation_id, None);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionEvent {
    /// Unique event id (a UUIDv7 string for events made here).
    pub id: String,
    /// Correlation id that ties the steps of one flow together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// What this invocation was meant to achieve.
    pub intent: String,
    /// Stable operation id (dotted or namespaced).
    pub action: String,
    /// JSON-safe snapshot of the call's arguments (an array of them by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Value>,
    /// JSON-safe return value; on error, only what `capture_error` returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Set when `status` is `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// `ok` or `error`.
    pub status: Status,
    /// Start time, RFC 3339 UTC with milliseconds.
    pub started_at: String,
    /// Completion time, RFC 3339 UTC with milliseconds.
    pub completed_at: String,
    /// Wall time between start and completion, in milliseconds.
    pub duration_ms: u64,
    /// Client defaults merged with per-wrap attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: Attributes,

    /// Tenant that owns the event (sealing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Instance whose key signed the event (sealing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// 1-based position in the (instance, correlation) chain (sealing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_position: Option<u64>,
    /// Content hash of the previous event in the chain (sealing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_event_hash: Option<String>,
    /// True when non-redacted payload was captured (sealing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untrusted_payload: Option<bool>,
    /// What redaction changed (sealing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction_summary: Option<RedactionSummary>,
    /// Spec version of the signed form (sealing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_version: Option<String>,
    /// Producer of the event, e.g. `rust@0.1.0` (sealing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk_version: Option<String>,
    /// Ed25519 signature (sealing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
    /// Provenance class of the signed form; `"sdk_attested_evidence"` once
    /// sealed (sealing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance_class: Option<String>,
    /// Members of the signed `intentproof.event.v1` form that the typed
    /// fields above cannot carry exactly, kept verbatim under their v1
    /// (snake_case) names so the v1 form round-trips byte for byte: for
    /// example `"error": null`, `"attributes": {}`, or an `error` object
    /// with keys other than `name`, `message` and `stack`.
    ///
    /// Filled only by [`crate::v1::from_v1`]; code that builds events should
    /// leave it `None`. See [`crate::v1`] for the exact rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1_verbatim: Option<serde_json::Map<String, Value>>,
}

impl ExecutionEvent {
    /// Starts building an event with a fresh UUIDv7 id, status `ok`, and
    /// both timestamps set to now.
    ///
    /// ```
    /// let e = intentproof_core::ExecutionEvent::builder("i", "a").build();
    /// assert_eq!(e.duration_ms, 0);
    /// assert_eq!(uuid::Uuid::parse_str(&e.id).unwrap().get_version_num(), 7);
    /// ```
    pub fn builder(intent: impl Into<String>, action: impl Into<String>) -> EventBuilder {
        let now = crate::now_rfc3339_millis();
        EventBuilder {
            event: ExecutionEvent {
                id: new_event_id(),
                correlation_id: None,
                intent: intent.into(),
                action: action.into(),
                inputs: None,
                output: None,
                error: None,
                status: Status::Ok,
                started_at: now.clone(),
                completed_at: now,
                duration_ms: 0,
                attributes: Attributes::new(),
                tenant_id: None,
                instance_id: None,
                chain_position: None,
                prev_event_hash: None,
                untrusted_payload: None,
                redaction_summary: None,
                spec_version: None,
                sdk_version: None,
                signature: None,
                provenance_class: None,
                v1_verbatim: None,
            },
        }
    }
}

/// A new time-ordered (UUIDv7) event id.
///
/// ```
/// let a = intentproof_core::new_event_id();
/// let b = intentproof_core::new_event_id();
/// assert!(a < b, "v7 ids sort by creation time");
/// ```
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Builder for [`ExecutionEvent`]; see [`ExecutionEvent::builder`].
#[derive(Debug, Clone)]
pub struct EventBuilder {
    event: ExecutionEvent,
}

impl EventBuilder {
    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.event.correlation_id = Some(id.into());
        self
    }

    /// Sets the inputs snapshot.
    pub fn inputs(mut self, inputs: Value) -> Self {
        self.event.inputs = Some(inputs);
        self
    }

    /// Sets the output snapshot.
    pub fn output(mut self, output: Value) -> Self {
        self.event.output = Some(output);
        self
    }

    /// Marks the event failed with this error.
    pub fn error(mut self, error: ErrorInfo) -> Self {
        self.event.status = Status::Error;
        self.event.error = Some(error);
        self
    }

    /// Sets start and completion times (RFC 3339 strings) and the duration.
    pub fn timing(
        mut self,
        started_at: impl Into<String>,
        completed_at: impl Into<String>,
        duration_ms: u64,
    ) -> Self {
        self.event.started_at = started_at.into();
        self.event.completed_at = completed_at.into();
        self.event.duration_ms = duration_ms;
        self
    }

    /// Replaces the attributes.
    pub fn attributes(mut self, attributes: Attributes) -> Self {
        self.event.attributes = attributes;
        self
    }

    /// Finishes the event.
    pub fn build(self) -> ExecutionEvent {
        self.event
    }
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
