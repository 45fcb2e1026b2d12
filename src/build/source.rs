//! The source tree of a build: which files are uploaded (ignore rules), how they enter the
//! cache key, and the tar stream that carries them into the builder container.
//!
//! One listing feeds both the key and the upload, so the key describes exactly the bytes the
//! container sees. Modes are normalised to 0755/0644 (by the owner's executable bit) so that a
//! checkout's umask does not change the key.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Directory names never uploaded, at any depth.
const ALWAYS_IGNORED: &[&str] = &[".git", "target", "dist"];

/// What a source entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Dir,
    File,
    Symlink(PathBuf),
}

/// One file, directory or link of the source tree.
#[derive(Debug, Clone)]
pub(crate) struct SourceEntry {
    /// Path relative to the source root, `/`-separated.
    pub rel: String,
    pub abs: PathBuf,
    pub kind: EntryKind,
    /// Normalised permission bits (0755 or 0644).
    pub mode: u32,
}

/// Gitignore-like patterns: a pattern without `/` (a trailing one aside) matches a name at any
/// depth; a pattern with `/` matches the path from the source root; a trailing `/` matches
/// directories only. `*`, `?`, `[...]` and `**` work as in globs.
#[derive(Debug, Clone)]
pub(crate) struct IgnoreRules {
    rules: Vec<(
        glob::Pattern,
        bool, /*anchored*/
        bool, /*dir only*/
    )>,
}

impl IgnoreRules {
    pub(crate) fn new(patterns: &[String]) -> anyhow::Result<Self> {
        let mut rules = Vec::new();
        for raw in patterns {
            let dir_only = raw.ends_with('/');
            let p = raw.trim_end_matches('/');
            let anchored = p.contains('/');
            let p = p.trim_start_matches('/');
            if p.is_empty() {
                continue;
            }
            let pattern = glob::Pattern::new(p).map_err(|e| {
                crate::error::usage(format!(
                    "invalid ignore pattern `{raw}` in [build]: {e}; use gitignore-like globs such as `*.tmp` or `testdata/`"
                ))
            })?;
            rules.push((pattern, anchored, dir_only));
        }
        Ok(IgnoreRules { rules })
    }

    /// Whether `rel` (relative, `/`-separated) is ignored.
    pub(crate) fn is_ignored(&self, rel: &str, is_dir: bool) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if is_dir && ALWAYS_IGNORED.contains(&name) {
            return true;
        }
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        self.rules.iter().any(|(pattern, anchored, dir_only)| {
            if *dir_only && !is_dir {
                return false;
            }
            if *anchored {
                pattern.matches_with(rel, opts)
            } else {
                pattern.matches_with(name, opts)
            }
        })
    }
}

/// Lists the source tree under `root`, sorted by path, skipping ignored entries (an ignored
/// directory's contents are skipped too) and each directory of `exclude` that lies below `root` (builder's own
/// output and cache directories, whatever their names), so earlier outputs never enter the
/// cache key or the upload. Directories that do not exist or lie elsewhere change nothing.
pub(crate) fn list_excluding(
    root: &Path,
    ignore: &IgnoreRules,
    exclude: &[PathBuf],
) -> anyhow::Result<Vec<SourceEntry>> {
    let meta = std::fs::metadata(root).with_context(|| {
        format!(
            "could not read the build source `{}`; check `source` in the recipe's [build] table",
            root.display()
        )
    })?;
    if !meta.is_dir() {
        return Err(crate::error::usage(format!(
            "build source `{}` is not a directory; `source` in [build] must name a directory",
            root.display()
        )));
    }
    let skipped = excluded_below(root, exclude);
    let mut out = Vec::new();
    let mut walker = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walker.next() {
        let entry = entry
            .with_context(|| format!("could not walk the build source `{}`", root.display()))?;
        let rel_path = entry
            .path()
            .strip_prefix(root)
            .with_context(|| format!("`{}` is outside the source", entry.path().display()))?;
        let rel = rel_path
            .to_str()
            .with_context(|| {
                format!(
                    "source path `{}` is not UTF-8; rename it or add it to `ignore`",
                    entry.path().display()
                )
            })?
            .to_string();
        let ft = entry.file_type();
        if ignore.is_ignored(&rel, ft.is_dir()) || (ft.is_dir() && skipped.contains(&rel)) {
            if ft.is_dir() {
                walker.skip_current_dir();
            }
            continue;
        }
        let meta = entry
            .metadata()
            .with_context(|| format!("could not read `{}`", entry.path().display()))?;
        let (kind, mode) = if ft.is_dir() {
            (EntryKind::Dir, 0o755)
        } else if ft.is_symlink() {
            let target = std::fs::read_link(entry.path())
                .with_context(|| format!("could not read link `{}`", entry.path().display()))?;
            (EntryKind::Symlink(target), 0o777)
        } else if ft.is_file() {
            let exec = meta.permissions().mode() & 0o100 != 0;
            (EntryKind::File, if exec { 0o755 } else { 0o644 })
        } else {
            // Sockets, fifos and devices have no place in a source tree.
            continue;
        };
        out.push(SourceEntry {
            rel,
            abs: entry.path().to_path_buf(),
            kind,
            mode,
        });
    }
    // walkdir sorts per directory by name; a global byte order on the `/` paths is what the key
    // and the tar use.
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// The `/`-separated paths, relative to `root`, of the directories of `exclude` strictly
/// below it (compared after resolving symlinks on both sides).
fn excluded_below(root: &Path, exclude: &[PathBuf]) -> Vec<String> {
    let Ok(root) = std::fs::canonicalize(root) else {
        return Vec::new();
    };
    exclude
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .filter_map(|d| {
            let rel = d.strip_prefix(&root).ok()?.to_str()?.to_string();
            (!rel.is_empty()).then_some(rel)
        })
        .collect()
}

/// Feeds every entry's path, kind, mode and bytes into `hasher`.
pub(crate) fn hash_entries(hasher: &mut Sha256, entries: &[SourceEntry]) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    for e in entries {
        hasher.update(e.rel.as_bytes());
        hasher.update([0]);
        match &e.kind {
            EntryKind::Dir => hasher.update(b"dir\0"),
            EntryKind::Symlink(t) => {
                hasher.update(b"symlink\0");
                hasher.update(t.as_os_str().as_encoded_bytes());
                hasher.update([0]);
            }
            EntryKind::File => {
                hasher.update(format!("file\0{:o}\0", e.mode).as_bytes());
                let mut f = std::fs::File::open(&e.abs)
                    .with_context(|| format!("could not read `{}`", e.abs.display()))?;
                let len = f
                    .metadata()
                    .with_context(|| format!("could not read `{}`", e.abs.display()))?
                    .len();
                hasher.update(len.to_le_bytes());
                loop {
                    let n = f
                        .read(&mut buf)
                        .with_context(|| format!("could not read `{}`", e.abs.display()))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
            }
        }
    }
    Ok(())
}

/// Ownership and placement of the uploaded tree.
#[derive(Debug, Clone)]
pub(crate) struct UploadLayout {
    /// Absolute directory the sources land in (the recipe's `workdir`), e.g. `/src`.
    pub workdir: String,
    /// Extra empty directories to create, owned by the build user (e.g. `/out`, its home).
    pub extra_dirs: Vec<String>,
    pub uid: u64,
    pub gid: u64,
}

/// A `Write` that hands chunks to an async channel; used from a blocking thread.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload stream closed")
        })
    }
}

/// Starts writing the tar of `entries` on a blocking thread; returns the stream of chunks (to
/// extract at `/` in the container) and the writer's handle, which reports read errors.
pub(crate) fn tar_stream(
    entries: Vec<SourceEntry>,
    layout: UploadLayout,
) -> (
    impl futures_util::Stream<Item = Bytes> + Send + 'static,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(8);
    let handle = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let writer = ChannelWriter {
            tx,
            buf: Vec::with_capacity(256 * 1024),
        };
        let mut tar = tar::Builder::new(writer);
        tar.mode(tar::HeaderMode::Deterministic);
        let root = layout.workdir.trim_matches('/').to_string();
        // Only the target directories themselves: the engine creates missing parents (0755,
        // root), and re-stating an existing parent such as /tmp would change its mode.
        let mut dirs: Vec<String> = Vec::new();
        for d in std::iter::once(&layout.workdir).chain(layout.extra_dirs.iter()) {
            let d = d.trim_matches('/').to_string();
            if !d.is_empty() && !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        for d in &dirs {
            let mut h = header(tar::EntryType::Directory, 0o755, layout.uid, layout.gid, 0);
            tar.append_data(&mut h, format!("{d}/"), std::io::empty())
                .context("could not write the source tar")?;
        }
        for e in entries {
            let path = if root.is_empty() {
                e.rel.clone()
            } else {
                format!("{root}/{}", e.rel)
            };
            match &e.kind {
                EntryKind::Dir => {
                    let mut h =
                        header(tar::EntryType::Directory, e.mode, layout.uid, layout.gid, 0);
                    tar.append_data(&mut h, format!("{path}/"), std::io::empty())
                        .context("could not write the source tar")?;
                }
                EntryKind::Symlink(target) => {
                    let mut h = header(tar::EntryType::Symlink, 0o777, layout.uid, layout.gid, 0);
                    tar.append_link(&mut h, &path, target)
                        .context("could not write the source tar")?;
                }
                EntryKind::File => {
                    let f = std::fs::File::open(&e.abs)
                        .with_context(|| format!("could not read `{}`", e.abs.display()))?;
                    let len = f
                        .metadata()
                        .with_context(|| format!("could not read `{}`", e.abs.display()))?
                        .len();
                    let mut h =
                        header(tar::EntryType::Regular, e.mode, layout.uid, layout.gid, len);
                    tar.append_data(&mut h, &path, f.take(len))
                        .with_context(|| format!("could not upload `{}`", e.abs.display()))?;
                }
            }
        }
        let mut writer = tar
            .into_inner()
            .context("could not finish the source tar")?;
        writer.flush().context("could not finish the source tar")?;
        Ok(())
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (stream, handle)
}

fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_size(size);
    h.set_mtime(0);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(p: &[&str]) -> IgnoreRules {
        IgnoreRules::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn ignore_rules_follow_gitignore_shapes() {
        let r = rules(&["*.tmp", "testdata/", "/docs/*.md", "a/**/b"]);
        assert!(r.is_ignored("x.tmp", false));
        assert!(r.is_ignored("deep/dir/x.tmp", false));
        assert!(r.is_ignored("testdata", true));
        assert!(r.is_ignored("pkg/testdata", true));
        assert!(
            !r.is_ignored("testdata", false),
            "dir-only pattern must not match a file"
        );
        assert!(r.is_ignored("docs/readme.md", false));
        assert!(
            !r.is_ignored("sub/docs/readme.md", false),
            "anchored pattern"
        );
        assert!(r.is_ignored("a/x/y/b", false));
        assert!(r.is_ignored(".git", true));
        assert!(r.is_ignored("sub/target", true));
        assert!(!r.is_ignored("main.go", false));
        assert!(
            !r.is_ignored("target", false),
            "a file named target is kept"
        );
    }

    #[test]
    fn bad_pattern_is_a_usage_error() {
        let err = IgnoreRules::new(&["[".to_string()]).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), crate::error::EXIT_USAGE);
        assert!(err.to_string().contains("`[`"));
    }

    #[test]
    fn listing_skips_ignored_trees_and_normalises_modes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(".git/objects")).unwrap();
        std::fs::write(root.join(".git/objects/x"), "x").unwrap();
        std::fs::create_dir_all(root.join("cmd")).unwrap();
        std::fs::write(root.join("cmd/main.go"), "package main").unwrap();
        std::fs::write(root.join("run.sh"), "#!/bin/sh").unwrap();
        std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o775))
            .unwrap();
        std::fs::write(root.join("notes.tmp"), "t").unwrap();
        let entries = list_excluding(root, &rules(&["*.tmp"]), &[]).unwrap();
        let names: Vec<_> = entries.iter().map(|e| (e.rel.as_str(), e.mode)).collect();
        assert_eq!(
            names,
            vec![("cmd", 0o755), ("cmd/main.go", 0o644), ("run.sh", 0o755)]
        );
    }

    #[test]
    fn builder_output_and_cache_directories_below_the_root_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src");
        for d in ["out/build/svc", "cache/bases", "keep", "other/out"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("out/build/svc/bin"), "old output").unwrap();
        std::fs::write(root.join("cache/bases/x.tar"), "tar").unwrap();
        std::fs::write(root.join("keep/a.go"), "package a").unwrap();
        std::fs::write(root.join("other/out/b.go"), "package b").unwrap();
        let exclude = vec![
            root.join("out"),
            // through a `..` and a missing directory: resolved, or ignored
            root.join("keep/../cache"),
            root.join("missing"),
            dir.path().join("elsewhere"),
        ];
        let entries = list_excluding(&root, &rules(&[]), &exclude).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.rel.as_str()).collect();
        assert_eq!(
            names,
            vec!["keep", "keep/a.go", "other", "other/out", "other/out/b.go"]
        );
        // excluding the root itself, or a parent of it, skips nothing
        let all = list_excluding(&root, &rules(&[]), &[root.clone(), dir.path().into()]);
        assert_eq!(all.unwrap().len(), 12);
    }

    #[test]
    fn hash_changes_with_bytes_mode_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.go"), "one").unwrap();
        let key = |root: &Path| {
            let mut h = Sha256::new();
            hash_entries(&mut h, &list_excluding(root, &rules(&[]), &[]).unwrap()).unwrap();
            hex::encode(h.finalize())
        };
        let k1 = key(root);
        assert_eq!(k1, key(root), "stable");
        std::fs::write(root.join("a.go"), "two").unwrap();
        let k2 = key(root);
        assert_ne!(k1, k2);
        std::fs::set_permissions(root.join("a.go"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let k3 = key(root);
        assert_ne!(k2, k3);
        std::fs::rename(root.join("a.go"), root.join("b.go")).unwrap();
        assert_ne!(k3, key(root));
    }
}
