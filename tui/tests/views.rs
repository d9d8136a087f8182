//! Snapshot tests of every view, with and without flags, at 80x24 and
//! 160x48. The data is fixed (the daemon's JSON forms, parsed by the same
//! code as live answers); times are UTC strings, so nothing depends on the
//! clock or the local timezone. A mismatch fails (`insta` never accepts a
//! new snapshot under CI=true; locally, review with `cargo insta review`).

use std::path::PathBuf;

use intentproof_tui::model::{ChainDetail, ChainRow, EventDetail, Finding, PlanInfo};
use intentproof_tui::{App, MemorySource, View, settle};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{
    Event, KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind,
};
use serde_json::{Value, json};

/// A fixture written as the daemon's JSON, read as its wire type.
fn wire<T: serde::de::DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{e}: {value}"))
}

const REFUND: &str = "req_refund_ord_1042";
const LOOKUP: &str = "req_lookup_ord_7731";
const BATCH: &str = "sdk-nightly-2026-05-11";

fn chain_json(
    id: &str,
    agent: &str,
    intents: &[&str],
    events: u64,
    errors: u64,
    last: &str,
    key_unknown: u64,
) -> Value {
    json!({
        "correlation_id": id,
        "agent": agent,
        "intents": intents,
        "events": events,
        "errors": errors,
        "first_at": "2026-05-11T14:32:17.421Z",
        "last_at": last,
        "gaps": 0,
        "key_unknown": key_unknown,
        "invalid_signatures": 0,
        "verified": key_unknown == 0,
    })
}

#[allow(clippy::too_many_arguments)] // one event of the fixture, spelled out
fn event_json(
    seq: u64,
    pos: u64,
    id: &str,
    action: &str,
    intent: &str,
    ok: bool,
    start: &str,
    end: &str,
    ms: u64,
) -> Value {
    let mut event = json!({
        "schema": "intentproof.event.v1",
        "event_id": id,
        "tenant_id": "local",
        "instance_id": "inst_01JXDEMO0GATEWAY",
        "correlation_id": REFUND,
        "chain_position": pos,
        "prev_event_hash": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "intent": intent,
        "action": action,
        "status": if ok { "ok" } else { "error" },
        "started_at": start,
        "completed_at": end,
        "duration_ms": ms,
        "attributes": {"mcp.server": "payments", "mcp.client.name": "claude-desktop", "mcp.client.version": "0.9.2"},
        "signature": {"alg": "ed25519", "key_id": "inst_01JXDEMO0GATEWAY:k1", "value": "AAAA"},
    });
    if action == "intentproof.plan.declare" {
        event["output"] = json!({"plan_id": "plan_01JXPLAN"});
        event["inputs"] = json!({"intent": "refund order ORD-1042 and email the receipt"});
    }
    json!({"seq": seq, "signature": "verified", "event": event})
}

fn refund_events() -> Vec<Value> {
    vec![
        event_json(
            10,
            1,
            "0197b1a0-0001-7000-8000-000000000001",
            "intentproof.plan.declare",
            "refund order ORD-1042 and email the receipt",
            true,
            "2026-05-11T14:32:17.421Z",
            "2026-05-11T14:32:17.425Z",
            4,
        ),
        event_json(
            11,
            2,
            "0197b1a0-0002-7000-8000-000000000002",
            "mcp.payments.refund_payment",
            "Refund the customer's card",
            true,
            "2026-05-11T14:32:18.010Z",
            "2026-05-11T14:32:18.130Z",
            120,
        ),
        event_json(
            12,
            3,
            "0197b1a0-0003-7000-8000-000000000003",
            "mcp.payments.lookup_order",
            "undeclared",
            true,
            "2026-05-11T14:32:19.200Z",
            "2026-05-11T14:32:19.235Z",
            35,
        ),
        event_json(
            13,
            4,
            "0197b1a0-0004-7000-8000-000000000004",
            "intentproof.plan.close",
            "refund order ORD-1042 and email the receipt",
            true,
            "2026-05-11T14:33:19.300Z",
            "2026-05-11T14:33:19.300Z",
            0,
        ),
    ]
}

fn plan(open: bool) -> Value {
    json!({
        "plan_id": "plan_01JXPLAN",
        "correlation_id": REFUND,
        "intent": "refund order ORD-1042 and email the receipt",
        "steps": [
            {"action": "mcp.payments.refund_payment", "purpose": "Refund the customer's card"},
            {"action": "mcp.payments.send_receipt_email", "purpose": "Email the customer the refund receipt"},
        ],
        "declared_at": "2026-05-11T14:32:17.421Z",
        "state": if open { "open" } else { "closed" },
        "closed_by": if open { Value::Null } else { json!("closed") },
        "calls": 2,
        "flags": if open { 0 } else { 2 },
    })
}

fn findings() -> Vec<Finding> {
    [
        json!({"kind": "incomplete_intent", "plan_id": "plan_01JXPLAN", "correlation_id": REFUND, "step_index": 1,
               "action": "mcp.payments.send_receipt_email", "event_ids": [],
               "message": "step 2 (mcp.payments.send_receipt_email: Email the customer the refund receipt) never succeeded",
               "at": "2026-05-11T14:33:19.300Z"}),
        json!({"kind": "unplanned_call", "plan_id": "plan_01JXPLAN", "correlation_id": REFUND,
               "action": "mcp.payments.lookup_order", "event_ids": ["0197b1a0-0003-7000-8000-000000000003"],
               "message": "mcp.payments.lookup_order was called but no step of the plan covers it",
               "at": "2026-05-11T14:33:19.300Z"}),
        json!({"kind": "failed_step", "plan_id": "plan_01JXOTHER", "correlation_id": BATCH, "step_index": 0,
               "action": "http.ledger.post_entry", "event_ids": ["0197b0ff-0009-7000-8000-000000000009"],
               "message": "step 1 (http.ledger.post_entry) only failed",
               "at": "2026-05-11T02:10:44.002Z"}),
    ]
    .iter()
    .filter_map(|v| Finding::from_wire(&wire(v)))
    .collect()
}

/// The fixture: three chains; `flagged` adds findings, an untrusted key on
/// one chain and a closed plan with a missing step.
fn source(flagged: bool) -> MemorySource {
    let chains = [
        chain_json(
            REFUND,
            "claude-desktop",
            &[
                "refund order ORD-1042 and email the receipt",
                "Refund the customer's card",
                "undeclared",
            ],
            4,
            0,
            "2026-05-11T14:33:19.300Z",
            0,
        ),
        chain_json(
            LOOKUP,
            "cursor",
            &["look up order ORD-7731"],
            2,
            0,
            "2026-05-11T09:05:02.118Z",
            0,
        ),
        chain_json(
            BATCH,
            "",
            &["nightly ledger reconciliation"],
            5,
            1,
            "2026-05-11T02:10:44.002Z",
            if flagged { 5 } else { 0 },
        ),
    ];
    let refund_body = json!({"chain": chains[0], "events": refund_events()});
    let detail = ChainDetail::from_wire(
        &wire(&refund_body),
        vec![PlanInfo::from_wire(&wire(&plan(!flagged)))],
    );
    let mut refund_event = refund_events()[1].clone();
    refund_event["event"]["inputs"] = json!({"order_id": "ORD-1042", "amount_cents": 4999, "card_number": "***************4242",
                                             "customer": {"email": "hmac-sha256:5f1c0e2a", "name": "Ada"}});
    refund_event["event"]["output"] = json!({"refund_id": "re_3PAb12", "status": "succeeded"});
    refund_event["event"]["redaction_summary"] = json!({"rules_applied": ["card-numbers", "emails"], "fields_redacted_count": 2,
                                                        "fields_redacted_paths": ["$.inputs.card_number", "$.inputs.customer.email"]});
    refund_event["inclusion"] = json!({
        "leaf_index": 11, "tree_size": 14,
        "root": "sha256:9b1e3cf07d6a4c8fb2d1e0a9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9",
        "proof": ["aa", "bb", "cc", "dd"],
        "checkpoint": if flagged { Value::Null } else { json!({"schema": "intentproof.checkpoint.v1", "tree_size": 14,
            "root": "sha256:9b1e3cf07d6a4c8fb2d1e0a9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9", "time": "2026-05-11T14:34:00.000Z",
            "key_id": "inst_01JXDEMO0DAEMON:k1", "signature": "AAAA"}) },
    });
    let event = EventDetail::from_wire(wire(&refund_event), None);
    MemorySource {
        chains: chains
            .iter()
            .map(|v| ChainRow::from_wire(&wire(v)))
            .collect(),
        findings: if flagged { findings() } else { Vec::new() },
        details: vec![detail],
        events: vec![event],
        bundle: Some(b"not a real bundle".to_vec()),
        verify: None,
    }
}

fn key(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn screen(app: &mut App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|f| intentproof_tui::ui::draw(f, app))
        .unwrap();
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..height {
        let mut line = String::new();
        for x in 0..width {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn app_on(src: &mut MemorySource) -> App {
    let mut app = App::new("memory", PathBuf::from("/tmp"));
    settle(&mut app, src);
    app
}

fn press(app: &mut App, src: &mut MemorySource, codes: &[KeyCode]) {
    for code in codes {
        app.handle(&key(*code));
        settle(app, src);
    }
}

fn chains_view(flagged: bool) -> (App, MemorySource) {
    let mut src = source(flagged);
    let app = app_on(&mut src);
    (app, src)
}

fn chain_view(flagged: bool) -> (App, MemorySource) {
    let (mut app, mut src) = chains_view(flagged);
    press(&mut app, &mut src, &[KeyCode::Enter]);
    assert_eq!(app.view, View::Chain);
    (app, src)
}

fn event_view(flagged: bool) -> (App, MemorySource) {
    let (mut app, mut src) = chain_view(flagged);
    press(&mut app, &mut src, &[KeyCode::Down, KeyCode::Enter]);
    assert_eq!(app.view, View::Event);
    (app, src)
}

fn findings_view(flagged: bool) -> (App, MemorySource) {
    let (mut app, mut src) = chains_view(flagged);
    press(&mut app, &mut src, &[KeyCode::Tab]);
    assert_eq!(app.view, View::Findings);
    (app, src)
}

macro_rules! snapshots {
    ($($name:ident => $make:ident($flagged:expr);)*) => {$(
        #[test]
        fn $name() {
            let (mut app, _src) = $make($flagged);
            insta::assert_snapshot!(concat!(stringify!($name), "_80x24"), screen(&mut app, 80, 24));
            insta::assert_snapshot!(concat!(stringify!($name), "_160x48"), screen(&mut app, 160, 48));
        }
    )*};
}

snapshots! {
    chains_flagged => chains_view(true);
    chains_clean => chains_view(false);
    chain_flagged => chain_view(true);
    chain_clean => chain_view(false);
    event_flagged => event_view(true);
    event_clean => event_view(false);
    findings_flagged => findings_view(true);
    findings_clean => findings_view(false);
}

#[test]
fn help_overlay() {
    let (mut app, mut src) = chains_view(true);
    press(&mut app, &mut src, &[KeyCode::Char('?')]);
    insta::assert_snapshot!("help_80x24", screen(&mut app, 80, 24));
    press(&mut app, &mut src, &[KeyCode::Esc]);
    assert!(!app.help);
}

#[test]
fn search_by_id_filter_and_sort() {
    let (mut app, mut src) = chains_view(true);
    press(&mut app, &mut src, &[KeyCode::Char('/')]);
    for c in "7731".chars() {
        press(&mut app, &mut src, &[KeyCode::Char(c)]);
    }
    press(&mut app, &mut src, &[KeyCode::Enter]);
    assert_eq!(app.visible.len(), 1);
    assert_eq!(&*app.selected_row().unwrap().correlation_id, LOOKUP);
    // Esc in the chains view clears the search.
    press(&mut app, &mut src, &[KeyCode::Esc]);
    assert_eq!(app.visible.len(), 3);

    press(&mut app, &mut src, &[KeyCode::Char('f')]);
    for c in "flag:any".chars() {
        press(&mut app, &mut src, &[KeyCode::Char(c)]);
    }
    press(&mut app, &mut src, &[KeyCode::Enter]);
    let ids: Vec<&str> = app
        .visible
        .iter()
        .map(|&i| &*app.rows[i as usize].correlation_id)
        .collect();
    assert_eq!(ids, [REFUND, BATCH]);

    press(&mut app, &mut src, &[KeyCode::Char('f')]);
    for _ in 0.."flag:any".len() {
        press(&mut app, &mut src, &[KeyCode::Backspace]);
    }
    for c in "status:error".chars() {
        press(&mut app, &mut src, &[KeyCode::Char(c)]);
    }
    press(&mut app, &mut src, &[KeyCode::Enter]);
    let ids: Vec<&str> = app
        .visible
        .iter()
        .map(|&i| &*app.rows[i as usize].correlation_id)
        .collect();
    assert_eq!(ids, [BATCH]);
    app.handle(&key(KeyCode::Esc));
    assert_eq!(app.visible.len(), 3, "Esc clears the filter");

    press(&mut app, &mut src, &[KeyCode::Char('s')]);
    let first = app.selected_row().unwrap().correlation_id.clone();
    assert_eq!(app.sort.name(), "oldest first");
    assert_eq!(
        &*first, BATCH,
        "the selected chain stays selected when the order changes"
    );
    let ids: Vec<&str> = app
        .visible
        .iter()
        .map(|&i| &*app.rows[i as usize].correlation_id)
        .collect();
    assert_eq!(ids, [BATCH, LOOKUP, REFUND]);
}

fn type_text(app: &mut App, src: &mut MemorySource, text: &str) {
    for c in text.chars() {
        press(app, src, &[KeyCode::Char(c)]);
    }
}

/// The lines of `screen` that start with `prefix` (the header, a prompt).
fn line_starting(screen: &str, prefix: &str) -> String {
    screen
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}:\n{screen}"))
        .to_owned()
}

/// The findings list applies the filter and search it shows; the prompt
/// says what the search looks in.
#[test]
fn findings_are_searched_and_filtered_as_shown() {
    let (mut app, mut src) = findings_view(true);
    let actions = |app: &App| -> Vec<String> {
        app.visible_findings
            .iter()
            .map(|&i| app.findings[i as usize].action.clone())
            .collect()
    };
    // Search by action, which the findings carry.
    press(&mut app, &mut src, &[KeyCode::Char('/')]);
    assert_eq!(app.view, View::Findings, "/ searches the list shown");
    type_text(&mut app, &mut src, "lookup_order");
    assert_eq!(
        line_starting(&screen(&mut app, 120, 24), "/ search"),
        "/ search findings: lookup_order█  (chain id, action, message, intent · Enter keep · Esc clear)"
    );
    press(&mut app, &mut src, &[KeyCode::Enter]);
    assert_eq!(actions(&app), ["mcp.payments.lookup_order"]);
    assert_eq!(
        line_starting(&screen(&mut app, 80, 24), "IntentProof"),
        "IntentProof  1 Chains 0/3 [2 Findings 1/3]  search: lookup_order"
    );
    press(&mut app, &mut src, &[KeyCode::Esc]);
    assert_eq!(actions(&app).len(), 3, "Esc clears the search");

    // The filter: a kind, and the chain's status.
    press(&mut app, &mut src, &[KeyCode::Char('f')]);
    type_text(&mut app, &mut src, "flag:unplanned");
    press(&mut app, &mut src, &[KeyCode::Enter]);
    assert_eq!(actions(&app), ["mcp.payments.lookup_order"]);
    assert_eq!(
        line_starting(&screen(&mut app, 80, 24), "IntentProof"),
        "IntentProof  1 Chains 1/3 [2 Findings 1/3]  filter: flag:unplanned"
    );
    press(&mut app, &mut src, &[KeyCode::Enter]);
    assert_eq!(app.view, View::Chain, "Enter opens the finding shown");
    assert_eq!(
        line_starting(&screen(&mut app, 80, 24), "IntentProof"),
        "IntentProof [1 Chains 1/3] 2 Findings 1/3  › chain",
        "the filter is shown only on the lists it narrows"
    );
    press(&mut app, &mut src, &[KeyCode::Char('2')]);
    press(&mut app, &mut src, &[KeyCode::Char('f')]);
    for _ in 0.."flag:unplanned".len() {
        press(&mut app, &mut src, &[KeyCode::Backspace]);
    }
    type_text(&mut app, &mut src, "status:error");
    press(&mut app, &mut src, &[KeyCode::Enter]);
    assert_eq!(actions(&app), ["http.ledger.post_entry"]);
    press(&mut app, &mut src, &[KeyCode::Char('f')]);
    for _ in 0.."status:error".len() {
        press(&mut app, &mut src, &[KeyCode::Backspace]);
    }
    type_text(&mut app, &mut src, "status:ok since:2026-05-11T14");
    press(&mut app, &mut src, &[KeyCode::Enter]);
    assert_eq!(
        actions(&app),
        [
            "mcp.payments.send_receipt_email",
            "mcp.payments.lookup_order"
        ]
    );
    press(&mut app, &mut src, &[KeyCode::Char('f')]);
    for _ in 0.."status:ok since:2026-05-11T14".len() {
        press(&mut app, &mut src, &[KeyCode::Backspace]);
    }
    type_text(&mut app, &mut src, "flag:none");
    press(&mut app, &mut src, &[KeyCode::Enter]);
    assert!(
        screen(&mut app, 80, 24)
            .contains("\nno finding matches the search or filter (Esc clears)\n")
    );
    press(&mut app, &mut src, &[KeyCode::Esc]);
    assert_eq!(actions(&app).len(), 3, "Esc clears the filter");

    // From the chains list the prompt says what a chain is searched by.
    press(
        &mut app,
        &mut src,
        &[KeyCode::Char('1'), KeyCode::Char('/')],
    );
    assert_eq!(
        line_starting(&screen(&mut app, 80, 24), "/ search"),
        "/ search chains: █  (chain id, intent, agent · Enter keep · Esc clear)"
    );
}

#[test]
fn findings_jump_to_their_chain_and_steps_resolve() {
    let (mut app, mut src) = findings_view(true);
    press(&mut app, &mut src, &[KeyCode::Enter]);
    assert_eq!(app.view, View::Chain);
    let chain = app.chain.as_ref().unwrap();
    assert_eq!(&*chain.detail.row.correlation_id, REFUND);
    let states: Vec<&str> = chain.plans[0]
        .steps
        .iter()
        .map(|s| s.state.label())
        .collect();
    assert_eq!(states, ["✓ done", "! missing"]);
    assert_eq!(
        chain.plans[0].unplanned,
        [2],
        "lookup_order is outside the plan"
    );
    press(&mut app, &mut src, &[KeyCode::Esc]);
    assert_eq!(app.view, View::Findings, "Esc goes back where we came from");
}

#[test]
fn export_writes_the_bundle_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = source(true);
    let mut app = App::new("memory", dir.path().to_owned());
    settle(&mut app, &mut src);
    press(&mut app, &mut src, &[KeyCode::Char('e')]);
    let path = dir.path().join(format!("{REFUND}.proof.tar.zst"));
    assert_eq!(std::fs::read(&path).unwrap(), b"not a real bundle");
    let (_, message) = app.message.clone().unwrap();
    assert!(
        message.starts_with("✓ exported req_refund_ord_1042 to"),
        "{message}"
    );
    // `E` switches the profile: named in the status bar, and in the file.
    press(&mut app, &mut src, &[KeyCode::Char('E')]);
    assert_eq!(app.export_profile, "auditor");
    app.message = None;
    assert!(screen(&mut app, 160, 48).contains("e export (auditor)"));
    press(&mut app, &mut src, &[KeyCode::Char('e')]);
    let path = dir.path().join(format!("{REFUND}.auditor.proof.tar.zst"));
    assert_eq!(std::fs::read(&path).unwrap(), b"not a real bundle");
    press(
        &mut app,
        &mut src,
        &[KeyCode::Char('E'), KeyCode::Char('E')],
    );
    assert_eq!(app.export_profile, "full", "the profiles cycle");
    // A source that cannot verify says so, without leaving the view.
    press(&mut app, &mut src, &[KeyCode::Char('v')]);
    let (_, message) = app.message.clone().unwrap();
    assert!(
        message.contains("✗ verify of req_refund_ord_1042 failed"),
        "{message}"
    );
}

#[test]
fn mouse_wheel_and_page_keys_move_the_selection() {
    let mut src = MemorySource {
        chains: (0..1000)
            .map(|i| ChainRow {
                correlation_id: format!("corr-{i:05}").into(),
                last_at: format!(
                    "2026-05-11T00:{:02}:{:02}.000Z",
                    (999 - i) / 60,
                    (999 - i) % 60
                )
                .into(),
                events: 1,
                ..ChainRow::default()
            })
            .collect(),
        ..MemorySource::default()
    };
    let mut app = app_on(&mut src);
    let _ = screen(&mut app, 80, 24);
    app.handle(&Event::Mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 0,
        row: 5,
        modifiers: KeyModifiers::NONE,
    }));
    assert_eq!(app.chains_cursor.selected, 3);
    press(&mut app, &mut src, &[KeyCode::PageDown]);
    assert_eq!(
        app.chains_cursor.selected,
        3 + 20,
        "a page is the rows on screen"
    );
    press(&mut app, &mut src, &[KeyCode::End]);
    assert_eq!(app.chains_cursor.selected, 999);
    let text = screen(&mut app, 80, 24);
    assert!(text.contains("▶"), "{text}");
    assert!(
        text.contains("corr-00999"),
        "the last row is drawn:\n{text}"
    );
    press(&mut app, &mut src, &[KeyCode::Char('g')]);
    assert_eq!(app.chains_cursor.selected, 0);
}

#[test]
fn live_polls_merge_new_chains_and_flags() {
    let (mut app, mut src) = chains_view(false);
    assert_eq!(app.rows.len(), 3);
    src.chains.insert(
        0,
        ChainRow::from_wire(&wire(&chain_json(
            "req_new_1",
            "cursor",
            &["new work"],
            1,
            0,
            "2026-05-11T15:00:00.000Z",
            0,
        ))),
    );
    src.findings = findings();
    app.poll();
    settle(&mut app, &mut src);
    assert_eq!(app.rows.len(), 4);
    assert_eq!(
        &*app.selected_row().unwrap().correlation_id,
        REFUND,
        "the selection stays on its chain"
    );
    let first = &app.rows[app.visible[0] as usize];
    assert_eq!(
        &*first.correlation_id, "req_new_1",
        "the newest chain is on top"
    );
    let refund = app
        .rows
        .iter()
        .find(|r| &*r.correlation_id == REFUND)
        .unwrap();
    assert_eq!(refund.flags.codes(), "IU");
}

/// Runs one round of the requests `app` has queued and returns what the
/// replies queued next.
fn one_round(app: &mut App, src: &mut MemorySource) -> Vec<intentproof_tui::Request> {
    let requests: Vec<_> = app.outbox.drain(..).collect();
    for request in requests {
        let reply = intentproof_tui::serve(src, request);
        app.apply(reply);
    }
    app.outbox.drain(..).collect()
}

#[test]
fn an_open_chain_is_fetched_again_only_when_it_changed() {
    let (mut app, mut src) = chain_view(false);
    let refetch = intentproof_tui::Request::Chain(REFUND.to_owned());
    app.poll();
    assert!(
        !one_round(&mut app, &mut src).contains(&refetch),
        "nothing changed: the chain is not fetched again"
    );
    let mut grown = src.chains[0].clone();
    grown.events += 1;
    grown.last_at = "2026-05-11T14:40:00.000Z".into();
    src.chains[0] = grown;
    app.poll();
    assert!(one_round(&mut app, &mut src).contains(&refetch));
    src.findings = findings();
    app.poll();
    assert!(
        one_round(&mut app, &mut src).contains(&refetch),
        "its findings changed (a plan closed): the steps are fetched again"
    );
}

const RECORDS: &str = "records-flow";
const RECORDS_PLAN: &str = "plan_01JXRECORDS";

/// One event of the `records` session: `event_json` moved to the records
/// correlation, with the MCP attributes (`extra` adds to them).
#[allow(clippy::too_many_arguments)] // one event of the fixture, spelled out
fn records_event(
    seq: u64,
    id: &str,
    action: &str,
    intent: &str,
    ok: bool,
    at: &str,
    ms: u64,
    extra: Value,
) -> Value {
    let mut row = event_json(seq, seq, id, action, intent, ok, at, at, ms);
    let event = &mut row["event"];
    event["correlation_id"] = json!(RECORDS);
    let mut attributes = json!({"mcp.server": "records", "mcp.client.name": "records-agent", "mcp.client.version": "0.1.0"});
    for (k, v) in extra.as_object().unwrap() {
        attributes[k] = v.clone();
    }
    event["attributes"] = attributes;
    if action == "intentproof.plan.declare" {
        event["output"] = json!({"plan_id": RECORDS_PLAN});
    }
    if action == "intentproof.plan.close" {
        event["inputs"] = json!({"plan_id": RECORDS_PLAN});
    }
    row
}

fn records_id(n: u64) -> String {
    format!("0197c2b0-{n:04x}-7000-8000-00000000000{n:x}")
}

/// The session `intentproof-cli/tests/mcp_records.rs` records: a plan of
/// five steps; step 1 a multi-round call, step 2 a task that completed,
/// step 3 a task that failed, step 4 a task never seen finished, step 5 a
/// call left waiting for input; two `intentproof.call.completed` events;
/// then the plan's close.
fn records_events() -> Vec<Value> {
    let t = |s: u32| format!("2026-05-12T10:00:{s:02}.000Z");
    let task = |id: &str| json!({"mcp.task.id": id, "mcp.task.status": "working"});
    let done = |call: u64, action: &str, task: &str, status: &str| {
        json!({"intentproof.call.event_id": records_id(call), "intentproof.call.action": action,
               "mcp.task.id": task, "mcp.task.status": status})
    };
    let done_ok = done(3, "mcp.records.compute_ok", "t-ok", "completed");
    let done_failed = done(5, "mcp.records.compute_fail", "t-fail", "failed");
    vec![
        records_event(
            1,
            &records_id(1),
            "intentproof.plan.declare",
            "greet the user, compute the answer and confirm the order",
            true,
            &t(1),
            2,
            json!({}),
        ),
        records_event(
            2,
            &records_id(2),
            "mcp.records.ask_name",
            "Greet the user by name",
            true,
            &t(2),
            40,
            json!({"mcp.rounds": 2}),
        ),
        records_event(
            3,
            &records_id(3),
            "mcp.records.compute_ok",
            "Compute the answer",
            true,
            &t(3),
            5,
            task("t-ok"),
        ),
        records_event(
            4,
            &records_id(4),
            "intentproof.call.completed",
            "Compute the answer",
            true,
            &t(4),
            900,
            done_ok,
        ),
        records_event(
            5,
            &records_id(5),
            "mcp.records.compute_fail",
            "Run the job that fails",
            true,
            &t(5),
            5,
            task("t-fail"),
        ),
        records_event(
            6,
            &records_id(6),
            "intentproof.call.completed",
            "Run the job that fails",
            false,
            &t(6),
            700,
            done_failed,
        ),
        records_event(
            7,
            &records_id(7),
            "mcp.records.compute_forever",
            "Start the endless job",
            true,
            &t(7),
            5,
            task("t-never"),
        ),
        records_event(
            8,
            &records_id(8),
            "mcp.records.confirm",
            "Confirm the order",
            false,
            &t(8),
            30,
            json!({}),
        ),
        records_event(
            9,
            &records_id(9),
            "intentproof.plan.close",
            "greet the user, compute the answer and confirm the order",
            true,
            &t(9),
            0,
            json!({}),
        ),
    ]
}

fn records_plan() -> PlanInfo {
    PlanInfo::from_wire(&wire(&json!({
        "plan_id": RECORDS_PLAN,
        "correlation_id": RECORDS,
        "intent": "greet the user, compute the answer and confirm the order",
        "steps": [
            {"action": "mcp.records.ask_name", "purpose": "Greet the user by name"},
            {"action": "mcp.records.compute_ok", "purpose": "Compute the answer"},
            {"action": "mcp.records.compute_fail", "purpose": "Run the job that fails"},
            {"action": "mcp.records.compute_forever", "purpose": "Start the endless job"},
            {"action": "mcp.records.confirm", "purpose": "Confirm the order"},
        ],
        "declared_at": "2026-05-12T10:00:01.000Z",
        "state": "closed",
        "closed_by": "closed",
        "closes_at": null,
        "calls": 6,
        "flags": 2,
    })))
}

fn records_detail(events: Vec<Value>) -> ChainDetail {
    let n = events.len() as u64;
    let mut chain = chain_json(
        RECORDS,
        "records-agent",
        &["greet the user, compute the answer and confirm the order"],
        n,
        2,
        "2026-05-12T10:00:09.000Z",
        0,
    );
    chain["first_at"] = json!("2026-05-12T10:00:01.000Z");
    ChainDetail::from_wire(
        &wire(&json!({"chain": chain, "events": events})),
        vec![records_plan()],
    )
}

/// What `intentproof findings` says of the session (findings.rs).
fn records_findings() -> Vec<Finding> {
    let finding = |kind: &str, step: Value, action: &str, event: u64| {
        json!({"kind": kind, "plan_id": RECORDS_PLAN, "correlation_id": RECORDS, "step_index": step,
               "action": action, "event_ids": [records_id(event)], "message": kind,
               "at": "2026-05-12T10:00:09.000Z"})
    };
    [
        finding("failed_step", json!(2), "mcp.records.compute_fail", 5),
        finding("failed_step", json!(4), "mcp.records.confirm", 8),
        finding("incomplete_call", Value::Null, "mcp.records.confirm", 8),
        finding(
            "task_unfinished",
            Value::Null,
            "mcp.records.compute_forever",
            7,
        ),
    ]
    .iter()
    .filter_map(|v| Finding::from_wire(&wire(v)))
    .collect()
}

/// A task call takes its completion's status, a task call with no
/// completion is unfinished, and completions are not calls: the plan panel
/// says what `intentproof findings` says (FAILED STEP for step 3, TASK
/// UNFINISHED for step 4, no unplanned call).
#[test]
fn task_calls_end_as_their_tasks_did_and_completions_are_not_calls() {
    let detail = records_detail(records_events());
    let views = intentproof_tui::model::plan_views(&detail);
    assert_eq!(views.len(), 1);
    let states: Vec<&str> = views[0].steps.iter().map(|s| s.state.label()).collect();
    assert_eq!(
        states,
        ["✓ done", "✓ done", "✗ failed", "… unfinished", "✗ failed"]
    );
    assert!(views[0].unplanned.is_empty(), "{:?}", views[0].unplanned);
    let calls: Vec<(&[usize], &[Option<usize>])> = views[0]
        .steps
        .iter()
        .map(|s| (s.events.as_slice(), s.completions.as_slice()))
        .collect();
    assert_eq!(
        calls,
        [
            (&[1][..], &[None][..]),
            (&[2][..], &[Some(3)][..]),
            (&[4][..], &[Some(5)][..]),
            (&[6][..], &[None][..]),
            (&[7][..], &[None][..]),
        ]
    );

    // Server requests recorded inside a call are not calls either.
    let mut events = records_events();
    let ask = |seq: u64, action: &str| {
        records_event(
            seq,
            &records_id(seq),
            action,
            "Greet the user by name",
            true,
            "2026-05-12T10:00:02.500Z",
            1,
            json!({"mcp.parent.action": "mcp.records.ask_name"}),
        )
    };
    events.insert(2, ask(10, "mcp.records.elicitation.create"));
    events.insert(3, ask(11, "mcp.records.sampling.create"));
    for (i, e) in events.iter_mut().enumerate() {
        e["seq"] = json!(i as u64 + 1);
    }
    let views = intentproof_tui::model::plan_views(&records_detail(events));
    let states: Vec<&str> = views[0].steps.iter().map(|s| s.state.label()).collect();
    assert_eq!(
        states,
        ["✓ done", "✓ done", "✗ failed", "… unfinished", "✗ failed"]
    );
    assert!(views[0].unplanned.is_empty(), "{:?}", views[0].unplanned);

    // While the plan is open, the task may still be running (not flagged
    // yet); the failed task's step has failed all the same.
    let mut detail = records_detail(records_events());
    detail.events.pop();
    detail.plans[0].open = true;
    detail.plans[0].closed_by = None;
    let views = intentproof_tui::model::plan_views(&detail);
    let states: Vec<&str> = views[0].steps.iter().map(|s| s.state.label()).collect();
    assert_eq!(
        states,
        ["✓ done", "✓ done", "✗ failed", "… unfinished", "✗ failed"]
    );
}

/// The `k`-th step naming an action needs `k` calls of it that did not
/// fail, as `classify_plan` counts (a task call as its task ended).
#[test]
fn repeated_steps_need_as_many_calls() {
    let mut detail = records_detail(records_events());
    let mut plan = records_plan();
    plan.steps = vec![
        plan.steps[1].clone(),
        plan.steps[1].clone(),
        plan.steps[1].clone(),
    ];
    detail.plans = vec![plan];
    // A second compute_ok, a task that is never seen finished.
    let extra = records_event(
        10,
        &records_id(10),
        "mcp.records.compute_ok",
        "Compute the answer",
        true,
        "2026-05-12T10:00:08.500Z",
        5,
        json!({"mcp.task.id": "t-ok-2"}),
    );
    let row = intentproof_tui::model::EventRow::from_wire(&wire(&extra)).unwrap();
    let close = detail.events.pop().unwrap();
    detail.events.push(row);
    detail.events.push(close);
    let views = intentproof_tui::model::plan_views(&detail);
    let states: Vec<&str> = views[0].steps.iter().map(|s| s.state.label()).collect();
    assert_eq!(states, ["✓ done", "… unfinished", "! missing"]);
}

/// The chain view of the session: steps 3 and 4 as findings has them, each
/// task call with how its task ended, no unplanned row.
#[test]
fn chain_with_tasks() {
    let detail = records_detail(records_events());
    let mut src = MemorySource {
        chains: vec![detail.row.clone()],
        findings: records_findings(),
        details: vec![detail],
        ..MemorySource::default()
    };
    let mut app = app_on(&mut src);
    press(&mut app, &mut src, &[KeyCode::Enter]);
    assert_eq!(app.view, View::Chain);
    insta::assert_snapshot!("chain_with_tasks_80x24", screen(&mut app, 80, 24));
    insta::assert_snapshot!("chain_with_tasks_160x48", screen(&mut app, 160, 48));
}

/// A call the guard refused is shown as refused (`⊘ deny`), neither ok nor
/// a tool's error, and it is no call of its step: a refused `confirm` does
/// not make the missing step done, nor does it count as a failed try.
#[test]
fn a_refused_call_is_shown_as_refused_and_is_no_call_of_its_step() {
    let mut detail = records_detail(records_events());
    let refused = records_event(
        10,
        &records_id(10),
        "mcp.records.confirm",
        "Confirm the order",
        false,
        "2026-05-12T10:00:08.500Z",
        0,
        json!({"intentproof.guard.decision": "refused", "intentproof.guard.rule": "plan.max_calls"}),
    );
    let row = intentproof_tui::model::EventRow::from_wire(&wire(&refused)).unwrap();
    assert!(row.refused);
    let before: Vec<&str> = intentproof_tui::model::plan_views(&detail)[0]
        .steps
        .iter()
        .map(|s| s.state.label())
        .collect();
    let close = detail.events.pop().unwrap();
    detail.events.push(row);
    detail.events.push(close);
    let after = intentproof_tui::model::plan_views(&detail);
    let after: Vec<&str> = after[0].steps.iter().map(|s| s.state.label()).collect();
    assert_eq!(after, before);
    let mut src = MemorySource {
        chains: vec![detail.row.clone()],
        details: vec![detail],
        ..MemorySource::default()
    };
    let mut app = app_on(&mut src);
    press(&mut app, &mut src, &[KeyCode::Enter]);
    let shown = screen(&mut app, 160, 48);
    let line = shown
        .lines()
        .find(|l| l.contains("mcp.records.confirm") && l.contains("⊘ deny"))
        .unwrap_or_else(|| panic!("no refused row:\n{shown}"));
    assert!(!line.contains("✗ error"), "{line}");
}
