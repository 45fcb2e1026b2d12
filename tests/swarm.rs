//! `builder smoke --target swarm` end to end with real Docker: the project is copied to a temp
//! dir, built and packaged by the real binary, Debian's `docker-registry` runs on 127.0.0.1,
//! and the sample stack is deployed as Swarm services (images pushed to the registry and run
//! by digest), loaded at 50 req/s through 127.0.0.1 with a frontend task's container killed
//! during the load (Swarm replaces it). Afterwards the engine is in the swarm state it was in
//! before (builder leaves a swarm it initialised) and nothing labelled with the run is left.
//! The same stack also runs on a two-node swarm: the machine's engine and a dockerd in a
//! container of its own network namespace ([`common::swarm2`]).
//! Swarm tests hold a file lock so two never initialise a swarm at once.

mod common;

use std::process::Command;
use std::time::Duration;

use common::registry::*;
use common::swarm2::{gwbridge_exists, swarm_state};
use common::*;

/// Serialises swarm tests across processes (and other checkouts on this machine).
fn swarm_lock() -> builder::fslock::FileLock {
    builder::fslock::FileLock::acquire(
        std::path::Path::new("/tmp/builder-swarm-tests.lock"),
        || eprintln!("waiting for another swarm test to finish"),
    )
    .unwrap()
}

/// `builder --json smoke --target swarm` of `project` with images pushed to `registry`,
/// 5 s of warm-up and 25 s of load, and `extra` options.
fn swarm_smoke(project: &std::path::Path, registry: &str, extra: &[&str]) -> Command {
    let mut c = builder();
    c.arg("--project")
        .arg(project)
        .arg("--json")
        .args(["smoke", "--target", "swarm", "--registry", registry])
        .args(["--duration", "25s", "--warmup", "5s"])
        .args(extra);
    c
}

/// The killed frontend task is in the report as a restart made by Swarm and the load ran at
/// the full 50 req/s; returns the load's figures for the test's log line.
fn killed_frontend_restarted_at_full_rate(report: &serde_json::Value, killed: &str) -> String {
    let restarts = report["restarts"].as_array().unwrap();
    assert!(
        restarts
            .iter()
            .any(|r| r["by"] == "swarm" && r["service"] == "frontend"),
        "killed {killed}, restarts: {restarts:?}"
    );
    let results = &report["results"];
    assert!(
        results["achieved_rate"].as_f64().unwrap() > 49.0,
        "{results}"
    );
    format!(
        "achieved {} req/s, success {}, p50 {} ms, p99 {} ms",
        results["achieved_rate"],
        results["success_ratio"],
        report["percentiles"]["p50"],
        report["percentiles"]["p99"]
    )
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn sample_stack_passes_on_swarm_with_a_frontend_task_killed() {
    // The lock first: the canary tests package the same tags (`backend:1.0.0-1`) from a
    // project of their own, and smoke refuses an engine image that moved under it.
    let _lock = swarm_lock();
    let project = packaged_sample_project("builder-swarm-test-");
    let before = swarm_state();
    let reg = start_registry();
    let registry = format!("127.0.0.1:{}", reg.port);
    let gwbridge_before = gwbridge_exists();
    let mut network = String::new();
    let mut killer = None;
    let mut limits = String::new();
    let mut ports = String::new();
    let mut listening = String::new();
    let done = run_watching(&mut swarm_smoke(&project, &registry, &[]), |line, _| {
        if let Some(i) = line.find("network builder-smoke-") {
            network = line[i + 8..].split_whitespace().next().unwrap().to_string();
        }
        if line.contains("Loading") && line.contains("req/s for") && !network.is_empty() {
            // The stack's `cpus` and `memory` are each task's resource limits.
            limits = sh(Command::new("docker").args([
                "service",
                "inspect",
                "-f",
                "{{json .Spec.TaskTemplate.Resources}}",
                &format!("{network}-backend"),
                &format!("{network}-frontend"),
            ]));
            // HAProxy, the only way in, is published on 127.0.0.1 only, as on containers.
            ports = sh(Command::new("docker").args(["port", &format!("{network}-lb")]));
            listening = sh(Command::new("ss").args(["-Htln"]));
            // 8 s into the load (warm-up included), kill one frontend task's container
            // (SIGKILL, exit 137): Swarm's on-failure policy starts a replacement task.
            let service = format!("{network}-frontend");
            killer.get_or_insert_with(|| {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(8));
                    let filter = format!("label=com.docker.swarm.service.name={service}");
                    let ids = sh(Command::new("docker").args(["ps", "-q", "--filter", &filter]));
                    let id = ids
                        .lines()
                        .next()
                        .expect("a running frontend task")
                        .to_string();
                    sh(Command::new("docker").args(["kill", &id]));
                    id
                })
            });
        }
    });
    let (stderr, stdout) = (&done.stderr, &done.stdout);
    let killed = killer.expect("the load started").join().unwrap();
    let report = done.json();
    let run_id = report["run_id"].as_str().unwrap().to_string();
    assert_eq!(done.code, 0, "{stderr}\n{stdout}");
    assert_eq!(report["passed"], true, "{stdout}");
    assert!(stderr.contains("Swarm"), "{stderr}");
    if before == "inactive" {
        assert!(
            stderr.contains("initialised a single-node swarm"),
            "{stderr}"
        );
    }
    let load = killed_frontend_restarted_at_full_rate(&report, &killed);
    eprintln!("swarm run: {:.1}s, {load}", done.seconds);
    // recipes/stack.toml: backend cpus = 1, memory = "128M"; frontend 0.5, "64M". Limits
    // only: a reservation would keep tasks from being scheduled on a small machine.
    assert_eq!(
        limits.lines().collect::<Vec<_>>(),
        [
            r#"{"Limits":{"NanoCPUs":1000000000,"MemoryBytes":134217728}}"#,
            r#"{"Limits":{"NanoCPUs":500000000,"MemoryBytes":67108864}}"#
        ]
    );
    // Two published ports (traffic, stats), each on 127.0.0.1 and nowhere else.
    let published: Vec<&str> = ports.lines().collect();
    assert_eq!(published.len(), 2, "{ports}");
    for p in &published {
        let host_port = p
            .strip_prefix("8080/tcp -> 127.0.0.1:")
            .or_else(|| p.strip_prefix("8404/tcp -> 127.0.0.1:"))
            .unwrap_or_else(|| panic!("published beyond 127.0.0.1: {ports}"));
        let on_port: Vec<&str> = listening
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .filter(|local| {
                local
                    .rsplit_once(':')
                    .is_some_and(|(_, port)| port == host_port)
            })
            .collect();
        assert_eq!(on_port, [format!("127.0.0.1:{host_port}")], "{listening}");
    }
    // Images ran by digest from the registry.
    assert!(stderr.contains(&format!("Pushed {registry}/")), "{stderr}");
    // The engine is back in the swarm state it was in, and nothing of the run is left.
    assert_eq!(swarm_state(), before, "{stderr}");
    // A swarm builder made and left takes its `docker_gwbridge` with it.
    if before == "inactive" {
        assert_eq!(gwbridge_exists(), gwbridge_before, "{stderr}");
    }
    assert_nothing_left(&run_id);
    if before == "active" {
        let filter = format!("label=io.builder.run={run_id}");
        let left = sh(Command::new("docker").args(["service", "ls", "-q", "--filter", &filter]));
        assert!(left.trim().is_empty(), "services left: {left}");
    }
}

/// The canary tests' setup: the swarm lock, then the project whose `dev` holds its release,
/// the swarm state before, and a registry on 127.0.0.1 (`host:port`).
fn canary_on_swarm() -> (builder::fslock::FileLock, String, Registry, String) {
    let lock = swarm_lock();
    common::canary::project();
    let before = swarm_state();
    let reg = start_registry();
    let registry = format!("127.0.0.1:{}", reg.port);
    (lock, before, reg, registry)
}

/// The canary on Swarm: `dev` holds the project's own release (built, packaged, smoked and
/// promoted by the real binary); both versions run as Swarm services (the baseline's images
/// pushed from dev's OCI layout, by digest) behind the one HAProxy container, and a
/// candidate 50 ms slower per backend request is rejected by the comparison alone.
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn a_slower_candidate_is_rejected_on_swarm() {
    let (_lock, before, _reg, registry) = canary_on_swarm();
    let run =
        common::canary::slower_candidate_rejected(&["--target", "swarm", "--registry", &registry]);
    let r = &run.report;
    // Both versions ran as services, the baseline by the digest dev holds.
    let members = r["deployment"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 18, "{}", r["deployment"]);
    assert!(
        members
            .iter()
            .any(|m| m["variant"] == "baseline" && m["server"] == "base.frontend-8"),
        "{}",
        r["deployment"]
    );
    assert!(run.stderr.contains("Pushed baseline"), "{}", run.stderr);
    for b in r["canary"]["baseline_images"].as_array().unwrap() {
        let digest = b["digest"].as_str().unwrap();
        assert!(run.stderr.contains(digest), "{digest}: {}", run.stderr);
    }
    assert_eq!(swarm_state(), before, "{}", run.stderr);
    let run_id = r["run_id"].as_str().unwrap();
    if before == "active" {
        let filter = format!("label=io.builder.run={run_id}");
        let left = sh(Command::new("docker").args(["service", "ls", "-q", "--filter", &filter]));
        assert!(left.trim().is_empty(), "services left: {left}");
    }
    eprintln!(
        "swarm canary: {:.1}s wall, p50 change {}, p99 change {}",
        run.seconds,
        r["canary"]["comparison"]["p50_change"],
        r["canary"]["comparison"]["p99_change"]
    );
}

/// The blue-green switch on Swarm: the release dev holds against itself passes the
/// comparison, then the candidate's share goes 50 → 100 % through HAProxy's runtime API and
/// the baseline services are drained, with no request failed by the switch.
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn the_same_release_switches_on_swarm_without_a_failure() {
    let (_lock, before, _reg, registry) = canary_on_swarm();
    let (_d, stack) = common::canary::stack_with_canary(
        "baseline = \"dev\"\nswitch_steps = [50, 100]\nstep_duration = \"4s\"",
    );
    let run = common::canary::smoke(&[
        "--stack",
        stack.to_str().unwrap(),
        "--duration",
        "15s",
        "--warmup",
        "3s",
        "--target",
        "swarm",
        "--registry",
        &registry,
    ]);
    let r = &run.report;
    assert_eq!(run.code, 0, "{}\n{}", r["reasons"], run.stderr);
    common::canary::absolute_checks_pass(r);
    let sw = &r["canary"]["switch"];
    let weights: Vec<u64> = sw["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["candidate_weight"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, [50, 100, 100], "{sw}");
    assert_eq!(sw["failures"], 0, "{sw}");
    assert_eq!(swarm_state(), before, "{}", run.stderr);
    eprintln!(
        "swarm switch: {:.1}s wall, {} req/s, p99 {} ms, switch failures {}",
        run.seconds, r["results"]["achieved_rate"], r["percentiles"]["p99"], sw["failures"]
    );
}

/// The sample stack on a two-node swarm: the machine's engine (manager) and a dockerd in a
/// container of its own network namespace (worker, [`common::swarm2`]). Two backends and
/// eight frontends are spread over both nodes (each service has tasks on each node), node 2
/// pulls the images by digest from the registry on its own 127.0.0.1 (forwarded to the
/// host's), HAProxy on the manager reaches the tasks on node 2 through the overlay, and the
/// gate passes at 50 req/s with a frontend task on node 2 killed during the load (the
/// monitor reads the manager's task list, so the restart is in the report). Afterwards node
/// 2, the swarm, its `docker_gwbridge`, the network and the image are gone and `docker0` is
/// as it was.
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn sample_stack_passes_on_a_two_node_swarm() {
    use common::swarm2::{self, TwoNodeSwarm, NODE_HOSTNAME};
    // The lock first, as in the single-node test: the tests of this file package the same tags.
    let _lock = swarm_lock();
    let project = packaged_sample_project("builder-swarm2-test-");
    let t = std::time::Instant::now();
    let image = swarm2::node_image(&project);
    let image_s = t.elapsed().as_secs_f64();
    let docker0_before = swarm2::docker0();
    let gwbridge_before = gwbridge_exists();
    let reg = start_registry();
    let registry = format!("127.0.0.1:{}", reg.port);
    let mut swarm = TwoNodeSwarm::start(&image, reg.port);
    let manager = sh(Command::new("docker").args(["info", "-f", "{{.Name}}"]))
        .trim()
        .to_string();
    let mut network = String::new();
    let mut placement = String::new();
    let mut killer = None;
    let done = run_watching(
        &mut swarm_smoke(&project, &registry, &["--replicas", "backend=2"]),
        |line, _| {
            if let Some(i) = line.find("network builder-smoke-") {
                network = line[i + 8..].split_whitespace().next().unwrap().to_string();
            }
            if line.contains("Loading") && line.contains("req/s for") && !network.is_empty() {
                for svc in ["backend", "frontend"] {
                    let nodes = sh(Command::new("docker").args([
                        "service",
                        "ps",
                        "--filter",
                        "desired-state=running",
                        "--format",
                        "{{.Node}} {{.CurrentState}}",
                        &format!("{network}-{svc}"),
                    ]));
                    placement.push_str(&format!("{svc}:\n{nodes}"));
                }
                // 8 s into the load, kill a frontend task's container on node 2 (through
                // node 2's own engine): Swarm replaces it; the manager's task list shows it.
                let service = format!("{network}-frontend");
                killer.get_or_insert_with(|| {
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs(8));
                        let filter = format!("label=com.docker.swarm.service.name={service}");
                        let ps = swarm2::in_node(&["ps", "-q", "--filter", &filter]);
                        let id = text(&ps.stdout)
                            .lines()
                            .next()
                            .expect("a frontend task on node 2")
                            .to_string();
                        let kill = swarm2::in_node(&["kill", &id]);
                        assert!(kill.status.success(), "{}", text(&kill.stderr));
                        id
                    })
                });
            }
        },
    );
    let (stderr, stdout) = (&done.stderr, &done.stdout);
    let killed = killer.expect("the load started").join().unwrap();
    let report = done.json();
    assert_eq!(done.code, 0, "{stderr}\n{stdout}");
    assert_eq!(report["passed"], true, "{stdout}");
    assert!(
        stderr.contains("the engine is a swarm manager: using its swarm"),
        "{stderr}"
    );
    // Each service has running tasks on both nodes.
    let (backend, frontend) = placement.split_once("frontend:\n").unwrap();
    for (svc, tasks, n) in [("backend", backend, 2), ("frontend", frontend, 8)] {
        let running: Vec<&str> = tasks
            .lines()
            .filter(|l| l.contains("Running"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(running.len(), n, "{svc}: {placement}");
        for node in [manager.as_str(), NODE_HOSTNAME] {
            assert!(
                running.contains(&node),
                "no {svc} task on {node}: {placement}"
            );
        }
    }
    let load = killed_frontend_restarted_at_full_rate(&report, &format!("{killed} on node 2"));
    eprintln!(
        "two-node swarm: node image {image_s:.1}s, node 2 up {:.1}s, swarm formed {:.1}s, \
         smoke {:.1}s, {load}; placement\n{placement}",
        swarm.node_start_s, swarm.join_s, done.seconds
    );
    // builder's own lines (with their timings) for the record.
    eprintln!("{stderr}");
    let run_id = report["run_id"].as_str().unwrap();
    assert_nothing_left(run_id);
    // Node 2's task containers (the killed one too) went with the services: its agent
    // removes them, builder's guard only reaches the manager's engine.
    let filter = format!("label=io.builder.run={run_id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = text(&swarm2::in_node(&["ps", "-aq", "--filter", &filter]).stdout);
        if left.trim().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "containers of run {run_id} left on node 2: {left}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let t = std::time::Instant::now();
    let failures = swarm.teardown();
    eprintln!("two-node swarm teardown: {:.1}s", t.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(swarm_state(), "inactive");
    assert_eq!(gwbridge_exists(), gwbridge_before);
    assert_eq!(swarm2::docker0(), docker0_before);
    let left = sh(Command::new("docker").args(["ps", "-aq", "--filter", "name=builder-swarm2"]));
    assert!(left.trim().is_empty(), "{left}");
    let nets =
        sh(Command::new("docker").args(["network", "ls", "-q", "--filter", "name=builder-swarm2"]));
    assert!(nets.trim().is_empty(), "{nets}");
    let o = Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .unwrap();
    assert!(!o.status.success(), "the node image {image} is left");
}
