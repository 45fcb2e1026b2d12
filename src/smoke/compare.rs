//! The canary verdict: a candidate's measured requests against the baseline's, tested for
//! being slower (Mann-Whitney U) and failing more (Fisher's exact test), each gated by a
//! minimum effect size, as [`Check`]s. Pure: no I/O.
// Called by the canary run (issue 13, branch `canary-deploy`); remove once that is merged.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};

use super::gate::Check;
use crate::load::{GroupReport, Sample};
use crate::stats::{MannWhitney, Proportions};

/// How much worse the candidate may be before the canary fails (stack.toml's `[canary]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tolerances {
    /// Significance level of each test.
    pub alpha: f64,
    /// Relative increase of p50 or p99 latency tolerated (0.10 = 10% worse).
    pub max_latency_increase: f64,
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
            max_error_increase: 0.01,
            min_requests: 200,
        }
    }
}

impl Tolerances {
    /// Checks every value; the message names the key and the accepted range.
    pub fn validate(&self) -> Result<(), String> {
        todo!("Tolerances::validate")
    }
}

/// The comparison of a candidate with its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub baseline: GroupReport,
    pub candidate: GroupReport,
    pub latency: Option<MannWhitney>,
    pub errors: Proportions,
    /// Relative change of the candidate's p50 against the baseline's (0.1 = 10% slower).
    pub p50_change: f64,
    pub p99_change: f64,
    /// `canary_samples`, `canary_latency`, `canary_errors`.
    pub checks: Vec<Check>,
    /// Why no comparison was made (e.g. the environment holds no release yet).
    pub skipped: Option<String>,
}

/// Compares the candidate's samples with the baseline's (warm-up samples are left out).
pub fn compare(t: &Tolerances, baseline: &[Sample], candidate: &[Sample]) -> Comparison {
    let _ = (t, baseline, candidate);
    todo!("compare")
}
