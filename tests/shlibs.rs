//! `${shlibs:Depends}` through the real binary: a C program linking zlib and jansson is
//! compiled by `builder build` in a builder container (a test base with gcc and the -dev
//! packages), packaged by `builder package`; the .deb's Depends is what `dpkg-shlibdeps`
//! says of the same binary inside a container of the same builder base, apt installs the
//! .deb with the libraries it names from the host's Debian mirror, the image runs the
//! program, and `builder lock` / `--locked` hold the libraries the built files need.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::apt::{base_image, AptContainer, HOST_SOURCES};
use common::{builder, sh, show, text, write_files};

/// The builder base of the test project: Debian's gcc with zlib's and jansson's headers,
/// and dpkg-dev for the reference `dpkg-shlibdeps`.
const CBUILD: &str = r#"kind = "debootstrap"
description = "C builder for the shlibs tests (gcc, zlib1g-dev, libjansson-dev, dpkg-dev)"
suite = "bookworm"
variant = "minbase"
packages = ["gcc", "libc6-dev", "zlib1g-dev", "libjansson-dev", "dpkg-dev"]
user = { name = "builder", uid = 1000 }
env = { HOME = "/home/builder" }
"#;

/// Prints zlib's version and a crc32 as JSON through jansson: a run proves both libraries
/// loaded.
const HELLO_C: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <jansson.h>
int main(void) {
    const char *s = "shlibs:Depends";
    json_t *o = json_pack("{s:s, s:I}", "zlib", zlibVersion(),
                          "crc32", (json_int_t)crc32(0L, (const Bytef *)s, strlen(s)));
    char *out = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    puts(out);
    free(out);
    json_decref(o);
    return 0;
}
"#;

/// What the program prints with bookworm's zlib (crc32 of "shlibs:Depends", as Python's
/// `zlib.crc32` computes it).
const EXPECTED: &str = r#"{"crc32":2318814148,"zlib":"1.2.13"}"#;

const RECIPE: &str = r#"[package]
name = "shlibs-hello"
version = "1.0"
revision = "REVISION"
architecture = "amd64"
maintainer = "Tests <tests@example.com>"
description = "prints zlib's version and a crc32 through jansson"
depends = ["${shlibs:Depends}"]

[build]
builder = "cbuild"
source = "src"
command = ["gcc", "-O2", "-o", "/out/hello", "hello.c", "-lz", "-ljansson"]
outputs = ["hello"]

[[files]]
from = "build:hello"
to = "/usr/bin/shlibs-hello"
mode = "0755"

[image]
base = "cc"
entrypoint = ["/usr/bin/shlibs-hello"]
"#;

/// A temp project with the repository's bases and archive, the `cbuild` builder base and
/// the `shlibs-hello` recipe at Debian revision `revision`. The tests run in parallel and
/// each removes its image when done, so each packages its own revision (its own image tag).
fn project(revision: &str) -> tempfile::TempDir {
    let recipe = RECIPE.replace("REVISION", revision);
    let p = common::bases_only();
    write_files(
        p.path(),
        &[
            ("base-images/cbuild.toml", CBUILD),
            ("src/hello.c", HELLO_C),
            ("recipes/shlibs-hello.toml", &recipe),
        ],
    );
    p
}

fn cmd(project: &Path, args: &[&str]) -> Output {
    let mut c = builder();
    c.arg("--project")
        .arg(project)
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    c.output().expect("could not run builder")
}

fn ok(project: &Path, args: &[&str]) -> Output {
    let o = cmd(project, args);
    assert!(o.status.success(), "builder {args:?}: {}", show(&o));
    o
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("docker")
}

/// `dpkg-shlibdeps -O` on `binary` (a path below `root`) inside a container of `image`,
/// as dh_shlibdeps runs it: its `shlibs:Depends` value.
fn dpkg_shlibdeps_in(image: &str, root: &Path, binary: &str) -> String {
    let script = format!(
        "set -e; mkdir -p /tmp/w/debian && cd /tmp/w && \
         printf 'Source: x\\nMaintainer: T <t@example.com>\\n\\nPackage: x\\nArchitecture: any\\nDescription: x\\n' \
         > debian/control && dpkg-shlibdeps -O /pkg{binary}"
    );
    let mount = format!("--volume={}:/pkg:ro", root.display());
    let o = docker(&[
        "run",
        "--rm",
        "--network=none",
        "--user=root",
        "--label=io.builder=1",
        &mount,
        image,
        "sh",
        "-c",
        &script,
    ]);
    assert!(o.status.success(), "dpkg-shlibdeps: {}", show(&o));
    text(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .unwrap_or_else(|| panic!("no shlibs:Depends in {}", show(&o)))
        .to_string()
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn shlibs_depends_agrees_with_dpkg_shlibdeps_and_apt_installs_what_it_names() {
    let p = project("1");
    ok(p.path(), &["build", "shlibs-hello"]);
    let o = ok(p.path(), &["--json", "package", "shlibs-hello"]);
    let results: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&o)));
    let deb = results[0]["deb"]["path"].as_str().unwrap().to_string();
    let tag = results[0]["image"]["tag"].as_str().unwrap().to_string();
    let image_deps: Vec<String> = results[0]["image"]["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().split(' ').next().unwrap().to_string())
        .collect();

    // The .deb's Depends is exactly what dpkg-shlibdeps says of the packaged binary in the
    // builder base it was compiled in.
    let depends = sh(Command::new("dpkg-deb").args(["-f", &deb, "Depends"]));
    let depends = depends.trim();
    let unpacked = tempfile::tempdir().unwrap();
    sh(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(unpacked.path()));
    let cbuild = base_image(p.path(), "cbuild");
    let expected = dpkg_shlibdeps_in(&cbuild, unpacked.path(), "/usr/bin/shlibs-hello");
    assert_eq!(depends, expected);
    for lib in ["libc6 (>= ", "libjansson4 (>= ", "zlib1g (>= "] {
        assert!(depends.contains(lib), "{lib} not in {depends}");
    }
    assert!(
        text(&o.stderr).contains(&format!("`${{shlibs:Depends}}` = {depends}")),
        "{}",
        show(&o)
    );

    // The image on `cc` (glibc, no zlib, no jansson) gets both libraries in its dependency
    // layer from the computed Depends, and runs the program.
    for lib in ["zlib1g", "libjansson4"] {
        assert!(
            image_deps.contains(&lib.to_string()),
            "{lib}: {image_deps:?}"
        );
    }
    let run = docker(&["run", "--rm", "--network", "none", &tag]);
    assert!(run.status.success(), "{}", show(&run));
    assert_eq!(text(&run.stdout).trim(), EXPECTED);
    let _ = docker(&["rmi", "-f", &tag]);

    // apt installs the .deb in plain Debian (minbase: zlib1g is there, since dpkg itself
    // pre-depends on it; jansson is not) and pulls in what Depends names from the mirror.
    let debs = Path::new(&deb).parent().unwrap();
    let file = Path::new(&deb).file_name().unwrap().to_string_lossy();
    let apt = AptContainer::start_online(debs);
    let before = apt.exec("dpkg-query -W -f '${Status}' libjansson4");
    assert!(
        !text(&before.stdout).contains("installed"),
        "libjansson4 is in the base already: {}",
        text(&before.stdout)
    );
    let o = apt.exec(&format!(
        "{HOST_SOURCES} update && {HOST_SOURCES} install -y --no-install-recommends /debs/{file}"
    ));
    let out = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "apt-get install: {out}");
    let new: Vec<&str> = out
        .split("The following NEW packages will be installed:")
        .nth(1)
        .and_then(|rest| rest.split('\n').nth(1))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert!(new.contains(&"libjansson4"), "{out}");
    assert!(new.contains(&"shlibs-hello"), "{out}");
    // zlib1g came with the base: its installed version satisfies the computed relation.
    let zlib = depends
        .split(", ")
        .find(|r| r.starts_with("zlib1g "))
        .unwrap();
    let (op, version) = zlib
        .trim_start_matches("zlib1g (")
        .trim_end_matches(')')
        .split_once(' ')
        .unwrap();
    let check = apt.exec(&format!(
        "dpkg --compare-versions \"$(dpkg-query -W -f '${{Version}}' zlib1g)\" {} '{version}'",
        if op == ">=" { "ge" } else { op }
    ));
    assert!(
        check.status.success(),
        "installed zlib1g does not satisfy {zlib}"
    );
    let hello = apt.exec("shlibs-hello");
    assert!(hello.status.success(), "{}", text(&hello.stderr));
    assert_eq!(text(&hello.stdout).trim(), EXPECTED);
}

/// `builder.lock` of the project.
fn lock_text(project: &Path) -> String {
    std::fs::read_to_string(project.join("builder.lock")).unwrap()
}

/// The package names of the image set `shlibs-hello` in `builder.lock`.
fn image_set(project: &Path) -> Vec<String> {
    let lock: toml::Value = toml::from_str(&lock_text(project)).unwrap();
    lock["set"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"].as_str() == Some("image") && s["name"].as_str() == Some("shlibs-hello"))
        .expect("the image set in builder.lock")["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().split(' ').next().unwrap().to_string())
        .collect()
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn the_lock_holds_the_libraries_the_built_files_need_and_locked_says_when_not() {
    let p = project("2");
    // Before the build, the image's set is locked from what the recipe writes: the `cc`
    // base holds libc6, so nothing.
    ok(p.path(), &["lock"]);
    ok(p.path(), &["lock", "--check"]);
    assert_eq!(image_set(p.path()), Vec::<String>::new());

    // Built, the files need zlib1g and libjansson4, which that entry lacks.
    ok(p.path(), &["build", "shlibs-hello"]);
    let o = cmd(p.path(), &["lock", "--check"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        text(&o.stderr).contains(
            "image `shlibs-hello`: lacks a library `${shlibs:Depends}` finds in the built files"
        ),
        "{}",
        show(&o)
    );
    let o = cmd(p.path(), &["--locked", "package", "shlibs-hello"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = text(&o.stderr);
    assert!(
        err.contains("--locked: the image `shlibs-hello` in builder.lock lacks `")
            && err.contains("which `${shlibs:Depends}` found in the built files; run `builder lock` after `builder build`"),
        "{}",
        show(&o)
    );
    assert!(
        err.contains("lacks `libjansson4 (>= ") || err.contains("lacks `zlib1g (>= "),
        "{err}"
    );

    // `builder lock` after the build reads the built files: the entry gets both libraries,
    // `--check` agrees, and a `--locked` package uses it without changing it.
    let o = ok(p.path(), &["lock"]);
    assert!(
        text(&o.stderr).contains("`${shlibs:Depends}` = libc6 (>= "),
        "{}",
        show(&o)
    );
    let locked = lock_text(p.path());
    assert_eq!(image_set(p.path()), ["libjansson4", "zlib1g"], "{locked}");
    ok(p.path(), &["lock", "--check"]);
    let o = ok(p.path(), &["--locked", "--json", "package", "shlibs-hello"]);
    assert_eq!(lock_text(p.path()), locked);
    let results: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tag = results[0]["image"]["tag"].as_str().unwrap().to_string();
    let run = docker(&["run", "--rm", "--network", "none", &tag]);
    let _ = docker(&["rmi", "-f", &tag]);
    assert_eq!(text(&run.stdout).trim(), EXPECTED, "{}", show(&run));

    // A fresh checkout (nothing built) with that lock is up to date too.
    std::fs::remove_dir_all(p.path().join("dist")).unwrap();
    ok(p.path(), &["lock", "--check"]);
}
