//! `intentproof doctor` (is this installation healthy, and if not, what to
//! do), `intentproof health` (the container health check) and
//! `intentproof completions` / `intentproof man` (generated from the clap
//! definitions, so they never drift from the real flags).
//!
//! The doctor only reads: it never repairs, creates or chmods anything, so
//! it is safe to run against a live data dir. Each finding is one line:
//! `✓` fine, `!` worth knowing, `✗` broken, followed by the fix.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use intentproof_api::datadir::{DataDir, default_server, server_given};
use intentproof_gateway::Config;
use serde_json::{Value, json};

use crate::daemon::data_dir_or_default;

/// `intentproof doctor` flags.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Data directory [default: $INTENTPROOF_DATA_DIR or ~/.intentproof]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Gateway config file to check [default: $INTENTPROOF_CONFIG, if set]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Daemon URL [default: $INTENTPROOF_SERVER, else the one in daemon.json, else
    /// http://127.0.0.1:9787]
    #[arg(long)]
    pub server: Option<String>,
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `intentproof health` flags.
#[derive(Args, Debug)]
pub struct HealthArgs {
    /// Daemon URL [default: $INTENTPROOF_SERVER, else http://127.0.0.1:9787]
    #[arg(long)]
    pub server: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Warn,
    Fail,
}

/// One line of the doctor's report.
#[derive(Debug)]
struct Check {
    outcome: Outcome,
    what: &'static str,
    detail: String,
    fix: Option<String>,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn ok(&mut self, what: &'static str, detail: impl Into<String>) {
        self.push(Outcome::Ok, what, detail.into(), None);
    }
    fn warn(&mut self, what: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(Outcome::Warn, what, detail.into(), Some(fix.into()));
    }
    fn fail(&mut self, what: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(Outcome::Fail, what, detail.into(), Some(fix.into()));
    }
    fn push(&mut self, outcome: Outcome, what: &'static str, detail: String, fix: Option<String>) {
        self.checks.push(Check {
            outcome,
            what,
            detail,
            fix,
        });
    }
}

/// Mode bits of `path`, or `None` when it does not exist.
fn mode(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

/// A secret file must exist and be readable by its owner only.
fn check_private_file(report: &mut Report, what: &'static str, path: &Path, how_to_create: &str) {
    match mode(path) {
        None => report.fail(
            what,
            format!("{} is missing", path.display()),
            how_to_create.to_owned(),
        ),
        Some(m) if m & 0o077 != 0 => report.fail(
            what,
            format!(
                "{} is mode {m:04o}: others can read a secret",
                path.display()
            ),
            format!("chmod 600 {}", path.display()),
        ),
        Some(m) => report.ok(what, format!("{} (mode {m:04o})", path.display())),
    }
}

/// Each configured witness (`[[transparency.witnesses]]`): the largest
/// checkpoint it cosigned, against the log's latest, from the data dir's
/// notes and cosignatures (a witness that never cosigned is named; the
/// daemon's log says why each attempt failed).
fn check_witnesses(report: &mut Report, config: &Config, data_dir: &Path) {
    use intentproof_core::tlog::checkpoint::TlogCheckpoint;
    use intentproof_store::checkpoint::cosigned_note;
    let size_of = |note: Option<intentproof_core::tlog::note::Note>| {
        note.and_then(|n| TlogCheckpoint::parse(n.text()).ok())
            .map(|cp| cp.size)
    };
    for witness in &config.transparency.witnesses {
        let Ok(key) = witness.verifier() else {
            continue; // the config check above reported it
        };
        let name = key.name().to_owned();
        let latest = cosigned_note(data_dir, |_, _| true).map(size_of);
        let cosigned = cosigned_note(data_dir, |_, by| by.contains(&name)).map(size_of);
        match (latest, cosigned) {
            (Err(e), _) | (_, Err(e)) => report.fail(
                "witness",
                format!("{name}: cannot read the checkpoint notes: {e}"),
                "run `intentproof store verify`; restore the data dir's checkpoint files from backup",
            ),
            (Ok(None), _) => report.ok(
                "witness",
                format!("{name} at {}: no checkpoint yet to send", witness.url),
            ),
            (Ok(Some(latest)), Ok(None)) => report.warn(
                "witness",
                format!(
                    "{name} at {} has cosigned none of this log's checkpoints (latest size {latest})",
                    witness.url
                ),
                "check the url and key, and that the witness lists this log's key in its [[transparency.logs]] (`intentproof keys transparency`); the daemon's log says why each attempt failed",
            ),
            (Ok(Some(latest)), Ok(Some(size))) => report.ok(
                "witness",
                format!("{name} cosigned size {size} of {latest}"),
            ),
        }
    }
}

/// `[fleet]`: the database answers, its schema is one this build knows,
/// and what it holds of this daemon (records, checkpoints, faults).
fn check_fleet(report: &mut Report, config: &Config, data_dir: &Path) {
    let Some(fleet) = &config.fleet else {
        return;
    };
    let url = fleet.display_url();
    let instance = intentproof_core::keys::InstanceKey::load_from(data_dir)
        .map(|k| k.instance_id().to_owned())
        .unwrap_or_default();
    let probe = async {
        let client = fleet.connect().await.map_err(|e| e.to_string())?;
        let version = intentproof_fleet::schema::version(&client)
            .await
            .map_err(|e| e.to_string())?;
        if version == 0 {
            return Ok::<_, String>((version, None));
        }
        let row = client
            .query_opt(
                "SELECT d.next_seq,
                        (SELECT count(*) FROM intentproof.checkpoints c WHERE c.daemon = d.daemon),
                        (SELECT count(*) FROM intentproof.faults f WHERE f.daemon = d.daemon)
                 FROM intentproof.daemons d WHERE d.daemon = $1",
                &[&instance],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            version,
            row.map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2))),
        ))
    };
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(10), probe)
                    .await
                    .unwrap_or_else(|_| Err("no answer within 10 s".into()))
            })
        });
    let known = intentproof_fleet::schema::SCHEMA_VERSION;
    match outcome {
        Err(e) => report.fail(
            "fleet",
            format!("{url}: {e}"),
            "start PostgreSQL or fix [fleet] postgres_url / password_file; the daemon keeps recording locally and catches up once it answers",
        ),
        Ok((0, _)) => report.ok(
            "fleet",
            format!("{url} answers; the daemon creates the fleet schema at its next start"),
        ),
        Ok((version, _)) if version > known => report.fail(
            "fleet",
            format!("{url} is at fleet schema {version}, newer than this build's {known}"),
            "upgrade intentproof on this machine",
        ),
        Ok((version, None)) => report.ok(
            "fleet",
            format!("{url} answers (schema {version}); this daemon ({instance}) has not replicated yet"),
        ),
        Ok((version, Some((records, checkpoints, 0)))) => report.ok(
            "fleet",
            format!("{url} (schema {version}) holds {records} records and {checkpoints} checkpoints of this daemon ({instance})"),
        ),
        Ok((_, Some((_, _, faults)))) => report.fail(
            "fleet",
            format!("{url} recorded {faults} fault(s) for this daemon ({instance}): its history and the database's disagree, and replication stopped"),
            "run `intentproof fleet verify` to see them; restore the data dir from backup or investigate before replicating again",
        ),
    }
}

fn check_config(report: &mut Report, path: &Path, data_dir: &Path) {
    // As `serve` reads it: the file, then the INTENTPROOF_* environment.
    let config = match Config::from_file(path).and_then(|c| c.apply_env(|n| std::env::var(n).ok()))
    {
        Ok(config) => config,
        Err(e) => {
            report.fail(
                "config",
                e.to_string(),
                "fix the named field; the README's Configuration section lists every setting",
            );
            return;
        }
    };
    report.ok(
        "config",
        format!(
            "{} parses: listen {}, {} MCP server(s), {} exporter(s)",
            path.display(),
            config.listen,
            config.mcp.servers.len(),
            config.exporters.len()
        ),
    );
    check_witnesses(report, &config, data_dir);
    check_fleet(report, &config, data_dir);
    // `serve`'s own refusals, in its words.
    for problem in [config.ingest_token_problem(), config.mcp_token_problem()]
        .into_iter()
        .flatten()
    {
        report.fail(
            "config",
            problem,
            "`intentproof serve` refuses this config until then",
        );
    }
    if let Some(policy) = &config.redaction_policy {
        match std::fs::read_to_string(policy)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                intentproof_policy::redact::RedactionPolicy::from_yaml(&text)
                    .map_err(|e| e.to_string())
            }) {
            Ok(_) => report.ok("redaction policy", policy.display().to_string()),
            Err(e) => report.fail(
                "redaction policy",
                format!("{}: {e}", policy.display()),
                "fix the policy (format: policies/redaction/README.md)",
            ),
        }
    }
    // The daemon's own check (`check_policy`): what fails here stops
    // `intentproof serve`, with the same message.
    for policy in &config.verification_policies {
        match crate::policy::read_policy(policy) {
            Ok(_) => report.ok("verification policy", policy.display().to_string()),
            Err(invalid) => {
                for line in invalid.lines() {
                    report.fail(
                        "verification policy",
                        line,
                        format!(
                            "correct it and check with `intentproof policy lint {}`; the daemon will not start until then",
                            policy.display()
                        ),
                    );
                }
            }
        }
    }
}

/// GETs `url` with an optional bearer token; `Ok((status, body))`.
fn http_get(url: &str, token: Option<&str>, timeout: Duration) -> Result<(u16, Value)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .context("cannot build an HTTP client")?;
        let mut request = client.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| anyhow::Error::new(e.without_url()))?;
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    })
}

fn check_daemon(report: &mut Report, dir: &DataDir, server: Option<String>) -> bool {
    let recorded = dir.daemon_url();
    let base = dir.daemon_base(server_given(server));
    let base = base.trim_end_matches('/');
    match http_get(&format!("{base}/healthz"), None, Duration::from_secs(3)) {
        Ok((200, body)) => {
            report.ok(
                "daemon",
                format!(
                    "answers at {base} (instance {})",
                    body["instance_id"].as_str().unwrap_or("?")
                ),
            );
            let token = dir.token().ok();
            match http_get(
                &format!("{base}/v1/events?limit=1"),
                token.as_deref(),
                Duration::from_secs(3),
            ) {
                Ok((200, _)) => report.ok("api access", "the daemon accepts this data dir's token"),
                Ok((status, _)) => report.fail(
                    "api access",
                    format!("the daemon at {base} refused this data dir's token ({status})"),
                    "pass the --data-dir the daemon was started with",
                ),
                Err(e) => report.fail("api access", format!("{e:#}"), "check the daemon's log"),
            }
            true
        }
        Ok((status, _)) => {
            report.fail(
                "daemon",
                format!("{base}/healthz answered {status}"),
                "is something else listening there? check --server",
            );
            false
        }
        Err(e) => {
            let stale = if recorded.is_some() {
                " (daemon.json is left from a daemon that is gone)"
            } else {
                ""
            };
            report.warn(
                "daemon",
                format!("nothing answers at {base}: {e:#}{stale}"),
                format!(
                    "start it: intentproof serve --data-dir {}",
                    dir.path().display()
                ),
            );
            false
        }
    }
}

fn check_store(report: &mut Report, dir: &DataDir, daemon_running: bool) {
    if !dir.path().join("journal").exists() {
        report.warn(
            "store",
            "no journal yet (no event was ever stored here)",
            "record something: intentproof demo, or point an agent at intentproof mcp",
        );
        return;
    }
    if daemon_running {
        report.ok(
            "store",
            "in use by the running daemon; stop it and run `intentproof store verify` for a full replay",
        );
        return;
    }
    let ring = match dir.key_ring() {
        Ok(ring) => ring,
        Err(e) => {
            report.fail(
                "store",
                e.to_string(),
                "check trusted-keys/ in the data dir",
            );
            return;
        }
    };
    match intentproof_store::verify(dir.path(), &|i| ring.get(i), ring.daemon()) {
        Ok(r) => report.ok(
            "store",
            format!(
                "{} records replayed: chains linked, {} signatures verified, Merkle root {}",
                r.records,
                r.signatures_verified,
                match r.checkpoint_size {
                    Some(size) => format!("matches the signed checkpoint of {size}"),
                    None => "not yet checkpointed".to_owned(),
                }
            ),
        ),
        Err(problem) => report.fail(
            "store",
            problem,
            "keep a copy of the data dir for review; `intentproof store rebuild` recreates the index from the journal",
        ),
    }
}

/// The shipper's file of events the daemon refused for good (kept for
/// review, never delivered again).
const REJECTED_SPOOL: &str = "rejected.jsonl";

/// Events (non-blank lines) in one spool file; unreadable counts as none.
/// Read line by line: a spool can be large.
fn spooled_events(path: &Path) -> usize {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open(path) else {
        return 0;
    };
    std::io::BufReader::new(file)
        .split(b'\n')
        .map_while(Result::ok)
        .filter(|line| !line.trim_ascii().is_empty())
        .count()
}

/// Events waiting in `spool/*.jsonl`. A shipper empties its file (to 0
/// bytes) once the daemon has everything, and the file stays until its
/// process ends: an empty file waits for nothing. Refused events are
/// reported apart: starting the daemon will not deliver them.
fn check_spool(report: &mut Report, dir: &DataDir) {
    let spool = dir.path().join("spool");
    let (mut waiting, mut files, mut rejected) = (0, 0, 0);
    for entry in std::fs::read_dir(&spool).into_iter().flatten().flatten() {
        let path = entry.path();
        if !path.is_file() || path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let events = spooled_events(&path);
        if path.file_name().is_some_and(|n| n == REJECTED_SPOOL) {
            rejected = events;
        } else if events > 0 {
            waiting += events;
            files += 1;
        }
    }
    if waiting > 0 {
        report.warn(
            "spool",
            format!(
                "{waiting} event(s) in {files} spool file(s) wait for the daemon in {}",
                spool.display()
            ),
            "start the daemon; the gateway drains the spool when it answers",
        );
    } else {
        report.ok("spool", "no event waits for the daemon");
    }
    let torn = spooled_events(&spool.join(intentproof_gateway::shipper::TORN_TAILS));
    if torn > 0 {
        report.warn(
            "spool",
            format!(
                "{torn} spool write(s) cut short by a kill are kept in {} (not events: nothing to deliver)",
                spool.join(intentproof_gateway::shipper::TORN_TAILS).display()
            ),
            "the calls they were recording were answered within the loss window before the kill; delete the file once reviewed",
        );
    }
    if rejected > 0 {
        report.warn(
            "spool",
            format!(
                "{rejected} event(s) the daemon refused are kept in {}",
                spool.join(REJECTED_SPOOL).display()
            ),
            "the daemon's log says why each was refused; delete the file once reviewed",
        );
    }
}

/// Runs every check and prints them; exit 1 when any failed.
pub fn doctor(args: DoctorArgs) -> Result<ExitCode> {
    // A data dir someone named (flag or environment) that is missing is a
    // mistake; the default one missing is a fresh installation, where the
    // doctor is the first thing the README suggests running.
    let named = args.data_dir.is_some()
        || std::env::var_os("INTENTPROOF_DATA_DIR").is_some_and(|d| !d.is_empty());
    let dir = DataDir::new(data_dir_or_default(args.data_dir)?);
    let mut report = Report::default();
    match mode(dir.path()) {
        None if !named => {
            report.warn(
                "data dir",
                format!(
                    "{} not created yet: nothing has run on it (a fresh installation)",
                    dir.path().display()
                ),
                "`intentproof serve` (or the first `intentproof mcp`) creates it; \
                 `intentproof demo` runs in a directory of its own",
            );
        }
        None => {
            report.fail(
                "data dir",
                format!("{} does not exist", dir.path().display()),
                format!(
                    "intentproof serve --data-dir {} creates it (or pass the right --data-dir)",
                    dir.path().display()
                ),
            );
        }
        Some(m) => {
            if m & 0o077 != 0 {
                report.warn(
                    "data dir",
                    format!("{} is mode {m:04o}", dir.path().display()),
                    format!("chmod 700 {}", dir.path().display()),
                );
            } else {
                report.ok(
                    "data dir",
                    format!("{} (mode {m:04o})", dir.path().display()),
                );
            }
            let key_path = dir.path().join(intentproof_core::keys::KEY_FILE_NAME);
            check_private_file(
                &mut report,
                "instance key",
                &key_path,
                "intentproof keys new (or start the daemon once)",
            );
            if key_path.exists() {
                match intentproof_core::keys::InstanceKey::load_from(dir.path()) {
                    Ok(key) => report.ok("instance key", format!("loads: key id {}", key.key_id())),
                    Err(e) => report.fail(
                        "instance key",
                        e.to_string(),
                        "restore instance_key.json from backup; a new key starts new chains",
                    ),
                }
            }
            check_private_file(
                &mut report,
                "token",
                &dir.token_path(),
                "start the daemon once: it writes the token",
            );
            let daemon_running = check_daemon(&mut report, &dir, args.server);
            check_store(&mut report, &dir, daemon_running);
            check_spool(&mut report, &dir);
        }
    }
    let config = args
        .config
        .or_else(|| std::env::var_os("INTENTPROOF_CONFIG").map(PathBuf::from));
    match config {
        Some(path) => check_config(&mut report, &path, dir.path()),
        None => report.ok(
            "config",
            "none given: built-in defaults (loopback, port 9787)",
        ),
    }

    let failed = report.checks.iter().any(|c| c.outcome == Outcome::Fail);
    if args.json {
        let checks: Vec<Value> = report
            .checks
            .iter()
            .map(|c| {
                json!({
                    "check": c.what,
                    "outcome": match c.outcome { Outcome::Ok => "ok", Outcome::Warn => "warn", Outcome::Fail => "fail" },
                    "detail": c.detail,
                    "fix": c.fix,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"healthy": !failed, "checks": checks}))?
        );
    } else {
        for c in &report.checks {
            let mark = match c.outcome {
                Outcome::Ok => "✓",
                Outcome::Warn => "!",
                Outcome::Fail => "✗",
            };
            println!("{mark} {:<19} {}", c.what, c.detail);
            if let Some(fix) = &c.fix {
                println!("  {:<19} fix: {fix}", "");
            }
        }
        println!(
            "{}",
            if failed {
                "something is broken: see the ✗ lines"
            } else {
                "healthy"
            }
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Exit 0 when the daemon answers `/healthz` with status ok, 1 otherwise.
pub fn health(args: HealthArgs) -> Result<ExitCode> {
    let base = server_given(args.server).unwrap_or_else(default_server);
    let url = format!("{}/healthz", base.trim_end_matches('/'));
    match http_get(&url, None, Duration::from_secs(args.timeout_secs.max(1))) {
        Ok((200, body)) if body["status"] == "ok" => {
            println!("ok: {url}");
            Ok(ExitCode::SUCCESS)
        }
        Ok((status, _)) => {
            eprintln!("unhealthy: {url} answered {status}");
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}
