//! Seed example 1: refund and customer receipt.
//!
//! Support approves order ORD-1042. The service creates the Stripe refund,
//! then emails the customer a receipt. `run_with_correlation_id` ties both
//! calls to `req_refund_ord_1042`; each wrap names its own intent and action.
//! `capture_input` / `capture_output` trim each record to what the proof
//! needs.
//!
//! Run: `cargo run -p intentproof --example refund_receipt`

use std::convert::Infallible;

use intentproof::{IntentProofClient, IntentProofConfig, WrapOptions, run_with_correlation_id};
use serde::Serialize;
use serde_json::json;

/// What the refund call takes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundRequest {
    pub payment_intent_id: String,
    pub amount_cents: u64,
    pub reason: Option<String>,
}

/// What the (simulated) payment provider returns.
#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub id: String,
    pub status: String,
    pub amount_cents: u64,
}

/// What the receipt call takes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptRequest {
    pub customer_id: String,
    pub order_id: String,
    pub refund_id: String,
    pub amount_cents: u64,
}

/// The configuration the seed's emitted events were made with.
pub fn config() -> IntentProofConfig {
    IntentProofConfig::default()
        .default_attribute("service", "billing-api")
        .default_attribute("env", "test")
}

/// Wraps both steps and runs the flow once under `req_refund_ord_1042`.
pub fn refund_flow(client: &IntentProofClient) -> Result<(), Box<dyn std::error::Error>> {
    let create_refund = client.wrap(
        WrapOptions::new(
            "Return captured funds to the customer's original card network",
            "stripe.refund.create",
        )
        .attribute("vendor", "stripe")
        .attribute("step", "refund_money")
        .capture_input(|args| {
            json!({
                "paymentIntentId": args[0]["paymentIntentId"],
                "amountCents": args[0]["amountCents"],
                "reason": args[0]["reason"],
            })
        })
        .capture_output(|result| {
            json!({
                "refundId": result["id"],
                "status": result["status"],
                "amountCents": result["amountCents"],
            })
        }),
        |input: RefundRequest| {
            Ok::<_, Infallible>(Refund {
                id: "re_3SAMPLEabcdefghijklmnop".into(),
                status: "succeeded".into(),
                amount_cents: input.amount_cents,
            })
        },
    )?;

    let send_refund_receipt = client.wrap(
        WrapOptions::new(
            "Deliver a customer-visible refund confirmation for the ledger entry",
            "email.customer.refund_receipt",
        )
        .attribute("channel", "email")
        .attribute("step", "notify_customer")
        .capture_input(|args| {
            json!({
                "customerId": args[0]["customerId"],
                "orderId": args[0]["orderId"],
                "refundId": args[0]["refundId"],
                "amountCents": args[0]["amountCents"],
            })
        })
        .capture_output(
            |result| json!({"messageId": result["messageId"], "status": result["status"]}),
        ),
        |_receipt: ReceiptRequest| {
            Ok::<_, Infallible>(json!({"messageId": "msg_49401_sample", "status": "queued"}))
        },
    )?;

    run_with_correlation_id("req_refund_ord_1042", || -> Result<(), Infallible> {
        let refund = create_refund.call(RefundRequest {
            payment_intent_id: "pi_3SAMPLEabcdefghijklmnop".into(),
            amount_cents: 4999,
            reason: Some("requested_by_customer".into()),
        })?;
        send_refund_receipt.call(ReceiptRequest {
            customer_id: "cus_SAMPLEabcdefghijkl".into(),
            order_id: "ORD-1042".into(),
            refund_id: refund.id.clone(),
            amount_cents: refund.amount_cents,
        })?;
        Ok(())
    })??;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = IntentProofClient::new(config());
    refund_flow(&client)?;
    let events = client
        .memory()
        .ok_or("the client has no memory exporter")?
        .events();
    println!("{}", serde_json::to_string_pretty(&events)?);
    Ok(())
}
