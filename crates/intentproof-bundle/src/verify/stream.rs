//! Streaming verification: the bundle is read once, front to back, and no
//! large member is held.
//!
//! The archive is visited member by member with the same bounds and checks
//! as [`read_archive`](crate::archive::read_archive) (it is the same code).
//! Every member is hashed as it passes (step 4 compares the digests at the
//! end). Then, by member:
//!
//! - `events.jsonl` is cut into blocks of whole lines, parsed, hashed and
//!   checked on worker threads; what is kept of an event is its id, its
//!   leaf hash, its signature job (digest, signature, key) and a flag byte.
//!   Chains are followed as the events come: per chain only its last
//!   position and hash;
//! - `flow.json`, `run.json` and `inclusion_proof.json` are parsed as they
//!   stream ([`super::json_stream`]): the few top-level fields the checks
//!   read are kept, run.json's canonical form is hashed as it goes (for its
//!   signature), and each inclusion proof is checked against its event on
//!   a worker thread;
//! - the manifest, policy.json, attestations.jsonl, certificate.json and
//!   the bundled keys are small and kept whole (up to [`SMALL_MEMBER`]
//!   bytes each).
//!
//! The keys and the manifest come after events.jsonl in a bundle (members
//! are sorted by name), so event signatures are checked once the archive
//! has been read: each one as [`verify_strict`] checks it (with a table per
//! key, [`StrictKey`]: the same accept set), spread over the threads. Then
//! the checks run in the reference order, calling the same functions as the
//! buffered verifier for everything but the per-event checks, and the
//! report is the same, finding for finding.
//!
//! Memory: per event, its id (in shared chunks), its line's leaf hash, a
//! flag byte and, when signed, a 100-byte signature job (digest, signature,
//! key slot): about 180 bytes, all freed before the report's findings are
//! built; per chain, its last position and hash; per member, its digest;
//! plus the blocks in flight (at most `2 * threads + 2` jobs of about 256
//! KiB) and the small members. Nothing grows with a member's size but the
//! longest single line or JSON value (refused beyond [`MAX_PIECE`]).
//!
//! It reports a bundle whose checks all pass, and a failure of a check it
//! runs with the buffered verifier's own function after every earlier
//! check passed the same way (steps 1-5 even when the events are broken:
//! they read none of them; the rest when every event passed its own
//! checks). Where only the buffered verifier can name the failure (an
//! event that fails a check: which one comes first, and its message; a
//! member out of the usual order; an oversized small member; a JSON
//! document it does not parse the fast way) it stops with a [`Bail`]:
//! right away for what steps 1-5 read, at the end for the rest (events.jsonl,
//! flow.json and inclusion_proof.json are then only hashed), and the
//! caller verifies the bundle the buffered way.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

use ed25519_dalek::{Signature, VerifyingKey};
use intentproof_core::canon::{canonicalize, parse_strict};
use intentproof_core::checkpoint::Checkpoint;
use intentproof_core::keys::verify_strict;
use intentproof_core::merkle::{Hash, leaf_hash, verify_inclusion};
use intentproof_core::v1::sha256_prefixed;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::json_stream::{Sink, Skeleton, integer_literals_safe, strict_valid};
use super::keys::{KeyRing, key_ring};
use super::records::{
    ATTESTATION_KIND, CERTIFICATE_KIND, EVENT_KIND, RUN_KIND, RefSig, StrictSig, analyze_line,
    process_document, process_lines, process_object, split_lines,
};
use super::reference::{
    RefView, check_files, check_head, check_merkle, check_object_signatures, check_policy,
    lenient_ids, thread_count, views,
};
use super::strict::{
    chains_valid, check_bundled_keys, check_consistency, check_inclusion_header, check_jsonl,
    check_manifest_members, check_manifest_signed, check_manifest_signer_named,
    check_projection_attestation, event_signature_summary, inclusion_proofs_valid,
    projection_signatures_valid, tlog_log_keys, tlog_member_absent, tlog_proofs_valid,
};
use super::tlog::TlogCheck;
use super::{Ctx, Fail, Report, VerifyOptions};
use crate::archive::{Compression, MemberEvent, VisitError, visit_reader, visit_slice};
use crate::manifest::{
    ATTESTATIONS, CERTIFICATE, EVENTS, FLEET_INCLUSION, FLOW, INCLUSION_PROOF, KEYS_DIR, MANIFEST,
    POLICY, RUN, TLOG_PROOFS,
};
use crate::projection::Profile;
use intentproof_core::keys::StrictKey;

/// Why the streaming path stopped: the bundle is verified the buffered way
/// instead. The text says what was seen (for tests and debugging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bail(pub &'static str);

/// Most bytes of a member kept whole (the manifest, policy.json,
/// attestations.jsonl, certificate.json, a key).
const SMALL_MEMBER: usize = 8 << 20;
/// Most bytes of all members kept whole together.
const SMALL_TOTAL: usize = 16 << 20;
/// Bytes of events.jsonl per block of lines (a longer line makes a longer block).
const EVENT_BLOCK: usize = 256 << 10;
/// Bytes of pieces per job.
const PIECE_BLOCK: usize = 256 << 10;
/// Signature jobs per storage chunk.
const SIG_CHUNK: usize = 4096;
/// The worker threads are gone (they panicked): never deferred.
const WORKERS_GONE: Bail = Bail("the workers are gone");
/// The longest event line, JSON piece or key the streaming path holds; a
/// longer one is left to the buffered verifier.
pub(super) const MAX_PIECE: usize = 32 << 20;

/// Where the bundle comes from.
pub(super) enum Source<'a, R> {
    /// Bytes in memory.
    Slice(&'a [u8]),
    /// A reader, read once.
    Reader(R),
}

/// Verifies a bundle as it streams; a `Bail` when the buffered verifier
/// must decide.
pub(super) fn verify_stream<R: Read>(
    source: Source<'_, R>,
    options: &VerifyOptions,
) -> Result<Report, Bail> {
    let threads = thread_count(options).max(1);
    let (job_tx, job_rx) = channel::<(u64, Job)>();
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = channel::<Finished>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            scope.spawn(move || worker(job_rx, done_tx));
        }
        drop(done_tx);
        let mut driver = Driver::new(job_tx, done_rx, threads, options);
        let from_slice = matches!(source, Source::Slice(_));
        let visited = {
            let on = &mut |event: MemberEvent<'_>| driver.member_event(event);
            match source {
                Source::Slice(bytes) => visit_slice(bytes, &options.limits, on),
                Source::Reader(reader) => visit_reader(reader, &options.limits, on),
            }
        };
        let result = match visited {
            Ok(compression) => driver.drain().and_then(|()| driver.finish(compression)),
            // Bytes in memory are read exactly as `read_archive` reads them
            // (the same code), so its error is the report's. A reader's
            // error may be the source's own (an I/O error): left to the
            // caller, who reads the bundle whole.
            Err(VisitError::Archive(e)) if from_slice => Ok(Ctx::new().report(Err(Fail {
                reason: e.reason(),
                detail: e.to_string(),
            }))),
            Err(VisitError::Archive(_)) => Err(Bail("the archive is not readable")),
            Err(VisitError::Stopped(bail)) => Err(bail),
        };
        // Closing the job channel ends the workers.
        driver.pool.jobs = None;
        result
    })
}

// ---------------------------------------------------------------------------
// Work for the threads

enum Job {
    /// Whole lines of events.jsonl (the block ends with a newline unless it
    /// is the member's last).
    Events { data: Vec<u8>, last: bool },
    /// JSON pieces of flow.json to check.
    Pieces {
        data: Vec<u8>,
        items: Vec<Range<usize>>,
    },
    /// Inclusion proofs to check against the checkpoint's root.
    Proofs {
        data: Vec<u8>,
        items: Vec<ProofItem>,
        root: Hash,
        size: u64,
    },
}

struct ProofItem {
    /// The leaf hash of the event's line; `None` for a projection (its
    /// proof carries the full event's).
    leaf: Option<Hash>,
    piece: Range<usize>,
}

enum Done {
    Events(Vec<EventFact>),
    Pieces,
    Proofs,
}

/// A job's sequence number, its result, and its buffer (for reuse).
type Finished = (u64, Result<Done, Bail>, Vec<u8>);

fn worker(jobs: &Mutex<Receiver<(u64, Job)>>, done: Sender<Finished>) {
    loop {
        let next = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((seq, job)) = next else { return };
        let (result, buffer) = run_job(job);
        if done.send((seq, result, buffer)).is_err() {
            return;
        }
    }
}

fn run_job(job: Job) -> (Result<Done, Bail>, Vec<u8>) {
    match job {
        Job::Events { data, last } => {
            let result = event_facts(&data, last);
            (result, data)
        }
        Job::Pieces { data, items } => {
            let result = items
                .iter()
                .all(|piece| strict_valid(&data[piece.clone()]))
                .then_some(Done::Pieces)
                .ok_or(Bail("a piece is not strict JSON"));
            (result, data)
        }
        Job::Proofs {
            data,
            items,
            root,
            size,
        } => {
            let result = items
                .iter()
                .try_for_each(|item| check_proof(&data[item.piece.clone()], item.leaf, &root, size))
                .map(|()| Done::Proofs);
            (result, data)
        }
    }
}

fn event_facts(data: &[u8], last: bool) -> Result<Done, Bail> {
    let body: &[u8] = if last {
        if data.is_empty() {
            return Ok(Done::Events(Vec::new()));
        }
        data.strip_suffix(b"\n").unwrap_or(data)
    } else {
        data.strip_suffix(b"\n")
            .ok_or(Bail("a block of lines without its newline"))?
    };
    body.split(|b| *b == b'\n')
        .map(event_fact)
        .collect::<Result<Vec<_>, _>>()
        .map(Done::Events)
}

/// One proof of inclusion_proof.json, as the buffered check reads it.
///
/// `parse_strict` then `EventProof` (`deny_unknown_fields`) accept what
/// this accepts: the same parser, the same fields (a repeated field is an
/// error of serde's derive; no field takes an object, so no repeated key
/// can hide deeper), integer literals checked as `parse_strict` does. It
/// also requires every hash to be 64 hex digits, which the check requires.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastProof {
    leaf_index: u64,
    proof: Vec<HexHash>,
    #[serde(default)]
    leaf_hash: Option<HexHash>,
}

struct HexHash(Hash);

impl<'de> Deserialize<'de> for HexHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<HexHash, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = HexHash;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("64 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HexHash, E> {
                intentproof_core::checkpoint::parse_hash(v)
                    .map(HexHash)
                    .ok_or_else(|| E::custom("not 64 hex digits"))
            }
        }
        d.deserialize_str(V)
    }
}

fn check_proof(piece: &[u8], leaf: Option<Hash>, root: &Hash, size: u64) -> Result<(), Bail> {
    if !integer_literals_safe(piece) {
        return Err(Bail("an inclusion proof has an unsafe integer"));
    }
    let proof: FastProof =
        serde_json::from_slice(piece).map_err(|_| Bail("an inclusion proof is malformed"))?;
    let leaf = match (leaf, proof.leaf_hash) {
        // A projection: its proof names the full event's leaf.
        (None, Some(h)) => h.0,
        (None, None) => return Err(Bail("a projection's proof has no leaf_hash")),
        (Some(line), Some(h)) if h.0 != line => {
            return Err(Bail("a proof's leaf_hash is not its line's"));
        }
        (Some(line), _) => line,
    };
    let hashes: Vec<Hash> = proof.proof.into_iter().map(|h| h.0).collect();
    verify_inclusion(&leaf, proof.leaf_index, size, &hashes, root)
        .map_err(|_| Bail("an inclusion proof does not verify"))
}

/// What is kept of an event line: only what the checks still need.
struct EventFact {
    id: String,
    /// The profile a projection names.
    projection: Option<String>,
    is_v1: bool,
    /// The leaf hash of the line (full events).
    leaf: Hash,
    chain: Option<ChainLink>,
    sig: Option<(String, [u8; 64], [u8; 32])>,
}

struct ChainLink {
    instance: String,
    correlation: String,
    position: u64,
    prev: Hash,
    digest: Hash,
}

/// Parses "sha256:" + 64 lowercase hex digits (what a chain's hashes are
/// written as; anything else never equals one).
fn chain_hash(text: &str) -> Option<Hash> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    intentproof_core::checkpoint::parse_hash(hex)
}

/// Reads one event line the way the buffered verifier does
/// ([`analyze_line`]), and keeps what the checks need, or bails where any
/// of them would fail.
fn event_fact(line: &[u8]) -> Result<EventFact, Bail> {
    let (rec, pending) = analyze_line(0, line, &EVENT_KIND);
    if rec.strict_error.is_some() || !rec.id_present {
        return Err(Bail("an event line is not strict JSON with an id"));
    }
    if rec.chain.key_id_mismatch {
        return Err(Bail("an event's key id is not its instance's"));
    }
    if rec.ref_sig != RefSig::None || rec.strict_sig != StrictSig::Unsigned {
        return Err(Bail("an event's signature envelope is malformed"));
    }
    if let Some(p) = &rec.chain.projection
        && p.form.is_err()
    {
        return Err(Bail("a malformed projection"));
    }
    let sig = match pending {
        None => {
            if rec.chain.is_v1 || rec.chain.projection.is_some() {
                return Err(Bail("an unsigned v1 event or projection"));
            }
            None
        }
        Some(p) => {
            let (Ok(sig), Ok(digest)) = (p.sig, p.digest) else {
                return Err(Bail("an event's signature does not decode"));
            };
            let sig: [u8; 64] = sig
                .try_into()
                .map_err(|_| Bail("an event's signature is not 64 bytes"))?;
            Some((p.key_id, sig, digest))
        }
    };
    let c = &rec.chain;
    let chain = if c.position.is_some() || c.prev.is_some() {
        let position = c
            .position
            .as_ref()
            .and_then(Value::as_u64)
            .filter(|p| *p >= 1)
            .ok_or(Bail("a malformed chain position"))?;
        let prev = c
            .prev
            .as_ref()
            .and_then(Value::as_str)
            .and_then(chain_hash)
            .ok_or(Bail("a prev_event_hash no chain hash can equal"))?;
        let correlation = c
            .correlation
            .clone()
            .ok_or(Bail("a chained event without correlation_id"))?;
        let Some(Ok(digest)) = rec.digest else {
            return Err(Bail("a chained event without a content hash"));
        };
        Some(ChainLink {
            instance: c.instance.clone().unwrap_or_default(),
            correlation,
            position,
            prev,
            digest,
        })
    } else {
        None
    };
    Ok(EventFact {
        projection: rec.chain.projection.as_ref().map(|p| p.claimed.clone()),
        is_v1: rec.chain.is_v1,
        leaf: if rec.chain.projection.is_some() {
            [0; 32]
        } else {
            leaf_hash(line)
        },
        id: rec.id,
        chain,
        sig,
    })
}

// ---------------------------------------------------------------------------
// The main thread: reading, dispatching, keeping the facts

/// Jobs sent to the workers and their results, applied in order.
struct Pool {
    jobs: Option<Sender<(u64, Job)>>,
    done: Receiver<Finished>,
    next_seq: u64,
    next_apply: u64,
    waiting: HashMap<u64, Result<Done, Bail>>,
    in_flight: usize,
    max_in_flight: usize,
}

struct SigJob {
    digest: [u8; 32],
    sig: [u8; 64],
    slot: u32,
}

const SIGNED: u8 = 1;
const PROJECTED: u8 = 2;

/// A vector grown in fixed chunks: no reallocation (and no copy of what
/// is already stored) as it grows.
struct Chunked<T> {
    chunks: Vec<Vec<T>>,
}

/// Elements per chunk of a [`Chunked`].
const CHUNK: usize = 16 << 10;

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked { chunks: Vec::new() }
    }
}

impl<T> Chunked<T> {
    fn push(&mut self, value: T) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(value),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
    }

    fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

/// Where an event's id is kept: chunk, start, length.
#[derive(Clone, Copy)]
struct IdRef {
    chunk: u32,
    start: u32,
    len: u32,
}

/// Bytes of ids per chunk.
const ID_CHUNK: usize = 256 << 10;

/// What the events add up to: per event a few bytes and its id, nothing
/// else of the line.
#[derive(Default)]
struct Events {
    count: usize,
    /// The ids, in chunks of about [`ID_CHUNK`] bytes.
    id_bytes: Vec<String>,
    ids: Chunked<IdRef>,
    /// Each id's hash (keyed per run) and event, sorted: built once the
    /// events are read ([`Events::index`]).
    index: Vec<(u64, u32)>,
    hasher: std::hash::RandomState,
    /// Per event: the leaf hash of its line, and [`SIGNED`] | [`PROJECTED`].
    leaves: Chunked<Hash>,
    flags: Chunked<u8>,
    /// Per event, once the proofs are read: whether a proof named it.
    matched: Vec<bool>,
    /// Signature jobs, in event order, in chunks of [`SIG_CHUNK`].
    sigs: Vec<Vec<SigJob>>,
    key_ids: Vec<String>,
    key_slots: HashMap<String, u32>,
    unsigned: usize,
    projections: usize,
    claimed: HashSet<String>,
    full_v1: bool,
    /// instance -> correlation -> (last position, its content hash).
    chains: HashMap<String, HashMap<String, (u64, Hash)>>,
    chain_count: usize,
}

impl Events {
    fn id(&self, i: usize) -> &str {
        let Some(r) = self.ids.get(i) else { return "" };
        let start = r.start as usize;
        self.id_bytes
            .get(r.chunk as usize)
            .and_then(|c| c.get(start..start + r.len as usize))
            .unwrap_or("")
    }

    fn keep_id(&mut self, id: &str) -> Result<(), Bail> {
        let too_long = |_| Bail("an id too long");
        let fits = self
            .id_bytes
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= id.len());
        if !fits {
            self.id_bytes
                .push(String::with_capacity(ID_CHUNK.max(id.len())));
        }
        let chunk = self.id_bytes.len() - 1;
        let Some(bytes) = self.id_bytes.last_mut() else {
            return Err(Bail("no id chunk"));
        };
        let start = bytes.len();
        bytes.push_str(id);
        self.ids.push(IdRef {
            chunk: u32::try_from(chunk).map_err(too_long)?,
            start: u32::try_from(start).map_err(too_long)?,
            len: u32::try_from(id.len()).map_err(too_long)?,
        });
        Ok(())
    }

    /// Sorts the ids' hashes; two events with one id (or two ids with one
    /// hash, which only ends the fast path) are refused.
    fn index(&mut self) -> Result<(), Bail> {
        use std::hash::BuildHasher;
        if self.index.len() == self.count {
            return Ok(());
        }
        let mut index = Vec::with_capacity(self.count);
        for i in 0..self.count {
            let n = u32::try_from(i).map_err(|_| Bail("too many events"))?;
            index.push((self.hasher.hash_one(self.id(i)), n));
        }
        index.sort_unstable();
        if index.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(Bail("two events share an id (or its hash)"));
        }
        self.index = index;
        Ok(())
    }

    /// The event with this id ([`Events::index`] first).
    fn find(&self, id: &str) -> Option<usize> {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(id);
        let at = self.index.binary_search_by_key(&hash, |e| e.0).ok()?;
        let i = self.index.get(at)?.1 as usize;
        (self.id(i) == id).then_some(i)
    }

    fn add(&mut self, fact: EventFact) -> Result<(), Bail> {
        self.keep_id(&fact.id)?;
        self.count += 1;
        self.leaves.push(fact.leaf);
        let mut flags = 0;
        match fact.projection {
            Some(claimed) => {
                flags |= PROJECTED;
                self.projections += 1;
                if !self.claimed.contains(&claimed) {
                    self.claimed.insert(claimed);
                }
            }
            None if fact.is_v1 => self.full_v1 = true,
            None => {}
        }
        if let Some(link) = fact.chain {
            let chains = self.chains.entry(link.instance).or_default();
            let (last_position, last_hash) = match chains.get_mut(&link.correlation) {
                Some(tip) => tip,
                None => {
                    self.chain_count += 1;
                    chains.entry(link.correlation).or_insert((0, [0; 32]))
                }
            };
            // A chain starts at 1 after the zero hash; each event follows
            // the last, naming its content hash.
            if link.position != *last_position + 1 || link.prev != *last_hash {
                return Err(Bail("a chain breaks"));
            }
            *last_position = link.position;
            *last_hash = link.digest;
        }
        match fact.sig {
            Some((key_id, sig, digest)) => {
                flags |= SIGNED;
                let slot = match self.key_slots.get(&key_id) {
                    Some(s) => *s,
                    None => {
                        let s = u32::try_from(self.key_ids.len())
                            .map_err(|_| Bail("too many signing keys"))?;
                        self.key_ids.push(key_id.clone());
                        self.key_slots.insert(key_id, s);
                        s
                    }
                };
                if self.sigs.last().is_none_or(|c| c.len() == SIG_CHUNK) {
                    self.sigs.push(Vec::with_capacity(SIG_CHUNK));
                }
                if let Some(chunk) = self.sigs.last_mut() {
                    chunk.push(SigJob { digest, sig, slot });
                }
            }
            None => {
                if flags & PROJECTED == 0 {
                    self.unsigned += 1;
                }
            }
        }
        self.flags.push(flags);
        Ok(())
    }
}

/// Pieces waiting to be sent as one job.
#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    items: Vec<Range<usize>>,
}

/// Proofs waiting to be sent as one job.
#[derive(Default)]
struct ProofBatch {
    data: Vec<u8>,
    items: Vec<ProofItem>,
    root: Hash,
    size: u64,
}

/// run.json as streamed: the fields the checks read and the digest its
/// signature covers.
struct RunDoc {
    /// `None` when run.json is not a JSON object.
    doc: Option<Map<String, Value>>,
    /// `None` when it could not be hashed as it streamed (then it is
    /// unsigned, and no check reads it).
    digest: Option<[u8; 32]>,
}

/// inclusion_proof.json as streamed (its proofs were checked as they came).
struct InclusionDoc {
    schema: String,
    checkpoint: Checkpoint,
}

/// The member being read.
struct Current {
    path: String,
    hasher: Sha256,
    kind: Kind,
}

impl Kind {
    /// Whether what goes wrong in this member is deferred ([`Driver::defer`]).
    fn deferrable(&self) -> bool {
        matches!(
            self,
            Kind::Events(..) | Kind::Flow(..) | Kind::Inclusion(..) | Kind::Tlog(..)
        )
    }
}

enum Kind {
    /// The lines not yet sent, and from where they hold no newline.
    Events(Vec<u8>, usize),
    Flow(Skeleton, FlowSink),
    Run(Skeleton, RunSink),
    Inclusion(Skeleton, InclusionSink),
    /// tlog-proofs.jsonl: the part of a line not yet checked.
    Tlog(Vec<u8>),
    Small(Vec<u8>),
    Other,
}

struct Driver<'o> {
    options: &'o VerifyOptions,
    /// Why the events, flow.json or inclusion_proof.json cannot be
    /// reported on: the checks after step 5 are then left to the buffered
    /// verifier.
    deferred: Option<Bail>,
    threads: usize,
    pool: Pool,
    members: usize,
    order: Vec<String>,
    digests: HashMap<String, Hash>,
    small: HashMap<String, Vec<u8>>,
    small_total: usize,
    current: Option<Current>,
    events: Events,
    matched: usize,
    /// `None`: no flow.json; `Some(None)`: not an object.
    flow: Option<Option<Map<String, Value>>>,
    run: Option<RunDoc>,
    inclusion: Option<InclusionDoc>,
    /// tlog-proofs.jsonl, as checked so far ([`super::tlog`]).
    tlog: Option<TlogCheck>,
    batch: Batch,
    proofs: ProofBatch,
    /// Job buffers back from the workers, for the next jobs.
    spare: Vec<Vec<u8>>,
}

impl<'o> Driver<'o> {
    fn new(
        jobs: Sender<(u64, Job)>,
        done: Receiver<Finished>,
        threads: usize,
        options: &'o VerifyOptions,
    ) -> Driver<'o> {
        Driver {
            options,
            deferred: None,
            threads,
            pool: Pool {
                jobs: Some(jobs),
                done,
                next_seq: 0,
                next_apply: 0,
                waiting: HashMap::new(),
                in_flight: 0,
                max_in_flight: 2 * threads + 2,
            },
            members: 0,
            order: Vec::new(),
            digests: HashMap::new(),
            small: HashMap::new(),
            small_total: 0,
            current: None,
            events: Events::default(),
            matched: 0,
            flow: None,
            run: None,
            inclusion: None,
            tlog: None,
            batch: Batch::default(),
            proofs: ProofBatch::default(),
            spare: Vec::new(),
        }
    }

    fn member_event(&mut self, event: MemberEvent<'_>) -> Result<(), Bail> {
        match event {
            MemberEvent::Begin { path, size } => self.begin(path, size),
            MemberEvent::Data(chunk) => {
                let Some(mut current) = self.current.take() else {
                    return Err(Bail("data outside a member"));
                };
                current.hasher.update(chunk);
                let result = self.data(&mut current.kind, chunk);
                let result = self.defer_or_stop(&mut current.kind, result);
                self.current = Some(current);
                result
            }
            MemberEvent::End => {
                let Some(current) = self.current.take() else {
                    return Err(Bail("the end of no member"));
                };
                self.digests
                    .insert(current.path.clone(), current.hasher.finalize().into());
                let mut kind = current.kind;
                let deferrable = kind.deferrable();
                let result = self.end(current.path, &mut kind);
                match result {
                    Err(bail) if deferrable && bail != WORKERS_GONE => {
                        self.defer(bail);
                        Ok(())
                    }
                    other => other,
                }
            }
        }
    }

    fn begin(&mut self, path: &str, size: u64) -> Result<(), Bail> {
        self.members += 1;
        self.order.push(path.to_owned());
        let kind = match path {
            EVENTS => Kind::Events(self.buffer(), 0),
            FLOW => Kind::Flow(Skeleton::new(), FlowSink::default()),
            RUN => Kind::Run(Skeleton::new(), RunSink::new()),
            INCLUSION_PROOF => {
                // The proofs are matched to the events: all of them first.
                self.drain()?;
                if let Err(bail) = self.events.index() {
                    self.defer(bail);
                }
                self.events.matched = vec![false; self.events.count];
                Kind::Inclusion(Skeleton::new(), InclusionSink::default())
            }
            TLOG_PROOFS => {
                // The lines are matched to the events by position.
                self.drain()?;
                self.tlog = Some(TlogCheck::default());
                Kind::Tlog(Vec::new())
            }
            // A fleet bundle's proofs name several checkpoints: the
            // buffered verifier checks them.
            FLEET_INCLUSION => return Err(Bail("a fleet bundle (fleet_inclusion.json)")),
            MANIFEST | POLICY | ATTESTATIONS | CERTIFICATE => self.small_member(size)?,
            p if p.starts_with(KEYS_DIR) && p.ends_with(".pub") => self.small_member(size)?,
            _ => Kind::Other,
        };
        self.current = Some(Current {
            path: path.to_owned(),
            hasher: Sha256::new(),
            kind,
        });
        Ok(())
    }

    fn small_member(&mut self, size: u64) -> Result<Kind, Bail> {
        let size = usize::try_from(size).map_err(|_| Bail("a large small member"))?;
        if size > SMALL_MEMBER || self.small_total + size > SMALL_TOTAL {
            return Err(Bail("a member kept whole is too large"));
        }
        self.small_total += size;
        Ok(Kind::Small(Vec::with_capacity(size)))
    }

    fn data(&mut self, kind: &mut Kind, chunk: &[u8]) -> Result<(), Bail> {
        if self.deferred.is_some() && kind.deferrable() {
            // Nothing more is learnt from these members: only hashed.
            *kind = Kind::Other;
            return Ok(());
        }
        match kind {
            Kind::Events(block, clean) => {
                block.extend_from_slice(chunk);
                if block.len() < EVENT_BLOCK {
                    return Ok(());
                }
                // Only what came since the last look can hold a newline.
                let Some(newline) = block[*clean..].iter().rposition(|b| *b == b'\n') else {
                    if block.len() > EVENT_BLOCK + MAX_PIECE {
                        return Err(Bail("an event line is too long"));
                    }
                    *clean = block.len();
                    return Ok(());
                };
                let newline = *clean + newline;
                let mut rest = self.buffer();
                rest.extend_from_slice(&block[newline + 1..]);
                *clean = rest.len();
                block.truncate(newline + 1);
                let lines = std::mem::replace(block, rest);
                self.submit(Job::Events {
                    data: lines,
                    last: false,
                })
            }
            Kind::Flow(skeleton, sink) => skeleton.feed(chunk, sink, self),
            Kind::Run(skeleton, sink) => skeleton.feed(chunk, sink, self),
            Kind::Inclusion(skeleton, sink) => skeleton.feed(chunk, sink, self),
            Kind::Tlog(partial) => {
                partial.extend_from_slice(chunk);
                let Some(last) = partial.iter().rposition(|b| *b == b'\n') else {
                    if partial.len() > MAX_PIECE {
                        return Err(Bail("a tlog-proofs.jsonl line is too long"));
                    }
                    return Ok(());
                };
                let rest = partial.split_off(last + 1);
                let lines = std::mem::replace(partial, rest);
                self.tlog_lines(&lines)
            }
            Kind::Small(buf) => {
                buf.extend_from_slice(chunk);
                Ok(())
            }
            Kind::Other => Ok(()),
        }
    }

    /// Something the checks after step 5 would refuse, or that only the
    /// buffered verifier can tell apart, was seen in events.jsonl,
    /// flow.json or inclusion_proof.json: those members are only hashed
    /// from here on, and the streaming path reports only a failure of
    /// steps 1-5 (which read none of them), else stops at the end.
    fn defer(&mut self, bail: Bail) {
        if self.deferred.is_none() {
            self.deferred = Some(bail);
        }
    }

    /// A failure while reading a member: deferred for the members whose
    /// facts only later checks read (the member is then only hashed),
    /// fatal for the others.
    fn defer_or_stop(&mut self, kind: &mut Kind, result: Result<(), Bail>) -> Result<(), Bail> {
        match result {
            Err(bail) if kind.deferrable() && bail != WORKERS_GONE => {
                self.defer(bail);
                *kind = Kind::Other;
                Ok(())
            }
            other => other,
        }
    }

    fn end(&mut self, path: String, kind: &mut Kind) -> Result<(), Bail> {
        let kind = std::mem::replace(kind, Kind::Other);
        match kind {
            Kind::Events(block, _) => {
                self.submit(Job::Events {
                    data: block,
                    last: true,
                })?;
            }
            Kind::Flow(mut skeleton, mut sink) => {
                skeleton.finish(&mut sink, self)?;
                self.flush_batch()?;
                self.flow = Some((!sink.not_object).then_some(sink.doc));
            }
            Kind::Run(mut skeleton, mut sink) => {
                skeleton.finish(&mut sink, self)?;
                let signed = sink.captured.get("signature").is_some_and(|s| !s.is_null());
                let doc = (!sink.not_object).then(|| std::mem::take(&mut sink.captured));
                let digest = sink.digest();
                if signed && digest.is_none() {
                    return Err(Bail("a signed run.json whose members are not in order"));
                }
                self.run = Some(RunDoc { doc, digest });
            }
            Kind::Inclusion(mut skeleton, mut sink) => {
                skeleton.finish(&mut sink, self)?;
                self.flush_proofs()?;
                let (Some(schema), Some((checkpoint, _, _)), true) =
                    (sink.schema, sink.checkpoint, sink.proofs_seen)
                else {
                    return Err(Bail("inclusion_proof.json lacks a member"));
                };
                self.inclusion = Some(InclusionDoc { schema, checkpoint });
            }
            Kind::Tlog(partial) => self.tlog_lines(&partial)?,
            Kind::Small(buf) => {
                self.small.insert(path, buf);
            }
            Kind::Other => {}
        }
        Ok(())
    }

    /// Checks whole lines of tlog-proofs.jsonl against the events at their
    /// positions (a failure is left to the buffered verifier to name).
    fn tlog_lines(&mut self, lines: &[u8]) -> Result<(), Bail> {
        let Some(check) = self.tlog.as_mut() else {
            return Err(Bail("tlog-proofs.jsonl lines outside the member"));
        };
        for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let at = check.lines;
            if at >= self.events.count {
                return Err(Bail("more tlog-proofs than events"));
            }
            let projected = self
                .events
                .flags
                .get(at)
                .is_some_and(|f| f & PROJECTED != 0);
            let leaf = match self.events.leaves.get(at) {
                Some(leaf) if !projected => Some(*leaf),
                Some(_) => None,
                None => return Err(Bail("a tlog-proof for no event")),
            };
            check
                .line(line, self.events.id(at), leaf)
                .map_err(|_| Bail("a tlog-proof does not verify"))?;
        }
        Ok(())
    }

    /// A buffer for a job: one back from the workers, or a new one.
    fn buffer(&mut self) -> Vec<u8> {
        self.spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(PIECE_BLOCK + (64 << 10)))
    }

    /// Queues a piece of flow.json to check.
    fn piece(&mut self, piece: &[u8]) -> Result<(), Bail> {
        if self.batch.items.is_empty() {
            self.batch.data = self.buffer();
        }
        let b = &mut self.batch;
        let start = b.data.len();
        b.data.extend_from_slice(piece);
        b.items.push(start..b.data.len());
        if b.data.len() >= PIECE_BLOCK {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), Bail> {
        if self.batch.items.is_empty() {
            return Ok(());
        }
        let Batch { data, items } = std::mem::take(&mut self.batch);
        self.submit(Job::Pieces { data, items })
    }

    fn proof(
        &mut self,
        piece: &[u8],
        leaf: Option<Hash>,
        root: Hash,
        size: u64,
    ) -> Result<(), Bail> {
        if self.proofs.items.is_empty() {
            self.proofs.data = self.buffer();
        }
        let b = &mut self.proofs;
        let start = b.data.len();
        b.data.extend_from_slice(piece);
        b.items.push(ProofItem {
            leaf,
            piece: start..b.data.len(),
        });
        b.root = root;
        b.size = size;
        if b.data.len() >= PIECE_BLOCK {
            self.flush_proofs()?;
        }
        Ok(())
    }

    fn flush_proofs(&mut self) -> Result<(), Bail> {
        if self.proofs.items.is_empty() {
            return Ok(());
        }
        let ProofBatch {
            data,
            items,
            root,
            size,
        } = std::mem::take(&mut self.proofs);
        self.submit(Job::Proofs {
            data,
            items,
            root,
            size,
        })
    }

    /// Sends a job; waits for results while too many are out.
    fn submit(&mut self, job: Job) -> Result<(), Bail> {
        let seq = self.pool.next_seq;
        self.pool.next_seq += 1;
        let Some(jobs) = &self.pool.jobs else {
            return Err(WORKERS_GONE);
        };
        jobs.send((seq, job)).map_err(|_| WORKERS_GONE)?;
        self.pool.in_flight += 1;
        while self.pool.in_flight >= self.pool.max_in_flight {
            self.receive()?;
        }
        self.apply_ready()
    }

    fn receive(&mut self) -> Result<(), Bail> {
        let (seq, result, mut buffer) = self.pool.done.recv().map_err(|_| WORKERS_GONE)?;
        self.pool.in_flight -= 1;
        self.pool.waiting.insert(seq, result);
        if self.spare.len() <= self.pool.max_in_flight {
            buffer.clear();
            self.spare.push(buffer);
        }
        Ok(())
    }

    /// Applies the results that are next in order.
    fn apply_ready(&mut self) -> Result<(), Bail> {
        while let Some(result) = self.pool.waiting.remove(&self.pool.next_apply) {
            self.pool.next_apply += 1;
            // The jobs read events.jsonl, flow.json and inclusion_proof.json
            // only: what goes wrong there is deferred.
            match result {
                Err(bail) => self.defer(bail),
                Ok(Done::Events(facts)) => {
                    if self.deferred.is_some() {
                        continue;
                    }
                    for fact in facts {
                        if let Err(bail) = self.events.add(fact) {
                            self.defer(bail);
                            break;
                        }
                    }
                }
                Ok(Done::Pieces | Done::Proofs) => {}
            }
        }
        Ok(())
    }

    /// Waits for every job sent and applies the results.
    fn drain(&mut self) -> Result<(), Bail> {
        while self.pool.in_flight > 0 {
            self.receive()?;
        }
        self.apply_ready()
    }

    /// The checks, in the reference order, once the archive is read: the
    /// report, or a [`Bail`] where only the buffered verifier can tell.
    fn finish(&mut self, compression: Compression) -> Result<Report, Bail> {
        let mut ctx = Ctx::new();
        ctx.summary.members = self.members;
        ctx.summary.compressed = compression == Compression::Zstd;
        let result = self.checks(&mut ctx)?;
        Ok(ctx.report(result))
    }

    /// The checks: `Ok(Err(fail))` is the reference verifier's failure,
    /// exactly (every check before it ran as the buffered verifier runs it
    /// and passed); `Err(bail)` leaves the verdict to the buffered verifier.
    fn checks(&mut self, ctx: &mut Ctx) -> Result<Result<(), Fail>, Bail> {
        macro_rules! check {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(fail) => return Ok(Err(fail)),
                }
            };
        }
        let options = self.options;
        let small = |path: &str| self.small.get(path).map(Vec::as_slice);

        // 1-5: the manifest, run.json's ids, the member hashes and
        // policy.json, all read whole or exactly.
        let run_doc = self.run.as_ref().and_then(|r| r.doc.as_ref());
        let head = check!(check_head(small(MANIFEST), run_doc, options, ctx));
        let manifest = &head.manifest;
        check!(check_files(
            manifest,
            |path| self.digests.get(path).map(sha256_prefixed),
            ctx,
        ));
        let policy = check!(check_policy(small(POLICY), ctx));

        // The rest reads the events (and flow.json, inclusion_proof.json).
        if let Some(bail) = self.deferred {
            return Err(bail);
        }
        // Event ids are unique.
        self.events.index()?;
        let keys: HashMap<&str, &[u8]> = self
            .small
            .iter()
            .filter(|(p, _)| p.starts_with(KEYS_DIR))
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        let ring = key_ring(&keys, options, head.manifest_authenticated);
        let attestation_lines = small(ATTESTATIONS).map(split_lines).unwrap_or_default();
        let attestations =
            process_lines(&attestation_lines, &ATTESTATION_KIND, &ring, self.threads);
        ctx.summary.events = self.events.count;
        ctx.summary.attestations = attestation_lines.len();

        // 6, 7.
        let event_ids: Vec<&str> = if manifest.event_merkle_root.is_empty() {
            Vec::new()
        } else {
            (0..self.events.count).map(|i| self.events.id(i)).collect()
        };
        check!(check_merkle(
            &manifest.event_merkle_root,
            &event_ids,
            "event",
            ctx
        ));
        drop(event_ids);
        // What is left to check needs no id, line hash or index: free them
        // before the report is built.
        self.events.id_bytes = Vec::new();
        self.events.ids = Chunked::default();
        self.events.index = Vec::new();
        self.events.leaves = Chunked::default();
        check!(check_merkle(
            &manifest.attestation_merkle_root,
            &lenient_ids(&attestations),
            "attestation",
            ctx,
        ));

        // The event signatures (step 8 reports them; one that does not
        // verify is left to the buffered verifier, which names it).
        let signatures = verify_event_signatures(&self.events, &ring, self.threads)?;
        self.events.sigs = Vec::new();

        // 8.
        let run_rec = self.run.as_ref().and_then(|r| {
            r.doc.as_ref().map(|doc| {
                let digest = r.digest.ok_or_else(|| "not hashed".to_owned());
                process_object(doc, &RUN_KIND, &ring, Some(digest))
            })
        });
        let certificate_rec =
            small(CERTIFICATE).and_then(|b| process_document(b, &CERTIFICATE_KIND, &ring));
        let mut cursor = 0usize;
        let event_views: Vec<RefView<'_>> = self
            .events
            .flags
            .iter()
            .map(|flags| {
                let mut ref_sig = RefSig::None;
                if flags & SIGNED != 0 {
                    // Checked by the reference too when its key is bundled.
                    ref_sig = if signatures.bundled.get(cursor) == Some(&true) {
                        RefSig::Valid
                    } else {
                        RefSig::KeyUnavailable
                    };
                    cursor += 1;
                }
                if flags & PROJECTED != 0 {
                    ref_sig = RefSig::None;
                }
                RefView {
                    ref_sig,
                    id: "",
                    key_id: "",
                }
            })
            .collect();
        check!(check_object_signatures(
            [
                ("event", event_views),
                ("attestation", views(&attestations)),
                ("run", run_rec.iter().map(RefView::of).collect()),
                (
                    "certificate",
                    certificate_rec.iter().map(RefView::of).collect(),
                ),
            ],
            ctx,
        ));

        // Stricter checks.
        let order: Vec<&str> = self.order.iter().map(String::as_str).collect();
        check!(check_manifest_members(
            &head.manifest_value,
            manifest,
            &order,
            ctx
        ));
        let flow = self.flow.as_ref().and_then(Option::as_ref);
        check!(check_consistency(
            manifest,
            flow,
            run_doc,
            policy.as_ref(),
            ctx
        ));
        check!(check_bundled_keys(&ring, ctx));
        check!(check_manifest_signed(options, manifest, ctx));
        check!(check_manifest_signer_named(
            manifest,
            &head.manifest_value,
            &ring,
            ctx
        ));
        // events.jsonl's lines were checked as they came (strict JSON with
        // an id, no id twice).
        check!(check_jsonl(ATTESTATIONS, &attestations, ctx));
        let declared = manifest
            .verification_profile
            .as_ref()
            .map_or("", |p| p.export_profile.as_str());
        if self.events.claimed.iter().any(|c| c != declared)
            || (self.events.full_v1 && Profile::from_name(declared).is_some())
        {
            return Err(Bail("a projection of another profile"));
        }
        event_signature_summary(
            self.events.unsigned,
            signatures.verified,
            signatures.bundled_only,
            ctx,
        );
        projection_signatures_valid(self.events.projections, ctx);
        chains_valid(self.events.chain_count, ctx);
        if let Some(inclusion) = &self.inclusion {
            check!(check_inclusion_header(
                &inclusion.schema,
                &inclusion.checkpoint,
                &ring,
                ctx
            ));
            if self.matched != self.events.count {
                return Err(Bail("an event has no inclusion proof"));
            }
            inclusion_proofs_valid(self.events.count, ctx);
        }
        match &self.tlog {
            Some(check) => {
                if check.lines != self.events.count {
                    return Err(Bail("an event has no tlog-proof"));
                }
                check
                    .notes(&tlog_log_keys(&ring, options), &options.witnesses)
                    .map_err(|_| Bail("a tlog-proof checkpoint does not verify"))?;
                tlog_proofs_valid(self.events.count, &options.witnesses, ctx);
            }
            None => check!(tlog_member_absent(&options.witnesses, ctx)),
        }
        if self.events.projections > 0 {
            check!(check_projection_attestation(
                manifest,
                &head.manifest_value,
                &ring,
                ctx
            ));
        }
        Ok(Ok(()))
    }
}

/// Signatures by one key from which a table of the key is built.
const TABLE_AFTER: usize = 128;

/// How a key checks its signatures: both accept what `verify_strict`
/// accepts.
enum Checker {
    /// A key with many signatures: [`StrictKey`] (about a third faster per
    /// signature, after about 1 ms for its table).
    Table(Box<StrictKey>),
    /// [`verify_strict`] itself.
    Plain(VerifyingKey),
}

/// What the event signatures came to.
struct Signatures {
    /// Per signed event, in order: whether its key is bundled (the
    /// reference verifier checked it too).
    bundled: Vec<bool>,
    verified: usize,
    bundled_only: usize,
}

/// The key a signature is checked with, as [`super::records::resolve`]
/// picks it.
enum SlotKey {
    One {
        key: Checker,
        bundled: bool,
        bundled_only: bool,
    },
    /// No key for the id: the keys given without one.
    Any(Vec<VerifyingKey>),
}

/// Checks every event signature as [`verify_strict`] does (with a table
/// per key, [`StrictKey`]), on `threads` threads.
fn verify_event_signatures(
    events: &Events,
    ring: &KeyRing,
    threads: usize,
) -> Result<Signatures, Bail> {
    // Signatures per key: a table pays for itself after about a hundred.
    let mut uses = vec![0usize; events.key_ids.len()];
    for job in events.sigs.iter().flatten() {
        if let Some(n) = uses.get_mut(job.slot as usize) {
            *n += 1;
        }
    }
    let checker = |key: &VerifyingKey, uses: usize| {
        if uses >= TABLE_AFTER {
            Checker::Table(Box::new(StrictKey::new(key)))
        } else {
            Checker::Plain(*key)
        }
    };
    let slots = events
        .key_ids
        .iter()
        .zip(&uses)
        .map(|(id, &uses)| {
            let bundled_only = !ring.trusted_by_id.contains_key(id) && !ring.manifest_authenticated;
            if let Some(key) = ring.bundled(id) {
                return Ok(SlotKey::One {
                    key: checker(key, uses),
                    bundled: true,
                    bundled_only,
                });
            }
            if let Some(key) = ring.strict_key(id) {
                return Ok(SlotKey::One {
                    key: checker(key, uses),
                    bundled: false,
                    bundled_only: false,
                });
            }
            let any = ring.candidates(id);
            if any.is_empty() {
                return Err(Bail("an event's key is unknown"));
            }
            Ok(SlotKey::Any(any))
        })
        .collect::<Result<Vec<_>, Bail>>()?;
    let good = AtomicBool::new(true);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let chunks = &events.sigs;
    std::thread::scope(|scope| {
        for _ in 0..threads.min(chunks.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(chunk) = chunks.get(i) else { return };
                    for job in chunk {
                        if !good.load(Ordering::Relaxed) {
                            return;
                        }
                        let sig = Signature::from_bytes(&job.sig);
                        let ok = match slots.get(job.slot as usize) {
                            Some(SlotKey::One {
                                key: Checker::Table(key),
                                ..
                            }) => key.verify(&job.digest, &sig),
                            Some(SlotKey::One {
                                key: Checker::Plain(key),
                                ..
                            }) => verify_strict(key, &job.digest, &sig).is_ok(),
                            Some(SlotKey::Any(keys)) => keys
                                .iter()
                                .any(|k| verify_strict(k, &job.digest, &sig).is_ok()),
                            None => false,
                        };
                        if !ok {
                            good.store(false, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            });
        }
    });
    if !good.load(Ordering::Relaxed) {
        return Err(Bail("an event signature does not verify"));
    }
    let mut out = Signatures {
        bundled: Vec::with_capacity(chunks.iter().map(Vec::len).sum()),
        verified: 0,
        bundled_only: 0,
    };
    for job in chunks.iter().flatten() {
        let (bundled, only) = match slots.get(job.slot as usize) {
            Some(SlotKey::One {
                bundled,
                bundled_only,
                ..
            }) => (*bundled, *bundled_only),
            _ => (false, false),
        };
        out.bundled.push(bundled);
        out.verified += 1;
        if only {
            out.bundled_only += 1;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// The JSON members

/// flow.json: only its `flow_id` and `tenant_id` are read; the rest is
/// checked to be strict JSON, piece by piece, on the worker threads.
#[derive(Default)]
struct FlowSink {
    key: String,
    doc: Map<String, Value>,
    /// The names in the object at depth 1 being read.
    names: HashSet<String>,
    not_object: bool,
}

const FLOW_FIELDS: [&str; 2] = ["flow_id", "tenant_id"];

impl Sink<Driver<'_>> for FlowSink {
    fn not_object(&mut self, _: &mut Driver<'_>) -> Result<(), Bail> {
        self.not_object = true;
        Ok(())
    }

    fn key(&mut self, _: &mut Driver<'_>, depth: usize, key: &str) -> Result<(), Bail> {
        if depth == 1 {
            key.clone_into(&mut self.key);
        } else if !self.names.insert(key.to_owned()) {
            return Err(Bail("a repeated key in flow.json"));
        }
        Ok(())
    }

    fn descend(&mut self, _: &mut Driver<'_>, depth: usize, _: bool) -> Result<bool, Bail> {
        Ok(depth == 1 && !FLOW_FIELDS.contains(&self.key.as_str()))
    }

    fn open(&mut self, _: &mut Driver<'_>, _: usize, _: bool) -> Result<(), Bail> {
        self.names.clear();
        Ok(())
    }

    fn piece(&mut self, d: &mut Driver<'_>, depth: usize, raw: &[u8]) -> Result<(), Bail> {
        if depth == 1 && FLOW_FIELDS.contains(&self.key.as_str()) {
            let value = parse_strict(raw).map_err(|_| Bail("flow.json is not strict JSON"))?;
            self.doc.insert(self.key.clone(), value);
            return Ok(());
        }
        d.piece(raw)
    }

    fn close(&mut self, _: &mut Driver<'_>, _: usize) -> Result<(), Bail> {
        Ok(())
    }
}

/// run.json: the fields the checks read, and the SHA-256 of its canonical
/// form without the members its signature excludes, computed as it streams
/// (every array and object entered, every scalar canonicalized on its own).
/// That needs the members of each object in canonical order, as serde_json
/// writes them; in any other order the hash is dropped, and a signed
/// run.json is left to the buffered verifier.
struct RunSink {
    key: String,
    captured: Map<String, Value>,
    /// Whether the canonical form is still being hashed.
    hashing: bool,
    hash: Sha256,
    /// Whether the current top-level member is hashed (not excluded).
    included: bool,
    /// Per container entered (the top-level object first): is it an array,
    /// has a value been written in it, its last key, its keys.
    frames: Vec<RunFrame>,
    not_object: bool,
}

#[derive(Default)]
struct RunFrame {
    array: bool,
    written: bool,
    last_key: Option<String>,
    keys: HashSet<String>,
}

/// The members of run.json the checks read.
const RUN_FIELDS: [&str; 4] = ["run_id", "flow_id", "tenant_id", "signature"];

impl RunSink {
    fn new() -> RunSink {
        let mut hash = Sha256::new();
        hash.update(b"{");
        RunSink {
            key: String::new(),
            captured: Map::new(),
            hashing: true,
            hash,
            included: false,
            frames: vec![RunFrame::default()],
            not_object: false,
        }
    }

    fn hashed(&self) -> bool {
        self.hashing && self.included
    }

    /// Before a value in an array: its comma.
    fn element(&mut self, depth: usize) {
        let hashed = self.hashed();
        if let Some(frame) = self.frames.get_mut(depth - 1)
            && frame.array
        {
            if hashed && frame.written {
                self.hash.update(b",");
            }
            frame.written = true;
        }
    }

    /// The digest, if the whole canonical form was hashed.
    fn digest(mut self) -> Option<[u8; 32]> {
        self.hash.update(b"}");
        self.hashing.then(|| self.hash.finalize().into())
    }
}

/// Orders keys as RFC 8785 does (by UTF-16 code units), as
/// intentproof-core's canonicalization sorts them.
fn utf16_less(a: &str, b: &str) -> bool {
    a.encode_utf16().cmp(b.encode_utf16()) == std::cmp::Ordering::Less
}

fn canonical(value: &Value) -> Result<Vec<u8>, Bail> {
    canonicalize(value).map_err(|_| Bail("run.json does not canonicalize"))
}

impl Sink<Driver<'_>> for RunSink {
    fn not_object(&mut self, _: &mut Driver<'_>) -> Result<(), Bail> {
        self.not_object = true;
        Ok(())
    }

    fn key(&mut self, _: &mut Driver<'_>, depth: usize, key: &str) -> Result<(), Bail> {
        if depth == 1 {
            key.clone_into(&mut self.key);
            self.included = !RUN_KIND.excluded.contains(&key);
        }
        let included = depth > 1 || self.included;
        let hashed = self.hashed();
        let Some(frame) = self.frames.get_mut(depth - 1) else {
            return Err(Bail("a key outside an object"));
        };
        if !frame.keys.insert(key.to_owned()) {
            return Err(Bail("a repeated key in run.json"));
        }
        if included {
            // The canonical order is over the members written; at depth 1
            // the excluded ones are not.
            if frame
                .last_key
                .as_deref()
                .is_some_and(|last| !utf16_less(last, key))
            {
                self.hashing = false;
            }
            frame.last_key = Some(key.to_owned());
            if hashed && self.hashing {
                if frame.written {
                    self.hash.update(b",");
                }
                frame.written = true;
                self.hash.update(canonical(&Value::String(key.to_owned()))?);
                self.hash.update(b":");
            }
        }
        Ok(())
    }

    fn descend(&mut self, _: &mut Driver<'_>, depth: usize, _: bool) -> Result<bool, Bail> {
        Ok(!(depth == 1 && RUN_FIELDS.contains(&self.key.as_str())))
    }

    fn open(&mut self, _: &mut Driver<'_>, depth: usize, array: bool) -> Result<(), Bail> {
        self.element(depth);
        if self.hashed() {
            self.hash.update(if array { b"[" } else { b"{" });
        }
        self.frames.push(RunFrame {
            array,
            ..RunFrame::default()
        });
        Ok(())
    }

    fn piece(&mut self, _: &mut Driver<'_>, depth: usize, raw: &[u8]) -> Result<(), Bail> {
        self.element(depth);
        let value = parse_strict(raw).map_err(|_| Bail("run.json is not strict JSON"))?;
        if self.hashed() {
            self.hash.update(canonical(&value)?);
        }
        if depth == 1 && RUN_FIELDS.contains(&self.key.as_str()) {
            self.captured.insert(self.key.clone(), value);
        }
        Ok(())
    }

    fn close(&mut self, _: &mut Driver<'_>, _: usize) -> Result<(), Bail> {
        let frame = self.frames.pop().ok_or(Bail("a close without an open"))?;
        if self.hashed() {
            self.hash.update(if frame.array { b"]" } else { b"}" });
        }
        Ok(())
    }
}

/// inclusion_proof.json: its schema and checkpoint are read whole; each
/// proof is matched to its event and checked on a worker thread.
#[derive(Default)]
struct InclusionSink {
    key: String,
    id: String,
    schema: Option<String>,
    checkpoint: Option<(Checkpoint, Hash, u64)>,
    proofs_seen: bool,
}

impl Sink<Driver<'_>> for InclusionSink {
    fn not_object(&mut self, _: &mut Driver<'_>) -> Result<(), Bail> {
        Err(Bail("inclusion_proof.json is not an object"))
    }

    fn key(&mut self, _: &mut Driver<'_>, depth: usize, key: &str) -> Result<(), Bail> {
        match (depth, key) {
            (1, "schema" | "checkpoint" | "proofs") => key.clone_into(&mut self.key),
            (1, _) => return Err(Bail("an unknown member in inclusion_proof.json")),
            // A proof's event id (repeats are caught by the matching).
            _ => key.clone_into(&mut self.id),
        }
        Ok(())
    }

    fn descend(&mut self, _: &mut Driver<'_>, depth: usize, array: bool) -> Result<bool, Bail> {
        if depth == 1 && self.key == "proofs" {
            if array || self.checkpoint.is_none() {
                return Err(Bail("proofs not an object, or before the checkpoint"));
            }
            self.proofs_seen = true;
            return Ok(true);
        }
        Ok(false)
    }

    fn open(&mut self, _: &mut Driver<'_>, _: usize, _: bool) -> Result<(), Bail> {
        Ok(())
    }

    fn piece(&mut self, d: &mut Driver<'_>, depth: usize, raw: &[u8]) -> Result<(), Bail> {
        let malformed = |_| Bail("inclusion_proof.json is malformed");
        match (depth, self.key.as_str()) {
            (1, "schema") => {
                let value = parse_strict(raw).map_err(|_| Bail("bad schema"))?;
                self.schema = Some(serde_json::from_value(value).map_err(malformed)?);
                Ok(())
            }
            (1, "checkpoint") => {
                let value = parse_strict(raw).map_err(|_| Bail("bad checkpoint"))?;
                let checkpoint: Checkpoint = serde_json::from_value(value).map_err(malformed)?;
                let root = checkpoint
                    .root_hash()
                    .map_err(|_| Bail("a bad checkpoint root"))?;
                let size = checkpoint.tree_size;
                self.checkpoint = Some((checkpoint, root, size));
                Ok(())
            }
            (2, "proofs") => {
                let Some((_, root, size)) = &self.checkpoint else {
                    return Err(Bail("a proof before the checkpoint"));
                };
                let Some(index) = d.events.find(&self.id) else {
                    return Err(Bail("a proof names no event"));
                };
                let Some(matched) = d.events.matched.get_mut(index) else {
                    return Err(Bail("a proof names no event"));
                };
                if std::mem::replace(matched, true) {
                    return Err(Bail("two proofs for one event"));
                }
                let projected = d
                    .events
                    .flags
                    .get(index)
                    .is_some_and(|f| f & PROJECTED != 0);
                let leaf = match d.events.leaves.get(index) {
                    Some(leaf) if !projected => Some(*leaf),
                    _ => None,
                };
                d.matched += 1;
                let (root, size) = (*root, *size);
                d.proof(raw, leaf, root, size)
            }
            _ => Err(Bail("inclusion_proof.json is not the documented form")),
        }
    }

    fn close(&mut self, _: &mut Driver<'_>, _: usize) -> Result<(), Bail> {
        Ok(())
    }
}
