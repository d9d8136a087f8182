//! Fleet bundles: one correlation, stored by one or several daemons, as a
//! proof bundle that verifies offline.
//!
//! Like a daemon's bundle (see [`crate::export`]: the same `flow.json`,
//! `policy.json`, `run.json`, events byte for byte), except for the proofs:
//! `fleet_inclusion.json` ([`intentproof_bundle::inclusion::FleetInclusion`])
//! holds, per daemon, the smallest checkpoint it signed that covers all its
//! events of the flow, and per event its audit path in that daemon's log.
//! The leaves come from PostgreSQL (`sha256(0x00 || bytes)`, computed
//! there), and the root they give must equal the checkpoint's, else the
//! export fails (PostgreSQL's copy differs from what the daemon signed:
//! run `intentproof fleet verify`). `keys/` holds every daemon's key (from
//! `intentproof.daemons`), every event signer's (the fleet view trusts
//! them like a daemon: `intentproof keys trust --data-dir <dir>/fleet`),
//! and the fleet view's, which signs the run and the manifest.
//!
//! Profiles: `full` only (a projection's proof needs the full event's leaf
//! hash beside it; not built for fleet bundles yet).
//!
//! The cost of proving: one read of each involved daemon's leaf hashes up
//! to its checkpoint (32 bytes a record, hashed by PostgreSQL).

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use ed25519_dalek::VerifyingKey;
use intentproof_api::wire::Inclusion;
use intentproof_bundle::inclusion::{FLEET_INCLUSION_SCHEMA, FleetEventProof, FleetInclusion};
use intentproof_bundle::{ManifestSigner, write_bundle};
use intentproof_core::checkpoint::Checkpoint;
use intentproof_core::merkle::{self, Hash, hex};
use intentproof_fleet::FleetError;
use intentproof_fleet::tokio_postgres::Client;
use intentproof_fleet::view;

use super::{FleetView, MAX_CHAIN_EVENTS, stored_events};
use crate::error::ApiError;
use crate::export::{ExportError, Exported, add_signer_keys, check_profile, flow_docs};

/// The audit path of `daemon`'s record `seq` to the smallest checkpoint
/// that covers it, else to the tree of what the daemon replicated so far
/// (which nobody signed: `checkpoint` is then `null`).
pub(crate) async fn audit_path(
    client: &Client,
    daemon: &str,
    seq: u64,
) -> Result<Inclusion, FleetError> {
    let checkpoint = view::checkpoint_covering(client, daemon, seq).await?;
    let size = match &checkpoint {
        Some(c) => c.tree_size,
        None => view::replicated_of(client, daemon).await?,
    };
    let leaves = view::leaf_hashes(client, daemon, size).await?;
    let proof = prove(daemon, &leaves, seq)?;
    Ok(Inclusion {
        leaf_index: seq,
        tree_size: size,
        root: format!("sha256:{}", hex(&merkle::root(&leaves))),
        proof: proof.iter().map(hex).collect(),
        checkpoint,
    })
}

fn prove(daemon: &str, leaves: &[Hash], seq: u64) -> Result<Vec<Hash>, FleetError> {
    let index = usize::try_from(seq).unwrap_or(usize::MAX);
    merkle::inclusion_proof(leaves, index).map_err(|e| FleetError::Diverged {
        daemon: daemon.to_owned(),
        detail: format!("no audit path for record {seq}: {e}"),
    })
}

fn refused(e: ExportError) -> ApiError {
    match &e {
        ExportError::UnsupportedProfile(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_profile",
            e.to_string(),
        ),
        ExportError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        ExportError::KeyUnknown { .. } => {
            ApiError::new(StatusCode::CONFLICT, "key_unknown", e.to_string())
        }
        ExportError::Store(_) | ExportError::Internal(_) => ApiError::internal(e),
    }
}

/// Exports `correlation` from the fleet (`profile` must be `full`).
pub(crate) async fn export(
    state: &FleetView,
    correlation: &str,
    profile: &str,
) -> Result<Exported, ApiError> {
    check_profile(profile).map_err(refused)?;
    if profile != "full" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_profile",
            format!(
                "export profile {profile:?} is not available from the fleet view: it exports the full profile (export the projection from the daemon that stored the events)"
            ),
        ));
    }
    let client = state.client().await?;
    let records = view::chain(&client, correlation, MAX_CHAIN_EVENTS)
        .await
        .map_err(|e| state.pg(e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "chain_too_long",
                format!("the chain has more than {MAX_CHAIN_EVENTS} events"),
            )
        })?;
    if records.is_empty() {
        return Err(refused(ExportError::NotFound(correlation.to_owned())));
    }

    // Per daemon: the checkpoint covering its last event of the flow, and
    // the leaves up to it.
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &records {
        let seq = last.entry(r.daemon.as_str()).or_default();
        *seq = (*seq).max(r.seq);
    }
    let mut checkpoints: BTreeMap<String, Checkpoint> = BTreeMap::new();
    let mut leaves: BTreeMap<String, Vec<Hash>> = BTreeMap::new();
    for (&daemon, &seq) in &last {
        let Some(checkpoint) = view::checkpoint_covering(&client, daemon, seq)
            .await
            .map_err(|e| state.pg(e))?
        else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_checkpointed",
                format!(
                    "daemon {daemon} has not replicated a checkpoint that covers its record {seq} yet: daemons sign one every [transparency] checkpoint interval (and at stop); export again after the next"
                ),
            ));
        };
        let hashes = view::leaf_hashes(&client, daemon, checkpoint.tree_size)
            .await
            .map_err(|e| state.pg(e))?;
        let root = checkpoint.root_hash().map_err(ApiError::internal)?;
        if merkle::root(&hashes) != root {
            return Err(ApiError::internal(format!(
                "PostgreSQL's records of daemon {daemon} do not give the root it signed at tree size {}: run `intentproof fleet verify`",
                checkpoint.tree_size
            )));
        }
        checkpoints.insert(daemon.to_owned(), checkpoint);
        leaves.insert(daemon.to_owned(), hashes);
    }

    let mut proofs = BTreeMap::new();
    for r in &records {
        let path = leaves
            .get(&r.daemon)
            .ok_or_else(|| ApiError::internal("a daemon's leaves went missing"))
            .and_then(|l| prove(&r.daemon, l, r.seq).map_err(ApiError::internal))?;
        proofs.insert(
            r.meta.event_id.clone(),
            FleetEventProof {
                daemon: r.daemon.clone(),
                leaf_index: r.seq,
                proof: path.iter().map(hex).collect(),
            },
        );
    }

    // Keys: the daemons', every signer's, the fleet view's.
    let names: Vec<String> = last.keys().map(|d| (*d).to_owned()).collect();
    let daemons = view::daemons(&client, &names)
        .await
        .map_err(|e| state.pg(e))?;
    let mut by_instance: BTreeMap<String, VerifyingKey> = BTreeMap::new();
    let mut keys: BTreeMap<String, VerifyingKey> = BTreeMap::new();
    for d in &daemons {
        let key = intentproof_core::keys::parse_public_key(&d.public_key).map_err(|e| {
            ApiError::internal(format!(
                "PostgreSQL holds a bad key for daemon {}: {e}",
                d.daemon
            ))
        })?;
        keys.insert(d.key_id.clone(), key);
        by_instance.insert(d.daemon.clone(), key);
    }
    let own = &state.key;
    keys.insert(own.key_id(), own.verifying_key());
    let trusted = state.dir.key_ring().map_err(ApiError::internal)?;

    let bytes: Vec<Vec<u8>> = records.iter().map(|r| r.bytes.clone()).collect();
    let sizes: BTreeSet<String> = checkpoints
        .iter()
        .map(|(d, c)| format!("{d}:{}", c.tree_size))
        .collect();
    let fallback = checkpoints
        .values()
        .map(|c| c.time.clone())
        .max()
        .unwrap_or_default();
    let chain = stored_events(records);
    if chain.len() != bytes.len() {
        return Err(ApiError::internal(
            "a record of the flow in PostgreSQL is not JSON: run `intentproof fleet verify`",
        ));
    }
    add_signer_keys(&chain, &mut keys, |instance| {
        by_instance
            .get(instance)
            .copied()
            .or_else(|| trusted.get(instance))
    })
    .map_err(|e| match e {
        ExportError::KeyUnknown {
            event_id,
            instance_id,
        } => ApiError::new(
            StatusCode::CONFLICT,
            "key_unknown",
            format!(
                "event {event_id} is signed by instance {instance_id}, whose key the fleet view does not trust; trust it with `intentproof keys trust {instance_id} <public key> --data-dir {}` and export again",
                state.dir.path().display()
            ),
        ),
        other => refused(other),
    })?;
    let docs = flow_docs(&chain, correlation, &fallback, own).map_err(refused)?;
    let bundle_id = format!(
        "bundle_{}",
        &crate::export::sha256_hex(
            format!(
                "{correlation}\n{}",
                sizes.into_iter().collect::<Vec<_>>().join("\n")
            )
            .as_bytes()
        )[..32]
    );
    let tree_size = checkpoints.values().map(|c| c.tree_size).sum();
    let events = chain.len();
    let input = intentproof_bundle::BundleInput {
        bundle_id: bundle_id.clone(),
        events: bytes,
        keys,
        fleet_inclusion: Some(FleetInclusion {
            schema: FLEET_INCLUSION_SCHEMA.to_owned(),
            checkpoints,
            proofs,
        }),
        export_profile: profile.to_owned(),
        ..docs.into_input(correlation)
    };
    let key_id = own.key_id();
    let signer = ManifestSigner {
        key: own.signing_key(),
        key_id: &key_id,
    };
    let bytes = write_bundle(&input, Some(&signer))
        .map_err(|e| ApiError::internal(format!("cannot write the bundle: {e}")))?;
    Ok(Exported {
        bytes,
        bundle_id,
        events,
        tree_size,
    })
}
