//! Drawing. Every list draws only the rows on screen, so a view of
//! 100,000 chains or 10,000 events costs the same per frame as one of ten.
//!
//! Colour is never the only signal: every state also has a symbol and a
//! word (`✓ ok`, `✗ error`, `⊘ deny`, `! missing`, `◀ redacted`), the selection is
//! reversed video plus `▶`, and only the terminal's named colours are used,
//! which both light and dark themes define.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table};

use crate::app::{App, InputKind, Level, View};
use crate::detail::{DetailLine, Tone, duration};
use crate::model::{ChainRow, FlagSet, StepState};

/// An event's status in a few characters: a call the guard refused is
/// neither ok nor a tool's error; a call held for approval shows the hold
/// and the decision.
fn status_word(e: &crate::model::EventRow) -> &'static str {
    if let Some(approval) = &e.approval {
        return match &**approval {
            "held" => "⏸ held",
            "approved" => "✓ approve",
            "denied" => "⊘ denied",
            "expired" => "⊘ expired",
            _ => "⊘ no one",
        };
    }
    if e.refused {
        "⊘ deny"
    } else if e.ok {
        "✓ ok"
    } else {
        "✗ error"
    }
}

fn style(tone: Tone) -> Style {
    match tone {
        Tone::Plain => Style::default(),
        Tone::Dim => Style::default().add_modifier(Modifier::DIM),
        Tone::Heading => Style::default().add_modifier(Modifier::BOLD),
        Tone::Good => Style::default().fg(Color::Green),
        Tone::Bad => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        Tone::Warn => Style::default().fg(Color::Magenta),
        Tone::Redacted => Style::default()
            .fg(Color::Magenta)
            .add_modifier(Modifier::BOLD),
    }
}

/// `05-11 14:32` (narrow) or `2026-05-11 14:32:17` (wide) from RFC 3339 UTC.
fn short_time(at: &str, wide: bool) -> String {
    let cut = if wide { at.get(0..19) } else { at.get(5..16) };
    cut.unwrap_or(at).replace('T', " ")
}

/// `14:32:17.421` from RFC 3339 UTC.
fn clock(at: &str) -> &str {
    at.get(11..23).unwrap_or(at)
}

fn parse_ms(at: &str) -> Option<i128> {
    let t = humantime::parse_rfc3339_weak(at).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(d.as_millis() as i128)
}

fn flag_cell(flags: FlagSet, wide: bool) -> Span<'static> {
    if flags.is_empty() {
        return Span::styled("·", style(Tone::Dim));
    }
    let text = if wide {
        format!(
            "! {}",
            flags
                .kinds()
                .map(|k| k.filter_name())
                .collect::<Vec<_>>()
                .join(",")
        )
    } else {
        format!("! {}", flags.codes())
    };
    Span::styled(text, style(Tone::Bad))
}

fn verified_cell(row: &ChainRow) -> Span<'static> {
    let mark = row.integrity.mark();
    let tone = match mark {
        "✓" => Tone::Good,
        "?" => Tone::Warn,
        _ => Tone::Bad,
    };
    Span::styled(mark, style(tone))
}

fn selected_style(on: bool) -> Style {
    if on {
        Style::default().add_modifier(Modifier::REVERSED)
    } else {
        Style::default()
    }
}

fn pointer(on: bool) -> &'static str {
    if on { "▶" } else { " " }
}

/// Draws the whole UI.
pub fn draw(frame: &mut Frame, app: &mut App) {
    let [header, body, message, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, app, header);
    match app.view {
        View::Chains => draw_chains(frame, app, body),
        View::Findings => draw_findings(frame, app, body),
        View::Chain => draw_chain(frame, app, body),
        View::Event => draw_event(frame, app, body),
        View::Approvals => draw_approvals(frame, app, body),
    }
    draw_message(frame, app, message);
    draw_footer(frame, app, footer);
    if app.help {
        draw_help(frame, frame.area());
    }
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let tab = |on: bool, text: String| {
        if on {
            Span::styled(
                format!("[{text}]"),
                Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED),
            )
        } else {
            Span::raw(format!(" {text} "))
        }
    };
    let top = matches!(app.view, View::Chains | View::Chain | View::Event);
    let mut spans = vec![
        Span::styled("IntentProof ", style(Tone::Heading)),
        tab(
            top,
            format!(
                "1 Chains {}/{}{}",
                app.visible.len(),
                app.rows.len(),
                if app.loading { " loading…" } else { "" }
            ),
        ),
        tab(
            app.view == View::Findings,
            if app.narrowed() {
                format!(
                    "2 Findings {}/{}",
                    app.visible_findings.len(),
                    app.findings.len()
                )
            } else {
                format!("2 Findings {}", app.findings.len())
            },
        ),
    ];
    // Shown when there is something to decide, or when open.
    if app.view == View::Approvals || app.pending_approvals() > 0 {
        spans.push(tab(
            app.view == View::Approvals,
            format!("3 Approvals {}", app.pending_approvals()),
        ));
    }
    match app.view {
        View::Chain => spans.push(Span::raw(" › chain")),
        View::Event => spans.push(Span::raw(" › chain › event")),
        _ => {}
    }
    // Shown where they apply: the two lists.
    let list = matches!(app.view, View::Chains | View::Findings);
    if list && !app.search.is_empty() {
        spans.push(Span::raw(format!("  search: {}", app.search)));
    }
    if list && !app.filter_text.is_empty() {
        spans.push(Span::raw(format!("  filter: {}", app.filter_text)));
    }
    if app.view == View::Chains {
        spans.push(Span::styled(
            format!("  sort: {}", app.sort.name()),
            style(Tone::Dim),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_message(frame: &mut Frame, app: &App, area: Rect) {
    let line = match &app.message {
        Some((level, text)) => {
            let tone = match level {
                Level::Info => Tone::Plain,
                Level::Good => Tone::Good,
                Level::Bad => Tone::Bad,
            };
            Line::from(Span::styled(text.as_str(), style(tone)))
        }
        None => Line::from(Span::styled(
            format!("source: {} · live", app.source_label),
            style(Tone::Dim),
        )),
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let line = match &app.input {
        Some(input) => {
            let (label, hint) = match input.kind {
                InputKind::Search if app.view == View::Findings => (
                    "/ search findings: ",
                    "  (chain id, action, message, intent · Enter keep · Esc clear)",
                ),
                InputKind::Search => (
                    "/ search chains: ",
                    "  (chain id, intent, agent · Enter keep · Esc clear)",
                ),
                InputKind::Filter => (
                    "f filter: ",
                    "  (status:error flag:incomplete since:2026-05-11 words · Enter apply)",
                ),
                InputKind::DenyReason => (
                    "n deny, reason: ",
                    "  (the agent and the record are told · Enter deny · Esc cancel)",
                ),
            };
            Line::from(vec![
                Span::styled(label, style(Tone::Heading)),
                Span::raw(input.text.as_str()),
                Span::styled("█", Style::default().add_modifier(Modifier::SLOW_BLINK)),
                Span::styled(hint, style(Tone::Dim)),
            ])
        }
        None => {
            let keys = match app.view {
                View::Chains => {
                    "↑↓ move  Enter open  / search  f filter  s sort  e export  v verify  Tab findings  ? help  q quit"
                }
                View::Findings => {
                    "↑↓ move  Enter open chain  / search  f filter  e export  v verify  Tab chains  ? help  q quit"
                }
                View::Chain => "↑↓ move  Enter event  Esc back  e export  v verify  ? help  q quit",
                View::Event => "↑↓ scroll  Esc back  e export  v verify  ? help  q quit",
                View::Approvals => {
                    "↑↓ move  y approve  n deny (reason)  Enter open chain  Tab chains  ? help  q quit"
                }
            };
            // A profile other than `full` is shown where `e` is named.
            let keys = match app.export_profile {
                "full" => keys.to_owned(),
                profile => keys.replace("e export", &format!("e export ({profile})")),
            };
            Line::from(Span::styled(keys, style(Tone::Dim)))
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_chains(frame: &mut Frame, app: &mut App, area: Rect) {
    let wide = area.width >= 120;
    let rows_area = area.height.saturating_sub(1) as usize;
    app.page_rows = rows_area.max(1);
    let len = app.visible.len();
    app.chains_cursor.scroll_into_view(rows_area, len);
    if len == 0 {
        let text = if app.loading {
            "loading chains …".to_owned()
        } else if app.rows.is_empty() {
            "no chains yet: record some tool calls (`intentproof mcp -- <server command>`)"
                .to_owned()
        } else {
            "no chain matches the search or filter (Esc clears)".to_owned()
        };
        frame.render_widget(Paragraph::new(text), area);
        return;
    }
    let (time_w, corr_w, agent_w, flag_w) = if wide {
        (19, 30, 16, 24)
    } else {
        (11, 20, 12, 5)
    };
    let start = app.chains_cursor.offset;
    let end = (start + rows_area).min(len);
    let rows: Vec<Row> = (start..end)
        .map(|pos| {
            let row = &app.rows[app.visible[pos] as usize];
            let on = pos == app.chains_cursor.selected;
            Row::new(vec![
                Line::from(pointer(on)),
                Line::from(verified_cell(row)),
                Line::from(flag_cell(row.flags, wide)),
                Line::from(short_time(&row.last_at, wide)),
                Line::from(&*row.correlation_id),
                Line::from(&*row.agent),
                Line::from(row.events.to_string()).right_aligned(),
                Line::from(if row.errors > 0 {
                    Span::styled(format!("✗{}", row.errors), style(Tone::Bad))
                } else {
                    Span::raw("0")
                })
                .right_aligned(),
                Line::from(&*row.intents),
            ])
            .style(selected_style(on))
        })
        .collect();
    let header = Row::new(vec![
        "",
        "V",
        "FLAGS",
        "LAST",
        "CORRELATION",
        "AGENT",
        "EVTS",
        "ERR",
        "INTENTS",
    ])
    .style(style(Tone::Heading));
    let widths = [
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(flag_w),
        Constraint::Length(time_w),
        Constraint::Length(corr_w),
        Constraint::Length(agent_w),
        Constraint::Length(if wide { 6 } else { 4 }),
        Constraint::Length(if wide { 5 } else { 3 }),
        Constraint::Min(8),
    ];
    frame.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        area,
    );
}

fn draw_findings(frame: &mut Frame, app: &mut App, area: Rect) {
    let wide = area.width >= 120;
    let rows_area = area.height.saturating_sub(1) as usize;
    app.page_rows = rows_area.max(1);
    let len = app.visible_findings.len();
    app.findings_cursor.scroll_into_view(rows_area, len);
    if len == 0 {
        let text = if app.findings.is_empty() {
            "✓ no open findings: every closed plan was carried out, no unplanned call, no policy failed"
        } else {
            "no finding matches the search or filter (Esc clears)"
        };
        frame.render_widget(Paragraph::new(text), area);
        return;
    }
    let start = app.findings_cursor.offset;
    let end = (start + rows_area).min(len);
    let rows: Vec<Row> = (start..end)
        .map(|pos| {
            let f = &app.findings[app.visible_findings[pos] as usize];
            let on = pos == app.findings_cursor.selected;
            let mut cells = vec![
                Line::from(pointer(on)),
                Line::from(short_time(&f.at, wide)),
                Line::from(Span::styled(
                    format!("! {}", f.kind.words()),
                    style(Tone::Bad),
                )),
                Line::from(f.correlation_id.as_str()),
            ];
            if wide {
                cells.push(Line::from(f.action.as_str()));
            }
            cells.push(Line::from(f.message.as_str()));
            Row::new(cells).style(selected_style(on))
        })
        .collect();
    let (header, widths) = if wide {
        (
            vec!["", "AT", "FLAG", "CORRELATION", "ACTION", "MESSAGE"],
            vec![
                Constraint::Length(1),
                Constraint::Length(19),
                Constraint::Length(25),
                Constraint::Length(30),
                Constraint::Length(32),
                Constraint::Min(10),
            ],
        )
    } else {
        (
            vec!["", "AT", "FLAG", "CORRELATION", "MESSAGE"],
            vec![
                Constraint::Length(1),
                Constraint::Length(11),
                Constraint::Length(19),
                Constraint::Length(20),
                Constraint::Min(10),
            ],
        )
    };
    frame.render_widget(
        Table::new(rows, widths)
            .header(Row::new(header).style(style(Tone::Heading)))
            .column_spacing(1),
        area,
    );
}

fn draw_approvals(frame: &mut Frame, app: &mut App, area: Rect) {
    let [list, detail] = Layout::vertical([Constraint::Min(3), Constraint::Length(7)]).areas(area);
    let rows_area = list.height.saturating_sub(1) as usize;
    app.page_rows = rows_area.max(1);
    let len = app.approvals.len();
    app.approvals_cursor.scroll_into_view(rows_area, len);
    if len == 0 {
        frame.render_widget(
            Paragraph::new(
                "no call waits for approval (calls matching require_approval rules are held here)",
            ),
            area,
        );
        return;
    }
    let start = app.approvals_cursor.offset;
    let end = (start + rows_area).min(len);
    let rows: Vec<Row> = (start..end)
        .map(|pos| {
            let a = &app.approvals[pos];
            let r = &a.request;
            let on = pos == app.approvals_cursor.selected;
            let (mark, tone) = match a.state.as_str() {
                "pending" => ("⏸ pending", Tone::Heading),
                "approved" => ("✓ approved", Tone::Good),
                _ => ("⊘ ", Tone::Bad),
            };
            let state = if mark == "⊘ " {
                format!("⊘ {}", a.state)
            } else {
                mark.to_owned()
            };
            let when = match &a.decided_at {
                Some(at) => format!("{} {}", clock(at), a.decided_by.as_deref().unwrap_or("")),
                None => format!("expires {}", clock(&r.expires_at)),
            };
            let step = r
                .plan_step
                .map_or_else(|| "-".to_owned(), |s| format!("step {}", s + 1));
            Row::new(vec![
                Line::from(pointer(on)),
                Line::from(Span::styled(state, style(tone))),
                Line::from(r.action.as_str()),
                Line::from(step),
                Line::from(r.arguments.to_string()),
                Line::from(when),
            ])
            .style(selected_style(on))
        })
        .collect();
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(1),
                Constraint::Length(11),
                Constraint::Length(32),
                Constraint::Length(7),
                Constraint::Min(20),
                Constraint::Length(22),
            ],
        )
        .header(
            Row::new(vec![
                "",
                "STATE",
                "ACTION",
                "STEP",
                "ARGUMENTS (redacted)",
                "WHEN",
            ])
            .style(style(Tone::Heading)),
        )
        .column_spacing(1),
        list,
    );
    if let Some(a) = app.selected_approval() {
        let r = &a.request;
        let mut lines = vec![
            Line::from(vec![
                Span::styled("approval ", style(Tone::Dim)),
                Span::raw(r.id.clone()),
                Span::styled("  agent ", style(Tone::Dim)),
                Span::raw(r.agent.clone()),
                Span::styled("  chain ", style(Tone::Dim)),
                Span::raw(r.correlation_id.clone()),
            ]),
            Line::from(vec![
                Span::styled("intent ", style(Tone::Dim)),
                Span::raw(r.intent.clone()),
            ]),
            Line::from(vec![
                Span::styled("rule ", style(Tone::Dim)),
                Span::raw(r.rule.clone()),
                Span::styled("  arguments ", style(Tone::Dim)),
                Span::raw(r.arguments_digest.clone()),
            ]),
            Line::from(vec![
                Span::styled("arguments ", style(Tone::Dim)),
                Span::raw(r.arguments.to_string()),
            ]),
        ];
        if let Some(reason) = &a.reason {
            lines.push(Line::from(vec![
                Span::styled("reason ", style(Tone::Dim)),
                Span::raw(reason.clone()),
            ]));
        }
        frame.render_widget(
            Paragraph::new(lines).block(Block::default().borders(Borders::TOP)),
            detail,
        );
    }
}

fn chain_header_lines(app: &App, wide: bool) -> Vec<Line<'static>> {
    let Some(chain) = &app.chain else {
        return Vec::new();
    };
    let d = &chain.detail;
    let row = &d.row;
    let mut facts = Vec::new();
    if let Some(client) = &d.client {
        facts.push(format!("agent {client}"));
    }
    if let Some(server) = &d.server {
        facts.push(format!("server {server}"));
    }
    facts.push(format!("{} events", row.events));
    facts.push(format!("{} errors", row.errors));
    let integrity_tone = if row.integrity.verified() {
        Tone::Good
    } else {
        Tone::Bad
    };
    let when = format!(
        "{} → {}",
        short_time(&row.first_at, true),
        clock(&row.last_at)
    );
    let mut lines = vec![
        Line::from(vec![
            Span::styled("Chain ", style(Tone::Heading)),
            Span::styled(row.correlation_id.to_string(), style(Tone::Heading)),
            Span::styled(format!("  {when}"), style(Tone::Dim)),
        ]),
        Line::from(facts.join(" · ")),
        Line::from(vec![
            Span::styled(format!("{} ", row.integrity.mark()), style(integrity_tone)),
            Span::styled(
                if wide {
                    row.integrity.describe()
                } else if row.integrity.verified() {
                    "verified".to_owned()
                } else {
                    "NOT verified".to_owned()
                },
                style(integrity_tone),
            ),
            Span::raw(" · "),
            if row.flags.is_empty() {
                Span::styled("flags: none", style(Tone::Good))
            } else {
                Span::styled(format!("! flags: {}", row.flags.words()), style(Tone::Bad))
            },
        ]),
    ];
    if let Some(v) = &chain.verify {
        lines.push(Line::from(Span::styled(
            v.headline.clone(),
            style(if v.passed { Tone::Good } else { Tone::Bad }),
        )));
    }
    lines
}

fn event_ref(app: &App, index: usize) -> String {
    let Some(chain) = &app.chain else {
        return String::new();
    };
    let Some(e) = chain.detail.events.get(index) else {
        return String::new();
    };
    format!(
        "#{} {} {} {}",
        e.position,
        clock(&e.started_at),
        status_word(e),
        duration(e.duration_ms)
    )
}

/// A step's call: a task call (`completion`: its completion event) shows
/// how its task ended, `#<call> <start> ✗ task error → #<completion>`, or
/// `… task unfinished`; any other call as [`event_ref`].
fn call_ref(app: &App, index: usize, completion: Option<usize>) -> String {
    let Some(events) = app.chain.as_ref().map(|c| &c.detail.events) else {
        return String::new();
    };
    let Some(call) = events.get(index) else {
        return String::new();
    };
    let head = format!("#{} {}", call.position, clock(&call.started_at));
    match completion.and_then(|c| events.get(c)) {
        Some(done) => format!(
            "{head} {} → #{}",
            if done.ok {
                "✓ task ok"
            } else {
                "✗ task error"
            },
            done.position
        ),
        None if call.task => format!("{head} … task unfinished"),
        None => event_ref(app, index),
    }
}

fn plan_lines(app: &App, wide: bool) -> Vec<Line<'static>> {
    let Some(chain) = &app.chain else {
        return Vec::new();
    };
    if chain.plans.is_empty() {
        return vec![Line::from(Span::styled(
            "No plan declared in this chain: every call is unplanned.",
            style(Tone::Dim),
        ))];
    }
    let step_w = if wide { 90 } else { 44 };
    let mut lines = Vec::new();
    for pv in &chain.plans {
        let p = &pv.plan;
        let state = if p.open {
            "open (not evaluated yet)".to_owned()
        } else {
            match p.closed_by.as_deref() {
                Some("replaced") => "closed (a new plan replaced it)".to_owned(),
                Some("idle") => "closed (idle)".to_owned(),
                Some("session_ended") => "closed (its session ended)".to_owned(),
                _ => "closed explicitly".to_owned(),
            }
        };
        lines.push(Line::from(vec![
            Span::styled("Plan: ", style(Tone::Heading)),
            Span::styled(p.intent.clone(), style(Tone::Heading)),
            Span::styled(format!(" · {state}"), style(Tone::Dim)),
        ]));
        for (i, s) in pv.steps.iter().enumerate() {
            let tone = match s.state {
                StepState::Done => Tone::Good,
                StepState::Failed | StepState::Missing => Tone::Bad,
                StepState::Pending => Tone::Warn,
                // A finding once the plan closes; running while it is open.
                StepState::Unfinished if p.open => Tone::Warn,
                StepState::Unfinished => Tone::Bad,
            };
            let tool = s.step.action.rsplit('.').next().unwrap_or(&s.step.action);
            let mut left = format!("{:>2}. {:<13} {tool}", i + 1, s.state.label());
            if wide && !s.step.purpose.is_empty() {
                left.push_str(&format!(" — {}", s.step.purpose));
            }
            let left = fit(&left, step_w);
            let right = if s.events.is_empty() {
                "—".to_owned()
            } else {
                s.events
                    .iter()
                    .zip(&s.completions)
                    .map(|(&i, &done)| call_ref(app, i, done))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            lines.push(Line::from(vec![
                Span::styled(left, style(tone)),
                Span::raw(" │ "),
                Span::raw(right),
            ]));
        }
        for &i in &pv.unplanned {
            let action = chain
                .detail
                .events
                .get(i)
                .map(|e| e.action.rsplit('.').next().unwrap_or(&e.action).to_owned())
                .unwrap_or_default();
            // An open plan is not evaluated yet: not a flag (yet).
            let (label, tone) = if p.open {
                ("· not in plan", Tone::Warn)
            } else {
                ("! unplanned", Tone::Bad)
            };
            let left = fit(&format!(" +  {label:<13} {action}"), step_w);
            lines.push(Line::from(vec![
                Span::styled(left, style(tone)),
                Span::raw(" │ "),
                Span::raw(event_ref(app, i)),
            ]));
        }
    }
    lines
}

/// Pads or cuts `s` to exactly `width` characters.
fn fit(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        format!("{s}{}", " ".repeat(width - n))
    } else {
        let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn draw_chain(frame: &mut Frame, app: &mut App, area: Rect) {
    if app.chain.is_none() {
        frame.render_widget(Paragraph::new("loading chain …"), area);
        return;
    }
    let wide = area.width >= 120;
    let header = chain_header_lines(app, wide);
    let plans = plan_lines(app, wide);
    let plan_h = (plans.len() as u16).min(area.height / 2).max(1);
    let [head, plan_area, title, timeline] = Layout::vertical([
        Constraint::Length(header.len() as u16),
        Constraint::Length(plan_h),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header), head);
    frame.render_widget(Paragraph::new(plans), plan_area);
    let Some(chain) = &mut app.chain else {
        return;
    };
    let first = chain
        .timeline
        .first()
        .and_then(|&i| chain.detail.events.get(i))
        .and_then(|e| parse_ms(&e.started_at));
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("Timeline", style(Tone::Heading)),
            Span::styled(
                format!(" ({} events, by start time)", chain.timeline.len()),
                style(Tone::Dim),
            ),
        ])),
        title,
    );
    let rows_area = timeline.height.saturating_sub(1) as usize;
    app.page_rows = rows_area.max(1);
    let len = chain.timeline.len();
    chain.cursor.scroll_into_view(rows_area, len);
    let start = chain.cursor.offset;
    let end = (start + rows_area).min(len);
    let rows: Vec<Row> = (start..end)
        .filter_map(|pos| {
            let e = chain.detail.events.get(*chain.timeline.get(pos)?)?;
            let on = pos == chain.cursor.selected;
            let flags = chain.event_flags.get(&*e.id).copied().unwrap_or_default();
            let mut cells = vec![
                Line::from(pointer(on)),
                Line::from(clock(&e.started_at).to_owned()),
            ];
            if wide {
                let offset = match (first, parse_ms(&e.started_at)) {
                    (Some(a), Some(b)) => format!("+{}", duration((b - a).max(0) as u64)),
                    _ => String::new(),
                };
                cells.push(Line::from(offset).right_aligned());
            }
            cells.extend([
                Line::from(duration(e.duration_ms)).right_aligned(),
                Line::from(Span::styled(
                    status_word(e),
                    style(if e.refused || e.approval.is_some() {
                        Tone::Warn
                    } else if e.ok {
                        Tone::Good
                    } else {
                        Tone::Bad
                    }),
                )),
                Line::from(flag_cell(flags, false)),
                Line::from(&*e.action),
            ]);
            if wide {
                cells.push(Line::from(&*e.intent));
            }
            Some(Row::new(cells).style(selected_style(on)))
        })
        .collect();
    let mut widths = vec![Constraint::Length(1), Constraint::Length(12)];
    let mut header = vec!["", "STARTED"];
    if wide {
        widths.push(Constraint::Length(9));
        header.push("   +AFTER");
    }
    widths.extend([
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(5),
    ]);
    header.extend(["   TOOK", "STATUS", "FLAG", "ACTION"]);
    if wide {
        widths.extend([Constraint::Length(40), Constraint::Min(8)]);
        header.push("INTENT");
    } else {
        widths.push(Constraint::Min(8));
    }
    frame.render_widget(
        Table::new(rows, widths)
            .header(Row::new(header).style(style(Tone::Heading)))
            .column_spacing(1),
        timeline,
    );
}

fn draw_event(frame: &mut Frame, app: &mut App, area: Rect) {
    let Some(event) = &mut app.event else {
        frame.render_widget(Paragraph::new("loading event …"), area);
        return;
    };
    let h = area.height as usize;
    app.page_rows = h.max(1);
    let width = (area.width as usize).max(1);
    // Long values (hashes, ids, messages) wrap rather than vanish.
    let mut visual: Vec<Line> = Vec::new();
    for line in &event.lines {
        wrap_line(line, width, &mut visual);
    }
    event.scroll = event.scroll.min(visual.len().saturating_sub(h));
    let shown: Vec<Line> = visual.into_iter().skip(event.scroll).take(h).collect();
    frame.render_widget(Paragraph::new(shown), area);
}

/// Splits a detail line into screen lines of at most `width` characters;
/// continuation lines are indented under the value column.
fn wrap_line<'a>(line: &'a DetailLine, width: usize, out: &mut Vec<Line<'a>>) {
    const INDENT: usize = 11;
    let mut current: Vec<Span<'a>> = Vec::new();
    let mut used = 0;
    for (text, tone) in &line.0 {
        let mut rest: &str = text;
        while !rest.is_empty() {
            if used == width {
                out.push(Line::from(std::mem::take(&mut current)));
                let pad = INDENT.min(width / 2);
                current.push(Span::raw(" ".repeat(pad)));
                used = pad;
            }
            let room = width - used;
            let cut = rest.char_indices().nth(room).map_or(rest.len(), |(i, _)| i);
            let (head, tail) = rest.split_at(cut);
            used += head.chars().count();
            current.push(Span::styled(head, style(*tone)));
            rest = tail;
        }
    }
    out.push(Line::from(current));
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let text = [
        "Keys",
        "  ↑ ↓ / j k   move        PgUp PgDn  page      g G / Home End  first, last",
        "  Enter       open        Esc        back      mouse wheel     scroll",
        "  /           search: id, intent, agent (findings also: action, message)",
        "  f           filter: status:error|ok  flag:any|none|incomplete|unplanned|",
        "              failed|policy|integrity|call|task|tool  since:T  until:T  words",
        "  s           sort (recent, oldest, flags, errors, events, id)",
        "  e           export this chain's proof bundle (to the export dir)",
        "  E           switch the export profile (full, auditor, counterparty)",
        "  v           verify this chain (bundle verify with the daemon's key)",
        "  Tab 1 2 3   chains, findings, approvals      r reload     ? help     q quit",
        "  y / n       approvals: approve the selected call / deny it (type a reason)",
        "",
        "Marks",
        "  V column    ✓ verified   ✗ gap or bad signature   ? untrusted key",
        "  FLAGS       ! I incomplete intent  U unplanned call  F failed step",
        "                P policy violation   C chain/signature problem  D tool changed",
        "  steps       ✓ done  ✗ failed  ! missing  … pending (plan open)",
        "  values      ◀ redacted: changed by the redaction policy before signing",
    ];
    let width =
        (text.iter().map(|l| l.chars().count()).max().unwrap_or(40) as u16 + 4).min(area.width);
    let height = (text.len() as u16 + 2).min(area.height);
    let rect = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(text.iter().map(|l| Line::from(*l)).collect::<Vec<_>>()).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" help · Esc closes "),
        ),
        rect,
    );
}
