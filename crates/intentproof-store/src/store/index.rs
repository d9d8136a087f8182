//! The sled index: derived data over the journal, for queries and for the
//! chain check. Its trees: `ids` (event id -> seq), `records` (runs of
//! journal locations, signature states and content digests by seq),
//! `chain` (instance, correlation, position -> seq), `postings` (facet
//! posting lists), `summaries` (correlation -> chain summary), `meta`
//! (format, how far the journal is indexed) and `cursors` (exporters' next
//! seq). Each item below says how its keys and values are laid out and why.
//!
//! Lean by design (format 3): the index holds what finds an event and what
//! the journal cannot give cheaply (its signature state, its content
//! digest), never a copy of its fields. An entry's other facts
//! ([`IndexEntry::meta`]) are read back from the journal record it points
//! at, which a query reads anyway to answer. Measured at 200,000 batched
//! events: see BENCHMARKS.md ("index on disk").
//!
//! What it does not do: it decides nothing about chains (the chain rules
//! ask it for slots and tips), it writes no journal, and it is never the
//! source of truth: `rebuild` recreates it from the journal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde_json::Value;

use crate::codec::{self, Record};
use crate::error::StoreError;
use crate::journal::{self, RecordLocation};
use crate::meta::{EventMeta, SignatureState};
use crate::types::{ChainSummary, EventQuery, IndexEntry};

/// A chain's slot as the chain check needs it: (event id, content hash,
/// prev hash).
pub(super) type Slot = (String, String, String);

/// The highest stored position of a chain and what is stored there
/// (`None` for a chain with no event yet).
#[derive(Debug, Clone)]
pub(super) struct ChainTip {
    pub(super) position: u64,
    pub(super) slot: Option<Slot>,
}

/// The sled trees.
pub(super) struct Index {
    path: PathBuf,
    /// The journal the records point into (read, never written, here).
    journal: PathBuf,
    db: sled::Db,
    /// event_id -> seq (u64 BE)
    ids: sled::Tree,
    /// Runs of consecutive seqs: the run's first seq (BE) -> their
    /// [`Record`]s (see [`codec::encode_run`]), at most [`MAX_RECORDS`].
    records: sled::Tree,
    /// instance \0 correlation \0 position (BE) -> seq (u64 BE)
    chain: sled::Tree,
    /// Posting lists: kind \0-terminated value, then the list's first seq
    /// (BE) -> the seqs (BE, ascending) of one commit's events with that
    /// correlation, action or status. See [`Facet`].
    postings: sled::Tree,
    /// correlation -> ChainSummary (binary, see [`codec`])
    summaries: sled::Tree,
    /// Recently written summaries, so that a commit adding to a chain does
    /// not read and decode its summary back from sled first (when many
    /// chains are active, a commit touches about one per event). Bounded:
    /// emptied when full. Emptied by every other summary writer.
    recent_summaries: Mutex<HashMap<String, ChainSummary>>,
    /// "indexed_through" -> next seq to index
    meta: sled::Tree,
    /// exporter name -> next seq to deliver (BE)
    cursors: sled::Tree,
}

/// The index layout this build writes (the `format` key of the `meta`
/// tree). 1 (no key): one sled key per event per correlation, action,
/// status and time, and per Merkle leaf; JSON entries. 2: facet posting
/// lists, one key per commit and value; seq -> id runs; Merkle leaves in
/// the `leaves` file; binary entries and summaries (`codec`). 3: no copy
/// of the events' fields (id -> seq, runs of [`Record`]s by seq, chain
/// slots -> seq).
const INDEX_FORMAT: u64 = 3;

/// The sled trees of [`INDEX_FORMAT`]; an upgrade drops any other.
const TREES: [&str; 7] = [
    "ids",
    "records",
    "chain",
    "postings",
    "summaries",
    "meta",
    "cursors",
];

/// Summaries [`Index::recent_summaries`] holds before it starts over (a
/// few hundred bytes each).
const RECENT_SUMMARIES: usize = 10_000;

/// What a posting list is keyed on.
///
/// Why posting lists: a sled insert costs about 5 µs whatever its size, and
/// one key per event for each facet made the index the ingest bottleneck.
/// A commit writes one list per distinct value instead, so under load (a
/// few thousand events per commit, a handful of actions and statuses) the
/// facets cost almost nothing per event, and at rest they cost what they
/// did. Lists never overlap: each holds seqs of one commit, keyed by its
/// first seq, and re-indexing after a crash replaces the lists it covers.
#[derive(Clone, Copy)]
enum Facet {
    Correlation = b'c' as isize,
    Action = b'a' as isize,
    Status = b's' as isize,
}

/// Key prefix of `facet`'s lists for `value`: the facet byte, the value,
/// a 0 byte. A list's key adds its first seq (BE).
fn posting_prefix(facet: Facet, value: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(value.len() + 10);
    k.push(facet as u8);
    k.extend_from_slice(value.as_bytes());
    k.push(0);
    k
}

/// Bounds a re-indexed posting list to `8 * MAX_RUN` bytes, so that a page
/// never reads more than MAX_RUN seqs it does not need.
const MAX_RUN: usize = 4096;

/// Most records in one `records` run: a lookup reads the run whole
/// (53 bytes a record: 13.6 KB).
const MAX_RECORDS: usize = 256;

fn seq_bytes(value: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(value).ok().map(u64::from_be_bytes)
}

/// The seqs of a posting list.
fn posted(list: &[u8]) -> impl Iterator<Item = u64> + '_ {
    list.chunks_exact(8)
        .filter_map(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
}

fn chain_key(instance: &str, correlation: &str, position: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(instance.len() + correlation.len() + 10);
    k.extend_from_slice(instance.as_bytes());
    k.push(0);
    k.extend_from_slice(correlation.as_bytes());
    k.push(0);
    k.extend_from_slice(&position.to_be_bytes());
    k
}

/// Runs `attempt` until it gets past sled's lock (`Ok(None)`: still
/// locked), for up to 3 s, then calls the store [`StoreError::Locked`].
/// sled releases its lock from a background thread shortly after the last
/// handle drops, so a store reopened in the same process right after
/// closing (a restart in tests, `rebuild` then `open`, a reader after a
/// writer) may see it held for a moment.
fn until_unlocked<T>(
    path: &Path,
    mut attempt: impl FnMut() -> Result<Option<T>, StoreError>,
) -> Result<T, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        if let Some(done) = attempt()? {
            return Ok(done);
        }
        if std::time::Instant::now() >= deadline {
            return Err(StoreError::Locked(path.to_owned()));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl Index {
    /// `flush_every_ms: None` for a reader: sled then writes nothing unless
    /// asked to.
    pub(super) fn open(
        path: &Path,
        journal: &Path,
        cache_bytes: u64,
        flush_every_ms: Option<u64>,
    ) -> Result<Index, StoreError> {
        let err = |source| StoreError::Index {
            path: path.to_owned(),
            source,
        };
        let db = until_unlocked(path, || {
            let opened = sled::Config::new()
                .path(path)
                .cache_capacity(cache_bytes)
                .flush_every_ms(flush_every_ms)
                .open();
            match opened {
                Ok(db) => Ok(Some(db)),
                Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                    Ok(None)
                }
                Err(other) => Err(err(other)),
            }
        })?;
        let tree = |name: &str| db.open_tree(name).map_err(err);
        Ok(Index {
            ids: tree("ids")?,
            records: tree("records")?,
            chain: tree("chain")?,
            postings: tree("postings")?,
            summaries: tree("summaries")?,
            recent_summaries: Mutex::new(HashMap::new()),
            meta: tree("meta")?,
            cursors: tree("cursors")?,
            path: path.to_owned(),
            journal: journal.to_owned(),
            db,
        })
    }

    fn err(&self) -> impl Fn(sled::Error) -> StoreError + '_ {
        |source| StoreError::Index {
            path: self.path.clone(),
            source,
        }
    }

    pub(super) fn entry(&self, event_id: &str) -> Result<Option<IndexEntry>, StoreError> {
        match self.seq_of(event_id)? {
            Some(seq) => self.entry_at(seq),
            None => Ok(None),
        }
    }

    /// The seq of the event with id `event_id`.
    fn seq_of(&self, event_id: &str) -> Result<Option<u64>, StoreError> {
        match self.ids.get(event_id.as_bytes()).map_err(self.err())? {
            Some(v) => seq_bytes(&v)
                .map(Some)
                .ok_or_else(|| StoreError::BadIndex(format!("ids/{event_id}"))),
            None => Ok(None),
        }
    }

    /// What the index keeps of journal record `seq`.
    fn record_at(&self, seq: u64) -> Result<Option<Record>, StoreError> {
        let Some(item) = self.records.range(..=seq.to_be_bytes()).next_back() else {
            return Ok(None);
        };
        let (key, run) = item.map_err(self.err())?;
        let first = seq_bytes(&key).ok_or_else(|| StoreError::BadIndex("records key".into()))?;
        let Some(k) = usize::try_from(seq - first).ok() else {
            return Ok(None);
        };
        match codec::run_len(&run) {
            Some(n) if k < n => codec::run_record(&run, k)
                .map(Some)
                .ok_or_else(|| StoreError::BadIndex(format!("records/{first}"))),
            Some(_) => Ok(None),
            None => Err(StoreError::BadIndex(format!("records/{first}"))),
        }
    }

    /// The entry and the bytes of journal record `seq`, exactly as stored.
    pub(super) fn raw_at(&self, seq: u64) -> Result<Option<(IndexEntry, Vec<u8>)>, StoreError> {
        let Some(record) = self.record_at(seq)? else {
            return Ok(None);
        };
        let location = RecordLocation {
            segment: record.segment,
            offset: record.offset,
            len: record.len,
        };
        let bytes = journal::read_at(&self.journal, seq, location)?;
        let (entry, _) = self.facts(seq, record, &bytes)?;
        Ok(Some((entry, bytes)))
    }

    /// Reads journal record `seq` and its facts.
    fn load(&self, seq: u64, record: Record) -> Result<(IndexEntry, Value), StoreError> {
        let location = RecordLocation {
            segment: record.segment,
            offset: record.offset,
            len: record.len,
        };
        let bytes = journal::read_at(&self.journal, seq, location)?;
        self.facts(seq, record, &bytes)
    }

    /// The index entry (facts parsed from `bytes`) and the parsed event of
    /// journal record `seq`.
    fn facts(
        &self,
        seq: u64,
        record: Record,
        bytes: &[u8],
    ) -> Result<(IndexEntry, Value), StoreError> {
        let bad = || StoreError::BadIndex(format!("journal record {seq}"));
        let value: Value = serde_json::from_slice(bytes).map_err(|_| bad())?;
        let meta = EventMeta::from_stored(
            &value,
            intentproof_core::v1::sha256_prefixed(&record.content_digest),
            record.signature,
        )
        .map_err(|_| bad())?;
        let entry = IndexEntry {
            seq,
            segment: record.segment,
            offset: record.offset,
            len: record.len,
            meta,
        };
        Ok((entry, value))
    }

    /// The entry and the event of journal record `seq`, read once.
    pub(super) fn stored_at(&self, seq: u64) -> Result<Option<(IndexEntry, Value)>, StoreError> {
        match self.record_at(seq)? {
            Some(record) => self.load(seq, record).map(Some),
            None => Ok(None),
        }
    }

    /// The seq a chain slot holds, from a `chain` value.
    fn slot_seq(&self, value: &[u8]) -> Result<u64, StoreError> {
        seq_bytes(value).ok_or_else(|| StoreError::BadIndex("chain slot".into()))
    }

    pub(super) fn chain_slot(
        &self,
        instance: &str,
        correlation: &str,
        position: u64,
    ) -> Result<Option<IndexEntry>, StoreError> {
        match self
            .chain
            .get(chain_key(instance, correlation, position))
            .map_err(self.err())?
        {
            Some(seq) => self.entry_at(self.slot_seq(&seq)?),
            None => Ok(None),
        }
    }

    /// The highest stored slot of chain (instance, correlation).
    pub(super) fn chain_tip(
        &self,
        instance: &str,
        correlation: &str,
    ) -> Result<ChainTip, StoreError> {
        let mut prefix = chain_key(instance, correlation, 0);
        prefix.truncate(prefix.len() - 8);
        let Some(item) = self.chain.scan_prefix(prefix).next_back() else {
            return Ok(ChainTip {
                position: 0,
                slot: None,
            });
        };
        let (_, seq) = item.map_err(self.err())?;
        let seq = self.slot_seq(&seq)?;
        let entry = self.entry_at(seq)?.ok_or_else(|| {
            StoreError::BadIndex(format!("chain slot names unknown record {seq}"))
        })?;
        Ok(ChainTip {
            position: entry.meta.chain_position,
            slot: Some((
                entry.meta.event_id,
                entry.meta.content_hash,
                entry.meta.prev_event_hash,
            )),
        })
    }

    pub(super) fn summary(&self, correlation: &str) -> Result<Option<ChainSummary>, StoreError> {
        match self
            .summaries
            .get(correlation.as_bytes())
            .map_err(self.err())?
        {
            Some(bytes) => codec::decode_summary(&bytes)
                .map(Some)
                .ok_or_else(|| StoreError::BadIndex(format!("summaries/{correlation}"))),
            None => Ok(None),
        }
    }

    pub(super) fn indexed_through(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta
            .get("indexed_through")
            .map_err(self.err())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Writes the index entries of newly stored events and adds them to
    /// their chain summaries. Only for events not indexed before: summary
    /// counts are increments (see [`Index::reindex`] for the idempotent path).
    pub(super) fn insert(&self, entries: &[IndexEntry]) -> Result<(), StoreError> {
        self.write(entries, true)
    }

    /// Re-indexes entries that may already be partly indexed (catch-up after
    /// a crash: sled persists its trees' batches independently, so a crash
    /// can leave an event in one tree and not another). Every tree write is
    /// an overwrite, and the summaries of the correlations concerned are
    /// recomputed from scratch, so applying this twice changes nothing.
    pub(super) fn reindex(&self, entries: &[IndexEntry]) -> Result<(), StoreError> {
        self.write(entries, false)?;
        let correlations: BTreeSet<&str> = entries
            .iter()
            .map(|e| e.meta.correlation_id.as_str())
            .collect();
        let err = self.err();
        for correlation in correlations {
            let mut summary = ChainSummary::default();
            self.for_each_entry_of(correlation, None, &mut |entry| {
                summary.add(&entry.meta);
                Ok(ControlFlow::Continue(()))
            })?;
            self.summaries
                .insert(correlation.as_bytes(), codec::encode_summary(&summary))
                .map_err(&err)?;
        }
        Ok(())
    }

    /// The index entry of journal record `seq`.
    pub(super) fn entry_at(&self, seq: u64) -> Result<Option<IndexEntry>, StoreError> {
        Ok(self.stored_at(seq)?.map(|(entry, _)| entry))
    }

    /// Calls `visit` with every indexed seq from `from` on, ascending,
    /// until it breaks.
    fn for_each_seq(
        &self,
        from: u64,
        visit: &mut dyn FnMut(u64) -> Result<ControlFlow<()>, StoreError>,
    ) -> Result<(), StoreError> {
        // The run holding `from` may start before it.
        let begin = match self.records.range(..=from.to_be_bytes()).next_back() {
            Some(item) => item.map_err(self.err())?.0.to_vec(),
            None => Vec::new(),
        };
        let mut next = from;
        for item in self.records.range(begin..) {
            let (key, run) = item.map_err(self.err())?;
            let Some(first) = seq_bytes(&key) else {
                continue;
            };
            for seq in (first..).take(codec::run_len(&run).unwrap_or(0)) {
                if seq < next {
                    continue;
                }
                next = seq + 1;
                if visit(seq)?.is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Visits the index entries of `correlation`'s events stored after seq
    /// `after`, in seq order: its posting lists, each seq's entry, and the
    /// check that the entry is the correlation's (a value that extends it
    /// past a NUL byte shares key bytes).
    pub(super) fn for_each_entry_of(
        &self,
        correlation: &str,
        after: Option<u64>,
        visit: &mut dyn FnMut(IndexEntry) -> Result<ControlFlow<()>, StoreError>,
    ) -> Result<(), StoreError> {
        self.for_each_stored_of(correlation, after, &mut |entry, _| visit(entry))
    }

    /// [`Index::for_each_entry_of`] with each event as read from its
    /// journal record (read once: the entry's facts come from it).
    pub(super) fn for_each_stored_of(
        &self,
        correlation: &str,
        after: Option<u64>,
        visit: &mut dyn FnMut(IndexEntry, Value) -> Result<ControlFlow<()>, StoreError>,
    ) -> Result<(), StoreError> {
        self.for_each_posted(
            Facet::Correlation,
            correlation,
            after,
            &mut |seq| match self.stored_at(seq)? {
                Some((entry, event)) if entry.meta.correlation_id == correlation => {
                    visit(entry, event)
                }
                _ => Ok(ControlFlow::Continue(())),
            },
        )
    }

    /// Calls `visit` with each seq posted for `value` under `facet` that is
    /// after `after`, in ascending order, until it breaks.
    fn for_each_posted(
        &self,
        facet: Facet,
        value: &str,
        after: Option<u64>,
        visit: &mut dyn FnMut(u64) -> Result<ControlFlow<()>, StoreError>,
    ) -> Result<(), StoreError> {
        let prefix = posting_prefix(facet, value);
        let first_wanted = after.map_or(0, |a| a.saturating_add(1));
        // The list holding `first_wanted` may start before it.
        let mut wanted_key = prefix.clone();
        wanted_key.extend_from_slice(&first_wanted.to_be_bytes());
        let mut begin = prefix.clone();
        for item in self.postings.range(prefix.clone()..=wanted_key).rev() {
            let (key, _) = item.map_err(self.err())?;
            // Not a key of another value that extends this one past a 0 byte.
            if key.len() == prefix.len() + 8 {
                begin = key.to_vec();
                break;
            }
        }
        // Lists do not overlap (see `Facet`); `next` skips repeats anyway,
        // so an overlap could never show an event twice.
        let mut next = first_wanted;
        for item in self.postings.range(begin..) {
            let (key, list) = item.map_err(self.err())?;
            if !key.starts_with(&prefix) {
                break;
            }
            if key.len() != prefix.len() + 8 {
                continue; // another value that extends this one past a 0 byte
            }
            for seq in posted(&list) {
                if seq < next {
                    continue;
                }
                next = seq.saturating_add(1);
                if visit(seq)?.is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Brings an index of an older format to [`INDEX_FORMAT`]: drops the
    /// trees it no longer uses and marks the whole journal for re-indexing
    /// (exporter cursors are kept). `catch_up` then does the work, and
    /// `open` records the new format only once it has succeeded, so an
    /// upgrade interrupted by a crash starts over.
    pub(super) fn upgrade(&self) -> Result<(), StoreError> {
        let err = self.err();
        let format = match self.meta.get("format").map_err(&err)? {
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::BadIndex("meta/format".into()))?,
            None => 1,
        };
        if format == INDEX_FORMAT {
            return Ok(());
        }
        if format > INDEX_FORMAT {
            return Err(StoreError::NewerIndex {
                found: format,
                supported: INDEX_FORMAT,
            });
        }
        // The re-index mark goes to disk before anything is dropped: a
        // crash mid-upgrade must find it, not an emptied index that claims
        // to be complete.
        if self.indexed_through()? > 0 {
            tracing::info!(
                from = format,
                to = INDEX_FORMAT,
                "index format upgrade: re-indexing the journal"
            );
        }
        self.meta
            .insert("indexed_through", &0u64.to_be_bytes())
            .map_err(&err)?;
        self.db.flush().map_err(&err)?;
        let default_tree: &[u8] = &self.db.name();
        for name in self.db.tree_names() {
            if name.as_ref() != default_tree && !TREES.iter().any(|t| name == t.as_bytes()) {
                self.db.drop_tree(&name).map_err(&err)?;
            }
        }
        Ok(())
    }

    /// Records [`INDEX_FORMAT`] as the format of the index on disk: only
    /// once the journal is indexed in it (see [`Index::upgrade`]).
    pub(super) fn record_format(&self) -> Result<(), StoreError> {
        self.meta
            .insert("format", &INDEX_FORMAT.to_be_bytes())
            .map_err(self.err())?;
        Ok(())
    }

    /// Calls `visit` with each seq after `query.after` that may match
    /// `query`, in ascending order, until it breaks.
    pub(super) fn for_each_candidate(
        &self,
        query: &EventQuery,
        visit: &mut dyn FnMut(u64) -> Result<ControlFlow<()>, StoreError>,
    ) -> Result<(), StoreError> {
        // Walk the narrowest index; `visit` checks the other filters.
        let facet = if let Some(c) = &query.correlation_id {
            Some((Facet::Correlation, c))
        } else if let Some(a) = &query.action {
            Some((Facet::Action, a))
        } else {
            query.status.as_ref().map(|s| (Facet::Status, s))
        };
        if let Some((facet, value)) = facet {
            self.for_each_posted(facet, value, query.after, visit)?;
        } else {
            let lower = query.after.map_or(0, |a| a.saturating_add(1));
            self.for_each_seq(lower, visit)?;
        }
        Ok(())
    }

    /// Index entries of every event whose action starts with `prefix`, in
    /// journal order.
    pub(super) fn entries_with_action_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let mut seqs = Vec::new();
        let mut key_prefix = vec![Facet::Action as u8];
        key_prefix.extend_from_slice(prefix.as_bytes());
        for item in self.postings.scan_prefix(key_prefix) {
            let (_, list) = item.map_err(self.err())?;
            seqs.extend(posted(&list));
        }
        seqs.sort_unstable();
        let mut entries = Vec::with_capacity(seqs.len());
        for seq in seqs {
            entries.extend(self.entry_at(seq)?);
        }
        Ok(entries)
    }

    /// Chains `offset..offset + limit`, most recent activity first, and how
    /// many there are: ordered by each summary's `last_at` alone (see
    /// [`codec::summary_last_at`]), only the page decoded in full.
    pub(super) fn chains_page(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<ChainSummary>), StoreError> {
        let bad = |key: &[u8]| {
            StoreError::BadIndex(format!("summaries/{}", String::from_utf8_lossy(key)))
        };
        let mut order: Vec<(String, sled::IVec)> = Vec::new();
        for item in self.summaries.iter() {
            let (key, value) = item.map_err(self.err())?;
            let last_at = codec::summary_last_at(&value).ok_or_else(|| bad(&key))?;
            order.push((last_at.to_owned(), key));
        }
        // Keys are the correlation ids' bytes: byte order is String order.
        order.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let total = order.len();
        let mut page = Vec::with_capacity(limit.min(total.saturating_sub(offset)));
        for (_, key) in order.iter().skip(offset).take(limit) {
            let Some(value) = self.summaries.get(key).map_err(self.err())? else {
                continue;
            };
            page.push(codec::decode_summary(&value).ok_or_else(|| bad(key))?);
        }
        Ok((total, page))
    }

    /// Visits the index entries of `instance`'s events, by (correlation,
    /// position), until `visit` breaks.
    pub(super) fn for_each_entry_of_instance(
        &self,
        instance: &str,
        visit: &mut dyn FnMut(IndexEntry) -> Result<ControlFlow<()>, StoreError>,
    ) -> Result<(), StoreError> {
        let mut prefix = instance.as_bytes().to_vec();
        prefix.push(0);
        for item in self.chain.scan_prefix(&prefix) {
            let (_, seq) = item.map_err(self.err())?;
            let Some(entry) = self.entry_at(self.slot_seq(&seq)?)? else {
                continue;
            };
            if visit(entry)?.is_break() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Sets a stored event's signature state to `state` and moves its count
    /// in its chain's summary. Writes the summary directly, past
    /// [`Index::recent_summaries`]: the caller empties that first.
    pub(super) fn set_signature(
        &self,
        mut entry: IndexEntry,
        state: SignatureState,
    ) -> Result<(), StoreError> {
        let mut summary = self
            .summary(&entry.meta.correlation_id)?
            .unwrap_or_default();
        summary.count_signature(entry.meta.signature, -1);
        summary.count_signature(state, 1);
        entry.meta.signature = state;
        let err = self.err();
        let bad = || StoreError::BadIndex(format!("records run of {}", entry.seq));
        let (key, run) = self
            .records
            .range(..=entry.seq.to_be_bytes())
            .next_back()
            .ok_or_else(bad)?
            .map_err(&err)?;
        let first = seq_bytes(&key).ok_or_else(bad)?;
        let k = usize::try_from(entry.seq - first).map_err(|_| bad())?;
        let mut run = run.to_vec();
        codec::set_run_signature(&mut run, k, state).ok_or_else(bad)?;
        self.records.insert(key, run).map_err(&err)?;
        self.summaries
            .insert(
                entry.meta.correlation_id.as_bytes(),
                codec::encode_summary(&summary),
            )
            .map_err(&err)?;
        Ok(())
    }

    /// An exporter's cursor: the next seq it must deliver (0 if none).
    pub(super) fn cursor(&self, exporter: &str) -> Result<u64, StoreError> {
        Ok(self
            .cursors
            .get(exporter.as_bytes())
            .map_err(self.err())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Sets an exporter's cursor and flushes the `cursors` tree.
    pub(super) fn set_cursor(&self, exporter: &str, next_seq: u64) -> Result<(), StoreError> {
        let err = self.err();
        self.cursors
            .insert(exporter.as_bytes(), &next_seq.to_be_bytes())
            .map_err(&err)?;
        self.cursors.flush().map(|_| ()).map_err(err)
    }

    /// Empties [`Index::recent_summaries`], for a writer of summaries other
    /// than [`Index::insert`] (the cache would go stale).
    pub(super) fn clear_recent_summaries(&self) {
        self.recent_summaries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Drops [`Index::recent_summaries`] and gives its memory back.
    pub(super) fn release_recent_summaries(&self) {
        *self
            .recent_summaries
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = HashMap::new();
    }

    /// How many summaries [`Index::recent_summaries`] holds.
    pub(super) fn recent_summaries_len(&self) -> usize {
        self.recent_summaries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Flushes the index to disk.
    pub(super) fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(self.err())
    }

    fn write(&self, entries: &[IndexEntry], count: bool) -> Result<(), StoreError> {
        let mut recent = self
            .recent_summaries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !count {
            recent.clear(); // the caller recomputes the summaries it touches
        }
        let mut summaries: HashMap<&str, ChainSummary> = HashMap::new();
        let mut ids = sled::Batch::default();
        let mut records = Vec::with_capacity(entries.len());
        let mut chain = sled::Batch::default();
        let mut postings: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for entry in entries {
            let m = &entry.meta;
            let seq = entry.seq.to_be_bytes();
            ids.insert(m.event_id.as_bytes(), &seq);
            records.push(Record::of(entry).ok_or_else(|| {
                StoreError::BadIndex(format!("content hash of record {}", entry.seq))
            })?);
            chain.insert(
                chain_key(&m.instance_id, &m.correlation_id, m.chain_position),
                &seq,
            );
            for (facet, value) in [
                (Facet::Correlation, &m.correlation_id),
                (Facet::Action, &m.action),
                (Facet::Status, &m.status),
            ] {
                postings
                    .entry(posting_prefix(facet, value))
                    .or_default()
                    .extend_from_slice(&entry.seq.to_be_bytes());
            }
            if !count {
                continue;
            }
            let summary = match summaries.entry(m.correlation_id.as_str()) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let known = match recent.remove(&m.correlation_id) {
                        Some(summary) => Some(summary),
                        None => self.summary(&m.correlation_id)?,
                    };
                    v.insert(known.unwrap_or_default())
                }
            };
            summary.add(m);
        }
        let err = self.err();
        let mut posting_batch = sled::Batch::default();
        if !count {
            // Re-indexing from `first`: lists a crashed commit left at or
            // after it hold a subset of what is written now; drop them so
            // lists never overlap.
            let first = entries.iter().map(|e| e.seq).min().unwrap_or(0);
            for prefix in postings.keys() {
                let mut from = prefix.clone();
                from.extend_from_slice(&first.to_be_bytes());
                let mut to = prefix.clone();
                to.extend_from_slice(&u64::MAX.to_be_bytes());
                for item in self.postings.range(from..=to) {
                    posting_batch.remove(item.map_err(&err)?.0);
                }
            }
        }
        for (prefix, seqs) in postings {
            // Entries come in seq order, so a list starts with its first
            // seq; a long list (a re-index) is cut so that a page never
            // reads more than MAX_RUN seqs it does not need.
            for list in seqs.chunks(8 * MAX_RUN) {
                let mut key = prefix.clone();
                key.extend_from_slice(list.get(..8).unwrap_or_default());
                posting_batch.insert(key, list);
            }
        }
        self.ids.apply_batch(ids).map_err(&err)?;
        let mut record_batch = sled::Batch::default();
        if !count {
            // As for posting lists: runs at or after the first re-indexed
            // seq are replaced, never overlapped.
            let first = entries.iter().map(|e| e.seq).min().unwrap_or(0);
            for item in self.records.range(first.to_be_bytes()..) {
                record_batch.remove(item.map_err(&err)?.0);
            }
        }
        let mut at = 0;
        for run in entries.chunk_by(|a, b| a.seq + 1 == b.seq) {
            for run in run.chunks(MAX_RECORDS) {
                let of_run = &records[at..at + run.len()];
                at += run.len();
                record_batch.insert(&run[0].seq.to_be_bytes(), codec::encode_run(of_run.iter()));
            }
        }
        self.records.apply_batch(record_batch).map_err(&err)?;
        self.chain.apply_batch(chain).map_err(&err)?;
        self.postings.apply_batch(posting_batch).map_err(&err)?;
        let mut summary_batch = sled::Batch::default();
        for (correlation, summary) in &summaries {
            summary_batch.insert(correlation.as_bytes(), codec::encode_summary(summary));
        }
        self.summaries.apply_batch(summary_batch).map_err(&err)?;
        if recent.len() + summaries.len() > RECENT_SUMMARIES {
            // A new table: `clear` would keep the full one's capacity.
            *recent = HashMap::new();
        }
        recent.extend(summaries.into_iter().map(|(c, s)| (c.to_owned(), s)));
        if let Some(last) = entries.iter().map(|e| e.seq + 1).max() {
            self.meta
                .insert("indexed_through", &last.to_be_bytes())
                .map_err(&err)?;
        }
        Ok(())
    }
}
