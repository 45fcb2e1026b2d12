//! `builder lock`: every package set of a project (each `packages` base, each image's
//! dependency layer) resolved into builder.lock, and `--check`, which compares the lock
//! with the recipes and bases without the network (for CI, like `cargo --locked`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use super::lock::{Lock, SetKind};
use super::sets::SetRequest;
use crate::base::{BaseImages, BaseKind};
use crate::recipe::Recipe;
use crate::report::Reporter;

/// What `builder lock` does.
#[derive(Debug, Clone, Default)]
pub(crate) struct LockOptions {
    /// `--update [PKG...]`: `Some(empty)` re-resolves everything against today's archive;
    /// `Some(names)` lets only these packages move.
    pub update: Option<BTreeSet<String>>,
}

/// The state of one set against the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SetState {
    /// The lock matches the inputs.
    Current,
    /// The lock has no entry.
    Missing,
    /// The entry was resolved from other inputs.
    Stale,
    /// The lock has an entry no base or recipe uses.
    Unused,
    /// The entry's inputs match, but it lacks a package its roots name: the file was edited.
    Edited,
    /// The entry's inputs match, but it lacks a library that `${shlibs:Depends}` finds in
    /// the recipe's built files: `builder lock` after `builder build` adds it.
    Incomplete,
    /// Resolved in this run.
    Resolved,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SetStatus {
    pub kind: SetKind,
    pub name: String,
    pub state: SetState,
    pub packages: usize,
    /// `name version` added and removed in this run.
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LockReport {
    pub file: String,
    pub sets: Vec<SetStatus>,
    pub packages: usize,
    /// For `--check`: whether the lock matches.
    pub up_to_date: bool,
}

/// One set of a project: `(kind, name, request without installed packages, base of an
/// image)`.
type ProjectSet = (SetKind, String, SetRequest, Option<String>);

/// The sets of `kind` (`None`: all) a project has.
fn project_sets(
    recipes: &[Recipe],
    bases: &BaseImages,
    kind: Option<SetKind>,
    reporter: &Reporter,
) -> anyhow::Result<Vec<ProjectSet>> {
    let mut out = Vec::new();
    for name in bases.names() {
        if kind == Some(SetKind::Image) {
            break;
        }
        if matches!(
            bases.get(&name).map(|d| &d.kind),
            Some(BaseKind::Packages { .. } | BaseKind::Debootstrap { .. })
        ) {
            out.push((SetKind::Base, name.clone(), bases.set_request(&name)?, None));
        }
    }
    for r in recipes {
        let Some(spec) = &r.image else { continue };
        if bases.get(&spec.base).is_none() || kind == Some(SetKind::Base) {
            continue;
        }
        // `${shlibs:Depends}` is known only once the files are built: the set is keyed by
        // the rest, and holds what it expands to when the recipe is built (else `package`
        // adds it, and `--locked` refuses).
        let relations = match crate::package::shlibs::expand_built(r, bases, reporter)? {
            Some(expanded) => expanded,
            None => crate::package::shlibs::without_substvars(&r.package.relations),
        };
        let req = crate::image::deps::set_request(r, spec, &relations, bases, &spec.base)?;
        out.push((
            SetKind::Image,
            crate::image::deps::set_name(r, spec, &spec.base),
            req,
            Some(spec.base.clone()),
        ));
    }
    Ok(out)
}

/// Compares the lock with the project (no network). Unused entries are reported too.
pub(crate) fn drift(recipes: &[Recipe], bases: &BaseImages) -> anyhow::Result<Vec<SetStatus>> {
    let identity = bases.locker().config()?.identity();
    let lock = bases.locker().snapshot();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let quiet = Reporter::quiet();
    for (kind, name, req, base) in project_sets(recipes, bases, None, &quiet)? {
        let inputs = req.inputs(kind, &identity);
        let entry = lock.as_ref().and_then(|l| l.set(kind, &name));
        let state = match (entry, &lock) {
            (None, _) => SetState::Missing,
            (Some(s), Some(l)) if s.inputs == inputs && l.archive == identity => {
                shortfall(l, s, &req, base.as_deref()).unwrap_or(SetState::Current)
            }
            (Some(_), _) => SetState::Stale,
        };
        seen.insert((kind, name.clone()));
        out.push(SetStatus {
            kind,
            name,
            state,
            packages: entry.map_or(0, |s| s.packages.len()),
            added: vec![],
            removed: vec![],
        });
    }
    if let Some(l) = &lock {
        for s in &l.sets {
            if !seen.contains(&(s.kind, s.name.clone())) && !is_rebase_set(s, recipes, bases) {
                out.push(SetStatus {
                    kind: s.kind,
                    name: s.name.clone(),
                    state: SetState::Unused,
                    packages: s.packages.len(),
                    added: vec![],
                    removed: vec![],
                });
            }
        }
    }
    Ok(out)
}

/// How a lock entry whose inputs match falls short of its set, with, for an image, its
/// base's locked packages: `Edited` when it lacks a root its definition names (see
/// [`super::sets::root_gap`]), `Incomplete` when it lacks one `${shlibs:Depends}` found in
/// the built files ([`super::sets::computed_gap`]).
fn shortfall(
    lock: &Lock,
    set: &super::lock::LockedSet,
    req: &SetRequest,
    base: Option<&str>,
) -> Option<SetState> {
    let below = base.and_then(|b| lock.set(SetKind::Base, b));
    let have: BTreeMap<&str, &str> = set
        .packages
        .iter()
        .chain(below.iter().flat_map(|b| b.packages.iter()))
        .filter_map(|id| id.split_once(' '))
        .collect();
    let names = have.keys().copied().collect();
    if super::sets::root_gap(req, &names, lock).is_some() {
        Some(SetState::Edited)
    } else if super::sets::computed_gap(req, &have).is_some() {
        Some(SetState::Incomplete)
    } else {
        None
    }
}

/// Whether `s` is the set of a rebased image (`package --rebase NAME --base OTHER` locks
/// `NAME@OTHER`) of a recipe and base that still exist.
fn is_rebase_set(s: &super::lock::LockedSet, recipes: &[Recipe], bases: &BaseImages) -> bool {
    let Some((pkg, base)) = s.name.split_once('@') else {
        return false;
    };
    s.kind == SetKind::Image
        && bases.get(base).is_some()
        && recipes
            .iter()
            .any(|r| r.package.name == pkg && r.image.is_some())
}

/// `builder lock --check`.
pub(crate) fn check(recipes: &[Recipe], bases: &BaseImages) -> anyhow::Result<LockReport> {
    let sets = drift(recipes, bases)?;
    let up_to_date = sets.iter().all(|s| s.state == SetState::Current);
    Ok(LockReport {
        file: super::lock::FILE.to_string(),
        packages: bases.locker().snapshot().map_or(0, |l| l.packages.len()),
        sets,
        up_to_date,
    })
}

/// `builder lock [--update [PKG...]]`: resolves what is missing or stale (or everything
/// asked to update), drops unused entries, writes builder.lock.
pub(crate) async fn lock(
    recipes: &[Recipe],
    bases: &BaseImages,
    opts: &LockOptions,
    reporter: &Reporter,
) -> anyhow::Result<LockReport> {
    let locker = bases.locker();
    let before = locker.snapshot();
    let identity = locker.config()?.identity();
    if let Some(names) = opts.update.as_ref().filter(|n| !n.is_empty()) {
        // Every name must be something the lock holds.
        let known: BTreeSet<String> = before
            .iter()
            .flat_map(|l| l.packages.iter().map(|p| p.name.clone()))
            .collect();
        if let Some(n) = names.iter().find(|n| !known.contains(*n)) {
            return Err(crate::error::usage(format!(
                "`{n}` is not in {}; `--update` takes names of locked packages",
                super::lock::FILE
            )));
        }
    }
    let mut statuses = Vec::new();
    let mut keep = BTreeSet::new();
    // Bases first: an image's inputs include its base's content hash, which follows the
    // base's lock entry, so the images' requests are computed once the bases are locked.
    for kind in [SetKind::Base, SetKind::Image] {
        for set in project_sets(recipes, bases, Some(kind), reporter)? {
            keep.insert((set.0, set.1.clone()));
            statuses.push(lock_one(bases, set, opts, before.as_ref(), reporter).await?);
        }
    }
    // Drop what no base or recipe uses any more (and write a lock even when nothing
    // resolved, so `builder lock` always leaves one).
    if let Some(l) = locker.snapshot() {
        for s in l.sets.iter().filter(|s| is_rebase_set(s, recipes, bases)) {
            keep.insert((s.kind, s.name.clone()));
        }
    }
    let unused = locker.snapshot().is_some_and(|l| {
        l.sets
            .iter()
            .any(|s| !keep.contains(&(s.kind, s.name.clone())))
    });
    if unused || locker.snapshot().is_none() {
        locker.store(&identity, |l: &mut Lock| l.retain_sets(&keep))?;
    }
    Ok(LockReport {
        file: super::lock::FILE.to_string(),
        packages: locker.snapshot().map_or(0, |l| l.packages.len()),
        sets: statuses,
        up_to_date: true,
    })
}

/// Locks one set unless it is current and not asked to update.
async fn lock_one(
    bases: &BaseImages,
    (kind, name, mut req, base): ProjectSet,
    opts: &LockOptions,
    before: Option<&Lock>,
    reporter: &Reporter,
) -> anyhow::Result<SetStatus> {
    let locker = bases.locker();
    let inputs = req.inputs(kind, &locker.config()?.identity());
    let edited = locker.snapshot().is_some_and(|l| {
        l.set(kind, &name)
            .is_some_and(|set| shortfall(&l, set, &req, base.as_deref()).is_some())
    });
    let current = locker.current(kind, &name, &inputs).filter(|_| !edited);
    let wanted = match (&opts.update, &current) {
        (None, Some(_)) => false,
        (Some(names), Some(cur)) if !names.is_empty() => {
            cur.packages.iter().any(|p| names.contains(&p.name))
        }
        _ => true,
    };
    if !wanted {
        return Ok(SetStatus {
            kind,
            name,
            state: SetState::Current,
            packages: current.map_or(0, |c| c.packages.len()),
            added: vec![],
            removed: vec![],
        });
    }
    let resolved = match kind {
        SetKind::Base => {
            let b = bases.clone();
            let (n, u, r) = (name.clone(), opts.update.clone(), reporter.clone());
            tokio::task::spawn_blocking(move || b.ensure_locked_with(&n, u.as_ref(), &r))
                .await
                .map_err(|e| anyhow::anyhow!("the lock task failed: {e}"))??
        }
        SetKind::Image => {
            req.installed = installed_of_base(bases, &base.unwrap_or_default(), reporter).await?;
            locker
                .ensure(kind, &name, &req, opts.update.as_ref(), reporter)
                .await?
        }
    };
    let old: BTreeSet<String> = before
        .and_then(|l| l.set(kind, &name))
        .map(|s| s.packages.iter().cloned().collect())
        .unwrap_or_default();
    let new: BTreeSet<String> = resolved.set.packages.iter().cloned().collect();
    Ok(SetStatus {
        kind,
        name,
        state: SetState::Resolved,
        packages: new.len(),
        added: new.difference(&old).cloned().collect(),
        removed: old.difference(&new).cloned().collect(),
    })
}

/// What a base holds, for resolving an image on it: a `packages` base's locked packages as
/// the index describes them, else the dpkg database of its rootfs (made if needed).
async fn installed_of_base(
    bases: &BaseImages,
    base: &str,
    reporter: &Reporter,
) -> anyhow::Result<BTreeMap<String, Arc<super::index::Package>>> {
    if matches!(
        bases.get(base).map(|d| &d.kind),
        Some(BaseKind::Packages { .. } | BaseKind::Debootstrap { .. })
    ) {
        let b = bases.clone();
        let (n, r) = (base.to_string(), reporter.clone());
        let set = tokio::task::spawn_blocking(move || b.ensure_locked(&n, &r))
            .await
            .map_err(|e| anyhow::anyhow!("the lock task failed: {e}"))??;
        let index = bases.locker().index(reporter).await?;
        let found: Option<BTreeMap<_, _>> = set
            .packages
            .iter()
            .map(|p| {
                index
                    .find(&p.name, &p.version)
                    .map(|pkg| (p.name.clone(), pkg))
            })
            .collect();
        if let Some(found) = found {
            return Ok(found);
        }
    }
    let b = bases.clone();
    let (n, r) = (base.to_string(), reporter.clone());
    let rootfs = tokio::task::spawn_blocking(move || b.rootfs(&n, &r))
        .await
        .map_err(|e| anyhow::anyhow!("the rootfs task failed: {e}"))??;
    let listing = crate::image::BaseListing::read(&rootfs.tar)?;
    crate::image::deps::installed_of(&listing)
}
