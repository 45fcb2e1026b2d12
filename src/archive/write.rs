//! Byte-stable GNU tar writing. Headers are assembled here byte by byte rather than through
//! the `tar` crate's builders: its path setters drop a leading `./` (cargo-deb issue #47,
//! which broke conffile upgrades) and it may emit PAX headers, which dpkg rejects.

use std::fs::File;
use std::io::{Read, Write};

use anyhow::{bail, Context};

use super::{FileSource, NodeKind, Owner, Tree};

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
    /// `path` is a hard link to the regular file `target`, which was shown earlier.
    fn hardlink(&mut self, _path: &str, _target: &str) {}
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
    let root = Owner::root();
    let mtime = opts.mtime;
    if opts.include_root {
        let e = Entry::new(b"./", 0o755, &root, b'5');
        write_entry(&mut w, &e, mtime)?;
    }
    let spell = |path: &str| {
        let mut name = String::with_capacity(path.len() + 3);
        if opts.dot_prefix {
            name.push_str("./");
        }
        name.push_str(path);
        name
    };
    for (path, node) in tree.iter() {
        let mut name = spell(path);
        let owner = &node.owner;
        match &node.kind {
            NodeKind::Dir => {
                name.push('/');
                let e = Entry::new(name.as_bytes(), node.mode, owner, b'5');
                write_entry(&mut w, &e, mtime)?;
            }
            NodeKind::Symlink(target) => {
                let e = Entry {
                    link: target.as_bytes(),
                    ..Entry::new(name.as_bytes(), node.mode, owner, b'2')
                };
                write_entry(&mut w, &e, mtime)?;
            }
            NodeKind::HardLink(target) => {
                let link = spell(target);
                let e = Entry {
                    link: link.as_bytes(),
                    ..Entry::new(name.as_bytes(), node.mode, owner, b'1')
                };
                write_entry(&mut w, &e, mtime)?;
                observer.hardlink(path, target);
            }
            NodeKind::File(FileSource::Bytes(bytes)) => {
                let size = bytes.len() as u64;
                let e = Entry {
                    size,
                    ..Entry::new(name.as_bytes(), node.mode, owner, b'0')
                };
                write_entry(&mut w, &e, mtime)?;
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
                let e = Entry {
                    size,
                    ..Entry::new(name.as_bytes(), node.mode, owner, b'0')
                };
                write_entry(&mut w, &e, mtime)?;
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

/// What one header says.
struct Entry<'a> {
    name: &'a [u8],
    mode: u32,
    owner: &'a Owner,
    size: u64,
    kind: u8,
    link: &'a [u8],
}

impl<'a> Entry<'a> {
    fn new(name: &'a [u8], mode: u32, owner: &'a Owner, kind: u8) -> Self {
        Entry {
            name,
            mode,
            owner,
            size: 0,
            kind,
            link: b"",
        }
    }
}

/// Writes one entry's header(s): a GNU `././@LongLink` entry first when the name (`L`) or
/// the link target (`K`) does not fit its 100-byte field.
fn write_entry<W: Write>(w: &mut W, e: &Entry<'_>, mtime: u64) -> std::io::Result<()> {
    if e.link.len() > NAME_LEN {
        write_long(w, b'K', e.link)?;
    }
    if e.name.len() > NAME_LEN {
        write_long(w, b'L', e.name)?;
    }
    let short = Entry {
        name: &e.name[..e.name.len().min(NAME_LEN)],
        link: &e.link[..e.link.len().min(NAME_LEN)],
        owner: e.owner,
        ..*e
    };
    w.write_all(&header(&short, mtime))
}

fn write_long<W: Write>(w: &mut W, kind: u8, value: &[u8]) -> std::io::Result<()> {
    let size = value.len() as u64 + 1; // GNU tar stores the terminating NUL
    let root = Owner::root();
    let e = Entry {
        size,
        ..Entry::new(b"././@LongLink", 0o644, &root, kind)
    };
    w.write_all(&header(&e, 0))?;
    w.write_all(value)?;
    w.write_all(&[0])?;
    pad(w, size)
}

/// One 512-byte GNU header (`ustar  \0` magic). User and group names longer than the
/// 32-byte fields are cut (recipes refuse them; dpkg's own limit is the same field).
fn header(e: &Entry<'_>, mtime: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..e.name.len()].copy_from_slice(e.name);
    numeric(&mut h[100..108], u64::from(e.mode & 0o7777));
    numeric(&mut h[108..116], u64::from(e.owner.uid));
    numeric(&mut h[116..124], u64::from(e.owner.gid));
    numeric(&mut h[124..136], e.size);
    numeric(&mut h[136..148], mtime);
    h[156] = e.kind;
    h[157..157 + e.link.len()].copy_from_slice(e.link);
    h[257..265].copy_from_slice(b"ustar  \0");
    let user = e.owner.user.as_bytes();
    let group = e.owner.group.as_bytes();
    let (nu, ng) = (user.len().min(31), group.len().min(31));
    h[265..265 + nu].copy_from_slice(&user[..nu]);
    h[297..297 + ng].copy_from_slice(&group[..ng]);
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
    let root = Owner::root();
    let e = Entry {
        size,
        ..Entry::new(name, 0o644, &root, kind)
    };
    header(&e, 0)
}
