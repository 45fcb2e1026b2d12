//! The artifacts under test: for every service of the stack, its `.deb` and image entries in
//! `dist/manifest.json`, checked before anything starts: the files still hash to the
//! manifest's sha256, and the image the engine has under the tag has the manifest's image id
//! (loaded again from `dist/images/` when it is missing or the tag was moved). Containers are
//! then created from the image id, never the tag. A mismatch is a setup error (exit 2).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest as _, Sha256};

use super::stack::Stack;
use crate::digest::Digest;
use crate::docker::Engine;
use crate::error::usage;
use crate::manifest::{Artifact, ArtifactKind, Manifest};
use crate::project::Paths;
use crate::recipe::Recipe;
use crate::report::Reporter;

/// What a smoke run tests.
#[derive(Debug, Clone)]
pub(crate) struct UnderTest {
    /// Every service's .deb and image entries, copied from the manifest (sorted, no duplicates).
    pub artifacts: Vec<Artifact>,
    /// Service name → image artifact.
    pub images: HashMap<String, Artifact>,
    pub source_commit: Option<String>,
}

const FIX: &str = "run `builder build && builder package` to make them";

/// Finds each service's artifacts in the manifest and re-hashes their files.
pub(crate) fn collect(paths: &Paths, stack: &Stack, recipes: &[Recipe]) -> Result<UnderTest> {
    let manifest_path = paths.manifest();
    let manifest = Manifest::load(&manifest_path)?;
    let mut artifacts = Vec::new();
    let mut images = HashMap::new();
    let mut seen = BTreeSet::new();
    for svc in &stack.services {
        let recipe = recipes
            .iter()
            .find(|r| r.package.name == svc.image)
            .with_context(|| format!("no recipe `{}` for service `{}`", svc.image, svc.name))?;
        let image_name = recipe
            .image
            .as_ref()
            .map(|i| i.name.clone())
            .unwrap_or_else(|| recipe.package.name.clone());
        let deb = manifest
            .find(ArtifactKind::Deb, &recipe.package.name)
            .ok_or_else(|| {
                usage(format!(
                    "`{}` lists no .deb for `{}` (service `{}`); {FIX}",
                    manifest_path.display(),
                    recipe.package.name,
                    svc.name
                ))
            })?;
        let image = manifest
            .find(ArtifactKind::Image, &image_name)
            .ok_or_else(|| {
                usage(format!(
                    "`{}` lists no image `{image_name}` (service `{}`); {FIX}",
                    manifest_path.display(),
                    svc.name
                ))
            })?;
        if image.image_id.is_none() {
            return Err(usage(format!(
                "the image `{image_name}` in `{}` has no image id; {FIX}",
                manifest_path.display()
            )));
        }
        for a in [deb, image] {
            if seen.insert((a.kind, a.name.clone())) {
                verify_file(&paths.dist, a)?;
                artifacts.push(a.clone());
            }
        }
        images.insert(svc.name.clone(), image.clone());
    }
    artifacts.sort_by(|x, y| (x.kind, &x.name).cmp(&(y.kind, &y.name)));
    Ok(UnderTest {
        images,
        source_commit: Manifest::common_commit(&artifacts),
        artifacts,
    })
}

fn verify_file(dist: &Path, a: &Artifact) -> Result<()> {
    let path = dist.join(&a.path);
    let mut file = std::fs::File::open(&path).map_err(|e| {
        usage(format!(
            "could not open `{}` listed in the manifest ({e}); {FIX}",
            path.display()
        ))
    })?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h)
        .with_context(|| format!("could not read `{}`", path.display()))?;
    let got = Digest::from_bytes(h.finalize().into());
    if got != a.sha256 {
        return Err(usage(format!(
            "`{}` changed since it was packaged: sha256 {}, the manifest says {}; {FIX}",
            path.display(),
            got.hex(),
            a.sha256.hex()
        )));
    }
    Ok(())
}

/// The tag an image artifact is run under.
pub(crate) fn tag_of(a: &Artifact) -> String {
    a.tag
        .clone()
        .unwrap_or_else(|| format!("{}:{}", a.name, crate::image::tag_for_version(&a.version)))
}

/// Makes sure the engine runs exactly the manifest's images: loads missing ones from
/// `dist/`, then compares image ids. Returns service → image id.
pub(crate) async fn ensure_images(
    engine: &Engine,
    paths: &Paths,
    under: &UnderTest,
    reporter: &Reporter,
) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (service, a) in &under.images {
        let tag = tag_of(a);
        let want = a.image_id;
        let is_want = |id: &str| id.parse::<Digest>().ok() == want;
        let mut got = engine
            .inspect_image(&tag)
            .await?
            .map(|i| i.id)
            .unwrap_or_default();
        if !is_want(&got) {
            // Missing, or the tag was moved since packaging: load the packaged tar (its
            // sha256 was checked above) so the tag points at the image under test again.
            let tar = paths.dist.join(&a.path);
            reporter.status("Loading", format!("{tag} from {}", tar.display()));
            crate::docker::load_image_tar(engine, &tar, reporter).await?;
            got = engine
                .inspect_image(&tag)
                .await?
                .map(|i| i.id)
                .unwrap_or_default();
        }
        if !is_want(&got) {
            return Err(usage(format!(
                "the engine's image `{tag}` is {} but dist/manifest.json says {}; the image under test must be the packaged one: {FIX} (it loads the image again)",
                if got.is_empty() { "missing" } else { &got },
                want.map(|d| d.to_string()).unwrap_or_default()
            )));
        }
        out.insert(service.clone(), got);
    }
    Ok(out)
}
