//! `cargo bench --bench build`: how long `builder build` takes on the sample services.
//!
//! Prints: cold builder image (debootstrap + import of a fresh `go` definition), cold build of
//! both services, warm no-op (target < 1 s, 0 containers), one-file-changed rebuild, and that
//! rebuild against `docker build` of an equivalent multi-stage Dockerfile (FROM the builder
//! image builder made, since no registry is reachable) after the same one-file change.
//!
//! Both recipes keep Go's build cache in a volume (`[build] cache`); the cold build starts
//! from empty volumes (`builder gc --cache <recipe>` first), so the one-file-changed rebuilds
//! use the cache the cold build filled. For fairness the Dockerfile uses a BuildKit cache
//! mount for the same directory when BuildKit is usable (`docker buildx`); without it (the
//! Debian docker.io 20.10 CLI has no buildx) the classic builder runs and a row says so.
//!
//! BENCH_SKIP_COLD_IMAGE=1 reuses the shared test image instead of making a fresh one.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.expect("walk");
        let rel = entry.path().strip_prefix(from).expect("prefix");
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

struct Bench {
    project: PathBuf,
    cache: PathBuf,
}

impl Bench {
    fn builder(&self, args: &[&str]) -> (Duration, serde_json::Value, usize) {
        let since = now() - 1.0;
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_builder"))
            .current_dir(&self.project)
            .env("BUILDER_CACHE", &self.cache)
            .env("CI", "1")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run builder");
        let pid = child.id();
        let out = child.wait_with_output().expect("wait builder");
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "builder {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (took, json, creates(pid, since))
    }
}

/// Build containers created by `pid`, from the engine's event log.
fn creates(pid: u32, since: f64) -> usize {
    let out = Command::new("docker")
        .args([
            "events",
            "--since",
            &format!("{since:.3}"),
            "--until",
            &format!("{:.3}", now() + 1.0),
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
        .expect("docker events");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn touch(file: &Path, n: u32) {
    let mut s = std::fs::read_to_string(file).expect("read source");
    s.push_str(&format!("\n// bench change {n}\n"));
    std::fs::write(file, s).expect("write source");
}

/// Whether `docker build` can use BuildKit (the CLI needs the buildx plugin for it).
fn buildkit_available() -> bool {
    Command::new("docker")
        .args(["buildx", "version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn docker_build(context: &Path, dockerfile: &Path, tag: &str, buildkit: bool) -> Duration {
    let started = Instant::now();
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", if buildkit { "1" } else { "0" })
        .args(["build", "-q", "--force-rm", "-f"])
        .arg(dockerfile)
        .args([
            "-t",
            tag,
            "--label",
            "io.builder=1",
            "--label",
            "io.builder.stage=bench",
        ])
        .arg(context)
        .output()
        .expect("docker build");
    assert!(
        out.status.success(),
        "docker build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().to_path_buf();
    for sub in ["recipes", "services", "base-images"] {
        copy_tree(&repo().join(sub), &project.join(sub));
    }
    let skip_cold = std::env::var("BENCH_SKIP_COLD_IMAGE").is_ok_and(|v| v == "1");
    let cache_dir = tempfile::tempdir().expect("tempdir");
    let cache = if skip_cold {
        repo().join("target/builder-test-cache")
    } else {
        // A nonce in the definition gives a new hash, so a truly cold image without touching
        // the shared one other tests use.
        let def = project.join("base-images/go.toml");
        let text = std::fs::read_to_string(&def).expect("read go.toml");
        let nonce = format!("env = {{ BENCH_NONCE = \"{}\", ", now());
        assert!(text.contains("env = { "), "go.toml has no inline env table");
        std::fs::write(&def, text.replacen("env = { ", &nonce, 1)).expect("write go.toml");
        cache_dir.path().to_path_buf()
    };
    let b = Bench { project, cache };
    let mut rows: Vec<(String, String)> = Vec::new();

    let (image_time, _, _) = b.builder(&["base", "build", "go"]);
    rows.push((
        if skip_cold {
            "builder image (reused)"
        } else {
            "cold builder image"
        }
        .into(),
        format!("{:.1} s", image_time.as_secs_f64()),
    ));

    // Empty cache volumes for a cold build. `--run` with an id no run has keeps gc from
    // collecting anything but these two volumes.
    for recipe in ["backend", "frontend"] {
        b.builder(&["--json", "gc", "--run", "bench-none", "--cache", recipe]);
    }
    let (cold, json, n) = b.builder(&["build", "--json"]);
    rows.push((
        "cold build (backend + frontend)".into(),
        format!("{:.1} s, {n} containers", cold.as_secs_f64()),
    ));
    let image_id = std::fs::read(b.project.join("dist/build/backend/.builder-build.json"))
        .ok()
        .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
        .and_then(|v| v["builder_image"].as_str().map(str::to_string))
        .expect("stamp names the builder image");
    let _ = json;
    let image_tag = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{index .RepoTags 0}}",
            &image_id,
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|t| t.starts_with("builder/"))
        .expect("the builder image has a builder/<name>:<hash> tag");

    let mut noop = Vec::new();
    for _ in 0..5 {
        let (t, _, n) = b.builder(&["build", "--json"]);
        noop.push((t, n));
    }
    let best = noop.iter().map(|x| x.0).min().unwrap_or_default();
    let worst = noop.iter().map(|x| x.0).max().unwrap_or_default();
    let containers: usize = noop.iter().map(|x| x.1).sum();
    rows.push((
        "warm no-op (5 runs)".into(),
        format!(
            "{:.3} s best, {:.3} s worst, {containers} containers{}",
            best.as_secs_f64(),
            worst.as_secs_f64(),
            if worst < Duration::from_secs(1) && containers == 0 {
                " (target met)"
            } else {
                " (TARGET MISSED)"
            }
        ),
    ));

    let main_go = b.project.join("services/backend/main.go");
    touch(&main_go, 1);
    let (rebuild, _, n) = b.builder(&["build", "--json"]);
    rows.push((
        "one file changed (backend)".into(),
        format!("{:.1} s, {n} container", rebuild.as_secs_f64()),
    ));

    // The same work with docker build: go test then go build in a stage FROM the builder
    // image, the binary copied into scratch.
    let version = "1.0.0";
    let buildkit = buildkit_available();
    let cache_mount = if buildkit {
        "--mount=type=cache,target=/tmp/gocache "
    } else {
        ""
    };
    let dockerfile = b.project.join("Dockerfile.bench");
    std::fs::write(
        &dockerfile,
        format!(
            "FROM {image_tag} AS build\nUSER root\nWORKDIR /src\nCOPY . .\n\
             RUN {cache_mount}go test ./... && CGO_ENABLED=0 go build -trimpath -ldflags \"-s -w -X main.version={version}\" -o /out/backend .\n\
             FROM scratch\nCOPY --from=build /out/backend /backend\nENTRYPOINT [\"/backend\"]\n"
        ),
    )
    .expect("write Dockerfile");
    let tag = format!("builder-bench/backend:{}", std::process::id());
    let context = b.project.join("services/backend");
    let docker_cold = docker_build(&context, &dockerfile, &tag, buildkit);
    touch(&main_go, 2);
    let docker_warm = docker_build(&context, &dockerfile, &tag, buildkit);
    touch(&main_go, 3);
    let (rebuild2, _, _) = b.builder(&["build", "--json"]);
    rows.push((
        "docker build mode".into(),
        if buildkit {
            "BuildKit, RUN --mount=type=cache,target=/tmp/gocache".into()
        } else {
            "classic builder: no BuildKit (no `docker buildx`), so no cache mount".into()
        },
    ));
    rows.push((
        "docker build, cold / one file changed".into(),
        format!(
            "{:.1} s / {:.1} s",
            docker_cold.as_secs_f64(),
            docker_warm.as_secs_f64()
        ),
    ));
    let mean_rebuild = (rebuild + rebuild2).as_secs_f64() / 2.0;
    rows.push((
        "warm rebuild ratio builder / docker build".into(),
        format!(
            "{:.2} ({mean_rebuild:.1} s / {:.1} s)",
            mean_rebuild / docker_warm.as_secs_f64(),
            docker_warm.as_secs_f64()
        ),
    ));

    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
    if !skip_cold {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &image_tag])
            .output();
    }

    println!(
        "\nbuilder build benchmark (sample services, {} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    for (k, v) in &rows {
        println!("  {k:<44} {v}");
    }
}
