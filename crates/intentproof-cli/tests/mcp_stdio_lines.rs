//! `intentproof mcp -- <command>` survives bad lines from either side: a
//! line that is not UTF-8, or is longer than the 64 MiB limit, is dropped,
//! the log (stderr) names the side and the size, a request whose line was
//! dropped gets its JSON-RPC error (an answer that was dropped is replaced
//! by one), and the session goes on: the next call gets its exact answer,
//! and closing stdin still ends the session cleanly (exit 0).
//!
//! The upstream is [`UPSTREAM`], a few lines of Python run with `python3`
//! (which `./scripts/test` requires). The 65 MiB lines are streamed in
//! 1 MiB pieces on both sides, never held whole.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

mod common;

use common::{BIN, Stopped, clean_env};
use serde_json::{Value, json};

/// A bound on things that take (milli)seconds, never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(120);
/// The relay's limit (`intentproof_mcp::stdio::MAX_MESSAGE_BYTES`).
const LIMIT: usize = 64 * 1024 * 1024;
/// The size of the filler in an oversize line: 65 MiB.
const HUGE: usize = 65 * 1024 * 1024;
const PIECE: usize = 1024 * 1024;

/// A stdio MCP upstream that answers `tools/call` only:
/// - `echo {message}`: `Echo: <message> (line N)`, N the number of lines
///   it has read (so a dropped client line, which never reaches it, shows);
/// - `bad_utf8`: an answer whose text holds the byte 0xff;
/// - `huge`: an answer with a 65 MiB text, its id last (as the TypeScript
///   SDK writes answers), written in 1 MiB pieces.
const UPSTREAM: &str = r#"
import json, sys
out = sys.stdout.buffer
def send(data):
    out.write(data)
    out.flush()
seen = 0
for raw in sys.stdin.buffer:
    seen += 1
    message = json.loads(raw)
    rid, params = message["id"], message["params"]
    tool = params["name"]
    if tool == "echo":
        text = "Echo: %s (line %d)" % (params["arguments"]["message"], seen)
        answer = {"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": text}]}}
        send(json.dumps(answer, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
    elif tool == "bad_utf8":
        send(b'{"jsonrpc":"2.0","id":%d,"result":{"content":[{"type":"text","text":"\xff"}]}}\n' % rid)
    elif tool == "huge":
        send(b'{"result":{"content":[{"type":"text","text":"')
        piece = b"a" * int(sys.argv[2])
        for _ in range(int(sys.argv[1]) // len(piece)):
            out.write(piece)
        send(b'"}]},"jsonrpc":"2.0","id":%d}\n' % rid)
"#;

/// The upstream's `bad_utf8` answer to id 1, as it writes it.
const BAD_UTF8_ANSWER: &[u8] =
    b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"\xff\"}]}}";
/// The upstream's `huge` answer to id 1 around its filler.
const HUGE_ANSWER: (&str, &str) = (
    r#"{"result":{"content":[{"type":"text","text":""#,
    r#""}]},"jsonrpc":"2.0","id":1}"#,
);
/// A client request with a 65 MiB message, around its filler.
const HUGE_REQUEST: (&str, &str) = (
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":""#,
    r#""}}}"#,
);

/// `intentproof mcp` over [`UPSTREAM`], driven by the test as its client.
struct Session {
    gateway: Stopped,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Session {
    fn start() -> Session {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("gateway.stderr");
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd);
        let mut gateway = Stopped(
            cmd.args(["mcp", "--name", "lines", "--no-autostart", "--data-dir"])
                .arg(dir.path().join("data"))
                .args(["--", "python3", "-c", UPSTREAM])
                .args([HUGE.to_string(), PIECE.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&stderr).unwrap())
                .spawn()
                .unwrap(),
        );
        let stdout = gateway.0.stdout.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Session {
            stdin: gateway.0.stdin.take(),
            gateway,
            lines,
            stderr,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }

    fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// The next line the gateway writes to its stdout, as JSON.
    fn next(&self) -> Value {
        let line = self.lines.recv_timeout(DEADLINE).unwrap_or_else(|e| {
            panic!("no line from the gateway ({e}); stderr:\n{}", self.stderr())
        });
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    fn call(&mut self, id: u64, tool: &str, arguments: Value) -> Value {
        let request = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}});
        self.write(format!("{request}\n").as_bytes());
        self.next()
    }

    /// Closes stdin; the session must end by itself, with status 0, and
    /// without taking anything for the upstream's end.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.gateway.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the gateway did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = self.stderr();
        assert!(status.success(), "exit {status}; stderr:\n{stderr}");
        assert!(!stderr.contains("closed its stdout"), "{stderr}");
        assert!(!stderr.contains("before answering"), "{stderr}");
        stderr
    }
}

fn echoed(id: u64, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}]}})
}

fn error(id: u64, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Writes `head`, `size` bytes of `a` in 1 MiB pieces, `tail` and a newline.
fn write_huge_line(session: &mut Session, (head, tail): (&str, &str), size: usize) {
    session.write(head.as_bytes());
    let piece = vec![b'a'; PIECE];
    for _ in 0..size / PIECE {
        session.write(&piece);
    }
    session.write(format!("{tail}\n").as_bytes());
}

fn assert_logged(stderr: &str, message: &str) {
    assert!(
        stderr.contains(message),
        "stderr does not say:\n{message}\nstderr:\n{stderr}"
    );
}

#[test]
fn a_client_line_that_is_not_utf8_is_answered_with_an_error_and_the_session_goes_on() {
    let mut session = Session::start();
    // A notification has no id: dropped, nothing answered.
    let notification: &[u8] =
        b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\",\"params\":{\"s\":\"\xc3\"}}";
    session.write(&[notification, b"\n"].concat());
    let request: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"message\":\"caf\xe9\"}}}";
    session.write(&[request, b"\n"].concat());
    let offset = request.iter().position(|b| *b == 0xe9).unwrap();
    let problem = format!(
        "it is not valid UTF-8 ({} bytes, first invalid byte at offset {offset}); JSON-RPC messages must be UTF-8",
        request.len()
    );
    // The very next line is the error: nothing was answered for the
    // notification.
    assert_eq!(
        session.next(),
        error(
            1,
            -32700,
            &format!("IntentProof dropped this request: {problem}")
        )
    );
    assert_eq!(
        session.call(2, "echo", json!({"message": "café"})),
        echoed(2, "Echo: café (line 1)")
    );
    let stderr = session.finish();
    assert_logged(
        &stderr,
        &format!(
            "the client sent a line that was dropped: it is not valid UTF-8 ({} bytes, first invalid byte at offset {}); JSON-RPC messages must be UTF-8; no JSON-RPC id could be read from it, so no error was sent",
            notification.len(),
            notification.iter().position(|b| *b == 0xc3).unwrap()
        ),
    );
    assert_logged(
        &stderr,
        &format!(
            "the client sent a line that was dropped: {problem}; request id 1 was answered with a JSON-RPC error"
        ),
    );
}

#[test]
fn an_upstream_answer_that_is_not_utf8_becomes_an_error_and_the_session_goes_on() {
    let mut session = Session::start();
    let offset = BAD_UTF8_ANSWER.iter().position(|b| *b == 0xff).unwrap();
    let problem = format!(
        "it is not valid UTF-8 ({} bytes, first invalid byte at offset {offset}); JSON-RPC messages must be UTF-8",
        BAD_UTF8_ANSWER.len()
    );
    assert_eq!(
        session.call(1, "bad_utf8", json!({})),
        error(
            1,
            -32603,
            &format!("IntentProof dropped the upstream's answer to this request: {problem}")
        )
    );
    assert_eq!(
        session.call(2, "echo", json!({"message": "after"})),
        echoed(2, "Echo: after (line 2)")
    );
    let stderr = session.finish();
    assert_logged(
        &stderr,
        &format!(
            "the upstream sent a line that was dropped: {problem}; id 1 got a JSON-RPC error in its place"
        ),
    );
}

#[test]
fn a_65_mib_client_line_is_answered_with_an_error_and_the_session_goes_on() {
    let mut session = Session::start();
    write_huge_line(&mut session, HUGE_REQUEST, HUGE);
    let size = HUGE_REQUEST.0.len() + HUGE + HUGE_REQUEST.1.len();
    let problem = format!("it is longer than the {LIMIT}-byte limit ({size} bytes)");
    assert_eq!(
        session.next(),
        error(
            1,
            -32600,
            &format!("IntentProof dropped this request: {problem}")
        )
    );
    assert_eq!(
        session.call(2, "echo", json!({"message": "small"})),
        echoed(2, "Echo: small (line 1)")
    );
    let stderr = session.finish();
    assert_logged(
        &stderr,
        &format!(
            "the client sent a line that was dropped: {problem}; request id 1 was answered with a JSON-RPC error"
        ),
    );
}

#[test]
fn a_65_mib_upstream_answer_becomes_an_error_and_the_session_goes_on() {
    let mut session = Session::start();
    let size = HUGE_ANSWER.0.len() + HUGE + HUGE_ANSWER.1.len();
    let problem = format!("it is longer than the {LIMIT}-byte limit ({size} bytes)");
    assert_eq!(
        session.call(1, "huge", json!({})),
        error(
            1,
            -32603,
            &format!("IntentProof dropped the upstream's answer to this request: {problem}")
        )
    );
    assert_eq!(
        session.call(2, "echo", json!({"message": "small"})),
        echoed(2, "Echo: small (line 2)")
    );
    let stderr = session.finish();
    assert_logged(
        &stderr,
        &format!(
            "the upstream sent a line that was dropped: {problem}; id 1 got a JSON-RPC error in its place"
        ),
    );
}
