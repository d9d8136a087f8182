//! The bulk pool: threads that check the lines of `POST /v1/events:batch`,
//! one per core, at a lower scheduling priority (nice +5 on Linux) than the
//! writer and the request threads.
//!
//! Why: the writer thread is the one serial stage of ingest. At equal
//! priority, every wake-up a commit caused let a verification thread take
//! the writer's core (about 1,400 preemptions of the writer per 100,000
//! batched events), so the writer idled while work queued behind it.
//! Yielding to it measured +15 % batched events/s (`BENCHMARKS.md`,
//! "Posting lists and the bulk pool"). Bulk verification is background
//! work: it also yields to the daemon's other requests, and to other
//! programs on the machine when the CPU is contended; on an idle machine
//! it runs as fast as before.
//!
//! This is not a general thread pool: jobs run in arrival order, a
//! panicking job loses only its own answer, and nothing else in the daemon
//! uses it.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce() + Send>;

/// How much lower than the daemon's own priority bulk threads run.
const NICE_INCREMENT: i32 = 5;

/// Handle to the bulk threads; they stop when it is dropped.
pub struct BulkPool {
    sender: mpsc::Sender<Job>,
}

impl BulkPool {
    /// Starts `threads` bulk threads (at least one).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = intentproof_gateway::bulk::BulkPool::start(2).unwrap();
    /// assert_eq!(pool.run(|| 6 * 7).await, Some(42));
    /// # });
    /// ```
    pub fn start(threads: usize) -> std::io::Result<BulkPool> {
        let threads = threads.max(1);
        let (sender, receiver) = mpsc::channel::<Job>(threads * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("intentproof-bulk-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = receiver
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .blocking_recv();
                        let Some(job) = job else { break };
                        // A panic drops the job's answer sender: its caller
                        // gets `None`; the thread lives on.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(BulkPool { sender })
    }

    /// Runs `f` on a bulk thread and returns its result, or `None` if the
    /// pool has stopped or `f` panicked. Waits (without blocking the
    /// runtime) while all bulk threads are busy and the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (answer, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(f());
        });
        self.sender.send(job).await.ok()?;
        result.await.ok()
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux the nice value is per thread: this lowers only the calling
    // thread. Raising it never needs privileges.
    let current = rustix::process::getpriority_process(None).unwrap_or(0);
    if let Err(e) = rustix::process::setpriority_process(None, current + NICE_INCREMENT) {
        tracing::debug!(error = %e, "bulk thread keeps the daemon's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {
    let _ = NICE_INCREMENT;
}
