//! Helpers shared by the integration tests: run the real binary, make fixture projects.
#![allow(dead_code)]

pub mod apt;
pub mod canary;
pub mod engine2;
pub mod project;
pub mod registry;
pub mod swarm2;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

/// `gpgv --keyring KEYRING ARGS...`: how apt checks a signature.
pub fn gpgv(keyring: &Path, args: &[&Path]) -> Output {
    Command::new("gpgv")
        .arg("--keyring")
        .arg(keyring)
        .args(args)
        .output()
        .unwrap()
}

/// The repository root (where Cargo.toml is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cache shared by all tests (base rootfs tars, builder images are keyed by content).
pub fn test_cache() -> PathBuf {
    repo().join("target").join("builder-test-cache")
}

/// `builder` with a plain, non-interactive environment: CI output, the shared test cache,
/// and nothing inherited from the caller's shell that changes results (a signing key, a
/// registry, a fixed timestamp). Every test file starts its commands here.
pub fn builder() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_builder"));
    c.env("CI", "true")
        .env("BUILDER_CACHE", test_cache())
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("BUILDER_SIGNING_KEY")
        .env_remove("BUILDER_SIGNING_KEY_FILE")
        .env_remove("BUILDER_REGISTRY");
    c
}

/// A temp project for a test that builds. Dropped, however the test ends, it removes the
/// project's `[build] cache` volumes (they outlive runs on purpose, so nothing else does),
/// then the directory.
pub struct TempProject {
    dir: tempfile::TempDir,
}

impl TempProject {
    pub fn new() -> TempProject {
        TempProject {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TempProject {
    fn default() -> Self {
        TempProject::new()
    }
}

impl Drop for TempProject {
    fn drop(&mut self) {
        remove_cache_volumes(self.path());
    }
}

/// Removes the `[build] cache` volumes of `project`.
fn remove_cache_volumes(project: &Path) {
    // `--cache` takes this project's volumes only; `--run` with an id no run has keeps
    // `gc` from collecting other live tests' containers and networks.
    let _ = builder()
        .arg("--project")
        .arg(project)
        .args(["gc", "--cache", "--run"])
        .arg(format!("none-{}", std::process::id()))
        .output();
}

/// The cache volumes of a kept project (its directory stays for the reports in it),
/// removed when dropped, however the test ends.
pub struct CacheVolumes(pub PathBuf);

impl Drop for CacheVolumes {
    fn drop(&mut self) {
        remove_cache_volumes(&self.0);
    }
}

/// Runs `cmd` to the end with its output captured; returns the output and the pid it ran
/// as (what builder labels its containers with).
pub fn output_and_pid(cmd: &mut Command) -> (Output, u32) {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    let pid = child.id();
    (child.wait_with_output().unwrap(), pid)
}

/// `docker create`/`network create` arguments labelling an object as builder's, of run `run`
/// made by process `pid`: what `builder gc` judges leftovers by.
pub fn run_label_args(run: &str, pid: &str) -> Vec<String> {
    [
        "io.builder=1".to_string(),
        format!("io.builder.run={run}"),
        format!("io.builder.pid={pid}"),
    ]
    .into_iter()
    .flat_map(|l| ["--label".to_string(), l])
    .collect()
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("could not run builder")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Writes `files` (path, content) under `root`, creating directories.
pub fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (p, content) in files {
        let full = root.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, content).unwrap();
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Copies a directory tree (files and symlinks).
pub fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else if e.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// A temp project with the repository's base definitions and archive.toml (not its lock:
/// the tests resolve against today's archive).
pub fn bases_only() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("base-images"), &dir.path().join("base-images"));
    std::fs::copy(repo().join("archive.toml"), dir.path().join("archive.toml")).unwrap();
    dir
}

/// A finished command's exit code and output, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Nothing labelled with smoke run `run_id` is left in Docker: containers or networks.
pub fn assert_nothing_left(run_id: &str) {
    let filter = format!("label=io.builder.run={run_id}");
    let ps = sh(Command::new("docker").args(["ps", "-aq", "--filter", &filter]));
    assert!(
        ps.trim().is_empty(),
        "containers of run {run_id} left: {ps}"
    );
    let nets = sh(Command::new("docker").args(["network", "ls", "-q", "--filter", &filter]));
    assert!(
        nets.trim().is_empty(),
        "networks of run {run_id} left: {nets}"
    );
}

/// A temp copy of the sample project (kept: the caller's reports are in it), built and
/// packaged by the real binary.
pub fn packaged_sample_project(prefix: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap()
        .keep();
    for d in ["recipes", "services", "base-images"] {
        copy_tree(&repo().join(d), &dir.join(d));
    }
    // The build cache volumes serve this one build: removed when it is done, also when the
    // build fails (a shared project in a static is never dropped).
    let _volumes = CacheVolumes(dir.clone());
    sh(builder().arg("--project").arg(&dir).arg("build"));
    sh(builder().arg("--project").arg(&dir).arg("package"));
    dir
}

/// How a `builder` process run by [`run_watching`] ended.
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub seconds: f64,
}

impl Finished {
    /// The run id from the line naming the smoke network (`network builder-smoke-ID`).
    pub fn run_id(&self) -> Option<String> {
        let i = self.stderr.find("network builder-smoke-")?;
        let id = self.stderr[i + 22..].split_whitespace().next()?;
        Some(id.to_string())
    }

    /// stdout as JSON (`--json` runs), or a panic showing both streams.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "--json output is not JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Spawns `cmd` with stdout and stderr piped; stdout is read on a thread (so a full pipe
/// never blocks the child), whose handle gives it once the child closed it. The caller
/// reads stderr.
pub fn spawn_piped(cmd: &mut Command) -> (Child, std::thread::JoinHandle<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    (child, out)
}

/// Runs `cmd` with stdout and stderr piped, calling `watch(line, child)` with each line it
/// prints on stderr as it comes (to act on the deployment, or signal the child, at a given
/// moment), and collects both streams.
pub fn run_watching(cmd: &mut Command, mut watch: impl FnMut(&str, &Child)) -> Finished {
    let started = Instant::now();
    let (mut child, out) = spawn_piped(cmd);
    let mut stderr = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        watch(&line, &child);
        stderr.push_str(&line);
        stderr.push('\n');
    }
    let status = child.wait().unwrap();
    Finished {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap(),
        stderr,
        seconds: started.elapsed().as_secs_f64(),
    }
}
