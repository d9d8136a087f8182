//! JSONL records and their signatures: each line (or document) parsed
//! both as the reference verifier reads it and strictly, its digest, and
//! its signature checked (each as `verify_strict` checks it, the lines
//! spread over several threads).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use intentproof_core::canon::{canonicalize_object_without, parse_strict};
use intentproof_core::keys::verify_strict;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::keys::KeyRing;
use crate::projection::{check_form, content_digest, is_projection};

/// The reference verifier's view of a signature envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefSig {
    None,
    DecodeFailed,
    UnsupportedAlg,
    KeyUnavailable,
    Invalid,
    Valid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StrictSig {
    Unsigned,
    Malformed(String),
    KeyUnknown(String),
    Invalid(String),
    Valid { bundled_only: bool },
}

/// A line that looks like an event projection.
#[derive(Debug)]
pub(super) struct ProjectionLine {
    /// Its `projection` member ("" when absent).
    pub(super) claimed: String,
    /// Whether it is a well-formed projection of that profile.
    pub(super) form: Result<(), String>,
}

#[derive(Debug, Default)]
pub(super) struct ChainFields {
    pub(super) is_v1: bool,
    /// Set for a projection: its digest is its `content_hash`, its
    /// signature `event_signature`.
    pub(super) projection: Option<ProjectionLine>,
    pub(super) instance: Option<String>,
    pub(super) correlation: Option<String>,
    pub(super) position: Option<Value>,
    pub(super) prev: Option<Value>,
    /// The signature's key id is not `<instance_id>:k<n>`.
    pub(super) key_id_mismatch: bool,
}

#[derive(Debug)]
pub(super) struct Record {
    /// 1-based line number.
    pub(super) line: usize,
    /// Parsed as the reference does (Go `encoding/json` into a map).
    pub(super) lenient: bool,
    /// Why the strict parse failed (blank, not JSON, not an object).
    pub(super) strict_error: Option<String>,
    /// The id member, as the reference reads it ("" when absent).
    pub(super) id: String,
    pub(super) id_present: bool,
    /// Digest of the object minus the excluded members.
    pub(super) digest: Option<Result<[u8; 32], String>>,
    pub(super) ref_sig: RefSig,
    pub(super) strict_sig: StrictSig,
    pub(super) key_id: String,
    pub(super) chain: ChainFields,
}

/// A verification to run: digest, signature, key, record index.
type Job = ([u8; 32], Signature, VerifyingKey, usize);

pub(super) struct RecordKind {
    sig_field: &'static str,
    pub(super) excluded: &'static [&'static str],
    id_field: &'static str,
    events: bool,
}

pub(super) const EVENT_KIND: RecordKind = RecordKind {
    sig_field: "signature",
    excluded: &["signature"],
    id_field: "event_id",
    events: true,
};
pub(super) const ATTESTATION_KIND: RecordKind = RecordKind {
    sig_field: "platform_signature",
    excluded: &["platform_signature"],
    id_field: "attestation_id",
    events: false,
};
pub(super) const RUN_KIND: RecordKind = RecordKind {
    sig_field: "signature",
    excluded: &["signature", "run_fingerprint", "started_at", "completed_at"],
    id_field: "run_id",
    events: false,
};
pub(super) const CERTIFICATE_KIND: RecordKind = RecordKind {
    sig_field: "signature",
    excluded: &["signature"],
    id_field: "certificate_id",
    events: false,
};

/// Splits JSONL into lines: a final newline ends the last line rather than
/// starting an empty one.
pub(super) fn split_lines(data: &[u8]) -> Vec<&[u8]> {
    if data.is_empty() {
        return Vec::new();
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    body.split(|b| *b == b'\n').collect()
}

pub(super) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

/// Decodes a signature value as the reference does: hex when it is 128 hex
/// digits, else standard base64, else hex.
fn decode_signature_value(value: &str) -> Result<Vec<u8>, String> {
    let value = value.trim();
    let hex_decode = |v: &str| -> Result<Vec<u8>, String> {
        if !v.len().is_multiple_of(2) {
            return Err("odd number of hex digits".into());
        }
        v.as_bytes()
            .chunks_exact(2)
            .map(|p| {
                let hi = (p[0] as char).to_digit(16);
                let lo = (p[1] as char).to_digit(16);
                match (hi, lo) {
                    (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                    _ => Err("not hex".to_owned()),
                }
            })
            .collect()
    };
    if value.len() == 128 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex_decode(value);
    }
    if let Ok(bytes) = B64.decode(value) {
        return Ok(bytes);
    }
    hex_decode(value).map_err(|_| "neither hex nor base64".to_owned())
}

pub(super) fn hex_decode_strict(value: &str) -> Option<Vec<u8>> {
    if !value.len().is_multiple_of(2) {
        return None;
    }
    value
        .as_bytes()
        .chunks_exact(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16)?;
            let lo = (p[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

/// What a signature check still needs once the keys are known: the
/// signature's key id, its decoded value and the digest it covers.
#[derive(Debug)]
pub(super) struct PendingSig {
    pub(super) key_id: String,
    pub(super) sig: Result<Vec<u8>, String>,
    pub(super) digest: Result<[u8; 32], String>,
}

/// Parses one line (or document) and prepares its signature check.
/// Returns the record and, when a single key applies, the job to run.
fn analyze(
    line_no: usize,
    bytes: &[u8],
    kind: &RecordKind,
    ring: &KeyRing,
    index: usize,
) -> (Record, Option<Job>) {
    let (mut rec, pending) = analyze_line(line_no, bytes, kind);
    let job = pending.and_then(|p| resolve(&mut rec, p, ring, index));
    (rec, job)
}

fn empty_record(line_no: usize) -> Record {
    Record {
        line: line_no,
        lenient: false,
        strict_error: None,
        id: String::new(),
        id_present: false,
        digest: None,
        ref_sig: RefSig::None,
        strict_sig: StrictSig::Unsigned,
        key_id: String::new(),
        chain: ChainFields::default(),
    }
}

/// The part of [`analyze`] that needs no key: parses the line, reads its
/// fields and its signature envelope, decodes the signature value and
/// takes the digest. What is left for [`resolve`] is returned.
pub(super) fn analyze_line(
    line_no: usize,
    bytes: &[u8],
    kind: &RecordKind,
) -> (Record, Option<PendingSig>) {
    let mut rec = empty_record(line_no);
    if is_blank(bytes) {
        rec.strict_error = Some("the line is blank".into());
        return (rec, None);
    }
    let value = match parse_strict(bytes) {
        Ok(v) => v,
        Err(strict) => {
            rec.strict_error = Some(format!("not strict JSON: {strict}"));
            match serde_json::from_slice::<Value>(bytes) {
                Ok(v) => v,
                Err(_) => return (rec, None),
            }
        }
    };
    let Value::Object(obj) = value else {
        rec.strict_error
            .get_or_insert_with(|| "not a JSON object".into());
        return (rec, None);
    };
    let strict_error = rec.strict_error.take();
    let (mut rec, pending) = analyze_object(line_no, &obj, kind, None);
    rec.strict_error = strict_error;
    (rec, pending)
}

/// [`analyze_line`] for an object already parsed; `digest`, when given, is
/// the digest of the object minus the kind's excluded members (computed
/// here otherwise).
pub(super) fn analyze_object(
    line_no: usize,
    obj: &Map<String, Value>,
    kind: &RecordKind,
    digest: Option<Result<[u8; 32], String>>,
) -> (Record, Option<PendingSig>) {
    let mut rec = empty_record(line_no);
    rec.lenient = true;
    if let Some(Value::String(id)) = obj.get(kind.id_field) {
        rec.id = id.clone();
        rec.id_present = true;
    }
    let str_of = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    let projected = kind.events && is_projection(obj);
    let sig_field = if projected {
        "event_signature"
    } else {
        kind.sig_field
    };
    let mut digest = digest;
    if kind.events {
        rec.chain = ChainFields {
            is_v1: obj.get("schema").and_then(Value::as_str) == Some("intentproof.event.v1"),
            projection: projected.then(|| ProjectionLine {
                claimed: str_of("projection").unwrap_or_default(),
                form: check_form(obj).map(|_| ()),
            }),
            instance: str_of("instance_id"),
            correlation: str_of("correlation_id"),
            position: obj.get("chain_position").cloned(),
            prev: obj.get("prev_event_hash").cloned(),
            key_id_mismatch: false,
        };
        // Chains hash every event, signed or not; a projection carries
        // the full event's hash.
        rec.digest = Some(if projected {
            content_digest(obj).ok_or_else(|| "`content_hash` is not \"sha256:<64 hex>\"".into())
        } else {
            match digest.take() {
                Some(d) => d,
                None => digest_without(obj, kind.excluded),
            }
        });
    }

    // The envelope, read as the reference reads it.
    let env = match obj.get(sig_field) {
        None | Some(Value::Null) => return (rec, None),
        Some(Value::Object(env)) => env,
        Some(_) => {
            rec.ref_sig = RefSig::DecodeFailed;
            rec.strict_sig = StrictSig::Malformed(format!("`{sig_field}` is not an object"));
            return (rec, None);
        }
    };
    let field = |k: &str| -> Result<String, ()> {
        match env.get(k) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(()),
        }
    };
    let (Ok(alg), Ok(key_id), Ok(value)) = (field("alg"), field("key_id"), field("value")) else {
        rec.ref_sig = RefSig::DecodeFailed;
        rec.strict_sig =
            StrictSig::Malformed(format!("`{sig_field}` has a member that is not a string"));
        return (rec, None);
    };
    if value.trim().is_empty() {
        // The reference skips an empty signature; strictly it is unsigned.
        return (rec, None);
    }
    rec.key_id = key_id.clone();
    if alg != "ed25519" {
        rec.ref_sig = RefSig::UnsupportedAlg;
        rec.strict_sig = StrictSig::Malformed(format!("unsupported algorithm {alg:?}"));
        return (rec, None);
    }
    if kind.events
        && let Some(instance) = &rec.chain.instance
    {
        rec.chain.key_id_mismatch = !key_id
            .strip_prefix(instance.as_str())
            .and_then(|rest| rest.strip_prefix(":k"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    }
    let sig = decode_signature_value(&value);
    let digest = match rec.digest.clone().or(digest) {
        Some(d) => d,
        None => digest_without(obj, kind.excluded),
    };
    (
        rec,
        Some(PendingSig {
            key_id,
            sig,
            digest,
        }),
    )
}

/// The part of [`analyze`] that needs the keys: which key checks the
/// signature (the job to run), or what is wrong with it.
pub(super) fn resolve(
    rec: &mut Record,
    pending: PendingSig,
    ring: &KeyRing,
    index: usize,
) -> Option<Job> {
    let PendingSig {
        key_id,
        sig,
        digest,
    } = pending;
    let ref_key = ring.bundled(&key_id).copied();
    if ref_key.is_none() {
        rec.ref_sig = RefSig::KeyUnavailable;
    }
    rec.digest = Some(digest.clone());
    let (sig, digest) = match (sig, digest) {
        (Ok(sig), Ok(digest)) => (sig, digest),
        (Err(e), _) => {
            if ref_key.is_some() {
                rec.ref_sig = RefSig::DecodeFailed;
            }
            rec.strict_sig = StrictSig::Malformed(format!("signature value: {e}"));
            return None;
        }
        (Ok(_), Err(e)) => {
            if ref_key.is_some() {
                rec.ref_sig = RefSig::Invalid;
            }
            rec.strict_sig = StrictSig::Invalid(format!("cannot be canonicalized: {e}"));
            return None;
        }
    };
    let Ok(sig) = <[u8; 64]>::try_from(sig.as_slice()) else {
        if ref_key.is_some() {
            rec.ref_sig = RefSig::Invalid;
        }
        rec.strict_sig =
            StrictSig::Invalid(format!("the signature is {} bytes, not 64", sig.len()));
        return None;
    };
    let signature = Signature::from_bytes(&sig);
    // One key decides both views when it exists (a given key that differs
    // from the bundled one fails `bundle.key_mismatch` before it matters).
    if let Some(key) = ref_key.or_else(|| ring.strict_key(&key_id).copied()) {
        return Some((digest, signature, key, index));
    }
    // Only anonymous keys, or none.
    rec.strict_sig = StrictSig::KeyUnknown(key_id.clone());
    for key in ring.candidates(&key_id) {
        if verify_strict(&key, &digest, &signature).is_ok() {
            rec.strict_sig = StrictSig::Valid {
                bundled_only: false,
            };
            break;
        }
    }
    None
}

fn digest_without(obj: &Map<String, Value>, excluded: &[&str]) -> Result<[u8; 32], String> {
    canonicalize_object_without(obj, excluded)
        .map(|c| Sha256::digest(&c).into())
        .map_err(|e| e.to_string())
}

/// Runs signature jobs, each with [`verify_strict`] (no batch
/// verification: its accept set is not `verify_strict`'s); the callers
/// spread the jobs over threads.
fn run_jobs(jobs: &[Job]) -> Vec<(usize, bool)> {
    jobs.iter()
        .map(|j| (j.3, verify_strict(&j.2, &j.0, &j.1).is_ok()))
        .collect()
}

/// Analyzes and signature-checks JSONL lines on up to `threads` threads.
pub(super) fn process_lines(
    lines: &[&[u8]],
    kind: &RecordKind,
    ring: &KeyRing,
    threads: usize,
) -> Vec<Record> {
    let work = |offset: usize, chunk: &[&[u8]]| -> Vec<Record> {
        let mut records = Vec::with_capacity(chunk.len());
        let mut jobs = Vec::new();
        for (i, line) in chunk.iter().enumerate() {
            let (rec, job) = analyze(offset + i + 1, line, kind, ring, i);
            records.push(rec);
            jobs.extend(job);
        }
        for (i, ok) in run_jobs(&jobs) {
            settle(&mut records[i], ok, ring);
        }
        // The reference verifier sees no `signature` on a projection.
        for rec in &mut records {
            if rec.chain.projection.is_some() {
                rec.ref_sig = RefSig::None;
            }
        }
        records
    };
    let threads = threads.max(1);
    if threads == 1 || lines.len() < 512 {
        return work(0, lines);
    }
    let per = lines.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(per)
            .enumerate()
            .map(|(n, chunk)| {
                let work = &work;
                s.spawn(move || work(n * per, chunk))
            })
            .collect();
        let mut all = Vec::with_capacity(lines.len());
        for h in handles {
            match h.join() {
                Ok(part) => all.extend(part),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        all
    })
}

/// A record whose signature job ran: `ok`, whether it verified.
fn settle(rec: &mut Record, ok: bool, ring: &KeyRing) {
    if ok {
        if rec.ref_sig != RefSig::KeyUnavailable {
            rec.ref_sig = RefSig::Valid;
        }
        rec.strict_sig = StrictSig::Valid {
            bundled_only: !ring.trusted_by_id.contains_key(&rec.key_id)
                && !ring.manifest_authenticated,
        };
    } else {
        if rec.ref_sig != RefSig::KeyUnavailable {
            rec.ref_sig = RefSig::Invalid;
        }
        rec.strict_sig = StrictSig::Invalid(format!(
            "the signature does not verify with key {}",
            rec.key_id
        ));
    }
}

/// [`process_document`] for a document already read (as a JSON object):
/// the same record. `digest`, when given, is the object's digest without
/// the kind's excluded members.
pub(super) fn process_object(
    obj: &Map<String, Value>,
    kind: &RecordKind,
    ring: &KeyRing,
    digest: Option<Result<[u8; 32], String>>,
) -> Record {
    let (mut rec, pending) = analyze_object(1, obj, kind, digest);
    if let Some(job) = pending.and_then(|p| resolve(&mut rec, p, ring, 0)) {
        for (_, ok) in run_jobs(&[job]) {
            settle(&mut rec, ok, ring);
        }
    }
    if rec.chain.projection.is_some() {
        rec.ref_sig = RefSig::None;
    }
    rec
}

pub(super) fn process_document(bytes: &[u8], kind: &RecordKind, ring: &KeyRing) -> Option<Record> {
    let mut recs = process_lines(&[bytes], kind, ring, 1);
    let rec = recs.pop()?;
    rec.lenient.then_some(rec)
}

/// Parses JSON as the reference does into a map (lenient), `None` when it
/// is not an object.
pub(super) fn lenient_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match parse_strict(bytes)
        .ok()
        .or_else(|| serde_json::from_slice(bytes).ok())
    {
        Some(Value::Object(m)) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_lines_keeps_blank_middle_lines() {
        assert_eq!(split_lines(b""), Vec::<&[u8]>::new());
        assert_eq!(split_lines(b"a\n"), vec![&b"a"[..]]);
        assert_eq!(split_lines(b"a\n\nb"), vec![&b"a"[..], b"", b"b"]);
    }

    #[test]
    fn signature_values_decode_like_the_reference() {
        assert_eq!(decode_signature_value(&"ab".repeat(64)).unwrap().len(), 64);
        assert_eq!(
            decode_signature_value(&B64.encode([7u8; 64])).unwrap(),
            vec![7u8; 64]
        );
        assert!(decode_signature_value("!!").is_err());
    }
}
