//! The durable local outbox ([`Durability::Local`](crate::Durability)):
//! every event is on disk before the wrapped call returns, and reaches the
//! exporters afterwards, from disk, until they have it.
//!
//! Layout of the outbox directory (0700; every file 0600):
//!
//! ```text
//! journal/       the events, in the order they were sealed: intentproof-journal
//!                segments (CRC-checked records, preallocated, fdatasync'd)
//! cursor         decimal: every record below this sequence number was delivered
//! refused.ndjson events an exporter refused for good (a 4xx for that line), kept
//! lock           held (flock) by the one process using the outbox
//! ```
//!
//! A record is one byte of kind, then JSON: `c` + the RFC 8785 canonical
//! form of the event's `intentproof.event.v1` object, chained but not yet
//! signed (with a signer: [`Sealer::chain_only`]; delivery signs it with
//! [`Sealer::sign_chained`]), or `e` + the event's camelCase form (without
//! a signer). (`v`, a signed v1 object, is read too.)
//!
//! **Why sign at delivery.** The chain's order and every hash are fixed
//! before the record is written (the chain link needs the previous
//! event's content hash, not its signature), and Ed25519 signing
//! (~19 us) was most of the work each caller did while the others waited
//! for the next commit. A crash before delivery loses nothing: the next
//! process signs the record with the same instance's key (a record chained
//! for another instance is refused, kept in `refused.ndjson`).
//!
//! **Group commit.** The first caller to find no commit under way writes
//! every record queued so far in one append and one `fdatasync`, then wakes
//! the callers whose records it wrote; callers arriving meanwhile queue for
//! the next commit. One thread pays one `fdatasync` per call; eight threads
//! share one between them. Segments are preallocated with zeros, so a
//! commit changes neither the file's size nor its block map and
//! `fdatasync` writes only the data (intentproof-journal, "Preallocation").
//!
//! A leader waits up to [`JOIN_WAIT`] for as many records as the last
//! commit held (8 threads: 4.2 records per `fdatasync` without, ~6 with;
//! ~23,000 -> ~27,000 events/s). A lone caller's last commit held only its
//! own record, so it never waits; a burst after a busy spell may wait up
//! to 100 us once.
//!
//! **Wake-ups.** A caller waiting for a commit parks; the leader that ends
//! the commit hands each of its callers the outcome and unparks it, and
//! unparks one caller of the next commit to lead it. Nobody else wakes, and
//! a woken caller returns without taking the commits lock again; the
//! leader waiting to commit is woken only once it would stop waiting.
//! With one condvar for all (every waiter woken at each commit's end, all
//! queueing on the lock again, the leader woken at every record), 8
//! threads made 2.1-2.2 voluntary context switches per call; now 1.3
//! (BENCHMARKS.md, "Library mode").
//!
//! Tried and dropped (8 threads, this machine): letting a second commit
//! write and `fdatasync` while the first one's flush runs gave 14,700
//! events/s instead of 18,000 (two flushes in flight each take twice as
//! long).
//!
//! **Order.** A chain's events must reach the daemon in chain order, or the
//! daemon refuses the later one as a fork. Sealing (which picks the chain
//! position) and queueing happen under one of [`ORDER_STRIPES`] locks chosen
//! by correlation id, so a chain's records are in the journal in chain
//! order; distinct chains still seal in parallel.
//!
//! **Delivery.** A task on the client's delivery thread reads the records
//! from the cursor on, hands them to every exporter
//! ([`Exporter::export_batch`](crate::Exporter::export_batch)), and moves
//! the cursor only when all of them succeeded; on failure it waits (with
//! backoff) and tries the same records again. Delivery is at least once:
//! a crash between delivery and the cursor's update sends records again,
//! which the IntentProof daemon answers as duplicates (it keys events by
//! id). Delivered segments are deleted.
//!
//! What it does not do: share one outbox between processes (the lock
//! refuses a second one), or carry a chain across a restart: a new process
//! starts new chains, so give each run its own correlation ids.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use futures_util::FutureExt;
use intentproof_core::backoff::Backoff;

use crate::exporter::{ExportError, Exporter};

use fs2::FileExt;
use intentproof_core::ExecutionEvent;
use intentproof_core::private_file::create_private_dir;
use intentproof_core::seal::{Chained, Sealer};
use intentproof_journal::{Journal, JournalOptions};
use serde_json::{Map, Value};

/// Locks that keep one chain's seal-and-queue steps in order.
pub(crate) const ORDER_STRIPES: usize = 64;
/// Most records handed to the exporters at once.
pub(crate) const MAX_DELIVERY_RECORDS: usize = 1_000;
/// Most bytes handed to the exporters at once (the daemon takes 16 MiB).
pub(crate) const MAX_DELIVERY_BYTES: usize = 8 * 1024 * 1024;
/// Segment size: delivered segments are deleted whole, so keep them small.
const SEGMENT_BYTES: u64 = 1024 * 1024;
/// Preallocation step of the active segment.
const PREALLOCATE_BYTES: u64 = 1024 * 1024;

/// Longest a commit waits for callers that are sealing their record, or
/// for as many records as the last commit held (chaining a record takes
/// ~10 us; an fdatasync ~120 us).
const JOIN_WAIT: Duration = Duration::from_micros(100);

/// How long delivery lets new records gather before sending them. Each
/// delivery's file work (cursor rename, segment deletes) lands in the
/// filesystem journal that the callers' commits flush: delivering after
/// every commit took single-threaded p50 from 144 to 212 us, every 20 ms
/// still cost 70 us, every 200 ms costs ~10 us.
const GATHER: Duration = Duration::from_millis(200);

/// A chained, not yet signed v1 event ([`Sealer::chain_only`]): signed
/// when it is delivered, off the caller's path.
const KIND_CHAINED: u8 = b'c';
/// A signed v1 event.
const KIND_V1: u8 = b'v';
const KIND_EVENT: u8 = b'e';

/// Why the outbox could not be opened or could not keep an event.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboxError {
    /// Another process holds the outbox.
    #[error("outbox {0} is in use by another process; give each process its own outbox directory")]
    InUse(PathBuf),
    /// A file operation failed.
    #[error("outbox {path}: {op}: {reason}")]
    Io {
        /// File or directory concerned.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS's or the journal's description.
        reason: String,
    },
    /// The event could not be written durably; the wrapped call did run.
    #[error("event {event_id} was not made durable: {reason}")]
    NotDurable {
        /// The event concerned.
        event_id: String,
        /// What failed.
        reason: String,
    },
}

fn io_error<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> OutboxError + 'a {
    move |e| OutboxError::Io {
        path: path.to_owned(),
        op,
        reason: e.to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every guarded state is updated in one step after the fallible work:
    // a panic elsewhere cannot leave it half-written.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records waiting for a commit, and what the commits did.
#[derive(Default)]
struct Commits {
    queue: Vec<Vec<u8>>,
    next_ticket: u64,
    /// Every ticket below this was committed (or failed).
    finished: u64,
    committing: bool,
    /// Callers between [`Outbox::begin`] and [`Outbox::enqueue`] (sealing).
    sealing: usize,
    /// A leader waits on `queued` for them.
    leader_waiting: bool,
    /// Records in the last commit: how many a leader waits (briefly) for.
    last_batch: usize,
    /// Callers parked until their record's commit is done (at most one
    /// per thread).
    parked: Vec<Arc<Parked>>,
    /// Why a ticket's commit failed, for callers that were not parked when
    /// it ended; each takes its own.
    failures: std::collections::HashMap<u64, String>,
}

/// A caller parked in [`Outbox::wait_durable`]. The leader that ends its
/// commit sets `outcome` and unparks it, so the woken caller returns
/// without taking the commits lock: with a condvar, every caller of a
/// commit woke at once and queued on that lock again (a context switch
/// more per call).
struct Parked {
    ticket: u64,
    thread: std::thread::Thread,
    /// Set, then the thread unparked, when it should look again.
    woken: AtomicBool,
    /// Its commit's outcome; unset when it was woken to lead the next
    /// commit instead.
    outcome: OnceLock<Result<(), String>>,
}

/// Where delivery stands, for `flush`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Records below this sequence number were delivered.
    pub(crate) delivered: u64,
    /// Delivery attempts that failed so far.
    pub(crate) failed_attempts: u64,
}

/// One record read back for delivery.
pub(crate) struct Stored {
    pub(crate) seq: u64,
    /// The event, or why it could not be decoded and the record as
    /// written ([`as_written`]).
    pub(crate) event: Result<ExecutionEvent, (String, Value)>,
}

pub(crate) struct Outbox {
    dir: PathBuf,
    journal_dir: PathBuf,
    journal: Mutex<Journal>,
    commits: Mutex<Commits>,
    /// Tells a leader waiting for sealing callers that it can commit.
    queued: Condvar,
    order: Vec<Mutex<()>>,
    /// Journal records that are on disk (its `next_seq` after the last commit).
    durable: AtomicU64,
    pub(crate) progress: tokio::sync::watch::Sender<Progress>,
    /// Wakes the delivery task after a commit.
    pub(crate) appended: tokio::sync::Notify,
    /// Cuts the delivery task's gathering short (`flush` is waiting).
    urgent: tokio::sync::Notify,
    /// The flock that keeps other processes out, held until the client
    /// that opened the outbox is dropped ([`Outbox::close`]).
    lock: Mutex<Option<File>>,
    closed: AtomicBool,
    /// Held while delivery changes the cursor or deletes segments.
    files: Mutex<()>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("dir", &self.dir).finish()
    }
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`, repairing a torn journal tail.
    pub(crate) fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        create_private_dir(dir).map_err(io_error(dir, "create outbox directory"))?;
        let lock_path = dir.join("lock");
        let lock_file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_error(&lock_path, "open lock file"))?;
        if lock_file.try_lock_exclusive().is_err() {
            return Err(OutboxError::InUse(dir.to_owned()));
        }
        let journal_dir = dir.join("journal");
        create_private_dir(&journal_dir).map_err(io_error(&journal_dir, "create journal"))?;
        let (journal, recovery) = Journal::open_with(
            &journal_dir,
            &JournalOptions {
                max_segment_bytes: SEGMENT_BYTES,
                preallocate_bytes: PREALLOCATE_BYTES,
            },
        )
        .map_err(|e| OutboxError::Io {
            path: journal_dir.clone(),
            op: "open journal",
            reason: e.to_string(),
        })?;
        let delivered = read_cursor(dir)?.min(recovery.records);
        let base = intentproof_journal::pruned_base(&journal_dir).map_err(|e| OutboxError::Io {
            path: journal_dir.clone(),
            op: "read pruned base",
            reason: e.to_string(),
        })?;
        let (progress, _) = tokio::sync::watch::channel(Progress {
            delivered: delivered.max(base),
            failed_attempts: 0,
        });
        Ok(Outbox {
            dir: dir.to_owned(),
            journal_dir,
            durable: AtomicU64::new(journal.next_seq()),
            journal: Mutex::new(journal),
            commits: Mutex::new(Commits::default()),
            queued: Condvar::new(),
            order: (0..ORDER_STRIPES).map(|_| Mutex::new(())).collect(),
            progress,
            appended: tokio::sync::Notify::new(),
            urgent: tokio::sync::Notify::new(),
            lock: Mutex::new(Some(lock_file)),
            closed: AtomicBool::new(false),
            files: Mutex::new(()),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lets the outbox go when its client is dropped: delivery stops
    /// changing files and the lock is released at once, so a new client
    /// (in this process or another) can open the directory. (The delivery
    /// thread notices the dropped client later.)
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.appended.notify_one();
        // The cursor or prune step under way finishes before the lock goes.
        let _files = lock(&self.files);
        lock(&self.lock).take();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Records on disk so far.
    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// The lock that orders the chain of `correlation`: hold it from
    /// sealing until [`Outbox::enqueue`] returned.
    pub(crate) fn order_lock(&self, correlation: &str) -> MutexGuard<'_, ()> {
        // FNV-1a: stable, cheap, good enough to spread ids over stripes.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in correlation.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        lock(&self.order[(hash % ORDER_STRIPES as u64) as usize])
    }

    /// Announces a record about to be sealed and queued: a commit starting
    /// meanwhile waits a little for it (see [`Outbox::wait_durable`]).
    /// Dropping the guard without [`Outbox::enqueue`] withdraws it.
    pub(crate) fn begin(&self) -> Sealing<'_> {
        lock(&self.commits).sealing += 1;
        Sealing { outbox: self }
    }

    /// Queues a chained v1 event (`Some`: [`Sealer::chain_only`]'s, signed
    /// at delivery) or an unsealed one; returns its ticket for
    /// [`Outbox::wait_durable`].
    pub(crate) fn enqueue(
        &self,
        sealing: Sealing<'_>,
        chained: Option<&Chained>,
        event: &ExecutionEvent,
    ) -> Result<u64, String> {
        let record = match chained {
            // The canonical bytes are JSON already: no second serialization.
            Some(chained) => {
                let mut record = Vec::with_capacity(1 + chained.canonical.len());
                record.push(KIND_CHAINED);
                record.extend_from_slice(&chained.canonical);
                record
            }
            None => {
                let mut record = Vec::with_capacity(1024);
                record.push(KIND_EVENT);
                serde_json::to_writer(&mut record, event)
                    .map_err(|e| format!("the event could not be serialized: {e}"))?;
                record
            }
        };
        std::mem::forget(sealing);
        let mut commits = lock(&self.commits);
        commits.sealing -= 1;
        let ticket = commits.next_ticket;
        commits.next_ticket += 1;
        commits.queue.push(record);
        self.wake_leader_if_ready(&commits);
        Ok(ticket)
    }

    /// Wakes a leader waiting to commit once it would stop waiting (nobody
    /// sealing, as many records queued as the last commit held): waking it
    /// at every record cost a context switch per call.
    fn wake_leader_if_ready(&self, commits: &Commits) {
        if commits.leader_waiting && !leader_should_wait(commits) {
            self.queued.notify_one();
        }
    }

    /// Blocks until the record of `ticket` is on disk (committing it, and
    /// every other queued record, when no commit is under way).
    pub(crate) fn wait_durable(&self, ticket: u64) -> Result<(), String> {
        let mut commits = lock(&self.commits);
        loop {
            if commits.finished > ticket {
                return match commits.failures.remove(&ticket) {
                    Some(reason) => Err(reason),
                    None => Ok(()),
                };
            }
            if commits.committing {
                // Parked until the leader of the commit under way (or of the
                // next one) wakes this caller with its outcome, or hands it
                // the lead of the next commit.
                let parked = Arc::new(Parked {
                    ticket,
                    thread: std::thread::current(),
                    woken: AtomicBool::new(false),
                    outcome: OnceLock::new(),
                });
                commits.parked.push(Arc::clone(&parked));
                drop(commits);
                while !parked.woken.load(Ordering::Acquire) {
                    std::thread::park();
                }
                if let Some(outcome) = parked.outcome.get() {
                    return outcome.clone();
                }
                commits = lock(&self.commits);
                continue;
            }
            commits.committing = true;
            // Callers sealing right now, and the callers of the last commit
            // (back with their next call, in a busy process), would
            // otherwise wait for this commit and then pay one of their own:
            // wait (at most JOIN_WAIT) until as many records as the last
            // commit had are queued and nobody is sealing. A lone caller
            // never waits here (its last commit held one record: its own).
            let deadline = std::time::Instant::now() + JOIN_WAIT;
            while leader_should_wait(&commits) {
                let now = std::time::Instant::now();
                if now >= deadline {
                    break;
                }
                commits.leader_waiting = true;
                commits = self
                    .queued
                    .wait_timeout(commits, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                commits.leader_waiting = false;
            }
            let batch = std::mem::take(&mut commits.queue);
            commits.last_batch = batch.len();
            let first = commits.finished;
            drop(commits);
            let appended = {
                let mut journal = lock(&self.journal);
                let appended = journal
                    .append(&batch)
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                self.durable.store(journal.next_seq(), Ordering::Release);
                appended
            };
            let mut commits = lock(&self.commits);
            let finished = first + batch.len() as u64;
            commits.finished = finished;
            commits.committing = false;
            // This commit's parked callers get its outcome; every other
            // ticket of it (the leader's own, callers not parked yet) is
            // answered from `failures` when it failed.
            let mut wake = Vec::new();
            commits.parked.retain(|parked| {
                if parked.ticket >= finished {
                    return true;
                }
                let _ = parked.outcome.set(appended.clone());
                wake.push(Arc::clone(parked));
                false
            });
            if let Err(reason) = &appended {
                for failed in (first..finished).filter(|t| *t != ticket) {
                    if !wake.iter().any(|parked| parked.ticket == failed) {
                        commits.failures.insert(failed, reason.clone());
                    }
                }
            }
            // One caller of the next commit leads it; the others stay
            // parked until it is done.
            if !commits.queue.is_empty() && !commits.parked.is_empty() {
                wake.push(commits.parked.remove(0));
            }
            drop(commits);
            for parked in wake {
                parked.woken.store(true, Ordering::Release);
                parked.thread.unpark();
            }
            self.appended.notify_one();
            // The leader's own record was queued, so it was in the batch.
            return appended;
        }
    }

    /// Up to [`MAX_DELIVERY_RECORDS`] records from `from` on (fewer when
    /// [`MAX_DELIVERY_BYTES`] is reached), read from disk.
    /// Chained records are signed here, by `signer`.
    pub(crate) fn read(&self, from: u64, signer: Option<&Sealer>) -> Result<Vec<Stored>, String> {
        let until = self.durable().min(from + MAX_DELIVERY_RECORDS as u64);
        let mut records = Vec::new();
        let mut bytes = 0usize;
        if from >= until {
            return Ok(records);
        }
        intentproof_journal::read_between(&self.journal_dir, from, until, |seq, _, payload| {
            if bytes >= MAX_DELIVERY_BYTES {
                return;
            }
            bytes += payload.len();
            records.push(Stored {
                seq,
                event: decode(payload, signer).map_err(|reason| (reason, as_written(payload))),
            });
        })
        .map_err(|e| e.to_string())?;
        Ok(records)
    }

    /// Notes that every record below `next` was delivered: the cursor file,
    /// then the segments wholly before it.
    pub(crate) fn delivered(&self, next: u64) -> Result<(), OutboxError> {
        // Keeps `close` waiting until this is done.
        let _files = lock(&self.files);
        if self.is_closed() {
            return Ok(());
        }
        let path = self.dir.join("cursor");
        write_cursor(&path, next).map_err(io_error(&path, "write cursor"))?;
        intentproof_journal::prune_before(&self.journal_dir, next).map_err(|e| {
            OutboxError::Io {
                path: self.journal_dir.clone(),
                op: "delete delivered segments",
                reason: e.to_string(),
            }
        })?;
        self.progress.send_modify(|p| p.delivered = next);
        Ok(())
    }

    /// Keeps events an exporter refused for good in `refused.ndjson`.
    /// `lines`: (sequence number, the event as a `POST /v1/events` body, or
    /// the record as written when it could not be read back, why).
    pub(crate) fn keep_refused(&self, lines: &[(u64, Value, String)]) -> Result<(), OutboxError> {
        if lines.is_empty() {
            return Ok(());
        }
        let path = self.dir.join("refused.ndjson");
        let mut file = private_options()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_error(&path, "open"))?;
        let mut text = String::new();
        for (seq, event, reason) in lines {
            text.push_str(
                &serde_json::json!({"seq": seq, "reason": reason, "event": event}).to_string(),
            );
            text.push('\n');
        }
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(io_error(&path, "append"))
    }

    pub(crate) fn failed_attempt(&self) {
        self.progress.send_modify(|p| p.failed_attempts += 1);
    }

    /// Completes when every record on disk now has been delivered, or a
    /// delivery attempt failed (and was reported) meanwhile.
    pub(crate) async fn wait_delivered(&self) {
        let target = self.durable();
        let mut progress = self.progress.subscribe();
        let failed = progress.borrow().failed_attempts;
        self.urgent.notify_one();
        let _ = progress
            .wait_for(|p| p.delivered >= target || p.failed_attempts > failed)
            .await;
    }
}

/// Where delivery sends records: the client's current exporters, and
/// where their failures are reported. (A trait, so the outbox does not
/// depend on the client that owns it.)
pub(crate) trait Destinations: Send + Sync {
    /// The exporters in effect now.
    fn exporters(&self) -> Vec<Arc<dyn Exporter>>;
    /// Tells `on_exporter_error`.
    fn report(&self, exporter: &str, error: &ExportError, event_id: Option<&str>);
    /// Signs chained records.
    fn signer(&self) -> Option<Arc<Sealer>>;
}

/// The delivery task of `outbox`: runs on the client's delivery thread
/// until the client is dropped.
pub(crate) async fn deliver(client: Weak<dyn Destinations>, outbox: Arc<Outbox>) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        if outbox.is_closed() {
            return;
        }
        let from = outbox.progress.borrow().delivered;
        if from >= outbox.durable() {
            let appended = outbox.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if from >= outbox.durable() {
                appended.await;
                // Let records gather: one delivery (read, send, cursor)
                // per GATHER rather than per commit, unless `flush` waits.
                tokio::select! {
                    () = tokio::time::sleep(GATHER) => {}
                    () = outbox.urgent.notified() => {}
                }
            }
            continue;
        }
        if client.strong_count() == 0 {
            return;
        }
        match deliver_once(&outbox, &client, from).await {
            Ok(()) => backoff.reset(),
            Err((exporter, error)) => {
                if let Some(settings) = client.upgrade() {
                    settings.report(&exporter, &error, None);
                }
                outbox.failed_attempt();
                tokio::time::sleep(backoff.next_wait(None)).await;
            }
        }
    }
}

/// Runs `work` on the blocking pool (file I/O must not stall the delivery
/// thread's other exports).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, (String, ExportError)> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(reason)) => Err(("outbox".to_owned(), ExportError::Other(reason))),
        Err(e) => Err((
            "outbox".to_owned(),
            ExportError::Other(format!("outbox task failed: {e}")),
        )),
    }
}

/// Delivers the records from `from` on (one batch) to every exporter and
/// moves the cursor past them.
///
/// The client is held (upgraded from `client`) only while its settings are
/// read, never across an await: a dropped client must release its outbox
/// at once (`Outbox::close`), also while a delivery is sent or backs off.
async fn deliver_once(
    outbox: &Arc<Outbox>,
    client: &Weak<dyn Destinations>,
    from: u64,
) -> Result<(), (String, ExportError)> {
    let gone = || {
        (
            "outbox".to_owned(),
            ExportError::Other("the client was dropped".into()),
        )
    };
    let records = {
        let outbox = Arc::clone(outbox);
        let signer = client.upgrade().ok_or_else(gone)?.signer();
        blocking(move || outbox.read(from, signer.as_deref())).await?
    };
    let Some(next) = records.last().map(|r| r.seq + 1) else {
        return Ok(());
    };
    let mut seqs = Vec::with_capacity(records.len());
    let mut events = Vec::with_capacity(records.len());
    let mut refused = Vec::new();
    for record in records {
        match record.event {
            Ok(event) => {
                seqs.push(record.seq);
                events.push(event);
            }
            Err((reason, written)) => refused.push((
                record.seq,
                written,
                format!("outbox: the record could not be read back: {reason}"),
            )),
        }
    }
    let events: Arc<[ExecutionEvent]> = events.into();
    let exporters = client.upgrade().ok_or_else(gone)?.exporters();
    let deliveries = exporters.iter().map(|exporter| {
        let started = catch_unwind(AssertUnwindSafe(|| {
            exporter.export_batch(Arc::clone(&events))
        }));
        async move {
            let result = match started {
                Ok(future) => AssertUnwindSafe(future)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Err(ExportError::Other("exporter panicked".into()))),
                Err(_) => Err(ExportError::Other("exporter panicked".into())),
            };
            (exporter.name().to_owned(), result)
        }
    });
    for (name, result) in futures_util::future::join_all(deliveries).await {
        let delivery = result.map_err(|error| (name.clone(), error))?;
        for (index, reason) in delivery.refused {
            let (Some(seq), Some(event)) = (seqs.get(index), events.get(index)) else {
                continue;
            };
            if let Some(settings) = client.upgrade() {
                settings.report(
                    &name,
                    &ExportError::Other(format!(
                        "refused for good ({reason}); kept in {}",
                        outbox.dir().join("refused.ndjson").display()
                    )),
                    Some(&event.id),
                );
            }
            refused.push((*seq, ingest_body(event), format!("{name}: {reason}")));
        }
    }
    let outbox = Arc::clone(outbox);
    blocking(move || {
        outbox.keep_refused(&refused).map_err(|e| e.to_string())?;
        outbox.delivered(next).map_err(|e| e.to_string())
    })
    .await
}

/// Whether a leader about to commit waits (at most [`JOIN_WAIT`]) for more
/// records: while callers are sealing theirs, or fewer records are queued
/// than the last commit held.
fn leader_should_wait(commits: &Commits) -> bool {
    commits.sealing > 0 || commits.queue.len() < commits.last_batch
}

/// A record announced by [`Outbox::begin`]; see there.
pub(crate) struct Sealing<'a> {
    outbox: &'a Outbox,
}

impl Drop for Sealing<'_> {
    fn drop(&mut self) {
        let mut commits = lock(&self.outbox.commits);
        commits.sealing -= 1;
        self.outbox.wake_leader_if_ready(&commits);
    }
}

/// `event` as a body `POST /v1/events` takes, to send it again once the
/// cause of its refusal is fixed: the signed `intentproof.event.v1` object
/// for a sealed event, else the `{"intentproof":"1","event":{...}}`
/// envelope.
fn ingest_body(event: &ExecutionEvent) -> Value {
    if event.signature.is_some() {
        Value::Object(intentproof_core::v1::to_v1(event))
    } else {
        crate::envelope(event)
    }
}

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Replaces the cursor file (0600): a temporary file beside it, renamed.
/// Not fsync'd: an fsync here would queue behind (and delay) the commits
/// callers wait for, and a cursor that a crash rolls back (or leaves
/// empty) only sends delivered records again, which the daemon answers as
/// duplicates.
fn write_cursor(path: &Path, next: u64) -> io::Result<()> {
    let tmp = path.with_file_name(".cursor.tmp");
    let mut file = private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(next.to_string().as_bytes())?;
    fs::rename(&tmp, path)
}

/// The cursor; 0 (deliver everything still in the journal) when it is
/// missing or unreadable, e.g. left empty by a crash.
fn read_cursor(dir: &Path) -> Result<u64, OutboxError> {
    let path = dir.join("cursor");
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(
                cursor = %path.display(),
                "outbox cursor unreadable ({:?}): delivering every record still in the journal again",
                text.trim()
            );
            0
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_error(&path, "read cursor")(e)),
    }
}

/// A record that could not be read back, for `refused.ndjson`: its JSON
/// (without the kind byte) when it parses, else its text.
fn as_written(payload: &[u8]) -> Value {
    payload
        .split_first()
        .and_then(|(_, json)| serde_json::from_slice(json).ok())
        .unwrap_or_else(|| Value::String(String::from_utf8_lossy(payload).into_owned()))
}

fn decode(payload: &[u8], signer: Option<&Sealer>) -> Result<ExecutionEvent, String> {
    let from_v1 = |v1: &Value| intentproof_core::v1::from_v1(v1).map_err(|e| e.to_string());
    match payload.split_first() {
        Some((&KIND_CHAINED, json)) => {
            let map =
                serde_json::from_slice::<Map<String, Value>>(json).map_err(|e| e.to_string())?;
            let signer = signer.ok_or(
                "the record was chained to be signed, and the client has no signer now: configure the signer it was written with",
            )?;
            let sealed = signer
                .sign_canonical(map, json)
                .map_err(|e| e.to_string())?;
            from_v1(&sealed.event)
        }
        Some((&KIND_V1, json)) => serde_json::from_slice::<Value>(json)
            .map_err(|e| e.to_string())
            .and_then(|v1| from_v1(&v1)),
        Some((&KIND_EVENT, json)) => serde_json::from_slice(json).map_err(|e| e.to_string()),
        Some((kind, _)) => Err(format!("unknown record kind {kind:#04x}")),
        None => Err("empty record".to_owned()),
    }
}

/// The outbox a client uses, shared by configurations naming the same
/// directory (only one may hold its lock).
#[derive(Default)]
pub(crate) struct Outboxes {
    open: Mutex<Vec<Arc<Outbox>>>,
}

impl Drop for Outboxes {
    fn drop(&mut self) {
        for outbox in lock(&self.open).iter() {
            outbox.close();
        }
    }
}

impl Outboxes {
    /// The open outbox for `dir`, opening it on first use. Returns whether
    /// it was opened now (its delivery task must then be started).
    pub(crate) fn get(&self, dir: &Path) -> Result<(Arc<Outbox>, bool), OutboxError> {
        let mut open = lock(&self.open);
        if let Some(found) = open.iter().find(|o| o.dir() == dir) {
            return Ok((Arc::clone(found), false));
        }
        let outbox = Arc::new(Outbox::open(dir)?);
        open.push(Arc::clone(&outbox));
        Ok((outbox, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Callers of many commits, some of which fail (a record over the
    /// journal's 16 MiB limit fails its whole commit): each caller gets the
    /// outcome of the commit that held its record, and afterwards nothing
    /// is left behind (no parked caller, no unclaimed failure).
    #[test]
    fn every_caller_gets_its_commits_outcome_and_nothing_is_left_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = Arc::new(Outbox::open(&tmp.path().join("outbox")).unwrap());
        let huge = serde_json::Value::String("x".repeat(17 << 20));
        let (done, finished) = std::sync::mpsc::channel();
        for thread in 0..8u64 {
            let outbox = Arc::clone(&outbox);
            let huge = huge.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                for call in 0..40u64 {
                    let too_large = call % 13 == 5;
                    let output = if too_large {
                        huge.clone()
                    } else {
                        serde_json::json!(thread * 100 + call)
                    };
                    let event = ExecutionEvent::builder("i", "test.outbox")
                        .output(output)
                        .build();
                    let ticket = outbox.enqueue(outbox.begin(), None, &event).unwrap();
                    outcomes.push((too_large, outbox.wait_durable(ticket)));
                }
                let _ = done.send(outcomes);
            });
        }
        drop(done);
        let mut outcomes = Vec::new();
        for _ in 0..8 {
            // A caller parked for good would hang here: fail instead.
            outcomes.extend(
                finished
                    .recv_timeout(Duration::from_secs(120))
                    .expect("a caller was never woken"),
            );
        }
        let written = outcomes.iter().filter(|(_, o)| o.is_ok()).count() as u64;
        assert!(
            outcomes
                .iter()
                .all(|(too_large, outcome)| !too_large || outcome.is_err())
        );
        for (_, outcome) in &outcomes {
            if let Err(reason) = outcome {
                assert!(
                    reason.contains("larger than the journal's limit"),
                    "{reason}"
                );
            }
        }
        assert_eq!(outbox.durable(), written);
        let commits = lock(&outbox.commits);
        assert!(commits.parked.is_empty());
        assert!(commits.failures.is_empty(), "{:?}", commits.failures.keys());
        assert!(commits.queue.is_empty() && !commits.committing);
        assert_eq!(commits.finished, 8 * 40);
    }
}
