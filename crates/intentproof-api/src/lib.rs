//! What a reader of the IntentProof daemon shares with it: the data
//! directory's layout ([`datadir`]), the daemon's default port, the
//! [`client`] of its HTTP API (used by the CLI's commands and the terminal
//! UI), the [`wire`] types of every body it answers, and the [`shapes`]
//! functions that build those bodies from a store (the daemon's, or a
//! reader's with no daemon).
//!
//! What it does not do: serve HTTP, write the store or hold any of the
//! daemon's state. Nothing here depends on axum, so a reader (the TUI)
//! links no server.

pub mod client;
pub mod datadir;
pub mod shapes;
pub mod wire;

/// The default port: the reference SDKs' local ingest port.
pub const DEFAULT_PORT: u16 = 9787;

/// The export profiles the daemon can produce: `full` (events as stored),
/// `auditor` (no payloads) and `counterparty` (identity, chain, action,
/// status, timing). The schema's fourth, `minimal-claim`, is not produced.
pub const SUPPORTED_PROFILES: [&str; 3] = ["full", "auditor", "counterparty"];

/// The body of every error the daemon answers: `{"error": message,
/// "reason": reason}`, `reason` a stable machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// What went wrong and what to do, for a person.
    pub error: String,
    /// A stable code (`unauthorized`, `bad_query`, `overloaded`, ...).
    pub reason: String,
}

impl ErrorBody {
    /// The body for `reason` and `message`.
    pub fn new(reason: &str, message: impl Into<String>) -> Self {
        ErrorBody {
            error: message.into(),
            reason: reason.to_owned(),
        }
    }
}

/// Whether a presented token is the expected one, in time that does not
/// depend on where they differ (`subtle`'s constant-time comparison; only
/// a length difference returns early, and token lengths are not secret).
pub fn same_token(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same_token("s3cret-token", "s3cret-token"));
        assert!(!same_token("s3cret-tokeN", "s3cret-token"));
        assert!(!same_token("s3cret", "s3cret-token"));
        assert!(!same_token("", "s3cret-token"));
    }

    #[test]
    fn the_error_body_is_error_then_reason() {
        let body = serde_json::to_string(&ErrorBody::new(
            "bad_query",
            "status=\"x\": use ok or error",
        ))
        .unwrap_or_default();
        assert_eq!(
            body,
            r#"{"error":"status=\"x\": use ok or error","reason":"bad_query"}"#
        );
    }
}
