//! Runs the schedule: the open-model dispatcher (one spawned task per due request, latency
//! from the due time), the closed-loop benchmark mode, the early stop, the final drain with
//! its timeout, and cancellation. Turns the collected statistics into a [`LoadReport`] and
//! hands each finished request to the tap.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper::http::{HeaderName, HeaderValue};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{self, ErrorKind, Outcome, Phase, Pool, Trace};
use super::stats::{Collector, Done};
use super::target::{wrr_cycle, Resolved};
use super::{LoadOptions, LoadReport, StoppedBy, Tap, Tuning, UNGROUPED};
use crate::report::Progress;

struct Shared {
    targets: Vec<Resolved>,
    pools: Vec<Pool>,
    stats: Mutex<Collector>,
    in_flight: AtomicUsize,
    idle: Notify,
    /// Stops requests still in flight: at cancellation, or when the final drain times out.
    abort: CancellationToken,
    /// Set before `abort` when the drain timed out: the abandoned requests are timeouts.
    abort_is_timeout: AtomicBool,
    timeout: Duration,
    user_agent: HeaderValue,
    t0: Instant,
    /// Offset from `t0` (µs) of the last measured request sent or dropped.
    last_measured_us: AtomicU64,
    /// Offset from `t0` (µs) of the last request scheduled (sent or dropped), warm-up
    /// included: its due time in the open model. Bounds the timeline.
    last_scheduled_us: AtomicU64,
    /// Offset from `t0` (µs) at which [`Tuning::stop`] ended the schedule.
    stopped_at_us: AtomicU64,
    group_header: Option<HeaderName>,
    tap: Option<Tap>,
}

impl Shared {
    fn stats(&self) -> MutexGuard<'_, Collector> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark_measured(&self, at: Instant) {
        let us = u64::try_from(at.saturating_duration_since(self.t0).as_micros()).unwrap_or(0);
        self.last_measured_us.fetch_max(us, Ordering::Relaxed);
    }

    fn mark_scheduled(&self, offset: Duration) {
        let us = u64::try_from(offset.as_micros()).unwrap_or(u64::MAX);
        self.last_scheduled_us.fetch_max(us, Ordering::Relaxed);
    }

    fn mark_stopped(&self) {
        let us = u64::try_from(self.t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stopped_at_us.store(us, Ordering::Relaxed);
    }
}

/// One request from dispatch to statistics. `due` is where its latency is measured from.
async fn request(shared: Arc<Shared>, target: usize, due: Instant, sec: u32, measured: bool) {
    let t = &shared.targets[target];
    let deadline = Instant::now() + shared.timeout;
    let mut trace = Trace {
        phase: Phase::Connecting,
        group: None,
    };
    let result = {
        let fut = client::exchange(
            &shared.pools[t.pool],
            t,
            &shared.user_agent,
            shared.group_header.as_ref(),
            &mut trace,
        );
        tokio::select! {
            biased;
            _ = shared.abort.cancelled() => None,
            r = tokio::time::timeout_at(deadline, fut) => Some(r),
        }
    };
    let timed_out = || {
        Done::Finished(Outcome::Error(match trace.phase {
            Phase::Connecting => ErrorKind::ConnectTimeout,
            Phase::Requesting => ErrorKind::RequestTimeout,
        }))
    };
    let done = match result {
        Some(Ok(outcome)) => Done::Finished(outcome),
        Some(Err(_elapsed)) => timed_out(),
        None if shared.abort_is_timeout.load(Ordering::Acquire) => timed_out(),
        None => Done::Aborted,
    };
    let latency = Instant::now().saturating_duration_since(due);
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    let group = trace.group.as_deref().unwrap_or(UNGROUPED);
    if let (Some(tap), Done::Finished(outcome)) = (&shared.tap, done) {
        let due_us = due.saturating_duration_since(shared.t0).as_micros();
        let due_us = u64::try_from(due_us).unwrap_or(u64::MAX);
        tap.record(due_us, us, group, outcome, !measured);
    }
    shared.stats().done(sec, measured, target, us, done, group);
    if shared.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
        shared.idle.notify_one();
    }
}

fn second_of(offset: Duration) -> u32 {
    u32::try_from(offset.as_secs()).unwrap_or(u32::MAX)
}

fn show_progress(progress: Option<&Progress>, shared: &Shared, scheduled: u64) {
    if let Some(p) = progress {
        p.set_position(scheduled);
        let (ok, failed, dropped) = {
            let s = shared.stats();
            (s.measured.ok, s.measured.failed, s.measured.dropped)
        };
        let inflight = shared.in_flight.load(Ordering::Relaxed);
        p.message(format!(
            "{ok} ok, {failed} failed, {dropped} dropped, {inflight} in flight"
        ));
    }
}

pub(super) async fn execute(
    opts: LoadOptions,
    tuning: Tuning,
    targets: Vec<Resolved>,
    cancel: CancellationToken,
    progress: Option<&Progress>,
) -> LoadReport {
    let pool_count = targets.iter().map(|t| t.pool + 1).max().unwrap_or(0);
    let pools = (0..pool_count)
        .map(|i| {
            let addr = targets
                .iter()
                .find(|t| t.pool == i)
                .map(|t| t.addr)
                .unwrap_or_else(|| ([127, 0, 0, 1], 0).into());
            Pool::new(addr, opts.max_in_flight)
        })
        .collect();
    let weights: Vec<u32> = targets.iter().map(|t| t.weight).collect();
    let urls: Vec<(String, u32)> = targets.iter().map(|t| (t.url.clone(), t.weight)).collect();
    let t0 = Instant::now();
    let shared = Arc::new(Shared {
        stats: Mutex::new(Collector::new(
            targets.len(),
            opts.warmup.as_secs_f64(),
            tuning.group_header.is_some(),
        )),
        targets,
        pools,
        in_flight: AtomicUsize::new(0),
        idle: Notify::new(),
        abort: CancellationToken::new(),
        abort_is_timeout: AtomicBool::new(false),
        timeout: opts.timeout,
        user_agent: HeaderValue::from_static(concat!("builder-load/", env!("CARGO_PKG_VERSION"))),
        t0,
        last_measured_us: AtomicU64::new(0),
        last_scheduled_us: AtomicU64::new(0),
        stopped_at_us: AtomicU64::new(0),
        // `validate` checked the name.
        group_header: tuning
            .group_header
            .as_deref()
            .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        tap: tuning.tap.clone(),
    });
    // A token nobody cancels stands for "no early stop".
    let stop = tuning.stop.clone().unwrap_or_default();
    let cycle = wrr_cycle(&weights);

    let (stopped_by, schedule_s, interval_s) = match tuning.closed_loop {
        None => {
            let stopped =
                open_loop(&shared, &opts, &tuning, &cycle, &cancel, &stop, progress).await;
            let interval = 1.0 / opts.rate;
            (
                stopped,
                (opts.warmup + opts.duration).as_secs_f64(),
                interval,
            )
        }
        Some(conns) => {
            let stopped =
                closed_loop(&shared, &opts, conns, &cycle, &cancel, &stop, progress).await;
            (stopped, t0.elapsed().as_secs_f64(), 0.0)
        }
    };
    drain(&shared, opts.timeout, &cancel, stopped_by).await;
    for p in &shared.pools {
        p.clear();
    }

    let duration_s = t0.elapsed().as_secs_f64();
    let warmup_s = opts.warmup.as_secs_f64();
    let mut stats = shared.stats();
    let c = stats.measured.clone();
    let last_s = shared.last_measured_us.load(Ordering::Relaxed) as f64 / 1e6;
    // The timeline covers everything scheduled, warm-up included: a run that ended during
    // the warm-up has no measured request, but its timeline is still that long.
    let last_scheduled_s = shared.last_scheduled_us.load(Ordering::Relaxed) as f64 / 1e6;
    let measured_s = if c.sent + c.dropped == 0 {
        0.0
    } else if stopped_by == StoppedBy::Stopped {
        // The window ends at the stop, not one interval after the last request.
        let stop_s = shared.stopped_at_us.load(Ordering::Relaxed) as f64 / 1e6;
        (stop_s - warmup_s).max(last_s - warmup_s).max(interval_s)
    } else {
        (last_s - warmup_s + interval_s).max(interval_s)
    };
    let per_s = |n: u64| {
        if measured_s > 0.0 {
            n as f64 / measured_s
        } else {
            0.0
        }
    };
    let attempts = c.ok + c.failed + c.dropped;
    LoadReport {
        mode: if tuning.closed_loop.is_some() {
            "closed_loop"
        } else {
            "open"
        }
        .to_string(),
        requested_rate: if tuning.closed_loop.is_some() {
            0.0
        } else {
            opts.rate
        },
        achieved_rate: per_s(c.sent),
        ok_rate: per_s(c.ok),
        sent: c.sent,
        ok: c.ok,
        failed: c.failed,
        late: c.late,
        dropped: c.dropped,
        aborted: c.aborted,
        success_ratio: if attempts > 0 {
            c.ok as f64 / attempts as f64
        } else {
            0.0
        },
        latency_ms: stats.percentiles(),
        status_counts: stats.status_counts(),
        error_counts: stats.error_counts(),
        targets: stats.target_reports(&urls),
        timeline: stats.timeline(timeline_len(schedule_s, last_scheduled_s, interval_s)),
        // After `timeline`, which closes the seconds still open.
        groups: stats.group_reports(),
        duration_s,
        measured_s,
        warmup_s,
        timeout_s: opts.timeout.as_secs_f64(),
        late_tolerance_ms: tuning.late_tolerance.as_secs_f64() * 1000.0,
        max_in_flight: opts.max_in_flight,
        max_requests: opts.max_requests,
        stopped_by,
    }
}

/// Length in seconds the timeline covers: up to one arrival interval after the last request
/// scheduled (warm-up included), never beyond the schedule.
fn timeline_len(schedule_s: f64, last_scheduled_s: f64, interval_s: f64) -> f64 {
    schedule_s.min(last_scheduled_s + interval_s.max(1e-6))
}

/// Dispatches request `i` at `t0 + i/rate` until the schedule, `max_requests`, `stop` or
/// `cancel` ends.
async fn open_loop(
    shared: &Arc<Shared>,
    opts: &LoadOptions,
    tuning: &Tuning,
    cycle: &[usize],
    cancel: &CancellationToken,
    stop: &CancellationToken,
    progress: Option<&Progress>,
) -> StoppedBy {
    let t0 = shared.t0;
    let total = opts.warmup + opts.duration;
    let interval_s = 1.0 / opts.rate;
    let mut current_sec = 0;
    let mut i: u64 = 0;
    loop {
        if opts.max_requests.is_some_and(|max| i >= max) {
            return StoppedBy::MaxRequests;
        }
        let offset = Duration::from_secs_f64(i as f64 * interval_s);
        if offset >= total {
            return StoppedBy::Duration;
        }
        let due = t0 + offset;
        let sec = second_of(offset);
        if sec != current_sec {
            current_sec = sec;
            shared.stats().advance(sec);
            show_progress(progress, shared, i);
        }
        if due > Instant::now() {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return StoppedBy::Cancelled,
                _ = stop.cancelled() => {
                    shared.mark_stopped();
                    return StoppedBy::Stopped;
                }
                _ = tokio::time::sleep_until(due) => {}
            }
        } else if cancel.is_cancelled() {
            return StoppedBy::Cancelled;
        } else if stop.is_cancelled() {
            shared.mark_stopped();
            return StoppedBy::Stopped;
        }
        let now = Instant::now();
        let measured = offset >= opts.warmup;
        let target = cycle[(i % cycle.len() as u64) as usize];
        shared.mark_scheduled(offset);
        if measured {
            shared.mark_measured(now);
        }
        if shared.in_flight.load(Ordering::Acquire) >= opts.max_in_flight {
            shared.stats().dropped(sec, measured, target);
        } else {
            let late = now.saturating_duration_since(due) > tuning.late_tolerance;
            shared.in_flight.fetch_add(1, Ordering::AcqRel);
            shared.stats().sent(sec, measured, late, target);
            tokio::spawn(request(shared.clone(), target, due, sec, measured));
        }
        i += 1;
    }
}

/// `conns` workers, each sending its next request when the previous one has finished.
async fn closed_loop(
    shared: &Arc<Shared>,
    opts: &LoadOptions,
    conns: usize,
    cycle: &[usize],
    cancel: &CancellationToken,
    stop: &CancellationToken,
    progress: Option<&Progress>,
) -> StoppedBy {
    let end = shared.t0 + opts.warmup + opts.duration;
    let counter = Arc::new(AtomicU64::new(0));
    let cycle: Arc<[usize]> = cycle.into();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let (shared, counter, cycle, cancel, stop) = (
            shared.clone(),
            counter.clone(),
            cycle.clone(),
            cancel.clone(),
            stop.clone(),
        );
        let (warmup, max) = (opts.warmup, opts.max_requests);
        workers.spawn(async move {
            loop {
                let now = Instant::now();
                if now >= end || cancel.is_cancelled() || stop.is_cancelled() {
                    break;
                }
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if max.is_some_and(|m| i >= m) {
                    break;
                }
                let offset = now.saturating_duration_since(shared.t0);
                let (sec, measured) = (second_of(offset), offset >= warmup);
                let target = cycle[(i % cycle.len() as u64) as usize];
                shared.mark_scheduled(offset);
                if measured {
                    shared.mark_measured(now);
                }
                shared.in_flight.fetch_add(1, Ordering::AcqRel);
                shared.stats().sent(sec, measured, false, target);
                request(shared.clone(), target, now, sec, measured).await;
            }
        });
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut stopped = false;
    loop {
        tokio::select! {
            done = workers.join_next() => if done.is_none() { break },
            // Workers see the stop before their next request; the ones in flight finish.
            _ = stop.cancelled(), if !stopped => {
                stopped = true;
                shared.mark_stopped();
            }
            _ = cancel.cancelled() => {
                shared.abort.cancel();
                while workers.join_next().await.is_some() {}
                return StoppedBy::Cancelled;
            }
            _ = tick.tick() => {
                // Requests started more than a second ago have all been filed.
                let sec = second_of(shared.t0.elapsed());
                shared.stats().advance(sec.saturating_sub(1));
                show_progress(progress, shared, counter.load(Ordering::Relaxed));
            }
        }
    }
    if cancel.is_cancelled() {
        StoppedBy::Cancelled
    } else if stopped {
        StoppedBy::Stopped
    } else if opts
        .max_requests
        .is_some_and(|m| counter.load(Ordering::Relaxed) >= m)
    {
        StoppedBy::MaxRequests
    } else {
        StoppedBy::Duration
    }
}

/// Waits for requests in flight: each has its own timeout; past `timeout` (plus a little slack
/// for a busy machine) the rest are abandoned as timeouts. Cancellation abandons them at once.
async fn drain(
    shared: &Shared,
    timeout: Duration,
    cancel: &CancellationToken,
    stopped_by: StoppedBy,
) {
    if stopped_by == StoppedBy::Cancelled {
        shared.abort.cancel();
    }
    let deadline = Instant::now() + timeout + Duration::from_millis(250);
    let mut deadline_passed = false;
    while shared.in_flight.load(Ordering::Acquire) > 0 {
        tokio::select! {
            _ = shared.idle.notified() => {}
            _ = tokio::time::sleep_until(deadline), if !deadline_passed => {
                deadline_passed = true;
                shared.abort_is_timeout.store(true, Ordering::Release);
                shared.abort.cancel();
            }
            _ = cancel.cancelled(), if !shared.abort.is_cancelled() => shared.abort.cancel(),
            // Belt and braces against a missed wake-up.
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_length_counts_the_warmup() {
        // 10 req/s, stopped after 1.2 s of a 5 s warm-up: the last request was due at 1.1 s.
        let len = timeline_len(15.0, 1.1, 0.1);
        assert!((len - 1.2).abs() < 1e-9, "{len}");
        // A full run is capped by the schedule.
        assert_eq!(timeline_len(15.0, 14.95, 0.1), 15.0);
    }
}
