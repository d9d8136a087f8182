//! The group-commit writer: one thread owns appends to the store. Ingest
//! hands it events (one, or a batch request's worth) through a bounded
//! queue; it takes everything waiting (up to about [`MAX_BATCH`] events),
//! appends it with one `fdatasync`, and only then answers each waiting
//! request. Under load many requests share one fsync;
//! at rest each waits for its own.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use intentproof_store::{Appended, ChainConflict, Incoming, Store};
use tokio::sync::{Notify, oneshot};

use crate::metrics::Metrics;

/// A commit stops taking queued jobs once it holds this many events (a
/// batch job is never split, so a commit can hold more).
pub const MAX_BATCH: usize = 4096;

/// After this long with nothing to commit, the writer empties the store's
/// chain tip and summary caches ([`Store::release_caches`]): they speed up
/// a busy writer, and an idle daemon should give their memory back (up to
/// tens of MiB after 100,000 chains).
pub const RELEASE_CACHES_AFTER: Duration = Duration::from_secs(30);

/// The outcome of one submitted event.
pub type Outcome = Result<Result<Appended, ChainConflict>, String>;

enum Reply {
    One(oneshot::Sender<Outcome>),
    /// One wake-up for a whole batch, however many events it holds: waking
    /// the waiting task per event made the writer hand its core to request
    /// threads once per event.
    All(oneshot::Sender<Vec<Outcome>>),
}

struct Job {
    incoming: Vec<Incoming>,
    reply: Reply,
}

/// Handle to the writer thread.
pub struct Writer {
    sender: SyncSender<Job>,
    capacity: usize,
    metrics: Arc<Metrics>,
}

/// Told of every commit (the events handed to the store and its answer
/// for each), before any request of the commit is answered: state derived
/// from the journal (the findings) follows it here.
pub type CommitHook = Arc<dyn Fn(&[Incoming], &[Result<Appended, ChainConflict>]) + Send + Sync>;

/// The queue is full: the daemon is overloaded.
#[derive(Debug)]
pub struct Overloaded;

impl Writer {
    /// Starts the writer thread. At most `capacity` events wait in its
    /// queue. `appended` is notified after each commit (exporters wait on
    /// it); `on_commit`, when given, sees each commit first.
    pub fn start(
        store: Arc<Store>,
        capacity: usize,
        metrics: Arc<Metrics>,
        appended: Arc<Notify>,
        on_commit: Option<CommitHook>,
    ) -> std::io::Result<(Writer, JoinHandle<()>)> {
        // Every job holds at least one event, so `capacity` jobs always fit.
        let (sender, receiver) = mpsc::sync_channel(capacity.max(1));
        let thread_metrics = Arc::clone(&metrics);
        let handle = std::thread::Builder::new()
            .name("intentproof-writer".into())
            .spawn(move || {
                run(
                    receiver,
                    &store,
                    &thread_metrics,
                    &appended,
                    on_commit.as_ref(),
                )
            })?;
        Ok((
            Writer {
                sender,
                capacity,
                metrics,
            },
            handle,
        ))
    }

    /// Queues an event; the receiver resolves once it is durable (or
    /// refused). Never blocks.
    pub fn submit(&self, incoming: Incoming) -> Result<oneshot::Receiver<Outcome>, Overloaded> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(vec![incoming], Reply::One(reply))?;
        Ok(answer)
    }

    /// Queues events to be appended in this order, in one commit; the
    /// receiver resolves with their outcomes, in the same order, once they
    /// are durable (or refused). All are queued or none: a batch larger
    /// than the queue's capacity is still taken when the queue is empty.
    /// Never blocks.
    pub fn submit_all(
        &self,
        incoming: Vec<Incoming>,
    ) -> Result<oneshot::Receiver<Vec<Outcome>>, Overloaded> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(incoming, Reply::All(reply))?;
        Ok(answer)
    }

    /// Like [`Writer::submit_all`], but while the queue is full it waits
    /// for room, up to `patience`, instead of refusing at once. Blocks the
    /// calling thread: for background threads (the daemon's own events),
    /// never for request handlers.
    pub fn submit_all_waiting(
        &self,
        incoming: Vec<Incoming>,
        patience: Duration,
    ) -> Result<oneshot::Receiver<Vec<Outcome>>, Overloaded> {
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + patience;
        let mut job = Job {
            incoming,
            reply: Reply::All(reply),
        };
        loop {
            match self.try_enqueue(job) {
                Ok(()) => return Ok(answer),
                Err(Refusal::Full(back)) if Instant::now() < deadline => {
                    job = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => return Err(Overloaded),
            }
        }
    }

    fn enqueue(&self, incoming: Vec<Incoming>, reply: Reply) -> Result<(), Overloaded> {
        self.try_enqueue(Job { incoming, reply })
            .map_err(|_| Overloaded)
    }

    fn try_enqueue(&self, job: Job) -> Result<(), Refusal> {
        let n = job.incoming.len();
        let waiting = self.metrics.queue_depth.fetch_add(n, Ordering::Relaxed);
        if waiting > 0 && waiting + n > self.capacity {
            self.metrics.queue_depth.fetch_sub(n, Ordering::Relaxed);
            return Err(Refusal::Full(job));
        }
        match self.sender.try_send(job) {
            Ok(()) => Ok(()),
            Err(refused) => {
                self.metrics.queue_depth.fetch_sub(n, Ordering::Relaxed);
                Err(match refused {
                    TrySendError::Full(job) => Refusal::Full(job),
                    TrySendError::Disconnected(_) => Refusal::Stopped,
                })
            }
        }
    }
}

enum Refusal {
    /// The queue is full; the job is handed back.
    Full(Job),
    /// The writer thread is gone.
    Stopped,
}

fn run(
    receiver: Receiver<Job>,
    store: &Store,
    metrics: &Metrics,
    appended: &Notify,
    on_commit: Option<&CommitHook>,
) {
    // Whether anything was committed since the caches were last released.
    let mut busy = false;
    loop {
        let first = match receiver.recv_timeout(RELEASE_CACHES_AFTER) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                if std::mem::take(&mut busy) {
                    store.release_caches();
                    tracing::debug!("writer idle: chain tip and summary caches released");
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        busy = true;
        let mut events = first.incoming.len();
        let mut jobs = vec![first];
        while events < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => {
                    events += job.incoming.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        metrics.queue_depth.fetch_sub(events, Ordering::Relaxed);
        let mut incoming = Vec::with_capacity(events);
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            replies.push((job.incoming.len(), job.reply));
            incoming.extend(job.incoming);
        }
        // The store takes the batch; the hook needs it after.
        let seen = on_commit.map(|_| incoming.clone());
        let started = Instant::now();
        let result = store.append(incoming);
        metrics.commit(started.elapsed());
        if let (Some(hook), Some(seen), Ok(outcomes)) = (on_commit, &seen, &result) {
            hook(seen, outcomes);
        }
        drop(seen);
        let mut outcomes: Box<dyn Iterator<Item = Outcome>> = match result {
            Ok(outcomes) => Box::new(outcomes.into_iter().map(|outcome| {
                match &outcome {
                    Ok(Appended::Stored { .. }) => metrics.ingested(),
                    Ok(Appended::Duplicate { .. }) => metrics.duplicate(),
                    Err(_) => {}
                }
                Ok(outcome)
            })),
            Err(e) => {
                tracing::error!(error = %e, "journal append failed; the batch was not acknowledged");
                Box::new(std::iter::repeat(Err(e.to_string())))
            }
        };
        for (n, reply) in replies {
            let mine: Vec<Outcome> = outcomes.by_ref().take(n).collect();
            match reply {
                Reply::One(reply) => {
                    if let Some(outcome) = mine.into_iter().next() {
                        let _ = reply.send(outcome);
                    }
                }
                Reply::All(reply) => {
                    let _ = reply.send(mine);
                }
            }
        }
        appended.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use intentproof_store::StoreOptions;

    /// `submit_all` refuses a full queue at once; `submit_all_waiting`
    /// gets in once there is room, and gives up after its patience.
    #[test]
    fn a_waiting_submit_gets_in_once_there_is_room() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default(), &|_| None).unwrap();
        let metrics = Arc::new(Metrics::default());
        let (writer, _thread) = Writer::start(
            Arc::new(store),
            1,
            Arc::clone(&metrics),
            Arc::new(Notify::new()),
            None,
        )
        .unwrap();
        // As if more than the capacity were waiting.
        metrics.queue_depth.store(2, Ordering::SeqCst);
        assert!(writer.submit_all(Vec::new()).is_err());
        assert!(
            writer
                .submit_all_waiting(Vec::new(), Duration::ZERO)
                .is_err()
        );
        let freer = Arc::clone(&metrics);
        let freed = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            freer.queue_depth.store(0, Ordering::SeqCst);
        });
        let answer = writer
            .submit_all_waiting(Vec::new(), Duration::from_secs(30))
            .expect("room came after 100 ms");
        freed.join().unwrap();
        assert_eq!(answer.blocking_recv().unwrap().len(), 0);
    }
}
