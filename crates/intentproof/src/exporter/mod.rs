//! Where events go: the [`Exporter`] trait and its implementations.
//!
//! An exporter receives every event the client emits. [`Exporter::export`]
//! is called on the wrapped call's own thread, right after the call, so it
//! must not block: it either finishes at once ([`Delivery::Done`], as
//! [`MemoryExporter`] and [`BoundedQueueExporter`] do) or hands back a future
//! ([`Delivery::Pending`], as [`HttpExporter`] does) that the client drives
//! on its own background delivery thread. Either way the wrapped call's
//! result is never changed by an exporter; failures go to
//! [`IntentProofConfig::on_exporter_error`](crate::IntentProofConfig::on_exporter_error).

use std::future::Future;
use std::pin::Pin;

use intentproof_core::ExecutionEvent;

mod http;
mod memory;
mod queue;

pub use http::{BodyFormat, BodyHook, HttpExporter, HttpExporterConfig, envelope};
pub use memory::MemoryExporter;
pub use queue::BoundedQueueExporter;

/// Hook told about an exporter's own problems that no caller waits for
/// (a failed body hook, a queued event the inner exporter could not deliver).
pub type ExportErrorHook = std::sync::Arc<dyn Fn(&ExportError) + Send + Sync>;

/// A boxed, sendable export future.
pub type ExportFuture = Pin<Box<dyn Future<Output = Result<(), ExportError>> + Send + 'static>>;

/// A boxed, sendable [`Exporter::export_batch`] future.
pub type BatchFuture =
    Pin<Box<dyn Future<Output = Result<BatchDelivery, ExportError>> + Send + 'static>>;

/// What an exporter did with a batch from the durable outbox: every event
/// not listed in `refused` was delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchDelivery {
    /// Events the destination refused for good (sending them again would
    /// get the same answer), by index in the batch, with the reason. The
    /// outbox keeps them in its `refused.ndjson`.
    pub refused: Vec<(usize, String)>,
}

/// What [`Exporter::export`] did with an event.
pub enum Delivery {
    /// Handled already, with this result.
    Done(Result<(), ExportError>),
    /// Still under way: the client polls this future to completion on its
    /// delivery thread (inside a tokio runtime).
    Pending(ExportFuture),
}

impl Delivery {
    /// A delivery that already succeeded.
    pub fn ok() -> Self {
        Delivery::Done(Ok(()))
    }
}

/// A destination for events.
///
/// Implementations must be cheap to call: see the module docs.
///
/// ```
/// use intentproof::{Delivery, Exporter};
/// use intentproof_core::ExecutionEvent;
///
/// /// Counts events; does nothing else.
/// #[derive(Default)]
/// struct Counter(std::sync::atomic::AtomicUsize);
///
/// impl Exporter for Counter {
///     fn name(&self) -> &str { "counter" }
///     fn export(&self, _event: &ExecutionEvent) -> Delivery {
///         self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///         Delivery::ok()
///     }
/// }
/// ```
pub trait Exporter: Send + Sync {
    /// Short name used in error reports, e.g. `"http"`.
    fn name(&self) -> &str;

    /// Takes one event. Must not block.
    fn export(&self, event: &ExecutionEvent) -> Delivery;

    /// Delivers events the durable outbox
    /// ([`Durability::Local`](crate::Durability::Local)) already has on
    /// disk. `Ok` means the destination has every event not listed as
    /// refused; on `Err` the outbox sends the same events again later, so a
    /// destination may see an event more than once (the IntentProof daemon
    /// keys events by id and answers repeats as duplicates).
    ///
    /// Default: [`Exporter::export`] for each event; the batch fails when
    /// any of them does.
    fn export_batch(&self, events: std::sync::Arc<[ExecutionEvent]>) -> BatchFuture {
        let mut pending = Vec::new();
        for event in events.iter() {
            match self.export(event) {
                Delivery::Done(Ok(())) => {}
                Delivery::Done(Err(error)) => return Box::pin(std::future::ready(Err(error))),
                Delivery::Pending(future) => pending.push(future),
            }
        }
        Box::pin(async move {
            for result in futures_util::future::join_all(pending).await {
                result?;
            }
            Ok(BatchDelivery::default())
        })
    }

    /// Completes when everything accepted so far has been delivered (or has
    /// failed and been reported). Default: nothing to wait for.
    fn flush(&self) -> ExportFuture {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Flushes and releases resources. Default: [`Exporter::flush`].
    fn shutdown(&self) -> ExportFuture {
        self.flush()
    }
}

/// Why an export failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// The collector answered with a non-success HTTP status.
    #[error(
        "collector at {url} answered HTTP {status} after {attempts} attempt(s); check the collector's logs and the exporter's URL and credentials"
    )]
    HttpStatus {
        /// Collector URL.
        url: String,
        /// Last status received.
        status: u16,
        /// Attempts made, retries included.
        attempts: u32,
    },
    /// The request timed out.
    #[error(
        "collector at {url} did not answer within {timeout_ms} ms after {attempts} attempt(s); raise the timeout or check the collector"
    )]
    Timeout {
        /// Collector URL.
        url: String,
        /// The configured timeout.
        timeout_ms: u64,
        /// Attempts made, retries included.
        attempts: u32,
    },
    /// Connecting or sending failed.
    #[error(
        "could not reach collector at {url} after {attempts} attempt(s): {reason}; check that it is running and the URL is right"
    )]
    Transport {
        /// Collector URL.
        url: String,
        /// The transport's description (never contains header values).
        reason: String,
        /// Attempts made, retries included.
        attempts: u32,
    },
    /// A custom body hook failed; the exporter fell back to the default body.
    #[error("custom body hook failed ({0}); sent the default envelope instead")]
    BodyHook(String),
    /// A bounded queue was full and the event was dropped.
    #[error(
        "export queue full (capacity {capacity}): event dropped, {dropped_total} dropped so far; raise the capacity or speed up the inner exporter"
    )]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
        /// Events dropped by this queue since it was created.
        dropped_total: u64,
    },
    /// The exporter was shut down before the event arrived.
    #[error("exporter {0} is shut down; the event was not exported")]
    ShutDown(String),
    /// Anything else, described by the exporter.
    #[error("{0}")]
    Other(String),
}
