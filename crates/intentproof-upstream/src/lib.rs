//! What the gateways send upstream, checked: upstream base URLs, the
//! headers a configuration adds, hop-by-hop and managed header rules, HTTP
//! clients that trust an extra CA file, and error messages that name the
//! root cause. Shared by the HTTP API proxy and the MCP gateway's remote
//! upstreams, so both refuse the same configurations with the same words.
//!
//! What it does not do: no I/O but reading a CA file, no server code, no
//! requests; the proxies build and send those themselves.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use reqwest::Url;
use reqwest::header::{self as header, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the old `Proxy-Connection`
/// and the proxy credentials): they describe one connection, never the
/// request, and are never forwarded in either direction.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Prefix of the gateway's own headers; none is ever forwarded.
pub const OWN_HEADER_PREFIX: &str = "x-intentproof-";

/// Whether `name` (lowercase, as `HeaderName` keeps it) is hop-by-hop in a
/// message whose headers are `headers` (a `Connection` header can name more).
pub fn is_hop_by_hop(name: &HeaderName, headers: &HeaderMap) -> bool {
    let name = name.as_str();
    HOP_BY_HOP.contains(&name)
        || headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|listed| listed.trim().eq_ignore_ascii_case(name))
}

/// A route's upstream base URL, checked.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `scheme://host:port/base` without a trailing slash.
    pub base: String,
    /// The base path without a trailing slash (`""` for the root).
    pub base_path: String,
    scheme: String,
    host: String,
    port: Option<u16>,
}

/// Checks an upstream base URL from the config.
pub fn parse_upstream(text: &str) -> Result<Upstream, String> {
    let url = Url::parse(text).map_err(|e| {
        format!(
            "{text:?} is not a URL ({e}); write a base URL such as \"http://127.0.0.1:8080/api\""
        )
    })?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "{text:?} has scheme {other:?}; it must start with http:// or https://"
            ));
        }
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{text:?} has no host"))?
        .to_owned();
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{text:?} carries credentials in the URL; put them in `headers` (e.g. Authorization) instead"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{text:?} has a query or fragment; the base URL may only have a path"
        ));
    }
    let base_path = url.path().trim_end_matches('/').to_owned();
    let mut origin = url.clone();
    origin.set_path("");
    let base = format!("{}{}", origin.as_str().trim_end_matches('/'), base_path);
    Ok(Upstream {
        base,
        base_path,
        scheme: url.scheme().to_owned(),
        host,
        port: url.port_or_known_default(),
    })
}

impl Upstream {
    /// The upstream URL of a checked request path (`rest`, as received,
    /// percent-encoding kept) and raw query. Checks again that the result
    /// is on this upstream, under its base path.
    pub fn url(&self, rest: &str, query: Option<&str>) -> Result<Url, String> {
        let mut text = String::with_capacity(self.base.len() + rest.len() + 64);
        text.push_str(&self.base);
        text.push_str(rest);
        if rest.is_empty() && self.base_path.is_empty() {
            text.push('/');
        }
        if let Some(query) = query {
            text.push('?');
            text.push_str(query);
        }
        let url = Url::parse(&text).map_err(|e| format!("the upstream URL is invalid: {e}"))?;
        if !self.contains(&url) || !url.username().is_empty() || url.password().is_some() {
            return Err("the path leaves the route's upstream".into());
        }
        Ok(url)
    }

    /// Whether a redirect target stays on this upstream, under its base.
    pub fn contains(&self, url: &Url) -> bool {
        url.scheme() == self.scheme
            && url.host_str() == Some(self.host.as_str())
            && url.port_or_known_default() == self.port
            && (self.base_path.is_empty()
                || url.path() == self.base_path
                || url
                    .path()
                    .strip_prefix(self.base_path.as_str())
                    .is_some_and(|p| p.starts_with('/')))
    }
}

/// Headers the proxy sets itself upstream (besides hop-by-hop ones): never
/// forwarded from the agent, never added by a route.
pub fn is_managed(lowercase_name: &str) -> bool {
    matches!(lowercase_name, "host" | "content-length" | "expect")
        || lowercase_name.starts_with(OWN_HEADER_PREFIX)
}

/// Checks one header the route adds upstream.
pub fn check_added_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a header name"))?;
    let lower = parsed.as_str();
    if HOP_BY_HOP.contains(&lower) || is_managed(lower) {
        return Err(format!(
            "{name:?} cannot be set: the proxy manages it (hop-by-hop, Host, Content-Length, Expect and X-IntentProof-* headers)"
        ));
    }
    let value = HeaderValue::from_str(value).map_err(|_| {
        format!("the value of {name:?} is not a valid header value (visible ASCII, no line breaks)")
    })?;
    Ok((parsed, value))
}

/// Adds the certificates of a PEM `ca_file` to a client's trusted roots
/// (besides the system's). Shared by the proxy's routes and the MCP
/// gateway's remote upstreams.
pub fn trust_ca_file(
    mut builder: reqwest::ClientBuilder,
    path: &std::path::Path,
) -> Result<reqwest::ClientBuilder, String> {
    let pem = std::fs::read(path).map_err(|e| format!("`ca_file` {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("`ca_file` {}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "`ca_file` {}: holds no certificate",
            path.display()
        ));
    }
    for cert in certs {
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder)
}

/// The innermost cause of an error: the part that says what happened
/// (`Connection refused (os error 111)`), without wrapper text that repeats
/// the URL.
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
