//! Builds over a pool of Docker engines (issue 15, item 1): the engine this machine runs
//! (`DOCKER_HOST`, "a") and a second dockerd the test starts ("b": its own data root, exec
//! root, containerd namespace, a unix socket and a TLS tcp port with certificates the test
//! makes with `openssl`, vfs storage, a bridge interface of its own). The sample services build
//! on both at once with the same keys and bytes as on one engine; b is killed while its build
//! container runs and the build finishes on a, reported as retried; b stopped (SIGSTOP) while
//! its build runs does not hang builder either. Ctrl-C with builds on both leaves nothing on
//! either. Configuration errors and an unreachable engine need no second daemon.
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
    retried_from_b_on_a(&text(&out.stdout));
    let three: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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

/// A project of recipes `names` (builder image `go`, the repo's base images) whose builds
/// run `script` with `sh -c` and declare the output `done`.
fn scripted_project(names: &[&str], script: &str) -> TempProject {
    let dir = TempProject::new();
    common::copy_tree(&repo().join("base-images"), &dir.path().join("base-images"));
    std::fs::create_dir_all(dir.path().join("recipes")).unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/input.txt"), "pool probe\n").unwrap();
    for name in names {
        std::fs::write(
            dir.path().join(format!("recipes/{name}.toml")),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"1.0\"\n\
                 maintainer = \"Ops <ops@example.com>\"\ndescription = \"pool probe\"\n\n\
                 [build]\nbuilder = \"go\"\nsource = \"src\"\n\
                 command = [\"sh\", \"-c\", {script:?}]\noutputs = [\"done\"]\n"
            ),
        )
        .unwrap();
    }
    dir
}

/// Starts `builder build --no-cache --jobs 2` (with `--json` if `json`) of the scripted
/// recipes `slow-a` and `slow-b` (running `script`) over engines a and `b`.
fn pooled_build(b: &SecondEngine, script: &str, json: bool) -> (TempProject, Running) {
    let project = scripted_project(&["slow-a", "slow-b"], script);
    std::fs::write(project.path().join("engines.toml"), b.engines_toml()).unwrap();
    let mut cmd = builder(project.path());
    if json {
        cmd.arg("--json");
    }
    cmd.args(["build", "--no-cache", "--jobs", "2"]);
    let run = Running::spawn(&mut cmd);
    (project, run)
}

/// Names of the running build containers of builder process `pid` on engine `host`.
fn running_builds(pid: u32, host: &str) -> Vec<String> {
    let out = Command::new("docker")
        .env("DOCKER_HOST", host)
        .args(["ps", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label=io.builder.pid={pid}"))
        .args(["--filter", "label=io.builder.stage=build"])
        .args(["--filter", "status=running"])
        .output()
        .unwrap();
    text(&out.stdout).lines().map(str::to_string).collect()
}

/// Containers, networks and volumes on engine `host` labelled as made by builder process
/// `pid`, as `kind: ids` lines (empty: nothing).
fn anything_of(pid: u32, host: &str) -> String {
    let filter = format!("label=io.builder.pid={pid}");
    let mut left = String::new();
    for args in [
        &["ps", "-aq", "--filter"][..],
        &["network", "ls", "-q", "--filter"],
        &["volume", "ls", "-q", "--filter"],
    ] {
        let out = Command::new("docker")
            .env("DOCKER_HOST", host)
            .args(args)
            .arg(&filter)
            .output()
            .unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", both(&out));
        let ids = text(&out.stdout).trim().to_string();
        if !ids.is_empty() {
            left.push_str(&format!("{}: {ids}\n", args[0]));
        }
    }
    left
}

/// A builder process with its output read on threads (so a full pipe never blocks it).
struct Running {
    child: std::process::Child,
    out: std::thread::JoinHandle<String>,
    /// Its stderr so far.
    err: std::sync::Arc<std::sync::Mutex<String>>,
    err_done: std::thread::JoinHandle<()>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        let (mut child, out) = common::spawn_piped(cmd);
        let err = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let shared = err.clone();
        let err_done = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let mut all = shared.lock().unwrap();
                all.push_str(&line.unwrap_or_default());
                all.push('\n');
            }
        });
        Running {
            child,
            out,
            err,
            err_done,
        }
    }

    fn stderr_so_far(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Waits (bounded) for it to end; kills it and panics past `within`. Returns its exit
    /// status, stdout and stderr.
    fn finish(mut self, within: Duration) -> (std::process::ExitStatus, String, String) {
        let status = wait_bounded(&mut self.child, within);
        let out = self.out.join().unwrap();
        self.err_done.join().unwrap();
        let err = self.err.lock().unwrap().clone();
        (status, out, err)
    }
}

/// Waits (bounded) until builder process `child` has a running build container on each of
/// `hosts`; panics with its stderr when it ends first or `within` passes.
fn wait_for_builds_on(child: &mut std::process::Child, hosts: &[&str], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if hosts
            .iter()
            .all(|h| !running_builds(child.id(), h).is_empty())
        {
            return;
        }
        if Instant::now() > deadline || !matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "builder did not get a build running on each of {hosts:?} within {} s",
                within.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits (bounded) for `child` to end; kills it and panics past `within`.
fn wait_bounded(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("builder did not end within {} s", within.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Ctrl-C while builds run on both engines: builder exits 130 (as every interrupted command
/// does) and leaves no container, network or volume of its own on either engine.
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn ctrl_c_with_a_pool_leaves_nothing_on_either_engine() {
    let b = SecondEngine::start();
    let (project, mut run) = pooled_build(&b, "echo running; sleep 300", false);
    let pid = run.child.id();
    let (a, b_host) = (engine_a(), b.socket());
    // b gets the builder image sent first: allow for it.
    wait_for_builds_on(&mut run.child, &[&a, &b_host], Duration::from_secs(600));
    let started = Instant::now();
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGINT) }, 0);
    let (status, _, err) = run.finish(Duration::from_secs(120));
    eprintln!(
        "builder ended {:.1} s after SIGINT",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(anything_of(pid, &a), "", "left on a: {err}");
    assert_eq!(anything_of(pid, &b_host), "", "left on b: {err}");
    assert!(!project.path().join("dist/build/slow-a").exists());
    assert!(!project.path().join("dist/build/slow-b").exists());
}

/// The second engine stops answering (SIGSTOP: connections stay open, nothing answers)
/// while its build runs: builder does not hang. It says which engine went silent and what
/// it left there by name, and the build finishes on the other engine, reported as retried.
/// Once b answers again, what was left is there as reported and `builder gc` removes it.
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn a_silent_engine_loses_its_build_to_the_other_and_says_what_it_left() {
    let b = SecondEngine::start();
    let (project, mut run) =
        // Long enough that b is stopped mid-build on a loaded machine (docker ps polls).
        pooled_build(&b, "echo running; sleep 45; echo done > /out/done", true);
    let pid = run.child.id();
    let b_host = b.socket();
    wait_for_builds_on(&mut run.child, &[&b_host], Duration::from_secs(600));
    let on_b = running_builds(pid, &b_host).remove(0);
    let (retried, err) = silence_b_and_finish(&b, run);
    assert!(
        retried.contains("stopped answering: no answer to a ping for 30 s"),
        "{retried}"
    );
    assert!(
        err.contains("engine `b`") && err.contains("stopped answering"),
        "which engine went silent:\n{err}"
    );
    assert!(
        err.contains(&format!("left on it: container `{on_b}`")),
        "what it left there:\n{err}"
    );
    assert!(err.contains("retrying"), "the retry:\n{err}");
    both_done(&project);
    assert_eq!(anything_of(pid, &engine_a()), "", "left on a: {err}");

    // b answers again: the container is there as reported, and gc takes it.
    let there = b.docker(&["ps", "-aq", "--filter", &format!("name=^{on_b}$")]);
    assert_ne!(text(&there.stdout).trim(), "", "{on_b} on b");
    // `builder-build-<recipe>-<run id>`, the recipe `slow-a` or `slow-b`.
    let run = &on_b["builder-build-slow-x-".len()..];
    let gc = builder(project.path())
        .args(["gc", "--run", run])
        .output()
        .unwrap();
    assert!(gc.status.success(), "{}", both(&gc));
    assert_eq!(
        anything_of(pid, &b_host),
        "",
        "gc left it on b: {}",
        both(&gc)
    );
}

/// Stops b (SIGSTOP) and waits (bounded) for `run` to end; b is continued afterwards, also
/// on panic. `run` must pass with one build lost by b and built on a: returns the error b
/// lost it with, and builder's stderr.
fn silence_b_and_finish(b: &SecondEngine, run: Running) -> (String, String) {
    let stopped = b.stop();
    let started = Instant::now();
    let (status, out, err) = run.finish(Duration::from_secs(600));
    let secs = started.elapsed().as_secs_f64();
    drop(stopped);
    eprintln!("builder ended {secs:.1} s after b went silent; its stderr:\n{err}");
    assert!(status.success(), "{err}");
    (retried_from_b_on_a(&out), err)
}

/// Both scripted builds left their output.
fn both_done(project: &TempProject) {
    for name in ["slow-a", "slow-b"] {
        let done = project.path().join("dist/build").join(name).join("done");
        assert_eq!(std::fs::read_to_string(&done).unwrap(), "done\n", "{name}");
    }
}

/// The `--json` report `out` has exactly one build retried, lost by b and built on a;
/// returns the error b lost it with.
fn retried_from_b_on_a(out: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let retried: Vec<&serde_json::Value> = json["builds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("retried").is_some())
        .collect();
    assert_eq!(retried.len(), 1, "one build retried: {json}");
    assert_eq!(retried[0]["retried"]["engine"], "b", "{json}");
    assert_eq!(retried[0]["engine"], "a", "{json}");
    retried[0]["retried"]["error"].as_str().unwrap().to_string()
}

/// b stops answering while the builder image is sent to it: the send ends (b is silent)
/// instead of hanging, and the build goes to a, reported as retried.
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn an_image_send_to_a_silent_engine_ends_and_the_build_goes_elsewhere() {
    let b = SecondEngine::start();
    let (project, mut run) = pooled_build(&b, "sleep 5; echo done > /out/done", true);
    let deadline = Instant::now() + Duration::from_secs(600);
    // The send's start ("Sending builder image … to engine `b`"), not its end ("Sent").
    let sending = |err: &str| {
        err.lines()
            .any(|l| l.contains("Sending") && l.contains("to engine `b`"))
    };
    while !sending(&run.stderr_so_far()) {
        assert!(
            Instant::now() < deadline && matches!(run.child.try_wait(), Ok(None)),
            "no image was sent to b: {}",
            run.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (retried, _) = silence_b_and_finish(&b, run);
    assert!(
        retried.contains("could not send image") && retried.contains("engine `b`"),
        "{retried}"
    );
    assert!(retried.contains("stopped answering"), "{retried}");
    both_done(&project);
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
