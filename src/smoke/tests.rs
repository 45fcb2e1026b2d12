//! The smoke stage's logic that needs no engine: capacity steps and budgets, and the gate's
//! verdict as the report carries it. [`gated`] and [`stopped`] make the outcomes of runs
//! that measured a given load or stopped before the gate, for the CLI's tests too.

use std::path::Path;

use super::*;
use crate::error::{exit_code, EXIT_FAILED};
use crate::report::Verbosity;
use crate::testkit;

/// The stack this repository ships (`recipes/stack.toml`), as `builder smoke` reads it.
pub(crate) fn shipped_stack() -> Stack {
    let images: stack::RecipeImages = [
        ("backend".to_string(), true),
        ("frontend".to_string(), true),
    ]
    .into();
    stack::parse(
        Path::new("recipes/stack.toml"),
        include_str!("../../recipes/stack.toml"),
        &images,
    )
    .unwrap()
}

fn times(run_id: &str) -> RunTimes<'_> {
    let started = std::time::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    RunTimes {
        run_id,
        started,
        finished: started + Duration::from_secs(40),
        elapsed: Duration::from_secs(40),
    }
}

fn nothing_under_test() -> artifacts::UnderTest {
    artifacts::UnderTest {
        artifacts: Vec::new(),
        images: Default::default(),
        source_commit: None,
    }
}

/// Run `run_id` of the shipped stack that measured `load`, gated as `builder smoke` gates,
/// its reports to be written under `dist`.
pub(crate) fn gated(dist: &Path, run_id: &str, load: LoadReport) -> SmokeOutcome {
    let stack = shipped_stack();
    let checks = gate::evaluate(&stack.thresholds, stack.load.rate, &load);
    let measured = Measured {
        deployment: Deployment {
            network: deploy::network_name(run_id),
            members: Vec::new(),
            load_balancer: "lb".into(),
            port: 40_000,
            stats_port: 40_001,
            baseline_network: None,
            api_port: None,
        },
        load,
        checks,
        restarts: Vec::new(),
        containers: Vec::new(),
        capacity: None,
        canary: None,
    };
    let report = build_report(
        &stack,
        &SmokeOptions::default(),
        nothing_under_test(),
        measured,
        &times(run_id),
    );
    SmokeOutcome {
        report,
        dir: dist.join("smoke").join(run_id),
        kept: false,
    }
}

/// Run `run_id` that stopped before the gate with `error`, its servers never healthy.
pub(crate) fn stopped(dist: &Path, run_id: &str, error: &str) -> SmokeOutcome {
    let stack = shipped_stack();
    let report = stopped_report(
        &stack,
        &SmokeOptions::default(),
        nothing_under_test(),
        Partial::default(),
        &anyhow::anyhow!("{error}"),
        Duration::from_secs(300),
        &times(run_id),
    );
    SmokeOutcome {
        report,
        dir: dist.join("smoke").join(run_id),
        kept: false,
    }
}

/// What the smoke stage writes is what promotion reads: a gate broken by the success ratio
/// and p99 latency, and a run that stopped before the gate, each written and signed by the
/// report writer, are verified by promotion (the verdict recomputed from the checks) and
/// refused with the gate's own words.
#[test]
fn promotion_refuses_a_written_failed_report_with_the_gates_reasons() {
    let p = testkit::Project::new();
    let bad = gated(
        p.dist(),
        "run-bad",
        testkit::load_report(49.9, 0.91, 2500.0),
    );
    let failed: Vec<&str> = bad
        .report
        .checks
        .iter()
        .flatten()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed, ["success_ratio", "p99_latency"]);
    assert!(!bad.report.passed);
    assert!(
        bad.report.reasons[0].contains("below the threshold min_success 98.00%")
            && bad.report.reasons[1].contains("above the threshold max_p99_ms 1000 ms"),
        "{:?}",
        bad.report.reasons
    );
    let down = stopped(p.dist(), "run-down", "frontend-1 never became healthy");
    assert!(!down.report.passed);
    assert_eq!(
        down.report.checks.as_ref().unwrap()[0].name,
        "deployment_ready"
    );

    for (o, reasons) in [
        (&bad, bad.report.reasons.join("; ")),
        (&down, "frontend-1 never became healthy".to_string()),
    ] {
        std::fs::create_dir_all(&o.dir).unwrap();
        report::write_all(&o.dir, &o.report, Some(&p.signer)).unwrap();
        let r = Reporter::capture(Verbosity::Verbose);
        let e =
            crate::promote::gate::passed_report(p.dist(), Some(&o.report.run_id), &p.signer, &r)
                .unwrap_err();
        assert_eq!(exit_code(&e), EXIT_FAILED, "{e:#}");
        assert_eq!(
            format!("{e:#}"),
            format!(
                "smoke run {} failed: {reasons}; fix it and run `builder smoke` again",
                o.report.run_id
            )
        );
        assert!(r.captured().is_empty(), "{:?}", r.captured());
    }
}

fn cap(start: f64, step: f64, max: f64) -> CapacityOptions {
    CapacityOptions {
        start,
        step,
        max,
        ..CapacityOptions::default()
    }
}

#[test]
fn capacity_steps_use_the_real_step() {
    assert_eq!(CapacityOptions::default().steps(), 16);
    assert_eq!(cap(0.1, 0.1, 0.3).steps(), 3);
    assert_eq!(cap(10.0, 0.5, 12.0).steps(), 5);
    assert_eq!(cap(10.0, 7.0, 12.0).steps(), 1);
    let c = cap(1.0, 0.5, 3.0);
    let rates: Vec<f64> = (0..c.steps()).map(|i| c.rate(i)).collect();
    assert_eq!(rates, [1.0, 1.5, 2.0, 2.5, 3.0]);
    // The budget counts those 5 steps (not 3, as with a step rounded up to 1).
    let per = c.step_duration + c.step_warmup + Duration::from_secs(5);
    assert_eq!(capacity_budget(Some(&c)), per * 5);
}

#[test]
fn capacity_searches_are_bounded_up_front() {
    assert!(CapacityOptions::default().validate().is_ok());
    let e = cap(1.0, 0.01, 400.0).validate().unwrap_err();
    assert_eq!(crate::error::exit_code(&e), 2);
    let msg = e.to_string();
    assert!(
        msg.contains("--capacity-step") && msg.contains("1000"),
        "{msg}"
    );
    assert!(cap(1.0, 0.1, 100.9).validate().is_ok());
    for bad in [
        cap(0.0, 1.0, 10.0),
        cap(1.0, 0.0, 10.0),
        cap(10.0, 1.0, 5.0),
        cap(1.0, f64::NAN, 10.0),
        cap(1.0, 1.0, f64::INFINITY),
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    let zero = CapacityOptions {
        step_duration: Duration::ZERO,
        ..CapacityOptions::default()
    };
    assert!(zero
        .validate()
        .unwrap_err()
        .to_string()
        .contains("--step-duration"));
    let long = CapacityOptions {
        step_duration: Duration::from_secs(3600),
        ..CapacityOptions::default()
    };
    assert!(long
        .validate()
        .unwrap_err()
        .to_string()
        .contains("--step-duration"));
    // Huge values saturate instead of overflowing.
    let huge = CapacityOptions {
        step_duration: Duration::MAX,
        ..cap(1.0, 1.0, 1000.0)
    };
    assert_eq!(capacity_budget(Some(&huge)), Duration::MAX);
}
