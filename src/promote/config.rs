//! `promote.toml` (at the project root, optional): the environments in promotion order,
//! whether promotions may skip one, where the repositories live, the registry and the
//! signing key. Unknown keys are errors. Command-line flags override the file.
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

use crate::error::usage;
use crate::project::Paths;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    environments: Option<Vec<String>>,
    allow_skip: Option<bool>,
    root: Option<PathBuf>,
    registry: Option<String>,
    signing_key: Option<PathBuf>,
}

/// The promotion configuration after flags were applied.
#[derive(Debug, Clone)]
pub struct PromoteConfig {
    pub environments: Vec<String>,
    pub allow_skip: bool,
    pub root: PathBuf,
    pub registry: Option<String>,
    pub signing_key: Option<PathBuf>,
    /// The file read (`None`: no promote.toml, defaults).
    pub file: Option<PathBuf>,
}

pub const FILE: &str = "promote.toml";

impl PromoteConfig {
    /// Reads `path` (or `<project>/promote.toml` when it exists); defaults otherwise.
    pub fn load(paths: &Paths, path: Option<&Path>) -> anyhow::Result<Self> {
        let default_path = paths.project.join(FILE);
        let (raw, file) = match path {
            Some(p) => (parse(p)?, Some(p.to_path_buf())),
            None if default_path.is_file() => (parse(&default_path)?, Some(default_path)),
            None => (Raw::default(), None),
        };
        let environments = raw
            .environments
            .unwrap_or_else(|| vec!["dev".into(), "staging".into(), "prod".into()]);
        let where_ = file
            .as_ref()
            .map(|f| format!(" in `{}`", f.display()))
            .unwrap_or_default();
        if environments.is_empty() {
            return Err(usage(format!(
                "`environments`{where_} is empty: list at least one"
            )));
        }
        for (i, e) in environments.iter().enumerate() {
            // An environment is a directory under `root`: `../x` or `` must not get that far.
            if let Err(why) = crate::repo::check_env_name(e) {
                return Err(usage(format!(
                    "`environments`{where_}: {why}; fix that entry"
                )));
            }
            if environments[..i].contains(e) {
                return Err(usage(format!("environment `{e}` is listed twice{where_}")));
            }
        }
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
    pub fn signer(
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
    fn key_config(&self) -> Option<(&Path, &Path)> {
        let file = self.file.as_deref().unwrap_or(Path::new(FILE));
        self.signing_key.as_deref().map(|k| (k, file))
    }

    /// [`Self::signer`], or `None` when no key is configured anywhere (a key that is
    /// configured but unusable is still an error).
    pub fn signer_if_any(
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
    pub fn position(&self, env: &str) -> anyhow::Result<usize> {
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

fn parse(path: &Path) -> anyhow::Result<Raw> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("could not read `{}`: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| usage(format!("`{}`: {e}", path.display())))
}
