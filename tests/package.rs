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
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
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
    let manifest = manifest_of(a.path());
    assert_eq!(
        manifest["artifacts"][0]["sha256"].as_str().unwrap(),
        sha256sum(&deb_a)
    );
    assert_eq!(
        manifest["artifacts"][0]["path"],
        "debs/demo_2.1.0-3_amd64.deb"
    );
    // ... and of the `.changes` written beside the .deb, as its own kind (after debs and
    // images), with the bytes and size on disk.
    let changes = a.path().join("dist/debs/demo_2.1.0-3_amd64.changes");
    let entry = &manifest["artifacts"][1];
    assert_eq!(entry["kind"], "changes", "{manifest}");
    assert_eq!(entry["name"], "demo");
    assert_eq!(entry["version"], "2.1.0-3");
    assert_eq!(entry["path"], "debs/demo_2.1.0-3_amd64.changes");
    assert_eq!(entry["sha256"].as_str().unwrap(), sha256sum(&changes));
    assert_eq!(
        entry["size"].as_u64().unwrap(),
        std::fs::metadata(&changes).unwrap().len()
    );
    // A different SOURCE_DATE_EPOCH changes the bytes.
    let deb_c = package(b.path(), Some("1700000001"));
    assert_ne!(
        std::fs::read(&deb_a).unwrap(),
        std::fs::read(&deb_c).unwrap()
    );
}

/// With a key configured for promotion, each `.changes` is clearsigned with it, as
/// `debsign` does for dput and reprepro: `gpgv` verifies it against the public key and
/// gives back the unsigned text, a changed byte fails, and the manifest records the signed
/// bytes. The .deb itself is the same bytes either way.
#[test]
fn a_configured_key_clearsigns_the_changes_and_gpgv_verifies_it() {
    let dir = fixture("gzip");
    let deb = package(dir.path(), Some("1700000000"));
    let unsigned_deb = std::fs::read(&deb).unwrap();
    let changes = dir.path().join("dist/debs/demo_2.1.0-3_amd64.changes");
    let unsigned = std::fs::read_to_string(&changes).unwrap();
    assert!(unsigned.starts_with("Format: 1.8\n"), "{unsigned}");

    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("signing.asc");
    sh(builder()
        .args(["key", "generate", "--out"])
        .arg(&key)
        .args(["--name", "changes test"]));
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .arg("package")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("BUILDER_SIGNING_KEY_FILE", &key));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("clearsigning each `.changes` with key "),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&deb).unwrap(), unsigned_deb);
    let signed = std::fs::read_to_string(&changes).unwrap();
    assert!(
        signed.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"),
        "{signed}"
    );
    let keyring = keys.path().join("signing.asc.pub.gpg");
    let verified = sh(Command::new("gpgv")
        .arg("--keyring")
        .arg(&keyring)
        .args(["--output", "-"])
        .arg(&changes));
    assert_eq!(verified.trim_end(), unsigned.trim_end());

    let m = manifest_of(dir.path());
    assert_eq!(
        m["artifacts"][1]["sha256"].as_str().unwrap(),
        sha256sum(&changes),
        "{m}"
    );

    std::fs::write(&changes, signed.replacen("Format: 1.8", "Format: 1.9", 1)).unwrap();
    let tampered = Command::new("gpgv")
        .arg("--keyring")
        .arg(&keyring)
        .arg(&changes)
        .output()
        .unwrap();
    assert!(
        !tampered.status.success(),
        "gpgv accepted a changed .changes"
    );
}

#[test]
fn missing_build_output_says_how_to_fix() {
    let dir = fixture("xz");
    let recipe = RECIPE
        .replace("COMPRESSION", "xz")
        .replace("from = \"app/demo.sh\"", "from = \"build:demo\"")
        + "\n[build]\nbuilder = \"go\"\nsource = \"app\"\ncommand = [\"true\"]\noutputs = [\"demo\"]\n";
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
    let names = manifest_names;
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

/// dist/manifest.json of the project `dir`.
fn manifest_of(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("dist/manifest.json")).unwrap()).unwrap()
}

/// `sha256sum`'s digest of `path`.
fn sha256sum(path: &Path) -> String {
    let out = sh(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap().to_string()
}

/// The names of the .debs in dist/manifest.json, sorted; each with its `.changes` entry.
fn manifest_names(dir: &Path) -> Vec<String> {
    let m = manifest_of(dir);
    let of = |kind: &str| {
        let mut v: Vec<String> = m["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == kind)
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(of("changes"), of("deb"), "{m}");
    of("deb")
}

#[test]
fn concurrent_package_runs_keep_every_manifest_entry() {
    let dir = fixture("none");
    let names = ["pa", "pb", "pc", "pd"];
    for n in names {
        let r = RECIPE
            .replace("COMPRESSION", "none")
            .replace("name = \"demo\"", &format!("name = \"{n}\""));
        write_files(dir.path(), &[(&format!("recipes/{n}.toml"), &r)]);
    }
    std::fs::remove_file(dir.path().join("recipes/demo.toml")).unwrap();
    // Each round starts four `builder package NAME` at once; without the manifest lock
    // each rewrote the file from what it had read and entries went missing.
    for round in 0..3 {
        let _ = std::fs::remove_file(dir.path().join("dist/manifest.json"));
        let children: Vec<_> = names
            .iter()
            .map(|n| {
                builder()
                    .arg("--project")
                    .arg(dir.path())
                    .args(["-q", "package", n])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
        assert_eq!(manifest_names(dir.path()), names, "round {round}");
    }
    // Results in dist/ are readable by everyone, like the .debs.
    use std::os::unix::fs::PermissionsExt;
    for f in ["dist/manifest.json", "dist/debs/pa_2.1.0-3_amd64.deb"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{f}");
    }
}

#[test]
fn each_artifact_keeps_the_commit_it_was_made_from() {
    let dir = fixture("none");
    let other = RECIPE
        .replace("COMPRESSION", "none")
        .replace("name = \"demo\"", "name = \"other\"");
    write_files(dir.path(), &[("recipes/other.toml", &other)]);
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "one"]);
    let first = git(&["rev-parse", "HEAD"]);
    let pkg = |name: &str| {
        let out = run(builder()
            .arg("--project")
            .arg(dir.path())
            .args(["-q", "package", name]));
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    pkg("demo");
    write_files(dir.path(), &[("app/docs/NEWS.md", "news\n")]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "two"]);
    let second = git(&["rev-parse", "HEAD"]);
    pkg("other");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("dist/manifest.json")).unwrap())
            .unwrap();
    let commit_of = |name: &str| {
        m["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap()["source_commit"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(commit_of("demo"), first);
    assert_eq!(commit_of("other"), second);
    assert!(
        m.get("source_commit").is_none(),
        "no single commit when artifacts differ: {m}"
    );
    pkg("demo");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("dist/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["source_commit"], second.as_str());
}

#[test]
fn out_of_range_source_date_epoch_is_a_usage_error() {
    let dir = fixture("none");
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .env("SOURCE_DATE_EPOCH", "18446744073709551615")
        .arg("package"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("SOURCE_DATE_EPOCH=`18446744073709551615` is after 2242-03-16"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("dist/debs").exists());
}

#[test]
fn a_full_stdout_is_an_environment_error() {
    let dir = fixture("none");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = builder()
        .arg("--project")
        .arg(dir.path())
        .args(["--json", "validate"])
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("could not write the results to stdout"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn validate_json_names_a_non_utf8_recipe_file() {
    use std::os::unix::ffi::OsStrExt;
    let dir = fixture("none");
    let odd = dir
        .path()
        .join("recipes")
        .join(std::ffi::OsStr::from_bytes(b"d\xffmo.toml"));
    std::fs::rename(dir.path().join("recipes/demo.toml"), &odd).unwrap();
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .args(["--json", "validate"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert!(
        v["recipes"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("d\u{fffd}mo.toml"),
        "{v}"
    );
}

#[test]
fn inspect_calls_a_damaged_image_tar_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.tar");
    let mut b = tar::Builder::new(Vec::new());
    let name = format!("blobs/sha256/{}", "0".repeat(64));
    let mut h = tar::Header::new_ustar();
    h.set_path(&name).unwrap();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b"hello"[..]).unwrap();
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    let out = run(builder().arg("inspect").arg(&path));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("is not a readable image tar"), "{err}");
    assert!(err.contains("is corrupt: its content hashes to"), "{err}");
}

#[test]
fn ctrl_c_while_packaging_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    // 48 MiB that xz needs many seconds for, so the signal lands mid-write.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..48 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect();
    std::fs::create_dir_all(dir.path().join("app")).unwrap();
    std::fs::write(dir.path().join("app/blob"), data).unwrap();
    write_files(
        dir.path(),
        &[(
            "recipes/big.toml",
            "[package]\nname = \"big\"\nversion = \"1.0\"\narchitecture = \"all\"\n\
             maintainer = \"A <a@example.com>\"\ndescription = \"big\"\ncompression = \"xz\"\n\n\
             [[files]]\nfrom = \"app/blob\"\nto = \"/usr/share/big/blob\"\n",
        )],
    );
    let mut child = builder()
        .arg("--project")
        .arg(dir.path())
        .arg("package")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let debs = dir.path().join("dist/debs");
    let started = std::time::Instant::now();
    // Wait until the writer has its temp file, then interrupt.
    while !std::fs::read_dir(&debs).is_ok_and(|mut d| d.next().is_some()) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no temp file appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let waited = std::time::Instant::now();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    // Before builder wrote xz itself, liblzma's encoder finished the stream on drop: 13 s
    // here alone, over 20 s beside other tests. Now the workers stop at once.
    assert!(
        waited.elapsed() < std::time::Duration::from_secs(5),
        "builder took {:?} to stop",
        waited.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&debs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Modes as they are on disk (special bits included), owners by name, directories of their
/// own and hard links, read back by dpkg-deb; an override that changes a mode is said.
#[test]
fn modes_owners_dirs_and_hard_links_reach_dpkg_as_the_recipe_says() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_files(
        root,
        &[
            (
                "recipes/perms.toml",
                r#"
[package]
name = "perms"
version = "1.0"
architecture = "all"
maintainer = "Release Engineering <release@example.com>"
description = "modes and owners\n\nA package whose files keep their modes and owners."
license = "MIT"

[[files]]
from = "tree"
to = "/usr/share/perms/"
owner = "www-data"
group = "adm"

[[files]]
from = "loose/secret"
to = "/etc/perms/secret"

[[files]]
from = "loose/wide"
to = "/etc/perms/wide"
mode = "0644"

[[files]]
dir = "/var/lib/perms"
mode = "2770"
owner = "www-data"
group = "www-data"

[[files]]
dir = "/var/cache/perms"
mode = "1777"

[[files]]
dir = "/var/log/perms"
owner = "perms"
group = "perms"
"#,
            ),
            ("tree/private.key", "k\n"),
            ("tree/run.sh", "#!/bin/sh\n"),
            ("tree/shared/data", "d\n"),
            ("tree/one", "same bytes\n"),
            ("loose/secret", "s\n"),
            ("loose/wide", "w\n"),
        ],
    );
    set_mode(&root.join("tree/private.key"), 0o600);
    set_mode(&root.join("tree/run.sh"), 0o750);
    set_mode(&root.join("tree/shared"), 0o2775);
    set_mode(&root.join("loose/secret"), 0o640);
    set_mode(&root.join("loose/wide"), 0o600);
    // `two` is another name of `one`; `zz` too, after it in archive order.
    std::fs::hard_link(root.join("tree/one"), root.join("tree/two")).unwrap();
    std::fs::hard_link(root.join("tree/one"), root.join("tree/a-first")).unwrap();

    let out = run(builder()
        .arg("--project")
        .arg(root)
        .args(["package", "--no-image"]));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The override that changed a mode is said, with the mode the file had.
    assert!(
        stderr.contains(
            "`mode = \"0644\"` changes the mode one path had: /etc/perms/wide 0600 → 0644"
        ),
        "{stderr}"
    );
    // An owner that is not a Debian system account, without a preinst to create it.
    assert!(
        stderr.contains("group `perms`, user `perms` are not a Debian system account"),
        "{stderr}"
    );
    let deb = root.join("dist/debs/perms_1.0_all.deb");
    let listing = sh(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    let line = |path: &str| -> String {
        listing
            .lines()
            .find(|l| l.ends_with(path) || l.contains(&format!("{path} link to")))
            .unwrap_or_else(|| panic!("{path} not in\n{listing}"))
            .to_string()
    };
    let cols = |path: &str| -> (String, String) {
        let l = line(path);
        let mut f = l.split_whitespace();
        (f.next().unwrap().into(), f.next().unwrap().into())
    };
    for (path, mode, owner) in [
        (
            "./usr/share/perms/private.key",
            "-rw-------",
            "www-data/adm",
        ),
        ("./usr/share/perms/run.sh", "-rwxr-x---", "www-data/adm"),
        ("./usr/share/perms/shared/", "drwxrwsr-x", "www-data/adm"),
        ("./etc/perms/secret", "-rw-r-----", "root/root"),
        ("./etc/perms/wide", "-rw-r--r--", "root/root"),
        ("./var/lib/perms/", "drwxrws---", "www-data/www-data"),
        ("./var/cache/perms/", "drwxrwxrwt", "root/root"),
        ("./var/log/perms/", "drwxr-xr-x", "perms/perms"),
    ] {
        assert_eq!(cols(path), (mode.to_string(), owner.to_string()), "{path}");
    }
    // One file with three names: the first in archive order holds the bytes.
    assert!(
        line("./usr/share/perms/a-first").starts_with("-rw-r--r--"),
        "{listing}"
    );
    for other in ["one", "two"] {
        let l = line(&format!("./usr/share/perms/{other}"));
        assert!(
            l.starts_with('h') && l.ends_with("link to ./usr/share/perms/a-first"),
            "{l}"
        );
    }
    // dpkg-deb unpacks them as one inode, and md5sums lists every name.
    let x = tempfile::tempdir().unwrap();
    sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(x.path()));
    use std::os::unix::fs::MetadataExt;
    let ino = |n: &str| {
        std::fs::metadata(x.path().join("usr/share/perms").join(n))
            .unwrap()
            .ino()
    };
    assert_eq!(ino("one"), ino("two"));
    assert_eq!(ino("one"), ino("a-first"));
    let info = tempfile::tempdir().unwrap();
    sh(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(info.path()));
    let md5 = std::fs::read_to_string(info.path().join("md5sums")).unwrap();
    for n in ["a-first", "one", "two"] {
        assert!(md5.contains(&format!("  usr/share/perms/{n}\n")), "{md5}");
    }
}

#[test]
fn bad_owners_and_directory_entries_are_refused_at_their_line() {
    let cases: &[(&str, &str)] = &[
        (
            "dir = \"/var/lib/x\"\nowner = \"Bad Name\"",
            "`owner`: `Bad Name` is not a valid name",
        ),
        (
            "dir = \"/var/lib/x\"\ngroup = \"1000\"",
            "`1000` is a number",
        ),
        (
            "dir = \"/var/lib/x\"\nmode = \"0777\"",
            "lets every user delete and replace",
        ),
        (
            "dir = \"/var/lib/x\"\nfrom = \"a\"",
            "a `dir` entry makes a directory: it takes no `from`",
        ),
        ("from = \"a\"", "a [[files]] entry needs `to`"),
    ];
    for (entry, want) in cases {
        refused_at(
            &package_then(&format!("\n[[files]]\n{entry}")),
            &[("a", "a\n")],
            want,
            &["x.toml:8", "x.toml:9", "x.toml:10"],
        );
    }
}

/// `builder validate` of a project whose recipe `recipes/x.toml` is `recipe` (beside
/// `files`) exits 2 with an error that says `want` at one of the positions `at`.
fn refused_at(recipe: &str, files: &[(&str, &str)], want: &str, at: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![("recipes/x.toml", recipe)];
    all.extend_from_slice(files);
    write_files(dir.path(), &all);
    let out = run(builder().arg("--project").arg(dir.path()).arg("validate"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{recipe}: {err}");
    assert!(err.contains(want), "{recipe}: {err}");
    assert!(at.iter().any(|a| err.contains(a)), "{at:?}: {err}");
}

/// A recipe `xx` with the fields every package needs, then `rest`.
fn package_then(rest: &str) -> String {
    format!(
        "[package]\nname = \"xx\"\nversion = \"1\"\narchitecture = \"all\"\nmaintainer = \"A <a@example.com>\"\ndescription = \"x\\n\\nx x.\"\n{rest}\n"
    )
}

/// The control fields debhelper packages carry, in the order dpkg-gencontrol writes them:
/// the same stanza from builder and from the real dpkg-gencontrol (Installed-Size aside).
#[test]
fn control_fields_match_dpkg_gencontrol() {
    if Command::new("dpkg-gencontrol")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: dpkg-gencontrol (dpkg-dev) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_files(
        root,
        &[
            (
                "recipes/demo.toml",
                r#"
[package]
name = "demo"
version = "2.1.0"
revision = "3"
architecture = "amd64"
maintainer = "Release Engineering <release@example.com>"
description = "control fields\n\nEvery field debhelper writes for a binary package."
section = "net"
homepage = "https://example.com/demo"
source = "demo-src (2.0-1)"
multi-arch = "foreign"
essential = true
protected = true
depends = ["libc6 (>= 2.36)"]
breaks = ["older (<< 1)"]
conflicts = ["old"]
provides = ["demo-api"]
replaces = ["old"]
built-using = ["golang-1.19 (= 1.19.8-2)"]
static-built-using = ["golang-1.19 (= 1.19.8-2)", "golang-github-x (= 0.1-1)"]
fields = { "XB-Go-Import-Path" = "example.com/demo", "XBS-Rust-Crate" = "demo" }
"#,
            ),
            (
                "debian/control",
                "Source: demo-src\nMaintainer: Release Engineering <release@example.com>\n\n\
                 Package: demo\nArchitecture: amd64\nMulti-Arch: foreign\nEssential: yes\n\
                 Protected: yes\nDepends: libc6 (>= 2.36)\nBreaks: older (<< 1)\nConflicts: old\n\
                 Provides: demo-api\nReplaces: old\nBuilt-Using: golang-1.19 (= 1.19.8-2)\n\
                 Static-Built-Using: golang-1.19 (= 1.19.8-2), golang-github-x (= 0.1-1)\n\
                 Section: net\nPriority: optional\nHomepage: https://example.com/demo\n\
                 XB-Go-Import-Path: example.com/demo\nXBS-Rust-Crate: demo\n\
                 Description: control fields\n Every field debhelper writes for a binary package.\n",
            ),
            (
                "debian/changelog",
                "demo-src (2.0-1) unstable; urgency=medium\n\n  * Test.\n\n -- Release Engineering <release@example.com>  Thu, 01 Jan 2026 00:00:00 +0000\n",
            ),
        ],
    );
    let out = run(builder()
        .arg("--project")
        .arg(root)
        .args(["package", "--no-image"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deb = root.join("dist/debs/demo_2.1.0-3_amd64.deb");
    let ours = sh(Command::new("dpkg-deb").arg("-f").arg(&deb));
    std::fs::create_dir_all(root.join("pkg")).unwrap();
    let theirs = sh(Command::new("dpkg-gencontrol").current_dir(root).args([
        "-pdemo",
        "-v2.1.0-3",
        "-Ppkg",
        "-O",
    ]));
    let without_size = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with("Installed-Size:"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        without_size(&ours),
        without_size(&theirs),
        "ours:\n{ours}\ntheirs:\n{theirs}"
    );
}

#[test]
fn bad_control_fields_are_refused_at_their_line() {
    let cases: &[(&str, &str)] = &[
        (
            "built-using = [\"golang (>= 1)\"]",
            "must name a source package and its exact version",
        ),
        (
            "source = \"Bad Source\"",
            "is not a valid Debian package name",
        ),
        (
            "multi-arch = \"sometimes\"",
            "unknown multi-arch `sometimes`",
        ),
        (
            "fields = { \"Foo\" = \"x\" }",
            "user field `Foo` must start with `X-`",
        ),
        (
            "fields = { \"XB-Depends\" = \"x\" }",
            "which Debian defines or builder writes itself",
        ),
        (
            "fields = { \"XS-Foo\" = \"x\" }",
            "goes only into source or .changes files",
        ),
        (
            "fields = { \"X-Foo\" = \"a\\nb\" }",
            "contains a control character",
        ),
    ];
    for (line, want) in cases {
        refused_at(&package_then(line), &[], want, &["x.toml:7"]);
    }
}

/// `version = "${GIT_VERSION}"`: every commit gets a version apt orders after the one
/// before; a release tag gives the plain version; uncommitted changes are marked.
#[test]
fn versions_from_git_sort_in_commit_order_and_tags_give_releases() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_files(
        root,
        &[
            (
                "recipes/gv.toml",
                "[package]\nname = \"gv\"\nversion = \"${GIT_VERSION}\"\narchitecture = \"all\"\n\
                 maintainer = \"A <a@example.com>\"\ndescription = \"git versions\\n\\nA test.\"\n\
                 fields = { \"X-Commit\" = \"${GIT_COMMIT}\" }\n\n\
                 [[files]]\nfrom = \"data.txt\"\nto = \"/usr/share/gv/data.txt\"\n",
            ),
            ("data.txt", "1\n"),
            (".gitignore", "dist/\n"),
        ],
    );
    let git = |args: &[&str], date: &str| {
        sh(Command::new("git")
            .current_dir(root)
            .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
            .args(args)
            .env("GIT_COMMITTER_DATE", date)
            .env("GIT_AUTHOR_DATE", date))
    };
    git(&["init", "-q"], "2026-12-04T10:00:00Z");
    let commit = |n: &str, date: &str| {
        std::fs::write(root.join("data.txt"), n).unwrap();
        git(&["add", "-A"], date);
        git(&["commit", "-q", "-m", n], date);
        git(&["rev-parse", "--short=7", "HEAD"], date)
            .trim()
            .to_string()
    };
    let version = || -> String {
        let out = run(builder()
            .arg("--project")
            .arg(root)
            .args(["package", "--no-image"]));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let mut debs: Vec<_> = std::fs::read_dir(root.join("dist/debs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "deb"))
            .collect();
        debs.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
        let newest = debs.last().unwrap();
        sh(Command::new("dpkg-deb")
            .args(["-f"])
            .arg(newest)
            .arg("Version"))
        .trim()
        .to_string()
    };
    let later = |a: &str, b: &str| {
        Command::new("dpkg")
            .args(["--compare-versions", a, "lt", b])
            .status()
            .unwrap()
            .success()
    };
    let h1 = commit("1", "2026-12-04T10:00:00Z");
    let v1 = version();
    assert_eq!(v1, format!("0~git20261204100000.1.{h1}"));
    let h2 = commit("2", "2026-12-04T11:00:00Z");
    let v2 = version();
    assert_eq!(v2, format!("0~git20261204110000.2.{h2}"));
    assert!(later(&v1, &v2), "{v1} < {v2}");
    git(&["tag", "v1.0.0"], "2026-12-04T11:00:00Z");
    assert_eq!(version(), "1.0.0");
    assert!(later(&v2, "1.0.0"));
    let h3 = commit("3", "2026-12-05T09:00:00Z");
    let v3 = version();
    assert_eq!(v3, format!("1.0.0+git20261205090000.1.{h3}"));
    assert!(later("1.0.0", &v3) && later(&v3, "1.0.1"), "{v3}");
    // The commit is in the user field too.
    let deb = root.join(format!("dist/debs/gv_{v3}_all.deb"));
    let full = git(&["rev-parse", "HEAD"], "2026-12-05T09:00:00Z");
    assert_eq!(
        sh(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("X-Commit")).trim(),
        full.trim()
    );
    // Uncommitted changes to a tracked file.
    std::fs::write(root.join("data.txt"), "4").unwrap();
    assert_eq!(version(), format!("{v3}.dirty"));
    git(&["checkout", "--", "data.txt"], "2026-12-05T09:00:00Z");
    // A shallow clone lacks the count and the tags, yet its commits still sort by time.
    let shallow = tempfile::tempdir().unwrap();
    let url = format!("file://{}", root.display());
    sh(Command::new("git")
        .args(["clone", "-q", "--depth", "1", "--no-tags", &url])
        .arg(shallow.path().join("c")));
    let (h, shallow_root) = (h3, shallow.path().join("c"));
    let out = run(builder()
        .arg("--project")
        .arg(&shallow_root)
        .args(["--json", "plan"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = plan["recipes"][0]["version"].as_str().unwrap().to_string();
    assert_eq!(v, format!("0~git20261205090000.1.{h}"));
}

#[test]
fn unset_variables_are_errors_at_their_reference() {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[(
            "recipes/x.toml",
            "[package]\nname = \"xx\"\nversion = \"1.0+${BUILD_NO}\"\narchitecture = \"all\"\n\
             maintainer = \"A <a@example.com>\"\ndescription = \"x\\n\\nx x.\"\n\
             fields = { \"X-Rev\" = \"${GIT_COMMIT}\" }\n",
        )],
    );
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .arg("validate")
        .env_remove("BUILD_NO"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("x.toml:3:16"), "{err}");
    assert!(err.contains("`BUILD_NO` is not set"), "{err}");
    assert!(err.contains("`GIT_COMMIT` comes from git, but"), "{err}");
    assert!(err.contains("is not a git checkout"), "{err}");
    // From the environment it is fine.
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .arg("validate")
        .env("BUILD_NO", "42")
        .env("GIT_COMMIT", "abc"));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// changelog.Debian.gz from git tags and from a debian/changelog file, read back by the real
/// dpkg-parsechangelog.
#[test]
fn changelogs_from_git_and_from_a_file_parse_with_dpkg() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let recipe = |changelog: &str| {
        format!(
            "[package]\nname = \"cl\"\nversion = \"${{GIT_VERSION}}\"\nrevision = \"1\"\narchitecture = \"all\"\n\
             maintainer = \"A B <a@example.com>\"\ndescription = \"changelogs\\n\\nA test.\"\n\
             changelog = \"{changelog}\"\n\n[[files]]\nfrom = \"data.txt\"\nto = \"/usr/share/cl/data.txt\"\n"
        )
    };
    write_files(
        root,
        &[
            ("recipes/cl.toml", &recipe("git")),
            ("data.txt", "0\n"),
            (".gitignore", "dist/\n"),
        ],
    );
    let git = |args: &[&str]| {
        sh(Command::new("git")
            .current_dir(root)
            .args([
                "-c",
                "user.name=Dev One",
                "-c",
                "user.email=dev@example.com",
            ])
            .args(args)
            .env("GIT_COMMITTER_DATE", "2026-12-04T10:00:00Z")
            .env("GIT_AUTHOR_DATE", "2026-12-04T10:00:00Z"))
    };
    git(&["init", "-q"]);
    for (i, msg) in ["Start", "Add the API", "Fix a crash"].iter().enumerate() {
        std::fs::write(root.join("data.txt"), i.to_string()).unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", msg]);
        if i == 0 {
            git(&["tag", "v1.0.0"]);
        }
    }
    git(&["tag", "v1.1.0"]);
    std::fs::write(root.join("data.txt"), "3").unwrap();
    git(&["commit", "-q", "-am", "Unreleased work"]);
    let changelog_of = |root: &Path| -> (String, String) {
        let out = run(builder()
            .arg("--project")
            .arg(root)
            .args(["package", "--no-image"]));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let deb = std::fs::read_dir(root.join("dist/debs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "deb"))
            .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
            .unwrap();
        let x = tempfile::tempdir().unwrap();
        sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(x.path()));
        let gz = x.path().join("usr/share/doc/cl/changelog.Debian.gz");
        let plain = x.path().join("changelog");
        let data = sh(Command::new("gzip").arg("-dc").arg(&gz));
        std::fs::write(&plain, &data).unwrap();
        let parsed = sh(Command::new("dpkg-parsechangelog")
            .arg("-l")
            .arg(&plain)
            .args(["--format", "rfc822", "--all"]));
        let versions = parsed
            .lines()
            .filter_map(|l| l.strip_prefix("Version: "))
            .map(|v| format!("{v}\n"))
            .collect();
        (versions, data)
    };
    let (versions, log) = changelog_of(root);
    // Each release lists the commits since the one before; the top entry the unreleased ones.
    let at = |s: &str| log.find(s).unwrap_or_else(|| panic!("{s} not in\n{log}"));
    assert!(at("  * Unreleased work") < at("(1.1.0-1)"), "{log}");
    assert!(at("(1.1.0-1)") < at("  * Fix a crash") && at("  * Add the API") < at("(1.0.0-1)"));
    assert!(at("(1.0.0-1)") < at("  * Start"), "{log}");
    assert!(
        log.contains(" -- Dev One <dev@example.com>  Fri, 04 Dec 2026 10:00:00 +0000"),
        "{log}"
    );
    let versions: Vec<&str> = versions.lines().collect();
    assert_eq!(versions.len(), 3, "{versions:?}");
    assert!(
        versions[0].starts_with("1.1.0+git20261204100000.1."),
        "{versions:?}"
    );
    assert_eq!(&versions[1..], ["1.1.0-1", "1.0.0-1"]);

    // A debian/changelog file whose newest entry is not this version gets one on top.
    write_files(
        root,
        &[
            ("recipes/cl.toml", &recipe("debian/changelog")),
            (
                "debian/changelog",
                "cl (1.1.0-1) unstable; urgency=medium\n\n  * Release.\n\n -- A B <a@example.com>  Thu, 04 Dec 2026 10:00:00 +0000\n",
            ),
        ],
    );
    let (versions, _) = changelog_of(root);
    let versions: Vec<&str> = versions.lines().collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(versions[1], "1.1.0-1");

    // A broken one is refused at validation, naming its line.
    write_files(
        root,
        &[(
            "debian/changelog",
            "cl (1.1.0-1) unstable; urgency=medium\n\n  * Release.\n",
        )],
    );
    let out = run(builder().arg("--project").arg(root).arg("validate"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("debian/changelog:1: the entry has no trailer"),
        "{err}"
    );
}

/// Each .deb gets a `.changes` that upload tools take: python-debian reads it and its
/// checksums match the .deb, and reprepro includes it into a repository.
#[test]
#[cfg_attr(
    not(feature = "engine-tests"),
    ignore = "engine tier: reprepro and python3-debian from .ci/setup"
)]
fn changes_files_are_read_by_python_debian_and_included_by_reprepro() {
    let dir = fixture("xz");
    let deb = package(dir.path(), Some("1700000000"));
    let changes = deb.with_extension("changes");
    let check = r#"
import hashlib, sys
from debian.deb822 import Changes
path, deb = sys.argv[1], sys.argv[2]
c = Changes(open(path))
data = open(deb, "rb").read()
assert c["Format"] == "1.8" and c["Binary"] == "demo" and c["Version"] == "2.1.0-3", c
assert c["Date"] == "Tue, 14 Nov 2023 22:13:20 +0000", c["Date"]
(f,) = c["Files"]
assert f["md5sum"] == hashlib.md5(data).hexdigest() and int(f["size"]) == len(data), f
assert f["section"] == "net" and f["priority"] == "optional" and f["name"] == deb.split("/")[-1], f
(s,) = c["Checksums-Sha256"]
assert s["sha256"] == hashlib.sha256(data).hexdigest(), s
(s1,) = c["Checksums-Sha1"]
assert s1["sha1"] == hashlib.sha1(data).hexdigest(), s1
assert "demo (2.1.0-3) unstable; urgency=medium" in c["Changes"], c["Changes"]
print("ok")
"#;
    let out = sh(Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(check)
        .arg(&changes)
        .arg(&deb));
    assert_eq!(out.trim(), "ok");
    let repo = tempfile::tempdir().unwrap();
    write_files(
        repo.path(),
        &[(
            "conf/distributions",
            "Codename: bookworm\nSuite: stable\nAlsoAcceptFor: unstable\nArchitectures: amd64\nComponents: main\n",
        )],
    );
    sh(Command::new("reprepro")
        .arg("-b")
        .arg(repo.path())
        .args(["include", "bookworm"])
        .arg(&changes));
    let list = sh(Command::new("reprepro")
        .arg("-b")
        .arg(repo.path())
        .args(["list", "bookworm"]));
    assert_eq!(list.trim(), "bookworm|main|amd64: demo 2.1.0-3");
}

/// The same package built by debhelper (dpkg-buildpackage, dh compat 13) and by builder:
/// lintian says the same of both, Installed-Size is equal (dpkg-gencontrol counts DEBIAN/),
/// the maintainer scripts are equal but for the marker line, and the files have the same
/// modes, owners and sizes (the generated copyright aside).
#[test]
#[cfg_attr(
    not(feature = "engine-tests"),
    ignore = "engine tier: lintian and debhelper from .ci/setup"
)]
fn builder_and_debhelper_make_the_same_package_as_lintian_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let changelog = "demo (1.0-1) unstable; urgency=medium\n\n  * Initial release.\n\n -- Release Engineering <release@example.com>  Fri, 04 Dec 2026 10:00:00 +0000\n";
    let unit = "[Unit]\nDescription=Demo\n\n[Service]\nExecStart=/usr/bin/demo\n\n[Install]\nWantedBy=multi-user.target\n";
    write_files(
        root,
        &[
            (
                "dh/debian/control",
                "Source: demo\nSection: net\nPriority: optional\nMaintainer: Release Engineering <release@example.com>\n\
                 Build-Depends: debhelper-compat (= 13)\nStandards-Version: 4.6.2\nHomepage: https://example.com/demo\n\
                 Rules-Requires-Root: no\n\nPackage: demo\nArchitecture: all\nDepends: ${misc:Depends}\n\
                 Description: Demo service for lintian comparisons\n It ships a program, a config file and a systemd unit.\n",
            ),
            ("dh/debian/changelog", changelog),
            ("dh/debian/rules", "#!/usr/bin/make -f\n%:\n\tdh $@\n"),
            ("dh/debian/source/format", "3.0 (native)\n"),
            (
                "dh/debian/copyright",
                "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: demo\n\n\
                 Files: *\nCopyright: 2026 Example\nLicense: MIT\n",
            ),
            ("dh/debian/demo.service", unit),
            ("dh/debian/install", "src/demo usr/bin\nsrc/demo.conf etc/demo\n"),
            ("dh/src/demo", "#!/bin/sh\necho demo\n"),
            ("dh/src/demo.conf", "listen = 8080\n"),
            (
                "b/recipes/demo.toml",
                "[package]\nname = \"demo\"\nversion = \"1.0\"\nrevision = \"1\"\narchitecture = \"all\"\n\
                 maintainer = \"Release Engineering <release@example.com>\"\n\
                 description = \"Demo service for lintian comparisons\\n\\nIt ships a program, a config file and a systemd unit.\"\n\
                 section = \"net\"\nhomepage = \"https://example.com/demo\"\nlicense = \"MIT\"\nchangelog = \"debian/changelog\"\n\n\
                 [[files]]\nfrom = \"app/demo\"\nto = \"/usr/bin/demo\"\n\n\
                 [[files]]\nfrom = \"app/demo.conf\"\nto = \"/etc/demo/demo.conf\"\n\n\
                 [[systemd]]\nunit = \"app/demo.service\"\n",
            ),
            ("b/debian/changelog", changelog),
            ("b/app/demo", "#!/bin/sh\necho demo\n"),
            ("b/app/demo.conf", "listen = 8080\n"),
            ("b/app/demo.service", unit),
        ],
    );
    set_mode(&root.join("dh/debian/rules"), 0o755);
    set_mode(&root.join("dh/src/demo"), 0o755);
    set_mode(&root.join("b/app/demo"), 0o755);
    sh(Command::new("dpkg-buildpackage")
        .args(["-b", "-us", "-uc", "-d"])
        .current_dir(root.join("dh")));
    let theirs = root.join("demo_1.0-1_all.deb");
    let out = run(builder()
        .arg("--project")
        .arg(root.join("b"))
        .args(["package", "--no-image"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ours = root.join("b/dist/debs/demo_1.0-1_all.deb");

    let tags = |deb: &Path| -> Vec<String> {
        let out = Command::new("lintian")
            .args(["--no-cfg", "-I", "--tag-display-limit", "0"])
            .arg(deb)
            .output()
            .unwrap();
        let mut t: Vec<String> = text(&out.stdout)
            .lines()
            .filter(|l| l.contains(": demo: "))
            .map(str::to_string)
            .collect();
        t.sort();
        t
    };
    assert_eq!(tags(&ours), tags(&theirs));
    let field = |deb: &Path, f: &str| sh(Command::new("dpkg-deb").arg("-f").arg(deb).arg(f));
    assert_eq!(
        field(&ours, "Installed-Size"),
        field(&theirs, "Installed-Size")
    );
    let control = |deb: &Path| {
        let d = tempfile::tempdir().unwrap();
        sh(Command::new("dpkg-deb").arg("-e").arg(deb).arg(d.path()));
        d
    };
    let (c1, c2) = (control(&ours), control(&theirs));
    for script in ["postinst", "prerm", "postrm", "conffiles"] {
        let read = |d: &Path| {
            std::fs::read_to_string(d.join(script)).unwrap().replace(
                "Automatically added by builder (as dh_installsystemd/13.11.4)",
                "Automatically added by dh_installsystemd/13.11.4",
            )
        };
        assert_eq!(read(c1.path()), read(c2.path()), "{script}");
    }
    let listing = |deb: &Path| -> Vec<String> {
        sh(Command::new("dpkg-deb").arg("--contents").arg(deb))
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let size = if f[5].ends_with("/copyright") {
                    "-"
                } else {
                    f[2]
                };
                format!("{} {} {size} {}", f[0], f[1], f[5])
            })
            .collect()
    };
    assert_eq!(listing(&ours), listing(&theirs));
}
