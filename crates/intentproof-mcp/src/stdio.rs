//! `intentproof mcp [--name NAME] -- <command> [args...]`: the agent starts
//! this instead of the MCP server; it starts the server, relays stdio both
//! ways, and records every call.
//!
//! Stdout belongs to the protocol: only messages go there; logs go to
//! stderr. A line the upstream writes to stdout that is not JSON is reported
//! on stderr and dropped (forwarding it would break the agent's parser).
//!
//! A line from either side that is not UTF-8 or is longer than
//! [`MAX_MESSAGE_BYTES`] is dropped too (framing in [`crate::lines`]) and
//! the session goes on: the log names the side and the size, and when the
//! line's id can be read, the peer waiting on it gets a JSON-RPC error (the
//! sender of a dropped request, the receiver of a dropped answer). Only the
//! end of a side's input is taken for its end.

use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use intentproof_core::ExecutionEvent;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStdin, Command};
use tokio_util::codec::FramedRead;

use super::lines::{Answer, Line, LineCodec, Side};
use super::recorder::{ClientVerdict, Held, Recorder, RecorderConfig};
use crate::approver::{Approver, ask_with_progress};
use crate::sink::StdioSink;
use intentproof_policy::guard::approval::Outcome;
use std::sync::Arc;
use tokio::sync::mpsc;

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

/// Largest message accepted on either side (a longer line is dropped, and
/// discarded as it arrives rather than buffered).
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
    let mut from_agent = FramedRead::new(agent_input(), LineCodec::new(MAX_MESSAGE_BYTES));
    let mut from_upstream = FramedRead::new(upstream_out, LineCodec::new(MAX_MESSAGE_BYTES));
    let mut to_agent = agent_output();
    let session_id = intentproof_core::new_event_id();
    let mut recorder = Recorder::new(options.recorder.clone(), session_id);
    let mut events = Vec::new();
    // Held calls report here (progress, then the decision); the session
    // goes on meanwhile. Bounded: at most MAX_HELD calls wait at once.
    let (hold_news, mut held) = mpsc::channel::<HoldNews>(256);
    let mut agent_open = true;
    // Once the agent is gone the upstream gets this long to exit by itself.
    let mut grace: Option<tokio::time::Instant> = None;
    let exit_code;

    loop {
        tokio::select! {
            line = from_agent.next(), if agent_open => match line {
                Some(Ok(Line::Text(line))) => {
                    client_message(&line, &options, &mut recorder, &shipper, &mut upstream_in, &mut to_agent, &mut events, &hold_news).await;
                }
                Some(Ok(Line::Dropped(dropped))) => {
                    let answer = dropped.answer(Side::Client);
                    tracing::warn!(server = %options.recorder.server, "{}", dropped.describe(Side::Client, answer.is_some()));
                    match answer {
                        Some(Answer::ToSender(error)) => {
                            if let Err(e) = write_line(&mut to_agent, &error.to_string()).await {
                                tracing::error!(error = %e, "cannot write to the agent");
                            }
                        }
                        // The client's answer to a server request: the
                        // upstream gets an error in its place, observed
                        // like the answer would have been.
                        Some(Answer::InPlace(error)) => {
                            client_message(&error.to_string(), &options, &mut recorder, &shipper, &mut upstream_in, &mut to_agent, &mut events, &hold_news).await;
                        }
                        None => {}
                    }
                }
                Some(Err(e)) => {
                    // A failed read (not a bad line): nothing more can come.
                    tracing::error!(error = %e, "reading from the client failed; ending the session as if it closed its input");
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
            Some(news) = held.recv() => match news {
                HoldNews::Progress(notice) => {
                    if let Err(e) = write_line(&mut to_agent, &notice.to_string()).await {
                        tracing::error!(error = %e, "cannot write to the agent");
                    }
                }
                HoldNews::Decided { id, line, outcome } => {
                    let verdict = recorder.resolve_hold(&id, &outcome, &mut events);
                    let parsed = serde_json::from_str::<Value>(&line).ok();
                    let written = match verdict {
                        Some(ClientVerdict::Forward) => {
                            match fail_closed_check(options.fail_closed, parsed.as_ref(), &mut recorder, &shipper).await {
                                Ok(()) => write_line(&mut upstream_in, &line).await,
                                Err(refusal) => write_line(&mut to_agent, &refusal.to_string()).await,
                            }
                        }
                        Some(ClientVerdict::Reply(reply)) => write_line(&mut to_agent, &reply.to_string()).await,
                        _ => Ok(()),
                    };
                    if let Err(e) = written {
                        tracing::error!(error = %e, "cannot write a held call's outcome");
                    }
                }
            },
            _ = sleep_until_or_never(grace) => {
                // Many servers do not exit on stdin EOF: stop it.
                let _ = child.start_kill();
                grace = None;
            },
            line = from_upstream.next() => match line {
                Some(Ok(Line::Text(line))) => match serde_json::from_str::<Value>(&line) {
                    Ok(message) => server_message(&message, &line, &mut recorder, &mut to_agent, &mut events).await,
                    Err(_) => {
                        let shown: String = line.chars().take(200).collect();
                        tracing::warn!(server = %options.recorder.server, line = %shown, "the upstream wrote a line to stdout that is not a JSON-RPC message; dropped (servers must log to stderr)");
                    }
                },
                Some(Ok(Line::Dropped(dropped))) => {
                    let answer = dropped.answer(Side::Upstream);
                    tracing::warn!(server = %options.recorder.server, "{}", dropped.describe(Side::Upstream, answer.is_some()));
                    match answer {
                        // A server request (sampling, elicitation): the
                        // upstream is told it never reached the client.
                        Some(Answer::ToSender(error)) => {
                            if let Err(e) = write_line(&mut upstream_in, &error.to_string()).await {
                                tracing::error!(error = %e, "cannot write to the upstream");
                            }
                        }
                        // An answer: the agent gets an error in its place,
                        // and the call is recorded with it.
                        Some(Answer::InPlace(error)) => {
                            server_message(&error, &error.to_string(), &mut recorder, &mut to_agent, &mut events).await;
                        }
                        None => {}
                    }
                }
                Some(Err(e)) => {
                    // A failed read ends the stream: what follows is the
                    // upstream's end (below).
                    tracing::error!(server = %options.recorder.server, error = %e, "reading from the upstream failed");
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

/// What a held call's waiting task tells the session.
enum HoldNews {
    /// A progress notification for the agent.
    Progress(Value),
    /// The decision on the call `id` (its message: `line`).
    Decided {
        id: Value,
        line: String,
        outcome: Outcome,
    },
}

/// Asks the approver about a held call, tells the agent it waits (when it
/// asked for progress), and reports the decision to the session.
fn wait_for_decision(
    approver: Arc<dyn Approver>,
    held: Held,
    line: String,
    news: mpsc::Sender<HoldNews>,
) {
    tokio::spawn(async move {
        let outcome = ask_with_progress(
            approver.as_ref(),
            &held.request,
            held.progress_token.as_ref(),
            // A notice that finds the session busy is dropped: the next
            // one says the same.
            |notice| drop(news.try_send(HoldNews::Progress(notice))),
        )
        .await;
        let _ = news
            .send(HoldNews::Decided {
                id: held.id,
                line,
                outcome,
            })
            .await;
    });
}

/// One message from the client: observed, then forwarded upstream,
/// answered by the gateway itself (the plan tool), held for a person's
/// approval, or refused (fail-closed). A line that is not JSON is
/// forwarded as it is: the upstream answers it.
#[allow(clippy::too_many_arguments)]
async fn client_message<S: StdioSink, W: AsyncWriteExt + Unpin>(
    line: &str,
    options: &StdioOptions,
    recorder: &mut Recorder,
    shipper: &S,
    upstream_in: &mut ChildStdin,
    to_agent: &mut W,
    events: &mut Vec<ExecutionEvent>,
    hold_news: &mpsc::Sender<HoldNews>,
) {
    let parsed = serde_json::from_str::<Value>(line).ok();
    let verdict = match &parsed {
        Some(message) => recorder.on_client(message, events),
        None => ClientVerdict::Forward,
    };
    let written = match verdict {
        ClientVerdict::Forward => {
            match fail_closed_check(options.fail_closed, parsed.as_ref(), recorder, shipper).await {
                Ok(()) => write_line(upstream_in, line).await,
                Err(refusal) => write_line(to_agent, &refusal.to_string()).await,
            }
        }
        ClientVerdict::Reply(reply) => write_line(to_agent, &reply.to_string()).await,
        ClientVerdict::Hold(held) => {
            wait_for_decision(
                recorder.approver(),
                *held,
                line.to_owned(),
                hold_news.clone(),
            );
            Ok(())
        }
    };
    if let Err(e) = written {
        tracing::error!(error = %e, "cannot write to the upstream");
    }
}

/// One message from the upstream (`line` is its text): observed, then
/// sent to the agent as it came, or as the recorder changed it.
async fn server_message<W: AsyncWriteExt + Unpin>(
    message: &Value,
    line: &str,
    recorder: &mut Recorder,
    to_agent: &mut W,
    events: &mut Vec<ExecutionEvent>,
) {
    let out = recorder.on_server(message, events);
    let text = out.map(|m| m.to_string());
    if let Err(e) = write_line(to_agent, text.as_deref().unwrap_or(line)).await {
        tracing::error!(error = %e, "cannot write to the agent");
    }
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
