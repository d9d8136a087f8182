//! Property tests: whatever the JSON around them, values the detectors
//! recognise never survive the default policy, and secret keys are caught
//! however they are spelled.

use intentproof_policy::redact::{Detector, HashKey, RedactionPolicy, Redactor};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn redactor() -> Redactor {
    Redactor::new(
        RedactionPolicy::default_policy(),
        HashKey::from_bytes([9; 32]),
    )
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn luhn_complete(body: &str) -> String {
    // Appends the check digit that makes `body` + digit pass Luhn.
    let mut sum = 0u32;
    for (i, c) in body.bytes().rev().enumerate() {
        let mut v = u32::from(c - b'0');
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    format!("{body}{}", (10 - sum % 10) % 10)
}

fn group(s: &str, sep: &str, size: usize) -> String {
    s.as_bytes()
        .chunks(size)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(sep)
}

fn iban(country: &str, bban: &str) -> String {
    let rearranged = format!("{bban}{country}00");
    let mut rem = 0u32;
    for c in rearranged.bytes() {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    format!("{country}{:02}{bban}", 98 - rem)
}

fn card() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just(("4", 16)),
            Just(("4", 13)),
            Just(("51", 16)),
            Just(("55", 16)),
            Just(("2221", 16)),
            Just(("34", 15)),
            Just(("37", 15)),
            Just(("6011", 16)),
            Just(("3530", 16)),
        ],
        "[0-9]{20}",
        prop_oneof![Just(""), Just(" "), Just("-")],
    )
        .prop_map(|((prefix, len), digits, sep)| {
            let body = format!("{prefix}{}", &digits[..len - prefix.len() - 1]);
            group(&luhn_complete(&body), sep, 4)
        })
}

/// A value some detector must recognise.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        card(),
        (
            "[a-z]{1,8}(\\.[a-z]{1,5})?",
            "[a-z]{1,8}",
            prop_oneof![Just("com"), Just("org"), Just("io")]
        )
            .prop_map(|(l, d, t)| format!("{l}@{d}.{t}")),
        (
            prop_oneof![Just("HS256"), Just("RS256"), Just("ES384"), Just("none")],
            "[a-z0-9]{0,8}",
            "[A-Za-z0-9_-]{10,40}",
            "[A-Za-z0-9_-]{0,43}",
        )
            .prop_map(|(alg, kid, body, sig)| {
                let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{kid}"}}"#);
                format!("{}.{body}.{sig}", b64url(header.as_bytes()))
            }),
        "gh[pousr]_[A-Za-z0-9]{36}",
        "github_pat_[A-Za-z0-9_]{82}",
        "(sk|rk|pk)_(live|test)_[A-Za-z0-9]{24,99}",
        "whsec_[A-Za-z0-9]{32}",
        "(AKIA|ASIA)[A-Z0-9]{16}",
        "AIza[0-9A-Za-z_-]{35}",
        "xox[abposr]-[0-9]{10,12}-[0-9]{10,12}-[A-Za-z0-9]{24}",
        "https://hooks\\.slack\\.com/services/T[A-Z0-9]{8}/B[A-Z0-9]{8}/[A-Za-z0-9]{24}",
        "Bearer [A-Za-z0-9]{8,12}[0-9][A-Za-z0-9._~+/-]{0,30}",
        ("[0-9]{18}", any::<bool>()).prop_map(|(b, spaced)| {
            let i = iban("DE", &b);
            if spaced { group(&i, " ", 4) } else { i }
        }),
        ("[A-Z]{4}[0-9]{10}", any::<bool>()).prop_map(|(b, spaced)| {
            let i = iban("NL", &b);
            if spaced { group(&i, " ", 4) } else { i }
        }),
        "\\+1[2-9][0-9]{2}[2-9][0-9]{6}",
        "\\([2-9][0-9]{2}\\) [2-9][0-9]{2}-[0-9]{4}",
        "\\+44 20 [0-9]{4} [0-9]{4}",
        "[A-Za-z0-9+/]{40,120}"
            .prop_map(|b| format!("-----BEGIN PRIVATE KEY-----\n{b}\n-----END PRIVATE KEY-----")),
        "[A-Za-z0-9/+]{40}".prop_map(|s| format!("AWS_SECRET_ACCESS_KEY={s}")),
    ]
}

#[derive(Debug, Clone)]
struct Planted {
    value: Value,
    secrets: Vec<String>,
}

fn leaf() -> impl Strategy<Value = Planted> {
    let plain = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0u32..100_000).prop_map(Value::from),
        "[a-z ]{0,16}".prop_map(Value::String),
    ]
    .prop_map(|value| Planted {
        value,
        secrets: vec![],
    });
    let alone = secret().prop_map(|s| Planted {
        value: Value::String(s.clone()),
        secrets: vec![s],
    });
    let embedded =
        ("([a-z]{1,6} ){0,3}", secret(), "( [a-z]{1,6}){0,3}").prop_map(|(a, s, b)| Planted {
            value: Value::String(format!("{a}{s}{b}")),
            secrets: vec![s],
        });
    let number = card()
        .prop_filter_map("ungrouped card", |c| c.parse::<u64>().ok().map(|n| (c, n)))
        .prop_map(|(c, n)| Planted {
            value: Value::from(n),
            secrets: vec![c],
        });
    prop_oneof![3 => plain, 2 => alone, 2 => embedded, 1 => number]
}

fn tree() -> impl Strategy<Value = Planted> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|items| {
                let mut secrets = Vec::new();
                let mut values = Vec::new();
                for p in items {
                    secrets.extend(p.secrets);
                    values.push(p.value);
                }
                Planted {
                    value: Value::Array(values),
                    secrets,
                }
            }),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..6).prop_map(|entries| {
                // A repeated key replaces the earlier value, and its secrets
                // with it (keeping the first one's secrets instead planted
                // secrets that were no longer there).
                let mut last: std::collections::BTreeMap<String, Planted> = Default::default();
                for (k, p) in entries {
                    last.insert(k, p);
                }
                let mut secrets = Vec::new();
                let mut map = Map::new();
                for (k, p) in last {
                    secrets.extend(p.secrets);
                    map.insert(k, p.value);
                }
                Planted {
                    value: Value::Object(map),
                    secrets,
                }
            }),
        ]
    })
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| strings(i, out)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn planted_secrets_are_recognised(s in secret()) {
        prop_assert!(!Detector::scan(&s).is_empty(), "no detector matches {:?}", s);
    }

    #[test]
    fn no_detector_match_survives(inputs in tree(), output in tree()) {
        let r = redactor();
        let mut i = inputs.value.clone();
        let mut o = output.value.clone();
        let summary = r.apply("any.action", &mut i, &mut o);

        let text = serde_json::to_string(&serde_json::json!({"inputs": i, "output": o}))
            .expect("serializable");
        prop_assert_eq!(Detector::scan(&text), vec![], "in {}", text);
        let mut left = Vec::new();
        strings(&i, &mut left);
        strings(&o, &mut left);
        for s in &left {
            prop_assert_eq!(Detector::scan(s), vec![], "in {:?}", s);
            for secret in inputs.secrets.iter().chain(&output.secrets) {
                prop_assert!(!s.contains(secret.as_str()), "{:?} survived in {:?}", secret, s);
            }
        }
        let planted = inputs.secrets.len() + output.secrets.len();
        prop_assert!(planted == 0 || summary.fields_redacted_count > 0);
        let mut sorted = summary.fields_redacted_paths.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(&sorted, &summary.fields_redacted_paths);
        prop_assert_eq!(summary.fields_redacted_count, sorted.len() as u64);
    }

    #[test]
    fn secret_keys_are_caught_in_any_spelling(
        base in prop_oneof![
            Just("api_key"), Just("password"), Just("client_secret"), Just("access_token"),
            Just("private_key"), Just("set_cookie"), Just("aws_secret_access_key"),
        ],
        upper in prop::collection::vec(any::<bool>(), 32),
        seps in prop::collection::vec(prop_oneof![Just(""), Just("_"), Just("-"), Just("."), Just(" ")], 32),
    ) {
        // Re-spell: random case, and a random separator (or none) between words.
        let mut key = String::new();
        for (i, word) in base.split('_').enumerate() {
            if i > 0 {
                key.push_str(seps[i]);
            }
            for (j, c) in word.chars().enumerate() {
                let c = if upper[(i * 7 + j) % 32] { c.to_ascii_uppercase() } else { c };
                key.push(c);
            }
        }
        let mut inputs = serde_json::json!([{ key.clone(): "plain-value-123", "other": "plain" }]);
        let mut output = Value::Null;
        let s = redactor().apply("x", &mut inputs, &mut output);
        let got = inputs[0][key.as_str()].as_str().unwrap_or_default().to_owned();
        prop_assert!(got.starts_with("[REDACTED:"), "{} -> {}", key, got);
        prop_assert_eq!(&inputs[0]["other"], "plain");
        prop_assert_eq!(s.fields_redacted_count, 1);
    }
}
