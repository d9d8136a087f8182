//! Event timestamps: RFC 3339, UTC, millisecond precision, `Z` suffix.

use std::time::SystemTime;

/// Formats a point in time the way every IntentProof event spells it:
/// RFC 3339 in UTC with exactly three fractional digits.
///
/// Times before the Unix epoch are clamped to the epoch: events are never
/// dated before 1970.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_millis(1_778_509_937_421);
/// assert_eq!(intentproof_core::format_rfc3339_millis(t), "2026-05-11T14:32:17.421Z");
/// ```
pub fn format_rfc3339_millis(at: SystemTime) -> String {
    let at = at.max(SystemTime::UNIX_EPOCH);
    humantime::format_rfc3339_millis(at).to_string()
}

/// The current time, formatted by [`format_rfc3339_millis`].
///
/// ```
/// let now = intentproof_core::now_rfc3339_millis();
/// assert_eq!(now.len(), "2026-05-11T14:32:17.421Z".len());
/// assert!(now.ends_with('Z'));
/// ```
pub fn now_rfc3339_millis() -> String {
    format_rfc3339_millis(SystemTime::now())
}

/// The point in time an RFC 3339 timestamp names (what
/// [`format_rfc3339_millis`] writes, and other offsets and precisions);
/// `None` when the text is not one.
///
/// ```
/// let t = intentproof_core::parse_rfc3339("2026-05-11T14:32:17.421Z").unwrap();
/// assert_eq!(intentproof_core::format_rfc3339_millis(t), "2026-05-11T14:32:17.421Z");
/// ```
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}
