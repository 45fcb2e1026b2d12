//! An exclusive `flock` on a lock file, shared by every stage that must serialise work
//! across threads and processes (making a base image, publishing into a repository).

use std::path::Path;

use anyhow::{Context, Result};

/// An exclusive `flock` on a lock file, released on drop. Released when the process
/// dies, so a crashed holder never blocks the next run.
pub struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    /// Takes the lock, waiting for another holder; `waiting` runs once if we have to wait.
    pub fn acquire(path: &Path, waiting: impl FnOnce()) -> Result<FileLock> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("could not open the lock file `{}`", path.display()))?;
        Self::lock(file, path, waiting)
    }

    /// Locks a directory itself (no file is created in it): every process that changes a
    /// file of the directory by rename takes this, whatever its cache or home.
    pub fn acquire_dir(dir: &Path, waiting: impl FnOnce()) -> Result<FileLock> {
        let file = std::fs::File::open(dir)
            .with_context(|| format!("could not open the directory `{}`", dir.display()))?;
        Self::lock(file, dir, waiting)
    }

    fn lock(file: std::fs::File, path: &Path, waiting: impl FnOnce()) -> Result<FileLock> {
        use std::os::unix::io::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            waiting();
            loop {
                // SAFETY: as above.
                if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
                    break;
                }
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    return Err(err)
                        .with_context(|| format!("could not lock `{}`", path.display()));
                }
            }
        }
        Ok(FileLock { _file: file })
    }
}

/// Whether process `pid` is running on this host (this process always is): what decides
/// that a temp file or a labelled object was left by a process that died.
pub fn pid_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}
