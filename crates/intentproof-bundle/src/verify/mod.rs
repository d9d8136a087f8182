//! Offline verification of a proof bundle.
//!
//! [`verify`] first runs the reference verifier's checks, in its order and
//! with its reason codes and findings (the first failure ends it):
//!
//! 1. `manifest.json` missing: `bundle.manifest_missing`;
//! 2. verification profile: `bundle.verification_profile_missing`,
//!    `bundle.verification_profile_invalid`,
//!    `bundle.verification_profile_unsupported`;
//! 3. manifest signature, when present and a key is given:
//!    `bundle.signature_decode_failed`, `bundle.signature_invalid`;
//! 4. each listed file, in manifest order: `bundle.file_missing`,
//!    `bundle.file_hash_mismatch`;
//! 5. declared policy fingerprint: `bundle.policy_fingerprint_mismatch`;
//! 6. event Merkle root: `bundle.event_merkle_mismatch`;
//! 7. attestation Merkle root: `bundle.attestation_merkle_mismatch`;
//! 8. object signatures (events, attestations, run, certificate) with the
//!    bundled `keys/<key_id>.pub`: `bundle.object_signature_invalid`.
//!
//! Then the checks where we are stricter (see [`STRICT_REASONS`]); they add
//! findings only where they apply, so a bundle the reference verifier
//! passes and these checks pass prints exactly what the reference prints.
//! Finally `bundle.verify_pass`.
//!
//! A pass says the bundle is consistent with itself, not that it holds
//! every event: dropping the last events of a chain and recomputing the
//! Merkle root and file hashes leaves a bundle that passes every check.
//! Only the manifest signature, checked with a key the caller gives, binds
//! the list of events to the exporter. So the [`Report`] also carries an
//! [`Attestation`] and a [`Verdict`]: attested (exit 0), unattested (the
//! checks pass, but no given key vouches for the bundle: exit
//! [`EXIT_UNATTESTED`]) or fail (exit 1). [`Report::human`] stays the
//! reference verifier's form; [`Report::human_verdict`] never prints a plain
//! pass for an unattested bundle.
//!
//! Event projections (`auditor` / `counterparty` bundles, see
//! [`crate::projection`]) are checked by the strict part: each names the
//! manifest's profile and is well formed; its `event_signature` verifies
//! over its `content_hash` (an unknown key is reported, never valid); the
//! chains link through `content_hash`; an inclusion proof uses the proof's
//! `leaf_hash`; and, since only the manifest signature attests the visible
//! fields, the manifest must be signed and verify (with a given key, else
//! with the bundled key of its signer). The reference verifier sees no
//! `signature` on a projection, so steps 1-8 treat it as an unsigned record.
//!
//! Two ways to the same report. [`verify_buffered`] holds every member and
//! runs the checks in order (the reference implementation). [`verify_reader`]
//! (and [`verify`], first) reads the bundle once as it streams, keeping per
//! event only its id, line hash, signature job and a flag (`stream.rs`);
//! where only the buffered verifier can name a failure it stops, and
//! [`verify`] falls back to [`verify_buffered`]. Either way,
//! every signature is accepted exactly when `verify_strict` accepts it
//! (no batch verification: its accept set is not `verify_strict`'s).

mod json_stream;
mod keys;
mod records;
mod reference;
mod report;
mod stream;
mod strict;
mod tlog;

use std::io::Read;

use crate::archive::ReadLimits;
use reference::run;
use stream::{Source, verify_stream};

pub use stream::Bail;

pub use keys::{TrustedKey, parse_public_key_bytes};
pub use report::{Attestation, EXIT_UNATTESTED, Report, Status, Summary, Verdict};

/// The verifier version this crate writes and accepts besides `"dev"`.
pub const VERIFIER_VERSION: &str = concat!("intentproof-bundle/", env!("CARGO_PKG_VERSION"));

/// Verifier versions a manifest may name. The reference verifier accepts
/// its own build version and `"dev"`; bundles written by the reference
/// tools in development, like the golden counterparty bundle, say `"dev"`.
pub const SUPPORTED_VERIFIER_VERSIONS: [&str; 2] = ["dev", VERIFIER_VERSION];

/// The reason codes of the checks where we are stricter than the reference
/// verifier, in the order they run, with what each means.
pub const STRICT_REASONS: &[(&str, &str)] = &[
    (
        "bundle.archive_malformed",
        "the input is not a complete zstd / tar stream (before step 1)",
    ),
    (
        "bundle.archive_too_large",
        "a size or member-count limit was hit (before step 1)",
    ),
    (
        "bundle.archive_unsafe",
        "a member name escapes (`..`, absolute) or a member is a link, device or FIFO (before step 1)",
    ),
    (
        "bundle.member_duplicate",
        "two members share a name (before step 1)",
    ),
    (
        "bundle.manifest_decode_failed",
        "manifest.json is not JSON or has mistyped members (the reference's error text)",
    ),
    (
        "bundle.policy_json_decode_failed",
        "policy.json is not a JSON object (the reference's error text)",
    ),
    (
        "bundle.manifest_schema_invalid",
        "the manifest does not match bundle-manifest.v1.schema.json",
    ),
    (
        "bundle.file_missing",
        "(also) one of flow.json, events.jsonl, attestations.jsonl, policy.json, run.json is not listed",
    ),
    (
        "bundle.member_unlisted",
        "a tar member other than manifest.json is not listed in `files`",
    ),
    (
        "bundle.manifest_inconsistent",
        "flow_id / tenant_id differ from flow.json or run.json, or policy_versions lacks policy.json's fingerprint",
    ),
    (
        "bundle.key_invalid",
        "a keys/<key_id>.pub member is not an Ed25519 public key",
    ),
    (
        "bundle.key_mismatch",
        "a bundled key differs from the key given for the same key id",
    ),
    (
        "bundle.manifest_unsigned",
        "keys were given but the manifest carries no signature",
    ),
    (
        "bundle.manifest_signer_unattested",
        "the manifest signature verified with a key given without an id, but the signer it names \
         has no keys/<id>.pub holding that key: the name is not attested",
    ),
    (
        "bundle.jsonl_invalid",
        "a line of events.jsonl / attestations.jsonl is blank, not a strict JSON object, or has no id",
    ),
    ("bundle.event_duplicate", "two events share an event_id"),
    (
        "bundle.attestation_duplicate",
        "two attestations share an attestation_id",
    ),
    (
        "bundle.projection_profile_mismatch",
        "an event projection names another profile than the manifest's export_profile, a projection \
         is in a `full` bundle, or a full intentproof.event.v1 event is in an auditor / counterparty bundle",
    ),
    (
        "bundle.projection_malformed",
        "a line mixes projection and full forms (a projection with a top-level `signature` or the v1 \
         schema, a field its profile withholds), or lacks content_hash / event_signature / withheld",
    ),
    (
        "bundle.event_unsigned",
        "an intentproof.event.v1 event (or a projection) has no signature",
    ),
    (
        "bundle.event_key_id_mismatch",
        "an event's signature key_id is not a key of its instance_id",
    ),
    (
        "bundle.event_key_unknown",
        "an event is signed by a key neither bundled nor given: it is unverified",
    ),
    (
        "bundle.event_signature_invalid",
        "an event's signature does not verify with the key given or bundled for its key id",
    ),
    (
        "bundle.chain_malformed",
        "an event has only some of correlation_id / chain_position / prev_event_hash",
    ),
    (
        "bundle.chain_fork",
        "two different events claim one chain position",
    ),
    (
        "bundle.chain_out_of_order",
        "an event comes before an earlier position of its chain",
    ),
    (
        "bundle.chain_gap",
        "a chain position is missing (an event was dropped)",
    ),
    (
        "bundle.chain_link_mismatch",
        "prev_event_hash is not the content hash of the previous event",
    ),
    (
        "bundle.inclusion_proof_malformed",
        "inclusion_proof.json is not the documented form",
    ),
    (
        "bundle.checkpoint_key_unknown",
        "no key (given or bundled) for the checkpoint's key_id",
    ),
    (
        "bundle.checkpoint_signature_invalid",
        "the checkpoint signature does not verify",
    ),
    (
        "bundle.inclusion_proof_missing",
        "an event has no inclusion proof",
    ),
    (
        "bundle.inclusion_proof_invalid",
        "an inclusion proof does not lead to the checkpoint root, or names no bundled event, or a \
         projected event's proof has no (or a full event's a wrong) leaf_hash",
    ),
    (
        "bundle.tlog_proof_missing",
        "witnesses are required but the bundle has no tlog-proofs.jsonl, or an event has no line in it",
    ),
    (
        "bundle.tlog_proof_invalid",
        "a tlog-proofs.jsonl line is malformed, names no bundled event, its checkpoint note is not \
         signed by a key given or bundled, or its audit path does not lead to the note's root",
    ),
    (
        "bundle.witness_cosignature_missing",
        "an event's tlog-proof checkpoint is not cosigned by a required witness (`--witness`), or \
         the cosignature does not verify",
    ),
    (
        "bundle.projection_unattested",
        "a bundle of event projections has an unsigned manifest, or no key (given or bundled) for \
         its signer: nothing attests the projected fields",
    ),
    (
        "bundle.signature_invalid",
        "(also) the manifest of a bundle of event projections does not verify with the bundled key \
         of its signer (checked even when no key is given, since the manifest signature alone \
         attests the projected fields)",
    ),
];

/// How to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Keys the caller trusts.
    pub trusted_keys: Vec<TrustedKey>,
    /// Archive limits.
    pub limits: ReadLimits,
    /// Threads for event checks; 0 means the available parallelism.
    pub threads: usize,
    /// Witnesses (cosignature keys, type 0x04) every event's
    /// `tlog-proofs.jsonl` checkpoint must be cosigned by
    /// (`intentproof verify --witness`). Requires that member.
    pub witnesses: Vec<intentproof_core::tlog::note::NoteVerifier>,
}

/// A failed check.
struct Fail {
    reason: &'static str,
    detail: String,
}

fn fail<T>(reason: &'static str, detail: impl Into<String>) -> Result<T, Fail> {
    Err(Fail {
        reason,
        detail: detail.into(),
    })
}

struct Ctx {
    findings: Vec<String>,
    warnings: Vec<String>,
    /// Index in `warnings` of step 3's "signature not checked" warning,
    /// which the projection check replaces when it checks the signature.
    unchecked_manifest_warning: Option<usize>,
    summary: Summary,
}

impl Ctx {
    fn new() -> Ctx {
        Ctx {
            findings: Vec::new(),
            warnings: Vec::new(),
            unchecked_manifest_warning: None,
            summary: Summary {
                manifest_signature: "absent",
                ..Summary::default()
            },
        }
    }

    fn finding(&mut self, f: impl Into<String>) {
        self.findings.push(f.into());
    }

    /// The report of the checks that ran, given how they ended.
    fn report(mut self, result: Result<(), Fail>) -> Report {
        match result {
            Ok(()) => {
                self.findings.push("bundle.verify_pass".into());
                let attestation = match self.summary.manifest_signature {
                    "valid" => Attestation::Attested,
                    "unchecked" => Attestation::ManifestUnchecked,
                    "valid_with_bundled_key" => Attestation::BundledKeyOnly,
                    _ => Attestation::ManifestUnsigned,
                };
                let verdict = if attestation == Attestation::Attested {
                    Verdict::Attested
                } else {
                    Verdict::Unattested
                };
                Report {
                    status: Status::Pass,
                    reason: "bundle.verify_pass".into(),
                    findings: self.findings,
                    detail: None,
                    warnings: self.warnings,
                    summary: self.summary,
                    attestation,
                    verdict,
                }
            }
            Err(f) => Report {
                status: Status::Fail,
                reason: f.reason.into(),
                findings: self.findings,
                detail: Some(f.detail),
                warnings: self.warnings,
                summary: self.summary,
                attestation: Attestation::Failed,
                verdict: Verdict::Fail,
            },
        }
    }
}

/// Verifies bundle bytes (zstd tar or plain tar). Never panics on input;
/// every problem is a failing [`Report`] with a reason and a detail.
///
/// The bundle is read the streaming way ([`verify_reader`]), and, when that
/// stops, the buffered way ([`verify_buffered`]): the report is the
/// buffered verifier's in every case.
pub fn verify(bundle: &[u8], options: &VerifyOptions) -> Report {
    match verify_stream::<&[u8]>(Source::Slice(bundle), options) {
        Ok(report) => report,
        Err(_) => verify_buffered(bundle, options),
    }
}

/// Verifies a bundle as it is read from `reader`, once, front to back,
/// without holding its large members: events are parsed and checked on
/// worker threads as they stream, a chain is followed through its last
/// link only, inclusion proofs are checked as they come, and the event
/// signatures are checked (each with `verify_strict`) on
/// `options.threads` threads once the keys, which come last, are read.
///
/// What it reports is exactly what [`verify_buffered`] reports: a pass, or
/// a failure of a check it ran the buffered verifier's way after every
/// earlier check passed (a changed member, a bad manifest signature, a
/// Merkle root, ...). Where only the buffered verifier can tell (an event
/// that fails a check, members in an unusual order or form, an archive
/// or I/O error) it returns the [`Bail`] that stopped it: read the bundle
/// whole and call [`verify_buffered`].
pub fn verify_reader<R: Read>(reader: R, options: &VerifyOptions) -> Result<Report, Bail> {
    verify_stream(Source::Reader(reader), options)
}

/// Verifies bundle bytes with every member in memory: the reference
/// implementation of the checks, whose report [`verify`] and
/// [`verify_reader`] give.
pub fn verify_buffered(bundle: &[u8], options: &VerifyOptions) -> Report {
    let mut ctx = Ctx::new();
    let result = run(bundle, options, &mut ctx);
    ctx.report(result)
}
