//! The MCP gateway over Streamable HTTP (`/mcp/<name>` in `intentproof
//! serve`): the official Python client driving server-everything through it
//! gets exactly what it gets talking to the server directly, and every call
//! is recorded.

use std::process::{Command, Stdio};

mod common;

use common::{
    BIN, Stopped, assert_same_transcript, assert_transcript_recorded, daemon_listen, required_env,
    transcript,
};

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
    let listen = daemon_listen(&data);
    let url = format!("http://{listen}/mcp/everything");

    let direct = transcript(
        &python,
        &["stdio", "--", "node", everything.to_str().unwrap(), "stdio"],
    );
    let through = transcript(
        &python,
        &["--extra-tool", "intentproof_declare_plan", "http", &url],
    );
    assert_same_transcript(temp.path(), &direct, &through);

    // Every call the transcript made is one event, in one verified chain.
    let (_, events) = assert_transcript_recorded(&data, "everything");
    let echo = &events["events"][0]["event"];
    assert_eq!(echo["inputs"], serde_json::json!({"message": "hello"}));
    assert_eq!(echo["output"]["content"][0]["text"], "Echo: hello");
    assert_eq!(echo["attributes"]["mcp.server"], "everything");
    assert_eq!(
        echo["attributes"]["mcp.client.name"],
        "intentproof-mcp-transcript"
    );
    drop(daemon);
}
