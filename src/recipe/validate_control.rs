//! Checks on the control.tar files builder writes from the recipe besides the maintainer
//! scripts: debconf `templates` (read at validation time, like the scripts, so `validate`
//! refuses what debconf would) and the `[triggers]` table (deb-triggers(5)). Each check
//! returns a message with a fix; positions are the caller's.

use std::collections::HashMap;
use std::path::Path;

use toml::Spanned;

use super::model::Trigger;
use super::raw::RawTriggers;
use super::validate::Ctx;
use super::validate_scripts::{invalid_utf8_line, read, Problem};
use crate::diag::escape_controls;

/// The question types debconf knows (debconf-devel(7), "Templates").
const TEMPLATE_TYPES: &[&str] = &[
    "string",
    "password",
    "boolean",
    "select",
    "multiselect",
    "note",
    "text",
    "title",
    "error",
];

fn problem(message: String, help: impl Into<String>) -> Problem {
    Problem {
        message,
        help: help.into(),
    }
}

/// A debconf templates file: UTF-8 deb822 stanzas, each with `Template:` (the question's
/// name, `package/question`) and a known `Type:`. Every problem names `rel:line`.
pub(super) fn check_templates(full: &Path, rel: &Path) -> Result<(), Problem> {
    let shown = rel.display();
    let bytes = read(full, rel, "the debconf templates")?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = invalid_utf8_line(&bytes, &e);
        problem(
            format!("`{shown}:{line}`: the debconf templates are not UTF-8 text"),
            format!("convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8 {shown}`"),
        )
    })?;
    let mut count = 0;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for para in crate::debian::deb822::paragraphs(text) {
        let para = para.map_err(|e| {
            problem(
                format!(
                    "`{shown}:{}`: not a debconf template stanza: {}",
                    e.line, e.reason
                ),
                "write each template as `Field: value` lines (continuation lines start \
                 with a space), stanzas separated by a blank line",
            )
        })?;
        count += 1;
        let at = format!("`{shown}:{}`", para.line);
        let Some(name) = para.get("Template") else {
            return Err(problem(
                format!("{at}: this stanza has no `Template:` field"),
                "start each stanza with `Template: <package>/<question>`",
            ));
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(problem(
                format!(
                    "{at}: `Template: {}` is not a question name",
                    escape_controls(name)
                ),
                "name the question `<package>/<question>`, without spaces",
            ));
        }
        if let Some(first) = seen.insert(name, para.line) {
            return Err(problem(
                format!("{at}: the template `{name}` is already defined on line {first}"),
                "define each question once",
            ));
        }
        match para.get("Type") {
            None => {
                return Err(problem(
                    format!("{at}: the template `{name}` has no `Type:` field"),
                    format!(
                        "add e.g. `Type: boolean`; debconf knows {}",
                        TEMPLATE_TYPES.join(", ")
                    ),
                ))
            }
            Some(t) if !TEMPLATE_TYPES.contains(&t) => {
                return Err(problem(
                    format!(
                        "{at}: the template `{name}` has `Type: {}`, which debconf does not know",
                        escape_controls(t)
                    ),
                    format!("use one of {}", TEMPLATE_TYPES.join(", ")),
                ))
            }
            Some(_) => {}
        }
    }
    if count == 0 {
        return Err(problem(
            format!("the debconf templates `{shown}` hold no template"),
            "add a stanza such as `Template: <package>/<question>` and `Type: boolean`, or \
             remove `templates`",
        ));
    }
    Ok(())
}

/// Why dpkg would refuse `name` in a triggers file, if it would (dpkg's
/// `trig_name_is_illegal`, and file triggers as normalised absolute paths, which is how
/// dpkg matches them against the files packages install).
fn trigger_problem(name: &str) -> Option<Problem> {
    let shown = escape_controls(name);
    if name.is_empty() {
        return Some(problem(
            "an empty trigger name".into(),
            "name a file trigger by its absolute path (`/usr/share/x`) or an explicit \
             trigger by a word (`ldconfig`)",
        ));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic()) {
        let what = if c == ' ' {
            "a space".to_string()
        } else {
            format!("U+{:04X}", c as u32)
        };
        return Some(problem(
            format!("the trigger name `{shown}` contains {what}: dpkg allows printable ASCII without spaces"),
            "rename the trigger",
        ));
    }
    if let Some(body) = name.strip_prefix('/') {
        let normal = !body.is_empty()
            && body
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != "..");
        if !normal {
            return Some(problem(
                format!("the file trigger `{shown}` is not a normalised absolute path: dpkg compares it with the paths packages install"),
                format!("write it as `/{}`, without `//`, `.`, `..` or a trailing `/`", body.trim_matches('/')),
            ));
        }
    }
    None
}

/// The `[triggers]` table: every name checked at its position; a name listed twice for
/// interest (or twice for activation) is refused where it is written the second time,
/// since dpkg takes one mode per trigger.
pub(super) fn triggers(ctx: &mut Ctx<'_>, raw: Spanned<RawTriggers>) -> Vec<Trigger> {
    let raw = raw.into_inner();
    let mut valid: Vec<(&'static str, &Spanned<String>)> = Vec::new();
    for (directive, names) in [
        ("interest", &raw.interest),
        ("interest-await", &raw.interest_await),
        ("interest-noawait", &raw.interest_noawait),
        ("activate", &raw.activate),
        ("activate-await", &raw.activate_await),
        ("activate-noawait", &raw.activate_noawait),
    ] {
        for n in names {
            match trigger_problem(n.get_ref()) {
                Some(p) => {
                    ctx.err(n.span(), format!("`{directive}`: {}", p.message))
                        .help = Some(p.help)
                }
                None => valid.push((directive, n)),
            }
        }
    }
    // In the order written, so the second mention is the one reported.
    let mut by_position = valid.clone();
    by_position.sort_by_key(|(_, n)| n.span().start);
    let mut first: HashMap<(bool, &str), &'static str> = HashMap::new();
    for (directive, n) in by_position {
        let interest = directive.starts_with("interest");
        let Some(earlier) = first.insert((interest, n.get_ref()), directive) else {
            continue;
        };
        first.insert((interest, n.get_ref()), earlier);
        let name = n.get_ref();
        let (msg, help) = if earlier == directive {
            (
                format!("`{name}` is listed twice in `{directive}`"),
                "list each trigger once".to_string(),
            )
        } else {
            let mode = if interest { "interest" } else { "activation" };
            (
                format!("`{name}` is listed in both `{earlier}` and `{directive}`"),
                format!("keep it in one of them; dpkg takes one {mode} mode per trigger"),
            )
        };
        ctx.err(n.span(), msg).help = Some(help);
    }
    valid
        .into_iter()
        .map(|(directive, n)| Trigger {
            directive,
            name: n.get_ref().clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_names_follow_dpkg() {
        for ok in [
            "/usr/share/x",
            "/usr/lib/x.d",
            "ldconfig",
            "my-trigger:amd64",
        ] {
            assert!(trigger_problem(ok).is_none(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "caf\u{e9}",
            "x\ty",
            "/",
            "/usr//x",
            "/usr/x/",
            "/usr/../x",
        ] {
            assert!(trigger_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn templates_need_template_and_type_and_say_where() {
        let dir = tempfile::tempdir().unwrap();
        let check = |text: &str| {
            let p = dir.path().join("templates");
            std::fs::write(&p, text).unwrap();
            check_templates(&p, Path::new("debian/templates")).map_err(|e| e.message)
        };
        let good = "Template: demo/ok\nType: boolean\nDefault: true\nDescription: Fine?\n \
                    Long text.\n\nTemplate: demo/name\nType: string\nDescription: Name\n";
        assert!(check(good).is_ok());
        let e = check("Template: demo/ok\nType: boolean\n\nTemplate: demo/x\nDescription: y\n")
            .unwrap_err();
        assert!(
            e.contains("`debian/templates:4`") && e.contains("no `Type:`"),
            "{e}"
        );
        let e = check("Type: boolean\nDescription: y\n").unwrap_err();
        assert!(
            e.contains("`debian/templates:1`") && e.contains("`Template:`"),
            "{e}"
        );
        let e = check("Template: a/b\nType: bool\n").unwrap_err();
        assert!(e.contains("`Type: bool`"), "{e}");
        let e = check("Template: a/b\nType: note\n\nTemplate: a/b\nType: note\n").unwrap_err();
        assert!(e.contains(":4`") && e.contains("line 1"), "{e}");
        assert!(check("\n\n").unwrap_err().contains("no template"));
        assert!(check("Template: a/b\n Type: note\n").is_err());
    }
}
