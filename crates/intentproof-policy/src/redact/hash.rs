//! The keyed hash behind the `hash` action.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Prefix of every hashed value: `hmac-sha256:<64 lowercase hex digits>`.
pub const HASH_PREFIX: &str = "hmac-sha256:";

/// Errors loading or creating a [`HashKey`].
#[derive(Debug, thiserror::Error)]
pub enum HashKeyError {
    /// A file system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `"cannot read"`.
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file does not hold exactly 32 bytes.
    #[error("redaction hash key {} must hold exactly 32 bytes, found {len}", path.display())]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// The operating system's random source failed.
    #[error("cannot generate a redaction hash key: {0}")]
    Random(String),
}

/// The 32-byte secret key of the `hash` action (HMAC-SHA256).
///
/// Equal values hash equally under one key, so hashed fields stay joinable
/// across events of one installation; under another key they differ, so
/// hashes cannot be looked up in a precomputed table. The key is never
/// printed: `Debug` shows `HashKey(..)`.
///
/// ```
/// use intentproof_policy::redact::HashKey;
/// let key = HashKey::from_bytes([7; 32]);
/// assert_eq!(format!("{key:?}"), "HashKey(..)");
/// assert_eq!(key.hash("a"), key.hash("a"));
/// assert_ne!(key.hash("a"), HashKey::from_bytes([8; 32]).hash("a"));
/// assert!(key.hash("a").starts_with("hmac-sha256:"));
/// ```
#[derive(Clone)]
pub struct HashKey {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(..)")
    }
}

impl HashKey {
    /// File name of the key inside a data directory.
    pub const FILE_NAME: &'static str = "redaction-hash.key";

    /// A key from known bytes (tests, keys kept elsewhere).
    pub fn from_bytes(bytes: [u8; 32]) -> HashKey {
        #[allow(clippy::expect_used)]
        let mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&bytes).expect("HMAC accepts keys of any length");
        HashKey { mac }
    }

    /// A fresh random key, in memory only.
    pub fn generate() -> Result<HashKey, HashKeyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| HashKeyError::Random(e.to_string()))?;
        Ok(HashKey::from_bytes(bytes))
    }

    /// Where the key of `dir` lives.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(Self::FILE_NAME)
    }

    /// Loads the key stored in `dir`, or creates one: 32 random bytes
    /// written to a temporary file (mode 0600 on Unix), synced, then linked
    /// into place under [`HashKey::FILE_NAME`]. Linking fails rather than
    /// overwrite, so when two processes race, both end up with the key that
    /// won. `dir` is created (mode 0700) if missing.
    pub fn load_or_create(dir: &Path) -> Result<HashKey, HashKeyError> {
        let path = Self::path_in(dir);
        match Self::load(&path) {
            Err(HashKeyError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            other => return other,
        }
        create_dir_private(dir)?;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| HashKeyError::Random(e.to_string()))?;
        let tmp = dir.join(format!(".{}.{}.tmp", Self::FILE_NAME, std::process::id()));
        let _ = fs::remove_file(&tmp);
        let written = write_private(&tmp, &bytes);
        let linked = written.and_then(|()| match fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            // File systems without hard links: rename, which is atomic but
            // would replace a key created in the meantime; check first.
            Err(_) if !path.exists() => fs::rename(&tmp, &path)
                .map(|()| true)
                .map_err(io("cannot create", &path)),
            Err(e) => Err(io("cannot create", &path)(e)),
        });
        let _ = fs::remove_file(&tmp);
        if linked? {
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(HashKey::from_bytes(bytes))
        } else {
            Self::load(&path)
        }
    }

    fn load(path: &Path) -> Result<HashKey, HashKeyError> {
        let data = fs::read(path).map_err(io("cannot read", path))?;
        let bytes: [u8; 32] = data
            .as_slice()
            .try_into()
            .map_err(|_| HashKeyError::Malformed {
                path: path.to_owned(),
                len: data.len(),
            })?;
        Ok(HashKey::from_bytes(bytes))
    }

    /// `hmac-sha256:<hex>` of `value`'s UTF-8 bytes.
    pub fn hash(&self, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(HASH_PREFIX.len() + 64);
        out.push_str(HASH_PREFIX);
        for b in digest {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HashKeyError {
    let path = path.to_owned();
    move |source| HashKeyError::Io {
        action,
        path,
        source,
    }
}

fn create_dir_private(dir: &Path) -> Result<(), HashKeyError> {
    intentproof_core::private_file::create_private_dir(dir)
        .map_err(io("cannot create directory", dir))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), HashKeyError> {
    intentproof_core::private_file::write_new_private_file(path, bytes)
        .map_err(io("cannot write", path))
}
