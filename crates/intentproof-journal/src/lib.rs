//! IntentProof's journal: append-only segment files of length-prefixed,
//! CRC-checked, sequence-numbered records, written in group commits that
//! are `fdatasync`'d before they return. It is the source of truth of
//! `intentproof-store` (the daemon's store: everything else there is
//! derived from it) and the durable local outbox of the `intentproof`
//! library. Payloads are opaque bytes.
//!
//! Layout of `<dir>/`:
//!
//! ```text
//! 00000000000000000000.seg   records 0 .. (first record of the next segment)
//! 00000000000000004096.seg   the name is the sequence number of its first record
//! quarantine/                bytes cut from a torn tail, kept, never deleted
//! pruned-before              first record kept after prune_before (absent: nothing pruned)
//! ```
//!
//! # Record format
//!
//! A segment starts with the 8-byte magic [`SEGMENT_MAGIC`]; each record is
//! `len: u32 LE | crc32(seq ‖ payload): u32 LE | seq: u64 LE | payload`. A
//! record's sequence number is its position in the whole journal, counting
//! from 0, and its leaf index in the Merkle log. Writing it into the record
//! makes a deleted or swapped record show up at its exact position, even
//! when the checksums were left intact.
//!
//! Durability: [`Journal::append`] writes a whole batch and `fdatasync`s it
//! before returning, so a caller answers its clients only after their
//! records are on disk (group commit). A new segment is created with a
//! directory `fsync`, so its name survives a crash too.
//!
//! Recovery: only the last segment can have a torn tail (a crash mid-append,
//! before anything in that batch was acknowledged). [`Journal::open`] cuts
//! the last segment at its first incomplete or corrupt record, copies the cut
//! bytes to `quarantine/`, and reports how many bytes were dropped. Earlier
//! segments are never changed: a bad record there is tampering or disk
//! corruption, reported by [`read_from`] with its position.
//!
//! # Preallocation
//!
//! [`Journal::open_with`] with [`JournalOptions::preallocate_bytes`] > 0
//! extends the active segment ahead of the write position by writing zeros
//! (in steps of that many bytes, `fdatasync`'d at once), and appends
//! overwrite blocks that are already written: neither the file's size nor
//! its block map changes on most appends, so `fdatasync` writes the data
//! and nothing else. Zeros rather than `posix_fallocate`: an allocated but
//! unwritten extent must be converted (a metadata write) on the first
//! write into each block. Measured on the development machine with the
//! library's durable outbox (`bench/durable_wrap.sh`, ~600-byte records):
//! single-threaded p50/p99 144/680 µs appending, 146/677 µs into
//! `fallocate`d space, 141/241 µs into zeroed space; 8 threads 16,700 and
//! 20,500 events/s for the last two. The price: the active segment holds up
//! to `preallocate_bytes` + 16 zero bytes after its last record, on disk,
//! and the commit that crosses into a new step writes the step's zeros
//! first.
//!
//! A preallocated segment ends in zero bytes. At a record boundary, a record
//! header of 16 zero bytes followed only by zero bytes up to the end of the
//! file is the segment's clean end, never a record (a real record's header
//! is never all zero: see `scan_segment`); a zero header followed by any
//! non-zero byte is damage, like any other bad record. A segment is cut to
//! exactly its records before the next one starts, so only the last
//! segment ever has such a tail. [`Journal::open`] (no preallocation) keeps
//! the journal exactly its records, as it always did: it treats a zero tail
//! as a torn one (quarantined and cut).
//!
//! # Pruning
//!
//! A consumer that deletes what it has delivered calls [`prune_before`]: it
//! deletes whole segments below a sequence number (never the last one) and
//! records the first record kept in `pruned-before`. Readers start there;
//! reading from below it is [`JournalError::Pruned`]. A journal never
//! pruned (the store's) has no such file and is read from record 0 with
//! exactly the same checks as before pruning existed.
//!
//! # What it does not do
//!
//! No index (a record is found by scanning, or by the [`RecordLocation`]
//! its writer kept), no Merkle log, no signing, no chain rules, no
//! knowledge of events: that is `intentproof-store`. It takes no lock:
//! one writer per directory is the caller's to ensure (the store holds
//! sled's lock, the library's outbox a lock file). It never deletes a
//! record except by [`prune_before`] (whole segments) and never rewrites
//! one; it neither compresses nor encrypts.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"IPJRNL01";
/// Largest record accepted (well above the 1 MiB ingest limit).
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// Default size after which a new segment is started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

const HEADER: usize = 8;
/// Bytes before each payload: length, checksum, sequence number.
const RECORD_HEADER: u64 = 16;
/// The file holding the first record kept after [`prune_before`].
const PRUNED_BASE_FILE: &str = "pruned-before";

/// What can go wrong in the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An I/O operation failed.
    #[error("journal {path}: {op}: {source}")]
    Io {
        /// File or directory concerned.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A record in a sealed (not last) segment is damaged.
    #[error(
        "journal record {seq} (segment {segment}, byte {offset}) is damaged: {reason}; \
         the journal was changed outside IntentProof or the disk is failing: \
         run `intentproof store verify` and restore from a backup"
    )]
    Corrupt {
        /// Sequence number of the damaged record.
        seq: u64,
        /// Segment file name.
        segment: String,
        /// Byte offset of the record in the segment.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A segment does not start with the magic bytes.
    #[error(
        "journal segment {0} is not an IntentProof journal segment (bad magic); move it out of the journal directory"
    )]
    BadMagic(String),
    /// Segment file names do not add up (a segment is missing or renamed).
    #[error("journal segments do not line up: {0}; a segment file was removed or renamed")]
    SegmentGap(String),
    /// A record is larger than [`MAX_RECORD_BYTES`].
    #[error("record of {0} bytes is larger than the journal's limit of {MAX_RECORD_BYTES} bytes")]
    TooLarge(usize),
    /// Records were asked for from below the pruned base: they were deleted
    /// by [`prune_before`].
    #[error(
        "cannot read the journal from record {from}: the records before {base} were pruned \
         (deleted once delivered); read from {base} on"
    )]
    Pruned {
        /// The first record asked for.
        from: u64,
        /// The first record the journal still has ([`pruned_base`]).
        base: u64,
    },
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// How [`Journal::open_with`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    /// Size after which a new segment is started (at least 4096 is used).
    pub max_segment_bytes: u64,
    /// 0: no preallocation, every append grows the file (what
    /// [`Journal::open`] does). Otherwise the active segment is extended
    /// ahead of the write position in steps of this many bytes, so
    /// appends write into allocated space (the crate docs,
    /// "Preallocation").
    pub preallocate_bytes: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            max_segment_bytes: DEFAULT_SEGMENT_BYTES,
            preallocate_bytes: 0,
        }
    }
}

/// What [`Journal::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records in the journal after recovery.
    pub records: u64,
    /// Bytes cut from a torn tail (0 when the journal was clean). With
    /// preallocation, the zeros of the preallocated space after the torn
    /// bytes are not counted (nor quarantined): the count ends at the last
    /// non-zero byte.
    pub truncated_bytes: u64,
    /// Where the cut bytes were saved.
    pub quarantined_to: Option<PathBuf>,
}

/// One segment file.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// Sequence number of its first record.
    pub first_seq: u64,
    /// Its path.
    pub path: PathBuf,
}

/// Where a record lives, for random reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLocation {
    /// First sequence number of the segment (names the file).
    pub segment: u64,
    /// Byte offset of the record header in the segment.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
}

/// The open journal, for appending. One writer at a time.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    segments: Vec<SegmentInfo>,
    active: File,
    /// Bytes of the active segment in use: magic and records.
    active_len: u64,
    next_seq: u64,
    max_segment_bytes: u64,
    /// 0: no preallocation (the active segment is opened to append).
    preallocate_bytes: u64,
    /// With preallocation: the active segment's length (records, then
    /// zeros). Every byte from `active_len` to here is zero, except up to
    /// `unclean_end`.
    allocated_len: u64,
    /// With preallocation: the end of what a failed write may have left
    /// after `active_len` and could not be zeroed yet (no more than
    /// `active_len` when there is none).
    unclean_end: u64,
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The segment files in `dir`, ordered by first sequence number.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentInfo>, JournalError> {
    let mut segments = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(segments),
        Err(e) => return Err(io_err(dir, "list segments")(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir, "list segments"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        if let Ok(first_seq) = stem.parse::<u64>() {
            segments.push(SegmentInfo {
                first_seq,
                path: entry.path(),
            });
        }
    }
    segments.sort_by_key(|s| s.first_seq);
    Ok(segments)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync directory"))
}

/// Result of scanning one segment.
struct Scan {
    records: u64,
    /// Offset just past the last good record.
    good_len: u64,
    /// Why the scan stopped early, if it did.
    damage: Option<(u64, String)>,
    /// The damage is an intact record in the wrong place: tampering, never
    /// a torn write, so recovery must not cut it away.
    misplaced: bool,
    /// The segment ends in zero bytes after `good_len` (a preallocated
    /// tail), with no damage.
    zero_tail: bool,
}

impl Scan {
    fn misplaced(mut self) -> Self {
        self.misplaced = true;
        self
    }
}

fn record_crc(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Where the first non-zero byte is among the next `len` bytes of
/// `reader`, counting from 0. The end of the file before `len` bytes ends
/// the search: the file was cut meanwhile (a writer beside us sealing a
/// preallocated segment), and what was read is all there is.
fn first_non_zero(reader: &mut impl Read, len: u64) -> Result<Option<u64>, io::Error> {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut seen = 0u64;
    while seen < len {
        let want = (len - seen).min(chunk.len() as u64) as usize;
        let n = match reader.read(&mut chunk[..want]) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(i) = chunk[..n].iter().position(|&b| b != 0) {
            return Ok(Some(seen + i as u64));
        }
        seen += n as u64;
    }
    Ok(None)
}

/// Scans a segment, calling `each(seq_offset, location, payload)` for every
/// good record, and stops at the first bad one, or (clean) once the
/// records before `until` are read.
fn scan_segment(
    path: &Path,
    first_seq: u64,
    until: u64,
    mut each: impl FnMut(u64, RecordLocation, &[u8]),
) -> Result<Scan, JournalError> {
    let mut file = File::open(path).map_err(io_err(path, "open segment"))?;
    let file_len = file.metadata().map_err(io_err(path, "stat segment"))?.len();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut magic = [0u8; 8];
    if file_len < HEADER as u64 {
        return Ok(Scan {
            records: 0,
            good_len: 0,
            damage: Some((0, "segment shorter than its header".into())),
            misplaced: false,
            zero_tail: false,
        });
    }
    file.read_exact(&mut magic)
        .map_err(io_err(path, "read segment"))?;
    if &magic != SEGMENT_MAGIC {
        return Err(JournalError::BadMagic(name));
    }
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let mut offset = HEADER as u64;
    let mut records = 0u64;
    let mut payload = Vec::new();
    loop {
        if offset == file_len || first_seq.saturating_add(records) >= until {
            return Ok(Scan {
                records,
                good_len: offset,
                damage: None,
                misplaced: false,
                zero_tail: false,
            });
        }
        let damage = |reason: String| Scan {
            records,
            good_len: offset,
            damage: Some((offset, reason)),
            misplaced: false,
            zero_tail: false,
        };
        if file_len - offset < RECORD_HEADER {
            return Ok(damage(format!(
                "{} bytes left, too few for a record header",
                file_len - offset
            )));
        }
        let mut head = [0u8; RECORD_HEADER as usize];
        reader
            .read_exact(&mut head)
            .map_err(io_err(path, "read segment"))?;
        if head == [0u8; RECORD_HEADER as usize] {
            // A zero header is never a record: its length and sequence
            // fields say "seq 0, empty payload", whose checksum is
            // crc32 of eight zero bytes, 0x6522DF69, not 0 (crc32 starts
            // from and ends with an inversion, so zeros do not hash to
            // zero; `a_zero_header_is_never_a_record` checks it); every
            // other record has a non-zero length or sequence field. So
            // zeros here are unwritten space: the clean end of a
            // preallocated segment if nothing but zeros follows, else
            // damage (bytes of a torn write landed after its header did
            // not, or the file was tampered with).
            let rest = file_len - offset - RECORD_HEADER;
            return match first_non_zero(&mut reader, rest).map_err(io_err(path, "read segment"))? {
                None => Ok(Scan {
                    records,
                    good_len: offset,
                    damage: None,
                    misplaced: false,
                    zero_tail: true,
                }),
                Some(at) => Ok(damage(format!(
                    "a record header of zero bytes, followed by a non-zero byte at byte {}",
                    offset + RECORD_HEADER + at
                ))),
            };
        }
        let len = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&head[8..16]);
        let seq = u64::from_le_bytes(seq_bytes);
        if len as usize > MAX_RECORD_BYTES {
            return Ok(damage(format!(
                "length field {len} exceeds the record limit"
            )));
        }
        if file_len - offset - RECORD_HEADER < len {
            return Ok(damage(format!(
                "record of {len} bytes runs past the end of the segment ({} bytes left)",
                file_len - offset - RECORD_HEADER
            )));
        }
        payload.resize(len as usize, 0);
        reader
            .read_exact(&mut payload)
            .map_err(io_err(path, "read segment"))?;
        if record_crc(seq, &payload) != crc {
            return Ok(damage("checksum mismatch".into()));
        }
        if seq != first_seq + records {
            return Ok(Scan {
                records,
                good_len: offset,
                misplaced: false,
                zero_tail: false,
                damage: Some((offset, format!("record claims sequence {seq}, but sequence {} belongs here (a record was deleted, inserted or moved)", first_seq + records))),
            }
            .misplaced());
        }
        each(
            first_seq + records,
            RecordLocation {
                segment: first_seq,
                offset,
                len: len as u32,
            },
            &payload,
        );
        records += 1;
        offset += RECORD_HEADER + len;
    }
}

/// The last segment and its scan. Sealed segments are trusted to hold
/// exactly the records their neighbours' names say; only the last one is
/// scanned. A record out of sequence there is corruption, not a torn tail.
fn scan_last(dir: &Path, segments: &[SegmentInfo]) -> Result<(SegmentInfo, Scan), JournalError> {
    let last = segments
        .last()
        .cloned()
        .ok_or_else(|| JournalError::SegmentGap(format!("{} has no segment", dir.display())))?;
    let scan = scan_segment(&last.path, last.first_seq, u64::MAX, |_, _, _| {})?;
    if let (true, Some((offset, reason))) = (scan.misplaced, &scan.damage) {
        return Err(JournalError::Corrupt {
            seq: last.first_seq + scan.records,
            segment: segment_name(last.first_seq),
            offset: *offset,
            reason: reason.clone(),
        });
    }
    Ok((last, scan))
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, repairing a torn tail; no
    /// preallocation ([`Journal::open_with`] with
    /// [`JournalOptions::preallocate_bytes`] 0).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let (mut journal, recovery) = intentproof_journal::Journal::open(dir.path(), 1 << 20).unwrap();
    /// assert_eq!(recovery.records, 0);
    /// assert_eq!(journal.append(&[b"one", b"two"]).unwrap(), 0);
    /// assert_eq!(journal.next_seq(), 2);
    /// ```
    pub fn open(dir: &Path, max_segment_bytes: u64) -> Result<(Journal, Recovery), JournalError> {
        Journal::open_with(
            dir,
            &JournalOptions {
                max_segment_bytes,
                preallocate_bytes: 0,
            },
        )
    }

    /// Opens (or creates) the journal in `dir` with `options`, repairing a
    /// torn tail. With preallocation, the zero tail of a preallocated last
    /// segment is kept as it is (nothing cut, nothing quarantined); without,
    /// it is cut like a torn tail.
    ///
    /// ```
    /// use intentproof_journal::{Journal, JournalOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let options = JournalOptions { preallocate_bytes: 1 << 20, ..JournalOptions::default() };
    /// let (mut journal, _) = Journal::open_with(dir.path(), &options).unwrap();
    /// assert_eq!(journal.append(&[b"one"]).unwrap(), 0);
    /// drop(journal);
    /// let (journal, recovery) = Journal::open_with(dir.path(), &options).unwrap();
    /// assert_eq!((journal.next_seq(), recovery.truncated_bytes), (1, 0));
    /// ```
    pub fn open_with(
        dir: &Path,
        options: &JournalOptions,
    ) -> Result<(Journal, Recovery), JournalError> {
        let preallocate_bytes = options.preallocate_bytes;
        fs::create_dir_all(dir).map_err(io_err(dir, "create journal directory"))?;
        let mut segments = list_segments(dir)?;
        let mut recovery = Recovery::default();
        if segments.is_empty() {
            let first = create_segment(dir, 0)?;
            segments.push(first);
        }
        let (last, scan) = scan_last(dir, &segments)?;
        let damage = match &scan.damage {
            Some((offset, reason)) => Some((*offset, reason.clone())),
            // Without preallocation the journal is exactly its records, as
            // it always was: zeros after them (a crash that grew the file
            // but wrote nothing into it, or a journal that was written
            // with preallocation) are cut like a torn tail.
            None if scan.zero_tail && preallocate_bytes == 0 => Some((
                scan.good_len,
                "zero bytes after the last record (no preallocation)".to_owned(),
            )),
            None => None,
        };
        let mut active_len = scan.good_len;
        if let Some((offset, reason)) = &damage {
            let file_len = fs::metadata(&last.path)
                .map_err(io_err(&last.path, "stat segment"))?
                .len();
            // Without preallocation, every byte after the last record was
            // written by the torn append. With it, the torn bytes end at
            // the last non-zero one; the zeros after it are unwritten
            // preallocated space, neither counted nor copied.
            let (quarantine, kept) = quarantine(dir, &last, *offset, preallocate_bytes > 0)?;
            let cut = if preallocate_bytes > 0 {
                kept
            } else {
                file_len - scan.good_len
            };
            let file = OpenOptions::new()
                .write(true)
                .open(&last.path)
                .map_err(io_err(&last.path, "open segment"))?;
            // With preallocation too, the file is cut at the last good
            // record (not zeroed in place): the next append allocates again,
            // and until then nothing after the records needs a scan.
            if scan.good_len < HEADER as u64 {
                file.set_len(0)
                    .map_err(io_err(&last.path, "truncate segment"))?;
                (&file)
                    .write_all(SEGMENT_MAGIC)
                    .map_err(io_err(&last.path, "write header"))?;
                active_len = HEADER as u64;
            } else {
                file.set_len(scan.good_len)
                    .map_err(io_err(&last.path, "truncate segment"))?;
            }
            file.sync_all()
                .map_err(io_err(&last.path, "fsync segment"))?;
            tracing::warn!(
                segment = %last.path.display(),
                offset,
                dropped_bytes = cut,
                reason = %reason,
                quarantine = %quarantine.display(),
                "journal: torn tail recovered: dropped {cut} bytes after the last complete record (none of them was acknowledged); copy kept in quarantine"
            );
            recovery.truncated_bytes = cut;
            recovery.quarantined_to = Some(quarantine);
        }
        let next_seq = last.first_seq + scan.records;
        let active = open_active(&last.path, preallocate_bytes)?;
        let allocated_len = active
            .metadata()
            .map_err(io_err(&last.path, "stat segment"))?
            .len();
        if preallocate_bytes == 0 {
            // Appending: the records are the whole file.
            active_len = allocated_len;
        }
        recovery.records = next_seq;
        Ok((
            Journal {
                dir: dir.to_owned(),
                segments,
                active,
                active_len,
                next_seq,
                max_segment_bytes: options.max_segment_bytes.max(4096),
                preallocate_bytes,
                allocated_len,
                unclean_end: 0,
            },
            recovery,
        ))
    }

    /// Opens the journal in `dir` to read, changing nothing: a torn tail is
    /// left where it is, and the journal's records are those before it.
    /// [`Journal::append`] on it fails.
    pub fn open_read_only(dir: &Path) -> Result<Journal, JournalError> {
        let segments = list_segments(dir)?;
        let (last, scan) = scan_last(dir, &segments)?;
        let active = File::open(&last.path).map_err(io_err(&last.path, "open segment"))?;
        Ok(Journal {
            dir: dir.to_owned(),
            segments,
            active,
            active_len: scan.good_len,
            next_seq: last.first_seq + scan.records,
            max_segment_bytes: u64::MAX,
            preallocate_bytes: 0,
            allocated_len: scan.good_len,
            unclean_end: 0,
        })
    }

    /// Sequence number the next appended record gets (= records so far).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `payloads` as consecutive records, then `fdatasync`s. Returns
    /// the sequence number of the first. Nothing is acknowledged unless
    /// this returns `Ok`.
    pub fn append<P: AsRef<[u8]>>(&mut self, payloads: &[P]) -> Result<u64, JournalError> {
        self.append_located(payloads).map(|(first, _)| first)
    }

    /// Like [`Journal::append`], also returning where each record was written.
    pub fn append_located<P: AsRef<[u8]>>(
        &mut self,
        payloads: &[P],
    ) -> Result<(u64, Vec<RecordLocation>), JournalError> {
        let first = self.next_seq;
        if payloads.is_empty() {
            return Ok((first, Vec::new()));
        }
        if self.active_len >= self.max_segment_bytes {
            self.rotate()?;
        }
        let segment = self.segments.last().map(|s| s.first_seq).unwrap_or(0);
        let total: usize = payloads
            .iter()
            .map(|p| p.as_ref().len() + RECORD_HEADER as usize)
            .sum();
        let mut buffer = Vec::with_capacity(total);
        let mut locations = Vec::with_capacity(payloads.len());
        for (seq, payload) in (first..).zip(payloads) {
            let payload = payload.as_ref();
            if payload.len() > MAX_RECORD_BYTES {
                return Err(JournalError::TooLarge(payload.len()));
            }
            locations.push(RecordLocation {
                segment,
                offset: self.active_len + buffer.len() as u64,
                len: payload.len() as u32,
            });
            buffer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buffer.extend_from_slice(&record_crc(seq, payload).to_le_bytes());
            buffer.extend_from_slice(&seq.to_le_bytes());
            buffer.extend_from_slice(payload);
        }
        if self.preallocate_bytes > 0 {
            self.write_preallocated(&buffer)?;
        } else {
            let path = self.active_path();
            if let Err(e) = self
                .active
                .write_all(&buffer)
                .and_then(|()| self.active.sync_data())
            {
                // A partial write may have reached the file: cut it back so the
                // next batch starts on a record boundary.
                let _ = self.active.set_len(self.active_len);
                return Err(io_err(&path, "append")(e));
            }
        }
        self.active_len += buffer.len() as u64;
        self.next_seq += payloads.len() as u64;
        Ok((first, locations))
    }

    fn active_path(&self) -> PathBuf {
        self.segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_else(|| self.dir.clone())
    }

    /// Writes `buffer` at the end of the records of a preallocated active
    /// segment, then `fdatasync`s.
    fn write_preallocated(&mut self, buffer: &[u8]) -> Result<(), JournalError> {
        let path = self.active_path();
        if self.unclean_end > self.active_len {
            zero(&self.active, self.active_len, self.unclean_end)
                .map_err(io_err(&path, "zero the bytes of a failed append"))?;
            self.unclean_end = 0;
        }
        let end = self.active_len + buffer.len() as u64;
        self.preallocate(end)?;
        if let Err(e) = self
            .active
            .write_all_at(buffer, self.active_len)
            .and_then(|()| self.active.sync_data())
        {
            // Part of the batch may have reached the file (a write cut
            // short, or written but not synced). Cutting the file back
            // would give up the preallocation; zeroing only the first
            // record header would not do either: a later, shorter batch
            // would end just before a complete record of this failed one,
            // one that carries exactly the sequence number expected there
            // (the same numbers are written again), and readers, or the
            // next recovery, would take that never acknowledged record
            // for the real one. So every byte this write may have touched
            // is zeroed: the tail is zeros again, as the scan's clean end
            // wants, and the next batch starts on a record boundary. If
            // zeroing fails too, the next append zeroes first (and fails
            // while it cannot); the zeros reach the disk with the next
            // batch's `fdatasync`.
            self.unclean_end = end;
            if zero(&self.active, self.active_len, end).is_ok() {
                self.unclean_end = 0;
            }
            return Err(io_err(&path, "append")(e));
        }
        Ok(())
    }

    /// Makes the active segment at least `end` bytes long, in steps of the
    /// preallocation. The room left after `end` is 0 or at least a record
    /// header: a scan reads 1 to 15 bytes at a record boundary as damage (too
    /// few for a header) and 16 zero bytes and more as the clean end.
    fn preallocate(&mut self, end: u64) -> Result<(), JournalError> {
        if self.allocated_len == end || self.allocated_len >= end + RECORD_HEADER {
            return Ok(());
        }
        let target = (end + RECORD_HEADER).next_multiple_of(self.preallocate_bytes);
        // Zeros, synced before any record lands in them: after a crash the
        // tail reads as zeros (the clean end), never as stale blocks.
        let zeros = vec![0u8; (target - self.allocated_len) as usize];
        self.active
            .write_all_at(&zeros, self.allocated_len)
            .and_then(|()| self.active.sync_data())
            .map_err(io_err(&self.active_path(), "preallocate segment"))?;
        self.allocated_len = target;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), JournalError> {
        if self.preallocate_bytes > 0 {
            // A sealed segment is exactly its records: cut the zeros (and
            // what a failed append left) before the next segment exists, so
            // only the last segment ever has a zero tail.
            let path = self.active_path();
            self.active
                .set_len(self.active_len)
                .and_then(|()| self.active.sync_all())
                .map_err(io_err(&path, "cut segment to its records"))?;
            self.allocated_len = self.active_len;
            self.unclean_end = 0;
        }
        let segment = create_segment(&self.dir, self.next_seq)?;
        self.active = open_active(&segment.path, self.preallocate_bytes)?;
        self.active_len = HEADER as u64;
        self.allocated_len = HEADER as u64;
        self.segments.push(segment);
        Ok(())
    }
}

/// The active segment, opened to write: appending without preallocation,
/// at explicit offsets (never in append mode) with it.
fn open_active(path: &Path, preallocate_bytes: u64) -> Result<File, JournalError> {
    let mut options = OpenOptions::new();
    if preallocate_bytes == 0 {
        options.append(true);
    } else {
        options.write(true);
    }
    options.open(path).map_err(io_err(path, "open segment"))
}

/// Writes zeros over `start..end` of `file`.
fn zero(file: &File, start: u64, end: u64) -> Result<(), io::Error> {
    let zeros = vec![0u8; (end - start).min(1 << 20) as usize];
    let mut at = start;
    while at < end {
        let n = (end - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<SegmentInfo, JournalError> {
    let path = dir.join(segment_name(first_seq));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    // Records hold what callers sent (redacted, but theirs): owner only,
    // whatever the umask.
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .map_err(io_err(&path, "create segment"))?;
    file.write_all(SEGMENT_MAGIC)
        .map_err(io_err(&path, "write header"))?;
    file.sync_all().map_err(io_err(&path, "fsync segment"))?;
    sync_dir(dir)?;
    Ok(SegmentInfo { first_seq, path })
}

/// Copies the bytes of `segment` from `offset` on to `quarantine/`, without
/// its trailing zeros when `trim_zeros`; returns the copy and its length.
fn quarantine(
    dir: &Path,
    segment: &SegmentInfo,
    offset: u64,
    trim_zeros: bool,
) -> Result<(PathBuf, u64), JournalError> {
    let qdir = dir.join("quarantine");
    fs::create_dir_all(&qdir).map_err(io_err(&qdir, "create quarantine"))?;
    let mut bytes = Vec::new();
    let file = File::open(&segment.path).map_err(io_err(&segment.path, "open segment"))?;
    let len = file
        .metadata()
        .map_err(io_err(&segment.path, "stat segment"))?
        .len();
    let start = offset.min(len);
    bytes.resize((len - start) as usize, 0);
    file.read_exact_at(&mut bytes, start)
        .map_err(io_err(&segment.path, "read tail"))?;
    if trim_zeros {
        let data = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        bytes.truncate(data);
    }
    let target = qdir.join(format!(
        "{}.at-{offset}.bin",
        segment_name(segment.first_seq)
    ));
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&target)
        .and_then(|mut file| file.write_all(&bytes))
        .map_err(io_err(&target, "write quarantine"))?;
    sync_dir(&qdir)?;
    Ok((target, bytes.len() as u64))
}

/// Reads every record of the journal in `dir` from sequence `from` on, in
/// order, calling `each(seq, location, payload)`. Stops with
/// [`JournalError::Corrupt`] at the first damaged record (this is the strict
/// reader used by verification, index catch-up and rebuild; it repairs
/// nothing). Returns the number of records in the journal. `from` below
/// the [`pruned_base`] is [`JournalError::Pruned`].
pub fn read_from(
    dir: &Path,
    from: u64,
    each: impl FnMut(u64, RecordLocation, &[u8]),
) -> Result<u64, JournalError> {
    read_between(dir, from, u64::MAX, each)
}

/// [`read_from`] for the records `from..until` alone: damage at or after
/// `until` is not an error (a torn tail that a reader which repairs nothing
/// steps around, or the record a writer beside it is writing). Returns
/// the number of records in the journal up to `until`.
///
/// Segments are checked to line up from the [`pruned_base`] on: 0 for a
/// journal never pruned (the store's), so every segment from the first is
/// checked exactly as before pruning existed. Segments wholly before the
/// base (a [`prune_before`] interrupted between recording the base and
/// deleting them) are skipped. `from` below the base is
/// [`JournalError::Pruned`].
pub fn read_between(
    dir: &Path,
    from: u64,
    until: u64,
    mut each: impl FnMut(u64, RecordLocation, &[u8]),
) -> Result<u64, JournalError> {
    let base = pruned_base(dir)?;
    if from < base {
        return Err(JournalError::Pruned { from, base });
    }
    let segments = list_segments(dir)?;
    let mut expected = base;
    for (i, segment) in segments.iter().enumerate() {
        let next_first = segments.get(i + 1).map(|s| s.first_seq);
        if segment.first_seq < base && next_first.is_some_and(|next| next <= base) {
            // Pruned, not deleted yet.
            continue;
        }
        if next_first.is_some_and(|next| next <= from) && segment.first_seq == expected {
            // Entirely before `from`: trust the neighbour's name, skip reading.
            expected = next_first.unwrap_or(expected);
            continue;
        }
        if segment.first_seq != expected {
            return Err(JournalError::SegmentGap(format!(
                "segment {} starts at record {} but the records before it end at {}",
                segment_name(segment.first_seq),
                segment.first_seq,
                expected
            )));
        }
        let scan = scan_segment(
            &segment.path,
            segment.first_seq,
            until,
            |seq, location, payload| {
                if (from..until).contains(&seq) {
                    each(seq, location, payload);
                }
            },
        )?;
        if segment.first_seq + scan.records >= until {
            return Ok(until);
        }
        if let Some((offset, reason)) = scan.damage {
            return Err(JournalError::Corrupt {
                seq: segment.first_seq + scan.records,
                segment: segment_name(segment.first_seq),
                offset,
                reason,
            });
        }
        if scan.zero_tail && next_first.is_some() {
            // Sealing cuts a segment to its records before the next one is
            // created: zeros in a sealed segment were put there by
            // something else.
            return Err(JournalError::Corrupt {
                seq: segment.first_seq + scan.records,
                segment: segment_name(segment.first_seq),
                offset: scan.good_len,
                reason: "zero bytes after the last record of a sealed segment (only the last segment may be preallocated)".into(),
            });
        }
        expected = segment.first_seq + scan.records;
    }
    Ok(expected)
}

/// The first record the journal in `dir` still has: what the last
/// [`prune_before`] kept, 0 when it was never pruned.
pub fn pruned_base(dir: &Path) -> Result<u64, JournalError> {
    let path = dir.join(PRUNED_BASE_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| {
            io_err(&path, "read pruned base")(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{:?} is not a record number", text.trim()),
            ))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(&path, "read pruned base")(e)),
    }
}

/// Deletes the segments of the journal in `dir` all of whose records are
/// below `seq` (a segment whose successor starts at or before `seq`),
/// never the last one, and returns how many it removed. For a consumer
/// that deletes what it has delivered; readers can no longer read below
/// the new base ([`pruned_base`], the first kept segment's first record).
///
/// The base is recorded first (`pruned-before`: written to a temporary
/// file, `fsync`'d, renamed, the directory `fsync`'d), then the segments
/// are deleted: a crash in between leaves segments wholly before the base,
/// which readers skip and the next call deletes. The base never moves
/// back. Safe beside the journal's writer (its active segment is the last,
/// or newer than the segments listed here); not beside a reader of the
/// records being pruned.
pub fn prune_before(dir: &Path, seq: u64) -> Result<usize, JournalError> {
    let segments = list_segments(dir)?;
    let current = pruned_base(dir)?;
    let below = seq.max(current);
    let doomed = segments
        .windows(2)
        .take_while(|pair| pair[1].first_seq <= below)
        .count();
    if doomed == 0 {
        return Ok(0);
    }
    let base = segments[doomed].first_seq;
    if base > current {
        write_pruned_base(dir, base)?;
    }
    let mut removed = 0;
    for segment in &segments[..doomed] {
        match fs::remove_file(&segment.path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&segment.path, "delete pruned segment")(e)),
        }
    }
    sync_dir(dir)?;
    Ok(removed)
}

fn write_pruned_base(dir: &Path, base: u64) -> Result<(), JournalError> {
    let path = dir.join(PRUNED_BASE_FILE);
    let temp = dir.join(format!("{PRUNED_BASE_FILE}.tmp"));
    let mut file = File::create(&temp).map_err(io_err(&temp, "create pruned base"))?;
    file.write_all(base.to_string().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err(&temp, "write pruned base"))?;
    drop(file);
    fs::rename(&temp, &path).map_err(io_err(&path, "replace pruned base"))?;
    sync_dir(dir)
}

/// Reads record `seq` at `location`, checking its checksum and sequence
/// number.
pub fn read_at(dir: &Path, seq: u64, location: RecordLocation) -> Result<Vec<u8>, JournalError> {
    let path = dir.join(segment_name(location.segment));
    let file = File::open(&path).map_err(io_err(&path, "open segment"))?;
    let mut buf = vec![0u8; RECORD_HEADER as usize + location.len as usize];
    file.read_exact_at(&mut buf, location.offset)
        .map_err(io_err(&path, "read record"))?;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&buf[8..16]);
    let payload = buf.split_off(RECORD_HEADER as usize);
    let corrupt = |reason: &str| JournalError::Corrupt {
        seq,
        segment: segment_name(location.segment),
        offset: location.offset,
        reason: reason.to_owned(),
    };
    if record_crc(u64::from_le_bytes(seq_bytes), &payload) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    if u64::from_le_bytes(seq_bytes) != seq {
        return Err(corrupt("record holds another sequence number"));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests;
