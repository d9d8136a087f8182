//! Approval rules: which calls wait for a person before they reach the
//! upstream, and what an approval is bound to.
//!
//! A rule names actions by glob (`*` any run of characters, `?` one; the
//! redaction policy's [`glob_match`]) and may add conditions on the
//! arguments in the plan constraint language (`amount_cents > 100`); a call
//! matching the glob with every condition true is held. An approval covers
//! exactly one held call: it is bound to the call's correlation, agent,
//! server, tool, [`arguments_digest`], the rules' [`fingerprint`] and an
//! expiry, so a call that differs in any of them is held anew.
//!
//! No I/O here: holding a call and asking a person is the caller's.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Constraint;
use crate::redact::glob_match;

/// Most approval rules one config may hold.
pub const MAX_RULES: usize = 64;

/// Default wait for a decision on a held call, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;

/// Rule of a call refused because its approval was denied.
pub const DENIED_RULE: &str = "approval.denied";
/// Rule of a call refused because nobody decided in time.
pub const EXPIRED_RULE: &str = "approval.expired";
/// Rule of a call refused because no approver could be asked (a stdio
/// gateway with no daemon: fail closed).
pub const UNAVAILABLE_RULE: &str = "approval.unavailable";

/// A held call, as the gateway asks a person about it: everything the
/// approval is bound to, and what an operator needs to decide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The approval's id (a UUIDv7 the gateway chose).
    pub id: String,
    /// The call's correlation.
    pub correlation_id: String,
    /// Who asks: the MCP client's name (`clientInfo.name`), or `unknown`.
    pub agent: String,
    /// The server (`mcp.<server>.<tool>`).
    pub server: String,
    /// The tool.
    pub tool: String,
    /// The call's action.
    pub action: String,
    /// The call's arguments (shown to operators redacted).
    pub arguments: Value,
    /// [`arguments_digest`] of the arguments as sent.
    pub arguments_digest: String,
    /// [`fingerprint`] of the rules that held it.
    pub policy_fingerprint: String,
    /// The rule that matched (its action glob and conditions).
    pub rule: String,
    /// The call's intent.
    pub intent: String,
    /// The plan and the step that cover the call, when one does.
    #[serde(default)]
    pub plan_id: Option<String>,
    /// 0-based.
    #[serde(default)]
    pub plan_step: Option<usize>,
    /// When it was held (RFC 3339).
    pub requested_at: String,
    /// When it is refused if nobody decided (RFC 3339).
    pub expires_at: String,
}

/// What became of a held call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Outcome {
    /// A person let it through.
    Approved {
        /// Who (the token's name).
        by: String,
        /// Why, if they said.
        #[serde(default)]
        reason: Option<String>,
        /// When (RFC 3339).
        at: String,
    },
    /// A person refused it.
    Denied {
        /// Who.
        by: String,
        /// Why.
        #[serde(default)]
        reason: Option<String>,
        /// When.
        at: String,
    },
    /// Nobody decided before it expired: a denial.
    Expired {
        /// When.
        at: String,
    },
    /// Nobody could be asked (no daemon, too many pending): refused.
    Unavailable {
        /// Why.
        reason: String,
        /// When.
        at: String,
    },
}

impl Outcome {
    /// The refusal rule of an outcome that is not an approval.
    pub fn refusal_rule(&self) -> Option<&'static str> {
        match self {
            Outcome::Approved { .. } => None,
            Outcome::Denied { .. } => Some(DENIED_RULE),
            Outcome::Expired { .. } => Some(EXPIRED_RULE),
            Outcome::Unavailable { .. } => Some(UNAVAILABLE_RULE),
        }
    }

    /// `approved`, `denied`, `expired` or `unavailable`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Approved { .. } => "approved",
            Outcome::Denied { .. } => "denied",
            Outcome::Expired { .. } => "expired",
            Outcome::Unavailable { .. } => "unavailable",
        }
    }
}

/// One `require_approval` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRule {
    /// Glob over actions (`mcp.payments.refund_*`, `http.stripe.*`).
    pub action: String,
    /// Conditions on the arguments, all of which must hold.
    pub when: Vec<Constraint>,
}

impl ApprovalRule {
    /// A rule from its config text. The error names the bad condition.
    pub fn parse(action: &str, when: &[String]) -> Result<ApprovalRule, String> {
        let action = action.trim();
        if action.is_empty() {
            return Err(
                "a require_approval rule needs `action` (a glob such as `mcp.payments.refund_*`)"
                    .into(),
            );
        }
        if when.len() > super::MAX_CONSTRAINTS {
            return Err(format!(
                "require_approval {action:?}: at most {} conditions",
                super::MAX_CONSTRAINTS
            ));
        }
        let when = when
            .iter()
            .map(|c| Constraint::parse(c).map_err(|e| format!("require_approval {action:?}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(ApprovalRule {
            action: action.to_owned(),
            when,
        })
    }

    /// The rule as people read it: `mcp.payments.refund_* when amount_cents > 100`.
    pub fn describe(&self) -> String {
        if self.when.is_empty() {
            return self.action.clone();
        }
        let when: Vec<String> = self.when.iter().map(ToString::to_string).collect();
        format!("{} when {}", self.action, when.join(" and "))
    }

    /// Parses the command-line form `GLOB` or `GLOB:COND;COND`
    /// (`mcp.payments.refund_*:amount_cents > 100`).
    pub fn parse_flag(text: &str) -> Result<ApprovalRule, String> {
        let (action, when) = match text.split_once(':') {
            Some((action, when)) => (
                action,
                when.split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            None => (text, Vec::new()),
        };
        ApprovalRule::parse(action, &when)
    }

    /// Whether a call of `action` with `arguments` must wait for a person.
    /// A condition that cannot be told (the member is missing, or is not a
    /// number for `>`) counts as met: when in doubt, a person decides.
    pub fn holds(&self, action: &str, arguments: &Value) -> bool {
        glob_match(&self.action, action)
            && self
                .when
                .iter()
                .all(|c| c.evaluate(arguments).unwrap_or(true))
    }
}

/// The first rule that holds `action` with `arguments`, by index.
pub fn matching(rules: &[ApprovalRule], action: &str, arguments: &Value) -> Option<usize> {
    rules.iter().position(|r| r.holds(action, arguments))
}

/// The fingerprint of a rule set: `sha256:` + hex of the JCS of
/// `{"require_approval": [{"action", "when": [text]}]}`.
pub fn fingerprint(rules: &[ApprovalRule]) -> String {
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| {
            serde_json::json!({
                "action": r.action,
                "when": r.when.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    super::digest_of(&serde_json::json!({ "require_approval": rules }))
}

/// `sha256:` + hex of the SHA-256 of the JCS form of a call's arguments.
pub fn arguments_digest(arguments: &Value) -> String {
    super::digest_of(arguments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rule_holds_by_glob_and_conditions() {
        let rule = ApprovalRule::parse("mcp.payments.refund_*", &["amount_cents > 100".into()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(rule.holds("mcp.payments.refund_payment", &json!({"amount_cents": 101})));
        assert!(!rule.holds("mcp.payments.refund_payment", &json!({"amount_cents": 100})));
        // What cannot be read is held: a missing amount, a string, no JSON.
        for unreadable in [json!({}), json!({"amount_cents": "5000"}), json!(null)] {
            assert!(
                rule.holds("mcp.payments.refund_payment", &unreadable),
                "{unreadable}"
            );
        }
        assert!(!rule.holds("mcp.payments.lookup_order", &json!({"amount_cents": 101})));
        let any = ApprovalRule::parse("http.stripe.*", &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            matching(&[rule, any], "http.stripe.refund.create", &json!(null)),
            Some(1)
        );
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        assert!(ApprovalRule::parse(" ", &[]).is_err_and(|e| e.contains("needs `action`")));
        let e = ApprovalRule::parse("x", &["amount >> 3".into()])
            .err()
            .unwrap_or_default();
        assert!(e.starts_with("require_approval \"x\": "), "{e}");
    }

    #[test]
    fn digests_are_of_the_jcs_form() {
        use sha2::{Digest, Sha256};
        let hex: String = Sha256::digest(br#"{"a":1,"b":"x"}"#)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            arguments_digest(&json!({"b": "x", "a": 1})),
            format!("sha256:{hex}")
        );
        let rules =
            [ApprovalRule::parse("mcp.*", &["n > 1".into()]).unwrap_or_else(|e| panic!("{e}"))];
        let hex: String =
            Sha256::digest(br#"{"require_approval":[{"action":"mcp.*","when":["n > 1"]}]}"#)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
        assert_eq!(fingerprint(&rules), format!("sha256:{hex}"));
    }
}
