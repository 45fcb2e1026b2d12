//! `builder load`: constant-rate HTTP load against local URLs; arguments → [`crate::load`].

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::error::usage;
use crate::load::{self, LoadOptions, LoadReport, StoppedBy, Target, Tuning};
use crate::report::Reporter;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Target URLs, http:// only; append `@N` to give one a weight (default 1)
    #[arg(value_name = "URL", required = true)]
    pub urls: Vec<String>,

    /// Requests per second (open model: sent on schedule whatever the answers)
    #[arg(long, required_unless_present = "closed_loop")]
    pub rate: Option<f64>,

    /// Measured duration after the warm-up: 30s, 500ms, 2m (at most 1h)
    #[arg(long, default_value = "10s")]
    pub duration: String,

    /// Warm-up run before the measurement and left out of the totals
    #[arg(long, default_value = "0s")]
    pub warmup: String,

    /// Per-request timeout, from the moment it is sent
    #[arg(long, default_value = "2s")]
    pub timeout: String,

    /// Stop after this many requests (warm-up included)
    #[arg(long, value_name = "N")]
    pub max_requests: Option<u64>,

    /// Requests outstanding at most; a request due beyond it is dropped and counted
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_in_flight: usize,

    /// Host header to send instead of the URL's host
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,

    /// Allow targets that are not loopback addresses (only machines you may load)
    #[arg(long)]
    pub allow_remote: bool,

    /// Benchmark mode: N connections sending back to back (no rate; latency not corrected)
    #[arg(long, value_name = "N", conflicts_with = "rate")]
    pub closed_loop: Option<usize>,
}

fn target(arg: &str) -> anyhow::Result<Target> {
    if let Some((url, w)) = arg.rsplit_once('@') {
        if url.contains("://") && !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) {
            let weight = w
                .parse()
                .map_err(|_| usage(format!("invalid weight `{w}` in `{arg}`")))?;
            return Ok(Target {
                url: url.to_string(),
                weight,
            });
        }
    }
    Ok(Target {
        url: arg.to_string(),
        weight: 1,
    })
}

/// Parses a duration flag; the usage error names the flag.
fn flag_duration(flag: &str, text: &str) -> anyhow::Result<std::time::Duration> {
    load::parse_duration(text).map_err(|e| usage(format!("{flag}: {e}")))
}

pub(super) async fn run(args: LoadArgs, reporter: &Reporter) -> anyhow::Result<u8> {
    let opts = LoadOptions {
        targets: args
            .urls
            .iter()
            .map(|u| target(u))
            .collect::<anyhow::Result<_>>()?,
        rate: args.rate.unwrap_or(0.0),
        duration: flag_duration("--duration", &args.duration)?,
        warmup: flag_duration("--warmup", &args.warmup)?,
        timeout: flag_duration("--timeout", &args.timeout)?,
        max_requests: args.max_requests,
        max_in_flight: args.max_in_flight,
    };
    let tuning = Tuning {
        host: args.host,
        allow_remote: args.allow_remote,
        closed_loop: args.closed_loop,
        ..Tuning::default()
    };
    let prepared = load::prepare(opts, tuning).await?;
    let cancel = CancellationToken::new();
    let ctrl_c = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        })
    };
    let progress = reporter.progress("Loading", prepared.expected_requests());
    let report = prepared.run(cancel, Some(&progress)).await;
    ctrl_c.abort();
    progress.finish(format!(
        "{} sent, {} ok, {} failed",
        report.sent, report.ok, report.failed
    ));
    if reporter.is_json() {
        reporter.json(&report)?;
    } else {
        reporter.output(summary(&report));
    }
    Ok(crate::error::EXIT_OK)
}

/// A few lines a person reads at a glance.
pub(super) fn summary(r: &LoadReport) -> String {
    let p = &r.latency_ms;
    let kv = |m: &std::collections::BTreeMap<String, u64>| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let rate = if r.mode == "open" {
        format!("{:.2} req/s requested, ", r.requested_rate)
    } else {
        "closed loop (max throughput), ".to_string()
    };
    format!(
        "    requests  {} sent, {} ok, {} failed ({:.2}% ok), {} late, {} dropped{}\n\
         \x20       rate  {rate}{:.2} achieved, {:.2} ok/s over {:.1}s (stopped by {})\n\
         \x20    latency  p50 {:.2}ms  p90 {:.2}ms  p95 {:.2}ms  p99 {:.2}ms  p99.9 {:.2}ms  max {:.2}ms\n\
         \x20     status  {}\n\
         \x20     errors  {}",
        r.sent,
        r.ok,
        r.failed,
        r.success_ratio * 100.0,
        r.late,
        r.dropped,
        if r.aborted > 0 {
            format!(", {} aborted", r.aborted)
        } else {
            String::new()
        },
        r.achieved_rate,
        r.ok_rate,
        r.measured_s,
        match r.stopped_by {
            StoppedBy::Duration => "duration",
            StoppedBy::MaxRequests => "max requests",
            StoppedBy::Cancelled => "cancellation",
            StoppedBy::Stopped => "stop request",
        },
        p.p50,
        p.p90,
        p.p95,
        p.p99,
        p.p999,
        p.max,
        kv(&r.status_counts),
        kv(&r.error_counts),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_after_at() {
        assert_eq!(target("http://127.0.0.1:1/a@3").unwrap().weight, 3);
        let t = target("http://127.0.0.1:1/a").unwrap();
        assert_eq!((t.url.as_str(), t.weight), ("http://127.0.0.1:1/a", 1));
        assert_eq!(target("http://u@h/").unwrap().weight, 1);
    }
}
