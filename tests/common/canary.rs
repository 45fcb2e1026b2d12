//! The canary harness shared by `tests/canary.rs` and `benches/canary.rs`: a packaged
//! project whose `dev` environment holds its own release (built, packaged, smoked alone and
//! promoted by the real binary), and `builder --json smoke` runs on it that check nothing of
//! theirs is left in Docker.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::OnceLock;

use serde_json::Value;

use super::{assert_nothing_left, builder, copy_tree, repo, run, run_watching, sh, text, Finished};

/// The packaged project whose `dev` environment holds its release (made once per process),
/// and the signing key beside it.
pub fn project() -> &'static (PathBuf, PathBuf) {
    static P: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    P.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("builder-canary-test-")
            .tempdir()
            .unwrap()
            .keep();
        for d in ["recipes", "services", "base-images"] {
            copy_tree(&repo().join(d), &dir.join(d));
        }
        // Outside the project: builder refuses to write a private key into it.
        let keys = tempfile::Builder::new()
            .prefix("builder-canary-keys-")
            .tempdir()
            .unwrap()
            .keep();
        let key = keys.join("signing.asc");
        let k = key.to_str().unwrap();
        let p = (dir, key.clone());
        sh(&mut cmd(
            &p,
            &["key", "generate", "--out", k, "--name", "canary test"],
        ));
        // The build cache volumes serve this one build (a static is never dropped, so no
        // TempProject removes them at the end): gone when the setup ends, however it ends.
        let _volumes = super::CacheVolumes(p.0.clone());
        sh(&mut cmd(&p, &["build"]));
        sh(&mut cmd(&p, &["package"]));
        let smoked = run(&mut cmd(
            &p,
            &["smoke", "--no-canary", "--duration", "5s", "--warmup", "1s"],
        ));
        assert!(smoked.status.success(), "{}", text(&smoked.stderr));
        sh(&mut cmd(&p, &["promote", "--to", "dev"]));
        p
    })
}

/// `builder --project P ARGS` with the project's signing key and no registry.
pub fn cmd(p: &(PathBuf, PathBuf), args: &[&str]) -> Command {
    let mut c = builder();
    c.arg("--project")
        .arg(&p.0)
        .args(args)
        .env("BUILDER_SIGNING_KEY_FILE", &p.1)
        .env_remove("BUILDER_SIGNING_KEY")
        .env_remove("BUILDER_REGISTRY");
    c
}

pub struct Run {
    pub code: i32,
    pub stderr: String,
    pub report: Value,
    pub dir: PathBuf,
    pub seconds: f64,
}

/// `builder --json smoke ARGS` on the shared project.
pub fn smoke(args: &[&str]) -> Run {
    let done = smoke_watching(args, |_, _| {});
    let report = done.json();
    let run_id = report["run_id"].as_str().unwrap().to_string();
    assert_nothing_left(&run_id);
    Run {
        code: done.code,
        stderr: done.stderr,
        dir: project().0.join("dist/smoke").join(&run_id),
        report,
        seconds: done.seconds,
    }
}

/// `builder --json smoke ARGS` on the shared project, calling `watch(line, child)` with
/// each line builder prints on stderr as it comes (to signal the child at a given moment).
pub fn smoke_watching(args: &[&str], watch: impl FnMut(&str, &Child)) -> Finished {
    run_watching(cmd(project(), &["--json", "smoke"]).args(args), watch)
}

pub fn check<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {}", r["checks"]))
}

pub fn failed_checks(r: &Value) -> Vec<String> {
    r["checks"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// The absolute thresholds held.
pub fn absolute_checks_pass(r: &Value) {
    for name in ["achieved_rate", "success_ratio", "p99_latency"] {
        assert_eq!(check(r, name)["passed"], true, "{}", check(r, name));
    }
}

/// `builder --json smoke` comparing with `dev` a candidate whose backend takes 50 ms more
/// per request (`extra`: more arguments, e.g. the target): the comparison alone rejects it
/// (exit 1, only `canary_latency` failed, the absolute thresholds held) and the load stops
/// at the verdict, with no switch.
pub fn slower_candidate_rejected(extra: &[&str]) -> Run {
    let (_d, stack) = stack_with_canary("baseline = \"dev\"");
    let mut args = vec![
        "--stack",
        stack.to_str().unwrap(),
        "--candidate-env",
        "backend:LATENCY=50ms",
        "--duration",
        "20s",
        "--warmup",
        "3s",
    ];
    args.extend_from_slice(extra);
    let run = smoke(&args);
    let r = &run.report;
    assert_eq!(run.code, 1, "{}", run.stderr);
    absolute_checks_pass(r);
    assert_eq!(failed_checks(r), ["canary_latency"], "{}", r["checks"]);
    assert!(r["canary"]["switch"].is_null(), "{}", r["canary"]);
    run
}

/// A copy of the project's stack.toml with a `[canary]` table appended.
pub fn stack_with_canary(table: &str) -> (tempfile::TempDir, PathBuf) {
    stack_with(|t| t.to_string(), table)
}

/// A copy of the project's stack.toml with `edit` applied and a `[canary]` table appended.
pub fn stack_with(edit: impl Fn(&str) -> String, table: &str) -> (tempfile::TempDir, PathBuf) {
    let text = edit(&std::fs::read_to_string(repo().join("recipes/stack.toml")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.toml");
    std::fs::write(&file, format!("{text}\n[canary]\n{table}\n")).unwrap();
    (dir, file)
}

/// The run's junit.xml and report.html (checked complete).
pub fn files(run: &Run) -> (String, String) {
    let junit = std::fs::read_to_string(run.dir.join("junit.xml")).unwrap();
    let html = std::fs::read_to_string(run.dir.join("report.html")).unwrap();
    assert!(html.trim_end().ends_with("</html>"));
    (junit, html)
}

/// Every file under the project's `dist/repos/ENV` with its content's sha256, sorted.
pub fn env_state(env: &str) -> Vec<(String, String)> {
    let root = project().0.join("dist/repos").join(env);
    let mut v: Vec<(String, String)> = walkdir::WalkDir::new(&root)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let rel = e.path().strip_prefix(&root).unwrap().display().to_string();
            let what = if e.file_type().is_file() {
                super::project::sha256_file(e.path())
            } else if e.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(e.path()).unwrap().display())
            } else {
                "dir".into()
            };
            (rel, what)
        })
        .collect();
    v.sort();
    v
}

/// Sends SIGINT to a child (as Ctrl-C does to the foreground process).
pub fn interrupt(child: &Child) {
    sh(Command::new("kill").args(["-INT", &child.id().to_string()]));
}
