//! Time formatting without a calendar crate: RFC 3339 (logs, manifests, OCI `created`) and
//! RFC 2822 (apt `Release` `Date:`), always in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn split(secs: i64) -> (i64, u32, u32, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // 1970-01-01 was a Thursday (weekday 4, with Sunday = 0).
    let weekday = (days + 4).rem_euclid(7);
    (y, m, d, rem / 3600, (rem % 3600) / 60, rem % 60, weekday)
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// `2026-11-23T19:19:04Z`
pub(crate) fn rfc3339(t: SystemTime) -> String {
    rfc3339_secs(unix(t))
}

/// `2026-11-23T19:19:04Z` from seconds since the epoch.
pub(crate) fn rfc3339_secs(secs: i64) -> String {
    let (y, m, d, hh, mm, ss, _) = split(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// `Mon, 23 Nov 2026 19:19:04 UTC` as apt expects in `Release` files.
pub(crate) fn rfc2822_secs(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss, wd) = split(secs);
    format!(
        "{}, {d:02} {} {y:04} {hh:02}:{mm:02}:{ss:02} UTC",
        DAYS[wd as usize],
        MONTHS[(m - 1) as usize]
    )
}

/// Seconds since the epoch now.
pub(crate) fn now_secs() -> i64 {
    unix(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(1_795_461_544), "2026-11-23T19:19:04Z");
        assert_eq!(rfc2822_secs(1_795_461_544), "Mon, 23 Nov 2026 19:19:04 UTC");
        assert_eq!(rfc3339_secs(951_782_400), "2000-02-29T00:00:00Z");
    }
}
