//! Large JSON members (flow.json, run.json, inclusion_proof.json) read as
//! they stream, never held whole.
//!
//! [`Skeleton`] parses the structure of a document byte by byte: a
//! top-level object, its keys, and, down to where its [`Sink`] wants, the
//! arrays and objects inside. Every value it does not enter is cut out as a
//! *piece*: its exact bytes, handed to the sink, which checks it with the
//! parser `parse_strict` uses ([`strict_valid`], or `parse_strict` itself).
//! So a document passes only when `parse_strict` would accept it whole:
//!
//! - the document is the skeleton's tokens and the pieces, in order; if the
//!   skeleton is well-formed JSON around the pieces and each piece is a
//!   well-formed JSON value, the document is well formed;
//! - `parse_strict` refuses a repeated key in any object: inside a piece its
//!   own check does; in the top-level object, the skeleton does; in an
//!   object the skeleton enters below that, the sink does (it sees the keys);
//! - integer literals beyond 2^53 can only be inside pieces;
//! - nesting beyond [`MAX_DEPTH`] (below serde_json's recursion limit of
//!   128) is refused, so a piece cannot pass alone and fail in place.
//!
//! The skeleton may refuse a document `parse_strict` accepts (anything odd
//! ends the fast path; the caller then verifies the bundle the buffered
//! way); it never accepts one that `parse_strict` refuses.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::stream::{Bail, MAX_PIECE};

/// Nesting depth refused anywhere in a streamed document (serde_json's
/// recursion limit, which `parse_strict` inherits, is 128).
pub(super) const MAX_DEPTH: usize = 100;

/// What the document's structure is handed to; `D` is the caller's state.
///
/// A value's *depth* counts the containers around it: the members of the
/// top-level object are at depth 1, the elements of an array there at 2.
pub(super) trait Sink<D> {
    /// The document is not a JSON object (its first non-blank byte is not
    /// `{`, or it is blank); nothing more is parsed.
    fn not_object(&mut self, d: &mut D) -> Result<(), Bail>;
    /// The key of the member whose value, at `depth`, comes next. A key
    /// repeated at depth 1 is refused before this; deeper, it is the
    /// sink's to refuse.
    fn key(&mut self, d: &mut D, depth: usize, key: &str) -> Result<(), Bail>;
    /// Whether to enter the array (`array`) or object that starts at
    /// `depth`, rather than take it as one piece.
    fn descend(&mut self, d: &mut D, depth: usize, array: bool) -> Result<bool, Bail>;
    /// An array or object at `depth` is entered.
    fn open(&mut self, d: &mut D, depth: usize, array: bool) -> Result<(), Bail>;
    /// A value at `depth` not entered: its bytes.
    fn piece(&mut self, d: &mut D, depth: usize, raw: &[u8]) -> Result<(), Bail>;
    /// The array or object entered at `depth` ends.
    fn close(&mut self, d: &mut D, depth: usize) -> Result<(), Bail>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// In an object: after `{` (a key or `}`), after `,` (a key), in a key,
    /// before `:`, before the value, after the value (`,` or `}`).
    ObjectStart,
    ObjectKey,
    InKey,
    Colon,
    ObjectValue,
    ObjectAfter,
    /// In an array: after `[` (a value or `]`), after `,`, after a value.
    ArrayStart,
    ArrayValue,
    ArrayAfter,
}

/// The scan of one value being cut out.
#[derive(Debug, Clone, Copy)]
enum Capture {
    /// A string: after a backslash or not.
    Str { escaped: bool },
    /// An array or object: open brackets, inside a string, after a backslash.
    Nested {
        depth: usize,
        in_str: bool,
        escaped: bool,
    },
    /// A number or literal: until a delimiter.
    Scalar,
}

/// The streaming parser of a document's structure.
pub(super) struct Skeleton {
    /// Not begun (no `{` yet), or not an object, or ended.
    begun: bool,
    not_object: bool,
    done: bool,
    /// The containers entered, innermost last: the top-level object first.
    frames: Vec<Frame>,
    /// The value being cut out, and its depth.
    capture: Option<(Capture, usize)>,
    buf: Vec<u8>,
    key: Vec<u8>,
    key_escaped: bool,
    key_backslash: bool,
    top_keys: HashSet<String>,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

/// Decodes a key (its bytes between the quotes) as serde_json does.
fn decode_key(raw: &[u8], escaped: bool) -> Result<String, Bail> {
    if !escaped {
        if raw.iter().any(|b| *b < 0x20) {
            return Err(Bail("a control character in a key"));
        }
        return std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| Bail("a key is not UTF-8"));
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).map_err(|_| Bail("a key is not a JSON string"))
}

impl Skeleton {
    pub(super) fn new() -> Skeleton {
        Skeleton {
            begun: false,
            not_object: false,
            done: false,
            frames: Vec::new(),
            capture: None,
            buf: Vec::new(),
            key: Vec::new(),
            key_escaped: false,
            key_backslash: false,
            top_keys: HashSet::new(),
        }
    }

    /// Feeds the next bytes of the document.
    pub(super) fn feed<D, S: Sink<D> + ?Sized>(
        &mut self,
        data: &[u8],
        sink: &mut S,
        d: &mut D,
    ) -> Result<(), Bail> {
        let mut i = 0;
        while i < data.len() {
            if self.not_object {
                return Ok(());
            }
            if self.capture.is_some() {
                i = self.capture_bytes(data, i, sink, d)?;
                continue;
            }
            if self.frames.last() == Some(&Frame::InKey) {
                i = self.key_bytes(data, i, sink, d)?;
                continue;
            }
            let b = data[i];
            i += 1;
            if !is_ws(b) {
                self.token(b, sink, d)?;
            }
        }
        Ok(())
    }

    /// The document has ended: it must be complete.
    pub(super) fn finish<D, S: Sink<D> + ?Sized>(
        &mut self,
        sink: &mut S,
        d: &mut D,
    ) -> Result<(), Bail> {
        if self.done || self.not_object {
            return Ok(());
        }
        if !self.begun {
            // Blank or empty: not an object to any reader.
            self.not_object = true;
            return sink.not_object(d);
        }
        Err(Bail("the document ends early"))
    }

    fn set_top(&mut self, frame: Frame) {
        if let Some(top) = self.frames.last_mut() {
            *top = frame;
        }
    }

    /// A structural byte outside any key or value being cut out.
    fn token<D, S: Sink<D> + ?Sized>(
        &mut self,
        b: u8,
        sink: &mut S,
        d: &mut D,
    ) -> Result<(), Bail> {
        if !self.begun {
            self.begun = true;
            if b == b'{' {
                self.frames.push(Frame::ObjectStart);
                return Ok(());
            }
            self.not_object = true;
            return sink.not_object(d);
        }
        let Some(&top) = self.frames.last() else {
            // After the top-level object: only blanks.
            return Err(Bail("trailing bytes after the document"));
        };
        // Depth of a value directly in the innermost container.
        let depth = self.frames.len();
        match (top, b) {
            (Frame::ObjectStart | Frame::ObjectKey, b'"') => {
                self.key.clear();
                self.key_escaped = false;
                self.key_backslash = false;
                self.set_top(Frame::InKey);
            }
            (Frame::Colon, b':') => self.set_top(Frame::ObjectValue),
            (Frame::ObjectValue | Frame::ArrayStart | Frame::ArrayValue, _)
                if !(top == Frame::ArrayStart && b == b']') =>
            {
                let after = if top == Frame::ObjectValue {
                    Frame::ObjectAfter
                } else {
                    Frame::ArrayAfter
                };
                self.set_top(after);
                if (b == b'{' || b == b'[') && sink.descend(d, depth, b == b'[')? {
                    if depth + 1 > MAX_DEPTH {
                        return Err(Bail("nested too deep"));
                    }
                    self.frames.push(if b == b'[' {
                        Frame::ArrayStart
                    } else {
                        Frame::ObjectStart
                    });
                    sink.open(d, depth, b == b'[')?;
                } else {
                    self.start_capture(b, depth)?;
                }
            }
            (Frame::ObjectAfter, b',') => self.set_top(Frame::ObjectKey),
            (Frame::ArrayAfter, b',') => self.set_top(Frame::ArrayValue),
            (Frame::ObjectStart | Frame::ObjectAfter, b'}')
            | (Frame::ArrayStart | Frame::ArrayAfter, b']') => {
                self.frames.pop();
                if self.frames.is_empty() {
                    self.done = true;
                } else {
                    sink.close(d, depth - 1)?;
                }
            }
            _ => return Err(Bail("an unexpected byte in the document's structure")),
        }
        Ok(())
    }

    /// Reads key bytes from `data[i..]`; returns where it stopped.
    fn key_bytes<D, S: Sink<D> + ?Sized>(
        &mut self,
        data: &[u8],
        i: usize,
        sink: &mut S,
        d: &mut D,
    ) -> Result<usize, Bail> {
        let mut j = i;
        while j < data.len() {
            let b = data[j];
            if self.key_backslash {
                self.key_backslash = false;
            } else if b == b'\\' {
                self.key_backslash = true;
                self.key_escaped = true;
            } else if b == b'"' {
                self.key.extend_from_slice(&data[i..j]);
                let key = decode_key(&self.key, self.key_escaped)?;
                let depth = self.frames.len();
                if depth == 1 && !self.top_keys.insert(key.clone()) {
                    return Err(Bail("a repeated top-level key"));
                }
                self.set_top(Frame::Colon);
                sink.key(d, depth, &key)?;
                return Ok(j + 1);
            }
            j += 1;
        }
        if self.key.len() + (data.len() - i) > MAX_PIECE {
            return Err(Bail("a key too long to stream"));
        }
        self.key.extend_from_slice(&data[i..]);
        Ok(j)
    }

    fn start_capture(&mut self, b: u8, depth: usize) -> Result<(), Bail> {
        self.buf.clear();
        self.buf.push(b);
        let capture = match b {
            b'"' => Capture::Str { escaped: false },
            b'{' | b'[' => {
                if depth + 1 > MAX_DEPTH {
                    return Err(Bail("nested too deep"));
                }
                Capture::Nested {
                    depth: 1,
                    in_str: false,
                    escaped: false,
                }
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => Capture::Scalar,
            _ => return Err(Bail("an unexpected byte where a value starts")),
        };
        self.capture = Some((capture, depth));
        Ok(())
    }

    /// Scans the bytes of the value being cut out from `data[i..]`; returns
    /// where it stopped.
    fn capture_bytes<D, S: Sink<D> + ?Sized>(
        &mut self,
        data: &[u8],
        i: usize,
        sink: &mut S,
        d: &mut D,
    ) -> Result<usize, Bail> {
        let Some((mut capture, depth)) = self.capture else {
            return Ok(i);
        };
        let mut j = i;
        // The value ends before `end` (a scalar's delimiter is not part of it).
        let mut end: Option<usize> = None;
        match &mut capture {
            Capture::Str { escaped } => {
                while j < data.len() {
                    let b = data[j];
                    j += 1;
                    if *escaped {
                        *escaped = false;
                    } else if b == b'\\' {
                        *escaped = true;
                    } else if b == b'"' {
                        end = Some(j);
                        break;
                    }
                }
            }
            Capture::Nested {
                depth: nested,
                in_str,
                escaped,
            } => {
                while j < data.len() {
                    let b = data[j];
                    j += 1;
                    if *in_str {
                        if *escaped {
                            *escaped = false;
                        } else if b == b'\\' {
                            *escaped = true;
                        } else if b == b'"' {
                            *in_str = false;
                        }
                        continue;
                    }
                    match b {
                        b'"' => *in_str = true,
                        b'{' | b'[' => {
                            *nested += 1;
                            if depth + *nested > MAX_DEPTH {
                                return Err(Bail("nested too deep"));
                            }
                        }
                        b'}' | b']' => {
                            *nested -= 1;
                            if *nested == 0 {
                                end = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            Capture::Scalar => {
                while j < data.len() {
                    let b = data[j];
                    if is_ws(b) || matches!(b, b',' | b'}' | b']') {
                        end = Some(j);
                        break;
                    }
                    j += 1;
                }
            }
        }
        let Some(end) = end else {
            if self.buf.len() + (data.len() - i) > MAX_PIECE {
                return Err(Bail("a value too long to stream"));
            }
            self.buf.extend_from_slice(&data[i..]);
            self.capture = Some((capture, depth));
            return Ok(data.len());
        };
        self.buf.extend_from_slice(&data[i..end]);
        self.capture = None;
        let raw = std::mem::take(&mut self.buf);
        let result = sink.piece(d, depth, &raw);
        self.buf = raw;
        result?;
        Ok(end)
    }
}

/// Whether `parse_strict` would accept `bytes`, without building the value:
/// the same serde_json parser and visitor shape (every value read with
/// `deserialize_any`, keys as `String`s, no repeated key in an object, no
/// non-finite number), then the end of input, then integer literals within
/// 2^53.
pub(super) fn strict_valid(bytes: &[u8]) -> bool {
    if !integer_literals_safe(bytes) {
        return false;
    }
    let duplicate = RefCell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Validate {
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end())
    .is_ok()
}

/// `parse_strict`'s check of integer literals (outside strings, no integer
/// beyond 2^53): intentproof-core's own.
pub(super) fn integer_literals_safe(bytes: &[u8]) -> bool {
    intentproof_core::canon::check_integer_literals(bytes).is_ok()
}

/// `parse_strict`'s visitor without the value: accepts what it accepts.
struct Validate<'a> {
    duplicate: &'a RefCell<bool>,
}

impl<'de> DeserializeSeed<'de> for Validate<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Validate<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(E::custom("number is not finite"))
        }
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_string<E>(self, _: String) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Validate {
                duplicate: self.duplicate,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        let mut keys: Vec<String> = Vec::new();
        let mut set: Option<HashSet<String>> = None;
        while let Some(key) = access.next_key::<String>()? {
            let repeated = match &mut set {
                Some(set) => !set.insert(key),
                None if keys.len() < 16 => {
                    let repeated = keys.contains(&key);
                    keys.push(key);
                    repeated
                }
                None => {
                    let mut all: HashSet<String> = keys.drain(..).collect();
                    let repeated = !all.insert(key);
                    set = Some(all);
                    repeated
                }
            };
            if repeated {
                *self.duplicate.borrow_mut() = true;
                return Err(de::Error::custom("duplicate object key"));
            }
            access.next_value_seed(Validate {
                duplicate: self.duplicate,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use intentproof_core::canon::parse_strict;

    #[test]
    fn strict_valid_agrees_with_parse_strict() {
        for text in [
            r#"{"a":1}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":1,"b":1}}"#,
            r#"[1,2,{"x":[{"y":1,"y":2}]}]"#,
            r#"{"a":"\u0061","\u0061":1}"#,
            r#"{"a":"\u0061","b":1}"#,
            "9007199254740992",
            "9007199254740993",
            "-9007199254740993",
            "1e400",
            "1.5e300",
            r#""\ud800""#,
            "\"\u{7f}\"",
            "\"\t\"",
            "[1,]",
            "{} x",
            "{}  \n",
            "",
            "nul",
            "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]",
            r#"{"k":[1,2,3],"l":{"m":null,"n":true,"o":-0.5e-3}}"#,
        ] {
            assert_eq!(
                strict_valid(text.as_bytes()),
                parse_strict(text.as_bytes()).is_ok(),
                "{text:?}"
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            strict_valid(deep.as_bytes()),
            parse_strict(deep.as_bytes()).is_ok()
        );
        assert!(!strict_valid(b"\"\xff\""));
        assert!(parse_strict(b"\"\xff\"").is_err());
        // Twenty keys: the set takes over from the list.
        let many: Vec<String> = (0..20).map(|i| format!("\"k{i}\":{i}")).collect();
        let ok = format!("{{{}}}", many.join(","));
        let dup = format!("{{{},\"k3\":0}}", many.join(","));
        assert!(strict_valid(ok.as_bytes()));
        assert!(!strict_valid(dup.as_bytes()));
    }
}
