//! The seed README's three examples, run from `examples/`, emit exactly the
//! events the seed shows (ignoring `id` and the timing fields).

mod common;

#[path = "../examples/refund_receipt.rs"]
#[allow(dead_code)]
mod refund_receipt;

#[path = "../examples/payment_failure.rs"]
#[allow(dead_code)]
mod payment_failure;

#[path = "../examples/http_delivery.rs"]
#[allow(dead_code)]
mod http_delivery;

use common::{Collector, golden, without_id_and_timing};
use intentproof::IntentProofClient;

#[test]
fn seed_example_1_refund_and_receipt_events_match_the_seed() {
    let client = IntentProofClient::new(refund_receipt::config());
    refund_receipt::refund_flow(&client).unwrap();
    let events = client.memory().unwrap().events();
    let actual: Vec<_> = events.iter().map(without_id_and_timing).collect();
    assert_eq!(
        serde_json::Value::Array(actual),
        golden("seed_example_1_refund_receipt.json")
    );
}

#[test]
fn seed_example_2_payment_failure_event_matches_the_seed() {
    let client = IntentProofClient::new(Default::default());
    payment_failure::capture_flow(&client).unwrap();
    let events = client.memory().unwrap().events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        without_id_and_timing(&events[0]),
        golden("seed_example_2_payment_failure.json")
    );
}

#[tokio::test]
async fn seed_example_3_http_delivery_posts_the_exact_envelope() {
    let collector = Collector::start(vec![]).await;
    let events = http_delivery::run_probe(&collector.url).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        without_id_and_timing(&events[0]),
        golden("seed_example_3_http_delivery.json")
    );

    let received = collector.received();
    assert_eq!(received.len(), 1, "one POST per event");
    let expected_body = serde_json::to_vec(&intentproof::envelope(&events[0])).unwrap();
    assert_eq!(
        String::from_utf8(received[0].body.clone()).unwrap(),
        String::from_utf8(expected_body).unwrap(),
        "the collector receives exactly the envelope of the in-memory event"
    );
    assert_eq!(
        received[0].headers.get("content-type").unwrap(),
        "application/json"
    );
}
