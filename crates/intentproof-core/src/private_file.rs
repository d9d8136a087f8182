//! Files only their owner may read: keys, tokens. Created with mode 0600
//! (directories 0700) from the first byte, never widened afterwards.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let sub = dir.path().join("keys");
//! intentproof_core::private_file::create_private_dir(&sub).unwrap();
//! intentproof_core::private_file::write_new_private_file(&sub.join("k"), b"secret").unwrap();
//! assert!(intentproof_core::private_file::write_new_private_file(&sub.join("k"), b"x").is_err(), "never overwrites");
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Creates `dir` (and its parents) with mode 0700 where it is missing.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates `path` with mode 0600, writes `bytes` and fsyncs. Fails if the
/// file exists: a key is never silently replaced.
pub fn write_new_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Writes `bytes` to `path` with mode 0600, replacing what was there
/// atomically: a temporary file beside it (created 0600), fsync, rename.
/// A reader sees the old content or the new, never a part.
pub fn replace_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let _ = fs::remove_file(&tmp);
    write_new_private_file(&tmp, bytes)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}
