//! `cargo bench --bench load`: `builder load` against `wrk` on the same local server.
//!
//! The server is `builder::load::testserver` (hyper, one thread with its own single-threaded
//! runtime, `GET /` → 200 `ok`). Both clients run as separate processes:
//! - max throughput: `wrk -t1 -c32 -d5s` versus `builder load --closed-loop 32 --duration 5s`
//!   (closed loop: 32 connections each sending its next request when the previous answer
//!   arrives, the same model as wrk). Prints builder/wrk; the target is ≥ 0.8.
//! - rate accuracy: the open model at 100, 1000 and 10000 req/s for 3 s each; prints the
//!   achieved rate's error and the server-side count.
//!
//! Env: `LOAD_BENCH_SECS` (default 5) for the throughput runs.
#![allow(clippy::print_stdout)]

use std::process::Command;

use builder::load::testserver::{ServerConfig, TestServer};
use builder::load::LoadReport;

fn builder_load(args: &[&str]) -> LoadReport {
    let out = Command::new(env!("CARGO_BIN_EXE_builder"))
        .args(["--quiet", "load", "--json"])
        .args(args)
        .output()
        .expect("run builder load");
    assert!(
        out.status.success(),
        "builder load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("builder load --json")
}

fn wrk(url: &str, secs: u64) -> Option<f64> {
    let out = Command::new("wrk")
        .args(["-t1", "-c32", &format!("-d{secs}s"), url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

fn main() {
    let secs: u64 = std::env::var("LOAD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let srv = TestServer::start(ServerConfig::default()).expect("test server");
    let url = srv.url("/");
    println!(
        "server: {url} (hyper, 1 thread); machine: {} cores",
        num_cpus()
    );

    // Warm both paths once (page cache, CPU frequency).
    let _ = wrk(&url, 1);

    let before = srv.requests();
    let wrk_rps = wrk(&url, secs);
    let wrk_seen = srv.requests() - before;
    let before = srv.requests();
    let d = format!("{secs}s");
    let b = builder_load(&[&url, "--closed-loop", "32", "--duration", &d]);
    let b_seen = srv.requests() - before;
    println!(
        "max throughput, 32 connections, {secs}s:\n  wrk -t1 -c32      {:>10.0} req/s ({wrk_seen} requests at the server)\n  builder closed-32 {:>10.0} req/s ({} ok, {} failed; {b_seen} at the server; p50 {:.3}ms p99 {:.3}ms)",
        wrk_rps.unwrap_or(f64::NAN),
        b.achieved_rate,
        b.ok,
        b.failed,
        b.latency_ms.p50,
        b.latency_ms.p99,
    );
    match wrk_rps {
        Some(w) if w > 0.0 => {
            let ratio = b.achieved_rate / w;
            println!(
                "  ratio builder/wrk = {ratio:.3} (target >= 0.8: {})",
                if ratio >= 0.8 { "met" } else { "NOT met" }
            );
        }
        _ => println!("  wrk not found or failed: install Debian's `wrk` package"),
    }

    println!("open model, fixed rates, 3s each:");
    for rate in [100u32, 1000, 10_000] {
        let before = srv.requests();
        let r = builder_load(&[&url, "--rate", &rate.to_string(), "--duration", "3s"]);
        let seen = srv.requests() - before;
        let err = (r.achieved_rate - f64::from(rate)) / f64::from(rate) * 100.0;
        println!(
            "  {rate:>6} req/s: achieved {:>9.2} ({err:+.3}%), sent {}, server saw {seen}, late {}, dropped {}, p50 {:.3}ms p99 {:.3}ms max {:.3}ms",
            r.achieved_rate,
            r.sent,
            r.late,
            r.dropped,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_ms.max,
        );
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
