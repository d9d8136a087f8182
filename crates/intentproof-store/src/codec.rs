//! How index entries and chain summaries are stored as sled values.
//!
//! Flat binary forms instead of JSON: under batched ingest the writer
//! stores one entry per event and one summary per chain touched; JSON
//! (field names, escaping, ~480 bytes an entry) cost ~2 µs each to write
//! and made every sled leaf node they are copied with twice as big
//! (measured +5 % batched events/s for entries). Queries decode one entry
//! per row and gain the same way.
//!
//! Entry ([`encode`]): the version byte 1; `seq`, `segment`, `offset` (u64
//! BE); `len` (u32 BE); `chain_position`, `duration_ms` (u64 BE); the
//! signature state (u8: 0 verified, 1 key unknown, 2 invalid); then the ten
//! strings of [`EventMeta`] in declaration order, each as a u32 BE length
//! and its UTF-8 bytes.
//!
//! Summary ([`encode_summary`]): the version byte 1; `last_at` first (the
//! chain list sorts on it alone, see [`summary_last_at`]), `first_at`,
//! `correlation_id` (strings as above); `events`, `errors`, `key_unknown`,
//! `invalid_signatures` (u64 BE); the intents (u32 BE count, strings); the
//! instance chains (u32 BE count; name, `events`, `max_position`).

use std::collections::BTreeMap;

use crate::meta::{EventMeta, SignatureState};
use crate::types::{ChainSummary, IndexEntry, InstanceChain};

const VERSION: u8 = 1;

/// The stored form of `entry`.
pub(crate) fn encode(entry: &IndexEntry) -> Vec<u8> {
    let m = &entry.meta;
    let strings = [
        &m.event_id,
        &m.instance_id,
        &m.correlation_id,
        &m.prev_event_hash,
        &m.content_hash,
        &m.intent,
        &m.action,
        &m.status,
        &m.started_at,
        &m.completed_at,
    ];
    let mut out = Vec::with_capacity(50 + strings.iter().map(|s| 4 + s.len()).sum::<usize>());
    out.push(VERSION);
    for n in [entry.seq, entry.segment, entry.offset] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.extend_from_slice(&entry.len.to_be_bytes());
    out.extend_from_slice(&m.chain_position.to_be_bytes());
    out.extend_from_slice(&m.duration_ms.to_be_bytes());
    out.push(match m.signature {
        SignatureState::Verified => 0,
        SignatureState::KeyUnknown => 1,
        SignatureState::Invalid => 2,
    });
    for s in strings {
        put_str(&mut out, s);
    }
    out
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

/// Reads a stored entry back; `None` if the bytes are not one.
pub(crate) fn decode(bytes: &[u8]) -> Option<IndexEntry> {
    let mut r = Reader(bytes);
    if r.take(1)? != [VERSION] {
        return None;
    }
    let (seq, segment, offset) = (r.u64()?, r.u64()?, r.u64()?);
    let len = r.u32()?;
    let (chain_position, duration_ms) = (r.u64()?, r.u64()?);
    let signature = match r.take(1)? {
        [0] => SignatureState::Verified,
        [1] => SignatureState::KeyUnknown,
        [2] => SignatureState::Invalid,
        _ => return None,
    };
    let meta = EventMeta {
        event_id: r.string()?,
        instance_id: r.string()?,
        correlation_id: r.string()?,
        chain_position,
        prev_event_hash: r.string()?,
        content_hash: r.string()?,
        intent: r.string()?,
        action: r.string()?,
        status: r.string()?,
        started_at: r.string()?,
        completed_at: r.string()?,
        duration_ms,
        signature,
    };
    r.0.is_empty().then_some(IndexEntry {
        seq,
        segment,
        offset,
        len,
        meta,
    })
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
                content_hash: "sha256:ff".into(),
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
    fn entries_round_trip_and_damage_is_refused() {
        let e = entry();
        let bytes = encode(&e);
        assert_eq!(decode(&bytes), Some(e.clone()));
        for state in [SignatureState::Verified, SignatureState::Invalid] {
            let mut other = e.clone();
            other.meta.signature = state;
            assert_eq!(decode(&encode(&other)), Some(other));
        }
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None, "cut short");
        assert_eq!(
            decode(&[bytes.as_slice(), b"x"].concat()),
            None,
            "trailing byte"
        );
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 2;
        assert_eq!(decode(&wrong_version), None);
        assert_eq!(
            decode(b"{\"seq\":7}"),
            None,
            "a JSON entry of an older build"
        );
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
