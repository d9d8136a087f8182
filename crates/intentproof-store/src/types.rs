//! The values the store takes and hands out: an event to append and what
//! became of it, an event's index entry and a chain's summary (what the
//! index holds, in the binary form of the `codec` module), query filters
//! and pages, and the store's settings.
//!
//! Plain data: no I/O and no chain rules. It depends only on the event
//! facts and the journal's defaults, so the index, its codec and the store
//! all use it without depending on each other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::journal;
use crate::meta::{EventMeta, SignatureState};

/// An event ready to append: its exact bytes and its indexed facts.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Indexed facts, from [`EventMeta::from_v1`].
    pub meta: EventMeta,
    /// The exact signed v1 JSON bytes to keep.
    pub bytes: Vec<u8>,
    /// Kept alive until the event is in the index or will never be: see
    /// [`WriteHold`]. `None` for events nobody waits on.
    pub hold: Option<WriteHold>,
}

impl Incoming {
    /// An event with no [`WriteHold`].
    pub fn new(meta: EventMeta, bytes: Vec<u8>) -> Self {
        Incoming {
            meta,
            bytes,
            hold: None,
        }
    }
}

/// A reference that travels with an [`Incoming`] and is dropped only once
/// the event's chain slot is readable from the index ([`Store::chain_head`](crate::Store::chain_head)
/// sees it), or once it is certain the event will not be stored (refused,
/// a full queue, a dropped request). The daemon's sealer holds its chain
/// heads this way: a head that no hold shares has nothing sealed for it
/// that is still on its way to the store, so it can be evicted and read
/// back from the store later without forking its chain.
#[derive(Clone)]
pub struct WriteHold(
    // Only its lifetime matters: it is never read.
    #[allow(dead_code)] std::sync::Arc<dyn std::any::Any + Send + Sync>,
);

impl WriteHold {
    /// Holds `held` (its strong count) until the event is written.
    pub fn new(held: std::sync::Arc<dyn std::any::Any + Send + Sync>) -> Self {
        WriteHold(held)
    }
}

impl std::fmt::Debug for WriteHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteHold")
    }
}

/// What happened to one appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Newly stored as journal record `seq`.
    Stored {
        /// Its sequence number.
        seq: u64,
    },
    /// Identical to an event already stored (an idempotent re-send).
    Duplicate {
        /// The stored copy's sequence number.
        seq: u64,
    },
}

/// The index entry of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Journal sequence number (= Merkle leaf index).
    pub seq: u64,
    /// Where its bytes are.
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
    /// Length of its bytes.
    pub len: u32,
    /// Indexed facts.
    pub meta: EventMeta,
}

/// One chain row: everything known about a correlation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSummary {
    /// The correlation id.
    pub correlation_id: String,
    /// Earliest `started_at`.
    pub first_at: String,
    /// Latest `completed_at`.
    pub last_at: String,
    /// Events stored.
    pub events: u64,
    /// Events with status `error`.
    pub errors: u64,
    /// Distinct intents (first 8).
    pub intents: Vec<String>,
    /// Per instance: events stored and highest position seen.
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceChain>,
    /// Events whose instance has no trusted key.
    pub key_unknown: u64,
    /// Events whose signature does not verify.
    pub invalid_signatures: u64,
}

/// One instance's chain inside a correlation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceChain {
    /// Events stored.
    pub events: u64,
    /// Highest chain position stored.
    pub max_position: u64,
}

impl ChainSummary {
    /// Complete (no gaps) and every signature verified.
    pub fn verified(&self) -> bool {
        self.key_unknown == 0
            && self.invalid_signatures == 0
            && self.instances.values().all(|c| c.events == c.max_position)
    }

    /// Positions missing from some instance chain (waiting for an event
    /// that has not arrived, or lost).
    pub fn gaps(&self) -> u64 {
        self.instances
            .values()
            .map(|c| c.max_position - c.events)
            .sum()
    }

    /// Counts one more event of the chain.
    pub fn add(&mut self, meta: &EventMeta) {
        if self.correlation_id.is_empty() {
            self.correlation_id = meta.correlation_id.clone();
        }
        if self.first_at.is_empty() || meta.started_at < self.first_at {
            self.first_at = meta.started_at.clone();
        }
        if meta.completed_at > self.last_at {
            self.last_at = meta.completed_at.clone();
        }
        self.events += 1;
        if meta.status == "error" {
            self.errors += 1;
        }
        if self.intents.len() < 8 && !self.intents.contains(&meta.intent) {
            self.intents.push(meta.intent.clone());
        }
        let chain = self.instances.entry(meta.instance_id.clone()).or_default();
        chain.events += 1;
        chain.max_position = chain.max_position.max(meta.chain_position);
        self.count_signature(meta.signature, 1);
    }

    pub(crate) fn count_signature(&mut self, state: SignatureState, delta: i64) {
        let field = match state {
            SignatureState::Verified => return,
            SignatureState::KeyUnknown => &mut self.key_unknown,
            SignatureState::Invalid => &mut self.invalid_signatures,
        };
        *field = field.saturating_add_signed(delta);
    }
}

/// A stored event: its index entry and its parsed signed form.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Index entry.
    pub entry: IndexEntry,
    /// The signed v1 event, parsed from the journal bytes.
    pub event: Value,
}

/// Filters of [`Store::events`](crate::Store::events). Every given filter must match.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Exact correlation id.
    pub correlation_id: Option<String>,
    /// Exact action.
    pub action: Option<String>,
    /// `ok` or `error`.
    pub status: Option<String>,
    /// `completed_at >= since` (RFC 3339 strings compare in time order).
    pub since: Option<String>,
    /// `completed_at < until`.
    pub until: Option<String>,
    /// Return events with `seq > after` (the previous page's cursor).
    pub after: Option<u64>,
    /// Page size (capped at 1000).
    pub limit: usize,
}

/// One page of events, in journal order.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// The events.
    pub events: Vec<StoredEvent>,
    /// Pass as `after` for the next page; `None` at the end.
    pub next_cursor: Option<u64>,
}

/// Largest page [`Store::events`](crate::Store::events) returns.
pub const MAX_PAGE: usize = 1000;

/// Settings of [`Store::open`](crate::Store::open).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Segment size before rotation.
    pub max_segment_bytes: u64,
    /// sled's page cache, in bytes (its `cache_capacity`): see
    /// [`DEFAULT_INDEX_CACHE_BYTES`].
    pub index_cache_bytes: u64,
}

/// sled's page cache unless configured: 32 MiB (it was 256 MiB).
///
/// Why this size: sled fills its cache as the index grows and keeps it for
/// the life of the process, idle or not, and it counts a page by its size
/// on disk, so the memory it takes is larger than the number given (about
/// 1:1 more here: with 60,000 events stored, a 32 MiB cache held ~40 MB
/// more than a 1 MiB one). A miss costs a read of sled's file, which the
/// kernel's page cache usually answers (that memory is the kernel's to
/// reclaim, not the daemon's), and a decode of one page. Beyond its cache
/// sled keeps about 1 KB per stored event (measured with a 1 MiB cache),
/// which no setting here changes: see BENCHMARKS.md ("Memory after many
/// correlations").
pub const DEFAULT_INDEX_CACHE_BYTES: u64 = 32 * 1024 * 1024;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_segment_bytes: journal::DEFAULT_SEGMENT_BYTES,
            index_cache_bytes: DEFAULT_INDEX_CACHE_BYTES,
        }
    }
}

/// `items` (events of one flow, in journal or merged order) with each
/// instance's events put in chain-position order, in the places that
/// instance's events held: the interleaving of instances is kept, and a
/// chain whose events arrived out of order (an SDK exporting from several
/// threads) reads, and bundles, as the chain it is.
pub fn in_chain_order<T>(items: Vec<T>, meta: impl Fn(&T) -> &EventMeta) -> Vec<T> {
    let mut places: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        places
            .entry(meta(item).instance_id.clone())
            .or_default()
            .push(i);
    }
    let mut order = vec![0; items.len()];
    for slots in places.values() {
        let mut by_position = slots.clone();
        by_position.sort_by_key(|&i| (meta(&items[i]).chain_position, i));
        for (slot, from) in slots.iter().zip(by_position) {
            order[*slot] = from;
        }
    }
    let mut taken: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|from| taken.get_mut(from).and_then(Option::take))
        .collect()
}
