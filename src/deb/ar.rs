//! The ar container of a .deb, as dpkg writes and reads it: `!<arch>\n`, then members with
//! 60-byte headers (name ≤ 15 bytes without a trailing `/`, mtime, uid/gid 0, mode 100644,
//! decimal size, "`\n"), each padded to an even length with `\n`.

use std::io::{self, Read, Seek, SeekFrom, Write};

pub(super) const MAGIC: &[u8; 8] = b"!<arch>\n";
pub(super) const HEADER_LEN: u64 = 60;
/// Most members [`list`] reads: a .deb has three, plus perhaps a few signatures.
pub(super) const MAX_MEMBERS: usize = 1024;

/// Writes one member header; the caller writes `size` bytes and then [`write_padding`].
pub(super) fn write_header<W: Write>(
    w: &mut W,
    name: &str,
    mtime: u64,
    size: u64,
) -> io::Result<()> {
    if name.len() > 15 || name.contains('/') || name.contains(' ') {
        return Err(io::Error::other(format!("bad ar member name `{name}`")));
    }
    let header = format!(
        "{name:<16}{mtime:<12}{:<6}{:<6}{:<8o}{size:<10}`\n",
        0, 0, 0o100644
    );
    if header.len() != HEADER_LEN as usize {
        return Err(io::Error::other(format!(
            "ar header for `{name}` does not fit 60 bytes (mtime {mtime}, size {size})"
        )));
    }
    w.write_all(header.as_bytes())
}

pub(super) fn write_padding<W: Write>(w: &mut W, size: u64) -> io::Result<()> {
    if size % 2 == 1 {
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// Writes a whole in-memory member.
pub(super) fn write_member<W: Write>(
    w: &mut W,
    name: &str,
    mtime: u64,
    data: &[u8],
) -> io::Result<()> {
    write_header(w, name, mtime, data.len() as u64)?;
    w.write_all(data)?;
    write_padding(w, data.len() as u64)
}

/// A member found by [`list`]: its name, where its data starts and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Member {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// Why an ar archive could not be listed.
#[derive(Debug)]
pub(super) enum ArError {
    NotAr,
    Io(io::Error),
    /// The header at this offset is malformed.
    BadHeader {
        offset: u64,
        reason: String,
    },
    /// The member's data runs past the end of the file.
    Truncated {
        name: String,
        size: u64,
        available: u64,
    },
}

impl From<io::Error> for ArError {
    fn from(e: io::Error) -> Self {
        ArError::Io(e)
    }
}

/// Lists the members of an ar archive of `len` bytes without reading their data.
pub(super) fn list<R: Read + Seek>(r: &mut R, len: u64) -> Result<Vec<Member>, ArError> {
    let mut magic = [0u8; 8];
    r.seek(SeekFrom::Start(0))?;
    if len < 8 {
        return Err(ArError::NotAr);
    }
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(ArError::NotAr);
    }
    let mut members = Vec::new();
    let mut pos = 8u64;
    while pos < len {
        if members.len() == MAX_MEMBERS {
            return Err(ArError::BadHeader {
                offset: pos,
                reason: format!(
                    "the archive has more than {MAX_MEMBERS} members; a .deb holds three (and \
                     perhaps signatures), builder reads at most {MAX_MEMBERS} members"
                ),
            });
        }
        if len - pos < HEADER_LEN {
            return Err(ArError::BadHeader {
                offset: pos,
                reason: format!("only {} bytes left for a 60-byte header", len - pos),
            });
        }
        let mut h = [0u8; HEADER_LEN as usize];
        r.seek(SeekFrom::Start(pos))?;
        r.read_exact(&mut h)?;
        if &h[58..60] != b"`\n" {
            return Err(ArError::BadHeader {
                offset: pos,
                reason: "the header does not end with the ar terminator \"`\\n\"".into(),
            });
        }
        let name = String::from_utf8_lossy(&h[..16]).trim_end().to_string();
        // GNU ar ends names with `/`; dpkg accepts both spellings.
        let name = name.strip_suffix('/').unwrap_or(&name).to_string();
        let size_text = String::from_utf8_lossy(&h[48..58]);
        let size: u64 = size_text.trim().parse().map_err(|_| ArError::BadHeader {
            offset: pos,
            reason: format!(
                "member `{name}` has a bad size field `{}`",
                size_text.trim()
            ),
        })?;
        let offset = pos + HEADER_LEN;
        let available = len - offset;
        if size > available {
            return Err(ArError::Truncated {
                name,
                size,
                available,
            });
        }
        members.push(Member { name, offset, size });
        pos = offset + size + (size % 2);
    }
    Ok(members)
}
