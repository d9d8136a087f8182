//! The YAML form of a redaction policy and its validation.

use std::collections::HashSet;

use regex::Regex;
use serde_yaml_ng::{Mapping, Value as Yaml};

use super::detect::Detector;
use super::glob::KeyPattern;
use super::{BUILTIN_HEADERS_RULE, normalize_key};

/// Errors in a redaction policy. Each names what is wrong and where.
///
/// ```
/// use intentproof_policy::redact::RedactionPolicy;
/// let err = RedactionPolicy::from_yaml(
///     "version: 1\nid: p\nrules:\n  - id: cards\n    match: { detector: credit_crad }\n    action: redact\n",
/// ).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "redaction policy: rule `cards`: `rules[0].match.detector`: unknown detector `credit_crad` \
///      (known: email, phone, credit_card, iban, jwt, bearer_token, aws_access_key_id, \
///      aws_secret_access_key, gcp_api_key, gcp_service_account, github_token, slack_token, \
///      slack_webhook, stripe_key, private_key)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not YAML.
    #[error("redaction policy is not valid YAML: {0}")]
    Yaml(String),
    /// A top-level or override field is wrong.
    #[error("redaction policy: `{field}`: {message}")]
    Field {
        /// Path of the field, e.g. `limits.max_depth` or `overrides[0].actions`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A field of one rule is wrong.
    #[error("redaction policy: rule `{rule}`: `{field}`: {message}")]
    Rule {
        /// The rule's id, or `rules[<index>]` when it has none.
        rule: String,
        /// Path of the field, e.g. `rules[2].action.mask.keep_last`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Bounds applied while redacting, like [`intentproof_core::SerializeOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Containers nested deeper than this (the root is depth 0) become
    /// `"[MaxDepth]"`. At most [`intentproof_core::snapshot::HARD_MAX_DEPTH`]. Default 16.
    pub max_depth: usize,
    /// Most entries kept per object and items per array. Default 500.
    pub max_keys: usize,
    /// Longest string kept, in characters, after redaction. Default 16384.
    pub max_string_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 16,
            max_keys: 500,
            max_string_length: 16384,
        }
    }
}

/// What a rule does to what it matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Redact,
    Mask { keep_last: usize },
    Hash,
    Drop,
}

#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    /// Normalized exact keys and key patterns.
    Keys {
        exact: Vec<String>,
        patterns: Vec<KeyPattern>,
    },
    Detector(Detector),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) id: String,
    pub(crate) matcher: Matcher,
    pub(crate) action: Action,
}

#[derive(Debug, Clone)]
pub(crate) struct Override {
    pub(crate) id: String,
    pub(crate) actions: Vec<String>,
    pub(crate) capture_inputs: bool,
    pub(crate) capture_output: bool,
    pub(crate) rules: Vec<Rule>,
}

/// A parsed, validated redaction policy. See `policies/redaction/README.md`
/// for the format.
///
/// ```
/// use intentproof_policy::redact::RedactionPolicy;
/// let p = RedactionPolicy::from_yaml(r#"
/// version: 1
/// id: minimal
/// rules:
///   - id: secrets
///     match: { keys: [password, "*token"] }
///     action: redact
/// "#).unwrap();
/// assert_eq!(p.id(), "minimal");
/// assert_eq!(p.rule_ids(), vec!["secrets"]);
/// assert_eq!(p.limits().max_depth, 16);
/// ```
#[derive(Debug, Clone)]
pub struct RedactionPolicy {
    pub(crate) id: String,
    pub(crate) description: Option<String>,
    pub(crate) limits: Limits,
    pub(crate) rules: Vec<Rule>,
    pub(crate) overrides: Vec<Override>,
}

const DEFAULT_POLICY: &str = include_str!("../../../../policies/redaction/default.yaml");

impl RedactionPolicy {
    /// Parses and validates a policy.
    pub fn from_yaml(text: &str) -> Result<RedactionPolicy, PolicyError> {
        let doc: Yaml =
            serde_yaml_ng::from_str(text).map_err(|e| PolicyError::Yaml(e.to_string()))?;
        parse_policy(&doc)
    }

    /// The built-in policy, `policies/redaction/default.yaml`: every
    /// detector and a broad list of secret keys.
    pub fn default_policy() -> RedactionPolicy {
        match Self::from_yaml(DEFAULT_POLICY) {
            Ok(p) => p,
            // Covered by tests; a broken embedded file is a build defect.
            Err(e) => panic!("embedded default redaction policy is invalid: {e}"),
        }
    }

    /// The text of the built-in policy.
    pub fn default_policy_yaml() -> &'static str {
        DEFAULT_POLICY
    }

    /// The policy's id (reported as `tenantRedactionProfileId`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The policy's description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Its limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Ids of its rules, in order (not counting override rules).
    pub fn rule_ids(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.id.as_str()).collect()
    }

    /// Ids of its overrides, in order.
    pub fn override_ids(&self) -> Vec<&str> {
        self.overrides.iter().map(|o| o.id.as_str()).collect()
    }
}

fn field_err(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError::Field {
        field: field.into(),
        message: message.into(),
    }
}

fn kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "null",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

/// Checks that `map` has only string keys from `known`; returns the first
/// problem as (field path, message).
fn check_fields(map: &Mapping, known: &[&str], at: &str) -> Result<(), (String, String)> {
    for k in map.keys() {
        let Some(name) = k.as_str() else {
            return Err((
                at.to_owned(),
                format!("keys must be strings, found {}", kind(k)),
            ));
        };
        if !known.contains(&name) {
            return Err((
                join(at, name),
                format!("unknown field (expected one of: {})", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn join(at: &str, name: &str) -> String {
    if name.is_empty() {
        at.to_owned()
    } else if at.is_empty() {
        name.to_owned()
    } else {
        format!("{at}.{name}")
    }
}

fn parse_policy(doc: &Yaml) -> Result<RedactionPolicy, PolicyError> {
    let map = doc.as_mapping().ok_or_else(|| {
        field_err(
            "(document)",
            format!("must be a mapping, found {}", kind(doc)),
        )
    })?;
    check_fields(
        map,
        &[
            "version",
            "id",
            "description",
            "limits",
            "rules",
            "overrides",
        ],
        "",
    )
    .map_err(|(f, m)| field_err(f, m))?;

    match map.get("version") {
        None => return Err(field_err("version", "missing (expected `version: 1`)")),
        Some(v) if v.as_u64() == Some(1) => {}
        Some(v) => {
            return Err(field_err(
                "version",
                format!("unsupported version {} (expected 1)", show(v)),
            ));
        }
    }
    let id = match map.get("id") {
        None => return Err(field_err("id", "missing")),
        Some(v) => v
            .as_str()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                field_err(
                    "id",
                    format!("must be a non-empty string, found {}", show(v)),
                )
            })?
            .to_owned(),
    };
    let description = match map.get("description") {
        None | Some(Yaml::Null) => None,
        Some(Yaml::String(s)) => Some(s.clone()),
        Some(v) => {
            return Err(field_err(
                "description",
                format!("must be a string, found {}", kind(v)),
            ));
        }
    };
    let limits = parse_limits(map.get("limits"))?;

    let mut ids = HashSet::new();
    let rules = parse_rules(map.get("rules"), "rules", &mut ids)?;

    let mut overrides = Vec::new();
    match map.get("overrides") {
        None | Some(Yaml::Null) => {}
        Some(Yaml::Sequence(items)) => {
            for (i, item) in items.iter().enumerate() {
                overrides.push(parse_override(
                    item,
                    &format!("overrides[{i}]"),
                    i,
                    &mut ids,
                )?);
            }
        }
        Some(v) => {
            return Err(field_err(
                "overrides",
                format!("must be a list, found {}", kind(v)),
            ));
        }
    }
    Ok(RedactionPolicy {
        id,
        description,
        limits,
        rules,
        overrides,
    })
}

fn show(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => format!("`{s}`"),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => kind(other).to_owned(),
    }
}

fn parse_limits(v: Option<&Yaml>) -> Result<Limits, PolicyError> {
    let mut limits = Limits::default();
    let map = match v {
        None | Some(Yaml::Null) => return Ok(limits),
        Some(Yaml::Mapping(m)) => m,
        Some(v) => {
            return Err(field_err(
                "limits",
                format!("must be a mapping, found {}", kind(v)),
            ));
        }
    };
    check_fields(
        map,
        &["max_depth", "max_keys", "max_string_length"],
        "limits",
    )
    .map_err(|(f, m)| field_err(f, m))?;
    let hard = intentproof_core::snapshot::HARD_MAX_DEPTH;
    for (name, slot, max) in [
        ("max_depth", &mut limits.max_depth, hard),
        ("max_keys", &mut limits.max_keys, usize::MAX),
        (
            "max_string_length",
            &mut limits.max_string_length,
            usize::MAX,
        ),
    ] {
        if let Some(v) = map.get(name) {
            let n = v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n >= 1 && n <= max)
                .ok_or_else(|| {
                    let range = if max == usize::MAX {
                        "a positive integer".to_owned()
                    } else {
                        format!("an integer from 1 to {max}")
                    };
                    field_err(
                        format!("limits.{name}"),
                        format!("must be {range}, found {}", show(v)),
                    )
                })?;
            *slot = n;
        }
    }
    Ok(limits)
}

fn parse_rules(
    v: Option<&Yaml>,
    at: &str,
    ids: &mut HashSet<String>,
) -> Result<Vec<Rule>, PolicyError> {
    let items = match v {
        None | Some(Yaml::Null) => return Ok(Vec::new()),
        Some(Yaml::Sequence(items)) => items,
        Some(v) => return Err(field_err(at, format!("must be a list, found {}", kind(v)))),
    };
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        rules.push(parse_rule(item, &format!("{at}[{i}]"), ids)?);
    }
    Ok(rules)
}

fn parse_rule(v: &Yaml, at: &str, ids: &mut HashSet<String>) -> Result<Rule, PolicyError> {
    let map = v
        .as_mapping()
        .ok_or_else(|| field_err(at, format!("a rule must be a mapping, found {}", kind(v))))?;
    // Name the rule by its id when it has a usable one.
    let label = map
        .get("id")
        .and_then(Yaml::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| at.to_owned());
    let err = |field: &str, message: String| PolicyError::Rule {
        rule: label.clone(),
        field: join(at, field),
        message,
    };
    check_fields(map, &["id", "description", "match", "action"], "")
        .map_err(|(f, m)| err(&f, m))?;

    let id = match map.get("id") {
        None => return Err(err("id", "missing".into())),
        Some(Yaml::String(s)) => s.clone(),
        Some(v) => return Err(err("id", format!("must be a string, found {}", kind(v)))),
    };
    check_id(&id).map_err(|m| err("id", m))?;
    if !ids.insert(id.clone()) {
        return Err(err(
            "id",
            "duplicate id (rule and override ids must be unique)".into(),
        ));
    }
    if let Some(v) = map.get("description")
        && !v.is_string()
    {
        return Err(err(
            "description",
            format!("must be a string, found {}", kind(v)),
        ));
    }

    let matcher = match map.get("match") {
        None => {
            return Err(err(
                "match",
                "missing (one of `keys`, `detector`, `regex`)".into(),
            ));
        }
        Some(Yaml::Mapping(m)) => {
            parse_match(m).map_err(|(f, msg)| err(&join("match", &f), msg))?
        }
        Some(v) => {
            return Err(err(
                "match",
                format!("must be a mapping, found {}", kind(v)),
            ));
        }
    };
    let action = match map.get("action") {
        None => return Err(err("action", "missing (redact, mask, hash or drop)".into())),
        Some(v) => parse_action(v).map_err(|(f, msg)| err(&join("action", &f), msg))?,
    };
    Ok(Rule {
        id,
        matcher,
        action,
    })
}

fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(format!(
            "`{id}` may only contain ASCII letters, digits, `-`, `_`, `.` and `:`"
        ));
    }
    if id == BUILTIN_HEADERS_RULE {
        return Err(format!("`{id}` is reserved for the built-in header rule"));
    }
    Ok(())
}

type FieldResult<T> = Result<T, (String, String)>;

fn parse_match(map: &Mapping) -> FieldResult<Matcher> {
    check_fields(map, &["keys", "detector", "regex"], "")?;
    if map.len() != 1 {
        return Err((
            String::new(),
            format!(
                "must have exactly one of `keys`, `detector`, `regex`, found {}",
                map.len()
            ),
        ));
    }
    if let Some(v) = map.get("keys") {
        let items = v.as_sequence().filter(|s| !s.is_empty()).ok_or_else(|| {
            (
                "keys".to_owned(),
                format!("must be a non-empty list of strings, found {}", kind(v)),
            )
        })?;
        let mut exact = Vec::new();
        let mut patterns = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("keys[{i}]");
            let s = item.as_str().ok_or_else(|| {
                (
                    at.clone(),
                    format!("must be a string, found {}", kind(item)),
                )
            })?;
            let norm = normalize_key(s);
            if norm.trim_matches('*').is_empty() {
                return Err((
                    at,
                    format!("`{s}` has nothing to match once `_ - .` and spaces are removed"),
                ));
            }
            if norm.contains(['*', '?']) {
                patterns.push(KeyPattern::new(&norm));
            } else if !exact.contains(&norm) {
                exact.push(norm);
            }
        }
        return Ok(Matcher::Keys { exact, patterns });
    }
    if let Some(v) = map.get("detector") {
        let name = v.as_str().ok_or_else(|| {
            (
                "detector".to_owned(),
                format!("must be a string, found {}", kind(v)),
            )
        })?;
        return Detector::from_name(name)
            .map(Matcher::Detector)
            .ok_or_else(|| {
                let known: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
                (
                    "detector".to_owned(),
                    format!("unknown detector `{name}` (known: {})", known.join(", ")),
                )
            });
    }
    let v = map
        .get("regex")
        .ok_or_else(|| (String::new(), "empty match".to_owned()))?;
    let pattern = v.as_str().ok_or_else(|| {
        (
            "regex".to_owned(),
            format!("must be a string, found {}", kind(v)),
        )
    })?;
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(4 << 20)
        .build()
        .map_err(|e| {
            (
                "regex".to_owned(),
                format!("invalid regular expression: {e}"),
            )
        })?;
    if re.is_match("") {
        return Err((
            "regex".to_owned(),
            format!("`{pattern}` matches the empty string"),
        ));
    }
    Ok(Matcher::Regex(re))
}

fn parse_action(v: &Yaml) -> FieldResult<Action> {
    let unknown = |name: &str| {
        (
            String::new(),
            format!("unknown action `{name}` (expected redact, mask, hash or drop)"),
        )
    };
    let (name, params) = match v {
        Yaml::String(s) => (s.as_str(), None),
        Yaml::Mapping(m) if m.len() == 1 => {
            let (k, p) = m.iter().next().ok_or_else(|| unknown(""))?;
            let name = k.as_str().ok_or_else(|| {
                (
                    String::new(),
                    format!("action name must be a string, found {}", kind(k)),
                )
            })?;
            (name, Some(p))
        }
        other => {
            return Err((
                String::new(),
                format!(
                    "must be an action name or a mapping with one action, found {}",
                    kind(other)
                ),
            ));
        }
    };
    let params = match params {
        None | Some(Yaml::Null) => None,
        Some(Yaml::Mapping(m)) => Some(m),
        Some(p) => {
            return Err((
                name.to_owned(),
                format!("parameters must be a mapping, found {}", kind(p)),
            ));
        }
    };
    let allowed: &[&str] = match name {
        "redact" | "hash" | "drop" => &[],
        "mask" => &["keep_last"],
        other => return Err(unknown(other)),
    };
    if let Some(m) = params {
        check_fields(m, allowed, name)?;
    }
    Ok(match name {
        "redact" => Action::Redact,
        "hash" => Action::Hash,
        "drop" => Action::Drop,
        _ => {
            let keep_last = match params.and_then(|m| m.get("keep_last")) {
                None => 4,
                Some(v) => v
                    .as_u64()
                    .filter(|&n| n <= 16)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        (
                            "mask.keep_last".to_owned(),
                            format!("must be an integer from 0 to 16, found {}", show(v)),
                        )
                    })?,
            };
            Action::Mask { keep_last }
        }
    })
}

fn parse_override(
    v: &Yaml,
    at: &str,
    index: usize,
    ids: &mut HashSet<String>,
) -> Result<Override, PolicyError> {
    let map = v.as_mapping().ok_or_else(|| {
        field_err(
            at,
            format!("an override must be a mapping, found {}", kind(v)),
        )
    })?;
    check_fields(
        map,
        &[
            "id",
            "description",
            "actions",
            "capture_inputs",
            "capture_output",
            "rules",
        ],
        at,
    )
    .map_err(|(f, m)| field_err(f, m))?;
    let id = match map.get("id") {
        None => format!("override-{index}"),
        Some(Yaml::String(s)) => s.clone(),
        Some(v) => {
            return Err(field_err(
                join(at, "id"),
                format!("must be a string, found {}", kind(v)),
            ));
        }
    };
    check_id(&id).map_err(|m| field_err(join(at, "id"), m))?;
    if !ids.insert(id.clone()) {
        return Err(field_err(
            join(at, "id"),
            format!("duplicate id `{id}` (rule and override ids must be unique)"),
        ));
    }
    let actions_at = join(at, "actions");
    let actions = match map.get("actions") {
        None => return Err(field_err(actions_at, "missing (a list of action globs)")),
        Some(Yaml::Sequence(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        field_err(
                            format!("{actions_at}[{i}]"),
                            format!("must be a non-empty string, found {}", show(item)),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(v) => {
            return Err(field_err(
                actions_at,
                format!("must be a non-empty list of globs, found {}", kind(v)),
            ));
        }
    };
    let flag = |name: &str| match map.get(name) {
        None => Ok(true),
        Some(Yaml::Bool(b)) => Ok(*b),
        Some(v) => Err(field_err(
            join(at, name),
            format!("must be true or false, found {}", show(v)),
        )),
    };
    let capture_inputs = flag("capture_inputs")?;
    let capture_output = flag("capture_output")?;
    let rules = parse_rules(map.get("rules"), &join(at, "rules"), ids)?;
    Ok(Override {
        id,
        actions,
        capture_inputs,
        capture_output,
        rules,
    })
}
