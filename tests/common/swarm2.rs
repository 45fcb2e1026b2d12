//! A two-node Docker Swarm on this machine for the swarm tests: the machine's engine as the
//! manager and a second dockerd inside a container of its own network namespace as a worker.
//!
//! A second engine in the host's namespace cannot join (the swarm ports 2377, 7946 and
//! 4789/udp are the manager's), so node 2 is `dockerd` in a container made from a builder
//! base (`base-images/swarm-node.toml`, written by [`NODE_BASE`]: Debian's docker.io,
//! iptables, socat) on a labelled bridge network with a fixed subnet ([`SUBNET`]). It is not
//! `--privileged`: on this machine the bounding set lacks `CAP_SYS_RESOURCE` and Docker 20.10
//! asks for every capability the kernel knows for a privileged container ("unable to apply
//! caps: operation not permitted"), so it gets every capability but that one, no seccomp
//! filter, unmasked /proc, every device, a private cgroup namespace whose hierarchies its
//! init mounts writable, and vfs storage on a tmpfs.
//!
//! The manager advertises the bridge's gateway; node 2 joins with the worker token. Images
//! reach node 2 the way they reach the manager: services name `127.0.0.1:PORT/name@digest`,
//! so the registry (on the host's 127.0.0.1) is also reached through a forwarder on the
//! gateway, and socat inside node 2 listens on its own 127.0.0.1:PORT (an insecure registry
//! Docker allows without configuration) and forwards there.
//!
//! [`TwoNodeSwarm::teardown`] (and Drop, on a failed test) makes node 2 leave, the manager
//! leave the swarm it made (and remove the `docker_gwbridge` Swarm made), and removes the
//! container, the network and the base image.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::text;

/// The base node 2 runs (written into the test's project as `base-images/swarm-node.toml`).
pub const NODE_BASE: &str = r#"# dockerd for node 2 of the two-node swarm tests
kind = "debootstrap"
description = "Debian bookworm with Docker (docker.io), iptables and socat"
suite = "bookworm"
variant = "minbase"
packages = ["docker.io", "iptables", "socat", "procps", "iproute2", "ca-certificates"]
"#;

/// The test network: a /24 no route of this machine uses (checked before it is created).
pub const SUBNET: &str = "10.213.17.0/24";
/// The network's gateway on the host: what the manager advertises, where the registry's
/// forwarder listens.
pub const GATEWAY: &str = "10.213.17.1";
const NODE_IP: &str = "10.213.17.2";
const NETWORK: &str = "builder-swarm2-net";
const BRIDGE: &str = "builder-swarm2";
const NODE: &str = "builder-swarm2-node2";
/// Node 2's hostname, as `docker service ps` names it.
pub const NODE_HOSTNAME: &str = "builder-swarm2-node2";

/// Node 2's init: /sys writable, and each cgroup hierarchy (read-only bind mounts of the
/// container's cgroups) mounted anew, writable, at the root of its cgroup namespace, so
/// the inner runc can make its containers' cgroups; then dockerd.
const NODE_INIT: &str = r#"set -e
mount -o remount,rw /sys
for d in /sys/fs/cgroup/*; do
  opts=$(awk -v m="$d" '$5 == m {print $NF}' /proc/self/mountinfo | tr ',' '\n' | grep -vE '^(ro|rw)$' | paste -sd,)
  umount "$d"
  mount -t cgroup -o "rw,$opts" cgroup "$d"
done
exec dockerd --storage-driver vfs --host unix:///var/run/docker.sock
"#;

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("docker")
}

fn ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {args:?}: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// `docker` inside node 2 (its own engine).
pub fn in_node(args: &[&str]) -> Output {
    let mut all = vec!["exec", NODE, "docker"];
    all.extend_from_slice(args);
    docker(&all)
}

pub fn swarm_state() -> String {
    ok(&["info", "-f", "{{.Swarm.LocalNodeState}}"])
        .trim()
        .to_string()
}

pub fn gwbridge_exists() -> bool {
    ok(&["network", "ls", "--format", "{{.Name}}"])
        .lines()
        .any(|n| n == "docker_gwbridge")
}

/// `docker0`'s address line, to show the test left the machine's default bridge as it was.
pub fn docker0() -> String {
    let o = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "docker0"])
        .output()
        .expect("ip (iproute2)");
    text(&o.stdout)
        .split_whitespace()
        .nth(3)
        .unwrap_or("")
        .to_string()
}

/// Forwards TCP connections from `GATEWAY:port` to `127.0.0.1:port` until dropped.
struct Forwarder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    fn start(port: u16) -> Forwarder {
        let listener = TcpListener::bind((GATEWAY, port))
            .unwrap_or_else(|e| panic!("could not listen on {GATEWAY}:{port}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(("127.0.0.1", port)) {
                            pipe(client, server);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Forwarder {
            stop,
            thread: Some(thread),
        }
    }
}

/// Copies both ways between `a` and `b` on two threads; each ends with its connection.
fn pipe(a: TcpStream, b: TcpStream) {
    for (mut from, mut to) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
        std::thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The swarm: the machine's engine (manager, advertised on [`GATEWAY`]) and node 2.
pub struct TwoNodeSwarm {
    image: String,
    gwbridge_existed: bool,
    /// The test initialised the manager's swarm (and leaves it).
    made_swarm: bool,
    forwarder: Option<Forwarder>,
    torn_down: bool,
    /// What [`TwoNodeSwarm::start`] measured: seconds to start node 2's dockerd, to form
    /// the swarm.
    pub node_start_s: f64,
    pub join_s: f64,
}

/// Removes what a killed earlier run left under the fixed names (the caller holds the
/// swarm tests' lock, so no live test owns them).
fn remove_leftovers() {
    let _ = docker(&["rm", "-f", NODE]);
    let _ = docker(&["network", "rm", NETWORK]);
}

impl TwoNodeSwarm {
    /// Starts node 2 from base image `image` and forms the swarm; the registry on
    /// 127.0.0.1:`registry_port` becomes reachable at the same address inside node 2.
    /// Panics (after cleaning up) when the engine is already in a swarm: node 2 could not
    /// reach a swarm advertised elsewhere, and the test leaves other swarms alone.
    pub fn start(image: &str, registry_port: u16) -> TwoNodeSwarm {
        // Owned from here: a failed check below still removes the image.
        let mut swarm = TwoNodeSwarm {
            image: image.to_string(),
            gwbridge_existed: gwbridge_exists(),
            made_swarm: false,
            forwarder: None,
            torn_down: false,
            node_start_s: 0.0,
            join_s: 0.0,
        };
        let state = swarm_state();
        assert_eq!(
            state, "inactive",
            "the two-node swarm test makes its own swarm; this engine is in one ({state})"
        );
        remove_leftovers();
        let routes = text(&Command::new("ip").arg("route").output().unwrap().stdout);
        assert!(
            !routes.contains("10.213.17."),
            "{SUBNET} is in use on this machine:\n{routes}"
        );
        let label = format!("io.builder.run=swarm2-test-{}", std::process::id());
        ok(&[
            "network",
            "create",
            "--driver",
            "bridge",
            "--subnet",
            SUBNET,
            "--gateway",
            GATEWAY,
            "-o",
            &format!("com.docker.network.bridge.name={BRIDGE}"),
            "--label",
            "io.builder=1",
            "--label",
            &label,
            NETWORK,
        ]);
        swarm.forwarder = Some(Forwarder::start(registry_port));
        let started = Instant::now();
        ok(&[
            "run",
            "-d",
            "--name",
            NODE,
            "--hostname",
            NODE_HOSTNAME,
            "--label",
            "io.builder=1",
            "--label",
            &label,
            "--network",
            NETWORK,
            "--ip",
            NODE_IP,
            "--cap-add",
            "ALL",
            "--cap-drop",
            "SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--security-opt",
            "systempaths=unconfined",
            "--device-cgroup-rule",
            "a *:* rwm",
            "--cgroupns",
            "private",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/var/lib/docker:exec",
            image,
            "sh",
            "-c",
            NODE_INIT,
        ]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !in_node(&["info", "-f", "{{.ServerVersion}}"])
            .status
            .success()
        {
            let logs = docker(&["logs", "--tail", "30", NODE]);
            assert!(
                Instant::now() < deadline,
                "node 2's dockerd did not answer within 60 s:\n{}{}",
                text(&logs.stdout),
                text(&logs.stderr)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        swarm.node_start_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        swarm.made_swarm = true;
        ok(&[
            "swarm",
            "init",
            "--advertise-addr",
            GATEWAY,
            "--listen-addr",
            &format!("{GATEWAY}:2377"),
        ]);
        let token = ok(&["swarm", "join-token", "-q", "worker"]);
        let o = in_node(&[
            "swarm",
            "join",
            "--token",
            token.trim(),
            &format!("{GATEWAY}:2377"),
        ]);
        assert!(
            o.status.success(),
            "node 2 could not join: {}",
            text(&o.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let nodes = ok(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
            if nodes.contains(&format!("{NODE_HOSTNAME} Ready")) {
                break;
            }
            assert!(Instant::now() < deadline, "node 2 not Ready: {nodes}");
            std::thread::sleep(Duration::from_millis(300));
        }
        swarm.join_s = started.elapsed().as_secs_f64();
        // The registry's address inside node 2, forwarded to the gateway.
        ok(&[
            "exec",
            "-d",
            NODE,
            "socat",
            &format!("TCP-LISTEN:{registry_port},fork,reuseaddr,bind=127.0.0.1"),
            &format!("TCP:{GATEWAY}:{registry_port}"),
        ]);
        swarm
    }

    /// Undoes everything [`TwoNodeSwarm::start`] did; every step is tried, the failures are
    /// returned.
    pub fn teardown(&mut self) -> Vec<String> {
        if self.torn_down {
            return Vec::new();
        }
        self.torn_down = true;
        let mut failures = Vec::new();
        let mut step = |what: &str, o: Output| {
            if !o.status.success() {
                failures.push(format!("{what}: {}", text(&o.stderr).trim()));
            }
        };
        if docker(&["inspect", NODE]).status.success() {
            step("node 2 leaves", in_node(&["swarm", "leave", "--force"]));
        }
        if self.made_swarm && swarm_state() != "inactive" {
            step("the manager leaves", docker(&["swarm", "leave", "--force"]));
        }
        if self.made_swarm && !self.gwbridge_existed {
            // Swarm's ingress sandbox lets go of it a moment after the leave.
            let deadline = Instant::now() + Duration::from_secs(15);
            while gwbridge_exists() {
                let o = docker(&["network", "rm", "docker_gwbridge"]);
                if o.status.success() {
                    break;
                }
                if Instant::now() > deadline {
                    step("docker_gwbridge", o);
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        step("node 2's container", docker(&["rm", "-f", "-v", NODE]));
        self.forwarder = None;
        step("the network", docker(&["network", "rm", NETWORK]));
        step("the node image", docker(&["rmi", &self.image]));
        failures
    }
}

impl Drop for TwoNodeSwarm {
    fn drop(&mut self) {
        let failures = self.teardown();
        if !failures.is_empty() {
            eprintln!("two-node swarm cleanup: {failures:?}");
        }
    }
}

/// The base node 2 runs, made by builder in `project` (written there first).
pub fn node_image(project: &Path) -> String {
    super::write_files(project, &[("base-images/swarm-node.toml", NODE_BASE)]);
    super::apt::base_image(project, "swarm-node")
}
