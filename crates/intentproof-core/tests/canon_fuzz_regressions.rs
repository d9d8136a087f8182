//! Inputs the `jcs` fuzz target (`fuzz/fuzz_targets/jcs.rs`) found, kept
//! as tests of what the canonicalizer does with them.

use intentproof_core::canon::{CanonError, canonicalize, parse_strict};

/// Found as `1e16` (fuzz/artifacts/jcs/crash-745ae634…). A double with an
/// integral value beyond 2^53 canonicalizes to its digits, as RFC 8785
/// says, and the strict parser refuses those digits as an unsafe integer
/// literal. That is by design (`canon.rs`: canonical bytes are hashed,
/// never parsed strictly again); read leniently, the digits are the same
/// double, which canonicalizes to the same bytes.
#[test]
fn a_large_integral_double_canonicalizes_to_digits_the_strict_parser_refuses() {
    for (input, digits) in [
        ("1e16", "10000000000000000"),
        ("1e20", "100000000000000000000"),
        ("-9007199254740994.0", "-9007199254740994"),
    ] {
        let value = parse_strict(input.as_bytes()).unwrap();
        let canonical = canonicalize(&value).unwrap();
        assert_eq!(String::from_utf8_lossy(&canonical), digits, "{input}");
        assert!(
            matches!(
                parse_strict(&canonical),
                Err(CanonError::UnsafeInteger { .. })
            ),
            "{input}"
        );
        let lenient: f64 = serde_json::from_slice(&canonical).unwrap();
        assert_eq!(Some(lenient), value.as_f64(), "{input}");
        assert_eq!(
            canonicalize(&serde_json::json!(lenient)).unwrap(),
            canonical,
            "{input}"
        );
    }
    // 2^53 itself is exact: its digits parse strictly.
    let canonical = canonicalize(&parse_strict(b"9007199254740992.0").unwrap()).unwrap();
    assert_eq!(canonical, b"9007199254740992");
    assert!(parse_strict(&canonical).is_ok());
}
