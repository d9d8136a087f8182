//! Redaction of event payloads before an event is sealed or stored.
//!
//! A [`RedactionPolicy`] (YAML, documented in `policies/redaction/README.md`;
//! the built-in one is [`RedactionPolicy::default_policy`]) lists rules.
//! Each rule matches either **keys** (object member names, compared after
//! [`normalize_key`]: lowercased, without `_`, `-`, `.` and spaces) or
//! **values** (a built-in [`Detector`] or a regular expression, applied to
//! every string anywhere in the payload), and says what to do with what it
//! matched. A [`Redactor`] compiles a policy once and applies it with
//! [`Redactor::apply`] or [`Redactor::redact_event`], returning a
//! [`RedactionSummary`].
//!
//! # Actions and markers
//!
//! | action | on a keyed value (the whole value) | on a matched span inside a string |
//! |---|---|---|
//! | `redact` | `"[REDACTED:<rule-id>]"` | the span becomes `[REDACTED:<rule-id>]` |
//! | `mask` | strings and numbers: `"************4242"`; other values: as `redact` | the span is masked |
//! | `hash` | `"hmac-sha256:<hex>"` of the string, or of the compact JSON of any other value | the span becomes `hmac-sha256:<hex>` |
//! | `drop` | the member is removed | the whole field is removed |
//!
//! - `mask { keep_last: n }` replaces every character with `*` except the
//!   last `n` (default 4) letters or digits and the separators between
//!   them, and never keeps more than half of the letters and digits:
//!   `"4242 4242 4242 4242"` becomes `"***************4242"`.
//! - `hash` is HMAC-SHA256 under the installation's [`HashKey`], so equal
//!   values stay joinable across events and cannot be brute-forced without
//!   the key.
//! - A dropped **array item** is replaced by `"[DROPPED:<rule-id>]"` so the
//!   indexes of the other items (and the paths that name them) stay stable.
//!   A dropped `inputs` or `output` root becomes the same marker.
//! - Value rules replace only the matched span, so the rest of a sentence
//!   survives: `"mail ada@example.com"` becomes `"mail hmac-sha256:…"`.
//!   Overlapping matches are merged and take the action of the match that
//!   starts first (ties: the rule listed first). A replaced string is
//!   scanned again (up to four passes) so that no detector match survives.
//! - `null` under a matched key carries nothing and is left alone.
//! - Integers of 13 digits or more are scanned like strings (card numbers
//!   stored as JSON numbers); a match replaces the number with a string.
//!
//! # Order
//!
//! Key rules are tried in order and the first match wins: the built-in
//! header rule, then the rules of the overrides that match the event's
//! action (in policy order), then the policy's rules. A value under a
//! matched key is not scanned further. Value rules run on every other
//! string, in the same order.
//!
//! # What is redacted
//!
//! [`Redactor::apply`] redacts `inputs` and `output`. [`Redactor::redact_event`]
//! redacts every field of an event that a caller controls: `inputs`,
//! `output`, `attributes` (as one object: key rules on names, value rules on
//! values), `intent`, `action`, `error.name`, `error.message`,
//! `error.stack` (value rules), and the members of the v1 form kept
//! verbatim (such as an `error` object's `data`). Ids, times, correlation
//! ids and the sealing fields are not redacted. Object *keys* are matched by
//! key rules but never rewritten by value rules.
//!
//! # JSON text in strings
//!
//! A string whose first and last non-whitespace characters are `{`…`}` or
//! `[`…`]` and that parses as JSON (tools often pass JSON as text) is
//! walked as JSON with the same key and value rules and limits, at the
//! string's own depth (so JSON text inside JSON text is bounded by
//! `max_depth`), and, if anything in it changed or was cut, re-serialized
//! compactly into the string; otherwise the string is kept byte for byte.
//! Its paths carry the step `<json>`: `$.inputs.s<json>.password`,
//! `$.inputs.s<json>.inner<json>.token`. Text that does not parse as JSON
//! is scanned by the value rules only. Bounds: at most
//! [`JSON_TEXT_MAX_BYTES`] (1 MiB) is parsed; a longer string that is valid
//! JSON becomes [`JSON_TEXT_UNCHECKED_MARKER`], and JSON text nested deeper
//! than the parser's 128 levels becomes `"[MaxDepth]"` (both are cuts,
//! like the limits below: their markers are in the data, not in the
//! summary).
//!
//! # HTTP headers
//!
//! `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`,
//! `X-Api-Key` and any `*-Api-Key` are redacted as
//! `"[REDACTED:http-headers]"` wherever they appear, whatever the policy
//! says: the rule [`BUILTIN_HEADERS_RULE`] is always first and cannot be
//! turned off. [`redact_headers`] applies the same rule to a header map.
//!
//! # Limits
//!
//! The policy's [`Limits`] are enforced in the same walk, with the markers
//! of [`intentproof_core::snapshot`]: containers deeper than `max_depth`
//! become `"[MaxDepth]"`, objects keep their `max_keys` smallest keys plus
//! `"[truncated]": "N more keys"`, arrays their first `max_keys` items plus
//! `"[+N more items]"`, and strings are cut to `max_string_length`
//! characters plus `"…[truncated N chars]"`. Strings are scanned before they
//! are cut, so a secret straddling the cut is still redacted. Cuts made by
//! limits are not counted in the summary (their markers are in the data).
//!
//! # Overrides
//!
//! An override applies to events whose action matches one of its globs
//! (`*` any run of characters, `?` one character; see [`glob_match`]). It
//! can stop capturing inputs or output (the value becomes
//! `"[NOT_CAPTURED:<override-id>]"`, reported under the override's id) and
//! add rules.
//!
//! # Summary
//!
//! Paths are JSONPath-like (`$.inputs[0].card.number`; keys that are not
//! identifiers are quoted: `$.output['x-api-key']`; `<json>` steps into
//! JSON text: `$.inputs.s<json>.password`), sorted and
//! deduplicated; `fields_redacted_count` is their number; `rules_applied`
//! holds the ids of the rules (and overrides) that changed something,
//! sorted; `tenant_redaction_profile_id` is the policy's id.
//!
//! ```
//! use intentproof_policy::redact::{HashKey, RedactionPolicy, Redactor};
//! use serde_json::json;
//!
//! let redactor = Redactor::new(RedactionPolicy::default_policy(), HashKey::from_bytes([1; 32]));
//! let mut inputs = json!([{"user": "ada", "apiKey": "abc123", "card": "4242 4242 4242 4242"}]);
//! let mut output = json!({"ok": true});
//! let summary = redactor.apply("payments.charge", &mut inputs, &mut output);
//! assert_eq!(
//!     inputs,
//!     json!([{"user": "ada", "apiKey": "[REDACTED:http-headers]", "card": "***************4242"}])
//! );
//! assert_eq!(summary.fields_redacted_paths, vec!["$.inputs[0].apiKey", "$.inputs[0].card"]);
//! assert_eq!(summary.rules_applied, vec!["card-numbers", "http-headers"]);
//! assert_eq!(summary.fields_redacted_count, 2);
//! ```

mod detect;
mod glob;
mod hash;
mod policy;

use std::collections::HashMap;
use std::fmt::Write as _;

use intentproof_core::snapshot::{MAX_DEPTH_MARKER, TRUNCATED_KEY};
use intentproof_core::{AttributeValue, Attributes, ExecutionEvent, RedactionSummary};
use serde_json::{Map, Value};

pub use detect::Detector;
pub use glob::glob_match;
pub use hash::{HASH_PREFIX, HashKey, HashKeyError};
pub use policy::{Limits, PolicyError, RedactionPolicy};

use glob::KeyPattern;
use policy::{Action, Matcher, Rule};

/// Id of the built-in rule that always redacts credential-carrying HTTP
/// headers; no policy rule may use it.
pub const BUILTIN_HEADERS_RULE: &str = "http-headers";

/// Longest string (bytes) parsed as JSON text; a longer one that is valid
/// JSON becomes [`JSON_TEXT_UNCHECKED_MARKER`].
pub const JSON_TEXT_MAX_BYTES: usize = 1 << 20;

/// What a valid JSON text over [`JSON_TEXT_MAX_BYTES`] becomes: it is too
/// large to check, and its key-matched secrets could survive a cut.
pub const JSON_TEXT_UNCHECKED_MARKER: &str = "[UncheckedJsonText]";

/// The path step of JSON text inside a string: `$.inputs.s<json>.password`.
pub const JSON_TEXT_SEGMENT: &str = "<json>";

/// serde_json's nesting limit: deeper text cannot be parsed.
const JSON_PARSER_MAX_NESTING: usize = 128;

/// Normalizes a key for matching: lowercase, without `_`, `-`, `.` and
/// whitespace. `api_key`, `apiKey`, `API-KEY` and `api.key` all become
/// `apikey`.
///
/// ```
/// use intentproof_policy::redact::normalize_key;
/// assert_eq!(normalize_key("X-Api-Key"), "xapikey");
/// assert_eq!(normalize_key("client.Secret"), "clientsecret");
/// ```
pub fn normalize_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    normalize_into(key, &mut out);
    out
}

fn normalize_into(key: &str, out: &mut String) {
    out.clear();
    if key.is_ascii() {
        // Copy the runs between separators, then lowercase in place: much
        // cheaper than pushing one `char` at a time (this runs per key).
        let bytes = key.as_bytes();
        let mut start = 0;
        for (i, b) in bytes.iter().enumerate() {
            if matches!(b, b'_' | b'-' | b'.' | b' ' | b'\t') {
                out.push_str(&key[start..i]);
                start = i + 1;
            }
        }
        out.push_str(&key[start..]);
        out.make_ascii_lowercase();
    } else {
        out.extend(
            key.chars()
                .filter(|c| !matches!(c, '_' | '-' | '.') && !c.is_whitespace())
                .flat_map(char::to_lowercase),
        );
    }
}

fn header_rule() -> Rule {
    Rule {
        id: BUILTIN_HEADERS_RULE.to_owned(),
        matcher: Matcher::Keys {
            exact: ["authorization", "proxyauthorization", "cookie", "setcookie"]
                .map(String::from)
                .to_vec(),
            patterns: vec![KeyPattern::new("*apikey")],
        },
        action: Action::Redact,
    }
}

/// Redacts credential-carrying headers in a header map (keys compared
/// case-insensitively): `Authorization`, `Proxy-Authorization`, `Cookie`,
/// `Set-Cookie`, `X-Api-Key` and `*-Api-Key` become
/// `"[REDACTED:http-headers]"`. Returns how many values were replaced.
///
/// ```
/// use intentproof_policy::redact::redact_headers;
/// let mut h = serde_json::json!({"Authorization": "Bearer x", "X-Stripe-Api-Key": "k", "Accept": "*/*"});
/// let n = redact_headers(h.as_object_mut().unwrap());
/// assert_eq!(n, 2);
/// assert_eq!(h["Authorization"], "[REDACTED:http-headers]");
/// assert_eq!(h["Accept"], "*/*");
/// ```
pub fn redact_headers(headers: &mut Map<String, Value>) -> usize {
    let set = RuleSet::build(&[header_rule()], 0);
    let mut buf = String::new();
    let mut n = 0;
    for (k, v) in headers.iter_mut() {
        normalize_into(k, &mut buf);
        if !v.is_null() && set.key_rule(&buf).is_some() {
            *v = Value::String(marker("REDACTED", BUILTIN_HEADERS_RULE));
            n += 1;
        }
    }
    n
}

fn marker(kind: &str, id: &str) -> String {
    format!("[{kind}:{id}]")
}

/// FNV-1a: keys are short and not attacker-chosen in a way that matters
/// here (a collision only costs a comparison), and SipHash dominated the
/// profile.
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// Key and value rules of one source (built-in, an override, the policy),
/// indexed for lookup. Rule indexes point into [`Redactor::rules`].
#[derive(Debug, Clone, Default)]
struct RuleSet {
    exact: FnvMap<String, usize>,
    /// Bit `n` set when some exact key has length `n` (63: 63 or more).
    exact_lengths: u64,
    /// Suffix patterns (3 bytes or longer), each with its last three bytes;
    /// only those whose tail equals the key's are compared.
    suffixes: Vec<(u32, KeyPattern, usize)>,
    /// Other patterns, always tried.
    patterns: Vec<(KeyPattern, usize)>,
    strings: Vec<usize>,
}

/// The last three bytes of `s` (at least three long) as a number.
fn tail(s: &str) -> u32 {
    let b = s.as_bytes();
    let n = b.len();
    u32::from_le_bytes([b[n - 3], b[n - 2], b[n - 1], 0])
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

impl RuleSet {
    fn build(rules: &[Rule], first_index: usize) -> RuleSet {
        let mut set = RuleSet::default();
        for (i, rule) in rules.iter().enumerate() {
            let index = first_index + i;
            match &rule.matcher {
                Matcher::Keys { exact, patterns } => {
                    for k in exact {
                        set.exact_lengths |= length_bit(k.len());
                        set.exact.entry(k.clone()).or_insert(index);
                    }
                    for p in patterns {
                        match p {
                            KeyPattern::Suffix(sfx) if sfx.len() >= 3 => {
                                set.suffixes.push((tail(sfx), p.clone(), index));
                            }
                            _ => set.patterns.push((p.clone(), index)),
                        }
                    }
                }
                Matcher::Detector(_) | Matcher::Regex(_) => set.strings.push(index),
            }
        }
        set
    }

    /// The key rules of `sets` (given in priority order, so with increasing
    /// rule indexes) as one set: [`RuleSet::key_rule`] on it returns the
    /// smallest matching index, which is what trying the sets one by one
    /// returns (the first set with a match holds the smallest index).
    fn merged(sets: &[&RuleSet]) -> RuleSet {
        let mut out = RuleSet::default();
        for set in sets {
            out.exact_lengths |= set.exact_lengths;
            for (k, &i) in &set.exact {
                let slot = out.exact.entry(k.clone()).or_insert(i);
                *slot = (*slot).min(i);
            }
            out.suffixes.extend(set.suffixes.iter().cloned());
            out.patterns.extend(set.patterns.iter().cloned());
            out.strings.extend(set.strings.iter().copied());
        }
        out
    }

    fn has_keys(&self) -> bool {
        !self.exact.is_empty() || !self.suffixes.is_empty() || !self.patterns.is_empty()
    }

    /// The first key rule matching the normalized key `norm`.
    fn key_rule(&self, norm: &str) -> Option<usize> {
        let exact = if self.exact_lengths & length_bit(norm.len()) != 0 {
            self.exact.get(norm).copied()
        } else {
            None
        };
        let suffix = if self.suffixes.is_empty() || norm.len() < 3 {
            None
        } else {
            let t = tail(norm);
            self.suffixes
                .iter()
                .find(|(st, p, _)| *st == t && p.matches(norm))
                .map(|(_, _, i)| *i)
        };
        let other = self
            .patterns
            .iter()
            .find(|(p, _)| p.matches(norm))
            .map(|(_, i)| *i);
        [exact, suffix, other].into_iter().flatten().min()
    }
}

#[derive(Debug, Clone)]
struct CompiledOverride {
    id: String,
    actions: Vec<String>,
    capture_inputs: bool,
    capture_output: bool,
    set: RuleSet,
}

/// A compiled policy plus the hash key: applies redaction to payloads.
///
/// Cheap to share (`Send + Sync`); build it once per policy.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<Rule>,
    headers: RuleSet,
    base: RuleSet,
    /// `headers` and `base` merged: the key rules when no override applies.
    default_keys: RuleSet,
    overrides: Vec<CompiledOverride>,
    key: HashKey,
    limits: Limits,
    policy_id: String,
}

impl Redactor {
    /// Compiles `policy`; `hash_key` keys the `hash` action (see
    /// [`HashKey::load_or_create`]).
    pub fn new(policy: RedactionPolicy, hash_key: HashKey) -> Redactor {
        let mut rules = vec![header_rule()];
        let headers = RuleSet::build(&rules, 0);
        let mut overrides = Vec::with_capacity(policy.overrides.len());
        for o in policy.overrides {
            let set = RuleSet::build(&o.rules, rules.len());
            rules.extend(o.rules);
            overrides.push(CompiledOverride {
                id: o.id,
                actions: o.actions,
                capture_inputs: o.capture_inputs,
                capture_output: o.capture_output,
                set,
            });
        }
        let base = RuleSet::build(&policy.rules, rules.len());
        rules.extend(policy.rules);
        let default_keys = RuleSet::merged(&[&headers, &base]);
        Redactor {
            rules,
            headers,
            base,
            default_keys,
            overrides,
            key: hash_key,
            limits: policy.limits,
            policy_id: policy.id,
        }
    }

    /// The id of the policy this redactor applies.
    pub fn policy_id(&self) -> &str {
        &self.policy_id
    }

    /// Redacts `inputs` and `output` of an event whose action is `action`,
    /// in place, and says what changed. `null` stands for "absent" and is
    /// left alone.
    pub fn apply(&self, action: &str, inputs: &mut Value, output: &mut Value) -> RedactionSummary {
        let mut walk = Walk::new(self, action);
        walk.root("$.inputs", inputs, walk.capture_inputs.clone());
        walk.root("$.output", output, walk.capture_output.clone());
        walk.finish()
    }

    /// Redacts an event before it is sealed: every field a caller controls,
    /// with the same rules, and fills `redaction_summary` (merged with any
    /// summary the event already carries). Paths in the summary:
    ///
    /// - `$.inputs…`, `$.output…`: as in [`Redactor::apply`];
    /// - `$.attributes.<name>`: attributes, as one object (key rules on
    ///   their names, value rules on their values);
    /// - `$.intent`, `$.action`, `$.error.name`, `$.error.message`,
    ///   `$.error.stack`: text, value rules (and JSON text, see the module
    ///   docs); `$.action` only changes when a value rule matches in it
    ///   (an HTTP proxy action holds the request path);
    /// - `$.<member>…`: members of the v1 form kept verbatim
    ///   ([`ExecutionEvent::v1_verbatim`], e.g. an `error` object with
    ///   `data`), which replace the typed fields when the event is sealed.
    ///
    /// The override and capture rules are chosen by the action as it came
    /// in. `untrusted_payload` is left as it is: redaction does not make a
    /// payload trusted, and whether anything was captured unredacted is
    /// for the capturing side to declare.
    pub fn redact_event(&self, event: &mut ExecutionEvent) {
        let mut walk = Walk::new(self, &event.action);
        for (name, slot, capture) in [
            ("$.inputs", &mut event.inputs, walk.capture_inputs.clone()),
            ("$.output", &mut event.output, walk.capture_output.clone()),
        ] {
            if let Some(v) = slot.as_mut() {
                walk.root(name, v, capture);
            }
        }
        walk.text_root("$.intent", &mut event.intent);
        walk.text_root("$.action", &mut event.action);
        walk.attributes(&mut event.attributes);
        if let Some(err) = event.error.as_mut() {
            walk.text_root("$.error.name", &mut err.name);
            walk.text_root("$.error.message", &mut err.message);
            if let Some(stack) = err.stack.as_mut() {
                walk.text_root("$.error.stack", stack);
            }
        }
        if let Some(verbatim) = event.v1_verbatim.take() {
            let mut members = Value::Object(verbatim);
            walk.walk(&mut members, 0, &PathNode::root("$"));
            if let Value::Object(verbatim) = members {
                event.v1_verbatim = Some(verbatim);
            }
        }
        let mut summary = walk.finish();
        if let Some(old) = event.redaction_summary.take() {
            summary.rules_applied.extend(old.rules_applied);
            summary.rules_applied.sort();
            summary.rules_applied.dedup();
            summary
                .fields_redacted_paths
                .extend(old.fields_redacted_paths);
            summary.fields_redacted_paths.sort();
            summary.fields_redacted_paths.dedup();
            summary.fields_redacted_count = summary.fields_redacted_paths.len() as u64;
            if old.tenant_redaction_profile_id.is_some() {
                summary.tenant_redaction_profile_id = old.tenant_redaction_profile_id;
            }
        }
        event.redaction_summary = Some(summary);
    }

    fn replacement(&self, rule: usize, text: &str) -> String {
        let r = &self.rules[rule];
        match r.action {
            Action::Redact | Action::Drop => marker("REDACTED", &r.id),
            Action::Mask { keep_last } => mask(text, keep_last),
            Action::Hash => self.key.hash(text),
        }
    }
}

/// Masks `text` with `*`, keeping its last `keep_last` alphanumeric
/// characters (and what follows the first of them), never more than half of
/// its alphanumeric characters.
fn mask(text: &str, keep_last: usize) -> String {
    let alnum = text.chars().filter(|c| c.is_alphanumeric()).count();
    let keep = keep_last.min(alnum / 2);
    let mut cut = text.len();
    let mut seen = 0;
    if keep > 0 {
        for (i, c) in text.char_indices().rev() {
            if c.is_alphanumeric() {
                seen += 1;
                if seen == keep {
                    cut = i;
                    break;
                }
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    out.extend(std::iter::repeat_n('*', text[..cut].chars().count()));
    out.push_str(&text[cut..]);
    out
}

/// Drops a JSON value of any depth without unbounded recursion: up to
/// [`DROP_RECURSION`] levels are dropped recursively (scalars in place, no
/// work list), deeper containers are set aside and dropped from a heap
/// work list, so the native stack use stays bounded.
fn drop_deep(value: Value) {
    if !matches!(value, Value::Array(_) | Value::Object(_)) {
        return;
    }
    let mut deferred = Vec::new();
    drop_bounded(value, 0, &mut deferred);
    while let Some(v) = deferred.pop() {
        drop_bounded(v, 0, &mut deferred);
    }
}

/// Depth up to which [`drop_deep`] recurses natively.
const DROP_RECURSION: usize = 32;

fn drop_bounded(value: Value, depth: usize, deferred: &mut Vec<Value>) {
    let mut child = |v: Value| {
        if matches!(v, Value::Array(_) | Value::Object(_)) {
            if depth < DROP_RECURSION {
                drop_bounded(v, depth + 1, deferred);
            } else {
                deferred.push(v);
            }
        }
        // Scalars (and strings) are dropped here.
    };
    match value {
        Value::Array(items) => items.into_iter().for_each(&mut child),
        Value::Object(map) => map.into_iter().for_each(|(_, v)| child(v)),
        _ => {}
    }
}

fn replace_deep(slot: &mut Value, with: String) {
    let old = std::mem::replace(slot, Value::String(with));
    if matches!(old, Value::Array(_) | Value::Object(_)) {
        drop_deep(old);
    }
}

/// Cuts `s` to `max_chars` characters plus a marker; true when it did.
fn truncate_string(s: &mut String, max_chars: usize) -> bool {
    if s.len() <= max_chars {
        return false;
    }
    if let Some((cut, _)) = s.char_indices().nth(max_chars) {
        let omitted = s[cut..].chars().count();
        s.truncate(cut);
        let _ = write!(s, "…[truncated {omitted} chars]");
        return true;
    }
    false
}

/// Whether `s` may be a JSON object or array: its first and last
/// non-whitespace characters are `{` and `}`, or `[` and `]`.
fn looks_like_json(s: &str) -> bool {
    let t = s.trim_ascii();
    matches!(
        (t.as_bytes().first(), t.as_bytes().last()),
        (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']'))
    ) && t.len() >= 2
}

/// The deepest bracket nesting of JSON text `s` (brackets inside strings
/// not counted); only asked when parsing failed, to tell "too deep" from
/// "not JSON".
fn json_nesting(s: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in s.as_bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Appends member `key` to the JSONPath `path` as redaction writes it into
/// `fields_redacted_paths`: `.key` for an identifier, `['k\'ey']`
/// otherwise. Readers that mark redacted fields (the TUI) build paths
/// with it, so they match exactly.
pub fn push_key(path: &mut String, key: &str) {
    let ident = key
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ident {
        path.push('.');
        path.push_str(key);
    } else {
        path.push_str("['");
        for c in key.chars() {
            if c == '\'' || c == '\\' {
                path.push('\\');
            }
            path.push(c);
        }
        path.push_str("']");
    }
}

fn push_index(path: &mut String, i: usize) {
    let mut digits = [0u8; 20];
    let mut n = i;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    path.push('[');
    for &d in &digits[at..] {
        path.push(char::from(d));
    }
    path.push(']');
}

enum Outcome {
    Keep,
    Drop(usize),
}

enum Text {
    Unchanged,
    Replaced(String),
    Drop(usize),
}

#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    order: usize,
    rule: usize,
}

/// Whether a root is captured; `Err(id)` names the override that stops it.
type Capture = Result<(), String>;

/// One step of a payload path, kept on the walk's call stack; the path text
/// is only rendered (with [`push_key`] and [`push_index`]) when something
/// under it changes, so unchanged values cost no path building.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Root(&'a str),
    Key(&'a str),
    Index(usize),
    /// The JSON text held in the string at the parent path.
    JsonText,
}

/// A path as a chain of steps from the leaf up to the root.
#[derive(Clone, Copy)]
struct PathNode<'a> {
    seg: Seg<'a>,
    parent: Option<&'a PathNode<'a>>,
}

impl<'a> PathNode<'a> {
    fn root(name: &'a str) -> PathNode<'a> {
        PathNode {
            seg: Seg::Root(name),
            parent: None,
        }
    }

    fn child(&'a self, seg: Seg<'a>) -> PathNode<'a> {
        PathNode {
            seg,
            parent: Some(self),
        }
    }

    /// The JSONPath-like text, e.g. `$.inputs[0].card`.
    fn render(&self) -> String {
        let mut segs: Vec<Seg<'_>> = Vec::with_capacity(8);
        let mut node = Some(self);
        while let Some(n) = node {
            segs.push(n.seg);
            node = n.parent;
        }
        let mut out = String::with_capacity(64);
        for seg in segs.iter().rev() {
            match *seg {
                Seg::Root(name) => out.push_str(name),
                Seg::Key(k) => push_key(&mut out, k),
                Seg::Index(i) => push_index(&mut out, i),
                Seg::JsonText => out.push_str(JSON_TEXT_SEGMENT),
            }
        }
        out
    }
}

/// One redaction pass over an event's payloads.
struct Walk<'r> {
    r: &'r Redactor,
    /// Rule sets with key rules, in priority order.
    key_sets: Vec<&'r RuleSet>,
    strings: Vec<usize>,
    has_regex: bool,
    capture_inputs: Capture,
    capture_output: Capture,
    limits_only: bool,
    /// Cuts made by limits (not in the summary); JSON text is written back
    /// when a walk inside it changed or cut something.
    cuts: usize,
    keybuf: String,
    spans: Vec<Span>,
    changed: Vec<String>,
    applied: Vec<bool>,
    applied_overrides: Vec<String>,
}

impl<'r> Walk<'r> {
    fn new(r: &'r Redactor, action: &str) -> Walk<'r> {
        let mut sets = vec![&r.headers];
        let mut capture_inputs = Ok(());
        let mut capture_output = Ok(());
        for o in &r.overrides {
            if o.actions.iter().any(|g| glob_match(g, action)) {
                sets.push(&o.set);
                if !o.capture_inputs && capture_inputs.is_ok() {
                    capture_inputs = Err(o.id.clone());
                }
                if !o.capture_output && capture_output.is_ok() {
                    capture_output = Err(o.id.clone());
                }
            }
        }
        sets.push(&r.base);
        let strings: Vec<usize> = sets
            .iter()
            .flat_map(|s| s.strings.iter().copied())
            .collect();
        let has_regex = strings
            .iter()
            .any(|&i| matches!(r.rules[i].matcher, Matcher::Regex(_)));
        // No override applies (the usual case): one lookup in the merged
        // set instead of one per set.
        let key_sets = if sets.len() == 2 {
            vec![&r.default_keys]
        } else {
            sets.into_iter().filter(|s| s.has_keys()).collect()
        };
        Walk {
            r,
            key_sets,
            strings,
            has_regex,
            capture_inputs,
            capture_output,
            limits_only: false,
            cuts: 0,
            keybuf: String::with_capacity(64),
            spans: Vec::new(),
            changed: Vec::new(),
            applied: vec![false; r.rules.len()],
            applied_overrides: Vec::new(),
        }
    }

    fn root(&mut self, name: &str, v: &mut Value, capture: Capture) {
        let path = PathNode::root(name);
        if let Err(override_id) = capture {
            if !v.is_null() {
                replace_deep(v, marker("NOT_CAPTURED", &override_id));
                self.changed.push(path.render());
                self.applied_overrides.push(override_id);
            }
            return;
        }
        if let Outcome::Drop(rule) = self.walk(v, 0, &path) {
            replace_deep(v, marker("DROPPED", &self.r.rules[rule].id));
        }
    }

    /// A text field of the event (intent, action, error parts): value
    /// rules, or JSON text walked as JSON. Not cut by `max_string_length`.
    fn text_root(&mut self, name: &str, s: &mut String) {
        let path = PathNode::root(name);
        if let Outcome::Drop(rule) = self.string(s, 0, &path) {
            *s = marker("DROPPED", &self.r.rules[rule].id);
        }
    }

    /// Attributes, walked as one object at `$.attributes` (key rules on
    /// their names, value rules and limits on their values), then put
    /// back. Values stay scalars: a JSON-text value is re-serialized into
    /// its string and every marker is a string.
    fn attributes(&mut self, attributes: &mut Attributes) {
        if attributes.is_empty() {
            return;
        }
        let map: Map<String, Value> = std::mem::take(attributes)
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    AttributeValue::String(s) => Value::String(s),
                    AttributeValue::Number(n) => Value::Number(n),
                    AttributeValue::Bool(b) => Value::Bool(b),
                };
                (k, v)
            })
            .collect();
        let mut object = Value::Object(map);
        self.walk(&mut object, 0, &PathNode::root("$.attributes"));
        if let Value::Object(map) = object {
            for (k, v) in map {
                let value = AttributeValue::try_from(v)
                    .unwrap_or_else(|_| AttributeValue::String(MAX_DEPTH_MARKER.to_owned()));
                attributes.insert(k, value);
            }
        }
    }

    /// A string value at `path`: JSON text is parsed and walked (see
    /// [`Walk::json_text`]); any other text goes through the value rules.
    fn string(&mut self, s: &mut String, depth: usize, path: &PathNode<'_>) -> Outcome {
        if self.json_text(s, depth, path) {
            return Outcome::Keep;
        }
        match self.redact_text(s) {
            Text::Unchanged => Outcome::Keep,
            Text::Replaced(new) => {
                *s = new;
                self.changed.push(path.render());
                Outcome::Keep
            }
            Text::Drop(rule) => {
                self.changed.push(path.render());
                Outcome::Drop(rule)
            }
        }
    }

    /// When `s` is a JSON object or array held as text, walks it as JSON
    /// (key and value rules, limits) at the string's own depth, under the
    /// path `<path><json>`, and writes it back re-serialized (compact) if
    /// anything in it changed or was cut; returns true. Text that is not
    /// JSON returns false (the caller scans it as text).
    ///
    /// Bounds: texts over [`JSON_TEXT_MAX_BYTES`] are not parsed; one that
    /// is valid JSON all the same becomes [`JSON_TEXT_UNCHECKED_MARKER`].
    /// JSON text nested deeper than the parser's 128 levels becomes
    /// `"[MaxDepth]"`. Containers inside count towards `max_depth` like
    /// inline ones, so JSON text inside JSON text is bounded by it too.
    fn json_text(&mut self, s: &mut String, depth: usize, path: &PathNode<'_>) -> bool {
        if !looks_like_json(s) {
            return false;
        }
        if s.len() > JSON_TEXT_MAX_BYTES {
            let valid = serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
                || json_nesting(s) >= JSON_PARSER_MAX_NESTING;
            if valid {
                *s = JSON_TEXT_UNCHECKED_MARKER.to_owned();
                self.cuts += 1;
            }
            return valid;
        }
        let mut parsed: Value = match serde_json::from_str(s) {
            Ok(v) => v,
            Err(_) if json_nesting(s) >= JSON_PARSER_MAX_NESTING => {
                *s = MAX_DEPTH_MARKER.to_owned();
                self.cuts += 1;
                return true;
            }
            Err(_) => return false,
        };
        let before = (self.changed.len(), self.cuts);
        let inner = path.child(Seg::JsonText);
        // The root is a container, so the walk keeps it (members or items
        // it drops are handled inside).
        self.walk(&mut parsed, depth, &inner);
        if (self.changed.len(), self.cuts) != before {
            *s = match parsed {
                Value::String(marker) => marker,
                other => {
                    let text = other.to_string();
                    drop_deep(other);
                    text
                }
            };
        } else {
            drop_deep(parsed);
        }
        true
    }

    fn finish(mut self) -> RedactionSummary {
        // Equal paths are identical strings, so an unstable sort gives the
        // same result (and needs no scratch allocation).
        self.changed.sort_unstable();
        self.changed.dedup();
        let mut rules: Vec<String> = self
            .applied
            .iter()
            .zip(&self.r.rules)
            .filter(|(a, _)| **a)
            .map(|(_, r)| r.id.clone())
            .chain(self.applied_overrides)
            .collect();
        rules.sort_unstable();
        rules.dedup();
        RedactionSummary {
            rules_applied: rules,
            fields_redacted_count: self.changed.len() as u64,
            fields_redacted_paths: self.changed,
            tenant_redaction_profile_id: Some(self.r.policy_id.clone()),
        }
    }

    fn record(&mut self, rule: usize, path: &PathNode<'_>) {
        self.applied[rule] = true;
        self.changed.push(path.render());
    }

    fn key_rule(&mut self, key: &str) -> Option<usize> {
        normalize_into(key, &mut self.keybuf);
        let norm = self.keybuf.as_str();
        self.key_sets.iter().find_map(|s| s.key_rule(norm))
    }

    fn walk(&mut self, v: &mut Value, depth: usize, path: &PathNode<'_>) -> Outcome {
        let limits = self.r.limits;
        if matches!(v, Value::Array(_) | Value::Object(_)) && depth >= limits.max_depth {
            replace_deep(v, MAX_DEPTH_MARKER.to_owned());
            self.cuts += 1;
            return Outcome::Keep;
        }
        match v {
            Value::Object(map) => {
                let mut omitted = 0usize;
                if map.len() > limits.max_keys {
                    let extra: Vec<String> = map.keys().skip(limits.max_keys).cloned().collect();
                    omitted = extra.len();
                    self.cuts += 1;
                    for k in extra {
                        if let Some(old) = map.remove(&k) {
                            drop_deep(old);
                        }
                    }
                }
                let mut dropped: Vec<String> = Vec::new();
                for (k, child) in map.iter_mut() {
                    let child_path = path.child(Seg::Key(k));
                    let rule = if self.limits_only {
                        None
                    } else {
                        self.key_rule(k)
                    };
                    let outcome = match rule {
                        Some(rule) => self.apply_keyed(rule, child, depth + 1, &child_path),
                        None => self.walk(child, depth + 1, &child_path),
                    };
                    if let Outcome::Drop(_) = outcome {
                        dropped.push(k.clone());
                    }
                }
                for k in dropped {
                    if let Some(old) = map.remove(&k) {
                        drop_deep(old);
                    }
                }
                if omitted > 0 {
                    map.insert(
                        TRUNCATED_KEY.to_owned(),
                        Value::String(format!("{omitted} more keys")),
                    );
                }
            }
            Value::Array(items) => {
                let mut omitted = 0usize;
                if items.len() > limits.max_keys {
                    omitted = items.len() - limits.max_keys;
                    self.cuts += 1;
                    for old in items.drain(limits.max_keys..) {
                        drop_deep(old);
                    }
                }
                for (i, item) in items.iter_mut().enumerate() {
                    let child_path = path.child(Seg::Index(i));
                    if let Outcome::Drop(rule) = self.walk(item, depth + 1, &child_path) {
                        replace_deep(item, marker("DROPPED", &self.r.rules[rule].id));
                    }
                }
                if omitted > 0 {
                    items.push(Value::String(format!("[+{omitted} more items]")));
                }
            }
            Value::String(s) => {
                if !self.limits_only
                    && let Outcome::Drop(rule) = self.string(s, depth, path)
                {
                    return Outcome::Drop(rule);
                }
                if truncate_string(s, limits.max_string_length) {
                    self.cuts += 1;
                }
            }
            Value::Number(n) if !self.limits_only => {
                let big = match (n.as_u64(), n.as_i64()) {
                    (Some(u), _) => u >= 1_000_000_000_000,
                    (None, Some(i)) => i.unsigned_abs() >= 1_000_000_000_000,
                    _ => false,
                };
                if big {
                    let text = n.to_string();
                    match self.redact_text(&text) {
                        Text::Unchanged => {}
                        Text::Replaced(new) => {
                            *v = Value::String(new);
                            self.changed.push(path.render());
                        }
                        Text::Drop(rule) => {
                            self.changed.push(path.render());
                            return Outcome::Drop(rule);
                        }
                    }
                }
            }
            _ => {}
        }
        Outcome::Keep
    }

    /// Applies key rule `rule` to the whole value under a matched key.
    fn apply_keyed(
        &mut self,
        rule: usize,
        v: &mut Value,
        depth: usize,
        path: &PathNode<'_>,
    ) -> Outcome {
        if v.is_null() {
            return Outcome::Keep;
        }
        let red: &'r Redactor = self.r;
        let r = &red.rules[rule];
        let new = match (r.action, &*v) {
            (Action::Drop, _) => {
                self.record(rule, path);
                return Outcome::Drop(rule);
            }
            (Action::Mask { keep_last }, Value::String(s)) => mask(s, keep_last),
            (Action::Mask { keep_last }, Value::Number(n)) => mask(&n.to_string(), keep_last),
            (Action::Hash, Value::String(s)) => self.r.key.hash(s),
            (Action::Hash, Value::Number(_) | Value::Bool(_)) => self.r.key.hash(&v.to_string()),
            (Action::Hash, _) => {
                // Bound the container first, so serializing it is bounded too.
                let saved = std::mem::replace(&mut self.limits_only, true);
                self.walk(v, depth, path);
                self.limits_only = saved;
                self.r.key.hash(&v.to_string())
            }
            _ => marker("REDACTED", &r.id),
        };
        replace_deep(v, new);
        self.record(rule, path);
        Outcome::Keep
    }

    /// Runs the value rules over `text`.
    fn redact_text(&mut self, text: &str) -> Text {
        if self.strings.is_empty() {
            return Text::Unchanged;
        }
        let mut current: Option<String> = None;
        for _ in 0..4 {
            let t = current.as_deref().unwrap_or(text);
            let mut spans = std::mem::take(&mut self.spans);
            self.collect_spans(t, &mut spans);
            if spans.is_empty() {
                self.spans = spans;
                break;
            }
            if let Some(s) = spans
                .iter()
                .find(|s| self.r.rules[s.rule].action == Action::Drop)
            {
                let rule = s.rule;
                self.applied[rule] = true;
                self.spans = spans;
                return Text::Drop(rule);
            }
            for s in &spans {
                self.applied[s.rule] = true;
            }
            let merged = merge(&mut spans);
            let mut out = String::with_capacity(t.len() + 16);
            let mut last = 0;
            for s in &spans[..merged] {
                out.push_str(&t[last..s.start]);
                out.push_str(&self.r.replacement(s.rule, &t[s.start..s.end]));
                last = s.end;
            }
            out.push_str(&t[last..]);
            self.spans = spans;
            current = Some(out);
        }
        match current {
            Some(s) => Text::Replaced(s),
            None => Text::Unchanged,
        }
    }

    fn collect_spans(&self, t: &str, spans: &mut Vec<Span>) {
        spans.clear();
        let mask = detect::candidates(t.as_bytes());
        if mask == 0 && !self.has_regex {
            return;
        }
        for (order, &rule) in self.strings.iter().enumerate() {
            let mut push = |start: usize, end: usize| {
                if start < end {
                    spans.push(Span {
                        start,
                        end,
                        order,
                        rule,
                    });
                }
            };
            match &self.r.rules[rule].matcher {
                Matcher::Detector(d) if mask & d.bit() != 0 => {
                    d.find_each(t, &mut |r| push(r.start, r.end));
                }
                Matcher::Regex(re) if re.captures_len() > 1 => {
                    for caps in re.captures_iter(t) {
                        if let Some(g) = caps.get(1) {
                            push(g.start(), g.end());
                        }
                    }
                }
                Matcher::Regex(re) => {
                    for m in re.find_iter(t) {
                        push(m.start(), m.end());
                    }
                }
                _ => {}
            }
        }
    }
}

/// Sorts spans and merges overlapping ones in place; the merged spans are
/// the first `n` (returned), each with the rule of its earliest member.
fn merge(spans: &mut [Span]) -> usize {
    spans.sort_by_key(|s| (s.start, s.order));
    let mut n = 0;
    for i in 0..spans.len() {
        let s = spans[i];
        if n > 0 && s.start < spans[n - 1].end {
            spans[n - 1].end = spans[n - 1].end.max(s.end);
        } else {
            spans[n] = s;
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_at_most_half() {
        assert_eq!(mask("4242424242424242", 4), "************4242");
        assert_eq!(mask("abc", 4), "**c");
        assert_eq!(mask("", 4), "");
        assert_eq!(mask("ab", 0), "**");
        assert_eq!(mask("4242 4242 4242 4242", 4), "***************4242");
        assert_eq!(
            mask("DE89 3704 0044 0532 0130 00", 4),
            "**********************30 00"
        );
        assert_eq!(mask("-- --", 4), "*****");
    }

    #[test]
    fn paths_quote_non_identifiers() {
        let mut p = String::from("$");
        push_key(&mut p, "card");
        push_key(&mut p, "x-api-key");
        push_key(&mut p, "it's");
        push_index(&mut p, 0);
        push_index(&mut p, 1207);
        assert_eq!(p, r"$.card['x-api-key']['it\'s'][0][1207]");
    }

    #[test]
    fn overlapping_spans_merge() {
        let mut v = vec![
            Span {
                start: 5,
                end: 9,
                order: 1,
                rule: 1,
            },
            Span {
                start: 0,
                end: 6,
                order: 0,
                rule: 0,
            },
            Span {
                start: 12,
                end: 14,
                order: 0,
                rule: 0,
            },
        ];
        let n = merge(&mut v);
        assert_eq!(n, 2);
        assert_eq!((v[0].start, v[0].end, v[0].rule), (0, 9, 0));
        assert_eq!((v[1].start, v[1].end), (12, 14));
    }
}
