//! Commands that run or talk to the daemon: `serve`, `events`, `chains`,
//! `keys trust`, `store verify`, `store rebuild`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use intentproof_core::keys::parse_public_key;
use intentproof_gateway::Config;
use intentproof_gateway::config::DEFAULT_PORT;
use intentproof_gateway::datadir::DataDir;
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
    let config_path = args
        .config
        .or_else(|| std::env::var_os("INTENTPROOF_CONFIG").map(PathBuf::from));
    let mut config = match &config_path {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    }
    .apply_env(|name| std::env::var(name).ok())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(intentproof_gateway::serve(config))?;
    Ok(())
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

struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    fn new(args: &ClientArgs) -> Result<Client> {
        let dir = DataDir::new(data_dir_or_default(args.data_dir.clone())?);
        let base = args
            .server
            .clone()
            .or_else(|| {
                std::env::var("INTENTPROOF_SERVER")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .or_else(|| dir.daemon_url())
            .unwrap_or_else(|| format!("http://127.0.0.1:{DEFAULT_PORT}"));
        let token = dir.token().with_context(|| {
            format!(
                "no token in {}; pass the daemon's --data-dir",
                dir.path().display()
            )
        })?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::new(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?,
        })
    }

    fn send(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let base = &self.base;
        self.runtime.block_on(async {
            let response = request
                .bearer_auth(&self.token)
                .send()
                .await
                .map_err(|e| anyhow!("cannot reach the daemon at {base}: {}; start it with `intentproof serve` or pass --server", e.without_url()))?;
            let status = response.status();
            let body: Value = response
                .json()
                .await
                .map_err(|e| anyhow!("the daemon at {base} answered {status} with a body that is not JSON: {e}"))?;
            if !status.is_success() {
                let message = body.get("error").and_then(Value::as_str).unwrap_or("no message");
                bail!("the daemon answered {status}: {message}");
            }
            Ok(body)
        })
    }

    fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query))
    }
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
    let body = client.get("/v1/events", &query)?;
    if args.client.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let events = body
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    println!(
        "{:<6} {:<24} {:<24} {:>4} {:<32} {:<6} {:<11} INTENT",
        "SEQ", "COMPLETED", "CORRELATION", "POS", "ACTION", "STATUS", "SIGNATURE"
    );
    for row in &events {
        let event = &row["event"];
        println!(
            "{:<6} {:<24} {:<24} {:>4} {:<32} {:<6} {:<11} {}",
            text(row, "seq"),
            text(event, "completed_at"),
            cut(&text(event, "correlation_id"), 24),
            text(event, "chain_position"),
            cut(&text(event, "action"), 32),
            text(event, "status"),
            text(row, "signature"),
            cut(&text(event, "intent"), 60),
        );
    }
    match body.get("next_cursor").and_then(Value::as_u64) {
        Some(cursor) => println!("{} events shown; more with --cursor {cursor}", events.len()),
        None => println!("{} events", events.len()),
    }
    Ok(())
}

pub fn chains(args: ClientArgs, limit: usize) -> Result<()> {
    let client = Client::new(&args)?;
    let body = client.get("/v1/chains", &[("limit", limit.to_string())])?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let chains = body
        .get("chains")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    println!(
        "{:<28} {:>6} {:>6} {:<24} {:<24} {:<9} INTENTS",
        "CORRELATION", "EVENTS", "ERRORS", "FIRST", "LAST", "VERIFIED"
    );
    for chain in &chains {
        let verified = match chain.get("verified").and_then(Value::as_bool) {
            Some(true) => "yes".to_owned(),
            _ => {
                let mut why = Vec::new();
                if chain["gaps"].as_u64().unwrap_or(0) > 0 {
                    why.push("gaps");
                }
                if chain["key_unknown"].as_u64().unwrap_or(0) > 0 {
                    why.push("key unknown");
                }
                if chain["invalid_signatures"].as_u64().unwrap_or(0) > 0 {
                    why.push("bad signature");
                }
                format!("NO ({})", why.join(", "))
            }
        };
        let intents: Vec<String> = chain
            .get("intents")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{:<28} {:>6} {:>6} {:<24} {:<24} {:<9} {}",
            cut(&text(chain, "correlation_id"), 28),
            text(chain, "events"),
            text(chain, "errors"),
            text(chain, "first_at"),
            text(chain, "last_at"),
            verified,
            cut(&intents.join("; "), 60),
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
    let body = client.send(client.http.post(format!("{}/v1/keys", client.base)).json(
        &serde_json::json!({
            "instance_id": args.instance_id,
            "public_key": intentproof_core::keys::public_key_to_base64(&key),
        }),
    ))?;
    if args.client.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    println!(
        "trusted {}: {} stored event(s) verified, {} invalid",
        args.instance_id,
        text(&body, "events_verified"),
        text(&body, "events_invalid")
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
