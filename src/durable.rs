//! The one way builder puts a file where a user or a later command relies on it.
//!
//! Owns: the durable write: a temp file in the destination's directory (same filesystem, so
//! the rename is atomic), its bytes and mode, `fsync` of the file, `rename(2)` over the name,
//! then `fsync` of the directory so the new name survives a power cut. Readers see the old
//! file or the new one, never a torn one, and a crash leaves only a temp file named
//! `.<name>.tmp-<pid>-<n>` that [`sweep_dead_temps`] (or the command's own cleanup) removes.
//!
//! Must not: decide what is written or where (callers do). It is a file-system utility.
//!
//! Every sync error is an error: a file builder reports as written is on disk.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

/// Mode of published files (readable by all, like the .debs beside them).
pub(crate) const PUBLIC: u32 = 0o644;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A file being written; it appears under its name only at [`AtomicFile::commit`], and a
/// dropped (uncommitted) one leaves nothing behind.
pub(crate) struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    path: PathBuf,
    mode: u32,
}

impl AtomicFile {
    /// Creates the temp file beside `path` (creating the directory) with `mode` set before
    /// any byte is written, so a secret is never readable by others, even for a moment.
    pub(crate) fn create(path: &Path, mode: u32) -> anyhow::Result<Self> {
        let dir = parent(path);
        create_dir_all(&dir)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let tmp = dir.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("could not create `{}`", tmp.display()))?;
        Ok(AtomicFile {
            file: Some(file),
            tmp,
            path: path.to_path_buf(),
            mode,
        })
    }

    /// The open temp file, to write (or read back) its bytes.
    pub(crate) fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("the file is open until commit")
    }

    /// The temp file's path (its name changes at commit).
    pub(crate) fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Syncs the bytes, renames the temp file over the name and syncs the directory.
    pub(crate) fn commit(mut self) -> anyhow::Result<()> {
        let file = self.file.take().expect("the file is open until commit");
        // The umask may have narrowed the mode given to open(2).
        file.set_permissions(fs::Permissions::from_mode(self.mode))
            .and_then(|_| file.sync_all())
            .with_context(|| format!("could not write `{}`", self.path.display()))?;
        drop(file);
        rename(&self.tmp, &self.path)
    }

    /// [`commit`](Self::commit), refusing to replace a file that exists (checked again at
    /// the rename: `link(2)` fails when the name is taken).
    pub(crate) fn commit_new(mut self) -> anyhow::Result<()> {
        let file = self.file.take().expect("the file is open until commit");
        file.set_permissions(fs::Permissions::from_mode(self.mode))
            .and_then(|_| file.sync_all())
            .with_context(|| format!("could not write `{}`", self.path.display()))?;
        drop(file);
        fs::hard_link(&self.tmp, &self.path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                crate::error::usage(format!(
                    "`{}` already exists: choose another path or pass `--force` to replace it",
                    self.path.display()
                ))
            } else {
                anyhow::Error::new(e).context(format!("could not write `{}`", self.path.display()))
            }
        })?;
        let _ = fs::remove_file(&self.tmp);
        sync_dir(&parent(&self.path))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Uncommitted (an error, a panic, or already renamed away: then this finds nothing).
        self.file = None;
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Writes `bytes` to `path` durably with mode 0644.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_mode(path, bytes, PUBLIC)
}

/// Writes `bytes` to `path` durably with `mode`.
pub(crate) fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = AtomicFile::create(path, mode)?;
    f.file()
        .write_all(bytes)
        .with_context(|| format!("could not write `{}`", path.display()))?;
    f.commit()
}

/// Makes a `tempfile` temp file (created in `path`'s directory) durable under `path`: for
/// writers that hand the temp file to a library before they know the name is wanted.
pub(crate) fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> anyhow::Result<()> {
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("could not write `{}`", path.display()))?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| {
        format!(
            "could not move a temp file into place at `{}`",
            path.display()
        )
    })?;
    sync_dir(&parent(path))
}

/// `rename(2)` of `from` over `to`, then `fsync` of the directories involved.
pub(crate) fn rename(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::rename(from, to).with_context(|| {
        format!(
            "could not move `{}` into place at `{}`",
            from.display(),
            to.display()
        )
    })?;
    let (a, b) = (parent(from), parent(to));
    if a != b {
        sync_dir(&a)?;
    }
    sync_dir(&b)
}

/// `create_dir_all`, syncing the parent of every directory it creates: a file later renamed
/// into a new directory keeps its whole path across a crash.
pub(crate) fn create_dir_all(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut d = dir;
    while fs::symlink_metadata(d).is_err() {
        missing.push(d);
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => break,
        }
    }
    fs::create_dir_all(dir)
        .with_context(|| format!("could not create directory `{}`", dir.display()))?;
    for m in missing.iter().rev() {
        sync_dir(&parent(m))?;
    }
    Ok(())
}

/// `fsync` of a directory: makes the names created, renamed or removed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("could not sync directory `{}`", dir.display()))
}

/// The pid that owns a temp file named by [`AtomicFile`] (`.<name>.tmp-<pid>-<n>`).
pub(crate) fn temp_owner(file_name: &str) -> Option<u32> {
    let (stem, rest) = file_name.rsplit_once(".tmp-")?;
    if !stem.starts_with('.') {
        return None;
    }
    let (pid, seq) = rest.split_once('-')?;
    seq.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Removes the temp files in `dir` (not below) that a process which died left; returns how
/// many.
pub(crate) fn sweep_dead_temps(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let dead = temp_owner(&name)
            .is_some_and(|p| p != std::process::id() && !crate::fslock::pid_alive(p));
        if dead && e.file_type().is_ok_and(|t| t.is_file()) && fs::remove_file(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_atomically_with_the_mode_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/a.json");
        write(&p, b"one").unwrap();
        write_mode(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the file, no temp: {names:?}");
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing_and_commit_new_refuses_to_replace() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key");
        {
            let mut f = AtomicFile::create(&p, 0o600).unwrap();
            f.file().write_all(b"half").unwrap();
        }
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        fs::write(&p, b"old").unwrap();
        let mut f = AtomicFile::create(&p, 0o600).unwrap();
        f.file().write_all(b"new").unwrap();
        let e = f.commit_new().unwrap_err();
        assert!(format!("{e:#}").contains("already exists"), "{e:#}");
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn temps_of_dead_processes_are_swept_and_live_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22 on Linux: this pid cannot be running.
        let dead = 4_194_305u32;
        let me = std::process::id();
        for name in [
            format!(".a.deb.tmp-{dead}-0"),
            format!(".a.deb.tmp-{me}-3"),
            format!("a.deb.tmp-{dead}-0"),
            format!(".a.deb.tmp-{dead}"),
            "notes.txt".to_string(),
        ] {
            fs::write(d.path().join(name), b"x").unwrap();
        }
        assert_eq!(temp_owner(&format!(".x.tmp-{dead}-7")), Some(dead));
        assert_eq!(sweep_dead_temps(d.path()), 1);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 4);
    }
}
