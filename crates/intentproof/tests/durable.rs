//! `Durability::Local`: events on disk before `wrap` returns, delivered
//! from disk (again after a failure or a restart), in chain order.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use intentproof::{
    BatchDelivery, BatchFuture, Delivery, Durability, ExecutionEvent, ExportError, Exporter,
    InstanceKey, IntentProofClient, IntentProofConfig, MemoryExporter, Sealer, WrapOptions,
};
use intentproof_core::seal::verify_event;
use serde_json::json;

fn durable(dir: &Path, exporters: Vec<Arc<dyn Exporter>>) -> IntentProofConfig {
    IntentProofConfig::default()
        .exporters(exporters)
        .durability(Durability::Local {
            dir: dir.to_owned(),
        })
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Fails every batch until `fail_first` batches failed, then keeps events.
#[derive(Default)]
struct Flaky {
    fail_first: usize,
    attempts: AtomicUsize,
    kept: Mutex<Vec<ExecutionEvent>>,
    /// Refuses the event whose output is this.
    refuse_output: Option<i64>,
}

impl Exporter for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }

    fn export(&self, _event: &ExecutionEvent) -> Delivery {
        Delivery::Done(Err(ExportError::Other("only batches".into())))
    }

    fn export_batch(&self, events: Arc<[ExecutionEvent]>) -> BatchFuture {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
        if attempt < self.fail_first {
            return Box::pin(std::future::ready(Err(ExportError::Other(format!(
                "attempt {attempt} fails"
            )))));
        }
        let mut delivery = BatchDelivery::default();
        let mut kept = self.kept.lock().unwrap();
        for (i, event) in events.iter().enumerate() {
            if self.refuse_output.is_some() && event.output == self.refuse_output.map(|o| json!(o))
            {
                delivery
                    .refused
                    .push((i, "HTTP 400 invalid_event: no".into()));
            } else {
                kept.push(event.clone());
            }
        }
        Box::pin(std::future::ready(Ok(delivery)))
    }
}

fn add(
    client: &IntentProofClient,
) -> intentproof::Wrapped<impl Fn(i64) -> Result<i64, Infallible>> {
    client
        .wrap(WrapOptions::new("Add one", "math.add_one"), |x: i64| {
            Ok::<_, Infallible>(x + 1)
        })
        .unwrap()
}

#[tokio::test]
async fn events_are_on_disk_when_wrap_returns_and_reach_the_exporter() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let memory = Arc::new(MemoryExporter::new());
    let client = IntentProofClient::try_new(durable(&dir, vec![memory.clone()])).unwrap();
    let call = add(&client);
    for x in 0..3 {
        assert_eq!(call.call(x).unwrap(), x + 1);
    }
    // On disk: the journal holds three records before anything is flushed.
    let mut on_disk = 0;
    intentproof_journal::read_from(&dir.join("journal"), 0, |_, _, _| on_disk += 1).unwrap();
    assert_eq!(on_disk, 3);
    client.flush().await;
    let outputs: Vec<_> = memory.events().iter().map(|e| e.output.clone()).collect();
    assert_eq!(outputs, [Some(json!(1)), Some(json!(2)), Some(json!(3))]);
    assert_eq!(std::fs::read_to_string(dir.join("cursor")).unwrap(), "3");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("cursor")), 0o600);
    assert_eq!(mode(&dir.join("lock")), 0o600);
    for segment in std::fs::read_dir(dir.join("journal")).unwrap() {
        let segment = segment.unwrap().path();
        if segment.extension().is_some_and(|e| e == "seg") {
            assert_eq!(mode(&segment), 0o600, "{}", segment.display());
        }
    }
}

#[tokio::test]
async fn a_failing_exporter_gets_the_same_events_again_until_it_takes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let flaky = Arc::new(Flaky {
        fail_first: 2,
        ..Flaky::default()
    });
    let failures = Arc::new(Mutex::new(Vec::new()));
    let seen = failures.clone();
    let client = IntentProofClient::try_new(durable(&dir, vec![flaky.clone()]).on_exporter_error(
        move |failure| {
            seen.lock()
                .unwrap()
                .push(format!("{}: {}", failure.exporter, failure.error));
        },
    ))
    .unwrap();
    let call = add(&client);
    call.call(1).unwrap();
    call.call(2).unwrap();
    // Each flush returns after a failed attempt; the third attempt works.
    for _ in 0..3 {
        client.flush().await;
    }
    let kept: Vec<_> = flaky
        .kept
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.output.clone())
        .collect();
    assert_eq!(kept, [Some(json!(2)), Some(json!(3))]);
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 3);
    assert_eq!(
        *failures.lock().unwrap(),
        ["flaky: attempt 0 fails", "flaky: attempt 1 fails"]
    );
}

/// Four calls of one chain left in an outbox whose exporter never took
/// them (the process "died" with them undelivered).
fn left_undelivered(dir: &Path) {
    let down = Arc::new(Flaky {
        fail_first: usize::MAX,
        ..Flaky::default()
    });
    let client = IntentProofClient::try_new(
        durable(dir, vec![down])
            .signer(Arc::new(Sealer::new(key())))
            .on_exporter_error(|_| {}),
    )
    .unwrap();
    let call = add(&client);
    client.with_correlation_id("req_1", || {
        for x in 0..4 {
            call.call(x).unwrap();
        }
    });
}

fn key() -> InstanceKey {
    InstanceKey::from_seed("inst_durable", [9u8; 32])
}

/// Records are chained when written and signed when delivered: by the next
/// process, with the same instance's key, the result is what one process
/// would have sent.
#[tokio::test]
async fn a_new_process_delivers_what_the_last_one_left_signed_by_the_same_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    left_undelivered(&dir);
    let memory = Arc::new(MemoryExporter::new());
    let client = IntentProofClient::try_new(
        durable(&dir, vec![memory.clone()]).signer(Arc::new(Sealer::new(key()))),
    )
    .unwrap();
    client.flush().await;
    let positions: Vec<_> = memory
        .events()
        .iter()
        .map(|e| {
            let v1 = serde_json::Value::Object(intentproof_core::v1::to_v1(e));
            verify_event(&v1, &key().verifying_key()).expect("signed by the instance's key");
            v1["chain_position"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(positions, [1, 2, 3, 4]);
    let chain: Vec<serde_json::Value> = memory
        .events()
        .iter()
        .map(|e| serde_json::Value::Object(intentproof_core::v1::to_v1(e)))
        .collect();
    intentproof_core::seal::verify_chain(&chain, |_| Some(key().verifying_key()))
        .expect("one intact chain");
}

/// Without the signer (or with another instance's), the records cannot be
/// signed: they are kept in refused.ndjson with the reason, not sent
/// unsigned and not dropped.
#[tokio::test]
async fn records_left_for_a_signer_are_kept_when_none_or_another_signs() {
    for (signer, reason) in [
        (
            None,
            "outbox: the record could not be read back: the record was chained to be signed, and the client has no signer now: configure the signer it was written with",
        ),
        (
            Some(InstanceKey::from_seed("inst_other", [4u8; 32])),
            "outbox: the record could not be read back: event {id} was chained for instance inst_durable, not this signer's inst_other: sign it with that instance's key",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("outbox");
        left_undelivered(&dir);
        let memory = Arc::new(MemoryExporter::new());
        let mut config = durable(&dir, vec![memory.clone()]).on_exporter_error(|_| {});
        if let Some(other) = signer {
            config = config.signer(Arc::new(Sealer::new(other)));
        }
        let client = IntentProofClient::try_new(config).unwrap();
        client.flush().await;
        assert_eq!(memory.events().len(), 0);
        let refused = std::fs::read_to_string(dir.join("refused.ndjson")).unwrap();
        let lines: Vec<serde_json::Value> = refused
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        for (seq, line) in lines.iter().enumerate() {
            assert_eq!(line["seq"], seq);
            // As written: chained, unsigned.
            let kept = &line["event"];
            assert_eq!(kept.get("signature"), None);
            assert_eq!(kept["chain_position"], seq + 1);
            let id = kept["event_id"].as_str().unwrap();
            assert_eq!(line["reason"], reason.replace("{id}", id));
        }
    }
}

#[tokio::test]
async fn a_new_process_delivers_what_the_last_one_left_unsealed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    {
        // The exporter never succeeds: everything stays in the outbox.
        let down = Arc::new(Flaky {
            fail_first: usize::MAX,
            ..Flaky::default()
        });
        let client =
            IntentProofClient::try_new(durable(&dir, vec![down]).on_exporter_error(|_| {}))
                .unwrap();
        let call = add(&client);
        for x in 0..4 {
            call.call(x).unwrap();
        }
    }
    let memory = Arc::new(MemoryExporter::new());
    let client = IntentProofClient::try_new(durable(&dir, vec![memory.clone()])).unwrap();
    client.flush().await;
    let outputs: Vec<_> = memory.events().iter().map(|e| e.output.clone()).collect();
    assert_eq!(
        outputs,
        [
            Some(json!(1)),
            Some(json!(2)),
            Some(json!(3)),
            Some(json!(4))
        ]
    );
}

#[tokio::test]
async fn events_refused_for_good_are_kept_beside_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let picky = Arc::new(Flaky {
        refuse_output: Some(2),
        ..Flaky::default()
    });
    let reports = Arc::new(AtomicUsize::new(0));
    let counted = reports.clone();
    let client = IntentProofClient::try_new(durable(&dir, vec![picky.clone()]).on_exporter_error(
        move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        },
    ))
    .unwrap();
    let call = add(&client);
    for x in 0..3 {
        call.call(x).unwrap();
    }
    client.flush().await;
    assert_eq!(picky.kept.lock().unwrap().len(), 2);
    let refused = std::fs::read_to_string(dir.join("refused.ndjson")).unwrap();
    let lines: Vec<serde_json::Value> = refused
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[0]["reason"], "flaky: HTTP 400 invalid_event: no");
    // Unsealed: kept as the envelope POST /v1/events takes.
    assert_eq!(lines[0]["event"]["intentproof"], "1");
    assert_eq!(lines[0]["event"]["event"]["output"], 2);
    assert_eq!(mode(&dir.join("refused.ndjson")), 0o600);
    assert_eq!(reports.load(Ordering::SeqCst), 1);
    assert_eq!(std::fs::read_to_string(dir.join("cursor")).unwrap(), "3");
}

#[tokio::test]
async fn concurrent_calls_of_one_chain_are_delivered_in_chain_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let memory = Arc::new(MemoryExporter::new());
    let client = IntentProofClient::try_new(durable(&dir, vec![memory.clone()]).signer(Arc::new(
        Sealer::new(InstanceKey::from_seed("inst_order", [3u8; 32])),
    )))
    .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            std::thread::spawn(move || {
                let call = add(&client);
                client.with_correlation_id("req_shared", || {
                    for x in 0..50 {
                        call.call(x).unwrap();
                    }
                });
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    client.flush().await;
    let positions: Vec<u64> = memory
        .events()
        .iter()
        .map(|e| {
            intentproof_core::v1::to_v1(e)["chain_position"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(positions, (1..=400).collect::<Vec<u64>>());
}

/// A commit that fails fails every call in it, and only those: 8 threads
/// call at once, and a few calls return an output larger than the journal
/// takes in one record (16 MiB), so the commit holding one of them fails
/// for each caller it held, whether that caller led the commit, was parked
/// waiting for it, or queued behind it. Every call is then either on disk
/// and delivered, or reported as not durable with the commit's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_fails_exactly_the_calls_it_held() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let memory = Arc::new(MemoryExporter::new());
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let client = IntentProofClient::try_new(
        durable(&dir, vec![memory.clone()])
            .signer(Arc::new(Sealer::new(InstanceKey::from_seed(
                "inst_fail",
                [9u8; 32],
            ))))
            .on_exporter_error(move |failure| {
                sink.lock().unwrap().push((
                    failure.exporter.to_owned(),
                    failure.event_id.map(str::to_owned),
                    failure.error.to_string(),
                ));
            }),
    )
    .unwrap();
    let huge = Arc::new("x".repeat(17 << 20));
    let call = client
        .wrap(
            WrapOptions::new("Echo", "test.echo").max_string_length(32 << 20),
            move |x: i64| {
                Ok::<_, Infallible>(if x % 100 == 42 {
                    json!(huge.as_str())
                } else {
                    json!(x)
                })
            },
        )
        .unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    for t in 0..8i64 {
        let call = call.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            for i in 0..60 {
                call.call(t * 1000 + i).unwrap();
            }
            let _ = done.send(());
        });
    }
    for _ in 0..8 {
        // A caller never woken would hang here: fail instead.
        finished
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("a caller was never woken");
    }
    client.flush().await;
    let delivered: std::collections::BTreeSet<String> =
        memory.events().iter().map(|e| e.id.clone()).collect();
    let reports = reports.lock().unwrap().clone();
    let not_durable: std::collections::BTreeSet<String> = reports
        .iter()
        .filter(|(exporter, _, _)| exporter == "outbox")
        .map(|(_, id, _)| id.clone().unwrap())
        .collect();
    assert_eq!(not_durable.len(), reports.len(), "{reports:?}");
    for (_, id, error) in &reports {
        let id = id.as_deref().unwrap();
        assert!(
            error.starts_with(&format!("event {id} was not made durable: record of ")),
            "{error}"
        );
        assert!(
            error.ends_with("bytes is larger than the journal's limit of 16777216 bytes"),
            "{error}"
        );
    }
    // 8 huge outputs (one per thread): each failed its commit, with every
    // other call that commit held.
    assert!(not_durable.len() >= 8, "{}", not_durable.len());
    assert!(delivered.is_disjoint(&not_durable));
    assert_eq!(delivered.len() + not_durable.len(), 8 * 60);
    assert!(
        memory
            .events()
            .iter()
            .all(|e| e.output.as_ref().and_then(|o| o.as_i64()).is_some())
    );
}

/// A dropped client releases its outbox at once, also while its delivery
/// backs off after a failure: a new client (this process or another) opens
/// the directory right away.
#[tokio::test]
async fn a_dropped_client_releases_its_outbox_while_delivery_backs_off() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let down = Arc::new(Flaky {
        fail_first: usize::MAX,
        ..Flaky::default()
    });
    let client =
        IntentProofClient::try_new(durable(&dir, vec![down.clone()]).on_exporter_error(|_| {}))
            .unwrap();
    let call = add(&client);
    call.call(1).unwrap();
    // Returns after the first failed attempt: delivery now backs off.
    client.flush().await;
    assert_eq!(down.attempts.load(Ordering::SeqCst), 1);
    drop(call);
    drop(client);
    let memory = Arc::new(MemoryExporter::new());
    let client = IntentProofClient::try_new(durable(&dir, vec![memory.clone()])).unwrap();
    client.flush().await;
    assert_eq!(memory.events().len(), 1);
}
