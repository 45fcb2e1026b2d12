//! Raw recipe → validated [`Recipe`], collecting every problem as a diagnostic with a span.
//! Paths are checked against the project root: `from` may not escape it (no `..` out, no
//! absolute path outside, no symlink pointing out); `to` must be absolute and normalised.

use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use super::debian;
use super::model::*;
use super::raw::*;
use super::validate_paths::{
    check_layout, check_to, conffile_source, dir_mode_problem, mode_problem, Entry,
};
use super::validate_scripts::{check_script, check_unit_name, Problem};
use crate::diag::escape_controls;
use crate::diag::Collector;

pub(super) struct Ctx<'a> {
    /// File, text, line index and the problems found: [`crate::diag::Collector`]'s checks
    /// are called on `Ctx` directly (it derefs to the collector).
    pub out: Collector<'a>,
    pub project: &'a Path,
    /// Canonical project root, for escape checks.
    pub canonical: PathBuf,
    /// The project's builder images by role: builder name → a recipe file using it.
    pub builders: &'a std::collections::BTreeMap<String, String>,
    /// `[build] outputs` as written (`None` without a `[build]` table), so `from = "build:x"`
    /// can be checked against them at its own position.
    pub build_outputs: Option<Vec<String>>,
    /// Where `${NAME}` in values comes from.
    pub vars: &'a super::vars::Vars,
}

/// `v` with its `${NAME}` references expanded (same span). An error is reported at the
/// reference, and `fallback` stands in for the value so that it causes no second error.
fn expanded(ctx: &mut Ctx<'_>, v: Spanned<String>, fallback: &str) -> Spanned<String> {
    let span = v.span();
    match ctx.vars.expand(v.get_ref()) {
        Ok(text) => Spanned::new(span, text),
        Err(e) => {
            // The reference's place in the file, when the value is written without escapes.
            let raw = ctx.out.text.get(span.clone()).unwrap_or_default();
            let at = if raw.get(1..raw.len().saturating_sub(1)) == Some(v.get_ref().as_str()) {
                span.start + 1 + e.at.start..span.start + 1 + e.at.end
            } else {
                span.clone()
            };
            ctx.err(at, e.message).help = e.help;
            Spanned::new(span, fallback.to_string())
        }
    }
}

impl<'a> std::ops::Deref for Ctx<'a> {
    type Target = Collector<'a>;
    fn deref(&self) -> &Collector<'a> {
        &self.out
    }
}

impl std::ops::DerefMut for Ctx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.out
    }
}

/// The longest package name builder accepts. Debian sets no limit, but the name is a file
/// name (`/usr/share/doc/<name>`, the pool directory) and part of the .deb's; no package in
/// Debian comes near it.
const MAX_PACKAGE_NAME: usize = 128;

/// The longest `<name>_<version>_<arch>.deb`: temp files beside it add up to 34 bytes
/// (`.` + `.tmp-` + a pid + `-` + a counter) to a 255-byte Linux file name.
const MAX_DEB_FILE_NAME: usize = 220;

pub(super) fn recipe(ctx: &mut Ctx<'_>, raw: RawRecipe) -> Option<Recipe> {
    let before = ctx.diags.len();
    let has_build_table = raw.build.is_some();
    ctx.build_outputs = raw.build.as_ref().map(|b| {
        b.get_ref()
            .outputs
            .iter()
            .map(|o| o.get_ref().clone())
            .collect()
    });
    let package = package(ctx, raw.package);
    let (files, to_spans): (Vec<FileSpec>, Vec<Range<usize>>) = raw
        .files
        .into_iter()
        .filter_map(|f| {
            let r = f.get_ref();
            let to =
                r.to.as_ref()
                    .or(r.dir.as_ref())
                    .map_or(f.span(), |t| t.span());
            file(ctx, f).map(|spec| (spec, to))
        })
        .unzip();
    let scripts = raw.scripts.map(|s| scripts(ctx, s)).unwrap_or_default();
    // The unit names the recipe ships, for `Also=`.
    let shipped: Vec<String> = raw
        .systemd
        .iter()
        .filter_map(|u| {
            Some(
                Path::new(u.get_ref().unit.get_ref())
                    .file_name()?
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .collect();
    let systemd: Vec<SystemdUnit> = raw
        .systemd
        .into_iter()
        .filter_map(|u| unit(ctx, u, &shipped))
        .collect();
    let triggers = raw
        .triggers
        .map(|t| super::validate_control::triggers(ctx, t))
        .unwrap_or_default();
    let build = raw
        .build
        .and_then(|b| super::validate_tables::build(ctx, b));
    let image = raw
        .image
        .and_then(|i| super::validate_tables::image(ctx, i, &package.name));
    let entries: Vec<Entry<'_>> = files
        .iter()
        .zip(to_spans)
        .map(|(spec, to_span)| Entry { spec, to_span })
        .collect();
    check_layout(ctx, &entries, &systemd, &package);
    if files
        .iter()
        .any(|f| matches!(f.source, Source::Build { .. }))
        && !has_build_table
    {
        let line = files
            .iter()
            .find(|f| matches!(f.source, Source::Build { .. }))
            .map_or(0, |f| f.line);
        ctx.in_file(format!(
            "`from = \"build:...\"` (line {line}) needs a `[build]` table"
        ))
        .help = Some("add a [build] table, or point `from` at a file in the project".into());
    }
    if ctx.diags.len() > before {
        return None;
    }
    Some(Recipe {
        file: ctx.file.to_path_buf(),
        project: ctx.project.to_path_buf(),
        package,
        files,
        scripts,
        systemd,
        triggers,
        build,
        image,
    })
}

/// `${shlibs:Depends}` in a relation list: only where dpkg-shlibdeps' output goes, and only
/// with a [build] (the builder base's packages are where the libraries come from).
fn shlibs_entry(ctx: &mut Ctx<'_>, e: &Spanned<String>, key: &str) {
    let s = super::SHLIBS_DEPENDS;
    if !matches!(key, "depends" | "pre-depends") {
        ctx.err(
            e.span(),
            format!("`{s}` goes in `depends` (or `pre-depends`), not `{key}`"),
        )
        .help = Some(format!("move `\"{s}\"` to `depends`"));
    } else if ctx.build_outputs.is_none() {
        ctx.err(
            e.span(),
            format!("`{s}` needs a [build] table: builder computes it from the libraries of the builder base the files are built in"),
        )
        .help = Some("add a [build] table, or list the dependencies by hand".into());
    }
}

fn package(ctx: &mut Ctx<'_>, raw: Spanned<RawPackage>) -> Package {
    let mut raw = raw.into_inner();
    raw.version = expanded(ctx, raw.version, "0");
    raw.revision = raw.revision.map(|r| expanded(ctx, r, "1"));
    raw.fields = std::mem::take(&mut raw.fields)
        .into_iter()
        .map(|(k, v)| {
            let v = expanded(ctx, v, "-");
            (k, v)
        })
        .collect();
    let name_check = debian::check_name(raw.name.get_ref());
    let name_ok = name_check.is_ok();
    ctx.check(&raw.name, name_check);
    if name_ok && raw.name.get_ref().len() > MAX_PACKAGE_NAME {
        ctx.err(
            raw.name.span(),
            format!(
                "the package name is {} bytes long: builder allows at most {MAX_PACKAGE_NAME}, so that \
                 the .deb's file name, its pool directory and /usr/share/doc/<name> fit the \
                 255-byte limit of a Linux file name",
                raw.name.get_ref().len()
            ),
        )
        .help = Some("choose a shorter name".into());
    }

    let mut upstream = raw.version.get_ref().clone();
    let mut epoch = None;
    let mut revision = None;
    match debian::parse_version(raw.version.get_ref()) {
        Ok(v) => {
            upstream = v.upstream;
            epoch = v.epoch;
            revision = v.revision;
        }
        Err(e) => {
            ctx.err(raw.version.span(), e);
        }
    }
    if let Some(r) = &raw.revision {
        if revision.is_some() {
            ctx.err(
                r.span(),
                "the revision is given twice: in `version` and in `revision`",
            )
            .help = Some("keep one of them".into());
        } else {
            ctx.check(r, debian::check_revision(r.get_ref()));
            revision = Some(r.get_ref().clone());
        }
    }
    if revision.is_none() && upstream.contains('-') {
        ctx.err(
            raw.version.span(),
            "the upstream version contains `-` but there is no revision",
        );
    }
    if let Some(e) = &raw.epoch {
        if epoch.is_some() {
            ctx.err(
                e.span(),
                "the epoch is given twice: in `version` and in `epoch`",
            );
        } else if !(0..=i64::from(i32::MAX)).contains(e.get_ref()) {
            ctx.err(
                e.span(),
                "the epoch must be an integer from 0 to 2147483647 (dpkg's limit)",
            );
        } else if *e.get_ref() > 0 {
            epoch = Some(*e.get_ref() as u32);
        }
    }

    let architecture = match &raw.architecture {
        Some(a) => {
            ctx.check(a, debian::check_architecture(a.get_ref()));
            a.get_ref().clone()
        }
        None => "amd64".to_string(),
    };
    // `<name>_<version>_<arch>.deb`, and the temp files beside it (`.<file>.tmp-<pid>-<n>`),
    // must fit a Linux file name.
    let file_name_len = raw.name.get_ref().len()
        + raw.version.get_ref().len()
        + raw.revision.as_ref().map_or(0, |r| r.get_ref().len() + 1)
        + architecture.len()
        + "__.deb".len();
    if name_ok && raw.name.get_ref().len() <= MAX_PACKAGE_NAME && file_name_len > MAX_DEB_FILE_NAME
    {
        ctx.err(
            raw.version.span(),
            format!(
                "the .deb's file name `<name>_<version>_<arch>.deb` would be {file_name_len} bytes: \
                 builder allows at most {MAX_DEB_FILE_NAME}, so that it and its temp files fit the \
                 255-byte limit of a Linux file name"
            ),
        )
        .help = Some("shorten the version (or the package name)".into());
    }
    ctx.check(
        &raw.maintainer,
        debian::check_maintainer(raw.maintainer.get_ref()),
    );
    let (synopsis, long_description) = match debian::split_description(raw.description.get_ref()) {
        Ok(v) => v,
        Err(e) => {
            ctx.err(raw.description.span(), e);
            (String::new(), Vec::new())
        }
    };
    let section = opt_checked(ctx, &raw.section, "misc", debian::check_section);
    let priority = opt_checked(ctx, &raw.priority, "optional", debian::check_priority);
    if let Some(h) = &raw.homepage {
        let v = h.get_ref();
        if !(v.starts_with("http://") || v.starts_with("https://"))
            || v.contains(char::is_whitespace)
            || v.contains(char::is_control)
        {
            ctx.err(
                h.span(),
                format!("homepage `{v}` must be an http:// or https:// URL"),
            );
        }
    }
    let compression = match &raw.compression {
        Some(c) => match Compression::parse(c.get_ref()) {
            Some(c) => c,
            None => {
                ctx.err(c.span(), format!("unknown compression `{}`", c.get_ref()))
                    .help = Some("use one of: xz (default), zstd, gzip, none".into());
                Compression::default()
            }
        },
        None => Compression::default(),
    };

    for o in &raw.lintian_overrides {
        let v = o.get_ref();
        if v.is_empty() || v.contains('\n') || v.starts_with('#') {
            ctx.err(o.span(), "a lintian override is a tag with optional context, e.g. \"statically-linked-binary\"");
        }
    }
    let mut relations = Vec::new();
    // dpkg-gencontrol's order (Dpkg::Control::FieldsCore, `dep_order`).
    for (field, key, entries) in [
        ("Pre-Depends", "pre-depends", &raw.pre_depends),
        ("Depends", "depends", &raw.depends),
        ("Recommends", "recommends", &raw.recommends),
        ("Suggests", "suggests", &raw.suggests),
        ("Enhances", "enhances", &raw.enhances),
        ("Conflicts", "conflicts", &raw.conflicts),
        ("Breaks", "breaks", &raw.breaks),
        ("Replaces", "replaces", &raw.replaces),
        ("Provides", "provides", &raw.provides),
        ("Built-Using", "built-using", &raw.built_using),
        (
            "Static-Built-Using",
            "static-built-using",
            &raw.static_built_using,
        ),
    ] {
        for e in entries.iter() {
            if e.get_ref().trim() == super::SHLIBS_DEPENDS {
                shlibs_entry(ctx, e, key);
                continue;
            }
            let check = debian::check_relation(e.get_ref(), key);
            let check = match (check, key) {
                (Ok(()), "built-using" | "static-built-using") => {
                    debian::check_built_using(e.get_ref(), key)
                }
                (c, _) => c,
            };
            ctx.check(e, check);
        }
        if !entries.is_empty() {
            let joined: Vec<&str> = entries.iter().map(|e| e.get_ref().trim()).collect();
            relations.push((field.to_string(), joined.join(", ")));
        }
    }

    let source = raw
        .source
        .as_ref()
        .and_then(|s| match debian::check_source(s.get_ref()) {
            Ok(v) => (v != *raw.name.get_ref()).then_some(v),
            Err(e) => {
                ctx.err(s.span(), e);
                None
            }
        });
    let multi_arch = raw.multi_arch.as_ref().and_then(|m| {
        let v = m.get_ref().as_str();
        if !matches!(v, "same" | "foreign" | "allowed" | "no") {
            ctx.err(
                m.span(),
                format!("unknown multi-arch `{}`", escape_controls(v)),
            )
            .help = Some("use one of: same, foreign, allowed, no".into());
            return None;
        }
        if v == "same" && architecture == "all" {
            ctx.err(
                m.span(),
                "`multi-arch = \"same\"` needs an architecture-specific package; this one is `all`",
            )
            .help = Some("use `foreign` or `allowed`, or drop `multi-arch`".into());
            return None;
        }
        (v != "no").then(|| v.to_string())
    });
    let mut user_fields: Vec<(String, String)> = Vec::new();
    for (name, value) in &raw.fields {
        match debian::user_field(name.get_ref(), value.get_ref()) {
            Ok(Some(field)) => {
                if user_fields
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(&field.0))
                {
                    ctx.err(
                        name.span(),
                        format!(
                            "field `{}` is given twice (as `{}` too)",
                            field.0,
                            name.get_ref()
                        ),
                    );
                } else {
                    user_fields.push(field);
                }
            }
            Ok(None) => {}
            Err((on_value, e)) => {
                let span = if on_value { value.span() } else { name.span() };
                ctx.err(span, e);
            }
        }
    }

    let changelog = match &raw.changelog {
        None => Changelog::Stub,
        Some(c) if c.get_ref() == "git" => Changelog::Git,
        Some(c) => match script_path(ctx, &raw.changelog, "the changelog") {
            Some(rel) => {
                let text = std::fs::read_to_string(ctx.project.join(&rel));
                match text.map(|t| crate::package::changelog::parse(&t)) {
                    Ok(Ok(_)) => Changelog::File(rel),
                    Ok(Err((line, e))) => {
                        ctx.err(c.span(), format!("{}:{line}: {e}", rel.display()))
                            .help = Some(
                            "write it as deb-changelog(5) describes, or `changelog = \"git\"` to generate it".into(),
                        );
                        Changelog::Stub
                    }
                    Err(e) => {
                        ctx.err(c.span(), format!("could not read `{}`: {e}", rel.display()));
                        Changelog::Stub
                    }
                }
            }
            None => Changelog::Stub,
        },
    };

    Package {
        changelog,
        source,
        multi_arch,
        essential: raw.essential.unwrap_or(false),
        protected: raw.protected.unwrap_or(false),
        user_fields,
        name: raw.name.into_inner(),
        upstream_version: upstream,
        revision,
        epoch,
        architecture,
        maintainer: raw.maintainer.into_inner(),
        synopsis,
        long_description,
        section,
        priority,
        homepage: raw.homepage.map(Spanned::into_inner),
        license: raw.license.map(Spanned::into_inner),
        relations,
        compression,
        etc_conffiles: raw.etc_conffiles.unwrap_or(true),
        lintian_overrides: raw
            .lintian_overrides
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
    }
}

fn opt_checked(
    ctx: &mut Ctx<'_>,
    v: &Option<Spanned<String>>,
    default: &str,
    check: fn(&str) -> Result<(), String>,
) -> String {
    match v {
        Some(s) => {
            ctx.check(s, check(s.get_ref()));
            s.get_ref().clone()
        }
        None => default.to_string(),
    }
}

/// An absolute, normalised destination path; a trailing `/` is kept (it names a directory).
pub(super) fn check_dest(to: &str) -> Result<(), String> {
    if !to.starts_with('/') {
        return Err(format!(
            "`to = \"{to}\"` must be an absolute path, e.g. `/{}`",
            to.trim_start_matches("./")
        ));
    }
    if to.ends_with("//") {
        return Err(format!("`{to}` ends in `//`: write each `/` once"));
    }
    if to.trim_end_matches('/').ends_with(char::is_whitespace) {
        return Err(format!(
            "`{to}` ends in whitespace, which dpkg strips: remove it"
        ));
    }
    let body = to.trim_end_matches('/');
    for part in body.split('/').skip(1) {
        match part {
            "" => return Err(format!("`{to}` contains `//`: write each `/` once")),
            "." | ".." => {
                return Err(format!(
                    "`{to}` contains `{part}`: write the normalised path"
                ))
            }
            _ if part.chars().any(|c| c.is_control()) => {
                return Err(format!("`{to}` contains a control character"))
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// A path under `project` that the glob `rel` would match if names did not have to be
/// UTF-8 (the glob crate skips such names without a word), to explain an empty match.
fn non_utf8_match(project: &Path, rel: &Path) -> Option<PathBuf> {
    let text = rel.to_str()?;
    let parts: Vec<&str> = text.split('/').collect();
    let literal = parts.iter().take_while(|p| !is_glob(p)).count();
    let base = project.join(parts[..literal].join("/"));
    let pattern = glob::Pattern::new(&parts[literal..].join("/")).ok()?;
    let mut walk = walkdir::WalkDir::new(&base).min_depth(1);
    if !parts.contains(&"**") {
        walk = walk.max_depth(parts.len() - literal);
    }
    walk.into_iter().flatten().find_map(|e| {
        let below = e.path().strip_prefix(&base).ok()?;
        (below.to_str().is_none() && pattern.matches(&below.to_string_lossy())).then(|| {
            e.path()
                .strip_prefix(project)
                .unwrap_or(e.path())
                .to_path_buf()
        })
    })
}

/// Resolves a project-relative path and refuses anything that escapes the project.
pub(super) fn resolve_in_project(ctx: &Ctx<'_>, from: &str) -> Result<PathBuf, String> {
    let p = Path::new(from);
    let rel = if p.is_absolute() {
        let canon = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        match canon.strip_prefix(&ctx.canonical) {
            // `canonicalize` fails for globs and missing files; a `..` left in the path
            // could still climb out after the prefix.
            Ok(r) if r.components().any(|c| c == Component::ParentDir) => {
                return Err(format!(
                    "`{from}` contains `..`: write the path relative to the project root without `..`"
                ))
            }
            Ok(r) => r.to_path_buf(),
            Err(_) => {
                return Err(format!(
                    "`{from}` is outside the project (`{}`): copy the file into the project and use a relative path",
                    ctx.canonical.display()
                ))
            }
        }
    } else {
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                Component::Normal(x) => out.push(x),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !out.pop() {
                        return Err(format!(
                            "`{from}` escapes the project with `..`: paths are relative to the project root `{}`",
                            ctx.project.display()
                        ));
                    }
                }
                _ => return Err(format!("`{from}` is not a valid relative path")),
            }
        }
        out
    };
    Ok(rel)
}

/// Checks that a project-relative path exists and, after following symlinks, stays inside.
pub(super) fn check_exists(ctx: &Ctx<'_>, rel: &Path, what: &str) -> Result<(), String> {
    let full = ctx.project.join(rel);
    if std::fs::symlink_metadata(&full).is_err() {
        return Err(format!(
            "{what} `{}` does not exist (looked in `{}`)",
            rel.display(),
            full.display()
        ));
    }
    match full.canonicalize() {
        Ok(c) if c.starts_with(&ctx.canonical) => Ok(()),
        Ok(c) => Err(format!(
            "{what} `{}` is a symlink pointing outside the project (to `{}`): copy the target into the project",
            rel.display(),
            c.display()
        )),
        Err(e) => Err(format!("{what} `{}` cannot be resolved: {e}", rel.display())),
    }
}

fn parse_mode(v: &toml::Value) -> Result<u32, String> {
    let s = match v {
        toml::Value::String(s) => s.as_str(),
        _ => return Err("write the mode as an octal string, e.g. `mode = \"0755\"`".into()),
    };
    let digits = s.strip_prefix("0o").unwrap_or(s);
    // `from_str_radix` also takes a leading `+`: only octal digits are a mode.
    let octal = !digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(digits, 8) {
        Ok(m) if octal && m <= 0o7777 => Ok(m),
        _ => Err(format!(
            "`{s}` is not an octal file mode: use e.g. \"0644\" or \"0755\""
        )),
    }
}

fn file(ctx: &mut Ctx<'_>, raw: Spanned<RawFile>) -> Option<FileSpec> {
    let span = raw.span();
    let line = ctx.lines.line_of(span.start).0;
    let raw = raw.into_inner();
    let before = ctx.diags.len();
    if let Some(dir) = &raw.dir {
        return dir_entry(ctx, &raw, dir, line, before);
    }
    let Some(to) = &raw.to else {
        ctx.err(span, "a [[files]] entry needs `to`, the path it installs").help = Some(
            "add e.g. `to = \"/usr/bin/name\"`, or use `dir = \"/var/lib/name\"` for a directory of its own".into(),
        );
        return None;
    };
    check_to(ctx, to);
    let mode = entry_mode(ctx, &raw, false);
    let (owner, group) = entry_owner(ctx, &raw);
    let source = match (&raw.from, &raw.symlink) {
        (Some(_), Some(s)) => {
            ctx.err(s.span(), "an entry has both `from` and `symlink`")
                .help =
                Some("use `from` to copy a file, or `symlink` to make a link, not both".into());
            None
        }
        (None, None) => {
            ctx.err(span, "a [[files]] entry needs `from` (a file, directory or glob), `symlink` (a link target) or `dir` (a directory of its own)");
            None
        }
        (None, Some(target)) => {
            let t = target.get_ref();
            if t.is_empty() {
                ctx.err(target.span(), "the symlink target is empty").help = Some(
                    "name the path the link points to, e.g. `symlink = \"/usr/bin/backend\"`"
                        .into(),
                );
            } else if let Some(c) = t.chars().find(|c| c.is_control()) {
                ctx.err(
                    target.span(),
                    format!(
                        "the symlink target `{}` contains the control character U+{:04X}: control characters are not allowed in a symlink target",
                        escape_controls(t),
                        c as u32
                    ),
                )
                .help = Some("remove it from `symlink`".into());
            }
            if raw.conffile {
                ctx.err(target.span(), "a symlink cannot be a conffile");
            }
            if let Some(m) = &raw.mode {
                ctx.err(
                    m.span(),
                    "a symlink has no mode of its own (Linux shows 0777 for every symlink)",
                )
                .help = Some("remove `mode` from this entry".into());
            }
            if to.get_ref().ends_with('/') {
                ctx.err(
                    to.span(),
                    "a symlink's `to` names the link itself: remove the trailing `/`",
                );
            }
            Some(Source::Symlink { target: t.clone() })
        }
        (Some(from), None) => {
            let source = from_source(ctx, from);
            if raw.conffile {
                conffile_source(ctx, source.as_ref(), from);
            }
            source
        }
    };
    if ctx.diags.len() > before {
        return None;
    }
    Some(FileSpec {
        source: source?,
        to: to.get_ref().clone(),
        mode,
        owner,
        group,
        conffile: raw.conffile,
        line,
    })
}

/// A `dir = "/path"` entry: a directory with its own mode (default 0755) and owner.
fn dir_entry(
    ctx: &mut Ctx<'_>,
    raw: &RawFile,
    dir: &Spanned<String>,
    line: usize,
    before: usize,
) -> Option<FileSpec> {
    for (key, span) in [
        ("from", raw.from.as_ref().map(|v| v.span())),
        ("symlink", raw.symlink.as_ref().map(|v| v.span())),
        ("to", raw.to.as_ref().map(|v| v.span())),
    ] {
        if let Some(span) = span {
            ctx.err(
                span,
                format!("a `dir` entry makes a directory: it takes no `{key}`"),
            )
            .help = Some(format!(
                "remove `{key}`, or make a separate [[files]] entry for what it installs"
            ));
        }
    }
    if raw.conffile {
        ctx.err(dir.span(), "a directory cannot be a conffile");
    }
    check_to(ctx, dir);
    let mode = entry_mode(ctx, raw, true);
    let (owner, group) = entry_owner(ctx, raw);
    if dir.get_ref().trim_end_matches('/').is_empty() {
        ctx.err(
            dir.span(),
            "`dir` names the root directory, which dpkg owns",
        );
    }
    if ctx.diags.len() > before {
        return None;
    }
    Some(FileSpec {
        source: Source::Dir,
        to: dir.get_ref().trim_end_matches('/').to_string(),
        mode,
        owner,
        group,
        conffile: false,
        line,
    })
}

/// The entry's `mode`, checked for a file (or, with `dir`, a directory).
fn entry_mode(ctx: &mut Ctx<'_>, raw: &RawFile, dir: bool) -> Option<u32> {
    let m = raw.mode.as_ref()?;
    match parse_mode(m.get_ref()) {
        Ok(mode) => {
            let problem = if dir {
                dir_mode_problem(mode)
            } else {
                mode_problem(mode)
            };
            if let Some((msg, help)) = problem {
                ctx.err(m.span(), msg).help = Some(help);
            }
            Some(mode)
        }
        Err(e) => {
            ctx.err(m.span(), e);
            None
        }
    }
}

/// The entry's `owner` and `group`, checked as user and group names.
fn entry_owner(ctx: &mut Ctx<'_>, raw: &RawFile) -> (Option<String>, Option<String>) {
    let mut name = |v: &Option<Spanned<String>>, what: &str| {
        let v = v.as_ref()?;
        match super::owners::name_problem(v.get_ref()) {
            Some(why) => {
                ctx.err(v.span(), format!("`{what}`: {why}")).help = Some(format!(
                    "write the {what} by name as dpkg stores it, e.g. `{what} = \"www-data\"`"
                ));
                None
            }
            None => Some(v.get_ref().clone()),
        }
    };
    let owner = name(&raw.owner, "owner");
    let group = name(&raw.group, "group");
    (owner, group)
}

/// `p` without `.` components.
fn normal_path(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Whether `from = "build:<p>"` names something the build keeps: a declared output, a path
/// under one (an output directory), a directory holding one, or the whole output directory.
fn build_path_declared(p: &Path, outputs: &[String]) -> bool {
    let p = normal_path(p);
    p.as_os_str().is_empty()
        || outputs.iter().any(|o| {
            let o = normal_path(Path::new(o));
            p.starts_with(&o) || o.starts_with(&p)
        })
}

fn from_source(ctx: &mut Ctx<'_>, from: &Spanned<String>) -> Option<Source> {
    let f = from.get_ref();
    if let Some(rest) = f.strip_prefix("build:") {
        let p = Path::new(rest);
        let ok = !rest.is_empty()
            && p.components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !ok {
            ctx.err(
                from.span(),
                format!(
                    "`{f}`: a build output is a relative path inside /out, e.g. `build:backend`"
                ),
            );
            return None;
        }
        if let Some(outputs) = &ctx.build_outputs {
            if !build_path_declared(p, outputs) {
                let wanted = normal_path(p);
                let listed = if outputs.is_empty() {
                    "[build] outputs is empty".to_string()
                } else {
                    format!(
                        "[build] outputs has {}",
                        outputs
                            .iter()
                            .map(|o| format!("`{o}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                ctx.err(
                    from.span(),
                    format!("`{f}` is not a build output: {listed}, and builder keeps only those"),
                )
                .help = Some(format!(
                    "add `{}` to [build] outputs (and make the build write it to /out)",
                    wanted.display()
                ));
                return None;
            }
        }
        return Some(Source::Build {
            path: p.to_path_buf(),
        });
    }
    let rel = match resolve_in_project(ctx, f) {
        Ok(r) => r,
        Err(e) => {
            ctx.err(from.span(), e);
            return None;
        }
    };
    if is_glob(f) {
        // The project path is literal text, not a pattern (it may contain `[`).
        let pattern = format!(
            "{}/{}",
            glob::Pattern::escape(&ctx.project.to_string_lossy()),
            rel.to_string_lossy()
        );
        let matches: Vec<PathBuf> = match glob::glob(&pattern) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(e) => {
                ctx.err(from.span(), format!("`{f}` is not a valid glob: {e}"));
                return None;
            }
        };
        if matches.is_empty() {
            match non_utf8_match(ctx.project, &rel) {
                Some(name) => {
                    ctx.err(
                        from.span(),
                        format!(
                            "the glob `{f}` matches only `{}`, whose name is not valid UTF-8",
                            name.display()
                        ),
                    )
                    .help = Some(
                        "rename it: the package's file lists (md5sums, conffiles) are UTF-8".into(),
                    );
                }
                None => {
                    ctx.err(from.span(), format!("the glob `{f}` matches no file"))
                        .help =
                        Some("check the pattern; it is relative to the project root".into());
                }
            }
            return None;
        }
        // Every match must stay inside the project after following symlinks (glob's `.*`
        // also matches `..`).
        for m in &matches {
            match m.canonicalize() {
                Ok(c) if c.starts_with(&ctx.canonical) => {}
                Ok(c) => {
                    ctx.err(from.span(), format!(
                        "the glob `{f}` matches `{}`, which resolves outside the project (to `{}`): narrow the pattern or copy the file into the project",
                        m.display(),
                        c.display()
                    ));
                }
                Err(e) => {
                    ctx.err(
                        from.span(),
                        format!("the glob match `{}` cannot be resolved: {e}", m.display()),
                    );
                }
            }
        }
        return Some(Source::Glob {
            pattern: rel.to_string_lossy().into_owned(),
        });
    }
    if let Err(e) = check_exists(ctx, &rel, "the file") {
        ctx.err(from.span(), e);
        return None;
    }
    Some(Source::Path { path: rel })
}

fn script_path(ctx: &mut Ctx<'_>, s: &Option<Spanned<String>>, what: &str) -> Option<PathBuf> {
    let s = s.as_ref()?;
    match resolve_in_project(ctx, s.get_ref()) {
        Ok(rel) => {
            if let Err(e) = check_exists(ctx, &rel, what) {
                ctx.err(s.span(), e);
                return None;
            }
            if ctx.project.join(&rel).is_dir() {
                ctx.err(
                    s.span(),
                    format!("{what} `{}` is a directory, not a script", rel.display()),
                );
                return None;
            }
            Some(rel)
        }
        Err(e) => {
            ctx.err(s.span(), e);
            None
        }
    }
}

fn problem_at(ctx: &mut Ctx<'_>, span: Range<usize>, p: Problem) {
    ctx.err(span, p.message).help = Some(p.help);
}

/// A maintainer script: its path, then its contents (what dpkg will execute), so that
/// `validate` refuses what `package` or dpkg would fail on.
fn script(ctx: &mut Ctx<'_>, s: &Option<Spanned<String>>, what: &str) -> Option<PathBuf> {
    let rel = script_path(ctx, s, what)?;
    let span = s.as_ref()?.span();
    if let Err(p) = check_script(&ctx.project.join(&rel), &rel, what) {
        problem_at(ctx, span, p);
        return None;
    }
    Some(rel)
}

fn scripts(ctx: &mut Ctx<'_>, raw: Spanned<RawScripts>) -> Scripts {
    let raw = raw.into_inner();
    Scripts {
        preinst: script(ctx, &raw.preinst, "the preinst script"),
        postinst: script(ctx, &raw.postinst, "the postinst script"),
        prerm: script(ctx, &raw.prerm, "the prerm script"),
        postrm: script(ctx, &raw.postrm, "the postrm script"),
        config: script(ctx, &raw.config, "the debconf config script"),
        templates: templates(ctx, &raw.templates),
    }
}

/// debconf's templates: a data file, checked as deb822 template stanzas.
fn templates(ctx: &mut Ctx<'_>, s: &Option<Spanned<String>>) -> Option<PathBuf> {
    let what = "the debconf templates";
    let rel = script_path(ctx, s, what)?;
    let span = s.as_ref()?.span();
    let full = ctx.project.join(&rel);
    if let Err(p) = super::validate_control::check_templates(&full, &rel) {
        problem_at(ctx, span, p);
        return None;
    }
    Some(rel)
}

fn unit(ctx: &mut Ctx<'_>, raw: Spanned<RawUnit>, shipped: &[String]) -> Option<SystemdUnit> {
    let raw = raw.into_inner();
    let path = script_path(ctx, &Some(raw.unit.clone()), "the systemd unit")?;
    // The name goes into the generated maintainer scripts: systemd's rules keep it a
    // plain word there.
    let name = path.file_name()?.to_string_lossy().into_owned();
    if let Err(p) = check_unit_name(&name) {
        problem_at(ctx, raw.unit.span(), p);
        return None;
    }
    let (install_section, also) = match std::fs::read(ctx.project.join(&path)) {
        Ok(bytes) => (has_install_section(&bytes), also_units(&bytes)),
        Err(e) => {
            ctx.err(
                raw.unit.span(),
                format!("could not read the systemd unit `{}`: {e}", path.display()),
            )
            .help = Some("check the file's permissions".into());
            return None;
        }
    };
    let flag = |v: &Option<Spanned<bool>>| v.as_ref().map(|v| *v.get_ref());
    let start = flag(&raw.start).unwrap_or(true);
    let stop_on_upgrade = flag(&raw.stop_on_upgrade).unwrap_or(true);
    let mut unit = SystemdUnit {
        path,
        name,
        enable: flag(&raw.enable).unwrap_or(true),
        start,
        // dh_installsystemd's default: restart after upgrade unless told not to start or
        // not to stop on upgrade.
        restart_after_upgrade: flag(&raw.restart_after_upgrade).unwrap_or(start && stop_on_upgrade),
        stop_on_upgrade,
        install_section,
        also,
    };
    if let Some(missing) = unit.also.iter().find(|a| !shipped.contains(a)) {
        ctx.err(
            raw.unit.span(),
            format!(
                "`{}` says `Also={missing}`, but the recipe does not ship `{missing}`: \
                 dh_installsystemd would refuse the package too",
                unit.name
            ),
        )
        .help = Some(format!(
            "add a [[systemd]] entry for `{missing}`, or remove it from `Also=`"
        ));
        return None;
    }
    if unit.is_template() {
        // Like dh_installsystemd: a template has no instance to enable or start.
        for (key, done, value) in [
            ("enable", "enabled", &raw.enable),
            ("start", "started", &raw.start),
        ] {
            if let Some(v) = value.as_ref().filter(|v| *v.get_ref()) {
                ctx.err(
                    v.span(),
                    format!(
                        "`{}` is a template unit: it cannot be {done} without an instance name",
                        unit.name
                    ),
                )
                .help = Some(format!(
                    "remove `{key} = true` (dh_installsystemd writes no snippets for \
                     templates); {key} an instance from your postinst, e.g. `{}`",
                    instance_example(key, &unit.name)
                ));
            }
        }
        unit.enable = false;
        unit.start = false;
    }
    Some(unit)
}

/// The names of `Also=` lines, as dh_installsystemd's `extract_key` reads them: split on
/// whitespace, matching quotes around a name removed.
fn also_units(unit: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(unit);
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let Some(key) = line.get(..5).filter(|k| k.eq_ignore_ascii_case("also=")) else {
            continue;
        };
        for name in line[key.len()..].split_ascii_whitespace() {
            let unquoted = ['"', '\'']
                .iter()
                .find_map(|q| name.strip_prefix(*q)?.strip_suffix(*q))
                .unwrap_or(name);
            out.push(unquoted.to_string());
        }
    }
    out
}

/// dh_installsystemd's test for an enableable unit: a line `[Install]` (any case, leading
/// blanks allowed).
fn has_install_section(unit: &[u8]) -> bool {
    unit.split(|b| *b == b'\n').any(|line| {
        let start = line
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(line.len());
        line[start..].eq_ignore_ascii_case(b"[Install]")
    })
}

/// `systemctl start backend@main.service` for the template `backend@.service`.
fn instance_example(key: &str, template: &str) -> String {
    let instance = template.replacen("@.", "@main.", 1);
    match key {
        "enable" => format!("deb-systemd-helper enable {instance}"),
        _ => format!("deb-systemd-invoke start {instance}"),
    }
}

#[cfg(test)]
mod dest_tests {
    use super::{check_dest, parse_mode};

    #[test]
    fn modes_are_octal_digits_only() {
        let mode = |s: &str| parse_mode(&toml::Value::String(s.into()));
        assert_eq!(mode("0755"), Ok(0o755));
        assert_eq!(mode("0o644"), Ok(0o644));
        for bad in ["+755", "0o+755", "-755", "", "0o", "999", "17777", " 755"] {
            assert!(mode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn destinations_are_written_the_way_dpkg_records_them() {
        assert!(check_dest("/etc/demo/").is_ok());
        assert!(check_dest("/usr/bin/demo").is_ok());
        for bad in [
            "/etc/demo//",
            "/etc//demo",
            "/etc/demo/trail ",
            "/etc/demo/x\n",
            "etc/demo",
        ] {
            assert!(check_dest(bad).is_err(), "{bad:?}");
        }
    }
}
