//! A fixture project for promotion and repository tests: a signing key, the `demo` recipe
//! packaged by the real binary, smoke reports as the smoke stage writes them, image tars from
//! builder's own writer, and a private apt root that verifies an environment repository.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

use super::*;

pub const RECIPE: &str = r#"
[package]
name = "demo"
version = "VERSION"
architecture = "amd64"
maintainer = "Release Engineering <release@example.com>"
description = """
Demo service for builder's promotion tests

A script, a conffile and a systemd unit.
"""
section = "net"
license = "MIT"
compression = "gzip"

[[files]]
from = "app/demo.sh"
to = "/usr/bin/demo"
mode = "0755"

[[files]]
from = "app/demo.conf"
to = "/etc/demo/demo.conf"

[[files]]
from = "app/payload.bin"
to = "/usr/share/demo/payload.bin"

[[systemd]]
unit = "app/demo.service"
enable = false
"#;

pub fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(p).unwrap()))
}

/// A fixture project with the `demo` recipe at `version`; `payload` bytes of filler let
/// tests make the package large enough to be killed mid-copy.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub keys: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let p = Project { dir, keys };
        let o = p.builder(&[
            "key",
            "generate",
            "--out",
            p.key().to_str().unwrap(),
            "--name",
            "promote test",
        ]);
        assert!(o.status.success(), "{}", both(&o));
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn dist(&self) -> PathBuf {
        self.path().join("dist")
    }
    pub fn key(&self) -> PathBuf {
        self.keys.path().join("signing.asc")
    }
    pub fn keyring(&self) -> PathBuf {
        self.keys.path().join("signing.asc.pub.gpg")
    }
    pub fn env_dir(&self, env: &str) -> PathBuf {
        self.dist().join("repos").join(env)
    }

    pub fn builder_cmd(&self, args: &[&str]) -> Command {
        let mut c = builder();
        c.arg("--project")
            .arg(self.path())
            .args(args)
            .env("BUILDER_SIGNING_KEY_FILE", self.key())
            .env_remove("BUILDER_SIGNING_KEY")
            .env_remove("BUILDER_REGISTRY")
            .current_dir(self.path());
        c
    }

    pub fn builder(&self, args: &[&str]) -> Output {
        run(&mut self.builder_cmd(args))
    }

    /// Writes the recipe at `version` and runs the real `builder package demo`.
    pub fn package(&self, version: &str, payload_kib: usize) -> PathBuf {
        let script = format!("#!/bin/sh\necho demo {version}\n");
        let payload: String = (0..payload_kib * 1024)
            .map(|i| char::from(b'a' + ((i * 7 + version.len()) % 26) as u8))
            .collect();
        write_files(
            self.path(),
            &[
                ("recipes/demo.toml", &RECIPE.replace("VERSION", version)),
                ("app/demo.sh", &script),
                ("app/demo.conf", "listen = 8080\n"),
                ("app/payload.bin", &payload),
                (
                    "app/demo.service",
                    "[Unit]\nDescription=Demo\n\n[Service]\nExecStart=/usr/bin/demo\n\n[Install]\nWantedBy=multi-user.target\n",
                ),
            ],
        );
        let o = self.builder(&["package", "demo", "--no-image"]);
        assert!(o.status.success(), "builder package: {}", both(&o));
        self.dist().join(format!("debs/demo_{version}_amd64.deb"))
    }

    /// Writes `dist/smoke/<run>/report.json` as the smoke stage does: the artifacts copied
    /// from `dist/manifest.json`, plus fields promotion does not read.
    pub fn report(&self, run: &str, passed: bool, reasons: &[&str]) {
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(self.dist().join("manifest.json")).unwrap()).unwrap();
        write_report(self, run, passed, reasons, &manifest["artifacts"]);
    }

    pub fn promote(&self, args: &[&str]) -> Output {
        let mut a = vec!["promote"];
        a.extend_from_slice(args);
        self.builder(&a)
    }
}

pub static REPORT_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Writes `dist/smoke/<run>/report.json` as the smoke stage does (a `gate` run whose checks
/// agree with `passed`), signed with the project's key like `builder smoke` signs it.
pub fn write_report(
    p: &Project,
    run: &str,
    passed: bool,
    reasons: &[&str],
    artifacts: &serde_json::Value,
) {
    let checks: Vec<serde_json::Value> = if passed {
        vec![serde_json::json!({ "name": "success_ratio", "passed": true })]
    } else {
        reasons
            .iter()
            .map(|r| serde_json::json!({ "name": "success_ratio", "passed": false, "message": r }))
            .collect()
    };
    // Strictly increasing `finished`, so "latest" is well defined even within one second.
    let n = REPORT_SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let report = serde_json::json!({
        "run": run,
        "mode": "gate",
        "started": "2030-01-01T00:00:00Z",
        "finished": format!("2030-01-01T00:{:02}:{:02}Z", n / 60, n % 60),
        "passed": passed,
        "checks": checks,
        "reasons": reasons,
        "artifacts": artifacts,
        "latency_ms": { "p50": 3.1, "p95": 9.0, "p99": 20.5 },
        "requests": 1500,
    });
    write_signed_report(p, run, &serde_json::to_vec_pretty(&report).unwrap());
}

/// Signs run `run`'s report.json again, with `key`.
pub fn resign_report(p: &Project, run: &str, key: &Path) {
    let dir = p.dist().join("smoke").join(run);
    let bytes = fs::read(dir.join("report.json")).unwrap();
    let signer = builder::sign::Signer::from_file(key).unwrap();
    fs::write(
        dir.join("report.json.asc"),
        signer.detached_sign(&bytes).unwrap(),
    )
    .unwrap();
}

/// Writes `bytes` as run `run`'s report.json with a detached signature by the project's key.
pub fn write_signed_report(p: &Project, run: &str, bytes: &[u8]) {
    let dir = p.dist().join("smoke").join(run);
    fs::create_dir_all(&dir).unwrap();
    let signer = builder::sign::Signer::from_file(&p.key()).unwrap();
    fs::write(
        dir.join("report.json.asc"),
        signer.detached_sign(bytes).unwrap(),
    )
    .unwrap();
    fs::write(dir.join("report.json"), bytes).unwrap();
}

pub fn both(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

pub fn pool_file(p: &Project, env: &str, version: &str) -> PathBuf {
    p.env_dir(env)
        .join(format!("pool/main/d/demo/demo_{version}_amd64.deb"))
}

pub fn history(p: &Project, env: &str) -> Vec<serde_json::Value> {
    fs::read_to_string(p.env_dir(env).join("history.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A private apt root on the host (never touching the host's apt state) that checks the
/// environment repository's signature and dates.
pub fn apt_verifies(env_dir: &Path, keyring: &Path) -> Result<(), String> {
    super::apt::HostApt::new(env_dir, keyring)
        .update()
        .map(|_| ())
}

/// A real OCI image tar written by builder's own writer: one small layer, a config.
pub fn write_image(dist: &Path, name: &str, version: &str) -> serde_json::Value {
    use builder::archive::{FileSource, Tree};
    use builder::oci::spec::{ImageConfig, RootFs, RunConfig};
    let work = tempfile::tempdir().unwrap();
    let mut tree = Tree::new();
    tree.add_dir("srv", 0o755).unwrap();
    tree.add_file(
        "srv/hello.txt",
        0o644,
        FileSource::Bytes(format!("hello {name} {version}\n").into_bytes().into()),
    )
    .unwrap();
    let layer =
        builder::oci::compress_tree(&tree, 1_700_000_000, &work.path().join("l.tar.gz")).unwrap();
    let config = ImageConfig {
        created: None,
        architecture: "amd64".into(),
        os: "linux".into(),
        config: RunConfig {
            entrypoint: vec!["/srv/hello".into()],
            ..Default::default()
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![layer.diff_id.to_string()],
        },
        history: Vec::new(),
    };
    let path = dist.join(format!("images/{name}_{version}.tar"));
    let w = builder::oci::write_image_tar(
        &path,
        &builder::oci::ImageParts {
            config: &config,
            layers: std::slice::from_ref(&layer),
            repo_tag: &format!("{name}:{version}"),
            ref_name: version,
            mtime: 1_700_000_000,
        },
    )
    .unwrap();
    serde_json::json!({
        "kind": "image", "name": name, "version": version,
        "path": format!("images/{name}_{version}.tar"),
        "sha256": w.tar_digest.hex(),
        "size": w.tar_size, "image_id": w.config_digest, "digest": w.manifest_digest,
        "tag": format!("{name}:{version}"),
    })
}

/// An image tar of `name` `version` and a passed smoke report of run `run` approving it.
pub fn approved_image(p: &Project, name: &str, version: &str, run: &str) -> serde_json::Value {
    let img = write_image(&p.dist(), name, version);
    write_report(p, run, true, &[], &serde_json::json!([img]));
    img
}

pub fn skopeo_digest(reference: &str) -> String {
    let out = sh(Command::new("skopeo").args(["inspect", "--tls-verify=false", reference]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}
