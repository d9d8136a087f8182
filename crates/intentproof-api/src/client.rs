//! A blocking client of the daemon's HTTP API, shared by the CLI's
//! commands (`intentproof events`, `chains`, `export`, ...) and the
//! terminal UI: the base URL and read token, a private current-thread
//! runtime to drive reqwest on, path segments escaped one by one, and every
//! answer read bounded.
//!
//! It does not find the daemon (the CLI and the TUI resolve the base URL
//! and token from their flags and the data dir) and it does not retry.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::wire::Paged;

/// Most bytes of one answer read: what bundle verification reads at most
/// (the bundle reader's `ReadLimits`), so no answer fills the
/// memory and no bundle is downloaded that could not be verified.
pub const MAX_ANSWER_BYTES: u64 = 512 << 20;

/// How many times [`DaemonClient::get_all_pages`] starts a listing over
/// when it changes while being read.
pub const PAGED_ATTEMPTS: usize = 3;

/// Every row of a paged listing and the generation they come from.
pub type AllRows<P> = (Vec<<P as Paged>::Row>, u64);

/// Why a call failed, in words for the person at the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError(String);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientError {}

/// How an answer's body is arriving (for a progress display).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The headers are in; the body's length when the daemon said it.
    Started(Option<u64>),
    /// This many more bytes of the body arrived.
    Received(usize),
}

/// A client of one daemon.
///
/// ```no_run
/// use intentproof_api::client::DaemonClient;
///
/// let client = DaemonClient::new("http://127.0.0.1:9787", "token".into(), None)?;
/// let chains: intentproof_api::wire::ChainsPage =
///     client.get(&["v1", "chains"], &[("limit", "10".into())])?;
/// println!("{} chains", chains.total);
/// # Ok::<(), intentproof_api::client::ClientError>(())
/// ```
pub struct DaemonClient {
    base: String,
    token: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    max_answer_bytes: u64,
}

impl DaemonClient {
    /// A client of the daemon at `base` (`http://127.0.0.1:9787`) with its
    /// read `token`; `timeout` bounds each whole call (none: no bound).
    pub fn new(
        base: &str,
        token: String,
        timeout: Option<Duration>,
    ) -> Result<DaemonClient, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError(format!("cannot start the async runtime: {e}")))?;
        let mut http = reqwest::Client::builder();
        if let Some(timeout) = timeout {
            http = http.timeout(timeout);
        }
        let http = http
            .build()
            .map_err(|e| ClientError(format!("cannot build the HTTP client: {e}")))?;
        Ok(DaemonClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
            runtime,
            max_answer_bytes: MAX_ANSWER_BYTES,
        })
    }

    /// The daemon's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same client, reading at most `bytes` of an answer.
    pub fn with_max_answer_bytes(mut self, bytes: u64) -> DaemonClient {
        self.max_answer_bytes = bytes;
        self
    }

    /// Whether a daemon answers `GET /healthz` at `base` within `timeout`.
    pub fn probe(base: &str, timeout: Duration) -> bool {
        let Ok(client) = DaemonClient::new(base, String::new(), Some(timeout)) else {
            return false;
        };
        let Ok(url) = client.url(&["healthz"], &[]) else {
            return false;
        };
        client.runtime.block_on(async {
            matches!(client.http.get(url).send().await, Ok(r) if r.status().is_success())
        })
    }

    /// Every row of a paged listing (`/v1/findings`, `/v1/plans`),
    /// following `next_cursor`, and the generation the rows come from.
    /// When the listing changes between pages (its `generation` moves) it
    /// starts over, up to [`PAGED_ATTEMPTS`] times, so the rows are one
    /// consistent state; after that the rows of the last pass are returned
    /// as they are. With `since`, an answer saying nothing changed gives
    /// `None`.
    pub fn get_all_pages<P: Paged>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        since: Option<u64>,
    ) -> Result<Option<AllRows<P>>, ClientError> {
        let mut rows = Vec::new();
        let mut generation = None;
        for _ in 0..PAGED_ATTEMPTS {
            rows.clear();
            generation = None;
            let mut cursor: Option<String> = None;
            let mut moved = false;
            loop {
                let mut asked = query.to_vec();
                if let Some(cursor) = &cursor {
                    asked.push(("cursor", cursor.clone()));
                } else if let Some(since) = since {
                    asked.push(("since", since.to_string()));
                }
                let (page_rows, paging) = self.get::<P>(segments, &asked)?.into_rows();
                if paging.unchanged {
                    return Ok(None);
                }
                if generation.is_some_and(|seen| seen != paging.generation) {
                    moved = true;
                    break;
                }
                generation = Some(paging.generation);
                rows.extend(page_rows);
                match paging.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            if !moved {
                break;
            }
        }
        Ok(Some((rows, generation.unwrap_or_default())))
    }

    /// `GET` the path made of `segments` (each escaped) with `query`; the
    /// JSON answer, as `T` (a [`wire`](crate::wire) type, or `Value`).
    pub fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let url = self.url(segments, query)?;
        decode(&self.send(self.http.get(url), &mut |_| {})?)
    }

    /// `POST` `body` (JSON, if any) to the path made of `segments`; the
    /// JSON answer, as `T`.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        decode(&self.post_bytes(segments, body, &mut |_| {})?)
    }

    /// `POST` `body` (JSON, if any) to the path made of `segments`; the
    /// answer's bytes, with `progress` told as they arrive.
    pub fn post_bytes<B: Serialize>(
        &self,
        segments: &[&str],
        body: Option<&B>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<u8>, ClientError> {
        let mut request = self.http.post(self.url(segments, &[])?);
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body)
                .map_err(|e| ClientError(format!("cannot encode the request: {e}")))?;
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(bytes);
        }
        self.send(request, progress)
    }

    fn url(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<reqwest::Url, ClientError> {
        let mut url = reqwest::Url::parse(&self.base)
            .map_err(|e| ClientError(format!("daemon URL {}: {e}", self.base)))?;
        url.path_segments_mut()
            .map_err(|()| ClientError(format!("daemon URL {} cannot have a path", self.base)))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    fn send(
        &self,
        request: reqwest::RequestBuilder,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<u8>, ClientError> {
        let base = &self.base;
        let limit = self.max_answer_bytes;
        let too_big = || {
            ClientError(format!(
                "the daemon's answer is larger than {} MiB, more than a bundle verification reads; ask for less (one correlation's events page by page: `intentproof events --correlation ...`)",
                limit >> 20
            ))
        };
        self.runtime.block_on(async {
            let mut response = request.bearer_auth(&self.token).send().await.map_err(|e| {
                ClientError(format!(
                    "cannot reach the daemon at {base}: {}; start it with `intentproof serve`, or pass its --server / --data-dir",
                    e.without_url()
                ))
            })?;
            let status = response.status();
            if response.content_length().is_some_and(|len| len > limit) {
                return Err(too_big());
            }
            progress(Progress::Started(response.content_length()));
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| {
                ClientError(format!("reading the daemon's answer from {base}: {e}"))
            })? {
                if (body.len() + chunk.len()) as u64 > limit {
                    return Err(too_big());
                }
                body.extend_from_slice(&chunk);
                progress(Progress::Received(chunk.len()));
            }
            if !status.is_success() {
                let message = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                return Err(ClientError(format!(
                    "the daemon answered {status}: {message}"
                )));
            }
            Ok(body)
        })
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ClientError(format!(
            "the daemon's answer is not what this version reads ({e}); is the daemon from the same release?"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer larger than the limit is refused while it arrives (no
    /// Content-Length to refuse it by), with a message saying what to do.
    #[test]
    fn an_oversized_answer_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = format!("[{}0]", "0,".repeat(1000));
            let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
            let _ = stream.write_all(
                format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{chunked}")
                    .as_bytes(),
            );
        });
        let client = DaemonClient::new(&format!("http://{addr}"), "t".into(), None)
            .unwrap()
            .with_max_answer_bytes(1024);
        let error = client.get::<Value>(&["v1", "findings"], &[]).unwrap_err();
        assert!(
            error.0.contains("answer is larger than") && error.0.contains("page by page"),
            "{error}"
        );
    }

    /// Segments are escaped one by one: an id cannot reach another route.
    #[test]
    fn path_segments_and_query_are_escaped() {
        let client = DaemonClient::new("http://127.0.0.1:9787/", "t".into(), None).unwrap();
        let url = client
            .url(
                &["v1", "plans", "a/../b?c", "close"],
                &[("q", "x&y".into())],
            )
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9787/v1/plans/a%2F..%2Fb%3Fc/close?q=x%26y"
        );
    }
}
