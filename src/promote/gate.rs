//! The gate: what may enter an environment, checked before anything is written.
//!
//! Every report is verified first ([`smoke_report::verify`]): signed by the key promotion
//! signs with, its verdict recomputed from its checks, every artifact path inside dist/.
//!
//! From a report (`--to <first env>`): the latest smoke report must exist and have passed;
//! every .deb's sha256 is recomputed from the file, every image tar is re-read and each blob
//! hashed, and all must equal the report's sha256 / manifest digest / image id.
//! From an environment (`--from dev --to staging`): what the source's current generation
//! holds (the newest version of each package and image), each traced back through its
//! recorded smoke run to that run's report, which must still say it passed with the same
//! digests; the source's pool files and blobs are hashed again.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::error::{failed, usage};
use crate::manifest::{Artifact, ArtifactKind};
use crate::repo::images::{self, ImageArtifact, ImageEntry, ImageSource};
use crate::repo::{self, DebArtifact, PackageEntry, Publication, RepoConfig};
use crate::report::Reporter;
use crate::sign::Signer;
use crate::smoke::report::SmokeReport;

use super::smoke_report::{self, ReadReport};

/// `dist/<a.path>`, refused unless the path is relative, without `..`, and stays inside
/// dist/ once symlinks are resolved: promotion takes only what the project packaged.
fn artifact_path(dist: &Path, a: &Artifact, run: &str) -> anyhow::Result<PathBuf> {
    let rel = Path::new(&a.path);
    let plain = !a.path.is_empty()
        && rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    let path = dist.join(rel);
    let escapes = || match (path.canonicalize(), dist.canonicalize()) {
        (Ok(p), Ok(d)) => !p.starts_with(d),
        _ => false,
    };
    if !plain || escapes() {
        return Err(failed(format!(
            "{} {} {} in smoke run {run} has path `{}`, which is not inside `{}`: promotion \
             only takes artifacts from dist/ (paths relative to it, without `..` or links out \
             of it); run `builder package` and `builder smoke` again",
            a.kind,
            a.name,
            a.version,
            a.path,
            dist.display()
        )));
    }
    Ok(path)
}

/// Checks a report artifact's file against it: `(recomputed sha256)`.
fn check_sha(dist: &Path, a: &Artifact, run: &str) -> anyhow::Result<PathBuf> {
    let path = artifact_path(dist, a, run)?;
    if !path.is_file() {
        return Err(failed(format!(
            "{} {} {} approved by smoke run {run} is missing: `{}` does not exist; run \
             `builder package` and `builder smoke` again",
            a.kind,
            a.name,
            a.version,
            path.display()
        )));
    }
    let (got, _, _) = repo::store::digest_file(&path)?;
    if got != a.sha256 {
        return Err(failed(format!(
            "{} {} {}: `{}` has sha256 {}, but smoke run {run} passed sha256 {}; the file \
             changed after the smoke test: run `builder smoke` again on what you mean to ship",
            a.kind,
            a.name,
            a.version,
            path.display(),
            got.hex(),
            a.sha256.hex()
        )));
    }
    Ok(path)
}

/// The latest report, which must have passed.
pub(crate) fn passed_report(
    dist: &Path,
    run: Option<&str>,
    signer: &Signer,
    reporter: &Reporter,
) -> anyhow::Result<ReadReport> {
    if let Some(id) = run {
        let Some(r) = smoke_report::find(dist, id, reporter)? else {
            // A wrong id is a usage error: say which ids exist (the newest few).
            let known: Vec<String> = smoke_report::sorted(dist, &Reporter::quiet())?
                .into_iter()
                .rev()
                .take(5)
                .map(|r| format!("`{}`", r.report.run_id))
                .collect();
            let known = match known.len() {
                0 => "there are none yet: run `builder smoke` first".to_string(),
                _ => format!("the newest are {}", known.join(", ")),
            };
            return Err(usage(format!(
                "`--run {id}`: no smoke run `{id}` in `{}`; {known} (`builder smoke` prints \
                 the run id)",
                smoke_report::smoke_dir(dist).display()
            )));
        };
        return check_passed(r, "smoke run", signer);
    }
    let Some(r) = smoke_report::latest(dist, reporter)? else {
        return Err(failed(format!(
            "no smoke report in `{}`: nothing has passed the smoke test yet; run `builder smoke` \
             first",
            smoke_report::smoke_dir(dist).display()
        )));
    };
    check_passed(r, "the latest smoke run", signer)
}

fn check_passed(read: ReadReport, which: &str, signer: &Signer) -> anyhow::Result<ReadReport> {
    smoke_report::verify(&read, signer)?;
    let r = &read.report;
    if !r.passed {
        let reasons = if r.reasons.is_empty() {
            "no reason recorded".to_string()
        } else {
            r.reasons.join("; ")
        };
        return Err(failed(format!(
            "{which} {} failed: {reasons}; fix it and run `builder smoke` again",
            r.run_id
        )));
    }
    if r.artifacts.is_empty() {
        return Err(failed(format!(
            "smoke run {} passed but its report `{}` lists no artifacts: nothing to promote",
            r.run_id,
            read.path.display()
        )));
    }
    Ok(read)
}

/// Everything the passed report approved, verified against the files in dist/.
pub(crate) fn from_report(dist: &Path, read: &ReadReport) -> anyhow::Result<Publication> {
    let r = &read.report;
    let run = &r.run_id;
    let mut p = Publication {
        source: format!("smoke run {run} ({})", read.path.display()),
        ..Publication::default()
    };
    for a in r.artifacts.iter().filter(|a| a.kind.promoted()) {
        let path = check_sha(dist, a, run)?;
        match a.kind {
            ArtifactKind::Deb => p.debs.push((
                DebArtifact {
                    path,
                    sha256: a.sha256.hex(),
                },
                Some(run.clone()),
            )),
            ArtifactKind::Image => {
                let mut entry =
                    images::read_image_tar(&path, &a.name, &a.version, a.digest.as_ref())?;
                check_image_ids(&entry, a, run)?;
                entry.run = Some(run.clone());
                p.images.push(ImageArtifact {
                    entry,
                    source: ImageSource::Tar(path),
                });
            }
            ArtifactKind::Changes => {}
        }
    }
    Ok(p)
}

fn check_image_ids(entry: &ImageEntry, a: &Artifact, run: &str) -> anyhow::Result<()> {
    for (what, want, got) in [
        ("manifest digest", a.digest, &entry.digest),
        ("image id", a.image_id, &entry.image_id),
    ] {
        if let Some(want) = want {
            if want != *got {
                return Err(failed(format!(
                    "image {} {}: its {what} is {got}, but smoke run {run} passed {want}; the \
                     image changed after the smoke test: run `builder smoke` again",
                    a.name, a.version
                )));
            }
        }
    }
    if a.digest.is_none() && a.image_id.is_none() {
        return Err(failed(format!(
            "image {} {} in smoke run {run} has neither `digest` nor `image_id`: promotion \
             cannot tell which image passed",
            a.name, a.version
        )));
    }
    Ok(())
}

/// Keeps the newest version of each `key`.
fn newest<T: Clone>(
    items: &[T],
    key: impl Fn(&T) -> String,
    version: impl Fn(&T) -> &str,
) -> Vec<T> {
    let mut best: BTreeMap<String, T> = BTreeMap::new();
    for i in items {
        let k = key(i);
        let replace = match best.get(&k) {
            Some(b) => repo::version::compare(version(i), version(b)).is_gt(),
            None => true,
        };
        if replace {
            best.insert(k, i.clone());
        }
    }
    best.into_values().collect()
}

/// The report that approved an artifact held by an environment; it must have passed.
fn approving_report(
    dist: &Path,
    env: &str,
    what: &str,
    run: Option<&str>,
    cache: &mut BTreeMap<String, SmokeReport>,
    signer: &Signer,
    reporter: &Reporter,
) -> anyhow::Result<SmokeReport> {
    let Some(run) = run else {
        return Err(failed(format!(
            "{what} in `{env}` records no smoke run: it was not promoted from a passed report, \
             so it cannot move on; promote it from a report with `builder promote --to {env}`"
        )));
    };
    if let Some(r) = cache.get(run) {
        return Ok(r.clone());
    }
    let r = smoke_report::find(dist, run, reporter)?.ok_or_else(|| {
        failed(format!(
            "{what} in `{env}` was approved by smoke run {run}, whose report is no longer in \
             `{}`: it cannot be checked again; keep dist/smoke/ with the repositories",
            smoke_report::smoke_dir(dist).display()
        ))
    })?;
    smoke_report::verify(&r, signer)?;
    if !r.report.passed {
        return Err(failed(format!(
            "{what} in `{env}` names smoke run {run}, but that report says it failed"
        )));
    }
    cache.insert(run.to_string(), r.report.clone());
    Ok(r.report)
}

/// What `source` holds now, traced back to passed reports and hashed again.
pub(crate) fn from_env(
    dist: &Path,
    source: &RepoConfig,
    signer: &Signer,
    reporter: &Reporter,
) -> anyhow::Result<Publication> {
    let (packages, imgs) = repo::contents(source)?;
    if packages.is_empty() && imgs.is_empty() {
        return Err(failed(format!(
            "`{}` holds nothing to promote: promote to it first",
            source.env_dir().display()
        )));
    }
    let env = &source.env;
    let mut cache = BTreeMap::new();
    let mut p = Publication {
        from_env: Some(env.clone()),
        ..Publication::default()
    };
    let packages = newest(
        &packages,
        |p: &PackageEntry| format!("{}\0{}", p.name, p.arch),
        |p| &p.version,
    );
    for pkg in packages {
        let what = format!("package {} {} ({})", pkg.name, pkg.version, pkg.arch);
        let r = approving_report(
            dist,
            env,
            &what,
            pkg.run.as_deref(),
            &mut cache,
            signer,
            reporter,
        )?;
        let listed = r.artifacts.iter().find(|a| {
            a.kind == ArtifactKind::Deb && a.name == pkg.name && a.version == pkg.version
        });
        let Some(a) = listed else {
            return Err(failed(format!(
                "{what} in `{env}` names smoke run {}, whose report does not list it",
                r.run_id
            )));
        };
        if a.sha256 != pkg.sha256 {
            return Err(failed(format!(
                "{what}: `{env}` recorded sha256 {}, but smoke run {} passed sha256 {}",
                pkg.sha256.hex(),
                r.run_id,
                a.sha256.hex()
            )));
        }
        let file = source.env_dir().join(&pkg.filename);
        let (got, _, _) = repo::store::digest_file(&file)?;
        if got != pkg.sha256 {
            return Err(failed(format!(
                "{what}: `{}` has sha256 {}, but smoke run {} passed sha256 {}; the pool file \
                 was changed after promotion",
                file.display(),
                got.hex(),
                r.run_id,
                pkg.sha256.hex()
            )));
        }
        p.debs.push((
            DebArtifact {
                path: file,
                sha256: pkg.sha256.hex(),
            },
            Some(r.run_id.clone()),
        ));
    }
    let src_images = images::images_dir(&source.env_dir());
    for img in newest(&imgs, |i: &ImageEntry| i.name.clone(), |i| &i.version) {
        let what = format!("image {}", img.ref_name());
        let r = approving_report(
            dist,
            env,
            &what,
            img.run.as_deref(),
            &mut cache,
            signer,
            reporter,
        )?;
        let Some(a) = r.artifacts.iter().find(|a| {
            a.kind == ArtifactKind::Image && a.name == img.name && a.version == img.version
        }) else {
            return Err(failed(format!(
                "{what} in `{env}` names smoke run {}, whose report does not list it",
                r.run_id
            )));
        };
        check_image_ids(&img, a, &r.run_id)?;
        images::verify_stored(&src_images, &img)?;
        p.images.push(ImageArtifact {
            entry: img,
            source: ImageSource::Layout(src_images.clone()),
        });
    }
    let mut runs: Vec<&str> = cache.keys().map(String::as_str).collect();
    runs.dedup();
    p.source = format!("environment {env} (smoke runs {})", runs.join(", "));
    Ok(p)
}
