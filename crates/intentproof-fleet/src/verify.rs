//! `intentproof fleet verify`: what PostgreSQL holds, checked against what
//! each daemon signed.
//!
//! Per daemon, streaming its rows in seq order (memory stays flat at any
//! size: a [`RootAccumulator`] of 2 KiB, not the leaves):
//!
//! 1. every checkpoint's signature verifies with the daemon's registered
//!    key, and its row's root is the signed root;
//! 2. each checkpoint's stored consistency proof, from the one before,
//!    verifies (the checkpoint chain is append-only);
//! 3. the records are seq 0, 1, 2, … with no gap, each row's indexed facts
//!    (ids, chain position and hashes, intent, action, status, times;
//!    the content hash recomputed) are those of its bytes, and the Merkle root of the bytes at every checkpoint's size is
//!    the root that checkpoint signed;
//! 4. the cursor (`daemons.next_seq`) is the number of rows;
//! 5. no fault was recorded while replicating (a daemon whose journal was
//!    rewritten after replication, or whose key changed, is named there).
//!
//! What it does not check: the events' own signatures (each daemon checked
//! them at ingest against keys PostgreSQL does not hold; the row keeps the
//! result in `signature`), and records after a daemon's last checkpoint,
//! which no signature covers yet (counted as `uncovered`).

use std::fmt;

use futures_util::{StreamExt, pin_mut};
use intentproof_core::checkpoint::Checkpoint;
use intentproof_core::merkle::{self, Hash, RootAccumulator};
use intentproof_store::EventMeta;
use tokio_postgres::Client;

use crate::FleetError;
use crate::replicate::decode_key;

/// Most problems listed per daemon (then "and N more").
const MAX_PROBLEMS: usize = 20;

/// The result of [`verify_fleet`].
#[derive(Debug, Clone, Default)]
pub struct FleetReport {
    /// One entry per daemon, by name.
    pub daemons: Vec<DaemonReport>,
}

/// One daemon's result.
#[derive(Debug, Clone, Default)]
pub struct DaemonReport {
    /// The daemon's name (`instance_id`).
    pub daemon: String,
    /// Records in PostgreSQL.
    pub records: u64,
    /// Checkpoints in PostgreSQL.
    pub checkpoints: u64,
    /// Records covered by a verified checkpoint.
    pub covered: u64,
    /// Records after the last checkpoint (no signature covers them yet).
    pub uncovered: u64,
    /// What is wrong (empty: verified).
    pub problems: Vec<String>,
    /// Problems not listed.
    pub more_problems: u64,
}

impl DaemonReport {
    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text);
        } else {
            self.more_problems += 1;
        }
    }
}

impl FleetReport {
    /// Every daemon verified.
    pub fn ok(&self) -> bool {
        self.daemons
            .iter()
            .all(|d| d.problems.is_empty() && d.more_problems == 0)
    }
}

impl fmt::Display for FleetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.daemons {
            if d.problems.is_empty() {
                writeln!(
                    f,
                    "✓ {}: {} records, {} checkpoints; {} records under a verified checkpoint, {} after the last one",
                    d.daemon, d.records, d.checkpoints, d.covered, d.uncovered
                )?;
            } else {
                writeln!(
                    f,
                    "✗ {}: {} records, {} checkpoints",
                    d.daemon, d.records, d.checkpoints
                )?;
                for p in &d.problems {
                    writeln!(f, "    {p}")?;
                }
                if d.more_problems > 0 {
                    writeln!(f, "    … and {} more", d.more_problems)?;
                }
            }
        }
        let bad = self
            .daemons
            .iter()
            .filter(|d| !d.problems.is_empty())
            .count();
        if bad == 0 {
            write!(
                f,
                "fleet verified: {} daemons (event signatures were checked by each daemon at ingest, not here)",
                self.daemons.len()
            )
        } else {
            write!(
                f,
                "fleet NOT verified: {bad} of {} daemons",
                self.daemons.len()
            )
        }
    }
}

/// Checks every daemon in the fleet database.
pub async fn verify_fleet(client: &Client) -> Result<FleetReport, FleetError> {
    let mut report = FleetReport::default();
    if crate::schema::version(client).await? == 0 {
        return Ok(report);
    }
    let daemons = client
        .query(
            "SELECT daemon, public_key, next_seq FROM intentproof.daemons ORDER BY daemon",
            &[],
        )
        .await?;
    for row in daemons {
        let name: String = row.get(0);
        let key: String = row.get(1);
        let next_seq: i64 = row.get(2);
        report
            .daemons
            .push(verify_daemon(client, name, &key, next_seq).await?);
    }
    Ok(report)
}

async fn verify_daemon(
    client: &Client,
    name: String,
    key: &str,
    next_seq: i64,
) -> Result<DaemonReport, FleetError> {
    let mut report = DaemonReport {
        daemon: name.clone(),
        ..DaemonReport::default()
    };
    for fault in client
        .query(
            "SELECT kind, detail, at::text FROM intentproof.faults WHERE daemon = $1 ORDER BY id",
            &[&name],
        )
        .await?
    {
        let (kind, detail, at): (String, String, String) =
            (fault.get(0), fault.get(1), fault.get(2));
        report.problem(format!(
            "fault recorded while replicating ({kind}, {at}): {detail}"
        ));
    }
    let key = decode_key(key);
    if key.is_none() {
        report.problem("its registered public key is not base64 of 32 bytes".into());
    }
    // 1 and 2: the checkpoint chain.
    let mut roots: Vec<(u64, Hash)> = Vec::new();
    let (mut previous_size, mut previous_root) = (0u64, merkle::empty_root());
    for row in client
        .query(
            "SELECT tree_size, root, checkpoint, consistency_from, consistency_proof FROM intentproof.checkpoints WHERE daemon = $1 ORDER BY tree_size",
            &[&name],
        )
        .await?
    {
        report.checkpoints += 1;
        let size = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
        let root_text: String = row.get(1);
        let text: String = row.get(2);
        let from = u64::try_from(row.get::<_, i64>(3)).unwrap_or(u64::MAX);
        let proof_text: Vec<String> = row.get(4);
        let checkpoint: Checkpoint = match serde_json::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                report.problem(format!("checkpoint at tree size {size}: not a checkpoint ({e})"));
                continue;
            }
        };
        if let Some(key) = &key
            && let Err(e) = checkpoint.verify(key)
        {
            report.problem(format!("checkpoint at tree size {size}: {e}"));
            continue;
        }
        if checkpoint.tree_size != size || checkpoint.root != root_text {
            report.problem(format!(
                "checkpoint at tree size {size}: the row says root {root_text}, the signed checkpoint says size {} root {}",
                checkpoint.tree_size, checkpoint.root
            ));
            continue;
        }
        let root = match checkpoint.root_hash() {
            Ok(r) => r,
            Err(e) => {
                report.problem(format!("checkpoint at tree size {size}: {e}"));
                continue;
            }
        };
        let proof: Option<Vec<Hash>> = proof_text
            .iter()
            .map(|h| intentproof_core::checkpoint::parse_hash(h))
            .collect();
        let consistent = from == previous_size
            && proof.is_some_and(|proof| {
                merkle::verify_consistency(from, size, &previous_root, &root, &proof).is_ok()
            });
        if !consistent {
            report.problem(format!(
                "checkpoint at tree size {size} is not proven consistent with the one before it (tree size {previous_size}): the checkpoint chain was rewritten"
            ));
        }
        roots.push((size, root));
        (previous_size, previous_root) = (size, root);
    }
    // 3: the records against the roots.
    let rows = client
        .query_raw(
            "SELECT seq, event_id, instance_id, correlation_id, chain_position, bytes, prev_event_hash, content_hash, intent, action, status, started_at, completed_at, duration_ms FROM intentproof.records WHERE daemon = $1 ORDER BY seq",
            &[&name],
        )
        .await?;
    pin_mut!(rows);
    let mut accumulator = RootAccumulator::default();
    let mut pending_roots = roots.iter().peekable();
    while let Some(row) = rows.next().await {
        let row = row?;
        let seq: i64 = row.get(0);
        let bytes: &[u8] = row.get(5);
        if seq != accumulator.len() as i64 {
            report.problem(format!(
                "record {} is missing (the next row is seq {seq}): rows were deleted",
                accumulator.len()
            ));
            break;
        }
        check_facts(&mut report, seq, &row, bytes);
        accumulator.push(merkle::leaf_hash(bytes));
        if let Some((size, root)) = pending_roots.peek()
            && *size == accumulator.len()
        {
            if accumulator.root() == *root {
                report.covered = *size;
            } else {
                report.problem(format!(
                    "the records 0..{size} do not hash to the root its checkpoint at tree size {size} signed: rows were edited after replication"
                ));
            }
            pending_roots.next();
        }
    }
    report.records = accumulator.len();
    report.uncovered = report.records - report.covered.min(report.records);
    if let Some((size, _)) = pending_roots.next() {
        report.problem(format!(
            "a checkpoint covers {size} records but PostgreSQL holds {}: rows were deleted",
            report.records
        ));
    }
    // 4: the cursor.
    if next_seq != report.records as i64 {
        report.problem(format!(
            "its replication cursor says {next_seq} records, PostgreSQL holds {}",
            report.records
        ));
    }
    Ok(report)
}

/// The row's indexed facts are those of its signed bytes (content hash
/// recomputed).
fn check_facts(report: &mut DaemonReport, seq: i64, row: &tokio_postgres::Row, bytes: &[u8]) {
    let meta = serde_json::from_slice(bytes)
        .ok()
        .and_then(|value| EventMeta::from_v1(&value, None).ok());
    let Some(meta) = meta else {
        report.problem(format!("record {seq}: its bytes are not a signed v1 event"));
        return;
    };
    let position = i64::try_from(meta.chain_position).unwrap_or(-1);
    let duration = i64::try_from(meta.duration_ms).unwrap_or(-1);
    let same = row.get::<_, &str>(1) == meta.event_id
        && row.get::<_, &str>(2) == meta.instance_id
        && row.get::<_, &str>(3) == meta.correlation_id
        && row.get::<_, i64>(4) == position
        && row.get::<_, &str>(6) == meta.prev_event_hash
        && row.get::<_, &str>(7) == meta.content_hash
        && row.get::<_, &str>(8) == meta.intent
        && row.get::<_, &str>(9) == meta.action
        && row.get::<_, &str>(10) == meta.status
        && row.get::<_, &str>(11) == meta.started_at
        && row.get::<_, &str>(12) == meta.completed_at
        && row.get::<_, i64>(13) == duration;
    if !same {
        report.problem(format!(
            "record {seq}: the row's indexed facts differ from its signed bytes (event {})",
            meta.event_id
        ));
    }
}

/// `intentproof fleet status`: one line a daemon (records, checkpoints,
/// when it last replicated, faults), without checking anything.
pub async fn status(client: &Client) -> Result<String, FleetError> {
    use std::fmt::Write;
    if crate::schema::version(client).await? == 0 {
        return Ok("no daemon has replicated here yet (the fleet schema is not created)\n".into());
    }
    let rows = client
        .query(
            "SELECT d.daemon, d.origin, d.next_seq, coalesce(d.replicated_at::text, 'never'),
                    (SELECT count(*) FROM intentproof.checkpoints c WHERE c.daemon = d.daemon),
                    (SELECT coalesce(max(tree_size), 0) FROM intentproof.checkpoints c WHERE c.daemon = d.daemon),
                    (SELECT count(*) FROM intentproof.faults f WHERE f.daemon = d.daemon)
             FROM intentproof.daemons d ORDER BY d.daemon",
            &[],
        )
        .await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "daemon\torigin\trecords\tcheckpoints\tlargest checkpoint\tlast replicated\tfaults"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, i64>(2),
            row.get::<_, i64>(4),
            row.get::<_, i64>(5),
            row.get::<_, String>(3),
            row.get::<_, i64>(6),
        );
    }
    Ok(out)
}
