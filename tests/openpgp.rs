//! builder's OpenPGP (src/sign) against GnuPG, both ways: keys GnuPG makes sign what `gpgv`
//! accepts, keys builder makes import into GnuPG, and texts GnuPG clearsigns verify against
//! a keyring as apt's `gpgv` would judge them (expired, revoked, weak hash, other key,
//! changed text). Engine tier: `gpg` is one of the tools `.ci/setup` installs.

mod common;

use std::path::PathBuf;
use std::process::Command;

use builder::debian::keyring::Keyring;
use builder::sign::{Signer, Verifier};
use common::*;

/// A GnuPG home of its own; its agent is stopped when it is dropped.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        let home = tempfile::tempdir().unwrap();
        set_mode(home.path(), 0o700);
        Gpg { home }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.home.path()).args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        c
    }

    /// `gpg --quick-gen-key` with `args` after the user ID; returns the new fingerprint.
    fn generate(&self, uid: &str, args: &[&str]) -> String {
        sh(self.cmd().args(["--quick-gen-key", uid]).args(args));
        self.fingerprint(uid)
    }

    fn fingerprint(&self, uid: &str) -> String {
        let out = sh(self.cmd().args(["--with-colons", "--list-keys", uid]));
        out.lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string()
    }

    fn export(&self, what: &[&str]) -> Vec<u8> {
        let out = self.cmd().args(what).output().unwrap();
        assert!(out.status.success(), "{}", show(&out));
        out.stdout
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.home.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

const RELEASE: &str = "Origin: test\nSuite: dev\n- a dashed line\nDescription: trailing  \n";

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn keys_gnupg_makes_sign_what_gpgv_accepts() {
    // GnuPG 2.2's default (RSA 3072 with an encryption subkey), Ed25519, and an RSA 4096
    // primary key that only certifies, with a signing subkey.
    for (uid, args, subkey) in [
        (
            "rsa <rsa@example.com>",
            &["default", "default", "never"][..],
            false,
        ),
        (
            "ed <ed@example.com>",
            &["ed25519", "sign", "never"][..],
            false,
        ),
        (
            "sub <sub@example.com>",
            &["rsa4096", "cert", "never"][..],
            true,
        ),
    ] {
        let gpg = Gpg::new();
        let fpr = gpg.generate(uid, args);
        if subkey {
            sh(gpg
                .cmd()
                .args(["--quick-add-key", &fpr, "rsa2048", "sign", "never"]));
        }
        let secret = gpg.export(&["--armor", "--export-secret-keys", &fpr]);
        let signer = Signer::from_armored(std::str::from_utf8(&secret).unwrap())
            .unwrap_or_else(|e| panic!("{uid}: {e:#}"));
        assert_eq!(signer.fingerprint(), fpr, "{uid}");
        let keyring = gpg.file("pub.gpg", &gpg.export(&["--export", &fpr]));
        // builder's own public export is a keyring gpgv reads too.
        let ours = gpg.file("ours.gpg", &signer.public_key_binary());

        let inrelease = gpg.file("InRelease", &signer.clearsign(RELEASE.as_bytes()).unwrap());
        let release = gpg.file("Release", RELEASE.as_bytes());
        let detached = gpg.file(
            "Release.gpg",
            &signer.detached_sign(RELEASE.as_bytes()).unwrap(),
        );
        for k in [&keyring, &ours] {
            let o = gpgv(k, &[&inrelease]);
            assert!(o.status.success(), "{uid}: gpgv InRelease: {}", show(&o));
            let o = gpgv(k, &[&detached, &release]);
            assert!(o.status.success(), "{uid}: gpgv Release.gpg: {}", show(&o));
        }
        // gpg reads back the text builder signed, unchanged except for the trailing blanks
        // the signature does not cover.
        let o = gpg.cmd().arg("--decrypt").arg(&inrelease).output().unwrap();
        assert_eq!(
            text(&o.stdout),
            RELEASE.replace("trailing  ", "trailing"),
            "{uid}"
        );
        let changed = gpg.file("Release", RELEASE.replace("dev", "prod").as_bytes());
        assert!(
            !gpgv(&keyring, &[&detached, &changed]).status.success(),
            "{uid}"
        );
    }
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn keys_builder_makes_import_into_gnupg() {
    let key = tempfile::tempdir().unwrap();
    let out = key.path().join("signing.asc");
    let o = run(builder()
        .args([
            "key",
            "generate",
            "--name",
            "Repo",
            "--email",
            "repo@example.com",
            "--out",
        ])
        .arg(&out));
    assert!(o.status.success(), "{}", show(&o));
    let gpg = Gpg::new();
    // The secret key imports (GnuPG checks its self-signature and secret checksum)...
    sh(gpg.cmd().arg("--import").arg(&out));
    let listed = sh(gpg.cmd().args(["--with-colons", "--list-secret-keys"]));
    let signer = Signer::from_file(&out).unwrap();
    assert!(listed.contains(&signer.fingerprint()), "{listed}");
    assert!(listed.contains("Repo <repo@example.com>"), "{listed}");
    // ... and signs with it what builder verifies.
    let release = gpg.file("Release", RELEASE.as_bytes());
    sh(gpg
        .cmd()
        .args(["--clearsign", "-o"])
        .arg(gpg.home.path().join("InRelease"))
        .arg(&release));
    let signed = std::fs::read(gpg.home.path().join("InRelease")).unwrap();
    let verifier = Verifier::from_keyring(&signer.public_key_binary()).unwrap();
    let got = verifier.verify_clearsigned(&signed).unwrap();
    assert_eq!(got, RELEASE.replace("trailing  ", "trailing"));
}

/// What a keyring of `gpg`'s keys says of `signed`.
fn judge(gpg: &Gpg, fpr: &str, signed: &[u8]) -> Result<String, String> {
    let keyring = gpg.file("keyring.gpg", &gpg.export(&["--export", fpr]));
    let k = Keyring::load(&[keyring]).map_err(|e| format!("{e:#}"))?;
    k.verify_clearsigned(std::str::from_utf8(signed).unwrap(), "InRelease")
        .map(|(text, by)| {
            assert_eq!(by, fpr);
            text
        })
        .map_err(|e| format!("{e:#}"))
}

fn clearsign(gpg: &Gpg, args: &[&str]) -> Vec<u8> {
    let release = gpg.file("Release", RELEASE.as_bytes());
    let out = gpg.home.path().join("InRelease");
    sh(gpg
        .cmd()
        .args(args)
        .args(["--clearsign", "-o"])
        .arg(&out)
        .arg(&release));
    std::fs::read(out).unwrap()
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn texts_gnupg_clearsigns_verify_as_gpgv_judges_them() {
    let want = RELEASE.replace("trailing  ", "trailing");
    for algo in ["rsa2048", "ed25519", "nistp256"] {
        let gpg = Gpg::new();
        let fpr = gpg.generate(&format!("{algo}@example.com"), &[algo, "sign", "never"]);
        let signed = clearsign(&gpg, &[]);
        assert_eq!(
            judge(&gpg, &fpr, &signed).as_deref(),
            Ok(want.as_str()),
            "{algo}"
        );
        // A changed line, an added line, a header gpgv refuses, a `Hash:` header that does
        // not name the signature's hash: refused.
        let s = String::from_utf8(signed.clone()).unwrap();
        for (bad, why) in [
            (s.replace("Suite: dev", "Suite: prod"), "does not verify"),
            (
                s.replace("Suite: dev\n", "Suite: dev\nExtra: x\n"),
                "does not verify",
            ),
            (
                s.replacen("Hash: ", "Comment: x\nHash: ", 1),
                "only `Hash:`",
            ),
            (
                s.lines()
                    .map(|l| {
                        if l.starts_with("Hash: ") {
                            "Hash: SHA384"
                        } else {
                            l
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                "`Hash:` header does not name",
            ),
        ] {
            let err = judge(&gpg, &fpr, bad.as_bytes()).unwrap_err();
            assert!(err.contains(why), "{algo}: {err}");
        }
        // GnuPG cuts trailing CRs with the blanks: `a\r ` is signed as `a`, and a CR LF copy
        // of the message verifies too.
        let release = gpg.file("Release", b"Line: a\r \nNext: b\n");
        let out = gpg.home.path().join("InRelease");
        sh(gpg
            .cmd()
            .args(["--clearsign", "-o"])
            .arg(&out)
            .arg(&release));
        let cr = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            judge(&gpg, &fpr, cr.as_bytes()).as_deref(),
            Ok("Line: a\nNext: b\n")
        );
        let crlf = cr.replace('\n', "\r\n");
        assert_eq!(
            judge(&gpg, &fpr, crlf.as_bytes()).as_deref(),
            Ok("Line: a\nNext: b\n")
        );
        // SHA-1, which apt refuses (GnuPG makes it with RSA only).
        if algo.starts_with("rsa") {
            let weak = clearsign(&gpg, &["--digest-algo", "SHA1"]);
            let err = judge(&gpg, &fpr, &weak).unwrap_err();
            assert!(err.contains("weak hash (SHA1)"), "{algo}: {err}");
        }
        // Another key's keyring.
        let other = Gpg::new();
        let other_fpr = other.generate("other@example.com", &["ed25519", "sign", "never"]);
        let err = judge(&other, &other_fpr, &signed).unwrap_err();
        assert!(
            err.contains("no key of the keyring verifies"),
            "{algo}: {err}"
        );
    }
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn expired_and_revoked_keys_and_locked_secrets_are_refused() {
    // A key made in 2020 that expired a year later, and a text it signed then.
    let gpg = Gpg::new();
    let past = ["--faked-system-time", "20200101T000000!"];
    sh(gpg.cmd().args(past).args([
        "--quick-gen-key",
        "old@example.com",
        "ed25519",
        "sign",
        "1y",
    ]));
    let fpr = gpg.fingerprint("old@example.com");
    let signed = clearsign(&gpg, &past);
    let err = judge(&gpg, &fpr, &signed).unwrap_err();
    assert!(err.contains("it expired on 2020-12-31"), "{err}");

    // A key revoked with the certificate GnuPG made beside it.
    let gpg = Gpg::new();
    let fpr = gpg.generate("revoked@example.com", &["ed25519", "sign", "never"]);
    let signed = clearsign(&gpg, &[]);
    assert!(judge(&gpg, &fpr, &signed).is_ok());
    let rev = gpg.home.path().join(format!("openpgp-revocs.d/{fpr}.rev"));
    let cert = std::fs::read_to_string(&rev)
        .unwrap()
        .replace(":-----BEGIN", "-----BEGIN");
    let rev = gpg.file("rev.asc", cert.as_bytes());
    sh(gpg.cmd().arg("--import").arg(&rev));
    let err = judge(&gpg, &fpr, &signed).unwrap_err();
    assert!(err.contains("it is revoked"), "{err}");

    // A passphrase-protected secret key: a clear error, not a panic or a hang.
    let gpg = Gpg::new();
    let mut c = gpg.cmd();
    c.args([
        "--passphrase",
        "secret",
        "--quick-gen-key",
        "locked@example.com",
        "ed25519",
        "sign",
        "never",
    ]);
    sh(&mut c);
    let secret = gpg.export(&["--passphrase", "secret", "--armor", "--export-secret-keys"]);
    let err = Signer::from_armored(std::str::from_utf8(&secret).unwrap()).unwrap_err();
    assert!(
        format!("{err:#}").contains("passphrase-protected"),
        "{err:#}"
    );
}
