//! The reference tools' golden counterparty bundle and the fuzz corpora.

use std::path::PathBuf;

use intentproof_bundle::archive::{ReadLimits, read_archive};
use intentproof_bundle::{VerifyOptions, pack_members, verify};
use sha2::{Digest, Sha256};

fn fixture(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/intentproof-spec/golden")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn golden_counterparty_passes_with_the_exact_stdout() {
    let bundle = fixture("counterparty/counterparty-refund.proof.tar.zst");
    let report = verify(&bundle, &VerifyOptions::default());
    let expected = fixture("counterparty/expected-verify-stdout.txt");
    assert_eq!(report.human(), String::from_utf8(expected).unwrap());
    assert_eq!(report.exit_code(), 0);
    let sha = String::from_utf8(fixture("counterparty/expected-verify-stdout-sha256.txt")).unwrap();
    let got: String = Sha256::digest(report.human().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(got, sha.trim());
    // The golden events are unsigned legacy records: reported, never verified.
    assert_eq!(report.summary.events, 2);
    assert_eq!(report.summary.events_unsigned, 2);
    assert_eq!(report.summary.events_signature_verified, 0);
    assert!(report.warnings.iter().any(|w| w.contains("no signature")));
}

#[test]
fn golden_as_plain_tar_passes_too() {
    let bundle = fixture("counterparty/counterparty-refund.proof.tar.zst");
    let archive = read_archive(&bundle, &ReadLimits::default()).unwrap();
    let members: Vec<(String, Vec<u8>)> = archive
        .members
        .into_iter()
        .map(|m| (m.path, m.data))
        .collect();
    let plain = pack_members(&members, false).unwrap();
    assert!(!intentproof_bundle::archive::is_zstd(&plain));
    let report = verify(&plain, &VerifyOptions::default());
    assert!(report.passed(), "{}", report.human());
    assert!(!report.summary.compressed);
}

/// Byte ranges of the manifest's string values that nothing binds when the
/// manifest is unsigned (no other member repeats them).
fn unbound_manifest_ranges(manifest: &[u8]) -> Vec<std::ops::Range<usize>> {
    let text = std::str::from_utf8(manifest).unwrap();
    [
        "bundle_id",
        "created_at",
        "spec_version",
        "flow_snapshot_id",
    ]
    .iter()
    .map(|key| {
        let marker = format!("\"{key}\": \"");
        let start = text.find(&marker).unwrap() + marker.len();
        let end = start + text[start..].find('"').unwrap();
        start..end
    })
    .collect()
}

#[test]
fn golden_every_single_byte_flip_fails() {
    let bundle = fixture("counterparty/counterparty-refund.proof.tar.zst");
    let archive = read_archive(&bundle, &ReadLimits::default()).unwrap();
    let members: Vec<(String, Vec<u8>)> = archive
        .members
        .into_iter()
        .map(|m| (m.path, m.data))
        .collect();
    let mut checked = 0;
    let mut unbound = 0;
    for (i, (path, data)) in members.iter().enumerate() {
        let skip = if path == "manifest.json" {
            unbound_manifest_ranges(data)
        } else {
            Vec::new()
        };
        for pos in 0..data.len() {
            if skip.iter().any(|r| r.contains(&pos)) {
                unbound += 1;
                continue;
            }
            let mut edited = members.clone();
            edited[i].1[pos] ^= 0x01;
            // Plain tar keeps this fast; a few go through zstd as well.
            let packed = pack_members(&edited, pos % 97 == 0).unwrap();
            let report = verify(&packed, &VerifyOptions::default());
            assert!(
                !report.passed(),
                "flipping byte {pos} of {path} was not detected"
            );
            assert!(report.reason.starts_with("bundle."), "{}", report.reason);
            assert!(report.detail.is_some());
            checked += 1;
        }
    }
    // attestations.jsonl is empty: 409 + 235 + 1439 + 229 + 184 bytes.
    assert_eq!(checked + unbound, 409 + 235 + 1439 + 229 + 184);
    assert!(checked > 2300, "{checked}");
}

#[test]
fn fuzz_corpora_fail_clearly() {
    for (name, needle) in [
        ("empty-input.bin", "input is empty"),
        ("empty-tar.bin", "no members"),
    ] {
        let bytes = fixture(&format!("fuzz-corpora/bundle/{name}"));
        let report = verify(&bytes, &VerifyOptions::default());
        assert!(!report.passed(), "{name}");
        assert_eq!(report.reason, "bundle.manifest_missing", "{name}");
        let detail = report.detail.clone().unwrap();
        assert!(detail.contains(needle), "{name}: {detail}");
        assert!(
            report
                .human()
                .starts_with("✗ fail: bundle.manifest_missing\n")
        );
    }
}
