//! Where things live: the project root, recipes, dist/, the cache; and the one clock builder
//! uses for archives (`SOURCE_DATE_EPOCH`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Resolved project locations shared by every operation.
#[derive(Debug, Clone)]
pub struct Paths {
    pub project: PathBuf,
    pub recipes: PathBuf,
    pub dist: PathBuf,
}

impl Paths {
    /// The default layout under a project root.
    pub fn new(project: impl Into<PathBuf>) -> Self {
        let project = project.into();
        // `./recipes` reads worse than `recipes` in every message.
        let under = |name: &str| {
            if project == Path::new(".") {
                PathBuf::from(name)
            } else {
                project.join(name)
            }
        };
        Paths {
            recipes: under("recipes"),
            dist: under("dist"),
            project,
        }
    }

    pub fn base_images(&self) -> PathBuf {
        self.project.join("base-images")
    }

    pub fn manifest(&self) -> PathBuf {
        self.dist.join("manifest.json")
    }
}

/// builder's cache directory (base rootfs tars, build outputs by key):
/// `$BUILDER_CACHE`, else `$XDG_CACHE_HOME/builder`, else `~/.cache/builder`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("BUILDER_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(p).join("builder");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => PathBuf::from(h).join(".cache").join("builder"),
        None => std::env::temp_dir().join("builder-cache"),
    }
}

/// 2242-03-16T12:56:31Z (8^11 - 1): the latest time a ustar header's 11 octal digits hold,
/// which every tar reader (dpkg's too) understands without extensions.
pub const MAX_SOURCE_DATE_EPOCH: u64 = 8_589_934_591;

/// The timestamp written into every archive, so that the same inputs give the same bytes:
/// 1. `SOURCE_DATE_EPOCH` when set (the reproducible-builds convention);
/// 2. else the commit time of the project's git HEAD;
/// 3. else the newest modification time among `inputs` (the recipe and its files).
pub fn source_date_epoch(project: &Path, inputs: &[PathBuf]) -> anyhow::Result<u64> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return match v.trim().parse::<u64>() {
            Ok(t) if t <= MAX_SOURCE_DATE_EPOCH => Ok(t),
            Ok(_) => Err(crate::error::usage(format!(
                "SOURCE_DATE_EPOCH=`{v}` is after 2242-03-16, the latest time a tar header \
                 holds: set it to a time in seconds since 1970, e.g. \
                 SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)"
            ))),
            Err(_) => Err(crate::error::usage(format!(
                "SOURCE_DATE_EPOCH=`{v}` is not a number of seconds since 1970: unset it or set e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)"
            ))),
        };
    }
    if let Some(t) = git_head_time(project) {
        return Ok(t);
    }
    let newest = inputs
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok()?.modified().ok())
        .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .max();
    Ok(newest.unwrap_or(0))
}

fn git_head_time(project: &Path) -> Option<u64> {
    let out = Command::new("git")
        .arg("-C")
        .arg(project)
        .args(["log", "-1", "--format=%ct"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// The commit the project is at (for manifests and image labels), if it is a git checkout.
pub fn git_revision(project: &Path) -> Option<String> {
    git(project, &["rev-parse", "HEAD"]).filter(|s| !s.is_empty())
}

/// The trimmed output of `git -C <project> <args>` in the C locale, or `None` when git is
/// missing or fails.
pub fn git(project: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(project)
        .args(args)
        .env("LC_ALL", "C")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
