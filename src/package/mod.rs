//! `builder package`: recipe + build outputs → `dist/debs/<name>_<version>_<arch>.deb`
//! (reproducible: SOURCE_DATE_EPOCH, see [`crate::project::source_date_epoch`]), recorded
//! with its sha256 and size in `dist/manifest.json`.

mod deb;
pub mod systemd;

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

pub use deb::build_dir;

use crate::base::BaseImages;
use crate::digest::Digest;
use crate::image::{ImageOptions, ImageResult};
use crate::manifest::{Artifact, ArtifactKind, Manifest};
use crate::project::Paths;
use crate::recipe::{Compression, Recipe};
use crate::report::Reporter;

/// Options of one `builder package` run.
#[derive(Debug, Clone)]
pub struct PackageOptions {
    /// Overrides each recipe's compression.
    pub compression: Option<Compression>,
    /// Also make images for recipes with an `[image]` table.
    pub images: bool,
    /// Load the images into the Docker engine.
    pub load: bool,
}

impl Default for PackageOptions {
    fn default() -> Self {
        PackageOptions {
            compression: None,
            images: true,
            load: true,
        }
    }
}

/// One written .deb.
#[derive(Debug, Clone, Serialize)]
pub struct DebResult {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub path: PathBuf,
    #[serde(with = "crate::digest::bare")]
    pub sha256: Digest,
    pub size: u64,
    pub installed_size_kib: u64,
    pub source_date_epoch: u64,
}

/// What packaging one recipe produced.
#[derive(Debug, Clone, Serialize)]
pub struct PackageResult {
    pub deb: DebResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageResult>,
}

/// Packages each recipe: checks its image spec, writes the .deb, then makes (and loads)
/// the image. Everything a recipe's image needs is checked before its .deb is written.
pub async fn package(
    paths: &Paths,
    recipes: &[&Recipe],
    opts: &PackageOptions,
    reporter: &Reporter,
) -> anyhow::Result<Vec<PackageResult>> {
    let bases = if opts.images && recipes.iter().any(|r| r.image.is_some()) {
        Some(BaseImages::load(&paths.project)?)
    } else {
        None
    };
    let mut results = Vec::new();
    for recipe in recipes {
        let mtime = crate::project::source_date_epoch(&paths.project, &deb::inputs(recipe))?;
        let spec = deb::spec(recipe, &paths.dist, opts.compression, mtime)?;
        if let (Some(bases), Some(_)) = (&bases, &recipe.image) {
            crate::image::check_image_spec(recipe, &spec.data, bases)?;
            crate::image::check_image_starts(recipe, &spec.data, bases, reporter)?;
        }
        let deb = write_deb(paths, recipe, &spec, mtime, reporter)?;
        let image = match (&bases, &recipe.image) {
            (Some(_), Some(_)) => {
                let revision = crate::project::git_revision(&paths.project);
                Some(package_image(paths, recipe, &deb, None, opts.load, revision, reporter).await?)
            }
            _ => None,
        };
        results.push(PackageResult { deb, image });
    }
    Ok(results)
}

/// Writes the .deb of one recipe into `dist/debs/` and records it in the manifest.
fn write_deb(
    paths: &Paths,
    recipe: &Recipe,
    spec: &crate::deb::DebSpec,
    mtime: u64,
    reporter: &Reporter,
) -> anyhow::Result<DebResult> {
    let p = &recipe.package;
    let out = paths.dist.join("debs").join(p.deb_file_name());
    std::fs::create_dir_all(out.parent().unwrap_or(&paths.dist))
        .with_context(|| format!("could not create `{}`", paths.dist.join("debs").display()))?;
    let info = crate::deb::write_deb(spec, &out)
        .with_context(|| format!("could not write the package for `{}`", p.name))?;
    reporter.status(
        "Packaged",
        format!(
            "{} {} → {} ({} bytes)",
            p.name,
            p.version(),
            out.display(),
            info.size
        ),
    );
    record(paths, |m| {
        m.upsert(Artifact {
            kind: ArtifactKind::Deb,
            name: p.name.clone(),
            version: p.version(),
            architecture: Some(p.architecture.clone()),
            path: format!("debs/{}", p.deb_file_name()),
            sha256: info.sha256,
            size: info.size,
            image_id: None,
            digest: None,
            tag: None,
            source_commit: None,
        })
    })?;
    Ok(DebResult {
        name: p.name.clone(),
        version: p.version(),
        architecture: p.architecture.clone(),
        path: out,
        sha256: info.sha256,
        size: info.size,
        installed_size_kib: info.installed_size_kib,
        source_date_epoch: mtime,
    })
}

/// Makes the image of a recipe from its .deb (on `base` or the recipe's base) and records
/// it in the manifest.
async fn package_image(
    paths: &Paths,
    recipe: &Recipe,
    deb: &DebResult,
    base: Option<&str>,
    load: bool,
    revision: Option<String>,
    reporter: &Reporter,
) -> anyhow::Result<ImageResult> {
    let opts = ImageOptions {
        mtime: deb.source_date_epoch,
        load,
        revision: revision.clone(),
        source: recipe.package.homepage.clone(),
    };
    let image =
        crate::image::build_image(paths, recipe, &deb.path, &deb.sha256, base, &opts, reporter)
            .await?;
    let rel = image
        .path
        .strip_prefix(&paths.dist)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| image.path.to_string_lossy().into_owned());
    record(paths, |m| {
        m.upsert(Artifact {
            kind: ArtifactKind::Image,
            name: image.name.clone(),
            version: recipe.package.version(),
            architecture: Some(recipe.package.architecture.clone()),
            path: rel,
            sha256: image.tar_sha256,
            size: image.tar_size,
            image_id: Some(image.image_id),
            digest: Some(image.manifest_digest),
            tag: Some(image.tag.clone()),
            source_commit: revision,
        })
    })?;
    Ok(image)
}

/// A new image for `recipe` from the .deb already in dist/ on another base: no build, no
/// new .deb, no container. The .deb must still be the one the manifest records.
pub async fn rebase(
    paths: &Paths,
    recipe: &Recipe,
    base: &str,
    load: bool,
    reporter: &Reporter,
) -> anyhow::Result<ImageResult> {
    let p = &recipe.package;
    let manifest = Manifest::load(&paths.manifest())?;
    let recorded = manifest
        .find(ArtifactKind::Deb, &p.name)
        .filter(|a| a.version == p.version())
        .ok_or_else(|| {
            crate::error::usage(format!(
                "no .deb of `{}` {} in `{}`: run `builder package {}` first",
                p.name,
                p.version(),
                paths.manifest().display(),
                p.name
            ))
        })?;
    let path = paths.dist.join(&recorded.path);
    let sha256 = Digest::of_file(&path)?;
    if sha256 != recorded.sha256 {
        return Err(crate::error::failed(format!(
            "`{}` changed since it was packaged (sha256 {}, manifest says {}): run `builder package {}` again",
            path.display(),
            sha256.hex(),
            recorded.sha256.hex(),
            p.name
        )));
    }
    // The image tells where its .deb came from: the commit and SOURCE_DATE_EPOCH the .deb was
    // packaged with, not the checkout's state now.
    let mtime = match crate::image::deb_mtime(&path) {
        Some(t) => t,
        None => crate::project::source_date_epoch(&paths.project, &deb::inputs(recipe))?,
    };
    let revision = recorded.source_commit.clone();
    let deb = DebResult {
        name: p.name.clone(),
        version: p.version(),
        architecture: p.architecture.clone(),
        path,
        sha256,
        size: recorded.size,
        installed_size_kib: 0,
        source_date_epoch: mtime,
    };
    package_image(paths, recipe, &deb, Some(base), load, revision, reporter).await
}

/// Drops manifest entries of recipes that no longer exist (their package or image name is
/// no recipe's), after every recipe was packaged, so manifest.json and what `smoke` and CI
/// read list only artifacts the project still makes. Returns the dropped entries.
pub fn forget_removed(paths: &Paths, all: &[&Recipe]) -> anyhow::Result<Vec<Artifact>> {
    let mut names = std::collections::BTreeSet::new();
    for r in all {
        names.insert((ArtifactKind::Deb, r.package.name.as_str()));
        if let Some(i) = &r.image {
            names.insert((ArtifactKind::Image, i.name.as_str()));
        }
    }
    let mut dropped = Vec::new();
    let path = paths.manifest();
    if !path.exists() {
        return Ok(dropped);
    }
    let m = Manifest::load(&path)?;
    if m.artifacts
        .iter()
        .all(|a| names.contains(&(a.kind, a.name.as_str())))
    {
        return Ok(dropped);
    }
    record(paths, |m| {
        m.artifacts.retain(|a| {
            let keep = names.contains(&(a.kind, a.name.as_str()));
            if !keep {
                dropped.push(a.clone());
            }
            keep
        })
    })?;
    Ok(dropped)
}

/// Loads the manifest under its lock, applies `f`, stamps the project's commit on the
/// artifacts `f` added and saves it atomically.
pub fn record(paths: &Paths, f: impl FnOnce(&mut Manifest)) -> anyhow::Result<()> {
    Manifest::update(
        &paths.manifest(),
        crate::project::git_revision(&paths.project),
        f,
    )
}
