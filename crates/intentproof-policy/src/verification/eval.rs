//! The evaluator: policy + flow (+ attestations) -> `intentproof.run.v1`.

use intentproof_core::canon::{canonicalize, canonicalize_object_without};
use intentproof_core::merkle::event_merkle_root;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::input::{Attestation, Flow};
use super::policy::Policy;
use super::reasons::Reason;
use super::rules::{Ctx, Rule};
use super::time::parse_rfc3339;

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
            .map(|(i, rule)| finding(&ctx, i, rule))
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

/// The finding of rule `index` of a policy (any JSON value) over the flow
/// in `ctx`.
fn finding(ctx: &Ctx<'_>, index: usize, rule: &Value) -> Finding {
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
    let rule = Rule::read(category, spec);
    let v = rule.evaluate(ctx);
    let rule_category = rule.category().to_owned();
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
