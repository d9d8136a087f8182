//! Offline checks of a data directory: [`verify`] replays the journal
//! (checksums, sequence numbers, chains, signatures, Merkle root against the
//! last signed checkpoint); [`rebuild`] recreates the index from it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use intentproof_core::merkle::{self, Hash};
use serde_json::Value;

use crate::checkpoint;
use crate::error::StoreError;
use crate::journal;
use crate::meta::{EventMeta, SignatureState};
use crate::store::{GENESIS_HASH, Store};
use crate::types::StoreOptions;

/// One stored chain link, as verification needs it.
struct Link {
    seq: u64,
    event_id: String,
    content_hash: String,
    prev_event_hash: String,
}

/// What a clean [`verify`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Journal records.
    pub records: u64,
    /// (instance, correlation) chains.
    pub chains: u64,
    /// Events whose signature verified with a trusted key.
    pub signatures_verified: u64,
    /// Events whose instance has no trusted key (reported, not failed).
    pub key_unknown: u64,
    /// Tree size of the checkpoint checked, if there was one.
    pub checkpoint_size: Option<u64>,
}

/// Replays the store in `data_dir`. Returns the first problem found, naming
/// the record (journal position) it concerns.
///
/// `keys` gives trusted instance keys; `daemon_key` checks checkpoint
/// signatures (`None`: the checkpoint's root is still compared, its
/// signature is not).
pub fn verify(
    data_dir: &Path,
    keys: &dyn Fn(&str) -> Option<VerifyingKey>,
    daemon_key: Option<&VerifyingKey>,
) -> Result<VerifyReport, String> {
    let mut report = VerifyReport::default();
    let mut leaves: Vec<Hash> = Vec::new();
    let mut chains: HashMap<(String, String), BTreeMap<u64, Link>> = HashMap::new();
    let mut problem: Option<String> = None;
    let records = journal::read_from(&data_dir.join("journal"), 0, |seq, _, payload| {
        if problem.is_some() {
            return;
        }
        leaves.push(merkle::leaf_hash(payload));
        let value: Value = match serde_json::from_slice(payload) {
            Ok(v) => v,
            Err(e) => {
                problem = Some(format!("record {seq}: not JSON: {e}"));
                return;
            }
        };
        let instance = value
            .get("instance_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let meta = match EventMeta::from_v1_lenient(&value, keys(instance).as_ref()) {
            Ok(m) => m,
            Err(e) => {
                problem = Some(format!("record {seq}: not a valid event: {e}"));
                return;
            }
        };
        match meta.signature {
            SignatureState::Verified => report.signatures_verified += 1,
            SignatureState::KeyUnknown => report.key_unknown += 1,
            SignatureState::Invalid => {
                problem = Some(format!(
                    "record {seq}: signature of event {} does not verify with the trusted key of {}: the event was changed after it was signed",
                    meta.event_id, meta.instance_id
                ));
                return;
            }
        }
        let chain = chains
            .entry((meta.instance_id.clone(), meta.correlation_id.clone()))
            .or_default();
        if let Some(other) = chain.get(&meta.chain_position) {
            problem = Some(format!(
                "record {seq}: event {} takes position {} of chain ({}, {}), already held by event {} (record {})",
                meta.event_id,
                meta.chain_position,
                meta.instance_id,
                meta.correlation_id,
                other.event_id,
                other.seq
            ));
            return;
        }
        chain.insert(
            meta.chain_position,
            Link {
                seq,
                event_id: meta.event_id,
                content_hash: meta.content_hash,
                prev_event_hash: meta.prev_event_hash,
            },
        );
    });
    let records = records.map_err(|e| e.to_string())?;
    if let Some(problem) = problem {
        return Err(problem);
    }
    report.records = records;
    report.chains = chains.len() as u64;

    let mut ordered: Vec<_> = chains.into_iter().collect();
    ordered.sort_by(|a, b| a.0.cmp(&b.0));
    for ((instance, correlation), chain) in ordered {
        let mut previous: Option<&Link> = None;
        for (expected, (position, link)) in (1u64..).zip(&chain) {
            let (seq, id, prev) = (link.seq, &link.event_id, &link.prev_event_hash);
            if *position != expected {
                return Err(format!(
                    "record {seq}: chain ({instance}, {correlation}) jumps to position {position}: position {expected} is missing (dropped, or never delivered)"
                ));
            }
            let want = previous.map_or(GENESIS_HASH, |p| p.content_hash.as_str());
            if prev != want {
                return Err(format!(
                    "record {seq}: event {id} at position {position} of chain ({instance}, {correlation}) links to {prev}, but the event before it hashes to {want}"
                ));
            }
            previous = Some(link);
        }
    }

    if let Some(cp) = checkpoint::latest(data_dir).map_err(|e| e.to_string())? {
        if let Some(key) = daemon_key {
            cp.verify(key).map_err(|_| {
                format!(
                    "checkpoint of tree size {} has a bad signature: it was not signed by this daemon's key, or was edited",
                    cp.tree_size
                )
            })?;
        }
        if cp.tree_size > records {
            return Err(format!(
                "record {records}: the journal ends at {records} records but the signed checkpoint of {} covers {} records: records were removed",
                cp.time, cp.tree_size
            ));
        }
        let root = format!(
            "sha256:{}",
            merkle::hex(&merkle::root(&leaves[..cp.tree_size as usize]))
        );
        if root != cp.root {
            return Err(format!(
                "records 0..{}: Merkle root {root} does not match the signed checkpoint of {} ({}): a record in that range was changed, removed or reordered",
                cp.tree_size, cp.time, cp.root
            ));
        }
        report.checkpoint_size = Some(cp.tree_size);
    }
    Ok(report)
}

/// Deletes the index of the store in `data_dir` and recreates it from the
/// journal. The daemon must be stopped (sled refuses a second opener).
pub fn rebuild(
    data_dir: &Path,
    keys: &dyn Fn(&str) -> Option<VerifyingKey>,
) -> Result<u64, StoreError> {
    let index = data_dir.join("index");
    if index.exists() {
        std::fs::remove_dir_all(&index).map_err(|source| {
            StoreError::Journal(journal::JournalError::Io {
                path: index.clone(),
                op: "remove index",
                source,
            })
        })?;
    }
    let store = Store::open(data_dir, StoreOptions::default(), keys)?;
    store.flush()?;
    Ok(store.tree_size())
}
