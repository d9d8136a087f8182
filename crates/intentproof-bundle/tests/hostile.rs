//! Hostile archives: each is refused with a clear message, within bounded
//! memory and time.

use std::io::Write;
use std::time::Instant;

use intentproof_bundle::archive::{ArchiveError, ReadLimits, read_archive};
use intentproof_bundle::{VerifyOptions, pack_members, verify, verify_buffered, verify_reader};

/// A GNU header whose name bytes are written raw (no path validation).
fn raw_header(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    if let Some(gnu) = h.as_gnu_mut() {
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name);
    }
    h.set_cksum();
    h
}

fn tar_with(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let h = raw_header(name, *kind, data.len() as u64);
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn read_err(bytes: &[u8]) -> ArchiveError {
    match read_archive(bytes, &ReadLimits::default()) {
        Ok(a) => panic!("read {} members from a bad archive", a.members.len()),
        Err(e) => e,
    }
}

#[test]
fn path_traversal_and_absolute_paths_are_refused() {
    for name in [
        &b"../evil"[..],
        b"keys/../../evil",
        b"/etc/passwd",
        b"./manifest.json",
    ] {
        let tar = tar_with(&[(name, tar::EntryType::Regular, b"x")]);
        let err = read_err(&tar);
        assert!(matches!(err, ArchiveError::UnsafePath { .. }), "{err}");
        let report = verify(&tar, &VerifyOptions::default());
        assert_eq!(report.reason, "bundle.archive_unsafe");
        let name = String::from_utf8_lossy(name).into_owned();
        assert!(report.detail.unwrap().contains(&name));
    }
}

#[test]
fn links_devices_and_fifos_are_refused() {
    for kind in [
        tar::EntryType::Symlink,
        tar::EntryType::Link,
        tar::EntryType::Char,
        tar::EntryType::Block,
        tar::EntryType::Fifo,
    ] {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = raw_header(b"manifest.json", kind, 0);
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            h.set_link_name("/etc/passwd").unwrap();
            h.set_cksum();
        }
        b.append(&h, &[][..]).unwrap();
        let tar = b.into_inner().unwrap();
        let err = read_err(&tar);
        assert!(
            matches!(err, ArchiveError::UnsupportedEntry { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("\"manifest.json\""), "{err}");
        assert_eq!(
            verify(&tar, &VerifyOptions::default()).reason,
            "bundle.archive_unsafe"
        );
    }
}

#[test]
fn duplicate_members_and_directories_with_data_are_refused() {
    let tar = tar_with(&[
        (b"manifest.json", tar::EntryType::Regular, b"{}"),
        (b"manifest.json", tar::EntryType::Regular, b"{}"),
    ]);
    let err = read_err(&tar);
    assert!(
        err.to_string()
            .contains("\"manifest.json\" occurs more than once"),
        "{err}"
    );
    assert_eq!(
        verify(&tar, &VerifyOptions::default()).reason,
        "bundle.member_duplicate"
    );

    let tar = tar_with(&[(b"keys/", tar::EntryType::Directory, b"hidden")]);
    assert!(matches!(
        read_err(&tar),
        ArchiveError::DirectoryWithData { .. }
    ));

    // An empty directory entry is harmless and skipped.
    let tar = tar_with(&[
        (b"keys/", tar::EntryType::Directory, b""),
        (b"keys/a.pub", tar::EntryType::Regular, b"x"),
    ]);
    let archive = read_archive(&tar, &ReadLimits::default()).unwrap();
    assert_eq!(archive.members.len(), 1);
}

/// Streams `members` (name, size) of zeros through zstd without holding
/// the decompressed stream in memory.
fn zstd_zeros(members: &[(&str, u64)]) -> Vec<u8> {
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for (name, size) in members {
        let h = raw_header(name.as_bytes(), tar::EntryType::Regular, *size);
        enc.write_all(h.as_bytes()).unwrap();
        let mut left = *size;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            enc.write_all(&zeros[..n]).unwrap();
            left -= n as u64;
        }
        let pad = (512 - size % 512) % 512;
        enc.write_all(&zeros[..pad as usize]).unwrap();
    }
    enc.write_all(&[0u8; 1024]).unwrap();
    enc.finish().unwrap()
}

#[test]
fn zstd_bomb_of_one_gigabyte_stops_at_the_limit() {
    const GIB: u64 = 1 << 30;
    // Ten members of 100 MiB: 1 GiB decompressed from a small input.
    let names: Vec<String> = (0..10).map(|i| format!("events{i}.jsonl")).collect();
    let members: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), GIB / 10)).collect();
    let bomb = zstd_zeros(&members);
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());

    // A 64 MiB budget: reading stops there, never holding more.
    let limits = ReadLimits {
        max_total_bytes: 64 << 20,
        ..ReadLimits::default()
    };
    let start = Instant::now();
    let err = read_archive(&bomb, &limits).unwrap_err();
    assert!(
        matches!(err, ArchiveError::TooLarge { limit } if limit == 64 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("decompression bomb"));
    let report = verify(
        &bomb,
        &VerifyOptions {
            limits,
            ..VerifyOptions::default()
        },
    );
    assert_eq!(report.reason, "bundle.archive_too_large");
    assert!(start.elapsed().as_secs() < 60);

    // With the default limits a member declaring 1 GiB is refused from its
    // header, before any of its data is read.
    let one = zstd_zeros(&[("events.jsonl", GIB)]);
    let err = read_err(&one);
    assert!(
        matches!(&err, ArchiveError::MemberTooLarge { path, size, .. } if path == "events.jsonl" && *size == GIB),
        "{err}"
    );
}

#[test]
fn a_hundred_thousand_members_are_refused() {
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..100_000 {
        let h = raw_header(format!("m{i}").as_bytes(), tar::EntryType::Regular, 0);
        b.append(&h, &[][..]).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let start = Instant::now();
    let err = read_err(&tar);
    assert!(
        matches!(err, ArchiveError::TooManyMembers { limit: 10_000 }),
        "{err}"
    );
    assert!(err.to_string().contains("more than 10000 members"));
    assert_eq!(
        verify(&tar, &VerifyOptions::default()).reason,
        "bundle.archive_too_large"
    );
    assert!(start.elapsed().as_secs() < 30);
}

#[test]
fn empty_inputs_are_clear_failures() {
    assert!(matches!(read_err(&[]), ArchiveError::EmptyInput));
    assert!(matches!(read_err(&[0u8; 1024]), ArchiveError::EmptyArchive));
    let empty_zstd = zstd::encode_all(&[0u8; 1024][..], 3).unwrap();
    assert!(matches!(read_err(&empty_zstd), ArchiveError::EmptyArchive));
    // Short garbage is not a tar.
    let err = read_err(b"hello");
    assert!(matches!(err, ArchiveError::Tar(_)), "{err}");
    assert_eq!(
        verify(b"hello", &VerifyOptions::default()).reason,
        "bundle.archive_malformed"
    );
}

#[test]
fn truncated_inputs_are_clear_failures() {
    let members = vec![
        ("a.json".to_owned(), vec![b'a'; 3000]),
        ("manifest.json".to_owned(), b"{}".to_vec()),
    ];
    let plain = pack_members(&members, false).unwrap();
    // Cut inside a.json's data.
    let err = read_err(&plain[..512 + 1000]);
    assert!(
        matches!(&err, ArchiveError::TruncatedMember { path, declared: 3000, .. } if path == "a.json")
            || matches!(err, ArchiveError::Tar(_)),
        "{err}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");

    let zst = pack_members(&members, true).unwrap();
    for cut in [5, zst.len() / 2, zst.len() - 1] {
        let err = read_err(&zst[..cut]);
        assert!(
            matches!(
                err,
                ArchiveError::Zstd(_) | ArchiveError::Tar(_) | ArchiveError::TruncatedMember { .. }
            ),
            "cut {cut}: {err}"
        );
        let report = verify(&zst[..cut], &VerifyOptions::default());
        assert_eq!(report.reason, "bundle.archive_malformed", "cut {cut}");
    }
}

#[test]
fn arbitrary_garbage_never_panics() {
    // A cheap deterministic fuzz: prefixes and byte soup around real bundles.
    let members = vec![("manifest.json".to_owned(), b"{\"schema\":1}".to_vec())];
    let zst = pack_members(&members, true).unwrap();
    let mut seed = 0x9e3779b97f4a7c15u64;
    for round in 0..2000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut bytes = if round % 2 == 0 {
            zst.clone()
        } else {
            pack_members(&members, false).unwrap()
        };
        let pos = (seed as usize) % bytes.len();
        bytes[pos] = (seed >> 32) as u8;
        let report = verify(&bytes, &VerifyOptions::default());
        assert!(!report.passed());
    }
}

/// A reader that gives `good` bytes, then fails.
struct FailingReader<'a> {
    good: &'a [u8],
}

impl std::io::Read for FailingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.good.is_empty() {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.good.len()).min(700);
        buf[..n].copy_from_slice(&self.good[..n]);
        self.good = &self.good[n..];
        Ok(n)
    }
}

/// The streaming reader (`verify_reader`, and `verify`'s first try) reads
/// with the same bounds and checks as `read_archive` (it is the same code):
/// every hostile archive above stops it, within the same limits and time,
/// and `verify` then reports exactly what the buffered verifier reports.
#[test]
fn the_streaming_reader_refuses_every_hostile_archive() {
    let mut inputs: Vec<(&str, Vec<u8>, ReadLimits)> = Vec::new();
    let defaults = ReadLimits::default();
    for name in [&b"../evil"[..], b"/etc/passwd", b"a//b", b"\xff"] {
        inputs.push((
            "unsafe path",
            tar_with(&[(name, tar::EntryType::Regular, b"x")]),
            defaults,
        ));
    }
    for kind in [
        tar::EntryType::Symlink,
        tar::EntryType::Link,
        tar::EntryType::Char,
        tar::EntryType::Fifo,
    ] {
        inputs.push((
            "special file",
            tar_with(&[(b"manifest.json", kind, b"")]),
            defaults,
        ));
    }
    inputs.push((
        "duplicate",
        tar_with(&[
            (b"manifest.json", tar::EntryType::Regular, b"{}"),
            (b"manifest.json", tar::EntryType::Regular, b"{}"),
        ]),
        defaults,
    ));
    inputs.push((
        "directory with data",
        tar_with(&[(b"keys/", tar::EntryType::Directory, b"hidden")]),
        defaults,
    ));
    let names: Vec<String> = (0..10).map(|i| format!("events{i}.jsonl")).collect();
    let members: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), (1 << 30) / 10)).collect();
    inputs.push((
        "zstd bomb",
        zstd_zeros(&members),
        ReadLimits {
            max_total_bytes: 64 << 20,
            ..defaults
        },
    ));
    // One line (no newline) of 40 MiB in events.jsonl, or in a JSON member.
    inputs.push((
        "a huge event line",
        zstd_zeros(&[("events.jsonl", 40 << 20)]),
        defaults,
    ));
    let mut huge_json = b"{\"a\": \"".to_vec();
    huge_json.resize(40 << 20, b'x');
    huge_json.extend_from_slice(b"\"}");
    inputs.push((
        "a huge JSON value",
        pack_members(&[("flow.json".to_owned(), huge_json)], true).unwrap(),
        defaults,
    ));
    inputs.push((
        "one huge member",
        zstd_zeros(&[("events.jsonl", 1 << 30)]),
        defaults,
    ));
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..20_000 {
        let h = raw_header(format!("m{i}").as_bytes(), tar::EntryType::Regular, 0);
        b.append(&h, &[][..]).unwrap();
    }
    inputs.push(("too many members", b.into_inner().unwrap(), defaults));
    inputs.push(("empty", Vec::new(), defaults));
    inputs.push(("no members", vec![0u8; 1024], defaults));
    inputs.push(("garbage", b"hello".to_vec(), defaults));
    let members = vec![
        ("a.json".to_owned(), vec![b'a'; 3000]),
        ("manifest.json".to_owned(), b"{}".to_vec()),
    ];
    let zst = pack_members(&members, true).unwrap();
    for cut in [5, zst.len() / 2, zst.len() - 1] {
        inputs.push(("truncated zstd", zst[..cut].to_vec(), defaults));
    }
    let plain = pack_members(&members, false).unwrap();
    inputs.push(("truncated tar", plain[..512 + 1000].to_vec(), defaults));

    for (what, bytes, limits) in &inputs {
        let options = VerifyOptions {
            limits: *limits,
            ..VerifyOptions::default()
        };
        let start = Instant::now();
        let buffered = verify_buffered(bytes, &options);
        assert!(!buffered.passed(), "{what}");
        // A bad archive read from a reader is left to the caller (the error
        // may be the source's): only a member's content, in a sound
        // archive, is reported on.
        if let Ok(report) = verify_reader(&bytes[..], &options) {
            assert!(
                what.starts_with("a huge"),
                "{what}: reported on a bad archive"
            );
            assert_eq!(report, buffered, "{what}");
        }
        assert_eq!(verify(bytes, &options), buffered, "{what}");
        assert!(start.elapsed().as_secs() < 60, "{what}");
    }

    // A source that fails mid-way is never a report of its own.
    let bundle = pack_members(&[("manifest.json".to_owned(), vec![b' '; 100_000])], true).unwrap();
    for good in [0, 10, bundle.len() / 2] {
        assert!(
            verify_reader(
                FailingReader {
                    good: &bundle[..good]
                },
                &VerifyOptions::default()
            )
            .is_err()
        );
    }
}
