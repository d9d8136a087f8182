//! Daemon metrics, rendered in the Prometheus text format at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Why an ingest request was refused; one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Body is not JSON (or has duplicate keys, unsafe integers).
    MalformedJson,
    /// JSON, but not a valid event.
    InvalidEvent,
    /// Signature does not verify with the instance's trusted key.
    BadSignature,
    /// Conflicts with the stored chain.
    ChainConflict,
    /// Body over the size limit.
    TooLarge,
    /// Missing or wrong ingest token.
    Unauthorized,
    /// Writer queue full.
    Overloaded,
    /// Storage failed.
    StorageError,
}

const REASONS: [(RejectReason, &str); 8] = [
    (RejectReason::MalformedJson, "malformed_json"),
    (RejectReason::InvalidEvent, "invalid_event"),
    (RejectReason::BadSignature, "bad_signature"),
    (RejectReason::ChainConflict, "chain_conflict"),
    (RejectReason::TooLarge, "too_large"),
    (RejectReason::Unauthorized, "unauthorized"),
    (RejectReason::Overloaded, "overloaded"),
    (RejectReason::StorageError, "storage_error"),
];

/// Upper bounds (seconds) of the fsync latency histogram.
const FSYNC_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// All daemon counters. Lock-free; shared by handlers and threads.
#[derive(Debug, Default)]
pub struct Metrics {
    ingested: AtomicU64,
    duplicates: AtomicU64,
    rejected: [AtomicU64; 8],
    fsync_buckets: [AtomicU64; 10],
    fsync_count: AtomicU64,
    fsync_micros: AtomicU64,
    batches: AtomicU64,
    /// Events accepted by ingest and not yet written.
    pub queue_depth: AtomicUsize,
    exported: AtomicU64,
    export_failures: AtomicU64,
    /// As a log: checkpoints cosigned by a witness, and attempts that were not.
    witness_cosigned: AtomicU64,
    witness_not_cosigned: AtomicU64,
    /// As a witness: checkpoints cosigned for other logs, and refused.
    witnessed: AtomicU64,
    witness_refused: AtomicU64,
    webhook_delivered: AtomicU64,
    webhook_failed: AtomicU64,
    otlp_exported: AtomicU64,
    otlp_failed: AtomicU64,
    otlp_findings: AtomicU64,
    otlp_findings_failed: AtomicU64,
    /// The fleet replication pump's state, when `[fleet]` is configured.
    pub fleet: std::sync::OnceLock<std::sync::Arc<intentproof_fleet::ReplicationStatus>>,
}

impl Metrics {
    /// Counts a stored event.
    pub fn ingested(&self) {
        self.ingested.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an idempotent re-send.
    pub fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused request.
    pub fn rejected(&self, reason: RejectReason) {
        if let Some(i) = REASONS.iter().position(|(r, _)| *r == reason) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records one group commit (write + fsync) and its duration.
    pub fn commit(&self, took: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.fsync_count.fetch_add(1, Ordering::Relaxed);
        self.fsync_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let secs = took.as_secs_f64();
        for (i, bound) in FSYNC_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.fsync_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts one exporter delivery.
    pub fn exported(&self, ok: bool) {
        if ok {
            self.exported.fetch_add(1, Ordering::Relaxed);
        } else {
            self.export_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one attempt to get this log's checkpoint cosigned.
    pub fn witness_attempt(&self, cosigned: bool) {
        let counter = if cosigned {
            &self.witness_cosigned
        } else {
            &self.witness_not_cosigned
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the spans of one OTLP request.
    pub fn otlp(&self, exported: bool, spans: u64) {
        let counter = if exported {
            &self.otlp_exported
        } else {
            &self.otlp_failed
        };
        counter.fetch_add(spans, Ordering::Relaxed);
    }

    /// Counts the findings of one OTLP logs request.
    pub fn otlp_findings(&self, exported: bool, findings: u64) {
        let counter = if exported {
            &self.otlp_findings
        } else {
            &self.otlp_findings_failed
        };
        counter.fetch_add(findings, Ordering::Relaxed);
    }

    /// Counts one webhook delivery attempt.
    pub fn webhook(&self, delivered: bool) {
        let counter = if delivered {
            &self.webhook_delivered
        } else {
            &self.webhook_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one `add-checkpoint` this daemon answered as a witness.
    pub fn witnessed(&self, cosigned: bool) {
        let counter = if cosigned {
            &self.witnessed
        } else {
            &self.witness_refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self, records: u64) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP intentproof_events_ingested_total Events stored."
        );
        let _ = writeln!(out, "# TYPE intentproof_events_ingested_total counter");
        let _ = writeln!(
            out,
            "intentproof_events_ingested_total {}",
            get(&self.ingested)
        );
        let _ = writeln!(
            out,
            "# HELP intentproof_events_duplicate_total Identical re-sends accepted without storing again."
        );
        let _ = writeln!(out, "# TYPE intentproof_events_duplicate_total counter");
        let _ = writeln!(
            out,
            "intentproof_events_duplicate_total {}",
            get(&self.duplicates)
        );
        let _ = writeln!(
            out,
            "# HELP intentproof_events_rejected_total Ingest requests refused, by reason."
        );
        let _ = writeln!(out, "# TYPE intentproof_events_rejected_total counter");
        for (i, (_, name)) in REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "intentproof_events_rejected_total{{reason=\"{name}\"}} {}",
                get(&self.rejected[i])
            );
        }
        let _ = writeln!(
            out,
            "# HELP intentproof_fsync_seconds Journal group commit (write + fdatasync) latency."
        );
        let _ = writeln!(out, "# TYPE intentproof_fsync_seconds histogram");
        for (i, bound) in FSYNC_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "intentproof_fsync_seconds_bucket{{le=\"{bound}\"}} {}",
                get(&self.fsync_buckets[i])
            );
        }
        let count = get(&self.fsync_count);
        let _ = writeln!(
            out,
            "intentproof_fsync_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "intentproof_fsync_seconds_sum {}",
            get(&self.fsync_micros) as f64 / 1e6
        );
        let _ = writeln!(out, "intentproof_fsync_seconds_count {count}");
        let _ = writeln!(
            out,
            "# HELP intentproof_writer_queue_depth Events waiting for the journal writer."
        );
        let _ = writeln!(out, "# TYPE intentproof_writer_queue_depth gauge");
        let _ = writeln!(
            out,
            "intentproof_writer_queue_depth {}",
            self.queue_depth.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP intentproof_journal_records Records in the journal (Merkle tree size)."
        );
        let _ = writeln!(out, "# TYPE intentproof_journal_records gauge");
        let _ = writeln!(out, "intentproof_journal_records {records}");
        let _ = writeln!(
            out,
            "# HELP intentproof_exporter_deliveries_total Exporter deliveries, by result."
        );
        let _ = writeln!(out, "# TYPE intentproof_exporter_deliveries_total counter");
        let _ = writeln!(
            out,
            "intentproof_exporter_deliveries_total{{result=\"ok\"}} {}",
            get(&self.exported)
        );
        let _ = writeln!(
            out,
            "intentproof_exporter_deliveries_total{{result=\"failed\"}} {}",
            get(&self.export_failures)
        );
        let _ = writeln!(
            out,
            "# HELP intentproof_witness_attempts_total Attempts to get this log's checkpoints cosigned by its witnesses, by result."
        );
        let _ = writeln!(out, "# TYPE intentproof_witness_attempts_total counter");
        for (result, counter) in [
            ("cosigned", &self.witness_cosigned),
            ("not_cosigned", &self.witness_not_cosigned),
        ] {
            let _ = writeln!(
                out,
                "intentproof_witness_attempts_total{{result=\"{result}\"}} {}",
                get(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP intentproof_witnessed_checkpoints_total Other logs' checkpoints this daemon answered as a witness, by result."
        );
        let _ = writeln!(
            out,
            "# TYPE intentproof_witnessed_checkpoints_total counter"
        );
        for (result, counter) in [
            ("cosigned", &self.witnessed),
            ("refused", &self.witness_refused),
        ] {
            let _ = writeln!(
                out,
                "intentproof_witnessed_checkpoints_total{{result=\"{result}\"}} {}",
                get(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP intentproof_otlp_findings_total Findings sent to [[otlp]] collectors as log records, by result (failed requests are retried)."
        );
        let _ = writeln!(out, "# TYPE intentproof_otlp_findings_total counter");
        for (result, counter) in [
            ("exported", &self.otlp_findings),
            ("failed", &self.otlp_findings_failed),
        ] {
            let _ = writeln!(
                out,
                "intentproof_otlp_findings_total{{result=\"{result}\"}} {}",
                get(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP intentproof_webhook_deliveries_total Findings POSTed to [[webhooks]] receivers, by result (failed attempts are retried)."
        );
        let _ = writeln!(out, "# TYPE intentproof_webhook_deliveries_total counter");
        for (result, counter) in [
            ("ok", &self.webhook_delivered),
            ("failed", &self.webhook_failed),
        ] {
            let _ = writeln!(
                out,
                "intentproof_webhook_deliveries_total{{result=\"{result}\"}} {}",
                get(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP intentproof_otlp_spans_total Spans sent to [[otlp]] collectors, by result (failed requests are retried)."
        );
        let _ = writeln!(out, "# TYPE intentproof_otlp_spans_total counter");
        for (result, counter) in [
            ("exported", &self.otlp_exported),
            ("failed", &self.otlp_failed),
        ] {
            let _ = writeln!(
                out,
                "intentproof_otlp_spans_total{{result=\"{result}\"}} {}",
                get(counter)
            );
        }
        if let Some(fleet) = self.fleet.get() {
            render_fleet(&mut out, fleet, records);
        }
        out
    }
}

/// The `[fleet]` replication gauges: lag in records (journal records not
/// yet in PostgreSQL) and in seconds (since the pump was last caught up).
fn render_fleet(out: &mut String, fleet: &intentproof_fleet::ReplicationStatus, records: u64) {
    let replicated = fleet.next_seq.load(Ordering::Relaxed);
    let flag = |b: &std::sync::atomic::AtomicBool| u8::from(b.load(Ordering::Relaxed));
    let gauges: [(&str, &str, String); 5] = [
        (
            "intentproof_fleet_lag_records",
            "Journal records not yet replicated to PostgreSQL.",
            records.saturating_sub(replicated).to_string(),
        ),
        (
            "intentproof_fleet_lag_seconds",
            "Seconds since replication to PostgreSQL was last caught up (0: caught up).",
            format!("{:.3}", fleet.lag_seconds(records)),
        ),
        (
            "intentproof_fleet_replicated_records",
            "Journal records in PostgreSQL (the replication cursor).",
            replicated.to_string(),
        ),
        (
            "intentproof_fleet_connected",
            "1 while connected to PostgreSQL.",
            flag(&fleet.connected).to_string(),
        ),
        (
            "intentproof_fleet_halted",
            "1 when replication stopped because this daemon's history and PostgreSQL's disagree (see intentproof fleet verify).",
            flag(&fleet.halted).to_string(),
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {value}");
    }
    let _ = writeln!(
        out,
        "# HELP intentproof_fleet_errors_total Replication attempts that failed (connection or transaction) and were retried."
    );
    let _ = writeln!(out, "# TYPE intentproof_fleet_errors_total counter");
    let _ = writeln!(
        out,
        "intentproof_fleet_errors_total {}",
        fleet.errors.load(Ordering::Relaxed)
    );
}
