//! `HttpExporter` against a real local collector: headers, exact body,
//! retry on 500, timeout reporting, body-hook fallback.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Collector, Reply};
use intentproof::{
    ExportError, Exporter, HttpExporter, HttpExporterConfig, IntentProofClient, IntentProofConfig,
    MemoryExporter, WrapOptions, envelope,
};

/// A client with the HTTP exporter and a memory twin, whose exporter
/// failures land in the returned list.
fn client_with(
    http: HttpExporter,
) -> (
    IntentProofClient,
    Arc<MemoryExporter>,
    Arc<Mutex<Vec<String>>>,
) {
    let memory = Arc::new(MemoryExporter::new());
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sink = failures.clone();
    let client = IntentProofClient::new(
        IntentProofConfig::default()
            .exporters(vec![Arc::new(http) as Arc<dyn Exporter>, memory.clone()])
            .on_exporter_error(move |failure| {
                sink.lock()
                    .unwrap()
                    .push(format!("{}: {}", failure.exporter, failure.error));
            }),
    );
    (client, memory, failures)
}

fn call_once(client: &IntentProofClient) {
    let f = client
        .wrap(WrapOptions::new("HTTP test", "test.http"), |n: u32| {
            Ok::<_, Infallible>(n * 2)
        })
        .unwrap();
    assert_eq!(f.call(21).unwrap(), 42);
}

#[tokio::test]
async fn sends_configured_headers_and_the_exact_envelope() {
    let collector = Collector::start(vec![]).await;
    let http = HttpExporter::new(HttpExporterConfig {
        headers: vec![
            ("Authorization".into(), "Bearer s3cret-token".into()),
            ("x-api-key".into(), "k-123".into()),
        ],
        ..HttpExporterConfig::new(&collector.url)
    })
    .unwrap();
    let (client, memory, failures) = client_with(http);
    call_once(&client);
    client.flush().await;

    let received = collector.received();
    assert_eq!(received.len(), 1);
    let headers = &received[0].headers;
    assert_eq!(headers.get("authorization").unwrap(), "Bearer s3cret-token");
    assert_eq!(headers.get("x-api-key").unwrap(), "k-123");
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    let event = memory.events().remove(0);
    assert_eq!(
        received[0].body,
        serde_json::to_vec(&envelope(&event)).unwrap()
    );
    assert!(failures.lock().unwrap().is_empty());
}

#[tokio::test]
async fn header_values_never_appear_in_debug_output() {
    let config = HttpExporterConfig {
        headers: vec![("Authorization".into(), "Bearer s3cret-token".into())],
        ..HttpExporterConfig::new("http://127.0.0.1:9/v1/events")
    };
    let exporter = HttpExporter::new(config.clone()).unwrap();
    for text in [format!("{config:?}"), format!("{exporter:?}")] {
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("Authorization"), "{text}");
    }
}

#[tokio::test]
async fn a_500_is_retried_and_then_succeeds() {
    let collector = Collector::start(vec![Reply::Status(500), Reply::Status(503)]).await;
    let http = HttpExporter::new(HttpExporterConfig {
        backoff: Duration::from_millis(5),
        ..HttpExporterConfig::new(&collector.url)
    })
    .unwrap();
    let (client, _memory, failures) = client_with(http);
    call_once(&client);
    client.flush().await;

    let received = collector.received();
    assert_eq!(received.len(), 3, "500, 503, then 202");
    assert_eq!(
        received[0].body, received[2].body,
        "retries resend the same body"
    );
    assert!(
        failures.lock().unwrap().is_empty(),
        "{:?}",
        failures.lock().unwrap()
    );
}

/// A collector's `Retry-After` is waited out, however short the
/// configured backoff (the wait is a lower bound: a slow machine only
/// makes it longer).
#[tokio::test]
async fn a_503_with_retry_after_is_retried_no_sooner_than_it_asks() {
    let collector = Collector::start(vec![Reply::RetryAfter(503, 1)]).await;
    let http = HttpExporter::new(HttpExporterConfig {
        backoff: Duration::from_millis(1),
        ..HttpExporterConfig::new(&collector.url)
    })
    .unwrap();
    let (client, _memory, failures) = client_with(http);
    call_once(&client);
    client.flush().await;

    let received = collector.received();
    assert_eq!(received.len(), 2, "503 with Retry-After: 1, then 202");
    let gap = received[1].at.duration_since(received[0].at);
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    assert!(failures.lock().unwrap().is_empty());
}

#[tokio::test]
async fn retries_give_up_after_max_retries_and_report_the_status() {
    let collector = Collector::start(vec![Reply::Status(500); 5]).await;
    let http = HttpExporter::new(HttpExporterConfig {
        backoff: Duration::from_millis(1),
        max_retries: 2,
        ..HttpExporterConfig::new(&collector.url)
    })
    .unwrap();
    let (client, _memory, failures) = client_with(http);
    call_once(&client);
    client.flush().await;
    assert_eq!(collector.received().len(), 3);
    assert_eq!(
        *failures.lock().unwrap(),
        vec![format!(
            "http: collector at {} answered HTTP 500 after 3 attempt(s); check the collector's logs and the exporter's URL and credentials",
            collector.url
        )]
    );
}

#[tokio::test]
async fn a_4xx_is_not_retried() {
    let collector = Collector::start(vec![Reply::Status(401)]).await;
    let http = HttpExporter::new(HttpExporterConfig::new(&collector.url)).unwrap();
    let (client, _memory, failures) = client_with(http);
    call_once(&client);
    client.flush().await;
    assert_eq!(collector.received().len(), 1);
    assert_eq!(failures.lock().unwrap().len(), 1);
    assert!(failures.lock().unwrap()[0].contains("HTTP 401 after 1 attempt(s)"));
}

#[tokio::test]
async fn a_timeout_is_reported_and_the_call_result_is_unchanged() {
    let collector = Collector::start(vec![Reply::Delay(Duration::from_secs(5))]).await;
    let http = HttpExporter::new(HttpExporterConfig {
        timeout: Duration::from_millis(100),
        max_retries: 0,
        ..HttpExporterConfig::new(&collector.url)
    })
    .unwrap();
    let (client, memory, failures) = client_with(http);
    call_once(&client); // asserts the wrapped call returned 42
    client.flush().await;
    assert_eq!(memory.events().len(), 1);
    assert_eq!(
        *failures.lock().unwrap(),
        vec![format!(
            "http: collector at {} did not answer within 100 ms after 1 attempt(s); raise the timeout or check the collector",
            collector.url
        )]
    );
}

#[tokio::test]
async fn connection_refused_is_reported_as_transport_error() {
    // Bind then drop a listener: its port is very likely closed now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1/events");
    let http = HttpExporter::new(HttpExporterConfig {
        max_retries: 1,
        backoff: Duration::from_millis(1),
        ..HttpExporterConfig::new(&url)
    })
    .unwrap();
    let (client, _memory, failures) = client_with(http);
    call_once(&client);
    client.flush().await;
    let failures = failures.lock().unwrap();
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].starts_with(&format!(
            "http: could not reach collector at {url} after 2 attempt(s): "
        )),
        "{}",
        failures[0]
    );
}

#[tokio::test]
async fn a_failing_body_hook_falls_back_to_the_envelope_and_is_reported() {
    let collector = Collector::start(vec![]).await;
    let hook_errors = Arc::new(Mutex::new(Vec::new()));
    let sink = hook_errors.clone();
    let http = HttpExporter::new(HttpExporterConfig {
        body: Some(Arc::new(|_event| Err("template missing".to_owned()))),
        on_error: Some(Arc::new(move |e: &ExportError| {
            sink.lock().unwrap().push(e.clone())
        })),
        ..HttpExporterConfig::new(&collector.url)
    })
    .unwrap();
    let (client, memory, failures) = client_with(http);
    call_once(&client);
    client.flush().await;

    let event = memory.events().remove(0);
    let received = collector.received();
    assert_eq!(received.len(), 1, "the export still completes");
    assert_eq!(
        received[0].body,
        serde_json::to_vec(&envelope(&event)).unwrap()
    );
    assert_eq!(
        *hook_errors.lock().unwrap(),
        vec![ExportError::BodyHook("template missing".into())]
    );
    assert!(failures.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_panicking_body_hook_also_falls_back() {
    let collector = Collector::start(vec![]).await;
    let hook_errors = Arc::new(Mutex::new(Vec::new()));
    let sink = hook_errors.clone();
    let http = HttpExporter::new(HttpExporterConfig {
        body: Some(Arc::new(|_event| panic!("hook bug"))),
        on_error: Some(Arc::new(move |e: &ExportError| {
            sink.lock().unwrap().push(e.to_string())
        })),
        ..HttpExporterConfig::new(&collector.url)
    })
    .unwrap();
    let (client, memory, _failures) = client_with(http);
    call_once(&client);
    client.flush().await;
    let event = memory.events().remove(0);
    assert_eq!(
        collector.received()[0].body,
        serde_json::to_vec(&envelope(&event)).unwrap()
    );
    assert_eq!(
        *hook_errors.lock().unwrap(),
        vec![
            "custom body hook failed (the body hook panicked); sent the default envelope instead"
                .to_owned()
        ]
    );
}

#[tokio::test]
async fn a_working_body_hook_replaces_the_body() {
    let collector = Collector::start(vec![]).await;
    let http = HttpExporter::new(HttpExporterConfig {
        body: Some(Arc::new(|event| {
            Ok(serde_json::json!({"only": event.action}))
        })),
        ..HttpExporterConfig::new(&collector.url)
    })
    .unwrap();
    let (client, _memory, _failures) = client_with(http);
    call_once(&client);
    client.flush().await;
    assert_eq!(collector.received()[0].body, br#"{"only":"test.http"}"#);
}

#[test]
fn invalid_configuration_is_rejected_with_the_reason() {
    let err = HttpExporter::new(HttpExporterConfig::new("not a url")).unwrap_err();
    assert!(
        err.to_string().contains("\"not a url\" is not a valid URL"),
        "{err}"
    );
    let err = HttpExporter::new(HttpExporterConfig::new("ftp://host/x")).unwrap_err();
    assert!(err.to_string().contains("use http or https"), "{err}");
    let err = HttpExporter::new(HttpExporterConfig {
        headers: vec![("bad header".into(), "v".into())],
        ..HttpExporterConfig::new("http://127.0.0.1/")
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("\"bad header\" is not a valid HTTP header name"),
        "{err}"
    );
}
