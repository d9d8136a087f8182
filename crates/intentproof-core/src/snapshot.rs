//! JSON-safe, size-bounded snapshots of arbitrary values.
//!
//! [`snapshot`] turns any `Serialize` value into a [`serde_json::Value`] that
//! an event may carry, enforcing [`SerializeOptions`] *while* serializing:
//! nothing beyond `max_depth` is visited, object entries beyond `max_keys`
//! are not serialized, long strings are cut without being copied whole, and
//! values under a redacted key are never serialized at all. Recursion is
//! bounded by `max_depth` (itself capped at [`HARD_MAX_DEPTH`]), so a hostile
//! or cyclic-by-construction value cannot overflow the stack.
//!
//! Every cut leaves a deterministic marker, so two snapshots of the same value
//! are equal byte for byte:
//!
//! | what was cut | marker |
//! |---|---|
//! | value under a redacted key | `"[REDACTED]"` ([`REDACTED`]) |
//! | container deeper than `max_depth` | `"[MaxDepth]"` ([`MAX_DEPTH_MARKER`]) |
//! | string longer than `max_string_length` chars | first chars + `"…[truncated N chars]"` |
//! | array with more than `max_keys` items | first items + `"[+N more items]"` |
//! | object with more than `max_keys` keys | the `max_keys` smallest keys + `"[truncated]": "N more keys"` |
//! | value serde cannot serialize (e.g. a map with struct keys) | `"[Unserializable: <reason>]"` |
//!
//! Objects keep the `max_keys` *smallest* keys (in sorted order), whatever
//! order the source iterates in, so a `HashMap` snapshots deterministically.
//!
//! ```
//! use intentproof_core::{snapshot, SerializeOptions};
//! use serde_json::json;
//!
//! let opts = SerializeOptions { redact_keys: vec!["password".into()], ..Default::default() };
//! let out = snapshot(&json!({"user": "ada", "Password": "hunter2"}), &opts);
//! assert_eq!(out, json!({"user": "ada", "Password": "[REDACTED]"}));
//! ```

use std::fmt;

use serde::Serialize;
use serde::ser::{self, Impossible};
use serde_json::{Map, Value};

/// Replaces the value of every key listed in [`SerializeOptions::redact_keys`].
pub const REDACTED: &str = "[REDACTED]";
/// Replaces a container nested deeper than [`SerializeOptions::max_depth`].
pub const MAX_DEPTH_MARKER: &str = "[MaxDepth]";
/// Key added to an object that had more than [`SerializeOptions::max_keys`] keys.
pub const TRUNCATED_KEY: &str = "[truncated]";
/// No depth setting goes beyond this; it keeps recursion well inside a
/// thread's stack.
pub const HARD_MAX_DEPTH: usize = 128;

/// Bounds and redaction for [`snapshot`].
///
/// ```
/// let d = intentproof_core::SerializeOptions::default();
/// assert_eq!((d.max_depth, d.max_keys, d.max_string_length), (12, 200, 8192));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerializeOptions {
    /// Containers nested deeper than this are replaced by `"[MaxDepth]"`.
    /// The root is depth 0. Capped at [`HARD_MAX_DEPTH`]. Default 12.
    pub max_depth: usize,
    /// Most entries kept per object and items per array. Default 200.
    pub max_keys: usize,
    /// Longest string kept, in characters. Default 8192.
    pub max_string_length: usize,
    /// Keys whose values are replaced by `"[REDACTED]"`, matched without
    /// regard to case, at any depth. Default: none.
    pub redact_keys: Vec<String>,
}

impl Default for SerializeOptions {
    fn default() -> Self {
        SerializeOptions {
            max_depth: 12,
            max_keys: 200,
            max_string_length: 8192,
            redact_keys: Vec::new(),
        }
    }
}

impl SerializeOptions {
    fn is_redacted(&self, key: &str) -> bool {
        self.redact_keys.iter().any(|r| {
            r.chars()
                .flat_map(char::to_lowercase)
                .eq(key.chars().flat_map(char::to_lowercase))
        })
    }
}

/// Snapshots any serializable value within `options`' bounds.
///
/// Never fails and never panics: what cannot be serialized becomes an
/// `"[Unserializable: ...]"` marker.
///
/// ```
/// use intentproof_core::{snapshot, SerializeOptions};
/// use serde_json::json;
///
/// let opts = SerializeOptions { max_string_length: 3, max_keys: 2, ..Default::default() };
/// assert_eq!(snapshot(&"abcdef", &opts), json!("abc…[truncated 3 chars]"));
/// assert_eq!(snapshot(&vec![1, 2, 3, 4], &opts), json!([1, 2, "[+2 more items]"]));
/// ```
pub fn snapshot<T: Serialize + ?Sized>(value: &T, options: &SerializeOptions) -> Value {
    let serializer = Bounded {
        options,
        depth: 0,
        max_depth: options.max_depth.min(HARD_MAX_DEPTH),
    };
    match value.serialize(serializer) {
        Ok(v) => v,
        Err(e) => Value::String(format!("[Unserializable: {}]", e.0)),
    }
}

/// Like [`snapshot`], but takes the value by ownership and dismantles it
/// without recursion afterwards, so even a value nested far deeper than the
/// stack allows is dropped safely.
///
/// ```
/// use intentproof_core::{snapshot_value, SerializeOptions};
/// use serde_json::{json, Value};
///
/// let mut deep = Value::Null;
/// for _ in 0..100_000 { deep = Value::Array(vec![deep]); }
/// let out = snapshot_value(deep, &SerializeOptions { max_depth: 1, ..Default::default() });
/// assert_eq!(out, json!(["[MaxDepth]"]));
/// ```
pub fn snapshot_value(value: Value, options: &SerializeOptions) -> Value {
    let out = snapshot(&value, options);
    drop_iteratively(value);
    out
}

/// Drops a JSON value of any depth using a heap stack instead of recursion.
fn drop_iteratively(value: Value) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

fn truncate_str(s: &str, max_chars: usize) -> Value {
    match s.char_indices().nth(max_chars) {
        None => Value::String(s.to_owned()),
        Some((cut, _)) => {
            let omitted = s[cut..].chars().count();
            Value::String(format!("{}…[truncated {omitted} chars]", &s[..cut]))
        }
    }
}

/// Error inside the bounded serializer; becomes an `[Unserializable]` marker.
#[derive(Debug)]
struct SnapshotError(String);

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SnapshotError {}

impl ser::Error for SnapshotError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SnapshotError(msg.to_string())
    }
}

#[derive(Clone, Copy)]
struct Bounded<'a> {
    options: &'a SerializeOptions,
    depth: usize,
    max_depth: usize,
}

impl<'a> Bounded<'a> {
    fn child(self) -> Bounded<'a> {
        Bounded {
            depth: self.depth + 1,
            ..self
        }
    }

    fn too_deep(self) -> bool {
        self.depth >= self.max_depth
    }

    fn seq(self, len: Option<usize>) -> Seq<'a> {
        Seq {
            ser: self,
            skip: self.too_deep(),
            items: Vec::with_capacity(len.unwrap_or(0).min(self.options.max_keys)),
            omitted: 0,
        }
    }

    fn map(self) -> Obj<'a> {
        Obj {
            ser: self,
            skip: self.too_deep(),
            map: Map::new(),
            pending_key: None,
            omitted: 0,
        }
    }
}

type Res = Result<Value, SnapshotError>;

impl<'a> ser::Serializer for Bounded<'a> {
    type Ok = Value;
    type Error = SnapshotError;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Variant<Seq<'a>>;
    type SerializeMap = Obj<'a>;
    type SerializeStruct = Obj<'a>;
    type SerializeStructVariant = Variant<Obj<'a>>;

    fn serialize_bool(self, v: bool) -> Res {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Res {
        Ok(v.into())
    }
    fn serialize_i16(self, v: i16) -> Res {
        Ok(v.into())
    }
    fn serialize_i32(self, v: i32) -> Res {
        Ok(v.into())
    }
    fn serialize_i64(self, v: i64) -> Res {
        Ok(v.into())
    }
    fn serialize_i128(self, v: i128) -> Res {
        serde_json::to_value(v).map_err(|e| SnapshotError(e.to_string()))
    }
    fn serialize_u8(self, v: u8) -> Res {
        Ok(v.into())
    }
    fn serialize_u16(self, v: u16) -> Res {
        Ok(v.into())
    }
    fn serialize_u32(self, v: u32) -> Res {
        Ok(v.into())
    }
    fn serialize_u64(self, v: u64) -> Res {
        Ok(v.into())
    }
    fn serialize_u128(self, v: u128) -> Res {
        serde_json::to_value(v).map_err(|e| SnapshotError(e.to_string()))
    }
    fn serialize_f32(self, v: f32) -> Res {
        Ok(v.into())
    }
    fn serialize_f64(self, v: f64) -> Res {
        // Non-finite floats become null, as serde_json does.
        Ok(v.into())
    }
    fn serialize_char(self, v: char) -> Res {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Res {
        Ok(truncate_str(v, self.options.max_string_length))
    }
    fn serialize_bytes(self, v: &[u8]) -> Res {
        use ser::SerializeSeq;
        let mut seq = self.seq(Some(v.len()));
        for b in v {
            seq.serialize_element(b)?;
        }
        seq.end()
    }
    fn serialize_none(self) -> Res {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Res {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Res {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Res {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Res {
        Ok(Value::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Res {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Res {
        if self.too_deep() {
            return Ok(Value::String(MAX_DEPTH_MARKER.to_owned()));
        }
        let mut map = Map::new();
        map.insert(variant.to_owned(), value.serialize(self.child())?);
        Ok(Value::Object(map))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'a>, SnapshotError> {
        Ok(self.seq(len))
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a>, SnapshotError> {
        Ok(self.seq(Some(len)))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'a>, SnapshotError> {
        Ok(self.seq(Some(len)))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant<Seq<'a>>, SnapshotError> {
        Ok(Variant {
            outer_too_deep: self.too_deep(),
            name: variant,
            inner: self.child().seq(Some(len)),
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Obj<'a>, SnapshotError> {
        Ok(self.map())
    }
    fn serialize_struct(self, _: &'static str, _len: usize) -> Result<Obj<'a>, SnapshotError> {
        Ok(self.map())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Variant<Obj<'a>>, SnapshotError> {
        Ok(Variant {
            outer_too_deep: self.too_deep(),
            name: variant,
            inner: self.child().map(),
        })
    }
}

/// Arrays: keeps the first `max_keys` items.
struct Seq<'a> {
    ser: Bounded<'a>,
    skip: bool,
    items: Vec<Value>,
    omitted: usize,
}

impl Seq<'_> {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SnapshotError> {
        if self.skip {
            return Ok(());
        }
        if self.items.len() >= self.ser.options.max_keys {
            self.omitted += 1;
            return Ok(());
        }
        self.items.push(value.serialize(self.ser.child())?);
        Ok(())
    }

    fn finish(mut self) -> Res {
        if self.skip {
            return Ok(Value::String(MAX_DEPTH_MARKER.to_owned()));
        }
        if self.omitted > 0 {
            self.items
                .push(Value::String(format!("[+{} more items]", self.omitted)));
        }
        Ok(Value::Array(self.items))
    }
}

impl ser::SerializeSeq for Seq<'_> {
    type Ok = Value;
    type Error = SnapshotError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SnapshotError> {
        self.push(value)
    }
    fn end(self) -> Res {
        self.finish()
    }
}

impl ser::SerializeTuple for Seq<'_> {
    type Ok = Value;
    type Error = SnapshotError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SnapshotError> {
        self.push(value)
    }
    fn end(self) -> Res {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Seq<'_> {
    type Ok = Value;
    type Error = SnapshotError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SnapshotError> {
        self.push(value)
    }
    fn end(self) -> Res {
        self.finish()
    }
}

/// Objects: keeps the `max_keys` smallest keys, redacts listed keys.
struct Obj<'a> {
    ser: Bounded<'a>,
    skip: bool,
    map: Map<String, Value>,
    pending_key: Option<String>,
    omitted: usize,
}

impl Obj<'_> {
    /// Inserts one entry, keeping only the `max_keys` smallest keys.
    fn insert<T: Serialize + ?Sized>(
        &mut self,
        key: String,
        value: &T,
    ) -> Result<(), SnapshotError> {
        if self.skip {
            return Ok(());
        }
        let max = self.ser.options.max_keys;
        if self.map.len() >= max {
            let largest_kept = self.map.keys().next_back().cloned();
            match largest_kept {
                Some(largest) if key < largest => {
                    self.map.remove(&largest);
                }
                _ => {
                    self.omitted += 1;
                    return Ok(());
                }
            }
            self.omitted += 1;
        }
        let value = if self.ser.options.is_redacted(&key) {
            Value::String(REDACTED.to_owned())
        } else {
            value.serialize(self.ser.child())?
        };
        if self.map.insert(key, value).is_some() {
            // A duplicate key replaced an entry instead of adding one.
            self.omitted = self.omitted.saturating_sub(1);
        }
        Ok(())
    }

    fn finish(mut self) -> Res {
        if self.skip {
            return Ok(Value::String(MAX_DEPTH_MARKER.to_owned()));
        }
        if self.omitted > 0 {
            self.map.insert(
                TRUNCATED_KEY.to_owned(),
                Value::String(format!("{} more keys", self.omitted)),
            );
        }
        Ok(Value::Object(self.map))
    }
}

impl ser::SerializeMap for Obj<'_> {
    type Ok = Value;
    type Error = SnapshotError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), SnapshotError> {
        self.pending_key = Some(key.serialize(MapKey)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SnapshotError> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| SnapshotError("map value without a key".into()))?;
        self.insert(key, value)
    }
    fn end(self) -> Res {
        self.finish()
    }
}

impl ser::SerializeStruct for Obj<'_> {
    type Ok = Value;
    type Error = SnapshotError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SnapshotError> {
        self.insert(key.to_owned(), value)
    }
    fn end(self) -> Res {
        self.finish()
    }
}

/// `{"Variant": <inner>}` for tuple and struct enum variants.
struct Variant<I> {
    outer_too_deep: bool,
    name: &'static str,
    inner: I,
}

impl<I> Variant<I> {
    fn wrap(self, inner: Value) -> Res {
        if self.outer_too_deep {
            return Ok(Value::String(MAX_DEPTH_MARKER.to_owned()));
        }
        let mut map = Map::new();
        map.insert(self.name.to_owned(), inner);
        Ok(Value::Object(map))
    }
}

impl ser::SerializeTupleVariant for Variant<Seq<'_>> {
    type Ok = Value;
    type Error = SnapshotError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SnapshotError> {
        if self.outer_too_deep {
            return Ok(());
        }
        self.inner.push(value)
    }
    fn end(self) -> Res {
        let Variant {
            outer_too_deep,
            name,
            inner,
        } = self;
        let inner = inner.finish()?;
        Variant {
            outer_too_deep,
            name,
            inner: (),
        }
        .wrap(inner)
    }
}

impl ser::SerializeStructVariant for Variant<Obj<'_>> {
    type Ok = Value;
    type Error = SnapshotError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SnapshotError> {
        if self.outer_too_deep {
            return Ok(());
        }
        self.inner.insert(key.to_owned(), value)
    }
    fn end(self) -> Res {
        let Variant {
            outer_too_deep,
            name,
            inner,
        } = self;
        let inner = inner.finish()?;
        Variant {
            outer_too_deep,
            name,
            inner: (),
        }
        .wrap(inner)
    }
}

/// Map keys become strings, as in serde_json: strings stay, numbers,
/// booleans and chars are printed, anything else is an error.
struct MapKey;

impl ser::Serializer for MapKey {
    type Ok = String;
    type Error = SnapshotError;
    type SerializeSeq = Impossible<String, SnapshotError>;
    type SerializeTuple = Impossible<String, SnapshotError>;
    type SerializeTupleStruct = Impossible<String, SnapshotError>;
    type SerializeTupleVariant = Impossible<String, SnapshotError>;
    type SerializeMap = Impossible<String, SnapshotError>;
    type SerializeStruct = Impossible<String, SnapshotError>;
    type SerializeStructVariant = Impossible<String, SnapshotError>;

    fn serialize_bool(self, v: bool) -> Result<String, SnapshotError> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, SnapshotError> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, SnapshotError> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, SnapshotError> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, SnapshotError> {
        Ok(v.to_string())
    }
    fn serialize_i128(self, v: i128) -> Result<String, SnapshotError> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, SnapshotError> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, SnapshotError> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, SnapshotError> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, SnapshotError> {
        Ok(v.to_string())
    }
    fn serialize_u128(self, v: u128) -> Result<String, SnapshotError> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, _: f32) -> Result<String, SnapshotError> {
        Err(key_error("a float"))
    }
    fn serialize_f64(self, _: f64) -> Result<String, SnapshotError> {
        Err(key_error("a float"))
    }
    fn serialize_char(self, v: char) -> Result<String, SnapshotError> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, SnapshotError> {
        Ok(v.to_owned())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, SnapshotError> {
        Err(key_error("bytes"))
    }
    fn serialize_none(self) -> Result<String, SnapshotError> {
        Err(key_error("null"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<String, SnapshotError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<String, SnapshotError> {
        Err(key_error("unit"))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, SnapshotError> {
        Err(key_error("a unit struct"))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, SnapshotError> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, SnapshotError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, SnapshotError> {
        Err(key_error("an enum variant with data"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, SnapshotError> {
        Err(key_error("a sequence"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, SnapshotError> {
        Err(key_error("a tuple"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, SnapshotError> {
        Err(key_error("a tuple struct"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, SnapshotError> {
        Err(key_error("a tuple variant"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, SnapshotError> {
        Err(key_error("a map"))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, SnapshotError> {
        Err(key_error("a struct"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, SnapshotError> {
        Err(key_error("a struct variant"))
    }
}

fn key_error(kind: &str) -> SnapshotError {
    SnapshotError(format!(
        "object keys must be strings, numbers or booleans, not {kind}"
    ))
}
