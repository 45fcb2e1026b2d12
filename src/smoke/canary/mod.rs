//! Canary smoke: the candidate beside the baseline (the release an environment holds)
//! behind one HAProxy, one constant-rate load split between them by weight, a statistical
//! verdict (`super::compare`) at the end of the comparison window, then, if it passed, a
//! blue-green switch under the same load through HAProxy's runtime API.
//!
//! One load run lasts warm-up + comparison (`load.duration`) + the time the verdict waits
//! for the window's last answers + the switch. Responses carry
//! [`super::haproxy::VARIANT_HEADER`], set by HAProxy, by which the load generator groups
//! them; a [`Tap`] hands the controller every finished request while the load goes on, and
//! the `stop` token ends the load early when the verdict fails.
//!
//! Owns: the timing of the comparison window and of the switch, the accounting of requests
//! that failed because of the switch, and [`CanaryReport`]. Must not: decide the statistics
//! (`compare`), deploy (`deploy`), or print.

pub(crate) mod baseline;
pub(crate) mod switch;

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::compare::{compare, Comparison, Tolerances};
use super::deploy::{Deployment, Variant};
use super::gate::Check;
use super::haproxy::runtime::RuntimeApi;
use super::haproxy::VARIANT_HEADER;
use super::stack::{CanarySpec, Stack};
use crate::load::{LoadReport, Sample, Tap, Tuning};
use crate::report::Reporter;
pub(crate) use baseline::BaselineImage;
pub(crate) use switch::SwitchReport;

/// The canary part of a smoke report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CanaryReport {
    /// The environment whose release is the baseline.
    pub baseline_env: String,
    /// Why there was no comparison (then nothing else is filled and the absolute gate alone
    /// decides).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Every service's baseline image, by digest.
    pub baseline_images: Vec<BaselineImage>,
    /// The candidate's share of the traffic during the comparison, in percent.
    pub candidate_weight: u32,
    /// The comparison window, in seconds since the load started (warm-up excluded).
    pub window_s: (f64, f64),
    /// Answers in the window that carried no variant header (no answer at all: connection
    /// errors; a request slower than `load.timeout` gets HAProxy's 504 of its variant);
    /// they count in the absolute gate, not in the comparison.
    pub ungrouped: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    /// The blue-green switch; `None` when the comparison failed (or the run stopped first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch: Option<SwitchReport>,
}

impl CanaryReport {
    /// The report of a run without comparison, with its reason in one line.
    pub(crate) fn skipped(env: &str, why: String) -> CanaryReport {
        CanaryReport {
            baseline_env: env.to_string(),
            skipped: Some(why),
            baseline_images: Vec::new(),
            candidate_weight: 0,
            window_s: (0.0, 0.0),
            ungrouped: 0,
            comparison: None,
            switch: None,
        }
    }
}

/// The tolerances of `[canary]` as the comparison takes them.
pub(crate) fn tolerances(spec: &CanarySpec) -> Tolerances {
    Tolerances {
        alpha: spec.alpha,
        max_latency_increase: spec.max_latency_increase,
        min_latency_increase_ms: spec.min_latency_increase_ms,
        max_error_increase: spec.max_error_increase,
        min_requests: spec.min_requests,
    }
}

/// How long after the comparison window's end the verdict waits, so that every request due
/// in the window has answered or timed out.
fn verdict_delay(stack: &Stack) -> Duration {
    stack
        .load
        .timeout
        .saturating_add(Duration::from_millis(500))
}

/// Slack after the switch's last hold, so the API calls' time never cuts it short.
const SWITCH_SLACK: Duration = Duration::from_secs(1);

/// Time the canary adds to the load run: the verdict's wait and the switch.
pub(crate) fn extra_time(stack: &Stack, spec: &CanarySpec) -> Duration {
    verdict_delay(stack)
        .saturating_add(spec.switch_time())
        .saturating_add(SWITCH_SLACK)
}

/// What the measured part of a canary run produced.
pub(crate) struct Measured {
    pub load: LoadReport,
    /// `canary_*` checks, then `switch_failures` when the switch ran.
    pub checks: Vec<Check>,
    pub report: CanaryReport,
}

/// Runs the load with the comparison and the switch beside it. `report` holds the baseline
/// already resolved (environment, images); the rest is filled here.
pub(crate) async fn run(
    stack: &Stack,
    spec: &CanarySpec,
    dep: &Deployment,
    mut report: CanaryReport,
    reporter: &Reporter,
    cancel: &CancellationToken,
) -> Result<Measured> {
    let api = RuntimeApi {
        port: dep
            .api_port
            .ok_or_else(|| crate::error::failed("the canary deployment has no runtime API port"))?,
    };
    let tap = Tap::new();
    let stop = CancellationToken::new();
    let tuning = Tuning {
        group_header: Some(VARIANT_HEADER.to_string()),
        tap: Some(tap.clone()),
        stop: Some(stop.clone()),
        ..Tuning::default()
    };
    let duration = stack.load.duration.saturating_add(extra_time(stack, spec));
    let warmup = stack.load.warmup;
    let window = (
        warmup.as_secs_f64(),
        warmup.saturating_add(stack.load.duration).as_secs_f64(),
    );
    report.candidate_weight = spec.weight;
    report.window_s = window;
    reporter.status(
        "Canary",
        format!(
            "candidate {}% / baseline {}% (environment `{}`) for {:.0}s, then the switch {}",
            spec.weight,
            100 - spec.weight,
            report.baseline_env,
            stack.load.duration.as_secs_f64(),
            spec.switch_steps
                .iter()
                .map(|s| format!("{s}%"))
                .collect::<Vec<_>>()
                .join(" → ")
        ),
    );
    let t0 = Instant::now();
    // Cancelled when the load is over, so the controller never waits past it.
    let done = CancellationToken::new();
    let load = async {
        let opts = super::load_options(stack, dep, stack.load.rate, duration, warmup);
        let r = super::run_load_with(opts, tuning, dep, reporter, cancel).await;
        done.cancel();
        r
    };
    let waits = Waits {
        cancel,
        done: &done,
    };
    let control = control(stack, spec, &api, &tap, &stop, t0, window, reporter, waits);
    let (load, control) = tokio::join!(load, control);
    // Whatever happened, the load is over: the controller must not outlive it.
    let load = load?;
    let mut ctl = control?;
    // Requests per variant per step and the failures of the switch, from every sample.
    if let Some(sw) = ctl.switch.as_mut() {
        let samples = tap.samples();
        switch::account(sw, &samples, load.duration_s);
        ctl.checks.push(switch::check(sw, spec.max_switch_failures));
    }
    report.ungrouped = ctl.ungrouped;
    report.comparison = ctl.comparison;
    report.switch = ctl.switch;
    Ok(Measured {
        load,
        checks: ctl.checks,
        report,
    })
}

/// What the controller found.
struct Controlled {
    comparison: Option<Comparison>,
    ungrouped: u64,
    switch: Option<SwitchReport>,
    checks: Vec<Check>,
}

/// Waits for the comparison window to close and its answers to arrive, compares, and then
/// either stops the load (failed) or runs the switch. Every wait is bounded and ends on
/// Ctrl-C; the caller's load ends by itself at its duration.
#[allow(clippy::too_many_arguments)]
async fn control(
    stack: &Stack,
    spec: &CanarySpec,
    api: &RuntimeApi,
    tap: &Tap,
    stop: &CancellationToken,
    t0: Instant,
    window: (f64, f64),
    reporter: &Reporter,
    waits: Waits<'_>,
) -> Result<Controlled> {
    let cancel = waits.cancel;
    let verdict_at = Duration::from_secs_f64(window.1).saturating_add(verdict_delay(stack));
    waits.until(t0 + verdict_at).await?;
    let samples = tap.samples();
    let in_window = |s: &&Sample| !s.warmup && s.due_s >= window.0 && s.due_s < window.1;
    let of = |v: Variant| -> Vec<Sample> {
        samples
            .iter()
            .filter(in_window)
            .filter(|s| s.group == v.as_str())
            .cloned()
            .collect()
    };
    let (baseline, candidate) = (of(Variant::Baseline), of(Variant::Candidate));
    let ungrouped = samples
        .iter()
        .filter(in_window)
        .filter(|s| s.group != Variant::Baseline.as_str() && s.group != Variant::Candidate.as_str())
        .count() as u64;
    let comparison = compare(&tolerances(spec), &baseline, &candidate);
    let passed = comparison.checks.iter().all(|c| c.passed);
    for c in &comparison.checks {
        reporter.status(
            if c.passed { "Canary ok" } else { "Canary bad" },
            format!("{}: {}", c.name, c.message),
        );
    }
    let mut checks = comparison.checks.clone();
    if !passed {
        reporter.status(
            "Stopping",
            "the load: the candidate is worse than the baseline, no switch",
        );
        stop.cancel();
        return Ok(Controlled {
            comparison: Some(comparison),
            ungrouped,
            switch: None,
            checks,
        });
    }
    let backends: Vec<String> = stack
        .services
        .iter()
        .map(|s| super::haproxy::backend_name(&s.name))
        .collect();
    let sw = switch::run(api, &backends, spec, t0, reporter, waits).await;
    let sw = match sw {
        Ok(sw) => sw,
        Err(e) if cancel.is_cancelled() => return Err(e),
        Err(e) => {
            // The switch could not be made: stop the load and fail its check.
            stop.cancel();
            let mut failed = SwitchReport::failed(format!("{e:#}"));
            failed.started_s = t0.elapsed().as_secs_f64();
            checks.push(switch::check(&failed, spec.max_switch_failures));
            return Ok(Controlled {
                comparison: Some(comparison),
                ungrouped,
                switch: None,
                checks,
            });
        }
    };
    Ok(Controlled {
        comparison: Some(comparison),
        ungrouped,
        switch: Some(sw),
        checks,
    })
}

/// What ends the controller's waits early: Ctrl-C, or the end of the load.
#[derive(Clone, Copy)]
pub(crate) struct Waits<'a> {
    cancel: &'a CancellationToken,
    done: &'a CancellationToken,
}

impl Waits<'_> {
    /// Sleeps until `at`; Ctrl-C is [`crate::docker::interrupted`], a load that ended first
    /// an error saying so.
    pub(crate) async fn until(&self, at: Instant) -> Result<()> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(crate::docker::interrupted()),
            _ = self.done.cancelled() => Err(crate::error::failed(
                "the load ended before the canary's comparison and switch were done",
            )),
            _ = tokio::time::sleep_until(at.into()) => Ok(()),
        }
    }

    /// Like [`Waits::until`], but the load ending first is fine (the last hold of the
    /// switch may end with the load).
    pub(crate) async fn until_or_done(&self, at: Instant) -> Result<()> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(crate::docker::interrupted()),
            _ = self.done.cancelled() => Ok(()),
            _ = tokio::time::sleep_until(at.into()) => Ok(()),
        }
    }
}
