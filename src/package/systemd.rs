//! Maintainer-script snippets for systemd units, as debhelper's `dh_installsystemd`
//! (compat 13) writes them: enable on install (deb-systemd-helper), start on install and
//! restart on upgrade, stop on remove, mask on remove, purge state on purge.
//! The snippets are merged into the recipe's own scripts at `#DEBHELPER#`.

use crate::recipe::SystemdUnit;

/// The token users put in their maintainer scripts where generated snippets belong.
pub const TOKEN: &str = "#DEBHELPER#";

/// `s` as one single-quoted shell word. Validation already limits unit names to systemd's
/// characters; quoting every `'` as `'\''` keeps the scripts safe even if that ever changes.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn quoted(units: &[&SystemdUnit]) -> String {
    units
        .iter()
        .map(|u| sh_quote(&u.name))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Units enabled on install (and masked/purged on removal). Template units are never
/// enabled, as in dh_installsystemd: that needs an instance name.
fn enabled(units: &[SystemdUnit]) -> impl Iterator<Item = &SystemdUnit> {
    units.iter().filter(|u| u.enable && !u.is_template())
}

/// Units started on install, restarted on upgrade and stopped on removal (never templates).
fn started(units: &[SystemdUnit]) -> Vec<&SystemdUnit> {
    units
        .iter()
        .filter(|u| u.start && !u.is_template())
        .collect()
}

/// postinst: enable, then (re)start. With template units and nothing to start, only reload
/// systemd so that `systemctl start name@instance` sees the new template.
pub fn postinst(units: &[SystemdUnit]) -> String {
    let mut out = String::new();
    for u in enabled(units) {
        out.push_str(&format!(
            r#"# Automatically added by builder (systemd enable, like dh_installsystemd)
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ] ; then
	# This will only remove masks created by d-s-h on package removal.
	deb-systemd-helper unmask {name} >/dev/null || true

	# was-enabled defaults to true, so new installations run enable.
	if deb-systemd-helper --quiet was-enabled {name}; then
		# Enables the unit on first installation, creates new
		# symlinks on upgrades if the unit file has changed.
		deb-systemd-helper enable {name} >/dev/null || true
	else
		# Update the statefile to add new symlinks (if any), which need to be
		# cleaned up on purge. Also remove old symlinks.
		deb-systemd-helper update-state {name} >/dev/null || true
	fi
fi
# End automatically added section
"#,
            name = sh_quote(&u.name)
        ));
    }
    let start = started(units);
    if start.is_empty() && units.iter().any(SystemdUnit::is_template) {
        out.push_str(
            r#"# Automatically added by builder (systemd reload, like dh_installsystemd)
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ] ; then
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
	fi
fi
# End automatically added section
"#,
        );
    }
    if !start.is_empty() {
        out.push_str(&format!(
            r#"# Automatically added by builder (systemd start/restart, like dh_installsystemd)
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ] ; then
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		if [ -n "$2" ]; then
			_dh_action=restart
		else
			_dh_action=start
		fi
		deb-systemd-invoke $_dh_action {units} >/dev/null || true
	fi
fi
# End automatically added section
"#,
            units = quoted(&start)
        ));
    }
    out
}

/// prerm: stop on removal (upgrades restart in postinst instead).
pub fn prerm(units: &[SystemdUnit]) -> String {
    let start = started(units);
    if start.is_empty() {
        return String::new();
    }
    format!(
        r#"# Automatically added by builder (systemd stop, like dh_installsystemd)
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	deb-systemd-invoke stop {units} >/dev/null || true
fi
# End automatically added section
"#,
        units = quoted(&start)
    )
}

/// postrm: reload (for every unit, templates too), mask on remove, purge the enable state
/// on purge.
pub fn postrm(units: &[SystemdUnit]) -> String {
    if units.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        r#"# Automatically added by builder (systemd reload, like dh_installsystemd)
if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
# End automatically added section
"#,
    );
    for u in enabled(units) {
        out.push_str(&format!(
            r#"# Automatically added by builder (systemd mask/purge, like dh_installsystemd)
if [ "$1" = "remove" ]; then
	if [ -x "/usr/bin/deb-systemd-helper" ]; then
		deb-systemd-helper mask {name} >/dev/null || true
	fi
fi

if [ "$1" = "purge" ]; then
	if [ -x "/usr/bin/deb-systemd-helper" ]; then
		deb-systemd-helper purge {name} >/dev/null || true
		deb-systemd-helper unmask {name} >/dev/null || true
	fi
fi
# End automatically added section
"#,
            name = sh_quote(&u.name)
        ));
    }
    out
}

/// Merges generated snippets into a user script: at `#DEBHELPER#` when present; otherwise
/// before a final `exit 0`, or at the end. With no user script, a fresh `/bin/sh` script.
pub fn merge(user: Option<&str>, snippets: &str) -> Option<String> {
    match (user, snippets.is_empty()) {
        (None, true) => None,
        (Some(u), true) => Some(u.replace(TOKEN, "")),
        (None, false) => Some(format!("#!/bin/sh\nset -e\n\n{snippets}")),
        (Some(u), false) => {
            if u.contains(TOKEN) {
                return Some(u.replace(TOKEN, snippets.trim_end()));
            }
            let trimmed = u.trim_end();
            match trimmed.rsplit_once('\n') {
                Some((head, last)) if last.trim() == "exit 0" => {
                    Some(format!("{head}\n\n{snippets}\nexit 0\n"))
                }
                _ => Some(format!("{trimmed}\n\n{snippets}")),
            }
        }
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
        }
    }

    #[test]
    fn opt_out_removes_snippets() {
        let units = [unit("a.service", false, false)];
        assert!(postinst(&units).is_empty());
        assert!(prerm(&units).is_empty());
        let units = [unit("a.service", true, false)];
        assert!(postinst(&units).contains("deb-systemd-helper enable 'a.service'"));
        assert!(!postinst(&units).contains("deb-systemd-invoke"));
    }

    #[test]
    fn template_units_are_reloaded_but_never_enabled_or_started() {
        let units = [
            unit("app@.service", true, true),
            unit("app.service", true, true),
        ];
        let post = postinst(&units);
        assert!(post.contains("enable 'app.service'"), "{post}");
        assert!(
            post.contains("deb-systemd-invoke $_dh_action 'app.service' >"),
            "{post}"
        );
        assert!(!post.contains("app@"), "{post}");
        assert!(!prerm(&units).contains("app@"));
        let rm = postrm(&units);
        assert!(
            rm.contains("mask 'app.service'") && !rm.contains("app@"),
            "{rm}"
        );

        let only = [unit("app@.service", true, true)];
        let post = postinst(&only);
        assert!(post.contains("systemctl --system daemon-reload"), "{post}");
        assert!(!post.contains("deb-systemd"), "{post}");
        assert!(prerm(&only).is_empty());
        let rm = postrm(&only);
        assert!(
            rm.contains("daemon-reload") && !rm.contains("deb-systemd-helper"),
            "{rm}"
        );
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
        let post = postinst(&[unit(name, true, true)]);
        assert!(
            post.contains(r"enable 'x'\''$(touch PWNED)'\''.service'"),
            "{post}"
        );
    }

    #[test]
    fn merge_places_snippets() {
        assert_eq!(
            merge(Some("#!/bin/sh\nset -e\n#DEBHELPER#\necho hi\n"), "X\n").unwrap(),
            "#!/bin/sh\nset -e\nX\necho hi\n"
        );
        assert_eq!(
            merge(Some("#!/bin/sh\necho hi\nexit 0\n"), "X\n").unwrap(),
            "#!/bin/sh\necho hi\n\nX\n\nexit 0\n"
        );
        assert_eq!(merge(None, "X\n").unwrap(), "#!/bin/sh\nset -e\n\nX\n");
        assert!(merge(None, "").is_none());
    }
}
