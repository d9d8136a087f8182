//! [`WrapOptions`] and [`IntentProofConfig`].

use std::fmt;
use std::sync::Arc;

use intentproof_core::seal::Sealer;
use intentproof_core::{AttributeValue, Attributes, ErrorInfo, SerializeOptions};
use intentproof_policy::redact::Redactor;
use serde_json::Value;

use crate::error::OptionsError;
use crate::exporter::{ExportError, Exporter};

/// Replaces the default snapshot of a call's arguments. Receives the
/// arguments as a JSON array (`[input]`, or `[]` for a call without input).
pub type CaptureInput = Arc<dyn Fn(&Value) -> Value + Send + Sync>;
/// Replaces the default snapshot of a successful call's return value.
pub type CaptureOutput = Arc<dyn Fn(&Value) -> Value + Send + Sync>;
/// On failure, supplies the event's `output` (e.g. a decline code).
pub type CaptureError = Arc<dyn Fn(&ErrorInfo) -> Value + Send + Sync>;

/// How one wrapped function is recorded.
///
/// Build with [`WrapOptions::new`] and the chained setters; every field is
/// public too.
///
/// ```
/// use intentproof::WrapOptions;
/// use serde_json::json;
///
/// let options = WrapOptions::new("Capture authorized funds", "stripe.payment_intent.capture")
///     .attribute("vendor", "stripe")
///     .capture_input(|args| json!({"paymentIntentId": args[0]["paymentIntentId"]}))
///     .capture_error(|_err| json!({"code": "card_declined", "retryable": false}));
/// assert!(intentproof::assert_wrap_options_shape(&options).is_ok());
/// ```
#[derive(Clone, Default)]
pub struct WrapOptions {
    /// What the call is meant to achieve. Required, non-blank.
    pub intent: String,
    /// Stable operation id. Required, non-blank.
    pub action: String,
    /// Fixed correlation id for every call; otherwise the context's.
    pub correlation_id: Option<String>,
    /// Per-call attributes, merged over the client's defaults.
    pub attributes: Attributes,
    /// Custom inputs snapshot.
    pub capture_input: Option<CaptureInput>,
    /// Custom output snapshot on success.
    pub capture_output: Option<CaptureOutput>,
    /// Output to record on failure.
    pub capture_error: Option<CaptureError>,
    /// Overrides the client's `include_error_stack` for this wrap.
    pub include_error_stack: Option<bool>,
    /// Snapshot bound; `None` uses [`SerializeOptions::default`]'s.
    pub max_depth: Option<usize>,
    /// Snapshot bound; `None` uses [`SerializeOptions::default`]'s.
    pub max_keys: Option<usize>,
    /// Keys whose values are redacted in inputs and output.
    pub redact_keys: Vec<String>,
    /// Snapshot bound; `None` uses [`SerializeOptions::default`]'s.
    pub max_string_length: Option<usize>,
}

impl fmt::Debug for WrapOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrapOptions")
            .field("intent", &self.intent)
            .field("action", &self.action)
            .field("correlation_id", &self.correlation_id)
            .field("attributes", &self.attributes)
            .field("capture_input", &self.capture_input.is_some())
            .field("capture_output", &self.capture_output.is_some())
            .field("capture_error", &self.capture_error.is_some())
            .field("include_error_stack", &self.include_error_stack)
            .field("max_depth", &self.max_depth)
            .field("max_keys", &self.max_keys)
            .field("redact_keys", &self.redact_keys)
            .field("max_string_length", &self.max_string_length)
            .finish()
    }
}

impl WrapOptions {
    /// Options with this intent and action and everything else default.
    pub fn new(intent: impl Into<String>, action: impl Into<String>) -> Self {
        WrapOptions {
            intent: intent.into(),
            action: action.into(),
            ..Default::default()
        }
    }

    /// Sets a fixed correlation id.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Adds one attribute.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<AttributeValue>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Sets the inputs hook.
    pub fn capture_input(mut self, f: impl Fn(&Value) -> Value + Send + Sync + 'static) -> Self {
        self.capture_input = Some(Arc::new(f));
        self
    }

    /// Sets the output hook.
    pub fn capture_output(mut self, f: impl Fn(&Value) -> Value + Send + Sync + 'static) -> Self {
        self.capture_output = Some(Arc::new(f));
        self
    }

    /// Sets the error-output hook.
    pub fn capture_error(
        mut self,
        f: impl Fn(&ErrorInfo) -> Value + Send + Sync + 'static,
    ) -> Self {
        self.capture_error = Some(Arc::new(f));
        self
    }

    /// Sets whether `error.stack` is recorded for this wrap.
    pub fn include_error_stack(mut self, include: bool) -> Self {
        self.include_error_stack = Some(include);
        self
    }

    /// Sets the snapshot depth bound.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = Some(depth);
        self
    }

    /// Sets the snapshot keys/items bound.
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = Some(keys);
        self
    }

    /// Sets the snapshot string length bound.
    pub fn max_string_length(mut self, chars: usize) -> Self {
        self.max_string_length = Some(chars);
        self
    }

    /// Adds keys to redact.
    pub fn redact_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.redact_keys.extend(keys.into_iter().map(Into::into));
        self
    }

    /// The snapshot settings these options imply.
    pub(crate) fn serialize_options(&self) -> SerializeOptions {
        let defaults = SerializeOptions::default();
        SerializeOptions {
            max_depth: self.max_depth.unwrap_or(defaults.max_depth),
            max_keys: self.max_keys.unwrap_or(defaults.max_keys),
            max_string_length: self.max_string_length.unwrap_or(defaults.max_string_length),
            redact_keys: self.redact_keys.clone(),
        }
    }
}

/// Checks the contract every wrap must meet: `intent` and `action`
/// non-blank, `correlation_id` (when set) a valid correlation id, attribute
/// keys non-blank. [`IntentProofClient::wrap`](crate::IntentProofClient::wrap) calls it.
///
/// ```
/// use intentproof::{assert_wrap_options_shape, OptionsError, WrapOptions};
/// assert_eq!(assert_wrap_options_shape(&WrapOptions::new(" ", "a")), Err(OptionsError::BlankIntent));
/// ```
pub fn assert_wrap_options_shape(options: &WrapOptions) -> Result<(), OptionsError> {
    if options.intent.trim().is_empty() {
        return Err(OptionsError::BlankIntent);
    }
    if options.action.trim().is_empty() {
        return Err(OptionsError::BlankAction);
    }
    if let Some(id) = &options.correlation_id {
        crate::assert_correlation_id(id)?;
    }
    if options.attributes.keys().any(|k| k.trim().is_empty()) {
        return Err(OptionsError::BlankAttributeKey);
    }
    Ok(())
}

/// An exporter failure, as told to [`IntentProofConfig::on_exporter_error`].
#[derive(Debug)]
pub struct ExporterFailure<'a> {
    /// [`Exporter::name`] of the exporter that failed.
    pub exporter: &'a str,
    /// What went wrong.
    pub error: &'a ExportError,
    /// The event concerned; `None` for a failed `flush`/`shutdown`.
    pub event_id: Option<&'a str>,
}

/// Hook told about every exporter failure.
pub type ExporterErrorHook = Arc<dyn Fn(&ExporterFailure<'_>) + Send + Sync>;

/// Client-wide settings.
///
/// ```
/// use intentproof::IntentProofConfig;
/// let config = IntentProofConfig::default()
///     .default_attribute("service", "billing-api")
///     .default_attribute("env", "test");
/// assert!(config.include_error_stack);
/// assert!(config.exporters.is_none(), "None means one MemoryExporter");
/// ```
#[derive(Clone)]
pub struct IntentProofConfig {
    /// Every exporter receives every event, in order. `None`: a single
    /// [`MemoryExporter`](crate::MemoryExporter), reachable through
    /// [`IntentProofClient::memory`](crate::IntentProofClient::memory). `Some(vec![])`: no exporter.
    pub exporters: Option<Vec<Arc<dyn Exporter>>>,
    /// Told about exporter failures. `None` writes them to stderr.
    pub on_exporter_error: Option<ExporterErrorHook>,
    /// Merged into every event's attributes; a wrap's own attributes win.
    pub default_attributes: Attributes,
    /// Whether failed events carry `error.stack`. Default `true`.
    pub include_error_stack: bool,
    /// When set, every event's inputs, output and error are redacted by this
    /// policy before anything else sees them (signer and exporters alike).
    /// `RedactionPolicy::default_policy()` is a strong default.
    pub redactor: Option<Arc<Redactor>>,
    /// When set, every event is sealed (chained per correlation and
    /// Ed25519-signed) before any exporter sees it; the exporters then
    /// receive the event with its sealing fields filled.
    pub signer: Option<Arc<Sealer>>,
    /// Whether an event is on disk before the wrapped call returns.
    /// Default [`Durability::Async`].
    pub durability: Durability,
}

/// Where an event is when the wrapped call returns.
///
/// ```no_run
/// use intentproof::{Durability, IntentProofConfig};
/// let config = IntentProofConfig::default()
///     .durability(Durability::Local { dir: "/var/lib/my-agent/intentproof-outbox".into() });
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Durability {
    /// Handed to the exporters; delivery runs in the background and an
    /// event still in memory when the process dies is lost. The fastest
    /// (p50 ~35 us with a signer).
    #[default]
    Async,
    /// Appended (redacted, and chained when a signer is set) to a local
    /// journal in `dir` and `fdatasync`'d before the call returns, then
    /// signed and delivered to the exporters from disk, again after a crash
    /// or restart, until they have it (a restarted process needs the same
    /// instance key to sign what was left). Concurrent callers share one `fdatasync` (group commit). `dir`
    /// (created 0700) must belong to this process alone. See
    /// BENCHMARKS.md, "Library mode: durable `wrap`", for its cost.
    Local {
        /// The outbox directory.
        dir: std::path::PathBuf,
    },
}

impl Default for IntentProofConfig {
    fn default() -> Self {
        IntentProofConfig {
            exporters: None,
            on_exporter_error: None,
            default_attributes: Attributes::new(),
            include_error_stack: true,
            redactor: None,
            signer: None,
            durability: Durability::Async,
        }
    }
}

impl fmt::Debug for IntentProofConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exporters: Option<Vec<&str>> = self
            .exporters
            .as_ref()
            .map(|list| list.iter().map(|e| e.name()).collect());
        f.debug_struct("IntentProofConfig")
            .field("exporters", &exporters)
            .field("on_exporter_error", &self.on_exporter_error.is_some())
            .field("default_attributes", &self.default_attributes)
            .field("include_error_stack", &self.include_error_stack)
            .field(
                "redactor",
                &self.redactor.as_ref().map(|r| r.policy_id().to_owned()),
            )
            .field("signer", &self.signer.as_ref().map(|s| s.key().key_id()))
            .field("durability", &self.durability)
            .finish()
    }
}

impl IntentProofConfig {
    /// Redacts every event with `redactor` before sealing and export.
    pub fn redactor(mut self, redactor: Arc<Redactor>) -> Self {
        self.redactor = Some(redactor);
        self
    }

    /// Seals every event with `signer` before export.
    pub fn signer(mut self, signer: Arc<Sealer>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Sets where an event is when the wrapped call returns.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Adds one default attribute.
    pub fn default_attribute(
        mut self,
        key: impl Into<String>,
        value: impl Into<AttributeValue>,
    ) -> Self {
        self.default_attributes.insert(key.into(), value.into());
        self
    }

    /// Sets the exporters.
    pub fn exporters(mut self, exporters: Vec<Arc<dyn Exporter>>) -> Self {
        self.exporters = Some(exporters);
        self
    }

    /// Sets the exporter error hook.
    pub fn on_exporter_error(
        mut self,
        hook: impl Fn(&ExporterFailure<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.on_exporter_error = Some(Arc::new(hook));
        self
    }
}
