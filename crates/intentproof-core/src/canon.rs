//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! [`canonicalize`] turns a [`serde_json::Value`] into the exact bytes that
//! IntentProof hashes and signs: object keys sorted by their UTF-16 code
//! units, no whitespace, strings escaped minimally (only `"`, `\` and control
//! characters; `\b \f \n \r \t` by name, the rest as `\u00xx` in lowercase
//! hex), numbers formatted as ECMAScript's `Number.prototype.toString`
//! (`1.0` -> `1`, `1e21` -> `1e+21`, `1e-7` -> `1e-7`, `-0` -> `0`).
//!
//! Two choices go beyond the RFC's letter:
//!
//! - **Integers beyond 2^53 are rejected** ([`CanonError::UnsafeInteger`]).
//!   JCS treats every number as an IEEE-754 double, so `9007199254740993`
//!   would silently canonicalize to `9007199254740992` and two different
//!   events could hash the same. Carry such values as strings instead.
//!   `±2^53` itself is exact and accepted. Numbers written with a fraction
//!   or exponent (`1e22`, `0.1`) are doubles by definition and are formatted
//!   as such.
//! - **Duplicate object keys are rejected** by [`parse_strict`] (which also
//!   rejects integer literals beyond 2^53, even those too large for `u64`,
//!   which `serde_json` would otherwise turn into a rounded float).
//!   `serde_json::from_slice` silently keeps the last duplicate, so always
//!   parse untrusted bytes you are going to hash with [`parse_strict`].
//!
//! ```
//! use intentproof_core::canon::{canonicalize, parse_strict};
//! let v = parse_strict(br#"{"b": 1e21, "a": [1.0, "\u00e9", -0.0]}"#).unwrap();
//! assert_eq!(canonicalize(&v).unwrap(), r#"{"a":[1,"é",0],"b":1e+21}"#.as_bytes());
//! assert!(parse_strict(br#"{"a": 1, "a": 2}"#).is_err());
//! ```

use std::cell::RefCell;
use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The largest integer magnitude JCS can carry exactly (2^53).
pub const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// Why a value or a byte string could not be canonicalized.
#[derive(Debug, thiserror::Error)]
pub enum CanonError {
    /// An integer's magnitude is above 2^53, where doubles lose precision.
    #[error(
        "integer {value} at {path} is beyond 2^53 (9007199254740992) and cannot be \
         canonicalized exactly (RFC 8785 numbers are IEEE-754 doubles); \
         send it as a string instead"
    )]
    UnsafeInteger {
        /// The integer as written.
        value: String,
        /// JSON pointer-like path of the value (`$` for the root).
        path: String,
    },
    /// A number was NaN or infinite (only reachable through hand-built values).
    #[error("number at {path} is not finite; JSON and RFC 8785 cannot carry NaN or Infinity")]
    NonFinite {
        /// Path of the value.
        path: String,
    },
    /// The same key occurs twice in one object of the input bytes.
    #[error(
        "duplicate object key {key:?} at line {line}, column {column}; \
         RFC 8785 requires every key of an object to be unique: remove one of them"
    )]
    DuplicateKey {
        /// The repeated key (after unescaping).
        key: String,
        /// 1-based line of the error position.
        line: usize,
        /// 1-based column of the error position.
        column: usize,
    },
    /// The input is not well-formed JSON.
    #[error("input is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Canonicalizes a JSON value (RFC 8785) into a fresh buffer.
///
/// ```
/// use serde_json::json;
/// let bytes = intentproof_core::canon::canonicalize(&json!({"b": 1e-7, "a": "\n"})).unwrap();
/// assert_eq!(bytes, br#"{"a":"\n","b":1e-7}"#);
/// ```
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, CanonError> {
    let mut out = Vec::with_capacity(256);
    canonicalize_into(value, &mut out)?;
    Ok(out)
}

/// Canonicalizes `value` and appends the bytes to `out`.
///
/// On error, `out` may hold a partial prefix; discard it.
pub fn canonicalize_into(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonError> {
    write_value(value, out, &mut Path::root())
}

/// Canonicalizes an object, leaving out the top-level keys in `exclude`.
///
/// This is how content hashes are taken (`exclude = ["signature"]`) without
/// cloning the object.
///
/// ```
/// use serde_json::json;
/// let v = json!({"b": 2, "signature": {"alg": "ed25519"}, "a": 1});
/// let bytes = intentproof_core::canon::canonicalize_object_without(
///     v.as_object().unwrap(), &["signature"]).unwrap();
/// assert_eq!(bytes, br#"{"a":1,"b":2}"#);
/// ```
pub fn canonicalize_object_without(
    object: &Map<String, Value>,
    exclude: &[&str],
) -> Result<Vec<u8>, CanonError> {
    // Signed events are about 1 KiB: start big enough for most in one go.
    let mut out = Vec::with_capacity(2048);
    let mut path = Path::root();
    write_object(object, exclude, &mut out, &mut path)?;
    Ok(out)
}

/// Parses JSON bytes, rejecting duplicate object keys and integer literals
/// beyond 2^53 (see the module docs).
///
/// ```
/// use intentproof_core::canon::{parse_strict, CanonError};
/// assert!(matches!(parse_strict(br#"{"k":1,"k":1}"#), Err(CanonError::DuplicateKey { .. })));
/// assert!(matches!(
///     parse_strict(b"100000000000000000000000"),
///     Err(CanonError::UnsafeInteger { .. })
/// ));
/// assert_eq!(parse_strict(b"9007199254740992").unwrap(), serde_json::json!(9007199254740992u64));
/// ```
pub fn parse_strict(bytes: &[u8]) -> Result<Value, CanonError> {
    check_integer_literals(bytes)?;
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictSeed {
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(v) => Ok(v),
        Err(e) => match duplicate.into_inner() {
            Some(key) => Err(CanonError::DuplicateKey {
                key,
                line: e.line(),
                column: e.column(),
            }),
            None => Err(CanonError::Json(e)),
        },
    }
}

/// Parses `bytes` strictly and returns their canonical form.
///
/// ```
/// let out = intentproof_core::canon::canonicalize_bytes(b"{\"z\": [1.50, true], \"a\": null}").unwrap();
/// assert_eq!(out, br#"{"a":null,"z":[1.5,true]}"#);
/// ```
pub fn canonicalize_bytes(bytes: &[u8]) -> Result<Vec<u8>, CanonError> {
    canonicalize(&parse_strict(bytes)?)
}

// ---------------------------------------------------------------------------
// Writer

/// Lazily rendered path, for error messages only.
struct Path<'a> {
    segments: Vec<Segment<'a>>,
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

impl Path<'_> {
    fn root() -> Self {
        Path {
            segments: Vec::new(),
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for s in &self.segments {
            match s {
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

fn write_value<'a>(
    value: &'a Value,
    out: &mut Vec<u8>,
    path: &mut Path<'a>,
) -> Result<(), CanonError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out, path)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                path.segments.push(Segment::Index(i));
                write_value(item, out, path)?;
                path.segments.pop();
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, &[], out, path)?,
    }
    Ok(())
}

fn write_object<'a>(
    map: &'a Map<String, Value>,
    exclude: &[&str],
    out: &mut Vec<u8>,
    path: &mut Path<'a>,
) -> Result<(), CanonError> {
    let kept = |(k, _): &(&'a String, &'a Value)| !exclude.contains(&k.as_str());
    // serde_json's map may be a BTreeMap (UTF-8 order) or, with
    // `preserve_order` enabled anywhere in the build, insertion order; sort
    // explicitly either way. Already-sorted input (the usual case) is
    // written straight from the map, without collecting the entries.
    let mut prev: Option<&str> = None;
    let sorted = map.iter().filter(kept).all(|(k, _)| {
        let in_order = prev.is_none_or(|p| utf16_cmp(p, k) == Ordering::Less);
        prev = Some(k);
        in_order
    });
    if sorted {
        write_entries(map.iter().filter(kept), out, path)
    } else {
        let mut entries: Vec<(&'a String, &'a Value)> = map.iter().filter(kept).collect();
        entries.sort_unstable_by(|a, b| utf16_cmp(a.0, b.0));
        write_entries(entries.into_iter(), out, path)
    }
}

fn write_entries<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
    out: &mut Vec<u8>,
    path: &mut Path<'a>,
) -> Result<(), CanonError> {
    out.push(b'{');
    for (i, (key, item)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        path.segments.push(Segment::Key(key));
        write_value(item, out, path)?;
        path.segments.pop();
    }
    out.push(b'}');
    Ok(())
}

/// Orders strings by UTF-16 code units, as RFC 8785 section 3.2.3 requires.
///
/// UTF-8 byte order equals code point order, which differs from UTF-16 order
/// only between U+E000..U+FFFF and supplementary characters.
///
/// ```
/// use std::cmp::Ordering;
/// use intentproof_core::canon::utf16_cmp;
/// assert_eq!(utf16_cmp("\u{1F600}", "\u{E000}"), Ordering::Less);
/// assert_eq!(utf16_cmp("a", "b"), Ordering::Less);
/// ```
pub fn utf16_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.as_bytes().cmp(b.as_bytes())
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

fn write_number(n: &Number, out: &mut Vec<u8>, path: &Path) -> Result<(), CanonError> {
    if let Some(u) = n.as_u64() {
        if u > MAX_SAFE_INTEGER {
            return Err(CanonError::UnsafeInteger {
                value: u.to_string(),
                path: path.to_string(),
            });
        }
        write_u64(u, out);
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(CanonError::UnsafeInteger {
                value: i.to_string(),
                path: path.to_string(),
            });
        }
        out.push(b'-');
        write_u64(i.unsigned_abs(), out);
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        if !f.is_finite() {
            return Err(CanonError::NonFinite {
                path: path.to_string(),
            });
        }
        let mut buffer = ryu_js::Buffer::new();
        out.extend_from_slice(buffer.format_finite(f).as_bytes());
    }
    Ok(())
}

fn write_u64(mut u: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(i) = next_escape(bytes, start) {
        let b = bytes[i];
        out.extend_from_slice(&bytes[start..i]);
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => &[],
        };
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether a string byte must be escaped: a control character, `"` or `\`.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The index of the first byte at or after `from` that needs escaping.
/// Skips eight bytes at a time while none of them does (SWAR: each test
/// below is exact as a yes/no for the whole word).
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
        if control
            || has_zero(w ^ (ONES * u64::from(b'"')))
            || has_zero(w ^ (ONES * u64::from(b'\\')))
        {
            break;
        }
        i += 8;
    }
    bytes
        .get(i..)?
        .iter()
        .position(|&b| needs_escape(b))
        .map(|p| i + p)
}

// ---------------------------------------------------------------------------
// Strict parsing

/// Rejects integer literals (no fraction, no exponent) whose magnitude is
/// above 2^53, scanning the raw bytes outside strings. `serde_json` turns
/// literals too large for `u64` into rounded floats, so this cannot be done
/// after parsing. Public for readers that check JSON piecewise with
/// [`parse_strict`]'s rules (the bundle verifier's streaming pass).
///
/// ```
/// use intentproof_core::canon::check_integer_literals;
/// assert!(check_integer_literals(br#"{"n": 9007199254740992, "s": "99999999999999999"}"#).is_ok());
/// assert!(check_integer_literals(b"[9007199254740993]").is_err());
/// ```
pub fn check_integer_literals(bytes: &[u8]) -> Result<(), CanonError> {
    const LIMIT: &[u8] = b"9007199254740992";
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = &bytes[start..i];
                if token.iter().any(|c| matches!(c, b'.' | b'e' | b'E')) {
                    continue;
                }
                let digits = token.strip_prefix(b"-").unwrap_or(token);
                let too_big =
                    digits.len() > LIMIT.len() || (digits.len() == LIMIT.len() && digits > LIMIT);
                if too_big {
                    return Err(CanonError::UnsafeInteger {
                        value: String::from_utf8_lossy(token).into_owned(),
                        path: format!("byte offset {start}"),
                    });
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

struct StrictSeed<'a> {
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(StrictSeed {
            duplicate: self.duplicate,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                let message = format!("duplicate object key {key:?}");
                *self.duplicate.borrow_mut() = Some(key);
                return Err(de::Error::custom(message));
            }
            let value = access.next_value_seed(StrictSeed {
                duplicate: self.duplicate,
            })?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon_str(v: &Value) -> String {
        String::from_utf8(canonicalize(v).unwrap()).unwrap()
    }

    #[test]
    fn es6_number_formatting() {
        let cases: &[(&str, &str)] = &[
            ("1e21", "1e+21"),
            ("1e22", "1e+22"),
            ("1e20", "100000000000000000000"),
            ("1e-7", "1e-7"),
            ("0.000001", "0.000001"),
            ("-0.0", "0"),
            ("1.5e300", "1.5e+300"),
            ("123.456", "123.456"),
            ("4.50", "4.5"),
            ("2e-3", "0.002"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("9007199254740992", "9007199254740992"),
            ("-9007199254740992", "-9007199254740992"),
            ("0", "0"),
            ("-1", "-1"),
        ];
        for (input, want) in cases {
            let v = parse_strict(input.as_bytes()).unwrap();
            assert_eq!(canon_str(&v), *want, "input {input}");
        }
    }

    #[test]
    fn unsafe_integers_are_rejected_not_rounded() {
        for input in [
            "9007199254740993",
            "-9007199254740993",
            "18446744073709551615",
            "100000000000000000000000",
            "[1, {\"a\": 12345678901234567890}]",
        ] {
            let err = parse_strict(input.as_bytes()).unwrap_err();
            assert!(
                matches!(err, CanonError::UnsafeInteger { .. }),
                "{input}: {err}"
            );
        }
        let err = canonicalize(&json!({"a": [9007199254740993u64]})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "integer 9007199254740993 at $.a[0] is beyond 2^53 (9007199254740992) and cannot be \
             canonicalized exactly (RFC 8785 numbers are IEEE-754 doubles); send it as a string instead"
        );
        // Digits inside strings are not numbers.
        assert!(parse_strict(br#"{"n": "100000000000000000000000"}"#).is_ok());
    }

    #[test]
    fn duplicate_keys_are_rejected_even_when_escaped() {
        let err = parse_strict(br#"{"x": {"a": 1, "\u0061": 2}}"#).unwrap_err();
        match err {
            CanonError::DuplicateKey { key, line, .. } => {
                assert_eq!(key, "a");
                assert_eq!(line, 1);
            }
            other => panic!("unexpected {other}"),
        }
        assert!(parse_strict(br#"{"a": 1} trailing"#).is_err());
    }

    #[test]
    fn string_escapes() {
        let v = json!("\u{0}\u{1f}\u{7f}\"\\/\u{2028}\u{8}\u{c}\n\r\t");
        assert_eq!(
            canon_str(&v),
            "\"\\u0000\\u001f\u{7f}\\\"\\\\/\u{2028}\\b\\f\\n\\r\\t\""
        );
    }

    proptest::proptest! {
        /// The SWAR scan escapes exactly what a byte-by-byte scan does
        /// (serde_json escapes strings as RFC 8785 does).
        #[test]
        fn strings_escape_like_serde_json(s in "(?s).{0,80}", pad in 0usize..9) {
            let s = format!("{}{s}", "x".repeat(pad));
            let mut out = Vec::new();
            write_string(&s, &mut out);
            proptest::prop_assert_eq!(
                String::from_utf8(out).unwrap_or_default(),
                serde_json::to_string(&s).unwrap_or_default()
            );
        }
    }

    #[test]
    fn escapes_at_every_offset() {
        for at in 0..20 {
            for c in ['"', '\\', '\n', '\u{1}', '\u{1f}', '\u{7f}', 'é'] {
                let s: String = (0..20).map(|i| if i == at { c } else { 'a' }).collect();
                let mut out = Vec::new();
                write_string(&s, &mut out);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    serde_json::to_string(&s).unwrap()
                );
            }
        }
    }

    #[test]
    fn utf16_key_order() {
        let v = parse_strict("{\"\u{E000}\":1,\"\u{1F600}\":2,\"a\":0}".as_bytes()).unwrap();
        assert_eq!(canon_str(&v), "{\"a\":0,\"\u{1F600}\":2,\"\u{E000}\":1}");
    }
}
