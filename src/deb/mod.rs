//! The .deb format: writer (ar + control.tar + data.tar) and reader, byte-correct for dpkg 1.21.
//!
//! - [`write_deb`] turns a [`DebSpec`] (ordered control fields, a data [`Tree`], conffiles,
//!   maintainer scripts) into a reproducible .deb: the same spec gives the same bytes, always.
//! - [`read_deb`] reads any .deb (also dpkg-deb's, in every compression dpkg 1.21 writes except
//!   bzip2/lzma) for `builder inspect`; [`read_data_tree`] gives the data.tar as a [`Tree`]
//!   (the OCI writer turns it into an image layer).
//!
//! This module decides nothing about recipes: which files are conffiles, which scripts
//! exist and what the control fields say is the caller's business (src/package/).

use std::path::PathBuf;

use serde::Serialize;

use crate::archive::Tree;

mod ar;
mod compress;
mod control;
pub(crate) mod limits;
mod read;
mod write;

pub use crate::recipe::Compression;
pub use compress::{GZIP_LEVEL, XZ_LEVEL, ZSTD_LEVEL};
pub use control::parse_control;
pub use read::{
    read_control, read_control_texts, read_data_entries, read_data_listing, read_data_tree,
    read_deb, DataEntry,
};
pub use write::write_deb;

/// Control-archive files besides `control`, `md5sums` and `conffiles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Script {
    Preinst,
    Postinst,
    Prerm,
    Postrm,
    /// debconf's config script.
    Config,
    /// debconf's templates: a data file, written 0644.
    Templates,
    /// dpkg trigger declarations: a data file, written 0644 (the others are 0755 programs).
    Triggers,
}

impl Script {
    pub fn file_name(self) -> &'static str {
        match self {
            Script::Preinst => "preinst",
            Script::Postinst => "postinst",
            Script::Prerm => "prerm",
            Script::Postrm => "postrm",
            Script::Config => "config",
            Script::Templates => "templates",
            Script::Triggers => "triggers",
        }
    }

    /// Whether dpkg executes it (and so it must be 0755 and start with `#!`).
    pub fn is_program(self) -> bool {
        !matches!(self, Script::Triggers | Script::Templates)
    }
}

/// Everything a .deb holds, ready to write.
#[derive(Debug, Clone)]
pub struct DebSpec {
    /// Ordered control fields WITHOUT Installed-Size (the writer computes it and inserts it
    /// after Maintainer, or after Architecture without one). Multi-line values are already
    /// formatted: continuation lines start with a space, empty ones are ` .`.
    pub control: Vec<(String, String)>,
    pub data: Tree,
    /// Absolute paths; each must be a regular file in `data`.
    pub conffiles: Vec<String>,
    pub scripts: Vec<(Script, Vec<u8>)>,
    pub compression: Compression,
    /// SOURCE_DATE_EPOCH: the mtime of every tar entry and ar member.
    pub mtime: u64,
}

/// What [`write_deb`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DebInfo {
    pub path: PathBuf,
    #[serde(with = "crate::digest::bare")]
    pub sha256: crate::digest::Digest,
    pub size: u64,
    pub installed_size_kib: u64,
}

/// One data.tar entry, as `dpkg-deb -c` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DebFile {
    /// Absolute path: `/usr/bin/x`; the root is `/`.
    pub path: String,
    /// `d` directory, `-` regular file, `l` symlink, `h` hard link, `c`/`b`/`p` devices and fifos.
    pub kind: char,
    pub mode: u32,
    pub size: u64,
    /// Symlink or hard link target.
    pub link: Option<String>,
}

/// What [`read_deb`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DebContents {
    pub control_text: String,
    pub fields: Vec<(String, String)>,
    pub files: Vec<DebFile>,
    pub conffiles: Vec<String>,
    /// Control-archive files other than control, md5sums and conffiles (maintainer scripts,
    /// triggers, shlibs, templates...), by name.
    pub scripts: Vec<String>,
    /// The `postinst` script's text, when there is one (package sets read its
    /// `update-alternatives` calls). Not shown by `inspect`.
    #[serde(skip)]
    pub postinst: Option<String>,
    /// `(path without leading /, md5 hex)` in the order of the md5sums file.
    pub md5sums: Vec<(String, String)>,
    /// ar members in order: `(name, size)`.
    pub members: Vec<(String, u64)>,
    pub data_compression: Compression,
}

/// Why a .deb could not be read. Every variant names the file and says what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("could not read `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{}` is not a Debian package: it does not start with the ar signature `!<arch>`",
        path.display()
    )]
    NotAr { path: PathBuf },
    #[error("`{}` is truncated: member `{member}` needs {size} bytes but only {available} remain; \
             was the download or copy interrupted?", path.display())]
    Truncated {
        path: PathBuf,
        member: String,
        size: u64,
        available: u64,
    },
    #[error("`{}` is not a valid ar archive: at byte {offset}: {reason}", path.display())]
    BadArchive {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("`{}` has no {member} member; a .deb holds debian-binary, control.tar[.gz|.xz|.zst] \
             and data.tar[.gz|.xz|.zst]", path.display())]
    MissingMember { path: PathBuf, member: &'static str },
    #[error("`{}` has package format version `{version}`; only 2.x (`2.0`) is supported", path.display())]
    UnsupportedVersion { path: PathBuf, version: String },
    #[error("`{}`: member `{member}` uses a compression builder cannot read; it reads gzip, xz, \
             zstd and uncompressed members", path.display())]
    UnsupportedCompression { path: PathBuf, member: String },
    #[error("`{}`: member `{member}` is corrupt: {reason}", path.display())]
    BadMember {
        path: PathBuf,
        member: String,
        reason: String,
    },
    #[error("bad control file{}: {reason}", .path.as_ref().map(|p| format!(" in `{}`", p.display())).unwrap_or_default())]
    BadControl {
        path: Option<PathBuf>,
        reason: String,
    },
}

#[cfg(test)]
mod tests;
