//! Proof bundle export (`POST /v1/bundles`): one correlation's events as a
//! `.proof.tar.zst` that `intentproof verify` checks offline.
//!
//! Profiles: `full`, `auditor` and `counterparty` ([`SUPPORTED_PROFILES`];
//! `minimal-claim` is refused). A bundle carries:
//!
//! - `events.jsonl`: every stored event of the correlation, in journal
//!   order. `full`: byte for byte as journaled (so the signatures and the
//!   inclusion proofs verify). `auditor` / `counterparty`: each event's
//!   projection ([`intentproof_bundle::projection`]): the fields the
//!   profile keeps, hashes of the withheld ones, the event's content hash
//!   and its original signature as `event_signature`;
//! - `inclusion_proof.json`: each event's RFC 9162 audit path to a signed
//!   checkpoint of the daemon's log (signed now if the latest is older than
//!   the tree, so it covers every exported event); for a projection, the
//!   proof also carries the full event's `leaf_hash`;
//! - `tlog-proofs.jsonl`: the same audit paths as C2SP `tlog-proof`s, to
//!   the largest checkpoint note that covers every exported event and that
//!   a witness cosigned, else the largest that covers them (see
//!   [`intentproof_bundle::inclusion`]);
//! - `flow.json` (`intentproof.flow.v1`) over those events;
//! - `policy.json`: the policy compiled from the correlation's last
//!   declared plan, else a policy with one `required` rule per distinct
//!   action of the chain; `run.json`: that policy evaluated over the flow,
//!   signed with the daemon key (computed from the full events, whatever
//!   the profile);
//! - `keys/<key_id>.pub`: every event signer's trusted key and the daemon
//!   key (checkpoint, run and manifest signer);
//! - `manifest.json`, signed with the daemon key.
//!
//! The export is deterministic: `created_at` is the last event's
//! completion time and `bundle_id` is derived from the correlation and the
//! checkpoint's tree size, so exporting twice with nothing recorded (and no
//! cosignature received) in between gives identical bytes.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, VerifyingKey};
use intentproof_bundle::inclusion::{EventProof, InclusionProofs, TlogProofLine};
use intentproof_bundle::projection::{Profile, project};
use intentproof_bundle::{BundleInput, ManifestSigner, write_bundle};
use intentproof_core::canon::canonicalize_object_without;
use intentproof_core::keys::InstanceKey;
use intentproof_core::merkle::{event_merkle_root, leaf_hash};
use intentproof_core::tlog::proof::TlogProof;
use intentproof_policy::verification::{
    EvalOptions, Flow, Policy, RUN_FINGERPRINT_EXCLUDED_FIELDS, RunSignature, evaluate,
};
use intentproof_store::{StoreError, StoredEvent};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::state::AppState;
use intentproof_findings::{declared_plan, flow_event};
use intentproof_mcp::recorder::PLAN_ACTION;

pub use intentproof_api::SUPPORTED_PROFILES;

/// `verification_profile.spec_version` of exported bundles.
pub const SPEC_VERSION: &str = "1.0.0";

/// Tenant used when the events carry none.
const DEFAULT_TENANT: &str = "local";

/// Why a bundle cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The profile is not one this daemon produces.
    #[error(
        "export profile {0:?} is not available: the profiles are full, auditor and counterparty"
    )]
    UnsupportedProfile(String),
    /// The correlation has no stored events.
    #[error("no events with correlation id {0:?}")]
    NotFound(String),
    /// An event's signer is not trusted, so its key cannot be bundled.
    #[error(
        "event {event_id} is signed by instance {instance_id}, whose key this daemon does not trust; trust it with `intentproof keys trust {instance_id} <public key>` and export again"
    )]
    KeyUnknown {
        /// The event.
        event_id: String,
        /// Its instance.
        instance_id: String,
    },
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else (a bug, or a broken data dir).
    #[error("{0}")]
    Internal(String),
}

/// An exported bundle.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The `.proof.tar.zst` bytes.
    pub bytes: Vec<u8>,
    /// Its `bundle_id`.
    pub bundle_id: String,
    /// Events bundled.
    pub events: usize,
    /// Tree size of the checkpoint the inclusion proofs lead to.
    pub tree_size: u64,
}

/// Accepts one of [`SUPPORTED_PROFILES`]; anything else is
/// [`ExportError::UnsupportedProfile`].
pub fn check_profile(profile: &str) -> Result<(), ExportError> {
    if SUPPORTED_PROFILES.contains(&profile) {
        Ok(())
    } else {
        Err(ExportError::UnsupportedProfile(profile.to_owned()))
    }
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    intentproof_core::merkle::hex(&Sha256::digest(data).into())
}

fn str_field<'a>(event: &'a Value, key: &str) -> Option<&'a str> {
    event
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The tenant of a chain's events (the first that names one), else `local`.
pub(crate) fn chain_tenant(chain: &[StoredEvent]) -> String {
    chain
        .iter()
        .find_map(|e| str_field(&e.event, "tenant_id"))
        .unwrap_or(DEFAULT_TENANT)
        .to_owned()
}

/// The policy and verification run of a correlation's chain (sorted by seq), closed
/// at `closed_at`: its last declared plan compiled to a policy, else one
/// `required` rule per recorded action, evaluated over the flow. Unsigned:
/// export signs it into `run.json`; webhooks cite it as their context.
pub(crate) fn chain_run(
    chain: &[StoredEvent],
    correlation: &str,
    tenant: &str,
    closed_at: &str,
) -> Result<(Policy, intentproof_policy::verification::Run), ExportError> {
    let ids: Vec<&str> = chain
        .iter()
        .map(|e| e.entry.meta.event_id.as_str())
        .collect();
    let policy = policy_for(chain, correlation, tenant)?;
    let flow = Flow {
        flow_id: correlation.to_owned(),
        tenant_id: Some(tenant.to_owned()),
        correlation_id: Some(correlation.to_owned()),
        flow_merkle_root: Some(event_merkle_root(&ids)),
        closed_at: Some(closed_at.to_owned()),
        events: chain.iter().map(flow_event).collect(),
    };
    let run = evaluate(&policy, &flow, &[], &EvalOptions::default());
    Ok((policy, run))
}

/// Exports `correlation` with `profile` (blocking: reads the store and may
/// sign and append a checkpoint).
pub fn export_bundle(
    state: &AppState,
    correlation: &str,
    profile: &str,
) -> Result<Exported, ExportError> {
    check_profile(profile)?;
    let projection = Profile::from_name(profile);
    let mut chain = state.store.chain(correlation)?;
    if chain.is_empty() {
        return Err(ExportError::NotFound(correlation.to_owned()));
    }
    chain.sort_by_key(|e| e.entry.seq);
    // An SDK exporting from several threads may deliver a chain out of
    // order: the bundle lists each chain in position order.
    let chain = intentproof_store::in_chain_order(chain, |e| &e.entry.meta);

    // The checkpoint covers every exported event.
    let checkpoint = state
        .checkpoint_now()
        .map_err(|e| ExportError::Internal(format!("cannot sign a checkpoint: {e}")))?
        .ok_or_else(|| ExportError::Internal("the store has no checkpoint".into()))?;
    let last_seq = chain.iter().map(|e| e.entry.seq).max().unwrap_or(0);
    if checkpoint.tree_size <= last_seq {
        return Err(ExportError::Internal(format!(
            "the latest checkpoint (tree size {}) does not cover event seq {last_seq}",
            checkpoint.tree_size
        )));
    }

    // The C2SP note the tlog-proofs lead to: the largest cosigned one that
    // covers every event, else the largest that does (checkpoint_now just
    // wrote one of the current size).
    let note = state.transparency.note_covering(last_seq);

    // Events, byte for byte, and their audit paths.
    let mut events = Vec::with_capacity(chain.len());
    let mut proofs = BTreeMap::new();
    let mut tlog_proofs = Vec::with_capacity(chain.len());
    for stored in &chain {
        let mut raw = state.store.raw(&stored.entry)?;
        while raw.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            raw.pop();
        }
        let proof = state
            .store
            .inclusion_proof(stored.entry.seq, checkpoint.tree_size)?;
        let proof = EventProof::new(stored.entry.seq, &proof);
        let event_id = &stored.entry.meta.event_id;
        if let Some((size, note)) = &note {
            let hashes = state.store.inclusion_proof(stored.entry.seq, *size)?;
            tlog_proofs.push(TlogProofLine {
                event_id: event_id.clone(),
                tlog_proof: TlogProof {
                    extra: None,
                    index: stored.entry.seq,
                    hashes,
                    checkpoint: note.clone(),
                }
                .to_string(),
                leaf_hash: projection.map(|_| intentproof_core::merkle::hex(&leaf_hash(&raw))),
            });
        }
        match projection {
            None => {
                proofs.insert(event_id.clone(), proof);
                events.push(raw);
            }
            Some(p) => {
                let Value::Object(event) = &stored.event else {
                    return Err(ExportError::Internal(format!(
                        "event {event_id} is not a JSON object"
                    )));
                };
                // The projection names the hash the store indexed (and the
                // next event's prev_event_hash carries).
                let computed = intentproof_core::v1::content_hash(event)
                    .map_err(|e| ExportError::Internal(format!("event {event_id}: {e}")))?;
                if computed != stored.entry.meta.content_hash {
                    return Err(ExportError::Internal(format!(
                        "event {event_id} hashes to {computed}, but the store indexed {}",
                        stored.entry.meta.content_hash
                    )));
                }
                let line = project(event, p).map_err(|e| {
                    ExportError::Internal(format!("cannot project event {event_id}: {e}"))
                })?;
                proofs.insert(event_id.clone(), proof.with_leaf_hash(&leaf_hash(&raw)));
                events.push(line);
            }
        }
    }

    // Keys: every event signer, and the daemon.
    let daemon = &state.daemon_key;
    let daemon_key_id = daemon.key_id();
    let mut keys: BTreeMap<String, VerifyingKey> = BTreeMap::new();
    keys.insert(daemon_key_id.clone(), daemon.verifying_key());
    add_signer_keys(&chain, &mut keys, |instance| {
        state
            .keys
            .get(instance)
            .or_else(|| (instance == daemon.instance_id()).then(|| daemon.verifying_key()))
    })?;

    let docs = flow_docs(&chain, correlation, &checkpoint.time, daemon)?;
    let bundle_id = format!(
        "bundle_{}",
        &sha256_hex(format!("{correlation}\n{}", checkpoint.tree_size).as_bytes())[..32]
    );
    let tree_size = checkpoint.tree_size;
    let input = BundleInput {
        bundle_id: bundle_id.clone(),
        events,
        keys,
        inclusion: Some(InclusionProofs::new(checkpoint, proofs)),
        tlog_proofs,
        export_profile: profile.to_owned(),
        ..docs.into_input(correlation)
    };
    let signer = ManifestSigner {
        key: daemon.signing_key(),
        key_id: &daemon_key_id,
    };
    let bytes = write_bundle(&input, Some(&signer))
        .map_err(|e| ExportError::Internal(format!("cannot write the bundle: {e}")))?;
    Ok(Exported {
        bytes,
        bundle_id,
        events: chain.len(),
        tree_size,
    })
}

/// Adds the key of every event signer of `chain` to `keys` (by key id),
/// found by `lookup` from the signer's instance id; a signer it does not
/// know is [`ExportError::KeyUnknown`].
pub(crate) fn add_signer_keys(
    chain: &[StoredEvent],
    keys: &mut BTreeMap<String, VerifyingKey>,
    lookup: impl Fn(&str) -> Option<VerifyingKey>,
) -> Result<(), ExportError> {
    for stored in chain {
        let Some(key_id) = stored
            .event
            .pointer("/signature/key_id")
            .and_then(Value::as_str)
        else {
            continue;
        };
        if keys.contains_key(key_id) {
            continue;
        }
        let instance = &stored.entry.meta.instance_id;
        let Some(key) = lookup(instance) else {
            return Err(ExportError::KeyUnknown {
                event_id: stored.entry.meta.event_id.clone(),
                instance_id: instance.clone(),
            });
        };
        keys.insert(key_id.to_owned(), key);
    }
    Ok(())
}

/// What a bundle says of its flow, whoever exports it: the flow, the
/// policy and the run (signed by the exporter).
pub(crate) struct FlowDocs {
    tenant: String,
    created_at: String,
    flow: Vec<u8>,
    policy: Vec<u8>,
    run: Vec<u8>,
    run_id: String,
}

impl FlowDocs {
    /// A bundle input with these documents and nothing else yet.
    pub(crate) fn into_input(self, correlation: &str) -> BundleInput {
        BundleInput {
            created_at: self.created_at,
            flow_id: correlation.to_owned(),
            tenant_id: self.tenant,
            flow: self.flow,
            policy: self.policy,
            run: self.run,
            spec_version: SPEC_VERSION.into(),
            run_id: self.run_id,
            ..BundleInput::default()
        }
    }
}

/// `flow.json`, `policy.json` and `run.json` (signed by `signer`) of
/// `chain` (in its order), closed at its last completion (`fallback_time`
/// when it has none).
pub(crate) fn flow_docs(
    chain: &[StoredEvent],
    correlation: &str,
    fallback_time: &str,
    signer: &InstanceKey,
) -> Result<FlowDocs, ExportError> {
    let Some(first) = chain.first().map(|e| &e.entry.meta) else {
        return Err(ExportError::NotFound(correlation.to_owned()));
    };
    let tenant = chain_tenant(chain);
    let created_at = chain
        .iter()
        .map(|e| e.entry.meta.completed_at.as_str())
        .max()
        .filter(|t| !t.is_empty())
        .unwrap_or(fallback_time)
        .to_owned();
    let ids: Vec<&str> = chain
        .iter()
        .map(|e| e.entry.meta.event_id.as_str())
        .collect();
    let flow_root = event_merkle_root(&ids);
    let flow_doc = json!({
        "schema": "intentproof.flow.v1",
        "flow_id": correlation,
        "tenant_id": tenant,
        "provenance_class": "platform_attested",
        "correlation_id": correlation,
        "window": {
            "opened_at": first.started_at,
            "closed_at": created_at,
            "closure_reason": "export",
        },
        "events": chain.iter().enumerate().map(|(i, e)| json!({
            "event_id": e.entry.meta.event_id,
            "ordinal": i,
            "hash": e.entry.meta.content_hash,
        })).collect::<Vec<_>>(),
        "instrumentation_mode": "full",
        "flow_merkle_root": flow_root,
        "snapshot_uri": format!("urn:intentproof:flow:{}", sha256_hex(correlation.as_bytes())),
    });

    let (policy, mut run) = chain_run(chain, correlation, &tenant, &created_at)?;
    let key_id = signer.key_id();
    run.signature = RunSignature {
        alg: "ed25519".into(),
        key_id,
        value: String::new(),
    };
    let Value::Object(run_obj) = run.to_value() else {
        return Err(ExportError::Internal("the run is not an object".into()));
    };
    let digest = canonicalize_object_without(&run_obj, &RUN_FINGERPRINT_EXCLUDED_FIELDS)
        .map(|c| Sha256::digest(&c))
        .map_err(|e| ExportError::Internal(format!("run: {e}")))?;
    run.signature.value = B64.encode(signer.signing_key().sign(&digest).to_bytes());

    let pretty = |v: &Value| -> Result<Vec<u8>, ExportError> {
        let mut bytes =
            serde_json::to_vec_pretty(v).map_err(|e| ExportError::Internal(e.to_string()))?;
        bytes.push(b'\n');
        Ok(bytes)
    };
    Ok(FlowDocs {
        tenant,
        created_at,
        flow: pretty(&flow_doc)?,
        policy: pretty(&policy.to_value())?,
        run: pretty(&run.to_value())?,
        run_id: run.run_id.clone(),
    })
}

/// The correlation's last declared plan, compiled; else one `required`
/// rule per distinct action of the chain.
fn policy_for(
    chain: &[StoredEvent],
    correlation: &str,
    tenant: &str,
) -> Result<Policy, ExportError> {
    let plan = chain
        .iter()
        .rev()
        .filter(|e| e.entry.meta.action == PLAN_ACTION)
        .find_map(declared_plan);
    if let Some(plan) = plan
        && let Ok(policy) = plan.compile(tenant)
    {
        return Ok(policy);
    }
    let mut actions: Vec<&str> = chain.iter().map(|e| e.entry.meta.action.as_str()).collect();
    actions.sort_unstable();
    actions.dedup();
    let rules: Vec<Value> = actions
        .iter()
        .enumerate()
        .map(|(i, action)| {
            json!({
                "id": format!("recorded-{}", i + 1),
                "category": "required",
                "severity": "info",
                "spec": {"action": action, "min": 1},
            })
        })
        .collect();
    let doc = json!({
        "policy_id": format!("export.{}", &sha256_hex(correlation.as_bytes())[..16]),
        "tenant_id": tenant,
        "name": format!("Recorded actions of {correlation}"),
        "description": "No plan was declared: every recorded action is required at least once.",
        "scope": {},
        "rules": rules,
    });
    Policy::compile(doc).map_err(|e| ExportError::Internal(format!("policy: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_auditor_and_counterparty_are_supported() {
        for p in ["full", "auditor", "counterparty"] {
            assert!(check_profile(p).is_ok(), "{p}");
        }
        for p in ["minimal-claim", "Full", ""] {
            let e = check_profile(p).unwrap_err().to_string();
            assert_eq!(
                e,
                format!(
                    "export profile {p:?} is not available: the profiles are full, auditor and counterparty"
                )
            );
        }
    }
}
