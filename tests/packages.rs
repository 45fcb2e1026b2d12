//! Package sets against the real archive and the real engine: `builder lock`, bases made
//! from locked Debian packages (no debootstrap), images with a dependency layer that start
//! under Docker as a non-root user, the start check refusing what cannot start, the same
//! image from two empty caches, the image's package database read by `dpkg-query`, and a
//! local signed repository whose index and .deb files are tampered with.
//!
//! The program under test is a real dynamically linked C program (libssl, libcrypto, zlib,
//! glibc) compiled on the host with gcc, packaged by a recipe that names its Depends.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{sh, show, text, write_files};

fn run(project: &Path, cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_builder"))
        .arg("--project")
        .arg(project)
        .args(args)
        .env("CI", "true")
        .env("BUILDER_CACHE", cache)
        .env_remove("SOURCE_DATE_EPOCH")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("run builder")
}

/// A C program that links libssl/libcrypto and zlib: prints the OpenSSL and zlib versions
/// and a sha256, so a run proves every library loaded and works.
const PROGRAM: &str = r#"
#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <zlib.h>
int main(void) {
    unsigned char md[32]; unsigned int n = 0;
    EVP_Digest("abc", 3, md, &n, EVP_sha256(), NULL);
    printf("openssl=%s zlib=%s sha256(abc)=", OpenSSL_version(OPENSSL_VERSION), zlibVersion());
    for (unsigned i = 0; i < n; i++) printf("%02x", md[i]);
    printf("\n");
    return 0;
}
"#;

/// The compiled program, once per test binary.
fn program() -> &'static PathBuf {
    static P: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &P.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("probe.c"), PROGRAM).unwrap();
        let out = dir.path().join("probe");
        sh(Command::new("gcc")
            .arg("-O2")
            .arg("-o")
            .arg(&out)
            .arg(dir.path().join("probe.c"))
            .args(["-lssl", "-lcrypto", "-lz"]));
        (dir, out)
    })
    .1
}

/// A project with the repository's base definitions and archive.toml, and a recipe for the
/// probe on `base` with `depends`.
fn project(base: &str, depends: &[&str]) -> tempfile::TempDir {
    let dir = common::bases_only();
    std::fs::copy(program(), dir.path().join("probe")).unwrap();
    let depends: Vec<String> = depends.iter().map(|d| format!("\"{d}\"")).collect();
    write_files(
        dir.path(),
        &[(
            "recipes/probe.toml",
            &format!(
                r#"[package]
name = "buildertest-probe"
version = "1.0"
maintainer = "Tests <tests@example.com>"
description = "probe linking libssl and zlib"
architecture = "amd64"
depends = [{}]

[[files]]
from = "probe"
to = "/usr/bin/probe"
mode = "0755"

[image]
base = "{base}"
entrypoint = ["/usr/bin/probe"]
"#,
                depends.join(", ")
            ),
        )],
    );
    dir
}

const DEPENDS: &[&str] = &[
    "libc6 (>= 2.34)",
    "libssl3 (>= 3.0.0)",
    "zlib1g (>= 1:1.1.4)",
];

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("docker")
}

fn image_json(o: &Output) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(o)));
    v.as_array()
        .and_then(|a| a.iter().find_map(|r| r.get("image").cloned()))
        .unwrap_or_else(|| panic!("no image in {v}"))
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn a_dynamic_program_starts_on_static_cc_and_slim_as_nonroot() {
    let cache = common::test_cache();
    for (base, want_deps) in [
        ("static", &["libc6", "libssl3", "zlib1g", "libbz2-1.0"][..]),
        ("cc", &["zlib1g", "libbz2-1.0"][..]),
        ("slim", &[][..]),
    ] {
        // slim holds libbz2-1.0 (a name with a dot): the base's database must say so, or
        // the dependency layer would ship it a second time.
        let mut depends = DEPENDS.to_vec();
        depends.push("libbz2-1.0");
        let p = project(base, &depends);
        let o = run(p.path(), &cache, &["--json", "package"]);
        assert!(o.status.success(), "{base}: {}", show(&o));
        let img = image_json(&o);
        let deps: Vec<String> = img["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().split(' ').next().unwrap().to_string())
            .collect();
        if want_deps.is_empty() {
            assert_eq!(deps, Vec::<String>::new(), "{base} holds everything");
        }
        for d in want_deps {
            assert!(deps.contains(&d.to_string()), "{base}: {d} not in {deps:?}");
        }
        assert_eq!(img["deps_layer_digest"].is_null(), deps.is_empty(), "{img}");
        let tag = img["tag"].as_str().unwrap();
        let out = docker(&["run", "--rm", "--network", "none", tag]);
        assert!(out.status.success(), "{base}: {}", show(&out));
        let line = text(&out.stdout);
        assert!(
            line.contains("openssl=OpenSSL 3.0")
                && line.contains(
                    "sha256(abc)=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                ),
            "{base}: {line}"
        );
        // The default user is the non-root 65532.
        let user = docker(&["image", "inspect", "-f", "{{.Config.User}}", tag]);
        assert_eq!(text(&user.stdout).trim(), "65532:65532");
        // Nothing but what the closure brings: no shell on static and cc.
        if base != "slim" {
            let sh = docker(&[
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                "/bin/sh",
                tag,
                "-c",
                "true",
            ]);
            assert!(!sh.status.success(), "{base} has a shell");
        }
        let _ = docker(&["rmi", "-f", tag]);
    }
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn a_missing_dependency_is_refused_before_anything_is_written() {
    let cache = common::test_cache();
    // zlib1g forgotten: on `cc` (which has libssl3 but no zlib) libz.so.1 cannot load.
    let p = project("cc", &["libc6 (>= 2.34)", "libssl3 (>= 3.0.0)"]);
    let o = run(p.path(), &cache, &["package", "--no-load"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = text(&o.stderr);
    assert!(
        err.contains("recipes/probe.toml:16`: [image] entrypoint"),
        "{err}"
    );
    assert!(err.contains("libz.so.1"), "{err}");
    assert!(
        err.contains("zlib1g"),
        "the package that provides it: {err}"
    );
    assert!(
        !p.path()
            .join("dist/images/buildertest-probe_1.0.tar")
            .exists(),
        "an image was written"
    );
    // On `static` with no depends at all: no loader, no library.
    let p = project("static", &[]);
    let o = run(p.path(), &cache, &["package", "--no-load"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = text(&o.stderr);
    assert!(err.contains("ld-linux-x86-64.so.2"), "{err}");
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn two_machines_with_one_lock_make_the_same_image() {
    let a = project("cc", DEPENDS);
    let o = run(a.path(), &common::test_cache(), &["lock"]);
    assert!(o.status.success(), "{}", show(&o));
    let lock_text = std::fs::read_to_string(a.path().join("builder.lock")).unwrap();
    let b = project("cc", DEPENDS);
    std::fs::write(b.path().join("builder.lock"), &lock_text).unwrap();
    let mut made = Vec::new();
    for p in [&a, &b] {
        let cache = tempfile::tempdir().unwrap();
        let o = run(
            p.path(),
            cache.path(),
            &["--locked", "--json", "package", "--no-load"],
        );
        assert!(o.status.success(), "{}", show(&o));
        let img = image_json(&o);
        // Every cached .deb is the file the lock names, byte for byte.
        let lock: toml::Value = toml::from_str(&lock_text).unwrap();
        for pkg in lock["package"].as_array().unwrap() {
            let sha = pkg["sha256"].as_str().unwrap();
            let deb = cache.path().join("debian/debs").join(format!("{sha}.deb"));
            if deb.exists() {
                let got = sh(Command::new("sha256sum").arg(&deb));
                assert!(got.starts_with(sha), "{}: {got}", deb.display());
            }
        }
        made.push((
            img["image_id"].as_str().unwrap().to_string(),
            img["manifest_digest"].as_str().unwrap().to_string(),
            img["tar_sha256"].as_str().unwrap().to_string(),
        ));
        // The lock is used as it is: --locked never rewrites it.
        assert_eq!(
            std::fs::read_to_string(p.path().join("builder.lock")).unwrap(),
            lock_text
        );
    }
    assert_eq!(made[0], made[1]);
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn lock_check_and_locked_refuse_drift() {
    let cache = common::test_cache();
    let p = project("cc", DEPENDS);
    let o = run(p.path(), &cache, &["lock", "--check"]);
    assert_eq!(o.status.code(), Some(1), "no lock yet: {}", show(&o));
    assert!(text(&o.stderr).contains("not locked"), "{}", show(&o));
    let o = run(p.path(), &cache, &["lock"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = run(p.path(), &cache, &["lock", "--check"]);
    assert!(o.status.success(), "{}", show(&o));
    // A new dependency: the image's set is stale; --locked refuses to package.
    let recipe = p.path().join("recipes/probe.toml");
    let t = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(
        &recipe,
        t.replace(
            "\"zlib1g (>= 1:1.1.4)\"",
            "\"zlib1g (>= 1:1.1.4)\", \"libzstd1\"",
        ),
    )
    .unwrap();
    let o = run(p.path(), &cache, &["lock", "--check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("image `buildertest-probe`: changed since it was locked"),
        "{}",
        show(&o)
    );
    let o = run(p.path(), &cache, &["plan"]);
    assert!(
        text(&o.stdout).contains("drift: image `buildertest-probe` changed"),
        "{}",
        show(&o)
    );
    let o = run(p.path(), &cache, &["--locked", "package", "--no-load"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(text(&o.stderr).contains("--locked"), "{}", show(&o));
    // Without --locked, package resolves the new set and records it.
    let o = run(p.path(), &cache, &["package", "--no-load"]);
    assert!(o.status.success(), "{}", show(&o));
    let lock = std::fs::read_to_string(p.path().join("builder.lock")).unwrap();
    // (in the image's own set: cc does not hold libzstd1)
    let parsed: toml::Value = toml::from_str(&lock).unwrap();
    let image_set = parsed["set"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"].as_str() == Some("image"))
        .unwrap();
    assert!(
        image_set["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().starts_with("libzstd1 ")),
        "{lock}"
    );
    let o = run(p.path(), &cache, &["lock", "--check"]);
    assert!(o.status.success(), "{}", show(&o));
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn dpkg_query_lists_exactly_the_locked_packages_of_the_image() {
    let cache = common::test_cache();
    let p = project("cc", DEPENDS);
    // A name of its own: the tests run in parallel, and the one over every base loads and
    // removes `buildertest-probe:1.0` too.
    let recipe = p.path().join("recipes/probe.toml");
    let t = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(
        &recipe,
        t.replace("\"buildertest-probe\"", "\"buildertest-probe-dpkgq\""),
    )
    .unwrap();
    let o = run(p.path(), &cache, &["--json", "package"]);
    assert!(o.status.success(), "{}", show(&o));
    let tag = image_json(&o)["tag"].as_str().unwrap().to_string();
    let root = tempfile::tempdir().unwrap();
    let id = text(&docker(&["create", &tag]).stdout).trim().to_string();
    let export = docker(&["export", &id]);
    let _ = docker(&["rm", &id]);
    let _ = docker(&["rmi", "-f", &tag]);
    let mut tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(root.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    tar.stdin.take().unwrap().write_all(&export.stdout).unwrap();
    assert!(tar.wait().unwrap().success());
    // An admin dir for dpkg-query: status.d's paragraphs, as scanners read them.
    let admin = tempfile::tempdir().unwrap();
    let mut status = String::new();
    let mut names: Vec<_> = std::fs::read_dir(root.path().join("var/lib/dpkg/status.d"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".md5sums"))
        .collect();
    names.sort();
    for f in names {
        status.push_str(std::fs::read_to_string(f).unwrap().trim_end());
        status.push_str("\n\n");
    }
    std::fs::write(admin.path().join("status"), status).unwrap();
    std::fs::create_dir_all(admin.path().join("info")).unwrap();
    std::fs::create_dir_all(admin.path().join("updates")).unwrap();
    let listed = sh(Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.path().display()))
        .args(["-W", "-f", "${Package} ${Version} ${db:Status-Status}\n"]));
    let mut got: Vec<String> = listed.lines().map(str::to_string).collect();
    got.sort();
    let lock: toml::Value =
        toml::from_str(&std::fs::read_to_string(p.path().join("builder.lock")).unwrap()).unwrap();
    let mut want: Vec<String> = lock["set"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            (s["kind"].as_str() == Some("base") && s["name"].as_str() == Some("cc"))
                || (s["kind"].as_str() == Some("image"))
        })
        .flat_map(|s| s["packages"].as_array().unwrap().clone())
        .map(|p| format!("{} installed", p.as_str().unwrap()))
        .collect();
    want.sort();
    assert_eq!(got, want);
    // md5sums beside each paragraph, as distroless writes them
    assert!(root
        .path()
        .join("var/lib/dpkg/status.d/libc6.md5sums")
        .exists());
}

/// A signed repository on disk, made with dpkg-deb, dpkg-scanpackages and gpg.
struct LocalRepo {
    dir: tempfile::TempDir,
    gnupg: PathBuf,
}

impl LocalRepo {
    fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn new() -> LocalRepo {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let pool = root.join("pool/main");
        std::fs::create_dir_all(&pool).unwrap();
        for (name, depends, file) in [
            ("tinylib", "", "usr/share/tinylib/data.txt"),
            (
                "tinytool",
                "tinylib (>= 1.0)",
                "usr/share/tinytool/readme.txt",
            ),
        ] {
            let pkg = dir.path().join(name);
            write_files(&pkg, &[(file, &format!("{name} data\n"))]);
            let mut control = format!(
                "Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: T <t@example.com>\n\
                 Priority: optional\nDescription: {name}\n"
            );
            if !depends.is_empty() {
                control.push_str(&format!("Depends: {depends}\n"));
            }
            write_files(&pkg, &[("DEBIAN/control", &control)]);
            sh(Command::new("dpkg-deb")
                .args(["--root-owner-group", "--build"])
                .arg(&pkg)
                .arg(pool.join(format!("{name}_1.0_all.deb"))));
        }
        let gnupg = dir.path().join("gnupg");
        std::fs::create_dir_all(&gnupg).unwrap();
        common::set_mode(&gnupg, 0o700);
        sh(Command::new("gpg").env("GNUPGHOME", &gnupg).args([
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "repo@example.com",
            "ed25519",
            "sign",
            "never",
        ]));
        let key = sh(Command::new("gpg")
            .env("GNUPGHOME", &gnupg)
            .args(["--export"]));
        let _ = key;
        let out = Command::new("gpg")
            .env("GNUPGHOME", &gnupg)
            .args(["--export"])
            .output()
            .unwrap();
        std::fs::write(dir.path().join("key.gpg"), out.stdout).unwrap();
        let repo = LocalRepo { dir, gnupg };
        repo.index(None);
        repo
    }

    /// Adds a package of `files` (path, content) and `links` (path, target), then indexes
    /// and signs again.
    fn add(&self, name: &str, files: &[(&str, &str)], links: &[(&str, &str)]) {
        let pkg = self.dir.path().join(format!("src-{name}"));
        write_files(&pkg, files);
        for (path, target) in links {
            let at = pkg.join(path);
            std::fs::create_dir_all(at.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, at).unwrap();
        }
        write_files(
            &pkg,
            &[(
                "DEBIAN/control",
                &format!(
                    "Package: {name}\nVersion: 1.0\nArchitecture: all\n\
                     Maintainer: T <t@example.com>\nDescription: {name}\n"
                ),
            )],
        );
        sh(Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&pkg)
            .arg(self.root().join(format!("pool/main/{name}_1.0_all.deb"))));
        self.index(None);
    }

    /// Writes Packages and a signed InRelease (with `valid_until` if given).
    fn index(&self, valid_until: Option<&str>) {
        let root = self.root();
        let bin = root.join("dists/test/main/binary-amd64");
        std::fs::create_dir_all(&bin).unwrap();
        let packages = sh(Command::new("dpkg-scanpackages").current_dir(&root).args([
            "-m",
            "pool",
            "/dev/null",
        ]));
        std::fs::write(bin.join("Packages"), &packages).unwrap();
        self.sign_release(valid_until);
    }

    fn sign_release(&self, valid_until: Option<&str>) {
        let root = self.root();
        let packages = std::fs::read(root.join("dists/test/main/binary-amd64/Packages")).unwrap();
        let sha =
            sh(Command::new("sha256sum").arg(root.join("dists/test/main/binary-amd64/Packages")));
        let mut release = "Origin: test\nSuite: test\nCodename: test\n\
                           Date: Sat, 11 Jul 2026 10:16:37 UTC\nArchitectures: amd64\n\
                           Components: main\n"
            .to_string();
        if let Some(v) = valid_until {
            release.push_str(&format!("Valid-Until: {v}\n"));
        }
        release.push_str(&format!(
            "SHA256:\n {} {} main/binary-amd64/Packages\n",
            sha.split_whitespace().next().unwrap(),
            packages.len()
        ));
        let dists = root.join("dists/test");
        std::fs::write(dists.join("Release"), release).unwrap();
        let _ = std::fs::remove_file(dists.join("InRelease"));
        sh(Command::new("gpg")
            .env("GNUPGHOME", &self.gnupg)
            .args(["--batch", "--yes", "--clearsign", "-o"])
            .arg(dists.join("InRelease"))
            .arg(dists.join("Release")));
    }

    /// A project using only this repository, with a `packages` base of `tinytool`.
    fn project(&self) -> tempfile::TempDir {
        let p = tempfile::tempdir().unwrap();
        std::fs::copy(self.dir.path().join("key.gpg"), p.path().join("key.gpg")).unwrap();
        write_files(
            p.path(),
            &[
                (
                    "archive.toml",
                    &format!(
                        "[[source]]\nuri = \"file:{}\"\nsuites = [\"test\"]\nkeyring = \"key.gpg\"\n",
                        self.root().display()
                    ),
                ),
                ("base-images/tiny.toml", "kind = \"packages\"\npackages = [\"tinytool\"]\n"),
            ],
        );
        p
    }
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn a_local_signed_repository_is_verified_and_tampering_is_refused() {
    let repo = LocalRepo::new();
    let cache = tempfile::tempdir().unwrap();
    let p = repo.project();
    let o = run(p.path(), cache.path(), &["lock"]);
    assert!(o.status.success(), "{}", show(&o));
    let lock = std::fs::read_to_string(p.path().join("builder.lock")).unwrap();
    assert!(
        lock.contains("\"tinylib 1.0\"") && lock.contains("\"tinytool 1.0\""),
        "{lock}"
    );
    assert!(
        lock.contains("filename = \"pool/main/tinytool_1.0_all.deb\""),
        "{lock}"
    );

    // The index changed after it was signed: refused, naming the file.
    let packages = repo.root().join("dists/test/main/binary-amd64/Packages");
    let good = std::fs::read_to_string(&packages).unwrap();
    std::fs::write(
        &packages,
        good.replace("Priority: optional", "Priority: required"),
    )
    .unwrap();
    // (an empty cache: a verified copy in the cache would be used as it is)
    let fresh = tempfile::tempdir().unwrap();
    let o = run(p.path(), fresh.path(), &["lock", "--update"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = text(&o.stderr);
    assert!(
        err.contains("main/binary-amd64/Packages") && err.contains("sha256"),
        "{err}"
    );
    std::fs::write(&packages, &good).unwrap();

    // The signed Release edited: the signature does not verify.
    let inrelease = repo.root().join("dists/test/InRelease");
    let signed = std::fs::read_to_string(&inrelease).unwrap();
    std::fs::write(&inrelease, signed.replace("Origin: test", "Origin: evil")).unwrap();
    let o = run(p.path(), cache.path(), &["lock", "--update"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        text(&o.stderr).contains("signature does not verify"),
        "{}",
        show(&o)
    );
    std::fs::write(&inrelease, &signed).unwrap();

    // Signed by a key the project does not trust.
    let other = LocalRepo::new();
    std::fs::copy(other.dir.path().join("key.gpg"), p.path().join("key.gpg")).unwrap();
    let o = run(p.path(), cache.path(), &["lock", "--update"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        text(&o.stderr).contains("signature does not verify"),
        "{}",
        show(&o)
    );
    std::fs::copy(repo.dir.path().join("key.gpg"), p.path().join("key.gpg")).unwrap();

    // Expired (Valid-Until in the past): a replayed old state is refused.
    repo.sign_release(Some("Sun, 12 Jul 2026 10:16:37 UTC"));
    let o = run(p.path(), cache.path(), &["lock", "--update"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(text(&o.stderr).contains("expired"), "{}", show(&o));
    repo.sign_release(None);

    // A locked file the archive no longer serves: the error names it and the fix.
    let deb = repo.root().join("pool/main/tinylib_1.0_all.deb");
    let kept = std::fs::read(&deb).unwrap();
    std::fs::remove_file(&deb).unwrap();
    let gone = tempfile::tempdir().unwrap();
    let o = run(p.path(), gone.path(), &["base", "build", "tiny"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = text(&o.stderr);
    assert!(
        err.contains("`tinylib 1.0`")
            && err.contains("no longer served")
            && err.contains("builder lock --update tinylib"),
        "{err}"
    );
    std::fs::write(&deb, kept).unwrap();

    // A .deb in the pool changed after it was locked: refused with an empty cache.
    let deb = repo.root().join("pool/main/tinylib_1.0_all.deb");
    let mut bytes = std::fs::read(&deb).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&deb, bytes).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let o = run(p.path(), empty.path(), &["base", "build", "tiny"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = text(&o.stderr);
    assert!(
        err.contains("pool/main/tinylib_1.0_all.deb") && err.contains("sha256"),
        "{err}"
    );
    // Nothing of the refused file stays in the cache (tinytool's good file may).
    let lock: toml::Value = toml::from_str(&lock).unwrap();
    let tinylib = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("tinylib"))
        .unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let left: Vec<String> = std::fs::read_dir(empty.path().join("debian/debs"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|n| !n.starts_with(&tinylib) && !n.starts_with(".part")),
        "{left:?}"
    );
}

/// A project with one recipe whose `[[files]]` and `[image]` are given.
fn project_with(files: &[(&str, &str)], recipe_tail: &str, depends: &[&str]) -> tempfile::TempDir {
    let dir = common::bases_only();
    write_files(dir.path(), files);
    let depends: Vec<String> = depends.iter().map(|d| format!("\"{d}\"")).collect();
    write_files(
        dir.path(),
        &[(
            "recipes/svc.toml",
            &format!(
                "[package]\nname = \"buildertest-svc\"\nversion = \"1.0\"\n\
                 maintainer = \"Tests <tests@example.com>\"\ndescription = \"svc\"\n\
                 architecture = \"amd64\"\ndepends = [{}]\n\n{recipe_tail}",
                depends.join(", ")
            ),
        )],
    );
    dir
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn an_interpreter_from_the_dependency_layer_runs_a_script_with_alternatives() {
    let cache = common::test_cache();
    // python3 is not in slim: its dependency layer brings it, and the entrypoint names it.
    // awk is an alternative (mawk's postinst would make the link): builder makes it.
    let p = project_with(
        &[(
            "main.py",
            "import subprocess\nout = subprocess.run(['awk', 'BEGIN { print 6*7 }'], \
             capture_output=True, text=True).stdout\nprint('python', out.strip())\n",
        )],
        "[[files]]\nfrom = \"main.py\"\nto = \"/usr/share/svc/main.py\"\nmode = \"0644\"\n\n\
         [image]\nbase = \"slim\"\nentrypoint = [\"/usr/bin/python3\", \"/usr/share/svc/main.py\"]\n",
        &["python3"],
    );
    let o = run(p.path(), &cache, &["--json", "package"]);
    assert!(o.status.success(), "{}", show(&o));
    let img = image_json(&o);
    let tag = img["tag"].as_str().unwrap();
    let out = docker(&["run", "--rm", "--network", "none", tag]);
    // slim ships dpkg, so its database is dpkg's own: the layer's packages are in it.
    let db = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/usr/bin/dpkg-query",
        tag,
        "-W",
        "-f",
        "${Package} ${db:Status-Status}\n",
        "python3",
        "mawk",
    ]);
    let _ = docker(&["rmi", "-f", tag]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(text(&out.stdout).trim(), "python 42");
    assert_eq!(
        text(&db.stdout),
        "mawk installed\npython3 installed\n",
        "{}",
        show(&db)
    );
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn what_the_image_user_cannot_execute_or_the_machine_cannot_run_is_refused() {
    let cache = common::test_cache();
    // 0700 root:root: the image runs as 65532, for whom it is not executable.
    let p = project("cc", DEPENDS);
    let recipe = p.path().join("recipes/probe.toml");
    let t = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(&recipe, t.replace("mode = \"0755\"", "mode = \"0700\"")).unwrap();
    let o = run(p.path(), &cache, &["package", "--no-load"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        text(&o.stderr).contains("`/usr/bin/probe` is not an executable file"),
        "{}",
        show(&o)
    );
    // 0750 root:root is executable for a user in group 0.
    std::fs::write(
        &recipe,
        t.replace("mode = \"0755\"", "mode = \"0750\"")
            .replace("[image]\n", "[image]\nuser = \"65532:0\"\n"),
    )
    .unwrap();
    let o = run(p.path(), &cache, &["package", "--no-load"]);
    assert!(o.status.success(), "{}", show(&o));

    // A static arm64 program in an amd64 image.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.go"), "package main\nfunc main() {}\n").unwrap();
    sh(Command::new("go")
        .args(["build", "-o", "hello-arm64", "main.go"])
        .current_dir(dir.path())
        .env("CGO_ENABLED", "0")
        .env("GOARCH", "arm64")
        .env("GO111MODULE", "off")
        .env("GOCACHE", dir.path().join("gocache"))
        .env("HOME", dir.path()));
    let bin = std::fs::read(dir.path().join("hello-arm64")).unwrap();
    let p = project_with(
        &[],
        "[[files]]\nfrom = \"hello\"\nto = \"/usr/bin/hello\"\nmode = \"0755\"\n\n\
         [image]\nbase = \"static\"\nentrypoint = [\"/usr/bin/hello\"]\n",
        &[],
    );
    std::fs::write(p.path().join("hello"), bin).unwrap();
    let o = run(p.path(), &cache, &["package", "--no-load"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        text(&o.stderr).contains("is an ELF for aarch64") && text(&o.stderr).contains("amd64"),
        "{}",
        show(&o)
    );
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn packages_that_would_break_the_layout_or_the_accounts_are_refused() {
    let repo = LocalRepo::new();
    repo.add("evil-bin", &[], &[("bin", "/etc")]);
    repo.add(
        "evil-passwd",
        &[("etc/passwd", "pwned:x:0:0::/:/bin/sh\n")],
        &[],
    );
    let cache = tempfile::tempdir().unwrap();
    for (package, want) in [
        ("evil-bin", "would replace the merged-/usr link `/bin`"),
        ("evil-passwd", "ships `/etc/passwd`, which builder writes"),
    ] {
        let p = repo.project();
        write_files(
            p.path(),
            &[(
                "base-images/tiny.toml",
                &format!("kind = \"packages\"\npackages = [\"{package}\"]\n"),
            )],
        );
        let o = run(p.path(), cache.path(), &["base", "build", "tiny"]);
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        assert!(text(&o.stderr).contains(want), "{}", show(&o));
    }
}
