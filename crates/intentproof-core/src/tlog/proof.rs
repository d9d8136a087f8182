//! C2SP `tlog-proof`: one leaf's inclusion proof with the (cosigned)
//! checkpoint it leads to, as a text file (`.tlog-proof`).
//!
//! ```text
//! c2sp.org/tlog-proof@v1\n
//! [extra <base64>\n]
//! index <leaf index, decimal>\n
//! <base64 hash>\n            (the RFC 9162 audit path, leaf first)
//! ...
//! \n
//! <signed checkpoint note>
//! ```
//!
//! The proof does not carry the leaf: the verifier hashes the entry it
//! holds. [`TlogProof::verify`] checks everything a proof can show: the
//! log's signature on the checkpoint, each required witness's cosignature,
//! and the audit path from the leaf to the checkpoint's root.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::checkpoint::{TlogCheckpoint, parse_decimal};
use super::note::{KeyType, Note, NoteVerifier};
use crate::merkle::{Hash, verify_inclusion};

/// The first line of a `tlog-proof`.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// At most this many audit path lines (a tree of 2^63 leaves needs 63).
pub const MAX_PROOF_HASHES: usize = 63;

/// A parsed `tlog-proof`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque application data (`extra` line), if any.
    pub extra: Option<Vec<u8>>,
    /// The leaf's index.
    pub index: u64,
    /// The audit path, leaf first.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint.
    pub checkpoint: Note,
}

/// A `tlog-proof` up to its checkpoint: what [`TlogProofHead::parse`]
/// reads before the note, which it returns unparsed (many proofs share one
/// note: a verifier parses and checks each distinct note once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProofHead {
    /// Opaque application data (`extra` line), if any.
    pub extra: Option<Vec<u8>>,
    /// The leaf's index.
    pub index: u64,
    /// The audit path, leaf first.
    pub hashes: Vec<Hash>,
}

impl TlogProofHead {
    /// Splits a `tlog-proof` into its parsed head and its note's text.
    pub fn parse(text: &str) -> Result<(TlogProofHead, &str), String> {
        let (head, note) = text
            .split_once("\n\n")
            .ok_or("a tlog-proof needs a blank line before its checkpoint")?;
        let mut lines = head.split('\n');
        if lines.next() != Some(TLOG_PROOF_HEADER) {
            return Err(format!("a tlog-proof starts with {TLOG_PROOF_HEADER:?}"));
        }
        let mut line = lines.next().ok_or("the tlog-proof has no index line")?;
        let mut extra = None;
        if let Some(encoded) = line.strip_prefix("extra ") {
            extra = Some(
                B64.decode(encoded)
                    .map_err(|_| format!("extra {encoded:?} is not base64"))?,
            );
            line = lines.next().ok_or("the tlog-proof has no index line")?;
        }
        let index = line
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or_else(|| format!("expected \"index <decimal>\", got {line:?}"))?;
        let hashes = hash_lines(lines)?;
        Ok((
            TlogProofHead {
                extra,
                index,
                hashes,
            },
            note,
        ))
    }

    /// Checks the audit path: `leaf` at [`TlogProofHead::index`] leads to
    /// `checkpoint`'s root.
    pub fn verify_leaf(&self, leaf: &Hash, checkpoint: &TlogCheckpoint) -> Result<(), String> {
        leaf_in(leaf, self.index, &self.hashes, checkpoint)
    }
}

/// Proof lines, one base64 SHA-256 hash each, at most
/// [`MAX_PROOF_HASHES`] (a tlog-proof's audit path, a tlog-witness
/// request's consistency proof).
pub(super) fn hash_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Vec<Hash>, String> {
    let mut hashes = Vec::new();
    for line in lines {
        if hashes.len() == MAX_PROOF_HASHES {
            return Err(format!("more than {MAX_PROOF_HASHES} proof lines"));
        }
        let mut hash = [0u8; 32];
        match B64.decode_slice(line, &mut hash) {
            Ok(32) => hashes.push(hash),
            _ => return Err(format!("proof line {line:?} is not base64 of 32 bytes")),
        }
    }
    Ok(hashes)
}

fn leaf_in(
    leaf: &Hash,
    index: u64,
    hashes: &[Hash],
    checkpoint: &TlogCheckpoint,
) -> Result<(), String> {
    verify_inclusion(leaf, index, checkpoint.size, hashes, &checkpoint.root).map_err(|e| {
        format!(
            "leaf {index} is not in the checkpoint of size {}: {e}",
            checkpoint.size
        )
    })
}

/// What [`TlogProof::verify`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The checkpoint the leaf is in.
    pub checkpoint: TlogCheckpoint,
    /// Names of the witnesses whose cosignature verified (of those required).
    pub witnesses: Vec<String>,
}

impl TlogProof {
    /// Parses a `tlog-proof` file.
    pub fn parse(text: &str) -> Result<TlogProof, String> {
        let (head, note) = TlogProofHead::parse(text)?;
        let checkpoint = Note::parse(note).map_err(|e| e.to_string())?;
        Ok(TlogProof {
            extra: head.extra,
            index: head.index,
            hashes: head.hashes,
            checkpoint,
        })
    }

    /// Checks that `leaf` (an RFC 6962 leaf hash) is at [`TlogProof::index`]
    /// of the checkpoint, that the checkpoint is signed by `log`, and that
    /// every verifier in `witnesses` cosigned it. Says what failed.
    pub fn verify(
        &self,
        leaf: &Hash,
        log: &NoteVerifier,
        witnesses: &[NoteVerifier],
    ) -> Result<VerifiedProof, String> {
        let verified = verify_checkpoint(&self.checkpoint, log, witnesses)?;
        self.verify_leaf(leaf, &verified.checkpoint)?;
        Ok(verified)
    }

    /// Checks only the audit path: `leaf` at [`TlogProof::index`] leads to
    /// `checkpoint`'s root (one checked with [`verify_checkpoint`], which
    /// many proofs to one checkpoint need do once).
    pub fn verify_leaf(&self, leaf: &Hash, checkpoint: &TlogCheckpoint) -> Result<(), String> {
        leaf_in(leaf, self.index, &self.hashes, checkpoint)
    }
}

/// Checks a checkpoint note: its text is a checkpoint whose origin is the
/// name of `log`, `log` signed it, and every verifier in `witnesses` (type
/// 0x04) cosigned it. Says what failed.
pub fn verify_checkpoint(
    note: &Note,
    log: &NoteVerifier,
    witnesses: &[NoteVerifier],
) -> Result<VerifiedProof, String> {
    let checkpoint = TlogCheckpoint::parse(note.text())?;
    if checkpoint.origin != log.name() {
        return Err(format!(
            "the checkpoint's origin {:?} is not the log key's name {:?}",
            checkpoint.origin,
            log.name()
        ));
    }
    match note.verify(log) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(format!(
                "the checkpoint has no signature by the log key {log}"
            ));
        }
        Err(e) => return Err(e.to_string()),
    }
    let mut names = Vec::new();
    for witness in witnesses {
        if witness.key_type() != KeyType::Cosignature {
            return Err(format!(
                "witness key {witness} is not a cosignature (type 0x04) key"
            ));
        }
        match note.verify(witness) {
            Ok(Some(_)) => names.push(witness.name().to_owned()),
            Ok(None) => {
                return Err(format!(
                    "the checkpoint (size {}) is not cosigned by witness {}",
                    checkpoint.size,
                    witness.name()
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(VerifiedProof {
        checkpoint,
        witnesses: names,
    })
}

impl fmt::Display for TlogProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{TLOG_PROOF_HEADER}")?;
        if let Some(extra) = &self.extra {
            writeln!(f, "extra {}", B64.encode(extra))?;
        }
        writeln!(f, "index {}", self.index)?;
        for hash in &self.hashes {
            writeln!(f, "{}", B64.encode(hash))?;
        }
        write!(f, "\n{}", self.checkpoint)
    }
}
