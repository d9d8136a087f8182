//! `snapshot`: every option, deterministic markers, and hostile sizes
//! (10 MB string, 10,000-deep array, 100,000-key object) stay bounded.

use std::collections::HashMap;

use intentproof_core::snapshot::{HARD_MAX_DEPTH, MAX_DEPTH_MARKER, REDACTED};
use intentproof_core::{SerializeOptions, snapshot, snapshot_value};
use serde::Serialize;
use serde_json::{Value, json};

fn opts() -> SerializeOptions {
    SerializeOptions::default()
}

#[test]
fn plain_values_pass_through_unchanged() {
    let value = json!({"a": [1, 2.5, "x", null, true], "b": {"c": -3}});
    assert_eq!(snapshot(&value, &opts()), value);
}

#[test]
fn max_depth_replaces_deeper_containers_but_keeps_scalars() {
    let value = json!({"l1": {"l2": {"l3": 1}, "s": "kept"}, "n": 1});
    let o = SerializeOptions {
        max_depth: 2,
        ..opts()
    };
    assert_eq!(
        snapshot(&value, &o),
        json!({"l1": {"l2": MAX_DEPTH_MARKER, "s": "kept"}, "n": 1})
    );
    let o = SerializeOptions {
        max_depth: 0,
        ..opts()
    };
    assert_eq!(snapshot(&value, &o), json!(MAX_DEPTH_MARKER));
    assert_eq!(
        snapshot(&7, &o),
        json!(7),
        "a scalar root has no depth to exceed"
    );
}

#[test]
fn max_depth_is_capped_at_the_hard_limit() {
    let mut deep = Value::Null;
    for _ in 0..(HARD_MAX_DEPTH + 10) {
        deep = Value::Array(vec![deep]);
    }
    let o = SerializeOptions {
        max_depth: usize::MAX,
        ..opts()
    };
    let out = snapshot_value(deep, &o);
    let mut depth = 0;
    let mut cursor = &out;
    while let Value::Array(items) = cursor {
        depth += 1;
        cursor = &items[0];
    }
    assert_eq!(depth, HARD_MAX_DEPTH);
    assert_eq!(cursor, &json!(MAX_DEPTH_MARKER));
}

#[test]
fn max_keys_keeps_the_smallest_keys_whatever_the_iteration_order() {
    let mut map = HashMap::new();
    for k in ["delta", "alpha", "echo", "charlie", "bravo"] {
        map.insert(k, k.len());
    }
    let o = SerializeOptions {
        max_keys: 2,
        ..opts()
    };
    let expected = json!({"alpha": 5, "bravo": 5, "[truncated]": "3 more keys"});
    for _ in 0..10 {
        assert_eq!(snapshot(&map, &o), expected);
    }
}

#[test]
fn max_keys_bounds_arrays_with_a_count_marker() {
    let o = SerializeOptions {
        max_keys: 3,
        ..opts()
    };
    assert_eq!(
        snapshot(&(0..10).collect::<Vec<_>>(), &o),
        json!([0, 1, 2, "[+7 more items]"])
    );
    assert_eq!(snapshot(&[1, 2, 3], &o), json!([1, 2, 3]));
}

#[test]
fn max_string_length_counts_characters_not_bytes() {
    let o = SerializeOptions {
        max_string_length: 3,
        ..opts()
    };
    assert_eq!(
        snapshot("héllo wörld", &o),
        json!("hél…[truncated 8 chars]")
    );
    assert_eq!(snapshot("abc", &o), json!("abc"));
    assert_eq!(
        snapshot(&json!({"k": "abcd"}), &o),
        json!({"k": "abc…[truncated 1 chars]"})
    );
}

#[test]
fn redact_keys_matches_any_case_at_any_depth() {
    #[derive(Serialize)]
    struct Login {
        user: &'static str,
        #[serde(rename = "PASSWORD")]
        password: &'static str,
        nested: Vec<HashMap<&'static str, &'static str>>,
    }
    let login = Login {
        user: "ada",
        password: "hunter2",
        nested: vec![HashMap::from([("Api_Key", "k-1"), ("ok", "v")])],
    };
    let o = SerializeOptions {
        redact_keys: vec!["password".into(), "api_key".into()],
        ..opts()
    };
    assert_eq!(
        snapshot(&login, &o),
        json!({"user": "ada", "PASSWORD": REDACTED, "nested": [{"Api_Key": REDACTED, "ok": "v"}]})
    );
}

#[test]
fn redacted_values_are_never_serialized() {
    struct Explodes;
    impl Serialize for Explodes {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            panic!("a redacted value must not be visited");
        }
    }
    let map = HashMap::from([("token", Explodes)]);
    let o = SerializeOptions {
        redact_keys: vec!["TOKEN".into()],
        ..opts()
    };
    assert_eq!(snapshot(&map, &o), json!({"token": REDACTED}));
}

#[test]
fn unserializable_values_become_a_marker() {
    let map = HashMap::from([((1, 2), "tuple key")]);
    assert_eq!(
        snapshot(&map, &opts()),
        json!("[Unserializable: object keys must be strings, numbers or booleans, not a tuple]")
    );
}

#[test]
fn enums_serialize_like_serde_json() {
    #[derive(Serialize)]
    enum E {
        Unit,
        New(u8),
        Tuple(u8, u8),
        Struct { a: u8 },
    }
    let v = vec![E::Unit, E::New(1), E::Tuple(1, 2), E::Struct { a: 3 }];
    assert_eq!(snapshot(&v, &opts()), serde_json::to_value(&v).unwrap());
}

#[test]
fn ten_megabyte_string_is_cut_to_the_limit() {
    let big = "x".repeat(10 * 1024 * 1024);
    let out = snapshot(&big, &opts());
    let expected = format!(
        "{}…[truncated {} chars]",
        "x".repeat(8192),
        10 * 1024 * 1024 - 8192
    );
    assert_eq!(out, Value::String(expected));
}

#[test]
fn ten_thousand_deep_array_is_bounded_without_stack_overflow() {
    let mut deep = json!("bottom");
    for _ in 0..10_000 {
        deep = Value::Array(vec![deep]);
    }
    let o = SerializeOptions {
        max_depth: 3,
        ..opts()
    };
    assert_eq!(snapshot_value(deep, &o), json!([[[MAX_DEPTH_MARKER]]]));
}

#[test]
fn hundred_thousand_key_object_keeps_max_keys() {
    let map: serde_json::Map<String, Value> = (0..100_000)
        .map(|i| (format!("k{i:06}"), json!(i)))
        .collect();
    let out = snapshot(&Value::Object(map), &opts());
    let object = out.as_object().unwrap();
    assert_eq!(object.len(), 201);
    assert_eq!(object["k000000"], json!(0));
    assert_eq!(object["k000199"], json!(199));
    assert_eq!(object["[truncated]"], json!("99800 more keys"));
}

#[test]
fn snapshots_are_deterministic() {
    let value = json!({"b": [1, {"z": "long string"}], "a": "x"});
    let o = SerializeOptions {
        max_string_length: 4,
        max_keys: 1,
        ..opts()
    };
    let first = serde_json::to_vec(&snapshot(&value, &o)).unwrap();
    for _ in 0..5 {
        assert_eq!(serde_json::to_vec(&snapshot(&value, &o)).unwrap(), first);
    }
}
