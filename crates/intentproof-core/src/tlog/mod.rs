//! The C2SP transparency-log formats (c2sp.org): how our Merkle log's
//! checkpoints, witness cosignatures and inclusion proofs look to anyone
//! else's tools (Go's `sumdb/note`, transparency-dev witnesses, Sigstore
//! Rekor v2 clients).
//!
//! - [`note`]: `signed-note` (text + `— name base64(keyID||sig)` lines),
//!   Ed25519 (`0x01`) and timestamped cosignature (`0x04`) keys, verifier
//!   key strings;
//! - [`checkpoint`]: `tlog-checkpoint` (origin, size, base64 root);
//! - [`proof`]: `tlog-proof` (`c2sp.org/tlog-proof@v1` inclusion proofs);
//! - [`witness`]: `tlog-witness` `add-checkpoint` requests and the
//!   witness's decision, without HTTP or storage.
//!
//! What it does not do: store anything, talk to the network, or implement
//! tiles (`tlog-tiles`): our log serves proofs from its own store.

pub mod checkpoint;
pub mod note;
pub mod proof;
pub mod witness;
