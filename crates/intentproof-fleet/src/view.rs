//! The fleet view's reads: what `intentproof serve --fleet` answers, from
//! PostgreSQL, across every daemon.
//!
//! Every read goes through an index (schema version 2): events page by
//! `row_id` (the order replication committed them), a chain is read by
//! `records_by_correlation`, chains are listed from `chains` by
//! `chains_by_last_at` (their number kept in `totals`), plans and gateway calls are found by
//! `records_by_action`. Measured with 10M events: `BENCHMARKS.md`, "Fleet
//! view".
//!
//! **One flow over several daemons.** A correlation whose calls went
//! through several replicas is one chain here: each daemon's records in
//! its own journal order, merged by `completed_at` (ties by daemon name),
//! so a single daemon's flow reads exactly as that daemon reads it, and a
//! flow spread over replicas reads in the order its calls finished; each
//! instance's events then stand in chain-position order in the places they
//! hold ([`intentproof_store::in_chain_order`]). An
//! event stored by two daemons (an SDK that sent it to both) counts once,
//! as the first daemon in that order stored it.
//!
//! What it does not do: write anything, or check signatures (each daemon
//! checked them at ingest; `fleet verify` checks the records against the
//! daemons' checkpoints).

use std::collections::{BTreeMap, HashSet};

use intentproof_core::checkpoint::Checkpoint;
use intentproof_store::{ChainSummary, EventMeta, EventQuery, SignatureState};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::FleetError;

/// One record as PostgreSQL holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRecord {
    /// Its place in the order replication committed rows (the events
    /// page cursor).
    pub row_id: u64,
    /// The daemon that stored it.
    pub daemon: String,
    /// Its seq in that daemon's journal (= leaf index in its Merkle log).
    pub seq: u64,
    /// The facts the daemon indexed.
    pub meta: EventMeta,
    /// The signed bytes, as journaled.
    pub bytes: Vec<u8>,
}

const COLUMNS: &str = "row_id, daemon, seq, event_id, instance_id, correlation_id, chain_position, prev_event_hash, content_hash, intent, action, status, started_at, completed_at, duration_ms, signature, bytes";

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn record(row: &tokio_postgres::Row) -> FleetRecord {
    let signature = match row.get::<_, &str>(15) {
        "verified" => SignatureState::Verified,
        "key_unknown" => SignatureState::KeyUnknown,
        _ => SignatureState::Invalid,
    };
    FleetRecord {
        row_id: unsigned(row.get(0)),
        daemon: row.get(1),
        seq: unsigned(row.get(2)),
        meta: EventMeta {
            event_id: row.get(3),
            instance_id: row.get(4),
            correlation_id: row.get(5),
            chain_position: unsigned(row.get(6)),
            prev_event_hash: row.get(7),
            content_hash: row.get(8),
            intent: row.get(9),
            action: row.get(10),
            status: row.get(11),
            started_at: row.get(12),
            completed_at: row.get(13),
            duration_ms: unsigned(row.get(14)),
            signature,
        },
        bytes: row.get(16),
    }
}

/// A page of events matching `query` (its `after` is a `row_id`), in
/// replication order, and the cursor of the next page.
pub async fn events(
    client: &Client,
    query: &EventQuery,
) -> Result<(Vec<FleetRecord>, Option<u64>), FleetError> {
    let limit = query.limit.clamp(1, intentproof_store::MAX_PAGE);
    let mut clauses = Vec::new();
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut add = |clause: &str, value: Box<dyn ToSql + Sync + Send>| {
        params.push(value);
        clauses.push(clause.replace('$', &format!("${}", params.len())));
    };
    if let Some(c) = &query.correlation_id {
        add("correlation_id = $", Box::new(c.clone()));
    }
    if let Some(a) = &query.action {
        add("action = $", Box::new(a.clone()));
    }
    if let Some(s) = &query.status {
        add("status = $", Box::new(s.clone()));
    }
    if let Some(s) = &query.since {
        add("completed_at >= $", Box::new(s.clone()));
    }
    if let Some(u) = &query.until {
        add("completed_at < $", Box::new(u.clone()));
    }
    if let Some(after) = query.after {
        add(
            "row_id > $",
            Box::new(i64::try_from(after).unwrap_or(i64::MAX)),
        );
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM intentproof.records {filter} ORDER BY row_id LIMIT {}",
        limit + 1
    );
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let mut rows: Vec<FleetRecord> = client
        .query(&sql, &refs)
        .await?
        .iter()
        .map(record)
        .collect();
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| r.row_id)
    } else {
        None
    };
    Ok((rows, next))
}

/// The event `event_id` (as the first daemon that stored it has it).
pub async fn event(client: &Client, event_id: &str) -> Result<Option<FleetRecord>, FleetError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM intentproof.records WHERE event_id = $1 ORDER BY daemon, seq LIMIT 1"
            ),
            &[&event_id],
        )
        .await?;
    Ok(row.as_ref().map(record))
}

/// Every record of `correlation`, in the merged order (module docs);
/// `None` when there are more than `max`.
pub async fn chain(
    client: &Client,
    correlation: &str,
    max: usize,
) -> Result<Option<Vec<FleetRecord>>, FleetError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM intentproof.records WHERE correlation_id = $1 ORDER BY daemon, seq LIMIT $2"
            ),
            &[&correlation, &i64::try_from(max.saturating_add(1)).unwrap_or(i64::MAX)],
        )
        .await?;
    if rows.len() > max {
        return Ok(None);
    }
    Ok(Some(merge(rows.iter().map(record).collect())))
}

/// The signed bytes of every record whose event `instance` signed, as a
/// stream of rows (column 0), not held at once.
pub async fn signed_by(
    client: &Client,
    instance: &str,
) -> Result<tokio_postgres::RowStream, FleetError> {
    Ok(client
        .query_raw(
            "SELECT bytes FROM intentproof.records WHERE instance_id = $1",
            [instance],
        )
        .await?)
}

/// How many records `daemon` has replicated (its cursor).
pub async fn replicated_of(client: &Client, daemon: &str) -> Result<u64, FleetError> {
    let row = client
        .query_opt(
            "SELECT next_seq FROM intentproof.daemons WHERE daemon = $1",
            &[&daemon],
        )
        .await?;
    Ok(row.map_or(0, |r| unsigned(r.get(0))))
}

/// `records` (sorted by daemon, then seq) in the merged order, each event
/// once.
pub fn merge(records: Vec<FleetRecord>) -> Vec<FleetRecord> {
    let mut by_daemon: BTreeMap<String, std::collections::VecDeque<FleetRecord>> = BTreeMap::new();
    for r in records {
        by_daemon.entry(r.daemon.clone()).or_default().push_back(r);
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    loop {
        // The daemon whose next record finished first (ties: the first name).
        let next = by_daemon
            .iter()
            .filter_map(|(d, q)| {
                q.front()
                    .map(|r| (r.meta.completed_at.as_str(), d.as_str()))
            })
            .min()
            .map(|(_, d)| d.to_owned());
        let Some(daemon) = next else {
            break;
        };
        let Some(r) = by_daemon.get_mut(&daemon).and_then(|q| q.pop_front()) else {
            break;
        };
        if seen.insert(r.meta.event_id.clone()) {
            out.push(r);
        }
    }
    intentproof_store::in_chain_order(out, |r| &r.meta)
}

/// What the store's index says of a chain, from its records.
pub fn summary(records: &[FleetRecord]) -> Option<ChainSummary> {
    let mut summary = ChainSummary::default();
    for r in records {
        summary.add(&r.meta);
    }
    (summary.events > 0).then_some(summary)
}

/// A page of chains, latest activity first: (chains in all, the rows with
/// their summaries, and each chain's first event's bytes). The summaries
/// are aggregated by PostgreSQL (no record's bytes leave it but the first
/// of each chain).
pub async fn chains_page(
    client: &Client,
    offset: usize,
    limit: usize,
) -> Result<(usize, Vec<(ChainSummary, Vec<u8>)>), FleetError> {
    let total: i64 = client
        .query_one("SELECT chains FROM intentproof.totals", &[])
        .await?
        .get(0);
    let ids: Vec<String> = client
        .query(
            "SELECT correlation_id FROM intentproof.chains ORDER BY last_at DESC, correlation_id LIMIT $1 OFFSET $2",
            &[
                &i64::try_from(limit).unwrap_or(i64::MAX),
                &i64::try_from(offset).unwrap_or(i64::MAX),
            ],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut summaries: BTreeMap<String, ChainSummary> = BTreeMap::new();
    for row in client
        .query(
            "SELECT correlation_id, instance_id, count(DISTINCT event_id), max(chain_position),
                    min(started_at), max(completed_at),
                    count(*) FILTER (WHERE status = 'error'),
                    count(*) FILTER (WHERE signature = 'key_unknown'),
                    count(*) FILTER (WHERE signature = 'invalid')
             FROM intentproof.records WHERE correlation_id = ANY($1)
             GROUP BY correlation_id, instance_id",
            &[&ids],
        )
        .await?
    {
        let id: String = row.get(0);
        let summary = summaries.entry(id.clone()).or_default();
        summary.correlation_id = id;
        let events = unsigned(row.get(2));
        summary.instances.insert(
            row.get(1),
            intentproof_store::InstanceChain {
                events,
                max_position: unsigned(row.get(3)),
            },
        );
        let first: String = row.get(4);
        if summary.first_at.is_empty() || first < summary.first_at {
            summary.first_at = first;
        }
        let last: String = row.get(5);
        if last > summary.last_at {
            summary.last_at = last;
        }
        summary.events += events;
        summary.errors += unsigned(row.get(6));
        summary.key_unknown += unsigned(row.get(7));
        summary.invalid_signatures += unsigned(row.get(8));
    }
    for row in client
        .query(
            "SELECT correlation_id, intent FROM intentproof.records WHERE correlation_id = ANY($1)
             GROUP BY correlation_id, intent ORDER BY correlation_id, min(row_id)",
            &[&ids],
        )
        .await?
    {
        let id: String = row.get(0);
        if let Some(summary) = summaries.get_mut(&id)
            && summary.intents.len() < 8
        {
            summary.intents.push(row.get(1));
        }
    }
    let mut first: BTreeMap<String, Vec<u8>> = client
        .query(
            "SELECT DISTINCT ON (correlation_id) correlation_id, bytes FROM intentproof.records
             WHERE correlation_id = ANY($1) ORDER BY correlation_id, completed_at, daemon, seq",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let rows = ids
        .into_iter()
        .filter_map(|id| {
            let summary = summaries.remove(&id)?;
            Some((summary, first.remove(&id).unwrap_or_default()))
        })
        .collect();
    Ok((usize::try_from(total).unwrap_or(0), rows))
}

/// The records plans and findings are computed from, in the merged
/// order: every plan, plan close, task completion, tool change and gateway
/// call (`mcp.*`, `http.*`), and every event of a correlation that
/// declared a plan; `None` when there are more than `max`.
pub async fn findings_records(
    client: &Client,
    max: usize,
) -> Result<Option<Vec<FleetRecord>>, FleetError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM intentproof.records
                 WHERE action LIKE 'mcp.%' OR action LIKE 'http.%' OR action LIKE 'intentproof.%'
                    OR correlation_id IN (SELECT correlation_id FROM intentproof.records WHERE action LIKE 'intentproof.plan%')
                 ORDER BY daemon, seq LIMIT $1"
            ),
            &[&i64::try_from(max.saturating_add(1)).unwrap_or(i64::MAX)],
        )
        .await?;
    if rows.len() > max {
        return Ok(None);
    }
    Ok(Some(merge(rows.iter().map(record).collect())))
}

/// The latest `completed_at` of each of `correlations` (from `chains`).
pub async fn last_at(
    client: &Client,
    correlations: &[String],
) -> Result<BTreeMap<String, String>, FleetError> {
    Ok(client
        .query(
            "SELECT correlation_id, last_at FROM intentproof.chains WHERE correlation_id = ANY($1)",
            &[&correlations],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Replicated rows in all (a cheap "did anything change" for callers that
/// cache), from the daemons' cursors.
pub async fn replicated(client: &Client) -> Result<u64, FleetError> {
    let n: i64 = client
        .query_one(
            "SELECT coalesce(sum(next_seq), 0)::bigint FROM intentproof.daemons",
            &[],
        )
        .await?
        .get(0);
    Ok(unsigned(n))
}

/// A daemon as a fleet bundle names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonKey {
    /// Its name (instance id).
    pub daemon: String,
    /// Its public key, base64 of 32 bytes.
    pub public_key: String,
    /// Its key id (as in its checkpoints).
    pub key_id: String,
}

/// The daemons `names`, with their keys.
pub async fn daemons(client: &Client, names: &[String]) -> Result<Vec<DaemonKey>, FleetError> {
    Ok(client
        .query(
            "SELECT daemon, public_key, key_id FROM intentproof.daemons WHERE daemon = ANY($1) ORDER BY daemon",
            &[&names],
        )
        .await?
        .iter()
        .map(|r| DaemonKey {
            daemon: r.get(0),
            public_key: r.get(1),
            key_id: r.get(2),
        })
        .collect())
}

/// The smallest checkpoint of `daemon` that covers its record `seq`.
pub async fn checkpoint_covering(
    client: &Client,
    daemon: &str,
    seq: u64,
) -> Result<Option<Checkpoint>, FleetError> {
    let row = client
        .query_opt(
            "SELECT checkpoint FROM intentproof.checkpoints WHERE daemon = $1 AND tree_size > $2 ORDER BY tree_size LIMIT 1",
            &[&daemon, &i64::try_from(seq).unwrap_or(i64::MAX)],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let text: &str = row.get(0);
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| FleetError::Diverged {
            daemon: daemon.to_owned(),
            detail: format!("PostgreSQL holds a checkpoint that does not parse: {e}"),
        })
}

/// The RFC 6962 leaf hashes of `daemon`'s records `0..size`, in seq order
/// (hashed by PostgreSQL: the bytes do not cross the wire). Errs when a
/// record is missing.
pub async fn leaf_hashes(
    client: &Client,
    daemon: &str,
    size: u64,
) -> Result<Vec<intentproof_core::merkle::Hash>, FleetError> {
    let rows = client
        .query(
            "SELECT seq, sha256('\\x00'::bytea || bytes) FROM intentproof.records WHERE daemon = $1 AND seq < $2 ORDER BY seq",
            &[&daemon, &i64::try_from(size).unwrap_or(i64::MAX)],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (expected, row) in (0u64..).zip(&rows) {
        let seq = unsigned(row.get(0));
        let hash: &[u8] = row.get(1);
        let hash: intentproof_core::merkle::Hash =
            hash.try_into().map_err(|_| FleetError::Diverged {
                daemon: daemon.to_owned(),
                detail: "PostgreSQL's sha256 is not 32 bytes".into(),
            })?;
        if seq != expected {
            return Err(FleetError::Diverged {
                daemon: daemon.to_owned(),
                detail: format!("record {expected} is missing from PostgreSQL"),
            });
        }
        out.push(hash);
    }
    if out.len() as u64 != size {
        return Err(FleetError::Diverged {
            daemon: daemon.to_owned(),
            detail: format!(
                "PostgreSQL holds {} of the {size} records its checkpoint covers",
                out.len()
            ),
        });
    }
    Ok(out)
}
