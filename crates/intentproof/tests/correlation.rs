//! Correlation flows through nested wraps (sync and async), stays apart in
//! concurrent tasks, follows spawned tasks when carried, and rejects blank ids.

use std::convert::Infallible;

use intentproof::{
    CorrelationError, IntentProofClient, WrapOptions, get_correlation_id, run_with_correlation_id,
    with_correlation_id_async, with_current_correlation,
};

fn correlation_ids(client: &IntentProofClient) -> Vec<(String, Option<String>)> {
    client
        .memory()
        .unwrap()
        .events()
        .into_iter()
        .map(|e| (e.action, e.correlation_id))
        .collect()
}

#[test]
fn nested_sync_wraps_share_the_outer_correlation_id() {
    let client = IntentProofClient::default();
    let inner = client
        .wrap(WrapOptions::new("inner", "test.inner"), |x: u32| {
            Ok::<_, Infallible>(x + 1)
        })
        .unwrap();
    let outer = {
        let inner = inner.clone();
        client
            .wrap(WrapOptions::new("outer", "test.outer"), move |x: u32| {
                inner.call(x).map(|y| y * 2)
            })
            .unwrap()
    };
    let result = run_with_correlation_id("req_nested", || outer.call(1)).unwrap();
    assert_eq!(result.unwrap(), 4);
    assert_eq!(
        correlation_ids(&client),
        vec![
            ("test.inner".to_owned(), Some("req_nested".to_owned())),
            ("test.outer".to_owned(), Some("req_nested".to_owned())),
        ]
    );
    assert_eq!(
        get_correlation_id(),
        None,
        "the scope ends with the closure"
    );
}

#[test]
fn a_wrap_with_its_own_correlation_id_passes_it_to_nested_wraps() {
    let client = IntentProofClient::default();
    let inner = client
        .wrap(WrapOptions::new("inner", "test.inner"), |_: ()| {
            Ok::<_, Infallible>(get_correlation_id())
        })
        .unwrap();
    let outer = client
        .wrap(
            WrapOptions::new("outer", "test.outer").correlation_id(" fixed_id "),
            move |_: ()| inner.call(()),
        )
        .unwrap();
    assert_eq!(outer.call(()).unwrap().as_deref(), Some("fixed_id"));
    assert_eq!(
        correlation_ids(&client),
        vec![
            ("test.inner".to_owned(), Some("fixed_id".to_owned())),
            ("test.outer".to_owned(), Some("fixed_id".to_owned())),
        ]
    );
}

#[test]
fn without_any_correlation_the_field_is_omitted() {
    let client = IntentProofClient::default();
    let f = client
        .wrap(WrapOptions::new("i", "a"), |_: ()| Ok::<_, Infallible>(()))
        .unwrap();
    f.call(()).unwrap();
    let event = client.memory().unwrap().events().remove(0);
    assert_eq!(event.correlation_id, None);
    assert!(
        serde_json::to_value(&event)
            .unwrap()
            .get("correlationId")
            .is_none()
    );
}

#[tokio::test]
async fn nested_async_wraps_keep_the_correlation_across_await() {
    let client = IntentProofClient::default();
    let inner = client
        .wrap_async(
            WrapOptions::new("inner", "test.inner"),
            |x: u32| async move {
                tokio::task::yield_now().await;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                Ok::<_, Infallible>(x + 1)
            },
        )
        .unwrap();
    let outer = client
        .wrap_async(WrapOptions::new("outer", "test.outer"), move |x: u32| {
            let inner = inner.clone();
            async move {
                tokio::task::yield_now().await;
                let y = inner.call(x).await?;
                tokio::task::yield_now().await;
                Ok::<_, Infallible>((y * 2, get_correlation_id()))
            }
        })
        .unwrap();
    let (value, seen) = with_correlation_id_async("req_async", outer.call(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value, 4);
    assert_eq!(seen.as_deref(), Some("req_async"));
    assert_eq!(
        correlation_ids(&client),
        vec![
            ("test.inner".to_owned(), Some("req_async".to_owned())),
            ("test.outer".to_owned(), Some("req_async".to_owned())),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tasks_keep_their_own_correlation_ids() {
    let client = IntentProofClient::default();
    let step = client
        .wrap_async(WrapOptions::new("step", "test.step"), |n: u32| async move {
            // Interleave the tasks as much as possible.
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
            Ok::<_, Infallible>(n)
        })
        .unwrap();
    let mut tasks = Vec::new();
    for task in 0..8u32 {
        let step = step.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("req_{task}");
            with_correlation_id_async(&id, async {
                for n in 0..10u32 {
                    step.call(task * 100 + n).await.unwrap();
                }
            })
            .await
            .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let events = client.memory().unwrap().events();
    assert_eq!(events.len(), 80);
    for event in events {
        let n = event.inputs.unwrap()[0].as_u64().unwrap();
        assert_eq!(
            event.correlation_id,
            Some(format!("req_{}", n / 100)),
            "input {n} was recorded under another task's id"
        );
    }
}

#[tokio::test]
async fn with_current_correlation_carries_the_id_into_a_spawned_task() {
    let (carried, lost) = with_correlation_id_async("req_spawn", async {
        let carried = tokio::spawn(with_current_correlation(async { get_correlation_id() }));
        let lost = tokio::spawn(async { get_correlation_id() });
        (carried.await.unwrap(), lost.await.unwrap())
    })
    .await
    .unwrap();
    assert_eq!(carried.as_deref(), Some("req_spawn"));
    assert_eq!(
        lost, None,
        "a spawned task does not inherit task-locals by itself"
    );
}

#[test]
fn run_with_correlation_id_rejects_blank_ids_with_a_clear_error() {
    for blank in ["", "  ", "\t\n"] {
        let err = run_with_correlation_id(blank, || ()).unwrap_err();
        assert_eq!(err, CorrelationError::Blank);
        assert_eq!(
            err.to_string(),
            "correlation id is blank; pass a non-empty id such as a request or order id"
        );
    }
    assert_eq!(
        run_with_correlation_id("bad\nid", || ()).unwrap_err(),
        CorrelationError::ControlCharacter
    );
    assert_eq!(
        run_with_correlation_id(&"x".repeat(257), || ()).unwrap_err(),
        CorrelationError::TooLong(257)
    );
    assert_eq!(
        run_with_correlation_id(" req_1 ", get_correlation_id)
            .unwrap()
            .as_deref(),
        Some("req_1")
    );
}

#[test]
fn client_with_correlation_falls_back_to_a_fresh_id_for_blank_input() {
    let client = IntentProofClient::default();
    let fresh = client
        .with_correlation_id("   ", get_correlation_id)
        .unwrap();
    assert_eq!(uuid_version(&fresh), '7');
    let generated = client.with_correlation(get_correlation_id).unwrap();
    assert_eq!(uuid_version(&generated), '7');
    assert_ne!(fresh, generated);
}

fn uuid_version(id: &str) -> char {
    // xxxxxxxx-xxxx-Vxxx-...
    id.chars().nth(14).unwrap()
}
