//! What dpkg does with the packages builder writes, in a real Debian container (the
//! `bookworm` base builder makes from Debian's packages): install, upgrade with an edited
//! conffile, remove and purge, with the maintainer scripts and the systemd snippets
//! (deb-systemd-helper enable/purge) running for real; debconf questions answered in
//! advance (debconf-set-selections) and file triggers firing.

mod common;

use std::process::Command;

use common::*;

const RECIPE: &str = r#"
[package]
name = "demo"
version = "VERSION"
revision = "1"
architecture = "all"
maintainer = "Release Engineering <release@example.com>"
description = "Service used by builder's install test"
license = "MIT"

[[files]]
from = "app/demo.sh"
to = "/usr/bin/demo"
mode = "0755"

[[files]]
from = "app/demo.conf"
to = "/etc/demo/demo.conf"

[[files]]
symlink = "/usr/bin/demo"
to = "/usr/sbin/demo-server"

[scripts]
postinst = "app/postinst"
postrm = "app/postrm"

[[systemd]]
unit = "app/demo.service"
"#;

fn make(dir: &std::path::Path, version: &str, conf: &str) {
    write_files(
        dir,
        &[
            ("recipes/demo.toml", &RECIPE.replace("VERSION", version)),
            ("app/demo.sh", &format!("#!/bin/sh\necho demo {version}\n")),
            ("app/demo.conf", conf),
            ("app/postinst", "#!/bin/sh\nset -e\n#DEBHELPER#\nif [ \"$1\" = configure ]; then echo \"configured $2\" >> /var/lib/demo-postinst.log; fi\n"),
            ("app/postrm", "#!/bin/sh\nset -e\n#DEBHELPER#\necho \"postrm $1\" >> /var/lib/demo-postinst.log\n"),
            ("app/demo.service", "[Unit]\nDescription=Demo\n\n[Service]\nExecStart=/usr/bin/demo\n\n[Install]\nWantedBy=multi-user.target\n"),
        ],
    );
    let out = run(builder()
        .arg("--project")
        .arg(dir)
        .args(["package", "--no-image"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The tag of the `bookworm` base, made (or reused) through builder itself.
fn bookworm() -> String {
    let out = run(builder()
        .arg("--project")
        .arg(repo())
        .args(["base", "build", "bookworm"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(builder()
        .arg("--project")
        .arg(repo())
        .args(["--json", "base", "list"]));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "bookworm")
        .and_then(|b| b["tag"].as_str())
        .unwrap()
        .to_string()
}

/// Runs `script` in a throwaway container of the bookworm base `tag`, offline, with `debs`
/// mounted read-only at /debs; it must end by printing ALL-OK.
fn in_debian(tag: &str, debs: &std::path::Path, script: &str) {
    // One name per call: the tests of this file run in parallel in one process.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let name = format!("builder-install-test-{}-{n}", std::process::id());
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--label",
            "io.builder=1",
            "--label",
            "io.builder.stage=test",
            "--name",
            &name,
        ])
        .arg("-v")
        .arg(format!("{}:/debs:ro", debs.display()))
        .arg(tag)
        .args(["sh", "-c", script])
        .output()
        .unwrap();
    let log = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success() && log.contains("ALL-OK"), "{log}");
}

const SCRIPT: &str = r##"
set -eu
fail() { echo "FAILED: $*"; exit 1; }
dpkg -i /debs/demo_1.0.0-1_all.deb
[ "$(/usr/bin/demo)" = "demo 1.0.0" ] || fail "program"
[ "$(readlink /usr/sbin/demo-server)" = /usr/bin/demo ] || fail "symlink"
[ -L /etc/systemd/system/multi-user.target.wants/demo.service ] || fail "not enabled by deb-systemd-helper"
grep -qx "configured " /var/lib/demo-postinst.log || fail "postinst did not run on install"
dpkg --verify demo || fail "md5sums"
[ "$(cat /var/lib/dpkg/info/demo.conffiles)" = /etc/demo/demo.conf ] || fail "conffiles"

echo "# local edit" >> /etc/demo/demo.conf
dpkg -i --force-confold /debs/demo_2.0.0-1_all.deb
[ "$(/usr/bin/demo)" = "demo 2.0.0" ] || fail "upgrade"
grep -q "# local edit" /etc/demo/demo.conf || fail "local conffile edit lost on upgrade"
grep -q "listen = 9090" /etc/demo/demo.conf.dpkg-dist || fail "new conffile not offered as .dpkg-dist"
grep -qx "configured 1.0.0-1" /var/lib/demo-postinst.log || fail "postinst did not see the old version"
[ -L /etc/systemd/system/multi-user.target.wants/demo.service ] || fail "enable lost on upgrade"

dpkg --remove demo
[ ! -e /usr/bin/demo ] || fail "program left after remove"
[ -f /etc/demo/demo.conf ] || fail "conffile removed by remove"
[ ! -e /etc/systemd/system/demo.service ] || fail "masked on remove (debhelper 13.11.4 no longer masks)"
grep -qx "postrm remove" /var/lib/demo-postinst.log || fail "postrm remove"

dpkg --purge demo
[ ! -e /etc/demo/demo.conf ] || fail "conffile left after purge"
[ ! -e /etc/systemd/system/multi-user.target.wants/demo.service ] || fail "enable link left after purge"
grep -qx "postrm purge" /var/lib/demo-postinst.log || fail "postrm purge"
echo ALL-OK
"##;

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn dpkg_installs_upgrades_removes_and_purges_in_debian() {
    let tag = bookworm();
    let v1 = tempfile::tempdir().unwrap();
    let v2 = tempfile::tempdir().unwrap();
    for (dir, version, conf) in [
        (v1.path(), "1.0.0", "listen = 8080\n"),
        (v2.path(), "2.0.0", "listen = 9090\n"),
    ] {
        make(dir, version, conf);
    }
    let debs = tempfile::tempdir().unwrap();
    for (dir, v) in [(v1.path(), "1.0.0"), (v2.path(), "2.0.0")] {
        let name = format!("demo_{v}-1_all.deb");
        std::fs::copy(dir.join("dist/debs").join(&name), debs.path().join(&name)).unwrap();
    }
    in_debian(&tag, debs.path(), SCRIPT);
}

const DEBCONF_RECIPES: &[(&str, &str)] = &[
    (
        "recipes/asker.toml",
        r#"[package]
name = "asker"
version = "1.0"
revision = "1"
architecture = "all"
maintainer = "Release Engineering <release@example.com>"
description = "Asks its port through debconf"

[scripts]
config = "asker/config"
templates = "asker/templates"
postinst = "asker/postinst"
"#,
    ),
    (
        "asker/config",
        "#!/bin/sh\nset -e\n. /usr/share/debconf/confmodule\necho \"config $1\" >> /var/lib/asker.log\ndb_input high asker/port || true\ndb_go || true\n#DEBHELPER#\n",
    ),
    (
        "asker/templates",
        "Template: asker/port\nType: string\nDefault: 8080\nDescription: Port to listen on?\n",
    ),
    (
        "asker/postinst",
        "#!/bin/sh\nset -e\n. /usr/share/debconf/confmodule\nif [ \"$1\" = configure ]; then\n\tdb_get asker/port\n\techo \"port=$RET\" > /etc/asker.conf\nfi\n#DEBHELPER#\n",
    ),
    (
        "recipes/watcher.toml",
        r#"[package]
name = "watcher"
version = "1.0"
revision = "1"
architecture = "all"
maintainer = "Release Engineering <release@example.com>"
description = "Watches /usr/share/watched through a file trigger"

[scripts]
postinst = "watcher/postinst"

[triggers]
interest = ["/usr/share/watched"]
"#,
    ),
    (
        "watcher/postinst",
        "#!/bin/sh\nset -e\necho \"$1 $2\" >> /var/lib/watcher.log\n#DEBHELPER#\n",
    ),
    (
        "recipes/plugin.toml",
        r#"[package]
name = "plugin"
version = "1.0"
revision = "1"
architecture = "all"
maintainer = "Release Engineering <release@example.com>"
description = "Installs a file where watcher looks"

[[files]]
from = "plugin/p.txt"
to = "/usr/share/watched/p.txt"
"#,
    ),
    ("plugin/p.txt", "plugged in\n"),
];

const DEBCONF_SCRIPT: &str = r##"
set -eu
fail() { echo "FAILED: $*"; exit 1; }
export DEBIAN_FRONTEND=noninteractive
# debconf: the question answered in advance, the config script runs, postinst reads it.
echo "asker asker/port string 9999" | debconf-set-selections
dpkg -i /debs/asker_1.0-1_all.deb
grep -qx "config configure" /var/lib/asker.log || fail "config script did not run"
[ "$(cat /etc/asker.conf)" = "port=9999" ] || fail "preseeded answer not seen: $(cat /etc/asker.conf)"
echo "GET asker/port" | debconf-communicate asker | grep -qx "0 9999" || fail "answer not in the debconf db"
dpkg --purge asker
echo "GET asker/port" | debconf-communicate asker | grep -q "^0 " && fail "question left in the debconf db after purge"

# triggers: watcher's interest in /usr/share/watched fires when plugin installs a file there.
dpkg -i /debs/watcher_1.0-1_all.deb
dpkg -i /debs/plugin_1.0-1_all.deb
grep -qx "triggered /usr/share/watched" /var/lib/watcher.log || fail "trigger did not fire: $(cat /var/lib/watcher.log)"
dpkg -s plugin | grep -qx "Status: install ok installed" || fail "plugin not installed"
echo ALL-OK
"##;

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn debconf_answers_and_file_triggers_work_in_debian() {
    let tag = bookworm();
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), DEBCONF_RECIPES);
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .args(["package", "--no-image"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    in_debian(&tag, &dir.path().join("dist/debs"), DEBCONF_SCRIPT);
}
