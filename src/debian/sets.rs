//! Package sets against `builder.lock`: a set whose lock entry still matches its inputs is
//! used as locked (no index is read); otherwise it is resolved against the archive, keeping
//! the locked versions that still fit, and the lock is updated, unless `--locked` forbids
//! changing it. Every lock update happens under a file lock with the lock file read again,
//! so concurrent builders never lose each other's entries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::archive::Archive;
use super::index::{Index, Package};
use super::lock::{inputs_digest, Lock, LockedPackage, LockedSet, SetKind};
use super::relation::Relation;
use super::resolve::{self, Request};
use super::source::{ArchiveConfig, Identity};
use crate::report::Reporter;

static FROZEN: AtomicBool = AtomicBool::new(false);

/// `--locked`: any change to builder.lock is an error.
pub(crate) fn set_frozen(on: bool) {
    FROZEN.store(on, Ordering::SeqCst);
}

pub(crate) fn frozen() -> bool {
    FROZEN.load(Ordering::SeqCst)
}

/// What a set is resolved from.
#[derive(Debug, Clone, Default)]
pub struct SetRequest {
    pub roots: Vec<(Relation, String)>,
    pub exclude: BTreeSet<String>,
    /// Every package of these priorities (`required`, `important`) in the first suite too,
    /// as debootstrap takes them.
    pub priorities: Vec<String>,
    /// What lies below (an image's base), by name.
    pub installed: BTreeMap<String, Arc<Package>>,
    /// Identity of what lies below, for the inputs (`""` for a base).
    pub below: String,
    /// Roots found in the built files (what `${shlibs:Depends}` expanded to), resolved with
    /// `roots` but not part of the inputs: the lock entry is keyed by what the recipe says,
    /// known before anything is built, and must hold these too ([`computed_gap`]).
    pub computed: Vec<(Relation, String)>,
}

impl SetRequest {
    /// What the set is resolved from: the roots, then the computed roots.
    fn all_roots(&self) -> Vec<(Relation, String)> {
        self.roots.iter().chain(&self.computed).cloned().collect()
    }

    /// The `inputs` digest of this request for `identity`.
    pub fn inputs(&self, kind: SetKind, identity: &Identity) -> String {
        let mut roots: Vec<String> = self.roots.iter().map(|(r, _)| r.to_string()).collect();
        roots.sort();
        roots.dedup();
        inputs_digest(&json!({
            "format": 1,
            "kind": kind,
            "archive": identity,
            "roots": roots,
            "exclude": self.exclude,
            "priorities": self.priorities,
            "below": self.below,
        }))
    }
}

/// A computed root of `req` (see [`SetRequest::computed`]) that no package of `have`
/// (name → version: the set's packages and what lies below) meets, by name and version.
pub(crate) fn computed_gap(req: &SetRequest, have: &BTreeMap<&str, &str>) -> Option<String> {
    req.computed
        .iter()
        .find(|(rel, _)| {
            !rel.0.iter().any(|a| {
                req.exclude.contains(&a.name)
                    || have.get(a.name.as_str()).is_some_and(|v| a.version_ok(v))
            })
        })
        .map(|(rel, _)| rel.to_string())
}

/// A root relation of `req` that no package in `have` meets by name, when `lock` knows
/// every name of it as a package (a virtual name cannot be judged without the index): a
/// current lock entry with such a gap was edited by hand.
pub(crate) fn root_gap(req: &SetRequest, have: &BTreeSet<&str>, lock: &Lock) -> Option<String> {
    let known: BTreeSet<&str> = lock.packages.iter().map(|p| p.name.as_str()).collect();
    req.roots
        .iter()
        .find(|(rel, _)| {
            !rel.0
                .iter()
                .any(|a| have.contains(a.name.as_str()) || req.exclude.contains(&a.name))
                && rel.0.iter().all(|a| known.contains(a.name.as_str()))
        })
        .map(|(rel, _)| rel.to_string())
}

/// A set as used: its lock entry and packages.
#[derive(Debug, Clone)]
pub struct ResolvedSet {
    pub set: LockedSet,
    pub packages: Vec<LockedPackage>,
    /// Why each package is in, when it was resolved in this run.
    pub needed_by: BTreeMap<String, String>,
    /// Resolved now (the lock changed).
    pub changed: bool,
}

/// The project's lock and, when needed, the archive.
pub struct Locker {
    project: PathBuf,
    config: Mutex<Option<ArchiveConfig>>,
    index: tokio::sync::Mutex<Option<Arc<Index>>>,
    lock: Mutex<Option<Lock>>,
}

impl Locker {
    /// Reads the project's builder.lock (a damaged one is an error).
    pub fn load(project: &Path) -> anyhow::Result<Locker> {
        Ok(Locker {
            project: project.to_path_buf(),
            config: Mutex::new(None),
            index: tokio::sync::Mutex::new(None),
            lock: Mutex::new(Lock::read(project)?),
        })
    }

    /// The archive configuration (archive.toml or the host's apt sources).
    pub fn config(&self) -> anyhow::Result<ArchiveConfig> {
        let mut c = self.config.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = &*c {
            return Ok(c.clone());
        }
        let loaded = ArchiveConfig::load(&self.project)?;
        *c = Some(loaded.clone());
        Ok(loaded)
    }

    pub fn archive(&self) -> anyhow::Result<Archive> {
        Archive::new(self.config()?)
    }

    /// The verified index, read once per process.
    pub async fn index(&self, reporter: &Reporter) -> anyhow::Result<Arc<Index>> {
        let mut guard = self.index.lock().await;
        if let Some(i) = &*guard {
            return Ok(i.clone());
        }
        let i = Arc::new(self.archive()?.index(reporter).await?);
        *guard = Some(i.clone());
        Ok(i)
    }

    /// The lock as currently known.
    pub fn snapshot(&self) -> Option<Lock> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The locked set `kind name` when its inputs are `inputs`.
    pub fn current(&self, kind: SetKind, name: &str, inputs: &str) -> Option<ResolvedSet> {
        let lock = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let lock = lock.as_ref()?;
        let set = lock.set(kind, name).filter(|s| s.inputs == inputs)?;
        Some(ResolvedSet {
            set: set.clone(),
            packages: lock.packages_of(set),
            needed_by: BTreeMap::new(),
            changed: false,
        })
    }

    /// The set, from the lock when current, else resolved (and the lock updated).
    /// `update`: names whose locked version is dropped (`None`: keep every locked version
    /// that fits; `Some(empty)`: drop all).
    pub async fn ensure(
        &self,
        kind: SetKind,
        name: &str,
        req: &SetRequest,
        update: Option<&BTreeSet<String>>,
        reporter: &Reporter,
    ) -> anyhow::Result<ResolvedSet> {
        let identity = self.config()?.identity();
        let inputs = req.inputs(kind, &identity);
        let mut edited = false;
        let mut lacking = None;
        if update.is_none() {
            if let Some(s) = self.current(kind, name, &inputs) {
                let lock = self
                    .snapshot()
                    .unwrap_or_else(|| Lock::new(identity.clone()));
                let mut have: BTreeSet<&str> = s.packages.iter().map(|p| p.name.as_str()).collect();
                have.extend(req.installed.keys().map(String::as_str));
                let mut versions: BTreeMap<&str, &str> = s
                    .packages
                    .iter()
                    .map(|p| (p.name.as_str(), p.version.as_str()))
                    .collect();
                versions.extend(
                    req.installed
                        .iter()
                        .map(|(n, p)| (n.as_str(), p.version.as_str())),
                );
                lacking = computed_gap(req, &versions);
                match root_gap(req, &have, &lock) {
                    None if lacking.is_none() => return Ok(s),
                    None => {}
                    Some(_) => edited = true,
                }
            }
        }
        if frozen() {
            let why = match self.snapshot() {
                _ if edited => format!(
                    "the {kind} `{name}` in {} lacks a package its definition names (the \
                     file was edited)",
                    super::lock::FILE
                ),
                _ if lacking.is_some() => {
                    return Err(crate::error::usage(format!(
                        "--locked: the {kind} `{name}` in {file} lacks `{}`, which \
                         `${{shlibs:Depends}}` found in the built files; run `builder lock` \
                         after `builder build` (it reads the built files) and commit {file}",
                        lacking.unwrap_or_default(),
                        file = super::lock::FILE
                    )))
                }
                None => format!("there is no {}", super::lock::FILE),
                Some(l) if l.set(kind, name).is_some() => format!(
                    "the {kind} `{name}` changed since {} was written",
                    super::lock::FILE
                ),
                Some(_) => format!("{} has no entry for {kind} `{name}`", super::lock::FILE),
            };
            return Err(crate::error::usage(format!(
                "--locked: {why}; run `builder lock` and commit {}",
                super::lock::FILE
            )));
        }
        // Nothing to look up (no relation, or the base already holds everything): no index.
        if req.priorities.is_empty() {
            let quick = Request {
                roots: req.all_roots(),
                installed: req.installed.clone(),
                exclude: req.exclude.clone(),
                ..Default::default()
            };
            if let Ok(r) = resolve::resolve(&Index::new(&identity.architecture), &quick) {
                if r.packages.is_empty() {
                    let set = LockedSet {
                        kind,
                        name: name.to_string(),
                        inputs,
                        packages: Vec::new(),
                        excluded: r.excluded.iter().map(|(n, _)| n.clone()).collect(),
                    };
                    self.store(&identity, |lock| lock.put(set.clone(), &[]))?;
                    return Ok(ResolvedSet {
                        set,
                        packages: Vec::new(),
                        needed_by: BTreeMap::new(),
                        changed: true,
                    });
                }
            }
        }
        let index = self.index(reporter).await?;
        let mut request = Request {
            roots: req.all_roots(),
            installed: req.installed.clone(),
            exclude: req.exclude.clone(),
            ..Default::default()
        };
        if !req.priorities.is_empty() {
            let first = self.config()?.sources.first().map(|s| s.suite.clone());
            for p in index.iter().filter(|p| {
                req.priorities.contains(&p.priority) && Some(&p.suite) == first.as_ref()
            }) {
                let rel = super::relation::parse(&p.name)
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .remove(0);
                if !request.roots.iter().any(|(r, _)| *r == rel) {
                    request
                        .roots
                        .push((rel, format!("Priority: {}", p.priority)));
                }
            }
        }
        // Keep what is locked: this set's own versions first, else the newest any set has.
        if let Some(lock) = self.snapshot() {
            for p in &lock.packages {
                let newer = request.prefer.get(&p.name).is_none_or(|v| {
                    crate::repo::version::compare(&p.version, v) == std::cmp::Ordering::Greater
                });
                if newer {
                    request.prefer.insert(p.name.clone(), p.version.clone());
                }
            }
            if let Some(own) = lock.set(kind, name) {
                for p in lock.packages_of(own) {
                    request.prefer.insert(p.name, p.version);
                }
            }
        }
        if let Some(u) = update {
            if u.is_empty() {
                request.prefer.clear();
            } else {
                request.update = u.clone();
            }
        }
        let resolution = resolve::resolve(&index, &request).map_err(|e| {
            crate::error::usage(format!(
                "{kind} `{name}`: the packages cannot be installed together: {e}"
            ))
        })?;
        for note in &resolution.notes {
            reporter.info(format!("{kind} `{name}`: {note}"));
        }
        for e in &req.exclude {
            if !resolution.excluded.iter().any(|(n, _)| n == e) {
                reporter.warn(format!(
                    "{kind} `{name}`: `exclude` names `{e}`, which no relation of the set asks \
                     for; is it misspelt?"
                ));
            }
        }
        let packages: Vec<LockedPackage> = resolution
            .packages
            .iter()
            .map(|p| LockedPackage::from_package(p))
            .collect();
        let set = LockedSet {
            kind,
            name: name.to_string(),
            inputs,
            packages: packages.iter().map(|p| p.id()).collect(),
            excluded: resolution.excluded.iter().map(|(n, _)| n.clone()).collect(),
        };
        self.store(&identity, |lock| lock.put(set.clone(), &packages))?;
        Ok(ResolvedSet {
            set,
            packages,
            needed_by: resolution.needed_by,
            changed: true,
        })
    }

    /// Applies `change` to the lock on disk (read again under a file lock) and writes it.
    pub fn store(&self, identity: &Identity, change: impl FnOnce(&mut Lock)) -> anyhow::Result<()> {
        // The project directory itself is locked: builder.lock is replaced by rename, and
        // two processes with different caches or homes must still see each other.
        let _guard = crate::fslock::FileLock::acquire_dir(&self.project, || {})?;
        let mut lock = match Lock::read(&self.project)? {
            Some(l) if &l.archive == identity => l,
            // Another archive configuration: nothing in the old lock applies.
            _ => Lock::new(identity.clone()),
        };
        change(&mut lock);
        lock.write(&self.project)?;
        *self.lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(lock);
        Ok(())
    }
}
