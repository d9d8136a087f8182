//! Findings to webhooks (`[[webhooks]]`): each new finding is POSTed to
//! every configured receiver as the spec's `webhook-finding.v1` document
//! (`intentproof.webhook_finding.v1`), signed with the daemon key.
//!
//! ```toml
//! [[webhooks]]
//! name = "oncall"                     # names the delivery log: keep it stable
//! url = "https://hooks.example/intentproof"
//! headers = { Authorization = "Bearer ..." }   # sent, never logged
//! timeout_ms = 5000
//! links_base = "https://gateway.example"       # the links' base (default http://<listen>)
//! ```
//!
//! **The document.** `finding` is the finding in `finding.v1` form: a
//! policy violation is the failing finding of that policy's run; the
//! gateway's own flags map to a rule category and reason code (table in
//! [`finding_v1`]). `context` is the run the finding belongs to: the
//! policy's run for a violation, else the correlation's run as
//! `intentproof export` computes it (its plan compiled to a policy). The
//! signature is Ed25519 over the JCS bytes of the document without its
//! `signature` member, by the daemon key; the schema fixes `key_id` to
//! `platform@webhook-signer-2026q2`, so a receiver verifies with the
//! daemon's public key (`intentproof keys show --pem`), whatever the id.
//!
//! **Delivery.** One receiver's findings go out one at a time, in the
//! order the findings API lists them, each retried with backoff (and the
//! receiver's `Retry-After`) until it answers 2xx; then the finding's id
//! is appended (fsync'd) to `<data-dir>/webhooks/<name>.jsonl`, and it is
//! never sent to that receiver again. A crash between the 2xx and that
//! line sends it once more after the restart, with the same
//! `delivery_id` (derived from the receiver and the finding), so a
//! receiver that keeps the ids it saw gets each finding exactly once.
//! A receiver configured later gets every finding that exists then.
//!
//! What it does not do: send `finding.superseded`, `run.completed` or
//! `certificate.issued` events; batch findings; deliver to a receiver
//! that redirects (redirects are not followed, as for exporters).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use intentproof_api::wire::FindingRow;
use intentproof_core::backoff::Backoff;
use intentproof_core::canon::canonicalize_object_without;
use intentproof_policy::verification::{EvalOptions, Finding, Flow, Outcome, Run, evaluate};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use crate::config::WebhookConfig;
use crate::finding_delivery::{DeliveryLog, all_findings};
use crate::metrics::Metrics;
use crate::state::AppState;

/// `schema` of the documents.
pub const WEBHOOK_SCHEMA: &str = "intentproof.webhook_finding.v1";
/// `signature.key_id` (fixed by the schema).
pub const WEBHOOK_KEY_ID: &str = "platform@webhook-signer-2026q2";
/// `context.reason_catalog_version`: the spec's reason codes we emit.
pub const REASON_CATALOG_VERSION: &str = "0.2.0";

/// A finding's stable id: `fnd_` + 32 hex of SHA-256 over what identifies
/// it (kind, correlation, plan, step, action, events), not its wording.
pub fn finding_id(row: &FindingRow) -> String {
    let identity = json!([
        row.kind,
        row.correlation_id,
        row.plan_id,
        row.step_index,
        row.action,
        row.event_ids
    ]);
    let digest = Sha256::digest(identity.to_string().as_bytes());
    format!(
        "fnd_{}",
        &intentproof_core::merkle::hex(&digest.into())[..32]
    )
}

/// The receiver's `delivery_id` of a finding: stable across retries and
/// restarts.
pub fn delivery_id(receiver: &str, finding_id: &str) -> String {
    let digest = Sha256::digest(format!("{receiver}\n{finding_id}").as_bytes());
    format!(
        "del_{}",
        &intentproof_core::merkle::hex(&digest.into())[..32]
    )
}

/// A gateway flag as a `finding.v1` object. Kinds map as follows:
///
/// | kind | rule_category | reason | severity |
/// |---|---|---|---|
/// | `incomplete_intent`, `failed_step` | required | `fail.required.missing` | high |
/// | `incomplete_call` | required | `fail.required.missing` | high |
/// | `unplanned_call` | forbidden | `fail.forbidden.present` | medium |
/// | `task_unfinished` | temporal | `fail.temporal.exceeded_max` | medium |
/// | `tool_changed` | claim_match | `fail.claim_match.mismatch` | high |
/// | anything else | unknown | `inconclusive.unknown.unsupported_rule_category` | medium |
///
/// (`policy_violation` does not come here: its policy's own finding is sent.)
pub fn finding_v1(row: &FindingRow) -> Value {
    let (category, outcome, reason, severity, hint) = match row.kind.as_ref() {
        "incomplete_intent" | "failed_step" => (
            "required",
            "fail",
            "fail.required.missing",
            "high",
            "A step of the declared plan did not complete: finish it, or close the plan with the reason it was skipped.",
        ),
        "incomplete_call" => (
            "required",
            "fail",
            "fail.required.missing",
            "high",
            "The call started but its result was never recorded: check whether it took effect upstream.",
        ),
        "unplanned_call" => (
            "forbidden",
            "fail",
            "fail.forbidden.present",
            "medium",
            "A call outside the declared plan: declare it in the plan, or find out why the agent made it.",
        ),
        "task_unfinished" => (
            "temporal",
            "fail",
            "fail.temporal.exceeded_max",
            "medium",
            "A task never reported completion within the idle time.",
        ),
        "tool_changed" => (
            "claim_match",
            "fail",
            "fail.claim_match.mismatch",
            "high",
            "A tool's definition changed from its pin: review it and approve the new definition (`intentproof tools`).",
        ),
        _ => (
            "unknown",
            "inconclusive",
            "inconclusive.unknown.unsupported_rule_category",
            "medium",
            "See the finding's message.",
        ),
    };
    let rule_id = match (&row.plan_id, row.step_index) {
        (Some(plan), Some(step)) => format!("plan.{plan}.step-{}", step + 1),
        (Some(plan), None) => format!("plan.{plan}.{}", row.kind),
        _ => format!("gateway.{}", row.kind),
    };
    json!({
        "provenance_class": "platform_attested",
        "rule_id": rule_id,
        "rule_category": category,
        "outcome": outcome,
        "severity": severity,
        "reason": reason,
        "evidence_event_ids": row.event_ids,
        "evidence_attestation_ids": [],
        "remediation_hint": hint,
        "human_summary": row.message,
    })
}

/// The unsigned document of `finding` (finding.v1) in `run`.
#[allow(clippy::too_many_arguments)]
pub fn document(
    delivery_id: &str,
    tenant: &str,
    emitted_at: &str,
    finding: Value,
    run: &Run,
    correlation: &str,
    links_base: &str,
    finding_id: &str,
) -> Value {
    let base = links_base.trim_end_matches('/');
    let corr = percent_encode(correlation);
    json!({
        "schema": WEBHOOK_SCHEMA,
        "delivery_id": delivery_id,
        "event_type": "finding.emitted",
        "tenant_id": tenant,
        "emitted_at": emitted_at,
        "finding": finding,
        "context": {
            "run_id": run.run_id,
            "run_fingerprint": run.run_fingerprint,
            "flow_id": run.flow_id,
            "correlation_id": correlation,
            "policy_id": run.policy_id,
            "policy_version": run.policy_version.max(1),
            "policy_fingerprint": run.policy_fingerprint,
            "verifier_version": run.verifier_version,
            "verifier_build_hash": run.verifier_build_hash,
            "reason_catalog_version": REASON_CATALOG_VERSION,
        },
        "trust_labels": {
            "finding": "platform_attested",
            "context": "platform_attested",
            "evidence_event_ids": "sdk_attested_evidence",
            "evidence_attestation_ids": "source_attested",
        },
        "untrusted_payload": false,
        "links": {
            "finding_detail": format!("{base}/v1/findings#{finding_id}"),
            "flow_detail": format!("{base}/v1/chains/{corr}"),
            "bundle_export": format!("{base}/v1/bundles?correlation_id={corr}"),
        },
    })
}

/// RFC 3986 unreserved characters kept, everything else `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Signs `doc` in place: Ed25519 over JCS(doc without `signature`).
pub fn sign(doc: &mut Value, key: &SigningKey) -> Result<(), String> {
    let Value::Object(object) = doc else {
        return Err("the document is not an object".into());
    };
    let bytes = canonicalize_object_without(object, &["signature"]).map_err(|e| e.to_string())?;
    let value = B64.encode(key.sign(&bytes).to_bytes());
    object.insert(
        "signature".into(),
        json!({"alg": "ed25519", "key_id": WEBHOOK_KEY_ID, "value": value}),
    );
    Ok(())
}

/// Checks a document's signature with `key` (as a receiver does).
pub fn verify(doc: &Value, key: &VerifyingKey) -> Result<(), String> {
    let object = doc.as_object().ok_or("the document is not an object")?;
    let value = doc
        .pointer("/signature/value")
        .and_then(Value::as_str)
        .ok_or("no signature.value")?;
    let signature: [u8; 64] = B64
        .decode(value)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("signature.value is not base64 of 64 bytes")?;
    let bytes = canonicalize_object_without(object, &["signature"]).map_err(|e| e.to_string())?;
    intentproof_core::keys::verify_strict(key, &bytes, &Signature::from_bytes(&signature))
        .map_err(|_| "the signature does not verify with this key".to_owned())
}

/// The signed document of `row` for `receiver`, built from the store
/// (blocking).
fn build(
    state: &AppState,
    receiver: &WebhookConfig,
    links_base: &str,
    row: &FindingRow,
    id: &str,
) -> Result<Value, String> {
    let mut chain = state
        .store
        .chain(&row.correlation_id)
        .map_err(|e| e.to_string())?;
    chain.sort_by_key(|e| e.entry.seq);
    let tenant = crate::export::chain_tenant(&chain);
    let closed_at = chain
        .iter()
        .map(|e| e.entry.meta.completed_at.as_str())
        .max()
        .unwrap_or(row.at.as_str())
        .to_owned();
    let (finding, run) = match policy_finding(state, row, &chain, &closed_at) {
        Some((finding, run)) => (finding, run),
        None => {
            let (_, run) =
                crate::export::chain_run(&chain, &row.correlation_id, &tenant, &closed_at)
                    .map_err(|e| e.to_string())?;
            (finding_v1(row), run)
        }
    };
    let mut doc = document(
        &delivery_id(&receiver.name, id),
        &tenant,
        &intentproof_core::now_rfc3339_millis(),
        finding,
        &run,
        &row.correlation_id,
        links_base,
        id,
    );
    sign(&mut doc, state.daemon_key.signing_key())?;
    Ok(doc)
}

/// A `policy_violation`'s own finding and run: the configured policy
/// (`row.intent` is its id) evaluated over the chain, the failing finding
/// on the same evidence.
fn policy_finding(
    state: &AppState,
    row: &FindingRow,
    chain: &[intentproof_store::StoredEvent],
    closed_at: &str,
) -> Option<(Value, Run)> {
    if row.kind != "policy_violation" {
        return None;
    }
    let policy = state
        .policies
        .iter()
        .find(|p| p.policy_id() == row.intent.as_deref())?;
    let ids: Vec<&str> = chain
        .iter()
        .map(|e| e.entry.meta.event_id.as_str())
        .collect();
    let flow = Flow {
        flow_id: row.correlation_id.clone(),
        tenant_id: Some(crate::export::chain_tenant(chain)),
        correlation_id: Some(row.correlation_id.clone()),
        flow_merkle_root: Some(intentproof_core::merkle::event_merkle_root(&ids)),
        closed_at: Some(closed_at.to_owned()),
        events: chain
            .iter()
            .filter(|e| !intentproof_findings::is_guard_refusal(&e.event))
            .map(intentproof_findings::flow_event)
            .collect(),
    };
    let run = evaluate(policy, &flow, &[], &EvalOptions::default());
    let finding: &Finding = run
        .findings
        .iter()
        .find(|f| f.outcome == Outcome::Fail && f.evidence_event_ids == row.event_ids)?;
    let value = serde_json::to_value(finding).ok()?;
    Some((value, run))
}

/// Runs one receiver until `stop` turns true.
pub async fn run(
    receiver: WebhookConfig,
    state: Arc<AppState>,
    listen: std::net::SocketAddr,
    appended: Arc<Notify>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let links_base = receiver
        .links_base
        .clone()
        .unwrap_or_else(|| format!("http://{listen}"));
    let client = match crate::pump::delivery_client(receiver.timeout_ms) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(webhook = %receiver.name, error = %e, "webhook disabled: cannot build HTTP client");
            return;
        }
    };
    let headers = crate::pump::request_headers(&receiver.name, &receiver.headers);
    let sent = {
        let (dir, name) = (state.data_dir.path().to_owned(), receiver.name.clone());
        match tokio::task::spawn_blocking(move || DeliveryLog::open(&dir, "webhooks", &name)).await
        {
            Ok(log) => log,
            Err(_) => return,
        }
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(60));
    let mut seen_generation = None;
    let mut listed_at = std::time::Instant::now()
        .checked_sub(crate::finding_delivery::LISTING_GAP)
        .unwrap_or_else(std::time::Instant::now);
    loop {
        if *stop.borrow() {
            return;
        }
        let wake = appended.notified();
        let generation = state.findings.generation(SystemTime::now()).ok();
        if generation.is_none() || generation != seen_generation {
            listed_at = std::time::Instant::now();
            let listed = {
                let state = Arc::clone(&state);
                tokio::task::spawn_blocking(move || all_findings(&state.findings)).await
            };
            let rows = match listed {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    tracing::error!(webhook = %receiver.name, error = %e, "webhook cannot list findings");
                    Vec::new()
                }
                Err(_) => return,
            };
            let mut all_sent = true;
            for row in rows {
                let id = finding_id(&row);
                if sent.contains(&id) {
                    continue;
                }
                let built = {
                    let (state, receiver, base, id) = (
                        Arc::clone(&state),
                        receiver.clone(),
                        links_base.clone(),
                        id.clone(),
                    );
                    tokio::task::spawn_blocking(move || build(&state, &receiver, &base, &row, &id))
                        .await
                };
                let doc = match built {
                    Ok(Ok(doc)) => doc,
                    Ok(Err(e)) => {
                        tracing::error!(webhook = %receiver.name, finding = %id, error = %e, "webhook cannot build the finding's document; it is retried at the next change");
                        all_sent = false;
                        continue;
                    }
                    Err(_) => return,
                };
                let body = doc.to_string();
                let delivery = delivery_id(&receiver.name, &id);
                loop {
                    let answer = client
                        .post(&receiver.url)
                        .headers(headers.clone())
                        .body(body.clone())
                        .send()
                        .await;
                    match answer {
                        Ok(response) if response.status().is_success() => {
                            metrics.webhook(true);
                            backoff.reset();
                            let (log, fid, did) = (sent.clone(), id.clone(), delivery.clone());
                            match tokio::task::spawn_blocking(move || {
                                log.record(&[(fid.as_str(), Some(did.as_str()))])
                            })
                            .await
                            {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => {
                                    tracing::error!(webhook = %receiver.name, finding = %id, error = %e, "delivered, but the delivery log cannot be written: it may be sent again after a restart")
                                }
                                Err(_) => return,
                            }
                            break;
                        }
                        failed => {
                            metrics.webhook(false);
                            let log = |why: &str, wait: Duration| {
                                tracing::warn!(webhook = %receiver.name, finding = %id, error = %why, retry_in_ms = wait.as_millis() as u64, "webhook delivery failed; will retry");
                            };
                            if !crate::pump::back_off(failed, &mut backoff, &mut stop, log).await {
                                return;
                            }
                        }
                    }
                }
            }
            if all_sent {
                seen_generation = generation;
            }
        }
        if !crate::finding_delivery::next_look(wake, listed_at, &mut stop).await {
            return;
        }
    }
}
