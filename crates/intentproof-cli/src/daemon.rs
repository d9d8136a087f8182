//! Commands that run or talk to the daemon: `serve`, `events`, `chains`,
//! `keys trust`, `store verify`, `store rebuild`, `export`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use intentproof_api::client::{DaemonClient, Progress};
use intentproof_api::datadir::{DataDir, server_given};
use intentproof_api::wire::{self, Paged};
use intentproof_core::keys::{InstanceKey, parse_public_key};
use intentproof_gateway::Config;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Invalid;

/// Where the daemon is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Data directory (token, daemon address) [default: $INTENTPROOF_DATA_DIR or ~/.intentproof]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Daemon URL [default: $INTENTPROOF_SERVER, else the address the daemon on this data dir
    /// recorded, else http://127.0.0.1:9787]
    #[arg(long)]
    pub server: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Ask the fleet view (`intentproof serve --fleet`: every daemon's
    /// records in PostgreSQL) instead of this machine's daemon; its address
    /// and token are in <data dir>/fleet.
    #[arg(long)]
    pub fleet: bool,
}

/// `intentproof serve` flags.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:9787; env INTENTPROOF_LISTEN]
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Data directory [default: ~/.intentproof; env INTENTPROOF_DATA_DIR]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// TOML config file [env INTENTPROOF_CONFIG]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve the fleet view instead of a daemon: the read API (events,
    /// chains, findings, plans, bundles) over every daemon's records in the
    /// PostgreSQL of the config's [fleet]; its key, token and address in
    /// <data dir>/fleet [default listen: 127.0.0.1:9788]
    #[arg(long)]
    pub fleet: bool,
}

/// `intentproof events` flags.
#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only this correlation id.
    #[arg(long)]
    pub correlation: Option<String>,
    /// Only this action.
    #[arg(long)]
    pub action: Option<String>,
    /// Only `ok` or `error`.
    #[arg(long)]
    pub status: Option<String>,
    /// Completed at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Completed before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    /// Most events to show.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Continue after this cursor (from a previous --json page).
    #[arg(long)]
    pub cursor: Option<u64>,
}

/// `intentproof store ...`.
#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Replay the journal: checksums, chains, signatures, Merkle root against the last signed
    /// checkpoint. Exit 1 with the first problem.
    Verify {
        /// Data directory [default: $INTENTPROOF_DATA_DIR or ~/.intentproof]
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Recreate the index (sled) from the journal. Stop the daemon first.
    Rebuild {
        /// Data directory [default: $INTENTPROOF_DATA_DIR or ~/.intentproof]
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// `intentproof keys trust` flags.
#[derive(Args, Debug)]
pub struct TrustArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The instance whose events the key signs (`inst_...`).
    pub instance_id: String,
    /// Its public key: base64 of 32 bytes, PEM, or a file holding either.
    pub public_key: String,
}

/// The daemon's config as `serve` sees it: the file (`--config` or
/// `INTENTPROOF_CONFIG`), then the environment, then `--data-dir`.
pub fn resolve_config(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> Result<Config> {
    let config_path = config.or_else(|| std::env::var_os("INTENTPROOF_CONFIG").map(PathBuf::from));
    let mut config = match &config_path {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    }
    .apply_env(|name| std::env::var(name).ok())?;
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    Ok(config)
}

/// `intentproof keys transparency`: the C2SP verifier keys of the daemon
/// of this data dir and config: its log key (for witnesses'
/// `[[transparency.logs]]`) and its witness key (for logs'
/// `[[transparency.witnesses]]` and `verify --witness`).
pub fn transparency_keys(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> Result<()> {
    let config = resolve_config(config, data_dir)?;
    let key = InstanceKey::load_from(&config.data_dir).with_context(|| {
        format!(
            "no daemon key in {}: start the daemon once (`intentproof serve`) or run `intentproof keys new`",
            config.data_dir.display()
        )
    })?;
    let (log, cosigner) = intentproof_gateway::transparency::signers(&config.transparency, &key);
    let (log, cosigner) = (log.verifier(), cosigner.verifier());
    println!("log: {log}");
    println!("witness: {cosigner}");
    Ok(())
}

pub fn serve(args: ServeArgs) -> Result<()> {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut config = resolve_config(args.config, args.data_dir)?;
    if args.fleet {
        return serve_fleet_view(config, args.listen);
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    // Checked after the flags: they may move the listen address.
    if let Some(problem) = config.ingest_token_problem() {
        bail!(problem);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(intentproof_gateway::serve(config))?;
    Ok(())
}

/// `intentproof serve --fleet`: the fleet view until SIGINT or SIGTERM.
fn serve_fleet_view(config: Config, listen: Option<std::net::SocketAddr>) -> Result<()> {
    use intentproof_gateway::fleet_view;
    let Some(fleet) = config.fleet.clone() else {
        bail!(
            "--fleet serves the fleet database: add a [fleet] section with postgres_url to the config (--config or INTENTPROOF_CONFIG)"
        );
    };
    let listen = match listen {
        Some(listen) => listen,
        None => fleet_view::DEFAULT_LISTEN
            .parse()
            .context("the default listen address")?,
    };
    let dir = fleet_view::data_dir(&config.data_dir);
    let idle = std::time::Duration::from_secs(config.plan_idle_timeout_secs);
    let view = fleet_view::FleetView::open(dir, fleet, idle)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let running = fleet_view::start(view, listen).await?;
        intentproof_gateway::serve::shutdown_signal().await;
        running.stop().await;
        Ok::<_, anyhow::Error>(())
    })
}

/// The data dir a client command reads its token and address from: the
/// daemon's, or with `fleet` the fleet view's inside it.
pub fn client_data_dir(flag: Option<PathBuf>, fleet: bool) -> Result<PathBuf> {
    let dir = data_dir_or_default(flag)?;
    Ok(if fleet {
        intentproof_gateway::fleet_view::data_dir(&dir)
            .path()
            .to_path_buf()
    } else {
        dir
    })
}

/// Data dir from the flag, the environment, or `~/.intentproof`.
pub fn data_dir_or_default(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    if let Some(dir) = std::env::var_os("INTENTPROOF_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("HOME is not set; pass --data-dir or set INTENTPROOF_DATA_DIR"))?;
    Ok(Path::new(&home).join(".intentproof"))
}

/// The daemon named by the flags, the environment or the data dir, as a
/// [`DaemonClient`] (shared with the TUI).
pub(crate) struct Client {
    daemon: DaemonClient,
}

impl Client {
    pub(crate) fn new(args: &ClientArgs) -> Result<Client> {
        let dir = DataDir::new(client_data_dir(args.data_dir.clone(), args.fleet)?);
        let base = dir.daemon_base(server_given(args.server.clone()));
        // An approver acts under their own token (`[approvals] approvers`).
        let token = match std::env::var("INTENTPROOF_TOKEN") {
            Ok(token) if !token.trim().is_empty() => token.trim().to_owned(),
            _ => dir.token().with_context(|| {
                format!(
                    "no token in {}; pass the daemon's --data-dir (or set INTENTPROOF_TOKEN)",
                    dir.path().display()
                )
            })?,
        };
        Ok(Client {
            daemon: DaemonClient::new(&base, token, None)?,
        })
    }

    /// `GET` the path made of `segments` (each escaped) with `query`.
    pub(crate) fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T> {
        Ok(self.daemon.get(segments, query)?)
    }

    /// Every row of the paged listing at `segments`, page by page.
    pub(crate) fn all<P: Paged>(&self, segments: &[&str]) -> Result<Vec<P::Row>> {
        Ok(self
            .daemon
            .get_all_pages::<P>(segments, &[], None)?
            .map(|(rows, _)| rows)
            .unwrap_or_default())
    }

    /// `POST`s to the path made of `segments` (with `body` as JSON, if any)
    /// and returns the JSON answer.
    pub(crate) fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<T> {
        Ok(self.daemon.post(segments, body)?)
    }

    /// Asks the daemon for a proof bundle of one correlation (at most
    /// [`MAX_ANSWER_BYTES`](intentproof_api::client::MAX_ANSWER_BYTES),
    /// what verification reads). With `progress`, a spinner runs on stderr
    /// while the daemon builds the bundle, then a byte bar while it arrives.
    pub(crate) fn bundle(
        &self,
        correlation_id: &str,
        profile: &str,
        progress: bool,
    ) -> Result<Vec<u8>> {
        let bar = progress.then(|| {
            let bar = indicatif::ProgressBar::new_spinner().with_message(format!(
                "the daemon is building the bundle of {correlation_id}"
            ));
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        let style = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {elapsed}",
        )
        .map_err(|e| anyhow!("progress bar template: {e}"))?
        .progress_chars("=> ");
        let request = wire::ExportRequest {
            correlation_id: correlation_id.to_owned(),
            profile: profile.to_owned(),
        };
        let bytes = self
            .daemon
            .post_bytes(
                &["v1", "bundles"],
                Some(&request),
                &mut |step| match (&bar, step) {
                    (Some(bar), Progress::Started(length)) => {
                        if let Some(length) = length {
                            bar.set_length(length);
                        }
                        bar.set_style(style.clone());
                        bar.set_message("receiving bundle");
                    }
                    (Some(bar), Progress::Received(n)) => bar.inc(n as u64),
                    (None, _) => {}
                },
            );
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        Ok(bytes?)
    }
}

/// [`intentproof_bundle::write_file_atomically`], with the path in the error.
pub(crate) fn write_atomically(output: &Path, bytes: &[u8]) -> Result<()> {
    intentproof_bundle::write_file_atomically(output, bytes)
        .with_context(|| format!("cannot write {}", output.display()))
}

/// `value` as pretty JSON with its keys in sorted order, as the daemon
/// answers it (`intentproof_api::wire`).
fn pretty<T: Serialize>(value: &T) -> Result<String> {
    Ok(serde_json::to_string_pretty(&serde_json::to_value(value)?)?)
}

fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

pub fn events(args: EventsArgs) -> Result<()> {
    let client = Client::new(&args.client)?;
    let mut query = vec![("limit", args.limit.to_string())];
    for (key, value) in [
        ("correlation", args.correlation),
        ("action", args.action),
        ("status", args.status),
        ("since", args.since),
        ("until", args.until),
        ("cursor", args.cursor.map(|c| c.to_string())),
    ] {
        if let Some(value) = value {
            query.push((key, value));
        }
    }
    let page: wire::EventsPage = client.get(&["v1", "events"], &query)?;
    if args.client.json {
        println!("{}", pretty(&page)?);
        return Ok(());
    }
    let events = &page.events;
    println!(
        "{:<6} {:<24} {:<24} {:>4} {:<32} {:<6} {:<11} INTENT",
        "SEQ", "COMPLETED", "CORRELATION", "POS", "ACTION", "STATUS", "SIGNATURE"
    );
    for row in events {
        let event = &row.event;
        println!(
            "{:<6} {:<24} {:<24} {:>4} {:<32} {:<6} {:<11} {}",
            row.seq,
            text(event, "completed_at"),
            cut(&text(event, "correlation_id"), 24),
            text(event, "chain_position"),
            cut(&text(event, "action"), 32),
            text(event, "status"),
            row.signature,
            cut(&text(event, "intent"), 60),
        );
    }
    match page.next_cursor {
        Some(cursor) => println!("{} events shown; more with --cursor {cursor}", events.len()),
        None => println!("{} events", events.len()),
    }
    Ok(())
}

pub fn chains(args: ClientArgs, limit: usize) -> Result<()> {
    let client = Client::new(&args)?;
    let page: wire::ChainsPage = client.get(&["v1", "chains"], &[("limit", limit.to_string())])?;
    if args.json {
        println!("{}", pretty(&page)?);
        return Ok(());
    }
    let chains = &page.chains;
    println!(
        "{:<28} {:>6} {:>6} {:<24} {:<24} {:<9} INTENTS",
        "CORRELATION", "EVENTS", "ERRORS", "FIRST", "LAST", "VERIFIED"
    );
    for chain in chains {
        let summary = &chain.summary;
        let verified = if chain.verified {
            "yes".to_owned()
        } else {
            let mut why = Vec::new();
            if chain.gaps > 0 {
                why.push("gaps");
            }
            if summary.key_unknown > 0 {
                why.push("key unknown");
            }
            if summary.invalid_signatures > 0 {
                why.push("bad signature");
            }
            format!("NO ({})", why.join(", "))
        };
        println!(
            "{:<28} {:>6} {:>6} {:<24} {:<24} {:<9} {}",
            cut(&summary.correlation_id, 28),
            summary.events,
            summary.errors,
            summary.first_at,
            summary.last_at,
            verified,
            cut(&summary.intents.join("; "), 60),
        );
    }
    println!("{} chains", chains.len());
    Ok(())
}

pub fn trust(args: TrustArgs) -> Result<()> {
    let key_text = match std::fs::read_to_string(&args.public_key) {
        Ok(contents) => contents,
        Err(_) => args.public_key.clone(),
    };
    let key = parse_public_key(&key_text).context("public key")?;
    let client = Client::new(&args.client)?;
    let trusted: wire::KeyTrusted = client.post(
        &["v1", "keys"],
        Some(&wire::TrustKey {
            instance_id: args.instance_id.clone(),
            public_key: intentproof_core::keys::public_key_to_base64(&key),
        }),
    )?;
    if args.client.json {
        println!("{}", pretty(&trusted)?);
        return Ok(());
    }
    println!(
        "trusted {}: {} stored event(s) verified, {} invalid",
        args.instance_id, trusted.events_verified, trusted.events_invalid
    );
    Ok(())
}

pub fn store(command: StoreCommand) -> Result<()> {
    match command {
        StoreCommand::Verify { data_dir } => {
            let dir = DataDir::new(data_dir_or_default(data_dir)?);
            if !dir.path().join("journal").exists() {
                bail!(
                    "{} has no journal: is this the daemon's --data-dir?",
                    dir.path().display()
                );
            }
            let ring = dir.key_ring()?;
            match intentproof_store::verify(dir.path(), &|i| ring.get(i), ring.daemon()) {
                Ok(report) => {
                    println!(
                        "ok: {} records, {} chains, {} signatures verified, {} from instances with no trusted key, {}",
                        report.records,
                        report.chains,
                        report.signatures_verified,
                        report.key_unknown,
                        match report.checkpoint_size {
                            Some(size) => format!(
                                "Merkle root matches the signed checkpoint of {size} records"
                            ),
                            None => "no checkpoint yet".to_owned(),
                        }
                    );
                    Ok(())
                }
                Err(problem) => Err(Invalid(problem).into()),
            }
        }
        StoreCommand::Rebuild { data_dir } => {
            let dir = DataDir::new(data_dir_or_default(data_dir)?);
            let ring = dir.key_ring()?;
            let records = intentproof_store::rebuild(dir.path(), &|i| ring.get(i))
                .context("rebuild failed (is the daemon still running? stop it first)")?;
            println!(
                "rebuilt the index of {} from {records} journal records",
                dir.path().display()
            );
            Ok(())
        }
    }
}

/// `intentproof mcp` flags.
#[derive(Args, Debug)]
pub struct McpArgs {
    /// Name of the upstream server, used in actions (`mcp.<name>.<tool>`)
    /// [default: derived from the command]
    #[arg(long)]
    pub name: Option<String>,
    /// Data directory [default: $INTENTPROOF_DATA_DIR or ~/.intentproof]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Daemon URL [default: $INTENTPROOF_SERVER, else the one on the data dir, else
    /// http://127.0.0.1:9787]
    #[arg(long)]
    pub server: Option<String>,
    /// Name of the plan tool added to the server's tools.
    #[arg(long, default_value = intentproof_mcp::recorder::DEFAULT_PLAN_TOOL)]
    pub plan_tool: String,
    /// Do not add the plan tool.
    #[arg(long)]
    pub no_plan_tool: bool,
    /// Do not start a daemon when none answers (events wait in the spool).
    #[arg(long)]
    pub no_autostart: bool,
    /// Refuse each call (with a JSON-RPC error) unless a "started" record of
    /// it is on disk first. Default: fail-open (recording never blocks a call).
    #[arg(long)]
    pub fail_closed: bool,
    /// Redaction policy (YAML) applied before anything is written
    /// [default: the built-in policy]
    #[arg(long, value_name = "FILE")]
    pub redaction_policy: Option<PathBuf>,
    /// Intent for calls of a tool outside any plan: TOOL=INTENT (repeatable).
    #[arg(long = "default-intent", value_name = "TOOL=INTENT")]
    pub default_intents: Vec<String>,
    /// `plan`: refuse a tools/call that no step of the session's declared
    /// plan covers (or with no plan), before it reaches the server; the
    /// refusal is recorded. `off`: record only.
    #[arg(long, value_name = "MODE", default_value = "off", value_parser = ["off", "plan"])]
    pub enforce: String,
    /// Pin the server's tool definitions (kept in <data dir>/pins) and,
    /// when one changes or a new tool appears: `flag` it (recorded, a TOOL
    /// CHANGED finding), `hide` it from the agent, or `block` its calls,
    /// until `intentproof tools approve`. `off`: no pinning.
    #[arg(long, value_name = "MODE", default_value = "off", value_parser = ["off", "flag", "hide", "block"])]
    pub on_tool_change: String,
    /// Hold a tools/call whose action matches GLOB (and, after a colon,
    /// whose arguments meet every `;`-separated condition, e.g.
    /// `mcp.payments.refund_*:amount_cents > 100`) until a person decides
    /// (`intentproof approvals`, the TUI). Asked of the daemon; with no
    /// daemon reachable the call is refused. Repeatable.
    #[arg(long = "require-approval", value_name = "GLOB[:CONDITIONS]")]
    pub require_approval: Vec<String>,
    /// How long a held call waits for a decision before it is refused.
    #[arg(long, value_name = "SECS", default_value_t = intentproof_policy::guard::approval::DEFAULT_TIMEOUT_SECS)]
    pub approval_timeout: u64,
    /// The MCP server command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// A server name from its command: `node .../server-everything/dist/index.js`
/// gives `server-everything`; `uvx mcp-server-time` gives `mcp-server-time`.
fn server_name(command: &[String]) -> String {
    const RUNTIMES: [&str; 9] = [
        "node", "npx", "python", "python3", "uvx", "uv", "deno", "bun", "pipx",
    ];
    let base = |s: &str| {
        Path::new(s)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let program = command.first().map(|p| base(p)).unwrap_or_default();
    let mut name = program.clone();
    if RUNTIMES.contains(&program.as_str())
        && let Some(arg) = command
            .iter()
            .skip(1)
            .find(|a| !a.starts_with('-') && *a != "run")
    {
        // A path: prefer the package folder (node_modules/<pkg>/dist/index.js).
        let path = Path::new(arg);
        name = path
            .ancestors()
            .find(|p| {
                p.parent()
                    .and_then(|q| q.file_name())
                    .is_some_and(|n| n == "node_modules" || n.to_string_lossy().starts_with('@'))
            })
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| {
                base(arg)
                    .trim_end_matches(".js")
                    .trim_end_matches(".py")
                    .to_owned()
            });
    }
    let cleaned: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "server".into()
    } else {
        cleaned
    }
}

pub fn mcp(args: McpArgs) -> Result<std::process::ExitCode> {
    use intentproof_gateway::shipper::{Shipper, ShipperConfig};
    use intentproof_mcp::recorder::RecorderConfig;
    use intentproof_mcp::stdio::{self, StdioOptions};
    use std::io::IsTerminal;
    // Stdout is the protocol's: every log goes to stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "warn,intentproof_gateway=info,intentproof_mcp=info",
                )
            }),
        )
        .init();
    let data_dir = DataDir::new(data_dir_or_default(args.data_dir)?);
    let mut recorder = RecorderConfig::new(args.name.unwrap_or_else(|| server_name(&args.command)));
    recorder.plan_tool = (!args.no_plan_tool).then_some(args.plan_tool);
    if args.enforce == "plan" {
        if recorder.plan_tool.is_none() {
            bail!(
                "--enforce plan needs the plan tool (drop --no-plan-tool): without it no plan can be declared and every call would be refused"
            );
        }
        recorder.enforce = intentproof_policy::guard::Enforce::Plan;
    }
    recorder.on_tool_change = serde_json::from_value(serde_json::json!(args.on_tool_change))
        .with_context(|| format!("--on-tool-change {}", args.on_tool_change))?;
    if recorder.on_tool_change != intentproof_policy::guard::OnToolChange::Off {
        let pins = intentproof_mcp::pins::Pins::open(&data_dir.pins_dir(), &recorder.server)
            .map_err(|e| anyhow!("--on-tool-change: {e}"))?;
        recorder.pins = Some(std::sync::Arc::new(pins));
    }
    let rules = args
        .require_approval
        .iter()
        .map(|r| intentproof_policy::guard::ApprovalRule::parse_flag(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("--require-approval: {e}"))?;
    if !(1..=86_400).contains(&args.approval_timeout) {
        bail!(
            "--approval-timeout {}: use 1 to 86400 seconds",
            args.approval_timeout
        );
    }
    recorder.approval_timeout = std::time::Duration::from_secs(args.approval_timeout);
    if !rules.is_empty() {
        recorder.approvals = std::sync::Arc::from(rules);
        recorder.approver = std::sync::Arc::new(
            intentproof_gateway::approvals::RemoteApprover::new(
                data_dir.clone(),
                server_given(args.server.clone()),
                std::env::var("INTENTPROOF_INGEST_TOKEN")
                    .ok()
                    .filter(|s| !s.is_empty()),
            )
            .map_err(|e| anyhow!(e))?,
        );
    }
    for pair in &args.default_intents {
        let (tool, intent) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--default-intent {pair:?}: use TOOL=INTENT"))?;
        recorder
            .default_intents
            .insert(tool.trim().to_owned(), intent.trim().to_owned());
    }
    let redactor = std::sync::Arc::new(data_dir.redactor(args.redaction_policy.as_deref())?);
    let shipper = ShipperConfig {
        redactor,
        data_dir,
        server: server_given(args.server),
        autostart: if args.no_autostart {
            None
        } else {
            std::env::current_exe().ok()
        },
        ingest_token: std::env::var("INTENTPROOF_INGEST_TOKEN")
            .ok()
            .filter(|s| !s.is_empty()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime
        .block_on(async {
            let shipper = Shipper::start(shipper)?;
            let options = StdioOptions {
                recorder,
                command: args.command,
                fail_closed: args.fail_closed,
            };
            stdio::run(options, shipper).await
        })
        .map_err(|e| anyhow!(e));
    // The stdin reader sits on a blocking thread that cannot be cancelled:
    // do not wait for it, or an upstream that died would keep us alive
    // until the agent writes again.
    runtime.shutdown_background();
    let code = code?;
    Ok(std::process::ExitCode::from(
        u8::try_from(code).unwrap_or(1),
    ))
}

pub fn findings(args: ClientArgs) -> Result<()> {
    let client = Client::new(&args)?;
    let findings = client.all::<wire::FindingsPage>(&["v1", "findings"])?;
    if args.json {
        let body = serde_json::json!({ "findings": findings });
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<18} {:<28} {:<36} MESSAGE",
        "AT", "FLAG", "CORRELATION", "ACTION"
    );
    for f in &findings {
        let flag = match &*f.kind {
            "incomplete_intent" => "INCOMPLETE INTENT",
            "failed_step" => "FAILED STEP",
            "unplanned_call" => "UNPLANNED CALL",
            "incomplete_call" => "INCOMPLETE CALL",
            "task_unfinished" => "TASK UNFINISHED",
            "policy_violation" => "POLICY VIOLATION",
            "tool_changed" => "TOOL CHANGED",
            _ => "?",
        };
        println!(
            "{:<24} {:<18} {:<28} {:<36} {}",
            f.at,
            flag,
            cut(&f.correlation_id, 28),
            cut(&f.action, 36),
            f.message,
        );
    }
    println!("{}", plural(findings.len(), "finding", "findings"));
    // Open plans are not evaluated yet: say so, or "0 findings" misleads.
    let plans = client.all::<wire::PlansPage>(&["v1", "plans"])?;
    let open: Vec<&wire::PlanRow> = plans.iter().filter(|p| p.state == "open").collect();
    if !open.is_empty() {
        println!(
            "{} still open, not evaluated yet: a plan closes when the MCP session that declared it ends, when it is idle until the time below, or now with `intentproof plans --close <PLAN>`",
            plural(open.len(), "plan", "plans")
        );
        for p in open.iter().take(MAX_OPEN_PLANS_SHOWN) {
            println!(
                "  {}  closes by {}  {}",
                p.plan_id,
                p.closes_at.as_deref().unwrap_or_default(),
                cut(&p.intent, 60)
            );
        }
        if open.len() > MAX_OPEN_PLANS_SHOWN {
            println!(
                "  … and {} more (`intentproof plans` lists them all)",
                open.len() - MAX_OPEN_PLANS_SHOWN
            );
        }
    }
    Ok(())
}

/// Open plans `intentproof findings` names one by one.
const MAX_OPEN_PLANS_SHOWN: usize = 10;

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn plans(args: ClientArgs, close: Option<String>) -> Result<()> {
    let client = Client::new(&args)?;
    if let Some(id) = close {
        let closed: wire::PlanClosed = client.post(&["v1", "plans", &id, "close"], None::<&()>)?;
        if args.json {
            println!("{}", pretty(&closed)?);
        } else {
            let n = closed.findings.len();
            println!("closed plan {id}: {}", plural(n, "finding", "findings"));
            for f in &closed.findings {
                println!("- {}", f.message);
            }
        }
        return Ok(());
    }
    let plans = client.all::<wire::PlansPage>(&["v1", "plans"])?;
    if args.json {
        let body = serde_json::json!({ "plans": plans });
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    // STATE is as wide as its longest value, `closed (session_ended)`, so
    // the columns stay aligned whichever way a plan closed.
    println!(
        "{:<38} {:<22} {:>5} {:>5} {:>5} INTENT",
        "PLAN", "STATE", "STEPS", "CALLS", "FLAGS"
    );
    for p in &plans {
        let state = match (&*p.state, p.closed_by.as_deref()) {
            ("closed", Some(by)) => format!("closed ({by})"),
            (state, _) => state.to_owned(),
        };
        println!(
            "{:<38} {:<22} {:>5} {:>5} {:>5} {}",
            p.plan_id,
            state,
            p.steps.len(),
            p.calls,
            p.flags,
            cut(&p.intent, 60)
        );
    }
    println!("{}", plural(plans.len(), "plan", "plans"));
    Ok(())
}

/// `intentproof export` flags.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The correlation id whose events to export.
    pub correlation_id: String,
    /// Where to write the bundle (conventionally `<name>.proof.tar.zst`).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Export profile: `full` (events as stored), `auditor` (events
    /// without `inputs`, `output`, `untrusted_payload`) or `counterparty`
    /// (identity, chain, action, status and timing only). Withheld fields
    /// are replaced by their hashes; signatures, chains and inclusion
    /// proofs still verify.
    #[arg(long, default_value = "full")]
    pub profile: String,
}

/// Asks the daemon for a proof bundle of one correlation and writes it.
pub fn export(args: ExportArgs) -> Result<()> {
    let client = Client::new(&args.client)?;
    let progress = std::io::stderr().is_terminal() && !args.client.json;
    let bytes = client.bundle(&args.correlation_id, &args.profile, progress)?;
    let output = &args.output;
    write_atomically(output, &bytes)?;
    if args.client.json {
        println!(
            "{}",
            serde_json::json!({
                "correlation_id": args.correlation_id,
                "profile": args.profile,
                "output": output.display().to_string(),
                "bytes": bytes.len(),
            })
        );
    } else {
        println!(
            // The hint names `--key`: without it `verify` can only say
            // "unattested" (exit 3), which is not what a new user expects.
            "wrote {} ({} bytes, profile {}); check it with `intentproof verify --key KEY {}` \
             (KEY: what `intentproof keys show` prints on the daemon's host)",
            output.display(),
            bytes.len(),
            args.profile,
            output.display()
        );
    }
    Ok(())
}
