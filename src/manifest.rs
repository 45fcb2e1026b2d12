//! `dist/manifest.json`: every artifact builder produced, with sha256, size, version and the
//! source commit it was made from. Stages update their own entries (same kind + name
//! replaced) under `dist/.manifest.lock`, so concurrent commands never lose each other's
//! entries; the file is rewritten through a temp file and a rename, so readers never see
//! half of it.

use std::path::Path;

use crate::digest::Digest;
use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Manifest {
    /// Format version of this file.
    pub schema: u32,
    /// The commit every artifact was made from, when they share one (see each artifact's
    /// own `source_commit` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    pub artifacts: Vec<Artifact>,
}

/// What an artifact is; `deb`, `image` and `changes` in the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ArtifactKind {
    Deb,
    Image,
    /// The `.changes` written beside a .deb (named like it), for reprepro/aptly/dput: it
    /// goes with its .deb to an upload, but is never promoted or smoke-tested itself.
    Changes,
}

impl ArtifactKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::Deb => "deb",
            ArtifactKind::Image => "image",
            ArtifactKind::Changes => "changes",
        }
    }

    /// Whether promotion publishes artifacts of this kind (and smoke reports list them).
    pub(crate) fn promoted(self) -> bool {
        matches!(self, ArtifactKind::Deb | ArtifactKind::Image)
    }
}

impl std::fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Artifact {
    pub kind: ArtifactKind,
    /// Package (or image) name.
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Path relative to dist/.
    pub path: String,
    /// Bare hex in the file, like SHA256SUMS.
    #[serde(with = "crate::digest::bare")]
    pub sha256: Digest,
    /// Bytes; 0 when a file left it out (promotion's reader never needed it, so smoke
    /// reports written without it stay readable).
    #[serde(default)]
    pub size: u64,
    /// Image id (the digest of the config), for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<Digest>,
    /// Manifest digest, for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// `name:version` tag the image was loaded as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The git commit of the project this artifact was made from, if it is a checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
}

impl Manifest {
    pub(crate) const SCHEMA: u32 = 1;

    /// Reads the manifest, or an empty one when it does not exist yet.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let mut m: Manifest = serde_json::from_slice(&bytes).with_context(|| {
                    format!(
                        "`{}` is not a valid builder manifest: delete it and run `builder package` again",
                        path.display()
                    )
                })?;
                // Manifests written before artifacts carried their own commit had one for all.
                if let Some(c) = &m.source_commit {
                    for a in m.artifacts.iter_mut().filter(|a| a.source_commit.is_none()) {
                        a.source_commit = Some(c.clone());
                    }
                }
                Ok(m)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
                schema: Self::SCHEMA,
                ..Default::default()
            }),
            Err(e) => Err(e).with_context(|| format!("could not read `{}`", path.display())),
        }
    }

    /// Adds or replaces the artifact with the same kind and name.
    pub(crate) fn upsert(&mut self, a: Artifact) {
        self.artifacts
            .retain(|x| !(x.kind == a.kind && x.name == a.name));
        self.artifacts.push(a);
        self.artifacts
            .sort_by(|x, y| (x.kind, &x.name).cmp(&(y.kind, &y.name)));
    }

    /// The commit all `artifacts` were made from, if they name one and the same one.
    pub(crate) fn common_commit<'a>(
        artifacts: impl IntoIterator<Item = &'a Artifact>,
    ) -> Option<String> {
        let mut commits = artifacts.into_iter().map(|a| a.source_commit.as_deref());
        let first = commits.next()??;
        commits.all(|c| c == Some(first)).then(|| first.to_string())
    }

    /// Loads the manifest at `path` under its lock, applies `f`, stamps `commit` on the
    /// artifacts `f` added without one and saves it atomically. Holding the lock from load to
    /// rename is what keeps two concurrent `builder package` runs from dropping each other's
    /// entries.
    pub(crate) fn update(
        path: &Path,
        commit: Option<String>,
        f: impl FnOnce(&mut Manifest),
    ) -> anyhow::Result<()> {
        let _lock = Self::lock(path)?;
        let mut m = Manifest::load(path)?;
        m.schema = Manifest::SCHEMA;
        f(&mut m);
        for a in m.artifacts.iter_mut().filter(|a| a.source_commit.is_none()) {
            a.source_commit.clone_from(&commit);
        }
        m.source_commit = Self::common_commit(&m.artifacts);
        m.save(path)
    }

    /// The lock that serialises changes to the manifest at `path` (`.manifest.lock` beside it).
    pub(crate) fn lock(path: &Path) -> anyhow::Result<crate::fslock::FileLock> {
        let dir = created_parent(path)?;
        crate::fslock::FileLock::acquire(&dir.join(".manifest.lock"), || {})
    }

    pub(crate) fn find(&self, kind: ArtifactKind, name: &str) -> Option<&Artifact> {
        self.artifacts
            .iter()
            .find(|a| a.kind == kind && a.name == name)
    }

    /// Writes the manifest atomically (temp file in the same directory, then rename).
    pub(crate) fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        crate::durable::write(path, &text)
    }
}

/// The directory `path` is in (`.` for a bare name), created if missing.
fn created_parent(path: &Path) -> anyhow::Result<&Path> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("could not create `{}`", dir.display()))?;
    Ok(dir)
}
