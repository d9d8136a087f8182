//! `intentproof demo`: the whole product in one minute, with no network and
//! no setup.
//!
//! It starts a daemon on a free loopback port in a fresh data dir, runs the
//! built-in payments MCP server (`intentproof demo-server`) behind the stdio
//! gateway (`intentproof mcp`, a real child process, exactly as an agent app
//! would start it), and drives it with a scripted agent that declares the
//! plan "refund order ORD-1042 and email the receipt", refunds, skips the
//! receipt and disconnects, which closes the plan. Then it shows the chain,
//! the flagged incomplete intent, exports a proof bundle and verifies it
//! offline.
//!
//! The data dir is kept so the user can browse it afterwards
//! (`intentproof tui --data-dir ...`). The demo never touches
//! `~/.intentproof` unless `--data-dir` points there.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use intentproof_api::wire;
use intentproof_gateway::{Config, Daemon};
use serde_json::{Value, json};

use crate::daemon::{Client, ClientArgs, write_atomically};

/// `intentproof demo` flags.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Run start to end without waiting for Enter between steps (CI uses this).
    /// Also the behaviour when stdin is not a terminal.
    #[arg(long)]
    pub non_interactive: bool,
    /// Data directory to use [default: a new directory under the system temp dir].
    /// It must not hold a running daemon's store.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// The order the scripted agent refunds.
const ORDER: &str = "ORD-1042";
/// The exporter's (the daemon's) public key, PEM, in the data dir: what
/// `verify --key` is given.
const EXPORTER_KEY_FILE: &str = "exporter.pem";
/// The plan the scripted agent declares.
const INTENT: &str = "refund order ORD-1042 and email the receipt";

/// Terminal styling; plain text when stdout is not a terminal or `NO_COLOR` is set.
struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }
    fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }
    fn good(&self, text: &str) -> String {
        self.paint("32", text)
    }
    fn bad(&self, text: &str) -> String {
        self.paint("1;31", text)
    }
    fn step(&self, n: usize, title: &str) {
        println!(
            "\n{} {}",
            self.paint("1;36", &format!("[{n}/6]")),
            self.bold(title)
        );
    }
}

/// A scripted MCP agent speaking newline-delimited JSON-RPC to the gateway
/// on its stdin/stdout.
struct ScriptedAgent {
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl ScriptedAgent {
    /// Sends one request and returns its `result`, or the JSON-RPC error as an error.
    fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("the agent already hung up"))?;
        writeln!(
            stdin,
            "{}",
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        )
        .and_then(|()| stdin.flush())
        .context("the gateway stopped reading (see gateway.log in the data dir)")?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line)? == 0 {
                bail!("the gateway closed its output (see gateway.log in the data dir)");
            }
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if message.get("id") != Some(&json!(id)) {
                continue; // a notification, or a server-to-client request the demo ignores
            }
            if let Some(error) = message.get("error") {
                bail!("{method} failed: {error}");
            }
            return Ok(message.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    fn notify(&mut self, method: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("the agent already hung up"))?;
        writeln!(stdin, "{}", json!({"jsonrpc": "2.0", "method": method}))?;
        Ok(stdin.flush()?)
    }

    fn call(&mut self, tool: &str, arguments: Value) -> Result<Value> {
        self.request("tools/call", json!({"name": tool, "arguments": arguments}))
    }

    /// Closes the session, as an agent app does on exit.
    fn hang_up(&mut self) {
        self.stdin = None;
    }
}

/// Runs the demo. Exit status 0 when every step worked and the bundle verified.
pub fn run(args: DemoArgs) -> Result<()> {
    let style = Style {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let interactive = !args.non_interactive && std::io::stdin().is_terminal();
    let dir = match args.data_dir {
        Some(dir) => dir,
        None => tempfile::Builder::new()
            .prefix("intentproof-demo-")
            .tempdir()
            .context("cannot create a temporary data dir")?
            .keep(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the intentproof executable")?;

    println!(
        "{}",
        style.bold("IntentProof demo: an agent promises two things and does one.")
    );
    println!(
        "{}",
        style.dim("Everything runs on this machine: a daemon, the MCP gateway, a demo payments server, a scripted agent.")
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let config = Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.clone(),
        ..Config::default()
    };
    let daemon = runtime
        .block_on(Daemon::start(config))
        .with_context(|| format!("cannot start the daemon on {}", dir.display()))?;
    let url = daemon.url();
    style.step(1, "Daemon started");
    println!(
        "  listening on {url} (loopback only), data dir {}",
        dir.display()
    );

    let command = command_for(&exe);
    let outcome = script(&style, interactive, &exe, &command, &dir, &url);
    let stopped = runtime.block_on(daemon.stop());
    let bundle = outcome?;
    stopped.context("the daemon did not stop cleanly")?;

    println!("\n{}", style.bold("Next:"));
    println!(
        "  {command} tui --data-dir {}      browse the chain and its flag",
        dir.display()
    );
    println!(
        "  {command} verify explain --key {} {}   what was intended, what ran, what is missing",
        dir.join(EXPORTER_KEY_FILE).display(),
        bundle.display()
    );
    Ok(())
}

/// How to run this binary again from the user's shell, for the lines the
/// demo suggests: `intentproof` when that name on `PATH` is this very
/// binary (it was installed); otherwise its own path, relative to the
/// working directory when under it, so that after the README's `cargo run
/// --release` they read `target/release/intentproof ...` and work before
/// `cargo install`.
fn command_for(exe: &Path) -> String {
    let exe = exe.canonicalize().unwrap_or_else(|_| exe.to_owned());
    let installed = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("intentproof"))
        .find(|candidate| candidate.is_file())
        .and_then(|found| found.canonicalize().ok())
        .is_some_and(|found| found == exe);
    if installed {
        return "intentproof".into();
    }
    let relative = std::env::current_dir()
        .and_then(|cwd| cwd.canonicalize())
        .ok()
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_path_buf))
        // A bare name would be looked up on PATH: `./intentproof`.
        .map(|relative| match relative.components().count() {
            1 => Path::new(".").join(relative),
            _ => relative,
        });
    let path = relative.unwrap_or(exe).display().to_string();
    if path.contains(|c: char| c.is_whitespace() || "'\"$`\\;&|<>()*?[]#~".contains(c)) {
        format!("'{}'", path.replace('\'', r"'\''"))
    } else {
        path
    }
}

fn pause(interactive: bool) -> Result<()> {
    if interactive {
        print!("  press Enter to go on ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
    }
    Ok(())
}

/// Steps 2 to 6; returns the bundle's path.
/// `command` is how the user runs this binary ([`command_for`]), for the
/// commands the demo shows.
fn script(
    style: &Style,
    interactive: bool,
    exe: &Path,
    command: &str,
    dir: &Path,
    url: &str,
) -> Result<PathBuf> {
    let log = std::fs::File::create(dir.join("gateway.log"))
        .with_context(|| format!("cannot create {}", dir.join("gateway.log").display()))?;
    let mut gateway = Command::new(exe)
        .arg("mcp")
        .args([
            "--name",
            "payments",
            "--no-autostart",
            "--server",
            url,
            "--data-dir",
        ])
        .arg(dir)
        .arg("--")
        .arg(exe)
        .arg("demo-server")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("cannot start the MCP gateway (intentproof mcp)")?;
    let outcome = drive(style, interactive, &mut gateway);
    if outcome.is_err() {
        let _ = gateway.kill();
    }
    let status = gateway.wait().context("waiting for the gateway")?;
    let plan = outcome?;
    if !status.success() {
        bail!(
            "the gateway exited with {status}; see {}",
            dir.join("gateway.log").display()
        );
    }
    report(style, interactive, command, dir, &plan)
}

/// The declared plan, as the gateway answered it.
struct DeclaredPlan {
    plan_id: String,
    correlation_id: String,
}

/// Steps 2 and 3: the agent's session through the gateway.
fn drive(style: &Style, interactive: bool, gateway: &mut Child) -> Result<DeclaredPlan> {
    let stdin = gateway.stdin.take().context("gateway stdin")?;
    let stdout = gateway.stdout.take().context("gateway stdout")?;
    let mut agent = ScriptedAgent {
        stdin: Some(stdin),
        stdout: BufReader::new(stdout),
        next_id: 0,
    };
    let init = agent.request(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "intentproof-demo-agent", "version": env!("CARGO_PKG_VERSION")}}),
    )?;
    agent.notify("notifications/initialized")?;
    let tools = agent.request("tools/list", json!({}))?;
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    style.step(2, "Agent connects through the MCP gateway");
    println!(
        "  server {} offers: {}",
        init["serverInfo"]["name"].as_str().unwrap_or("?"),
        names.join(", ")
    );
    println!(
        "  {}",
        style.dim("(intentproof_declare_plan is the one tool the gateway adds)")
    );
    pause(interactive)?;

    let declared = agent.call(
        "intentproof_declare_plan",
        json!({
            "intent": INTENT,
            "steps": [
                {"tool": "refund_payment", "purpose": "Refund the customer's card"},
                {"tool": "send_receipt_email", "purpose": "Email the customer the refund receipt"}
            ]
        }),
    )?;
    let plan = DeclaredPlan {
        plan_id: declared["structuredContent"]["plan_id"]
            .as_str()
            .context("the plan tool answered without a plan_id")?
            .to_owned(),
        correlation_id: declared["structuredContent"]["correlation_id"]
            .as_str()
            .context("the plan tool answered without a correlation_id")?
            .to_owned(),
    };
    style.step(3, "Agent declares its plan, then does half of it");
    println!("  intent: {}", style.bold(&format!("\"{INTENT}\"")));
    println!("    1. refund_payment      Refund the customer's card");
    println!("    2. send_receipt_email  Email the customer the refund receipt");
    let refund = agent.call(
        "refund_payment",
        json!({"order_id": ORDER, "amount_cents": 4999, "card_number": "4242 4242 4242 4242"}),
    )?;
    println!(
        "  called refund_payment({ORDER}, 49.99, card 4242 4242 4242 4242) -> {}",
        refund["structuredContent"]["refund_id"]
            .as_str()
            .unwrap_or("?")
    );
    println!("  ...and stops without sending the receipt.");
    agent.hang_up();
    Ok(plan)
}

/// Steps 4 to 6: the closed plan's record and findings, export and verify.
fn report(
    style: &Style,
    interactive: bool,
    command: &str,
    dir: &Path,
    plan: &DeclaredPlan,
) -> Result<PathBuf> {
    let client = Client::new(&ClientArgs {
        data_dir: Some(dir.to_path_buf()),
        server: None,
        json: false,
        fleet: false,
    })?;
    pause(interactive)?;
    // The gateway closed the plan when the agent's session ended, before it
    // exited; a gateway that could not deliver that close leaves it open,
    // and the daemon closes it here instead.
    let plans = client.all::<wire::PlansPage>(&["v1", "plans"])?;
    let still_open = plans
        .iter()
        .any(|p| p.plan_id == plan.plan_id && p.state == "open");
    let findings: Vec<wire::FindingRow> = if still_open {
        let closed: wire::PlanClosed =
            client.post(&["v1", "plans", &plan.plan_id, "close"], None::<&()>)?;
        closed.findings
    } else {
        client
            .all::<wire::FindingsPage>(&["v1", "findings"])?
            .into_iter()
            .filter(|f| f.plan_id.as_deref() == Some(plan.plan_id.as_str()))
            .collect()
    };
    let daemon_key = intentproof_core::keys::InstanceKey::load_from(dir)
        .context("cannot read the daemon's key")?;
    let daemon_instance = daemon_key.instance_id().to_owned();
    let chain: wire::ChainWithEvents = client.get(&["v1", "chains", &plan.correlation_id], &[])?;
    style.step(4, "The signed record (one hash-chained event per call)");
    println!("  correlation {}", plan.correlation_id);
    let mut events = chain.events;
    // Two signers may share this correlation (the gateway's key for the
    // calls and the session's end, the daemon's for a close it made): show
    // them in time order.
    events.sort_by(|a, b| {
        let at = |v: &wire::EventBody| v.event["started_at"].as_str().unwrap_or("").to_owned();
        at(a).cmp(&at(b))
    });
    for stored in &events {
        let event = &stored.event;
        let status = event["status"].as_str().unwrap_or("?");
        let mark = if status == "ok" {
            style.good("✓ ok   ")
        } else {
            style.bad("✗ error")
        };
        let signer = if event["instance_id"].as_str() == Some(daemon_instance.as_str()) {
            "daemon"
        } else {
            "gateway"
        };
        println!(
            "  {mark} {:<32} signed by the {signer:<7} #{} of its chain, signature {}",
            event["action"].as_str().unwrap_or("?"),
            event["chain_position"],
            stored.signature,
        );
        if let Some(card) = event["inputs"]["card_number"].as_str() {
            println!(
                "      card_number stored as {} {}",
                style.bold(&format!("\"{card}\"")),
                style.dim("(redacted before signing: the full number never reached disk)")
            );
        }
    }
    let verified = chain.chain.verified;
    println!(
        "  chain: {} events, {}",
        events.len(),
        if verified {
            style.good("✓ linked and signed")
        } else {
            style.bad("✗ NOT verified")
        }
    );

    style.step(5, "Findings: did the agent do what it said?");
    if findings.is_empty() {
        bail!("the closed plan has no findings, but the receipt step never ran");
    }
    for f in &findings {
        let label = match &*f.kind {
            "incomplete_intent" => "INCOMPLETE INTENT",
            "failed_step" => "FAILED STEP",
            "unplanned_call" => "UNPLANNED CALL",
            _ => "FLAG",
        };
        println!("  {} {}", style.bad(&format!("✗ {label}:")), f.message);
    }
    pause(interactive)?;

    style.step(6, "Proof bundle: one file anyone can verify offline");
    let bytes = client.bundle(&plan.correlation_id, "full", false)?;
    let bundle = dir.join(format!("{ORDER}.proof.tar.zst"));
    write_atomically(&bundle, &bytes)?;
    println!("  exported {} ({} bytes)", bundle.display(), bytes.len());
    // Only a key given from outside the bundle attests it (no event left
    // out): the exporter's public key, as a reviewer would be handed it.
    let exporter = dir.join(EXPORTER_KEY_FILE);
    write_atomically(&exporter, daemon_key.public_key_pem().as_bytes())?;
    println!(
        "  $ {command} verify --key {} {}",
        exporter.display(),
        bundle.display()
    );
    let options = intentproof_bundle::VerifyOptions {
        trusted_keys: vec![intentproof_bundle::TrustedKey {
            key_id: None,
            key: daemon_key.verifying_key(),
        }],
        ..Default::default()
    };
    let report = intentproof_bundle::verify(&bytes, &options);
    let human = report.human_verdict();
    let verdict = human.lines().next().unwrap_or_default();
    println!(
        "  {}",
        if report.attested() {
            style.good(verdict)
        } else {
            style.bad(verdict)
        }
    );
    println!(
        "  {}",
        style.dim(&format!(
            "{} checks: file hashes, signatures, chains, Merkle roots, inclusion proofs, tlog-proofs, policy replay",
            human.lines().skip(1).count()
        ))
    );
    if !report.attested() {
        bail!(
            "the exported bundle did not verify: {}",
            report.detail.as_deref().unwrap_or(&report.reason)
        );
    }
    Ok(bundle)
}
