//! The text of apt's index files: `Packages` stanzas, `Release`, and the digests of the
//! files `Release` lists. Pure functions: no file system, no signing.

use std::io::Write;

use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

use super::version;
use super::PackageEntry;

/// One file listed in `Release` (path relative to `dists/<env>/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexFile {
    pub path: String,
    pub size: u64,
    pub md5: String,
    /// Bare hex on disk, as `Release` spells it.
    #[serde(with = "crate::digest::bare")]
    pub sha256: Digest,
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

impl IndexFile {
    pub(crate) fn new(path: String, bytes: Vec<u8>) -> Self {
        IndexFile {
            path,
            size: bytes.len() as u64,
            md5: hex::encode(Md5::digest(&bytes)),
            sha256: Digest::of(&bytes),
            bytes,
        }
    }

    /// The directory that holds this file's `by-hash/` folder, relative to `dists/<env>/`.
    pub(crate) fn dir(&self) -> &str {
        self.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
    }
}

/// Sorts entries the way `Packages` lists them: by name, then Debian version, then arch.
pub(crate) fn sort_entries(entries: &mut [PackageEntry]) {
    entries.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| version::compare(&a.version, &b.version))
            .then_with(|| a.arch.cmp(&b.arch))
    });
}

/// One `Packages` stanza: the control fields (Package first) then where and what the file is.
pub(crate) fn stanza(e: &PackageEntry) -> String {
    let mut out = String::new();
    let skip = ["Filename", "Size", "MD5sum", "SHA256", "SHA1", "SHA512"];
    let mut fields: Vec<&(String, String)> = e
        .control
        .iter()
        .filter(|(k, _)| !skip.iter().any(|s| s.eq_ignore_ascii_case(k)))
        .collect();
    fields.sort_by_key(|(k, _)| !k.eq_ignore_ascii_case("Package"));
    for (k, v) in fields {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push('\n');
    }
    out.push_str(&format!(
        "Filename: {}\nSize: {}\nMD5sum: {}\nSHA256: {}\n",
        e.filename,
        e.size,
        e.md5,
        e.sha256.hex()
    ));
    out
}

/// The `Packages` file for one architecture (`all` packages go into every architecture).
pub(crate) fn packages_text(entries: &[PackageEntry], arch: &str) -> String {
    entries
        .iter()
        .filter(|e| e.arch == arch || e.arch == "all")
        .map(stanza)
        .collect::<Vec<_>>()
        .join("\n")
}

/// gzip with no name and a zero timestamp, so equal input gives equal bytes.
pub(crate) fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(data)?;
    enc.finish()
}

/// What `Release` says about the repository.
pub(crate) struct ReleaseInfo<'a> {
    pub origin: &'a str,
    pub label: &'a str,
    pub suite: &'a str,
    pub date_secs: i64,
    pub valid_until_secs: i64,
    pub architectures: &'a [String],
    pub files: &'a [IndexFile],
}

/// The `Release` text.
pub(crate) fn release_text(r: &ReleaseInfo<'_>) -> String {
    let mut out = format!(
        "Origin: {}\nLabel: {}\nSuite: {suite}\nCodename: {suite}\nDate: {}\nValid-Until: {}\n\
         Architectures: {}\nComponents: main\nDescription: {} packages promoted by builder\n\
         Acquire-By-Hash: yes\n",
        r.origin,
        r.label,
        crate::timefmt::rfc2822_secs(r.date_secs),
        crate::timefmt::rfc2822_secs(r.valid_until_secs),
        r.architectures.join(" "),
        r.suite,
        suite = r.suite,
    );
    let width = r
        .files
        .iter()
        .map(|f| f.size.to_string().len())
        .max()
        .unwrap_or(1);
    out.push_str("MD5Sum:\n");
    for f in r.files {
        out.push_str(&format!(" {} {:>width$} {}\n", f.md5, f.size, f.path));
    }
    out.push_str("SHA256:\n");
    for f in r.files {
        out.push_str(&format!(
            " {} {:>width$} {}\n",
            f.sha256.hex(),
            f.size,
            f.path
        ));
    }
    out
}

/// Pool directory prefix: `libfoo` → `libf`, `backend` → `b`.
pub(crate) fn pool_prefix(source: &str) -> String {
    if source.starts_with("lib") && source.len() > 3 {
        source[..4].to_string()
    } else {
        source.chars().next().map(String::from).unwrap_or_default()
    }
}

/// `pool/main/<prefix>/<source>/<name>_<version without epoch>_<arch>.deb`.
pub(crate) fn pool_path(source: &str, name: &str, version: &str, arch: &str) -> String {
    let v = version.split_once(':').map(|(_, v)| v).unwrap_or(version);
    format!(
        "pool/main/{}/{source}/{name}_{v}_{arch}.deb",
        pool_prefix(source)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, version: &str) -> PackageEntry {
        PackageEntry {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            filename: pool_path(name, name, version, "amd64"),
            size: 10,
            md5: "m".into(),
            sha256: Digest::of(b"s"),
            control: vec![
                ("Version".into(), version.into()),
                ("Package".into(), name.into()),
                ("Description".into(), "x\n more\n .\n end".into()),
            ],
            run: None,
        }
    }

    #[test]
    fn pool_paths() {
        assert_eq!(
            pool_path("libfoo", "libfoo1", "1:2.0-1", "amd64"),
            "pool/main/libf/libfoo/libfoo1_2.0-1_amd64.deb"
        );
        assert_eq!(
            pool_path("backend", "backend", "1.4.0", "all"),
            "pool/main/b/backend/backend_1.4.0_all.deb"
        );
    }

    #[test]
    fn packages_sorted_by_debian_version_package_first() {
        let mut v = vec![
            entry("b", "1.10"),
            entry("b", "1.9"),
            entry("a", "2~rc1"),
            entry("a", "1:0"),
        ];
        sort_entries(&mut v);
        let order: Vec<_> = v
            .iter()
            .map(|e| format!("{}={}", e.name, e.version))
            .collect();
        assert_eq!(order, ["a=2~rc1", "a=1:0", "b=1.9", "b=1.10"]);
        let text = packages_text(&v, "amd64");
        assert!(text.starts_with("Package: a\nVersion: 2~rc1\nDescription: x\n more\n .\n end\nFilename: pool/main/a/a/a_2~rc1_amd64.deb\n"), "{text}");
        assert_eq!(text.matches("\n\nPackage: ").count(), 3);
        assert!(packages_text(&v, "arm64").is_empty());
    }

    #[test]
    fn gzip_is_deterministic() {
        let a = gzip(b"hello").unwrap();
        assert_eq!(a, gzip(b"hello").unwrap());
        assert_eq!(&a[4..8], &[0, 0, 0, 0], "mtime must be zero");
    }
}
