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

mod keys;
mod records;
mod report;

use keys::{KeyRing, key_ring};
use records::{
    ATTESTATION_KIND, CERTIFICATE_KIND, EVENT_KIND, RUN_KIND, Record, RefSig, StrictSig,
    hex_decode_strict, is_blank, lenient_object, process_document, process_lines, split_lines,
};

pub use keys::{TrustedKey, parse_public_key_bytes};
pub use report::{Attestation, EXIT_UNATTESTED, Report, Status, Summary, Verdict};

use std::collections::{HashMap, HashSet};

use ed25519_dalek::{Signature, VerifyingKey};
use intentproof_core::canon::parse_strict;
use intentproof_core::keys::verify_strict;
use intentproof_core::merkle::{event_merkle_root, leaf_hash, verify_inclusion};
use intentproof_core::schema::{SchemaKind, validate};
use intentproof_core::v1::{ZERO_HASH, sha256_prefixed};
use serde_json::{Map, Value};

use crate::archive::{Compression, ReadLimits, read_archive};
use crate::inclusion::{CHECKPOINT_SCHEMA, INCLUSION_SCHEMA, InclusionProofs, parse_hash};
use crate::manifest::{
    ATTESTATIONS, CERTIFICATE, EVENTS, FLOW, INCLUSION_PROOF, MANIFEST, Manifest, POLICY, RUN,
    manifest_digest, policy_fingerprint, sha256_of,
};
use crate::projection::Profile;

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
    fn finding(&mut self, f: impl Into<String>) {
        self.findings.push(f.into());
    }
}

/// Verifies bundle bytes (zstd tar or plain tar). Never panics on input;
/// every problem is a failing [`Report`] with a reason and a detail.
pub fn verify(bundle: &[u8], options: &VerifyOptions) -> Report {
    let mut ctx = Ctx {
        findings: Vec::new(),
        warnings: Vec::new(),
        unchecked_manifest_warning: None,
        summary: Summary {
            manifest_signature: "absent",
            ..Summary::default()
        },
    };
    match run(bundle, options, &mut ctx) {
        Ok(()) => {
            ctx.findings.push("bundle.verify_pass".into());
            let attestation = match ctx.summary.manifest_signature {
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
                findings: ctx.findings,
                detail: None,
                warnings: ctx.warnings,
                summary: ctx.summary,
                attestation,
                verdict,
            }
        }
        Err(f) => Report {
            status: Status::Fail,
            reason: f.reason.into(),
            findings: ctx.findings,
            detail: Some(f.detail),
            warnings: ctx.warnings,
            summary: ctx.summary,
            attestation: Attestation::Failed,
            verdict: Verdict::Fail,
        },
    }
}

// ---------------------------------------------------------------------------
// The checks

fn run(bundle: &[u8], options: &VerifyOptions, ctx: &mut Ctx) -> Result<(), Fail> {
    let archive = match read_archive(bundle, &options.limits) {
        Ok(a) => a,
        Err(e) => return fail(e.reason(), e.to_string()),
    };
    ctx.summary.members = archive.members.len();
    ctx.summary.compressed = archive.compression == Compression::Zstd;
    let members: HashMap<&str, &[u8]> = archive
        .members
        .iter()
        .map(|m| (m.path.as_str(), m.data.as_slice()))
        .collect();

    // 1. The manifest.
    let Some(manifest_bytes) = members.get(MANIFEST) else {
        return fail(
            "bundle.manifest_missing",
            "the archive has no manifest.json: it is not a proof bundle",
        );
    };
    let manifest_value = match parse_strict(manifest_bytes) {
        Ok(v) => v,
        Err(e) => {
            return fail(
                "bundle.manifest_decode_failed",
                format!("manifest.json is not valid JSON: {e}"),
            );
        }
    };
    let Some(manifest_obj) = manifest_value.as_object() else {
        return fail(
            "bundle.manifest_decode_failed",
            "manifest.json is not a JSON object",
        );
    };
    let manifest: Manifest = match serde_json::from_value(manifest_value.clone()) {
        Ok(m) => m,
        Err(e) => {
            return fail(
                "bundle.manifest_decode_failed",
                format!("manifest.json has a member of the wrong type: {e}"),
            );
        }
    };
    let run_doc = members.get(RUN).and_then(|b| lenient_object(b));

    // 2. Verification profile.
    check_profile(&manifest, run_doc.as_ref(), ctx)?;

    // 3. Manifest signature.
    let mut manifest_authenticated = false;
    ctx.summary.manifest_signer = manifest.signature.as_ref().map(|s| s.key_id.clone());
    if let Some(sig) = &manifest.signature {
        if options.trusted_keys.is_empty() {
            ctx.summary.manifest_signature = "unchecked";
            ctx.unchecked_manifest_warning = Some(ctx.warnings.len());
            ctx.warnings.push(format!(
                "the manifest is signed by key {:?}, but no key was given, so the signature was \
                 not checked and nothing authenticates this bundle: pass --key with the exporter's public key",
                sig.key_id
            ));
        } else {
            let digest = match manifest_digest(manifest_obj) {
                Ok(d) => d,
                Err(e) => {
                    return fail(
                        "bundle.signature_invalid",
                        format!("the manifest cannot be canonicalized: {e}"),
                    );
                }
            };
            if sig.alg != "ed25519" {
                ctx.finding("manifest.signature_unsupported_alg");
                return fail(
                    "bundle.signature_invalid",
                    format!(
                        "the manifest is signed with algorithm {:?}; only \"ed25519\" is supported",
                        sig.alg
                    ),
                );
            }
            if hex_decode_strict(&sig.value).is_none() {
                return fail(
                    "bundle.signature_decode_failed",
                    "the manifest signature value is not hex",
                );
            }
            // A key given with an id signs only for that id; a key without
            // one for any.
            let valid = manifest_signature_verifies(
                &digest,
                &sig.value,
                options
                    .trusted_keys
                    .iter()
                    .filter(|k| k.key_id.as_ref().is_none_or(|id| *id == sig.key_id))
                    .map(|k| &k.key),
            );
            if !valid {
                ctx.finding("manifest.signature_invalid");
                return fail(
                    "bundle.signature_invalid",
                    format!(
                        "the manifest signature (key {:?}) does not verify with any key given for \
                         that id: the manifest was changed after signing, or another key signed it",
                        sig.key_id
                    ),
                );
            }
            ctx.finding("manifest.signature_valid");
            ctx.summary.manifest_signature = "valid";
            manifest_authenticated = true;
        }
    } else if options.trusted_keys.is_empty() {
        ctx.warnings.push(
            "the manifest is unsigned: the bundle is self-consistent, but anyone could have built it"
                .into(),
        );
    }

    // 4. Files.
    for entry in &manifest.files {
        let Some(actual) = members.get(entry.path.as_str()) else {
            ctx.finding(format!("file_missing:{}", entry.path));
            return fail(
                "bundle.file_missing",
                format!(
                    "the manifest lists {:?}, but the archive has no such member",
                    entry.path
                ),
            );
        };
        let want = entry
            .sha256
            .strip_prefix("sha256:")
            .unwrap_or(&entry.sha256);
        let got = sha256_of(actual);
        if want != &got["sha256:".len()..] {
            ctx.finding(format!("file_hash_mismatch:{}", entry.path));
            return fail(
                "bundle.file_hash_mismatch",
                format!(
                    "{} has hash {got}, but the manifest says {}: the member was changed",
                    entry.path, entry.sha256
                ),
            );
        }
        ctx.finding(format!("file_hash_valid:{}", entry.path));
    }

    // 5. Policy fingerprint.
    let policy = check_policy(members.get(POLICY).copied(), ctx)?;

    // Keys, then every record (parallel), before the Merkle roots need the ids.
    let ring = key_ring(&members, options, manifest_authenticated);
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let event_lines = members
        .get(EVENTS)
        .map(|b| split_lines(b))
        .unwrap_or_default();
    let events = process_lines(&event_lines, &EVENT_KIND, &ring, threads);
    let attestation_lines = members
        .get(ATTESTATIONS)
        .map(|b| split_lines(b))
        .unwrap_or_default();
    let attestations = process_lines(&attestation_lines, &ATTESTATION_KIND, &ring, threads);
    ctx.summary.events = event_lines.len();
    ctx.summary.attestations = attestation_lines.len();

    // 6, 7. Merkle roots.
    check_merkle(&manifest.event_merkle_root, &events, "event", ctx)?;
    check_merkle(
        &manifest.attestation_merkle_root,
        &attestations,
        "attestation",
        ctx,
    )?;

    // 8. Object signatures.
    let run_rec = members
        .get(RUN)
        .and_then(|b| process_document(b, &RUN_KIND, &ring));
    let certificate_rec = members
        .get(CERTIFICATE)
        .and_then(|b| process_document(b, &CERTIFICATE_KIND, &ring));
    let groups: [(&str, Vec<&Record>); 4] = [
        ("event", events.iter().filter(|r| r.lenient).collect()),
        (
            "attestation",
            attestations.iter().filter(|r| r.lenient).collect(),
        ),
        ("run", run_rec.iter().collect()),
        ("certificate", certificate_rec.iter().collect()),
    ];
    let mut first_bad: Option<String> = None;
    for (label, records) in &groups {
        for r in records {
            let suffix = match r.ref_sig {
                RefSig::None => continue,
                RefSig::DecodeFailed => "signature_decode_failed",
                RefSig::UnsupportedAlg => "signature_unsupported_alg",
                RefSig::KeyUnavailable => {
                    if *label != "event" {
                        ctx.warnings.push(format!(
                            "{label} {:?} is signed by key {:?}, which the bundle does not carry: \
                             its signature was not checked",
                            r.id, r.key_id
                        ));
                    }
                    "signature_key_unavailable"
                }
                RefSig::Invalid => "signature_invalid",
                RefSig::Valid => "signature_valid",
            };
            if first_bad.is_none() && !matches!(r.ref_sig, RefSig::Valid | RefSig::KeyUnavailable) {
                first_bad = Some(format!("{label} {:?}: {}", r.id, suffix.replace('_', " ")));
            }
            ctx.finding(format!("{label}.{suffix}"));
        }
    }
    if let Some(bad) = first_bad {
        return fail(
            "bundle.object_signature_invalid",
            format!("{bad} (checked with the bundled keys/<key_id>.pub)"),
        );
    }

    // Stricter checks.
    strict(
        &StrictInput {
            members: &members,
            archive_order: archive.members.iter().map(|m| m.path.as_str()).collect(),
            manifest: &manifest,
            manifest_value: &manifest_value,
            policy: policy.as_ref(),
            run_doc: run_doc.as_ref(),
            event_lines: &event_lines,
            events: &events,
            attestations: &attestations,
            ring: &ring,
            options,
        },
        ctx,
    )
}

fn check_profile(
    manifest: &Manifest,
    run_doc: Option<&Map<String, Value>>,
    ctx: &mut Ctx,
) -> Result<(), Fail> {
    let Some(p) = &manifest.verification_profile else {
        ctx.finding("verification_profile.missing");
        return fail(
            "bundle.verification_profile_missing",
            "the manifest has no verification_profile",
        );
    };
    ctx.finding("verification_profile.present");
    if p.verifier_version.trim().is_empty() {
        ctx.finding("verification_profile.verifier_version_missing");
        return fail(
            "bundle.verification_profile_invalid",
            "verification_profile.verifier_version is blank",
        );
    }
    if !SUPPORTED_VERIFIER_VERSIONS.contains(&p.verifier_version.trim()) {
        ctx.finding("verification_profile.verifier_version_unsupported");
        return fail(
            "bundle.verification_profile_unsupported",
            format!(
                "verification_profile.verifier_version {:?} is not one this verifier supports ({})",
                p.verifier_version,
                SUPPORTED_VERIFIER_VERSIONS.join(", ")
            ),
        );
    }
    ctx.finding("verification_profile.verifier_version_supported");
    if let Some(run) = run_doc
        && !p.run_id.trim().is_empty()
    {
        let run_id = run.get("run_id").and_then(Value::as_str).unwrap_or("");
        if !run_id.trim().is_empty() && run_id != p.run_id {
            ctx.finding("verification_profile.run_id_mismatch");
            return fail(
                "bundle.verification_profile_invalid",
                format!(
                    "verification_profile.run_id is {:?}, but run.json is run {run_id:?}",
                    p.run_id
                ),
            );
        }
    }
    ctx.finding("verification_profile.run_id_valid");
    Ok(())
}

fn check_policy(raw: Option<&[u8]>, ctx: &mut Ctx) -> Result<Option<Map<String, Value>>, Fail> {
    let Some(raw) = raw else { return Ok(None) };
    if is_blank(raw) {
        return Ok(None);
    }
    let policy = match lenient_object(raw) {
        Some(p) => p,
        None if serde_json::from_slice::<Value>(raw).is_ok_and(|v| v.is_null()) => {
            return Ok(None);
        }
        None => {
            ctx.finding("policy.json_decode_failed");
            return fail(
                "bundle.policy_json_decode_failed",
                "policy.json is not a JSON object",
            );
        }
    };
    if let Some(Value::String(declared)) = policy.get("policy_fingerprint")
        && !declared.trim().is_empty()
    {
        let computed = match policy_fingerprint(&policy) {
            Ok(c) => c,
            Err(e) => {
                ctx.finding("policy.fingerprint_error");
                return fail(
                    "bundle.policy_fingerprint_mismatch",
                    format!("the policy cannot be canonicalized: {e}"),
                );
            }
        };
        if *declared != computed {
            ctx.finding("policy.fingerprint_mismatch");
            return fail(
                "bundle.policy_fingerprint_mismatch",
                format!(
                    "policy.json declares fingerprint {declared}, but its content hashes to {computed}"
                ),
            );
        }
        ctx.finding("policy.fingerprint_valid");
    }
    Ok(Some(policy))
}

fn check_merkle(
    declared: &str,
    records: &[Record],
    label: &str,
    ctx: &mut Ctx,
) -> Result<(), Fail> {
    if declared.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = records
        .iter()
        .filter(|r| r.lenient)
        .map(|r| r.id.as_str())
        .collect();
    let computed = event_merkle_root(&ids);
    if computed != declared {
        ctx.finding(format!("{label}_merkle_mismatch"));
        let reason = if label == "event" {
            "bundle.event_merkle_mismatch"
        } else {
            "bundle.attestation_merkle_mismatch"
        };
        return fail(
            reason,
            format!(
                "the {label} Merkle root over the bundled ids is {computed}, but the manifest says {declared}"
            ),
        );
    }
    ctx.finding(format!("{label}_merkle_valid"));
    Ok(())
}

struct StrictInput<'a> {
    members: &'a HashMap<&'a str, &'a [u8]>,
    archive_order: Vec<&'a str>,
    manifest: &'a Manifest,
    manifest_value: &'a Value,
    policy: Option<&'a Map<String, Value>>,
    run_doc: Option<&'a Map<String, Value>>,
    event_lines: &'a [&'a [u8]],
    events: &'a [Record],
    attestations: &'a [Record],
    ring: &'a KeyRing,
    options: &'a VerifyOptions,
}

fn strict(input: &StrictInput<'_>, ctx: &mut Ctx) -> Result<(), Fail> {
    let manifest = input.manifest;

    // The manifest matches its schema.
    if let Err(errors) = validate(SchemaKind::BundleManifest, input.manifest_value) {
        ctx.finding("manifest.schema_invalid");
        return fail(
            "bundle.manifest_schema_invalid",
            format!(
                "manifest.json does not match the bundle manifest schema: {}",
                errors.join("; ")
            ),
        );
    }

    // The core members are listed (so their hashes were checked).
    let listed: HashSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    for required in [ATTESTATIONS, EVENTS, FLOW, POLICY, RUN] {
        if !listed.contains(required) {
            ctx.finding(format!("file_missing:{required}"));
            return fail(
                "bundle.file_missing",
                format!("the manifest does not list {required}, which every bundle carries"),
            );
        }
    }

    // Every member is listed.
    for path in &input.archive_order {
        if *path != MANIFEST && !listed.contains(path) {
            ctx.finding(format!("member_unlisted:{path}"));
            return fail(
                "bundle.member_unlisted",
                format!(
                    "the archive carries {path:?}, which the manifest does not list: nothing vouches for it"
                ),
            );
        }
    }

    check_consistency(input, ctx)?;

    // Bundled keys parse and agree with the given ones.
    for (id, key) in &input.ring.bundled {
        match key {
            Err(e) => {
                ctx.finding(format!("key_invalid:{id}"));
                return fail(
                    "bundle.key_invalid",
                    format!("keys/{id}.pub is not usable: {e}"),
                );
            }
            Ok(k) => {
                if let Some(given) = input.ring.trusted_by_id.get(id)
                    && given != k
                {
                    ctx.finding(format!("key_mismatch:{id}"));
                    return fail(
                        "bundle.key_mismatch",
                        format!(
                            "keys/{id}.pub is not the key given for {id}: the bundled key was replaced"
                        ),
                    );
                }
            }
        }
    }

    if !input.options.trusted_keys.is_empty() && manifest.signature.is_none() {
        ctx.finding("manifest.signature_missing");
        return fail(
            "bundle.manifest_unsigned",
            "keys were given, but the manifest is unsigned: nothing binds this bundle to those keys \
             (anyone could have rebuilt it)",
        );
    }

    // JSONL lines parse strictly and carry their ids; ids are unique.
    for (file, records, id_field, dup_reason) in [
        (EVENTS, input.events, "event_id", "bundle.event_duplicate"),
        (
            ATTESTATIONS,
            input.attestations,
            "attestation_id",
            "bundle.attestation_duplicate",
        ),
    ] {
        for r in records {
            let problem = match &r.strict_error {
                Some(e) => Some(e.clone()),
                None if !r.id_present => Some(format!("no string `{id_field}`")),
                None => None,
            };
            if let Some(problem) = problem {
                ctx.finding(format!("jsonl_invalid:{file}:{}", r.line));
                return fail(
                    "bundle.jsonl_invalid",
                    format!("{file} line {}: {problem}", r.line),
                );
            }
        }
        let mut seen = HashSet::with_capacity(records.len());
        for r in records {
            if !seen.insert(r.id.as_str()) {
                let what = if file == EVENTS {
                    "event"
                } else {
                    "attestation"
                };
                ctx.finding(format!("{what}_duplicate:{}", r.id));
                return fail(
                    dup_reason,
                    format!(
                        "{file} line {}: {what} {:?} occurs more than once",
                        r.line, r.id
                    ),
                );
            }
        }
    }

    let projections = check_projection_profile(input, ctx)?;
    check_event_signatures(input, ctx)?;
    if projections > 0 {
        ctx.summary.events_projected = projections;
        ctx.finding(format!("projection_signatures_valid:{projections}"));
    }
    check_chains(input.events, ctx)?;
    if let Some(bytes) = input.members.get(INCLUSION_PROOF) {
        check_inclusion(bytes, input, ctx)?;
    }
    if projections > 0 {
        check_projection_attestation(input, ctx)?;
    }
    Ok(())
}

/// Every projection names the manifest's profile and is well formed; an
/// auditor / counterparty bundle carries no full v1 event. Returns the
/// number of projections.
fn check_projection_profile(input: &StrictInput<'_>, ctx: &mut Ctx) -> Result<usize, Fail> {
    let declared = input
        .manifest
        .verification_profile
        .as_ref()
        .map_or("", |p| p.export_profile.as_str());
    let projecting = Profile::from_name(declared);
    let mut count = 0;
    for r in input.events {
        match &r.chain.projection {
            Some(p) if p.claimed != declared => {
                ctx.finding(format!("projection_profile_mismatch:{}", r.id));
                return fail(
                    "bundle.projection_profile_mismatch",
                    format!(
                        "event {:?} (events.jsonl line {}) is a {:?} projection, but the manifest's \
                         export_profile is {declared:?}",
                        r.id, r.line, p.claimed
                    ),
                );
            }
            Some(p) => {
                if let Err(e) = &p.form {
                    ctx.finding(format!("projection_malformed:{}", r.id));
                    return fail(
                        "bundle.projection_malformed",
                        format!(
                            "event {:?} (events.jsonl line {}) is not a well-formed {declared} \
                             projection: {e}",
                            r.id, r.line
                        ),
                    );
                }
                count += 1;
            }
            None if r.chain.is_v1 && projecting.is_some() => {
                ctx.finding(format!("projection_profile_mismatch:{}", r.id));
                return fail(
                    "bundle.projection_profile_mismatch",
                    format!(
                        "event {:?} (events.jsonl line {}) is a full intentproof.event.v1 event, but \
                         the manifest's export_profile {declared:?} bundles projections",
                        r.id, r.line
                    ),
                );
            }
            None => {}
        }
    }
    Ok(count)
}

/// Only the manifest signature attests a projection's visible fields:
/// it must exist and verify, with a given key (reference step 3) or else
/// with the bundled key of its signer.
fn check_projection_attestation(input: &StrictInput<'_>, ctx: &mut Ctx) -> Result<(), Fail> {
    let profile = input
        .manifest
        .verification_profile
        .as_ref()
        .map_or("", |p| p.export_profile.as_str());
    let Some(sig) = &input.manifest.signature else {
        ctx.finding("manifest.signature_missing");
        return fail(
            "bundle.projection_unattested",
            format!(
                "the events are {profile} projections, whose visible fields only the manifest \
                 signature attests, but the manifest is unsigned"
            ),
        );
    };
    if !input.ring.manifest_authenticated {
        let Some(key) = input.ring.bundled(&sig.key_id) else {
            ctx.finding(format!("manifest.key_unknown:{}", sig.key_id));
            return fail(
                "bundle.projection_unattested",
                format!(
                    "the events are {profile} projections, whose visible fields only the manifest \
                     signature attests, but no key was given and the bundle carries no \
                     keys/{}.pub: pass --key",
                    sig.key_id
                ),
            );
        };
        let valid = input
            .manifest_value
            .as_object()
            .and_then(|m| manifest_digest(m).ok())
            .is_some_and(|digest| manifest_signature_verifies(&digest, &sig.value, [key]));
        if !valid {
            ctx.finding("manifest.signature_invalid");
            return fail(
                "bundle.signature_invalid",
                format!(
                    "the manifest signature does not verify with the bundled keys/{}.pub: the \
                     manifest was changed after signing (it alone attests the projected fields)",
                    sig.key_id
                ),
            );
        }
        ctx.finding("manifest.signature_valid_with_bundled_key");
        ctx.summary.manifest_signature = "valid_with_bundled_key";
        // It was checked after all: replace step 3's "not checked" warning.
        if let Some(i) = ctx.unchecked_manifest_warning.take() {
            ctx.warnings.remove(i);
        }
        ctx.warnings.push(format!(
            "the manifest signature (key {:?}), which alone attests the {profile} projections' \
             visible fields, was checked only with the key the bundle carries, which nothing \
             outside vouches for: pass --key with the exporter's public key",
            sig.key_id
        ));
    }
    ctx.finding(format!(
        "projection.{profile}:visible_fields_attested_by_bundle_signer"
    ));
    Ok(())
}

/// Whether a hex manifest signature value verifies over `digest` with one of `keys`.
fn manifest_signature_verifies<'k>(
    digest: &[u8; 32],
    value: &str,
    keys: impl IntoIterator<Item = &'k VerifyingKey>,
) -> bool {
    let Some(bytes) = hex_decode_strict(value) else {
        return false;
    };
    let Ok(raw) = <[u8; 64]>::try_from(bytes.as_slice()) else {
        return false;
    };
    let signature = Signature::from_bytes(&raw);
    keys.into_iter()
        .any(|k| verify_strict(k, digest, &signature).is_ok())
}

fn check_consistency(input: &StrictInput<'_>, ctx: &mut Ctx) -> Result<(), Fail> {
    let manifest = input.manifest;
    let mut inconsistent = |field: &str, detail: String| -> Result<(), Fail> {
        ctx.finding(format!("manifest_inconsistent:{field}"));
        fail("bundle.manifest_inconsistent", detail)
    };
    let flow = input.members.get(FLOW).and_then(|b| lenient_object(b));
    for (doc_name, doc) in [(FLOW, flow.as_ref()), (RUN, input.run_doc)] {
        let Some(doc) = doc else { continue };
        for (field, want) in [
            ("flow_id", &manifest.flow_id),
            ("tenant_id", &manifest.tenant_id),
        ] {
            if let Some(Value::String(got)) = doc.get(field)
                && got != want
            {
                return inconsistent(
                    field,
                    format!("the manifest's {field} is {want:?}, but {doc_name} says {got:?}"),
                );
            }
        }
    }
    if let (Some(policy), Some(profile)) = (input.policy, &manifest.verification_profile) {
        let fingerprint = policy_fingerprint(policy).map_err(|e| Fail {
            reason: "bundle.manifest_inconsistent",
            detail: format!("policy.json cannot be canonicalized: {e}"),
        })?;
        if !profile.policy_versions.contains(&fingerprint) {
            return inconsistent(
                "policy_versions",
                format!(
                    "verification_profile.policy_versions {:?} does not name policy.json's \
                     fingerprint {fingerprint}",
                    profile.policy_versions
                ),
            );
        }
    }
    Ok(())
}

fn check_event_signatures(input: &StrictInput<'_>, ctx: &mut Ctx) -> Result<(), Fail> {
    let mut unsigned = 0usize;
    let mut verified = 0usize;
    let mut bundled_only = 0usize;
    for r in input.events {
        if r.chain.key_id_mismatch {
            ctx.finding(format!("event_key_id_mismatch:{}", r.id));
            return fail(
                "bundle.event_key_id_mismatch",
                format!(
                    "event {:?} is signed with key {:?}, which is not a key of its instance {:?}",
                    r.id,
                    r.key_id,
                    r.chain.instance.as_deref().unwrap_or("?")
                ),
            );
        }
        match &r.strict_sig {
            StrictSig::Unsigned if r.chain.is_v1 || r.chain.projection.is_some() => {
                ctx.finding(format!("event_unsigned:{}", r.id));
                return fail(
                    "bundle.event_unsigned",
                    format!(
                        "event {:?} (events.jsonl line {}) is an intentproof.event.v1 event without a signature",
                        r.id, r.line
                    ),
                );
            }
            StrictSig::Unsigned => unsigned += 1,
            StrictSig::Malformed(e) | StrictSig::Invalid(e) => {
                ctx.finding(format!("event_signature_invalid:{}", r.id));
                return fail(
                    "bundle.event_signature_invalid",
                    format!("event {:?} (events.jsonl line {}): {e}", r.id, r.line),
                );
            }
            StrictSig::KeyUnknown(key_id) => {
                ctx.finding(format!("event_key_unknown:{}:{key_id}", r.id));
                return fail(
                    "bundle.event_key_unknown",
                    format!(
                        "event {:?} is signed by key {key_id:?}, which is neither in the bundle \
                         (keys/{key_id}.pub) nor given with --key: it is unverified. Pass --key {key_id}=<public key file>",
                        r.id
                    ),
                );
            }
            StrictSig::Valid { bundled_only: b } => {
                verified += 1;
                if *b {
                    bundled_only += 1;
                }
            }
        }
    }
    ctx.summary.events_unsigned = unsigned;
    ctx.summary.events_signature_verified = verified;
    ctx.summary.events_verified_with_unauthenticated_key = bundled_only;
    if unsigned > 0 {
        ctx.warnings.push(format!(
            "{unsigned} event(s) carry no signature (records that are not intentproof.event.v1): \
             only the manifest covers them, and they are not counted as verified"
        ));
    }
    if bundled_only > 0 {
        ctx.warnings.push(format!(
            "{bundled_only} event signature(s) were checked with keys carried in the bundle itself, \
             and no given key vouches for those keys or the manifest: pass --key"
        ));
    }
    Ok(())
}

struct ChainState<'a> {
    last_position: u64,
    last_hash: String,
    seen: HashMap<u64, (&'a str, [u8; 32])>,
}

fn check_chains(events: &[Record], ctx: &mut Ctx) -> Result<(), Fail> {
    // Chain members of each event: (instance, correlation, position, prev, digest).
    type Key<'a> = (&'a str, &'a str);
    let mut placed: Vec<(usize, Key<'_>, u64, &str, [u8; 32])> = Vec::new();
    let mut present: HashMap<Key<'_>, HashSet<u64>> = HashMap::new();
    for (i, r) in events.iter().enumerate() {
        let c = &r.chain;
        if c.position.is_none() && c.prev.is_none() {
            continue;
        }
        let malformed = |what: &str| -> Result<(), Fail> {
            fail(
                "bundle.chain_malformed",
                format!(
                    "event {:?} (events.jsonl line {}) cannot be placed in a chain: {what}",
                    r.id, r.line
                ),
            )
        };
        let Some(position) = c
            .position
            .as_ref()
            .and_then(Value::as_u64)
            .filter(|p| *p >= 1)
        else {
            ctx.finding(format!("chain_malformed:{}", r.id));
            return malformed("`chain_position` is not an integer >= 1");
        };
        let Some(prev) = c.prev.as_ref().and_then(Value::as_str) else {
            ctx.finding(format!("chain_malformed:{}", r.id));
            return malformed("`prev_event_hash` is missing or not a string");
        };
        let Some(correlation) = c.correlation.as_deref() else {
            ctx.finding(format!("chain_malformed:{}", r.id));
            return malformed("`correlation_id` is missing");
        };
        let digest = match &r.digest {
            Some(Ok(d)) => *d,
            Some(Err(e)) => {
                ctx.finding(format!("chain_malformed:{}", r.id));
                return malformed(&format!("it cannot be canonicalized: {e}"));
            }
            None => {
                ctx.finding(format!("chain_malformed:{}", r.id));
                return malformed("it has no content hash");
            }
        };
        let key = (c.instance.as_deref().unwrap_or(""), correlation);
        present.entry(key).or_default().insert(position);
        placed.push((i, key, position, prev, digest));
    }
    let mut chains: HashMap<Key<'_>, ChainState<'_>> = HashMap::new();
    for &(i, key, position, prev, digest) in &placed {
        let r = &events[i];
        let state = chains.entry(key).or_insert_with(|| ChainState {
            last_position: 0,
            last_hash: ZERO_HASH.to_owned(),
            seen: HashMap::new(),
        });
        if let Some((first, first_digest)) = state.seen.get(&position) {
            if *first_digest == digest {
                ctx.finding(format!("event_duplicate:{}", r.id));
                return fail(
                    "bundle.event_duplicate",
                    format!(
                        "event {:?} at position {position} of chain {:?} occurs more than once",
                        r.id, key.1
                    ),
                );
            }
            ctx.finding(format!("chain_fork:{}:{position}", key.1));
            return fail(
                "bundle.chain_fork",
                format!(
                    "fork in chain {:?} at position {position}: events {first:?} and {:?} both claim it",
                    key.1, r.id
                ),
            );
        }
        if position > state.last_position + 1 {
            let missing = state.last_position + 1;
            if present.get(&key).is_some_and(|s| s.contains(&missing)) {
                ctx.finding(format!("chain_out_of_order:{}:{missing}", key.1));
                return fail(
                    "bundle.chain_out_of_order",
                    format!(
                        "chain {:?} is out of order: event {:?} at position {position} (line {}) \
                         comes before position {missing}",
                        key.1, r.id, r.line
                    ),
                );
            }
            ctx.finding(format!("chain_gap:{}:{missing}", key.1));
            return fail(
                "bundle.chain_gap",
                format!(
                    "gap in chain {:?}: position {missing} is missing before event {:?} at position \
                     {position} (an event was dropped)",
                    key.1, r.id
                ),
            );
        }
        if prev != state.last_hash {
            ctx.finding(format!("chain_link_mismatch:{}", r.id));
            return fail(
                "bundle.chain_link_mismatch",
                format!(
                    "event {:?} at position {position} of chain {:?} has prev_event_hash {prev}, \
                     but the event before hashes to {}",
                    r.id, key.1, state.last_hash
                ),
            );
        }
        state.seen.insert(position, (r.id.as_str(), digest));
        state.last_position = position;
        state.last_hash = sha256_prefixed(&digest);
    }
    ctx.summary.chains = chains.len();
    if !chains.is_empty() {
        ctx.finding(format!("event_chains_valid:{}", chains.len()));
    }
    Ok(())
}

fn check_inclusion(bytes: &[u8], input: &StrictInput<'_>, ctx: &mut Ctx) -> Result<(), Fail> {
    let malformed = |ctx: &mut Ctx, e: String| -> Result<(), Fail> {
        ctx.finding("inclusion_proof.malformed");
        fail(
            "bundle.inclusion_proof_malformed",
            format!("inclusion_proof.json: {e}"),
        )
    };
    let parsed: InclusionProofs = match parse_strict(bytes)
        .map_err(|e| e.to_string())
        .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => return malformed(ctx, e),
    };
    if parsed.schema != INCLUSION_SCHEMA || parsed.checkpoint.schema != CHECKPOINT_SCHEMA {
        return malformed(
            ctx,
            format!(
                "schema {:?} / checkpoint schema {:?}, expected {INCLUSION_SCHEMA:?} / {CHECKPOINT_SCHEMA:?}",
                parsed.schema, parsed.checkpoint.schema
            ),
        );
    }
    let checkpoint = &parsed.checkpoint;
    let root = match checkpoint.root_hash() {
        Ok(r) => r,
        Err(e) => return malformed(ctx, e),
    };
    let candidates = input.ring.candidates(&checkpoint.key_id);
    if candidates.is_empty() {
        ctx.finding(format!("checkpoint.key_unknown:{}", checkpoint.key_id));
        return fail(
            "bundle.checkpoint_key_unknown",
            format!(
                "the checkpoint is signed by key {:?}, which is neither bundled nor given: pass --key",
                checkpoint.key_id
            ),
        );
    }
    let mut last_error = String::new();
    if !candidates.iter().any(|k| match checkpoint.verify(k) {
        Ok(()) => true,
        Err(e) => {
            last_error = e;
            false
        }
    }) {
        ctx.finding("checkpoint.signature_invalid");
        return fail("bundle.checkpoint_signature_invalid", last_error);
    }
    ctx.finding("checkpoint.signature_valid");

    let mut used = HashSet::new();
    for (r, line) in input.events.iter().zip(input.event_lines) {
        let Some(proof) = parsed.proofs.get(&r.id) else {
            ctx.finding(format!("inclusion_proof_missing:{}", r.id));
            return fail(
                "bundle.inclusion_proof_missing",
                format!(
                    "event {:?} has no inclusion proof in inclusion_proof.json",
                    r.id
                ),
            );
        };
        used.insert(r.id.as_str());
        let leaf = match (&r.chain.projection, &proof.leaf_hash) {
            (Some(_), Some(h)) => parse_hash(h).ok_or_else(|| format!("leaf_hash {h:?} is not 64 hex digits")),
            (Some(_), None) => Err(
                "the event is a projection, so its proof needs the full event's leaf_hash, and has none"
                    .to_owned(),
            ),
            (None, Some(h)) if parse_hash(h) != Some(leaf_hash(line)) => Err(format!(
                "leaf_hash {h:?} is not the leaf hash of the event's line"
            )),
            (None, _) => Ok(leaf_hash(line)),
        };
        let result = leaf
            .and_then(|leaf| proof.hashes().map(|hashes| (leaf, hashes)))
            .and_then(|(leaf, hashes)| {
                verify_inclusion(
                    &leaf,
                    proof.leaf_index,
                    checkpoint.tree_size,
                    &hashes,
                    &root,
                )
                .map_err(|e| e.to_string())
            });
        if let Err(e) = result {
            ctx.finding(format!("inclusion_proof_invalid:{}", r.id));
            return fail(
                "bundle.inclusion_proof_invalid",
                format!(
                    "the inclusion proof of event {:?} (leaf {} of {}) does not verify: {e}",
                    r.id, proof.leaf_index, checkpoint.tree_size
                ),
            );
        }
    }
    if let Some(extra) = parsed.proofs.keys().find(|id| !used.contains(id.as_str())) {
        ctx.finding(format!("inclusion_proof_invalid:{extra}"));
        return fail(
            "bundle.inclusion_proof_invalid",
            format!("inclusion_proof.json has a proof for {extra:?}, which is not a bundled event"),
        );
    }
    ctx.summary.inclusion_proofs_verified = input.events.len();
    ctx.finding(format!("inclusion_proofs_valid:{}", input.events.len()));
    Ok(())
}
