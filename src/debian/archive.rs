//! The Debian archive client: verified indexes and verified .deb files.
//!
//! 1. `dists/<suite>/InRelease` is fetched and its signature verified against the suite's
//!    keyring ([`super::keyring`]); an expired `Valid-Until` is refused.
//! 2. Each component's `binary-<arch>/Packages` (xz, else gz, else plain) is fetched by hash
//!    when the Release offers it, checked against the size and sha256 the signed Release
//!    lists, and kept in the cache under its sha256 (`debian/indexes/<sha256>`).
//! 3. `.deb` files are fetched in parallel and checked against the sha256 of the verified
//!    index (or of the lock, which recorded it from a verified index), and kept under their
//!    sha256 (`debian/debs/<sha256>.deb`). A file in the cache is hashed again when used; a
//!    damaged one is downloaded anew.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use futures_util::StreamExt;

use super::fetch::{Expect, FetchError, Fetcher};
use super::index::Index;
use super::keyring::Keyring;
use super::release::Release;
use super::source::{ArchiveConfig, Source};
use crate::report::Reporter;

/// InRelease files larger than this are refused (Debian's are about 150 KB).
const MAX_INRELEASE: u64 = 64 << 20;
/// Parallel downloads.
const PARALLEL: usize = 6;
/// Most bytes an index may decompress to (Debian's largest, main amd64, is about 50 MB).
const MAX_INDEX_TEXT: u64 = 2 << 30;
/// Downloads (`.part-*`) older than this were left by a process that died; swept.
const STALE_PART: std::time::Duration = std::time::Duration::from_secs(3600);

/// The Packages texts of a suite, `(path in dists, text)`, and whether its Release says
/// `NotAutomatic: yes`.
type SuiteIndexes = (Vec<(String, String)>, bool);

/// A .deb to have in the cache: where it lives in the archive and what it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebRef {
    /// `name version` for messages.
    pub id: String,
    pub suite: String,
    pub filename: String,
    pub size: u64,
    pub sha256: String,
}

/// The configured archive, with a client and the cache directory.
#[derive(Clone)]
pub struct Archive {
    pub config: ArchiveConfig,
    fetcher: Fetcher,
    cache: PathBuf,
}

/// The cache directory for archive files.
pub(crate) fn cache_root() -> PathBuf {
    crate::project::cache_dir().join("debian")
}

/// Where a .deb of sha256 `hex` lives in the cache.
pub(crate) fn deb_path(hex: &str) -> PathBuf {
    cache_root().join("debs").join(format!("{hex}.deb"))
}

impl Archive {
    pub fn new(config: ArchiveConfig) -> anyhow::Result<Archive> {
        Ok(Archive {
            config,
            fetcher: Fetcher::new()?,
            cache: cache_root(),
        })
    }

    /// The configured suites, for messages: `bookworm, bookworm-updates`.
    fn suites(&self) -> String {
        self.config
            .sources
            .iter()
            .map(|s| s.suite.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn source(&self, suite: &str) -> anyhow::Result<&Source> {
        self.config
            .sources
            .iter()
            .find(|s| s.suite == suite)
            .ok_or_else(|| {
                crate::error::usage(format!(
                    "suite `{suite}` is not configured (configured: {}); run `builder lock --update` \
                     after changing the suites",
                    self.suites()
                ))
            })
    }

    /// Fetches and verifies every configured suite's Release and Packages indexes.
    pub async fn index(&self, reporter: &Reporter) -> anyhow::Result<Index> {
        let progress = reporter.progress("Index", Some(self.config.sources.len() as u64));
        let arch = self.config.architecture.clone();
        let sources = self.config.sources.clone();
        let texts = futures_util::stream::iter(sources.into_iter().map(|s| {
            let me = self.clone();
            let arch = arch.clone();
            async move { me.suite_indexes(&s, &arch).await }
        }))
        .buffered(PARALLEL)
        .collect::<Vec<_>>()
        .await;
        let mut index = Index::new(&arch);
        for (source, texts) in self.config.sources.iter().zip(texts) {
            let (texts, not_automatic) = texts?;
            if not_automatic {
                index.demote_suite(&source.suite);
            }
            for (path, text) in texts {
                index.add_packages_text(&text, &source.suite).map_err(|e| {
                    crate::error::failed(format!("{}: {e}", source.dists_url(&path)))
                })?;
            }
            progress.inc(1);
            progress.message(&source.suite);
        }
        progress.finish(format!("{} packages in {}", index.len(), self.suites()));
        Ok(index)
    }

    /// The verified Release of a suite.
    pub async fn release(&self, s: &Source) -> anyhow::Result<Release> {
        let url = s.dists_url("InRelease");
        let bytes = self
            .fetcher
            .get_bytes(&url, MAX_INRELEASE)
            .await
            .map_err(|e| match e {
                FetchError::NotFound { .. } => crate::error::usage(format!(
                    "{e}: is suite `{}` right, and is `{}` a Debian archive?",
                    s.suite, s.uri
                )),
                e => e.into_anyhow(),
            })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| crate::error::failed(format!("{url} is not text")))?;
        let keyring = Keyring::load(&s.keyrings)?;
        let (signed, _fpr) = keyring.verify_clearsigned(&text, &url)?;
        let release =
            Release::parse(&signed).map_err(|e| crate::error::failed(format!("{url}: {e}")))?;
        release
            .check_dates(crate::timefmt::now_secs(), &url)
            .map_err(crate::error::failed)?;
        if let Some(c) = release.codename.as_deref().or(release.suite.as_deref()) {
            let names = [release.codename.as_deref(), release.suite.as_deref()];
            if !names.contains(&Some(s.suite.as_str())) {
                return Err(crate::error::failed(format!(
                    "{url} describes suite `{c}`, not `{}`: the mirror serves the wrong (or a \
                     replayed) Release",
                    s.suite
                )));
            }
        }
        Ok(release)
    }

    /// The Packages texts of one suite: `(path in dists, text)` per component.
    async fn suite_indexes(&self, s: &Source, arch: &str) -> anyhow::Result<SuiteIndexes> {
        let release = self.release(s).await?;
        let mut out = Vec::new();
        for comp in &s.components {
            let mut dirs = vec![format!("{comp}/binary-{arch}")];
            // apt reads binary-all only where the Release lists the `all` architecture and
            // does not say its packages are in each architecture's index.
            let all_listed = release.architectures.is_empty()
                || release.architectures.iter().any(|a| a == "all");
            if all_listed && !release.all_in_arch_indexes {
                dirs.push(format!("{comp}/binary-all"));
            }
            let mut found_any = false;
            for dir in dirs {
                let Some((path, size, sha)) = ["Packages.xz", "Packages.gz", "Packages"]
                    .iter()
                    .find_map(|f| {
                        let p = format!("{dir}/{f}");
                        release.sha256.get(&p).map(|(n, h)| (p, *n, h.clone()))
                    })
                else {
                    continue;
                };
                found_any = true;
                let cached = self.cache.join("indexes").join(&sha);
                if !cached_ok(&cached, size) {
                    let rel = if release.by_hash {
                        format!("{dir}/by-hash/SHA256/{sha}")
                    } else {
                        path.clone()
                    };
                    let expect = Expect {
                        size,
                        sha256: sha.clone(),
                    };
                    let got = self
                        .fetcher
                        .get_verified(&s.dists_url(&rel), &cached, &expect)
                        .await;
                    match got {
                        Ok(_) => {}
                        // A mirror between two updates may lack the by-hash file; the plain
                        // name is checked against the same sha256.
                        Err(FetchError::NotFound { .. }) if release.by_hash => {
                            self.fetcher
                                .get_verified(&s.dists_url(&path), &cached, &expect)
                                .await
                                .map_err(FetchError::into_anyhow)?;
                        }
                        Err(e) => return Err(e.into_anyhow()),
                    }
                }
                let text = decompress(&cached, &path)?;
                out.push((path, text));
            }
            if !found_any {
                return Err(crate::error::usage(format!(
                    "{} lists no Packages index for component `{comp}` and architecture \
                     `{arch}`; check `components` and `architecture` in archive.toml",
                    s.dists_url("InRelease")
                )));
            }
        }
        Ok((out, release.not_automatic))
    }

    /// Makes sure every .deb is in the cache, verified; downloads what is missing in
    /// parallel. Returns the cache paths in the order given.
    pub async fn fetch_debs(
        &self,
        debs: &[DebRef],
        reporter: &Reporter,
    ) -> anyhow::Result<Vec<PathBuf>> {
        // A cached file is hashed again: a damaged one is removed and downloaded anew.
        let missing: Vec<DebRef> = debs
            .iter()
            .filter(|d| {
                let path = deb_path(&d.sha256);
                let good = cached_ok(&path, d.size)
                    && crate::digest::sha256_file(&path).is_ok_and(|h| h == d.sha256);
                if !good {
                    let _ = std::fs::remove_file(&path);
                }
                !good
            })
            .cloned()
            .collect();
        sweep_parts(&self.cache.join("debs"));
        if !missing.is_empty() {
            let total: u64 = missing.iter().map(|d| d.size).sum();
            let progress = reporter.progress("Download", Some(missing.len() as u64));
            let results = futures_util::stream::iter(missing.clone().into_iter().map(|d| {
                let me = self.clone();
                async move {
                    let source = me.source(&d.suite)?;
                    let url = source.pool_url(&d.filename);
                    let expect = Expect {
                        size: d.size,
                        sha256: d.sha256.clone(),
                    };
                    match me
                        .fetcher
                        .get_verified(&url, &deb_path(&d.sha256), &expect)
                        .await
                    {
                        Ok(_) => Ok(d.id.clone()),
                        Err(FetchError::NotFound { .. }) => Err(crate::error::failed(format!(
                            "`{}` ({}) is no longer served by {}: the archive dropped this \
                             version; run `builder lock --update {}` to lock the version it \
                             serves now",
                            d.id,
                            d.filename,
                            source.uri,
                            d.id.split(' ').next().unwrap_or_default()
                        ))),
                        Err(e) => Err(e
                            .into_anyhow()
                            .context(format!("could not download `{}`", d.id))),
                    }
                }
            }))
            .buffer_unordered(PARALLEL);
            let mut results = results;
            let mut first_err = None;
            while let Some(r) = results.next().await {
                match r {
                    Ok(id) => {
                        progress.inc(1);
                        progress.message(id);
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            progress.finish(format!(
                "{} packages, {:.1} MB",
                missing.len(),
                total as f64 / 1e6
            ));
        }
        Ok(debs.iter().map(|d| deb_path(&d.sha256)).collect())
    }
}

/// Removes downloads that processes killed mid-way left behind: `.part-<pid>-*` of a
/// process that is gone (or, for names without a pid, older than an hour).
pub(crate) fn sweep_parts(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(".part-") else {
            continue;
        };
        let dead = match rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) {
            Some(pid) => !crate::fslock::pid_alive(pid),
            None => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_PART),
        };
        if dead {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Whether a cache file exists with the expected size (its name is its sha256; the bytes are
/// hashed again where they are used).
fn cached_ok(path: &Path, size: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// Decompresses a cached index (by the extension of its archive path) into text.
fn decompress(file: &Path, archive_path: &str) -> anyhow::Result<String> {
    let raw =
        std::fs::read(file).with_context(|| format!("could not read `{}`", file.display()))?;
    // The file's name is the sha256 the signed Release gave; a damaged cache copy is removed.
    let want = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if crate::digest::sha256_hex(&raw) != want {
        let _ = std::fs::remove_file(file);
        return Err(crate::error::failed(format!(
            "the cached `{archive_path}` (`{}`) is damaged and was removed; run the command again",
            file.display()
        )));
    }
    let r = &raw[..];
    let reader: Box<dyn Read> = if archive_path.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new(r))
    } else if archive_path.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(r))
    } else {
        Box::new(r)
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_INDEX_TEXT + 1)
        .read_to_end(&mut bytes)
        .with_context(|| {
            format!(
                "could not decompress `{archive_path}` (cached as `{}`)",
                file.display()
            )
        })?;
    if bytes.len() as u64 > MAX_INDEX_TEXT {
        return Err(crate::error::failed(format!(
            "`{archive_path}` decompresses to more than {MAX_INDEX_TEXT} bytes; refusing it"
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| crate::error::failed(format!("`{archive_path}` is not UTF-8 text")))
}
