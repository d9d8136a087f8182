//! `intentproof mcp [--name NAME] -- <command> [args...]`: the agent starts
//! this instead of the MCP server; it starts the server, relays stdio both
//! ways, and records every call.
//!
//! Stdout belongs to the protocol: only messages go there; logs go to
//! stderr. A line the upstream writes to stdout that is not JSON is reported
//! on stderr and dropped (forwarding it would break the agent's parser).

use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use super::recorder::{ClientVerdict, Recorder, RecorderConfig};
use crate::sink::StdioSink;

/// How long the upstream may take to exit after the agent closed stdin.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

async fn sleep_until_or_never(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The agent's side of stdin: read by the runtime itself when it is a
/// pipe (what agents give MCP servers), else through tokio's blocking
/// `stdin` (a terminal, a file). A pipe read in place saves a hop to the
/// blocking pool and back for every message, which on 2 cores was most of
/// the relay's added latency (BENCHMARKS.md).
fn agent_input() -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    use std::os::fd::AsFd;
    let pipe = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(tokio::net::unix::pipe::Receiver::from_owned_fd);
    match pipe {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdin()),
    }
}

/// The agent's side of stdout, as [`agent_input`].
fn agent_output() -> Box<dyn tokio::io::AsyncWrite + Unpin + Send> {
    use std::os::fd::AsFd;
    let pipe = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .and_then(tokio::net::unix::pipe::Sender::from_owned_fd);
    match pipe {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdout()),
    }
}

/// Largest message accepted on either side.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Options of one stdio gateway process.
#[derive(Debug, Clone)]
pub struct StdioOptions {
    /// Recording settings (server name, plan tool, default intents).
    pub recorder: RecorderConfig,
    /// The upstream command and its arguments.
    pub command: Vec<String>,
    /// Refuse a call unless its "started" marker is on disk first.
    pub fail_closed: bool,
}

fn frame_error(side: &str, e: &LinesCodecError) -> String {
    match e {
        LinesCodecError::MaxLineLengthExceeded => {
            format!("{side} sent a message longer than {MAX_MESSAGE_BYTES} bytes")
        }
        LinesCodecError::Io(e) => format!("reading from {side} failed: {e}"),
    }
}

/// Runs the gateway until the agent closes stdin or the upstream exits.
/// Returns the process exit code.
pub async fn run<S: StdioSink>(options: StdioOptions, shipper: S) -> Result<i32, String> {
    let (program, args) = options
        .command
        .split_first()
        .ok_or("no upstream command: use `intentproof mcp -- <command> [args...]`")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the upstream MCP server `{program}`: {e}"))?;
    let (Some(mut upstream_in), Some(upstream_out)) = (child.stdin.take(), child.stdout.take())
    else {
        return Err("the upstream's stdio could not be captured".into());
    };
    let mut from_agent = FramedRead::new(
        agent_input(),
        LinesCodec::new_with_max_length(MAX_MESSAGE_BYTES),
    );
    let mut from_upstream = FramedRead::new(
        upstream_out,
        LinesCodec::new_with_max_length(MAX_MESSAGE_BYTES),
    );
    let mut to_agent = agent_output();
    let session_id = intentproof_core::new_event_id();
    let mut recorder = Recorder::new(options.recorder.clone(), session_id);
    let mut events = Vec::new();
    let mut agent_open = true;
    // Once the agent is gone the upstream gets this long to exit by itself.
    let mut grace: Option<tokio::time::Instant> = None;
    let exit_code;

    loop {
        tokio::select! {
            line = from_agent.next(), if agent_open => match line {
                Some(Ok(line)) => {
                    let parsed = serde_json::from_str::<Value>(&line).ok();
                    let verdict = match &parsed {
                        Some(message) => recorder.on_client(message, &mut events),
                        // Not ours to judge: the upstream answers it.
                        None => ClientVerdict::Forward,
                    };
                    let written = match verdict {
                        ClientVerdict::Forward => {
                            match fail_closed_check(options.fail_closed, parsed.as_ref(), &mut recorder, &shipper).await {
                                Ok(()) => write_line(&mut upstream_in, &line).await,
                                Err(refusal) => write_line(&mut to_agent, &refusal.to_string()).await,
                            }
                        }
                        ClientVerdict::Reply(reply) => write_line(&mut to_agent, &reply.to_string()).await,
                    };
                    if let Err(e) = written {
                        tracing::error!(error = %e, "cannot write to the upstream");
                    }
                }
                Some(Err(e)) => {
                    tracing::error!("{}", frame_error("the agent", &e));
                    recorder.on_session_end(&mut events);
                    agent_open = false;
                    grace = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                    drop_stdin(&mut upstream_in).await;
                }
                None => {
                    // The agent is done: let the upstream finish and exit.
                    // Calls it left waiting for its input end here.
                    recorder.on_session_end(&mut events);
                    agent_open = false;
                    grace = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                    drop_stdin(&mut upstream_in).await;
                }
            },
            _ = sleep_until_or_never(grace) => {
                // Many servers do not exit on stdin EOF: stop it.
                let _ = child.start_kill();
                grace = None;
            },
            line = from_upstream.next() => match line {
                Some(Ok(line)) => match serde_json::from_str::<Value>(&line) {
                    Ok(message) => {
                        let out = recorder.on_server(&message, &mut events);
                        let text = out.map(|m| m.to_string());
                        if let Err(e) = write_line(&mut to_agent, text.as_deref().unwrap_or(&line)).await {
                            tracing::error!(error = %e, "cannot write to the agent");
                        }
                    }
                    Err(_) => {
                        let shown: String = line.chars().take(200).collect();
                        tracing::warn!(server = %options.recorder.server, line = %shown, "the upstream wrote a line to stdout that is not a JSON-RPC message; dropped (servers must log to stderr)");
                    }
                },
                Some(Err(e)) => {
                    tracing::warn!(server = %options.recorder.server, "{}; the message was dropped", frame_error("the upstream", &e));
                }
                None => {
                    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                    let described = match &status {
                        Ok(Ok(s)) => s.to_string(),
                        _ => "closed its stdout".to_owned(),
                    };
                    let reason = format!(
                        "upstream MCP server `{program}` ({}) {described} before answering; check its stderr",
                        options.recorder.server
                    );
                    for reply in recorder.on_upstream_gone(&reason, &mut events) {
                        let _ = write_line(&mut to_agent, &reply.to_string()).await;
                    }
                    if agent_open {
                        tracing::error!("{reason}");
                    }
                    exit_code = match status {
                        Ok(Ok(s)) if s.success() => 0,
                        // Stopped by us after the agent left: a normal end.
                        _ if !agent_open => 0,
                        _ => 1,
                    };
                    break;
                }
            },
        }
        for event in events.drain(..) {
            shipper.send(event);
        }
    }
    // Nothing more can continue: the upstream is gone.
    recorder.on_session_end(&mut events);
    for event in events.drain(..) {
        shipper.send(event);
    }
    let left = shipper.finish(Duration::from_secs(10)).await;
    if left > 0 {
        tracing::warn!(
            events = left,
            "the daemon did not take every event before exit; they stay in the spool and are delivered later"
        );
    }
    Ok(exit_code)
}

/// Fail-closed mode: a recorded call is forwarded only once its "started"
/// marker is sealed and fsync'd; otherwise the agent gets this JSON-RPC
/// error and the call is not made.
async fn fail_closed_check<S: StdioSink>(
    fail_closed: bool,
    message: Option<&Value>,
    recorder: &mut Recorder,
    shipper: &S,
) -> Result<(), Value> {
    let (true, Some(message)) = (fail_closed, message) else {
        return Ok(());
    };
    let Some(marker) = recorder.started_marker(message) else {
        return Ok(());
    };
    match shipper.send_durable(marker).await {
        Ok(()) => Ok(()),
        Err(reason) => {
            recorder.abandon(message);
            Err(serde_json::json!({
                "jsonrpc": "2.0",
                "id": message.get("id").cloned().unwrap_or(Value::Null),
                "error": {"code": -32001, "message": format!(
                    "IntentProof could not record this call durably ({reason}), so it was not made (fail-closed mode); check the data dir's disk and permissions, or run without --fail-closed"
                )}
            }))
        }
    }
}

async fn write_line<W: AsyncWriteExt + Unpin>(writer: &mut W, line: &str) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    writer.write_all(&bytes).await?;
    writer.flush().await
}

async fn drop_stdin(stdin: &mut tokio::process::ChildStdin) {
    let _ = stdin.shutdown().await;
}
