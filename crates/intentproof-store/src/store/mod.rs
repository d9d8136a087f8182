//! [`Store`]: the journal plus the sled index, the Merkle log and chain
//! enforcement, behind one handle.
//!
//! This module is the façade: it opens the pieces (recovering the journal,
//! catching the index up with it), appends (journal first, then the Merkle
//! log, then the index) and answers queries by reading the events the index
//! points at. The index's trees and key layouts are in `index`; what an
//! appended event must satisfy is in `chain`.

mod chain;
mod index;

pub use chain::{ChainConflict, GENESIS_HASH};

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};

use ed25519_dalek::VerifyingKey;
use intentproof_core::merkle::{self, BlockLog, BlockLogError, Hash};
use serde_json::Value;

use crate::error::StoreError;
use crate::journal::{self, Journal, RecordLocation};
use crate::leaf_file::LeafFile;
use crate::meta::{EventMeta, MetaError, SignatureState};
use crate::types::{
    Appended, ChainSummary, EventPage, EventQuery, Incoming, IndexEntry, MAX_PAGE, StoreOptions,
    StoredEvent,
};
use chain::ChainTips;
use index::{Index, Slot};

/// The store: one per data directory, opened by one process (the daemon).
pub struct Store {
    dir: PathBuf,
    journal: Mutex<Journal>,
    index: Index,
    /// The Merkle log: every complete subtree of 32 leaves and up cached,
    /// so roots and proofs cost O(log² n) hashes, not O(n) (an inclusion
    /// proof at 1M records took ~330 ms by rehashing), in 2 MiB per 1M
    /// records; a proof rehashes one block of 32 leaves read back from
    /// the leaves file (see `leaf_file`). A reader keeps every leaf.
    leaves: RwLock<BlockLog>,
    /// Whether this store writes (and the Merkle leaves file it appends
    /// to) or reads a private copy of the index.
    access: Access,
    /// Why appends stopped (see [`StoreError::Stalled`]). Locked only with
    /// `journal` held.
    stalled: Mutex<Option<String>>,
    /// The highest stored slot of recently appended-to chains, so the
    /// chain check of an event that extends its chain (the usual case)
    /// needs no index reads. Locked only with `journal` held.
    tips: Mutex<ChainTips>,
    recovery: journal::Recovery,
}

/// How a store was opened.
enum Access {
    /// By the writer ([`Store::open`]): the Merkle leaves on disk, locked
    /// only with `journal` held.
    Writer(Mutex<LeafFile>),
    /// By a reader ([`Store::open_read_only`]): every write is refused. The
    /// private copy of sled's files it reads is removed when dropped, after
    /// `index` (declared before `access`).
    ReadOnly { _index_copy: tempfile::TempDir },
}

/// How [`Store::with_merkle_log`] reads leaves back, and what it gets.
type LeafReader<'a> = merkle::ReadLeaves<'a, StoreError>;
type MerkleResult<T> = Result<T, BlockLogError<StoreError>>;

/// Journal records re-indexed per batch when catching up (bounds the memory
/// of a full re-index; `indexed_through` advances after each).
const CATCH_UP_BATCH: usize = 50_000;

impl Store {
    /// Opens the store in `dir` (creating it), recovering the journal's torn
    /// tail and bringing the index up to date with the journal. `keys`
    /// gives the trusted key of an instance, for events indexed here.
    pub fn open(
        dir: &Path,
        options: StoreOptions,
        keys: &dyn Fn(&str) -> Option<VerifyingKey>,
    ) -> Result<Store, StoreError> {
        let (journal, recovery) = Journal::open(&dir.join("journal"), options.max_segment_bytes)?;
        let index = Index::open(
            &dir.join("index"),
            &dir.join("journal"),
            options.index_cache_bytes,
            Some(1000),
        )?;
        index.upgrade()?;
        let checkpoint = crate::checkpoint::latest(dir).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the Merkle leaves are not checked against a checkpoint");
            None
        });
        let (leaf_file, leaves) = LeafFile::open(
            &dir.join("index"),
            &dir.join("journal"),
            journal.next_seq(),
            checkpoint.as_ref(),
        )?;
        let store = Store {
            dir: dir.to_owned(),
            journal: Mutex::new(journal),
            index,
            leaves: RwLock::new(leaves),
            access: Access::Writer(Mutex::new(leaf_file)),
            stalled: Mutex::new(None),
            tips: Mutex::new(ChainTips::default()),
            recovery,
        };
        store.catch_up(keys)?;
        store.index.record_format()?;
        Ok(store)
    }

    /// Opens the store in `dir` to read, writing nothing: no file of it is
    /// created, cut, upgraded or touched (bytes and mtimes stay as they
    /// were), and every write fails with [`StoreError::ReadOnly`]. A torn
    /// journal tail is stepped around, not repaired.
    ///
    /// sled writes at every open (it rewrites the unused end of its log
    /// segment, same bytes, new mtime, and may write a snapshot), so this
    /// reads a private index in a temporary directory (0700, removed when
    /// the store is dropped):
    /// - with no writer running, a copy of sled's files, made under a shared
    ///   lock on `index/db`. What a writer's open would do to the index
    ///   (upgrade an older format, index journal records it missed in a
    ///   crash) is done to the copy. It costs a copy of the index (the
    ///   kernel copies: 0.1 s for 400 MB from the page cache on the 2-core
    ///   test machine) and that much temporary space;
    /// - while a writer (the daemon) holds sled's exclusive lock, an index
    ///   built afresh from the journal, which is append-only and safe to
    ///   read while it grows: what the journal held when this opened is
    ///   what this store sees. Indexing costs about what a writer's
    ///   catch-up does per record. What only the writer's index holds and
    ///   the journal does not (exporters' cursors) reads as never set.
    pub fn open_read_only(
        dir: &Path,
        options: StoreOptions,
        keys: &dyn Fn(&str) -> Option<VerifyingKey>,
    ) -> Result<Store, StoreError> {
        let journal = Journal::open_read_only(&dir.join("journal"))?;
        let index_dir = dir.join("index");
        let io = |path: &Path, op: &'static str| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, op, source }
        };
        let copy = tempfile::Builder::new()
            .prefix("intentproof-index-")
            .tempdir()
            .map_err(io(
                &std::env::temp_dir(),
                "create a private copy of the index",
            ))?;
        let db = index_dir.join("db");
        let lock = match std::fs::File::open(&db) {
            Ok(lock) => Some(lock),
            // No index yet: the journal is indexed afresh, as below.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&db, "open")(e)),
        };
        // A writer holds the lock exclusively for as long as it runs; a
        // failed try means one is running (or sled is letting go of it),
        // and its files may change under a copy: index the journal instead.
        if let Some(lock) = lock.filter(|lock| fs2::FileExt::try_lock_shared(lock).is_ok()) {
            for entry in std::fs::read_dir(&index_dir).map_err(io(&index_dir, "list"))? {
                let entry = entry.map_err(io(&index_dir, "list"))?;
                let name = entry.file_name();
                // The Merkle leaves are read in place (below), never by sled.
                if name == crate::leaf_file::LEAVES_FILE || !entry.path().is_file() {
                    continue;
                }
                std::fs::copy(entry.path(), copy.path().join(&name))
                    .map_err(io(&entry.path(), "copy"))?;
            }
            drop(lock);
        }
        let index = Index::open(
            copy.path(),
            &dir.join("journal"),
            options.index_cache_bytes,
            None,
        )?;
        index.upgrade()?;
        let checkpoint = crate::checkpoint::latest(dir).unwrap_or(None);
        let records = journal.next_seq();
        let leaves = LeafFile::read_only(
            &index_dir,
            &dir.join("journal"),
            records,
            checkpoint.as_ref(),
        )?;
        let store = Store {
            dir: dir.to_owned(),
            journal: Mutex::new(journal),
            index,
            leaves: RwLock::new(leaves),
            access: Access::ReadOnly { _index_copy: copy },
            stalled: Mutex::new(None),
            tips: Mutex::new(ChainTips::default()),
            recovery: journal::Recovery {
                records,
                ..journal::Recovery::default()
            },
        };
        store.catch_up(keys)?;
        Ok(store)
    }

    /// Refuses a write to a store opened read-only.
    fn writable(&self) -> Result<(), StoreError> {
        if matches!(self.access, Access::ReadOnly { .. }) {
            return Err(StoreError::ReadOnly(self.dir.clone()));
        }
        Ok(())
    }

    /// What journal recovery did at open.
    pub fn recovery(&self) -> &journal::Recovery {
        &self.recovery
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Indexes journal records the index has not seen (sled flushes lazily,
    /// so after a crash it can be behind the journal).
    fn catch_up(&self, keys: &dyn Fn(&str) -> Option<VerifyingKey>) -> Result<(), StoreError> {
        let journal_dir = self.dir.join("journal");
        let total = self
            .journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_seq();
        let from = self.index.indexed_through()?.min(total);
        if from < total {
            let mut entries = Vec::new();
            let mut failure = None;
            journal::read_between(&journal_dir, from, total, |seq, location, payload| {
                if failure.is_some() {
                    return;
                }
                let indexed = index_entry(seq, location, payload, keys).and_then(|entry| {
                    entries.push(entry);
                    if entries.len() < CATCH_UP_BATCH {
                        return Ok(());
                    }
                    let done = self.index.reindex(&entries);
                    entries.clear();
                    done
                });
                if let Err(e) = indexed {
                    failure = Some(e);
                }
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            if !entries.is_empty() {
                self.index.reindex(&entries)?;
            }
            tracing::info!(records = total - from, "index caught up with the journal");
        }
        Ok(())
    }

    /// Appends a batch: checks each event against its chain (and the events
    /// before it in the batch), writes the accepted ones to the journal with
    /// one `fdatasync`, then indexes them. Per-event results are in input
    /// order; `Err(StoreError)` means nothing of the batch was stored.
    pub fn append(
        &self,
        batch: Vec<Incoming>,
    ) -> Result<Vec<Result<Appended, ChainConflict>>, StoreError> {
        self.writable()?;
        let mut journal = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(why) = self
            .stalled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Err(StoreError::Stalled(why));
        }
        let mut tips = self.tips.lock().unwrap_or_else(PoisonError::into_inner);
        let mut results = Vec::with_capacity(batch.len());
        let mut accepted: Vec<Incoming> = Vec::new();
        // Slots and ids taken earlier in this batch: (instance, corr, pos) -> (id, hash, prev).
        let mut batch_slots: HashMap<(String, String, u64), Slot> = HashMap::new();
        let mut batch_ids: HashMap<String, (String, u64)> = HashMap::new();
        let mut in_batch_duplicates: Vec<(usize, String)> = Vec::new();
        for incoming in batch {
            match chain::check(
                &self.index,
                &incoming.meta,
                &batch_slots,
                &batch_ids,
                &mut tips,
            )? {
                Ok(Some(duplicate_seq)) => {
                    results.push(Ok(Appended::Duplicate { seq: duplicate_seq }))
                }
                Ok(None) => {
                    let m = &incoming.meta;
                    if let Some((hash, _)) = batch_ids.get(&m.event_id)
                        && *hash == m.content_hash
                    {
                        // Re-sent within the same batch: it gets the first copy's seq.
                        in_batch_duplicates.push((results.len(), m.event_id.clone()));
                        results.push(Ok(Appended::Duplicate { seq: u64::MAX }));
                        continue;
                    }
                    batch_slots.insert(
                        (
                            m.instance_id.clone(),
                            m.correlation_id.clone(),
                            m.chain_position,
                        ),
                        (
                            m.event_id.clone(),
                            m.content_hash.clone(),
                            m.prev_event_hash.clone(),
                        ),
                    );
                    batch_ids.insert(
                        m.event_id.clone(),
                        (m.content_hash.clone(), m.chain_position),
                    );
                    results.push(Ok(Appended::Stored { seq: u64::MAX }));
                    accepted.push(incoming);
                }
                Err(conflict) => results.push(Err(conflict)),
            }
        }
        if accepted.is_empty() {
            return Ok(results);
        }
        let payloads: Vec<&[u8]> = accepted.iter().map(|i| i.bytes.as_slice()).collect();
        let (first_seq, locations) = journal.append_located(&payloads)?;
        let mut entries = Vec::with_capacity(accepted.len());
        let mut leaves = Vec::with_capacity(accepted.len());
        // Dropped only once the index holds the entries (or will not):
        // until then a reader of the index would see the chains' old heads.
        let mut holds = Vec::new();
        for ((seq, incoming), location) in (first_seq..).zip(accepted).zip(locations) {
            holds.extend(incoming.hold);
            leaves.push(merkle::leaf_hash(&incoming.bytes));
            entries.push(IndexEntry {
                seq,
                segment: location.segment,
                offset: location.offset,
                len: location.len,
                meta: incoming.meta,
            });
        }
        // The journal holds them now: the Merkle log follows it whatever
        // happens to the index.
        self.leaves
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(leaves.iter().copied());
        if let Access::Writer(file) = &self.access {
            file.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .append(&leaves);
        }
        if let Err(e) = self.index.insert(&entries) {
            tracing::error!(error = %e, first_seq, "journal records written but not indexed; refusing appends until a restart re-indexes them");
            *self.stalled.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
            return Err(e);
        }
        for entry in &entries {
            tips.extend(&entry.meta);
        }
        drop(holds);
        drop(tips);
        drop(journal);
        // Fill in the sequence numbers now known.
        let mut entry_iter = entries.iter();
        for result in results.iter_mut() {
            if let Ok(Appended::Stored { seq }) = result
                && let Some(entry) = entry_iter.next()
            {
                *seq = entry.seq;
            }
        }
        // In-batch duplicates (rare) point at their first copy.
        for (at, event_id) in in_batch_duplicates {
            let first = entries.iter().find(|e| e.meta.event_id == event_id);
            if let (Some(Ok(Appended::Duplicate { seq })), Some(first)) =
                (results.get_mut(at), first)
            {
                *seq = first.seq;
            }
        }
        Ok(results)
    }

    /// Reads the event an index entry points at (for entries from
    /// [`Store::chain_entries`]).
    pub fn read_entry(&self, entry: IndexEntry) -> Result<StoredEvent, StoreError> {
        let bytes = self.raw(&entry)?;
        let event = serde_json::from_slice(&bytes)
            .map_err(|_| StoreError::BadIndex(format!("journal record {}", entry.seq)))?;
        Ok(StoredEvent { entry, event })
    }

    /// The raw bytes of event `seq`, exactly as stored.
    pub fn raw(&self, entry: &IndexEntry) -> Result<Vec<u8>, StoreError> {
        let location = RecordLocation {
            segment: entry.segment,
            offset: entry.offset,
            len: entry.len,
        };
        Ok(journal::read_at(
            &self.dir.join("journal"),
            entry.seq,
            location,
        )?)
    }

    /// One event by id.
    pub fn get(&self, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        match self.index.entry(event_id)? {
            Some(entry) => self.read_entry(entry).map(Some),
            None => Ok(None),
        }
    }

    /// A page of events matching `query`, in journal order.
    pub fn events(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let mut events = Vec::new();
        let mut next_cursor = None;
        let mut visit = |seq: u64| -> Result<ControlFlow<()>, StoreError> {
            let Some((entry, event)) = self.index.stored_at(seq)? else {
                return Ok(ControlFlow::Continue(()));
            };
            let m = &entry.meta;
            let keep = query.action.as_ref().is_none_or(|a| *a == m.action)
                && query.status.as_ref().is_none_or(|s| *s == m.status)
                && query
                    .correlation_id
                    .as_ref()
                    .is_none_or(|c| *c == m.correlation_id)
                && query.since.as_ref().is_none_or(|s| m.completed_at >= *s)
                && query.until.as_ref().is_none_or(|u| m.completed_at < *u);
            if !keep {
                return Ok(ControlFlow::Continue(()));
            }
            if events.len() == limit {
                next_cursor = events.last().map(|e: &StoredEvent| e.entry.seq);
                return Ok(ControlFlow::Break(()));
            }
            events.push(StoredEvent { entry, event });
            Ok(ControlFlow::Continue(()))
        };
        self.index.for_each_candidate(query, &mut visit)?;
        Ok(EventPage {
            events,
            next_cursor,
        })
    }

    /// The events of `correlation_id` stored after seq `after` whose action
    /// is one of `actions`, in seq order, and the highest seq of the
    /// correlation looked at (`after` if there was nothing new). Every
    /// event of the correlation up to that seq was looked at (a commit's
    /// index entries are visible all at once, commits in order), so a
    /// caller that keeps it can ask again after it and read only what is
    /// new: the HTTP proxy follows a correlation's plan this way instead of
    /// re-reading the chain on every call.
    ///
    /// ```
    /// # use intentproof_store::{Store, StoreOptions};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path(), StoreOptions::default(), &|_| None).unwrap();
    /// let (plans, through) = store.correlation_actions_after("c-1", &["intentproof.plan.declare"], None)?;
    /// assert!(plans.is_empty() && through.is_none()); // nothing stored yet
    /// # Ok::<(), intentproof_store::StoreError>(())
    /// ```
    pub fn correlation_actions_after(
        &self,
        correlation_id: &str,
        actions: &[&str],
        after: Option<u64>,
    ) -> Result<(Vec<StoredEvent>, Option<u64>), StoreError> {
        let mut events = Vec::new();
        let mut through = after;
        self.index
            .for_each_stored_of(correlation_id, after, &mut |entry, event| {
                through = through.max(Some(entry.seq));
                if actions.contains(&entry.meta.action.as_str()) {
                    events.push(StoredEvent { entry, event });
                }
                Ok(ControlFlow::Continue(()))
            })?;
        Ok((events, through))
    }

    /// Every event of a correlation, ordered by (instance, position).
    pub fn chain(&self, correlation_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events = Vec::new();
        self.index
            .for_each_stored_of(correlation_id, None, &mut |entry, event| {
                events.push(StoredEvent { entry, event });
                Ok(ControlFlow::Continue(()))
            })?;
        events.sort_by(|a, b| chain_order(&a.entry, &b.entry));
        Ok(events)
    }

    /// The index entries of a correlation's events, ordered by (instance,
    /// position): [`Store::chain`] without keeping the events, for callers
    /// that read them a few at a time ([`Store::read_entry`]) to keep
    /// memory bounded by what they hold, not by the chain. The entries'
    /// facts come from the journal records (index format 3), so such a
    /// caller reads each record twice: the price of the bound.
    pub fn chain_entries(&self, correlation_id: &str) -> Result<Vec<IndexEntry>, StoreError> {
        let mut entries = Vec::new();
        self.index
            .for_each_entry_of(correlation_id, None, &mut |entry| {
                entries.push(entry);
                Ok(ControlFlow::Continue(()))
            })?;
        entries.sort_by(chain_order);
        Ok(entries)
    }

    /// One chain's summary.
    pub fn chain_summary(&self, correlation_id: &str) -> Result<Option<ChainSummary>, StoreError> {
        self.index.summary(correlation_id)
    }

    /// All chain summaries, most recent activity first, at most `limit`.
    pub fn chains(&self, limit: usize) -> Result<Vec<ChainSummary>, StoreError> {
        Ok(self.chains_page(0, limit)?.1)
    }

    /// Chains `offset..offset + limit`, most recent activity first (ties by
    /// correlation id), and how many chains there are.
    ///
    /// Ordering needs only each summary's `last_at`, so that is all that is
    /// decoded for the whole store (no intent lists, no instance maps); only
    /// the page's summaries are decoded in full. On 100,000 chains this is
    /// what keeps a page request from materializing every summary.
    pub fn chains_page(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<ChainSummary>), StoreError> {
        self.index.chains_page(offset, limit)
    }

    /// Re-checks the signatures of an instance's stored events with a newly
    /// trusted key, updating their state and their chains' summaries.
    /// Returns (verified, invalid) counts.
    pub fn retrust(&self, instance_id: &str, key: &VerifyingKey) -> Result<(u64, u64), StoreError> {
        self.writable()?;
        let _writer = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
        self.index.clear_recent_summaries();
        let (mut verified, mut invalid) = (0, 0);
        self.index
            .for_each_entry_of_instance(instance_id, &mut |entry| {
                let stored = self.read_entry(entry.clone())?;
                let state = match intentproof_core::seal::verify_event(&stored.event, key) {
                    Ok(_) => SignatureState::Verified,
                    Err(_) => SignatureState::Invalid,
                };
                match state {
                    SignatureState::Verified => verified += 1,
                    _ => invalid += 1,
                }
                if state == entry.meta.signature {
                    return Ok(ControlFlow::Continue(()));
                }
                self.index.set_signature(entry, state)?;
                Ok(ControlFlow::Continue(()))
            })?;
        Ok((verified, invalid))
    }

    /// The last event of chain (instance, correlation): its position and
    /// content hash. Used to continue a chain after a restart.
    pub fn chain_head(
        &self,
        instance_id: &str,
        correlation_id: &str,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let tip = self.index.chain_tip(instance_id, correlation_id)?;
        Ok(tip.slot.map(|(_, hash, _)| (tip.position, hash)))
    }

    /// An exporter's durable cursor: the next sequence number it must deliver.
    pub fn cursor(&self, exporter: &str) -> Result<u64, StoreError> {
        self.index.cursor(exporter)
    }

    /// Moves an exporter's cursor and flushes it to disk, so delivery
    /// resumes there after a restart (at-least-once: a crash between a
    /// delivery and this call re-delivers).
    pub fn set_cursor(&self, exporter: &str, next_seq: u64) -> Result<(), StoreError> {
        self.writable()?;
        self.index.set_cursor(exporter, next_seq)
    }

    /// The event stored as journal record `seq`.
    pub fn by_seq(&self, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self
            .index
            .stored_at(seq)?
            .map(|(entry, event)| StoredEvent { entry, event }))
    }

    /// Journal records `from..`, each with its index entry and its bytes
    /// exactly as stored, in journal order: at most `max_records`, and no
    /// more once `max_bytes` is reached (at least one record when any is
    /// there). For replication, which copies the signed bytes as stored.
    pub fn raw_records(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(IndexEntry, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for seq in from.. {
            if out.len() >= max_records || (bytes >= max_bytes && !out.is_empty()) {
                break;
            }
            match self.index.raw_at(seq)? {
                Some((entry, raw)) => {
                    bytes += raw.len();
                    out.push((entry, raw));
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// Index entries of every event whose action starts with `prefix`
    /// (e.g. `mcp.`), in journal order.
    pub fn entries_with_action_prefix(&self, prefix: &str) -> Result<Vec<IndexEntry>, StoreError> {
        self.index.entries_with_action_prefix(prefix)
    }

    /// Number of records (Merkle tree size).
    pub fn tree_size(&self) -> u64 {
        self.leaves
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len() as u64
    }

    /// Merkle root over the first `size` records (capped at the number of
    /// records). Reads leaves back only for a size short of the current
    /// one, so it fails only when those cannot be read.
    pub fn root(&self, size: u64) -> Result<Hash, StoreError> {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        self.with_merkle_log(&|log, read| log.root(size, read))
    }

    /// Runs `f` on the Merkle log with a way to read leaves back: from the
    /// leaves file, and if what it gives does not hash to the block roots
    /// kept in memory (a damaged file), again from the journal.
    fn with_merkle_log<T>(
        &self,
        f: &dyn Fn(&BlockLog, LeafReader) -> MerkleResult<T>,
    ) -> Result<T, StoreError> {
        let log = self.leaves.read().unwrap_or_else(PoisonError::into_inner);
        let from_file = |first: usize, out: &mut [Hash]| self.read_leaves(first, out, true);
        let result = match f(&log, &from_file) {
            Err(BlockLogError::Mismatch { first }) => {
                tracing::warn!(
                    first,
                    "the Merkle leaves file disagrees with the log; reading the journal"
                );
                let from_journal =
                    |first: usize, out: &mut [Hash]| self.read_leaves(first, out, false);
                f(&log, &from_journal)
            }
            other => other,
        };
        result.map_err(|e| match e {
            BlockLogError::Read(e) => e,
            other => StoreError::BadIndex(format!("Merkle log: {other}")),
        })
    }

    /// Fills `out` with the Merkle leaves from record `first` on: from the
    /// leaves file if `file` (and the store writes it), else, or if that
    /// fails, hashed from the journal.
    fn read_leaves(&self, first: usize, out: &mut [Hash], file: bool) -> Result<(), StoreError> {
        if let (true, Access::Writer(leaves)) = (file, &self.access) {
            let leaves = leaves.lock().unwrap_or_else(PoisonError::into_inner);
            match leaves.read_at(first, out) {
                Ok(()) => return Ok(()),
                Err(e) => tracing::warn!(error = %e, first, "Merkle leaves read from the journal"),
            }
        }
        let mut filled = 0;
        let end = (first + out.len()) as u64;
        journal::read_between(
            &self.dir.join("journal"),
            first as u64,
            end,
            |_, _, payload| {
                if let Some(leaf) = out.get_mut(filled) {
                    *leaf = merkle::leaf_hash(payload);
                }
                filled += 1;
            },
        )?;
        if filled != out.len() {
            return Err(StoreError::BadIndex(format!(
                "Merkle leaves {first}..{end}: the journal holds {filled} of them"
            )));
        }
        Ok(())
    }

    /// Inclusion proof of record `seq` in the tree of the first `size`
    /// records.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let index = usize::try_from(seq).unwrap_or(usize::MAX);
        self.with_merkle_log(&|log, read| log.inclusion_proof(index, size, read))
            .map_err(|e| match e {
                StoreError::BadIndex(why) => {
                    StoreError::BadIndex(format!("inclusion proof of record {seq}: {why}"))
                }
                other => other,
            })
    }

    /// The RFC 6962 consistency proof from the first `old_size` records to
    /// the first `size` (`GET /v1/consistency`, witnesses). The caller
    /// checks `old_size <= size <= tree_size()`; sizes outside are an
    /// error, never a proof of other sizes.
    pub fn consistency_proof(&self, old_size: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        let tree = self.tree_size();
        if size > tree || old_size > size {
            return Err(StoreError::BadIndex(format!(
                "no consistency proof from size {old_size} to {size} in a tree of {tree}"
            )));
        }
        let (old, new) = (old_size as usize, size as usize);
        self.with_merkle_log(&|log, read| log.consistency_proof(old, new, read))
    }

    /// Empties the caches kept for ingest throughput (chain tips and
    /// recently written chain summaries) and gives their memory back: for
    /// a daemon gone idle. Safe at any time: both only ever hold what the
    /// index holds (they are filled under the writer's lock after the index
    /// write), so the next append reads what it needs from the index.
    pub fn release_caches(&self) {
        let _writer = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
        *self.tips.lock().unwrap_or_else(PoisonError::into_inner) = ChainTips::default();
        self.index.release_recent_summaries();
    }

    /// How many chain tips and chain summaries the caches of
    /// [`Store::release_caches`] hold now.
    pub fn cached_chains(&self) -> (usize, usize) {
        let _writer = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
        let tips = self
            .tips
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        let summaries = self.index.recent_summaries_len();
        (tips, summaries)
    }

    /// Flushes the index to disk (the journal is always durable).
    pub fn flush(&self) -> Result<(), StoreError> {
        if matches!(self.access, Access::ReadOnly { .. }) {
            return Ok(());
        }
        self.index.flush()
    }
}

/// The order of a chain's events: by instance, then position.
fn chain_order(a: &IndexEntry, b: &IndexEntry) -> std::cmp::Ordering {
    (&a.meta.instance_id, a.meta.chain_position).cmp(&(&b.meta.instance_id, b.meta.chain_position))
}

/// The index entry of journal record `seq` (catch-up and rebuild).
fn index_entry(
    seq: u64,
    location: RecordLocation,
    payload: &[u8],
    keys: &dyn Fn(&str) -> Option<VerifyingKey>,
) -> Result<IndexEntry, StoreError> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| StoreError::BadRecord {
        seq,
        source: MetaError::Canon(e.to_string()),
    })?;
    let instance = value
        .get("instance_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let key = keys(instance);
    let meta = EventMeta::from_v1_lenient(&value, key.as_ref())
        .map_err(|source| StoreError::BadRecord { seq, source })?;
    Ok(IndexEntry {
        seq,
        segment: location.segment,
        offset: location.offset,
        len: location.len,
        meta,
    })
}
