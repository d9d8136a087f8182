//! `intentproof policy`: lint, compile, evaluate and test verification
//! policies (`intentproof.policy.v1`).
//!
//! ```text
//! intentproof policy lint FILE            exit 0 valid, 1 invalid (problems printed)
//! intentproof policy compile FILE         print the JSON form of a (YAML) policy
//! intentproof policy eval --policy P --flow F [--attestations A.jsonl] [--events E.jsonl]
//!                                         print the run; exit 0 pass, 1 fail, 2 inconclusive
//! intentproof policy test DIR             run reference fixtures; exit 1 on any failure
//! ```
//!
//! Policy files are read as YAML (the authoring form) when their name ends
//! in `.yaml`/`.yml`, as JSON when it ends in `.json`, else by content, and
//! checked by [`read_policy`]: the same validation (`check_policy`) that
//! `intentproof serve` and `intentproof doctor` run, so lint's verdict and
//! messages are the daemon's.
//! Errors reading inputs exit 3 for `eval` (2 means inconclusive there);
//! for the other commands [`run`] returns them (`main` exits 2).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use intentproof_core::canon::parse_strict;
use intentproof_policy::verification::{
    EvalOptions, Flow, InvalidPolicy, MAX_POLICY_BYTES, Outcome, Policy, PolicyFormat,
    check_policy, evaluate, parse_attestations_jsonl, parse_events_jsonl,
    reference::check_reference_fixture, scope_matches,
};
use serde_json::Value;

/// `intentproof policy ...`
#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check a policy (JSON or YAML): schema, fingerprint, rule semantics.
    Lint {
        /// Policy file (`.json`, `.yaml`/`.yml`), or `-` for standard input.
        file: String,
    },
    /// Print the JSON form of a policy (YAML compiled, fingerprint filled in).
    Compile {
        /// Policy file, or `-` for standard input.
        file: String,
    },
    /// Evaluate a policy over a flow and print the run (intentproof.run.v1).
    Eval {
        /// Policy file (JSON or YAML).
        #[arg(long)]
        policy: String,
        /// Flow file (intentproof.flow.v1); its `events` may be references
        /// or full event objects.
        #[arg(long)]
        flow: String,
        /// Attestations, one JSON object a line.
        #[arg(long)]
        attestations: Option<String>,
        /// Events, one JSON object a line; replace the flow's events.
        #[arg(long)]
        events: Option<String>,
    },
    /// Run the reference fixtures of a policy pack directory (one holding
    /// pack.json) or of every pack under a directory.
    Test {
        /// Pack directory, or a parent of several.
        dir: PathBuf,
    },
}

/// Runs a `policy` subcommand and returns the process exit code.
///
/// `Err` means the inputs of `lint`, `compile` or `test` could not be read
/// (the caller prints it and exits 2); `eval` prints its own input errors
/// and exits 3, since its 2 means inconclusive.
pub fn run(command: PolicyCommand) -> Result<ExitCode> {
    match command {
        PolicyCommand::Lint { file } => match read_policy(Path::new(&file)) {
            Ok(policy) => {
                emit(&format!(
                    "{file}: ok ({} rule{}, {})",
                    policy.rules().len(),
                    if policy.rules().len() == 1 { "" } else { "s" },
                    policy.fingerprint()?
                ))?;
                Ok(ExitCode::SUCCESS)
            }
            Err(invalid) => {
                emit(&invalid.to_string())?;
                Ok(ExitCode::from(1))
            }
        },
        PolicyCommand::Compile { file } => {
            let policy = load_policy(&file)?;
            emit(&serde_json::to_string_pretty(&policy.to_value())?)?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Eval {
            policy,
            flow,
            attestations,
            events,
        } => match eval(&policy, &flow, attestations.as_deref(), events.as_deref()) {
            Ok(code) => Ok(code),
            Err(e) => {
                // 2 means inconclusive here, so input errors exit 3.
                eprintln!("error: {e:#}");
                Ok(ExitCode::from(3))
            }
        },
        PolicyCommand::Test { dir } => test(&dir),
    }
}

/// Prints `text` and a newline; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn read(path: &str) -> Result<Vec<u8>> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("cannot read stdin")?;
        return Ok(buf);
    }
    fs::read(path).with_context(|| format!("cannot read {path}"))
}

fn read_text(path: &str) -> Result<String> {
    String::from_utf8(read(path)?).map_err(|_| anyhow!("{path} is not UTF-8 text"))
}

/// Reads a policy file (`-`: standard input), at most [`MAX_POLICY_BYTES`]
/// + 1 bytes, and runs the one validation on it ([`check_policy`]).
pub fn read_policy(path: &Path) -> Result<Policy, InvalidPolicy> {
    let name = path.display().to_string();
    let mut bytes = Vec::new();
    let limit = MAX_POLICY_BYTES as u64 + 1;
    let read = if name == "-" {
        std::io::Read::read_to_end(
            &mut std::io::Read::take(std::io::stdin(), limit),
            &mut bytes,
        )
    } else {
        fs::File::open(path).and_then(|f| {
            std::io::Read::read_to_end(&mut std::io::Read::take(f, limit), &mut bytes)
        })
    };
    read.map_err(|e| InvalidPolicy::unreadable(&name, &e))?;
    check_policy(&name, &bytes, PolicyFormat::for_path(path))
}

/// Reads a policy without judging it (`compile` prints what lint would
/// refuse, so the compiled form can be inspected).
fn load_policy(path: &str) -> Result<Policy> {
    Policy::parse(&read(path)?, PolicyFormat::for_path(Path::new(path)))
        .with_context(|| format!("policy {path}"))
}

fn eval(
    policy_path: &str,
    flow_path: &str,
    attestations: Option<&str>,
    events: Option<&str>,
) -> Result<ExitCode> {
    let bytes = read(policy_path)?;
    let format = PolicyFormat::for_path(Path::new(policy_path));
    let policy = Policy::parse(&bytes, format).with_context(|| format!("policy {policy_path}"))?;
    if let Err(invalid) = check_policy(policy_path, &bytes, format) {
        for line in invalid.lines() {
            eprintln!("warning: {line}");
        }
        eprintln!("warning: evaluating anyway; the run carries the computed policy_fingerprint");
    }
    let mut flow =
        Flow::from_json(&read(flow_path)?).with_context(|| format!("flow {flow_path}"))?;
    if let Some(path) = events {
        flow.events =
            parse_events_jsonl(&read_text(path)?).with_context(|| format!("events {path}"))?;
    }
    let attestations = match attestations {
        Some(path) => parse_attestations_jsonl(&read_text(path)?)
            .with_context(|| format!("attestations {path}"))?,
        None => Vec::new(),
    };
    let now = intentproof_core::now_rfc3339_millis();
    let options = EvalOptions {
        started_at: Some(now.clone()),
        completed_at: Some(now),
        ..EvalOptions::default()
    };
    if policy.scope().ignore_flows_with_no_match && !scope_matches(&policy, &flow) {
        eprintln!(
            "note: no event of the flow is in the policy's scope; the flow is ignored (no findings)"
        );
    }
    let run = evaluate(&policy, &flow, &attestations, &options);
    emit(&serde_json::to_string_pretty(&run)?)?;
    Ok(match run.status {
        Outcome::Pass => ExitCode::SUCCESS,
        Outcome::Fail => ExitCode::from(1),
        Outcome::Inconclusive => ExitCode::from(2),
    })
}

fn find_packs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if dir.join("pack.json").is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for p in entries {
        find_packs(&p, out)?;
    }
    Ok(())
}

fn json_file(path: &Path) -> Result<Value> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_strict(&bytes).with_context(|| format!("{} is not valid JSON", path.display()))
}

fn test(dir: &Path) -> Result<ExitCode> {
    let mut packs = Vec::new();
    find_packs(dir, &mut packs)?;
    if packs.is_empty() {
        return Err(anyhow!(
            "no pack.json under {}; give a reference pack directory (…/<name>/v1) or a parent of several",
            dir.display()
        ));
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for pack_dir in packs {
        let pack = json_file(&pack_dir.join("pack.json"))?;
        let name = pack
            .get("reference_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| pack_dir.display().to_string());
        let policy_file = pack_dir.join(
            pack.get("policy")
                .and_then(Value::as_str)
                .unwrap_or("policy.json"),
        );
        // An invalid policy is reported once, as lint reports it; each of
        // its fixtures then fails pointing at it.
        let policy = match read_policy(&policy_file) {
            Ok(policy) => Ok(policy),
            Err(invalid) => {
                for line in invalid.lines() {
                    emit(&line)?;
                }
                let n = invalid.problems.len();
                Err(format!(
                    "the pack's policy is invalid ({n} problem{} above)",
                    if n == 1 { "" } else { "s" }
                ))
            }
        };
        let fixtures = pack
            .get("fixtures")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for fixture in fixtures {
            let id = fixture.get("id").and_then(Value::as_str).unwrap_or("?");
            let file = |k: &str, default: &str| {
                pack_dir.join(fixture.get(k).and_then(Value::as_str).unwrap_or(default))
            };
            let result = policy.clone().map_err(|e| anyhow!(e)).and_then(|policy| {
                let flow = json_file(&file("flow", "flow.json"))?;
                let expected = json_file(&file("expected_run", "expected-run.json"))?;
                let atts_path = file("attestations", "attestations.jsonl");
                let atts = if atts_path.is_file() {
                    fs::read_to_string(&atts_path)
                        .with_context(|| format!("cannot read {}", atts_path.display()))?
                } else {
                    String::new()
                };
                check_reference_fixture(&policy, &flow, &atts, &expected)?;
                Ok(())
            });
            match result {
                Ok(()) => {
                    passed += 1;
                    emit(&format!("ok    {name}/{id}"))?;
                }
                Err(e) => {
                    failed += 1;
                    emit(&format!("FAIL  {name}/{id}: {e:#}"))?;
                }
            }
        }
    }
    emit(&format!("{passed} passed, {failed} failed"))?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn test_runs_every_reference_pack() {
        let dir = root().join("tests/fixtures/intentproof-spec/reference-policies");
        let code = run(PolicyCommand::Test { dir }).expect("runs");
        assert_eq!(code, ExitCode::SUCCESS);
        let one = root()
            .join("tests/fixtures/intentproof-spec/reference-policies/access/production-deploy/v1");
        assert_eq!(
            run(PolicyCommand::Test { dir: one }).expect("runs"),
            ExitCode::SUCCESS
        );
        assert!(
            run(PolicyCommand::Test {
                dir: root().join("policies/verification")
            })
            .is_err()
        );
    }

    #[test]
    fn lint_and_eval_exit_codes() {
        let tmp =
            std::env::temp_dir().join(format!("intentproof-policy-cli-{}", std::process::id()));
        fs::create_dir_all(&tmp).expect("tmp");
        let sample = root().join("policies/verification/refund-with-receipt.yaml");
        let sample = sample.to_string_lossy().into_owned();
        assert_eq!(
            run(PolicyCommand::Lint {
                file: sample.clone()
            })
            .expect("lint"),
            ExitCode::SUCCESS
        );
        let bad = tmp.join("bad.yaml");
        fs::write(&bad, "policy_id: p\ntenant_id: t\nrules:\n  - id: r\n    type: required\n    severity: urgent\n    action: a\n").expect("write");
        assert_eq!(
            run(PolicyCommand::Lint {
                file: bad.to_string_lossy().into_owned()
            })
            .expect("lint"),
            ExitCode::from(1)
        );
        let flow = tmp.join("flow.json");
        fs::write(&flow, r#"{"flow_id":"f","events":[{"event_id":"e1","action":"stripe.refund.create","status":"ok"}]}"#).expect("write");
        let events = tmp.join("events.jsonl");
        fs::write(
            &events,
            "{\"event_id\":\"e1\",\"action\":\"stripe.refund.create\",\"status\":\"ok\"}\n{\"event_id\":\"e2\",\"action\":\"email.customer.refund_receipt\",\"status\":\"ok\"}\n",
        )
        .expect("write");
        let eval = |events: Option<&Path>| {
            run(PolicyCommand::Eval {
                policy: sample.clone(),
                flow: flow.to_string_lossy().into_owned(),
                attestations: None,
                events: events.map(|p| p.to_string_lossy().into_owned()),
            })
            .expect("eval")
        };
        assert_eq!(eval(None), ExitCode::from(1), "receipt missing: fail");
        assert_eq!(
            eval(Some(&events)),
            ExitCode::SUCCESS,
            "events replace the flow's"
        );
        let inconclusive = tmp.join("ordering.yaml");
        fs::write(&inconclusive, "policy_id: p\ntenant_id: t\nrules:\n  - id: o\n    type: ordering\n    before: x\n    after: stripe.refund.create\n").expect("write");
        let code = run(PolicyCommand::Eval {
            policy: inconclusive.to_string_lossy().into_owned(),
            flow: flow.to_string_lossy().into_owned(),
            attestations: None,
            events: None,
        })
        .expect("eval");
        assert_eq!(code, ExitCode::from(2));
        let missing = run(PolicyCommand::Eval {
            policy: sample.clone(),
            flow: tmp.join("nope.json").to_string_lossy().into_owned(),
            attestations: None,
            events: None,
        })
        .expect("eval reports input errors itself");
        assert_eq!(missing, ExitCode::from(3));
        let _ = fs::remove_dir_all(&tmp);
    }
}
