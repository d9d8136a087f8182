use std::sync::{Mutex, MutexGuard, PoisonError};

use intentproof_core::ExecutionEvent;

use super::{Delivery, Exporter};

/// Keeps every event in memory: for tests, examples and in-process
/// inspection. The default exporter of a client created without
/// `exporters`.
///
/// ```
/// use std::sync::Arc;
/// use intentproof::{IntentProofClient, IntentProofConfig, MemoryExporter, WrapOptions};
///
/// let memory = Arc::new(MemoryExporter::new());
/// let client = IntentProofClient::new(IntentProofConfig {
///     exporters: Some(vec![memory.clone()]),
///     ..Default::default()
/// });
/// let double = client.wrap(WrapOptions::new("Double it", "math.double"),
///     |x: i64| Ok::<_, std::convert::Infallible>(x * 2)).unwrap();
/// assert_eq!(double.call(21).unwrap(), 42);
/// assert_eq!(memory.events()[0].output, Some(serde_json::json!(42)));
/// ```
#[derive(Debug, Default)]
pub struct MemoryExporter {
    events: Mutex<Vec<ExecutionEvent>>,
}

impl MemoryExporter {
    /// An empty exporter.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the events received so far, oldest first.
    pub fn events(&self) -> Vec<ExecutionEvent> {
        self.lock().clone()
    }

    /// Removes and returns the events received so far.
    pub fn take(&self) -> Vec<ExecutionEvent> {
        std::mem::take(&mut *self.lock())
    }

    /// Forgets every event.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, Vec<ExecutionEvent>> {
        // A panic while holding this lock cannot leave the Vec half-written.
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Exporter for MemoryExporter {
    fn name(&self) -> &str {
        "memory"
    }

    fn export(&self, event: &ExecutionEvent) -> Delivery {
        self.lock().push(event.clone());
        Delivery::ok()
    }
}
