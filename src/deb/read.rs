//! Reading .deb files: any dpkg 1.21 binary package in gzip, xz, zstd or no compression.
//! Every malformed input gives a [`DebError`] naming the file; nothing here panics on bad
//! bytes (see the truncation/bit-flip test in `super::tests` and the fuzz corpus in
//! `tests/inspect_hostile.rs`). Every length an archive declares is bounded (see
//! [`super::limits`]): reading a .deb takes a fixed amount of memory whatever it holds.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::ar::{self, ArError, Member};
use super::control::parse_control;
use super::limits::{self, human, TarGuard, TarLimits};
use super::{Compression, DebContents, DebError, DebFile};
use crate::archive::{read_tree_limited, FileSource, NodeKind, Tree};

/// Most bytes builder reads from a control.tar, all files together.
const CONTROL_MAX: u64 = 64 << 20;
/// Most bytes of the `control` file (dpkg's own are a few KiB; 200,000 fields fit).
const CONTROL_FILE_MAX: u64 = 4 << 20;
/// Most entries listed from a data.tar, and lines read from md5sums.
const LIST_MAX: usize = 1_000_000;
/// Most bytes of names and link targets listed from a data.tar, all entries together.
const LIST_NAMES_MAX: u64 = 64 << 20;

struct Opened {
    path: PathBuf,
    file: File,
    members: Vec<Member>,
    control: (Member, Compression),
    data: (Member, Compression),
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> DebError + '_ {
    move |source| DebError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn compression_of(path: &Path, m: &Member, stem: &str) -> Result<Option<Compression>, DebError> {
    let Some(rest) = m.name.strip_prefix(stem) else {
        return Ok(None);
    };
    let c = match rest {
        "" => Compression::None,
        ".gz" => Compression::Gzip,
        ".xz" => Compression::Xz,
        ".zst" => Compression::Zstd,
        _ => {
            return Err(DebError::UnsupportedCompression {
                path: path.to_path_buf(),
                member: m.name.clone(),
            })
        }
    };
    Ok(Some(c))
}

fn open(path: &Path) -> Result<Opened, DebError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    let members = ar::list(&mut file, len).map_err(|e| match e {
        ArError::NotAr => DebError::NotAr {
            path: path.to_path_buf(),
        },
        ArError::Io(source) => DebError::Io {
            path: path.to_path_buf(),
            source,
        },
        ArError::BadHeader { offset, reason } => DebError::BadArchive {
            path: path.to_path_buf(),
            offset,
            reason,
        },
        ArError::Truncated {
            name,
            size,
            available,
        } => DebError::Truncated {
            path: path.to_path_buf(),
            member: name,
            size,
            available,
        },
    })?;
    let missing = |member| DebError::MissingMember {
        path: path.to_path_buf(),
        member,
    };
    // dpkg identifies a package by its first member.
    let first = members.first().ok_or_else(|| missing("debian-binary"))?;
    if first.name != "debian-binary" {
        return Err(missing("debian-binary"));
    }
    let mut version = vec![0u8; first.size.min(64) as usize];
    file.seek(SeekFrom::Start(first.offset))
        .map_err(io_err(path))?;
    file.read_exact(&mut version).map_err(io_err(path))?;
    let version = String::from_utf8_lossy(&version).trim_end().to_string();
    if !version.starts_with("2.") {
        return Err(DebError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    let mut control = None;
    let mut data = None;
    for m in &members[1..] {
        if control.is_none() {
            if let Some(c) = compression_of(path, m, "control.tar")? {
                control = Some((m.clone(), c));
                continue;
            }
        }
        if data.is_none() {
            if let Some(c) = compression_of(path, m, "data.tar")? {
                data = Some((m.clone(), c));
            }
        }
    }
    Ok(Opened {
        path: path.to_path_buf(),
        file,
        control: control.ok_or_else(|| missing("control.tar"))?,
        data: data.ok_or_else(|| missing("data.tar"))?,
        members,
    })
}

impl Opened {
    /// A decompressing reader over one tar member, refusing what `limits` forbid before the
    /// `tar` crate allocates for it.
    fn member(
        &self,
        which: &(Member, Compression),
        limits: TarLimits,
    ) -> Result<TarGuard<Box<dyn Read + '_>>, DebError> {
        let (m, c) = which;
        let mut f = &self.file;
        f.seek(SeekFrom::Start(m.offset))
            .map_err(io_err(&self.path))?;
        let r = limits::decoder(*c, f.take(m.size)).map_err(|e| self.corrupt(m, e))?;
        Ok(TarGuard::new(r, limits))
    }

    fn corrupt(&self, m: &Member, e: impl std::fmt::Display) -> DebError {
        DebError::BadMember {
            path: self.path.clone(),
            member: m.name.clone(),
            reason: e.to_string(),
        }
    }

    /// The tree of a member; more than `max_total` bytes of files make it corrupt.
    fn tree(
        &self,
        which: &(Member, Compression),
        limits: TarLimits,
        max_total: u64,
    ) -> Result<Tree, DebError> {
        let mut r = self.member(which, limits)?;
        let tree = read_tree_limited(&mut r, max_total)
            .map_err(|e| self.corrupt(&which.0, format!("{e:#}")))?;
        // Read to the end so the compressor's trailer and checksum are verified too.
        std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| self.corrupt(&which.0, e))?;
        Ok(tree)
    }
}

fn bytes<'t>(tree: &'t Tree, name: &str) -> Option<&'t [u8]> {
    match tree.get(name).map(|n| &n.kind) {
        Some(NodeKind::File(FileSource::Bytes(b))) => Some(b),
        _ => None,
    }
}

fn text(tree: &Tree, name: &str) -> Option<String> {
    bytes(tree, name).map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Reads a .deb's control archive and lists its data archive.
pub fn read_deb(path: &Path) -> Result<DebContents, DebError> {
    let deb = open(path)?;
    let mut contents = control_of(&deb)?;
    contents.files = list_data(&deb)?;
    Ok(contents)
}

/// Reads a .deb's control archive only (`files` is left empty): cheap, whatever the size
/// of the data archive.
pub fn read_control(path: &Path) -> Result<DebContents, DebError> {
    control_of(&open(path)?)
}

/// Reads a .deb's control archive (`files` is left empty) and the text of those of the
/// control files `names` (`symbols`, `shlibs`, ...) it holds, lossily decoded.
pub fn read_control_texts(
    path: &Path,
    names: &[&str],
) -> Result<(DebContents, Vec<(String, String)>), DebError> {
    let deb = open(path)?;
    let (contents, tree) = control_and_tree(&deb)?;
    let texts = names
        .iter()
        .filter_map(|n| text(&tree, n).map(|t| (n.to_string(), t)))
        .collect();
    Ok((contents, texts))
}

/// Lists a .deb's data archive only, bounded as [`read_deb`] lists it.
pub fn read_data_listing(path: &Path) -> Result<Vec<DebFile>, DebError> {
    list_data(&open(path)?)
}

fn control_of(deb: &Opened) -> Result<DebContents, DebError> {
    control_and_tree(deb).map(|(c, _)| c)
}

fn control_and_tree(deb: &Opened) -> Result<(DebContents, Tree), DebError> {
    // control.tar holds small text files (control, md5sums, scripts, templates): a crafted
    // one must not make `inspect` hold gigabytes. dpkg's own files stay far below this.
    let control_tree = deb.tree(&deb.control, limits::CONTROL_TAR, CONTROL_MAX)?;
    let control_bytes = bytes(&control_tree, "control").ok_or_else(|| DebError::BadMember {
        path: deb.path.clone(),
        member: deb.control.0.name.clone(),
        reason: "it has no `control` file".into(),
    })?;
    if control_bytes.len() as u64 > CONTROL_FILE_MAX {
        return Err(deb.corrupt(
            &deb.control.0,
            format!(
                "its `control` file is {} ({} bytes); builder reads at most {} of a control file",
                human(control_bytes.len() as u64),
                control_bytes.len(),
                human(CONTROL_FILE_MAX)
            ),
        ));
    }
    let control_text = String::from_utf8_lossy(control_bytes).into_owned();
    let fields = parse_control(&control_text).map_err(|e| match e {
        DebError::BadControl { reason, .. } => DebError::BadControl {
            path: Some(deb.path.clone()),
            reason,
        },
        other => other,
    })?;
    let conffiles = text(&control_tree, "conffiles")
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let md5sums = match bytes(&control_tree, "md5sums") {
        Some(b) => {
            let t = String::from_utf8_lossy(b);
            if t.lines().count() > LIST_MAX {
                return Err(deb.corrupt(
                    &deb.control.0,
                    format!("its `md5sums` has more than {LIST_MAX} lines; builder reads at most {LIST_MAX}"),
                ));
            }
            t.lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(sum, p)| (p.trim_start().to_string(), sum.to_string()))
                .collect()
        }
        None => Vec::new(),
    };
    let scripts = control_tree
        .iter()
        .filter(|(name, n)| {
            matches!(n.kind, NodeKind::File(_))
                && !matches!(*name, "control" | "md5sums" | "conffiles")
        })
        .map(|(name, _)| name.to_string())
        .collect();
    let contents = DebContents {
        postinst: text(&control_tree, "postinst"),
        control_text,
        fields,
        files: Vec::new(),
        conffiles,
        scripts,
        md5sums,
        members: deb
            .members
            .iter()
            .map(|m| (m.name.clone(), m.size))
            .collect(),
        data_compression: deb.data.1,
    };
    Ok((contents, control_tree))
}

fn list_data(deb: &Opened) -> Result<Vec<DebFile>, DebError> {
    let member = &deb.data.0;
    let mut r = deb.member(&deb.data, limits::DATA_TAR)?;
    let mut archive = tar::Archive::new(&mut r);
    let mut files = Vec::new();
    // What the listing holds: a data.tar of many long names must not make it gigabytes.
    let mut names = 0u64;
    let entries = archive.entries().map_err(|e| deb.corrupt(member, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| deb.corrupt(member, e))?;
        let header = entry.header();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        // dpkg extracts relative to the root and refuses what would leave it; say so rather
        // than list `/etc/x` or `./../etc/x` as if they were ordinary files.
        if name.starts_with('/') || name.split('/').any(|c| c == "..") {
            return Err(deb.corrupt(
                member,
                format!(
                    "entry `{name}` is an absolute path or climbs out with `..`: dpkg would \
                     refuse this package; do not install it"
                ),
            ));
        }
        let trimmed = name.trim_start_matches("./");
        let path = format!("/{}", trimmed.trim_end_matches('/'));
        let (kind, link) = match header.entry_type() {
            EntryType::Directory => ('d', None),
            EntryType::Regular | EntryType::Continuous => ('-', None),
            EntryType::Symlink => ('l', link_of(&entry)),
            EntryType::Link => ('h', link_of(&entry)),
            EntryType::Char => ('c', None),
            EntryType::Block => ('b', None),
            EntryType::Fifo => ('p', None),
            EntryType::XGlobalHeader | EntryType::XHeader => continue,
            other => return Err(deb.corrupt(member, format!("entry `{name}` has type {other:?}"))),
        };
        names += (path.len() + link.as_ref().map_or(0, String::len)) as u64;
        if names > LIST_NAMES_MAX {
            return Err(deb.corrupt(
                member,
                format!(
                    "its names and link targets pass {} after {} entries; builder lists at \
                     most {} of them",
                    human(LIST_NAMES_MAX),
                    files.len(),
                    human(LIST_NAMES_MAX)
                ),
            ));
        }
        if files.len() == LIST_MAX {
            return Err(deb.corrupt(
                member,
                format!("it has more than {LIST_MAX} entries; builder lists at most {LIST_MAX}"),
            ));
        }
        files.push(DebFile {
            path,
            kind,
            mode: header.mode().map_err(|e| deb.corrupt(member, e))? & 0o7777,
            size: if kind == '-' { entry.size() } else { 0 },
            link,
        });
    }
    std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| deb.corrupt(member, e))?;
    Ok(files)
}

fn link_of<R: Read>(entry: &tar::Entry<'_, R>) -> Option<String> {
    entry
        .link_name_bytes()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The data.tar of a .deb as a [`Tree`] of in-memory files.
pub fn read_data_tree(path: &Path) -> anyhow::Result<Tree> {
    let deb = open(path)?;
    Ok(deb.tree(&deb.data, limits::DATA_TAR, u64::MAX)?)
}

/// One data.tar entry with its owner and bytes, as package-set assembly needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataEntry {
    /// Normalised relative path (`usr/bin/x`); the root entry is skipped.
    pub path: String,
    /// `d` directory, `-` regular file, `l` symlink, `h` hard link (to `link`, normalised).
    pub kind: char,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub link: Option<String>,
    pub data: Vec<u8>,
}

/// Every entry of a .deb's data.tar, with owners and bytes; more than `max_total` bytes of
/// files make it corrupt. Device nodes and fifos are skipped (the engine provides /dev).
pub fn read_data_entries(path: &Path, max_total: u64) -> Result<Vec<DataEntry>, DebError> {
    let deb = open(path)?;
    let member = &deb.data.0;
    let mut r = deb.member(&deb.data, limits::DATA_TAR)?;
    let mut archive = tar::Archive::new(&mut r);
    let mut out = Vec::new();
    let mut total = 0u64;
    let entries = archive.entries().map_err(|e| deb.corrupt(member, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| deb.corrupt(member, e))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if name.starts_with('/') || name.split('/').any(|c| c == "..") {
            return Err(deb.corrupt(
                member,
                format!("entry `{name}` is an absolute path or climbs out with `..`"),
            ));
        }
        let rel = crate::archive::normalize(&name).map_err(|e| deb.corrupt(member, e))?;
        if rel.is_empty() {
            continue;
        }
        let header = entry.header();
        let mode = header.mode().map_err(|e| deb.corrupt(member, e))? & 0o7777;
        let uid = header.uid().map_err(|e| deb.corrupt(member, e))?;
        let gid = header.gid().map_err(|e| deb.corrupt(member, e))?;
        let (kind, link) = match header.entry_type() {
            EntryType::Directory => ('d', None),
            EntryType::Regular | EntryType::Continuous => ('-', None),
            EntryType::Symlink => ('l', link_of(&entry)),
            EntryType::Link => (
                'h',
                link_of(&entry)
                    .map(|l| crate::archive::normalize(&l).map_err(|e| deb.corrupt(member, e)))
                    .transpose()?,
            ),
            EntryType::Char | EntryType::Block | EntryType::Fifo => continue,
            EntryType::XGlobalHeader | EntryType::XHeader => continue,
            other => return Err(deb.corrupt(member, format!("entry `{name}` has type {other:?}"))),
        };
        let mut data = Vec::new();
        if kind == '-' {
            total = total.saturating_add(entry.size());
            if total > max_total {
                return Err(deb.corrupt(
                    member,
                    format!("its files hold more than {max_total} bytes"),
                ));
            }
            entry
                .read_to_end(&mut data)
                .map_err(|e| deb.corrupt(member, e))?;
        }
        if matches!(kind, 'l' | 'h') && link.as_deref().is_none_or(str::is_empty) {
            return Err(deb.corrupt(member, format!("link `{name}` has no target")));
        }
        out.push(DataEntry {
            path: rel,
            kind,
            mode,
            uid,
            gid,
            link,
            data,
        });
    }
    std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| deb.corrupt(member, e))?;
    Ok(out)
}
