//! Validation of the `[build]` and `[image]` tables (see `validate.rs` for the rest of a
//! recipe): builder and base images must exist in base-images/, commands must not be empty,
//! limits and ports must be in range, images never run as root.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use super::model::*;
use super::raw::*;
use super::validate::{check_dest, check_exists, resolve_in_project, Ctx};
use crate::diag;

fn command(ctx: &mut Ctx<'_>, c: &Spanned<RawCommand>, what: &str) -> Command {
    match c.get_ref() {
        RawCommand::Exec(v) if v.is_empty() || v[0].trim().is_empty() => {
            ctx.err(c.span(), format!("the {what} command is empty"));
            Command(Vec::new())
        }
        RawCommand::Exec(v) => Command(v.clone()),
        RawCommand::Shell(s) if s.trim().is_empty() => {
            ctx.err(c.span(), format!("the {what} command is empty"));
            Command(Vec::new())
        }
        RawCommand::Shell(s) => Command(vec!["sh".into(), "-c".into(), s.clone()]),
    }
}

fn env_map(ctx: &mut Ctx<'_>, env: BTreeMap<String, Spanned<String>>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in env {
        let valid = k
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            ctx.err(
                v.span(),
                format!(
                    "`{k}` is not a valid environment variable name: use letters, digits and `_`"
                ),
            );
        }
        out.insert(k, v.into_inner());
    }
    out
}

fn base_image_exists(ctx: &mut Ctx<'_>, name: &Spanned<String>, what: &str) {
    let n = name.get_ref();
    let dir = ctx.project.join("base-images");
    if !dir.join(format!("{n}.toml")).is_file() {
        let known = super::base_image_names(ctx.project);
        let refs: Vec<&str> = known.iter().map(String::as_str).collect();
        let d = ctx.err(
            name.span(),
            format!("no {what} `{n}`: `base-images/{n}.toml` does not exist"),
        );
        d.label = diag::suggestion(n, &refs);
        d.help = Some(if known.is_empty() {
            "add a definition in base-images/".to_string()
        } else {
            format!("known: {}", known.join(", "))
        });
    }
}

pub(super) fn build(ctx: &mut Ctx<'_>, raw: Spanned<RawBuild>) -> Option<BuildSpec> {
    let raw = raw.into_inner();
    let before = ctx.diags.len();
    base_image_exists(ctx, &raw.builder, "builder image");
    let source = match resolve_in_project(ctx, raw.source.get_ref()) {
        Ok(rel) => {
            match check_exists(ctx, &rel, "the build source") {
                Err(e) => {
                    ctx.err(raw.source.span(), e);
                }
                Ok(()) if !ctx.project.join(&rel).is_dir() => {
                    ctx.err(
                        raw.source.span(),
                        format!("the build source `{}` must be a directory", rel.display()),
                    );
                }
                Ok(()) => {}
            }
            rel
        }
        Err(e) => {
            ctx.err(raw.source.span(), e);
            PathBuf::new()
        }
    };
    let cmd = command(ctx, &raw.command, "build");
    let test = raw.test.as_ref().map(|t| command(ctx, t, "test"));
    let env = env_map(ctx, raw.env);
    for o in &raw.outputs {
        let p = Path::new(o.get_ref());
        if o.get_ref().is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
            ctx.err(
                o.span(),
                format!(
                    "output `{}` must be a relative path inside /out, e.g. `backend`",
                    o.get_ref()
                ),
            );
        }
    }
    for i in &raw.ignore {
        if let Err(e) = glob::Pattern::new(i.get_ref()) {
            ctx.err(
                i.span(),
                format!("`{}` is not a valid ignore pattern: {e}", i.get_ref()),
            );
        }
    }
    let network = match raw.network.as_ref().map(|n| (n, n.get_ref().as_str())) {
        None | Some((_, "none")) => BuildNetwork::None,
        Some((_, "bridge")) => BuildNetwork::Bridge,
        Some((n, other)) => {
            ctx.err(
                n.span(),
                format!(
                    "unknown network `{other}`: use \"none\" (default, no network) or \"bridge\""
                ),
            );
            BuildNetwork::None
        }
    };
    if let Some(c) = &raw.cpus {
        if let Err(e) = super::limits::cpus(*c.get_ref()) {
            ctx.err(c.span(), e);
        }
    }
    let memory = raw
        .memory
        .as_ref()
        .and_then(|m| match super::limits::memory(m.get_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                ctx.err(m.span(), e);
                None
            }
        });
    let workdir = raw
        .workdir
        .as_ref()
        .map_or_else(|| "/src".to_string(), |w| w.get_ref().clone());
    if let Some(w) = &raw.workdir {
        ctx.check(w, check_dest(w.get_ref()));
    }
    for c in &raw.cache {
        ctx.check(c, check_dest(c.get_ref()));
        if let Some((root, fs)) = super::validate_paths::kernel_fs(c.get_ref()) {
            ctx.err(
                c.span(),
                format!(
                    "`{}` cannot be a cache directory: it is under `{root}`, where the kernel \
                     mounts {fs} (a volume there would hide or replace it)",
                    c.get_ref()
                ),
            )
            .help = Some("use a tool cache path such as \"/tmp/gocache\"".into());
        } else if let Some(what) = cache_conflict(c.get_ref(), &workdir) {
            ctx.err(c.span(), format!("`{}` cannot be a cache directory: it {what}; use a tool cache path outside both, such as \"/tmp/gocache\"", c.get_ref()));
        }
    }
    let timeout_text = raw.timeout.as_ref().map_or_else(
        || DEFAULT_BUILD_TIMEOUT.to_string(),
        |t| t.get_ref().trim().to_string(),
    );
    let timeout =
        match crate::load::parse_duration(&timeout_text) {
            Ok(d) if !d.is_zero() => d,
            other => {
                let why = match other {
                    Err(e) => format!("{e:#}"),
                    Ok(_) => "a zero timeout would stop every build".to_string(),
                };
                if let Some(t) = &raw.timeout {
                    ctx.err(t.span(), format!("invalid build timeout `{timeout_text}`: {why}"))
                    .help = Some(
                    "write a positive duration such as `timeout = \"30m\"`, `\"90s\"` or `\"2h\"`"
                        .into(),
                );
                }
                std::time::Duration::from_secs(3600)
            }
        };
    if ctx.diags.len() > before {
        return None;
    }
    Some(BuildSpec {
        builder: raw.builder.into_inner(),
        source,
        command: cmd,
        test,
        env,
        outputs: raw.outputs.into_iter().map(Spanned::into_inner).collect(),
        ignore: raw.ignore.into_iter().map(Spanned::into_inner).collect(),
        network,
        cpus: raw.cpus.map(Spanned::into_inner),
        memory,
        user: raw.user.map(Spanned::into_inner),
        workdir,
        cache: raw.cache.into_iter().map(Spanned::into_inner).collect(),
        timeout,
        timeout_text,
    })
}

/// Why `cache` cannot be a cache directory of a build whose sources land in `workdir`: a
/// volume on, above or below the workdir or /out would keep sources or outputs between
/// builds. Compared by path components, so `/src2` is not below `/src`.
fn cache_conflict(cache: &str, workdir: &str) -> Option<String> {
    let cache = Path::new(cache);
    if !cache
        .components()
        .any(|c| matches!(c, Component::Normal(_)))
    {
        return Some("is the root directory".to_string());
    }
    let overlaps = |other: &Path| cache.starts_with(other) || other.starts_with(cache);
    if overlaps(Path::new(workdir)) {
        Some(format!(
            "overlaps the workdir `{workdir}` the sources are copied into"
        ))
    } else if overlaps(Path::new("/out")) {
        Some("overlaps /out, where the outputs are collected".to_string())
    } else {
        None
    }
}

pub(super) fn image(ctx: &mut Ctx<'_>, raw: Spanned<RawImage>, package: &str) -> Option<ImageSpec> {
    let span = raw.span();
    let raw = raw.into_inner();
    let before = ctx.diags.len();
    base_image_exists(ctx, &raw.base, "runtime base");
    if let Some((msg, help)) =
        super::builder_base_problem(raw.base.get_ref(), ctx.builders, ctx.project)
    {
        ctx.err(raw.base.span(), msg).help = Some(help);
    }
    let entrypoint = match &raw.entrypoint {
        Some(e) if e.get_ref().is_empty() => {
            ctx.err(
                e.span(),
                "`entrypoint` is empty: name the program to run, e.g. [\"/usr/bin/backend\"]",
            );
            Vec::new()
        }
        Some(e) => {
            let program = &e.get_ref()[0];
            // A bare name is found in the image's PATH by the runtime; a relative path
            // would depend on the working directory.
            if program.contains('/') && !program.starts_with('/') {
                ctx.err(
                    e.span(),
                    format!(
                        "the entrypoint `{program}` must be an absolute path, or a bare name \
                         the runtime finds in the image's PATH"
                    ),
                );
            }
            e.get_ref().clone()
        }
        None => {
            ctx.err(
                span.clone(),
                "an [image] table needs `entrypoint`, e.g. entrypoint = [\"/usr/bin/backend\"]",
            );
            Vec::new()
        }
    };
    let ports = raw
        .ports
        .iter()
        .filter_map(|p| match u16::try_from(*p.get_ref()) {
            Ok(v) if v > 0 => Some(v),
            _ => {
                ctx.err(
                    p.span(),
                    format!("port {} is out of range: use 1-65535", p.get_ref()),
                );
                None
            }
        })
        .collect();
    let user = raw
        .user
        .as_ref()
        .map_or_else(|| "65532:65532".to_string(), |u| u.get_ref().clone());
    if let Some(u) = &raw.user {
        let v = u.get_ref();
        let ok = !v.is_empty()
            && v.split(':').count() <= 2
            && v.split(':')
                .all(|p| !p.is_empty() && !p.contains(char::is_whitespace));
        if !ok {
            ctx.err(
                u.span(),
                format!(
                    "`user = \"{v}\"` must be `uid[:gid]` or a user name, e.g. \"65532:65532\""
                ),
            );
        } else if is_root_user(v) {
            ctx.err(
                u.span(),
                "images run as a non-root user: use e.g. \"65532:65532\" (nonroot)",
            );
        }
    }
    let workdir = raw
        .workdir
        .as_ref()
        .map_or_else(|| "/".to_string(), |w| w.get_ref().clone());
    if let Some(w) = &raw.workdir {
        ctx.check(w, check_dest(w.get_ref()));
    }
    let name = raw
        .name
        .as_ref()
        .map_or_else(|| package.to_string(), |n| n.get_ref().clone());
    if let Some(n) = &raw.name {
        let v = n.get_ref();
        let ok = !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
            && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
        if !ok {
            ctx.err(n.span(), format!("`{v}` is not a valid image name: use lowercase letters, digits, `.`, `_`, `-` and `/`"));
        }
    }
    let text = ctx.text;
    let line = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
    let mut lines = BTreeMap::from([
        ("[image]".to_string(), line(span.start)),
        ("base".to_string(), line(raw.base.span().start)),
    ]);
    let fields = [
        (
            "entrypoint",
            raw.entrypoint.as_ref().map(|e| e.span().start),
        ),
        ("user", raw.user.as_ref().map(|u| u.span().start)),
        ("workdir", raw.workdir.as_ref().map(|w| w.span().start)),
        ("name", raw.name.as_ref().map(|n| n.span().start)),
        ("ports", raw.ports.first().map(|p| p.span().start)),
    ];
    for (field, at) in fields {
        if let Some(at) = at {
            lines.insert(field.to_string(), line(at));
        }
    }
    let mut exclude = Vec::new();
    if let Some(e) = &raw.exclude {
        for name in e.get_ref() {
            if crate::recipe::debian::check_name(name).is_err() {
                ctx.err(
                    e.span(),
                    format!("`{name}` is not a Debian package name: `exclude` lists package names, e.g. [\"adduser\", \"debconf\"]"),
                );
            }
            exclude.push(name.clone());
        }
        exclude.sort();
        exclude.dedup();
        lines.insert("exclude".to_string(), line(e.span().start));
    }
    let env = env_map(ctx, raw.env);
    if ctx.diags.len() > before {
        return None;
    }
    Some(ImageSpec {
        base: raw.base.into_inner(),
        entrypoint,
        cmd: raw.cmd,
        env,
        user,
        workdir,
        ports,
        labels: raw.labels,
        include_conffiles: raw.include_conffiles.unwrap_or(true),
        include_systemd: raw.include_systemd.unwrap_or(false),
        exclude,
        name,
        lines,
    })
}

/// `root`, or a uid the runtime parses as 0 (`0`, `00`, `+0`): images never run as root.
fn is_root_user(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or("");
    name == "root" || name.trim_start_matches('+').parse::<u64>() == Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_directories_stay_clear_of_the_workdir_and_out() {
        assert_eq!(cache_conflict("/tmp/gocache", "/src"), None);
        assert_eq!(
            cache_conflict("/src2", "/src"),
            None,
            "a sibling sharing a prefix"
        );
        assert_eq!(cache_conflict("/outside", "/src"), None);
        for (cache, workdir) in [
            ("/src", "/src"),
            ("/src/", "/src"),
            ("/src/vendor", "/src"),
            ("/src/a/b/", "/src/"),
            ("/work", "/work/app"),
            ("/", "/src"),
            ("/out", "/src"),
            ("/out/cache", "/src"),
        ] {
            assert!(
                cache_conflict(cache, workdir).is_some(),
                "`{cache}` with workdir `{workdir}` must be refused"
            );
        }
        let why = cache_conflict("/src/vendor", "/src").unwrap();
        assert!(why.contains("workdir `/src`"), "{why}");
    }

    #[test]
    fn a_cache_below_the_workdir_is_reported_at_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::create_dir_all(root.join("base-images")).unwrap();
        let go = concat!(env!("CARGO_MANIFEST_DIR"), "/base-images/go.toml");
        std::fs::copy(go, root.join("base-images/go.toml")).unwrap();
        let file = root.join("probe.toml");
        std::fs::write(
            &file,
            "[package]\nname = \"probe\"\nversion = \"1.0\"\n\
             maintainer = \"A <a@example.com>\"\ndescription = \"p\"\n\n\
             [build]\nbuilder = \"go\"\nsource = \"src\"\ncommand = [\"true\"]\n\
             workdir = \"/build\"\ncache = [\"/tmp/ok\", \"/build/vendor\"]\n",
        )
        .unwrap();
        let err = super::super::load_file(&file, root)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`/build/vendor` cannot be a cache directory"),
            "{err}"
        );
        assert!(err.contains("probe.toml:12:"), "{err}");
        assert!(!err.contains("`/tmp/ok`"), "{err}");
    }
}
