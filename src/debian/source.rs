//! Where Debian packages come from: `archive.toml` at the project root, or by default the
//! host's apt sources for `bookworm`, `bookworm-updates` and `bookworm-security` (component
//! `main`), each with its `Signed-By` keyring or Debian's archive keyring.
//!
//! The mirror URIs are not part of what the lock records: the same lock resolves to the
//! same files on any mirror of the same archive.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::diag::Diagnostics;
use crate::diag::{self, Collector, Diagnostic};

/// The project file that configures the archive.
pub const FILE: &str = "archive.toml";
/// The suites used when `archive.toml` names none.
pub const DEFAULT_SUITES: &[&str] = &["bookworm", "bookworm-updates", "bookworm-security"];

/// One suite of one archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// Archive root (`http://host/debian`, `file:/srv/repo`), without trailing `/`.
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
    /// Keyrings the suite's InRelease must verify against.
    pub keyrings: Vec<PathBuf>,
}

impl Source {
    /// `<uri>/dists/<suite>/<path>`.
    pub fn dists_url(&self, path: &str) -> String {
        format!("{}/dists/{}/{path}", self.uri, self.suite)
    }

    /// `<uri>/<filename>` for a pool file.
    pub fn pool_url(&self, filename: &str) -> String {
        format!("{}/{filename}", self.uri)
    }
}

/// The archive configuration of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveConfig {
    pub sources: Vec<Source>,
    /// Debian architecture (`amd64`).
    pub architecture: String,
    /// `archive.toml` when the project has one.
    pub file: Option<PathBuf>,
}

/// What the lock records of the configuration: suites, components and architecture, not
/// mirrors or keyrings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub architecture: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
}

impl ArchiveConfig {
    pub fn identity(&self) -> Identity {
        let mut components: Vec<String> = self
            .sources
            .iter()
            .flat_map(|s| s.components.iter().cloned())
            .collect();
        components.sort();
        components.dedup();
        Identity {
            architecture: self.architecture.clone(),
            suites: self.sources.iter().map(|s| s.suite.clone()).collect(),
            components,
        }
    }

    /// Loads `<project>/archive.toml`, or the host's apt sources for [`DEFAULT_SUITES`].
    pub fn load(project: &Path) -> anyhow::Result<ArchiveConfig> {
        let file = project.join(FILE);
        match std::fs::read_to_string(&file) {
            Ok(text) => Ok(parse(&file, &text, &host_sources())?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let host = host_sources();
                let mut sources = Vec::new();
                for suite in DEFAULT_SUITES {
                    if let Some(s) = host.get(*suite) {
                        sources.push(s.clone());
                    }
                }
                if sources.first().map(|s| s.suite.as_str()) != Some(DEFAULT_SUITES[0]) {
                    return Err(crate::error::usage(format!(
                        "the host's apt sources (/etc/apt/sources.list, \
                         /etc/apt/sources.list.d/) name no `{}` suite, and the project has no \
                         {FILE}; write {FILE} with a [[source]] (uri, suites, components, \
                         keyring)",
                        DEFAULT_SUITES[0]
                    )));
                }
                for s in &mut sources {
                    s.components = vec!["main".to_string()];
                }
                Ok(ArchiveConfig {
                    sources,
                    architecture: host_architecture().to_string(),
                    file: None,
                })
            }
            Err(e) => Err(crate::error::environment(format!(
                "could not read `{}`: {e}",
                file.display()
            ))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    architecture: Option<Spanned<String>>,
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    uri: Option<Spanned<String>>,
    suites: Spanned<Vec<String>>,
    components: Option<Vec<String>>,
    keyring: Option<Spanned<String>>,
}

fn valid_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+/".contains(&b))
        && !s.contains("..")
}

/// Parses `archive.toml`; `host` supplies the URI and keyring of sources that give none.
pub fn parse(
    file: &Path,
    text: &str,
    host: &BTreeMap<String, Source>,
) -> Result<ArchiveConfig, Diagnostics> {
    let raw: RawConfig = diag::parse_toml(file, text)?;
    let mut out = Collector::new(file, text);
    let architecture = match &raw.architecture {
        Some(a) if valid_word(a.get_ref()) && !a.get_ref().contains('/') => a.get_ref().clone(),
        Some(a) => {
            out.push(out.at(
                a.span(),
                format!("`{}` is not a Debian architecture", a.get_ref()),
            ));
            String::new()
        }
        None => host_architecture().to_string(),
    };
    if raw.source.is_empty() {
        out.push(
            Diagnostic::in_file(file, "no [[source]] is configured")
                .help("add `[[source]]` with `suites = [\"bookworm\"]`"),
        );
    }
    let project = file.parent().unwrap_or(Path::new("."));
    let mut sources = Vec::new();
    for s in &raw.source {
        let r = s.get_ref();
        if r.suites.get_ref().is_empty() {
            out.push(out.at(r.suites.span(), "`suites` is empty"));
        }
        let components = r.components.clone().unwrap_or_else(|| vec!["main".into()]);
        for bad in components
            .iter()
            .chain(r.suites.get_ref())
            .filter(|w| !valid_word(w))
        {
            out.push(out.at(
                s.span(),
                format!("`{bad}` is not a suite or component name"),
            ));
        }
        for suite in r.suites.get_ref() {
            let from_host = host.get(suite);
            let uri = match (&r.uri, from_host) {
                (Some(u), _) => {
                    let v = u.get_ref().trim_end_matches('/').to_string();
                    if !(v.starts_with("http://")
                        || v.starts_with("https://")
                        || v.starts_with("file:"))
                    {
                        out.push(
                            out.at(
                                u.span(),
                                format!("`{v}` is not an http://, https:// or file: URI"),
                            )
                            .help("e.g. `uri = \"file:/srv/apt\"`"),
                        );
                    }
                    v
                }
                (None, Some(h)) => h.uri.clone(),
                (None, None) => {
                    out.push(
                        out.at(
                            r.suites.span(),
                            format!("the host's apt sources do not name suite `{suite}`"),
                        )
                        .help("give the archive's `uri` in this [[source]]"),
                    );
                    String::new()
                }
            };
            let keyrings = match (&r.keyring, from_host) {
                (Some(k), _) => {
                    let p = project.join(k.get_ref());
                    if !p.is_file() {
                        out.push(
                            out.at(
                                k.span(),
                                format!("keyring `{}` does not exist", p.display()),
                            )
                            .help(
                                "give the path of a .gpg or .asc file of the archive's public keys",
                            ),
                        );
                    }
                    vec![p]
                }
                (None, Some(h)) if r.uri.is_none() => h.keyrings.clone(),
                _ => vec![super::keyring::default_keyring()],
            };
            sources.push(Source {
                uri,
                suite: suite.clone(),
                components: components.clone(),
                keyrings,
            });
        }
    }
    out.finish(ArchiveConfig {
        sources,
        architecture,
        file: Some(file.to_path_buf()),
    })
}

/// The Debian architecture of this machine.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The host's apt sources by suite (the first entry naming a suite wins), from
/// `/etc/apt/sources.list` and `/etc/apt/sources.list.d/*.{list,sources}`.
pub fn host_sources() -> BTreeMap<String, Source> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sources" || x == "list"))
            .collect();
        more.sort();
        files.extend(more);
    }
    let mut out = BTreeMap::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let entries = if f.extension().is_some_and(|x| x == "sources") {
            parse_deb822_sources(&text)
        } else {
            parse_one_line_sources(&text)
        };
        for s in entries {
            out.entry(s.suite.clone()).or_insert(s);
        }
    }
    out
}

fn keyrings_of(signed_by: Option<&str>) -> Vec<PathBuf> {
    match signed_by {
        // Only paths: an inline key block is not supported here (it falls back to Debian's).
        Some(v) if v.trim_start().starts_with('/') => {
            v.split_whitespace().map(PathBuf::from).collect()
        }
        _ => vec![super::keyring::default_keyring()],
    }
}

/// `Types: deb` entries of a deb822 `.sources` file (`Enabled: no` skipped).
pub fn parse_deb822_sources(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for p in super::deb822::paragraphs(text).flatten() {
        if !p
            .get("Types")
            .unwrap_or_default()
            .split_whitespace()
            .any(|t| t == "deb")
            || p.get("Enabled") == Some("no")
        {
            continue;
        }
        let Some(uri) = p.get("URIs").and_then(|u| u.split_whitespace().next()) else {
            continue;
        };
        let components: Vec<String> = p
            .get("Components")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        for suite in p.get("Suites").unwrap_or_default().split_whitespace() {
            out.push(Source {
                uri: uri.trim_end_matches('/').to_string(),
                suite: suite.to_string(),
                components: components.clone(),
                keyrings: keyrings_of(p.get("Signed-By")),
            });
        }
    }
    out
}

/// `deb [options] uri suite components...` lines of a `sources.list`.
pub fn parse_one_line_sources(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let rest = rest.trim_start();
        let (options, rest) = match rest.strip_prefix('[') {
            Some(r) => match r.split_once(']') {
                Some((o, rest)) => (o, rest),
                None => continue,
            },
            None => ("", rest),
        };
        let signed_by = options
            .split_whitespace()
            .find_map(|o| o.strip_prefix("signed-by="));
        let mut w = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (w.next(), w.next()) else {
            continue;
        };
        out.push(Source {
            uri: uri.trim_end_matches('/').to_string(),
            suite: suite.to_string(),
            components: w.map(str::to_string).collect(),
            keyrings: keyrings_of(signed_by),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_apt_source_formats() {
        let d = parse_deb822_sources(
            "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
             Types: deb-src\nURIs: http://x/\nSuites: bookworm\n\n\
             Types: deb\nEnabled: no\nURIs: http://y/\nSuites: sid\n",
        );
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].uri, "http://mirror.example/debian");
        assert_eq!(d[1].suite, "bookworm-updates");
        let l = parse_one_line_sources(
            "# c\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\n\
             deb-src http://m.example/debian bookworm main\n",
        );
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].keyrings, vec![PathBuf::from("/k.gpg")]);
        assert_eq!(l[0].components, ["main", "contrib"]);
    }

    #[test]
    fn archive_toml_errors_point_at_the_field() {
        let host = BTreeMap::new();
        let err = parse(
            Path::new("archive.toml"),
            "[[source]]\nsuites = [\"bookworm\"]\n",
            &host,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("archive.toml:2:10"), "{err}");
        assert!(err.contains("do not name suite `bookworm`"), "{err}");
        let err = parse(Path::new("archive.toml"), "[[source]]\nsuits = []\n", &host)
            .unwrap_err()
            .to_string();
        assert!(err.contains("archive.toml:2"), "{err}");
        let ok = parse(
            Path::new("archive.toml"),
            "architecture = \"amd64\"\n[[source]]\nuri = \"file:/srv/r/\"\nsuites = [\"s1\", \"s2\"]\n",
            &host,
        )
        .unwrap();
        assert_eq!(ok.sources.len(), 2);
        assert_eq!(
            ok.sources[1].dists_url("InRelease"),
            "file:/srv/r/dists/s2/InRelease"
        );
        assert_eq!(ok.identity().components, ["main"]);
    }
}
