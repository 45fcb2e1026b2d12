//! `builder smoke`: deploy the packaged images behind HAProxy on a fresh Docker network, load
//! them at a constant rate through 127.0.0.1 and gate on the stack's thresholds.
//!
//! Flow: stack.toml (+ overrides) → artifacts under test checked against dist/manifest.json
//! (files re-hashed, image ids compared) before anything starts → network, services,
//! HAProxy (`deploy`) → every server UP in HAProxy's stats → load (`crate::load`) while
//! `monitor` records and makes restarts → gate (`gate`) → `dist/smoke/<run>/` reports
//! (`report`, `html`) → teardown through the run's [`Session`] on every path (success, failure,
//! timeout, Ctrl-C) unless `--keep`. Once something was deployed, every outcome but Ctrl-C
//! leaves the reports: a deployment that never became healthy or a run over its time budget
//! is a failed check in them (see [`stopped_report`]).
//!
//! Canary (`[canary]` or `--baseline ENV`): the release the environment holds is loaded by
//! digest (`canary::baseline`) and deployed beside the candidate, each variant on its own
//! network, behind a two-level HAProxy (`haproxy::canary_config`); one load is split
//! between them, compared (`compare`) and, if the candidate is not worse, switched to it
//! through HAProxy's runtime API (`canary::switch`). Without a release in the environment
//! the comparison is skipped with one line and the run is as above.
//!
//! Owns: the stack file format (`stack`), HAProxy config, stats and runtime API (`haproxy`). Never prints:
//! everything goes through the [`Reporter`]; the CLI prints the summary.

pub(crate) mod artifacts;
pub(crate) mod canary;
pub(crate) mod compare;
pub(crate) mod deploy;
pub(crate) mod gate;
pub(crate) mod haproxy;
pub(crate) mod html;
pub(crate) mod monitor;
pub(crate) mod report;
pub(crate) mod stack;
pub(crate) mod swarm;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::docker::{interrupted, Session};
use crate::load::{LoadOptions, LoadReport, Target};
use crate::project::Paths;
use crate::recipe::Recipe;
use crate::report::Reporter;
use deploy::Deployment;
use gate::ReportMode;
use report::{Capacity, CapacityStep, Inputs, SmokeReport};
use stack::{Overrides, Stack};

/// Most steps a `--find-capacity` search may take.
pub(crate) const MAX_CAPACITY_STEPS: u64 = 1000;

/// `--find-capacity` stepping.
#[derive(Debug, Clone)]
pub struct CapacityOptions {
    pub start: f64,
    pub step: f64,
    pub max: f64,
    pub step_duration: Duration,
    pub step_warmup: Duration,
}

impl Default for CapacityOptions {
    fn default() -> Self {
        CapacityOptions {
            start: 25.0,
            step: 25.0,
            max: 400.0,
            step_duration: Duration::from_secs(10),
            step_warmup: Duration::from_secs(2),
        }
    }
}

impl CapacityOptions {
    /// Number of rates the search tries at most: `start`, `start + step`, ... up to `max`.
    /// Only meaningful for options that passed [`CapacityOptions::validate`].
    pub fn steps(&self) -> u64 {
        let n = ((self.max - self.start) / self.step + 1e-9).floor();
        if n.is_finite() && n >= 0.0 {
            (n as u64).saturating_add(1)
        } else {
            1
        }
    }

    /// The rate of step `i` (0-based), computed without accumulating rounding errors.
    fn rate(&self, i: u64) -> f64 {
        self.start + i as f64 * self.step
    }

    /// Checks the search before anything starts; every message names the flags.
    pub fn validate(&self) -> Result<()> {
        let max_rate = crate::load::MAX_RATE;
        if !(self.start > 0.0 && self.step > 0.0 && self.max >= self.start && self.max <= max_rate)
        {
            return Err(crate::error::usage(format!(
                "--capacity-start and --capacity-step must be above 0, and --capacity-max at least --capacity-start and at most {max_rate} req/s"
            )));
        }
        let steps = self.steps();
        if steps > MAX_CAPACITY_STEPS {
            return Err(crate::error::usage(format!(
                "--find-capacity would try {steps} rates from --capacity-start {} to --capacity-max {} by --capacity-step {}; the limit is {MAX_CAPACITY_STEPS}: raise --capacity-step or narrow the range",
                self.start, self.max, self.step
            )));
        }
        if self.step_duration.is_zero() {
            return Err(crate::error::usage(
                "--step-duration must be above 0, e.g. 10s",
            ));
        }
        let per_step = self.step_duration.saturating_add(self.step_warmup);
        if per_step > crate::load::MAX_DURATION {
            return Err(crate::error::usage(format!(
                "--step-duration plus the {:.0}s step warm-up is {:.0}s; the limit is {}s",
                self.step_warmup.as_secs_f64(),
                per_step.as_secs_f64(),
                crate::load::MAX_DURATION.as_secs()
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default)]
pub struct SmokeOptions {
    /// Default: `<recipes>/stack.toml`.
    pub stack_file: Option<PathBuf>,
    pub overrides: Overrides,
    /// Leave the deployment running at the end (remove it with `builder gc`).
    pub keep: bool,
    pub capacity: Option<CapacityOptions>,
    /// The key that signs the report (see [`crate::promote::PromoteConfig::signer_if_any`]);
    /// without any key the report is written unsigned and promotion refuses it.
    pub signing_key: Option<PathBuf>,
    /// The environment the run's release would replace (the pipeline's promotion target):
    /// the baseline of a stack with a `[canary]` table, unless `--baseline` names another.
    pub replaces: Option<String>,
    /// `--target`: overrides the stack file's `target`.
    pub target: Option<stack::DeployTarget>,
    /// `--registry`: overrides the stack file's `registry` (Swarm runs).
    pub registry: Option<String>,
}

/// The result of a run that got as far as deploying: measured and gated, or stopped before the
/// gate for a reason that fails the stage (then `report.error` says why, exit code 1).
#[derive(Debug)]
pub(crate) struct SmokeOutcome {
    pub report: SmokeReport,
    /// `dist/smoke/<run>/`.
    pub dir: PathBuf,
    /// The deployment is still up (`--keep`).
    pub kept: bool,
}

/// Reads the stack and applies the overrides (no Docker). Errors are diagnostics or usage
/// errors (exit code 2).
pub(crate) fn load_stack(paths: &Paths, opts: &SmokeOptions) -> Result<(Stack, Vec<Recipe>)> {
    let file = opts
        .stack_file
        .clone()
        .unwrap_or_else(|| paths.recipes.join("stack.toml"));
    let recipes = crate::recipe::load_project(paths)?;
    let images: stack::RecipeImages = recipes
        .iter()
        .map(|r| (r.package.name.clone(), r.image.is_some()))
        .collect();
    let mut stack = stack::load(&file, &images)?;
    stack.apply(&opts.overrides)?;
    if let (Some(spec), Some(env), None) = (
        stack.canary.as_mut(),
        &opts.replaces,
        &opts.overrides.baseline,
    ) {
        spec.baseline = Some(env.clone());
    }
    Ok((stack, recipes))
}

/// Runs a smoke test (or a capacity search). Returns the outcome whether the gate passed or
/// not, also when the deployment never became healthy (a failed report with
/// `report.error`); errors are setup problems before anything was deployed, an interruption,
/// or an environment error during the run (after its reports were written).
pub(crate) async fn run(
    paths: &Paths,
    opts: &SmokeOptions,
    reporter: &Reporter,
    cancel: CancellationToken,
) -> Result<SmokeOutcome> {
    let started = SystemTime::now();
    let clock = Instant::now();
    if let Some(c) = &opts.capacity {
        c.validate()?;
    }
    let (stack, recipes) = load_stack(paths, opts)?;
    let under = artifacts::collect(paths, &stack, &recipes)?;
    let signer = report_signer(paths, opts, reporter)?;
    let mut baseline = resolve_baseline(paths, &stack, opts, &under)?;
    if let Some(Baseline::Skipped { why, .. }) = &baseline {
        reporter.status("Canary", why);
    }
    let target = opts.target.unwrap_or(stack.target);
    let registry = opts.registry.clone().or_else(|| stack.registry.clone());
    if target == stack::DeployTarget::Swarm && registry.is_none() {
        return Err(crate::error::usage(format!(
            "`--target swarm` needs a registry the swarm pulls the images from: pass \
             `--registry HOST:PORT` or set `registry = \"HOST:PORT\"` in `{}`",
            stack.file.display()
        )));
    }
    let engine = crate::docker::connect().await?;
    reporter.status(
        "Checking",
        format!(
            "{} artifacts against dist/manifest.json",
            under.artifacts.len()
        ),
    );
    let images = artifacts::ensure_images(&engine, paths, &under, reporter).await?;
    if let Some(Baseline::Found { env, found, images }) = &mut baseline {
        *images = canary::baseline::ensure_images(&engine, paths, env, found, reporter).await?;
    }
    let bases = crate::base::BaseImages::load(&paths.project)?;
    let lb_image = bases
        .ensure_image(&engine, &stack.load_balancer.base, reporter)
        .await?;

    let pushed = match (&target, &registry) {
        (stack::DeployTarget::Swarm, Some(reg)) => {
            let candidate = swarm::push_images(paths, &under, reg, reporter).await?;
            let baseline = match &baseline {
                Some(Baseline::Found { env, found, .. }) => {
                    Some(swarm::push_baseline(paths, env, found, reg, reporter).await?)
                }
                _ => None,
            };
            Some((candidate, baseline))
        }
        _ => None,
    };
    let place = match &pushed {
        Some((images, baseline)) => Place::Swarm {
            images,
            baseline: baseline.as_ref(),
        },
        None => Place::Containers,
    };

    let run_id = crate::docker::new_run_id();
    let session = engine.session(&run_id, deploy::STAGE, &cancel);
    let budget = stack
        .load_balancer
        .ready_timeout
        .saturating_add(stack.load.warmup)
        .saturating_add(stack.load.duration)
        .saturating_add(capacity_budget(opts.capacity.as_ref()))
        .saturating_add(match (&baseline, &stack.canary) {
            (Some(Baseline::Found { .. }), Some(spec)) => canary::extra_time(&stack, spec),
            _ => Duration::ZERO,
        })
        .saturating_add(Duration::from_secs(120));
    let mut partial = Partial {
        canary: baseline.as_ref().map(Baseline::report),
        ..Partial::default()
    };
    let work = deploy_and_measure(
        &session,
        &stack,
        &images,
        baseline.as_ref(),
        &lb_image.id,
        place,
        opts,
        reporter,
        &mut partial,
    );
    let result = match tokio::time::timeout(budget, work).await {
        Ok(r) => r,
        Err(_) => Err(crate::error::failed(format!(
            "the smoke run took longer than {:.0}s and was stopped",
            budget.as_secs_f64()
        ))),
    };
    let interrupted_now = cancel.is_cancelled();
    let keep = opts.keep && result.is_ok() && !interrupted_now;
    if keep {
        // Leave everything up: the session's guard must never run.
        session.keep();
    } else {
        reporter.status("Removing", format!("smoke deployment {run_id}"));
        if let Err(e) = session.cleanup().await {
            reporter.warn(format!("{e:#}"));
        }
    }
    if interrupted_now {
        return Err(interrupted());
    }
    let times = RunTimes {
        run_id: &run_id,
        started,
        finished: SystemTime::now(),
        elapsed: clock.elapsed(),
    };
    let dir = paths.dist.join("smoke").join(&run_id);
    let write = |report: &SmokeReport| {
        report::write_all(&dir, report, signer.as_ref())
            .with_context(|| format!("could not write the smoke reports into `{}`", dir.display()))
    };
    let report = match result {
        Ok(measured) => {
            let report = build_report(&stack, opts, under, measured, &times);
            write(&report)?;
            report
        }
        Err(e) => {
            let report = stopped_report(&stack, opts, under, partial, &e, budget, &times);
            // The run's own error comes first; a report that could not be written is a warning.
            if let Err(w) = write(&report) {
                reporter.warn(format!("{w:#}"));
                return Err(e);
            }
            if crate::error::exit_code(&e) != crate::error::EXIT_FAILED {
                reporter.status("Reports", format!("{}", dir.display()));
                return Err(e);
            }
            report
        }
    };
    Ok(SmokeOutcome {
        report,
        dir,
        kept: keep,
    })
}

/// The baseline of a canary run, as far as it was resolved.
enum Baseline {
    /// No comparison in environment `env`, for the reason given (one line).
    Skipped { env: String, why: String },
    /// Every service's release in environment `env`; `images` (service → image id) is
    /// filled once they are loaded into the engine.
    Found {
        env: String,
        found: Vec<(canary::BaselineImage, crate::repo::images::ImageEntry)>,
        images: std::collections::HashMap<String, String>,
    },
}

impl Baseline {
    /// The canary report as far as the baseline goes.
    fn report(&self) -> canary::CanaryReport {
        match self {
            Baseline::Skipped { env, why } => canary::CanaryReport::skipped(env, why.clone()),
            Baseline::Found { env, found, .. } => {
                let mut r = canary::CanaryReport::skipped(env, String::new());
                r.skipped = None;
                r.baseline_images = found.iter().map(|(b, _)| b.clone()).collect();
                r
            }
        }
    }
}

/// Finds the baseline's images when the stack (or `--baseline`) names an environment; a
/// missing release or repository is a skipped comparison, not an error.
fn resolve_baseline(
    paths: &Paths,
    stack: &Stack,
    opts: &SmokeOptions,
    under: &artifacts::UnderTest,
) -> Result<Option<Baseline>> {
    let Some(env) = stack.baseline() else {
        return Ok(None);
    };
    if opts.capacity.is_some() {
        return Ok(Some(Baseline::Skipped {
            env: env.to_string(),
            why: "no comparison: --find-capacity measures the candidate alone".into(),
        }));
    }
    Ok(Some(
        match canary::baseline::resolve(paths, env, stack, under)? {
            canary::baseline::Resolved::Skipped(why) => Baseline::Skipped {
                env: env.to_string(),
                why,
            },
            canary::baseline::Resolved::Found(found) => Baseline::Found {
                env: env.to_string(),
                found,
                images: Default::default(),
            },
        },
    ))
}

/// The key that signs the report, resolved before anything is deployed so a broken key
/// fails fast. Without any key the run still happens (a smoke test is useful on its own),
/// with a warning that promotion will refuse its report.
fn report_signer(
    paths: &Paths,
    opts: &SmokeOptions,
    reporter: &Reporter,
) -> Result<Option<crate::sign::Signer>> {
    let cfg = crate::promote::PromoteConfig::load(paths, None)?;
    let signer = cfg.signer_if_any(opts.signing_key.as_deref(), reporter)?;
    if signer.is_none() {
        reporter.warn(format!(
            "no signing key: this run's report will not be signed, and `builder promote` only \
             takes signed reports; set `{}` (or `signing_key` in promote.toml, or pass \
             `--signing-key`) to the key promotion uses",
            crate::sign::ENV_KEY_FILE
        ));
    }
    Ok(signer)
}

/// Time the capacity search may take: every step with its warm-up, the pause after it and
/// some slack. Saturates instead of overflowing.
fn capacity_budget(c: Option<&CapacityOptions>) -> Duration {
    match c {
        None => Duration::ZERO,
        Some(c) => {
            let steps = u32::try_from(c.steps()).unwrap_or(u32::MAX);
            c.step_duration
                .saturating_add(c.step_warmup)
                .saturating_add(Duration::from_secs(5))
                .checked_mul(steps)
                .unwrap_or(Duration::MAX)
        }
    }
}

/// How far a run got, for the report of a run that stopped before the gate.
#[derive(Default)]
struct Partial {
    deployment: Option<Deployment>,
    /// Every server passed its health checks.
    ready: bool,
    restarts: Vec<monitor::Restart>,
    containers: Vec<monitor::ContainerSummary>,
    canary: Option<canary::CanaryReport>,
}

/// What the measured part produced.
struct Measured {
    deployment: Deployment,
    load: LoadReport,
    checks: Vec<gate::Check>,
    restarts: Vec<monitor::Restart>,
    containers: Vec<monitor::ContainerSummary>,
    capacity: Option<Capacity>,
    canary: Option<canary::CanaryReport>,
}

#[allow(clippy::too_many_arguments)]
async fn deploy_and_measure(
    session: &Session,
    stack: &Stack,
    images: &std::collections::HashMap<String, String>,
    baseline: Option<&Baseline>,
    lb_image: &str,
    place: Place<'_>,
    opts: &SmokeOptions,
    reporter: &Reporter,
    partial: &mut Partial,
) -> Result<Measured> {
    let (run_id, cancel) = (session.run_id(), session.cancel());
    let baseline_images = match baseline {
        Some(Baseline::Found { images, .. }) => Some(images),
        _ => None,
    };
    let spec = stack.canary.clone().unwrap_or_default();
    let variants = if baseline_images.is_some() { 2 } else { 1 };
    let n: u32 = stack.services.iter().map(|s| s.replicas).sum::<u32>() * variants;
    reporter.status(
        "Starting",
        format!(
            "{}{} on {} {} ({n} {} + HAProxy)",
            describe(stack),
            if baseline_images.is_some() {
                " for the candidate and the baseline each"
            } else {
                ""
            },
            match place {
                Place::Containers => "network",
                Place::Swarm { .. } => "Swarm, overlay network",
            },
            deploy::network_name(run_id),
            match place {
                Place::Containers => "containers",
                Place::Swarm { .. } => "tasks",
            }
        ),
    );
    let variant_images = deploy::Images {
        candidate: images,
        baseline: baseline_images,
        candidate_weight: spec.weight,
    };
    let dep = match place {
        Place::Containers => {
            deploy::start(session, stack, variant_images, lb_image, reporter).await?
        }
        Place::Swarm { images, baseline } => {
            let images = deploy::Images {
                candidate: images,
                baseline: baseline.filter(|_| variant_images.baseline.is_some()),
                candidate_weight: spec.weight,
            };
            swarm::start(session, stack, images, lb_image, reporter).await?
        }
    };
    partial.deployment = Some(dep.clone());
    let mon = match place {
        Place::Containers => Watch::Containers(monitor::Monitor::start(
            session.engine(),
            &dep,
            run_id,
            &stack.restart,
            reporter,
        )),
        Place::Swarm { .. } => {
            Watch::Swarm(swarm::TaskMonitor::start(session.engine(), &dep, reporter))
        }
    };
    let waiting = reporter.progress("Waiting", None);
    waiting.message(format!("for {n} servers to pass their health checks"));
    let ready = match place {
        Place::Containers => deploy::wait_ready(session, &dep, stack).await,
        Place::Swarm { .. } => swarm::wait_ready(session, &dep, stack).await,
    };
    if let Err(e) = ready {
        (partial.restarts, partial.containers) = mon.finish().await;
        return Err(e);
    }
    partial.ready = true;
    waiting.finish(format!("all {n} servers up behind {}", dep.url()));

    let mut canary_checks = Vec::new();
    let mut canary_report = partial.canary.clone();
    let (load, rate, capacity) = match &opts.capacity {
        None if baseline_images.is_some() => {
            mon.mark_load_start();
            let base = canary_report.clone().unwrap_or_else(|| {
                canary::CanaryReport::skipped(stack.baseline().unwrap_or_default(), String::new())
            });
            let m = canary::run(stack, &spec, &dep, base, reporter, cancel).await;
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    (partial.restarts, partial.containers) = mon.finish().await;
                    return Err(e);
                }
            };
            canary_checks = m.checks;
            canary_report = Some(m.report);
            (m.load, stack.load.rate, None)
        }
        None => {
            mon.mark_load_start();
            let load = run_load(
                stack,
                &dep,
                stack.load.rate,
                stack.load.duration,
                stack.load.warmup,
                reporter,
                cancel,
            )
            .await?;
            (load, stack.load.rate, None)
        }
        Some(c) => {
            mon.mark_load_start();
            find_capacity(stack, &dep, c, reporter, cancel).await?
        }
    };
    let (restarts, containers) = mon.finish().await;
    if cancel.is_cancelled() {
        return Err(interrupted());
    }
    let mut checks = gate::evaluate(&stack.thresholds, rate, &load);
    checks.extend(canary_checks);
    Ok(Measured {
        deployment: dep,
        load,
        checks,
        restarts,
        containers,
        capacity,
        canary: canary_report,
    })
}

/// Where the stack runs.
#[derive(Clone, Copy)]
enum Place<'a> {
    Containers,
    /// Swarm services; `images`: service → `registry/name@sha256:...`.
    Swarm {
        images: &'a std::collections::HashMap<String, String>,
        /// Canary runs: the baseline's services → `registry/name@sha256:...`.
        baseline: Option<&'a std::collections::HashMap<String, String>>,
    },
}

/// builder's monitor of the deployment: container events and state, or Swarm's task list.
enum Watch {
    Containers(monitor::Monitor),
    Swarm(swarm::TaskMonitor),
}

impl Watch {
    fn mark_load_start(&self) {
        match self {
            Watch::Containers(m) => m.mark_load_start(),
            Watch::Swarm(m) => m.mark_load_start(),
        }
    }

    async fn finish(self) -> (Vec<monitor::Restart>, Vec<monitor::ContainerSummary>) {
        match self {
            Watch::Containers(m) => m.finish().await,
            Watch::Swarm(m) => m.finish().await,
        }
    }
}

fn describe(stack: &Stack) -> String {
    stack
        .services
        .iter()
        .map(|s| format!("{}×{}", s.name, s.replicas))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The load generator's options for the stack's paths through HAProxy.
pub(crate) fn load_options(
    stack: &Stack,
    dep: &Deployment,
    rate: f64,
    duration: Duration,
    warmup: Duration,
) -> LoadOptions {
    let targets: Vec<Target> = stack
        .load
        .paths
        .iter()
        .map(|p| Target {
            url: format!("{}{}", dep.url(), p.path),
            weight: p.weight,
        })
        .collect();
    LoadOptions {
        targets,
        rate,
        duration,
        warmup,
        timeout: stack.load.timeout,
        // Bounded: never more than the schedule asks for.
        max_requests: Some((rate * (duration + warmup).as_secs_f64()).ceil() as u64 + 1),
        ..LoadOptions::default()
    }
}

async fn run_load(
    stack: &Stack,
    dep: &Deployment,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    reporter: &Reporter,
    cancel: &CancellationToken,
) -> Result<LoadReport> {
    let opts = load_options(stack, dep, rate, duration, warmup);
    run_load_with(opts, crate::load::Tuning::default(), dep, reporter, cancel).await
}

/// Runs `opts` with `tuning` (the canary's grouping, tap and stop token) through HAProxy,
/// with a progress bar.
async fn run_load_with(
    opts: LoadOptions,
    tuning: crate::load::Tuning,
    dep: &Deployment,
    reporter: &Reporter,
    cancel: &CancellationToken,
) -> Result<LoadReport> {
    let expected = opts.max_requests;
    reporter.status(
        "Loading",
        format!(
            "{} req/s for {:.0}s (+{:.0}s warm-up) through {}",
            opts.rate,
            opts.duration.as_secs_f64(),
            opts.warmup.as_secs_f64(),
            dep.url()
        ),
    );
    let progress = reporter.progress("Load", expected);
    let report = crate::load::run_with(opts, tuning, cancel.clone(), Some(&progress)).await?;
    progress.finish(format!(
        "{} sent, {} ok, {} failed",
        report.sent, report.ok, report.failed
    ));
    Ok(report)
}

async fn find_capacity(
    stack: &Stack,
    dep: &Deployment,
    c: &CapacityOptions,
    reporter: &Reporter,
    cancel: &CancellationToken,
) -> Result<(LoadReport, f64, Option<Capacity>)> {
    let mut steps = Vec::new();
    let mut best: Option<(LoadReport, f64)> = None;
    let mut first: Option<(LoadReport, f64)> = None;
    // Bounded: `steps()` is at most MAX_CAPACITY_STEPS once validated.
    for i in 0..c.steps().min(MAX_CAPACITY_STEPS) {
        let rate = c.rate(i);
        let load = run_load(
            stack,
            dep,
            rate,
            c.step_duration,
            c.step_warmup,
            reporter,
            cancel,
        )
        .await?;
        if cancel.is_cancelled() {
            return Err(interrupted());
        }
        let checks = gate::evaluate(&stack.thresholds, rate, &load);
        let passed = checks.iter().all(|c| c.passed);
        reporter.status(
            if passed { "Held" } else { "Broke" },
            format!(
                "{rate} req/s: achieved {:.2}, success {:.2}%, p99 {:.0} ms",
                load.achieved_rate,
                load.success_ratio * 100.0,
                load.latency_ms.p99
            ),
        );
        steps.push(CapacityStep {
            rate,
            achieved_rate: load.achieved_rate,
            success_ratio: load.success_ratio,
            p50_ms: load.latency_ms.p50,
            p99_ms: load.latency_ms.p99,
            passed,
            broken: checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.message.clone())
                .collect(),
        });
        if first.is_none() {
            first = Some((load.clone(), rate));
        }
        if !passed {
            break;
        }
        best = Some((load, rate));
        // Let queues drain before the next step.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let highest = best.as_ref().map_or(0.0, |b| b.1);
    let (load, rate) = best.or(first).context("no capacity step ran")?;
    Ok((
        load,
        rate,
        Some(Capacity {
            highest_passing_rate: highest,
            steps,
            step_duration_s: c.step_duration.as_secs_f64(),
            step_warmup_s: c.step_warmup.as_secs_f64(),
        }),
    ))
}

/// Which run a report is of and when it ran.
#[derive(Clone, Copy)]
struct RunTimes<'a> {
    run_id: &'a str,
    started: SystemTime,
    finished: SystemTime,
    elapsed: Duration,
}

fn build_report(
    stack: &Stack,
    opts: &SmokeOptions,
    under: artifacts::UnderTest,
    m: Measured,
    times: &RunTimes<'_>,
) -> SmokeReport {
    let mut checks = m.checks;
    if let Some(cap) = &m.capacity {
        // The capacity search passes when the stack's own rate held.
        let held = cap.highest_passing_rate >= stack.load.rate;
        checks.push(gate::Check {
            name: "capacity".into(),
            threshold: format!(">= {} req/s", stack.load.rate),
            actual: format!("{} req/s", cap.highest_passing_rate),
            passed: held,
            message: if held {
                format!("the deployment held {} req/s", cap.highest_passing_rate)
            } else {
                format!(
                    "the highest rate that held every threshold is {} req/s, below the stack's rate {} req/s",
                    cap.highest_passing_rate, stack.load.rate
                )
            },
        });
    }
    let frame = report_frame(stack, opts, under, times);
    let passed = gate::verdict(frame.mode, &checks);
    let reasons = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.message.clone())
        .collect();
    SmokeReport {
        passed,
        deployment: Some(m.deployment),
        checks: Some(checks),
        reasons,
        percentiles: m.load.latency_ms,
        status_counts: m.load.status_counts.clone(),
        error_counts: m.load.error_counts.clone(),
        timeline: m.load.timeline.clone(),
        restarts: m.restarts,
        containers: m.containers,
        results: Some(m.load),
        capacity: m.capacity,
        canary: m.canary,
        ..frame
    }
}

/// What every report of a run holds whatever its outcome (the run, its inputs, the
/// artifacts under test); the outcome fields are empty and `passed` is false.
fn report_frame(
    stack: &Stack,
    opts: &SmokeOptions,
    under: artifacts::UnderTest,
    times: &RunTimes<'_>,
) -> SmokeReport {
    let RunTimes {
        run_id,
        started,
        finished,
        elapsed,
    } = *times;
    SmokeReport {
        schema: SmokeReport::SCHEMA,
        run_id: run_id.to_string(),
        mode: if opts.capacity.is_some() {
            ReportMode::FindCapacity
        } else {
            ReportMode::Gate
        },
        passed: false,
        started: crate::timefmt::rfc3339(started),
        finished: crate::timefmt::rfc3339(finished),
        duration_s: elapsed.as_secs_f64(),
        inputs: Inputs {
            stack_file: stack.file.display().to_string(),
            overrides: opts.overrides.clone(),
            stack: stack.clone(),
        },
        artifacts: under.artifacts,
        source_commit: under.source_commit,
        deployment: None,
        thresholds: stack.thresholds,
        checks: Some(Vec::new()),
        reasons: Vec::new(),
        error: None,
        percentiles: Default::default(),
        status_counts: Default::default(),
        error_counts: Default::default(),
        timeline: Vec::new(),
        restarts: Vec::new(),
        containers: Vec::new(),
        results: None,
        capacity: None,
        canary: None,
    }
}

/// The report of a run that stopped before the gate: one failed check, `deployment_ready`
/// when the servers never all passed their health checks, else `completed` (the load could
/// not run or the run went over its time budget), with the error as its message.
fn stopped_report(
    stack: &Stack,
    opts: &SmokeOptions,
    under: artifacts::UnderTest,
    partial: Partial,
    error: &anyhow::Error,
    budget: Duration,
    times: &RunTimes<'_>,
) -> SmokeReport {
    let message = format!("{error:#}");
    let check = if partial.ready {
        gate::Check {
            name: "completed".into(),
            threshold: format!("the run completes within {:.0}s", budget.as_secs_f64()),
            actual: "stopped".into(),
            passed: false,
            message: message.clone(),
        }
    } else {
        gate::Check {
            name: "deployment_ready".into(),
            threshold: format!(
                "every server passes its health check within {:.0}s (load_balancer.ready_timeout)",
                stack.load_balancer.ready_timeout.as_secs_f64()
            ),
            actual: if partial.deployment.is_some() {
                "not healthy".into()
            } else {
                "not started".into()
            },
            passed: false,
            message: message.clone(),
        }
    };
    SmokeReport {
        deployment: partial.deployment,
        checks: Some(vec![check]),
        reasons: vec![message.clone()],
        error: Some(message),
        restarts: partial.restarts,
        containers: partial.containers,
        canary: partial.canary,
        ..report_frame(stack, opts, under, times)
    }
}

#[cfg(test)]
pub(crate) mod tests;
