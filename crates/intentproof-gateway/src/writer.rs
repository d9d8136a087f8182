//! The group-commit writer: one thread owns appends to the store. Ingest
//! hands it events through a bounded queue; it takes everything waiting (up
//! to [`MAX_BATCH`]), appends the batch with one `fdatasync`, and only then
//! answers each waiting request. Under load many requests share one fsync;
//! at rest each waits for its own.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Instant;

use intentproof_store::{Appended, ChainConflict, Incoming, Store};
use tokio::sync::{Notify, oneshot};

use crate::metrics::Metrics;

/// Most events appended in one group commit.
pub const MAX_BATCH: usize = 4096;

/// The outcome of one submitted event.
pub type Outcome = Result<Result<Appended, ChainConflict>, String>;

struct Job {
    incoming: Incoming,
    reply: oneshot::Sender<Outcome>,
}

/// Handle to the writer thread.
pub struct Writer {
    sender: SyncSender<Job>,
    metrics: Arc<Metrics>,
}

/// The queue is full: the daemon is overloaded.
#[derive(Debug)]
pub struct Overloaded;

impl Writer {
    /// Starts the writer thread. `appended` is notified after each commit
    /// (exporters wait on it).
    pub fn start(
        store: Arc<Store>,
        capacity: usize,
        metrics: Arc<Metrics>,
        appended: Arc<Notify>,
    ) -> std::io::Result<(Writer, JoinHandle<()>)> {
        let (sender, receiver) = mpsc::sync_channel(capacity);
        let thread_metrics = Arc::clone(&metrics);
        let handle = std::thread::Builder::new()
            .name("intentproof-writer".into())
            .spawn(move || run(receiver, &store, &thread_metrics, &appended))?;
        Ok((Writer { sender, metrics }, handle))
    }

    /// Queues an event; the receiver resolves once it is durable (or
    /// refused). Never blocks.
    pub fn submit(&self, incoming: Incoming) -> Result<oneshot::Receiver<Outcome>, Overloaded> {
        let (reply, answer) = oneshot::channel();
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(Job { incoming, reply }) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                Err(Overloaded)
            }
        }
    }
}

fn run(receiver: Receiver<Job>, store: &Store, metrics: &Metrics, appended: &Notify) {
    while let Ok(first) = receiver.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        metrics.queue_depth.fetch_sub(jobs.len(), Ordering::Relaxed);
        let (incoming, replies): (Vec<Incoming>, Vec<_>) =
            jobs.into_iter().map(|j| (j.incoming, j.reply)).unzip();
        let started = Instant::now();
        let result = store.append(incoming);
        metrics.commit(started.elapsed());
        match result {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    match &outcome {
                        Ok(Appended::Stored { .. }) => metrics.ingested(),
                        Ok(Appended::Duplicate { .. }) => metrics.duplicate(),
                        Err(_) => {}
                    }
                    let _ = reply.send(Ok(outcome));
                }
                appended.notify_waiters();
            }
            Err(e) => {
                tracing::error!(error = %e, "journal append failed; the batch was not acknowledged");
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }
}
