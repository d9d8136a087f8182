//! `BoundedQueueExporter`: a slow inner exporter never blocks the wrapped
//! call, overflow is counted and reported, flush drains the queue.

use std::convert::Infallible;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use intentproof::{
    BoundedQueueExporter, Delivery, ExecutionEvent, ExportError, Exporter, IntentProofClient,
    IntentProofConfig, WrapOptions,
};

/// An inner exporter that blocks inside `export` until the test opens the
/// gate, announcing each event it starts on.
struct GatedExporter {
    started: Mutex<mpsc::Sender<String>>,
    gate: Mutex<mpsc::Receiver<()>>,
    delivered: Mutex<Vec<String>>,
}

impl Exporter for GatedExporter {
    fn name(&self) -> &str {
        "gated"
    }
    fn export(&self, event: &ExecutionEvent) -> Delivery {
        let _ = self.started.lock().unwrap().send(event.id.clone());
        let _ = self.gate.lock().unwrap().recv();
        self.delivered.lock().unwrap().push(event.id.clone());
        Delivery::ok()
    }
}

#[tokio::test]
async fn a_blocked_inner_exporter_never_blocks_the_call_and_overflow_is_reported() {
    let (started_tx, started_rx) = mpsc::channel();
    let (gate_tx, gate_rx) = mpsc::channel();
    let inner = Arc::new(GatedExporter {
        started: Mutex::new(started_tx),
        gate: Mutex::new(gate_rx),
        delivered: Mutex::new(Vec::new()),
    });
    let queue = Arc::new(BoundedQueueExporter::new(inner.clone(), 2).unwrap());
    let reported = Arc::new(Mutex::new(Vec::new()));
    let sink = reported.clone();
    let client = IntentProofClient::new(
        IntentProofConfig::default()
            .exporters(vec![queue.clone() as Arc<dyn Exporter>])
            .on_exporter_error(move |failure| {
                sink.lock().unwrap().push(failure.error.clone());
            }),
    );
    let f = client
        .wrap(WrapOptions::new("i", "test.queue"), |n: u32| {
            Ok::<_, Infallible>(n)
        })
        .unwrap();

    // First call: the worker takes it and blocks inside the inner exporter.
    assert_eq!(f.call(0).unwrap(), 0);
    started_rx.recv().unwrap();
    // Nine more calls while the inner exporter is still blocked: each returns
    // (were any to block, this test would hang), two fill the queue, seven
    // overflow.
    for n in 1..10 {
        assert_eq!(f.call(n).unwrap(), n);
    }
    assert_eq!(queue.dropped(), 7);
    let reported_now = reported.lock().unwrap().clone();
    assert_eq!(reported_now.len(), 7);
    assert_eq!(
        reported_now[6],
        ExportError::QueueFull {
            capacity: 2,
            dropped_total: 7
        }
    );
    assert_eq!(
        reported_now[0].to_string(),
        "export queue full (capacity 2): event dropped, 1 dropped so far; raise the capacity or speed up the inner exporter"
    );

    // Open the gate for the three accepted events; flush waits for them.
    for _ in 0..3 {
        gate_tx.send(()).unwrap();
    }
    client.flush().await;
    assert_eq!(inner.delivered.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn inner_failures_go_to_the_queue_error_hook() {
    struct Failing;
    impl Exporter for Failing {
        fn name(&self) -> &str {
            "failing"
        }
        fn export(&self, _event: &ExecutionEvent) -> Delivery {
            Delivery::Pending(Box::pin(async {
                Err(ExportError::Other("collector down".into()))
            }))
        }
    }
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = errors.clone();
    let queue = BoundedQueueExporter::with_error_hook(
        Arc::new(Failing),
        8,
        Some(Arc::new(move |e: &ExportError| {
            sink.lock().unwrap().push(e.to_string())
        })),
    )
    .unwrap();
    let client = IntentProofClient::new(
        IntentProofConfig::default().exporters(vec![Arc::new(queue) as Arc<dyn Exporter>]),
    );
    let f = client
        .wrap(WrapOptions::new("i", "a"), |_: ()| Ok::<_, Infallible>(()))
        .unwrap();
    f.call(()).unwrap();
    f.call(()).unwrap();
    client.flush().await;
    assert_eq!(
        *errors.lock().unwrap(),
        vec!["collector down", "collector down"]
    );
}

#[test]
fn zero_capacity_is_rejected() {
    let err =
        BoundedQueueExporter::new(Arc::new(intentproof::MemoryExporter::new()), 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "BoundedQueueExporter capacity must be at least 1"
    );
}
