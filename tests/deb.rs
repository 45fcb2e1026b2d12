//! The .deb writer and reader checked with the real tools: dpkg-deb, dpkg (into a throwaway
//! root), md5sum, lintian, and `builder inspect`. Packages are built through the library;
//! the recipe-driven tests at the end check how `builder package` collects `[[files]]`
//! (the rest of the package stage is tested in tests/package.rs).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use builder::archive::{FileSource, Tree};
use builder::deb::{read_data_tree, read_deb, write_deb, Compression, DebSpec, Script};

const ALL: [Compression; 3] = [Compression::Gzip, Compression::Xz, Compression::Zstd];
const MTIME: u64 = 1_700_000_000;

fn bytes(s: &str) -> FileSource {
    FileSource::Bytes(Arc::from(s.as_bytes()))
}

fn long_dir() -> String {
    format!("usr/share/hello/{}", "very-long-directory-name-".repeat(5))
}

/// A package like builder makes for a service: a program, a conffile, a symlink, a data
/// directory, docs, a name longer than tar's 100-byte field and maintainer scripts that
/// leave traces (they run outside a chroot, so they write below `$DPKG_ROOT`).
fn spec(version: &str, conf: &str, compression: Compression) -> DebSpec {
    let mut data = Tree::new();
    data.add_file("usr/bin/hello", 0o755, bytes("#!/bin/sh\necho hello\n"))
        .unwrap();
    data.add_symlink("usr/bin/hi", "hello").unwrap();
    data.add_file("etc/hello/hello.conf", 0o644, bytes(conf))
        .unwrap();
    data.add_dir("var/lib/hello", 0o750).unwrap();
    data.add_file(
        "usr/share/doc/hello/copyright",
        0o644,
        bytes("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nFiles: *\nCopyright: 2024 Example\nLicense: MIT\n"),
    )
    .unwrap();
    data.add_file(&format!("{}/data.txt", long_dir()), 0o644, bytes("long\n"))
        .unwrap();
    let script = |name: &str| {
        format!(
            "#!/bin/sh\nset -e\necho \"{name} $*\" >> \"$DPKG_ROOT/var/lib/hello-trace\"\nexit 0\n"
        )
        .into_bytes()
    };
    DebSpec {
        control: vec![
            ("Package".into(), "hello".into()),
            ("Version".into(), version.into()),
            ("Architecture".into(), "amd64".into()),
            ("Maintainer".into(), "Ops Team <ops@example.com>".into()),
            ("Section".into(), "misc".into()),
            ("Priority".into(), "optional".into()),
            (
                "Description".into(),
                "greets the world\n A small example service used to test the .deb writer.\n .\n It has a conffile and maintainer scripts.".into(),
            ),
        ],
        data,
        conffiles: vec!["/etc/hello/hello.conf".into()],
        scripts: vec![
            (Script::Postinst, script("postinst")),
            (Script::Prerm, script("prerm")),
            (Script::Postrm, script("postrm")),
        ],
        compression,
        mtime: MTIME,
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).unwrap()
}

fn write(dir: &Path, name: &str, spec: &DebSpec) -> PathBuf {
    let out = dir.join(name);
    write_deb(spec, &out).unwrap();
    out
}

#[test]
fn dpkg_deb_reads_every_compression() {
    let dir = tempfile::tempdir().unwrap();
    for c in ALL {
        let deb = write(
            dir.path(),
            &format!("hello{}.deb", c.extension()),
            &spec("1.0-1", "v1\n", c),
        );
        let info = stdout(Command::new("dpkg-deb").arg("--info").arg(&deb));
        assert!(info.contains(" Package: hello\n"), "{info}");
        assert!(info.contains(" Installed-Size: "), "{info}");
        assert!(
            info.contains(&format!("control.tar{}", c.extension()))
                || info.contains("control archive="),
            "{info}"
        );
        let conffiles = stdout(
            Command::new("dpkg-deb")
                .arg("--info")
                .arg(&deb)
                .arg("conffiles"),
        );
        assert_eq!(conffiles, "/etc/hello/hello.conf\n");

        let contents = stdout(Command::new("dpkg-deb").arg("--contents").arg(&deb));
        let names: Vec<&str> = contents
            .lines()
            .map(|l| l.split_whitespace().nth(5).unwrap())
            .collect();
        assert_eq!(names[0], "./", "{contents}");
        for want in [
            "./usr/",
            "./usr/bin/",
            "./usr/bin/hello",
            "./etc/hello/hello.conf",
            "./var/lib/hello/",
        ] {
            assert!(names.contains(&want), "{want} missing:\n{contents}");
        }
        assert!(
            names.contains(&format!("./{}/data.txt", long_dir()).as_str()),
            "{contents}"
        );
        assert!(
            contents.lines().all(|l| l.contains(" root/root ")),
            "{contents}"
        );
        assert!(
            contents.contains("2023-11-14 22:13"),
            "mtime is SOURCE_DATE_EPOCH:\n{contents}"
        );
        assert!(contents.contains("./usr/bin/hi -> hello"), "{contents}");
        assert!(contents.contains("drwxr-x--- root/root"), "{contents}");

        // Extract and check bytes, modes and the md5sums file with md5sum -c.
        let x = dir.path().join(format!("x{}", c.extension()));
        run(Command::new("dpkg-deb").arg("--extract").arg(&deb).arg(&x));
        run(Command::new("dpkg-deb")
            .arg("--control")
            .arg(&deb)
            .arg(x.join("DEBIAN")));
        assert_eq!(
            std::fs::read_to_string(x.join("etc/hello/hello.conf")).unwrap(),
            "v1\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::symlink_metadata(x.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("usr/bin/hello"), 0o755);
        assert_eq!(mode("DEBIAN/postinst"), 0o755);
        assert_eq!(mode("DEBIAN/control"), 0o644);
        let md5 = std::fs::read_to_string(x.join("DEBIAN/md5sums")).unwrap();
        // Every regular file but the conffile, which dh_md5sums leaves out too.
        assert_eq!(md5.lines().count(), 3, "{md5}");
        assert!(!md5.contains("etc/hello/hello.conf"), "{md5}");
        assert!(
            md5.lines()
                .all(|l| !l.contains("  ./") && !l.contains("  /")),
            "{md5}"
        );
        run(Command::new("md5sum")
            .arg("--check")
            .arg("--strict")
            .arg("DEBIAN/md5sums")
            .current_dir(&x));
    }
}

fn dpkg(root: &Path) -> Command {
    let mut cmd = Command::new("dpkg");
    cmd.arg(format!("--root={}", root.display()))
        .arg("--force-script-chrootless")
        .arg("--force-not-root")
        .arg("--force-unsafe-io")
        .env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// A throwaway dpkg root: the admin directory dpkg expects, nothing else. Maintainer scripts
/// run on the host (`--force-script-chrootless`) with `DPKG_ROOT` pointing here.
fn dpkg_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    let admin = root.join("var/lib/dpkg");
    for d in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(d)).unwrap();
    }
    std::fs::write(admin.join("status"), "").unwrap();
    std::fs::write(admin.join("available"), "").unwrap();
    root
}

#[test]
fn dpkg_installs_upgrades_keeps_edited_conffiles_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let root = dpkg_root(dir.path());
    let conf = root.join("etc/hello/hello.conf");
    let trace = root.join("var/lib/hello-trace");
    let v1 = write(
        dir.path(),
        "hello_1.0-1_amd64.deb",
        &spec("1.0-1", "v1\n", Compression::Xz),
    );
    let v2 = write(
        dir.path(),
        "hello_2.0-1_amd64.deb",
        &spec("2.0-1", "v2\n", Compression::Zstd),
    );
    let v3 = write(
        dir.path(),
        "hello_3.0-1_amd64.deb",
        &spec("3.0-1", "v3\n", Compression::Gzip),
    );

    run(dpkg(&root).arg("-i").arg(&v1));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "v1\n");
    assert!(root.join("usr/bin/hello").exists());
    assert_eq!(
        std::fs::read_link(root.join("usr/bin/hi")).unwrap(),
        Path::new("hello")
    );
    assert!(root.join(format!("{}/data.txt", long_dir())).exists());
    assert_eq!(
        std::fs::read_to_string(&trace).unwrap(),
        "postinst configure \n"
    );
    let status = stdout(dpkg(&root).args(["-s", "hello"]));
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(
        status.contains(" /etc/hello/hello.conf "),
        "conffile registered:\n{status}"
    );
    // Every installed file matches md5sums.
    let verify = stdout(dpkg(&root).args(["--verify", "hello"]));
    assert_eq!(verify, "", "dpkg --verify after install");

    // An unmodified conffile follows the new version.
    run(dpkg(&root).arg("-i").arg(&v2));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "v2\n");

    // A locally edited conffile survives the upgrade with --force-confold.
    std::fs::write(&conf, "local edit\n").unwrap();
    run(dpkg(&root).arg("--force-confold").arg("-i").arg(&v3));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "local edit\n");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hello/hello.conf.dpkg-dist")).unwrap(),
        "v3\n"
    );
    let verify = stdout(dpkg(&root).args(["--verify", "hello"]));
    assert_eq!(
        verify.trim(),
        "??5?????? c /etc/hello/hello.conf",
        "only the edited conffile differs"
    );

    // Remove keeps the conffile, purge deletes it.
    run(dpkg(&root).args(["--remove", "hello"]));
    assert!(!root.join("usr/bin/hello").exists());
    assert!(conf.exists(), "remove keeps conffiles");
    run(dpkg(&root).args(["--purge", "hello"]));
    assert!(!conf.exists(), "purge deletes conffiles");
    let t = std::fs::read_to_string(&trace).unwrap();
    assert!(t.contains("prerm upgrade 2.0-1"), "{t}");
    assert!(t.contains("postrm remove"), "{t}");
    assert!(t.lines().last().unwrap().starts_with("postrm purge"), "{t}");
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn lintian_finds_no_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec("1.0-1", "v1\n", Compression::Xz);
    let changelog = "hello (1.0-1) unstable; urgency=medium\n\n  * Initial release.\n\n \
                     -- Ops Team <ops@example.com>  Tue, 14 Nov 2023 22:13:20 +0000\n";
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, changelog.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    s.data
        .add_file(
            "usr/share/doc/hello/changelog.Debian.gz",
            0o644,
            FileSource::Bytes(Arc::from(gz)),
        )
        .unwrap();
    let deb = write(dir.path(), "hello_1.0-1_amd64.deb", &s);
    let out = Command::new("lintian")
        .args(["--no-cfg", "--allow-root", "--display-level", ">=warning"])
        .arg(&deb)
        .output()
        .expect("lintian is installed (apt-get install lintian)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(
        errors.is_empty(),
        "lintian errors:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Warnings accepted, because they are about the fixture's content, not the format:
    // - no-manual-page: the fixture's programs have no man pages;
    // - non-standard-dir-perm: /var/lib/hello is 0750 on purpose, to check modes are kept;
    // - initial-upload-closes-no-bugs: the fixture changelog closes no Debian bug (not in Debian).
    let accepted = [
        "no-manual-page",
        "non-standard-dir-perm",
        "initial-upload-closes-no-bugs",
    ];
    for line in text.lines().filter(|l| l.starts_with("W:")) {
        assert!(
            accepted.iter().any(|a| line.contains(a)),
            "unexpected lintian warning: {line}\n{text}"
        );
    }
}

#[test]
fn same_spec_twice_gives_identical_bytes() {
    // Files come from disk in two different directories with different on-disk mtimes.
    let make = |sub: &str| {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join(sub);
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("hello"), "#!/bin/sh\necho hello\n").unwrap();
        let mut s = spec("1.0-1", "v1\n", Compression::Xz);
        s.data.remove_prefix("usr/bin/hello");
        s.data
            .add_file("usr/bin/hello", 0o755, FileSource::Path(src.join("hello")))
            .unwrap();
        (d, s)
    };
    let (d1, s1) = make("a");
    let a = write_deb(&s1, &d1.path().join("out/hello.deb")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (d2, s2) = make("b/c");
    let b = write_deb(&s2, &d2.path().join("hello.deb")).unwrap();
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(
        std::fs::read(&a.path).unwrap(),
        std::fs::read(&b.path).unwrap()
    );
    // And the hash is the file's.
    let sum = stdout(Command::new("sha256sum").arg(&a.path));
    assert!(sum.starts_with(&a.sha256.hex()));
}

#[test]
fn read_deb_round_trips_what_write_deb_writes() {
    let dir = tempfile::tempdir().unwrap();
    for c in ALL {
        let s = spec("1.0-1", "v1\n", c);
        let deb = write(dir.path(), &format!("h{}.deb", c.extension()), &s);
        let got = read_deb(&deb).unwrap();
        let control = stdout(Command::new("dpkg-deb").arg("--field").arg(&deb));
        assert_eq!(got.control_text, control);
        assert_eq!(got.conffiles, s.conffiles);
        assert_eq!(got.scripts, ["postinst", "postrm", "prerm"]);
        assert_eq!(got.data_compression, c);
        let tree = read_data_tree(&deb).unwrap();
        assert_eq!(tree.len(), s.data.len());
        for (path, node) in s.data.iter() {
            assert_eq!(tree.get(path).unwrap().mode, node.mode, "{path}");
        }
        // The same entries as dpkg-deb lists.
        let listing = stdout(Command::new("dpkg-deb").arg("-c").arg(&deb));
        assert_eq!(got.files.len(), listing.lines().count());
    }
}

#[test]
fn read_deb_reads_what_dpkg_deb_builds() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/bin")).unwrap();
    std::fs::create_dir_all(pkg.join("etc")).unwrap();
    std::fs::write(pkg.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
    std::fs::write(pkg.join("etc/tool.conf"), "x=1\n").unwrap();
    std::os::unix::fs::symlink("tool", pkg.join("usr/bin/t")).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: tool\nVersion: 0.1\nArchitecture: all\nMaintainer: A <a@example.com>\nDescription: a tool\n long text\n",
    )
    .unwrap();
    std::fs::write(pkg.join("DEBIAN/conffiles"), "/etc/tool.conf\n").unwrap();
    std::fs::write(pkg.join("DEBIAN/postinst"), "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in ["DEBIAN/postinst", "usr/bin/tool"] {
        std::fs::set_permissions(pkg.join(p), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for (flag, c) in [
        ("gzip", Compression::Gzip),
        ("xz", Compression::Xz),
        ("zstd", Compression::Zstd),
        ("none", Compression::None),
    ] {
        let deb = dir.path().join(format!("tool-{flag}.deb"));
        run(Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Z", flag, "--build"])
            .arg(&pkg)
            .arg(&deb));
        let got = read_deb(&deb).unwrap();
        assert_eq!(got.data_compression, c, "{flag}");
        assert_eq!(got.fields[0], ("Package".to_string(), "tool".to_string()));
        assert_eq!(got.fields.last().unwrap().1, "a tool\n long text");
        assert_eq!(got.conffiles, ["/etc/tool.conf"]);
        assert_eq!(got.scripts, ["postinst"]);
        let listing = stdout(Command::new("dpkg-deb").arg("-c").arg(&deb));
        assert_eq!(got.files.len(), listing.lines().count(), "{flag}");
        assert!(got
            .files
            .iter()
            .any(|f| f.path == "/usr/bin/t" && f.link.as_deref() == Some("tool")));
        let tree = read_data_tree(&deb).unwrap();
        assert!(tree.get("etc/tool.conf").is_some());
    }
}

use common::builder;

#[test]
fn inspect_prints_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let deb = write(
        dir.path(),
        "hello.deb",
        &spec("1.0-1", "v1\n", Compression::Xz),
    );
    let text = stdout(builder().arg("inspect").arg(&deb));
    for want in [
        "Package: hello",
        "Installed-Size:",
        "data.tar.xz",
        "/etc/hello/hello.conf",
        "scripts: postinst, postrm, prerm",
        "drwxr-xr-x          0 ./usr/",
        "-rwxr-xr-x         21 ./usr/bin/hello",
        "lrwxrwxrwx          0 ./usr/bin/hi -> hello",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    let json = stdout(builder().args(["--json", "inspect"]).arg(&deb));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["fields"][0], serde_json::json!(["Package", "hello"]));
    assert_eq!(v["data_compression"], "xz");
    assert_eq!(v["conffiles"][0], "/etc/hello/hello.conf");
    assert!(v["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["path"] == "/usr/bin/hello" && f["mode"] == 0o755));
}

#[test]
fn inspect_refuses_bad_files_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "hello.deb",
        &spec("1.0-1", "v1\n", Compression::Gzip),
    );
    let bytes = std::fs::read(&good).unwrap();
    let cases = [
        ("text.deb", b"just text".to_vec(), "not a Debian package"),
        ("cut.deb", bytes[..bytes.len() / 2].to_vec(), "truncated"),
        ("empty.deb", Vec::new(), "not a Debian package"),
    ];
    for (name, content, needle) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        let out = builder().arg("inspect").arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(name) && err.contains(needle), "{name}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = builder()
        .arg("inspect")
        .arg(dir.path().join("missing.deb"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.deb"));
}

// ---- `builder package`: what `[[files]]` entries collect -------------------------------

const RECIPE_HEAD: &str = r#"
[package]
name = "demo"
version = "1.0"
architecture = "all"
maintainer = "Ops <ops@example.com>"
description = """
Demo for the file collection tests

It ships whatever the entries below collect.
"""
license = "MIT"
"#;

/// A project with `recipes/demo.toml` (the header plus `entries`) and `files`.
fn project(entries: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let recipe = format!("{RECIPE_HEAD}{entries}");
    common::write_files(dir.path(), &[("recipes/demo.toml", recipe.as_str())]);
    common::write_files(dir.path(), files);
    dir
}

/// Runs `builder package` on `dir` (without SOURCE_DATE_EPOCH unless `epoch`).
fn package_demo(dir: &Path, epoch: Option<&str>) -> Output {
    let mut cmd = common::builder();
    cmd.arg("--project").arg(dir).arg("package");
    if let Some(e) = epoch {
        cmd.env("SOURCE_DATE_EPOCH", e);
    }
    common::run(&mut cmd)
}

fn demo_deb(dir: &Path) -> PathBuf {
    dir.join("dist/debs/demo_1.0_all.deb")
}

/// Packages `dir`, which must fail as a recipe error; returns stderr.
fn refused(dir: &Path) -> String {
    let out = package_demo(dir, Some("1700000000"));
    let err = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("demo.toml"), "names the recipe: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!demo_deb(dir).exists(), "{err}");
    err
}

fn contents(deb: &Path) -> String {
    stdout(
        Command::new("dpkg-deb")
            .env("TZ", "UTC")
            .arg("--contents")
            .arg(deb),
    )
}

#[test]
fn project_wide_entries_leave_out_dist_and_git() {
    for (entry, root) in [
        ("from = \".\"\nto = \"/usr/share/demo/\"", "usr/share/demo/"),
        (
            "from = \"recipes/..\"\nto = \"/usr/share/demo/\"",
            "usr/share/demo/",
        ),
        ("from = \"*\"\nto = \"/usr/share/demo/\"", "usr/share/demo/"),
    ] {
        let dir = project(
            &format!("\n[[files]]\n{entry}\n"),
            &[
                ("app/run.sh", "echo hi\n"),
                (".git/config", "[core]\n"),
                ("vendor/lib/.git", "gitdir: ../../.git/modules/lib\n"),
                ("vendor/lib/lib.txt", "lib\n"),
            ],
        );
        // Without SOURCE_DATE_EPOCH and outside git, the time comes from the inputs, which
        // must not include the first run's dist/ either.
        let first = package_demo(dir.path(), None);
        assert!(first.status.success(), "{}", common::text(&first.stderr));
        let a = std::fs::read(demo_deb(dir.path())).unwrap();
        let second = package_demo(dir.path(), None);
        assert!(second.status.success(), "{}", common::text(&second.stderr));
        let b = std::fs::read(demo_deb(dir.path())).unwrap();
        assert!(a == b, "{entry}: a second run differs");
        let list = contents(&demo_deb(dir.path()));
        assert!(list.contains(&format!("./{root}app/run.sh")), "{list}");
        assert!(
            list.contains(&format!("./{root}vendor/lib/lib.txt")),
            "{list}"
        );
        assert!(!list.contains("dist"), "{entry}: {list}");
        assert!(!list.contains(".git"), "{entry}: {list}");
    }
}

#[test]
fn special_files_are_refused_naming_their_type() {
    let cases = [
        (
            "from = \"pipe\"\nto = \"/usr/share/demo/pipe\"",
            "pipe",
            "FIFO",
        ),
        (
            "from = \"tree/\"\nto = \"/usr/share/demo/\"",
            "tree/sock",
            "socket",
        ),
        (
            "from = \"g/*\"\nto = \"/usr/share/demo/\"",
            "g/pipe",
            "FIFO",
        ),
    ];
    for (entry, special, kind) in cases {
        let dir = project(
            &format!("\n[[files]]\n{entry}\n"),
            &[("tree/a.txt", "a\n"), ("g/a.txt", "a\n")],
        );
        let path = dir.path().join(special);
        if kind == "FIFO" {
            common::sh(Command::new("mkfifo").arg(&path));
        } else {
            std::os::unix::net::UnixListener::bind(&path).unwrap();
        }
        let err = refused(dir.path());
        assert!(
            err.contains(special) && err.contains(kind),
            "{entry}: {err}"
        );
        assert!(
            err.contains("only regular files, directories and symlinks"),
            "{err}"
        );
    }
}

#[test]
fn collected_names_follow_the_rules_for_to() {
    for (entry, bad, why) in [
        (
            "from = \"conf/\"\nto = \"/etc/demo/\"",
            "conf/trail ",
            "ends in whitespace",
        ),
        (
            "from = \"docs/*\"\nto = \"/usr/share/demo/\"",
            "docs/trail ",
            "ends in whitespace",
        ),
        (
            "from = \"conf/\"\nto = \"/etc/demo/\"",
            "conf/tab\there",
            "control character",
        ),
        (
            "from = \"docs/*\"\nto = \"/usr/share/demo/\"",
            "docs/tab\there",
            "control character",
        ),
    ] {
        let dir = project(
            &format!("\n[[files]]\n{entry}\n"),
            &[
                ("conf/ok.conf", "ok\n"),
                ("docs/ok.md", "ok\n"),
                (bad, "x\n"),
            ],
        );
        let err = refused(dir.path());
        assert!(
            err.contains(why) && err.contains("rename"),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn globs_refuse_names_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let dir = project(
        "\n[[files]]\nfrom = \"t/*\"\nto = \"/usr/share/demo/\"\n",
        &[("t/a.txt", "a\n")],
    );
    let bad = dir
        .path()
        .join("t")
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    std::fs::write(&bad, "x\n").unwrap();
    let err = refused(dir.path());
    assert!(
        err.contains("not valid UTF-8") && err.contains("caf"),
        "{err}"
    );
    // A name the pattern cannot match is no concern of the glob.
    let recipe =
        format!("{RECIPE_HEAD}\n[[files]]\nfrom = \"t/*.txt\"\nto = \"/usr/share/demo/\"\n");
    common::write_files(dir.path(), &[("recipes/demo.toml", recipe.as_str())]);
    let out = package_demo(dir.path(), Some("1700000000"));
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    // When such a name is the only match, validation says so instead of "matches no file".
    std::fs::remove_file(dir.path().join("t/a.txt")).unwrap();
    std::fs::remove_file(demo_deb(dir.path())).unwrap();
    let recipe = format!("{RECIPE_HEAD}\n[[files]]\nfrom = \"t/*\"\nto = \"/usr/share/demo/\"\n");
    common::write_files(dir.path(), &[("recipes/demo.toml", recipe.as_str())]);
    let err = refused(dir.path());
    assert!(
        err.contains("matches only `t/caf\u{fffd}`, whose name is not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn names_and_link_targets_dpkg_cannot_install_are_refused() {
    // dpkg unpacks to `<name>.dpkg-new`: 246 bytes is the longest name it can install.
    let ok = "n".repeat(246);
    let long = "n".repeat(247);
    let dir = project(
        "\n[[files]]\nfrom = \"tree/\"\nto = \"/usr/share/demo/\"\n",
        &[(format!("tree/{ok}").as_str(), "ok\n")],
    );
    let out = package_demo(dir.path(), Some("1700000000"));
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    std::fs::remove_file(demo_deb(dir.path())).unwrap();
    common::write_files(dir.path(), &[(format!("tree/{long}").as_str(), "long\n")]);
    let err = refused(dir.path());
    assert!(
        err.contains("247 bytes") && err.contains(".dpkg-new"),
        "{err}"
    );

    let target = format!("/{}", "t".repeat(4095));
    let dir = project(
        &format!("\n[[files]]\nsymlink = \"{target}\"\nto = \"/usr/bin/demo\"\n"),
        &[],
    );
    let err = refused(dir.path());
    assert!(err.contains("4096 bytes or longer"), "{err}");
}

#[test]
fn collisions_with_generated_files_are_recipe_errors() {
    let unit = "[Unit]\nDescription=Demo\n\n[Service]\nExecStart=/bin/true\n";
    let cases = [
        (
            "lintian-overrides = [\"no-manual-page\"]\n\n[[files]]\nfrom = \"overrides\"\nto = \"/usr/share/lintian/overrides/demo\"\n",
            "`lintian-overrides`",
        ),
        (
            "\n[[files]]\nfrom = \"overrides\"\nto = \"/usr/share/doc/demo\"\n",
            "installs `/usr/share/doc/demo` as a file, not a directory",
        ),
        (
            "\n[[files]]\nsymlink = \"/tmp\"\nto = \"/usr/share/doc\"\n",
            "installs `/usr/share/doc` as a symlink, not a directory",
        ),
        (
            "\n[[files]]\nfrom = \"demo.service\"\nto = \"/lib/systemd/system/\"\n\n[[systemd]]\nunit = \"demo.service\"\n",
            "[[systemd]] already installs the unit",
        ),
    ];
    for (entries, needle) in cases {
        let dir = project(
            entries,
            &[
                ("overrides", "demo: no-manual-page\n"),
                ("demo.service", unit),
            ],
        );
        let err = refused(dir.path());
        assert!(err.contains(needle), "{entries}: {err}");
        assert!(err.contains("[[files]] entry at line"), "{err}");
    }
}

#[test]
fn fallback_time_follows_every_packaged_file() {
    let dir = project(
        "\n[[files]]\nfrom = \"docs/*.md\"\nto = \"/usr/share/doc/demo/\"\n\n[[files]]\nfrom = \"conf/\"\nto = \"/etc/demo/\"\n",
        &[
            ("docs/a.md", "a\n"),
            ("docs/b.md", "b\n"),
            ("conf/sub/x.conf", "x\n"),
        ],
    );
    let touch = |date: &str, paths: &[&str]| {
        for p in paths {
            common::sh(
                Command::new("touch")
                    .args(["-d", date])
                    .arg(dir.path().join(p)),
            );
        }
    };
    let all = [
        "recipes/demo.toml",
        "docs/a.md",
        "docs/b.md",
        "conf/sub/x.conf",
    ];
    let stamp = |want: &str| {
        let out = package_demo(dir.path(), None);
        assert!(out.status.success(), "{}", common::text(&out.stderr));
        let list = contents(&demo_deb(dir.path()));
        assert!(
            list.contains(&format!("{want} ./usr/share/doc/demo/a.md")),
            "want {want}:\n{list}"
        );
    };
    touch("2020-01-01 00:00:00 UTC", &all);
    stamp("2020-01-01 00:00");
    // A file matched by the glob, then one inside the tree.
    touch("2021-02-03 04:05:00 UTC", &["docs/b.md"]);
    stamp("2021-02-03 04:05");
    touch("2022-03-04 05:06:00 UTC", &["conf/sub/x.conf"]);
    stamp("2022-03-04 05:06");
}
