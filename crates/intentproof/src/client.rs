//! [`IntentProofClient`] and the wrapped functions it makes.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use intentproof_core::seal::Sealer;
use intentproof_core::v1;
use intentproof_core::{
    Attributes, ErrorInfo, ExecutionEvent, SerializeOptions, format_rfc3339_millis, snapshot,
};
use serde::Serialize;
use serde_json::Value;

use crate::correlation::{self, get_correlation_id, in_task_scope, in_thread_scope};
use crate::dispatch::Dispatcher;
use crate::error::OptionsError;
use crate::exporter::{Delivery, ExportError, Exporter, MemoryExporter};
use crate::options::{
    Durability, ExporterErrorHook, ExporterFailure, IntentProofConfig, WrapOptions,
};
use crate::outbox::{Destinations, Outbox, OutboxError, Outboxes};

/// Records one [`ExecutionEvent`] per call of every function it wraps, and
/// hands each event to its exporters.
///
/// Cloning is cheap and clones share everything (exporters, settings,
/// delivery thread). [`configure`](IntentProofClient::configure) affects
/// functions wrapped before it too.
///
/// ```
/// use intentproof::{IntentProofClient, IntentProofConfig, WrapOptions};
///
/// let client = IntentProofClient::new(IntentProofConfig::default());
/// let refund = client
///     .wrap(WrapOptions::new("Initiate refund", "stripe.refunds.create"), |cents: u32| {
///         Ok::<_, std::io::Error>(format!("re_{cents}"))
///     })
///     .unwrap();
/// assert_eq!(refund.call(4999).unwrap(), "re_4999");
///
/// let events = client.memory().unwrap().events();
/// assert_eq!(events[0].inputs, Some(serde_json::json!([4999])));
/// assert_eq!(events[0].output, Some(serde_json::json!("re_4999")));
/// ```
#[derive(Clone)]
pub struct IntentProofClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    settings: RwLock<Arc<Settings>>,
    dispatcher: Dispatcher,
    outboxes: Outboxes,
}

impl Destinations for ClientInner {
    fn exporters(&self) -> Vec<Arc<dyn Exporter>> {
        self.settings().exporters.clone()
    }

    fn report(&self, exporter: &str, error: &ExportError, event_id: Option<&str>) {
        self.settings().report(exporter, error, event_id);
    }

    fn signer(&self) -> Option<Arc<Sealer>> {
        self.settings().signer.clone()
    }
}

impl ClientInner {
    fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The applied form of an [`IntentProofConfig`].
struct Settings {
    exporters: Vec<Arc<dyn Exporter>>,
    memory: Option<Arc<MemoryExporter>>,
    on_exporter_error: Option<ExporterErrorHook>,
    default_attributes: Attributes,
    include_error_stack: bool,
    redactor: Option<Arc<intentproof_policy::redact::Redactor>>,
    signer: Option<Arc<Sealer>>,
    /// With [`Durability::Local`]: the outbox, or why it could not be opened.
    outbox: Option<Result<Arc<Outbox>, OutboxError>>,
}

impl Settings {
    fn from_config(
        config: IntentProofConfig,
        outbox: Option<Result<Arc<Outbox>, OutboxError>>,
    ) -> Self {
        let (exporters, memory) = match config.exporters {
            Some(exporters) => (exporters, None),
            None => {
                let memory = Arc::new(MemoryExporter::new());
                (vec![memory.clone() as Arc<dyn Exporter>], Some(memory))
            }
        };
        Settings {
            exporters,
            memory,
            on_exporter_error: config.on_exporter_error,
            default_attributes: config.default_attributes,
            include_error_stack: config.include_error_stack,
            redactor: config.redactor,
            signer: config.signer,
            outbox,
        }
    }

    fn report(&self, exporter: &str, error: &ExportError, event_id: Option<&str>) {
        report(self.on_exporter_error.as_ref(), exporter, error, event_id);
    }
}

fn report(
    hook: Option<&ExporterErrorHook>,
    exporter: &str,
    error: &ExportError,
    event_id: Option<&str>,
) {
    let failure = ExporterFailure {
        exporter,
        error,
        event_id,
    };
    match hook {
        // A panicking hook must not turn an export failure into a failed call.
        Some(hook) => {
            let _ = catch_unwind(AssertUnwindSafe(|| hook(&failure)));
        }
        None => eprintln!("intentproof: exporter {exporter} failed: {error}"),
    }
}

impl fmt::Debug for IntentProofClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = self.settings();
        let names: Vec<&str> = settings.exporters.iter().map(|e| e.name()).collect();
        f.debug_struct("IntentProofClient")
            .field("exporters", &names)
            .field("default_attributes", &settings.default_attributes)
            .field("include_error_stack", &settings.include_error_stack)
            .finish()
    }
}

impl Default for IntentProofClient {
    fn default() -> Self {
        Self::new(IntentProofConfig::default())
    }
}

impl IntentProofClient {
    /// A client with this configuration. With `exporters: None` it keeps
    /// events in one [`MemoryExporter`], see [`IntentProofClient::memory`].
    ///
    /// With [`Durability::Local`] an outbox that cannot be opened makes
    /// every event fail (reported to `on_exporter_error` as exporter
    /// `"outbox"`); [`IntentProofClient::try_new`] reports it at once.
    pub fn new(config: IntentProofConfig) -> Self {
        let client = IntentProofClient {
            inner: Arc::new(ClientInner {
                settings: RwLock::new(Arc::new(Settings::from_config(
                    IntentProofConfig::default().exporters(Vec::new()),
                    None,
                ))),
                dispatcher: Dispatcher::new(),
                outboxes: Outboxes::default(),
            }),
        };
        client.configure(config);
        client
    }

    /// Like [`IntentProofClient::new`], but fails when the
    /// [`Durability::Local`] outbox cannot be opened (its directory cannot
    /// be created or written, or another process holds it).
    ///
    /// ```
    /// use intentproof::{Durability, IntentProofClient, IntentProofConfig};
    /// let dir = tempfile::tempdir().unwrap();
    /// let config = IntentProofConfig::default()
    ///     .durability(Durability::Local { dir: dir.path().join("outbox") });
    /// let client = IntentProofClient::try_new(config.clone()).unwrap();
    /// // The same directory from a second client: refused, with the reason.
    /// # drop(client);
    /// # let client = IntentProofClient::try_new(config.clone()).unwrap();
    /// let error = IntentProofClient::try_new(config).unwrap_err();
    /// assert!(error.to_string().contains("in use by another process"), "{error}");
    /// ```
    pub fn try_new(config: IntentProofConfig) -> Result<Self, OutboxError> {
        let client = Self::new(config);
        if let Some(Err(error)) = &client.settings().outbox {
            return Err(error.clone());
        }
        Ok(client)
    }

    /// Replaces the whole configuration. Functions wrapped earlier use the
    /// new one from their next call on.
    ///
    /// ```
    /// use intentproof::{IntentProofClient, IntentProofConfig};
    /// let client = IntentProofClient::default();
    /// client.configure(IntentProofConfig::default().default_attribute("env", "prod"));
    /// ```
    pub fn configure(&self, config: IntentProofConfig) {
        let outbox = match &config.durability {
            Durability::Async => None,
            Durability::Local { dir } => Some(self.open_outbox(dir)),
        };
        let settings = Arc::new(Settings::from_config(config, outbox));
        *self
            .inner
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = settings;
    }

    fn settings(&self) -> Arc<Settings> {
        self.inner.settings()
    }

    /// The outbox in `dir`, opened (and its delivery started) on first use.
    fn open_outbox(&self, dir: &std::path::Path) -> Result<Arc<Outbox>, OutboxError> {
        let (outbox, opened) = self.inner.outboxes.get(dir)?;
        if opened {
            let handle = self
                .inner
                .dispatcher
                .handle()
                .map_err(|reason| OutboxError::Io {
                    path: dir.to_owned(),
                    op: "start delivery",
                    reason,
                })?;
            let inner: std::sync::Weak<ClientInner> = Arc::downgrade(&self.inner);
            let destinations: std::sync::Weak<dyn Destinations> = inner;
            handle.spawn(crate::outbox::deliver(destinations, Arc::clone(&outbox)));
        }
        Ok(outbox)
    }

    /// The default [`MemoryExporter`], when the configuration gave no
    /// exporters.
    pub fn memory(&self) -> Option<Arc<MemoryExporter>> {
        self.settings().memory.clone()
    }

    /// The correlation id in effect here; see [`crate::get_correlation_id`].
    pub fn get_correlation_id(&self) -> Option<String> {
        get_correlation_id()
    }

    /// Runs `f` under a fresh (UUIDv7) correlation id.
    ///
    /// ```
    /// let client = intentproof::IntentProofClient::default();
    /// let id = client.with_correlation(|| intentproof::get_correlation_id());
    /// assert!(id.is_some());
    /// ```
    pub fn with_correlation<R>(&self, f: impl FnOnce() -> R) -> R {
        in_thread_scope(correlation::new_correlation_id(), f)
    }

    /// Runs `f` under `id`, trimmed; a blank (or otherwise unusable) `id`
    /// falls back to a fresh one, as the seed SDK does.
    ///
    /// ```
    /// let client = intentproof::IntentProofClient::default();
    /// let id = client.with_correlation_id("  req_7 ", || intentproof::get_correlation_id());
    /// assert_eq!(id.as_deref(), Some("req_7"));
    /// ```
    pub fn with_correlation_id<R>(&self, id: &str, f: impl FnOnce() -> R) -> R {
        in_thread_scope(id_or_fresh(id), f)
    }

    /// Async form of [`with_correlation`](IntentProofClient::with_correlation).
    pub async fn with_correlation_async<F: Future>(&self, fut: F) -> F::Output {
        in_task_scope(correlation::new_correlation_id(), fut).await
    }

    /// Async form of [`with_correlation_id`](IntentProofClient::with_correlation_id).
    pub async fn with_correlation_id_async<F: Future>(&self, id: &str, fut: F) -> F::Output {
        in_task_scope(id_or_fresh(id), fut).await
    }

    /// Wraps a synchronous function. Every [`Wrapped::call`] runs `f` and
    /// records one event; `f`'s result (or panic) reaches the caller
    /// unchanged.
    ///
    /// `f` takes one input and returns `Result<T, E>`; for a function that
    /// cannot fail use `E = std::convert::Infallible`, for one without input
    /// use `I = ()`. Inputs are recorded as the JSON array of arguments:
    /// `[input]`, or `[]` when `I` is `()`.
    ///
    /// Fails when `options` break [`assert_wrap_options_shape`](crate::assert_wrap_options_shape).
    pub fn wrap<I, T, E, F>(&self, options: WrapOptions, f: F) -> Result<Wrapped<F>, OptionsError>
    where
        F: Fn(I) -> Result<T, E>,
        I: Serialize,
        T: Serialize,
        E: std::error::Error,
    {
        Ok(Wrapped {
            recorder: Arc::new(Recorder::new(self.clone(), options)?),
            f: Arc::new(f),
        })
    }

    /// Wraps an async function; see [`wrap`](IntentProofClient::wrap). The
    /// correlation id reaches every `.await` inside `f`.
    pub fn wrap_async<I, T, E, F, Fut>(
        &self,
        options: WrapOptions,
        f: F,
    ) -> Result<WrappedAsync<F>, OptionsError>
    where
        F: Fn(I) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        I: Serialize,
        T: Serialize,
        E: std::error::Error,
    {
        Ok(WrappedAsync {
            recorder: Arc::new(Recorder::new(self.clone(), options)?),
            f: Arc::new(f),
        })
    }

    /// Hands `event` to every exporter, after redaction (when a redactor is
    /// configured) and sealing (when a signer is). Never fails and never
    /// blocks on delivery: failures go to `on_exporter_error`.
    ///
    /// With a signer configured the event is sealed first; an event that
    /// cannot be sealed (e.g. an integer beyond 2^53 in its payload) is not
    /// exported, and the failure goes to `on_exporter_error` as exporter
    /// `"sealer"`.
    pub fn emit(&self, event: &ExecutionEvent) {
        let settings = self.settings();
        let redacted;
        let event = match &settings.redactor {
            Some(redactor) => {
                let mut copy = event.clone();
                redactor.redact_event(&mut copy);
                redacted = copy;
                &redacted
            }
            None => event,
        };
        if let Some(outbox) = &settings.outbox {
            if let Err(reason) = emit_durable(outbox, &settings, event) {
                settings.report("outbox", &ExportError::Other(reason), Some(&event.id));
            }
            return;
        }
        let sealed;
        let event = match &settings.signer {
            None => event,
            Some(signer) => match signer
                .seal(event)
                .map_err(|e| e.to_string())
                .and_then(|sealed| v1::from_v1(&sealed.event).map_err(|e| e.to_string()))
            {
                Ok(event) => {
                    sealed = event;
                    &sealed
                }
                Err(reason) => {
                    settings.report(
                        "sealer",
                        &ExportError::Other(format!(
                            "event not exported: it could not be sealed: {reason}"
                        )),
                        Some(&event.id),
                    );
                    return;
                }
            },
        };
        for exporter in &settings.exporters {
            // A panicking exporter is an exporter failure, not the caller's.
            let delivery = catch_unwind(AssertUnwindSafe(|| exporter.export(event)))
                .unwrap_or_else(|payload| {
                    Delivery::Done(Err(ExportError::Other(format!(
                        "exporter panicked: {}",
                        panic_message(&*payload)
                    ))))
                });
            match delivery {
                Delivery::Done(Ok(())) => {}
                Delivery::Done(Err(error)) => {
                    settings.report(exporter.name(), &error, Some(&event.id))
                }
                Delivery::Pending(future) => {
                    let hook = settings.on_exporter_error.clone();
                    let failed_exporter = Arc::clone(exporter);
                    let event_id = event.id.clone();
                    let spawned = self.inner.dispatcher.spawn(async move {
                        if let Err(error) = future.await {
                            report(
                                hook.as_ref(),
                                failed_exporter.name(),
                                &error,
                                Some(&event_id),
                            );
                        }
                    });
                    if let Err(reason) = spawned {
                        settings.report(
                            exporter.name(),
                            &ExportError::Other(reason),
                            Some(&event.id),
                        );
                    }
                }
            }
        }
    }

    /// Waits until every delivery under way has finished, then awaits
    /// `flush` of every exporter, in parallel. Failures go to
    /// `on_exporter_error`.
    pub async fn flush(&self) {
        self.finish(false).await;
    }

    /// Like [`flush`](IntentProofClient::flush), then calls every exporter's
    /// `shutdown`. Call it before the client is dropped, or deliveries still
    /// under way are abandoned.
    pub async fn shutdown(&self) {
        self.finish(true).await;
    }

    /// [`flush`](IntentProofClient::flush) for synchronous code: blocks the
    /// calling thread. Do not call it from an async task; await `flush`.
    pub fn flush_blocking(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        let finishing = self.finish(false);
        let settings = self.settings();
        match self.inner.dispatcher.handle() {
            Ok(handle) => {
                handle.spawn(async move {
                    finishing.await;
                    let _ = done.send(());
                });
                let _ = wait.recv();
            }
            Err(reason) => settings.report("client", &ExportError::Other(reason), None),
        }
    }

    fn finish(&self, shutdown: bool) -> impl Future<Output = ()> + Send + 'static {
        let settings = self.settings();
        let in_flight = Arc::clone(&self.inner.dispatcher.in_flight);
        let handle = self.inner.dispatcher.handle().cloned();
        async move {
            let work = {
                let settings = Arc::clone(&settings);
                async move {
                    if let Some(Ok(outbox)) = &settings.outbox {
                        outbox.wait_delivered().await;
                    }
                    in_flight.wait_idle().await;
                    let finishing = settings.exporters.iter().map(|exporter| {
                        let future = if shutdown {
                            exporter.shutdown()
                        } else {
                            exporter.flush()
                        };
                        async move { (exporter.name(), future.await) }
                    });
                    for (name, result) in futures_util::future::join_all(finishing).await {
                        if let Err(error) = result {
                            settings.report(name, &error, None);
                        }
                    }
                }
            };
            match handle {
                // Exporter futures may need a tokio reactor: run them on ours.
                Ok(handle) => {
                    if let Err(e) = handle.spawn(work).await {
                        settings.report(
                            "client",
                            &ExportError::Other(format!("flush task failed: {e}")),
                            None,
                        );
                    }
                }
                Err(reason) => settings.report("client", &ExportError::Other(reason), None),
            }
        }
    }
}

/// Seals `event` (with a signer) and makes it durable in `outbox`,
/// returning once it is on disk.
fn emit_durable(
    outbox: &Result<Arc<Outbox>, OutboxError>,
    settings: &Settings,
    event: &ExecutionEvent,
) -> Result<(), String> {
    let outbox = outbox
        .as_ref()
        .map_err(|e| format!("event not recorded: the outbox could not be opened: {e}"))?;
    let not_durable = |reason: String| {
        OutboxError::NotDurable {
            event_id: event.id.clone(),
            reason,
        }
        .to_string()
    };
    let correlation = event.correlation_id.as_deref().unwrap_or(&event.id);
    let sealing = outbox.begin();
    let ticket = {
        // Sealing picks the chain position: queue in that same order.
        let _order = outbox.order_lock(correlation);
        // Chained now (the chain's order is the queue's), signed at
        // delivery: see the outbox's docs.
        let chained = match &settings.signer {
            Some(signer) => Some(
                signer
                    .chain_only(event)
                    .map_err(|e| not_durable(format!("it could not be sealed: {e}")))?,
            ),
            None => None,
        };
        outbox
            .enqueue(sealing, chained.as_ref(), event)
            .map_err(not_durable)?
    };
    outbox.wait_durable(ticket).map_err(not_durable)
}

fn id_or_fresh(id: &str) -> String {
    match crate::assert_correlation_id(id) {
        Ok(id) => id.to_owned(),
        Err(_) => correlation::new_correlation_id(),
    }
}

/// What every call of one wrapped function shares.
struct Recorder {
    client: IntentProofClient,
    options: WrapOptions,
    serialize: SerializeOptions,
    correlation_id: Option<String>,
}

/// The result of the wrapped function, as the recorder needs it.
enum Outcome<'a, T, E> {
    Returned(&'a Result<T, E>),
    Panicked(&'a (dyn Any + Send)),
}

impl Recorder {
    fn new(client: IntentProofClient, options: WrapOptions) -> Result<Self, OptionsError> {
        crate::assert_wrap_options_shape(&options)?;
        let correlation_id = options
            .correlation_id
            .as_deref()
            .map(|id| id.trim().to_owned());
        Ok(Recorder {
            client,
            serialize: options.serialize_options(),
            options,
            correlation_id,
        })
    }

    /// The correlation id of one call: the wrap's own, else the context's.
    /// `Some(scope)` when the call must run in a new scope for nested wraps.
    fn correlation(&self) -> (Option<String>, bool) {
        match &self.correlation_id {
            Some(id) => (Some(id.clone()), true),
            None => (get_correlation_id(), false),
        }
    }

    fn inputs<I: Serialize>(&self, input: &I) -> Value {
        let is_no_input =
            std::mem::size_of::<I>() == 0 && matches!(serde_json::to_value(input), Ok(Value::Null));
        match &self.options.capture_input {
            Some(capture) => {
                let args = if is_no_input {
                    Value::Array(Vec::new())
                } else {
                    Value::Array(vec![
                        serde_json::to_value(input).unwrap_or_else(unserializable),
                    ])
                };
                snapshot(&capture(&args), &self.serialize)
            }
            None if is_no_input => Value::Array(Vec::new()),
            // The arguments array is the snapshot's root (depth 0).
            None => snapshot(std::slice::from_ref(input), &self.serialize),
        }
    }

    fn record<T: Serialize, E: std::error::Error>(
        &self,
        correlation_id: Option<String>,
        inputs: Value,
        started: (SystemTime, Instant),
        outcome: Outcome<'_, T, E>,
    ) {
        let elapsed = started.1.elapsed();
        let settings = self.client.settings();
        let include_stack = self
            .options
            .include_error_stack
            .unwrap_or(settings.include_error_stack);
        let mut attributes = settings.default_attributes.clone();
        attributes.extend(self.options.attributes.clone());

        let mut builder =
            ExecutionEvent::builder(self.options.intent.trim(), self.options.action.trim())
                .inputs(inputs)
                .attributes(attributes)
                .timing(
                    format_rfc3339_millis(started.0),
                    format_rfc3339_millis(started.0 + elapsed),
                    duration_ms(elapsed),
                );
        if let Some(id) = correlation_id {
            builder = builder.correlation_id(id);
        }
        let error = match outcome {
            Outcome::Returned(Ok(value)) => {
                let output = match &self.options.capture_output {
                    Some(capture) => {
                        let full = serde_json::to_value(value).unwrap_or_else(unserializable);
                        snapshot(&capture(&full), &self.serialize)
                    }
                    None => snapshot(value, &self.serialize),
                };
                builder = builder.output(output);
                None
            }
            Outcome::Returned(Err(error)) => Some(ErrorInfo {
                name: short_type_name::<E>().to_owned(),
                message: error.to_string(),
                stack: if include_stack {
                    cause_chain(error)
                } else {
                    None
                },
            }),
            Outcome::Panicked(payload) => Some(ErrorInfo {
                name: "panic".to_owned(),
                message: panic_message(payload),
                stack: None,
            }),
        };
        if let Some(error) = error {
            if let Some(capture) = &self.options.capture_error {
                builder = builder.output(snapshot(&capture(&error), &self.serialize));
            }
            builder = builder.error(error);
        }
        self.client.emit(&builder.build());
    }
}

fn unserializable(e: serde_json::Error) -> Value {
    Value::String(format!("[Unserializable: {e}]"))
}

fn duration_ms(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// `my_crate::errors::RuntimeError<T>` -> `RuntimeError`.
fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// The error's `source()` chain, one `caused by:` line each; `None` when
/// the error has no source (Rust errors carry no stack trace of their own).
fn cause_chain(error: &dyn std::error::Error) -> Option<String> {
    let mut lines = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        lines.push(format!("caused by: {cause}"));
        source = cause.source();
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// A synchronous function wrapped by [`IntentProofClient::wrap`]. Cheap to
/// clone; clones share the function.
pub struct Wrapped<F> {
    recorder: Arc<Recorder>,
    f: Arc<F>,
}

impl<F> Clone for Wrapped<F> {
    fn clone(&self) -> Self {
        Wrapped {
            recorder: Arc::clone(&self.recorder),
            f: Arc::clone(&self.f),
        }
    }
}

impl<F> fmt::Debug for Wrapped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wrapped")
            .field("options", &self.recorder.options)
            .finish()
    }
}

impl<F> Wrapped<F> {
    /// Calls the function and records the call. A panic is recorded
    /// (`error.name` = `"panic"`) and then resumed.
    pub fn call<I, T, E>(&self, input: I) -> Result<T, E>
    where
        F: Fn(I) -> Result<T, E>,
        I: Serialize,
        T: Serialize,
        E: std::error::Error,
    {
        let recorder = &self.recorder;
        let inputs = recorder.inputs(&input);
        let (correlation_id, new_scope) = recorder.correlation();
        let started = (SystemTime::now(), Instant::now());
        let run = || catch_unwind(AssertUnwindSafe(|| (self.f)(input)));
        let result = match (&correlation_id, new_scope) {
            (Some(id), true) => in_thread_scope(id.clone(), run),
            _ => run(),
        };
        match result {
            Ok(returned) => {
                recorder.record(
                    correlation_id,
                    inputs,
                    started,
                    Outcome::Returned(&returned),
                );
                returned
            }
            Err(payload) => {
                recorder.record::<T, E>(
                    correlation_id,
                    inputs,
                    started,
                    Outcome::Panicked(&*payload),
                );
                resume_unwind(payload)
            }
        }
    }
}

/// An async function wrapped by [`IntentProofClient::wrap_async`]. Cheap to
/// clone; clones share the function.
pub struct WrappedAsync<F> {
    recorder: Arc<Recorder>,
    f: Arc<F>,
}

impl<F> Clone for WrappedAsync<F> {
    fn clone(&self) -> Self {
        WrappedAsync {
            recorder: Arc::clone(&self.recorder),
            f: Arc::clone(&self.f),
        }
    }
}

impl<F> fmt::Debug for WrappedAsync<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedAsync")
            .field("options", &self.recorder.options)
            .finish()
    }
}

impl<F> WrappedAsync<F> {
    /// Calls the function, awaits it and records the call. A panic inside
    /// the future is recorded and then resumed.
    pub async fn call<I, T, E, Fut>(&self, input: I) -> Result<T, E>
    where
        F: Fn(I) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        I: Serialize,
        T: Serialize,
        E: std::error::Error,
    {
        let recorder = &self.recorder;
        let inputs = recorder.inputs(&input);
        let (correlation_id, new_scope) = recorder.correlation();
        let started = (SystemTime::now(), Instant::now());
        let future = AssertUnwindSafe(async { (self.f)(input).await }).catch_unwind();
        let result = match (&correlation_id, new_scope) {
            (Some(id), true) => in_task_scope(id.clone(), future).await,
            _ => future.await,
        };
        match result {
            Ok(returned) => {
                recorder.record(
                    correlation_id,
                    inputs,
                    started,
                    Outcome::Returned(&returned),
                );
                returned
            }
            Err(payload) => {
                recorder.record::<T, E>(
                    correlation_id,
                    inputs,
                    started,
                    Outcome::Panicked(&*payload),
                );
                resume_unwind(payload)
            }
        }
    }
}
