//! A tiny glob matcher: `*` matches any run of characters (dots included),
//! `?` exactly one character; everything else matches itself.

/// True if `text` matches `pattern` as a whole.
///
/// ```
/// use intentproof_policy::redact::glob_match;
/// assert!(glob_match("mcp.filesystem.*", "mcp.filesystem.read_file"));
/// assert!(glob_match("stripe.*.create", "stripe.refunds.create"));
/// assert!(glob_match("db.quer?", "db.query"));
/// assert!(!glob_match("mcp.filesystem.*", "mcp.fs.read"));
/// ```
pub fn glob_match(pattern: &str, text: &str) -> bool {
    // Actions and keys are ASCII: match their bytes, allocating nothing
    // (guard mode runs every approval rule on every call).
    if pattern.is_ascii() && text.is_ascii() {
        return matches(pattern.as_bytes(), text.as_bytes(), b'*', b'?');
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    matches(&p, &t, '*', '?')
}

/// [`glob_match`] over units (bytes or chars): `star` any run, `one` one unit.
fn matches<T: PartialEq + Copy>(p: &[T], t: &[T], star_unit: T, one: T) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    // Where the last `*` was, and the text position it currently covers up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == one || (p[pi] != star_unit && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == star_unit {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == star_unit)
}

/// A key pattern, already normalized, compiled to the cheapest test.
#[derive(Debug, Clone)]
pub(crate) enum KeyPattern {
    Suffix(String),
    Prefix(String),
    Contains(String),
    Glob(String),
}

impl KeyPattern {
    /// `pattern` is normalized and contains `*` or `?`.
    pub(crate) fn new(pattern: &str) -> KeyPattern {
        let inner = pattern.trim_matches('*');
        let plain = !inner.contains(['*', '?']) && !pattern.contains('?');
        let starts = pattern.starts_with('*');
        let ends = pattern.ends_with('*');
        match (plain, starts, ends) {
            (true, true, true) => KeyPattern::Contains(inner.to_owned()),
            (true, true, false) => KeyPattern::Suffix(inner.to_owned()),
            (true, false, true) => KeyPattern::Prefix(inner.to_owned()),
            _ => KeyPattern::Glob(pattern.to_owned()),
        }
    }

    pub(crate) fn matches(&self, key: &str) -> bool {
        match self {
            KeyPattern::Suffix(s) => key.ends_with(s.as_str()),
            KeyPattern::Prefix(s) => key.starts_with(s.as_str()),
            KeyPattern::Contains(s) => key.contains(s.as_str()),
            KeyPattern::Glob(g) => glob_match(g, key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything.at.all"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("??", "ab"));
        assert!(!glob_match("??", "abc"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn key_patterns() {
        assert!(KeyPattern::new("*apikey").matches("xapikey"));
        assert!(!KeyPattern::new("*apikey").matches("apikeys"));
        assert!(KeyPattern::new("secret*").matches("secretvalue"));
        assert!(KeyPattern::new("*pass*").matches("mypassword"));
        assert!(KeyPattern::new("a?c").matches("abc"));
    }
}
