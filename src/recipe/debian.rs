//! Debian policy rules for control-field values: package names, versions, architectures,
//! relationship fields, sections, priorities, maintainers and descriptions. Each check returns
//! a message that says what is wrong and what a valid value looks like.

/// Policy 5.6.1: lowercase letters, digits, `+`, `-`, `.`; at least two characters; starts
/// with an alphanumeric.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.len() < 2 || !ok_chars || !first_ok {
        return Err(format!(
            "`{name}` is not a valid Debian package name: use at least two characters of \
             lowercase letters, digits, `+`, `-` and `.`, starting with a letter or digit"
        ));
    }
    Ok(())
}

/// The parts of a Debian version `[epoch:]upstream[-revision]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    pub epoch: Option<u32>,
    pub upstream: String,
    pub revision: Option<String>,
}

/// Policy 5.6.12. Accepts a full version string.
pub(crate) fn parse_version(v: &str) -> Result<Version, String> {
    if v.is_empty() {
        return Err("the version is empty: write e.g. `1.4.0`".into());
    }
    if let Some(c) = v.chars().find(|c| c.is_whitespace()) {
        return Err(format!(
            "version `{v}` contains whitespace ({c:?}): remove it"
        ));
    }
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) => {
            // Policy 5.6.12: the epoch is digits only (`parse` would also take `+1`).
            if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "the epoch `{e}` in version `{v}` must be digits only, e.g. `1:{rest}`"
                ));
            }
            // dpkg keeps the epoch in an int: at most 2147483647.
            let epoch = e
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= i32::MAX as u32)
                .ok_or_else(|| {
                    format!(
                        "the epoch `{e}` in version `{v}` must be an integer from 0 to \
                         2147483647"
                    )
                })?;
            (Some(epoch), rest)
        }
        None => (None, v),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => (u, Some(r)),
        None => (rest, None),
    };
    check_upstream(upstream, revision.is_some(), epoch.is_some())?;
    if let Some(r) = revision {
        check_revision(r)?;
    }
    Ok(Version {
        epoch,
        upstream: upstream.to_string(),
        revision: revision.map(str::to_string),
    })
}

fn check_upstream(u: &str, has_revision: bool, has_epoch: bool) -> Result<(), String> {
    if !u.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the upstream version `{u}` must start with a digit (e.g. `1.4.0`, not `v1.4.0`)"
        ));
    }
    for c in u.chars() {
        let ok = c.is_ascii_alphanumeric()
            || ".+~".contains(c)
            || (c == '-' && has_revision)
            || (c == ':' && has_epoch);
        if !ok {
            return Err(format!(
                "the upstream version `{u}` contains `{c}`: only letters, digits and `.+~` are \
                 allowed (`-` only with a revision, `:` only with an epoch)"
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_revision(r: &str) -> Result<(), String> {
    if r.is_empty()
        || !r
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.~".contains(c))
    {
        return Err(format!(
            "the Debian revision `{r}` may only contain letters, digits and `+.~` (e.g. `1`)"
        ));
    }
    Ok(())
}

/// Architectures dpkg knows (plus `all`); `any` is for source packages only.
pub(crate) const ARCHITECTURES: &[&str] = &[
    "all", "amd64", "arm64", "armel", "armhf", "i386", "mips64el", "mipsel", "ppc64el", "riscv64",
    "s390x", "loong64", "alpha", "hppa", "ia64", "m68k", "powerpc", "ppc64", "sh4", "sparc64",
    "x32",
];

pub(crate) fn check_architecture(a: &str) -> Result<(), String> {
    if ARCHITECTURES.contains(&a) {
        Ok(())
    } else if a == "any" {
        Err("`any` is only valid in source packages: a binary package needs a concrete architecture such as `amd64`, or `all`".into())
    } else {
        Err(format!(
            "unknown architecture `{a}`: use a Debian architecture such as `amd64`, `arm64` or `all`"
        ))
    }
}

/// Policy 5.6.5 sections, optionally prefixed by an archive area.
pub(crate) const SECTIONS: &[&str] = &[
    "admin",
    "cli-mono",
    "comm",
    "database",
    "debug",
    "devel",
    "doc",
    "editors",
    "education",
    "electronics",
    "embedded",
    "fonts",
    "games",
    "gnome",
    "gnu-r",
    "gnustep",
    "graphics",
    "hamradio",
    "haskell",
    "httpd",
    "interpreters",
    "introspection",
    "java",
    "javascript",
    "kde",
    "kernel",
    "libdevel",
    "libs",
    "lisp",
    "localization",
    "mail",
    "math",
    "metapackages",
    "misc",
    "net",
    "news",
    "ocaml",
    "oldlibs",
    "otherosfs",
    "perl",
    "php",
    "python",
    "ruby",
    "rust",
    "science",
    "shells",
    "sound",
    "tasks",
    "tex",
    "text",
    "utils",
    "vcs",
    "video",
    "web",
    "x11",
    "xfce",
    "zope",
];

pub(crate) fn check_section(s: &str) -> Result<(), String> {
    let base = match s.split_once('/') {
        Some((area, base)) if ["contrib", "non-free", "non-free-firmware"].contains(&area) => base,
        Some(_) => {
            return Err(format!(
                "unknown archive area in section `{s}`: use `contrib/`, `non-free/` or no prefix"
            ))
        }
        None => s,
    };
    if SECTIONS.contains(&base) {
        Ok(())
    } else {
        Err(format!(
            "unknown section `{s}`: use a Debian section such as `net`, `web`, `utils` or `misc`"
        ))
    }
}

pub(crate) const PRIORITIES: &[&str] = &["required", "important", "standard", "optional", "extra"];

pub(crate) fn check_priority(p: &str) -> Result<(), String> {
    if PRIORITIES.contains(&p) {
        Ok(())
    } else {
        Err(format!(
            "unknown priority `{p}`: use one of {}",
            PRIORITIES.join(", ")
        ))
    }
}

/// `Full Name <user@example.com>` (Policy 5.6.2).
pub(crate) fn check_maintainer(m: &str) -> Result<(), String> {
    let well_formed = m
        .strip_suffix('>')
        .and_then(|rest| rest.split_once('<'))
        .is_some_and(|(name, email)| {
            !name.trim().is_empty()
                && name.ends_with(' ')
                && email.contains('@')
                && !email.contains(char::is_whitespace)
        });
    if well_formed && !m.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(format!(
            "maintainer `{m}` must look like `Full Name <user@example.com>`"
        ))
    }
}

/// Splits a description into the synopsis (first line) and the extended lines, checking the
/// rules from Policy 5.6.13.
pub(crate) fn split_description(d: &str) -> Result<(String, Vec<String>), String> {
    check_description_chars(d)?;
    let mut lines = d.lines();
    let synopsis = lines.next().unwrap_or("").trim().to_string();
    if synopsis.is_empty() {
        return Err("the description needs a one-line synopsis on its first line".into());
    }
    if synopsis.chars().count() > 80 {
        return Err(format!(
            "the synopsis (first line of the description) is {} characters long: keep it under 80 and move detail to the following lines",
            synopsis.chars().count()
        ));
    }
    let mut long: Vec<String> = lines.map(|l| l.trim_end().to_string()).collect();
    while long.first().is_some_and(|l| l.is_empty()) {
        long.remove(0);
    }
    while long.last().is_some_and(|l| l.is_empty()) {
        long.pop();
    }
    Ok((synopsis, long))
}

/// Only newlines may separate a description's lines: any other control character (a NUL
/// truncates what `dpkg -s` shows, a tab breaks the synopsis) is refused with its line and
/// column in the description's text.
fn check_description_chars(d: &str) -> Result<(), String> {
    for (i, line) in d.split('\n').enumerate() {
        // A recipe saved with CRLF line endings.
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some((col, c)) = line.chars().enumerate().find(|(_, c)| c.is_control()) {
            let at = format!("line {}, column {} of its text", i + 1, col + 1);
            return Err(if c == '\t' {
                format!("the description contains a tab ({at}): use spaces")
            } else {
                format!(
                    "the description contains the control character U+{:04X} ({at}): remove it; \
                     only newlines may separate the description's lines",
                    c as u32
                )
            });
        }
    }
    Ok(())
}

/// The control-file form of a description: synopsis, then each extended line indented by
/// one space, blank lines as ` .`.
pub(crate) fn format_description(synopsis: &str, long: &[String]) -> String {
    let mut out = synopsis.to_string();
    for l in long {
        out.push('\n');
        // A blank line, or a lone `.` as Debian writes it, separates paragraphs.
        if l.trim().is_empty() || l.trim() == "." {
            out.push_str(" .");
        } else {
            out.push(' ');
            out.push_str(l);
        }
    }
    out
}

/// `Built-Using` and `Static-Built-Using` name exact source versions (Policy 7.8): each
/// entry is `source (= version)`, without alternatives or architecture restrictions.
pub(crate) fn check_built_using(entry: &str, field: &str) -> Result<(), String> {
    let e = entry.trim();
    let bad = || {
        format!(
            "`{}` in `{field}` must name a source package and its exact version, e.g. `golang-1.19 (= 1.19.8-2)`",
            e.escape_debug()
        )
    };
    let (name, rest) = e.split_once('(').ok_or_else(bad)?;
    let version = rest
        .trim()
        .strip_suffix(')')
        .and_then(|r| r.trim().strip_prefix('='))
        .filter(|v| !v.starts_with(['<', '>', '=']))
        .ok_or_else(bad)?;
    check_name(name.trim())?;
    parse_version(version.trim()).map(|_| ())
}

/// The `Source` field: a source package name, optionally with its version in parentheses
/// when the binary's version differs (`name (1.2-1)`). Returns the value as written to the
/// control file.
pub(crate) fn check_source(v: &str) -> Result<String, String> {
    let v = v.trim();
    let (name, version) = match v.split_once('(') {
        None => (v, None),
        Some((n, rest)) => {
            let ver = rest.trim().strip_suffix(')').ok_or_else(|| {
                format!(
                    "source `{}` must be `name` or `name (version)`",
                    v.escape_debug()
                )
            })?;
            (n.trim(), Some(ver.trim()))
        }
    };
    check_name(name)?;
    match version {
        None => Ok(name.to_string()),
        Some(ver) => {
            parse_version(ver)?;
            Ok(format!("{name} ({ver})"))
        }
    }
}

/// Fields builder writes itself or Debian defines: a user field must not stand in for one.
const KNOWN_FIELDS: &[&str] = &[
    "package",
    "package-type",
    "source",
    "version",
    "architecture",
    "essential",
    "protected",
    "maintainer",
    "installed-size",
    "pre-depends",
    "depends",
    "recommends",
    "suggests",
    "enhances",
    "conflicts",
    "breaks",
    "replaces",
    "provides",
    "built-using",
    "static-built-using",
    "section",
    "priority",
    "multi-arch",
    "homepage",
    "description",
    "origin",
    "bugs",
    "tag",
    "task",
    "conffiles",
    "filename",
    "size",
    "md5sum",
    "sha256",
    "description-md5",
    "status",
    "config-version",
    "build-essential",
    "auto-built-package",
    "built-for-profiles",
    "subarchitecture",
    "kernel-version",
    "installer-menu-item",
    "original-maintainer",
];

/// A user-defined field from `fields`: `X-Name` is written as it is; `X` plus any of `B`,
/// `C`, `S` and a hyphen (deb-src-control(5), "User-defined fields") is written without
/// that prefix when `B` (binary package) is among the letters, and refused otherwise
/// (builder writes no source package; `.changes` fields are not supported). Returns the
/// field to write, or `(on_value, message)`.
pub(crate) fn user_field(
    name: &str,
    value: &str,
) -> Result<Option<(String, String)>, (bool, String)> {
    let shown = name.escape_debug().to_string();
    let valid_chars = !name.is_empty()
        && name
            .bytes()
            .all(|b| (b'!'..=b'~').contains(&b) && b != b':')
        && !name.starts_with(['#', '-']);
    if !valid_chars {
        return Err((
            false,
            format!("`{shown}` is not a control field name: use printable ASCII without spaces or `:`, e.g. `X-Origin-Commit`"),
        ));
    }
    let Some((prefix, rest)) = name.split_once('-') else {
        return Err((
            false,
            format!("user field `{shown}` must start with `X-` or `XB-`, e.g. `X-{shown}`"),
        ));
    };
    let letters = prefix
        .strip_prefix('X')
        .filter(|l| l.bytes().all(|b| b"BCS".contains(&b)));
    let out = match letters {
        Some("") => name.to_string(),
        Some(l) if l.contains('B') => rest.to_string(),
        Some(_) => {
            return Err((
                false,
                format!("`{shown}` goes only into source or .changes files, which builder does not write: use `XB-{rest}` for the binary package"),
            ))
        }
        None => {
            return Err((false, format!("user field `{shown}` must start with `X-` or `XB-`, e.g. `X-{shown}`")))
        }
    };
    if rest.is_empty() || KNOWN_FIELDS.iter().any(|k| k.eq_ignore_ascii_case(&out)) {
        return Err((
            false,
            format!("`{shown}` would write the field `{out}`, which Debian defines or builder writes itself: choose another name"),
        ));
    }
    let v = value.trim();
    if v.is_empty() {
        return Err((true, format!("field `{shown}` has an empty value")));
    }
    if v.chars().any(char::is_control) {
        return Err((
            true,
            format!("the value of `{shown}` contains a control character (a newline?): write it on one line"),
        ));
    }
    Ok(Some((out, v.to_string())))
}

/// Checks one relationship entry such as `libc6 (>= 2.31) | libc6-udeb [amd64]`.
/// `provides` allows only `=` relations (Policy 7.5).
pub(crate) fn check_relation(entry: &str, field: &str) -> Result<(), String> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err(format!("empty entry in `{field}`: remove it"));
    }
    if entry.chars().any(|c| c.is_control()) {
        return Err(format!(
            "`{}` in `{field}` contains a control character (a newline?): write it on one line",
            entry.escape_debug()
        ));
    }
    if entry.starts_with("${") || entry.contains("${") {
        return Err(format!(
            "`{}` in `{field}`: the only substitution variable builder knows in a relation list is `{}` (in `depends` or `pre-depends`); write the relation itself",
            entry.escape_debug(),
            super::SHLIBS_DEPENDS
        ));
    }
    if entry.contains(',') {
        return Err(format!(
            "`{entry}` in `{field}` contains a comma: write each relation as its own array element"
        ));
    }
    let alternatives: Vec<&str> = entry.split('|').collect();
    if alternatives.len() > 1 && matches!(field, "provides" | "conflicts" | "breaks" | "replaces") {
        return Err(format!(
            "`{field}` does not allow alternatives (`|`): write separate entries"
        ));
    }
    for alt in alternatives {
        check_alternative(alt.trim(), field)?;
    }
    Ok(())
}

fn check_alternative(alt: &str, field: &str) -> Result<(), String> {
    let mut rest = alt;
    let name_end = rest
        .find(|c: char| c.is_whitespace() || c == '(' || c == '[' || c == '<')
        .unwrap_or(rest.len());
    let name = &rest[..name_end];
    let bare = match name.split_once(':') {
        None => name,
        Some((n, arch)) => {
            // dpkg's arch qualifier: `any`, `native` or an architecture name.
            let ok = !arch.is_empty()
                && arch.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && arch
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(format!(
                    "in `{field}` entry `{alt}`: `{arch}` is not an architecture qualifier; \
                     write `name:any`, `name:native` or `name:amd64`"
                ));
            }
            n
        }
    };
    check_name(bare).map_err(|e| format!("in `{field}` entry `{alt}`: {e}"))?;
    rest = rest[name_end..].trim_start();
    if let Some(r) = rest.strip_prefix('(') {
        let (inner, after) = r
            .split_once(')')
            .ok_or_else(|| format!("in `{field}` entry `{alt}`: missing `)`"))?;
        let inner = inner.trim();
        let op_len = inner
            .find(|c: char| !"<>=".contains(c))
            .unwrap_or(inner.len());
        let (op, version) = inner.split_at(op_len);
        let allowed: &[&str] = if field == "provides" {
            &["="]
        } else {
            &["<<", "<=", "=", ">=", ">>"]
        };
        if !allowed.contains(&op) {
            return Err(format!(
                "in `{field}` entry `{alt}`: unknown relation `{op}`; use one of {}",
                allowed.join(" ")
            ));
        }
        parse_version(version.trim()).map_err(|e| format!("in `{field}` entry `{alt}`: {e}"))?;
        rest = after.trim_start();
    }
    // `[arch]` lists and `<profile>`s belong to source packages' Build-Depends; dpkg
    // refuses them in a binary package's fields.
    if rest.starts_with('[') || rest.starts_with('<') {
        return Err(format!(
            "in `{field}` entry `{alt}`: `{rest}` (architecture lists and build profiles) is \
             only valid in a source package's Build-Depends; remove it"
        ));
    }
    if !rest.is_empty() {
        return Err(format!(
            "in `{field}` entry `{alt}`: unexpected `{rest}`; write `name (>= 1.0)`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("backend").is_ok());
        assert!(check_name("libfoo2.0+x").is_ok());
        assert!(check_name("Backend").is_err());
        assert!(check_name("a").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("foo_bar").is_err());
    }

    #[test]
    fn versions() {
        let v = parse_version("1:2.3~rc1-4").unwrap();
        assert_eq!(v.epoch, Some(1));
        assert_eq!(v.upstream, "2.3~rc1");
        assert_eq!(v.revision.as_deref(), Some("4"));
        assert!(parse_version("1.0-1-2").is_ok()); // upstream may hold `-` with a revision
        assert!(parse_version("v1.0").is_err());
        assert!(parse_version("1.0 ").is_err());
        assert!(parse_version("x:1.0").is_err());
        assert!(parse_version("2147483647:1.0").is_ok());
        assert!(parse_version("2147483648:1.0").is_err());
        assert!(parse_version("1.0_1").is_err());
        assert!(parse_version("1.0-").is_err());
        assert!(parse_version("+1:1.0").is_err());
        assert!(parse_version(":1.0").is_err());
        assert!(parse_version("0:1.0").is_ok());
    }

    #[test]
    fn relations() {
        assert!(check_relation("libc6 (>= 2.31)", "depends").is_ok());
        assert!(check_relation("aa | bb (<< 2)", "depends").is_ok());
        // dpkg refuses source-only syntax and bad qualifiers in a binary package
        assert!(check_relation("aa | bb (<< 2) [amd64]", "depends").is_err());
        assert!(check_relation("bb <!nocheck>", "depends").is_err());
        assert!(check_relation("foo:", "depends").is_err());
        assert!(check_relation("foo:Bad_Arch", "depends").is_err());
        assert!(check_relation("foo:any", "depends").is_ok());
        assert!(check_relation("foo:amd64 (>= 1)", "depends").is_ok());
        assert!(check_relation("foo\n(>= 1)", "depends").is_err());
        assert!(check_relation("libc6 (=> 2)", "depends").is_err());
        assert!(check_relation("a, b", "depends").is_err());
        assert!(check_relation("xx (>= 1)", "provides").is_err());
        assert!(check_relation("xx (= 1)", "provides").is_ok());
        assert!(check_relation("Foo", "depends").is_err());
        let misc = check_relation("${misc:Depends}", "depends").unwrap_err();
        assert!(misc.contains("${shlibs:Depends}"), "{misc}");
    }

    #[test]
    fn descriptions() {
        let (s, l) = split_description("Short\n\nLong line\n\nMore\n").unwrap();
        assert_eq!(s, "Short");
        assert_eq!(format_description(&s, &l), "Short\n Long line\n .\n More");
        assert!(split_description("").is_err());
        assert!(split_description(&"x".repeat(81)).is_err());
        assert!(split_description("Short\r\n\r\nLong\r\n").is_ok());
        let nul = split_description("An app\0 with a NUL").unwrap_err();
        assert!(nul.contains("U+0000 (line 1, column 7"), "{nul}");
        let tab = split_description("Tab\tin the synopsis").unwrap_err();
        assert!(tab.contains("tab (line 1, column 4"), "{tab}");
        assert!(split_description("Short\n\nlong \x1b[31m red").is_err());
        assert!(split_description("Short\rnot a newline").is_err());
    }

    #[test]
    fn maintainers() {
        assert!(check_maintainer("Ops <ops@example.com>").is_ok());
        assert!(check_maintainer("ops@example.com").is_err());
        assert!(check_maintainer("<ops@example.com>").is_err());
        assert!(check_maintainer("Ops\0 <ops@example.com>").is_err());
    }
}
