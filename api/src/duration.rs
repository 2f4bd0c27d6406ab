//! Istio duration strings (`"1s"`, `"500ms"`, `"1.5s"`, `"1m"`, `"1h30m"`).
//!
//! Istio's CRDs take Go's duration syntax and then require whole milliseconds; the proxy model
//! stores milliseconds, so this is the one place that reads them.

const NANOS_PER_MS: u128 = 1_000_000;

/// Parses a duration to nanoseconds. Units: `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`; a number may have a
/// fraction; several number+unit pairs may follow each other (`1h30m`). Negative durations and a
/// bare number without unit are rejected.
pub fn parse_nanos(text: &str) -> Result<u128, String> {
    let invalid =
        || format!("invalid duration `{text}` (expected e.g. `500ms`, `1.5s`, `1m`, `1h30m`)");
    let s = text.trim();
    if s.is_empty() || s.starts_with('-') {
        return Err(invalid());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(0);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total: u128 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number = &s[start..i];
        if number.is_empty() || number.matches('.').count() > 1 || number == "." {
            return Err(invalid());
        }
        let unit_start = i;
        while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let unit: u128 = match &s[unit_start..i] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(invalid()),
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(unit).ok_or_else(invalid)?;
        // Fractions beyond nanosecond resolution are dropped, as Go does.
        let mut scale = unit;
        for digit in frac.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            value = value
                .checked_add(u128::from(digit - b'0') * scale)
                .ok_or_else(invalid)?;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > u128::from(u64::MAX) * NANOS_PER_MS {
            return Err(format!("duration `{text}` is too long"));
        }
    }
    Ok(total)
}

/// Parses a duration that must be a whole number of milliseconds (Istio's rule for every duration
/// it passes to the proxy).
pub fn parse_ms(text: &str) -> Result<u64, String> {
    let nanos = parse_nanos(text)?;
    if nanos % NANOS_PER_MS != 0 {
        return Err(format!(
            "duration `{text}` is not a whole number of milliseconds (only ms precision is supported)"
        ));
    }
    u64::try_from(nanos / NANOS_PER_MS).map_err(|_| format!("duration `{text}` is too long"))
}

/// Like [`parse_ms`], and at least 1ms (Istio rejects zero for timeouts, intervals and delays).
pub fn parse_positive_ms(text: &str) -> Result<u64, String> {
    let ms = parse_ms(text)?;
    if ms == 0 {
        return Err(format!("duration `{text}` must be at least 1ms"));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_durations() {
        assert_eq!(parse_ms("1s"), Ok(1000));
        assert_eq!(parse_ms("500ms"), Ok(500));
        assert_eq!(parse_ms("1.5s"), Ok(1500));
        assert_eq!(parse_ms("0.25s"), Ok(250));
        assert_eq!(parse_ms(".5s"), Ok(500));
        assert_eq!(parse_ms("1m"), Ok(60_000));
        assert_eq!(parse_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_ms("2000us"), Ok(2));
        assert_eq!(parse_ms("0s"), Ok(0));
        assert_eq!(parse_ms("0"), Ok(0));
        assert_eq!(parse_nanos("1.000000001s"), Ok(1_000_000_001));
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in [
            "", "1", "10 s", "-1s", "1d", "s", "1.2.3s", "abc", ".s", "1ss", "1e3s",
        ] {
            assert!(parse_nanos(bad).is_err(), "{bad} should fail");
        }
        assert!(parse_ms("1500us").unwrap_err().contains("milliseconds"));
        assert!(
            parse_positive_ms("0s")
                .unwrap_err()
                .contains("at least 1ms")
        );
        assert!(parse_ms("99999999999999999999999999h").is_err());
    }
}
