//! `builder smoke --target swarm` end to end with real Docker: the project is copied to a temp
//! dir, built and packaged by the real binary, Debian's `docker-registry` runs on 127.0.0.1,
//! and the sample stack is deployed as Swarm services (images pushed to the registry and run
//! by digest), loaded at 50 req/s through 127.0.0.1 with a frontend task's container killed
//! during the load (Swarm replaces it). Afterwards the engine is in the swarm state it was in
//! before (builder leaves a swarm it initialised) and nothing labelled with the run is left.
//! Swarm tests hold a file lock so two never initialise a swarm at once.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::registry::*;
use common::*;
use serde_json::Value;

/// Serialises swarm tests across processes (and other checkouts on this machine).
fn swarm_lock() -> builder::fslock::FileLock {
    builder::fslock::FileLock::acquire(
        std::path::Path::new("/tmp/builder-swarm-tests.lock"),
        || eprintln!("waiting for another swarm test to finish"),
    )
    .unwrap()
}

fn swarm_state() -> String {
    sh(Command::new("docker").args(["info", "-f", "{{.Swarm.LocalNodeState}}"]))
        .trim()
        .to_string()
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn sample_stack_passes_on_swarm_with_a_frontend_task_killed() {
    let project = packaged_sample_project("builder-swarm-test-");
    let _lock = swarm_lock();
    let before = swarm_state();
    let reg = start_registry();
    let registry = format!("127.0.0.1:{}", reg.port);
    let mut child = builder()
        .arg("--project")
        .arg(&project)
        .arg("--json")
        .args(["smoke", "--target", "swarm", "--registry", &registry])
        .args(["--duration", "25s", "--warmup", "5s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut s).unwrap();
        s
    });
    let mut stderr = String::new();
    let mut network = String::new();
    let mut killer = None;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(i) = line.find("network builder-smoke-") {
            network = line[i + 8..].split_whitespace().next().unwrap().to_string();
        }
        if line.contains("Loading") && line.contains("req/s for") && !network.is_empty() {
            // 8 s into the load (warm-up included), kill one frontend task's container (SIGKILL, exit 137):
            // Swarm's on-failure policy starts a replacement task.
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
        stderr.push_str(&line);
        stderr.push('\n');
    }
    let status = child.wait().unwrap();
    let stdout = out.join().unwrap();
    let killed = killer.expect("the load started").join().unwrap();
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}):\n{stdout}\n{stderr}"));
    let run_id = report["run_id"].as_str().unwrap().to_string();
    assert_eq!(status.code(), Some(0), "{stderr}\n{stdout}");
    assert_eq!(report["passed"], true, "{stdout}");
    assert!(stderr.contains("Swarm"), "{stderr}");
    if before == "inactive" {
        assert!(
            stderr.contains("initialised a single-node swarm"),
            "{stderr}"
        );
    }
    // The killed task is in the report as a restart made by Swarm.
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
    // Images ran by digest from the registry.
    assert!(stderr.contains(&format!("Pushed {registry}/")), "{stderr}");
    // The engine is back in the swarm state it was in, and nothing of the run is left.
    assert_eq!(swarm_state(), before, "{stderr}");
    assert_nothing_left(&run_id);
    if before == "active" {
        let filter = format!("label=io.builder.run={run_id}");
        let left = sh(Command::new("docker").args(["service", "ls", "-q", "--filter", &filter]));
        assert!(left.trim().is_empty(), "services left: {left}");
    }
}
