//! Keeps web pages out of ingest (`POST /v1/events`, `POST
//! /v1/events:batch`) and the MCP gateway (`/mcp/<name>`): one axum
//! middleware ([`check`]) mounted on those routes, told by [`Surface`]
//! which rules apply.
//!
//! A page open in any browser on this machine can send a "simple"
//! cross-origin POST (no CORS preflight) to a daemon on loopback, and a
//! page whose own host name it makes resolve to 127.0.0.1 (DNS rebinding)
//! can even read the answers. So a request is refused when:
//!
//! - it carries an `Origin` that is not in `allowed_origins` (none by
//!   default) and not the daemon's own (`http://127.0.0.1:<port>` and the
//!   other own hosts below, which is what the MCP conformance suite sends;
//!   the daemon serves no pages, so no page has that origin): 403
//!   `origin_not_allowed`. Browsers send `Origin` on every POST and every
//!   cross-origin request; SDKs, the CLI and MCP clients outside a browser
//!   send none;
//! - its `Host` is not the daemon's own: `localhost`, `127.0.0.1`,
//!   `[::1]` or the listen IP at the listen port (any IP literal at that
//!   port when listening on an unspecified address: an IP literal cannot
//!   be rebound), or an `allowed_hosts` entry (`name` for any port,
//!   `name:port` for one): 421 `host_not_allowed`. A rebinding page's
//!   requests name the attacker's host;
//! - on ingest, its `Content-Type` is not `application/json` (the batch
//!   route also takes `application/x-ndjson`): 415
//!   `unsupported_media_type`. `text/plain`, form types and no type at
//!   all are what a page may send without a preflight;
//! - a token is required and missing or wrong: 401 `unauthorized` (ingest:
//!   `ingest_token`, when set; `/mcp/<name>`: `mcp_token`, when set).
//!
//! The witness endpoint (`POST /v1/witness/add-checkpoint`) gets the Origin
//! and Host checks only: its callers are other logs, and what it accepts
//! is signed by a log key it is configured to trust.
//!
//! Ingest requests that pass carry a [`Caller`] extension: authenticated
//! when `Authorization: Bearer` holds the ingest token or the daemon's own
//! token (`<data-dir>/token`, which `intentproof mcp`'s shipper sends).
//! What an anonymous caller may not send (reserved `intentproof.*`
//! actions) is decided by [`crate::ingest::prepare`], which can see the
//! action. On `/mcp/<name>` the checked `Authorization` header is removed
//! before the MCP gateway sees the request, so it can never travel
//! upstream.
//!
//! It does not guard reads and admin routes (they need the daemon token
//! in `Authorization`, which a page cannot send without a preflight the
//! daemon never answers) or the HTTP proxy (its own checks, in
//! [`intentproof_http_proxy`]), and it does not rate-limit.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::ingest::Caller;
use crate::metrics::{Metrics, RejectReason};
use intentproof_api::same_token;

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Which routes a [`check`] guards: the rules and the error shape differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `POST /v1/events`: JSON only.
    Ingest,
    /// `POST /v1/events:batch`: JSON or newline-delimited JSON.
    IngestBatch,
    /// `/mcp/<name>`: errors are JSON-RPC errors; no content-type rule
    /// (the MCP gateway answers for its own protocol).
    Mcp,
    /// `POST /v1/witness/add-checkpoint`: Origin and Host only; errors are
    /// plain text (the tlog-witness protocol's). No content-type rule and
    /// no token: what it accepts must be signed by a log it trusts.
    Witness,
}

/// What the guard is built from.
pub struct GuardSettings<'a> {
    /// The bound address (its port, not the configured `0`).
    pub listen: SocketAddr,
    /// `allowed_origins` from the config.
    pub allowed_origins: &'a [String],
    /// `allowed_hosts` from the config.
    pub allowed_hosts: &'a [String],
    /// `ingest_token`: when set, ingest needs it (or the daemon token).
    pub ingest_token: Option<String>,
    /// The daemon token (`<data-dir>/token`): authenticates ingest too.
    pub daemon_token: String,
    /// `mcp_token`: when set, `/mcp/<name>` needs it.
    pub mcp_token: Option<String>,
    /// Where ingest refusals are counted.
    pub metrics: Arc<Metrics>,
}

/// The checks, built once at start.
pub struct BrowserGuard {
    port: u16,
    /// Listening on 0.0.0.0 or `::`: every IP literal is an own address.
    any_ip: bool,
    /// Names (lowercase, IPv6 in brackets) that are the daemon at `port`.
    own_names: Vec<String>,
    /// `allowed_hosts`: a name, with the one port it is allowed at (or any).
    configured_hosts: Vec<(String, Option<u16>)>,
    /// `allowed_origins`, normalized by [`normalize_origin`].
    origins: Vec<String>,
    ingest_token: Option<String>,
    daemon_token: String,
    mcp_token: Option<String>,
    metrics: Arc<Metrics>,
}

/// A guard and the surface it checks: the state of one mounted [`check`].
#[derive(Clone)]
pub struct Guarded {
    guard: Arc<BrowserGuard>,
    surface: Surface,
}

/// Why a request was refused.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

/// `scheme://host[:port]`, lowercase, without a trailing `/`: how origins
/// are compared (browsers send them so; config entries are normalized).
pub fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Splits a `Host` value (or an `allowed_hosts` entry) into its lowercase
/// name (IPv6 in brackets) and port; `None` when it is not one.
pub fn split_host(host: &str) -> Option<(String, Option<u16>)> {
    let host = host.trim().to_ascii_lowercase();
    let (name, port) = if host.starts_with('[') {
        let end = host.find(']')?;
        let (name, rest) = host.split_at(end + 1);
        match rest {
            "" => (name, None),
            _ => (name, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host.as_str(), None),
        }
    };
    if name.is_empty() || name.contains(['/', ' ', '@', '\\']) {
        return None;
    }
    let port = match port {
        Some(port) => Some(port.parse::<u16>().ok()?),
        None => None,
    };
    Some((name.to_owned(), port))
}

/// The IP a host name is literally, if it is one (`[::1]` included).
fn ip_literal(name: &str) -> Option<IpAddr> {
    name.strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name)
        .parse()
        .ok()
}

fn bracketed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A header value as text for a message (bounded, never a panic).
fn shown(value: &HeaderValue) -> String {
    let text = String::from_utf8_lossy(value.as_bytes());
    text.chars().take(200).collect()
}

impl BrowserGuard {
    /// The guard for a daemon bound to `settings.listen`. Entries of
    /// `allowed_hosts` that are not host names are refused by the config's
    /// validation; here they are skipped.
    pub fn new(settings: GuardSettings<'_>) -> BrowserGuard {
        let ip = settings.listen.ip();
        let mut own_names: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .map(String::from)
            .to_vec();
        if !ip.is_unspecified() {
            own_names.push(bracketed(ip));
        }
        BrowserGuard {
            port: settings.listen.port(),
            any_ip: ip.is_unspecified(),
            own_names,
            configured_hosts: settings
                .allowed_hosts
                .iter()
                .filter_map(|h| split_host(h))
                .collect(),
            origins: settings
                .allowed_origins
                .iter()
                .map(|o| normalize_origin(o))
                .collect(),
            ingest_token: settings.ingest_token,
            daemon_token: settings.daemon_token,
            mcp_token: settings.mcp_token,
            metrics: settings.metrics,
        }
    }

    /// This guard mounted on `surface` (the state of [`check`]).
    pub fn on(self: &Arc<Self>, surface: Surface) -> Guarded {
        Guarded {
            guard: Arc::clone(self),
            surface,
        }
    }

    /// Whether `name` at `port` (none: the default, 80) is the daemon.
    fn is_own(&self, name: &str, port: Option<u16>) -> bool {
        port.unwrap_or(80) == self.port
            && (self.own_names.iter().any(|own| own == name)
                || (self.any_ip && ip_literal(name).is_some()))
    }

    fn origin_allowed(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let given = origin.to_str().map(normalize_origin).unwrap_or_default();
        let own = given
            .strip_prefix("http://")
            .filter(|rest| !rest.contains('/'))
            .and_then(split_host)
            .is_some_and(|(name, port)| self.is_own(&name, port));
        if own || (!given.is_empty() && self.origins.contains(&given)) {
            return Ok(());
        }
        Err(Refusal {
            status: StatusCode::FORBIDDEN,
            reason: "origin_not_allowed",
            message: format!(
                "requests from Origin {:?} are refused: web pages may not write to the daemon; if this origin is yours, add it to allowed_origins in the daemon config",
                shown(origin)
            ),
        })
    }

    fn host_allowed(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        // HTTP/1.0 clients may omit Host; browsers never do.
        let Some(value) = headers.get(header::HOST) else {
            return Ok(());
        };
        if let Some((name, port)) = value.to_str().ok().and_then(split_host) {
            let configured = self.configured_hosts.iter().any(|(allowed, allowed_port)| {
                *allowed == name && allowed_port.is_none_or(|p| Some(p) == port)
            });
            if self.is_own(&name, port) || configured {
                return Ok(());
            }
        }
        Err(Refusal {
            status: StatusCode::MISDIRECTED_REQUEST,
            reason: "host_not_allowed",
            message: format!(
                "Host {:?} is not this daemon (it answers as 127.0.0.1:{port}, localhost:{port} and [::1]:{port}); a name that resolves here can be a DNS rebinding attack. If you reach the daemon by that name, add it to allowed_hosts in the daemon config",
                shown(value),
                port = self.port
            ),
        })
    }

    fn content_type_allowed(headers: &HeaderMap, surface: Surface) -> Result<(), Refusal> {
        let accepted: &[&str] = match surface {
            Surface::Ingest => &["application/json"],
            Surface::IngestBatch => &["application/x-ndjson", "application/json"],
            Surface::Mcp | Surface::Witness => return Ok(()),
        };
        let given = headers.get(header::CONTENT_TYPE);
        let media = given
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_ascii_lowercase());
        if media.as_deref().is_some_and(|m| accepted.contains(&m)) {
            return Ok(());
        }
        let what = given.map_or("no Content-Type".to_owned(), |v| {
            format!("Content-Type {:?}", shown(v))
        });
        Err(Refusal {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            reason: "unsupported_media_type",
            message: format!(
                "{what} is refused here (a web page can send it without asking first): send `Content-Type: {}`",
                accepted.join("` or `Content-Type: ")
            ),
        })
    }

    /// Who sent an ingest request; `Err` when an ingest token is
    /// configured and neither it nor the daemon token came.
    fn ingest_caller(&self, headers: &HeaderMap) -> Result<Caller, Refusal> {
        let given = bearer(headers);
        let known = given.is_some_and(|given| {
            same_token(given, &self.daemon_token)
                || self
                    .ingest_token
                    .as_deref()
                    .is_some_and(|expected| same_token(given, expected))
        });
        match (known, &self.ingest_token) {
            (true, _) => Ok(Caller::Authenticated),
            (false, None) => Ok(Caller::Anonymous),
            (false, Some(_)) => Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                reason: "unauthorized",
                message: "ingest needs `Authorization: Bearer <ingest token>` (INTENTPROOF_INGEST_TOKEN on the SDK side)".into(),
            }),
        }
    }

    fn mcp_authorized(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(expected) = &self.mcp_token else {
            return Ok(());
        };
        if bearer(headers).is_some_and(|given| same_token(given, expected)) {
            return Ok(());
        }
        Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            reason: "unauthorized",
            message: "this MCP gateway needs `Authorization: Bearer <mcp token>` (mcp_token in the daemon config): add the header to the client's server entry".into(),
        })
    }

    fn refuse(&self, surface: Surface, refusal: Refusal) -> Response {
        match surface {
            Surface::Witness => (
                refusal.status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{}\n", refusal.message),
            )
                .into_response(),
            Surface::Ingest | Surface::IngestBatch => {
                self.metrics.rejected(RejectReason::Unauthorized);
                ApiError::new(refusal.status, refusal.reason, refusal.message).into_response()
            }
            Surface::Mcp => {
                let error = serde_json::json!({
                    "code": -32600,
                    "message": refusal.message,
                    "data": {"reason": refusal.reason},
                });
                let body = format!(r#"{{"jsonrpc":"2.0","id":null,"error":{error}}}"#);
                let mut response = (refusal.status, body).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                if refusal.status == StatusCode::UNAUTHORIZED {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"intentproof\""),
                    );
                }
                response
            }
        }
    }
}

/// The middleware: refuses what a web page could send, then passes the
/// request on (ingest: with its [`Caller`]; MCP: without its checked
/// `Authorization`).
pub async fn check(State(at): State<Guarded>, mut request: Request, next: Next) -> Response {
    let guard = &at.guard;
    let headers = request.headers();
    let checked = guard
        .origin_allowed(headers)
        .and_then(|()| guard.host_allowed(headers))
        .and_then(|()| BrowserGuard::content_type_allowed(headers, at.surface));
    if let Err(refusal) = checked {
        return guard.refuse(at.surface, refusal);
    }
    match at.surface {
        Surface::Ingest | Surface::IngestBatch => match guard.ingest_caller(request.headers()) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
            }
            Err(refusal) => return guard.refuse(at.surface, refusal),
        },
        Surface::Witness => {}
        Surface::Mcp => {
            if let Err(refusal) = guard.mcp_authorized(request.headers()) {
                return guard.refuse(at.surface, refusal);
            }
            if guard.mcp_token.is_some() {
                request.headers_mut().remove(header::AUTHORIZATION);
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(listen: &str, hosts: &[&str]) -> BrowserGuard {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        BrowserGuard::new(GuardSettings {
            listen: listen.parse().unwrap(),
            allowed_origins: &["https://App.example.com/".to_owned()],
            allowed_hosts: &hosts,
            ingest_token: None,
            daemon_token: "daemon".into(),
            mcp_token: None,
            metrics: Arc::default(),
        })
    }

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn hosts_are_the_listen_address_or_configured() {
        let g = guard("127.0.0.1:9787", &["gateway.internal", "proxy.example:443"]);
        let allowed = |host: &str| g.host_allowed(&with(header::HOST, host)).is_ok();
        for host in [
            "127.0.0.1:9787",
            "LOCALHOST:9787",
            "[::1]:9787",
            "gateway.internal",
            "gateway.internal:1",
            "proxy.example:443",
        ] {
            assert!(allowed(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:9787",
            "127.0.0.1:9788",
            "localhost",
            "127.0.0.2:9787",
            "proxy.example:444",
            "proxy.example",
            "localhost:9787@evil",
            "[::1",
            "",
        ] {
            assert!(!allowed(host), "{host}");
        }
        assert!(g.host_allowed(&HeaderMap::new()).is_ok());
        let any = guard("0.0.0.0:80", &[]);
        let allowed = |host: &str| any.host_allowed(&with(header::HOST, host)).is_ok();
        assert!(allowed("10.1.2.3") && allowed("[fe80::1]:80") && allowed("localhost"));
        assert!(!allowed("10.1.2.3:81") && !allowed("rebind.example"));
    }

    #[test]
    fn origins_must_be_listed_and_content_types_named() {
        let g = guard("127.0.0.1:9787", &[]);
        let origin = |o: &str| g.origin_allowed(&with(header::ORIGIN, o));
        assert!(origin("https://app.example.com").is_ok());
        let refused = origin("http://evil.example").err().unwrap();
        assert_eq!(
            (refused.status, refused.reason),
            (StatusCode::FORBIDDEN, "origin_not_allowed")
        );
        assert!(refused.message.contains("\"http://evil.example\""));
        assert!(origin("null").is_err() && origin("http://localhost:9788").is_err());
        // The daemon's own origin is not a page's.
        assert!(
            origin("http://127.0.0.1:9787").is_ok() && origin("http://LOCALHOST:9787/").is_ok()
        );
        assert!(
            origin("https://localhost:9787").is_err()
                && origin("http://evil.example:9787").is_err()
        );
        assert!(g.origin_allowed(&HeaderMap::new()).is_ok());

        let typed = |t: &str, surface| {
            BrowserGuard::content_type_allowed(&with(header::CONTENT_TYPE, t), surface).is_ok()
        };
        assert!(typed("application/json; charset=utf-8", Surface::Ingest));
        assert!(!typed("application/x-ndjson", Surface::Ingest));
        assert!(typed("Application/X-NDJSON", Surface::IngestBatch));
        assert!(typed("application/json", Surface::IngestBatch));
        assert!(!typed("text/plain", Surface::IngestBatch));
        assert!(typed("text/plain", Surface::Mcp));
        let none = BrowserGuard::content_type_allowed(&HeaderMap::new(), Surface::Ingest)
            .err()
            .unwrap();
        assert_eq!(
            none.message,
            "no Content-Type is refused here (a web page can send it without asking first): send `Content-Type: application/json`"
        );
    }

    #[test]
    fn ingest_callers_are_authenticated_by_either_token() {
        let mut g = guard("127.0.0.1:9787", &[]);
        let bearer = |token: &str| with(header::AUTHORIZATION, &format!("Bearer {token}"));
        assert_eq!(
            g.ingest_caller(&bearer("daemon")).ok(),
            Some(Caller::Authenticated)
        );
        assert_eq!(g.ingest_caller(&bearer("x")).ok(), Some(Caller::Anonymous));
        assert_eq!(
            g.ingest_caller(&HeaderMap::new()).ok(),
            Some(Caller::Anonymous)
        );
        g.ingest_token = Some("ingest".into());
        assert_eq!(
            g.ingest_caller(&bearer("ingest")).ok(),
            Some(Caller::Authenticated)
        );
        assert_eq!(
            g.ingest_caller(&bearer("daemon")).ok(),
            Some(Caller::Authenticated)
        );
        assert!(g.ingest_caller(&bearer("x")).is_err());
        assert!(g.ingest_caller(&HeaderMap::new()).is_err());
    }
}
