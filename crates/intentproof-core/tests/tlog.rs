//! The C2SP formats (`intentproof_core::tlog`) against the specs' own
//! examples, Go's `sumdb/note` vectors, and two independent
//! implementations from crates.io: `signed_note` (notes, key IDs) and
//! `tlog_tiles` (checkpoint text, inclusion and consistency proofs).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use intentproof_core::merkle::{self, Hash};
use intentproof_core::tlog::checkpoint::TlogCheckpoint;
use intentproof_core::tlog::note::{KeyType, Note, NoteError, NoteSigner, NoteVerifier};
use intentproof_core::tlog::proof::TlogProof;
use intentproof_core::tlog::witness::{self, AddCheckpoint, Recorded, Refusal};

/// signed-note.md "Example" (C2SP 99fd482d).
const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
/// signed-note.md's introduction (no key published).
const SPEC_POEM: &str = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u{e8} subito sera.\n\n\u{2014} quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";

/// golang.org/x/mod/sumdb/note note_test.go.
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";
const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=";

/// tlog-checkpoint.md's example body.
const SOFA: &str =
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

fn seed_of_skey(skey: &str) -> [u8; 32] {
    let encoded = skey.splitn(5, '+').nth(4).expect("skey has 5 parts");
    let bytes = B64.decode(encoded).expect("base64");
    assert_eq!(bytes[0], 0x01);
    bytes[1..].try_into().expect("32-byte seed")
}

#[test]
fn the_signed_note_spec_example_verifies() {
    let verifier: NoteVerifier = SPEC_VKEY.parse().unwrap();
    assert_eq!(verifier.id(), 0x530d903a);
    let note = Note::parse(SPEC_NOTE).unwrap();
    assert_eq!(note.text(), "This is an example message.\n");
    assert!(note.verify(&verifier).unwrap().is_some());
    assert_eq!(note.to_string(), SPEC_NOTE, "parse and print are inverse");
    assert_eq!(verifier.to_string(), SPEC_VKEY);
}

#[test]
fn the_introduction_example_splits_at_the_last_blank_line() {
    let note = Note::parse(SPEC_POEM).unwrap();
    assert_eq!(
        note.text(),
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u{e8} subito sera.\n"
    );
    assert_eq!(note.signatures().len(), 1);
    assert_eq!(note.signatures()[0].name, "quasimodo.example/salvatore");
    assert_eq!(note.signatures()[0].key_id, 0x367ba04b);
    assert_eq!(note.to_string(), SPEC_POEM);
}

#[test]
fn go_sumdb_note_vectors_sign_and_verify_byte_for_byte() {
    let peter = NoteSigner::new("PeterNeumann", KeyType::Ed25519, seed_of_skey(PETER_SKEY));
    assert_eq!(peter.verifier().to_string(), PETER_VKEY);
    let enoch = NoteSigner::new("EnochRoot", KeyType::Ed25519, [0u8; 32]);
    assert_eq!(enoch.verifier().to_string(), ENOCH_VKEY);

    let mut note = Note::new(PETER_TEXT).unwrap();
    note.push(peter.sign(note.text(), 0).unwrap());
    assert_eq!(note.to_string(), format!("{PETER_TEXT}\n{PETER_SIG}\n"));
    note.push(enoch.sign(note.text(), 0).unwrap());
    assert_eq!(
        note.to_string(),
        format!("{PETER_TEXT}\n{PETER_SIG}\n{ENOCH_SIG}\n")
    );
    let parsed = Note::parse(&note.to_string()).unwrap();
    for vkey in [PETER_VKEY, ENOCH_VKEY] {
        assert!(
            parsed.verify(&vkey.parse().unwrap()).unwrap().is_some(),
            "{vkey}"
        );
    }
}

#[test]
fn malformed_notes_and_keys_are_refused_with_the_reason() {
    let good = format!("{PETER_TEXT}\n{PETER_SIG}\n");
    for (bad, why) in [
        (PETER_TEXT.to_owned(), "no blank line"),
        (format!("{PETER_TEXT}\n"), "no signature lines"),
        (
            format!("{PETER_TEXT}\n{PETER_SIG}"),
            "no signature lines, or the last",
        ),
        (format!("\x01{good}"), "control character"),
        (
            format!(
                "{PETER_TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
            ),
            "is not base64",
        ),
        (format!("{good}Unexpected line.\n"), "does not start with"),
        (
            format!("{PETER_TEXT}\n\u{2014} PeterNeumann AAAA\n"),
            "fewer than a key ID",
        ),
    ] {
        let err = Note::parse(&bad).unwrap_err().to_string();
        assert!(err.contains(why), "{bad:?}: {err}");
    }
    let many = format!("{PETER_TEXT}\n{}", format!("{PETER_SIG}\n").repeat(101));
    assert_eq!(
        Note::parse(&many).unwrap_err().to_string(),
        "malformed signed note: more than 100 signature lines"
    );
    // A corrupted signature by a known key is an error, never skipped; by
    // an unknown key it is only kept.
    let mut sig = B64.decode(PETER_SIG.rsplit(' ').next().unwrap()).unwrap();
    sig[40] ^= 1;
    let corrupt = format!("{PETER_TEXT}\n\u{2014} PeterNeumann {}\n", B64.encode(&sig));
    let note = Note::parse(&corrupt).unwrap();
    assert_eq!(
        note.verify(&PETER_VKEY.parse().unwrap()),
        Err(NoteError::BadSignature {
            name: "PeterNeumann".into(),
            id: 0xc74f20a3
        })
    );
    assert_eq!(note.verify(&ENOCH_VKEY.parse().unwrap()), Ok(None));

    for (vkey, why) in [
        (
            // Go decodes it leniently and then finds 38 bytes; our decoder
            // is strict about the padding bits already.
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "not base64",
        ),
        (
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWAA==",
            "not 32 bytes",
        ),
        (
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "key type",
        ),
        (
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "does not match",
        ),
        ("PeterNeumann+c74f20a3", "expected <name>"),
    ] {
        let err = vkey.parse::<NoteVerifier>().unwrap_err().to_string();
        assert!(err.contains(why), "{vkey}: {err}");
    }
    // Every proper prefix of a good key is refused.
    for end in 0..PETER_VKEY.len() {
        assert!(
            PETER_VKEY[..end].parse::<NoteVerifier>().is_err(),
            "{}",
            &PETER_VKEY[..end]
        );
    }
}

#[test]
fn cosignatures_match_the_reference_vector_and_the_spec_layout() {
    // c2sp-extract.md section 7: generated with Python `cryptography`
    // from the spec's text (zero seed, time 1679315147).
    let witness = NoteSigner::new("witness.example/w1", KeyType::Cosignature, [0u8; 32]);
    assert_eq!(
        witness.verifier().to_string(),
        "witness.example/w1+e42b2f2c+BDtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
    );
    let line = witness.sign(SOFA, 1679315147).unwrap();
    assert_eq!(
        line.to_string(),
        "\u{2014} witness.example/w1 5CsvLAAAAABkGFDLN7VCWowLNFrAx5kFlOq5Gblf9cDN74bbmX0TAuxTFK/0CM4NgMiBvbpFFyRcIVXoHLQV9IBeLzGW/URa5SA/DQ=="
    );
    assert_eq!(line.cosignature_time(), Some(1679315147));
    let log = NoteSigner::new("example.com/behind-the-sofa", KeyType::Ed25519, [0u8; 32]);
    assert_eq!(
        log.sign(SOFA, 0).unwrap().to_string(),
        "\u{2014} example.com/behind-the-sofa nFHOPUO63Y13dtnQuHZB0ONl5ojQtyglZGuN5ue+kCPefAokf76QnnOHoKOXc1iSPksY1qdR7Ud+xxPLfe+A+ar/4QE="
    );
    // A cosignature is not a log signature: same key, other type, other ID.
    let mut note = Note::new(SOFA).unwrap();
    note.push(line);
    assert_eq!(note.verify(&log.verifier()), Ok(None));
    assert!(note.verify(&witness.verifier()).unwrap().is_some());
}

#[test]
fn checkpoint_text_round_trips_and_refuses_non_canonical_sizes() {
    let cp = TlogCheckpoint::parse(SOFA).unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20852163);
    assert_eq!(cp.to_string(), SOFA);
    for (bad, why) in [
        (
            "o\n012\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "leading zeros",
        ),
        (
            "o\n+12\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "leading zeros",
        ),
        (
            "o\n12\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n",
            "base64 of 32 bytes",
        ),
        (
            "o\n12\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",
            "newline",
        ),
        (
            "\n12\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "origin",
        ),
        (
            "o\n12\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\nx\n",
            "empty extension",
        ),
    ] {
        let err = TlogCheckpoint::parse(bad).unwrap_err();
        assert!(err.contains(why), "{bad:?}: {err}");
    }
    // The independent parser reads ours the same.
    let theirs = tlog_tiles::Checkpoint::from_bytes(SOFA.as_bytes()).unwrap();
    assert_eq!(theirs.origin(), cp.origin);
    assert_eq!(theirs.size(), cp.size);
    assert_eq!(theirs.hash().0, cp.root);
}

/// Wraps a verifier of ours so the `signed_note` crate can call it
/// for cosignatures (it implements only type 0x01 itself): the crate finds
/// the line by name and key ID, we build the spec's message here from the
/// C2SP text, independently of `intentproof_core::tlog`.
struct CosignatureCheck {
    name: String,
    key: VerifyingKey,
}

impl signed_note::Verifier for CosignatureCheck {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        let mut key = vec![0x04];
        key.extend_from_slice(self.key.as_bytes());
        signed_note::key_id(&self.name, &key)
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != 72 {
            return false;
        }
        let time = u64::from_be_bytes(sig[..8].try_into().unwrap());
        let mut message = format!("cosignature/v1\ntime {time}\n").into_bytes();
        message.extend_from_slice(msg);
        let sig = ed25519_dalek::Signature::from_slice(&sig[8..]).unwrap();
        self.key.verify_strict(&message, &sig).is_ok()
    }
}

#[test]
fn an_independent_implementation_verifies_our_checkpoints_and_cosignatures() {
    let log = NoteSigner::new("intentproof-gateway/inst_x", KeyType::Ed25519, [9u8; 32]);
    let witness = NoteSigner::new("witness.test/b", KeyType::Cosignature, [8u8; 32]);
    let leaves: Vec<Hash> = (0..13u32)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect();
    let cp = TlogCheckpoint::new(log.name(), 13, merkle::root(&leaves));
    let mut note = Note::new(cp.to_string()).unwrap();
    note.push(log.sign(note.text(), 0).unwrap());
    note.push(witness.sign(note.text(), 1_765_000_000).unwrap());
    let text = note.to_string();

    let theirs = signed_note::Note::from_bytes(text.as_bytes()).unwrap();
    let log_vkey = signed_note::StandardVerifier::new(&log.verifier().to_string()).unwrap();
    let (verified, unverified) = theirs
        .verify(&signed_note::VerifierList::new(vec![Box::new(log_vkey)]))
        .unwrap();
    assert_eq!((verified.len(), unverified.len()), (1, 1));
    assert_eq!(verified[0].id(), log.verifier().id());
    let cosig = CosignatureCheck {
        name: "witness.test/b".into(),
        key: *witness.verifier().key(),
    };
    let (verified, _) = theirs
        .verify(&signed_note::VerifierList::new(vec![Box::new(cosig)]))
        .unwrap();
    assert_eq!(verified[0].id(), witness.verifier().id());
    // Their key ID function agrees with ours for both types.
    let mut typed = vec![0x01];
    typed.extend_from_slice(log.verifier().key().as_bytes());
    assert_eq!(signed_note::key_id(log.name(), &typed), log.verifier().id());

    // A flipped byte of the text is caught by both.
    let forged = text.replacen("\n13\n", "\n14\n", 1);
    let theirs = signed_note::Note::from_bytes(forged.as_bytes()).unwrap();
    let log_vkey = signed_note::StandardVerifier::new(&log.verifier().to_string()).unwrap();
    assert!(
        theirs
            .verify(&signed_note::VerifierList::new(vec![Box::new(log_vkey)]))
            .is_err()
    );
    assert!(
        Note::parse(&forged)
            .unwrap()
            .verify(&log.verifier())
            .is_err()
    );
}

fn tiles_hash(h: &Hash) -> tlog_tiles::Hash {
    tlog_tiles::Hash(*h)
}

#[test]
fn the_independent_implementation_checks_our_inclusion_and_consistency_proofs() {
    let leaves: Vec<Hash> = (0..70u32)
        .map(|i| merkle::leaf_hash(&i.to_le_bytes()))
        .collect();
    let log = merkle::MerkleLog::from_leaves(leaves.iter().copied());
    for size in 1..=leaves.len() {
        let root = tiles_hash(&log.root(size));
        for (index, leaf) in leaves.iter().enumerate().take(size) {
            let proof: Vec<_> = log
                .inclusion_proof(index, size)
                .unwrap()
                .iter()
                .map(tiles_hash)
                .collect();
            tlog_tiles::check_record(&proof, size as u64, root, index as u64, tiles_hash(leaf))
                .unwrap_or_else(|e| panic!("inclusion {index} of {size}: {e:?}"));
        }
        for old in 1..=size {
            let proof: Vec<_> = log
                .consistency_proof(old, size)
                .unwrap()
                .iter()
                .map(tiles_hash)
                .collect();
            tlog_tiles::check_tree(
                &proof,
                size as u64,
                root,
                old as u64,
                tiles_hash(&log.root(old)),
            )
            .unwrap_or_else(|e| panic!("consistency {old} -> {size}: {e:?}"));
        }
    }
}

#[test]
fn a_tlog_proof_round_trips_and_checks_log_witness_and_path() {
    let log = NoteSigner::new("intentproof-gateway/inst_p", KeyType::Ed25519, [5u8; 32]);
    let witness = NoteSigner::new("witness.test/b", KeyType::Cosignature, [6u8; 32]);
    let other = NoteSigner::new("witness.test/c", KeyType::Cosignature, [7u8; 32]);
    let leaves: Vec<Hash> = (0..6u8).map(|i| merkle::leaf_hash(&[i])).collect();
    let cp = TlogCheckpoint::new(log.name(), 6, merkle::root(&leaves));
    let mut note = Note::new(cp.to_string()).unwrap();
    note.push(log.sign(note.text(), 0).unwrap());
    note.push(witness.sign(note.text(), 42).unwrap());
    let proof = TlogProof {
        extra: None,
        index: 4,
        hashes: merkle::inclusion_proof(&leaves, 4).unwrap(),
        checkpoint: note,
    };
    let text = proof.to_string();
    assert!(
        text.starts_with("c2sp.org/tlog-proof@v1\nindex 4\n"),
        "{text}"
    );
    let parsed = TlogProof::parse(&text).unwrap();
    assert_eq!(parsed, proof);
    let ok = parsed
        .verify(&leaves[4], &log.verifier(), &[witness.verifier()])
        .unwrap();
    assert_eq!(ok.witnesses, vec!["witness.test/b".to_owned()]);
    assert!(
        parsed
            .verify(&leaves[3], &log.verifier(), &[])
            .unwrap_err()
            .contains("is not in the checkpoint")
    );
    assert_eq!(
        parsed
            .verify(&leaves[4], &log.verifier(), &[other.verifier()])
            .unwrap_err(),
        "the checkpoint (size 6) is not cosigned by witness witness.test/c"
    );
    // With extra data, the spec's line order.
    let with_extra = TlogProof {
        extra: Some(b"x".to_vec()),
        ..proof
    };
    assert!(
        with_extra
            .to_string()
            .starts_with("c2sp.org/tlog-proof@v1\nextra eA==\nindex 4\n")
    );
    assert_eq!(
        TlogProof::parse(&with_extra.to_string()).unwrap(),
        with_extra
    );
}

fn signed(log: &NoteSigner, leaves: &[Hash]) -> Note {
    let cp = TlogCheckpoint::new(log.name(), leaves.len() as u64, merkle::root(leaves));
    let mut note = Note::new(cp.to_string()).unwrap();
    note.push(log.sign(note.text(), 0).unwrap());
    note
}

#[test]
fn the_witness_decides_as_the_tlog_witness_spec_says() {
    let log = NoteSigner::new("intentproof-gateway/inst_w", KeyType::Ed25519, [4u8; 32]);
    let keys = [log.verifier()];
    let leaves: Vec<Hash> = (0..9u8).map(|i| merkle::leaf_hash(&[i])).collect();
    let first = AddCheckpoint {
        old: 0,
        proof: vec![],
        checkpoint: signed(&log, &leaves[..5]),
    };
    let body = first.to_string();
    assert!(
        body.starts_with("old 0\n\nintentproof-gateway/inst_w\n5\n"),
        "{body}"
    );
    assert_eq!(AddCheckpoint::parse(&body).unwrap(), first);
    // At most 63 proof lines (the protocol's bound), each 32 bytes.
    let hash = B64.encode([7u8; 32]);
    let long = format!(
        "old 1\n{}\n{}",
        format!("{hash}\n").repeat(64),
        first.checkpoint
    );
    assert_eq!(
        AddCheckpoint::parse(&long).unwrap_err(),
        "more than 63 proof lines"
    );
    let short = format!("old 1\nAAAA\n\n{}", first.checkpoint);
    assert_eq!(
        AddCheckpoint::parse(&short).unwrap_err(),
        "proof line \"AAAA\" is not base64 of 32 bytes"
    );
    let cp = witness::decide(&first, Some(&keys), None).unwrap();
    let recorded = Recorded {
        size: cp.size,
        root: cp.root,
    };

    // 404, 403, 400, 409, 422 in the protocol's order.
    assert_eq!(
        witness::decide(&first, None, None).unwrap_err().status(),
        404
    );
    let stranger = NoteSigner::new("intentproof-gateway/inst_w", KeyType::Ed25519, [3u8; 32]);
    let unsigned_by_us = AddCheckpoint {
        checkpoint: signed(&stranger, &leaves[..5]),
        ..first.clone()
    };
    assert_eq!(
        witness::decide(&unsigned_by_us, Some(&keys), None)
            .unwrap_err()
            .status(),
        403
    );
    let backwards = AddCheckpoint {
        old: 6,
        ..first.clone()
    };
    assert_eq!(
        witness::decide(&backwards, Some(&keys), Some(recorded))
            .unwrap_err()
            .status(),
        400
    );
    let stale = witness::decide(&first, Some(&keys), Some(recorded)).unwrap_err();
    assert!(
        matches!(stale, Refusal::Conflict { recorded: 5, .. }),
        "{stale:?}"
    );

    let next = AddCheckpoint {
        old: 5,
        proof: merkle::consistency_proof(&leaves, 5).unwrap(),
        checkpoint: signed(&log, &leaves),
    };
    assert_eq!(
        witness::decide(&next, Some(&keys), Some(recorded))
            .unwrap()
            .size,
        9
    );
    let mut bad_proof = next.clone();
    bad_proof.proof[0][0] ^= 1;
    let refusal = witness::decide(&bad_proof, Some(&keys), Some(recorded)).unwrap_err();
    assert_eq!(refusal.status(), 422, "{refusal}");

    // A fork at the recorded size: 409 (tlog-witness v1.0.0) with the reason.
    let mut forked = leaves[..5].to_vec();
    forked[2] = merkle::leaf_hash(b"rewritten");
    let fork = AddCheckpoint {
        old: 5,
        proof: vec![],
        checkpoint: signed(&log, &forked),
    };
    let refusal = witness::decide(&fork, Some(&keys), Some(recorded)).unwrap_err();
    assert_eq!(refusal.status(), 409);
    assert!(
        refusal.to_string().starts_with("the log forked"),
        "{refusal}"
    );
    // A fork that grew past the recorded size fails its consistency proof.
    forked.extend_from_slice(&leaves[5..]);
    let grown = AddCheckpoint {
        old: 5,
        proof: merkle::consistency_proof(&forked, 5).unwrap(),
        checkpoint: signed(&log, &forked),
    };
    assert_eq!(
        witness::decide(&grown, Some(&keys), Some(recorded))
            .unwrap_err()
            .status(),
        422
    );
}
