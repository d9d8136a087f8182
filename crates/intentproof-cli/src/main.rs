//! The `intentproof` command: one binary for the daemon (`serve`, `stop`),
//! the stdio MCP gateway (`mcp`), queries of a running daemon (`events`,
//! `chains`, `plans`, `findings`, `health`), proof bundles (`export`,
//! `verify`), policies (`policy`), the store's offline tools (`store`),
//! the terminal UI (`tui`), the first-hour helpers (`demo`, `doctor`) and
//! the key and event tools below. `intentproof --help` lists them all.
//!
//! What it does not do: hold logic of its own beyond parsing flags and
//! printing; each command calls the crate that owns the job (the daemon in
//! `intentproof-gateway`, the relay in `intentproof-mcp`, the verifier in
//! `intentproof-bundle`, the UI in `intentproof-tui`).
//!
//! ```text
//! intentproof keys new  [--data-dir D]     create this instance's Ed25519 key (never overwrites)
//! intentproof keys show [--data-dir D] [--pem]
//!                                          print instance id, key id and public key
//!                                          (--pem: the public key alone, as PEM)
//! intentproof event canon FILE             print the RFC 8785 canonical bytes (no newline added)
//! intentproof event seal --key K [--instance-id I] [--tenant-id T] FILE
//!                                          print the signed intentproof.event.v1 event (one line)
//! intentproof event verify --key K FILE    check an event's signature and schema
//! ```
//!
//! `FILE` may be `-` for standard input. The data directory defaults to
//! `$INTENTPROOF_DATA_DIR`, else `~/.intentproof`.
//!
//! `--key` is a file path, or the key text itself when no such file exists.
//! It may hold: a key file written by `keys new` (JSON; carries the instance
//! id), a seed (base64 of 32 raw bytes, like the spec's
//! `signing_private_key_b64.txt`), or, for `verify` only, a public key (base64
//! of 32 raw bytes, or PEM `PUBLIC KEY`). A bare 32-byte base64 value cannot
//! say whether it is a seed or a public key: `seal` reads it as a seed;
//! `verify` accepts the event if it verifies with the value read either way.
//!
//! Exit status: 0 success (for `verify`: valid), 1 `verify` found the event
//! invalid (the reason is printed), 2 usage, input or I/O error.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

// The daemon's ingest allocates and frees many small JSON values across
// threads; glibc's arena locks cost ~40 % of its CPU there, mimalloc's
// thread-free lists do not (BENCHMARKS.md, "Batched ingest"). Build with
// `--no-default-features` for the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod approvals;
mod bundle;
mod daemon;
mod demo;
mod doctor;
mod fleet;
mod policy;
mod stop;
mod tools;
mod tui;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use daemon::data_dir_or_default;
use intentproof_core::ExecutionEvent;
use intentproof_core::canon::{canonicalize_bytes, parse_strict};
use intentproof_core::keys::{self, InstanceKey};
use intentproof_core::schema::{SchemaKind, validate};
use intentproof_core::seal::{Sealer, verify_event};
use intentproof_core::v1::{self, ZERO_HASH};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "intentproof",
    version,
    about = "IntentProof: signed, chained evidence of what tools did"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage this instance's signing key.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Canonicalize, seal and verify events.
    Event {
        #[command(subcommand)]
        command: EventCommand,
    },
    /// Run the daemon: ingest and query API, durable store.
    Serve(daemon::ServeArgs),
    /// Stop the daemon of a data dir (one `intentproof mcp` started, say) and wait until
    /// it has drained and exited.
    Stop(stop::StopArgs),
    /// Record an MCP server's tool calls: use `intentproof mcp -- <command>` in place of
    /// the server's command in your agent's MCP config.
    Mcp(daemon::McpArgs),
    /// List stored events (from the daemon).
    Events(daemon::EventsArgs),
    /// List correlation chains (from the daemon).
    Chains {
        #[command(flatten)]
        client: daemon::ClientArgs,
        /// Most chains to show (most recent first).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// List findings: incomplete intents, failed steps, unplanned calls (from the daemon).
    Findings {
        #[command(flatten)]
        client: daemon::ClientArgs,
    },
    /// Export one correlation as a proof bundle (.proof.tar.zst) from the daemon.
    Export(daemon::ExportArgs),
    /// List declared plans, or close one (from the daemon).
    Plans {
        #[command(flatten)]
        client: daemon::ClientArgs,
        /// Close this plan now and show its findings.
        #[arg(long, value_name = "PLAN_ID")]
        close: Option<String>,
    },
    /// See it work in one minute: a daemon, the MCP gateway and a scripted agent that
    /// declares a plan and skips a step; shows the flag and a verified proof bundle.
    Demo(demo::DemoArgs),
    /// Check the data dir, keys, token, daemon, store, spool and config; say what to fix.
    Doctor(doctor::DoctorArgs),
    /// Exit 0 when the daemon answers /healthz (for container health checks).
    Health(doctor::HealthArgs),
    /// Print a shell completion script: `intentproof completions bash > ~/.local/share/bash-completion/completions/intentproof`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `intentproof man | man -l -`.
    Man,
    /// A small built-in MCP server (refunds and receipts) for demos and tests.
    #[command(hide = true)]
    DemoServer,
    /// Calls held for a person's approval: list them, approve or deny one (from the daemon).
    Approvals(approvals::ApprovalsArgs),
    /// Guard mode's tool pins: show what changed, approve a new definition.
    Tools {
        #[command(subcommand)]
        command: tools::ToolsCommand,
    },
    /// Browse chains, plans, findings and events in the terminal (daemon, or the store
    /// when no daemon runs).
    Tui(tui::TuiArgs),
    /// Verify a proof bundle offline: exit 0 attested (`--key`), 1 fail, 3 not attested.
    Verify(bundle::VerifyArgs),
    /// Lint, evaluate and test verification policies.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Check or rebuild the daemon's store (offline).
    Store {
        #[command(subcommand)]
        command: daemon::StoreCommand,
    },
    /// The fleet database ([fleet] in the config): verify it, show each daemon.
    Fleet {
        #[command(subcommand)]
        command: fleet::FleetCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a new instance key (fails if one exists).
    New {
        /// Data directory [default: $INTENTPROOF_DATA_DIR or ~/.intentproof]
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Show the instance id, key id and public key.
    Show {
        /// Data directory [default: $INTENTPROOF_DATA_DIR or ~/.intentproof]
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print the public key alone, as PEM, for a file `--key` reads:
        /// `intentproof keys show --pem > key.pem`.
        #[arg(long)]
        pem: bool,
    },
    /// Tell the daemon to trust an instance's public key: its events then verify.
    Trust(daemon::TrustArgs),
    /// Print the daemon's C2SP verifier keys: `log:` (a witness's
    /// `[[transparency.logs]] key`) and `witness:` (a log's
    /// `[[transparency.witnesses]] key`, `verify --witness`).
    Transparency {
        /// Data directory [default: $INTENTPROOF_DATA_DIR or ~/.intentproof]
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The daemon's TOML config (its `[transparency]` names) [env INTENTPROOF_CONFIG]
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum EventCommand {
    /// Print the RFC 8785 canonical form of a JSON document, exactly (no trailing newline),
    /// so the output can be hashed as is.
    Canon {
        /// JSON file, or `-` for stdin.
        file: String,
    },
    /// Sign an event: a v1 event (has a `schema` member) or a camelCase ExecutionEvent.
    ///
    /// An event that already carries `chain_position` and `prev_event_hash` keeps them;
    /// otherwise it is position 1 of its own chain.
    Seal {
        /// Key file from `keys new`, or a seed file (base64 of 32 bytes).
        #[arg(long)]
        key: String,
        /// Instance id of the signer (key id `<instance-id>:k1`); read from a
        /// `keys new` key file when omitted.
        #[arg(long)]
        instance_id: Option<String>,
        /// Tenant for events that carry none.
        #[arg(long, default_value = "local")]
        tenant_id: String,
        /// Event JSON file, or `-` for stdin.
        file: String,
    },
    /// Verify a signed v1 event's signature and schema.
    Verify {
        /// Public key (base64 or PEM), seed file, or `keys new` key file.
        #[arg(long)]
        key: String,
        /// Event JSON file, or `-` for stdin.
        file: String,
    },
}

/// An error that means "the input is invalid", exit status 1.
#[derive(Debug)]
pub(crate) struct Invalid(pub(crate) String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// Keeps this process off transparent huge pages. The binary's allocator
/// (mimalloc) asks for them on its arenas, so each 2 MiB region it touches
/// is backed whole: the daemon idled at 62 MiB resident with them and
/// 22 MiB without, and peaked at 453 MiB instead of 369 MiB over 200,000
/// batched events (same ingest rate); verifying a 100,000-event bundle
/// peaked at 67 MiB instead of 45 MiB, at the same speed. Best effort: a
/// kernel without the flag changes nothing. Children inherit it.
fn no_huge_pages() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

fn main() -> ExitCode {
    no_huge_pages();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // The commands that serve (and relay over stdio) keep Rust's behaviour:
    // a panic there is a bug to see, never a quiet exit.
    if !matches!(
        cli.command,
        Command::Serve(_) | Command::Mcp(_) | Command::DemoServer
    ) {
        exit_quietly_when_stdout_closes();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if reader_went_away(&e) {
                // `intentproof verify --json F | head`: the reader has what
                // it wanted. Say nothing and exit as a process killed by
                // SIGPIPE would (128 + 13), so `set -o pipefail` still sees it.
                return ExitCode::from(141);
            }
            if let Some(invalid) = e.downcast_ref::<Invalid>() {
                eprintln!("invalid: {invalid}");
                ExitCode::from(1)
            } else {
                eprintln!("error: {}", error_text(&e));
                ExitCode::from(2)
            }
        }
    }
}

/// `println!` panics when stdout's reader went away
/// (`intentproof keys show | head -1`): exit as a process killed by SIGPIPE
/// would (141), without the panic message. Any other panic is reported as
/// usual.
fn exit_quietly_when_stdout_closes() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}

/// Whether `error` is a write to stdout that met a closed pipe.
fn reader_went_away(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// An error and its causes, joined by ": " like anyhow's `{:#}`, but
/// without a cause the text already shows: many errors print their source
/// in their own message and also return it from `source()`, and `{:#}`
/// then said it twice ("...(os error 2): No such file or directory (os
/// error 2)").
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.is_empty() {
            text = cause;
        } else if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Writes `bytes` to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

/// Runs a command; commands with more outcomes than success and failure
/// (`mcp`, `policy eval`, `verify`) return their own exit code.
fn run(cli: Cli) -> Result<ExitCode> {
    let done = match cli.command {
        Command::Keys { command } => match command {
            KeysCommand::New { data_dir } => {
                let dir = data_dir_or_default(data_dir)?;
                let key = InstanceKey::create_in(&dir)?;
                println!("created {}", InstanceKey::path_in(&dir).display());
                print_key(&key)
            }
            KeysCommand::Show { data_dir, pem } => {
                let dir = data_dir_or_default(data_dir)?;
                let key = InstanceKey::load_from(&dir)?;
                if pem {
                    write_stdout(key.public_key_pem().as_bytes())
                } else {
                    print_key(&key)
                }
            }
            KeysCommand::Trust(args) => daemon::trust(args),
            KeysCommand::Transparency { data_dir, config } => {
                daemon::transparency_keys(config, data_dir)
            }
        },
        Command::Serve(args) => daemon::serve(args),
        Command::Stop(args) => stop::stop(args),
        Command::Mcp(args) => return daemon::mcp(args),
        Command::Policy { command } => return policy::run(command),
        Command::Verify(args) => return bundle::run(args),
        Command::Tui(args) => tui::run(args),
        Command::Events(args) => daemon::events(args),
        Command::Chains { client, limit } => daemon::chains(client, limit),
        Command::Findings { client } => daemon::findings(client),
        Command::Export(args) => daemon::export(args),
        Command::Demo(args) => demo::run(args),
        Command::Doctor(args) => return doctor::doctor(args),
        Command::Fleet { command } => return fleet::run(command),
        Command::Health(args) => return doctor::health(args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            // Into memory first: clap_complete panics when its writer fails
            // (a closed pipe), and writing to memory cannot.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "intentproof", &mut script);
            write_stdout(&script)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("cannot render the man page")?;
            write_stdout(&page)
        }
        Command::DemoServer => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(intentproof_mcp::demo::run())
            .context("demo server"),
        Command::Plans { client, close } => daemon::plans(client, close),
        Command::Store { command } => daemon::store(command),
        Command::Tools { command } => tools::run(command),
        Command::Approvals(args) => approvals::run(args),
        Command::Event { command } => match command {
            EventCommand::Canon { file } => {
                let bytes = canonicalize_bytes(&read_input(&file)?)
                    .with_context(|| format!("cannot canonicalize {file}"))?;
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes)?;
                out.flush()?;
                Ok(())
            }
            EventCommand::Seal {
                key,
                instance_id,
                tenant_id,
                file,
            } => seal(&key, instance_id, tenant_id, &file),
            EventCommand::Verify { key, file } => verify(&key, &file),
        },
    };
    done.map(|()| ExitCode::SUCCESS)
}

fn print_key(key: &InstanceKey) -> Result<()> {
    println!("instance_id: {}", key.instance_id());
    println!("key_id: {}", key.key_id());
    println!("public_key: {}", key.public_key_base64());
    print!("{}", key.public_key_pem());
    Ok(())
}

fn read_input(file: &str) -> Result<Vec<u8>> {
    if file == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
        Ok(buf)
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {file}"))
    }
}

/// The text of `--key`: the file's content, or the argument itself.
fn key_text(arg: &str) -> Result<String> {
    let path = Path::new(arg);
    if path.is_file() {
        std::fs::read_to_string(path).with_context(|| format!("cannot read key file {arg}"))
    } else if arg.contains("-----BEGIN") || keys::parse_seed(arg).is_ok() {
        // Not a file, but a PEM block or base64 of 32 bytes given inline.
        Ok(arg.to_owned())
    } else {
        bail!("key file {arg} does not exist")
    }
}

fn seal(key_arg: &str, instance_id: Option<String>, tenant_id: String, file: &str) -> Result<()> {
    let text = key_text(key_arg)?;
    let key = if text.trim_start().starts_with('{') {
        let stored = InstanceKey::from_key_file_text(&text)?;
        match instance_id {
            Some(id) if id != stored.instance_id() => bail!(
                "--instance-id {id} does not match the key file's instance {}",
                stored.instance_id()
            ),
            _ => stored,
        }
    } else {
        let seed = keys::parse_seed(&text).context("--key is not a seed (base64 of 32 bytes)")?;
        let id =
            instance_id.ok_or_else(|| anyhow!("--instance-id is required with a bare seed key"))?;
        InstanceKey::from_seed(id, seed.to_bytes())
    };

    let input =
        parse_strict(&read_input(file)?).with_context(|| format!("{file} is not valid JSON"))?;
    let event: ExecutionEvent = if input.get("schema").is_some() {
        v1::from_v1(&input).with_context(|| format!("{file} is not a v1 event"))?
    } else {
        serde_json::from_value(input).with_context(|| {
            format!("{file} is neither a v1 event nor a camelCase ExecutionEvent")
        })?
    };
    if let Some(id) = &event.instance_id
        && id != key.instance_id()
    {
        bail!(
            "the event names instance {id}, but the key is instance {}",
            key.instance_id()
        );
    }

    let sealer = Sealer::new(key).with_tenant_id(tenant_id);
    // Keep the event's own place in its chain when it states one.
    let chain = event
        .correlation_id
        .clone()
        .unwrap_or_else(|| event.id.clone());
    match (event.chain_position, &event.prev_event_hash) {
        (Some(position), Some(prev)) if position >= 1 => {
            sealer.resume_chain(chain, position - 1, prev.clone());
        }
        (None, None) => sealer.resume_chain(chain, 0, ZERO_HASH),
        _ => bail!("the event has only one of chain_position (>= 1) and prev_event_hash"),
    }
    let sealed = sealer.seal(&event)?;
    if let Err(errors) = validate(SchemaKind::ExecutionEvent, &sealed.event) {
        bail!(
            "the sealed event does not match the intentproof.event.v1 schema:\n  {}",
            errors.join("\n  ")
        );
    }
    println!("{}", serde_json::to_string(&sealed.event)?);
    Ok(())
}

fn verify(key_arg: &str, file: &str) -> Result<()> {
    let text = key_text(key_arg)?;
    let candidates = if text.trim_start().starts_with('{') {
        vec![InstanceKey::from_key_file_text(&text)?.verifying_key()]
    } else if text.contains("-----BEGIN") {
        vec![keys::parse_public_key(&text)?]
    } else {
        // 32 raw bytes: a public key or a seed; try both readings.
        let mut c = Vec::new();
        if let Ok(public) = keys::parse_public_key(&text) {
            c.push(public);
        }
        let seed = keys::parse_seed(&text)
            .context("--key is neither a public key, a seed nor a key file")?;
        c.push(seed.verifying_key());
        c
    };
    let input = parse_strict(&read_input(file)?).map_err(|e| Invalid(format!("{file}: {e}")))?;
    let mut last_error = None;
    let mut hash = None;
    for key in &candidates {
        match verify_event(&input, key) {
            Ok(h) => {
                hash = Some(h);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let Some(hash) = hash else {
        let reason =
            last_error.map_or_else(|| "no key to verify with".to_owned(), |e| e.to_string());
        return Err(Invalid(reason).into());
    };
    if let Err(errors) = validate(SchemaKind::ExecutionEvent, &input) {
        return Err(Invalid(format!(
            "signature is good, but the event does not match the intentproof.event.v1 schema:\n  {}",
            errors.join("\n  ")
        ))
        .into());
    }
    let id = input.get("event_id").and_then(Value::as_str).unwrap_or("?");
    println!("valid: event {id}, content hash {hash}");
    Ok(())
}
