//! What a wrapped call records, and that recording never changes what the
//! caller gets.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use intentproof::{
    AttributeValue, Delivery, ErrorInfo, ExecutionEvent, ExportError, Exporter, IntentProofClient,
    IntentProofConfig, MemoryExporter, OptionsError, Status, WrapOptions,
};
use serde_json::json;

#[derive(Debug)]
struct Inner;
impl std::fmt::Display for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("disk full")
    }
}
impl std::error::Error for Inner {}

#[derive(Debug, PartialEq)]
struct SaveError(String);
impl std::fmt::Display for SaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not save {}", self.0)
    }
}
impl std::error::Error for SaveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&Inner)
    }
}

fn only_event(client: &IntentProofClient) -> ExecutionEvent {
    let mut events = client.memory().unwrap().events();
    assert_eq!(events.len(), 1);
    events.remove(0)
}

#[test]
fn an_error_is_recorded_and_returned_unchanged() {
    let client = IntentProofClient::default();
    let save = client
        .wrap(
            WrapOptions::new("Persist the order", "db.orders.save"),
            |id: &str| Err::<(), _>(SaveError(id.to_owned())),
        )
        .unwrap();
    assert_eq!(save.call("ORD-1"), Err(SaveError("ORD-1".into())));
    let event = only_event(&client);
    assert_eq!(event.status, Status::Error);
    assert_eq!(event.inputs, Some(json!(["ORD-1"])));
    assert_eq!(event.output, None, "no capture_error: no output");
    assert_eq!(
        event.error,
        Some(ErrorInfo {
            name: "SaveError".into(),
            message: "could not save ORD-1".into(),
            stack: Some("caused by: disk full".into()),
        })
    );
}

#[test]
fn include_error_stack_false_omits_the_stack_per_client_and_per_wrap() {
    let client = IntentProofClient::new(IntentProofConfig {
        include_error_stack: false,
        ..Default::default()
    });
    let save = client
        .wrap(WrapOptions::new("i", "a"), |_: ()| {
            Err::<(), _>(SaveError("x".into()))
        })
        .unwrap();
    let _ = save.call(());
    assert_eq!(only_event(&client).error.unwrap().stack, None);

    let client = IntentProofClient::default();
    let save = client
        .wrap(
            WrapOptions::new("i", "a").include_error_stack(false),
            |_: ()| Err::<(), _>(SaveError("x".into())),
        )
        .unwrap();
    let _ = save.call(());
    assert_eq!(only_event(&client).error.unwrap().stack, None);
}

#[test]
fn a_panic_is_recorded_then_resumed() {
    let client = IntentProofClient::default();
    let boom = client
        .wrap(
            WrapOptions::new("i", "test.panic"),
            |n: u32| -> Result<u32, Infallible> { panic!("bad input {n}") },
        )
        .unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| boom.call(7)));
    let payload = caught.unwrap_err();
    assert_eq!(payload.downcast_ref::<String>().unwrap(), "bad input 7");
    let event = only_event(&client);
    assert_eq!(event.status, Status::Error);
    assert_eq!(
        event.error,
        Some(ErrorInfo {
            name: "panic".into(),
            message: "bad input 7".into(),
            stack: None
        })
    );
}

#[tokio::test]
async fn async_errors_and_panics_are_recorded_too() {
    use futures_util::FutureExt;
    let client = IntentProofClient::default();
    let fail = client
        .wrap_async(
            WrapOptions::new("i", "test.async_fail"),
            |id: String| async move {
                tokio::task::yield_now().await;
                Err::<(), _>(SaveError(id))
            },
        )
        .unwrap();
    assert_eq!(fail.call("A".into()).await, Err(SaveError("A".into())));
    let boom = client
        .wrap_async(
            WrapOptions::new("i", "test.async_panic"),
            |_: ()| async move {
                tokio::task::yield_now().await;
                if true {
                    panic!("async boom");
                }
                Ok::<(), Infallible>(())
            },
        )
        .unwrap();
    let caught = std::panic::AssertUnwindSafe(boom.call(()))
        .catch_unwind()
        .await;
    assert!(caught.is_err());
    let events = client.memory().unwrap().events();
    assert_eq!(
        events[0].error.as_ref().unwrap().message,
        "could not save A"
    );
    assert_eq!(events[1].error.as_ref().unwrap().name, "panic");
    assert_eq!(events[1].error.as_ref().unwrap().message, "async boom");
}

#[test]
fn exporter_failures_and_panics_never_change_the_result() {
    struct Broken;
    impl Exporter for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn export(&self, _event: &ExecutionEvent) -> Delivery {
            Delivery::Done(Err(ExportError::Other("no disk".into())))
        }
    }
    struct Panicky;
    impl Exporter for Panicky {
        fn name(&self) -> &str {
            "panicky"
        }
        fn export(&self, _event: &ExecutionEvent) -> Delivery {
            panic!("exporter bug")
        }
    }
    let memory = Arc::new(MemoryExporter::new());
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sink = failures.clone();
    let client = IntentProofClient::new(
        IntentProofConfig::default()
            .exporters(vec![Arc::new(Broken), Arc::new(Panicky), memory.clone()])
            .on_exporter_error(move |f| {
                sink.lock().unwrap().push(format!(
                    "{}: {} ({})",
                    f.exporter,
                    f.error,
                    f.event_id.is_some()
                ))
            }),
    );
    let f = client
        .wrap(WrapOptions::new("i", "a"), |n: u32| {
            Ok::<_, Infallible>(n + 1)
        })
        .unwrap();
    assert_eq!(f.call(1).unwrap(), 2);
    assert_eq!(
        memory.events().len(),
        1,
        "later exporters still get the event"
    );
    assert_eq!(
        *failures.lock().unwrap(),
        vec![
            "broken: no disk (true)".to_owned(),
            "panicky: exporter panicked: exporter bug (true)".to_owned()
        ]
    );
}

#[test]
fn attributes_merge_with_wrap_attributes_winning() {
    let client = IntentProofClient::new(
        IntentProofConfig::default()
            .default_attribute("service", "billing-api")
            .default_attribute("env", "test"),
    );
    let f = client
        .wrap(
            WrapOptions::new("i", "a")
                .attribute("env", "prod")
                .attribute("retries", 3)
                .attribute("dry", false),
            |_: ()| Ok::<_, Infallible>(()),
        )
        .unwrap();
    f.call(()).unwrap();
    let attributes = only_event(&client).attributes;
    assert_eq!(attributes["service"], AttributeValue::from("billing-api"));
    assert_eq!(attributes["env"], AttributeValue::from("prod"));
    assert_eq!(attributes["retries"], AttributeValue::from(3));
    assert_eq!(attributes["dry"], AttributeValue::from(false));
}

#[test]
fn snapshot_options_are_forwarded_to_inputs_and_output() {
    let client = IntentProofClient::default();
    let f = client
        .wrap(
            WrapOptions::new("i", "a")
                .redact_keys(["password"])
                .max_string_length(4)
                .max_keys(2)
                .max_depth(3),
            |input: serde_json::Value| Ok::<_, Infallible>(input),
        )
        .unwrap();
    let input =
        json!({"user": "ada lovelace", "PassWord": "hunter2", "z": 1, "deep": {"a": {"b": 1}}});
    f.call(input).unwrap();
    let event = only_event(&client);
    // Inputs are [input]: the array is depth 0, the object depth 1.
    assert_eq!(
        event.inputs,
        Some(
            json!([{"PassWord": "[REDACTED]", "deep": {"a": "[MaxDepth]"}, "[truncated]": "2 more keys"}])
        )
    );
    assert_eq!(
        event.output,
        Some(
            json!({"PassWord": "[REDACTED]", "deep": {"a": {"b": 1}}, "[truncated]": "2 more keys"})
        )
    );
}

#[test]
fn capture_hooks_replace_the_default_snapshots() {
    let client = IntentProofClient::default();
    let f = client
        .wrap(
            WrapOptions::new("i", "a")
                .capture_input(|args| json!({"first": args[0]["id"]}))
                .capture_output(|out| json!({"len": out.as_str().map(str::len)})),
            |input: serde_json::Value| Ok::<_, Infallible>(format!("{input}")),
        )
        .unwrap();
    f.call(json!({"id": "x1", "secret": "s"})).unwrap();
    let event = only_event(&client);
    assert_eq!(event.inputs, Some(json!({"first": "x1"})));
    assert_eq!(event.output, Some(json!({"len": 24})));
}

#[test]
fn configure_applies_to_functions_wrapped_before() {
    let client = IntentProofClient::default();
    let f = client
        .wrap(WrapOptions::new("i", "a"), |_: ()| Ok::<_, Infallible>(()))
        .unwrap();
    let memory = Arc::new(MemoryExporter::new());
    client.configure(
        IntentProofConfig::default()
            .exporters(vec![memory.clone()])
            .default_attribute("env", "prod"),
    );
    f.call(()).unwrap();
    assert_eq!(
        client.memory().map(|m| m.events().len()),
        None,
        "the default memory exporter is gone"
    );
    assert_eq!(
        memory.events()[0].attributes["env"],
        AttributeValue::from("prod")
    );
}

#[test]
fn wrap_rejects_options_that_break_the_shape() {
    let client = IntentProofClient::default();
    let wrap = |options: WrapOptions| {
        client
            .wrap(options, |_: ()| Ok::<_, Infallible>(()))
            .map(|_| ())
            .unwrap_err()
    };
    assert_eq!(wrap(WrapOptions::new("", "a")), OptionsError::BlankIntent);
    assert_eq!(wrap(WrapOptions::new("i", "  ")), OptionsError::BlankAction);
    assert_eq!(
        wrap(WrapOptions::new("i", "a").correlation_id(" ")).to_string(),
        "wrap options: correlation id is blank; pass a non-empty id such as a request or order id"
    );
    assert_eq!(
        wrap(WrapOptions::new("i", "a").attribute(" ", 1)),
        OptionsError::BlankAttributeKey
    );
}

#[test]
fn events_have_v7_ids_and_consistent_timing() {
    let client = IntentProofClient::default();
    let f = client
        .wrap(WrapOptions::new("i", "a"), |_: ()| {
            std::thread::sleep(std::time::Duration::from_millis(3));
            Ok::<_, Infallible>(())
        })
        .unwrap();
    f.call(()).unwrap();
    let event = only_event(&client);
    assert_eq!(event.id.chars().nth(14), Some('7'));
    assert!(event.duration_ms >= 3);
    assert!(
        event.completed_at >= event.started_at,
        "same format: lexical order is time order"
    );
    assert_eq!(event.started_at.len(), "2026-05-11T14:32:17.421Z".len());
}

#[test]
fn a_redactor_cleans_events_before_any_exporter_sees_them() {
    use intentproof::{HashKey, RedactionPolicy, Redactor};
    let dir = tempfile::tempdir().unwrap();
    let redactor = Redactor::new(
        RedactionPolicy::default_policy(),
        HashKey::load_or_create(dir.path()).unwrap(),
    );
    let client = IntentProofClient::new(IntentProofConfig::default().redactor(Arc::new(redactor)));
    let pay = client
        .wrap(
            WrapOptions::new("Charge the card", "stripe.charge"),
            |_input: serde_json::Value| {
                Ok::<_, Infallible>(
                    json!({"ok": true, "api_key": "sk_live_51ABCDEFghijklmnopqrstuv"}),
                )
            },
        )
        .unwrap();
    pay.call(json!({"card": "4242 4242 4242 4242", "password": "hunter2"}))
        .unwrap();
    let event = only_event(&client);
    let stored = serde_json::to_string(&event).unwrap();
    for secret in [
        "4242 4242 4242 4242",
        "hunter2",
        "sk_live_51ABCDEFghijklmnopqrstuv",
    ] {
        assert!(!stored.contains(secret), "{secret} survived: {stored}");
    }
    let summary = event.redaction_summary.unwrap();
    assert_eq!(summary.fields_redacted_count, 3, "{summary:?}");
}
