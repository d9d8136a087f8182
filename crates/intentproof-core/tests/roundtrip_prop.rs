//! Property tests: random events survive camelCase -> v1 -> camelCase, and
//! every sealed event validates against the spec's schema and verifies.

use std::time::{Duration, UNIX_EPOCH};

use intentproof_core::keys::InstanceKey;
use intentproof_core::schema::{SchemaKind, validate};
use intentproof_core::seal::{Sealer, verify_event};
use intentproof_core::{
    AttributeValue, Attributes, ErrorInfo, ExecutionEvent, RedactionSummary, Status,
    format_rfc3339_millis, v1,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53)..=(1i64 << 53)).prop_map(|i| json!(i)),
        (-1e300f64..1e300).prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_\u{e9}\u{1F600}]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// inputs: object | array | null (the v1 schema's types).
fn inputs() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(json_value().prop_filter("inputs type", |v| {
        v.is_object() || v.is_array() || v.is_null()
    }))
}

/// output: anything but an array (the v1 schema's types).
fn output() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(json_value().prop_filter("output type", |v| !v.is_array()))
}

fn attribute_value() -> impl Strategy<Value = AttributeValue> {
    prop_oneof![
        "\\PC{0,8}".prop_map(AttributeValue::String),
        any::<bool>().prop_map(AttributeValue::Bool),
        (-(1i64 << 53)..=(1i64 << 53)).prop_map(AttributeValue::from),
        (-1e9f64..1e9).prop_map(|f| AttributeValue::try_from(f).unwrap()),
    ]
}

fn timestamp() -> impl Strategy<Value = String> {
    (0u64..4_000_000_000_000)
        .prop_map(|ms| format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)))
}

prop_compose! {
    fn event()(
        id in "[0-9A-Z]{26}",
        correlation in prop::option::of("[a-z_0-9]{1,12}"),
        intent in "\\PC{0,20}",
        action in "[a-z.]{1,20}",
        inputs in inputs(),
        output in output(),
        error in prop::option::of(("[A-Za-z]{1,10}", "\\PC{0,20}", prop::option::of("\\PC{0,20}"))),
        started in timestamp(),
        completed in timestamp(),
        duration in 0u64..=(1 << 53),
        attributes in prop::collection::btree_map("[a-z][a-z._]{0,10}", attribute_value(), 0..4),
        redaction in prop::option::of((prop::collection::vec("[a-z]{1,6}", 0..3), 0u64..=(1 << 53),
            prop::collection::vec("[a-z$.]{1,6}", 0..3), prop::option::of("[a-z]{1,6}"))),
        tenant in prop::option::of("[a-z_]{1,8}"),
        sdk in prop::option::of("[a-z]{1,6}@[0-9.]{1,5}"),
        untrusted in prop::option::of(any::<bool>()),
        chain in prop::option::of((1u64..1000, "sha256:[0-9a-f]{64}")),
        null_error in any::<bool>(),
        empty_attributes_kept in any::<bool>(),
    ) -> ExecutionEvent {
        let mut b = ExecutionEvent::builder(intent, action).timing(started, completed, duration);
        if let Some(c) = correlation { b = b.correlation_id(c); }
        if let Some(i) = inputs { b = b.inputs(i); }
        if let Some(o) = output { b = b.output(o); }
        let has_error = error.is_some();
        if let Some((name, message, stack)) = error {
            b = b.error(ErrorInfo { name, message, stack });
        }
        let attributes: Attributes = attributes;
        let empty_attributes = attributes.is_empty();
        let mut e = b.attributes(attributes).build();
        e.id = id;
        e.redaction_summary = redaction.map(|(rules, count, paths, profile)| RedactionSummary {
            rules_applied: rules,
            fields_redacted_count: count,
            fields_redacted_paths: paths,
            tenant_redaction_profile_id: profile,
        });
        e.tenant_id = tenant;
        e.sdk_version = sdk;
        e.untrusted_payload = untrusted;
        if let Some((pos, prev)) = chain {
            e.chain_position = Some(pos);
            e.prev_event_hash = Some(prev);
        }
        // The verbatim members from_v1 itself would produce.
        let mut verbatim = Map::new();
        if null_error && !has_error {
            verbatim.insert("error".into(), Value::Null);
        }
        if empty_attributes_kept && empty_attributes {
            verbatim.insert("attributes".into(), json!({}));
        }
        if !verbatim.is_empty() {
            e.v1_verbatim = Some(verbatim);
        }
        e
    }
}

fn sealer() -> &'static Sealer {
    static SEALER: std::sync::OnceLock<Sealer> = std::sync::OnceLock::new();
    SEALER.get_or_init(|| Sealer::new(InstanceKey::from_seed("inst_prop", [5u8; 32])))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn camel_to_v1_to_camel_is_identity(e in event()) {
        let v = Value::Object(v1::to_v1(&e));
        let back = v1::from_v1(&v).unwrap();
        prop_assert_eq!(&back, &e);
        // v1 -> camelCase -> v1 too.
        prop_assert_eq!(Value::Object(v1::to_v1(&back)), v);
    }

    #[test]
    fn sealed_events_validate_and_verify(e in event()) {
        let sealed = sealer().seal(&e).unwrap();
        if let Err(errors) = validate(SchemaKind::ExecutionEvent, &sealed.event) {
            prop_assert!(false, "schema errors {:?} for {}", errors, sealed.event);
        }
        let hash = verify_event(&sealed.event, &sealer().key().verifying_key()).unwrap();
        prop_assert_eq!(hash, sealed.content_hash);
        // The sealed v1 form maps back to an event that seals the same content.
        let back = v1::from_v1(&sealed.event).unwrap();
        prop_assert_eq!(Value::Object(v1::to_v1(&back)), sealed.event.clone());
        prop_assert_eq!(back.status == Status::Error, e.error.is_some());
    }
}

#[test]
fn sealing_an_unsafe_integer_is_a_clear_error() {
    let mut e = ExecutionEvent::builder("i", "a").build();
    e.duration_ms = (1 << 53) + 1;
    let err = sealer().seal(&e).unwrap_err().to_string();
    assert!(
        err.contains("integer 9007199254740993 at $.duration_ms is beyond 2^53"),
        "{err}"
    );
}
