//! The event detail as text: one [`DetailLine`] per line, each a list of
//! pieces with a [`Tone`], built once when the event arrives (the app
//! keeps them; the UI only wraps and styles them). Pure: no terminal, no
//! I/O, so the app and the drawing code both use it without depending on
//! each other.

use std::collections::HashSet;

use serde_json::Value;

use crate::model::{EventDetail, strs_of};

/// How a piece of text should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Default.
    Plain,
    /// Less important.
    Dim,
    /// A section title.
    Heading,
    /// A good state.
    Good,
    /// A bad state.
    Bad,
    /// Needs attention.
    Warn,
    /// A redacted value.
    Redacted,
}

/// One line of the event detail: styled pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailLine(pub Vec<(String, Tone)>);

impl DetailLine {
    fn plain(text: impl Into<String>) -> DetailLine {
        DetailLine(vec![(text.into(), Tone::Plain)])
    }

    fn field(label: &str, value: impl Into<String>, tone: Tone) -> DetailLine {
        DetailLine(vec![
            (format!("{label:<11}"), Tone::Dim),
            (value.into(), tone),
        ])
    }

    fn heading(text: &str) -> DetailLine {
        DetailLine(vec![(format!("── {text} ──"), Tone::Heading)])
    }

    /// Its text, without styles.
    pub fn text(&self) -> String {
        self.0.iter().map(|(t, _)| t.as_str()).collect()
    }
}

/// `120ms`, `1.25s`, `2m03s`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}.{:02}s", ms / 1000, (ms % 1000) / 10)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn is_marker(s: &str) -> bool {
    s.contains("[REDACTED") || s.contains("[DROPPED") || s.starts_with("hmac-sha256:")
}

fn push_key(path: &str, key: &str) -> String {
    let mut path = path.to_owned();
    intentproof_policy::redact::push_key(&mut path, key);
    path
}

/// Pretty JSON, one line per member, marking the redacted paths.
fn json_lines(
    value: &Value,
    path: &str,
    prefix: String,
    suffix: &str,
    indent: usize,
    redacted: &HashSet<&str>,
    out: &mut Vec<DetailLine>,
) {
    let pad = "  ".repeat(indent);
    let hit = redacted.contains(path);
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push(DetailLine::plain(format!("{pad}{prefix}{{")));
            let n = map.len();
            for (i, (k, v)) in map.iter().enumerate() {
                let comma = if i + 1 < n { "," } else { "" };
                let key = serde_json::to_string(k).unwrap_or_default();
                json_lines(
                    v,
                    &push_key(path, k),
                    format!("{key}: "),
                    comma,
                    indent + 1,
                    redacted,
                    out,
                );
            }
            out.push(DetailLine::plain(format!("{pad}}}{suffix}")));
        }
        Value::Array(items) if !items.is_empty() => {
            out.push(DetailLine::plain(format!("{pad}{prefix}[")));
            let n = items.len();
            for (i, v) in items.iter().enumerate() {
                let comma = if i + 1 < n { "," } else { "" };
                json_lines(
                    v,
                    &format!("{path}[{i}]"),
                    String::new(),
                    comma,
                    indent + 1,
                    redacted,
                    out,
                );
            }
            out.push(DetailLine::plain(format!("{pad}]{suffix}")));
        }
        scalar => {
            let text = serde_json::to_string(scalar).unwrap_or_default();
            let marked = hit || scalar.as_str().is_some_and(is_marker);
            if marked {
                out.push(DetailLine(vec![
                    (format!("{pad}{prefix}"), Tone::Plain),
                    (text, Tone::Redacted),
                    (suffix.to_owned(), Tone::Plain),
                    ("  ◀ redacted".to_owned(), Tone::Redacted),
                ]));
            } else {
                out.push(DetailLine::plain(format!("{pad}{prefix}{text}{suffix}")));
            }
        }
    }
}

/// The event detail's lines.
pub fn event_lines(d: &EventDetail) -> Vec<DetailLine> {
    let e = &d.event;
    let mut out = vec![DetailLine(vec![
        ("Event ".into(), Tone::Heading),
        (str_at(e, "event_id").to_owned(), Tone::Heading),
    ])];
    out.push(DetailLine::field(
        "intent",
        str_at(e, "intent"),
        Tone::Plain,
    ));
    out.push(DetailLine::field(
        "action",
        str_at(e, "action"),
        Tone::Plain,
    ));
    let ok = str_at(e, "status") == "ok";
    out.push(DetailLine::field(
        "status",
        if ok { "✓ ok" } else { "✗ error" },
        if ok { Tone::Good } else { Tone::Bad },
    ));
    out.push(DetailLine::field(
        "timing",
        format!(
            "{} → {} ({})",
            str_at(e, "started_at"),
            str_at(e, "completed_at"),
            duration(e.get("duration_ms").and_then(Value::as_u64).unwrap_or(0))
        ),
        Tone::Plain,
    ));
    out.push(DetailLine::field(
        "chain",
        format!(
            "{} · position {} · instance {} · seq {}",
            str_at(e, "correlation_id"),
            e.get("chain_position").and_then(Value::as_u64).unwrap_or(0),
            str_at(e, "instance_id"),
            d.seq
        ),
        Tone::Plain,
    ));
    out.push(DetailLine::field(
        "prev hash",
        str_at(e, "prev_event_hash"),
        Tone::Plain,
    ));
    out.push(DetailLine::field(
        "hash",
        d.content_hash
            .clone()
            .unwrap_or_else(|| "? cannot be computed (not canonical JSON)".into()),
        Tone::Plain,
    ));
    let key_id = e
        .pointer("/signature/key_id")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let (sig, tone) = match d.signature.as_str() {
        "verified" => (format!("✓ verified ({key_id})"), Tone::Good),
        "key_unknown" => (
            format!("? not checked: no trusted key for {key_id} (intentproof keys trust)"),
            Tone::Warn,
        ),
        "invalid" => (format!("✗ INVALID ({key_id})"), Tone::Bad),
        other => (format!("? {other}"), Tone::Warn),
    };
    out.push(DetailLine::field("signature", sig, tone));
    match &d.inclusion {
        Some(inc) => {
            out.push(DetailLine::field(
                "inclusion",
                format!(
                    "leaf {} of {}: audit path of {} hashes to {}",
                    inc.leaf_index, inc.tree_size, inc.proof_len, inc.root
                ),
                Tone::Plain,
            ));
            let (text, tone) = match &inc.checkpoint {
                Some(cp) => match cp.signature_ok {
                    Some(true) => (
                        format!(
                            "✓ signed {} by {} (tree size {})",
                            cp.time, cp.key_id, cp.tree_size
                        ),
                        Tone::Good,
                    ),
                    Some(false) => (
                        format!(
                            "✗ signature of {} does not verify with the daemon key",
                            cp.key_id
                        ),
                        Tone::Bad,
                    ),
                    None => (
                        format!(
                            "? signed {} by {} (key not available here)",
                            cp.time, cp.key_id
                        ),
                        Tone::Warn,
                    ),
                },
                None => (
                    "… no signed checkpoint covers it yet (the daemon signs one periodically)"
                        .to_owned(),
                    Tone::Warn,
                ),
            };
            out.push(DetailLine::field("checkpoint", text, tone));
        }
        None => out.push(DetailLine::field(
            "inclusion",
            "? not available",
            Tone::Warn,
        )),
    }
    let summary = e.get("redaction_summary");
    let paths = strs_of(summary, "fields_redacted_paths");
    let rules = strs_of(summary, "rules_applied");
    if paths.is_empty() {
        out.push(DetailLine::field("redacted", "nothing", Tone::Dim));
    } else {
        out.push(DetailLine::field(
            "redacted",
            format!(
                "◀ {} field(s): {} (rules: {})",
                paths.len(),
                paths.join(", "),
                rules.join(", ")
            ),
            Tone::Redacted,
        ));
    }
    let redacted: HashSet<&str> = paths.into_iter().collect();
    for (name, path) in [("inputs", "$.inputs"), ("output", "$.output")] {
        out.push(DetailLine::heading(name));
        match e.get(name) {
            Some(v) => json_lines(v, path, String::new(), "", 0, &redacted, &mut out),
            None => out.push(DetailLine(vec![("(none)".into(), Tone::Dim)])),
        }
    }
    if let Some(err) = e.get("error") {
        out.push(DetailLine::heading("error"));
        json_lines(err, "$.error", String::new(), "", 0, &redacted, &mut out);
    }
    out.push(DetailLine::heading("attributes"));
    match e.get("attributes").and_then(Value::as_object) {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.push(DetailLine::plain(format!("{k} = {v}")));
            }
        }
        _ => out.push(DetailLine(vec![("(none)".into(), Tone::Dim)])),
    }
    out
}
