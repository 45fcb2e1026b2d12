//! Byte-stable GNU tar writing. Headers are assembled here byte by byte rather than through
//! the `tar` crate's builders: its path setters drop a leading `./` (cargo-deb issue #47,
//! which broke conffile upgrades) and it may emit PAX headers, which dpkg rejects.

use std::fs::File;
use std::io::{Read, Write};

use anyhow::{bail, Context};

use super::{FileSource, NodeKind, Tree};

const BLOCK: usize = 512;
const NAME_LEN: usize = 100;
const COPY_BUF: usize = 1 << 20;

/// How entry names are spelled and which timestamp every entry carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarOptions {
    /// The mtime of every entry (SOURCE_DATE_EPOCH).
    pub mtime: u64,
    /// `./usr/bin/x` (Debian data.tar) instead of `usr/bin/x` (OCI layers).
    pub dot_prefix: bool,
    /// Start with a `./` entry for the root directory (Debian data.tar).
    pub include_root: bool,
}

impl TarOptions {
    /// The naming dpkg-deb uses: a `./` root entry and `./`-prefixed names.
    pub fn deb(mtime: u64) -> Self {
        TarOptions {
            mtime,
            dot_prefix: true,
            include_root: true,
        }
    }

    /// The naming OCI layers use: plain relative names, no root entry.
    pub fn oci(mtime: u64) -> Self {
        TarOptions {
            mtime,
            dot_prefix: false,
            include_root: false,
        }
    }
}

/// Sees the contents of every regular file as it is written (the .deb writer computes
/// md5sums this way, in the same pass that reads the file).
pub trait FileObserver {
    /// A regular file starts; `path` is the tree key (`usr/bin/x`).
    fn start(&mut self, path: &str);
    fn data(&mut self, chunk: &[u8]);
    fn end(&mut self);
}

struct NoObserver;

impl FileObserver for NoObserver {
    fn start(&mut self, _: &str) {}
    fn data(&mut self, _: &[u8]) {}
    fn end(&mut self) {}
}

/// Writes `tree` as a GNU tar to `w` and returns `w` (not flushed beyond the tar's end).
pub fn write_tar<W: Write>(tree: &Tree, w: W, opts: &TarOptions) -> anyhow::Result<W> {
    write_tar_observed(tree, w, opts, &mut NoObserver)
}

/// Like [`write_tar`], and shows each regular file's bytes to `observer`.
pub fn write_tar_observed<W: Write>(
    tree: &Tree,
    mut w: W,
    opts: &TarOptions,
    observer: &mut dyn FileObserver,
) -> anyhow::Result<W> {
    let mut buf = vec![0u8; COPY_BUF];
    if opts.include_root {
        write_entry(&mut w, b"./", 0o755, 0, opts.mtime, b'5', b"")?;
    }
    for (path, node) in tree.iter() {
        let mut name = String::with_capacity(path.len() + 3);
        if opts.dot_prefix {
            name.push_str("./");
        }
        name.push_str(path);
        match &node.kind {
            NodeKind::Dir => {
                name.push('/');
                write_entry(&mut w, name.as_bytes(), node.mode, 0, opts.mtime, b'5', b"")?;
            }
            NodeKind::Symlink(target) => {
                write_entry(
                    &mut w,
                    name.as_bytes(),
                    node.mode,
                    0,
                    opts.mtime,
                    b'2',
                    target.as_bytes(),
                )?;
            }
            NodeKind::File(FileSource::Bytes(bytes)) => {
                let size = bytes.len() as u64;
                write_entry(
                    &mut w,
                    name.as_bytes(),
                    node.mode,
                    size,
                    opts.mtime,
                    b'0',
                    b"",
                )?;
                observer.start(path);
                observer.data(bytes);
                observer.end();
                w.write_all(bytes)?;
                pad(&mut w, size)?;
            }
            NodeKind::File(FileSource::Path(p)) => {
                let mut file =
                    File::open(p).with_context(|| format!("could not open `{}`", p.display()))?;
                let meta = file
                    .metadata()
                    .with_context(|| format!("could not read `{}`", p.display()))?;
                if !meta.is_file() {
                    bail!(
                        "`{}` (for `/{path}`) is not a regular file; add directories and \
                         symlinks as such",
                        p.display()
                    );
                }
                let size = meta.len();
                write_entry(
                    &mut w,
                    name.as_bytes(),
                    node.mode,
                    size,
                    opts.mtime,
                    b'0',
                    b"",
                )?;
                observer.start(path);
                let mut left = size;
                while left > 0 {
                    crate::interrupt::check()?;
                    let want = left.min(buf.len() as u64) as usize;
                    let n = file
                        .read(&mut buf[..want])
                        .with_context(|| format!("could not read `{}`", p.display()))?;
                    if n == 0 {
                        bail!(
                            "`{}` shrank while it was being archived; is something still \
                             writing it?",
                            p.display()
                        );
                    }
                    observer.data(&buf[..n]);
                    w.write_all(&buf[..n])?;
                    left -= n as u64;
                }
                observer.end();
                pad(&mut w, size)?;
            }
        }
    }
    w.write_all(&[0u8; 2 * BLOCK])?;
    Ok(w)
}

fn pad<W: Write>(w: &mut W, size: u64) -> std::io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        w.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

/// Writes one entry's header(s): a GNU `././@LongLink` entry first when the name (`L`) or
/// the link target (`K`) does not fit its 100-byte field.
fn write_entry<W: Write>(
    w: &mut W,
    name: &[u8],
    mode: u32,
    size: u64,
    mtime: u64,
    kind: u8,
    link: &[u8],
) -> std::io::Result<()> {
    if link.len() > NAME_LEN {
        write_long(w, b'K', link)?;
    }
    if name.len() > NAME_LEN {
        write_long(w, b'L', name)?;
    }
    let h = header(
        &name[..name.len().min(NAME_LEN)],
        mode,
        size,
        mtime,
        kind,
        &link[..link.len().min(NAME_LEN)],
    );
    w.write_all(&h)
}

fn write_long<W: Write>(w: &mut W, kind: u8, value: &[u8]) -> std::io::Result<()> {
    let size = value.len() as u64 + 1; // GNU tar stores the terminating NUL
    w.write_all(&header(b"././@LongLink", 0o644, size, 0, kind, b""))?;
    w.write_all(value)?;
    w.write_all(&[0])?;
    pad(w, size)
}

/// One 512-byte GNU header (`ustar  \0` magic), uid/gid 0, owner `root:root`.
fn header(name: &[u8], mode: u32, size: u64, mtime: u64, kind: u8, link: &[u8]) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name);
    numeric(&mut h[100..108], u64::from(mode & 0o7777));
    numeric(&mut h[108..116], 0);
    numeric(&mut h[116..124], 0);
    numeric(&mut h[124..136], size);
    numeric(&mut h[136..148], mtime);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..265].copy_from_slice(b"ustar  \0");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

/// Zero-padded octal with a trailing NUL, or GNU base-256 when the value does not fit.
fn numeric(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if digits * 3 >= 64 || value < (1u64 << (3 * digits)) {
        let text = format!("{value:0digits$o}");
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
    } else {
        field.fill(0);
        let bytes = value.to_be_bytes();
        let n = field.len();
        field[n - 8..].copy_from_slice(&bytes);
        field[0] |= 0x80;
    }
}

/// A bare header for the tests in `super::tests`.
#[cfg(test)]
pub(super) fn tests_header(name: &[u8], kind: u8, size: u64) -> [u8; BLOCK] {
    header(name, 0o644, size, 0, kind, b"")
}
