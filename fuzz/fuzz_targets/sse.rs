//! The `text/event-stream` parser of remote MCP upstreams on arbitrary
//! bytes, fed whole and in chunks (the way a body arrives).
//!
//! Must hold: no panic; where the split is (whole, in data-derived chunks,
//! byte by byte) changes nothing: the same messages, last event id and
//! retry, or an error either way.
#![no_main]

use intentproof_mcp::parse_sse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse_sse(&[data]);
    let chunked = parse_sse(&intentproof_fuzz::chunks(data));
    let bytewise: Vec<&[u8]> = data.chunks(1).collect();
    let bytewise = parse_sse(&bytewise);
    match (&whole, &chunked, &bytewise) {
        (Ok(w), Ok(c), Ok(b)) => {
            assert_eq!(w, c, "chunked parse differs from the whole");
            assert_eq!(w, b, "byte-by-byte parse differs from the whole");
            for message in &w.messages {
                assert!(!message.trim().is_empty(), "an empty message was yielded");
            }
        }
        (Err(_), Err(_), Err(_)) => {}
        _ => panic!("split changes success: {whole:?} / {chunked:?} / {bytewise:?}"),
    }
});
