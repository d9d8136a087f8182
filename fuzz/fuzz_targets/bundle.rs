//! The bundle reader on arbitrary bytes: the bounded archive reader
//! (`read_archive`) and the whole offline verification (`verify`), with no
//! trusted key.
//!
//! Must hold: no panic; every member the reader returns has a safe,
//! unique relative path within the limits; without a trusted key the
//! verdict is never "attested"; a report that passed is unattested, one
//! that did not is a failure; the JSON report is JSON.
#![no_main]

use std::collections::HashSet;

use intentproof_bundle::{ReadLimits, Verdict, VerifyOptions, read_archive, verify};
use libfuzzer_sys::fuzz_target;

/// Small limits keep a decompression bomb from spending the run's time
/// and memory; the checks are the same at any size.
const LIMITS: ReadLimits = ReadLimits {
    max_total_bytes: 8 << 20,
    max_members: 256,
    max_member_bytes: 4 << 20,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(archive) = read_archive(data, &LIMITS) {
        assert!(archive.members.len() <= LIMITS.max_members);
        let mut seen = HashSet::new();
        for member in &archive.members {
            let path = member.path.as_str();
            assert!(
                !path.starts_with('/')
                    && !path.contains(['\\', '\0'])
                    && path
                        .split('/')
                        .all(|c| !c.is_empty() && c != "." && c != ".."),
                "unsafe member path {path:?}"
            );
            assert!(seen.insert(path), "member {path:?} returned twice");
            assert!(member.data.len() as u64 <= LIMITS.max_member_bytes);
        }
    }
    let options = VerifyOptions {
        limits: LIMITS,
        threads: 1,
        ..VerifyOptions::default()
    };
    let report = verify(data, &options);
    assert_ne!(
        report.verdict,
        Verdict::Attested,
        "attested with no trusted key"
    );
    if report.passed() {
        assert_eq!(report.verdict, Verdict::Unattested);
    } else {
        assert_eq!(report.verdict, Verdict::Fail);
    }
    let _ = report.human();
    let _ = report.what_verified();
    let _ = report.human_verdict();
    let json = report.to_json();
    assert!(
        serde_json::from_str::<serde_json::Value>(&json).is_ok(),
        "the JSON report is not JSON: {json}"
    );
});
