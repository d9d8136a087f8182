//! The HTTP API proxy against a real local upstream (axum on 127.0.0.1:0):
//! every kind of call produces exactly the expected event, the agent's
//! response is the same bytes as a direct call, secrets never reach the
//! store, and requests aimed anywhere but the configured upstream are
//! refused and recorded. The 50 MB download is in `http_proxy_download.rs`
//! (its own binary, to measure memory alone).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use intentproof_core::ExecutionEvent;
use intentproof_gateway::{Config, Daemon};
use intentproof_http_proxy::config::{HttpAction, HttpRouteConfig};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// What the upstream received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: HeaderMap,
}

#[derive(Clone)]
struct UpstreamState {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Each permit lets one SSE stream send its second event.
    release: Arc<Semaphore>,
    /// Where `/api/offsite` redirects (another host).
    offsite: String,
}

fn json_response(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-request-id", "req-1")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn upstream_handler(State(state): State<UpstreamState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    state.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
    });
    let path = parts.uri.path();
    match (parts.method.as_str(), path) {
        ("POST", "/api/v1/refunds") => {
            let request: Value = serde_json::from_slice(&body).unwrap();
            json_response(
                201,
                json!({"id": "re_1", "status": "pending", "amount": request["amount"]}),
            )
        }
        ("GET", "/api/v1/missing") => json_response(404, json!({"error": "no such refund"})),
        ("GET", "/api/v1/boom") => Response::builder()
            .status(503)
            .header("content-type", "text/plain; charset=utf-8")
            .header("retry-after", "7")
            .body(Body::from("upstream overloaded"))
            .unwrap(),
        ("GET", p) if p.starts_with("/api/v1/refunds/") => json_response(
            200,
            json!({"id": &p["/api/v1/refunds/".len()..], "status": "succeeded"}),
        ),
        ("GET", "/api/events") => {
            let release = Arc::clone(&state.release);
            let frames = futures_util::stream::unfold(0u8, move |n| {
                let release = Arc::clone(&release);
                async move {
                    match n {
                        0 => Some((Ok::<_, std::io::Error>(Bytes::from("data: one\n\n")), 1)),
                        1 => {
                            release.acquire().await.unwrap().forget();
                            Some((Ok(Bytes::from("data: two\n\n")), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(Body::from_stream(frames))
                .unwrap()
        }
        ("GET", "/api/redirect") => Response::builder()
            .status(302)
            .header("location", "/api/v1/refunds/re_9")
            .body(Body::empty())
            .unwrap(),
        ("GET", "/api/offsite") => Response::builder()
            .status(302)
            .header("location", state.offsite.clone())
            .body(Body::empty())
            .unwrap(),
        ("POST", "/api/echo") => Response::builder()
            .header(
                "content-type",
                parts
                    .headers
                    .get("content-type")
                    .cloned()
                    .unwrap_or_else(|| "application/octet-stream".parse().unwrap()),
            )
            .body(Body::from(body))
            .unwrap(),
        _ => Response::builder()
            .status(404)
            .body(Body::from("no route"))
            .unwrap(),
    }
}

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// A server that accepts connections and never answers.
async fn silent_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// An address nothing listens on: bound (so no other test's server can
/// take the port while this fixture lives) but never listening, so a
/// connection is refused.
fn closed_port() -> (SocketAddr, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    (socket.local_addr().unwrap(), socket)
}

const UPSTREAM_SECRET: &str = "sk_live_UPSTREAM_SECRET_4f1e";

struct Fixture {
    daemon: Daemon,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    token: String,
    upstream: SocketAddr,
    state: UpstreamState,
    /// Keeps the "down" route's port reserved.
    _closed: tokio::net::TcpSocket,
}

async fn start() -> Fixture {
    let offsite = serve(axum::Router::new()).await;
    let state = UpstreamState {
        seen: Arc::default(),
        release: Arc::new(Semaphore::new(0)),
        offsite: format!("http://{offsite}/x"),
    };
    let upstream = serve(
        axum::Router::new()
            .fallback(upstream_handler)
            .with_state(state.clone()),
    )
    .await;
    let silent = silent_server().await;
    let (closed, closed_socket) = closed_port();
    let base = format!("http://{upstream}/api");

    let mut pay = HttpRouteConfig::new("pay", &base);
    pay.headers
        .insert("Authorization".into(), format!("Bearer {UPSTREAM_SECRET}"));
    pay.action = Some(HttpAction::Paths(vec![
        "/v1/refunds/{id}".into(),
        "/v1/refunds".into(),
    ]));
    let plain = HttpRouteConfig::new("plain", &base);
    let mut strict = HttpRouteConfig::new("strict", &base);
    strict.error_on_4xx = true;
    let mut follow = HttpRouteConfig::new("follow", &base);
    follow.follow_redirects = true;
    let mut slow = HttpRouteConfig::new("slow", format!("http://{silent}"));
    slow.timeout_ms = 200;
    let down = HttpRouteConfig::new("down", format!("http://{closed}"));
    let mut echo = HttpRouteConfig::new("echo", &base);
    echo.record_request_headers = ["authorization", "cookie", "x-api-key", "x-trace-note"]
        .map(String::from)
        .to_vec();
    echo.record_response_headers = vec!["content-type".into(), "set-cookie".into()];
    let mut small = HttpRouteConfig::new("small", &base);
    small.max_body_bytes = 16;

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        checkpoint_interval_secs: 0,
        ..Config::default()
    };
    config.http.routes = vec![pay, plain, strict, follow, slow, down, echo, small];
    let daemon = Daemon::start(config).await.unwrap();
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    Fixture {
        daemon,
        dir,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        token,
        upstream,
        state,
        _closed: closed_socket,
    }
}

/// Status, headers and body bytes of one response.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    /// Sends `request` and reads the whole answer.
    async fn send(request: reqwest::RequestBuilder) -> Answer {
        Answer::read(request.send().await.unwrap()).await
    }

    async fn read(response: reqwest::Response) -> Answer {
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Headers as a sorted list, without `date` (the only header that may
/// differ between two calls).
fn comparable(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    let mut list: Vec<(String, Vec<u8>)> = headers
        .iter()
        .filter(|(name, _)| name.as_str() != "date")
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    list.sort();
    list
}

/// The agent-side response equals the direct one, byte for byte.
fn assert_same(direct: &Answer, proxied: &Answer) {
    assert_eq!(proxied.status, direct.status);
    assert_eq!(comparable(&proxied.headers), comparable(&direct.headers));
    assert_eq!(proxied.body, direct.body);
}

impl Fixture {
    fn proxy(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/proxy/{path}", self.daemon.url()))
            .header("x-intentproof-token", &self.token)
    }

    fn direct(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("http://{}/api/{path}", self.upstream))
    }

    async fn api(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.daemon.url()))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Stores an event through the daemon's envelope ingest, authenticated
    /// (plan declarations are reserved actions).
    async fn ingest(&self, event: &ExecutionEvent) {
        let stored = self
            .http
            .post(format!("{}/v1/events", self.daemon.url()))
            .bearer_auth(&self.token)
            .json(&json!({"intentproof": "1", "event": event}))
            .send()
            .await
            .unwrap();
        assert_eq!(stored.status(), 202);
    }

    /// The events of a correlation, once `n` are stored.
    async fn events(&self, correlation: &str, n: usize) -> Vec<Value> {
        for _ in 0..1000 {
            let page = self
                .api(&format!("/v1/events?correlation={correlation}"))
                .await;
            let events: Vec<Value> = page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event"].clone())
                .collect();
            if events.len() >= n {
                assert_eq!(events.len(), n, "more events than expected: {events:#?}");
                return events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no {n} events for correlation {correlation}");
    }

    async fn event(&self, correlation: &str) -> Value {
        self.events(correlation, 1).await.remove(0)
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

/// The recorded facts of an event (not its id, times or seal).
fn facts(event: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in [
        "intent",
        "action",
        "correlation_id",
        "status",
        "inputs",
        "output",
        "error",
        "attributes",
    ] {
        if let Some(v) = event.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    Value::Object(out)
}

fn sha256(bytes: &[u8]) -> String {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    format!("sha256:{}", intentproof_core::merkle::hex(&digest))
}

#[tokio::test]
async fn json_post_is_forwarded_with_the_routes_credentials_and_recorded_exactly() {
    let f = start().await;
    let body = r#"{"amount":4999,"order":"ORD-1"}"#;
    let direct = Answer::send(
        f.direct(reqwest::Method::POST, "v1/refunds?expand=charge")
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    let proxied = Answer::send(
        f.proxy(reqwest::Method::POST, "pay/v1/refunds?expand=charge")
            .header("content-type", "application/json")
            .header("x-intentproof-intent", "Refund order ORD-1")
            .header("x-intentproof-correlation-id", "c-post")
            .body(body),
    )
    .await;
    assert_eq!(proxied.status, 201);
    assert_same(&direct, &proxied);

    let event = f.event("c-post").await;
    assert_eq!(
        facts(&event),
        json!({
            "intent": "Refund order ORD-1",
            "action": "http.pay.POST./v1/refunds",
            "correlation_id": "c-post",
            "status": "ok",
            "inputs": {
                "method": "POST",
                "path": "/v1/refunds",
                "query": {"expand": "charge"},
                "headers": {"accept": "*/*", "content-type": "application/json"},
                "body": {"amount": 4999, "order": "ORD-1"},
                "body_bytes": body.len(),
            },
            "output": {
                "status": 201,
                "headers": {"content-type": "application/json"},
                "body": {"id": "re_1", "status": "pending", "amount": 4999},
                "body_bytes": proxied.body.len(),
            },
            "attributes": {
                "http.route": "pay",
                "http.method": "POST",
                "http.path_template": "/v1/refunds",
                "http.status_code": 201,
            },
        })
    );

    // What the upstream got: the route's credentials, none of the
    // gateway's headers, its own Host, the same path and query.
    let seen = f.seen();
    let upstream_call = seen.last().unwrap();
    assert_eq!(upstream_call.method, "POST");
    assert_eq!(upstream_call.uri, "/api/v1/refunds?expand=charge");
    let h = &upstream_call.headers;
    assert_eq!(
        h.get("authorization").unwrap(),
        &format!("Bearer {UPSTREAM_SECRET}")
    );
    assert_eq!(h.get("host").unwrap(), &f.upstream.to_string());
    assert!(
        h.keys().all(|k| !k.as_str().starts_with("x-intentproof-")),
        "{h:?}"
    );
}

#[tokio::test]
async fn json_get_takes_its_correlation_from_traceparent_and_the_gateway_token_never_goes_upstream()
{
    let f = start().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let direct = Answer::send(f.direct(reqwest::Method::GET, "v1/refunds/re_42")).await;
    // The token as `Authorization: Bearer`, on a route without credentials.
    let proxied = Answer::send(
        f.http
            .get(format!("{}/proxy/plain/v1/refunds/re_42", f.daemon.url()))
            .bearer_auth(&f.token)
            .header("traceparent", traceparent),
    )
    .await;
    assert_same(&direct, &proxied);
    assert_eq!(
        proxied.json(),
        json!({"id": "re_42", "status": "succeeded"})
    );

    let event = f.event("4bf92f3577b34da6a3ce929d0e0e4736").await;
    assert_eq!(
        facts(&event),
        json!({
            "intent": "undeclared",
            "action": "http.plain.GET./v1/refunds/re_42",
            "correlation_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "status": "ok",
            "inputs": {
                "method": "GET",
                "path": "/v1/refunds/re_42",
                "headers": {"accept": "*/*"},
                "body_bytes": 0,
            },
            "output": {
                "status": 200,
                "headers": {"content-type": "application/json"},
                "body": {"id": "re_42", "status": "succeeded"},
                "body_bytes": proxied.body.len(),
            },
            "attributes": {
                "http.route": "plain",
                "http.method": "GET",
                "http.status_code": 200,
                "intentproof.traceparent": traceparent,
            },
        })
    );
    let seen = f.seen();
    let h = &seen.last().unwrap().headers;
    assert_eq!(
        h.get("authorization"),
        None,
        "the gateway token went upstream"
    );
    assert_eq!(h.get("traceparent").unwrap(), traceparent);
}

#[tokio::test]
async fn the_open_plan_of_the_correlation_gives_the_intent_and_the_step() {
    let f = start().await;
    let declaration = ExecutionEvent::builder("Refund ORD-7", "intentproof.plan.declare")
        .correlation_id("c-plan")
        .inputs(json!({
            "intent": "Refund ORD-7",
            "steps": [
                {"tool": "http.pay.POST./v1/refunds", "purpose": "Create the refund"},
                {"tool": "http.pay.GET./v1/refunds/{id}", "purpose": "Check that the refund went through"},
            ],
        }))
        .output(json!({"plan_id": "plan-7", "correlation_id": "c-plan"}))
        // Declared through an MCP server's plan tool: full `http.` actions stay as they are.
        .attributes(intentproof_core::Attributes::from([(
            "mcp.server".to_owned(),
            "payments".into(),
        )]))
        .build();
    f.ingest(&declaration).await;

    // A proxied call on c-plan: its event, the correlation's `n`th.
    let proxied = |n: usize| {
        let f = &f;
        async move {
            let answer = f
                .proxy(reqwest::Method::GET, "pay/v1/refunds/re_7")
                .header("x-intentproof-correlation-id", "c-plan")
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
            f.events("c-plan", n).await.remove(n - 1)
        }
    };
    let call = &proxied(2).await;
    assert_eq!(call["intent"], "Check that the refund went through");
    assert_eq!(call["action"], "http.pay.GET./v1/refunds/{id}");
    assert_eq!(
        call["attributes"],
        json!({
            "http.route": "pay",
            "http.method": "GET",
            "http.path_template": "/v1/refunds/{id}",
            "http.status_code": 200,
            "intentproof.plan.id": "plan-7",
            "intentproof.plan.step": 1,
        })
    );

    // Closed, the plan names the step that never ran, in its own action.
    let closed: Value = f
        .http
        .post(format!("{}/v1/plans/plan-7/close", f.daemon.url()))
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let flags: Vec<(&str, &str)> = closed["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap(), f["action"].as_str().unwrap()))
        .collect();
    assert_eq!(flags, [("incomplete_intent", "http.pay.POST./v1/refunds")]);

    // The proxy reads only what the correlation stored since its last
    // call; it still sees the close, then a new plan.
    let after_close = proxied(4).await; // declaration, call, close, this call
    assert_eq!(after_close["intent"], "undeclared");
    assert!(
        after_close["attributes"]
            .get("intentproof.plan.id")
            .is_none()
    );
    let declaration = ExecutionEvent::builder("Check ORD-8", "intentproof.plan.declare")
        .correlation_id("c-plan")
        .inputs(json!({
            "intent": "Check ORD-8",
            "steps": [{"tool": "http.pay.GET./v1/refunds/{id}", "purpose": "Look the refund up"}],
        }))
        .output(json!({"plan_id": "plan-8", "correlation_id": "c-plan"}))
        .build();
    f.ingest(&declaration).await;
    let under_new_plan = proxied(6).await;
    assert_eq!(under_new_plan["intent"], "Look the refund up");
    assert_eq!(
        under_new_plan["attributes"]["intentproof.plan.id"],
        "plan-8"
    );
    assert_eq!(under_new_plan["attributes"]["intentproof.plan.step"], 0);
}

#[tokio::test]
async fn a_proxied_call_with_no_plan_is_an_unplanned_call() {
    let f = start().await;
    let answer = f
        .proxy(reqwest::Method::GET, "plain/v1/refunds/re_3")
        .header("x-intentproof-correlation-id", "c-noplan")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let event = f.event("c-noplan").await;
    let findings = f.api("/v1/findings").await;
    let rows: Vec<&Value> = findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["correlation_id"] == "c-noplan")
        .collect();
    assert_eq!(rows.len(), 1, "{findings}");
    assert_eq!(rows[0]["kind"], "unplanned_call");
    assert_eq!(rows[0]["action"], "http.plain.GET./v1/refunds/re_3");
    assert_eq!(rows[0]["event_ids"], json!([event["event_id"]]));
    assert_eq!(
        rows[0]["message"],
        "http.plain.GET./v1/refunds/re_3 was called with no plan declared"
    );
}

#[tokio::test]
async fn a_4xx_is_ok_by_default_and_an_error_when_the_route_says_so() {
    let f = start().await;
    let direct = Answer::send(f.direct(reqwest::Method::GET, "v1/missing")).await;
    for (route, correlation) in [("pay", "c-404"), ("strict", "c-404-strict")] {
        let proxied = Answer::send(
            f.proxy(reqwest::Method::GET, &format!("{route}/v1/missing"))
                .header("x-intentproof-correlation-id", correlation),
        )
        .await;
        assert_same(&direct, &proxied);
    }
    let output = json!({
        "status": 404,
        "headers": {"content-type": "application/json"},
        "body": {"error": "no such refund"},
        "body_bytes": direct.body.len(),
    });
    let inputs = json!({
        "method": "GET",
        "path": "/v1/missing",
        "headers": {"accept": "*/*"},
        "body_bytes": 0,
    });
    assert_eq!(
        facts(&f.event("c-404").await),
        json!({
            "intent": "undeclared",
            "action": "http.pay.GET./v1/missing",
            "correlation_id": "c-404",
            "status": "ok",
            "inputs": inputs,
            "output": output,
            "attributes": {"http.route": "pay", "http.method": "GET", "http.status_code": 404},
        })
    );
    assert_eq!(
        facts(&f.event("c-404-strict").await),
        json!({
            "intent": "undeclared",
            "action": "http.strict.GET./v1/missing",
            "correlation_id": "c-404-strict",
            "status": "error",
            "inputs": inputs,
            "output": output,
            "error": {"name": "HttpError", "message": "the upstream answered 404 Not Found"},
            "attributes": {"http.route": "strict", "http.method": "GET", "http.status_code": 404},
        })
    );
}

#[tokio::test]
async fn a_5xx_is_an_error_and_its_non_json_body_is_recorded_as_size_and_hash() {
    let f = start().await;
    let direct = Answer::send(f.direct(reqwest::Method::GET, "v1/boom")).await;
    let proxied = Answer::send(
        f.proxy(reqwest::Method::GET, "pay/v1/boom")
            .header("x-intentproof-correlation-id", "c-503"),
    )
    .await;
    assert_same(&direct, &proxied);
    assert_eq!(&proxied.body[..], b"upstream overloaded");
    assert_eq!(
        facts(&f.event("c-503").await),
        json!({
            "intent": "undeclared",
            "action": "http.pay.GET./v1/boom",
            "correlation_id": "c-503",
            "status": "error",
            "inputs": {"method": "GET", "path": "/v1/boom", "headers": {"accept": "*/*"}, "body_bytes": 0},
            "output": {
                "status": 503,
                "headers": {"content-type": "text/plain; charset=utf-8", "retry-after": "7"},
                "body_bytes": 19,
                "body_sha256": sha256(b"upstream overloaded"),
            },
            "error": {"name": "HttpError", "message": "the upstream answered 503 Service Unavailable"},
            "attributes": {"http.route": "pay", "http.method": "GET", "http.status_code": 503},
        })
    );
}

#[tokio::test]
async fn an_upstream_that_never_answers_times_out_with_504() {
    let f = start().await;
    let answer = Answer::send(
        f.proxy(reqwest::Method::GET, "slow/anything")
            .header("x-intentproof-correlation-id", "c-timeout"),
    )
    .await;
    let message = "the upstream of route \"slow\" did not answer within timeout_ms = 200";
    assert_eq!(answer.status, 504);
    assert_eq!(
        answer.json(),
        json!({"error": message, "reason": "upstream_timeout"})
    );
    assert_eq!(
        facts(&f.event("c-timeout").await),
        json!({
            "intent": "undeclared",
            "action": "http.slow.GET./anything",
            "correlation_id": "c-timeout",
            "status": "error",
            "inputs": {"method": "GET", "path": "/anything", "headers": {"accept": "*/*"}, "body_bytes": 0},
            "error": {"name": "Timeout", "message": message},
            "attributes": {"http.route": "slow", "http.method": "GET"},
        })
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_502_and_an_error_event() {
    let f = start().await;
    let answer = Answer::send(
        f.proxy(reqwest::Method::POST, "down/v1/things")
            .header("x-intentproof-correlation-id", "c-down")
            .header("content-type", "application/json")
            .body(r#"{"n":1}"#),
    )
    .await;
    let message =
        "cannot connect to the upstream of route \"down\": Connection refused (os error 111)";
    assert_eq!(answer.status, 502);
    assert_eq!(
        answer.json(),
        json!({"error": message, "reason": "upstream_unreachable"})
    );
    assert_eq!(
        facts(&f.event("c-down").await),
        json!({
            "intent": "undeclared",
            "action": "http.down.POST./v1/things",
            "correlation_id": "c-down",
            "status": "error",
            "inputs": {
                "method": "POST",
                "path": "/v1/things",
                "headers": {"accept": "*/*", "content-type": "application/json"},
                "body": {"n": 1},
                "body_bytes": 7,
            },
            "error": {"name": "ConnectError", "message": message},
            "attributes": {"http.route": "down", "http.method": "POST"},
        })
    );
}

/// Reads a streamed body until it holds `want`, chunk by chunk.
async fn read_until(response: &mut reqwest::Response, got: &mut Vec<u8>, want: &[u8]) {
    while !got.ends_with(want) {
        let chunk = response
            .chunk()
            .await
            .unwrap()
            .expect("the stream ended early");
        got.extend_from_slice(&chunk);
    }
}

#[tokio::test]
async fn an_sse_stream_passes_through_unbuffered_and_is_recorded_when_it_ends() {
    let f = start().await;
    let guard = async {
        let mut answers = Vec::new();
        for (proxied, correlation) in [(false, ""), (true, "c-sse")] {
            let mut response = if proxied {
                f.proxy(reqwest::Method::GET, "pay/events")
                    .header("x-intentproof-correlation-id", correlation)
                    .send()
                    .await
                    .unwrap()
            } else {
                f.direct(reqwest::Method::GET, "events")
                    .send()
                    .await
                    .unwrap()
            };
            let (status, headers) = (response.status().as_u16(), response.headers().clone());
            let mut got = Vec::new();
            // The first event arrives while the upstream still holds the
            // second: nothing waits for the end of the stream.
            read_until(&mut response, &mut got, b"data: one\n\n").await;
            assert_eq!(got, b"data: one\n\n");
            f.state.release.add_permits(1);
            while let Some(chunk) = response.chunk().await.unwrap() {
                got.extend_from_slice(&chunk);
            }
            answers.push(Answer {
                status,
                headers,
                body: Bytes::from(got),
            });
        }
        answers
    };
    let answers = tokio::time::timeout(Duration::from_secs(60), guard)
        .await
        .expect("the SSE stream stalled: the proxy is buffering it");
    assert_same(&answers[0], &answers[1]);
    let body = b"data: one\n\ndata: two\n\n";
    assert_eq!(&answers[1].body[..], body);
    assert_eq!(
        facts(&f.event("c-sse").await),
        json!({
            "intent": "undeclared",
            "action": "http.pay.GET./events",
            "correlation_id": "c-sse",
            "status": "ok",
            "inputs": {"method": "GET", "path": "/events", "headers": {"accept": "*/*"}, "body_bytes": 0},
            "output": {
                "status": 200,
                "headers": {"content-type": "text/event-stream"},
                "body_bytes": body.len(),
                "body_sha256": sha256(body),
            },
            "attributes": {"http.route": "pay", "http.method": "GET", "http.status_code": 200},
        })
    );
}

#[tokio::test]
async fn redirects_are_returned_unless_configured_and_never_leave_the_upstream() {
    let f = start().await;
    let direct = Answer::send(f.direct(reqwest::Method::GET, "redirect")).await;
    let returned = Answer::send(f.proxy(reqwest::Method::GET, "pay/redirect")).await;
    assert_eq!(returned.status, 302);
    assert_same(&direct, &returned);

    let followed = Answer::send(
        f.proxy(reqwest::Method::GET, "follow/redirect")
            .header("x-intentproof-correlation-id", "c-follow"),
    )
    .await;
    assert_eq!(followed.status, 200);
    assert_eq!(
        followed.json(),
        json!({"id": "re_9", "status": "succeeded"})
    );
    assert_eq!(f.event("c-follow").await["output"]["status"], json!(200));

    // Following is limited to the route's upstream: an offsite Location is
    // handed back, not fetched.
    let offsite = Answer::send(
        f.proxy(reqwest::Method::GET, "follow/offsite")
            .header("x-intentproof-correlation-id", "c-offsite"),
    )
    .await;
    assert_eq!(offsite.status, 302);
    assert_eq!(
        offsite.headers.get("location").unwrap(),
        f.state.offsite.as_str()
    );
    assert_eq!(
        f.event("c-offsite").await["output"],
        json!({"status": 302, "headers": {"location": f.state.offsite}, "body_bytes": 0})
    );
}

#[tokio::test]
async fn secrets_in_request_headers_query_and_bodies_never_reach_the_store() {
    let f = start().await;
    let secrets = [
        "agent-bearer-AAA111",
        "cookie-secret-BBB222",
        "header-key-CCC333",
        "body-password-DDD444",
        "nested-key-EEE555",
        "query-key-FFF666",
        "4242 4242 4242 4242",
        "4242424242424242",
    ];
    let body = json!({
        "user": "ada",
        "password": "body-password-DDD444",
        "card": "4242 4242 4242 4242",
        "nested": {"api_key": "nested-key-EEE555"},
    })
    .to_string();
    let answer = Answer::send(
        f.proxy(
            reqwest::Method::POST,
            "echo/echo?api_key=query-key-FFF666&page=2",
        )
        .header("authorization", "Bearer agent-bearer-AAA111")
        .header("cookie", "session=cookie-secret-BBB222")
        .header("x-api-key", "header-key-CCC333")
        .header("x-trace-note", "kept")
        .header("content-type", "application/json")
        .header("x-intentproof-correlation-id", "c-secrets")
        .body(body.clone()),
    )
    .await;
    // The upstream (not the store) gets what the agent sent.
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, body.as_bytes());
    let seen = f.seen();
    let h = &seen.last().unwrap().headers;
    assert_eq!(
        h.get("authorization").unwrap(),
        "Bearer agent-bearer-AAA111"
    );
    assert_eq!(h.get("x-api-key").unwrap(), "header-key-CCC333");

    let event = f.event("c-secrets").await;
    assert_eq!(
        event["inputs"]["headers"],
        json!({
            "authorization": "[REDACTED:http-headers]",
            "cookie": "[REDACTED:http-headers]",
            "x-api-key": "[REDACTED:http-headers]",
            "x-trace-note": "kept",
        })
    );
    assert_eq!(
        event["inputs"]["query"],
        json!({"api_key": "[REDACTED:http-headers]", "page": "2"})
    );
    assert_eq!(event["inputs"]["body"]["user"], "ada");
    assert_eq!(event["inputs"]["body"]["card"], "***************4242");
    assert_eq!(event["output"]["body"]["card"], "***************4242");

    // Every byte the daemon wrote: journal, index, everything.
    let mut files = vec![f.dir.path().to_owned()];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                files.push(entry.unwrap().path());
            }
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for secret in secrets.iter().chain([&UPSTREAM_SECRET]) {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret:?} is in {}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked > 3);
    let journal_has_the_event = std::fs::read_dir(f.dir.path().join("journal"))
        .unwrap()
        .any(|e| {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            bytes.windows(9).any(|w| w == b"c-secrets")
        });
    assert!(journal_has_the_event, "the event is not in the journal");
}

/// Sends raw bytes to the daemon and returns (status, JSON body).
async fn raw(addr: SocketAddr, request: &str) -> (u16, Value) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8(answer).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn attempts_to_reach_another_host_are_refused_with_4xx_and_recorded() {
    let f = start().await;
    let addr = f.daemon.addr;
    let host = addr.to_string();
    let token = &f.token;
    let request = |target: &str, host: &str, correlation: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nX-IntentProof-Token: {token}\r\nX-IntentProof-Correlation-Id: {correlation}\r\nConnection: close\r\n\r\n"
        )
    };
    let cases = [
        // (target, Host, correlation, status, reason, action)
        (
            "http://evil.example/proxy/pay/v1/refunds",
            "evil.example",
            "c-abs",
            400,
            "absolute_target",
            "http.pay.refused",
        ),
        (
            "/proxy/pay/v1/refunds",
            "evil.example",
            "c-host",
            400,
            "host_not_allowed",
            "http.pay.refused",
        ),
        (
            "/proxy/pay/../../v1/events",
            host.as_str(),
            "c-dots",
            400,
            "bad_path",
            "http.pay.refused",
        ),
        (
            "/proxy/pay/%2e%2e/%2E%2e/v1/events",
            host.as_str(),
            "c-encoded-dots",
            400,
            "bad_path",
            "http.pay.refused",
        ),
        (
            "/proxy/pay//evil.example/x",
            host.as_str(),
            "c-double-slash",
            400,
            "bad_path",
            "http.pay.refused",
        ),
        (
            "/proxy/pay/a%2f..%2f..%2fv1",
            host.as_str(),
            "c-encoded-slash",
            400,
            "bad_path",
            "http.pay.refused",
        ),
        (
            "/proxy/evil.example/x",
            host.as_str(),
            "c-unknown",
            404,
            "unknown_route",
            "http.refused",
        ),
    ];
    for (target, host_header, correlation, status, reason, action) in cases {
        let (got_status, body) = raw(addr, &request(target, host_header, correlation)).await;
        assert_eq!(
            (got_status, &body["reason"]),
            (status, &json!(reason)),
            "{target}"
        );
        let event = f.event(correlation).await;
        let mut attributes = json!({"http.method": "GET", "http.refused.reason": reason});
        if action != "http.refused" {
            attributes["http.route"] = json!("pay");
        }
        assert_eq!(
            facts(&event),
            json!({
                "intent": "undeclared",
                "action": action,
                "correlation_id": correlation,
                "status": "error",
                "inputs": {"method": "GET", "target": target, "host": host_header},
                "output": {"status": status},
                "error": {"name": "Refused", "message": body["error"]},
                "attributes": attributes,
            }),
            "{target}"
        );
    }
    // Without the token: 401, and nothing is recorded or forwarded.
    let (status, body) = raw(
        addr,
        &format!(
            "GET /proxy/pay/v1/refunds/re_1 HTTP/1.1\r\nHost: {host}\r\nX-IntentProof-Correlation-Id: c-anon\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!((status, &body["reason"]), (401, &json!("unauthorized")));
    assert!(
        f.seen().is_empty(),
        "a refused request reached the upstream: {:?}",
        f.seen()
    );
    // Events are stored in the order they were recorded: once a later
    // call's event is in, an event for the refused one would be too.
    let (status, _) = raw(addr, &request("/proxy/nope/x", host.as_str(), "c-after")).await;
    assert_eq!(status, 404);
    f.event("c-after").await;
    let all = f.api("/v1/events?limit=1000").await;
    let correlations: Vec<&str> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["correlation_id"].as_str().unwrap())
        .collect();
    assert!(!correlations.contains(&"c-anon"));
    assert_eq!(correlations.len(), cases.len() + 1);
}

#[tokio::test]
async fn a_body_over_max_body_bytes_gets_413_and_is_not_forwarded() {
    let f = start().await;
    let answer = Answer::send(
        f.proxy(reqwest::Method::POST, "small/echo")
            .header("x-intentproof-correlation-id", "c-big")
            .header("content-type", "text/plain")
            .body("seventeen bytes!!"),
    )
    .await;
    let message = "the request body is larger than max_body_bytes = 16 of route \"small\"; it was not forwarded";
    assert_eq!(answer.status, 413);
    assert_eq!(
        answer.json(),
        json!({"error": message, "reason": "too_large"})
    );
    assert_eq!(
        facts(&f.event("c-big").await),
        json!({
            "intent": "undeclared",
            "action": "http.small.POST./echo",
            "correlation_id": "c-big",
            "status": "error",
            "inputs": {"method": "POST", "path": "/echo", "headers": {"accept": "*/*", "content-type": "text/plain"}},
            "output": {"status": 413},
            "error": {"name": "RequestTooLarge", "message": message},
            "attributes": {"http.route": "small", "http.method": "POST"},
        })
    );
    assert!(f.seen().is_empty());
}

#[test]
fn route_config_parses_and_bad_values_name_their_field() {
    let config = Config::from_toml(
        r#"
        [http]
        allowed_hosts = ["gateway.internal"]
        [[http.routes]]
        name = "payments"
        upstream = "http://127.0.0.1:8080/api"
        headers = { Authorization = "Bearer sk_live_x" }
        action = ["/v1/refunds/{id}", "/v1/refunds"]
        timeout_ms = 5000
        max_body_bytes = 1024
        error_on_4xx = true
        [[http.routes]]
        name = "mail"
        upstream = "http://127.0.0.1:8081"
        action = "mail.{method}.{path}"
        "#,
        "inline".as_ref(),
    )
    .unwrap();
    let mut payments = HttpRouteConfig::new("payments", "http://127.0.0.1:8080/api");
    payments.headers = BTreeMap::from([("Authorization".into(), "Bearer sk_live_x".into())]);
    payments.action = Some(HttpAction::Paths(vec![
        "/v1/refunds/{id}".into(),
        "/v1/refunds".into(),
    ]));
    payments.timeout_ms = 5000;
    payments.max_body_bytes = 1024;
    payments.error_on_4xx = true;
    let mut mail = HttpRouteConfig::new("mail", "http://127.0.0.1:8081");
    mail.action = Some(HttpAction::Template("mail.{method}.{path}".into()));
    assert_eq!(config.http.routes, vec![payments, mail]);
    assert_eq!(config.http.allowed_hosts, vec!["gateway.internal"]);
    // Credentials stay out of Debug output.
    assert!(!format!("{config:?}").contains("sk_live_x"));

    let error = |route: &str| {
        Config::from_toml(
            &format!("[[http.routes]]\nname = \"r\"\n{route}"),
            "inline".as_ref(),
        )
        .unwrap_err()
        .to_string()
    };
    let upstream = "upstream = \"http://127.0.0.1:1\"\n";
    for (route, expected) in [
        (
            "upstream = \"ftp://api.example\"",
            "http.routes[0] (\"r\"): `upstream` \"ftp://api.example\" has scheme \"ftp\"; it must start with http:// or https://",
        ),
        (
            "upstream = \"https://api.example\"\nca_file = \"/nonexistent/ca.pem\"",
            "http.routes[0] (\"r\"): `ca_file` /nonexistent/ca.pem: No such file or directory (os error 2)",
        ),
        (
            "upstream = \"http://u:p@api.example\"",
            "http.routes[0] (\"r\"): `upstream` \"http://u:p@api.example\" carries credentials",
        ),
        (
            &format!("{upstream}headers = {{ Host = \"x\" }}"),
            "http.routes[0] (\"r\"): `headers` \"Host\" cannot be set",
        ),
        (
            &format!("{upstream}action = \"http.{{route}}\""),
            "http.routes[0] (\"r\"): `action` template \"http.{route}\" uses {route}",
        ),
        (
            &format!("{upstream}action = [\"v1/x\"]"),
            "http.routes[0] (\"r\"): `action` path template \"v1/x\" must start with '/'",
        ),
        (
            &format!("{upstream}action = 3"),
            "invalid type: integer `3`, expected a template string",
        ),
        (
            &format!("{upstream}timeout_ms = 0"),
            "http.routes[0] (\"r\"): `timeout_ms` = 0 is out of range",
        ),
        (
            &format!("{upstream}max_body_bytes = 0"),
            "http.routes[0] (\"r\"): `max_body_bytes` = 0 is out of range",
        ),
        (&format!("{upstream}timeout = 5"), "unknown field `timeout`"),
    ] {
        let got = error(route);
        assert!(got.contains(expected), "{route}: {got}");
    }
    let duplicate = Config::from_toml(
        "[[http.routes]]\nname = \"a\"\nupstream = \"http://x\"\n[[http.routes]]\nname = \"a\"\nupstream = \"http://y\"",
        "inline".as_ref(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        duplicate.contains("http.routes[1] (\"a\"): `name` is used by another route"),
        "{duplicate}"
    );
}

/// A TLS listener for axum: handshakes inside `accept`, skipping clients
/// that abort it (the untrusted-certificate case).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((socket, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(socket).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A private CA and a server certificate for 127.0.0.1 it signed, made
/// with the `openssl` command: (CA PEM path, server cert PEM, server key PEM).
fn private_ca(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>, Vec<u8>) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("the https test needs the openssl command: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=IntentProof test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    (
        dir.join("ca.pem"),
        std::fs::read(dir.join("server.pem")).unwrap(),
        std::fs::read(dir.join("server.key")).unwrap(),
    )
}

/// `https` upstreams: trusted through the route's `ca_file` the call goes
/// through and is recorded; without it the certificate is refused (502),
/// and that is recorded too.
#[tokio::test]
async fn https_upstreams_verify_their_certificate_against_the_routes_ca_file() {
    use rustls_pki_types::pem::PemObject;
    let certs_dir = tempfile::tempdir().unwrap();
    let (ca_file, server_pem, server_key) = private_ca(certs_dir.path());
    let certs: Vec<rustls_pki_types::CertificateDer<'static>> =
        rustls_pki_types::CertificateDer::pem_slice_iter(&server_pem)
            .collect::<Result<_, _>>()
            .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&server_key).unwrap();
    let tls = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let listener = TlsListener {
        tcp: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
    };
    let upstream = axum::serve::Listener::local_addr(&listener).unwrap();
    let router =
        axum::Router::new().fallback(|| async { json_response(200, json!({"secure": true})) });
    tokio::spawn(async move { axum::serve(listener, router).await });

    let mut trusted = HttpRouteConfig::new("bank", format!("https://{upstream}"));
    trusted.ca_file = Some(ca_file);
    let untrusted = HttpRouteConfig::new("stranger", format!("https://{upstream}"));
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        checkpoint_interval_secs: 0,
        ..Config::default()
    };
    config.http.routes = vec![trusted, untrusted];
    let daemon = Daemon::start(config).await.unwrap();
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    let f = Fixture {
        daemon,
        dir,
        http: reqwest::Client::new(),
        token,
        upstream,
        state: UpstreamState {
            seen: Arc::default(),
            release: Arc::new(Semaphore::new(0)),
            offsite: String::new(),
        },
        _closed: closed_port().1,
    };

    let ok = f
        .proxy(reqwest::Method::GET, "bank/v1/balance")
        .header("x-intentproof-correlation-id", "c-tls")
        .send()
        .await
        .unwrap();
    let status = ok.status();
    let body = ok.json::<Value>().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"secure": true}));
    let event = f.event("c-tls").await;
    assert_eq!(event["status"], "ok");
    assert_eq!(event["output"]["status"], 200);
    assert_eq!(event["output"]["body"], json!({"secure": true}));

    let refused = f
        .proxy(reqwest::Method::GET, "stranger/v1/balance")
        .header("x-intentproof-correlation-id", "c-tls-untrusted")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 502);
    let event = f.event("c-tls-untrusted").await;
    assert_eq!(event["status"], "error");
    assert_eq!(event["error"]["name"], "ConnectError");
    let message = event["error"]["message"].as_str().unwrap();
    assert!(message.contains("certificate"), "{message}");
}
