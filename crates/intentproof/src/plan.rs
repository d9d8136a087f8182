//! Plans from code: [`IntentProofClient::declare_plan`] and
//! [`IntentProofClient::close_plan`] record exactly the events the
//! gateway's MCP plan tool and `POST /v1/plans` record, so the daemon's
//! findings (incomplete intent, unplanned call, failed step) work for
//! library callers too.
//!
//! The declaration's action (`intentproof.plan.declare`) is reserved: the
//! IntentProof daemon stores it only from an authenticated sender, so the
//! exporter that delivers to the daemon needs `Authorization: Bearer
//! <token>` (the ingest token, or the daemon token in `<data dir>/token`).

use std::time::{Instant, SystemTime};

use intentproof_core::ExecutionEvent;
use intentproof_core::actions::PLAN_CLOSE_ACTION;
use intentproof_policy::verification::{parse_plan_arguments, plan_declaration_event};
use serde_json::{Value, json};

use crate::IntentProofClient;
use crate::correlation::get_correlation_id;

/// A plan to declare: what it means to achieve and the actions it will
/// call, in order.
///
/// ```
/// let plan = intentproof::PlanDeclaration::new("Refund order 1042")
///     .step("orders.lookup", "find the charge")
///     .step("stripe.refund.create", "refund it")
///     .ordered(true);
/// assert_eq!(plan.arguments()["steps"][1]["action"], "stripe.refund.create");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PlanDeclaration {
    intent: String,
    steps: Vec<(String, String)>,
    ordered: bool,
    correlation_id: Option<String>,
}

impl PlanDeclaration {
    /// A plan for `intent`, with no steps yet.
    pub fn new(intent: impl Into<String>) -> Self {
        PlanDeclaration {
            intent: intent.into(),
            steps: Vec::new(),
            ordered: false,
            correlation_id: None,
        }
    }

    /// Adds a step: the action it calls (as the wrap names it, e.g.
    /// `stripe.refund.create`) and why.
    pub fn step(mut self, action: impl Into<String>, purpose: impl Into<String>) -> Self {
        self.steps.push((action.into(), purpose.into()));
        self
    }

    /// Whether the steps must happen in this order (default: no).
    pub fn ordered(mut self, ordered: bool) -> Self {
        self.ordered = ordered;
        self
    }

    /// The correlation id the plan's calls will carry. Default: the one in
    /// effect where the plan is declared, else a fresh one.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// The declaration in the plan tool's (and `POST /v1/plans`') format,
    /// recorded as the declaration event's inputs.
    pub fn arguments(&self) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|(action, purpose)| json!({"action": action, "purpose": purpose}))
            .collect();
        let mut arguments = json!({"intent": self.intent, "steps": steps, "ordered": self.ordered});
        if let Some(id) = &self.correlation_id {
            arguments["correlation_id"] = Value::String(id.clone());
        }
        arguments
    }
}

/// A declared plan: run its calls under
/// [`with_correlation_id`](IntentProofClient::with_correlation_id)`(&plan.correlation_id, ..)`,
/// then [`close_plan`](IntentProofClient::close_plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The plan's id (`intentproof.plan.id`).
    pub plan_id: String,
    /// The correlation its calls carry.
    pub correlation_id: String,
    /// What it means to achieve.
    pub intent: String,
}

/// Why a plan was not declared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid plan: {0}")]
pub struct PlanError(pub String);

impl IntentProofClient {
    /// Records the declaration of `plan` (action `intentproof.plan.declare`,
    /// inputs [`PlanDeclaration::arguments`], output `{plan_id,
    /// correlation_id}`, attributes `intentproof.plan.id` and
    /// `intentproof.plan.ordered`) through this client's exporters (durably
    /// with [`Durability::Local`](crate::Durability::Local)).
    ///
    /// Fails, recording nothing, when the plan is not valid; the error
    /// names the field, as `POST /v1/plans` does.
    ///
    /// ```
    /// use intentproof::{IntentProofClient, PlanDeclaration, WrapOptions};
    /// let client = IntentProofClient::default();
    /// let plan = client
    ///     .declare_plan(PlanDeclaration::new("Refund order 1042").step("stripe.refund.create", "refund"))
    ///     .unwrap();
    /// let refund = client
    ///     .wrap(WrapOptions::new("Refund", "stripe.refund.create"), |_: ()| Ok::<_, std::io::Error>("re_1"))
    ///     .unwrap();
    /// client.with_correlation_id(&plan.correlation_id, || refund.call(())).unwrap();
    /// client.close_plan(&plan);
    ///
    /// let actions: Vec<String> = client.memory().unwrap().events().into_iter().map(|e| e.action).collect();
    /// assert_eq!(actions, ["intentproof.plan.declare", "stripe.refund.create", "intentproof.plan.close"]);
    /// let error = client.declare_plan(PlanDeclaration::new("Nothing")).unwrap_err();
    /// assert_eq!(error.to_string(), "invalid plan: `steps` is empty: list the tool calls you plan to make");
    /// ```
    pub fn declare_plan(&self, plan: PlanDeclaration) -> Result<Plan, PlanError> {
        let started = SystemTime::now();
        let clock = Instant::now();
        let arguments = plan.arguments();
        let parsed = parse_plan_arguments(&arguments).map_err(PlanError)?;
        let correlation_id = match parsed.correlation_id {
            Some(id) => crate::assert_correlation_id(&id)
                .map_err(|e| PlanError(format!("`correlation_id`: {e}")))?
                .to_owned(),
            None => get_correlation_id().unwrap_or_else(crate::correlation::new_correlation_id),
        };
        let plan_id = intentproof_core::new_event_id();
        let event = plan_declaration_event(
            &parsed.intent,
            arguments,
            &plan_id,
            &correlation_id,
            parsed.ordered,
            started,
            clock.elapsed(),
        );
        self.emit(&event);
        Ok(Plan {
            plan_id,
            correlation_id,
            intent: parsed.intent,
        })
    }

    /// Records the end of `plan` (action `intentproof.plan.close`, inputs
    /// `{plan_id}`, in the plan's correlation): the daemon then judges the
    /// plan, flagging steps that never ran as an incomplete intent.
    pub fn close_plan(&self, plan: &Plan) {
        let event = ExecutionEvent::builder(plan.intent.clone(), PLAN_CLOSE_ACTION)
            .correlation_id(plan.correlation_id.clone())
            .inputs(json!({"plan_id": plan.plan_id}))
            .build();
        self.emit(&event);
    }
}
