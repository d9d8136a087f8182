//! The pure parts of a route: its upstream base URL, the checks on the
//! request path that keep every request on that upstream, header rules, and
//! action naming. No I/O here; `config.rs` validates with the same
//! functions the proxy runs, so a config that loads is a config that works.

use crate::config::{HttpAction, HttpConfig};

pub(crate) use intentproof_upstream::{
    Upstream, check_added_header, is_hop_by_hop, is_managed, parse_upstream,
};

/// A request path after `/proxy/<name>`, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TargetPath {
    /// As received (percent-encoding kept): `""` or `/...`.
    pub raw: String,
    /// Its segments, percent-decoded.
    pub segments: Vec<String>,
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(segment: &str) -> Option<Vec<u8>> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Checks the path after `/proxy/<name>`: no `.` or `..` segments (also
/// percent-encoded), no empty segments (`//host` tricks) except a trailing
/// slash, no encoded `/` or `\`, no backslashes, no control characters, no
/// broken percent-encoding. Upstream servers disagree on all of these, so
/// the proxy refuses them rather than guessing.
pub(crate) fn check_path(rest: &str) -> Result<TargetPath, String> {
    if rest.is_empty() {
        return Ok(TargetPath {
            raw: String::new(),
            segments: Vec::new(),
        });
    }
    let Some(inner) = rest.strip_prefix('/') else {
        return Err("the path must continue with '/' after the route name".into());
    };
    let parts: Vec<&str> = inner.split('/').collect();
    let last = parts.len() - 1;
    let mut segments = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            if i == last {
                segments.push(String::new());
                continue;
            }
            return Err("empty path segments ('//') are refused".into());
        }
        if part.contains('\\') {
            return Err("backslashes in the path are refused".into());
        }
        let decoded =
            percent_decode(part).ok_or("the path has invalid percent-encoding".to_owned())?;
        if decoded == b"." || decoded == b".." {
            return Err("'.' and '..' path segments (also percent-encoded) are refused".into());
        }
        if decoded
            .iter()
            .any(|&b| b == b'/' || b == b'\\' || b < 0x20 || b == 0x7f)
        {
            return Err(
                "percent-encoded '/', '\\' and control characters in the path are refused".into(),
            );
        }
        segments.push(String::from_utf8_lossy(&decoded).into_owned());
    }
    Ok(TargetPath {
        raw: rest.to_owned(),
        segments,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Literal(String),
    Name,
    Method,
    Path,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

/// A path template such as `/v1/refunds/{id}`: `{...}` matches one
/// non-empty segment, other segments match themselves (after
/// percent-decoding the request's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathTemplate {
    text: String,
    segments: Vec<Segment>,
}

impl PathTemplate {
    pub(crate) fn parse(text: &str) -> Result<PathTemplate, String> {
        let Some(inner) = text.strip_prefix('/') else {
            return Err(format!(
                "path template {text:?} must start with '/', e.g. \"/v1/refunds/{{id}}\""
            ));
        };
        let mut segments = Vec::new();
        if !inner.is_empty() {
            for part in inner.split('/') {
                if part.is_empty() {
                    return Err(format!("path template {text:?} has an empty segment"));
                }
                let param = part
                    .strip_prefix('{')
                    .and_then(|p| p.strip_suffix('}'))
                    .filter(|p| {
                        !p.is_empty()
                            && p.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    });
                match param {
                    Some(_) => segments.push(Segment::Param),
                    None if part.contains(['{', '}']) => {
                        return Err(format!(
                            "path template {text:?}: a placeholder must be a whole segment such as {{id}}"
                        ));
                    }
                    None => segments.push(Segment::Literal(part.to_owned())),
                }
            }
        }
        Ok(PathTemplate {
            text: text.to_owned(),
            segments,
        })
    }

    fn matches(&self, segments: &[String]) -> bool {
        self.segments.len() == segments.len()
            && self.segments.iter().zip(segments).all(|(t, s)| match t {
                Segment::Param => !s.is_empty(),
                Segment::Literal(l) => l == s,
            })
    }
}

/// Names a call's action from its method and path.
#[derive(Debug, Clone)]
pub(crate) enum ActionNamer {
    Template(Vec<Piece>),
    Paths(Vec<PathTemplate>),
}

/// The default action template.
pub(crate) const DEFAULT_ACTION: &str = "http.{name}.{method}.{path}";

impl ActionNamer {
    pub(crate) fn new(_route: &str, action: &HttpAction) -> Result<ActionNamer, String> {
        match action {
            HttpAction::Template(text) => {
                let mut pieces = Vec::new();
                let mut rest = text.as_str();
                while !rest.is_empty() {
                    match rest.find(['{', '}']) {
                        None => {
                            pieces.push(Piece::Literal(rest.to_owned()));
                            rest = "";
                        }
                        Some(at) if rest.as_bytes()[at] == b'}' => {
                            return Err(format!("template {text:?} has an unmatched '}}'"));
                        }
                        Some(at) => {
                            if at > 0 {
                                pieces.push(Piece::Literal(rest[..at].to_owned()));
                            }
                            let close = rest[at..]
                                .find('}')
                                .ok_or_else(|| format!("template {text:?} has an unclosed '{{'"))?
                                + at;
                            pieces.push(match &rest[at + 1..close] {
                                "name" => Piece::Name,
                                "method" => Piece::Method,
                                "path" => Piece::Path,
                                other => {
                                    return Err(format!(
                                        "template {text:?} uses {{{other}}}; the placeholders are {{name}}, {{method}} and {{path}}"
                                    ));
                                }
                            });
                            rest = &rest[close + 1..];
                        }
                    }
                }
                if text.trim().is_empty() {
                    return Err("the action template is empty".into());
                }
                Ok(ActionNamer::Template(pieces))
            }
            HttpAction::Paths(paths) => {
                if paths.is_empty() {
                    return Err(
                        "the list of path templates is empty; leave `action` out for the default"
                            .into(),
                    );
                }
                paths
                    .iter()
                    .map(|p| PathTemplate::parse(p))
                    .collect::<Result<Vec<_>, _>>()
                    .map(ActionNamer::Paths)
            }
        }
    }

    /// The default: `http.<name>.<METHOD>.<path>`.
    pub(crate) fn default_namer() -> ActionNamer {
        match ActionNamer::new("", &HttpAction::Template(DEFAULT_ACTION.to_owned())) {
            Ok(namer) => namer,
            Err(_) => ActionNamer::Template(vec![Piece::Literal("http".into())]),
        }
    }

    /// The action of a call, and the path template that matched (list form).
    pub(crate) fn name(
        &self,
        route: &str,
        method: &str,
        path: &TargetPath,
    ) -> (String, Option<String>) {
        let shown_path = if path.raw.is_empty() { "/" } else { &path.raw };
        match self {
            ActionNamer::Template(pieces) => {
                let mut out = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Literal(l) => out.push_str(l),
                        Piece::Name => out.push_str(route),
                        Piece::Method => out.push_str(method),
                        Piece::Path => out.push_str(shown_path),
                    }
                }
                (out, None)
            }
            ActionNamer::Paths(templates) => {
                let matched = templates.iter().find(|t| t.matches(&path.segments));
                let shown = matched.map_or(shown_path, |t| t.text.as_str());
                (
                    format!("http.{route}.{method}.{shown}"),
                    matched.map(|t| t.text.clone()),
                )
            }
        }
    }
}

/// The section's checks: a route's upstream, headers and action are held
/// to the rules the proxy applies to them here.
impl HttpConfig {
    /// Checks the section; the error names the route and field, and says
    /// what to write instead.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let at = format!("http.routes[{i}] ({:?})", route.name);
            let bad = |field: &str, why: String| Err(format!("{at}: `{field}` {why}"));
            let valid_name = !route.name.is_empty()
                && route.name.len() <= 64
                && route
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name {
                return bad(
                    "name",
                    "must be 1 to 64 letters, digits, '-' or '_' (it is a URL path segment and part of every action)".into(),
                );
            }
            if !names.insert(&route.name) {
                return bad(
                    "name",
                    "is used by another route; names must be unique".into(),
                );
            }
            if let Err(why) = parse_upstream(&route.upstream) {
                return bad("upstream", why);
            }
            if let Some(path) = &route.ca_file
                && let Err(e) = std::fs::metadata(path)
            {
                return bad("ca_file", format!("{}: {e}", path.display()));
            }
            for (name, value) in &route.headers {
                if let Err(why) = check_added_header(name, value) {
                    return bad("headers", why);
                }
            }
            for (field, list) in [
                ("record_request_headers", &route.record_request_headers),
                ("record_response_headers", &route.record_response_headers),
            ] {
                for name in list {
                    if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        return bad(field, format!("has {name:?}, which is not a header name"));
                    }
                }
            }
            if let Some(action) = &route.action
                && let Err(why) = ActionNamer::new(&route.name, action)
            {
                return bad("action", why);
            }
            if !(1..=3_600_000).contains(&route.timeout_ms) {
                return bad(
                    "timeout_ms",
                    format!("= {} is out of range; use 1 to 3600000", route.timeout_ms),
                );
            }
            if !(1..=86_400_000).contains(&route.idle_timeout_ms) {
                return bad(
                    "idle_timeout_ms",
                    format!(
                        "= {} is out of range; use 1 to 86400000",
                        route.idle_timeout_ms
                    ),
                );
            }
            if !(1..=1024 * 1024 * 1024).contains(&route.max_body_bytes) {
                return bad(
                    "max_body_bytes",
                    format!(
                        "= {} is out of range; use 1 to 1073741824",
                        route.max_body_bytes
                    ),
                );
            }
            if route.record_body_bytes > 16 * 1024 * 1024 {
                return bad(
                    "record_body_bytes",
                    format!(
                        "= {} is out of range; use 0 to 16777216",
                        route.record_body_bytes
                    ),
                );
            }
            if route
                .default_intent
                .as_ref()
                .is_some_and(|i| i.trim().is_empty())
            {
                return bad(
                    "default_intent",
                    "must not be blank; leave it out instead".into(),
                );
            }
        }
        for host in &self.allowed_hosts {
            if host.trim().is_empty() || host.contains(['/', ' ']) {
                return Err(format!(
                    "http.allowed_hosts: {host:?} is not a host name; write names such as \"gateway.internal\" (no scheme, path or port)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_leave_the_upstream_are_refused() {
        for bad in [
            "/../x",
            "/a/..",
            "/%2e%2e/x",
            "/%2E./x",
            "/.%2e",
            "/./x",
            "//evil.example/x",
            "/a//b",
            "/a%2fb",
            "/a%2F..%2Fb",
            "/a%5cb",
            "/a\\b",
            "/a%00",
            "/a%zz",
            "/a%2",
            "x",
        ] {
            assert!(check_path(bad).is_err(), "{bad} was accepted");
        }
        let ok = check_path("/v1/refunds/re%201/").unwrap();
        assert_eq!(ok.segments, ["v1", "refunds", "re 1", ""]);
        assert_eq!(check_path("").unwrap().segments, Vec::<String>::new());
    }

    #[test]
    fn upstream_urls_stay_under_the_base() {
        let up = parse_upstream("http://127.0.0.1:8080/api/").unwrap();
        assert_eq!(up.base, "http://127.0.0.1:8080/api");
        assert_eq!(
            up.url("/v1/x", Some("a=1&b=%20")).unwrap().as_str(),
            "http://127.0.0.1:8080/api/v1/x?a=1&b=%20"
        );
        assert_eq!(
            up.url("", None).unwrap().as_str(),
            "http://127.0.0.1:8080/api"
        );
        // Defence in depth: even if a path check were missed, the URL
        // parser's own normalisation cannot take a request elsewhere.
        assert!(up.url("/../other", None).is_err());
        assert!(up.url("/%2e%2e/other", None).is_err());
        assert!(up.url("@evil.example/x", None).is_err());
        let root = parse_upstream("http://localhost:9000").unwrap();
        assert_eq!(
            root.url("", None).unwrap().as_str(),
            "http://localhost:9000/"
        );
        assert!(parse_upstream("https://api.example").is_ok());
        assert!(parse_upstream("ftp://api.example").is_err());
        assert!(parse_upstream("ftp://api.example").is_err());
        assert!(parse_upstream("http://user:pw@api.example").is_err());
        assert!(parse_upstream("http://api.example/?q=1").is_err());
    }

    #[test]
    fn actions_use_templates_so_ids_do_not_explode_the_action_space() {
        let namer = ActionNamer::new(
            "pay",
            &HttpAction::Paths(vec!["/v1/refunds/{id}".into(), "/v1/refunds".into()]),
        )
        .unwrap();
        let name = |p: &str| namer.name("pay", "GET", &check_path(p).unwrap());
        assert_eq!(
            name("/v1/refunds/re_1"),
            (
                "http.pay.GET./v1/refunds/{id}".into(),
                Some("/v1/refunds/{id}".into())
            )
        );
        assert_eq!(
            name("/v1/refunds"),
            (
                "http.pay.GET./v1/refunds".into(),
                Some("/v1/refunds".into())
            )
        );
        assert_eq!(name("/v2/other"), ("http.pay.GET./v2/other".into(), None));
        let template = ActionNamer::new(
            "pay",
            &HttpAction::Template("{name}:{method} {path}".into()),
        )
        .unwrap();
        assert_eq!(
            template.name("pay", "POST", &check_path("/a").unwrap()).0,
            "pay:POST /a"
        );
        assert_eq!(
            ActionNamer::default_namer()
                .name("pay", "GET", &check_path("").unwrap())
                .0,
            "http.pay.GET./"
        );
        for bad in ["http.{route}", "a}b", "a{name", ""] {
            assert!(
                ActionNamer::new("pay", &HttpAction::Template(bad.into())).is_err(),
                "{bad}"
            );
        }
        for bad in ["v1", "/v1//x", "/v1/re{id}", "/{}"] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
