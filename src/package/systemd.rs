//! Maintainer-script snippets for systemd units, exactly as bookworm's debhelper
//! (13.11.4, compat 13) writes them with `dh_installsystemd`: its autoscripts
//! (`postinst-systemd-enable`, `-dont-enable`, `-restart`, `-restartnostart`, `-start`,
//! `preinst-systemd-stop`, `prerm-systemd-restart`, `postrm-systemd`,
//! `postrm-systemd-reload-only`), `DPKG_ROOT` guards included, chosen by the same options.
//! Units with the same options are handled as one `dh_installsystemd [options] units...`
//! call, in the order the recipe first names each set of options.

use super::maintscripts::{Autoscripts, Order};
use crate::deb::Script;
use crate::recipe::SystemdUnit;

const TOOL: &str = "dh_installsystemd";

/// `s` as one single-quoted shell word. Validation already limits unit names to systemd's
/// characters; quoting every `'` as `'\''` keeps the scripts safe even if that ever changes.
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

const CONFIGURE: &str = "if [ \"$1\" = \"configure\" ] || [ \"$1\" = \"abort-upgrade\" ] || [ \"$1\" = \"abort-deconfigure\" ] || [ \"$1\" = \"abort-remove\" ] ; then\n";

fn postinst_enable(unit: &str) -> String {
    format!(
        "{CONFIGURE}\
\t# The following line should be removed in trixie or trixie+1
\tdeb-systemd-helper unmask {unit} >/dev/null || true

\t# was-enabled defaults to true, so new installations run enable.
\tif deb-systemd-helper --quiet was-enabled {unit}; then
\t\t# Enables the unit on first installation, creates new
\t\t# symlinks on upgrades if the unit file has changed.
\t\tdeb-systemd-helper enable {unit} >/dev/null || true
\telse
\t\t# Update the statefile to add new symlinks (if any), which need to be
\t\t# cleaned up on purge. Also remove old symlinks.
\t\tdeb-systemd-helper update-state {unit} >/dev/null || true
\tfi
fi
"
    )
}

fn postinst_dont_enable(unit: &str) -> String {
    format!(
        "{CONFIGURE}\
\tif deb-systemd-helper debian-installed {unit}; then
\t\t# The following line should be removed in trixie or trixie+1
\t\tdeb-systemd-helper unmask {unit} >/dev/null || true

\t\tif deb-systemd-helper --quiet was-enabled {unit}; then
\t\t\t# Create new symlinks, if any.
\t\t\tdeb-systemd-helper enable {unit} >/dev/null || true
\t\tfi
\tfi

\t# Update the statefile to add new symlinks (if any), which need to be cleaned
\t# up on purge. Also remove old symlinks.
\tdeb-systemd-helper update-state {unit} >/dev/null || true
fi
"
    )
}

fn postinst_restart(units: &str) -> String {
    format!(
        "{CONFIGURE}\
\tif [ -d /run/systemd/system ]; then
\t\tsystemctl --system daemon-reload >/dev/null || true
\t\tif [ -n \"$2\" ]; then
\t\t\t_dh_action=restart
\t\telse
\t\t\t_dh_action=start
\t\tfi
\t\tdeb-systemd-invoke $_dh_action {units} >/dev/null || true
\tfi
fi
"
    )
}

fn postinst_restart_no_start(units: &str) -> String {
    format!(
        "{CONFIGURE}\
\tif [ -z \"${{DPKG_ROOT:-}}\" ] && [ -d /run/systemd/system ]; then
\t\tsystemctl --system daemon-reload >/dev/null || true
\t\tif [ -n \"$2\" ]; then
\t\t\tdeb-systemd-invoke try-restart {units} >/dev/null || true
\t\tfi
\tfi
fi
"
    )
}

fn postinst_start(units: &str) -> String {
    format!(
        "{CONFIGURE}\
\tif [ -z \"${{DPKG_ROOT:-}}\" ] && [ -d /run/systemd/system ]; then
\t\tsystemctl --system daemon-reload >/dev/null || true
\t\tdeb-systemd-invoke start {units} >/dev/null || true
\tfi
fi
"
    )
}

fn preinst_stop(units: &str) -> String {
    format!(
        "if [ -z \"${{DPKG_ROOT:-}}\" ] && [ \"$1\" = upgrade ] && [ -d /run/systemd/system ] ; then
\tdeb-systemd-invoke stop {units} >/dev/null || true
fi
"
    )
}

fn prerm_stop_on_remove(units: &str) -> String {
    format!(
        "if [ -z \"${{DPKG_ROOT:-}}\" ] && [ \"$1\" = remove ] && [ -d /run/systemd/system ] ; then
\tdeb-systemd-invoke stop {units} >/dev/null || true
fi
"
    )
}

fn postrm_purge(units: &str) -> String {
    format!(
        "if [ \"$1\" = \"purge\" ]; then
\tif [ -x \"/usr/bin/deb-systemd-helper\" ]; then
\t\tdeb-systemd-helper purge {units} >/dev/null || true
\tfi
fi
"
    )
}

const POSTRM_RELOAD: &str = "if [ \"$1\" = remove ] && [ -d /run/systemd/system ] ; then
\tsystemctl --system daemon-reload >/dev/null || true
fi
";

/// The options of one `dh_installsystemd` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Options {
    enable: bool,
    start: bool,
    restart_after_upgrade: bool,
    stop_on_upgrade: bool,
}

impl Options {
    fn of(u: &SystemdUnit) -> Self {
        Options {
            enable: u.enable,
            start: u.start,
            restart_after_upgrade: u.restart_after_upgrade,
            stop_on_upgrade: u.stop_on_upgrade,
        }
    }
}

/// Units grouped by options, in the order each set of options first appears.
fn groups(units: &[SystemdUnit]) -> Vec<(Options, Vec<&SystemdUnit>)> {
    let mut out: Vec<(Options, Vec<&SystemdUnit>)> = Vec::new();
    for u in units {
        let o = Options::of(u);
        match out.iter_mut().find(|(g, _)| *g == o) {
            Some((_, members)) => members.push(u),
            None => out.push((o, vec![u])),
        }
    }
    out
}

/// Sorted, deduplicated, quoted names (dh's `map { quote($_) } uniq sort`).
fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = names.map(sh_quote).collect();
    v.sort();
    v.dedup();
    v
}

/// The units one `dh_installsystemd` call handles: `units`, then those their `Also=`
/// lines name (and theirs), templates left out: they have no instance to enable, start
/// or stop. `all` is every unit of the recipe, where `Also=` names are found.
fn handled<'a>(units: &[&'a SystemdUnit], all: &'a [SystemdUnit]) -> Vec<&'a SystemdUnit> {
    let mut queue: std::collections::VecDeque<&SystemdUnit> = units.iter().copied().collect();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    while let Some(u) = queue.pop_front() {
        if u.is_template() {
            continue;
        }
        for name in &u.also {
            if seen.insert(name.as_str()) {
                queue.extend(all.iter().find(|a| a.name == *name));
            }
        }
        out.push(u);
    }
    out
}

/// One `dh_installsystemd` call on `units` with `o`.
fn add_group(out: &mut Autoscripts, o: Options, units: &[&SystemdUnit], all: &[SystemdUnit]) {
    let concrete = handled(units, all);
    let start_units = quoted(concrete.iter().map(|u| u.name.as_str()));
    let enable_units = quoted(
        concrete
            .iter()
            .filter(|u| u.install_section)
            .map(|u| u.name.as_str()),
    );
    if !enable_units.is_empty() {
        for unit in &enable_units {
            let body = if o.enable {
                postinst_enable(unit)
            } else {
                postinst_dont_enable(unit)
            };
            out.add(Script::Postinst, Order::Service, TOOL, &body);
        }
        out.add(
            Script::Postrm,
            Order::Default,
            TOOL,
            &postrm_purge(&enable_units.join(" ")),
        );
    }
    if start_units.is_empty() {
        return;
    }
    let units = start_units.join(" ");
    // `start` false is dh's --no-start, `stop_on_upgrade` false its --no-stop-on-upgrade.
    if o.restart_after_upgrade {
        let body = if o.start {
            postinst_restart(&units)
        } else {
            postinst_restart_no_start(&units)
        };
        out.add(Script::Postinst, Order::Service, TOOL, &body);
    } else if o.start {
        out.add(
            Script::Postinst,
            Order::Service,
            TOOL,
            &postinst_start(&units),
        );
    }
    if o.stop_on_upgrade && !o.restart_after_upgrade {
        out.add(Script::Preinst, Order::Service, TOOL, &preinst_stop(&units));
    }
    if o.start {
        out.add(
            Script::Prerm,
            Order::Service,
            TOOL,
            &prerm_stop_on_remove(&units),
        );
    }
    out.add(Script::Postrm, Order::Default, TOOL, POSTRM_RELOAD);
}

/// Adds the snippets of every `[[systemd]]` unit.
pub(crate) fn add(out: &mut Autoscripts, units: &[SystemdUnit]) {
    for (o, members) in groups(units) {
        add_group(out, o, &members, units);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, enable: bool, start: bool) -> SystemdUnit {
        SystemdUnit {
            path: name.into(),
            name: name.into(),
            enable,
            start,
            restart_after_upgrade: start,
            stop_on_upgrade: true,
            install_section: true,
            also: Vec::new(),
        }
    }

    fn text(units: &[SystemdUnit], script: Script) -> String {
        let mut a = Autoscripts::default();
        add(&mut a, units);
        a.text(script)
    }

    #[test]
    fn no_enable_and_no_start_pick_dh_snippets() {
        let units = [unit("a.service", false, false)];
        let post = text(&units, Script::Postinst);
        assert!(
            post.contains("deb-systemd-helper debian-installed 'a.service'"),
            "{post}"
        );
        assert!(!post.contains("deb-systemd-invoke"), "{post}");
        assert!(text(&units, Script::Prerm).is_empty());
        assert!(text(&units, Script::Preinst).contains("= upgrade"));
        assert!(text(&units, Script::Postrm).contains("purge 'a.service'"));
        let units = [unit("a.service", true, false)];
        let post = text(&units, Script::Postinst);
        assert!(
            post.contains("deb-systemd-helper enable 'a.service'"),
            "{post}"
        );
        assert!(!post.contains("deb-systemd-invoke"), "{post}");
    }

    #[test]
    fn template_units_get_no_snippets() {
        let units = [
            unit("app@.service", false, false),
            unit("app.service", true, true),
        ];
        let post = text(&units, Script::Postinst);
        assert!(post.contains("enable 'app.service'"), "{post}");
        assert!(
            post.contains("deb-systemd-invoke $_dh_action 'app.service' >"),
            "{post}"
        );
        for s in [
            Script::Preinst,
            Script::Postinst,
            Script::Prerm,
            Script::Postrm,
        ] {
            assert!(!text(&units, s).contains("app@"), "{s:?}");
        }
        let only = [unit("app@.service", false, false)];
        for s in [
            Script::Preinst,
            Script::Postinst,
            Script::Prerm,
            Script::Postrm,
        ] {
            assert!(text(&only, s).is_empty(), "{s:?}");
        }
    }

    #[test]
    fn units_without_install_section_are_started_not_enabled() {
        let mut u = unit("a.service", true, true);
        u.install_section = false;
        let units = [u];
        let post = text(&units, Script::Postinst);
        assert!(!post.contains("deb-systemd-helper"), "{post}");
        assert!(post.contains("$_dh_action 'a.service'"), "{post}");
        assert!(!text(&units, Script::Postrm).contains("purge"));
    }

    #[test]
    fn names_are_single_quoted_even_with_quotes_inside() {
        let name = "x'$(touch PWNED)'.service";
        assert_eq!(sh_quote(name), r"'x'\''$(touch PWNED)'\''.service'");
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", sh_quote(name)))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), name);
        assert!(!dir.path().join("PWNED").exists());
        let post = text(&[unit(name, true, true)], Script::Postinst);
        assert!(
            post.contains(r"enable 'x'\''$(touch PWNED)'\''.service'"),
            "{post}"
        );
    }
}
