//! `intentproof verify FILE [--json] [--key [KEY_ID=]PUB]...`: offline
//! verification of a proof bundle (`.proof.tar.zst`, or a plain tar).
//!
//! Standard output is the reference verifier's human form (`✓ pass:
//! <reason>` / `✗ fail: <reason>`, then `- <finding>` lines), or with
//! `--json` the full report. In the human form, what exactly failed and the
//! warnings (what a pass does not vouch for) go to standard error.
//!
//! Exit status: 0 pass, 1 fail, 2 usage or I/O error (unreadable file or key).

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use intentproof_bundle::{ReadLimits, TrustedKey, VerifyOptions, parse_public_key_bytes, verify};
use intentproof_core::keys::InstanceKey;

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
    /// raw 32 bytes, a PEM `PUBLIC KEY`, or a key file from `keys new`. A key
    /// checks the manifest signature (required once any key is given) and
    /// events whose key the bundle does not carry; a key with an id must
    /// equal the bundle's `keys/<KEY_ID>.pub`.
    #[arg(long = "key", value_name = "[KEY_ID=]PUB")]
    pub keys: Vec<String>,
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
    /// Integrity, then the policy replayed in plain words: what was intended,
    /// what ran, what is missing. Exit 0 when both hold, 1 otherwise.
    Explain {
        /// The bundle, or `-` for standard input.
        file: String,
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

/// Reads one `--key` argument.
fn trusted_key(arg: &str) -> Result<TrustedKey> {
    let (key_id, path) = if Path::new(arg).is_file() {
        (None, arg)
    } else {
        match arg.split_once('=') {
            Some((id, path)) if !id.is_empty() => (Some(id.to_owned()), path),
            _ => bail!("--key {arg}: no such file (use PATH or KEY_ID=PATH)"),
        }
    };
    let bytes = std::fs::read(path).with_context(|| format!("cannot read key file {path}"))?;
    let key = match parse_public_key_bytes(&bytes) {
        Ok(k) => k,
        Err(e) => {
            let text = String::from_utf8_lossy(&bytes);
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

/// Runs `intentproof verify`: `Ok(0)` pass, `Ok(1)` fail; `Err` for usage
/// and I/O errors (the caller prints it and exits 2).
pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    match args.command {
        Some(VerifyCommand::Explain { file }) => return explain(&file, args.max_bytes),
        Some(VerifyCommand::Replay { file }) => return replay(&file, args.max_bytes),
        None => {}
    }
    let file = args.file.clone().context("name the bundle file")?;
    let trusted_keys = args
        .keys
        .iter()
        .map(|k| trusted_key(k))
        .collect::<Result<Vec<_>>>()?;
    let bytes = read_bundle(&file, args.max_bytes)?;
    let options = VerifyOptions {
        trusted_keys,
        limits: ReadLimits {
            max_total_bytes: args.max_bytes,
            max_members: args.max_members,
            max_member_bytes: args.max_bytes,
        },
        threads: 0,
    };
    let report = verify(&bytes, &options);
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", report.to_json())?;
    } else {
        out.write_all(report.human().as_bytes())?;
        if let Some(detail) = &report.detail {
            eprintln!("{}: {detail}", report.reason);
        }
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
    }
    out.flush()?;
    Ok(ExitCode::from(report.exit_code()))
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

fn replay_bundle(bytes: &[u8]) -> Result<Replayed> {
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
    let replayed = replay_bundle(&read_bundle(file, max_bytes)?)?;
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

fn explain(file: &str, max_bytes: u64) -> Result<ExitCode> {
    use intentproof_policy::verification::Outcome;
    let bytes = read_bundle(file, max_bytes)?;
    let report = verify(&bytes, &VerifyOptions::default());
    let mut out = String::new();
    if report.passed() {
        out.push_str(&format!(
            "Integrity: ✓ pass ({}): the record is complete and unchanged since it was signed.\n",
            report.reason
        ));
    } else {
        out.push_str(&format!(
            "Integrity: ✗ fail ({}){}\nThe record cannot be trusted; what follows is only what it claims.\n",
            report.reason,
            report.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
        ));
    }
    let replayed = replay_bundle(&bytes)?;
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
    for event in &replayed.events {
        out.push_str(&format!(
            "  {}  {:<6} {}  (intent: {})\n",
            text(event, "completed_at"),
            text(event, "status"),
            text(event, "action"),
            text(event, "intent")
        ));
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
    let fulfilled = replayed.run.status == Outcome::Pass;
    out.push_str(&match replayed.run.status {
        Outcome::Pass => "\nVerdict: everything that was intended happened.\n".to_owned(),
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
    Ok(ExitCode::from(if report.passed() && fulfilled {
        0
    } else {
        1
    }))
}
