//! The journal through its public API: preallocated segments (appends,
//! reopening, torn tails, damage, rotation) and pruning.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use intentproof_journal::{
    Journal, JournalError, JournalOptions, RecordLocation, Recovery, prune_before, pruned_base,
    read_at, read_between, read_from,
};

const SEG0: &str = "00000000000000000000.seg";

fn preallocated(max_segment_bytes: u64) -> JournalOptions {
    JournalOptions {
        max_segment_bytes,
        preallocate_bytes: 4096,
    }
}

fn len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

/// Every record from `from` on: (seq, location, payload), and the count
/// `read_from` returns.
fn records(dir: &Path, from: u64) -> (Vec<(u64, RecordLocation, Vec<u8>)>, u64) {
    let mut out = Vec::new();
    let total = read_from(dir, from, |seq, location, payload| {
        out.push((seq, location, payload.to_vec()))
    })
    .unwrap();
    (out, total)
}

fn seqs(dir: &Path, from: u64) -> Vec<u64> {
    records(dir, from).0.iter().map(|r| r.0).collect()
}

fn segment_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

fn clean(records: u64) -> Recovery {
    Recovery {
        records,
        truncated_bytes: 0,
        quarantined_to: None,
    }
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

#[test]
fn default_options_do_not_preallocate() {
    assert_eq!(
        JournalOptions::default(),
        JournalOptions {
            max_segment_bytes: 64 * 1024 * 1024,
            preallocate_bytes: 0,
        }
    );
}

#[test]
fn preallocated_records_survive_a_reopen_and_appends_continue_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let options = preallocated(1 << 20);
    let (mut journal, recovery) = Journal::open_with(dir.path(), &options).unwrap();
    assert_eq!(recovery, clean(0));
    let payloads = [[b'a'; 100], [b'b'; 100], [b'c'; 100]];
    assert_eq!(journal.append(&payloads).unwrap(), 0);
    assert_eq!(journal.next_seq(), 3);
    let segment = dir.path().join(SEG0);
    // 8 + 3 * 116 = 356 bytes used, the rest of a 4096-byte step zeros.
    assert_eq!(len(&segment), 4096);
    drop(journal);

    let (mut journal, recovery) = Journal::open_with(dir.path(), &options).unwrap();
    assert_eq!(recovery, clean(3));
    assert_eq!(journal.next_seq(), 3);
    assert_eq!(len(&segment), 4096, "the zero tail is kept");
    assert!(!dir.path().join("quarantine").exists());
    let (first, locations) = journal.append_located(&[[b'd'; 50]]).unwrap();
    assert_eq!(first, 3);
    assert_eq!(
        locations,
        vec![RecordLocation {
            segment: 0,
            offset: 356,
            len: 50,
        }]
    );
    assert_eq!(len(&segment), 4096);
    drop(journal);

    let (read, total) = records(dir.path(), 0);
    assert_eq!(total, 4);
    let expected: Vec<(u64, RecordLocation, Vec<u8>)> = vec![
        (
            0,
            RecordLocation {
                segment: 0,
                offset: 8,
                len: 100,
            },
            vec![b'a'; 100],
        ),
        (
            1,
            RecordLocation {
                segment: 0,
                offset: 124,
                len: 100,
            },
            vec![b'b'; 100],
        ),
        (
            2,
            RecordLocation {
                segment: 0,
                offset: 240,
                len: 100,
            },
            vec![b'c'; 100],
        ),
        (
            3,
            RecordLocation {
                segment: 0,
                offset: 356,
                len: 50,
            },
            vec![b'd'; 50],
        ),
    ];
    assert_eq!(read, expected);
    assert_eq!(
        read_at(dir.path(), 3, expected[3].1).unwrap(),
        vec![b'd'; 50]
    );
    let mut between = Vec::new();
    assert_eq!(
        read_between(dir.path(), 1, 3, |seq, _, _| between.push(seq)).unwrap(),
        3
    );
    assert_eq!(between, vec![1, 2]);
    assert_eq!(Journal::open_read_only(dir.path()).unwrap().next_seq(), 4);
    assert_eq!(len(&segment), 4096, "reading changes nothing");

    let (journal, recovery) = Journal::open_with(dir.path(), &options).unwrap();
    assert_eq!((journal.next_seq(), recovery), (4, clean(4)));
}

#[test]
fn open_without_preallocation_cuts_a_zero_tail_like_a_torn_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open_with(dir.path(), &preallocated(1 << 20)).unwrap();
    journal.append(&[[b'a'; 100]]).unwrap();
    drop(journal);
    let segment = dir.path().join(SEG0);

    let (mut journal, recovery) = Journal::open(dir.path(), 1 << 20).unwrap();
    let quarantined = dir
        .path()
        .join("quarantine")
        .join("00000000000000000000.seg.at-124.bin");
    assert_eq!(
        recovery,
        Recovery {
            records: 1,
            truncated_bytes: 4096 - 124,
            quarantined_to: Some(quarantined.clone()),
        }
    );
    assert_eq!(fs::read(&quarantined).unwrap(), vec![0u8; 4096 - 124]);
    assert_eq!(len(&segment), 124);
    assert_eq!(journal.append(&[b"next"]).unwrap(), 1);
    assert_eq!(len(&segment), 124 + 16 + 4);
    assert_eq!(seqs(dir.path(), 0), vec![0, 1]);
}

#[test]
fn a_torn_record_in_a_preallocated_tail_is_cut_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let options = preallocated(1 << 20);
    let (mut journal, _) = Journal::open_with(dir.path(), &options).unwrap();
    journal.append(&[[b'a'; 10], [b'b'; 10]]).unwrap();
    drop(journal);
    let segment = dir.path().join(SEG0);
    assert_eq!(len(&segment), 4096);
    // A crash mid-append into the preallocated space: a header promising
    // 500 bytes, and 37 of them; zeros after.
    let mut torn = Vec::new();
    torn.extend_from_slice(&500u32.to_le_bytes());
    torn.extend_from_slice(&[0u8; 4]);
    torn.extend_from_slice(&2u64.to_le_bytes());
    torn.extend_from_slice(&[b'x'; 37]);
    write_at(&segment, 60, &torn);

    let (journal, recovery) = Journal::open_with(dir.path(), &options).unwrap();
    let quarantined = dir
        .path()
        .join("quarantine")
        .join("00000000000000000000.seg.at-60.bin");
    assert_eq!(
        recovery,
        Recovery {
            records: 2,
            truncated_bytes: 16 + 37,
            quarantined_to: Some(quarantined.clone()),
        }
    );
    assert_eq!(
        fs::read(&quarantined).unwrap(),
        torn,
        "the torn bytes, not the zeros after them"
    );
    assert_eq!(len(&segment), 60, "cut at the last good record");
    assert_eq!(journal.next_seq(), 2);
    drop(journal);

    let (mut journal, recovery) = Journal::open_with(dir.path(), &options).unwrap();
    assert_eq!(recovery, clean(2));
    assert_eq!(journal.append(&[b"after"]).unwrap(), 2);
    assert_eq!(len(&segment), 4096, "preallocated again");
    drop(journal);
    let (_, recovery) = Journal::open_with(dir.path(), &options).unwrap();
    assert_eq!(recovery, clean(3));
    assert_eq!(seqs(dir.path(), 0), vec![0, 1, 2]);
}

#[test]
fn a_zero_header_followed_by_a_non_zero_byte_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let options = preallocated(1 << 20);
    let (mut journal, _) = Journal::open_with(dir.path(), &options).unwrap();
    journal.append(&[[b'a'; 10], [b'b'; 10]]).unwrap();
    drop(journal);
    let segment = dir.path().join(SEG0);
    // A zero header at 60, a stray byte 100 bytes after it.
    write_at(&segment, 176, &[1]);

    let err = read_from(dir.path(), 0, |_, _, _| {}).unwrap_err();
    let JournalError::Corrupt {
        seq,
        segment: name,
        offset,
        reason,
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(
        (*seq, name.as_str(), *offset, reason.as_str()),
        (
            2,
            SEG0,
            60,
            "a record header of zero bytes, followed by a non-zero byte at byte 176"
        )
    );
    // Damage after `until` is not the reader's business; a read-only open
    // changes nothing.
    assert_eq!(read_between(dir.path(), 0, 2, |_, _, _| {}).unwrap(), 2);
    assert_eq!(Journal::open_read_only(dir.path()).unwrap().next_seq(), 2);
    assert_eq!(len(&segment), 4096);

    // The writer's open cuts it as a torn tail, up to the stray byte.
    let (journal, recovery) = Journal::open_with(dir.path(), &options).unwrap();
    assert_eq!(recovery.truncated_bytes, 176 - 60 + 1);
    let quarantined = recovery.quarantined_to.unwrap();
    let mut expected = vec![0u8; 176 - 60 + 1];
    expected[176 - 60] = 1;
    assert_eq!(fs::read(quarantined).unwrap(), expected);
    assert_eq!((journal.next_seq(), len(&segment)), (2, 60));
    drop(journal);
    let (_, recovery) = Journal::open_with(dir.path(), &options).unwrap();
    assert_eq!(recovery, clean(2));
}

/// A journal of `n` records of 1,000 bytes, one append each, in 4096-byte
/// segments preallocated in 4096-byte steps: 5 records per segment (the
/// fifth starts at 4072, before the rotation size), so segments 0, 5, 10...
fn rotated(dir: &Path, n: u64) -> Journal {
    let (mut journal, _) = Journal::open_with(dir, &preallocated(4096)).unwrap();
    for seq in 0..n {
        assert_eq!(journal.append(&[payload(seq)]).unwrap(), seq);
    }
    journal
}

fn payload(seq: u64) -> Vec<u8> {
    vec![seq as u8; 1000]
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

#[test]
fn rotation_seals_a_preallocated_segment_at_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let journal = rotated(dir.path(), 6);
    drop(journal);
    assert_eq!(
        segment_names(dir.path()),
        vec![SEG0, "00000000000000000005.seg"]
    );
    // 8 + 5 * 1016: the zeros preallocated after the fifth record are cut.
    assert_eq!(len(&segment_path(dir.path(), 0)), 5088);
    assert_eq!(len(&segment_path(dir.path(), 5)), 4096);

    let (read, total) = records(dir.path(), 0);
    assert_eq!(total, 6);
    let expected: Vec<(u64, RecordLocation, Vec<u8>)> = (0..6)
        .map(|seq| {
            let (segment, index) = if seq < 5 { (0, seq) } else { (5, 0) };
            let location = RecordLocation {
                segment,
                offset: 8 + index * 1016,
                len: 1000,
            };
            (seq, location, payload(seq))
        })
        .collect();
    assert_eq!(read, expected);
    assert_eq!(seqs(dir.path(), 3), vec![3, 4, 5]);
    assert_eq!(read_at(dir.path(), 5, expected[5].1).unwrap(), payload(5));
    assert_eq!(Journal::open_read_only(dir.path()).unwrap().next_seq(), 6);

    let (mut journal, recovery) = Journal::open_with(dir.path(), &preallocated(4096)).unwrap();
    assert_eq!(recovery, clean(6));
    assert_eq!(journal.append(&[payload(6)]).unwrap(), 6);
    drop(journal);
    assert_eq!(seqs(dir.path(), 4), vec![4, 5, 6]);
}

#[test]
fn zeros_in_a_sealed_segment_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    drop(rotated(dir.path(), 6));
    let sealed = segment_path(dir.path(), 0);
    let corrupt = |dir: &Path| match read_from(dir, 0, |_, _, _| {}).unwrap_err() {
        JournalError::Corrupt {
            seq,
            segment,
            offset,
            reason,
        } => (seq, segment, offset, reason),
        other => panic!("{other}"),
    };
    // A clean zero tail, as if never sealed.
    write_at(&sealed, 5088, &[0u8; 32]);
    assert_eq!(
        corrupt(dir.path()),
        (
            5,
            SEG0.to_owned(),
            5088,
            "zero bytes after the last record of a sealed segment (only the last segment may be preallocated)".to_owned()
        )
    );
    // A zero header with a stray byte after it.
    write_at(&sealed, 5088 + 20, &[7]);
    assert_eq!(
        corrupt(dir.path()),
        (
            5,
            SEG0.to_owned(),
            5088,
            "a record header of zero bytes, followed by a non-zero byte at byte 5108".to_owned()
        )
    );
}

#[test]
fn prune_before_deletes_whole_segments_below_the_seq_and_never_the_last() {
    let dir = tempfile::tempdir().unwrap();
    drop(rotated(dir.path(), 17));
    let all = |first: u64| segment_names(dir.path()).contains(&format!("{first:020}.seg"));
    assert_eq!(segment_names(dir.path()).len(), 4);
    assert!(all(0) && all(5) && all(10) && all(15));
    assert_eq!(pruned_base(dir.path()).unwrap(), 0);

    // Record 4 is still needed: segment 0 stays.
    assert_eq!(prune_before(dir.path(), 4).unwrap(), 0);
    assert!(!dir.path().join("pruned-before").exists());
    assert_eq!(seqs(dir.path(), 0), (0..17).collect::<Vec<_>>());

    assert_eq!(prune_before(dir.path(), 5).unwrap(), 1);
    assert_eq!(
        segment_names(dir.path()),
        vec![
            "00000000000000000005.seg",
            "00000000000000000010.seg",
            "00000000000000000015.seg"
        ]
    );
    assert_eq!(pruned_base(dir.path()).unwrap(), 5);
    assert_eq!(
        fs::read_to_string(dir.path().join("pruned-before")).unwrap(),
        "5"
    );
    let (read, total) = records(dir.path(), 5);
    assert_eq!(total, 17);
    assert_eq!(
        read.iter().map(|r| r.0).collect::<Vec<_>>(),
        (5..17).collect::<Vec<_>>()
    );
    assert_eq!(read[0].2, payload(5));
    let err = read_from(dir.path(), 4, |_, _, _| {}).unwrap_err();
    assert!(
        matches!(err, JournalError::Pruned { from: 4, base: 5 }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "cannot read the journal from record 4: the records before 5 were pruned (deleted once delivered); read from 5 on"
    );
    assert!(matches!(
        read_between(dir.path(), 0, 3, |_, _, _| {}).unwrap_err(),
        JournalError::Pruned { from: 0, base: 5 }
    ));

    // Far past the end: everything but the last segment.
    assert_eq!(prune_before(dir.path(), 100).unwrap(), 2);
    assert_eq!(segment_names(dir.path()), vec!["00000000000000000015.seg"]);
    assert_eq!(pruned_base(dir.path()).unwrap(), 15);
    assert_eq!(prune_before(dir.path(), 100).unwrap(), 0);
    // The base never moves back.
    assert_eq!(prune_before(dir.path(), 3).unwrap(), 0);
    assert_eq!(pruned_base(dir.path()).unwrap(), 15);

    let (mut journal, recovery) = Journal::open_with(dir.path(), &preallocated(4096)).unwrap();
    assert_eq!(recovery, clean(17));
    assert_eq!(journal.append(&[payload(17)]).unwrap(), 17);
    drop(journal);
    assert_eq!(seqs(dir.path(), 15), vec![15, 16, 17]);
    let mut between = Vec::new();
    assert_eq!(
        read_between(dir.path(), 16, 17, |seq, _, _| between.push(seq)).unwrap(),
        17
    );
    assert_eq!(between, vec![16]);
}

#[test]
fn segments_left_by_an_interrupted_prune_are_skipped_then_deleted() {
    let dir = tempfile::tempdir().unwrap();
    drop(rotated(dir.path(), 17));
    // The base was recorded, the segments before it not deleted yet.
    fs::write(dir.path().join("pruned-before"), "10").unwrap();
    let (read, total) = records(dir.path(), 10);
    assert_eq!(total, 17);
    assert_eq!(
        read.iter().map(|r| r.0).collect::<Vec<_>>(),
        (10..17).collect::<Vec<_>>()
    );
    assert!(matches!(
        read_from(dir.path(), 5, |_, _, _| {}).unwrap_err(),
        JournalError::Pruned { from: 5, base: 10 }
    ));
    let (journal, recovery) = Journal::open_with(dir.path(), &preallocated(4096)).unwrap();
    assert_eq!((journal.next_seq(), recovery), (17, clean(17)));
    drop(journal);

    // The next prune finishes the job, whatever seq it is given.
    assert_eq!(prune_before(dir.path(), 0).unwrap(), 2);
    assert_eq!(
        segment_names(dir.path()),
        vec!["00000000000000000010.seg", "00000000000000000015.seg"]
    );
    assert_eq!(pruned_base(dir.path()).unwrap(), 10);
    assert_eq!(seqs(dir.path(), 10), (10..17).collect::<Vec<_>>());
}

#[test]
fn a_journal_never_pruned_is_read_as_strictly_as_before() {
    let dir = tempfile::tempdir().unwrap();
    drop(rotated(dir.path(), 11));
    fs::remove_file(segment_path(dir.path(), 0)).unwrap();
    let err = read_from(dir.path(), 5, |_, _, _| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "journal segments do not line up: segment 00000000000000000005.seg starts at record 5 but the records before it end at 0; a segment file was removed or renamed"
    );
}

#[test]
fn a_base_that_is_not_a_number_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(rotated(dir.path(), 1));
    fs::write(dir.path().join("pruned-before"), "ten").unwrap();
    let err = pruned_base(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "journal {}: read pruned base: \"ten\" is not a record number",
            dir.path().join("pruned-before").display()
        )
    );
    assert!(read_from(dir.path(), 0, |_, _, _| {}).is_err());
}
