//! The gate: each threshold of the stack checked against a [`LoadReport`], one [`Check`] per
//! threshold with a message that names it, the bound and the measured value.

use serde::{Deserialize, Serialize};

use super::stack::Thresholds;
use crate::load::LoadReport;

/// One threshold and its outcome. Promotion reads `name` and `passed` back (the other
/// fields may be absent in what it reads).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Check {
    /// Stable id: `achieved_rate`, `success_ratio`, `p99_latency`.
    pub name: String,
    #[serde(default)]
    pub threshold: String,
    #[serde(default)]
    pub actual: String,
    pub passed: bool,
    #[serde(default)]
    pub message: String,
}

/// What a smoke run did: gate the stack's rate, or step the rate up to find the capacity.
/// `gate` and `find-capacity` in the report; a report without a mode is a gate run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ReportMode {
    #[default]
    Gate,
    FindCapacity,
}

impl ReportMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReportMode::Gate => "gate",
            ReportMode::FindCapacity => "find-capacity",
        }
    }
}

impl std::fmt::Display for ReportMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The one rule that turns checks into a verdict, shared by the report's writer and
/// promotion's reader: a gate run passes when it has checks and every one passed; a
/// `find-capacity` run passes when its `capacity` check did (the stack's rate held).
pub(crate) fn verdict(mode: ReportMode, checks: &[Check]) -> bool {
    match mode {
        ReportMode::Gate => !checks.is_empty() && checks.iter().all(|c| c.passed),
        ReportMode::FindCapacity => checks.iter().any(|c| c.name == "capacity" && c.passed),
    }
}

/// Checks every threshold; an empty measurement fails all of them.
pub(crate) fn evaluate(t: &Thresholds, requested_rate: f64, r: &LoadReport) -> Vec<Check> {
    let measured = r.sent + r.dropped > 0;
    let ratio = if requested_rate > 0.0 {
        r.achieved_rate / requested_rate
    } else {
        0.0
    };
    let rate_ok = measured && ratio >= t.min_rate_ratio;
    let success_ok = measured && r.success_ratio >= t.min_success;
    let p99 = r.latency_ms.p99;
    let p99_ok = measured && r.ok + r.failed > 0 && p99 <= t.max_p99_ms;
    vec![
        Check {
            name: "achieved_rate".into(),
            threshold: format!(
                ">= {:.1}% of {requested_rate} req/s ({:.2} req/s)",
                t.min_rate_ratio * 100.0,
                t.min_rate_ratio * requested_rate
            ),
            actual: format!("{:.2} req/s ({:.1}%)", r.achieved_rate, ratio * 100.0),
            passed: rate_ok,
            message: if rate_ok {
                format!("achieved rate {:.2} req/s held the target", r.achieved_rate)
            } else {
                format!(
                    "achieved rate {:.2} req/s is {:.1}% of the requested {requested_rate} req/s; the threshold min_rate_ratio is {:.1}% ({} dropped, {} late)",
                    r.achieved_rate,
                    ratio * 100.0,
                    t.min_rate_ratio * 100.0,
                    r.dropped,
                    r.late
                )
            },
        },
        Check {
            name: "success_ratio".into(),
            threshold: format!(">= {:.2}%", t.min_success * 100.0),
            actual: format!("{:.2}%", r.success_ratio * 100.0),
            passed: success_ok,
            message: if success_ok {
                format!("{:.2}% of requests succeeded", r.success_ratio * 100.0)
            } else {
                format!(
                    "success ratio {:.2}% is below the threshold min_success {:.2}% ({} ok, {} failed, {} dropped; statuses: {}; errors: {})",
                    r.success_ratio * 100.0,
                    t.min_success * 100.0,
                    r.ok,
                    r.failed,
                    r.dropped,
                    kv(&r.status_counts),
                    kv(&r.error_counts)
                )
            },
        },
        Check {
            name: "p99_latency".into(),
            threshold: format!("<= {} ms", t.max_p99_ms),
            actual: format!("{p99:.1} ms"),
            passed: p99_ok,
            message: if p99_ok {
                format!("p99 latency {p99:.1} ms is within {} ms", t.max_p99_ms)
            } else {
                format!(
                    "p99 latency {p99:.1} ms is above the threshold max_p99_ms {} ms",
                    t.max_p99_ms
                )
            },
        },
    ]
}

fn kv(m: &std::collections::BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{load_report as report, THRESHOLDS as T};

    #[test]
    fn passes_and_fails_each_threshold() {
        assert!(evaluate(&T, 50.0, &report(49.9, 0.995, 300.0))
            .iter()
            .all(|c| c.passed));
        let c = evaluate(&T, 50.0, &report(40.0, 0.5, 2500.0));
        assert!(c.iter().all(|c| !c.passed));
        assert!(c[0].message.contains("min_rate_ratio"), "{}", c[0].message);
        assert!(c[1].message.contains("min_success"), "{}", c[1].message);
        assert!(c[2].message.contains("max_p99_ms"), "{}", c[2].message);
        let c = evaluate(&T, 50.0, &report(49.5, 0.97, 300.0));
        assert_eq!(
            c.iter().map(|c| c.passed).collect::<Vec<_>>(),
            [true, false, true]
        );
    }
}
