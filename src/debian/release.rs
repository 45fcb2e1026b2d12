//! The `Release` file of a suite (from a verified `InRelease`): its dates and the sha256
//! and size of every index it lists, which is what makes the indexes trustworthy.

use std::collections::BTreeMap;

use super::deb822;

/// How far in the future a Release's `Date` may be (clocks differ).
const MAX_SKEW: i64 = 3600;

/// A parsed Release file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    pub suite: Option<String>,
    pub codename: Option<String>,
    /// `Date:` in seconds since the epoch.
    pub date: Option<i64>,
    /// `Valid-Until:` in seconds since the epoch.
    pub valid_until: Option<i64>,
    pub by_hash: bool,
    /// `No-Support-for-Architecture-all: Packages`: `all` packages are in each
    /// architecture's index, there is no `binary-all` to read.
    pub all_in_arch_indexes: bool,
    /// `NotAutomatic: yes` (backports, experimental): apt takes its packages only when
    /// asked for them, whatever their version.
    pub not_automatic: bool,
    pub components: Vec<String>,
    pub architectures: Vec<String>,
    /// Index path (`main/binary-amd64/Packages.xz`) → (size, sha256 hex).
    pub sha256: BTreeMap<String, (u64, String)>,
}

impl Release {
    /// Parses the signed text of an InRelease (or a plain Release).
    pub fn parse(text: &str) -> Result<Release, String> {
        let p = deb822::paragraphs(text)
            .next()
            .ok_or("the Release file is empty")?
            .map_err(|e| format!("the Release file is not deb822: {e}"))?;
        let mut r = Release {
            suite: p.get("Suite").map(str::to_string),
            codename: p.get("Codename").map(str::to_string),
            date: p.get("Date").map(parse_date).transpose()?,
            valid_until: p.get("Valid-Until").map(parse_date).transpose()?,
            by_hash: p.get("Acquire-By-Hash") == Some("yes"),
            all_in_arch_indexes: p
                .get("No-Support-for-Architecture-all")
                .is_some_and(|v| v.split_whitespace().any(|w| w == "Packages")),
            not_automatic: p.get("NotAutomatic") == Some("yes"),
            components: words(p.get("Components")),
            architectures: words(p.get("Architectures")),
            sha256: BTreeMap::new(),
        };
        let list = p
            .get("SHA256")
            .ok_or("the Release file has no SHA256 list (apt refuses MD5/SHA-1 only files)")?;
        for line in deb822::list_lines(list) {
            let mut w = line.split_whitespace();
            let (Some(hash), Some(size), Some(path), None) =
                (w.next(), w.next(), w.next(), w.next())
            else {
                return Err(format!("bad SHA256 line `{line}`"));
            };
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("bad sha256 `{hash}` for `{path}`"));
            }
            let size: u64 = size
                .parse()
                .map_err(|_| format!("bad size `{size}` for `{path}`"))?;
            r.sha256
                .insert(path.to_string(), (size, hash.to_ascii_lowercase()));
        }
        Ok(r)
    }

    /// Refuses a Release past its `Valid-Until` (a mirror replaying an old, signed state)
    /// or dated in the future beyond clock skew.
    pub fn check_dates(&self, now: i64, what: &str) -> Result<(), String> {
        if let Some(date) = self.date {
            if date > now + MAX_SKEW {
                return Err(format!(
                    "{what} is dated {}, in the future: check this machine's clock, or the \
                     mirror serves a forged Release",
                    crate::timefmt::rfc2822_secs(date)
                ));
            }
        }
        if let Some(until) = self.valid_until {
            if now > until {
                return Err(format!(
                    "{what} expired on {} (Valid-Until); the mirror serves an outdated copy \
                     of the archive, try again later or use another mirror",
                    crate::timefmt::rfc2822_secs(until)
                ));
            }
        }
        Ok(())
    }
}

fn words(v: Option<&str>) -> Vec<String> {
    v.map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Parses an RFC 2822 date as Release files write it: `Sat, 11 Jul 2026 10:16:37 UTC`
/// (the weekday optional; `UTC`, `GMT`, `Z` or a `+hhmm` offset).
pub(crate) fn parse_date(s: &str) -> Result<i64, String> {
    let bad = || format!("`{s}` is not a date like `Sat, 11 Jul 2026 10:16:37 UTC`");
    let s = s.trim();
    let s = match s.split_once(',') {
        Some((_, rest)) => rest.trim(),
        None => s,
    };
    let w: Vec<&str> = s.split_whitespace().collect();
    if w.len() < 4 {
        return Err(bad());
    }
    let day: i64 = w[0].parse().map_err(|_| bad())?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(w[1]))
        .ok_or_else(bad)? as i64
        + 1;
    let year: i64 = w[2].parse().map_err(|_| bad())?;
    let hms: Vec<i64> = w[3]
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if hms.len() != 3 || !(1..=31).contains(&day) {
        return Err(bad());
    }
    let offset = match w.get(4).copied() {
        None | Some("UTC" | "GMT" | "Z" | "UT") => 0,
        Some(o) if o.len() == 5 && o.is_ascii() && (o.starts_with('+') || o.starts_with('-')) => {
            let h: i64 = o[1..3].parse().map_err(|_| bad())?;
            let m: i64 = o[3..5].parse().map_err(|_| bad())?;
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        Some(_) => return Err(bad()),
    };
    Ok(days_from_civil(year, month, day) * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2] - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_as_release_files_write_them() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Ok(0));
        assert_eq!(
            parse_date("Sat, 11 Jul 2026 10:16:37 UTC"),
            Ok(1_783_764_997)
        );
        assert_eq!(
            parse_date("11 Jul 2026 12:16:37 +0200"),
            parse_date("Sat, 11 Jul 2026 10:16:37 UTC")
        );
        assert!(parse_date("yesterday").is_err());
    }

    #[test]
    fn release_lists_and_validity() {
        let r = Release::parse(
            "Origin: Debian\nSuite: stable-security\nCodename: bookworm-security\n\
             Date: Wed, 02 Dec 2026 23:13:43 UTC\nValid-Until: Wed, 09 Dec 2026 23:13:43 UTC\n\
             Acquire-By-Hash: yes\nNo-Support-for-Architecture-all: Packages\n\
             Components: main\nArchitectures: amd64 arm64\nMD5Sum:\n 0ed6 1 x\nSHA256:\n \
             9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5  8790396 main/binary-amd64/Packages.xz\n",
        )
        .unwrap();
        assert!(r.by_hash && r.all_in_arch_indexes);
        assert_eq!(r.sha256["main/binary-amd64/Packages.xz"].0, 8_790_396);
        let until = r.valid_until.unwrap();
        assert!(r.check_dates(until - 1, "x").is_ok());
        assert!(r
            .check_dates(until + 1, "x")
            .unwrap_err()
            .contains("expired"));
        assert!(Release::parse("Origin: x\n").is_err());
    }
}
