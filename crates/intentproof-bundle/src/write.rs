//! Writing bundles, deterministically: the same input gives the same bytes.
//!
//! Tar entries are sorted by name, regular files with mode 0644, mtime 0,
//! uid/gid 0 and empty user and group names (GNU headers; a name longer
//! than 100 bytes gets a GNU long-name entry). The tar is compressed with
//! zstd at [`ZSTD_LEVEL`], single-threaded, with a content checksum.

use std::collections::BTreeMap;
use std::io::Write;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use intentproof_core::canon::parse_strict;
use intentproof_core::merkle::{event_merkle_root, hex};
use serde_json::Value;

use crate::inclusion::{FleetInclusion, InclusionProofs, TlogProofLine};
use crate::manifest::{
    ATTESTATIONS, CERTIFICATE, EVENTS, FLEET_INCLUSION, FLOW, FileEntry, INCLUSION_PROOF, KEYS_DIR,
    MANIFEST, MANIFEST_SCHEMA, Manifest, POLICY, RUN, SignatureEnvelope, TLOG_PROOFS,
    VerificationProfile, manifest_digest, policy_fingerprint, sha256_of,
};

/// The zstd level bundles are written with.
pub const ZSTD_LEVEL: i32 = 9;

/// The verifier version written when none is given: `"dev"`, the version
/// the reference verifier accepts from any build (it accepts otherwise only
/// its own build's version string).
pub const DEFAULT_VERIFIER_VERSION: &str = "dev";

/// The export profiles the schema allows.
pub const EXPORT_PROFILES: [&str; 4] = ["full", "auditor", "minimal-claim", "counterparty"];

/// Everything a bundle carries.
#[derive(Debug, Clone, Default)]
pub struct BundleInput {
    /// `bundle_id`.
    pub bundle_id: String,
    /// `created_at` (RFC 3339; given, so output is reproducible).
    pub created_at: String,
    /// `flow_id`.
    pub flow_id: String,
    /// `tenant_id`.
    pub tenant_id: String,
    /// `flow.json`, exact bytes.
    pub flow: Vec<u8>,
    /// Signed events, one exact JSON line each (no newline inside); kept
    /// byte for byte, so inclusion proofs over the stored bytes verify.
    pub events: Vec<Vec<u8>>,
    /// Attestations, one JSON line each.
    pub attestations: Vec<Vec<u8>>,
    /// `policy.json`, exact bytes.
    pub policy: Vec<u8>,
    /// `run.json`, exact bytes.
    pub run: Vec<u8>,
    /// Optional `certificate.json`.
    pub certificate: Option<Vec<u8>>,
    /// Public keys to bundle as `keys/<key_id>.pub` (PEM).
    pub keys: BTreeMap<String, VerifyingKey>,
    /// Optional `inclusion_proof.json`.
    pub inclusion: Option<InclusionProofs>,
    /// Optional `fleet_inclusion.json` (a fleet bundle's proofs).
    pub fleet_inclusion: Option<FleetInclusion>,
    /// `tlog-proofs.jsonl` lines (none: no such member).
    pub tlog_proofs: Vec<TlogProofLine>,
    /// `verification_profile.export_profile` (one of [`EXPORT_PROFILES`]).
    pub export_profile: String,
    /// `verification_profile.spec_version`.
    pub spec_version: String,
    /// `verification_profile.verifier_version`; empty means
    /// [`DEFAULT_VERIFIER_VERSION`].
    pub verifier_version: String,
    /// `verification_profile.flow_snapshot_id`; empty means `flow_id`.
    pub flow_snapshot_id: String,
    /// `verification_profile.run_id`; empty means run.json's `run_id`.
    pub run_id: String,
}

/// Signs the manifest.
#[derive(Debug, Clone, Copy)]
pub struct ManifestSigner<'a> {
    /// The exporter's key.
    pub key: &'a SigningKey,
    /// Its key id.
    pub key_id: &'a str,
}

/// Why a bundle cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A JSONL line is not a JSON object with its id.
    #[error("{file} line {line}: {reason}")]
    BadLine {
        /// events.jsonl or attestations.jsonl.
        file: &'static str,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A document is not a JSON object.
    #[error("{file} is not a JSON object: {reason}")]
    BadDocument {
        /// The member.
        file: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A required manifest value is missing or not allowed.
    #[error("{0}")]
    BadInput(String),
    /// Tar or zstd failed (in memory: only on a bug or out of memory).
    #[error("cannot build the archive: {0}")]
    Archive(#[from] std::io::Error),
}

fn check_lines(
    file: &'static str,
    lines: &[Vec<u8>],
    id_field: &str,
) -> Result<Vec<String>, WriteError> {
    let mut ids = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let bad = |reason: String| WriteError::BadLine {
            file,
            line: i + 1,
            reason,
        };
        if line.contains(&b'\n') {
            return Err(bad(
                "contains a newline; write each record on one line".into()
            ));
        }
        let value = parse_strict(line).map_err(|e| bad(e.to_string()))?;
        match value.get(id_field) {
            Some(Value::String(id)) => ids.push(id.clone()),
            _ => return Err(bad(format!("has no string `{id_field}`"))),
        }
    }
    Ok(ids)
}

fn jsonl(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

fn safe_key_id(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && !id.contains(['/', '\\', '\0'])
        && !id.starts_with('.')
}

/// Writes a bundle (`.proof.tar.zst` bytes). With a signer, the manifest
/// carries `signature`: Ed25519 over `sha256(JCS(manifest minus
/// signature))`, value hex.
pub fn write_bundle(
    input: &BundleInput,
    signer: Option<&ManifestSigner<'_>>,
) -> Result<Vec<u8>, WriteError> {
    let event_ids = check_lines(EVENTS, &input.events, "event_id")?;
    let attestation_ids = check_lines(ATTESTATIONS, &input.attestations, "attestation_id")?;
    if !EXPORT_PROFILES.contains(&input.export_profile.as_str()) {
        return Err(WriteError::BadInput(format!(
            "export_profile {:?} is not one of {}",
            input.export_profile,
            EXPORT_PROFILES.join(", ")
        )));
    }
    for (what, value) in [
        ("bundle_id", &input.bundle_id),
        ("created_at", &input.created_at),
        ("flow_id", &input.flow_id),
        ("tenant_id", &input.tenant_id),
        ("spec_version", &input.spec_version),
    ] {
        if value.is_empty() {
            return Err(WriteError::BadInput(format!("{what} is empty")));
        }
    }
    let policy_versions = if input.policy.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        match parse_strict(&input.policy) {
            Ok(Value::Object(p)) => {
                vec![policy_fingerprint(&p).map_err(|e| WriteError::BadDocument {
                    file: POLICY,
                    reason: e.to_string(),
                })?]
            }
            Ok(_) => {
                return Err(WriteError::BadDocument {
                    file: POLICY,
                    reason: "not an object".into(),
                });
            }
            Err(e) => {
                return Err(WriteError::BadDocument {
                    file: POLICY,
                    reason: e.to_string(),
                });
            }
        }
    };
    let run_id = if input.run_id.is_empty() {
        match parse_strict(&input.run) {
            Ok(Value::Object(r)) => match r.get("run_id") {
                Some(Value::String(id)) if !id.is_empty() => id.clone(),
                _ => return Err(WriteError::BadInput("run.json has no run_id".into())),
            },
            _ => {
                return Err(WriteError::BadDocument {
                    file: RUN,
                    reason: "not a JSON object".into(),
                });
            }
        }
    } else {
        input.run_id.clone()
    };

    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert(ATTESTATIONS.into(), jsonl(&input.attestations));
    files.insert(EVENTS.into(), jsonl(&input.events));
    files.insert(FLOW.into(), input.flow.clone());
    files.insert(POLICY.into(), input.policy.clone());
    files.insert(RUN.into(), input.run.clone());
    if let Some(c) = &input.certificate {
        files.insert(CERTIFICATE.into(), c.clone());
    }
    if let Some(inclusion) = &input.inclusion {
        let mut bytes = serde_json::to_vec(inclusion)
            .map_err(|e| WriteError::BadInput(format!("inclusion proofs: {e}")))?;
        bytes.push(b'\n');
        files.insert(INCLUSION_PROOF.into(), bytes);
    }
    if let Some(inclusion) = &input.fleet_inclusion {
        let mut bytes = serde_json::to_vec(inclusion)
            .map_err(|e| WriteError::BadInput(format!("fleet inclusion proofs: {e}")))?;
        bytes.push(b'\n');
        files.insert(FLEET_INCLUSION.into(), bytes);
    }
    if !input.tlog_proofs.is_empty() {
        let mut bytes = Vec::new();
        for line in &input.tlog_proofs {
            serde_json::to_writer(&mut bytes, line)
                .map_err(|e| WriteError::BadInput(format!("tlog proofs: {e}")))?;
            bytes.push(b'\n');
        }
        files.insert(TLOG_PROOFS.into(), bytes);
    }
    for (id, key) in &input.keys {
        if !safe_key_id(id) {
            return Err(WriteError::BadInput(format!(
                "key id {id:?} cannot be a file name under keys/"
            )));
        }
        files.insert(
            format!("{KEYS_DIR}{id}.pub"),
            intentproof_core::keys::public_key_to_pem(key).into_bytes(),
        );
    }

    let mut manifest = Manifest {
        schema: MANIFEST_SCHEMA.into(),
        bundle_id: input.bundle_id.clone(),
        created_at: input.created_at.clone(),
        flow_id: input.flow_id.clone(),
        tenant_id: input.tenant_id.clone(),
        files: files
            .iter()
            .map(|(path, data)| FileEntry {
                path: path.clone(),
                sha256: sha256_of(data),
            })
            .collect(),
        event_merkle_root: event_merkle_root(&event_ids),
        attestation_merkle_root: event_merkle_root(&attestation_ids),
        verification_profile: Some(VerificationProfile {
            spec_version: input.spec_version.clone(),
            verifier_version: if input.verifier_version.is_empty() {
                DEFAULT_VERIFIER_VERSION.into()
            } else {
                input.verifier_version.clone()
            },
            policy_versions,
            export_profile: input.export_profile.clone(),
            flow_snapshot_id: if input.flow_snapshot_id.is_empty() {
                input.flow_id.clone()
            } else {
                input.flow_snapshot_id.clone()
            },
            run_id,
        }),
        signature: None,
    };
    if let Some(signer) = signer {
        manifest.signature = Some(sign_manifest(&manifest, signer)?);
    }
    let mut manifest_bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| WriteError::BadInput(format!("manifest: {e}")))?;
    manifest_bytes.push(b'\n');
    files.insert(MANIFEST.into(), manifest_bytes);

    let members: Vec<(String, Vec<u8>)> = files.into_iter().collect();
    pack_members(&members, true).map_err(WriteError::Archive)
}

/// The manifest signature envelope for `manifest` (its `signature` ignored).
pub fn sign_manifest(
    manifest: &Manifest,
    signer: &ManifestSigner<'_>,
) -> Result<SignatureEnvelope, WriteError> {
    let mut unsigned = manifest.clone();
    unsigned.signature = None;
    let value = serde_json::to_value(&unsigned)
        .map_err(|e| WriteError::BadInput(format!("manifest: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(WriteError::BadInput("manifest is not an object".into()));
    };
    let digest = manifest_digest(&obj).map_err(|e| WriteError::BadInput(e.to_string()))?;
    Ok(SignatureEnvelope {
        alg: "ed25519".into(),
        key_id: signer.key_id.into(),
        value: hex_sig(&signer.key.sign(&digest).to_bytes()),
    })
}

fn hex_sig(bytes: &[u8; 64]) -> String {
    let (a, b) = bytes.split_at(32);
    let mut first = [0u8; 32];
    let mut second = [0u8; 32];
    first.copy_from_slice(a);
    second.copy_from_slice(b);
    hex(&first) + &hex(&second)
}

/// Packs members into a deterministic tar (in the order given), zstd
/// compressed when `compress`. Used by [`write_bundle`] (members sorted by
/// name) and by tests that edit a bundle.
pub fn pack_members(members: &[(String, Vec<u8>)], compress: bool) -> std::io::Result<Vec<u8>> {
    let total: usize = members.iter().map(|(_, d)| d.len() + 1024).sum();
    let mut builder = tar::Builder::new(Vec::with_capacity(total + 1024));
    for (path, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("")?;
        header.set_groupname("")?;
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, path, data.as_slice())?;
    }
    let tar = builder.into_inner()?;
    if !compress {
        return Ok(tar);
    }
    let mut encoder = zstd::stream::Encoder::new(Vec::with_capacity(tar.len() / 4), ZSTD_LEVEL)?;
    encoder.include_checksum(true)?;
    encoder.set_pledged_src_size(Some(tar.len() as u64))?;
    encoder.include_contentsize(true)?;
    encoder.write_all(&tar)?;
    encoder.finish()
}

/// Writes `bytes` to `path` through a temporary file next to it and a
/// rename, so a reader never sees half a bundle; the temporary file is
/// removed when the rename fails.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("c.proof.tar.zst");
/// intentproof_bundle::write_file_atomically(&path, b"bundle").unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"bundle");
/// ```
pub fn write_file_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let partial = parent.join(format!(".{}.partial", name.to_string_lossy()));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })
}
