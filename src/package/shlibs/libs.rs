//! The libraries a package's ELF files may use: the .debs of a package set (the builder
//! base's, in production) and, per package, the sonames it ships in the library directories
//! and its `symbols` and `shlibs` control files.
//!
//! Only control archives are read up front (small); a data archive is listed when its
//! package has dependency information, and the others only to name the package behind a
//! soname that has none.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::path::PathBuf;

use object::elf;

use super::info::{parse_symbols, shlibs_dependency, SymObject, SymbolsFile};

/// What one Debian architecture's ELF files are, and where its libraries live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Abi {
    pub machine: u16,
    pub class64: bool,
    pub big_endian: bool,
    /// The multiarch triplet (`x86_64-linux-gnu`).
    pub triplet: &'static str,
}

/// The ABI of a Debian architecture builder packages for; `None` for `all` and for
/// architectures without a multiarch triplet here.
pub(crate) fn abi(arch: &str) -> Option<Abi> {
    let a = |machine: u16, class64, big_endian, triplet| Abi {
        machine,
        class64,
        big_endian,
        triplet,
    };
    Some(match arch {
        "amd64" => a(elf::EM_X86_64.0, true, false, "x86_64-linux-gnu"),
        "arm64" => a(elf::EM_AARCH64.0, true, false, "aarch64-linux-gnu"),
        "i386" => a(elf::EM_386.0, false, false, "i386-linux-gnu"),
        "armhf" => a(elf::EM_ARM.0, false, false, "arm-linux-gnueabihf"),
        "armel" => a(elf::EM_ARM.0, false, false, "arm-linux-gnueabi"),
        "ppc64el" => a(elf::EM_PPC64.0, true, false, "powerpc64le-linux-gnu"),
        "ppc64" => a(elf::EM_PPC64.0, true, true, "powerpc64-linux-gnu"),
        "s390x" => a(elf::EM_S390.0, true, true, "s390x-linux-gnu"),
        "riscv64" => a(elf::EM_RISCV.0, true, false, "riscv64-linux-gnu"),
        "mips64el" => a(elf::EM_MIPS.0, true, false, "mips64el-linux-gnuabi64"),
        "mipsel" => a(elf::EM_MIPS.0, false, false, "mipsel-linux-gnu"),
        "loong64" => a(elf::EM_LOONGARCH.0, true, false, "loongarch64-linux-gnu"),
        _ => return None,
    })
}

impl Abi {
    /// The library directories in dpkg-shlibdeps' search order (`Dpkg::Shlibs`: the
    /// multiarch directories, then `/lib` and `/usr/lib`), then the multilib directory of
    /// this class (`/lib64` or `/lib32`; the other class's cannot hold this ABI's libraries).
    pub(crate) fn library_dirs(&self) -> Vec<String> {
        let t = self.triplet;
        let multilib = if self.class64 { "lib64" } else { "lib32" };
        vec![
            format!("/lib/{t}"),
            format!("/usr/lib/{t}"),
            "/lib".to_string(),
            "/usr/lib".to_string(),
            format!("/{multilib}"),
            format!("/usr/{multilib}"),
        ]
    }
}

/// One package of the set.
#[derive(Debug)]
pub(crate) struct LibPackage {
    pub name: String,
    pub version: String,
    deb: PathBuf,
    pub symbols: Option<SymbolsFile>,
    shlibs: Option<String>,
    /// File name in a library directory → the directory's rank in the search order.
    listing: OnceCell<BTreeMap<String, usize>>,
}

impl LibPackage {
    fn has_info(&self) -> bool {
        self.symbols.is_some() || self.shlibs.is_some()
    }

    /// The object of `soname` in this package's `symbols` file.
    pub(crate) fn symbols_for(&self, soname: &str) -> Option<&SymObject> {
        self.symbols.as_ref()?.objects.get(soname)
    }

    /// The dependency this package's `shlibs` file gives `soname`.
    pub(crate) fn shlibs_for(&self, soname: &str) -> Option<String> {
        shlibs_dependency(self.shlibs.as_deref()?, soname)
    }
}

/// The packages whose libraries a package's ELF files may use.
#[derive(Debug)]
pub(crate) struct LibrarySet {
    /// What the set is, for messages: "builder base `golang`".
    pub what: String,
    dirs: Vec<String>,
    packages: Vec<LibPackage>,
}

impl LibrarySet {
    /// Reads the control archives of `debs` for a package of ABI `abi`.
    pub(crate) fn from_debs(
        what: String,
        debs: &[PathBuf],
        arch: &str,
        abi: &Abi,
    ) -> anyhow::Result<Self> {
        let mut packages = Vec::new();
        for deb in debs {
            let (c, texts) = crate::deb::read_control_texts(deb, &["symbols", "shlibs"])?;
            let field = |n: &str| {
                c.fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let text = |n: &str| texts.iter().find(|(k, _)| k == n).map(|(_, t)| t.clone());
            packages.push(LibPackage {
                name: field("Package"),
                version: field("Version"),
                deb: deb.clone(),
                symbols: text("symbols").map(|t| parse_symbols(&t, arch)),
                shlibs: text("shlibs"),
                listing: OnceCell::new(),
            });
        }
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(LibrarySet {
            what,
            dirs: abi.library_dirs(),
            packages,
        })
    }

    fn listing<'a>(&self, p: &'a LibPackage) -> anyhow::Result<&'a BTreeMap<String, usize>> {
        if let Some(l) = p.listing.get() {
            return Ok(l);
        }
        let mut names = BTreeMap::new();
        for f in crate::deb::read_data_listing(&p.deb)? {
            if !matches!(f.kind, '-' | 'l' | 'h') {
                continue;
            }
            let Some((dir, name)) = f.path.rsplit_once('/') else {
                continue;
            };
            if let Some(rank) = self.dirs.iter().position(|d| d == dir) {
                let r = names.entry(name.to_string()).or_insert(rank);
                *r = (*r).min(rank);
            }
        }
        Ok(p.listing.get_or_init(|| names))
    }

    /// The package that ships `soname` in the library directory searched first (among
    /// packages with dependency information, then among the others).
    pub(crate) fn provider(&self, soname: &str) -> anyhow::Result<Option<&LibPackage>> {
        for with_info in [true, false] {
            let mut best: Option<(usize, &LibPackage)> = None;
            for p in self.packages.iter().filter(|p| p.has_info() == with_info) {
                if let Some(&rank) = self.listing(p)?.get(soname) {
                    if best.is_none_or(|(r, _)| rank < r) {
                        best = Some((rank, p));
                    }
                }
            }
            if let Some((_, p)) = best {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }
}

/// One package of a hand-made set (tests): its name and version, control files and the
/// paths it ships.
#[cfg(test)]
pub(crate) struct Part<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub symbols: Option<&'a str>,
    pub shlibs: Option<&'a str>,
    pub files: Vec<String>,
}

#[cfg(test)]
impl LibrarySet {
    /// A set made in memory instead of from .debs.
    pub(crate) fn from_parts(what: &str, arch: &str, abi: &Abi, parts: Vec<Part<'_>>) -> Self {
        let dirs = abi.library_dirs();
        let packages = parts
            .into_iter()
            .map(|p| {
                let listing = OnceCell::new();
                let mut names = BTreeMap::new();
                for f in &p.files {
                    if let Some((dir, name)) = f.rsplit_once('/') {
                        if let Some(rank) = dirs.iter().position(|d| d == dir) {
                            names.entry(name.to_string()).or_insert(rank);
                        }
                    }
                }
                let _ = listing.set(names);
                LibPackage {
                    name: p.name.to_string(),
                    version: p.version.to_string(),
                    deb: PathBuf::new(),
                    symbols: p.symbols.map(|t| parse_symbols(t, arch)),
                    shlibs: p.shlibs.map(str::to_string),
                    listing,
                }
            })
            .collect();
        LibrarySet {
            what: what.to_string(),
            dirs,
            packages,
        }
    }
}
