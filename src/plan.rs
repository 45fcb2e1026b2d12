//! The plan: what each recipe will do, computed before anything runs (`builder plan`).
//! Tests check plans without Docker; the operations follow them.

use std::path::PathBuf;

use serde::Serialize;

use crate::project::Paths;
use crate::recipe::Recipe;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub recipes: Vec<RecipePlan>,
    /// builder.lock against the recipes and bases: every set not `current` is drift that
    /// `package` will resolve (or `--locked` will refuse).
    pub lock: Vec<crate::debian::project::SetStatus>,
    /// Why the lock could not be compared, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecipePlan {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub recipe: PathBuf,
    pub deb: PathBuf,
    pub compression: String,
    pub files: usize,
    pub systemd_units: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImagePlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildPlan {
    pub builder: String,
    pub source: PathBuf,
    pub out_dir: PathBuf,
    /// Cache key, when the builder image exists (its id is part of the key).
    pub cache_key: Option<String>,
    /// `hit`, `miss`, or why it is unknown.
    pub cache: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImagePlan {
    pub base: String,
    pub tag: String,
    pub path: PathBuf,
}

/// The offline part of the plan: everything but cache status.
pub fn plan(paths: &Paths, recipes: &[&Recipe]) -> Plan {
    let owned: Vec<Recipe> = recipes.iter().map(|r| (*r).clone()).collect();
    let recipes: Vec<RecipePlan> = recipes
        .iter()
        .map(|r| {
            let p = &r.package;
            RecipePlan {
                name: p.name.clone(),
                version: p.version(),
                architecture: p.architecture.clone(),
                recipe: r.file.clone(),
                deb: paths.dist.join("debs").join(p.deb_file_name()),
                compression: format!("{:?}", p.compression).to_lowercase(),
                files: r.files.len(),
                systemd_units: r.systemd.iter().map(|u| u.name.clone()).collect(),
                build: r.build.as_ref().map(|b| BuildPlan {
                    builder: b.builder.clone(),
                    source: b.source.clone(),
                    out_dir: crate::package::build_dir(&paths.dist, r),
                    cache_key: None,
                    cache: "unknown".into(),
                }),
                image: r.image.as_ref().map(|i| ImagePlan {
                    base: i.base.clone(),
                    tag: format!(
                        "{}:{}",
                        i.name,
                        crate::image::tag_for_version(&p.file_version())
                    ),
                    path: paths.dist.join("images").join(format!(
                        "{}_{}.tar",
                        i.name,
                        p.file_version()
                    )),
                }),
            }
        })
        .collect();
    let (lock, lock_error) = match crate::base::BaseImages::load(&paths.project)
        .and_then(|bases| crate::debian::project::drift(&owned, &bases))
    {
        // A plan of some recipes cannot tell an unused entry from another recipe's.
        Ok(sets) => (
            sets.into_iter()
                .filter(|s| s.state != crate::debian::project::SetState::Unused)
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    };
    Plan {
        recipes,
        lock,
        lock_error,
    }
}

/// Fills in each build's cache key and hit/miss. The key includes the builder image id, so
/// it is only known once the builder image exists; without an engine or image the plan says
/// why instead.
pub async fn resolve_cache(paths: &Paths, recipes: &[&Recipe], plan: &mut Plan) {
    if !recipes.iter().any(|r| r.build.is_some()) {
        return;
    }
    let engine = match crate::docker::connect().await {
        Ok(d) => d,
        Err(_) => {
            for b in plan.recipes.iter_mut().filter_map(|r| r.build.as_mut()) {
                b.cache = "unknown (Docker engine unreachable)".into();
            }
            return;
        }
    };
    let bases = crate::base::BaseImages::load(&paths.project).ok();
    for (recipe, rp) in recipes.iter().zip(plan.recipes.iter_mut()) {
        let (Some(spec), Some(bp)) = (&recipe.build, rp.build.as_mut()) else {
            continue;
        };
        let tag = match bases.as_ref().map(|b| b.tag(&spec.builder)) {
            Some(Ok(t)) => t,
            _ => {
                bp.cache = format!("unknown (no builder image definition `{}`)", spec.builder);
                continue;
            }
        };
        let id = match engine.inspect_image(&tag).await {
            Ok(Some(i)) => i.id,
            _ => {
                bp.cache = format!("miss (builder image {tag} not made yet)");
                continue;
            }
        };
        match crate::build::cache_key_in(paths, recipe, &id) {
            Ok(key) => {
                bp.cache = match crate::build::cache_status(paths, recipe, &key) {
                    crate::build::CacheStatus::Hit => "hit".into(),
                    crate::build::CacheStatus::Miss => "miss".into(),
                };
                bp.cache_key = Some(key);
            }
            Err(e) => bp.cache = format!("unknown ({e:#})"),
        }
    }
}
