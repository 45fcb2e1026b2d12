//! `builder package`: recipe + build outputs → `dist/debs/<name>_<version>_<arch>.deb`
//! (reproducible: SOURCE_DATE_EPOCH, see [`crate::project::source_date_epoch`]), recorded
//! with its sha256 and size in `dist/manifest.json`.

pub(crate) mod changelog;
pub(crate) mod changes;
mod deb;
pub(crate) mod maintscripts;
pub(crate) mod shlibs;
pub(crate) mod systemd;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

pub(crate) use deb::build_dir;
pub(crate) use maintscripts::generated_depends;

use crate::base::BaseImages;
use crate::digest::Digest;
use crate::image::{ImageOptions, ImageResult, ImageTarget};
use crate::manifest::{Artifact, ArtifactKind, Manifest};
use crate::plan::Plan;
use crate::project::Paths;
use crate::recipe::Recipe;
use crate::report::Reporter;

/// Options of one `builder package` run; what to package (compression, images, paths) is
/// the plan's ([`crate::plan::PlanOptions`]).
#[derive(Debug, Clone)]
pub(crate) struct PackageOptions {
    /// Load the images into the Docker engine.
    pub load: bool,
}

impl Default for PackageOptions {
    fn default() -> Self {
        PackageOptions { load: true }
    }
}

/// One written .deb.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DebResult {
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
pub(crate) struct PackageResult {
    pub deb: DebResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageResult>,
}

/// Executes the package steps of `plan`, in its order: per recipe, checks its image spec,
/// writes the .deb where the plan says, then makes (and loads) the planned image.
/// Everything a recipe's image needs is checked before its .deb is written.
pub(crate) async fn package(
    paths: &Paths,
    plan: &Plan,
    opts: &PackageOptions,
    reporter: &Reporter,
) -> anyhow::Result<Vec<PackageResult>> {
    let bases = if plan.recipes.iter().any(|r| r.image.is_some()) {
        Some(BaseImages::load(&paths.project)?)
    } else {
        None
    };
    let signer = changes_signer(paths, reporter)?;
    let mut results = Vec::new();
    for step in &plan.recipes {
        let recipe = &step.loaded;
        let mtime = crate::project::source_date_epoch(&paths.project, &deb::inputs(recipe))?;
        let mut spec = deb::spec(recipe, &paths.dist, step.compression, mtime, reporter)?;
        let fields = std::mem::take(&mut spec.control);
        spec.control = shlibs::expand(recipe, fields, &spec.data, bases.as_ref(), reporter)?;
        if let (Some(bases), Some(_)) = (&bases, &step.image) {
            crate::image::check_image_spec(recipe, &spec.data, bases)?;
            crate::image::check_image_starts(recipe, &spec.data, &spec.control, bases, reporter)?;
        }
        let deb = write_deb(
            paths,
            recipe,
            &step.deb,
            &spec,
            mtime,
            signer.as_ref(),
            reporter,
        )?;
        let image = match &step.image {
            Some(planned) => {
                let revision = crate::project::git_revision(&paths.project);
                let target = planned.target.clone();
                let how = ImageHow {
                    base: None,
                    load: opts.load,
                    revision,
                };
                Some(package_image(paths, recipe, &deb, target, how, reporter).await?)
            }
            None => None,
        };
        results.push(PackageResult { deb, image });
    }
    Ok(results)
}

/// `path` relative to dist/, as the manifest records it.
fn in_dist(paths: &Paths, path: &Path) -> String {
    path.strip_prefix(&paths.dist)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// The key that clearsigns each `.changes`, as `debsign` would, when one is configured for
/// promotion (`BUILDER_SIGNING_KEY`, `BUILDER_SIGNING_KEY_FILE` or `signing_key` in
/// promote.toml; not the key pipeline/ci generate for themselves); `None` leaves them
/// unsigned.
fn changes_signer(
    paths: &Paths,
    reporter: &Reporter,
) -> anyhow::Result<Option<crate::sign::Signer>> {
    let cfg = crate::promote::PromoteConfig::load(paths, None)?;
    let configured = crate::sign::key_source(None, cfg.key_config())
        .is_some_and(|s| !matches!(s, crate::sign::KeySource::Generated(_)));
    if !configured {
        return Ok(None);
    }
    let (signer, source) = crate::sign::resolve(None, cfg.key_config())?;
    reporter.info(format!(
        "clearsigning each `.changes` with key {} from {source}",
        signer.fingerprint()
    ));
    Ok(Some(signer))
}

/// Writes the .deb of one recipe to `out` (the plan's `dist/debs/…`) and its `.changes`
/// (clearsigned by `signer` if any), and records both in the manifest.
fn write_deb(
    paths: &Paths,
    recipe: &Recipe,
    out: &Path,
    spec: &crate::deb::DebSpec,
    mtime: u64,
    signer: Option<&crate::sign::Signer>,
    reporter: &Reporter,
) -> anyhow::Result<DebResult> {
    let p = &recipe.package;
    let dir = out.parent().unwrap_or(&paths.dist);
    std::fs::create_dir_all(dir)
        .with_context(|| format!("could not create `{}`", dir.display()))?;
    let info = crate::deb::write_deb(spec, out)
        .with_context(|| format!("could not write the package for `{}`", p.name))?;
    let changelog = changelog::text(recipe, mtime)?;
    let changes_path = changes::path_for(out);
    let text = changes::text(recipe, out, &changelog, mtime)?;
    let text = match signer {
        Some(s) => s
            .clearsign(text.as_bytes())
            .with_context(|| format!("could not sign `{}`", changes_path.display()))?,
        None => text.into_bytes(),
    };
    crate::durable::write(&changes_path, &text)
        .with_context(|| format!("could not write `{}`", changes_path.display()))?;
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
    let entry = |kind, path: &Path, sha256, size| Artifact {
        kind,
        name: p.name.clone(),
        version: p.version(),
        architecture: Some(p.architecture.clone()),
        path: in_dist(paths, path),
        sha256,
        size,
        image_id: None,
        digest: None,
        tag: None,
        source_commit: None,
    };
    let deb = entry(ArtifactKind::Deb, out, info.sha256, info.size);
    let changes = entry(
        ArtifactKind::Changes,
        &changes_path,
        Digest::of(&text),
        text.len() as u64,
    );
    record(paths, |m| {
        m.upsert(deb);
        m.upsert(changes);
    })?;
    Ok(DebResult {
        name: p.name.clone(),
        version: p.version(),
        architecture: p.architecture.clone(),
        path: out.to_path_buf(),
        sha256: info.sha256,
        size: info.size,
        installed_size_kib: info.installed_size_kib,
        source_date_epoch: mtime,
    })
}

/// How [`package_image`] makes an image beyond where it goes.
struct ImageHow {
    /// Another base than the recipe's (a rebase).
    base: Option<String>,
    load: bool,
    /// The commit the image says it was made from.
    revision: Option<String>,
}

/// Makes the image of a recipe from its .deb at `target` (on `how.base` or the recipe's
/// base) and records it in the manifest.
async fn package_image(
    paths: &Paths,
    recipe: &Recipe,
    deb: &DebResult,
    target: ImageTarget,
    how: ImageHow,
    reporter: &Reporter,
) -> anyhow::Result<ImageResult> {
    let revision = how.revision;
    let opts = ImageOptions {
        target,
        mtime: deb.source_date_epoch,
        load: how.load,
        revision: revision.clone(),
        source: recipe.package.homepage.clone(),
    };
    let base = how.base.as_deref();
    let image =
        crate::image::build_image(paths, recipe, &deb.path, &deb.sha256, base, &opts, reporter)
            .await?;
    let rel = in_dist(paths, &image.path);
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
pub(crate) async fn rebase(
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
    // Where the plan puts this recipe's image: a rebase replaces it in place.
    let target = crate::image::recipe_target(&paths.dist, recipe)?;
    let how = ImageHow {
        base: Some(base.to_string()),
        load,
        revision,
    };
    package_image(paths, recipe, &deb, target, how, reporter).await
}

/// Drops manifest entries of recipes that no longer exist (their package or image name is
/// no recipe's), after every recipe was packaged, so manifest.json and what `smoke` and CI
/// read list only artifacts the project still makes. Returns the dropped entries.
pub(crate) fn forget_removed(paths: &Paths, all: &[&Recipe]) -> anyhow::Result<Vec<Artifact>> {
    let mut names = std::collections::BTreeSet::new();
    for r in all {
        names.insert((ArtifactKind::Deb, r.package.name.as_str()));
        names.insert((ArtifactKind::Changes, r.package.name.as_str()));
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
pub(crate) fn record(paths: &Paths, f: impl FnOnce(&mut Manifest)) -> anyhow::Result<()> {
    Manifest::update(
        &paths.manifest(),
        crate::project::git_revision(&paths.project),
        f,
    )
}
