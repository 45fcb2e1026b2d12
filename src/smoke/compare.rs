//! The canary verdict: a candidate's measured requests against the baseline's, tested for
//! being slower (Mann-Whitney U) and failing more (Fisher's exact test), each gated by a
//! minimum effect size, as [`Check`]s. Pure: no I/O.
//!
//! Both tests must be significant *and* the effect large enough to fail, so the false-alarm
//! rate stays below `2 × alpha` even when both variants are the same image with random
//! failures (the simulation in the tests measures it), while a slower or more failing
//! candidate is caught by a 30 s run at 50 req/s split 50/50.
//!
//! Definitions: a *failure* is every measured request that is not a success (the load
//! report's definition: a 2xx/3xx answer within the timeout); latencies are those of every
//! measured request that finished, as in the load report's `latency_ms`; warm-up samples are
//! left out of everything but the timelines.

use serde::{Deserialize, Serialize};

use super::gate::Check;
use crate::load::{group_report, GroupReport, Sample};
use crate::stats::{compare_proportions, mann_whitney, MannWhitney, Proportions};

/// How much worse the candidate may be before the canary fails (stack.toml's `[canary]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Tolerances {
    /// Significance level of each test.
    pub alpha: f64,
    /// Relative increase of p50 or p99 latency tolerated (0.10 = 10% worse).
    pub max_latency_increase: f64,
    /// The smallest rise of p50 or p99, in ms, that counts as worse (with the relative one).
    pub min_latency_increase_ms: f64,
    /// Absolute increase of the failure rate tolerated (0.01 = one percentage point).
    pub max_error_increase: f64,
    /// Measured requests each variant needs for a verdict.
    pub min_requests: u64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            alpha: 0.01,
            max_latency_increase: 0.10,
            min_latency_increase_ms: 2.0,
            max_error_increase: 0.01,
            min_requests: 200,
        }
    }
}

/// The comparison of a candidate with its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Comparison {
    /// Each variant's measured requests (warm-up only in the timeline).
    pub baseline: GroupReport,
    pub candidate: GroupReport,
    /// `None` when either variant has no measured request.
    pub latency: Option<MannWhitney>,
    pub errors: Proportions,
    /// Relative change of the candidate's p50 against the baseline's (0.1 = 10% slower);
    /// 0 when the baseline has no latency to compare with.
    pub p50_change: f64,
    pub p99_change: f64,
    /// `canary_samples`, `canary_latency`, `canary_errors`; empty when skipped.
    pub checks: Vec<Check>,
    /// Why no comparison was made (e.g. the environment holds no release yet).
    pub skipped: Option<String>,
}

impl Comparison {
    /// Every check passed.
    #[cfg(test)]
    pub(crate) fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// Compares the candidate's samples with the baseline's. Each slice is one variant's
/// samples (their `group` field is not looked at); warm-up samples are left out.
pub(crate) fn compare(t: &Tolerances, baseline: &[Sample], candidate: &[Sample]) -> Comparison {
    let b = group_report(baseline);
    let c = group_report(candidate);
    let latencies = |s: &[Sample]| -> Vec<f64> {
        s.iter()
            .filter(|s| !s.warmup)
            .map(|s| s.latency_ms)
            .collect()
    };
    let latency = mann_whitney(&latencies(baseline), &latencies(candidate));
    let (nb, nc) = (b.ok + b.failed, c.ok + c.failed);
    let errors = compare_proportions(b.failed, nb, c.failed, nc);
    let change = |c: f64, b: f64| if b > 0.0 { c / b - 1.0 } else { 0.0 };
    let p50_change = change(c.latency_ms.p50, b.latency_ms.p50);
    let p99_change = change(c.latency_ms.p99, b.latency_ms.p99);
    let checks = vec![
        samples_check(t, nb, nc),
        latency_check(t, &b, &c, latency.as_ref(), p50_change, p99_change),
        errors_check(t, &b, &c, &errors),
    ];
    Comparison {
        baseline: b,
        candidate: c,
        latency,
        errors,
        p50_change,
        p99_change,
        checks,
        skipped: None,
    }
}

fn samples_check(t: &Tolerances, nb: u64, nc: u64) -> Check {
    let passed = nb >= t.min_requests && nc >= t.min_requests;
    Check {
        name: "canary_samples".into(),
        threshold: format!(">= {} measured requests per variant", t.min_requests),
        actual: format!("baseline {nb}, candidate {nc}"),
        passed,
        message: if passed {
            format!("{nb} baseline and {nc} candidate requests measured")
        } else {
            format!(
                "too few requests for a verdict: baseline {nb}, candidate {nc}, the threshold \
                 min_requests is {} per variant; run longer or give the candidate more weight",
                t.min_requests
            )
        },
    }
}

fn latency_check(
    t: &Tolerances,
    b: &GroupReport,
    c: &GroupReport,
    mw: Option<&MannWhitney>,
    p50_change: f64,
    p99_change: f64,
) -> Check {
    let threshold = format!(
        "Mann-Whitney U p < {} and p50 or p99 more than {} and {} worse",
        alpha(t.alpha),
        pct(t.max_latency_increase),
        ms(t.min_latency_increase_ms)
    );
    let Some(mw) = mw else {
        let which = if b.ok + b.failed == 0 {
            "the baseline"
        } else {
            "the candidate"
        };
        return Check {
            name: "canary_latency".into(),
            threshold,
            actual: "no data".into(),
            passed: false,
            message: format!("no latency to compare: {which} has no measured request"),
        };
    };
    let (bl, cl) = (&b.latency_ms, &c.latency_ms);
    let numbers = format!(
        "p50 {} vs baseline {} ({}), p99 {} vs baseline {} ({})",
        ms(cl.p50),
        ms(bl.p50),
        signed_pct(p50_change),
        ms(cl.p99),
        ms(bl.p99),
        signed_pct(p99_change)
    );
    let test = format!(
        "Mann-Whitney U p={}, shift {} (Hodges-Lehmann), P(candidate slower) {:.2}",
        p_value(mw.p_greater),
        ms(mw.hodges_lehmann_ms),
        mw.effect
    );
    let significant = mw.p_greater < t.alpha;
    // Worse: a percentile up by more than the relative tolerance and by at least the
    // absolute one (a 10% rise of a 4 ms p50 is noise of a shared host, not a regression).
    let rose = |change: f64, c: f64, b: f64| {
        change > t.max_latency_increase && c - b >= t.min_latency_increase_ms
    };
    let worse = rose(p50_change, cl.p50, bl.p50) || rose(p99_change, cl.p99, bl.p99);
    let passed = !(significant && worse);
    let message = if !passed {
        format!(
            "candidate is slower: {numbers}; {test} < {}, beyond the tolerance \
             max_latency_increase {} and min_latency_increase_ms {}",
            alpha(t.alpha),
            pct(t.max_latency_increase),
            ms(t.min_latency_increase_ms)
        )
    } else if significant {
        format!(
            "candidate is significantly slower ({test} < {}) but within the tolerance \
             max_latency_increase {} or min_latency_increase_ms {}: {numbers}",
            alpha(t.alpha),
            pct(t.max_latency_increase),
            ms(t.min_latency_increase_ms)
        )
    } else {
        format!(
            "candidate is not significantly slower: {test} >= {}; {numbers}",
            alpha(t.alpha)
        )
    };
    Check {
        name: "canary_latency".into(),
        threshold,
        actual: format!(
            "p={}, p50 {}, p99 {}",
            p_value(mw.p_greater),
            signed_pct(p50_change),
            signed_pct(p99_change)
        ),
        passed,
        message,
    }
}

fn errors_check(t: &Tolerances, b: &GroupReport, c: &GroupReport, e: &Proportions) -> Check {
    let significant = e.p_greater < t.alpha;
    let worse = e.difference > t.max_error_increase;
    let passed = !(significant && worse);
    let numbers = format!(
        "candidate fails {} ({} of {}) vs baseline {} ({} of {}), {} points (95% CI {} to {})",
        pct(e.candidate_rate),
        c.failed,
        c.ok + c.failed,
        pct(e.baseline_rate),
        b.failed,
        b.ok + b.failed,
        signed_points(e.difference),
        signed_points(e.ci95.0),
        signed_points(e.ci95.1)
    );
    let test = format!("Fisher exact p={}", p_value(e.p_greater));
    let message = if !passed {
        format!(
            "candidate fails more: {numbers}; {test} < {}, beyond the tolerance \
             max_error_increase {} points",
            alpha(t.alpha),
            points(t.max_error_increase)
        )
    } else if significant {
        format!(
            "candidate fails significantly more ({test} < {}) but within the tolerance \
             max_error_increase {} points: {numbers}",
            alpha(t.alpha),
            points(t.max_error_increase)
        )
    } else {
        format!(
            "candidate does not fail significantly more: {test} >= {}; {numbers}",
            alpha(t.alpha)
        )
    };
    Check {
        name: "canary_errors".into(),
        threshold: format!(
            "Fisher exact p < {} and failure rate more than {} points higher",
            alpha(t.alpha),
            points(t.max_error_increase)
        ),
        actual: format!(
            "p={}, {} vs {}",
            p_value(e.p_greater),
            pct(e.candidate_rate),
            pct(e.baseline_rate)
        ),
        passed,
        message,
    }
}

/// `212 ms`, `10.4 ms`, `0.85 ms`.
fn ms(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0} ms")
    } else if x.abs() >= 1.0 {
        format!("{x:.1} ms")
    } else {
        format!("{x:.2} ms")
    }
}

/// `3e-12`, `0.0042`, `0.43`.
fn p_value(p: f64) -> String {
    if p >= 0.01 {
        format!("{p:.2}")
    } else if p >= 0.0001 {
        format!("{p:.4}")
    } else {
        format!("{p:.1e}")
    }
}

fn alpha(a: f64) -> String {
    format!("{a}")
}

/// `2.0%`.
fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// `+104%`, `-3%`.
fn signed_pct(x: f64) -> String {
    format!("{:+.0}%", x * 100.0)
}

/// A difference of rates in percentage points: `+4.1`.
fn signed_points(x: f64) -> String {
    format!("{:+.1}", x * 100.0)
}

fn points(x: f64) -> String {
    format!("{:.1}", x * 100.0)
}

#[cfg(test)]
mod tests;
