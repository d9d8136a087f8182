//! Where recorded events go. The gateway reaches the daemon through these
//! traits only: the daemon's recording thread implements [`RecordSink`]
//! for `/mcp/<name>` (and the HTTP API proxy, `intentproof-http-proxy`), and `intentproof mcp`'s shipper (a spool and a
//! delivery task, in `intentproof-gateway`) implements [`StdioSink`]. This
//! crate never seals, stores or sends an event itself.

use std::future::Future;
use std::time::Duration;

use intentproof_core::ExecutionEvent;

/// Takes the events of the HTTP gateway (`/mcp/<name>`), in order, after
/// each call was answered. Must not block for long: it is called on the
/// runtime's threads.
pub trait RecordSink: Send + Sync {
    /// Hands `events` over (sealing and storing happen elsewhere).
    fn record(&self, events: Vec<ExecutionEvent>);
    /// Waits (blocking, bounded) until what was handed over so far is
    /// passed on, so that an event stored next is ordered after it. A sink
    /// with nothing in between has nothing to wait for.
    fn flush(&self) {}
}

/// Takes the events of one stdio gateway process.
pub trait StdioSink {
    /// Hands one event over; never waits for delivery.
    fn send(&self, event: ExecutionEvent);
    /// Makes one event durable (sealed and on disk) before returning
    /// (fail-closed mode); `Err` says why it could not.
    fn send_durable(
        &self,
        event: ExecutionEvent,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Delivers what was handed over, waiting at most `wait`; returns how
    /// many events are still undelivered (kept for later delivery).
    fn finish(&self, wait: Duration) -> impl Future<Output = usize> + Send;
}
