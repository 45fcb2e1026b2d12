//! The image tar: one deterministic tar that is at the same time an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/...`) and a Docker archive (`manifest.json`
//! naming the same config and layer blobs), the shape `docker save` of Docker 25 writes.
//! Docker 20.10's `/images/load` reads `manifest.json` and decompresses gzip layers itself;
//! skopeo and umoci read the OCI side.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;

use super::blob::{HashWriter, LayerBlob};
use super::spec::{
    Descriptor, DockerManifestEntry, ImageConfig, Index, Manifest, ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME, MEDIA_CONFIG, MEDIA_INDEX, MEDIA_LAYER_GZIP, MEDIA_MANIFEST, OCI_LAYOUT,
};
use crate::archive::{write_tar, FileSource, TarOptions, Tree};
use crate::digest::Digest;

/// What goes into one image tar.
pub struct ImageParts<'a> {
    pub config: &'a ImageConfig,
    /// Layer blobs, base first, in `config.rootfs.diff_ids` order.
    pub layers: &'a [LayerBlob],
    /// `name:tag` for Docker's `RepoTags` and containerd's image name.
    pub repo_tag: &'a str,
    /// The tag alone, for the OCI `org.opencontainers.image.ref.name` annotation.
    pub ref_name: &'a str,
    /// mtime of every entry of the outer tar.
    pub mtime: u64,
}

/// Digests of what [`write_image_tar`] wrote.
#[derive(Debug, Clone)]
pub struct WrittenImage {
    /// Digest of the config: the Docker image id.
    pub config_digest: Digest,
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    /// sha256 of the whole tar file.
    pub tar_digest: Digest,
    /// Size of the tar file.
    pub tar_size: u64,
}

/// Writes the image tar to a temporary file beside `dst` and renames it into place, so a
/// reader never sees a half-written image.
pub fn write_image_tar(dst: &Path, parts: &ImageParts<'_>) -> anyhow::Result<WrittenImage> {
    let config_bytes = serde_json::to_vec(parts.config).context("could not encode the config")?;
    let config_digest = Digest::of(&config_bytes);
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_MANIFEST.to_string()),
        config: Descriptor {
            media_type: MEDIA_CONFIG.to_string(),
            digest: config_digest,
            size: config_bytes.len() as u64,
            annotations: BTreeMap::new(),
        },
        layers: parts
            .layers
            .iter()
            .map(|l| Descriptor {
                media_type: MEDIA_LAYER_GZIP.to_string(),
                digest: l.digest,
                size: l.size,
                annotations: BTreeMap::new(),
            })
            .collect(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).context("could not encode the manifest")?;
    let manifest_digest = Digest::of(&manifest_bytes);
    let mut annotations = BTreeMap::new();
    annotations.insert(ANNOTATION_REF_NAME.to_string(), parts.ref_name.to_string());
    annotations.insert(
        ANNOTATION_CONTAINERD_NAME.to_string(),
        parts.repo_tag.to_string(),
    );
    let index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_INDEX.to_string()),
        manifests: vec![Descriptor {
            media_type: MEDIA_MANIFEST.to_string(),
            digest: manifest_digest,
            size: manifest_bytes.len() as u64,
            annotations,
        }],
    };
    let docker = vec![DockerManifestEntry {
        config: config_digest.blob_path(),
        repo_tags: vec![parts.repo_tag.to_string()],
        layers: parts.layers.iter().map(|l| l.digest.blob_path()).collect(),
    }];

    let mut tree = Tree::new();
    let tree_err =
        |e: crate::archive::TreeError| anyhow::anyhow!("could not lay out the image: {e}");
    tree.add_dir("blobs", 0o755).map_err(tree_err)?;
    tree.add_dir("blobs/sha256", 0o755).map_err(tree_err)?;
    let mut add_blob = |digest: &Digest, src: FileSource| -> anyhow::Result<()> {
        let path = digest.blob_path();
        // The same bytes twice (two identical layers) are stored once, as in any CAS.
        if tree.get(&path).is_none() {
            tree.add_file(&path, 0o644, src).map_err(tree_err)?;
        }
        Ok(())
    };
    add_blob(&config_digest, FileSource::Bytes(config_bytes.into()))?;
    add_blob(&manifest_digest, FileSource::Bytes(manifest_bytes.into()))?;
    for layer in parts.layers {
        add_blob(&layer.digest, FileSource::Path(layer.path.clone()))?;
    }
    tree.add_file(
        "index.json",
        0o644,
        FileSource::Bytes(to_json(&index)?.into()),
    )
    .map_err(tree_err)?;
    tree.add_file(
        "manifest.json",
        0o644,
        FileSource::Bytes(to_json(&docker)?.into()),
    )
    .map_err(tree_err)?;
    tree.add_file(
        "oci-layout",
        0o644,
        FileSource::Bytes(OCI_LAYOUT.as_bytes().to_vec().into()),
    )
    .map_err(tree_err)?;

    let dir = dst.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("could not create `{}`", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".image-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("could not create a temporary file in `{}`", dir.display()))?;
    let w = HashWriter::new(BufWriter::new(tmp.as_file()));
    let w = write_tar(&tree, w, &TarOptions::oci(parts.mtime))
        .with_context(|| format!("could not write `{}`", dst.display()))?;
    let (mut buf, tar_digest, tar_size) = w.finish();
    buf.flush()
        .with_context(|| format!("could not write `{}`", dst.display()))?;
    drop(buf);
    set_mode_0644(tmp.as_file());
    crate::durable::persist(tmp, dst)?;
    Ok(WrittenImage {
        config_digest,
        manifest_digest,
        manifest,
        tar_digest,
        tar_size,
    })
}

/// Temp files are 0600; an artifact in dist/ should be readable like any other.
fn set_mode_0644(file: &File) {
    use std::os::unix::fs::PermissionsExt;
    let _ = file.set_permissions(std::fs::Permissions::from_mode(0o644));
}

fn to_json<T: serde::Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    serde_json::to_vec(value).context("could not encode the image index")
}
