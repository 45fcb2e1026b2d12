//! `builder inspect` on hostile archives (issue 11, item 9), without an engine: each input is
//! built here (huge declared lengths compress to kilobytes, huge files are sparse), the real
//! binary runs under an address-space ceiling, and it must end with a clear error (exit 2)
//! naming the member and the limit, never an abort (134) or a kill.
//!
//! The ceiling is [`CEILING_MIB`] of address space (`ulimit -v`), a stricter bound than
//! resident memory. glibc reserves 64 MiB of address space per malloc arena (one per busy
//! thread, the tokio runtime has one per core), which makes an address-space ceiling depend
//! on the core count, so the tests run with `MALLOC_ARENA_MAX=1`: then a good .deb inspects
//! in 48 MiB and every input here in 128 MiB (debug binary, measured with `ulimit -v`).

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{builder, text};
use sha2::{Digest, Sha256};

/// Address space `builder inspect` may use in these tests.
const CEILING_MIB: u64 = 256;
/// 1.5 GiB: the length the review's hostile headers declared.
const HUGE: u64 = 1536 << 20;

/// Runs `builder inspect ARGS` under the ceiling.
fn inspect_limited(args: &[&Path]) -> (Output, Duration) {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -v {} && exec \"$@\"", CEILING_MIB << 10))
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_builder"))
        .arg("inspect")
        .args(args);
    // The helper's environment, without its program.
    let b = builder();
    for (k, v) in b.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env("MALLOC_ARENA_MAX", "1");
    let start = Instant::now();
    let out = cmd.output().expect("could not run builder under sh");
    (out, start.elapsed())
}

/// Asserts a clean refusal: exit 2 and every `needles` in stderr.
fn assert_refused(file: &Path, needles: &[&str]) -> String {
    let (out, took) = inspect_limited(&[file]);
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}: expected exit 2 (bad input) in {took:?}, got {:?}\nstderr: {err}\nstdout: {}",
        file.display(),
        out.status,
        text(&out.stdout)
    );
    for n in needles {
        assert!(err.contains(n), "{}: `{n}` not in: {err}", file.display());
    }
    assert!(!err.contains("panicked"), "{err}");
    err
}

// ---- building archives ----

fn header(name: &str, kind: u8, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(size);
    h.set_mode(if kind == b'5' { 0o755 } else { 0o644 });
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_cksum();
    h
}

/// Writes `n` zero bytes.
fn zeros(w: &mut (impl Write + ?Sized), mut n: u64) {
    let block = vec![0u8; 1 << 20];
    while n > 0 {
        let k = n.min(block.len() as u64) as usize;
        w.write_all(&block[..k]).unwrap();
        n -= k as u64;
    }
}

/// One tar entry: header, `size` bytes of `fill` (zeros when empty), padding.
fn entry(w: &mut (impl Write + ?Sized), name: &str, kind: u8, size: u64, fill: &[u8]) {
    w.write_all(header(name, kind, size).as_bytes()).unwrap();
    if fill.is_empty() {
        zeros(w, size);
    } else {
        assert_eq!(fill.len() as u64, size);
        w.write_all(fill).unwrap();
    }
    zeros(w, (512 - size % 512) % 512);
}

fn end(w: &mut (impl Write + ?Sized)) {
    zeros(w, 1024);
}

/// A zstd stream of what `f` writes (zstd stores runs of zeros as 4-byte RLE blocks, so a
/// 1.5 GiB header compresses to about 50 KB, like the review's input).
fn zst(f: impl FnOnce(&mut dyn Write)) -> Vec<u8> {
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    f(&mut e);
    e.finish().unwrap()
}

fn gz(f: impl FnOnce(&mut dyn Write)) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    f(&mut e);
    e.finish().unwrap()
}

const CONTROL: &str = "Package: hostile\nVersion: 1.0\nArchitecture: all\n\
                       Maintainer: A <a@example.com>\nDescription: test\n";

/// A control.tar.gz holding `control` (and nothing else).
fn control_tar_gz(control: &str) -> Vec<u8> {
    gz(|w| {
        entry(w, "./", b'5', 0, b"");
        entry(
            w,
            "./control",
            b'0',
            control.len() as u64,
            control.as_bytes(),
        );
        end(w);
    })
}

fn ar_member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    let h = format!(
        "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
        0,
        0,
        0,
        100644,
        data.len()
    );
    assert_eq!(h.len(), 60);
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(b'\n');
    }
}

/// A .deb of the given members after `debian-binary`.
fn deb(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    ar_member(&mut out, "debian-binary", b"2.0\n");
    for (name, data) in members {
        ar_member(&mut out, name, data);
    }
    out
}

fn good_data_tar_zst() -> Vec<u8> {
    zst(|w| {
        entry(w, "./", b'5', 0, b"");
        entry(w, "./usr/", b'5', 0, b"");
        entry(w, "./usr/hello", b'0', 6, b"hello\n");
        end(w);
    })
}

fn good_deb() -> Vec<u8> {
    deb(&[
        ("control.tar.gz", &control_tar_gz(CONTROL)),
        ("data.tar.zst", &good_data_tar_zst()),
    ])
}

/// A .deb whose data.tar.zst starts with an extension header of `kind` declaring [`HUGE`]
/// bytes, all present.
fn deb_with_huge_extension(kind: u8, name: &str) -> Vec<u8> {
    let data = zst(|w| {
        entry(w, name, kind, HUGE, b"");
        entry(w, "./x", b'0', 0, b"");
        end(w);
    });
    deb(&[
        ("control.tar.gz", &control_tar_gz(CONTROL)),
        ("data.tar.zst", &data),
    ])
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

// ---- image tars ----

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A valid one-layer OCI image tar; `extra` writes more entries before `index.json`.
fn image_tar(path: &Path, extra: impl FnOnce(&mut std::fs::File)) {
    let layer_tar = {
        let mut v = Vec::new();
        entry(&mut v, "hello", b'0', 6, b"hello\n");
        end(&mut v);
        v
    };
    let layer = gz(|w| w.write_all(&layer_tar).unwrap());
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}}}}"#,
        sha256_hex(&layer_tar)
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{}","size":{}}}]}}"#,
        sha256_hex(config.as_bytes()),
        config.len(),
        sha256_hex(&layer),
        layer.len()
    );
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":{}}}]}}"#,
        sha256_hex(manifest.as_bytes()),
        manifest.len()
    );
    let mut f = std::fs::File::create(path).unwrap();
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    entry(&mut f, "oci-layout", b'0', layout.len() as u64, layout);
    for blob in [config.as_bytes(), manifest.as_bytes(), &layer[..]] {
        let name = format!("blobs/sha256/{}", sha256_hex(blob));
        entry(&mut f, &name, b'0', blob.len() as u64, blob);
    }
    extra(&mut f);
    entry(
        &mut f,
        "index.json",
        b'0',
        index.len() as u64,
        index.as_bytes(),
    );
    end(&mut f);
}

// ---- tests ----

#[test]
fn a_good_deb_and_image_are_read_under_the_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "good.deb", &good_deb());
    let (out, _) = inspect_limited(&[&p]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("./usr/hello"));
    let img = dir.path().join("good.tar");
    image_tar(&img, |_| {});
    let (out, _) = inspect_limited(&[&img]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("platform  linux/amd64"));
}

#[test]
fn a_gnu_long_name_of_1_5_gib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = deb_with_huge_extension(b'L', "././@LongLink");
    assert!(bytes.len() < 100 << 10, "{} bytes", bytes.len());
    let p = write(dir.path(), "longname.deb", &bytes);
    assert_refused(
        &p,
        &[
            "longname.deb",
            "data.tar.zst",
            "GNU long name header declares 1.5 GiB",
            "at most 64 KiB",
        ],
    );
}

#[test]
fn a_gnu_long_link_of_1_5_gib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "longlink.deb",
        &deb_with_huge_extension(b'K', "././@LongLink"),
    );
    assert_refused(
        &p,
        &["data.tar.zst", "GNU long link header", "at most 64 KiB"],
    );
}

#[test]
fn a_pax_header_of_1_5_gib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "pax.deb",
        &deb_with_huge_extension(b'x', "./PaxHeaders/x"),
    );
    assert_refused(
        &p,
        &[
            "data.tar.zst",
            "PAX header declares 1.5 GiB",
            "at most 1 MiB",
        ],
    );
}

#[test]
fn a_huge_long_name_in_control_tar_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let control = zst(|w| {
        entry(w, "././@LongLink", b'L', HUGE, b"");
        entry(w, "./control", b'0', 0, b"");
        end(w);
    });
    let p = write(
        dir.path(),
        "control-longname.deb",
        &deb(&[
            ("control.tar.zst", &control),
            ("data.tar.zst", &good_data_tar_zst()),
        ]),
    );
    assert_refused(&p, &["control.tar.zst", "GNU long name header", "64 KiB"]);
}

#[test]
fn a_gnu_sparse_entry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = zst(|w| {
        entry(w, "./sparse", b'S', 0, b"");
        end(w);
    });
    let p = write(
        dir.path(),
        "sparse.deb",
        &deb(&[
            ("control.tar.gz", &control_tar_gz(CONTROL)),
            ("data.tar.zst", &data),
        ]),
    );
    assert_refused(&p, &["data.tar.zst", "sparse"]);
}

#[test]
fn two_hundred_thousand_control_fields_are_read_in_linear_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut control = String::from(CONTROL);
    for i in 0..200_000 {
        control.push_str(&format!("X-F{i}: v\n"));
    }
    let p = write(
        dir.path(),
        "fields.deb",
        &deb(&[
            ("control.tar.gz", &control_tar_gz(&control)),
            ("data.tar.zst", &good_data_tar_zst()),
        ]),
    );
    let (out, took) = inspect_limited(&[&p]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Quadratic took minutes; linear takes well under a second (debug build, slow CI: 30 s).
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // A duplicate at the end is still found.
    control.push_str("x-f7: again\n");
    let p = write(
        dir.path(),
        "dup.deb",
        &deb(&[
            ("control.tar.gz", &control_tar_gz(&control)),
            ("data.tar.zst", &good_data_tar_zst()),
        ]),
    );
    assert_refused(
        &p,
        &["dup.deb", "line 200006", "field `x-f7` appears twice"],
    );
}

#[test]
fn an_oversized_control_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut control = String::from(CONTROL);
    control.push_str("Description-Long: x\n");
    while control.len() <= 5 << 20 {
        control.push_str(" .................................................................\n");
    }
    let p = write(
        dir.path(),
        "bigcontrol.deb",
        &deb(&[
            ("control.tar.gz", &control_tar_gz(&control)),
            ("data.tar.zst", &good_data_tar_zst()),
        ]),
    );
    assert_refused(&p, &["control.tar.gz", "`control` file", "at most 4 MiB"]);
}

#[test]
fn truncated_and_inconsistent_ar_archives_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_deb();
    // Cut inside the data member: the ar header's size runs past the end of the file.
    let p = write(dir.path(), "cut.deb", &good[..good.len() - 20]);
    assert_refused(&p, &["cut.deb", "is truncated", "data.tar.zst"]);
    // A member size far larger than the file.
    let mut big = good.clone();
    let at = big.windows(12).position(|w| w == b"data.tar.zst").unwrap();
    big[at + 48..at + 58].copy_from_slice(b"9999999999");
    let p = write(dir.path(), "bigmember.deb", &big);
    assert_refused(&p, &["bigmember.deb", "9999999999 bytes"]);
    // Too many members.
    let mut many = good.clone();
    for i in 0..100_000 {
        ar_member(&mut many, &format!("_x{i}"), b"");
    }
    let p = write(dir.path(), "members.deb", &many);
    assert_refused(&p, &["members.deb", "at most 1024 members"]);
    // A data.tar cut short inside its compressed stream (the ar sizes agree).
    let data = good_data_tar_zst();
    let p = write(
        dir.path(),
        "shortzst.deb",
        &deb(&[
            ("control.tar.gz", &control_tar_gz(CONTROL)),
            ("data.tar.zst", &data[..data.len() / 2]),
        ]),
    );
    assert_refused(&p, &["shortzst.deb", "data.tar.zst"]);
}

/// 20,000 entries with 60 KiB names: 1.2 GB of names listed, from a small file.
fn deb_of_many_long_names() -> Vec<u8> {
    let data = zst(|w| {
        for i in 0..20_000u32 {
            let mut name = format!("./{i:08}/").into_bytes();
            name.resize(60 << 10, b'a');
            entry(w, "././@LongLink", b'L', name.len() as u64, &name);
            entry(w, "x", b'0', 0, b"");
        }
        end(w);
    });
    deb(&[
        ("control.tar.gz", &control_tar_gz(CONTROL)),
        ("data.tar.zst", &data),
    ])
}

#[test]
fn a_data_tar_of_many_long_names_is_refused_before_it_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "names.deb", &deb_of_many_long_names());
    assert_refused(
        &p,
        &[
            "data.tar.zst",
            "names and link targets pass 64 MiB",
            "at most 64 MiB",
        ],
    );
}

/// An image tar with `index.json` whose header declares [`HUGE`] bytes, all present (as a
/// sparse file).
fn huge_index_tar(p: &Path) {
    let mut f = std::fs::File::create(p).unwrap();
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    entry(&mut f, "oci-layout", b'0', layout.len() as u64, layout);
    f.write_all(header("index.json", b'0', HUGE).as_bytes())
        .unwrap();
    f.write_all(b"[").unwrap();
    let at = f.stream_position().unwrap() - 1;
    f.set_len(at + HUGE + 1024).unwrap();
}

#[test]
fn a_huge_index_json_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("index.tar");
    huge_index_tar(&p);
    assert_refused(&p, &["index.json", "1.5 GiB", "at most 4 MiB"]);
}

#[test]
fn a_deeply_nested_index_json_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nested.tar");
    let mut f = std::fs::File::create(&p).unwrap();
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    entry(&mut f, "oci-layout", b'0', layout.len() as u64, layout);
    let nested = "[".repeat(1 << 20);
    entry(
        &mut f,
        "index.json",
        b'0',
        nested.len() as u64,
        nested.as_bytes(),
    );
    end(&mut f);
    drop(f);
    assert_refused(&p, &["index.json", "is not valid"]);
}

/// 300 unreferenced 4 MiB blobs (a sparse 1.2 GB tar): they are hashed as they stream by and
/// not kept, so the image still inspects under the ceiling.
fn many_blobs_tar(p: &Path) {
    image_tar(p, |f| {
        let size = 4u64 << 20;
        let zeros = vec![0u8; size as usize - 8];
        for i in 0..300u64 {
            let mut h = Sha256::new();
            h.update(i.to_le_bytes());
            h.update(&zeros);
            let name = format!("blobs/sha256/{}", hex::encode(h.finalize()));
            f.write_all(header(&name, b'0', size).as_bytes()).unwrap();
            f.write_all(&i.to_le_bytes()).unwrap();
            // The rest of the blob is a hole of zeros.
            f.seek(SeekFrom::Current(size as i64 - 8)).unwrap();
        }
    });
}

#[test]
fn many_large_blobs_are_streamed_not_held() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("blobs.tar");
    many_blobs_tar(&p);
    let (out, took) = inspect_limited(&[&p]);
    assert!(
        out.status.success(),
        "{:?} in {took:?}: {}",
        out.status,
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("platform  linux/amd64"));
}

fn image_with_huge_pax(p: &Path) {
    image_tar(p, |f| {
        f.write_all(header("PaxHeaders/x", b'x', HUGE).as_bytes())
            .unwrap();
        let at = f.stream_position().unwrap();
        f.set_len(at + HUGE).unwrap();
        f.seek(SeekFrom::Start(at + HUGE)).unwrap();
        entry(f, "x", b'0', 0, b"");
    });
}

#[test]
fn an_image_tar_with_a_huge_pax_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pax.tar");
    image_with_huge_pax(&p);
    assert_refused(
        &p,
        &["pax.tar", "PAX header declares 1.5 GiB", "at most 1 MiB"],
    );
}

/// Writes the hostile inputs above into `$HOSTILE_DUMP` for measuring by hand
/// (`/usr/bin/time -v builder inspect FILE`).
#[test]
#[ignore]
fn dump_hostile_inputs() {
    let Some(dir) = std::env::var_os("HOSTILE_DUMP") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    write(&dir, "good.deb", &good_deb());
    write(
        &dir,
        "longname.deb",
        &deb_with_huge_extension(b'L', "././@LongLink"),
    );
    write(
        &dir,
        "pax.deb",
        &deb_with_huge_extension(b'x', "./PaxHeaders/x"),
    );
    let mut control = String::from(CONTROL);
    for i in 0..200_000 {
        control.push_str(&format!("X-F{i}: v\n"));
    }
    write(
        &dir,
        "fields.deb",
        &deb(&[
            ("control.tar.gz", &control_tar_gz(&control)),
            ("data.tar.zst", &good_data_tar_zst()),
        ]),
    );
    write(&dir, "names.deb", &deb_of_many_long_names());
    image_tar(&dir.join("good.tar"), |_| {});
    huge_index_tar(&dir.join("index.tar"));
    many_blobs_tar(&dir.join("blobs.tar"));
    image_with_huge_pax(&dir.join("pax.tar"));
}

// ---- fuzz corpus ----
//
// A deterministic mutator (xorshift, fixed seed) over valid .debs and an image tar: bit
// flips, bytes set to tar-significant values, octal size fields set huge, blocks cut,
// repeated or inserted, tar checksums fixed up so that the mutation reaches past the header
// check. The library readers must return an error or a value: no panic, and no more than
// [`FUZZ_ALLOC_MAX`] allocated at once by the reading thread.

/// Most bytes one read may hold at once.
const FUZZ_ALLOC_MAX: usize = 256 << 20;

mod alloc_meter {
    //! Counts the bytes allocated by the current thread (tests run on several threads).
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Meter;

    thread_local! {
        static NOW: Cell<usize> = const { Cell::new(0) };
        static PEAK: Cell<usize> = const { Cell::new(0) };
    }

    fn add(n: usize) {
        let _ = NOW.try_with(|c| {
            let v = c.get().saturating_add(n);
            c.set(v);
            let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
        });
    }

    fn sub(n: usize) {
        let _ = NOW.try_with(|c| c.set(c.get().saturating_sub(n)));
    }

    unsafe impl GlobalAlloc for Meter {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            add(l.size());
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            sub(l.size());
            unsafe { System.dealloc(p, l) }
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            add(l.size());
            unsafe { System.alloc_zeroed(l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
            sub(l.size());
            add(new);
            unsafe { System.realloc(p, l, new) }
        }
    }

    /// Runs `f` and returns its result with the most bytes this thread held above the start.
    pub fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let base = NOW.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let out = f();
        (out, PEAK.with(Cell::get) - base)
    }
}

#[global_allocator]
static METER: alloc_meter::Meter = alloc_meter::Meter;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Recomputes the checksum of every 512-byte block of `tar` that looks like a header.
fn fix_checksums(tar: &mut [u8]) {
    for block in tar.chunks_exact_mut(512) {
        if &block[257..262] == b"ustar" {
            block[148..156].fill(b' ');
            let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
            block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        }
    }
}

fn mutate(rng: &mut XorShift, v: &mut Vec<u8>) {
    if v.is_empty() {
        v.push(0);
    }
    match rng.below(8) {
        0 => {
            let i = rng.below(v.len());
            v[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(v.len());
            v[i] = *b"\0\xff07xLKSg5 \n".get(rng.below(12)).unwrap_or(&0);
        }
        2 => {
            // A huge octal number, where a tar size or an ar size may be.
            let i = rng.below(v.len());
            let huge = b"77777777777";
            let end = (i + huge.len()).min(v.len());
            v[i..end].copy_from_slice(&huge[..end - i]);
        }
        3 => v.truncate(rng.below(v.len())),
        4 => {
            let i = rng.below(v.len());
            let n = rng.below(1024).min(v.len() - i);
            v.drain(i..i + n);
        }
        5 => {
            let i = rng.below(v.len());
            let n = rng.below(1024).min(v.len() - i);
            let chunk = v[i..i + n].to_vec();
            let at = rng.below(v.len());
            v.splice(at..at, chunk);
        }
        6 => {
            let i = rng.below(v.len());
            let n = rng.below(64);
            v.splice(i..i, std::iter::repeat_n(rng.next() as u8, n));
        }
        _ => {
            let i = rng.below(v.len());
            v[i] = rng.next() as u8;
        }
    }
}

fn plain_tar(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    for (name, kind, data) in entries {
        entry(&mut v, name, *kind, data.len() as u64, data);
    }
    end(&mut v);
    v
}

#[test]
fn fuzzed_archives_give_errors_not_panics_and_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fuzz");
    let control = plain_tar(&[
        ("./", b'5', b""),
        ("./control", b'0', CONTROL.as_bytes()),
        (
            "./md5sums",
            b'0',
            b"b1946ac92492d2347c6235b4d2611184  usr/hello\n",
        ),
        ("./conffiles", b'0', b"/etc/x\n"),
    ]);
    let long = format!("./usr/{}", "n".repeat(300));
    let data = plain_tar(&[
        ("./", b'5', b""),
        ("./usr/", b'5', b""),
        ("././@LongLink", b'L', long.as_bytes()),
        ("./usr/long", b'0', b"hello\n"),
        ("PaxHeaders/x", b'x', b"10 size=6\n"),
        ("./usr/hello", b'0', b"hello\n"),
        ("./usr/link", b'2', b""),
    ]);
    let image = dir.path().join("image.tar");
    image_tar(&image, |_| {});
    let image = std::fs::read(&image).unwrap();
    let compressed = good_deb();

    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    let (mut tried, mut errors, mut accepted) = (0, 0, 0);
    let mut failures = Vec::new();
    while tried < 4000 && start.elapsed() < Duration::from_secs(60) {
        tried += 1;
        let kind = tried % 4;
        let mut bytes = match kind {
            // Mutate a tar inside an uncompressed .deb, checksums fixed up.
            0 | 1 => {
                let (mut c, mut d) = (control.clone(), data.clone());
                let t = if kind == 0 { &mut c } else { &mut d };
                for _ in 0..1 + rng.below(3) {
                    mutate(&mut rng, t);
                }
                if rng.below(4) != 0 {
                    fix_checksums(t);
                }
                deb(&[("control.tar", &c), ("data.tar", &d)])
            }
            2 => compressed.clone(),
            _ => image.clone(),
        };
        if kind >= 2 || rng.below(4) == 0 {
            for _ in 0..1 + rng.below(3) {
                mutate(&mut rng, &mut bytes);
            }
            if kind == 3 && rng.below(2) == 0 {
                fix_checksums(&mut bytes);
            }
        }
        std::fs::write(&file, &bytes).unwrap();
        let (result, peak) = alloc_meter::peak(|| {
            std::panic::catch_unwind(|| {
                if kind == 3 {
                    builder::oci::inspect::inspect(&file).map(|_| ())
                } else {
                    builder::deb::read_deb(&file)
                        .map(|_| ())
                        .map_err(anyhow::Error::from)
                }
            })
        });
        let keep = |why: String, failures: &mut Vec<String>| {
            let saved = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{tried}"));
            std::fs::write(&saved, &bytes).unwrap();
            failures.push(format!("{why}: input kept at {}", saved.display()));
        };
        match result {
            Err(_) => keep(format!("mutant {tried} panicked"), &mut failures),
            Ok(Ok(())) => accepted += 1,
            Ok(Err(_)) => errors += 1,
        }
        if peak > FUZZ_ALLOC_MAX {
            keep(format!("mutant {tried} held {peak} bytes"), &mut failures);
        }
    }
    eprintln!("fuzz: {tried} inputs, {errors} errors, {accepted} accepted");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(tried >= 500, "only {tried} inputs in the time allowed");
}
