use std::io::{Read, Write};
use std::process::Command;
use std::sync::Arc;

use super::compress::{Encoder, ParGzEncoder};
use super::control::render_control;
use super::*;
use crate::archive::FileSource;

fn fields() -> Vec<(String, String)> {
    [
        ("Package", "hello"),
        ("Version", "1.0-1"),
        ("Architecture", "amd64"),
        ("Maintainer", "Ops <ops@example.com>"),
        (
            "Description",
            "says hello\n A longer text.\n .\n Second paragraph.",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub(crate) fn spec(compression: Compression) -> DebSpec {
    let mut data = Tree::new();
    let b = |s: &str| FileSource::Bytes(Arc::from(s.as_bytes()));
    data.add_file("usr/bin/hello", 0o755, b("#!/bin/sh\necho hello\n"))
        .unwrap();
    data.add_file("etc/hello.conf", 0o644, b("greeting = hi\n"))
        .unwrap();
    data.add_symlink("usr/bin/hi", "hello").unwrap();
    DebSpec {
        control: fields(),
        data,
        conffiles: vec!["/etc/hello.conf".into()],
        scripts: vec![(Script::Postinst, b"#!/bin/sh\nset -e\nexit 0\n".to_vec())],
        compression,
        mtime: 1_700_000_000,
    }
}

#[test]
fn control_round_trip_and_installed_size_position() {
    let text = render_control(&fields(), 42).unwrap();
    assert!(text.contains("Maintainer: Ops <ops@example.com>\nInstalled-Size: 42\nDescription"));
    let parsed = parse_control(&text).unwrap();
    let mut want = fields();
    want.insert(4, ("Installed-Size".into(), "42".into()));
    assert_eq!(parsed, want);

    let no_maint: Vec<_> = fields()
        .into_iter()
        .filter(|(k, _)| k != "Maintainer")
        .collect();
    let text = render_control(&no_maint, 7).unwrap();
    assert!(text.contains("Architecture: amd64\nInstalled-Size: 7\n"));
}

#[test]
fn control_errors_are_clear() {
    let mut f = fields();
    f.push(("Installed-Size".into(), "1".into()));
    assert!(render_control(&f, 1).is_err());
    let mut f = fields();
    f[4].1 = "short\nnot indented".into();
    let err = render_control(&f, 1).unwrap_err().to_string();
    assert!(err.contains("must start with a space"), "{err}");
    for (text, needle) in [
        (" cont\n", "continuation line before any field"),
        ("Package: a\nnocolon\n", "line 2"),
        ("Package: a\n\nPackage: b\n", "second stanza"),
        ("Version: 1\n", "`Package` field is missing"),
        ("Package: a\nPackage: b\n", "appears twice"),
        ("", "empty"),
    ] {
        let err = parse_control(text).unwrap_err().to_string();
        assert!(err.contains(needle), "{text:?}: {err}");
    }
}

#[test]
fn ar_headers_are_dpkg_style() {
    let mut out = Vec::new();
    ar::write_member(&mut out, "debian-binary", 1_700_000_000, b"2.0\n").unwrap();
    assert_eq!(
        &out[..60],
        b"debian-binary   1700000000  0     0     100644  4         `\n"
    );
    let mut odd = Vec::new();
    ar::write_member(&mut odd, "x", 0, b"abc").unwrap();
    assert_eq!(odd.len(), 60 + 4);
    assert_eq!(odd.last(), Some(&b'\n'));
    assert!(ar::write_member(&mut odd, "a-very-long-member", 0, b"").is_err());
}

fn pseudo_random_text(n: usize) -> Vec<u8> {
    let words = ["alpha ", "beta ", "gamma ", "delta\n", "epsilon ", "zeta "];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 6) as usize].as_bytes());
        if x % 5 == 0 {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(n);
    out
}

#[test]
fn parallel_gzip_is_valid_and_independent_of_thread_count() {
    let input = pseudo_random_text(3_300_000);
    let compress = |threads| {
        let mut e = ParGzEncoder::new(Vec::new(), 9, threads);
        // Odd write sizes cross chunk boundaries.
        for piece in input.chunks(77_777) {
            e.write_all(piece).unwrap();
        }
        e.finish().unwrap()
    };
    let one = compress(1);
    assert_eq!(one, compress(3));
    assert_eq!(&one[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&one[4..8], &[0, 0, 0, 0], "gzip mtime must be 0");
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&one[..])
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, input);
    // GNU gzip agrees (it checks the CRC and length).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.gz");
    std::fs::write(&p, &one).unwrap();
    let st = Command::new("gzip").arg("-t").arg(&p).status().unwrap();
    assert!(st.success());
    // An empty stream is valid too.
    let empty = ParGzEncoder::new(Vec::new(), 9, 2).finish().unwrap();
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&empty[..])
        .read_to_end(&mut back)
        .unwrap();
    assert!(back.is_empty());
}

#[test]
fn every_compression_round_trips() {
    let input = pseudo_random_text(1_000_000);
    for c in [
        Compression::None,
        Compression::Gzip,
        Compression::Xz,
        Compression::Zstd,
    ] {
        let mut e = Encoder::new(c, Vec::new()).unwrap();
        e.write_all(&input).unwrap();
        let packed = e.finish().unwrap();
        let mut back = Vec::new();
        compress::decoder(c, &packed[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, input, "{c:?}");
    }
}

#[test]
fn write_then_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for c in [
        Compression::None,
        Compression::Gzip,
        Compression::Xz,
        Compression::Zstd,
    ] {
        let out = dir.path().join(format!("hello{}.deb", c.extension()));
        let info = write_deb(&spec(c), &out).unwrap();
        assert_eq!(info.size, std::fs::metadata(&out).unwrap().len());
        let got = read_deb(&out).unwrap();
        let ext = c.extension();
        let names: Vec<&str> = got.members.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "debian-binary",
                &format!("control.tar{ext}"),
                &format!("data.tar{ext}")
            ]
        );
        assert_eq!(got.data_compression, c);
        assert_eq!(got.conffiles, ["/etc/hello.conf"]);
        assert_eq!(got.scripts, ["postinst"]);
        assert_eq!(
            got.fields.iter().find(|(k, _)| k == "Installed-Size"),
            Some(&(
                "Installed-Size".to_string(),
                info.installed_size_kib.to_string()
            ))
        );
        let paths: Vec<&str> = got.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/",
                "/etc",
                "/etc/hello.conf",
                "/usr",
                "/usr/bin",
                "/usr/bin/hello",
                "/usr/bin/hi"
            ]
        );
        // The conffile's sum is left out, as dh_md5sums leaves it out.
        let summed: Vec<&str> = got.md5sums.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(summed, ["usr/bin/hello"]);
        let tree = read_data_tree(&out).unwrap();
        assert_eq!(tree.len(), spec(c).data.len());
        // No temp files are left behind.
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".builder")
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}

#[test]
fn writer_refuses_bad_specs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.deb");
    let mut s = spec(Compression::Gzip);
    s.conffiles.push("/etc/missing.conf".into());
    let err = format!("{:#}", write_deb(&s, &out).unwrap_err());
    assert!(err.contains("/etc/missing.conf"), "{err}");
    let mut s = spec(Compression::Gzip);
    s.scripts.push((Script::Prerm, b"echo no shebang".to_vec()));
    let err = format!("{:#}", write_deb(&s, &out).unwrap_err());
    assert!(err.contains("prerm"), "{err}");
    assert!(!out.exists());
}

/// Truncations and bit flips of a valid .deb: the reader returns errors, never panics.
#[test]
fn malformed_debs_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    for c in [Compression::Xz, Compression::Gzip, Compression::Zstd] {
        let good = dir.path().join("good.deb");
        write_deb(&spec(c), &good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let bad = dir.path().join("bad.deb");
        let step = (bytes.len() / 300).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            std::fs::write(&bad, &bytes[..cut]).unwrap();
            assert!(
                read_deb(&bad).is_err(),
                "{c:?}: truncated at {cut} was accepted"
            );
        }
        // Flips inside the compressed members must be caught by the formats' checksums.
        // Only the ar headers' mtime/uid/gid/mode fields, padding bytes and the minor
        // version in debian-binary ("2.x") may legitimately change unnoticed, as may gzip
        // header fields outside its checksum.
        let members = read_deb(&good).unwrap().members;
        let mut tolerated = Vec::new();
        let mut off = 8u64;
        for (_, size) in &members {
            tolerated.push(off + 16..off + 48);
            tolerated.push(off + 60 + size..off + 60 + size + size % 2);
            if c == Compression::Gzip {
                // gzip's mtime, extra flags and OS bytes are outside its CRC.
                tolerated.push(off + 60 + 4..off + 60 + 10);
            }
            off += 60 + size + size % 2;
        }
        tolerated.push(8 + 60 + 2..8 + 60 + 4);
        for pos in (0..bytes.len()).step_by(step) {
            let mut copy = bytes.clone();
            copy[pos] ^= 0x55;
            std::fs::write(&bad, &copy).unwrap();
            let result = std::panic::catch_unwind(|| read_deb(&bad));
            let result = result.unwrap_or_else(|_| panic!("{c:?}: panic on a flip at {pos}"));
            let ok_to_pass = tolerated.iter().any(|r| r.contains(&(pos as u64)));
            assert!(
                result.is_err() || ok_to_pass,
                "{c:?}: a flip at byte {pos} went unnoticed ({members:?})"
            );
        }
    }
}

#[test]
fn reader_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notadeb.deb");
    std::fs::write(&p, b"hello world, not an archive").unwrap();
    let err = read_deb(&p).unwrap_err().to_string();
    assert!(
        err.contains("notadeb.deb") && err.contains("!<arch>"),
        "{err}"
    );

    let mut v = Vec::new();
    v.extend_from_slice(ar::MAGIC);
    ar::write_member(&mut v, "debian-binary", 0, b"3.0\n").unwrap();
    std::fs::write(&p, &v).unwrap();
    let err = read_deb(&p).unwrap_err().to_string();
    assert!(err.contains("3.0"), "{err}");

    let mut v = Vec::new();
    v.extend_from_slice(ar::MAGIC);
    ar::write_member(&mut v, "debian-binary", 0, b"2.0\n").unwrap();
    std::fs::write(&p, &v).unwrap();
    let err = read_deb(&p).unwrap_err().to_string();
    assert!(err.contains("no control.tar member"), "{err}");
}

/// Size experiment for the gzip chunk size (run by hand after `cargo bench --bench deb`
/// generated its data): `cargo test --release --lib gzip_chunk_sizes -- --ignored --nocapture`.
#[test]
#[ignore]
#[allow(clippy::print_stdout)]
fn gzip_chunk_sizes() {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/bench-data/tree/usr/lib/bench/big0.bin"
    );
    let data = std::fs::read(p).unwrap();
    for chunk in [512 << 10, 1 << 20, 2 << 20, 4 << 20, 1 << 30] {
        let mut e = ParGzEncoder::with_chunk(Vec::new(), 9, 2, chunk);
        e.write_all(&data).unwrap();
        let n = e.finish().unwrap().len();
        println!("chunk {chunk:>10}: {n} bytes (deflate {} )", n - 18);
    }
}

/// A .deb from raw members: `control.tar` and `data.tar` uncompressed, as given.
fn raw_deb(path: &std::path::Path, control_tar: &[u8], data_tar: &[u8]) {
    let mut v = Vec::new();
    v.extend_from_slice(ar::MAGIC);
    ar::write_member(&mut v, "debian-binary", 0, b"2.0\n").unwrap();
    ar::write_member(&mut v, "control.tar", 0, control_tar).unwrap();
    ar::write_member(&mut v, "data.tar", 0, data_tar).unwrap();
    std::fs::write(path, v).unwrap();
}

/// A tar of `(raw name, size)` regular files of zeros; names are written byte for byte.
fn raw_tar(files: &[(&str, u64)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, size) in files {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(*size);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, std::io::repeat(0).take(*size)).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn a_control_tar_of_many_large_files_is_refused_before_it_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bomb.deb");
    // Each file alone is under the limit; together they are not.
    let control = raw_tar(&[
        ("./control", 0),
        ("./a", 30 << 20),
        ("./b", 30 << 20),
        ("./c", 30 << 20),
    ]);
    raw_deb(&p, &control, &raw_tar(&[]));
    let err = read_deb(&p).unwrap_err().to_string();
    assert!(err.contains("`./c` is 31457280 bytes"), "{err}");
}

#[test]
fn data_entries_that_leave_the_root_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("escape.deb");
    let mut control = tar::Builder::new(Vec::new());
    let text = b"Package: x\nVersion: 1\nArchitecture: all\nMaintainer: A <a@example.com>\nDescription: x\n";
    let mut h = tar::Header::new_gnu();
    h.set_path("./control").unwrap();
    h.set_size(text.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    control.append(&h, &text[..]).unwrap();
    let control = control.into_inner().unwrap();
    for evil in ["./../../etc/evil", "/etc/evil"] {
        raw_deb(&p, &control, &raw_tar(&[("./", 0), (evil, 4)]));
        let err = read_deb(&p).unwrap_err().to_string();
        assert!(
            err.contains(&format!("entry `{evil}` is an absolute path or climbs out")),
            "{err}"
        );
    }
    raw_deb(&p, &control, &raw_tar(&[("./etc/fine", 4)]));
    assert_eq!(read_deb(&p).unwrap().files[0].path, "/etc/fine");
}

/// builder's own xz writer (which stops at once on Ctrl-C) writes exactly the bytes
/// liblzma's `XzEncoder` writes for the same multi-threaded stream settings.
#[test]
fn the_xz_writer_writes_what_liblzma_s_encoder_writes() {
    let input = pseudo_random_text(3_000_000);
    let mut ours = Encoder::new(Compression::Xz, Vec::new()).unwrap();
    for chunk in input.chunks(100_000) {
        ours.write_all(chunk).unwrap();
    }
    let ours = ours.finish().unwrap();
    let stream = liblzma::stream::MtStreamBuilder::new()
        .preset(compress::XZ_LEVEL)
        .check(liblzma::stream::Check::Crc64)
        .threads(compress::threads())
        .encoder()
        .unwrap();
    let mut theirs = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
    theirs.write_all(&input).unwrap();
    assert!(ours == theirs.finish().unwrap(), "the xz bytes differ");
}
