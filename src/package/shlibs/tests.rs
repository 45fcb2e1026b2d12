//! `${shlibs:Depends}` on real programs built with gcc: against hand-made library sets
//! (every error path), against the host's own `dpkg-shlibdeps` with the host's dpkg
//! database as input (fast tier, no network), and with the .debs of the host's installed
//! libc6 and zlib1g downloaded by apt (engine tier: needs the archive).
#![allow(clippy::print_stderr)] // tests say why they skip

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::libs::{abi, Part};
use super::*;

const PROGRAM: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>
extern int own(void);
int main(void) {
    unsigned char buf[16];
    arc4random_buf(buf, sizeof buf);
    printf("%s %lu %d\n", zlibVersion(), crc32(0L, buf, sizeof buf), own());
    return 0;
}
"#;

const OWN: &str = "int own(void) { return 42; }\n";

/// A gcc-built program that uses libc (`arc4random_buf` is GLIBC_2.36), zlib and a
/// library of its own (`libown.so.1`), laid out as a package build tree in `dir`:
/// `debian/app/usr/bin/app` and `debian/app/usr/lib/x86_64-linux-gnu/libown.so.1`.
/// `None` (test skipped) without x86_64, gcc or zlib's headers.
fn build_program(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let ready = cfg!(all(target_os = "linux", target_arch = "x86_64"))
        && Path::new("/usr/include/zlib.h").exists()
        && Command::new("gcc")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ready {
        eprintln!("skipped: needs x86_64 with gcc and zlib1g-dev");
        return None;
    }
    let root = dir.join("debian/app");
    let bin = root.join("usr/bin");
    let lib = root.join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(dir.join("own.c"), OWN).unwrap();
    std::fs::write(dir.join("app.c"), PROGRAM).unwrap();
    let gcc = |args: &[&str]| {
        let o = Command::new("gcc")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "gcc: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let own = lib.join("libown.so.1");
    gcc(&[
        "-shared",
        "-fPIC",
        "-Wl,-soname,libown.so.1",
        "own.c",
        "-o",
        own.to_str().unwrap(),
    ]);
    let app = bin.join("app");
    gcc(&[
        "app.c",
        "-o",
        app.to_str().unwrap(),
        own.to_str().unwrap(),
        "-lz",
    ]);
    Some((app, own))
}

/// The data tree of the package: the program and its own library.
fn tree_of(app: &Path, own: &Path) -> Tree {
    let mut t = Tree::new();
    t.add_file("usr/bin/app", 0o755, FileSource::Path(app.to_path_buf()))
        .unwrap();
    t.add_file(
        "usr/lib/x86_64-linux-gnu/libown.so.1",
        0o644,
        FileSource::Path(own.to_path_buf()),
    )
    .unwrap();
    add_bytes(&mut t, "usr/share/doc/app/README", 0o644, b"text, not ELF");
    t
}

const LIBC_SYMBOLS: &str = "\
libc.so.6 libc6 #MINVER#
| libc6 (>> 2.36), libc6 (<< 2.37)
 GLIBC_2.2.5@GLIBC_2.2.5 2.2.5
 arc4random_buf@GLIBC_2.36 2.36
 printf@GLIBC_2.2.5 2.2.5
 __libc_start_main@GLIBC_2.34 2.34
 __libc_start_main@GLIBC_2.2.5 2.2.5
";

fn hand_made(zlib: Option<Part<'static>>) -> LibrarySet {
    let amd64 = abi("amd64").unwrap();
    let mut parts = vec![Part {
        name: "libc6",
        version: "2.36-9",
        symbols: Some(LIBC_SYMBOLS),
        shlibs: Some("libc 6 libc6 (>= 2.36)\n"),
        files: vec!["/lib/x86_64-linux-gnu/libc.so.6".into()],
    }];
    parts.extend(zlib);
    LibrarySet::from_parts("base `test`", "amd64", &amd64, parts)
}

fn zlib_shlibs_only() -> Part<'static> {
    Part {
        name: "zlib1g",
        version: "1:1.2.13.dfsg-1",
        symbols: None,
        shlibs: Some(
            "libz 1 zlib1g (>= 1:1.2.3.3.dfsg-1)\nudeb: libz 1 zlib1g-udeb (>= 1:1.2.3.3.dfsg-1)\n",
        ),
        files: vec![
            "/usr/lib/x86_64-linux-gnu/libz.so.1".into(),
            "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13".into(),
        ],
    }
}

/// A set provider for cases that must not need one.
fn never(_: &libs::Abi) -> anyhow::Result<LibrarySet> {
    panic!("no set is needed")
}

fn add_bytes(t: &mut Tree, path: &str, mode: u32, bytes: &[u8]) {
    t.add_file(path, mode, FileSource::Bytes(Arc::from(bytes)))
        .unwrap();
}

fn text(rels: &[Relation]) -> String {
    rels.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn expect_problem(r: Result<Vec<Relation>, Error>) -> String {
    match r {
        Err(Error::Package(msg)) => msg,
        other => panic!("expected a package problem, got {other:?}"),
    }
}

#[test]
fn symbols_give_the_highest_minimum_version_and_shlibs_the_dependency_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let Some((app, own)) = build_program(dir.path()) else {
        return;
    };
    let tree = tree_of(&app, &own);
    let found = compute(&tree, "amd64", |_| Ok(hand_made(Some(zlib_shlibs_only())))).unwrap();
    // arc4random_buf@GLIBC_2.36 is the newest symbol used; libown.so.1 is the package's own
    assert_eq!(
        text(&found),
        "libc6 (>= 2.36), zlib1g (>= 1:1.2.3.3.dfsg-1)"
    );
}

#[test]
fn missing_libraries_and_information_are_errors_that_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let Some((app, own)) = build_program(dir.path()) else {
        return;
    };
    let tree = tree_of(&app, &own);
    let msg = expect_problem(compute(&tree, "amd64", |_| Ok(hand_made(None))));
    assert!(
        msg.contains("`/usr/bin/app` needs `libz.so.1`, which no package of base `test` ships"),
        "{msg}"
    );
    assert!(
        msg.contains("add the package with the runtime library to base `test`"),
        "{msg}"
    );
    assert!(
        msg.contains("by hand instead of `${shlibs:Depends}`"),
        "{msg}"
    );

    let silent = Part {
        shlibs: None,
        ..zlib_shlibs_only()
    };
    let msg = expect_problem(compute(&tree, "amd64", |_| Ok(hand_made(Some(silent)))));
    assert!(
        msg.contains("needs `libz.so.1` from `zlib1g` 1:1.2.13.dfsg-1, whose `symbols` and `shlibs` files say nothing about it"),
        "{msg}"
    );

    // without its own library, the program needs libown.so.1 from the set too
    let mut alone = Tree::new();
    alone
        .add_file("usr/bin/app", 0o755, FileSource::Path(app.clone()))
        .unwrap();
    let msg = expect_problem(compute(&alone, "amd64", |_| {
        Ok(hand_made(Some(zlib_shlibs_only())))
    }));
    assert!(msg.contains("`libown.so.1`"), "{msg}");
}

#[test]
fn elf_files_of_another_architecture_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let Some((app, own)) = build_program(dir.path()) else {
        return;
    };
    let tree = tree_of(&app, &own);
    let msg = expect_problem(compute(&tree, "arm64", never));
    assert!(msg.contains("`/usr/bin/app` is an ELF file for another architecture (machine 62, 64-bit, little-endian) than the package's `arm64`"), "{msg}");
    let msg = expect_problem(compute(&tree, "all", never));
    assert!(
        msg.contains("is an ELF file, but the package is `architecture = \"all\"`"),
        "{msg}"
    );
}

#[test]
fn no_elf_file_means_nothing_and_no_set() {
    let mut t = Tree::new();
    add_bytes(&mut t, "usr/bin/script", 0o755, b"#!/bin/sh\n");
    add_bytes(&mut t, "usr/lib/x/empty", 0o644, b"");
    assert!(compute(&t, "amd64", never).unwrap().is_empty());
    assert!(compute(&t, "all", never).unwrap().is_empty());
    // a file that starts like ELF but is not one is named
    add_bytes(&mut t, "usr/bin/broken", 0o755, b"\x7fELF\x02\x01\x01");
    let msg = expect_problem(compute(&t, "amd64", never));
    assert!(
        msg.contains("`/usr/bin/broken` starts like an ELF file but cannot be read as one"),
        "{msg}"
    );
}

#[test]
fn the_substvar_is_replaced_where_it_stands_and_merged_like_dpkg_gencontrol() {
    let f = |k: &str, v: &str| (k.to_string(), v.to_string());
    let found = relation::parse("libc6 (>= 2.34), zlib1g (>= 1:1.1.4)").unwrap();
    let fields = vec![
        f("Package", "app"),
        f("Pre-Depends", "zlib1g (>= 1:1.2)"),
        f("Depends", "adduser, ${shlibs:Depends}, libc6 (>= 2.36)"),
        f("Recommends", "curl"),
    ];
    assert!(wanted(&fields));
    assert_eq!(
        substitute(fields.clone(), &found).unwrap(),
        vec![
            f("Package", "app"),
            f("Pre-Depends", "zlib1g (>= 1:1.2)"),
            f("Depends", "adduser, libc6 (>= 2.36)"),
            f("Recommends", "curl"),
        ]
    );
    // nothing found: the entry goes, and a field left empty goes too
    let only = vec![f("Package", "app"), f("Depends", "${shlibs:Depends}")];
    assert_eq!(
        substitute(only.clone(), &[]).unwrap(),
        vec![f("Package", "app")]
    );
    assert_eq!(without_substvars(&only[1..]), vec![]);
    assert_eq!(
        without_substvars(&fields[1..3]),
        vec![
            f("Pre-Depends", "zlib1g (>= 1:1.2)"),
            f("Depends", "adduser, libc6 (>= 2.36)")
        ]
    );
    assert!(!wanted(&[f("Depends", "libc6")]));
}

/// The host's `dpkg-shlibdeps -O` on the package build tree in `dir` (as dh_shlibdeps runs
/// it: the binaries below `debian/app/`), its `shlibs:Depends` value.
fn host_dpkg_shlibdeps(dir: &Path, app: &Path) -> Option<String> {
    std::fs::write(
        dir.join("debian/control"),
        "Source: app\nMaintainer: T <t@example.com>\n\nPackage: app\nArchitecture: any\nDescription: x\n",
    )
    .unwrap();
    let o = Command::new("dpkg-shlibdeps")
        .current_dir(dir)
        .arg("-O")
        .arg(app.strip_prefix(dir).unwrap())
        .output()
        .ok()?;
    assert!(
        o.status.success(),
        "dpkg-shlibdeps: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8(o.stdout).unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_string)
}

/// What dpkg's database says of an installed package: `(symbols, shlibs, files)`.
fn installed(name: &str) -> Option<(Option<String>, Option<String>, Vec<String>)> {
    let info = Path::new("/var/lib/dpkg/info");
    let read = |ext: &str| {
        std::fs::read_to_string(info.join(format!("{name}:amd64.{ext}")))
            .or_else(|_| std::fs::read_to_string(info.join(format!("{name}.{ext}"))))
            .ok()
    };
    let list = read("list")?;
    Some((
        read("symbols"),
        read("shlibs"),
        list.lines().map(str::to_string).collect(),
    ))
}

fn installed_version(name: &str) -> Option<String> {
    let o = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", name])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Builder's answer equals the host's dpkg-shlibdeps on the same binary, with the host's
/// dpkg database (the same symbols, shlibs and file lists dpkg-shlibdeps reads) as the set.
#[test]
fn agrees_with_the_hosts_dpkg_shlibdeps_on_its_installed_libraries() {
    let dir = tempfile::tempdir().unwrap();
    let Some((app, own)) = build_program(dir.path()) else {
        return;
    };
    let (Some(libc), Some(zlib)) = (installed("libc6"), installed("zlib1g")) else {
        eprintln!("skipped: libc6 or zlib1g is not in dpkg's database");
        return;
    };
    let Some(expected) = host_dpkg_shlibdeps(dir.path(), &app) else {
        eprintln!("skipped: no dpkg-shlibdeps");
        return;
    };
    let versions = (
        installed_version("libc6").unwrap_or_default(),
        installed_version("zlib1g").unwrap_or_default(),
    );
    let amd64 = abi("amd64").unwrap();
    let set = LibrarySet::from_parts(
        "the host's packages",
        "amd64",
        &amd64,
        vec![
            Part {
                name: "libc6",
                version: &versions.0,
                symbols: libc.0.as_deref(),
                shlibs: libc.1.as_deref(),
                files: libc.2.clone(),
            },
            Part {
                name: "zlib1g",
                version: &versions.1,
                symbols: zlib.0.as_deref(),
                shlibs: zlib.1.as_deref(),
                files: zlib.2.clone(),
            },
        ],
    );
    let found = compute(&tree_of(&app, &own), "amd64", |_| Ok(set)).unwrap();
    assert_eq!(text(&found), expected);
}

/// The same comparison with the .debs of the host's installed libc6 and zlib1g, fetched
/// by `apt-get download` from the host's configured mirror: builder reads the libraries'
/// `symbols`, `shlibs` and file lists from the .debs, as it does from a builder base.
#[test]
#[cfg_attr(
    not(feature = "engine-tests"),
    ignore = "engine tier: downloads from the archive"
)]
fn agrees_with_the_hosts_dpkg_shlibdeps_on_the_archives_debs() {
    let dir = tempfile::tempdir().unwrap();
    let (app, own) = build_program(dir.path()).expect("gcc and zlib1g-dev (see .ci/setup)");
    let expected = host_dpkg_shlibdeps(dir.path(), &app).expect("dpkg-shlibdeps (dpkg-dev)");
    let debs = dir.path().join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    let wanted: Vec<String> = ["libc6", "zlib1g"]
        .iter()
        .map(|p| format!("{p}={}", installed_version(p).expect("installed")))
        .collect();
    let o = Command::new("apt-get")
        .current_dir(&debs)
        .arg("download")
        .args(&wanted)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "apt-get download {wanted:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&debs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    let amd64 = abi("amd64").unwrap();
    let found = compute(&tree_of(&app, &own), "amd64", |abi| {
        LibrarySet::from_debs("the downloaded packages".into(), &files, "amd64", abi)
    })
    .unwrap();
    assert_eq!(text(&found), expected);
    assert_eq!(amd64.triplet, "x86_64-linux-gnu");
}
