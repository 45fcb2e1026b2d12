//! `builder.lock`: the exact Debian packages of every package set (a `packages` base's
//! closure, an image's dependency layer), so that the same lock gives the same bytes on any
//! machine and any day the archive still serves the files.
//!
//! TOML, sorted, one line per package, written by builder only:
//!
//! ```toml
//! version = 1
//! [archive]                      # what was resolved against (not the mirror)
//! [[set]]  kind, name, inputs, packages = ["name version", ...], excluded = [...]
//! [[package]] name, version, architecture, suite, filename, size, sha256
//! ```
//!
//! A set's `inputs` is the sha256 of what it was resolved from (its roots, exclusions, base
//! and archive identity): when that changes the set is stale, which `lock --check` reports
//! without the network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::archive::DebRef;
use super::index::Package;
use super::source::Identity;
use crate::diag;

/// The lock file's name at the project root.
pub(crate) const FILE: &str = "builder.lock";
pub(crate) const VERSION: u32 = 1;

/// What a set belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetKind {
    /// A `kind = "packages"` base.
    Base,
    /// The dependency layer of a recipe's image.
    Image,
}

impl std::fmt::Display for SetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SetKind::Base => "base",
            SetKind::Image => "image",
        })
    }
}

/// One locked package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub suite: String,
    pub filename: String,
    pub size: u64,
    pub sha256: String,
}

impl LockedPackage {
    pub fn id(&self) -> String {
        format!("{} {}", self.name, self.version)
    }

    pub fn from_package(p: &Package) -> Self {
        LockedPackage {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            suite: p.suite.clone(),
            filename: p.filename.clone(),
            size: p.size,
            sha256: p.sha256.clone(),
        }
    }

    pub fn deb_ref(&self) -> DebRef {
        DebRef {
            id: self.id(),
            suite: self.suite.clone(),
            filename: self.filename.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
        }
    }
}

/// One package set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedSet {
    pub kind: SetKind,
    pub name: String,
    /// `sha256:` of the set's inputs.
    pub inputs: String,
    /// `name version`, sorted.
    pub packages: Vec<String>,
    /// Names a relation asked for that the set leaves out on purpose (`exclude`).
    #[serde(default)]
    pub excluded: Vec<String>,
}

/// The whole lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub version: u32,
    pub archive: Identity,
    #[serde(default, rename = "set")]
    pub sets: Vec<LockedSet>,
    #[serde(default, rename = "package")]
    pub packages: Vec<LockedPackage>,
}

impl Lock {
    pub fn new(archive: Identity) -> Lock {
        Lock {
            version: VERSION,
            archive,
            sets: Vec::new(),
            packages: Vec::new(),
        }
    }

    pub fn path(project: &Path) -> PathBuf {
        project.join(FILE)
    }

    /// Reads the project's lock; `None` when there is none.
    pub fn read(project: &Path) -> anyhow::Result<Option<Lock>> {
        let file = Lock::path(project);
        let text = match std::fs::read(&file) {
            Ok(b) => String::from_utf8(b).map_err(|_| {
                crate::error::usage(format!(
                    "`{}` is not UTF-8 text: it is damaged; restore it from version control or \
                     delete it and run `builder lock`",
                    file.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(crate::error::environment(format!(
                    "could not read `{}`: {e}",
                    file.display()
                )))
            }
        };
        let lock: Lock = diag::parse_toml(&file, &text).map_err(|d| {
            anyhow::Error::from(d).context(format!(
                "`{}` is damaged; restore it from version control or delete it and run `builder lock`",
                file.display()
            ))
        })?;
        if lock.version != VERSION {
            return Err(crate::error::usage(format!(
                "`{}` has version {}, this builder reads version {VERSION}; run `builder lock --update`",
                file.display(),
                lock.version
            )));
        }
        lock.check_consistent().map_err(|e| {
            crate::error::usage(format!(
                "`{}` is inconsistent: {e}; restore it from version control or run `builder lock --update`",
                file.display()
            ))
        })?;
        Ok(Some(lock))
    }

    fn check_consistent(&self) -> Result<(), String> {
        let known: BTreeSet<String> = self.packages.iter().map(|p| p.id()).collect();
        for s in &self.sets {
            if let Some(missing) = s.packages.iter().find(|p| !known.contains(*p)) {
                return Err(format!(
                    "{} `{}` lists `{missing}`, which has no [[package]] entry",
                    s.kind, s.name
                ));
            }
        }
        let mut seen: BTreeMap<String, &LockedPackage> = BTreeMap::new();
        for p in &self.packages {
            if let Some(other) = seen.insert(p.id(), p) {
                if other != p {
                    return Err(format!(
                        "`{}` has two [[package]] entries that differ",
                        p.id()
                    ));
                }
            }
        }
        for p in &self.packages {
            if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("`{}` has no valid sha256", p.id()));
            }
            if p.filename.starts_with('/')
                || p.filename.split('/').any(|c| c == ".." || c.is_empty())
            {
                return Err(format!("`{}` has a filename outside the archive", p.id()));
            }
        }
        Ok(())
    }

    pub fn set(&self, kind: SetKind, name: &str) -> Option<&LockedSet> {
        self.sets.iter().find(|s| s.kind == kind && s.name == name)
    }

    /// The packages of a set, in name order.
    pub fn packages_of(&self, set: &LockedSet) -> Vec<LockedPackage> {
        let by_id: BTreeMap<String, &LockedPackage> =
            self.packages.iter().map(|p| (p.id(), p)).collect();
        set.packages
            .iter()
            .filter_map(|id| by_id.get(id).map(|p| (*p).clone()))
            .collect()
    }

    /// Puts a set (replacing one of the same kind and name) and its packages.
    pub fn put(&mut self, set: LockedSet, packages: &[LockedPackage]) {
        self.sets
            .retain(|s| !(s.kind == set.kind && s.name == set.name));
        self.sets.push(set);
        // What was just resolved comes from the verified index: it replaces an entry of the
        // same name and version (a hand-edited sha256 is repaired this way).
        for p in packages {
            self.packages.retain(|q| q.id() != p.id());
            self.packages.push(p.clone());
        }
        self.normalize();
    }

    /// Drops sets not in `keep` and packages no set uses; sorts everything.
    pub fn retain_sets(&mut self, keep: &BTreeSet<(SetKind, String)>) {
        self.sets
            .retain(|s| keep.contains(&(s.kind, s.name.clone())));
        self.normalize();
    }

    fn normalize(&mut self) {
        let used: BTreeSet<&String> = self.sets.iter().flat_map(|s| s.packages.iter()).collect();
        let used: BTreeSet<String> = used.into_iter().cloned().collect();
        self.packages.retain(|p| used.contains(&p.id()));
        self.packages.sort();
        self.packages.dedup();
        for s in &mut self.sets {
            s.packages.sort();
            s.packages.dedup();
            s.excluded.sort();
            s.excluded.dedup();
        }
        self.sets
            .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    }

    /// The lock as text: sorted, one array element per line.
    pub fn render(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let list = |items: &[String]| -> String {
            if items.is_empty() {
                return "[]".to_string();
            }
            let mut out = String::from("[\n");
            for i in items {
                out.push_str(&format!("    {},\n", q(i)));
            }
            out.push(']');
            out
        };
        let mut out = String::new();
        out.push_str(
            "# builder.lock: the exact Debian packages of every package-set base and image\n\
             # dependency layer. Written by `builder lock`; do not edit. Check it in:\n\
             # `builder lock --check` fails when it no longer matches the recipes and bases.\n",
        );
        out.push_str(&format!("version = {}\n\n[archive]\n", self.version));
        out.push_str(&format!(
            "architecture = {}\n",
            q(&self.archive.architecture)
        ));
        out.push_str(&format!("suites = {}\n", list(&self.archive.suites)));
        out.push_str(&format!(
            "components = {}\n",
            list(&self.archive.components)
        ));
        for s in &self.sets {
            out.push_str("\n[[set]]\n");
            out.push_str(&format!("kind = {}\n", q(&s.kind.to_string())));
            out.push_str(&format!("name = {}\n", q(&s.name)));
            out.push_str(&format!("inputs = {}\n", q(&s.inputs)));
            out.push_str(&format!("packages = {}\n", list(&s.packages)));
            if !s.excluded.is_empty() {
                out.push_str(&format!("excluded = {}\n", list(&s.excluded)));
            }
        }
        for p in &self.packages {
            out.push_str("\n[[package]]\n");
            out.push_str(&format!("name = {}\n", q(&p.name)));
            out.push_str(&format!("version = {}\n", q(&p.version)));
            out.push_str(&format!("architecture = {}\n", q(&p.architecture)));
            out.push_str(&format!("suite = {}\n", q(&p.suite)));
            out.push_str(&format!("filename = {}\n", q(&p.filename)));
            out.push_str(&format!("size = {}\n", p.size));
            out.push_str(&format!("sha256 = {}\n", q(&p.sha256)));
        }
        out
    }

    /// Writes the lock to the project root atomically (temp file, fsync, rename).
    pub fn write(&self, project: &Path) -> anyhow::Result<()> {
        let file = Lock::path(project);
        crate::durable::write(&file, self.render().as_bytes())
    }
}

/// `sha256:` of a canonical JSON value: the `inputs` of a set.
pub(crate) fn inputs_digest(value: &serde_json::Value) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    crate::digest::Digest::of(&bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, v: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: v.into(),
            architecture: "amd64".into(),
            suite: "bookworm".into(),
            filename: format!("pool/main/x/{name}_{v}_amd64.deb"),
            size: 10,
            sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn renders_sorted_and_reads_back() {
        let mut lock = Lock::new(Identity {
            architecture: "amd64".into(),
            suites: vec!["bookworm".into(), "bookworm-security".into()],
            components: vec!["main".into()],
        });
        lock.put(
            LockedSet {
                kind: SetKind::Image,
                name: "app".into(),
                inputs: "sha256:1".into(),
                packages: vec!["zlib1g 1:1.2".into(), "libc6 2.36".into()],
                excluded: vec![],
            },
            &[pkg("zlib1g", "1:1.2"), pkg("libc6", "2.36")],
        );
        lock.put(
            LockedSet {
                kind: SetKind::Base,
                name: "static".into(),
                inputs: "sha256:2".into(),
                packages: vec!["tzdata 2026f".into()],
                excluded: vec!["debconf".into()],
            },
            &[pkg("tzdata", "2026f")],
        );
        let text = lock.render();
        assert!(text.find("kind = \"base\"").unwrap() < text.find("kind = \"image\"").unwrap());
        assert!(
            text.contains("packages = [\n    \"libc6 2.36\",\n    \"zlib1g 1:1.2\",\n]"),
            "{text}"
        );
        let dir = tempfile::tempdir().unwrap();
        lock.write(dir.path()).unwrap();
        let back = Lock::read(dir.path()).unwrap().unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.render(), text);
        // a set dropped takes its packages along
        lock.retain_sets(&[(SetKind::Base, "static".to_string())].into());
        assert_eq!(lock.packages.len(), 1);
    }

    #[test]
    fn damaged_locks_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "version = 1\n[archive]\narchitecture = 1\n",
        )
        .unwrap();
        let err = format!("{:#}", Lock::read(dir.path()).unwrap_err());
        assert!(
            err.contains("builder.lock:3") && err.contains("delete it and run `builder lock`"),
            "{err}"
        );
        let mut lock = Lock::new(Identity {
            architecture: "amd64".into(),
            suites: vec![],
            components: vec![],
        });
        lock.sets.push(LockedSet {
            kind: SetKind::Base,
            name: "b".into(),
            inputs: "x".into(),
            packages: vec!["ghost 1".into()],
            excluded: vec![],
        });
        std::fs::write(dir.path().join(FILE), lock.render()).unwrap();
        let err = format!("{:#}", Lock::read(dir.path()).unwrap_err());
        assert!(
            err.contains("`ghost 1`, which has no [[package]] entry"),
            "{err}"
        );
    }
}
