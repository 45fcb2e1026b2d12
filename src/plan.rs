//! The plan: what each recipe will do, computed once before anything runs. `builder plan`
//! prints it; `build`, `package` and the pipeline execute it (they take a [`Plan`], not
//! recipes), so what is printed and what runs cannot drift apart. Tests check plans
//! without Docker.
//!
//! One part needs the engine: a build's cache key includes its builder image id. [`plan`]
//! leaves it unresolved; [`resolve_cache`] fills it for `builder plan` when the image
//! already exists (never making one), and `build` fills it (making missing builder images)
//! before it executes — the same [`crate::build::resolve`] either way.
//! This module decides; it never builds, writes or talks to the engine beyond inspecting.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::build::cache::Stamp;
use crate::build::source::SourceEntry;
use crate::debian::project::{SetState, SetStatus};
use crate::image::ImageTarget;
use crate::project::Paths;
use crate::recipe::{Compression, Recipe};

/// What a plan covers beyond the recipes themselves.
#[derive(Debug, Clone)]
pub(crate) struct PlanOptions {
    /// Overrides each recipe's compression (`package --compression`).
    pub compression: Option<Compression>,
    /// Plan images for recipes with an `[image]` table (`package --no-image` does not).
    pub images: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            compression: None,
            images: true,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Plan {
    /// In execution order.
    pub recipes: Vec<RecipePlan>,
    /// builder.lock against the recipes and bases: every set not `current` is drift that
    /// `build` and `package` will resolve (or `--locked` will refuse); after a run
    /// ([`Plan::refresh_lock`]), what the run left, with the sets it locked `resolved`.
    pub lock: Vec<SetStatus>,
    /// Why the lock could not be compared, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RecipePlan {
    /// The validated recipe this step executes.
    #[serde(skip)]
    pub loaded: Recipe,
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub recipe: PathBuf,
    /// Where `package` writes the .deb.
    pub deb: PathBuf,
    /// Of control.tar and data.tar (the recipe's, or the override).
    pub compression: Compression,
    pub files: usize,
    pub systemd_units: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImagePlan>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct BuildPlan {
    pub builder: String,
    pub source: PathBuf,
    /// Where `build` installs the outputs (and looks for a cache hit).
    pub out_dir: PathBuf,
    /// Cache key, when the builder image exists (its id is part of the key).
    pub cache_key: Option<String>,
    /// `hit`, `miss`, or why it is unknown.
    pub cache: CacheState,
    /// The builder image id the key was computed with.
    #[serde(skip)]
    pub builder_image: Option<String>,
    /// The sources the key was computed from: exactly what a build uploads.
    #[serde(skip)]
    pub sources: Vec<SourceEntry>,
    /// On a hit, the stamp found in `out_dir`.
    #[serde(skip)]
    pub stamp: Option<Stamp>,
    /// The engine of the pool it would run on (`builder plan`), then the one it ran on
    /// (`build`, the pipeline); absent when no engine was asked or the outputs were fresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// The engine that lost it (stopped answering mid-build) before it ran on `engine`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retried: Option<Retry>,
}

/// A build that an engine lost and another ran.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Retry {
    /// The engine that lost it.
    pub engine: String,
    /// What failed there.
    pub error: String,
    /// That engine's place in the pool.
    #[serde(skip)]
    pub at: usize,
}

/// Whether a build's outputs are in place; written as text (`hit`, `miss`, `unknown (why)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CacheState {
    /// The key is known and `out_dir` holds its intact outputs.
    Hit,
    /// The key is known and the outputs are not in place.
    Miss,
    /// The builder image is not made yet, so nothing can be cached: a miss.
    NoBuilderImage(String),
    /// Not resolved, and why.
    Unknown(String),
}

impl CacheState {
    /// A plan fresh from [`plan`]: resolved against the engine before a build.
    fn unresolved() -> Self {
        CacheState::Unknown(
            "needs the builder image id: resolved with the engine before building".into(),
        )
    }

    /// True once [`crate::build::resolve`] has computed the key.
    pub(crate) fn is_resolved(&self) -> bool {
        matches!(self, CacheState::Hit | CacheState::Miss)
    }
}

impl std::fmt::Display for CacheState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheState::Hit => f.write_str("hit"),
            CacheState::Miss => f.write_str("miss"),
            CacheState::NoBuilderImage(tag) => write!(f, "miss (builder image {tag} not made yet)"),
            CacheState::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

impl Serialize for CacheState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ImagePlan {
    pub base: String,
    /// `tag` and `path`: where `package` writes and loads the image.
    #[serde(flatten)]
    pub target: ImageTarget,
}

impl Plan {
    /// Every file executing the plan's package steps writes (.debs and image tars), in order.
    pub(crate) fn artifacts(&self) -> impl Iterator<Item = &Path> {
        self.recipes.iter().flat_map(|r| {
            std::iter::once(r.deb.as_path()).chain(r.image.iter().map(|i| i.target.path.as_path()))
        })
    }

    /// Compares builder.lock with the plan's recipes again, once the run has executed: the
    /// build and package steps lock what drifted, so the drift taken when the plan was made
    /// no longer describes the lock. A set that drifted then and is current now is
    /// `resolved` (by this run).
    pub(crate) fn refresh_lock(&mut self, paths: &Paths) {
        let recipes: Vec<Recipe> = self.recipes.iter().map(|r| r.loaded.clone()).collect();
        let (mut lock, lock_error) = lock_status(paths, &recipes);
        for s in &mut lock {
            let drifted = self
                .lock
                .iter()
                .any(|b| b.kind == s.kind && b.name == s.name && b.state != SetState::Current);
            if drifted && s.state == SetState::Current {
                s.state = SetState::Resolved;
            }
        }
        self.lock = lock;
        self.lock_error = lock_error;
    }

    /// The recipes the plan covers, in order.
    pub(crate) fn loaded_recipes(&self) -> Vec<&Recipe> {
        self.recipes.iter().map(|r| &r.loaded).collect()
    }
}

/// The offline part of the plan: everything but cache status.
pub(crate) fn plan(paths: &Paths, recipes: &[&Recipe], opts: &PlanOptions) -> Plan {
    let owned: Vec<Recipe> = recipes.iter().map(|r| (*r).clone()).collect();
    let recipes: Vec<RecipePlan> = owned.iter().map(|r| recipe_plan(paths, r, opts)).collect();
    let (lock, lock_error) = lock_status(paths, &owned);
    Plan {
        recipes,
        lock,
        lock_error,
    }
}

/// builder.lock on disk against `recipes` and the bases, and why it could not be compared.
fn lock_status(paths: &Paths, recipes: &[Recipe]) -> (Vec<SetStatus>, Option<String>) {
    match crate::base::BaseImages::load(&paths.project)
        .and_then(|bases| crate::debian::project::drift(recipes, &bases))
    {
        // A plan of some recipes cannot tell an unused entry from another recipe's.
        Ok(sets) => (
            sets.into_iter()
                .filter(|s| s.state != SetState::Unused)
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    }
}

fn recipe_plan(paths: &Paths, r: &Recipe, opts: &PlanOptions) -> RecipePlan {
    let p = &r.package;
    RecipePlan {
        loaded: r.clone(),
        name: p.name.clone(),
        version: p.version(),
        architecture: p.architecture.clone(),
        recipe: r.file.clone(),
        deb: paths.dist.join("debs").join(p.deb_file_name()),
        compression: opts.compression.unwrap_or(p.compression),
        files: r.files.len(),
        systemd_units: r.systemd.iter().map(|u| u.name.clone()).collect(),
        build: r.build.as_ref().map(|b| BuildPlan {
            builder: b.builder.clone(),
            source: b.source.clone(),
            out_dir: crate::package::build_dir(&paths.dist, r),
            cache_key: None,
            cache: CacheState::unresolved(),
            builder_image: None,
            sources: Vec::new(),
            stamp: None,
            engine: None,
            retried: None,
        }),
        image: r.image.as_ref().filter(|_| opts.images).map(|i| ImagePlan {
            base: i.base.clone(),
            target: crate::image::target(&paths.dist, p, i),
        }),
    }
}

/// Fills in each build's cache key and hit/miss for `builder plan`, when the builder image
/// already exists on an engine of the pool (it is never made here), and the engine each
/// build would run on. Without an engine or image the plan says why; a bad pool
/// configuration (`BUILDER_ENGINES`, engines.toml) is an error.
pub(crate) async fn resolve_cache(
    paths: &Paths,
    plan: &mut Plan,
    reporter: &crate::report::Reporter,
) -> anyhow::Result<()> {
    if !plan.recipes.iter().any(|r| r.build.is_some()) {
        return Ok(());
    }
    let pool = match crate::docker::Pool::connect(&paths.project, reporter).await {
        Ok(p) => p,
        Err(e) if crate::error::exit_code(&e) == crate::error::EXIT_ENVIRONMENT => {
            for b in plan.recipes.iter_mut().filter_map(|r| r.build.as_mut()) {
                b.cache = CacheState::Unknown("Docker engine unreachable".into());
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let bases = crate::base::BaseImages::load(&paths.project).ok();
    for rp in plan.recipes.iter_mut() {
        let (recipe, Some(bp)) = (&rp.loaded, rp.build.as_mut()) else {
            continue;
        };
        let tag = match bases.as_ref().map(|b| b.tag(&bp.builder)) {
            Some(Ok(t)) => t,
            _ => {
                bp.cache =
                    CacheState::Unknown(format!("no builder image definition `{}`", bp.builder));
                continue;
            }
        };
        let mut id = None;
        for e in &pool.engines {
            if let Ok(Some(i)) = e.engine.inspect_image(&tag).await {
                id = Some(i.id);
                break;
            }
        }
        let Some(id) = id else {
            bp.cache = CacheState::NoBuilderImage(tag);
            continue;
        };
        if let Err(e) = crate::build::resolve(paths, recipe, bp, &id) {
            bp.cache = CacheState::Unknown(format!("{e:#}"));
        }
    }
    // Without a pool there is one engine to name: the plan stays as it was before pools.
    if pool.configured {
        crate::build::plan_engines(paths, plan, &pool, crate::build::default_jobs()).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Reporter, Verbosity};

    /// A project with one recipe that packages a file (no build, an image table), loaded.
    fn project() -> (tempfile::TempDir, Paths, Vec<Recipe>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, text) in [
            ("base-images/static.toml", "kind = \"static\"\n"),
            ("services/app/app.env", "PORT=8080\n"),
            (
                "recipes/app.toml",
                "[package]\nname = \"app\"\nversion = \"1.2.3\"\n\
                 maintainer = \"Ops <ops@example.com>\"\ndescription = \"An app\"\n\n\
                 [[files]]\nfrom = \"services/app/app.env\"\nto = \"/etc/app/app.env\"\n\n\
                 [image]\nbase = \"static\"\nentrypoint = [\"/bin/true\"]\n",
            ),
        ] {
            let full = root.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        let paths = Paths::new(root.to_path_buf());
        let recipes = crate::recipe::load_project(&paths).unwrap();
        (dir, paths, recipes)
    }

    #[test]
    fn the_plan_names_every_artifact_and_honours_its_options() {
        let (_dir, paths, recipes) = project();
        let all: Vec<&Recipe> = recipes.iter().collect();
        let plan = plan(&paths, &all, &PlanOptions::default());
        let app = &plan.recipes[0];
        let deb = paths
            .dist
            .join("debs")
            .join(recipes[0].package.deb_file_name());
        let image = app.image.as_ref().unwrap();
        assert_eq!(app.deb, deb);
        assert_eq!(image.target.tag, "app:1.2.3");
        assert_eq!(image.target.path, paths.dist.join("images/app_1.2.3.tar"));
        assert_eq!(
            plan.artifacts().collect::<Vec<_>>(),
            vec![deb.as_path(), image.target.path.as_path()]
        );
        assert_eq!(app.compression, Compression::Xz);
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["recipes"][0]["compression"], "xz");
        assert_eq!(json["recipes"][0]["image"]["tag"], "app:1.2.3");
        assert!(json["recipes"][0]["image"].get("reference").is_none());

        let deb_only = super::plan(
            &paths,
            &all,
            &PlanOptions {
                compression: Some(Compression::Gzip),
                images: false,
            },
        );
        assert!(deb_only.recipes[0].image.is_none());
        assert_eq!(deb_only.recipes[0].compression, Compression::Gzip);
        assert_eq!(deb_only.artifacts().count(), 1);
    }

    /// `package` executes the plan it is given: redirect the plan's .deb and compression and
    /// the package lands there, compressed so, and the manifest records that path.
    #[tokio::test]
    async fn package_writes_what_the_plan_says_where_it_says() {
        let (_dir, paths, recipes) = project();
        let all: Vec<&Recipe> = recipes.iter().collect();
        let no_image = PlanOptions {
            compression: None,
            images: false,
        };
        let mut plan = plan(&paths, &all, &no_image);
        let planned = paths.dist.join("debs").join("elsewhere.deb");
        plan.recipes[0].deb = planned.clone();
        plan.recipes[0].compression = Compression::Gzip;
        let reporter = Reporter::capture(Verbosity::Normal);
        let opts = crate::package::PackageOptions { load: false };
        let results = crate::package::package(&paths, &plan, &opts, &reporter)
            .await
            .unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].deb.path, planned);
        assert!(results[0].image.is_none());
        let bytes = std::fs::read(&planned).unwrap();
        assert!(
            bytes.windows(11).any(|w| w == b"data.tar.gz"),
            "the planned compression was not used"
        );
        assert!(!paths
            .dist
            .join("debs")
            .join(recipes[0].package.deb_file_name())
            .exists());
        let manifest = crate::manifest::Manifest::load(&paths.manifest()).unwrap();
        assert_eq!(
            manifest
                .find(crate::manifest::ArtifactKind::Deb, "app")
                .unwrap()
                .path,
            "debs/elsewhere.deb"
        );
        assert_eq!(
            plan.artifacts().collect::<Vec<_>>(),
            vec![planned.as_path()]
        );
    }

    #[test]
    fn cache_states_serialise_as_the_text_plan_has_always_printed() {
        for (state, text) in [
            (CacheState::Hit, "hit"),
            (CacheState::Miss, "miss"),
            (
                CacheState::NoBuilderImage("builder/go:abc".into()),
                "miss (builder image builder/go:abc not made yet)",
            ),
            (
                CacheState::Unknown("Docker engine unreachable".into()),
                "unknown (Docker engine unreachable)",
            ),
        ] {
            assert_eq!(serde_json::to_value(&state).unwrap(), text);
        }
        assert!(CacheState::unresolved()
            .to_string()
            .starts_with("unknown ("));
    }

    /// The build and package steps lock what drifted; the plan a run keeps (pipeline.json)
    /// shows the lock as the run left it, not the drift the plan was made with.
    #[test]
    fn the_lock_is_compared_again_after_the_run() {
        let (dir, paths, recipes) = project();
        let root = dir.path();
        std::fs::remove_file(root.join("base-images/static.toml")).unwrap();
        std::fs::write(
            root.join("base-images/none.toml"),
            "kind = \"packages\"\npackages = []\n",
        )
        .unwrap();
        // Nothing to resolve: locking reads no index, so no network is needed.
        let keyring = root.join("keyring.gpg");
        std::fs::write(&keyring, b"").unwrap();
        std::fs::write(
            root.join("archive.toml"),
            format!(
                "architecture = \"amd64\"\n\n[[source]]\nuri = \"file:/nonexistent\"\n\
                 suites = [\"bookworm\"]\ncomponents = [\"main\"]\nkeyring = \"{}\"\n",
                keyring.display()
            ),
        )
        .unwrap();
        let all: Vec<&Recipe> = recipes.iter().collect();
        let states = |plan: &Plan| -> Vec<(String, SetState)> {
            assert_eq!(plan.lock_error, None);
            plan.lock
                .iter()
                .map(|s| (s.name.clone(), s.state))
                .collect()
        };
        let mut planned = plan(&paths, &all, &PlanOptions::default());
        assert_eq!(states(&planned), [("none".to_string(), SetState::Missing)]);

        let bases = crate::base::BaseImages::load(&paths.project).unwrap();
        bases
            .ensure_locked("none", &Reporter::capture(Verbosity::Normal))
            .unwrap();
        planned.refresh_lock(&paths);
        assert_eq!(states(&planned), [("none".to_string(), SetState::Resolved)]);
        let again = plan(&paths, &all, &PlanOptions::default());
        assert_eq!(states(&again), [("none".to_string(), SetState::Current)]);
    }
}
