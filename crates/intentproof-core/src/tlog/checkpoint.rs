//! C2SP `tlog-checkpoint`: the text of a log's signed note.
//!
//! ```text
//! <origin>\n
//! <tree size, decimal, no leading zeros>\n
//! <base64 of the RFC 6962 root hash>\n
//! [<extension line>\n ...]
//! ```
//!
//! The origin names the log (a schema-less URL; the key that signs the
//! checkpoint has the origin as its name). Parsing is strict: a size with a
//! leading zero or a sign, a root that is not base64 of 32 bytes, an empty
//! line, or a missing final newline is refused with the reason.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::merkle::Hash;

/// A parsed checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogCheckpoint {
    /// The log's name.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 6962 root of the first `size` leaves.
    pub root: Hash,
    /// Extension lines (without newlines), rarely used.
    pub extensions: Vec<String>,
}

impl TlogCheckpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: &str, size: u64, root: Hash) -> TlogCheckpoint {
        TlogCheckpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// Parses a note text.
    pub fn parse(text: &str) -> Result<TlogCheckpoint, String> {
        let body = text
            .strip_suffix('\n')
            .ok_or("the checkpoint does not end in a newline")?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err("the checkpoint's origin line is empty".into());
        }
        let size_text = lines.next().ok_or("the checkpoint has no tree size line")?;
        let size = parse_decimal(size_text).ok_or_else(|| {
            format!("tree size {size_text:?} is not a decimal without leading zeros")
        })?;
        let root_text = lines.next().ok_or("the checkpoint has no root hash line")?;
        let root = B64
            .decode(root_text)
            .ok()
            .and_then(|bytes| <Hash>::try_from(bytes).ok())
            .ok_or_else(|| format!("root hash {root_text:?} is not base64 of 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err("the checkpoint has an empty extension line".into());
        }
        Ok(TlogCheckpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

impl fmt::Display for TlogCheckpoint {
    /// The note text, ending in a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )?;
        for line in &self.extensions {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// A decimal `u64` without sign or leading zeros (`0` itself is fine).
pub fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}
