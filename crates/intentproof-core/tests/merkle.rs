//! RFC 6962 / 9162 Merkle trees against the CT reference vectors (the 8
//! example leaves used by transparency-dev/merkle and Certificate
//! Transparency's tests), plus mutated proofs that must fail.

use intentproof_core::merkle::{
    Hash, MerkleError, RootAccumulator, consistency_proof, empty_root, event_merkle_root,
    inclusion_proof, leaf_hash, node_hash, root, root_of_data, verify_consistency,
    verify_inclusion,
};

const LEAVES: [&[u8]; 8] = [
    b"",
    &[0x00],
    &[0x10],
    &[0x20, 0x21],
    &[0x30, 0x31],
    &[0x40, 0x41, 0x42, 0x43],
    &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
    &[
        0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e,
        0x6f,
    ],
];

/// Roots of the first n leaves, n = 0..=8.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn h(hex: &str) -> Hash {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn leaf_hashes(n: usize) -> Vec<Hash> {
    LEAVES[..n].iter().map(|d| leaf_hash(d)).collect()
}

/// Straight recursive definition, to cross-check the iterative root.
fn reference_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
        }
    }
}

#[test]
fn roots_for_sizes_zero_through_eight() {
    for (n, want) in ROOTS.iter().enumerate() {
        assert_eq!(root(&leaf_hashes(n)), h(want), "size {n}");
        assert_eq!(root_of_data(&LEAVES[..n]), h(want), "size {n}");
    }
}

#[test]
fn iterative_root_matches_the_recursive_definition() {
    let leaves: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    for n in 0..leaves.len() {
        assert_eq!(root(&leaves[..n]), reference_root(&leaves[..n]), "size {n}");
    }
}

#[test]
fn streamed_root_is_the_root_of_every_prefix() {
    let leaves: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut accumulator = RootAccumulator::default();
    assert_eq!(accumulator.root(), h(ROOTS[0]));
    for (n, leaf) in leaves.iter().enumerate() {
        accumulator.push(*leaf);
        assert_eq!(accumulator.len(), n as u64 + 1);
        assert_eq!(
            accumulator.root(),
            reference_root(&leaves[..=n]),
            "size {}",
            n + 1
        );
    }
    let mut vectors = RootAccumulator::default();
    for (n, leaf) in leaf_hashes(8).into_iter().enumerate() {
        vectors.push(leaf);
        assert_eq!(vectors.root(), h(ROOTS[n + 1]), "size {}", n + 1);
    }
}

#[test]
fn odd_node_is_not_duplicated() {
    let three = leaf_hashes(3);
    let four = [three[0], three[1], three[2], three[2]];
    assert_ne!(root(&three), root(&four));
}

#[test]
fn reference_inclusion_proofs() {
    // (0-based index, tree size, path)
    let cases: [(usize, usize, &[&str]); 4] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (index, size, path) in cases {
        let leaves = leaf_hashes(size);
        let want: Vec<Hash> = path.iter().map(|p| h(p)).collect();
        assert_eq!(
            inclusion_proof(&leaves, index).unwrap(),
            want,
            "{index}/{size}"
        );
        verify_inclusion(
            &leaves[index],
            index as u64,
            size as u64,
            &want,
            &h(ROOTS[size]),
        )
        .unwrap();
    }
}

#[test]
fn single_leaf_tree_has_an_empty_proof() {
    let leaves = leaf_hashes(1);
    assert!(inclusion_proof(&leaves, 0).unwrap().is_empty());
    verify_inclusion(&leaves[0], 0, 1, &[], &h(ROOTS[1])).unwrap();
    assert!(inclusion_proof(&leaves, 1).is_err());
}

/// Every way of damaging a valid inclusion proof must fail.
fn inclusion_mutations_fail(leaves: &[Hash], index: usize) {
    let size = leaves.len() as u64;
    let i = index as u64;
    let r = root(leaves);
    let proof = inclusion_proof(leaves, index).unwrap();
    let leaf = leaves[index];
    verify_inclusion(&leaf, i, size, &proof, &r).unwrap();

    let fails = |leaf: &Hash, i: u64, size: u64, proof: &[Hash], r: &Hash, what: &str| {
        assert!(
            verify_inclusion(leaf, i, size, proof, r).is_err(),
            "{what} accepted (index {index}, size {size})"
        );
    };
    // Bit flips in every proof hash, the leaf and the root.
    for j in 0..proof.len() {
        let mut p = proof.clone();
        p[j][7] ^= 0x10;
        fails(&leaf, i, size, &p, &r, "flipped proof bit");
    }
    let mut bad_leaf = leaf;
    bad_leaf[0] ^= 1;
    fails(&bad_leaf, i, size, &proof, &r, "flipped leaf bit");
    let mut bad_root = r;
    bad_root[31] ^= 0x80;
    fails(&leaf, i, size, &proof, &bad_root, "flipped root bit");
    // Index off by one.
    if i > 0 {
        fails(&leaf, i - 1, size, &proof, &r, "index - 1");
    }
    fails(&leaf, i + 1, size, &proof, &r, "index + 1");
    // Size doubled / halved.
    fails(&leaf, i, size * 2, &proof, &r, "size * 2");
    if size > 1 {
        fails(&leaf, i, size / 2, &proof, &r, "size / 2");
    }
    // Extra hash at either end, missing hash at either end.
    let mut longer = proof.clone();
    longer.push(empty_root());
    fails(&leaf, i, size, &longer, &r, "extra trailing hash");
    let mut longer = vec![empty_root()];
    longer.extend_from_slice(&proof);
    fails(&leaf, i, size, &longer, &r, "extra leading hash");
    if !proof.is_empty() {
        fails(
            &leaf,
            i,
            size,
            &proof[..proof.len() - 1],
            &r,
            "missing last hash",
        );
        fails(&leaf, i, size, &proof[1..], &r, "missing first hash");
    }
}

#[test]
fn mutated_inclusion_proofs_fail() {
    for n in 1..=8 {
        for i in 0..n {
            inclusion_mutations_fail(&leaf_hashes(n), i);
        }
    }
    let big: Vec<Hash> = (0u32..37).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    for i in 0..big.len() {
        inclusion_mutations_fail(&big, i);
    }
}

#[test]
fn reference_consistency_proofs() {
    let cases: [(usize, usize, &[&str]); 3] = [
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (old, new, path) in cases {
        let want: Vec<Hash> = path.iter().map(|p| h(p)).collect();
        assert_eq!(
            consistency_proof(&leaf_hashes(new), old).unwrap(),
            want,
            "{old}->{new}"
        );
        verify_consistency(
            old as u64,
            new as u64,
            &h(ROOTS[old]),
            &h(ROOTS[new]),
            &want,
        )
        .unwrap();
    }
}

#[test]
fn consistency_edge_cases() {
    let e = empty_root();
    let r1 = h(ROOTS[1]);
    // Always consistent: from the empty tree, and equal sizes with equal roots.
    verify_consistency(0, 0, &e, &e, &[]).unwrap();
    verify_consistency(0, 1, &e, &r1, &[]).unwrap();
    verify_consistency(1, 1, &r1, &r1, &[]).unwrap();
    // Time travel, empty proof between different sizes, mismatched roots,
    // redundant proof nodes.
    assert!(matches!(
        verify_consistency(1, 0, &r1, &e, &[]),
        Err(MerkleError::SizeOrder { .. })
    ));
    assert!(verify_consistency(1, 2, &r1, &h(ROOTS[2]), &[]).is_err());
    assert!(verify_consistency(1, 1, &r1, &e, &[]).is_err());
    assert!(verify_consistency(1, 1, &r1, &r1, &[e]).is_err());
    assert!(verify_consistency(0, 1, &e, &r1, &[e]).is_err());
}

fn consistency_mutations_fail(leaves: &[Hash], old: usize) {
    let new = leaves.len();
    let (o, n) = (old as u64, new as u64);
    let old_root = root(&leaves[..old]);
    let new_root = root(leaves);
    let proof = consistency_proof(leaves, old).unwrap();
    verify_consistency(o, n, &old_root, &new_root, &proof).unwrap();
    if proof.is_empty() {
        return;
    }
    let fails = |o: u64, n: u64, a: &Hash, b: &Hash, p: &[Hash], what: &str| {
        assert!(
            verify_consistency(o, n, a, b, p).is_err(),
            "{what} accepted ({old} -> {new})"
        );
    };
    for j in 0..proof.len() {
        let mut p = proof.clone();
        p[j][3] ^= 0x04;
        fails(o, n, &old_root, &new_root, &p, "flipped proof bit");
    }
    fails(o - 1, n, &old_root, &new_root, &proof, "old size - 1");
    fails(o + 1, n, &old_root, &new_root, &proof, "old size + 1");
    fails(o, n * 2, &old_root, &new_root, &proof, "new size * 2");
    if n / 2 >= o && n / 2 != n {
        fails(o, n / 2, &old_root, &new_root, &proof, "new size / 2");
    }
    fails(o, n, &new_root, &old_root, &proof, "swapped roots");
    let mut p = proof.clone();
    p.push(empty_root());
    fails(o, n, &old_root, &new_root, &p, "extra trailing hash");
    let mut p = vec![empty_root()];
    p.extend_from_slice(&proof);
    fails(o, n, &old_root, &new_root, &p, "extra leading hash");
    fails(
        o,
        n,
        &old_root,
        &new_root,
        &proof[..proof.len() - 1],
        "missing last hash",
    );
    fails(
        o,
        n,
        &old_root,
        &new_root,
        &proof[1..],
        "missing first hash",
    );
}

#[test]
fn mutated_consistency_proofs_fail() {
    for n in 1..=8 {
        for old in 1..n {
            consistency_mutations_fail(&leaf_hashes(n), old);
        }
    }
    let big: Vec<Hash> = (0u32..37).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    for old in 1..big.len() {
        consistency_mutations_fail(&big, old);
    }
}

#[test]
fn every_generated_consistency_proof_verifies() {
    let big: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    for n in 0..=big.len() {
        for old in 0..=n {
            let p = consistency_proof(&big[..n], old).unwrap();
            verify_consistency(
                old as u64,
                n as u64,
                &root(&big[..old]),
                &root(&big[..n]),
                &p,
            )
            .unwrap_or_else(|e| panic!("{old} -> {n}: {e}"));
        }
    }
}

#[test]
fn event_merkle_root_sorts_ids_bytewise() {
    let ids = ["evt_b", "evt_a", "evt_c"];
    let sorted = [b"evt_a".as_slice(), b"evt_b", b"evt_c"];
    let want = root_of_data(&sorted);
    let hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(event_merkle_root(&ids), format!("sha256:{hex}"));
    assert_eq!(
        event_merkle_root::<&str>(&[]),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // Byte-wise, not by chars: "Z" (0x5a) sorts before "a" (0x61).
    let mixed = event_merkle_root(&["a", "Z"]);
    assert_eq!(mixed, event_merkle_root(&["Z", "a"]));
    let expected = root_of_data(&[b"Z".as_slice(), b"a"]);
    assert!(
        mixed.ends_with(
            &expected
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    );
}

/// `MerkleLog` (cached subtrees) gives exactly what the plain functions
/// give, for every prefix size, leaf and old size of trees up to 70 leaves,
/// and its proofs verify.
#[test]
fn merkle_log_matches_the_plain_functions_everywhere() {
    use intentproof_core::merkle::{
        MerkleLog, consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency,
        verify_inclusion,
    };
    let leaves: Vec<[u8; 32]> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let log = MerkleLog::from_leaves(leaves.iter().copied());
    assert_eq!(log.len(), 70);
    for size in 0..=70usize {
        let prefix = &leaves[..size];
        assert_eq!(log.root(size), root(prefix), "root of {size}");
        for (index, leaf) in prefix.iter().enumerate() {
            let proof = log.inclusion_proof(index, size).unwrap();
            assert_eq!(
                proof,
                inclusion_proof(prefix, index).unwrap(),
                "leaf {index} of {size}"
            );
            verify_inclusion(leaf, index as u64, size as u64, &proof, &root(prefix)).unwrap();
        }
        assert!(log.inclusion_proof(size, size).is_err());
        for old in 0..=size {
            let proof = log.consistency_proof(old, size).unwrap();
            assert_eq!(
                proof,
                consistency_proof(prefix, old).unwrap(),
                "{old} -> {size}"
            );
            verify_consistency(
                old as u64,
                size as u64,
                &root(&leaves[..old]),
                &root(prefix),
                &proof,
            )
            .unwrap();
        }
    }
    // Growing one leaf at a time keeps the same state as building at once.
    let mut grown = MerkleLog::default();
    for leaf in &leaves {
        grown.push(*leaf);
    }
    assert_eq!(grown, log);
    assert!(MerkleLog::default().is_empty());
    assert_eq!(MerkleLog::default().root(0), root(&[]));
}

/// `BlockLog` (only subtrees of 2^floor leaves and up kept) gives exactly
/// what the plain functions give, for every floor, prefix size and leaf of
/// trees up to 70 leaves; a root of the whole log reads nothing, an
/// inclusion proof reads whole blocks, once each, only the leaf's and the
/// one its tree size ends in; a failed read and leaves that do not hash to
/// their block's root are reported.
#[test]
fn block_log_matches_the_plain_functions_and_reads_one_block() {
    use intentproof_core::merkle::{
        BlockLog, BlockLogError, consistency_proof, inclusion_proof, leaf_hash, root,
    };
    use std::cell::RefCell;
    let leaves: Vec<[u8; 32]> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    for floor in 0..=7u32 {
        let block = 1usize << floor;
        for len in [0usize, 1, 5, 31, 32, 33, 64, 70] {
            let mut log = BlockLog::new(floor);
            log.extend(leaves[..len].iter().copied());
            assert_eq!(log.len(), len);
            let reads: RefCell<Vec<(usize, usize)>> = RefCell::new(Vec::new());
            let read = |first: usize, out: &mut [[u8; 32]]| -> Result<(), String> {
                reads.borrow_mut().push((first, out.len()));
                out.copy_from_slice(&leaves[first..first + out.len()]);
                Ok(())
            };
            assert_eq!(log.root(len, &read).unwrap(), root(&leaves[..len]));
            assert!(
                reads.borrow().is_empty(),
                "floor {floor}, len {len}: root of all read"
            );
            for size in 0..=len {
                let prefix = &leaves[..size];
                assert_eq!(
                    log.root(size, &read).unwrap(),
                    root(prefix),
                    "root of {size}"
                );
                for index in 0..size {
                    reads.borrow_mut().clear();
                    let proof = log.inclusion_proof(index, size, &read).unwrap();
                    assert_eq!(
                        proof,
                        inclusion_proof(prefix, index).unwrap(),
                        "floor {floor}, leaf {index} of {size}"
                    );
                    // Whole blocks, once each: the leaf's or the last one.
                    let mut blocks: Vec<usize> = Vec::new();
                    for &(first, n) in reads.borrow().iter() {
                        let b = first / block;
                        assert!(
                            b == index / block || b == (size - 1) / block,
                            "floor {floor}, leaf {index} of {size} read block {b}"
                        );
                        assert_eq!((first % block, n), (0, block));
                        assert!(!blocks.contains(&b), "block {b} read twice");
                        blocks.push(b);
                    }
                }
                assert!(matches!(
                    log.inclusion_proof(size, size, &read),
                    Err(BlockLogError::Merkle(_))
                ));
                for old in 0..=size {
                    assert_eq!(
                        log.consistency_proof(old, size, &read).unwrap(),
                        consistency_proof(prefix, old).unwrap(),
                        "floor {floor}, consistency {old} -> {size}"
                    );
                }
                assert!(matches!(
                    log.consistency_proof(size + 1, size, &read),
                    Err(BlockLogError::Merkle(_))
                ));
            }
            if len >= 2 * block && floor > 0 {
                let failing = |_: usize, _: &mut [[u8; 32]]| Err("disk gone".to_owned());
                assert!(matches!(
                    log.inclusion_proof(0, len, &failing),
                    Err(BlockLogError::Read(e)) if e == "disk gone"
                ));
                let damaged = |first: usize, out: &mut [[u8; 32]]| -> Result<(), String> {
                    out.copy_from_slice(&leaves[first..first + out.len()]);
                    out[out.len() - 1][0] ^= 1;
                    Ok(())
                };
                assert!(matches!(
                    log.inclusion_proof(0, len, &damaged),
                    Err(BlockLogError::Mismatch { first: 0 })
                ));
            }
        }
    }
}
