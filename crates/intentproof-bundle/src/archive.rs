//! Safe reading of untrusted bundle archives.
//!
//! A bundle is a tar archive, zstd-compressed when it starts with the zstd
//! magic `28 B5 2F FD`, plain otherwise. [`read_archive`] never trusts the
//! archive:
//!
//! - decompression is streamed through a counting reader, so a zstd bomb
//!   stops at [`ReadLimits::max_total_bytes`] without ever allocating more;
//! - a member whose header declares more than
//!   [`ReadLimits::max_member_bytes`] is rejected before its data is read;
//! - at most [`ReadLimits::max_members`] members;
//! - member names must be relative, `/`-separated UTF-8 paths without `.`,
//!   `..` or empty components, NUL or backslash;
//! - only regular files are members; empty directory entries are skipped;
//!   symlinks, hard links, devices, FIFOs, sparse files and global pax
//!   headers are rejected;
//! - a name may occur once;
//! - empty input, an archive without members and a truncated archive are
//!   errors.
//!
//! Every error names the member concerned, when there is one.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use tar::EntryType;

/// The zstd frame magic number.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Bounds applied while reading an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Most bytes of tar stream (after decompression) read in total.
    pub max_total_bytes: u64,
    /// Most members (regular files and directory entries).
    pub max_members: usize,
    /// Most bytes in one member.
    pub max_member_bytes: u64,
}

impl Default for ReadLimits {
    /// 512 MiB in total, 10,000 members, 512 MiB per member.
    fn default() -> Self {
        ReadLimits {
            max_total_bytes: 512 << 20,
            max_members: 10_000,
            max_member_bytes: 512 << 20,
        }
    }
}

/// Whether the input was compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zstd-compressed tar (`.proof.tar.zst`).
    Zstd,
    /// Plain tar.
    None,
}

/// One regular file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its path inside the archive.
    pub path: String,
    /// Its exact bytes.
    pub data: Vec<u8>,
}

/// The regular files of an archive, in archive order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// How the input was compressed.
    pub compression: Compression,
    /// The members, in the order the archive stores them.
    pub members: Vec<Member>,
}

impl Archive {
    /// The bytes of member `path`, if present.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.members
            .iter()
            .find(|m| m.path == path)
            .map(|m| m.data.as_slice())
    }
}

/// Why an archive cannot be read. Each message says what is wrong and, where
/// it helps, what to do.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Zero bytes of input.
    #[error("the input is empty (0 bytes): this is not a proof bundle")]
    EmptyInput,
    /// A valid archive without any member.
    #[error("the archive has no members: a proof bundle holds at least manifest.json")]
    EmptyArchive,
    /// The zstd stream is corrupt or truncated.
    #[error("the zstd stream is corrupt or truncated: {0}")]
    Zstd(String),
    /// The tar stream is corrupt, truncated, or not tar at all.
    #[error(
        "the tar archive is corrupt or truncated ({0}); the input is not a complete proof bundle"
    )]
    Tar(String),
    /// A member's data ends before the size its header declares.
    #[error(
        "member {path:?} is truncated: its header declares {declared} bytes but only {read} follow"
    )]
    TruncatedMember {
        /// The member.
        path: String,
        /// Size from its header.
        declared: u64,
        /// Bytes actually present.
        read: u64,
    },
    /// The decompressed archive is larger than allowed.
    #[error(
        "the archive decompresses to more than {limit} bytes (a decompression bomb or an \
         oversized bundle); reading stopped there. Raise the limit only for a bundle you expect to be this large"
    )]
    TooLarge {
        /// The limit in force.
        limit: u64,
    },
    /// More members than allowed.
    #[error("the archive has more than {limit} members; reading stopped there")]
    TooManyMembers {
        /// The limit in force.
        limit: usize,
    },
    /// One member is larger than allowed.
    #[error(
        "member {path:?} declares {size} bytes, more than the limit of {limit} bytes per member"
    )]
    MemberTooLarge {
        /// The member.
        path: String,
        /// Its declared size.
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// A member name that could escape an extraction directory or is not a
    /// plain relative path.
    #[error("member {path:?} has an unsafe name: {reason}")]
    UnsafePath {
        /// The name as stored (lossy UTF-8).
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A member that is not a regular file or an empty directory.
    #[error(
        "member {path:?} is a {kind}: a proof bundle holds regular files only (links, devices \
         and FIFOs are refused)"
    )]
    UnsupportedEntry {
        /// The member.
        path: String,
        /// What kind of entry it is.
        kind: String,
    },
    /// A directory entry that carries data.
    #[error("member {path:?} is a directory entry that carries {size} bytes of data")]
    DirectoryWithData {
        /// The member.
        path: String,
        /// Its declared size.
        size: u64,
    },
    /// The same name occurs twice.
    #[error(
        "member {path:?} occurs more than once: the archive is ambiguous (a reader could see \
         either copy)"
    )]
    DuplicateMember {
        /// The member.
        path: String,
    },
}

impl ArchiveError {
    /// The verifier's reason code for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            // The reference verifier reports an archive without a manifest.
            ArchiveError::EmptyInput | ArchiveError::EmptyArchive => "bundle.manifest_missing",
            ArchiveError::Zstd(_) | ArchiveError::Tar(_) | ArchiveError::TruncatedMember { .. } => {
                "bundle.archive_malformed"
            }
            ArchiveError::TooLarge { .. }
            | ArchiveError::TooManyMembers { .. }
            | ArchiveError::MemberTooLarge { .. } => "bundle.archive_too_large",
            ArchiveError::UnsafePath { .. }
            | ArchiveError::UnsupportedEntry { .. }
            | ArchiveError::DirectoryWithData { .. } => "bundle.archive_unsafe",
            ArchiveError::DuplicateMember { .. } => "bundle.member_duplicate",
        }
    }
}

/// Stops reading once more than `limit` bytes have passed.
struct CountingReader<R> {
    inner: R,
    count: u64,
    limit: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.count > self.limit {
            self.exceeded.set(true);
            return Err(io::Error::other("archive size limit exceeded"));
        }
        // Never read more than one byte past the limit.
        let room = self.limit - self.count + 1;
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.count += n as u64;
        if self.count > self.limit {
            self.exceeded.set(true);
            return Err(io::Error::other("archive size limit exceeded"));
        }
        Ok(n)
    }
}

/// Whether `bytes` starts with the zstd magic.
pub fn is_zstd(bytes: &[u8]) -> bool {
    bytes.starts_with(&ZSTD_MAGIC)
}

/// Reads an untrusted bundle archive (zstd tar or plain tar) within `limits`.
///
/// ```
/// let err = intentproof_bundle::archive::read_archive(&[], &Default::default()).unwrap_err();
/// assert!(err.to_string().contains("empty"));
/// ```
pub fn read_archive(bytes: &[u8], limits: &ReadLimits) -> Result<Archive, ArchiveError> {
    let mut members: Vec<Member> = Vec::new();
    let collect = &mut |event: MemberEvent<'_>| -> Result<(), std::convert::Infallible> {
        match event {
            MemberEvent::Begin { path, size } => {
                // Capacity from the (bounded) declared size, capped: the data
                // may be shorter than declared.
                let cap = usize::try_from(size.min(1 << 20)).unwrap_or(1 << 20);
                members.push(Member {
                    path: path.to_owned(),
                    data: Vec::with_capacity(cap),
                });
            }
            MemberEvent::Data(chunk) => {
                if let Some(m) = members.last_mut() {
                    m.data.extend_from_slice(chunk);
                }
            }
            MemberEvent::End => {}
        }
        Ok(())
    };
    let compression = match visit_slice(bytes, limits, collect) {
        Ok(c) => c,
        Err(VisitError::Archive(e)) => return Err(e),
        Err(VisitError::Stopped(never)) => match never {},
    };
    Ok(Archive {
        compression,
        members,
    })
}

/// What [`visit_slice`] / [`visit_reader`] hand to their callback, in
/// archive order: for each regular file, `Begin`, its data in chunks, `End`.
/// Directory entries are checked but not reported.
pub(crate) enum MemberEvent<'a> {
    /// A regular file starts: its checked name and declared size.
    Begin {
        /// The member's path.
        path: &'a str,
        /// Its size as its header declares it (at most the member limit).
        size: u64,
    },
    /// The next bytes of its data.
    Data(&'a [u8]),
    /// Its data is complete (exactly the declared size).
    End,
}

/// Why a visit ended early.
pub(crate) enum VisitError<S> {
    /// The archive is bad: the same error [`read_archive`] reports.
    Archive(ArchiveError),
    /// The callback asked to stop.
    Stopped(S),
}

/// Visits the members of archive bytes with exactly the checks and bounds
/// of [`read_archive`] (which is this visit collecting the members), without
/// holding them: the callback sees each member's data in chunks.
pub(crate) fn visit_slice<S>(
    bytes: &[u8],
    limits: &ReadLimits,
    on: &mut dyn FnMut(MemberEvent<'_>) -> Result<(), S>,
) -> Result<Compression, VisitError<S>> {
    if bytes.is_empty() {
        return Err(VisitError::Archive(ArchiveError::EmptyInput));
    }
    if is_zstd(bytes) {
        let decoder = zstd::stream::read::Decoder::with_buffer(bytes)
            .map_err(|e| VisitError::Archive(ArchiveError::Zstd(e.to_string())))?;
        visit_tar(decoder, limits, true, on)?;
        Ok(Compression::Zstd)
    } else {
        visit_tar(bytes, limits, false, on)?;
        Ok(Compression::None)
    }
}

/// [`visit_slice`] over a reader (a file): the same checks and bounds, the
/// same errors, and the input is read once, front to back.
pub(crate) fn visit_reader<R: Read, S>(
    mut input: R,
    limits: &ReadLimits,
    on: &mut dyn FnMut(MemberEvent<'_>) -> Result<(), S>,
) -> Result<Compression, VisitError<S>> {
    // The first four bytes say whether it is zstd.
    let mut magic = [0u8; 4];
    let mut have = 0;
    while have < magic.len() {
        match input.read(&mut magic[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(VisitError::Archive(ArchiveError::Tar(e.to_string()))),
        }
    }
    if have == 0 {
        return Err(VisitError::Archive(ArchiveError::EmptyInput));
    }
    let whole = io::Read::chain(&magic[..have], input);
    if is_zstd(&magic[..have]) {
        let decoder =
            zstd::stream::read::Decoder::with_buffer(io::BufReader::with_capacity(1 << 17, whole))
                .map_err(|e| VisitError::Archive(ArchiveError::Zstd(e.to_string())))?;
        visit_tar(decoder, limits, true, on)?;
        Ok(Compression::Zstd)
    } else {
        visit_tar(whole, limits, false, on)?;
        Ok(Compression::None)
    }
}

fn visit_tar<R: Read, S>(
    inner: R,
    limits: &ReadLimits,
    zstd: bool,
    on: &mut dyn FnMut(MemberEvent<'_>) -> Result<(), S>,
) -> Result<(), VisitError<S>> {
    let exceeded = Rc::new(Cell::new(false));
    let reader = CountingReader {
        inner,
        count: 0,
        limit: limits.max_total_bytes,
        exceeded: Rc::clone(&exceeded),
    };
    read_tar(reader, limits, &exceeded, zstd, on)
}

fn read_tar<R: Read, S>(
    reader: R,
    limits: &ReadLimits,
    exceeded: &Cell<bool>,
    zstd: bool,
    on: &mut dyn FnMut(MemberEvent<'_>) -> Result<(), S>,
) -> Result<(), VisitError<S>> {
    // Maps an I/O error to the most telling archive error.
    let io_err = |e: io::Error| -> VisitError<S> {
        VisitError::Archive(if exceeded.get() {
            ArchiveError::TooLarge {
                limit: limits.max_total_bytes,
            }
        } else if zstd && is_zstd_error(&e) {
            ArchiveError::Zstd(e.to_string())
        } else {
            ArchiveError::Tar(e.to_string())
        })
    };
    let bad = |e: ArchiveError| -> VisitError<S> { VisitError::Archive(e) };
    let mut archive = tar::Archive::new(reader);
    let mut files = 0usize;
    let mut names = std::collections::HashSet::new();
    let mut entries_seen = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    for entry in archive.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        entries_seen += 1;
        if entries_seen > limits.max_members {
            return Err(bad(ArchiveError::TooManyMembers {
                limit: limits.max_members,
            }));
        }
        let raw_path = entry.path_bytes().into_owned();
        let lossy = String::from_utf8_lossy(&raw_path).into_owned();
        let kind = entry.header().entry_type();
        let size = entry.size();
        let is_dir = kind == EntryType::Directory;
        let path = check_path(&raw_path, is_dir).map_err(bad)?;
        match kind {
            EntryType::Regular | EntryType::Continuous => {}
            EntryType::Directory => {
                if size != 0 {
                    return Err(bad(ArchiveError::DirectoryWithData { path: lossy, size }));
                }
                if !names.insert(path.clone()) {
                    return Err(bad(ArchiveError::DuplicateMember { path }));
                }
                continue;
            }
            other => {
                return Err(bad(ArchiveError::UnsupportedEntry {
                    path: lossy,
                    kind: entry_kind(other),
                }));
            }
        }
        if size > limits.max_member_bytes {
            return Err(bad(ArchiveError::MemberTooLarge {
                path,
                size,
                limit: limits.max_member_bytes,
            }));
        }
        if !names.insert(path.clone()) {
            return Err(bad(ArchiveError::DuplicateMember { path }));
        }
        on(MemberEvent::Begin { path: &path, size }).map_err(VisitError::Stopped)?;
        // The data, read to its end (at most the declared size), in chunks.
        let mut data = (&mut entry).take(size);
        let mut read = 0u64;
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            };
            read += n as u64;
            on(MemberEvent::Data(&buf[..n])).map_err(VisitError::Stopped)?;
        }
        if read != size {
            return Err(bad(ArchiveError::TruncatedMember {
                path,
                declared: size,
                read,
            }));
        }
        on(MemberEvent::End).map_err(VisitError::Stopped)?;
        files += 1;
    }
    if zstd {
        // The tar ends before the zstd frame does: read the frame to its
        // end (still bounded) so a cut or corrupt tail, or a bad content
        // checksum, is noticed.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(io_err)?;
    }
    if exceeded.get() {
        return Err(bad(ArchiveError::TooLarge {
            limit: limits.max_total_bytes,
        }));
    }
    if files == 0 {
        return Err(bad(ArchiveError::EmptyArchive));
    }
    Ok(())
}

fn is_zstd_error(e: &io::Error) -> bool {
    // zstd reports its errors as `io::ErrorKind::Other` with the zstd
    // message; a short read of the compressed input is `UnexpectedEof`.
    let text = e.to_string();
    e.kind() == io::ErrorKind::UnexpectedEof
        || text.contains("Unknown frame descriptor")
        || text.contains("Corrupted block")
        || text.contains("incomplete frame")
        || text.contains("Data corruption")
        || text.contains("checksum")
        || text.contains("Restored data doesn't match checksum")
}

fn entry_kind(kind: EntryType) -> String {
    match kind {
        EntryType::Symlink => "symbolic link".into(),
        EntryType::Link => "hard link".into(),
        EntryType::Char => "character device".into(),
        EntryType::Block => "block device".into(),
        EntryType::Fifo => "FIFO".into(),
        EntryType::GNUSparse => "GNU sparse file".into(),
        EntryType::XGlobalHeader => "pax global header".into(),
        other => format!("tar entry of type {:?}", other.as_byte() as char),
    }
}

/// Checks a member name; returns it as a `String` (directories without
/// their trailing slash).
fn check_path(raw: &[u8], is_dir: bool) -> Result<String, ArchiveError> {
    let unsafe_path = |reason| ArchiveError::UnsafePath {
        path: String::from_utf8_lossy(raw).into_owned(),
        reason,
    };
    let text = std::str::from_utf8(raw).map_err(|_| unsafe_path("it is not valid UTF-8"))?;
    let text = if is_dir {
        text.strip_suffix('/').unwrap_or(text)
    } else {
        text
    };
    if text.is_empty() {
        return Err(unsafe_path("it is empty"));
    }
    if text.starts_with('/') {
        return Err(unsafe_path("it is an absolute path"));
    }
    if text.contains('\\') {
        return Err(unsafe_path("it contains a backslash"));
    }
    if text.contains('\0') {
        return Err(unsafe_path("it contains a NUL byte"));
    }
    if text.len() >= 2 && text.as_bytes()[1] == b':' {
        return Err(unsafe_path("it names a drive"));
    }
    for component in text.split('/') {
        match component {
            ".." => return Err(unsafe_path("it contains `..` (path traversal)")),
            "." => return Err(unsafe_path("it contains a `.` component")),
            "" => {
                return Err(unsafe_path(
                    "it contains an empty component (`//` or a trailing `/`)",
                ));
            }
            _ => {}
        }
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(check_path(b"manifest.json", false).is_ok());
        assert!(check_path(b"keys/a.pub", false).is_ok());
        assert_eq!(check_path(b"keys/", true).unwrap(), "keys");
        for bad in [
            &b"../x"[..],
            b"/etc/passwd",
            b"a/../../b",
            b"./manifest.json",
            b"a//b",
            b"a\\b",
            b"C:x",
            b"",
            b"\xff",
        ] {
            assert!(check_path(bad, false).is_err(), "{bad:?}");
        }
    }
}
