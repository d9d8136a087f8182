use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use intentproof_core::ExecutionEvent;
use tokio::sync::{Notify, mpsc};

use super::{Delivery, ExportError, ExportErrorHook, ExportFuture, Exporter};

/// Puts events on a bounded queue that a background worker drains into
/// another exporter, so the wrapped call never waits for delivery.
///
/// When the queue is full the event is dropped, counted
/// ([`BoundedQueueExporter::dropped`]) and reported as
/// [`ExportError::QueueFull`] to the client's `on_exporter_error`.
/// Failures of the inner exporter happen later, on the worker; they go to
/// the `on_error` hook given to [`BoundedQueueExporter::with_error_hook`]
/// (stderr by default). `flush` waits until the queue is drained.
///
/// The worker is a dedicated thread with its own single-threaded tokio
/// runtime; it ends when the exporter is dropped.
///
/// ```
/// use std::sync::Arc;
/// use intentproof::{BoundedQueueExporter, Exporter, MemoryExporter};
///
/// let memory = Arc::new(MemoryExporter::new());
/// let queue = BoundedQueueExporter::new(memory.clone(), 1024).unwrap();
/// let event = intentproof_core::ExecutionEvent::builder("i", "a").build();
/// assert!(matches!(queue.export(&event), intentproof::Delivery::Done(Ok(()))));
/// ```
pub struct BoundedQueueExporter {
    sender: mpsc::Sender<ExecutionEvent>,
    capacity: usize,
    state: Arc<QueueState>,
}

struct QueueState {
    /// Events accepted and not yet handed to the inner exporter's result.
    pending: AtomicUsize,
    drained: Notify,
    dropped: AtomicU64,
    inner: Arc<dyn Exporter>,
}

impl std::fmt::Debug for BoundedQueueExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedQueueExporter")
            .field("inner", &self.state.inner.name())
            .field("capacity", &self.capacity)
            .field("pending", &self.state.pending.load(Ordering::Relaxed))
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl BoundedQueueExporter {
    /// Queue of `capacity` events in front of `inner`; inner failures go to
    /// stderr.
    pub fn new(inner: Arc<dyn Exporter>, capacity: usize) -> Result<Self, ExportError> {
        Self::with_error_hook(inner, capacity, None)
    }

    /// Like [`BoundedQueueExporter::new`], with a hook for the inner
    /// exporter's failures.
    ///
    /// Fails when `capacity` is 0 or the worker thread cannot start.
    pub fn with_error_hook(
        inner: Arc<dyn Exporter>,
        capacity: usize,
        on_error: Option<ExportErrorHook>,
    ) -> Result<Self, ExportError> {
        if capacity == 0 {
            return Err(ExportError::Other(
                "BoundedQueueExporter capacity must be at least 1".to_owned(),
            ));
        }
        let (sender, receiver) = mpsc::channel(capacity);
        let state = Arc::new(QueueState {
            pending: AtomicUsize::new(0),
            drained: Notify::new(),
            dropped: AtomicU64::new(0),
            inner,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                ExportError::Other(format!("could not start the export queue runtime: {e}"))
            })?;
        let worker_state = Arc::clone(&state);
        std::thread::Builder::new()
            .name("intentproof-queue".to_owned())
            .spawn(move || runtime.block_on(drain(receiver, worker_state, on_error)))
            .map_err(|e| {
                ExportError::Other(format!("could not start the export queue thread: {e}"))
            })?;
        Ok(BoundedQueueExporter {
            sender,
            capacity,
            state,
        })
    }

    /// Events dropped because the queue was full, since creation.
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(Ordering::Relaxed)
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

async fn drain(
    mut receiver: mpsc::Receiver<ExecutionEvent>,
    state: Arc<QueueState>,
    on_error: Option<ExportErrorHook>,
) {
    while let Some(event) = receiver.recv().await {
        let result = match state.inner.export(&event) {
            Delivery::Done(result) => result,
            Delivery::Pending(future) => future.await,
        };
        if let Err(error) = result {
            match &on_error {
                Some(hook) => hook(&error),
                None => eprintln!("intentproof: exporter {}: {error}", state.inner.name()),
            }
        }
        state.pending.fetch_sub(1, Ordering::AcqRel);
        state.drained.notify_waiters();
    }
}

impl Exporter for BoundedQueueExporter {
    fn name(&self) -> &str {
        "bounded-queue"
    }

    fn export(&self, event: &ExecutionEvent) -> Delivery {
        // Count first, so a flush racing with this export waits for it.
        self.state.pending.fetch_add(1, Ordering::AcqRel);
        match self.sender.try_send(event.clone()) {
            Ok(()) => Delivery::ok(),
            Err(e) => {
                self.state.pending.fetch_sub(1, Ordering::AcqRel);
                self.state.drained.notify_waiters();
                Delivery::Done(Err(match e {
                    mpsc::error::TrySendError::Full(_) => ExportError::QueueFull {
                        capacity: self.capacity,
                        dropped_total: self.state.dropped.fetch_add(1, Ordering::Relaxed) + 1,
                    },
                    mpsc::error::TrySendError::Closed(_) => {
                        ExportError::ShutDown(self.name().to_owned())
                    }
                }))
            }
        }
    }

    fn flush(&self) -> ExportFuture {
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            loop {
                let drained = state.drained.notified();
                if state.pending.load(Ordering::Acquire) == 0 {
                    break;
                }
                drained.await;
            }
            state.inner.flush().await
        })
    }

    fn shutdown(&self) -> ExportFuture {
        let flush = self.flush();
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            flush.await?;
            state.inner.shutdown().await
        })
    }
}
