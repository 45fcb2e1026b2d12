//! `builder build`: compiles each recipe's `[build]` in a container made from its builder image
//! and stores the outputs in `dist/build/<name>/`.
//!
//! Per recipe: ensure the builder image, compute the cache key (builder image id, the `[build]`
//! table, the package version, SOURCE_DATE_EPOCH and every uploaded source file), and on a hit
//! stop there — no container. On a miss, [`run`] does the container work and [`cache`] swaps the
//! checked outputs into place. Independent recipes build concurrently, bounded by `jobs`.
//!
//! `[build] cache` directories live in named volumes ([`cache_volume_name`]) that outlive runs:
//! they only speed builds up (content-addressed tool caches such as Go's), so they are not part
//! of the cache key and must never change an output.
//! This module owns no Docker plumbing beyond the build container itself (see `crate::docker`).

pub(crate) mod cache;
mod run;
pub(crate) mod schedule;
pub(crate) mod source;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::cli::Paths;
use crate::docker::Session;
use crate::docker::{Pool, PoolEngine};
use crate::plan::{BuildPlan, CacheState, Plan, Retry};
use crate::recipe::{BuildSpec, Recipe};
use crate::report::Reporter;

/// Version of the key derivation; bump when the key's inputs change meaning.
const KEY_VERSION: &str = "builder-build-v1";

/// What `builder build` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct BuildOptions {
    /// Build even when the outputs for the key are in place.
    pub no_cache: bool,
    /// Builds running at once (at least 1).
    pub jobs: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            no_cache: false,
            jobs: default_jobs(),
        }
    }
}

/// The number of cores, the default for `--jobs`.
pub(crate) fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The outcome for one recipe.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BuildResult {
    pub name: String,
    pub key: String,
    /// True when the outputs were already in place and no container ran.
    pub cached: bool,
    /// `dist/build/<name>/`.
    pub out_dir: PathBuf,
    /// `(relative path, sha256)` of each declared output.
    pub outputs: Vec<(String, String)>,
    pub seconds: f64,
    /// The engine it ran on (`default` without a pool); absent when cached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// The engine that lost it first, when it was retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retried: Option<Retry>,
}

/// The value exported as SOURCE_DATE_EPOCH into builds: the caller's, or 0.
pub(crate) fn source_date_epoch() -> String {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| "0".to_string())
}

fn spec_of(recipe: &Recipe) -> anyhow::Result<&BuildSpec> {
    recipe.build.as_ref().ok_or_else(|| {
        crate::error::usage(format!(
            "recipe `{}` has no [build] table",
            recipe.file.display()
        ))
    })
}

/// Resolves the engine-dependent part of one build step of the plan: its cache key with the
/// builder image `builder_image_id`, the sources that key covers (what the build uploads)
/// and whether `step.out_dir` already holds the key's outputs. `builder plan` and `build`
/// both call it, so the key `plan` prints is the one `build` uses.
pub(crate) fn resolve(
    paths: &Paths,
    recipe: &Recipe,
    step: &mut BuildPlan,
    builder_image_id: &str,
) -> anyhow::Result<()> {
    let spec = spec_of(recipe)?;
    let sources = list_sources(paths, recipe, spec)?;
    let key = key_for(recipe, spec, builder_image_id, &sources)?;
    step.stamp = cache::check(&step.out_dir, &key);
    step.cache = if step.stamp.is_some() {
        CacheState::Hit
    } else {
        CacheState::Miss
    };
    step.cache_key = Some(key);
    step.builder_image = Some(builder_image_id.to_string());
    step.sources = sources;
    Ok(())
}

/// The uploaded sources: the `source` tree minus ignored entries and minus builder's own
/// output (`paths.dist`) and cache directories should they lie inside it, so outputs of an
/// earlier build never change the key or get uploaded.
fn list_sources(
    paths: &Paths,
    recipe: &Recipe,
    spec: &BuildSpec,
) -> anyhow::Result<Vec<source::SourceEntry>> {
    let rules = source::IgnoreRules::new(&spec.ignore)?;
    let exclude = [paths.dist.clone(), crate::project::cache_dir()];
    source::list_excluding(&recipe.project.join(&spec.source), &rules, &exclude)
}

fn key_for(
    recipe: &Recipe,
    spec: &BuildSpec,
    image_id: &str,
    entries: &[source::SourceEntry],
) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    for part in [
        KEY_VERSION,
        image_id,
        &recipe.package.name,
        &recipe.package.version(),
        &source_date_epoch(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    // A canonical form (serde_json::Value sorts object keys). `cache` is left out: cache
    // volumes only speed a build up, so adding one must not invalidate the outputs.
    let mut table = serde_json::to_value(spec).context("could not serialise the [build] table")?;
    if let Some(fields) = table.as_object_mut() {
        fields.remove("cache");
    }
    let table = serde_json::to_vec(&table).context("could not serialise the [build] table")?;
    h.update(&table);
    h.update([0]);
    source::hash_entries(&mut h, entries)?;
    Ok(hex::encode(h.finalize()))
}

/// Environment variable naming a cache scope to share build caches between projects on
/// purpose (the same value in each); by default each project has its own.
pub(crate) const ENV_CACHE_SCOPE: &str = "BUILDER_CACHE_SCOPE";

/// The scope of a project's cache volumes: `BUILDER_CACHE_SCOPE` when set, else a hash of
/// the project's absolute path, so two projects on one CI runner never mount each other's
/// writable cache (one could poison the other's builds).
pub(crate) fn cache_scope(project: &std::path::Path) -> anyhow::Result<String> {
    if let Some(v) = std::env::var_os(ENV_CACHE_SCOPE).filter(|v| !v.is_empty()) {
        let v = v.to_string_lossy().into_owned();
        if v.len() > 64
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(crate::error::usage(format!(
                "{ENV_CACHE_SCOPE}=`{v}`: use up to 64 letters, digits, `_`, `.` or `-`"
            )));
        }
        return Ok(v);
    }
    let abs = std::fs::canonicalize(project).unwrap_or_else(|_| project.to_path_buf());
    Ok(format!(
        "project-{}",
        &crate::digest::sha256_hex(abs.to_string_lossy().as_bytes())[..16]
    ))
}

/// The volume that holds cache directory `path` of recipe `recipe` built with the builder
/// image definition `builder` in cache scope `scope` ([`cache_scope`]):
/// `builder-cache-<recipe>-<12 hex digits of sha256(scope, builder, path)>`.
/// Keyed by the definition name, not the image id, so a rebuilt builder image keeps its warm
/// cache (tools like Go key their cache entries by toolchain version themselves).
pub(crate) fn cache_volume_name(recipe: &str, builder: &str, path: &str, scope: &str) -> String {
    let mut h = Sha256::new();
    h.update(scope.as_bytes());
    h.update([0]);
    h.update(builder.as_bytes());
    h.update([0]);
    h.update(path.trim_end_matches('/').as_bytes());
    let hash = hex::encode(h.finalize());
    format!("builder-cache-{}-{}", docker_name_part(recipe), &hash[..12])
}

/// A recipe (Debian package) name made fit for a Docker object name: volume and container
/// names allow `[a-zA-Z0-9_.-]`; package names add only `+`, which `_` (not allowed in
/// package names) replaces without collisions.
fn docker_name_part(recipe: &str) -> String {
    recipe
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A builder image as the build stage uses it: made (or found) once, on one engine of the
/// pool, and sent to the others when a build goes there.
#[derive(Debug, Clone)]
struct BuilderImage {
    tag: String,
    id: String,
    /// Its architecture (Go's words), which the engine running it must have.
    arch: Option<String>,
}

/// Executes the build steps of `plan`; results in plan order. First the part of the plan
/// only the engine can tell: each builder image is made if missing (on an engine of the
/// pool that holds it already, else on the first). Then each step, when its turn comes,
/// resolves its cache key and hit/miss into `plan` ([`resolve`]) and runs as resolved: a
/// hit starts no container; a miss goes to the engine [`schedule::choose`] picks.
pub(crate) async fn build(
    paths: &Paths,
    plan: &mut Plan,
    opts: &BuildOptions,
    reporter: &Reporter,
    cancel: CancellationToken,
) -> anyhow::Result<Vec<BuildResult>> {
    if !plan.recipes.iter().any(|r| r.build.is_some()) {
        reporter.info("nothing to build: no selected recipe has a [build] table");
        return Ok(Vec::new());
    }
    let pool = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Err(crate::docker::interrupted()),
        p = Pool::connect(&paths.project, reporter) => p?,
    };

    // Each builder image once, before any build, so concurrent builds never race to make it.
    let mut images: BTreeMap<String, BuilderImage> = BTreeMap::new();
    for step in plan.recipes.iter().filter_map(|r| r.build.as_ref()) {
        if images.contains_key(&step.builder) {
            continue;
        }
        let made = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(crate::docker::interrupted()),
            made = images::ensure(&pool, paths, &step.builder, reporter) => made?,
        };
        images.insert(step.builder.clone(), made);
    }
    for step in plan.recipes.iter_mut().filter_map(|r| r.build.as_mut()) {
        step.builder_image = Some(images[&step.builder].id.clone());
    }
    execute(&pool, &images, paths, plan, opts, reporter, cancel).await
}

/// How long an engine that failed a build may take to answer a ping before it counts as
/// lost (and the build is retried elsewhere).
const LOST_PING: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether the engine of a failed build still answers. A build that failed on its own (a
/// command's exit code, its timeout) is retried only when its engine is gone, not merely too
/// busy to answer one ping: then it gets three, [`LOST_PING`] apart, and any answer counts.
async fn answers(engine: &crate::docker::Engine, own_failure: bool) -> bool {
    let tries = if own_failure { 3 } else { 1 };
    for i in 0..tries {
        if i > 0 {
            tokio::time::sleep(LOST_PING).await;
        }
        if engine.answers(LOST_PING).await {
            return true;
        }
    }
    false
}

/// The executor's view of the pool: running builds per engine (for [`schedule::choose`])
/// and one lock per engine for sending images into it.
struct Dispatch<'p> {
    pool: &'p Pool,
    slots: std::sync::Mutex<Vec<schedule::Slot>>,
    sending: Vec<tokio::sync::Mutex<()>>,
}

impl<'p> Dispatch<'p> {
    fn new(pool: &'p Pool) -> Self {
        let slots = pool.engines.iter().map(slot_of).collect();
        Dispatch {
            pool,
            slots: std::sync::Mutex::new(slots),
            sending: pool
                .engines
                .iter()
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<schedule::Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Picks the engine for a build and counts it as running there.
    fn take(&self, need: &schedule::Need) -> Option<usize> {
        let mut slots = self.slots();
        let at = schedule::choose(&slots, need)?;
        slots[at].running += 1;
        Some(at)
    }

    fn release(&self, at: usize) {
        let mut slots = self.slots();
        slots[at].running = slots[at].running.saturating_sub(1);
    }

    fn lose(&self, at: usize) {
        self.slots()[at].alive = false;
    }

    /// Makes sure engine `at` holds `image`: sent from a live engine that has it, unless
    /// it is there already. One send per engine at a time, so two builds never send the
    /// same image twice. A source engine that stops answering during the send is counted
    /// lost and the image is sent from another engine that holds the same id
    /// ([`schedule::send_source`]); a send that fails for any other reason is an error.
    async fn ensure_image(
        &self,
        at: usize,
        image: &BuilderImage,
        reporter: &Reporter,
    ) -> anyhow::Result<()> {
        let _sending = self.sending[at].lock().await;
        let to = &self.pool.engines[at];
        if to
            .engine
            .unless_silent(to.engine.inspect_image(&image.id))
            .await??
            .is_some()
        {
            return Ok(());
        }
        let mut tried: Vec<usize> = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        // Bounded: each pass tries a new source, and there are as many as engines.
        for _ in 0..self.pool.engines.len() {
            let mut holds = vec![false; self.pool.engines.len()];
            let alive: Vec<bool> = self.slots().iter().map(|s| s.alive).collect();
            for (i, e) in self.pool.engines.iter().enumerate() {
                if i != at && alive[i] && !tried.contains(&i) {
                    // A source must hold it under the tag a send exports, naming this id.
                    holds[i] = image_id_on(e, &image.tag).await.as_deref() == Some(&image.id);
                }
            }
            let from = schedule::send_source(&self.slots(), &holds, at, &tried);
            let Some(from_at) = from else { break };
            tried.push(from_at);
            let from = &self.pool.engines[from_at];
            let err = match send(from, to, image, reporter).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            // The source is fine, or the destination is gone too: the problem is not the
            // source, and another one would fare no better.
            if answers(&from.engine, false).await || !answers(&to.engine, false).await {
                return Err(err);
            }
            self.lose(from_at);
            reporter.warn(format!(
                "engine `{}` stopped answering while it sent builder image {} to engine `{}` \
                 ({err:#}); sending it from another engine that holds it",
                from.name, image.tag, to.name
            ));
            failures.push(format!("from `{}`: {err:#}", from.name));
        }
        let mut msg = format!(
            "no live engine of the pool holds builder image `{}` ({}) to send to engine `{}`",
            image.tag, image.id, to.name
        );
        if !failures.is_empty() {
            msg.push_str(&format!(" (tried {})", failures.join("; ")));
        }
        Err(crate::error::environment(msg))
    }

    /// What the build of `recipe` asks of each engine: the builder image's architecture,
    /// and per engine how many of its builder image and cache volumes it holds.
    async fn need(
        &self,
        paths: &Paths,
        recipe: &Recipe,
        spec: &BuildSpec,
        image: &BuilderImage,
        no_cache: bool,
        avoid: Option<usize>,
    ) -> anyhow::Result<schedule::Need> {
        let volumes = if no_cache {
            Vec::new()
        } else {
            let scope = cache_scope(&paths.project)?;
            spec.cache
                .iter()
                .map(|p| cache_volume_name(&recipe.package.name, &spec.builder, p, &scope))
                .collect()
        };
        let alive: Vec<bool> = self.slots().iter().map(|s| s.alive).collect();
        let mut holds = Vec::with_capacity(self.pool.engines.len());
        for (i, e) in self.pool.engines.iter().enumerate() {
            holds.push(if alive[i] {
                holdings(e, &image.id, &volumes).await
            } else {
                0
            });
        }
        Ok(schedule::Need {
            arch: image.arch.clone(),
            holds,
            avoid,
        })
    }
}

fn slot_of(e: &PoolEngine) -> schedule::Slot {
    schedule::Slot {
        cpus: e.cpus,
        arch: e.arch.clone(),
        alive: true,
        running: 0,
    }
}

/// How many of the builder image `image_id` and the cache `volumes` engine `e` holds (what
/// it cannot tell counts as not held).
async fn holdings(e: &PoolEngine, image_id: &str, volumes: &[String]) -> usize {
    // Bounded: an engine whose host went silent (packets dropped, not refused) must not
    // hold up the choice for every build; no answer in time counts as "not held".
    let held = async {
        let mut n = usize::from(matches!(
            e.engine.inspect_image(image_id).await,
            Ok(Some(_))
        ));
        for v in volumes {
            n += usize::from(matches!(
                crate::docker::volume_exists(&e.engine, v).await,
                Ok(true)
            ));
        }
        n
    };
    tokio::time::timeout(LOST_PING, held).await.unwrap_or(0)
}

/// The id engine `e` holds under `reference` (a tag or an id); no answer within
/// [`LOST_PING`] counts as none.
async fn image_id_on(e: &PoolEngine, reference: &str) -> Option<String> {
    match tokio::time::timeout(LOST_PING, e.engine.inspect_image(reference)).await {
        Ok(Ok(Some(i))) => Some(i.id),
        _ => None,
    }
}

/// Sends `image` from engine `from` to engine `to` and checks that `to` then holds it
/// under the same id.
async fn send(
    from: &PoolEngine,
    to: &PoolEngine,
    image: &BuilderImage,
    reporter: &Reporter,
) -> anyhow::Result<()> {
    let started = Instant::now();
    reporter.status(
        "Sending",
        format!(
            "builder image {} from engine `{}` to engine `{}`",
            image.tag, from.name, to.name
        ),
    );
    let copied = crate::docker::copy_image(&from.engine, &to.engine, &image.tag).await?;
    if copied.id != image.id {
        return Err(anyhow::anyhow!(
            "engine `{}` holds `{}` as {} after the send, not {}: the image changed on \
             engine `{}` meanwhile",
            to.name,
            image.tag,
            copied.id,
            image.id,
            from.name
        ));
    }
    reporter.status(
        "Sent",
        format!(
            "builder image {} to engine `{}`: {:.1} MB in {:.1}s",
            image.tag,
            to.name,
            copied.bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// Where `builder plan` expects each build step of `plan` to run on `pool`
/// ([`schedule::simulate`] with the engines idle, `jobs` at a time), written into the steps.
/// Steps whose builder image does not exist anywhere yet are placed as if it will be on
/// the first engine.
pub(crate) async fn plan_engines(paths: &Paths, plan: &mut Plan, pool: &Pool, jobs: usize) {
    let slots: Vec<schedule::Slot> = pool.engines.iter().map(slot_of).collect();
    let bases = crate::base::BaseImages::load(&paths.project).ok();
    let mut needs = Vec::new();
    for rp in plan.recipes.iter() {
        let (Some(bp), Some(spec)) = (rp.build.as_ref(), rp.loaded.build.as_ref()) else {
            continue;
        };
        if bp.cache == CacheState::Hit {
            continue;
        }
        let tag = bases.as_ref().and_then(|b| b.tag(&bp.builder).ok());
        let mut image = None;
        for e in &pool.engines {
            if let (Some(tag), None) = (&tag, &image) {
                let inspected = tokio::time::timeout(LOST_PING, e.engine.inspect_image(tag));
                if let Ok(Ok(Some(i))) = inspected.await {
                    image = Some(i);
                }
            }
        }
        let scope = cache_scope(&paths.project).unwrap_or_default();
        let volumes: Vec<String> = spec
            .cache
            .iter()
            .map(|p| cache_volume_name(&rp.name, &spec.builder, p, &scope))
            .collect();
        let mut holds = Vec::new();
        for (i, e) in pool.engines.iter().enumerate() {
            holds.push(match &image {
                Some(img) => holdings(e, &img.id, &volumes).await,
                None => usize::from(i == 0),
            });
        }
        let arch = image
            .and_then(|i| i.architecture)
            .or_else(|| crate::docker::pool::debian_to_go_arch(&rp.architecture));
        needs.push(schedule::Need {
            arch,
            holds,
            avoid: None,
        });
    }
    let placed = schedule::simulate(&slots, &needs, jobs);
    for (bp, at) in plan
        .recipes
        .iter_mut()
        .filter_map(|r| r.build.as_mut())
        .filter(|b| b.cache != CacheState::Hit)
        .zip(placed)
    {
        bp.engine = Some(match at {
            Some(i) => pool.engines[i].name.clone(),
            None => "none (no engine of the builder image's architecture)".to_string(),
        });
    }
}

/// Runs the build steps of `plan`, up to `opts.jobs` at once; each resolves into its step.
async fn execute(
    pool: &Pool,
    images: &BTreeMap<String, BuilderImage>,
    paths: &Paths,
    plan: &mut Plan,
    opts: &BuildOptions,
    reporter: &Reporter,
    cancel: CancellationToken,
) -> anyhow::Result<Vec<BuildResult>> {
    let todo: Vec<Todo<'_>> = plan
        .recipes
        .iter_mut()
        .filter_map(|rp| {
            let step = rp.build.as_mut()?;
            let spec = rp.loaded.build.as_ref()?;
            Some(Todo {
                recipe: &rp.loaded,
                spec,
                step,
            })
        })
        .collect();
    let run_id = crate::docker::new_run_id();
    let permits = Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1)));
    let dispatch = Dispatch::new(pool);
    let jobs = todo.into_iter().map(|mut todo| {
        let permits = permits.clone();
        let cancel = cancel.clone();
        let run_id = run_id.clone();
        let dispatch = &dispatch;
        let image = &images[&todo.step.builder];
        async move {
            let _permit = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(crate::docker::interrupted()),
                p = permits.acquire_owned() => p.context("the job pool closed")?,
            };
            let started = Instant::now();
            let key = match fresh_or_key(paths, &mut todo, opts, reporter, started)? {
                Ok(fresh) => return Ok(fresh),
                Err(key) => key,
            };
            let ctx = Ctx {
                paths,
                opts,
                reporter,
                cancel: &cancel,
                run_id: &run_id,
            };
            dispatch_one(dispatch, image, &ctx, &mut todo, &key, started).await
        }
    });
    let outcomes = futures_util::future::join_all(jobs).await;

    if cancel.is_cancelled() {
        return Err(crate::docker::interrupted());
    }
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(r) => results.push(r),
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(results),
        1 => Err(errors.remove(0)),
        n => {
            // Keep the first error's chain (and exit code); list the others in its message.
            let mut msg = format!("{n} builds failed:");
            for e in &errors {
                msg.push_str(&format!("\n\n{e:#}"));
            }
            Err(crate::error::failed(msg))
        }
    }
}

/// Runs one build that missed the cache on an engine of the pool. When that engine stops
/// answering meanwhile (it died or went away), the build is lost with it and retried once
/// on another engine; a build that fails on its own (a command's exit code, its timeout)
/// is not retried.
async fn dispatch_one(
    dispatch: &Dispatch<'_>,
    image: &BuilderImage,
    ctx: &Ctx<'_>,
    todo: &mut Todo<'_>,
    key: &str,
    started: Instant,
) -> anyhow::Result<BuildResult> {
    let Ctx {
        paths,
        opts,
        reporter,
        cancel,
        run_id,
    } = *ctx;
    let name = todo.recipe.package.name.clone();
    let mut retried: Option<Retry> = None;
    loop {
        let avoid = retried.as_ref().map(|r| r.at);
        let need = crate::docker::cancellable(
            cancel,
            dispatch.need(paths, todo.recipe, todo.spec, image, opts.no_cache, avoid),
        )
        .await??;
        let Some(at) = dispatch.take(&need) else {
            let arch = image.arch.as_deref().unwrap_or("any");
            let msg = match &retried {
                Some(r) => format!(
                    "the build of `{name}` was lost with engine `{}` ({}) and no other live \
                     engine of architecture {arch} is left to retry it on",
                    r.engine, r.error
                ),
                None => format!(
                    "no engine of the pool can run the build of `{name}`: its builder image \
                     `{}` is {arch} and the live engines are {}; add an engine of that \
                     architecture to {} or {}",
                    image.tag,
                    dispatch
                        .pool
                        .engines
                        .iter()
                        .map(|e| format!("`{}` ({})", e.name, e.arch))
                        .collect::<Vec<_>>()
                        .join(", "),
                    crate::docker::pool::ENV_ENGINES,
                    crate::docker::pool::FILE
                ),
            };
            return Err(crate::error::environment(msg));
        };
        let pe = &dispatch.pool.engines[at];
        todo.step.engine = Some(pe.name.clone());
        let ran = async {
            crate::docker::cancellable(cancel, dispatch.ensure_image(at, image, reporter))
                .await??;
            // The session's own token: the timeout stops one build the way Ctrl-C stops all.
            let session = pe.engine.session(run_id, "build", &cancel.child_token());
            run_on(&session, ctx, todo, key).await
        }
        .await;
        dispatch.release(at);
        let err = match ran {
            Ok(outputs) => {
                let seconds = started.elapsed().as_secs_f64();
                let on = if dispatch.pool.configured {
                    format!(" on engine `{}`", pe.name)
                } else {
                    String::new()
                };
                reporter.status("Built", format!("{name}{on} in {seconds:.1}s"));
                todo.step.retried = retried.clone();
                return Ok(BuildResult {
                    name,
                    key: key.to_string(),
                    cached: false,
                    out_dir: todo.step.out_dir.clone(),
                    outputs,
                    seconds,
                    engine: Some(pe.name.clone()),
                    retried,
                });
            }
            Err(e) => e,
        };
        // An engine that went silent lost the build whatever it answers now (a stall of a
        // minute is no place for a build); otherwise one that still answers failed it.
        if cancel.is_cancelled()
            || retried.is_some()
            || crate::error::exit_code(&err) == crate::error::EXIT_INTERRUPTED
            || (!crate::docker::went_silent(&err)
                && answers(&pe.engine, crate::error::is_own_failure(&err)).await)
        {
            return Err(err);
        }
        dispatch.lose(at);
        let error = format!("{err:#}");
        reporter.warn(format!(
            "engine `{}` stopped answering during the build of `{name}` ({error}); \
             retrying the build once on another engine",
            pe.name
        ));
        reporter.status("Retrying", format!("{name} (engine `{}` lost it)", pe.name));
        retried = Some(Retry {
            engine: pe.name.clone(),
            error,
            at,
        });
    }
}

/// What every build of one run shares: `cancel` is the whole run's token (Ctrl-C).
#[derive(Clone, Copy)]
struct Ctx<'a> {
    paths: &'a Paths,
    opts: &'a BuildOptions,
    reporter: &'a Reporter,
    cancel: &'a CancellationToken,
    run_id: &'a str,
}

/// One recipe to build: its `[build]` table and its step of the plan, which the build
/// resolves and leaves as it ran.
struct Todo<'a> {
    recipe: &'a Recipe,
    spec: &'a BuildSpec,
    step: &'a mut BuildPlan,
}

/// Resolves the step's cache key now that its turn has come: `Ok` with the result when the
/// outputs are fresh (no engine needed), `Err(key)` when it must build.
fn fresh_or_key(
    paths: &Paths,
    todo: &mut Todo<'_>,
    opts: &BuildOptions,
    reporter: &Reporter,
    started: Instant,
) -> anyhow::Result<Result<BuildResult, String>> {
    let Todo { recipe, step, .. } = todo;
    let name = recipe.package.name.as_str();
    let Some(image_id) = step.builder_image.clone() else {
        return Err(anyhow::anyhow!(
            "the build of `{name}` has no builder image id before it ran \
             (a bug in builder: please report it)"
        ));
    };
    // Listed and hashed now that this build's turn has come, not for all steps up front:
    // the key must cover the bytes uploaded next (an edit while earlier builds ran would
    // otherwise be stamped with the old key), and one recipe's unlistable sources fail its
    // own build, beside the others' results.
    resolve(paths, recipe, step, &image_id)?;
    let Some(key) = step.cache_key.clone() else {
        return Err(anyhow::anyhow!(
            "the build of `{name}` has no cache key after resolving (a bug in builder: \
             please report it)"
        ));
    };
    if !opts.no_cache {
        if let Some(stamp) = step.stamp.clone() {
            reporter.status("Fresh", format!("{name} (key {})", &key[..12]));
            return Ok(Ok(BuildResult {
                name: name.to_string(),
                key,
                cached: true,
                out_dir: step.out_dir.clone(),
                outputs: stamp.outputs,
                seconds: started.elapsed().as_secs_f64(),
                engine: None,
                retried: None,
            }));
        }
    }
    Ok(Err(key))
}

/// Builds one recipe with key `key` in a container of `session` and installs its outputs;
/// returns `(relative path, sha256)` of each. `cancel` is the whole run's token (Ctrl-C);
/// the session's is its child, also cancelled by the timeout.
async fn run_on(
    session: &Session,
    ctx: &Ctx<'_>,
    todo: &mut Todo<'_>,
    key: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let Ctx {
        paths,
        opts,
        reporter,
        cancel,
        ..
    } = *ctx;
    let Todo { recipe, spec, step } = todo;
    let (recipe, spec) = (*recipe, *spec);
    let name = recipe.package.name.as_str();
    let image_id = step.builder_image.clone().unwrap_or_default();
    let image_id = image_id.as_str();
    reporter.status("Building", format!("{name} (key {})", &key[..12]));
    // What ran: `--no-cache` builds even when the key's outputs were in place.
    step.cache = CacheState::Miss;
    let out_dir = step.out_dir.clone();
    let staged = cache::staging_dir(&out_dir)?;
    let mut env: BTreeMap<String, String> = BTreeMap::from([
        ("VERSION".to_string(), recipe.package.version()),
        ("SOURCE_DATE_EPOCH".to_string(), source_date_epoch()),
        ("BUILDER_RECIPE".to_string(), name.to_string()),
    ]);
    // The recipe's own values win: they are explicit.
    env.extend(spec.env.clone());
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let work = async {
        let mut caches = Vec::new();
        // `--no-cache` builds from nothing: no output cache and no tool cache volume either.
        let scope = cache_scope(&paths.project)?;
        for path in spec.cache.iter().filter(|_| !opts.no_cache) {
            let volume = cache_volume_name(name, &spec.builder, path, &scope);
            session
                .cancellable(crate::docker::ensure_volume(
                    session.engine(),
                    &volume,
                    crate::docker::cache_labels(name, &scope),
                ))
                .await??;
            reporter.verbose(format!("{name}: cache {path} in volume {volume}"));
            caches.push((volume, path.clone()));
        }
        let job = run::Job {
            name,
            spec,
            image_id,
            env,
            entries: step.sources.clone(),
            caches,
        };
        run::run(session, job, reporter, staged.path()).await
    };
    // The timeout stops the run the way Ctrl-C does (through the session's child token), so
    // the session's cleanup below removes the container on this path too. An engine that
    // goes silent (a stopped or hung host: requests neither answer nor fail) ends the run
    // at once, its requests abandoned; the cleanup below then says what it left there.
    let ran = {
        tokio::pin!(work);
        let silent = session.engine().until_silent();
        tokio::select! {
            ran = &mut work => ran,
            e = silent => {
                session.cancel().cancel();
                Err(e)
            }
            _ = tokio::time::sleep(spec.timeout) => {
                session.cancel().cancel();
                let _ = session.engine().unless_silent(&mut work).await;
                if cancel.is_cancelled() {
                    Err(crate::docker::interrupted())
                } else {
                    Err(timed_out(recipe, spec))
                }
            }
        }
    };
    let cleaned = session.cleanup().await;
    if let Err(e) = cleaned {
        reporter.warn(format!("{e:#}"));
    }
    ran?;
    let outputs = cache::seal(staged.path(), &spec.outputs, key, name, image_id)?;
    let target = out_dir.clone();
    tokio::task::spawn_blocking(move || cache::install(staged, &target))
        .await
        .context("the install task failed")??;
    Ok(outputs)
}

/// The error for a build that ran past `[build] timeout`.
fn timed_out(recipe: &Recipe, spec: &BuildSpec) -> anyhow::Error {
    crate::error::failed(format!(
        "build of `{}` timed out after {}; raise `[build] timeout` in `{}` or fix the command",
        recipe.package.name,
        spec.timeout_text,
        recipe.file.display()
    ))
}

mod images {
    //! The bridge to builder images (`crate::base`).
    use crate::cli::Paths;
    use crate::docker::Pool;
    use crate::report::Reporter;

    /// Makes sure the builder image `name` exists (made from `base-images/<name>.toml` if
    /// needed) on an engine of `pool`: the first that holds it already, else the first
    /// engine. Other engines get it sent when a build goes there. An unknown name is a
    /// usage error listing the known ones.
    pub(super) async fn ensure(
        pool: &Pool,
        paths: &Paths,
        name: &str,
        reporter: &Reporter,
    ) -> anyhow::Result<super::BuilderImage> {
        let bases = crate::base::BaseImages::load(&paths.project)?;
        let tag = bases.tag(name)?;
        let mut home = &pool.engines[0];
        for e in &pool.engines {
            // Bounded: an engine that went silent since the pool was made holds nothing.
            if super::image_id_on(e, &tag).await.is_some() {
                home = e;
                break;
            }
        }
        let image = bases.ensure_image(&home.engine, name, reporter).await?;
        let arch = home
            .engine
            .inspect_image(&image.id)
            .await?
            .and_then(|i| i.architecture)
            .filter(|a| !a.is_empty());
        reporter.verbose(format!(
            "builder image `{name}`: {} ({}, {}) on engine `{}`",
            image.tag,
            image.id,
            arch.as_deref().unwrap_or("any architecture"),
            home.name
        ));
        Ok(super::BuilderImage {
            tag: image.tag,
            id: image.id,
            arch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_volume_names_are_stable_valid_and_distinct() {
        let a = cache_volume_name("backend", "go", "/tmp/gocache", "s");
        assert_eq!(a, cache_volume_name("backend", "go", "/tmp/gocache/", "s"));
        assert_ne!(
            a,
            cache_volume_name("backend", "go", "/tmp/gocache", "other-project")
        );
        assert!(a.starts_with("builder-cache-backend-"), "{a}");
        assert_eq!(a.len(), "builder-cache-backend-".len() + 12);
        assert_ne!(a, cache_volume_name("backend", "go", "/tmp/other", "s"));
        assert_ne!(a, cache_volume_name("backend", "go2", "/tmp/gocache", "s"));
        let odd = cache_volume_name("libfoo++", "go", "/c", "s");
        assert!(
            odd.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
            "{odd}"
        );
    }

    fn recipe(dir: &std::path::Path, cache: &str) -> Recipe {
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/main.go"), "package main").unwrap();
        std::fs::create_dir_all(dir.join("base-images")).unwrap();
        let go = concat!(env!("CARGO_MANIFEST_DIR"), "/base-images/go.toml");
        std::fs::copy(go, dir.join("base-images/go.toml")).unwrap();
        let file = dir.join("probe.toml");
        std::fs::write(
            &file,
            format!(
                "[package]\nname = \"probe\"\nversion = \"1.0\"\nmaintainer = \"A <a@example.com>\"\n\
                 description = \"p\"\n\n[build]\nbuilder = \"go\"\nsource = \"src\"\n\
                 command = [\"true\"]\n{cache}\n"
            ),
        )
        .unwrap();
        crate::recipe::load_file(&file, dir).unwrap_or_else(|d| panic!("{d:?}"))
    }

    #[test]
    fn cache_directories_do_not_change_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let plain = recipe(dir.path(), "");
        let cached = recipe(dir.path(), "cache = [\"/tmp/gocache\"]");
        assert_eq!(cached.build.as_ref().unwrap().cache, vec!["/tmp/gocache"]);
        let key = |r: &Recipe| {
            let paths = Paths::new(r.project.clone());
            let mut plan = crate::plan::plan(&paths, &[r], &Default::default());
            let step = plan.recipes[0].build.as_mut().unwrap();
            resolve(&paths, r, step, "sha256:abc").unwrap();
            step.cache_key.clone().unwrap()
        };
        assert_eq!(key(&plain), key(&cached));
        let other = recipe(dir.path(), "env = { A = \"1\" }");
        assert_ne!(key(&plain), key(&other), "other [build] fields still count");
    }

    /// Where a build ran (and which engine lost it) is in the plan's JSON, which
    /// dist/pipeline.json carries; a plan nobody dispatched says nothing of engines.
    #[test]
    fn the_plan_json_says_where_each_build_ran() {
        let dir = tempfile::tempdir().unwrap();
        let r = recipe(dir.path(), "");
        let paths = Paths::new(r.project.clone());
        let mut plan = crate::plan::plan(&paths, &[&r], &Default::default());
        let json = serde_json::to_value(&plan).unwrap();
        assert!(
            json["recipes"][0]["build"].get("engine").is_none(),
            "{json}"
        );
        let step = plan.recipes[0].build.as_mut().unwrap();
        step.engine = Some("a".into());
        step.retried = Some(Retry {
            engine: "b".into(),
            error: "connection refused".into(),
            at: 1,
        });
        let json = serde_json::to_value(&plan).unwrap();
        let build = &json["recipes"][0]["build"];
        assert_eq!(build["engine"], "a", "{json}");
        assert_eq!(
            build["retried"],
            serde_json::json!({"engine": "b", "error": "connection refused"})
        );
    }

    /// The cache is looked up where the plan puts the outputs, with the key the plan
    /// records: what `builder plan` says is what `build` will find.
    #[test]
    fn resolve_looks_in_the_plans_out_dir_and_records_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let r = recipe(dir.path(), "");
        let paths = Paths::new(r.project.clone());
        let mut plan = crate::plan::plan(&paths, &[&r], &Default::default());
        let step = plan.recipes[0].build.as_mut().unwrap();
        assert!(!step.cache.is_resolved());
        assert_eq!(step.out_dir, paths.dist.join("build/probe"));
        step.out_dir = dir.path().join("elsewhere/probe");
        resolve(&paths, &r, step, "sha256:abc").unwrap();
        assert_eq!(step.cache, CacheState::Miss);
        assert_eq!(step.builder_image.as_deref(), Some("sha256:abc"));
        assert_eq!(
            step.sources
                .iter()
                .map(|e| e.rel.as_str())
                .collect::<Vec<_>>(),
            vec!["main.go"]
        );
        let key = step.cache_key.clone().unwrap();
        let staged = cache::staging_dir(&step.out_dir).unwrap();
        std::fs::write(staged.path().join("bin"), "x").unwrap();
        cache::seal(staged.path(), &["bin".into()], &key, "probe", "sha256:abc").unwrap();
        cache::install(staged, &step.out_dir).unwrap();
        resolve(&paths, &r, step, "sha256:abc").unwrap();
        assert_eq!(step.cache, CacheState::Hit);
        assert_eq!(step.stamp.as_ref().unwrap().key, key);
        // The default place holds nothing: the hit came from where the plan pointed.
        assert!(!paths.dist.join("build/probe").exists());
    }
}
