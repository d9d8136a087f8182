//! Unit tests that need the journal's private parts.

use super::*;

#[test]
fn a_zero_header_is_never_a_record() {
    // The only record a 16-byte zero header could claim to be: seq 0, an
    // empty payload (length 0). Its checksum, crc32 of eight zero bytes,
    // is not the header's 0.
    assert_eq!(record_crc(0, b""), 0x6522_DF69);
    assert_ne!(record_crc(0, b""), 0);
}

/// The bytes `Journal::append` writes for one record.
fn record(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&record_crc(seq, payload).to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn what_a_failed_preallocated_append_left_is_zeroed_before_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let options = JournalOptions {
        max_segment_bytes: 1 << 20,
        preallocate_bytes: 4096,
    };
    let (mut journal, _) = Journal::open_with(dir.path(), &options).unwrap();
    assert_eq!(journal.append(&[b"one"]).unwrap(), 0);
    let segment = dir.path().join("00000000000000000000.seg");
    assert_eq!(journal.active_len, 8 + 16 + 3);

    // The write fails (a handle that cannot write), and so does zeroing.
    let writable = std::mem::replace(&mut journal.active, File::open(&segment).unwrap());
    let failed: [&[u8]; 2] = [b"two-two-two", b"three"];
    assert!(journal.append(&failed).is_err());
    assert_eq!(journal.next_seq(), 1);
    assert_eq!(journal.unclean_end, 27 + (16 + 11) + (16 + 5));
    // ... yet the batch reached the file.
    let mut landed = record(1, b"two-two-two");
    landed.extend(record(2, b"three"));
    writable.write_all_at(&landed, 27).unwrap();
    journal.active = writable;

    // The retry writes a record as long as the failed batch's first: without
    // the zeroing, the failed batch's second record (seq 2, never
    // acknowledged) would follow it exactly where record 2 belongs.
    assert_eq!(journal.append(&[b"TWO-TWO-TWO"]).unwrap(), 1);
    assert_eq!(journal.unclean_end, 0);
    let bytes = fs::read(&segment).unwrap();
    assert_eq!(bytes.len(), 4096);
    assert_eq!(&bytes[27..54], &record(1, b"TWO-TWO-TWO")[..]);
    assert!(bytes[54..].iter().all(|&b| b == 0));
    let mut seen = Vec::new();
    assert_eq!(
        read_from(dir.path(), 0, |seq, _, payload| seen
            .push((seq, payload.to_vec())))
        .unwrap(),
        2
    );
    assert_eq!(
        seen,
        vec![(0, b"one".to_vec()), (1, b"TWO-TWO-TWO".to_vec())]
    );
    drop(journal);
    let (journal, recovery) = Journal::open_with(dir.path(), &options).unwrap();
    assert_eq!(
        (
            journal.next_seq(),
            recovery.truncated_bytes,
            recovery.quarantined_to
        ),
        (2, 0, None)
    );
}

#[test]
fn preallocation_leaves_no_room_too_small_for_a_header() {
    let dir = tempfile::tempdir().unwrap();
    let options = JournalOptions {
        max_segment_bytes: 1 << 20,
        preallocate_bytes: 64,
    };
    let (mut journal, _) = Journal::open_with(dir.path(), &options).unwrap();
    let segment = dir.path().join("00000000000000000000.seg");
    // Magic and a record of 16 + 10 bytes: ends at 34, 30 bytes to spare.
    journal.append(&[[b'a'; 10]]).unwrap();
    assert_eq!(fs::metadata(&segment).unwrap().len(), 64);
    // An empty record would end at 50 and leave 14 bytes, too few for the
    // scan's zero header: the segment grows by another step first.
    journal.append(&[b""]).unwrap();
    assert_eq!(journal.active_len, 50);
    assert_eq!(fs::metadata(&segment).unwrap().len(), 128);
    // Exactly full is fine: nothing left to scan.
    journal.append(&[[b'c'; 128 - 50 - 16]]).unwrap();
    assert_eq!(journal.active_len, 128);
    assert_eq!(fs::metadata(&segment).unwrap().len(), 128);
    drop(journal);
    let (journal, recovery) = Journal::open_with(dir.path(), &options).unwrap();
    assert_eq!((journal.next_seq(), recovery.truncated_bytes), (3, 0));
}
