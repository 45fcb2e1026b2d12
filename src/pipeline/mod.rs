//! `builder pipeline` and `builder ci`: validate → build → package → smoke → promote, in
//! one process, stopping at the first stage that fails. `ci` is the same chain for CI
//! systems: plain timestamped output, and `dist/` always ends with `SHA256SUMS`,
//! `manifest.json`, `pipeline.json` and `junit.xml` (a testcase per stage plus the smoke
//! gate's thresholds), whatever stage failed, so the CI system can publish what exists.
//!
//! Exit codes come from the error that stopped the chain (see [`crate::error`]): 2 for a
//! recipe error, 3 for the environment, 1 for a failed build, gate or promotion.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::durable::write as write_atomic;
use crate::junit;
use crate::plan::{Plan, PlanOptions};
use crate::project::Paths;
use crate::report::Reporter;

/// Options of one pipeline run.
#[derive(Debug, Clone, Default)]
pub(crate) struct PipelineOptions {
    /// Rebuild even when the build cache hits.
    pub no_cache: bool,
    /// Promote after a passed smoke test.
    pub promote: bool,
    /// Environment to promote into; `None` is the first of promote.toml's environments.
    pub promote_to: Option<String>,
    pub smoke: crate::smoke::SmokeOptions,
    /// Signing key for the repositories (else promote.toml, the environment, or a key
    /// generated once outside the project; see [`ensure_signing_key`]).
    pub signing_key: Option<PathBuf>,
}

/// How a stage ended; written as `passed`, `failed` or `skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StageStatus {
    Passed,
    Failed,
    Skipped,
}

impl std::fmt::Display for StageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, not `write_str`: the table in `builder pipeline` aligns it with `{:<8}`.
        f.pad(match self {
            StageStatus::Passed => "passed",
            StageStatus::Failed => "failed",
            StageStatus::Skipped => "skipped",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StageResult {
    pub stage: String,
    pub status: StageStatus,
    pub seconds: f64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// `dist/pipeline.json`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PipelineSummary {
    pub started: String,
    pub finished: String,
    pub passed: bool,
    pub exit_code: u8,
    pub stages: Vec<StageResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smoke_report: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    /// The plan the run executed (the one `builder plan` prints), with what the build stage
    /// resolved against the engine (cache keys, hits) and builder.lock as the run left it
    /// (sets it locked are `resolved`); absent when validation failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

pub(crate) const STAGES: [&str; 5] = ["validate", "build", "package", "smoke", "promote"];

/// Runs the chain and always writes the summary files into dist/. Returns the summary and
/// the first error (the summary is there for `--json` output whatever happened).
pub(crate) async fn run(
    paths: &Paths,
    opts: &PipelineOptions,
    reporter: &Reporter,
    cancel: CancellationToken,
) -> (PipelineSummary, anyhow::Result<()>) {
    let started = crate::timefmt::rfc3339(std::time::SystemTime::now());
    let mut stages: Vec<StageResult> = Vec::new();
    let mut out = RunOutputs::default();
    let result = chain(paths, opts, reporter, cancel, &mut stages, &mut out).await;
    // The build and package stages lock what drifted: the summary shows the lock they left.
    if let Some(plan) = out.plan.as_mut() {
        plan.refresh_lock(paths);
    }
    let (smoke_dir, smoke_suite) = (out.smoke_dir, out.smoke_suite);
    for name in STAGES.iter().skip(stages.len()) {
        stages.push(StageResult {
            stage: name.to_string(),
            status: StageStatus::Skipped,
            seconds: 0.0,
            detail: String::new(),
        });
    }
    let exit_code = match &result {
        Ok(()) => crate::error::EXIT_OK,
        Err(e) => crate::error::exit_code(e),
    };
    let summary = PipelineSummary {
        started,
        finished: crate::timefmt::rfc3339(std::time::SystemTime::now()),
        passed: result.is_ok(),
        exit_code,
        stages,
        smoke_report: smoke_dir.as_ref().map(|d: &PathBuf| d.join("report.json")),
        source_commit: crate::project::git_revision(&paths.project),
        plan: out.plan,
    };
    let written = write_outputs(
        paths,
        &summary,
        smoke_suite.as_ref(),
        out.produced.as_ref(),
        reporter,
    );
    // The stage's error decides the exit code; a failure to write the summary comes second.
    let result = result.and(written);
    (summary, result)
}

/// What a run leaves for the summary files.
#[derive(Default)]
struct RunOutputs {
    smoke_dir: Option<PathBuf>,
    /// The smoke gate's JUnit suite, embedded in the pipeline's `junit.xml`.
    smoke_suite: Option<junit::Suite>,
    /// The files this run's package stage wrote (absolute); `None` when it did not run.
    produced: Option<std::collections::BTreeSet<PathBuf>>,
    /// What the run executes, from the validate stage on.
    plan: Option<Plan>,
}

async fn stage<T>(
    stages: &mut Vec<StageResult>,
    name: &str,
    reporter: &Reporter,
    work: impl std::future::Future<Output = anyhow::Result<(T, String)>>,
) -> anyhow::Result<T> {
    reporter.status(
        "Stage",
        format!("{name} ({}/{})", stages.len() + 1, STAGES.len()),
    );
    let start = Instant::now();
    let outcome = work.await;
    let seconds = start.elapsed().as_secs_f64();
    let (status, detail) = match &outcome {
        Ok((_, d)) => (StageStatus::Passed, d.clone()),
        Err(e) => (StageStatus::Failed, format!("{e:#}")),
    };
    stages.push(StageResult {
        stage: name.into(),
        status,
        seconds,
        detail,
    });
    outcome.map(|(t, _)| t)
}

async fn chain(
    paths: &Paths,
    opts: &PipelineOptions,
    reporter: &Reporter,
    cancel: CancellationToken,
    stages: &mut Vec<StageResult>,
    out: &mut RunOutputs,
) -> anyhow::Result<()> {
    let RunOutputs {
        smoke_dir,
        smoke_suite,
        produced,
        plan: planned,
    } = out;
    let (plan, promote_to) = stage(stages, "validate", reporter, async {
        let r = crate::recipe::load_project(paths)?;
        let n = r.len();
        // The promotion target is checked now, not after a full build and smoke run.
        let promote_to = if opts.promote {
            Some(promote_target(paths, opts.promote_to.as_deref())?)
        } else {
            None
        };
        // What `builder plan` prints for these recipes is what the stages below execute.
        let all: Vec<&crate::recipe::Recipe> = r.iter().collect();
        let plan = crate::plan::plan(paths, &all, &PlanOptions::default());
        Ok(((plan, promote_to), format!("{n} recipes")))
    })
    .await?;
    let plan = planned.insert(plan);

    stage(stages, "build", reporter, async {
        let build_opts = crate::build::BuildOptions {
            no_cache: opts.no_cache,
            jobs: crate::build::default_jobs(),
        };
        let results =
            crate::build::build(paths, plan, &build_opts, reporter, cancel.clone()).await?;
        let cached = results.iter().filter(|r| r.cached).count();
        Ok((
            (),
            format!("{} built, {cached} from cache", results.len() - cached),
        ))
    })
    .await?;
    if cancel.is_cancelled() {
        return Err(crate::docker::interrupted());
    }

    let plan = &*plan;
    stage(stages, "package", reporter, async {
        let results = crate::package::package(
            paths,
            plan,
            &crate::package::PackageOptions::default(),
            reporter,
        )
        .await?;
        let images = results.iter().filter(|r| r.image.is_some()).count();
        for a in crate::package::forget_removed(paths, &plan.loaded_recipes())? {
            reporter.status(
                "Forgot",
                format!(
                    "{} {} {}: no recipe makes it any more",
                    a.kind, a.name, a.path
                ),
            );
        }
        // Exactly the files the plan names: the package stage wrote each of them.
        *produced = Some(plan.artifacts().map(PathBuf::from).collect());
        Ok(((), format!("{} packages, {images} images", results.len())))
    })
    .await?;

    // One key signs the smoke report and the repository, so promotion can verify the report.
    let signing_key = match &opts.signing_key {
        Some(k) => Some(k.clone()),
        None => ensure_signing_key(paths, reporter)?,
    };
    let outcome = stage(stages, "smoke", reporter, async {
        let smoke_opts = crate::smoke::SmokeOptions {
            signing_key: signing_key.clone(),
            // A `[canary]` stack compares with what the promotion would replace.
            replaces: promote_to.clone(),
            ..opts.smoke.clone()
        };
        let outcome = crate::smoke::run(paths, &smoke_opts, reporter, cancel.clone()).await?;
        *smoke_dir = Some(outcome.dir.clone());
        *smoke_suite = Some(crate::smoke::report::junit_suite(&outcome.report));
        if !outcome.report.passed {
            return Err(crate::error::failed(format!(
                "smoke gate failed (run {}): {}; report: {}",
                outcome.report.run_id,
                outcome.report.reasons.join("; "),
                outcome.dir.join("report.html").display()
            )));
        }
        let detail = format!("run {} passed", outcome.report.run_id);
        Ok((outcome, detail))
    })
    .await?;
    let run_id = outcome.report.run_id.clone();
    drop(outcome);

    let Some(env) = &promote_to else {
        stages.push(StageResult {
            stage: "promote".into(),
            status: StageStatus::Skipped,
            seconds: 0.0,
            detail: "--no-promote".into(),
        });
        return Ok(());
    };
    stage(stages, "promote", reporter, async {
        // Exactly what this run's smoke test passed, not whatever report is newest.
        let promote_opts = crate::promote::PromoteOptions {
            to: env.clone(),
            run: Some(run_id),
            signing_key,
            ..Default::default()
        };
        let r = crate::promote::promote(paths, &promote_opts, reporter).await?;
        Ok(((), format!("generation {} of `{}`", r.generation, r.env)))
    })
    .await
}

/// The environment the pipeline promotes into: `requested`, else the first environment of
/// promote.toml. Only the first environment takes artifacts straight from a smoke run
/// (unless `allow_skip`); later ones are promoted from the one before with `builder promote`.
fn promote_target(paths: &Paths, requested: Option<&str>) -> anyhow::Result<String> {
    let cfg = crate::promote::PromoteConfig::load(paths, None)?;
    let env = requested.unwrap_or(&cfg.environments[0]).to_string();
    let pos = cfg.position(&env)?;
    if pos > 0 && !cfg.allow_skip {
        return Err(crate::error::usage(format!(
            "`--promote-to {env}`: a pipeline promotes what it tested into the first \
             environment (`{}`); promote on with `builder promote --from {} --to {env}`, or set \
             `allow_skip = true` in promote.toml",
            cfg.environments[0],
            cfg.environments[pos - 1]
        )));
    }
    Ok(env)
}

/// The key the pipeline signs with when nothing is configured: a key generated once under
/// `$XDG_CONFIG_HOME/builder/` (never inside the project or dist/), with a warning saying
/// how to configure a real one. `None` when a key is configured in promote.toml or the
/// environment.
pub(crate) fn ensure_signing_key(
    paths: &Paths,
    reporter: &Reporter,
) -> anyhow::Result<Option<PathBuf>> {
    // Empty counts as unset, as in `Signer::load` (a CI secret missing on a fork is empty).
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let configured = set(crate::sign::ENV_KEY)
        || set(crate::sign::ENV_KEY_FILE)
        || crate::promote::PromoteConfig::load(paths, None)?
            .signing_key
            .is_some();
    if configured {
        return Ok(None);
    }
    let dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("builder"),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".config").join("builder"),
            None => return Ok(None),
        },
    };
    let key = dir.join("signing-key.asc");
    if !key.exists() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("could not create `{}`", dir.display()))?;
        let (secret, public) =
            crate::sign::generate_key("builder repository signing key (generated)")?;
        crate::sign::write_file_atomic(&key, secret.as_bytes(), 0o600, false)?;
        crate::sign::write_file_atomic(
            &dir.join("signing-key.pub.asc"),
            public.as_bytes(),
            0o644,
            true,
        )?;
        reporter.warn(format!(
            "no signing key configured: generated one at `{}` for the repositories; for real use set \
             `signing_key` in promote.toml or BUILDER_SIGNING_KEY_FILE (see `builder key generate`)",
            key.display()
        ));
    }
    Ok(Some(key))
}

/// `pipeline.json` and `junit.xml` first (they say what happened), then `manifest.json`
/// (created empty when there is none) and `SHA256SUMS` of the artifacts this run packaged,
/// checked against the manifest, so stale files of earlier runs in dist/ are never listed.
/// A file that cannot be hashed is reported and left out rather than stopping the others.
fn write_outputs(
    paths: &Paths,
    summary: &PipelineSummary,
    smoke_suite: Option<&junit::Suite>,
    produced: Option<&std::collections::BTreeSet<PathBuf>>,
    reporter: &Reporter,
) -> anyhow::Result<()> {
    let mut json = serde_json::to_vec_pretty(summary)?;
    json.push(b'\n');
    write_atomic(&paths.dist.join("pipeline.json"), &json)?;
    write_atomic(
        &paths.dist.join("junit.xml"),
        junit_xml(summary, smoke_suite).as_bytes(),
    )?;
    let manifest_path = paths.manifest();
    let _lock = crate::manifest::Manifest::lock(&manifest_path)?;
    let manifest = crate::manifest::Manifest::load(&manifest_path)?;
    if !manifest_path.exists() {
        manifest.save(&manifest_path)?;
    }
    // Only what this run packaged, and only with the bytes the manifest records: artifacts
    // of earlier runs (a recipe since removed, a stage that failed before packaging) are
    // never listed, and SHA256SUMS never contradicts manifest.json.
    let mut sums = String::new();
    let mut arts: Vec<&crate::manifest::Artifact> = manifest
        .artifacts
        .iter()
        .filter(|a| produced.is_some_and(|p| p.contains(&paths.dist.join(&a.path))))
        .collect();
    arts.sort_by(|a, b| a.path.cmp(&b.path));
    for a in arts {
        let rel = &a.path;
        match crate::digest::Digest::of_file(&paths.dist.join(rel)) {
            Ok(sum) if sum == a.sha256 => {
                sums.push_str(&format!("{}  {rel}\n", sum.hex()));
                // The .deb's `.changes` (written beside it by the same packaging, naming the
                // .deb's sha256) goes up with it to reprepro/aptly/dput: listed right after it.
                if a.kind == crate::manifest::ArtifactKind::Deb {
                    changes_sum(paths, &manifest, rel, &mut sums, reporter);
                }
            }
            Ok(sum) => reporter.warn(format!(
                "left `{rel}` out of SHA256SUMS: it has sha256 {}, but manifest.json records \
                 {}; it changed after packaging",
                sum.hex(),
                a.sha256.hex()
            )),
            Err(e) => reporter.warn(format!("left `{rel}` out of SHA256SUMS: {e:#}")),
        }
    }
    write_atomic(&paths.dist.join("SHA256SUMS"), sums.as_bytes())
}

/// Adds the `.changes` file beside the .deb at `deb_rel` (relative to dist/) to `sums`, when
/// packaging wrote one, with the bytes manifest.json records for it (its `changes`
/// artifact); one that changed since, or cannot be read, is reported and left out.
fn changes_sum(
    paths: &Paths,
    manifest: &crate::manifest::Manifest,
    deb_rel: &str,
    sums: &mut String,
    reporter: &Reporter,
) {
    let changes = crate::package::changes::path_for(&paths.dist.join(deb_rel));
    let Ok(rel) = changes.strip_prefix(&paths.dist) else {
        return;
    };
    let recorded = manifest
        .artifacts
        .iter()
        .find(|a| a.kind == crate::manifest::ArtifactKind::Changes && Path::new(&a.path) == rel);
    let rel = rel.display();
    match (crate::digest::Digest::of_file(&changes), recorded) {
        (Ok(sum), Some(a)) if sum != a.sha256 => reporter.warn(format!(
            "left `{rel}` out of SHA256SUMS: it has sha256 {}, but manifest.json records {}; \
             it changed after packaging",
            sum.hex(),
            a.sha256.hex()
        )),
        (Ok(sum), _) => sums.push_str(&format!("{}  {rel}\n", sum.hex())),
        (Err(_), _) if !changes.exists() => {}
        (Err(e), _) => reporter.warn(format!("left `{rel}` out of SHA256SUMS: {e:#}")),
    }
}

/// A testsuite with a testcase per stage, followed by the smoke gate's own testsuite.
pub(crate) fn junit_xml(summary: &PipelineSummary, smoke: Option<&junit::Suite>) -> String {
    let cases = summary
        .stages
        .iter()
        .map(|s| junit::Case {
            classname: "pipeline".into(),
            name: s.stage.clone(),
            time: s.seconds,
            outcome: match s.status {
                StageStatus::Passed => junit::Outcome::Passed(None),
                StageStatus::Failed => junit::Outcome::Failed {
                    message: s.detail.lines().next().unwrap_or("failed").to_string(),
                    kind: None,
                    text: s.detail.clone(),
                },
                StageStatus::Skipped => junit::Outcome::Skipped,
            },
        })
        .collect();
    let pipeline = junit::Suite {
        name: "builder pipeline".into(),
        time: summary.stages.iter().map(|s| s.seconds).sum(),
        timestamp: summary.started.clone(),
        properties: Vec::new(),
        cases,
        counts: junit::Counts::Skipped,
    };
    let mut suites = vec![pipeline];
    suites.extend(smoke.cloned());
    junit::render(None, &suites)
}

#[cfg(test)]
mod tests;
