//! `builder build` against the real Docker engine: compile the sample services in the `go`
//! builder image, run the binaries and talk HTTP to them, check the cache (no container on a
//! no-op, one rebuild after one changed file), Ctrl-C cleanup, and failure messages. Cache
//! volumes (`[build] cache`): they outlive the run, carry their labels, leave outputs
//! byte-identical and the key unchanged, and go with `builder gc --cache`.
//!
//! The `go` builder image is made once per machine in `target/builder-test-cache`
//! (BUILDER_CACHE) and shared with the other integration tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

use common::repo;

fn builder(project: &Path) -> Command {
    let mut c = common::builder();
    c.current_dir(project);
    c
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A temp project with the repository's recipes, services and base images.
fn sample_project() -> common::TempProject {
    let dir = common::TempProject::new();
    for sub in ["recipes", "services", "base-images"] {
        copy_tree(&repo().join(sub), &dir.path().join(sub));
    }
    dir
}

/// A temp project with only the base images, one recipe and one source directory.
fn small_project(recipe: &str, files: &[(&str, &str)]) -> common::TempProject {
    let dir = common::TempProject::new();
    copy_tree(&repo().join("base-images"), &dir.path().join("base-images"));
    std::fs::create_dir_all(dir.path().join("recipes")).unwrap();
    std::fs::write(dir.path().join("recipes/probe.toml"), recipe).unwrap();
    for (path, text) in files {
        let p = dir.path().join("src").join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

const PACKAGE: &str = r#"
[package]
name = "probe"
version = "2.3.4"
maintainer = "Ops <ops@example.com>"
description = "build probe"
"#;

fn text(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Runs `builder build --json` and returns (output, parsed JSON, build containers created by
/// that process according to the engine's event log).
fn build_json(project: &Path, extra: &[&str]) -> (Output, serde_json::Value, usize, Duration) {
    let since = now_secs() - 1.0;
    let started = Instant::now();
    let (out, pid) = common::output_and_pid(builder(project).args(["build", "--json"]).args(extra));
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let created = container_creates(pid, since);
    (out, json, created, took)
}

/// Build containers created by process `pid` since `since`, from `docker events`.
fn container_creates(pid: u32, since: f64) -> usize {
    let out = Command::new("docker")
        .args([
            "events",
            "--since",
            &format!("{since:.3}"),
            "--until",
            &format!("{:.3}", now_secs() + 1.0),
            "--filter",
            "type=container",
            "--filter",
            "event=create",
            "--filter",
            "label=io.builder.stage=build",
            "--filter",
            &format!("label=io.builder.pid={pid}"),
            "--format",
            "{{.ID}}",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn leftovers(pid: u32) -> String {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=io.builder.pid={pid}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn build_entry<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["builds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no build `{name}` in {json}"))
}

/// Containers and the network a test started; removed on drop.
struct Running {
    names: Vec<String>,
    network: Option<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("docker").args(["rm", "-f", n]).output();
        }
        if let Some(n) = &self.network {
            let _ = Command::new("docker").args(["network", "rm", n]).output();
        }
    }
}

fn docker_ok(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn published_port(container: &str) -> u16 {
    let port = docker_ok(&["port", container, "8080/tcp"]);
    let first = port.lines().next().unwrap();
    first.rsplit(':').next().unwrap().parse().unwrap()
}

/// A small HTTP/1.1 client on one keep-alive connection (Content-Length or chunked bodies).
struct Http {
    reader: BufReader<TcpStream>,
}

impl Http {
    fn connect(port: u16) -> std::io::Result<Http> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        Ok(Http {
            reader: BufReader::new(s),
        })
    }

    fn get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        // One write per request: several small writes meet Nagle and delayed ACKs (40 ms).
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.reader.get_mut().write_all(request.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            }
            if k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked") {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).map_err(std::io::Error::other)?;
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            self.reader.read_exact(&mut body)?;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// GET `path` until it answers (the server may still be starting); bounded to 20 s.
fn get_when_up(port: u16, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Http::connect(port).and_then(|mut h| h.get(path)) {
            Ok(r) => return r,
            Err(e) if Instant::now() > deadline => panic!("GET {path} on port {port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The recipe's version as builder resolves it (`${GIT_VERSION:-1.0.0}` and the like
/// expanded), from `builder plan --json`.
fn package_version(project: &Path, recipe: &str) -> String {
    let out = builder(project)
        .args(["--json", "plan", recipe])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["recipes"][0]["version"].as_str().unwrap().to_string()
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn builds_runs_and_caches_the_sample_services() {
    let project = sample_project();
    let p = project.path();

    // Cold: both services built, one container each.
    let (_, json, created, _) = build_json(p, &[]);
    for name in ["backend", "frontend"] {
        let b = build_entry(&json, name);
        assert_eq!(b["cached"], false, "{json}");
        let bin = p.join("dist/build").join(name).join(name);
        let meta = std::fs::metadata(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        assert!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0);
    }
    assert_eq!(json["containers_started"], 2, "{json}");
    assert_eq!(created, 2, "docker events should show two build containers");

    // Run both binaries in containers of the builder image on a network of our own.
    let stamp: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.join("dist/build/backend/.builder-build.json")).unwrap(),
    )
    .unwrap();
    let image = stamp["builder_image"].as_str().unwrap().to_string();
    let tag = format!("{}-{}", std::process::id(), now_secs() as u64);
    let network = format!("builder-test-build-{tag}");
    let backend = format!("builder-test-backend-{tag}");
    let frontend = format!("builder-test-frontend-{tag}");
    let mut running = Running {
        names: vec![],
        network: None,
    };
    let labels = [
        "--label",
        "io.builder=1",
        "--label",
        "io.builder.stage=test",
    ];
    let mut args = vec!["network", "create"];
    args.extend(labels);
    args.push(&network);
    docker_ok(&args);
    running.network = Some(network.clone());
    let run = |name: &str, svc: &str, env: &[&str]| {
        let mount = format!("{}:/app:ro", p.join("dist/build").join(svc).display());
        let cmd = format!("/app/{svc}");
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            &network,
            "--network-alias",
            svc,
            "-p",
            "127.0.0.1::8080",
            "-v",
            &mount,
            "--user",
            "1000:1000",
        ];
        args.extend(labels);
        for e in env {
            args.extend(["-e", e]);
        }
        args.extend([image.as_str(), cmd.as_str()]);
        docker_ok(&args);
    };
    run(&backend, "backend", &[]);
    running.names.push(backend.clone());
    let backend_port = published_port(&backend);
    let (status, _) = get_when_up(backend_port, "/");
    assert_eq!(status, 200);
    let (status, body) = get_when_up(backend_port, "/version");
    assert_eq!(status, 200);
    let version = package_version(p, "backend");
    assert!(
        body.contains(&version),
        "/version {body} should name {version}"
    );

    // The injected failure rate (default 2%) over 3,000 requests: 24..=105 failures is a
    // band of more than four standard deviations around 60.
    let mut http = Http::connect(backend_port).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut ok, mut failed) = (0u32, 0u32);
    for _ in 0..3000 {
        assert!(Instant::now() < deadline, "3,000 requests took over 60 s");
        match http.get("/api/items").unwrap().0 {
            200 => ok += 1,
            500 => failed += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok + failed, 3000);
    assert!(
        (24..=105).contains(&failed),
        "{failed} of 3000 failed; expected about 2%"
    );

    run(&frontend, "frontend", &["BACKEND_URL=http://backend:8080"]);
    running.names.push(frontend.clone());
    let frontend_port = published_port(&frontend);
    let (status, page) = get_when_up(frontend_port, "/");
    assert_eq!(status, 200, "{page}");
    // Backend gone: the frontend must exit non-zero on its own.
    docker_ok(&["stop", "-t", "2", &backend]);
    let waited = Command::new("timeout")
        .args(["30", "docker", "wait", &frontend])
        .output()
        .unwrap();
    assert!(
        waited.status.success(),
        "frontend still running 30 s after the backend stopped"
    );
    let code: i32 = String::from_utf8_lossy(&waited.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_ne!(code, 0, "frontend should crash when the backend is gone");
    drop(running);

    // Warm: nothing changed, so no container and a fast answer.
    let (_, json, created, took) = build_json(p, &[]);
    for name in ["backend", "frontend"] {
        assert_eq!(build_entry(&json, name)["cached"], true, "{json}");
    }
    assert_eq!(json["containers_started"], 0);
    assert_eq!(created, 0, "a no-op build must not create containers");
    assert!(took < Duration::from_secs(5), "no-op build took {took:?}");

    // One changed file: only its service rebuilds (with the warm Go cache volume of the
    // builds above), and the new binary works.
    let main = p.join("services/backend/main.go");
    let mut src = std::fs::read_to_string(&main).unwrap();
    src.push_str("\n// touched by tests/build.rs\n");
    std::fs::write(&main, src).unwrap();
    let (_, json, created, _) = build_json(p, &[]);
    assert_eq!(build_entry(&json, "backend")["cached"], false, "{json}");
    assert_eq!(build_entry(&json, "frontend")["cached"], true, "{json}");
    assert_eq!(created, 1);
    let bin = p.join("dist/build/backend/backend");
    let out = Command::new(&bin).arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&format!("backend {version}")),
        "{}",
        text(&out)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Command::new(&bin)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = KillOnDrop(server);
    assert_eq!(get_when_up(port, "/").0, 200);
    let (status, body) = get_when_up(port, "/version");
    assert_eq!(status, 200);
    assert!(body.contains(&version), "/version {body}");
    drop(server);
}

/// A child process killed when the test ends, pass or fail.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Builder's cache volumes of `recipe`: (name, labels).
fn cache_volumes(recipe: &str) -> Vec<(String, serde_json::Value)> {
    let names = docker_ok(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=io.builder.recipe={recipe}"),
    ]);
    names
        .lines()
        .map(|name| {
            let labels = docker_ok(&["volume", "inspect", "--format", "{{json .Labels}}", name]);
            (name.to_string(), serde_json::from_str(&labels).unwrap())
        })
        .collect()
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn cache_volume_outlives_the_run_keeps_outputs_identical_and_goes_with_gc_cache() {
    // A recipe name of its own: a fresh volume, and no other test's cache is touched.
    let name = format!("cacheprobe-{}-{}", std::process::id(), now_secs() as u64);
    let recipe = |cache: &str| {
        format!(
            r#"[package]
name = "{name}"
version = "2.3.4"
maintainer = "Ops <ops@example.com>"
description = "cache probe"

[build]
builder = "go"
source = "src"
command = ["sh", "-c", "ls -A /tmp/gocache | wc -l > /out/entries; grep NoNewPrivs /proc/self/status > /out/nnp; touch /out/undeclared; go build -trimpath -ldflags \"-s -w -X main.version=$VERSION\" -o /out/hello ."]
env = {{ CGO_ENABLED = "0", GOFLAGS = "-mod=mod", GOPROXY = "off" }}
outputs = ["hello", "entries", "nnp"]
{cache}
"#
        )
    };
    let with_cache = recipe(r#"cache = ["/tmp/gocache"]"#);
    let project = small_project(
        &with_cache,
        &[
            ("go.mod", "module hello\n\ngo 1.19\n"),
            (
                "main.go",
                "package main\n\nimport \"os\"\n\nvar version = \"dev\"\n\n\
                 func main() { os.Stdout.WriteString(\"hello \" + version + \"\\n\") }\n",
            ),
        ],
    );
    let p = project.path();
    let out = p.join("dist/build").join(&name);
    let read = |f: &str| {
        std::fs::read_to_string(out.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    assert!(cache_volumes(&name).is_empty());

    // Cold volume: made for this build, written by the build user (uid 1000), kept after the
    // run's cleanup removed the container.
    let (built, pid) = common::output_and_pid(builder(p).args(["build", "--json"]));
    assert!(built.status.success(), "{}", text(&built));
    assert_eq!(read("entries"), "0", "a fresh volume is empty");
    // The build runs without a way to gain privileges (setuid su/passwd are in the image),
    // and what it leaves in /out but does not declare is not kept.
    assert!(read("nnp").ends_with('1'), "{}", read("nnp"));
    assert!(!out.join("undeclared").exists());
    let cold = sha256_file(&out.join("hello"));
    let ran = Command::new(out.join("hello")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "hello 2.3.4\n");
    assert_eq!(leftovers(pid), "", "the build container must be gone");
    let volumes = cache_volumes(&name);
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    let (volume, labels) = &volumes[0];
    assert!(
        volume.starts_with(&format!("builder-cache-{name}-")),
        "{volume}"
    );
    assert_eq!(labels["io.builder"], "1", "{labels}");
    assert_eq!(labels["io.builder.stage"], "build-cache", "{labels}");
    assert_eq!(labels["io.builder.recipe"], name.as_str(), "{labels}");
    assert!(
        labels["io.builder.cache-scope"]
            .as_str()
            .is_some_and(|s| s.starts_with("project-")),
        "{labels}"
    );
    assert!(labels.get("io.builder.run").is_none(), "{labels}");
    let owner = docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--label",
        "io.builder=1",
        "--label",
        "io.builder.stage=test",
        "-v",
        &format!("{volume}:/c"),
        "--entrypoint",
        "stat",
        &stamp_image(p, &name),
        "-c",
        "%u:%g",
        "/c",
    ]);
    assert_eq!(owner, "1000:1000", "the volume belongs to the build user");

    // Warm volume, a rebuild (a source file changed, not the program): Go's cache is used
    // and the binary is byte-identical.
    std::fs::write(p.join("src/NOTES"), "a note\n").unwrap();
    let (_, json, created, _) = build_json(p, &[]);
    assert_eq!(build_entry(&json, &name)["cached"], false, "{json}");
    assert_eq!(created, 1);
    let entries: u32 = read("entries").parse().unwrap();
    assert!(
        entries > 0,
        "the second build must see the first one's cache"
    );
    assert_eq!(
        sha256_file(&out.join("hello")),
        cold,
        "warm cache changed the binary"
    );

    // `--no-cache` builds from nothing: the volume is not mounted.
    let (_, _, created, _) = build_json(p, &["--no-cache"]);
    assert_eq!(created, 1);
    assert_eq!(
        read("entries"),
        "0",
        "--no-cache must not mount the cache volume"
    );
    assert_eq!(sha256_file(&out.join("hello")), cold);

    // Another project with the same recipe gets a volume of its own (a project cannot
    // poison another's build cache on a shared runner).
    let other = small_project(
        &with_cache,
        &[
            ("go.mod", "module hello\n\ngo 1.19\n"),
            (
                "main.go",
                "package main\n\nimport \"os\"\n\nvar version = \"dev\"\n\n\
                 func main() { os.Stdout.WriteString(\"hello \" + version + \"\\n\") }\n",
            ),
        ],
    );
    let (built, _, _, _) = build_json(other.path(), &[]);
    assert!(built.status.success(), "{}", text(&built));
    assert_eq!(
        std::fs::read_to_string(other.path().join(format!("dist/build/{name}/entries")))
            .unwrap()
            .trim(),
        "0",
        "the other project's cache starts empty"
    );
    // `other` (and with it its volume) lives to the end: `gc --cache` below must spare it.
    assert_eq!(cache_volumes(&name).len(), 2);

    // `cache` is not part of the key: without it the outputs are still fresh, and a forced
    // build without any cache volume gives the same bytes again.
    std::fs::write(p.join("recipes/probe.toml"), recipe("")).unwrap();
    let (_, json, created, _) = build_json(p, &[]);
    assert_eq!(build_entry(&json, &name)["cached"], true, "{json}");
    assert_eq!(created, 0);
    let (_, _, created, _) = build_json(p, &["--no-cache"]);
    assert_eq!(created, 1);
    assert_eq!(read("entries"), "0", "no volume: an empty cache");
    assert_eq!(
        sha256_file(&out.join("hello")),
        cold,
        "cache volume changed the binary"
    );

    // `builder gc` keeps cache volumes; `--cache` removes them. `--run` with an unknown id
    // keeps this test from collecting other live tests' objects; `--cache NAME` from dropping
    // other recipes' caches.
    let gc = |args: &[&str]| -> serde_json::Value {
        let no_run = format!("none-{name}");
        let out = builder(p)
            .args(["--json", "gc", "--run", &no_run])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let listed = |report: &serde_json::Value| {
        report["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == volume.as_str())
    };
    let report = gc(&["--dry-run"]);
    assert!(
        !listed(&report),
        "plain gc must keep cache volumes: {report}"
    );
    let report = gc(&["--dry-run", "--cache"]);
    assert!(listed(&report), "gc --cache must select it: {report}");
    assert_eq!(cache_volumes(&name).len(), 2, "dry run removed nothing");
    // `--cache` is this project's: the other project's volume stays until asked for.
    let report = gc(&["--cache", &name]);
    assert!(listed(&report), "{report}");
    assert_eq!(
        cache_volumes(&name).len(),
        1,
        "gc --cache {name} must remove this project's volume only"
    );
    assert!(!cache_volumes(&name).iter().any(|(n, _)| *n == *volume));
    let report = gc(&["--cache", &name, "--all-projects"]);
    assert_eq!(report["volumes"].as_array().unwrap().len(), 1, "{report}");
    assert!(
        cache_volumes(&name).is_empty(),
        "gc --cache {name} --all-projects must remove every project's"
    );
}

/// The builder image named in the build stamp of `recipe`.
fn stamp_image(project: &Path, recipe: &str) -> String {
    let stamp: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            project
                .join("dist/build")
                .join(recipe)
                .join(".builder-build.json"),
        )
        .unwrap(),
    )
    .unwrap();
    stamp["builder_image"].as_str().unwrap().to_string()
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn build_runs_offline_as_the_image_user_with_filtered_sources() {
    let recipe = format!(
        r#"{PACKAGE}
[build]
builder = "go"
source = "src"
ignore = ["*.tmp"]
command = ["sh", "-c", "ls /sys/class/net > /out/nets; id -u > /out/uid; echo \"$VERSION $BUILDER_RECIPE $SOURCE_DATE_EPOCH\" > /out/env; ls -A /src > /out/files; stat -c %u /src/hello.txt > /out/owner"]
outputs = ["nets", "uid", "env", "files", "owner"]
"#
    );
    let project = small_project(
        &recipe,
        &[
            ("hello.txt", "hi"),
            ("skip.tmp", "no"),
            (".git/HEAD", "ref"),
            ("target/x", "no"),
        ],
    );
    let (_, json, created, _) = build_json(project.path(), &[]);
    assert_eq!(created, 1);
    let out = project.path().join("dist/build/probe");
    let read = |f: &str| {
        std::fs::read_to_string(out.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("nets"), "lo", "network must be off by default");
    assert_eq!(read("uid"), "1000", "the image's non-root user");
    assert_eq!(read("env"), "2.3.4 probe 0");
    assert_eq!(
        read("files"),
        "hello.txt",
        "ignored and skipped files must not be uploaded"
    );
    assert_eq!(read("owner"), "1000");
    let b = build_entry(&json, "probe");
    assert_eq!(b["outputs"].as_array().unwrap().len(), 5);

    // --no-cache forces a container even though the key matches.
    let (_, json, created, _) = build_json(project.path(), &["--no-cache"]);
    assert_eq!(build_entry(&json, "probe")["cached"], false);
    assert_eq!(created, 1);
}

/// The default route's gateway in `/proc/net/route` text (little-endian hex), dotted.
fn default_gateway(route: &str) -> Option<String> {
    let line = route
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("00000000"))?;
    let hex = u32::from_str_radix(line.split_whitespace().nth(2)?, 16).ok()?;
    let b = hex.to_le_bytes();
    Some(format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]))
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn a_bridge_build_gets_a_network_of_its_own_that_goes_with_it() {
    let recipe = format!(
        r#"{PACKAGE}
[build]
builder = "go"
source = "src"
network = "bridge"
command = ["sh", "-c", "ls /sys/class/net | sort > /out/nets; cat /proc/net/route > /out/route"]
outputs = ["nets", "route"]
"#
    );
    let project = small_project(&recipe, &[("hello.txt", "hi")]);
    let (_, _, created, _) = build_json(project.path(), &[]);
    assert_eq!(created, 1);
    let out = project.path().join("dist/build/probe");
    let nets = std::fs::read_to_string(out.join("nets")).unwrap();
    assert_eq!(nets.split_whitespace().collect::<Vec<_>>(), ["eth0", "lo"]);
    let route = std::fs::read_to_string(out.join("route")).unwrap();
    let gateway = default_gateway(&route).unwrap_or_else(|| panic!("no default route:\n{route}"));
    // Not the engine's default bridge (where other containers of the host are).
    let default_bridge = docker_ok(&[
        "network",
        "inspect",
        "bridge",
        "-f",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
    ]);
    assert_ne!(gateway, default_bridge.trim(), "{route}");
    // The network went with the container.
    let left = docker_ok(&[
        "network",
        "ls",
        "-q",
        "--filter",
        "name=builder-build-probe-",
    ]);
    assert!(left.trim().is_empty(), "networks left: {left}");
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn failing_test_command_exits_1_with_command_and_log_tail() {
    let recipe = format!(
        r#"{PACKAGE}
[build]
builder = "go"
source = "src"
test = ["sh", "-c", "for i in $(seq 1 30); do echo log-line-$i; done; exit 3"]
command = ["sh", "-c", "echo never > /out/never"]
outputs = ["never"]
"#
    );
    let project = small_project(&recipe, &[("a.txt", "a")]);
    let (out, pid) = common::output_and_pid(builder(project.path()).arg("build"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let err = &stderr[stderr.find("error:").expect("an error line")..];
    assert!(err.contains("exit code 3"), "{err}");
    assert!(
        err.contains("for i in $(seq 1 30)"),
        "the failing command: {err}"
    );
    assert!(
        err.contains("log-line-30") && err.contains("log-line-11"),
        "{err}"
    );
    assert!(
        !err.contains("log-line-10\n"),
        "only the last 20 lines: {err}"
    );
    // The live log went through too, prefixed with the recipe name.
    assert!(stderr.contains("probe | log-line-1\n"), "{stderr}");
    assert!(!project.path().join("dist/build/probe").exists());
    assert_eq!(leftovers(pid), "", "the build container must be removed");
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn a_build_past_its_timeout_fails_and_leaves_no_container() {
    let recipe = format!(
        r#"{PACKAGE}
[build]
builder = "go"
source = "src"
command = ["sh", "-c", "sleep 60"]
timeout = "3s"
"#
    );
    let project = small_project(&recipe, &[("a.txt", "a")]);
    // Make the builder image first, so the timeout only covers the build itself.
    let warm = builder(project.path())
        .args(["base", "build", "go"])
        .output()
        .unwrap();
    assert!(warm.status.success(), "{}", text(&warm));
    let started = Instant::now();
    let (out, pid) = common::output_and_pid(builder(project.path()).arg("build"));
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "the timeout must stop the build: {}",
        text(&out)
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("build of `probe` timed out after 3s; raise `[build] timeout` in")
            && stderr.contains("recipes/probe.toml")
            && stderr.contains("or fix the command"),
        "{stderr}"
    );
    assert_eq!(leftovers(pid), "", "the build container must be removed");
    assert!(!project.path().join("dist/build/probe").exists());
}

#[test]
fn unknown_builder_is_a_usage_error() {
    let recipe =
        format!("{PACKAGE}\n[build]\nbuilder = \"rust\"\nsource = \"src\"\ncommand = [\"true\"]\n");
    let project = small_project(&recipe, &[("a.txt", "a")]);
    let out = builder(project.path()).arg("build").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rust") && stderr.contains("go"), "{stderr}");
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn ctrl_c_during_a_build_leaves_no_container() {
    let recipe = format!(
        r#"{PACKAGE}
[build]
builder = "go"
source = "src"
command = ["sh", "-c", "echo build-is-running; sleep 300"]
"#
    );
    let project = small_project(&recipe, &[("a.txt", "a")]);
    let mut child = builder(project.path())
        .arg("build")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            if line.contains("probe | build-is-running") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // The builder image may have to be made first: allow for it.
    if rx.recv_timeout(Duration::from_secs(900)).is_err() {
        let _ = child.kill();
        panic!("the build never started: {}", reader.join().unwrap());
    }
    assert_ne!(
        leftovers(pid),
        "",
        "the build container should be running now"
    );
    let sent = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("builder did not exit within 30 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = reader.join().unwrap();
    assert!(!status.success(), "{log}");
    assert!(log.contains("interrupted"), "{log}");
    assert_eq!(leftovers(pid), "", "no container may be left: {log}");
    assert!(!project.path().join("dist/build/probe").exists());
}

#[test]
fn unreachable_engine_is_an_environment_error() {
    let recipe =
        format!("{PACKAGE}\n[build]\nbuilder = \"go\"\nsource = \"src\"\ncommand = [\"true\"]\n");
    let project = small_project(&recipe, &[("a.txt", "a")]);
    let out = builder(project.path())
        .arg("build")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DOCKER_HOST"), "{stderr}");
}
