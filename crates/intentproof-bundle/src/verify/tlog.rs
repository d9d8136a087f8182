//! `tlog-proofs.jsonl` ([`crate::inclusion::TlogProofLine`]): the one
//! check both verifiers run, line by line as the member comes, then once
//! per distinct checkpoint note.
//!
//! A line must be the event at its position (one line per event, in
//! events.jsonl's order), carry `leaf_hash` exactly when the event is a
//! projection, and hold a C2SP tlog-proof whose audit path leads from the
//! event's leaf to its checkpoint's root. Each distinct checkpoint note
//! (an export uses one) must then be signed under its origin by a key given
//! or bundled, and cosigned by every required witness: checked once, not
//! per event (three Ed25519 verifications per event would triple the cost
//! of verifying a bundle).

use ed25519_dalek::VerifyingKey;
use intentproof_core::merkle::Hash;
use intentproof_core::tlog::checkpoint::TlogCheckpoint;
use intentproof_core::tlog::note::{KeyType, Note, NoteVerifier};
use intentproof_core::tlog::proof::{TlogProofHead, verify_checkpoint};

use crate::inclusion::{TlogProofLine, parse_hash};
use crate::manifest::TLOG_PROOFS;

/// At most this many distinct checkpoint notes in one bundle.
const MAX_NOTES: usize = 64;

/// A failed tlog check: its reason code and detail.
pub(super) struct TlogFail {
    pub(super) reason: &'static str,
    pub(super) detail: String,
    /// The event it is about, for the finding.
    pub(super) event: String,
}

fn invalid(event: &str, detail: String) -> TlogFail {
    TlogFail {
        reason: "bundle.tlog_proof_invalid",
        detail,
        event: event.to_owned(),
    }
}

/// The lines seen so far and their distinct notes.
#[derive(Default)]
pub(super) struct TlogCheck {
    pub(super) lines: usize,
    notes: Vec<SeenNote>,
}

/// A checkpoint note the proofs lead to.
struct SeenNote {
    /// As written in the proofs.
    text: String,
    note: Note,
    checkpoint: TlogCheckpoint,
    /// The first event whose proof names it.
    first: String,
}

impl TlogCheck {
    /// Checks line `bytes` (the next one) against its event `id`, whose
    /// line's leaf hash is `leaf` (`None`: a projection).
    pub(super) fn line(
        &mut self,
        bytes: &[u8],
        id: &str,
        leaf: Option<Hash>,
    ) -> Result<(), TlogFail> {
        let number = self.lines + 1;
        self.lines += 1;
        // Only strings, no integer to check, and serde's derive refuses a
        // repeated or unknown field: as strict as `parse_strict`, cheaper.
        let parsed: TlogProofLine = serde_json::from_slice(bytes)
            .map_err(|e| invalid(id, format!("{TLOG_PROOFS} line {number}: {e}")))?;
        if parsed.event_id != id {
            return Err(invalid(
                id,
                format!(
                    "{TLOG_PROOFS} line {number} is for {:?}, but event {number} is {id:?} (one line per event, in events.jsonl's order)",
                    parsed.event_id
                ),
            ));
        }
        let leaf = match (leaf, &parsed.leaf_hash) {
            (None, Some(h)) => parse_hash(h),
            (Some(leaf), None) => Some(leaf),
            _ => None,
        }
        .ok_or_else(|| {
            invalid(
                id,
                format!(
                    "the tlog-proof of event {id:?} needs a leaf_hash (64 hex digits) exactly when the event is a projection"
                ),
            )
        })?;
        let bad = |e: String| invalid(id, format!("the tlog-proof of event {id:?}: {e}"));
        let (head, note_text) = TlogProofHead::parse(&parsed.tlog_proof).map_err(bad)?;
        // A note is parsed once: later proofs to it are matched by text.
        let known = self.notes.iter().position(|n| n.text == note_text);
        let at = match known {
            Some(at) => at,
            None => {
                if self.notes.len() == MAX_NOTES {
                    return Err(invalid(
                        id,
                        format!("{TLOG_PROOFS} names more than {MAX_NOTES} checkpoints"),
                    ));
                }
                let note = Note::parse(note_text).map_err(|e| bad(e.to_string()))?;
                let checkpoint = TlogCheckpoint::parse(note.text()).map_err(bad)?;
                self.notes.push(SeenNote {
                    text: note_text.to_owned(),
                    note,
                    checkpoint,
                    first: id.to_owned(),
                });
                self.notes.len() - 1
            }
        };
        head.verify_leaf(&leaf, &self.notes[at].checkpoint)
            .map_err(bad)
    }

    /// Checks each distinct note: signed under its origin by one of `keys`,
    /// cosigned by every one of `witnesses`.
    pub(super) fn notes(
        &self,
        keys: &[VerifyingKey],
        witnesses: &[NoteVerifier],
    ) -> Result<(), TlogFail> {
        for SeenNote {
            note,
            checkpoint,
            first,
            ..
        } in &self.notes
        {
            let origin = checkpoint.origin.as_str();
            let log = keys.iter().find_map(|key| {
                let verifier = NoteVerifier::new(origin, KeyType::Ed25519, *key).ok()?;
                note.signatures()
                    .iter()
                    .any(|s| s.name == verifier.name() && s.key_id == verifier.id())
                    .then_some(verifier)
            });
            let Some(log) = log else {
                return Err(invalid(
                    first,
                    format!(
                        "the tlog-proof checkpoint of event {first:?} is not signed under {origin:?} by any key given or bundled"
                    ),
                ));
            };
            verify_checkpoint(note, &log, &[])
                .map_err(|e| invalid(first, format!("the tlog-proof of event {first:?}: {e}")))?;
            for witness in witnesses {
                verify_checkpoint(note, &log, std::slice::from_ref(witness)).map_err(|e| {
                    TlogFail {
                        reason: "bundle.witness_cosignature_missing",
                        detail: format!("event {first:?}: {e}"),
                        event: witness.name().to_owned(),
                    }
                })?;
            }
        }
        Ok(())
    }
}
