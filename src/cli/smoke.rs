//! `builder smoke`: deploy the packaged images behind HAProxy, load them at a constant rate and
//! gate on the thresholds of `recipes/stack.toml`; arguments → [`crate::smoke`].

use clap::Args;

use super::Paths;
use crate::error::{EXIT_FAILED, EXIT_OK};
use crate::load::parse_duration;
use crate::report::Reporter;
use crate::smoke::stack::Overrides;
use crate::smoke::{self, CapacityOptions, SmokeOptions, SmokeOutcome};

#[derive(Debug, Args)]
pub struct SmokeArgs {
    #[command(flatten)]
    pub run: StackArgs,

    /// Replicas of the service behind the load balancer's default route
    #[arg(long, value_name = "N")]
    pub frontends: Option<u32>,

    /// Replicas of any service: SERVICE=N (repeatable)
    #[arg(long, value_name = "SERVICE=N")]
    pub replicas: Vec<String>,

    /// Lowest success ratio that passes (0-1)
    #[arg(long, value_name = "RATIO")]
    pub min_success: Option<f64>,

    /// Lowest achieved/requested rate ratio that passes (0-1)
    #[arg(long, value_name = "RATIO")]
    pub min_rate_ratio: Option<f64>,

    /// Highest p99 latency that passes, in milliseconds
    #[arg(long, value_name = "MS")]
    pub max_p99: Option<f64>,

    /// Leave the deployment running afterwards (remove it with `builder gc`)
    #[arg(long)]
    pub keep: bool,

    /// Where the stack runs: `containers` on a bridge network, or `swarm` services (default:
    /// the stack file's `target`, else containers)
    #[arg(long, value_name = "TARGET", value_parser = ["containers", "swarm"])]
    pub target: Option<String>,

    /// Registry (HOST:PORT) the images are pushed to for `--target swarm` (default: the
    /// stack file's `registry`)
    #[arg(long, value_name = "HOST:PORT")]
    pub registry: Option<String>,

    /// Step the rate up until a threshold breaks; report the highest rate that held
    #[arg(long)]
    pub find_capacity: bool,

    /// First rate of --find-capacity
    #[arg(long, default_value_t = 25.0, requires = "find_capacity")]
    pub capacity_start: f64,

    /// Rate increase per --find-capacity step
    #[arg(long, default_value_t = 25.0, requires = "find_capacity")]
    pub capacity_step: f64,

    /// Highest rate --find-capacity tries
    #[arg(long, default_value_t = 400.0, requires = "find_capacity")]
    pub capacity_max: f64,

    /// Measured duration of each --find-capacity step (after a 2 s warm-up)
    #[arg(long, default_value = "10s", requires = "find_capacity")]
    pub step_duration: String,

    /// Key that signs the report, so `builder promote` can trust it [default: as promote:
    /// $BUILDER_SIGNING_KEY, $BUILDER_SIGNING_KEY_FILE, `signing_key` in promote.toml, then
    /// the key pipeline/ci generated]
    #[arg(long, value_name = "PATH")]
    pub signing_key: Option<std::path::PathBuf>,
}

/// The stack and load settings `smoke`, `pipeline` and `ci` share.
#[derive(Debug, Args)]
pub struct StackArgs {
    /// Stack file [default: <recipes>/stack.toml]
    #[arg(long, value_name = "FILE")]
    pub stack: Option<std::path::PathBuf>,

    /// Requests per second, instead of the stack's `load.rate`
    #[arg(long)]
    pub rate: Option<f64>,

    /// Measured duration, instead of the stack's (e.g. 30s)
    #[arg(long)]
    pub duration: Option<String>,

    /// Warm-up before the measurement, instead of the stack's (e.g. 5s, 0s)
    #[arg(long)]
    pub warmup: Option<String>,

    /// Environment of a service: SERVICE:KEY=VALUE (repeatable), e.g. backend:FAILURE_RATE=0.2
    #[arg(long, value_name = "SERVICE:KEY=VALUE")]
    pub env: Vec<String>,

    /// Compare with the release environment ENV holds (side by side, then a blue-green
    /// switch), instead of the stack's `[canary]` baseline
    #[arg(long, value_name = "ENV", conflicts_with = "no_canary")]
    pub baseline: Option<String>,

    /// Test the candidate alone, whatever the stack's `[canary]` says
    #[arg(long)]
    pub no_canary: bool,

    /// Environment of a service in the candidate only: SERVICE:KEY=VALUE (repeatable)
    #[arg(long, value_name = "SERVICE:KEY=VALUE")]
    pub candidate_env: Vec<String>,

    /// Environment of a service in the baseline only: SERVICE:KEY=VALUE (repeatable)
    #[arg(long, value_name = "SERVICE:KEY=VALUE")]
    pub baseline_env: Vec<String>,
}

impl StackArgs {
    /// Smoke options with these overrides (replicas and thresholds left to the stack).
    pub fn options(self) -> anyhow::Result<SmokeOptions> {
        Ok(SmokeOptions {
            stack_file: self.stack,
            overrides: Overrides {
                rate: self.rate,
                duration: self
                    .duration
                    .as_deref()
                    .map(|d| flag_duration("--duration", d))
                    .transpose()?,
                warmup: self
                    .warmup
                    .as_deref()
                    .map(|d| flag_duration("--warmup", d))
                    .transpose()?,
                env: self.env,
                candidate_env: self.candidate_env,
                baseline_env: self.baseline_env,
                baseline: self.baseline,
                no_canary: self.no_canary,
                ..Overrides::default()
            },
            ..SmokeOptions::default()
        })
    }
}

/// Parses a duration flag; the usage error names the flag.
fn flag_duration(flag: &str, text: &str) -> anyhow::Result<std::time::Duration> {
    parse_duration(text).map_err(|e| crate::error::usage(format!("{flag}: {e}")))
}

fn options(args: SmokeArgs) -> anyhow::Result<SmokeOptions> {
    let capacity = if args.find_capacity {
        let c = CapacityOptions {
            start: args.capacity_start,
            step: args.capacity_step,
            max: args.capacity_max,
            step_duration: flag_duration("--step-duration", &args.step_duration)?,
            ..CapacityOptions::default()
        };
        // Same limits as the load generator: refused here, before anything is deployed.
        c.validate()?;
        Some(c)
    } else {
        None
    };
    let mut opts = args.run.options()?;
    opts.overrides.frontends = args.frontends;
    opts.overrides.replicas = args.replicas;
    opts.overrides.min_rate_ratio = args.min_rate_ratio;
    opts.overrides.min_success = args.min_success;
    opts.overrides.max_p99_ms = args.max_p99;
    opts.keep = args.keep;
    opts.target = args
        .target
        .as_deref()
        .and_then(crate::smoke::stack::DeployTarget::parse);
    opts.registry = args.registry;
    opts.capacity = capacity;
    opts.signing_key = args.signing_key;
    Ok(opts)
}

pub(super) async fn run(args: SmokeArgs, paths: &Paths, reporter: &Reporter) -> anyhow::Result<u8> {
    let opts = options(args)?;
    let cancel = crate::docker::cancel_on_signals();
    let outcome = smoke::run(paths, &opts, reporter, cancel).await?;
    finish(&outcome, reporter)
}

/// What a run that got as far as deploying ends with: the summary (or the report as JSON)
/// on stdout, then why it failed, if it did; the exit code.
fn finish(outcome: &SmokeOutcome, reporter: &Reporter) -> anyhow::Result<u8> {
    if reporter.is_json() {
        reporter.json(&outcome.report)?;
    } else {
        reporter.output(summary(outcome));
    }
    if outcome.report.passed {
        Ok(EXIT_OK)
    } else if let Some(why) = &outcome.report.error {
        // Stopped before the gate (e.g. never healthy): the reason, not a threshold.
        reporter.error(&crate::error::failed(why.clone()));
        Ok(EXIT_FAILED)
    } else {
        reporter.error(&crate::error::failed(format!(
            "smoke gate failed: {}",
            outcome.report.reasons.join("; ")
        )));
        Ok(EXIT_FAILED)
    }
}

fn summary(o: &SmokeOutcome) -> String {
    let r = &o.report;
    let mut s = format!(
        "smoke {} {}: {}\n",
        r.run_id,
        r.mode,
        if r.passed { "PASSED" } else { "FAILED" }
    );
    if let Some(results) = &r.results {
        s.push_str(&super::load::summary(results));
        s.push('\n');
    }
    for c in r.checks() {
        s.push_str(&format!(
            "  {} {:<14} {} (threshold {})\n",
            if c.passed { "ok  " } else { "FAIL" },
            c.name,
            c.actual,
            c.threshold
        ));
    }
    s.push_str(&canary_summary(r));
    if let Some(cap) = &r.capacity {
        s.push_str(&format!(
            "    capacity  highest rate that held: {} req/s\n",
            cap.highest_passing_rate
        ));
        for st in &cap.steps {
            s.push_str(&format!(
                "              {:>6} req/s: achieved {:.2}, success {:.2}%, p50 {:.0} ms, p99 {:.0} ms{}\n",
                st.rate,
                st.achieved_rate,
                st.success_ratio * 100.0,
                st.p50_ms,
                st.p99_ms,
                if st.passed { String::new() } else { format!("  BROKE: {}", st.broken.join("; ")) }
            ));
        }
    }
    if r.restarts.is_empty() {
        s.push_str("    restarts  none\n");
    } else {
        for x in &r.restarts {
            s.push_str(&format!(
                "    restart   {:+.1}s {} by {}: {}\n",
                x.t_s, x.server, x.by, x.reason
            ));
        }
    }
    s.push_str(&format!(
        "     reports  {}/{{report.json,report.html,junit.xml}}",
        o.dir.display()
    ));
    if let (true, Some(dep)) = (o.kept, &r.deployment) {
        s.push_str(&format!(
            "\n        kept  the deployment is still up: {} (HAProxy stats: {}); remove it with `builder gc`",
            dep.url(),
            dep.stats_url()
        ));
    }
    s
}

/// The canary's lines of the summary: the skip reason, or the baseline, the comparison and
/// the switch.
fn canary_summary(r: &crate::smoke::report::SmokeReport) -> String {
    let Some(c) = &r.canary else {
        return String::new();
    };
    let mut s = String::new();
    if let Some(why) = &c.skipped {
        s.push_str(&format!("      canary  {why}\n"));
        return s;
    }
    let images: Vec<String> = c
        .baseline_images
        .iter()
        .map(|b| format!("{} {}", b.name, b.version))
        .collect();
    s.push_str(&format!(
        "      canary  baseline `{}` ({}), candidate {}% of the load\n",
        c.baseline_env,
        images.join(", "),
        c.candidate_weight
    ));
    if let Some(cmp) = &c.comparison {
        s.push_str(&format!(
            "              p50 {:+.1}%, p99 {:+.1}%, errors {:.2}% → {:.2}%{}\n",
            cmp.p50_change * 100.0,
            cmp.p99_change * 100.0,
            cmp.errors.baseline_rate * 100.0,
            cmp.errors.candidate_rate * 100.0,
            cmp.latency
                .as_ref()
                .map(|l| format!(", Mann-Whitney U {:.0} p {:.3}", l.u, l.p_greater))
                .unwrap_or_default()
        ));
    }
    if let Some(sw) = &c.switch {
        let steps: Vec<String> = sw
            .steps
            .iter()
            .map(|st| {
                format!(
                    "{}{} at {:.1}s",
                    st.candidate_weight,
                    if st.drained { "% drained" } else { "%" },
                    st.t_s
                )
            })
            .collect();
        s.push_str(&format!(
            "      switch  {}; {} failed by the switch\n",
            steps.join(", "),
            sw.failures
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Level, Verbosity};
    use crate::smoke::tests::{gated, stopped};
    use crate::testkit::load_report;

    /// `finish` with a capturing reporter: the exit code, the one result on stdout, and the
    /// error lines.
    fn finished(o: &SmokeOutcome) -> (u8, String, Vec<String>) {
        let r = Reporter::capture(Verbosity::Normal);
        let code = finish(o, &r).unwrap();
        let out = r.captured_output();
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(r.captured_at(Level::Warning).is_empty());
        (code, out[0].clone(), r.captured_at(Level::Error))
    }

    #[test]
    fn a_broken_gate_exits_1_listing_every_check_and_saying_why() {
        let dist = std::path::Path::new("dist");
        let o = gated(dist, "run-bad", load_report(49.9, 0.91, 2500.0));
        let (code, out, errors) = finished(&o);
        assert_eq!(code, EXIT_FAILED);
        assert!(out.starts_with("smoke run-bad gate: FAILED\n"), "{out}");
        for line in [
            "  ok   achieved_rate  49.90 req/s (99.8%) (threshold >= 98.0% of 50 req/s (49.00 req/s))",
            "  FAIL success_ratio  91.00% (threshold >= 98.00%)",
            "  FAIL p99_latency    2500.0 ms (threshold <= 1000 ms)",
            "    restarts  none",
            "     reports  dist/smoke/run-bad/{report.json,report.html,junit.xml}",
        ] {
            assert!(out.lines().any(|l| l == line), "wants `{line}` in\n{out}");
        }
        assert_eq!(
            errors,
            [format!(
                "error: smoke gate failed: {}",
                o.report.reasons.join("; ")
            )]
        );
        assert!(errors[0].contains("min_success") && errors[0].contains("max_p99_ms"));
    }

    #[test]
    fn a_run_stopped_before_the_gate_exits_1_with_its_reason_and_a_passed_one_0() {
        let dist = std::path::Path::new("dist");
        let o = stopped(dist, "run-down", "frontend-1 never became healthy");
        let (code, out, errors) = finished(&o);
        assert_eq!(code, EXIT_FAILED);
        assert!(
            out.lines()
                .any(|l| l.starts_with("  FAIL deployment_ready not started")),
            "{out}"
        );
        assert_eq!(errors, ["error: frontend-1 never became healthy"]);

        let o = gated(dist, "run-ok", load_report(49.9, 0.995, 300.0));
        let (code, out, errors) = finished(&o);
        assert_eq!(code, EXIT_OK);
        assert!(out.starts_with("smoke run-ok gate: PASSED\n"), "{out}");
        assert!(!out.contains("FAIL"), "{out}");
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn duration_flags_are_named() {
        let e = flag_duration("--step-duration", "500h").unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().starts_with("--step-duration: "), "{e}");
        assert!(e.to_string().contains("too long"), "{e}");
    }

    fn sample(group: &str, latency_ms: f64, ok: bool) -> crate::load::Sample {
        crate::load::Sample {
            second: 5,
            due_s: 5.0,
            group: group.into(),
            latency_ms,
            ok,
            status: Some(if ok { 200 } else { 500 }),
            error: None,
            warmup: false,
        }
    }

    #[test]
    fn the_summary_says_what_the_canary_did() {
        use crate::smoke::canary::{self, switch, CanaryReport};
        let dist = std::path::Path::new("dist");
        let mut o = gated(dist, "run-c", load_report(49.9, 0.995, 300.0));
        o.report.canary = Some(CanaryReport::skipped(
            "staging",
            "no comparison: environment `staging` has no repository yet".into(),
        ));
        let (_, out, _) = finished(&o);
        assert!(
            out.lines()
                .any(|l| l
                    == "      canary  no comparison: environment `staging` has no repository yet"),
            "{out}"
        );
        // Compared and switched: the statistics and the steps with their times.
        let base: Vec<_> = (0..300)
            .map(|i| sample("baseline", 100.0 + (i % 7) as f64, true))
            .collect();
        let cand: Vec<_> = (0..300)
            .map(|i| sample("candidate", 150.0 + (i % 7) as f64, true))
            .collect();
        let spec = crate::smoke::stack::CanarySpec::default();
        let cmp = crate::smoke::compare::compare(&canary::tolerances(&spec), &base, &cand);
        let mut c = CanaryReport::skipped("dev", String::new());
        c.skipped = None;
        c.candidate_weight = 50;
        c.comparison = Some(cmp);
        let mut sw = switch::SwitchReport {
            completed: true,
            ..Default::default()
        };
        for (i, w) in [10, 100].into_iter().enumerate() {
            sw.steps.push(switch::SwitchStep {
                candidate_weight: w,
                drained: i == 1,
                t_s: 30.0 + 5.0 * i as f64,
                requests: Default::default(),
                switch_failures: 0,
            });
        }
        c.switch = Some(sw);
        o.report.canary = Some(c);
        let (_, out, _) = finished(&o);
        assert!(
            out.contains("      canary  baseline `dev` (), candidate 50% of the load\n"),
            "{out}"
        );
        assert!(out.contains("p50 +4"), "{out}");
        assert!(out.contains("Mann-Whitney U"), "{out}");
        assert!(
            out.contains(
                "      switch  10% at 30.0s, 100% drained at 35.0s; 0 failed by the switch\n"
            ),
            "{out}"
        );
    }
}
