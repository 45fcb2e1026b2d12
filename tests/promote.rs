//! `builder promote` end to end with real tools: packages made by the real `builder package`,
//! smoke reports written as the smoke stage's contract says, apt-get inside a container from
//! the `bookworm` base image (update with date checks, install, upgrade, tampering refused),
//! SIGKILLed and concurrent promoters, and a real registry (Debian's `docker-registry`)
//! checked with `skopeo`.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::apt::*;
use common::project::*;
use common::registry::*;
use common::*;

/// The registry password of the TLS test, bcrypt at cost 5 as htpasswd stores it.
const S3CRET_BCRYPT: &str = "$2b$05$uPfPHVxj5240QnbtGyMeIetAdDw.JtSFfyX0Qt.OnaTCIP0F3vxoq";

#[test]
fn promotion_refuses_missing_failed_and_changed_artifacts_then_carries_the_same_bytes() {
    let p = Project::new();
    let deb = p.package("1.0", 4);

    // No report at all.
    let o = p.promote(&["--to", "dev"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(both(&o).contains("no smoke report in"), "{}", both(&o));
    assert!(!p.env_dir("dev").join("dists").exists());

    // The latest report failed.
    p.report("run-ok-old", true, &[]);
    p.report(
        "run-bad",
        false,
        &["p99 latency 812 ms > 500 ms", "success rate 0.91 < 0.98"],
    );
    let o = p.promote(&["--to", "dev"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        both(&o).contains(
            "the latest smoke run run-bad failed: p99 latency 812 ms > 500 ms; success rate \
             0.91 < 0.98; fix it and run `builder smoke` again"
        ),
        "{}",
        both(&o)
    );
    assert!(!p.env_dir("dev").join("dists").exists());

    // Passed, but the .deb changed after the report.
    p.report("run-1", true, &[]);
    let approved = sha256_file(&deb);
    let mut bytes = fs::read(&deb).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&deb, &bytes).unwrap();
    let changed = sha256_file(&deb);
    let o = p.promote(&["--to", "dev"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let msg = both(&o);
    assert!(
        msg.contains("deb demo 1.0") && msg.contains(&approved) && msg.contains(&changed),
        "{msg}"
    );
    assert!(
        !p.env_dir("dev").join("dists").exists(),
        "nothing may be written"
    );
    assert!(
        !p.env_dir("dev").join("pool").exists(),
        "nothing may be written"
    );

    // Restored: promotes, with the run id recorded.
    bytes[last] ^= 0x01;
    fs::write(&deb, &bytes).unwrap();
    let start = Instant::now();
    let o = p.promote(&["--to", "dev", "--json"]);
    let promote_time = start.elapsed();
    assert!(o.status.success(), "{}", both(&o));
    eprintln!(
        "promote --to dev (1 package): {:.3}s",
        promote_time.as_secs_f64()
    );
    let res: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(res["packages"][0]["sha256"], approved.as_str());
    assert_eq!(res["packages"][0]["run"], "run-1");
    assert_eq!(sha256_file(&pool_file(&p, "dev", "1.0")), approved);
    let h = history(&p, "dev");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["runs"][0], "run-1");
    assert_eq!(h[0]["artifacts"][0]["sha256"], approved.as_str());
    assert!(h[0]["source"].as_str().unwrap().contains("run-1"));

    // Out of order is refused; one step at a time carries the same bytes.
    let o = p.promote(&["--from", "dev", "--to", "prod"]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(both(&o).contains("skips staging"), "{}", both(&o));
    let o = p.promote(&["--from", "staging", "--to", "dev"]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    let o = p.promote(&["--from", "dev", "--to", "staging"]);
    assert!(o.status.success(), "{}", both(&o));
    assert_eq!(sha256_file(&pool_file(&p, "staging", "1.0")), approved);
    let h = history(&p, "staging");
    assert_eq!(h[0]["from_env"], "dev");
    assert_eq!(
        h[0]["runs"][0], "run-1",
        "staging traces back to the passed report"
    );

    // `--to prod` defaults to `--from staging`.
    let o = p.promote(&["--to", "prod"]);
    assert!(o.status.success(), "{}", both(&o));
    assert_eq!(sha256_file(&pool_file(&p, "prod", "1.0")), approved);

    // A changed pool file in the source environment is refused on the way on.
    let v2 = p.package("2.0", 4);
    p.report("run-2", true, &[]);
    let o = p.promote(&["--to", "dev"]);
    assert!(o.status.success(), "{}", both(&o));
    let staged = pool_file(&p, "dev", "2.0");
    let good = sha256_file(&v2);
    let mut b = fs::read(&staged).unwrap();
    b[100] ^= 0xff;
    fs::write(&staged, &b).unwrap();
    let o = p.promote(&["--from", "dev", "--to", "staging"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        both(&o).contains(&good) && both(&o).contains(&sha256_file(&staged)),
        "{}",
        both(&o)
    );
    b[100] ^= 0xff;
    fs::write(&staged, &b).unwrap();
    assert!(p
        .promote(&["--from", "dev", "--to", "staging"])
        .status
        .success());
    assert!(p.promote(&["--to", "prod"]).status.success());

    // Rollback of prod: 1.0 only again; listed by `repo list`.
    let o = p.promote(&["--to", "prod", "--rollback"]);
    assert!(o.status.success(), "{}", both(&o));
    let o = p.builder(&["--json", "repo", "list", "prod"]);
    assert!(o.status.success(), "{}", both(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let versions: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.0"]);

    // Skipping is allowed when the config says so.
    fs::write(p.path().join("promote.toml"), "allow_skip = true\n").unwrap();
    let o = p.promote(&["--from", "dev", "--to", "prod"]);
    assert!(o.status.success(), "{}", both(&o));
    fs::write(p.path().join("promote.toml"), "alow_skip = true\n").unwrap();
    let o = p.promote(&["--from", "dev", "--to", "prod"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "unknown keys are errors: {}",
        both(&o)
    );
}

// ---------------------------------------------------------------------------------------
// apt in a container

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn apt_in_a_container_installs_upgrades_and_refuses_tampering() {
    let p = Project::new();
    p.package("1.0.0", 4);
    p.report("apt-run-1", true, &[]);
    let o = p.promote(&["--to", "dev"]);
    assert!(o.status.success(), "{}", both(&o));

    // Tampered copies live beside the real repository in the mounted directory.
    let c = AptContainer::start(&p.dist().join("repos"), &p.keyring());
    let list = |env: &str| AptContainer::source(env, "dev");
    let start = Instant::now();
    let o = c.exec(&format!(
        "{} && {APT} update && {APT} install -y demo",
        list("dev")
    ));
    let install_time = start.elapsed();
    let t = both(&o);
    assert!(o.status.success(), "{t}");
    assert!(!t.contains("W:") && !t.contains("E:"), "{t}");
    eprintln!(
        "apt-get update + install in a container: {:.2}s",
        install_time.as_secs_f64()
    );

    let o = c.exec(
        "demo && cat /etc/demo/demo.conf && test -f /lib/systemd/system/demo.service && \
         dpkg-query -W -f='${Version} ${Conffiles}\\n' demo",
    );
    let t = both(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("demo 1.0.0") && t.contains("listen = 8080"),
        "{t}"
    );
    assert!(
        t.contains("1.0.0  /etc/demo/demo.conf") || t.contains("/etc/demo/demo.conf "),
        "{t}"
    );

    // A newer promoted version upgrades cleanly; the edited conffile is kept.
    p.package("1.1.0", 4);
    p.report("apt-run-2", true, &[]);
    let o = p.promote(&["--to", "dev"]);
    assert!(o.status.success(), "{}", both(&o));
    let o = c.exec(&format!(
        "echo 'listen = 9090' > /etc/demo/demo.conf && {APT} update && \
         {APT} install -y --only-upgrade -o Dpkg::Options::=--force-confold demo && demo && \
         cat /etc/demo/demo.conf"
    ));
    let t = both(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("demo 1.1.0") && t.contains("listen = 9090"),
        "{t}"
    );

    // Tampering: a copy of dev with an edited Packages, and one with a changed .deb.
    let repos = p.dist().join("repos");
    for (name, what) in [("tampered-packages", "packages"), ("tampered-deb", "deb")] {
        let dir = repos.join(name);
        copy_tree(&p.env_dir("dev"), &dir);
        if what == "packages" {
            let pk = fs::canonicalize(dir.join("dists/dev/main/binary-amd64/Packages")).unwrap();
            let s = fs::read_to_string(&pk)
                .unwrap()
                .replace("Section: net", "Section: evil");
            fs::remove_file(&pk).unwrap();
            fs::write(&pk, s).unwrap();
            // apt prefers Packages.gz by hash; remove it so the edited file is what it reads.
            for gz in walkdir::WalkDir::new(dir.join(".generations")) {
                let gz = gz.unwrap();
                if gz.file_name().to_string_lossy().len() == 64 || gz.file_name() == "Packages.gz" {
                    let _ = fs::remove_file(gz.path());
                }
            }
        } else {
            let deb = dir.join("pool/main/d/demo/demo_1.1.0_amd64.deb");
            let mut b = fs::read(&deb).unwrap();
            let n = b.len() - 10;
            b[n] ^= 0x55;
            fs::write(&deb, b).unwrap();
        }
    }
    let o = c.exec(&format!("{} && {APT} update", list("tampered-packages")));
    let t = both(&o);
    assert!(
        !o.status.success() || t.contains("E:") || t.contains("W:"),
        "a tampered Packages must be refused: {t}"
    );
    assert!(
        t.contains("Hash Sum mismatch") || t.contains("File has unexpected size"),
        "{t}"
    );
    eprintln!("tampered Packages: {}", problems(&t));
    let o = c.exec(&format!(
        "{} && {APT} update && {APT} install -y --reinstall demo",
        list("tampered-deb")
    ));
    let t = both(&o);
    assert!(!o.status.success(), "a tampered .deb must be refused: {t}");
    assert!(
        t.contains("Hash Sum mismatch") || t.contains("File has unexpected size"),
        "{t}"
    );
    eprintln!("tampered .deb: {}", problems(&t));
}

fn problems(t: &str) -> String {
    t.lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:") || l.starts_with("Err:"))
        .collect::<Vec<_>>()
        .join(" | ")
}

// ---------------------------------------------------------------------------------------
// crashes and concurrency

#[test]
fn sigkilled_promoters_never_break_the_repository_and_concurrent_ones_serialise() {
    let p = Project::new();
    p.package("0.1", 4);
    p.report("kill-0", true, &[]);
    assert!(p.promote(&["--to", "dev"]).status.success());
    let env = p.env_dir("dev");

    let kills = 15;
    let mut killed_mid_run = 0;
    for round in 0..kills {
        // A larger package each round makes the copy long enough to be cut.
        let version = format!("1.{round}");
        p.package(&version, 2048);
        p.report(&format!("kill-{}", round + 1), true, &[]);
        let mut child = p
            .builder_cmd(&["promote", "--to", "dev"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill it while it writes: as soon as a temp file or staging generation appears
        // (then a few ms more, to land in different phases), whatever the machine's speed.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let writing = walkdir::WalkDir::new(&env)
                .into_iter()
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().contains(".tmp-"));
            if writing {
                std::thread::sleep(Duration::from_millis(round as u64 % 4));
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.code().is_none() {
            killed_mid_run += 1;
        }
        apt_verifies(&env, &p.keyring())
            .unwrap_or_else(|e| panic!("round {round}: apt refuses the repository: {e}"));
        // The next promotion succeeds and completes what the killed one left.
        let o = p.promote(&["--to", "dev"]);
        assert!(o.status.success(), "round {round}: {}", both(&o));
        apt_verifies(&env, &p.keyring()).unwrap();
        assert_eq!(
            sha256_file(&pool_file(&p, "dev", &version)),
            sha256_file(&p.dist().join(format!("debs/demo_{version}_amd64.deb")))
        );
    }
    eprintln!("{killed_mid_run}/{kills} promoters were killed before they finished");
    assert!(
        killed_mid_run >= kills / 3,
        "too few kills landed mid-run: {killed_mid_run}"
    );
    let leftovers: Vec<_> = walkdir::WalkDir::new(&env)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Two promoters at once: both finish, one after the other; the second finds the
    // artifacts already there and writes nothing.
    p.package("2.0", 4);
    p.report("concurrent", true, &[]);
    let before = history(&p, "dev").len();
    let spawn = || {
        p.builder_cmd(&["promote", "--to", "dev"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", both(&a));
    assert!(b.status.success(), "{}", both(&b));
    let waited = [&a, &b].iter().any(|o| text(&o.stderr).contains("Waiting"));
    eprintln!("concurrent promoters: one waited for the lock: {waited}");
    let h = history(&p, "dev");
    assert_eq!(h.len(), before + 1, "{h:?}");
    let g1 = h[before]["generation"].as_u64().unwrap();
    assert!(env
        .join(format!(".generations/{g1}/generation.json"))
        .is_file());
    assert!(
        [&a, &b]
            .iter()
            .any(|o| text(&o.stderr).contains("already holds these artifacts")),
        "{}\n{}",
        both(&a),
        both(&b)
    );
    apt_verifies(&env, &p.keyring()).unwrap();
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn images_land_in_an_oci_layout_and_a_registry_with_the_same_digest() {
    let p = Project::new();
    let reg = start_registry();
    let addr = format!("127.0.0.1:{}", reg.port);
    let img = approved_image(&p, "web", "1.0.0", "img-1");
    let digest = img["digest"].as_str().unwrap().to_string();

    let start = Instant::now();
    let o = p.promote(&["--to", "dev", "--registry", &addr, "--json"]);
    let total = start.elapsed();
    assert!(o.status.success(), "{}", both(&o));
    let res: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    eprintln!(
        "promote with push: total {:.3}s, promote {:.3}s, push {:.3}s",
        total.as_secs_f64(),
        res["promote_seconds"].as_f64().unwrap(),
        res["push_seconds"].as_f64().unwrap()
    );
    assert_eq!(res["pushed"][0]["digest"], digest.as_str());
    assert_eq!(
        skopeo_digest(&format!("docker://{addr}/dev/web:1.0.0")),
        digest,
        "the registry must serve the approved manifest"
    );
    // The environment's OCI layout holds the image under `<name>:<version>`.
    let layout = p.env_dir("dev").join("images");
    assert_eq!(
        skopeo_digest(&format!("oci:{}:web:1.0.0", layout.display())),
        digest
    );
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "web:1.0.0"
    );

    // A changed image is refused before anything is written.
    let img2 = approved_image(&p, "web", "2.0.0", "img-2");
    let tar = p.dist().join("images/web_2.0.0.tar");
    let mut b = fs::read(&tar).unwrap();
    // Flip a byte inside the last blob region (not the tar padding): the report's tar
    // sha256 then differs.
    let n = b.len() / 2;
    b[n] ^= 0x01;
    fs::write(&tar, &b).unwrap();
    let o = p.promote(&["--to", "dev", "--registry", &addr]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(both(&o).contains("image web 2.0.0"), "{}", both(&o));
    b[n] ^= 0x01;
    fs::write(&tar, &b).unwrap();
    let o = p.promote(&["--to", "dev", "--registry", &addr]);
    assert!(o.status.success(), "{}", both(&o));

    // dev → staging: the same digest under staging/, blobs skipped where present.
    let o = p.promote(&[
        "--from",
        "dev",
        "--to",
        "staging",
        "--registry",
        &addr,
        "--json",
    ]);
    assert!(o.status.success(), "{}", both(&o));
    assert_eq!(
        skopeo_digest(&format!("docker://{addr}/staging/web:2.0.0")),
        img2["digest"].as_str().unwrap()
    );
    let o = p.builder(&["repo", "list", "staging"]);
    assert!(
        both(&o).contains(img2["digest"].as_str().unwrap()),
        "{}",
        both(&o)
    );

    // Rollback restores the previous image list in index.json.
    let o = p.promote(&["--to", "dev", "--rollback"]);
    assert!(o.status.success(), "{}", both(&o));
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(refs, ["web:1.0.0"]);
}

/// A registry with TLS (a private CA) and a password (htpasswd, Basic auth): the push logs
/// in, trusts the CA from BUILDER_REGISTRY_CA, and keeps the digest; a wrong password, a
/// missing login and an untrusted certificate are each refused with what to set.
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn push_to_a_tls_registry_with_a_login() {
    // A private CA and a server certificate for 127.0.0.1 that it signed.
    let certs = tempfile::tempdir().unwrap();
    let at = |f: &str| certs.path().join(f).to_str().unwrap().to_string();
    let openssl = |args: &str| sh(Command::new("openssl").args(args.split_whitespace()));
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(&format!(
        "req -x509 {ec} -days 2 -subj /CN=builder-test-CA -keyout {} -out {}",
        at("ca.key"),
        at("ca.pem")
    ));
    openssl(&format!(
        "req {ec} -subj /CN=127.0.0.1 -keyout {} -out {}",
        at("key.pem"),
        at("srv.csr")
    ));
    fs::write(
        at("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&format!(
        "x509 -req -in {} -CA {} -CAkey {} -CAcreateserial -days 2 -extfile {} -out {}",
        at("srv.csr"),
        at("ca.pem"),
        at("ca.key"),
        at("ext.cnf"),
        at("cert.pem")
    ));
    let (ca, cert, key) = (
        certs.path().join("ca.pem"),
        certs.path().join("cert.pem"),
        certs.path().join("key.pem"),
    );
    let (cert2, key2) = (cert.clone(), key.clone());
    let reg = start_registry_with(move |dir| {
        // bcrypt of "s3cret" at cost 5, made with libxcrypt (`crypt(3)`, `$2b$`) and checked
        // by the registry itself below: a fixture, so the tests need no bcrypt crate.
        fs::write(dir.join("htpasswd"), format!("ci:{S3CRET_BCRYPT}\n")).unwrap();
        format!(
            "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: test\n    \
             path: {}\n",
            cert2.display(),
            key2.display(),
            dir.join("htpasswd").display()
        )
    });
    let addr = format!("https://127.0.0.1:{}", reg.port);
    let p = Project::new();
    let img = approved_image(&p, "api", "1.0.0", "tls-1");
    let digest = img["digest"].as_str().unwrap().to_string();
    let push = |user: Option<&str>, password: &str, ca: Option<&Path>| {
        let mut c = p.builder_cmd(&["promote", "--to", "dev", "--registry", &addr, "--json"]);
        c.env_remove("BUILDER_REGISTRY_USERNAME")
            .env_remove("BUILDER_REGISTRY_PASSWORD")
            .env_remove("BUILDER_REGISTRY_CA");
        if let Some(u) = user {
            c.env("BUILDER_REGISTRY_USERNAME", u)
                .env("BUILDER_REGISTRY_PASSWORD", password);
        }
        if let Some(ca) = ca {
            c.env("BUILDER_REGISTRY_CA", ca);
        }
        run(&mut c)
    };

    let o = push(Some("ci"), "s3cret", None);
    assert_eq!(o.status.code(), Some(3), "{}", both(&o));
    assert!(both(&o).contains("BUILDER_REGISTRY_CA"), "{}", both(&o));
    let o = push(None, "", Some(&ca));
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(both(&o).contains("requires a login"), "{}", both(&o));
    let o = push(Some("ci"), "wrong", Some(&ca));
    assert_eq!(o.status.code(), Some(3), "{}", both(&o));
    assert!(both(&o).contains("refused the login"), "{}", both(&o));

    let o = push(Some("ci"), "s3cret", Some(&ca));
    assert!(o.status.success(), "{}", both(&o));
    let res: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(res["pushed"][0]["digest"], digest.as_str(), "{res}");
    let out = sh(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--creds",
        "ci:s3cret",
        &format!("docker://127.0.0.1:{}/dev/api:1.0.0", reg.port),
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], digest.as_str());
}

/// The Bearer flow end to end: 401 with a challenge, a token fetched from the realm with
/// the Basic login for the challenge's scope, the request sent again with it.
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn push_through_a_bearer_token_service() {
    let reg = start_registry();
    let front = start_token_front(reg.port);
    let p = Project::new();
    let img = approved_image(&p, "api", "2.0.0", "bearer-1");
    let digest = img["digest"].as_str().unwrap().to_string();
    let addr = format!("127.0.0.1:{}", front.port);
    let push = |password: &str| {
        run(p
            .builder_cmd(&["promote", "--to", "dev", "--registry", &addr, "--json"])
            .env("BUILDER_REGISTRY_USERNAME", "ci")
            .env("BUILDER_REGISTRY_PASSWORD", password)
            .env_remove("BUILDER_REGISTRY_CA"))
    };
    let o = push("wrong");
    assert_eq!(o.status.code(), Some(3), "{}", both(&o));
    assert!(both(&o).contains("refused the login"), "{}", both(&o));
    let o = push("s3cret");
    assert!(o.status.success(), "{}", both(&o));
    let res: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(res["pushed"][0]["digest"], digest.as_str(), "{res}");
    let scopes = front.scopes.lock().unwrap().clone();
    assert!(!scopes.is_empty(), "no token was asked for");
    assert!(
        scopes.iter().all(|s| s == "repository:dev/api:pull,push"),
        "{scopes:?}"
    );
    // The registry behind the front holds the approved manifest.
    assert_eq!(
        skopeo_digest(&format!("docker://127.0.0.1:{}/dev/api:2.0.0", reg.port)),
        digest
    );
}

/// `builder repo` finds the repositories where promote.toml's `root` puts them, and signs
/// with its `signing_key`, exactly as `builder promote` does.
#[test]
fn repo_commands_follow_promote_toml() {
    let p = Project::new();
    fs::write(
        p.path().join("promote.toml"),
        format!(
            "root = \"published\"\nsigning_key = \"{}\"\n",
            p.key().display()
        ),
    )
    .unwrap();
    for (i, v) in ["1.0.0", "2.0.0"].iter().enumerate() {
        approved_image(&p, "web", v, &format!("toml-{i}"));
        let o = run(p
            .builder_cmd(&["promote", "--to", "dev"])
            .env_remove("BUILDER_SIGNING_KEY_FILE"));
        assert!(o.status.success(), "{}", both(&o));
    }
    assert!(p.path().join("published/dev/images/index.json").exists());
    assert!(!p.env_dir("dev").exists(), "nothing goes to dist/repos");
    let o = p.builder(&["repo", "list", "dev"]);
    assert!(both(&o).contains("2.0.0"), "{}", both(&o));
    let o = run(p
        .builder_cmd(&["--json", "repo", "prune", "dev", "--keep", "1"])
        .env_remove("BUILDER_SIGNING_KEY_FILE"));
    assert!(o.status.success(), "{}", both(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["removed_images"][0]["version"], "1.0.0", "{report}");
    assert!(
        !p.env_dir("dev").exists(),
        "prune must not create dist/repos/dev"
    );
}

/// A damaged blob already in the environment is copied again from the approved source, not
/// published as approved; two versions that map to one tag are refused.
#[test]
fn damaged_blobs_are_repaired_and_tag_collisions_refused() {
    let p = Project::new();
    let img = approved_image(&p, "web", "1.0~rc1", "blob-1");
    let o = p.promote(&["--to", "dev"]);
    assert!(o.status.success(), "{}", both(&o));
    let blobs = p.env_dir("dev").join("images/blobs/sha256");
    let manifest = blobs.join(
        img["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    );
    let layer = fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| fs::metadata(p).unwrap().len() > 100 && *p != manifest)
        .unwrap();
    let good = fs::read(&layer).unwrap();
    fs::write(&layer, b"damaged").unwrap();
    let o = p.promote(&["--to", "dev"]);
    assert!(o.status.success(), "{}", both(&o));
    assert_eq!(
        fs::read(&layer).unwrap(),
        good,
        "the damaged blob was not repaired"
    );

    approved_image(&p, "web", "1.0+rc1", "blob-2");
    let o = p.promote(&["--to", "dev"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        both(&o).contains("would share the tag `1.0_rc1`"),
        "{}",
        both(&o)
    );
}

/// `promote --from dev` holds dev's lock from reading it until staging switched, so a
/// rollback of dev cannot slip in between: while dev is locked the promotion waits.
#[test]
fn promote_from_an_env_waits_for_its_lock() {
    let p = Project::new();
    approved_image(&p, "web", "1.0.0", "lock-1");
    let o = p.promote(&["--to", "dev"]);
    assert!(o.status.success(), "{}", both(&o));

    let held = builder::fslock::FileLock::acquire(&p.env_dir("dev").join(".lock"), || {}).unwrap();
    let mut child = p
        .builder_cmd(&["promote", "--from", "dev", "--to", "staging"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let early = child.try_wait().unwrap();
    drop(held);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        early.is_none(),
        "promote --from dev did not wait for dev's lock: {err}"
    );
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("Waiting") && err.contains("dev/.lock"),
        "{err}"
    );
    assert!(p.env_dir("staging/images/index.json").exists());
}

/// `repo prune --keep 1` drops old image versions from `images/index.json` and deletes the
/// blobs no remaining generation references, keeping what the newest version needs.
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn prune_drops_old_images_and_their_blobs() {
    let p = Project::new();
    let mut imgs = Vec::new();
    for (i, v) in ["1.0.0", "1.10.0", "1.9.0"].iter().enumerate() {
        let img = approved_image(&p, "web", v, &format!("prune-{i}"));
        let o = p.promote(&["--to", "dev"]);
        assert!(o.status.success(), "{}", both(&o));
        imgs.push(img);
    }
    let layout = p.env_dir("dev").join("images");
    let blobs = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir.join("blobs/sha256"))
            .unwrap()
            .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        v.sort();
        v
    };
    let before = blobs(&layout);
    for img in &imgs {
        assert!(before.contains(&img["digest"].as_str().unwrap().to_string()));
    }

    let o = p.builder(&["--json", "repo", "prune", "dev", "--keep", "1"]);
    assert!(o.status.success(), "{}", both(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let removed: Vec<&str> = report["removed_images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["version"].as_str().unwrap())
        .collect();
    // Debian version order: 1.10.0 is the newest.
    assert_eq!(removed, ["1.9.0", "1.0.0"], "{report}");
    let after = blobs(&layout);
    assert_eq!(
        report["removed_blobs"],
        (before.len() - after.len()) as u64,
        "{report}"
    );
    let newest = imgs[1]["digest"].as_str().unwrap();
    assert!(after.contains(&newest.to_string()), "{after:?}");
    for old in [&imgs[0], &imgs[2]] {
        let d = old["digest"].as_str().unwrap().to_string();
        assert!(!after.contains(&d), "{d} left in {after:?}");
    }
    // What is left is a valid layout that skopeo reads, listing only the newest version.
    assert_eq!(
        skopeo_digest(&format!("oci:{}:web:1.10.0", layout.display())),
        newest
    );
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    let o = p.builder(&["repo", "list", "dev"]);
    assert!(
        !both(&o).contains("1.9.0") && both(&o).contains("1.10.0"),
        "{}",
        both(&o)
    );
    let o = p.builder(&["repo", "history", "dev"]);
    assert!(
        both(&o).lines().last().unwrap().contains("prune"),
        "{}",
        both(&o)
    );
}

// ---------------------------------------------------------------------------------------
// CI examples

#[test]
fn ci_examples_run_readmes_commands_and_their_promotions_parse() {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(readme.contains(".ci/setup") && readme.contains("cargo run --release -- ci"));
    let p = Project::new();
    for file in ["github-actions.yml", "gitlab-ci.yml"] {
        let text = fs::read_to_string(repo().join("examples/ci").join(file)).unwrap();
        assert!(text.contains("bash .ci/setup"), "{file}");
        assert!(
            text.contains("cargo run --release --locked -- ci"),
            "{file}"
        );
        assert!(
            text.contains("junit.xml") && text.contains("dist/"),
            "{file}"
        );
        // Every promotion the example runs is a valid command line: on an empty project it
        // is refused as a failed stage (1, nothing to promote), never as a usage error (2).
        for line in text.lines().filter(|l| l.contains("-- promote ")) {
            let cmd = line.split("-- promote ").nth(1).unwrap().trim();
            let args: Vec<&str> = cmd.split_whitespace().collect();
            let o = p.promote(&args);
            if args.contains(&"--rollback") {
                let t = both(&o);
                assert!(t.contains("no published generation to roll back"), "{t}");
                continue;
            }
            assert_eq!(o.status.code(), Some(1), "{file}: `{cmd}`: {}", both(&o));
            assert!(
                both(&o).contains("holds nothing to promote"),
                "{}",
                both(&o)
            );
        }
    }
}

fn gpgv_ok(keyring: &Path, inrelease: &Path) -> bool {
    gpgv(keyring, &[inrelease]).status.success()
}

/// `<env>/signing-key.gpg` changes only with the generation it verifies; a different key
/// is refused (naming both fingerprints) unless `--rotate-key`, for promote and repo alike;
/// the same artifacts again write nothing.
#[test]
fn the_repository_key_changes_only_by_rotation_and_only_with_its_generation() {
    let p = Project::new();
    p.package("1.0", 4);
    p.report("k-1", true, &[]);
    assert!(p.promote(&["--to", "dev"]).status.success());
    let env = p.env_dir("dev");
    let key_file = env.join("signing-key.gpg");
    let old_key = fs::read(&key_file).unwrap();
    assert_eq!(
        fs::read_link(&key_file).unwrap(),
        Path::new("dists/signing-key.gpg")
    );
    let old_fpr = builder::sign::public_key_fingerprint(&old_key).unwrap();

    // The same artifacts again: nothing new.
    let o = p.promote(&["--to", "dev"]);
    assert!(o.status.success(), "{}", both(&o));
    assert!(
        both(&o).contains("`dev` already holds these artifacts (generation 1)"),
        "{}",
        both(&o)
    );
    assert_eq!(history(&p, "dev").len(), 1);

    // A flipped byte in a published pool file is repaired by promoting the same artifacts
    // again (as damaged image blobs are), still without a new generation.
    let pooled = pool_file(&p, "dev", "1.0");
    let good = fs::read(&pooled).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    fs::write(&pooled, &bad).unwrap();
    let o = p.promote(&["--to", "dev"]);
    assert!(o.status.success(), "{}", both(&o));
    assert!(both(&o).contains("was damaged"), "{}", both(&o));
    assert_eq!(fs::read(&pooled).unwrap(), good);
    assert_eq!(history(&p, "dev").len(), 1);

    let other = p.keys.path().join("other.asc");
    let o = p.builder(&["key", "generate", "--out", other.to_str().unwrap()]);
    assert!(o.status.success(), "{}", both(&o));
    let other_s = other.to_str().unwrap();
    p.package("2.0", 4);
    p.report("k-2", true, &[]);
    let new_fpr = builder::sign::Signer::from_file(&other)
        .unwrap()
        .fingerprint();
    // A report signed by the old key is not trusted by a promotion with the new one...
    let o = p.promote(&["--to", "dev", "--signing-key", other_s, "--rotate-key"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        both(&o).contains(&format!(
            "signed by key {old_fpr}, not by this project's key {new_fpr}"
        )),
        "{}",
        both(&o)
    );
    // ...smoke signs with the key promotion uses.
    resign_report(&p, "k-2", &other);
    let o = p.promote(&["--to", "dev", "--signing-key", other_s]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    let msg = both(&o);
    assert!(
        msg.contains(&old_fpr) && msg.contains(&new_fpr) && msg.contains("--rotate-key"),
        "{msg}"
    );
    assert_eq!(history(&p, "dev").len(), 1);
    assert!(!pool_file(&p, "dev", "2.0").exists());

    // A rotation whose generation cannot be written leaves the old key beside the old
    // signatures (a by-hash file the next generation carries over is missing).
    let by_hash = env.join("dists/dev/main/binary-amd64/by-hash/SHA256");
    let saved = p.keys.path().join("by-hash");
    fs::create_dir_all(&saved).unwrap();
    for e in fs::read_dir(&by_hash).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), saved.join(e.file_name())).unwrap();
        fs::remove_file(e.path()).unwrap();
    }
    let o = p.promote(&["--to", "dev", "--signing-key", other_s, "--rotate-key"]);
    assert!(!o.status.success(), "{}", both(&o));
    assert_eq!(
        fs::read(&key_file).unwrap(),
        old_key,
        "the key changed alone"
    );
    assert!(gpgv_ok(&key_file, &env.join("dists/dev/InRelease")));
    for e in fs::read_dir(&saved).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), by_hash.join(e.file_name())).unwrap();
    }

    let o = p.promote(&["--to", "dev", "--signing-key", other_s, "--rotate-key"]);
    assert!(o.status.success(), "{}", both(&o));
    assert!(
        both(&o).contains("rotating the signing key"),
        "{}",
        both(&o)
    );
    let new_key = fs::read(&key_file).unwrap();
    assert_eq!(
        builder::sign::public_key_fingerprint(&new_key).unwrap(),
        new_fpr
    );
    assert!(gpgv_ok(&key_file, &env.join("dists/dev/InRelease")));
    apt_verifies(&env, &key_file).unwrap();

    // `repo rollback` re-signs: the old key (BUILDER_SIGNING_KEY_FILE) is now the other one.
    let o = p.builder(&["repo", "rollback", "dev"]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(both(&o).contains(&new_fpr), "{}", both(&o));
    let o = p.builder(&["repo", "rollback", "dev", "--rotate-key"]);
    assert!(o.status.success(), "{}", both(&o));
    assert_eq!(fs::read(&key_file).unwrap(), old_key);
    apt_verifies(&env, &key_file).unwrap();
}

/// `--signing-key` > BUILDER_SIGNING_KEY > BUILDER_SIGNING_KEY_FILE > promote.toml > the
/// generated key; a bad promote.toml key names promote.toml.
#[test]
fn signing_key_precedence_and_where_a_bad_key_came_from() {
    let p = Project::new();
    let xdg = tempfile::tempdir().unwrap();
    p.package("1.0", 4);
    p.report("pk-1", true, &[]);
    fs::write(
        p.path().join("promote.toml"),
        "signing_key = \"missing.asc\"\n",
    )
    .unwrap();
    // The environment wins over promote.toml.
    let o = run(p
        .builder_cmd(&["promote", "--to", "dev"])
        .env("XDG_CONFIG_HOME", xdg.path()));
    assert!(o.status.success(), "{}", both(&o));
    assert!(
        both(&o).contains("BUILDER_SIGNING_KEY_FILE"),
        "{}",
        both(&o)
    );
    // Without it, promote.toml's key is used, and its error says so.
    p.package("2.0", 4);
    p.report("pk-2", true, &[]);
    let o = run(p
        .builder_cmd(&["promote", "--to", "dev"])
        .env("XDG_CONFIG_HOME", xdg.path())
        .env_remove("BUILDER_SIGNING_KEY_FILE"));
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(
        both(&o).contains("`signing_key` in") && both(&o).contains("promote.toml"),
        "{}",
        both(&o)
    );
    // Nothing configured: the key pipeline/ci generated is used when it exists.
    fs::remove_file(p.path().join("promote.toml")).unwrap();
    fs::create_dir_all(xdg.path().join("builder")).unwrap();
    fs::copy(p.key(), xdg.path().join("builder/signing-key.asc")).unwrap();
    let o = run(p
        .builder_cmd(&["promote", "--to", "dev"])
        .env("XDG_CONFIG_HOME", xdg.path())
        .env_remove("BUILDER_SIGNING_KEY_FILE"));
    assert!(o.status.success(), "{}", both(&o));
    assert!(
        both(&o).contains("generated by pipeline/ci"),
        "{}",
        both(&o)
    );
}

/// Unknown environments and bad `environments` entries are usage errors that create nothing.
#[test]
fn unknown_and_invalid_environments_are_refused_before_anything_is_created() {
    let p = Project::new();
    for cmd in [
        vec!["repo", "list", "nope"],
        vec!["repo", "history", "nope"],
        vec!["repo", "prune", "nope", "--keep", "1"],
        vec!["repo", "rollback", "nope"],
    ] {
        let o = p.builder(&cmd);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}: {}", both(&o));
        assert!(
            both(&o).contains("unknown environment `nope`")
                && both(&o).contains("dev → staging → prod"),
            "{}",
            both(&o)
        );
        assert!(!p.env_dir("nope").exists(), "{cmd:?} created it");
    }
    for (envs, bad) in [("[\"../x\", \"dev\"]", "`../x`"), ("[\"\"]", "``")] {
        fs::write(
            p.path().join("promote.toml"),
            format!("environments = {envs}\n"),
        )
        .unwrap();
        let o = p.promote(&["--to", "dev"]);
        assert_eq!(o.status.code(), Some(2), "{}", both(&o));
        let msg = both(&o);
        assert!(
            msg.contains("`environments`: ")
                && msg.contains("promote.toml:1:")
                && msg.contains(&format!("{bad} is not a valid environment name")),
            "{msg}"
        );
    }
}

/// An unreadable old report is skipped with a warning; asked for by `--run`, or newer than
/// every readable one, it is an error. An unknown `--run` is a usage error listing run ids.
#[test]
fn unreadable_old_reports_are_skipped_and_unknown_runs_listed() {
    let p = Project::new();
    p.package("1.0", 4);
    let broken = p.dist().join("smoke/old/report.json");
    fs::create_dir_all(broken.parent().unwrap()).unwrap();
    fs::write(&broken, "{").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    p.report("good-1", true, &[]);
    let o = p.promote(&["--to", "dev"]);
    assert!(o.status.success(), "{}", both(&o));
    let msg = both(&o);
    assert!(
        msg.contains("skipping `")
            && msg.contains("smoke/old/report.json")
            && msg.contains("delete"),
        "{msg}"
    );
    let o = p.promote(&["--to", "dev", "--run", "old"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(both(&o).contains("smoke/old/report.json"), "{}", both(&o));

    let o = p.promote(&["--to", "dev", "--run", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(
        both(&o).contains("no smoke run `nope`") && both(&o).contains("`good-1`"),
        "{}",
        both(&o)
    );

    // The newest report unreadable: the latest result is unknown.
    std::thread::sleep(Duration::from_millis(20));
    fs::write(&broken, "{").unwrap();
    let o = p.promote(&["--to", "dev"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(both(&o).contains("cannot be read"), "{}", both(&o));
}

/// The smoke report is verified, not believed: each forgery the hostile review used to
/// publish an untested package is refused with a message naming what is wrong, and nothing
/// reaches the environment. Then the genuine report promotes, and a report edited after the
/// promotion stops the next environment.
#[test]
fn forged_unsigned_and_inconsistent_reports_are_refused() {
    let p = Project::new();
    let deb = p.package("1.0.0", 4);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(p.dist().join("manifest.json")).unwrap()).unwrap();
    let artifacts = manifest["artifacts"].clone();
    let report = |run: &str, edit: &dyn Fn(&mut serde_json::Value)| -> Vec<u8> {
        write_report(&p, run, true, &[], &artifacts);
        let path = p.dist().join("smoke").join(run).join("report.json");
        let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        edit(&mut v);
        serde_json::to_vec_pretty(&v).unwrap()
    };
    let refused = |run: &str, expect: &[&str]| {
        let o = p.promote(&["--to", "dev", "--run", run]);
        assert_eq!(o.status.code(), Some(1), "{run}: {}", both(&o));
        for e in expect {
            assert!(both(&o).contains(e), "{run}: wants `{e}` in {}", both(&o));
        }
        assert!(!p.env_dir("dev").join("dists").exists(), "{run} published");
    };

    // 1. `passed: true` while every check failed, signed as smoke signs.
    let bytes = report("all-checks-failed", &|v| {
        v["checks"] = serde_json::json!([
            { "name": "success_ratio", "passed": false },
            { "name": "p99_latency", "passed": false },
        ]);
    });
    write_signed_report(&p, "all-checks-failed", &bytes);
    refused(
        "all-checks-failed",
        &["says passed = true", "success_ratio, p99_latency"],
    );

    // 2. A repackaged .deb's sha256 put into a signed report after it was signed.
    let evil = p.dist().join("debs/evil.deb");
    let mut repacked = fs::read(&deb).unwrap();
    let last = repacked.len() - 1;
    repacked[last] ^= 1;
    fs::write(&evil, &repacked).unwrap();
    write_report(&p, "edited", true, &[], &artifacts);
    let path = p.dist().join("smoke/edited/report.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    v["artifacts"][0]["path"] = "debs/evil.deb".into();
    v["artifacts"][0]["sha256"] = sha256_file(&evil).into();
    fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    refused(
        "edited",
        &["cannot be trusted", "changed after it was signed"],
    );

    // 3. No signature at all (a report written by hand, or by a smoke run without a key).
    write_report(&p, "unsigned", true, &[], &artifacts);
    fs::remove_file(p.dist().join("smoke/unsigned/report.json.asc")).unwrap();
    refused("unsigned", &["is not signed", "report.json.asc"]);

    // 4. Signed by a key that is not the project's.
    let stranger = p.keys.path().join("stranger.asc");
    let o = p.builder(&["key", "generate", "--out", stranger.to_str().unwrap()]);
    assert!(o.status.success(), "{}", both(&o));
    write_report(&p, "stranger", true, &[], &artifacts);
    resign_report(&p, "stranger", &stranger);
    refused("stranger", &["signed by key", "not by this project's key"]);

    // 5. Artifact paths outside dist/, even when signed with the right key: `..`, absolute,
    // and a link inside dist/ that points out of it.
    let outside = p.path().join("outside.deb");
    fs::copy(&deb, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, p.dist().join("debs/link.deb")).unwrap();
    for (run, path) in [
        ("dotdot", "../outside.deb".to_string()),
        ("absolute", outside.display().to_string()),
        ("link-out", "debs/link.deb".to_string()),
    ] {
        let bytes = report(run, &|v| v["artifacts"][0]["path"] = path.clone().into());
        write_signed_report(&p, run, &bytes);
        refused(run, &["not inside", "only takes artifacts from dist/"]);
    }

    // 6. A run that stopped before the gate cannot say it passed.
    let bytes = report("stopped", &|v| v["error"] = "never became healthy".into());
    write_signed_report(&p, "stopped", &bytes);
    refused(
        "stopped",
        &["stopped before the gate", "never became healthy"],
    );

    // The genuine report promotes; editing it afterwards stops the next environment.
    p.report("genuine", true, &[]);
    let o = p.promote(&["--to", "dev", "--run", "genuine"]);
    assert!(o.status.success(), "{}", both(&o));
    let path = p.dist().join("smoke/genuine/report.json");
    // The signature is ordinary OpenPGP: gpgv checks it with the repository's key.
    sh(Command::new("gpgv")
        .arg("--keyring")
        .arg(p.env_dir("dev").join("signing-key.gpg"))
        .arg(path.with_file_name("report.json.asc"))
        .arg(&path));
    let text = fs::read_to_string(&path).unwrap();
    fs::write(
        &path,
        text.replace("\"requests\": 1500", "\"requests\": 1501"),
    )
    .unwrap();
    let o = p.promote(&["--from", "dev", "--to", "staging"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        both(&o).contains("smoke run genuine") && both(&o).contains("changed after it was signed"),
        "{}",
        both(&o)
    );
    assert!(!p.env_dir("staging").join("dists").exists());
}
