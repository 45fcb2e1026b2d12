//! `builder smoke` end to end with real Docker: the project is copied to a temp dir, built and
//! packaged by the real binary (images loaded into the engine), then deployed behind HAProxy
//! and loaded at 50 req/s through 127.0.0.1. The scenarios run in parallel (each costs its
//! duration): a passing run during which one frontend crashes and another is killed, a run
//! with one frontend and one with the backend failing 20% (both must fail the gate), two
//! deployments that never become healthy (wrong `health`, wrong `port`: failed reports all the
//! same) and a bad stack file. After each run nothing of it is left in Docker.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The packaged project shared by every test of this file (built once per process).
fn project() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| packaged_sample_project("builder-smoke-test-"))
}

/// A copy of the recipes only (no build): for stack-file errors.
fn bare_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for d in ["recipes", "services", "base-images"] {
        copy_tree(&repo().join(d), &dir.path().join(d));
    }
    dir
}

struct Run {
    code: i32,
    stderr: String,
    report: Value,
    dir: PathBuf,
}

/// Runs `builder smoke ARGS`; `during(line)` sees each stderr line as it arrives.
fn smoke(args: &[&str], mut during: impl FnMut(&str)) -> Run {
    let done = run_watching(
        builder()
            .arg("--project")
            .arg(project())
            .arg("--json")
            .arg("smoke")
            .args(args),
        |line, _| during(line),
    );
    let report = done.json();
    let run_id = report["run_id"].as_str().unwrap().to_string();
    let dir = project().join("dist/smoke").join(&run_id);
    assert_nothing_left(&run_id);
    Run {
        code: done.code,
        stderr: done.stderr,
        report,
        dir,
    }
}

/// Checks that `text` is well-formed XML (balanced tags, quoted attributes, known entities).
fn assert_well_formed_xml(text: &str, what: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = text;
    while let Some(i) = rest.find(['<', '&']) {
        if rest[i..].starts_with('&') {
            let end = rest[i..]
                .find(';')
                .unwrap_or_else(|| panic!("{what}: bare & at {}", &rest[i..]));
            let ent = &rest[i + 1..i + end];
            assert!(
                ["amp", "lt", "gt", "quot", "apos"].contains(&ent) || ent.starts_with('#'),
                "{what}: unknown entity &{ent};"
            );
            rest = &rest[i + end + 1..];
            continue;
        }
        let tag = &rest[i..];
        let (skip, close) = if tag.starts_with("<?") {
            (tag.find("?>").unwrap() + 2, None)
        } else if tag.starts_with("<!--") {
            (tag.find("-->").unwrap() + 3, None)
        } else if tag.starts_with("<!") {
            (tag.find('>').unwrap() + 1, None)
        } else {
            // Find the end of the tag outside quotes.
            let mut quote = None;
            let mut end = 0;
            for (j, c) in tag.char_indices().skip(1) {
                match (quote, c) {
                    (None, '"') | (None, '\'') => quote = Some(c),
                    (Some(q), c) if c == q => quote = None,
                    (None, '>') => {
                        end = j;
                        break;
                    }
                    (None, '<') => panic!("{what}: `<` inside a tag: {}", &tag[..j]),
                    _ => {}
                }
            }
            assert!(
                end > 0,
                "{what}: unterminated tag {}",
                &tag[..tag.len().min(60)]
            );
            let inner = &tag[1..end];
            if let Some(name) = inner.strip_prefix('/') {
                let open = stack
                    .pop()
                    .unwrap_or_else(|| panic!("{what}: stray </{name}>"));
                assert_eq!(open, name.trim(), "{what}: <{open}> closed by </{name}>");
            } else if !inner.ends_with('/') {
                let name = inner.split_whitespace().next().unwrap().to_string();
                if stack.is_empty() {
                    roots += 1;
                }
                stack.push(name);
            } else if stack.is_empty() {
                roots += 1;
            }
            (end + 1, Some(()))
        };
        let _ = close;
        rest = &rest[i + skip..];
    }
    assert!(stack.is_empty(), "{what}: unclosed {stack:?}");
    assert_eq!(roots, 1, "{what}: {roots} root elements");
}

/// The three report files exist and are well-formed; the JSON is the same as `--json`.
fn check_files(run: &Run) {
    let json: Value =
        serde_json::from_slice(&std::fs::read(run.dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json, run.report);
    let junit = std::fs::read_to_string(run.dir.join("junit.xml")).unwrap();
    assert_well_formed_xml(&junit, "junit.xml");
    assert_eq!(junit.matches("<testsuite ").count(), 1, "{junit}");
    assert_eq!(junit.matches("<testcase ").count(), 3, "{junit}");
    let failures = junit.matches("<failure ").count();
    let broken = run.report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .count();
    assert_eq!(failures, broken, "{junit}");
    let html = std::fs::read_to_string(run.dir.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    let svgs: Vec<&str> = html
        .split("<svg")
        .skip(1)
        .map(|s| s.split("</svg>").next().unwrap())
        .collect();
    assert_eq!(svgs.len(), 3, "latency, throughput and status plots");
    for s in svgs {
        assert_well_formed_xml(&format!("<svg{s}</svg>"), "report.html svg");
    }
    assert!(html.contains(if run.report["passed"] == true {
        "PASSED"
    } else {
        "FAILED"
    }));
}

/// The report's artifacts are exactly the manifest's entries (byte for byte as JSON).
fn check_artifacts(report: &Value) {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(project().join("dist/manifest.json")).unwrap())
            .unwrap();
    let mut want: Vec<&Value> = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| ["backend", "frontend"].contains(&a["name"].as_str().unwrap()))
        // a `.changes` goes with its .deb to an upload; the smoke test does not judge it
        .filter(|a| a["kind"] != "changes")
        .collect();
    want.sort_by_key(|a| {
        (
            a["kind"].as_str().unwrap().to_string(),
            a["name"].as_str().unwrap().to_string(),
        )
    });
    let got: Vec<&Value> = report["artifacts"].as_array().unwrap().iter().collect();
    assert_eq!(got, want);
    assert_eq!(got.len(), 4, "a .deb and an image per service");
    for a in got.iter().filter(|a| a["kind"] == "image") {
        let tag = a["tag"].as_str().unwrap();
        let id = sh(Command::new("docker").args(["image", "inspect", "-f", "{{.Id}}", tag]));
        assert_eq!(id.trim(), a["image_id"].as_str().unwrap(), "{tag}");
    }
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn real_stack_passes_at_50_rps_and_survives_killed_frontends() {
    let started = Instant::now();
    let mut network = String::new();
    let mut load_started = None;
    let mut killed = false;
    let mut internal = String::new();
    let mut limits = String::new();
    let run = smoke(&["--duration", "25s", "--warmup", "5s"], |line| {
        if let Some(i) = line.find("network builder-smoke-") {
            network = line[i + 8..].split_whitespace().next().unwrap().to_string();
        }
        if line.contains("Load started") {
            load_started = Some(Instant::now());
            // The services' network has no route out; only HAProxy's edge bridge does.
            internal = sh(Command::new("docker").args([
                "network",
                "inspect",
                "-f",
                "{{.Internal}}",
                &network,
                &format!("{network}-edge"),
            ]));
            // The stack's `cpus` and `memory` reach each replica's HostConfig.
            limits = sh(Command::new("docker").args([
                "inspect",
                "-f",
                "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}",
                &format!("{network}-backend-1"),
                &format!("{network}-frontend-8"),
            ]));
            let prefix = network.clone();
            // Freeze one frontend (SIGSTOP on its process, from the host): it stays up for
            // Docker but fails HAProxy's health check, so builder must restart it after the
            // stack's unhealthy grace (10 s). 1 s in, so that happens within the run.
            let frozen = format!("{prefix}-frontend-7");
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                let pid =
                    sh(Command::new("docker").args(["inspect", "-f", "{{.State.Pid}}", &frozen]));
                sh(Command::new("kill").args(["-STOP", pid.trim()]));
            });
            let prefix = network.clone();
            // Crash one frontend (SIGQUIT: the Go runtime exits 2, Docker restarts it) and
            // kill another (SIGKILL: a manual stop for Docker, so builder must restart it),
            // 10 s into the load, from another thread so the log keeps flowing.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(10));
                sh(Command::new("docker").args([
                    "kill",
                    "-s",
                    "QUIT",
                    &format!("{prefix}-frontend-3"),
                ]));
                std::thread::sleep(Duration::from_secs(1));
                sh(Command::new("docker").args(["kill", &format!("{prefix}-frontend-5")]));
            });
            killed = true;
        }
    });
    assert!(killed && load_started.is_some(), "{}", run.stderr);
    assert_eq!(
        internal.split_whitespace().collect::<Vec<_>>(),
        ["true", "false"]
    );
    // recipes/stack.toml: backend cpus = 1, memory = "128M"; frontend 0.5, "64M".
    assert_eq!(
        limits.lines().collect::<Vec<_>>(),
        ["1000000000 134217728", "500000000 67108864"]
    );
    let r = &run.report;
    assert_eq!(run.code, 0, "gate failed: {}\n{}", r["reasons"], run.stderr);
    assert_eq!(r["passed"], true);
    assert_eq!(r["mode"], "gate");
    let res = &r["results"];
    assert_eq!(res["requested_rate"], 50.0);
    assert!(res["achieved_rate"].as_f64().unwrap() >= 49.0, "{res}");
    assert!(res["success_ratio"].as_f64().unwrap() >= 0.98, "{res}");
    assert!(
        res["sent"].as_u64().unwrap() >= 1225,
        "25 s at 50 req/s: {res}"
    );
    assert_eq!(res["warmup_s"], 5.0);
    for p in ["p50", "p90", "p95", "p99", "p999", "max"] {
        assert!(r["percentiles"][p].as_f64().unwrap() > 0.0, "{p}");
    }
    // Pages take ~100 ms of work: a p50 below that would mean the frontends were bypassed.
    assert!(
        r["percentiles"]["p50"].as_f64().unwrap() >= 90.0,
        "{}",
        r["percentiles"]
    );
    assert!(r["timeline"].as_array().unwrap().len() >= 25);
    assert!(r["status_counts"]["200"].as_u64().unwrap() > 900);
    // Both kills show up as restarts, each with who restarted it and why.
    let restarts = r["restarts"].as_array().unwrap();
    let by = |server: &str| {
        restarts
            .iter()
            .find(|x| x["server"] == server)
            .unwrap_or_else(|| panic!("no restart of {server}: {restarts:?}\n{}", run.stderr))
    };
    let crashed = by("frontend-3");
    assert_eq!(crashed["by"], "docker", "{crashed}");
    assert!(
        crashed["reason"]
            .as_str()
            .unwrap()
            .contains("exited with code 2"),
        "{crashed}"
    );
    let t = crashed["t_s"].as_f64().unwrap();
    assert!((9.0..20.0).contains(&t), "{crashed}");
    let killed = by("frontend-5");
    assert_eq!(killed["by"], "builder", "{killed}");
    assert!(
        killed["reason"].as_str().unwrap().contains("137"),
        "{killed}"
    );
    let frozen = by("frontend-7");
    assert_eq!(frozen["by"], "builder", "{frozen}");
    assert!(
        frozen["reason"]
            .as_str()
            .unwrap()
            .contains("running but failing its health check"),
        "{frozen}"
    );
    assert!(
        run.stderr
            .contains("frontend-7: running but failing its health check"),
        "{}",
        run.stderr
    );
    let containers = r["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 9);
    let c3 = containers
        .iter()
        .find(|c| c["container"].as_str().unwrap().ends_with("frontend-3"))
        .unwrap();
    assert_eq!(c3["docker_restarts"], 1, "{c3}");
    assert!(run.stderr.contains("Docker restarted it"), "{}", run.stderr);
    assert_eq!(r["deployment"]["network"], network);
    check_files(&run);
    check_artifacts(r);
    eprintln!(
        "pass run: {:.1}s, achieved {} req/s, success {}, p50 {} ms, p99 {} ms",
        started.elapsed().as_secs_f64(),
        res["achieved_rate"],
        res["success_ratio"],
        r["percentiles"]["p50"],
        r["percentiles"]["p99"]
    );
}

fn failed_checks(r: &Value) -> Vec<String> {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn one_frontend_cannot_take_50_rps() {
    let run = smoke(
        &["--frontends", "1", "--duration", "8s", "--warmup", "2s"],
        |_| {},
    );
    let r = &run.report;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(r["passed"], false);
    assert_eq!(
        r["inputs"]["stack"]["services"][1]["replicas"], 1,
        "{}",
        r["inputs"]
    );
    let failed = failed_checks(r);
    assert!(failed.contains(&"success_ratio".to_string()), "{failed:?}");
    let reasons = r["reasons"].to_string();
    assert!(reasons.contains("min_success"), "{reasons}");
    assert!(run.stderr.contains("smoke gate failed"), "{}", run.stderr);
    check_files(&run);
    let junit = std::fs::read_to_string(run.dir.join("junit.xml")).unwrap();
    assert!(junit.contains("name=\"success_ratio\""), "{junit}");
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn backend_failing_20_percent_breaks_the_success_ratio() {
    let run = smoke(
        &[
            "--env",
            "backend:FAILURE_RATE=0.2",
            // 20 s gives ~200 API requests: ~40 expected failures against the 20 that
            // break the gate, so a lucky pass is a >3.5 sigma event.
            "--duration",
            "20s",
            "--warmup",
            "2s",
        ],
        |_| {},
    );
    let r = &run.report;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(failed_checks(r), ["success_ratio"], "{}", r["checks"]);
    assert!(
        r["status_counts"]["500"].as_u64().unwrap() > 0,
        "{}",
        r["status_counts"]
    );
    assert_eq!(
        r["inputs"]["overrides"]["env"][0],
        "backend:FAILURE_RATE=0.2"
    );
    assert!(
        r["reasons"][0].as_str().unwrap().contains("success ratio"),
        "{}",
        r["reasons"]
    );
    check_files(&run);
    check_artifacts(r);
}

#[test]
fn bad_stack_file_points_at_the_line_and_exits_2() {
    let dir = bare_project();
    let stack = repo().join("recipes/stack.toml");
    let text = std::fs::read_to_string(&stack).unwrap();
    let bad = text
        .replacen("replicas = 8", "replicas = 0", 1)
        .replacen("rate = 50", "rat = 50", 1);
    let file = dir.path().join("recipes/stack.toml");
    std::fs::write(&file, &bad).unwrap();
    let out = run(builder().arg("--project").arg(dir.path()).arg("smoke"));
    let err = text_of(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line_of = |needle: &str| bad.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    // Syntax-level problems are reported first (unknown key, with a suggestion).
    assert!(
        err.contains(&format!("stack.toml:{}:1", line_of("rat = 50"))),
        "{err}"
    );
    assert!(err.contains("did you mean `rate`?"), "{err}");
    // With the key fixed, the semantic check points at the value.
    std::fs::write(&file, bad.replacen("rat = 50", "rate = 50", 1)).unwrap();
    let out = run(builder().arg("--project").arg(dir.path()).arg("smoke"));
    let err = text_of(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("stack.toml:{}:12", line_of("replicas = 0"))),
        "{err}"
    );
    assert!(err.contains("replicas 0 is out of range"), "{err}");
    std::fs::write(&file, &text).unwrap();
    // `--frontends` out of range names `--frontends`, not the `--replicas` it stands for.
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .arg("smoke")
        .args(["--frontends", "0"]));
    let err = text_of(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--frontends 0: N must be from 1 to 64"),
        "{err}"
    );
    assert!(!err.contains("--replicas"), "{err}");
    // A bad override is a usage error too, naming the service.
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .arg("smoke")
        .args(["--replicas", "frontnd=2"]));
    let err = text_of(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("did you mean `frontend`"), "{err}");
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn sigterm_mid_run_tears_everything_down() {
    let mut child = builder()
        .arg("--project")
        .arg(project())
        .arg("smoke")
        .args(["--duration", "60s", "--frontends", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut run_id = String::new();
    let mut stderr = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(i) = line.find("network builder-smoke-") {
            run_id = line[i + 22..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_string();
        }
        if line.contains("Load started") {
            std::thread::sleep(Duration::from_secs(2));
            sh(Command::new("kill").args(["-TERM", &child.id().to_string()]));
        }
        stderr.push_str(&line);
        stderr.push('\n');
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("error: interrupted"), "{stderr}");
    assert!(!run_id.is_empty(), "{stderr}");
    assert_nothing_left(&run_id);
}

/// A copy of the project's stack.toml with `edit` applied and a short `ready_timeout`, in a
/// temp dir (the shared project's own stack file stays as it is).
fn edited_stack(edit: impl Fn(&str) -> String) -> (tempfile::TempDir, PathBuf) {
    let text = std::fs::read_to_string(repo().join("recipes/stack.toml")).unwrap();
    let text = edit(&text).replacen("ready_timeout = \"90s\"", "ready_timeout = \"12s\"", 1);
    assert!(text.contains("ready_timeout = \"12s\""));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.toml");
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

/// The backend's `[services.backend]` table with `key = value` replaced.
fn edit_backend(text: &str, from: &str, to: &str) -> String {
    let (head, tail) = text.split_once("[services.backend]").unwrap();
    let (table, rest) = tail.split_once("[services.frontend]").unwrap();
    assert!(table.contains(from), "{table}");
    format!(
        "{head}[services.backend]{}[services.frontend]{rest}",
        table.replacen(from, to, 1)
    )
}

/// A deployment that never becomes healthy: exit 1 with the reason, and the three reports
/// all the same, each saying so.
fn never_healthy(stack: &Path) -> Run {
    let run = smoke(
        &[
            "--stack",
            stack.to_str().unwrap(),
            "--frontends",
            "1",
            "--duration",
            "5s",
        ],
        |_| {},
    );
    let r = &run.report;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(r["passed"], false);
    assert!(r["results"].is_null(), "{r}");
    assert_eq!(failed_checks(r), ["deployment_ready"], "{}", r["checks"]);
    let why = r["error"].as_str().unwrap();
    assert!(
        why.starts_with(
            "the deployment did not become healthy within 12s; not up: backend-1 (DOWN"
        ),
        "{why}"
    );
    assert_eq!(r["reasons"][0].as_str().unwrap(), why);
    assert!(
        run.stderr
            .contains("error: the deployment did not become healthy within 12s"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("`services.backend.health`")
            && run.stderr.contains("`services.backend.port`"),
        "{}",
        run.stderr
    );
    let json: Value =
        serde_json::from_slice(&std::fs::read(run.dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(&json, r);
    let junit = std::fs::read_to_string(run.dir.join("junit.xml")).unwrap();
    assert_well_formed_xml(&junit, "junit.xml");
    assert_eq!(junit.matches("<testcase ").count(), 1, "{junit}");
    assert_eq!(junit.matches("<failure ").count(), 1, "{junit}");
    assert!(junit.contains("name=\"deployment_ready\""), "{junit}");
    assert!(junit.contains("did not become healthy"), "{junit}");
    let html = std::fs::read_to_string(run.dir.join("report.html")).unwrap();
    assert!(html.contains("FAILED") && html.contains("did not become healthy"));
    assert!(html.trim_end().ends_with("</html>"));
    check_artifacts(r);
    run
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn wrong_health_path_fails_with_reports() {
    let (_dir, stack) = edited_stack(|t| edit_backend(t, "health = \"/\"", "health = \"/nosuch\""));
    let run = never_healthy(&stack);
    assert!(
        run.stderr
            .contains("backend-1: L7STS 404 (is `health` right?)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("(now \"/nosuch\""), "{}", run.stderr);
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn wrong_port_fails_with_reports() {
    let (_dir, stack) = edited_stack(|t| edit_backend(t, "port = 8080", "port = 8081"));
    let run = never_healthy(&stack);
    assert!(
        run.stderr
            .contains("backend-1: L4CON (connection refused: is `port` right?)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("(now 8081)"), "{}", run.stderr);
}

/// Stack values that would reach haproxy.cfg, a container's environment, a DNS name or a
/// request line unescaped are refused when the stack is read, before Docker is contacted
/// (`DOCKER_HOST` points nowhere): exit 2, file:line:col, control characters shown escaped.
/// Needs no engine.
#[test]
fn hostile_stack_values_are_refused_before_anything_is_deployed() {
    let dir = bare_project();
    let file = dir.path().join("recipes/stack.toml");
    let text = std::fs::read_to_string(repo().join("recipes/stack.toml")).unwrap();
    // (backend-only edit?, from, to, where the caret goes in `to`, what the message says)
    let cases: &[(bool, &str, &str, &str, &str)] = &[
        (
            true,
            r#"health = "/""#,
            r#"health = "/a\"b""#,
            "\"",
            "`\"` at character 3",
        ),
        (
            true,
            r#"health = "/""#,
            r##"health = "/#x""##,
            "\"",
            "a `#` at character 2",
        ),
        (
            true,
            r#"health = "/""#,
            r#"health = "/a\u0000""#,
            "\"",
            "U+0000 at character 3",
        ),
        (
            true,
            r#"health = "/""#,
            r#"health = "/a\n""#,
            "\"",
            "U+000A at character 3",
        ),
        (
            true,
            r#"health = "/""#,
            r#"health = "/\r\nX: 1""#,
            "\"",
            "U+000D at character 2",
        ),
        (
            true,
            r#"health = "/""#,
            r#"health = "/\u001b[31m""#,
            "\"",
            "U+001B at character 2",
        ),
        (
            false,
            r#""/api/""#,
            r#""/api/\"""#,
            "\"/api",
            "`\"` at character 6",
        ),
        (
            false,
            r#""/api/""#,
            r##""/api/#""##,
            "\"/api",
            "a `#` at character 6",
        ),
        (
            false,
            r#""/api/""#,
            r#""/api/\nbackend x""#,
            "\"/api",
            "U+000A at character 6",
        ),
        (
            false,
            r#""/static/style.css""#,
            r#""/s\r\n""#,
            "\"/s",
            "U+000D at character 3",
        ),
        (
            true,
            "env = { FAILURE_RATE",
            r#"env = { "A=B""#,
            "\"A=B",
            "`A=B`",
        ),
        (
            true,
            "env = { FAILURE_RATE",
            r#"env = { """#,
            "\"\"",
            "name `` (services",
        ),
        (
            true,
            r#""0.02""#,
            r#""0.02\u0000""#,
            "\"0.02",
            "a NUL (U+0000) at character 5",
        ),
        (
            false,
            r#"base = "haproxy""#,
            r#"base = "../x\u001b""#,
            "\"",
            r"`../x\u{1b}`",
        ),
        (
            false,
            "[services.backend]",
            "[services.abcdefghijklmnopqrstuvwxyz01]",
            "[",
            "invalid service name `abcdefghijklmnopqrstuvwxyz01`",
        ),
    ];
    for (backend_only, from, to, caret, says) in cases {
        let bad = if *backend_only {
            edit_backend(&text, from, to)
        } else {
            assert!(text.contains(from), "{from}");
            text.replacen(from, to, 1)
        };
        std::fs::write(&file, &bad).unwrap();
        let out = run(builder()
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .arg("--project")
            .arg(dir.path())
            .arg("smoke"));
        let err = text_of(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{to}: {err}");
        let (n, line) = bad
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(to))
            .unwrap();
        let col = line.find(to).unwrap() + to.find(caret).unwrap() + 1;
        assert!(
            err.contains(&format!("stack.toml:{}:{col}", n + 1)),
            "{to}: {err}"
        );
        assert!(err.contains(says), "{to}: {err}");
        assert!(
            err.chars().all(|c| c == '\n' || !c.is_control()),
            "{}",
            err.escape_debug()
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
