//! `intentproof demo --non-interactive`, the README's first command, end to
//! end: its whole output matches `golden/demo.txt` once the run's variable
//! parts (port, data dir, correlation id, bundle size) are replaced by
//! placeholders; the bundle it wrote verifies with `intentproof verify`; and
//! the card number the agent sent never reached the journal. The README
//! shows the same golden output, so it cannot drift.

use std::path::Path;
use std::process::Command;

mod common;

use common::BIN;

/// Replaces what changes from run to run by fixed placeholders.
fn normalize(output: &str, dir: &Path) -> String {
    let dir = dir.display().to_string();
    output
        .lines()
        .map(|line| {
            let mut line = line.replace(&dir, "<DATA_DIR>");
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
    let out = Command::new(BIN)
        .args(["demo", "--non-interactive", "--data-dir"])
        .arg(&dir)
        .env("NO_COLOR", "1")
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
    let verify = Command::new(BIN)
        .arg("verify")
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
