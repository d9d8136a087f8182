//! `value_bound`: the latest attested value of a numeric claim satisfies
//! `operator` `value` (`lt`, `lte`, `gt`, `gte`, `eq`, `ne`).

use serde_json::{Map, Value};

use super::super::policy::kind;
use super::super::reasons::Reason;
use super::context::{Ctx, Verdict, verdict};
use super::{Checker, spec_str};

/// The comparison operators a `value_bound` rule may name.
const OPERATORS: [&str; 6] = ["lt", "lte", "gt", "gte", "eq", "ne"];

/// Checks a `value_bound` rule's spec.
pub(super) fn lint(c: &mut Checker<'_>) {
    let spec = c.spec;
    c.string("claim", true);
    c.string("source_id", false);
    c.allowed(&["claim", "operator", "value", "source_id"]);
    match spec.get("operator") {
        Some(Value::String(op)) if OPERATORS.contains(&op.as_str()) => {}
        Some(other) => c.problem(format!(
            "spec.operator {other} is not one of {}",
            OPERATORS.join(", ")
        )),
        None => c.problem(format!(
            "spec.operator is missing (one of {})",
            OPERATORS.join(", ")
        )),
    }
    match spec.get("value") {
        Some(v) if v.is_number() => {}
        Some(other) => c.problem(format!("spec.value must be a number, not {}", kind(other))),
        None => c.problem("spec.value is missing (the numeric bound)"),
    }
}

/// A comparison `value_bound` evaluates (`neq` is read as `ne`).
#[derive(Clone, Copy)]
enum Operator {
    Lt,
    Lte,
    Gt,
    Gte,
    Eq,
    Ne,
}

impl Operator {
    fn from_name(name: &str) -> Option<Operator> {
        Some(match name {
            "lt" => Operator::Lt,
            "lte" => Operator::Lte,
            "gt" => Operator::Gt,
            "gte" => Operator::Gte,
            "eq" => Operator::Eq,
            "ne" | "neq" => Operator::Ne,
            _ => return None,
        })
    }

    /// `value <op> bound`.
    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Operator::Lt => value < bound,
            Operator::Lte => value <= bound,
            Operator::Gt => value > bound,
            Operator::Gte => value >= bound,
            Operator::Eq => value == bound,
            Operator::Ne => value != bound,
        }
    }
}

/// A `value_bound` rule's spec, as evaluation reads it.
pub(crate) struct ValueBoundSpec<'a> {
    /// `claim` (empty when absent: nothing attests it).
    claim: &'a str,
    /// `source_id`: only attestations from this source count.
    source_id: Option<&'a str>,
    /// `operator` as written (empty when absent), for summaries.
    operator_name: &'a str,
    /// `operator`, when supported.
    operator: Option<Operator>,
    /// `value`, when a finite number.
    value: Option<f64>,
}

impl<'a> ValueBoundSpec<'a> {
    /// Reads `spec` leniently: a field of the wrong type is absent.
    pub(super) fn read(spec: &'a Map<String, Value>) -> ValueBoundSpec<'a> {
        let operator_name = spec_str(spec, "operator").unwrap_or_default();
        ValueBoundSpec {
            claim: spec_str(spec, "claim").unwrap_or_default(),
            source_id: spec_str(spec, "source_id"),
            operator_name,
            operator: Operator::from_name(operator_name),
            value: spec
                .get("value")
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite()),
        }
    }
}

/// Compares the latest attested value of the claim with the bound.
pub(super) fn evaluate(ctx: &Ctx<'_>, spec: &ValueBoundSpec<'_>) -> Verdict {
    let ValueBoundSpec {
        claim,
        source_id,
        operator_name: op,
        operator,
        value,
    } = *spec;
    let Some(operator) = operator else {
        return verdict(
            Reason::InconclusiveValueBoundOperatorUnsupported,
            Vec::new(),
            format!("Operator {op:?} is not supported (lt, lte, gt, gte, eq, ne)."),
        );
    };
    let Some(bound) = value else {
        return verdict(
            Reason::InconclusiveValueBoundBoundInvalid,
            Vec::new(),
            "The rule's value is missing or not a number.".into(),
        );
    };
    let (a, from) =
        match ctx.attested_claim(claim, source_id, Reason::InconclusiveValueBoundClaimMissing) {
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
    let (reason, verb) = if operator.holds(value, bound) {
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
