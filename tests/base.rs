//! Base images against the real engine: `bookworm` (debootstrap) and `static` (assembled from
//! it) are made once per machine in `target/builder-test-cache` (BUILDER_CACHE, shared with
//! the other integration tests) and reused by their content-hash tag. Also: definition
//! errors, unknown names, concurrent makers, `gc`, and an unreachable engine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

mod common;

fn cache_dir() -> PathBuf {
    common::test_cache()
}

/// The repository's bases and archive configuration in a project of their own, without its
/// builder.lock: the tests resolve package sets against today's archive, so they never
/// depend on files the archive has dropped since the lock was committed.
fn repo_project() -> &'static Path {
    static P: OnceLock<tempfile::TempDir> = OnceLock::new();
    P.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        common::copy_tree(
            &Path::new(REPO).join("base-images"),
            &dir.path().join("base-images"),
        );
        std::fs::copy(
            Path::new(REPO).join("archive.toml"),
            dir.path().join("archive.toml"),
        )
        .unwrap();
        dir
    })
    .path()
}

fn builder(project: &Path, cache: &Path, args: &[&str]) -> Output {
    common::builder()
        .arg("--project")
        .arg(project)
        .args(args)
        .env("BUILDER_CACHE", cache)
        .output()
        .expect("run builder")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

/// `docker run --rm --network none IMAGE CMD...`: a throwaway container that needs no network.
fn run_offline(image: &str, cmd: &[&str]) -> Output {
    let mut args = vec!["run", "--rm", "--network", "none", image];
    args.extend_from_slice(cmd);
    docker(&args)
}

fn list_json(project: &Path, cache: &Path) -> serde_json::Value {
    let o = builder(project, cache, &["--json", "base", "list"]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).expect("base list --json is JSON")
}

fn row<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

struct Made {
    bookworm: String,
    static_tag: String,
    static_tar: PathBuf,
    cold_seconds: f64,
}

/// Makes `bookworm` and `static` once for the whole test binary.
fn bases() -> &'static Made {
    static MADE: OnceLock<Made> = OnceLock::new();
    MADE.get_or_init(|| {
        let start = Instant::now();
        let o = builder(
            repo_project(),
            &cache_dir(),
            &["base", "build", "bookworm", "static"],
        );
        assert!(o.status.success(), "{}", text(&o));
        let cold_seconds = start.elapsed().as_secs_f64();
        let list = list_json(repo_project(), &cache_dir());
        let s = row(&list, "static");
        Made {
            bookworm: row(&list, "bookworm")["tag"].as_str().unwrap().to_string(),
            static_tag: s["tag"].as_str().unwrap().to_string(),
            static_tar: PathBuf::from(s["rootfs_tar"].as_str().expect("static tar cached")),
            cold_seconds,
        }
    })
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn bookworm_runs_and_rebuilding_is_a_no_op() {
    let made = bases();
    eprintln!(
        "first `base build bookworm static`: {:.1}s",
        made.cold_seconds
    );
    assert!(made.bookworm.starts_with("builder/bookworm:"));
    let hash = made.bookworm.split(':').nth(1).unwrap();
    assert!(
        hash.len() >= 12 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{hash}"
    );

    let o = run_offline(&made.bookworm, &["cat", "/etc/debian_version"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("12."),
        "{}",
        text(&o)
    );

    // cleaned rootfs: no apt lists, no machine id, PATH set
    let o = run_offline(
        &made.bookworm,
        &[
            "sh",
            "-c",
            "ls /var/lib/apt/lists | wc -l; test -e /etc/machine-id && echo machine-id; echo $PATH",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.starts_with("0\n"), "{out}");
    assert!(!out.contains("machine-id"), "{out}");
    assert!(out.contains("/usr/bin"), "{out}");

    let id_before = docker(&["image", "inspect", "-f", "{{.Id}}", &made.bookworm]);
    let tar_list = list_json(repo_project(), &cache_dir());
    let tar = PathBuf::from(row(&tar_list, "bookworm")["rootfs_tar"].as_str().unwrap());
    let mtime = std::fs::metadata(&tar).unwrap().modified().unwrap();

    let start = Instant::now();
    let o = builder(
        repo_project(),
        &cache_dir(),
        &["base", "build", "bookworm", "static"],
    );
    let warm = start.elapsed().as_secs_f64();
    eprintln!("warm `base build bookworm static`: {warm:.3}s");
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("Making"),
        "a warm build made something:\n{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&made.bookworm),
        "{}",
        text(&o)
    );
    assert!(warm < 5.0, "warm no-op took {warm:.1}s");
    let id_after = docker(&["image", "inspect", "-f", "{{.Id}}", &made.bookworm]);
    assert_eq!(id_before.stdout, id_after.stdout);
    assert_eq!(std::fs::metadata(&tar).unwrap().modified().unwrap(), mtime);

    let list = builder(repo_project(), &cache_dir(), &["base", "list"]);
    let out = String::from_utf8_lossy(&list.stdout);
    let line = out
        .lines()
        .find(|l| l.starts_with("bookworm"))
        .expect("bookworm row");
    assert!(line.contains("yes") && line.contains("cached"), "{out}");
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn static_rootfs_holds_the_runtime_files_and_no_program() {
    let made = bases();
    let file = std::fs::File::open(&made.static_tar).unwrap();
    let mut archive = tar::Archive::new(file);
    let mut paths = BTreeSet::new();
    let mut zoneinfo = 0;
    let mut passwd = String::new();
    let mut programs = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let h = e.header();
        if p == "tmp" {
            assert_eq!(h.mode().unwrap() & 0o7777, 0o1777);
        }
        if p == "home/nonroot" {
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (65532, 65532));
        }
        let mut head = Vec::new();
        if h.entry_type() == tar::EntryType::Regular {
            std::io::Read::read_to_end(&mut e, &mut head).unwrap();
        }
        if head.starts_with(b"\x7fELF") {
            programs.push(p.clone());
        }
        if p == "etc/passwd" {
            passwd = String::from_utf8_lossy(&head).into_owned();
        }
        if p.starts_with("usr/share/zoneinfo/") {
            zoneinfo += 1;
        } else {
            paths.insert(p);
        }
    }
    for want in [
        "etc/group",
        "etc/nsswitch.conf",
        "etc/passwd",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/os-release",
        "etc/services",
        "home/nonroot",
        "tmp",
        // the package database, as distroless writes it
        "var/lib/dpkg/status.d/base-files",
        "var/lib/dpkg/status.d/ca-certificates",
        "var/lib/dpkg/status.d/media-types",
        "var/lib/dpkg/status.d/netbase",
        "var/lib/dpkg/status.d/tzdata",
        "var/lib/dpkg/status.d/tzdata.md5sums",
        // merged /usr, as Debian 12 lays it out
        "bin",
        "lib",
    ] {
        assert!(paths.contains(want), "{want} missing from {paths:?}");
    }
    // no libc, no shell, no program at all; no documentation but the copyright files
    assert_eq!(programs, Vec::<String>::new());
    assert!(!paths.iter().any(|p| p.starts_with("usr/share/man/")));
    assert!(paths
        .iter()
        .filter(|p| p.starts_with("usr/share/doc/"))
        .all(|p| { p.matches('/').count() == 3 || p.ends_with("/copyright") }));
    // only the bundle of the CA certificates (path-exclude), and no link left dangling
    assert!(!paths
        .iter()
        .any(|p| p.starts_with("usr/share/ca-certificates/mozilla/")));
    assert!(!paths
        .iter()
        .any(|p| p.starts_with("etc/ssl/certs/") && p.ends_with(".pem")));
    assert!(zoneinfo > 300, "only {zoneinfo} zoneinfo entries");
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");

    // no shell: the image cannot run /bin/sh
    let o = run_offline(&made.static_tag, &["/bin/sh", "-c", "true"]);
    assert!(!o.status.success(), "{}", text(&o));
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn static_image_runs_a_static_go_binary_as_nonroot_with_certs_and_zones() {
    let made = bases();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.go"),
        r#"package main

import (
	"crypto/x509"
	"fmt"
	"os"
	"os/user"
	"time"
)

func main() {
	u, err := user.Current()
	if err != nil { fmt.Println("user:", err); os.Exit(1) }
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil { fmt.Println("tz:", err); os.Exit(1) }
	pool, err := x509.SystemCertPool()
	if err != nil { fmt.Println("certs:", err); os.Exit(1) }
	f, err := os.CreateTemp("/tmp", "x")
	if err != nil { fmt.Println("tmp:", err); os.Exit(1) }
	f.Close()
	fmt.Printf("user=%s uid=%s home=%s tz=%s roots=%d\n", u.Username, u.Uid, u.HomeDir, loc, len(pool.Subjects()))
}
"#,
    )
    .unwrap();
    let o = Command::new("go")
        .args(["build", "-o", "probe", "main.go"])
        .current_dir(dir.path())
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", dir.path().join("gocache"))
        .env("GO111MODULE", "off")
        .env("HOME", dir.path())
        .output()
        .expect("go is installed on the host");
    assert!(o.status.success(), "{}", text(&o));
    let mount = format!("{}:/probe:ro", dir.path().join("probe").display());
    let o = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "65532:65532",
        "-v",
        &mount,
        &made.static_tag,
        "/probe",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("user=nonroot uid=65532 home=/home/nonroot tz=Europe/Paris"),
        "{out}"
    );
    let roots: usize = out.trim().rsplit('=').next().unwrap().parse().unwrap();
    assert!(roots > 50, "{out}");
}

fn project_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    dir
}

#[test]
fn a_bad_definition_is_reported_with_file_line_and_column() {
    let p = project_with(&[(
        "base-images/bad.toml",
        "kind = \"debootstrap\"\nsuite = \"bookworm\"\npakages = [\"curl\"]\n",
    )]);
    let o = builder(p.path(), &cache_dir(), &["base", "list"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("base-images/bad.toml:3:1"), "{err}");
    assert!(err.contains("unknown key `pakages`"), "{err}");
    assert!(err.contains("did you mean `packages`?"), "{err}");

    let p = project_with(&[(
        "base-images/rt.toml",
        "kind = \"static\"\nfrom = \"bookworm\"\n",
    )]);
    let o = builder(p.path(), &cache_dir(), &["base", "build", "rt"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("made from `bookworm`, which does not exist"),
        "{}",
        text(&o)
    );
}

#[test]
fn an_unknown_base_lists_the_known_ones() {
    let o = builder(repo_project(), &cache_dir(), &["base", "build", "statik"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no base image `statik`"), "{err}");
    assert!(err.contains("did you mean `static`?"), "{err}");
    assert!(
        err.contains("known: bookworm, cc, go, haproxy, slim, static"),
        "{err}"
    );
    assert!(err.contains("statik.toml"), "{err}");
}

/// Removes every image and cached rootfs of base `name` when dropped, however the test ends.
struct RemoveBase<'a> {
    project: &'a Path,
    name: String,
}

impl RemoveBase<'_> {
    /// `<id> <repository>:<tag>` of each image carrying this base's label, sorted.
    fn images(&self) -> Vec<String> {
        let o = docker(&[
            "images",
            "--filter",
            &format!("label=io.builder.base={}", self.name),
            "--format",
            "{{.ID}} {{.Repository}}:{{.Tag}}",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }
}

impl Drop for RemoveBase<'_> {
    fn drop(&mut self) {
        let _ = builder(
            self.project,
            &cache_dir(),
            &["base", "rm", &self.name, "--all-versions"],
        );
        // An orphan under a tag `base rm` no longer derives goes by its label.
        for line in self.images() {
            let id = line.split(' ').next().unwrap_or_default().to_string();
            let _ = docker(&["rmi", "-f", &id]);
        }
    }
}

/// A fresh project (no builder.lock) whose builder image is a `packages` base: the first
/// `builder build` locks the base before it computes the image's tag, so the image it
/// imports is the one the second run looks for. It used to tag the image with the hash of the
/// unlocked base, and the second run imported it again under the locked hash, leaving the
/// first image behind.
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn a_fresh_project_locks_its_builder_base_before_tagging_and_imports_it_once() {
    // A base of this test's own, so the images counted are this test's only.
    let name = format!("lockprobe{}", std::process::id());
    let base = "kind = \"packages\"\ndescription = \"coreutils only: one test's builder\"\n\
                packages = [\"coreutils\"]\nuser = { name = \"builder\", uid = 1000 }\n";
    let recipe = format!(
        "[package]\nname = \"probe\"\nversion = \"1.0\"\nmaintainer = \"Ops <ops@example.com>\"\n\
         description = \"lock probe\"\n\n[build]\nbuilder = \"{name}\"\nsource = \"src\"\n\
         command = [\"true\"]\n"
    );
    let p = project_with(&[
        (&format!("base-images/{name}.toml"), base),
        ("recipes/probe.toml", &recipe),
        ("src/a.txt", "a"),
    ]);
    std::fs::copy(
        Path::new(REPO).join("archive.toml"),
        p.path().join("archive.toml"),
    )
    .unwrap();
    let made = RemoveBase {
        project: p.path(),
        name: name.clone(),
    };
    assert_eq!(made.images(), Vec::<String>::new());

    let o = builder(p.path(), &cache_dir(), &["build"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        p.path().join("builder.lock").is_file(),
        "the first run locks the base: {}",
        text(&o)
    );
    let first = made.images();
    let list = list_json(p.path(), &cache_dir());
    let tag = row(&list, &name)["tag"].as_str().unwrap().to_string();
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0].ends_with(&format!(" {tag}")),
        "the image carries the locked tag {tag}: {first:?}"
    );

    let o = builder(p.path(), &cache_dir(), &["build"]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("Making") && !err.contains("Locked"),
        "the second run made or locked something:\n{}",
        text(&o)
    );
    assert_eq!(made.images(), first, "the second run imported again");
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn concurrent_makers_share_one_deterministic_tarball_base() {
    let made = bases();
    // A tarball base that re-packs the static rootfs: deterministic packing gives back the
    // very same bytes (same diff_id).
    let p = project_with(&[(
        "base-images/mini.toml",
        "kind = \"tarball\"\npath = \"rootfs.tar\"\n",
    )]);
    std::fs::copy(&made.static_tar, p.path().join("rootfs.tar")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_builder"))
            .arg("--project")
            .arg(p.path())
            .args(["base", "build", "mini"])
            .env("BUILDER_CACHE", cache.path())
            .env("CI", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    let made_count = [&a, &b]
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stderr).contains("Making base `mini`"))
        .count();
    assert_eq!(made_count, 1, "{}\n{}", text(&a), text(&b));

    let list = list_json(p.path(), cache.path());
    let mini = row(&list, "mini");
    assert_eq!(mini["image"], true);
    let static_list = list_json(repo_project(), &cache_dir());
    assert_eq!(
        mini["rootfs_diff_id"],
        row(&static_list, "static")["rootfs_diff_id"]
    );
    let files: Vec<_> = std::fs::read_dir(cache.path().join("bases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tar") || n.contains("tmp"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");

    // `base rm` removes the tag, the cached tar, its record and lock files, and the gzip
    // layer `package` made from it.
    let hex = mini["rootfs_diff_id"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let layers = cache.path().join("oci-layers");
    std::fs::create_dir_all(&layers).unwrap();
    std::fs::write(layers.join(format!("{hex}.tar.gz")), b"layer").unwrap();
    std::fs::write(layers.join(format!("{hex}.json")), b"{}").unwrap();
    let o = builder(p.path(), cache.path(), &["base", "rm", "mini"]);
    assert!(o.status.success(), "{}", text(&o));
    let left: Vec<_> = std::fs::read_dir(cache.path().join("bases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mini-"))
        .collect();
    assert!(left.is_empty(), "base rm left {left:?}");
    assert!(!layers.join(format!("{hex}.tar.gz")).exists());
    assert!(!layers.join(format!("{hex}.json")).exists());
    let tag = mini["tag"].as_str().unwrap();
    assert!(!docker(&["image", "inspect", tag]).status.success());
    let list = list_json(p.path(), cache.path());
    assert_eq!(row(&list, "mini")["rootfs_cached"], false);
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn gc_removes_what_a_crashed_run_left_and_spares_live_runs() {
    let made = bases();
    let run = format!("test-gc-{}", std::process::id());
    // a pid that surely belongs to no live process: a child that has exited
    let mut child = Command::new("true").spawn().unwrap();
    let dead_pid = child.id().to_string();
    child.wait().unwrap();
    let create = |name: &str, pid: &str| {
        let o = docker(&[
            "create",
            "--name",
            name,
            "--label",
            "io.builder=1",
            "--label",
            &format!("io.builder.run={run}"),
            "--label",
            "io.builder.stage=build",
            "--label",
            &format!("io.builder.pid={pid}"),
            &made.static_tag,
            "/nothing",
        ]);
        assert!(o.status.success(), "{}", text(&o));
    };
    let crashed = format!("{run}-crashed");
    let live = format!("{run}-live");
    create(&crashed, &dead_pid);
    create(&live, &std::process::id().to_string());
    // A user's own containers are never builder's garbage: one of a base image, which must
    // not hand builder's ownership labels down to it, and one that carries the labels an
    // image of an older builder handed down (`io.builder=1`, a dead pid, but no run).
    let user = format!("{run}-user");
    let inherited = format!("{run}-inherited");
    // And a run of a builder in another pid scope (a CI job in another container sharing
    // this engine): its pid means nothing here, so plain gc leaves it.
    let foreign = format!("{run}-foreign");
    for (name, labels) in [
        (&user, vec![]),
        (
            &foreign,
            [
                "io.builder=1".to_string(),
                format!("io.builder.run={run}-other"),
                format!("io.builder.pid={dead_pid}"),
                "io.builder.pid-scope=ci-runner-7/pid:[1]".to_string(),
            ]
            .into_iter()
            .flat_map(|l| ["--label".to_string(), l])
            .collect(),
        ),
        (
            &inherited,
            vec![
                "--label".to_string(),
                "io.builder=1".to_string(),
                "--label".to_string(),
                format!("io.builder.pid={dead_pid}"),
            ],
        ),
    ] {
        let mut args: Vec<&str> = vec!["create", "--name", name];
        args.extend(labels.iter().map(String::as_str));
        args.extend([made.bookworm.as_str(), "true"]);
        let o = docker(&args);
        assert!(o.status.success(), "{}", text(&o));
    }
    let image_labels = docker(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Labels}}",
        &made.bookworm,
    ]);
    let image_labels = String::from_utf8_lossy(&image_labels.stdout).to_string();
    assert!(
        image_labels.contains("\"io.builder.base\":\"bookworm\""),
        "{image_labels}"
    );
    assert!(!image_labels.contains("\"io.builder\":"), "{image_labels}");
    assert!(
        !image_labels.contains("\"io.builder.pid\":"),
        "{image_labels}"
    );
    let mut args = vec!["network".to_string(), "create".to_string()];
    args.extend(common::run_label_args(&run, &dead_pid));
    args.push(format!("{run}-net"));
    let net = docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(net.status.success(), "{}", text(&net));

    let o = builder(repo_project(), &cache_dir(), &["--json", "gc"]);
    let _ = docker(&["rm", "-f", &live]);
    let user_kept = docker(&["container", "inspect", &user]).status.success();
    let inherited_kept = docker(&["container", "inspect", &inherited])
        .status
        .success();
    let foreign_kept = docker(&["container", "inspect", &foreign]).status.success();
    let _ = docker(&["rm", "-f", &user, &inherited, &foreign]);
    assert!(user_kept, "gc removed a user's container of a base image");
    assert!(foreign_kept, "gc removed a run of another pid scope");
    assert!(
        inherited_kept,
        "gc removed a container with inherited labels"
    );
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let containers: Vec<&str> = report["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(containers.contains(&crashed.as_str()), "{report}");
    assert!(!containers.contains(&live.as_str()), "{report}");
    assert!(
        report["networks"]
            .to_string()
            .contains(&format!("{run}-net")),
        "{report}"
    );
    assert!(!docker(&["container", "inspect", &crashed]).status.success());
    assert!(!docker(&["network", "inspect", &format!("{run}-net")])
        .status
        .success());
    // tagged base images are not garbage
    assert!(docker(&["image", "inspect", &made.static_tag])
        .status
        .success());
}

#[test]
fn an_unreachable_engine_is_an_environment_error() {
    for args in [&["base", "build", "bookworm"][..], &["gc"][..]] {
        let o = Command::new(env!("CARGO_BIN_EXE_builder"))
            .arg("--project")
            .arg(REPO)
            .args(args)
            .env("DOCKER_HOST", "unix:///nonexistent")
            .env("BUILDER_CACHE", cache_dir())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("could not reach the Docker engine at `unix:///nonexistent`"),
            "{err}"
        );
        assert!(err.contains("DOCKER_HOST"), "{err}");
        assert!(err.contains("systemctl start docker"), "{err}");
    }
}

// ---- the shared Docker helpers, through the library API ----

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn new_container(engine: &builder::docker::Engine, image: &str, run: &str) -> String {
    let spec = builder::docker::ContainerSpec {
        what: "a test container".into(),
        image: image.to_string(),
        cmd: Some(vec!["/nothing".to_string()]),
        labels: builder::docker::labels(run, "test"),
        ..Default::default()
    };
    engine
        .create_container(&spec)
        .await
        .expect("create container")
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn guard_removes_tracked_containers_on_cleanup_and_on_drop() {
    let made = bases();
    runtime().block_on(async {
        let engine = builder::docker::connect().await.unwrap();
        let run = builder::docker::new_run_id();
        let a = new_container(&engine, &made.static_tag, &run).await;
        let b = new_container(&engine, &made.static_tag, &run).await;
        {
            let guard = builder::docker::Guard::new(engine.clone());
            guard.track_container(&a);
            guard.cleanup().await.unwrap();
        }
        assert!(!docker(&["container", "inspect", &a]).status.success());
        {
            let guard = builder::docker::Guard::new(engine.clone());
            guard.track_container(&b);
            // dropped without cleanup(): an early return or a panic
        }
        assert!(!docker(&["container", "inspect", &b]).status.success());
    });
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn upload_and_download_round_trip_through_a_container() {
    let made = bases();
    runtime().block_on(async {
        let engine = builder::docker::connect().await.unwrap();
        let run = builder::docker::new_run_id();
        let id = new_container(&engine, &made.bookworm, &run).await;
        let guard = builder::docker::Guard::new(engine.clone());
        guard.track_container(&id);

        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("pkg/sub")).unwrap();
        std::fs::create_dir_all(src.path().join(".git")).unwrap();
        std::fs::write(src.path().join("pkg/sub/a.txt"), "hello").unwrap();
        std::fs::write(src.path().join(".git/HEAD"), "ref").unwrap();
        std::fs::write(src.path().join("big.bin"), vec![7u8; 3 << 20]).unwrap();
        std::os::unix::fs::symlink("pkg/sub/a.txt", src.path().join("link")).unwrap();
        let n = builder::docker::upload_dir_as_tar(
            &engine,
            &id,
            src.path(),
            "/tmp",
            Some((1000, 1000)),
            |rel| rel == Path::new(".git"),
        )
        .await
        .unwrap();
        assert_eq!(n, 5); // pkg, pkg/sub, pkg/sub/a.txt, big.bin, link

        let dest = tempfile::tempdir().unwrap();
        let files = builder::docker::download_to_dir(&engine, &id, "/tmp", dest.path())
            .await
            .unwrap();
        assert_eq!(
            files,
            vec![PathBuf::from("big.bin"), PathBuf::from("pkg/sub/a.txt")]
        );
        assert_eq!(
            std::fs::read(dest.path().join("big.bin")).unwrap(),
            vec![7u8; 3 << 20]
        );
        assert_eq!(
            std::fs::read_to_string(dest.path().join("link")).unwrap(),
            "hello"
        );
        assert!(!dest.path().join(".git").exists());
        guard.cleanup().await.unwrap();
    });
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn loading_a_broken_image_archive_reports_the_engine_error() {
    runtime().block_on(async {
        let engine = builder::docker::connect().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let manifest =
            br#"[{"Config":"missing.json","RepoTags":["builder-test/broken:1"],"Layers":[]}]"#;
        let mut h = tar::Header::new_gnu();
        h.set_size(manifest.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "manifest.json", &manifest[..])
            .unwrap();
        b.finish().unwrap();
        drop(b);
        let err =
            builder::docker::load_image_tar(&engine, &path, &builder::report::Reporter::quiet())
                .await
                .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("broken.tar"), "{msg}");
        assert!(msg.contains("missing.json"), "{msg}");
    });
}
