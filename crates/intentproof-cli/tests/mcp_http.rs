//! The MCP gateway over Streamable HTTP (`/mcp/<name>` in `intentproof
//! serve`): the official Python client driving server-everything through it
//! gets exactly what it gets talking to the server directly, and every call
//! is recorded.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{BIN, Stopped, cli_json, required_env};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn transcript(python: &Path, args: &[&str]) -> String {
    let output = Command::new(python)
        .arg(repo().join("tests/mcp/transcript.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "transcript.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn http_gateway_is_transparent_and_records_every_call() {
    let python = required_env("INTENTPROOF_TEST_PYTHON");
    let everything = required_env("INTENTPROOF_TEST_NODE_EVERYTHING");
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let config = temp.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n\n[[mcp.servers]]\nname = \"everything\"\ncommand = [\"node\", {:?}, \"stdio\"]\n",
            data.display().to_string(),
            everything.display().to_string()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(temp.path().join("daemon.log")).unwrap();
    let daemon = Stopped(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let listen = loop {
        if let Ok(text) = std::fs::read_to_string(data.join("daemon.json")) {
            let info: serde_json::Value = serde_json::from_str(&text).unwrap();
            break info["listen"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let url = format!("http://{listen}/mcp/everything");

    let direct = transcript(
        &python,
        &["stdio", "--", "node", everything.to_str().unwrap(), "stdio"],
    );
    let through = transcript(
        &python,
        &["--extra-tool", "intentproof_declare_plan", "http", &url],
    );
    if direct != through {
        let a = temp.path().join("direct.json");
        let b = temp.path().join("gateway.json");
        std::fs::write(&a, &direct).unwrap();
        std::fs::write(&b, &through).unwrap();
        let diff = Command::new("diff")
            .arg("-u")
            .arg(&a)
            .arg(&b)
            .output()
            .unwrap();
        panic!(
            "the gateway changed what the client sees:\n{}",
            String::from_utf8_lossy(&diff.stdout)
        );
    }

    // Every call the transcript made is one event, in one verified chain.
    let chains = cli_json(&["chains"], &data);
    let chains = chains["chains"].as_array().unwrap();
    assert_eq!(chains.len(), 1, "{chains:?}");
    assert_eq!(chains[0]["verified"], true);
    let correlation = chains[0]["correlation_id"].as_str().unwrap();
    let events = cli_json(&["events", "--correlation", correlation], &data);
    let rows: Vec<(String, String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let e = &row["event"];
            (
                e["action"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
                e["intent"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("mcp.everything.echo", "ok"),
        ("mcp.everything.get-sum", "ok"),
        ("mcp.everything.resource.read", "ok"),
        ("mcp.everything.prompt.get", "ok"),
        ("mcp.everything.trigger-long-running-operation", "ok"),
        ("mcp.everything.trigger-long-running-operation", "error"),
        ("mcp.everything.trigger-sampling-request", "ok"),
        ("mcp.everything.trigger-elicitation-request", "ok"),
        ("mcp.everything.get-roots-list", "ok"),
    ]
    .iter()
    .map(|(a, s)| (a.to_string(), s.to_string(), "undeclared".to_string()))
    .collect();
    assert_eq!(rows, expected);
    let echo = &events["events"][0]["event"];
    assert_eq!(echo["inputs"], serde_json::json!({"message": "hello"}));
    assert_eq!(echo["output"]["content"][0]["text"], "Echo: hello");
    assert_eq!(echo["attributes"]["mcp.server"], "everything");
    assert_eq!(
        echo["attributes"]["mcp.client.name"],
        "intentproof-mcp-transcript"
    );
    let cancelled = &events["events"][5]["event"];
    assert_eq!(cancelled["error"]["name"], "Cancelled");
    drop(daemon);
}
