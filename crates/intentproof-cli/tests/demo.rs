//! `intentproof demo --non-interactive`, the README's first command, end to
//! end: its whole output matches `golden/demo.txt` once the run's variable
//! parts (port, data dir, correlation id, bundle size) are replaced by
//! placeholders; the bundle it wrote verifies with `intentproof verify`; and
//! the card number the agent sent never reached the journal. The README
//! shows the same golden output, so it cannot drift. The commands the demo
//! suggests name the binary it ran when `intentproof` on `PATH` is not that
//! binary (before `cargo install`), and plain `intentproof` once it is.

use std::path::Path;
use std::process::Command;

mod common;

use common::{BIN, workspace_root};

/// The binary under test as the demo names it when run from the workspace
/// root: relative to it when under it (`target/debug/intentproof`).
fn bin_as_shown() -> String {
    let bin = Path::new(BIN).canonicalize().unwrap();
    let root = workspace_root().canonicalize().unwrap();
    bin.strip_prefix(&root)
        .map_or(bin.clone(), Path::to_path_buf)
        .display()
        .to_string()
}

/// Replaces what changes from run to run by fixed placeholders, and the
/// binary under test by the one the README's `cargo run --release` runs
/// (`target/release/intentproof`, named so from the repository root).
fn normalize(output: &str, dir: &Path) -> String {
    let dir = dir.display().to_string();
    let bin = format!("{} ", bin_as_shown());
    output
        .lines()
        .map(|line| {
            let mut line = line
                .replace(&dir, "<DATA_DIR>")
                .replace(&bin, "target/release/intentproof ");
            if let Some(at) = line.find("http://127.0.0.1:") {
                let port_start = at + "http://127.0.0.1:".len();
                let port_end = line[port_start..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(line.len(), |n| port_start + n);
                line.replace_range(port_start..port_end, "<PORT>");
            }
            if let Some(rest) = line.strip_prefix("  correlation ") {
                assert_eq!(rest.len(), 36, "a UUID: {rest}");
                line = "  correlation <CORRELATION_ID>".into();
            }
            if let (Some(open), Some(close)) = (line.find(" ("), line.find(" bytes)"))
                && line.contains("exported")
                && open < close
            {
                line.replace_range(open + 2..close, "<N>");
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn demo_shows_the_incomplete_intent_and_a_bundle_that_verifies() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("demo");
    // Not installed: no `intentproof` on PATH; run from the repository root
    // as the README does.
    let out = Command::new(BIN)
        .args(["demo", "--non-interactive", "--data-dir"])
        .arg(&dir)
        .env("NO_COLOR", "1")
        .env("PATH", temp.path())
        .current_dir(workspace_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/demo.txt");
    let actual = normalize(&stdout, &dir);
    if std::env::var_os("INTENTPROOF_BLESS").is_some() {
        std::fs::write(&golden_path, &actual).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).unwrap();
    assert_eq!(
        actual, golden,
        "demo output differs from tests/golden/demo.txt (INTENTPROOF_BLESS=1 rewrites it)"
    );

    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    assert!(
        readme.contains(&format!("```text\n{golden}```")),
        "README.md must show the demo's output exactly as tests/golden/demo.txt has it"
    );

    let bundle = dir.join("ORD-1042.proof.tar.zst");
    // The command the demo shows: the exporter's key it wrote attests the bundle.
    let verify = Command::new(BIN)
        .arg("verify")
        .arg("--key")
        .arg(dir.join("exporter.pem"))
        .arg(&bundle)
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&verify.stdout).starts_with("✓ pass: bundle.verify_pass\n"),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let mut journal = Vec::new();
    for entry in std::fs::read_dir(dir.join("journal")).unwrap() {
        journal.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(!journal.is_empty(), "the journal holds the events");
    let haystack = String::from_utf8_lossy(&journal);
    assert!(haystack.contains("***************4242"));
    assert!(!haystack.contains("4242 4242 4242 4242"));
    assert!(!haystack.contains("4242424242424242"));
}

#[test]
fn demo_suggests_plain_intentproof_once_it_is_installed() {
    let temp = tempfile::tempdir().unwrap();
    let bin_dir = temp.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(BIN, bin_dir.join("intentproof")).unwrap();
    let dir = temp.path().join("demo");
    let out = Command::new(BIN)
        .args(["demo", "--non-interactive", "--data-dir"])
        .arg(&dir)
        .env("NO_COLOR", "1")
        .env("PATH", &bin_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    let next: Vec<&str> = stdout.lines().skip_while(|l| *l != "Next:").collect();
    let bundle = dir.join("ORD-1042.proof.tar.zst");
    assert_eq!(
        next,
        [
            "Next:".to_owned(),
            format!(
                "  intentproof tui --data-dir {}      browse the chain and its flag",
                dir.display()
            ),
            format!(
                "  intentproof verify explain --key {} {}   what was intended, what ran, what is missing",
                dir.join("exporter.pem").display(),
                bundle.display()
            ),
        ]
    );
    assert!(stdout.contains(&format!(
        "\n  $ intentproof verify --key {} {}\n",
        dir.join("exporter.pem").display(),
        bundle.display()
    )));
}
