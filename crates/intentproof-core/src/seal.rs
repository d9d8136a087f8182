//! Sealing (signing and chaining) events, and verifying them.
//!
//! A [`Sealer`] turns [`ExecutionEvent`]s into signed `intentproof.event.v1`
//! objects. It keeps one hash chain per `(instance_id, correlation_id)`:
//! the first event gets `chain_position` 1 and `prev_event_hash`
//! [`ZERO_HASH`]; each later one the content hash of the one before. The
//! signature is Ed25519 over the 32-byte SHA-256 digest of the canonical
//! event without `signature` (not over the canonical bytes).
//!
//! Defaults filled when sealing (the v1 schema requires them):
//!
//! | member | value |
//! |---|---|
//! | `instance_id` | the sealer's, always |
//! | `tenant_id` | the event's, else the sealer's (default `"local"`) |
//! | `correlation_id` | the event's, else **the event's own id**: an uncorrelated event is a chain of one |
//! | `provenance_class` | `"sdk_attested_evidence"`, always |
//! | `chain_position`, `prev_event_hash` | from the chain, always (incoming values are ignored) |
//! | `untrusted_payload` | the event's, else `true` when `inputs` or `output` is present |
//! | `spec_version` | `"1.0.0"`, always |
//! | `sdk_version` | the event's, else `"rust@<this crate's version>"` |
//!
//! Chain state lives in memory; a restarted process continues a stored
//! chain with [`Sealer::resume_chain`].
//!
//! ```
//! use intentproof_core::{ExecutionEvent, keys::InstanceKey, seal::{Sealer, verify_event}};
//! let key = InstanceKey::from_seed("inst_doc", [1u8; 32]);
//! let sealer = Sealer::new(key.clone());
//! let e = ExecutionEvent::builder("Pay", "pay.create").correlation_id("c1").build();
//! let first = sealer.seal(&e).unwrap();
//! let second = sealer.seal(&ExecutionEvent::builder("Pay", "pay.confirm").correlation_id("c1").build()).unwrap();
//! assert_eq!(second.event["chain_position"], 2);
//! assert_eq!(second.event["prev_event_hash"], first.content_hash.as_str());
//! verify_event(&second.event, &key.verifying_key()).unwrap();
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha512};

use crate::canon::CanonError;
use crate::event::ExecutionEvent;
use crate::keys::InstanceKey;
use crate::v1::{self, PROVENANCE_CLASS, SPEC_VERSION, ZERO_HASH, sha256_prefixed};

/// The `sdk_version` this crate writes when the event has none.
pub const SDK_VERSION: &str = concat!("rust@", env!("CARGO_PKG_VERSION"));

/// Why an event could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The event cannot be canonicalized (e.g. an integer beyond 2^53 in
    /// its inputs or output).
    #[error("event {event_id} cannot be canonicalized: {source}")]
    Canon {
        /// The event's id.
        event_id: String,
        /// What is wrong.
        source: CanonError,
    },
    /// [`Sealer::sign_chained`] was given an event chained for another
    /// instance.
    #[error(
        "event {event_id} was chained for instance {instance}, not this signer's {signer}: sign it with that instance's key"
    )]
    OtherInstance {
        /// The event's id.
        event_id: String,
        /// The instance it names.
        instance: String,
        /// The signer's instance.
        signer: String,
    },
}

/// An event [`Sealer::chain_only`] chained but did not sign.
#[derive(Debug, Clone, PartialEq)]
pub struct Chained {
    /// The v1 object, every member set but `signature`.
    pub event: Map<String, Value>,
    /// Its content digest (what the signature will sign).
    pub digest: [u8; 32],
    /// Its RFC 8785 canonical bytes (what `digest` hashes): valid JSON, a
    /// compact form to store it in until it is signed.
    pub canonical: Vec<u8>,
}

/// A sealed event: the signed v1 object and its content hash.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedEvent {
    /// The signed `intentproof.event.v1` object.
    pub event: Value,
    /// `"sha256:<hex>"` of the event without its signature.
    pub content_hash: String,
}

#[derive(Debug, Default)]
struct ChainHead {
    position: u64,
    hash: Option<String>,
}

/// Seals events with one instance key. Cheap to share: every method takes
/// `&self`; chains are locked one by one, so events of different chains are
/// sealed in parallel and signing happens outside any lock.
pub struct Sealer {
    key: InstanceKey,
    /// The signing key's scalar and nonce prefix (SHA-512 of the seed),
    /// derived once: `SigningKey::sign` derives it again on every call.
    /// Signatures are the same bytes (Ed25519 is deterministic).
    expanded: ExpandedSecretKey,
    verifying: VerifyingKey,
    key_id: String,
    tenant_id: String,
    sdk_version: String,
    chains: Mutex<HashMap<String, Arc<Mutex<ChainHead>>>>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key", &self.key)
            .field("tenant_id", &self.tenant_id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Chain heads are only updated after a successful hash, so a panic
    // elsewhere cannot leave one half-written: poisoning is safe to ignore.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sealer {
    /// A sealer with tenant `"local"` and sdk_version [`SDK_VERSION`].
    pub fn new(key: InstanceKey) -> Self {
        Sealer {
            key_id: key.key_id(),
            expanded: ExpandedSecretKey::from(key.signing_key().as_bytes()),
            verifying: key.verifying_key(),
            key,
            tenant_id: "local".into(),
            sdk_version: SDK_VERSION.into(),
            chains: Mutex::new(HashMap::new()),
        }
    }

    /// Sets the tenant used for events that carry none.
    pub fn with_tenant_id(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = tenant_id.into();
        self
    }

    /// Sets the `sdk_version` used for events that carry none.
    pub fn with_sdk_version(mut self, sdk_version: impl Into<String>) -> Self {
        self.sdk_version = sdk_version.into();
        self
    }

    /// The instance key.
    pub fn key(&self) -> &InstanceKey {
        &self.key
    }

    /// Continues a chain stored elsewhere: the next event of `correlation_id`
    /// gets position `last_position + 1` and `prev_event_hash` `last_hash`.
    pub fn resume_chain(
        &self,
        correlation_id: impl Into<String>,
        last_position: u64,
        last_hash: impl Into<String>,
    ) {
        let head = ChainHead {
            position: last_position,
            hash: Some(last_hash.into()),
        };
        lock(&self.chains).insert(correlation_id.into(), Arc::new(Mutex::new(head)));
    }

    /// Like [`Sealer::resume_chain`], but only for a chain this sealer does
    /// not track yet: a chain it has already sealed into (perhaps since the
    /// caller read the stored head) keeps its newer head. Returns whether
    /// the chain was taken up.
    pub fn resume_chain_if_new(
        &self,
        correlation_id: impl Into<String>,
        last_position: u64,
        last_hash: impl Into<String>,
    ) -> bool {
        let mut chains = lock(&self.chains);
        match chains.entry(correlation_id.into()) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Arc::new(Mutex::new(ChainHead {
                    position: last_position,
                    hash: Some(last_hash.into()),
                })));
                true
            }
        }
    }

    /// Whether this sealer tracks a chain for `correlation_id` (it sealed
    /// into it, or it was resumed).
    pub fn tracks_chain(&self, correlation_id: &str) -> bool {
        lock(&self.chains).contains_key(correlation_id)
    }

    /// Number of chains this sealer is tracking.
    pub fn chain_count(&self) -> usize {
        lock(&self.chains).len()
    }

    /// Seals `event` (see the module docs for the members it fills).
    ///
    /// An uncorrelated event is a chain of one (its correlation is its own
    /// id): it is sealed at position 1 and not tracked, so a process that
    /// seals millions of them keeps no memory for them.
    ///
    /// ```
    /// # use intentproof_core::{ExecutionEvent, keys::InstanceKey, seal::Sealer};
    /// let sealer = Sealer::new(InstanceKey::from_seed("inst_x", [1u8; 32]));
    /// for _ in 0..3 {
    ///     let sealed = sealer.seal(&ExecutionEvent::builder("Ping", "net.ping").build()).unwrap();
    ///     assert_eq!(sealed.event["chain_position"], 1);
    /// }
    /// assert_eq!(sealer.chain_count(), 0);
    /// ```
    pub fn seal(&self, event: &ExecutionEvent) -> Result<SealedEvent, SealError> {
        let chained = self.chain(event)?;
        Ok(self.sign(chained.event, &chained.digest))
    }

    /// The first half of [`Sealer::seal`]: `event` as a v1 object with every
    /// member set and its place in its chain taken, but no `signature`, and
    /// its canonical bytes. [`Sealer::sign_chained`] finishes it, now or
    /// later (the chain's order is fixed here, so a caller can make this
    /// form durable first and sign off its hot path; Ed25519 signing is most
    /// of the cost).
    ///
    /// ```
    /// # use intentproof_core::{ExecutionEvent, keys::InstanceKey, seal::Sealer};
    /// let sealer = Sealer::new(InstanceKey::from_seed("inst_x", [1u8; 32]));
    /// let event = ExecutionEvent::builder("Pay", "pay.create").correlation_id("c1").build();
    /// let chained = sealer.chain_only(&event).unwrap();
    /// assert!(chained.event.get("signature").is_none());
    /// let parsed: serde_json::Value = serde_json::from_slice(&chained.canonical).unwrap();
    /// assert_eq!(parsed, serde_json::Value::Object(chained.event.clone()));
    /// let sealed = sealer.sign_chained(chained.event).unwrap();
    /// intentproof_core::seal::verify_event(&sealed.event, &sealer.key().verifying_key()).unwrap();
    /// ```
    pub fn chain_only(&self, event: &ExecutionEvent) -> Result<Chained, SealError> {
        self.chain(event)
    }

    /// Signs a v1 object [`Sealer::chain_only`] returned (by this sealer's
    /// key, or another sealer of the same instance): the other half of
    /// [`Sealer::seal`], with the same result. Fails when the object names
    /// another instance (its signature would not verify under its
    /// `instance_id`) or cannot be canonicalized.
    pub fn sign_chained(&self, mut map: Map<String, Value>) -> Result<SealedEvent, SealError> {
        let event_id = self.check_instance(&map)?;
        map.remove("signature");
        let digest =
            v1::content_digest(&map).map_err(|source| SealError::Canon { event_id, source })?;
        Ok(self.sign(map, &digest))
    }

    /// [`Sealer::sign_chained`] for an object kept as the bytes
    /// [`Chained::canonical`] held: `map` is those bytes parsed, and the
    /// digest is taken of the bytes as they are instead of canonicalizing
    /// `map` again (the one step of signing besides Ed25519 that grows with
    /// the event). Bytes that are not `map`'s canonical form give a
    /// signature that no verifier accepts: verifiers hash `map`'s canonical
    /// form, never these bytes.
    ///
    /// ```
    /// # use intentproof_core::{ExecutionEvent, keys::InstanceKey, seal::Sealer};
    /// let sealer = Sealer::new(InstanceKey::from_seed("inst_x", [1u8; 32]));
    /// let event = ExecutionEvent::builder("Pay", "pay.create").build();
    /// let chained = sealer.chain_only(&event).unwrap();
    /// let from_bytes = sealer
    ///     .sign_canonical(serde_json::from_slice(&chained.canonical).unwrap(), &chained.canonical)
    ///     .unwrap();
    /// assert_eq!(from_bytes, sealer.sign_chained(chained.event).unwrap());
    /// ```
    pub fn sign_canonical(
        &self,
        map: Map<String, Value>,
        canonical: &[u8],
    ) -> Result<SealedEvent, SealError> {
        if map.contains_key("signature") {
            return self.sign_chained(map);
        }
        self.check_instance(&map)?;
        Ok(self.sign(map, &Sha256::digest(canonical).into()))
    }

    /// The event id of `map`, when it names this sealer's instance (else
    /// its signature would not verify under its `instance_id`).
    fn check_instance(&self, map: &Map<String, Value>) -> Result<String, SealError> {
        let event_id = event_id_of(map);
        let instance = str_member(map, "instance_id");
        if instance != Some(self.key.instance_id()) {
            return Err(SealError::OtherInstance {
                event_id,
                instance: instance.unwrap_or("(none)").to_owned(),
                signer: self.key.instance_id().to_owned(),
            });
        }
        Ok(event_id)
    }

    /// `event`'s v1 members, linked into its chain, and its content digest.
    fn chain(&self, event: &ExecutionEvent) -> Result<Chained, SealError> {
        let mut map = self.members(event);
        let Some(correlation) = event.correlation_id.as_deref() else {
            let (digest, canonical) = link(&mut map, None, event)?;
            return Ok(Chained {
                event: map,
                digest,
                canonical,
            });
        };
        let chain = {
            let mut chains = lock(&self.chains);
            match chains.get(correlation) {
                Some(chain) => Arc::clone(chain),
                None => Arc::clone(chains.entry(correlation.to_owned()).or_default()),
            }
        };
        let (digest, canonical) = {
            let mut head = lock(&chain);
            let last = head.hash.as_deref().map(|hash| (head.position, hash));
            let linked = link(&mut map, last, event)?;
            head.position += 1;
            head.hash = Some(sha256_prefixed(&linked.0));
            linked
        };
        Ok(Chained {
            event: map,
            digest,
            canonical,
        })
    }

    /// Seals `event` as the event after `last` (position and content hash
    /// of its chain's last event; `None` for a new chain), leaving the
    /// chains this sealer tracks alone: for a caller that keeps its chain
    /// heads itself (the daemon bounds how many it keeps in memory). The
    /// caller must not seal two events after the same `last`: that forks
    /// the chain.
    pub fn seal_after(
        &self,
        event: &ExecutionEvent,
        last: Option<(u64, &str)>,
    ) -> Result<SealedEvent, SealError> {
        let mut map = self.members(event);
        let (digest, _) = link(&mut map, last, event)?;
        Ok(self.sign(map, &digest))
    }

    fn sign(&self, mut map: Map<String, Value>, digest: &[u8; 32]) -> SealedEvent {
        let signature = raw_sign::<Sha512>(&self.expanded, digest, &self.verifying);
        let content_hash = put_signature(&mut map, digest, &signature, &self.key_id);
        SealedEvent {
            event: Value::Object(map),
            content_hash,
        }
    }

    /// `event` as a v1 map with every member the module docs list set,
    /// except the chain's and the signature.
    fn members(&self, event: &ExecutionEvent) -> Map<String, Value> {
        // Render once, then set the sealed members on the map (they replace
        // whatever the typed fields or `v1_verbatim` said).
        let mut map = v1::to_v1(event);
        let mut put = |k: &str, v: Value| {
            map.insert(k.to_owned(), v);
        };
        let string = |s: &str| Value::String(s.to_owned());
        put("instance_id", string(self.key.instance_id()));
        put(
            "tenant_id",
            string(event.tenant_id.as_deref().unwrap_or(&self.tenant_id)),
        );
        let correlation = event.correlation_id.as_deref().unwrap_or(&event.id);
        put("correlation_id", string(correlation));
        put("provenance_class", string(PROVENANCE_CLASS));
        let untrusted = event
            .untrusted_payload
            .unwrap_or(event.inputs.is_some() || event.output.is_some());
        put("untrusted_payload", Value::Bool(untrusted));
        put("spec_version", string(SPEC_VERSION));
        put(
            "sdk_version",
            string(event.sdk_version.as_deref().unwrap_or(&self.sdk_version)),
        );
        map.remove("signature");
        map
    }
}

/// Sets `map`'s chain members to follow `last` (position and content hash;
/// `None`: the chain's first event) and returns its content digest.
fn link(
    map: &mut Map<String, Value>,
    last: Option<(u64, &str)>,
    event: &ExecutionEvent,
) -> Result<([u8; 32], Vec<u8>), SealError> {
    let (position, prev) = last.unwrap_or((0, ZERO_HASH));
    map.insert(
        "chain_position".into(),
        Value::Number((position + 1).into()),
    );
    map.insert("prev_event_hash".into(), Value::String(prev.to_owned()));
    let canonical =
        crate::canon::canonicalize_object_without(map, &["signature"]).map_err(|source| {
            SealError::Canon {
                event_id: event.id.clone(),
                source,
            }
        })?;
    Ok((Sha256::digest(&canonical).into(), canonical))
}

/// Signs a v1 object as it stands (no chain bookkeeping, no defaults):
/// computes its content hash, signs the digest and sets `signature`.
/// Returns the content hash.
///
/// ```
/// use intentproof_core::{keys::InstanceKey, seal::{sign_v1, verify_event}};
/// let key = InstanceKey::from_seed("inst_x", [3u8; 32]);
/// let mut obj = serde_json::json!({"schema": "intentproof.event.v1"});
/// sign_v1(obj.as_object_mut().unwrap(), key.signing_key(), &key.key_id()).unwrap();
/// verify_event(&obj, &key.verifying_key()).unwrap();
/// ```
pub fn sign_v1(
    v1: &mut Map<String, Value>,
    key: &SigningKey,
    key_id: &str,
) -> Result<String, CanonError> {
    let digest = v1::content_digest(v1)?;
    Ok(sign_digest(v1, &digest, key, key_id))
}

fn sign_digest(
    map: &mut Map<String, Value>,
    digest: &[u8; 32],
    key: &SigningKey,
    key_id: &str,
) -> String {
    put_signature(map, digest, &key.sign(digest), key_id)
}

/// Sets `signature` on `map`; returns the content hash of `digest`.
fn put_signature(
    map: &mut Map<String, Value>,
    digest: &[u8; 32],
    signature: &ed25519_dalek::Signature,
    key_id: &str,
) -> String {
    let mut sig = Map::new();
    sig.insert("alg".into(), Value::String("ed25519".into()));
    sig.insert("key_id".into(), Value::String(key_id.into()));
    sig.insert(
        "value".into(),
        Value::String(B64.encode(signature.to_bytes())),
    );
    map.insert("signature".into(), Value::Object(sig));
    sha256_prefixed(digest)
}

/// Why a single event does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Not a JSON object.
    #[error("event is not a JSON object")]
    NotObject,
    /// No `signature` member.
    #[error("event {event_id} has no `signature`; it was never sealed")]
    Unsigned {
        /// The event's id (`?` when missing).
        event_id: String,
    },
    /// `signature` is not `{alg, key_id, value}` with a 64-byte base64 value.
    #[error("event {event_id} has a malformed signature: {reason}")]
    MalformedSignature {
        /// The event's id.
        event_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `signature.alg` is not `ed25519`.
    #[error(
        "event {event_id} is signed with unsupported algorithm {alg:?}; only \"ed25519\" is supported"
    )]
    UnsupportedAlg {
        /// The event's id.
        event_id: String,
        /// The algorithm named.
        alg: String,
    },
    /// `signature.key_id` is not a key of the event's `instance_id`.
    #[error(
        "event {event_id} names key {key_id:?}, which is not a key of its instance \
         {instance_id:?} (expected \"{instance_id}:k<number>\")"
    )]
    KeyIdMismatch {
        /// The event's id.
        event_id: String,
        /// The key id named.
        key_id: String,
        /// The event's instance id.
        instance_id: String,
    },
    /// The signature does not match the content and key.
    #[error(
        "signature of event {event_id} (chain position {position}) does not verify with key \
         {key_id}: the event was changed after it was signed, or another key signed it"
    )]
    BadSignature {
        /// The event's id.
        event_id: String,
        /// Its chain position (`?` when missing).
        position: String,
        /// The key id named by the signature.
        key_id: String,
    },
    /// The event cannot be canonicalized, so it has no content hash.
    #[error("event {event_id} cannot be canonicalized: {source}")]
    Canon {
        /// The event's id.
        event_id: String,
        /// What is wrong.
        source: CanonError,
    },
}

fn str_member<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

fn event_id_of(obj: &Map<String, Value>) -> String {
    str_member(obj, "event_id").unwrap_or("?").to_owned()
}

fn position_text(obj: &Map<String, Value>) -> String {
    obj.get("chain_position")
        .map_or_else(|| "?".to_owned(), |p| p.to_string())
}

/// The `key_id` a signed event names, if it has one.
pub fn signature_key_id(event: &Value) -> Option<&str> {
    event.get("signature")?.get("key_id")?.as_str()
}

/// Checks the signature of one v1 event with `key`. Returns its content
/// hash. The signature's `key_id` must be `"<instance_id>:k<number>"` of the
/// event's `instance_id` (it is outside the signed content, so this is what
/// binds it). Chain fields are not checked here; see [`verify_chain`].
pub fn verify_event(event: &Value, key: &VerifyingKey) -> Result<String, VerifyError> {
    verify_event_inner(event, key, None)
}

/// [`verify_event`] for a caller that already holds the event's content
/// digest (`v1::content_digest` of `event`), so the event is not
/// canonicalized and hashed a second time. Same checks, same errors.
pub fn verify_event_with_digest(
    event: &Value,
    key: &VerifyingKey,
    digest: &[u8; 32],
) -> Result<(), VerifyError> {
    verify_event_inner(event, key, Some(digest)).map(|_| ())
}

fn verify_event_inner(
    event: &Value,
    key: &VerifyingKey,
    known_digest: Option<&[u8; 32]>,
) -> Result<String, VerifyError> {
    let obj = event.as_object().ok_or(VerifyError::NotObject)?;
    let event_id = event_id_of(obj);
    let sig = obj.get("signature").ok_or_else(|| VerifyError::Unsigned {
        event_id: event_id.clone(),
    })?;
    let malformed = |reason: &str| VerifyError::MalformedSignature {
        event_id: event_id.clone(),
        reason: reason.to_owned(),
    };
    let sig = sig
        .as_object()
        .ok_or_else(|| malformed("`signature` is not an object"))?;
    let alg = str_member(sig, "alg").ok_or_else(|| malformed("`alg` is missing"))?;
    if alg != "ed25519" {
        return Err(VerifyError::UnsupportedAlg {
            event_id,
            alg: alg.to_owned(),
        });
    }
    let key_id = str_member(sig, "key_id").ok_or_else(|| malformed("`key_id` is missing"))?;
    if let Some(instance_id) = str_member(obj, "instance_id") {
        let ok = key_id
            .strip_prefix(instance_id)
            .and_then(|rest| rest.strip_prefix(":k"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            return Err(VerifyError::KeyIdMismatch {
                event_id,
                key_id: key_id.to_owned(),
                instance_id: instance_id.to_owned(),
            });
        }
    }
    let value = str_member(sig, "value").ok_or_else(|| malformed("`value` is missing"))?;
    // Decode on the stack when the text has the length of 64 bytes (the
    // only valid case); anything else takes the general path, which
    // reports what is wrong exactly as before.
    let mut buf = [0u8; 66];
    let bytes: [u8; 64] = match (value.len(), B64.decode_slice(value, &mut buf)) {
        (88, Ok(64)) => {
            let mut out = [0u8; 64];
            out.copy_from_slice(&buf[..64]);
            out
        }
        _ => {
            let bytes = B64
                .decode(value)
                .map_err(|e| malformed(&format!("`value` is not base64: {e}")))?;
            bytes.try_into().map_err(|b: Vec<u8>| {
                malformed(&format!(
                    "`value` must be 64 bytes, found {} bytes",
                    b.len()
                ))
            })?
        }
    };
    let signature = ed25519_dalek::Signature::from_bytes(&bytes);
    let digest = match known_digest {
        Some(d) => *d,
        None => v1::content_digest(obj).map_err(|source| VerifyError::Canon {
            event_id: event_id.clone(),
            source,
        })?,
    };
    crate::keys::verify_strict_cached(key, &digest, &signature).map_err(|_| {
        VerifyError::BadSignature {
            event_id,
            position: position_text(obj),
            key_id: key_id.to_owned(),
        }
    })?;
    Ok(sha256_prefixed(&digest))
}

/// Why a sequence of events is not a valid set of chains.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// One event's signature failed.
    #[error("event #{index}: {source}")]
    Event {
        /// 0-based index in the input.
        index: usize,
        /// What failed.
        source: VerifyError,
    },
    /// The signature names a key the caller does not know.
    #[error(
        "event {event_id} is signed by unknown key {key_id:?}; add that instance's public key to the verifier"
    )]
    UnknownKey {
        /// The event's id.
        event_id: String,
        /// The key id named.
        key_id: String,
    },
    /// A chain member is missing or mistyped.
    #[error("event #{index} ({event_id}) cannot be placed in a chain: {reason}")]
    Malformed {
        /// 0-based index in the input.
        index: usize,
        /// The event's id (`?` when missing).
        event_id: String,
        /// What is missing.
        reason: String,
    },
    /// A position is missing from a chain.
    #[error(
        "gap in chain {correlation_id:?}: position {missing} is missing before event {event_id} \
         at position {position} (an event was dropped)"
    )]
    Gap {
        /// The chain's correlation id.
        correlation_id: String,
        /// The first missing position.
        missing: u64,
        /// The event found after the gap.
        event_id: String,
        /// Its position.
        position: u64,
    },
    /// An event comes later in the input than an event with a higher position.
    #[error(
        "chain {correlation_id:?} is out of order: event {event_id} at position {position} \
         comes after position {after_position}"
    )]
    OutOfOrder {
        /// The chain's correlation id.
        correlation_id: String,
        /// The event that comes too late.
        event_id: String,
        /// Its position.
        position: u64,
        /// The highest position seen before it.
        after_position: u64,
    },
    /// `prev_event_hash` is not the content hash of the previous event.
    #[error(
        "prev_event_hash mismatch at position {position} (event {event_id}): expected \
         {expected}, found {found} (an earlier event was changed, or this one belongs elsewhere)"
    )]
    PrevHashMismatch {
        /// The event's id.
        event_id: String,
        /// Its position.
        position: u64,
        /// The content hash of the previous event (or the zero hash).
        expected: String,
        /// What the event carries.
        found: String,
    },
    /// Two different events claim the same position.
    #[error(
        "fork in chain {correlation_id:?} at position {position}: events {first_event_id} and \
         {second_event_id} both claim it"
    )]
    Fork {
        /// The chain's correlation id.
        correlation_id: String,
        /// The contested position.
        position: u64,
        /// The event seen first.
        first_event_id: String,
        /// The other one.
        second_event_id: String,
    },
    /// The same event occurs twice.
    #[error("event {event_id} at position {position} occurs more than once")]
    Duplicate {
        /// The event's id.
        event_id: String,
        /// Its position.
        position: u64,
    },
}

/// Summary of a verified sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// Events checked.
    pub events: usize,
    /// Distinct `(instance_id, correlation_id)` chains.
    pub chains: usize,
}

struct ChainState {
    last_position: u64,
    last_hash: String,
    seen: HashMap<u64, (String, String)>,
}

/// Verifies a sequence of signed v1 events: every signature (with the key
/// `keys` returns for its `key_id`) and every chain: positions 1, 2, ... in
/// input order, each `prev_event_hash` equal to the content hash of the
/// event before (the zero hash at position 1), no forks, no duplicates.
/// Events of different chains may interleave. Stops at the first problem.
///
/// ```
/// use intentproof_core::{ExecutionEvent, keys::InstanceKey, seal::{Sealer, verify_chain}};
/// let key = InstanceKey::from_seed("inst_doc", [1u8; 32]);
/// let sealer = Sealer::new(key.clone());
/// let events: Vec<_> = (0..3)
///     .map(|_| sealer.seal(&ExecutionEvent::builder("i", "a").correlation_id("c").build()).unwrap().event)
///     .collect();
/// let vk = key.verifying_key();
/// assert_eq!(verify_chain(&events, |_| Some(vk)).unwrap().events, 3);
/// let dropped = [events[0].clone(), events[2].clone()];
/// assert!(verify_chain(&dropped, |_| Some(vk)).unwrap_err().to_string().contains("position 2 is missing"));
/// ```
pub fn verify_chain<F>(events: &[Value], keys: F) -> Result<ChainSummary, ChainError>
where
    F: Fn(&str) -> Option<VerifyingKey>,
{
    // Positions present per chain, to tell a reordering from a drop.
    let mut present: HashMap<(String, String), HashSet<u64>> = HashMap::new();
    for e in events {
        if let (Some(inst), Some(corr), Some(pos)) = (
            e.get("instance_id").and_then(Value::as_str),
            e.get("correlation_id").and_then(Value::as_str),
            e.get("chain_position").and_then(Value::as_u64),
        ) {
            present
                .entry((inst.to_owned(), corr.to_owned()))
                .or_default()
                .insert(pos);
        }
    }

    let mut chains: HashMap<(String, String), ChainState> = HashMap::new();
    for (index, e) in events.iter().enumerate() {
        let obj = e.as_object().ok_or(ChainError::Event {
            index,
            source: VerifyError::NotObject,
        })?;
        let event_id = event_id_of(obj);
        let key_id = signature_key_id(e).ok_or_else(|| ChainError::Event {
            index,
            source: VerifyError::Unsigned {
                event_id: event_id.clone(),
            },
        })?;
        let key = keys(key_id).ok_or_else(|| ChainError::UnknownKey {
            event_id: event_id.clone(),
            key_id: key_id.to_owned(),
        })?;
        let hash = verify_event(e, &key).map_err(|source| ChainError::Event { index, source })?;

        let malformed = |reason: &str| ChainError::Malformed {
            index,
            event_id: event_id.clone(),
            reason: reason.to_owned(),
        };
        let instance =
            str_member(obj, "instance_id").ok_or_else(|| malformed("no `instance_id`"))?;
        let correlation =
            str_member(obj, "correlation_id").ok_or_else(|| malformed("no `correlation_id`"))?;
        let position = obj
            .get("chain_position")
            .and_then(Value::as_u64)
            .filter(|p| *p >= 1)
            .ok_or_else(|| malformed("`chain_position` is not an integer >= 1"))?;
        let prev =
            str_member(obj, "prev_event_hash").ok_or_else(|| malformed("no `prev_event_hash`"))?;

        let chain_key = (instance.to_owned(), correlation.to_owned());
        let state = chains
            .entry(chain_key.clone())
            .or_insert_with(|| ChainState {
                last_position: 0,
                last_hash: ZERO_HASH.to_owned(),
                seen: HashMap::new(),
            });
        if let Some((first_id, first_hash)) = state.seen.get(&position) {
            return Err(if *first_hash == hash {
                ChainError::Duplicate { event_id, position }
            } else {
                ChainError::Fork {
                    correlation_id: correlation.to_owned(),
                    position,
                    first_event_id: first_id.clone(),
                    second_event_id: event_id,
                }
            });
        }
        if position < state.last_position {
            return Err(ChainError::OutOfOrder {
                correlation_id: correlation.to_owned(),
                event_id,
                position,
                after_position: state.last_position,
            });
        }
        if position > state.last_position + 1 {
            let missing = state.last_position + 1;
            let comes_later = present
                .get(&chain_key)
                .is_some_and(|set| set.contains(&missing));
            return Err(if comes_later {
                ChainError::OutOfOrder {
                    correlation_id: correlation.to_owned(),
                    event_id: events
                        .iter()
                        .skip(index + 1)
                        .find(|x| {
                            x.get("chain_position").and_then(Value::as_u64) == Some(missing)
                                && x.get("correlation_id").and_then(Value::as_str)
                                    == Some(correlation)
                                && x.get("instance_id").and_then(Value::as_str) == Some(instance)
                        })
                        .and_then(|x| x.get("event_id").and_then(Value::as_str))
                        .unwrap_or("?")
                        .to_owned(),
                    position: missing,
                    after_position: position,
                }
            } else {
                ChainError::Gap {
                    correlation_id: correlation.to_owned(),
                    missing,
                    event_id,
                    position,
                }
            });
        }
        if prev != state.last_hash {
            return Err(ChainError::PrevHashMismatch {
                event_id,
                position,
                expected: state.last_hash.clone(),
                found: prev.to_owned(),
            });
        }
        state.last_position = position;
        state.last_hash = hash.clone();
        state.seen.insert(position, (event_id, hash));
    }
    Ok(ChainSummary {
        events: events.len(),
        chains: chains.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sign_canonical` signs the bytes it is given: the canonical form
    /// verifies; any other form of the same object gives a signature no
    /// verifier accepts (it never signs content other than what verifiers
    /// hash).
    #[test]
    fn sign_canonical_signs_the_given_bytes_only_when_canonical() {
        let key = InstanceKey::from_seed("inst_canon", [4u8; 32]);
        let sealer = Sealer::new(key.clone());
        let chained = sealer
            .chain_only(&ExecutionEvent::builder("Pay", "pay.create").build())
            .unwrap();
        let parsed = |bytes: &[u8]| serde_json::from_slice::<Map<String, Value>>(bytes).unwrap();
        let sealed = sealer
            .sign_canonical(parsed(&chained.canonical), &chained.canonical)
            .unwrap();
        verify_event(&sealed.event, &key.verifying_key()).unwrap();
        let mut spaced = b" ".to_vec();
        spaced.extend_from_slice(&chained.canonical);
        let sealed = sealer.sign_canonical(parsed(&spaced), &spaced).unwrap();
        assert!(matches!(
            verify_event(&sealed.event, &key.verifying_key()),
            Err(VerifyError::BadSignature { .. })
        ));
        let other = Sealer::new(InstanceKey::from_seed("inst_other", [4u8; 32]));
        assert!(matches!(
            other.sign_canonical(parsed(&chained.canonical), &chained.canonical),
            Err(SealError::OtherInstance { .. })
        ));
    }

    /// The sealer's cached expanded key signs exactly like `SigningKey::sign`.
    #[test]
    fn cached_expanded_key_signs_like_signing_key() {
        for seed in [
            [0u8; 32],
            [1u8; 32],
            [0xff; 32],
            *b"0123456789abcdef0123456789abcdef",
        ] {
            let key = InstanceKey::from_seed("inst_sign", seed);
            let sealer = Sealer::new(key.clone());
            for i in 0..5 {
                let event = ExecutionEvent::builder("i", "a")
                    .correlation_id(format!("c{}", i % 2))
                    .build();
                let sealed = sealer.seal(&event).unwrap_or_else(|e| panic!("{e}"));
                let Some(obj) = sealed.event.as_object() else {
                    panic!("not an object");
                };
                let digest = v1::content_digest(obj).unwrap_or_else(|e| panic!("{e}"));
                let expected = B64.encode(key.signing_key().sign(&digest).to_bytes());
                assert_eq!(sealed.event["signature"]["value"], expected.as_str());
                verify_event(&sealed.event, &key.verifying_key()).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
}
