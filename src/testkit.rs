//! Fixtures the in-crate tests share (compiled only for `cargo test`): a project in a temp
//! directory with a signing key outside dist/, .debs from builder's own writer, the smoke
//! gate's checks of a made-up load run, and smoke reports written and signed as the smoke
//! stage writes and signs them, and a seeded PRNG. Nothing here needs Docker, the network or a tool outside the
//! crate, so every test built on it belongs to the fast tier.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::archive::{FileSource, Tree};
use crate::deb::{Compression, DebSpec};
use crate::load::{LoadReport, Percentiles, StoppedBy};
use crate::project::Paths;
use crate::sign::Signer;
use crate::smoke::gate::{self, Check};
use crate::smoke::stack::Thresholds;

/// The thresholds the gate tests use: 98% of the rate, 98% success, p99 within 1 s.
pub(crate) const THRESHOLDS: Thresholds = Thresholds {
    min_rate_ratio: 0.98,
    min_success: 0.98,
    max_p99_ms: 1000.0,
};

/// A 50 req/s open-model run of 1,000 requests with these outcomes.
pub(crate) fn load_report(achieved: f64, success: f64, p99: f64) -> LoadReport {
    LoadReport {
        mode: "open".into(),
        requested_rate: 50.0,
        achieved_rate: achieved,
        ok_rate: achieved * success,
        sent: 1000,
        ok: (1000.0 * success) as u64,
        failed: 1000 - (1000.0 * success) as u64,
        late: 0,
        dropped: 0,
        aborted: 0,
        success_ratio: success,
        latency_ms: Percentiles {
            p99,
            ..Default::default()
        },
        status_counts: Default::default(),
        error_counts: Default::default(),
        targets: vec![],
        timeline: vec![],
        duration_s: 20.0,
        measured_s: 20.0,
        warmup_s: 0.0,
        timeout_s: 2.0,
        late_tolerance_ms: 10.0,
        max_in_flight: 1024,
        max_requests: None,
        stopped_by: StoppedBy::Duration,
        groups: Default::default(),
    }
}

/// The gate's verdict on such a run, check by check, as the smoke stage computes it.
pub(crate) fn gate_checks(achieved: f64, success: f64, p99: f64) -> Vec<Check> {
    gate::evaluate(&THRESHOLDS, 50.0, &load_report(achieved, success, p99))
}

/// A run every threshold passes.
pub(crate) fn passing() -> Vec<Check> {
    gate_checks(49.9, 0.995, 300.0)
}

/// A new signing key `<dir>/<name>.asc` (armored secret, as `builder key generate` writes).
pub(crate) fn key(dir: &Path, name: &str) -> (PathBuf, Signer) {
    let (secret, _) = crate::sign::generate_key(&format!("{name} <{name}@example.com>")).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}.asc"));
    std::fs::write(&path, &secret).unwrap();
    (path, Signer::from_armored(&secret).unwrap())
}

/// Writes a .deb of `name` `version` (amd64) holding `payload` at `out`; its sha256 (hex).
pub(crate) fn write_deb(out: &Path, name: &str, version: &str, payload: &str) -> String {
    let mut data = Tree::new();
    data.add_file(
        &format!("usr/share/{name}/payload"),
        0o644,
        FileSource::Bytes(Arc::from(payload.as_bytes())),
    )
    .unwrap();
    let control = [
        ("Package", name),
        ("Version", version),
        ("Architecture", "amd64"),
        ("Maintainer", "Tests <tests@example.com>"),
        (
            "Description",
            "a package for tests\n written by builder's own writer",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let spec = DebSpec {
        control,
        data,
        conffiles: Vec::new(),
        scripts: Vec::new(),
        compression: Compression::Gzip,
        mtime: 1_700_000_000,
    };
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    crate::deb::write_deb(&spec, out).unwrap().sha256.hex()
}

/// The sha256 (hex) of a file.
pub(crate) fn sha256(path: &Path) -> String {
    crate::digest::Digest::of_file(path).unwrap().hex()
}

/// Flips one byte in the middle of a file.
pub(crate) fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// Every file and link under `dir` with its sha256 or target, except the lock file (taking
/// a lock is not a change): equal before and after means nothing a reader sees changed.
pub(crate) fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let Ok(e) = e else { continue };
        let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
        let t = e.file_type();
        let what = if t.is_symlink() {
            format!("-> {}", std::fs::read_link(e.path()).unwrap().display())
        } else if t.is_file() {
            sha256(e.path())
        } else {
            "dir".into()
        };
        if rel != ".lock" {
            out.push((rel, what));
        }
    }
    out
}

/// Runs a future to its end on a runtime of its own (promotion hashes on blocking threads).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Makes `finished` strictly increase across reports, so "the latest" is well defined.
static FINISHED: AtomicU64 = AtomicU64::new(0);

/// A project in a temp directory with a signing key outside dist/.
pub(crate) struct Project {
    pub dir: tempfile::TempDir,
    pub paths: Paths,
    /// The project's key, as `--signing-key` names it.
    pub key: PathBuf,
    pub signer: Signer,
}

impl Project {
    pub(crate) fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let (key, signer) = key(&dir.path().join("keys"), "project");
        Project {
            dir,
            paths,
            key,
            signer,
        }
    }

    pub(crate) fn dist(&self) -> &Path {
        &self.paths.dist
    }

    /// `dist/repos/<env>`, where promotion publishes by default.
    pub(crate) fn env_dir(&self, env: &str) -> PathBuf {
        self.dist().join("repos").join(env)
    }

    /// Writes `dist/debs/demo_<version>_amd64.deb`; returns it as a smoke report lists it
    /// (copied from the manifest, sha256 in bare hex).
    pub(crate) fn deb(&self, version: &str) -> Value {
        let rel = format!("debs/demo_{version}_amd64.deb");
        let sha = write_deb(&self.dist().join(&rel), "demo", version, version);
        json!({
            "kind": "deb", "name": "demo", "version": version, "architecture": "amd64",
            "path": rel, "sha256": sha, "size": 1,
        })
    }

    /// Run `run`'s report.json as the smoke stage writes it: a gate run whose verdict and
    /// reasons follow from `checks`, approving `artifacts`.
    pub(crate) fn report_json(&self, run: &str, checks: &[Check], artifacts: &Value) -> Value {
        let passed = gate::verdict(gate::ReportMode::Gate, checks);
        let reasons: Vec<&str> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.message.as_str())
            .collect();
        let n = FINISHED.fetch_add(1, Ordering::SeqCst);
        json!({
            "schema": 1,
            "run_id": run,
            "mode": "gate",
            "passed": passed,
            "started": "2030-01-01T00:00:00Z",
            "finished": format!("2030-01-01T{:02}:{:02}:{:02}Z", n / 3600 % 24, n / 60 % 60, n % 60),
            "checks": checks,
            "reasons": reasons,
            "artifacts": artifacts,
        })
    }

    /// [`Self::report_json`] written and signed with the project's key, as `builder smoke`
    /// signs it.
    pub(crate) fn report(&self, run: &str, checks: &[Check], artifacts: &Value) -> PathBuf {
        let report = self.report_json(run, checks, artifacts);
        self.write_report(run, &report, Some(&self.signer))
    }

    /// Writes `report` as run `run`'s report.json, with a detached signature by `signer`
    /// (none without one); returns its path.
    pub(crate) fn write_report(
        &self,
        run: &str,
        report: &Value,
        signer: Option<&Signer>,
    ) -> PathBuf {
        let dir = self.dist().join("smoke").join(run);
        std::fs::create_dir_all(&dir).unwrap();
        let bytes = serde_json::to_vec_pretty(report).unwrap();
        let signature = dir.join(crate::smoke::report::SIGNATURE_FILE);
        match signer {
            Some(s) => std::fs::write(&signature, s.detached_sign(&bytes).unwrap()).unwrap(),
            None => {
                let _ = std::fs::remove_file(&signature);
            }
        }
        let path = dir.join("report.json");
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// Small deterministic PRNG (xorshift64*), so failures reproduce and simulations give the
/// same numbers on every run.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Uniform in (0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}
