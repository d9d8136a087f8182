//! `POST /v1/events:batch`' body checks: the line split the handler does
//! (`api::batch_lines`), then `ingest::prepare` on each line (odd lines
//! anonymous, even ones authenticated), as the bulk threads do.
//!
//! Must hold: no panic; each line is non-blank, holds no newline, and
//! lines come in increasing line order; each line obeys what the
//! `ingest_single` target checks.
#![no_main]

use intentproof_gateway::api::batch_lines;
use intentproof_gateway::ingest::Caller;
use libfuzzer_sys::fuzz_target;
use tokio_util::bytes::Bytes;

/// Most lines checked per input: enough to mix valid and invalid lines,
/// few enough to keep executions fast (the handler's own cap is 10,000).
const MAX_LINES: usize = 64;

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    let lines = batch_lines(&body);
    let total = data.iter().filter(|b| **b == b'\n').count() + 1;
    let mut previous = 0;
    for (number, line) in &lines {
        assert!(
            *number > previous && *number <= total,
            "line numbers out of order"
        );
        previous = *number;
        assert!(!line.contains(&b'\n'), "a batch line holds a newline");
        assert!(
            line.iter().any(|b| !b.is_ascii_whitespace()),
            "a blank batch line was kept"
        );
    }
    intentproof_fuzz::with_ingest(|ctx| {
        for (number, line) in lines.iter().take(MAX_LINES) {
            let caller = if number % 2 == 1 {
                Caller::Anonymous
            } else {
                Caller::Authenticated
            };
            intentproof_fuzz::check_prepared(ctx, line, caller);
        }
    });
});
