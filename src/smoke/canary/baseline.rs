//! The baseline of a canary run: for every service, the image the environment's repository
//! holds (its newest version of the candidate's image name, by Debian version order), read
//! from the repository's OCI layout by digest, every blob re-hashed, then loaded into the
//! engine as a docker-archive made of those same blobs (Docker 20.10 does not load an OCI
//! layout) and checked: the engine's image id is the config digest the repository holds.
//!
//! Must not: change the repository, or tag anything (the candidate's tags stay the
//! candidate's; baseline containers run from the image id).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::docker::{Engine, LoadedImage};
use crate::oci::spec::{DockerManifestEntry, Manifest};
use crate::project::Paths;
use crate::repo::images::ImageEntry;
use crate::repo::RepoConfig;
use crate::report::Reporter;
use crate::smoke::artifacts::UnderTest;
use crate::smoke::stack::Stack;

/// The release a service's baseline runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BaselineImage {
    pub service: String,
    /// Image name and version as the environment holds them.
    pub name: String,
    pub version: String,
    /// Manifest digest (what registries show) and config digest (the Docker image id).
    pub digest: Digest,
    pub image_id: Digest,
}

/// What the environment offers as a baseline.
#[derive(Debug, Clone)]
pub(crate) enum Resolved {
    /// Every service has a release there: (image, its entry) per service, in stack order.
    Found(Vec<(BaselineImage, ImageEntry)>),
    /// No comparison: why, in one line.
    Skipped(String),
}

/// Finds each service's baseline image in environment `env`: its newest version of the
/// image the candidate runs. Errors are a repository that cannot be read; an environment
/// without a repository or without a release of some service is [`Resolved::Skipped`].
pub(crate) fn resolve(
    paths: &Paths,
    env: &str,
    stack: &Stack,
    under: &UnderTest,
) -> Result<Resolved> {
    let cfg = crate::promote::PromoteConfig::load(paths, None)?;
    if !cfg.environments.iter().any(|e| e == env) {
        let known: Vec<&str> = cfg.environments.iter().map(String::as_str).collect();
        let hint = crate::diag::did_you_mean(env, &known)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(crate::error::usage(format!(
            "baseline environment `{env}` is not one of the environments{hint}: {} (`environments` in promote.toml)",
            known.join(", ")
        )));
    }
    let repo = RepoConfig::new(&cfg.root, env);
    if !repo.env_dir().exists() {
        return Ok(Resolved::Skipped(format!(
            "no comparison: environment `{env}` has no repository yet (`{}`), so there is no baseline",
            repo.env_dir().display()
        )));
    }
    let (_, images) = crate::repo::contents(&repo)
        .with_context(|| format!("could not read the repository of environment `{env}`"))?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for svc in &stack.services {
        let Some(candidate) = under.images.get(&svc.name) else {
            continue;
        };
        let newest = images
            .iter()
            .filter(|i| i.name == candidate.name)
            .max_by(|a, b| crate::repo::version::compare(&a.version, &b.version));
        match newest {
            Some(e) => found.push((
                BaselineImage {
                    service: svc.name.clone(),
                    name: e.name.clone(),
                    version: e.version.clone(),
                    digest: e.digest,
                    image_id: e.image_id,
                },
                e.clone(),
            )),
            None => missing.push(format!("`{}` (image `{}`)", svc.name, candidate.name)),
        }
    }
    if !missing.is_empty() {
        return Ok(Resolved::Skipped(format!(
            "no comparison: environment `{env}` holds no release of {}, so there is no baseline",
            missing.join(", ")
        )));
    }
    Ok(Resolved::Found(found))
}

/// Verifies every baseline image in the repository and makes sure the engine has it under
/// its image id; returns service → image id.
/// Environment `env`'s OCI layout, every image of `found` in it verified (blob sizes and
/// digests), so what runs as the baseline is exactly what the environment holds.
pub(crate) fn verified_layout(
    paths: &Paths,
    env: &str,
    found: &[(BaselineImage, ImageEntry)],
) -> Result<std::path::PathBuf> {
    let cfg = crate::promote::PromoteConfig::load(paths, None)?;
    let layout = crate::repo::images::images_dir(&RepoConfig::new(&cfg.root, env).env_dir());
    for (_, entry) in found {
        crate::repo::images::verify_stored(&layout, entry).with_context(|| {
            format!(
                "the baseline image {} in environment `{env}` is damaged",
                entry.ref_name()
            )
        })?;
    }
    Ok(layout)
}

pub(crate) async fn ensure_images(
    engine: &Engine,
    paths: &Paths,
    env: &str,
    found: &[(BaselineImage, ImageEntry)],
    reporter: &Reporter,
) -> Result<HashMap<String, String>> {
    let layout = verified_layout(paths, env, found)?;
    let mut out = HashMap::new();
    for (b, entry) in found {
        let id = b.image_id.to_string();
        if engine.inspect_image(&id).await?.is_none() {
            reporter.status(
                "Loading",
                format!(
                    "baseline {} ({}) from environment `{env}`",
                    entry.ref_name(),
                    b.digest
                ),
            );
            let dir = tempfile::tempdir().context("could not create a temp directory")?;
            let tar = dir.path().join("baseline.tar");
            docker_archive(&layout, entry, &tar)?;
            let loaded = crate::docker::load_image_tar(engine, &tar, reporter).await?;
            let said = loaded
                .iter()
                .any(|l| matches!(l, LoadedImage::Id(x) if *x == id));
            if !said {
                return Err(crate::error::failed(format!(
                    "loading the baseline {} of environment `{env}` gave {loaded:?}, not the image id {id} the repository holds",
                    entry.ref_name()
                )));
            }
        }
        // Content-addressed: the engine's id is the sha256 of the config the manifest names.
        let got = engine
            .inspect_image(&id)
            .await?
            .map(|i| i.id)
            .unwrap_or_default();
        if got.parse::<Digest>().ok() != Some(b.image_id) {
            return Err(crate::error::failed(format!(
                "the engine has no image {id} after loading the baseline {} of environment `{env}` (it has `{got}`)",
                entry.ref_name()
            )));
        }
        out.insert(b.service.clone(), id);
    }
    Ok(out)
}

/// Writes a docker-archive tar (`manifest.json` without `RepoTags`, the config and layer
/// blobs under their OCI paths) of `entry` from the layout `images`.
fn docker_archive(images: &Path, entry: &ImageEntry, dst: &Path) -> Result<()> {
    let blob = |d: &Digest| images.join(d.blob_path());
    let manifest_path = blob(&entry.digest);
    let bytes = std::fs::read(&manifest_path)
        .with_context(|| format!("could not read `{}`", manifest_path.display()))?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("could not parse `{}`", manifest_path.display()))?;
    let docker = vec![DockerManifestEntry {
        config: manifest.config.digest.blob_path(),
        repo_tags: Vec::new(),
        layers: manifest
            .layers
            .iter()
            .map(|l| l.digest.blob_path())
            .collect(),
    }];
    let file = std::fs::File::create(dst)
        .with_context(|| format!("could not create `{}`", dst.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let mut digests = vec![manifest.config.digest];
    digests.extend(manifest.layers.iter().map(|l| l.digest));
    digests.dedup();
    let write = |tar: &mut tar::Builder<_>| -> std::io::Result<()> {
        let json = serde_json::to_vec(&docker).map_err(std::io::Error::other)?;
        let mut h = tar::Header::new_gnu();
        h.set_size(json.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, "manifest.json", json.as_slice())?;
        for d in &digests {
            tar.append_path_with_name(blob(d), d.blob_path())?;
        }
        tar.finish()
    };
    write(&mut tar).with_context(|| format!("could not write `{}`", dst.display()))?;
    tar.into_inner()
        .and_then(|mut w| std::io::Write::flush(&mut w))
        .with_context(|| format!("could not write `{}`", dst.display()))?;
    Ok(())
}
