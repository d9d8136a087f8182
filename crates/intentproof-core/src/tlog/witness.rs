//! C2SP `tlog-witness`: the `add-checkpoint` request and the witness's
//! decision, apart from HTTP and storage.
//!
//! Request body (`POST <prefix>/add-checkpoint`):
//!
//! ```text
//! old <size the client believes the witness has>\n
//! <base64 consistency proof hash>\n   (0 to 63 lines)
//! \n
//! <signed checkpoint note>
//! ```
//!
//! [`decide`] applies the protocol's checks in its order and maps each
//! refusal to its status: 400 malformed or `old` above the new size, 404
//! unknown origin, 403 no valid signature by a key of that origin, 409 `old`
//! is not the size the witness recorded (the answer carries the recorded
//! size) or the same size with another root, 422 the consistency proof does
//! not verify. On success the caller stores the new `(size, root)` durably
//! *before* answering with the cosignature.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::checkpoint::{TlogCheckpoint, parse_decimal};
use super::note::Note;
use super::note::NoteVerifier;
use crate::merkle::{Hash, verify_consistency};

/// Largest accepted request body.
pub const MAX_ADD_CHECKPOINT_BYTES: usize = 64 * 1024;
/// Content type of a 409 answer's body (the recorded size, decimal).
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// A parsed `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size the client believes the witness last recorded.
    pub old: u64,
    /// Consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint.
    pub checkpoint: Note,
}

impl AddCheckpoint {
    /// Parses a request body.
    pub fn parse(body: &str) -> Result<AddCheckpoint, String> {
        let (head, note) = body
            .split_once("\n\n")
            .ok_or("the body needs a blank line before the checkpoint")?;
        let mut lines = head.split('\n');
        let first = lines.next().unwrap_or_default();
        let old = first
            .strip_prefix("old ")
            .and_then(parse_decimal)
            .ok_or_else(|| format!("the first line must be \"old <decimal>\", got {first:?}"))?;
        let proof = super::proof::hash_lines(lines)?;
        let checkpoint = Note::parse(note).map_err(|e| e.to_string())?;
        Ok(AddCheckpoint {
            old,
            proof,
            checkpoint,
        })
    }
}

impl fmt::Display for AddCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "old {}", self.old)?;
        for hash in &self.proof {
            writeln!(f, "{}", B64.encode(hash))?;
        }
        write!(f, "\n{}", self.checkpoint)
    }
}

/// Why a witness refuses a checkpoint: each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the request is malformed, or `old` is above the checkpoint's size.
    BadRequest(String),
    /// 403: no signature by a key of this origin verifies.
    Forbidden(String),
    /// 404: the witness does not know this origin.
    UnknownOrigin(String),
    /// 409: `old` is not the recorded size, or the recorded size has
    /// another root (the log forked). The body is the recorded size.
    Conflict {
        /// The size the witness recorded for this origin.
        recorded: u64,
        /// Why, for the log's operator.
        reason: String,
    },
    /// 422: the consistency proof does not verify.
    BadProof(String),
}

impl Refusal {
    /// The HTTP status of this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Forbidden(_) => 403,
            Refusal::UnknownOrigin(_) => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::BadProof(_) => 422,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::BadRequest(r)
            | Refusal::Forbidden(r)
            | Refusal::UnknownOrigin(r)
            | Refusal::BadProof(r) => f.write_str(r),
            Refusal::Conflict { recorded, reason } => {
                write!(f, "{reason} (the witness recorded size {recorded})")
            }
        }
    }
}

/// What the witness recorded for one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The tree size.
    pub size: u64,
    /// Its root.
    pub root: Hash,
}

/// Decides on `request`: `keys` are the verifier keys the witness trusts
/// for the checkpoint's origin (`None`: unknown origin), `recorded` what it
/// recorded for that origin (`None`: nothing yet, which is size 0). Returns
/// the checkpoint to record and cosign.
pub fn decide(
    request: &AddCheckpoint,
    keys: Option<&[NoteVerifier]>,
    recorded: Option<Recorded>,
) -> Result<TlogCheckpoint, Refusal> {
    let checkpoint =
        TlogCheckpoint::parse(request.checkpoint.text()).map_err(Refusal::BadRequest)?;
    let keys = keys.ok_or_else(|| {
        Refusal::UnknownOrigin(format!(
            "this witness does not know the log {:?}",
            checkpoint.origin
        ))
    })?;
    let mut signed = false;
    for key in keys {
        match request.checkpoint.verify(key) {
            Ok(Some(_)) => signed = true,
            Ok(None) => {}
            Err(e) => return Err(Refusal::Forbidden(e.to_string())),
        }
    }
    if !signed {
        return Err(Refusal::Forbidden(format!(
            "the checkpoint has no signature by a key of {:?} that this witness trusts",
            checkpoint.origin
        )));
    }
    if request.old > checkpoint.size {
        return Err(Refusal::BadRequest(format!(
            "old size {} is larger than the checkpoint's size {}",
            request.old, checkpoint.size
        )));
    }
    let recorded_size = recorded.map_or(0, |r| r.size);
    if request.old != recorded_size {
        return Err(Refusal::Conflict {
            recorded: recorded_size,
            reason: format!(
                "old size {} is not the size this witness recorded",
                request.old
            ),
        });
    }
    let Some(recorded) = recorded.filter(|r| r.size > 0) else {
        // Nothing recorded: any checkpoint starts the log (a proof from 0
        // is empty).
        return if request.proof.is_empty() {
            Ok(checkpoint)
        } else {
            Err(Refusal::BadProof(
                "a consistency proof from size 0 must be empty".into(),
            ))
        };
    };
    if checkpoint.size == recorded.size && checkpoint.root != recorded.root {
        return Err(Refusal::Conflict {
            recorded: recorded.size,
            reason: format!(
                "the log forked: checkpoint of size {} has root {}, but this witness cosigned root {} at that size",
                checkpoint.size,
                B64.encode(checkpoint.root),
                B64.encode(recorded.root)
            ),
        });
    }
    verify_consistency(
        recorded.size,
        checkpoint.size,
        &recorded.root,
        &checkpoint.root,
        &request.proof,
    )
    .map_err(|e| {
        Refusal::BadProof(format!(
            "the consistency proof from size {} to {} does not verify ({e}): the log is not an extension of what this witness cosigned",
            recorded.size, checkpoint.size
        ))
    })?;
    Ok(checkpoint)
}
