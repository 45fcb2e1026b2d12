//! Tar streams into and out of containers: a host directory uploaded as a tar written on the
//! fly (never fully in memory, never on disk), and a container path downloaded as a tar and
//! extracted into a host directory without letting any entry escape it.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};

use super::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

const CHUNK: usize = 256 * 1024;

/// A `Write` that hands full chunks to an async receiver.
struct ChannelWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::other("the upload was aborted"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

struct Item {
    rel: PathBuf,
    abs: PathBuf,
}

/// Uploads the directory `src` into the existing directory `dest` of a container, as a tar
/// written while it streams. `skip(relative_path)` excludes a file or a whole directory
/// (e.g. `.git`, `target`). Entries are sorted; with `owner = Some((uid, gid))` they are owned
/// by that user in the container (else root). Returns the number of files uploaded.
pub async fn upload_dir_as_tar(
    engine: &Engine,
    container: &str,
    src: &Path,
    dest: &str,
    owner: Option<(u64, u64)>,
    skip: impl Fn(&Path) -> bool,
) -> Result<u64> {
    let docker = engine.client();
    let mut items = Vec::new();
    let walker = walkdir::WalkDir::new(src)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.path()
                .strip_prefix(src)
                .map(|rel| !skip(rel))
                .unwrap_or(true)
        });
    for entry in walker {
        let entry = entry.with_context(|| format!("could not read `{}`", src.display()))?;
        let rel = entry
            .path()
            .strip_prefix(src)
            .context("walked outside the source directory")?
            .to_path_buf();
        items.push(Item {
            rel,
            abs: entry.path().to_path_buf(),
        });
    }
    let files = items.len() as u64;
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
    let writer = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut out = ChannelWriter {
            buf: Vec::with_capacity(CHUNK),
            tx: tx.clone(),
        };
        let result = write_items(&mut out, &items, owner);
        if let Err(e) = &result {
            let _ = tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
        }
        result
    });
    let body = bollard::body_try_stream(tokio_stream_from(rx));
    let opts = UploadToContainerOptionsBuilder::default()
        .path(dest)
        .build();
    let upload = docker
        .upload_to_container(container, Some(opts), body)
        .await;
    let written = writer.await.context("the tar writer task failed")?;
    written.with_context(|| format!("could not pack `{}`", src.display()))?;
    upload.with_context(|| {
        format!(
            "could not upload `{}` to `{dest}` in container `{container}`",
            src.display()
        )
    })?;
    Ok(files)
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn write_items(out: &mut ChannelWriter, items: &[Item], owner: Option<(u64, u64)>) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (uid, gid) = owner.unwrap_or((0, 0));
    let mut tar = tar::Builder::new(&mut *out);
    for item in items {
        let meta = std::fs::symlink_metadata(&item.abs)
            .with_context(|| format!("could not read `{}`", item.abs.display()))?;
        let mut h = tar::Header::new_gnu();
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(meta.mtime().max(0) as u64);
        h.set_mode(meta.mode() & 0o7777);
        let ft = meta.file_type();
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            tar.append_data(&mut h, &item.rel, std::io::empty())?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&item.abs)
                .with_context(|| format!("could not read link `{}`", item.abs.display()))?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            tar.append_link(&mut h, &item.rel, &target)?;
        } else if ft.is_file() {
            let f = std::fs::File::open(&item.abs)
                .with_context(|| format!("could not read `{}`", item.abs.display()))?;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.len());
            tar.append_data(&mut h, &item.rel, f)
                .with_context(|| format!("could not pack `{}`", item.abs.display()))?;
        }
        // sockets, fifos and devices are not source files: skipped
    }
    tar.finish()?;
    drop(tar);
    out.flush()?;
    Ok(())
}

/// Uploads an existing tar file into the directory `dest` of a container (streamed).
pub async fn upload_tar_file(
    engine: &Engine,
    container: &str,
    tar: &Path,
    dest: &str,
) -> Result<()> {
    let docker = engine.client();
    let file = tokio::fs::File::open(tar)
        .await
        .with_context(|| format!("could not open `{}`", tar.display()))?;
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::with_capacity(file, CHUNK));
    let opts = UploadToContainerOptionsBuilder::default()
        .path(dest)
        .build();
    docker
        .upload_to_container(container, Some(opts), body)
        .await
        .with_context(|| {
            format!(
                "could not upload `{}` to `{dest}` in container `{container}`",
                tar.display()
            )
        })
}

/// A blocking `Read` over chunks arriving from an async task.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// Downloads `path` from a container and extracts its contents into `dest` (created if
/// needed): the directory's children land directly in `dest` (a file lands as
/// `dest/<name>`). Entries that would escape `dest` (absolute paths, `..`, writes through
/// symlinks), devices and hard links to outside are refused; setuid/setgid bits are dropped.
/// Returns the extracted regular files, relative to `dest`, sorted.
pub async fn download_to_dir(
    engine: &Engine,
    container: &str,
    path: &str,
    dest: &Path,
) -> Result<Vec<PathBuf>> {
    let docker = engine.client();
    std::fs::create_dir_all(dest)
        .with_context(|| format!("could not create `{}`", dest.display()))?;
    let opts = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    let mut stream = docker.download_from_container(container, Some(opts));
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
    let dest_owned = dest.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        extract(
            ChannelReader {
                rx,
                cur: Bytes::new(),
            },
            &dest_owned,
        )
    });
    let mut fetch_err = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => {
                if tx.send(Ok(b)).await.is_err() {
                    break; // the extractor stopped; its error explains why
                }
            }
            Err(e) => {
                let msg = e.to_string();
                let _ = tx.send(Err(std::io::Error::other(msg.clone()))).await;
                fetch_err = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let extracted = reader.await.context("the tar extractor task failed")?;
    if let Some(e) = fetch_err {
        return Err(e)
            .with_context(|| format!("could not download `{path}` from container `{container}`"));
    }
    extracted.with_context(|| {
        format!(
            "could not extract `{path}` from container `{container}` into `{}`",
            dest.display()
        )
    })
}

/// The path of an entry below the top-level directory Docker puts first, checked to be
/// a plain relative path.
fn safe_relative(raw: &Path) -> Result<Option<PathBuf>> {
    let mut comps = raw.components().filter(|c| !matches!(c, Component::CurDir));
    // Docker names entries `<basename of path>/...`; drop that first component.
    let first = comps.next();
    let mut out = PathBuf::new();
    for c in comps {
        match c {
            Component::Normal(n) => out.push(n),
            _ => anyhow::bail!(
                "refusing tar entry `{}`: it escapes the target",
                raw.display()
            ),
        }
    }
    match first {
        Some(Component::Normal(_)) => Ok(Some(out)),
        None => Ok(None),
        _ => anyhow::bail!(
            "refusing tar entry `{}`: it escapes the target",
            raw.display()
        ),
    }
}

/// Creates the parents of `rel` below `root`, refusing to go through a symlink.
fn prepare_parent(root: &Path, rel: &Path) -> Result<()> {
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    anyhow::bail!("refusing to write through the symlink `{}`", cur.display())
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    std::fs::remove_file(&cur)
                        .with_context(|| format!("could not replace `{}`", cur.display()))?;
                    std::fs::create_dir(&cur)
                        .with_context(|| format!("could not create `{}`", cur.display()))?;
                }
                Err(_) => std::fs::create_dir(&cur)
                    .with_context(|| format!("could not create `{}`", cur.display()))?,
            }
        }
    }
    Ok(())
}

fn remove_existing(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(_) => Ok(()),
    }
    .with_context(|| format!("could not replace `{}`", p.display()))
}

fn extract(reader: impl Read, dest: &Path) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let mut archive = tar::Archive::new(reader);
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in archive.entries().context("could not read the tar stream")? {
        let mut entry = entry.context("could not read the tar stream")?;
        let raw = entry.path().context("bad path in tar entry")?.into_owned();
        let Some(rel) = safe_relative(&raw)? else {
            continue;
        };
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let kind = entry.header().entry_type();
        if rel.as_os_str().is_empty() {
            continue; // the top directory itself
        }
        prepare_parent(dest, &rel)?;
        let target = dest.join(&rel);
        match kind {
            tar::EntryType::Directory => {
                match std::fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    _ => {
                        remove_existing(&target)?;
                        std::fs::create_dir(&target)
                            .with_context(|| format!("could not create `{}`", target.display()))?;
                    }
                }
                dirs.push((target, mode | 0o700));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_existing(&target)?;
                let mut f = std::fs::File::create(&target)
                    .with_context(|| format!("could not create `{}`", target.display()))?;
                std::io::copy(&mut entry, &mut f)
                    .with_context(|| format!("could not write `{}`", target.display()))?;
                f.set_permissions(std::fs::Permissions::from_mode(mode))
                    .with_context(|| format!("could not set the mode of `{}`", target.display()))?;
                files.push(rel);
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .context("bad symlink in tar entry")?
                    .context("symlink without a target")?
                    .into_owned();
                remove_existing(&target)?;
                std::os::unix::fs::symlink(&link, &target)
                    .with_context(|| format!("could not create `{}`", target.display()))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .context("bad hard link in tar entry")?
                    .context("hard link without a target")?
                    .into_owned();
                let Some(src_rel) = safe_relative(&link)? else {
                    anyhow::bail!("refusing hard link `{}`", raw.display());
                };
                let src = dest.join(&src_rel);
                prepare_parent(dest, &src_rel)?;
                // Only a regular file extracted earlier: copying a symlink would follow it
                // (`out/a -> /etc/shadow`, then `out/b` linked to `out/a`) out of `dest`.
                match std::fs::symlink_metadata(&src) {
                    Ok(m) if m.file_type().is_file() => {}
                    _ => anyhow::bail!(
                        "refusing hard link `{}` to `{}`: its target is not a regular file \
                         extracted before it",
                        raw.display(),
                        link.display()
                    ),
                }
                if src == target {
                    files.push(rel);
                    continue; // a link to itself: the file is already there
                }
                remove_existing(&target)?;
                std::fs::copy(&src, &target).with_context(|| {
                    format!(
                        "could not copy `{}` to `{}`",
                        src.display(),
                        target.display()
                    )
                })?;
                files.push(rel);
            }
            // pax/gnu headers are consumed by the tar reader; devices and fifos are skipped
            _ => {}
        }
    }
    for (d, mode) in dirs {
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o4755);
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, path, data).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    // bypass the builder's own path checks to craft hostile names
                    h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
                    h.set_cksum();
                    b.append(&h, data.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn extracts_below_the_top_directory_and_drops_setuid() {
        let dir = tempfile::tempdir().unwrap();
        let data = tar_with(&[
            ("out/", tar::EntryType::Directory, ""),
            ("out/bin/", tar::EntryType::Directory, ""),
            ("out/bin/app", tar::EntryType::Regular, "binary"),
            ("out/app-link", tar::EntryType::Symlink, "bin/app"),
        ]);
        let files = extract(&data[..], dir.path()).unwrap();
        assert_eq!(files, vec![PathBuf::from("bin/app")]);
        let mode = std::fs::metadata(dir.path().join("bin/app")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o7777, 0o755);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("app-link")).unwrap(),
            "binary"
        );
    }

    #[test]
    fn refuses_parent_components() {
        let dir = tempfile::tempdir().unwrap();
        let data = tar_with(&[("out/../../evil", tar::EntryType::Regular, "x")]);
        let err = extract(&data[..], &dir.path().join("d")).unwrap_err();
        assert!(err.to_string().contains("escapes"), "{err:#}");
        assert!(!dir.path().join("evil").exists());
    }

    #[test]
    fn hard_links_copy_earlier_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("shadow");
        std::fs::write(&secret, "host secret").unwrap();
        let data = tar_with(&[
            ("out/a", tar::EntryType::Symlink, secret.to_str().unwrap()),
            ("out/b", tar::EntryType::Link, "out/a"),
        ]);
        let err = extract(&data[..], dir.path()).unwrap_err();
        assert!(err.to_string().contains("refusing hard link"), "{err:#}");
        assert!(std::fs::symlink_metadata(dir.path().join("b")).is_err());

        let dir = tempfile::tempdir().unwrap();
        let data = tar_with(&[
            ("out/bin", tar::EntryType::Regular, "binary"),
            ("out/alias", tar::EntryType::Link, "out/bin"),
        ]);
        let files = extract(&data[..], dir.path()).unwrap();
        assert_eq!(files, vec![PathBuf::from("alias"), PathBuf::from("bin")]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("alias")).unwrap(),
            "binary"
        );
        let meta = std::fs::symlink_metadata(dir.path().join("alias")).unwrap();
        assert!(meta.file_type().is_file());
    }

    #[test]
    fn refuses_writing_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let data = tar_with(&[
            (
                "out/esc",
                tar::EntryType::Symlink,
                outside.path().to_str().unwrap(),
            ),
            ("out/esc/pwned", tar::EntryType::Regular, "x"),
        ]);
        let err = extract(&data[..], dir.path()).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err:#}");
        assert!(!outside.path().join("pwned").exists());
    }
}
