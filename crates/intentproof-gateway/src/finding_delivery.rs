//! What the finding senders share (webhooks, OTLP logs): every current
//! finding, and a receiver's delivery log, so each finding reaches each
//! receiver once.
//!
//! The log is `<data-dir>/<kind>/<receiver>.jsonl` (directory 0700, file
//! 0600), one `{"finding_id", "delivery_id"?, "at"}` a line, appended and
//! fsync'd after the receiver answered 2xx and read back at start (a torn
//! last line is ignored: that finding is sent once more). Its ids are kept
//! in memory: as many as there are findings, which the daemon already
//! keeps ([`intentproof_findings::live`]).

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use intentproof_api::wire::FindingRow;
use intentproof_findings::live::LiveFindings;
use serde_json::{Value, json};

/// A receiver's delivery log (cheap to clone: one shared set).
#[derive(Clone)]
pub(crate) struct DeliveryLog {
    dir: PathBuf,
    path: PathBuf,
    sent: Arc<Mutex<HashSet<String>>>,
}

impl DeliveryLog {
    /// Reads receiver `name`'s log under `<data_dir>/<kind>/` (none yet:
    /// empty).
    pub(crate) fn open(data_dir: &Path, kind: &str, name: &str) -> DeliveryLog {
        let dir = data_dir.join(kind);
        let path = dir.join(format!("{name}.jsonl"));
        let sent = match fs::File::open(&path) {
            Ok(file) => std::io::BufReader::new(file)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
                .filter_map(|v| v["finding_id"].as_str().map(str::to_owned))
                .collect(),
            Err(_) => HashSet::new(),
        };
        DeliveryLog {
            dir,
            path,
            sent: Arc::new(Mutex::new(sent)),
        }
    }

    /// Whether finding `id` was delivered.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    }

    /// Records findings delivered (with their delivery ids, if any):
    /// appended and fsync'd, then remembered (blocking).
    pub(crate) fn record(&self, delivered: &[(&str, Option<&str>)]) -> std::io::Result<()> {
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, _) in delivered {
            sent.insert((*id).to_owned());
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        let at = intentproof_core::now_rfc3339_millis();
        let mut lines = String::new();
        for (id, delivery) in delivered {
            let mut line = json!({"finding_id": id, "at": at});
            if let Some(delivery) = delivery {
                line["delivery_id"] = (*delivery).into();
            }
            lines.push_str(&format!("{line}\n"));
        }
        file.write_all(lines.as_bytes())?;
        file.sync_data()
    }
}

/// Least time between two listings of every finding by one sender: a
/// listing costs about a microsecond a finding, and appends can come
/// thousands a second; a new finding waits at most this long more.
pub(crate) const LISTING_GAP: std::time::Duration = std::time::Duration::from_millis(250);

/// Waits until the findings are worth another look: an append, or a second
/// (idle deadlines raise findings with no append), and no sooner than
/// [`LISTING_GAP`] after the last listing (`listed_at`). False when the
/// daemon stops.
pub(crate) async fn next_look(
    wake: tokio::sync::futures::Notified<'_>,
    listed_at: std::time::Instant,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = wake => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        _ = stop.changed() => return false,
    }
    let gap = LISTING_GAP.saturating_sub(listed_at.elapsed());
    if !gap.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(gap) => {}
            _ = stop.changed() => return false,
        }
    }
    true
}

/// Every finding row, as of now (all pages).
pub(crate) fn all_findings(findings: &LiveFindings) -> Result<Vec<FindingRow>, String> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = findings
            .findings(
                SystemTime::now(),
                cursor.as_deref(),
                intentproof_findings::live::MAX_PAGE,
            )
            .map_err(|e| e.to_string())?;
        rows.extend(page.rows);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(rows),
        }
    }
}
