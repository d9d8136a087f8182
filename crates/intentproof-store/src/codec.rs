//! How index entries and chain summaries are stored as sled values.
//!
//! Flat binary forms instead of JSON: under batched ingest the writer
//! stores one entry per event and one summary per chain touched; JSON
//! (field names, escaping, ~480 bytes an entry) cost ~2 µs each to write
//! and made every sled leaf node they are copied with twice as big
//! (measured +5 % batched events/s for entries). Queries decode one entry
//! per row and gain the same way.
//!
//! Run of records ([`encode_run`]): the version byte 2, then per journal
//! record of consecutive seqs, [`RECORD_BYTES`] bytes: `segment`, `offset`
//! (u64 BE), `len` (u32 BE), the signature state (u8: 0 verified, 1 key
//! unknown, 2 invalid) and the 32 bytes of the content digest. Nothing
//! else: every other fact of an event is in its journal record, which the
//! index reads back (see `store::index`). Index format 2 kept all ten
//! strings of [`EventMeta`](crate::meta::EventMeta) per event (~450 bytes, a copy of what the
//! journal holds) and the index grew to twice the journal.
//!
//! Summary ([`encode_summary`]): the version byte 1; `last_at` first (the
//! chain list sorts on it alone, see [`summary_last_at`]), `first_at`,
//! `correlation_id` (strings as above); `events`, `errors`, `key_unknown`,
//! `invalid_signatures` (u64 BE); the intents (u32 BE count, strings); the
//! instance chains (u32 BE count; name, `events`, `max_position`).

use std::collections::BTreeMap;

use crate::meta::SignatureState;
use crate::types::{ChainSummary, IndexEntry, InstanceChain};

const VERSION: u8 = 1;

/// The version byte of a run of records.
const RUN_VERSION: u8 = 2;

/// Bytes per record in a run.
pub(crate) const RECORD_BYTES: usize = 8 + 8 + 4 + 1 + 32;

/// What the index keeps of one journal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// Journal segment.
    pub(crate) segment: u64,
    /// Byte offset in the segment.
    pub(crate) offset: u64,
    /// Length of the payload.
    pub(crate) len: u32,
    /// Signature check result (changed by a retrust).
    pub(crate) signature: SignatureState,
    /// The digest behind `content_hash`: the chain check compares it, and
    /// reading it back spares canonicalizing the event again.
    pub(crate) content_digest: [u8; 32],
}

impl Record {
    /// The record of an entry; `None` if its content hash is not
    /// `"sha256:"` and 64 hex digits (it always is: the store computes it).
    pub(crate) fn of(entry: &IndexEntry) -> Option<Record> {
        let digest = entry
            .meta
            .content_hash
            .strip_prefix("sha256:")
            .and_then(intentproof_core::checkpoint::parse_hash)?;
        Some(Record {
            segment: entry.segment,
            offset: entry.offset,
            len: entry.len,
            signature: entry.meta.signature,
            content_digest: digest,
        })
    }
}

fn signature_byte(state: SignatureState) -> u8 {
    match state {
        SignatureState::Verified => 0,
        SignatureState::KeyUnknown => 1,
        SignatureState::Invalid => 2,
    }
}

/// The stored form of the records of consecutive seqs.
pub(crate) fn encode_run<'a>(records: impl ExactSizeIterator<Item = &'a Record>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + records.len() * RECORD_BYTES);
    out.push(RUN_VERSION);
    for r in records {
        out.extend_from_slice(&r.segment.to_be_bytes());
        out.extend_from_slice(&r.offset.to_be_bytes());
        out.extend_from_slice(&r.len.to_be_bytes());
        out.push(signature_byte(r.signature));
        out.extend_from_slice(&r.content_digest);
    }
    out
}

/// How many records a stored run holds; `None` if the bytes are not a run.
pub(crate) fn run_len(run: &[u8]) -> Option<usize> {
    let (&version, records) = run.split_first()?;
    (version == RUN_VERSION && records.len() % RECORD_BYTES == 0)
        .then_some(records.len() / RECORD_BYTES)
}

/// Record `k` of a stored run.
pub(crate) fn run_record(run: &[u8], k: usize) -> Option<Record> {
    run_len(run).filter(|n| k < *n)?;
    let at = 1 + k * RECORD_BYTES;
    let mut r = Reader(run.get(at..at + RECORD_BYTES)?);
    let (segment, offset, len) = (r.u64()?, r.u64()?, r.u32()?);
    let signature = match r.take(1)? {
        [0] => SignatureState::Verified,
        [1] => SignatureState::KeyUnknown,
        [2] => SignatureState::Invalid,
        _ => return None,
    };
    Some(Record {
        segment,
        offset,
        len,
        signature,
        content_digest: r.take(32)?.try_into().ok()?,
    })
}

/// Sets the signature state of record `k` of a stored run in place.
pub(crate) fn set_run_signature(run: &mut [u8], k: usize, state: SignatureState) -> Option<()> {
    run_len(run).filter(|n| k < *n)?;
    *run.get_mut(1 + k * RECORD_BYTES + 20)? = signature_byte(state);
    Some(())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Event fields are bounded far below 4 GiB by the body limits.
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The stored form of a chain summary.
pub(crate) fn encode_summary(summary: &ChainSummary) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(VERSION);
    put_str(&mut out, &summary.last_at);
    put_str(&mut out, &summary.first_at);
    put_str(&mut out, &summary.correlation_id);
    for n in [
        summary.events,
        summary.errors,
        summary.key_unknown,
        summary.invalid_signatures,
    ] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.extend_from_slice(&(summary.intents.len() as u32).to_be_bytes());
    for intent in &summary.intents {
        put_str(&mut out, intent);
    }
    out.extend_from_slice(&(summary.instances.len() as u32).to_be_bytes());
    for (name, chain) in &summary.instances {
        put_str(&mut out, name);
        out.extend_from_slice(&chain.events.to_be_bytes());
        out.extend_from_slice(&chain.max_position.to_be_bytes());
    }
    out
}

/// Reads a stored summary back; `None` if the bytes are not one.
pub(crate) fn decode_summary(bytes: &[u8]) -> Option<ChainSummary> {
    let mut r = Reader(bytes);
    if r.take(1)? != [VERSION] {
        return None;
    }
    let (last_at, first_at, correlation_id) = (r.string()?, r.string()?, r.string()?);
    let (events, errors, key_unknown, invalid_signatures) =
        (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
    let intents = (0..r.u32()?)
        .map(|_| r.string())
        .collect::<Option<Vec<_>>>()?;
    let mut instances = BTreeMap::new();
    for _ in 0..r.u32()? {
        let name = r.string()?;
        let chain = InstanceChain {
            events: r.u64()?,
            max_position: r.u64()?,
        };
        instances.insert(name, chain);
    }
    r.0.is_empty().then_some(ChainSummary {
        correlation_id,
        first_at,
        last_at,
        events,
        errors,
        intents,
        instances,
        key_unknown,
        invalid_signatures,
    })
}

/// A stored summary's `last_at`, without decoding the rest.
pub(crate) fn summary_last_at(bytes: &[u8]) -> Option<&str> {
    let mut r = Reader(bytes);
    if r.take(1)? != [VERSION] {
        return None;
    }
    let n = r.u32()? as usize;
    std::str::from_utf8(r.take(n)?).ok()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::EventMeta;

    fn entry() -> IndexEntry {
        IndexEntry {
            seq: 7,
            segment: 3,
            offset: 1 << 40,
            len: 1029,
            meta: EventMeta {
                event_id: "01J-event".into(),
                instance_id: "inst_é".into(),
                correlation_id: String::new(),
                chain_position: 12,
                prev_event_hash: "sha256:00".into(),
                content_hash: format!("sha256:{}", "0aF9".repeat(16)),
                intent: "refund \"quoted\"\n".into(),
                action: "refund.create".into(),
                status: "error".into(),
                started_at: "2026-01-01T00:00:00.000Z".into(),
                completed_at: "2026-01-01T00:00:00.250Z".into(),
                duration_ms: 250,
                signature: SignatureState::KeyUnknown,
            },
        }
    }

    #[test]
    fn runs_round_trip_and_damage_is_refused() {
        let first = Record::of(&entry()).expect("a sha256 content hash");
        assert_eq!(first.content_digest[..2], [0x0a, 0xf9]);
        let mut second = first;
        second.segment = 4;
        second.offset = 17;
        second.signature = SignatureState::Verified;
        let mut run = encode_run([first, second].iter());
        assert_eq!(run.len(), 1 + 2 * RECORD_BYTES);
        assert_eq!(run_len(&run), Some(2));
        assert_eq!(run_record(&run, 0), Some(first));
        assert_eq!(run_record(&run, 1), Some(second));
        assert_eq!(run_record(&run, 2), None, "past the end");
        set_run_signature(&mut run, 0, SignatureState::Invalid).expect("in range");
        assert_eq!(
            run_record(&run, 0).map(|r| r.signature),
            Some(SignatureState::Invalid)
        );
        assert_eq!(run_record(&run, 1), Some(second), "its neighbour untouched");
        assert_eq!(
            set_run_signature(&mut run, 2, SignatureState::Invalid),
            None
        );
        assert_eq!(run_len(&run[..run.len() - 1]), None, "cut short");
        let mut wrong_version = run.clone();
        wrong_version[0] = 1;
        assert_eq!(run_len(&wrong_version), None, "an entry of format 2");
        let mut bad_state = run.clone();
        bad_state[1 + 20] = 9;
        assert_eq!(run_record(&bad_state, 0), None);
        let mut not_hex = entry();
        not_hex.meta.content_hash = "sha256:zz".into();
        assert_eq!(Record::of(&not_hex), None);
    }

    #[test]
    fn summaries_round_trip_and_give_last_at_alone() {
        let mut summary = ChainSummary::default();
        let bytes = encode_summary(&summary);
        assert_eq!(decode_summary(&bytes), Some(summary.clone()));
        summary.correlation_id = "corr-é".into();
        summary.first_at = "2026-01-01T00:00:00.000Z".into();
        summary.last_at = "2026-01-02T00:00:00.000Z".into();
        summary.events = 5;
        summary.errors = 1;
        summary.key_unknown = 2;
        summary.invalid_signatures = 3;
        summary.intents = vec!["refund".into(), "notify".into()];
        for (name, events, max_position) in [("inst_a", 3, 4), ("inst_b", 2, 2)] {
            summary.instances.insert(
                name.into(),
                InstanceChain {
                    events,
                    max_position,
                },
            );
        }
        let bytes = encode_summary(&summary);
        assert_eq!(decode_summary(&bytes), Some(summary));
        assert_eq!(summary_last_at(&bytes), Some("2026-01-02T00:00:00.000Z"));
        assert_eq!(decode_summary(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_summary(b"{\"events\":1}"), None);
    }
}
