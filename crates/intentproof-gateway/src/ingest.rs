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
//! the browser guard): reserved actions ([`RESERVED_ACTION_PREFIX`],
//! the plan and call events the gateways record) are refused from
//! anonymous callers, and an envelope event an anonymous caller sent is
//! sealed with the attribute [`UNAUTHENTICATED_ATTRIBUTE`] `= false`, so the
//! daemon's signature never passes off an unknown sender's word as its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use ed25519_dalek::VerifyingKey;
use intentproof_core::ExecutionEvent;
use intentproof_core::canon::parse_strict;
use intentproof_core::keys::InstanceKey;
use intentproof_core::schema::{SchemaKind, validate};
use intentproof_core::seal::Sealer;
use intentproof_store::{EventMeta, Incoming, MetaError, Store, WriteHold};
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
///
/// It keeps the heads of its chains (the position and content hash the next
/// event links to) in a bounded cache, [`ChainHeads`]; a chain not in it is
/// read from the store.
pub struct DaemonSealer {
    sealer: Sealer,
    redactor: Arc<intentproof_policy::redact::Redactor>,
    store: Arc<Store>,
    heads: ChainHeads,
}

/// What the next event of one of the daemon's chains links to.
#[derive(Debug, Default)]
struct ChainHead {
    /// Read from the store (or known to be new) yet? A head enters the
    /// cache unread, and is read under its own lock by the first sealer.
    loaded: bool,
    /// Position and content hash of the chain's last event (`None`: no
    /// event yet).
    last: Option<(u64, String)>,
}

type SharedHead = Arc<Mutex<ChainHead>>;

/// The heads of the daemon's chains, by correlation, bounded.
///
/// Each head is an `Arc`: the cache holds one reference; a sealer holds
/// one while it seals into the chain, and each event sealed into it
/// carries one in its [`Incoming::hold`] until the store has indexed it
/// (or refused it, or it was dropped on its way). So a head whose only
/// reference is the cache's has nothing sealed for it that is not yet
/// readable from the store, and nobody is sealing into it: evicting it
/// then loses nothing, since [`Store::chain_head`] gives the same head back
/// (or, if its last events were never stored, the head the store really
/// has, which is what the next event must link to). A head with other
/// references is never evicted: reading it back from the store then would
/// give an older head and fork the chain.
///
/// Bounded: at most [`ChainHeads::MAX`] entries, or, when more than three
/// quarters of them are busy, the busy heads plus a quarter of `MAX`
/// (busy heads are those of events on their way to the store: at most the
/// write queue's capacity plus the requests being sealed).
#[derive(Debug)]
struct ChainHeads {
    heads: Mutex<HeadMap>,
    /// Heads kept before the idle ones are evicted.
    max: usize,
    /// Heads read from the store (each cache miss), for tests and metrics.
    reads: AtomicU64,
}

#[derive(Debug, Default)]
struct HeadMap {
    heads: HashMap<String, SharedHead>,
    /// The size at which the next sweep runs: sweeping only once the map
    /// has grown by a quarter of the bound since the last sweep keeps a
    /// map full of busy heads from being swept on every insert.
    sweep_at: usize,
}

impl Default for ChainHeads {
    fn default() -> Self {
        ChainHeads::with_max(ChainHeads::MAX)
    }
}

impl ChainHeads {
    /// Heads kept (about 200 bytes each) before the idle ones are evicted.
    /// A miss costs one index read ([`Store::chain_head`]), so this only
    /// needs to cover the chains the daemon seals into often.
    const MAX: usize = 10_000;

    fn with_max(max: usize) -> Self {
        ChainHeads {
            heads: Mutex::default(),
            max: max.max(1),
            reads: AtomicU64::new(0),
        }
    }

    /// The head of `correlation`, with a reference for the caller; a new
    /// (unloaded) one when it is not cached.
    fn get(&self, correlation: &str) -> SharedHead {
        let mut map = self.heads.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(head) = map.heads.get(correlation) {
            return Arc::clone(head);
        }
        if map.heads.len() >= map.sweep_at.max(self.max) {
            map.heads.retain(|_, head| Arc::strong_count(head) > 1);
            if map.heads.len() < self.max / 2 {
                // Give back the table's memory, not only its entries.
                map.heads.shrink_to(self.max);
            }
            map.sweep_at = map.heads.len() + self.max.div_ceil(4);
        }
        Arc::clone(map.heads.entry(correlation.to_owned()).or_default())
    }

    /// Evicts every head nothing else references (see [`ChainHeads`]) and
    /// gives back the table's memory; heads still in use stay.
    fn evict_idle(&self) {
        let mut map = self.heads.lock().unwrap_or_else(PoisonError::into_inner);
        map.heads.retain(|_, head| Arc::strong_count(head) > 1);
        map.heads.shrink_to_fit();
        map.sweep_at = 0;
    }

    fn len(&self) -> usize {
        self.heads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .heads
            .len()
    }
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
            heads: ChainHeads::default(),
        }
    }

    /// The daemon's instance id.
    pub fn instance_id(&self) -> &str {
        self.sealer.key().instance_id()
    }

    /// Chain heads held in memory (at most about [`ChainHeads::MAX`] plus
    /// those of events on their way to the store).
    pub fn cached_chain_heads(&self) -> usize {
        self.heads.len()
    }

    /// Forgets every chain head that can be read back from the store
    /// without forking its chain (nothing sealed into it is still on its
    /// way to the store) and gives back the cache's memory. For an idle
    /// daemon; the next event of a forgotten chain reads its head from the
    /// store.
    pub fn evict_idle_chain_heads(&self) {
        self.heads.evict_idle();
    }

    /// Redacts and seals `event` into its chain, reading the chain's head
    /// from the store when it is not cached. The returned hold keeps the
    /// head cached until the event is indexed (see [`ChainHeads`]).
    fn seal(&self, event: &ExecutionEvent) -> Result<(Value, SharedHead), IngestError> {
        let mut event = event.clone();
        self.redactor.redact_event(&mut event);
        let event = &event;
        let correlation = event.correlation_id.as_deref().unwrap_or(&event.id);
        let shared = self.heads.get(correlation);
        let mut head = shared.lock().unwrap_or_else(PoisonError::into_inner);
        if !head.loaded {
            self.heads.reads.fetch_add(1, Ordering::Relaxed);
            // Under the head's lock: a concurrent sealer of the same chain
            // waits for this read instead of starting the chain over.
            head.last = self
                .store
                .chain_head(self.instance_id(), correlation)
                .map_err(|e| IngestError::Invalid(format!("cannot read the chain head: {e}")))?;
            head.loaded = true;
        }
        let last = head.last.as_ref().map(|(p, h)| (*p, h.as_str()));
        let sealed = self
            .sealer
            .seal_after(event, last)
            .map_err(|e| IngestError::Invalid(format!("event cannot be sealed: {e}")))?;
        let position = last.map_or(1, |(p, _)| p + 1);
        head.last = Some((position, sealed.content_hash));
        drop(head);
        Ok((sealed.event, shared))
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
    Ok(Incoming::new(meta, body.to_vec()))
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
    let (sealed, head) = sealer.seal(event)?;
    let meta =
        EventMeta::from_v1(&sealed, None).map_err(|e| IngestError::Invalid(e.to_string()))?;
    let meta = EventMeta {
        signature: intentproof_store::SignatureState::Verified,
        ..meta
    };
    let bytes = serde_json::to_vec(&sealed).map_err(|e| IngestError::Invalid(e.to_string()))?;
    Ok(Incoming {
        meta,
        bytes,
        hold: Some(WriteHold::new(head)),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use intentproof_policy::redact::{HashKey, RedactionPolicy, Redactor};
    use intentproof_store::{Appended, StoreOptions};
    use tokio::sync::Notify;

    use super::*;
    use crate::metrics::Metrics;
    use crate::writer::{Outcome, Writer};

    /// Eviction under load: four threads seal 600 events into 40 chains
    /// through a cache of 4 heads while a fifth thread evicts idle heads
    /// in a loop; events go to the real writer, a third of them awaited at
    /// once and the rest left in flight while the thread seals on. Every
    /// event is stored (a head read back too early would fork its chain
    /// and the store would refuse the event), heads were read back from
    /// the store after evictions, and the store verifies every chain.
    #[test]
    fn evicting_chain_heads_under_load_never_forks_a_chain() {
        const THREADS: usize = 4;
        const PER_THREAD: usize = 150;
        const CHAINS: usize = 40;
        let dir = tempfile::tempdir().unwrap();
        let key = InstanceKey::generate().unwrap();
        let (instance, public) = (key.instance_id().to_owned(), key.verifying_key());
        let store = Arc::new(Store::open(dir.path(), StoreOptions::default(), &|_| None).unwrap());
        let (writer, writer_thread) = Writer::start(
            Arc::clone(&store),
            4096,
            Arc::new(Metrics::default()),
            Arc::new(Notify::new()),
            None,
        )
        .unwrap();
        let redactor = Redactor::new(
            RedactionPolicy::default_policy(),
            HashKey::from_bytes([1; 32]),
        );
        let mut sealer = DaemonSealer::new(key, "local", Arc::clone(&store), Arc::new(redactor));
        sealer.heads = ChainHeads::with_max(4);
        let stop = AtomicBool::new(false);
        let outcomes: Vec<Outcome> = std::thread::scope(|s| {
            let evictor = s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    sealer.evict_idle_chain_heads();
                    std::thread::sleep(Duration::from_micros(200));
                }
            });
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (sealer, writer) = (&sealer, &writer);
                    s.spawn(move || {
                        let (mut done, mut in_flight) = (Vec::new(), Vec::new());
                        for i in 0..PER_THREAD {
                            let chain = (i * 7 + t) % CHAINS;
                            let event = ExecutionEvent::builder("Evict", "test.evict")
                                .correlation_id(format!("chain-{chain}"))
                                .build();
                            let incoming = seal_incoming(&event, sealer).unwrap();
                            let answer = writer.submit(incoming).unwrap();
                            if i % 3 == 0 {
                                done.push(answer.blocking_recv().unwrap());
                            } else {
                                in_flight.push(answer);
                            }
                        }
                        done.extend(in_flight.into_iter().map(|a| a.blocking_recv().unwrap()));
                        done
                    })
                })
                .collect();
            let outcomes = workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect();
            stop.store(true, Ordering::Relaxed);
            evictor.join().unwrap();
            outcomes
        });
        assert_eq!(outcomes.len(), THREADS * PER_THREAD);
        let refused: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| !matches!(o, Ok(Ok(Appended::Stored { .. }))))
            .collect();
        assert!(refused.is_empty(), "{refused:?}");
        let reads = sealer.heads.reads.load(Ordering::Relaxed);
        assert!(reads > CHAINS as u64, "heads read from the store: {reads}");
        assert!(sealer.cached_chain_heads() <= 4, "idle heads stay evicted");
        let mut events = 0;
        for chain in 0..CHAINS {
            let summary = store
                .chain_summary(&format!("chain-{chain}"))
                .unwrap()
                .unwrap();
            assert_eq!(
                (summary.gaps(), summary.verified()),
                (0, true),
                "chain-{chain}: {summary:?}"
            );
            events += summary.events;
        }
        assert_eq!(events, (THREADS * PER_THREAD) as u64);
        drop((sealer, writer));
        writer_thread.join().unwrap();
        store.flush().unwrap();
        drop(store);
        let report = intentproof_store::verify(
            dir.path(),
            &|i: &str| (i == instance).then_some(public),
            None,
        )
        .unwrap();
        assert_eq!(
            (report.records, report.chains, report.signatures_verified),
            (600, 40, 600)
        );
    }
}
