//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, no network) that a
//! person reads at a glance: the verdict, the thresholds, latency percentiles and throughput
//! over time (warm-up shaded, restarts marked), the status breakdown, restarts and the
//! artifacts under test.

use std::fmt::Write as _;

use super::report::{esc, SmokeReport};

const W: f64 = 900.0;
const H: f64 = 260.0;
const L: f64 = 60.0; // left margin
const R: f64 = 20.0;
const T: f64 = 30.0;
const B: f64 = 40.0;

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, Option<f64>)>,
}

struct Chart<'a> {
    title: &'a str,
    y_label: &'a str,
    series: Vec<Series<'a>>,
    hlines: Vec<(f64, String, &'a str)>,
    markers: Vec<(f64, String)>,
    shade: Option<(f64, f64)>,
    x_max: f64,
}

/// A round step so that `max / step` gives about `n` ticks.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn svg(c: &Chart<'_>) -> String {
    let mut y_max = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|p| p.1))
        .chain(c.hlines.iter().map(|h| h.0))
        .fold(0.0f64, f64::max);
    if y_max <= 0.0 {
        y_max = 1.0;
    }
    let step = nice_step(y_max * 1.1, 5.0);
    let y_top = (y_max * 1.1 / step).ceil() * step;
    let x_max = c.x_max.max(1.0);
    let pw = W - L - R;
    let ph = H - T - B;
    let sx = |x: f64| L + x / x_max * pw;
    let sy = |y: f64| T + ph - (y / y_top) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\">",
        esc(c.title)
    );
    let _ = write!(
        s,
        "<text x=\"{L}\" y=\"18\" class=\"ct\">{}</text>",
        esc(c.title)
    );
    if let Some((a, b)) = c.shade {
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{T}\" width=\"{:.1}\" height=\"{ph}\" fill=\"#eee\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"lbl\">warm-up</text>",
            sx(a),
            (sx(b) - sx(a)).max(0.0),
            sx(a) + 4.0,
            T + 12.0
        );
    }
    // y grid and labels
    let mut y = 0.0;
    while y <= y_top + step * 0.01 {
        let _ = write!(
            s,
            "<line x1=\"{L}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"ax\" text-anchor=\"end\">{}</text>",
            W - R,
            sy(y),
            sy(y),
            L - 6.0,
            sy(y) + 4.0,
            fmt_num(y)
        );
        y += step;
    }
    let xstep = nice_step(x_max, 10.0).max(1.0);
    let mut x = 0.0;
    while x <= x_max + 1e-9 {
        let _ = write!(
            s,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"ax\" text-anchor=\"middle\">{}s</text>",
            sx(x),
            sx(x),
            T + ph,
            T + ph + 4.0,
            sx(x),
            T + ph + 16.0,
            fmt_num(x)
        );
        x += xstep;
    }
    let _ = write!(
        s,
        "<text x=\"14\" y=\"{:.1}\" class=\"ax\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">{}</text>",
        T + ph / 2.0,
        T + ph / 2.0,
        esc(c.y_label)
    );
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" class=\"ax\" text-anchor=\"middle\">time since start (s)</text>",
        L + pw / 2.0,
        H - 6.0
    );
    for (v, label, color) in &c.hlines {
        let _ = write!(
            s,
            "<line x1=\"{L}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-dasharray=\"6 4\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"lbl\" text-anchor=\"end\" fill=\"{color}\">{}</text>",
            W - R,
            sy(*v),
            sy(*v),
            W - R - 4.0,
            sy(*v) - 4.0,
            esc(label)
        );
    }
    for (x, label) in &c.markers {
        let _ = write!(
            s,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{T}\" y2=\"{:.1}\" stroke=\"#c00\" stroke-dasharray=\"2 3\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"lbl\" fill=\"#c00\">{}</text>",
            sx(*x),
            sx(*x),
            T + ph,
            sx(*x) + 3.0,
            T + 24.0,
            esc(label)
        );
    }
    for se in &c.series {
        // Gaps (None) split the line.
        let mut d = String::new();
        let mut pen = false;
        for (x, y) in &se.points {
            match y {
                Some(y) => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen { "L" } else { "M" },
                        sx(*x),
                        sy(*y)
                    );
                    pen = true;
                }
                None => pen = false,
            }
        }
        let _ = write!(
            s,
            "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>",
            d.trim_end(),
            se.color
        );
    }
    // Legend in the title row, right-aligned, clear of the plot.
    let legend_w: f64 = c
        .series
        .iter()
        .map(|se| 30.0 + se.name.len() as f64 * 7.0)
        .sum();
    let mut lx = W - R - legend_w;
    for se in &c.series {
        let _ = write!(
            s,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"12\" height=\"3\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"lbl\">{}</text>",
            10.0,
            se.color,
            lx + 16.0,
            15.0,
            esc(se.name)
        );
        lx += 30.0 + se.name.len() as f64 * 7.0;
    }
    s.push_str("</svg>");
    s
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn bars(items: &[(String, u64, &str)]) -> String {
    let total: u64 = items.iter().map(|i| i.1).sum::<u64>().max(1);
    let max = items.iter().map(|i| i.1).max().unwrap_or(1).max(1) as f64;
    let row = 24.0;
    let h = 20.0 + row * items.len().max(1) as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {h}\" width=\"{W}\" height=\"{h}\" role=\"img\" aria-label=\"status breakdown\">"
    );
    for (i, (name, n, color)) in items.iter().enumerate() {
        let y = 10.0 + i as f64 * row;
        let w = (*n as f64 / max) * (W - 360.0);
        let _ = write!(
            s,
            "<text x=\"150\" y=\"{:.1}\" class=\"ax\" text-anchor=\"end\">{}</text><rect x=\"160\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"16\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"ax\">{n} ({:.2}%)</text>",
            y + 12.0,
            esc(name),
            166.0 + w,
            y + 12.0,
            *n as f64 * 100.0 / total as f64
        );
    }
    if items.is_empty() {
        s.push_str("<text x=\"160\" y=\"22\" class=\"ax\">no requests measured</text>");
    }
    s.push_str("</svg>");
    s
}

fn status_color(code: &str) -> &'static str {
    match code.chars().next() {
        Some('2') => "#2a9d3a",
        Some('3') => "#3a7bd5",
        Some('4') => "#e0a000",
        Some('5') => "#d03030",
        _ => "#777",
    }
}

/// The whole page.
pub(crate) fn render(r: &SmokeReport) -> String {
    let res = r.results.as_ref();
    let target = res.map_or(r.inputs.stack.load.rate, |l| l.requested_rate);
    let tl = &r.timeline;
    let x_max = tl.len() as f64;
    let warm = tl.iter().filter(|s| s.warmup).count() as f64;
    let shade = (warm > 0.0).then_some((0.0, warm));
    // Restarts happen relative to the load start, which is the start of the warm-up.
    let markers: Vec<(f64, String)> = r
        .restarts
        .iter()
        .filter(|x| x.t_s >= 0.0 && x.t_s <= x_max)
        .map(|x| (x.t_s, format!("{} restarted ({})", x.server, x.by)))
        .collect();
    let mid = |s: &crate::load::Second| s.second as f64 + 0.5;
    let latency = svg(&Chart {
        title: "Latency percentiles per second (ms, from the due time)",
        y_label: "ms",
        series: vec![
            Series {
                name: "p50",
                color: "#3a7bd5",
                points: tl.iter().map(|s| (mid(s), s.p50_ms)).collect(),
            },
            Series {
                name: "p99",
                color: "#d07000",
                points: tl.iter().map(|s| (mid(s), s.p99_ms)).collect(),
            },
        ],
        hlines: vec![(
            r.thresholds.max_p99_ms,
            format!("p99 limit {} ms", r.thresholds.max_p99_ms),
            "#d03030",
        )],
        markers: markers.clone(),
        shade,
        x_max,
    });
    let throughput = svg(&Chart {
        title: "Throughput per second (req/s)",
        y_label: "req/s",
        series: vec![
            Series {
                name: "sent",
                color: "#3a7bd5",
                points: tl.iter().map(|s| (mid(s), Some(s.achieved_rate))).collect(),
            },
            Series {
                name: "ok",
                color: "#2a9d3a",
                points: tl.iter().map(|s| (mid(s), Some(s.ok as f64))).collect(),
            },
            Series {
                name: "failed",
                color: "#d03030",
                points: tl.iter().map(|s| (mid(s), Some(s.failed as f64))).collect(),
            },
        ],
        hlines: vec![(target, format!("target {target} req/s"), "#555")],
        markers,
        shade,
        x_max,
    });
    let mut items: Vec<(String, u64, &str)> = r
        .status_counts
        .iter()
        .map(|(k, v)| (format!("HTTP {k}"), *v, status_color(k)))
        .collect();
    items.extend(r.error_counts.iter().map(|(k, v)| (k.clone(), *v, "#777")));
    let dropped = res.map_or(0, |l| l.dropped);
    if dropped > 0 {
        items.push(("dropped (not sent)".into(), dropped, "#444"));
    }
    let status = bars(&items);

    let (verdict, vclass) = if r.passed {
        ("PASSED", "pass")
    } else {
        ("FAILED", "fail")
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>smoke {run} {verdict}</title>\n<style>\
body{{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:960px}}\
h1{{font-size:22px;margin:0 0 4px}} h2{{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #ddd}}\
.badge{{display:inline-block;padding:4px 12px;border-radius:4px;color:#fff;font-weight:700;margin-right:10px}}\
.pass{{background:#2a9d3a}} .fail{{background:#d03030}} .muted{{color:#666;font-size:13px}}\
table{{border-collapse:collapse;font-size:14px}} td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left}}\
th{{background:#f5f5f5}} tr.bad td{{background:#fde8e8}} tr.good td:first-child{{color:#2a9d3a}}\
.kpi{{display:inline-block;margin:8px 22px 8px 0}} .kpi b{{display:block;font-size:22px}}\
svg{{background:#fff;border:1px solid #eee;margin:4px 0}} .ct{{font:600 14px sans-serif}} .ax{{font:12px sans-serif;fill:#444}} .lbl{{font:11px sans-serif}}\
code{{font-size:12px;word-break:break-all}}\
</style></head><body>\n",
        run = esc(&r.run_id)
    );
    let _ = write!(
        h,
        "<h1><span class=\"badge {vclass}\">{verdict}</span>builder smoke {}</h1>\n<div class=\"muted\">run {} · {} → {} ({:.1}s) · stack <code>{}</code>{}</div>\n",
        esc(r.mode.as_str()),
        esc(&r.run_id),
        esc(&r.started),
        esc(&r.finished),
        r.duration_s,
        esc(&r.inputs.stack_file),
        if r.reasons.is_empty() {
            String::new()
        } else {
            format!("<p><b>Why it failed:</b></p><ul>{}</ul>", r.reasons.iter().map(|m| format!("<li>{}</li>", esc(m))).collect::<String>())
        }
    );
    let p = &r.percentiles;
    if let Some(res) = res {
        let _ = writeln!(
            h,
            "<div><span class=\"kpi\">target<b>{:.0} req/s</b></span><span class=\"kpi\">achieved<b>{:.2} req/s</b></span><span class=\"kpi\">success<b>{:.2}%</b></span><span class=\"kpi\">p50<b>{:.0} ms</b></span><span class=\"kpi\">p99<b>{:.0} ms</b></span><span class=\"kpi\">restarts<b>{}</b></span></div>",
            res.requested_rate,
            res.achieved_rate,
            res.success_ratio * 100.0,
            p.p50,
            p.p99,
            r.restarts.len()
        );
    }
    h.push_str("<h2>Thresholds</h2><table><tr><th>check</th><th>threshold</th><th>actual</th><th>result</th></tr>");
    for c in r.checks() {
        let _ = write!(
            h,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if c.passed { "good" } else { "bad" },
            esc(&c.name),
            esc(&c.threshold),
            esc(&c.actual),
            if c.passed {
                "pass".to_string()
            } else {
                format!("FAIL: {}", esc(&c.message))
            }
        );
    }
    h.push_str("</table>\n");
    match res {
        None => h.push_str(
            "<h2>Load</h2><p>No load ran: the run stopped before the gate (see above).</p>\n",
        ),
        Some(res) => {
            h.push_str("<h2>Latency</h2>\n");
            h.push_str(&latency);
            let _ = writeln!(
                h,
                "<table><tr><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th></tr><tr><td>{:.1} ms</td><td>{:.1} ms</td><td>{:.1} ms</td><td>{:.1} ms</td><td>{:.1} ms</td><td>{:.1} ms</td><td>{:.1} ms</td></tr></table>",
                p.p50, p.p90, p.p95, p.p99, p.p999, p.max, p.mean
            );
            h.push_str("<h2>Throughput</h2>\n");
            h.push_str(&throughput);
            let _ = writeln!(
                h,
                "<p class=\"muted\">{} sent, {} ok, {} failed, {} late, {} dropped over {:.1}s measured ({:.1}s warm-up excluded).</p>",
                res.sent, res.ok, res.failed, res.late, res.dropped, res.measured_s, res.warmup_s
            );
            h.push_str("<h2>Status breakdown</h2>\n");
            h.push_str(&status);
        }
    }
    if let Some(c) = &r.canary {
        h.push_str(&canary_section(c, x_max, shade));
    }
    if let Some(cap) = &r.capacity {
        let _ = write!(
            h,
            "<h2>Capacity</h2><p>Highest rate that held every threshold: <b>{} req/s</b> (steps of {:.0}s after {:.0}s warm-up).</p><table><tr><th>rate</th><th>achieved</th><th>success</th><th>p50</th><th>p99</th><th>result</th></tr>",
            cap.highest_passing_rate, cap.step_duration_s, cap.step_warmup_s
        );
        for s in &cap.steps {
            let _ = write!(
                h,
                "<tr class=\"{}\"><td>{}</td><td>{:.2}</td><td>{:.2}%</td><td>{:.0} ms</td><td>{:.0} ms</td><td>{}</td></tr>",
                if s.passed { "good" } else { "bad" },
                s.rate,
                s.achieved_rate,
                s.success_ratio * 100.0,
                s.p50_ms,
                s.p99_ms,
                if s.passed { "held".to_string() } else { esc(&s.broken.join("; ")) }
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("<h2>Restarts</h2>");
    if r.restarts.is_empty() {
        h.push_str("<p>No container restarted.</p>");
    } else {
        h.push_str("<table><tr><th>t</th><th>container</th><th>by</th><th>reason</th></tr>");
        for x in &r.restarts {
            let _ = write!(
                h,
                "<tr><td>{:.1}s</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                x.t_s,
                esc(&x.server),
                esc(&x.by),
                esc(&x.reason)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("\n<h2>Artifacts under test</h2><table><tr><th>kind</th><th>name</th><th>version</th><th>sha256</th><th>image id</th></tr>");
    for a in &r.artifacts {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            esc(a.kind.as_str()),
            esc(&a.name),
            esc(&a.version),
            esc(&a.sha256.hex()),
            esc(&a.image_id.map(|d| d.to_string()).unwrap_or_default())
        );
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

const CANDIDATE: &str = "#3a7bd5";
const BASELINE: &str = "#888";

/// The canary: the baseline, both variants side by side (latency and throughput per second,
/// the switch's steps marked), the statistics and the switch timeline.
fn canary_section(
    c: &super::canary::CanaryReport,
    x_max: f64,
    shade: Option<(f64, f64)>,
) -> String {
    let mut h = String::from("<h2>Canary: candidate against baseline</h2>\n");
    if let Some(why) = &c.skipped {
        let _ = writeln!(h, "<p>{}</p>", esc(why));
        return h;
    }
    let _ = write!(
        h,
        "<p>Baseline: the release environment <b>{}</b> holds; the candidate took <b>{}%</b> of the load from {:.0}s to {:.0}s. {} answers in that window carried no variant (no answer at all) and count in the thresholds only.</p><table><tr><th>service</th><th>baseline image</th><th>manifest digest</th><th>image id</th></tr>",
        esc(&c.baseline_env),
        c.candidate_weight,
        c.window_s.0,
        c.window_s.1,
        c.ungrouped
    );
    for b in &c.baseline_images {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{} {}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            esc(&b.service),
            esc(&b.name),
            esc(&b.version),
            esc(&b.digest.to_string()),
            esc(&b.image_id.to_string())
        );
    }
    h.push_str("</table>\n");
    let markers: Vec<(f64, String)> = c
        .switch
        .iter()
        .flat_map(|sw| sw.steps.iter())
        .map(|st| {
            let label = if st.drained {
                "drain".to_string()
            } else {
                format!("{}%", st.candidate_weight)
            };
            (st.t_s, label)
        })
        .collect();
    if let Some(cmp) = &c.comparison {
        let mid = |s: &crate::load::GroupSecond| s.second as f64 + 0.5;
        let variants = [
            ("candidate", CANDIDATE, &cmp.candidate),
            ("baseline", BASELINE, &cmp.baseline),
        ];
        let mut latency = Vec::new();
        let mut throughput = Vec::new();
        for (name, color, g) in variants {
            latency.push(Series {
                name,
                color,
                points: g.timeline.iter().map(|s| (mid(s), s.p99_ms)).collect(),
            });
            throughput.push(Series {
                name,
                color,
                points: g
                    .timeline
                    .iter()
                    .map(|s| (mid(s), Some((s.ok + s.failed) as f64)))
                    .collect(),
            });
        }
        h.push_str(&svg(&Chart {
            title: "p99 latency per second by variant (ms; the comparison window only)",
            y_label: "ms",
            series: latency,
            hlines: Vec::new(),
            markers: markers.clone(),
            shade,
            x_max,
        }));
        h.push_str(&svg(&Chart {
            title: "Answers per second by variant (the comparison window only)",
            y_label: "req/s",
            series: throughput,
            hlines: Vec::new(),
            markers: markers.clone(),
            shade,
            x_max,
        }));
        h.push_str("<table><tr><th></th><th>candidate</th><th>baseline</th><th>change</th></tr>");
        let (cd, bl) = (&cmp.candidate, &cmp.baseline);
        let _ = write!(
            h,
            "<tr><td>requests</td><td>{}</td><td>{}</td><td></td></tr>\
             <tr><td>p50</td><td>{:.1} ms</td><td>{:.1} ms</td><td>{:+.1}%</td></tr>\
             <tr><td>p99</td><td>{:.1} ms</td><td>{:.1} ms</td><td>{:+.1}%</td></tr>\
             <tr><td>error rate</td><td>{:.2}%</td><td>{:.2}%</td><td>{:+.2} points (95% CI {:+.2} to {:+.2}), Fisher p {:.4}</td></tr>",
            cd.ok + cd.failed,
            bl.ok + bl.failed,
            cd.latency_ms.p50,
            bl.latency_ms.p50,
            cmp.p50_change * 100.0,
            cd.latency_ms.p99,
            bl.latency_ms.p99,
            cmp.p99_change * 100.0,
            cmp.errors.candidate_rate * 100.0,
            cmp.errors.baseline_rate * 100.0,
            cmp.errors.difference * 100.0,
            cmp.errors.ci95.0 * 100.0,
            cmp.errors.ci95.1 * 100.0,
            cmp.errors.p_greater
        );
        match &cmp.latency {
            Some(l) => {
                let _ = write!(
                    h,
                    "<tr><td>Mann-Whitney U</td><td colspan=\"3\">U {:.0}, z {:.2}, one-sided p {:.4}, effect P(candidate slower) {:.3}, Hodges-Lehmann shift {:+.1} ms</td></tr>",
                    l.u, l.z, l.p_greater, l.effect, l.hodges_lehmann_ms
                );
            }
            None => h.push_str(
                "<tr><td>Mann-Whitney U</td><td colspan=\"3\">not computed: a variant had no answers</td></tr>",
            ),
        }
        h.push_str("</table>\n");
    }
    if let Some(sw) = &c.switch {
        let _ = write!(
            h,
            "<h2>Blue-green switch</h2><p>{} requests failed because of the switch (no service answered: timeouts, connection errors, HAProxy 502/503/504); {} 5xx answers came from the services themselves.{}</p><table><tr><th>t</th><th>candidate share</th><th>requests (candidate / baseline / none)</th><th>failed by the switch</th></tr>",
            sw.failures,
            sw.service_5xx,
            sw.error
                .as_ref()
                .map(|e| format!(" It did not complete: {}", esc(e)))
                .unwrap_or_default()
        );
        for st in &sw.steps {
            let n = |g: &str| st.requests.get(g).copied().unwrap_or(0);
            let _ = write!(
                h,
                "<tr><td>{:.1}s</td><td>{}%{}</td><td>{} / {} / {}</td><td>{}</td></tr>",
                st.t_s,
                st.candidate_weight,
                if st.drained { ", baseline drained" } else { "" },
                n("candidate"),
                n("baseline"),
                n(crate::load::UNGROUPED),
                st.switch_failures
            );
        }
        h.push_str("</table><p>HAProxy's counters of the switched servers over the switch:</p><table><tr><th>backend</th><th>server</th><th>sessions</th><th>hrsp_5xx</th><th>eresp</th><th>econ</th><th>wretr</th><th>wredis</th><th>weight / status at the end</th></tr>");
        for d in &sw.haproxy {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td></tr>",
                esc(&d.backend),
                esc(&d.server),
                d.sessions,
                d.hrsp_5xx,
                d.eresp,
                d.econ,
                d.wretr,
                d.wredis,
                d.weight,
                esc(&d.status)
            );
        }
        h.push_str("</table>\n");
    }
    h
}
