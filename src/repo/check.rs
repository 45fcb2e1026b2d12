//! `builder repo check ENV [--repair]`: finds what an interrupted or damaged command left in
//! an environment repository, and repairs what can be repaired without the artifacts' source.
//!
//! Owns: the consistency rules of [`super::store`]'s layout, checked from the outside (the
//! `dists` pointer, whole generations, the sweep a prune committed, index files against the
//! hashes their generation recorded, pool files and image blobs against their digests, the
//! links into `dists/`, the history line of the current generation, unreferenced files).
//! Repairs go through the same code the next command would run ([`store::clean_leftovers`]),
//! so `check --repair` and "run the next promotion" end in the same state.
//! Must not: change what a generation holds or re-sign anything: damage to signed or
//! published bytes is reported with how to fix it, never papered over.

use std::collections::BTreeSet;
use std::fs;

use serde::Serialize;

use super::store::{self, GenerationMeta, Layout, RepoLock};
use super::{images, RepoConfig, KEY_FILES};
use crate::report::Reporter;

/// One problem found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub problem: String,
    /// `check --repair` can fix it (leftovers, unfinished steps, unreferenced files).
    pub repairable: bool,
    /// It was fixed by this run.
    pub repaired: bool,
}

/// What `repo check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub env: String,
    pub current: Option<u64>,
    pub generations: usize,
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// Whether the repository is consistent now (nothing found, or everything repaired).
    pub fn consistent(&self) -> bool {
        self.findings.iter().all(|f| f.repaired)
    }
}

/// Checks `cfg`'s repository under its lock; with `repair`, fixes what can be fixed and
/// checks again.
pub fn check(cfg: &RepoConfig, repair: bool, reporter: &Reporter) -> anyhow::Result<CheckReport> {
    cfg.check()?;
    let layout = Layout::new(&cfg.root, &cfg.env);
    if !layout.env_dir.is_dir() {
        return Err(crate::error::usage(format!(
            "`{}` is not a repository: `builder promote --to {}` makes it",
            layout.env_dir.display(),
            cfg.env
        )));
    }
    let _lock = RepoLock::acquire(&layout, reporter)?;
    let mut report = scan(&layout, cfg)?;
    if repair && report.findings.iter().any(|f| f.repairable) {
        // Generations nothing can read are rollback targets nobody can restore: they go
        // first, so the sweep of unreferenced files can run.
        if let Ok(Some(current)) = layout.current() {
            for n in layout.generation_numbers()? {
                if n < current && layout.read_meta(n).is_err() {
                    store::remove_generation(&layout, n)?;
                }
            }
        }
        store::clean_leftovers(&layout, reporter)?;
        let after = scan(&layout, cfg)?;
        for f in &mut report.findings {
            f.repaired = !after.findings.iter().any(|a| a.problem == f.problem);
        }
        report.current = after.current;
        report.generations = after.generations;
    }
    Ok(report)
}

fn scan(layout: &Layout, cfg: &RepoConfig) -> anyhow::Result<CheckReport> {
    let mut report = CheckReport {
        env: cfg.env.clone(),
        ..CheckReport::default()
    };
    let mut found = |problem: String, repairable: bool| {
        report.findings.push(Finding {
            problem,
            repairable,
            repaired: false,
        })
    };
    let show = |p: &std::path::Path| {
        p.strip_prefix(&layout.env_dir)
            .unwrap_or(p)
            .display()
            .to_string()
    };

    // Leftovers of interrupted commands.
    let images_dir = images::images_dir(&layout.env_dir);
    for dir in [
        layout.gens(),
        layout.env_dir.clone(),
        images_dir.clone(),
        images_dir.join("blobs").join("sha256"),
    ] {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp-") || name.starts_with(".tmp-") {
                found(
                    format!("`{}` was left by an interrupted command", show(&e.path())),
                    true,
                );
            }
        }
    }
    let pool = layout.env_dir.join("pool");
    for e in walkdir::WalkDir::new(&pool).into_iter().flatten() {
        let name = e.file_name().to_string_lossy();
        if e.file_type().is_file() && name.starts_with('.') && name.contains(".tmp-") {
            found(
                format!("`{}` was left by an interrupted command", show(e.path())),
                true,
            );
        }
    }

    let numbers = layout.generation_numbers()?;
    report.generations = numbers.len();
    let current = match layout.current() {
        Ok(c) => c,
        Err(e) => {
            found(
                format!("{e:#}; restore `dists` from a backup: apt cannot use the repository"),
                false,
            );
            return Ok(report);
        }
    };
    report.current = current;
    let Some(current) = current else {
        for n in &numbers {
            found(
                format!("generation {n} was written but never made current (no `dists` yet)"),
                true,
            );
        }
        return Ok(report);
    };
    let meta = match layout.read_meta(current) {
        Ok(m) => m,
        Err(e) => {
            found(
                format!(
                    "the current generation {current} cannot be read ({e:#}); restore `{}` \
                     from a backup",
                    show(&layout.gen_dir(current))
                ),
                false,
            );
            return Ok(report);
        }
    };

    let mut metas: Vec<GenerationMeta> = Vec::new();
    let mut unreadable = false;
    for &n in &numbers {
        if n > current {
            found(
                format!("generation {n} was written but never made current"),
                true,
            );
            continue;
        }
        if meta.sweep.contains(&n) {
            found(
                format!("generation {n} is still there, but the prune that made generation {current} deletes it"),
                true,
            );
            continue;
        }
        match layout.read_meta(n) {
            Ok(m) => metas.push(m),
            Err(e) => {
                unreadable = true;
                found(
                    format!(
                        "generation {n} cannot be read ({e:#}): a rollback to it is impossible; \
                         --repair removes it"
                    ),
                    true,
                )
            }
        }
    }

    // The current generation's signed indexes, as apt fetches them.
    let dists = layout.gen_dir(current).join("dists").join(&cfg.env);
    for name in ["Release", "InRelease", "Release.gpg"] {
        if fs::metadata(dists.join(name)).map_or(true, |m| m.len() == 0) {
            found(
                format!(
                    "`{}` is missing or empty: apt refuses the repository; restore it from a \
                     backup, or publish again with `builder promote` to write a fresh \
                     generation",
                    show(&dists.join(name))
                ),
                false,
            );
        }
    }
    for f in &meta.index_files {
        let p = dists.join(&f.path);
        let ok = store::digest_file(&p).is_ok_and(|(sha, _, _)| sha == f.sha256);
        if !ok {
            found(
                format!(
                    "`{}` is missing or not the file `Release` signs (sha256 {}): apt refuses \
                     it; restore it from a backup, or publish again to write a fresh generation",
                    show(&p),
                    f.sha256
                ),
                false,
            );
        }
    }

    // Pool files and blobs: every generation's exist; the current one's are hashed.
    let mut referenced = BTreeSet::new();
    let mut blobs = BTreeSet::new();
    for m in &metas {
        m.collect_references(&mut referenced, &mut blobs);
    }
    for p in &meta.packages {
        let path = layout.env_dir.join(&p.filename);
        match store::digest_file(&path) {
            Ok((sha, _, _)) if sha == p.sha256 => {}
            Ok((sha, _, _)) => found(
                format!(
                    "pool file `{}` has sha256 {sha}, but generation {current} publishes {}: \
                     promote the same artifacts again (`builder promote` copies a damaged pool \
                     file anew from the approved .deb)",
                    p.filename, p.sha256
                ),
                false,
            ),
            Err(_) => found(
                format!(
                    "pool file `{}` of generation {current} is missing: promote the same \
                     artifacts again",
                    p.filename
                ),
                false,
            ),
        }
    }
    for rel in &referenced {
        if !meta.packages.iter().any(|p| &p.filename == rel) && !layout.env_dir.join(rel).is_file()
        {
            found(
                format!("pool file `{rel}`, which an older generation needs, is missing: a rollback to it would fail"),
                false,
            );
        }
    }
    for i in &meta.images {
        if let Err(e) = images::verify_stored(&images_dir, i) {
            found(
                format!(
                    "{e:#}: promote the same image again (`builder promote` copies a damaged \
                     blob anew)"
                ),
                false,
            );
        }
    }
    if !unreadable {
        for rel in store::pool_files(layout)? {
            if !referenced.contains(&rel) {
                found(format!("pool file `{rel}` belongs to no generation"), true);
            }
        }
        if let Ok(rd) = fs::read_dir(images_dir.join("blobs").join("sha256")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') && !blobs.contains(&format!("sha256:{name}")) {
                    found(
                        format!("image blob sha256:{name} belongs to no generation"),
                        true,
                    );
                }
            }
        }
    }

    // What follows the switch: links into `dists/` and the history line.
    for name in KEY_FILES {
        let want = std::path::PathBuf::from("dists").join(name);
        if layout.dists_link().join(name).is_file()
            && fs::read_link(layout.env_dir.join(name)).map_or(true, |t| t != want)
        {
            found(
                format!("`{name}` does not point at the current generation's key"),
                true,
            );
        }
    }
    if images_dir.exists() || !meta.images.is_empty() {
        let index = images_dir.join("index.json");
        let want = images::index_json(&meta.images)?;
        if fs::read(&index).map_or(true, |have| have != want) {
            found(
                format!("`images/index.json` does not list generation {current}'s images"),
                true,
            );
        }
    }
    if !super::history::read(layout)?
        .iter()
        .any(|e| e.generation == current)
    {
        found(
            format!("`history.jsonl` has no line for the current generation {current}"),
            true,
        );
    }
    Ok(report)
}
