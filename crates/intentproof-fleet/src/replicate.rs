//! The replication pump: one daemon's record into PostgreSQL.
//!
//! Every journal record is copied once: its bytes exactly as stored (the
//! signed event), the facts the daemon's index keeps (ids, chain position,
//! hashes, status, times, signature state), and every checkpoint the daemon
//! signed once the records it covers are in.
//!
//! **Exactly once per `(daemon, seq)`.** The cursor (`daemons.next_seq`) is
//! a row in PostgreSQL, locked (`FOR UPDATE`) and moved in the same
//! transaction as the rows it covers: a crash of the daemon or of the
//! database before COMMIT leaves neither, after COMMIT both. The pump
//! resumes from the database's cursor, never from a local one, so it cannot
//! resend what committed nor skip what did not.
//!
//! **Nothing in the ingest path waits for it.** It reads the store the
//! exporters read, wakes when something is appended, and only falls behind
//! when PostgreSQL is slow or gone (lag is on `/metrics`).
//!
//! **History is append-only.** Before it copies anything after a
//! (re)connect, the pump checks that the daemon's log still has the root
//! PostgreSQL holds for the last replicated checkpoint, and every new
//! checkpoint goes in only with a consistency proof from the previous one
//! that verifies (kept in the row for `fleet verify`). A daemon whose
//! journal was rewritten after replication, or that signs with another key
//! than the one registered for its name, gets a row in `faults` and is not
//! replicated further until an operator looks.
//!
//! Batches: COPY (binary) of up to `batch_records` rows, at most 16 MiB,
//! a transaction each.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::pin_mut;
use intentproof_core::backoff::Backoff;
use intentproof_core::merkle::{self, Hash};
use intentproof_store::checkpoint::{self, Checkpoint};
use intentproof_store::{IndexEntry, Store};
use tokio::sync::{Notify, watch};
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::config::{FleetConfig, MAX_BATCH_BYTES};
use crate::{FleetError, schema};

/// Who the daemon is in the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonIdentity {
    /// Its name: the daemon's `instance_id`.
    pub name: String,
    /// Its Ed25519 public key, base64 (standard, padded) of 32 bytes.
    pub public_key: String,
    /// Its key id (as in its checkpoints).
    pub key_id: String,
    /// Its C2SP log origin.
    pub origin: String,
}

/// What the pump has done, for `/metrics` and `doctor`.
#[derive(Debug)]
pub struct ReplicationStatus {
    /// Records in PostgreSQL (the cursor): the next seq to copy.
    pub next_seq: AtomicU64,
    /// Connected to PostgreSQL now.
    pub connected: AtomicBool,
    /// Replication stopped because the daemon's history and the
    /// database's disagree (see `faults`).
    pub halted: AtomicBool,
    /// Records copied by this process.
    pub records_copied: AtomicU64,
    /// Checkpoints copied by this process.
    pub checkpoints_copied: AtomicU64,
    /// Failed attempts (connection or transaction).
    pub errors: AtomicU64,
    /// When the pump last found nothing left to copy (start: the daemon's).
    caught_up_at: Mutex<Instant>,
}

impl Default for ReplicationStatus {
    fn default() -> Self {
        ReplicationStatus {
            next_seq: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            halted: AtomicBool::new(false),
            records_copied: AtomicU64::new(0),
            checkpoints_copied: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            caught_up_at: Mutex::new(Instant::now()),
        }
    }
}

impl ReplicationStatus {
    /// Seconds since the pump was last caught up, while the journal
    /// (`records` long) holds records PostgreSQL lacks; 0 when it holds
    /// none. Derived at read time, so it grows through an outage too.
    pub fn lag_seconds(&self, records: u64) -> f64 {
        if records <= self.next_seq.load(Ordering::Relaxed) {
            return 0.0;
        }
        self.caught_up_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
            .as_secs_f64()
    }

    fn caught_up(&self) {
        *self
            .caught_up_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }
}

/// One daemon's replication into PostgreSQL.
pub struct Replicator {
    config: FleetConfig,
    identity: DaemonIdentity,
    store: Arc<Store>,
    data_dir: PathBuf,
    status: Arc<ReplicationStatus>,
    batch: usize,
}

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// Records committed.
    pub records: u64,
    /// Checkpoints committed.
    pub checkpoints: u64,
}

/// Columns of `records`, in COPY order (and [`RECORD_TYPES`], their types).
pub const RECORD_COLUMNS: &str = "daemon, seq, event_id, instance_id, correlation_id, chain_position, prev_event_hash, content_hash, intent, action, status, started_at, completed_at, duration_ms, signature, bytes";
pub const RECORD_TYPES: [Type; 16] = [
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::BYTEA,
];

impl Replicator {
    /// A pump for `store` (whose data directory is `data_dir`).
    pub fn new(
        config: FleetConfig,
        identity: DaemonIdentity,
        store: Arc<Store>,
        data_dir: PathBuf,
    ) -> Result<Replicator, FleetError> {
        let batch = config.batch()?;
        config.pg_config()?;
        Ok(Replicator {
            config,
            identity,
            store,
            data_dir,
            status: Arc::new(ReplicationStatus::default()),
            batch,
        })
    }

    /// The shared status (for metrics).
    pub fn status(&self) -> Arc<ReplicationStatus> {
        Arc::clone(&self.status)
    }

    /// Runs until `stop` turns true: connects (with backoff), migrates,
    /// checks the history, then copies whatever is appended.
    pub async fn run(self, appended: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let url = self.config.display_url();
        loop {
            if *stop.borrow() {
                return;
            }
            let copied_before = self.status.records_copied.load(Ordering::Relaxed);
            let outcome = tokio::select! {
                outcome = self.session(&appended) => outcome,
                _ = stop.changed() => return,
            };
            self.status.connected.store(false, Ordering::Relaxed);
            match outcome {
                Err(FleetError::Diverged { daemon, detail }) => {
                    self.status.halted.store(true, Ordering::Relaxed);
                    tracing::error!(daemon = %daemon, %detail, "fleet replication stopped: this daemon's history and PostgreSQL's disagree; see intentproof fleet verify");
                    let _ = stop.changed().await;
                    return;
                }
                Err(e) => {
                    self.status.errors.fetch_add(1, Ordering::Relaxed);
                    if self.status.records_copied.load(Ordering::Relaxed) != copied_before {
                        backoff.reset();
                    }
                    let wait = backoff.next_wait(None);
                    tracing::warn!(postgres = %url, error = %e, retry_in_ms = wait.as_millis() as u64, "fleet replication interrupted");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                }
                Ok(()) => backoff.reset(),
            }
        }
    }

    /// One connection's life: returns on error (the caller reconnects).
    async fn session(&self, appended: &Notify) -> Result<(), FleetError> {
        let mut client = self.connect().await?;
        loop {
            let wake = appended.notified();
            let step = self.step(&mut client).await?;
            if step.records == 0 && step.checkpoints == 0 {
                // Caught up: wait for an append, or poll for checkpoints.
                tokio::select! {
                    _ = wake => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    /// Connects, migrates, registers the daemon and checks its history.
    pub async fn connect(&self) -> Result<Client, FleetError> {
        let mut client = self.config.connect().await?;
        // A replication transaction holds the fleet-wide lock: a daemon
        // whose connection stalls inside one must not stop the others.
        client
            .batch_execute("SET idle_in_transaction_session_timeout = '60s'")
            .await?;
        schema::migrate(&mut client).await?;
        self.register(&client).await?;
        self.status.connected.store(true, Ordering::Relaxed);
        Ok(client)
    }

    /// Registers the daemon (first time) and checks that the database's
    /// copy of it is still a prefix of its log.
    async fn register(&self, client: &Client) -> Result<(), FleetError> {
        let id = &self.identity;
        client
            .execute(
                "INSERT INTO intentproof.daemons (daemon, public_key, key_id, origin) VALUES ($1, $2, $3, $4) ON CONFLICT (daemon) DO NOTHING",
                &[&id.name, &id.public_key, &id.key_id, &id.origin],
            )
            .await?;
        let row = client
            .query_one(
                "SELECT public_key, next_seq FROM intentproof.daemons WHERE daemon = $1",
                &[&id.name],
            )
            .await?;
        let registered: String = row.get(0);
        let next_seq = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
        if registered != id.public_key {
            return self
                .diverged(
                    client,
                    "key_mismatch",
                    format!(
                        "PostgreSQL knows this daemon by public key {registered}, but it signs with {}: another daemon uses the instance_id {:?}, or its key was replaced",
                        id.public_key, id.name
                    ),
                )
                .await;
        }
        let local = self.store.tree_size();
        if next_seq > local {
            return self
                .diverged(
                    client,
                    "journal_truncated",
                    format!(
                        "PostgreSQL holds {next_seq} of its records, its journal only {local}: records were lost or removed after replication"
                    ),
                )
                .await;
        }
        let last = last_checkpoint(client, &id.name).await?;
        if let Some((size, root)) = last {
            let store = Arc::clone(&self.store);
            let local_root = tokio::task::spawn_blocking(move || store.root(size))
                .await
                .map_err(|e| FleetError::Diverged {
                    daemon: id.name.clone(),
                    detail: format!("reading the local root failed: {e}"),
                })??;
            if local_root != root {
                return self
                    .diverged(
                        client,
                        "history_rewritten",
                        format!(
                            "its Merkle root at tree size {size} is sha256:{} in its journal but sha256:{} in the checkpoint it signed and replicated: its journal was rewritten after replication",
                            merkle::hex(&local_root),
                            merkle::hex(&root)
                        ),
                    )
                    .await;
            }
        }
        let checked_to = last.map_or(0, |(size, _)| size);
        if let Some(seq) = self
            .first_changed_record(client, checked_to, next_seq)
            .await?
        {
            return self
                .diverged(
                    client,
                    "history_rewritten",
                    format!(
                        "its journal record {seq} differs from the copy replicated to PostgreSQL: its journal was rewritten after replication"
                    ),
                )
                .await;
        }
        self.status.next_seq.store(next_seq, Ordering::Relaxed);
        Ok(())
    }

    /// The records `from..to` replicated after the last checkpoint (no
    /// signed root covers them yet): the first whose local bytes differ
    /// from PostgreSQL's, compared by leaf hash (computed in the database,
    /// so only 32 bytes a record cross the wire).
    async fn first_changed_record(
        &self,
        client: &Client,
        from: u64,
        to: u64,
    ) -> Result<Option<u64>, FleetError> {
        let mut seq = from;
        while seq < to {
            let n = (to - seq).min(self.batch as u64);
            let remote = client
                .query(
                    "SELECT seq, sha256('\\x00'::bytea || bytes) FROM intentproof.records WHERE daemon = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
                    &[&self.identity.name, &(seq as i64), &((seq + n) as i64)],
                )
                .await?;
            let store = Arc::clone(&self.store);
            let local =
                tokio::task::spawn_blocking(move || store.raw_records(seq, n as usize, usize::MAX))
                    .await
                    .map_err(|e| FleetError::Diverged {
                        daemon: self.identity.name.clone(),
                        detail: format!("reading the journal failed: {e}"),
                    })??;
            for (i, row) in remote.iter().enumerate() {
                let at = u64::try_from(row.get::<_, i64>(0)).unwrap_or(u64::MAX);
                let hash: &[u8] = row.get(1);
                let same = at == seq + i as u64
                    && local
                        .get(i)
                        .is_some_and(|(_, bytes)| merkle::leaf_hash(bytes).as_slice() == hash);
                if !same {
                    return Ok(Some(seq + i as u64));
                }
            }
            if remote.len() as u64 != n {
                return Ok(Some(seq + remote.len() as u64));
            }
            seq += n;
        }
        Ok(None)
    }

    /// Records a fault (once per kind and detail) and returns it as the error.
    async fn diverged(
        &self,
        client: &Client,
        kind: &str,
        detail: String,
    ) -> Result<(), FleetError> {
        let daemon = &self.identity.name;
        client
            .execute(
                "INSERT INTO intentproof.faults (daemon, kind, detail) SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM intentproof.faults WHERE daemon = $1 AND kind = $2 AND detail = $3)",
                &[daemon, &kind, &detail],
            )
            .await?;
        Err(FleetError::Diverged {
            daemon: daemon.clone(),
            detail,
        })
    }

    /// Copies one batch of records, then every checkpoint they complete.
    pub async fn step(&self, client: &mut Client) -> Result<Step, FleetError> {
        let mut step = Step::default();
        let from = self.status.next_seq.load(Ordering::Relaxed);
        let store = Arc::clone(&self.store);
        let batch = self.batch;
        let records =
            tokio::task::spawn_blocking(move || store.raw_records(from, batch, MAX_BATCH_BYTES))
                .await
                .map_err(|e| FleetError::Diverged {
                    daemon: self.identity.name.clone(),
                    detail: format!("reading the journal failed: {e}"),
                })??;
        if !records.is_empty() {
            step.records = self.copy_records(client, from, &records).await?;
        }
        step.checkpoints = self.copy_checkpoints(client).await?;
        if step.records == 0
            && self.status.next_seq.load(Ordering::Relaxed) >= self.store.tree_size()
        {
            self.status.caught_up();
        }
        Ok(step)
    }

    /// One transaction: lock the cursor, COPY the rows, move the cursor.
    async fn copy_records(
        &self,
        client: &mut Client,
        from: u64,
        records: &[(IndexEntry, Vec<u8>)],
    ) -> Result<u64, FleetError> {
        let daemon = &self.identity.name;
        let tx = client.transaction().await?;
        // One replication transaction at a time across the fleet, so that
        // `row_id`s commit in order and a reader paging by them never
        // skips a row that commits later with a smaller id. A batch holds
        // the lock for its COPY only (~0.1 s for 4,096 records).
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&schema::REPLICATION_LOCK],
        )
        .await?;
        let cursor: i64 = tx
            .query_one(
                "SELECT next_seq FROM intentproof.daemons WHERE daemon = $1 FOR UPDATE",
                &[daemon],
            )
            .await?
            .get(0);
        if cursor != from as i64 {
            // Another process moved it (a second daemon with this name):
            // stop, and say so where `fleet verify` and `doctor` look.
            drop(tx);
            let detail = format!(
                "the replication cursor in PostgreSQL is {cursor}, this daemon expected {from}: two daemons replicate under the same instance_id"
            );
            return self
                .diverged(client, "cursor_moved", detail)
                .await
                .map(|()| 0);
        }
        copy_rows(&tx, "intentproof.records", daemon, records).await?;
        upsert_chains(&tx, records).await?;
        let next = from + records.len() as u64;
        tx.execute(
            "UPDATE intentproof.daemons SET next_seq = $2, replicated_at = now() WHERE daemon = $1",
            &[daemon, &(next as i64)],
        )
        .await?;
        tx.commit().await?;
        self.status.next_seq.store(next, Ordering::Relaxed);
        self.status
            .records_copied
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(records.len() as u64)
    }

    /// Copies the daemon's checkpoints the database lacks and whose records
    /// are all in, each with a verified consistency proof from the last.
    async fn copy_checkpoints(&self, client: &mut Client) -> Result<u64, FleetError> {
        let daemon = self.identity.name.clone();
        let copied = self.status.next_seq.load(Ordering::Relaxed);
        let (mut last_size, mut last_root) = last_checkpoint(client, &daemon)
            .await?
            .unwrap_or((0, merkle::empty_root()));
        let data_dir = self.data_dir.clone();
        let store = Arc::clone(&self.store);
        let key = self.verifying_key()?;
        // Read and prove on a blocking thread: proofs read leaves from disk.
        let from = last_size;
        let pending = tokio::task::spawn_blocking(move || {
            let checkpoints = checkpoint::after(&data_dir, from)?;
            let notes = checkpoint::notes_after(&data_dir, from)?;
            let mut out = Vec::new();
            let mut previous = from;
            for c in checkpoints {
                if c.tree_size > copied || c.tree_size <= previous {
                    continue;
                }
                let proof = store.consistency_proof(previous, c.tree_size)?;
                let note = notes.get(&c.tree_size).cloned();
                out.push((previous, c, note, proof));
                previous = out.last().map_or(previous, |p| p.1.tree_size);
            }
            Ok::<_, FleetError>(out)
        })
        .await
        .map_err(|e| FleetError::Diverged {
            daemon: daemon.clone(),
            detail: format!("reading checkpoints failed: {e}"),
        })??;
        let mut n = 0;
        for (from, c, note, proof) in pending {
            let root = c.root_hash().map_err(|detail| FleetError::Diverged {
                daemon: daemon.clone(),
                detail,
            })?;
            if let Err(e) = c.verify(&key) {
                return self
                    .diverged(
                        client,
                        "checkpoint_signature",
                        format!("its checkpoint at tree size {}: {e}", c.tree_size),
                    )
                    .await
                    .map(|()| 0);
            }
            if let Err(e) = merkle::verify_consistency(from, c.tree_size, &last_root, &root, &proof)
            {
                return self
                    .diverged(
                        client,
                        "history_rewritten",
                        format!(
                            "its checkpoint at tree size {} is not consistent with the one it replicated at {last_size} ({e}): its log was rewritten after replication",
                            c.tree_size
                        ),
                    )
                    .await
                    .map(|()| 0);
            }
            debug_assert_eq!(from, last_size);
            insert_checkpoint(client, &daemon, &c, note.as_deref(), from, &proof).await?;
            last_size = c.tree_size;
            last_root = root;
            n += 1;
        }
        self.status
            .checkpoints_copied
            .fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    fn verifying_key(&self) -> Result<ed25519_dalek::VerifyingKey, FleetError> {
        decode_key(&self.identity.public_key).ok_or_else(|| FleetError::Diverged {
            daemon: self.identity.name.clone(),
            detail: "its public key is not base64 of 32 bytes".into(),
        })
    }
}

/// COPYs `records` (each index entry and its bytes) of `daemon` into
/// `table` (`intentproof.records` or one LIKE it), binary format, inside
/// `tx`.
pub async fn copy_rows(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    daemon: &str,
    records: &[(IndexEntry, Vec<u8>)],
) -> Result<(), FleetError> {
    let sink = tx
        .copy_in(&format!(
            "COPY {table} ({RECORD_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &RECORD_TYPES);
    pin_mut!(writer);
    for (entry, bytes) in records {
        let m = &entry.meta;
        let seq = i64::try_from(entry.seq).unwrap_or(i64::MAX);
        let position = i64::try_from(m.chain_position).unwrap_or(i64::MAX);
        let duration = i64::try_from(m.duration_ms).unwrap_or(i64::MAX);
        let signature = m.signature.as_str();
        let row: [&(dyn ToSql + Sync); 16] = [
            &daemon,
            &seq,
            &m.event_id,
            &m.instance_id,
            &m.correlation_id,
            &position,
            &m.prev_event_hash,
            &m.content_hash,
            &m.intent,
            &m.action,
            &m.status,
            &m.started_at,
            &m.completed_at,
            &duration,
            &signature,
            bytes,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Adds `records` to their correlations' rows of `intentproof.chains`
/// (one statement for the batch).
async fn upsert_chains(
    tx: &tokio_postgres::Transaction<'_>,
    records: &[(IndexEntry, Vec<u8>)],
) -> Result<(), FleetError> {
    let mut chains: std::collections::BTreeMap<&str, (&str, &str, i64, i64)> =
        std::collections::BTreeMap::new();
    for (entry, _) in records {
        let m = &entry.meta;
        let row = chains.entry(m.correlation_id.as_str()).or_insert((
            m.started_at.as_str(),
            m.completed_at.as_str(),
            0,
            0,
        ));
        row.0 = row.0.min(m.started_at.as_str());
        row.1 = row.1.max(m.completed_at.as_str());
        row.2 += 1;
        row.3 += i64::from(m.status == "error");
    }
    let ids: Vec<&str> = chains.keys().copied().collect();
    let first: Vec<&str> = chains.values().map(|r| r.0).collect();
    let last: Vec<&str> = chains.values().map(|r| r.1).collect();
    let events: Vec<i64> = chains.values().map(|r| r.2).collect();
    let errors: Vec<i64> = chains.values().map(|r| r.3).collect();
    // Under the replication lock: nobody adds chains between the two.
    let known: i64 = tx
        .query_one(
            "SELECT count(*) FROM intentproof.chains WHERE correlation_id = ANY($1)",
            &[&ids],
        )
        .await?
        .get(0);
    tx.execute(
        "INSERT INTO intentproof.chains (correlation_id, first_at, last_at, events, errors)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
         ON CONFLICT (correlation_id) DO UPDATE SET
             first_at = least(chains.first_at, excluded.first_at),
             last_at = greatest(chains.last_at, excluded.last_at),
             events = chains.events + excluded.events,
             errors = chains.errors + excluded.errors",
        &[&ids, &first, &last, &events, &errors],
    )
    .await?;
    let new = i64::try_from(ids.len()).unwrap_or(i64::MAX) - known;
    if new > 0 {
        tx.execute(
            "UPDATE intentproof.totals SET chains = chains + $1",
            &[&new],
        )
        .await?;
    }
    Ok(())
}

/// A base64 Ed25519 public key.
pub(crate) fn decode_key(text: &str) -> Option<ed25519_dalek::VerifyingKey> {
    use base64::Engine;
    let bytes: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?
        .try_into()
        .ok()?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()
}

/// The largest replicated checkpoint of `daemon`: (tree size, root).
async fn last_checkpoint(client: &Client, daemon: &str) -> Result<Option<(u64, Hash)>, FleetError> {
    let row = client
        .query_opt(
            "SELECT tree_size, root FROM intentproof.checkpoints WHERE daemon = $1 ORDER BY tree_size DESC LIMIT 1",
            &[&daemon],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let size = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
    let root: String = row.get(1);
    let hash = root
        .strip_prefix("sha256:")
        .and_then(intentproof_core::checkpoint::parse_hash)
        .ok_or_else(|| FleetError::Diverged {
            daemon: daemon.to_owned(),
            detail: format!("PostgreSQL holds a malformed root {root:?} at tree size {size}"),
        })?;
    Ok(Some((size, hash)))
}

async fn insert_checkpoint(
    client: &Client,
    daemon: &str,
    c: &Checkpoint,
    note: Option<&str>,
    from: u64,
    proof: &[Hash],
) -> Result<(), FleetError> {
    let text = serde_json::to_string(c).map_err(|e| FleetError::Diverged {
        daemon: daemon.to_owned(),
        detail: format!("cannot serialize its checkpoint: {e}"),
    })?;
    let proof: Vec<String> = proof.iter().map(merkle::hex).collect();
    client
        .execute(
            "INSERT INTO intentproof.checkpoints (daemon, tree_size, root, checkpoint, note, consistency_from, consistency_proof) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &daemon,
                &(c.tree_size as i64),
                &c.root,
                &text,
                &note,
                &(from as i64),
                &proof,
            ],
        )
        .await?;
    Ok(())
}
