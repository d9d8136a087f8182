//! The terminal UI end to end, driven in a real terminal (tmux): a real
//! MCP session through the stdio gateway declares a two-step plan and
//! skips one step; the plan closes with the session; then `intentproof tui` finds the
//! chain by searching its correlation id, opens it, shows the missing step
//! flagged, exports the proof bundle with `e`, and the bundle verifies.
//! And the README's pictures of the TUI are its screens after `intentproof
//! demo`, numbers and ids aside.
//!
//! tmux is required: the test fails (it does not skip) when it is missing.
//! Each test uses its own tmux server (`-L <unique socket>`), killed at
//! the end even when the test fails.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

mod common;

use common::{BIN, Tmux, cli_json, start_daemon, start_gateway};

/// A real MCP session: plan refund + receipt email, call refund and an
/// unplanned lookup, then leave (the plan closes). Returns the correlation id.
fn record_a_session_with_a_missing_step(dir: &Path) -> String {
    let (mut gateway, mut agent) = start_gateway(dir, "payments", &[]);
    agent.request(
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "tui-e2e-agent", "version": "1"}}),
    );
    let declared = agent.call(
        2,
        "intentproof_declare_plan",
        json!({
            "intent": "refund order ORD-1042 and email the receipt",
            "steps": [
                {"tool": "refund_payment", "purpose": "Refund the customer's card"},
                {"tool": "send_receipt_email", "purpose": "Email the customer the refund receipt"}
            ]
        }),
    );
    let plan_id = declared["result"]["structuredContent"]["plan_id"]
        .as_str()
        .expect("the plan tool answers with a plan id")
        .to_owned();
    let refund = agent.call(
        3,
        "refund_payment",
        json!({"order_id": "ORD-1042", "amount_cents": 4999, "card_number": "4242 4242 4242 4242"}),
    );
    assert_eq!(refund["result"]["structuredContent"]["status"], "succeeded");
    agent.call(4, "lookup_order", json!({"order_id": "ORD-1042"}));
    // The agent leaves: the plan closes with its session.
    drop(agent);
    assert!(gateway.0.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let plans = loop {
        let plans = cli_json(&["plans"], dir);
        if plans["plans"][0]["state"] == "closed" {
            break plans;
        }
        assert!(
            Instant::now() < deadline,
            "the plan did not close: {plans:#}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(plans["plans"][0]["plan_id"], plan_id.as_str());
    assert_eq!(plans["plans"][0]["closed_by"], "session_ended");
    plans["plans"][0]["correlation_id"]
        .as_str()
        .expect("the plan has a correlation id")
        .to_owned()
}

#[test]
fn find_open_see_the_missing_step_export_and_verify() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let exports = temp.path().join("exports");
    std::fs::create_dir(&exports).unwrap();
    let _daemon = start_daemon(&dir);
    let correlation = record_a_session_with_a_missing_step(&dir);
    // A second chain, so the search has something to leave out.
    let (mut other, mut agent) = start_gateway(&dir, "payments", &[]);
    agent.request(
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "other-agent", "version": "1"}}),
    );
    agent.call(2, "lookup_order", json!({"order_id": "ORD-7731"}));
    drop(agent);
    assert!(other.0.wait().unwrap().success());

    let command = format!(
        "{BIN} tui --data-dir '{}' --export-dir '{}' --poll-ms 300",
        dir.display(),
        exports.display()
    );
    let tmux = Tmux::start(&command, 80, 24);
    tmux.wait_for("the chains view with both chains", |s| {
        s.contains("1 Chains 2/2") && s.contains("2 Findings")
    });

    // Search by correlation id.
    tmux.keys(&["/"]);
    tmux.literal(&correlation);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the search to leave one chain", |s| {
        s.contains("1 Chains 1/2")
    });
    assert!(screen.contains("! IU"), "the chain is flagged:\n{screen}");

    // Open it: the missing step is flagged next to the plan.
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the chain detail", |s| {
        s.contains(&format!("Chain {correlation}")) && s.contains("Timeline")
    });
    let missing = screen
        .lines()
        .find(|l| l.contains("send_receipt_email"))
        .unwrap_or_else(|| panic!("no send_receipt_email step:\n{screen}"));
    assert!(missing.contains("! missing"), "{missing}\n{screen}");
    let done = screen
        .lines()
        .find(|l| l.contains("refund_payment") && l.contains('│'))
        .unwrap_or_else(|| panic!("no refund_payment step:\n{screen}"));
    assert!(done.contains("✓ done"), "{done}\n{screen}");
    assert!(
        screen.contains("! flags: incomplete intent, unplanned call"),
        "{screen}"
    );
    assert!(
        screen.contains("agent tui-e2e-agent"),
        "the chain names its agent:\n{screen}"
    );

    // Export the bundle with `e`.
    tmux.keys(&["e"]);
    tmux.wait_for("the export to finish", |s| s.contains("✓ exported"));
    let bundle = exports.join(format!(
        "{}.proof.tar.zst",
        correlation.replace(
            |c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "_"
        )
    ));
    assert!(bundle.is_file(), "no bundle at {}", bundle.display());
    verify_passes(&bundle, &dir);

    // `E` changes the export profile; `e` then exports the auditor's view.
    tmux.keys(&["E"]);
    tmux.wait_for("the profile change", |s| {
        s.contains("export profile: auditor")
    });
    tmux.keys(&["e"]);
    tmux.wait_for("the auditor export to finish", |s| s.contains("✓ exported"));
    let auditor = bundle.with_file_name(
        bundle
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".proof.tar.zst", ".auditor.proof.tar.zst"),
    );
    let report = verify_passes(&auditor, &dir);
    assert!(
        report.contains("auditor"),
        "not an auditor bundle:\n{report}"
    );

    // `v` verifies the chain in place.
    tmux.keys(&["v"]);
    tmux.wait_for("the verification", |s| s.contains("bundle verify: ✓ pass"));

    // An event opens with Enter and Esc goes back.
    tmux.keys(&["j", "Enter"]);
    let screen = tmux.wait_for("the event detail", |s| s.contains("signature  ✓ verified"));
    assert!(
        screen.contains("action     mcp.payments.refund_payment"),
        "{screen}"
    );
    tmux.keys(&["Escape"]);
    tmux.wait_for("the chain again", |s| s.contains("Timeline"));

    // q quits, and the pane (the process) ends.
    tmux.keys(&["q"]);
    tmux.wait_exit("q");
}

/// `intentproof verify --key <the daemon's key>` on a bundle: it must pass
/// (attested by the exporter). Returns its report.
fn verify_passes(bundle: &std::path::Path, data_dir: &Path) -> String {
    let shown = Command::new(BIN)
        .args(["keys", "show", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(shown.status.success());
    let key = bundle.with_extension("exporter.pub");
    std::fs::write(&key, &shown.stdout).unwrap();
    let verified = Command::new(BIN)
        .arg("verify")
        .arg("--key")
        .arg(&key)
        .arg(bundle)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(
        verified.status.success() && report.starts_with("✓ pass"),
        "{} does not verify:\n{report}{}",
        bundle.display(),
        String::from_utf8_lossy(&verified.stderr)
    );
    report
}

/// What may differ between the README's pictures and a screen becomes `#`:
/// times, dates, ids and versions (a digit with `:`, `-` or `.`, or in a
/// long word), durations (`8ms`), and hashes (hex, also the piece a line
/// wrap cuts off). Counts stay: the demo always records the same. Runs of
/// spaces become one (a longer duration shifts its column).
fn mask(line: &str) -> String {
    line.split_whitespace()
        .map(|word| {
            let digit = word.bytes().any(|b| b.is_ascii_digit());
            let varies = digit
                && (word.contains([':', '-', '.'])
                    || word.len() >= 8
                    || word.ends_with("ms")
                    || word.ends_with("ms)"));
            let hex = word.len() >= 2 && word.bytes().all(|b| b.is_ascii_hexdigit());
            if varies || hex || word.len() >= 16 {
                "#"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The ```text pictures between the README's `tui-screens` markers.
fn readme_screens() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(common::workspace_root().join("README.md")).unwrap();
    let start = readme
        .find("<!-- tui-screens:start -->")
        .expect("README.md has the tui-screens:start marker");
    let end = readme
        .find("<!-- tui-screens:end -->")
        .expect("README.md has the tui-screens:end marker");
    let mut screens = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in readme[start..end].lines() {
        match (line, current.as_mut()) {
            ("```text", None) => current = Some(Vec::new()),
            ("```", Some(_)) => screens.extend(current.take()),
            (line, Some(lines)) => lines.push(line.to_owned()),
            _ => {}
        }
    }
    screens
}

/// The README's Terminal UI pictures are what the TUI shows after `intentproof
/// demo` (numbers and ids aside): the chains, the chain, the refund event and
/// the findings, in an 80x24 terminal.
#[test]
fn the_readme_pictures_are_the_screens_after_the_demo() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("demo");
    let demo = Command::new(BIN)
        .args(["demo", "--non-interactive", "--data-dir"])
        .arg(&dir)
        .env("NO_COLOR", "1")
        .current_dir(common::workspace_root())
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let tmux = Tmux::start(
        &format!("{BIN} tui --data-dir '{}' --poll-ms 300", dir.display()),
        80,
        24,
    );
    // A view is drawn when its header and its footer (the last line drawn)
    // are on screen, and two captures in a row agree.
    let drawn = |what: &str, header: &str, footer: &str| -> String {
        for _ in 0..100 {
            let screen = tmux.wait_for(what, |s| {
                s.starts_with(header)
                    && s.lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .is_some_and(|l| l.starts_with(footer))
                    && s.contains("· live\n")
            });
            if tmux.screen() == screen {
                return screen;
            }
        }
        panic!("{what} kept changing on screen:\n{}", tmux.screen());
    };
    let mut screens = vec![drawn(
        "the chains",
        "IntentProof [1 Chains 1/1] 2 Findings 1 ",
        "↑↓ move  Enter open  /",
    )];
    tmux.keys(&["Enter"]);
    screens.push(drawn(
        "the chain",
        "IntentProof [1 Chains 1/1] 2 Findings 1  › chain\n",
        "↑↓ move  Enter event",
    ));
    tmux.keys(&["j", "Enter"]);
    screens.push(drawn(
        "the refund event",
        "IntentProof [1 Chains 1/1] 2 Findings 1  › chain › event\n",
        "↑↓ scroll",
    ));
    tmux.keys(&["2"]);
    screens.push(drawn(
        "the findings",
        "IntentProof  1 Chains 1/1 [2 Findings 1]",
        "↑↓ move  Enter open chain",
    ));

    let data_dir = dir.display().to_string();
    let readme = readme_screens();
    assert_eq!(readme.len(), 4, "four pictures: {readme:?}");
    for (picture, screen) in readme.iter().zip(&screens) {
        let shown: Vec<String> = screen
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| mask(&l.replace(&data_dir, "<DATA_DIR>")))
            .collect();
        let pictured: Vec<String> = picture.iter().map(|l| mask(l)).collect();
        assert_eq!(
            pictured, shown,
            "README picture (left) and screen (right) differ; the screen:\n{screen}"
        );
    }
}

/// Every file under `dir`: its path, bytes and mtime.
fn files_of(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes, meta.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_tui_reads_the_store_beside_a_running_daemon_and_a_stopped_ones_unchanged() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let exports = temp.path().join("exports");
    std::fs::create_dir(&exports).unwrap();
    let daemon = start_daemon(&dir);
    let correlation = record_a_session_with_a_missing_step(&dir);
    // `--local` reads the store itself while the daemon runs and holds it.
    let command = format!(
        "{BIN} tui --local --data-dir '{}' --export-dir '{}' --poll-ms 300",
        dir.display(),
        exports.display()
    );
    let tmux = Tmux::start(&command, 100, 30);
    tmux.wait_for("the chains view, read beside the running daemon", |s| {
        s.contains("1 Chains 1/1") && s.contains("read-only")
    });
    tmux.keys(&["q"]);
    tmux.wait_exit("q");
    drop(tmux);
    drop(daemon); // SIGTERM: the daemon stops as an operator stops it.
    let before = files_of(&dir);
    // An mtime has a clock tick's resolution: a write from now on shows.
    std::thread::sleep(Duration::from_millis(50));

    let command = format!(
        "{BIN} tui --data-dir '{}' --export-dir '{}' --poll-ms 300",
        dir.display(),
        exports.display()
    );
    let tmux = Tmux::start(&command, 100, 30);
    tmux.wait_for("the chains view, read from the store itself", |s| {
        s.contains("1 Chains 1/1") && s.contains("read-only")
    });
    tmux.keys(&["Enter"]);
    tmux.wait_for("the chain detail", |s| {
        s.contains(&format!("Chain {correlation}")) && s.contains("Timeline")
    });
    tmux.keys(&["v"]);
    tmux.wait_for("the chain verified in place", |s| s.contains("✓"));
    tmux.keys(&["j", "Enter"]);
    tmux.wait_for("the event detail", |s| s.contains("signature  ✓ verified"));
    tmux.keys(&["Escape", "q"]);
    tmux.wait_exit("q");

    let after = files_of(&dir);
    assert_eq!(
        before.iter().map(|f| &f.0).collect::<Vec<_>>(),
        after.iter().map(|f| &f.0).collect::<Vec<_>>(),
        "the TUI created or removed a file in the data dir"
    );
    for (b, a) in before.iter().zip(&after) {
        assert!(b.1 == a.1, "the TUI changed {}", b.0.display());
        assert_eq!(b.2, a.2, "the TUI wrote {} (mtime)", b.0.display());
    }
}
