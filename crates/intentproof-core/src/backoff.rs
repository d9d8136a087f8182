//! The one retry schedule of every loop that retries over the network:
//! the gateway's spool delivery, the daemon's exporter pumps and the
//! library's HTTP exporter.
//!
//! Exponential with equal jitter: each wait is half the current step plus
//! a random part of the other half, and the step doubles up to a maximum.
//! The jitter keeps many gateways that lost the same daemon (or many
//! exporters that lost the same collector) from retrying in lockstep when
//! it comes back. A server's `Retry-After` ([`parse_retry_after`]) is
//! honoured when it asks for longer than the schedule would wait, up to
//! [`MAX_RETRY_AFTER`].
//!
//! What it does not do: sleep, count attempts or decide whether to retry;
//! the caller does, with its own runtime and its own limits.

use std::time::{Duration, SystemTime};

/// The longest `Retry-After` honoured: a server asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// A retry schedule: [`Backoff::next_wait`] after each failure,
/// [`Backoff::reset`] after a success.
///
/// ```
/// use std::time::Duration;
/// use intentproof_core::backoff::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
/// let first = backoff.next_wait(None);
/// assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
/// // A server asking for 5 s gets 5 s.
/// assert_eq!(backoff.next_wait(Some(Duration::from_secs(5))), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Steps from `first`, doubling, up to `max` (at least `first`).
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max: max.max(first),
            step: first,
        }
    }

    /// How long to wait before the next attempt: the current step with
    /// equal jitter, or `retry_after` (at most [`MAX_RETRY_AFTER`]) when
    /// that is longer. The step then doubles, up to the maximum.
    pub fn next_wait(&mut self, retry_after: Option<Duration>) -> Duration {
        let step = self.step;
        self.step = step.saturating_mul(2).min(self.max);
        let half = step / 2;
        let jittered = half + jitter_below(step - half);
        match retry_after {
            Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }

    /// After a success: the next failure waits about the first step again.
    pub fn reset(&mut self) {
        self.step = self.first;
    }
}

/// A duration in `[0, bound]`, uniformly at random (nanosecond grain).
fn jitter_below(bound: Duration) -> Duration {
    let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    let mut random = [0u8; 8];
    // Without randomness the wait is the whole step: never shorter.
    if getrandom::fill(&mut random).is_err() {
        return bound;
    }
    Duration::from_nanos(u64::from_le_bytes(random) % nanos.saturating_add(1))
}

/// A `Retry-After` header's value (RFC 9110: delay-seconds or an
/// HTTP-date) as a wait from `now`; `None` when it is neither. A date in
/// the past is a wait of zero.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use intentproof_core::backoff::parse_retry_after;
///
/// // 2015-10-21 07:28:00 UTC
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(
///     parse_retry_after("Wed, 21 Oct 2015 07:48:00 GMT", now),
///     Some(Duration::from_secs(1_200))
/// );
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits that overflow u64 are a wait longer than anyone honours.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A response's `Retry-After` header value, if any, as a wait from now
/// ([`parse_retry_after`]); what the retry loops pass to
/// [`Backoff::next_wait`].
pub fn retry_after_header(value: Option<&[u8]>) -> Option<Duration> {
    parse_retry_after(std::str::from_utf8(value?).ok()?, SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_with_jitter_up_to_the_maximum_and_start_over_after_reset() {
        let (first, max) = (Duration::from_millis(100), Duration::from_millis(800));
        let mut backoff = Backoff::new(first, max);
        for step in [100, 200, 400, 800, 800, 800] {
            let step = Duration::from_millis(step);
            let wait = backoff.next_wait(None);
            assert!(
                wait >= step / 2 && wait <= step,
                "{wait:?} for step {step:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_wait(None) <= first);
    }

    #[test]
    fn the_jitter_spreads_the_waits() {
        let waits: std::collections::BTreeSet<Duration> = (0..32)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_wait(None))
            .collect();
        // 32 draws from half a second at nanosecond grain: all distinct in
        // practice; a constant wait would give one.
        assert!(waits.len() > 16, "{waits:?}");
    }

    #[test]
    fn retry_after_is_honoured_when_longer_and_capped() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        assert!(backoff.next_wait(Some(Duration::from_millis(10))) <= Duration::from_secs(1));
        assert_eq!(
            backoff.next_wait(Some(Duration::from_secs(3600))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn retry_after_values() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        // A date already past: no wait.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-1", "1.5", "tomorrow", "Wed, 21 Oct 2015"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        assert_eq!(retry_after_header(Some(b"7")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after_header(Some(b"\xff")), None);
        assert_eq!(retry_after_header(None), None);
    }
}
