//! Open-model HTTP load generator (constant arrival rate, like wrk2 and vegeta).
//!
//! Request `i` is due at `t0 + i / rate` and is sent then, whether or not earlier requests have
//! returned; its latency is measured **from its due time**, so a stalled server cannot hide its
//! latency by slowing the generator down (coordinated omission corrected). The only brake is
//! `max_in_flight`: a request due while that many are outstanding is not sent and counts as
//! `dropped`. A request sent more than [`Tuning::late_tolerance`] after its due time (the
//! generator itself fell behind) is sent anyway and counts as `late`.
//!
//! Owns: scheduling, the HTTP/1.1 keep-alive client (`client`), statistics (`stats`), results
//! grouped by a response header and the live tap of samples (`group`), target
//! parsing and the loopback safety rule (`target`), and a small HTTP server for tests and
//! benchmarks (`testserver`). It never prints: progress goes through [`crate::report::Progress`].
//!
//! Definitions used in [`LoadReport`]:
//! - The run lasts `warmup + duration`. Requests due in the first `warmup` are sent but left out
//!   of every total (they appear in the timeline, marked `warmup`). `max_requests` bounds the
//!   number of requests scheduled (sent or dropped), warm-up included.
//! - *measured window*: from the end of the warm-up to the moment the last measured request was
//!   sent (or dropped), plus one arrival interval (`1/rate`). When the generator keeps up this is
//!   `duration`; when it lags, the window stretches and the achieved rate drops accordingly.
//! - `achieved_rate` = measured requests actually sent / measured window (requests per second).
//!   Dropped requests are not sent and lower it. `ok_rate` = successes / measured window.
//! - success = a complete 2xx/3xx response within `timeout` of the moment the request was sent;
//!   everything else is a failure. `success_ratio` = ok / (ok + failed + dropped).
//! - `latency_ms` covers every measured request that finished (ok or failed, timeouts included).
//!   It includes the dispatcher's wake-up delay after the due time, up to about 1 ms (tokio's
//!   timer resolution): the request really was sent that late.
//! - At the end, requests still in flight get at most `timeout` to finish, then count as
//!   timeouts. On cancellation sending stops at once, in-flight requests are abandoned and
//!   counted as `aborted` (neither ok nor failed), and the partial report is returned.
//! - [`Tuning::stop`] ends the schedule early *as if the duration had been reached*: nothing
//!   new is sent, requests in flight finish (or time out) and count as usual, the measured
//!   window ends at the stop, and `stopped_by` is `stopped`.
//! - With [`Tuning::group_header`], `groups` holds the measured requests split by that
//!   response header's value (see [`group`] for the per-group definitions and bounds); with
//!   [`Tuning::tap`], every finished request is also handed over as a [`Sample`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::usage;

mod client;
mod engine;
pub(crate) mod group;
mod stats;

pub use group::{
    bucket_bounds_ms, group_report, group_reports, Bucket, GroupReport, GroupSecond, Sample, Tap,
    UNGROUPED,
};
pub(crate) mod target;
pub mod testserver;

/// Highest rate accepted (requests per second).
pub const MAX_RATE: f64 = 100_000.0;
/// Longest run accepted (`warmup + duration`).
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Longest per-request timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest duration [`parse_duration`] accepts (7 days): far beyond any limit here, and small
/// enough that sums and products of a few of them never overflow.
pub const MAX_PARSED_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// One URL to load, `http://127.0.0.1:port/path`, with its share of the traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub url: String,
    pub weight: u32,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub targets: Vec<Target>,
    /// Requests per second (open model). Ignored in closed-loop mode.
    pub rate: f64,
    /// Measured part of the run, after the warm-up.
    pub duration: Duration,
    pub warmup: Duration,
    /// Per request, from the moment it is sent (connect included).
    pub timeout: Duration,
    pub max_requests: Option<u64>,
    pub max_in_flight: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            targets: Vec::new(),
            rate: 50.0,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(2),
            max_requests: None,
            max_in_flight: 1024,
        }
    }
}

/// Less common knobs, kept apart so that [`LoadOptions`] stays the stable contract.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// `Host` header to send instead of the URL's authority.
    pub host: Option<String>,
    /// Allow targets that are not loopback addresses (the CLI's `--allow-remote`).
    pub allow_remote: bool,
    /// A request sent later than this after its due time counts as `late`.
    pub late_tolerance: Duration,
    /// Closed-loop "max throughput" mode with this many connections, each sending its next
    /// request as soon as the previous answer arrives. For benchmarks only: `rate` is ignored
    /// and latency is measured from the send, so it suffers from coordinated omission.
    pub closed_loop: Option<usize>,
    /// Group the results by this response header (matched case-insensitively), e.g. the
    /// variant header a load balancer adds: fills [`LoadReport::groups`] and each
    /// [`Sample::group`].
    pub group_header: Option<String>,
    /// Receives every finished request as it finishes.
    pub tap: Option<Tap>,
    /// Cancelling it ends the schedule early, as if the duration had been reached (not an
    /// interruption: in-flight requests finish and count); `stopped_by` is `stopped`.
    pub stop: Option<CancellationToken>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            host: None,
            allow_remote: false,
            late_tolerance: Duration::from_millis(10),
            closed_loop: None,
            group_header: None,
            tap: None,
            stop: None,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// One second of the run: requests *due* in `[second, second + 1)` after the start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    pub second: u32,
    /// Part of the warm-up: not in the totals.
    pub warmup: bool,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub late: u64,
    pub dropped: u64,
    /// `None` when no request due in this second finished.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Sent per second (the last, partial second is scaled to its length).
    pub achieved_rate: f64,
}

/// Measured counts for one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    pub url: String,
    pub weight: u32,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub dropped: u64,
}

/// Why the run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoppedBy {
    Duration,
    MaxRequests,
    Cancelled,
    /// [`Tuning::stop`] was cancelled: an early end, counted like the end of the duration.
    Stopped,
}

/// The result of a run; see the module documentation for the exact definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// `open` (constant arrival rate) or `closed_loop` (max throughput benchmark mode).
    pub mode: String,
    pub requested_rate: f64,
    pub achieved_rate: f64,
    pub ok_rate: f64,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub late: u64,
    pub dropped: u64,
    pub aborted: u64,
    pub success_ratio: f64,
    pub latency_ms: Percentiles,
    pub status_counts: BTreeMap<String, u64>,
    pub error_counts: BTreeMap<String, u64>,
    pub targets: Vec<TargetReport>,
    pub timeline: Vec<Second>,
    /// Wall-clock length of the whole run: warm-up, measured part and the final drain.
    pub duration_s: f64,
    /// Length of the measured window.
    pub measured_s: f64,
    pub warmup_s: f64,
    pub timeout_s: f64,
    pub late_tolerance_ms: f64,
    pub max_in_flight: usize,
    pub max_requests: Option<u64>,
    pub stopped_by: StoppedBy,
    /// Measured requests by the value of [`Tuning::group_header`] ([`UNGROUPED`] when an
    /// answer had none); empty without a group header.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, GroupReport>,
}

/// Runs a load test with default [`Tuning`] (loopback targets only).
pub async fn run(
    opts: LoadOptions,
    cancel: CancellationToken,
    progress: Option<&crate::report::Progress>,
) -> anyhow::Result<LoadReport> {
    run_with(opts, Tuning::default(), cancel, progress).await
}

/// Runs a load test. Invalid options and refused targets are usage errors (exit code 2).
pub async fn run_with(
    opts: LoadOptions,
    tuning: Tuning,
    cancel: CancellationToken,
    progress: Option<&crate::report::Progress>,
) -> anyhow::Result<LoadReport> {
    Ok(prepare(opts, tuning).await?.run(cancel, progress).await)
}

/// A load test whose options are valid and whose targets are resolved and allowed.
#[derive(Debug)]
pub struct Prepared {
    opts: LoadOptions,
    tuning: Tuning,
    targets: Vec<target::Resolved>,
}

/// Validates the options and resolves the targets, so that a caller can report usage errors
/// before showing progress. Nothing is sent yet.
pub async fn prepare(opts: LoadOptions, tuning: Tuning) -> anyhow::Result<Prepared> {
    validate(&opts, &tuning)?;
    let targets =
        target::resolve(&opts.targets, tuning.host.as_deref(), tuning.allow_remote).await?;
    Ok(Prepared {
        opts,
        tuning,
        targets,
    })
}

impl Prepared {
    /// Requests the run will schedule at most (warm-up included); `None` in closed-loop mode
    /// without `max_requests`. Handy as a progress bar's length.
    pub fn expected_requests(&self) -> Option<u64> {
        let o = &self.opts;
        match self.tuning.closed_loop {
            Some(_) => o.max_requests,
            None => {
                let n = (o.rate * (o.warmup + o.duration).as_secs_f64()).ceil() as u64;
                Some(o.max_requests.map_or(n, |m| m.min(n)))
            }
        }
    }

    /// Runs the schedule; always ends by itself (duration, `max_requests`) or on `cancel`.
    pub async fn run(
        self,
        cancel: CancellationToken,
        progress: Option<&crate::report::Progress>,
    ) -> LoadReport {
        engine::execute(self.opts, self.tuning, self.targets, cancel, progress).await
    }
}

/// Checks the options; every message names the option and the accepted range.
pub fn validate(opts: &LoadOptions, tuning: &Tuning) -> anyhow::Result<()> {
    if opts.targets.is_empty() {
        return Err(usage("no target url given; pass at least one http:// url"));
    }
    if tuning.closed_loop.is_none() && !(opts.rate > 0.0 && opts.rate <= MAX_RATE) {
        return Err(usage(format!(
            "rate {} is out of range; use a rate above 0 and at most {MAX_RATE} requests per second",
            opts.rate
        )));
    }
    if let Some(c) = tuning.closed_loop {
        if c == 0 || c > 10_000 {
            return Err(usage(format!(
                "closed-loop connections {c} is out of range; use 1 to 10000"
            )));
        }
    }
    if opts.duration.is_zero() {
        return Err(usage("duration must be above 0, e.g. 10s"));
    }
    let total = opts.duration.saturating_add(opts.warmup);
    if total > MAX_DURATION {
        return Err(usage(format!(
            "warm-up plus duration is {:.0}s; the limit is {}s",
            total.as_secs_f64(),
            MAX_DURATION.as_secs()
        )));
    }
    if opts.timeout.is_zero() || opts.timeout > MAX_TIMEOUT {
        return Err(usage(format!(
            "timeout must be above 0 and at most {}s",
            MAX_TIMEOUT.as_secs()
        )));
    }
    if opts.max_in_flight == 0 || opts.max_in_flight > 100_000 {
        return Err(usage("max in flight must be from 1 to 100000"));
    }
    if opts.max_requests == Some(0) {
        return Err(usage("max requests must be at least 1"));
    }
    if let Some(h) = &tuning.group_header {
        if hyper::http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            return Err(usage(format!(
                "group header `{h}` is not a valid HTTP header name; use letters, digits and \
                 dashes, e.g. X-Variant"
            )));
        }
    }
    Ok(())
}

/// Parses a duration such as `30s`, `500ms`, `2m`, `1h` or a plain number of seconds (`1.5`),
/// at most [`MAX_PARSED_DURATION`] (longer is a usage error, never an overflow later).
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        usage(format!(
            "invalid duration `{text}`; write e.g. 30s, 500ms, 2m or 1h"
        ))
    })?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(usage(format!(
                "invalid duration unit `{other}` in `{text}`; use ms, s, m or h"
            )))
        }
    };
    let max = MAX_PARSED_DURATION.as_secs();
    if secs.is_finite() && secs > max as f64 {
        return Err(usage(format!(
            "duration `{text}` is too long; write at most {}h (7 days)",
            max / 3600
        )));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| {
        usage(format!(
            "invalid duration `{text}`; write e.g. 30s, 500ms, 2m or 1h"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        for bad in ["", "s", "10x", "-1s", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn huge_durations_are_usage_errors_not_overflows() {
        assert_eq!(parse_duration("168h").unwrap(), MAX_PARSED_DURATION);
        let long = "1".repeat(400);
        for bad in [
            "169h",
            "4000000000000000h",
            "18446744073709551615",
            long.as_str(),
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert_eq!(crate::error::exit_code(&e), 2, "{bad}");
            assert!(
                e.to_string().contains("too long") || e.to_string().contains("invalid"),
                "{bad}: {e}"
            );
        }
        // Options built in code (not parsed) cannot overflow the check either.
        let o = LoadOptions {
            targets: vec![Target {
                url: "http://127.0.0.1:1/".into(),
                weight: 1,
            }],
            duration: Duration::MAX,
            warmup: Duration::MAX,
            ..LoadOptions::default()
        };
        assert!(validate(&o, &Tuning::default()).is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let t = Tuning::default();
        let mut o = LoadOptions {
            targets: vec![Target {
                url: "http://127.0.0.1:1/".into(),
                weight: 1,
            }],
            ..LoadOptions::default()
        };
        assert!(validate(&o, &t).is_ok());
        o.rate = 0.0;
        assert!(validate(&o, &t).unwrap_err().to_string().contains("rate"));
        o.rate = f64::NAN;
        assert!(validate(&o, &t).is_err());
        o.rate = 10.0;
        o.duration = Duration::from_secs(7200);
        let e = validate(&o, &t).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().contains("limit"), "{e}");
    }
}
