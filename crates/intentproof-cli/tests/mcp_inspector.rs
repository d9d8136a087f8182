//! A client nobody here wrote: the MCP Inspector CLI lists and calls tools
//! of server-everything through the gateway (stdio mode), and the calls are
//! recorded.

use std::path::Path;
use std::process::Command;

mod common;

use common::{BIN, required_env, start_daemon};

fn inspector(
    inspector: &Path,
    dir: &Path,
    everything: &Path,
    method_args: &[&str],
) -> serde_json::Value {
    let output = Command::new(inspector)
        .arg("--cli")
        .args(method_args)
        .arg("--")
        .arg(BIN)
        .args([
            "mcp",
            "--name",
            "everything",
            "--no-autostart",
            "--data-dir",
        ])
        .arg(dir)
        .args(["--", "node"])
        .arg(everything)
        .arg("stdio")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "inspector {method_args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "inspector printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn inspector_cli_lists_and_calls_tools_through_the_gateway() {
    let inspector_bin = required_env("INTENTPROOF_TEST_INSPECTOR");
    let everything = required_env("INTENTPROOF_TEST_NODE_EVERYTHING");
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let _daemon = start_daemon(dir);

    let listed = inspector(
        &inspector_bin,
        dir,
        &everything,
        &["--method", "tools/list"],
    );
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"echo") && names.contains(&"get-sum"),
        "{names:?}"
    );
    assert_eq!(names.last(), Some(&"intentproof_declare_plan"));

    let called = inspector(
        &inspector_bin,
        dir,
        &everything,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "message=from the inspector",
        ],
    );
    assert_eq!(called["content"][0]["text"], "Echo: from the inspector");

    // The call is recorded (the listing is not a call).
    let output = Command::new(BIN)
        .args(["events", "--json", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    let events: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let recorded: Vec<(&str, &serde_json::Value)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"]["action"].as_str().unwrap(),
                &e["event"]["inputs"],
            )
        })
        .collect();
    assert_eq!(
        recorded,
        vec![(
            "mcp.everything.echo",
            &serde_json::json!({"message": "from the inspector"})
        )]
    );
}
