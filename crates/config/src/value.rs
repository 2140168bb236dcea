//! Conversion of option strings to typed values, as pgBackRest converts them.
//!
//! Contract: each function accepts exactly what pgBackRest 2.45 accepts (`cvtZToInt64`,
//! `cfgParseSize`, `cfgParseTime` and the path checks of `configParse()`), and returns `None`
//! (conversion) or an error message (paths) otherwise; the caller words the option-level error.
//! Times are milliseconds, sizes bytes.

/// A resolved option value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Bool(bool),
    /// Integer, size (bytes) or time (milliseconds).
    Int(i64),
    /// String, path or string-id.
    Str(String),
    List(Vec<String>),
    Hash(Vec<(String, String)>),
}

/// `strtoll(base 10)` with pgBackRest's checks: no leading blank, no trailing garbage, no overflow.
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    s.parse::<i64>().ok()
}

/// Size with optional case-insensitive suffix `b`, `k|kb|kib`, ... `p|pb|pib` (powers of 1024).
pub(crate) fn parse_size(s: &str) -> Option<i64> {
    let lower = s.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, suffix) = lower.split_at(split);
    if number.is_empty() {
        return None;
    }
    let multiplier: i64 = match suffix {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        "p" | "pb" | "pib" => 1 << 50,
        _ => return None,
    };
    let value = parse_int(number)?;
    if value > i64::MAX / multiplier {
        return None;
    }
    Some(value * multiplier)
}

/// Seconds with optional fraction, as `sscanf("%lf")`: the longest numeric prefix counts, and a
/// result of zero is only accepted when the text is exactly `0`. Returns milliseconds.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    let trimmed = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let prefix = float_prefix(trimmed);
    let value: f64 = if prefix.is_empty() {
        0.0
    } else {
        prefix.parse().ok()?
    };
    if value == 0.0 && s != "0" {
        return None;
    }
    let ms = value * 1000.0;
    if !ms.is_finite() || ms >= 9.2e18 || ms <= -9.2e18 {
        return None;
    }
    // truncation toward zero, as the C cast does
    #[allow(clippy::cast_possible_truncation)]
    Some(ms as i64)
}

/// The longest prefix of `s` in the grammar `[+-]digits[.digits][(e|E)[+-]digits]`.
fn float_prefix(s: &str) -> &str {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut mantissa_digits = i - int_start;
    if b.get(i) == Some(&b'.') {
        let frac_start = i + 1;
        let mut j = frac_start;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if mantissa_digits > 0 || j > frac_start {
            mantissa_digits += j - frac_start;
            i = j;
        }
    }
    if mantissa_digits == 0 {
        return "";
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_start = j;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    s.get(..i).unwrap_or("")
}

/// Check a path value; returns it with a trailing `/` stripped, or the pgBackRest complaint
/// (`must begin with /`, `cannot contain //`) to be completed with the option name.
pub(crate) fn check_path(s: &str) -> Result<String, &'static str> {
    if !s.starts_with('/') {
        return Err("must begin with /");
    }
    if s.contains("//") {
        return Err("cannot contain //");
    }
    match s.strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => Ok(stripped.to_string()),
        _ => Ok(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_strtoll_with_pgbackrest_checks() {
        let cases: &[(&str, Option<i64>)] = &[
            ("0", Some(0)),
            ("42", Some(42)),
            ("-5", Some(-5)),
            ("+7", Some(7)),
            ("", None),
            (" 5", None),
            ("5 ", None),
            ("5x", None),
            ("0x10", None),
            ("9223372036854775807", Some(i64::MAX)),
            ("9223372036854775808", None),
            ("-", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_int(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn sizes_accept_every_suffix_in_any_case() {
        let cases: &[(&str, Option<i64>)] = &[
            ("100", Some(100)),
            ("100b", Some(100)),
            ("100B", Some(100)),
            ("1k", Some(1024)),
            ("1KB", Some(1024)),
            ("1KiB", Some(1024)),
            ("2m", Some(2 << 20)),
            ("2MiB", Some(2 << 20)),
            ("3g", Some(3 << 30)),
            ("1GB", Some(1 << 30)),
            ("1t", Some(1 << 40)),
            ("1TiB", Some(1 << 40)),
            ("4PiB", Some(4 << 50)),
            ("1pb", Some(1 << 50)),
            ("1.5MiB", None),
            ("MiB", None),
            ("1xb", None),
            ("1 MiB", None),
            ("-1k", None),
            ("9999999p", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn times_are_milliseconds_with_fractions() {
        let cases: &[(&str, Option<i64>)] = &[
            ("60", Some(60_000)),
            ("0.5", Some(500)),
            ("0.1", Some(100)),
            ("1800", Some(1_800_000)),
            ("0", Some(0)),
            ("0.0", None),
            ("abc", None),
            ("", None),
            ("1.5s", Some(1500)),
            ("1e2", Some(100_000)),
            (".5", Some(500)),
            ("-1", Some(-1000)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_time(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn paths_are_absolute_without_double_slash_and_lose_trailing_slash() {
        assert_eq!(check_path("/var/lib/x/"), Ok("/var/lib/x".to_string()));
        assert_eq!(check_path("/"), Ok("/".to_string()));
        assert_eq!(check_path("/a"), Ok("/a".to_string()));
        assert_eq!(check_path("rel/path"), Err("must begin with /"));
        assert_eq!(check_path("/a//b"), Err("cannot contain //"));
    }
}
