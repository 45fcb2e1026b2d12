//! Recipe + build outputs → [`DebSpec`]: expands `[[files]]` (files, trees, globs, build
//! outputs, symlinks) into a data tree, adds systemd units, the copyright file and the
//! changelog, decides the conffiles, merges maintainer scripts with systemd snippets and
//! orders the control fields.
//!
//! Everything wrong with what the entries collect (special files, names dpkg cannot
//! install, collisions with generated files) is a recipe error naming the entry; nothing
//! here may pick up builder's own output (`dist/`) or `.git`.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};

use super::maintscripts;
use crate::archive::{FileSource, NodeKind, Owner, Tree, TreeError};
use crate::deb::DebSpec;
use crate::recipe::{debian, owners, Compression, FileSpec, Recipe, Source};
use crate::report::Reporter;

/// Where a recipe's build outputs are: `dist/build/<name>/` (the build cache's directory).
pub(crate) fn build_dir(dist: &Path, recipe: &Recipe) -> PathBuf {
    crate::build::cache::out_dir(dist, &recipe.package.name)
}

/// The longest file name dpkg can install: it unpacks every file as `<name>.dpkg-new`
/// first, and Linux names hold 255 bytes.
const MAX_NAME: usize = 255 - ".dpkg-new".len();

/// Never packaged from a tree or a glob, at any depth (unless a glob names it literally).
const GIT: &str = ".git";

/// How one entry places what it finds on disk: its `mode` override and owner, and what it
/// saw on the way (modes the override changed, hard links).
struct Placing<'a> {
    mode: Option<u32>,
    owner: Owner,
    skip: &'a Excluded,
    /// Files whose mode on disk the override changed: (tree path, mode on disk).
    changed: Vec<(String, u32)>,
    /// (device, inode) of every multiply-linked file placed so far → its tree path, so the
    /// other names of a file stay hard links to it.
    links: HashMap<(u64, u64), String>,
}

impl<'a> Placing<'a> {
    fn new(spec: &FileSpec, skip: &'a Excluded) -> Self {
        Placing {
            mode: spec.mode,
            owner: owner_of(spec),
            skip,
            changed: Vec::new(),
            links: HashMap::new(),
        }
    }

    /// Adds the regular file `src` (whose metadata is `meta`) at `dest`: as a hard link when
    /// it is another name of a file this entry already placed, else with the override's mode
    /// or its own mode on disk (special bits included).
    fn file(
        &mut self,
        tree: &mut Tree,
        src: &Path,
        dest: &str,
        meta: &std::fs::Metadata,
    ) -> anyhow::Result<()> {
        if meta.nlink() > 1 {
            let id = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&id) {
                tree.add_hardlink(dest, first)?;
                return Ok(());
            }
            self.links.insert(id, dest.to_string());
        }
        let disk = meta.permissions().mode() & 0o7777;
        let mode = match self.mode {
            Some(m) => {
                if m != disk {
                    self.changed.push((dest.to_string(), disk));
                }
                m
            }
            None => checked_disk_mode(src, meta)?,
        };
        tree.add_file_owned(
            dest,
            mode,
            self.owner.clone(),
            FileSource::Path(src.to_path_buf()),
        )?;
        Ok(())
    }

    /// Adds the directory `src` at `dest` with its own mode on disk.
    fn dir(
        &mut self,
        tree: &mut Tree,
        src: &Path,
        dest: &str,
        meta: &std::fs::Metadata,
    ) -> anyhow::Result<()> {
        let disk = checked_disk_mode(src, meta)?;
        tree.add_dir_owned(dest, disk, self.owner.clone())?;
        Ok(())
    }
}

/// The permission bits `src` has on disk, refused (with how to fix it) when
/// [`disk_mode_problem`] says they cannot be packaged as they are.
fn checked_disk_mode(src: &Path, meta: &std::fs::Metadata) -> anyhow::Result<u32> {
    let disk = meta.permissions().mode() & 0o7777;
    let dir = meta.is_dir();
    if let Some(why) = disk_mode_problem(disk, dir) {
        let (what, fix) = if dir {
            ("the directory ", "change its mode (chmod)")
        } else {
            (
                "",
                "set `mode` on the entry, or change the file's mode (chmod)",
            )
        };
        bail!(
            "{what}`{}` is {disk:04o} on disk, which {why}: {fix}",
            src.display()
        );
    }
    Ok(disk)
}

/// Why a mode found on disk is not packaged as it is: what a reviewer (and lintian) would
/// refuse, as for a recipe's `mode`, except that a stray sticky bit on a file is kept.
fn disk_mode_problem(mode: u32, dir: bool) -> Option<&'static str> {
    if dir {
        return (mode & 0o002 != 0 && mode & 0o1000 == 0)
            .then_some("lets every user replace what the directory holds");
    }
    if mode & 0o002 != 0 {
        return Some("makes it writable by every user");
    }
    (mode & 0o6000 != 0 && mode & 0o020 != 0)
        .then_some("makes a setuid or setgid program writable by its group")
}

/// The owner of what `spec` installs: its `owner` and `group` by name, with the ids Debian
/// fixes for system accounts (0 for other names; dpkg resolves the names at unpack time).
fn owner_of(spec: &FileSpec) -> Owner {
    let user = spec.owner.clone().unwrap_or_else(|| "root".into());
    let group = spec.group.clone().unwrap_or_else(|| "root".into());
    Owner {
        uid: owners::user_id(&user).unwrap_or(0),
        gid: owners::group_id(&group).unwrap_or(0),
        user,
        group,
    }
}

/// How the recipe spells an entry, for messages.
fn describe(spec: &FileSpec) -> String {
    let source = match &spec.source {
        Source::Path { path } => format!("from = \"{}\"", path.display()),
        Source::Glob { pattern } => format!("from = \"{pattern}\""),
        Source::Build { path } => format!("from = \"build:{}\"", path.display()),
        Source::Symlink { target } => format!("symlink = \"{target}\""),
        Source::Dir => return format!("`dir = \"{}\"`", spec.to),
    };
    format!("`{source}`, `to = \"{}\"`", spec.to)
}

fn entry_error(recipe: &Recipe, spec: &FileSpec, msg: impl std::fmt::Display) -> anyhow::Error {
    crate::error::usage(format!(
        "{}:{}: [[files]] entry {}: {msg}",
        recipe.file.display(),
        spec.line,
        describe(spec)
    ))
}

/// Builder's own directories (the output directory, wherever it is, and the cache),
/// resolved; trees and globs leave them out so a package never holds earlier packages.
struct Excluded {
    dirs: Vec<PathBuf>,
}

impl Excluded {
    fn new(dist: &Path) -> Self {
        let dirs = [dist.to_path_buf(), crate::project::cache_dir()]
            .iter()
            .filter_map(|d| d.canonicalize().ok())
            .collect();
        Excluded { dirs }
    }

    /// The excluded directories strictly below `root`, relative to it.
    fn below(&self, root: &Path) -> Vec<PathBuf> {
        let Ok(root) = root.canonicalize() else {
            return Vec::new();
        };
        self.dirs
            .iter()
            .filter_map(|d| d.strip_prefix(&root).ok())
            .filter(|rel| !rel.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .collect()
    }

    /// Whether `path` (resolved) is an excluded directory or inside one.
    fn covers(&self, path: &Path) -> bool {
        path.canonicalize()
            .is_ok_and(|c| self.dirs.iter().any(|d| c.starts_with(d)))
    }
}

/// Why dpkg could not install a path of the package, if it could not.
fn installable(dest: &str) -> Result<(), String> {
    if dest.chars().any(char::is_control) {
        return Err(
            "contains a control character (a newline, tab, ...), which dpkg's file lists cannot hold"
                .into(),
        );
    }
    if dest.ends_with(char::is_whitespace) {
        return Err("ends in whitespace, which dpkg strips from conffiles and file lists".into());
    }
    if let Some(long) = dest.split('/').find(|p| p.len() > MAX_NAME) {
        let mut cut = 40;
        while !long.is_char_boundary(cut) {
            cut -= 1;
        }
        return Err(format!(
            "has a name of {} bytes (`{}…`); dpkg installs names of at most {MAX_NAME} bytes, \
             since it appends `.dpkg-new` while unpacking",
            long.len(),
            &long[..cut]
        ));
    }
    Ok(())
}

/// Refuses a path from disk that would land at `dest` where dpkg cannot install it.
fn check_installable(src: &Path, dest: &str) -> anyhow::Result<()> {
    installable(dest).map_err(|why| {
        anyhow::anyhow!(
            "`{}` would be installed as `/{dest}`, which {why}: rename the file or change `to`",
            src.display()
        )
    })
}

/// Refuses what is not a regular file, a directory or a symlink, naming what it is.
fn unsupported(path: &Path, ft: std::fs::FileType) -> anyhow::Error {
    let kind = if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else {
        "a special file"
    };
    anyhow::anyhow!(
        "`{}` is {kind}: only regular files, directories and symlinks can be packaged; \
         remove it or point `from` elsewhere",
        path.display()
    )
}

/// Adds a file or a directory tree from disk at `dest` (a tree path without leading `/`).
/// Inside a tree, `.git` and builder's own directories are left out.
fn add_path(
    tree: &mut Tree,
    src: &Path,
    dest: &str,
    place: &mut Placing<'_>,
) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(src).with_context(|| format!("could not read `{}`", src.display()))?;
    if !dest.is_empty() {
        check_installable(src, dest)?;
    }
    if meta.is_file() {
        return place.file(tree, src, dest, &meta);
    }
    if !meta.is_dir() {
        return Err(unsupported(src, meta.file_type()));
    }
    if !dest.is_empty() {
        place.dir(tree, src, dest, &meta)?;
    }
    let below = place.skip.below(src);
    let mut walker = walkdir::WalkDir::new(src)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walker.next() {
        let entry = entry.with_context(|| format!("could not walk `{}`", src.display()))?;
        let rel = entry
            .path()
            .strip_prefix(src)
            .context("walkdir left its root")?;
        let ft = entry.file_type();
        if entry.file_name() == GIT || (ft.is_dir() && below.iter().any(|b| b == rel)) {
            if ft.is_dir() {
                walker.skip_current_dir();
            }
            continue;
        }
        let rel = rel.to_str().with_context(|| {
            format!("`{}` is not valid UTF-8: rename it", entry.path().display())
        })?;
        let d = if dest.is_empty() {
            rel.to_string()
        } else {
            format!("{dest}/{rel}")
        };
        check_installable(entry.path(), &d)?;
        if ft.is_symlink() {
            let target = std::fs::read_link(entry.path())
                .with_context(|| format!("could not read link `{}`", entry.path().display()))?;
            let target = target.to_str().with_context(|| {
                format!(
                    "the target of symlink `{}` is not valid UTF-8: change it",
                    entry.path().display()
                )
            })?;
            tree.add_symlink(&d, target)?;
        } else if ft.is_dir() || ft.is_file() {
            let m = entry
                .metadata()
                .with_context(|| format!("could not read `{}`", entry.path().display()))?;
            if ft.is_dir() {
                place.dir(tree, entry.path(), &d, &m)?;
            } else {
                place.file(tree, entry.path(), &d, &m)?;
            }
        } else {
            return Err(unsupported(entry.path(), ft));
        }
    }
    Ok(())
}

fn file_name(p: &Path) -> anyhow::Result<&str> {
    p.file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("`{}` has no UTF-8 file name", p.display()))
}

/// Refuses a source that resolves (through symlinks) outside `root`: a recipe may only
/// package files of the project, and build outputs only from the build directory.
fn ensure_within(path: &Path, root: &Path, what: &str) -> anyhow::Result<()> {
    let canonical = path
        .canonicalize()
        .with_context(|| format!("could not resolve `{}`", path.display()))?;
    let root = root
        .canonicalize()
        .with_context(|| format!("could not resolve `{}`", root.display()))?;
    if canonical.starts_with(&root) {
        Ok(())
    } else {
        Err(crate::error::usage(format!(
            "{what} `{}` resolves to `{}`, outside `{}`: symlinks may not point out",
            path.display(),
            canonical.display(),
            root.display()
        )))
    }
}

/// Where a file source lands: inside `to` when it names a directory (trailing `/`).
fn destination(to: &str, into_dir: bool, src: &Path) -> anyhow::Result<String> {
    Ok(if into_dir && src.is_file() {
        format!("{}{}", to, file_name(src)?)
    } else {
        to.trim_end_matches('/').to_string()
    })
}

fn is_glob_part(part: &str) -> bool {
    part.contains(['*', '?', '['])
}

/// The paths `pattern` (relative to `project`) matches, sorted. Matches reached through a
/// wildcard that are `.git` or builder's own directories are left out, as in trees. The
/// glob crate skips names that are not UTF-8 without a word; those are refused here when
/// they would match, as a tree refuses them.
fn expand_glob(project: &Path, pattern: &str, skip: &Excluded) -> anyhow::Result<Vec<PathBuf>> {
    let parts: Vec<&str> = pattern.split('/').collect();
    let literal = parts.iter().take_while(|p| !is_glob_part(p)).count();
    let prefix = parts[..literal].join("/");
    let base = project.join(&prefix);
    // What the pattern names literally is the user's choice.
    let literal_git = parts[..literal].contains(&GIT);
    let literal_skipped = skip.covers(&base);

    let full = format!(
        "{}/{pattern}",
        glob::Pattern::escape(&project.to_string_lossy())
    );
    let mut matches = Vec::new();
    let mut left_out = 0;
    for m in glob::glob(&full).with_context(|| format!("bad glob `{pattern}`"))? {
        let m = m.map_err(|e| {
            anyhow::anyhow!(
                "could not read `{}` while expanding the glob: {}: check its permissions",
                e.path().display(),
                e.error()
            )
        })?;
        let below_prefix = m
            .strip_prefix(&base)
            .ok()
            .and_then(Path::to_str)
            .unwrap_or_default();
        let in_git = !literal_git && below_prefix.split('/').any(|p| p == GIT);
        if in_git || (!literal_skipped && skip.covers(&m)) {
            left_out += 1;
            continue;
        }
        matches.push(m);
    }

    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let compiled = glob::Pattern::new(pattern).with_context(|| format!("bad glob `{pattern}`"))?;
    let mut walk = walkdir::WalkDir::new(&base).min_depth(1);
    if !parts.contains(&"**") {
        walk = walk.max_depth(parts.len() - literal);
    }
    let below = if literal_skipped {
        Vec::new()
    } else {
        skip.below(&base)
    };
    let walk = walk.into_iter().filter_entry(|e| {
        let rel = e.path().strip_prefix(&base).unwrap_or(e.path());
        (literal_git || e.file_name() != GIT) && !below.iter().any(|b| b == rel)
    });
    // Unreadable directories were reported by the glob itself.
    for entry in walk.flatten() {
        let rel = entry.path().strip_prefix(&base).unwrap_or(entry.path());
        if rel.to_str().is_some() {
            continue;
        }
        let lossy = rel.to_string_lossy();
        let candidate = if prefix.is_empty() {
            lossy.into_owned()
        } else {
            format!("{prefix}/{lossy}")
        };
        if compiled.matches_with(&candidate, opts) {
            bail!(
                "`{}` matches the glob, but its name is not valid UTF-8: rename it",
                entry.path().display()
            );
        }
    }

    if matches.is_empty() {
        if left_out > 0 {
            bail!(
                "the glob `{pattern}` matches only `.git` or builder's output directory, which are never packaged: narrow the pattern"
            );
        }
        bail!("the glob `{pattern}` matches no file");
    }
    matches.sort();
    Ok(matches)
}

/// What one `[[files]]` entry added.
struct Added {
    /// The single path it installs (None for globs, symlinks and directories).
    single: Option<String>,
    /// Paths whose mode the entry's `mode` changed, with the mode they had.
    changed: Vec<(String, u32)>,
}

/// What one `[[files]]` entry adds, and where.
struct Collector<'a> {
    recipe: &'a Recipe,
    dist: &'a Path,
    skip: Excluded,
}

impl<'a> Collector<'a> {
    fn new(recipe: &'a Recipe, dist: &'a Path) -> Self {
        Collector {
            recipe,
            dist,
            skip: Excluded::new(dist),
        }
    }

    /// Adds one entry to `tree`; returns the single path it installs (None for globs,
    /// symlinks and directories), for the conffile check, and the files whose mode on disk
    /// the entry's `mode` changed.
    fn add_entry(&self, spec: &FileSpec, tree: &mut Tree) -> anyhow::Result<Added> {
        let recipe = self.recipe;
        let to = spec.to.trim_start_matches('/');
        let into_dir = spec.to.ends_with('/');
        let mut place = Placing::new(spec, &self.skip);
        let single = match &spec.source {
            Source::Symlink { target } => {
                installable(to).map_err(|why| anyhow::anyhow!("`{}` {why}", spec.to))?;
                tree.add_symlink(to, target)?;
                if !place.owner.is_root() {
                    tree.set_owner(to, place.owner.clone())?;
                }
                None
            }
            Source::Dir => {
                installable(to).map_err(|why| anyhow::anyhow!("`{}` {why}", spec.to))?;
                let mode = spec.mode.unwrap_or(0o755);
                if let Some((was, _)) = tree.set_dir(to, mode, place.owner.clone())? {
                    if was != mode {
                        place.changed.push((to.to_string(), was));
                    }
                }
                None
            }
            Source::Path { path } => {
                let src = recipe.project.join(path);
                ensure_within(&src, &recipe.project, "the file")?;
                let dest = destination(to, into_dir, &src)?;
                add_path(tree, &src, &dest, &mut place)?;
                Some(dest)
            }
            Source::Build { path } => {
                let out = build_dir(self.dist, recipe);
                let src = out.join(path);
                if !src.exists() {
                    return Err(crate::error::usage(format!(
                        "build output `{}` is missing (`{}`): run `builder build {}` first",
                        path.display(),
                        src.display(),
                        recipe.package.name
                    )));
                }
                ensure_within(&src, &out, "the build output")?;
                let dest = destination(to, into_dir, &src)?;
                add_path(tree, &src, &dest, &mut place)?;
                if src.is_dir() {
                    // The build cache's stamp is not an output.
                    let stamp = format!("{dest}/{}", crate::build::cache::STAMP);
                    tree.remove_prefix(stamp.trim_start_matches('/'));
                }
                Some(dest)
            }
            Source::Glob { pattern } => {
                let dir = to.trim_end_matches('/');
                for m in expand_glob(&recipe.project, pattern, &self.skip)? {
                    ensure_within(&m, &recipe.project, "the glob match")?;
                    let name = file_name(&m)?;
                    let dest = if dir.is_empty() {
                        name.to_string()
                    } else {
                        format!("{dir}/{name}")
                    };
                    add_path(tree, &m, &dest, &mut place)?;
                }
                None
            }
        };
        Ok(Added {
            single,
            changed: place.changed,
        })
    }

    /// The first of `specs` that installs `path` (or something below it).
    fn owner<'s>(&self, specs: &'s [FileSpec], path: &str) -> Option<&'s FileSpec> {
        specs.iter().find(|s| {
            let mut t = Tree::new();
            // A failing entry still shows what it added before failing.
            let _ = self.add_entry(s, &mut t);
            t.get(path).is_some()
        })
    }

    /// Turns a collision of something builder generates (`what`) with the `[[files]]`
    /// entries into a recipe error naming both sides; `fix` says how to resolve a
    /// duplicate path.
    fn collision(&self, what: &str, fix: &str, tree: &Tree, err: TreeError) -> anyhow::Error {
        let file = self.recipe.file.display();
        let files = &self.recipe.files;
        let msg = match &err {
            TreeError::Duplicate(key) => match self.owner(files, key) {
                Some(s) => format!(
                    "{what} goes to `/{key}`, but the [[files]] entry at line {} ({}) installs that path too: {fix}",
                    s.line,
                    describe(s)
                ),
                None => format!("{what} goes to `/{key}`, which is already in the package: {fix}"),
            },
            TreeError::ParentNotDir { path, parent } => {
                let kind = match tree.get(parent).map(|n| &n.kind) {
                    Some(NodeKind::Symlink(_)) => "a symlink",
                    _ => "a file",
                };
                match self.owner(files, parent) {
                    Some(s) => format!(
                        "{what} goes to `/{path}`, but the [[files]] entry at line {} ({}) installs `/{parent}` as {kind}, not a directory: change that entry's `to` so `/{parent}` stays a directory",
                        s.line,
                        describe(s)
                    ),
                    None => format!("{what} goes to `/{path}`, but `/{parent}` is {kind} in the package, not a directory"),
                }
            }
            TreeError::InvalidPath { .. } => format!("{what}: {err}"),
        };
        crate::error::usage(format!("{file}: {msg}"))
    }

    /// Expands the `[[files]]` entries into `tree`; returns the flagged conffiles.
    fn add_files(&self, tree: &mut Tree, reporter: &Reporter) -> anyhow::Result<Vec<String>> {
        let recipe = self.recipe;
        let mut conffiles = Vec::new();
        let mut dirs: HashMap<&str, &FileSpec> = HashMap::new();
        for (i, spec) in recipe.files.iter().enumerate() {
            if matches!(spec.source, Source::Dir) {
                let key = spec.to.trim_matches('/');
                if let Some(other) = dirs.insert(key, spec) {
                    return Err(entry_error(
                        recipe,
                        spec,
                        format!(
                            "the entry at line {} makes `/{key}` too: give each directory one `dir` entry",
                            other.line
                        ),
                    ));
                }
            }
            let added = self.add_entry(spec, tree).map_err(|e| {
                // Name the earlier entry a path collides with.
                let clash = e.chain().find_map(|c| match c.downcast_ref::<TreeError>() {
                    Some(TreeError::Duplicate(p)) => Some(p.clone()),
                    Some(TreeError::ParentNotDir { parent, .. }) => Some(parent.clone()),
                    _ => None,
                });
                match clash.and_then(|p| Some((self.owner(&recipe.files[..i], &p)?, p))) {
                    Some((other, p)) => entry_error(
                        recipe,
                        spec,
                        format!(
                            "{e:#}: `/{p}` comes from the entry at line {} ({}); install each path once",
                            other.line,
                            describe(other)
                        ),
                    ),
                    None => entry_error(recipe, spec, format!("{e:#}")),
                }
            })?;
            if let (Some(mode), false) = (spec.mode, added.changed.is_empty()) {
                let n = added.changed.len();
                let shown: Vec<String> = added
                    .changed
                    .iter()
                    .take(3)
                    .map(|(p, was)| format!("/{p} {was:04o} → {mode:04o}"))
                    .collect();
                reporter.info(format!(
                    "{}:{}: `mode = \"{mode:04o}\"` changes the mode {} had: {}{}",
                    recipe.file.display(),
                    spec.line,
                    if n == 1 {
                        "one path".to_string()
                    } else {
                        format!("{n} paths")
                    },
                    shown.join(", "),
                    if n > 3 { ", ..." } else { "" }
                ));
            }
            let dest = added.single;
            if spec.conffile {
                match dest.as_deref().and_then(|d| tree.get(d)) {
                    Some(node) if matches!(node.kind, NodeKind::File(_)) => {
                        conffiles.push(format!("/{}", dest.unwrap_or_default()))
                    }
                    _ => {
                        return Err(entry_error(
                            recipe,
                            spec,
                            format!("`conffile = true` needs the entry to install a single regular file, but `{}` is not one", spec.to),
                        ))
                    }
                }
            }
        }
        self.note_owners(reporter);
        Ok(conffiles)
    }

    /// Says which owners and groups are not Debian system accounts: dpkg gives their files
    /// to root unless the account exists when the package unpacks.
    fn note_owners(&self, reporter: &Reporter) {
        let recipe = self.recipe;
        let mut names: Vec<String> = Vec::new();
        for spec in &recipe.files {
            if let Some(u) = spec
                .owner
                .as_deref()
                .filter(|u| owners::user_id(u).is_none())
            {
                names.push(format!("user `{u}`"));
            }
            if let Some(g) = spec
                .group
                .as_deref()
                .filter(|g| owners::group_id(g).is_none())
            {
                names.push(format!("group `{g}`"));
            }
        }
        names.sort();
        names.dedup();
        if names.is_empty() {
            return;
        }
        let msg = format!(
            "{}: {} {} not a Debian system account: dpkg gives those files to it if it exists when the package unpacks, and to root otherwise",
            recipe.file.display(),
            names.join(", "),
            if names.len() == 1 { "is" } else { "are" }
        );
        if recipe.scripts.preinst.is_some() {
            reporter.info(msg);
        } else {
            reporter.warn(format!(
                "{msg}; create it in a `preinst` script (e.g. with `adduser --system`)"
            ));
        }
    }
}

fn gzip_n(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    // Like `gzip -9n`: no name, no timestamp, so the bytes depend only on the content.
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

/// `/usr/share/doc/<name>/copyright` (machine-readable format) and the changelog, which
/// Debian policy requires and lintian checks; skipped where the recipe ships its own.
/// Collisions with the `[[files]]` entries are recipe errors naming the entry.
fn add_docs(c: &Collector, tree: &mut Tree, mtime: u64) -> anyhow::Result<()> {
    let recipe = c.recipe;
    let p = &recipe.package;
    let doc = format!("usr/share/doc/{}", p.name);
    // Said for a duplicate path only, which the `is_none` checks below rule out today.
    let doc_fix = format!("ship your own file inside `/{doc}/` instead");
    if tree.get(&format!("{doc}/copyright")).is_none() {
        let mut text = format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: {}\n",
            p.name
        );
        if let Some(h) = &p.homepage {
            text.push_str(&format!("Source: {h}\n"));
        }
        let license = p.license.clone().unwrap_or_else(|| "other".to_string());
        let year = crate::timefmt::rfc3339_secs(mtime as i64)[..4].to_string();
        text.push_str(&format!(
            "\nFiles: *\nCopyright: {year} {}\nLicense: {license}\n",
            p.maintainer
        ));
        if p.license.is_none() {
            text.push_str(" No license was stated in the recipe; set `license` in [package].\n");
        }
        let added = tree.add_file(
            &format!("{doc}/copyright"),
            0o644,
            FileSource::Bytes(Arc::from(text.into_bytes())),
        );
        if let Err(e) = added {
            return Err(c.collision("the generated copyright file", &doc_fix, tree, e));
        }
    }
    if !p.lintian_overrides.is_empty() {
        let path = format!("usr/share/lintian/overrides/{}", p.name);
        let text: String = p
            .lintian_overrides
            .iter()
            .map(|t| format!("{}: {t}\n", p.name))
            .collect();
        let added = tree.add_file(
            &path,
            0o644,
            FileSource::Bytes(Arc::from(text.into_bytes())),
        );
        if let Err(e) = added {
            return Err(c.collision(
                "the lintian overrides file builder writes from `lintian-overrides` in [package]",
                "ship the overrides one way: remove that entry, or remove `lintian-overrides` from [package]",
                tree,
                e,
            ));
        }
    }
    // Policy 12.7: changelog.Debian.gz for non-native packages (with a revision), else changelog.gz.
    let name = if p.revision.is_some() {
        "changelog.Debian.gz"
    } else {
        "changelog.gz"
    };
    if tree.get(&format!("{doc}/{name}")).is_none() {
        let text = super::changelog::text(recipe, mtime)?;
        let added = tree.add_file(
            &format!("{doc}/{name}"),
            0o644,
            FileSource::Bytes(Arc::from(gzip_n(text.as_bytes())?)),
        );
        if let Err(e) = added {
            return Err(c.collision("the generated changelog", &doc_fix, tree, e));
        }
    }
    Ok(())
}

/// The control fields in the order dpkg-gencontrol writes them (Installed-Size is added by
/// the writer).
pub(super) fn control_fields(recipe: &Recipe) -> Vec<(String, String)> {
    let p = &recipe.package;
    let field = |n: &str, v: &str| (n.to_string(), v.to_string());
    let mut c = vec![field("Package", &p.name)];
    if let Some(s) = &p.source {
        c.push(field("Source", s));
    }
    c.push(field("Version", &p.version()));
    c.push(field("Architecture", &p.architecture));
    if p.essential {
        c.push(field("Essential", "yes"));
    }
    if p.protected {
        c.push(field("Protected", "yes"));
    }
    c.push(field("Maintainer", &p.maintainer));
    c.extend(with_generated_depends(
        &p.relations,
        &super::generated_depends(recipe),
    ));
    c.push(field("Section", &p.section));
    c.push(field("Priority", &p.priority));
    if let Some(m) = &p.multi_arch {
        c.push(field("Multi-Arch", m));
    }
    if let Some(h) = &p.homepage {
        c.push(field("Homepage", h));
    }
    c.push((
        "Description".to_string(),
        debian::format_description(&p.synopsis, &p.long_description),
    ));
    // dpkg-gencontrol writes the fields it does not know after the ones it orders.
    c.extend(p.user_fields.iter().cloned());
    c
}

/// `relations` with the Depends builder's generated scripts need added at the end of
/// `Depends` (after Pre-Depends when there was none), as `${misc:Depends}` adds them;
/// a relation the recipe lists already is not added twice.
fn with_generated_depends(
    relations: &[(String, String)],
    extra: &[String],
) -> Vec<(String, String)> {
    let mut out = relations.to_vec();
    let listed = |r: &str, e: &str| r.split(',').any(|x| x.trim() == e);
    let extra: Vec<&String> = match out.iter().find(|(f, _)| f == "Depends") {
        Some((_, v)) => extra.iter().filter(|e| !listed(v, e)).collect(),
        None => extra.iter().collect(),
    };
    if extra.is_empty() {
        return out;
    }
    let joined = extra
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match out.iter_mut().find(|(f, _)| f == "Depends") {
        Some((_, v)) => {
            v.push_str(", ");
            v.push_str(&joined);
        }
        None => {
            let at = usize::from(out.first().is_some_and(|(f, _)| f == "Pre-Depends"));
            out.insert(at, ("Depends".to_string(), joined));
        }
    }
    out
}

/// Everything needed to write the recipe's .deb.
pub(super) fn spec(
    recipe: &Recipe,
    dist: &Path,
    compression: Compression,
    mtime: u64,
    reporter: &Reporter,
) -> anyhow::Result<DebSpec> {
    let collector = Collector::new(recipe, dist);
    let mut tree = Tree::new();
    let mut conffiles = collector.add_files(&mut tree, reporter)?;
    for unit in &recipe.systemd {
        let src = recipe.project.join(&unit.path);
        let dest = format!("lib/systemd/system/{}", unit.name);
        if let Err(e) = tree.add_file(&dest, 0o644, FileSource::Path(src)) {
            return Err(collector.collision(
                &format!(
                    "the unit of `[[systemd]] unit = \"{}\"`",
                    unit.path.display()
                ),
                "remove that [[files]] entry, since [[systemd]] already installs the unit \
                 (and writes its maintainer-script snippets)",
                &tree,
                e,
            ));
        }
    }
    add_docs(&collector, &mut tree, mtime)?;
    // The entries' own paths were checked as they were collected; this catches what
    // builder generates from recipe names (systemd units, the doc directory).
    for (path, _) in tree.iter() {
        if let Err(why) = installable(path) {
            return Err(crate::error::usage(format!(
                "{}: the package would install `/{path}`, which {why}: shorten or rename it in the recipe",
                recipe.file.display()
            )));
        }
    }
    if recipe.package.etc_conffiles {
        for (path, node) in tree.iter() {
            if path.starts_with("etc/") && matches!(node.kind, NodeKind::File(_)) {
                conffiles.push(format!("/{path}"));
            }
        }
    }
    conffiles.sort();
    conffiles.dedup();

    let scripts = maintscripts::control_files(recipe)?;

    Ok(DebSpec {
        control: control_fields(recipe),
        data: tree,
        conffiles,
        scripts,
        compression,
        mtime,
    })
}

/// Every input file of a recipe, for the SOURCE_DATE_EPOCH fallback (the newest
/// modification time): the recipe, each regular file the `[[files]]` entries collect (from
/// trees, glob matches and build outputs too), the systemd units, the maintainer
/// scripts and the debconf files. Directories are left out: their times change when
/// builder writes `dist/`.
/// An entry that cannot be collected is skipped; [`spec`] reports it.
pub(super) fn inputs(recipe: &Recipe) -> Vec<PathBuf> {
    let dist = crate::project::Paths::new(recipe.project.clone()).dist;
    let collector = Collector::new(recipe, &dist);
    let mut v = vec![recipe.file.clone()];
    for spec in &recipe.files {
        let mut tree = Tree::new();
        let _ = collector.add_entry(spec, &mut tree);
        v.extend(tree.iter().filter_map(|(_, node)| match &node.kind {
            NodeKind::File(FileSource::Path(p)) => Some(p.clone()),
            _ => None,
        }));
    }
    v.extend(recipe.systemd.iter().map(|u| recipe.project.join(&u.path)));
    v.extend(maintscripts::inputs(recipe));
    if let crate::recipe::Changelog::File(c) = &recipe.package.changelog {
        v.push(recipe.project.join(c));
    }
    v
}
