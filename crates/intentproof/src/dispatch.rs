//! The client's background delivery thread.
//!
//! Exports that cannot finish on the caller's thread ([`Delivery::Pending`](crate::Delivery::Pending))
//! run here, on a single-threaded tokio runtime the client owns. Owning it
//! (instead of borrowing the caller's runtime) means wraps work the same in
//! sync code, in any async runtime, and in short-lived `#[tokio::test]`
//! runtimes, and a slow collector never steals the caller's worker threads.
//! The thread starts on first use and stops when the client is dropped.

use std::future::Future;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::{Notify, oneshot};

/// Counts deliveries under way so `flush` can wait for them.
#[derive(Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    /// Completes when no delivery is under way.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

pub(crate) struct Dispatcher {
    started: OnceLock<Result<Running, String>>,
    pub(crate) in_flight: Arc<InFlight>,
}

struct Running {
    handle: Handle,
    /// Dropping this stops the runtime thread.
    _stop: oneshot::Sender<()>,
}

impl Dispatcher {
    pub(crate) fn new() -> Self {
        Dispatcher {
            started: OnceLock::new(),
            in_flight: Arc::new(InFlight::default()),
        }
    }

    /// The runtime handle, starting the thread on first use.
    pub(crate) fn handle(&self) -> Result<&Handle, String> {
        self.started
            .get_or_init(start)
            .as_ref()
            .map(|running| &running.handle)
            .map_err(Clone::clone)
    }

    /// Runs `delivery` on the delivery thread, counted as in flight.
    pub(crate) fn spawn(
        &self,
        delivery: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let handle = self.handle()?;
        let in_flight = Arc::clone(&self.in_flight);
        in_flight.count.fetch_add(1, Ordering::AcqRel);
        handle.spawn(async move {
            delivery.await;
            in_flight.count.fetch_sub(1, Ordering::AcqRel);
            in_flight.idle.notify_waiters();
        });
        Ok(())
    }
}

fn start() -> Result<Running, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("could not start the export runtime: {e}"))?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("intentproof-export".to_owned())
        .spawn(move || {
            runtime.block_on(async {
                // Resolves when the client (and so `stop`) is dropped.
                let _ = stopped.await;
            });
        })
        .map_err(|e| format!("could not start the export thread: {e}"))?;
    Ok(Running {
        handle,
        _stop: stop,
    })
}
