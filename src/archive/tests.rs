use std::process::Command;
use std::sync::Arc;

use super::*;

fn bytes(s: &str) -> FileSource {
    FileSource::Bytes(Arc::from(s.as_bytes()))
}

fn sample() -> Tree {
    let mut t = Tree::new();
    t.add_file("usr/bin/backend", 0o755, bytes("#!/bin/sh\necho hi\n"))
        .unwrap();
    t.add_file("/etc/backend/config.toml", 0o644, bytes("a = 1\n"))
        .unwrap();
    t.add_dir("var/lib/backend", 0o750).unwrap();
    t.add_symlink("usr/bin/be", "backend").unwrap();
    t.add_file("usr/bin-extra/tool", 0o4755, bytes("x"))
        .unwrap();
    t
}

/// (typeflag, name field) of every header in an uncompressed tar, walking sizes.
fn headers(tar: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 512 <= tar.len() {
        let h = &tar[off..off + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&h[..name_end]).into_owned();
        let size_text = std::str::from_utf8(&h[124..135]).unwrap();
        let size = u64::from_str_radix(size_text, 8).unwrap();
        out.push((h[156], name));
        off += 512 + (size as usize).div_ceil(512) * 512;
    }
    out
}

fn deb_tar(tree: &Tree) -> Vec<u8> {
    write_tar(tree, Vec::new(), &TarOptions::deb(1_700_000_000)).unwrap()
}

#[test]
fn dot_prefix_root_entry_and_trailing_slashes_are_kept() {
    let tar = deb_tar(&sample());
    let names: Vec<String> = headers(&tar).into_iter().map(|(_, n)| n).collect();
    assert_eq!(
        names,
        [
            "./",
            "./etc/",
            "./etc/backend/",
            "./etc/backend/config.toml",
            "./usr/",
            "./usr/bin/",
            // byte order of the tree keys, like dpkg-deb's strcmp sort: `-` sorts before `/`
            "./usr/bin-extra/",
            "./usr/bin-extra/tool",
            "./usr/bin/backend",
            "./usr/bin/be",
            "./var/",
            "./var/lib/",
            "./var/lib/backend/",
        ]
    );
    // GNU tar agrees on names, owners, modes and the link.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tar");
    std::fs::write(&path, &tar).unwrap();
    let out = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.contains("-rwxr-xr-x 0/0"), "{listing}");
    assert!(listing.contains("-rwsr-xr-x 0/0"), "{listing}");
    assert!(listing.contains("drwxr-x--- 0/0"), "{listing}");
    assert!(listing.contains("./usr/bin/be -> backend"), "{listing}");
    assert!(listing.contains("2023-11-14"), "{listing}");
}

#[test]
fn oci_style_has_plain_names_and_no_root() {
    let tar = write_tar(&sample(), Vec::new(), &TarOptions::oci(0)).unwrap();
    let names: Vec<String> = headers(&tar).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names[0], "etc/");
    assert!(names.contains(&"usr/bin/backend".to_string()));
    assert!(!names
        .iter()
        .any(|n| n.starts_with("./") || n.starts_with('/')));
}

#[test]
fn long_names_use_gnu_longlink_and_never_pax() {
    let mut t = Tree::new();
    let long = format!("usr/share/doc/{}/file.txt", "d".repeat(150));
    let target = format!("../../{}", "t".repeat(120));
    t.add_file(&long, 0o644, bytes("long")).unwrap();
    t.add_symlink("usr/lib/link", &target).unwrap();
    let tar = deb_tar(&t);
    let hs = headers(&tar);
    assert!(
        hs.iter().all(|(k, _)| *k != b'x' && *k != b'g'),
        "PAX header written"
    );
    assert!(hs.contains(&(b'L', "././@LongLink".to_string())));
    assert!(hs.contains(&(b'K', "././@LongLink".to_string())));
    let back = read_tree(&tar[..]).unwrap();
    assert_eq!(back.get(&long).unwrap().kind, NodeKind::File(bytes("long")));
    assert_eq!(
        back.get("usr/lib/link").unwrap().kind,
        NodeKind::Symlink(target.clone())
    );
    // GNU tar reads the long name with its `./` prefix intact.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.tar"), &tar).unwrap();
    let out = Command::new("tar")
        .arg("-tf")
        .arg(dir.path().join("t.tar"))
        .output()
        .unwrap();
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(
        listing.lines().any(|l| l == format!("./{long}")),
        "{listing}"
    );
}

#[test]
fn round_trip_through_read_tree_and_files_stream_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big, &content).unwrap();
    let mut t = sample();
    t.add_file("opt/big.bin", 0o600, FileSource::Path(big))
        .unwrap();
    let tar = deb_tar(&t);
    assert_eq!(tar.len() % 512, 0);
    let back = read_tree(&tar[..]).unwrap();
    assert_eq!(back.len(), t.len());
    for (path, node) in t.iter() {
        let got = back.get(path).unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(got.mode, node.mode, "{path}");
        match (&node.kind, &got.kind) {
            (NodeKind::File(a), NodeKind::File(FileSource::Bytes(b))) => {
                let a = match a {
                    FileSource::Bytes(a) => a.to_vec(),
                    FileSource::Path(p) => std::fs::read(p).unwrap(),
                };
                assert_eq!(&a[..], &b[..], "{path}");
            }
            (a, b) => assert_eq!(a, b, "{path}"),
        }
    }
    // Writing the read-back tree gives the same bytes: the format is a fixed point.
    assert_eq!(deb_tar(&back), tar);
}

#[test]
fn same_tree_same_bytes_regardless_of_insertion_order() {
    let mut a = Tree::new();
    a.add_file("b/x", 0o644, bytes("1")).unwrap();
    a.add_file("a/y", 0o644, bytes("2")).unwrap();
    let mut b = Tree::new();
    b.add_file("a/y", 0o644, bytes("2")).unwrap();
    b.add_file("b/x", 0o644, bytes("1")).unwrap();
    assert_eq!(deb_tar(&a), deb_tar(&b));
}

#[test]
fn tree_rules() {
    let mut t = Tree::new();
    t.add_file("./usr/bin/x", 0o755, bytes("")).unwrap();
    assert_eq!(t.get("usr").unwrap().kind, NodeKind::Dir);
    assert_eq!(t.get("/usr/bin/").unwrap().mode, 0o755);
    assert!(matches!(
        t.add_file("usr/bin/x", 0o644, bytes("")),
        Err(TreeError::Duplicate(_))
    ));
    assert!(matches!(
        t.add_file("usr/bin/x/y", 0o644, bytes("")),
        Err(TreeError::ParentNotDir { .. })
    ));
    assert!(matches!(
        t.add_file("usr/../etc/passwd", 0o644, bytes("")),
        Err(TreeError::InvalidPath { .. })
    ));
    assert!(t.add_dir("/", 0o755).is_err());
    t.add_dir("usr/bin", 0o700).unwrap(); // existing dir: accepted, unchanged
    assert_eq!(t.get("usr/bin").unwrap().mode, 0o755);
    assert!(t.add_dir("usr/bin/x", 0o755).is_err());
    t.add_file("usr/binx", 0o644, bytes("")).unwrap();
    t.remove_prefix("usr/bin");
    assert!(t.get("usr/bin/x").is_none() && t.get("usr/bin").is_none());
    assert!(t.get("usr/binx").is_some());
}

#[test]
fn installed_size_follows_dpkg_gencontrol() {
    let mut t = Tree::new();
    t.add_file(
        "a/one",
        0o644,
        FileSource::Bytes(Arc::from(vec![0u8; 1024])),
    )
    .unwrap();
    t.add_file(
        "a/two",
        0o644,
        FileSource::Bytes(Arc::from(vec![0u8; 1025])),
    )
    .unwrap();
    t.add_file("a/empty", 0o644, bytes("")).unwrap();
    t.add_symlink("a/l", "one").unwrap();
    // root 1 + dir a 1 + one 1 + two 2 + empty 0 + symlink 1
    assert_eq!(t.installed_size_kib().unwrap(), 6);
}

#[test]
fn read_tree_refuses_absolute_and_dotdot_names() {
    for name in ["/etc/passwd", "./../etc/passwd", "usr/../../x"] {
        let mut tar = Vec::new();
        tar.extend_from_slice(&write::tests_header(name.as_bytes(), b'0', 0));
        tar.extend_from_slice(&[0u8; 1024]);
        let err = read_tree(&tar[..]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(name), "{msg}");
    }
}

#[test]
fn huge_sizes_use_base256() {
    let h = write::tests_header(b"big", b'0', 10 << 33);
    assert_eq!(h[124] & 0x80, 0x80);
    let parsed = tar::Header::from_byte_slice(&h).size().unwrap();
    assert_eq!(parsed, 10 << 33);
}

#[test]
fn control_characters_in_names_are_refused() {
    // dpkg refuses newlines in member names; md5sums and conffiles are line-based.
    for bad in ["usr/share/new\nline.txt", "etc/tab\there", "usr/bin/x\r"] {
        assert!(
            matches!(normalize(bad), Err(TreeError::InvalidPath { .. })),
            "{bad:?}"
        );
    }
    assert_eq!(
        normalize("usr/share/ünïcode name").unwrap(),
        "usr/share/ünïcode name"
    );
}

#[test]
fn read_tree_limited_refuses_big_files_before_reading_them() {
    let mut t = Tree::new();
    t.add_file("control", 0o644, bytes("Package: x\n")).unwrap();
    t.add_file(
        "templates",
        0o644,
        FileSource::Bytes(vec![b'z'; 4096].into()),
    )
    .unwrap();
    let tar = deb_tar(&t);
    let err = super::read_tree_limited(&tar[..], 1024).unwrap_err();
    assert!(
        format!("{err:#}").contains("`./templates` is 4096 bytes"),
        "{err:#}"
    );
    assert!(super::read_tree_limited(&tar[..], 4096 + 11).is_ok());
    // The limit is on the whole archive: two files that fit alone do not fit together.
    assert!(super::read_tree_limited(&tar[..], 4096 + 10).is_err());
}

#[test]
fn symlink_targets_linux_cannot_store_are_refused() {
    let mut t = Tree::new();
    let longest = "t".repeat(MAX_SYMLINK_TARGET - 1);
    t.add_symlink("usr/lib/ok", &longest).unwrap();
    let err = t
        .add_symlink("usr/lib/long", &"t".repeat(MAX_SYMLINK_TARGET))
        .unwrap_err();
    assert!(
        matches!(&err, TreeError::InvalidPath { path, .. } if path == "usr/lib/long"),
        "{err}"
    );
    assert!(err.to_string().contains("4096 bytes or longer"), "{err}");
    assert!(t.get("usr/lib/long").is_none());
}
