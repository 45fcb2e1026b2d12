//! builder's generated control files against bookworm's debhelper itself: the same units,
//! options and debconf files given to the real `dh_installsystemd`, `dh_installdebconf`
//! and `dh_installdeb`, and every maintainer script (and debconf's config and templates)
//! compared byte for byte, the marker line aside ("Automatically added by
//! dh_installsystemd/13.11.4", which builder writes as its own).
//!
//! Fast tier: needs only debhelper on the host (`.ci/setup` installs it); skipped with a
//! message where `dh_installsystemd` is absent.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// The debhelper whose output builder reproduces: bookworm's.
const DEBHELPER: &str = "13.11.4";

const WITH_INSTALL: &str =
    "[Unit]\nDescription=a\n\n[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n";
const WITH_ALSO: &str = "[Unit]\nDescription=f\n\n[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\nAlso=e.service\n";
const WITHOUT_INSTALL: &str = "[Unit]\nDescription=b\n\n[Service]\nExecStart=/bin/true\n";

/// The units every package ships: enableable, start-only, and a template.
const UNITS: &[(&str, &str)] = &[
    ("a.service", WITH_INSTALL),
    ("b.service", WITHOUT_INSTALL),
    ("c@.service", WITH_INSTALL),
];

/// One `[[systemd]]` option set: (recipe key, value, dh_installsystemd flag).
type Opts = Vec<(&'static str, bool, &'static str)>;

/// Every combination of the options builder offers, as a recipe and as dh flags.
fn combinations() -> Vec<Opts> {
    let mut out = Vec::new();
    for enable in [None, Some(false)] {
        for start in [None, Some(false)] {
            for stop in [None, Some(false)] {
                for restart in [None, Some(true), Some(false)] {
                    let mut o: Opts = Vec::new();
                    if enable.is_some() {
                        o.push(("enable", false, "--no-enable"));
                    }
                    if start.is_some() {
                        o.push(("start", false, "--no-start"));
                    }
                    if stop.is_some() {
                        o.push(("stop-on-upgrade", false, "--no-stop-on-upgrade"));
                    }
                    match restart {
                        Some(true) => {
                            o.push(("restart-after-upgrade", true, "--restart-after-upgrade"))
                        }
                        Some(false) => {
                            o.push(("restart-after-upgrade", false, "--no-restart-after-upgrade"))
                        }
                        None => {}
                    }
                    out.push(o);
                }
            }
        }
    }
    out
}

const HEAD: &str = "[package]\nname = \"NAME\"\nversion = \"1.0\"\nrevision = \"1\"\n\
                    architecture = \"all\"\nmaintainer = \"Ops <ops@example.com>\"\n\
                    description = \"debhelper comparison\"\n";

/// A `[[systemd]]` entry for `unit` with `opts`.
fn unit_entry(unit: &str, opts: &Opts) -> String {
    let mut s = format!("\n[[systemd]]\nunit = \"units/{unit}\"\n");
    for (key, value, _) in opts {
        // Templates take no `start`/`enable` = true, and false is what they get anyway.
        s.push_str(&format!("{key} = {value}\n"));
    }
    s
}

/// One package of the comparison: its recipe, and the dh calls that make the same scripts.
struct Case {
    name: String,
    recipe: String,
    /// `dh_installsystemd` argument lists, in order.
    calls: Vec<Vec<String>>,
    /// A postinst of the recipe's own (with `#DEBHELPER#`), and debconf files.
    postinst: Option<&'static str>,
    debconf: bool,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (i, opts) in combinations().into_iter().enumerate() {
        let name = format!("sd{i}");
        let mut recipe = HEAD.replace("NAME", &name);
        let mut args: Vec<String> = opts.iter().map(|o| o.2.to_string()).collect();
        for (unit, _) in UNITS {
            recipe.push_str(&unit_entry(unit, &opts));
            args.push(unit.to_string());
        }
        out.push(Case {
            name,
            recipe,
            calls: vec![args],
            postinst: None,
            debconf: false,
        });
    }
    // Two option sets in one package (two dh calls, in the order the recipe names them),
    // a postinst of its own and debconf: every tool's snippets in dh's order.
    let mut recipe = HEAD.replace("NAME", "mixed");
    recipe.push_str(
        "\n[scripts]\npostinst = \"debian/postinst\"\nconfig = \"debian/config\"\n\
         templates = \"debian/templates\"\n",
    );
    let quiet: Opts = vec![
        ("enable", false, "--no-enable"),
        ("start", false, "--no-start"),
    ];
    recipe.push_str(&unit_entry("b.service", &vec![]));
    recipe.push_str(&unit_entry("d.service", &quiet));
    recipe.push_str(&unit_entry("a.service", &vec![]));
    // `Also=`: f.service brings e.service into its call, and e.service has a call of its own.
    let mut also = HEAD.replace("NAME", "also");
    also.push_str(&unit_entry("f.service", &vec![]));
    also.push_str(&unit_entry(
        "e.service",
        &vec![("start", false, "--no-start")],
    ));
    out.push(Case {
        name: "also".into(),
        recipe: also,
        calls: vec![
            vec!["f.service".into()],
            vec!["--no-start".into(), "e.service".into()],
        ],
        postinst: None,
        debconf: false,
    });
    out.push(Case {
        name: "mixed".into(),
        recipe,
        calls: vec![
            vec!["b.service".into(), "a.service".into()],
            vec![
                "--no-enable".into(),
                "--no-start".into(),
                "d.service".into(),
            ],
        ],
        postinst: Some("#!/bin/sh\nset -e\n\n#DEBHELPER#\n\necho configured\nexit 0\n"),
        debconf: true,
    });
    out
}

const CONFIG: &str = "#!/bin/sh\nset -e\n. /usr/share/debconf/confmodule\n#DEBHELPER#\ndb_input high mixed/ok || true\ndb_go\n";
const TEMPLATES: &str =
    "Template: mixed/ok\nType: boolean\nDefault: true\nDescription: Fine?\n Long text.\n";

fn dh(dir: &Path, tool: &str, args: &[String]) {
    let out = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .env_remove("DH_VERBOSE")
        .env_remove("DH_OPTIONS")
        .output()
        .unwrap_or_else(|e| panic!("could not run {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// debhelper's marker lines, written as builder writes them; the version is checked.
fn as_builder(dh_text: &str) -> String {
    let mut out = String::new();
    for line in dh_text.split_inclusive('\n') {
        match line.strip_prefix("# Automatically added by dh_") {
            Some(rest) => {
                let (tool, version) = rest.trim_end().split_once('/').unwrap();
                assert_eq!(
                    version, DEBHELPER,
                    "builder writes the snippets of bookworm's debhelper {DEBHELPER}; this \
                     machine has debhelper {version}: compare on Debian 12"
                );
                out.push_str(&format!(
                    "# Automatically added by builder (as dh_{tool}/{version})\n"
                ));
            }
            None => out.push_str(line),
        }
    }
    out
}

#[test]
fn maintainer_scripts_are_debhelpers_byte_for_byte() {
    if Command::new("dh_installsystemd")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED: dh_installsystemd is not installed (apt-get install debhelper, as \
             .ci/setup does); builder's snippets were not compared with debhelper's"
        );
        return;
    }
    let cases = cases();

    // builder: one project, one recipe per case.
    let project = tempfile::tempdir().unwrap();
    let mut files: Vec<(String, String)> = vec![
        (
            "debian/postinst".into(),
            cases.last().unwrap().postinst.unwrap().into(),
        ),
        ("debian/config".into(), CONFIG.into()),
        ("debian/templates".into(), TEMPLATES.into()),
        ("units/d.service".into(), WITH_INSTALL.into()),
        ("units/e.service".into(), WITH_INSTALL.into()),
        ("units/f.service".into(), WITH_ALSO.into()),
    ];
    files.extend(
        UNITS
            .iter()
            .map(|(n, t)| (format!("units/{n}"), t.to_string())),
    );
    for c in &cases {
        files.push((format!("recipes/{}.toml", c.name), c.recipe.clone()));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    write_files(project.path(), &refs);
    let out = run(builder()
        .arg("--project")
        .arg(project.path())
        .arg("package")
        .env("SOURCE_DATE_EPOCH", "1700000000"));
    assert!(out.status.success(), "{}", text(&out.stderr));

    // debhelper: one source package with the same binary packages, units installed.
    let src = tempfile::tempdir().unwrap();
    let mut control = "Source: cmp\nMaintainer: Ops <ops@example.com>\n\
                       Build-Depends: debhelper-compat (= 13)\n"
        .to_string();
    let mut dh_files: Vec<(String, String)> = vec![(
        "debian/changelog".into(),
        "cmp (1.0-1) unstable; urgency=medium\n\n  * x\n\n -- Ops <ops@example.com>  Tue, 14 Nov 2023 22:13:20 +0000\n".into(),
    )];
    for c in &cases {
        control.push_str(&format!(
            "\nPackage: {}\nArchitecture: all\nDescription: x\n",
            c.name
        ));
        let mut units: Vec<(&str, &str)> = UNITS.to_vec();
        units.extend([
            ("d.service", WITH_INSTALL),
            ("e.service", WITH_INSTALL),
            ("f.service", WITH_ALSO),
        ]);
        for (n, t) in units {
            dh_files.push((
                format!("debian/{}/lib/systemd/system/{n}", c.name),
                t.into(),
            ));
        }
        if let Some(p) = c.postinst {
            dh_files.push((format!("debian/{}.postinst", c.name), p.into()));
        }
        if c.debconf {
            dh_files.push((format!("debian/{}.config", c.name), CONFIG.into()));
            dh_files.push((format!("debian/{}.templates", c.name), TEMPLATES.into()));
        }
    }
    dh_files.push(("debian/control".into(), control));
    let refs: Vec<(&str, &str)> = dh_files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    write_files(src.path(), &refs);
    for c in &cases {
        let p = format!("-p{}", c.name);
        if c.debconf {
            dh(src.path(), "dh_installdebconf", std::slice::from_ref(&p));
        }
        for call in &c.calls {
            let mut args = vec![p.clone()];
            args.extend(call.iter().cloned());
            dh(src.path(), "dh_installsystemd", &args);
        }
    }
    dh(src.path(), "dh_installdeb", &[]);

    let mut differ = Vec::new();
    let mut compared = 0;
    for c in &cases {
        let deb = project
            .path()
            .join(format!("dist/debs/{}_1.0-1_all.deb", c.name));
        let ctrl = project.path().join(format!("ctrl-{}", c.name));
        let out = run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctrl));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let dh_dir = src.path().join(format!("debian/{}/DEBIAN", c.name));
        for file in [
            "preinst",
            "postinst",
            "prerm",
            "postrm",
            "config",
            "templates",
        ] {
            let ours = std::fs::read_to_string(ctrl.join(file)).ok();
            let theirs = std::fs::read_to_string(dh_dir.join(file))
                .ok()
                .map(|t| as_builder(&t));
            compared += usize::from(ours.is_some());
            if ours != theirs {
                differ.push(format!(
                    "{} {file} ({}):\n--- builder\n{}\n--- debhelper\n{}",
                    c.name,
                    c.calls
                        .iter()
                        .map(|a| a.join(" "))
                        .collect::<Vec<_>>()
                        .join(" ; "),
                    ours.as_deref().unwrap_or("(none)"),
                    theirs.as_deref().unwrap_or("(none)")
                ));
            }
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n\n"));
    // Every package has a postinst or postrm at least; mixed has config and templates.
    assert!(
        compared >= cases.len() * 2,
        "only {compared} files compared"
    );
}
