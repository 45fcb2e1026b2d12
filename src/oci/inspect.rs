//! Reading an image tar back (`builder inspect dist/images/X.tar`): the OCI index, manifest
//! and config, and every blob checked against its digest in one pass over the tar. Layers
//! are decompressed on the way to check their `diff_id` and measure their unpacked size.
//!
//! Memory is bounded whatever the tar holds: blobs are hashed as they stream by and only
//! their digest, size and position are kept; the manifest and config (at most
//! [`SMALL_BLOB`] each) are read back from their position afterwards and hashed again;
//! the JSON files and every tar header are bounded too (`crate::deb::limits`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use flate2::read::MultiGzDecoder;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

use super::spec::{DockerManifestEntry, ImageConfig, Index, Manifest, ANNOTATION_REF_NAME};
use crate::deb::limits::{self, human, TarGuard};

/// Most bytes of a JSON document builder parses: a manifest, a config, `index.json`,
/// `manifest.json` (builder's are a few KiB).
const SMALL_BLOB: u64 = 4 << 20;

/// What `builder inspect` shows for an image tar.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInspect {
    pub path: PathBuf,
    /// `name:tag` from Docker's `manifest.json`.
    pub repo_tags: Vec<String>,
    /// The OCI `org.opencontainers.image.ref.name`.
    pub ref_name: Option<String>,
    /// The digest of the config: the id Docker gives the image.
    pub image_id: Digest,
    pub manifest_digest: Digest,
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
    pub config: InspectConfig,
    pub layers: Vec<InspectLayer>,
    /// Compressed layers plus config: what a registry would store.
    pub total_size: u64,
    /// Sum of the uncompressed layer tars: close to what `docker images` shows.
    pub uncompressed_size: u64,
    /// Size of the tar file itself.
    pub tar_size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InspectConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub workdir: String,
    pub ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InspectLayer {
    pub digest: Digest,
    pub diff_id: String,
    pub media_type: String,
    pub size: u64,
    pub uncompressed_size: u64,
    pub created_by: Option<String>,
}

/// One blob seen in the tar.
struct Blob {
    size: u64,
    /// Where its bytes start in the tar file, to read a manifest or config back.
    offset: u64,
    /// sha256 and size of the gunzipped content when the blob is gzip.
    unpacked: Option<(String, u64)>,
}

/// A reader that hashes what is read through it.
struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

fn read_blob(entry: impl Read, name: &str) -> anyhow::Result<(Digest, Blob)> {
    let mut r = HashReader {
        inner: entry,
        hasher: Sha256::new(),
        count: 0,
    };
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        let n = r.read(&mut head[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let mut chained = (&head[..got]).chain(&mut r);
    let mut unpacked = None;
    if got == 2 && head == [0x1f, 0x8b] {
        let mut gz = HashReader {
            // Every member: a layer may be several concatenated gzip members (eStargz).
            inner: MultiGzDecoder::new(&mut chained),
            hasher: Sha256::new(),
            count: 0,
        };
        std::io::copy(&mut gz, &mut std::io::sink())
            .with_context(|| format!("`{name}` is not a valid gzip stream"))?;
        unpacked = Some((
            Digest::from_bytes(gz.hasher.finalize().into()).to_string(),
            gz.count,
        ));
    }
    // Drain what the decoder did not need (trailing bytes still belong to the digest).
    std::io::copy(&mut chained, &mut std::io::sink())?;
    let digest = Digest::from_bytes(r.hasher.finalize().into());
    Ok((
        digest,
        Blob {
            size: r.count,
            offset: 0,
            unpacked,
        },
    ))
}

/// Reads a JSON file of at most [`SMALL_BLOB`] bytes, refusing a larger one before reading.
fn read_small(r: impl Read, size: u64, name: &str, tar: &Path) -> anyhow::Result<Vec<u8>> {
    if size > SMALL_BLOB {
        return Err(crate::error::usage(format!(
            "`{name}` in `{}` declares {} ({size} bytes); builder reads at most {} of it",
            tar.display(),
            human(size),
            human(SMALL_BLOB)
        )));
    }
    let mut buf = Vec::with_capacity(size as usize);
    r.take(size)
        .read_to_end(&mut buf)
        .with_context(|| format!("could not read `{name}` in `{}`", tar.display()))?;
    Ok(buf)
}

/// Reads and checks an image tar written by builder (or any OCI layout tar with one image).
pub fn inspect(path: &Path) -> anyhow::Result<ImageInspect> {
    let file = File::open(path).with_context(|| format!("could not open `{}`", path.display()))?;
    let tar_size = file
        .metadata()
        .with_context(|| format!("could not read `{}`", path.display()))?
        .len();
    let guard = TarGuard::new(BufReader::new(&file), limits::IMAGE_TAR);
    let mut archive = tar::Archive::new(guard);
    let mut blobs: BTreeMap<Digest, Blob> = BTreeMap::new();
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let entries = archive
        .entries()
        .with_context(|| format!("`{}` is not a tar archive", path.display()))?;
    for entry in entries {
        let mut entry =
            entry.with_context(|| format!("`{}` is not a valid tar archive", path.display()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let size = entry.size();
        let offset = entry.raw_file_position();
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            let (digest, mut blob) = read_blob(&mut entry, &name)
                .with_context(|| format!("could not read `{name}` in `{}`", path.display()))?;
            if Digest::from_hex(hex) != Ok(digest) {
                bail!(
                    "`{name}` in `{}` is corrupt: its content hashes to {digest}",
                    path.display()
                );
            }
            blob.offset = offset;
            blobs.insert(digest, blob);
        } else if matches!(name.as_str(), "index.json" | "manifest.json" | "oci-layout") {
            let buf = read_small(&mut entry, size, &name, path)?;
            files.insert(name, buf);
        }
    }
    drop(archive);
    let not_image = |what: &str| {
        crate::error::usage(format!(
            "`{}` is not an OCI image tar: {what}; build one with `builder package`",
            path.display()
        ))
    };
    if !files.contains_key("oci-layout") {
        return Err(not_image("it has no `oci-layout` file"));
    }
    let index_bytes = files
        .get("index.json")
        .ok_or_else(|| not_image("it has no `index.json`"))?;
    let index: Index = serde_json::from_slice(index_bytes)
        .with_context(|| format!("`index.json` in `{}` is not valid", path.display()))?;
    let [desc] = index.manifests.as_slice() else {
        return Err(not_image(&format!(
            "`index.json` lists {} manifests, builder writes exactly one",
            index.manifests.len()
        )));
    };
    // Read back from where the blob was seen, and hashed again: the file may have changed.
    let small = |digest: &Digest, what: &str| -> anyhow::Result<Vec<u8>> {
        let blob = blobs
            .get(digest)
            .ok_or_else(|| not_image(&format!("the {what} blob {digest} is missing")))?;
        let name = format!("{what} blob {digest}");
        let mut f = &file;
        f.seek(SeekFrom::Start(blob.offset))
            .with_context(|| format!("could not read `{}`", path.display()))?;
        let bytes = read_small(f, blob.size, &name, path)?;
        if Digest::of(&bytes) != *digest {
            bail!(
                "`{}` changed while it was read: the {what} blob {digest} no longer matches",
                path.display()
            );
        }
        Ok(bytes)
    };
    // A descriptor's size must be its blob's: OCI tools (skopeo, containerd) refuse a
    // mismatch, so inspect must too.
    let sized = |d: &Digest, declared: u64, what: &str| -> anyhow::Result<()> {
        match blobs.get(d) {
            Some(b) if b.size != declared => bail!(
                "`{}` is corrupt: the {what} descriptor says {declared} bytes, blob {d} has {}",
                path.display(),
                b.size
            ),
            _ => Ok(()),
        }
    };
    sized(&desc.digest, desc.size, "manifest")?;
    let manifest: Manifest = serde_json::from_slice(&small(&desc.digest, "manifest")?)
        .with_context(|| format!("the manifest in `{}` is not valid", path.display()))?;
    sized(&manifest.config.digest, manifest.config.size, "config")?;
    let config: ImageConfig = serde_json::from_slice(&small(&manifest.config.digest, "config")?)
        .with_context(|| format!("the config in `{}` is not valid", path.display()))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        bail!(
            "`{}` is inconsistent: the manifest lists {} layers, the config {} diff_ids",
            path.display(),
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        );
    }

    let repo_tags = match files.get("manifest.json") {
        Some(bytes) => {
            let docker: Vec<DockerManifestEntry> = serde_json::from_slice(bytes)
                .with_context(|| format!("`manifest.json` in `{}` is not valid", path.display()))?;
            let entry = docker
                .first()
                .ok_or_else(|| not_image("`manifest.json` is empty"))?;
            let want: Vec<String> = manifest
                .layers
                .iter()
                .map(|l| l.digest.blob_path())
                .collect();
            if entry.config != manifest.config.digest.blob_path() || entry.layers != want {
                bail!(
                    "`{}` is inconsistent: `manifest.json` and `index.json` name different blobs",
                    path.display()
                );
            }
            entry.repo_tags.clone()
        }
        None => Vec::new(),
    };

    let layer_history: Vec<_> = config.history.iter().filter(|h| !h.empty_layer).collect();
    let mut layers = Vec::new();
    for (i, (desc, diff_id)) in manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .enumerate()
    {
        let blob = blobs.get(&desc.digest).ok_or_else(|| {
            not_image(&format!("layer {} blob {} is missing", i + 1, desc.digest))
        })?;
        sized(&desc.digest, desc.size, &format!("layer {}", i + 1))?;
        let gzip_type = desc.media_type.ends_with("+gzip") || desc.media_type.ends_with(".gzip");
        if gzip_type != blob.unpacked.is_some() {
            bail!(
                "`{}` is corrupt: layer {} has media type `{}`, but its blob is {}gzip",
                path.display(),
                i + 1,
                desc.media_type,
                if blob.unpacked.is_some() { "" } else { "not " }
            );
        }
        let (unpacked_digest, unpacked_size) = match &blob.unpacked {
            Some(u) => u.clone(),
            // An uncompressed layer: the blob is the tar.
            None => (desc.digest.to_string(), blob.size),
        };
        if &unpacked_digest != diff_id {
            bail!(
                "`{}` is corrupt: layer {} unpacks to {unpacked_digest}, the config says {diff_id}",
                path.display(),
                i + 1
            );
        }
        layers.push(InspectLayer {
            digest: desc.digest,
            diff_id: diff_id.clone(),
            media_type: desc.media_type.clone(),
            size: blob.size,
            uncompressed_size: unpacked_size,
            created_by: layer_history.get(i).and_then(|h| h.created_by.clone()),
        });
    }
    let rc = config.config.clone();
    Ok(ImageInspect {
        path: path.to_path_buf(),
        repo_tags,
        ref_name: desc.annotations.get(ANNOTATION_REF_NAME).cloned(),
        image_id: manifest.config.digest,
        manifest_digest: desc.digest,
        created: config.created.clone(),
        architecture: config.architecture.clone(),
        os: config.os.clone(),
        config: InspectConfig {
            entrypoint: rc.entrypoint,
            cmd: rc.cmd,
            env: rc.env,
            user: rc.user,
            workdir: rc.working_dir,
            ports: rc.exposed_ports.into_keys().collect(),
            labels: rc.labels,
        },
        total_size: manifest.config.size + layers.iter().map(|l| l.size).sum::<u64>(),
        uncompressed_size: layers.iter().map(|l| l.uncompressed_size).sum(),
        layers,
        tar_size,
    })
}

/// Human-readable sizes: `1.4 MB` (powers of 1000, like `docker images`).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The text `builder inspect` prints for an image.
pub fn render(i: &ImageInspect) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let list = |v: &[String]| -> String {
        if v.is_empty() {
            "-".to_string()
        } else {
            serde_json::to_string(v).unwrap_or_default()
        }
    };
    let _ = writeln!(s, "image     {}", i.path.display());
    let _ = writeln!(
        s,
        "tags      {}",
        if i.repo_tags.is_empty() {
            "-".to_string()
        } else {
            i.repo_tags.join(", ")
        }
    );
    let _ = writeln!(s, "id        {}", i.image_id);
    let _ = writeln!(s, "manifest  {}", i.manifest_digest);
    let _ = writeln!(s, "platform  {}/{}", i.os, i.architecture);
    let _ = writeln!(s, "created   {}", i.created.as_deref().unwrap_or("-"));
    let _ = writeln!(
        s,
        "size      {} unpacked, {} compressed, tar {}",
        human_size(i.uncompressed_size),
        human_size(i.total_size),
        human_size(i.tar_size)
    );
    let _ = writeln!(s, "config");
    let _ = writeln!(s, "  entrypoint  {}", list(&i.config.entrypoint));
    let _ = writeln!(s, "  cmd         {}", list(&i.config.cmd));
    let _ = writeln!(
        s,
        "  user        {}",
        if i.config.user.is_empty() {
            "- (root)"
        } else {
            &i.config.user
        }
    );
    let _ = writeln!(
        s,
        "  workdir     {}",
        if i.config.workdir.is_empty() {
            "-"
        } else {
            &i.config.workdir
        }
    );
    let _ = writeln!(
        s,
        "  ports       {}",
        if i.config.ports.is_empty() {
            "-".to_string()
        } else {
            i.config.ports.join(", ")
        }
    );
    let _ = writeln!(s, "  env");
    for e in &i.config.env {
        let _ = writeln!(s, "    {e}");
    }
    let _ = writeln!(s, "  labels");
    for (k, v) in &i.config.labels {
        let _ = writeln!(s, "    {k}={v}");
    }
    let _ = writeln!(s, "layers");
    for (n, l) in i.layers.iter().enumerate() {
        let _ = writeln!(
            s,
            "  {}. {} ({} compressed, {} unpacked)\n     diff_id {}{}",
            n + 1,
            l.digest,
            human_size(l.size),
            human_size(l.uncompressed_size),
            l.diff_id,
            l.created_by
                .as_deref()
                .map(|c| format!("\n     {c}"))
                .unwrap_or_default()
        );
    }
    s.trim_end().to_string()
}

/// `builder inspect IMAGE.tar`: the report as text, or as JSON with `--json`.
pub fn print(path: &Path, reporter: &crate::report::Reporter) -> anyhow::Result<u8> {
    use crate::error::{exit_code, Failure, EXIT_FAILED};
    // A damaged or foreign file is bad input (exit 2), as for a .deb; a full disk or a
    // permission problem keeps its own class.
    let report = inspect(path).map_err(|e| {
        if exit_code(&e) == EXIT_FAILED {
            e.context(Failure::Usage(format!(
                "`{}` is not a readable image tar: pass one that `builder package` wrote \
                 (dist/images/*.tar) or `docker save` made",
                path.display()
            )))
        } else {
            e
        }
    })?;
    if reporter.is_json() {
        reporter.json(&report)?;
    } else {
        reporter.output(render(&report));
    }
    Ok(crate::error::EXIT_OK)
}
