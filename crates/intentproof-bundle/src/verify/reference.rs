//! The reference verifier's checks (steps 1-8), in its order and with its
//! reason codes and findings; they end by running the stricter checks.

use std::collections::HashMap;

use intentproof_core::canon::parse_strict;
use intentproof_core::merkle::event_merkle_root;
use serde_json::{Map, Value};

use super::keys::key_ring;
use super::records::{
    ATTESTATION_KIND, CERTIFICATE_KIND, EVENT_KIND, RUN_KIND, Record, RefSig, hex_decode_strict,
    is_blank, lenient_object, process_document, process_lines, split_lines,
};
use super::strict::{StrictInput, manifest_signature_verifies, strict};
use super::{Ctx, Fail, SUPPORTED_VERIFIER_VERSIONS, VerifyOptions, fail};
use crate::archive::{Compression, read_archive};
use crate::manifest::{
    ATTESTATIONS, CERTIFICATE, EVENTS, MANIFEST, Manifest, POLICY, RUN, manifest_digest,
    policy_fingerprint, sha256_of,
};

pub(super) fn run(bundle: &[u8], options: &VerifyOptions, ctx: &mut Ctx) -> Result<(), Fail> {
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

    // 1-3. The manifest, the verification profile, the manifest signature.
    let run_doc = members.get(RUN).and_then(|b| lenient_object(b));
    let head = check_head(
        members.get(MANIFEST).copied(),
        run_doc.as_ref(),
        options,
        ctx,
    )?;
    let manifest = &head.manifest;

    // 4. Files.
    check_files(
        manifest,
        |path| members.get(path).map(|b| sha256_of(b)),
        ctx,
    )?;

    // 5. Policy fingerprint.
    let policy = check_policy(members.get(POLICY).copied(), ctx)?;

    // Keys, then every record (parallel), before the Merkle roots need the ids.
    let ring = key_ring(&members, options, head.manifest_authenticated);
    let threads = thread_count(options);
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
    check_merkle(
        &manifest.event_merkle_root,
        &lenient_ids(&events),
        "event",
        ctx,
    )?;
    check_merkle(
        &manifest.attestation_merkle_root,
        &lenient_ids(&attestations),
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
    check_object_signatures(
        [
            ("event", views(&events)),
            ("attestation", views(&attestations)),
            ("run", run_rec.iter().map(RefView::of).collect()),
            (
                "certificate",
                certificate_rec.iter().map(RefView::of).collect(),
            ),
        ],
        ctx,
    )?;

    // Stricter checks.
    strict(
        &StrictInput {
            members: &members,
            archive_order: archive.members.iter().map(|m| m.path.as_str()).collect(),
            manifest,
            manifest_value: &head.manifest_value,
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

/// The threads to use: `options.threads`, 0 meaning the available
/// parallelism.
pub(super) fn thread_count(options: &VerifyOptions) -> usize {
    match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// The manifest, parsed, and whether a given key verified its signature.
pub(super) struct Head {
    pub(super) manifest: Manifest,
    pub(super) manifest_value: Value,
    pub(super) manifest_authenticated: bool,
}

/// Steps 1-3: the manifest (`bytes`, `None` when the archive has none), the
/// verification profile (with run.json's object, when it is one) and the
/// manifest signature.
pub(super) fn check_head(
    bytes: Option<&[u8]>,
    run_doc: Option<&Map<String, Value>>,
    options: &VerifyOptions,
    ctx: &mut Ctx,
) -> Result<Head, Fail> {
    // 1. The manifest.
    let Some(manifest_bytes) = bytes else {
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

    // 2. Verification profile.
    check_profile(&manifest, run_doc, ctx)?;

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
    Ok(Head {
        manifest,
        manifest_value,
        manifest_authenticated,
    })
}

/// Step 4: every file the manifest lists is a member with the listed hash.
/// `sha256` gives a member's `"sha256:<hex>"`, `None` when there is no such
/// member.
pub(super) fn check_files(
    manifest: &Manifest,
    sha256: impl Fn(&str) -> Option<String>,
    ctx: &mut Ctx,
) -> Result<(), Fail> {
    for entry in &manifest.files {
        let Some(got) = sha256(entry.path.as_str()) else {
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
    Ok(())
}

/// The ids of the records the reference verifier reads (Merkle leaves).
pub(super) fn lenient_ids(records: &[Record]) -> Vec<&str> {
    records
        .iter()
        .filter(|r| r.lenient)
        .map(|r| r.id.as_str())
        .collect()
}

pub(super) fn views(records: &[Record]) -> Vec<RefView<'_>> {
    records
        .iter()
        .filter(|r| r.lenient)
        .map(RefView::of)
        .collect()
}

/// What step 8 needs of a record.
pub(super) struct RefView<'a> {
    pub(super) ref_sig: RefSig,
    pub(super) id: &'a str,
    pub(super) key_id: &'a str,
}

impl<'a> RefView<'a> {
    pub(super) fn of(r: &'a Record) -> RefView<'a> {
        RefView {
            ref_sig: r.ref_sig,
            id: &r.id,
            key_id: &r.key_id,
        }
    }
}

/// Step 8: a finding per signed object, in group order; the first bad one
/// fails.
pub(super) fn check_object_signatures(
    groups: [(&str, Vec<RefView<'_>>); 4],
    ctx: &mut Ctx,
) -> Result<(), Fail> {
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
    Ok(())
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

pub(super) fn check_policy(
    raw: Option<&[u8]>,
    ctx: &mut Ctx,
) -> Result<Option<Map<String, Value>>, Fail> {
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

pub(super) fn check_merkle(
    declared: &str,
    ids: &[&str],
    label: &str,
    ctx: &mut Ctx,
) -> Result<(), Fail> {
    if declared.is_empty() {
        return Ok(());
    }
    let computed = event_merkle_root(ids);
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
