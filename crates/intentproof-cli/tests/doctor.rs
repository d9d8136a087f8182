//! `intentproof doctor`, `health`, `completions` and `man` against a real
//! daemon and real files.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

mod common;

use common::{BIN, start_daemon};

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The line of the report about `what`, with its mark.
fn line<'a>(report: &'a str, mark: &str, what: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(&format!("{mark} {what} ")))
        .unwrap_or_else(|| panic!("no `{mark} {what}` line in:\n{report}"))
}

#[test]
fn doctor_passes_on_a_running_daemon_then_names_each_problem_with_its_fix() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let dir_s = dir.to_str().unwrap().to_owned();
    let daemon = start_daemon(&dir);
    let url = format!(
        "http://{}",
        serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(dir.join("daemon.json")).unwrap()
        )
        .unwrap()["listen"]
            .as_str()
            .unwrap()
    );

    let out = run(&["doctor", "--data-dir", &dir_s]);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        line(&report, "✓", "daemon").ends_with(&format!("answers at {url} (instance {})", {
            let key: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join("instance_key.json")).unwrap(),
            )
            .unwrap();
            key["instance_id"].as_str().unwrap().to_owned()
        })),
        "{report}"
    );
    assert!(line(&report, "✓", "api access").ends_with("the daemon accepts this data dir's token"));
    assert!(line(&report, "✓", "store").contains("in use by the running daemon"));
    assert_eq!(report.lines().last(), Some("healthy"));

    let health = run(&["health", "--server", &url]);
    assert_eq!(health.status.code(), Some(0));
    assert_eq!(stdout(&health), format!("ok: {url}/healthz\n"));

    drop(daemon);
    let health = run(&["health", "--server", &url]);
    assert_eq!(health.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&health.stderr).starts_with(&format!("unhealthy: {url}/healthz: ")),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );

    // Stopped: the store is replayed; a readable token is a failure with its fix.
    std::fs::set_permissions(dir.join("token"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = temp.path().join("open.toml");
    std::fs::write(&config, "listen = \"0.0.0.0:9787\"\n").unwrap();
    let out = run(&[
        "doctor",
        "--data-dir",
        &dir_s,
        "--server",
        &url,
        "--config",
        config.to_str().unwrap(),
    ]);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let token_path = dir.join("token");
    assert_eq!(
        line(&report, "✗", "token"),
        format!(
            "✗ token               {} is mode 0644: others can read a secret",
            token_path.display()
        )
    );
    assert!(report.contains(&format!("fix: chmod 600 {}", token_path.display())));
    assert!(line(&report, "!", "daemon").contains(&format!("nothing answers at {url}")));
    assert!(line(&report, "✓", "store").contains("records replayed: chains linked"));
    assert!(
        line(&report, "✗", "config")
            .contains("listening on 0.0.0.0:9787 (not loopback) needs an ingest token: set INTENTPROOF_INGEST_TOKEN or ingest_token in the config, or listen on 127.0.0.1"),
        "{report}"
    );
    assert_eq!(
        report.lines().last(),
        Some("something is broken: see the ✗ lines")
    );

    let json = run(&["doctor", "--data-dir", &dir_s, "--server", &url, "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["healthy"], false);
    let token_check = value["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "token")
        .unwrap();
    assert_eq!(token_check["outcome"], "fail");
    assert_eq!(
        token_check["fix"],
        format!("chmod 600 {}", token_path.display())
    );
}

#[test]
fn doctor_on_a_missing_data_dir_says_how_to_create_it() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("nowhere");
    let out = run(&["doctor", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        format!(
            "✗ data dir            {0} does not exist\n                      fix: intentproof serve --data-dir {0} creates it (or pass the right --data-dir)\n✓ config              none given: built-in defaults (loopback, port 9787)\nsomething is broken: see the ✗ lines\n",
            dir.display()
        )
    );
}

#[test]
fn completions_and_man_page_cover_every_command() {
    let bash = stdout(&run(&["completions", "bash"]));
    assert!(bash.contains("_intentproof()"));
    let zsh = stdout(&run(&["completions", "zsh"]));
    assert!(zsh.starts_with("#compdef intentproof"));
    let fish = stdout(&run(&["completions", "fish"]));
    let man = stdout(&run(&["man"]));
    assert!(man.contains(".TH intentproof 1"));
    for command in [
        "serve", "mcp", "demo", "doctor", "verify", "export", "findings",
    ] {
        assert!(bash.contains(command), "bash completion lacks {command}");
        assert!(
            fish.contains(&format!("-a \"{command}\"")),
            "fish completion lacks {command}"
        );
        assert!(
            man.contains(&format!("intentproof\\-{command}")) || man.contains(command),
            "man page lacks {command}"
        );
    }
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid value 'tcsh'"));
}

/// The Dockerfile's setting (0.0.0.0) only starts with an ingest token.
#[test]
fn serve_refuses_a_non_loopback_listen_without_an_ingest_token() {
    let temp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(temp.path())
        .env("INTENTPROOF_LISTEN", "0.0.0.0:0")
        .env_remove("INTENTPROOF_INGEST_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: listening on 0.0.0.0:0 (not loopback) needs an ingest token: set INTENTPROOF_INGEST_TOKEN or ingest_token in the config, or listen on 127.0.0.1\n"
    );
    assert!(!temp.path().join("daemon.json").exists());

    let mut daemon = common::Stopped(
        Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(temp.path())
            .env("INTENTPROOF_LISTEN", "0.0.0.0:0")
            .env("INTENTPROOF_INGEST_TOKEN", "test-ingest-token")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !temp.path().join("daemon.json").exists() {
        assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon exited");
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn doctor_on_a_fresh_installation_notes_the_default_data_dir_is_not_created_yet() {
    let temp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("doctor")
        .env("HOME", temp.path())
        .env_remove("INTENTPROOF_DATA_DIR")
        .env_remove("INTENTPROOF_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!(
            "! data dir            {}/.intentproof not created yet: nothing has run on it (a fresh installation)\n                      fix: `intentproof serve` (or the first `intentproof mcp`) creates it; `intentproof demo` runs in a directory of its own\n✓ config              none given: built-in defaults (loopback, port 9787)\nhealthy\n",
            temp.path().display()
        )
    );
}
