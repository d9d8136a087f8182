//! Recording off the call's path: the events the daemon makes itself (MCP
//! calls over HTTP, HTTP API proxy calls) go to one thread, which gathers
//! them for up to [`RECORD_LINGER`] and hands them to the sink (sealing,
//! then one write-queue job: one commit, one `fdatasync`) in the order they
//! were recorded.
//!
//! Why gather: a relayed call is answered before its event is sealed, so
//! sealing and storing never add to a call's latency directly; but one
//! commit per call (journal append, `fdatasync`, index batches) costs about
//! 0.3 ms of CPU on the daemon's threads, and on a small machine that CPU is
//! taken from the next call's relay. Sequential calls ~0.5 ms apart share
//! a commit this way (added p50 over HTTP in `bench/mcp_http.sh`: +0.62 to
//! +0.71 ms -> +0.35 to +0.38 ms with `http.client`).
//!
//! A plan declaration ends the gathering: it is handed over at once, because
//! the agent's next call may look for it in the store (the HTTP proxy reads
//! a correlation's open plan there). That makes it stored about one commit
//! after the plan tool answered, not before: a call made within that
//! millisecond or so may still miss the plan.
//!
//! What it does not do: make a call wait for its event. The answer has gone
//! out before the event is durable (fail-open); a daemon killed meanwhile
//! loses the events of the last few milliseconds, which a graceful shutdown
//! ([`Recording::flush`]) does not. The sink may refuse events (the daemon's
//! gives up on a write queue that stays full for 2 s, and counts them).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SendError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use intentproof_core::ExecutionEvent;
use tokio::runtime::RuntimeFlavor;

use intentproof_mcp::recorder::PLAN_ACTION;

/// Where recorded events go, in batches (the daemon seals them and stores
/// them in one commit).
pub type EventSink = Arc<dyn Fn(Vec<ExecutionEvent>) + Send + Sync>;

/// Events waiting for the recording thread. Beyond this the caller waits
/// for room (backpressure), so an event is never dropped for lack of room
/// here.
const RECORD_QUEUE: usize = 4096;
/// How long the thread gathers events after the first of a batch before it
/// hands them over (then come sealing, ~70 µs an event, and the commit).
pub const RECORD_LINGER: Duration = Duration::from_millis(5);
/// At most this many events in one batch.
const RECORD_BATCH: usize = 512;
/// How long shutdown waits for the queued events to be handed over.
const RECORD_FLUSH_WAIT: Duration = Duration::from_secs(10);

/// Hands recorded events to an [`EventSink`] on a thread of its own.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use intentproof_core::ExecutionEvent;
/// use intentproof_gateway::recording::Recording;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink_seen = Arc::clone(&seen);
/// let recording = Recording::start(Arc::new(move |events: Vec<ExecutionEvent>| {
///     sink_seen.lock().unwrap().extend(events.into_iter().map(|e| e.action));
/// }))
/// .unwrap();
/// recording.record(vec![ExecutionEvent::builder("intent", "mcp.demo.a").build()]);
/// recording.record(vec![ExecutionEvent::builder("intent", "mcp.demo.b").build()]);
/// recording.flush(); // both handed over, in order
/// assert_eq!(*seen.lock().unwrap(), ["mcp.demo.a", "mcp.demo.b"]);
/// ```
pub struct Recording {
    sender: SyncSender<RecordJob>,
    /// Used here only if the thread is gone (see [`Recording::record`]).
    sink: EventSink,
}

enum RecordJob {
    /// Boxed: the queue's slots are allocated up front.
    Event(Box<ExecutionEvent>),
    /// Answered once every event queued before it has been handed over.
    Flush(SyncSender<()>),
}

impl Recording {
    /// Starts the thread; it ends when the last handle is dropped.
    pub fn start(sink: EventSink) -> Result<Self, String> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(RECORD_QUEUE);
        let thread_sink = Arc::clone(&sink);
        std::thread::Builder::new()
            .name("ip-recorder".into())
            .spawn(move || run(&receiver, &thread_sink))
            .map_err(|e| format!("cannot start the recording thread: {e}"))?;
        Ok(Recording { sender, sink })
    }

    /// Queues events, in this order. A full queue makes the caller wait for
    /// room (only under sustained overload) rather than drop one.
    pub fn record(&self, events: Vec<ExecutionEvent>) {
        for event in events {
            let job = match self.sender.try_send(RecordJob::Event(Box::new(event))) {
                Ok(()) => continue,
                Err(TrySendError::Full(job)) => job,
                Err(TrySendError::Disconnected(job)) => {
                    self.seal_here(job);
                    continue;
                }
            };
            // Wait for a slot rather than drop the event or reorder it.
            // Callers are async handlers: on a multi-threaded runtime
            // `block_in_place` hands this worker's other tasks to another
            // thread first.
            let send = || self.sender.send(job);
            let sent = match tokio::runtime::Handle::try_current() {
                Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(send)
                }
                _ => send(),
            };
            if let Err(SendError(job)) = sent {
                self.seal_here(job);
            }
        }
    }

    /// The thread is gone (it panicked): hand over on the caller's thread.
    fn seal_here(&self, job: RecordJob) {
        if let RecordJob::Event(event) = job {
            (self.sink)(vec![*event]);
        }
    }

    /// Waits (bounded) until the events queued so far are handed over,
    /// without waiting out the linger.
    pub fn flush(&self) {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if self.sender.send(RecordJob::Flush(done)).is_ok()
            && wait.recv_timeout(RECORD_FLUSH_WAIT).is_err()
        {
            tracing::warn!("recorded events still queued at shutdown");
        }
    }
}

fn run(receiver: &Receiver<RecordJob>, sink: &EventSink) {
    while let Ok(first) = receiver.recv() {
        let deadline = Instant::now() + RECORD_LINGER;
        let mut events = Vec::new();
        let mut next = Ok(first);
        let flushed = loop {
            match next {
                Ok(RecordJob::Event(event)) => {
                    // A plan must be stored before the agent's next call
                    // looks for it (the HTTP proxy reads the open plan
                    // from the store), so it does not wait for company.
                    let plan = event.action == PLAN_ACTION;
                    events.push(*event);
                    if plan {
                        break None;
                    }
                }
                Ok(RecordJob::Flush(done)) => break Some(done),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break None,
            }
            if events.len() >= RECORD_BATCH {
                break None;
            }
            next = receiver.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        };
        if !events.is_empty() {
            sink(events);
        }
        if let Some(done) = flushed {
            let _ = done.send(());
        }
    }
}

/// The HTTP MCP gateway's and the HTTP proxy's events go to the recording
/// thread.
impl intentproof_mcp::sink::RecordSink for Recording {
    fn record(&self, events: Vec<ExecutionEvent>) {
        Recording::record(self, events);
    }

    fn flush(&self) {
        Recording::flush(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Events queued while the thread is busy share a batch, in order; a
    /// batch holds at most RECORD_BATCH; a plan declaration closes its
    /// batch; an event recorded after a batch was handed over starts the
    /// next one.
    #[test]
    fn events_are_gathered_into_ordered_bounded_batches() {
        let batches = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
        let seen = Arc::clone(&batches);
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Mutex::new(released);
        let recording = Recording::start(Arc::new(move |events: Vec<ExecutionEvent>| {
            let first = {
                let mut batches = seen.lock().unwrap();
                batches.push(events.into_iter().map(|e| e.action).collect());
                batches.len() == 1
            };
            if first {
                let _ = released.lock().unwrap().recv();
            }
        }))
        .unwrap();
        let event = |action: String| ExecutionEvent::builder("intent", action).build();
        let handed_over = |n: usize| {
            for _ in 0..1000 {
                if batches.lock().unwrap().len() >= n {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("no batch {n} after 10 s");
        };
        recording.record(vec![event("a.0".into())]);
        handed_over(1);
        // Queued while the sink holds the thread.
        let mut queued: Vec<String> = (1..=RECORD_BATCH + 3).map(|i| format!("a.{i}")).collect();
        queued.extend(["b".into(), PLAN_ACTION.into(), "c".into()]);
        recording.record(queued.iter().cloned().map(event).collect());
        release.send(()).unwrap();
        handed_over(4);
        recording.record(vec![event("d".into())]);
        recording.flush();
        let batches = batches.lock().unwrap();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, RECORD_BATCH, 5, 1, 1]);
        assert_eq!(batches[2][3..], ["b", PLAN_ACTION]);
        let all: Vec<&str> = batches.iter().flatten().map(String::as_str).collect();
        let mut expected = vec!["a.0"];
        expected.extend(queued.iter().map(String::as_str));
        expected.push("d");
        assert_eq!(all, expected);
    }

    /// With the recording queue full, `record` waits for room; on a
    /// one-worker multi-threaded runtime the runtime's other tasks must
    /// still run meanwhile (they did not when the wait blocked the worker).
    #[test]
    fn a_full_recording_queue_does_not_stall_the_runtime() {
        // Built first so it is dropped last: if the assertion below fails,
        // `release` is dropped before it, which frees the blocked sink and
        // so the blocked worker, and the test fails instead of hanging.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Mutex::new(released);
        let recorded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&recorded);
        let sink: EventSink = Arc::new(move |events: Vec<ExecutionEvent>| {
            // The first batch holds the recording thread until released.
            if counter.fetch_add(events.len(), std::sync::atomic::Ordering::SeqCst) == 0 {
                let _ = released.lock().map(|r| r.recv());
            }
        });
        let recording = Arc::new(Recording::start(sink).unwrap());
        let (ran, other_task_ran) = std::sync::mpsc::channel();
        runtime.block_on(async {
            let filler = Arc::clone(&recording);
            // A batch for the blocked thread (at most RECORD_BATCH events),
            // RECORD_QUEUE to fill the queue, and one more that has to wait.
            let events: Vec<ExecutionEvent> = (0..RECORD_BATCH + RECORD_QUEUE + 1)
                .map(|_| ExecutionEvent::builder("intent", "mcp.x.y").build())
                .collect();
            let recorder = tokio::spawn(async move { filler.record(events) });
            tokio::spawn(async move {
                let _ = ran.send(());
            });
            // The other task runs although `record` is still waiting...
            let waited = tokio::task::spawn_blocking(move || {
                other_task_ran.recv_timeout(Duration::from_secs(10))
            })
            .await
            .unwrap();
            assert!(waited.is_ok(), "a task could not run while record waited");
            // ...and once the sink moves on, every event is recorded, in full.
            release.send(()).unwrap();
            recorder.await.unwrap();
        });
        recording.flush();
        assert_eq!(
            recorded.load(std::sync::atomic::Ordering::SeqCst),
            RECORD_BATCH + RECORD_QUEUE + 1
        );
    }
}
