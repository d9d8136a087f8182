//! IntentProof proof bundles (`.proof.tar.zst`): deterministic writing,
//! safe reading of untrusted archives, and offline verification.
//!
//! - [`archive`]: bounded, traversal-safe reading of zstd tar or plain tar;
//! - [`verify()`]: the reference verifier's checks, order and reason codes,
//!   then our stricter checks ([`verify::STRICT_REASONS`]), as a [`Report`]
//!   with the reference's human output ([`Report::human`]), a JSON form,
//!   and a [`Verdict`] that says whether a given key attests the bundle
//!   (without one, nothing shows that no event was left out);
//!   [`verify_reader`] gives the same report reading the bundle once, as it
//!   streams, in memory bounded per event rather than by the bundle;
//! - [`write_bundle`]: the same input gives the same bytes; the manifest
//!   is optionally signed;
//! - [`inclusion`]: the `inclusion_proof.json` form (per-event RFC 9162
//!   audit paths to a signed store checkpoint);
//! - [`projection`]: the event projections of the `auditor` and
//!   `counterparty` export profiles.
//!
//! ```
//! use intentproof_bundle::{BundleInput, VerifyOptions, verify, write_bundle};
//! let input = BundleInput {
//!     bundle_id: "bnd_1".into(),
//!     created_at: "2026-05-15T14:30:00Z".into(),
//!     flow_id: "flow_1".into(),
//!     tenant_id: "tnt".into(),
//!     flow: br#"{"flow_id":"flow_1","tenant_id":"tnt"}"#.to_vec(),
//!     events: vec![br#"{"event_id":"evt_1"}"#.to_vec()],
//!     policy: br#"{"policy_id":"p"}"#.to_vec(),
//!     run: br#"{"run_id":"run_1"}"#.to_vec(),
//!     export_profile: "counterparty".into(),
//!     spec_version: "1.0.0".into(),
//!     ..Default::default()
//! };
//! let bytes = write_bundle(&input, None).unwrap();
//! let report = verify(&bytes, &VerifyOptions::default());
//! assert!(report.passed(), "{}", report.human());
//! // Unsigned and checked with no key: consistent, but nobody vouches for it.
//! assert_eq!(report.verdict, intentproof_bundle::Verdict::Unattested);
//! ```
//!
//! What it does not do: fetch keys, trust anchors or checkpoints from
//! anywhere (the caller passes the key it trusts), read a store, or claim more
//! than it checked: without a key a consistent bundle is `Unattested`, never
//! `Pass`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod archive;
pub mod inclusion;
pub mod manifest;
pub mod projection;
pub mod verify;
pub mod write;

pub use archive::{ArchiveError, ReadLimits, read_archive};
pub use verify::{
    Attestation, Bail, EXIT_UNATTESTED, Report, Status, TrustedKey, Verdict, VerifyOptions,
    parse_public_key_bytes, verify, verify_buffered, verify_reader,
};
pub use write::{
    BundleInput, ManifestSigner, WriteError, pack_members, write_bundle, write_file_atomically,
};
