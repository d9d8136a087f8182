//! `intentproof verify FILE [--json] [--key [KEY_ID=]PUB]... [--allow-unattested]`:
//! offline verification of a proof bundle (`.proof.tar.zst`, or a plain tar).
//!
//! The checks show that a bundle is consistent with itself; only the
//! manifest signature, checked with a key the caller gives (`--key`, the
//! exporter's public key), shows that no event was left out since export.
//! So there are three verdicts:
//!
//! - attested (the checks pass and a given key verified the manifest
//!   signature): the reference verifier's form (`✓ pass:
//!   bundle.verify_pass`, then `- <finding>` lines), exit 0;
//! - unattested (the checks pass, no given key vouches for the bundle):
//!   `⚠ unattested: <what verified>, but <why not attested>: events may have
//!   been left out...`, the findings (the last `bundle.verify_unattested`),
//!   exit 3. `--allow-unattested` accepts such a bundle: the reference form,
//!   exit 0, the missing attestation named on standard error;
//! - fail (`✗ fail: <reason>` and the findings so far), exit 1.
//!
//! What exactly failed and the warnings go to standard error. `--json`
//! prints the full report (its `verdict` is `attested`, `unattested` or
//! `fail`; `status` is the checks' pass or fail) with the same exit codes.
//! Exit 2: usage or I/O error (unreadable file or key).
//!
//! `verify explain` says the same in words, then the bundle's policy
//! replayed over its events; a task call (MCP tasks: the call event plus a
//! later `intentproof.call.completed` naming it) shows, and is judged by,
//! its task's outcome. `verify replay` re-evaluates the bundled policy over
//! the events as recorded, as the exporter computed `run.json`.

use std::io::{Read, Write};

use intentproof_core::tlog::note::NoteVerifier;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use intentproof_bundle::{
    ReadLimits, Report, TrustedKey, Verdict, VerifyOptions, parse_public_key_bytes, verify,
    verify_buffered, verify_reader,
};
use intentproof_core::keys::InstanceKey;
use intentproof_findings::{CALL_EVENT_ID_ATTRIBUTE, COMPLETED_ACTION, TASK_ID_ATTRIBUTE};

/// Arguments of `intentproof verify`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct VerifyArgs {
    /// `explain` or `replay` instead of the verifier's report.
    #[command(subcommand)]
    pub command: Option<VerifyCommand>,
    /// The bundle: .proof.tar.zst or plain tar, or `-` for standard input.
    #[arg(required = true)]
    pub file: Option<String>,
    /// Print the machine-readable JSON report instead of the human form.
    #[arg(long)]
    pub json: bool,
    /// A public key to trust (repeatable): `PATH`, or `KEY_ID=PATH` to bind
    /// it to one key id. The file holds base64 or hex of the 32-byte key, the
    /// raw 32 bytes, a PEM `PUBLIC KEY`, what `intentproof keys show` prints
    /// (its `key_id` binds the key to that id), or a key file from `keys
    /// new`. A key checks the manifest signature (required once any key is
    /// given) and events whose key the bundle does not carry; a key with an
    /// id must equal the bundle's `keys/<KEY_ID>.pub`. Without one, nothing
    /// attests the bundle (exit 3).
    #[arg(long = "key", value_name = "[KEY_ID=]PUB")]
    pub keys: Vec<String>,
    /// Require a witness's cosignature on every event's C2SP checkpoint
    /// (repeatable; each one given is required): `NAME=KEY` with the
    /// witness's name and its Ed25519 public key (base64, or a file as for
    /// `--key`), or its verifier key `name+id+base64(0x04 || key)` as
    /// `intentproof keys transparency` prints it. Checks the bundle's
    /// `tlog-proofs.jsonl`; a bundle without it fails.
    #[arg(long = "witness", value_name = "NAME=KEY")]
    pub witnesses: Vec<String>,
    /// Accept a bundle whose checks pass but that no given key attests:
    /// print the reference verifier's report and exit 0 (the missing
    /// attestation is named on standard error).
    #[arg(long)]
    pub allow_unattested: bool,
    /// Most bytes the archive may decompress to.
    #[arg(long, value_name = "BYTES", default_value_t = ReadLimits::default().max_total_bytes)]
    pub max_bytes: u64,
    /// Most members the archive may hold.
    #[arg(long, value_name = "N", default_value_t = ReadLimits::default().max_members)]
    pub max_members: usize,
}

/// `intentproof verify explain|replay FILE`.
#[derive(Debug, clap::Subcommand)]
pub enum VerifyCommand {
    /// Integrity and who attests it, then the policy replayed in plain
    /// words: what was intended, what ran (a task call with its task's
    /// outcome), what is missing. Exit 0 when the bundle is attested and
    /// the intent fulfilled, 1 when a check fails or the intent is not
    /// fulfilled, 3 when only the attestation is missing (no `--key`).
    Explain {
        /// The bundle, or `-` for standard input.
        file: String,
        /// A public key to trust, as for `verify` (repeatable).
        #[arg(long = "key", value_name = "[KEY_ID=]PUB")]
        keys: Vec<String>,
        /// Exit 0 rather than 3 for a bundle that only lacks the attestation.
        #[arg(long)]
        allow_unattested: bool,
    },
    /// Re-evaluate the bundle's policy over its events and print the run
    /// JSON. Exit 0 pass, 1 fail, 2 inconclusive (does not check integrity:
    /// use `verify` or `verify explain` for that). In an auditor or
    /// counterparty bundle, a rule that reads a field the profile withheld
    /// is left out of the run and named on standard error, and the run is
    /// at best inconclusive.
    Replay {
        /// The bundle, or `-` for standard input.
        file: String,
    },
}

/// Most bytes a `--key` file may have (a PEM key is about 113).
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The value of the line `name: value` in what `intentproof keys show`
/// prints.
fn shown_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(':')
            .map(str::trim)
            .filter(|v| !v.is_empty())
    })
}

/// Reads one `--key` argument.
fn trusted_key(arg: &str) -> Result<TrustedKey> {
    let (mut key_id, path) = if Path::new(arg).is_file() {
        (None, arg)
    } else {
        match arg.split_once('=') {
            Some((id, path)) if !id.is_empty() => (Some(id.to_owned()), path),
            _ => bail!("--key {arg}: no such file (use PATH or KEY_ID=PATH)"),
        }
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read key file {path}"))?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        bail!("key file {path} is larger than {MAX_KEY_FILE_BYTES} bytes: it is not a public key");
    }
    let text = String::from_utf8_lossy(&bytes);
    // What `intentproof keys show` prints: its key id binds the key.
    if let Some(public) = shown_field(&text, "public_key") {
        let key = parse_public_key_bytes(public.as_bytes())
            .map_err(|e| anyhow::anyhow!("key file {path}: `public_key:` is not a key: {e}"))?;
        if let Some(shown) = shown_field(&text, "key_id") {
            match &key_id {
                Some(given) if given != shown => bail!(
                    "--key {arg}: the file is the key of {shown}, not of {given} (drop `{given}=` \
                     or give the right file)"
                ),
                _ => key_id = Some(shown.to_owned()),
            }
        }
        return Ok(TrustedKey { key_id, key });
    }
    let key = match parse_public_key_bytes(&bytes) {
        Ok(k) => k,
        Err(e) => {
            if text.trim_start().starts_with('{') {
                InstanceKey::from_key_file_text(&text)
                    .with_context(|| format!("key file {path} is not a key"))?
                    .verifying_key()
            } else {
                bail!("key file {path} is not an Ed25519 public key: {e}");
            }
        }
    };
    Ok(TrustedKey { key_id, key })
}

/// Reads one `--witness` argument: a cosignature verifier key, or
/// `NAME=KEY` (KEY: base64 of the public key, or a key file).
pub fn witness_key(arg: &str) -> Result<NoteVerifier> {
    use intentproof_core::tlog::note::KeyType;
    if let Ok(verifier) = arg.parse::<NoteVerifier>() {
        if verifier.key_type() != KeyType::Cosignature {
            bail!(
                "--witness {arg}: not a cosignature key (type 0x04); give the witness key `intentproof keys transparency` prints on the witness"
            );
        }
        return Ok(verifier);
    }
    let Some((name, key)) = arg
        .split_once('=')
        .filter(|(n, k)| !n.is_empty() && !k.is_empty())
    else {
        bail!("--witness {arg}: expected NAME=KEY or a verifier key name+id+base64");
    };
    let key = match parse_public_key_bytes(key.as_bytes()) {
        Ok(key) => key,
        Err(_) if Path::new(key).is_file() => trusted_key(key)?.key,
        Err(e) => bail!("--witness {arg}: {key:?} is neither a public key nor a key file: {e}"),
    };
    NoteVerifier::new(name, KeyType::Cosignature, key)
        .map_err(|e| anyhow::anyhow!("--witness {arg}: {e}"))
}

/// Reads every `--key` argument.
fn trusted_keys(args: &[String]) -> Result<Vec<TrustedKey>> {
    args.iter().map(|k| trusted_key(k)).collect()
}

/// The exit code of a verdict; `--allow-unattested` turns an unattested
/// one into 0.
fn verdict_exit_code(verdict: Verdict, allow_unattested: bool) -> u8 {
    match verdict {
        Verdict::Unattested if allow_unattested => 0,
        v => v.exit_code(),
    }
}

fn read_bundle(file: &str, limit: u64) -> Result<Vec<u8>> {
    // The compressed input is never larger than what it may decompress to
    // (plus zstd's framing); refuse a larger file before reading it.
    let cap = limit.saturating_add(1 << 20);
    let mut buf = Vec::new();
    if file == "-" {
        std::io::stdin()
            .lock()
            .take(cap + 1)
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("cannot read {file}"))?;
        f.take(cap + 1)
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read {file}"))?;
    }
    if buf.len() as u64 > cap {
        bail!("{file} is larger than --max-bytes ({limit}) allows");
    }
    Ok(buf)
}

/// Verifies the bundle in `file` (`-`: standard input). A regular file is
/// streamed: read once, in memory bounded by what the checks keep per event
/// rather than by the bundle ([`verify_reader`]); when that stops (a check
/// fails, or the bundle is not in the usual form), and for standard input
/// or a pipe, the bundle is read whole and verified the buffered way. The
/// report is the same either way.
fn verify_file(file: &str, options: &VerifyOptions, max_bytes: u64) -> Result<Report> {
    if file != "-" {
        let meta = std::fs::metadata(file).with_context(|| format!("cannot read {file}"))?;
        if meta.is_file() {
            let cap = max_bytes.saturating_add(1 << 20);
            if meta.len() > cap {
                bail!("{file} is larger than --max-bytes ({max_bytes}) allows");
            }
            let f = std::fs::File::open(file).with_context(|| format!("cannot read {file}"))?;
            if let Ok(report) = verify_reader(f.take(cap), options) {
                return Ok(report);
            }
            let bytes = read_bundle(file, max_bytes)?;
            return Ok(verify_buffered(&bytes, options));
        }
    }
    let bytes = read_bundle(file, max_bytes)?;
    Ok(verify(&bytes, options))
}

/// Runs `intentproof verify`: `Ok(0)` pass, `Ok(1)` fail; `Err` for usage
/// and I/O errors (the caller prints it and exits 2).
pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    match args.command {
        Some(VerifyCommand::Explain {
            file,
            keys,
            allow_unattested,
        }) => return explain(&file, &keys, allow_unattested, args.max_bytes),
        Some(VerifyCommand::Replay { file }) => return replay(&file, args.max_bytes),
        None => {}
    }
    let file = args.file.clone().context("name the bundle file")?;
    let trusted_keys = trusted_keys(&args.keys)?;
    let options = VerifyOptions {
        trusted_keys,
        limits: ReadLimits {
            max_total_bytes: args.max_bytes,
            max_members: args.max_members,
            max_member_bytes: args.max_bytes,
        },
        threads: 0,
        witnesses: args
            .witnesses
            .iter()
            .map(|w| witness_key(w))
            .collect::<Result<_>>()?,
    };
    let report = verify_file(&file, &options, args.max_bytes)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", report.to_json())?;
    } else {
        out.write_all(
            if args.allow_unattested {
                report.human()
            } else {
                report.human_verdict()
            }
            .as_bytes(),
        )?;
        if let Some(detail) = &report.detail {
            eprintln!("{}: {detail}", report.reason);
        }
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
    }
    if args.allow_unattested
        && let Some(why) = report.unattested_because()
    {
        eprintln!(
            "warning: accepted unattested (--allow-unattested): {why}: events may have been left out"
        );
    }
    out.flush()?;
    Ok(ExitCode::from(verdict_exit_code(
        report.verdict,
        args.allow_unattested,
    )))
}

/// The bundle's policy evaluated over its events, with the events.
struct Replayed {
    policy: intentproof_policy::verification::Policy,
    run: intentproof_policy::verification::Run,
    events: Vec<serde_json::Value>,
    /// Rules the run leaves out: they read an event field the bundle's
    /// export profile withheld.
    not_replayable: Vec<NotReplayable>,
}

/// A rule that cannot be replayed from an `auditor` / `counterparty`
/// bundle, because the profile withheld an event field it reads.
struct NotReplayable {
    rule_id: String,
    /// The profile (`projection`) of the events.
    profile: String,
    /// The withheld fields the rule reads.
    fields: Vec<String>,
}

impl NotReplayable {
    fn sentence(&self) -> String {
        format!(
            "not replayable: the {} profile withheld {}, which this rule reads (the full bundle can decide it)",
            self.profile,
            self.fields
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Whether a rule's spec reads event `attributes`: a `where` /
/// `where_predecessor` predicate on an `attribute`, `match_by_attribute`,
/// or a consensus source of kind `intentproof_action` (which reads the
/// claim attribute of the matching event).
fn reads_attributes(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Object(o) => {
            o.contains_key("attribute")
                || o.contains_key("match_by_attribute")
                || o.get("kind").and_then(Value::as_str) == Some("intentproof_action")
                || o.values().any(reads_attributes)
        }
        Value::Array(a) => a.iter().any(reads_attributes),
        _ => false,
    }
}

/// The event fields the evaluator may read for `rule`.
fn fields_read(rule: &serde_json::Value) -> Vec<&'static str> {
    let mut fields = vec!["event_id", "action", "status", "started_at", "completed_at"];
    if rule.get("spec").is_some_and(reads_attributes) {
        fields.push("attributes");
    }
    fields
}

/// Drops the findings of the rules at `dropped` (indices into the
/// policy's rules, which are the findings' indices) and recomputes the
/// summary, the status (at best inconclusive: something was not decided)
/// and the fingerprint.
fn drop_findings(run: &mut intentproof_policy::verification::Run, dropped: &[usize]) {
    use intentproof_policy::verification::{Outcome, Summary};
    let findings = std::mem::take(&mut run.findings);
    run.findings = findings
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !dropped.contains(i))
        .map(|(_, f)| f)
        .collect();
    run.summary = Summary::of(&run.findings);
    if !dropped.is_empty() {
        run.status = if run.summary.outcome_counts.fail > 0 {
            Outcome::Fail
        } else {
            Outcome::Inconclusive
        };
    }
    run.run_fingerprint = run.compute_fingerprint();
}

/// Gives each task call (attribute `mcp.task.id`) the status of its
/// `intentproof.call.completed` event, as findings do: a call whose task
/// failed did not succeed. A call with no completion keeps its own status
/// (its task was only seen to start).
fn join_task_outcomes(events: &mut [intentproof_policy::verification::FlowEvent]) {
    let outcomes: std::collections::HashMap<String, Option<String>> = events
        .iter()
        .filter(|e| e.action.as_deref() == Some(COMPLETED_ACTION))
        .filter_map(|e| {
            let call = e.attributes.get(CALL_EVENT_ID_ATTRIBUTE)?.as_str()?;
            Some((call.to_owned(), e.status.clone()))
        })
        .collect();
    for event in events.iter_mut() {
        if event.action.as_deref() != Some(COMPLETED_ACTION)
            && event.attributes.contains_key(TASK_ID_ATTRIBUTE)
            && let Some(status) = outcomes.get(&event.event_id)
        {
            event.status.clone_from(status);
        }
    }
}

/// Reads the bundle and evaluates its policy; with `join_tasks`, a task
/// call is judged by its task's outcome ([`join_task_outcomes`]), else by
/// the call event as recorded (as the exporter computed `run.json`).
fn replay_bundle(bytes: &[u8], join_tasks: bool) -> Result<Replayed> {
    use intentproof_policy::verification::{
        EvalOptions, Flow, Policy, PolicyFormat, evaluate, parse_attestations_jsonl,
        parse_events_jsonl,
    };
    let archive = intentproof_bundle::read_archive(bytes, &ReadLimits::default())
        .context("cannot read the bundle")?;
    let member = |name: &str| {
        archive
            .members
            .iter()
            .find(|m| m.path == name)
            .map(|m| m.data.as_slice())
    };
    let policy = Policy::parse(
        member("policy.json").context("the bundle has no policy.json")?,
        PolicyFormat::Json,
    )
    .context("policy.json")?;
    let events_text = std::str::from_utf8(member("events.jsonl").unwrap_or_default())
        .context("events.jsonl is not UTF-8")?;
    let mut flow = Flow::from_json(member("flow.json").context("the bundle has no flow.json")?)
        .context("flow.json")?;
    flow.events = parse_events_jsonl(events_text).context("events.jsonl")?;
    // A call the guard refused never ran: the plan's rules do not see it.
    flow.events
        .retain(|e| !intentproof_policy::guard::refused(&e.attributes));
    if join_tasks {
        join_task_outcomes(&mut flow.events);
    }
    let attestations = parse_attestations_jsonl(
        std::str::from_utf8(member("attestations.jsonl").unwrap_or_default())
            .context("attestations.jsonl is not UTF-8")?,
    )
    .context("attestations.jsonl")?;
    let mut run = evaluate(&policy, &flow, &attestations, &EvalOptions::default());
    let events: Vec<serde_json::Value> = events_text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();

    // Projections (auditor / counterparty): a rule reading a withheld
    // field is not replayed, and says so; never a pass over missing data.
    let mut withheld = std::collections::BTreeSet::new();
    let mut profile = String::new();
    for event in &events {
        if let Some(o) = event.as_object()
            && intentproof_bundle::projection::is_projection(o)
        {
            if let Some(p) = o.get("projection").and_then(serde_json::Value::as_str) {
                p.clone_into(&mut profile);
            }
            if let Some(w) = o.get("withheld").and_then(serde_json::Value::as_object) {
                withheld.extend(w.keys().cloned());
            }
        }
    }
    let mut not_replayable = Vec::new();
    let mut dropped = Vec::new();
    // `evaluate` gives one finding per rule, or none for a flow outside the
    // policy's scope (decided on actions, which no profile withholds).
    if !withheld.is_empty() && run.findings.len() == policy.rules().len() {
        for (i, rule) in policy.rules().iter().enumerate() {
            let fields: Vec<String> = fields_read(rule)
                .into_iter()
                .filter(|f| withheld.contains(*f))
                .map(str::to_owned)
                .collect();
            if !fields.is_empty() {
                dropped.push(i);
                not_replayable.push(NotReplayable {
                    rule_id: run.findings[i].rule_id.clone(),
                    profile: profile.clone(),
                    fields,
                });
            }
        }
        drop_findings(&mut run, &dropped);
    }
    Ok(Replayed {
        policy,
        run,
        events,
        not_replayable,
    })
}

fn replay(file: &str, max_bytes: u64) -> Result<ExitCode> {
    use intentproof_policy::verification::Outcome;
    let replayed = replay_bundle(&read_bundle(file, max_bytes)?, false)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&replayed.run.to_value())?
    );
    for n in &replayed.not_replayable {
        eprintln!("rule {}: {}", n.rule_id, n.sentence());
    }
    Ok(ExitCode::from(match replayed.run.status {
        Outcome::Pass => 0,
        Outcome::Fail => 1,
        Outcome::Inconclusive => 2,
    }))
}

fn text<'a>(value: &'a serde_json::Value, key: &str) -> &'a str {
    if value.get("withheld").and_then(|w| w.get(key)).is_some() {
        return "(withheld)";
    }
    value
        .get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?")
}

fn attribute<'a>(event: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    event.get("attributes")?.get(key)?.as_str()
}

/// At most `max` characters of `text`, ending in `…` when cut.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Longest rendering of a task's result or error message in `explain`.
const MAX_OUTCOME_CHARS: usize = 120;

/// A task's result in one line: the text items of an MCP result's
/// `content`, else its JSON; clipped.
fn result_text(done: &serde_json::Value) -> String {
    if done.get("withheld").and_then(|w| w.get("output")).is_some() {
        return "(result withheld by the profile)".into();
    }
    let Some(output) = done.get("output") else {
        return "(no result recorded)".into();
    };
    let texts: Vec<&str> = output
        .get("content")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("text").and_then(serde_json::Value::as_str))
        .collect();
    let line = if texts.is_empty() {
        output.to_string()
    } else {
        texts.join(" ")
    };
    clip(&line, MAX_OUTCOME_CHARS)
}

/// The task completions of a bundle, by the id of the call event each
/// completes (attribute `intentproof.call.event_id`).
fn completions(
    events: &[serde_json::Value],
) -> std::collections::HashMap<&str, &serde_json::Value> {
    events
        .iter()
        .filter(|e| e.get("action").and_then(serde_json::Value::as_str) == Some(COMPLETED_ACTION))
        .filter_map(|e| Some((attribute(e, CALL_EVENT_ID_ATTRIBUTE)?, e)))
        .collect()
}

/// For a task call (attribute `mcp.task.id`), how its task ended, from its
/// completion event, or that the bundle has none. `None` for other events.
fn task_outcome(
    call: &serde_json::Value,
    completions: &std::collections::HashMap<&str, &serde_json::Value>,
) -> Option<(String, bool)> {
    if call.get("action").and_then(serde_json::Value::as_str) == Some(COMPLETED_ACTION) {
        return None;
    }
    let task_id = attribute(call, TASK_ID_ATTRIBUTE)?;
    let call_id = call.get("event_id").and_then(serde_json::Value::as_str)?;
    let Some(done) = completions.get(call_id) else {
        return Some((
            format!(
                "task {task_id}: no outcome in this bundle: it was never seen to finish, so the \
                 call's `{}` only says that the task started",
                text(call, "status")
            ),
            false,
        ));
    };
    let status = text(done, "status");
    let task_status = attribute(done, "mcp.task.status").unwrap_or(status);
    let what = if status == "ok" {
        result_text(done)
    } else {
        done.pointer("/error/message")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| "(no message)".to_owned(), |m| clip(m, MAX_OUTCOME_CHARS))
    };
    Some((
        format!(
            "task {task_id}: {task_status} ({status}) at {}: {what}",
            text(done, "completed_at")
        ),
        true,
    ))
}

/// For a completion event, what it completes.
fn completion_note(
    event: &serde_json::Value,
    calls: &std::collections::HashSet<&str>,
) -> Option<String> {
    if event.get("action").and_then(serde_json::Value::as_str) != Some(COMPLETED_ACTION) {
        return None;
    }
    let task_id = attribute(event, TASK_ID_ATTRIBUTE).unwrap_or("?");
    let call = attribute(event, CALL_EVENT_ID_ATTRIBUTE)?;
    Some(if calls.contains(call) {
        format!("the outcome of task {task_id}, shown on its call")
    } else {
        format!("the outcome of task {task_id}; its call, event {call}, is not in this bundle")
    })
}

/// For a call the guard refused: that it never ran, the rule, the
/// fingerprint of what was enforced, and why.
fn guard_note(event: &serde_json::Value) -> Option<String> {
    use intentproof_policy::guard;
    if !event
        .get("attributes")
        .and_then(serde_json::Value::as_object)
        .is_some_and(guard::refused)
    {
        return None;
    }
    let why = event
        .pointer("/error/message")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("(no message)");
    Some(format!(
        "refused by policy before it reached the server (rule {}, policy {}): {}",
        attribute(event, guard::RULE_ATTRIBUTE).unwrap_or("?"),
        attribute(event, guard::FINGERPRINT_ATTRIBUTE).unwrap_or("?"),
        clip(why, MAX_OUTCOME_CHARS)
    ))
}

/// For an approval event: the request (what it is bound to) or the
/// decision (who, when, why), and for a call let through by a person, who.
fn approval_note(event: &serde_json::Value) -> Option<String> {
    use intentproof_core::actions::{APPROVAL_DECIDED_ACTION, APPROVAL_REQUESTED_ACTION};
    let action = event.get("action").and_then(serde_json::Value::as_str)?;
    let input = |key: &str| {
        event
            .pointer(&format!("/inputs/{key}"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    let output = |key: &str| {
        event
            .pointer(&format!("/output/{key}"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    match action {
        APPROVAL_REQUESTED_ACTION => Some(format!(
            "held for approval {} (rule {}; arguments digest {}, policy {}; expires {})",
            input("approval_id"),
            input("rule"),
            input("arguments_digest"),
            input("policy_fingerprint"),
            input("expires_at"),
        )),
        APPROVAL_DECIDED_ACTION => {
            let decision = output("decision").unwrap_or_else(|| "?".into());
            let why = output("reason").map_or_else(String::new, |r| format!(": {r}"));
            let at = output("at").unwrap_or_else(|| "?".into());
            let who = match output("by") {
                Some(by) => format!(" by {by}"),
                None => String::new(),
            };
            Some(format!(
                "{decision}{who} at {at}, arguments digest {} (approval {}){why}",
                input("arguments_digest"),
                input("approval_id"),
            ))
        }
        _ => attribute(event, "intentproof.approval.by").map(|by| {
            format!(
                "let through by {by} (approval {})",
                attribute(event, "intentproof.approval.id").unwrap_or("?")
            )
        }),
    }
}

fn explain(
    file: &str,
    keys: &[String],
    allow_unattested: bool,
    max_bytes: u64,
) -> Result<ExitCode> {
    use intentproof_policy::verification::Outcome;
    let options = VerifyOptions {
        trusted_keys: trusted_keys(keys)?,
        ..VerifyOptions::default()
    };
    let bytes = read_bundle(file, max_bytes)?;
    let report = verify(&bytes, &options);
    let mut out = integrity(&report);
    let replayed = replay_bundle(&bytes, true)?;
    let intended = replayed
        .policy
        .to_value()
        .get("name")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .or_else(|| replayed.policy.policy_id().map(str::to_owned))
        .unwrap_or_else(|| "(the policy does not say)".into());
    out.push_str(&format!("\nWhat was intended: {intended}\n"));
    out.push_str(&format!("\nWhat ran ({} events):\n", replayed.events.len()));
    let completions = completions(&replayed.events);
    let calls: std::collections::HashSet<&str> = replayed
        .events
        .iter()
        .filter_map(|e| e.get("event_id").and_then(serde_json::Value::as_str))
        .collect();
    let mut unfinished = Vec::new();
    for event in &replayed.events {
        out.push_str(&format!(
            "  {}  {:<6} {}  (intent: {})\n",
            text(event, "completed_at"),
            text(event, "status"),
            text(event, "action"),
            text(event, "intent")
        ));
        if let Some((outcome, finished)) = task_outcome(event, &completions) {
            out.push_str(&format!("      {outcome}\n"));
            if !finished {
                unfinished.push(format!(
                    "task {} of `{}`",
                    attribute(event, TASK_ID_ATTRIBUTE).unwrap_or("?"),
                    text(event, "action")
                ));
            }
        }
        if let Some(note) = completion_note(event, &calls) {
            out.push_str(&format!("      {note}\n"));
        }
        if let Some(note) = guard_note(event) {
            out.push_str(&format!("      {note}\n"));
        }
        if let Some(note) = approval_note(event) {
            out.push_str(&format!("      {note}\n"));
        }
    }
    out.push_str(&format!(
        "\nWhat was checked (policy {}):\n",
        replayed.policy.policy_id().unwrap_or("?")
    ));
    let mut missing = Vec::new();
    for finding in &replayed.run.findings {
        let mark = match finding.outcome {
            Outcome::Pass => "✓",
            Outcome::Fail => "✗",
            Outcome::Inconclusive => "?",
        };
        out.push_str(&format!(
            "  {mark} {}: {}\n",
            finding.rule_id, finding.human_summary
        ));
        if finding.outcome == Outcome::Fail {
            let action = replayed
                .policy
                .rule(&finding.rule_id)
                .and_then(|r| r.get("spec"))
                .and_then(|s| s.get("action"))
                .and_then(serde_json::Value::as_str)
                .map(|a| format!(" `{a}`"))
                .unwrap_or_default();
            missing.push(format!("{}{action}", finding.rule_id));
        }
    }
    for n in &replayed.not_replayable {
        out.push_str(&format!("  ? {}: {}\n", n.rule_id, n.sentence()));
    }
    let fulfilled = replayed.run.status == Outcome::Pass && unfinished.is_empty();
    out.push_str(&match replayed.run.status {
        Outcome::Pass if !unfinished.is_empty() => format!(
            "\nVerdict: unsettled: never seen to finish: {}.\n",
            unfinished.join(", ")
        ),
        Outcome::Pass if report.attested() => {
            "\nVerdict: everything that was intended happened.\n".to_owned()
        }
        Outcome::Pass if report.passed() => "\nVerdict: everything that was intended happened, \
            as far as these events show; nothing attests that they are all (see Integrity).\n"
            .to_owned(),
        Outcome::Pass => "\nVerdict: everything that was intended happened, as the record \
            claims; but it failed its checks (see Integrity).\n"
            .to_owned(),
        Outcome::Fail => format!(
            "\nVerdict: INCOMPLETE. Missing or failed: {}.\n",
            missing.join(", ")
        ),
        Outcome::Inconclusive if !replayed.not_replayable.is_empty() => {
            "\nVerdict: inconclusive: this bundle's profile withheld what some rules read.\n"
                .to_owned()
        }
        Outcome::Inconclusive => {
            "\nVerdict: inconclusive: the events cannot decide every rule.\n".to_owned()
        }
    });
    print!("{out}");
    Ok(ExitCode::from(if !report.passed() || !fulfilled {
        1
    } else {
        verdict_exit_code(report.verdict, allow_unattested)
    }))
}

/// `explain`'s first paragraph: whether the checks pass and who attests
/// the bundle, in words.
fn integrity(report: &Report) -> String {
    if let Some(why) = report.unattested_because() {
        return format!(
            "Integrity: ⚠ NOT ATTESTED: {} verify, but {why}. Nothing shows that no event was \
             left out: the last events of a chain can be dropped without a trace. Pass --key with \
             the exporter's public key.\nWhat follows is only what these events show.\n",
            report.what_verified()
        );
    }
    if report.attested() {
        return format!(
            "Integrity: ✓ pass ({}), attested by key {}: {} verify, and the key's holder (the \
             exporter) vouches that these are the events it exported, none added, changed or \
             left out since.\n",
            report.reason,
            report.summary.manifest_signer.as_deref().unwrap_or("?"),
            report.what_verified()
        );
    }
    format!(
        "Integrity: ✗ fail ({}){}\nThe record cannot be trusted; what follows is only what it claims.\n",
        report.reason,
        report
            .detail
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use intentproof_policy::verification::FlowEvent;
    use serde_json::json;

    #[test]
    fn keys_show_output_gives_the_key_and_binds_its_id() {
        let key = InstanceKey::from_seed("inst_shown", [4u8; 32]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exporter.pub");
        let shown = format!(
            "instance_id: {}\nkey_id: {}\npublic_key: {}\n{}",
            key.instance_id(),
            key.key_id(),
            key.public_key_base64(),
            key.public_key_pem()
        );
        std::fs::write(&path, shown).unwrap();
        let arg = path.to_str().unwrap();
        let trusted = trusted_key(arg).unwrap();
        assert_eq!(trusted.key, key.verifying_key());
        assert_eq!(trusted.key_id.as_deref(), Some("inst_shown:k1"));
        // The same id given again is fine; another id is refused, named.
        let same = trusted_key(&format!("inst_shown:k1={arg}")).unwrap();
        assert_eq!(same.key_id.as_deref(), Some("inst_shown:k1"));
        let other = trusted_key(&format!("inst_other:k1={arg}"))
            .unwrap_err()
            .to_string();
        assert!(
            other.contains("the file is the key of inst_shown:k1, not of inst_other:k1"),
            "{other}"
        );
        // A PEM alone binds no id.
        std::fs::write(&path, key.public_key_pem()).unwrap();
        assert_eq!(trusted_key(arg).unwrap().key_id, None);
    }

    #[test]
    fn unattested_exits_3_unless_allowed() {
        assert_eq!(verdict_exit_code(Verdict::Unattested, false), 3);
        assert_eq!(verdict_exit_code(Verdict::Unattested, true), 0);
        assert_eq!(verdict_exit_code(Verdict::Fail, true), 1);
        assert_eq!(verdict_exit_code(Verdict::Attested, false), 0);
    }

    #[test]
    fn clip_cuts_on_characters() {
        assert_eq!(clip("héllo", 10), "héllo");
        assert_eq!(clip("héllo", 2), "hé…");
    }

    #[test]
    fn a_task_call_takes_its_completions_status() {
        let mut call = FlowEvent::new("call-1", "mcp.s.job");
        call.attributes
            .insert(TASK_ID_ATTRIBUTE.into(), json!("t-1"));
        let mut unfinished = FlowEvent::new("call-2", "mcp.s.job");
        unfinished
            .attributes
            .insert(TASK_ID_ATTRIBUTE.into(), json!("t-2"));
        let mut done = FlowEvent::new("done-1", COMPLETED_ACTION);
        done.status = Some("error".into());
        done.attributes
            .insert(CALL_EVENT_ID_ATTRIBUTE.into(), json!("call-1"));
        let mut events = vec![call, unfinished, done];
        join_task_outcomes(&mut events);
        let statuses: Vec<_> = events.iter().map(|e| e.status.as_deref()).collect();
        assert_eq!(statuses, [Some("error"), Some("ok"), Some("error")]);
    }
}
