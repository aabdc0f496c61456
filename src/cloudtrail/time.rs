//! RFC 3339 timestamps -> Unix epoch milliseconds.
//!
//! Hand-written because it runs once per record: CloudTrail always writes the same fixed
//! layout, so fixed positions beat a general date library by a wide margin.

/// Parses an RFC 3339 timestamp (`2023-07-10T11:40:12Z`, `2023-07-10T11:40:12.123456Z`,
/// `2023-07-10T13:40:12+02:00`) into Unix epoch milliseconds, UTC. A timestamp with no
/// zone at all is taken as UTC.
///
/// Fractional seconds may have any number of digits; digits past milliseconds are
/// truncated. `t`, `z` and a space separator are accepted as RFC 3339 allows. A leap
/// second (`:60`) counts as the first second of the next minute, as Unix time has none.
/// Returns `None` for anything else, including impossible dates such as `2023-02-29`.
pub fn parse_event_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    // The shortest accepted form is "YYYY-MM-DD HH:MM:SS" (no zone: UTC).
    if b.len() < 19 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }

    let mut i = 19;
    let mut millis = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let first = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - first < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        match i - first {
            0 => return None,
            1 => millis *= 100,
            2 => millis *= 10,
            _ => {}
        }
    }

    let offset_minutes = match b.get(i) {
        // No zone at all is read as UTC: Panther and some exports normalise to UTC and
        // drop the `Z`.
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let hours = digits(b, i + 1, 2)?;
            let minutes = digits(b, i + 4, 2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 60 + minutes;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };

    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

/// `len` ASCII digits at `at` as a number; `None` if any is not a digit.
fn digits(b: &[u8], at: usize, len: usize) -> Option<i64> {
    b.get(at..at + len)?.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`, which needs no tables and no loops).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_rfc3339_timestamps_to_epoch_millis() {
        let cases: &[(&str, &str, i64)] = &[
            ("epoch", "1970-01-01T00:00:00Z", 0),
            ("cloudtrail form", "2023-07-10T11:40:12Z", 1_688_989_212_000),
            ("no zone is UTC", "2023-07-10T11:40:12", 1_688_989_212_000),
            (
                "panther form",
                "2023-07-10 11:40:12.123456789",
                1_688_989_212_123,
            ),
            ("millis", "2023-07-10T11:40:12.123Z", 1_688_989_212_123),
            (
                "micros truncated",
                "2023-07-10T11:40:12.123999Z",
                1_688_989_212_123,
            ),
            (
                "nanos truncated",
                "2023-07-10T11:40:12.000000001Z",
                1_688_989_212_000,
            ),
            (
                "one fraction digit",
                "2023-07-10T11:40:12.5Z",
                1_688_989_212_500,
            ),
            (
                "two fraction digits",
                "2023-07-10T11:40:12.05Z",
                1_688_989_212_050,
            ),
            (
                "positive offset",
                "2023-07-10T13:40:12+02:00",
                1_688_989_212_000,
            ),
            (
                "negative offset",
                "2023-07-10T06:10:12-05:30",
                1_688_989_212_000,
            ),
            (
                "zero negative offset",
                "2023-07-10T11:40:12-00:00",
                1_688_989_212_000,
            ),
            (
                "offset with fraction",
                "2023-07-10T13:40:12.250+02:00",
                1_688_989_212_250,
            ),
            (
                "lowercase t and z",
                "2023-07-10t11:40:12z",
                1_688_989_212_000,
            ),
            ("space separator", "2023-07-10 11:40:12Z", 1_688_989_212_000),
            ("leap day", "2024-02-29T00:00:00Z", 1_709_164_800_000),
            ("leap day of 2000", "2000-02-29T00:00:00Z", 951_782_400_000),
            ("leap second", "2016-12-31T23:59:60Z", 1_483_228_800_000),
            ("before epoch", "1969-12-31T23:59:59.999Z", -1),
            ("end of year", "2023-12-31T23:59:59Z", 1_704_067_199_000),
        ];
        for (case, input, want) in cases {
            assert_eq!(parse_event_time(input), Some(*want), "case {case}: {input}");
        }
    }

    #[test]
    fn rejects_malformed_or_impossible_timestamps() {
        let cases: &[(&str, &str)] = &[
            ("empty", ""),
            ("date only", "2023-07-10"),
            ("empty fraction", "2023-07-10T11:40:12.Z"),
            ("month 13", "2023-13-10T11:40:12Z"),
            ("month 0", "2023-00-10T11:40:12Z"),
            ("day 0", "2023-07-00T11:40:12Z"),
            ("april 31", "2023-04-31T11:40:12Z"),
            ("feb 29 in common year", "2023-02-29T11:40:12Z"),
            ("feb 29 in 1900", "1900-02-29T11:40:12Z"),
            ("hour 24", "2023-07-10T24:00:00Z"),
            ("minute 60", "2023-07-10T11:60:12Z"),
            ("second 61", "2023-07-10T11:40:61Z"),
            ("wrong separator", "2023-07-10X11:40:12Z"),
            ("slashes", "2023/07/10T11:40:12Z"),
            ("trailing junk", "2023-07-10T11:40:12Zjunk"),
            ("offset without colon", "2023-07-10T11:40:12+0200"),
            ("offset hour 24", "2023-07-10T11:40:12+24:00"),
            ("offset minute 60", "2023-07-10T11:40:12+01:60"),
            ("short offset", "2023-07-10T11:40:12+02"),
            ("signed digit", "2023-07-10T11:40:+2Z"),
            ("non ascii", "2023-07-10T11:40:1é"),
            ("epoch number", "1688989212"),
        ];
        for (case, input) in cases {
            assert_eq!(parse_event_time(input), None, "case {case}: {input}");
        }
    }
}
