//! C2SP `signed-note`: a UTF-8 text ending in a newline, a blank line,
//! then one signature line per signer:
//!
//! ```text
//! <text ...>\n
//! \n
//! — <key name> <base64(key ID (4 bytes, big-endian) || signature)>\n
//! ```
//!
//! The key ID is the first 4 bytes of `SHA-256(name || 0x0A || type ||
//! public key)`. Two key types are implemented, both Ed25519:
//!
//! - [`KeyType::Ed25519`] (`0x01`): the signature is over the text's bytes.
//!   A log signs its checkpoints with it.
//! - [`KeyType::Cosignature`] (`0x04`, `tlog-cosignature`): a witness signs
//!   `cosignature/v1\ntime <unix seconds>\n` followed by the checkpoint
//!   text; the line carries `key ID || timestamp (8 bytes, big-endian) ||
//!   signature` (76 bytes).
//!
//! A verifier key is written `<name>+<key ID, 8 hex digits>+<base64(type ||
//! public key)>` (the form of Go's `golang.org/x/mod/sumdb/note`).
//!
//! Parsing follows the reference's rules: no ASCII control character but
//! newline, valid UTF-8, the signature block after the last blank line, at
//! most 100 signature lines; repeated lines are dropped. A signature line by
//! a key the caller does not know is kept and ignored; one by a known key
//! that does not verify is an error (never skipped).
//!
//! ```
//! use intentproof_core::tlog::note::{KeyType, Note, NoteSigner};
//! let signer = NoteSigner::new("example.com/log", KeyType::Ed25519, [3u8; 32]);
//! let mut note = Note::new("example.com/log\n1\nAAAA\n").unwrap();
//! note.push(signer.sign(note.text(), 0).unwrap());
//! let parsed = Note::parse(&note.to_string()).unwrap();
//! assert_eq!(parsed, note);
//! let verifier = signer.verifier();
//! assert!(parsed.verify(&verifier).unwrap().is_some());
//! // The verifier key round-trips through its text form.
//! assert_eq!(verifier.to_string().parse::<intentproof_core::tlog::note::NoteVerifier>().unwrap(), verifier);
//! ```

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The prefix of a signature line: U+2014 EM DASH and a space.
pub const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// At most this many signature lines are read (the reference's bound).
pub const MAX_SIGNATURES: usize = 100;
/// The first line of the message a cosignature signs.
pub const COSIGNATURE_HEADER: &str = "cosignature/v1";

/// Why a note, a key or a signature is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note does not have the signed-note form.
    #[error("malformed signed note: {0}")]
    Malformed(String),
    /// A verifier or signer key string is not `name+hash+base64`.
    #[error("malformed note key {key:?}: {reason}")]
    MalformedKey {
        /// The key text (a verifier key: public).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A signature line by a known key does not verify.
    #[error("the signature by {name} (key ID {id:08x}) does not verify")]
    BadSignature {
        /// The key name.
        name: String,
        /// The key ID.
        id: u32,
    },
}

/// The key types this module signs and verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `0x01`: Ed25519 over the note text.
    Ed25519,
    /// `0x04`: a timestamped Ed25519 cosignature (`tlog-cosignature`).
    Cosignature,
}

impl KeyType {
    /// The type byte of the key ID and the verifier key.
    pub fn byte(self) -> u8 {
        match self {
            KeyType::Ed25519 => 0x01,
            KeyType::Cosignature => 0x04,
        }
    }

    fn from_byte(byte: u8) -> Option<KeyType> {
        match byte {
            0x01 => Some(KeyType::Ed25519),
            0x04 => Some(KeyType::Cosignature),
            _ => None,
        }
    }

    /// Bytes of a signature line's payload after the key ID.
    fn payload_len(self) -> usize {
        match self {
            KeyType::Ed25519 => 64,
            KeyType::Cosignature => 8 + 64,
        }
    }
}

/// The key ID of `name` and `type || public key`.
pub fn key_id(name: &str, key_type: KeyType, key: &VerifyingKey) -> u32 {
    let mut hash = Sha256::new();
    hash.update(name.as_bytes());
    hash.update([b'\n', key_type.byte()]);
    hash.update(key.as_bytes());
    let digest = hash.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// A key name is non-empty, has no white space (Unicode) and no `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The message a cosignature at `time` signs for checkpoint `text`.
pub fn cosigned_message(time: u64, text: &str) -> Vec<u8> {
    format!("{COSIGNATURE_HEADER}\ntime {time}\n{text}").into_bytes()
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key ID.
    pub key_id: u32,
    /// The bytes after the key ID (a signature, or a timestamp and one).
    pub payload: Vec<u8>,
}

impl NoteSignature {
    /// Parses one line without its trailing newline.
    pub fn parse_line(line: &str) -> Result<NoteSignature, NoteError> {
        let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| {
            NoteError::Malformed(format!(
                "signature line {line:?} does not start with \"\u{2014} \""
            ))
        })?;
        let (name, encoded) = rest.split_once(' ').unwrap_or((rest, ""));
        if !is_valid_key_name(name) {
            return Err(NoteError::Malformed(format!(
                "signature line {line:?}: key name {name:?} is empty or has a space or '+'"
            )));
        }
        let bytes = B64.decode(encoded).map_err(|_| {
            NoteError::Malformed(format!(
                "signature line {line:?}: the signature is not base64"
            ))
        })?;
        if bytes.len() < 5 {
            return Err(NoteError::Malformed(format!(
                "signature line {line:?}: {} bytes, fewer than a key ID and a signature",
                bytes.len()
            )));
        }
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            payload: bytes[4..].to_vec(),
        })
    }

    /// For a cosignature: its timestamp (unix seconds), if the payload has
    /// a cosignature's length.
    pub fn cosignature_time(&self) -> Option<u64> {
        let time: [u8; 8] = self.payload.get(..8)?.try_into().ok()?;
        (self.payload.len() == KeyType::Cosignature.payload_len()).then(|| u64::from_be_bytes(time))
    }
}

impl fmt::Display for NoteSignature {
    /// The line without its trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = self.key_id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.payload);
        write!(f, "{SIGNATURE_PREFIX}{} {}", self.name, B64.encode(bytes))
    }
}

/// A signed note: its text and signature lines, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

fn check_text_chars(text: &str) -> Result<(), NoteError> {
    match text
        .chars()
        .find(|&c| (c < ' ' && c != '\n') || c == '\u{7f}')
    {
        Some(c) => Err(NoteError::Malformed(format!(
            "control character {:?} (only newline is allowed)",
            c
        ))),
        None => Ok(()),
    }
}

impl Note {
    /// An unsigned note of `text`, which must end in a newline.
    pub fn new(text: impl Into<String>) -> Result<Note, NoteError> {
        let text = text.into();
        check_text_chars(&text)?;
        if !text.ends_with('\n') {
            return Err(NoteError::Malformed(
                "the text does not end in a newline".into(),
            ));
        }
        Ok(Note {
            text,
            signatures: Vec::new(),
        })
    }

    /// Parses a whole note: text, blank line, signature lines.
    pub fn parse(message: &str) -> Result<Note, NoteError> {
        check_text_chars(message)?;
        let split = message
            .rfind("\n\n")
            .ok_or_else(|| NoteError::Malformed("no blank line before the signatures".into()))?;
        let (text, block) = (&message[..=split], &message[split + 2..]);
        if block.is_empty() || !block.ends_with('\n') {
            return Err(NoteError::Malformed(
                "no signature lines, or the last does not end in a newline".into(),
            ));
        }
        let mut note = Note::new(text)?;
        for (count, line) in block[..block.len() - 1].split('\n').enumerate() {
            if count >= MAX_SIGNATURES {
                return Err(NoteError::Malformed(format!(
                    "more than {MAX_SIGNATURES} signature lines"
                )));
            }
            note.push(NoteSignature::parse_line(line)?);
        }
        Ok(note)
    }

    /// The signed text (ends in a newline).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds a signature line unless the same line is already there.
    pub fn push(&mut self, signature: NoteSignature) {
        if !self.signatures.contains(&signature) {
            self.signatures.push(signature);
        }
    }

    /// Checks the signature by `verifier`: `Ok(None)` when the note has no
    /// line by that key, `Ok(Some(line))` when one verifies, an error when
    /// a line by that key does not.
    pub fn verify(&self, verifier: &NoteVerifier) -> Result<Option<&NoteSignature>, NoteError> {
        let mut found = None;
        for signature in &self.signatures {
            if signature.name != verifier.name || signature.key_id != verifier.id {
                continue;
            }
            if !verifier.verify_line(&self.text, signature) {
                return Err(NoteError::BadSignature {
                    name: signature.name.clone(),
                    id: signature.key_id,
                });
            }
            found.get_or_insert(signature);
        }
        Ok(found)
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.text)?;
        for signature in &self.signatures {
            writeln!(f, "{signature}")?;
        }
        Ok(())
    }
}

/// A public key that checks signature lines: name, type and Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_type: KeyType,
    key: VerifyingKey,
    id: u32,
}

impl NoteVerifier {
    /// A verifier for `key` under `name`.
    pub fn new(
        name: &str,
        key_type: KeyType,
        key: VerifyingKey,
    ) -> Result<NoteVerifier, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::MalformedKey {
                key: name.to_owned(),
                reason: "the name is empty or has a space or '+'".into(),
            });
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            key_type,
            id: key_id(name, key_type, &key),
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The key ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The Ed25519 public key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Whether `line` is a valid signature of `text` by this key (name and
    /// ID are the caller's to match). A cosignature covers the checkpoint
    /// text with the line's timestamp.
    pub fn verify_line(&self, text: &str, line: &NoteSignature) -> bool {
        if line.payload.len() != self.key_type.payload_len() {
            return false;
        }
        let (message, sig) = match self.key_type {
            KeyType::Ed25519 => (text.as_bytes().to_vec(), &line.payload[..]),
            KeyType::Cosignature => match line.cosignature_time() {
                Some(time) => (cosigned_message(time, text), &line.payload[8..]),
                None => return false,
            },
        };
        let Ok(sig) = <[u8; 64]>::try_from(sig) else {
            return false;
        };
        crate::keys::verify_strict(&self.key, &message, &Signature::from_bytes(&sig)).is_ok()
    }
}

impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = vec![self.key_type.byte()];
        bytes.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(bytes))
    }
}

impl FromStr for NoteVerifier {
    type Err = NoteError;

    /// Parses `name+hash+base64(type || key)`, checking the hash.
    fn from_str(text: &str) -> Result<NoteVerifier, NoteError> {
        let bad = |reason: &str| NoteError::MalformedKey {
            key: text.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(hash), Some(encoded)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected <name>+<8 hex digits>+<base64 key>"));
        };
        if hash.len() != 8 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the key hash is not 8 hex digits"));
        }
        let id = u32::from_str_radix(hash, 16).map_err(|_| bad("the key hash is not hex"))?;
        let bytes = B64
            .decode(encoded)
            .map_err(|_| bad("the key is not base64"))?;
        let key_type = bytes
            .first()
            .and_then(|&b| KeyType::from_byte(b))
            .ok_or_else(|| bad("the key type is not 0x01 (Ed25519) or 0x04 (cosignature)"))?;
        let key: [u8; 32] = bytes[1..]
            .try_into()
            .map_err(|_| bad("the Ed25519 key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("not an Ed25519 point"))?;
        let verifier = NoteVerifier::new(name, key_type, key)?;
        if verifier.id != id {
            return Err(bad(&format!(
                "the key hash {hash} does not match the name and key ({:08x})",
                verifier.id
            )));
        }
        Ok(verifier)
    }
}

/// A private key that writes signature lines.
pub struct NoteSigner {
    name: String,
    key_type: KeyType,
    key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        write!(f, "NoteSigner({})", self.verifier())
    }
}

impl NoteSigner {
    /// A signer from a 32-byte Ed25519 seed. The name must be valid
    /// ([`is_valid_key_name`]); [`NoteSigner::sign`] refuses otherwise.
    pub fn new(name: &str, key_type: KeyType, seed: [u8; 32]) -> NoteSigner {
        NoteSigner::from_key(name, key_type, SigningKey::from_bytes(&seed))
    }

    /// A signer from an Ed25519 key.
    pub fn from_key(name: &str, key_type: KeyType, key: SigningKey) -> NoteSigner {
        NoteSigner {
            name: name.to_owned(),
            key_type,
            key,
        }
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_type: self.key_type,
            id: key_id(&self.name, self.key_type, &self.key.verifying_key()),
            key: self.key.verifying_key(),
        }
    }

    /// Signs `text` (a cosignature at `time`, unix seconds; `time` is not
    /// used by an Ed25519 note key).
    pub fn sign(&self, text: &str, time: u64) -> Result<NoteSignature, NoteError> {
        let verifier = NoteVerifier::new(&self.name, self.key_type, self.key.verifying_key())?;
        Note::new(text)?;
        let payload = match self.key_type {
            KeyType::Ed25519 => self.key.sign(text.as_bytes()).to_bytes().to_vec(),
            KeyType::Cosignature => {
                let mut payload = time.to_be_bytes().to_vec();
                let sig = self.key.sign(&cosigned_message(time, text));
                payload.extend_from_slice(&sig.to_bytes());
                payload
            }
        };
        Ok(NoteSignature {
            name: self.name.clone(),
            key_id: verifier.id,
            payload,
        })
    }
}
