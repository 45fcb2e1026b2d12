//! builder's image path (.deb → image tar → loaded in Docker) against `docker build` of the
//! equivalent Dockerfile (`FROM scratch`, `ADD` of the same static base rootfs tar, `COPY` of
//! the same binary, same user/ports/entrypoint), for each sample service in `services/`.
//!
//! Run: `cargo bench --bench image`. Needs `go` and a running Docker engine. The services
//! are compiled on the host (CGO_ENABLED=0) and packaged with builder's .deb writer; the
//! static base comes from the shared cache (BUILDER_CACHE, default
//! `target/builder-test-cache`). Each measurement removes the image before the next run;
//! `docker build` runs with `--no-cache` and the classic builder (Docker 20.10's default).
//! `BENCH_RUNS=N` (default 3) repeats each measurement and reports the median.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use builder::archive::{FileSource, Tree};
use builder::deb::{write_deb, Compression, DebSpec};
use builder::image::{build_image, recipe_target, ImageOptions};
use builder::project::Paths;
use builder::report::Reporter;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const EPOCH: u64 = 1_700_000_000;
const LABELS: [&str; 6] = [
    "--label",
    "io.builder=1",
    "--label",
    "io.builder.stage=bench",
    "--label",
    "io.builder.run=bench-image",
];

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn image_size(tag: &str) -> anyhow::Result<u64> {
    Ok(docker(&["image", "inspect", "--format", "{{.Size}}", tag])?.parse()?)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn compile(service: &str, out: &Path, cache: &Path) -> anyhow::Result<()> {
    let status = Command::new("go")
        .args(["build", "-trimpath", "-ldflags=-s -w", "-o"])
        .arg(out)
        .arg(".")
        .current_dir(Path::new(REPO).join("services").join(service))
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", cache.join("gocache"))
        .status()?;
    anyhow::ensure!(status.success(), "go build of {service} failed");
    Ok(())
}

struct Row {
    service: String,
    builder: Duration,
    builder_cold: Duration,
    docker: Duration,
    builder_size: u64,
    docker_size: u64,
    binary: u64,
}

async fn bench_service(
    service: &str,
    work: &Path,
    base_tar: &Path,
    runs: usize,
) -> anyhow::Result<Row> {
    let cache = PathBuf::from(std::env::var_os("BUILDER_CACHE").unwrap_or_default());
    let project = work.join(service);
    std::fs::create_dir_all(project.join("recipes"))?;
    std::fs::create_dir_all(project.join("base-images"))?;
    for b in ["bookworm", "static"] {
        std::fs::copy(
            Path::new(REPO).join(format!("base-images/{b}.toml")),
            project.join(format!("base-images/{b}.toml")),
        )?;
    }
    let binary = project.join(service);
    compile(service, &binary, &cache)?;
    let name = format!("bench-{service}");
    let version = "1.0.0";
    std::fs::write(
        project.join("recipes/svc.toml"),
        format!(
            r#"[package]
name = "{name}"
version = "{version}"
maintainer = "Bench <bench@example.com>"
description = "{service} for the image benchmark"
architecture = "amd64"

[[files]]
from = "{service}"
to = "/usr/bin/{service}"
mode = "0755"

[image]
base = "static"
entrypoint = ["/usr/bin/{service}"]
ports = [8080]
"#
        ),
    )?;
    let recipe = builder::recipe::load_file(&project.join("recipes/svc.toml"), &project)
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let mut data = Tree::new();
    data.add_file(
        &format!("usr/bin/{service}"),
        0o755,
        FileSource::Path(binary.clone()),
    )?;
    let deb = project.join(format!("{name}_{version}_amd64.deb"));
    let info = write_deb(
        &DebSpec {
            control: vec![
                ("Package".into(), name.clone()),
                ("Version".into(), version.into()),
                ("Architecture".into(), "amd64".into()),
                ("Maintainer".into(), "Bench <bench@example.com>".into()),
                (
                    "Description".into(),
                    format!("{service} for the image benchmark"),
                ),
            ],
            data,
            conffiles: vec![],
            scripts: vec![],
            compression: Compression::Xz,
            mtime: EPOCH,
        },
        &deb,
    )?;

    let paths = Paths::new(&project);
    let opts = ImageOptions {
        target: recipe_target(&paths.dist, &recipe)?,
        mtime: EPOCH,
        load: true,
        revision: None,
        source: None,
    };
    let tag = format!("{name}:{version}");
    let mut times = Vec::new();
    let mut builder_size = 0;
    for _ in 0..runs + 1 {
        let _ = docker(&["rmi", "-f", &tag]);
        let t = Instant::now();
        build_image(
            &paths,
            &recipe,
            &deb,
            &info.sha256,
            None,
            &opts,
            &Reporter::quiet(),
        )
        .await?;
        times.push(t.elapsed());
        builder_size = image_size(&tag)?;
    }
    let _ = docker(&["rmi", "-f", &tag]);
    let builder_cold = times.remove(0);

    // The equivalent Dockerfile on the same base files and binary.
    let ctx = project.join("docker-context");
    std::fs::create_dir_all(&ctx)?;
    std::fs::copy(base_tar, ctx.join("static-rootfs.tar"))?;
    std::fs::copy(&binary, ctx.join(service))?;
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM scratch\nADD static-rootfs.tar /\nCOPY {service} /usr/bin/{service}\n\
             USER 65532:65532\nEXPOSE 8080\nENTRYPOINT [\"/usr/bin/{service}\"]\n"
        ),
    )?;
    let dtag = format!("bench-docker-{service}:{version}");
    let mut dtimes = Vec::new();
    let mut docker_size = 0;
    for _ in 0..runs {
        let _ = docker(&["rmi", "-f", &dtag]);
        let t = Instant::now();
        let mut args = vec!["build", "--no-cache", "-q", "-t", &dtag];
        args.extend(LABELS);
        let ctx_s = ctx.to_string_lossy().into_owned();
        args.push(&ctx_s);
        let out = Command::new("docker")
            .args(&args)
            .env("DOCKER_BUILDKIT", "0")
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "docker build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dtimes.push(t.elapsed());
        docker_size = image_size(&dtag)?;
    }
    let _ = docker(&["rmi", "-f", &dtag]);
    Ok(Row {
        service: service.to_string(),
        builder: median(times),
        builder_cold,
        docker: median(dtimes),
        builder_size,
        docker_size,
        binary: std::fs::metadata(&binary)?.len(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("BUILDER_CACHE").is_none() {
        std::env::set_var(
            "BUILDER_CACHE",
            Path::new(REPO).join("target/builder-test-cache"),
        );
    }
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let bases = builder::base::BaseImages::load(Path::new(REPO))?;
    let base =
        tokio::task::spawn_blocking(move || bases.rootfs("static", &Reporter::quiet())).await??;
    let work = tempfile::tempdir()?;
    println!(
        "image benchmark: .deb → image loaded in Docker, median of {runs} (static base {:.1} MB)",
        base.size as f64 / 1e6
    );
    println!(
        "{:<10} {:>10} {:>10} {:>12} {:>7} {:>12} {:>12} {:>10}",
        "service",
        "builder",
        "(cold)",
        "docker build",
        "ratio",
        "builder size",
        "docker size",
        "binary"
    );
    for service in ["backend", "frontend"] {
        let r = bench_service(service, work.path(), &base.tar, runs).await?;
        println!(
            "{:<10} {:>9.2}s {:>9.2}s {:>11.2}s {:>7.2} {:>11.2}M {:>11.2}M {:>9.2}M",
            r.service,
            r.builder.as_secs_f64(),
            r.builder_cold.as_secs_f64(),
            r.docker.as_secs_f64(),
            r.builder.as_secs_f64() / r.docker.as_secs_f64(),
            r.builder_size as f64 / 1e6,
            r.docker_size as f64 / 1e6,
            r.binary as f64 / 1e6,
        );
    }
    Ok(())
}
