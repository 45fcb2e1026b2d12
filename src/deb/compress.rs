//! Compressors and decompressors for the tar members of a .deb.
//!
//! Levels match dpkg-deb's defaults (gzip 9, xz 6, zstd 3). Every encoder is multi-threaded
//! and byte-stable whatever the number of threads:
//! - xz: liblzma's multi-threaded encoder always (even with one thread), so blocks are cut
//!   at the preset's fixed block size (3 × dictionary) and the bytes never depend on cores;
//! - zstd: libzstd with at least one worker; its output is the same for any worker count ≥ 1;
//! - gzip: [`ParGzEncoder`], pigz's scheme: fixed 512 KiB chunks deflated in parallel, each
//!   primed with the previous 32 KiB as dictionary and ended with a sync flush, so the
//!   concatenation is one ordinary deflate stream; header without name or timestamp.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, FlushCompress, Status};

use crate::recipe::Compression;

pub const GZIP_LEVEL: u32 = 9;
pub const XZ_LEVEL: u32 = 6;
pub const ZSTD_LEVEL: i32 = 3;

const GZ_CHUNK: usize = 512 << 10;
const GZ_WINDOW: usize = 32 << 10;

/// How long one call into liblzma's multi-threaded encoder may wait for a worker.
const XZ_POLL_MS: u32 = 100;

/// Worker threads for compressors: the machine's parallelism.
pub(super) fn threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// A compressing writer; `finish` flushes the trailer and returns the inner writer.
pub(super) enum Encoder<W: Write> {
    None(W),
    Gzip(ParGzEncoder<W>),
    Xz(XzWriter<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub(super) fn new(c: Compression, w: W) -> io::Result<Self> {
        Ok(match c {
            Compression::None => Encoder::None(w),
            Compression::Gzip => Encoder::Gzip(ParGzEncoder::new(w, GZIP_LEVEL, threads())),
            Compression::Xz => {
                let stream = liblzma::stream::MtStreamBuilder::new()
                    .preset(XZ_LEVEL)
                    .check(liblzma::stream::Check::Crc64)
                    .threads(threads())
                    // lzma_code returns at least this often, so a Ctrl-C is seen while every
                    // worker is busy with a block; the output does not depend on it.
                    .timeout_ms(XZ_POLL_MS)
                    .encoder()
                    .map_err(io::Error::other)?;
                Encoder::Xz(XzWriter::new(stream, w))
            }
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(w, ZSTD_LEVEL)?;
                e.include_checksum(true)?;
                e.multithread(threads())?;
                Encoder::Zstd(e)
            }
        })
    }

    pub(super) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// xz through liblzma's multi-threaded stream. Not liblzma's `XzEncoder`: dropping that one
/// finishes the stream, which compresses all queued input (a 24 MiB block per worker at
/// preset 6: many seconds) for output nobody keeps, so a Ctrl-C or an error while packaging
/// waited for it. Dropping this one ends the stream at once (`lzma_end` stops the workers),
/// and a write waiting on busy workers gives way to Ctrl-C.
pub(super) struct XzWriter<W: Write> {
    stream: liblzma::stream::Stream,
    out: Vec<u8>,
    w: W,
}

impl<W: Write> XzWriter<W> {
    fn new(stream: liblzma::stream::Stream, w: W) -> Self {
        XzWriter {
            stream,
            out: Vec::with_capacity(64 << 10),
            w,
        }
    }

    fn dump(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.w.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        loop {
            self.dump()?;
            let status = self
                .stream
                .process_vec(&[], &mut self.out, liblzma::stream::Action::Finish)
                .map_err(io::Error::other)?;
            if status == liblzma::stream::Status::StreamEnd {
                break;
            }
            crate::interrupt::check_unretried()?;
        }
        self.dump()?;
        Ok(self.w)
    }
}

impl<W: Write> Write for XzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            self.dump()?;
            let before = self.stream.total_in();
            self.stream
                .process_vec(buf, &mut self.out, liblzma::stream::Action::Run)
                .map_err(io::Error::other)?;
            let taken = (self.stream.total_in() - before) as usize;
            if taken > 0 || buf.is_empty() {
                return Ok(taken);
            }
            crate::interrupt::check_unretried()?;
        }
    }

    /// Writes out what is compressed so far; the stream itself is not flushed (a full flush
    /// would change the bytes).
    fn flush(&mut self) -> io::Result<()> {
        self.dump()?;
        self.w.flush()
    }
}

/// A decompressing reader for a member compressed with `c`. Concatenated streams are read.
pub(super) fn decoder<'a, R: Read + 'a>(c: Compression, r: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    })
}

struct GzJob {
    data: Vec<u8>,
    dict: Option<Vec<u8>>,
    last: bool,
    reply: SyncSender<io::Result<Vec<u8>>>,
}

/// Parallel, deterministic gzip writer (see the module header for the scheme).
pub(super) struct ParGzEncoder<W: Write> {
    out: Option<W>,
    header: Option<[u8; 10]>,
    buf: Vec<u8>,
    chunk: usize,
    prev_tail: Option<Vec<u8>>,
    crc: crc32fast::Hasher,
    total: u64,
    jobs: Option<Sender<GzJob>>,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    max_pending: usize,
    workers: Vec<JoinHandle<()>>,
}

impl<W: Write> ParGzEncoder<W> {
    pub(super) fn new(out: W, level: u32, threads: u32) -> Self {
        Self::with_chunk(out, level, threads, GZ_CHUNK)
    }

    /// Like [`ParGzEncoder::new`] with another chunk size (the output depends on it).
    pub(super) fn with_chunk(out: W, level: u32, threads: u32, chunk: usize) -> Self {
        let chunk = chunk.max(GZ_WINDOW);
        let (tx, rx) = mpsc::channel::<GzJob>();
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads.max(1))
            .map(|_| {
                let rx = Arc::clone(&rx);
                std::thread::spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let result = deflate_chunk(level, &job.data, job.dict.as_deref(), job.last);
                    let _ = job.reply.send(result);
                })
            })
            .collect();
        let xfl = match level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        ParGzEncoder {
            out: Some(out),
            // gzip header: no name, no timestamp (mtime 0), OS = Unix.
            header: Some([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3]),
            buf: Vec::with_capacity(chunk),
            chunk,
            prev_tail: None,
            crc: crc32fast::Hasher::new(),
            total: 0,
            jobs: Some(tx),
            pending: VecDeque::new(),
            max_pending: 2 * threads.max(1) as usize + 1,
            workers,
        }
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
        let tail_start = data.len().saturating_sub(GZ_WINDOW);
        let next_tail = data[tail_start..].to_vec();
        let dict = self.prev_tail.replace(next_tail);
        let (reply, result) = mpsc::sync_channel(1);
        let jobs = self.jobs.as_ref().ok_or_else(closed)?;
        jobs.send(GzJob {
            data,
            dict,
            last,
            reply,
        })
        .map_err(|_| closed())?;
        self.pending.push_back(result);
        while self.pending.len() > self.max_pending {
            self.drain_one()?;
        }
        Ok(())
    }

    fn drain_one(&mut self) -> io::Result<()> {
        if let Some(rx) = self.pending.pop_front() {
            let bytes = rx.recv().map_err(|_| closed())??;
            let out = self.out.as_mut().ok_or_else(closed)?;
            if let Some(h) = self.header.take() {
                out.write_all(&h)?;
            }
            out.write_all(&bytes)?;
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.drain_one()?;
        }
        let crc = self.crc.clone().finalize();
        let total = self.total;
        let mut out = self.out.take().ok_or_else(closed)?;
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&(total as u32).to_le_bytes())?;
        Ok(out)
    }
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        self.crc.update(data);
        self.total += n as u64;
        while !data.is_empty() {
            let take = (self.chunk - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.chunk {
                self.submit(false)?;
            }
        }
        Ok(n)
    }

    /// Chunks are cut at fixed offsets for byte-stable output, so a flush cannot force one.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParGzEncoder<W> {
    fn drop(&mut self) {
        // Closing the job channel ends the workers once they finish their current chunk.
        self.jobs = None;
        self.pending.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn closed() -> io::Error {
    io::Error::other("the gzip worker threads stopped unexpectedly")
}

/// Raw-deflates one chunk: primed with `dict`, ended with a sync flush (or the final block).
fn deflate_chunk(level: u32, data: &[u8], dict: Option<&[u8]>, last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if let Some(d) = dict {
        c.set_dictionary(d).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 << 10));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == data.len();
        match status {
            Status::StreamEnd => break,
            _ if !last && all_in && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    Ok(out)
}
