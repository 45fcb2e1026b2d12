//! The image side of an environment repository: an OCI image layout under `<env>/images/`.
//!
//! ```text
//! <env>/images/
//!   oci-layout                   {"imageLayoutVersion":"1.0.0"}
//!   index.json                   one manifest descriptor per `<name>:<version>`
//!                                (annotation `org.opencontainers.image.ref.name`),
//!                                rewritten through a temp file + rename from the current
//!                                generation's image list (generation.json is the truth)
//!   blobs/sha256/<hex>           content-addressed, copied byte for byte, never changed
//! ```
//!
//! Owns: reading and verifying builder's image tars (every blob hashed against its name, the
//! manifest digest and config digest against what was approved), copying blobs from a tar or
//! another environment, verifying a stored image again, and writing `index.json`.
//! Must not: decide what may be promoted, or talk to a registry (see `crate::promote`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

use crate::oci::spec::{
    Descriptor, Index, Manifest, ANNOTATION_REF_NAME, MEDIA_INDEX, MEDIA_MANIFEST, OCI_LAYOUT,
};

/// One image in a generation (and in the history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    pub name: String,
    pub version: String,
    /// The digest of the manifest bytes: the digest registries and `skopeo` show.
    pub digest: Digest,
    pub media_type: String,
    /// Size of the manifest bytes.
    pub size: u64,
    /// The digest of the config: the Docker image id.
    pub image_id: Digest,
    /// Every blob (manifest, config, layers) with its size.
    pub blobs: Vec<(Digest, u64)>,
    /// The smoke run whose passed report approved this image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

impl ImageEntry {
    /// `<name>:<version>` (the version as a tag: an epoch's `:` becomes `_`), the OCI ref
    /// name in `index.json`.
    pub fn ref_name(&self) -> String {
        format!("{}:{}", self.name, self.tag())
    }

    /// The registry tag: the version with characters a tag cannot hold replaced.
    pub fn tag(&self) -> String {
        crate::image::tag_for_version(&self.version)
    }

    pub fn same_key(&self, o: &ImageEntry) -> bool {
        self.name == o.name && self.version == o.version
    }
}

/// Where the blobs of an image to import come from.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// A builder image tar (`dist/images/<name>_<version>.tar`).
    Tar(PathBuf),
    /// Another environment's `images/` directory.
    Layout(PathBuf),
}

/// An approved image and where its bytes are.
#[derive(Debug, Clone)]
pub struct ImageArtifact {
    pub entry: ImageEntry,
    pub source: ImageSource,
}

pub(crate) fn images_dir(env_dir: &Path) -> PathBuf {
    env_dir.join("images")
}

fn blob_file(images: &Path, digest: &Digest) -> PathBuf {
    images.join(digest.blob_path())
}

/// Reads an image tar, hashing every blob, and returns the image whose manifest digest is
/// `want_digest` (or the only one when `None`) with every blob it needs checked present
/// and intact. Nothing is written.
pub(crate) fn read_image_tar(
    path: &Path,
    name: &str,
    version: &str,
    want_digest: Option<&Digest>,
) -> anyhow::Result<ImageEntry> {
    let f = File::open(path).with_context(|| format!("could not read `{}`", path.display()))?;
    let mut ar = tar::Archive::new(std::io::BufReader::new(f));
    // digest named by the entry → (digest computed, size); small blobs kept for parsing.
    let mut sums: BTreeMap<Digest, (Digest, u64)> = BTreeMap::new();
    let mut small: BTreeMap<Digest, Vec<u8>> = BTreeMap::new();
    let mut index: Option<Vec<u8>> = None;
    let entries = ar
        .entries()
        .with_context(|| format!("could not read the tar `{}`", path.display()))?;
    for ent in entries {
        let mut ent =
            ent.with_context(|| format!("could not read the tar `{}`", path.display()))?;
        let p = ent
            .path()
            .with_context(|| format!("bad entry name in `{}`", path.display()))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if p == "index.json" {
            let mut b = Vec::new();
            ent.read_to_end(&mut b)
                .with_context(|| format!("could not read index.json in `{}`", path.display()))?;
            index = Some(b);
        } else if let Some(named) = p.strip_prefix("blobs/sha256/") {
            // A name that is no digest names no blob a descriptor can ask for.
            let Ok(digest) = Digest::from_hex(named) else {
                continue;
            };
            let mut hasher = Sha256::new();
            let mut keep = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut size = 0u64;
            loop {
                let n = ent
                    .read(&mut buf)
                    .with_context(|| format!("could not read `{p}` in `{}`", path.display()))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                if size < (4 << 20) {
                    keep.extend_from_slice(&buf[..n]);
                }
                size += n as u64;
            }
            let got = Digest::from_bytes(hasher.finalize().into());
            if size < (4 << 20) {
                small.insert(digest, keep);
            }
            sums.insert(digest, (got, size));
        }
    }
    let index = index.ok_or_else(|| {
        crate::error::failed(format!(
            "`{}` has no index.json: it is not an OCI image tar written by builder",
            path.display()
        ))
    })?;
    let index: Index = serde_json::from_slice(&index)
        .with_context(|| format!("could not parse index.json in `{}`", path.display()))?;
    let desc = match want_digest {
        Some(d) => index
            .manifests
            .iter()
            .find(|m| m.digest == *d)
            .ok_or_else(|| {
                let have: Vec<String> = index
                    .manifests
                    .iter()
                    .map(|m| m.digest.to_string())
                    .collect();
                crate::error::failed(format!(
                "image {name} {version}: the smoke report approved manifest {d}, but `{}` holds {}",
                path.display(),
                have.join(", ")
            ))
            })?,
        None => match index.manifests.as_slice() {
            [one] => one,
            _ => {
                return Err(crate::error::failed(format!(
                    "`{}` holds {} manifests and the report names no digest to choose one",
                    path.display(),
                    index.manifests.len()
                )))
            }
        },
    };
    let check = |d: &Descriptor| -> anyhow::Result<u64> {
        let Some((got, size)) = sums.get(&d.digest) else {
            return Err(crate::error::failed(format!(
                "`{}` lacks blob {} that image {name} {version} needs",
                path.display(),
                d.digest
            )));
        };
        if *got != d.digest {
            return Err(crate::error::failed(format!(
                "image {name} {version}: blob {} in `{}` has sha256 {got}: the tar was changed \
                 after it was written",
                d.digest,
                path.display()
            )));
        }
        Ok(*size)
    };
    let msize = check(desc)?;
    let bytes = small.get(&desc.digest).cloned().unwrap_or_default();
    let manifest: Manifest = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "could not parse manifest {} of `{}`",
            desc.digest,
            path.display()
        )
    })?;
    let mut blobs = vec![(desc.digest, msize)];
    blobs.push((manifest.config.digest, check(&manifest.config)?));
    for l in &manifest.layers {
        blobs.push((l.digest, check(l)?));
    }
    Ok(ImageEntry {
        name: name.to_string(),
        version: version.to_string(),
        digest: desc.digest,
        media_type: manifest
            .media_type
            .clone()
            .unwrap_or_else(|| desc.media_type.clone()),
        size: msize,
        image_id: manifest.config.digest,
        blobs,
        run: None,
    })
}

/// Recomputes every blob of `entry` stored under `images` and checks the manifest names the
/// same config. Used before an image moves on to the next environment.
pub(crate) fn verify_stored(images: &Path, entry: &ImageEntry) -> anyhow::Result<()> {
    for (digest, _) in &entry.blobs {
        let p = blob_file(images, digest);
        let (got, _) = crate::oci::blob::file_digest(&p)?;
        if got != *digest {
            return Err(crate::error::failed(format!(
                "image {}: blob `{}` has sha256 {got}, but {digest} was approved: it was changed \
                 after promotion",
                entry.ref_name(),
                p.display()
            )));
        }
    }
    let p = blob_file(images, &entry.digest);
    let bytes = fs::read(&p).with_context(|| format!("could not read `{}`", p.display()))?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("could not parse `{}`", p.display()))?;
    if m.config.digest != entry.image_id {
        return Err(crate::error::failed(format!(
            "image {}: manifest {} names config {}, but {} was approved",
            entry.ref_name(),
            entry.digest,
            m.config.digest,
            entry.image_id
        )));
    }
    Ok(())
}

/// Copies the blobs of `art` that `images` lacks, hashing each on the way and renaming it
/// into place only when its bytes match its digest. A blob already present is hashed too:
/// one whose bytes no longer match its name (a damaged disk, a hand edit) is copied again
/// from the approved source instead of being published as approved.
pub(crate) fn import(images: &Path, art: &ImageArtifact) -> anyhow::Result<()> {
    let dir = images.join("blobs").join("sha256");
    crate::durable::create_dir_all(&dir)?;
    let mut wanted: BTreeSet<&Digest> = BTreeSet::new();
    for (d, _) in &art.entry.blobs {
        let have = blob_file(images, d);
        let intact =
            have.exists() && crate::oci::blob::file_digest(&have).is_ok_and(|(got, _)| got == *d);
        if !intact {
            wanted.insert(d);
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    match &art.source {
        ImageSource::Layout(src) => {
            for d in wanted {
                let from = blob_file(src, d);
                let mut f = File::open(&from)
                    .with_context(|| format!("could not read `{}`", from.display()))?;
                put_blob(images, d, &mut f)?;
            }
        }
        ImageSource::Tar(tar_path) => {
            let f = File::open(tar_path)
                .with_context(|| format!("could not read `{}`", tar_path.display()))?;
            let mut ar = tar::Archive::new(std::io::BufReader::new(f));
            let mut done = BTreeSet::new();
            for ent in ar
                .entries()
                .with_context(|| format!("could not read `{}`", tar_path.display()))?
            {
                let mut ent =
                    ent.with_context(|| format!("could not read `{}`", tar_path.display()))?;
                let p = ent
                    .path()
                    .map(|p| p.to_string_lossy().trim_start_matches("./").to_string())
                    .unwrap_or_default();
                if let Some(d) = p
                    .strip_prefix("blobs/sha256/")
                    .and_then(|h| Digest::from_hex(h).ok())
                {
                    if wanted.contains(&d) && done.insert(d) {
                        put_blob(images, &d, &mut ent)?;
                    }
                }
            }
            if let Some(missing) = wanted.iter().find(|d| !done.contains(*d)) {
                return Err(crate::error::failed(format!(
                    "`{}` no longer holds blob {missing}: it changed after it was checked",
                    tar_path.display()
                )));
            }
        }
    }
    Ok(())
}

/// Streams `r` into a temp file beside the blob, checks the sha256 and renames it into place
/// (durably).
fn put_blob(images: &Path, digest: &Digest, r: &mut dyn Read) -> anyhow::Result<()> {
    let dest = blob_file(images, digest);
    if fs::symlink_metadata(&dest).is_ok_and(|m| !m.is_file()) {
        // Something else under the blob's name (a directory, a FIFO): nothing but blobs
        // belongs there.
        super::store::remove_any(&dest)?;
    }
    let mut out = crate::durable::AtomicFile::create(&dest, crate::durable::PUBLIC)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r
            .read(&mut buf)
            .with_context(|| format!("could not read blob {digest}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.file()
            .write_all(&buf[..n])
            .with_context(|| format!("could not write `{}`", dest.display()))?;
    }
    let got = Digest::from_bytes(hasher.finalize().into());
    if got != *digest {
        return Err(crate::error::failed(format!(
            "blob {digest} read back as {got}: its source changed while it was copied"
        )));
    }
    out.commit()
}

/// The `index.json` text for `images` (sorted by ref name, so equal lists give equal bytes).
pub(crate) fn index_json(images: &[ImageEntry]) -> anyhow::Result<Vec<u8>> {
    let mut sorted: Vec<&ImageEntry> = images.iter().collect();
    sorted.sort_by_key(|i| i.ref_name());
    let index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_INDEX.to_string()),
        manifests: sorted
            .iter()
            .map(|i| Descriptor {
                media_type: if i.media_type.is_empty() {
                    MEDIA_MANIFEST.to_string()
                } else {
                    i.media_type.clone()
                },
                digest: i.digest,
                size: i.size,
                annotations: [(ANNOTATION_REF_NAME.to_string(), i.ref_name())].into(),
            })
            .collect(),
    };
    let mut out = serde_json::to_vec_pretty(&index).context("could not encode index.json")?;
    out.push(b'\n');
    Ok(out)
}

/// The image index each generation holds (`.generations/<n>/dists/images-index.json`);
/// `images/index.json` is a symlink to it through `dists`, so it switches with apt's indexes.
pub(crate) const GENERATION_INDEX: &str = "images-index.json";

/// Makes `images/` an OCI layout (its `oci-layout` file and blob directory).
pub(crate) fn ensure_layout(dir: &Path) -> anyhow::Result<()> {
    crate::durable::create_dir_all(&dir.join("blobs").join("sha256"))?;
    let layout = dir.join("oci-layout");
    if !layout.exists() {
        crate::durable::write(&layout, OCI_LAYOUT.as_bytes())?;
    }
    Ok(())
}

/// Makes `images/index.json` a file listing exactly `images`, for a current generation
/// written by a builder that kept no image index inside it. Returns whether it changed.
pub(crate) fn write_index(env_dir: &Path, images: &[ImageEntry]) -> anyhow::Result<bool> {
    let dir = images_dir(env_dir);
    let path = dir.join("index.json");
    let want = index_json(images)?;
    if images.is_empty() && !path.exists() {
        return Ok(false);
    }
    if fs::read(&path).is_ok_and(|have| have == want) {
        return Ok(false);
    }
    ensure_layout(&dir)?;
    crate::durable::write(&path, &want)?;
    Ok(true)
}

/// How many blobs `images/blobs/sha256/` holds.
pub(crate) fn blob_count(env_dir: &Path) -> usize {
    fs::read_dir(images_dir(env_dir).join("blobs").join("sha256"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

/// Removes temp files and blobs no digest in `referenced` names; returns how many.
pub(crate) fn remove_unreferenced(
    env_dir: &Path,
    referenced: &BTreeSet<Digest>,
) -> anyhow::Result<usize> {
    let dir = images_dir(env_dir);
    let mut removed = 0;
    for sub in [dir.clone(), dir.join("blobs").join("sha256")] {
        let Ok(rd) = fs::read_dir(&sub) else { continue };
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            let place = if sub == dir {
                super::store::TempPlace::Images
            } else {
                super::store::TempPlace::Blobs
            };
            let doomed = if super::store::is_leftover(place, &name) {
                true
            } else if sub != dir {
                !Digest::from_hex(&name).is_ok_and(|d| referenced.contains(&d))
            } else {
                false
            };
            if doomed {
                // A directory there (made by hand, or by another tool) is removed too:
                // nothing but blobs belongs in `blobs/sha256/`.
                super::store::remove_any(&ent.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}
