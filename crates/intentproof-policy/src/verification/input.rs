//! What the evaluator reads: a flow, its events, attestations.

use intentproof_core::canon::parse_strict;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::policy::kind;

/// Why a flow, an events file or an attestations file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The flow document is unusable.
    #[error("flow: {0}")]
    Flow(String),
    /// One event is unusable.
    #[error("event {index}: {message}")]
    Event {
        /// 0-based position in the flow's `events` (or the events file).
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A JSONL line is unusable.
    #[error("{file} line {line}: {message}")]
    Line {
        /// `events` or `attestations`.
        file: &'static str,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// One event of a flow as the evaluator sees it.
///
/// Read from an `intentproof.event.v1` event (`event_id`, `started_at`...),
/// from the SDK's wire form (`id`, `startedAt`...), or from a flow's event
/// reference (`event_id`, `ordinal`, `hash`), which has no action: such an
/// event matches no rule that names an action.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FlowEvent {
    /// Event id.
    pub event_id: String,
    /// Action, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `ok` or `error`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// RFC 3339 start time, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339 completion time, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Attributes (flat keys).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}

impl FlowEvent {
    /// A new event with an id and an action, status `ok`, no times.
    pub fn new(event_id: impl Into<String>, action: impl Into<String>) -> FlowEvent {
        FlowEvent {
            event_id: event_id.into(),
            action: Some(action.into()),
            status: Some("ok".into()),
            ..FlowEvent::default()
        }
    }

    /// Reads an event object (see the type's docs for the accepted forms).
    pub fn from_value(value: &Value) -> Result<FlowEvent, String> {
        let Some(o) = value.as_object() else {
            return Err(format!("an event must be an object, not {}", kind(value)));
        };
        let text = |keys: &[&str]| -> Option<String> {
            keys.iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str))
                .map(str::to_owned)
        };
        let event_id = text(&["event_id", "id"])
            .filter(|s| !s.is_empty())
            .ok_or_else(|| "the event has no event_id".to_owned())?;
        Ok(FlowEvent {
            event_id,
            action: text(&["action"]),
            status: text(&["status"]),
            started_at: text(&["started_at", "startedAt"]),
            completed_at: text(&["completed_at", "completedAt"]),
            attributes: o
                .get("attributes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        })
    }
}

/// A flow (`intentproof.flow.v1`, read leniently).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Flow {
    /// `flow_id`.
    pub flow_id: String,
    /// `tenant_id`, when given.
    pub tenant_id: Option<String>,
    /// `correlation_id`, when given.
    pub correlation_id: Option<String>,
    /// `flow_merkle_root`, when given.
    pub flow_merkle_root: Option<String>,
    /// `window.closed_at`, when given.
    pub closed_at: Option<String>,
    /// The events, in flow order.
    pub events: Vec<FlowEvent>,
}

impl Flow {
    /// Reads a flow whose `events` are references or full event objects.
    pub fn from_value(value: &Value) -> Result<Flow, InputError> {
        let Some(o) = value.as_object() else {
            return Err(InputError::Flow(format!(
                "a flow must be a JSON object, not {}",
                kind(value)
            )));
        };
        let flow_id = match o.get("flow_id") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(InputError::Flow(format!(
                    "flow_id must be a string, not {}",
                    kind(other)
                )));
            }
            None => return Err(InputError::Flow("flow_id is missing".into())),
        };
        let events = match o.get("events") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(index, e)| {
                    FlowEvent::from_value(e).map_err(|message| InputError::Event { index, message })
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(InputError::Flow(format!(
                    "events must be a list, not {}",
                    kind(other)
                )));
            }
        };
        let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(Flow {
            flow_id,
            tenant_id: text("tenant_id"),
            correlation_id: text("correlation_id"),
            flow_merkle_root: text("flow_merkle_root"),
            closed_at: o
                .get("window")
                .and_then(|w| w.get("closed_at"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            events,
        })
    }

    /// Parses flow JSON bytes (strict JSON) and reads the flow.
    pub fn from_json(bytes: &[u8]) -> Result<Flow, InputError> {
        let value = parse_strict(bytes).map_err(|e| InputError::Flow(e.to_string()))?;
        Flow::from_value(&value)
    }
}

/// An attestation (`intentproof.attestation.v1`, read leniently): a claim
/// made by a source outside the flow (a webhook, a provider API).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Attestation {
    /// `attestation_id`.
    pub attestation_id: String,
    /// `source_id` (e.g. `stripe`), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// `claim`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// `claim_value`, when given (`null` counts as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_value: Option<Value>,
    /// `received_at`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
    /// True when `source_signature` carries a non-empty `value`. The
    /// evaluator is pure and holds no source keys: it checks presence only;
    /// verifying the signature is the caller's job.
    #[serde(default)]
    pub source_signed: bool,
    /// `subject.mapping_to.correlation_id`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl Attestation {
    /// Reads an attestation object.
    pub fn from_value(value: &Value) -> Result<Attestation, String> {
        let Some(o) = value.as_object() else {
            return Err(format!(
                "an attestation must be an object, not {}",
                kind(value)
            ));
        };
        let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
        let attestation_id = text("attestation_id")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| "the attestation has no attestation_id".to_owned())?;
        Ok(Attestation {
            attestation_id,
            source_id: text("source_id"),
            claim: text("claim"),
            claim_value: o.get("claim_value").cloned(),
            received_at: text("received_at"),
            source_signed: o
                .get("source_signature")
                .and_then(|s| s.get("value"))
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty()),
            correlation_id: o
                .get("subject")
                .and_then(|s| s.get("mapping_to"))
                .and_then(|m| m.get("correlation_id"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

fn jsonl<T>(
    text: &str,
    file: &'static str,
    read: impl Fn(&Value) -> Result<T, String>,
) -> Result<Vec<T>, InputError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| InputError::Line {
            file,
            line: i + 1,
            message,
        };
        let value = parse_strict(line.as_bytes()).map_err(|e| err(e.to_string()))?;
        out.push(read(&value).map_err(err)?);
    }
    Ok(out)
}

/// Reads events, one JSON object a line (blank lines skipped).
pub fn parse_events_jsonl(text: &str) -> Result<Vec<FlowEvent>, InputError> {
    jsonl(text, "events", FlowEvent::from_value)
}

/// Reads attestations, one JSON object a line (blank lines skipped).
pub fn parse_attestations_jsonl(text: &str) -> Result<Vec<Attestation>, InputError> {
    jsonl(text, "attestations", Attestation::from_value)
}
