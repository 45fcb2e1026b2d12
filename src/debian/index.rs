//! A `Packages` index in memory: every binary package of one architecture (plus `all`)
//! across the configured suites, with its relations parsed, and lookups by name and by
//! what it provides.

use std::collections::HashMap;
use std::sync::Arc;

use super::deb822::{self, Paragraph};
use super::relation::{self, Atom, Relation};

/// `Multi-Arch:` (only what matters for one architecture plus `all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MultiArch {
    #[default]
    No,
    Same,
    Foreign,
    Allowed,
}

/// One binary package as an index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub multi_arch: MultiArch,
    pub essential: bool,
    pub priority: String,
    pub depends: Vec<Relation>,
    pub pre_depends: Vec<Relation>,
    pub conflicts: Vec<Atom>,
    pub breaks: Vec<Atom>,
    pub provides: Vec<Atom>,
    pub replaces: Vec<Atom>,
    /// Path of the .deb below the archive root (`pool/main/...`).
    pub filename: String,
    pub size: u64,
    /// sha256 hex of the .deb.
    pub sha256: String,
    /// The suite whose index lists it.
    pub suite: String,
}

impl Package {
    /// `name version` (what messages and the lock show).
    pub fn id(&self) -> String {
        format!("{} {}", self.name, self.version)
    }

    /// Depends and Pre-Depends, Pre-Depends first.
    pub fn all_depends(&self) -> impl Iterator<Item = &Relation> {
        self.pre_depends.iter().chain(self.depends.iter())
    }

    /// Builds a package from an index paragraph; `suite` is recorded as its origin.
    pub fn from_paragraph(p: &Paragraph<'_>, suite: &str) -> Result<Package, String> {
        Self::parse(p, suite, true)
    }

    /// Builds an installed package from a dpkg status paragraph (no file, size or hash).
    pub fn from_status(p: &Paragraph<'_>) -> Result<Package, String> {
        Self::parse(p, "installed", false)
    }

    fn parse(p: &Paragraph<'_>, suite: &str, in_index: bool) -> Result<Package, String> {
        let need = |f: &str| {
            p.get(f)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("the `{f}` field is missing"))
        };
        let name = need("Package")?.to_string();
        let rel = |f: &str| -> Result<Vec<Relation>, String> {
            match p.get(f) {
                Some(v) => relation::parse(v).map_err(|e| format!("package `{name}`, {f}: {e}")),
                None => Ok(Vec::new()),
            }
        };
        let flat = |f: &str| -> Result<Vec<Atom>, String> {
            Ok(rel(f)?.into_iter().flat_map(|r| r.0).collect())
        };
        let (sha256, filename, size) = if in_index {
            let sha256 = need("SHA256")?.to_ascii_lowercase();
            if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("package `{name}`: `{sha256}` is not a sha256"));
            }
            let filename = need("Filename")?.to_string();
            if filename.starts_with('/') || filename.split('/').any(|c| c == ".." || c.is_empty()) {
                return Err(format!(
                    "package `{name}`: Filename `{filename}` leaves the archive"
                ));
            }
            let size: u64 = need("Size")?
                .parse()
                .map_err(|_| format!("package `{name}`: Size is not a number"))?;
            (sha256, filename, size)
        } else {
            (String::new(), String::new(), 0)
        };
        Ok(Package {
            version: need("Version")?.to_string(),
            architecture: need("Architecture")?.to_string(),
            multi_arch: match p.get("Multi-Arch").unwrap_or("no") {
                "same" => MultiArch::Same,
                "foreign" => MultiArch::Foreign,
                "allowed" => MultiArch::Allowed,
                _ => MultiArch::No,
            },
            essential: p.get("Essential") == Some("yes"),
            priority: p.get("Priority").unwrap_or("optional").to_string(),
            depends: rel("Depends")?,
            pre_depends: rel("Pre-Depends")?,
            conflicts: flat("Conflicts")?,
            breaks: flat("Breaks")?,
            provides: flat("Provides")?,
            replaces: flat("Replaces")?,
            size,
            sha256,
            filename,
            suite: suite.to_string(),
            name,
        })
    }
}

/// Every package the configured suites offer for one architecture.
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub arch: String,
    packages: Vec<Arc<Package>>,
    by_name: HashMap<String, Vec<usize>>,
    /// Virtual name → (package index, the `Provides` atom's version).
    providers: HashMap<String, Vec<(usize, Option<String>)>>,
    /// Suites whose Release says `NotAutomatic: yes`: their versions come last.
    demoted: std::collections::HashSet<String>,
}

impl Index {
    pub fn new(arch: &str) -> Self {
        Index {
            arch: arch.to_string(),
            ..Default::default()
        }
    }

    /// Adds every package of a `Packages` text that is of this index's architecture or
    /// `all`. A malformed paragraph is an error naming its line.
    pub fn add_packages_text(&mut self, text: &str, suite: &str) -> Result<usize, String> {
        let mut n = 0;
        for p in deb822::paragraphs(text) {
            let p = p.map_err(|e| e.to_string())?;
            let arch = p.get("Architecture").unwrap_or_default();
            if arch != self.arch && arch != "all" {
                continue;
            }
            let pkg =
                Package::from_paragraph(&p, suite).map_err(|e| format!("line {}: {e}", p.line))?;
            self.add(pkg);
            n += 1;
        }
        Ok(n)
    }

    /// Adds one package (the same name, version and architecture twice keeps the first:
    /// suites are added in configuration order).
    pub fn add(&mut self, pkg: Package) {
        if let Some(ids) = self.by_name.get(&pkg.name) {
            if ids.iter().any(|&i| {
                self.packages[i].version == pkg.version
                    && self.packages[i].architecture == pkg.architecture
            }) {
                return;
            }
        }
        let i = self.packages.len();
        for p in &pkg.provides {
            self.providers
                .entry(p.name.clone())
                .or_default()
                .push((i, p.version.as_ref().map(|(_, v)| v.clone())));
        }
        self.by_name.entry(pkg.name.clone()).or_default().push(i);
        self.packages.push(Arc::new(pkg));
    }

    pub fn len(&self) -> usize {
        self.packages.len()
    }

    /// Every package, in the order added.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Package>> {
        self.packages.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// Every version of `name`, newest first.
    pub fn versions(&self, name: &str) -> Vec<Arc<Package>> {
        let mut v: Vec<Arc<Package>> = self
            .by_name
            .get(name)
            .map(|ids| ids.iter().map(|&i| self.packages[i].clone()).collect())
            .unwrap_or_default();
        // Newest first, but a NotAutomatic suite's (backports) only after every other, as
        // apt pins them below the release unless they are asked for.
        v.sort_by(|a, b| {
            let (da, db) = (
                self.demoted.contains(&a.suite),
                self.demoted.contains(&b.suite),
            );
            da.cmp(&db)
                .then_with(|| crate::repo::version::compare(&b.version, &a.version))
        });
        v
    }

    /// Marks a suite `NotAutomatic` (see [`Index::versions`]).
    pub fn demote_suite(&mut self, suite: &str) {
        self.demoted.insert(suite.to_string());
    }

    /// Packages providing `name`, with the provided version (`Provides: x (= 1)`).
    pub fn providers(&self, name: &str) -> Vec<(Arc<Package>, Option<String>)> {
        self.providers
            .get(name)
            .map(|v| {
                v.iter()
                    .map(|(i, ver)| (self.packages[*i].clone(), ver.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The exact package `name version` (of this architecture or `all`).
    pub fn find(&self, name: &str, version: &str) -> Option<Arc<Package>> {
        self.by_name
            .get(name)?
            .iter()
            .find_map(|&i| (self.packages[i].version == version).then(|| self.packages[i].clone()))
    }

    /// Whether any package is called `name` or provides it.
    pub fn knows(&self, name: &str) -> bool {
        self.by_name.contains_key(name) || self.providers.contains_key(name)
    }
}

/// The installed packages of a dpkg database text (`/var/lib/dpkg/status`, or the
/// paragraphs of `status.d/*`): only `install ok installed` ones (a paragraph without
/// `Status`, as some distroless tools write, counts as installed).
pub(crate) fn installed_from_status(text: &str) -> Result<Vec<Package>, String> {
    let mut out = Vec::new();
    for p in deb822::paragraphs(text) {
        let p = p.map_err(|e| e.to_string())?;
        if p.get("Status")
            .is_some_and(|s| !s.ends_with(" installed") || s.starts_with("deinstall"))
        {
            continue;
        }
        out.push(Package::from_status(&p).map_err(|e| format!("line {}: {e}", p.line))?);
    }
    Ok(out)
}
