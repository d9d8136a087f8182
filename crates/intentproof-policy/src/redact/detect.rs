//! Value detectors: secrets and personal data found inside strings.
//!
//! Every detector is a regular expression plus, where the format allows it,
//! a validation step that keeps false positives down (Luhn for card numbers,
//! mod-97 for IBANs, a JSON header with `"alg"` for JWTs, ...). Before any
//! regular expression runs, one pass over the string's bytes
//! ([`candidates`]) works out which detectors could possibly match, so a
//! string without secrets costs one byte scan and no allocation.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

/// A built-in value detector, named in a policy as `match: { detector: <name> }`.
///
/// ```
/// use intentproof_policy::redact::Detector;
/// let hits = Detector::CreditCard.find_all("card 4242 4242 4242 4242, thanks");
/// assert_eq!(hits, vec![5..24]);
/// assert!(Detector::CreditCard.find_all("4242 4242 4242 4241").is_empty(), "Luhn fails");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    /// `email`: `local@domain.tld`.
    Email,
    /// `phone`: E.164 (`+14155552671`, `+44 20 7946 0958`), North American
    /// (`(415) 555-2671`, `415-555-2671`) and trunk-prefixed national
    /// numbers with separators (`020 7946 0958`, `01 23 45 67 89`).
    Phone,
    /// `credit_card`: 13 to 19 digits, optionally grouped by spaces or
    /// dashes, with a known network prefix and a valid Luhn check digit.
    CreditCard,
    /// `iban`: an IBAN, compact or in groups of four, with a valid mod-97
    /// checksum.
    Iban,
    /// `jwt`: three base64url segments whose header decodes to a JSON object
    /// with an `"alg"` member.
    Jwt,
    /// `bearer_token`: `Bearer <token>` (the scheme is part of the match).
    BearerToken,
    /// `aws_access_key_id`: `AKIA...`, `ASIA...`, `ABIA...`, `ACCA...` (20 characters).
    AwsAccessKeyId,
    /// `aws_secret_access_key`: a 40-character secret following an
    /// `aws_secret_access_key` name (`KEY=...`, `"key": "..."`); only the
    /// secret is replaced. Bare secrets are caught by key rules.
    AwsSecretAccessKey,
    /// `gcp_api_key`: `AIza` followed by 35 characters.
    GcpApiKey,
    /// `gcp_service_account`: the `"private_key"` and `"private_key_id"`
    /// members of a service-account JSON document held in a string; only the
    /// member's value is replaced.
    GcpServiceAccount,
    /// `github_token`: `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` and `github_pat_` tokens.
    GithubToken,
    /// `slack_token`: `xoxa-`, `xoxb-`, `xoxp-`, `xoxo-`, `xoxr-`, `xoxs-` tokens.
    SlackToken,
    /// `slack_webhook`: `https://hooks.slack.com/services/...` (and workflows, triggers).
    SlackWebhook,
    /// `stripe_key`: `sk_`, `rk_`, `pk_` live and test keys, and `whsec_` webhook secrets.
    StripeKey,
    /// `private_key`: a PEM `-----BEGIN ... PRIVATE KEY-----` block, up to
    /// its `END` line (or to the end of the string when it was cut).
    PrivateKey,
}

const WB: &str = r"(?-u:\b)";

impl Detector {
    /// Every detector, in a fixed order.
    pub const ALL: [Detector; 15] = [
        Detector::Email,
        Detector::Phone,
        Detector::CreditCard,
        Detector::Iban,
        Detector::Jwt,
        Detector::BearerToken,
        Detector::AwsAccessKeyId,
        Detector::AwsSecretAccessKey,
        Detector::GcpApiKey,
        Detector::GcpServiceAccount,
        Detector::GithubToken,
        Detector::SlackToken,
        Detector::SlackWebhook,
        Detector::StripeKey,
        Detector::PrivateKey,
    ];

    /// The name used in policies, e.g. `"credit_card"`.
    pub fn name(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::CreditCard => "credit_card",
            Detector::Iban => "iban",
            Detector::Jwt => "jwt",
            Detector::BearerToken => "bearer_token",
            Detector::AwsAccessKeyId => "aws_access_key_id",
            Detector::AwsSecretAccessKey => "aws_secret_access_key",
            Detector::GcpApiKey => "gcp_api_key",
            Detector::GcpServiceAccount => "gcp_service_account",
            Detector::GithubToken => "github_token",
            Detector::SlackToken => "slack_token",
            Detector::SlackWebhook => "slack_webhook",
            Detector::StripeKey => "stripe_key",
            Detector::PrivateKey => "private_key",
        }
    }

    /// The detector a policy names, if any.
    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn bit(self) -> u32 {
        1 << self.index()
    }

    /// Byte ranges of every (validated) match in `text`, in order, not
    /// overlapping.
    pub fn find_all(self, text: &str) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        if candidates(text.as_bytes()) & self.bit() != 0 {
            self.find_each(text, &mut |r| out.push(r));
        }
        out
    }

    /// Every match of every detector in `text`, as `(detector, range)`,
    /// sorted by position.
    ///
    /// ```
    /// use intentproof_policy::redact::Detector;
    /// let hits = Detector::scan("mail ada@example.com or call +14155552671");
    /// assert_eq!(hits, vec![(Detector::Email, 5..20), (Detector::Phone, 29..41)]);
    /// ```
    pub fn scan(text: &str) -> Vec<(Detector, Range<usize>)> {
        let mask = candidates(text.as_bytes());
        let mut out = Vec::new();
        for d in Detector::ALL {
            if mask & d.bit() != 0 {
                d.find_each(text, &mut |r| out.push((d, r)));
            }
        }
        out.sort_by_key(|(d, r)| (r.start, r.end, d.index()));
        out
    }

    /// Calls `found` with each validated match, without the prefilter.
    pub(crate) fn find_each(self, text: &str, found: &mut dyn FnMut(Range<usize>)) {
        let re = &REGEXES[self.index()];
        let bytes = text.as_bytes();
        let mut at = 0;
        while at <= text.len() {
            let Some(m) = re.find_at(text, at) else { break };
            match self.validate(text, m.range()) {
                Some(r) => {
                    at = m.end().max(r.end).max(m.start() + 1);
                    found(r);
                }
                None => at = m.start() + 1,
            }
            while at < bytes.len() && !text.is_char_boundary(at) {
                at += 1;
            }
        }
    }

    /// Checks a regex match; returns the range to replace (possibly a
    /// sub-range) or `None` for a false positive.
    fn validate(self, text: &str, m: Range<usize>) -> Option<Range<usize>> {
        let bytes = text.as_bytes();
        let before = m.start.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(m.end).copied();
        match self {
            // Digit groups inside a UUID (an event id, an order id) are
            // not a phone or card number: `…-0491-7660-8027-…` is one.
            Detector::Phone | Detector::CreditCard if in_uuid(bytes, &m) => None,
            Detector::Phone => validate_phone(bytes, m),
            Detector::CreditCard => longest_valid(bytes, m, card_ok),
            Detector::Iban => longest_valid(bytes, m, iban_ok),
            Detector::Jwt => jwt_ok(&text[m.clone()]).then_some(m),
            Detector::BearerToken => {
                let token = text[m.clone()]
                    .split_once([' ', '\t'])
                    .map(|(_, t)| t.trim_start())?;
                let strong = token.len() >= 20
                    || token
                        .bytes()
                        .any(|b| b.is_ascii_digit() || b"-._~+/=".contains(&b));
                strong.then_some(m)
            }
            Detector::AwsSecretAccessKey => {
                if after.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'+') {
                    return None;
                }
                // The secret is the last 40 bytes of the match.
                Some(m.end - 40..m.end)
            }
            Detector::GcpApiKey => {
                let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
                (!after.is_some_and(word) && !before.is_some_and(word)).then_some(m)
            }
            Detector::GcpServiceAccount => {
                // `"private_key...": "<value>"`: replace the value only.
                let s = &text[m.clone()];
                let colon = s.find(':')?;
                let open = s[colon..].find('"')? + colon + 1;
                let r = m.start + open..m.end - 1;
                (!r.is_empty() && !is_redaction_output(&text[r.clone()])).then_some(r)
            }
            _ => Some(m),
        }
    }
}

static REGEXES: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    Detector::ALL
        .iter()
        .map(|d| {
            #[allow(clippy::expect_used)]
            Regex::new(&pattern(*d)).expect("built-in detector patterns compile")
        })
        .collect()
});

fn pattern(d: Detector) -> String {
    match d {
        Detector::Email => {
            r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?-u:\b)".into()
        }
        Detector::Phone => concat!(
            r"\+[1-9][0-9]{0,2}(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,5})){1,6}",
            r"|(?:\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}",
            r"|0[1-9][0-9]{0,3}(?:[ .-]?[0-9]{2,4}){2,4}",
        )
        .into(),
        Detector::CreditCard => format!(r"{WB}[0-9](?:[ -]?[0-9]){{12,18}}"),
        Detector::Iban => format!(r"{WB}[A-Z]{{2}}[0-9]{{2}}(?: ?[A-Z0-9]){{11,30}}"),
        Detector::Jwt => r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*".into(),
        Detector::BearerToken => format!(r"{WB}(?i:bearer)[ \t]+[A-Za-z0-9\-._~+/]{{8,}}=*"),
        Detector::AwsAccessKeyId => format!(r"{WB}(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{{16}}{WB}"),
        Detector::AwsSecretAccessKey => {
            r#"(?i:aws_?secret_?(?:access_?)?key)["']?[ \t]*[:=][ \t]*["']?[A-Za-z0-9/+]{40}"#
                .into()
        }
        Detector::GcpApiKey => r"AIza[0-9A-Za-z_-]{35}".into(),
        Detector::GcpServiceAccount => {
            r#""private_key(?:_id)?"[ \t]*:[ \t]*"(?:[^"\\]|\\.)*""#.into()
        }
        Detector::GithubToken => {
            format!(r"{WB}(?:gh[pousr]_[A-Za-z0-9]{{20,251}}|github_pat_[A-Za-z0-9_]{{22,255}})")
        }
        Detector::SlackToken => format!(r"{WB}xox[abposr]-[A-Za-z0-9-]{{10,250}}"),
        Detector::SlackWebhook => {
            r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+".into()
        }
        Detector::StripeKey => format!(
            r"{WB}(?:(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{{10,247}}|whsec_[A-Za-z0-9+/=]{{20,}})"
        ),
        Detector::PrivateKey => concat!(
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----",
            r"(?:(?s:.)*?-----END[A-Z0-9 ]*PRIVATE KEY-----|(?s:.)*)"
        )
        .into(),
    }
}

/// Bytes that start no literal prefix and are neither digits nor
/// separators: for them [`candidates`] only ends the current digit run.
static PLAIN: [bool; 256] = {
    let mut t = [true; 256];
    let special = b"0123456789 -.@+(\"_abegxhwABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut i = 0;
    while i < special.len() {
        t[special[i] as usize] = false;
        i += 1;
    }
    t
};

/// An ASCII word character, as `(?-u:\b)` sees it.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// One pass over `s`: the bit set of detectors that could match it.
///
/// Deliberately loose (a superset of what the regexes and their validation
/// accept) but cheap: literal prefixes for the token formats, and for the
/// numeric formats the shape of digit runs. A card number needs 13 digits
/// joined by single `' '` or `-`, counted from a digit `2`-`6` (the only
/// network prefixes [`card_ok`] knows) at a word boundary (the regex starts
/// with `\b`, and validation only shortens a match at its end).
pub(crate) fn candidates(s: &[u8]) -> u32 {
    if s.len() < 6 {
        return 0;
    }
    let mut mask = 0u32;
    // Digits of the current card-shaped run, counted from its first digit
    // that could start a card (0: no such digit yet).
    let mut card = 0usize;
    let mut max_card = 0usize;
    // Consecutive digits in the current group.
    let mut group = 0usize;
    // Digits seen since a possible trunk prefix (`0[1-9]` after a non-alphanumeric).
    let mut trunk: Option<usize> = None;
    let mut phone = false;
    let rest = |i: usize| &s[i + 1..];
    let byte = |i: usize| s.get(i).copied().unwrap_or(0);
    let ci = |i: usize, lit: &[u8]| {
        s.len() > i + lit.len() && s[i + 1..i + 1 + lit.len()].eq_ignore_ascii_case(lit)
    };
    for (i, &b) in s.iter().enumerate() {
        if PLAIN[usize::from(b)] {
            // Ends every run; starts no prefix.
            trunk = None;
            card = 0;
            group = 0;
            continue;
        }
        if b.is_ascii_digit() {
            if card > 0
                || (group == 0 && matches!(b, b'2'..=b'6') && (i == 0 || !is_word(s[i - 1])))
            {
                card += 1;
                max_card = max_card.max(card);
            }
            if group == 0
                && b == b'0'
                && matches!(byte(i + 1), b'1'..=b'9')
                && (i == 0 || !s[i - 1].is_ascii_alphanumeric())
                && trunk.is_none()
            {
                trunk = Some(0);
            }
            group += 1;
            if let Some(t) = trunk.as_mut() {
                *t += 1;
                phone |= *t >= 9;
            }
            continue;
        }
        let separator =
            matches!(b, b' ' | b'-' | b'.') && group > 0 && byte(i + 1).is_ascii_digit();
        if separator {
            phone |= group == 3;
        } else {
            trunk = None;
        }
        if !separator || b == b'.' {
            card = 0;
        }
        group = 0;
        match b {
            b'@' => mask |= Detector::Email.bit(),
            b'+' => phone |= matches!(byte(i + 1), b'1'..=b'9'),
            b'(' => phone |= matches!(byte(i + 1), b'2'..=b'9'),
            b'-' if rest(i).starts_with(b"----BEGIN") => {
                mask |= Detector::PrivateKey.bit();
            }
            b'A'..=b'Z' => {
                if byte(i + 1).is_ascii_uppercase()
                    && byte(i + 2).is_ascii_digit()
                    && byte(i + 3).is_ascii_digit()
                {
                    mask |= Detector::Iban.bit();
                }
                let r = rest(i);
                match b {
                    b'A' => {
                        if r.starts_with(b"KIA")
                            || r.starts_with(b"SIA")
                            || r.starts_with(b"BIA")
                            || r.starts_with(b"CCA")
                        {
                            mask |= Detector::AwsAccessKeyId.bit();
                        } else if r.starts_with(b"Iza") {
                            mask |= Detector::GcpApiKey.bit();
                        } else if ci(i, b"ws") {
                            mask |= Detector::AwsSecretAccessKey.bit();
                        }
                    }
                    b'B' if ci(i, b"earer") => mask |= Detector::BearerToken.bit(),
                    _ => {}
                }
            }
            b'a' if ci(i, b"ws") => mask |= Detector::AwsSecretAccessKey.bit(),
            b'b' if ci(i, b"earer") => mask |= Detector::BearerToken.bit(),
            b'e' if rest(i).starts_with(b"yJ") => mask |= Detector::Jwt.bit(),
            b'g' => {
                let r = rest(i);
                if (r.len() > 2 && r[0] == b'h' && b"pousr".contains(&r[1]) && r[2] == b'_')
                    || r.starts_with(b"ithub_pat_")
                {
                    mask |= Detector::GithubToken.bit();
                }
            }
            b'x' if rest(i).starts_with(b"ox") => mask |= Detector::SlackToken.bit(),
            b'h' if rest(i).starts_with(b"ooks.slack.com") => {
                mask |= Detector::SlackWebhook.bit();
            }
            b'_' => {
                let r = rest(i);
                if r.starts_with(b"live_") || r.starts_with(b"test_") {
                    mask |= Detector::StripeKey.bit();
                }
            }
            b'w' if rest(i).starts_with(b"hsec_") => mask |= Detector::StripeKey.bit(),
            b'"' if rest(i).starts_with(b"private_key") => {
                mask |= Detector::GcpServiceAccount.bit();
            }
            _ => {}
        }
    }
    if phone {
        mask |= Detector::Phone.bit();
    }
    if max_card >= 13 {
        mask |= Detector::CreditCard.bit();
    }
    mask
}

/// True for what a redaction action leaves behind (a marker, a hash, a
/// mask), so that a detector matching "a value after a name" does not match
/// its own replacement again.
fn is_redaction_output(s: &str) -> bool {
    let marker = s.starts_with('[') && s.ends_with(']') && !s.contains(char::is_whitespace);
    let hash = s
        .strip_prefix(super::HASH_PREFIX)
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let masked = s.starts_with('*') && s.trim_start_matches('*').len() <= 16;
    marker || hash || masked
}

fn alnum(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric())
}

/// Whether `m` lies inside a UUID: the run of hex digits and dashes around
/// it has the 8-4-4-4-12 shape.
fn in_uuid(bytes: &[u8], m: &Range<usize>) -> bool {
    let hexish = |b: &u8| b.is_ascii_hexdigit() || *b == b'-';
    let start = bytes[..m.start]
        .iter()
        .rposition(|b| !hexish(b))
        .map_or(0, |i| i + 1);
    let end = bytes[m.end..]
        .iter()
        .position(|b| !hexish(b))
        .map_or(bytes.len(), |i| m.end + i);
    let token = &bytes[start..end];
    token.len() == 36
        && token.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn validate_phone(bytes: &[u8], m: Range<usize>) -> Option<Range<usize>> {
    let before = m.start.checked_sub(1).map(|i| bytes[i]);
    let after = bytes.get(m.end).copied();
    if alnum(before) || matches!(before, Some(b'+' | b'_')) || alnum(after) || after == Some(b'_') {
        return None;
    }
    let s = &bytes[m.clone()];
    let digits = s.iter().filter(|b| b.is_ascii_digit()).count();
    let ok = match s.first() {
        Some(b'+') => (8..=15).contains(&digits),
        Some(b'0') => (9..=12).contains(&digits) && s.iter().any(|b| b" .-".contains(b)),
        _ => digits == 10,
    };
    ok.then_some(m)
}

/// Tries `m` and then shorter prefixes of it that end at a group boundary
/// (before a space or dash), longest first; `check` sees the alphanumeric
/// characters of the candidate.
fn longest_valid(
    bytes: &[u8],
    m: Range<usize>,
    check: impl Fn(&[u8]) -> bool,
) -> Option<Range<usize>> {
    let mut chars: Vec<u8> = Vec::with_capacity(40);
    let mut ends: Vec<(usize, usize)> = Vec::with_capacity(8);
    for i in m.clone() {
        let b = bytes[i];
        if b.is_ascii_alphanumeric() {
            chars.push(b);
        } else {
            ends.push((i, chars.len()));
        }
    }
    ends.push((m.end, chars.len()));
    for &(end, n) in ends.iter().rev() {
        let after = bytes.get(end).copied();
        if alnum(after) {
            continue;
        }
        if check(&chars[..n]) {
            return Some(m.start..end);
        }
    }
    None
}

fn card_ok(digits: &[u8]) -> bool {
    let n = digits.len();
    if !(13..=19).contains(&n) {
        return false;
    }
    let prefix = |k: usize| {
        digits[..k]
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let network = match digits[0] {
        b'4' => matches!(n, 13 | 16 | 19),
        b'5' => true,
        b'2' => n == 16 && (2221..=2720).contains(&prefix(4)),
        b'3' => match prefix(2) {
            34 | 37 => n == 15,
            30 | 36 | 38 | 39 => n >= 14,
            35 => n >= 16,
            _ => false,
        },
        b'6' => true,
        _ => false,
    };
    network && luhn(digits)
}

/// The Luhn check over ASCII digits.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn iban_ok(chars: &[u8]) -> bool {
    if !(15..=34).contains(&chars.len()) {
        return false;
    }
    let mut rem = 0u32;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn jwt_ok(token: &str) -> bool {
    let Some(header) = token.split('.').next() else {
        return false;
    };
    let Some(json) = base64url_decode(header) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&json)
        .ok()
        .and_then(|v| v.get("alg").map(serde_json::Value::is_string))
        .unwrap_or(false)
}

fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_compile() {
        assert_eq!(REGEXES.len(), Detector::ALL.len());
        for (i, d) in Detector::ALL.iter().enumerate() {
            assert_eq!(d.index(), i);
        }
    }

    #[test]
    fn cards_need_luhn_and_a_network() {
        assert!(card_ok(b"4242424242424242"));
        assert!(card_ok(b"378282246310005"));
        assert!(card_ok(b"5555555555554444"));
        assert!(!card_ok(b"4242424242424241"));
        assert!(!card_ok(b"1700000000005"), "epoch millis are not cards");
    }

    #[test]
    fn ibans_need_mod97() {
        assert!(iban_ok(b"DE89370400440532013000"));
        assert!(iban_ok(b"GB82WEST12345698765432"));
        assert!(!iban_ok(b"DE89370400440532013001"));
        let hits = Detector::Iban.find_all("IBAN DE89 3704 0044 0532 0130 00 EUR");
        assert_eq!(hits, vec![5..32]);
    }

    /// Every detector match, found without the prefilter, is among the
    /// prefilter's candidates.
    fn assert_prefilter_superset(text: &str) {
        let mask = candidates(text.as_bytes());
        for d in Detector::ALL {
            let mut hits = Vec::new();
            d.find_each(text, &mut |r| hits.push(r));
            assert!(
                hits.is_empty() || mask & d.bit() != 0,
                "{d:?} matches {hits:?} in {text:?} but the prefilter rules it out"
            );
        }
    }

    #[test]
    fn card_prefilter_needs_a_network_digit_at_a_word_boundary() {
        for text in [
            "card 4242 4242 4242 4242",
            "4242-4242-4242-4242",
            "1.4242 4242 4242 4242",
            "0000 5555555555554444",
            "amex 378282246310005!",
            "é4242424242424242",
        ] {
            assert_ne!(
                candidates(text.as_bytes()) & Detector::CreditCard.bit(),
                0,
                "{text}"
            );
            assert_prefilter_superset(text);
        }
        for text in [
            "0190b6f2-0005-7000-8000-000000009c4f",
            "x4242424242424242",
            "_4242424242424242",
            "4242.4242.4242.4242",
            "7000 8000 9000 1000 0000",
            "1700000000005",
            "4242 4242  4242 4242",
        ] {
            assert_eq!(
                candidates(text.as_bytes()) & Detector::CreditCard.bit(),
                0,
                "{text}"
            );
            assert_prefilter_superset(text);
        }
    }

    proptest::proptest! {
        #[test]
        fn prefilter_never_hides_a_match(
            text in "[0-9 .\\-+()@_a-zA-Z\"é]{0,40}",
            card in proptest::option::of("[2-6][0-9]{12,18}"),
            at in 0usize..40,
        ) {
            let mut text = text;
            if let Some(card) = card {
                let mut at = at.min(text.len());
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.insert_str(at, &card);
            }
            assert_prefilter_superset(&text);
        }
    }

    #[test]
    fn card_numbers_inside_a_uuid_are_not_cards() {
        // 4242-4242-4242-4242 passes Luhn; inside a UUID it is an id.
        assert_eq!(
            Detector::CreditCard.find_all("4242 4242 4242 4242"),
            vec![0..19]
        );
        assert!(
            Detector::CreditCard
                .find_all("order 01a2510f-4242-4242-4242-424242424242 done")
                .is_empty()
        );
        assert!(
            Detector::Phone
                .find_all("call 415-555-2671 about 01a2510f-0491-7660-8027-b8f13b25e272")
                .len()
                == 1
        );
    }

    #[test]
    fn phones_and_not_phones() {
        for p in [
            "+14155552671",
            "+1 (415) 555-2671",
            "+44 20 7946 0958",
            "(415) 555-2671",
            "415-555-2671",
            "415.555.2671",
            "020 7946 0958",
            "01 23 45 67 89",
            "07700 900123",
        ] {
            assert_eq!(Detector::Phone.find_all(p), vec![0..p.len()], "{p}");
        }
        for not in [
            "2026-01-01T00:00:00.000Z",
            "0190b6f2-0000-7000-8000-000000000000",
            // A real event id whose middle groups read as a national number
            // (it failed CI once as `…-hmac-sha256:…-…`).
            "01a2510f-0491-7660-8027-b8f13b25e272",
            "version 1.2.3",
            "id 4155552671",
            "01.02.2024",
            "192.168.100.200",
        ] {
            assert!(Detector::Phone.find_all(not).is_empty(), "{not}");
        }
    }
}
