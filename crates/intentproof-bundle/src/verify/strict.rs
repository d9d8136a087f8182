//! The checks where we are stricter than the reference verifier
//! ([`STRICT_REASONS`](super::STRICT_REASONS)): manifest schema and
//! consistency, bundled keys, strict JSONL, event projections, event
//! signatures, chains and inclusion proofs.

use std::collections::{HashMap, HashSet};

use ed25519_dalek::{Signature, VerifyingKey};
use intentproof_core::canon::parse_strict;
use intentproof_core::checkpoint::Checkpoint;
use intentproof_core::keys::verify_strict;
use intentproof_core::merkle::{Hash, leaf_hash, verify_inclusion};
use intentproof_core::schema::{SchemaKind, validate};
use intentproof_core::v1::{ZERO_HASH, sha256_prefixed};
use serde_json::{Map, Value};

use super::keys::KeyRing;
use super::records::{Record, StrictSig, hex_decode_strict, lenient_object};
use super::tlog::{TlogCheck, TlogFail};
use super::{Ctx, Fail, VerifyOptions, fail};
use crate::inclusion::{
    CHECKPOINT_SCHEMA, FLEET_INCLUSION_SCHEMA, FleetInclusion, INCLUSION_SCHEMA, InclusionProofs,
    parse_hash,
};
use crate::manifest::{
    ATTESTATIONS, EVENTS, FLEET_INCLUSION, FLOW, INCLUSION_PROOF, MANIFEST, Manifest, POLICY, RUN,
    TLOG_PROOFS, manifest_digest, policy_fingerprint,
};
use crate::projection::Profile;
use intentproof_core::tlog::note::NoteVerifier;

pub(super) struct StrictInput<'a> {
    pub(super) members: &'a HashMap<&'a str, &'a [u8]>,
    pub(super) archive_order: Vec<&'a str>,
    pub(super) manifest: &'a Manifest,
    pub(super) manifest_value: &'a Value,
    pub(super) policy: Option<&'a Map<String, Value>>,
    pub(super) run_doc: Option<&'a Map<String, Value>>,
    pub(super) event_lines: &'a [&'a [u8]],
    pub(super) events: &'a [Record],
    pub(super) attestations: &'a [Record],
    pub(super) ring: &'a KeyRing,
    pub(super) options: &'a VerifyOptions,
}

pub(super) fn strict(input: &StrictInput<'_>, ctx: &mut Ctx) -> Result<(), Fail> {
    let manifest = input.manifest;
    check_manifest_members(input.manifest_value, manifest, &input.archive_order, ctx)?;
    let flow = input.members.get(FLOW).and_then(|b| lenient_object(b));
    check_consistency(manifest, flow.as_ref(), input.run_doc, input.policy, ctx)?;
    check_bundled_keys(input.ring, ctx)?;
    check_manifest_signed(input.options, manifest, ctx)?;
    check_manifest_signer_named(input.manifest, input.manifest_value, input.ring, ctx)?;

    // JSONL lines parse strictly and carry their ids; ids are unique.
    check_jsonl(EVENTS, input.events, ctx)?;
    check_jsonl(ATTESTATIONS, input.attestations, ctx)?;

    let projections = check_projection_profile(input, ctx)?;
    check_event_signatures(input, ctx)?;
    projection_signatures_valid(projections, ctx);
    check_chains(input.events, ctx)?;
    if let Some(bytes) = input.members.get(INCLUSION_PROOF) {
        check_inclusion(bytes, input, ctx)?;
    }
    if let Some(bytes) = input.members.get(FLEET_INCLUSION) {
        check_fleet_inclusion(bytes, input, ctx)?;
    }
    check_tlog_proofs(input, ctx)?;
    if projections > 0 {
        check_projection_attestation(input.manifest, input.manifest_value, input.ring, ctx)?;
    }
    Ok(())
}

/// The manifest matches its schema, lists the core members, and lists
/// every member (`archive_order`: the members' paths, in archive order).
pub(super) fn check_manifest_members(
    manifest_value: &Value,
    manifest: &Manifest,
    archive_order: &[&str],
    ctx: &mut Ctx,
) -> Result<(), Fail> {
    // The manifest matches its schema.
    if let Err(errors) = validate(SchemaKind::BundleManifest, manifest_value) {
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
    for path in archive_order {
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
    Ok(())
}

/// Bundled keys parse and agree with the given ones.
pub(super) fn check_bundled_keys(ring: &KeyRing, ctx: &mut Ctx) -> Result<(), Fail> {
    for (id, key) in &ring.bundled {
        match key {
            Err(e) => {
                ctx.finding(format!("key_invalid:{id}"));
                return fail(
                    "bundle.key_invalid",
                    format!("keys/{id}.pub is not usable: {e}"),
                );
            }
            Ok(k) => {
                if let Some(given) = ring.trusted_by_id.get(id)
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
    Ok(())
}

/// Once a key is given, the manifest must be signed.
pub(super) fn check_manifest_signed(
    options: &VerifyOptions,
    manifest: &Manifest,
    ctx: &mut Ctx,
) -> Result<(), Fail> {
    if !options.trusted_keys.is_empty() && manifest.signature.is_none() {
        ctx.finding("manifest.signature_missing");
        return fail(
            "bundle.manifest_unsigned",
            "keys were given, but the manifest is unsigned: nothing binds this bundle to those keys \
             (anyone could have rebuilt it)",
        );
    }
    Ok(())
}

/// A verified manifest signature names its signer with a key the
/// verifier knows under that name: a key given with that id (the reference
/// step checked it), or the bundled `keys/<id>.pub` when the key that
/// verified was given without an id. Otherwise the report would name a
/// signer (`signed by ...`) that nothing attests: the id sits outside the
/// signed bytes.
pub(super) fn check_manifest_signer_named(
    manifest: &Manifest,
    manifest_value: &Value,
    ring: &KeyRing,
    ctx: &mut Ctx,
) -> Result<(), Fail> {
    let Some(sig) = &manifest.signature else {
        return Ok(());
    };
    if !ring.manifest_authenticated || ring.trusted_by_id.contains_key(&sig.key_id) {
        return Ok(());
    }
    let named = ring.bundled(&sig.key_id).is_some_and(|key| {
        manifest_value
            .as_object()
            .and_then(|m| manifest_digest(m).ok())
            .is_some_and(|digest| manifest_signature_verifies(&digest, &sig.value, [key]))
    });
    if named {
        return Ok(());
    }
    ctx.finding(format!("manifest.signer_unattested:{}", sig.key_id));
    fail(
        "bundle.manifest_signer_unattested",
        format!(
            "the manifest names its signer {:?}, but the key that verified it was given without an id and the bundle's keys/{}.pub is missing or another key: pass --key {}=<key file> to name it",
            sig.key_id, sig.key_id, sig.key_id
        ),
    )
}

/// The lines of `file` (events.jsonl or attestations.jsonl) parse strictly
/// and carry their ids; the ids are unique.
pub(super) fn check_jsonl(file: &str, records: &[Record], ctx: &mut Ctx) -> Result<(), Fail> {
    let (id_field, dup_reason, what) = if file == EVENTS {
        ("event_id", "bundle.event_duplicate", "event")
    } else {
        (
            "attestation_id",
            "bundle.attestation_duplicate",
            "attestation",
        )
    };
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
    Ok(())
}

/// The finding of the projections whose signatures verified, if any.
pub(super) fn projection_signatures_valid(projections: usize, ctx: &mut Ctx) {
    if projections > 0 {
        ctx.summary.events_projected = projections;
        ctx.finding(format!("projection_signatures_valid:{projections}"));
    }
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
pub(super) fn check_projection_attestation(
    manifest: &Manifest,
    manifest_value: &Value,
    ring: &KeyRing,
    ctx: &mut Ctx,
) -> Result<(), Fail> {
    let profile = manifest
        .verification_profile
        .as_ref()
        .map_or("", |p| p.export_profile.as_str());
    let Some(sig) = &manifest.signature else {
        ctx.finding("manifest.signature_missing");
        return fail(
            "bundle.projection_unattested",
            format!(
                "the events are {profile} projections, whose visible fields only the manifest \
                 signature attests, but the manifest is unsigned"
            ),
        );
    };
    if !ring.manifest_authenticated {
        let Some(key) = ring.bundled(&sig.key_id) else {
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
        let valid = manifest_value
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
pub(super) fn manifest_signature_verifies<'k>(
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

/// flow_id / tenant_id agree with flow.json and run.json (their objects,
/// when they are objects), and policy_versions names policy.json's
/// fingerprint.
pub(super) fn check_consistency(
    manifest: &Manifest,
    flow: Option<&Map<String, Value>>,
    run_doc: Option<&Map<String, Value>>,
    policy: Option<&Map<String, Value>>,
    ctx: &mut Ctx,
) -> Result<(), Fail> {
    let mut inconsistent = |field: &str, detail: String| -> Result<(), Fail> {
        ctx.finding(format!("manifest_inconsistent:{field}"));
        fail("bundle.manifest_inconsistent", detail)
    };
    for (doc_name, doc) in [(FLOW, flow), (RUN, run_doc)] {
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
    if let (Some(policy), Some(profile)) = (policy, &manifest.verification_profile) {
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
    event_signature_summary(unsigned, verified, bundled_only, ctx);
    Ok(())
}

/// The counts of the event signature check, and its warnings.
pub(super) fn event_signature_summary(
    unsigned: usize,
    verified: usize,
    bundled_only: usize,
    ctx: &mut Ctx,
) {
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
    chains_valid(chains.len(), ctx);
    Ok(())
}

/// The count and finding of the chains that verified.
pub(super) fn chains_valid(chains: usize, ctx: &mut Ctx) {
    ctx.summary.chains = chains;
    if chains > 0 {
        ctx.finding(format!("event_chains_valid:{chains}"));
    }
}

fn check_inclusion(bytes: &[u8], input: &StrictInput<'_>, ctx: &mut Ctx) -> Result<(), Fail> {
    let parsed: InclusionProofs = match parse_strict(bytes)
        .map_err(|e| e.to_string())
        .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => return inclusion_malformed(ctx, e),
    };
    let checkpoint = &parsed.checkpoint;
    let root = check_inclusion_header(&parsed.schema, checkpoint, input.ring, ctx)?;

    let mut used = HashSet::new();
    for (r, line) in input.events.iter().zip(input.event_lines) {
        let proof = proof_of(&parsed.proofs, &r.id, INCLUSION_PROOF, ctx)?;
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
            return proof_invalid(
                &r.id,
                format!("leaf {} of {}", proof.leaf_index, checkpoint.tree_size),
                e,
                ctx,
            );
        }
    }
    no_stray_proofs(&parsed.proofs, &used, INCLUSION_PROOF, ctx)?;
    inclusion_proofs_valid(input.events.len(), ctx);
    Ok(())
}

/// The proof of event `id` in `proofs` (of member `file`), or the failure
/// that says it has none.
fn proof_of<'a, P>(
    proofs: &'a std::collections::BTreeMap<String, P>,
    id: &str,
    file: &str,
    ctx: &mut Ctx,
) -> Result<&'a P, Fail> {
    proofs.get(id).map_or_else(
        || {
            ctx.finding(format!("inclusion_proof_missing:{id}"));
            fail(
                "bundle.inclusion_proof_missing",
                format!("event {id:?} has no inclusion proof in {file}"),
            )
        },
        Ok,
    )
}

/// The failure of event `id`'s audit path (`at`: where it claims to be).
fn proof_invalid<T>(id: &str, at: String, e: String, ctx: &mut Ctx) -> Result<T, Fail> {
    ctx.finding(format!("inclusion_proof_invalid:{id}"));
    fail(
        "bundle.inclusion_proof_invalid",
        format!("the inclusion proof of event {id:?} ({at}) does not verify: {e}"),
    )
}

/// Every proof of `proofs` (of member `file`) is a bundled event's (`used`).
fn no_stray_proofs<P>(
    proofs: &std::collections::BTreeMap<String, P>,
    used: &HashSet<&str>,
    file: &str,
    ctx: &mut Ctx,
) -> Result<(), Fail> {
    match proofs.keys().find(|id| !used.contains(id.as_str())) {
        Some(extra) => {
            ctx.finding(format!("inclusion_proof_invalid:{extra}"));
            fail(
                "bundle.inclusion_proof_invalid",
                format!("{file} has a proof for {extra:?}, which is not a bundled event"),
            )
        }
        None => Ok(()),
    }
}

/// `fleet_inclusion.json` ([`crate::inclusion::FleetInclusion`]): every
/// daemon's checkpoint verifies with its bundled key, and every event's
/// audit path leads to the checkpoint of the daemon that stored it.
fn check_fleet_inclusion(bytes: &[u8], input: &StrictInput<'_>, ctx: &mut Ctx) -> Result<(), Fail> {
    let parsed: FleetInclusion = match parse_strict(bytes)
        .map_err(|e| e.to_string())
        .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => return inclusion_malformed(ctx, format!("{FLEET_INCLUSION}: {e}")),
    };
    if parsed.schema != FLEET_INCLUSION_SCHEMA {
        return inclusion_malformed(
            ctx,
            format!(
                "{FLEET_INCLUSION}: schema {:?}, expected {FLEET_INCLUSION_SCHEMA:?}",
                parsed.schema
            ),
        );
    }
    let mut roots = HashMap::new();
    for (daemon, checkpoint) in &parsed.checkpoints {
        if checkpoint.schema != CHECKPOINT_SCHEMA {
            return inclusion_malformed(
                ctx,
                format!(
                    "{FLEET_INCLUSION}: daemon {daemon:?}'s checkpoint schema is {:?}, expected {CHECKPOINT_SCHEMA:?}",
                    checkpoint.schema
                ),
            );
        }
        // The checkpoint is the named daemon's: signed under that daemon's
        // key id, with the key given for that id or bundled under it (never
        // a key given without an id: that one vouches for the manifest).
        let expected = intentproof_core::keys::key_id_for(daemon);
        if checkpoint.key_id != expected {
            return inclusion_malformed(
                ctx,
                format!(
                    "{FLEET_INCLUSION}: the checkpoint of daemon {daemon:?} is signed under key {:?}, not that daemon's {expected:?}",
                    checkpoint.key_id
                ),
            );
        }
        let Some(key) = input.ring.strict_key(&expected) else {
            ctx.finding(format!("checkpoint.key_unknown:{expected}"));
            return fail(
                "bundle.checkpoint_key_unknown",
                format!(
                    "daemon {daemon:?}'s checkpoint is signed by key {expected:?}, which is neither bundled nor given: pass --key {expected}=<key file>"
                ),
            );
        };
        let root = match checkpoint.root_hash() {
            Ok(r) => r,
            Err(e) => return inclusion_malformed(ctx, e),
        };
        if let Err(e) = checkpoint.verify(key) {
            ctx.finding("checkpoint.signature_invalid");
            return fail("bundle.checkpoint_signature_invalid", e);
        }
        ctx.finding("checkpoint.signature_valid");
        roots.insert(daemon.as_str(), (root, checkpoint.tree_size));
    }
    let mut used = HashSet::new();
    for (r, line) in input.events.iter().zip(input.event_lines) {
        let proof = proof_of(&parsed.proofs, &r.id, FLEET_INCLUSION, ctx)?;
        used.insert(r.id.as_str());
        let result = match (&r.chain.projection, roots.get(proof.daemon.as_str())) {
            (Some(_), _) => Err("a fleet bundle carries full events only".to_owned()),
            (None, None) => Err(format!(
                "it names daemon {:?}, whose checkpoint the bundle lacks",
                proof.daemon
            )),
            (None, Some((root, size))) => proof.hashes().and_then(|hashes| {
                verify_inclusion(&leaf_hash(line), proof.leaf_index, *size, &hashes, root)
                    .map_err(|e| e.to_string())
            }),
        };
        if let Err(e) = result {
            return proof_invalid(
                &r.id,
                format!("leaf {} of daemon {:?}", proof.leaf_index, proof.daemon),
                e,
                ctx,
            );
        }
    }
    no_stray_proofs(&parsed.proofs, &used, FLEET_INCLUSION, ctx)?;
    inclusion_proofs_valid(input.events.len(), ctx);
    Ok(())
}

/// `tlog-proofs.jsonl` ([`super::tlog`]). Without the member, only a
/// required witness makes it a failure.
fn check_tlog_proofs(input: &StrictInput<'_>, ctx: &mut Ctx) -> Result<(), Fail> {
    let witnesses = &input.options.witnesses;
    let Some(bytes) = input.members.get(TLOG_PROOFS) else {
        return tlog_member_absent(witnesses, ctx);
    };
    let failed = |ctx: &mut Ctx, f: TlogFail| -> Result<(), Fail> {
        let prefix = match f.reason {
            "bundle.witness_cosignature_missing" => "witness_cosignature_missing",
            _ => "tlog_proof_invalid",
        };
        ctx.finding(format!("{prefix}:{}", f.event));
        fail(f.reason, f.detail)
    };
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut check = TlogCheck::default();
    for (i, (r, event_line)) in input.events.iter().zip(input.event_lines).enumerate() {
        let Some(line) = lines.get(i) else {
            ctx.finding(format!("tlog_proof_missing:{}", r.id));
            return fail(
                "bundle.tlog_proof_missing",
                format!("event {:?} has no line in {TLOG_PROOFS}", r.id),
            );
        };
        let leaf = r.chain.projection.is_none().then(|| leaf_hash(event_line));
        if let Err(f) = check.line(line, &r.id, leaf) {
            return failed(ctx, f);
        }
    }
    if lines.len() > input.events.len() {
        return failed(
            ctx,
            TlogFail {
                reason: "bundle.tlog_proof_invalid",
                detail: format!(
                    "{TLOG_PROOFS} has {} lines for {} events",
                    lines.len(),
                    input.events.len()
                ),
                event: "extra".into(),
            },
        );
    }
    if let Err(f) = check.notes(&tlog_log_keys(input.ring, input.options), witnesses) {
        return failed(ctx, f);
    }
    tlog_proofs_valid(input.events.len(), witnesses, ctx);
    Ok(())
}

/// No `tlog-proofs.jsonl`: a failure only when a witness is required.
pub(super) fn tlog_member_absent(witnesses: &[NoteVerifier], ctx: &mut Ctx) -> Result<(), Fail> {
    let Some(first) = witnesses.first() else {
        return Ok(());
    };
    ctx.finding("tlog_proofs.missing");
    fail(
        "bundle.tlog_proof_missing",
        format!(
            "witness cosignatures are required (--witness {}), but the bundle has no {TLOG_PROOFS}: nothing shows a witness saw its checkpoint",
            first.name()
        ),
    )
}

/// The keys a checkpoint note may be signed with: given, then bundled.
pub(super) fn tlog_log_keys(ring: &KeyRing, options: &VerifyOptions) -> Vec<VerifyingKey> {
    let mut keys: Vec<VerifyingKey> = ring.trusted_by_id.values().copied().collect();
    keys.extend(options.trusted_keys.iter().map(|k| k.key));
    keys.extend(
        ring.bundled
            .values()
            .filter_map(|k| k.as_ref().ok().copied()),
    );
    keys
}

/// The summary and findings of verified tlog-proofs.
pub(super) fn tlog_proofs_valid(count: usize, witnesses: &[NoteVerifier], ctx: &mut Ctx) {
    ctx.summary.tlog_proofs_verified = count;
    if count > 0 {
        ctx.finding(format!("tlog_proofs_valid:{count}"));
    }
    for witness in witnesses {
        ctx.summary
            .witnesses_cosigned
            .push(witness.name().to_owned());
        ctx.finding(format!("witness_cosigned:{}", witness.name()));
    }
}

/// `inclusion_proof.json` is not the documented form.
pub(super) fn inclusion_malformed<T>(ctx: &mut Ctx, e: String) -> Result<T, Fail> {
    ctx.finding("inclusion_proof.malformed");
    fail(
        "bundle.inclusion_proof_malformed",
        format!("inclusion_proof.json: {e}"),
    )
}

/// The schemas of `inclusion_proof.json` and of its checkpoint, the
/// checkpoint's root, and its signature (with a given or bundled key);
/// returns the root.
pub(super) fn check_inclusion_header(
    schema: &str,
    checkpoint: &Checkpoint,
    ring: &KeyRing,
    ctx: &mut Ctx,
) -> Result<Hash, Fail> {
    if schema != INCLUSION_SCHEMA || checkpoint.schema != CHECKPOINT_SCHEMA {
        return inclusion_malformed(
            ctx,
            format!(
                "schema {:?} / checkpoint schema {:?}, expected {INCLUSION_SCHEMA:?} / {CHECKPOINT_SCHEMA:?}",
                schema, checkpoint.schema
            ),
        );
    }
    checkpoint_root(checkpoint, ring, ctx)
}

/// A checkpoint's root, once its signature verified with a given or
/// bundled key.
fn checkpoint_root(checkpoint: &Checkpoint, ring: &KeyRing, ctx: &mut Ctx) -> Result<Hash, Fail> {
    let root = match checkpoint.root_hash() {
        Ok(r) => r,
        Err(e) => return inclusion_malformed(ctx, e),
    };
    let candidates = ring.candidates(&checkpoint.key_id);
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
    Ok(root)
}

/// The count and finding of the inclusion proofs that verified.
pub(super) fn inclusion_proofs_valid(events: usize, ctx: &mut Ctx) {
    ctx.summary.inclusion_proofs_verified = events;
    ctx.finding(format!("inclusion_proofs_valid:{events}"));
}
