//! Newline-delimited JSON-RPC framing for stdio (the stdio client and every
//! stdio upstream), bounded and forgiving of bad lines.
//!
//! [`LineCodec`] yields each line as [`Line::Text`], or, for a line that is
//! not valid UTF-8 or is longer than its limit, a [`Line::Dropped`]: its
//! size, why it was dropped, and the JSON-RPC id read leniently from its
//! bytes. A bad line is an item, never a decoding error, so it cannot end
//! the stream (tokio's `FramedRead` stops for good after an error, which is
//! how one bad line used to look like the end of the input). Only I/O
//! errors are errors, and only the end of the input ends the stream.
//!
//! An oversize line is never buffered whole: once the limit is passed its
//! first [`PROBE_HEAD_BYTES`] and last [`PROBE_TAIL_BYTES`] are kept (to
//! read its id) and the rest is discarded as it arrives, up to the newline.
//!
//! [`DroppedLine::answer`] says what the JSON-RPC peer waiting on a dropped
//! message should get: the sender of a dropped request an error in reply,
//! the receiver of a dropped answer an error in its place.
//!
//! What it does not do: parse JSON beyond reading a dropped line's id and
//! kind, log, or write anything (callers do).

use std::fmt;

use serde_json::{Value, json};
use tokio_util::bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// How much of the start of an oversize line is kept to read its id
/// (enough for any envelope that puts `id` and `method` first).
pub const PROBE_HEAD_BYTES: usize = 64 * 1024;
/// How much of the end of an oversize line is kept to read its id (some
/// SDKs write `{"result": ..., "jsonrpc": "2.0", "id": 7}`).
pub const PROBE_TAIL_BYTES: usize = 4 * 1024;
/// A read buffer left larger than this by a discarded line is given back,
/// and replaced by one of [`DISCARD_BUFFER_BYTES`] (a pipe's worth per read).
const KEEP_BUFFER_BYTES: usize = 1024 * 1024;
const DISCARD_BUFFER_BYTES: usize = 64 * 1024;

/// Which end of a stdio relay a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The MCP client (the agent) on the gateway's stdin.
    Client,
    /// The upstream MCP server on its stdout.
    Upstream,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        })
    }
}

/// One line of input.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// A line within the limit and valid UTF-8, without its `\n` (or
    /// `\r\n`). It may still not be JSON: that is the caller's to check.
    Text(String),
    /// A line that could not be relayed.
    Dropped(DroppedLine),
}

/// Why a line was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not UTF-8 (JSON text must be); `valid_up_to` is the offset of the
    /// first invalid byte.
    NotUtf8 {
        /// Offset of the first byte that is not UTF-8.
        valid_up_to: usize,
    },
    /// Longer than `limit` bytes.
    TooLong {
        /// The limit it passed.
        limit: usize,
    },
}

/// What a dropped line looked like, as far as its bytes could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// It has a `method`: a request (or a notification, without an id).
    Request,
    /// It has a `result` or an `error` and no `method`: an answer.
    Answer,
    /// Neither could be read.
    Unknown,
}

/// A line that was not relayed.
#[derive(Debug, Clone, PartialEq)]
pub struct DroppedLine {
    /// Why.
    pub reason: DropReason,
    /// Its length in bytes, without the newline.
    pub size: usize,
    /// False when the input ended before the line's newline.
    pub terminated: bool,
    /// Its JSON-RPC id (a string or a number), when one could be read.
    pub id: Option<Value>,
    /// What it was, when that could be read.
    pub kind: MessageKind,
}

/// Who gets a JSON-RPC error for a dropped line.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The line was a request: answer its sender with this error.
    ToSender(Value),
    /// The line was an answer: pass this error on, in its place, to the
    /// peer that is waiting for it.
    InPlace(Value),
}

impl DroppedLine {
    /// The JSON-RPC error owed for this line, when it had an id. A line
    /// whose kind could not be read is taken for what its side usually
    /// sends: a client sends requests, an upstream sends answers.
    pub fn answer(&self, from: Side) -> Option<Answer> {
        let id = self.id.clone()?;
        let request = match self.kind {
            MessageKind::Request => true,
            MessageKind::Answer => false,
            MessageKind::Unknown => from == Side::Client,
        };
        let problem = self.problem();
        Some(if request {
            let code = match self.reason {
                DropReason::NotUtf8 { .. } => -32700,
                DropReason::TooLong { .. } => -32600,
            };
            Answer::ToSender(error_message(
                id,
                code,
                format!("IntentProof dropped this request: {problem}"),
            ))
        } else {
            Answer::InPlace(error_message(
                id,
                -32603,
                format!("IntentProof dropped the {from}'s answer to this request: {problem}"),
            ))
        })
    }

    /// One line for the log: the side, the size, why, and what was done
    /// (`answered`: whether the error of [`answer`](Self::answer) was sent).
    pub fn describe(&self, from: Side, answered: bool) -> String {
        let outcome = match (&self.id, answered, self.answer(from)) {
            (None, _, _) => "no JSON-RPC id could be read from it, so no error was sent".to_owned(),
            (Some(id), true, Some(Answer::ToSender(_))) => {
                format!("request id {id} was answered with a JSON-RPC error")
            }
            (Some(id), true, _) => {
                format!("id {id} got a JSON-RPC error in its place")
            }
            (Some(id), false, _) => format!("its id {id} got no JSON-RPC error"),
        };
        format!(
            "the {from} sent a line that was dropped: {}; {outcome}",
            self.problem()
        )
    }

    fn problem(&self) -> String {
        let size = if self.terminated {
            format!("{} bytes", self.size)
        } else {
            format!("{} bytes, cut off by the end of input", self.size)
        };
        match self.reason {
            DropReason::NotUtf8 { valid_up_to } => format!(
                "it is not valid UTF-8 ({size}, first invalid byte at offset {valid_up_to}); JSON-RPC messages must be UTF-8"
            ),
            DropReason::TooLong { limit } => {
                format!("it is longer than the {limit}-byte limit ({size})")
            }
        }
    }
}

fn error_message(id: Value, code: i64, message: String) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Splits input into [`Line`]s of at most `max` bytes; see the module docs.
#[derive(Debug)]
pub struct LineCodec {
    max: usize,
    /// How much of the buffer was already searched for a newline.
    searched: usize,
    /// The oversize line being discarded, if any.
    discarding: Option<Discarded>,
}

#[derive(Debug, Default)]
struct Discarded {
    size: usize,
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Discarded {
    fn take(&mut self, bytes: &[u8]) {
        self.size += bytes.len();
        let room = PROBE_HEAD_BYTES.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        if bytes.len() >= PROBE_TAIL_BYTES {
            self.tail.clear();
            self.tail
                .extend_from_slice(&bytes[bytes.len() - PROBE_TAIL_BYTES..]);
        } else {
            self.tail.extend_from_slice(bytes);
            let excess = self.tail.len().saturating_sub(PROBE_TAIL_BYTES);
            self.tail.drain(..excess);
        }
    }

    fn finish(self, limit: usize, terminated: bool) -> DroppedLine {
        let (id, kind) = probe(&self.head, &self.tail);
        DroppedLine {
            reason: DropReason::TooLong { limit },
            size: self.size,
            terminated,
            id,
            kind,
        }
    }
}

impl LineCodec {
    /// A codec for lines of at most `max` bytes (without the newline).
    pub fn new(max: usize) -> Self {
        LineCodec {
            max,
            searched: 0,
            discarding: None,
        }
    }

    fn line(&self, mut bytes: BytesMut, terminated: bool) -> Line {
        let size = bytes.len();
        if bytes.last() == Some(&b'\r') {
            bytes.truncate(size - 1);
        }
        match std::str::from_utf8(&bytes) {
            Ok(text) => Line::Text(text.to_owned()),
            Err(e) => {
                let tail = &bytes[bytes.len().saturating_sub(PROBE_TAIL_BYTES)..];
                let (id, kind) = probe(&bytes, tail);
                Line::Dropped(DroppedLine {
                    reason: DropReason::NotUtf8 {
                        valid_up_to: e.valid_up_to(),
                    },
                    size,
                    terminated,
                    id,
                    kind,
                })
            }
        }
    }
}

impl Decoder for LineCodec {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        if let Some(discarded) = &mut self.discarding {
            return Ok(match buf.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    discarded.take(&buf[..end]);
                    buf.advance(end + 1);
                    self.discarding
                        .take()
                        .map(|d| Line::Dropped(d.finish(self.max, true)))
                }
                None => {
                    discarded.take(buf);
                    buf.clear();
                    if buf.capacity() > KEEP_BUFFER_BYTES {
                        // The oversize line grew the buffer to the limit:
                        // give that memory back rather than keep it.
                        *buf = BytesMut::with_capacity(DISCARD_BUFFER_BYTES);
                    }
                    None
                }
            });
        }
        let window = buf.len().min(self.max.saturating_add(1));
        let found = buf[self.searched.min(window)..window]
            .iter()
            .position(|b| *b == b'\n');
        match found {
            Some(offset) => {
                let end = self.searched + offset;
                self.searched = 0;
                let mut line = buf.split_to(end + 1);
                line.truncate(end);
                Ok(Some(self.line(line, true)))
            }
            None if buf.len() > self.max => {
                self.searched = 0;
                self.discarding = Some(Discarded::default());
                self.decode(buf)
            }
            None => {
                self.searched = window;
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        if let Some(line) = self.decode(buf)? {
            return Ok(Some(line));
        }
        if let Some(discarded) = self.discarding.take() {
            return Ok(Some(Line::Dropped(discarded.finish(self.max, false))));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        self.searched = 0;
        let rest = buf.split();
        Ok(Some(self.line(rest, false)))
    }
}

/// Reads a dropped line's id and kind from its first bytes (`head`) and,
/// when they do not hold the whole top-level object, from its last (`tail`).
/// Lenient: invalid UTF-8 inside strings is skipped, and nothing is
/// allocated but the id itself.
fn probe(head: &[u8], tail: &[u8]) -> (Option<Value>, MessageKind) {
    let found = probe_head(head);
    let id = match found.id {
        Some(id) => Some(id),
        None if !found.complete => probe_tail(tail),
        None => None,
    };
    let kind = if found.method {
        MessageKind::Request
    } else if found.answer {
        MessageKind::Answer
    } else {
        MessageKind::Unknown
    };
    (id, kind)
}

#[derive(Debug, Default)]
struct HeadProbe {
    id: Option<Value>,
    method: bool,
    answer: bool,
    /// The whole top-level object was read.
    complete: bool,
}

fn usable_id(raw: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(raw)
        .ok()
        .filter(|v| v.is_string() || v.is_number())
}

fn probe_head(bytes: &[u8]) -> HeadProbe {
    let mut found = HeadProbe::default();
    let mut s = Scanner { bytes, at: 0 };
    // `None`: the bytes ended (or stopped looking like JSON) first.
    let _ = (|| -> Option<()> {
        s.whitespace();
        s.expect(b'{')?;
        s.whitespace();
        if s.peek()? == b'}' {
            found.complete = true;
            return Some(());
        }
        loop {
            s.whitespace();
            let key = s.string()?;
            s.whitespace();
            s.expect(b':')?;
            s.whitespace();
            let start = s.at;
            match key {
                b"method" => found.method = true,
                b"result" | b"error" => found.answer = true,
                _ => {}
            }
            s.skip_value()?;
            if key == b"id" {
                found.id = usable_id(&bytes[start..s.at]);
            }
            s.whitespace();
            match s.next()? {
                b',' => continue,
                b'}' => {
                    found.complete = true;
                    return Some(());
                }
                _ => return None,
            }
        }
    })();
    found
}

/// The id of a line that ends `"id": <string or number> }`.
fn probe_tail(bytes: &[u8]) -> Option<Value> {
    let trimmed = trim_end(bytes);
    let body = trim_end(trimmed.strip_suffix(b"}")?);
    let start = if body.last() == Some(&b'"') {
        // Back to the opening quote: one not escaped by an odd number of
        // backslashes.
        let mut at = body.len() - 1;
        loop {
            at = body[..at].iter().rposition(|b| *b == b'"')?;
            let slashes = body[..at].iter().rev().take_while(|b| **b == b'\\').count();
            if slashes % 2 == 0 {
                break at;
            }
        }
    } else {
        body.iter()
            .rposition(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .map_or(0, |at| at + 1)
    };
    let id = usable_id(&body[start..])?;
    let before = trim_end(&body[..start]);
    let before = trim_end(before.strip_suffix(b":")?);
    let before = trim_end(before.strip_suffix(b"\"id\"")?);
    matches!(before.last(), Some(b',' | b'{')).then_some(id)
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let kept = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |at| at + 1);
    &bytes[..kept]
}

/// A cursor over JSON bytes that only skips: no recursion, no allocation.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn whitespace(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// A string's raw bytes between its quotes (escapes left as they are).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.at;
        loop {
            match self.next()? {
                b'\\' => {
                    self.next()?;
                }
                b'"' => return Some(&self.bytes[start..self.at - 1]),
                _ => {}
            }
        }
    }

    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth = depth.checked_sub(1)?,
                        _ => {}
                    }
                    self.at += 1;
                    if depth == 0 {
                        return Some(());
                    }
                }
            }
            _ => {
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
                {
                    self.at += 1;
                }
                // A scalar the bytes end in may go on past them.
                (self.at > start && self.at < self.bytes.len()).then_some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(max: usize, input: &[u8]) -> Vec<Line> {
        let mut codec = LineCodec::new(max);
        let mut out = Vec::new();
        // Fed in small pieces, as a pipe delivers them.
        let mut buf = BytesMut::new();
        for piece in input.chunks(7) {
            buf.extend_from_slice(piece);
            while let Some(line) = codec.decode(&mut buf).unwrap() {
                out.push(line);
            }
        }
        while let Some(line) = codec.decode_eof(&mut buf).unwrap() {
            out.push(line);
        }
        out
    }

    fn text(s: &str) -> Line {
        Line::Text(s.to_owned())
    }

    #[test]
    fn good_lines_pass_with_their_line_endings_removed() {
        assert_eq!(
            lines(64, b"{\"a\":1}\r\n{}\n\nlast"),
            vec![text("{\"a\":1}"), text("{}"), text(""), text("last")]
        );
    }

    #[test]
    fn a_line_that_is_not_utf8_is_dropped_with_its_id_and_the_next_one_passes() {
        let input = b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"x\",\"params\":\"\xff\"}\n{}\n";
        assert_eq!(
            lines(1024, input),
            vec![
                Line::Dropped(DroppedLine {
                    reason: DropReason::NotUtf8 { valid_up_to: 47 },
                    size: 50,
                    terminated: true,
                    id: Some(json!(7)),
                    kind: MessageKind::Request,
                }),
                text("{}"),
            ]
        );
    }

    #[test]
    fn an_oversize_line_is_discarded_up_to_its_newline_and_the_next_one_passes() {
        let mut input = b"{\"id\":\"a\\\"b\",\"result\":\"".to_vec();
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend_from_slice(b"\"}\n{\"ok\":1}\n");
        let size = input.len() - "\n{\"ok\":1}\n".len();
        assert_eq!(
            lines(100, &input),
            vec![
                Line::Dropped(DroppedLine {
                    reason: DropReason::TooLong { limit: 100 },
                    size,
                    terminated: true,
                    id: Some(json!("a\"b")),
                    kind: MessageKind::Answer,
                }),
                text("{\"ok\":1}"),
            ]
        );
    }

    #[test]
    fn a_line_exactly_at_the_limit_passes_and_one_byte_more_is_dropped() {
        let at = "x".repeat(10);
        let over = "y".repeat(11);
        let got = lines(10, format!("{at}\n{over}\n{at}").as_bytes());
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], text(&at));
        assert!(matches!(&got[1], Line::Dropped(d) if d.size == 11 && d.id.is_none()));
        assert_eq!(got[2], text(&at));
    }

    #[test]
    fn the_buffer_an_oversize_line_grew_is_given_back() {
        let mut codec = LineCodec::new(KEEP_BUFFER_BYTES);
        let mut buf = BytesMut::from(&vec![b'x'; KEEP_BUFFER_BYTES * 2][..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!((buf.len(), buf.capacity()), (0, DISCARD_BUFFER_BYTES));
        buf.extend_from_slice(b"xx\n{}\n");
        assert!(matches!(
            codec.decode(&mut buf).unwrap(),
            Some(Line::Dropped(d)) if d.size == KEEP_BUFFER_BYTES * 2 + 2
        ));
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(text("{}")));
    }

    #[test]
    fn an_oversize_line_cut_off_by_the_end_of_input_is_reported_as_such() {
        let input = format!("{{\"method\":\"m\",\"id\":3,\"p\":\"{}", "z".repeat(500));
        assert_eq!(
            lines(100, input.as_bytes()),
            vec![Line::Dropped(DroppedLine {
                reason: DropReason::TooLong { limit: 100 },
                size: input.len(),
                terminated: false,
                id: Some(json!(3)),
                kind: MessageKind::Request,
            })]
        );
    }

    #[test]
    fn an_id_at_the_end_is_read_from_the_tail() {
        let mut input = b"{\"result\":{\"content\":[{\"id\":1,\"text\":\"".to_vec();
        input.extend(std::iter::repeat_n(b'q', PROBE_HEAD_BYTES * 2));
        input.extend_from_slice(b"\"}]},\"jsonrpc\":\"2.0\",\"id\":42}\n");
        let got = lines(1000, &input);
        assert!(
            matches!(&got[..], [Line::Dropped(d)] if d.id == Some(json!(42)) && d.kind == MessageKind::Answer),
            "{got:?}"
        );
    }

    #[test]
    fn nested_ids_are_not_taken_for_the_message_id() {
        assert_eq!(probe_tail(b"{\"result\":{\"id\":5}}"), None);
        assert_eq!(probe_tail(b"\"x\":\"id\":5}"), None);
        assert_eq!(probe_tail(b"{\"a\":1, \"id\" : -5 }\r"), Some(json!(-5)));
        let head = probe_head(b"{\"params\":{\"id\":9},\"method\":\"m\"}");
        assert_eq!((head.id, head.method, head.complete), (None, true, true));
        assert_eq!(
            probe(b"{\"params\":{\"id\":9},\"method\":\"m\"}", b""),
            (None, MessageKind::Request)
        );
    }

    #[test]
    fn ids_that_are_not_strings_or_numbers_are_not_answered() {
        assert_eq!(probe_head(b"{\"id\":null,\"method\":\"m\"}").id, None);
        assert_eq!(probe_head(b"{\"id\":{\"a\":1},\"method\":\"m\"}").id, None);
        assert_eq!(probe_head(b"{\"id\":\"\xff\"}").id, None);
    }

    #[test]
    fn answers_go_to_the_peer_that_waits() {
        let dropped = DroppedLine {
            reason: DropReason::TooLong { limit: 10 },
            size: 20,
            terminated: true,
            id: Some(json!(1)),
            kind: MessageKind::Unknown,
        };
        assert_eq!(
            dropped.answer(Side::Client),
            Some(Answer::ToSender(
                json!({"jsonrpc": "2.0", "id": 1, "error": {
                    "code": -32600,
                    "message": "IntentProof dropped this request: it is longer than the 10-byte limit (20 bytes)"
                }})
            ))
        );
        assert_eq!(
            dropped.answer(Side::Upstream),
            Some(Answer::InPlace(
                json!({"jsonrpc": "2.0", "id": 1, "error": {
                    "code": -32603,
                    "message": "IntentProof dropped the upstream's answer to this request: it is longer than the 10-byte limit (20 bytes)"
                }})
            ))
        );
        assert_eq!(
            dropped.describe(Side::Upstream, true),
            "the upstream sent a line that was dropped: it is longer than the 10-byte limit (20 bytes); id 1 got a JSON-RPC error in its place"
        );
        let anonymous = DroppedLine {
            id: None,
            ..dropped
        };
        assert_eq!(anonymous.answer(Side::Client), None);
        assert_eq!(
            anonymous.describe(Side::Client, false),
            "the client sent a line that was dropped: it is longer than the 10-byte limit (20 bytes); no JSON-RPC id could be read from it, so no error was sent"
        );
    }
}
