//! The journal: append-only segment files of length-prefixed, CRC-checked
//! records. It is the source of truth; everything else is derived from it.
//!
//! Layout of `<dir>/`:
//!
//! ```text
//! 00000000000000000000.seg   records 0 .. (first record of the next segment)
//! 00000000000000004096.seg   the name is the sequence number of its first record
//! quarantine/                bytes cut from a torn tail, kept, never deleted
//! ```
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
//! corruption, reported by [`read_all`] with its position.

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
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// What [`Journal::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records in the journal after recovery.
    pub records: u64,
    /// Bytes cut from a torn tail (0 when the journal was clean).
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
    active_len: u64,
    next_seq: u64,
    max_segment_bytes: u64,
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

/// Scans a segment, calling `each(seq_offset, location, payload)` for every
/// good record, and stops at the first bad one.
fn scan_segment(
    path: &Path,
    first_seq: u64,
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
        if offset == file_len {
            return Ok(Scan {
                records,
                good_len: offset,
                damage: None,
                misplaced: false,
            });
        }
        let damage = |reason: String| Scan {
            records,
            good_len: offset,
            damage: Some((offset, reason)),
            misplaced: false,
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
    let scan = scan_segment(&last.path, last.first_seq, |_, _, _| {})?;
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
    /// Opens (or creates) the journal in `dir`, repairing a torn tail.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let (mut journal, recovery) = intentproof_store::journal::Journal::open(dir.path(), 1 << 20).unwrap();
    /// assert_eq!(recovery.records, 0);
    /// assert_eq!(journal.append(&[b"one", b"two"]).unwrap(), 0);
    /// assert_eq!(journal.next_seq(), 2);
    /// ```
    pub fn open(dir: &Path, max_segment_bytes: u64) -> Result<(Journal, Recovery), JournalError> {
        fs::create_dir_all(dir).map_err(io_err(dir, "create journal directory"))?;
        let mut segments = list_segments(dir)?;
        let mut recovery = Recovery::default();
        if segments.is_empty() {
            let first = create_segment(dir, 0)?;
            segments.push(first);
        }
        let (last, scan) = scan_last(dir, &segments)?;
        if let Some((offset, reason)) = &scan.damage {
            let cut = fs::metadata(&last.path)
                .map_err(io_err(&last.path, "stat segment"))?
                .len()
                - scan.good_len;
            let quarantine = quarantine(dir, &last, *offset)?;
            let file = OpenOptions::new()
                .write(true)
                .open(&last.path)
                .map_err(io_err(&last.path, "open segment"))?;
            if scan.good_len < HEADER as u64 {
                file.set_len(0)
                    .map_err(io_err(&last.path, "truncate segment"))?;
                (&file)
                    .write_all(SEGMENT_MAGIC)
                    .map_err(io_err(&last.path, "write header"))?;
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
        let active = OpenOptions::new()
            .append(true)
            .open(&last.path)
            .map_err(io_err(&last.path, "open segment"))?;
        let active_len = active
            .metadata()
            .map_err(io_err(&last.path, "stat segment"))?
            .len();
        recovery.records = next_seq;
        Ok((
            Journal {
                dir: dir.to_owned(),
                segments,
                active,
                active_len,
                next_seq,
                max_segment_bytes: max_segment_bytes.max(4096),
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

    fn rotate(&mut self) -> Result<(), JournalError> {
        let segment = create_segment(&self.dir, self.next_seq)?;
        self.active = OpenOptions::new()
            .append(true)
            .open(&segment.path)
            .map_err(io_err(&segment.path, "open segment"))?;
        self.active_len = HEADER as u64;
        self.segments.push(segment);
        Ok(())
    }
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<SegmentInfo, JournalError> {
    let path = dir.join(segment_name(first_seq));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err(&path, "create segment"))?;
    file.write_all(SEGMENT_MAGIC)
        .map_err(io_err(&path, "write header"))?;
    file.sync_all().map_err(io_err(&path, "fsync segment"))?;
    sync_dir(dir)?;
    Ok(SegmentInfo { first_seq, path })
}

fn quarantine(dir: &Path, segment: &SegmentInfo, offset: u64) -> Result<PathBuf, JournalError> {
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
    let target = qdir.join(format!(
        "{}.at-{offset}.bin",
        segment_name(segment.first_seq)
    ));
    fs::write(&target, &bytes).map_err(io_err(&target, "write quarantine"))?;
    sync_dir(&qdir)?;
    Ok(target)
}

/// Reads every record of the journal in `dir` from sequence `from` on, in
/// order, calling `each(seq, location, payload)`. Stops with
/// [`JournalError::Corrupt`] at the first damaged record (this is the strict
/// reader used by verification, index catch-up and rebuild; it repairs
/// nothing). Returns the number of records in the journal.
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
pub fn read_between(
    dir: &Path,
    from: u64,
    until: u64,
    mut each: impl FnMut(u64, RecordLocation, &[u8]),
) -> Result<u64, JournalError> {
    let segments = list_segments(dir)?;
    let mut expected = 0u64;
    for (i, segment) in segments.iter().enumerate() {
        let next_first = segments.get(i + 1).map(|s| s.first_seq);
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
        expected = segment.first_seq + scan.records;
    }
    Ok(expected)
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
