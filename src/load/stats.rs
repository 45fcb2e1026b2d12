//! Statistics of a load run: one HDR histogram of measured latencies (microseconds), counts by
//! status and error kind, per-target counts, and the per-second timeline. Requests are filed
//! under the second of their *due* time. A second's own histogram is turned into p50/p99 as
//! soon as every request due in it has finished, so memory stays bounded on long runs.
//! With grouping on, each finished request is also filed under its group (see [`super::group`]),
//! per second and in the group's measured totals, by the same rules.
//! Pure bookkeeping: no clocks, no I/O.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::client::{ErrorKind, Outcome};
use super::group::{GroupAcc, Interner, SecAcc};
use super::{GroupReport, Percentiles, Second, TargetReport};

/// Highest latency the histograms track exactly: one hour, in microseconds.
pub(super) const MAX_US: u64 = 3_600_000_000;

/// How a sent request ended, as far as statistics care.
#[derive(Debug, Clone, Copy)]
pub(super) enum Done {
    Finished(Outcome),
    /// Stopped by cancellation before it finished: neither ok nor failed.
    Aborted,
}

#[derive(Default)]
struct Acc {
    sent: u64,
    ok: u64,
    failed: u64,
    aborted: u64,
    late: u64,
    dropped: u64,
    hist: Option<Histogram<u32>>,
    groups: BTreeMap<u16, SecAcc>,
}

impl Acc {
    fn finished(&self) -> u64 {
        self.ok + self.failed + self.aborted
    }
}

#[derive(Default, Clone)]
pub(super) struct Counts {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub aborted: u64,
    pub late: u64,
    pub dropped: u64,
}

pub(super) struct Collector {
    hist: Histogram<u64>,
    pub measured: Counts,
    status: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrorKind, u64>,
    targets: Vec<Counts>,
    open: BTreeMap<u32, Acc>,
    closed: BTreeMap<u32, Second>,
    through: u32,
    warmup_s: f64,
    /// `Some` when results are grouped: the names and each group's accumulator, by id.
    groups: Option<(Interner, Vec<GroupAcc>)>,
}

/// Success: a 2xx or 3xx answer (the timeout is enforced before an outcome exists).
pub(super) fn is_success(o: Outcome) -> bool {
    matches!(o, Outcome::Status(s) if (200..400).contains(&s))
}

pub(super) fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Collector {
    pub(super) fn new(targets: usize, warmup_s: f64, grouped: bool) -> Self {
        Collector {
            hist: Histogram::new_with_bounds(1, MAX_US, 3).expect("static histogram bounds"),
            measured: Counts::default(),
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
            targets: vec![Counts::default(); targets],
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
            through: 0,
            warmup_s,
            groups: grouped.then(|| (Interner::default(), Vec::new())),
        }
    }

    fn acc(&mut self, sec: u32) -> &mut Acc {
        self.open.entry(sec).or_default()
    }

    pub(super) fn dropped(&mut self, sec: u32, measured: bool, target: usize) {
        self.acc(sec).dropped += 1;
        if measured {
            self.measured.dropped += 1;
            self.targets[target].dropped += 1;
        }
    }

    pub(super) fn sent(&mut self, sec: u32, measured: bool, late: bool, target: usize) {
        let a = self.acc(sec);
        a.sent += 1;
        a.late += u64::from(late);
        if measured {
            self.measured.sent += 1;
            self.measured.late += u64::from(late);
            self.targets[target].sent += 1;
        }
    }

    /// A sent request ended; `group` is its group when results are grouped.
    pub(super) fn done(
        &mut self,
        sec: u32,
        measured: bool,
        target: usize,
        latency_us: u64,
        done: Done,
        group: &str,
    ) {
        let lat = latency_us.max(1);
        let warmup = self.is_warmup(sec);
        let gid = match (&mut self.groups, done) {
            (Some((names, accs)), Done::Finished(o)) => {
                let id = names.id(group);
                while accs.len() <= usize::from(id) {
                    accs.push(GroupAcc::new());
                }
                if measured {
                    accs[usize::from(id)].record(lat, o);
                }
                Some((id, o))
            }
            _ => None,
        };
        if let Some(s) = self.closed.get_mut(&sec) {
            if let (Some((id, o)), Some((_, accs))) = (gid, &mut self.groups) {
                accs[usize::from(id)].late_result(sec, warmup, is_success(o));
            }
            // Only if a caller advanced past a second too early; keep the counts right.
            match done {
                Done::Finished(o) if is_success(o) => s.ok += 1,
                Done::Finished(_) => s.failed += 1,
                Done::Aborted => {}
            }
        } else {
            let a = self.acc(sec);
            match done {
                Done::Finished(o) => {
                    if is_success(o) {
                        a.ok += 1;
                    } else {
                        a.failed += 1;
                    }
                    a.hist
                        .get_or_insert_with(|| {
                            Histogram::new_with_bounds(1, MAX_US, 2).expect("static bounds")
                        })
                        .saturating_record(lat);
                    if let Some((id, _)) = gid {
                        a.groups.entry(id).or_default().record(lat, is_success(o));
                    }
                }
                Done::Aborted => a.aborted += 1,
            }
        }
        if measured {
            let t = &mut self.targets[target];
            match done {
                Done::Finished(o) => {
                    self.hist.saturating_record(lat);
                    if is_success(o) {
                        self.measured.ok += 1;
                        t.ok += 1;
                    } else {
                        self.measured.failed += 1;
                        t.failed += 1;
                    }
                    match o {
                        Outcome::Status(s) => *self.status.entry(s).or_default() += 1,
                        Outcome::Error(k) => *self.errors.entry(k).or_default() += 1,
                    }
                }
                Done::Aborted => {
                    self.measured.aborted += 1;
                    t.aborted += 1;
                }
            }
        }
        if sec < self.through {
            self.close_finished(sec);
        }
    }

    /// Every request due before second `through` has been sent or dropped.
    pub(super) fn advance(&mut self, through: u32) {
        if through <= self.through {
            return;
        }
        let from = self.through;
        self.through = through;
        for sec in from..through {
            self.close_finished(sec);
        }
    }

    fn close_finished(&mut self, sec: u32) {
        if self.open.get(&sec).is_some_and(|a| a.finished() == a.sent) {
            if let Some(a) = self.open.remove(&sec) {
                self.close(sec, a);
            }
        }
    }

    fn close(&mut self, sec: u32, a: Acc) {
        let s = self.second(sec, &a);
        if let Some((_, accs)) = &mut self.groups {
            for (id, g) in &a.groups {
                accs[usize::from(*id)].close_second(g.close(sec, s.warmup));
            }
        }
        self.closed.insert(sec, s);
    }

    fn is_warmup(&self, sec: u32) -> bool {
        f64::from(sec) < self.warmup_s
    }

    fn second(&self, sec: u32, a: &Acc) -> Second {
        let q = |q: f64| a.hist.as_ref().map(|h| us_to_ms(h.value_at_quantile(q)));
        Second {
            second: sec,
            warmup: self.is_warmup(sec),
            sent: a.sent,
            ok: a.ok,
            failed: a.failed,
            late: a.late,
            dropped: a.dropped,
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            achieved_rate: a.sent as f64,
        }
    }

    pub(super) fn percentiles(&self) -> Percentiles {
        let h = &self.hist;
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: us_to_ms(h.value_at_quantile(0.50)),
            p90: us_to_ms(h.value_at_quantile(0.90)),
            p95: us_to_ms(h.value_at_quantile(0.95)),
            p99: us_to_ms(h.value_at_quantile(0.99)),
            p999: us_to_ms(h.value_at_quantile(0.999)),
            max: us_to_ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }

    pub(super) fn status_counts(&self) -> BTreeMap<String, u64> {
        self.status
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }

    pub(super) fn error_counts(&self) -> BTreeMap<String, u64> {
        self.errors
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), *v))
            .collect()
    }

    pub(super) fn target_reports(&self, urls: &[(String, u32)]) -> Vec<TargetReport> {
        urls.iter()
            .zip(&self.targets)
            .map(|((url, weight), c)| TargetReport {
                url: url.clone(),
                weight: *weight,
                sent: c.sent,
                ok: c.ok,
                failed: c.failed,
                dropped: c.dropped,
            })
            .collect()
    }

    /// The whole timeline, seconds `0..` up to the last one with any request. `schedule_s` is the
    /// length of the schedule, so that a last partial second reports its rate per real second.
    pub(super) fn timeline(&mut self, schedule_s: f64) -> Vec<Second> {
        let open = std::mem::take(&mut self.open);
        for (sec, a) in open {
            self.close(sec, a);
        }
        let last = self.closed.keys().next_back().copied();
        let mut out = Vec::new();
        if let Some(last) = last {
            for sec in 0..=last {
                let mut s = self.closed.get(&sec).cloned().unwrap_or_else(|| Second {
                    second: sec,
                    warmup: self.is_warmup(sec),
                    ..Second::default()
                });
                let len = (schedule_s - f64::from(sec)).clamp(0.0, 1.0);
                s.achieved_rate = if len > 0.0 { s.sent as f64 / len } else { 0.0 };
                out.push(s);
            }
        }
        out
    }

    /// Every group's report, by name; empty when results are not grouped. Call after
    /// [`Collector::timeline`], which closes the seconds still open.
    pub(super) fn group_reports(&mut self) -> BTreeMap<String, GroupReport> {
        let Some((names, accs)) = self.groups.take() else {
            return BTreeMap::new();
        };
        accs.into_iter()
            .enumerate()
            .map(|(id, acc)| (names.name(id as u16).to_string(), acc.finish()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_closes_seconds() {
        let mut c = Collector::new(1, 1.0, false);
        // second 0 is warm-up: in the timeline, not in the totals
        c.sent(0, false, false, 0);
        c.done(0, false, 0, 5_000, Done::Finished(Outcome::Status(200)), "");
        c.sent(1, true, true, 0);
        c.sent(1, true, false, 0);
        c.dropped(1, true, 0);
        c.advance(2);
        assert!(c.closed.contains_key(&0));
        assert!(!c.closed.contains_key(&1));
        c.done(1, true, 0, 2_000, Done::Finished(Outcome::Status(503)), "");
        c.done(
            1,
            true,
            0,
            250_000,
            Done::Finished(Outcome::Status(302)),
            "",
        );
        assert!(c.closed.contains_key(&1) && c.open.is_empty());
        assert_eq!(
            (c.measured.sent, c.measured.ok, c.measured.failed),
            (2, 1, 1)
        );
        assert_eq!((c.measured.late, c.measured.dropped), (1, 1));
        let p = c.percentiles();
        assert!((249.0..=251.0).contains(&p.max), "{p:?}");
        assert_eq!(c.status_counts().get("503"), Some(&1));
        let tl = c.timeline(1.5);
        assert_eq!(tl.len(), 2);
        assert!(tl[0].warmup && !tl[1].warmup);
        assert_eq!(tl[1].achieved_rate, 4.0); // 2 sent in a half second
        assert!(tl[1].p99_ms.unwrap() >= 249.0);
    }
}
