//! sha256 helpers shared by every stage: artifacts are identified by the sha256 of their
//! bytes everywhere (manifest, smoke report, promotion checks).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use sha2::{Digest, Sha256};

/// Lowercase hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("could not read `{}`", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)
        .with_context(|| format!("could not read `{}`", path.display()))?;
    Ok(hex::encode(h.finalize()))
}

/// Lowercase hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A writer that hashes (sha256) and counts what passes through it, for archives whose
/// digest is needed as they are written (.deb files, OCI blobs, rootfs tars).
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The wrapped writer, `sha256:<hex>` of everything written, and its length.
    pub fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.count)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
