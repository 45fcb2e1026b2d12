//! Layer blobs: a tar (from a file or a [`Tree`]) gzip-compressed without a timestamp, with
//! both digests computed in the same pass: the `diff_id` (sha256 of the uncompressed tar,
//! what `rootfs.diff_ids` and Docker's layer store use) and the blob digest (sha256 of the
//! gzip bytes, what manifests and `blobs/sha256/` use).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::archive::{write_tar, TarOptions, Tree};
use crate::digest::Digest;
use anyhow::Context;
use flate2::{Compression, GzBuilder};

/// gzip level of every layer. Fixed: the level is part of the bytes, so changing it changes
/// every digest builder has ever produced.
const GZIP_LEVEL: u32 = 6;

/// A compressed layer on disk and its digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// The gzip file.
    pub path: PathBuf,
    /// Digest of the gzip bytes.
    pub digest: Digest,
    /// Size of the gzip bytes.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
}

pub(crate) use crate::digest::HashWriter;

/// Digest and size of a file.
pub(crate) fn file_digest(path: &Path) -> anyhow::Result<(Digest, u64)> {
    if !std::fs::metadata(path)
        .with_context(|| format!("could not open `{}`", path.display()))?
        .is_file()
    {
        anyhow::bail!("`{}` is not a regular file", path.display());
    }
    let mut file =
        File::open(path).with_context(|| format!("could not open `{}`", path.display()))?;
    let mut w = HashWriter::new(std::io::sink());
    std::io::copy(&mut file, &mut w)
        .with_context(|| format!("could not read `{}`", path.display()))?;
    let (_, digest, size) = w.finish();
    Ok((digest, size))
}

/// Feeds the compressor fixed-size chunks. The deflate output of flate2's backend depends
/// on how the input is split into `write` calls, so without this the same tar written by
/// different code paths (a tree, a file copy) would give different blobs.
pub(crate) struct Rechunk<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl<W: Write> Rechunk<W> {
    pub(crate) fn new(inner: W) -> Self {
        Rechunk {
            inner,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    /// Writes what is buffered and returns the inner writer.
    pub(crate) fn finish(mut self) -> std::io::Result<W> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for Rechunk<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(n)
    }

    /// Does not pass a flush on: a flush would end a deflate block and change the bytes.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Pipeline = HashWriter<Rechunk<flate2::write::GzEncoder<HashWriter<BufWriter<File>>>>>;

fn pipeline(dst: &Path) -> anyhow::Result<Pipeline> {
    let file =
        File::create(dst).with_context(|| format!("could not create `{}`", dst.display()))?;
    let gz = GzBuilder::new().mtime(0).operating_system(255).write(
        HashWriter::new(BufWriter::new(file)),
        Compression::new(GZIP_LEVEL),
    );
    Ok(HashWriter::new(Rechunk::new(gz)))
}

fn finish(p: Pipeline, dst: &Path) -> anyhow::Result<LayerBlob> {
    let (chunks, diff_id, uncompressed_size) = p.finish();
    let inner = chunks
        .finish()
        .and_then(|gz| gz.finish())
        .with_context(|| format!("could not write `{}`", dst.display()))?;
    let (buf, digest, size) = inner.finish();
    let file = buf
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("could not write `{}`", dst.display()))?;
    file.sync_all()
        .with_context(|| format!("could not write `{}`", dst.display()))?;
    Ok(LayerBlob {
        path: dst.to_path_buf(),
        digest,
        size,
        diff_id,
        uncompressed_size,
    })
}

/// Compresses an existing tar file into `dst`.
pub fn compress_tar_file(src: &Path, dst: &Path) -> anyhow::Result<LayerBlob> {
    let mut input =
        File::open(src).with_context(|| format!("could not open `{}`", src.display()))?;
    let mut p = pipeline(dst)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input
            .read(&mut buf)
            .with_context(|| format!("could not read `{}`", src.display()))?;
        if n == 0 {
            break;
        }
        p.write_all(&buf[..n])
            .with_context(|| format!("could not write `{}`", dst.display()))?;
    }
    finish(p, dst)
}

/// Writes `tree` as an OCI layer tar (plain names, no root entry, every mtime `mtime`) and
/// compresses it into `dst`.
pub fn compress_tree(tree: &Tree, mtime: u64, dst: &Path) -> anyhow::Result<LayerBlob> {
    let p = pipeline(dst)?;
    let p = write_tar(tree, p, &TarOptions::oci(mtime))
        .with_context(|| format!("could not write layer `{}`", dst.display()))?;
    finish(p, dst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::FileSource;
    use flate2::read::GzDecoder;

    #[test]
    fn digests_match_the_bytes_and_are_stable() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = Tree::new();
        tree.add_file(
            "usr/bin/x",
            0o755,
            FileSource::Bytes(b"hello".to_vec().into()),
        )
        .unwrap();
        let a = compress_tree(&tree, 1_700_000_000, &dir.path().join("a.gz")).unwrap();
        let b = compress_tree(&tree, 1_700_000_000, &dir.path().join("b.gz")).unwrap();
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.diff_id, b.diff_id);

        let gz = std::fs::read(&a.path).unwrap();
        assert_eq!(Digest::of(&gz), a.digest);
        assert_eq!(gz.len() as u64, a.size);
        // No timestamp in the gzip header.
        assert_eq!(&gz[4..8], &[0, 0, 0, 0]);
        let mut tar = Vec::new();
        GzDecoder::new(&gz[..]).read_to_end(&mut tar).unwrap();
        assert_eq!(Digest::of(&tar), a.diff_id);
        assert_eq!(tar.len() as u64, a.uncompressed_size);

        // Compressing the same tar from a file gives the same blob.
        let raw = dir.path().join("layer.tar");
        std::fs::write(&raw, &tar).unwrap();
        let c = compress_tar_file(&raw, &dir.path().join("c.gz")).unwrap();
        assert_eq!(c.digest, a.digest);
        assert_eq!(c.diff_id, a.diff_id);
        assert_eq!(file_digest(&raw).unwrap().0, a.diff_id);

        let other = compress_tree(&tree, 1_700_000_001, &dir.path().join("d.gz")).unwrap();
        assert_ne!(other.diff_id, a.diff_id);
    }
}
