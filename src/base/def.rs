//! Base image definitions (`base-images/<name>.toml`): the serde model with spans, the
//! validated [`BaseDef`], and the canonical form whose sha256 names the image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::diag::{self, Collector, Diagnostic, Diagnostics};

/// Bumped whenever the way builder makes a rootfs changes, so old cached bases are rebuilt.
pub(crate) const FORMAT: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDef {
    kind: Spanned<String>,
    description: Option<String>,
    // debootstrap
    suite: Option<Spanned<String>>,
    variant: Option<Spanned<String>>,
    mirror: Option<Spanned<String>>,
    components: Option<Spanned<Vec<String>>>,
    packages: Option<Spanned<Vec<String>>>,
    // tarball
    path: Option<Spanned<String>>,
    // registry
    #[serde(rename = "ref")]
    reference: Option<Spanned<String>>,
    // static
    from: Option<Spanned<String>>,
    // packages
    exclude: Option<Spanned<Vec<String>>>,
    #[serde(rename = "path-exclude")]
    path_exclude: Option<Spanned<Vec<String>>>,
    #[serde(rename = "include-required")]
    include_required: Option<Spanned<bool>>,
    users: Option<Spanned<Vec<RawUser>>>,
    groups: Option<Spanned<Vec<RawGroup>>>,
    // common
    user: Option<Spanned<RawUser>>,
    env: Option<Spanned<BTreeMap<String, String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    uid: u32,
    gid: Option<u32>,
    home: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    gid: u32,
}

/// A group added to a package-set rootfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupDef {
    pub name: String,
    pub gid: u32,
}

/// A non-root user created in the rootfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserDef {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// How the rootfs is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BaseKind {
    /// `debootstrap --variant=<variant> --include=<packages> <suite> <dir> <mirror>`.
    Debootstrap {
        suite: String,
        variant: String,
        /// `None`: the mirror the host's apt uses (not part of the hash).
        mirror: Option<String>,
        components: Vec<String>,
        packages: Vec<String>,
    },
    /// A rootfs tarball in the project (path as written, relative to the project root).
    Tarball { path: String },
    /// An image pulled from a registry.
    Registry { reference: String },
    /// Only CA certificates, tzdata and generated passwd/group taken from base `from`.
    Static { from: String },
    /// Debian packages resolved against the archive, locked in `builder.lock`, unpacked
    /// without debootstrap, chroot or root (see `crate::debian`).
    Packages {
        /// Root relations (`name`, `name (>= version)`), sorted.
        packages: Vec<String>,
        /// Names whose relations count as met without installing them, sorted.
        exclude: Vec<String>,
        /// Paths of the packages left out of the rootfs (dpkg's `path-exclude` globs, `*`
        /// matching `/` too), besides the documentation always left out.
        path_exclude: Vec<String>,
        /// Also every `Priority: required` package of the first suite (as debootstrap's
        /// minbase takes them).
        include_required: bool,
        /// Extra accounts (besides `user`).
        users: Vec<UserDef>,
        groups: Vec<GroupDef>,
    },
}

impl BaseKind {
    pub fn name(&self) -> &'static str {
        match self {
            BaseKind::Debootstrap { .. } => "debootstrap",
            BaseKind::Tarball { .. } => "tarball",
            BaseKind::Registry { .. } => "registry",
            BaseKind::Static { .. } => "static",
            BaseKind::Packages { .. } => "packages",
        }
    }
}

/// A validated base image definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseDef {
    pub name: String,
    pub file: PathBuf,
    pub description: Option<String>,
    pub kind: BaseKind,
    pub user: Option<UserDef>,
    pub env: BTreeMap<String, String>,
}

/// What the hash covers: everything in the definition except its name and file.
#[derive(Serialize)]
struct Canonical<'a> {
    format: u32,
    kind: &'a BaseKind,
    user: &'a Option<UserDef>,
    env: &'a BTreeMap<String, String>,
}

impl BaseDef {
    /// The canonical JSON of the definition (parsed and re-serialised: key order, comments
    /// and formatting do not matter).
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(&Canonical {
            format: FORMAT,
            kind: &self.kind,
            user: &self.user,
            env: &self.env,
        })
        .unwrap_or_default()
    }
}

const KINDS: &[&str] = &["debootstrap", "tarball", "registry", "static", "packages"];
const VARIANTS: &[&str] = &["minbase", "buildd", "fakechroot", "-"];

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

fn valid_package(s: &str) -> bool {
    s.len() >= 2
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

fn valid_env_key(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_user(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
}

fn user_def(r: &RawUser, span: std::ops::Range<usize>, out: &mut Collector<'_>) -> UserDef {
    if !valid_user(&r.name) {
        out.push(
            out.at(
                span.clone(),
                format!("`{}` is not a valid user name", r.name),
            )
            .help("use lowercase letters, digits, `_` and `-`, e.g. `builder`"),
        );
    }
    if r.name == "root" || r.name == "nobody" {
        out.push(
            out.at(
                span.clone(),
                format!("`{}` is a system account; name a user of your own", r.name),
            )
            .help("e.g. `user = { name = \"app\", uid = 1000 }`"),
        );
    }
    if r.uid == 0 || r.uid >= 65534 {
        out.push(
            out.at(
                span.clone(),
                format!("uid {} is not allowed for a user of the base", r.uid),
            )
            .help("use a non-root uid such as 1000"),
        );
    }
    if r.home
        .as_deref()
        .is_some_and(|h| !h.starts_with('/') || h.contains(".."))
    {
        out.push(
            out.at(
                span,
                format!(
                    "home `{}` must be an absolute path",
                    r.home.as_deref().unwrap_or_default()
                ),
            )
            .help("e.g. `home = \"/home/app\"`"),
        );
    }
    UserDef {
        name: r.name.clone(),
        uid: r.uid,
        gid: r.gid.unwrap_or(r.uid),
        home: r
            .home
            .clone()
            .unwrap_or_else(|| format!("/home/{}", r.name)),
    }
}

/// The `packages` kind: relations checked with Debian's grammar, names sorted.
fn packages_kind(raw: &RawDef, out: &mut Collector<'_>) -> BaseKind {
    let include_required = raw.include_required.as_ref().is_some_and(|b| *b.get_ref());
    let mut packages = Vec::new();
    match &raw.packages {
        Some(p) => {
            for entry in p.get_ref() {
                match crate::debian::relation::parse(entry) {
                    Ok(rels) if rels.len() == 1 => packages.push(rels[0].to_string()),
                    Ok(_) => out.push(
                        out.at(p.span(), format!("`{entry}` is not one package relation"))
                            .help(
                                "write one package per entry: `\"libc6\"`, `\"tzdata (>= 2024a)\"`",
                            ),
                    ),
                    Err(e) => out.push(
                        out.at(
                            p.span(),
                            format!("`{entry}` is not a package relation: {e}"),
                        )
                        .help("write `name` or `name (>= version)`, e.g. `\"ca-certificates\"`"),
                    ),
                }
            }
        }
        None if !include_required => out.push(
            out.at(
                raw.kind.span(),
                "kind = \"packages\" needs `packages`".to_string(),
            )
            .help("add `packages = [\"base-files\", \"tzdata\"]`"),
        ),
        None => {}
    }
    let mut exclude = Vec::new();
    if let Some(e) = &raw.exclude {
        for name in e.get_ref() {
            if !valid_package(name) {
                out.push(
                    out.at(e.span(), format!("`{name}` is not a Debian package name"))
                        .help("package names use lowercase letters, digits, `+`, `-` and `.`"),
                );
            }
            exclude.push(name.clone());
        }
    }
    let mut path_exclude = Vec::new();
    if let Some(e) = &raw.path_exclude {
        for pat in e.get_ref() {
            if !pat.starts_with('/') || glob::Pattern::new(pat).is_err() || pat.contains("..") {
                out.push(
                    out.at(e.span(), format!("`{pat}` is not an absolute path pattern"))
                        .help("write dpkg's path-exclude form, e.g. `\"/usr/share/locale/*\"`"),
                );
            }
            path_exclude.push(pat.clone());
        }
    }
    packages.sort();
    packages.dedup();
    exclude.sort();
    exclude.dedup();
    path_exclude.sort();
    path_exclude.dedup();
    BaseKind::Packages {
        packages,
        exclude,
        path_exclude,
        include_required,
        users: Vec::new(),
        groups: Vec::new(),
    }
}

/// Parses and validates one definition; `name` is the file stem.
pub(crate) fn parse(file: &Path, text: &str) -> Result<BaseDef, Diagnostics> {
    let raw: RawDef = diag::parse_toml(file, text)?;
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = Collector::new(file, text);
    if !valid_name(&name) {
        out.push(
            Diagnostic::in_file(file, format!("`{name}` is not a valid base image name"))
                .help("name the file with lowercase letters, digits, `.`, `_` or `-`, e.g. `base-images/go.toml`"),
        );
    }
    let kind_name = raw.kind.get_ref().as_str();
    // Keys each kind accepts, besides `kind`, `description`, `user` and `env`.
    let allowed: &[&str] = match kind_name {
        "debootstrap" => &["suite", "variant", "mirror", "components", "packages"],
        "tarball" => &["path"],
        "registry" => &["ref"],
        "static" => &["from"],
        "packages" => &[
            "packages",
            "exclude",
            "path-exclude",
            "include-required",
            "users",
            "groups",
        ],
        _ => {
            // The other keys cannot be judged without a kind: report what is known now.
            out.one_of(&raw.kind, KINDS, "base kind");
            return Err(out.into_diagnostics());
        }
    };
    let present: [(&str, Option<std::ops::Range<usize>>); 14] = [
        ("suite", raw.suite.as_ref().map(|s| s.span())),
        ("variant", raw.variant.as_ref().map(|s| s.span())),
        ("mirror", raw.mirror.as_ref().map(|s| s.span())),
        ("components", raw.components.as_ref().map(|s| s.span())),
        ("packages", raw.packages.as_ref().map(|s| s.span())),
        ("path", raw.path.as_ref().map(|s| s.span())),
        ("ref", raw.reference.as_ref().map(|s| s.span())),
        ("from", raw.from.as_ref().map(|s| s.span())),
        ("user", raw.user.as_ref().map(|s| s.span())),
        ("exclude", raw.exclude.as_ref().map(|s| s.span())),
        ("path-exclude", raw.path_exclude.as_ref().map(|s| s.span())),
        (
            "include-required",
            raw.include_required.as_ref().map(|s| s.span()),
        ),
        ("users", raw.users.as_ref().map(|s| s.span())),
        ("groups", raw.groups.as_ref().map(|s| s.span())),
    ];
    for (key, span) in &present {
        if let Some(span) = span {
            let common =
                *key == "user" && matches!(kind_name, "debootstrap" | "tarball" | "packages");
            if !allowed.contains(key) && !common {
                out.push(
                    out.at(
                        span.clone(),
                        format!("`{key}` is not used by kind = \"{kind_name}\""),
                    )
                    .help(format!(
                        "remove it; kind `{kind_name}` takes: {}",
                        allowed.join(", ")
                    )),
                );
            }
        }
    }
    let required = |v: &Option<Spanned<String>>, key: &str, out: &mut Collector<'_>| match v {
        Some(s) if !s.get_ref().trim().is_empty() => s.get_ref().trim().to_string(),
        Some(s) => {
            out.push(out.at(s.span(), format!("`{key}` must not be empty")));
            String::new()
        }
        None => {
            out.push(
                out.at(
                    raw.kind.span(),
                    format!("kind = \"{kind_name}\" needs `{key}`"),
                )
                .help(format!("add `{key} = \"...\"`")),
            );
            String::new()
        }
    };
    let mut kind = match kind_name {
        "packages" => packages_kind(&raw, &mut out),
        "debootstrap" => {
            let suite = required(&raw.suite, "suite", &mut out);
            let variant = raw
                .variant
                .as_ref()
                .map(|v| v.get_ref().clone())
                .unwrap_or_else(|| "minbase".to_string());
            if let Some(v) = &raw.variant {
                out.one_of(v, VARIANTS, "debootstrap variant");
            }
            if let Some(m) = &raw.mirror {
                let m2 = m.get_ref();
                if !(m2.starts_with("http://")
                    || m2.starts_with("https://")
                    || m2.starts_with("file:/"))
                {
                    out.push(
                        out.at(m.span(), format!("mirror `{m2}` is not a URL"))
                            .help("use e.g. `http://mirror.example/debian`"),
                    );
                }
            }
            let mut packages = raw
                .packages
                .as_ref()
                .map(|p| p.get_ref().clone())
                .unwrap_or_default();
            if let Some(p) = &raw.packages {
                for bad in p.get_ref().iter().filter(|p| !valid_package(p)) {
                    out.push(
                        out.at(p.span(), format!("`{bad}` is not a Debian package name"))
                            .help("package names use lowercase letters, digits, `+`, `-` and `.`"),
                    );
                }
            }
            packages.sort();
            packages.dedup();
            let components = raw
                .components
                .as_ref()
                .map(|c| c.get_ref().clone())
                .unwrap_or_else(|| vec!["main".to_string()]);
            BaseKind::Debootstrap {
                suite,
                variant,
                mirror: raw.mirror.as_ref().map(|m| m.get_ref().clone()),
                components,
                packages,
            }
        }
        "tarball" => {
            let path = required(&raw.path, "path", &mut out);
            if let Some(p) = &raw.path {
                if Path::new(p.get_ref()).is_absolute() || p.get_ref().contains("..") {
                    out.push(
                        out.at(
                            p.span(),
                            format!(
                                "`{}` must be relative to the project and stay inside it",
                                p.get_ref()
                            ),
                        )
                        .help("e.g. `path = \"vendor/rootfs.tar.gz\"`"),
                    );
                }
            }
            BaseKind::Tarball { path }
        }
        "registry" => BaseKind::Registry {
            reference: required(&raw.reference, "ref", &mut out),
        },
        _ => {
            let from = required(&raw.from, "from", &mut out);
            if from == name {
                if let Some(f) = &raw.from {
                    out.push(out.at(f.span(), "a base cannot be made from itself".to_string()));
                }
            }
            BaseKind::Static { from }
        }
    };
    if let Some(env) = &raw.env {
        if matches!(kind_name, "registry" | "static") {
            out.push(
                out.at(
                    env.span(),
                    format!("`env` is not used by kind = \"{kind_name}\""),
                )
                .help("set the environment in the recipe's [image] or [build] table"),
            );
        }
        for key in env.get_ref().keys().filter(|k| !valid_env_key(k)) {
            out.push(
                out.at(
                    env.span(),
                    format!("`{key}` is not a valid environment variable name"),
                )
                .help("use letters, digits and `_`, not starting with a digit"),
            );
        }
    }
    let user = raw
        .user
        .as_ref()
        .map(|u| user_def(u.get_ref(), u.span(), &mut out));
    if let BaseKind::Packages { users, groups, .. } = &mut kind {
        if let Some(list) = &raw.users {
            for u in list.get_ref() {
                let d = user_def(u, list.span(), &mut out);
                let clash = user
                    .iter()
                    .chain(users.iter())
                    .any(|o| o.name == d.name || o.uid == d.uid);
                if clash {
                    out.push(
                        out.at(
                            list.span(),
                            format!("user `{}` (uid {}) is given twice", d.name, d.uid),
                        )
                        .help("each user needs its own name and uid"),
                    );
                }
                users.push(d);
            }
        }
        if let Some(list) = &raw.groups {
            for g in list.get_ref() {
                if !valid_user(&g.name) || g.gid == 0 {
                    out.push(
                        out.at(
                            list.span(),
                            format!("`{}` (gid {}) is not a valid group", g.name, g.gid),
                        )
                        .help("use lowercase letters, digits, `_` and `-`, and a gid other than 0"),
                    );
                }
                groups.push(GroupDef {
                    name: g.name.clone(),
                    gid: g.gid,
                });
            }
        }
    }
    out.finish(BaseDef {
        name,
        file: file.to_path_buf(),
        description: raw.description,
        kind,
        user,
        env: raw.env.map(|e| e.into_inner()).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<BaseDef, Diagnostics> {
        parse(Path::new("base-images/go.toml"), text)
    }

    #[test]
    fn debootstrap_defaults() {
        let d = p("kind = \"debootstrap\"\nsuite = \"bookworm\"\npackages = [\"golang-go\", \"ca-certificates\"]\nuser = { name = \"builder\", uid = 1000 }\n").unwrap();
        assert_eq!(d.name, "go");
        match &d.kind {
            BaseKind::Debootstrap {
                variant,
                packages,
                components,
                ..
            } => {
                assert_eq!(variant, "minbase");
                assert_eq!(packages, &["ca-certificates", "golang-go"]);
                assert_eq!(components, &["main"]);
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(d.user.as_ref().unwrap().home, "/home/builder");
    }

    #[test]
    fn canonical_ignores_formatting_and_order() {
        let a = p("kind = \"debootstrap\"\nsuite = \"bookworm\"\npackages = [\"bb\", \"aa\"]\n")
            .unwrap();
        let b =
            p("# comment\npackages = [ \"aa\",\"bb\" ]\nsuite='bookworm'\nkind=\"debootstrap\"\n")
                .unwrap();
        assert_eq!(a.canonical(), b.canonical());
        let c =
            p("kind = \"debootstrap\"\nsuite = \"trixie\"\npackages = [\"bb\", \"aa\"]\n").unwrap();
        assert_ne!(a.canonical(), c.canonical());
    }

    #[test]
    fn unknown_key_points_at_line_and_column() {
        let err =
            p("kind = \"debootstrap\"\nsuite = \"bookworm\"\n  pakages = [\"x\"]\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("base-images/go.toml:3:3"), "{text}");
        assert!(text.contains("did you mean `packages`?"), "{text}");
    }

    #[test]
    fn key_of_another_kind_is_refused() {
        let err = p("kind = \"static\"\nfrom = \"bookworm\"\nsuite = \"bookworm\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`suite` is not used by kind = \"static\""),
            "{text}"
        );
        assert!(text.contains("go.toml:3:9"), "{text}");
    }

    #[test]
    fn package_sets_check_relations_and_path_patterns() {
        let d = p(
            "kind = \"packages\"\npackages = [\"tzdata (>= 2024a)\", \"libc6\"]\n\
                   exclude = [\"debconf\"]\npath-exclude = [\"/usr/share/locale/*\"]\n",
        )
        .unwrap();
        match &d.kind {
            BaseKind::Packages {
                packages,
                path_exclude,
                ..
            } => {
                assert_eq!(packages, &["libc6", "tzdata (>= 2024a)"]);
                assert_eq!(path_exclude, &["/usr/share/locale/*"]);
            }
            k => panic!("{k:?}"),
        }
        let err = p("kind = \"packages\"\npackages = [\"Bad Name\"]\npath-exclude = [\"usr/*\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("go.toml:2:12") && err.contains("is not a package relation"),
            "{err}"
        );
        assert!(
            err.contains("`usr/*` is not an absolute path pattern"),
            "{err}"
        );
        let err = p("kind = \"packages\"\n").unwrap_err().to_string();
        assert!(err.contains("needs `packages`"), "{err}");
    }

    #[test]
    fn unknown_kind_suggests() {
        let err = p("kind = \"debootstap\"\n").unwrap_err().to_string();
        assert!(err.contains("did you mean `debootstrap`?"), "{err}");
    }

    #[test]
    fn missing_required_key() {
        let err = p("kind = \"static\"\n").unwrap_err().to_string();
        assert!(err.contains("needs `from`"), "{err}");
    }
}
