//! `cargo bench --bench canary`: the canary smoke's false-alarm rate on the real stack, and
//! its wall time against today's single-variant smoke on the same machine.
//!
//! The harness of `tests/canary.rs` (`tests/common/canary.rs`) builds and packages the
//! sample project and promotes it into `dev`, so `builder smoke --baseline dev` compares a
//! release with itself: the same images as candidate and baseline, the backend's injected 2%
//! failures as the only difference between them, noise. Each run uses the stack's own load
//! settings (50 req/s, 5 s warm-up, 30 s measured, then the 10 → 50 → 100 % switch). Any
//! failed check of such a run is a false alarm; the bench prints each run's failed checks,
//! the latency and error p-values, p50/p99 change and wall time, then alarms/runs.
//! Single-variant smokes (`--no-canary`, the same settings) run first for the comparison.
//!
//! Env: `CANARY_BENCH_RUNS` (default 20) canary runs, `CANARY_BENCH_SINGLE` (default 3)
//! single-variant runs, `CANARY_BENCH_BUDGET` (seconds, default 3600): no run starts after
//! the budget is spent (the report then says how many ran).
#![allow(clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::canary::{failed_checks, project, smoke, Run};
use serde_json::Value;

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: expected a whole number")),
        Err(_) => default,
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn range(v: &[f64]) -> String {
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(0.0, f64::max);
    format!("mean {:.1} s (min {min:.1}, max {max:.1})", mean(v))
}

/// One line per run: code, wall time, failed checks, the comparison's statistics.
fn line(i: u64, run: &Run) -> String {
    let c = &run.report["canary"]["comparison"];
    let num = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.4}"));
    format!(
        "run {i:>2}: exit {} {:>5.1} s  latency p={} p50 {} p99 {}  errors p={} ({} vs {})  failed: {:?}",
        run.code,
        run.seconds,
        num(&c["latency"]["p_greater"]),
        num(&c["p50_change"]),
        num(&c["p99_change"]),
        num(&c["errors"]["p_greater"]),
        num(&c["errors"]["candidate_rate"]),
        num(&c["errors"]["baseline_rate"]),
        failed_checks(&run.report),
    )
}

fn main() {
    let runs = env_num("CANARY_BENCH_RUNS", 20);
    let singles = env_num("CANARY_BENCH_SINGLE", 3);
    let budget = env_num("CANARY_BENCH_BUDGET", 3600) as f64;
    let clock = Instant::now();
    let setup = Instant::now();
    project();
    println!(
        "setup (build, package, smoke, promote into dev): {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let mut single = Vec::new();
    for i in 1..=singles {
        if clock.elapsed().as_secs_f64() > budget {
            break;
        }
        let run = smoke(&["--no-canary"]);
        println!("single {i}: exit {} {:.1} s", run.code, run.seconds);
        single.push(run.seconds);
    }

    let mut walls = Vec::new();
    let mut alarms: Vec<(u64, Vec<String>)> = Vec::new();
    for i in 1..=runs {
        if clock.elapsed().as_secs_f64() > budget {
            println!(
                "budget of {budget:.0} s spent: stopped after {} runs",
                i - 1
            );
            break;
        }
        let run = smoke(&["--baseline", "dev"]);
        println!("{}", line(i, &run));
        let failed = failed_checks(&run.report);
        assert_eq!(
            run.code != 0,
            !failed.is_empty() || !run.report["error"].is_null(),
            "exit code and checks disagree: {}",
            run.stderr
        );
        if run.code != 0 {
            let why = if failed.is_empty() {
                vec![format!("error: {}", run.report["error"])]
            } else {
                failed
            };
            alarms.push((i, why));
        }
        walls.push(run.seconds);
    }

    println!();
    println!(
        "false alarms: {} / {} runs (goal <= 1 in 20)",
        alarms.len(),
        walls.len()
    );
    for (i, why) in &alarms {
        println!("  run {i}: {}", why.join(", "));
    }
    println!("canary smoke wall time: {}", range(&walls));
    println!("single-variant smoke wall time: {}", range(&single));
    if !single.is_empty() && !walls.is_empty() {
        println!("canary / single: {:.2}x", mean(&walls) / mean(&single));
    }
}
