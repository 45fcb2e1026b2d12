//! Deterministic rootfs tars: entries in sorted order, mtimes clamped to [`EPOCH`], numeric
//! uid/gid kept (a rootfs has real owners), no user/group names, no PAX headers (GNU long
//! names only when a path needs it), hard links kept as links. The sha256 of the tar is its
//! OCI `diff_id`. Files are written to a temp file and renamed into place.

use crate::digest::HashWriter;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// The fixed time every mtime is clamped to: 2023-06-10T00:00:00Z (Debian 12's release).
pub(crate) const EPOCH: u64 = 1_686_355_200;

/// A written tar: its `sha256:` digest and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Written {
    pub diff_id: String,
    pub size: u64,
}

/// Writes a tar to `out` atomically: `fill` appends the entries; the file appears only
/// when complete.
fn write_atomic(
    out: &Path,
    fill: impl FnOnce(
        &mut tar::Builder<&mut HashWriter<std::io::BufWriter<std::fs::File>>>,
    ) -> Result<()>,
) -> Result<Written> {
    let mut target = crate::durable::AtomicFile::create(out, crate::durable::PUBLIC)?;
    let file = target
        .file()
        .try_clone()
        .with_context(|| format!("could not write `{}`", out.display()))?;
    let mut hw = HashWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
    (|| -> Result<()> {
        let mut b = tar::Builder::new(&mut hw);
        b.mode(tar::HeaderMode::Complete);
        fill(&mut b)?;
        b.finish()?;
        drop(b);
        hw.flush()?;
        Ok(())
    })()
    .with_context(|| format!("could not write `{}`", out.display()))?;
    let (inner, diff_id, size) = hw.finish();
    // A string while base/ (the engine's side) keeps its diff_ids as strings.
    let written = Written {
        diff_id: diff_id.to_string(),
        size,
    };
    inner
        .into_inner()
        .map_err(|e| anyhow::anyhow!("could not write `{}`: {}", out.display(), e.error()))?;
    target.commit()?;
    Ok(written)
}

fn header(
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    size: u64,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode & 0o7777);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(mtime.min(EPOCH));
    h.set_size(size);
    h
}

/// Packs the directory tree `root` (not the root entry itself) into `out`. `exclude(rel,
/// is_dir)` drops an entry (and, for a directory, everything below it). Devices, fifos and
/// sockets are skipped: the engine provides /dev.
pub(crate) fn pack_dir(
    root: &Path,
    out: &Path,
    exclude: &dyn Fn(&str, bool) -> bool,
) -> Result<Written> {
    use std::os::unix::fs::MetadataExt;
    write_atomic(out, |b| {
        let mut seen: HashMap<(u64, u64), String> = HashMap::new();
        let walker = walkdir::WalkDir::new(root)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                let rel = e.path().strip_prefix(root).unwrap_or(e.path());
                !exclude(&rel.to_string_lossy(), e.file_type().is_dir())
            });
        for entry in walker {
            let entry = entry.with_context(|| format!("could not read `{}`", root.display()))?;
            let rel = entry
                .path()
                .strip_prefix(root)
                .context("walked outside the rootfs")?
                .to_string_lossy()
                .into_owned();
            let meta = entry
                .path()
                .symlink_metadata()
                .with_context(|| format!("could not read `{}`", entry.path().display()))?;
            let ft = meta.file_type();
            let (uid, gid, mode, mtime) = (
                meta.uid() as u64,
                meta.gid() as u64,
                meta.mode(),
                meta.mtime().max(0) as u64,
            );
            if ft.is_dir() {
                let mut h = header(tar::EntryType::Directory, mode, uid, gid, mtime, 0);
                b.append_data(&mut h, format!("{rel}/"), std::io::empty())?;
            } else if ft.is_symlink() {
                let target = std::fs::read_link(entry.path())
                    .with_context(|| format!("could not read `{}`", entry.path().display()))?;
                let mut h = header(tar::EntryType::Symlink, mode, uid, gid, mtime, 0);
                b.append_link(&mut h, &rel, &target)?;
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    if let Some(first) = seen.get(&key) {
                        let mut h = header(tar::EntryType::Link, mode, uid, gid, mtime, 0);
                        b.append_link(&mut h, &rel, first)?;
                        continue;
                    }
                    seen.insert(key, rel.clone());
                }
                let f = std::fs::File::open(entry.path())
                    .with_context(|| format!("could not read `{}`", entry.path().display()))?;
                let mut h = header(tar::EntryType::Regular, mode, uid, gid, mtime, meta.len());
                b.append_data(&mut h, &rel, f)
                    .with_context(|| format!("could not pack `{}`", entry.path().display()))?;
            }
        }
        Ok(())
    })
}

/// What an in-memory entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Data {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    /// A hard link to another entry of the tree (its key), written after it.
    HardLink(String),
}

/// An entry of an in-memory tree (used for the `static` base).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub data: Data,
}

/// The order entries are written in: path components compared one by one, so a directory's
/// whole subtree comes before its next sibling (`etc/ca/x` before `etc/ca.conf`), as a
/// directory walk with sorted names gives it ([`pack_dir`]).
pub(crate) fn tree_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

/// Writes in-memory entries (keyed by relative path, without leading `/`) in [`tree_order`].
pub(crate) fn write_entries(
    out: &Path,
    entries: &std::collections::BTreeMap<String, Entry>,
) -> Result<Written> {
    let mut sorted: Vec<(&String, &Entry)> = entries.iter().collect();
    sorted.sort_by(|a, b| tree_order(a.0, b.0));
    write_atomic(out, |b| {
        for (path, e) in sorted {
            match &e.data {
                Data::Dir => {
                    let mut h = header(tar::EntryType::Directory, e.mode, e.uid, e.gid, EPOCH, 0);
                    b.append_data(&mut h, format!("{path}/"), std::io::empty())?;
                }
                Data::File(bytes) => {
                    let mut h = header(
                        tar::EntryType::Regular,
                        e.mode,
                        e.uid,
                        e.gid,
                        EPOCH,
                        bytes.len() as u64,
                    );
                    b.append_data(&mut h, path, &bytes[..])?;
                }
                Data::Symlink(target) => {
                    let mut h = header(tar::EntryType::Symlink, e.mode, e.uid, e.gid, EPOCH, 0);
                    b.append_link(&mut h, path, target)?;
                }
                Data::HardLink(target) => {
                    let mut h = header(tar::EntryType::Link, e.mode, e.uid, e.gid, EPOCH, 0);
                    b.append_link(&mut h, path, target)?;
                }
            }
        }
        Ok(())
    })
}

/// Reads the entries of a rootfs tar whose path (relative, no trailing `/`) passes
/// `select`. Hard links become regular files with their target's bytes.
pub(crate) fn read_entries(
    tar_path: &Path,
    select: &dyn Fn(&str) -> bool,
) -> Result<std::collections::BTreeMap<String, Entry>> {
    let file = std::fs::File::open(tar_path)
        .with_context(|| format!("could not open `{}`", tar_path.display()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut out = std::collections::BTreeMap::new();
    let mut all_files: HashMap<String, Vec<u8>> = HashMap::new();
    for entry in archive
        .entries()
        .with_context(|| format!("could not read `{}`", tar_path.display()))?
    {
        let mut entry =
            entry.with_context(|| format!("could not read `{}`", tar_path.display()))?;
        let path = entry
            .path()?
            .to_string_lossy()
            .trim_end_matches('/')
            .trim_start_matches("./")
            .to_string();
        let h = entry.header();
        let (mode, uid, gid) = (h.mode()?, h.uid()?, h.gid()?);
        let kind = h.entry_type();
        let wanted = select(&path);
        let data = match kind {
            tar::EntryType::Directory => Data::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if !wanted {
                    continue;
                }
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes)?;
                all_files.insert(path.clone(), bytes.clone());
                Data::File(bytes)
            }
            tar::EntryType::Symlink => Data::Symlink(
                entry
                    .link_name()?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            tar::EntryType::Link => {
                if !wanted {
                    continue;
                }
                let target = entry
                    .link_name()?
                    .map(|l| l.to_string_lossy().trim_start_matches("./").to_string())
                    .unwrap_or_default();
                match all_files.get(&target) {
                    Some(bytes) => Data::File(bytes.clone()),
                    None => anyhow::bail!(
                        "`{}`: hard link `{path}` points at `{target}`, which is not selected",
                        tar_path.display()
                    ),
                }
            }
            _ => continue,
        };
        if wanted {
            out.insert(
                path,
                Entry {
                    mode,
                    uid,
                    gid,
                    data,
                },
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_is_deterministic_and_keeps_owners_and_links() {
        use std::os::unix::fs::PermissionsExt;
        let src = tempfile::tempdir().unwrap();
        let r = src.path();
        std::fs::create_dir_all(r.join("etc/b")).unwrap();
        std::fs::write(r.join("etc/a"), "a").unwrap();
        std::fs::write(r.join("etc/b/c"), "c").unwrap();
        std::fs::hard_link(r.join("etc/a"), r.join("etc/z")).unwrap();
        std::os::unix::fs::symlink("a", r.join("etc/l")).unwrap();
        std::fs::create_dir_all(r.join("var/log")).unwrap();
        std::fs::write(r.join("var/log/x.log"), "log").unwrap();
        std::fs::set_permissions(r.join("etc/b/c"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        let out = tempfile::tempdir().unwrap();
        let excl = |rel: &str, dir: bool| rel.starts_with("var/log/") && !dir;
        let w1 = pack_dir(r, &out.path().join("1.tar"), &excl).unwrap();
        // touching mtimes changes nothing: they are clamped
        std::fs::write(r.join("etc/b/c"), "c").unwrap();
        std::fs::set_permissions(r.join("etc/b/c"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        let w2 = pack_dir(r, &out.path().join("2.tar"), &excl).unwrap();
        assert_eq!(w1, w2);
        let bytes = std::fs::read(out.path().join("1.tar")).unwrap();
        assert_eq!(w1.size, bytes.len() as u64);
        assert_eq!(w1.diff_id, crate::digest::Digest::of(&bytes).to_string());
        let mut names = Vec::new();
        let mut a = tar::Archive::new(&bytes[..]);
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert!(h.mtime().unwrap() <= EPOCH);
            names.push((
                e.path().unwrap().to_string_lossy().into_owned(),
                h.entry_type(),
                h.mode().unwrap(),
            ));
        }
        let just: Vec<&str> = names.iter().map(|n| n.0.as_str()).collect();
        assert_eq!(
            just,
            ["etc/", "etc/a", "etc/b/", "etc/b/c", "etc/l", "etc/z", "var/", "var/log/"]
        );
        assert_eq!(names[5].1, tar::EntryType::Link);
        assert_eq!(names[3].2, 0o4755);
        let read = read_entries(&out.path().join("1.tar"), &|p| p.starts_with("etc")).unwrap();
        assert_eq!(read["etc/z"].data, Data::File(b"a".to_vec()));
        assert_eq!(read["etc/l"].data, Data::Symlink("a".into()));
    }
}
