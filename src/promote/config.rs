//! `promote.toml` (at the project root, optional): the environments in promotion order,
//! whether promotions may skip one, where the repositories live, the registry and the
//! signing key. Unknown keys are errors. Command-line flags override the file. Problems are
//! reported like a recipe's ([`crate::diag`]): all of them, each with file:line:col and a fix.
//!
//! ```toml
//! environments = ["dev", "staging", "prod"]   # the default
//! allow_skip = false                          # dev → prod directly? (default: refused)
//! root = "dist/repos"                         # relative to the project
//! registry = "127.0.0.1:5000"                 # push images to <registry>/<env>/<name>:<tag>
//! signing_key = "/etc/builder/signing-key.asc"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{self, Collector, Diagnostics};
use crate::error::usage;
use crate::project::Paths;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    environments: Option<Spanned<Vec<Spanned<String>>>>,
    allow_skip: Option<bool>,
    root: Option<PathBuf>,
    registry: Option<String>,
    signing_key: Option<PathBuf>,
}

/// The promotion configuration after flags were applied.
#[derive(Debug, Clone)]
pub(crate) struct PromoteConfig {
    pub environments: Vec<String>,
    pub allow_skip: bool,
    pub root: PathBuf,
    pub registry: Option<String>,
    pub signing_key: Option<PathBuf>,
    /// The file read (`None`: no promote.toml, defaults).
    pub file: Option<PathBuf>,
}

pub(crate) const FILE: &str = "promote.toml";

impl PromoteConfig {
    /// Reads `path` (or `<project>/promote.toml` when it exists); defaults otherwise.
    pub(crate) fn load(paths: &Paths, path: Option<&Path>) -> anyhow::Result<Self> {
        let default_path = paths.project.join(FILE);
        let (raw, file) = match path {
            Some(p) => (read(p)?, Some(p.to_path_buf())),
            None if default_path.is_file() => (read(&default_path)?, Some(default_path)),
            None => (Raw::default(), None),
        };
        let environments = raw.environments.map_or_else(
            || vec!["dev".into(), "staging".into(), "prod".into()],
            |list| {
                list.into_inner()
                    .into_iter()
                    .map(Spanned::into_inner)
                    .collect()
            },
        );
        let relative = |p: PathBuf| {
            if p.is_absolute() {
                p
            } else {
                paths.project.join(p)
            }
        };
        Ok(PromoteConfig {
            environments,
            allow_skip: raw.allow_skip.unwrap_or(false),
            root: raw
                .root
                .map(relative)
                .unwrap_or_else(|| paths.dist.join("repos")),
            registry: raw.registry.filter(|r| !r.trim().is_empty()),
            signing_key: raw.signing_key.map(relative),
            file,
        })
    }

    /// The signing key: `flag`, else the environment, else `signing_key` here, else the
    /// generated key (see [`crate::sign::resolve`]); says which one in an info line.
    pub(crate) fn signer(
        &self,
        flag: Option<&std::path::Path>,
        reporter: &crate::report::Reporter,
    ) -> anyhow::Result<crate::sign::Signer> {
        let (signer, source) = crate::sign::resolve(flag, self.key_config())?;
        reporter.info(format!(
            "signing with key {} from {source}",
            signer.fingerprint()
        ));
        Ok(signer)
    }

    /// `signing_key` with the file that set it, as [`crate::sign::resolve`] takes them.
    pub(crate) fn key_config(&self) -> Option<(&Path, &Path)> {
        let file = self.file.as_deref().unwrap_or(Path::new(FILE));
        self.signing_key.as_deref().map(|k| (k, file))
    }

    /// [`Self::signer`], or `None` when no key is configured anywhere (a key that is
    /// configured but unusable is still an error).
    pub(crate) fn signer_if_any(
        &self,
        flag: Option<&std::path::Path>,
        reporter: &crate::report::Reporter,
    ) -> anyhow::Result<Option<crate::sign::Signer>> {
        match crate::sign::key_source(flag, self.key_config()) {
            None => Ok(None),
            Some(_) => self.signer(flag, reporter).map(Some),
        }
    }

    /// Position of `env` in the promotion order.
    pub(crate) fn position(&self, env: &str) -> anyhow::Result<usize> {
        self.environments
            .iter()
            .position(|e| e == env)
            .ok_or_else(|| {
                usage(format!(
                    "unknown environment `{env}`: the environments are {} (set `environments` \
                     in {FILE})",
                    self.environments.join(" → ")
                ))
            })
    }
}

/// Reads and checks `path`: every problem at once, with positions.
fn read(path: &Path) -> Result<Raw, Diagnostics> {
    let text = diag::read_text(path, "promotion config")?;
    parse(path, &text)
}

/// Parses and checks promote.toml text (`file` is only used in diagnostics).
fn parse(file: &Path, text: &str) -> Result<Raw, Diagnostics> {
    let raw: Raw = diag::parse_toml(file, text)?;
    let mut out = Collector::new(file, text);
    if let Some(list) = &raw.environments {
        if list.get_ref().is_empty() {
            out.err_help(
                list.span(),
                "`environments` is empty: list at least one",
                "e.g. `environments = [\"dev\", \"staging\", \"prod\"]`",
            );
        }
        for (i, e) in list.get_ref().iter().enumerate() {
            // An environment is a directory under `root`: `../x` or `` must not get that far.
            if let Err(why) = crate::repo::check_env_name(e.get_ref()) {
                out.err_help(e.span(), format!("`environments`: {why}"), "fix that entry");
            } else if list.get_ref()[..i]
                .iter()
                .any(|x| x.get_ref() == e.get_ref())
            {
                out.err_help(
                    e.span(),
                    format!("environment `{}` is listed twice", e.get_ref()),
                    "list each environment once, in promotion order",
                );
            }
        }
    }
    out.finish(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Raw, Diagnostics> {
        parse(Path::new("promote.toml"), text)
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let err = p("environments = [\"dev\", \"../x\", \"dev\"]\n").unwrap_err();
        let at: Vec<_> = err.items().iter().map(|d| (d.line, d.col)).collect();
        assert_eq!(at, [(1, 24), (1, 32)], "{err}");
        let out = err.to_string();
        assert!(out.contains("promote.toml:1:24"), "{out}");
        assert!(
            out.contains("`../x` is not a valid environment name"),
            "{out}"
        );
        assert!(out.contains("environment `dev` is listed twice"), "{out}");
    }

    #[test]
    fn unknown_keys_suggest_the_right_one() {
        let out = p("alow_skip = true\n").unwrap_err().to_string();
        assert!(out.contains("promote.toml:1:1"), "{out}");
        assert!(out.contains("unknown key `alow_skip`"), "{out}");
        assert!(out.contains("did you mean `allow_skip`?"), "{out}");
    }

    #[test]
    fn an_empty_list_is_refused_and_defaults_apply_without_one() {
        let out = p("environments = []\n").unwrap_err().to_string();
        assert!(out.contains("`environments` is empty"), "{out}");
        let raw = p("allow_skip = true\n").unwrap();
        assert!(raw.environments.is_none() && raw.allow_skip == Some(true));
    }
}
