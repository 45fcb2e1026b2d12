//! Bounds on what an archive may declare, so that reading a hostile .deb or image tar costs
//! a fixed amount of memory whatever its headers say (issue 11, item 9).
//!
//! The `tar` crate reads a GNU long-name (`L`), long-link (`K`) or PAX (`x`) extension
//! entry whole, however large its header says it is: a 50 KB zstd stream declaring a
//! 1.5 GiB long name made `builder inspect` abort on a failed allocation. [`TarGuard`] sits
//! between the decompressor and the `tar` crate, sees every 512-byte header before the crate
//! does and refuses the entry with an error that names the limit. It passes bytes through
//! unchanged, so it must track entry boundaries exactly as the crate does (PAX `size`
//! overrides included); the fuzz corpus in `tests/` holds it to that.
//!
//! This module decides only limits; what an archive means is the readers' business.

use std::io::{self, Read};

/// Most bytes of a GNU long name or long link (Linux's PATH_MAX is 4 KiB).
pub(crate) const MAX_NAME: u64 = 64 << 10;
/// Most bytes of one PAX extended header (names, xattrs, ACLs).
pub(crate) const MAX_PAX: u64 = 1 << 20;

/// What a tar stream may declare.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TarLimits {
    /// Most headers, extension headers included.
    pub max_entries: u64,
}

/// A control.tar holds a handful of files.
pub(crate) const CONTROL_TAR: TarLimits = TarLimits { max_entries: 4096 };
/// A data.tar: far more entries than any Debian package has (the largest hold ~10^5).
pub(crate) const DATA_TAR: TarLimits = TarLimits {
    max_entries: 2_000_000,
};
/// An image tar: oci-layout, index.json, manifest.json and the blobs.
pub(crate) const IMAGE_TAR: TarLimits = TarLimits {
    max_entries: 100_000,
};

/// Most memory the xz decoder may take: xz -9 needs 65 MiB; a stream that declares a larger
/// dictionary is refused rather than allocated.
pub(crate) const XZ_MEMORY: u64 = 128 << 20;
/// Largest zstd window (2^27 = 128 MiB, libzstd's own default limit, stated here so it
/// stays one).
const ZSTD_WINDOW_LOG: u32 = 27;

/// A decompressing reader for a member compressed with `c`, whose decoder memory is bounded
/// whatever the stream declares.
pub(crate) fn decoder<'a, R: Read + 'a>(
    c: super::Compression,
    r: R,
) -> io::Result<Box<dyn Read + 'a>> {
    use super::Compression;
    Ok(match c {
        Compression::Xz => {
            let stream = liblzma::stream::Stream::new_stream_decoder(
                XZ_MEMORY,
                liblzma::stream::CONCATENATED,
            )?;
            Box::new(XzMemory(liblzma::read::XzDecoder::new_stream(r, stream)))
        }
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(r)?;
            d.window_log_max(ZSTD_WINDOW_LOG)?;
            Box::new(d)
        }
        other => super::compress::decoder(other, r)?,
    })
}

/// Says which limit liblzma's "memory limit reached" means.
struct XzMemory<R>(R);

impl<R: Read> Read for XzMemory<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            let memlimit = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<liblzma::stream::Error>())
                .is_some_and(|i| matches!(i, liblzma::stream::Error::MemLimit));
            if memlimit {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "its xz stream needs more than {} of memory to unpack; builder allows \
                         at most {} (xz -9 needs 65 MiB)",
                        human(XZ_MEMORY),
                        human(XZ_MEMORY)
                    ),
                )
            } else {
                e
            }
        })
    }
}

/// `1.5 GiB`, `64 KiB`, `300 bytes`: sizes in messages.
pub(crate) fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

enum State {
    /// The next bytes are a 512-byte header.
    Header,
    /// Inside an entry's data and padding.
    Data { left: u64 },
    /// After the end-of-archive block (or a header the `tar` crate will reject itself):
    /// the crate reads no further headers, the rest passes through.
    Done,
}

/// A reader over a tar stream that refuses oversized extension headers, GNU sparse entries
/// and too many entries before the `tar` crate allocates for them. See the module header.
pub(crate) struct TarGuard<R> {
    inner: R,
    limits: TarLimits,
    state: State,
    header: [u8; 512],
    /// Bytes of `header` filled, and served to the reader.
    filled: usize,
    served: usize,
    entries: u64,
    /// Data of the PAX header being passed through, and how much of it is still to come.
    pax: Option<(Vec<u8>, u64)>,
    /// The `size` of the last complete PAX header, for the next ordinary entry.
    pax_size: Option<u64>,
    /// Once refused, every later read fails the same way.
    refused: Option<String>,
}

impl<R: Read> TarGuard<R> {
    pub(crate) fn new(inner: R, limits: TarLimits) -> Self {
        TarGuard {
            inner,
            limits,
            state: State::Header,
            header: [0; 512],
            filled: 0,
            served: 0,
            entries: 0,
            pax: None,
            pax_size: None,
            refused: None,
        }
    }

    fn refuse(&mut self, msg: String) -> io::Error {
        self.refused = Some(msg.clone());
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    /// Reads the next header from `inner`, judges it and sets the state for its data.
    fn next_header(&mut self) -> io::Result<()> {
        self.filled = 0;
        self.served = 0;
        while self.filled < 512 {
            match self.inner.read(&mut self.header[self.filled..]) {
                Ok(0) => break,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.filled < 512 {
            // A short header: the crate reports the truncation.
            self.state = State::Done;
            return Ok(());
        }
        let sum = self.header[..148]
            .iter()
            .chain(&self.header[156..])
            .fold(8 * 32u32, |a, b| a + u32::from(*b));
        let h = tar::Header::from_byte_slice(&self.header);
        // The crate treats L, K and x as extensions only in ustar or GNU headers.
        let recognized = h.as_gnu().is_some() || h.as_ustar().is_some();
        let (cksum, size) = (h.cksum().ok(), h.entry_size());
        if self.header.iter().all(|b| *b == 0) || cksum != Some(sum) {
            // End of archive, or a header the crate refuses with its own error.
            self.state = State::Done;
            return Ok(());
        }
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.refuse(format!(
                "the archive has more than {} entries; builder reads at most {}",
                self.limits.max_entries, self.limits.max_entries
            )));
        }
        let kind = self.header[156];
        let extension = matches!(kind, b'L' | b'K' | b'x' | b'g');
        let Ok(mut size) = size else {
            self.state = State::Done;
            return Ok(());
        };
        if !extension {
            if let Some(s) = self.pax_size {
                size = s;
            }
        }
        if !(recognized && matches!(kind, b'L' | b'K' | b'x')) {
            // This entry is the one the extensions described: they are used up.
            self.pax_size = None;
        }
        let name = String::from_utf8_lossy(&self.header[..100])
            .trim_end_matches('\0')
            .to_string();
        if kind == b'S' {
            return Err(self.refuse(format!(
                "entry `{name}` is a GNU sparse file; dpkg and builder do not read sparse entries"
            )));
        }
        if recognized && matches!(kind, b'L' | b'K') && size > MAX_NAME {
            let what = if kind == b'L' { "name" } else { "link" };
            return Err(self.refuse(format!(
                "a GNU long {what} header declares {} ({size} bytes); builder reads at most {} \
                 of a {what}",
                human(size),
                human(MAX_NAME)
            )));
        }
        if recognized && kind == b'x' {
            if size > MAX_PAX {
                return Err(self.refuse(format!(
                    "a PAX header declares {} ({size} bytes); builder reads at most {} of one",
                    human(size),
                    human(MAX_PAX)
                )));
            }
            self.pax = Some((Vec::with_capacity(size as usize), size));
            if size == 0 {
                self.end_pax();
            }
        }
        let padded = size
            .checked_add(511)
            .map(|s| s & !511)
            .ok_or_else(|| self.refuse(format!("entry `{name}` declares an impossible size")))?;
        self.state = State::Data { left: padded };
        Ok(())
    }

    /// A PAX header is complete: remember its `size`, as the crate will apply it.
    fn end_pax(&mut self) {
        if let Some((data, _)) = self.pax.take() {
            self.pax_size = pax_size(&data);
        }
    }
}

/// The `size` record of a PAX header, read as the `tar` crate reads it (the first `size`
/// record; nothing when a record before it or its value is malformed).
fn pax_size(data: &[u8]) -> Option<u64> {
    for ext in tar::PaxExtensions::new(data) {
        let ext = ext.ok()?;
        if ext.key() != Ok("size") {
            continue;
        }
        return ext.value().ok()?.parse().ok();
    }
    None
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(msg) = &self.refused {
            return Err(io::Error::new(io::ErrorKind::InvalidData, msg.clone()));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.served < self.filled {
                let n = (self.filled - self.served).min(buf.len());
                buf[..n].copy_from_slice(&self.header[self.served..self.served + n]);
                self.served += n;
                return Ok(n);
            }
            match self.state {
                State::Done => return self.inner.read(buf),
                State::Header => {
                    self.next_header()?;
                    if self.filled == 0 {
                        return Ok(0);
                    }
                }
                State::Data { left: 0 } => self.state = State::Header,
                State::Data { left } => {
                    let want = (buf.len() as u64).min(left) as usize;
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        return Ok(0);
                    }
                    self.state = State::Data {
                        left: left - n as u64,
                    };
                    if let Some((data, rest)) = self.pax.as_mut() {
                        let k = (*rest).min(n as u64) as usize;
                        data.extend_from_slice(&buf[..k]);
                        *rest -= k as u64;
                        if *rest == 0 {
                            self.end_pax();
                        }
                    }
                    return Ok(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An xz stream whose block header declares a 1 GiB dictionary (patched into a real
    /// stream, CRC fixed): refused by the decoder's memory limit with a message that says
    /// so, while the same stream as written decodes.
    #[test]
    fn an_xz_stream_that_asks_for_too_much_memory_is_refused() {
        use std::io::Write;
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 1);
        enc.write_all(b"hello, dictionary").unwrap();
        let good = enc.finish().unwrap();
        let mut out = Vec::new();
        decoder(crate::deb::Compression::Xz, &good[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"hello, dictionary");
        // Stream header (12 bytes), then the block header: size, flags, LZMA2 filter id,
        // property size, the dictionary-size byte, padding, CRC32.
        let mut bad = good.clone();
        assert_eq!(
            &bad[12..16],
            &[0x02, 0x00, 0x21, 0x01],
            "unexpected block header"
        );
        bad[16] = 36; // (2 | 0) << (36 / 2 + 11) = 1 GiB
        let crc = crc32fast::hash(&bad[12..20]);
        bad[20..24].copy_from_slice(&crc.to_le_bytes());
        let err = decoder(crate::deb::Compression::Xz, &bad[..])
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("of memory to unpack"), "{err}");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human(300), "300 bytes");
        assert_eq!(human(64 << 10), "64 KiB");
        assert_eq!(human(1536 << 20), "1.5 GiB");
    }

    fn tar_of(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::new(*kind));
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn names(tar: &[u8]) -> io::Result<Vec<String>> {
        let mut a = tar::Archive::new(TarGuard::new(tar, DATA_TAR));
        let mut out = Vec::new();
        for e in a.entries()? {
            let e = e?;
            out.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
        }
        Ok(out)
    }

    #[test]
    fn a_pax_size_override_keeps_the_guard_in_step() {
        // The PAX header says the next file is 600 bytes although its header says 0: the
        // crate skips 1024 bytes, and so must the guard, or it judges file data as a header.
        let mut data = vec![b'a'; 600];
        // Bytes that would be a huge long-name header if taken for one.
        let fake = {
            let mut h = tar::Header::new_gnu();
            h.set_size(1 << 40);
            h.set_entry_type(tar::EntryType::GNULongName);
            h.set_cksum();
            h.as_bytes().to_vec()
        };
        data[..512].copy_from_slice(&fake);
        let mut tar = tar_of(&[("PaxHeaders/f", b'x', b"12 size=600\n"), ("f", b'0', b"")]);
        // Put the 600 bytes of `f` where the crate expects them (before the end blocks).
        tar.truncate(tar.len() - 1024);
        tar.extend_from_slice(&data);
        tar.resize(tar.len().next_multiple_of(512), 0);
        tar.extend_from_slice(&tar_of(&[("g", b'0', b"x")]));
        assert_eq!(names(&tar).unwrap(), ["f", "g"]);
    }

    #[test]
    fn refusals_name_the_limit() {
        let big = vec![b'a'; (MAX_NAME + 1) as usize];
        let tar = tar_of(&[("././@LongLink", b'L', &big), ("x", b'0', b"")]);
        let err = names(&tar).unwrap_err().to_string();
        assert!(
            err.contains("GNU long name header declares 64.0 KiB") || err.contains("65537 bytes"),
            "{err}"
        );
        let ok = vec![b'a'; MAX_NAME as usize];
        let tar = tar_of(&[("././@LongLink", b'L', &ok), ("x", b'0', b"")]);
        assert_eq!(names(&tar).unwrap()[0].len(), MAX_NAME as usize);
    }
}
