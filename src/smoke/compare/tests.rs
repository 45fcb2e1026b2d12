//! The verdict on made-up samples, and its error rates measured by simulation: a seeded
//! xorshift generator (`testkit::Rng`), so every run sees the same numbers (`--nocapture` prints them).
#![allow(clippy::print_stderr)]

use super::*;
use crate::testkit::Rng;

/// One variant's `n` measured requests at 25 req/s (50 req/s split 50/50): latency
/// log-normal with median `median_ms` (σ 0.25, a p99 about 1.8× the median) plus `shift_ms`,
/// and a share `fail_rate` of 500s.
fn variant(rng: &mut Rng, n: usize, median_ms: f64, shift_ms: f64, fail_rate: f64) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            let ok = rng.uniform() >= fail_rate;
            Sample {
                second: (i / 25) as u32,
                due_s: i as f64 / 25.0,
                group: "v".into(),
                latency_ms: median_ms * (0.25 * rng.normal()).exp() + shift_ms,
                ok,
                status: Some(if ok { 200 } else { 500 }),
                error: None,
                warmup: false,
            }
        })
        .collect()
}

/// Requests per variant in a 30 s run at 50 req/s split 50/50.
const PER_VARIANT: usize = 750;

/// Runs `runs` comparisons and counts how often each check failed:
/// (latency, errors, any).
fn simulate(
    seed: u64,
    runs: usize,
    candidate: (f64, f64),
    candidate_fail_rate: f64,
) -> (usize, usize, usize) {
    let t = Tolerances::default();
    let mut rng = Rng(seed);
    let (mut latency, mut errors, mut any) = (0, 0, 0);
    for _ in 0..runs {
        let b = variant(&mut rng, PER_VARIANT, 100.0, 0.0, 0.02);
        let c = variant(
            &mut rng,
            PER_VARIANT,
            candidate.0,
            candidate.1,
            candidate_fail_rate,
        );
        let cmp = compare(&t, &b, &c);
        let failed = |name: &str| cmp.checks.iter().any(|c| c.name == name && !c.passed);
        latency += usize::from(failed("canary_latency"));
        errors += usize::from(failed("canary_errors"));
        any += usize::from(!cmp.passed());
    }
    (latency, errors, any)
}

#[test]
fn same_distribution_rarely_fails() {
    // Same image on both sides, 2% random 500s: two tests at alpha 0.01, each gated by an
    // effect size, so at most about 2% false alarms (Fisher's test is conservative).
    let runs = 1000;
    let (latency, errors, any) = simulate(0x5eed_0001, runs, (100.0, 0.0), 0.02);
    eprintln!(
        "same distribution, {runs} runs of {PER_VARIANT} per variant: {any} false alarms \
         (latency {latency}, errors {errors})"
    );
    assert!(any <= runs / 50, "{any} false alarms in {runs}");
    // The gate is not asleep either: chance alone fails a few runs of a 1% test.
    assert!(
        any >= 1,
        "no false alarm at all in {runs} runs is implausible"
    );
}

#[test]
fn a_50ms_slower_candidate_is_caught() {
    let runs = 200;
    let (latency, errors, any) = simulate(0x5eed_0002, runs, (100.0, 50.0), 0.02);
    eprintln!(
        "+50 ms on ~100 ms, {runs} runs of {PER_VARIANT} per variant: latency check failed \
         {latency} times (errors {errors}, any {any})"
    );
    assert_eq!(latency, runs);
}

#[test]
fn a_candidate_failing_6_percent_instead_of_2_is_caught() {
    let runs = 200;
    let (latency, errors, any) = simulate(0x5eed_0003, runs, (100.0, 0.0), 0.06);
    eprintln!(
        "2% -> 6% failures, {runs} runs of {PER_VARIANT} per variant: errors check failed \
         {errors} times (latency {latency}, any {any})"
    );
    // The power of Fisher's test at alpha 0.01 for 2% vs 6% with 750 per side is about 0.9.
    assert!(errors * 100 >= runs * 85, "detected {errors} of {runs}");
    assert!(latency <= runs / 20, "latency check failed {latency} times");
}

#[test]
fn messages_say_the_numbers() {
    let mut rng = Rng(7);
    let b = variant(&mut rng, PER_VARIANT, 100.0, 0.0, 0.02);
    let c = variant(&mut rng, PER_VARIANT, 200.0, 0.0, 0.10);
    let cmp = compare(&Tolerances::default(), &b, &c);
    let names: Vec<_> = cmp
        .checks
        .iter()
        .map(|c| (c.name.as_str(), c.passed))
        .collect();
    assert_eq!(
        names,
        [
            ("canary_samples", true),
            ("canary_latency", false),
            ("canary_errors", false)
        ]
    );
    let lat = &cmp.checks[1].message;
    assert!(lat.starts_with("candidate is slower: p50 "), "{lat}");
    for part in ["vs baseline", "p99", "Mann-Whitney U p=", "< 0.01", "+10"] {
        assert!(lat.contains(part), "{part}: {lat}");
    }
    assert!(
        cmp.p50_change > 0.8 && cmp.p50_change < 1.2,
        "{}",
        cmp.p50_change
    );
    let mw = cmp.latency.unwrap();
    assert!(mw.p_greater < 1e-12 && mw.effect > 0.95, "{mw:?}");
    assert!((mw.hodges_lehmann_ms - 100.0).abs() < 10.0, "{mw:?}");
    let err = &cmp.checks[2].message;
    assert!(
        err.starts_with("candidate fails more: candidate fails "),
        "{err}"
    );
    for part in [" of 750) vs baseline ", "points (95% CI", "Fisher exact p="] {
        assert!(err.contains(part), "{part}: {err}");
    }
    // The report's percentiles are the group reports' (same numbers as in the message).
    assert!(lat.contains(&ms(cmp.candidate.latency_ms.p99)), "{lat}");
    assert_eq!(cmp.baseline.ok + cmp.baseline.failed, 750);

    // Passing messages say why they pass.
    let cmp = compare(&Tolerances::default(), &b, &b);
    assert!(cmp.passed(), "{:#?}", cmp.checks);
    assert!(
        cmp.checks[1].message.contains("not significantly slower"),
        "{}",
        cmp.checks[1].message
    );
}

#[test]
fn significant_but_small_differences_pass() {
    // 3% slower and 0.5 points more failures on 20,000 requests each: significant, but
    // within the tolerances.
    let mut rng = Rng(11);
    let b = variant(&mut rng, 20_000, 100.0, 0.0, 0.02);
    let c = variant(&mut rng, 20_000, 103.0, 0.0, 0.025);
    let cmp = compare(&Tolerances::default(), &b, &c);
    assert!(cmp.latency.unwrap().p_greater < 0.01, "{:?}", cmp.latency);
    assert!(cmp.passed(), "{:#?}", cmp.checks);
    assert!(
        cmp.checks[1].message.contains("within the tolerance"),
        "{}",
        cmp.checks[1].message
    );
    // A stricter tolerance turns the same numbers into a failure.
    let strict = Tolerances {
        max_latency_increase: 0.01,
        ..Tolerances::default()
    };
    assert!(!compare(&strict, &b, &c).checks[1].passed);
}

#[test]
fn too_few_requests_fail_and_warmup_is_left_out() {
    let mut rng = Rng(3);
    let mut b = variant(&mut rng, 300, 100.0, 0.0, 0.0);
    let c = variant(&mut rng, 150, 100.0, 0.0, 0.0);
    // Warm-up requests count nowhere but the timeline, however slow.
    for s in b.iter_mut().take(120) {
        s.warmup = true;
        s.latency_ms = 5000.0;
    }
    let cmp = compare(&Tolerances::default(), &b, &c);
    let samples = &cmp.checks[0];
    assert!(!samples.passed && !cmp.passed());
    assert_eq!(samples.actual, "baseline 180, candidate 150");
    assert!(
        samples.message.contains("min_requests is 200"),
        "{}",
        samples.message
    );
    assert_eq!(cmp.latency.unwrap().n_baseline, 180);
    assert!(cmp.baseline.latency_ms.max < 1000.0);
    assert!(cmp.baseline.timeline[0].warmup);

    // Nothing at all from one side: every check fails with a reason, nothing panics.
    let cmp = compare(&Tolerances::default(), &b, &[]);
    assert!(cmp.latency.is_none() && !cmp.passed());
    assert_eq!(
        cmp.checks[1].message,
        "no latency to compare: the candidate has no measured request"
    );
}

#[test]
fn a_sub_millisecond_rise_of_a_fast_service_is_not_a_regression() {
    // What CI saw on a loaded host: a 4.4 ms p50 became 4.9 ms (+11%, Mann-Whitney
    // significant on 5,000 requests), a shift of half a millisecond.
    let mut rng = Rng(26);
    let b = variant(&mut rng, 5_000, 4.4, 0.0, 0.0);
    let c = variant(&mut rng, 5_000, 4.9, 0.0, 0.0);
    let cmp = compare(&Tolerances::default(), &b, &c);
    let latency = &cmp.checks[1];
    assert!(cmp.latency.unwrap().p_greater < 0.01, "{:?}", cmp.latency);
    assert!(cmp.p50_change > 0.10, "{}", cmp.p50_change);
    assert!(latency.passed, "{}", latency.message);
    assert!(
        latency.message.contains("min_latency_increase_ms 2.0 ms"),
        "{}",
        latency.message
    );
    // Without the absolute floor, the same numbers fail; a rise of 5 ms fails with it.
    let no_floor = Tolerances {
        min_latency_increase_ms: 0.0,
        ..Tolerances::default()
    };
    assert!(!compare(&no_floor, &b, &c).checks[1].passed);
    let c = variant(&mut rng, 5_000, 9.4, 0.0, 0.0);
    assert!(!compare(&Tolerances::default(), &b, &c).checks[1].passed);
}
