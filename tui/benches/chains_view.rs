//! Keystroke-to-frame time of the terminal UI on a store of 100,000
//! chains (and on a chain of 10,000 events): handling one key and drawing
//! the next frame into ratatui's `TestBackend` (the same widgets and
//! buffer diff as a real terminal, without the terminal's own write).
//! Goal: under 50 ms.
//!
//! Run: `cargo bench -p intentproof-tui --bench chains_view`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use intentproof_tui::model::{ChainDetail, ChainRow, EventRow, Finding, Integrity};
use intentproof_tui::{App, MemorySource, settle};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;

const CHAINS: usize = 100_000;
const EVENTS: usize = 10_000;

fn time_at(i: usize) -> String {
    // One chain per second, newest last.
    let s = i as u64;
    format!(
        "2026-05-{:02}T{:02}:{:02}:{:02}.000Z",
        1 + s / 86_400,
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60
    )
}

fn big_source() -> MemorySource {
    let chains: Vec<ChainRow> = (0..CHAINS)
        .rev()
        .map(|i| ChainRow {
            correlation_id: format!("req_{i:08x}_0197b1a0-0000-7000-8000").into(),
            first_at: time_at(i).into(),
            last_at: time_at(i).into(),
            agent: ["claude-desktop", "cursor", "vscode", ""][i % 4].into(),
            intents: format!("refund order ORD-{i} and email the receipt").into(),
            events: (i % 17) as u32 + 1,
            errors: u32::from(i % 11 == 0),
            integrity: Integrity {
                key_unknown: u32::from(i % 97 == 0),
                ..Integrity::default()
            },
            flags: Default::default(),
        })
        .collect();
    let findings: Vec<Finding> = (0..CHAINS)
        .step_by(7)
        .filter_map(|i| {
            let row = serde_json::from_value(json!({
                "kind": "incomplete_intent",
                "correlation_id": format!("req_{i:08x}_0197b1a0-0000-7000-8000"),
                "action": "mcp.payments.send_receipt_email",
                "message": "step 2 never succeeded",
                "at": time_at(i),
            }))
            .ok()?;
            Finding::from_wire(&row)
        })
        .collect();
    MemorySource {
        chains,
        findings,
        ..MemorySource::default()
    }
}

fn big_chain() -> MemorySource {
    let id = "req_big_chain";
    let events = (0..EVENTS)
        .map(|i| EventRow {
            id: format!("0197b1a0-{i:04x}-7000-8000-000000000000").into(),
            seq: i as u64,
            instance: "inst_bench".into(),
            position: i as u64 + 1,
            action: "mcp.payments.lookup_order".into(),
            intent: "look up the order".into(),
            ok: i % 13 != 0,
            started_at: time_at(i).into(),
            completed_at: time_at(i).into(),
            duration_ms: (i % 300) as u64,
            signature: "verified".into(),
            declares: None,
            closes: None,
            completes: None,
            task: false,
            refused: false,
            approval: None,
        })
        .collect();
    let row = ChainRow {
        correlation_id: id.into(),
        first_at: time_at(0).into(),
        last_at: time_at(EVENTS - 1).into(),
        events: EVENTS as u32,
        ..ChainRow::default()
    };
    MemorySource {
        chains: vec![row.clone()],
        details: vec![ChainDetail {
            row,
            events,
            ..ChainDetail::default()
        }],
        ..MemorySource::default()
    }
}

fn key(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn frame(app: &mut App, terminal: &mut Terminal<TestBackend>) {
    terminal
        .draw(|f| intentproof_tui::ui::draw(f, app))
        .expect("TestBackend cannot fail");
}

fn opened(source: &mut MemorySource, w: u16, h: u16) -> (App, Terminal<TestBackend>) {
    let mut app = App::new("bench", PathBuf::from("."));
    settle(&mut app, source);
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("TestBackend");
    frame(&mut app, &mut terminal);
    (app, terminal)
}

fn bench(c: &mut Criterion) {
    let mut source = big_source();

    // Open: load 100,000 rows (10 pages) and findings, filter, sort, first frame.
    let start = Instant::now();
    let (app, _) = opened(&mut source, 160, 48);
    eprintln!(
        "open 100,000 chains (load from memory + first frame): {:?}; rows {}",
        start.elapsed(),
        app.rows.len()
    );
    drop(app);
    let mut group = c.benchmark_group("chains_100k");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("open_and_first_frame", |b| {
        b.iter(|| {
            let (app, _) = opened(&mut source, 160, 48);
            black_box(app.visible.len())
        })
    });
    group.finish();

    let mut group = c.benchmark_group("keystroke_to_frame_100k_chains");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(4));
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        let (mut app, mut terminal) = opened(&mut source, w, h);
        group.bench_function(format!("j_{w}x{h}"), |b| {
            b.iter(|| {
                app.handle(&key(KeyCode::Char('j')));
                frame(&mut app, &mut terminal);
            })
        });
        group.bench_function(format!("page_down_{w}x{h}"), |b| {
            b.iter(|| {
                app.handle(&key(KeyCode::PageDown));
                frame(&mut app, &mut terminal);
            })
        });
        // Alternating End and Home: every frame jumps 100,000 rows.
        let mut end = true;
        group.bench_function(format!("end_home_{w}x{h}"), |b| {
            b.iter(|| {
                app.handle(&key(if end { KeyCode::End } else { KeyCode::Home }));
                end = !end;
                frame(&mut app, &mut terminal);
            })
        });
    }
    // Typing in the search box filters all 100,000 rows per keystroke.
    let (mut app, mut terminal) = opened(&mut source, 160, 48);
    app.handle(&key(KeyCode::Char('/')));
    app.handle(&key(KeyCode::Char('0')));
    let mut typed = false;
    group.bench_function("search_keystroke_160x48", |b| {
        b.iter(|| {
            app.handle(&key(if typed {
                KeyCode::Backspace
            } else {
                KeyCode::Char('a')
            }));
            typed = !typed;
            frame(&mut app, &mut terminal);
        })
    });
    // Changing the sort re-sorts all 100,000 rows.
    let (mut app, mut terminal) = opened(&mut source, 160, 48);
    group.bench_function("sort_keystroke_160x48", |b| {
        b.iter(|| {
            app.handle(&key(KeyCode::Char('s')));
            frame(&mut app, &mut terminal);
        })
    });
    group.finish();

    let mut chain = big_chain();
    let mut group = c.benchmark_group("chain_10k_events");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(4));
    let (mut app, mut terminal) = opened(&mut chain, 160, 48);
    app.handle(&key(KeyCode::Enter));
    settle(&mut app, &mut chain);
    frame(&mut app, &mut terminal);
    assert_eq!(app.view, intentproof_tui::View::Chain);
    group.bench_function("open_chain_160x48", |b| {
        b.iter(|| {
            app.handle(&key(KeyCode::Esc));
            app.handle(&key(KeyCode::Enter));
            settle(&mut app, &mut chain);
            frame(&mut app, &mut terminal);
        })
    });
    let mut end = true;
    group.bench_function("end_home_160x48", |b| {
        b.iter(|| {
            app.handle(&key(if end { KeyCode::End } else { KeyCode::Home }));
            end = !end;
            frame(&mut app, &mut terminal);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
