//! The UI's state and what keys do to it. No I/O here: keys queue
//! [`Request`]s in [`App::outbox`], and [`App::apply`] takes the
//! [`Reply`]s. So the whole UI can be driven in tests without a terminal
//! or a thread.

use std::collections::HashMap;
use std::path::PathBuf;

use ratatui::crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};

use crate::model::{
    ChainDetail, ChainRow, EventDetail, Finding, FlagKind, FlagSet, PlanView, VerifyOutcome,
    flags_by_chain, plan_views,
};
use intentproof_api::SUPPORTED_PROFILES;

use crate::source::{Reply, Request};

/// Chains fetched per request of the initial load, after the first page.
pub const PAGE: usize = 10_000;
/// Chains of the first request: a screenful and some, so the view shows
/// up fast (about 0.16 s on a 100,000-chain store through the daemon,
/// against 0.75 s for a full page); the rest loads behind it.
pub const FIRST_PAGE: usize = 500;
/// Chains fetched per live poll (the most recent ones).
pub const POLL_ROWS: usize = 500;
/// Rows moved per mouse wheel step.
const WHEEL: usize = 3;

/// The screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Every chain.
    Chains,
    /// Every open finding.
    Findings,
    /// One chain: plan versus events, then the timeline.
    Chain,
    /// One event.
    Event,
    /// Calls held for a person's approval (the daemon's).
    Approvals,
}

/// Orders of the chains view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Latest activity first.
    Recent,
    /// Oldest activity first.
    Oldest,
    /// Most flags first.
    Flags,
    /// Most errors first.
    Errors,
    /// Most events first.
    Events,
    /// Correlation id.
    Id,
}

impl SortKey {
    fn next(self) -> SortKey {
        match self {
            SortKey::Recent => SortKey::Oldest,
            SortKey::Oldest => SortKey::Flags,
            SortKey::Flags => SortKey::Errors,
            SortKey::Errors => SortKey::Events,
            SortKey::Events => SortKey::Id,
            SortKey::Id => SortKey::Recent,
        }
    }

    /// Its name in the status line.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Recent => "recent first",
            SortKey::Oldest => "oldest first",
            SortKey::Flags => "most flags",
            SortKey::Errors => "most errors",
            SortKey::Events => "most events",
            SortKey::Id => "by id",
        }
    }
}

/// Which flags a filter keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagFilter {
    /// Chains with any flag.
    Any,
    /// Chains with none.
    None,
    /// Chains with this one.
    Kind(FlagKind),
}

/// The filter (`f`) of the chains and findings lists, parsed from words
/// like `status:error flag:incomplete since:2026-05-11 refund`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `status:error` (chains with errors) or `status:ok` (without); a
    /// finding is kept by its chain's.
    pub errors: Option<bool>,
    /// `flag:any|none|incomplete|unplanned|failed|policy|integrity|call|task|tool`:
    /// chains with such a flag, findings of that kind (every finding is a
    /// flag: `any` keeps them all, `none` none).
    pub flag: Option<FlagFilter>,
    /// `since:T`: a chain's last activity, a finding's time, at or after T
    /// (an RFC 3339 prefix).
    pub since: Option<String>,
    /// `until:T`: before T.
    pub until: Option<String>,
    /// Other words: each must appear in what [`App::search`] looks in.
    pub words: Vec<String>,
}

impl Filter {
    /// Parses the filter text; unknown `key:value` words are errors.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let mut filter = Filter::default();
        for word in text.split_whitespace() {
            match word.split_once(':') {
                Some(("status", v)) => {
                    filter.errors = Some(match v {
                        "error" | "errors" => true,
                        "ok" => false,
                        _ => return Err(format!("status:{v}: use status:error or status:ok")),
                    })
                }
                Some(("flag", v)) => {
                    filter.flag = Some(match v {
                        "any" | "yes" => FlagFilter::Any,
                        "none" | "no" => FlagFilter::None,
                        _ => FlagFilter::Kind(
                            FlagKind::ALL
                                .into_iter()
                                .find(|k| k.filter_name() == v)
                                .ok_or_else(|| {
                                    format!(
                                        "flag:{v}: use any, none, incomplete, unplanned, failed, policy, integrity, call, task or tool"
                                    )
                                })?,
                        ),
                    })
                }
                Some(("since", v)) => filter.since = Some(v.to_owned()),
                Some(("until", v)) => filter.until = Some(v.to_owned()),
                _ => filter.words.push(word.to_lowercase()),
            }
        }
        Ok(filter)
    }

    fn keeps(&self, row: &ChainRow) -> bool {
        if let Some(errors) = self.errors
            && (row.errors > 0) != errors
        {
            return false;
        }
        match self.flag {
            Some(FlagFilter::Any) if row.flags.is_empty() => return false,
            Some(FlagFilter::None) if !row.flags.is_empty() => return false,
            Some(FlagFilter::Kind(k)) if !row.flags.contains(k) => return false,
            _ => {}
        }
        self.in_time(&row.last_at) && self.words.iter().all(|w| row_matches(row, w))
    }

    /// Keeps `finding` (of the chain `row`, when loaded)?
    fn keeps_finding(&self, finding: &Finding, row: Option<&ChainRow>) -> bool {
        if let Some(errors) = self.errors
            && row.is_none_or(|r| (r.errors > 0) != errors)
        {
            return false;
        }
        match self.flag {
            Some(FlagFilter::None) => return false,
            Some(FlagFilter::Kind(k)) if finding.kind != k => return false,
            _ => {}
        }
        self.in_time(&finding.at) && self.words.iter().all(|w| finding_matches(finding, row, w))
    }

    fn in_time(&self, at: &str) -> bool {
        !(self.since.as_deref().is_some_and(|s| at < s)
            || self.until.as_deref().is_some_and(|u| at >= u))
    }
}

/// What search (`/`) and filter words look in for a chain: its id, agent
/// and intents. (Chain summaries carry no actions; the findings list
/// matches those.) `word` is lowercase.
fn row_matches(row: &ChainRow, word: &str) -> bool {
    contains_ci(&row.correlation_id, word)
        || contains_ci(&row.agent, word)
        || contains_ci(&row.intents, word)
}

/// ... and for a finding: its chain id, action and message, and its
/// chain's agent and intents.
fn finding_matches(finding: &Finding, row: Option<&ChainRow>, word: &str) -> bool {
    contains_ci(&finding.correlation_id, word)
        || contains_ci(&finding.action, word)
        || contains_ci(&finding.message, word)
        || row.is_some_and(|r| contains_ci(&r.agent, word) || contains_ci(&r.intents, word))
}

/// Case-insensitive substring test; `needle` is lowercase.
fn contains_ci(hay: &str, needle: &str) -> bool {
    if hay.is_ascii() && needle.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        n.is_empty()
            || h.windows(n.len())
                .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
    } else {
        hay.to_lowercase().contains(needle)
    }
}

/// A scrolling list position: the selected row and the first row shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Selected row.
    pub selected: usize,
    /// First visible row.
    pub offset: usize,
}

impl Cursor {
    fn move_by(&mut self, delta: isize, len: usize) {
        if len == 0 {
            self.selected = 0;
            return;
        }
        let target = self.selected.saturating_add_signed(delta);
        self.selected = target.min(len - 1);
    }

    fn clamp(&mut self, len: usize) {
        self.selected = self.selected.min(len.saturating_sub(1));
    }

    /// Keeps the selection on screen for a window of `height` rows.
    pub fn scroll_into_view(&mut self, height: usize, len: usize) {
        let height = height.max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
        self.offset = self.offset.min(len.saturating_sub(height));
    }
}

/// What the prompt at the bottom is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// `/`: search the list shown (chains: id, intent, agent; findings:
    /// also action and message).
    Search,
    /// `f`: filter the list shown (chains or findings).
    Filter,
    /// `n` in the approvals view: why the selected call is denied.
    DenyReason,
}

/// The bottom prompt while typing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// What it is for.
    pub kind: InputKind,
    /// What was typed.
    pub text: String,
}

/// How a message should read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Neutral.
    Info,
    /// Something worked.
    Good,
    /// Something failed.
    Bad,
}

/// An opened chain.
#[derive(Debug, Clone)]
pub struct ChainView {
    /// The data.
    pub detail: ChainDetail,
    /// Its plans resolved against its events.
    pub plans: Vec<PlanView>,
    /// Timeline order: indexes into `detail.events`, by start time.
    pub timeline: Vec<usize>,
    /// Flags per event id (unplanned calls, failed steps).
    pub event_flags: HashMap<String, FlagSet>,
    /// Position in the timeline.
    pub cursor: Cursor,
    /// The last verification of this chain.
    pub verify: Option<VerifyOutcome>,
}

/// An opened event: its text lines, built once.
#[derive(Debug, Clone)]
pub struct EventView {
    /// The data.
    pub detail: EventDetail,
    /// Lines to show.
    pub lines: Vec<crate::detail::DetailLine>,
    /// First line shown.
    pub scroll: usize,
}

/// The whole UI state.
#[derive(Debug)]
pub struct App {
    /// Where the data comes from.
    pub source_label: String,
    /// Every chain loaded, in load order.
    pub rows: Vec<ChainRow>,
    index: HashMap<Box<str>, usize>,
    /// Rows shown (filtered and sorted), as indexes into `rows`.
    pub visible: Vec<u32>,
    /// Chains the source has, as last reported.
    pub total: usize,
    /// The initial load is still running.
    pub loading: bool,
    /// Position in the chains view.
    pub chains_cursor: Cursor,
    /// Order of the chains view.
    pub sort: SortKey,
    /// Filter text (`f`) and its parsed form.
    pub filter_text: String,
    filter: Filter,
    /// Search text (`/`).
    pub search: String,
    /// Every open finding, newest first.
    pub findings: Vec<Finding>,
    /// Findings shown (filter and search applied), as indexes into
    /// `findings`.
    pub visible_findings: Vec<u32>,
    flags: HashMap<String, FlagSet>,
    /// Position in the findings view.
    pub findings_cursor: Cursor,
    /// The current view.
    pub view: View,
    /// Where Esc goes back to.
    back: Vec<View>,
    /// The opened chain.
    pub chain: Option<ChainView>,
    /// A chain being fetched.
    pub pending_chain: Option<String>,
    /// The opened event.
    pub event: Option<EventView>,
    /// The prompt, while typing.
    pub input: Option<Input>,
    /// The help overlay is shown.
    pub help: bool,
    /// The last message.
    pub message: Option<(Level, String)>,
    /// Requests for the source, taken by the runner.
    pub outbox: Vec<Request>,
    /// `q` was pressed.
    pub quit: bool,
    /// Rows of the list on screen (set while drawing; for page keys).
    pub page_rows: usize,
    /// Where `e` writes bundles.
    pub export_dir: PathBuf,
    /// The profile `e` exports with (one of
    /// [`SUPPORTED_PROFILES`](intentproof_api::SUPPORTED_PROFILES);
    /// `E` changes it).
    pub export_profile: &'static str,
    /// A reload of every chain was asked for while one is running.
    reload_queued: bool,
    /// Approvals: pending ones first (oldest first), then decided ones.
    pub approvals: Vec<intentproof_api::wire::ApprovalRow>,
    /// Position in the approvals view.
    pub approvals_cursor: Cursor,
}

impl App {
    /// A new UI on a source called `source_label`; queues the first loads.
    pub fn new(source_label: impl Into<String>, export_dir: PathBuf) -> App {
        App {
            source_label: source_label.into(),
            rows: Vec::new(),
            index: HashMap::new(),
            visible: Vec::new(),
            total: 0,
            loading: true,
            chains_cursor: Cursor::default(),
            sort: SortKey::Recent,
            filter_text: String::new(),
            filter: Filter::default(),
            search: String::new(),
            findings: Vec::new(),
            visible_findings: Vec::new(),
            flags: HashMap::new(),
            findings_cursor: Cursor::default(),
            view: View::Chains,
            back: Vec::new(),
            chain: None,
            pending_chain: None,
            event: None,
            input: None,
            help: false,
            message: None,
            outbox: vec![
                Request::Chains {
                    offset: 0,
                    limit: FIRST_PAGE,
                },
                Request::Findings,
            ],
            quit: false,
            page_rows: 10,
            export_dir,
            export_profile: SUPPORTED_PROFILES[0],
            reload_queued: false,
            approvals: Vec::new(),
            approvals_cursor: Cursor::default(),
        }
    }

    /// The approval under the cursor of the approvals view.
    pub fn selected_approval(&self) -> Option<&intentproof_api::wire::ApprovalRow> {
        self.approvals.get(self.approvals_cursor.selected)
    }

    /// Pending approvals.
    pub fn pending_approvals(&self) -> usize {
        self.approvals
            .iter()
            .filter(|a| a.state == "pending")
            .count()
    }

    /// `y` / `n`+reason in the approvals view.
    fn decide(&mut self, approve: bool, reason: Option<String>) {
        let Some(row) = self.selected_approval() else {
            self.set_message(Level::Bad, "no approval selected");
            return;
        };
        if row.state != "pending" {
            let state = row.state.clone();
            self.set_message(Level::Bad, format!("this approval is {state} already"));
            return;
        }
        let id = row.request.id.clone();
        self.set_message(
            Level::Info,
            format!("{} {id} …", if approve { "approving" } else { "denying" }),
        );
        self.outbox.push(Request::Decide {
            id,
            approve,
            reason,
        });
    }

    /// Queues a live refresh: the most recent chains, the findings, and
    /// the opened chain.
    pub fn poll(&mut self) {
        if !self.loading {
            self.outbox.push(Request::Poll { limit: POLL_ROWS });
        }
        self.outbox.push(Request::Findings);
        // The header counts pending approvals on every view.
        self.outbox.push(Request::Approvals);
    }

    /// Re-fetches the opened chain (when it is on screen): called when its
    /// row or its findings changed, so a 10,000-event chain is not fetched
    /// again on every poll.
    fn refresh_open_chain(&mut self) {
        if let Some(chain) = &self.chain
            && matches!(self.view, View::Chain | View::Event)
            && self.pending_chain.is_none()
        {
            self.outbox
                .push(Request::Chain(chain.detail.row.correlation_id.to_string()));
        }
    }

    /// Whether the opened chain's row differs from what its detail shows.
    fn open_chain_is_stale(&self) -> bool {
        let Some(chain) = &self.chain else {
            return false;
        };
        let shown = &chain.detail.row;
        self.index
            .get(&shown.correlation_id)
            .and_then(|&i| self.rows.get(i))
            .is_some_and(|row| row.events != shown.events || row.last_at != shown.last_at)
    }

    /// The selected chain row (chains view).
    pub fn selected_row(&self) -> Option<&ChainRow> {
        let i = *self.visible.get(self.chains_cursor.selected)?;
        self.rows.get(i as usize)
    }

    fn set_message(&mut self, level: Level, text: impl Into<String>) {
        self.message = Some((level, text.into()));
    }

    // ---- data ----

    fn merge_rows(&mut self, rows: Vec<ChainRow>) -> bool {
        let mut changed = false;
        for mut row in rows {
            row.flags = row.with_findings(
                self.flags
                    .get(&*row.correlation_id)
                    .copied()
                    .unwrap_or_default(),
            );
            match self.index.get(&row.correlation_id) {
                Some(&i) => {
                    if self.rows[i] != row {
                        self.rows[i] = row;
                        changed = true;
                    }
                }
                None => {
                    self.index
                        .insert(row.correlation_id.clone(), self.rows.len());
                    self.rows.push(row);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Recomputes the visible rows (filter, search, sort), keeping the
    /// selected chain selected.
    pub fn refilter(&mut self) {
        self.refilter_findings();
        let keep = self.selected_row().map(|r| r.correlation_id.clone());
        let search = self.search.to_lowercase();
        let filter = &self.filter;
        let rows = &self.rows;
        let mut visible: Vec<u32> = (0..rows.len() as u32)
            .filter(|&i| {
                let row = &rows[i as usize];
                filter.keeps(row) && row_matches(row, &search)
            })
            .collect();
        let key = |i: &u32| &rows[*i as usize];
        match self.sort {
            SortKey::Recent => visible.sort_by(|a, b| {
                key(b)
                    .last_at
                    .cmp(&key(a).last_at)
                    .then_with(|| key(a).correlation_id.cmp(&key(b).correlation_id))
            }),
            SortKey::Oldest => visible.sort_by(|a, b| {
                key(a)
                    .last_at
                    .cmp(&key(b).last_at)
                    .then_with(|| key(a).correlation_id.cmp(&key(b).correlation_id))
            }),
            SortKey::Flags => visible.sort_by(|a, b| {
                key(b)
                    .flags
                    .len()
                    .cmp(&key(a).flags.len())
                    .then_with(|| key(b).last_at.cmp(&key(a).last_at))
            }),
            SortKey::Errors => visible.sort_by(|a, b| {
                key(b)
                    .errors
                    .cmp(&key(a).errors)
                    .then_with(|| key(b).last_at.cmp(&key(a).last_at))
            }),
            SortKey::Events => visible.sort_by(|a, b| {
                key(b)
                    .events
                    .cmp(&key(a).events)
                    .then_with(|| key(b).last_at.cmp(&key(a).last_at))
            }),
            SortKey::Id => {
                visible.sort_by(|a, b| key(a).correlation_id.cmp(&key(b).correlation_id))
            }
        }
        self.visible = visible;
        if let Some(id) = keep
            && let Some(pos) = self
                .visible
                .iter()
                .position(|&i| self.rows[i as usize].correlation_id == id)
        {
            self.chains_cursor.selected = pos;
        }
        self.chains_cursor.clamp(self.visible.len());
    }

    /// Recomputes the visible findings (filter, search), keeping the
    /// selected finding selected.
    fn refilter_findings(&mut self) {
        let keep = self.selected_finding().cloned();
        let search = self.search.to_lowercase();
        let (filter, rows, index) = (&self.filter, &self.rows, &self.index);
        self.visible_findings = (0..self.findings.len() as u32)
            .filter(|&i| {
                let f = &self.findings[i as usize];
                let row = index.get(f.correlation_id.as_str()).map(|&r| &rows[r]);
                filter.keeps_finding(f, row) && finding_matches(f, row, &search)
            })
            .collect();
        if let Some(keep) = keep
            && let Some(pos) = self
                .visible_findings
                .iter()
                .position(|&i| self.findings[i as usize] == keep)
        {
            self.findings_cursor.selected = pos;
        }
        self.findings_cursor.clamp(self.visible_findings.len());
    }

    /// The finding under the cursor of the findings view.
    pub fn selected_finding(&self) -> Option<&Finding> {
        let i = *self.visible_findings.get(self.findings_cursor.selected)?;
        self.findings.get(i as usize)
    }

    /// The filter or the search narrows the lists.
    pub fn narrowed(&self) -> bool {
        !self.search.is_empty() || !self.filter_text.is_empty()
    }

    fn set_findings(&mut self, findings: Vec<Finding>) -> bool {
        if findings == self.findings {
            return false;
        }
        let mine = |list: &[Finding], id: &str| -> Vec<Finding> {
            list.iter()
                .filter(|f| f.correlation_id == id)
                .cloned()
                .collect()
        };
        if let Some(id) = self
            .chain
            .as_ref()
            .map(|c| c.detail.row.correlation_id.to_string())
        {
            // A plan of the opened chain closed (or a flag changed): its
            // steps' states come with the chain.
            if mine(&self.findings, &id) != mine(&findings, &id) {
                self.refresh_open_chain();
            }
        }
        self.flags = flags_by_chain(&findings);
        self.findings = findings;
        self.refilter_findings();
        for row in &mut self.rows {
            row.flags = row.with_findings(
                self.flags
                    .get(&*row.correlation_id)
                    .copied()
                    .unwrap_or_default(),
            );
        }
        if let Some(chain) = &mut self.chain {
            chain.event_flags = event_flags(&chain.detail, &self.findings);
        }
        true
    }

    fn open_chain_view(&mut self, detail: ChainDetail) {
        let plans = plan_views(&detail);
        let mut timeline: Vec<usize> = (0..detail.events.len()).collect();
        timeline.sort_by(|&a, &b| {
            let (x, y) = (&detail.events[a], &detail.events[b]);
            x.started_at.cmp(&y.started_at).then(x.seq.cmp(&y.seq))
        });
        let event_flags = event_flags(&detail, &self.findings);
        let same = self
            .chain
            .as_ref()
            .filter(|c| c.detail.row.correlation_id == detail.row.correlation_id);
        let (cursor, verify) = match same {
            Some(c) => (c.cursor, c.verify.clone()),
            None => (Cursor::default(), None),
        };
        let mut view = ChainView {
            detail,
            plans,
            timeline,
            event_flags,
            cursor,
            verify,
        };
        view.cursor.clamp(view.timeline.len());
        self.chain = Some(view);
    }

    /// Takes a source's answer.
    pub fn apply(&mut self, reply: Reply) {
        match reply {
            Reply::Chains { offset, page } => match page {
                Ok(page) => {
                    let got = page.rows.len();
                    self.total = page.total;
                    self.merge_rows(page.rows);
                    let next = offset + got;
                    if got > 0 && next < page.total {
                        self.outbox.push(Request::Chains {
                            offset: next,
                            limit: PAGE,
                        });
                    } else {
                        self.loading = false;
                        if self.reload_queued {
                            self.reload_queued = false;
                            self.reload();
                        }
                    }
                    self.refilter();
                }
                Err(e) => {
                    self.loading = false;
                    self.set_message(Level::Bad, format!("✗ loading chains: {e}"));
                }
            },
            Reply::Polled(page) => match page {
                Ok(page) => {
                    self.total = page.total;
                    let changed = self.merge_rows(page.rows);
                    if self.rows.len() < page.total {
                        // More new chains than one poll fetches: load them all.
                        self.reload();
                    }
                    if changed {
                        self.refilter();
                        if self.open_chain_is_stale() {
                            self.refresh_open_chain();
                        }
                    }
                }
                Err(e) => self.set_message(Level::Bad, format!("✗ refresh: {e}")),
            },
            Reply::Findings(findings) => match findings {
                Ok(Some(findings)) => {
                    if self.set_findings(findings) {
                        self.refilter();
                    }
                }
                // Unchanged since the last answer.
                Ok(None) => {}
                Err(e) => self.set_message(Level::Bad, format!("✗ findings: {e}")),
            },
            Reply::Chain(id, detail) => {
                let asked = self.pending_chain.as_deref() == Some(id.as_str());
                let shown = self
                    .chain
                    .as_ref()
                    .is_some_and(|c| *c.detail.row.correlation_id == *id);
                if asked {
                    self.pending_chain = None;
                }
                match detail {
                    Ok(mut detail) => {
                        detail.row.flags = detail.row.with_findings(
                            self.flags.get(&id).copied().unwrap_or_default(),
                        );
                        if asked {
                            self.message = None;
                            self.open_chain_view(detail);
                            if self.view != View::Chain {
                                self.go(View::Chain);
                            }
                        } else if shown {
                            self.open_chain_view(detail);
                        }
                    }
                    Err(e) if asked || shown => {
                        self.set_message(Level::Bad, format!("✗ chain {id}: {e}"))
                    }
                    Err(_) => {}
                }
            }
            Reply::Event(id, detail) => match detail {
                Ok(detail) => {
                    let lines = crate::detail::event_lines(&detail);
                    self.event = Some(EventView {
                        detail,
                        lines,
                        scroll: 0,
                    });
                    if self.view != View::Event {
                        self.go(View::Event);
                    }
                }
                Err(e) => self.set_message(Level::Bad, format!("✗ event {id}: {e}")),
            },
            Reply::Exported(id, result) => match result {
                Ok((path, bytes)) => self.set_message(
                    Level::Good,
                    format!(
                        "✓ exported {id} to {} ({bytes} bytes); check it with `intentproof verify {}`",
                        path.display(),
                        path.display()
                    ),
                ),
                Err(e) => self.set_message(Level::Bad, format!("✗ export of {id} failed: {e}")),
            },
            Reply::Verified(id, result) => match result {
                Ok(outcome) => {
                    let level = if outcome.passed {
                        Level::Good
                    } else {
                        Level::Bad
                    };
                    self.set_message(level, format!("{id}: {}", outcome.headline));
                    if let Some(chain) = &mut self.chain
                        && *chain.detail.row.correlation_id == *id {
                            chain.verify = Some(outcome);
                        }
                }
                Err(e) => self.set_message(Level::Bad, format!("✗ verify of {id} failed: {e}")),
            },
            Reply::Approvals(result) => match result {
                Ok(rows) => {
                    let keep = self.selected_approval().map(|a| a.request.id.clone());
                    self.approvals = rows;
                    if let Some(pos) = keep.and_then(|id| {
                        self.approvals.iter().position(|a| a.request.id == id)
                    }) {
                        self.approvals_cursor.selected = pos;
                    }
                    self.approvals_cursor.clamp(self.approvals.len());
                }
                // A source without approvals (the store) says so when
                // the view is opened, not on every poll.
                Err(e) if self.view == View::Approvals => {
                    self.set_message(Level::Bad, format!("✗ approvals: {e}"))
                }
                Err(_) => {}
            },
            Reply::Decided(id, result) => {
                match result {
                    Ok(row) => {
                        let by = row.decided_by.clone().unwrap_or_default();
                        self.set_message(Level::Good, format!("✓ {id} {} by {by}", row.state));
                    }
                    Err(e) => self.set_message(Level::Bad, format!("✗ {id}: {e}")),
                }
                self.outbox.push(Request::Approvals);
            }
        }
    }

    fn reload(&mut self) {
        if self.loading {
            self.reload_queued = true;
            return;
        }
        self.loading = true;
        self.outbox.push(Request::Chains {
            offset: 0,
            limit: FIRST_PAGE,
        });
    }

    // ---- navigation ----

    fn go(&mut self, view: View) {
        if self.view != view {
            self.back.push(self.view);
            self.view = view;
        }
    }

    fn go_back(&mut self) {
        if let Some(view) = self.back.pop() {
            self.view = view;
        }
    }

    fn switch_top(&mut self, view: View) {
        self.back.clear();
        self.view = view;
    }

    /// `/` and `f` work on the list shown; from a chain or an event they
    /// go to the chains.
    fn switch_to_a_list(&mut self) {
        if self.view != View::Findings {
            self.switch_top(View::Chains);
        }
    }

    /// The chain the current view is about.
    fn current_chain_id(&self) -> Option<String> {
        match self.view {
            View::Chains => self.selected_row().map(|r| r.correlation_id.to_string()),
            View::Findings => self.selected_finding().map(|f| f.correlation_id.clone()),
            View::Chain | View::Event => self
                .chain
                .as_ref()
                .map(|c| c.detail.row.correlation_id.to_string()),
            View::Approvals => self
                .selected_approval()
                .map(|a| a.request.correlation_id.clone()),
        }
    }

    fn open_chain(&mut self, id: String) {
        self.set_message(Level::Info, format!("opening {id} …"));
        self.pending_chain = Some(id.clone());
        self.outbox.push(Request::Chain(id));
    }

    fn export(&mut self) {
        let Some(id) = self.current_chain_id() else {
            self.set_message(Level::Bad, "no chain selected to export");
            return;
        };
        let profile = self.export_profile;
        let path = self.export_dir.join(bundle_file_name(&id, profile));
        self.set_message(Level::Info, format!("exporting {id} ({profile}) …"));
        self.outbox.push(Request::Export {
            correlation_id: id,
            profile: profile.to_owned(),
            path,
        });
    }

    /// `E`: the next export profile.
    fn next_export_profile(&mut self) {
        let at = SUPPORTED_PROFILES
            .iter()
            .position(|p| *p == self.export_profile)
            .map_or(0, |i| (i + 1) % SUPPORTED_PROFILES.len());
        self.export_profile = SUPPORTED_PROFILES[at];
        self.set_message(
            Level::Info,
            format!(
                "export profile: {} (e exports with it, E changes it)",
                self.export_profile
            ),
        );
    }

    fn verify(&mut self) {
        let Some(id) = self.current_chain_id() else {
            self.set_message(Level::Bad, "no chain selected to verify");
            return;
        };
        self.set_message(Level::Info, format!("verifying {id} …"));
        self.outbox.push(Request::Verify(id));
    }

    /// Handles one terminal event.
    pub fn handle(&mut self, event: &Event) {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.key(*key),
            Event::Mouse(mouse) => self.mouse(*mouse),
            _ => {}
        }
    }

    fn mouse(&mut self, mouse: MouseEvent) {
        let delta = match mouse.kind {
            MouseEventKind::ScrollDown => WHEEL as isize,
            MouseEventKind::ScrollUp => -(WHEEL as isize),
            _ => return,
        };
        self.move_by(delta);
    }

    fn move_by(&mut self, delta: isize) {
        match self.view {
            View::Chains => self.chains_cursor.move_by(delta, self.visible.len()),
            View::Findings => self
                .findings_cursor
                .move_by(delta, self.visible_findings.len()),
            View::Chain => {
                if let Some(c) = &mut self.chain {
                    c.cursor.move_by(delta, c.timeline.len());
                }
            }
            View::Event => {
                if let Some(e) = &mut self.event {
                    let max = e.lines.len().saturating_sub(1);
                    e.scroll = e.scroll.saturating_add_signed(delta).min(max);
                }
            }
            View::Approvals => self.approvals_cursor.move_by(delta, self.approvals.len()),
        }
    }

    fn move_to_end(&mut self, end: bool) {
        let far = if end {
            isize::MAX / 2
        } else {
            -(isize::MAX / 2)
        };
        self.move_by(far);
    }

    fn key(&mut self, key: KeyEvent) {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        if let Some(input) = &mut self.input {
            match key.code {
                KeyCode::Esc => {
                    let kind = input.kind;
                    self.input = None;
                    if kind == InputKind::Search {
                        self.search.clear();
                        self.refilter();
                    }
                }
                KeyCode::Enter => match self.input.take() {
                    Some(Input {
                        kind: InputKind::Filter,
                        text,
                    }) => self.apply_filter(text),
                    Some(Input {
                        kind: InputKind::DenyReason,
                        text,
                    }) => {
                        if text.trim().is_empty() {
                            self.set_message(
                                Level::Bad,
                                "a denial needs a reason (the agent is told it): n, then type it",
                            );
                        } else {
                            self.decide(false, Some(text.trim().to_owned()));
                        }
                    }
                    _ => {}
                },
                KeyCode::Backspace => {
                    input.text.pop();
                    if input.kind == InputKind::Search {
                        self.search = input.text.clone();
                        self.refilter();
                    }
                }
                KeyCode::Char(c) => {
                    input.text.push(c);
                    if input.kind == InputKind::Search {
                        self.search = input.text.clone();
                        self.refilter();
                    }
                }
                _ => {}
            }
            return;
        }
        if self.help {
            if matches!(
                key.code,
                KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::Enter
            ) {
                self.help = false;
            }
            return;
        }
        let page = self.page_rows.max(1) as isize;
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::PageDown | KeyCode::Char(' ') => self.move_by(page),
            KeyCode::PageUp => self.move_by(-page),
            KeyCode::Home | KeyCode::Char('g') => self.move_to_end(false),
            KeyCode::End | KeyCode::Char('G') => self.move_to_end(true),
            KeyCode::Char('1') => self.switch_top(View::Chains),
            KeyCode::Char('2') => self.switch_top(View::Findings),
            KeyCode::Char('3') => {
                self.switch_top(View::Approvals);
                self.outbox.push(Request::Approvals);
            }
            KeyCode::Tab => match self.view {
                View::Chains => self.switch_top(View::Findings),
                View::Findings => {
                    self.switch_top(View::Approvals);
                    self.outbox.push(Request::Approvals);
                }
                _ => self.switch_top(View::Chains),
            },
            KeyCode::Char('y') if self.view == View::Approvals => self.decide(true, None),
            KeyCode::Char('n') if self.view == View::Approvals => {
                if self
                    .selected_approval()
                    .is_some_and(|a| a.state == "pending")
                {
                    self.input = Some(Input {
                        kind: InputKind::DenyReason,
                        text: String::new(),
                    });
                } else {
                    self.set_message(Level::Bad, "select a pending approval to deny");
                }
            }
            KeyCode::Esc | KeyCode::Backspace | KeyCode::Left | KeyCode::Char('h') => {
                if matches!(self.view, View::Chains | View::Findings | View::Approvals)
                    && key.code == KeyCode::Esc
                {
                    if !self.search.is_empty() {
                        self.search.clear();
                        self.refilter();
                    } else if !self.filter_text.is_empty() {
                        self.apply_filter(String::new());
                    }
                } else {
                    self.go_back();
                }
            }
            KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') => self.enter(),
            KeyCode::Char('/') => {
                self.switch_to_a_list();
                self.input = Some(Input {
                    kind: InputKind::Search,
                    text: self.search.clone(),
                });
            }
            KeyCode::Char('f') => {
                self.switch_to_a_list();
                self.input = Some(Input {
                    kind: InputKind::Filter,
                    text: self.filter_text.clone(),
                });
            }
            KeyCode::Char('s') if self.view == View::Chains => {
                self.sort = self.sort.next();
                self.refilter();
                self.set_message(Level::Info, format!("sorted: {}", self.sort.name()));
            }
            KeyCode::Char('r') => {
                self.reload();
                self.poll();
                self.set_message(Level::Info, "reloading …");
            }
            KeyCode::Char('e') => self.export(),
            KeyCode::Char('E') => self.next_export_profile(),
            KeyCode::Char('v') => self.verify(),
            _ => {}
        }
    }

    fn apply_filter(&mut self, text: String) {
        match Filter::parse(&text) {
            Ok(filter) => {
                self.filter = filter;
                self.filter_text = text;
                self.refilter();
            }
            Err(e) => self.set_message(Level::Bad, format!("✗ filter: {e}")),
        }
    }

    fn enter(&mut self) {
        match self.view {
            View::Chains => {
                if let Some(id) = self.selected_row().map(|r| r.correlation_id.to_string()) {
                    self.open_chain(id);
                }
            }
            View::Findings => {
                if let Some(id) = self.selected_finding().map(|f| f.correlation_id.clone()) {
                    self.open_chain(id);
                }
            }
            View::Chain => {
                let id = self.chain.as_ref().and_then(|c| {
                    let i = *c.timeline.get(c.cursor.selected)?;
                    Some(c.detail.events.get(i)?.id.to_string())
                });
                if let Some(id) = id {
                    self.outbox.push(Request::Event(id));
                }
            }
            View::Event => {}
            View::Approvals => {
                if let Some(id) = self.current_chain_id() {
                    self.open_chain(id);
                }
            }
        }
    }
}

/// Flags per event id of a chain, from the findings naming its events.
fn event_flags(detail: &ChainDetail, findings: &[Finding]) -> HashMap<String, FlagSet> {
    let mut map: HashMap<String, FlagSet> = HashMap::new();
    for f in findings
        .iter()
        .filter(|f| *f.correlation_id == *detail.row.correlation_id)
    {
        for id in &f.event_ids {
            map.entry(id.clone()).or_default().insert(f.kind);
        }
    }
    map
}

/// `<correlation>.proof.tar.zst` (`<correlation>.<profile>.proof.tar.zst`
/// for a profile other than `full`), with anything but letters, digits,
/// `-`, `_` and `.` in the correlation id replaced by `_`.
pub fn bundle_file_name(correlation_id: &str, profile: &str) -> String {
    let safe: String = correlation_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.');
    let safe = if safe.is_empty() { "chain" } else { safe };
    match profile {
        "full" => format!("{safe}.proof.tar.zst"),
        // Profiles are fixed names ([a-z-]), safe in a file name.
        other => format!("{safe}.{other}.proof.tar.zst"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_reject_unknown_values() {
        let f = Filter::parse("status:error flag:incomplete since:2026-05 Refund").unwrap();
        assert_eq!(f.errors, Some(true));
        assert_eq!(f.flag, Some(FlagFilter::Kind(FlagKind::IncompleteIntent)));
        assert_eq!(f.since.as_deref(), Some("2026-05"));
        assert_eq!(f.words, vec!["refund"]);
        assert!(Filter::parse("flag:bogus").unwrap_err().contains("use any"));
        assert!(Filter::parse("status:maybe").is_err());
    }

    #[test]
    fn bundle_names_are_safe_file_names() {
        assert_eq!(bundle_file_name("req_1", "full"), "req_1.proof.tar.zst");
        assert_eq!(bundle_file_name("../a b", "full"), "_a_b.proof.tar.zst");
        assert_eq!(bundle_file_name("..", "full"), "chain.proof.tar.zst");
        assert_eq!(
            bundle_file_name("req_1", "auditor"),
            "req_1.auditor.proof.tar.zst"
        );
    }

    #[test]
    fn the_cursor_stays_in_bounds() {
        let mut c = Cursor::default();
        c.move_by(5, 3);
        assert_eq!(c.selected, 2);
        c.move_by(-10, 3);
        assert_eq!(c.selected, 0);
        c.selected = 99;
        c.scroll_into_view(10, 100);
        assert_eq!(c.offset, 90);
        c.selected = 0;
        c.scroll_into_view(10, 100);
        assert_eq!(c.offset, 0);
    }
}
