//! The recipe file as written: serde structs with spans, `deny_unknown_fields` everywhere so
//! that a typo is an error, never silently ignored. Validation turns these into `model` types.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecipe {
    pub package: S<RawPackage>,
    #[serde(default)]
    pub files: Vec<S<RawFile>>,
    #[serde(default)]
    pub scripts: Option<S<RawScripts>>,
    #[serde(default)]
    pub systemd: Vec<S<RawUnit>>,
    #[serde(default)]
    pub triggers: Option<S<RawTriggers>>,
    #[serde(default)]
    pub build: Option<S<RawBuild>>,
    #[serde(default)]
    pub image: Option<S<RawImage>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawPackage {
    pub name: S<String>,
    pub version: S<String>,
    pub revision: Option<S<String>>,
    pub epoch: Option<S<i64>>,
    pub architecture: Option<S<String>>,
    pub maintainer: S<String>,
    pub description: S<String>,
    pub section: Option<S<String>>,
    pub priority: Option<S<String>>,
    pub homepage: Option<S<String>>,
    pub license: Option<S<String>>,
    #[serde(default)]
    pub depends: Vec<S<String>>,
    #[serde(default)]
    pub pre_depends: Vec<S<String>>,
    #[serde(default)]
    pub recommends: Vec<S<String>>,
    #[serde(default)]
    pub suggests: Vec<S<String>>,
    #[serde(default)]
    pub enhances: Vec<S<String>>,
    #[serde(default)]
    pub breaks: Vec<S<String>>,
    #[serde(default)]
    pub conflicts: Vec<S<String>>,
    #[serde(default)]
    pub provides: Vec<S<String>>,
    #[serde(default)]
    pub replaces: Vec<S<String>>,
    #[serde(default)]
    pub built_using: Vec<S<String>>,
    #[serde(default)]
    pub static_built_using: Vec<S<String>>,
    pub source: Option<S<String>>,
    pub multi_arch: Option<S<String>>,
    pub essential: Option<bool>,
    pub protected: Option<bool>,
    /// `debian/changelog`-style file, or `git`.
    pub changelog: Option<S<String>>,
    /// User-defined control fields (`X-...`, `XB-...`).
    #[serde(default)]
    pub fields: BTreeMap<S<String>, S<String>>,
    pub compression: Option<S<String>>,
    pub etc_conffiles: Option<bool>,
    #[serde(default)]
    pub lintian_overrides: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawFile {
    pub from: Option<S<String>>,
    pub symlink: Option<S<String>>,
    /// A directory entry on its own (no `from`, `symlink` or `to`).
    pub dir: Option<S<String>>,
    pub to: Option<S<String>>,
    pub mode: Option<S<toml::Value>>,
    pub owner: Option<S<String>>,
    pub group: Option<S<String>>,
    #[serde(default)]
    pub conffile: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScripts {
    pub preinst: Option<S<String>>,
    pub postinst: Option<S<String>>,
    pub prerm: Option<S<String>>,
    pub postrm: Option<S<String>>,
    pub config: Option<S<String>>,
    pub templates: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawUnit {
    pub unit: S<String>,
    pub enable: Option<S<bool>>,
    pub start: Option<S<bool>>,
    pub restart_after_upgrade: Option<S<bool>>,
    pub stop_on_upgrade: Option<S<bool>>,
}

/// `[triggers]`: deb-triggers(5) directives, each a list of trigger names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawTriggers {
    #[serde(default)]
    pub interest: Vec<S<String>>,
    #[serde(default)]
    pub interest_await: Vec<S<String>>,
    #[serde(default)]
    pub interest_noawait: Vec<S<String>>,
    #[serde(default)]
    pub activate: Vec<S<String>>,
    #[serde(default)]
    pub activate_await: Vec<S<String>>,
    #[serde(default)]
    pub activate_noawait: Vec<S<String>>,
}

/// A command: `["go", "build"]` or a shell string `"go build && strip x"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawCommand {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBuild {
    pub builder: S<String>,
    pub source: S<String>,
    pub command: S<RawCommand>,
    pub test: Option<S<RawCommand>>,
    #[serde(default)]
    pub env: BTreeMap<String, S<String>>,
    #[serde(default)]
    pub outputs: Vec<S<String>>,
    #[serde(default)]
    pub ignore: Vec<S<String>>,
    pub network: Option<S<String>>,
    pub cpus: Option<S<f64>>,
    pub memory: Option<S<toml::Value>>,
    pub user: Option<S<String>>,
    pub workdir: Option<S<String>>,
    #[serde(default)]
    pub cache: Vec<S<String>>,
    pub timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawImage {
    pub base: S<String>,
    pub name: Option<S<String>>,
    #[serde(default)]
    pub entrypoint: Option<S<Vec<String>>>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, S<String>>,
    pub user: Option<S<String>>,
    pub workdir: Option<S<String>>,
    #[serde(default)]
    pub ports: Vec<S<i64>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub include_conffiles: Option<bool>,
    pub include_systemd: Option<bool>,
    /// Depends that count as met in the image without installing them.
    #[serde(default)]
    pub exclude: Option<S<Vec<String>>>,
}
