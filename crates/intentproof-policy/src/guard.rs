//! Guard decisions: whether a call may reach its upstream, decided before
//! it is forwarded. The MCP relay (stdio and HTTP) and the HTTP proxy ask
//! the same [`decide`]; each records the decision and answers the agent.
//!
//! A decision engine with no I/O: its inputs are the call (action and
//! arguments), the open plan of the call's correlation and how many calls
//! each of its steps has had; its output is a [`Decision`]. Under
//! `enforce = "plan"` a call is allowed when a step of the open plan covers
//! it: the step names its action, has calls left (`max_calls`), and every
//! one of its constraints holds on the arguments.
//!
//! Constraints are a small language, one comparison per string:
//! `<path> <op> <literal>`, where `path` is a dotted member path into the
//! call's arguments (`amount_cents`, `customer.tier`, `items.0.qty`), `op`
//! one of `==`, `!=`, `<`, `<=`, `>`, `>=`, and `literal` JSON (a number, a
//! string in double quotes, `true`, `false`, `null`). `==` and `!=` compare
//! JSON values; the ordering operators hold only between two numbers. A
//! path the arguments do not have makes every comparison but `!=` false.
//!
//! What it does not do: record anything, talk to the agent or the
//! upstream, or keep state: the caller counts a step's calls (one per
//! allowed call) and hands the counts in.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod approval;
pub mod tools;

pub use approval::ApprovalRule;
pub use tools::{OnToolChange, ToolPin};

/// Most constraints on one step.
pub const MAX_CONSTRAINTS: usize = 16;
/// Longest constraint text, in bytes.
pub const MAX_CONSTRAINT_BYTES: usize = 512;

/// The JSON-RPC error code an MCP agent gets for a refused call (in the
/// range JSON-RPC leaves to servers).
pub const REFUSED_CODE: i64 = -32010;
/// `error.name` of a refused call's event: refused by policy, never a tool
/// failure.
pub const REFUSED_ERROR_NAME: &str = "RefusedByPolicy";
/// Attribute of a refused call's event: the rule that refused it.
pub const RULE_ATTRIBUTE: &str = "intentproof.guard.rule";
/// Attribute of a guarded call's event: `allowed` or `refused`.
pub const DECISION_ATTRIBUTE: &str = "intentproof.guard.decision";
/// Attribute of a guarded call's event: the fingerprint of what decided.
pub const FINGERPRINT_ATTRIBUTE: &str = "intentproof.guard.fingerprint";

/// Whether an event with these attributes is a call the guard refused:
/// it never reached its upstream, so it is evidence of the refusal and not
/// a call that ran (findings and plan policies skip it).
pub fn refused(attributes: &serde_json::Map<String, Value>) -> bool {
    attributes.get(DECISION_ATTRIBUTE).and_then(Value::as_str) == Some("refused")
}

/// What a server or route enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforce {
    /// Record only (the default).
    #[default]
    Off,
    /// Refuse a call no step of its correlation's open plan covers.
    Plan,
}

/// A comparison of [`Constraint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// One constraint on a call's arguments: `path op literal`.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    /// Member names from the arguments' root.
    pub path: Vec<String>,
    /// The comparison.
    pub op: Op,
    /// What the member is compared with.
    pub value: Value,
}

impl Constraint {
    /// Parses `amount_cents <= 5000`. The error says what is wrong and
    /// what to write.
    pub fn parse(text: &str) -> Result<Constraint, String> {
        if text.len() > MAX_CONSTRAINT_BYTES {
            return Err(format!(
                "a constraint is longer than {MAX_CONSTRAINT_BYTES} bytes"
            ));
        }
        let usage = "write `<path> <op> <value>`, e.g. `amount_cents <= 5000` or `currency == \"EUR\"` (op: == != < <= > >=)";
        // The first operator outside the path: paths hold no operator
        // characters, so the earliest of them starts the operator.
        let at = text
            .find(['=', '!', '<', '>'])
            .ok_or_else(|| format!("{text:?} has no comparison: {usage}"))?;
        let path = text[..at].trim();
        let rest = &text[at..];
        let (op, literal) = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .iter()
        .find_map(|(sign, op)| rest.strip_prefix(sign).map(|r| (*op, r.trim())))
        .ok_or_else(|| format!("{text:?}: unknown comparison; {usage}"))?;
        if path.is_empty()
            || !path.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            })
        {
            return Err(format!(
                "{text:?}: the path {path:?} must be member names joined by dots (letters, digits, _ and -); {usage}"
            ));
        }
        let value: Value = serde_json::from_str(literal).map_err(|_| {
            format!("{text:?}: {literal:?} is not a JSON value (quote strings: \"EUR\"); {usage}")
        })?;
        if matches!(value, Value::Array(_) | Value::Object(_)) {
            return Err(format!(
                "{text:?}: compare with a number, a string, true, false or null; {usage}"
            ));
        }
        if !matches!(op, Op::Eq | Op::Ne) && !value.is_number() {
            return Err(format!("{text:?}: {} compares numbers; {usage}", op.text()));
        }
        Ok(Constraint {
            path: path.split('.').map(str::to_owned).collect(),
            op,
            value,
        })
    }

    /// Whether `arguments` satisfy it. A member they do not have
    /// satisfies only `!=`; an ordering against a non-number fails.
    pub fn holds(&self, arguments: &Value) -> bool {
        self.evaluate(arguments).unwrap_or(self.op == Op::Ne)
    }

    /// Whether `arguments` satisfy it; `None` when it cannot be told (the
    /// member is missing, or an ordering meets a non-number). Plan bounds
    /// read that as "out of bounds"; approval rules as "ask a person".
    pub fn evaluate(&self, arguments: &Value) -> Option<bool> {
        let found = member(arguments, &self.path)?;
        Some(match self.op {
            Op::Eq => same(found, &self.value),
            Op::Ne => !same(found, &self.value),
            op => {
                let (a, b) = (found.as_f64()?, self.value.as_f64()?);
                match op {
                    Op::Lt => a < b,
                    Op::Le => a <= b,
                    Op::Gt => a > b,
                    _ => a >= b,
                }
            }
        })
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.path.join("."),
            self.op.text(),
            self.value
        )
    }
}

/// JSON equality, numbers by value (`5000` equals `5000.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

/// What a plan step allows: how many calls, and on which arguments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepBounds {
    /// At most this many calls (none: no limit).
    pub max_calls: Option<u32>,
    /// All must hold on a call's arguments.
    pub constraints: Vec<Constraint>,
}

/// One step as the guard sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardStep {
    /// The action it calls (`mcp.<server>.<tool>`, `http.<route>...`).
    pub action: String,
    /// Its bounds.
    pub bounds: StepBounds,
}

/// The open plan of a call's correlation.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardPlan<'a> {
    /// Its id.
    pub plan_id: &'a str,
    /// Its steps.
    pub steps: &'a [GuardStep],
    /// Calls made so far per step (same length as `steps`; missing: 0).
    pub calls: &'a [u32],
}

/// One call about to be forwarded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Call<'a> {
    /// Its action.
    pub action: &'a str,
    /// Its arguments (MCP `arguments`; an HTTP route's JSON body, or null).
    pub arguments: &'a Value,
    /// The step the agent said this call is (MCP `_meta`
    /// `intentproof/planStep`), when it said.
    pub step: Option<usize>,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule: `plan.none` (no open plan), `plan.not_covered` (no step
    /// calls this action), `plan.max_calls` (its steps have no calls
    /// left), `plan.constraint` (an argument is out of bounds); callers add
    /// `batch` (a call inside a JSON-RPC batch, which the MCP relay refuses
    /// whole on a guarded server).
    pub rule: &'static str,
    /// For people: which plan and why, and how to go on.
    pub message: String,
}

/// What happens to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward it: it is step `step` (0-based) of the plan, or not guarded
    /// (`None`).
    Allow {
        /// The step that covers it.
        step: Option<usize>,
    },
    /// Answer the agent with an error; the upstream never sees it.
    Refuse(Refusal),
    /// Hold it until a person approves it (then forward it as step
    /// `step`) or denies it; approval rule `rule` (an index) matched.
    Hold {
        /// The step that covers it, as for `Allow`.
        step: Option<usize>,
        /// The approval rule that matched.
        rule: usize,
    },
}

/// Everything configured that decides a server's (or route's) calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules<'a> {
    /// Plan enforcement.
    pub enforce: Enforce,
    /// What a changed tool meets.
    pub on_tool_change: OnToolChange,
    /// Calls that wait for a person.
    pub approvals: &'a [ApprovalRule],
}

/// Decides `call` under every configured rule, in this order: a changed
/// tool ([`tools::decide`]), the plan ([`decide`]), then approval (a call
/// the first two allow and an approval rule matches is held).
pub fn judge(
    rules: &Rules<'_>,
    call: Call<'_>,
    plan: Option<&GuardPlan<'_>>,
    pin: ToolPin,
) -> Decision {
    if let Some(refusal) = tools::decide(rules.on_tool_change, call.action, pin) {
        return Decision::Refuse(refusal);
    }
    match decide(rules.enforce, call, plan) {
        Decision::Allow { step } => {
            match approval::matching(rules.approvals, call.action, call.arguments) {
                Some(rule) => Decision::Hold { step, rule },
                None => Decision::Allow { step },
            }
        }
        other => other,
    }
}

/// Decides `call` under `enforce`, given its correlation's open `plan`.
pub fn decide(enforce: Enforce, call: Call<'_>, plan: Option<&GuardPlan<'_>>) -> Decision {
    if enforce == Enforce::Off {
        return Decision::Allow { step: None };
    }
    let Some(plan) = plan else {
        return Decision::Refuse(Refusal {
            rule: "plan.none",
            message: format!(
                "{} was refused: calls here must follow a declared plan, and none is open for this correlation; declare one first (the plan tool, or POST /v1/plans) with a step for this call",
                call.action
            ),
        });
    };
    let candidates: Vec<usize> = plan
        .steps
        .iter()
        .enumerate()
        .filter(|(i, step)| step.action == call.action && call.step.is_none_or(|s| s == *i))
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        let listed: Vec<&str> = plan.steps.iter().map(|s| s.action.as_str()).collect();
        return Decision::Refuse(Refusal {
            rule: "plan.not_covered",
            message: match call.step {
                Some(step) => format!(
                    "{} was refused: step {} of plan {} is not this call (the plan's steps: {}); call it without a step number, or declare a plan that has it",
                    call.action,
                    step + 1,
                    plan.plan_id,
                    listed.join(", ")
                ),
                None => format!(
                    "{} was refused: no step of plan {} calls it (its steps: {}); declare a new plan that includes it",
                    call.action,
                    plan.plan_id,
                    listed.join(", ")
                ),
            },
        });
    }
    let mut exhausted = None;
    let mut out_of_bounds = None;
    for &i in &candidates {
        let bounds = &plan.steps[i].bounds;
        let made = plan.calls.get(i).copied().unwrap_or(0);
        if bounds.max_calls.is_some_and(|max| made >= max) {
            exhausted.get_or_insert((i, made));
            continue;
        }
        match bounds.constraints.iter().find(|c| !c.holds(call.arguments)) {
            None => return Decision::Allow { step: Some(i) },
            Some(failed) => {
                out_of_bounds.get_or_insert((i, failed));
            }
        }
    }
    match (out_of_bounds, exhausted) {
        (Some((i, failed)), _) => Decision::Refuse(Refusal {
            rule: "plan.constraint",
            message: format!(
                "{} was refused: step {} of plan {} allows it only when {} (the arguments have {}); call it within the plan's bounds, or declare a new plan",
                call.action,
                i + 1,
                plan.plan_id,
                failed,
                describe(call.arguments, &failed.path)
            ),
        }),
        (None, Some((i, made))) => Decision::Refuse(Refusal {
            rule: "plan.max_calls",
            message: format!(
                "{} was refused: step {} of plan {} allows {} call(s) and {made} were made; declare a new plan for more",
                call.action,
                i + 1,
                plan.plan_id,
                plan.steps[i].bounds.max_calls.unwrap_or(0),
            ),
        }),
        // Every candidate either returned Allow or set one of the two.
        (None, None) => Decision::Allow { step: None },
    }
}

/// The member of `arguments` at the dotted `path` (array items by index).
fn member<'a>(arguments: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(arguments, |at, part| match at {
        Value::Object(map) => map.get(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// `amount_cents = 9000`, or `no amount_cents`.
fn describe(arguments: &Value, path: &[String]) -> String {
    match member(arguments, path) {
        Some(value) => format!("{} = {value}", path.join(".")),
        None => format!("no {}", path.join(".")),
    }
}

/// The fingerprint of what a plan enforces: `sha256:` + hex of the JCS of
/// `{"enforce": "plan", "plan_id", "steps": [{"action", "max_calls",
/// "constraints"}]}`. Two decisions with the same fingerprint were made
/// under the same rules.
pub fn fingerprint(plan_id: &str, steps: &[GuardStep]) -> String {
    let steps: Vec<Value> = steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "action": s.action,
                "max_calls": s.bounds.max_calls,
                "constraints": s.bounds.constraints.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    digest_of(&serde_json::json!({"enforce": "plan", "plan_id": plan_id, "steps": steps}))
}

/// `sha256:` + hex of the SHA-256 of `doc`'s JCS form.
fn digest_of(doc: &Value) -> String {
    use sha2::{Digest, Sha256};
    let bytes = intentproof_core::canon::canonicalize(doc).unwrap_or_default();
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    intentproof_core::v1::sha256_prefixed(&digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(action: &str, max_calls: Option<u32>, constraints: &[&str]) -> GuardStep {
        GuardStep {
            action: action.into(),
            bounds: StepBounds {
                max_calls,
                constraints: constraints
                    .iter()
                    .map(|c| Constraint::parse(c).unwrap_or_else(|e| panic!("{e}")))
                    .collect(),
            },
        }
    }

    fn call<'a>(action: &'a str, arguments: &'a Value) -> Call<'a> {
        Call {
            action,
            arguments,
            step: None,
        }
    }

    const REFUND: &str = "mcp.payments.refund_payment";
    const RECEIPT: &str = "mcp.payments.send_receipt_email";
    const LOOKUP: &str = "mcp.payments.lookup_order";

    fn refused(decision: Decision) -> Refusal {
        match decision {
            Decision::Refuse(r) => r,
            other => panic!("allowed: {other:?}"),
        }
    }

    #[test]
    fn off_allows_everything_and_plan_refuses_without_a_plan() {
        let args = json!({});
        assert_eq!(
            decide(Enforce::Off, call(LOOKUP, &args), None),
            Decision::Allow { step: None }
        );
        let r = refused(decide(Enforce::Plan, call(LOOKUP, &args), None));
        assert_eq!(r.rule, "plan.none");
        assert!(r.message.contains("declare one first"), "{}", r.message);
    }

    #[test]
    fn a_call_no_step_covers_is_refused_and_a_covered_one_allowed() {
        let steps = [
            step(REFUND, Some(1), &["amount_cents <= 5000"]),
            step(RECEIPT, None, &[]),
        ];
        let plan = GuardPlan {
            plan_id: "p1",
            steps: &steps,
            calls: &[0, 0],
        };
        let args = json!({"order_id": "ORD-1042"});
        let r = refused(decide(Enforce::Plan, call(LOOKUP, &args), Some(&plan)));
        assert_eq!(r.rule, "plan.not_covered");
        assert_eq!(
            r.message,
            "mcp.payments.lookup_order was refused: no step of plan p1 calls it (its steps: mcp.payments.refund_payment, mcp.payments.send_receipt_email); declare a new plan that includes it"
        );
        let ok = json!({"amount_cents": 4999});
        assert_eq!(
            decide(Enforce::Plan, call(REFUND, &ok), Some(&plan)),
            Decision::Allow { step: Some(0) }
        );
        assert_eq!(
            decide(Enforce::Plan, call(RECEIPT, &args), Some(&plan)),
            Decision::Allow { step: Some(1) }
        );
    }

    #[test]
    fn max_calls_and_argument_bounds_refuse() {
        let steps = [step(
            REFUND,
            Some(1),
            &["amount_cents <= 5000", "currency == \"EUR\""],
        )];
        let fresh = GuardPlan {
            plan_id: "p1",
            steps: &steps,
            calls: &[0],
        };
        let over = json!({"amount_cents": 9000, "currency": "EUR"});
        let r = refused(decide(Enforce::Plan, call(REFUND, &over), Some(&fresh)));
        assert_eq!(r.rule, "plan.constraint");
        assert_eq!(
            r.message,
            "mcp.payments.refund_payment was refused: step 1 of plan p1 allows it only when amount_cents <= 5000 (the arguments have amount_cents = 9000); call it within the plan's bounds, or declare a new plan"
        );
        let usd = json!({"amount_cents": 10, "currency": "USD"});
        assert_eq!(
            refused(decide(Enforce::Plan, call(REFUND, &usd), Some(&fresh))).rule,
            "plan.constraint"
        );
        let used = GuardPlan {
            calls: &[1],
            ..fresh.clone()
        };
        let ok = json!({"amount_cents": 10, "currency": "EUR"});
        let r = refused(decide(Enforce::Plan, call(REFUND, &ok), Some(&used)));
        assert_eq!(r.rule, "plan.max_calls");
        assert_eq!(
            r.message,
            "mcp.payments.refund_payment was refused: step 1 of plan p1 allows 1 call(s) and 1 were made; declare a new plan for more"
        );
    }

    #[test]
    fn a_second_step_of_the_same_action_takes_over() {
        let steps = [step(REFUND, Some(1), &[]), step(REFUND, Some(1), &[])];
        let plan = GuardPlan {
            plan_id: "p",
            steps: &steps,
            calls: &[1, 0],
        };
        let args = json!({});
        assert_eq!(
            decide(Enforce::Plan, call(REFUND, &args), Some(&plan)),
            Decision::Allow { step: Some(1) }
        );
        // An explicit step is the only one considered.
        let pinned = Call {
            step: Some(0),
            ..call(REFUND, &args)
        };
        assert_eq!(
            refused(decide(Enforce::Plan, pinned, Some(&plan))).rule,
            "plan.max_calls"
        );
    }

    #[test]
    fn constraints_parse_strictly_and_compare_by_value() {
        let c = Constraint::parse("customer.tier == \"gold\"").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.holds(&json!({"customer": {"tier": "gold"}})));
        assert!(!c.holds(&json!({"customer": {"tier": "basic"}})));
        assert!(!c.holds(&json!({})));
        let n = Constraint::parse("items.0.qty>=2").unwrap_or_else(|e| panic!("{e}"));
        assert!(n.holds(&json!({"items": [{"qty": 2.0}]})));
        assert!(
            !n.holds(&json!({"items": [{"qty": "3"}]})),
            "a string is not a number"
        );
        let ne = Constraint::parse("mode != \"live\"").unwrap_or_else(|e| panic!("{e}"));
        assert!(ne.holds(&json!({})), "a missing member is not equal");
        assert!(
            Constraint::parse("amount == 5000.0")
                .unwrap_or_else(|e| panic!("{e}"))
                .holds(&json!({"amount": 5000}))
        );
        for (bad, says) in [
            ("amount 5", "has no comparison"),
            ("amount => 5", "unknown comparison"),
            ("amount <= \"5\"", "compares numbers"),
            ("amount == EUR", "is not a JSON value"),
            ("a..b == 1", "must be member names"),
            ("== 1", "must be member names"),
            ("a == [1]", "compare with a number"),
        ] {
            let e = Constraint::parse(bad).err().unwrap_or_default();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(c.to_string(), "customer.tier == \"gold\"");
    }

    #[test]
    fn the_fingerprint_changes_with_what_is_enforced() {
        let a = [step(REFUND, Some(1), &["amount_cents <= 5000"])];
        let b = [step(REFUND, Some(2), &["amount_cents <= 5000"])];
        assert_eq!(fingerprint("p", &a), fingerprint("p", &a));
        assert_ne!(fingerprint("p", &a), fingerprint("p", &b));
        assert!(fingerprint("p", &a).starts_with("sha256:"));
    }

    #[test]
    fn judge_checks_the_pin_then_the_plan_then_approval() {
        let args = json!({"amount_cents": 900});
        let steps = [step(REFUND, None, &[])];
        let plan = GuardPlan {
            plan_id: "p",
            steps: &steps,
            calls: &[0],
        };
        let approvals = [ApprovalRule::parse(REFUND, &["amount_cents > 100".into()])
            .unwrap_or_else(|e| panic!("{e}"))];
        let rules = Rules {
            enforce: Enforce::Plan,
            on_tool_change: OnToolChange::Block,
            approvals: &approvals,
        };
        assert_eq!(
            judge(&rules, call(REFUND, &args), Some(&plan), ToolPin::Pinned),
            Decision::Hold {
                step: Some(0),
                rule: 0
            }
        );
        assert_eq!(
            refused(judge(
                &rules,
                call(REFUND, &args),
                Some(&plan),
                ToolPin::Changed
            ))
            .rule,
            "tools.changed"
        );
        assert_eq!(
            refused(judge(
                &rules,
                call(LOOKUP, &args),
                Some(&plan),
                ToolPin::Pinned
            ))
            .rule,
            "plan.not_covered"
        );
        let small = json!({"amount_cents": 100});
        assert_eq!(
            judge(&rules, call(REFUND, &small), Some(&plan), ToolPin::Pinned),
            Decision::Allow { step: Some(0) }
        );
        // Approval alone, no plan enforcement.
        let rules = Rules {
            approvals: &approvals,
            ..Rules::default()
        };
        assert_eq!(
            judge(&rules, call(REFUND, &args), None, ToolPin::Changed),
            Decision::Hold {
                step: None,
                rule: 0
            }
        );
    }
}
