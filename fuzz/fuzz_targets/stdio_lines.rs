//! The stdio framing (`lines::LineCodec`, used by the stdio relay on both
//! sides and by HTTP `command` upstreams) on arbitrary bytes, fed in
//! data-derived chunks, with a line limit derived from the data (small, so
//! oversize lines are common).
//!
//! Must hold: no panic; the lines are exactly those of a plain reference
//! split on `\n`: a line over the limit is dropped as too long (with its
//! size and whether it ended), one that is not UTF-8 is dropped as such
//! (at the right offset), any other is yielded without its `\r`; a
//! dropped line's JSON-RPC answer and description never panic.
#![no_main]

use intentproof_mcp::lines::{DropReason, Line, LineCodec, Side};
use libfuzzer_sys::fuzz_target;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

/// What the codec must yield for one line (without its `\n`).
#[derive(Debug, PartialEq)]
enum Expected {
    Text(String),
    Dropped {
        reason: DropReason,
        size: usize,
        terminated: bool,
    },
}

fn reference(data: &[u8], max: usize) -> Vec<Expected> {
    let mut out = Vec::new();
    let mut segments: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    // The piece after the last `\n`: a line only when it holds bytes.
    let last = segments.pop().unwrap_or_default();
    let unterminated = (!last.is_empty()).then_some(last);
    let all = segments
        .into_iter()
        .map(|s| (s, true))
        .chain(unterminated.map(|s| (s, false)));
    for (segment, terminated) in all {
        let size = segment.len();
        if size > max {
            out.push(Expected::Dropped {
                reason: DropReason::TooLong { limit: max },
                size,
                terminated,
            });
            continue;
        }
        let body = segment.strip_suffix(b"\r").unwrap_or(segment);
        match std::str::from_utf8(body) {
            Ok(text) => out.push(Expected::Text(text.to_owned())),
            Err(e) => out.push(Expected::Dropped {
                reason: DropReason::NotUtf8 {
                    valid_up_to: e.valid_up_to(),
                },
                size,
                terminated,
            }),
        }
    }
    out
}

fn seen(line: Line) -> Expected {
    match line {
        Line::Text(text) => Expected::Text(text),
        Line::Dropped(dropped) => {
            for side in [Side::Client, Side::Upstream] {
                let answer = dropped.answer(side);
                assert_eq!(answer.is_some(), dropped.id.is_some());
                let _ = dropped.describe(side, true);
                let _ = dropped.describe(side, false);
            }
            Expected::Dropped {
                reason: dropped.reason,
                size: dropped.size,
                terminated: dropped.terminated,
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let max = 1 + (data.len() * 31 + usize::from(data.first().copied().unwrap_or(0))) % 300;
    let mut codec = LineCodec::new(max);
    let mut buf = BytesMut::new();
    let mut lines = Vec::new();
    for chunk in intentproof_fuzz::chunks(data) {
        buf.extend_from_slice(chunk);
        while let Some(line) = codec.decode(&mut buf).expect("decoding never fails") {
            lines.push(seen(line));
        }
    }
    while let Some(line) = codec.decode_eof(&mut buf).expect("decoding never fails") {
        lines.push(seen(line));
    }
    assert_eq!(lines, reference(data, max), "max {max}");
});
