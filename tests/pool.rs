//! Builds over a pool of Docker engines (issue 15, item 1): the engine this machine runs
//! (`DOCKER_HOST`, "a") and a second dockerd the test starts ("b": its own data root, exec
//! root, containerd namespace, a unix socket and a TLS tcp port with certificates the test
//! makes with `openssl`, vfs storage, a bridge interface of its own). The sample services build
//! on both at once with the same keys and bytes as on one engine; b is killed while its build
//! container runs and the build finishes on a, reported as retried. Configuration errors and an
//! unreachable engine need no second daemon.
//!
//! The second daemon is `tests/common/engine2.rs` (shared with `benches/pool.rs`).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::engine2::{engine_a, SecondEngine};
use common::{repo, text, TempProject};

/// The sample project (recipes, services, base images) in a temp directory.
fn sample_project() -> TempProject {
    let dir = TempProject::new();
    for sub in ["recipes", "services", "base-images"] {
        common::copy_tree(&repo().join(sub), &dir.path().join(sub));
    }
    dir
}

fn builder(project: &Path) -> Command {
    let mut c = common::builder();
    c.current_dir(project).env_remove("BUILDER_ENGINES");
    c
}

fn both(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

/// Runs `builder build --json`: its output and report. It must pass and leave no container
/// (labelled with its pid) on this machine's engine.
fn build_json(cmd: &mut Command) -> (Output, serde_json::Value) {
    let (out, pid) = common::output_and_pid(cmd);
    assert!(out.status.success(), "build failed: {}", both(&out));
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    assert_eq!(containers_of(pid, &engine_a()), "", "containers left on a");
    (out, json)
}

fn entry<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["builds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no build of {name} in {json}"))
}

/// `(key, outputs)` of each build, by name.
fn keys_and_outputs(json: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
    let mut v: Vec<_> = json["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["key"].as_str().unwrap().to_string(),
                b["outputs"].clone(),
            )
        })
        .collect();
    v.sort_by(|x, y| x.0.cmp(&y.0));
    v
}

/// sha256 of each file under `dir` (relative path → digest), the build stamp left out.
fn tree_digests(dir: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.unwrap();
        if e.file_type().is_file() && e.file_name() != ".builder-build.json" {
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            v.push((rel, common::project::sha256_file(e.path())));
        }
    }
    v
}

/// Containers on engine `host` made by the builder process `pid`.
fn containers_of(pid: u32, host: &str) -> String {
    let out = Command::new("docker")
        .env("DOCKER_HOST", host)
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=io.builder.pid={pid}"))
        .output()
        .unwrap();
    text(&out.stdout).trim().to_string()
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn two_engines_build_at_once_same_bytes_and_a_lost_build_is_retried() {
    let mut b = SecondEngine::start();
    let reference = sample_project();
    let pooled = sample_project();

    // One engine, as before pools: the reference keys and bytes.
    let (_, one) = build_json(builder(reference.path()).args(["--json", "build", "--no-cache"]));
    let want = keys_and_outputs(&one);
    let want_tree: Vec<_> = ["backend", "frontend"]
        .iter()
        .map(|n| tree_digests(&reference.path().join("dist/build").join(n)))
        .collect();

    std::fs::write(pooled.path().join("engines.toml"), b.engines_toml()).unwrap();
    let plan = builder(pooled.path()).arg("plan").output().unwrap();
    assert!(plan.status.success(), "{}", both(&plan));
    let plan_text = text(&plan.stdout);
    assert_eq!(
        plan_text.matches("  engine   ").count(),
        2,
        "plan names an engine per build:\n{plan_text}"
    );
    assert!(plan_text.contains("  engine   a"), "{plan_text}");
    assert!(plan_text.contains("  engine   b"), "{plan_text}");

    // Both services at once, one on each engine; b gets the builder image sent.
    let started = Instant::now();
    let (out, two) = build_json(builder(pooled.path()).args(["--json", "build", "--no-cache"]));
    let pool_secs = started.elapsed().as_secs_f64();
    let mut engines: Vec<&str> = ["backend", "frontend"]
        .iter()
        .map(|n| entry(&two, n)["engine"].as_str().unwrap())
        .collect();
    engines.sort();
    assert_eq!(engines, ["a", "b"], "{two}");
    let err = text(&out.stderr);
    assert!(
        err.contains("to engine `b`"),
        "the image was sent to b:\n{err}"
    );
    assert_eq!(keys_and_outputs(&two), want, "same keys and output digests");
    for (i, n) in ["backend", "frontend"].iter().enumerate() {
        assert_eq!(
            tree_digests(&pooled.path().join("dist/build").join(n)),
            want_tree[i],
            "{n}: same bytes as the one-engine build"
        );
    }
    eprintln!("pool build (with the image sent to b): {pool_secs:.1}s");

    // `builder gc` covers b too: a labelled container of a dead process on b goes.
    let dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    let _ = dead.wait_with_output();
    let image = text(
        &b.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .stdout,
    );
    let image = image
        .lines()
        .find(|l| l.starts_with("builder/go:"))
        .unwrap();
    let run = format!("pooltest-{}", std::process::id());
    let mut args = vec!["create".to_string()];
    args.extend(common::run_label_args(&run, &dead_pid.to_string()));
    args.extend(["--name", "builder-pool-leftover", image, "true"].map(String::from));
    let made = b.docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(made.status.success(), "{}", both(&made));
    let gc = builder(pooled.path())
        .args(["gc", "--run", &run])
        .output()
        .unwrap();
    assert!(gc.status.success(), "{}", both(&gc));
    assert!(
        text(&gc.stdout).contains("removed container b: "),
        "{}",
        both(&gc)
    );
    let left = b.docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=io.builder.run={run}"),
    ]);
    assert_eq!(text(&left.stdout).trim(), "", "gc left it on b");

    // Again, and b dies while its build container runs: that build finishes on a.
    let mut child = builder(pooled.path())
        .args(["--json", "build", "--no-cache"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let child_pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let ps = b.docker(&[
            "ps",
            "-q",
            "--filter",
            "label=io.builder.stage=build",
            "--filter",
            "status=running",
        ]);
        if !text(&ps.stdout).trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline && matches!(child.try_wait(), Ok(None)),
            "no build container ran on b"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let the build get into its commands before the engine goes.
    std::thread::sleep(Duration::from_secs(2));
    b.kill();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "build after losing b: {}", both(&out));
    let three: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let retried: Vec<&serde_json::Value> = three["builds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("retried").is_some())
        .collect();
    assert_eq!(retried.len(), 1, "one build retried: {three}");
    assert_eq!(retried[0]["retried"]["engine"], "b", "{three}");
    assert_eq!(retried[0]["engine"], "a", "{three}");
    let err = text(&out.stderr);
    assert!(
        err.contains("engine `b` stopped answering") && err.contains("retrying"),
        "the retry is reported:\n{err}"
    );
    assert_eq!(
        keys_and_outputs(&three),
        want,
        "same keys and bytes after the retry"
    );
    // Nothing of this run is left on a (b is gone, with its directory at drop).
    assert_eq!(containers_of(child_pid, &engine_a()), "");
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn an_unreachable_engine_is_reported_and_left_out() {
    let project = sample_project();
    // Port 1 (tcpmux) is never a test engine's: a port from `free_port` could be taken by
    // the second engine another test starts meanwhile.
    let gone = "tcp://127.0.0.1:1";
    let (out, json) = build_json(
        builder(project.path())
            .env("BUILDER_ENGINES", format!("a={},gone={gone}", engine_a()))
            .args(["--json", "build", "--no-cache", "backend"]),
    );
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("engine `gone` ({gone}) left out")),
        "{err}"
    );
    assert_eq!(entry(&json, "backend")["engine"], "a", "{json}");

    // No engine left: an environment error naming each.
    let out = builder(project.path())
        .env("BUILDER_ENGINES", format!("gone={gone}"))
        .args(["build", "backend"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("no Docker engine of the pool answered"),
        "{err}"
    );
    assert!(err.contains(&format!("gone ({gone})")), "{err}");
}

#[test]
fn a_bad_engines_toml_is_an_error_at_its_line() {
    let project = sample_project();
    std::fs::write(
        project.path().join("engines.toml"),
        "[[engine]]\nname = \"a\"\nhost = \"unix:///var/run/docker.sock\"\n\n\
         [[engine]]\nname = \"b\"\nhost = \"tcp://10.0.0.2:2376\"\ncert_path = \"no-such-dir\"\n",
    )
    .unwrap();
    let out = builder(project.path()).arg("build").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(err.contains("engines.toml:8:13"), "{err}");
    assert!(err.contains("no-such-dir` has no ca.pem"), "{err}");
    assert!(err.contains("cert_path"), "{err}");

    std::fs::write(
        project.path().join("engines.toml"),
        "[[engine]]\nhots = \"unix:///var/run/docker.sock\"\n",
    )
    .unwrap();
    let out = builder(project.path()).arg("plan").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(err.contains("engines.toml:2:1"), "{err}");
    assert!(err.contains("did you mean `host`?"), "{err}");
}

#[test]
fn ssh_engines_are_refused_with_advice() {
    let project = sample_project();
    let out = builder(project.path())
        .env(
            "BUILDER_ENGINES",
            "unix:///var/run/docker.sock,ssh://ci@build-2",
        )
        .arg("build")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(err.contains("BUILDER_ENGINES: entry 2"), "{err}");
    assert!(err.contains("does not connect over ssh"), "{err}");
    assert!(err.contains("ssh -nNT -L"), "{err}");
    assert!(err.contains("TLS"), "{err}");
}
