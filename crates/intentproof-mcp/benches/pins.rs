//! What tool pinning costs a `tools/call`: [`Pins::state`] of a pinned
//! tool (50 tools pinned), the one thing the call path does for pins, and
//! of a changed one (which checks the file for an approval). The
//! end-to-end figure (a stdio `tools/call` with `--on-tool-change block`,
//! against record only) is `bench/mcp_guard.py`; both are in BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use intentproof_mcp::pins::Pins;
use serde_json::json;
use std::hint::black_box;

fn state(c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let Ok(pins) = Pins::open(dir.path(), "bench") else {
        return;
    };
    let tools: Vec<_> = (0..50)
        .map(|i| json!({"name": format!("tool_{i}"), "description": "d", "inputSchema": {"type": "object"}}))
        .collect();
    pins.observe(&tools, true);
    let mut changed = tools.clone();
    changed[49]["description"] = json!("changed");
    pins.observe(&changed, false);
    c.bench_function("pins state (pinned tool)", |b| {
        b.iter(|| pins.state(black_box("tool_7")))
    });
    c.bench_function("pins state (changed tool: stat for an approval)", |b| {
        b.iter(|| pins.state(black_box("tool_49")))
    });
}

criterion_group!(benches, state);
criterion_main!(benches);
