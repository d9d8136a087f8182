//! The bundle manifest (`intentproof.bundle.manifest.v1`) and the
//! digests the bundle binds together.

use intentproof_core::canon::{CanonError, canonicalize_object_without};
use intentproof_core::v1::sha256_prefixed;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The manifest's `schema`.
pub const MANIFEST_SCHEMA: &str = "intentproof.bundle.manifest.v1";
/// Name of the manifest member.
pub const MANIFEST: &str = "manifest.json";
/// Name of the flow member.
pub const FLOW: &str = "flow.json";
/// Name of the events member (one signed event a line).
pub const EVENTS: &str = "events.jsonl";
/// Name of the attestations member (may be empty).
pub const ATTESTATIONS: &str = "attestations.jsonl";
/// Name of the policy member.
pub const POLICY: &str = "policy.json";
/// Name of the run member.
pub const RUN: &str = "run.json";
/// Name of the optional certificate member.
pub const CERTIFICATE: &str = "certificate.json";
/// Name of the optional inclusion proof member (see [`crate::inclusion`]).
pub const INCLUSION_PROOF: &str = "inclusion_proof.json";
/// Optional per-daemon inclusion proofs of a fleet bundle
/// ([`crate::inclusion::FleetInclusion`]).
pub const FLEET_INCLUSION: &str = "fleet_inclusion.json";
/// Optional C2SP `tlog-proof` per event ([`crate::inclusion::TlogProofLine`]).
pub const TLOG_PROOFS: &str = "tlog-proofs.jsonl";
/// Folder of the bundled public keys, `keys/<key_id>.pub`.
pub const KEYS_DIR: &str = "keys/";
/// Members a policy fingerprint leaves out.
pub const POLICY_FINGERPRINT_EXCLUDED: [&str; 3] = ["policy_fingerprint", "signed_at", "signature"];

/// One `files` entry: a member and the SHA-256 of its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FileEntry {
    /// Member path.
    #[serde(default)]
    pub path: String,
    /// `"sha256:<hex>"` of its raw bytes.
    #[serde(default)]
    pub sha256: String,
}

/// `verification_profile`: the tuple a bundle was built and is verified with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VerificationProfile {
    /// Spec version of the exporter.
    #[serde(default)]
    pub spec_version: String,
    /// Verifier version the bundle expects.
    #[serde(default)]
    pub verifier_version: String,
    /// Policy fingerprints the run used.
    #[serde(default)]
    pub policy_versions: Vec<String>,
    /// One of `full`, `auditor`, `minimal-claim`, `counterparty`.
    #[serde(default)]
    pub export_profile: String,
    /// The flow snapshot evaluated.
    #[serde(default)]
    pub flow_snapshot_id: String,
    /// The run carried in `run.json`.
    #[serde(default)]
    pub run_id: String,
}

/// A signature envelope `{alg, key_id, value}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SignatureEnvelope {
    /// Algorithm, `"ed25519"`.
    #[serde(default)]
    pub alg: String,
    /// The signing key's id.
    #[serde(default)]
    pub key_id: String,
    /// The signature (hex for the manifest).
    #[serde(default)]
    pub value: String,
}

/// The manifest, read leniently (missing members are empty, as the
/// reference verifier reads them); the schema is checked separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Manifest {
    /// [`MANIFEST_SCHEMA`].
    #[serde(default)]
    pub schema: String,
    /// Bundle id.
    #[serde(default)]
    pub bundle_id: String,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created_at: String,
    /// The flow.
    #[serde(default)]
    pub flow_id: String,
    /// The tenant.
    #[serde(default)]
    pub tenant_id: String,
    /// Every member but the manifest, sorted by path.
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// Merkle root over the sorted event ids.
    #[serde(default)]
    pub event_merkle_root: String,
    /// Merkle root over the sorted attestation ids.
    #[serde(default)]
    pub attestation_merkle_root: String,
    /// The verification profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_profile: Option<VerificationProfile>,
    /// Ed25519 over `sha256(JCS(manifest minus signature))`, value hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureEnvelope>,
}

/// `"sha256:" + hex(SHA-256(bytes))`.
pub fn sha256_of(bytes: &[u8]) -> String {
    sha256_prefixed(&Sha256::digest(bytes).into())
}

/// The digest the manifest signature signs: `SHA-256(JCS(manifest minus
/// signature))`.
pub fn manifest_digest(manifest: &Map<String, Value>) -> Result<[u8; 32], CanonError> {
    let canonical = canonicalize_object_without(manifest, &["signature"])?;
    Ok(Sha256::digest(&canonical).into())
}

/// The policy fingerprint: `"sha256:" + hex(SHA-256(JCS(policy minus
/// policy_fingerprint, signed_at, signature)))`.
///
/// ```
/// let p = serde_json::json!({"policy_id": "p", "policy_fingerprint": "x"});
/// let q = serde_json::json!({"policy_id": "p"});
/// assert_eq!(
///     intentproof_bundle::manifest::policy_fingerprint(p.as_object().unwrap()).unwrap(),
///     intentproof_bundle::manifest::policy_fingerprint(q.as_object().unwrap()).unwrap(),
/// );
/// ```
pub fn policy_fingerprint(policy: &Map<String, Value>) -> Result<String, CanonError> {
    let canonical = canonicalize_object_without(policy, &POLICY_FINGERPRINT_EXCLUDED)?;
    Ok(sha256_prefixed(&Sha256::digest(&canonical).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_fingerprint_matches_the_spec_vector() {
        // golden/policy_fingerprint_vector.json of the spec.
        let policy = serde_json::json!({
            "schema": "intentproof.policy.v1", "policy_id": "tnt.test", "policy_version": 1,
            "tenant_id": "tnt", "spec_version": "1.0.0",
            "scope": {"any_event_action_in": ["a"]},
            "rules": [{"id": "r1", "category": "required", "severity": "high", "spec": {"action": "a"}}],
            "policy_fingerprint": "sha256:should-be-excluded",
            "signed_at": "2026-01-01T00:00:00Z",
            "signature": {"alg": "ed25519", "key_id": "k1", "value": "base64"}
        });
        assert_eq!(
            policy_fingerprint(policy.as_object().unwrap()).unwrap(),
            "sha256:7ffa54b2f15b9ab936a94eb3926a79bde8f66b0a81d0fee69b6c9d2c6a2fb07b"
        );
    }
}
