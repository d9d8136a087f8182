//! Chain verification: every kind of tampering gets its own exact message.

use intentproof_core::ExecutionEvent;
use intentproof_core::keys::InstanceKey;
use intentproof_core::seal::{ChainError, Sealer, sign_v1, verify_chain, verify_event};
use serde_json::{Value, json};

fn key() -> InstanceKey {
    InstanceKey::from_seed("inst_chain", [9u8; 32])
}

/// Four events of chain "c1", with fixed ids so messages are predictable.
fn chain() -> Vec<Value> {
    let sealer = Sealer::new(key()).with_tenant_id("tnt_test");
    (1..=4)
        .map(|i| {
            let mut e = ExecutionEvent::builder("Refund", "stripe.refunds.create")
                .correlation_id("c1")
                .inputs(json!([i]))
                .output(json!({"ok": true}))
                .timing("2026-05-11T14:32:17.421Z", "2026-05-11T14:32:17.422Z", 1)
                .build();
            e.id = format!("evt_{i}");
            sealer.seal(&e).unwrap().event
        })
        .collect()
}

fn check(events: &[Value]) -> Result<(), ChainError> {
    let vk = key().verifying_key();
    verify_chain(events, |id| (id == "inst_chain:k1").then_some(vk)).map(|_| ())
}

fn message(events: &[Value]) -> String {
    check(events).unwrap_err().to_string()
}

#[test]
fn an_intact_chain_verifies() {
    let events = chain();
    let vk = key().verifying_key();
    let summary = verify_chain(&events, |_| Some(vk)).unwrap();
    assert_eq!((summary.events, summary.chains), (4, 1));
    assert_eq!(events[0]["chain_position"], 1);
    assert_eq!(
        events[0]["prev_event_hash"],
        "sha256:0000000000000000000000000000000000000000000000000000000000000000"
    );
    for pair in events.windows(2) {
        let prev_hash = verify_event(&pair[0], &vk).unwrap();
        assert_eq!(pair[1]["prev_event_hash"], prev_hash.as_str());
    }
}

#[test]
fn dropped_event_is_a_gap() {
    let mut events = chain();
    events.remove(1);
    assert_eq!(
        message(&events),
        "gap in chain \"c1\": position 2 is missing before event evt_3 at position 3 \
         (an event was dropped)"
    );
}

#[test]
fn dropped_first_event_is_a_gap_at_position_one() {
    let events = chain();
    assert_eq!(
        message(&events[1..]),
        "gap in chain \"c1\": position 1 is missing before event evt_2 at position 2 \
         (an event was dropped)"
    );
}

#[test]
fn reordered_events_are_out_of_order() {
    let mut events = chain();
    events.swap(1, 2);
    assert_eq!(
        message(&events),
        "chain \"c1\" is out of order: event evt_2 at position 2 comes after position 3"
    );
}

#[test]
fn duplicated_event_is_reported() {
    let mut events = chain();
    let copy = events[1].clone();
    events.insert(2, copy);
    assert_eq!(
        message(&events),
        "event evt_2 at position 2 occurs more than once"
    );
}

#[test]
fn edited_event_fails_its_signature() {
    let mut events = chain();
    events[2]["intent"] = json!("Refund twice");
    assert_eq!(
        message(&events),
        "event #2: signature of event evt_3 (chain position 3) does not verify with key \
         inst_chain:k1: the event was changed after it was signed, or another key signed it"
    );
}

#[test]
fn edited_and_resigned_event_breaks_the_next_link() {
    let mut events = chain();
    let k = key();
    let obj = events[1].as_object_mut().unwrap();
    obj.insert("output".into(), json!({"ok": false}));
    sign_v1(obj, k.signing_key(), &k.key_id()).unwrap();
    let expected = verify_event(&events[1], &k.verifying_key()).unwrap();
    let found = events[2]["prev_event_hash"].as_str().unwrap().to_owned();
    assert_eq!(
        message(&events),
        format!(
            "prev_event_hash mismatch at position 3 (event evt_3): expected {expected}, found \
             {found} (an earlier event was changed, or this one belongs elsewhere)"
        )
    );
}

#[test]
fn two_events_at_one_position_are_a_fork() {
    let mut events = chain();
    let k = key();
    let mut other = events[1].clone();
    let obj = other.as_object_mut().unwrap();
    obj.insert("event_id".into(), json!("evt_2b"));
    sign_v1(obj, k.signing_key(), &k.key_id()).unwrap();
    events.insert(2, other);
    assert_eq!(
        message(&events),
        "fork in chain \"c1\" at position 2: events evt_2 and evt_2b both claim it"
    );
}

#[test]
fn unknown_key_is_named() {
    let events = chain();
    let err = verify_chain(&events, |_| None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "event evt_1 is signed by unknown key \"inst_chain:k1\"; add that instance's public key \
         to the verifier"
    );
}

#[test]
fn unsupported_alg_is_named() {
    let mut events = chain();
    events[0]["signature"]["alg"] = json!("rsa");
    assert_eq!(
        message(&events),
        "event #0: event evt_1 is signed with unsupported algorithm \"rsa\"; only \"ed25519\" is \
         supported"
    );
}

#[test]
fn another_key_fails() {
    let events = chain();
    let other = InstanceKey::from_seed("inst_chain", [8u8; 32]).verifying_key();
    let err = verify_chain(&events, |_| Some(other)).unwrap_err();
    assert!(matches!(err, ChainError::Event { index: 0, .. }), "{err}");
}

#[test]
fn chains_may_interleave_and_uncorrelated_events_stand_alone() {
    let sealer = Sealer::new(key());
    let mut events = Vec::new();
    for i in 0..3 {
        for corr in ["a", "b"] {
            let e = ExecutionEvent::builder("i", format!("act.{i}"))
                .correlation_id(corr)
                .build();
            events.push(sealer.seal(&e).unwrap().event);
        }
    }
    let lone = sealer
        .seal(&ExecutionEvent::builder("i", "lone").build())
        .unwrap()
        .event;
    assert_eq!(lone["correlation_id"], lone["event_id"]);
    assert_eq!(lone["chain_position"], 1);
    assert_eq!(lone["untrusted_payload"], false);
    events.push(lone);
    let summary = verify_chain(&events, |_| Some(key().verifying_key())).unwrap();
    assert_eq!((summary.events, summary.chains), (7, 3));
}

#[test]
fn sealer_is_safe_to_share_between_threads() {
    let sealer = Sealer::new(key());
    let per_thread = 50;
    let mut all: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..per_thread)
                        .map(|_| {
                            let e = ExecutionEvent::builder("i", "a")
                                .correlation_id("shared")
                                .build();
                            sealer.seal(&e).unwrap().event
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    all.sort_by_key(|e| e["chain_position"].as_u64().unwrap());
    let positions: Vec<u64> = all
        .iter()
        .map(|e| e["chain_position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (1..=4 * per_thread as u64).collect::<Vec<_>>());
    check(&all).unwrap();
}

#[test]
fn resume_chain_continues_a_stored_chain() {
    let events = chain();
    let last_hash = verify_event(&events[3], &key().verifying_key()).unwrap();
    let sealer = Sealer::new(key()).with_tenant_id("tnt_test");
    sealer.resume_chain("c1", 4, last_hash);
    let mut e = ExecutionEvent::builder("Refund", "x")
        .correlation_id("c1")
        .build();
    e.id = "evt_5".into();
    let mut all = events;
    all.push(sealer.seal(&e).unwrap().event);
    check(&all).unwrap();
}

/// `resume_chain_if_new` takes up an unknown chain but never rewinds one
/// the sealer has moved on since the caller read the stored head.
#[test]
fn resume_chain_if_new_never_rewinds_a_tracked_chain() {
    let sealer = Sealer::new(InstanceKey::from_seed("inst_resume", [5u8; 32]));
    assert!(!sealer.tracks_chain("c1"));
    assert!(sealer.resume_chain_if_new("c1", 4, "sha256:stored-head"));
    assert!(sealer.tracks_chain("c1"));
    let fifth = sealer
        .seal(
            &ExecutionEvent::builder("i", "a")
                .correlation_id("c1")
                .build(),
        )
        .unwrap();
    assert_eq!(fifth.event["chain_position"], 5);
    assert_eq!(fifth.event["prev_event_hash"], "sha256:stored-head");
    // A late resume with the (now stale) stored head changes nothing.
    assert!(!sealer.resume_chain_if_new("c1", 4, "sha256:stored-head"));
    let sixth = sealer
        .seal(
            &ExecutionEvent::builder("i", "a")
                .correlation_id("c1")
                .build(),
        )
        .unwrap();
    assert_eq!(sixth.event["chain_position"], 6);
    assert_eq!(sixth.event["prev_event_hash"], fifth.content_hash.as_str());
}
