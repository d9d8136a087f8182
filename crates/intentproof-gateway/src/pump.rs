//! Daemon exporters: each configured collector gets every stored event, in
//! journal order, at least once. Its position is a durable cursor in the
//! store, moved only after the collector answered 2xx, so a restart resumes
//! where delivery stopped. A slow or dead collector never blocks ingest: it
//! only falls behind.

use std::sync::Arc;
use std::time::Duration;

use intentproof_core::backoff::{Backoff, retry_after_header};
use intentproof_store::Store;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{Notify, watch};

use crate::config::ExporterConfig;
use crate::metrics::Metrics;

/// The HTTP client of a delivery loop (exporters, witness clients): one
/// time limit per request, redirects never followed (a collector or a
/// witness that moves must be reconfigured, not followed blindly).
pub(crate) fn delivery_client(timeout_ms: u64) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// The headers of a delivery loop's POSTs: the configured ones (marked
/// sensitive, so never logged; one that is not valid HTTP is dropped with
/// an error naming it), and `Content-Type: application/json`.
pub(crate) fn request_headers(
    name: &str,
    configured: &std::collections::BTreeMap<String, String>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (header, value) in configured {
        match (
            HeaderName::from_bytes(header.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(header), Ok(mut value)) => {
                value.set_sensitive(true);
                headers.insert(header, value);
            }
            _ => {
                tracing::error!(receiver = %name, header = %header, "configured header is not valid HTTP; it is not sent")
            }
        }
    }
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers
}

/// Runs one exporter until `stop` turns true.
pub async fn run(
    config: ExporterConfig,
    store: Arc<Store>,
    appended: Arc<Notify>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let headers = request_headers(&config.name, &config.headers);
    let client = match delivery_client(config.timeout_ms) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(exporter = %config.name, error = %e, "exporter disabled: cannot build HTTP client");
            return;
        }
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        if *stop.borrow() {
            return;
        }
        let wake = appended.notified();
        let cursor_store = Arc::clone(&store);
        let name = config.name.clone();
        let next = tokio::task::spawn_blocking(move || {
            let cursor = cursor_store.cursor(&name)?;
            Ok::<_, intentproof_store::StoreError>((
                cursor,
                match cursor_store.by_seq(cursor)? {
                    Some(stored) => Some(cursor_store.raw(&stored.entry)?),
                    None => None,
                },
            ))
        })
        .await;
        let (cursor, body) = match next {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::error!(exporter = %config.name, error = %e, "exporter cannot read the store");
                (0, None)
            }
            Err(_) => return,
        };
        let Some(body) = body else {
            // Caught up: sleep until something is appended (or a minute).
            tokio::select! {
                _ = wake => {}
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = stop.changed() => return,
            }
            continue;
        };
        let sent = client
            .post(&config.url)
            .headers(headers.clone())
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                metrics.exported(true);
                backoff.reset();
                let cursor_store = Arc::clone(&store);
                let name = config.name.clone();
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || cursor_store.set_cursor(&name, cursor + 1))
                        .await
                {
                    tracing::error!(exporter = %config.name, error = %e, "exporter cannot save its cursor");
                }
            }
            failed => {
                metrics.exported(false);
                let log = |why: &str, wait: Duration| {
                    tracing::warn!(exporter = %config.name, record = cursor, error = %why, retry_in_ms = wait.as_millis() as u64, "exporter delivery failed; will retry");
                };
                if !back_off(failed, &mut backoff, &mut stop, log).await {
                    return;
                }
            }
        }
    }
}

/// After a failed delivery (an error, or an answer that is not 2xx): waits
/// the backoff's next step, at least the receiver's `Retry-After`, after
/// `log` was told why and for how long. False when `stop` turned true
/// meanwhile.
pub(crate) async fn back_off(
    failed: reqwest::Result<reqwest::Response>,
    backoff: &mut Backoff,
    stop: &mut watch::Receiver<bool>,
    log: impl FnOnce(&str, Duration),
) -> bool {
    let (why, retry_after) = match failed {
        Ok(response) => (
            format!("HTTP {}", response.status()),
            retry_after_header(
                response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .map(|v| v.as_bytes()),
            ),
        ),
        Err(e) => (e.without_url().to_string(), None),
    };
    let wait = backoff.next_wait(retry_after);
    log(&why, wait);
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = stop.changed() => false,
    }
}
