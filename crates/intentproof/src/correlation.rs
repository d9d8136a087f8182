//! Correlation context: which flow the current call belongs to.
//!
//! Two carriers, one view:
//! - **async**: a tokio task-local, set for the duration of one future
//!   ([`with_correlation_id_async`], [`IntentProofClient::with_correlation_async`](crate::IntentProofClient::with_correlation_async)); it
//!   survives `.await` points and moves with the task between threads;
//! - **sync**: a thread-local, set for the duration of one closure
//!   ([`run_with_correlation_id`]). A synchronous scope cannot span an
//!   `.await`, so when both are set the thread-local is the innermost one and
//!   wins.
//!
//! A spawned task starts with no context: carry it across with
//! [`with_current_correlation`]:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use intentproof::{get_correlation_id, with_correlation_id_async, with_current_correlation};
//!
//! with_correlation_id_async("req_1", async {
//!     let handle = tokio::spawn(with_current_correlation(async { get_correlation_id() }));
//!     assert_eq!(handle.await.unwrap().as_deref(), Some("req_1"));
//! })
//! .await
//! .unwrap();
//! # }
//! ```

use std::cell::RefCell;
use std::future::Future;

use crate::error::CorrelationError;

/// Longest correlation id accepted, in bytes.
pub const MAX_CORRELATION_ID_LEN: usize = 256;

tokio::task_local! {
    static TASK_CORRELATION: String;
}

thread_local! {
    static THREAD_CORRELATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The correlation id in effect here, if any: the innermost synchronous
/// scope on this thread, else the current task's.
///
/// ```
/// assert_eq!(intentproof::get_correlation_id(), None);
/// intentproof::run_with_correlation_id("req_9", || {
///     assert_eq!(intentproof::get_correlation_id().as_deref(), Some("req_9"));
/// }).unwrap();
/// ```
pub fn get_correlation_id() -> Option<String> {
    THREAD_CORRELATION
        .with(|c| c.borrow().clone())
        .or_else(|| TASK_CORRELATION.try_with(Clone::clone).ok())
}

/// Checks that `id` is usable as a correlation id and returns it trimmed.
///
/// Rules: not blank after trimming whitespace, at most
/// [`MAX_CORRELATION_ID_LEN`] bytes, no control characters.
///
/// ```
/// assert_eq!(intentproof::assert_correlation_id(" req_1 ").unwrap(), "req_1");
/// let err = intentproof::assert_correlation_id("  ").unwrap_err();
/// assert!(err.to_string().contains("blank"));
/// ```
pub fn assert_correlation_id(id: &str) -> Result<&str, CorrelationError> {
    let trimmed = id.trim();
    if trimmed.is_empty() {
        return Err(CorrelationError::Blank);
    }
    if trimmed.len() > MAX_CORRELATION_ID_LEN {
        return Err(CorrelationError::TooLong(trimmed.len()));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(CorrelationError::ControlCharacter);
    }
    Ok(trimmed)
}

/// Runs `f` with `id` as the correlation id of every wrap inside it (on this
/// thread). Unlike [`IntentProofClient::with_correlation_id`](crate::IntentProofClient::with_correlation_id), a blank or
/// invalid id is an error, not a fallback.
///
/// ```
/// let err = intentproof::run_with_correlation_id("  ", || ()).unwrap_err();
/// assert_eq!(err.to_string(),
///     "correlation id is blank; pass a non-empty id such as a request or order id");
/// ```
pub fn run_with_correlation_id<R>(id: &str, f: impl FnOnce() -> R) -> Result<R, CorrelationError> {
    let id = assert_correlation_id(id)?;
    Ok(in_thread_scope(id.to_owned(), f))
}

/// Async form of [`run_with_correlation_id`]: `fut` and every wrap it awaits
/// see `id`, across `.await` points.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let id = intentproof::with_correlation_id_async("req_2", async {
///     tokio::task::yield_now().await;
///     intentproof::get_correlation_id()
/// }).await.unwrap();
/// assert_eq!(id.as_deref(), Some("req_2"));
/// # }
/// ```
pub async fn with_correlation_id_async<F: Future>(
    id: &str,
    fut: F,
) -> Result<F::Output, CorrelationError> {
    let id = assert_correlation_id(id)?;
    Ok(in_task_scope(id.to_owned(), fut).await)
}

/// Wraps `fut` so that it runs with the correlation id in effect *now*. Use
/// it to carry the context into `tokio::spawn` or any other executor: a new
/// task does not inherit task-locals.
///
/// With no correlation in effect, `fut` runs unchanged.
pub fn with_current_correlation<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let id = get_correlation_id();
    async move {
        match id {
            Some(id) => in_task_scope(id, fut).await,
            None => fut.await,
        }
    }
}

/// Runs `f` with `id` as this thread's correlation, restoring the previous
/// one afterwards, also when `f` panics.
pub(crate) fn in_thread_scope<R>(id: String, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            THREAD_CORRELATION.with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = THREAD_CORRELATION.with(|c| c.borrow_mut().replace(id));
    let _restore = Restore(previous);
    f()
}

/// Runs `fut` with `id` as its task's correlation.
pub(crate) async fn in_task_scope<F: Future>(id: String, fut: F) -> F::Output {
    TASK_CORRELATION.scope(id, fut).await
}

/// A fresh correlation id (UUIDv7, time-ordered).
pub(crate) fn new_correlation_id() -> String {
    intentproof_core::new_event_id()
}
