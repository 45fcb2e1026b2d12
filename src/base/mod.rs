//! Base images made by builder itself from Debian packages (no registry needed):
//! `base-images/<name>.toml` → a deterministic rootfs tar in the cache
//! (`bases/<name>-<hash>.tar`) → an image imported through the Docker API and tagged
//! `builder/<name>:<hash>`, where the hash is the sha256 of the definition's canonical form
//! (plus its source base's hash and tarball bytes). Made once, reused while the definition is
//! unchanged. Builder images (`go`), runtime bases (`static`, `slim`) and the smoke load
//! balancer (`haproxy`) all come from here.
//!
//! Concurrency: making a rootfs and importing an image each hold a `flock` on a lock file in
//! the cache, so parallel processes (or tests) never corrupt or duplicate work.

pub(crate) mod def;
pub(crate) mod make;
pub(crate) mod pack;
mod sets;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::project::cache_dir;
pub use def::{BaseDef, BaseKind, UserDef};

use crate::diag::Diagnostic;
use crate::diag::Diagnostics;
use crate::docker::Engine;
use crate::report::Reporter;

/// Repository prefix of every base image tag.
pub const REPO_PREFIX: &str = "builder/";
/// Hex digits of the hash shown in tags.
const TAG_HEX: usize = 16;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A rootfs tar in the cache: usable as an OCI base layer as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rootfs {
    pub tar: PathBuf,
    /// `sha256:<hex>` of the uncompressed tar (the OCI diff_id).
    pub diff_id: String,
    pub size: u64,
    /// Environment the image should carry (PATH included for Debian bases).
    pub env: BTreeMap<String, String>,
    /// Default user of the image, if the definition has one.
    pub user: Option<String>,
}

/// An image in the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRef {
    pub tag: String,
    pub id: String,
}

/// What `builder base list` shows for one base.
#[derive(Debug, Clone, Serialize)]
pub struct BaseStatus {
    pub name: String,
    pub kind: String,
    pub tag: String,
    /// `None` when the engine could not be asked.
    pub image: Option<bool>,
    pub image_size: Option<u64>,
    pub rootfs_cached: bool,
    pub rootfs_size: Option<u64>,
    pub rootfs_tar: Option<PathBuf>,
    pub rootfs_diff_id: Option<String>,
}

/// Sidecar of a cached tar, so the tar is never re-hashed.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    name: String,
    hash: String,
    diff_id: String,
    size: u64,
}

/// The base image definitions of a project.
#[derive(Clone)]
pub struct BaseImages {
    inner: Arc<Inner>,
}

struct Inner {
    project: PathBuf,
    dir: PathBuf,
    defs: BTreeMap<String, BaseDef>,
    hashes: Mutex<HashMap<String, String>>,
    /// builder.lock and the archive, for `packages` bases.
    locker: crate::debian::sets::Locker,
}

/// The span of the `from` value in a base definition's text.
fn from_span(text: &str) -> Option<std::ops::Range<usize>> {
    #[derive(serde::Deserialize)]
    struct From {
        from: Option<toml::Spanned<String>>,
    }
    toml::from_str::<From>(text).ok()?.from.map(|f| f.span())
}

impl BaseImages {
    /// Reads `<project>/base-images/*.toml`. Every problem in every file is reported with
    /// file:line:col (exit code 2). A project without the directory has no bases.
    pub fn load(project: &Path) -> Result<Self> {
        let dir = project.join("base-images");
        let mut files = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd {
                    let e = e.with_context(|| format!("could not list `{}`", dir.display()))?;
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "toml") && p.is_file() {
                        files.push(p);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("could not read `{}`", dir.display())),
        }
        files.sort();
        let mut diags = Diagnostics::default();
        let mut defs = BTreeMap::new();
        // Each definition's text, so the cross-file checks below can point at `from`.
        let mut texts: HashMap<String, String> = HashMap::new();
        for f in &files {
            let text = match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) => {
                    diags.extend(Diagnostics::new(vec![Diagnostic::in_file(
                        f,
                        format!("could not read `{}`: {e}", f.display()),
                    )]));
                    continue;
                }
            };
            match def::parse(f, &text) {
                Ok(d) => {
                    texts.insert(d.name.clone(), text);
                    defs.insert(d.name.clone(), d);
                }
                Err(d) => diags.extend(d),
            }
        }
        let mut extra = Vec::new();
        for d in defs.values() {
            if let BaseKind::Static { from } = &d.kind {
                let at = |msg: String| match texts.get(&d.name) {
                    Some(text) => match from_span(text) {
                        Some(span) => Diagnostic::at(&d.file, text, span, msg),
                        None => Diagnostic::in_file(&d.file, msg),
                    },
                    None => Diagnostic::in_file(&d.file, msg),
                };
                // What `from` could name instead: rootfs bases other than this one.
                let rootfs: Vec<&str> = defs
                    .values()
                    .filter(|o| o.name != d.name)
                    .filter(|o| {
                        matches!(
                            o.kind,
                            BaseKind::Debootstrap { .. }
                                | BaseKind::Tarball { .. }
                                | BaseKind::Packages { .. }
                        )
                    })
                    .map(|o| o.name.as_str())
                    .collect();
                let one_of = if rootfs.is_empty() {
                    "none exists yet: add a packages, debootstrap or tarball base".to_string()
                } else {
                    format!("one of: {}", rootfs.join(", "))
                };
                match defs.get(from).map(|f| &f.kind) {
                    Some(
                        BaseKind::Debootstrap { .. }
                        | BaseKind::Tarball { .. }
                        | BaseKind::Packages { .. },
                    ) => {}
                    Some(k) => extra.push(
                        at(format!(
                            "base `{}` is made from `{from}`, a {} base without a rootfs",
                            d.name,
                            k.name()
                        ))
                        .help(format!(
                            "`from` must name a packages, debootstrap or tarball base, {one_of}"
                        )),
                    ),
                    None => {
                        let mut diag = at(format!(
                            "base `{}` is made from `{from}`, which does not exist",
                            d.name
                        ))
                        .help(format!("add base-images/{from}.toml, or use {one_of}"));
                        if let Some(s) = crate::diag::did_you_mean(from, &rootfs) {
                            diag = diag.label(format!("did you mean `{s}`?"));
                        }
                        extra.push(diag)
                    }
                }
            }
        }
        diags.extend(Diagnostics::new(extra));
        if !diags.is_empty() {
            return Err(diags.into());
        }
        Ok(BaseImages {
            inner: Arc::new(Inner {
                project: project.to_path_buf(),
                dir,
                defs,
                hashes: Mutex::new(HashMap::new()),
                locker: crate::debian::sets::Locker::load(project)?,
            }),
        })
    }

    /// Base names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.inner.defs.keys().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<&BaseDef> {
        self.inner.defs.get(name)
    }

    fn def(&self, name: &str) -> Result<&BaseDef> {
        self.get(name).ok_or_else(|| {
            let names = self.names();
            let known = if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            };
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let hint = crate::diag::did_you_mean(name, &refs)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            crate::error::usage(format!(
                "no base image `{name}`{hint}; known: {known} — add {}/{name}.toml",
                self.inner.dir.display()
            ))
        })
    }

    /// The full content hash (hex) of a base.
    pub fn hash(&self, name: &str) -> Result<String> {
        if let Some(h) = self
            .inner
            .hashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(h.clone());
        }
        let def = self.def(name)?;
        let mut hasher = Sha256::new();
        hasher.update(def.canonical());
        match &def.kind {
            BaseKind::Static { from } => {
                hasher.update(b"\0from:");
                hasher.update(self.hash(from)?.as_bytes());
            }
            BaseKind::Tarball { path } => {
                let file = self.inner.project.join(path);
                let mut f = std::fs::File::open(&file).with_context(|| {
                    format!(
                        "base `{name}`: could not read the rootfs tarball `{}`",
                        file.display()
                    )
                })?;
                let mut th = Sha256::new();
                std::io::copy(&mut f, &mut th)
                    .with_context(|| format!("could not read `{}`", file.display()))?;
                hasher.update(b"\0tarball:");
                hasher.update(th.finalize());
            }
            BaseKind::Packages { .. } | BaseKind::Debootstrap { .. } => {
                if matches!(def.kind, BaseKind::Packages { .. }) {
                    hasher.update(b"\0assembly:");
                    hasher.update(crate::debian::assemble::FORMAT.to_le_bytes());
                }
                // The tag follows the locked files: a new lock is a new base.
                match self.locked_set(name)? {
                    Some(set) => {
                        hasher.update(b"\0locked:");
                        for p in &set.packages {
                            hasher.update(p.sha256.as_bytes());
                        }
                    }
                    None => hasher.update(b"\0unlocked"),
                }
            }
            _ => {}
        }
        let h = hex::encode(hasher.finalize());
        self.inner
            .hashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), h.clone());
        Ok(h)
    }

    /// `builder/<name>:<hash>`; an unknown name is a usage error listing the known ones.
    pub fn tag(&self, name: &str) -> Result<String> {
        let h = self.hash(name)?;
        Ok(format!("{REPO_PREFIX}{name}:{}", &h[..TAG_HEX]))
    }

    fn paths(&self, name: &str) -> Result<(PathBuf, PathBuf, PathBuf)> {
        let h = self.hash(name)?;
        let dir = cache_dir().join("bases");
        let stem = format!("{name}-{}", &h[..TAG_HEX]);
        Ok((
            dir.join(format!("{stem}.tar")),
            dir.join(format!("{stem}.json")),
            dir.join(format!("{stem}.lock")),
        ))
    }

    fn to_rootfs(&self, def: &BaseDef, tar: PathBuf, meta: &Meta) -> Rootfs {
        let mut env = def.env.clone();
        if !matches!(def.kind, BaseKind::Static { .. }) {
            env.entry("PATH".into())
                .or_insert_with(|| DEFAULT_PATH.into());
        }
        Rootfs {
            tar,
            diff_id: meta.diff_id.clone(),
            size: meta.size,
            env,
            user: def.user.as_ref().map(|u| u.name.clone()),
        }
    }

    /// The cached rootfs, if it was made already (never makes it).
    pub fn cached_rootfs(&self, name: &str) -> Result<Option<Rootfs>> {
        let def = self.def(name)?;
        if matches!(def.kind, BaseKind::Registry { .. }) {
            return Ok(None);
        }
        let (tar, meta_path, _) = self.paths(name)?;
        let Ok(text) = std::fs::read_to_string(&meta_path) else {
            return Ok(None);
        };
        let Ok(meta) = serde_json::from_str::<Meta>(&text) else {
            return Ok(None);
        };
        match std::fs::metadata(&tar) {
            Ok(m) if m.len() == meta.size => Ok(Some(self.to_rootfs(def, tar, &meta))),
            _ => Ok(None),
        }
    }

    /// The deterministic rootfs tar of a base, made (debootstrap, unpack, or assembled
    /// from its source base) if it is not cached. Blocking; may take minutes when cold.
    pub fn rootfs(&self, name: &str, reporter: &Reporter) -> Result<Rootfs> {
        let def = self.def(name)?;
        if let BaseKind::Registry { reference } = &def.kind {
            return Err(crate::error::usage(format!(
                "base `{name}` is pulled from a registry (`{reference}`) and has no rootfs tar; use a debootstrap, tarball or static base here"
            )));
        }
        // Before any path is computed: the cache file names carry the hash, which follows
        // the lock (of a static base's source too).
        self.lock_chain(name, reporter)?;
        if let Some(r) = self.cached_rootfs(name)? {
            return Ok(r);
        }
        let (tar, meta_path, lock) = self.paths(name)?;
        let dir = tar.parent().context("cache path without a parent")?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create the cache directory `{}`", dir.display()))?;
        let _lock = crate::fslock::FileLock::acquire(&lock, || {
            reporter.status(
                "Waiting",
                format!("for another builder making base `{name}`"),
            )
        })?;
        if let Some(r) = self.cached_rootfs(name)? {
            return Ok(r);
        }
        reporter.status("Making", format!("base `{name}` ({})", def.kind.name()));
        let written = match &def.kind {
            BaseKind::Static { from } => {
                let src = self.rootfs(from, reporter)?;
                make::make_static(name, from, &src.tar, &tar)
            }
            BaseKind::Packages { .. } => {
                let set = self.locked_set(name)?.ok_or_else(|| {
                    anyhow::anyhow!("internal: base `{name}` is not locked after locking")
                })?;
                self.make_packages(def, &set, &tar, reporter)
            }
            BaseKind::Debootstrap { .. } => {
                let debs = self.locked_debs(name, reporter)?;
                make::make_tree_base(def, &self.inner.project, &tar, Some(&debs), reporter)
            }
            _ => make::make_tree_base(def, &self.inner.project, &tar, None, reporter),
        }
        .with_context(|| format!("could not make base `{name}`"))?;
        let meta = Meta {
            name: name.to_string(),
            hash: self.hash(name)?,
            diff_id: written.diff_id,
            size: written.size,
        };
        crate::durable::write(&meta_path, &serde_json::to_vec_pretty(&meta)?)?;
        Ok(self.to_rootfs(def, tar, &meta))
    }

    /// The image of a base, made if needed: reused when the tag exists; otherwise the rootfs
    /// is made and imported untagged (Env/User/labels set through the import's `changes`),
    /// then tagged, so a half-made image is never tagged.
    pub async fn ensure_image(
        &self,
        engine: &Engine,
        name: &str,
        reporter: &Reporter,
    ) -> Result<ImageRef> {
        let def = self.def(name)?.clone();
        // The tag follows the lock: a tag computed before locking is the "unlocked" one, which
        // the next run (with the lock written) no longer looks for, so it would import again.
        if self.follows_lock(name)? {
            let me = self.clone();
            let (n2, r2) = (name.to_string(), reporter.clone());
            tokio::task::spawn_blocking(move || me.lock_chain(&n2, &r2))
                .await
                .context("the lock task failed")??;
        }
        let tag = self.tag(name)?;
        if let Some(i) = engine.inspect_image(&tag).await? {
            return Ok(ImageRef { tag, id: i.id });
        }
        let (repo, version) = tag.split_once(':').context("bad tag")?;
        if let BaseKind::Registry { reference } = &def.kind {
            return self
                .pull(engine, name, reference, repo, version, reporter)
                .await;
        }
        let (_, _, lock) = self.paths(name)?;
        let image_lock = lock.with_extension("image.lock");
        if let Some(dir) = image_lock.parent() {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("could not create the cache directory `{}`", dir.display())
            })?;
        }
        let r2 = reporter.clone();
        let n2 = name.to_string();
        let _lock = tokio::task::spawn_blocking(move || {
            crate::fslock::FileLock::acquire(&image_lock, || {
                r2.status(
                    "Waiting",
                    format!("for another builder importing base `{n2}`"),
                )
            })
        })
        .await
        .context("the lock task failed")??;
        if let Some(i) = engine.inspect_image(&tag).await? {
            return Ok(ImageRef { tag, id: i.id });
        }
        let me = self.clone();
        let (n2, r2) = (name.to_string(), reporter.clone());
        let rootfs = tokio::task::spawn_blocking(move || me.rootfs(&n2, &r2))
            .await
            .context("the rootfs task failed")??;
        let progress = reporter.progress(format!("import {name}"), None);
        let mut changes: Vec<String> = rootfs
            .env
            .iter()
            .map(|(k, v)| format!("ENV {k}={}", quote(v)))
            .collect();
        if let Some(u) = &rootfs.user {
            changes.push(format!("USER {u}"));
        }
        changes.push(format!(
            "LABEL {}={name} io.builder.hash={version} {}={} {}={}",
            crate::docker::LABEL_BASE,
            crate::docker::LABEL_IMAGE_PID,
            std::process::id(),
            crate::docker::LABEL_IMAGE_PID_SCOPE,
            quote(&crate::docker::pid_scope())
        ));
        let opts = crate::docker::ImportOptions {
            changes,
            message: Some(format!(
                "{}{name} ({})",
                crate::docker::IMPORT_COMMENT_PREFIX,
                def.kind.name()
            )),
        };
        let id = crate::docker::import_rootfs(engine, &rootfs.tar, &opts)
            .await
            .with_context(|| format!("could not import base `{name}`"))?;
        if let Err(e) = crate::docker::tag_image(engine, &id, repo, version).await {
            let _ = crate::docker::remove_image(engine, &id, true).await;
            return Err(e);
        }
        progress.finish(format!("{tag} ({} MB)", rootfs.size / 1_000_000));
        // The temp tree was being removed while the image imported; finish that now.
        let _ = tokio::task::spawn_blocking(make::wait_for_cleanup).await;
        Ok(ImageRef { tag, id })
    }

    async fn pull(
        &self,
        engine: &Engine,
        name: &str,
        reference: &str,
        repo: &str,
        version: &str,
        reporter: &Reporter,
    ) -> Result<ImageRef> {
        let progress = reporter.progress(format!("pull {name}"), None);
        // Without a tag the engine pulls every tag of the repository: ask for `latest`, as
        // `docker pull` does, and use the full reference from here on.
        let full;
        let reference = match pull_tag(reference) {
            Some(tag) => {
                full = format!("{reference}:{tag}");
                full.as_str()
            }
            None => reference,
        };
        engine
            .pull_image(reference, |s| progress.message(s))
            .await
            .with_context(|| {
                format!("could not pull `{reference}` for base `{name}`; is the registry reachable? a debootstrap base needs none")
            })?;
        crate::docker::tag_image(engine, reference, repo, version).await?;
        let id = engine
            .inspect_image(reference)
            .await?
            .map(|i| i.id)
            .unwrap_or_default();
        let tag = format!("{repo}:{version}");
        progress.finish(&tag);
        Ok(ImageRef { tag, id })
    }

    /// Status of one base for `builder base list`; `docker = None` leaves image fields unknown.
    pub async fn status(&self, engine: Option<&Engine>, name: &str) -> Result<BaseStatus> {
        let def = self.def(name)?;
        let tag = self.tag(name)?;
        let (image, image_size) = match engine {
            Some(e) => match e.inspect_image(&tag).await? {
                Some(i) => (Some(true), i.size),
                None => (Some(false), None),
            },
            None => (None, None),
        };
        let cached = self.cached_rootfs(name)?;
        Ok(BaseStatus {
            name: name.to_string(),
            kind: def.kind.name().to_string(),
            tag,
            image,
            image_size,
            rootfs_cached: cached.is_some(),
            rootfs_size: cached.as_ref().map(|r| r.size),
            rootfs_tar: cached.as_ref().map(|r| r.tar.clone()),
            rootfs_diff_id: cached.map(|r| r.diff_id),
        })
    }

    /// Removes the base's current tag (and the image if no longer used) and its cached
    /// rootfs tar. With `all_versions`, every `builder/<name>:*` tag and every cached tar of
    /// the base (older definitions too). Returns what was removed.
    pub async fn remove(
        &self,
        engine: &Engine,
        name: &str,
        all_versions: bool,
    ) -> Result<Vec<String>> {
        self.def(name)?;
        let current_tag = self.tag(name)?;
        let current_hash = current_tag
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut removed = Vec::new();
        let repo = format!("{REPO_PREFIX}{name}");
        let tags = engine
            .image_tags(&repo)
            .await
            .context("could not list images")?;
        for t in tags
            .iter()
            .filter(|t| t.starts_with(&format!("{repo}:")))
            .filter(|t| all_versions || **t == current_tag)
        {
            if crate::docker::remove_image(engine, t, false).await? {
                removed.push(t.clone());
            }
        }
        let dir = cache_dir().join("bases");
        // The gzip layers `package` made from these rootfs (`oci-layers/<diff_id hex>.*`),
        // unless another base's rootfs is the same tar.
        let mut layers = Vec::new();
        let mut kept_layers = std::collections::BTreeSet::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let f = e.file_name().to_string_lossy().into_owned();
                let is_ours = cache_file_hash(&f, name)
                    .is_some_and(|hash| all_versions || hash == current_hash);
                if f.ends_with(".json") {
                    // A record whose diff_id is no digest names no layer file to remove.
                    let diff_id = std::fs::read(e.path())
                        .ok()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                        .and_then(|v| v["diff_id"].as_str()?.parse::<crate::digest::Digest>().ok());
                    if let Some(d) = diff_id {
                        if is_ours {
                            layers.push(d);
                        } else {
                            kept_layers.insert(d);
                        }
                    }
                }
                // The rootfs, its record and its two (empty) lock files.
                if is_ours
                    && [".tar", ".json", ".lock"]
                        .iter()
                        .any(|ext| f.ends_with(ext))
                {
                    std::fs::remove_file(e.path())
                        .with_context(|| format!("could not remove `{}`", e.path().display()))?;
                    if f.ends_with(".tar") {
                        removed.push(e.path().display().to_string());
                    }
                }
            }
        }
        let layer_dir = cache_dir().join("oci-layers");
        for d in layers.iter().filter(|d| !kept_layers.contains(*d)) {
            let hex = d.hex();
            for ext in ["tar.gz", "json"] {
                let p = layer_dir.join(format!("{hex}.{ext}"));
                match std::fs::remove_file(&p) {
                    Ok(()) if ext == "tar.gz" => removed.push(p.display().to_string()),
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("could not remove `{}`", p.display()))
                    }
                }
            }
        }
        Ok(removed)
    }
}

/// The definition hash in the cache file name `<name>-<16 hex>.<ext>` of base `name`;
/// `None` for any other name (`<name>-other-...` of another base, short or non-ASCII names).
fn cache_file_hash<'a>(file: &'a str, name: &str) -> Option<&'a str> {
    let rest = file.strip_prefix(name)?.strip_prefix('-')?;
    let hash = rest.get(..TAG_HEX)?;
    (hash.chars().all(|c| c.is_ascii_hexdigit()) && rest.as_bytes().get(TAG_HEX) == Some(&b'.'))
        .then_some(hash)
}

/// The tag to pull when a registry `ref` names none: `latest` unless the reference carries
/// a digest (`@sha256:...`) or its last path component a `:tag` (a colon before the last
/// `/` is a registry port, as in `host:5000/repo`).
fn pull_tag(reference: &str) -> Option<&'static str> {
    if reference.contains('@') {
        return None;
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    (!last.contains(':')).then_some("latest")
}

/// Quotes a value for an `ENV` line of the import `changes` (Dockerfile syntax).
fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_bases_with_a_bad_from_are_reported_at_from() {
        let dir = tempfile::tempdir().unwrap();
        let bases = dir.path().join("base-images");
        std::fs::create_dir_all(&bases).unwrap();
        for (name, text) in [
            ("bookworm", "kind = \"debootstrap\"\nsuite = \"bookworm\"\n"),
            (
                "m",
                "# runtime\nkind = \"static\"\nfrom = \"missingbase\"\n",
            ),
            ("mm", "kind = \"static\"\nfrom = \"bokworm\"\n"),
            ("cyc1", "kind = \"static\"\nfrom = \"cyc2\"\n"),
            ("cyc2", "kind = \"static\"\nfrom = \"cyc1\"\n"),
        ] {
            std::fs::write(bases.join(format!("{name}.toml")), text).unwrap();
        }
        let Err(err) = BaseImages::load(dir.path()) else {
            panic!("bad `from`s must be refused");
        };
        let err = format!("{err:#}");
        assert!(err.contains("base-images/m.toml:3:8"), "{err}");
        assert!(err.contains("base-images/cyc1.toml:2:8"), "{err}");
        assert!(err.contains("base-images/cyc2.toml:2:8"), "{err}");
        assert!(err.contains("did you mean `bookworm`?"), "{err}");
        // Only rootfs bases are offered, never the file's own name.
        assert!(
            err.contains("add base-images/missingbase.toml, or use one of: bookworm\n"),
            "{err}"
        );
        assert!(!err.contains("did you mean `m`"), "{err}");
        assert!(!err.contains("did you mean `mm`"), "{err}");
    }

    #[test]
    fn untagged_registry_refs_pull_latest_only() {
        assert_eq!(pull_tag("debian"), Some("latest"));
        assert_eq!(pull_tag("library/debian"), Some("latest"));
        assert_eq!(
            pull_tag("host:5000/repo"),
            Some("latest"),
            "a port is no tag"
        );
        assert_eq!(pull_tag("host:5000/team/repo"), Some("latest"));
        assert_eq!(pull_tag("debian:12-slim"), None);
        assert_eq!(pull_tag("host:5000/repo:1.2"), None);
        assert_eq!(pull_tag("debian@sha256:0123abcd"), None);
        assert_eq!(pull_tag("host:5000/repo@sha256:0123abcd"), None);
    }

    #[test]
    fn cache_file_names_never_panic_and_match_only_this_base() {
        let hash = "0123456789abcdef";
        assert_eq!(TAG_HEX, hash.len());
        assert_eq!(cache_file_hash(&format!("go-{hash}.tar"), "go"), Some(hash));
        assert_eq!(
            cache_file_hash(&format!("go-{hash}.json"), "go"),
            Some(hash)
        );
        assert_eq!(cache_file_hash(&format!("go-other-{hash}.tar"), "go"), None);
        assert_eq!(cache_file_hash(&format!("go-{hash}x.tar"), "go"), None);
        assert_eq!(cache_file_hash("go-0123", "go"), None);
        assert_eq!(cache_file_hash("go-", "go"), None);
        // a multi-byte character across the hash boundary
        assert_eq!(cache_file_hash("go-0123456789abcdeé.tar", "go"), None);
        assert_eq!(cache_file_hash("go-ééééééééé.tar", "go"), None);
        assert_eq!(cache_file_hash(&format!("gox{hash}.tar"), "go"), None);
    }
}
