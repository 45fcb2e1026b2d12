//! Images made from a .deb on real bases, checked with real tools: Docker 20.10 loads and
//! runs them (as uid 65532, serving HTTP on 127.0.0.1), skopeo reads both the OCI and the
//! Docker side of the tar, repeated packaging is byte-identical, a rebase keeps the
//! application layer, and bad `[image]` tables fail before anything is written.
//!
//! The sample is a static Go hello server compiled on the host (`go`, CGO_ENABLED=0) and
//! packaged with `builder::deb::write_deb`. Base rootfs tars are shared with the other
//! tests through BUILDER_CACHE=target/builder-test-cache (made once, reused by hash).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use builder::archive::{FileSource, Tree};
use builder::deb::{write_deb, DebSpec};
use builder::image::{build_image, check_image_spec, recipe_target, ImageOptions, ImageResult};
use builder::project::Paths;
use builder::recipe::{Compression, ImageSpec, Recipe};
use builder::report::Reporter;

const EPOCH: u64 = 1_700_000_000;
const REPO: &str = env!("CARGO_MANIFEST_DIR");

struct Fixture {
    /// Holds the fixture files for the whole test run.
    _dir: tempfile::TempDir,
    binary: PathBuf,
    deb: PathBuf,
    deb_sha256: builder::digest::Digest,
    version: String,
    run: String,
}

/// The static Go server and its .deb, made once per test binary.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let cache = common::test_cache();
        std::fs::create_dir_all(&cache).unwrap();
        // Set before any test reads it: every test goes through this initialiser first.
        std::env::set_var("BUILDER_CACHE", &cache);
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("go.mod"), "module hello\n\ngo 1.19\n").unwrap();
        std::fs::write(
            src.join("main.go"),
            r#"package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from uid %d\n", os.Getuid())
	})
	if err := http.ListenAndServe(":8080", nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
"#,
        )
        .unwrap();
        let binary = dir.path().join("hello");
        let out = Command::new("go")
            .args(["build", "-trimpath", "-ldflags=-s -w", "-o"])
            .arg(&binary)
            .arg(".")
            .current_dir(&src)
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", cache.join("gocache"))
            .env("GOFLAGS", "-mod=mod")
            .output()
            .expect("go must be installed (apt-get install golang-go)");
        assert!(
            out.status.success(),
            "go build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let run = format!("{}", std::process::id());
        let version = format!("1.0.0+t{run}");
        let b = |s: &str| FileSource::Bytes(s.as_bytes().to_vec().into());
        let mut data = Tree::new();
        data.add_file("usr/bin/hello", 0o755, FileSource::Path(binary.clone()))
            .unwrap();
        data.add_file("etc/hello/hello.conf", 0o644, b("greeting = hello\n"))
            .unwrap();
        data.add_file(
            "lib/systemd/system/hello.service",
            0o644,
            b("[Service]\nExecStart=/usr/bin/hello\n"),
        )
        .unwrap();
        data.add_file(
            "usr/share/doc/buildertest-hello/copyright",
            0o644,
            b("MIT\n"),
        )
        .unwrap();
        let deb = dir
            .path()
            .join(format!("buildertest-hello_{version}_amd64.deb"));
        let info = write_deb(
            &DebSpec {
                control: vec![
                    ("Package".into(), "buildertest-hello".into()),
                    ("Version".into(), version.clone()),
                    ("Architecture".into(), "amd64".into()),
                    ("Maintainer".into(), "Tests <tests@example.com>".into()),
                    ("Description".into(), "hello server for image tests".into()),
                ],
                data,
                conffiles: vec!["/etc/hello/hello.conf".into()],
                scripts: vec![],
                compression: Compression::Gzip,
                mtime: EPOCH,
            },
            &deb,
        )
        .expect("write the test .deb");
        Fixture {
            _dir: dir,
            binary,
            deb,
            deb_sha256: info.sha256,
            version,
            run,
        }
    })
}

/// A project directory with the repository's base definitions.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bases = dir.path().join("base-images");
    std::fs::create_dir_all(&bases).unwrap();
    for name in ["bookworm", "static", "slim"] {
        std::fs::copy(
            Path::new(REPO).join(format!("base-images/{name}.toml")),
            bases.join(format!("{name}.toml")),
        )
        .unwrap();
    }
    dir
}

/// The recipe a user would write for the fixture, loaded through builder's own loader;
/// `tweak` then changes the validated `[image]` table (also into values TOML validation
/// would refuse, to exercise the image checks on their own).
fn recipe(project: &Path, tweak: impl FnOnce(&mut ImageSpec)) -> Recipe {
    let f = fixture();
    let recipes = project.join("recipes");
    std::fs::create_dir_all(&recipes).unwrap();
    std::fs::copy(&f.binary, project.join("hello")).unwrap();
    std::fs::write(project.join("hello.conf"), "greeting = hello\n").unwrap();
    let file = recipes.join("hello.toml");
    std::fs::write(
        &file,
        format!(
            r#"[package]
name = "buildertest-hello"
version = "{}"
maintainer = "Tests <tests@example.com>"
description = "hello server for image tests"
architecture = "amd64"

[[files]]
from = "hello"
to = "/usr/bin/hello"
mode = "0755"

[[files]]
from = "hello.conf"
to = "/etc/hello/hello.conf"

[image]
base = "static"
entrypoint = ["/usr/bin/hello"]
env = {{ GREETING = "hello" }}
ports = [8080]
"#,
            f.version
        ),
    )
    .unwrap();
    let mut r = builder::recipe::load_file(&file, project).unwrap_or_else(|d| panic!("{d}"));
    tweak(r.image.as_mut().expect("[image]"));
    r
}

/// Options for `recipe`'s image in `project`, where the plan puts it.
fn opts(project: &Path, recipe: &Recipe, load: bool) -> ImageOptions {
    ImageOptions {
        target: recipe_target(&Paths::new(project).dist, recipe).unwrap(),
        mtime: EPOCH,
        load,
        revision: Some("0123456789abcdef0123456789abcdef01234567".into()),
        source: Some("https://example.com/hello".into()),
    }
}

async fn build(
    project: &Path,
    recipe: &Recipe,
    base: Option<&str>,
    load: bool,
) -> anyhow::Result<ImageResult> {
    let f = fixture();
    build_image(
        &Paths::new(project),
        recipe,
        &f.deb,
        &f.deb_sha256,
        base,
        &opts(project, recipe, load),
        &Reporter::quiet(),
    )
    .await
}

fn docker(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

/// Removes what a test created in the engine, also when an assertion fails.
struct Cleanup {
    containers: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        for i in &self.images {
            let _ = docker(&["rmi", "-f", i]);
        }
    }
}

fn http_get(addr: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
async fn image_loads_runs_as_nonroot_and_holds_only_the_service() {
    let f = fixture();
    let proj = project();
    let r = recipe(proj.path(), |_| {});
    let img = build(proj.path(), &r, None, true)
        .await
        .expect("build the image");
    let mut cleanup = Cleanup {
        containers: vec![],
        images: vec![img.tag.clone()],
    };
    assert_eq!(img.tag, format!("buildertest-hello:1.0.0_t{}", f.run));
    assert!(img.loaded);
    assert_eq!(
        img.path,
        proj.path()
            .join(format!("dist/images/buildertest-hello_{}.tar", f.version))
    );

    // The engine has it under the computed id.
    let (ok, id, err) = docker(&["image", "inspect", "--format", "{{.Id}}", &img.tag]);
    assert!(ok, "{err}");
    assert_eq!(id, img.image_id.to_string());

    let labels = format!("io.builder.run=test-image-{}", f.run);
    let (ok, cid, err) = docker(&[
        "run",
        "-d",
        "--label",
        "io.builder=1",
        "--label",
        &labels,
        "--label",
        "io.builder.stage=test",
        "-p",
        "127.0.0.1::8080",
        &img.tag,
    ]);
    assert!(ok, "docker run failed: {err}");
    cleanup.containers.push(cid.clone());
    let (ok, port, err) = docker(&["port", &cid, "8080/tcp"]);
    assert!(ok, "{err}");
    let addr = port
        .lines()
        .find(|l| l.starts_with("127.0.0.1:"))
        .expect("published on 127.0.0.1")
        .to_string();

    let deadline = Instant::now() + Duration::from_secs(15);
    let (status, body) = loop {
        if let Some(r) = http_get(&addr) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no answer from {addr}; logs: {}",
            docker(&["logs", &cid]).2
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello from uid 65532"), "{body}");

    // The process as the host kernel sees it.
    let (ok, pid, err) = docker(&["inspect", "--format", "{{.State.Pid}}", &cid]);
    assert!(ok, "{err}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65532"; 4]
    );
    let gid_line = status.lines().find(|l| l.starts_with("Gid:")).unwrap();
    assert_eq!(
        gid_line.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65532"; 4]
    );

    // No shell, no toolchain: the container's whole filesystem.
    let export = Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {cid} | tar -t"))
        .output()
        .unwrap();
    assert!(export.status.success());
    let files: Vec<String> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    assert!(files.iter().any(|f| f == "usr/bin/hello"));
    assert!(
        files.iter().any(|f| f == "etc/hello/hello.conf"),
        "conffiles are kept by default"
    );
    for absent in [
        "bin/sh",
        "usr/bin/sh",
        "bin/bash",
        "usr/bin/go",
        "usr/lib/go",
        "usr/bin/apt",
        "usr/bin/dpkg",
        "usr/share/doc/buildertest-hello/copyright",
        "lib/systemd/system/hello.service",
    ] {
        assert!(
            !files.iter().any(|f| f == absent),
            "/{absent} is in the image"
        );
    }
    let (ok, _, _) = docker(&["cp", &format!("{cid}:/bin/sh"), "-"]);
    assert!(!ok, "/bin/sh must not exist");

    // Size: the binary, the config file and the base's files, give or take a few hundred KB.
    let (ok, size, err) = docker(&["image", "inspect", "--format", "{{.Size}}", &img.tag]);
    assert!(ok, "{err}");
    let size: u64 = size.parse().unwrap();
    let inspect = builder::oci::inspect(&img.path).unwrap();
    let base_tar_files = {
        let mut a =
            tar::Archive::new(std::fs::File::open(inspect_base_tar(&inspect, &img)).unwrap());
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().header().entry_size().unwrap_or(0))
            .sum::<u64>()
    };
    let expected = std::fs::metadata(&f.binary).unwrap().len() + 17 + base_tar_files;
    let diff = size.abs_diff(expected);
    assert!(
        diff < 300_000,
        "image is {size} bytes, binary + files are {expected}"
    );
}

/// The base layer as an uncompressed tar, unpacked from the image tar.
fn inspect_base_tar(inspect: &builder::oci::ImageInspect, img: &ImageResult) -> PathBuf {
    let digest = &inspect.layers[0].digest;
    let out = img.path.with_extension("base.tar");
    let mut a = tar::Archive::new(std::fs::File::open(&img.path).unwrap());
    let want = digest.blob_path();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == want {
            let mut gz = flate2::read::GzDecoder::new(e);
            let mut f = std::fs::File::create(&out).unwrap();
            std::io::copy(&mut gz, &mut f).unwrap();
            return out;
        }
    }
    panic!("no {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
async fn skopeo_and_inspect_read_the_tar() {
    let proj = project();
    let r = recipe(proj.path(), |_| {});
    let img = build(proj.path(), &r, None, false)
        .await
        .expect("build the image");

    for transport in ["oci-archive", "docker-archive"] {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("{transport}:{}", img.path.display()))
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo {transport}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("{transport}:{}", img.path.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo {transport}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(cfg["config"]["User"], "65532:65532");
        assert_eq!(cfg["config"]["Entrypoint"][0], "/usr/bin/hello");
        assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    }
    let out = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", img.path.display()))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"], img.manifest_digest.to_string());
    assert_eq!(v["Layers"][1], img.app_layer_digest.to_string());
    assert_eq!(
        v["Labels"]["io.builder.deb.sha256"],
        fixture().deb_sha256.hex()
    );

    let i = builder::oci::inspect(&img.path).unwrap();
    assert_eq!(i.image_id, img.image_id);
    assert_eq!(i.manifest_digest, img.manifest_digest);
    assert_eq!(i.repo_tags, std::slice::from_ref(&img.tag));
    assert_eq!(i.layers.len(), 2);
    assert_eq!(i.layers[1].digest, img.app_layer_digest);
    assert_eq!(i.config.ports, ["8080/tcp"]);
    assert_eq!(i.config.user, "65532:65532");
    assert!(i.config.env.iter().any(|e| e == "GREETING=hello"));
    assert!(i.config.env.iter().any(|e| e.starts_with("PATH=")));
    assert_eq!(
        i.config.labels["org.opencontainers.image.version"],
        fixture().version
    );
    assert_eq!(
        i.config.labels["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(i.created.as_deref(), Some("2023-11-14T22:13:20Z"));
    assert_eq!(i.uncompressed_size, img.size);
    let text = builder::oci::render(&i);

    // The user-facing command, as text and as JSON.
    let bin = env!("CARGO_BIN_EXE_builder");
    let out = Command::new(bin)
        .arg("inspect")
        .arg(&img.path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains(&img.image_id.to_string())
            && human.contains(&img.app_layer_digest.to_string()),
        "{human}"
    );
    let out = Command::new(bin)
        .args(["inspect", "--json"])
        .arg(&img.path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["image_id"], img.image_id.to_string());
    assert_eq!(v["config"]["ports"][0], "8080/tcp");
    assert_eq!(v["layers"][1]["digest"], img.app_layer_digest.to_string());
    // A tar that is not an image is a usage error that says so.
    let plain = proj.path().join("plain.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&plain)
        .arg("-C")
        .arg(proj.path())
        .arg("recipes")
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new(bin)
        .arg("inspect")
        .arg(&plain)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an OCI image tar"));
    assert!(
        text.contains(&img.image_id.to_string()) && text.contains("8080/tcp"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
async fn packaging_twice_gives_the_same_bytes() {
    let (p1, p2) = (project(), project());
    let a = build(p1.path(), &recipe(p1.path(), |_| {}), None, false)
        .await
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let b = build(p2.path(), &recipe(p2.path(), |_| {}), None, false)
        .await
        .unwrap();
    assert_ne!(a.path, b.path);
    assert_eq!(a.image_id, b.image_id);
    assert_eq!(a.manifest_digest, b.manifest_digest);
    assert_eq!(sha256_file(&a.path), sha256_file(&b.path));
    assert_eq!(a.tar_sha256.hex(), sha256_file(&b.path));
    // Nothing is left behind beside the image.
    let left: Vec<_> = std::fs::read_dir(p1.path().join("dist/images"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");

    // A different SOURCE_DATE_EPOCH changes the config but not the layers.
    let r2 = recipe(p2.path(), |_| {});
    let mut later = opts(p2.path(), &r2, false);
    later.mtime = EPOCH + 86_400;
    let f = fixture();
    let c = build_image(
        &Paths::new(p2.path()),
        &r2,
        &f.deb,
        &f.deb_sha256,
        None,
        &later,
        &Reporter::quiet(),
    )
    .await
    .unwrap();
    assert_ne!(c.image_id, a.image_id);
    assert_eq!(c.app_layer_digest, a.app_layer_digest);
    assert_eq!(c.base_layer_digest, a.base_layer_digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
async fn rebase_keeps_the_app_layer_and_starts_no_container() {
    let proj = project();
    // An image name of its own: the tests run in parallel, and the one that loads the
    // image on `static` loads and removes `buildertest-hello:<version>`.
    let r = recipe(proj.path(), |i| i.name = "buildertest-hello-rebase".into());
    let on_static = build(proj.path(), &r, None, false).await.unwrap();
    let since = chrono_free_now();
    let rebased = build(proj.path(), &r, Some("slim"), true)
        .await
        .expect("rebase onto slim");
    let _cleanup = Cleanup {
        containers: vec![],
        images: vec![rebased.tag.clone()],
    };
    let until = chrono_free_now() + 1;
    assert_ne!(rebased.image_id, on_static.image_id);
    assert_ne!(rebased.base_layer_digest, on_static.base_layer_digest);
    assert_eq!(rebased.app_layer_digest, on_static.app_layer_digest);
    assert_eq!(rebased.base, "slim");
    let i = builder::oci::inspect(&rebased.path).unwrap();
    assert_eq!(i.config.labels["io.builder.base"], "slim");
    // The engine saw no container made from it.
    let (ok, events, err) = docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "type=container",
        "--filter",
        &format!("image={}", rebased.tag),
    ]);
    assert!(ok, "{err}");
    let made: Vec<&str> = events.lines().collect();
    assert!(made.is_empty(), "containers were made: {made:?}");
    let (ok, id, err) = docker(&["image", "inspect", "--format", "{{.Id}}", &rebased.tag]);
    assert!(ok, "{err}");
    assert_eq!(id, rebased.image_id.to_string());
}

fn chrono_free_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A change to a valid `[image]` table.
type Tweak = Box<dyn FnOnce(&mut ImageSpec)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
async fn bad_image_tables_fail_before_anything_is_written() {
    let proj = project();
    let cases: Vec<(Tweak, Option<&str>, &str)> = vec![
        (
            Box::new(|s: &mut ImageSpec| s.base = "nosuch".into()),
            None,
            "no base image `nosuch`",
        ),
        (
            Box::new(|_: &mut ImageSpec| {}),
            Some("statik"),
            "did you mean `static`",
        ),
        (
            Box::new(|s: &mut ImageSpec| s.entrypoint = vec!["/usr/bin/missing".into()]),
            None,
            "`/usr/bin/missing` is not in package",
        ),
        (
            Box::new(|s: &mut ImageSpec| s.entrypoint = vec!["/etc/hello/hello.conf".into()]),
            None,
            "is not executable",
        ),
        (
            Box::new(|s: &mut ImageSpec| s.ports = vec![8080, 0]),
            None,
            "port 0 is out of range",
        ),
        (
            Box::new(|s: &mut ImageSpec| s.user = "nobody-here".into()),
            None,
            "user `nobody-here` does not exist",
        ),
        (
            Box::new(|s: &mut ImageSpec| s.user = "65532:".into()),
            None,
            "is not a valid user",
        ),
        (
            Box::new(|s: &mut ImageSpec| s.name = "Hello+World".into()),
            None,
            "not a valid image name",
        ),
    ];
    let bases = builder::base::BaseImages::load(proj.path()).unwrap();
    let data = builder::deb::read_data_tree(&fixture().deb).unwrap();
    for (tweak, base, want) in cases {
        let r = recipe(proj.path(), tweak);
        let err = build(proj.path(), &r, base, true).await.expect_err(want);
        let text = format!("{err:#}");
        assert!(text.contains(want), "expected `{want}` in: {text}");
        assert_eq!(builder::error::exit_code(&err), 2, "{text}");
        assert!(
            !proj.path().join("dist").exists(),
            "{want}: something was written"
        );
        if base.is_none() {
            let err = check_image_spec(&r, &data, &bases).expect_err(want);
            assert!(format!("{err:#}").contains(want), "{err:#}");
        }
    }
    // The good recipe passes the same check.
    check_image_spec(&recipe(proj.path(), |_| {}), &data, &bases).unwrap();
}
