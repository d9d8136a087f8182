//! Seed example 2: payment failure with operator metadata (`capture_error`).
//!
//! When the capture fails, the record still carries `status: "error"` and
//! `error.message` as proof of failure; `capture_error` adds a small output
//! for dashboards (the decline code) without pretending the call succeeded.
//!
//! Run: `cargo run -p intentproof --example payment_failure`

use intentproof::{IntentProofClient, IntentProofConfig, WrapOptions};
use serde::Serialize;
use serde_json::json;

/// The error the (simulated) payment provider raises.
#[derive(Debug)]
pub struct RuntimeError(pub String);

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RuntimeError {}

/// What the capture call takes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaptureRequest {
    pub payment_intent_id: String,
}

fn decline_card(_input: CaptureRequest) -> Result<serde_json::Value, RuntimeError> {
    Err(RuntimeError("Your card was declined.".into()))
}

/// Wraps the capture and calls it once; the decline is expected.
pub fn capture_flow(client: &IntentProofClient) -> Result<(), Box<dyn std::error::Error>> {
    let capture_payment = client.wrap(
        WrapOptions::new("Capture authorized funds", "stripe.payment_intent.capture")
            .capture_input(|args| json!({"paymentIntentId": args[0]["paymentIntentId"]}))
            .capture_error(|_error| json!({"code": "card_declined", "retryable": false})),
        decline_card,
    )?;
    match capture_payment.call(CaptureRequest {
        payment_intent_id: "pi_3SAMPLEabcdefghijklmnop".into(),
    }) {
        Err(RuntimeError(message)) => eprintln!("card declined, as expected: {message}"),
        Ok(_) => return Err("the card was expected to be declined".into()),
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = IntentProofClient::new(IntentProofConfig::default());
    capture_flow(&client)?;
    let events = client
        .memory()
        .ok_or("the client has no memory exporter")?
        .events();
    println!("{}", serde_json::to_string_pretty(&events)?);
    Ok(())
}
