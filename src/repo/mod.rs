//! Environment repositories: `<root>/<env>/` is a signed apt repository (pool, Packages,
//! Release, InRelease, Release.gpg, by-hash) that changes only by whole generations.
//!
//! Owns: publish (add verified .debs), rollback (restore the previous generation's contents),
//! list, prune, and the history. Every change runs under the repository lock, writes a new
//! generation beside the current one and makes it current with one rename, so readers see
//! the old repository or the new one, never a mix (see [`store`] for the layout).
//!
//! Must not: decide *what* may be promoted (the gate in `promote` does), or print (it
//! reports through [`Reporter`]).

pub(crate) mod check;
pub(crate) mod history;
pub(crate) mod images;
pub(crate) mod index;
pub(crate) mod lenient;
pub(crate) mod store;
#[cfg(test)]
mod tests;
pub(crate) mod version;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::report::Reporter;
use crate::sign::Signer;
use history::{HistoryAction, HistoryArtifact, HistoryEntry};
use images::{ImageArtifact, ImageEntry};
use index::IndexFile;
use store::{GenerationMeta, Layout, RepoLock};

/// Where and how one environment repository is written.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    /// Directory holding every environment (default `<dist>/repos`).
    pub root: PathBuf,
    /// Environment name: the directory, the apt `Suite` and `Codename`.
    pub env: String,
    pub origin: String,
    pub label: String,
    /// `Valid-Until` = `Date` + this.
    pub valid_for: Duration,
    /// Architectures indexed even when empty; the architectures of published packages are
    /// added to these.
    pub architectures: Vec<String>,
    /// Sign with a key other than the one the repository publishes (`--rotate-key`).
    /// Without it, a different key is refused: clients pinned to the old key would break.
    pub rotate_key: bool,
}

impl RepoConfig {
    /// Defaults: origin `builder`, label `builder <env>`, valid for 30 days, `amd64`.
    pub fn new(root: impl Into<PathBuf>, env: &str) -> Self {
        RepoConfig {
            root: root.into(),
            env: env.to_string(),
            origin: "builder".into(),
            label: format!("builder {env}"),
            valid_for: Duration::from_secs(30 * 86_400),
            architectures: vec!["amd64".into()],
            rotate_key: false,
        }
    }

    /// `<root>/<env>`.
    pub fn env_dir(&self) -> PathBuf {
        self.root.join(&self.env)
    }

    fn check(&self) -> anyhow::Result<()> {
        check_env_name(&self.env).map_err(crate::error::usage)
    }
}

/// Whether `env` can name an environment (a directory and an apt suite): letters, digits,
/// `-`, `_` and `.`, not starting with `.`. The error says what is wrong with it.
pub fn check_env_name(env: &str) -> Result<(), String> {
    let ok = !env.is_empty()
        && env
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !env.starts_with('.');
    if !ok {
        return Err(format!(
            "`{env}` is not a valid environment name: use letters, digits, `-`, `_` and `.` \
             (e.g. `dev`, `staging`, `prod`)"
        ));
    }
    Ok(())
}

/// The public key file names beside the repository (`<env>/<name>`), symlinks into the
/// current generation (`dists/<name>`), so they change with the `dists` switch.
const KEY_FILES: [&str; 2] = ["signing-key.gpg", "signing-key.asc"];

/// Refuses (exit 2) to sign with a key other than the one the repository publishes, unless
/// `cfg.rotate_key`. Returns whether the key changes. Call with the lock held, before
/// writing anything.
fn check_signing_key(
    cfg: &RepoConfig,
    layout: &Layout,
    signer: &Signer,
    reporter: &Reporter,
) -> anyhow::Result<bool> {
    // The key of the generation apt serves, read from the generation itself: a missing or
    // dangling `<env>/signing-key.gpg` is not a new repository.
    let Some(current) = layout.current()? else {
        return Ok(false);
    };
    let mut path = layout.gen_dir(current).join("dists").join(KEY_FILES[0]);
    let legacy = layout.env_dir.join(KEY_FILES[0]);
    if !path.exists() && std::fs::symlink_metadata(&legacy).is_ok_and(|m| m.is_file()) {
        // A generation written before keys travelled with generations: the key is the
        // file beside `dists`.
        path = legacy;
    }
    let have = std::fs::read(&path)
        .map_err(anyhow::Error::from)
        .and_then(|b| crate::sign::public_key_fingerprint(&b));
    let new = signer.fingerprint();
    if have.as_deref().is_ok_and(|h| *h == new) {
        return Ok(false);
    }
    let have_text = match &have {
        Ok(f) => format!("key {f}"),
        Err(e) => format!("no readable key ({e:#})"),
    };
    if !cfg.rotate_key {
        return Err(crate::error::usage(format!(
            "`{}` holds {have_text}, but the signing key is {new}: apt clients set up with \
             `signed-by=` the repository's key would reject `{}`; sign with the repository's \
             key, or pass `--rotate-key` to replace it (clients must then install the new \
             `signing-key.gpg`)",
            path.display(),
            cfg.env
        )));
    }
    reporter.warn(format!(
        "rotating the signing key of `{}`: `{}` held {have_text}, now {new}; clients must \
         install the new `signing-key.gpg`",
        cfg.env,
        path.display()
    ));
    Ok(true)
}

/// Points `<env>/signing-key.{gpg,asc}` and `<env>/images/index.json` into `dists/`, so
/// they change with the `dists` switch (once made, these links never change again). A
/// generation written by an older builder has no image index inside: `index.json` is then
/// written from its image list. `dists` is the generation's `dists/` directory (through
/// the link once it is current; directly when the first generation is linked before its
/// switch, so no kill leaves a new repository without them).
fn link_generation_files(
    layout: &Layout,
    dists: &std::path::Path,
    meta: &GenerationMeta,
) -> anyhow::Result<()> {
    for name in KEY_FILES {
        if dists.join(name).is_file() {
            link(
                &layout.env_dir.join(name),
                &PathBuf::from("dists").join(name),
            )?;
        }
    }
    let images_dir = images::images_dir(&layout.env_dir);
    if !images_dir.exists() && meta.images.is_empty() {
        return Ok(());
    }
    if dists.join(images::GENERATION_INDEX).is_file() {
        images::ensure_layout(&images_dir)?;
        link(
            &images_dir.join("index.json"),
            &PathBuf::from("..")
                .join("dists")
                .join(images::GENERATION_INDEX),
        )
    } else {
        images::write_index(&layout.env_dir, &meta.images).map(drop)
    }
}

/// Makes `path` a symlink to `target` (temp symlink + rename + directory sync) unless it is.
fn link(path: &std::path::Path, target: &std::path::Path) -> anyhow::Result<()> {
    if std::fs::read_link(path).is_ok_and(|t| t == target) {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("could not create symlink `{}`", tmp.display()))?;
    crate::durable::rename(&tmp, path)
}

/// A .deb to publish, with the sha256 the gate approved.
#[derive(Debug, Clone)]
pub struct DebArtifact {
    pub path: PathBuf,
    /// Bare hex as the caller has it; parsed (leniently: case, whitespace, a `sha256:`
    /// prefix) when the .deb is checked against it, and anything else is refused there.
    pub sha256: String,
}

/// One package in a generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageEntry {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Path relative to `<root>/<env>/`, as `Packages` lists it.
    pub filename: String,
    pub size: u64,
    /// Bare hex on disk, as `Packages` spells it.
    #[serde(with = "crate::digest::bare")]
    pub sha256: Digest,
    pub md5: String,
    /// The .deb's control fields, in order.
    pub control: Vec<(String, String)>,
    /// The smoke run whose passed report approved this package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

impl PackageEntry {
    fn same_key(&self, o: &PackageEntry) -> bool {
        self.name == o.name && self.version == o.version && self.arch == o.arch
    }

    fn artifact(&self) -> HistoryArtifact {
        HistoryArtifact {
            name: self.name.clone(),
            version: self.version.clone(),
            arch: self.arch.clone(),
            sha256: self.sha256,
            size: self.size,
            run: self.run.clone(),
        }
    }
}

/// A generation that is now current.
#[derive(Debug, Clone)]
pub struct Generation {
    pub number: u64,
    pub packages: Vec<PackageEntry>,
    pub images: Vec<ImageEntry>,
    /// `<root>/<env>/.generations/<n>`.
    pub dir: PathBuf,
    /// The environment already held everything published: no new generation was written.
    pub unchanged: bool,
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// The new current generation, when the index changed.
    pub generation: Option<u64>,
    pub removed_versions: Vec<HistoryArtifact>,
    /// Image versions dropped from the index (`images/index.json`).
    pub removed_images: Vec<ImageEntry>,
    pub removed_files: Vec<String>,
    /// Image blobs no remaining generation references, deleted from `images/blobs/`.
    pub removed_blobs: usize,
    pub removed_generations: Vec<u64>,
}

/// Splits `items` into the newest `keep` of each group and the rest (newest first within a
/// group, by Debian version order).
fn keep_newest<T: Clone>(
    items: &[T],
    keep: usize,
    group: impl Fn(&T) -> String,
    version: impl Fn(&T) -> &str,
) -> (Vec<T>, Vec<T>) {
    let mut sorted = items.to_vec();
    sorted.sort_by(|a, b| {
        group(a)
            .cmp(&group(b))
            .then_with(|| version::compare(version(b), version(a)))
    });
    let (mut kept, mut removed) = (Vec::new(), Vec::new());
    for item in sorted {
        let n = kept.iter().filter(|k| group(k) == group(&item)).count();
        if n < keep {
            kept.push(item);
        } else {
            removed.push(item);
        }
    }
    (kept, removed)
}

/// Reads a .deb and checks it against the approved sha256, before anything is written.
fn inspect_artifact(a: &DebArtifact) -> anyhow::Result<(PackageEntry, PathBuf)> {
    let (sha256, md5, size) = store::digest_file(&a.path)?;
    if Digest::parse_lenient(&a.sha256) != Ok(sha256) {
        return Err(crate::error::failed(format!(
            "`{}` has sha256 {}, but {} was approved: the file changed after the smoke \
             test; rebuild and test it again",
            a.path.display(),
            sha256.hex(),
            a.sha256.trim()
        )));
    }
    let deb = crate::deb::read_deb(&a.path)
        .with_context(|| format!("could not read package `{}`", a.path.display()))?;
    let field = |name: &str| -> anyhow::Result<String> {
        deb.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                crate::error::failed(format!(
                    "`{}` has no `{name}` control field: it cannot go into an apt repository",
                    a.path.display()
                ))
            })
    };
    let name = field("Package")?;
    let version = field("Version")?;
    let arch = field("Architecture")?;
    let source = field("Source")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| name.clone());
    let filename = index::pool_path(&source, &name, &version, &arch);
    Ok((
        PackageEntry {
            name,
            version,
            arch,
            filename,
            size,
            sha256,
            md5,
            control: deb.fields,
            run: None,
        },
        a.path.clone(),
    ))
}

/// Adds `add` to the environment: verifies every sha256 first, then writes the new
/// generation (previous contents + added packages) and makes it current.
/// `source` names where the artifacts come from (a smoke report path or an environment).
/// An empty `add` re-signs the current contents with a fresh `Date`/`Valid-Until`.
pub fn publish(
    cfg: &RepoConfig,
    signer: &Signer,
    add: &[DebArtifact],
    source: &str,
    reporter: &Reporter,
) -> anyhow::Result<Generation> {
    let p = Publication {
        debs: add.iter().map(|a| (a.clone(), None)).collect(),
        images: Vec::new(),
        source: source.to_string(),
        from_env: None,
    };
    publish_full(cfg, signer, &p, reporter)
}

/// Everything one promotion adds to an environment.
#[derive(Debug, Clone, Default)]
pub struct Publication {
    /// Packages with the smoke run that approved each.
    pub debs: Vec<(DebArtifact, Option<String>)>,
    /// Images (already verified by the caller; every blob is hashed again while copied).
    pub images: Vec<ImageArtifact>,
    /// A smoke report path, a source environment, or what the caller says.
    pub source: String,
    pub from_env: Option<String>,
}

/// [`publish`] with images and provenance: under the lock, copies pool files and image
/// blobs, writes the generation (packages + images), switches to it, then rewrites
/// `images/index.json` from it.
pub fn publish_full(
    cfg: &RepoConfig,
    signer: &Signer,
    publication: &Publication,
    reporter: &Reporter,
) -> anyhow::Result<Generation> {
    cfg.check()?;
    let add = &publication.debs;
    let mut incoming: Vec<(PackageEntry, PathBuf)> = Vec::new();
    for (a, run) in add {
        let (mut entry, path) = inspect_artifact(a)?;
        entry.run = run.clone();
        if let Some((other, other_path)) = incoming.iter().find(|(e, _)| e.same_key(&entry)) {
            if other.sha256 != entry.sha256 {
                return Err(crate::error::failed(format!(
                    "`{}` and `{}` are both {} {} ({}) with different content",
                    other_path.display(),
                    path.display(),
                    entry.name,
                    entry.version,
                    entry.arch
                )));
            }
            continue;
        }
        incoming.push((entry, path));
    }

    let layout = Layout::new(&cfg.root, &cfg.env);
    let _lock = RepoLock::acquire(&layout, reporter)?;
    store::clean_leftovers(&layout, reporter)?;
    let undo = store::UndoOnError::new(&layout);
    let key_rotated = check_signing_key(cfg, &layout, signer, reporter)?;
    let current = layout.current()?;
    let (mut packages, mut images) = match current {
        Some(c) => {
            let m = layout.read_meta(c)?;
            (m.packages, m.images)
        }
        None => (Vec::new(), Vec::new()),
    };
    // The same artifacts again change nothing: no new generation, no history line (an
    // empty publication still re-signs, and a key rotation still writes one).
    let held = !incoming.is_empty() || !publication.images.is_empty();
    let held =
        held && incoming.iter().all(|(e, _)| {
            packages
                .iter()
                .any(|p| p.same_key(e) && p.sha256 == e.sha256)
        }) && publication.images.iter().all(|a| {
            images
                .iter()
                .any(|i| i.same_key(&a.entry) && i.digest == a.entry.digest)
        });
    // A damaged current generation (an index or signature changed on disk) is written
    // anew, freshly signed, even when it holds these artifacts.
    let damage = match current {
        Some(c) => store::index_damage(&layout, &cfg.env, &layout.read_meta(c)?),
        None => Vec::new(),
    };
    if held && !damage.is_empty() {
        reporter.warn(format!(
            "`{}`: generation {} is damaged ({}); writing a fresh, signed generation with the \
             same contents",
            cfg.env,
            current.unwrap_or_default(),
            damage.join("; ")
        ));
    }
    if let (Some(c), true, false, true) = (current, held, key_rotated, damage.is_empty()) {
        // Blobs and pool files are still checked: a damaged one is copied again from the
        // approved source (which matches the published sha256).
        let images_dir = images::images_dir(&layout.env_dir);
        for art in &publication.images {
            images::import(&images_dir, art)?;
        }
        for (entry, path) in &incoming {
            put_pool_file(&layout, cfg, entry, path, reporter)?;
        }
        reporter.info(format!(
            "`{}` already holds these artifacts (generation {c})",
            cfg.env
        ));
        undo.done();
        return Ok(Generation {
            number: c,
            packages,
            images,
            dir: layout.gen_dir(c),
            unchanged: true,
        });
    }
    let mut added = Vec::new();
    let mut added_images = Vec::new();
    let images_dir = images::images_dir(&layout.env_dir);
    for art in &publication.images {
        let new = &art.entry;
        if let Some(have) = images.iter().find(|i| i.same_key(new)) {
            if have.digest != new.digest {
                return Err(crate::error::failed(format!(
                    "image {} is already in `{}` with digest {}, and the new one has {}: a \
                     published version never changes; bump the version",
                    new.ref_name(),
                    cfg.env,
                    have.digest,
                    new.digest
                )));
            }
        }
    }
    // Versions that differ only in characters a tag cannot hold (`1.0~rc1`, `1.0+rc1`)
    // would share one ref name in index.json and one registry tag.
    for (i, art) in publication.images.iter().enumerate() {
        let new = &art.entry;
        let earlier = publication.images[..i].iter().map(|a| &a.entry);
        if let Some(other) = images
            .iter()
            .chain(earlier)
            .find(|o| o.name == new.name && o.version != new.version && o.tag() == new.tag())
        {
            return Err(crate::error::failed(format!(
                "image {} {} and {} {} would share the tag `{}` in `{}` (a tag cannot hold `~`, \
                 `+` or `:`); change one version",
                other.name,
                other.version,
                new.name,
                new.version,
                new.tag(),
                cfg.env
            )));
        }
    }
    for art in &publication.images {
        images::import(&images_dir, art)?;
        images.retain(|i| !i.same_key(&art.entry));
        images.push(art.entry.clone());
        added_images.push(art.entry.clone());
    }
    for (entry, path) in incoming {
        if let Some(have) = packages.iter().find(|p| p.same_key(&entry)) {
            if have.sha256 != entry.sha256 {
                return Err(crate::error::failed(format!(
                    "{} {} ({}) is already in `{}` with sha256 {}, and `{}` has {}: a published \
                     version never changes; bump the version",
                    entry.name,
                    entry.version,
                    entry.arch,
                    cfg.env,
                    have.sha256.hex(),
                    path.display(),
                    entry.sha256.hex()
                )));
            }
            put_pool_file(&layout, cfg, &entry, &path, reporter)?;
            added.push(entry.artifact());
            continue;
        }
        put_pool_file(&layout, cfg, &entry, &path, reporter)?;
        added.push(entry.artifact());
        packages.push(entry);
    }
    let mut runs: Vec<String> = added
        .iter()
        .filter_map(|a: &HistoryArtifact| a.run.clone())
        .chain(added_images.iter().filter_map(|i| i.run.clone()))
        .collect();
    runs.sort();
    runs.dedup();
    let entry = HistoryEntry {
        time: String::new(),
        generation: 0,
        action: HistoryAction::Publish,
        artifacts: added,
        source: publication.source.clone(),
        who: history::who(),
        restored: None,
        images: added_images,
        runs,
        from_env: publication.from_env.clone(),
    };
    let next = NextGeneration {
        packages,
        images,
        current,
        previous: current,
        entry,
        sweep: Vec::new(),
        key_rotated,
    };
    let g = write_generation(cfg, &layout, signer, next, reporter)?;
    reporter.status(
        "Published",
        format!(
            "{} package(s) and {} image(s) to `{}` (generation {}, {} package(s) and {} \
             image(s) in total)",
            add.len(),
            publication.images.len(),
            cfg.env,
            g.number,
            g.packages.len(),
            g.images.len()
        ),
    );
    undo.done();
    Ok(g)
}

/// Puts an approved .deb into the pool ([`store::put_pool_file`]), saying when a damaged
/// pool file was copied anew.
fn put_pool_file(
    layout: &Layout,
    cfg: &RepoConfig,
    entry: &PackageEntry,
    path: &std::path::Path,
    reporter: &Reporter,
) -> anyhow::Result<()> {
    if store::put_pool_file(layout, path, &entry.filename, &entry.sha256)?
        == store::PoolPut::Repaired
    {
        reporter.warn(format!(
            "`{}`: the pool file `{}` was damaged (not the sha256 `{}` publishes); copied it \
             again from `{}`",
            cfg.env,
            entry.filename,
            entry.sha256.hex(),
            path.display()
        ));
    }
    Ok(())
}

/// Makes the contents of the generation before the current one current again (as a new
/// generation, freshly dated and signed, so apt's date checks hold).
pub fn rollback(
    cfg: &RepoConfig,
    signer: &Signer,
    reporter: &Reporter,
) -> anyhow::Result<Generation> {
    cfg.check()?;
    let layout = Layout::new(&cfg.root, &cfg.env);
    let _lock = RepoLock::acquire(&layout, reporter)?;
    store::clean_leftovers(&layout, reporter)?;
    let undo = store::UndoOnError::new(&layout);
    let key_rotated = check_signing_key(cfg, &layout, signer, reporter)?;
    let Some(current) = layout.current()? else {
        return Err(crate::error::usage(format!(
            "`{}` has no published generation to roll back",
            cfg.env_dir().display()
        )));
    };
    let meta = layout.read_meta(current)?;
    let Some(target) = meta.previous else {
        return Err(crate::error::failed(format!(
            "generation {current} of `{}` has no previous generation to roll back to",
            cfg.env
        )));
    };
    let target_meta = layout
        .read_meta(target)
        .with_context(|| format!("cannot roll `{}` back to generation {target}", cfg.env))?;
    // What a rollback publishes is checked like what a promotion publishes: every pool
    // file must still hold the bytes the generation recorded.
    for p in &target_meta.packages {
        if let Err(problem) = store::verify_pool_file(&layout, p) {
            return Err(crate::error::failed(format!(
                "cannot roll `{}` back to generation {target}: its pool file `{}` is damaged or \
                 gone (it {problem}); restore it from a backup or promote that .deb again",
                cfg.env,
                layout.env_dir.join(&p.filename).display()
            )));
        }
    }
    let entry = HistoryEntry {
        time: String::new(),
        generation: 0,
        action: HistoryAction::Rollback,
        artifacts: target_meta
            .packages
            .iter()
            .map(PackageEntry::artifact)
            .collect(),
        source: format!("generation {target}"),
        who: history::who(),
        restored: Some(target),
        images: target_meta.images.clone(),
        runs: Vec::new(),
        from_env: None,
    };
    let images_dir = images::images_dir(&layout.env_dir);
    for i in &target_meta.images {
        images::verify_stored(&images_dir, i)
            .with_context(|| format!("cannot roll `{}` back to generation {target}", cfg.env))?;
    }
    let next = NextGeneration {
        packages: target_meta.packages,
        images: target_meta.images,
        current: Some(current),
        previous: target_meta.previous,
        entry,
        sweep: Vec::new(),
        key_rotated,
    };
    let g = write_generation(cfg, &layout, signer, next, reporter)?;
    reporter.status(
        "Rolled back",
        format!(
            "`{}` to the contents of generation {target} (now generation {})",
            cfg.env, g.number
        ),
    );
    undo.done();
    Ok(g)
}

/// What the current generation holds (empty for a repository never published to).
pub fn list(cfg: &RepoConfig) -> anyhow::Result<Vec<PackageEntry>> {
    cfg.check()?;
    let layout = Layout::new(&cfg.root, &cfg.env);
    match layout.current()? {
        Some(c) => Ok(layout.read_meta(c)?.packages),
        None => Ok(Vec::new()),
    }
}

/// What the current generation holds: packages and images (empty for a new repository).
pub fn contents(cfg: &RepoConfig) -> anyhow::Result<(Vec<PackageEntry>, Vec<ImageEntry>)> {
    cfg.check()?;
    let layout = Layout::new(&cfg.root, &cfg.env);
    match layout.current()? {
        Some(c) => {
            let m = layout.read_meta(c)?;
            Ok((m.packages, m.images))
        }
        None => Ok((Vec::new(), Vec::new())),
    }
}

/// The history lines of the environment, oldest first.
pub fn history(cfg: &RepoConfig) -> anyhow::Result<Vec<HistoryEntry>> {
    cfg.check()?;
    let layout = Layout::new(&cfg.root, &cfg.env);
    let mut entries = history::read(&layout)?;
    // A run killed between its switch and its append: the generation carries its entry.
    if let Some(c) = layout.current()? {
        let meta = layout.read_meta(c)?;
        if !entries.iter().any(|e| e.generation == c) {
            entries.push(meta.history);
        }
    }
    Ok(entries)
}

/// Keeps the `keep` newest versions of each package (per architecture) in the index, then
/// deletes generations that hold a removed version and pool files no remaining generation
/// references. Rollback still works to any remaining generation.
pub fn prune(
    cfg: &RepoConfig,
    signer: &Signer,
    keep: usize,
    reporter: &Reporter,
) -> anyhow::Result<PruneReport> {
    cfg.check()?;
    if keep == 0 {
        return Err(crate::error::usage(
            "`--keep 0` would empty the repository: keep at least 1 version",
        ));
    }
    let layout = Layout::new(&cfg.root, &cfg.env);
    let _lock = RepoLock::acquire(&layout, reporter)?;
    store::clean_leftovers(&layout, reporter)?;
    let undo = store::UndoOnError::new(&layout);
    let Some(current) = layout.current()? else {
        undo.done();
        return Ok(PruneReport::default());
    };
    // Every generation must be readable before anything changes: an unreadable one's files
    // are unknown, and pruning could delete what it needs.
    for n in layout.generation_numbers()? {
        layout.read_meta(n).with_context(|| {
            format!(
                "cannot prune `{}`: generation {n} cannot be read, so what it needs is unknown; \
                 repair or remove `{}`",
                cfg.env,
                layout.gen_dir(n).display()
            )
        })?;
    }
    let meta = layout.read_meta(current)?;
    let (kept, removed) = keep_newest(
        &meta.packages,
        keep,
        |p: &PackageEntry| format!("{}\0{}", p.name, p.arch),
        |p| &p.version,
    );
    let (kept_images, removed_images) = keep_newest(
        &meta.images,
        keep,
        |i: &ImageEntry| i.name.clone(),
        |i| &i.version,
    );
    let mut report = PruneReport {
        removed_versions: removed.iter().map(PackageEntry::artifact).collect(),
        removed_images: removed_images.clone(),
        ..PruneReport::default()
    };
    let removed_files: BTreeSet<String> = removed.iter().map(|p| p.filename.clone()).collect();
    let removed_digests: BTreeSet<&Digest> = removed_images.iter().map(|i| &i.digest).collect();
    // A generation that holds a removed package or image can no longer be restored whole.
    let holds_removed = |m: &store::GenerationMeta| {
        m.packages
            .iter()
            .any(|x| removed_files.contains(&x.filename))
            || m.images.iter().any(|x| removed_digests.contains(&x.digest))
    };
    if !removed.is_empty() || !removed_images.is_empty() {
        let key_rotated = check_signing_key(cfg, &layout, signer, reporter)?;
        // The nearest earlier generation that holds no removed version stays a rollback target.
        let mut previous = meta.previous;
        while let Some(p) = previous {
            match layout.read_meta(p) {
                Ok(m) if !holds_removed(&m) => break,
                Ok(m) => previous = m.previous,
                Err(_) => previous = None,
            }
        }
        // Generations that hold a removed file or image go; the rest keep theirs. The list
        // is part of the new generation, so a prune killed while deleting is finished by
        // the next command.
        let mut sweep = Vec::new();
        for n in layout.generation_numbers()? {
            if holds_removed(&layout.read_meta(n)?) {
                sweep.push(n);
            }
        }
        let entry = HistoryEntry {
            time: String::new(),
            generation: 0,
            action: HistoryAction::Prune,
            artifacts: report.removed_versions.clone(),
            source: format!("keep {keep}"),
            who: history::who(),
            restored: None,
            images: removed_images.clone(),
            runs: Vec::new(),
            from_env: None,
        };
        let next = NextGeneration {
            packages: kept,
            images: kept_images,
            current: Some(current),
            previous,
            entry,
            sweep: sweep.clone(),
            key_rotated,
        };
        let g = write_generation(cfg, &layout, signer, next, reporter)?;
        report.generation = Some(g.number);
        report.removed_generations = sweep;
    }
    undo.done();
    // Mark (the generation's sweep list, committed), then sweep: idempotent, and what a
    // killed or failed prune left is swept again by the next command. The prune is
    // published once the switch is made, so a failing sweep is a warning.
    let files_before = store::pool_files(&layout)?;
    let blobs_before = images::blob_count(&layout.env_dir);
    if let Err(e) = store::clean_leftovers(&layout, reporter) {
        reporter.warn(format!(
            "`{}` is pruned, but removing what it dropped failed: {e:#}; the next `promote`, \
             `repo prune` or `repo check {} --repair` finishes it",
            cfg.env, cfg.env
        ));
    }
    let files_after = store::pool_files(&layout)?;
    report.removed_files = files_before.difference(&files_after).cloned().collect();
    report.removed_blobs = blobs_before.saturating_sub(images::blob_count(&layout.env_dir));
    reporter.status(
        "Pruned",
        format!(
            "`{}`: {} package version(s), {} pool file(s), {} image version(s), {} image \
             blob(s), {} generation(s) removed",
            cfg.env,
            report.removed_versions.len(),
            report.removed_files.len(),
            report.removed_images.len(),
            report.removed_blobs,
            report.removed_generations.len()
        ),
    );
    Ok(report)
}

/// What the next generation holds and how it came to be.
struct NextGeneration {
    packages: Vec<PackageEntry>,
    images: Vec<ImageEntry>,
    /// The generation current now (`None` for a new repository).
    current: Option<u64>,
    /// The generation `rollback` returns to from the new one.
    previous: Option<u64>,
    entry: HistoryEntry,
    /// Generations to delete once the new one is current (prune).
    sweep: Vec<u64>,
    /// Signed with another key than the current generation (`--rotate-key`).
    key_rotated: bool,
}

/// Writes generation `max+1` beside the current one (apt indexes, signatures, public key,
/// image index, history entry, sweep list: everything it consists of) and switches to it
/// with one rename. What follows the switch ([`store::complete_current`]) is derived from
/// the generation: when it fails, the generation is still the one served, so that is a
/// warning, and the next command (or `repo check --repair`) completes it.
fn write_generation(
    cfg: &RepoConfig,
    layout: &Layout,
    signer: &Signer,
    next: NextGeneration,
    reporter: &Reporter,
) -> anyhow::Result<Generation> {
    let NextGeneration {
        mut packages,
        mut images,
        current,
        previous,
        mut entry,
        sweep,
        key_rotated,
    } = next;
    index::sort_entries(&mut packages);
    images.sort_by_key(ImageEntry::ref_name);
    let number = match layout
        .generation_numbers()?
        .into_iter()
        .chain(current)
        .max()
    {
        None => 1,
        Some(m) => m.checked_add(1).ok_or_else(|| {
            crate::error::failed(format!(
                "`{}` has generation {m}, the last number there is: the repository was \
                 changed by hand; start a new one",
                layout.env_dir.display()
            ))
        })?,
    };
    let now = crate::timefmt::now_secs();
    entry.time = crate::timefmt::rfc3339_secs(now);
    entry.generation = number;

    let mut arches: BTreeSet<String> = cfg.architectures.iter().cloned().collect();
    arches.extend(
        packages
            .iter()
            .filter(|p| p.arch != "all")
            .map(|p| p.arch.clone()),
    );
    if arches.is_empty() {
        arches.insert("amd64".into());
    }
    let arches: Vec<String> = arches.into_iter().collect();

    let mut files = Vec::new();
    for arch in &arches {
        let text = index::packages_text(&packages, arch);
        let gz = index::gzip(text.as_bytes()).context("could not compress Packages")?;
        let dir = format!("main/binary-{arch}");
        files.push(IndexFile::new(format!("{dir}/Packages"), text.into_bytes()));
        files.push(IndexFile::new(format!("{dir}/Packages.gz"), gz));
    }

    let gens = layout.gens();
    crate::durable::create_dir_all(&gens)?;
    let staging = gens.join(format!(".tmp-{number}-{}", std::process::id()));
    let base = staging.join("dists").join(&cfg.env);
    for f in &files {
        store::write_synced(&base.join(&f.path), &f.bytes)?;
        let dir = base.join(f.dir()).join("by-hash");
        store::write_synced(&dir.join("SHA256").join(f.sha256.hex()), &f.bytes)?;
        store::write_synced(&dir.join("MD5Sum").join(&f.md5), &f.bytes)?;
    }
    // Clients that read the previous InRelease fetch its files by hash after the switch.
    if let Some(c) = current {
        let prev_base = layout.gen_dir(c).join("dists").join(&cfg.env);
        for f in layout.read_meta(c)?.index_files {
            let dir = f.dir().to_string();
            for (algo, sum) in [("SHA256", f.sha256.hex()), ("MD5Sum", f.md5.clone())] {
                let rel = PathBuf::from(&dir).join("by-hash").join(algo).join(sum);
                let to = base.join(&rel);
                if to.exists() {
                    continue;
                }
                let from = prev_base.join(&rel);
                if let Some(d) = to.parent() {
                    crate::durable::create_dir_all(d)?;
                }
                if std::fs::hard_link(&from, &to).is_err() {
                    std::fs::copy(&from, &to).with_context(|| {
                        format!("could not copy `{}` to `{}`", from.display(), to.display())
                    })?;
                }
            }
        }
    }

    let valid_until = now + cfg.valid_for.as_secs() as i64;
    let release = index::release_text(&index::ReleaseInfo {
        origin: &cfg.origin,
        label: &cfg.label,
        suite: &cfg.env,
        date_secs: now,
        valid_until_secs: valid_until,
        architectures: &arches,
        files: &files,
    });
    store::write_synced(&base.join("Release"), release.as_bytes())?;
    store::write_synced(
        &base.join("InRelease"),
        &signer.clearsign(release.as_bytes())?,
    )?;
    store::write_synced(
        &base.join("Release.gpg"),
        &signer.detached_sign(release.as_bytes())?,
    )?;
    // The public key and the image index travel with the generation: `<env>/signing-key.*`
    // and `<env>/images/index.json` point into `dists/`, so they change in the same rename
    // as the signatures.
    let dists_dir = staging.join("dists");
    store::write_synced(&dists_dir.join(KEY_FILES[0]), &signer.public_key_binary())?;
    store::write_synced(
        &dists_dir.join(KEY_FILES[1]),
        signer.public_key_armored().as_bytes(),
    )?;
    store::write_synced(
        &dists_dir.join(images::GENERATION_INDEX),
        &images::index_json(&images)?,
    )?;

    let meta = GenerationMeta {
        number,
        previous,
        packages,
        index_files: files,
        history: entry,
        images,
        sweep,
        key_rotated,
    };
    let json = serde_json::to_vec_pretty(&meta).context("could not encode generation.json")?;
    store::write_synced(&staging.join("generation.json"), &json)?;

    let dir = layout.gen_dir(number);
    crate::durable::rename(&staging, &dir)?;
    if current.is_none() {
        // A new repository: its links into `dists/` dangle until the switch below.
        link_generation_files(layout, &dir.join("dists"), &meta)?;
    }
    layout.switch_to(number)?;
    // Committed: apt, the image layout and the key now serve generation `number`.
    let completed =
        store::sync_dir(&layout.env_dir).and_then(|()| store::complete_current(layout, &meta));
    if let Err(e) = completed {
        reporter.warn(format!(
            "`{}` serves generation {number}, but completing it failed ({e:#}); the next \
             builder command on `{}` completes it, or run `builder repo check {} --repair`",
            cfg.env, cfg.env, cfg.env
        ));
    }
    Ok(Generation {
        number,
        packages: meta.packages,
        images: meta.images,
        dir,
        unchanged: false,
    })
}
