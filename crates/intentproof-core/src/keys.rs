//! Ed25519 instance keys.
//!
//! Every sealing instance has an id, `"inst_" + ULID`, and a 32-byte
//! Ed25519 seed. Its key id is `"<instance_id>:k1"`.
//!
//! On disk a key lives in `<data dir>/instance_key.json`, mode 0600 on Unix:
//!
//! ```json
//! {"alg":"ed25519","instance_id":"inst_01J...","seed":"<base64 of the 32-byte seed>"}
//! ```
//!
//! [`InstanceKey::create_in`] writes it atomically (temporary file, fsync,
//! then a hard link that fails if the key already exists) and never
//! overwrites an existing key. Public keys are exported as raw base64 (32
//! bytes) or as a PEM `PUBLIC KEY` (X.509 SubjectPublicKeyInfo, RFC 8410).
//!
//! ```
//! use intentproof_core::keys::{InstanceKey, parse_public_key};
//! let key = InstanceKey::from_seed("inst_golden_test", [7u8; 32]);
//! assert_eq!(key.key_id(), "inst_golden_test:k1");
//! let pem = key.public_key_pem();
//! assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
//! assert_eq!(parse_public_key(&pem).unwrap(), key.verifying_key());
//! assert_eq!(parse_public_key(&key.public_key_base64()).unwrap(), key.verifying_key());
//! ```

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

mod strict;

pub use strict::{StrictKey, verify_strict_cached};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::{Value, json};

/// File name of the instance key inside a data directory.
pub const KEY_FILE_NAME: &str = "instance_key.json";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key
/// bytes follow it.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// What went wrong with a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `create_in` found a key already there.
    #[error(
        "an instance key already exists at {0}; IntentProof never overwrites a key \
         (move it away first if you really mean to replace it)"
    )]
    AlreadyExists(PathBuf),
    /// No key in the data directory.
    #[error("no instance key at {0}; create one with `intentproof keys new`")]
    NotFound(PathBuf),
    /// Reading or writing a key file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key file or key text is malformed.
    #[error("{0}")]
    Malformed(String),
    /// The operating system's random source failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> KeyError + 'a {
    move |source| KeyError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// An instance's id and signing key.
///
/// `Debug` prints the id and the public key, never the seed.
#[derive(Clone)]
pub struct InstanceKey {
    instance_id: String,
    signing: SigningKey,
}

impl fmt::Debug for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceKey")
            .field("instance_id", &self.instance_id)
            .field("public_key", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

impl InstanceKey {
    /// A key from a known seed (tests, golden vectors, imported keys).
    pub fn from_seed(instance_id: impl Into<String>, seed: [u8; 32]) -> Self {
        InstanceKey {
            instance_id: instance_id.into(),
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// A fresh key with a new instance id and a random seed (in memory only).
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_seed(new_instance_id()?, seed))
    }

    /// Creates and stores a new key in `data_dir` (created with mode 0700 if
    /// missing). Fails with [`KeyError::AlreadyExists`] if there is one.
    pub fn create_in(data_dir: &Path) -> Result<Self, KeyError> {
        let path = Self::path_in(data_dir);
        if path.exists() {
            return Err(KeyError::AlreadyExists(path));
        }
        create_dir_private(data_dir)?;
        let key = Self::generate()?;
        let text = format!(
            "{}\n",
            json!({
                "alg": "ed25519",
                "instance_id": key.instance_id,
                "seed": B64.encode(key.signing.to_bytes()),
            })
        );
        let tmp = data_dir.join(format!(".{KEY_FILE_NAME}.{}.tmp", key.instance_id));
        let result = write_private(&tmp, text.as_bytes()).and_then(|()| {
            // A hard link fails if the target exists, unlike rename: two
            // concurrent `create_in` calls cannot overwrite each other.
            fs::hard_link(&tmp, &path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    KeyError::AlreadyExists(path.clone())
                } else {
                    io("cannot create", &path)(e)
                }
            })
        });
        let _ = fs::remove_file(&tmp);
        result?;
        if let Ok(dir) = fs::File::open(data_dir) {
            let _ = dir.sync_all();
        }
        Ok(key)
    }

    /// Loads the key stored in `data_dir`.
    pub fn load_from(data_dir: &Path) -> Result<Self, KeyError> {
        let path = Self::path_in(data_dir);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::NotFound(path));
            }
            Err(e) => return Err(io("cannot read", &path)(e)),
        };
        Self::from_key_file_text(&text)
            .map_err(|e| KeyError::Malformed(format!("{}: {e}", path.display())))
    }

    /// Parses the JSON key file format (see the module docs).
    pub fn from_key_file_text(text: &str) -> Result<Self, KeyError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| KeyError::Malformed(format!("key file is not JSON: {e}")))?;
        let field = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| KeyError::Malformed(format!("key file has no string member `{k}`")))
        };
        if field("alg")? != "ed25519" {
            return Err(KeyError::Malformed(
                "key file `alg` must be \"ed25519\"".into(),
            ));
        }
        let seed = decode_32(field("seed")?, "seed")?;
        Ok(Self::from_seed(field("instance_id")?, seed))
    }

    /// Where the key of `data_dir` lives.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join(KEY_FILE_NAME)
    }

    /// The instance id (`inst_...`).
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// `"<instance_id>:k1"`.
    pub fn key_id(&self) -> String {
        key_id_for(&self.instance_id)
    }

    /// The Ed25519 signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key as base64 of its 32 raw bytes.
    pub fn public_key_base64(&self) -> String {
        public_key_to_base64(&self.verifying_key())
    }

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`, SPKI).
    pub fn public_key_pem(&self) -> String {
        public_key_to_pem(&self.verifying_key())
    }
}

/// `"<instance_id>:k1"`, the key id of an instance's first key.
///
/// ```
/// assert_eq!(intentproof_core::keys::key_id_for("inst_x"), "inst_x:k1");
/// ```
pub fn key_id_for(instance_id: &str) -> String {
    format!("{instance_id}:k1")
}

/// A new instance id: `"inst_"` + a ULID (48-bit millisecond time, 80
/// random bits, Crockford base32).
///
/// ```
/// let id = intentproof_core::keys::new_instance_id().unwrap();
/// assert!(id.starts_with("inst_") && id.len() == 5 + 26);
/// ```
pub fn new_instance_id() -> Result<String, KeyError> {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        & ((1 << 48) - 1);
    let mut random = [0u8; 10];
    getrandom::fill(&mut random).map_err(|e| KeyError::Random(e.to_string()))?;
    let mut value = u128::from(millis) << 80;
    for (i, b) in random.iter().enumerate() {
        value |= u128::from(*b) << (72 - 8 * i);
    }
    let mut id = String::with_capacity(31);
    id.push_str("inst_");
    for i in 0..26 {
        let shift = 125 - 5 * i;
        id.push(ALPHABET[((value >> shift) & 31) as usize] as char);
    }
    Ok(id)
}

/// Base64 of the 32 raw public key bytes.
pub fn public_key_to_base64(key: &VerifyingKey) -> String {
    B64.encode(key.as_bytes())
}

/// PEM `PUBLIC KEY` (SubjectPublicKeyInfo) with a trailing newline.
pub fn public_key_to_pem(key: &VerifyingKey) -> String {
    let mut der = Vec::with_capacity(44);
    der.extend_from_slice(&SPKI_PREFIX);
    der.extend_from_slice(key.as_bytes());
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        B64.encode(der)
    )
}

/// Parses a public key given as base64 of 32 raw bytes or as PEM
/// `PUBLIC KEY` (Ed25519 SPKI). Surrounding whitespace is ignored.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let text = text.trim();
    let bytes = if text.starts_with("-----BEGIN") {
        let body = pem_body(text, "PUBLIC KEY")?;
        let der = B64
            .decode(body)
            .map_err(|e| KeyError::Malformed(format!("PEM public key body is not base64: {e}")))?;
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(raw) if raw.len() == 32 => {
                let mut out = [0u8; 32];
                out.copy_from_slice(raw);
                out
            }
            _ => {
                return Err(KeyError::Malformed(
                    "PEM public key is not an Ed25519 SubjectPublicKeyInfo (RFC 8410)".into(),
                ));
            }
        }
    } else {
        decode_32(text, "public key")?
    };
    VerifyingKey::from_bytes(&bytes)
        .map_err(|e| KeyError::Malformed(format!("not a valid Ed25519 public key: {e}")))
}

/// Canonical encodings of the eight points of small order (the 8-torsion
/// subgroup of edwards25519): `0 · T8` to `7 · T8` for a generator `T8`.
/// Together with the key check in [`verify_strict`] they stand in for the
/// decompression and small-order test of `R` that `verify_strict` does
/// (and the bundle verifier's table-based check uses them the same way).
pub const SMALL_ORDER_ENCODINGS: [[u8; 32]; 8] = [
    hex32("0100000000000000000000000000000000000000000000000000000000000000"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex32("0000000000000000000000000000000000000000000000000000000000000000"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
    hex32("0000000000000000000000000000000000000000000000000000000000000080"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
];

const fn hex32(text: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lowercase hex digit"),
        }
    }
    let t = text.as_bytes();
    assert!(t.len() == 64, "not 64 hex digits");
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(t[2 * i]) << 4) | nibble(t[2 * i + 1]);
        i += 1;
    }
    out
}

/// Ed25519 verification that accepts exactly what
/// [`VerifyingKey::verify_strict`] accepts, with one field exponentiation
/// less (about 12 % fewer instructions per `verify_event`).
///
/// `verify_strict` is: `s` canonical, `R` decompresses, `R` not of small
/// order, the key not of small order (weak), and the encoding of
/// `[s]B - [k]A` (`k` = SHA-512(R || A || M)) equal to the bytes of `R`.
/// The plain [`Verifier::verify`](ed25519_dalek::Verifier::verify) of
/// ed25519-dalek 2 does the same `s` check and the same final byte
/// comparison, without the two small-order checks. Once that comparison
/// holds, `R` *is* the canonical encoding of the point `[s]B - [k]A`, so it
/// decompresses (to that point), and that point has small order exactly
/// when `R` is one of the eight canonical encodings of the small-order
/// points (`SMALL_ORDER_ENCODINGS`). So: reject a weak key (cheap: three
/// doublings), reject those eight `R` encodings (a byte comparison), then
/// `verify`. That skips the decompression of `R` (a field exponentiation),
/// and the result is the same for every input, valid or not.
pub fn verify_strict(
    key: &VerifyingKey,
    message: &[u8],
    signature: &ed25519_dalek::Signature,
) -> Result<(), ed25519_dalek::SignatureError> {
    if key.is_weak() || SMALL_ORDER_ENCODINGS.contains(signature.r_bytes()) {
        return Err(ed25519_dalek::SignatureError::new());
    }
    ed25519_dalek::Verifier::verify(key, message, signature)
}

/// Parses a seed file: base64 of 32 raw bytes, surrounding whitespace (the
/// trailing newline) ignored.
///
/// ```
/// let key = intentproof_core::keys::parse_seed("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
/// assert_eq!(key.to_bytes()[31], 31);
/// ```
pub fn parse_seed(text: &str) -> Result<SigningKey, KeyError> {
    Ok(SigningKey::from_bytes(&decode_32(text.trim(), "seed")?))
}

fn decode_32(text: &str, what: &str) -> Result<[u8; 32], KeyError> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|e| KeyError::Malformed(format!("{what} is not base64: {e}")))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        KeyError::Malformed(format!(
            "{what} must be 32 bytes (base64 of the raw key), found {} bytes",
            b.len()
        ))
    })
}

fn pem_body(text: &str, label: &str) -> Result<String, KeyError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| KeyError::Malformed(format!("PEM block is not a `{label}`")))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| KeyError::Malformed(format!("PEM block has no `{end}` line")))?
        + start;
    Ok(text[start..stop].split_whitespace().collect())
}

fn create_dir_private(dir: &Path) -> Result<(), KeyError> {
    crate::private_file::create_private_dir(dir).map_err(io("cannot create directory", dir))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    crate::private_file::write_new_private_file(path, bytes).map_err(io("cannot write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        let key = InstanceKey::create_in(&data).unwrap();
        let loaded = InstanceKey::load_from(&data).unwrap();
        assert_eq!(loaded.instance_id(), key.instance_id());
        assert_eq!(loaded.verifying_key(), key.verifying_key());
        let err = InstanceKey::create_in(&data).unwrap_err();
        assert!(matches!(err, KeyError::AlreadyExists(_)), "{err}");
        assert_eq!(
            InstanceKey::load_from(&data).unwrap().verifying_key(),
            key.verifying_key()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(InstanceKey::path_in(&data))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&data).unwrap().count(), 1);
    }

    #[test]
    fn missing_key_says_how_to_create_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = InstanceKey::load_from(dir.path()).unwrap_err();
        assert!(err.to_string().contains("intentproof keys new"), "{err}");
    }

    #[test]
    fn instance_ids_are_ulids() {
        let a = new_instance_id().unwrap();
        let b = new_instance_id().unwrap();
        assert_ne!(a, b);
        assert!(
            a[5..]
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        assert!(!a.contains(['I', 'L', 'O', 'U']));
    }

    mod strict {
        use super::super::*;
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
        use curve25519_dalek::edwards::CompressedEdwardsY;
        use curve25519_dalek::scalar::Scalar;
        use ed25519_dalek::{Signature, Signer, Verifier};
        use sha2::{Digest, Sha512};

        /// Ours and ed25519-dalek's `verify_strict` agree; returns the verdict.
        fn agree(key: &VerifyingKey, msg: &[u8], sig: &Signature) -> bool {
            let ours = verify_strict(key, msg, sig).is_ok();
            assert_eq!(ours, key.verify_strict(msg, sig).is_ok(), "{sig:?}");
            ours
        }

        fn k(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
            let h: [u8; 64] = Sha512::new()
                .chain_update(r)
                .chain_update(a)
                .chain_update(msg)
                .finalize()
                .into();
            Scalar::from_bytes_mod_order_wide(&h)
        }

        fn sig(r: &[u8; 32], s: &Scalar) -> Signature {
            let mut b = [0u8; 64];
            b[..32].copy_from_slice(r);
            b[32..].copy_from_slice(s.as_bytes());
            Signature::from_bytes(&b)
        }

        #[test]
        fn small_order_table_is_the_eight_torsion_subgroup() {
            let mut table = SMALL_ORDER_ENCODINGS.to_vec();
            let mut torsion: Vec<[u8; 32]> = EIGHT_TORSION.iter().map(|p| p.compress().0).collect();
            table.sort();
            torsion.sort();
            assert_eq!(table, torsion);
        }

        #[test]
        fn valid_and_tampered_signatures() {
            let signer = SigningKey::from_bytes(&[9u8; 32]);
            let vk = signer.verifying_key();
            for msg in [&b""[..], b"x", &[7u8; 32], &[0u8; 1000]] {
                let good = signer.sign(msg);
                assert!(agree(&vk, msg, &good));
                let bytes = good.to_bytes();
                // Every 7th bit: R, s, low and high bits of each (debug
                // builds verify slowly).
                for bit in (0..512).step_by(7) {
                    let mut b = bytes;
                    b[bit / 8] ^= 1 << (bit % 8);
                    assert!(!agree(&vk, msg, &Signature::from_bytes(&b)));
                }
                let mut other = msg.to_vec();
                other.push(1);
                assert!(!agree(&vk, &other, &good));
            }
        }

        #[test]
        fn weak_key_is_refused_even_where_plain_verify_accepts() {
            // A = identity: [s]B - [k]A = B for s = 1, whatever the message.
            let weak = VerifyingKey::from_bytes(&SMALL_ORDER_ENCODINGS[0]).unwrap();
            assert!(weak.is_weak());
            let forged = sig(&B.compress().0, &Scalar::ONE);
            assert!(weak.verify(b"anything", &forged).is_ok());
            assert!(!agree(&weak, b"anything", &forged));
            for enc in SMALL_ORDER_ENCODINGS {
                let weak = VerifyingKey::from_bytes(&enc).unwrap();
                assert!(!agree(&weak, b"m", &forged));
            }
        }

        #[test]
        fn small_order_r_is_refused_even_where_plain_verify_accepts() {
            // R = identity and s = k·a: [s]B - [k]A = identity = R.
            let a = Scalar::from_bytes_mod_order([5u8; 32]);
            let public = (B * a).compress();
            let vk = VerifyingKey::from_bytes(&public.0).unwrap();
            let r = SMALL_ORDER_ENCODINGS[0];
            let s = k(&r, &public.0, b"msg") * a;
            let crafted = sig(&r, &s);
            assert!(vk.verify(b"msg", &crafted).is_ok());
            assert!(!agree(&vk, b"msg", &crafted));
            for r in SMALL_ORDER_ENCODINGS {
                assert!(!agree(
                    &vk,
                    b"msg",
                    &sig(&r, &(k(&r, &public.0, b"msg") * a))
                ));
            }
        }

        #[test]
        fn non_canonical_s_and_r_are_refused() {
            let signer = SigningKey::from_bytes(&[11u8; 32]);
            let vk = signer.verifying_key();
            let good = signer.sign(b"m").to_bytes();
            // s + l: the same scalar, not reduced.
            let l: [u8; 32] = [
                0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
                0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            ];
            let mut s = [0u8; 32];
            let mut carry = 0u16;
            for i in 0..32 {
                let v = u16::from(good[32 + i]) + u16::from(l[i]) + carry;
                s[i] = v as u8;
                carry = v >> 8;
            }
            let mut b = good;
            b[32..].copy_from_slice(&s);
            assert!(!agree(&vk, b"m", &Signature::from_bytes(&b)));
            // Non-canonical encodings of small-order points as R (y >= p,
            // or x = 0 with the sign bit set).
            for r in [
                hex32("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
                hex32("0100000000000000000000000000000000000000000000000000000000000080"),
                hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
            ] {
                assert!(CompressedEdwardsY(r).decompress().is_some());
                let mut b = good;
                b[..32].copy_from_slice(&r);
                assert!(!agree(&vk, b"m", &Signature::from_bytes(&b)));
            }
        }
    }

    #[test]
    fn bad_key_text_is_rejected() {
        assert!(parse_public_key("AAAA").is_err());
        assert!(parse_seed("not base64!").is_err());
        let pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(parse_public_key(pem).is_err());
    }
}
