//! Results grouped by a response header (the canary's variants): the per-request [`Sample`],
//! the live [`Tap`] that keeps samples as requests finish, and [`GroupReport`]. One
//! accumulator builds a group report both when the engine files requests as they finish
//! ([`Tuning::group_header`](super::Tuning::group_header)) and when a caller hands in any
//! window of tapped samples ([`group_report`]), so the two agree by construction.
//! Pure bookkeeping: no clocks, no I/O.
//!
//! Bounds: at most [`MAX_GROUPS`] distinct header values are kept apart (later ones are filed
//! under [`OTHER_GROUP`]), a value is cut to [`MAX_GROUP_LEN`] bytes, and a tap keeps at most
//! [`TAP_LIMIT`] samples (16 bytes each, 32 MB), counting the rest in [`Tap::overflowed`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::client::{ErrorKind, Outcome};
use super::stats::{is_success, us_to_ms, MAX_US};
use super::Percentiles;

/// The group of a request whose answer carried no such header: timeouts, connection errors,
/// an empty value, or a response without the header.
pub const UNGROUPED: &str = "(none)";
/// Where header values beyond the first [`MAX_GROUPS`] distinct ones are filed.
pub(crate) const OTHER_GROUP: &str = "(other)";
/// Distinct header values kept apart per run (and per tap), [`UNGROUPED`] included.
pub(crate) const MAX_GROUPS: usize = 64;
/// A header value longer than this many bytes is cut (at a character boundary).
pub(crate) const MAX_GROUP_LEN: usize = 128;
/// Samples a [`Tap::new`] keeps: 2 million, 32 MB (11 hours at 50 req/s, 20 s at the
/// highest rate). Later requests are counted in [`Tap::overflowed`], not kept.
pub(crate) const TAP_LIMIT: usize = 2_000_000;

/// One finished request, as the tap saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Second of its due time since the run's start, warm-up included.
    pub second: u32,
    /// Due time since the run's start, in seconds (latency is measured from it).
    pub due_s: f64,
    /// The group header's value, or [`UNGROUPED`].
    pub group: String,
    pub latency_ms: f64,
    /// A complete 2xx/3xx answer within the timeout (the load report's success).
    pub ok: bool,
    /// The status code of a complete answer.
    pub status: Option<u16>,
    /// The failure class when there was no complete answer, named as in `error_counts`.
    pub error: Option<String>,
    /// Due during the warm-up: in timelines, never in totals.
    pub warmup: bool,
}

/// One variant's measured requests (warm-up excluded), with the same definitions as the
/// load report's totals: success is a 2xx/3xx answer within the timeout, `latency_ms`
/// covers every finished request (failures and timeouts included). Requests that were never
/// sent (`dropped`) or were cut off by cancellation (`aborted`) belong to no group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupReport {
    pub ok: u64,
    pub failed: u64,
    /// `ok / (ok + failed)`; 0 without requests.
    pub success_ratio: f64,
    pub latency_ms: Percentiles,
    pub status_counts: BTreeMap<String, u64>,
    pub error_counts: BTreeMap<String, u64>,
    /// Every second from the group's first to its last request (warm-up included, marked);
    /// a second without a request of this group is there with zero counts.
    pub timeline: Vec<GroupSecond>,
    /// Latency histogram over [`bucket_bounds_ms`], from the first non-empty bucket to the
    /// last one (empty without requests).
    pub histogram: Vec<Bucket>,
}

/// One second of one group: requests *due* in `[second, second + 1)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupSecond {
    pub second: u32,
    pub warmup: bool,
    pub ok: u64,
    pub failed: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Requests with a latency in `(previous bound, le_ms]` (the first bucket from 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub le_ms: f64,
    pub count: u64,
}

/// Renard's R10 series (ISO 3): ten log-spaced steps per decade, rounded to numbers a plot
/// axis can print.
const R10: [f64; 10] = [1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0];

/// The histogram's upper bounds in milliseconds: the R10 series from 0.1 ms to 1000 s
/// (ten per decade, each about 26% above the previous), then one last bucket up to the
/// longest latency tracked (one hour). 72 bounds.
pub fn bucket_bounds_ms() -> Vec<f64> {
    let mut out = Vec::with_capacity(72);
    for decade in -1..6 {
        let scale = 10f64.powi(decade);
        // Rounded so that 0.1 * 1.25 prints as 0.125, not 0.12500000000000003.
        out.extend(R10.iter().map(|m| ((m * scale) * 1e4).round() / 1e4));
    }
    out.push(1_000_000.0);
    out.push(us_to_ms(MAX_US));
    out
}

/// Accumulates one group's measured totals and its closed seconds.
pub(crate) struct GroupAcc {
    ok: u64,
    failed: u64,
    hist: Histogram<u64>,
    status: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    bounds: Vec<f64>,
    buckets: Vec<u64>,
    timeline: BTreeMap<u32, GroupSecond>,
}

impl GroupAcc {
    pub(crate) fn new() -> Self {
        let bounds = bucket_bounds_ms();
        GroupAcc {
            ok: 0,
            failed: 0,
            hist: Histogram::new_with_bounds(1, MAX_US, 3).expect("static histogram bounds"),
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
            buckets: vec![0; bounds.len()],
            bounds,
            timeline: BTreeMap::new(),
        }
    }

    /// A measured request that finished.
    pub(crate) fn record(&mut self, latency_us: u64, outcome: Outcome) {
        let lat = latency_us.clamp(1, MAX_US);
        self.hist.saturating_record(lat);
        let ms = us_to_ms(lat);
        let i = self
            .bounds
            .partition_point(|b| *b < ms)
            .min(self.bounds.len() - 1);
        self.buckets[i] += 1;
        if is_success(outcome) {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        match outcome {
            Outcome::Status(s) => *self.status.entry(s).or_default() += 1,
            Outcome::Error(k) => *self.errors.entry(k.as_str()).or_default() += 1,
        }
    }

    /// A second of this group whose requests have all finished.
    pub(crate) fn close_second(&mut self, s: GroupSecond) {
        self.timeline.insert(s.second, s);
    }

    /// A result for a second already closed (only if a caller advanced too early): counted,
    /// without changing that second's percentiles.
    pub(crate) fn late_result(&mut self, second: u32, warmup: bool, ok: bool) {
        let s = self.timeline.entry(second).or_insert(GroupSecond {
            second,
            warmup,
            ..GroupSecond::default()
        });
        if ok {
            s.ok += 1;
        } else {
            s.failed += 1;
        }
    }

    pub(crate) fn finish(self) -> GroupReport {
        let h = &self.hist;
        let q = |q: f64| us_to_ms(h.value_at_quantile(q));
        let latency_ms = if h.is_empty() {
            Percentiles::default()
        } else {
            Percentiles {
                p50: q(0.50),
                p90: q(0.90),
                p95: q(0.95),
                p99: q(0.99),
                p999: q(0.999),
                max: us_to_ms(h.max()),
                mean: h.mean() / 1000.0,
            }
        };
        let mut timeline = Vec::new();
        if let (Some(&first), Some(&last)) = (
            self.timeline.keys().next(),
            self.timeline.keys().next_back(),
        ) {
            let warm_through = self
                .timeline
                .values()
                .filter(|s| s.warmup)
                .map(|s| s.second)
                .max();
            for sec in first..=last {
                timeline.push(self.timeline.get(&sec).cloned().unwrap_or(GroupSecond {
                    second: sec,
                    warmup: warm_through.is_some_and(|w| sec < w),
                    ..GroupSecond::default()
                }));
            }
        }
        let histogram = match (
            self.buckets.iter().position(|&c| c > 0),
            self.buckets.iter().rposition(|&c| c > 0),
        ) {
            (Some(a), Some(b)) => (a..=b)
                .map(|i| Bucket {
                    le_ms: self.bounds[i],
                    count: self.buckets[i],
                })
                .collect(),
            _ => Vec::new(),
        };
        let total = self.ok + self.failed;
        GroupReport {
            ok: self.ok,
            failed: self.failed,
            success_ratio: if total > 0 {
                self.ok as f64 / total as f64
            } else {
                0.0
            },
            latency_ms,
            status_counts: self
                .status
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            error_counts: self
                .errors
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            timeline,
            histogram,
        }
    }
}

/// One group's requests due in one second, until all of them have finished.
#[derive(Default)]
pub(crate) struct SecAcc {
    ok: u64,
    failed: u64,
    hist: Option<Histogram<u32>>,
}

impl SecAcc {
    pub(crate) fn record(&mut self, latency_us: u64, ok: bool) {
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        self.hist
            .get_or_insert_with(|| Histogram::new_with_bounds(1, MAX_US, 2).expect("static bounds"))
            .saturating_record(latency_us.clamp(1, MAX_US));
    }

    pub(crate) fn close(&self, second: u32, warmup: bool) -> GroupSecond {
        let q = |q: f64| self.hist.as_ref().map(|h| us_to_ms(h.value_at_quantile(q)));
        GroupSecond {
            second,
            warmup,
            ok: self.ok,
            failed: self.failed,
            p50_ms: q(0.5),
            p99_ms: q(0.99),
        }
    }
}

/// Builds one report from samples, all counted as one group whatever their `group` field
/// (select a variant and a window first). Warm-up samples appear in the timeline only.
/// Pass `&samples` for a `Vec<Sample>`, `refs.iter().copied()` for a `&[&Sample]`.
pub fn group_report<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> GroupReport {
    let mut acc = GroupAcc::new();
    let mut seconds: BTreeMap<u32, (SecAcc, bool)> = BTreeMap::new();
    for s in samples {
        let us = ms_to_us(s.latency_ms);
        let outcome = sample_outcome(s);
        let sec = seconds.entry(s.second).or_default();
        sec.0.record(us, is_success(outcome));
        sec.1 |= s.warmup;
        if !s.warmup {
            acc.record(us, outcome);
        }
    }
    for (second, (sec, warmup)) in seconds {
        acc.close_second(sec.close(second, warmup));
    }
    acc.finish()
}

/// [`group_report`] for every group present in `samples`, by group name.
pub fn group_reports<'a>(
    samples: impl IntoIterator<Item = &'a Sample>,
) -> BTreeMap<String, GroupReport> {
    let mut by_group: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        by_group.entry(s.group.as_str()).or_default().push(s);
    }
    by_group
        .into_iter()
        .map(|(g, v)| (g.to_string(), group_report(v.iter().copied())))
        .collect()
}

fn ms_to_us(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        // `as` saturates; the histogram clamps to its range anyway.
        (ms * 1000.0).round() as u64
    } else {
        0
    }
}

/// The outcome a sample stands for. A sample that contradicts itself (`ok` with an error)
/// counts by its `ok` flag, as the load report would have.
fn sample_outcome(s: &Sample) -> Outcome {
    match (s.status, &s.error) {
        (Some(code), _) if is_success(Outcome::Status(code)) == s.ok => Outcome::Status(code),
        (_, Some(e)) if !s.ok => Outcome::Error(ErrorKind::from_name(e)),
        _ if s.ok => Outcome::Status(200),
        _ => Outcome::Error(ErrorKind::Other),
    }
}

/// Distinct group names, at most [`MAX_GROUPS`] plus [`OTHER_GROUP`].
#[derive(Debug, Default)]
pub(crate) struct Interner {
    names: Vec<String>,
}

impl Interner {
    pub(crate) fn id(&mut self, name: &str) -> u16 {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return i as u16;
        }
        let name = if self.names.len() < MAX_GROUPS {
            name
        } else if let Some(i) = self.names.iter().position(|n| n == OTHER_GROUP) {
            return i as u16;
        } else {
            OTHER_GROUP
        };
        self.names.push(name.to_string());
        (self.names.len() - 1) as u16
    }

    pub(crate) fn name(&self, id: u16) -> &str {
        self.names.get(usize::from(id)).map_or(UNGROUPED, |s| s)
    }
}

/// A header value as a group name: lossy UTF-8, cut to [`MAX_GROUP_LEN`] bytes; an empty
/// value is [`UNGROUPED`].
pub(crate) fn group_name(value: &[u8]) -> String {
    let s = String::from_utf8_lossy(value);
    let s = s.trim();
    if s.is_empty() {
        return UNGROUPED.to_string();
    }
    let mut end = s.len().min(MAX_GROUP_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A sample as the tap stores it: 16 bytes.
#[derive(Debug, Clone, Copy)]
struct Rec {
    due_us: u32,
    latency_us: u32,
    /// Status code, or 0 for an error.
    status: u16,
    group: u16,
    /// `ErrorKind::code`, 0 for none.
    error: u8,
    /// Bit 0: ok; bit 1: warm-up.
    flags: u8,
}

struct TapInner {
    recs: Vec<Rec>,
    groups: Interner,
    limit: usize,
    overflowed: u64,
}

/// A live copy of every finished request of a run (see [`Tuning::tap`](super::Tuning::tap)):
/// clone it, hand one clone to the run and read the other while it goes. Requests that were
/// never sent (dropped) or were aborted by cancellation do not finish and are not tapped.
/// Due times and latencies are kept in whole microseconds, up to 71 minutes.
#[derive(Clone)]
pub struct Tap {
    inner: Arc<Mutex<TapInner>>,
}

/// Counts only: a tap may hold millions of samples.
impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Tap")
            .field("len", &inner.recs.len())
            .field("limit", &inner.limit)
            .field("overflowed", &inner.overflowed)
            .finish()
    }
}

impl Default for Tap {
    fn default() -> Self {
        Tap::new()
    }
}

impl Tap {
    /// A tap keeping at most [`TAP_LIMIT`] samples.
    pub fn new() -> Tap {
        Tap::with_limit(TAP_LIMIT)
    }

    /// A tap keeping at most `limit` samples (capped at [`TAP_LIMIT`]).
    pub fn with_limit(limit: usize) -> Tap {
        Tap {
            inner: Arc::new(Mutex::new(TapInner {
                recs: Vec::new(),
                groups: Interner::default(),
                limit: limit.min(TAP_LIMIT),
                overflowed: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TapInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Samples kept so far.
    pub fn len(&self) -> usize {
        self.lock().recs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finished requests not kept because the tap was full.
    pub fn overflowed(&self) -> u64 {
        self.lock().overflowed
    }

    /// A copy of every sample so far, in the order the requests finished.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples_from(0)
    }

    /// The samples from index `start` on (`samples()[start..]`): read a live tap by pieces.
    pub fn samples_from(&self, start: usize) -> Vec<Sample> {
        let inner = self.lock();
        inner
            .recs
            .get(start..)
            .unwrap_or_default()
            .iter()
            .map(|r| Sample {
                second: r.due_us / 1_000_000,
                due_s: f64::from(r.due_us) / 1e6,
                group: inner.groups.name(r.group).to_string(),
                latency_ms: f64::from(r.latency_us) / 1000.0,
                ok: r.flags & 1 != 0,
                status: (r.error == 0).then_some(r.status),
                error: ErrorKind::from_code(r.error).map(|k| k.as_str().to_string()),
                warmup: r.flags & 2 != 0,
            })
            .collect()
    }

    /// Files one finished request.
    pub(crate) fn record(
        &self,
        due_us: u64,
        latency_us: u64,
        group: &str,
        outcome: Outcome,
        warmup: bool,
    ) {
        let mut inner = self.lock();
        if inner.recs.len() >= inner.limit {
            inner.overflowed += 1;
            return;
        }
        let (status, error) = match outcome {
            Outcome::Status(s) => (s, 0),
            Outcome::Error(k) => (0, k.code()),
        };
        let rec = Rec {
            due_us: u32::try_from(due_us).unwrap_or(u32::MAX),
            latency_us: u32::try_from(latency_us).unwrap_or(u32::MAX),
            status,
            group: inner.groups.id(group),
            error,
            flags: u8::from(is_success(outcome)) | (u8::from(warmup) << 1),
        };
        inner.recs.push(rec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(second: u32, latency_ms: f64, outcome: Outcome, warmup: bool) -> Sample {
        let (status, error) = match outcome {
            Outcome::Status(s) => (Some(s), None),
            Outcome::Error(k) => (None, Some(k.as_str().to_string())),
        };
        Sample {
            second,
            due_s: f64::from(second) + 0.5,
            group: "g".into(),
            latency_ms,
            ok: is_success(outcome),
            status,
            error,
            warmup,
        }
    }

    #[test]
    fn bucket_bounds_are_log_spaced_and_printable() {
        let b = bucket_bounds_ms();
        assert_eq!(b.len(), 72);
        assert_eq!(&b[..4], [0.1, 0.125, 0.16, 0.2]);
        assert_eq!((b[10], b[15], b[40]), (1.0, 3.15, 1000.0));
        assert_eq!(&b[69..], [800_000.0, 1_000_000.0, 3_600_000.0]);
        for w in b[..71].windows(2) {
            let ratio = w[1] / w[0];
            assert!((1.2..1.3).contains(&ratio), "{w:?}");
        }
    }

    #[test]
    fn a_report_counts_the_measured_window_and_fills_the_timeline() {
        let samples = [
            sample(0, 5000.0, Outcome::Status(200), true),
            sample(1, 10.0, Outcome::Status(200), false),
            sample(1, 30.0, Outcome::Status(500), false),
            sample(3, 2000.0, Outcome::Error(ErrorKind::RequestTimeout), false),
        ];
        let r = group_report(&samples);
        assert_eq!((r.ok, r.failed), (1, 2));
        assert!((r.success_ratio - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.status_counts.len(), 2);
        assert_eq!(r.status_counts["500"], 1);
        assert_eq!(r.error_counts["request_timeout"], 1);
        // The warm-up's 5 s is in the timeline only.
        assert!(
            (1999.0..=2001.0).contains(&r.latency_ms.max),
            "{:?}",
            r.latency_ms
        );
        let secs: Vec<_> = r
            .timeline
            .iter()
            .map(|s| (s.second, s.warmup, s.ok, s.failed))
            .collect();
        assert_eq!(
            secs,
            [
                (0, true, 1, 0),
                (1, false, 1, 1),
                (2, false, 0, 0),
                (3, false, 0, 1)
            ]
        );
        assert_eq!(r.timeline[2].p50_ms, None);
        assert!(r.timeline[0].p99_ms.unwrap() >= 4990.0);
        let hist: Vec<_> = r
            .histogram
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| (b.le_ms, b.count))
            .collect();
        assert_eq!(hist, [(10.0, 1), (31.5, 1), (2000.0, 1)]);
        assert_eq!(r.histogram.first().unwrap().le_ms, 10.0);

        let empty = group_report(&[]);
        assert_eq!(empty, GroupReport::default());
        let only_warmup = group_report(&samples[..1]);
        assert_eq!((only_warmup.ok, only_warmup.timeline.len()), (0, 1));
        assert!(only_warmup.histogram.is_empty());
    }

    #[test]
    fn group_reports_split_by_group() {
        let mut a = sample(0, 1.0, Outcome::Status(200), false);
        a.group = "blue".into();
        let b = sample(0, 2.0, Outcome::Status(200), false);
        let all = group_reports(&[a.clone(), b, a]);
        assert_eq!(all.keys().collect::<Vec<_>>(), ["blue", "g"]);
        assert_eq!(all["blue"].ok, 2);
    }

    #[test]
    fn distinct_groups_are_capped() {
        let mut names = Interner::default();
        let ids: Vec<u16> = (0..70).map(|i| names.id(&format!("v{i}"))).collect();
        assert_eq!(ids[63], 63);
        assert!(ids[64..].iter().all(|&i| i == 64));
        assert_eq!(names.name(64), OTHER_GROUP);
        assert_eq!(names.id("v3"), 3);
        assert_eq!(names.name(999), UNGROUPED);
    }

    #[test]
    fn header_values_become_bounded_group_names() {
        assert_eq!(group_name(b" blue "), "blue");
        assert_eq!(group_name(b""), UNGROUPED);
        assert_eq!(group_name(b"  "), UNGROUPED);
        assert_eq!(group_name(b"v\xff1"), "v\u{fffd}1");
        let long = group_name("é".repeat(100).as_bytes());
        assert_eq!(long.len(), MAX_GROUP_LEN);
        let odd = group_name(format!("x{}", "é".repeat(100)).as_bytes());
        assert_eq!(odd.len(), MAX_GROUP_LEN - 1);
    }

    #[test]
    fn the_tap_keeps_samples_compactly_and_says_what_it_dropped() {
        let tap = Tap::with_limit(2);
        let other = tap.clone();
        tap.record(1_500_000, 12_345, "a", Outcome::Status(503), false);
        tap.record(
            250_000,
            2_000_000,
            "b",
            Outcome::Error(ErrorKind::Reset),
            true,
        );
        tap.record(3_000_000, 1, "a", Outcome::Status(200), false);
        assert_eq!((other.len(), other.overflowed()), (2, 1));
        let s = other.samples();
        assert_eq!(
            s[0],
            Sample {
                second: 1,
                due_s: 1.5,
                group: "a".into(),
                latency_ms: 12.345,
                ok: false,
                status: Some(503),
                error: None,
                warmup: false,
            }
        );
        assert_eq!((s[1].status, s[1].error.as_deref()), (None, Some("reset")));
        assert!(s[1].warmup && !s[1].ok && s[1].second == 0);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Vec<Sample>>(&json).unwrap(), s);
        assert_eq!(Tap::with_limit(usize::MAX).lock().limit, TAP_LIMIT);
        assert_eq!(
            format!("{other:?}"),
            "Tap { len: 2, limit: 2, overflowed: 1 }"
        );
        // Outcomes survive the sample form, also contradictory ones.
        for o in [
            Outcome::Status(204),
            Outcome::Status(404),
            Outcome::Error(ErrorKind::ConnectTimeout),
        ] {
            assert_eq!(sample_outcome(&sample(0, 1.0, o, false)), o);
        }
        let mut odd = sample(0, 1.0, Outcome::Status(500), false);
        odd.ok = true;
        assert!(is_success(sample_outcome(&odd)));
    }
}
