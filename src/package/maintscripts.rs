//! The control.tar files besides `control`, `md5sums` and `conffiles`: maintainer scripts
//! (the recipe's own, with the generated snippets merged in as dh_installdeb merges them),
//! debconf's `config` and `templates`, and `triggers`. Snippets are collected the way
//! debhelper's `autoscript` collects them (appended to preinst/postinst, prepended to
//! prerm/postrm so removal runs them in reverse, service snippets in a file of their own);
//! what they say is [`super::systemd`]'s and [`debconf_postrm`]'s business.
//!
//! This module only reads the files the recipe names; it decides nothing about the data
//! tree or the control fields (see [`generated_depends`] for what the lead's fields need).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::systemd;
use crate::deb::Script;
use crate::recipe::{Recipe, Trigger};

/// The token users put in their maintainer scripts where generated snippets belong.
pub(crate) const TOKEN: &str = "#DEBHELPER#";

/// The version of debhelper whose snippets builder writes: bookworm's.
pub(crate) const DEBHELPER_VERSION: &str = "13.11.4";

/// The Depends dh_installdebconf adds (through `${misc:Depends}`) to a package with a
/// debconf config script or templates.
pub(crate) const DEBCONF_DEPENDS: &str = "debconf (>= 0.5) | debconf-2.0";

/// Relations builder's generated scripts need, for `Depends`, as debhelper adds them to
/// `${misc:Depends}`: today `debconf (>= 0.5) | debconf-2.0` when the recipe has a debconf
/// `config` script or `templates`.
pub(crate) fn generated_depends(recipe: &Recipe) -> Vec<String> {
    let mut out = Vec::new();
    if recipe.scripts.uses_debconf() {
        out.push(DEBCONF_DEPENDS.to_string());
    }
    out
}

/// Where a snippet goes: debhelper keeps service snippets (`snippet-order => 'service'`)
/// apart from the others and puts them after them in preinst/postinst, before them in
/// prerm/postrm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Order {
    Default,
    Service,
}

/// Generated snippets per script, as debhelper's `autoscript` writes them into
/// `debian/<pkg>.<script>.debhelper` and `debian/.debhelper/generated/<pkg>/<script>.service`.
#[derive(Debug, Default)]
pub(crate) struct Autoscripts {
    parts: BTreeMap<(Script, Order), String>,
}

impl Autoscripts {
    /// Adds `body` (an autoscript with its placeholders filled) written by debhelper's
    /// `tool`, framed like debhelper's blocks, with builder's name in the marker line.
    pub(crate) fn add(&mut self, script: Script, order: Order, tool: &str, body: &str) {
        let block = format!(
            "# Automatically added by builder (as {tool}/{DEBHELPER_VERSION})\n{body}# End automatically added section\n"
        );
        let part = self.parts.entry((script, order)).or_default();
        if matches!(script, Script::Prerm | Script::Postrm) {
            // Removal runs the snippets in the reverse order of installation.
            part.insert_str(0, &block);
        } else {
            part.push_str(&block);
        }
    }

    /// What replaces `#DEBHELPER#` in `script` (dh_installdeb's `debhelper_script_subst`).
    pub(crate) fn text(&self, script: Script) -> String {
        let mut orders = [Order::Default, Order::Service];
        if matches!(script, Script::Prerm | Script::Postrm) {
            orders.reverse();
        }
        orders
            .iter()
            .filter_map(|o| self.parts.get(&(script, *o)))
            .map(String::as_str)
            .collect()
    }
}

/// dh_installdebconf's `postrm-debconf`: forget the package's questions on purge.
pub(crate) fn debconf_postrm(out: &mut Autoscripts) {
    out.add(
        Script::Postrm,
        Order::Default,
        "dh_installdebconf",
        "if [ \"$1\" = purge ] && [ -e /usr/share/debconf/confmodule ]; then\n\
         \t. /usr/share/debconf/confmodule\n\
         \tdb_purge\n\
         fi\n",
    );
}

/// The snippets debhelper's tools would generate for the recipe, in the order `dh` runs
/// them (dh_installdebconf before dh_installsystemd).
pub(crate) fn autoscripts(recipe: &Recipe) -> Autoscripts {
    let mut out = Autoscripts::default();
    if recipe.scripts.uses_debconf() {
        debconf_postrm(&mut out);
    }
    systemd::add(&mut out, &recipe.systemd);
    out
}

/// Merges generated snippets into a user script as dh_installdeb does: `#DEBHELPER#` is
/// replaced by them (an empty string without snippets). Without the token, builder (unlike
/// debhelper, which would drop them) places them before a final `exit 0`, or at the end.
/// With no user script, a fresh `/bin/sh` script as dh_installdeb writes it.
pub(crate) fn merge(user: Option<&str>, snippets: &str) -> Option<String> {
    match (user, snippets.is_empty()) {
        (None, true) => None,
        (Some(u), true) => Some(u.replace(TOKEN, "")),
        (None, false) => Some(format!("#!/bin/sh\nset -e\n{snippets}")),
        (Some(u), false) => {
            if u.contains(TOKEN) {
                return Some(u.replace(TOKEN, snippets));
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

fn read_text(recipe: &Recipe, path: &Path, what: &str) -> anyhow::Result<String> {
    let full = recipe.project.join(path);
    std::fs::read_to_string(&full)
        .with_context(|| format!("could not read {what} `{}`", full.display()))
}

fn read_script(recipe: &Recipe, path: &Option<PathBuf>) -> anyhow::Result<Option<String>> {
    let Some(p) = path else { return Ok(None) };
    let text = read_text(recipe, p, "maintainer script")?;
    if !text.starts_with("#!") {
        return Err(crate::error::usage(format!(
            "maintainer script `{}` must start with a `#!` line, e.g. `#!/bin/sh`",
            p.display()
        )));
    }
    Ok(Some(text))
}

/// The control.tar `triggers` file: one `directive name` line per trigger.
pub(crate) fn triggers_file(triggers: &[Trigger]) -> String {
    triggers
        .iter()
        .map(|t| format!("{} {}\n", t.directive, t.name))
        .collect()
}

/// Every control.tar file of the recipe besides `control`, `md5sums` and `conffiles`.
pub(crate) fn control_files(recipe: &Recipe) -> anyhow::Result<Vec<(Script, Vec<u8>)>> {
    let s = &recipe.scripts;
    let generated = autoscripts(recipe);
    let mut files = Vec::new();
    for (kind, user) in [
        (Script::Preinst, &s.preinst),
        (Script::Postinst, &s.postinst),
        (Script::Prerm, &s.prerm),
        (Script::Postrm, &s.postrm),
        (Script::Config, &s.config),
    ] {
        let user = read_script(recipe, user)?;
        if let Some(text) = merge(user.as_deref(), &generated.text(kind)) {
            files.push((kind, text.into_bytes()));
        }
    }
    if let Some(t) = &s.templates {
        let text = read_text(recipe, t, "the debconf templates")?;
        files.push((Script::Templates, text.into_bytes()));
    }
    if !recipe.triggers.is_empty() {
        files.push((
            Script::Triggers,
            triggers_file(&recipe.triggers).into_bytes(),
        ));
    }
    Ok(files)
}

/// The files [`control_files`] reads, for the SOURCE_DATE_EPOCH fallback.
pub(crate) fn inputs(recipe: &Recipe) -> impl Iterator<Item = PathBuf> + '_ {
    let s = &recipe.scripts;
    [
        &s.preinst,
        &s.postinst,
        &s.prerm,
        &s.postrm,
        &s.config,
        &s.templates,
    ]
    .into_iter()
    .flatten()
    .map(|p| recipe.project.join(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_places_snippets_as_dh_installdeb() {
        assert_eq!(
            merge(Some("#!/bin/sh\nset -e\n#DEBHELPER#\necho hi\n"), "X\n").unwrap(),
            "#!/bin/sh\nset -e\nX\n\necho hi\n"
        );
        assert_eq!(
            merge(Some("#!/bin/sh\necho hi\nexit 0\n"), "X\n").unwrap(),
            "#!/bin/sh\necho hi\n\nX\n\nexit 0\n"
        );
        assert_eq!(merge(None, "X\n").unwrap(), "#!/bin/sh\nset -e\nX\n");
        assert_eq!(
            merge(Some("#!/bin/sh\n#DEBHELPER#\n"), "").unwrap(),
            "#!/bin/sh\n\n"
        );
        assert!(merge(None, "").is_none());
    }

    #[test]
    fn removal_scripts_run_snippets_in_reverse() {
        let mut a = Autoscripts::default();
        a.add(Script::Postrm, Order::Default, "t", "first\n");
        a.add(Script::Postrm, Order::Default, "t", "second\n");
        a.add(Script::Postrm, Order::Service, "t", "service\n");
        a.add(Script::Postinst, Order::Service, "t", "service\n");
        a.add(Script::Postinst, Order::Default, "t", "first\n");
        let body = |s: Script| {
            a.text(s)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(body(Script::Postrm), "service second first");
        assert_eq!(body(Script::Postinst), "first service");
    }
}
