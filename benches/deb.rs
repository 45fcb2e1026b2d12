//! builder's .deb writer against `dpkg-deb --build` on the same tree, for gzip, xz and zstd
//! at dpkg-deb's default levels (gzip 9, xz 6, zstd 3; `man dpkg-deb`, `-z`).
//!
//! Run: `cargo bench --bench deb`. The input tree (~270 MB: large compressible binaries,
//! text, thousands of small files) is generated once under `target/bench-data/` and reused.
//! `BENCH_RUNS=N` repeats each measurement and keeps the fastest; `BENCH_ONLY=gzip` limits
//! the compressions. `BENCH_TREE=DIR` packs a copy of a real directory instead (made once
//! under `target/bench-data/copy-<name>/`), e.g. a tree of system binaries and headers. builder also computes md5sums while it packs; dpkg-deb gets a
//! ready-made DEBIAN/md5sums (as dh_md5sums would leave), so builder does more work.
#![allow(clippy::print_stdout)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use builder::archive::{FileSource, Tree};
use builder::deb::{write_deb, Compression, DebSpec};

const MARKER: &str = "complete-v1";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Binary-like data: a mix of random blocks, repeats of earlier blocks with small
/// mutations, and low-entropy runs, so it compresses about as well as real executables.
fn binary(rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        let block = 4096;
        match rng.next() % 10 {
            0..=2 => (0..block / 8).for_each(|_| out.extend_from_slice(&rng.next().to_le_bytes())),
            3..=6 if out.len() > 1 << 20 => {
                let start = (rng.next() as usize) % (out.len() - block);
                let mut copy = out[start..start + block].to_vec();
                for _ in 0..16 {
                    let i = rng.next() as usize % block;
                    copy[i] = rng.next() as u8;
                }
                out.extend_from_slice(&copy);
            }
            _ => (0..block)
                .for_each(|_| out.push(b"\0\0\0\0\x48\x89\xe5\x8b"[(rng.next() % 8) as usize])),
        }
    }
    out.truncate(size);
    out
}

fn text(rng: &mut Rng, size: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the", "package", "service", "request", "handler", "config", "value", "error", "return",
        "function", "let", "match", "struct", "impl", "for", "while", "if", "else", "none", "some",
        "result", "string", "vector", "server", "client", "timeout", "retry", "budget",
    ];
    let mut out = Vec::with_capacity(size + 64);
    while out.len() < size {
        let n = rng.next();
        out.extend_from_slice(WORDS[(n % WORDS.len() as u64) as usize].as_bytes());
        out.push(if n % 11 == 0 { b'\n' } else { b' ' });
        if n % 97 == 0 {
            out.extend_from_slice(format!("{}", n % 100_000).as_bytes());
        }
    }
    out.truncate(size);
    out
}

const CONTROL: &str = "Package: bench\nVersion: 1.0\nArchitecture: amd64\n\
                       Maintainer: Bench <b@example.com>\nDescription: benchmark tree\n";

/// Copies `src` once into `base/tree` (a copy, so the DEBIAN/ files dpkg-deb needs never
/// touch the original); returns the copy's root.
fn copied_tree(base: &Path, src: &Path) -> PathBuf {
    let root = base.join("tree");
    if base.join(MARKER).exists() {
        return root;
    }
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    println!("copying {} to {} (once)", src.display(), root.display());
    let st = Command::new("cp")
        .arg("-a")
        .arg(src.join("."))
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} failed", src.display());
    let _ = fs::remove_dir_all(root.join("DEBIAN"));
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::write(root.join("DEBIAN/control"), CONTROL).unwrap();
    fs::write(base.join(MARKER), "").unwrap();
    root
}

/// Generates the tree once; returns its root (which also holds DEBIAN/control for dpkg-deb).
fn tree_dir(base: &Path) -> PathBuf {
    let root = base.join("tree");
    if base.join(MARKER).exists() {
        return root;
    }
    let _ = fs::remove_dir_all(&root);
    println!(
        "generating the benchmark tree under {} (once)",
        root.display()
    );
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let bin = root.join("usr/lib/bench");
    fs::create_dir_all(&bin).unwrap();
    for i in 0..4 {
        fs::write(bin.join(format!("big{i}.bin")), binary(&mut rng, 50 << 20)).unwrap();
    }
    let doc = root.join("usr/share/doc/bench");
    fs::create_dir_all(&doc).unwrap();
    for i in 0..200 {
        fs::write(
            doc.join(format!("text{i:03}.txt")),
            text(&mut rng, 200 << 10),
        )
        .unwrap();
    }
    for i in 0..5000 {
        let d = root.join(format!(
            "usr/share/bench/d{:02}/e{:02}",
            i % 50,
            (i / 50) % 10
        ));
        fs::create_dir_all(&d).unwrap();
        let size = 512 + (rng.next() % 8000) as usize;
        let content = if i % 3 == 0 {
            binary(&mut rng, size)
        } else {
            text(&mut rng, size)
        };
        fs::write(d.join(format!("f{i:05}.dat")), content).unwrap();
    }
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::write(root.join("DEBIAN/control"), CONTROL).unwrap();
    fs::write(base.join(MARKER), "").unwrap();
    root
}

/// dpkg-deb does not make md5sums (dh_md5sums does, before it); give its tree one so both
/// packages hold the same files and the sizes compare fairly. Returns how long making it
/// took (the step builder does inside its one pass), for the end-to-end ratio.
fn make_md5sums(root: &Path, runs: usize) -> Duration {
    let (wall, _) = timed(runs, || {
        let out = Command::new("sh")
            .arg("-c")
            .arg("find usr -type f -print0 | sort -z | xargs -0 md5sum")
            .current_dir(root)
            .output()
            .unwrap();
        assert!(out.status.success());
        fs::write(root.join("DEBIAN/md5sums"), out.stdout).unwrap();
    });
    wall
}

fn builder_tree(root: &Path) -> Tree {
    let mut tree = Tree::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(root).unwrap().to_str().unwrap();
        if rel == "DEBIAN" || rel.starts_with("DEBIAN/") {
            continue;
        }
        let mode = entry.metadata().unwrap().permissions().mode() & 0o7777;
        if entry.file_type().is_dir() {
            tree.add_dir(rel, mode).unwrap();
        } else if entry.file_type().is_symlink() {
            let target = fs::read_link(entry.path()).unwrap();
            tree.add_symlink(rel, target.to_str().unwrap()).unwrap();
        } else {
            tree.add_file(rel, mode, FileSource::Path(entry.path().to_path_buf()))
                .unwrap();
        }
    }
    tree
}

/// CPU seconds (user + system) used so far by this process and by its waited-for children,
/// from /proc/self/stat (fields 14-17, in clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<f64> = after.split(' ').map(|x| x.parse().unwrap_or(0.0)).collect();
    // after the comm field: state is index 0, utime index 11 ... cstime index 14
    (f[11] + f[12] + f[13] + f[14]) / 100.0
}

/// Fastest wall time of `runs` runs and the CPU time of that run. On a shared machine the
/// CPU time is the steadier number.
fn timed<F: FnMut()>(runs: usize, mut f: F) -> (Duration, f64) {
    (0..runs)
        .map(|_| {
            let cpu = cpu_seconds();
            let t = Instant::now();
            f();
            (t.elapsed(), cpu_seconds() - cpu)
        })
        .min_by_key(|(wall, _)| *wall)
        .unwrap()
}

fn main() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    let (base, root) = match std::env::var_os("BENCH_TREE") {
        Some(src) => {
            let src = fs::canonicalize(&src).expect("BENCH_TREE must name an existing directory");
            let name: String = src
                .to_string_lossy()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            let base = data.join(format!("copy{name}"));
            fs::create_dir_all(&base).unwrap();
            let root = copied_tree(&base, &src);
            (base, root)
        }
        None => {
            fs::create_dir_all(&data).unwrap();
            let root = tree_dir(&data);
            (data, root)
        }
    };
    let out = base.join("out");
    fs::create_dir_all(&out).unwrap();
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let md5sums = make_md5sums(&root, runs);
    let only = std::env::var("BENCH_ONLY").ok();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("threads available: {threads}, runs per measurement: {runs}");
    println!(
        "md5sums for dpkg-deb's tree (`md5sum`, as dh_md5sums): {:.2}s; `+md5` is builder / \
         (md5sum + dpkg-deb), the whole job",
        md5sums.as_secs_f64()
    );
    println!(
        "{:<6} {:>10} {:>10} {:>7} {:>7} {:>9} {:>9} {:>14} {:>14} {:>7}",
        "comp",
        "builder s",
        "dpkg-deb s",
        "ratio",
        "+md5",
        "cpu ours",
        "cpu dpkg",
        "builder bytes",
        "dpkg-deb bytes",
        "size"
    );
    for (name, c, level) in [
        ("gzip", Compression::Gzip, "9"),
        ("xz", Compression::Xz, "6"),
        ("zstd", Compression::Zstd, "3"),
    ] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let ours = out.join(format!("builder-{name}.deb"));
        let theirs = out.join(format!("dpkg-deb-{name}.deb"));
        let (dpkg_time, dpkg_cpu) = timed(runs, || {
            let st = Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Z", name, "-z", level, "--build"])
                .arg(&root)
                .arg(&theirs)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(st.success());
        });
        let (builder_time, builder_cpu) = timed(runs, || {
            let spec = DebSpec {
                control: vec![
                    ("Package".into(), "bench".into()),
                    ("Version".into(), "1.0".into()),
                    ("Architecture".into(), "amd64".into()),
                    ("Maintainer".into(), "Bench <b@example.com>".into()),
                    ("Description".into(), "benchmark tree".into()),
                ],
                data: builder_tree(&root),
                conffiles: vec![],
                scripts: vec![],
                compression: c,
                mtime: 1_700_000_000,
            };
            write_deb(&spec, &ours).unwrap();
        });
        let ours_size = fs::metadata(&ours).unwrap().len();
        let theirs_size = fs::metadata(&theirs).unwrap().len();
        println!(
            "{:<6} {:>10.2} {:>10.2} {:>7.2} {:>7.2} {:>9.1} {:>9.1} {:>14} {:>14} {:>+6.2}%",
            name,
            builder_time.as_secs_f64(),
            dpkg_time.as_secs_f64(),
            builder_time.as_secs_f64() / dpkg_time.as_secs_f64(),
            builder_time.as_secs_f64() / (dpkg_time + md5sums).as_secs_f64(),
            builder_cpu,
            dpkg_cpu,
            ours_size,
            theirs_size,
            (ours_size as f64 / theirs_size as f64 - 1.0) * 100.0,
        );
    }
}
