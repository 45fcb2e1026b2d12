//! The blue-green switch under load: the candidate's weight stepped through
//! `canary.switch_steps` on every service's outer backend (`set weight`), each step held
//! `step_duration`, then the baseline drained (weight 0, `state drain`) and held one more
//! step. Afterwards [`account`] counts, from the load generator's samples, the requests per
//! variant per step and the ones that failed *because of the switch*: no answer from a
//! service (a transport error or timeout) or HAProxy's own 502/503/504, as opposed to the
//! services' own answers such as the backend's injected 500s. HAProxy's per-server counters
//! over the same time (`show stat`: `hrsp_5xx`, `eresp`, `econ`, `wretr`, `wredis`) are
//! reported beside them.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use super::Waits;
use crate::load::Sample;
use crate::report::Reporter;
use crate::smoke::deploy::Variant;
use crate::smoke::gate::Check;
use crate::smoke::haproxy::runtime::{RuntimeApi, ServerCounters, ServerState};
use crate::smoke::stack::CanarySpec;

/// One step of the switch.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SwitchStep {
    /// The candidate's share from this step on, in percent.
    pub candidate_weight: u32,
    /// The baseline is drained (the last step).
    pub drained: bool,
    /// When the weights were written, in seconds since the load started.
    pub t_s: f64,
    /// Requests due during the step, by variant (`(none)`: no answer).
    pub requests: BTreeMap<String, u64>,
    /// Requests of the step that failed because of the switch.
    pub switch_failures: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct SwitchReport {
    /// Every step was written and held.
    pub completed: bool,
    /// Why it did not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub steps: Vec<SwitchStep>,
    /// From the first step to the end of the load, in seconds since the load started.
    pub started_s: f64,
    pub ended_s: f64,
    /// Requests in the switch window that failed without a service's answer.
    pub failures: u64,
    /// Those failures by kind (`timeout`, `HTTP 503`, ...).
    pub failure_kinds: BTreeMap<String, u64>,
    /// The services' own 5xx answers in the window (e.g. the backend's injected failures).
    pub service_5xx: u64,
    /// Requests in the window, by variant.
    pub requests: BTreeMap<String, u64>,
    /// HAProxy's counters of the outer servers over the switch (their growth; weight and
    /// status at the end: `0`, `DRAIN` for the baseline).
    pub haproxy: Vec<ServerCounters>,
}

impl SwitchReport {
    pub(crate) fn failed(error: String) -> SwitchReport {
        SwitchReport {
            error: Some(error),
            ..SwitchReport::default()
        }
    }
}

/// Writes `candidate`'s weight and the baseline's complement on every backend.
async fn set_weights(api: &RuntimeApi, backends: &[String], candidate: u32) -> Result<()> {
    for be in backends {
        api.set_weight(be, Variant::Candidate.as_str(), candidate)
            .await?;
        api.set_weight(be, Variant::Baseline.as_str(), 100 - candidate.min(100))
            .await?;
    }
    Ok(())
}

/// Runs the steps (bounded: at most `MAX_SWITCH_STEPS` + 1, each held `step_duration`).
pub(crate) async fn run(
    api: &RuntimeApi,
    backends: &[String],
    spec: &CanarySpec,
    t0: Instant,
    reporter: &Reporter,
    waits: Waits<'_>,
) -> Result<SwitchReport> {
    let before = api.show_stat().await?;
    let mut report = SwitchReport {
        started_s: t0.elapsed().as_secs_f64(),
        ..SwitchReport::default()
    };
    let mut at = Instant::now();
    for &w in spec
        .switch_steps
        .iter()
        .take(crate::smoke::stack::MAX_SWITCH_STEPS)
    {
        set_weights(api, backends, w).await?;
        reporter.status(
            "Switching",
            format!("candidate {w}%, baseline {}%", 100 - w.min(100)),
        );
        report.steps.push(step(w, false, t0));
        at += spec.step_duration;
        waits.until(at).await?;
    }
    set_weights(api, backends, 100).await?;
    for be in backends {
        api.set_state(be, Variant::Baseline.as_str(), ServerState::Drain)
            .await?;
    }
    reporter.status(
        "Switching",
        "baseline drained: every request on the candidate",
    );
    report.steps.push(step(100, true, t0));
    at += spec.step_duration;
    waits.until_or_done(at).await?;
    let after = api.show_stat().await?;
    report.haproxy = deltas(backends, &before, &after);
    report.completed = true;
    Ok(report)
}

fn step(w: u32, drained: bool, t0: Instant) -> SwitchStep {
    SwitchStep {
        candidate_weight: w,
        drained,
        t_s: t0.elapsed().as_secs_f64(),
        requests: BTreeMap::new(),
        switch_failures: 0,
    }
}

/// The outer servers' counters after minus before.
fn deltas(
    backends: &[String],
    before: &[ServerCounters],
    after: &[ServerCounters],
) -> Vec<ServerCounters> {
    after
        .iter()
        .filter(|a| backends.contains(&a.backend))
        .filter(|a| Variant::ALL.iter().any(|v| v.as_str() == a.server))
        .map(|a| {
            let b = before
                .iter()
                .find(|b| b.backend == a.backend && b.server == a.server)
                .cloned()
                .unwrap_or_default();
            a.since(&b)
        })
        .collect()
}

/// Why a sample failed because of the switch (no service answered), if it did: an error
/// without an answer, or HAProxy's own 502/503/504.
pub(crate) fn switch_failure(s: &Sample) -> Option<String> {
    if s.ok {
        return None;
    }
    match (s.status, &s.error) {
        (Some(code @ (502..=504)), _) => Some(format!("HTTP {code}")),
        (None, Some(e)) => Some(e.clone()),
        (None, None) => Some("no answer".into()),
        _ => None,
    }
}

/// Fills in the requests per step and the switch's failures from the samples of the whole
/// run; `end_s`: when the load ended, in seconds since it started.
pub(crate) fn account(r: &mut SwitchReport, samples: &[Sample], end_s: f64) {
    r.ended_s = end_s;
    let starts: Vec<f64> = r.steps.iter().map(|s| s.t_s).collect();
    let window = |s: &&Sample| s.due_s >= r.started_s && s.due_s < end_s;
    let mut failures = 0;
    let mut kinds = BTreeMap::new();
    let mut service_5xx = 0;
    let mut requests = BTreeMap::new();
    for s in samples.iter().filter(window) {
        *requests.entry(s.group.clone()).or_insert(0) += 1;
        let failure = switch_failure(s);
        if s.status.is_some_and(|c| (500..600).contains(&c)) && failure.is_none() {
            service_5xx += 1;
        }
        // The step the request was due in: the last that started before it.
        let i = starts.iter().rposition(|t| *t <= s.due_s);
        if let Some(step) = i.and_then(|i| r.steps.get_mut(i)) {
            *step.requests.entry(s.group.clone()).or_insert(0) += 1;
            if failure.is_some() {
                step.switch_failures += 1;
            }
        }
        if let Some(k) = failure {
            failures += 1;
            *kinds.entry(k).or_insert(0) += 1;
        }
    }
    r.failures = failures;
    r.failure_kinds = kinds;
    r.service_5xx = service_5xx;
    r.requests = requests;
}

/// The gate's `switch_failures` check.
pub(crate) fn check(r: &SwitchReport, max: u64) -> Check {
    let haproxy_errors: u64 = r.haproxy.iter().map(|d| d.eresp + d.econ).sum();
    let passed = r.completed && r.failures <= max;
    let kinds = if r.failure_kinds.is_empty() {
        "none".to_string()
    } else {
        r.failure_kinds
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Check {
        name: "switch_failures".into(),
        threshold: format!("<= {max} requests failed by the switch"),
        actual: if r.completed {
            format!("{} ({kinds}); HAProxy eresp+econ {haproxy_errors}", r.failures)
        } else {
            "switch not completed".into()
        },
        passed,
        message: match (&r.error, passed) {
            (Some(e), _) => format!("the blue-green switch did not complete: {e}"),
            (None, true) => format!(
                "the blue-green switch took {} steps; {} requests failed without a service's answer ({} service 5xx answers, not counted)",
                r.steps.len(),
                r.failures,
                r.service_5xx
            ),
            (None, false) => format!(
                "{} requests failed because of the blue-green switch ({kinds}), more than canary.max_switch_failures {max}; HAProxy counted eresp+econ {haproxy_errors} on the switched servers",
                r.failures
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(
        due_s: f64,
        group: &str,
        ok: bool,
        status: Option<u16>,
        error: Option<&str>,
    ) -> Sample {
        Sample {
            second: due_s as u32,
            due_s,
            group: group.into(),
            latency_ms: 100.0,
            ok,
            status,
            error: error.map(str::to_string),
            warmup: false,
        }
    }

    #[test]
    fn counts_only_failures_without_a_service_answer() {
        let mut r = SwitchReport {
            completed: true,
            started_s: 10.0,
            steps: vec![
                SwitchStep {
                    candidate_weight: 50,
                    drained: false,
                    t_s: 10.0,
                    requests: BTreeMap::new(),
                    switch_failures: 0,
                },
                SwitchStep {
                    candidate_weight: 100,
                    drained: true,
                    t_s: 15.0,
                    requests: BTreeMap::new(),
                    switch_failures: 0,
                },
            ],
            ..SwitchReport::default()
        };
        let samples = [
            sample(9.0, "baseline", false, None, Some("timeout")), // before the switch
            sample(10.5, "candidate", true, Some(200), None),
            sample(11.0, "baseline", false, Some(500), None), // the backend's own failure
            sample(12.0, "baseline", false, Some(503), None),
            sample(16.0, "(none)", false, None, Some("timeout")),
            sample(16.5, "candidate", true, Some(200), None),
        ];
        account(&mut r, &samples, 20.0);
        assert_eq!(r.failures, 2);
        assert_eq!(r.service_5xx, 1);
        assert_eq!(
            r.failure_kinds,
            BTreeMap::from([("HTTP 503".to_string(), 1), ("timeout".to_string(), 1)])
        );
        assert_eq!(r.steps[0].switch_failures, 1);
        assert_eq!(r.steps[1].switch_failures, 1);
        assert_eq!(r.steps[0].requests["baseline"], 2);
        assert_eq!(r.steps[1].requests["candidate"], 1);
        let c = check(&r, 0);
        assert!(
            !c.passed && c.message.contains("max_switch_failures 0"),
            "{c:?}"
        );
        assert!(check(&r, 2).passed);
        let c = check(&SwitchReport::failed("HAProxy refused `x`".into()), 0);
        assert!(!c.passed && c.message.contains("did not complete"), "{c:?}");
    }
}
