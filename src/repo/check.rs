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

use super::store::{self, GenerationMeta, Layout, RepoLock, TempPlace};
use super::{history, images, lenient, RepoConfig, KEY_FILES};
use crate::digest::Digest;
use crate::report::Reporter;

/// What part of the repository a finding concerns, for machines reading `--json`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FindingKind {
    /// A temporary file or directory an interrupted command left.
    Leftover,
    /// The `dists` pointer: missing, pointing back, or not at a generation.
    Pointer,
    /// A whole generation: never made current, swept, or unreadable.
    Generation,
    /// A signed apt index of the current generation.
    Index,
    /// A pool file: damaged or missing.
    Pool,
    /// An image blob or the image layout.
    Image,
    /// A link into `dists/` or the history line that follows a switch.
    Completion,
    /// A pool file or blob no generation references.
    Unreferenced,
    /// A part of the repository that is a link out of it (`pool`, `images`, ...).
    Layout,
    /// A `history.jsonl` line that does not read.
    History,
}

/// One problem found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Finding {
    pub kind: FindingKind,
    /// The path it concerns, relative to `<root>/<env>/`, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub problem: String,
    /// `check --repair` can fix it (leftovers, unfinished steps, unreferenced files).
    pub repairable: bool,
    /// It was fixed by this run.
    pub repaired: bool,
}

/// What `repo check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct CheckReport {
    pub env: String,
    pub current: Option<u64>,
    pub generations: usize,
    pub findings: Vec<Finding>,
    /// Nothing found, or everything repaired.
    pub consistent: bool,
}

impl CheckReport {
    /// Whether the repository is consistent now (nothing found, or everything repaired).
    pub(crate) fn consistent(&self) -> bool {
        self.findings.iter().all(|f| f.repaired)
    }

    fn found(
        &mut self,
        kind: FindingKind,
        path: Option<String>,
        problem: String,
        repairable: bool,
    ) {
        self.findings.push(Finding {
            kind,
            path,
            problem,
            repairable,
            repaired: false,
        });
    }
}

/// Checks `cfg`'s repository under its lock; with `repair`, fixes what can be fixed and
/// checks again.
pub(crate) fn check(
    cfg: &RepoConfig,
    repair: bool,
    reporter: &Reporter,
) -> anyhow::Result<CheckReport> {
    cfg.check()?;
    let layout = Layout::new(&cfg.root, &cfg.env);
    if !layout.env_dir.is_dir() {
        return Err(crate::error::usage(format!(
            "`{}` is not a repository: `builder promote --to {}` makes it",
            layout.env_dir.display(),
            cfg.env
        )));
    }
    let foreign = store::foreign_entries(&layout)?;
    if !foreign.is_empty() {
        return Err(crate::error::usage(format!(
            "`{}` is not a builder repository: it holds `{}` and no `dists` or \
             `.generations/`; check the `--root` and the environment name",
            layout.env_dir.display(),
            foreign.join("`, `")
        )));
    }
    // A repository on a read-only mount (a mirror, a snapshot) has no writer to exclude:
    // it is checked without the lock, which cannot be created there.
    let _lock = match RepoLock::acquire(&layout, reporter) {
        Ok(lock) => Some(lock),
        Err(e) if !repair && read_only(&e) => {
            reporter.verbose(format!(
                "`{}` is on a read-only file system: checking without its lock",
                layout.env_dir.display()
            ));
            None
        }
        Err(e) => return Err(e),
    };
    // A line cut by a crash is expected (builder reads around it and appends on a fresh
    // line): said, not a finding.
    for bad in history::read_checked(&layout)?
        .bad
        .iter()
        .filter(|b| b.torn)
    {
        reporter.warn(format!(
            "`{}:{}` is not a history line (a write cut by a crash?): {}; it is skipped",
            layout.rel(&layout.history()),
            bad.line,
            bad.problem
        ));
    }
    let mut report = scan(&layout, cfg)?;
    if repair && report.findings.iter().any(|f| f.repairable) {
        if report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::Pointer && f.repairable)
        {
            if let Some(n) = store::relink_newest(&layout)? {
                reporter.status("Relinked", format!("`{}/dists` to generation {n}", cfg.env));
            }
        }
        // Generations nothing can read are rollback targets nobody can restore: they go
        // first, so the sweep of unreferenced files can run. One whose damage is a digest
        // is read around it, and stays.
        if let Ok(Some(current)) = layout.current() {
            for n in layout.generation_numbers()? {
                if n < current && lenient::read_meta(&layout, n).is_err() {
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
    report.consistent = report.consistent();
    Ok(report)
}

fn scan(layout: &Layout, cfg: &RepoConfig) -> anyhow::Result<CheckReport> {
    let mut report = CheckReport {
        env: cfg.env.clone(),
        ..CheckReport::default()
    };
    let show = |p: &std::path::Path| layout.rel(p);
    let env = &cfg.env;

    // Nothing below follows a link out of the repository.
    if let Err(e) = store::refuse_links(layout) {
        report.found(FindingKind::Layout, None, format!("{e:#}"), false);
        return Ok(report);
    }

    // Leftovers of interrupted commands.
    let images_dir = images::images_dir(&layout.env_dir);
    let mut leftovers = Vec::new();
    for (dir, place) in store::leftover_dirs(layout) {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        leftovers.extend(
            rd.flatten()
                .filter(|e| store::is_leftover(place, &e.file_name().to_string_lossy()))
                .map(|e| e.path()),
        );
    }
    let pool = layout.env_dir.join("pool");
    leftovers.extend(
        walkdir::WalkDir::new(&pool)
            .into_iter()
            .flatten()
            .filter(|e| {
                e.file_type().is_file()
                    && store::is_leftover(TempPlace::Pool, &e.file_name().to_string_lossy())
            })
            .map(|e| e.into_path()),
    );
    for p in leftovers {
        report.found(
            FindingKind::Leftover,
            Some(show(&p)),
            format!("`{}` was left by an interrupted command", show(&p)),
            true,
        );
    }

    let numbers = layout.generation_numbers()?;
    report.generations = numbers.len();
    let published = layout.published()?;
    let readable = numbers.iter().any(|&n| layout.read_meta(n).is_ok());
    let current = match layout.current() {
        Ok(c) => c,
        Err(e) => {
            let is_link =
                fs::symlink_metadata(layout.dists_link()).is_ok_and(|m| m.file_type().is_symlink());
            let fix = if is_link && readable {
                "--repair points it at the newest generation"
            } else {
                "restore `dists` from a backup: apt cannot use the repository"
            };
            report.found(
                FindingKind::Pointer,
                Some("dists".into()),
                format!("{e:#}; {fix}"),
                is_link && readable,
            );
            return Ok(report);
        }
    };
    report.current = current;
    let rewound = store::rewound(layout, current, &numbers)?;
    if let Some(why) = &rewound {
        report.found(
            FindingKind::Pointer,
            Some("dists".into()),
            why.clone(),
            readable,
        );
    }
    let Some(current) = current else {
        if rewound.is_none() {
            for n in &numbers {
                report.found(
                    FindingKind::Generation,
                    Some(show(&layout.gen_dir(*n))),
                    format!("generation {n} was written but never made current (no `dists` yet)"),
                    true,
                );
            }
        }
        return Ok(report);
    };
    let meta = match layout.read_meta(current) {
        Ok(m) => m,
        Err(e) => {
            report.found(
                FindingKind::Generation,
                Some(show(&layout.gen_dir(current))),
                format!(
                    "the current generation {current} cannot be read ({e:#}); restore `{}` \
                     from a backup, or `builder repo rollback {env}` to serve an older one",
                    show(&layout.gen_dir(current))
                ),
                false,
            );
            return Ok(report);
        }
    };

    let mut metas: Vec<GenerationMeta> = Vec::new();
    let mut unreadable = false;
    // Pool files and blobs of every generation (those of entries left out for a damaged
    // digest too); a damaged blob digest leaves the blobs unknown.
    let mut referenced = BTreeSet::new();
    let mut blobs = BTreeSet::new();
    let mut blobs_unknown = false;
    for &n in &numbers {
        if n > current {
            if rewound.is_none() {
                report.found(
                    FindingKind::Generation,
                    Some(show(&layout.gen_dir(n))),
                    format!("generation {n} was written but never made current"),
                    true,
                );
            }
            continue;
        }
        if n != current && meta.sweep.contains(&n) {
            report.found(
                FindingKind::Generation,
                Some(show(&layout.gen_dir(n))),
                format!(
                    "generation {n} is still there, but the prune that made generation \
                     {current} deletes it"
                ),
                true,
            );
            continue;
        }
        let read = if n == current {
            // Read strictly above; every command reads it so.
            Ok(None)
        } else {
            lenient::read_meta(layout, n).map(Some)
        };
        match read {
            Ok(None) => {
                meta.collect_references(&mut referenced, &mut blobs);
                metas.push(meta.clone());
            }
            Ok(Some(m)) => {
                for d in &m.damage {
                    report.found(
                        FindingKind::Generation,
                        Some(show(&m.file)),
                        format!(
                            "`{}`: {d}; generation {n} is kept and checked without that \
                             entry, but a rollback to it is refused until the value is \
                             corrected (the signed `Release` and `Packages` under `{}` hold \
                             the sha256 of each index file and package) or the file is \
                             restored from a backup",
                            show(&m.file),
                            show(&layout.gen_dir(n).join("dists"))
                        ),
                        false,
                    );
                }
                m.collect_references(&mut referenced, &mut blobs);
                blobs_unknown |= !m.blobs_known;
                metas.push(m.meta);
            }
            Err(e) => {
                unreadable = true;
                report.found(
                    FindingKind::Generation,
                    Some(show(&layout.gen_dir(n))),
                    format!(
                        "generation {n} cannot be read ({e:#}): a rollback to it is \
                         impossible; --repair removes it"
                    ),
                    true,
                )
            }
        }
    }

    // The current generation's signed indexes, as apt fetches and verifies them.
    for problem in store::index_damage(layout, env, &meta) {
        report.found(
            FindingKind::Index,
            None,
            format!(
                "{problem}: apt refuses the repository; `builder promote` of the same \
                 artifacts writes a fresh, signed generation (or restore it from a backup)"
            ),
            false,
        );
    }

    // One key from generation to generation, unless `--rotate-key` changed it.
    let key_of = |n: u64| {
        fs::read(layout.gen_dir(n).join("dists").join(KEY_FILES[0]))
            .ok()
            .and_then(|b| crate::sign::public_key_fingerprint(&b).ok())
    };
    let mut before: Option<(u64, String)> = None;
    for m in &metas {
        let Some(key) = key_of(m.number) else {
            continue;
        };
        if let Some((n, prev)) = &before {
            if *prev != key && !m.key_rotated {
                report.found(
                    FindingKind::Index,
                    Some(show(&layout.gen_dir(m.number))),
                    format!(
                        "generation {} is signed by key {key}, generation {n} before it by \
                         {prev}, and no `--rotate-key` changed it: the key was swapped by hand; \
                         apt clients that trust {prev} refuse it",
                        m.number
                    ),
                    false,
                );
            }
        }
        before = Some((m.number, key));
    }

    // Pool files and blobs of every generation, each hashed once.
    let mut pool_checked = BTreeSet::new();
    let mut images_checked = BTreeSet::new();
    // The current generation first: a damaged file it serves is named as its problem.
    let by_current_first = metas
        .iter()
        .filter(|m| m.number == current)
        .chain(metas.iter().filter(|m| m.number != current));
    for m in by_current_first {
        let whose = if m.number == current {
            format!("the current generation {current}")
        } else {
            format!("generation {} (a rollback target)", m.number)
        };
        let fix = if m.number == current {
            "promote the same artifacts again (`builder promote` copies a damaged pool file \
             anew from the approved .deb)"
        } else {
            "a rollback to it would publish it; restore it from a backup, or prune that \
             generation"
        };
        for p in &m.packages {
            if !pool_checked.insert((p.filename.clone(), p.sha256)) {
                continue;
            }
            if let Err(problem) = store::verify_pool_file(layout, p) {
                report.found(
                    FindingKind::Pool,
                    Some(p.filename.clone()),
                    format!("pool file `{}` of {whose} {problem}: {fix}", p.filename),
                    false,
                );
            }
        }
        for i in &m.images {
            if !images_checked.insert((i.ref_name(), i.digest)) {
                continue;
            }
            if let Err(e) = images::verify_stored(&images_dir, i) {
                let fix = if m.number == current {
                    "promote the same image again (`builder promote` copies a damaged blob anew)"
                } else {
                    fix
                };
                report.found(
                    FindingKind::Image,
                    None,
                    format!("{e:#} ({whose}): {fix}"),
                    false,
                );
            }
        }
    }
    if !unreadable {
        for rel in store::pool_files(layout)? {
            if !referenced.contains(&rel) {
                report.found(
                    FindingKind::Unreferenced,
                    Some(rel.clone()),
                    format!("pool file `{rel}` belongs to no generation"),
                    true,
                );
            }
        }
        let listed = if blobs_unknown {
            None
        } else {
            fs::read_dir(images_dir.join("blobs").join("sha256")).ok()
        };
        if let Some(rd) = listed {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let digest = Digest::from_hex(&name).ok();
                if !store::is_leftover(TempPlace::Blobs, &name)
                    && !digest.is_some_and(|d| blobs.contains(&d))
                {
                    report.found(
                        FindingKind::Unreferenced,
                        Some(show(&e.path())),
                        match digest {
                            Some(d) => format!("image blob {d} belongs to no generation"),
                            None => format!(
                                "`blobs/sha256/{name}` is not named by a digest and belongs to \
                                 no generation"
                            ),
                        },
                        true,
                    );
                }
            }
        }
    }

    // What follows the switch: links into `dists/`, the image layout and the history line.
    for name in KEY_FILES {
        let want = std::path::PathBuf::from("dists").join(name);
        if layout.dists_link().join(name).is_file()
            && fs::read_link(layout.env_dir.join(name)).map_or(true, |t| t != want)
        {
            report.found(
                FindingKind::Completion,
                Some(name.to_string()),
                format!("`{name}` does not point at the current generation's key"),
                true,
            );
        }
    }
    if images_dir.exists() || !meta.images.is_empty() {
        let index = images_dir.join("index.json");
        let want = images::index_json(&meta.images)?;
        if fs::read(&index).map_or(true, |have| have != want) {
            report.found(
                FindingKind::Completion,
                Some("images/index.json".into()),
                format!("`images/index.json` does not list generation {current}'s images"),
                true,
            );
        }
        if !images_dir.join("oci-layout").is_file() {
            report.found(
                FindingKind::Completion,
                Some("images/oci-layout".into()),
                "`images/oci-layout` is missing: OCI tools do not take `images/` for a layout"
                    .into(),
                true,
            );
        }
    }
    for bad in history::read_checked(layout)?
        .bad
        .iter()
        .filter(|b| !b.torn)
    {
        report.found(
            FindingKind::History,
            Some(format!("history.jsonl:{}", bad.line)),
            format!(
                "`history.jsonl:{}`: {}; the line is skipped (`repo history` does not show \
                 it); correct the value (the generation's `generation.json` records the same \
                 entry under `history`) or restore the file from a backup",
                bad.line, bad.problem
            ),
            false,
        );
    }
    if !published.contains(&current) {
        report.found(
            FindingKind::Completion,
            Some("history.jsonl".into()),
            format!("`history.jsonl` has no line for the current generation {current}"),
            true,
        );
    }
    Ok(report)
}

fn read_only(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ReadOnlyFilesystem)
    })
}
