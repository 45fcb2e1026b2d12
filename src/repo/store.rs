//! The on-disk layout of one environment repository and the mechanics that keep it
//! consistent: the lock, generations, the single-rename switch, pool writes, crash cleanup.
//!
//! ```text
//! <root>/<env>/
//!   .lock                         flock: one promoter at a time
//!   dists -> .generations/<n>/dists   the ONLY mutable pointer; replaced by rename(2)
//!   .generations/<n>/generation.json  what generation n holds (packages, index files, history)
//!   .generations/<n>/dists/<env>/...  Release, InRelease, Release.gpg, Packages{,.gz}, by-hash
//!   .generations/.tmp-<n>-<pid>/      a generation being written (removed on the next run)
//!   .generations/.tmp-gone-<n>-<pid>/ a generation being deleted (renamed first, so a
//!                                     numbered directory is always whole)
//!   pool/main/<p>/<source>/<file>.deb written once (temp + rename), never changed
//!   images/                       OCI layout; index.json -> ../dists/images-index.json
//!   signing-key.{gpg,asc}         -> dists/signing-key.{gpg,asc}
//!   history.jsonl                 one line per publish / rollback / prune
//! ```
//!
//! Everything a generation consists of (apt indexes, signatures, the public key, the image
//! index, its history entry and what a prune deletes) is inside its directory, so the one
//! `dists` rename switches all of it. `history.jsonl` and the deletions that follow are
//! derived from the current generation and completed by the next command
//! ([`complete_current`]) or `builder repo check --repair` when a run dies after its switch.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::history::HistoryEntry;
use super::index::IndexFile;
use super::PackageEntry;
use crate::report::Reporter;

/// What `.generations/<n>/generation.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GenerationMeta {
    pub number: u64,
    /// The generation `rollback` returns to from this one.
    pub previous: Option<u64>,
    pub packages: Vec<PackageEntry>,
    /// The index files this generation's `Release` lists (their by-hash copies are carried
    /// into the next generation).
    pub index_files: Vec<IndexFile>,
    pub history: HistoryEntry,
    /// The images `images/index.json` lists while this generation is current.
    #[serde(default)]
    pub images: Vec<super::images::ImageEntry>,
    /// Generations `prune` deletes once this one is current: the intent is committed with
    /// the switch, so a prune killed while deleting is finished by the next command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<u64>,
    /// Signed with another key than the generation current before it (`--rotate-key`):
    /// `repo check` takes any other change of key for a swap by hand.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub key_rotated: bool,
}

impl GenerationMeta {
    /// Adds the pool files and image blobs this generation needs to the two sets.
    pub(crate) fn collect_references(
        &self,
        files: &mut BTreeSet<String>,
        blobs: &mut BTreeSet<crate::digest::Digest>,
    ) {
        files.extend(self.packages.iter().map(|p| p.filename.clone()));
        blobs.extend(self.images.iter().flat_map(|i| i.blobs.iter().map(|b| b.0)));
    }
}

/// The empty file `complete_current` leaves in a generation once it has been current.
const PUBLISHED_MARKER: &str = "published";

/// Paths of one environment repository.
pub(crate) struct Layout {
    pub env_dir: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: &Path, env: &str) -> Self {
        Layout {
            env_dir: root.join(env),
        }
    }
    pub(crate) fn gens(&self) -> PathBuf {
        self.env_dir.join(".generations")
    }
    pub(crate) fn gen_dir(&self, n: u64) -> PathBuf {
        self.gens().join(n.to_string())
    }
    pub(crate) fn dists_link(&self) -> PathBuf {
        self.env_dir.join("dists")
    }
    pub(crate) fn history(&self) -> PathBuf {
        self.env_dir.join("history.jsonl")
    }
    /// `path` relative to `<env>/`, as messages show it.
    pub(crate) fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.env_dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// The current generation number, from the `dists` symlink; `None` for a new repository.
    pub(crate) fn current(&self) -> anyhow::Result<Option<u64>> {
        let link = self.dists_link();
        let meta = match fs::symlink_metadata(&link) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("could not read `{}`", link.display()))
            }
        };
        if !meta.file_type().is_symlink() {
            return Err(crate::error::failed(format!(
                "`{}` is not a symlink to a builder generation: this directory was not made by \
                 builder; use another `--root` or move it away",
                link.display()
            )));
        }
        let target = fs::read_link(&link)
            .with_context(|| format!("could not read symlink `{}`", link.display()))?;
        // Exactly `.generations/<n>/dists`: a link into another environment or anywhere else
        // is not this repository's generation.
        let parts: Vec<_> = target.components().collect();
        let n = match parts.as_slice() {
            [std::path::Component::Normal(g), std::path::Component::Normal(n), std::path::Component::Normal(d)]
                if *g == ".generations" && *d == "dists" =>
            {
                n.to_str().and_then(|n| n.parse::<u64>().ok())
            }
            _ => None,
        };
        let n = n.ok_or_else(|| {
            crate::error::failed(format!(
                "`{}` points to `{}`, which is not a generation of this repository (builder \
                 links it to `.generations/<n>/dists`)",
                link.display(),
                target.display()
            ))
        })?;
        Ok(Some(n))
    }

    /// Generation `n`'s `generation.json`, checked against where it is: a directory of its
    /// own (not a link out), holding its own number, its `previous` older than itself (so
    /// following `previous` always ends).
    pub(crate) fn read_meta(&self, n: u64) -> anyhow::Result<GenerationMeta> {
        let (path, text) = self.meta_bytes(n)?;
        let meta: GenerationMeta = serde_json::from_slice(&text)
            .with_context(|| format!("could not parse `{}`", path.display()))?;
        Self::placed(n, &path, meta)
    }

    /// The path and bytes of generation `n`'s `generation.json`, unless the generation is a
    /// link out of the repository.
    pub(super) fn meta_bytes(&self, n: u64) -> anyhow::Result<(PathBuf, Vec<u8>)> {
        let dir = self.gen_dir(n);
        if fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(crate::error::failed(format!(
                "`{}` is a symbolic link, not a generation of this repository",
                dir.display()
            )));
        }
        let path = dir.join("generation.json");
        let text = fs::read(&path).with_context(|| {
            format!(
                "could not read `{}`: generation {n} is missing (pruned?)",
                path.display()
            )
        })?;
        Ok((path, text))
    }

    /// `meta`, read from `path`, if it is generation `n`'s: its own number, a `previous`
    /// older than itself.
    pub(super) fn placed(
        n: u64,
        path: &Path,
        meta: GenerationMeta,
    ) -> anyhow::Result<GenerationMeta> {
        if meta.number != n || meta.previous.is_some_and(|p| p >= n) {
            return Err(crate::error::failed(format!(
                "`{}` is not generation {n}'s: it says number {} and previous {:?} (a \
                 generation's previous is older than itself)",
                path.display(),
                meta.number,
                meta.previous
            )));
        }
        Ok(meta)
    }

    /// Marks generation `n` as having been current: with the history, what tells a
    /// published generation from one a crash left before its switch. The marker is empty,
    /// so it is created in place: a kill leaves it there or not, never a temp file inside
    /// the generation (where no cleanup looks).
    fn mark_published(&self, n: u64) -> anyhow::Result<()> {
        let dir = self.gen_dir(n);
        let marker = dir.join(PUBLISHED_MARKER);
        if marker.exists() {
            return Ok(());
        }
        File::create(&marker)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("could not write `{}`", marker.display()))?;
        sync_dir(&dir)
    }

    /// Generations that have been current: recorded in the history, or marked when they
    /// were completed (a history line can be lost to a torn write; the marker is not).
    pub(crate) fn published(&self) -> anyhow::Result<BTreeSet<u64>> {
        let mut out: BTreeSet<u64> = super::history::read(self)?
            .iter()
            .map(|e| e.generation)
            .collect();
        for n in self.generation_numbers()? {
            if self.gen_dir(n).join(PUBLISHED_MARKER).exists() {
                out.insert(n);
            }
        }
        Ok(out)
    }

    /// Numbers of the complete generation directories.
    pub(crate) fn generation_numbers(&self) -> anyhow::Result<Vec<u64>> {
        let dir = self.gens();
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("could not list `{}`", dir.display())),
        };
        for ent in rd {
            let ent = ent.with_context(|| format!("could not list `{}`", dir.display()))?;
            if let Some(n) = ent.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Makes generation `n` current with one `rename(2)` of a fresh symlink over `dists`
    /// (the caller syncs `env_dir` afterwards).
    pub(crate) fn switch_to(&self, n: u64) -> anyhow::Result<()> {
        let tmp = self
            .env_dir
            .join(format!(".dists.tmp-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let target = PathBuf::from(".generations")
            .join(n.to_string())
            .join("dists");
        std::os::unix::fs::symlink(&target, &tmp)
            .with_context(|| format!("could not create symlink `{}`", tmp.display()))?;
        fs::rename(&tmp, self.dists_link()).with_context(|| {
            format!(
                "could not switch `{}` to generation {n}",
                self.dists_link().display()
            )
        })
        // The caller syncs the directory: once the rename is made the switch is visible,
        // and a failing sync must not report the served generation as not published.
    }
}

/// An exclusive `flock` on `<env>/.lock`, released on drop.
pub(crate) struct RepoLock {
    _lock: crate::fslock::FileLock,
}

impl RepoLock {
    pub(crate) fn acquire(layout: &Layout, reporter: &Reporter) -> anyhow::Result<Self> {
        fs::create_dir_all(&layout.env_dir).with_context(|| {
            format!("could not create repository `{}`", layout.env_dir.display())
        })?;
        let path = layout.env_dir.join(".lock");
        let lock = crate::fslock::FileLock::acquire(&path, || {
            reporter.status(
                "Waiting",
                format!("for another promoter to release `{}`", path.display()),
            )
        })?;
        Ok(RepoLock { _lock: lock })
    }
}

/// Where in a repository a temporary name is looked for: each place has its own names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TempPlace {
    /// `.generations/`: `.tmp-<n>-<pid>` (being written), `.tmp-gone-<n>-<pid>` (being
    /// deleted).
    Generations,
    /// `<env>/`: the `dists` switch and the key links.
    Env,
    /// `images/`: the index and the layout marker.
    Images,
    /// `images/blobs/sha256/`: blobs being copied.
    Blobs,
    /// `pool/…/`: .deb files being copied.
    Pool,
}

/// Whether `name` in `place` is exactly a temporary name builder gives (so, with the lock
/// held, the leftover of a command that did not finish). Anything else, however much it
/// looks like a temp (`.tmp-mine`, `.config.tmp-old`), is not builder's and never deleted.
pub(crate) fn is_leftover(place: TempPlace, name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // `<n>-<pid>` or `<pid>` or `<pid>-<seq>`.
    let numbers = |s: &str, parts: std::ops::RangeInclusive<usize>| {
        let v: Vec<&str> = s.split('-').collect();
        parts.contains(&v.len()) && v.iter().all(|p| digits(p))
    };
    if place == TempPlace::Generations {
        return name
            .strip_prefix(".tmp-gone-")
            .or_else(|| name.strip_prefix(".tmp-"))
            .is_some_and(|rest| numbers(rest, 2..=2));
    }
    let Some((stem, tail)) = name
        .strip_prefix('.')
        .and_then(|rest| rest.rsplit_once(".tmp-"))
    else {
        return false;
    };
    numbers(tail, 1..=2)
        && match place {
            TempPlace::Env => ["dists", "signing-key.gpg", "signing-key.asc"].contains(&stem),
            TempPlace::Images => ["index.json", "oci-layout"].contains(&stem),
            TempPlace::Blobs => stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()),
            TempPlace::Pool => stem.ends_with(".deb"),
            TempPlace::Generations => false,
        }
}

/// The directories that hold leftovers besides the pool (which is walked), with what
/// temporary names each may hold.
pub(crate) fn leftover_dirs(layout: &Layout) -> [(PathBuf, TempPlace); 4] {
    let images = super::images::images_dir(&layout.env_dir);
    [
        (layout.gens(), TempPlace::Generations),
        (layout.env_dir.clone(), TempPlace::Env),
        (images.join("blobs").join("sha256"), TempPlace::Blobs),
        (images, TempPlace::Images),
    ]
}

/// The parts of a repository that must be real directories (or files) inside it: builder
/// deletes in them, and never follows a link out of the repository to do so.
pub(crate) fn refuse_links(layout: &Layout) -> anyhow::Result<()> {
    let images = super::images::images_dir(&layout.env_dir);
    for p in [
        layout.gens(),
        layout.env_dir.join("pool"),
        images.clone(),
        images.join("blobs"),
        images.join("blobs").join("sha256"),
        layout.history(),
    ] {
        if fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(crate::error::failed(format!(
                "`{}` is a symbolic link: builder keeps all of a repository inside its \
                 directory and never follows a link out of it to write or delete; replace it \
                 with a directory (to use another disk, mount it at the repository root or \
                 pass `--root`)",
                p.display()
            )));
        }
    }
    Ok(())
}

/// Refuses to treat a directory builder did not make as a repository: with no current
/// generation, `<env>/` must be empty (its `.lock` and leftovers aside) or have
/// `.generations/`. Marks it as builder's (`.generations/`, synced) before anything is
/// copied into it, so the pool files of a first promotion that dies are known to be ours.
fn claim(layout: &Layout) -> anyhow::Result<()> {
    if layout.gens().is_dir() {
        return Ok(());
    }
    let foreign = foreign_entries(layout)?;
    if !foreign.is_empty() {
        return Err(crate::error::failed(format!(
            "`{}` is not a builder repository: it holds `{}` and no `.generations/`; builder \
             publishes into an empty directory or one it made, and never deletes what it did \
             not write: choose another `--root` (or `root` in promote.toml), or move these away",
            layout.env_dir.display(),
            foreign.join("`, `")
        )));
    }
    crate::durable::create_dir_all(&layout.gens())?;
    sync_dir(&layout.env_dir)
}

/// What `<env>/` holds besides the lock and leftovers (the first five names, sorted), when
/// it has neither `dists` nor `.generations/`: files builder did not write. Empty for a
/// directory that is builder's or empty.
pub(crate) fn foreign_entries(layout: &Layout) -> anyhow::Result<Vec<String>> {
    if layout.gens().is_dir() || fs::symlink_metadata(layout.dists_link()).is_ok() {
        return Ok(Vec::new());
    }
    let mut foreign: Vec<String> = fs::read_dir(&layout.env_dir)
        .with_context(|| format!("could not list `{}`", layout.env_dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock" && !is_leftover(TempPlace::Env, n))
        .collect();
    foreign.sort();
    foreign.truncate(5);
    Ok(foreign)
}

/// Whether complete generations newer than the current one (all of them when there is
/// none) show that `dists` was removed or pointed back by hand rather than left so by a
/// crash: one of them was published (history or marker), or they are not the single
/// generation a command that died before its switch leaves. Returns what to tell the user,
/// with how to recover: deleting them would lose releases.
pub(crate) fn rewound(
    layout: &Layout,
    current: Option<u64>,
    numbers: &[u64],
) -> anyhow::Result<Option<String>> {
    let newer: Vec<u64> = numbers
        .iter()
        .copied()
        .filter(|&n| current.is_none_or(|c| n > c))
        .collect();
    if newer.is_empty() {
        return Ok(None);
    }
    let published = layout.published()?;
    // A command that died before its switch leaves one generation, numbered one past the
    // current one (the next command cleans it before writing another): several, or
    // another number, cannot come from a crash.
    let expected = current.map_or(Some(1), |c| c.checked_add(1));
    let rewound = newer.iter().any(|n| published.contains(n))
        || newer.len() > 1
        || Some(newer[0]) != expected;
    if !rewound {
        return Ok(None);
    }
    let env = env_name(layout);
    let list = newer
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let what = match current {
        None => format!("`{}` is missing", layout.dists_link().display()),
        Some(c) => format!(
            "`{}` points at generation {c}, an older one",
            layout.dists_link().display()
        ),
    };
    Ok(Some(format!(
        "{what}, but generation(s) {list} were written after it and are not leftovers of a \
         crash: `dists` was changed by hand, so builder changes nothing rather than delete \
         releases; `builder repo check {env} --repair` points it at the newest generation \
         again (use `builder repo rollback` to serve an older one)"
    )))
}

/// Points `dists` at the newest generation whose `generation.json` reads, preferring those
/// the history records as published. For `repo check --repair` when `dists` was removed or
/// pointed back by hand. Returns the generation now current.
pub(crate) fn relink_newest(layout: &Layout) -> anyhow::Result<Option<u64>> {
    let published = layout.published()?;
    let readable: Vec<u64> = layout
        .generation_numbers()?
        .into_iter()
        .filter(|&n| layout.read_meta(n).is_ok())
        .collect();
    let pick = readable
        .iter()
        .rev()
        .find(|n| published.contains(n))
        .or(readable.last())
        .copied();
    if let Some(n) = pick {
        layout.switch_to(n)?;
        sync_dir(&layout.env_dir)?;
    }
    Ok(pick)
}

/// Removes what a crashed run left behind and completes what it committed. Call with the
/// lock held.
/// - temporary generations (being written or being deleted), symlinks and files;
/// - complete generations newer than the current one (written but never switched to);
/// - generations the current one's `sweep` names (a prune that died while deleting);
/// - pool files and blobs no generation references (copied by a run that died before its
///   switch, or left by an interrupted prune);
/// - the current generation's links and history line ([`complete_current`]).
///
/// It refuses, deleting nothing, when `<env>/` is not builder's or `dists` was changed by
/// hand.
pub(crate) fn clean_leftovers(layout: &Layout, reporter: &Reporter) -> anyhow::Result<()> {
    refuse_links(layout)?;
    let current = layout.current()?;
    if current.is_none() {
        claim(layout)?;
    }
    let numbers = layout.generation_numbers()?;
    if let Some(why) = rewound(layout, current, &numbers)? {
        return Err(crate::error::failed(why));
    }
    let mut removed = 0usize;
    for (dir, place) in leftover_dirs(layout) {
        if let Ok(rd) = fs::read_dir(&dir) {
            for ent in rd.flatten() {
                if is_leftover(place, &ent.file_name().to_string_lossy()) {
                    remove_any(&ent.path())?;
                    removed += 1;
                }
            }
        }
    }
    let current_meta = match current {
        Some(c) => Some(layout.read_meta(c).map_err(|e| {
            crate::error::failed(format!(
                "the current generation {c} of `{}` has no readable generation.json: {e:#}",
                layout.env_dir.display()
            ))
        })?),
        None => None,
    };
    if let Some(m) = &current_meta {
        for &n in &m.sweep {
            if n != m.number && layout.gen_dir(n).exists() {
                remove_generation(layout, n)?;
                removed += 1;
            }
        }
    }
    let mut referenced = BTreeSet::new();
    let mut blobs = BTreeSet::new();
    // An older generation whose generation.json cannot be read (damaged, or written by
    // another builder version) is a rollback target whose files are unknown: it is kept, and
    // nothing is deleted from the pool or the blobs this time. One whose damage is a digest
    // is read around it; only a damaged blob digest leaves its blobs unknown.
    let mut unknown = Vec::new();
    let mut blobs_unknown = false;
    for n in numbers {
        if current.is_none_or(|c| n > c) {
            remove_generation(layout, n)?;
            removed += 1;
            continue;
        }
        if current_meta
            .as_ref()
            .is_some_and(|m| m.sweep.contains(&n) && n != m.number)
        {
            continue;
        }
        match super::lenient::read_meta(layout, n) {
            Ok(m) => {
                m.collect_references(&mut referenced, &mut blobs);
                blobs_unknown |= !m.blobs_known;
                if !m.damage.is_empty() {
                    reporter.warn(format!(
                        "`{}`: {}; generation {n} is kept and read without {}; `builder repo \
                         check {}` says more",
                        m.file.display(),
                        m.damage
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; "),
                        if m.damage.len() == 1 {
                            "that entry"
                        } else {
                            "those entries"
                        },
                        env_name(layout)
                    ));
                }
            }
            Err(e) => unknown.push(format!("{n} ({e:#})")),
        }
    }
    if unknown.is_empty() {
        removed += remove_pool_files(layout, |rel| !referenced.contains(rel), true)?.len();
        if !blobs_unknown {
            removed += super::images::remove_unreferenced(&layout.env_dir, &blobs)?;
        }
    } else {
        reporter.warn(format!(
            "`{}`: generation(s) {} cannot be read; left alone, and unreferenced pool files \
             and blobs are kept until they can (`builder repo check {} --repair` removes them)",
            layout.env_dir.display(),
            unknown.join(", "),
            env_name(layout)
        ));
    }
    if removed > 0 {
        reporter.verbose(format!(
            "cleaned {removed} leftovers of an interrupted run in `{}`",
            layout.env_dir.display()
        ));
    }
    if let Some(m) = &current_meta {
        complete_current(layout, m)?;
    }
    Ok(())
}

/// The environment's name, as commands take it.
fn env_name(layout: &Layout) -> String {
    layout
        .env_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Armed, it undoes what a failing command added when dropped: its temporary generation,
/// and pool files and blobs no generation references ([`clean_leftovers`], quietly and best
/// effort: `repo check` finds what it could not remove). A command that fails before its
/// switch (a full disk, a bad blob) so leaves the environment as it found it. Declare it
/// after the lock, so it runs while the lock is held; [`UndoOnError::done`] disarms it.
pub(crate) struct UndoOnError<'a> {
    layout: &'a Layout,
    armed: bool,
}

impl<'a> UndoOnError<'a> {
    pub(crate) fn new(layout: &'a Layout) -> Self {
        UndoOnError {
            layout,
            armed: true,
        }
    }

    /// The command got through: nothing to undo.
    pub(crate) fn done(mut self) {
        self.armed = false;
    }
}

impl Drop for UndoOnError<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = clean_leftovers(self.layout, &Reporter::quiet());
        }
    }
}

/// What follows a switch, derived from the current generation and idempotent: the key files
/// and `images/index.json` pointing into `dists/`, and its history line. A run that died
/// after its switch is completed by the next one.
pub(crate) fn complete_current(layout: &Layout, meta: &GenerationMeta) -> anyhow::Result<()> {
    layout.mark_published(meta.number)?;
    super::link_generation_files(layout, &layout.dists_link(), meta)?;
    super::history::ensure_recorded(layout, &meta.history)
}

/// The pool files there are (relative paths, temps left out).
pub(crate) fn pool_files(layout: &Layout) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let pool = layout.env_dir.join("pool");
    if !pool.exists() {
        return Ok(out);
    }
    for ent in walkdir::WalkDir::new(&pool) {
        let ent = ent.with_context(|| format!("could not list `{}`", pool.display()))?;
        let name = ent.file_name().to_string_lossy();
        if ent.file_type().is_file() && !name.starts_with('.') {
            if let Ok(rel) = ent.path().strip_prefix(&layout.env_dir) {
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    Ok(out)
}

/// Deletes pool files (and `.tmp-` files when `temps`) for which `doomed(relative path)`
/// holds; returns the relative paths removed.
pub(crate) fn remove_pool_files(
    layout: &Layout,
    doomed: impl Fn(&str) -> bool,
    temps: bool,
) -> anyhow::Result<Vec<String>> {
    let pool = layout.env_dir.join("pool");
    let mut out = Vec::new();
    if !pool.exists() {
        return Ok(out);
    }
    for ent in walkdir::WalkDir::new(&pool).contents_first(true) {
        let ent = ent.with_context(|| format!("could not list `{}`", pool.display()))?;
        let path = ent.path();
        if ent.file_type().is_dir() {
            if path != pool {
                // Only succeeds when empty.
                let _ = fs::remove_dir(path);
            }
            continue;
        }
        let rel = path
            .strip_prefix(&layout.env_dir)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = ent.file_name().to_string_lossy().into_owned();
        let is_temp = is_leftover(TempPlace::Pool, &name);
        if (temps && is_temp) || (!is_temp && doomed(&rel)) {
            fs::remove_file(path)
                .with_context(|| format!("could not remove `{}`", path.display()))?;
            if !is_temp {
                out.push(rel);
            }
        }
    }
    Ok(out)
}

pub(crate) fn remove_any(path: &Path) -> anyhow::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
    .with_context(|| format!("could not remove `{}`", path.display()))
}

/// Deletes generation `n`: renamed out of the numbered names first (one atomic step), so a
/// kill leaves either the whole generation or a `.tmp-gone-` directory the next run removes.
pub(crate) fn remove_generation(layout: &Layout, n: u64) -> anyhow::Result<()> {
    let dir = layout.gen_dir(n);
    if fs::symlink_metadata(&dir).is_err() {
        return Ok(());
    }
    let gone = layout
        .gens()
        .join(format!(".tmp-gone-{n}-{}", std::process::id()));
    remove_any(&gone)?;
    crate::durable::rename(&dir, &gone)?;
    remove_any(&gone)
}

/// Opens `path` for reading if it is a regular file: a FIFO or a device put where a pool
/// file or blob belongs would block or never end.
pub(crate) fn open_regular(path: &Path) -> anyhow::Result<File> {
    let meta =
        fs::metadata(path).with_context(|| format!("could not read `{}`", path.display()))?;
    if !meta.is_file() {
        return Err(crate::error::failed(format!(
            "`{}` is not a regular file",
            path.display()
        )));
    }
    File::open(path).with_context(|| format!("could not read `{}`", path.display()))
}

/// Whether `p`'s pool file still holds the bytes its generation published; the error says
/// what is wrong with it (images have [`super::images::verify_stored`]).
pub(crate) fn verify_pool_file(layout: &Layout, p: &PackageEntry) -> Result<(), String> {
    match digest_file(&layout.env_dir.join(&p.filename)) {
        Ok((sha, _, _)) if sha == p.sha256 => Ok(()),
        Ok((sha, _, _)) => Err(format!(
            "has sha256 {}, not the published {}",
            sha.hex(),
            p.sha256.hex()
        )),
        Err(e) => Err(format!("cannot be read ({e:#})")),
    }
}

/// `(sha256, md5 hex, size)` of a file, streamed.
pub(crate) fn digest_file(path: &Path) -> anyhow::Result<(crate::digest::Digest, String, u64)> {
    let mut f = open_regular(path)?;
    let mut sha = Sha256::new();
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("could not read `{}`", path.display()))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
        size += n as u64;
    }
    Ok((
        crate::digest::Digest::from_bytes(sha.finalize().into()),
        hex::encode(md5.finalize()),
        size,
    ))
}

/// Copies `src` (whose bytes must have sha256 `sha256`) into the pool at `rel`. A file
/// already there with those bytes is kept; one with other bytes is damage when no generation
/// published other bytes under that name (it is copied anew: [`PoolPut::Repaired`]), and an
/// error when one did (a published name+version+architecture never changes).
pub(crate) fn put_pool_file(
    layout: &Layout,
    src: &Path,
    rel: &str,
    sha256: &crate::digest::Digest,
) -> anyhow::Result<PoolPut> {
    let dest = layout.env_dir.join(rel);
    if fs::symlink_metadata(&dest).is_err() {
        install_verified(src, &dest, sha256)?;
        return Ok(PoolPut::Copied);
    }
    if digest_file(&dest).is_ok_and(|(have, _, _)| have == *sha256) {
        return Ok(PoolPut::Present);
    }
    let published = layout.generation_numbers()?.into_iter().find_map(|n| {
        let meta = layout.read_meta(n).ok()?;
        let p = meta.packages.into_iter().find(|p| p.filename == rel)?;
        Some((n, p.sha256))
    });
    if let Some((n, other)) = published.filter(|(_, other)| other != sha256) {
        return Err(crate::error::failed(format!(
            "`{}` is already published with other content (sha256 {}, generation {n}; \
             new {}): a published name+version+architecture never changes; bump the \
             version",
            dest.display(),
            other.hex(),
            sha256.hex()
        )));
    }
    remove_any(&dest)?;
    install_verified(src, &dest, sha256)?;
    Ok(PoolPut::Repaired)
}

/// What [`put_pool_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolPut {
    /// The pool already held these bytes.
    Present,
    /// The file was new.
    Copied,
    /// The file there was damaged (missing bytes, flipped bits) and was copied anew.
    Repaired,
}

/// Copies `src` to `dest` through a temp file beside it, checks the copy's sha256 and
/// renames it into place (replacing whatever is there, atomically).
fn install_verified(src: &Path, dest: &Path, sha256: &crate::digest::Digest) -> anyhow::Result<()> {
    let mut out = crate::durable::AtomicFile::create(dest, crate::durable::PUBLIC)?;
    let mut from =
        File::open(src).with_context(|| format!("could not read `{}`", src.display()))?;
    std::io::copy(&mut from, out.file())
        .with_context(|| format!("could not copy `{}` to `{}`", src.display(), dest.display()))?;
    // The bytes that land in the pool are the ones that were checked: `src` may have been
    // rewritten (a concurrent `builder package`) since its hash was compared.
    let (copied, _, _) = digest_file(out.temp_path())?;
    if copied != *sha256 {
        return Err(crate::error::failed(format!(
            "`{}` changed while it was being published (sha256 {}, checked {}): nothing was \
             published; run the promotion again",
            src.display(),
            copied.hex(),
            sha256.hex()
        )));
    }
    out.commit()
}

/// Writes a file inside a staging generation (no temp needed: nothing reads it before the
/// generation's rename), syncing the file and its directory.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::durable::create_dir_all(dir)?;
    let mut f =
        File::create(path).with_context(|| format!("could not create `{}`", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("could not write `{}`", path.display()))?;
    sync_dir(dir)
}

pub(crate) use crate::durable::sync_dir;

/// What apt would refuse in generation `meta` of environment `env`: `Release`,
/// `InRelease` and `Release.gpg` must be there and signed by the key the generation
/// publishes (`dists/signing-key.gpg`), `InRelease` must sign `Release`'s text, and every
/// index file must hold the hashes `Release` lists. One line per problem, paths relative to
/// `<env>/`; empty when the generation is whole.
pub(crate) fn index_damage(layout: &Layout, env: &str, meta: &GenerationMeta) -> Vec<String> {
    let rel = |p: &Path| layout.rel(p);
    let gen_dists = layout.gen_dir(meta.number).join("dists");
    let dists = gen_dists.join(env);
    let mut out = Vec::new();
    let mut read = |name: &str| match fs::read(dists.join(name)) {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            out.push(format!("`{}` is missing or empty", rel(&dists.join(name))));
            None
        }
    };
    let (release, inrelease, detached) = (read("Release"), read("InRelease"), read("Release.gpg"));
    let key_path = gen_dists.join(super::KEY_FILES[0]);
    let verifier = fs::read(&key_path)
        .map_err(anyhow::Error::from)
        .and_then(|b| crate::sign::Verifier::from_keyring(&b));
    match (&verifier, &release) {
        (Err(e), _) => out.push(format!(
            "`{}`, the key this generation is signed with, cannot be read ({e:#})",
            rel(&key_path)
        )),
        (Ok(v), Some(release)) => {
            if let Some(sig) = &detached {
                if let Err(e) = v.verify_detached(release, sig) {
                    out.push(format!(
                        "`{}` does not verify: {e:#}",
                        rel(&dists.join("Release.gpg"))
                    ));
                }
            }
            if let Some(signed) = &inrelease {
                match v.verify_clearsigned(signed) {
                    Err(e) => out.push(format!(
                        "`{}` does not verify: {e:#}",
                        rel(&dists.join("InRelease"))
                    )),
                    Ok(text) if text.trim_end().as_bytes() != release.trim_ascii_end() => {
                        out.push(format!(
                            "`{}` signs another text than `{}`",
                            rel(&dists.join("InRelease")),
                            rel(&dists.join("Release"))
                        ))
                    }
                    Ok(_) => {}
                }
            }
        }
        (Ok(_), None) => {}
    }
    for f in &meta.index_files {
        let p = dists.join(&f.path);
        if !digest_file(&p).is_ok_and(|(sha, _, _)| sha == f.sha256) {
            out.push(format!(
                "`{}` is missing or not the file `Release` lists (sha256 {})",
                rel(&p),
                f.sha256.hex()
            ));
        }
        // `Acquire-By-Hash: yes`: apt fetches these copies, not the file above.
        let by_hash = dists.join(f.dir()).join("by-hash");
        for (algo, sum) in [("SHA256", f.sha256.hex()), ("MD5Sum", f.md5.clone())] {
            let p = by_hash.join(algo).join(sum);
            let ok = digest_file(&p).is_ok_and(|(sha, md5, _)| sha == f.sha256 && md5 == f.md5);
            if !ok {
                out.push(format!(
                    "`{}` is missing or not the `{}` that `Release` lists (apt fetches it by \
                     hash)",
                    rel(&p),
                    f.path
                ));
            }
        }
    }
    out
}
