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
//! to its checkpoint (32 bytes a record, hashed by PostgreSQL), at most
//! [`MAX_PROOF_LEAVES`] (beyond: 413, ask the daemon).

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
use crate::api::export_refused;
use crate::error::ApiError;
use crate::export::{ExportError, Exported, add_signer_keys, check_profile, flow_docs};

/// The audit path of `daemon`'s record `seq` to the smallest checkpoint
/// that covers it, else to the tree of what the daemon replicated so far
/// (which nobody signed: `checkpoint` is then `null`).
pub(crate) async fn audit_path(
    state: &FleetView,
    client: &Client,
    daemon: &str,
    seq: u64,
) -> Result<Inclusion, ApiError> {
    let checkpoint = view::checkpoint_covering(client, daemon, seq)
        .await
        .map_err(|e| state.pg(e))?;
    let size = match &checkpoint {
        Some(c) => c.tree_size,
        None => view::replicated_of(client, daemon)
            .await
            .map_err(|e| state.pg(e))?,
    };
    let leaves = leaves_of(state, client, daemon, size).await?;
    let proof = prove(daemon, &leaves, seq).map_err(ApiError::internal)?;
    Ok(Inclusion {
        leaf_index: seq,
        tree_size: size,
        root: format!("sha256:{}", hex(&merkle::root(&leaves))),
        proof: proof.iter().map(hex).collect(),
        checkpoint,
    })
}

/// Most leaves the view reads to prove an event (PostgreSQL hashes each
/// record's bytes; 32 bytes a leaf here).
pub const MAX_PROOF_LEAVES: u64 = 1_000_000;

/// The leaf hashes of `daemon`'s first `size` records, refused beyond
/// [`MAX_PROOF_LEAVES`].
async fn leaves_of(
    state: &FleetView,
    client: &Client,
    daemon: &str,
    size: u64,
) -> Result<Vec<Hash>, ApiError> {
    if size > MAX_PROOF_LEAVES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "proof_too_large",
            format!(
                "daemon {daemon}'s log has {size} records: the fleet view proves inclusion in logs of at most {MAX_PROOF_LEAVES} (it reads every leaf); ask that daemon (GET /v1/events/{{id}}, POST /v1/bundles)"
            ),
        ));
    }
    view::leaf_hashes(client, daemon, size)
        .await
        .map_err(|e| state.pg(e))
}

fn prove(daemon: &str, leaves: &[Hash], seq: u64) -> Result<Vec<Hash>, FleetError> {
    let index = usize::try_from(seq).unwrap_or(usize::MAX);
    merkle::inclusion_proof(leaves, index).map_err(|e| FleetError::Diverged {
        daemon: daemon.to_owned(),
        detail: format!("no audit path for record {seq}: {e}"),
    })
}

/// Exports `correlation` from the fleet (`profile` must be `full`).
pub(crate) async fn export(
    state: &FleetView,
    correlation: &str,
    profile: &str,
) -> Result<Exported, ApiError> {
    check_profile(profile).map_err(export_refused)?;
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
        return Err(export_refused(ExportError::NotFound(
            correlation.to_owned(),
        )));
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
        let hashes = leaves_of(state, &client, daemon, checkpoint.tree_size).await?;
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

    // Keys: the daemons', every signer's, the fleet view's. A daemon's key
    // is the one the view trusts for it when it trusts one (PostgreSQL's
    // must then be the same), else the one the daemon registered in
    // PostgreSQL; either way it is filed under that daemon's key id, and
    // its checkpoint must verify with it.
    let trusted = state.dir.key_ring().map_err(ApiError::internal)?;
    let names: Vec<String> = last.keys().map(|d| (*d).to_owned()).collect();
    let daemons = view::daemons(&client, &names)
        .await
        .map_err(|e| state.pg(e))?;
    let mut by_instance: BTreeMap<String, VerifyingKey> = BTreeMap::new();
    let mut keys: BTreeMap<String, VerifyingKey> = BTreeMap::new();
    for d in &daemons {
        let registered = intentproof_core::keys::parse_public_key(&d.public_key).map_err(|e| {
            ApiError::internal(format!(
                "PostgreSQL holds a bad key for daemon {}: {e}",
                d.daemon
            ))
        })?;
        let key = match trusted.get(&d.daemon) {
            Some(pinned) if pinned != registered => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "key_mismatch",
                    format!(
                        "PostgreSQL registers another key for daemon {} than the one the fleet view trusts for it: check intentproof.daemons (`intentproof fleet verify`) before exporting",
                        d.daemon
                    ),
                ));
            }
            Some(pinned) => pinned,
            None => registered,
        };
        if let Some(checkpoint) = checkpoints.get(&d.daemon)
            && let Err(e) = checkpoint.verify(&key)
        {
            return Err(ApiError::internal(format!(
                "daemon {}'s checkpoint at tree size {} in PostgreSQL does not verify with its key ({e}): run `intentproof fleet verify`",
                d.daemon, checkpoint.tree_size
            )));
        }
        keys.insert(intentproof_core::keys::key_id_for(&d.daemon), key);
        by_instance.insert(d.daemon.clone(), key);
    }
    if let Some(missing) = names.iter().find(|n| !by_instance.contains_key(*n)) {
        return Err(ApiError::internal(format!(
            "daemon {missing} stored events of the flow but is not registered in PostgreSQL: run `intentproof fleet verify`"
        )));
    }
    let own = &state.key;
    keys.insert(own.key_id(), own.verifying_key());

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
        trusted
            .get(instance)
            .or_else(|| by_instance.get(instance).copied())
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
        other => export_refused(other),
    })?;
    let docs = flow_docs(&chain, correlation, &fallback, own).map_err(export_refused)?;
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
