//! The fleet's tables, in the PostgreSQL schema `intentproof`, created and
//! upgraded by numbered migrations that run at start.
//!
//! | table | one row per | key |
//! |---|---|---|
//! | `daemons` | daemon (its `instance_id`): public key, origin, replication cursor `next_seq` | `daemon` |
//! | `records` | journal record: the signed bytes as stored, and the facts the daemon's index keeps | `(daemon, seq)` |
//! | `checkpoints` | checkpoint a daemon signed, its C2SP note, and the consistency proof from the previous one | `(daemon, tree_size)` |
//! | `faults` | disagreement found while replicating (history rewritten, key changed) | `id` |
//! | `chains` | correlation: first and last time, events, errors (kept by the pump in the records' transaction; the fleet view lists chains from it) | `correlation_id` |
//! | `totals` | (one row) how many chains there are, kept with them | `one` |
//!
//! `records.row_id` is the order rows committed in (replication
//! transactions take one advisory lock, so ids commit in order): the
//! fleet view pages events by it.
//!
//! `records` and `checkpoints` are append-only: a trigger refuses UPDATE and
//! DELETE, so a careless `DELETE FROM` fails loudly instead of silently
//! breaking the proofs (an owner can still drop the trigger; `fleet verify`
//! is what catches that). Migrations take a transaction-scoped advisory
//! lock, so several daemons starting at once migrate once.

use tokio_postgres::Client;

use crate::FleetError;

/// `pg_advisory_xact_lock` key of migrations ("IPFLEET" in ASCII).
const MIGRATION_LOCK: i64 = 0x0049_5046_4c45_4554;

/// `pg_advisory_xact_lock` key every replication transaction takes
/// ("IPFLREP"), so `records.row_id` commits in order.
pub const REPLICATION_LOCK: i64 = 0x0049_5046_4c52_4550;

/// The migrations, in order; version = index + 1. Never edit one that
/// shipped: add the next.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE intentproof.daemons (
    daemon        text PRIMARY KEY,
    public_key    text NOT NULL,
    key_id        text NOT NULL,
    origin        text NOT NULL,
    next_seq      bigint NOT NULL DEFAULT 0 CHECK (next_seq >= 0),
    replicated_at timestamptz
);
CREATE TABLE intentproof.records (
    daemon          text NOT NULL REFERENCES intentproof.daemons (daemon),
    seq             bigint NOT NULL CHECK (seq >= 0),
    event_id        text NOT NULL,
    instance_id     text NOT NULL,
    correlation_id  text NOT NULL,
    chain_position  bigint NOT NULL,
    prev_event_hash text NOT NULL,
    content_hash    text NOT NULL,
    intent          text NOT NULL,
    action          text NOT NULL,
    status          text NOT NULL,
    started_at      text NOT NULL,
    completed_at    text NOT NULL,
    duration_ms     bigint NOT NULL,
    signature       text NOT NULL,
    bytes           bytea NOT NULL,
    PRIMARY KEY (daemon, seq)
);
CREATE INDEX records_by_correlation ON intentproof.records (correlation_id, daemon, seq);
CREATE INDEX records_by_event_id ON intentproof.records (event_id);
CREATE INDEX records_by_completed_at ON intentproof.records (completed_at);
CREATE TABLE intentproof.checkpoints (
    daemon            text NOT NULL REFERENCES intentproof.daemons (daemon),
    tree_size         bigint NOT NULL CHECK (tree_size > 0),
    root              text NOT NULL,
    checkpoint        text NOT NULL,
    note              text,
    consistency_from  bigint NOT NULL,
    consistency_proof text[] NOT NULL,
    PRIMARY KEY (daemon, tree_size)
);
CREATE TABLE intentproof.faults (
    id     bigserial PRIMARY KEY,
    daemon text NOT NULL,
    at     timestamptz NOT NULL DEFAULT now(),
    kind   text NOT NULL,
    detail text NOT NULL
);
CREATE FUNCTION intentproof.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'intentproof.%: rows are append-only (the signed record and its proofs); % refused', TG_TABLE_NAME, TG_OP;
END
$$;
CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE ON intentproof.records
    FOR EACH ROW EXECUTE FUNCTION intentproof.append_only();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON intentproof.checkpoints
    FOR EACH ROW EXECUTE FUNCTION intentproof.append_only();
"#,
    r#"
-- The fleet view (`serve --fleet`): a global order to page events by,
-- one row per correlation to list chains by, and actions to find plans
-- and gateway calls by; all without a scan of `records`.
ALTER TABLE intentproof.records ADD COLUMN row_id bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX records_by_row_id ON intentproof.records (row_id);
CREATE INDEX records_by_action ON intentproof.records (action text_pattern_ops, correlation_id);
CREATE TABLE intentproof.chains (
    correlation_id text PRIMARY KEY,
    first_at       text NOT NULL,
    last_at        text NOT NULL,
    events         bigint NOT NULL,
    errors         bigint NOT NULL
);
CREATE INDEX chains_by_last_at ON intentproof.chains (last_at DESC, correlation_id);
INSERT INTO intentproof.chains
    SELECT correlation_id, min(started_at), max(completed_at), count(*),
           count(*) FILTER (WHERE status = 'error')
    FROM intentproof.records GROUP BY correlation_id;
-- How many chains there are, kept with them (a count(*) would scan).
CREATE TABLE intentproof.totals (
    one    boolean PRIMARY KEY DEFAULT true CHECK (one),
    chains bigint NOT NULL
);
INSERT INTO intentproof.totals (chains) SELECT count(*) FROM intentproof.chains;
"#,
];

/// Newest schema version this build knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings the database to [`SCHEMA_VERSION`]; returns the version found
/// before. Refuses a database newer than this build.
pub async fn migrate(client: &mut Client) -> Result<i32, FleetError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS intentproof;
         CREATE TABLE IF NOT EXISTS intentproof.schema_migrations (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM intentproof.schema_migrations",
            &[],
        )
        .await?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(FleetError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip(found as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO intentproof.schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(found)
}

/// The schema version the database is at (0: never migrated).
pub async fn version(client: &Client) -> Result<i32, FleetError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('intentproof.schema_migrations') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM intentproof.schema_migrations",
            &[],
        )
        .await?
        .get(0))
}
