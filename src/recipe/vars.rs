//! `${NAME}` in recipe values (`version`, `revision`, user `fields`): taken from the
//! environment, else from the project's git history, so CI can build every commit without
//! editing a recipe. `${NAME:-default}` gives a default when NAME is unset; `$$` is a `$`.
//! An unset variable without a default is an error at its position: a value never expands
//! to an empty string by accident.
//!
//! Variables builder derives from git (the environment wins when it sets the same name):
//! - `GIT_VERSION`: at a release tag (`v1.2.0` or `1.2.0`, pointing at HEAD) the tag's
//!   version; `N` commits after one, `1.2.0+git<YYYYMMDDHHMMSS>.<N>.<hash>`, which sorts
//!   after 1.2.0 and before any later release; without any tag,
//!   `0~git<YYYYMMDDHHMMSS>.<N>.<hash>` with `N` counting every commit. The timestamp is
//!   HEAD's commit time (UTC), so later commits sort later, and the same commit always gives
//!   the same version. In a shallow clone the count and the tags it lacks are missing, so
//!   versions still sort by commit time but a release tag may not be seen: fetch the history.
//! - `GIT_SNAPSHOT`: empty at a release tag, else `~git<YYYYMMDDHHMMSS>.<N>.<hash>`: appended to
//!   a version (`1.3.0${GIT_SNAPSHOT}`), it makes snapshots that sort before that release.
//! - `GIT_COMMIT` (full hash), `GIT_SHORT_COMMIT` (7 hex digits), `GIT_TAG` (the nearest
//!   release tag, unset without one), `GIT_COMMITS_SINCE_TAG`.
//!
//! Uncommitted changes to tracked files add `.dirty` to both versions' snapshot part (a
//! tagged but modified tree gives `1.2.0+dirty`): such a build is never taken for the
//! commit's own.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Looks a name up in an environment.
type Env = Box<dyn Fn(&str) -> Option<String>>;

/// Where `${NAME}` values come from.
pub(crate) struct Vars {
    project: PathBuf,
    env: Env,
    git: OnceCell<Result<BTreeMap<&'static str, String>, String>>,
}

/// Why a value could not be expanded: a message for the byte range `at` of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpandError {
    pub at: std::ops::Range<usize>,
    pub message: String,
    pub help: Option<String>,
}

impl Vars {
    /// The process environment and the project's git history.
    pub(crate) fn new(project: &Path) -> Self {
        Self::with_env(project, |k| std::env::var(k).ok())
    }

    pub(crate) fn with_env(project: &Path, env: impl Fn(&str) -> Option<String> + 'static) -> Self {
        Vars {
            project: project.to_path_buf(),
            env: Box::new(env),
            git: OnceCell::new(),
        }
    }

    fn get(&self, name: &str) -> Result<Option<String>, String> {
        if let Some(v) = (self.env)(name) {
            return Ok(Some(v));
        }
        if !name.starts_with("GIT_") {
            return Ok(None);
        }
        let git = self.git.get_or_init(|| git_vars(&self.project));
        match git {
            Ok(vars) => Ok(vars.get(name).cloned()),
            Err(e) => Err(e.clone()),
        }
    }

    /// `text` with every `${NAME}` replaced.
    pub(crate) fn expand(&self, text: &str) -> Result<String, ExpandError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut at = 0;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let start = at + i;
            let after = &rest[i + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                at = start + 2;
                rest = tail;
                continue;
            }
            let Some(body) = after.strip_prefix('{') else {
                out.push('$');
                at = start + 1;
                rest = after;
                continue;
            };
            let Some(end) = body.find('}') else {
                return Err(ExpandError {
                    at: start..text.len(),
                    message: "`${` is not closed by `}`".into(),
                    help: Some("write `${NAME}`, or `$$` for a literal `$`".into()),
                });
            };
            let inner = &body[..end];
            let whole = start..start + end + 3;
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let valid = name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(ExpandError {
                    at: whole,
                    message: format!(
                        "`{}` is not a variable name: use letters, digits and `_`",
                        crate::diag::escape_controls(name)
                    ),
                    help: Some("write `${NAME}` or `${NAME:-default}`".into()),
                });
            }
            let value = match self.get(name) {
                Ok(Some(v)) => v,
                Ok(None) | Err(_) if default.is_some() => default.unwrap_or_default().to_string(),
                Ok(None) => {
                    return Err(ExpandError {
                        at: whole,
                        message: format!("`{name}` is not set"),
                        help: Some(format!(
                            "set it in the environment (`{name}=... builder ...`), or give a default: `${{{name}:-value}}`"
                        )),
                    })
                }
                Err(why) => {
                    return Err(ExpandError {
                        at: whole,
                        message: format!("`{name}` comes from git, but {why}"),
                        help: Some(format!(
                            "set `{name}` in the environment, or give a default: `${{{name}:-value}}`"
                        )),
                    })
                }
            };
            out.push_str(&value);
            at = whole.end;
            rest = &body[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// A tag's version: `v1.2.0` or `1.2.0`, when the rest is a Debian upstream version without
/// a revision (a tag `v1.2.0-rc1` is not a release version).
pub(crate) fn tag_version(tag: &str) -> Option<String> {
    let v = tag.strip_prefix('v').unwrap_or(tag);
    let parsed = super::debian::parse_version(v).ok()?;
    (parsed.epoch.is_none()
        && parsed.revision.is_none()
        && v.starts_with(|c: char| c.is_ascii_digit()))
    .then(|| v.to_string())
}

/// The git-derived variables of the checkout at `project`.
fn git_vars(project: &Path) -> Result<BTreeMap<&'static str, String>, String> {
    let not_git = || {
        format!(
            "`{}` is not a git checkout with a commit (or git is not installed)",
            project.display()
        )
    };
    let commit = crate::project::git(project, &["rev-parse", "--verify", "HEAD^{commit}"])
        .ok_or_else(not_git)?;
    let short: String = commit.chars().take(7).collect();
    let when: i64 = crate::project::git(project, &["show", "-s", "--format=%ct", "HEAD"])
        .and_then(|s| s.parse().ok())
        .ok_or_else(not_git)?;
    // YYYYMMDDHHMMSS of the commit (UTC): orders commits even where the count cannot.
    let date: String = crate::timefmt::rfc3339_secs(when)
        .chars()
        .take(19)
        .filter(char::is_ascii_digit)
        .collect();
    let dirty = crate::project::git(project, &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    // The nearest release tag: `git describe` over tags that look like versions.
    let described = crate::project::git(
        project,
        &[
            "describe",
            "--tags",
            "--long",
            "--abbrev=7",
            "--match",
            "v[0-9]*",
            "--match",
            "[0-9]*",
        ],
    )
    .and_then(|d| {
        let (rest, _hash) = d.rsplit_once("-g")?;
        let (tag, n) = rest.rsplit_once('-')?;
        Some((tag.to_string(), n.parse::<u64>().ok()?))
    })
    .and_then(|(tag, n)| Some((tag_version(&tag)?, tag, n)));
    let mut vars = BTreeMap::new();
    let (version, snapshot, since) = match &described {
        Some((v, tag, n)) => {
            vars.insert("GIT_TAG", tag.clone());
            if *n == 0 {
                let v = if dirty {
                    format!("{v}+dirty")
                } else {
                    v.clone()
                };
                let snap = if dirty {
                    "~dirty".to_string()
                } else {
                    String::new()
                };
                (v, snap, 0)
            } else {
                let part = format!("git{date}.{n}.{short}{}", if dirty { ".dirty" } else { "" });
                (format!("{v}+{part}"), format!("~{part}"), *n)
            }
        }
        None => {
            let n: u64 = crate::project::git(project, &["rev-list", "--count", "HEAD"])
                .and_then(|s| s.parse().ok())
                .ok_or_else(not_git)?;
            let part = format!("git{date}.{n}.{short}{}", if dirty { ".dirty" } else { "" });
            (format!("0~{part}"), format!("~{part}"), n)
        }
    };
    vars.insert("GIT_VERSION", version);
    vars.insert("GIT_SNAPSHOT", snapshot);
    vars.insert("GIT_COMMIT", commit);
    vars.insert("GIT_SHORT_COMMIT", short);
    vars.insert("GIT_COMMITS_SINCE_TAG", since.to_string());
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&'static str, &'static str)]) -> Vars {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Vars::with_env(Path::new("/nonexistent"), move |k| map.get(k).cloned())
    }

    #[test]
    fn expands_names_defaults_and_dollars() {
        let v = vars(&[("VERSION", "1.2.3"), ("EMPTY", "")]);
        assert_eq!(v.expand("${VERSION}").unwrap(), "1.2.3");
        assert_eq!(v.expand("a-${VERSION}-b").unwrap(), "a-1.2.3-b");
        assert_eq!(v.expand("${NOPE:-0.1}").unwrap(), "0.1");
        assert_eq!(v.expand("${EMPTY:-x}").unwrap(), "");
        assert_eq!(v.expand("$$5 and $x").unwrap(), "$5 and $x");
        assert_eq!(v.expand("${GIT_VERSION:-1.0.0}").unwrap(), "1.0.0");
    }

    #[test]
    fn errors_point_at_the_reference() {
        let v = vars(&[]);
        let e = v.expand("1.0-${NOPE}").unwrap_err();
        assert_eq!(e.at, 4..11);
        assert!(e.message.contains("`NOPE` is not set"), "{e:?}");
        let e = v.expand("x${GIT_VERSION}").unwrap_err();
        assert_eq!(e.at, 1..15);
        assert!(e.message.contains("not a git checkout"), "{e:?}");
        assert!(v
            .expand("${1X}")
            .unwrap_err()
            .message
            .contains("not a variable name"));
        assert!(v
            .expand("${OPEN")
            .unwrap_err()
            .message
            .contains("not closed"));
    }

    #[test]
    fn tags_that_are_release_versions() {
        assert_eq!(tag_version("v1.2.0").as_deref(), Some("1.2.0"));
        assert_eq!(tag_version("2.0").as_deref(), Some("2.0"));
        assert_eq!(tag_version("v1.2.0-rc1"), None);
        assert_eq!(tag_version("vnext"), None);
        assert_eq!(tag_version("1:2.0"), None);
    }
}
