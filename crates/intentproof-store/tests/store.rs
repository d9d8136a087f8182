//! The store: chain rules, idempotent re-sends, queries, restart, torn-tail
//! recovery, tamper detection by `verify`, and rebuild.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use intentproof_core::keys::InstanceKey;
use intentproof_core::seal::Sealer;
use intentproof_core::{ExecutionEvent, merkle};
use intentproof_store::checkpoint::{self, Checkpoint};
use intentproof_store::{
    Appended, ChainConflict, EventMeta, EventQuery, Incoming, SignatureState, Store, StoreOptions,
    StoredEvent, rebuild, verify,
};
use serde_json::{Value, json};

fn key() -> InstanceKey {
    InstanceKey::from_seed("inst_store_test", [9u8; 32])
}

fn trusted(instance: &str) -> Option<VerifyingKey> {
    (instance == "inst_store_test").then(|| key().verifying_key())
}

fn sealed(sealer: &Sealer, correlation: &str, action: &str, status_error: bool) -> Value {
    let mut builder = ExecutionEvent::builder("intent", action)
        .correlation_id(correlation)
        .inputs(json!([1]))
        .output(json!({"ok": true}));
    if status_error {
        builder = builder.error(intentproof_core::ErrorInfo {
            name: "E".into(),
            message: "boom".into(),
            stack: None,
        });
    }
    sealer.seal(&builder.build()).unwrap().event
}

fn incoming(event: &Value) -> Incoming {
    Incoming::new(
        EventMeta::from_v1(
            event,
            trusted(event["instance_id"].as_str().unwrap()).as_ref(),
        )
        .unwrap(),
        serde_json::to_vec(event).unwrap(),
    )
}

fn open(dir: &Path) -> Store {
    Store::open(
        dir,
        StoreOptions {
            max_segment_bytes: 8 * 1024,
            ..StoreOptions::default()
        },
        &trusted,
    )
    .unwrap()
}

/// Five events in two correlations, checkpointed.
fn populated(dir: &Path) -> Vec<Value> {
    let sealer = Sealer::new(key());
    let events = vec![
        sealed(&sealer, "corr-a", "refund.create", false),
        sealed(&sealer, "corr-b", "email.send", false),
        sealed(&sealer, "corr-a", "email.send", true),
        sealed(&sealer, "corr-b", "ledger.write", false),
        sealed(&sealer, "corr-a", "ledger.write", false),
    ];
    let store = open(dir);
    let results = store.append(events.iter().map(incoming).collect()).unwrap();
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(Appended::Stored { .. }))),
        "{results:?}"
    );
    let cp = Checkpoint::sign(
        store.tree_size(),
        &store.root(store.tree_size()).unwrap(),
        "2026-01-01T00:00:00.000Z",
        key().signing_key(),
        &key().key_id(),
    )
    .unwrap();
    checkpoint::append(dir, &cp).unwrap();
    store.flush().unwrap();
    events
}

#[test]
fn chain_rules_accept_resends_and_refuse_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let sealer = Sealer::new(key());
    let first = sealed(&sealer, "c", "a.one", false);
    let second = sealed(&sealer, "c", "a.two", false);
    let store = open(dir.path());

    // Out of order: the successor first (predecessor not yet delivered) is accepted.
    assert_eq!(
        store.append(vec![incoming(&second)]).unwrap(),
        vec![Ok(Appended::Stored { seq: 0 })]
    );
    assert_eq!(
        store.append(vec![incoming(&first)]).unwrap(),
        vec![Ok(Appended::Stored { seq: 1 })]
    );
    // Identical re-send: idempotent.
    assert_eq!(
        store.append(vec![incoming(&first)]).unwrap(),
        vec![Ok(Appended::Duplicate { seq: 1 })]
    );

    // A different event at an occupied position: fork.
    let other = Sealer::new(key());
    let forked = sealed(&other, "c", "a.fork", false);
    let result = store.append(vec![incoming(&forked)]).unwrap();
    let Err(conflict) = &result[0] else {
        panic!("fork accepted: {result:?}")
    };
    assert!(
        matches!(conflict, ChainConflict::Fork { position: 1, .. }),
        "{conflict}"
    );
    assert!(
        conflict
            .to_string()
            .starts_with("chain fork: position 1 of (inst_store_test, c) already holds event")
    );

    // Position 1 without the zero hash.
    let mut bad_genesis = sealed(&Sealer::new(key()), "d", "a", false);
    bad_genesis["prev_event_hash"] = json!(format!("sha256:{}", "1".repeat(64)));
    let meta = EventMeta::from_v1(&bad_genesis, None).unwrap();
    let result = store
        .append(vec![Incoming::new(
            meta,
            serde_json::to_vec(&bad_genesis).unwrap(),
        )])
        .unwrap();
    assert!(
        matches!(&result[0], Err(ChainConflict::BadGenesis { .. })),
        "{result:?}"
    );

    // Position 3 whose prev does not match the stored position 2.
    let third = sealed(&Sealer::new(key()), "e", "x", false); // position 1 of a fresh sealer
    let mut wrong = sealed(&sealer, "c", "a.three", false); // position 3 of "c"
    wrong["prev_event_hash"] = json!(third["prev_event_hash"].clone());
    let meta = EventMeta::from_v1(&wrong, None).unwrap();
    let result = store
        .append(vec![Incoming::new(
            meta,
            serde_json::to_vec(&wrong).unwrap(),
        )])
        .unwrap();
    assert!(
        matches!(
            &result[0],
            Err(ChainConflict::PrevMismatch { position: 3, .. })
        ),
        "{result:?}"
    );

    // The same id with different content.
    let mut reused = first.clone();
    reused["intent"] = json!("changed");
    let meta = EventMeta::from_v1(&reused, None).unwrap();
    let result = store
        .append(vec![Incoming::new(
            meta,
            serde_json::to_vec(&reused).unwrap(),
        )])
        .unwrap();
    assert!(
        matches!(&result[0], Err(ChainConflict::IdReused { .. })),
        "{result:?}"
    );
    assert_eq!(store.tree_size(), 2, "refused events are not stored");
}

/// The chain check answers from the chain's cached tip when an event
/// extends it and from the index otherwise; both must give the same
/// verdicts, before and after a restart (which empties the cache).
#[test]
fn chain_check_agrees_at_the_tip_below_it_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sealer = Sealer::new(key());
    let events: Vec<Value> = (1..=5)
        .map(|i| sealed(&sealer, "t", &format!("a.{i}"), false))
        .collect();
    let fork_sealer = Sealer::new(key());
    let forks: Vec<Value> = (1..=4)
        .map(|i| sealed(&fork_sealer, "t", &format!("f.{i}"), false))
        .collect();
    {
        let store = open(dir.path());
        for (seq, event) in events[..2].iter().enumerate() {
            assert_eq!(
                store.append(vec![incoming(event)]).unwrap(),
                vec![Ok(Appended::Stored { seq: seq as u64 })]
            );
        }
        // Position 5 arrives before 3 and 4.
        assert_eq!(
            store.append(vec![incoming(&events[4])]).unwrap(),
            vec![Ok(Appended::Stored { seq: 2 })]
        );
    }
    let store = open(dir.path());
    // A fork at the tip (position 5) and below it (position 2).
    let fork5 = sealed(&fork_sealer, "t", "f.5", false);
    for (fork, position) in [(&fork5, 5), (&forks[1], 2)] {
        let result = store.append(vec![incoming(fork)]).unwrap();
        assert!(
            matches!(&result[0], Err(ChainConflict::Fork { position: p, .. }) if *p == position),
            "position {position}: {result:?}"
        );
    }
    // Position 4 whose hash is not what the stored position 5 expects.
    let result = store.append(vec![incoming(&forks[3])]).unwrap();
    assert!(
        matches!(
            &result[0],
            Err(ChainConflict::SuccessorMismatch { position: 4, .. })
        ),
        "{result:?}"
    );
    // Position 3 whose prev is not the stored position 2.
    let result = store.append(vec![incoming(&forks[2])]).unwrap();
    assert!(
        matches!(
            &result[0],
            Err(ChainConflict::PrevMismatch { position: 3, .. })
        ),
        "{result:?}"
    );
    // The real 3 and 4 fill the gap; the re-sent tip is a duplicate.
    assert_eq!(
        store
            .append(vec![incoming(&events[2]), incoming(&events[3])])
            .unwrap(),
        vec![
            Ok(Appended::Stored { seq: 3 }),
            Ok(Appended::Stored { seq: 4 })
        ]
    );
    assert_eq!(
        store.append(vec![incoming(&events[4])]).unwrap(),
        vec![Ok(Appended::Duplicate { seq: 2 })]
    );
    // Extending past the tip after all that.
    let sixth = sealed(&sealer, "t", "a.6", false);
    assert_eq!(
        store.append(vec![incoming(&sixth)]).unwrap(),
        vec![Ok(Appended::Stored { seq: 5 })]
    );
    let result = store.append(vec![incoming(&fork5)]).unwrap();
    assert!(
        matches!(&result[0], Err(ChainConflict::Fork { position: 5, .. })),
        "{result:?}"
    );
    assert_eq!(
        store
            .chain_head("inst_store_test", "t")
            .unwrap()
            .map(|h| h.0),
        Some(6)
    );
}

#[test]
fn queries_and_summaries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let events = populated(dir.path());
    let store = open(dir.path());
    assert_eq!(store.tree_size(), 5);

    let page = store
        .events(&EventQuery {
            correlation_id: Some("corr-a".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let ids: Vec<&str> = page
        .events
        .iter()
        .map(|e| e.entry.meta.event_id.as_str())
        .collect();
    assert_eq!(
        ids,
        vec![
            events[0]["event_id"].as_str().unwrap(),
            events[2]["event_id"].as_str().unwrap(),
            events[4]["event_id"].as_str().unwrap()
        ]
    );
    assert_eq!(
        page.events[0].event, events[0],
        "stored bytes are the signed event"
    );

    let page = store
        .events(&EventQuery {
            action: Some("email.send".into()),
            status: Some("error".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].entry.meta.correlation_id, "corr-a");

    // Paging with a cursor.
    let first = store
        .events(&EventQuery {
            limit: 2,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(first.events.len(), 2);
    let rest = store
        .events(&EventQuery {
            limit: 10,
            after: first.next_cursor,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rest.events.len(), 3);
    assert_eq!(rest.next_cursor, None);

    let summary = store.chain_summary("corr-a").unwrap().unwrap();
    assert_eq!((summary.events, summary.errors), (3, 1));
    assert!(summary.verified());
    let chains = store.chains(10).unwrap();
    assert_eq!(chains.len(), 2);

    let chain = store.chain("corr-b").unwrap();
    assert_eq!(
        chain
            .iter()
            .map(|e| e.entry.meta.chain_position)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(chain[0].entry.meta.signature, SignatureState::Verified);

    // Inclusion proof of record 3 verifies against the root.
    let proof = store.inclusion_proof(3, 5).unwrap();
    let leaf = merkle::leaf_hash(&store.raw(&chain[1].entry).unwrap());
    merkle::verify_inclusion(&leaf, 3, 5, &proof, &store.root(5).unwrap()).unwrap();
}

#[test]
fn events_from_unknown_keys_are_stored_and_verified_once_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let stranger = InstanceKey::from_seed("inst_stranger", [4u8; 32]);
    let sealer = Sealer::new(stranger.clone());
    let event = sealed(&sealer, "corr-s", "a", false);
    let store = open(dir.path());
    store.append(vec![incoming(&event)]).unwrap();
    let summary = store.chain_summary("corr-s").unwrap().unwrap();
    assert_eq!(summary.key_unknown, 1);
    assert!(!summary.verified());
    assert_eq!(
        store
            .retrust("inst_stranger", &stranger.verifying_key())
            .unwrap(),
        (1, 0)
    );
    assert!(store.chain_summary("corr-s").unwrap().unwrap().verified());
    // The next commit to the chain starts from the re-checked summary.
    let next = sealed(&Sealer::new(key()), "corr-s", "b", false);
    store.append(vec![incoming(&next)]).unwrap();
    let summary = store.chain_summary("corr-s").unwrap().unwrap();
    assert_eq!((summary.events, summary.key_unknown), (2, 0));
    assert!(summary.verified());
}

#[test]
fn a_torn_tail_is_cut_kept_in_quarantine_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let segment = last_segment(dir.path());
    let clean_len = fs::metadata(&segment).unwrap().len();
    // A crash mid-append: a header promising 500 bytes, and 37 of them.
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&500u32.to_le_bytes()).unwrap();
    file.write_all(&[0u8; 4]).unwrap();
    file.write_all(&5u64.to_le_bytes()).unwrap();
    file.write_all(&[b'x'; 37]).unwrap();
    drop(file);

    let store = open(dir.path());
    assert_eq!(store.recovery().truncated_bytes, 16 + 37);
    assert_eq!(store.tree_size(), 5, "every complete record is still there");
    assert_eq!(fs::metadata(&segment).unwrap().len(), clean_len);
    let quarantined = store.recovery().quarantined_to.clone().unwrap();
    assert_eq!(fs::metadata(quarantined).unwrap().len(), 16 + 37);
    drop(store);
    verify(dir.path(), &trusted, Some(&key().verifying_key())).unwrap();
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut segments: Vec<_> = fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

/// Byte ranges of every record in the (single) segment.
fn record_ranges(segment: &Path) -> Vec<std::ops::Range<usize>> {
    let bytes = fs::read(segment).unwrap();
    let mut ranges = Vec::new();
    let mut at = 8;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        ranges.push(at..at + 16 + len);
        at += 16 + len;
    }
    ranges
}

#[test]
fn verify_passes_on_a_clean_store() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let report = verify(dir.path(), &trusted, Some(&key().verifying_key())).unwrap();
    assert_eq!(
        (
            report.records,
            report.chains,
            report.signatures_verified,
            report.checkpoint_size
        ),
        (5, 2, 5, Some(5))
    );
}

#[test]
fn verify_reports_an_edited_byte_with_its_record() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let segment = last_segment(dir.path());
    let ranges = record_ranges(&segment);
    let mut bytes = fs::read(&segment).unwrap();
    let target = ranges[2].start + 16 + 40; // inside record 2's payload
    bytes[target] ^= 0x01;
    fs::write(&segment, bytes).unwrap();
    let err = verify(dir.path(), &trusted, Some(&key().verifying_key())).unwrap_err();
    assert_eq!(
        err,
        format!(
            "journal record 2 (segment 00000000000000000000.seg, byte {}) is damaged: checksum mismatch; the journal was changed outside IntentProof or the disk is failing: run `intentproof store verify` and restore from a backup",
            ranges[2].start
        )
    );
}

#[test]
fn verify_reports_a_deleted_record_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let segment = last_segment(dir.path());
    let ranges = record_ranges(&segment);
    let mut bytes = fs::read(&segment).unwrap();
    bytes.drain(ranges[1].clone());
    fs::write(&segment, bytes).unwrap();
    let err = verify(dir.path(), &trusted, None).unwrap_err();
    assert!(err.starts_with("journal record 1 "), "{err}");
    assert!(
        err.contains("record claims sequence 2, but sequence 1 belongs here"),
        "{err}"
    );
}

#[test]
fn verify_reports_swapped_records_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let segment = last_segment(dir.path());
    let ranges = record_ranges(&segment);
    let bytes = fs::read(&segment).unwrap();
    let mut swapped = bytes[..ranges[3].start].to_vec();
    swapped.extend_from_slice(&bytes[ranges[4].clone()]);
    swapped.extend_from_slice(&bytes[ranges[3].clone()]);
    fs::write(&segment, swapped).unwrap();
    let err = verify(dir.path(), &trusted, None).unwrap_err();
    assert!(err.starts_with("journal record 3 "), "{err}");
    assert!(
        err.contains("record claims sequence 4, but sequence 3 belongs here"),
        "{err}"
    );
}

/// Rewrites `from` to `to` in record `index`'s payload and fixes its CRC, as
/// an attacker who knows the format would.
fn rewrite_record(dir: &Path, index: usize, from: &str, to: &str) {
    let segment = last_segment(dir);
    let ranges = record_ranges(&segment);
    let mut bytes = fs::read(&segment).unwrap();
    let record = &mut bytes[ranges[index].clone()];
    let text = String::from_utf8(record[16..].to_vec()).unwrap();
    let edited = text.replacen(from, to, 1);
    assert!(edited != text && edited.len() == text.len());
    record[16..].copy_from_slice(edited.as_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&record[8..]);
    let crc = hasher.finalize();
    record[4..8].copy_from_slice(&crc.to_le_bytes());
    fs::write(&segment, bytes).unwrap();
}

#[test]
fn verify_catches_a_rewrite_that_fixed_every_checksum() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    rewrite_record(dir.path(), 0, "refund.create", "refund.cancel");
    // With trusted keys: the signature gives it away.
    let err = verify(dir.path(), &trusted, None).unwrap_err();
    assert!(err.starts_with("record 0: signature of event "), "{err}");
    // Without keys: the next event's link does.
    let err = verify(dir.path(), &|_| None, None).unwrap_err();
    assert!(
        err.starts_with("record 2: event ")
            && err.contains("at position 2 of chain (inst_store_test, corr-a) links to sha256:"),
        "{err}"
    );
}

#[test]
fn verify_catches_a_rewrite_of_a_chain_end_through_the_checkpoint() {
    // The last event of a chain has no successor to contradict it; without
    // trusted keys only the signed checkpoint's Merkle root does.
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    rewrite_record(dir.path(), 4, "ledger.write", "ledger.wipe!");
    let err = verify(dir.path(), &|_| None, Some(&key().verifying_key())).unwrap_err();
    assert!(
        err.starts_with("records 0..5: Merkle root sha256:"),
        "{err}"
    );
    assert!(
        err.ends_with("a record in that range was changed, removed or reordered"),
        "{err}"
    );
}

#[test]
fn verify_rejects_a_forged_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let forger = InstanceKey::from_seed("inst_forger", [1u8; 32]);
    let cp = Checkpoint::sign(
        1,
        &[0u8; 32],
        "2026-01-01T00:00:00.000Z",
        forger.signing_key(),
        &forger.key_id(),
    )
    .unwrap();
    checkpoint::append(dir.path(), &cp).unwrap();
    let err = verify(dir.path(), &trusted, Some(&key().verifying_key())).unwrap_err();
    assert_eq!(
        err,
        "checkpoint of tree size 1 has a bad signature: it was not signed by this daemon's key, or was edited"
    );
}

#[test]
fn rebuild_restores_identical_query_results() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let snapshot = |store: &Store| {
        let events: Vec<Value> = store
            .events(&EventQuery {
                limit: 100,
                ..Default::default()
            })
            .unwrap()
            .events
            .into_iter()
            .map(|e| e.event)
            .collect();
        (
            events,
            store.chains(100).unwrap(),
            store.root(store.tree_size()).unwrap(),
        )
    };
    let before = snapshot(&open(dir.path()));
    fs::remove_dir_all(dir.path().join("index")).unwrap();
    assert_eq!(rebuild(dir.path(), &trusted).unwrap(), 5);
    let after = snapshot(&open(dir.path()));
    assert_eq!(before, after);
}

#[test]
fn segments_rotate_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let sealer = Sealer::new(key());
    let store = open(dir.path()); // 8 KiB segments
    for _ in 0..40 {
        let e = sealed(&sealer, "corr-r", "a", false);
        store.append(vec![incoming(&e)]).unwrap();
    }
    drop(store);
    let segments = fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert!(segments > 1, "{segments} segment(s)");
    let store = open(dir.path());
    assert_eq!(store.tree_size(), 40);
    assert!(store.chain_summary("corr-r").unwrap().unwrap().verified());
    drop(store);
    verify(dir.path(), &trusted, None).unwrap();
}

/// `chains_page` pages through the same order `chains` gives: most recent
/// activity first, ties by correlation id, with the total.
#[test]
fn chains_page_pages_most_recent_first_with_ties_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let sealer = Sealer::new(key());
    // (correlation, completed_at): two ties at 10:00:03.
    let plan = [
        ("corr-c", "2026-05-01T10:00:01.000Z"),
        ("corr-b", "2026-05-01T10:00:03.000Z"),
        ("corr-a", "2026-05-01T10:00:03.000Z"),
        ("corr-e", "2026-05-01T10:00:02.000Z"),
        ("corr-d", "2026-05-01T10:00:05.000Z"),
    ];
    let events: Vec<Value> = plan
        .iter()
        .map(|(correlation, at)| {
            let event = ExecutionEvent::builder("intent", "a")
                .correlation_id(*correlation)
                .timing(*at, *at, 0)
                .build();
            sealer.seal(&event).unwrap().event
        })
        .collect();
    store.append(events.iter().map(incoming).collect()).unwrap();

    let ids = |chains: &[intentproof_store::ChainSummary]| -> Vec<String> {
        chains.iter().map(|c| c.correlation_id.clone()).collect()
    };
    let all = store.chains(usize::MAX).unwrap();
    assert_eq!(
        ids(&all),
        ["corr-d", "corr-a", "corr-b", "corr-e", "corr-c"]
    );
    let (total, first) = store.chains_page(0, 2).unwrap();
    assert_eq!(
        (total, ids(&first)),
        (5, vec!["corr-d".to_owned(), "corr-a".to_owned()])
    );
    let (total, rest) = store.chains_page(2, 10).unwrap();
    assert_eq!(total, 5);
    assert_eq!(ids(&rest), ["corr-b", "corr-e", "corr-c"]);
    assert_eq!(rest, all[2..]);
    assert_eq!(store.chains_page(5, 10).unwrap(), (5, Vec::new()));
}

/// The seqs a query returns when paged one event at a time.
fn paged_seqs(store: &Store, query: EventQuery) -> Vec<u64> {
    let mut seqs = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .events(&EventQuery {
                limit: 1,
                after,
                ..query.clone()
            })
            .unwrap();
        seqs.extend(page.events.iter().map(|e| e.entry.seq));
        match page.next_cursor {
            Some(cursor) => after = Some(cursor),
            None => return seqs,
        }
    }
}

/// Every facet query's answer, paged, plus the summaries.
fn facet_answers(store: &Store) -> Vec<String> {
    let query = |f: &dyn Fn(&mut EventQuery)| {
        let mut q = EventQuery::default();
        f(&mut q);
        format!("{:?}", paged_seqs(store, q))
    };
    let with_prefix = |prefix: &str| {
        let seqs: Vec<u64> = store
            .entries_with_action_prefix(prefix)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        format!("{seqs:?}")
    };
    vec![
        query(&|q| q.correlation_id = Some("corr-a".into())),
        query(&|q| q.correlation_id = Some("corr-b".into())),
        query(&|q| q.action = Some("x.run".into())),
        query(&|q| q.status = Some("ok".into())),
        query(&|q| q.status = Some("error".into())),
        query(&|_| {}),
        with_prefix("x."),
        with_prefix(""),
        format!(
            "{:?}",
            store
                .chain("corr-a")
                .unwrap()
                .iter()
                .map(|e| e.entry.seq)
                .collect::<Vec<_>>()
        ),
        format!("{:?}", store.chains(10).unwrap()),
    ]
}

#[test]
fn facet_queries_page_across_commits_and_survive_reindex_and_format_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let sealer = Sealer::new(key());
    // Three commits (seqs 0-2, 3, 4-5), so posting lists span commits.
    let commits = vec![
        vec![
            sealed(&sealer, "corr-a", "x.run", false),
            sealed(&sealer, "corr-b", "y.run", false),
            sealed(&sealer, "corr-a", "x.run", true),
        ],
        vec![sealed(&sealer, "corr-a", "y.run", false)],
        vec![
            sealed(&sealer, "corr-b", "x.run", false),
            sealed(&sealer, "corr-a", "x.run", false),
        ],
    ];
    let expected: Vec<String> = {
        let store = open(dir.path());
        for commit in &commits {
            store.append(commit.iter().map(incoming).collect()).unwrap();
        }
        let answers = facet_answers(&store);
        store.flush().unwrap();
        answers
    };
    assert_eq!(
        expected[..9],
        [
            "[0, 2, 3, 5]",
            "[1, 4]",
            "[0, 2, 4, 5]",
            "[0, 1, 3, 4, 5]",
            "[2]",
            "[0, 1, 2, 3, 4, 5]",
            "[0, 2, 4, 5]",
            "[0, 1, 2, 3, 4, 5]",
            "[0, 2, 3, 5]",
        ]
    );

    // A crash after sled persisted the last two commits' lists but not
    // `indexed_through`: the restart re-indexes seqs 3.. in one commit and
    // must replace, not add to, the lists it covers.
    {
        let db = raw_index(dir.path());
        db.open_tree("meta")
            .unwrap()
            .insert("indexed_through", &3u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    assert_eq!(facet_answers(&open(dir.path())), expected);
    // 6 lists of the first commit, 5 of the re-indexed seqs 3-5; without
    // the replacement, commit 3's lists would still be there (13).
    let db = raw_index(dir.path());
    assert_eq!(db.open_tree("postings").unwrap().len(), 11);
    // Record runs: seqs 0-2 and the re-indexed 3-5 (not also commit 3's 4-5).
    assert_eq!(db.open_tree("records").unwrap().len(), 2);
    drop(db);

    // An index of format 1 (per-event facet trees, no `format` key) is
    // re-indexed into posting lists on open.
    {
        let db = raw_index(dir.path());
        db.open_tree("meta").unwrap().remove("format").unwrap();
        db.drop_tree("postings").unwrap();
        db.open_tree("by_time")
            .unwrap()
            .insert(b"2026-01-01\0\0\0\0\0\0\0\0\0", &[])
            .unwrap();
        db.flush().unwrap();
    }
    assert_eq!(facet_answers(&open(dir.path())), expected);
    // An upgrade that crashed after dropping trees: no `format`, the
    // derived trees gone, `indexed_through` still at the end.
    {
        let db = raw_index(dir.path());
        db.open_tree("meta").unwrap().remove("format").unwrap();
        db.open_tree("postings").unwrap().clear().unwrap();
        db.open_tree("records").unwrap().clear().unwrap();
        db.flush().unwrap();
    }
    assert_eq!(facet_answers(&open(dir.path())), expected);
    let db = raw_index(dir.path());
    assert_eq!(
        db.open_tree("postings").unwrap().len(),
        6,
        "one commit's lists"
    );
    assert!(!db.tree_names().iter().any(|n| n.as_ref() == b"by_time"));
    assert_eq!(
        db.open_tree("meta")
            .unwrap()
            .get("format")
            .unwrap()
            .as_deref(),
        Some(&3u64.to_be_bytes()[..])
    );
    drop(db);

    // An index of format 2 (a copy of every event's fields in `events`,
    // ids by seq in `seq_ids`): those trees are dropped and the journal
    // re-indexed into format 3.
    {
        let db = raw_index(dir.path());
        db.open_tree("meta")
            .unwrap()
            .insert("format", &2u64.to_be_bytes())
            .unwrap();
        db.drop_tree("records").unwrap();
        db.drop_tree("ids").unwrap();
        db.open_tree("events").unwrap().insert("e-1", &[1]).unwrap();
        db.open_tree("seq_ids")
            .unwrap()
            .insert(0u64.to_be_bytes(), &[0])
            .unwrap();
        db.flush().unwrap();
    }
    assert_eq!(facet_answers(&open(dir.path())), expected);
    let db = raw_index(dir.path());
    for gone in ["events", "seq_ids"] {
        assert!(
            !db.tree_names()
                .iter()
                .any(|n| n.as_ref() == gone.as_bytes()),
            "{gone}"
        );
    }
    assert_eq!(
        db.open_tree("records").unwrap().len(),
        1,
        "one re-indexed run"
    );
    assert_eq!(db.open_tree("ids").unwrap().len(), 6);
}

/// The sled index itself, once the store that had it open has let go (sled
/// releases its lock from a background thread).
fn raw_index(dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(dir.join("index")) {
            Ok(db) => return db,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("sled index: {e}"),
        }
    }
}

#[test]
fn a_damaged_leaves_file_is_repaired_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()); // 5 records and a checkpoint of all 5
    let root = {
        let store = open(dir.path());
        store.root(5).unwrap()
    };
    let leaves = dir.path().join("index").join("leaves");
    assert_eq!(fs::metadata(&leaves).unwrap().len(), 5 * 32);
    type Damage<'a> = (&'a str, &'a dyn Fn(&Path));
    let damages: [Damage; 4] = [
        ("torn last leaf", &|p| {
            OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(4 * 32 + 7)
                .unwrap()
        }),
        ("a flipped byte (found through the checkpoint)", &|p| {
            let mut bytes = fs::read(p).unwrap();
            bytes[40] ^= 1;
            fs::write(p, bytes).unwrap();
        }),
        ("leaves of records the journal does not have", &|p| {
            OpenOptions::new()
                .append(true)
                .open(p)
                .unwrap()
                .write_all(&[7u8; 64])
                .unwrap()
        }),
        ("the file deleted", &|p| fs::remove_file(p).unwrap()),
    ];
    for (what, damage) in damages {
        damage(&leaves);
        let store = open(dir.path());
        assert_eq!(
            (store.tree_size(), store.root(5).unwrap()),
            (5, root),
            "{what}"
        );
        drop(store);
        assert_eq!(
            fs::metadata(&leaves).unwrap().len(),
            5 * 32,
            "{what}: rewritten"
        );
        let report = verify(dir.path(), &trusted, Some(&key().verifying_key())).unwrap();
        assert_eq!(report.records, 5, "{what}");
    }
    // A leaf the checkpoint does not cover yet, zeroed (a power loss before
    // the unsynced file reached the disk): hashed again from the journal.
    let root6 = {
        let store = open(dir.path());
        let event = sealed(&Sealer::new(key()), "corr-c", "a", false);
        store.append(vec![incoming(&event)]).unwrap();
        store.root(6).unwrap()
    };
    let mut bytes = fs::read(&leaves).unwrap();
    bytes[5 * 32..].fill(0);
    fs::write(&leaves, bytes).unwrap();
    assert_eq!(open(dir.path()).root(6).unwrap(), root6);
}

#[test]
fn a_value_extending_another_past_a_nul_does_not_hide_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let sealer = Sealer::new(key());
    let store = open(dir.path());
    let first: Vec<Value> = (0..4).map(|_| sealed(&sealer, "v", "a", false)).collect();
    store.append(first.iter().map(incoming).collect()).unwrap();
    let other = sealed(&sealer, "v\0\0\0\0\0\0\0\0", "a", false);
    store.append(vec![incoming(&other)]).unwrap();
    let page = store
        .events(&EventQuery {
            correlation_id: Some("v".into()),
            after: Some(0),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let seqs: Vec<u64> = page.events.iter().map(|e| e.entry.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(store.chain("v").unwrap().len(), 4);
}

#[test]
fn a_long_reindex_is_cut_into_lists_of_at_most_4096() {
    let dir = tempfile::tempdir().unwrap();
    let sealer = Sealer::new(key());
    let events: Vec<Value> = (0..5000)
        .map(|i| sealed(&sealer, &format!("c{}", i % 50), "a", false))
        .collect();
    {
        let store = open(dir.path());
        store.append(events.iter().map(incoming).collect()).unwrap();
        store.flush().unwrap();
    }
    {
        let db = raw_index(dir.path());
        db.open_tree("meta")
            .unwrap()
            .insert("indexed_through", &0u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let store = open(dir.path());
    let status_ok = paged_seqs(
        &store,
        EventQuery {
            status: Some("ok".into()),
            ..Default::default()
        },
    );
    assert_eq!(status_ok, (0..5000).collect::<Vec<u64>>());
    drop(store);
    let db = raw_index(dir.path());
    let lists: Vec<usize> = db
        .open_tree("postings")
        .unwrap()
        .scan_prefix(b"sok\0")
        .map(|item| item.unwrap().1.len() / 8)
        .collect();
    assert_eq!(lists, [4096, 904]);
}

#[test]
fn a_resend_inside_one_batch_gets_its_first_copys_seq() {
    let dir = tempfile::tempdir().unwrap();
    let sealer = Sealer::new(key());
    let a = sealed(&sealer, "corr-a", "x", false);
    let b = sealed(&sealer, "corr-b", "x", false);
    let store = open(dir.path());
    let results = store
        .append(vec![incoming(&a), incoming(&b), incoming(&b)])
        .unwrap();
    assert_eq!(
        results,
        vec![
            Ok(Appended::Stored { seq: 0 }),
            Ok(Appended::Stored { seq: 1 }),
            Ok(Appended::Duplicate { seq: 1 }),
        ]
    );
}

/// `correlation_actions_after` returns the correlation's events with the
/// wanted actions after a seq, and how far it looked: asking again after
/// that gives only what was stored since.
#[test]
fn correlation_actions_after_reads_only_what_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let sealer = Sealer::new(key());
    let store = open(dir.path());
    let actions = ["p.declare", "p.close"];
    let seqs =
        |events: &[StoredEvent]| -> Vec<u64> { events.iter().map(|e| e.entry.seq).collect() };
    assert_eq!(
        store
            .correlation_actions_after("corr-a", &actions, None)
            .unwrap()
            .1,
        None
    );
    // seqs 0-4; corr-a has 0, 1, 3, 4.
    store
        .append(
            [
                ("corr-a", "p.declare"),
                ("corr-a", "call"),
                ("corr-b", "p.declare"),
                ("corr-a", "call"),
                ("corr-a", "p.close"),
            ]
            .iter()
            .map(|(c, a)| incoming(&sealed(&sealer, c, a, false)))
            .collect(),
        )
        .unwrap();
    let (found, through) = store
        .correlation_actions_after("corr-a", &actions, None)
        .unwrap();
    assert_eq!((seqs(&found), through), (vec![0, 4], Some(4)));
    // Nothing new: nothing found, the same mark.
    let (found, through) = store
        .correlation_actions_after("corr-a", &actions, Some(4))
        .unwrap();
    assert_eq!((seqs(&found), through), (vec![], Some(4)));
    // seqs 5-7: only what follows the mark is read.
    store
        .append(
            [
                ("corr-b", "call"),
                ("corr-a", "call"),
                ("corr-a", "p.declare"),
            ]
            .iter()
            .map(|(c, a)| incoming(&sealed(&sealer, c, a, false)))
            .collect(),
        )
        .unwrap();
    let (found, through) = store
        .correlation_actions_after("corr-a", &actions, Some(4))
        .unwrap();
    assert_eq!((seqs(&found), through), (vec![7], Some(7)));
    // A mark in the middle: from there on.
    let (found, through) = store
        .correlation_actions_after("corr-a", &actions, Some(1))
        .unwrap();
    assert_eq!((seqs(&found), through), (vec![4, 7], Some(7)));
    // Other correlations and actions are not returned.
    let (found, through) = store
        .correlation_actions_after("corr-b", &["call"], None)
        .unwrap();
    assert_eq!((seqs(&found), through), (vec![5], Some(5)));
}

/// An index written by a newer build is refused with a message that names
/// both ways out, not as a damaged entry.
#[test]
fn an_index_from_a_newer_build_is_refused_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    {
        let db = raw_index(dir.path());
        db.open_tree("meta")
            .unwrap()
            .insert("format", &4u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let refused = Store::open(dir.path(), StoreOptions::default(), &trusted)
        .err()
        .expect("a newer index must be refused");
    assert!(
        matches!(
            refused,
            intentproof_store::StoreError::NewerIndex {
                found: 4,
                supported: 3
            }
        ),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("intentproof store rebuild"),
        "{refused}"
    );
}

/// Releasing the tip and summary caches loses nothing: the next event of
/// a chain is still checked against what is stored (a fork is refused,
/// the next position accepted) and the summaries keep counting.
#[test]
fn released_caches_refill_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let sealer = Sealer::new(key());
    let firsts: Vec<Value> = (0..3)
        .map(|i| sealed(&sealer, &format!("rc-{i}"), "a", false))
        .collect();
    let stored = store.append(firsts.iter().map(incoming).collect()).unwrap();
    assert!(stored.iter().all(Result::is_ok), "{stored:?}");
    assert_eq!(store.cached_chains(), (3, 3));
    store.release_caches();
    assert_eq!(store.cached_chains(), (0, 0));
    // Another sealer's position 1 of rc-0: a fork of the stored one.
    let fork = sealed(&Sealer::new(key()), "rc-0", "a", false);
    let second = sealed(&sealer, "rc-0", "b", true);
    let result = store
        .append(vec![incoming(&fork), incoming(&second)])
        .unwrap();
    assert!(
        matches!(&result[0], Err(ChainConflict::Fork { position: 1, .. })),
        "{result:?}"
    );
    assert!(
        matches!(result[1], Ok(Appended::Stored { seq: 3 })),
        "{result:?}"
    );
    let summary = store.chain_summary("rc-0").unwrap().unwrap();
    assert_eq!((summary.events, summary.errors, summary.gaps()), (2, 1, 0));
}

/// Every file under `dir`: its path, bytes and mtime.
fn files_of(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                pending.push(path);
            } else {
                out.push((
                    path.clone(),
                    fs::read(&path).unwrap(),
                    meta.modified().unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_read_only_store_reads_everything_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let events = populated(dir.path());
    // While a writer (the daemon) runs and appends: the reader indexes the
    // journal as it was when it opened, and writes nothing of the store.
    let writer = open(dir.path());
    let sealer = Sealer::new(key());
    let running = sealed(&sealer, "corr-d", "during.run", false);
    writer.append(vec![incoming(&running)]).unwrap();
    writer.flush().unwrap();
    let idle = files_of(dir.path());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let reader = Store::open_read_only(dir.path(), StoreOptions::default(), &trusted).unwrap();
    assert_eq!(files_of(dir.path()), idle, "the reader wrote to the store");
    assert_eq!(reader.tree_size(), 6);
    let running_id = running["event_id"].as_str().unwrap();
    assert_eq!(reader.get(running_id).unwrap().unwrap().event, running);
    assert_eq!(reader.chain("corr-a").unwrap().len(), 3);
    let proof = reader.inclusion_proof(5, 6).unwrap();
    let leaf = merkle::leaf_hash(&serde_json::to_vec(&running).unwrap());
    merkle::verify_inclusion(&leaf, 5, 6, &proof, &reader.root(6).unwrap()).unwrap();
    let next = sealed(&sealer, "corr-d", "after.open", false);
    writer.append(vec![incoming(&next)]).unwrap();
    assert_eq!(
        reader.tree_size(),
        6,
        "a reader sees the store as it opened"
    );
    drop(reader);
    let reader = Store::open_read_only(dir.path(), StoreOptions::default(), &trusted).unwrap();
    assert_eq!(reader.chain("corr-d").unwrap().len(), 2);
    drop(reader);
    drop(writer);
    // A record the journal holds and the index missed (a crash before
    // sled flushed): the read-only store indexes it, in its copy.
    let late = sealed(&Sealer::new(key()), "corr-c", "late.write", false);
    let (mut journal, _) =
        intentproof_store::journal::Journal::open(&dir.path().join("journal"), 8 * 1024).unwrap();
    journal
        .append(&[serde_json::to_vec(&late).unwrap()])
        .unwrap();
    drop(journal);
    // A crash mid-append, which a writer's open would cut (see above).
    let mut file = OpenOptions::new()
        .append(true)
        .open(last_segment(dir.path()))
        .unwrap();
    file.write_all(&500u32.to_le_bytes()).unwrap();
    file.write_all(&[b'x'; 21]).unwrap();
    drop(file);
    // sled lets go of its lock from a thread of its own, a moment later.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let before = files_of(dir.path());
    // mtimes have a clock tick's resolution: a write now would show.
    std::thread::sleep(std::time::Duration::from_millis(20));

    let store = Store::open_read_only(dir.path(), StoreOptions::default(), &trusted).unwrap();
    assert_eq!(store.tree_size(), 8);
    let late_id = late["event_id"].as_str().unwrap();
    assert_eq!(store.get(late_id).unwrap().unwrap().event, late);
    let chain: Vec<Value> = store
        .chain("corr-a")
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(
        chain,
        vec![events[0].clone(), events[2].clone(), events[4].clone()]
    );
    let (total, page) = store.chains_page(0, 10).unwrap();
    assert_eq!(total, 4);
    assert_eq!(page.len(), 4);
    let id = events[3]["event_id"].as_str().unwrap();
    assert_eq!(store.get(id).unwrap().unwrap().event, events[3]);
    let proof = store.inclusion_proof(3, 8).unwrap();
    let leaf = merkle::leaf_hash(&serde_json::to_vec(&events[3]).unwrap());
    merkle::verify_inclusion(&leaf, 3, 8, &proof, &store.root(8).unwrap()).unwrap();
    let sealer = Sealer::new(key());
    let refused = store
        .append(vec![incoming(&sealed(&sealer, "corr-c", "x", false))])
        .unwrap_err();
    assert!(
        matches!(refused, intentproof_store::StoreError::ReadOnly(_)),
        "{refused}"
    );
    assert!(store.set_cursor("otel", 3).is_err());
    drop(store);
    std::thread::sleep(std::time::Duration::from_millis(200));

    let after = files_of(dir.path());
    assert_eq!(
        before.iter().map(|f| &f.0).collect::<Vec<_>>(),
        after.iter().map(|f| &f.0).collect::<Vec<_>>(),
        "no file created or removed"
    );
    for (b, a) in before.iter().zip(&after) {
        assert!(b.1 == a.1, "{} changed", b.0.display());
        assert_eq!(b.2, a.2, "{} was written (mtime)", b.0.display());
    }
    // The writer's open still finds (and cuts) the torn tail.
    let store = open(dir.path());
    assert_eq!(store.recovery().truncated_bytes, 4 + 21);
}

/// The writer keeps only blocks of 32 Merkle leaves in memory and reads
/// a block back for a proof: every proof and root of a 100-record store is
/// the plain functions' answer, from the leaves file, and still from the
/// journal when the file is damaged or cut while the store is open.
#[test]
fn proofs_read_blocks_of_leaves_back_and_survive_a_damaged_leaves_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let sealer = Sealer::new(key());
    let events: Vec<Value> = (0..100)
        .map(|i| sealed(&sealer, &format!("corr-{}", i % 7), "x.run", false))
        .collect();
    for batch in events.chunks(13) {
        store
            .append(batch.iter().map(incoming).collect())
            .unwrap()
            .into_iter()
            .for_each(|r| assert!(matches!(r, Ok(Appended::Stored { .. }))));
    }
    let leaves: Vec<merkle::Hash> = events
        .iter()
        .map(|e| merkle::leaf_hash(&serde_json::to_vec(e).unwrap()))
        .collect();
    let check = |what: &str| {
        for size in [1usize, 31, 32, 33, 64, 70, 99, 100] {
            assert_eq!(
                store.root(size as u64).unwrap(),
                merkle::root(&leaves[..size]),
                "{what}: root of {size}"
            );
            for seq in [0usize, 5, 31, 32, 40, 63, 64, 98, 99] {
                if seq >= size {
                    continue;
                }
                assert_eq!(
                    store.inclusion_proof(seq as u64, size as u64).unwrap(),
                    merkle::inclusion_proof(&leaves[..size], seq).unwrap(),
                    "{what}: record {seq} of {size}"
                );
            }
        }
    };
    check("intact");
    let file = dir.path().join("index").join("leaves");
    let mut bytes = fs::read(&file).unwrap();
    assert_eq!(bytes.len(), 100 * 32);
    bytes[40 * 32] ^= 1; // record 40, in the second block
    fs::write(&file, &bytes).unwrap();
    check("a flipped byte in the leaves file");
    OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(10 * 32)
        .unwrap();
    check("the leaves file cut to 10 records");
}

/// A chain delivered out of order reads in position order, each instance
/// in the places its events held.
#[test]
fn in_chain_order_sorts_each_instance_in_its_places() {
    let meta = |instance: &str, position: u64| EventMeta {
        event_id: format!("{instance}-{position}"),
        instance_id: instance.into(),
        correlation_id: "c".into(),
        chain_position: position,
        prev_event_hash: String::new(),
        content_hash: String::new(),
        intent: String::new(),
        action: "a".into(),
        status: "ok".into(),
        started_at: String::new(),
        completed_at: String::new(),
        duration_ms: 0,
        signature: intentproof_store::SignatureState::Verified,
    };
    let items = vec![
        meta("b", 2),
        meta("a", 1),
        meta("b", 1),
        meta("a", 3),
        meta("a", 2),
    ];
    let ordered: Vec<String> = intentproof_store::in_chain_order(items, |m| m)
        .into_iter()
        .map(|m| m.event_id)
        .collect();
    assert_eq!(ordered, ["b-1", "a-1", "b-2", "a-2", "a-3"]);
}
