//! `builder validate` on good and bad recipes: every bad input gives a one-screen error with
//! file:line:col and exit code 2, never a panic. The messages are snapshotted (insta), with
//! the temp directory replaced by `[PROJECT]`.

mod common;

use std::path::Path;

use common::*;

const GOOD: &str = r#"
[package]
name = "app"
version = "1.2.3"
maintainer = "Ops <ops@example.com>"
description = "An app"

[[files]]
from = "services/app/app.env"
to = "/etc/app/app.env"
"#;

/// A project with base images, one service's files and no recipes yet.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[
            ("base-images/go.toml", "kind = \"debootstrap\"\n"),
            ("base-images/static.toml", "kind = \"static\"\n"),
            ("services/app/app.env", "PORT=8080\n"),
            ("services/app/main.go", "package main\n"),
            (
                "services/app/app.service",
                "[Service]\nExecStart=/usr/bin/app\n\n[Install]\nWantedBy=multi-user.target\n",
            ),
            ("recipes/.keep", ""),
            ("units/x'$(touch PWNED)'.service", "[Service]\n"),
            ("units/a b.service", "[Service]\n"),
            ("units/.service", "[Service]\n"),
            (
                "units/app@.service",
                "[Service]\nExecStart=/usr/bin/app %i\n",
            ),
            ("scripts/crlf", "#!/bin/sh\r\nset -e\r\n"),
            ("scripts/bom", "\u{feff}#!/bin/sh\nset -e\n"),
            ("scripts/noshebang", "set -e\n"),
            ("scripts/crlf-later", "#!/bin/sh\nset -e\r\necho hi\n"),
            ("services/app/tree/sub/g.conf", "g\n"),
            ("services/app/tree/f.conf", "f\n"),
        ],
    );
    // Latin-1 `é`: not UTF-8.
    std::fs::write(
        dir.path().join("scripts/latin1"),
        b"#!/bin/sh\necho caf\xe9\n",
    )
    .unwrap();
    dir
}

/// Validates `recipe` (written as recipes/app.toml) and returns (exit code, stderr).
fn validate(dir: &Path, recipe: &str) -> (i32, String) {
    std::fs::write(dir.join("recipes/app.toml"), recipe).unwrap();
    let out = run(builder().arg("--project").arg(dir).arg("validate"));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "backtrace: {stderr}");
    let stderr = stderr.replace(&dir.display().to_string(), "[PROJECT]");
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn good_recipe_validates() {
    let dir = project();
    let (code, err) = validate(dir.path(), GOOD);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn repository_recipes_validate() {
    let out = run(builder().arg("--project").arg(repo()).arg("validate"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("backend") && stdout.contains("frontend"),
        "{stdout}"
    );
}

/// Each case: (snapshot name, recipe text, text the message must contain).
const BAD: &[(&str, &str, &str)] = &[
    ("syntax", "[package\nname = \"app\"\n", "recipes/app.toml:1:"),
    (
        "unknown_keys",
        "[package]\nnmae = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\nsecton = \"net\"\n",
        "did you mean `name`?",
    ),
    ("unknown_table", "[pakage]\nname = \"app\"\n", "did you mean `package`?"),
    (
        "bad_name",
        "[package]\nname = \"App_1\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n",
        "not a valid Debian package name",
    ),
    (
        "bad_version",
        "[package]\nname = \"app\"\nversion = \"v1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n",
        "must start with a digit",
    ),
    (
        "version_type",
        "[package]\nname = \"app\"\nversion = 1.0\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n",
        "app.toml:3:11",
    ),
    (
        "bad_arch_relation_maintainer",
        "[package]\nname = \"app\"\nversion = \"1.0\"\narchitecture = \"x86_64\"\nmaintainer = \"ops@e.com\"\ndescription = \"x\"\ndepends = [\"libc6 (=> 2.31)\"]\n",
        "unknown relation `=>`",
    ),
    (
        "traversal",
        "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n[[files]]\nfrom = \"../../etc/passwd\"\nto = \"/etc/passwd\"\n",
        "escapes the project",
    ),
    (
        "absolute_outside",
        "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n[[files]]\nfrom = \"/etc/hostname\"\nto = \"/etc/hostname\"\n",
        "is outside the project",
    ),
    (
        "symlink_out",
        "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n[[files]]\nfrom = \"services/app/escape\"\nto = \"/etc/x\"\n",
        "symlink pointing outside the project",
    ),
    (
        "duplicate_destination",
        "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n[[files]]\nfrom = \"services/app/app.env\"\nto = \"/etc/app.env\"\n[[files]]\nfrom = \"services/app/main.go\"\nto = \"/etc/app.env\"\n",
        "two entries install to `/etc/app.env`",
    ),
    (
        "missing_file",
        "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n[[files]]\nfrom = \"services/app/nope.conf\"\nto = \"/etc/nope.conf\"\n",
        "does not exist",
    ),
    (
        "bad_destinations",
        "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n[[files]]\nfrom = \"services/app/app.env\"\nto = \"etc/app.env\"\nmode = \"999\"\n[[files]]\nfrom = \"services/app/main.go\"\nto = \"/usr//share/../x\"\n",
        "must be an absolute path",
    ),
    (
        "build_and_image",
        "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n[build]\nbuilder = \"gcc\"\nsource = \"services/app\"\ncommand = []\nnetwork = \"host\"\n[image]\nbase = \"statik\"\nentrypoint = [\"bin/app\"]\nports = [8080, 70000, 0]\nuser = \"root\"\n",
        "port 70000 is out of range",
    ),
    (
        "unit_names",
        "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n[[systemd]]\nunit = \"units/x'$(touch PWNED)'.service\"\n[[systemd]]\nunit = \"units/a b.service\"\n[[systemd]]\nunit = \"units/.service\"\n[[systemd]]\nunit = \"units/app@.service\"\nstart = true\n",
        "`x'$(touch PWNED)'.service` is not a valid systemd unit name",
    ),
    (
        "scripts",
        "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n[scripts]\npreinst = \"scripts/crlf\"\npostinst = \"scripts/bom\"\nprerm = \"scripts/latin1\"\npostrm = \"scripts/noshebang\"\n",
        "recipes/app.toml:8:12",
    ),
    (
        "description_control",
        "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"An app\\u0000 with a NUL\"\n[[files]]\nsymlink = \"/usr/bin/a\\u0000b\"\nto = \"/usr/bin/b\"\n",
        "the description contains the control character U+0000",
    ),
    (
        "leading_plus",
        "[package]\nname = \"app\"\nversion = \"+1:1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"Tab\\tin the synopsis\"\n[[files]]\nfrom = \"services/app/app.env\"\nto = \"/etc/app.env\"\nmode = \"+755\"\n",
        "the epoch `+1`",
    ),
    (
        "path_conflicts",
        "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n[[files]]\nfrom = \"services/app/app.env\"\nto = \"/etc/app\"\n[[files]]\nfrom = \"services/app/main.go\"\nto = \"/etc/app/main.go\"\n[[files]]\nfrom = \"services/app/tree\"\nto = \"/opt/t\"\n[[files]]\nfrom = \"services/app/app.env\"\nto = \"/opt/t/sub\"\n[[files]]\nsymlink = \"/x\"\nto = \"/usr/share/doc/app\"\n",
        "installs `/etc/app/main.go` inside `/etc/app`, but the [[files]] entry at line 6 installs `/etc/app` as a file, not a directory",
    ),
    (
        "kernel_paths_modes_conffiles",
        "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n[[files]]\nfrom = \"services/app/app.env\"\nto = \"/proc/sys/kernel/x\"\nmode = \"7777\"\n[[files]]\nsymlink = \"/x\"\nto = \"/dev/app\"\n[[files]]\nfrom = \"services/app/tree\"\nto = \"/etc/app/\"\nconffile = true\n[build]\nbuilder = \"go\"\nsource = \"services/app\"\ncommand = \"true\"\ncache = [\"/proc/cache\"]\n",
        "is under `/proc`, where the kernel mounts procfs",
    ),
    (
        "control_escapes",
        "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n[[files]]\nfrom = \"services/app/app.env\"\nto = \"\\u001b]0;owned\\u0007\\u001b[2J/etc/x\"\n[[files]]\nfrom = \"services/app/\\u009b31m\"\nto = \"/etc/\\u202eexe.txt\"\n",
        r"\u{1b}]0;owned\u{7}\u{1b}[2J/etc/x",
    ),
];

#[test]
fn bad_recipes_give_located_errors_and_exit_2() {
    let dir = project();
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("services/app/escape")).unwrap();
    let mut failures = Vec::new();
    for (name, recipe, expect) in BAD {
        let (code, err) = validate(dir.path(), recipe);
        if code != 2 || !err.contains(expect) || !err.contains("recipes/app.toml") {
            failures.push(format!(
                "case {name}: exit {code}, expected `{expect}` in:\n{err}"
            ));
        }
        assert!(
            err.lines().count() < 60,
            "case {name}: more than one screen:\n{err}"
        );
        insta::assert_snapshot!(*name, err);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn escapes_through_globs_and_root_uids_are_refused_from_the_project_directory() {
    let dir = project();
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("services/app/escape")).unwrap();
    let recipe = "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n\
        [[files]]\nfrom = \"services/app/esc*\"\nto = \"/etc/app/\"\n\
        [image]\nbase = \"static\"\nentrypoint = [\"/usr/bin/app\"]\nuser = \"00:0\"\n";
    std::fs::write(dir.path().join("recipes/app.toml"), recipe).unwrap();
    // Run from inside the project with the default `--project .`.
    let out = run(builder().arg("validate").current_dir(dir.path()));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("resolves outside the project"), "{err}");
    assert!(err.contains("images run as a non-root user"), "{err}");
}

#[test]
fn all_problems_in_all_recipes_are_reported() {
    let dir = project();
    write_files(
        dir.path(),
        &[(
            "recipes/other.toml",
            "[package]\nname = \"other\"\nversion = \"x\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n",
        )],
    );
    let bad_app = "[package]\nname = \"APP\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\nhomepage = \"ftp://x\"\n";
    let (code, err) = validate(dir.path(), bad_app);
    assert_eq!(code, 2);
    assert!(err.contains("recipes/app.toml:2:8"), "{err}");
    assert!(err.contains("recipes/app.toml:6:12"), "{err}");
    assert!(err.contains("recipes/other.toml:3:11"), "{err}");
    assert!(err.contains("3 problems found in 2 files"), "{err}");
}

#[test]
fn json_output_lists_errors() {
    let dir = project();
    std::fs::write(
        dir.path().join("recipes/app.toml"),
        "[package]\nname = \"x\"\n",
    )
    .unwrap();
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .args(["--json", "validate"]));
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(v["ok"], false);
    assert!(v["errors"][0]["line"].as_u64().unwrap() >= 1, "{v}");
}

#[test]
fn unknown_package_name_lists_known_ones() {
    let dir = project();
    std::fs::write(dir.path().join("recipes/app.toml"), GOOD).unwrap();
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .args(["package", "ap"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("no recipe for package `ap`") && err.contains("did you mean `app`?"),
        "{err}"
    );
}

/// `validate` with nothing to validate is the same usage error `package` gives.
/// `--recipes DIR` selects the directory for `validate` as for `plan` and `package` (it
/// used to be taken for a recipe file: "Is a directory"), and a directory given as an
/// argument means its recipes.
#[test]
fn validate_takes_a_recipes_directory_like_every_command() {
    let dir = project();
    std::fs::write(dir.path().join("recipes/app.toml"), GOOD).unwrap();
    let other = dir.path().join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::rename(dir.path().join("recipes/app.toml"), other.join("app.toml")).unwrap();
    for args in [
        vec![
            "--recipes".to_string(),
            other.display().to_string(),
            "validate".into(),
        ],
        vec!["validate".into(), other.display().to_string()],
    ] {
        let out = run(builder().arg("--project").arg(dir.path()).args(&args));
        assert!(
            out.status.success() && text(&out.stdout).contains("app.toml"),
            "{args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
fn validate_without_recipes_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("recipes")).unwrap();
    let out = run(builder().arg("--project").arg(dir.path()).arg("validate"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no recipes in"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn scripts_with_crlf_after_the_shebang_are_refused_by_validate_and_package() {
    let dir = project();
    let recipe = format!("{GOOD}[scripts]\npostinst = \"scripts/crlf-later\"\n");
    let (code, err) = validate(dir.path(), &recipe);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("recipes/app.toml:12:12"), "{err}");
    assert!(err.contains("line 2 ends in a carriage return"), "{err}");
    assert!(err.contains(r"sed -i 's/\r$//'"), "{err}");
    let out = run(builder().arg("--project").arg(dir.path()).arg("package"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("carriage return"));
}

#[test]
fn a_good_script_and_a_template_unit_validate() {
    let dir = project();
    write_files(
        dir.path(),
        &[("scripts/good", "#!/bin/sh\nset -e\n#DEBHELPER#\n")],
    );
    let recipe = format!(
        "{GOOD}[scripts]\npostinst = \"scripts/good\"\n[[systemd]]\nunit = \"units/app@.service\"\n[[systemd]]\nunit = \"services/app/app.service\"\n"
    );
    let (code, err) = validate(dir.path(), &recipe);
    assert_eq!(code, 0, "{err}");
}

/// Runs `builder package` and returns the control member `name` of the .deb (or "").
fn packaged_script(dir: &Path, name: &str) -> String {
    let out = run(builder()
        .arg("--project")
        .arg(dir)
        .arg("package")
        .env("SOURCE_DATE_EPOCH", "1700000000"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deb = dir.join("dist/debs/app_1.2.3_amd64.deb");
    let out = run(std::process::Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg(name));
    text(&out.stdout)
}

/// dh_installsystemd skips template units (`name@.service`): enabling or starting them
/// needs an instance. They are shipped, without snippets of their own.
#[test]
fn template_units_are_shipped_but_not_enabled_or_started() {
    let dir = project();
    let recipe = format!(
        "{GOOD}[[systemd]]\nunit = \"units/app@.service\"\n[[systemd]]\nunit = \"services/app/app.service\"\n"
    );
    std::fs::write(dir.path().join("recipes/app.toml"), recipe).unwrap();
    let postinst = packaged_script(dir.path(), "postinst");
    assert!(postinst.contains("enable 'app.service'"), "{postinst}");
    assert!(
        postinst.contains("deb-systemd-invoke $_dh_action 'app.service' >"),
        "{postinst}"
    );
    assert!(!postinst.contains("app@"), "{postinst}");
    let prerm = packaged_script(dir.path(), "prerm");
    assert!(prerm.contains("stop 'app.service'"), "{prerm}");
    assert!(!prerm.contains("app@"), "{prerm}");
    let postrm = packaged_script(dir.path(), "postrm");
    assert!(postrm.contains("daemon-reload"), "{postrm}");
    assert!(!postrm.contains("app@"), "{postrm}");

    // A package with only a template unit: no snippets at all, as from debhelper.
    let recipe = format!("{GOOD}[[systemd]]\nunit = \"units/app@.service\"\n");
    std::fs::write(dir.path().join("recipes/app.toml"), recipe).unwrap();
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        assert_eq!(packaged_script(dir.path(), script), "", "{script}");
    }
}

const HEAD: &str = "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n";

#[test]
fn an_image_on_a_builder_image_is_refused_at_its_base() {
    let dir = project();
    write_files(
        dir.path(),
        &[
            ("base-images/slim.toml", "kind = \"debootstrap\"\n"),
            (
                "recipes/tool.toml",
                "[package]\nname = \"tool\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n\
                 [build]\nbuilder = \"go\"\nsource = \"services/app\"\ncommand = \"true\"\n",
            ),
        ],
    );
    let recipe = format!("{HEAD}[image]\nbase = \"go\"\nentrypoint = [\"/usr/bin/app\"]\n");
    let (code, err) = validate(dir.path(), &recipe);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("recipes/app.toml:7:8"), "{err}");
    assert!(
        err.contains("`go` is a builder image (the [build] builder of `tool.toml`)")
            && err.contains("images must not contain build tools")
            && err.contains("use a runtime base such as `slim`, `static`"),
        "{err}"
    );
    // A base no recipe builds with is fine.
    let recipe = format!("{HEAD}[image]\nbase = \"slim\"\nentrypoint = [\"/usr/bin/app\"]\n");
    let (code, err) = validate(dir.path(), &recipe);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn build_sources_must_be_declared_outputs() {
    let dir = project();
    let build = "[build]\nbuilder = \"go\"\nsource = \"services/app\"\ncommand = \"true\"\noutputs = [\"o\", \"share/doc\"]\n";
    let entry =
        |from: &str| format!("{HEAD}[[files]]\nfrom = \"{from}\"\nto = \"/usr/bin/x\"\n{build}");
    let (code, err) = validate(dir.path(), &entry("build:p"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("recipes/app.toml:7:8"), "{err}");
    assert!(
        err.contains("`build:p` is not a build output: [build] outputs has `o`, `share/doc`")
            && err.contains("help: add `p` to [build] outputs"),
        "{err}"
    );
    for ok in [
        "build:o",
        "build:./o",
        "build:share/doc/README",
        "build:share",
        "build:.",
    ] {
        let (code, err) = validate(dir.path(), &entry(ok));
        assert_eq!(code, 0, "{ok}: {err}");
    }
}

#[test]
fn an_unknown_builder_is_reported_once() {
    let dir = project();
    let recipe = format!(
        "{HEAD}[[files]]\nfrom = \"build:o\"\nto = \"/usr/bin/o\"\n\
         [build]\nbuilder = \"nosuch\"\nsource = \"services/app\"\ncommand = \"true\"\noutputs = [\"o\"]\n"
    );
    let (code, err) = validate(dir.path(), &recipe);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no builder image `nosuch`"), "{err}");
    assert!(!err.contains("needs a `[build]` table"), "{err}");
    assert!(err.contains("1 problem"), "{err}");
}

#[test]
fn build_timeouts_are_durations() {
    let dir = project();
    let build = |t: &str| {
        format!("{HEAD}[build]\nbuilder = \"go\"\nsource = \"services/app\"\ncommand = \"true\"\ntimeout = \"{t}\"\n")
    };
    for bad in ["soon", "0s", "10d"] {
        let (code, err) = validate(dir.path(), &build(bad));
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(
            err.contains(&format!("invalid build timeout `{bad}`"))
                && err.contains("recipes/app.toml:10:11")
                && err.contains("timeout = \"30m\""),
            "{bad}: {err}"
        );
    }
    for good in ["30m", "2s", "1.5h", "90"] {
        let (code, err) = validate(dir.path(), &build(good));
        assert_eq!(code, 0, "{good}: {err}");
    }
}

/// What `package` would fail on (or dpkg would refuse to install) is refused by `validate`
/// at the field that causes it: every case validated as ok before.
#[test]
fn validate_refuses_what_package_or_dpkg_would_fail_on() {
    let dir = project();
    let entry =
        |to: &str| format!("{HEAD}[[files]]\nfrom = \"services/app/app.env\"\nto = \"{to}\"\n");
    let long_name = GOOD.replace(
        "name = \"app\"",
        &format!("name = \"{}\"", "a".repeat(10_000)),
    );
    let long_version = GOOD.replace("1.2.3", &format!("1.{}", "2".repeat(250)));
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("name", long_name, "app.toml:3:8", "the package name is 10000 bytes long: builder allows at most 128"),
        ("file name", long_version, "app.toml:4:11", "the .deb's file name `<name>_<version>_<arch>.deb` would be 266 bytes"),
        ("long component", entry(&format!("/opt/{}", "d".repeat(300))), "app.toml:8:6", "has a name of 300 bytes"),
        ("long path", entry(&format!("/opt/{}", vec!["d".repeat(200); 21].join("/"))), "app.toml:8:6", "dpkg installs paths of at most 4086 bytes"),
        ("proc", entry("/proc/x"), "app.toml:8:6", "is under `/proc`"),
        ("sys", entry("/sys"), "app.toml:8:6", "is under `/sys`"),
        ("dev", entry("/dev/app/"), "app.toml:8:6", "is under `/dev`"),
        ("mode 7777", format!("{}mode = \"7777\"\n", entry("/usr/bin/x")), "app.toml:9:8", "mode 7777 makes a setuid and setgid program writable by every user"),
        ("world-writable", format!("{}mode = \"0666\"\n", entry("/usr/bin/x")), "app.toml:9:8", "writable by every user"),
        ("conffile dir", format!("{HEAD}[[files]]\nfrom = \"services/app/tree\"\nto = \"/etc/t\"\nconffile = true\n"), "app.toml:7:8", "`conffile = true` marks one regular file, but `from` is a directory"),
        ("conffile glob", format!("{HEAD}[[files]]\nfrom = \"services/app/*.env\"\nto = \"/etc/t/\"\nconffile = true\n"), "app.toml:7:8", "but `from` is a glob"),
        ("file then dir", format!("{}[[files]]\nsymlink = \"/x\"\nto = \"/etc/app.env/x\"\n", entry("/etc/app.env")), "app.toml:11:6", "the [[files]] entry at line 9 installs `/etc/app.env/x` inside `/etc/app.env`, but the [[files]] entry at line 6 installs `/etc/app.env` as a file, not a directory"),
        ("dir then file", format!("{HEAD}[[files]]\nsymlink = \"/x\"\nto = \"/etc/a/b\"\n[[files]]\nfrom = \"services/app/app.env\"\nto = \"/etc/a\"\n"), "app.toml:11:6", "the [[files]] entry at line 9 installs `/etc/a` as a file, not a directory, but the [[files]] entry at line 6 puts `/etc/a/b` inside it"),
        ("tree vs file", format!("{HEAD}[[files]]\nfrom = \"services/app/tree\"\nto = \"/opt/t\"\n[[files]]\nfrom = \"services/app/app.env\"\nto = \"/opt/t/sub\"\n"), "app.toml:11:6", "the [[files]] entry at line 9 installs `/opt/t/sub` as a file, not a directory, but the [[files]] entry at line 6 puts a directory there"),
        ("tree vs tree file", format!("{HEAD}[[files]]\nfrom = \"services/app/tree\"\nto = \"/opt/t\"\n[[files]]\nfrom = \"services/app/tree/sub\"\nto = \"/opt/t/f.conf/\"\n"), "app.toml:11:6", "the [[files]] entry at line 6 installs `/opt/t/f.conf` as a file, not a directory, but the [[files]] entry at line 9 puts a directory there"),
        ("cache", format!("{HEAD}[build]\nbuilder = \"go\"\nsource = \"services/app\"\ncommand = \"true\"\ncache = [\"/tmp/ok\", \"/proc/self/cwd\"]\n"), "app.toml:10:21", "`/proc/self/cwd` cannot be a cache directory: it is under `/proc`"),
    ];
    let mut failures = Vec::new();
    for (name, recipe, at, expect) in &cases {
        let (code, err) = validate(dir.path(), recipe);
        if code != 2 || !err.contains(at) || !err.contains(expect) {
            failures.push(format!(
                "case {name}: exit {code}, expected `{at}` and `{expect}` in:\n{err}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // Two trees may share directories, and a `to` ending in `/` installs into a directory.
    let ok = format!(
        "{GOOD}[[files]]\nfrom = \"services/app/tree\"\nto = \"/opt/t\"\n[[files]]\nfrom = \"services/app/tree/sub\"\nto = \"/opt/t/sub/more/\"\n[[files]]\nfrom = \"services/app/main.go\"\nto = \"/opt/t/\"\nmode = \"4755\"\n"
    );
    let (code, err) = validate(dir.path(), &ok);
    assert_eq!(code, 0, "{err}");
}

/// Text from a recipe never reaches the terminal raw: escape sequences, C1 controls and
/// bidirectional overrides are shown escaped in every message, snippet included.
#[test]
fn control_characters_are_escaped_in_every_message() {
    let dir = project();
    let recipe = "[package]\nname = \"app\"\nversion = \"1.0\"\nmaintainer = \"Ops <o@e.com>\"\ndescription = \"x\"\n[[files]]\nfrom = \"services/\\u001b[31mapp\"\nto = \"\\u001b]0;x\\u0007/etc/\\u202ex\"\n";
    let (code, err) = validate(dir.path(), recipe);
    assert_eq!(code, 2, "{err}");
    assert!(
        !err.chars()
            .any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
        "raw control characters in: {err:?}"
    );
    assert!(err.contains(r"\u{1b}]0;x\u{7}/etc/\u{202e}x"), "{err}");
    assert!(err.contains(r"services/\u{1b}[31mapp"), "{err}");
    // A raw escape byte in the file (a TOML syntax error): its snippet is escaped too.
    let raw = "[package]\nname = \"app\u{1b}[2J\"\n";
    let (code, err) = validate(dir.path(), raw);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert!(err.contains(r"app\u{1b}[2J"), "{err}");
}

#[test]
fn a_recipe_that_is_not_utf8_is_located_at_the_first_bad_byte() {
    let dir = project();
    let mut bytes = GOOD.as_bytes().to_vec();
    let at = GOOD.find("An app").unwrap() + 3;
    bytes.splice(at..at, *b"caf\xe9 ");
    std::fs::write(dir.path().join("recipes/app.toml"), &bytes).unwrap();
    let out = run(builder().arg("--project").arg(dir.path()).arg("validate"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("recipes/app.toml:6:22"), "{err}");
    assert!(
        err.contains("the recipe is not UTF-8 text: byte 0xE9"),
        "{err}"
    );
    assert!(err.contains("iconv -f latin1 -t utf-8"), "{err}");
}

/// 20,000 `[[files]]` entries validate in linear time (it took 30 s when each entry's line
/// number was counted from the start of the file). The harness's timeout is the bound.
#[test]
fn twenty_thousand_entries_validate() {
    let dir = project();
    let mut recipe = HEAD.to_string();
    for i in 0..20_000 {
        recipe.push_str(&format!(
            "[[files]]\nfrom = \"services/app/app.env\"\nto = \"/etc/app/f{i}.env\"\n"
        ));
    }
    // The last entry installs below the first: found, and only once.
    recipe.push_str("[[files]]\nsymlink = \"/x\"\nto = \"/etc/app/f0.env/x\"\n");
    let (code, err) = validate(dir.path(), &recipe);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("app.toml:60008:6"), "{err}");
    assert!(err.contains("1 problem found"), "{err}");
}

/// dh_installsystemd handles the units a unit's `Also=` names with it, and refuses a
/// package that does not ship them: so does validate, at the unit.
#[test]
fn also_names_a_unit_the_recipe_must_ship() {
    let dir = project();
    write_files(
        dir.path(),
        &[(
            "units/main.service",
            "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\nAlso=helper.socket \"other.timer\"\n",
        )],
    );
    let recipe = format!("{GOOD}[[systemd]]\nunit = \"units/main.service\"\n");
    let (code, err) = validate(dir.path(), &recipe);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("app.toml:12:8"), "{err}");
    assert!(
        err.contains("`main.service` says `Also=helper.socket`, but the recipe does not ship `helper.socket`"),
        "{err}"
    );
    write_files(
        dir.path(),
        &[
            ("units/helper.socket", "[Socket]\nListenStream=1\n"),
            ("units/other.timer", "[Timer]\nOnCalendar=daily\n"),
        ],
    );
    let recipe = format!(
        "{recipe}[[systemd]]\nunit = \"units/helper.socket\"\n[[systemd]]\nunit = \"units/other.timer\"\n"
    );
    let (code, err) = validate(dir.path(), &recipe);
    assert_eq!(code, 0, "{err}");
}

/// `${shlibs:Depends}` validates in `depends` and `pre-depends` of a recipe with a [build];
/// anywhere else, without [build], or another substvar, it is refused at its position.
#[test]
fn shlibs_depends_is_accepted_only_where_builder_can_compute_it() {
    let dir = project();
    let build = "[build]\nbuilder = \"go\"\nsource = \"services/app\"\ncommand = \"true\"\n";
    let with = |rel: &str, build: &str| format!("{HEAD}{rel}\n{build}");
    let (code, err) = validate(
        dir.path(),
        &with("depends = [\"${shlibs:Depends}\", \"adduser\"]", build),
    );
    assert_eq!(code, 0, "{err}");
    let (code, err) = validate(
        dir.path(),
        &with("pre-depends = [\"${shlibs:Depends}\"]", build),
    );
    assert_eq!(code, 0, "{err}");
    let cases = [
        (
            with("depends = [\"${shlibs:Depends}\"]", ""),
            "app.toml:6:12",
            "`${shlibs:Depends}` needs a [build] table",
        ),
        (
            with("recommends = [\"${shlibs:Depends}\"]", build),
            "app.toml:6:15",
            "`${shlibs:Depends}` goes in `depends` (or `pre-depends`), not `recommends`",
        ),
        (
            with("depends = [\"${misc:Depends}\"]", build),
            "app.toml:6:12",
            "the only substitution variable builder knows in a relation list is `${shlibs:Depends}`",
        ),
    ];
    for (recipe, at, expect) in cases {
        let (code, err) = validate(dir.path(), &recipe);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(at) && err.contains(expect),
            "{at} {expect}:\n{err}"
        );
        assert!(!err.contains("architecture qualifier"), "{err}");
    }
}
