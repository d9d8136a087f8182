//! `intentproof verify` against the reference tools' golden bundle (its
//! manifest is unsigned: the reference output with `--allow-unattested`,
//! the unattested verdict without), and output into a closed pipe (`| head`):
//! a quiet exit 141, never a panic or `error: Broken pipe`.

use std::path::PathBuf;
use std::process::Command;

fn golden(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/intentproof-spec/golden")
        .join(rel)
}

/// The golden bundle's manifest is unsigned: its checks pass, but nothing
/// attests it. Accepted as such (`--allow-unattested`), the output is the
/// reference verifier's, byte for byte, and the exit code 0.
#[test]
fn golden_counterparty_bundle_verifies_with_the_exact_stdout() {
    let out = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .args(["verify", "--allow-unattested"])
        .arg(golden("counterparty/counterparty-refund.proof.tar.zst"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = std::fs::read(golden("counterparty/expected-verify-stdout.txt")).unwrap();
    assert_eq!(out.stdout, expected);
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "warning: the manifest is unsigned: the bundle is self-consistent, but anyone could have \
         built it\nwarning: 2 event(s) carry no signature (records that are not \
         intentproof.event.v1): only the manifest covers them, and they are not counted as \
         verified\nwarning: accepted unattested (--allow-unattested): the manifest is unsigned, \
         so nothing binds this list of events to an exporter: events may have been left out\n"
    );
}

/// Without `--allow-unattested`, the same bundle is never a plain pass: the
/// verdict says what verified and what is not attested, the findings
/// follow (the last `bundle.verify_unattested`), and the exit code is 3.
#[test]
fn golden_counterparty_bundle_is_unattested_without_a_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .arg("verify")
        .arg(golden("counterparty/counterparty-refund.proof.tar.zst"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let reference = String::from_utf8(
        std::fs::read(golden("counterparty/expected-verify-stdout.txt")).unwrap(),
    )
    .unwrap();
    let findings = reference
        .strip_prefix("✓ pass: bundle.verify_pass\n")
        .unwrap()
        .strip_suffix("- bundle.verify_pass\n")
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "⚠ unattested: 0 of 2 event signatures verify, but the manifest is unsigned, so \
             nothing binds this list of events to an exporter: events may have been left out. \
             Pass --key with the exporter's public key\n{findings}- bundle.verify_unattested\n"
        )
    );

    // explain names the missing attestation too, and exits 1: the golden
    // policy's rule has no category, so the run is inconclusive.
    let out = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .args(["verify", "explain"])
        .arg(golden("counterparty/counterparty-refund.proof.tar.zst"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().take(2).collect::<Vec<_>>(),
        [
            "Integrity: ⚠ NOT ATTESTED: 0 of 2 event signatures verify, but the manifest is \
             unsigned, so nothing binds this list of events to an exporter. Nothing shows that no \
             event was left out: the last events of a chain can be dropped without a trace. Pass \
             --key with the exporter's public key.",
            "What follows is only what these events show."
        ]
    );
}

#[test]
fn json_report_and_failures() {
    // The checks pass (`status`), but nothing attests the bundle
    // (`verdict`, and the exit code).
    let out = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .args(["verify", "--json"])
        .arg(golden("counterparty/counterparty-refund.proof.tar.zst"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "pass");
    assert_eq!(report["reason"], "bundle.verify_pass");
    assert_eq!(report["attestation"], "manifest_unsigned");
    assert_eq!(report["verdict"], "unattested");
    assert_eq!(report["summary"]["events"], 2);

    // The empty-tar corpus: fail, exit 1, reason on stdout, detail on stderr.
    let out = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .arg("verify")
        .arg(golden("fuzz-corpora/bundle/empty-tar.bin"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout, "✗ fail: bundle.manifest_missing\n".as_bytes());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no members"));

    // A missing file is an I/O error: exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .args(["verify", "/nonexistent/bundle.proof.tar.zst"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // A --key that is not a key: exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .args(["verify", "--key"])
        .arg(golden("counterparty/expected-verify-stdout.txt"))
        .arg(golden("counterparty/counterparty-refund.proof.tar.zst"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `intentproof verify --json F | head` with the reader gone: no
/// "error: Broken pipe" on stderr, and the exit status of a process killed
/// by SIGPIPE (141), as `set -o pipefail` expects.
#[test]
fn verify_into_a_closed_pipe_exits_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .args(["verify", "--json", "--allow-unattested"])
        .arg(golden("counterparty/counterparty-refund.proof.tar.zst"))
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

/// The same for a command that prints with `println!` (`keys show`), which
/// would otherwise panic with "failed printing to stdout: Broken pipe".
#[test]
fn keys_show_into_a_closed_pipe_exits_quietly() {
    let temp = tempfile::tempdir().unwrap();
    let created = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .args(["keys", "new", "--data-dir"])
        .arg(temp.path())
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_intentproof"))
        .args(["keys", "show", "--data-dir"])
        .arg(temp.path())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).as_ref()
        ),
        (Some(141), "")
    );
}

/// A bundle file is verified as it streams; standard input is read whole
/// first. Both give the same report, byte for byte, whether the bundle
/// passes or fails (a failing file is verified again the buffered way), and
/// the same refusal of an input over `--max-bytes`.
#[test]
fn a_file_and_standard_input_give_the_same_report() {
    use std::io::Write;
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../intentproof-bundle/tests/fixtures/daemon-export");
    let bundle = std::fs::read(fixtures.join("ORD-1042.proof.tar.zst")).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let key = temp.path().join("daemon.pub");
    std::fs::copy(fixtures.join("daemon.pub"), &key).unwrap();
    let key = key.to_str().unwrap().to_owned();

    let run = |bytes: &[u8], args: &[&str], stdin: bool| {
        let file = temp.path().join("b.proof.tar.zst");
        std::fs::write(&file, bytes).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_intentproof"));
        cmd.arg("verify").args(args);
        if stdin {
            cmd.arg("-").stdin(std::process::Stdio::piped());
        } else {
            cmd.arg(&file);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if stdin {
            let mut input = child.stdin.take().unwrap();
            input.write_all(bytes).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };

    // Passing, attested and not; then a flipped byte deep in the archive.
    let mut tampered = bundle.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    for (bytes, args, code) in [
        (&bundle, vec!["--key", key.as_str()], Some(0)),
        (&bundle, vec!["--json", "--key", key.as_str()], Some(0)),
        (&bundle, vec![], Some(3)),
        (&tampered, vec!["--key", key.as_str()], Some(1)),
        (&tampered, vec!["--json"], Some(1)),
    ] {
        let from_file = run(bytes, &args, false);
        let from_stdin = run(bytes, &args, true);
        assert_eq!(from_file.0, code, "{args:?}: {}", from_file.2);
        assert_eq!(from_file, from_stdin, "{args:?}");
    }
    // Over the decompressed limit: the same failure.
    let file = run(&bundle, &["--max-bytes", "100"], false);
    assert_eq!(file.0, Some(1));
    assert!(
        file.1.starts_with("✗ fail: bundle.archive_too_large"),
        "{}",
        file.1
    );
    assert_eq!(file, run(&bundle, &["--max-bytes", "100"], true));
    // An input larger than the limit allows at all: refused before reading.
    let junk = vec![0u8; (1 << 20) + 200];
    for stdin in [false, true] {
        let (code, stdout, stderr) = run(&junk, &["--max-bytes", "100"], stdin);
        assert_eq!((code, stdout.as_str()), (Some(2), ""));
        assert!(
            stderr.contains("is larger than --max-bytes (100) allows"),
            "{stderr}"
        );
    }
}
