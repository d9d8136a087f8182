//! RFC 3339 timestamps and ISO 8601 durations, in nanoseconds.
//!
//! Small hand-written parsers: the evaluator needs differences between
//! timestamps and a comparison with a duration, nothing more.

/// Nanoseconds since 1970-01-01T00:00:00Z of an RFC 3339 date-time
/// (`2026-05-16T00:00:01Z`, `2026-05-16T00:00:01.250+02:00`); `None` when
/// the text is not one.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        let mut v = 0i64;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(d - b'0');
        }
        Some(v)
    };
    let year = num(0, 4)?;
    let month = num(5, 2)?;
    let day = num(8, 2)?;
    let hour = num(11, 2)?;
    let minute = num(14, 2)?;
    let second = num(17, 2)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        let mut scale: i128 = 100_000_000;
        while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            nanos += i128::from(d - b'0') * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_secs: i64 = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let h = num(i + 1, 2)?;
            let m = num(i + 4, 2)?;
            if h > 23 || m > 59 {
                return None;
            }
            let s = h * 3600 + m * 60;
            if *sign == b'+' { s } else { -s }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Nanoseconds of an ISO 8601 duration as the policy schema allows it
/// (`P1D`, `PT15M`, `PT0.5S`, `P1Y2M3W4DT5H6M7.5S`); `None` when the text is
/// not one. A year counts 365 days and a month 30 days.
pub(crate) fn parse_iso8601_duration(text: &str) -> Option<i128> {
    const SEC: i128 = 1_000_000_000;
    const DAY: i128 = 86_400 * SEC;
    let rest = text.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    if date.is_empty() && time.is_none_or(str::is_empty) {
        return None;
    }
    let mut total: i128 = 0;
    let mut parts = 0;
    let mut parse_part = |s: &str, units: &[(char, i128)], allow_fraction_last: bool| {
        let mut next_unit = 0;
        let mut number = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let pos = units[next_unit..].iter().position(|(u, _)| *u == c)? + next_unit;
            next_unit = pos + 1;
            let scale = units[pos].1;
            let value = if number.contains('.') {
                if !(allow_fraction_last && pos == units.len() - 1) {
                    return None;
                }
                let (int, frac) = number.split_once('.')?;
                if int.is_empty() || frac.is_empty() || frac.len() > 9 {
                    return None;
                }
                let int: i128 = int.parse().ok()?;
                let frac_nanos: i128 = format!("{frac:0<9}").parse().ok()?;
                int.checked_mul(scale)?.checked_add(frac_nanos)?
            } else {
                if number.is_empty() || number.len() > 18 {
                    return None;
                }
                number.parse::<i128>().ok()?.checked_mul(scale)?
            };
            total = total.checked_add(value)?;
            parts += 1;
            number.clear();
        }
        if number.is_empty() { Some(()) } else { None }
    };
    parse_part(
        date,
        &[
            ('Y', 365 * DAY),
            ('M', 30 * DAY),
            ('W', 7 * DAY),
            ('D', DAY),
        ],
        false,
    )?;
    if let Some(time) = time {
        if time.is_empty() {
            return None;
        }
        parse_part(
            time,
            &[('H', 3600 * SEC), ('M', 60 * SEC), ('S', SEC)],
            true,
        )?;
    }
    if parts == 0 {
        return None;
    }
    Some(total)
}

/// `1h 2m 3.5s` style rendering for human summaries.
pub(crate) fn human_duration(nanos: i128) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let total_ms = n / 1_000_000;
    let h = total_ms / 3_600_000;
    let m = (total_ms / 60_000) % 60;
    let s = (total_ms / 1000) % 60;
    let ms = total_ms % 1000;
    let mut out = String::from(sign);
    if h > 0 {
        out.push_str(&format!("{h}h "));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m "));
    }
    if ms > 0 {
        out.push_str(&format!("{s}.{ms:03}s"));
    } else {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(
            parse_rfc3339("1970-01-01T02:00:00+02:00"),
            parse_rfc3339("1970-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2026-05-16T00:05:01Z")
                .map(|t| t - parse_rfc3339("2026-05-16T00:00:01.000Z").unwrap_or(0)),
            Some(300_000_000_000)
        );
        for bad in [
            "",
            "2026-05-16",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-05-16T00:00:00",
            "2026-05-16T00:00:00.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_iso8601_duration("PT15M"), Some(900_000_000_000));
        assert_eq!(parse_iso8601_duration("PT0.5S"), Some(500_000_000));
        assert_eq!(parse_iso8601_duration("P1D"), Some(86_400_000_000_000));
        assert_eq!(parse_iso8601_duration("P1DT1H"), Some(90_000_000_000_000));
        for bad in [
            "", "P", "PT", "5m", "PT5", "P1H", "PT1M1H", "P1.5D", "PT1.S",
        ] {
            assert_eq!(parse_iso8601_duration(bad), None, "{bad}");
        }
    }
}
