//! Turning an ingest body into an event the store can append: parse
//! strictly, tell the two accepted shapes apart, validate, verify or seal.
//!
//! Two shapes are accepted on `POST /v1/events`:
//! - a bare signed `intentproof.event.v1` object (what the reference SDKs
//!   send): validated against the spec schema, its signature checked when
//!   its instance's key is trusted, and stored byte for byte as received;
//! - the seed SDK envelope `{"intentproof":"1","event":{...camelCase...}}`:
//!   the unsigned event is sealed by the daemon's own key (continuing the
//!   daemon's chain for that correlation), then stored.
//!
//! Who sent a body matters ([`Caller`], found by
//! [`crate::browser_guard`]): reserved actions ([`RESERVED_ACTION_PREFIX`],
//! the plan and call events the gateways record) are refused from
//! anonymous callers, and an envelope event an anonymous caller sent is
//! sealed with the attribute [`UNAUTHENTICATED_ATTRIBUTE`] `= false`, so the
//! daemon's signature never passes off an unknown sender's word as its own.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use ed25519_dalek::VerifyingKey;
use intentproof_core::ExecutionEvent;
use intentproof_core::canon::parse_strict;
use intentproof_core::keys::InstanceKey;
use intentproof_core::schema::{SchemaKind, validate};
use intentproof_core::seal::Sealer;
use intentproof_store::{EventMeta, Incoming, MetaError, Store};
use serde::Deserialize;
use serde_json::Value;

use crate::metrics::RejectReason;

/// Actions IntentProof itself records (`intentproof.plan.declare`,
/// `intentproof.plan.close`, `intentproof.call.completed`,
/// `intentproof.call.started`, ...): findings trust them, so only an
/// authenticated caller may send them.
pub const RESERVED_ACTION_PREFIX: &str = "intentproof.";

/// The attribute set to `false` on every envelope event an anonymous
/// caller sent (any value the caller gave is replaced).
pub const UNAUTHENTICATED_ATTRIBUTE: &str = "intentproof.ingest.authenticated";

/// Who sent an ingest body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// With the ingest token or the daemon token (or from the daemon's own
    /// spool adoption: lines `intentproof mcp` sealed).
    Authenticated,
    /// Without a token (allowed when no ingest token is configured).
    Anonymous,
}

/// Why an ingest body was refused. Each maps to an HTTP status and a
/// metrics reason.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Not JSON (or duplicate keys, or integers JSON cannot carry exactly).
    #[error("{0}")]
    Malformed(String),
    /// JSON, but not an event we accept.
    #[error("{0}")]
    Invalid(String),
    /// The signature does not verify with the instance's trusted key.
    #[error("{0}")]
    BadSignature(String),
    /// A reserved action from an anonymous caller.
    #[error(
        "action {0:?} is reserved for IntentProof's own events (intentproof.*): send it with `Authorization: Bearer <token>`, the ingest token (ingest_token in the daemon config; INTENTPROOF_INGEST_TOKEN for the SDKs) or the daemon token in <data-dir>/token"
    )]
    Reserved(String),
}

impl IngestError {
    /// The metrics reason.
    pub fn reason(&self) -> RejectReason {
        match self {
            IngestError::Malformed(_) => RejectReason::MalformedJson,
            IngestError::Invalid(_) => RejectReason::InvalidEvent,
            IngestError::BadSignature(_) => RejectReason::BadSignature,
            IngestError::Reserved(_) => RejectReason::Unauthorized,
        }
    }
}

/// Trusted instance keys, shared and updatable at run time.
#[derive(Debug, Default)]
pub struct TrustedKeys {
    keys: RwLock<HashMap<String, VerifyingKey>>,
}

impl TrustedKeys {
    /// A set holding `keys`.
    pub fn new(keys: impl IntoIterator<Item = (String, VerifyingKey)>) -> Self {
        TrustedKeys {
            keys: RwLock::new(keys.into_iter().collect()),
        }
    }

    /// The key of `instance_id`, if trusted.
    pub fn get(&self, instance_id: &str) -> Option<VerifyingKey> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(instance_id)
            .copied()
    }

    /// Trusts (or replaces) a key.
    pub fn insert(&self, instance_id: String, key: VerifyingKey) {
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(instance_id, key);
    }
}

/// The daemon's own sealer, which continues its chains across restarts.
/// Everything it seals is redacted first.
pub struct DaemonSealer {
    sealer: Sealer,
    redactor: Arc<intentproof_policy::redact::Redactor>,
    store: Arc<Store>,
}

impl DaemonSealer {
    /// A sealer with the daemon key, for tenant `tenant_id`.
    pub fn new(
        key: InstanceKey,
        tenant_id: &str,
        store: Arc<Store>,
        redactor: Arc<intentproof_policy::redact::Redactor>,
    ) -> Self {
        DaemonSealer {
            sealer: Sealer::new(key).with_tenant_id(tenant_id),
            redactor,
            store,
        }
    }

    /// The daemon's instance id.
    pub fn instance_id(&self) -> &str {
        self.sealer.key().instance_id()
    }

    /// Redacts and seals `event`, first picking up the stored head of its
    /// chain if this process has not sealed into that chain yet.
    fn seal(&self, event: &ExecutionEvent) -> Result<Value, IngestError> {
        let mut event = event.clone();
        self.redactor.redact_event(&mut event);
        let event = &event;
        let correlation = event
            .correlation_id
            .as_deref()
            .unwrap_or(&event.id)
            .to_owned();
        // A chain this process has not sealed into may have a stored head
        // (from before a restart). No lock is held while the store is read;
        // `resume_chain_if_new` keeps the head of a chain that another
        // request started meanwhile.
        if !self.sealer.tracks_chain(&correlation) {
            let head = self
                .store
                .chain_head(self.instance_id(), &correlation)
                .map_err(|e| IngestError::Invalid(format!("cannot read the chain head: {e}")))?;
            if let Some((position, hash)) = head {
                self.sealer.resume_chain_if_new(correlation, position, hash);
            }
        }
        self.sealer
            .seal(event)
            .map(|sealed| sealed.event)
            .map_err(|e| IngestError::Invalid(format!("event cannot be sealed: {e}")))
    }
}

/// Refuses a reserved action from an anonymous caller.
fn check_action(action: &str, caller: Caller) -> Result<(), IngestError> {
    if caller == Caller::Anonymous && action.starts_with(RESERVED_ACTION_PREFIX) {
        return Err(IngestError::Reserved(action.chars().take(200).collect()));
    }
    Ok(())
}

/// Parses and checks one ingest body sent by `caller`.
pub fn prepare(
    body: &[u8],
    keys: &TrustedKeys,
    sealer: &DaemonSealer,
    caller: Caller,
) -> Result<Incoming, IngestError> {
    let value = parse_strict(body).map_err(|e| IngestError::Malformed(e.to_string()))?;
    let Value::Object(object) = &value else {
        return Err(IngestError::Invalid(
            "body must be a JSON object: a signed intentproof.event.v1 event, or {\"intentproof\":\"1\",\"event\":{...}}".into(),
        ));
    };
    if object.contains_key("intentproof") {
        return prepare_envelope(&value, sealer, caller);
    }
    if let Err(problems) = validate(SchemaKind::ExecutionEvent, &value) {
        let shown: Vec<&str> = problems.iter().take(3).map(String::as_str).collect();
        return Err(IngestError::Invalid(format!(
            "not a valid intentproof.event.v1 event: {}",
            shown.join("; ")
        )));
    }
    check_action(
        object
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        caller,
    )?;
    let instance = object
        .get("instance_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let meta = EventMeta::from_v1(&value, keys.get(instance).as_ref()).map_err(|e| match e {
        MetaError::Signature(e) => IngestError::BadSignature(e.to_string()),
        other => IngestError::Invalid(other.to_string()),
    })?;
    Ok(Incoming {
        meta,
        bytes: body.to_vec(),
    })
}

fn prepare_envelope(
    value: &Value,
    sealer: &DaemonSealer,
    caller: Caller,
) -> Result<Incoming, IngestError> {
    match value.get("intentproof") {
        Some(Value::String(v)) if v == "1" => {}
        other => {
            return Err(IngestError::Invalid(format!(
                "field `intentproof` must be \"1\" (the envelope version), not {}",
                other.map_or("missing".to_owned(), Value::to_string)
            )));
        }
    }
    let event = value
        .get("event")
        .ok_or_else(|| IngestError::Invalid("field `event` is missing from the envelope".into()))?;
    if event.get("v1Verbatim").is_some() {
        // The typed model's round-trip store for the signed v1 form: its
        // members would override what the daemon seals (e.g. the redaction
        // summary), so a caller must not set it.
        return Err(IngestError::Invalid(
            "field `event.v1Verbatim` is not part of an envelope event: send each member as its own camelCase field (or send a signed intentproof.event.v1 event instead)".into(),
        ));
    }
    let mut event = ExecutionEvent::deserialize(event)
        .map_err(|e| IngestError::Invalid(format!("field `event`: {e}")))?;
    if event.intent.trim().is_empty() || event.action.trim().is_empty() {
        return Err(IngestError::Invalid(
            "field `event`: intent and action must not be blank".into(),
        ));
    }
    check_action(&event.action, caller)?;
    if caller == Caller::Anonymous {
        event
            .attributes
            .insert(UNAUTHENTICATED_ATTRIBUTE.to_owned(), false.into());
    }
    seal_incoming(&event, sealer)
}

/// Seals an event the daemon itself recorded (an envelope event, or an MCP
/// call through the HTTP gateway) and prepares it for the writer.
pub fn seal_incoming(
    event: &ExecutionEvent,
    sealer: &DaemonSealer,
) -> Result<Incoming, IngestError> {
    let sealed = sealer.seal(event)?;
    let meta =
        EventMeta::from_v1(&sealed, None).map_err(|e| IngestError::Invalid(e.to_string()))?;
    let meta = EventMeta {
        signature: intentproof_store::SignatureState::Verified,
        ..meta
    };
    let bytes = serde_json::to_vec(&sealed).map_err(|e| IngestError::Invalid(e.to_string()))?;
    Ok(Incoming { meta, bytes })
}
