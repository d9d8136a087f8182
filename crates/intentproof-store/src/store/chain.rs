//! The chain rules: what [`append`](super::Store::append) checks of each
//! event against its chain, per (instance, correlation), as the reference
//! ingest does it. Position 1 carries the zero hash; a position is taken
//! once; an event links to the stored event before it, and the stored event
//! after it links to it; an event id names one event. [`ChainConflict`]
//! says which rule an event broke; an identical re-send is not a conflict.
//!
//! Also the cache of recently used chains' tips, so that checking an event
//! that extends its chain (the usual case) reads nothing from the index.
//!
//! What it does not do: it writes nothing (the store appends what passed,
//! then extends the tips), and it does not look at signatures (an event
//! with an unknown key or a bad signature is stored and counted as such).

use std::collections::HashMap;

use crate::error::StoreError;
use crate::meta::EventMeta;

use super::index::{ChainTip, Index, Slot};

/// Where a chain starts: `"sha256:"` and 64 zeros.
pub const GENESIS_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Why one event was refused: it conflicts with its chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainConflict {
    /// Position 1 must carry the zero hash.
    #[error(
        "event {event_id} is at chain position 1 but its prev_event_hash is {prev}, not the zero hash"
    )]
    BadGenesis {
        /// The event.
        event_id: String,
        /// What it carries.
        prev: String,
    },
    /// Another event already holds this position.
    #[error(
        "chain fork: position {position} of ({instance_id}, {correlation_id}) already holds event {existing}, so {event_id} cannot take it"
    )]
    Fork {
        /// The refused event.
        event_id: String,
        /// The event already there.
        existing: String,
        /// The contested position.
        position: u64,
        /// Chain instance.
        instance_id: String,
        /// Chain correlation.
        correlation_id: String,
    },
    /// `prev_event_hash` is not the stored predecessor's content hash.
    #[error("event {event_id} at position {position} says the previous event hashes to {prev}, but the stored event at position {} hashes to {stored}", position - 1)]
    PrevMismatch {
        /// The refused event.
        event_id: String,
        /// Its position.
        position: u64,
        /// What it claims.
        prev: String,
        /// What is stored.
        stored: String,
    },
    /// The stored successor does not link to this event.
    #[error("event {event_id} at position {position} does not match the already stored event at position {} (that event links to {expected})", position + 1)]
    SuccessorMismatch {
        /// The refused event.
        event_id: String,
        /// Its position.
        position: u64,
        /// The hash the successor expects.
        expected: String,
    },
    /// The event id is already used by a different event.
    #[error(
        "event id {event_id} is already used by a different event (at position {position} of correlation {correlation_id}); event ids must be unique"
    )]
    IdReused {
        /// The id.
        event_id: String,
        /// Where it is used.
        position: u64,
        /// Its correlation.
        correlation_id: String,
    },
}

/// Tips of recently used chains, keyed by (instance, correlation).
/// Bounded: when full it is emptied and refills from the index.
#[derive(Debug, Default)]
pub(super) struct ChainTips {
    tips: HashMap<(String, String), ChainTip>,
}

impl ChainTips {
    /// Chains remembered before the cache starts over (a few hundred
    /// bytes each). A writer appends to a few hundred chains at a time in
    /// the workloads this serves; a miss costs one index read. 100,000
    /// made a burst of new chains hold ~40 MB here at its peak, which
    /// fragments the heap the allocator can give back once idle.
    const MAX: usize = 10_000;

    /// Records that `meta`'s slot is now stored, if it is above the tip.
    pub(super) fn extend(&mut self, meta: &EventMeta) {
        let key = (meta.instance_id.clone(), meta.correlation_id.clone());
        if let Some(tip) = self.tips.get(&key)
            && tip.position >= meta.chain_position
        {
            return;
        }
        self.insert(
            key,
            ChainTip {
                position: meta.chain_position,
                slot: Some((
                    meta.event_id.clone(),
                    meta.content_hash.clone(),
                    meta.prev_event_hash.clone(),
                )),
            },
        );
    }

    /// Remembers `tip`, starting over when the cache is full.
    fn insert(&mut self, key: (String, String), tip: ChainTip) {
        if self.tips.len() >= Self::MAX && !self.tips.contains_key(&key) {
            // A new table: `clear` would keep the full one's capacity.
            self.tips = HashMap::new();
        }
        self.tips.insert(key, tip);
    }
    /// How many chains' tips are remembered.
    pub(super) fn len(&self) -> usize {
        self.tips.len()
    }
}

/// Chain rules for one event: `Ok(Ok(Some(seq)))` identical re-send,
/// `Ok(Ok(None))` acceptable, `Ok(Err(_))` conflict.
#[allow(clippy::type_complexity)]
pub(super) fn check(
    index: &Index,
    m: &EventMeta,
    batch_slots: &HashMap<(String, String, u64), Slot>,
    batch_ids: &HashMap<String, (String, u64)>,
    tips: &mut ChainTips,
) -> Result<Result<Option<u64>, ChainConflict>, StoreError> {
    // Same id stored already?
    if let Some(existing) = index.entry(&m.event_id)? {
        if existing.meta.content_hash == m.content_hash {
            return Ok(Ok(Some(existing.seq)));
        }
        return Ok(Err(ChainConflict::IdReused {
            event_id: m.event_id.clone(),
            position: existing.meta.chain_position,
            correlation_id: existing.meta.correlation_id,
        }));
    }
    if let Some((hash, position)) = batch_ids.get(&m.event_id) {
        if *hash != m.content_hash {
            return Ok(Err(ChainConflict::IdReused {
                event_id: m.event_id.clone(),
                position: *position,
                correlation_id: m.correlation_id.clone(),
            }));
        }
        return Ok(Ok(None));
    }
    if m.chain_position == 1 && m.prev_event_hash != GENESIS_HASH {
        return Ok(Err(ChainConflict::BadGenesis {
            event_id: m.event_id.clone(),
            prev: m.prev_event_hash.clone(),
        }));
    }
    let tip_key = (m.instance_id.clone(), m.correlation_id.clone());
    let tip = match tips.tips.get(&tip_key) {
        Some(tip) => tip.clone(),
        None => {
            let tip = index.chain_tip(&m.instance_id, &m.correlation_id)?;
            tips.insert(tip_key, tip.clone());
            tip
        }
    };
    // (id, content hash, prev hash) at a position: from the batch, else
    // from the chain's tip when the position is at or above it (nothing
    // is stored above the tip), else from the index.
    let slot = |position: u64| -> Result<Option<Slot>, StoreError> {
        let key = (m.instance_id.clone(), m.correlation_id.clone(), position);
        if let Some(found) = batch_slots.get(&key) {
            return Ok(Some(found.clone()));
        }
        if position > tip.position {
            return Ok(None);
        }
        if position == tip.position {
            return Ok(tip.slot.clone());
        }
        Ok(index
            .chain_slot(&m.instance_id, &m.correlation_id, position)?
            .map(|e| (e.meta.event_id, e.meta.content_hash, e.meta.prev_event_hash)))
    };
    if let Some((existing, _, _)) = slot(m.chain_position)? {
        return Ok(Err(ChainConflict::Fork {
            event_id: m.event_id.clone(),
            existing,
            position: m.chain_position,
            instance_id: m.instance_id.clone(),
            correlation_id: m.correlation_id.clone(),
        }));
    }
    if m.chain_position > 1
        && let Some((_, stored, _)) = slot(m.chain_position - 1)?
        && stored != m.prev_event_hash
    {
        return Ok(Err(ChainConflict::PrevMismatch {
            event_id: m.event_id.clone(),
            position: m.chain_position,
            prev: m.prev_event_hash.clone(),
            stored,
        }));
    }
    if let Some((_, _, successor_prev)) = slot(m.chain_position + 1)?
        && successor_prev != m.content_hash
    {
        return Ok(Err(ChainConflict::SuccessorMismatch {
            event_id: m.event_id.clone(),
            position: m.chain_position,
            expected: successor_prev,
        }));
    }
    Ok(Ok(None))
}
