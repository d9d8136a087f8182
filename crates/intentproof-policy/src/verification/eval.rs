//! The evaluator: policy + flow (+ attestations) -> `intentproof.run.v1`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

use intentproof_core::canon::{canonicalize, canonicalize_object_without};
use intentproof_core::merkle::event_merkle_root;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::CATEGORIES;
use super::input::{Attestation, Flow, FlowEvent};
use super::policy::Policy;
use super::reasons::Reason;
use super::time::{human_duration, parse_iso8601_duration, parse_rfc3339};

/// `schema` of a run.
pub const RUN_SCHEMA: &str = "intentproof.run.v1";

/// Top-level run fields left out of `run_fingerprint`.
pub const RUN_FINGERPRINT_EXCLUDED_FIELDS: [&str; 4] =
    ["run_fingerprint", "signature", "started_at", "completed_at"];

/// `sha256:` and 64 zeros: "no build hash known".
pub const ZERO_BUILD_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// A finding's (and a run's) outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The rule holds.
    Pass,
    /// The rule is violated.
    Fail,
    /// The evidence cannot decide.
    Inconclusive,
}

impl Outcome {
    /// `pass`, `fail` or `inconclusive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

/// A rule's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `critical`
    Critical,
    /// `high`
    High,
    /// `medium` (the default)
    Medium,
    /// `low`
    Low,
    /// `info`
    Info,
}

impl Severity {
    /// Parses `critical`, `high`, `medium`, `low` or `info`.
    pub fn from_name(name: &str) -> Option<Severity> {
        Some(match name {
            "critical" => Severity::Critical,
            "high" => Severity::High,
            "medium" => Severity::Medium,
            "low" => Severity::Low,
            "info" => Severity::Info,
            _ => return None,
        })
    }
}

/// How a run is made (who made it, when).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalOptions {
    /// `verifier_version` (default: this crate's version).
    pub verifier_version: String,
    /// `verifier_build_hash` (default: [`ZERO_BUILD_HASH`], "unknown").
    pub verifier_build_hash: String,
    /// `run_id`; default `run_` + 32 hex digits of a digest of the run's
    /// content, so the same inputs give the same id.
    pub run_id: Option<String>,
    /// `started_at`; default the flow's `window.closed_at`, else the latest
    /// event completion, else the epoch (the evaluator reads no clock).
    pub started_at: Option<String>,
    /// `completed_at`; default as `started_at`.
    pub completed_at: Option<String>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            verifier_version: env!("CARGO_PKG_VERSION").to_owned(),
            verifier_build_hash: ZERO_BUILD_HASH.to_owned(),
            run_id: None,
            started_at: None,
            completed_at: None,
        }
    }
}

/// `attestation_set` of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationSet {
    /// Ids of the attestations considered, in input order.
    pub ids: Vec<String>,
    /// RFC 6962 root over the ids (sorted byte-wise), like a bundle's
    /// `attestation_merkle_root`; `sha256("")` when there are none.
    pub merkle_root: String,
}

/// `summary.outcome_counts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutcomeCounts {
    /// Findings that passed.
    pub pass: u64,
    /// Findings that failed.
    pub fail: u64,
    /// Inconclusive findings.
    pub inconclusive: u64,
}

/// `summary.severity_counts`: findings by their rule's severity (all
/// outcomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SeverityCounts {
    /// `critical`
    pub critical: u64,
    /// `high`
    pub high: u64,
    /// `medium`
    pub medium: u64,
    /// `low`
    pub low: u64,
    /// `info`
    pub info: u64,
}

/// `summary` of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Findings by outcome.
    pub outcome_counts: OutcomeCounts,
    /// Findings by severity.
    pub severity_counts: SeverityCounts,
}

impl Summary {
    /// Counts `findings` by outcome and by severity.
    ///
    /// ```
    /// use intentproof_policy::verification::{Outcome, Summary};
    /// let summary = Summary::of(&[]);
    /// assert_eq!(summary.outcome_counts.pass, 0);
    /// assert_eq!(summary.status(), Outcome::Pass);
    /// ```
    pub fn of(findings: &[Finding]) -> Summary {
        let mut summary = Summary::default();
        for f in findings {
            let o = &mut summary.outcome_counts;
            match f.outcome {
                Outcome::Pass => o.pass += 1,
                Outcome::Fail => o.fail += 1,
                Outcome::Inconclusive => o.inconclusive += 1,
            }
            let s = &mut summary.severity_counts;
            match f.severity {
                Severity::Critical => s.critical += 1,
                Severity::High => s.high += 1,
                Severity::Medium => s.medium += 1,
                Severity::Low => s.low += 1,
                Severity::Info => s.info += 1,
            }
        }
        summary
    }

    /// The run status these counts give: fail if any finding failed, else
    /// inconclusive if any was inconclusive, else pass.
    pub fn status(&self) -> Outcome {
        if self.outcome_counts.fail > 0 {
            Outcome::Fail
        } else if self.outcome_counts.inconclusive > 0 {
            Outcome::Inconclusive
        } else {
            Outcome::Pass
        }
    }
}

/// A run's `signature`. The evaluator does not sign: it leaves `value`
/// empty (never a valid signature); a caller holding a key fills it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSignature {
    /// Always `ed25519`.
    pub alg: String,
    /// Signing key id; empty when unsigned.
    pub key_id: String,
    /// Base64 signature; empty when unsigned.
    pub value: String,
}

impl Default for RunSignature {
    fn default() -> Self {
        RunSignature {
            alg: "ed25519".into(),
            key_id: String::new(),
            value: String::new(),
        }
    }
}

/// One finding (`finding.v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Always `platform_attested`.
    pub provenance_class: String,
    /// The rule's id (`rules[i]` when the rule has none).
    pub rule_id: String,
    /// The rule's category, or `unknown` when it is not one of the eight.
    pub rule_category: String,
    /// Outcome (the reason code's first segment).
    pub outcome: Outcome,
    /// The rule's severity (`medium` when absent or unknown).
    pub severity: Severity,
    /// Reason code from `semantics/reasons.json`.
    pub reason: Reason,
    /// Events the finding rests on.
    pub evidence_event_ids: Vec<String>,
    /// Attestations the finding rests on.
    pub evidence_attestation_ids: Vec<String>,
    /// One sentence for people.
    pub human_summary: String,
}

/// A run (`intentproof.run.v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Always `intentproof.run.v1`.
    pub schema: String,
    /// Run id.
    pub run_id: String,
    /// The flow's tenant (else the policy's).
    pub tenant_id: String,
    /// Always `platform_attested`.
    pub provenance_class: String,
    /// The flow's id.
    pub flow_id: String,
    /// The flow's `flow_merkle_root` (else a root over its event ids).
    pub flow_merkle_root: String,
    /// The policy's id.
    pub policy_id: String,
    /// The policy's version.
    pub policy_version: u64,
    /// The fingerprint of the policy content evaluated (computed, not
    /// copied from the declaration).
    pub policy_fingerprint: String,
    /// Verifier version.
    pub verifier_version: String,
    /// Verifier build hash.
    pub verifier_build_hash: String,
    /// Attestations considered.
    pub attestation_set: AttestationSet,
    /// When evaluation started.
    pub started_at: String,
    /// When evaluation completed.
    pub completed_at: String,
    /// `fail` if any finding failed, else `inconclusive` if any was, else
    /// `pass` (also with no findings).
    pub status: Outcome,
    /// Counts.
    pub summary: Summary,
    /// One finding per rule, in rule order.
    pub findings: Vec<Finding>,
    /// sha256 of the JCS of the run minus [`RUN_FINGERPRINT_EXCLUDED_FIELDS`].
    pub run_fingerprint: String,
    /// Signature (empty: unsigned).
    pub signature: RunSignature,
}

impl Run {
    /// The run as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Recomputes `run_fingerprint` from the content.
    pub fn compute_fingerprint(&self) -> String {
        digest_without(&self.to_value(), &RUN_FINGERPRINT_EXCLUDED_FIELDS)
    }
}

fn digest_without(value: &Value, exclude: &[&str]) -> String {
    let bytes = match value {
        Value::Object(o) => canonicalize_object_without(o, exclude).ok(),
        other => canonicalize(other).ok(),
    }
    .unwrap_or_else(|| value.to_string().into_bytes());
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    intentproof_core::v1::sha256_prefixed(&digest)
}

/// True when the flow is in the policy's scope: `scope.any_event_action_in`
/// is absent or empty, or some event's action is in it.
pub fn scope_matches(policy: &Policy, flow: &Flow) -> bool {
    match policy.scope().any_event_action_in {
        None => true,
        Some(list) if list.is_empty() => true,
        Some(list) => flow
            .events
            .iter()
            .any(|e| e.action.as_ref().is_some_and(|a| list.contains(a))),
    }
}

/// Evaluates `policy` over `flow` and `attestations`.
///
/// Pure and total: any policy object is accepted (lint it first with
/// [`Policy::lint`]); what a rule does not say is "not given" (a rule with
/// no `action` matches every event), a rule whose category is not one of
/// the eight yields `inconclusive.unknown.unsupported_rule_category`.
///
/// Scope: when `scope.ignore_flows_with_no_match` is true and no event of
/// the flow is in scope ([`scope_matches`]), the policy does not apply: the
/// run has no findings, so by the run status rule its status is `pass` with
/// all counts zero. Otherwise (the default) every rule is evaluated whether
/// or not the scope matched, as the reference fixtures require.
///
/// Attestations whose `subject.mapping_to.correlation_id` names another
/// correlation than the flow's are left out (and out of `attestation_set`).
pub fn evaluate(
    policy: &Policy,
    flow: &Flow,
    attestations: &[Attestation],
    options: &EvalOptions,
) -> Run {
    let attestations: Vec<&Attestation> = attestations
        .iter()
        .filter(|a| match (&a.correlation_id, &flow.correlation_id) {
            (Some(a), Some(f)) => a == f,
            _ => true,
        })
        .collect();
    let ctx = Ctx::new(&flow.events, &attestations);
    let skip = policy.scope().ignore_flows_with_no_match && !scope_matches(policy, flow);
    let findings: Vec<Finding> = if skip {
        Vec::new()
    } else {
        policy
            .rules()
            .iter()
            .enumerate()
            .map(|(i, rule)| ctx.finding(i, rule))
            .collect()
    };
    let summary = Summary::of(&findings);
    let status = summary.status();
    let ids: Vec<String> = attestations
        .iter()
        .map(|a| a.attestation_id.clone())
        .collect();
    let flow_merkle_root = flow
        .flow_merkle_root
        .clone()
        .filter(|r| is_sha256_ref(r))
        .unwrap_or_else(|| {
            let ids: Vec<&str> = flow.events.iter().map(|e| e.event_id.as_str()).collect();
            event_merkle_root(&ids)
        });
    let default_time = flow
        .closed_at
        .clone()
        .filter(|t| parse_rfc3339(t).is_some())
        .or_else(|| {
            flow.events
                .iter()
                .filter_map(|e| {
                    let s = e.completed_at.as_ref()?;
                    Some((parse_rfc3339(s)?, s))
                })
                .max_by_key(|(t, _)| *t)
                .map(|(_, s)| s.clone())
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned());
    let started_at = options.started_at.clone().unwrap_or(default_time);
    let completed_at = options
        .completed_at
        .clone()
        .unwrap_or_else(|| started_at.clone());
    let policy_fingerprint = policy
        .fingerprint()
        .ok()
        .or_else(|| policy.declared_fingerprint().map(str::to_owned))
        .unwrap_or_default();
    let mut run = Run {
        schema: RUN_SCHEMA.into(),
        run_id: String::new(),
        tenant_id: flow
            .tenant_id
            .clone()
            .or_else(|| policy.tenant_id().map(str::to_owned))
            .unwrap_or_default(),
        provenance_class: "platform_attested".into(),
        flow_id: flow.flow_id.clone(),
        flow_merkle_root,
        policy_id: policy.policy_id().unwrap_or_default().to_owned(),
        policy_version: policy
            .policy_version()
            .filter(|v| *v <= intentproof_core::canon::MAX_SAFE_INTEGER)
            .unwrap_or(1),
        policy_fingerprint,
        verifier_version: options.verifier_version.clone(),
        verifier_build_hash: options.verifier_build_hash.clone(),
        attestation_set: AttestationSet {
            merkle_root: event_merkle_root(&ids),
            ids,
        },
        started_at,
        completed_at,
        status,
        summary,
        findings,
        run_fingerprint: String::new(),
        signature: RunSignature::default(),
    };
    run.run_id = match &options.run_id {
        Some(id) => id.clone(),
        None => {
            let mut exclude = RUN_FINGERPRINT_EXCLUDED_FIELDS.to_vec();
            exclude.push("run_id");
            let d = digest_without(&run.to_value(), &exclude);
            let hex = d.strip_prefix("sha256:").unwrap_or(&d);
            format!("run_{}", hex.get(..32).unwrap_or(hex))
        }
    };
    run.run_fingerprint = run.compute_fingerprint();
    run
}

fn is_sha256_ref(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

// ---------------------------------------------------------------------------
// Evaluation context

/// Before-events and after-events sharing a pairing key.
type Pairs = (Vec<usize>, Vec<usize>);

struct Verdict {
    reason: Reason,
    events: Vec<String>,
    attestations: Vec<String>,
    summary: String,
}

fn verdict(reason: Reason, events: Vec<String>, summary: String) -> Verdict {
    Verdict {
        reason,
        events,
        attestations: Vec::new(),
        summary,
    }
}

struct Ctx<'a> {
    events: &'a [FlowEvent],
    started: Vec<Option<i128>>,
    completed: Vec<Option<i128>>,
    attestations: &'a [&'a Attestation],
}

/// An attribute/status predicate (`where`, `where_predecessor`).
struct Predicate<'a> {
    status: Option<&'a str>,
    attribute: Option<&'a str>,
    equals: Option<&'a Value>,
    one_of: Option<&'a [Value]>,
}

impl<'a> Predicate<'a> {
    fn read(v: Option<&'a Value>) -> Option<Predicate<'a>> {
        let o = v?.as_object()?;
        Some(Predicate {
            status: o.get("status").and_then(Value::as_str),
            attribute: o.get("attribute").and_then(Value::as_str),
            equals: o.get("equals"),
            one_of: o.get("in").and_then(Value::as_array).map(Vec::as_slice),
        })
    }

    fn holds(&self, e: &FlowEvent) -> bool {
        if let Some(s) = self.status
            && e.status.as_deref() != Some(s)
        {
            return false;
        }
        if let Some(attr) = self.attribute {
            let Some(v) = e.attributes.get(attr) else {
                return false;
            };
            if let Some(eq) = self.equals
                && !json_eq(v, eq)
            {
                return false;
            }
            if let Some(list) = self.one_of
                && !list.iter().any(|x| json_eq(v, x))
            {
                return false;
            }
        }
        true
    }
}

/// JSON equality with numbers compared by value (`1 == 1.0`).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn spec_str<'a>(spec: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    spec.get(key).and_then(Value::as_str)
}

fn fmt_action(a: Option<&str>) -> String {
    match a {
        Some(a) => format!("`{a}`"),
        None => "any action".to_owned(),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl<'a> Ctx<'a> {
    fn new(events: &'a [FlowEvent], attestations: &'a [&'a Attestation]) -> Ctx<'a> {
        let t = |s: &Option<String>| s.as_deref().and_then(parse_rfc3339);
        Ctx {
            events,
            started: events.iter().map(|e| t(&e.started_at)).collect(),
            completed: events.iter().map(|e| t(&e.completed_at)).collect(),
            attestations,
        }
    }

    fn finding(&self, index: usize, rule: &Value) -> Finding {
        let empty = Map::new();
        let rule = rule.as_object().unwrap_or(&empty);
        let rule_id = rule
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("rules[{index}]"));
        let severity = rule
            .get("severity")
            .and_then(Value::as_str)
            .and_then(Severity::from_name)
            .unwrap_or(Severity::Medium);
        let category = rule.get("category").and_then(Value::as_str);
        let spec = rule
            .get("spec")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let v = match category {
            Some("required") => self.required(spec),
            Some("forbidden") => self.forbidden(spec),
            Some("ordering") => self.ordering(spec),
            Some("cardinality") => self.cardinality(spec),
            Some("temporal") => self.temporal(spec),
            Some("consensus") => self.consensus(spec),
            Some("value_bound") => self.value_bound(spec),
            Some("claim_match") => self.claim_match(spec),
            other => verdict(
                Reason::InconclusiveUnknownUnsupportedRuleCategory,
                Vec::new(),
                match other {
                    Some(c) => format!(
                        "Rule category {c:?} is not one of {}; the rule was not evaluated.",
                        CATEGORIES.join(", ")
                    ),
                    None => "The rule has no category; it was not evaluated.".to_owned(),
                },
            ),
        };
        let rule_category = match category {
            Some(c) if CATEGORIES.contains(&c) => c.to_owned(),
            _ => "unknown".to_owned(),
        };
        Finding {
            provenance_class: "platform_attested".into(),
            rule_id,
            rule_category,
            outcome: v.reason.outcome(),
            severity,
            reason: v.reason,
            evidence_event_ids: v.events,
            evidence_attestation_ids: v.attestations,
            human_summary: v.summary,
        }
    }

    /// Indexes of events matching `action` (if given) and `pred` (if given).
    fn matching(&self, action: Option<&str>, pred: Option<&Predicate<'_>>) -> Vec<usize> {
        (0..self.events.len())
            .filter(|&i| {
                let e = &self.events[i];
                action.is_none_or(|a| e.action.as_deref() == Some(a))
                    && pred.is_none_or(|p| p.holds(e))
            })
            .collect()
    }

    /// Event order: completion times when both are known, ties (and
    /// unknown times) broken by flow position.
    fn cmp(&self, a: usize, b: usize) -> Ordering {
        match (self.completed[a], self.completed[b]) {
            (Some(x), Some(y)) => x.cmp(&y).then(a.cmp(&b)),
            _ => a.cmp(&b),
        }
    }

    fn precedes(&self, a: usize, b: usize) -> bool {
        a != b && self.cmp(a, b) == Ordering::Less
    }

    fn earliest(&self, idx: &[usize]) -> Option<usize> {
        idx.iter().copied().min_by(|&a, &b| self.cmp(a, b))
    }

    fn sorted(&self, mut idx: Vec<usize>) -> Vec<usize> {
        idx.sort_by(|&a, &b| self.cmp(a, b));
        idx
    }

    fn ids(&self, idx: &[usize]) -> Vec<String> {
        let mut seen = HashSet::new();
        idx.iter()
            .map(|&i| self.events[i].event_id.clone())
            .filter(|id| seen.insert(id.clone()))
            .collect()
    }

    fn required(&self, spec: &Map<String, Value>) -> Verdict {
        let action = spec_str(spec, "action");
        let pred = Predicate::read(spec.get("where"));
        let ids = self.ids(&self.matching(action, pred.as_ref()));
        let n = ids.len();
        let min = spec.get("min").and_then(Value::as_u64).unwrap_or(0);
        let max = spec.get("max").and_then(Value::as_u64);
        let a = fmt_action(action);
        let n64 = n as u64;
        if n64 < min {
            if n == 0 {
                return verdict(
                    Reason::FailRequiredMissing,
                    ids,
                    format!("{a} did not occur (at least {min} required)."),
                );
            }
            return verdict(
                Reason::FailRequiredUnderMin,
                ids,
                format!(
                    "{a} occurred {n} time{} (at least {min} required).",
                    plural(n)
                ),
            );
        }
        if let Some(max) = max.filter(|m| n64 > *m) {
            return verdict(
                Reason::FailRequiredOverMax,
                ids,
                format!(
                    "{a} occurred {n} time{} (at most {max} allowed).",
                    plural(n)
                ),
            );
        }
        verdict(
            Reason::PassRequiredSatisfied,
            ids,
            format!("{a} occurred {n} time{}.", plural(n)),
        )
    }

    fn forbidden(&self, spec: &Map<String, Value>) -> Verdict {
        let action = spec_str(spec, "action");
        let a = fmt_action(action);
        let pred = Predicate::read(spec.get("where"));
        let matches = self.matching(action, pred.as_ref());
        if matches.is_empty() {
            return verdict(
                Reason::PassForbiddenAbsent,
                Vec::new(),
                format!("{a} did not occur."),
            );
        }
        let Some(after) = spec_str(spec, "after") else {
            return verdict(
                Reason::FailForbiddenPresent,
                self.ids(&matches),
                format!(
                    "{a} occurred {} time{}; it is forbidden.",
                    matches.len(),
                    plural(matches.len())
                ),
            );
        };
        let pred_where = Predicate::read(spec.get("where_predecessor"));
        let gates = self.matching(Some(after), pred_where.as_ref());
        if let Some(required) = spec_str(spec, "without_predecessor") {
            // Gated matches: at or after an `after` event (a match may be its
            // own `after` event); each needs a non-failed `required` event
            // completed before it.
            let offending: Vec<usize> = matches
                .iter()
                .copied()
                .filter(|&m| gates.iter().any(|&g| g == m || self.precedes(g, m)))
                .filter(|&m| {
                    !(0..self.events.len()).any(|p| {
                        let e = &self.events[p];
                        e.action.as_deref() == Some(required)
                            && e.status.as_deref() != Some("error")
                            && self.precedes(p, m)
                    })
                })
                .collect();
            if offending.is_empty() {
                return verdict(
                    Reason::PassForbiddenAbsent,
                    Vec::new(),
                    format!("Every {a} after `{after}` was preceded by `{required}`."),
                );
            }
            return verdict(
                Reason::FailForbiddenWithoutPredecessor,
                self.ids(&offending),
                format!(
                    "{a} occurred {} time{} after `{after}` without a preceding `{required}`.",
                    offending.len(),
                    plural(offending.len())
                ),
            );
        }
        let first_gate = self.earliest(&gates);
        let offending: Vec<usize> = match first_gate {
            Some(g) => matches
                .iter()
                .copied()
                .filter(|&m| self.precedes(g, m))
                .collect(),
            None => Vec::new(),
        };
        match (first_gate, offending.is_empty()) {
            (Some(g), false) => {
                let mut evidence = vec![g];
                evidence.extend(&offending);
                verdict(
                    Reason::FailForbiddenAfterPredecessor,
                    self.ids(&evidence),
                    format!(
                        "{a} occurred {} time{} after `{after}` ({}).",
                        offending.len(),
                        plural(offending.len()),
                        self.events[g].event_id
                    ),
                )
            }
            _ => verdict(
                Reason::PassForbiddenAbsent,
                Vec::new(),
                format!("{a} did not occur after `{after}`."),
            ),
        }
    }

    fn ordering(&self, spec: &Map<String, Value>) -> Verdict {
        let before = spec_str(spec, "before");
        let after = spec_str(spec, "after");
        let (b, a) = (fmt_action(before), fmt_action(after));
        let of = |action: Option<&str>| match action {
            Some(x) => self.matching(Some(x), None),
            None => Vec::new(),
        };
        let bs = self.sorted(of(before));
        let afs = self.sorted(of(after));
        if afs.is_empty() {
            return verdict(
                Reason::InconclusiveOrderingAfterMissing,
                self.ids(&bs[..bs.len().min(1)]),
                format!("{a} did not occur, so its order after {b} cannot be checked."),
            );
        }
        if bs.is_empty() {
            return verdict(
                Reason::InconclusiveOrderingBeforeMissing,
                self.ids(&afs[..1]),
                format!("{a} occurred but {b} never did."),
            );
        }
        let all = spec_str(spec, "scope") == Some("all-occurrences");
        let groups: Vec<(Vec<usize>, Vec<usize>)> = match spec_str(spec, "match_by_attribute") {
            None => vec![(bs, afs)],
            Some(attr) => {
                let key = |i: &usize| {
                    self.events[*i]
                        .attributes
                        .get(attr)
                        .map(|v| canonicalize(v).unwrap_or_else(|_| v.to_string().into_bytes()))
                };
                let mut by_key: BTreeMap<Option<Vec<u8>>, Pairs> = BTreeMap::new();
                for i in &bs {
                    if let Some(k) = key(i) {
                        by_key.entry(Some(k)).or_default().0.push(*i);
                    }
                }
                for i in &afs {
                    by_key.entry(key(i)).or_default().1.push(*i);
                }
                let mut groups: Vec<_> = by_key
                    .into_values()
                    .filter(|(_, a)| !a.is_empty())
                    .collect();
                groups.sort_by(|x, y| self.cmp(x.1[0], y.1[0]));
                groups
            }
        };
        let mut pass_evidence = Vec::new();
        for (bs, afs) in groups {
            let pairs: Vec<(Option<usize>, usize)> = if all {
                afs.iter()
                    .enumerate()
                    .map(|(k, &a)| (bs.get(k).copied(), a))
                    .collect()
            } else {
                vec![(bs.first().copied(), afs[0])]
            };
            for (bi, ai) in pairs {
                let Some(bi) = bi else {
                    return verdict(
                        Reason::FailOrderingUnmatchedPair,
                        self.ids(&[ai]),
                        format!(
                            "{a} ({}) has no matching {b} before it.",
                            self.events[ai].event_id
                        ),
                    );
                };
                if !self.precedes(bi, ai) {
                    return verdict(
                        Reason::FailOrderingOutOfOrder,
                        self.ids(&[bi, ai]),
                        format!(
                            "{a} ({}) completed before {b} ({}).",
                            self.events[ai].event_id, self.events[bi].event_id
                        ),
                    );
                }
                pass_evidence.extend([bi, ai]);
            }
        }
        verdict(
            Reason::PassOrderingSatisfied,
            self.ids(&pass_evidence),
            format!("{b} completed before {a}."),
        )
    }

    fn cardinality(&self, spec: &Map<String, Value>) -> Verdict {
        let action = spec_str(spec, "action");
        let a = fmt_action(action);
        let pred = Predicate::read(spec.get("where"));
        let matched = self.matching(action, pred.as_ref());
        let ids = self.ids(&matched);
        let n = if spec_str(spec, "count_basis") == Some("raw") {
            matched.len()
        } else {
            ids.len()
        };
        let n64 = n as u64;
        let counted = format!("{a} occurred {n} time{}", plural(n));
        if let Some(e) = spec.get("exactly").and_then(Value::as_u64) {
            return if n64 == e {
                verdict(
                    Reason::PassCardinalitySatisfied,
                    ids,
                    format!("{counted}, exactly as required."),
                )
            } else {
                verdict(
                    Reason::FailCardinalityNotExact,
                    ids,
                    format!("{counted}; exactly {e} required."),
                )
            };
        }
        let min = spec.get("min").and_then(Value::as_u64);
        let max = spec.get("max").and_then(Value::as_u64);
        if let (Some(lo), Some(hi)) = (min, max)
            && lo == hi
            && n64 != lo
        {
            return verdict(
                Reason::FailCardinalityOutOfRange,
                ids,
                format!("{counted}; the range min = max = {lo} requires exactly {lo}."),
            );
        }
        if let Some(lo) = min.filter(|lo| n64 < *lo) {
            return verdict(
                Reason::FailCardinalityUnderMin,
                ids,
                format!("{counted}; at least {lo} required."),
            );
        }
        if let Some(hi) = max.filter(|hi| n64 > *hi) {
            return verdict(
                Reason::FailCardinalityOverMax,
                ids,
                format!("{counted}; at most {hi} allowed."),
            );
        }
        verdict(
            Reason::PassCardinalitySatisfied,
            ids,
            format!("{counted}, within bounds."),
        )
    }

    fn temporal(&self, spec: &Map<String, Value>) -> Verdict {
        let end = |k: &str| {
            let o = spec.get(k).and_then(Value::as_object);
            let action = o.and_then(|o| o.get("action")).and_then(Value::as_str);
            let started =
                o.and_then(|o| o.get("anchor")).and_then(Value::as_str) == Some("started_at");
            (action, started)
        };
        let (from, from_started) = end("from");
        let (to, to_started) = end("to");
        let dur = |k: &str| -> Result<Option<i128>, String> {
            match spec.get(k) {
                None => Ok(None),
                Some(v) => v
                    .as_str()
                    .and_then(parse_iso8601_duration)
                    .map(Some)
                    .ok_or_else(|| format!("spec.{k} {v} is not an ISO 8601 duration")),
            }
        };
        let (min, max, tol) = match (dur("min"), dur("max"), dur("clock_skew_tolerance")) {
            (Ok(min), Ok(max), Ok(tol)) => (min, max, tol),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                return verdict(
                    Reason::InconclusiveTemporalDurationInvalid,
                    Vec::new(),
                    format!("{e}; the window cannot be evaluated."),
                );
            }
        };
        if min.is_none() && max.is_none() {
            return verdict(
                Reason::InconclusiveTemporalDurationInvalid,
                Vec::new(),
                "The rule gives neither max nor min; the window cannot be evaluated.".into(),
            );
        }
        let anchor = |action: Option<&str>, started: bool| -> Option<(usize, i128)> {
            let action = action?;
            self.matching(Some(action), None)
                .into_iter()
                .filter_map(|i| {
                    let t = if started {
                        self.started[i]
                    } else {
                        self.completed[i]
                    };
                    Some((i, t?))
                })
                .min_by_key(|&(i, t)| (t, i))
        };
        let (fa, ta) = (anchor(from, from_started), anchor(to, to_started));
        let (f, t) = match (fa, ta) {
            (Some(f), Some(t)) => (f, t),
            _ => {
                let found: Vec<usize> = [fa, ta].into_iter().flatten().map(|(i, _)| i).collect();
                let missing = if fa.is_none() {
                    fmt_action(from)
                } else {
                    fmt_action(to)
                };
                return verdict(
                    Reason::InconclusiveTemporalMissingAnchor,
                    self.ids(&found),
                    format!("No timed {missing} event anchors the window."),
                );
            }
        };
        let d = t.1 - f.1;
        let ev = self.ids(&[f.0, t.0]);
        let (fs, ts) = (fmt_action(from), fmt_action(to));
        if d < 0 {
            if let Some(tol) = tol.filter(|tol| -d <= *tol) {
                return verdict(
                    Reason::InconclusiveTemporalClockSkewWithinTolerance,
                    ev,
                    format!(
                        "{ts} is {} before {fs}, within the clock-skew tolerance of {}.",
                        human_duration(-d),
                        human_duration(tol)
                    ),
                );
            }
            return verdict(
                Reason::FailTemporalNegativeInterval,
                ev,
                format!("{ts} is {} before {fs}.", human_duration(-d)),
            );
        }
        if let Some(max) = max.filter(|m| d > *m) {
            return verdict(
                Reason::FailTemporalExceededMax,
                ev,
                format!(
                    "{ts} came {} after {fs}; the maximum is {}.",
                    human_duration(d),
                    human_duration(max)
                ),
            );
        }
        if let Some(min) = min.filter(|m| d < *m) {
            return verdict(
                Reason::FailTemporalBelowMin,
                ev,
                format!(
                    "{ts} came {} after {fs}; the minimum is {}.",
                    human_duration(d),
                    human_duration(min)
                ),
            );
        }
        verdict(
            Reason::PassTemporalWithinWindow,
            ev,
            format!(
                "{ts} came {} after {fs}, within the window.",
                human_duration(d)
            ),
        )
    }

    /// The latest attestation of `claim` (from `source`, if given): latest
    /// `received_at`, then latest in input order.
    fn latest_attestation(&self, claim: &str, source: Option<&str>) -> Option<&'a Attestation> {
        self.attestations
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                a.claim.as_deref() == Some(claim)
                    && source.is_none_or(|s| a.source_id.as_deref() == Some(s))
            })
            .max_by_key(|(i, a)| (a.received_at.as_deref().and_then(parse_rfc3339), *i))
            .map(|(_, a)| *a)
    }

    /// The latest attestation of the rule's `claim` (from its `source_id`,
    /// when given) and the " from `source`" phrase for summaries; when
    /// there is none, the `missing` verdict that says so.
    fn attested_claim(
        &self,
        spec: &Map<String, Value>,
        missing: Reason,
    ) -> Result<(&'a Attestation, String), Verdict> {
        let claim = spec_str(spec, "claim").unwrap_or_default();
        let source = spec_str(spec, "source_id");
        let from = source.map(|s| format!(" from `{s}`")).unwrap_or_default();
        match self
            .latest_attestation(claim, source)
            .filter(|_| !claim.is_empty())
        {
            Some(a) => Ok((a, from)),
            None => Err(verdict(
                missing,
                Vec::new(),
                format!("No attestation of `{claim}`{from}."),
            )),
        }
    }

    fn consensus(&self, spec: &Map<String, Value>) -> Verdict {
        let Some(claim) = spec_str(spec, "claim").filter(|c| !c.is_empty()) else {
            return verdict(
                Reason::InconclusiveConsensusClaimMissing,
                Vec::new(),
                "The consensus rule names no claim.".into(),
            );
        };
        let expected = spec
            .get("expected_value")
            .cloned()
            .unwrap_or(Value::Bool(true));
        let require_signed = spec.get("require_signed_sources") == Some(&Value::Bool(true));
        let sources: &[Value] = spec
            .get("sources")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let mut votes: Vec<Option<Value>> = Vec::new();
        let mut ev_events = Vec::new();
        let mut ev_atts: Vec<String> = Vec::new();
        let mut internal = 0usize;
        let mut unsigned = Vec::new();
        for s in sources {
            let kind = s.get("kind").and_then(Value::as_str);
            if kind == Some("intentproof_action") {
                internal += 1;
                let action = s.get("action").and_then(Value::as_str);
                let pred = Predicate::read(s.get("where"));
                let m = match action {
                    Some(a) => self.matching(Some(a), pred.as_ref()),
                    None => Vec::new(),
                };
                // Present: the claim attribute of the latest match, else true.
                // Absent: false ("it did not happen").
                let vote = match m.iter().copied().max_by(|&a, &b| self.cmp(a, b)) {
                    Some(last) => self.events[last]
                        .attributes
                        .get(claim)
                        .cloned()
                        .unwrap_or(Value::Bool(true)),
                    None => Value::Bool(false),
                };
                ev_events.extend(m);
                votes.push(Some(vote));
            } else {
                let source = s.get("source_id").and_then(Value::as_str);
                match self.latest_attestation(claim, source) {
                    Some(a) => {
                        if !a.source_signed {
                            unsigned.push(a.attestation_id.clone());
                        }
                        ev_atts.push(a.attestation_id.clone());
                        votes.push(Some(a.claim_value.clone().unwrap_or(Value::Null)));
                    }
                    None => votes.push(None),
                }
            }
        }
        let ev_events = self.ids(&ev_events);
        let with = |reason, summary: String, events: Vec<String>, atts: Vec<String>| Verdict {
            reason,
            events,
            attestations: atts,
            summary,
        };
        if require_signed && !unsigned.is_empty() {
            return with(
                Reason::InconclusiveConsensusSourceStale,
                format!(
                    "Attestation(s) {} of `{claim}` carry no source signature, which the rule requires.",
                    unsigned.join(", ")
                ),
                ev_events,
                ev_atts,
            );
        }
        let live: Vec<&Value> = votes.iter().flatten().collect();
        if internal == 0 && live.is_empty() {
            return with(
                Reason::InconclusiveConsensusExternalUnavailable,
                format!(
                    "No external source attested `{claim}` and the rule has no internal source."
                ),
                ev_events,
                ev_atts,
            );
        }
        if let Some(first) = live.first()
            && live.iter().any(|v| !json_eq(v, first))
        {
            let shown: Vec<String> = live.iter().map(|v| v.to_string()).collect();
            return with(
                Reason::FailConsensusDisagreement,
                format!("Sources disagree about `{claim}`: {}.", shown.join(" vs ")),
                ev_events,
                ev_atts,
            );
        }
        let agree = live.iter().filter(|v| json_eq(v, &expected)).count();
        let total = sources.len();
        let threshold = spec.get("threshold").and_then(Value::as_object);
        let flag = |k: &str| threshold.and_then(|t| t.get(k)) == Some(&Value::Bool(true));
        let (needed, rule) = if let Some(n) = threshold
            .and_then(|t| t.get("agree_at_least"))
            .and_then(Value::as_u64)
        {
            (
                usize::try_from(n).unwrap_or(usize::MAX),
                format!("at least {n}"),
            )
        } else if flag("majority") {
            (total / 2 + 1, format!("a majority of {total}"))
        } else {
            (total.max(1), format!("all {total}"))
        };
        if agree >= needed {
            with(
                Reason::PassConsensusThresholdMet,
                format!(
                    "{agree} of {total} source{} agree that `{claim}` is {expected} ({rule} needed).",
                    plural(total)
                ),
                ev_events,
                ev_atts,
            )
        } else {
            with(
                Reason::FailConsensusThresholdUnmet,
                format!(
                    "{agree} of {total} source{} agree that `{claim}` is {expected}; {rule} needed.",
                    plural(total)
                ),
                ev_events,
                ev_atts,
            )
        }
    }

    fn value_bound(&self, spec: &Map<String, Value>) -> Verdict {
        let claim = spec_str(spec, "claim").unwrap_or_default();
        let op = spec_str(spec, "operator").unwrap_or_default();
        let cmp: fn(f64, f64) -> bool = match op {
            "lt" => |a, b| a < b,
            "lte" => |a, b| a <= b,
            "gt" => |a, b| a > b,
            "gte" => |a, b| a >= b,
            "eq" => |a, b| a == b,
            "ne" | "neq" => |a, b| a != b,
            _ => {
                return verdict(
                    Reason::InconclusiveValueBoundOperatorUnsupported,
                    Vec::new(),
                    format!("Operator {op:?} is not supported (lt, lte, gt, gte, eq, ne)."),
                );
            }
        };
        let Some(bound) = spec
            .get("value")
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite())
        else {
            return verdict(
                Reason::InconclusiveValueBoundBoundInvalid,
                Vec::new(),
                "The rule's value is missing or not a number.".into(),
            );
        };
        let (a, from) = match self.attested_claim(spec, Reason::InconclusiveValueBoundClaimMissing)
        {
            Ok(found) => found,
            Err(missing) => return missing,
        };
        let atts = vec![a.attestation_id.clone()];
        let value = match &a.claim_value {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok().filter(|v| v.is_finite()),
            _ => None,
        };
        let Some(value) = value else {
            return Verdict {
                reason: Reason::InconclusiveValueBoundClaimMissing,
                events: Vec::new(),
                attestations: atts,
                summary: format!("The attested `{claim}`{from} is not a number."),
            };
        };
        let (reason, verb) = if cmp(value, bound) {
            (Reason::PassValueBoundSatisfied, "satisfies")
        } else {
            (Reason::FailValueBoundOutOfRange, "violates")
        };
        Verdict {
            reason,
            events: Vec::new(),
            attestations: atts,
            summary: format!("`{claim}`{from} is {value}, which {verb} {op} {bound}."),
        }
    }

    fn claim_match(&self, spec: &Map<String, Value>) -> Verdict {
        let claim = spec_str(spec, "claim").unwrap_or_default();
        let Some(expected) = spec.get("expected_value") else {
            return verdict(
                Reason::InconclusiveClaimMatchExpectedMissing,
                Vec::new(),
                "The rule gives no expected_value.".into(),
            );
        };
        let (a, from) = match self.attested_claim(spec, Reason::InconclusiveClaimMatchClaimMissing)
        {
            Ok(found) => found,
            Err(missing) => return missing,
        };
        let atts = vec![a.attestation_id.clone()];
        let with = |reason, summary| Verdict {
            reason,
            events: Vec::new(),
            attestations: atts.clone(),
            summary,
        };
        if spec.get("require_signed") == Some(&Value::Bool(true)) && !a.source_signed {
            return with(
                Reason::InconclusiveClaimMatchSourceUnsigned,
                format!(
                    "The attestation of `{claim}`{from} carries no source signature, which the rule requires."
                ),
            );
        }
        let got = a.claim_value.clone().unwrap_or(Value::Null);
        if json_eq(&got, expected) {
            with(
                Reason::PassClaimMatchMatched,
                format!("`{claim}`{from} is {got}, as expected."),
            )
        } else {
            with(
                Reason::FailClaimMatchMismatch,
                format!("`{claim}`{from} is {got}; expected {expected}."),
            )
        }
    }
}
