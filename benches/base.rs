//! Package-set bases against debootstrap: the `slim` base (every `Priority: required`
//! package but apt, plus ca-certificates, tzdata and usr-is-merged) made by builder from an
//! empty cache (index, resolve, lock, parallel downloads, assembly, rootfs tar) against
//! `debootstrap --variant=minbase` of the same packages into an empty cache directory,
//! measured side by side in one run; then builder's warm assembly (every .deb cached, the
//! lock current: unpack and write the ~100 MB rootfs tar), and the cold run with a lock
//! (downloads only, no index).
//!
//! Run: `cargo bench --bench base` as root (debootstrap needs it), with the network to the
//! host's Debian mirror. `BENCH_RUNS=N` (default 3) repeats the warm measurement (median).
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use builder::base::BaseImages;
use builder::report::Reporter;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn project() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("base-images"))?;
    std::fs::copy(
        Path::new(REPO).join("base-images/slim.toml"),
        dir.path().join("base-images/slim.toml"),
    )?;
    std::fs::copy(
        Path::new(REPO).join("archive.toml"),
        dir.path().join("archive.toml"),
    )?;
    Ok(dir)
}

/// builder makes the slim rootfs tar with `cache` as BUILDER_CACHE; returns the time, the
/// tar size and the locked package names.
fn builder_slim(project: &Path, cache: &Path) -> anyhow::Result<(Duration, u64, Vec<String>)> {
    std::env::set_var("BUILDER_CACHE", cache);
    let start = Instant::now();
    let bases = BaseImages::load(project)?;
    let rootfs = bases.rootfs("slim", &Reporter::quiet())?;
    let took = start.elapsed();
    let set = bases
        .locked_set("slim")?
        .ok_or_else(|| anyhow::anyhow!("slim not locked"))?;
    let names = set.packages.iter().map(|p| p.name.clone()).collect();
    Ok((took, rootfs.size, names))
}

fn mirror() -> String {
    builder::debian::source::host_sources()
        .get("bookworm")
        .map(|s| s.uri.clone())
        .unwrap_or_default()
}

fn debootstrap(target: &Path, cache: &Path) -> anyhow::Result<Duration> {
    // minbase installs the required packages and apt; the others are included, apt excluded.
    let include: Vec<&str> = ["ca-certificates", "tzdata", "usr-is-merged"].to_vec();
    let start = Instant::now();
    let out = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", include.join(",")))
        .arg("--exclude=apt")
        .arg(format!("--cache-dir={}", cache.display()))
        .arg("bookworm")
        .arg(target)
        .arg(mirror())
        .output()?;
    let took = start.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "debootstrap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(took)
}

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let work = tempfile::tempdir()?;

    // Cold, no lock: index + resolve + downloads + assembly.
    let p = project()?;
    let cold_cache = work.path().join("cold");
    let (cold, size, names) = builder_slim(p.path(), &cold_cache)?;
    // Cold with the lock: a second project holding the lock the first one wrote.
    let q = project()?;
    std::fs::copy(p.path().join("builder.lock"), q.path().join("builder.lock"))?;
    let (cold_locked, _, _) = builder_slim(q.path(), &work.path().join("cold-locked"))?;
    // Warm: every .deb cached; the rootfs tar removed before each run.
    let mut warm = Vec::new();
    for _ in 0..runs {
        let bases_dir = cold_cache.join("bases");
        if let Ok(rd) = std::fs::read_dir(&bases_dir) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        warm.push(builder_slim(p.path(), &cold_cache)?.0);
    }
    let warm = median(warm);

    // debootstrap of the same packages, empty cache.
    let target = work.path().join("debootstrap-root");
    let deb_cache = work.path().join("debootstrap-cache");
    std::fs::create_dir_all(&deb_cache)?;
    let deboot = debootstrap(&target, &deb_cache)?;
    let deboot_count = std::fs::read_to_string(target.join("var/lib/dpkg/status"))
        .map(|s| {
            s.matches("\nStatus: install ok installed").count()
                + usize::from(s.starts_with("Status: install ok installed"))
        })
        .unwrap_or(0);
    let _ = Command::new("rm").arg("-rf").arg(&target).status();

    println!(
        "slim package set: {} packages, rootfs tar {:.1} MB",
        names.len(),
        size as f64 / 1e6
    );
    println!("debootstrap --variant=minbase (same packages): {deboot_count} packages installed");
    println!();
    println!("| measurement | builder | debootstrap | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| cold, empty cache, no lock (index, resolve, download, assemble) | {:.1} s | {:.1} s | {:.2}× |",
        cold.as_secs_f64(),
        deboot.as_secs_f64(),
        cold.as_secs_f64() / deboot.as_secs_f64()
    );
    println!(
        "| cold, empty cache, with builder.lock (download, assemble) | {:.1} s | {:.1} s | {:.2}× |",
        cold_locked.as_secs_f64(),
        deboot.as_secs_f64(),
        cold_locked.as_secs_f64() / deboot.as_secs_f64()
    );
    println!(
        "| warm package cache: assembly of the {:.0} MB rootfs (median of {runs}) | {:.2} s | | target ≤ 2 s |",
        size as f64 / 1e6,
        warm.as_secs_f64()
    );
    Ok(())
}
