//! The MCP gateway in front of a remote Streamable HTTP server
//! (`[[mcp.servers]] url = ...`): server-everything in its `streamableHttp`
//! mode behind `intentproof serve`, driven by the official Python client
//! (tests/mcp/transcript.py). The client gets exactly what it gets talking
//! to the server directly (progress, cancellation, sampling, elicitation,
//! roots included), every call is recorded, the credential header never
//! reaches the log or the store, and each agent session is its own
//! upstream session, ended when the agent ends it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{
    BIN, Stopped, assert_same_transcript, assert_transcript_recorded, daemon_listen, required_env,
    transcript, workspace_root,
};

const SECRET: &str = "sk_remote_TRANSCRIPT_SECRET_51ab";

/// server-everything (`streamableHttp`, 127.0.0.1 via loopback.mjs) on a
/// free port; its stdout, which names every session, goes to `log`.
fn start_everything(entry: &Path, log: &Path) -> (Stopped, u16) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut server = Stopped(
        Command::new("node")
            .arg("--import")
            .arg(workspace_root().join("tests/mcp/loopback.mjs"))
            .arg(entry)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run node; install Node.js (./scripts/test says how)"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("server-everything exited with {status} before listening");
        }
        assert!(
            Instant::now() < deadline,
            "server-everything did not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}

fn lines_with(log: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(str::to_owned)
        .collect()
}

fn all_text(dir: &Path) -> String {
    let mut text = String::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    text
}

#[test]
fn a_remote_streamable_http_upstream_is_transparent_and_every_call_is_recorded() {
    let python = required_env("INTENTPROOF_TEST_PYTHON");
    let everything = required_env("INTENTPROOF_TEST_NODE_EVERYTHING");
    let temp = tempfile::tempdir().unwrap();
    let upstream_log = temp.path().join("everything.log");
    let (server, port) = start_everything(&everything, &upstream_log);
    let upstream = format!("http://127.0.0.1:{port}/mcp");

    let data = temp.path().join("data");
    let config = temp.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n\n[[mcp.servers]]\nname = \"remote\"\nurl = {upstream:?}\nheaders = {{ Authorization = \"Bearer {SECRET}\" }}\n",
            data.display().to_string(),
        ),
    )
    .unwrap();
    let daemon_log = temp.path().join("daemon.log");
    let daemon = Stopped(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&daemon_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let listen = daemon_listen(&data);

    let direct = transcript(&python, &["http", &upstream]);
    let through = transcript(
        &python,
        &[
            "--extra-tool",
            "intentproof_declare_plan",
            "http",
            &format!("http://{listen}/mcp/remote"),
        ],
    );
    assert_same_transcript(temp.path(), &direct, &through);

    // Two client sessions (direct, through the gateway): two upstream
    // sessions, each ended by a DELETE (the gateway forwards the client's).
    let deadline = Instant::now() + Duration::from_secs(10);
    let started = lines_with(&upstream_log, "Session initialized with ID: ");
    assert_eq!(started.len(), 2, "{started:?}");
    loop {
        let ended = lines_with(
            &upstream_log,
            "Received session termination request for session ",
        );
        if ended.len() == 2 {
            assert_eq!(ended, started);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "upstream sessions not all ended: {ended:?} of {started:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Every call the transcript made is one event, in one verified chain.
    let (correlation, events) = assert_transcript_recorded(&data, "remote");
    let echo = &events["events"][0]["event"];
    assert_eq!(echo["inputs"], serde_json::json!({"message": "hello"}));
    assert_eq!(
        echo["output"],
        serde_json::json!({"content": [{"type": "text", "text": "Echo: hello"}]})
    );
    assert_eq!(echo["attributes"]["mcp.server"], "remote");
    assert_eq!(echo["attributes"]["mcp.session_id"], correlation);
    assert_eq!(
        echo["attributes"]["mcp.client.name"],
        "intentproof-mcp-transcript"
    );

    drop(daemon);
    drop(server);
    // The credential went upstream only: not in the (debug) log, not stored.
    let log = std::fs::read_to_string(&daemon_log).unwrap();
    assert!(!log.contains(SECRET), "the daemon log holds the credential");
    assert!(
        !all_text(&data).contains(SECRET),
        "the data dir holds the credential"
    );
}
