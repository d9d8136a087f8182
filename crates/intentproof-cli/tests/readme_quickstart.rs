//! The README's library quick start is a program that builds and runs as
//! pasted. Its `Cargo.toml`, `src/main.rs` and output are taken from
//! README.md (each is the fenced block after a `<!-- quickstart:... -->`
//! marker), so the README cannot drift from what compiles: the files go
//! into a new cargo project outside the workspace, the path dependency
//! rewritten to this checkout, and `cargo run` must print exactly the
//! README's output, ids and times aside (their shapes are checked).
//!
//! The project builds offline into the workspace's target dir with the
//! workspace's `Cargo.lock`, so dependencies built before are reused.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

mod common;

use common::{run_bounded, workspace_root};

/// The path dependency as the README gives it (the reader's clone).
const README_DEPENDENCY: &str =
    r#"intentproof = { path = "/path/to/intentproof-gateway/crates/intentproof" }"#;

/// The fenced block right after `<!-- quickstart:{name} -->` in `readme`.
fn block<'a>(readme: &'a str, name: &str) -> &'a str {
    let marker = format!("<!-- quickstart:{name} -->\n");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker:?}"))
        .1;
    let fence = after
        .strip_prefix("```")
        .unwrap_or_else(|| panic!("{marker:?} is not followed by a fenced block"));
    let body = fence.split_once('\n').unwrap().1;
    body.split_once("```\n")
        .unwrap_or_else(|| panic!("the block after {marker:?} is not closed"))
        .0
}

/// A top-level member `"key": "value"` or `"key": value` of a
/// pretty-printed event (indented two spaces: `output.id` is not the
/// event's id) with `value` replaced by `<key>` once `valid` accepts it.
fn mask(line: &str, key: &str, valid: fn(&str) -> bool) -> Option<String> {
    let prefix = format!("  \"{key}\": ");
    if !line.starts_with(&prefix) {
        return None;
    }
    let start = prefix.len();
    let rest = &line[start..];
    let (value, masked, tail) = match rest.strip_prefix('"') {
        Some(quoted) => {
            let end = quoted.find('"')?;
            (&quoted[..end], format!("\"<{key}>\""), &quoted[end + 1..])
        }
        None => {
            let end = rest.find(',').unwrap_or(rest.len());
            (&rest[..end], format!("<{key}>"), &rest[end..])
        }
    };
    assert!(valid(value), "{key} has the wrong shape: {line}");
    Some(format!("{prefix}{masked}{tail}"))
}

fn is_uuid_v7(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit() && !b.is_ascii_uppercase(),
        })
        && bytes[14] == b'7'
}

/// RFC 3339 UTC with milliseconds: `2026-11-28T07:26:50.689Z`.
fn is_timestamp(value: &str) -> bool {
    value.len() == 24
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            23 => b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

fn is_count(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
}

/// The output with each event's id, times and duration masked, after
/// checking their shapes.
fn masked(output: &str) -> String {
    output
        .lines()
        .map(|line| {
            mask(line, "id", is_uuid_v7)
                .or_else(|| mask(line, "startedAt", is_timestamp))
                .or_else(|| mask(line, "completedAt", is_timestamp))
                .or_else(|| mask(line, "durationMs", is_count))
                .unwrap_or_else(|| line.to_owned())
        })
        .map(|line| line + "\n")
        .collect()
}

/// Where cargo builds this workspace.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

#[test]
fn the_readme_quick_start_builds_runs_and_prints_its_event() {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let manifest = block(&readme, "Cargo.toml");
    let main_rs = block(&readme, "src/main.rs");
    let expected = block(&readme, "output");
    assert_eq!(
        manifest.matches(README_DEPENDENCY).count(),
        1,
        "the README's Cargo.toml must name the dependency as {README_DEPENDENCY}"
    );

    let project = tempfile::tempdir().unwrap();
    let crate_dir = root.join("crates/intentproof").canonicalize().unwrap();
    let manifest = manifest.replace(
        README_DEPENDENCY,
        &format!(
            "intentproof = {{ path = {:?} }}",
            crate_dir.display().to_string()
        ),
    );
    std::fs::write(project.path().join("Cargo.toml"), manifest).unwrap();
    std::fs::create_dir(project.path().join("src")).unwrap();
    std::fs::write(project.path().join("src/main.rs"), main_rs).unwrap();
    // The workspace's versions: nothing to resolve online, little to build.
    std::fs::copy(root.join("Cargo.lock"), project.path().join("Cargo.lock")).unwrap();

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = run_bounded(
        Command::new(cargo)
            .args(["run", "--offline", "--quiet"])
            .current_dir(project.path())
            .env("CARGO_TARGET_DIR", target_dir())
            .env_remove("RUSTFLAGS")
            .env("CARGO_TERM_COLOR", "never"),
        "cargo run (the README quick start)",
        Duration::from_secs(1800),
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "the README quick start failed ({}):\n{}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        masked(&stdout),
        masked(expected),
        "actual output:\n{stdout}"
    );
}

#[test]
fn masking_checks_shapes_and_keeps_the_rest() {
    let line = r#"  "id": "019af7c4-1d2e-7a3b-8c4d-5e6f7a8b9c0d","#;
    assert_eq!(mask(line, "id", is_uuid_v7).unwrap(), r#"  "id": "<id>","#);
    let line = r#"  "durationMs": 0,"#;
    assert_eq!(
        mask(line, "durationMs", is_count).unwrap(),
        r#"  "durationMs": <durationMs>,"#
    );
    assert!(is_timestamp("2026-11-28T07:26:50.689Z"));
    assert!(!is_timestamp("2026-11-28T07:26:50Z"));
    assert!(!is_uuid_v7("019af7c4-1d2e-4a3b-8c4d-5e6f7a8b9c0d"));
    assert_eq!(masked("refund: {}\n"), "refund: {}\n");
}

/// `text` with the findings table's times shown as `…`.
fn without_times(text: &str) -> String {
    text.lines()
        .map(|line| match line.get(..24) {
            Some(at) if at.starts_with("20") && at.ends_with('Z') => {
                format!("{:<24}{}", "…", &line[24..])
            }
            _ => line.to_owned(),
        })
        .map(|line| line + "\n")
        .collect()
}

/// The README's durable example: its `src/main.rs` in the quick start's
/// project, run as the README says (token from `~/.intentproof`, `cargo
/// run`, `intentproof findings`) against a daemon on a free port: the
/// refund is delivered through the durable outbox, and the step never run
/// is an INCOMPLETE INTENT, exactly as the README shows.
#[test]
fn the_readme_durable_example_records_the_plan_and_its_skipped_step() {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let manifest = block(&readme, "Cargo.toml");
    let crate_dir = root.join("crates/intentproof").canonicalize().unwrap();
    let manifest = manifest.replace(
        README_DEPENDENCY,
        &format!(
            "intentproof = {{ path = {:?} }}",
            crate_dir.display().to_string()
        ),
    );
    // Its own package name: the quick start's test builds `refund-quickstart`
    // into the same target dir at the same time, and the binary would be
    // shared.
    assert_eq!(manifest.matches("name = \"refund-quickstart\"").count(), 1);
    let manifest = manifest.replace("name = \"refund-quickstart\"", "name = \"durable-example\"");
    let main_rs = block_after(&readme, "<!-- durable:src/main.rs -->");
    let script = block_after(&readme, "<!-- durable:run -->");
    let expected = block_after(&readme, "<!-- durable:output -->");

    let home = tempfile::tempdir().unwrap();
    let data = home.path().join(".intentproof");
    let _daemon = common::start_daemon(&data);
    let project = home.path().join("durable-example");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(project.join("src/main.rs"), main_rs).unwrap();
    std::fs::copy(root.join("Cargo.lock"), project.join("Cargo.lock")).unwrap();

    let bin_dir = std::path::Path::new(common::BIN).parent().unwrap();
    let cargo =
        std::path::PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let mut path =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect::<Vec<_>>();
    path.insert(0, bin_dir.to_owned());
    if let Some(cargo_dir) = cargo.parent().filter(|d| !d.as_os_str().is_empty()) {
        path.insert(0, cargo_dir.to_owned());
    }
    let out = run_bounded(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(&project)
            .env("HOME", home.path())
            .env("PATH", std::env::join_paths(path).unwrap())
            .env(
                "INTENTPROOF_URL",
                format!("http://{}", common::daemon_listen(&data)),
            )
            .env("CARGO_TARGET_DIR", target_dir())
            .env("CARGO_NET_OFFLINE", "true")
            .env_remove("RUSTFLAGS")
            .env_remove("INTENTPROOF_TOKEN")
            .env_remove("INTENTPROOF_DATA_DIR")
            .env("CARGO_TERM_COLOR", "never"),
        "the README's durable example",
        Duration::from_secs(1800),
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "the README's durable example failed ({}):\n{}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(without_times(&stdout), expected, "actual output:\n{stdout}");
    // The outbox it left: private, and everything delivered.
    use std::os::unix::fs::PermissionsExt;
    let outbox = project.join("intentproof-outbox");
    let mode = std::fs::metadata(&outbox).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(std::fs::read_to_string(outbox.join("cursor")).unwrap(), "3");
}

/// The fenced block right after `marker` (a line of its own).
fn block_after<'a>(readme: &'a str, marker: &str) -> &'a str {
    let after = readme
        .split_once(&format!("{marker}\n```"))
        .unwrap_or_else(|| panic!("README.md has no fenced block after {marker:?}"))
        .1;
    let body = after.split_once('\n').unwrap().1;
    body.split_once("```\n")
        .unwrap_or_else(|| panic!("the block after {marker:?} is not closed"))
        .0
}
