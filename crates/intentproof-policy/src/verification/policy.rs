//! The policy document: parsing (JSON form, YAML authoring form), the
//! fingerprint, and linting.
//!
//! [`check_policy`] is the one validation every reader of a policy file
//! runs (`intentproof serve`, `doctor`, `policy lint`, `policy test`): parse,
//! compile, then [`Policy::lint`]. It does not read files (this crate does
//! no I/O); callers read at most [`MAX_POLICY_BYTES`] + 1 bytes and hand
//! them in, so an oversized file is reported the same way everywhere.

use std::collections::HashSet;
use std::fmt;

use intentproof_core::canon::{CanonError, canonicalize_object_without, parse_strict};
use intentproof_core::schema::{SchemaKind, validate};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::SEVERITIES;
use super::rules::{Checker, RuleKind, lint_unknown_category};

/// `schema` of a verification policy.
pub const POLICY_SCHEMA: &str = "intentproof.policy.v1";

/// Top-level fields left out of the policy fingerprint (see
/// `golden/policy_fingerprint_vector.json`).
pub const FINGERPRINT_EXCLUDED_FIELDS: [&str; 3] = ["policy_fingerprint", "signed_at", "signature"];

/// Why a policy could not be read or compiled.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The JSON form does not parse.
    #[error(
        "policy is not valid JSON: {0} (duplicate keys and integers beyond 2^53 are rejected; fix the file or write it as YAML)"
    )]
    Json(#[source] CanonError),
    /// The YAML authoring form does not parse.
    #[error("policy is not valid YAML: {0} (fix the syntax at the position shown)")]
    Yaml(String),
    /// The document is not an object.
    #[error("a policy must be a JSON object / YAML mapping, not {0}")]
    NotAnObject(&'static str),
    /// The YAML authoring form has a field that cannot be compiled.
    #[error("{location}: {message}")]
    Compile {
        /// Where: `rule "r1"`, `rules[2]` or `scope`.
        location: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The policy cannot be canonicalized (RFC 8785), so it has no fingerprint.
    #[error(
        "policy cannot be canonicalized for its fingerprint: {0} (numbers must be finite and integers within 2^53)"
    )]
    Canon(#[source] CanonError),
}

/// The problems that make a policy invalid, each naming the rule and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LintError {
    /// One message per problem, e.g. `rule "r1" (required): spec.action is missing`.
    pub problems: Vec<String>,
}

impl fmt::Display for LintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid policy: {one}"),
            many => {
                write!(f, "invalid policy ({} problems):", many.len())?;
                for p in many {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

/// The largest policy file [`check_policy`] accepts: 1 MiB. Policies are a
/// few kilobytes; the bound keeps a wrong path (a log, a database) from
/// being read and parsed whole.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// A policy that cannot be used, with every problem found in it.
///
/// Displayed one problem a line, each prefixed with the file's name, e.g.
/// `policy.yaml: rule "r1": type "requried" is not a category; valid: ...`:
/// what `intentproof policy lint` prints, what stops `intentproof serve`,
/// and what `intentproof doctor` reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidPolicy {
    /// The file as the user named it (`-` for standard input).
    pub name: String,
    /// One message per problem, naming the rule and field and the fix.
    pub problems: Vec<String>,
}

impl InvalidPolicy {
    /// A policy file that could not be read at all.
    pub fn unreadable(name: impl Into<String>, error: &std::io::Error) -> InvalidPolicy {
        InvalidPolicy {
            name: name.into(),
            problems: vec![format!("cannot read it: {error}")],
        }
    }

    /// The problems, one a line, each prefixed with the file's name.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.problems
            .iter()
            .map(move |p| format!("{}: {p}", self.name))
    }
}

impl fmt::Display for InvalidPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&line)?;
        }
        Ok(())
    }
}

/// Parses, compiles and lints the policy file `name` (its `bytes`, in
/// `format`): the one validation of a policy, run by everything that loads
/// one. `Ok` only when [`Policy::lint`] finds nothing; the error lists every
/// problem (or the one that stopped parsing).
pub fn check_policy(
    name: &str,
    bytes: &[u8],
    format: PolicyFormat,
) -> Result<Policy, InvalidPolicy> {
    let invalid = |problems: Vec<String>| InvalidPolicy {
        name: name.to_owned(),
        problems,
    };
    if bytes.len() > MAX_POLICY_BYTES {
        return Err(invalid(vec![format!(
            "is larger than {} KiB, more than a policy can be; is this the right file?",
            MAX_POLICY_BYTES / 1024
        )]));
    }
    let policy = Policy::parse(bytes, format).map_err(|e| invalid(vec![e.to_string()]))?;
    policy.lint().map_err(|e| invalid(e.problems))?;
    Ok(policy)
}

/// Which form a policy file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyFormat {
    /// The JSON form (`intentproof.policy.v1` as is).
    Json,
    /// The YAML authoring form (compiled with [`Policy::compile`]).
    Yaml,
    /// JSON when the first non-blank byte is `{`, else YAML.
    Detect,
}

impl PolicyFormat {
    /// The form a file's name says: `.yaml`/`.yml` YAML, `.json` JSON,
    /// anything else [`PolicyFormat::Detect`].
    pub fn for_path(path: &std::path::Path) -> PolicyFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => PolicyFormat::Yaml,
            Some("json") => PolicyFormat::Json,
            _ => PolicyFormat::Detect,
        }
    }
}

/// An `intentproof.policy.v1` document.
///
/// Kept as the JSON object it is, so the fingerprint covers exactly what was
/// written (including `name`, `description`, `claims`, ...). Reading does
/// not validate: call [`Policy::lint`] for that. The evaluator accepts any
/// object and is lenient with what it does not understand (see
/// [`super::evaluate`]).
#[derive(Debug, Clone)]
pub struct Policy {
    doc: Map<String, Value>,
    /// Indexes of the rules whose category was written as `type:` (the
    /// YAML form), so that lint names the field the author wrote.
    type_rules: Vec<usize>,
}

/// Two policies are equal when their documents are: how a category was
/// spelled in the source is not part of the policy.
impl PartialEq for Policy {
    fn eq(&self, other: &Policy) -> bool {
        self.doc == other.doc
    }
}

impl Policy {
    /// Wraps a JSON value, unchanged (no compiler defaults).
    pub fn from_value(value: Value) -> Result<Policy, PolicyError> {
        match value {
            Value::Object(doc) => Ok(Policy {
                doc,
                type_rules: Vec::new(),
            }),
            other => Err(PolicyError::NotAnObject(kind(&other))),
        }
    }

    /// Parses the JSON form strictly (duplicate keys are rejected), unchanged.
    pub fn from_json(bytes: &[u8]) -> Result<Policy, PolicyError> {
        Policy::from_value(parse_strict(bytes).map_err(PolicyError::Json)?)
    }

    /// Parses the YAML authoring form and compiles it (see [`Policy::compile`]).
    pub fn from_yaml(text: &str) -> Result<Policy, PolicyError> {
        let value: Value =
            serde_yaml_ng::from_str(text).map_err(|e| PolicyError::Yaml(e.to_string()))?;
        Policy::compile(value)
    }

    /// Parses `bytes` in the given form.
    pub fn parse(bytes: &[u8], format: PolicyFormat) -> Result<Policy, PolicyError> {
        let format = match format {
            PolicyFormat::Detect => {
                if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
                    PolicyFormat::Json
                } else {
                    PolicyFormat::Yaml
                }
            }
            f => f,
        };
        match format {
            PolicyFormat::Json => Policy::from_json(bytes),
            _ => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| PolicyError::Yaml(format!("not UTF-8: {e}")))?;
                Policy::from_yaml(text)
            }
        }
    }

    /// Compiles the authoring form into the JSON form:
    ///
    /// - `schema` defaults to `intentproof.policy.v1`, `provenance_class` to
    ///   `platform_attested`, `policy_version` to 1, `spec_version` to
    ///   `"1.0.0"`, `scope` to `{}`;
    /// - `scope.match_action` (a string or a list) becomes
    ///   `scope.any_event_action_in`;
    /// - in each rule, `type:` stands for `category`, `severity` defaults to
    ///   `medium`, and every field other than `id`, `category`, `severity`
    ///   and `spec` moves under `spec`;
    /// - `policy_fingerprint` is computed when absent or empty.
    ///
    /// A document already in the JSON form compiles to itself.
    pub fn compile(value: Value) -> Result<Policy, PolicyError> {
        let mut doc = match value {
            Value::Object(doc) => doc,
            other => return Err(PolicyError::NotAnObject(kind(&other))),
        };
        let defaults = [
            ("schema", Value::from(POLICY_SCHEMA)),
            ("provenance_class", Value::from("platform_attested")),
            ("policy_version", Value::from(1)),
            ("spec_version", Value::from("1.0.0")),
            ("scope", Value::Object(Map::new())),
        ];
        for (k, v) in defaults {
            doc.entry(k).or_insert(v);
        }
        if let Some(Value::Object(scope)) = doc.get_mut("scope")
            && let Some(m) = scope.remove("match_action")
        {
            if scope.contains_key("any_event_action_in") {
                return Err(compile_error(
                    "scope",
                    "give either match_action or any_event_action_in, not both",
                ));
            }
            let list = match m {
                Value::String(s) => vec![Value::String(s)],
                Value::Array(a) => a,
                other => {
                    return Err(compile_error(
                        "scope",
                        format!(
                            "match_action must be an action or a list of actions, not {}",
                            kind(&other)
                        ),
                    ));
                }
            };
            scope.insert("any_event_action_in".into(), Value::Array(list));
        }
        let mut type_rules = Vec::new();
        if let Some(Value::Array(rules)) = doc.get_mut("rules") {
            for (i, rule) in rules.iter_mut().enumerate() {
                if compile_rule(i, rule)? {
                    type_rules.push(i);
                }
            }
        }
        let missing = match doc.get("policy_fingerprint") {
            None => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        let mut policy = Policy { doc, type_rules };
        if missing {
            let fp = policy.fingerprint()?;
            policy
                .doc
                .insert("policy_fingerprint".into(), Value::String(fp));
        }
        Ok(policy)
    }

    /// The document.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.doc
    }

    /// The document as a JSON value.
    pub fn to_value(&self) -> Value {
        Value::Object(self.doc.clone())
    }

    /// `policy_id`, when it is a string.
    pub fn policy_id(&self) -> Option<&str> {
        self.doc.get("policy_id").and_then(Value::as_str)
    }

    /// `tenant_id`, when it is a string.
    pub fn tenant_id(&self) -> Option<&str> {
        self.doc.get("tenant_id").and_then(Value::as_str)
    }

    /// `policy_version`, when it is a non-negative integer.
    pub fn policy_version(&self) -> Option<u64> {
        self.doc.get("policy_version").and_then(Value::as_u64)
    }

    /// The declared `policy_fingerprint`; `None` when absent or empty (an
    /// empty fingerprint declares none).
    pub fn declared_fingerprint(&self) -> Option<&str> {
        self.doc
            .get("policy_fingerprint")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The fingerprint of the content: `"sha256:" + hex(sha256(JCS(policy
    /// minus policy_fingerprint, signed_at, signature)))`.
    pub fn fingerprint(&self) -> Result<String, PolicyError> {
        policy_fingerprint(&self.doc).map_err(PolicyError::Canon)
    }

    /// The rules array (empty when absent or not an array).
    pub fn rules(&self) -> &[Value] {
        match self.doc.get("rules") {
            Some(Value::Array(rules)) => rules,
            _ => &[],
        }
    }

    /// The rule with this `id`.
    pub fn rule(&self, id: &str) -> Option<&Map<String, Value>> {
        self.rules()
            .iter()
            .filter_map(Value::as_object)
            .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
    }

    /// `scope`, read leniently.
    pub fn scope(&self) -> Scope {
        let scope = self.doc.get("scope").and_then(Value::as_object);
        Scope {
            any_event_action_in: scope
                .and_then(|s| s.get("any_event_action_in"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                }),
            ignore_flows_with_no_match: scope
                .and_then(|s| s.get("ignore_flows_with_no_match"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }

    /// Checks the policy: valid iff it validates against the policy schema,
    /// its declared fingerprint (when present and non-empty) is correct, and
    /// the semantic checks pass (a non-empty `scope.any_event_action_in` and
    /// no unknown scope field, unique non-empty rule ids, known categories
    /// and severities, fields each category needs, `min <= max`, parseable
    /// durations, a usable consensus threshold...).
    ///
    /// Messages name the rule and field. Schema messages are added only when
    /// the specific checks found nothing (they repeat them less readably).
    pub fn lint(&self) -> Result<(), LintError> {
        let mut problems = Vec::new();
        semantic_checks(&self.doc, &self.type_rules, &mut problems);
        match self.fingerprint() {
            Ok(fp) => {
                if let Some(declared) = self.declared_fingerprint()
                    && declared != fp
                {
                    problems.push(format!(
                        "policy_fingerprint is {declared} but the policy's content hashes to {fp}; \
                             update the field (or leave it empty to declare none)"
                    ));
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
        if let Err(schema_errors) = validate(SchemaKind::Policy, &self.to_value())
            && problems.is_empty()
        {
            problems.extend(
                schema_errors
                    .into_iter()
                    .map(|e| format!("schema: {}", shorten(&e))),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LintError { problems })
        }
    }
}

/// A policy's `scope`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    /// The flow is in scope when any event's action is one of these; `None`
    /// (or an empty list) puts every flow in scope.
    pub any_event_action_in: Option<Vec<String>>,
    /// When true, a flow with no event in scope is not evaluated: its run
    /// has no findings.
    pub ignore_flows_with_no_match: bool,
}

/// The policy fingerprint of a policy object (see [`Policy::fingerprint`]).
pub fn policy_fingerprint(policy: &Map<String, Value>) -> Result<String, CanonError> {
    let bytes = canonicalize_object_without(policy, &FINGERPRINT_EXCLUDED_FIELDS)?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    Ok(intentproof_core::v1::sha256_prefixed(&digest))
}

fn compile_error(location: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError::Compile {
        location: location.into(),
        message: message.into(),
    }
}

/// Compiles one rule in place; `Ok(true)` when its category was written as
/// `type:`.
fn compile_rule(index: usize, rule: &mut Value) -> Result<bool, PolicyError> {
    let Value::Object(map) = rule else {
        return Err(compile_error(
            format!("rules[{index}]"),
            format!("a rule must be a mapping, not {}", kind(rule)),
        ));
    };
    let location = match map.get("id").and_then(Value::as_str) {
        Some(id) => format!("rule {id:?}"),
        None => format!("rules[{index}]"),
    };
    let typed = map.contains_key("type");
    if let Some(t) = map.remove("type") {
        match map.get("category") {
            Some(c) if *c != t => {
                return Err(compile_error(
                    location,
                    format!("type {t} and category {c} disagree; keep one of them"),
                ));
            }
            _ => {
                map.insert("category".into(), t);
            }
        }
    }
    map.entry("severity")
        .or_insert_with(|| Value::from("medium"));
    let flat: Vec<String> = map
        .keys()
        .filter(|k| !matches!(k.as_str(), "id" | "category" | "severity" | "spec"))
        .cloned()
        .collect();
    if flat.is_empty() {
        return Ok(typed);
    }
    let mut spec = match map.remove("spec") {
        None => Map::new(),
        Some(Value::Object(spec)) => spec,
        Some(other) => {
            return Err(compile_error(
                location,
                format!("spec must be a mapping, not {}", kind(&other)),
            ));
        }
    };
    for key in flat {
        if spec.contains_key(&key) {
            return Err(compile_error(
                location,
                format!("{key} is given both flat and under spec; keep one"),
            ));
        }
        if let Some(v) = map.remove(&key) {
            spec.insert(key, v);
        }
    }
    map.insert("spec".into(), Value::Object(spec));
    Ok(typed)
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

// ---------------------------------------------------------------------------
// Semantic checks

/// The keys of `scope`.
const SCOPE_FIELDS: [&str; 2] = ["any_event_action_in", "ignore_flows_with_no_match"];

fn semantic_checks(doc: &Map<String, Value>, type_rules: &[usize], problems: &mut Vec<String>) {
    match doc.get("schema") {
        Some(Value::String(s)) if s == POLICY_SCHEMA => {}
        Some(other) => problems.push(format!("schema must be {POLICY_SCHEMA:?}, not {other}")),
        None => problems.push(format!("schema is missing (it must be {POLICY_SCHEMA:?})")),
    }
    for field in ["policy_id", "tenant_id", "spec_version"] {
        match doc.get(field) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::String(_)) => problems.push(format!("{field} is empty")),
            Some(other) => problems.push(format!("{field} must be a string, not {}", kind(other))),
            None => problems.push(format!("{field} is missing")),
        }
    }
    match doc.get("policy_version") {
        Some(v) if v.as_u64().is_some_and(|n| n >= 1) => {}
        Some(other) => problems.push(format!(
            "policy_version must be an integer >= 1, not {other}"
        )),
        None => problems.push("policy_version is missing".into()),
    }
    match doc.get("provenance_class") {
        Some(Value::String(s)) if s == "platform_attested" => {}
        Some(other) => problems.push(format!(
            "provenance_class must be \"platform_attested\", not {other}"
        )),
        None => problems.push(
            "provenance_class is missing (it must be \"platform_attested\"; the YAML form adds it)"
                .into(),
        ),
    }
    match doc.get("policy_fingerprint") {
        Some(Value::String(_)) => {}
        Some(other) => problems.push(format!(
            "policy_fingerprint must be a string, not {}",
            kind(other)
        )),
        None => problems.push(
            "policy_fingerprint is missing (write it, empty, or compile the YAML form which computes it)"
                .into(),
        ),
    }
    const KNOWN: [&str; 16] = [
        "schema",
        "policy_id",
        "policy_version",
        "tenant_id",
        "provenance_class",
        "name",
        "description",
        "rfc_version",
        "spec_version",
        "scope",
        "instrumentation_requirement",
        "rules",
        "claims",
        "policy_fingerprint",
        "signed_at",
        "signature",
    ];
    for key in doc.keys() {
        if !KNOWN.contains(&key.as_str()) {
            problems.push(format!(
                "unknown top-level field {key:?} (policy.v1 allows no other fields; remove it)"
            ));
        }
    }
    // A policy governs the flows that have one of the scope's actions: the
    // daemon evaluates every configured policy on every idle flow, so a
    // policy without that list (or with a misspelt key, which would be
    // ignored) would judge every flow or none.
    const NEED_ACTIONS: &str = "scope.any_event_action_in is missing: list the actions whose flows this policy governs (a flow is checked when one of its events has one of them)";
    match doc.get("scope") {
        Some(Value::Object(scope)) => {
            for key in scope.keys() {
                if !SCOPE_FIELDS.contains(&key.as_str()) {
                    problems.push(format!(
                        "scope.{key} is not a scope field (known: {}); it would be ignored",
                        SCOPE_FIELDS.join(", ")
                    ));
                }
            }
            match scope.get("any_event_action_in").map(Value::as_array) {
                Some(Some(a))
                    if !a.is_empty()
                        && a.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty())) => {}
                Some(Some(a)) if a.is_empty() => problems.push(
                    "scope.any_event_action_in is empty: list the actions whose flows this policy governs".into(),
                ),
                Some(_) => problems.push(
                    "scope.any_event_action_in must be a list of non-empty action names".into(),
                ),
                None => problems.push(NEED_ACTIONS.into()),
            }
            if let Some(v) = scope.get("ignore_flows_with_no_match")
                && !v.is_boolean()
            {
                problems.push("scope.ignore_flows_with_no_match must be true or false".into());
            }
        }
        Some(other) => problems.push(format!("scope must be an object, not {}", kind(other))),
        None => problems.push(NEED_ACTIONS.into()),
    }
    let rules = match doc.get("rules") {
        Some(Value::Array(rules)) => rules,
        Some(other) => {
            problems.push(format!("rules must be a list, not {}", kind(other)));
            return;
        }
        None => {
            problems.push("rules is missing".into());
            return;
        }
    };
    let mut seen = HashSet::new();
    for (i, rule) in rules.iter().enumerate() {
        let Some(rule) = rule.as_object() else {
            problems.push(format!("rules[{i}] must be an object, not {}", kind(rule)));
            continue;
        };
        let id = rule.get("id").and_then(Value::as_str);
        let known = rule
            .get("category")
            .and_then(Value::as_str)
            .and_then(RuleKind::from_name);
        let at = match (id, known) {
            (Some(id), Some(k)) => format!("rule {id:?} ({})", k.name()),
            (Some(id), None) => format!("rule {id:?}"),
            (None, _) => format!("rules[{i}]"),
        };
        // Name the field as the author wrote it.
        let category_field = if type_rules.contains(&i) {
            "type"
        } else {
            "category"
        };
        match rule.get("id") {
            Some(Value::String(s)) if !s.is_empty() => {
                if !seen.insert(s.as_str()) {
                    problems.push(format!(
                        "{at}: id {s:?} is used by more than one rule; rule ids must be unique"
                    ));
                }
            }
            Some(Value::String(_)) => problems.push(format!("{at}: id is empty")),
            Some(other) => problems.push(format!("{at}: id must be a string, not {}", kind(other))),
            None => problems.push(format!("{at}: id is missing")),
        }
        for key in rule.keys() {
            if !matches!(key.as_str(), "id" | "category" | "severity" | "spec") {
                problems.push(format!(
                    "{at}: field {key:?} belongs under spec (the YAML form moves flat fields there)"
                ));
            }
        }
        match rule.get("severity") {
            None => problems.push(format!(
                "{at}: severity is missing (one of {})",
                SEVERITIES.join(", ")
            )),
            Some(Value::String(s)) if SEVERITIES.contains(&s.as_str()) => {}
            Some(other) => problems.push(format!(
                "{at}: severity {other} is not one of {}",
                SEVERITIES.join(", ")
            )),
        }
        let Some(rule_kind) = known else {
            problems.push(lint_unknown_category(
                &at,
                category_field,
                rule.get("category"),
            ));
            continue;
        };
        let spec = match rule.get("spec") {
            Some(Value::Object(spec)) => spec,
            Some(other) => {
                problems.push(format!("{at}: spec must be an object, not {}", kind(other)));
                continue;
            }
            None => {
                problems.push(format!("{at}: spec is missing"));
                continue;
            }
        };
        rule_kind.lint(&mut Checker::new(&at, spec, problems));
    }
}
