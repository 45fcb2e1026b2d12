//! `${shlibs:Depends}` in a recipe's `depends` (or `pre-depends`): the library dependencies
//! of the ELF files the package ships, computed as `dpkg-shlibdeps` computes them
//! (dpkg 1.21, `scripts/dpkg-shlibdeps.pl`), then merged with the recipe's own entries as
//! `dpkg-gencontrol` merges substvars into a field.
//!
//! For each ELF executable or shared object of the data tree ([`elf`]):
//! 1. each `DT_NEEDED` soname that no file of the package itself is named after is looked up
//!    in the library directories of a package set ([`libs`]: the recipe's builder base);
//! 2. when that package's `symbols` file has the soname ([`info`]), its template
//!    (`libc6 #MINVER#`) starts at the smallest version of the soname's symbols, and every
//!    undefined symbol the file uses (`puts@GLIBC_2.2.5`, looked up in its sonames in
//!    `DT_NEEDED` order) raises its template to that symbol's minimum version;
//! 3. otherwise the `shlibs` line of the soname gives the dependency as it is;
//! 4. the templates of all files become relations (`#MINVER#` → `(>= v)`), sorted as dpkg
//!    sorts them ([`deps`]).
//!
//! Not done (dpkg-shlibdeps options builder has no use for): `debian/shlibs.local`,
//! `-x` exclusions, `-l`/RPATH search directories (a soname is found in the package itself
//! by file name, anywhere, or in the set's library directories), and the
//! `Build-Depends-Package` raise, which needs a source package's Build-Depends.
//!
//! Must not: touch the network or the engine (the caller hands in the set's .debs).

mod deps;
mod elf;
mod info;
mod libs;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;

use crate::archive::{FileSource, NodeKind, Tree};
use crate::base::BaseImages;
use crate::debian::relation::{self, Relation};
use crate::recipe::{Recipe, SHLIBS_DEPENDS};
use crate::report::Reporter;

pub(crate) use libs::{abi, LibrarySet};

/// Why the dependencies could not be computed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// What the package ships (its ELF files, the libraries they need) is the problem; the
    /// message says what to change.
    #[error("{0}")]
    Package(String),
    /// Reading the library set or a file failed.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn problem(msg: String) -> Error {
    Error::Package(msg)
}

/// The dependencies the ELF files of `tree` need from the libraries of the set `set_of`
/// gives (called only when some file is an ELF file of the package's ABI), for a package of
/// architecture `arch`, in dpkg-shlibdeps' order. Empty when no file needs a library.
pub(crate) fn compute(
    tree: &Tree,
    arch: &str,
    set_of: impl FnOnce(&libs::Abi) -> anyhow::Result<LibrarySet>,
) -> Result<Vec<Relation>, Error> {
    let files = elf_files(tree)?;
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let own: BTreeSet<&str> = tree
        .iter()
        .filter(|(_, n)| !matches!(n.kind, NodeKind::Dir))
        .filter_map(|(p, _)| p.rsplit('/').next())
        .collect();
    let Some(abi) = abi(arch) else {
        let (path, _) = &files[0];
        return Err(problem(format!(
            "`/{path}` is an ELF file, but the package is `architecture = \"{arch}\"`: \
             set the architecture the file was built for, or do not ship it"
        )));
    };
    for (path, needs) in &files {
        if (needs.machine, needs.class64, needs.big_endian)
            != (abi.machine, abi.class64, abi.big_endian)
        {
            return Err(problem(format!(
                "`/{path}` is an ELF file for another architecture (machine {}, {}-bit, {}) \
                 than the package's `{arch}`: build it for `{arch}`, or set the package's \
                 architecture to the one it was built for",
                needs.machine,
                if needs.class64 { 64 } else { 32 },
                if needs.big_endian {
                    "big-endian"
                } else {
                    "little-endian"
                }
            )));
        }
    }
    if files.iter().all(|(_, n)| n.needed.is_empty()) {
        return Ok(Vec::new());
    }
    let set = set_of(&abi)?;
    let mut templates = deps::Templates::default();
    let mut problems = Vec::new();
    for (path, needs) in &files {
        let mut objects = Vec::new();
        for soname in needs.needed.iter().filter(|s| !own.contains(s.as_str())) {
            let Some(pkg) = set.provider(soname)? else {
                problems.push(format!(
                    "`/{path}` needs `{soname}`, which no package of {} ships",
                    set.what
                ));
                continue;
            };
            if let Some(obj) = pkg.symbols_for(soname) {
                if let Some(template) = obj.deps.first() {
                    templates.update(template, obj.smallest_version().unwrap_or(""));
                }
                objects.push(obj);
            } else if let Some(dep) = pkg.shlibs_for(soname) {
                templates.set_shlibs(&dep);
            } else if info::split_soname(soname).is_some() {
                // dpkg-shlibdeps forgives an unversioned soname (`libfoo.so`) only.
                problems.push(format!(
                    "`/{path}` needs `{soname}` from `{}` {}, whose `symbols` and `shlibs` \
                     files say nothing about it",
                    pkg.name, pkg.version
                ));
            }
        }
        for sym in &needs.undefined {
            if let Some(found) = objects.iter().find_map(|o| o.lookup(sym)) {
                templates.update(found.template, found.minver);
            }
        }
    }
    if !problems.is_empty() {
        return Err(problem(format!(
            "{}\nadd the package with the runtime library to {} (the library the build linked \
             against), or write the dependency in `depends` by hand instead of `{SHLIBS_DEPENDS}`",
            problems.join("\n"),
            set.what
        )));
    }
    templates.relations().map_err(problem)
}

/// Reads at most this much of a file to tell whether it is ELF.
const MAGIC: usize = 4;

/// The ELF executables and shared objects of `tree` with what each needs, by tree path.
fn elf_files(tree: &Tree) -> Result<Vec<(String, elf::ElfNeeds)>, Error> {
    let mut out = Vec::new();
    for (path, node) in tree.iter() {
        let NodeKind::File(source) = &node.kind else {
            continue;
        };
        let read = match source {
            FileSource::Bytes(b) => {
                if !elf::is_elf(b) {
                    continue;
                }
                elf::read_bytes(b)
            }
            FileSource::Path(p) => {
                let mut head = [0u8; MAGIC];
                let mut f = std::fs::File::open(p)
                    .with_context(|| format!("could not read `{}`", p.display()))?;
                let n = f
                    .read(&mut head)
                    .with_context(|| format!("could not read `{}`", p.display()))?;
                if !elf::is_elf(&head[..n]) {
                    continue;
                }
                elf::read_path(p)
            }
        };
        match read {
            Ok(Some(needs)) => out.push((path.to_string(), needs)),
            Ok(None) => {}
            Err(e) => {
                return Err(problem(format!(
                    "`/{path}` starts like an ELF file but cannot be read as one ({e}): fix \
                     or remove it, or write `depends` by hand instead of `{SHLIBS_DEPENDS}`"
                )))
            }
        }
    }
    Ok(out)
}

/// Whether any relation field of `fields` holds `${shlibs:Depends}`.
pub(crate) fn wanted(fields: &[(String, String)]) -> bool {
    fields.iter().any(|(_, v)| holds(v))
}

/// Whether the relation list `v` has a `${shlibs:Depends}` entry.
fn holds(v: &str) -> bool {
    split(v).any(|e| e == SHLIBS_DEPENDS)
}

fn split(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// The relation fields dpkg-gencontrol simplifies, in its order (`field_list_pkg_dep`).
const SIMPLIFIED: &[&str] = &[
    "Pre-Depends",
    "Depends",
    "Recommends",
    "Suggests",
    "Enhances",
];

/// `fields` with `${shlibs:Depends}` replaced by `found` and each field that held it
/// simplified as dpkg-gencontrol does (against the fields before it); a field left empty is
/// dropped.
pub(crate) fn substitute(
    fields: Vec<(String, String)>,
    found: &[Relation],
) -> Result<Vec<(String, String)>, String> {
    let mut known: Vec<Relation> = Vec::new();
    let mut out = Vec::new();
    for (k, v) in fields {
        let normal = SIMPLIFIED.iter().any(|f| f.eq_ignore_ascii_case(&k));
        if !normal || !holds(&v) {
            if normal {
                known.extend(relation::parse(&v).unwrap_or_default());
            }
            out.push((k, v));
            continue;
        }
        let mut list = Vec::new();
        for entry in split(&v) {
            if entry == SHLIBS_DEPENDS {
                list.extend(found.iter().cloned());
            } else {
                list.extend(relation::parse(entry).map_err(|e| format!("{k}: {e}"))?);
            }
        }
        let list = deps::simplify(list, &known);
        known.extend(list.iter().cloned());
        if !list.is_empty() {
            let text: Vec<String> = list.iter().map(ToString::to_string).collect();
            out.push((k, text.join(", ")));
        }
    }
    Ok(out)
}

/// The relation fields of `fields` without `${shlibs:Depends}` (what is known of a
/// package's dependencies before its files are built): for dependency sets locked ahead.
pub(crate) fn without_substvars(fields: &[(String, String)]) -> Vec<(String, String)> {
    fields
        .iter()
        .filter_map(|(k, v)| {
            let kept: Vec<&str> = split(v).filter(|e| *e != SHLIBS_DEPENDS).collect();
            (!kept.is_empty()).then(|| (k.clone(), kept.join(", ")))
        })
        .collect()
}

/// The library set of the recipe's builder base `name`: its locked packages (locked now
/// if needed) and their .debs (downloaded if missing).
fn builder_set(
    recipe: &Recipe,
    name: &str,
    bases: &BaseImages,
    abi: &libs::Abi,
    reporter: &Reporter,
) -> anyhow::Result<LibrarySet> {
    let file = recipe.file.display();
    let set_kind = matches!(
        bases.get(name).map(|d| &d.kind),
        Some(crate::base::BaseKind::Packages { .. } | crate::base::BaseKind::Debootstrap { .. })
    );
    if !set_kind {
        return Err(crate::error::usage(format!(
            "{file}: `{SHLIBS_DEPENDS}` needs to know which Debian packages the builder base \
             `{name}` holds, but it is not a `packages` or `debootstrap` base: make it one, or \
             write `depends` by hand"
        )));
    }
    let set = bases.ensure_locked(name, reporter)?;
    let refs: Vec<_> = set.packages.iter().map(|p| p.deb_ref()).collect();
    let archive = bases.locker().archive()?;
    let debs: Vec<PathBuf> = crate::debian::fetch::block_on(archive.fetch_debs(&refs, reporter))??;
    let arch = &recipe.package.architecture;
    LibrarySet::from_debs(format!("builder base `{name}`"), &debs, arch, abi)
}

/// The relation fields of `recipe` with `${shlibs:Depends}` expanded from its built files
/// (`dist/build/<name>/`), for locking an image's set before `package` runs: `None` when the
/// recipe does not use it, is not built yet, or its builder base is not locked (nothing is
/// resolved or locked here; the .debs of a locked base are read from the cache, fetched if
/// missing).
pub(crate) fn expand_built(
    recipe: &Recipe,
    bases: &BaseImages,
    reporter: &Reporter,
) -> anyhow::Result<Option<Vec<(String, String)>>> {
    let relations = &recipe.package.relations;
    let Some(build) = recipe.build.as_ref().filter(|_| wanted(relations)) else {
        return Ok(None);
    };
    let dist = crate::project::Paths::new(recipe.project.clone()).dist;
    if !super::deb::build_dir(&dist, recipe).is_dir() || bases.locked_set(&build.builder)?.is_none()
    {
        return Ok(None);
    }
    let file = recipe.file.display();
    let spec = super::deb::spec(recipe, &dist, crate::recipe::Compression::None, 0, reporter)
        .with_context(|| {
            format!(
                "{file}: could not read the built files for `{SHLIBS_DEPENDS}`: run `builder \
                 build {}` again",
                recipe.package.name
            )
        })?;
    expand(recipe, relations.clone(), &spec.data, Some(bases), reporter).map(Some)
}

/// The control fields of `recipe` with `${shlibs:Depends}` expanded for the files of
/// `tree`; `fields` unchanged when the recipe does not use it.
pub(crate) fn expand(
    recipe: &Recipe,
    fields: Vec<(String, String)>,
    tree: &Tree,
    bases: Option<&BaseImages>,
    reporter: &Reporter,
) -> anyhow::Result<Vec<(String, String)>> {
    if !wanted(&fields) {
        return Ok(fields);
    }
    let file = recipe.file.display();
    let Some(build) = &recipe.build else {
        return Err(crate::error::usage(format!(
            "{file}: `{SHLIBS_DEPENDS}` needs a [build]: builder computes it from the libraries \
             of the builder base the files were built in; add [build], or write `depends` by hand"
        )));
    };
    let set_of = |abi: &libs::Abi| {
        let loaded;
        let bases = match bases {
            Some(b) => b,
            None => {
                loaded = BaseImages::load(&recipe.project)?;
                &loaded
            }
        };
        builder_set(recipe, &build.builder, bases, abi, reporter)
    };
    let found = compute(tree, &recipe.package.architecture, set_of).map_err(|e| match e {
        Error::Package(msg) => crate::error::usage(format!("{file}: `{SHLIBS_DEPENDS}`: {msg}")),
        Error::Other(e) => e,
    })?;
    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
    reporter.info(format!(
        "{file}: `{SHLIBS_DEPENDS}` = {}",
        if shown.is_empty() {
            "(nothing: no packaged ELF file needs a shared library)".to_string()
        } else {
            shown.join(", ")
        }
    ));
    substitute(fields, &found)
        .map_err(|e| crate::error::usage(format!("{file}: `{SHLIBS_DEPENDS}`: {e}")))
}

#[cfg(test)]
mod tests;
