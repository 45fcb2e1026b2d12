//! The control.tar files besides `control` that a recipe asks for, read back with the real
//! `dpkg-deb`: debconf's `config` and `templates`, `triggers`, and `md5sums` without the
//! conffiles; and what `validate` says about broken ones (file:line of the recipe, and of
//! the templates file).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

const RECIPE: &str = r#"[package]
name = "cfg"
version = "1.0"
revision = "1"
architecture = "all"
maintainer = "Ops <ops@example.com>"
description = "debconf and triggers"

[[files]]
from = "app/cfg.conf"
to = "/etc/cfg/cfg.conf"

[[files]]
from = "app/tool"
to = "/usr/bin/cfg-tool"
mode = "0755"

[scripts]
config = "debian/config"
templates = "debian/templates"
postinst = "debian/postinst"

[triggers]
interest-noawait = ["/usr/share/cfg/plugins"]
activate-noawait = ["ldconfig"]
"#;

const TEMPLATES: &str = "Template: cfg/port\nType: string\nDefault: 8080\nDescription: Port?\n The port cfg listens on.\n\nTemplate: cfg/enable\nType: boolean\nDefault: true\nDescription: Enable cfg?\n";
const CONFIG: &str = "#!/bin/sh\nset -e\n. /usr/share/debconf/confmodule\ndb_input medium cfg/port || true\ndb_go || true\n#DEBHELPER#\n";

fn project(recipe: &str, templates: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[
            ("recipes/cfg.toml", recipe),
            ("app/cfg.conf", "port = 8080\n"),
            ("app/tool", "#!/bin/sh\necho tool\n"),
            ("debian/config", CONFIG),
            ("debian/templates", templates),
            (
                "debian/postinst",
                "#!/bin/sh\nset -e\n. /usr/share/debconf/confmodule\n#DEBHELPER#\n",
            ),
        ],
    );
    dir
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn debconf_triggers_and_md5sums_reach_dpkg_deb() {
    let dir = project(RECIPE, TEMPLATES);
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .arg("package")
        .env("SOURCE_DATE_EPOCH", "1700000000"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deb = dir.path().join("dist/debs/cfg_1.0-1_all.deb");
    // What dh_installdebconf adds through ${misc:Depends}.
    assert_eq!(
        dpkg_deb(&["-f"], &deb)
            .lines()
            .find(|l| l.starts_with("Depends:"))
            .unwrap_or_default(),
        "Depends: debconf (>= 0.5) | debconf-2.0"
    );

    let info = dpkg_deb(&["--info"], &deb);
    for member in ["config", "templates", "triggers", "postrm", "md5sums"] {
        assert!(
            info.lines().any(|l| l.trim_start().contains(member)),
            "{member}:\n{info}"
        );
    }
    let ctrl = dir.path().join("ctrl");
    let out = run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctrl));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let read = |f: &str| std::fs::read_to_string(ctrl.join(f)).unwrap();
    let mode = |f: &str| {
        std::fs::metadata(ctrl.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };

    // config: a program, #DEBHELPER# gone (no generated snippets belong there).
    assert_eq!(read("config"), CONFIG.replace("#DEBHELPER#\n", "\n"));
    assert_eq!(mode("config"), 0o755);
    // templates: the bytes as written, a data file.
    assert_eq!(read("templates"), TEMPLATES);
    assert_eq!(mode("templates"), 0o644);
    // triggers: deb-triggers(5) lines, a data file.
    assert_eq!(
        read("triggers"),
        "interest-noawait /usr/share/cfg/plugins\nactivate-noawait ldconfig\n"
    );
    assert_eq!(mode("triggers"), 0o644);
    // postrm: dh_installdebconf's purge snippet, written by builder (no postrm in the recipe).
    assert_eq!(
        read("postrm"),
        "#!/bin/sh\nset -e\n# Automatically added by builder (as dh_installdebconf/13.11.4)\n\
         if [ \"$1\" = purge ] && [ -e /usr/share/debconf/confmodule ]; then\n\
         \t. /usr/share/debconf/confmodule\n\
         \tdb_purge\n\
         fi\n\
         # End automatically added section\n"
    );
    // md5sums: every regular file but the conffile, as dh_md5sums writes it.
    let md5 = read("md5sums");
    assert!(md5.contains("  usr/bin/cfg-tool\n"), "{md5}");
    assert!(!md5.contains("etc/cfg"), "{md5}");
    assert_eq!(read("conffiles"), "/etc/cfg/cfg.conf\n");
    // dpkg-deb itself checks the md5sums against the data it unpacks.
    let x = dir.path().join("x");
    let out = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(Command::new("md5sum")
        .args(["--check", "--strict"])
        .arg(ctrl.join("md5sums"))
        .current_dir(&x));
    assert!(out.status.success(), "{}", text(&out.stdout));
}

fn validate(dir: &Path) -> (i32, String) {
    let out = run(builder().arg("--project").arg(dir).arg("validate"));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn broken_templates_and_triggers_are_refused_where_they_are_written() {
    let bad_triggers = RECIPE.replace(
        "interest-noawait = [\"/usr/share/cfg/plugins\"]\nactivate-noawait = [\"ldconfig\"]",
        "interest = [\"/usr/share/cfg/\", \"two words\"]\ninterest-noawait = [\"x\"]\n\
         interest-await = [\"x\"]\nactivate = [\"\"]",
    );
    let dir = project(
        &bad_triggers,
        "Template: cfg/port\nType: string\n\nTemplate: cfg/enable\nDescription: Enable?\n",
    );
    let (code, err) = validate(dir.path());
    assert_eq!(code, 2, "{err}");
    for want in [
        // templates = "..." is on line 20 of the recipe; the stanza on line 4 of the file.
        "cfg.toml:20:13",
        "`debian/templates:4`: the template `cfg/enable` has no `Type:` field",
        "cfg.toml:24:13",
        "the file trigger `/usr/share/cfg/` is not a normalised absolute path",
        "write it as `/usr/share/cfg`",
        "cfg.toml:24:32",
        "the trigger name `two words` contains a space",
        "cfg.toml:26:19",
        "`x` is listed in both `interest-noawait` and `interest-await`",
        "cfg.toml:27:13",
        "an empty trigger name",
    ] {
        assert!(err.contains(want), "{want}:\n{err}");
    }

    // An unknown key in [triggers] or [[systemd]] is an error, not ignored.
    let typo = RECIPE.replace("activate-noawait", "activate-no-await");
    std::fs::write(dir.path().join("recipes/cfg.toml"), typo).unwrap();
    std::fs::write(dir.path().join("debian/templates"), TEMPLATES).unwrap();
    let (code, err) = validate(dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("activate-no-await"), "{err}");
}
