//! Which Debian package provides a file the start check found missing: Debian's library
//! package naming (policy 8.1: `libfoo.so.1` is in `libfoo1`, `libfoo-2.so.0` in
//! `libfoo-2-0`), a few well-known exceptions, and a table of common interpreters. A guess
//! that the archive index confirms is stated plainly; otherwise it is marked as a guess.

use super::start::{Missing, MissingReason};
use crate::debian::index::Index;

/// Files whose package the naming rule cannot tell.
const KNOWN: &[(&str, &str)] = &[
    ("ld-linux-x86-64.so.2", "libc6"),
    ("ld-linux-aarch64.so.1", "libc6"),
    ("ld-linux.so.2", "libc6"),
    ("ld-linux-armhf.so.3", "libc6"),
    ("libc.so.6", "libc6"),
    ("libm.so.6", "libc6"),
    ("libdl.so.2", "libc6"),
    ("librt.so.1", "libc6"),
    ("libpthread.so.0", "libc6"),
    ("libresolv.so.2", "libc6"),
    ("libutil.so.1", "libc6"),
    ("libanl.so.1", "libc6"),
    ("libgcc_s.so.1", "libgcc-s1"),
    ("libstdc++.so.6", "libstdc++6"),
    ("libz.so.1", "zlib1g"),
    ("libcrypto.so.3", "libssl3"),
    ("libssl.so.3", "libssl3"),
    ("libbz2.so.1.0", "libbz2-1.0"),
    ("liblzma.so.5", "liblzma5"),
    ("libpq.so.5", "libpq5"),
    ("/bin/sh", "dash"),
    ("/usr/bin/sh", "dash"),
    ("/bin/bash", "bash"),
    ("/usr/bin/bash", "bash"),
    ("/usr/bin/env", "coreutils"),
    ("/usr/bin/python3", "python3"),
    ("/usr/bin/perl", "perl-base"),
    ("/usr/bin/node", "nodejs"),
    ("/usr/bin/java", "default-jre-headless"),
];

/// The package named by Debian's library naming rule for a soname.
pub(crate) fn by_naming(soname: &str) -> Option<String> {
    let (stem, version) = soname.split_once(".so")?;
    let version = version.trim_start_matches('.');
    let stem = stem.to_ascii_lowercase().replace('_', "-");
    if version.is_empty() {
        return None;
    }
    Some(if stem.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{stem}-{version}")
    } else {
        format!("{stem}{version}")
    })
}

/// What to say about who provides `m`, when anything can be said.
pub(crate) fn hint(m: &Missing, index: Option<&Index>) -> Option<String> {
    let name = match m.reason {
        MissingReason::Library | MissingReason::Interpreter | MissingReason::ScriptInterpreter => {
            m.what.as_str()
        }
        _ => return None,
    };
    let base = name.rsplit('/').next().unwrap_or(name);
    let guess = KNOWN
        .iter()
        .find(|(f, _)| *f == name || *f == base)
        .map(|(_, p)| p.to_string())
        .or_else(|| by_naming(base))?;
    match index {
        Some(i) if i.knows(&guess) => Some(format!("package `{guess}` provides it")),
        Some(_) => None,
        None => Some(format!("probably package `{guess}` (Debian's naming)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_packages_are_named_as_policy_says() {
        assert_eq!(by_naming("libjq.so.1").as_deref(), Some("libjq1"));
        assert_eq!(by_naming("libonig.so.5").as_deref(), Some("libonig5"));
        assert_eq!(
            by_naming("libgdbm_compat.so.4").as_deref(),
            Some("libgdbm-compat4")
        );
        assert_eq!(
            by_naming("libpython3.11.so.1.0").as_deref(),
            Some("libpython3.11-1.0")
        );
        assert_eq!(by_naming("libfoo.so"), None);
        let m = Missing {
            what: "libz.so.1".into(),
            needed_by: "/usr/bin/x".into(),
            searched: vec![],
            reason: MissingReason::Library,
        };
        assert_eq!(
            hint(&m, None).as_deref(),
            Some("probably package `zlib1g` (Debian's naming)")
        );
    }
}
