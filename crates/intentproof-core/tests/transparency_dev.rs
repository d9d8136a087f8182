//! transparency-dev/merkle's proof test vectors (`tests/data/transparency-dev/`,
//! transcribed data, see its README): the RFC 6962 example tree's
//! inclusion and consistency proofs, the explicit invalid-input tables, and
//! every probe its `cmd/proofgen` derives by mutating a valid proof. Our
//! verifiers must accept exactly the valid ones, and our provers must
//! produce exactly the valid base proofs.

use intentproof_core::merkle::{
    self, Hash, MerkleLog, leaf_hash, verify_consistency, verify_inclusion,
};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!(
        "{}/tests/data/transparency-dev/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn bytes(hex: &Value) -> Vec<u8> {
    let hex = hex.as_str().unwrap();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A 32-byte hash, or `None` for the vectors' deliberately wrong-length
/// values (empty, "WrongLeaf", ...), which a `[u8; 32]` cannot hold.
fn hash(hex: &Value) -> Option<Hash> {
    bytes(hex).try_into().ok()
}

fn hashes(list: &Value) -> Option<Vec<Hash>> {
    list.as_array().unwrap().iter().map(hash).collect()
}

struct Tally {
    checked: usize,
    valid: usize,
    unrepresentable: Vec<String>,
}

fn check_inclusion(rows: &[Value], tally: &mut Tally) {
    for row in rows {
        let valid = row["valid"].as_bool().unwrap();
        let what = format!("{row}");
        let (Some(leaf), Some(root), Some(proof)) = (
            hash(&row["leaf_hash_hex"]),
            hash(&row["root_hex"]),
            hashes(&row["proof_hex"]),
        ) else {
            tally.unrepresentable.push(what);
            continue;
        };
        let index = row["index"].as_u64().unwrap();
        let size = row["size"].as_u64().unwrap();
        let ours = verify_inclusion(&leaf, index, size, &proof, &root);
        assert_eq!(ours.is_ok(), valid, "{what}: {ours:?}");
        tally.checked += 1;
        tally.valid += usize::from(valid);
    }
}

fn check_consistency(rows: &[Value], tally: &mut Tally) {
    for row in rows {
        let valid = row["valid"].as_bool().unwrap();
        let what = format!("{row}");
        let (Some(root1), Some(root2), Some(proof)) = (
            hash(&row["root1_hex"]),
            hash(&row["root2_hex"]),
            hashes(&row["proof_hex"]),
        ) else {
            tally.unrepresentable.push(what);
            continue;
        };
        let size1 = row["size1"].as_u64().unwrap();
        let size2 = row["size2"].as_u64().unwrap();
        let ours = verify_consistency(size1, size2, &root1, &root2, &proof);
        assert_eq!(ours.is_ok(), valid, "{what}: {ours:?}");
        tally.checked += 1;
        tally.valid += usize::from(valid);
    }
}

#[test]
fn every_probe_of_transparency_dev_is_judged_as_go_judges_it() {
    // (file, rows, rows with 32-byte hashes only, of them valid). A row
    // with a hash that is not 32 bytes (empty, "WrongLeaf", ...) cannot be
    // given to a typed verifier; Go accepts exactly one such row in each
    // file: sizes (1, 1), two equal 12-byte "roots" and an empty proof (it
    // never checks a root's length). Every other one is invalid, which a
    // typed API guarantees.
    for (file, rows, typed, valid) in [
        ("vectors-extra.json", 196, 143, 11),
        ("vectors.json", 40, 18, 11),
    ] {
        let doc = load(file);
        let mut tally = Tally {
            checked: 0,
            valid: 0,
            unrepresentable: Vec::new(),
        };
        check_inclusion(doc["inclusion"].as_array().unwrap(), &mut tally);
        check_consistency(doc["consistency"].as_array().unwrap(), &mut tally);
        assert_eq!(
            (
                tally.checked + tally.unrepresentable.len(),
                tally.checked,
                tally.valid
            ),
            (rows, typed, valid),
            "{file}"
        );
        let untyped_valid: Vec<&String> = tally
            .unrepresentable
            .iter()
            .filter(|row| row.contains("\"valid\":true"))
            .collect();
        assert_eq!(untyped_valid.len(), 1, "{file}: {untyped_valid:?}");
        assert!(untyped_valid[0].contains("\"size1\":1,\"size2\":1"));
        assert!(untyped_valid[0].contains("\"proof_hex\":[]"));
    }
}

#[test]
fn our_proofs_of_the_example_tree_are_the_vectors() {
    let base = load("vectors.json");
    let leaves: Vec<Hash> = base["leaves_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| leaf_hash(&bytes(l)))
        .collect();
    assert_eq!(leaves.len(), 8);
    let log = MerkleLog::from_leaves(leaves.iter().copied());
    for (size, root) in base["roots_hex"].as_object().unwrap() {
        let size: usize = size.parse().unwrap();
        assert_eq!(Some(log.root(size)), hash(root), "root of {size}");
        assert_eq!(Some(merkle::root(&leaves[..size])), hash(root));
    }
    let mut proofs = 0;
    for row in base["inclusion"].as_array().unwrap() {
        if row["table"] != "inclusionProofs" || row["valid"] != true {
            continue;
        }
        let (index, size) = (
            row["index"].as_u64().unwrap(),
            row["size"].as_u64().unwrap(),
        );
        let ours = log.inclusion_proof(index as usize, size as usize).unwrap();
        assert_eq!(
            Some(ours),
            hashes(&row["proof_hex"]),
            "inclusion {index} of {size}"
        );
        proofs += 1;
    }
    for row in base["consistency"].as_array().unwrap() {
        if row["table"] != "consistencyProofs" || row["valid"] != true {
            continue;
        }
        let (old, new) = (
            row["size1"].as_u64().unwrap() as usize,
            row["size2"].as_u64().unwrap() as usize,
        );
        let ours = log.consistency_proof(old, new).unwrap();
        assert_eq!(
            Some(ours),
            hashes(&row["proof_hex"]),
            "consistency {old} -> {new}"
        );
        proofs += 1;
    }
    assert_eq!(proofs, 10, "5 inclusion and 5 consistency base vectors");
}
