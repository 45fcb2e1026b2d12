//! Debian version ordering (Policy 5.6.12, dpkg's `verrevcmp`): compares
//! `[epoch:]upstream[-revision]` so that `~` sorts before everything (even the end of the
//! string), letters sort before non-letters, and digit runs compare as numbers.
//! Used to sort `Packages` and to choose which versions `prune` keeps.

use std::cmp::Ordering;

/// Compares two Debian version strings the way dpkg does.
pub(crate) fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua, ub))
        .then_with(|| verrevcmp(ra, rb))
}

/// `(epoch, upstream, revision)`; a missing epoch is 0, a missing revision is empty
/// (which dpkg treats like "0" for ordering purposes via `verrevcmp`).
fn split(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((u, r)) => (epoch, u, r),
        None => (epoch, rest, ""),
    }
}

/// Weight of a non-digit character: `~` first, then the end of the part, then letters,
/// then everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit prefix, character by character.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        // Digit run, numerically: skip leading zeros, then longer wins, then lexical.
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let si = i;
        let sj = j;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (da, db) = (&a[si..i], &b[sj..j]);
        let by_len = da.len().cmp(&db.len());
        if by_len != Ordering::Equal {
            return by_len;
        }
        let by_digits = da.cmp(db);
        if by_digits != Ordering::Equal {
            return by_digits;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::compare;
    use std::cmp::Ordering::{self, *};
    use std::process::Command;

    const CASES: &[(&str, &str, Ordering)] = &[
        ("1.0", "1.0", Equal),
        ("1.0", "1.1", Less),
        ("1.10", "1.9", Greater),
        ("1.0~rc1", "1.0", Less),
        ("1.0~~", "1.0~", Less),
        ("1.0~", "1.0", Less),
        ("1.0", "1.0a", Less),
        ("1.0a", "1.0+", Less),
        ("1.0a", "1.0.1", Less),
        ("1:0.1", "2.0", Greater),
        ("0:1.0", "1.0", Equal),
        ("1.0-1", "1.0-2", Less),
        ("1.0-1", "1.0", Greater),
        ("1.0-0", "1.0", Equal),
        ("1.0-10", "1.0-9", Greater),
        ("001.0", "1.0", Equal),
        ("2.0-1~bpo1", "2.0-1", Less),
        ("1.2.3-a-b", "1.2.3-a-c", Less),
        ("1.0+dfsg", "1.0", Greater),
        ("1.0.0", "1.0", Greater),
        ("10:1", "9:2", Greater),
        ("a", "b", Less),
        ("1.0-1ubuntu1", "1.0-1", Greater),
    ];

    #[test]
    fn orders_like_dpkg_policy() {
        for (a, b, want) in CASES {
            assert_eq!(compare(a, b), *want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    /// Cross-checks every case with the real `dpkg --compare-versions`.
    #[test]
    fn agrees_with_dpkg() {
        for (a, b, _) in CASES {
            for (op, ord) in [("lt", Less), ("eq", Equal), ("gt", Greater)] {
                let status = Command::new("dpkg")
                    .args(["--compare-versions", a, op, b])
                    .status()
                    .expect("dpkg must be installed");
                assert_eq!(status.success(), compare(a, b) == ord, "{a} {op} {b}");
            }
        }
    }
}
