//! `cargo bench --bench pool` (engine; root, it starts a second dockerd): wall time of
//! building both sample services from nothing (`--no-cache`: no output cache, no tool cache
//! volume) on one engine against two, side by side in one run.
//!
//! Rows: one engine (this machine's, as without a pool); two engines the first time (the
//! second engine gets the `go` builder image sent, streamed from the first); two engines
//! again (the image is there). The second engine is `tests/common/engine2.rs`: a dockerd on
//! the same machine, vfs storage, reached over TLS. Both engines share this machine's CPUs,
//! so two engines cannot be faster here than one running both builds at once; the bench
//! measures the pool's overhead (transfer, TLS, vfs), and on two machines the builds' CPU
//! time would divide instead. POOL_BENCH_RUNS (default 1) repeats the one- and two-engine
//! rows and prints the medians.
#![allow(clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Instant;

use common::engine2::SecondEngine;

/// Runs `builder --json build --no-cache` in `project`; returns the seconds, the engines
/// the builds ran on and builder's stderr.
fn build(project: &Path, engines_toml: Option<&str>) -> (f64, Vec<String>, String) {
    match engines_toml {
        Some(t) => std::fs::write(project.join("engines.toml"), t).expect("write engines.toml"),
        None => {
            let _ = std::fs::remove_file(project.join("engines.toml"));
        }
    }
    let started = Instant::now();
    let out = common::builder()
        .current_dir(project)
        .env_remove("BUILDER_ENGINES")
        .args(["--json", "build", "--no-cache"])
        .output()
        .expect("run builder");
    let secs = started.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "builder build failed:\n{err}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("build JSON");
    let mut engines: Vec<String> = json["builds"]
        .as_array()
        .expect("builds")
        .iter()
        .map(|b| b["engine"].as_str().unwrap_or("?").to_string())
        .collect();
    engines.sort();
    (secs, engines, err)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("POOL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let engine = SecondEngine::start();
    let project = common::TempProject::new();
    for sub in ["recipes", "services", "base-images"] {
        common::copy_tree(&common::repo().join(sub), &project.path().join(sub));
    }
    let toml = engine.engines_toml();
    // Makes the builder image on this machine's engine if needed (not timed).
    build(project.path(), None);

    let (first, engines, err) = build(project.path(), Some(&toml));
    let sent: Vec<&str> = err.lines().filter(|l| l.contains("Sent")).collect();
    println!("two engines, first build (image sent): {first:.1} s on {engines:?}");
    for l in sent {
        println!("  {}", l.trim());
    }
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (s, e, _) = build(project.path(), None);
        println!("one engine:  {s:.1} s on {e:?}");
        one.push(s);
        let (s, e, _) = build(project.path(), Some(&toml));
        println!("two engines: {s:.1} s on {e:?}");
        two.push(s);
    }
    let (one, two) = (median(&mut one), median(&mut two));
    println!(
        "both sample services, --no-cache, median of {runs}: one engine {one:.1} s, two engines \
         {two:.1} s = {:.2}x (first pool build with the image transfer: {first:.1} s)",
        two / one
    );
    println!("note: both engines run on this machine's {} CPUs", cpus());
    // TempProject's drop runs `builder gc --cache` on this machine's engine only.
    let _ = std::fs::remove_file(project.path().join("engines.toml"));
    drop(engine);
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
