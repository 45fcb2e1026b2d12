//! A second Docker engine on this machine for the pool tests and bench: a dockerd of its own
//! (data root, exec root, pid file, containerd namespaces, a unix socket and a TLS tcp port
//! with certificates made here with `openssl`, vfs storage, a bridge interface of its own),
//! serialised across processes with a file lock, everything under /tmp/builder-pool-<pid>/.
//! Drop (also on panic) kills it, its containerd and their shims by pid, unmounts what they
//! left and deletes the directory. [`SecondEngine::stop`] makes it silent (SIGSTOP) until
//! the guard it returns is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::registry::free_port;
use super::text;

pub const LOCK: &str = "/tmp/builder-pool-tests.lock";

/// The engine this machine runs, as builder reaches it without a pool.
pub fn engine_a() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

/// An exclusive lock on [`LOCK`], released when dropped (or when the process dies).
pub struct FileLock(std::fs::File);

impl FileLock {
    pub fn take() -> FileLock {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(1800);
        use std::os::fd::AsRawFd;
        // SAFETY: flock on an open descriptor we own.
        while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            assert!(Instant::now() < deadline, "{LOCK} held for 30 minutes");
            std::thread::sleep(Duration::from_millis(500));
        }
        FileLock(f)
    }
}

pub fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args.split_whitespace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 (SAN IP) in `server/` and a client certificate
/// in `client/` (ca.pem, cert.pem, key.pem: a DOCKER_CERT_PATH).
pub fn make_certs(dir: &Path) -> (PathBuf, PathBuf) {
    let (server, client) = (dir.join("server"), dir.join("client"));
    std::fs::create_dir_all(&server).unwrap();
    std::fs::create_dir_all(&client).unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(
        dir,
        &format!("req -x509 {ec} -days 2 -subj /CN=builder-pool-CA -keyout ca.key -out ca.pem"),
    );
    for (who, cn, ext) in [
        (
            "server",
            "127.0.0.1",
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "client",
            "builder",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        std::fs::write(dir.join(format!("{who}.cnf")), ext).unwrap();
        openssl(
            dir,
            &format!("req {ec} -subj /CN={cn} -keyout {who}/key.pem -out {who}.csr"),
        );
        openssl(
            dir,
            &format!(
                "x509 -req -in {who}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                 -extfile {who}.cnf -out {who}/cert.pem"
            ),
        );
        std::fs::copy(dir.join("ca.pem"), dir.join(who).join("ca.pem")).unwrap();
    }
    (server, client)
}

/// The second engine: a dockerd of the test's own, reachable on a unix socket and on a TLS
/// tcp port.
pub struct SecondEngine {
    pub dir: PathBuf,
    child: Option<Child>,
    pub port: u16,
    pub client_certs: PathBuf,
    _lock: FileLock,
}

impl SecondEngine {
    pub fn start() -> SecondEngine {
        let lock = FileLock::take();
        let dir = PathBuf::from(format!("/tmp/builder-pool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (server, client_certs) = make_certs(&dir);
        // An empty config: the machine's /etc/docker/daemon.json sets data-root and the
        // storage driver, which would clash with the flags.
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let port = free_port();
        make_bridge();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let p = |s: &str| dir.join(s).display().to_string();
        let child = Command::new("dockerd")
            .args(["--config-file", &p("daemon.json")])
            .args(["--data-root", &p("data"), "--exec-root", &p("exec")])
            .args(["--pidfile", &p("dockerd.pid")])
            .args(["-H", &format!("unix://{}", p("docker.sock"))])
            .args(["-H", &format!("tcp://127.0.0.1:{port}"), "--tlsverify"])
            .args(["--tlscacert", &server.join("ca.pem").display().to_string()])
            .args(["--tlscert", &server.join("cert.pem").display().to_string()])
            .args(["--tlskey", &server.join("key.pem").display().to_string()])
            // A bridge of its own, never `--bridge none`: a dockerd started with the bridge
            // disabled deletes the interface named `docker0` (moby's initNetworkController,
            // removeDefaultBridgeInterface), which is the machine engine's default bridge, so
            // every later container there failed with "could not find bridge docker0".
            .args(["--storage-driver", "vfs", "--bridge", BRIDGE])
            .args(["--iptables=false", "--ip-masq=false"])
            // Its own containerd namespaces, should it find the machine's containerd.
            .args(["--containerd-namespace", "builder-pool-test"])
            .args([
                "--containerd-plugins-namespace",
                "builder-pool-test-plugins",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("could not start dockerd");
        let engine = SecondEngine {
            dir,
            child: Some(child),
            port,
            client_certs,
            _lock: lock,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = engine.docker(&["version", "--format", "{{.Server.Version}}"]);
            if ok.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the second dockerd did not answer within 60 s:\n{}",
                std::fs::read_to_string(engine.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        engine
    }

    pub fn socket(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    pub fn tcp(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// `docker` against this engine (its unix socket).
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .env("DOCKER_HOST", self.socket())
            .args(args)
            .output()
            .unwrap()
    }

    /// engines.toml naming "a" (this machine's engine) and "b" (this one, over TLS).
    pub fn engines_toml(&self) -> String {
        format!(
            "[[engine]]\nname = \"a\"\nhost = \"{}\"\n\n[[engine]]\nname = \"b\"\nhost = \"{}\"\n\
             tls_verify = true\ncert_path = \"{}\"\n",
            engine_a(),
            self.tcp(),
            self.client_certs.display()
        )
    }

    /// Kills dockerd (SIGKILL: the engine disappears the way a crashed host's does).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops dockerd (SIGSTOP: it keeps its connections open and answers nothing, as a hung
    /// host does) until the returned guard is dropped (also on panic), which continues it.
    pub fn stop(&self) -> Stopped {
        let pid = self.child.as_ref().expect("the second dockerd runs").id() as i32;
        // SAFETY: a signal to our own child.
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGSTOP) },
            0,
            "SIGSTOP dockerd"
        );
        Stopped { pid }
    }

    /// Pids of the processes whose command line names this engine's directory (its
    /// containerd and the shims of its containers).
    pub fn leftover_pids(&self) -> Vec<i32> {
        let needle = format!("{}/", self.dir.display());
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&needle) {
                pids.push(pid);
            }
        }
        pids
    }
}

/// A stopped second dockerd: continued (SIGCONT) when dropped.
pub struct Stopped {
    pid: i32,
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: a signal to the test's own child (or to nobody, if it is gone).
        unsafe { libc::kill(self.pid, libc::SIGCONT) };
    }
}

/// The second engine's bridge interface (tests hold [`FileLock`], so one at a time).
const BRIDGE: &str = "builderpool0";

/// Creates [`BRIDGE`] (a leftover of a killed run is replaced) with an address of its own.
fn make_bridge() {
    let _ = Command::new("ip").args(["link", "delete", BRIDGE]).output();
    for args in [
        &["link", "add", BRIDGE, "type", "bridge"][..],
        &["addr", "add", "10.231.77.1/24", "dev", BRIDGE],
        &["link", "set", BRIDGE, "up"],
    ] {
        let o = Command::new("ip")
            .args(args)
            .output()
            .expect("ip (iproute2)");
        assert!(o.status.success(), "ip {args:?}: {}", text(&o.stderr));
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A stopped dockerd (SIGSTOP) would hold SIGTERM until continued.
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
            // SIGTERM first: dockerd stops its containers and containerd itself.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for _ in 0..3 {
            let pids = self.leftover_pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        // What the daemon mounted under its directory (shm, netns), deepest first.
        let needle = format!("{}/", self.dir.display());
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&needle))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", &m]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = Command::new("ip").args(["link", "delete", BRIDGE]).output();
    }
}
