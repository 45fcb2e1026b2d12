//! `dist/manifest.json`: every artifact builder produced, with sha256, size, version and the
//! source commit. Stages update their own entries (same kind + name replaced); the file is
//! rewritten through a temp file and a rename, so readers never see half of it.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Format version of this file.
    pub schema: u32,
    /// The commit of the project the artifacts were made from, if it is a git checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Artifact {
    /// `deb` or `image`.
    pub kind: String,
    /// Package (or image) name.
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Path relative to dist/.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// Image id (`sha256:` of the config), for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Manifest digest, for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// `name:version` tag the image was loaded as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl Manifest {
    pub const SCHEMA: u32 = 1;

    /// Reads the manifest, or an empty one when it does not exist yet.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "`{}` is not a valid builder manifest: delete it and run `builder package` again",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
                schema: Self::SCHEMA,
                ..Default::default()
            }),
            Err(e) => Err(e).with_context(|| format!("could not read `{}`", path.display())),
        }
    }

    /// Adds or replaces the artifact with the same kind and name.
    pub fn upsert(&mut self, a: Artifact) {
        self.artifacts
            .retain(|x| !(x.kind == a.kind && x.name == a.name));
        self.artifacts.push(a);
        self.artifacts
            .sort_by(|x, y| (&x.kind, &x.name).cmp(&(&y.kind, &y.name)));
    }

    pub fn find(&self, kind: &str, name: &str) -> Option<&Artifact> {
        self.artifacts
            .iter()
            .find(|a| a.kind == kind && a.name == name)
    }

    /// Writes the manifest atomically (temp file in the same directory, then rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        write_atomic(path, &text)
    }
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("could not create `{}`", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".builder-tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("could not create a temp file in `{}`", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("could not write `{}`", path.display()))?;
    tmp.as_file().sync_all().ok();
    tmp.persist(path)
        .with_context(|| format!("could not write `{}`", path.display()))?;
    Ok(())
}
