//! Times and durations as the trace pages show and accept them: UTC wall-clock times (no time
//! zone database on the server; the page says "UTC"), and Jaeger's duration spellings
//! (`500us`, `100ms`, `1.5s`, `2m`, `1h`).

/// Microseconds in a day.
const DAY_US: i64 = 86_400_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Year, month, day.
type Date = (i64, u32, u32);
/// Hour, minute, second, microsecond.
type TimeOfDay = (i64, i64, i64, i64);

/// The parts of a time: its date and its time of day.
fn parts(us: i64) -> (Date, TimeOfDay) {
    let day = us.div_euclid(DAY_US);
    let rest = us.rem_euclid(DAY_US);
    let secs = rest / 1_000_000;
    (
        civil_from_days(day),
        (secs / 3600, secs / 60 % 60, secs % 60, rest % 1_000_000),
    )
}

/// `2025-11-21 10:00:00.250 UTC`, for people.
pub fn format_utc(us: i64) -> String {
    let ((y, mo, d), (h, mi, s, micro)) = parts(us);
    format!(
        "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{:03} UTC",
        micro / 1000
    )
}

/// `10:00:00.250`, for axis labels where the date is said elsewhere.
pub fn format_clock(us: i64) -> String {
    let (_, (h, mi, s, micro)) = parts(us);
    format!("{h:02}:{mi:02}:{s:02}.{:03}", micro / 1000)
}

/// `2025-11-21T10:00:00.250000Z`, for `<time datetime>`.
pub fn rfc3339(us: i64) -> String {
    let ((y, mo, d), (h, mi, s, micro)) = parts(us);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{micro:06}Z")
}

/// `2025-11-21T10:00`, the value of a `datetime-local` field.
pub fn format_local_field(us: i64) -> String {
    let ((y, mo, d), (h, mi, _, _)) = parts(us);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}")
}

/// Parses a `datetime-local` value (`YYYY-MM-DDTHH:MM`, optionally `:SS`), read as UTC.
pub fn parse_local_field(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a time like 2025-11-21T10:00 (UTC)");
    let (date, clock) = text.split_once(['T', ' ']).ok_or_else(bad)?;
    let numbers =
        |s: &str| -> Option<Vec<u32>> { s.split(['-', ':']).map(|p| p.parse().ok()).collect() };
    let (date, clock) = (
        numbers(date).ok_or_else(bad)?,
        numbers(clock).ok_or_else(bad)?,
    );
    let (&[y, mo, d], [h, mi, rest @ ..]) = (date.as_slice(), clock.as_slice()) else {
        return Err(bad());
    };
    let s = match rest {
        [] => 0,
        [s] => *s,
        _ => return Err(bad()),
    };
    let days_in_month = match mo {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => 0,
    };
    if d == 0 || d > days_in_month || *h > 23 || *mi > 59 || s > 59 {
        return Err(bad());
    }
    let secs = ((i64::from(*h) * 60 + i64::from(*mi)) * 60) + i64::from(s);
    Ok(days_from_civil(i64::from(y), mo, d) * DAY_US + secs * 1_000_000)
}

/// A duration a person reads at a glance: `850µs`, `12.5ms`, `1.25s`, `2m 5s`.
pub fn format_duration(us: u64) -> String {
    fn trim(value: f64, unit: &str) -> String {
        let text = format!("{value:.2}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text}{unit}")
    }
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => trim(us as f64 / 1e3, "ms"),
        1_000_000..60_000_000 => trim(us as f64 / 1e6, "s"),
        _ => format!("{}m {}s", us / 60_000_000, us / 1_000_000 % 60),
    }
}

/// Parses a Jaeger duration (`500us`, `100ms`, `1.5s`, `2m`, `1h`) into microseconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("{text:?} is not a duration like 100ms or 1.5s"));
    }
    let scale = match unit.trim() {
        "us" | "µs" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        "" => {
            return Err(format!(
                "{text:?} needs a unit: us, ms, s, m or h (e.g. 100ms, 1.5s)"
            ));
        }
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use us, ms, s, m or h (e.g. 100ms, 1.5s)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 100ms or 1.5s"))?;
    let us = value * scale;
    if !us.is_finite() || us > 1e15 {
        return Err(format!("{text:?} is too long"));
    }
    Ok(us.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_the_calendar() {
        let us = 1_763_719_200_250_000;
        assert_eq!(format_utc(us), "2025-11-21 10:00:00.250 UTC");
        assert_eq!(rfc3339(us), "2025-11-21T10:00:00.250000Z");
        assert_eq!(format_local_field(us), "2025-11-21T10:00");
        assert_eq!(parse_local_field("2025-11-21T10:00"), Ok(us - 250_000));
        assert_eq!(
            parse_local_field("2024-02-29T23:59:59"),
            Ok(1_709_251_199_000_000)
        );
        assert!(parse_local_field("2025-02-29T10:00").is_err());
        assert!(parse_local_field("yesterday").is_err());
        assert_eq!(format_utc(0), "1970-01-01 00:00:00.000 UTC");
    }

    #[test]
    fn durations_in_jaeger_spelling() {
        assert_eq!(parse_duration("100ms"), Ok(100_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000));
        assert_eq!(parse_duration("250us"), Ok(250));
        assert_eq!(parse_duration("2m"), Ok(120_000_000));
        assert!(parse_duration("100").unwrap_err().contains("needs a unit"));
        assert!(
            parse_duration("1.5 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("..ms").is_err());
        assert!(
            parse_duration("fast")
                .unwrap_err()
                .contains("not a duration")
        );
        assert_eq!(format_duration(850), "850µs");
        assert_eq!(format_duration(12_500), "12.5ms");
        assert_eq!(format_duration(24_000), "24ms");
        assert_eq!(format_duration(1_250_000), "1.25s");
        assert_eq!(format_duration(125_000_000), "2m 5s");
    }
}
