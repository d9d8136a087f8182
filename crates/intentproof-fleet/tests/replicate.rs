//! Replication into a real PostgreSQL server (started per test from the
//! system's packages, `intentproof_fleet::testing`), and `fleet verify`
//! over what it holds.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use intentproof_core::keys::InstanceKey;
use intentproof_core::seal::Sealer;
use intentproof_core::{ExecutionEvent, merkle};
use intentproof_fleet::replicate::DaemonIdentity;
use intentproof_fleet::testing::PgServer;
use intentproof_fleet::{FleetConfig, Replicator, verify_fleet};
use intentproof_store::checkpoint::{self, Checkpoint};
use intentproof_store::{EventMeta, Incoming, Store, StoreOptions};
use serde_json::json;

fn key(name: &str) -> InstanceKey {
    InstanceKey::from_seed(name, [7u8; 32])
}

fn open(dir: &Path, name: &str) -> Store {
    let trusted = key(name).verifying_key();
    let name = name.to_owned();
    Store::open(dir, StoreOptions::default(), &move |i: &str| {
        (i == name).then_some(trusted)
    })
    .unwrap()
}

/// Appends `n` events (correlations c0..c2) and signs a checkpoint.
fn append(store: &Store, sealer: &Sealer, dir: &Path, name: &str, n: usize) {
    let events: Vec<Incoming> = (0..n)
        .map(|i| {
            let event = ExecutionEvent::builder("refund the order", "ledger.write")
                .correlation_id(format!("c{}", i % 3))
                .inputs(json!([i]))
                .output(json!({"ok": true}))
                .build();
            let sealed = sealer.seal(&event).unwrap().event;
            Incoming::new(
                EventMeta::from_v1(&sealed, Some(&key(name).verifying_key())).unwrap(),
                serde_json::to_vec(&sealed).unwrap(),
            )
        })
        .collect();
    for r in store.append(events).unwrap() {
        r.unwrap();
    }
    let size = store.tree_size();
    let cp = Checkpoint::sign(
        size,
        &store.root(size).unwrap(),
        "2026-12-07T00:00:00.000Z",
        key(name).signing_key(),
        &key(name).key_id(),
    )
    .unwrap();
    checkpoint::append(dir, &cp).unwrap();
    store.flush().unwrap();
}

fn identity(name: &str) -> DaemonIdentity {
    DaemonIdentity {
        name: name.to_owned(),
        public_key: key(name).public_key_base64(),
        key_id: key(name).key_id(),
        origin: format!("intentproof-gateway/{name}"),
    }
}

fn fleet(pg: &PgServer) -> FleetConfig {
    FleetConfig {
        postgres_url: pg.url(),
        ..FleetConfig::default()
    }
}

/// Steps until nothing is left to copy; returns (records, checkpoints).
async fn drain(replicator: &Replicator) -> (u64, u64) {
    let mut client = replicator.connect().await.unwrap();
    let (mut records, mut checkpoints) = (0, 0);
    loop {
        let step = replicator.step(&mut client).await.unwrap();
        if step.records == 0 && step.checkpoints == 0 {
            return (records, checkpoints);
        }
        records += step.records;
        checkpoints += step.checkpoints;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_once_with_its_checkpoints_and_fleet_verify_passes() {
    let pg = PgServer::start(false).unwrap();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let store_a = Arc::new(open(a.path(), "gw-a"));
    let store_b = Arc::new(open(b.path(), "gw-b"));
    let (sealer_a, sealer_b) = (Sealer::new(key("gw-a")), Sealer::new(key("gw-b")));
    append(&store_a, &sealer_a, a.path(), "gw-a", 300);
    append(&store_a, &sealer_a, a.path(), "gw-a", 5);
    append(&store_b, &sealer_b, b.path(), "gw-b", 7);
    let config = FleetConfig {
        batch_records: Some(128),
        ..fleet(&pg)
    };
    let rep_a = Replicator::new(
        config.clone(),
        identity("gw-a"),
        Arc::clone(&store_a),
        a.path().into(),
    )
    .unwrap();
    let rep_b = Replicator::new(
        config,
        identity("gw-b"),
        Arc::clone(&store_b),
        b.path().into(),
    )
    .unwrap();
    assert_eq!(drain(&rep_a).await, (305, 2));
    assert_eq!(drain(&rep_b).await, (7, 1));
    // Again: nothing more (the cursor is in the database).
    assert_eq!(drain(&rep_a).await, (0, 0));

    let client = fleet(&pg).connect().await.unwrap();
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM intentproof.records WHERE daemon = 'gw-a'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
            row.get::<_, i64>(3)
        ),
        (305, 305, 0, 304)
    );
    // The bytes are the journal's, exactly.
    let first: Vec<u8> = client
        .query_one(
            "SELECT bytes FROM intentproof.records WHERE daemon = 'gw-a' AND seq = 17",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let entry = store_a.raw_records(17, 1, usize::MAX).unwrap();
    assert_eq!(first, entry[0].1);
    let checkpoints: Vec<(i64, i64, usize)> = client
        .query(
            "SELECT tree_size, consistency_from, cardinality(consistency_proof) FROM intentproof.checkpoints WHERE daemon = 'gw-a' ORDER BY tree_size",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get::<_, i32>(2) as usize))
        .collect();
    assert_eq!(checkpoints.len(), 2);
    assert_eq!((checkpoints[0].0, checkpoints[0].1), (300, 0));
    assert_eq!((checkpoints[1].0, checkpoints[1].1), (305, 300));
    assert_eq!(
        checkpoints[1].2,
        merkle::consistency_proof(&[[0u8; 32]; 305], 300)
            .unwrap()
            .len()
    );

    let report = verify_fleet(&client).await.unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(
        report.to_string(),
        "✓ gw-a: 305 records, 2 checkpoints; 305 records under a verified checkpoint, 0 after the last one\n\
         ✓ gw-b: 7 records, 1 checkpoints; 7 records under a verified checkpoint, 0 after the last one\n\
         fleet verified: 2 daemons (event signatures were checked by each daemon at ingest, not here)"
    );

    // The rows are append-only.
    let err = client
        .execute(
            "DELETE FROM intentproof.records WHERE daemon = 'gw-a' AND seq = 3",
            &[],
        )
        .await
        .unwrap_err();
    let err = err.as_db_error().unwrap().message().to_owned();
    assert_eq!(
        err,
        "intentproof.records: rows are append-only (the signed record and its proofs); DELETE refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_edited_in_postgres_fail_fleet_verify_by_name() {
    let pg = PgServer::start(false).unwrap();
    let a = tempfile::tempdir().unwrap();
    let store = Arc::new(open(a.path(), "gw-a"));
    append(&store, &Sealer::new(key("gw-a")), a.path(), "gw-a", 40);
    let rep = Replicator::new(
        fleet(&pg),
        identity("gw-a"),
        Arc::clone(&store),
        a.path().into(),
    )
    .unwrap();
    drain(&rep).await;
    let client = fleet(&pg).connect().await.unwrap();
    // An operator with the owner's rights drops the guard and edits a row.
    client
        .batch_execute(
            "ALTER TABLE intentproof.records DISABLE TRIGGER records_append_only;
             UPDATE intentproof.records SET bytes = replace(convert_from(bytes, 'UTF8'), 'refund the order', 'refund the ORDER')::bytea WHERE seq = 9;
             UPDATE intentproof.records SET intent = 'refund the ORDER' WHERE seq = 9;",
        )
        .await
        .unwrap();
    let report = verify_fleet(&client).await.unwrap();
    assert!(!report.ok());
    let text = report.to_string();
    assert!(
        text.starts_with("✗ gw-a: 40 records, 1 checkpoints\n"),
        "{text}"
    );
    assert!(
        text.contains("record 9: the row's indexed facts differ from its signed bytes (event "),
        "{text}"
    );
    assert!(
        text.contains(
            "the records 0..40 do not hash to the root its checkpoint at tree size 40 signed"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("fleet NOT verified: 1 of 1 daemons"),
        "{text}"
    );
    // A deleted row.
    client
        .batch_execute("DELETE FROM intentproof.records WHERE seq = 20")
        .await
        .unwrap();
    let text = verify_fleet(&client).await.unwrap().to_string();
    assert!(
        text.contains("record 20 is missing (the next row is seq 21): rows were deleted"),
        "{text}"
    );
}

/// Rewrites `from` to `to` in journal record `index` and fixes its CRC, as
/// an attacker who knows the format would.
fn rewrite_record(dir: &Path, index: usize, from: &str, to: &str) {
    let mut segments: Vec<_> = fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let segment = segments.pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    let mut at = 8;
    for _ in 0..index {
        at += 16 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let record = &mut bytes[at..at + 16 + len];
    let text = String::from_utf8(record[16..].to_vec()).unwrap();
    let edited = text.replacen(from, to, 1);
    assert!(edited != text && edited.len() == text.len());
    record[16..].copy_from_slice(edited.as_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&record[8..]);
    record[4..8].copy_from_slice(&hasher.finalize().to_le_bytes());
    fs::write(&segment, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_rewritten_after_replication_is_named_and_not_replicated_further() {
    let pg = PgServer::start(false).unwrap();
    for (case, index) in [
        ("covered by a checkpoint", 5usize),
        ("after the last checkpoint", 45),
    ] {
        let a = tempfile::tempdir().unwrap();
        let name = format!("gw-{}", index);
        {
            let store = Arc::new(open(a.path(), &name));
            let sealer = Sealer::new(key(&name));
            append(&store, &sealer, a.path(), &name, 40);
            // Six more, replicated but under no checkpoint yet.
            append(&store, &sealer, a.path(), &name, 6);
            fs::remove_file(a.path().join("checkpoints.jsonl")).unwrap();
            let size = 40;
            let cp = Checkpoint::sign(
                size,
                &store.root(size).unwrap(),
                "2026-12-07T00:00:00.000Z",
                key(&name).signing_key(),
                &key(&name).key_id(),
            )
            .unwrap();
            checkpoint::append(a.path(), &cp).unwrap();
            let rep = Replicator::new(
                fleet(&pg),
                identity(&name),
                Arc::clone(&store),
                a.path().into(),
            )
            .unwrap();
            assert_eq!(drain(&rep).await, (46, 1), "{case}");
        }
        // The journal is rewritten, the index rebuilt from it (the leaves
        // cache goes with it), as someone covering their tracks would.
        rewrite_record(a.path(), index, "refund the order", "refund the ORDER");
        fs::remove_dir_all(a.path().join("index")).unwrap();
        let store = Arc::new(open(a.path(), &name));
        let rep = Replicator::new(
            fleet(&pg),
            identity(&name),
            Arc::clone(&store),
            a.path().into(),
        )
        .unwrap();
        let err = rep.connect().await.expect_err(case).to_string();
        let want = if index < 40 {
            format!("daemon {name}: its Merkle root at tree size 40 is sha256:")
        } else {
            format!(
                "daemon {name}: its journal record {index} differs from the copy replicated to PostgreSQL: its journal was rewritten after replication"
            )
        };
        assert!(err.starts_with(&want), "{case}: {err}");
        let client = fleet(&pg).connect().await.unwrap();
        let report = verify_fleet(&client).await.unwrap().to_string();
        assert!(
            report.contains(&format!("✗ {name}: 46 records, 1 checkpoints\n    fault recorded while replicating (history_rewritten, ")),
            "{case}: {report}"
        );
    }
}

/// A private CA, and a server certificate it signed for `localhost` and
/// 127.0.0.1 (openssl CLI): (CA certificate, server certificate, server key).
fn certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-days",
            "2",
            "-subj",
            "/CN=test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_servers_ca_replicates_and_an_unknown_ca_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, cert_key) = certificates(certs.path());
    let pg = PgServer::start_tls(false, &cert, &cert_key).unwrap();
    let url = format!(
        "postgresql://postgres@localhost:{}/postgres?sslmode=require",
        pg.port()
    );
    // The platform's trust store does not know this CA: refused.
    let untrusted = FleetConfig {
        postgres_url: url.clone(),
        ..FleetConfig::default()
    };
    let err = untrusted.connect().await.unwrap_err().to_string();
    assert!(
        err.starts_with("PostgreSQL: error performing TLS handshake: invalid peer certificate: "),
        "{err}"
    );
    // With ca_file: connected over TLS, and replication works.
    let fleet = FleetConfig {
        postgres_url: url,
        ca_file: Some(ca),
        ..FleetConfig::default()
    };
    let client = fleet.connect().await.unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
    let a = tempfile::tempdir().unwrap();
    let store = Arc::new(open(a.path(), "gw-tls"));
    append(&store, &Sealer::new(key("gw-tls")), a.path(), "gw-tls", 12);
    let rep = Replicator::new(
        fleet,
        identity("gw-tls"),
        Arc::clone(&store),
        a.path().into(),
    )
    .unwrap();
    assert_eq!(drain(&rep).await, (12, 1));
    assert!(verify_fleet(&client).await.unwrap().ok());
}
