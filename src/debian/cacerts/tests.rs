//! Tests of the CA outputs against the host's real `openssl` and `update-ca-certificates`.

use super::*;
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::testkit::Rng;

// -- helpers ------------------------------------------------------------

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "cacerts-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The host's certificates, like `find /usr/share/ca-certificates -type f`.
fn host_cert_files() -> Vec<CaFile> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from(SHARE_DIR)];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                out.push(CaFile {
                    path: entry.path().to_str().unwrap().to_owned(),
                    bytes: fs::read(entry.path()).unwrap(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(
        out.len() > 100,
        "expected the host's ca-certificates package"
    );
    out
}

fn mozilla(name: &str) -> Vec<u8> {
    fs::read(format!("{SHARE_DIR}/mozilla/{name}")).unwrap()
}

fn ca(rel: &str, bytes: Vec<u8>) -> CaFile {
    CaFile {
        path: format!("{SHARE_DIR}/{rel}"),
        bytes,
    }
}

fn sh(script: &str, envs: &[(&str, &str)]) -> String {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(format!("umask 022\n{script}"))
        .env("LC_ALL", "C")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shell failed: {script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The postinst's own code that writes a new /etc/ca-certificates.conf,
/// cut out of the installed script, writing to "$CONF" instead.
fn postinst_conf_writer() -> String {
    let postinst = fs::read_to_string("/var/lib/dpkg/info/ca-certificates.postinst").unwrap();
    let lines: Vec<&str> = postinst.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains("cat > /etc/ca-certificates.conf <<EOF"))
        .expect("postinst writes the conf with a here-document");
    let len = lines[start..]
        .iter()
        .position(|l| l.trim_end().ends_with(">> /etc/ca-certificates.conf"))
        .expect("postinst appends the certificate list");
    lines[start..=start + len]
        .join("\n")
        .replace("/etc/ca-certificates.conf", "\"$CONF\"")
}

/// Runs the real maintainer-script logic on `files` in a scratch root
/// and returns what it made, with the root prefix removed from link
/// targets.
fn run_real_scripts(files: &[CaFile]) -> Vec<Made> {
    let tmp = TempDir::new("real");
    let root = tmp.0.to_str().unwrap();
    let share = format!("{root}{SHARE_DIR}");
    for file in files {
        let dest = PathBuf::from(format!("{root}{}", file.path));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::write(&dest, &file.bytes).unwrap();
    }
    fs::create_dir_all(&share).unwrap();
    fs::create_dir_all(format!("{root}{ETC_CERTS_DIR}")).unwrap();
    let conf = format!("{root}{CONF_PATH}");

    // The list the package's config script hands over through debconf:
    // its `find | sed | sort | uniq` over the unpacked files (its
    // hard-coded CERTS_LIST is the same set, see
    // `config_certs_list_is_the_packaged_files`).
    let list = sh(
        "cd \"$SHARE\" && find . -type f -name '*.crt' -print | sed -e 's/^\\.\\///' | sort | uniq",
        &[("SHARE", &share)],
    );
    let joined = list.lines().collect::<Vec<_>>().join(", ");
    // Fresh install, default answers: everything available is enabled.
    sh(
        &postinst_conf_writer(),
        &[
            ("CONF", &conf),
            ("CERTS_ENABLED", &joined),
            ("CERTS_AVAILABLE", &joined),
        ],
    );
    // As the postinst calls it (`--hooksdir ""`), redirected to the root.
    sh(
        "update-ca-certificates --certsconf \"$ROOT/etc/ca-certificates.conf\" \
         --certsdir \"$ROOT/usr/share/ca-certificates\" \
         --localcertsdir \"$ROOT/usr/local/share/ca-certificates\" \
         --etccertsdir \"$ROOT/etc/ssl/certs\" --hooksdir ''",
        &[("ROOT", root), ("TMPDIR", root)],
    );
    collect_tree(&tmp.0)
}

fn collect_tree(root: &Path) -> Vec<Made> {
    let root_str = root.to_str().unwrap();
    let file = |path: &str, on_disk: &Path| Made::File {
        path: path.to_owned(),
        bytes: fs::read(on_disk).unwrap(),
        mode: fs::metadata(on_disk).unwrap().permissions().mode() & 0o7777,
    };
    let mut out = vec![file(CONF_PATH, &root.join("etc/ca-certificates.conf"))];
    for entry in fs::read_dir(root.join("etc/ssl/certs")).unwrap() {
        let entry = entry.unwrap();
        let path = format!(
            "{ETC_CERTS_DIR}/{}",
            entry.file_name().into_string().unwrap()
        );
        if entry.file_type().unwrap().is_symlink() {
            let target = fs::read_link(entry.path())
                .unwrap()
                .into_os_string()
                .into_string()
                .unwrap();
            let target = target.strip_prefix(root_str).unwrap_or(&target).to_owned();
            out.push(Made::Symlink { path, target });
        } else {
            out.push(file(&path, &entry.path()));
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

fn describe(made: &Made) -> String {
    match made {
        Made::File { path, bytes, mode } => format!(
            "{path}: file, mode {mode:o}, {} bytes, sha1 {:x}",
            bytes.len(),
            Sha1::digest(bytes)
        ),
        Made::Symlink { path, target } => format!("{path} -> {target}"),
    }
}

fn assert_same(ours: &[Made], real: &[Made]) {
    let ours: Vec<String> = ours.iter().map(describe).collect();
    let real: Vec<String> = real.iter().map(describe).collect();
    if ours != real {
        let only_ours: Vec<_> = ours.iter().filter(|o| !real.contains(o)).collect();
        let only_real: Vec<_> = real.iter().filter(|r| !ours.contains(r)).collect();
        panic!("outputs differ\nonly ours: {only_ours:#?}\nonly real tools: {only_real:#?}");
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_tlv(&mut out, tag, content);
    out
}

const CN: &[u8] = &[0x55, 0x04, 0x03];
const O: &[u8] = &[0x55, 0x04, 0x0a];
const OU: &[u8] = &[0x55, 0x04, 0x0b];
const C: &[u8] = &[0x55, 0x04, 0x06];
const EMAIL: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
const DC: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19];

fn atv(oid: &[u8], value: Vec<u8>) -> Vec<u8> {
    tlv(TAG_SEQUENCE, &[tlv(TAG_OID, oid), value].concat())
}

fn rdn(atvs: &[Vec<u8>]) -> Vec<u8> {
    tlv(TAG_SET, &atvs.concat())
}

fn name(rdns: &[Vec<u8>]) -> Vec<u8> {
    tlv(TAG_SEQUENCE, &rdns.concat())
}

/// A name with one CN of the given value type and content.
fn cn(tag: u8, content: &[u8]) -> Vec<u8> {
    name(&[rdn(&[atv(CN, tlv(tag, content))])])
}

fn template_cert() -> Vec<u8> {
    pem_certificates(&mozilla("ISRG_Root_X1.crt"))
        .unwrap()
        .remove(0)
}

/// `template` with its subject replaced by `subject` (a whole Name TLV).
fn with_subject(template: &[u8], subject: &[u8]) -> Vec<u8> {
    let cert = Der::new(template).read().unwrap();
    let mut c = Der::new(cert.content);
    let tbs = c.read().unwrap();
    let signature = c.rest;
    let mut t = Der::new(tbs.content);
    let mut fields = Vec::new();
    while !t.is_empty() {
        fields.push(t.read().unwrap().raw);
    }
    assert_eq!(fields[0][0], 0xa0, "template must be a v3 certificate");
    fields[5] = subject;
    let tbs = tlv(TAG_SEQUENCE, &fields.concat());
    tlv(TAG_SEQUENCE, &[tbs.as_slice(), signature].concat())
}

fn to_pem(der: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    for line in b64.as_bytes().chunks(64) {
        pem.extend_from_slice(line);
        pem.push(b'\n');
    }
    pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    pem
}

/// Subject hashes `openssl rehash` computes for certificates with the
/// given subjects (`None` where OpenSSL could not load the certificate),
/// all in one rehash run.
fn openssl_hashes(subjects: &[Vec<u8>]) -> Vec<Option<u32>> {
    let tmp = TempDir::new("rehash");
    let template = template_cert();
    for (i, subject) in subjects.iter().enumerate() {
        fs::write(
            tmp.0.join(format!("c{i}.pem")),
            to_pem(&with_subject(&template, subject)),
        )
        .unwrap();
    }
    let out = Command::new("openssl")
        .args(["rehash", "-v"])
        .arg(&tmp.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut hashes = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        // "link c12.pem -> 1a2b3c4d.0"
        if let Some((file, link)) = line
            .strip_prefix("link ")
            .and_then(|l| l.split_once(" -> "))
        {
            let hash = u32::from_str_radix(&link[..8], 16).unwrap();
            hashes.insert(file.to_owned(), hash);
        }
    }
    (0..subjects.len())
        .map(|i| hashes.get(&format!("c{i}.pem")).copied())
        .collect()
}

/// Checks `subject_hash` against OpenSSL for each (description, subject).
fn assert_hashes_match_openssl(cases: &[(String, Vec<u8>)]) {
    let mut seen = HashSet::new();
    // Identical certificates would be deduplicated by rehash.
    let cases: Vec<_> = cases
        .iter()
        .filter(|(_, n)| seen.insert(n.clone()))
        .collect();
    let subjects: Vec<Vec<u8>> = cases.iter().map(|(_, n)| n.clone()).collect();
    let theirs = openssl_hashes(&subjects);
    let template = template_cert();
    let mut failures = Vec::new();
    for ((what, subject), theirs) in cases.iter().zip(theirs) {
        let ours = subject_hash(&with_subject(&template, subject));
        if ours.as_ref().ok().copied() != theirs {
            failures.push(format!("{what}: ours {ours:x?}, openssl {theirs:x?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// -- against the real tools ---------------------------------------------

#[test]
fn subject_hash_matches_openssl_x509_for_host_certificates() {
    let files = host_cert_files();
    for file in files.iter().filter(|f| f.path.ends_with(".crt")) {
        let der = pem_certificates(&file.bytes).unwrap().remove(0);
        let out = Command::new("openssl")
            .args(["x509", "-hash", "-noout", "-in", &file.path])
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl failed on {}", file.path);
        let theirs =
            u32::from_str_radix(String::from_utf8(out.stdout).unwrap().trim(), 16).unwrap();
        assert_eq!(subject_hash(&der), Ok(theirs), "{}", file.path);
    }
}

#[test]
fn host_package_matches_real_scripts() {
    let files = host_cert_files();
    let ours = ca_certificates_outputs(&files).unwrap();
    assert_same(&ours, &run_real_scripts(&files));
}

/// The host's own /etc/ssl/certs is not a clean reference: it also holds
/// certificates from /usr/local/share/ca-certificates (appended to the
/// bundle and linked), a java/ directory and ssl-cert's snakeoil
/// certificate.  So it is compared loosely here; the exact comparison is
/// `host_package_matches_real_scripts`.
#[test]
fn host_etc_agrees_where_comparable() {
    let ours = ca_certificates_outputs(&host_cert_files()).unwrap();
    let our_pems: HashSet<&str> = ours
        .iter()
        .filter_map(|m| m.path().strip_prefix("/etc/ssl/certs/"))
        .filter(|n| n.ends_with(".pem"))
        .collect();
    // Hash link targets on the host, by hash.
    let mut host_links: HashMap<String, Vec<String>> = HashMap::new();
    for entry in fs::read_dir(ETC_CERTS_DIR).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some((hash, _)) = name
            .split_once('.')
            .filter(|(h, n)| h.len() == 8 && n.parse::<u32>().is_ok())
        {
            let target = fs::read_link(format!("{ETC_CERTS_DIR}/{name}")).unwrap();
            host_links
                .entry(hash.to_owned())
                .or_default()
                .push(target.to_str().unwrap().to_owned());
        }
    }
    for made in &ours {
        match made {
            // The host's conf was generated from the defaults (no `!`
            // lines, nothing added), so it must match exactly.
            Made::File { path, bytes, .. } if path == CONF_PATH => {
                assert_eq!(bytes, &fs::read(CONF_PATH).unwrap(), "{path}");
            }
            // Local certificates are appended after the package's ones.
            Made::File { path, bytes, .. } => {
                assert_eq!(path, BUNDLE_PATH);
                let host = fs::read(BUNDLE_PATH).unwrap();
                assert!(
                    host.starts_with(bytes),
                    "bundle is not a prefix of the host's"
                );
            }
            Made::Symlink { path, target } if path.ends_with(".pem") => {
                let host = fs::read_link(path).unwrap();
                assert_eq!(host.to_str().unwrap(), target, "{path}");
            }
            // A hash link's number depends on every file with that hash,
            // so compare only where the host has no local certificate
            // sharing the hash.
            Made::Symlink { path, target } => {
                let hash = &path["/etc/ssl/certs/".len()..][..8];
                let host = &host_links[hash];
                if host.iter().all(|t| our_pems.contains(t.as_str())) {
                    let on_host = fs::read_link(path).unwrap();
                    assert_eq!(on_host.to_str().unwrap(), target, "{path}");
                }
            }
        }
    }
}

/// The config script also merges a hard-coded CERTS_LIST into the
/// available certificates; for the Debian package it is exactly the set
/// of shipped files, which is why working from the files alone is right.
#[test]
fn config_certs_list_is_the_packaged_files() {
    let config = fs::read_to_string("/var/lib/dpkg/info/ca-certificates.config").unwrap();
    let list = config
        .lines()
        .find_map(|l| l.strip_prefix("CERTS_LIST=\""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    let listed: HashSet<&str> = list.split(',').map(str::trim).collect();
    let files = host_cert_files();
    let shipped: HashSet<&str> = files
        .iter()
        .map(|f| f.path.strip_prefix("/usr/share/ca-certificates/").unwrap())
        .collect();
    assert_eq!(listed, shipped);
}

/// Edge cases of the scripts, each checked against the real tools.
#[test]
fn crafted_tree_matches_real_scripts() {
    let isrg_x1 = mozilla("ISRG_Root_X1.crt");
    let gts_r2 = mozilla("GTS_Root_R2.crt");
    let mut no_newline = mozilla("GTS_Root_R3.crt");
    no_newline.pop();
    let crlf: Vec<u8> = mozilla("GTS_Root_R4.crt")
        .split(|&b| b == b'\n')
        .collect::<Vec<_>>()
        .join(&b"\r\n"[..]);
    let two = [mozilla("ISRG_Root_X2.crt"), mozilla("Certigna.crt")].concat();
    let old_label = String::from_utf8(mozilla("Amazon_Root_CA_1.crt"))
        .unwrap()
        .replace("CERTIFICATE", "X509 CERTIFICATE")
        .into_bytes();
    let commented = [
        b"# a comment\nIssuer: somebody\n".to_vec(),
        mozilla("Amazon_Root_CA_2.crt"),
    ]
    .concat();
    let files = vec![
        ca("mozilla/ISRG_Root_X1.crt", isrg_x1.clone()),
        // Same subject hash, different certificates: .0 and .1.
        ca(
            "mozilla/Autoridad_de_Certificacion_Firmaprofesional_CIF_A62634068.crt",
            mozilla("Autoridad_de_Certificacion_Firmaprofesional_CIF_A62634068.crt"),
        ),
        ca(
            "mozilla/Autoridad_de_Certificacion_Firmaprofesional_CIF_A62634068_2.crt",
            mozilla("Autoridad_de_Certificacion_Firmaprofesional_CIF_A62634068_2.crt"),
        ),
        // Identical to ISRG_Root_X1 and later in the conf, but earlier in
        // rehash's order: rehash links this one and skips the other.
        ca("zzz/AAA_copy_of_isrg.crt", isrg_x1),
        // Same link name as mozilla/GTS_Root_R1.crt: `ln -sf` replaces it.
        ca("mozilla/GTS_Root_R1.crt", mozilla("GTS_Root_R1.crt")),
        ca("other/GTS_Root_R1.crt", gts_r2),
        ca("top_level(no=dir).crt", no_newline),
        ca("crlf/GTS_Root_R4.crt", crlf),
        // Two certificates: bundled and linked, but no hash link.
        ca("multi/two.crt", two),
        ca("labels/old_label.crt", old_label),
        ca("labels/commented.crt", commented),
        ca(
            "mozilla/NetLock_Arany_=Class_Gold=_Főtanúsítvány.crt",
            mozilla("NetLock_Arany_=Class_Gold=_Főtanúsítvány.crt"),
        ),
        // Not *.crt: ignored by every script.
        ca("mozilla/README.txt", b"not a certificate".to_vec()),
        ca("mozilla/x.crt.orig", b"not a certificate".to_vec()),
    ];
    let ours = ca_certificates_outputs(&files).unwrap();
    assert_same(&ours, &run_real_scripts(&files));
    // Make sure the interesting cases really were exercised.
    let links: Vec<&str> = ours.iter().map(Made::path).collect();
    assert!(links.contains(&"/etc/ssl/certs/3bde41ac.1"));
    assert!(links.contains(&"/etc/ssl/certs/top_level=no=dir=.pem"));
    assert!(ours.contains(&Made::Symlink {
        path: "/etc/ssl/certs/GTS_Root_R1.pem".into(),
        target: "/usr/share/ca-certificates/other/GTS_Root_R1.crt".into(),
    }));
}

#[test]
fn empty_package_matches_real_scripts() {
    let ours = ca_certificates_outputs(&[]).unwrap();
    assert_same(&ours, &run_real_scripts(&[]));
}

/// Hand-picked subjects probing every rule of x509_name_canon and of
/// OpenSSL's name decoder.
#[test]
fn crafted_subjects_match_openssl() {
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |what: String, subject: Vec<u8>| cases.push((what, subject));

    let texts: &[&[u8]] = &[
        b"  Hello \t\n  World  ",
        b"\x0bX\x0c",
        b"\r\nA  B\r\n",
        b"A\x00B",
        b"",
        b"   ",
        b"MiXeD CaSe @ 42",
        b"\x85A\xa0B\xc9",
        "Été \u{3000}x ß İ Ω".as_bytes(),
        b"\xc0\x80",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xf4\x8f\xbf\xbf",
        b"\xef\xbf\xbf",
        b"\x80abc",
        b"abc\xe2\x82",
        b"\xf8\x88\x80\x80\x80",
    ];
    for tag in [12, 19, 20, 22, 18, 21, 25, 26, 27] {
        for text in texts {
            add(format!("tag {tag} {text:x?}"), cn(tag, text));
        }
    }
    // Every byte as inner separator and at both ends.
    for b in 0..=255u8 {
        for tag in [12, 19] {
            add(
                format!("tag {tag} byte {b:#04x}"),
                cn(tag, &[b, b'a', b, b, b'B', b]),
            );
        }
    }
    let bmp = |units: &[u16]| {
        units
            .iter()
            .flat_map(|u| u.to_be_bytes())
            .collect::<Vec<u8>>()
    };
    for units in [
        &[0x41, 0x20, 0x20, 0x62][..],
        &[0x20, 0xc9, 0x3000, 0x0b],
        &[0xd800],
        &[0xd83d, 0xde00],
        &[0xdfff, 0x41],
        &[0xfffe],
        &[],
    ] {
        add(format!("BMPString {units:x?}"), cn(30, &bmp(units)));
    }
    add("BMPString odd length".into(), cn(30, &[0, 0x41, 0]));
    let ucs4 = |units: &[u32]| {
        units
            .iter()
            .flat_map(|u| u.to_be_bytes())
            .collect::<Vec<u8>>()
    };
    for units in [
        &[0x41, 0x20, 0x09, 0x20, 0x5a][..],
        &[0x1f600],
        &[0x10ffff],
        &[0x110000],
        &[0xd800],
        &[0xffff_ffff],
    ] {
        add(format!("UniversalString {units:x?}"), cn(28, &ucs4(units)));
    }
    add("UniversalString bad length".into(), cn(28, &[0, 0, 0x41]));
    // Every universal tag number, primitive.
    for number in 0..=30u8 {
        add(format!("tag {number} 'Ab'"), cn(number, b"\x00Ab"));
        add(format!("tag {number} empty"), cn(number, b""));
    }
    // Constructed and non-universal values.
    add(
        "SEQUENCE value".into(),
        cn(0x30, &tlv(TAG_UTF8_STRING, b" X  Y ")),
    );
    add("SEQUENCE of junk".into(), cn(0x30, &[0xff, 0xff, 0xff]));
    add("SET value".into(), cn(0x31, &tlv(TAG_UTF8_STRING, b"X")));
    add("context tag".into(), cn(0x80, b"x"));
    add("application tag".into(), cn(0x40, b"x"));
    add(
        "constructed context tag".into(),
        cn(0xa0, &tlv(TAG_UTF8_STRING, b"x")),
    );
    let mut deep = tlv(TAG_UTF8_STRING, b"x");
    for _ in 0..2000 {
        deep = tlv(TAG_SEQUENCE, &deep);
    }
    add("deeply nested SEQUENCE value".into(), cn(0x30, &deep));
    // BIT STRING normalisation.
    for bits in [
        &[0u8][..],
        &[7],
        &[8],
        &[3, 0xff],
        &[0, 0xff, 0xff],
        &[7, 0x01, 0xff],
        &[1, 0xff],
    ] {
        add(format!("BIT STRING {bits:x?}"), cn(3, bits));
    }
    // Multi-valued RDNs are re-sorted after canonicalisation.
    let p = |s: &[u8]| tlv(19, s);
    let u = |s: &[u8]| tlv(TAG_UTF8_STRING, s);
    add(
        "multi RDN".into(),
        name(&[rdn(&[atv(CN, p(b"B")), atv(CN, u(b"a"))])]),
    );
    add(
        "multi RDN reversed".into(),
        name(&[rdn(&[atv(CN, u(b"a")), atv(CN, p(b"B"))])]),
    );
    add(
        "multi RDN prefix".into(),
        name(&[rdn(&[atv(O, u(b"ab")), atv(O, u(b"A"))])]),
    );
    add(
        "multi RDN mixed".into(),
        name(&[rdn(&[
            atv(OU, p(b"z")),
            atv(C, p(b"DE")),
            atv(CN, tlv(3, &[0, 1])),
        ])]),
    );
    add(
        "multi RDN duplicate".into(),
        name(&[rdn(&[atv(CN, u(b"x")), atv(CN, p(b"X"))])]),
    );
    // Empty names and RDNs.
    add("empty name".into(), name(&[]));
    add("only an empty RDN".into(), name(&[rdn(&[])]));
    add(
        "empty RDN in between".into(),
        name(&[rdn(&[atv(C, p(b"US"))]), rdn(&[]), rdn(&[atv(CN, p(b"x"))])]),
    );
    // Attribute types.
    add(
        "unknown OID".into(),
        name(&[rdn(&[atv(&[0x2a, 0x03, 0x04], u(b"X"))])]),
    );
    add(
        "email IA5".into(),
        name(&[rdn(&[atv(EMAIL, tlv(22, b"Root@Example.COM"))])]),
    );
    add("DC".into(), name(&[rdn(&[atv(DC, tlv(22, b"Example"))])]));
    add(
        "OID padded".into(),
        name(&[rdn(&[atv(&[0x2a, 0x80, 0x01], u(b"X"))])]),
    );
    add(
        "OID unterminated".into(),
        name(&[rdn(&[atv(&[0x2a, 0x83], u(b"X"))])]),
    );
    add("OID empty".into(), name(&[rdn(&[atv(&[], u(b"X"))])]));
    // Malformed structure.
    let bad_atv = tlv(TAG_SEQUENCE, &[tlv(TAG_OID, CN), u(b"a"), u(b"b")].concat());
    add("ATV with three elements".into(), name(&[rdn(&[bad_atv])]));
    add(
        "ATV without value".into(),
        name(&[rdn(&[tlv(TAG_SEQUENCE, &tlv(TAG_OID, CN))])]),
    );
    add("RDN holding a string".into(), name(&[rdn(&[u(b"x")])]));
    add(
        "name holding a SEQUENCE".into(),
        name(&[tlv(TAG_SEQUENCE, &atv(CN, u(b"x")))]),
    );
    // Long values need long-form lengths.
    let long: Vec<u8> = b"Ab  ".iter().copied().cycle().take(70_000).collect();
    add("long UTF8String".into(), cn(12, &long[..300]));
    add("very long UTF8String".into(), cn(12, &long));
    assert_hashes_match_openssl(&cases);
}

/// Random subjects drawn from the interesting corners, against OpenSSL.
#[test]
fn random_subjects_match_openssl() {
    let chars = [
        " ", "\t", "\n", "\u{b}", "\u{c}", "\r", "A", "Z", "a", "z", "0", "@", "\0", "\u{7f}",
        "\u{85}", "\u{a0}", "É", "ß", "İ", "\u{3000}", "😀", "Ω",
    ];
    let bytes = [
        b' ', b'\t', b'\x0b', b'\r', b'A', b'z', b'Q', b'9', 0, 0x7f, 0x80, 0xa0, 0xc9, 0xff,
    ];
    let oids = [CN, O, OU, C, EMAIL, DC];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut cases = Vec::new();
    for i in 0..4000 {
        let mut rdns = Vec::new();
        for _ in 0..rng.below(4) {
            let mut atvs = Vec::new();
            for _ in 0..rng.below(4) {
                let len = rng.below(8);
                let value = match rng.below(10) {
                    0..=2 => {
                        let mut text: Vec<u8> =
                            (0..len).flat_map(|_| rng.pick(&chars).bytes()).collect();
                        if rng.below(10) == 0 {
                            text.push(rng.pick(&bytes));
                        }
                        tlv(TAG_UTF8_STRING, &text)
                    }
                    3..=5 => {
                        let text: Vec<u8> = (0..len).map(|_| rng.pick(&bytes)).collect();
                        tlv(rng.pick(&[19, 20, 22]), &text)
                    }
                    6 => {
                        let units: Vec<u8> = (0..len)
                            .flat_map(|_| {
                                rng.pick(&[0x20u16, 0x41, 0x61, 0xc9, 0x3000, 0xd800, 0x0c])
                                    .to_be_bytes()
                            })
                            .collect();
                        tlv(30, &units)
                    }
                    7 => {
                        let units: Vec<u8> = (0..len)
                            .flat_map(|_| {
                                rng.pick(&[0x20u32, 0x5a, 0x1f600, 0x110000, 0xdc00])
                                    .to_be_bytes()
                            })
                            .collect();
                        tlv(28, &units)
                    }
                    8 => {
                        let text: Vec<u8> = (0..len).map(|_| rng.pick(&bytes)).collect();
                        tlv(rng.below(31) as u8, &text)
                    }
                    _ => {
                        let text: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                        tlv(rng.pick(&[3, 18, 0x30]), &text)
                    }
                };
                atvs.push(atv(rng.pick(&oids), value));
            }
            rdns.push(rdn(&atvs));
        }
        cases.push((format!("random #{i}"), name(&rdns)));
    }
    assert_hashes_match_openssl(&cases);
}

/// BER that OpenSSL tolerates but that is refused here on purpose (see
/// the module documentation); this pins down that OpenSSL does accept
/// it, so the divergence is known rather than assumed.
#[test]
fn ber_subjects_are_refused_although_openssl_takes_them() {
    let chunks = [tlv(TAG_OCTET_STRING, b"Ab"), tlv(TAG_OCTET_STRING, b" C")].concat();
    let atv_body = |value: &[u8]| [tlv(TAG_OID, CN).as_slice(), value].concat();
    let cases = [
        ("constructed UTF8String", cn(0x2c, &chunks)),
        (
            "non-minimal value length",
            name(&[rdn(&[tlv(
                TAG_SEQUENCE,
                &atv_body(&[0x0c, 0x81, 0x01, b'x']),
            )])]),
        ),
        (
            "indefinite-length name",
            [&[0x30, 0x80][..], &rdn(&[atv(CN, tlv(12, b"x"))]), &[0, 0]].concat(),
        ),
    ];
    let subjects: Vec<Vec<u8>> = cases.iter().map(|(_, s)| s.clone()).collect();
    let template = template_cert();
    for ((what, subject), theirs) in cases.iter().zip(openssl_hashes(&subjects)) {
        assert!(
            subject_hash(&with_subject(&template, subject)).is_err(),
            "{what}"
        );
        assert!(theirs.is_some(), "OpenSSL now refuses {what} too");
    }
}

// -- behaviour without the tools ---------------------------------------

#[test]
fn conf_and_links_for_a_small_tree() {
    let files = [
        ca("mozilla/b.crt", mozilla("GTS_Root_R1.crt")),
        ca("mozilla/B(x).crt", mozilla("GTS_Root_R2.crt")),
        ca("a.crt", mozilla("GTS_Root_R3.crt")),
    ];
    let out = ca_certificates_outputs(&files).unwrap();
    let Made::File { bytes, mode, .. } = &out.iter().find(|m| m.path() == CONF_PATH).unwrap()
    else {
        panic!("conf is a file");
    };
    assert_eq!(*mode, 0o644);
    let conf = String::from_utf8(bytes.clone()).unwrap();
    assert!(conf.starts_with("# This file lists certificates"));
    assert!(
        conf.ends_with("#\na.crt\nmozilla/B(x).crt\nmozilla/b.crt\n"),
        "{conf}"
    );
    assert!(out.contains(&Made::Symlink {
        path: "/etc/ssl/certs/B=x=.pem".into(),
        target: "/usr/share/ca-certificates/mozilla/B(x).crt".into(),
    }));
    let paths: Vec<&str> = out.iter().map(Made::path).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    // conf, bundle, three .pem links and three hash links.
    assert_eq!(out.len(), 8);
}

#[test]
fn link_name_mangling() {
    assert_eq!(pem_link_name("mozilla/A b(c),d.crt"), "A_b=c=_d.pem");
    assert_eq!(pem_link_name("x/.crt"), ".crt.pem");
    assert_eq!(pem_link_name("x.crt.crt"), "x.crt.pem");
}

#[test]
fn unsupported_paths_are_rejected() {
    let cert = mozilla("GTS_Root_R1.crt");
    for path in [
        "/etc/x.crt",
        "/usr/share/ca-certificates-x/a.crt",
        "/usr/share/ca-certificates/../a.crt",
        "/usr/share/ca-certificates/a//b.crt",
        "/usr/share/ca-certificates/a b.crt",
        "/usr/share/ca-certificates/a,b.crt",
        "/usr/share/ca-certificates/a*.crt",
        "/usr/share/ca-certificates/a\\b.crt",
        "/usr/share/ca-certificates/a\nb.crt",
        "/usr/share/ca-certificates/#a.crt",
        "/usr/share/ca-certificates/!a.crt",
    ] {
        let files = [CaFile {
            path: path.into(),
            bytes: cert.clone(),
        }];
        assert!(ca_certificates_outputs(&files).is_err(), "{path:?}");
    }
    let twice = [ca("a.crt", cert.clone()), ca("a.crt", cert.clone())];
    assert!(ca_certificates_outputs(&twice).is_err());
    // Names only matter for the files the scripts pick up.
    let ignored = [
        ca("a.crt", cert),
        ca("mozilla/read me, maybe.txt", b"x".to_vec()),
    ];
    assert_eq!(ca_certificates_outputs(&ignored).unwrap().len(), 4);
}

#[test]
fn broken_certificate_errors_name_the_file() {
    for bytes in [
        b"".to_vec(),
        b"garbage\n".to_vec(),
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
    ] {
        let files = [
            ca("mozilla/ok.crt", mozilla("GTS_Root_R1.crt")),
            ca("mozilla/bad.crt", bytes),
        ];
        let err = ca_certificates_outputs(&files).unwrap_err();
        assert!(
            err.contains("/usr/share/ca-certificates/mozilla/bad.crt"),
            "{err}"
        );
    }
}

#[test]
fn garbage_pem_is_rejected() {
    let good = String::from_utf8(mozilla("GTS_Root_R1.crt")).unwrap();
    let body = good.lines().nth(1).unwrap();
    for pem in [
        String::new(),
        "just text\n".to_owned(),
        "-----BEGIN CERTIFICATE-----\n".to_owned(),
        format!("-----BEGIN CERTIFICATE-----\n{body}\n"),
        good.replace("-----END CERTIFICATE-----", "-----END X509 CRL-----"),
        good.replace("CERTIFICATE", "X509 CRL"),
        good.replace("CERTIFICATE", "PRIVATE KEY"),
        good.replace("CERTIFICATE", "TRUSTED CERTIFICATE"),
        good.replacen('M', "!", 1),
        good.replacen('\n', "\nProc-Type: 4,ENCRYPTED\n", 1),
        "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n".to_owned(),
        "-----BEGIN CERTIFICATE-----\nAA=A\n-----END CERTIFICATE-----\n".to_owned(),
    ] {
        assert!(pem_certificates(pem.as_bytes()).is_err(), "{pem:?}");
    }
    assert!(pem_certificates(&vec![b'A'; MAX_FILE_LEN + 1]).is_err());
    // Base64 that decodes but is no certificate.
    let der = pem_certificates(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .unwrap();
    assert!(subject_hash(&der[0]).is_err());
    // A BOM and CRLF line ends are fine.
    let bom = [
        b"\xEF\xBB\xBF".as_slice(),
        good.replace('\n', "\r\n").as_bytes(),
    ]
    .concat();
    assert_eq!(
        pem_certificates(&bom).unwrap(),
        pem_certificates(good.as_bytes()).unwrap()
    );
}

#[test]
fn truncated_and_mutated_certificates_never_panic() {
    let der = template_cert();
    for len in 0..der.len() {
        assert!(
            subject_hash(&der[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(subject_hash(&trailing).is_err());
    for i in 0..der.len() {
        for x in [0x01, 0x80, 0xff] {
            let mut mutated = der.clone();
            mutated[i] ^= x;
            let _ = subject_hash(&mutated);
        }
    }
    let pem = mozilla("GTS_Root_R1.crt");
    for len in 0..pem.len() {
        let _ = pem_certificates(&pem[..len]);
    }
}

#[test]
fn hostile_lengths_and_nesting_are_rejected() {
    let mut deep_indefinite = Vec::new();
    for _ in 0..100_000 {
        deep_indefinite.extend_from_slice(&[0x30, 0x80]);
    }
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x30],
        vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        vec![0x30, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        vec![0x30, 0xff],
        vec![0x30, 0x80, 0x00, 0x00],
        vec![0x30, 0x81, 0x05, 0, 0, 0, 0, 0],
        vec![0x30, 0x82, 0x00, 0x05, 0, 0, 0, 0, 0],
        vec![0x3f, 0x01, 0x00],
        deep_indefinite.clone(),
    ];
    for input in &inputs {
        assert!(
            subject_hash(input).is_err(),
            "{:x?}",
            &input[..input.len().min(16)]
        );
    }
    // The same inside a subject, where the reader descends furthest.
    let template = template_cert();
    for value in [
        vec![0x0c, 0x84, 0x7f, 0xff, 0xff, 0xff],
        vec![0x0c, 0x80],
        deep_indefinite,
    ] {
        let subject = name(&[rdn(&[[tlv(TAG_OID, CN), value].concat()])]);
        assert!(subject_hash(&with_subject(&template, &subject)).is_err());
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0xdead_beef_0bad_cafe);
    let pieces: [&[u8]; 8] = [
        b"-----BEGIN CERTIFICATE-----\n",
        b"-----END CERTIFICATE-----\n",
        b"MIIB",
        b"\n",
        b"====",
        &[0x30, 0x82],
        &[0x31, 0x80],
        &[0x0c, 0x03, b'a', b' ', b'B'],
    ];
    for _ in 0..20_000 {
        let mut input = Vec::new();
        for _ in 0..rng.below(12) {
            if rng.below(2) == 0 {
                input.extend_from_slice(rng.pick(&pieces));
            } else {
                input.extend((0..rng.below(40)).map(|_| rng.next() as u8));
            }
        }
        let _ = subject_hash(&input);
        let _ = pem_certificates(&input);
        let _ = ca_certificates_outputs(&[ca("x.crt", input)]);
    }
}
