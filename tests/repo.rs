//! Environment repositories checked with real clients: `gpgv` verifies the signatures and
//! `apt-get` (in a private apt root, never touching the host) updates, resolves and downloads
//! from the repository; tampering, a foreign key, an expired Valid-Until, concurrent
//! publishers and SIGKILLed publishers are all tried.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use builder::repo::{self, DebArtifact, RepoConfig};
use builder::report::{Level, Reporter, Verbosity};
use builder::sign::{self, Signer};
use common::apt::HostApt;
use common::gpgv;
use sha2::{Digest, Sha256};

const CRASH_ENV: &str = "BUILDER_TEST_CRASH_CHILD";

fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(p).unwrap()))
}

/// Builds a small .deb with the real `dpkg-deb`.
fn build_deb(dir: &Path, name: &str, version: &str, arch: &str, payload: &str) -> DebArtifact {
    let tree = dir.join(format!("tree-{name}-{version}-{arch}"));
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    fs::create_dir_all(tree.join(format!("usr/share/{name}"))).unwrap();
    fs::write(tree.join(format!("usr/share/{name}/payload")), payload).unwrap();
    fs::write(
        tree.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\n\
             Maintainer: Test <test@example.com>\nSection: misc\nPriority: optional\n\
             Description: test package {name}\n a longer description\n .\n with a paragraph\n"
        ),
    )
    .unwrap();
    let out = dir.join(format!("{name}_{version}_{arch}.deb"));
    let st = Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group", "-Zgzip"])
        .arg(&tree)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    DebArtifact {
        sha256: sha256_file(&out),
        path: out,
    }
}

struct Keys {
    signer: Signer,
    secret: PathBuf,
    keyring: PathBuf,
}

fn make_key(dir: &Path, name: &str) -> Keys {
    let (secret, _public) = sign::generate_key(&format!("{name} <{name}@example.com>")).unwrap();
    let path = dir.join(format!("{name}.asc"));
    fs::write(&path, &secret).unwrap();
    let signer = Signer::from_armored(&secret).unwrap();
    let keyring = dir.join(format!("{name}.gpg"));
    fs::write(&keyring, signer.public_key_binary()).unwrap();
    Keys {
        signer,
        secret: path,
        keyring,
    }
}

fn cfg(root: &Path) -> RepoConfig {
    RepoConfig::new(root, "dev")
}

fn q() -> Reporter {
    Reporter::quiet()
}

fn dists(root: &Path) -> PathBuf {
    root.join("dev/dists/dev")
}

#[test]
fn publish_verifies_with_gpgv_and_apt_then_rolls_back() {
    let t = tempfile::tempdir().unwrap();
    let keys = make_key(t.path(), "dev");
    let root = t.path().join("repos");
    let c = cfg(&root);
    let v1 = build_deb(t.path(), "hello", "1.0-1", "amd64", "one");
    let v2 = build_deb(t.path(), "hello", "1.10-1", "amd64", "two");
    let v0 = build_deb(t.path(), "hello", "1.9-1", "amd64", "nine");
    let docs = build_deb(t.path(), "hello-doc", "1.0", "all", "docs");

    let g1 = repo::publish(
        &c,
        &keys.signer,
        &[v1.clone(), docs.clone()],
        "report-1.json",
        &q(),
    )
    .unwrap();
    let g2 = repo::publish(
        &c,
        &keys.signer,
        &[v2.clone(), v0.clone()],
        "report-2.json",
        &q(),
    )
    .unwrap();
    assert_eq!((g1.number, g2.number), (1, 2));

    // Real gpgv on both signatures.
    let d = dists(&root);
    let o = gpgv(&keys.keyring, &[&d.join("InRelease")]);
    assert!(o.status.success(), "gpgv InRelease: {}", HostApt::text(&o));
    let o = gpgv(&keys.keyring, &[&d.join("Release.gpg"), &d.join("Release")]);
    assert!(
        o.status.success(),
        "gpgv Release.gpg: {}",
        HostApt::text(&o)
    );
    let release = fs::read_to_string(d.join("Release")).unwrap();
    for field in [
        "Suite: dev\n",
        "Codename: dev\n",
        "Components: main\n",
        "Acquire-By-Hash: yes\n",
        "Valid-Until: ",
        "Architectures: amd64\n",
        "MD5Sum:\n",
        "SHA256:\n",
    ] {
        assert!(
            release.contains(field),
            "Release lacks {field:?}:\n{release}"
        );
    }

    // Packages: sorted by Debian version (1.0-1 < 1.9-1 < 1.10-1), the arch-all package too.
    let packages = fs::read_to_string(d.join("main/binary-amd64/Packages")).unwrap();
    let versions: Vec<&str> = packages
        .lines()
        .filter_map(|l| l.strip_prefix("Version: "))
        .collect();
    assert_eq!(versions, ["1.0-1", "1.9-1", "1.10-1", "1.0"]);
    assert!(packages.contains("Filename: pool/main/h/hello/hello_1.10-1_amd64.deb\n"));
    assert!(packages.contains(&format!("SHA256: {}\n", v2.sha256)));
    // by-hash holds this generation's and the previous generation's index files.
    let by_hash: Vec<_> = fs::read_dir(d.join("main/binary-amd64/by-hash/SHA256"))
        .unwrap()
        .collect();
    assert_eq!(by_hash.len(), 4, "two Packages + two Packages.gz");

    // Real apt: update, resolve, download.
    let apt = HostApt::new(&root.join("dev"), &keys.keyring);
    apt.update().unwrap();
    assert_eq!(apt.madison("hello"), ["1.10-1", "1.9-1", "1.0-1"]);
    let sim = HostApt::text(&apt.run("apt-get", &["-s", "install", "hello", "hello-doc"]));
    assert!(sim.contains("Inst hello (1.10-1 "), "{sim}");
    assert!(sim.contains("Inst hello-doc (1.0 "), "{sim}");
    let dl = apt.run("apt-get", &["download", "hello=1.0-1"]);
    assert!(dl.status.success(), "{}", HostApt::text(&dl));
    let got = apt.downloads().join("hello_1.0-1_amd64.deb");
    assert_eq!(sha256_file(&got), v1.sha256);

    // Rollback: apt sees the first generation's set again.
    let g3 = repo::rollback(&c, &keys.signer, &q()).unwrap();
    assert_eq!(g3.number, 3);
    apt.update().unwrap();
    assert_eq!(apt.madison("hello"), ["1.0-1"]);
    let hist = repo::history(&c).unwrap();
    let actions: Vec<_> = hist
        .iter()
        .map(|h| (h.generation, h.action.as_str()))
        .collect();
    assert_eq!(actions, [(1, "publish"), (2, "publish"), (3, "rollback")]);
    assert_eq!(hist[0].source, "report-1.json");
    assert_eq!(hist[1].artifacts.len(), 2);
    assert_eq!(hist[2].restored, Some(1));
    // A second rollback has nowhere to go (generation 1 had no predecessor).
    assert!(repo::rollback(&c, &keys.signer, &q()).is_err());
}

#[test]
fn tampered_packages_are_refused_by_apt() {
    let t = tempfile::tempdir().unwrap();
    let keys = make_key(t.path(), "dev");
    let root = t.path().join("repos");
    let deb = build_deb(t.path(), "hello", "1.0", "amd64", "x");
    repo::publish(&cfg(&root), &keys.signer, &[deb], "r", &q()).unwrap();
    // Flip one byte in every copy of the index apt could fetch; Release stays as signed.
    let bin = dists(&root).join("main/binary-amd64");
    let mut targets = vec![bin.join("Packages"), bin.join("Packages.gz")];
    for algo in ["SHA256", "MD5Sum"] {
        for e in fs::read_dir(bin.join("by-hash").join(algo)).unwrap() {
            targets.push(e.unwrap().path());
        }
    }
    for p in targets {
        let mut b = fs::read(&p).unwrap();
        let i = b.len() / 2;
        b[i] ^= 0x20;
        fs::remove_file(&p).unwrap(); // break hard links, tamper only this copy
        fs::write(&p, b).unwrap();
    }
    let apt = HostApt::new(&root.join("dev"), &keys.keyring);
    let err = apt.update().unwrap_err();
    assert!(
        err.contains("Hash Sum mismatch") || err.contains("mismatch"),
        "{err}"
    );
    assert!(apt.madison("hello").is_empty());
}

#[test]
fn tampered_deb_is_refused_on_download() {
    let t = tempfile::tempdir().unwrap();
    let keys = make_key(t.path(), "dev");
    let root = t.path().join("repos");
    let deb = build_deb(t.path(), "hello", "1.0", "amd64", "x");
    let g = repo::publish(&cfg(&root), &keys.signer, &[deb], "r", &q()).unwrap();
    let pool = root.join("dev").join(&g.packages[0].filename);
    let mut b = fs::read(&pool).unwrap();
    let last = b.len() - 3;
    b[last] ^= 0xff;
    fs::write(&pool, b).unwrap();
    let apt = HostApt::new(&root.join("dev"), &keys.keyring);
    apt.update().unwrap();
    let out = apt.run("apt-get", &["download", "hello"]);
    let text = HostApt::text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("Hash Sum mismatch") || text.contains("mismatch"),
        "{text}"
    );
}

#[test]
fn repository_signed_by_another_key_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let keys = make_key(t.path(), "dev");
    let other = make_key(t.path(), "other");
    let root = t.path().join("repos");
    let deb = build_deb(t.path(), "hello", "1.0", "amd64", "x");
    repo::publish(&cfg(&root), &other.signer, &[deb], "r", &q()).unwrap();
    let o = gpgv(&keys.keyring, &[&dists(&root).join("InRelease")]);
    assert!(!o.status.success());
    let apt = HostApt::new(&root.join("dev"), &keys.keyring);
    let err = apt.update().unwrap_err();
    assert!(
        err.contains("NO_PUBKEY") || err.contains("not signed"),
        "{err}"
    );
    assert!(apt.madison("hello").is_empty());
}

#[test]
fn expired_valid_until_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let keys = make_key(t.path(), "dev");
    let root = t.path().join("repos");
    let mut c = cfg(&root);
    c.valid_for = Duration::from_secs(1);
    let deb = build_deb(t.path(), "hello", "1.0", "amd64", "x");
    repo::publish(&c, &keys.signer, &[deb], "r", &q()).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let apt = HostApt::new(&root.join("dev"), &keys.keyring);
    let err = apt.update().unwrap_err();
    assert!(err.contains("expired"), "{err}");
}

#[test]
fn bad_sha_and_changed_bytes_are_refused_before_writing() {
    let t = tempfile::tempdir().unwrap();
    let keys = make_key(t.path(), "dev");
    let root = t.path().join("repos");
    let c = cfg(&root);
    let mut deb = build_deb(t.path(), "hello", "1.0", "amd64", "x");
    let good = deb.sha256.clone();
    deb.sha256 = "00".repeat(32);
    let err = repo::publish(&c, &keys.signer, &[deb.clone()], "r", &q()).unwrap_err();
    assert!(format!("{err:#}").contains("approved"), "{err:#}");
    assert!(
        !root.join("dev").exists(),
        "nothing may be written before checks pass"
    );

    deb.sha256 = good;
    repo::publish(&c, &keys.signer, &[deb.clone()], "r", &q()).unwrap();
    // Same name+version+arch, other bytes.
    let t2 = tempfile::tempdir().unwrap();
    let changed = build_deb(t2.path(), "hello", "1.0", "amd64", "different");
    let err = repo::publish(&c, &keys.signer, &[changed], "r", &q()).unwrap_err();
    assert!(format!("{err:#}").contains("bump the version"), "{err:#}");
    // Identical bytes again are fine and change nothing: no new generation.
    let g = repo::publish(&c, &keys.signer, &[deb], "r", &q()).unwrap();
    assert_eq!(g.packages.len(), 1);
    assert!(g.unchanged);
    assert_eq!((g.number, repo::history(&c).unwrap().len()), (1, 1));
}

#[test]
fn concurrent_publishers_both_land_in_order() {
    let t = tempfile::tempdir().unwrap();
    let keys = make_key(t.path(), "dev");
    let root = t.path().join("repos");
    let a: Vec<_> = (0..8)
        .map(|i| {
            build_deb(
                t.path(),
                "alpha",
                &format!("1.{i}"),
                "amd64",
                &format!("a{i}"),
            )
        })
        .collect();
    let b: Vec<_> = (0..8)
        .map(|i| {
            build_deb(
                t.path(),
                "beta",
                &format!("2.{i}"),
                "amd64",
                &format!("b{i}"),
            )
        })
        .collect();
    let secret = fs::read_to_string(&keys.secret).unwrap();
    let handles: Vec<_> = [a, b]
        .into_iter()
        .enumerate()
        .map(|(i, debs)| {
            let root = root.clone();
            let secret = secret.clone();
            std::thread::spawn(move || {
                let s = Signer::from_armored(&secret).unwrap();
                repo::publish(&cfg(&root), &s, &debs, &format!("thread-{i}"), &q()).unwrap()
            })
        })
        .collect();
    let mut gens: Vec<u64> = handles
        .into_iter()
        .map(|h| h.join().unwrap().number)
        .collect();
    gens.sort();
    assert_eq!(gens, [1, 2]);
    let listed = repo::list(&cfg(&root)).unwrap();
    assert_eq!(
        listed.len(),
        16,
        "both publishers' packages are in the final generation"
    );
    let hist = repo::history(&cfg(&root)).unwrap();
    let mut sources: Vec<_> = hist.iter().map(|h| h.source.clone()).collect();
    sources.sort();
    assert_eq!(sources, ["thread-0", "thread-1"]);
    HostApt::new(&root.join("dev"), &keys.keyring)
        .update()
        .unwrap();
}

/// Not a test on its own: the child process the SIGKILL test starts and kills. It publishes
/// and rolls back in a loop until killed.
#[test]
#[ignore = "helper process for sigkill_mid_publish_never_breaks_the_repository"]
fn crash_child_publisher() {
    let Ok(dir) = std::env::var(CRASH_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let signer = Signer::from_file(&dir.join("dev.asc")).unwrap();
    let c = cfg(&dir.join("repos"));
    let mut debs: Vec<DebArtifact> = fs::read_dir(dir.join("debs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| DebArtifact {
            sha256: sha256_file(&p),
            path: p,
        })
        .collect();
    debs.sort_by(|a, b| a.path.cmp(&b.path));
    // Tell the parent the publishing starts now: its kill delay counts from here, so a slow
    // start on a loaded machine does not turn every kill into a kill before the first write.
    fs::write(dir.join("child-started"), b"").unwrap();
    for i in 0.. {
        let d = &debs[i % debs.len()];
        repo::publish(&c, &signer, std::slice::from_ref(d), "crash-child", &q()).unwrap();
        if i % 3 == 2 {
            let _ = repo::rollback(&c, &signer, &q());
        }
    }
}

fn leftovers(env_dir: &Path) -> Vec<PathBuf> {
    walk(env_dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().contains(".tmp-"))
                .unwrap_or(false)
        })
        .collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

#[test]
fn sigkill_mid_publish_never_breaks_the_repository() {
    let t = tempfile::tempdir().unwrap();
    let keys = make_key(t.path(), "dev");
    fs::create_dir_all(t.path().join("debs")).unwrap();
    let build_dir = t.path().join("build");
    fs::create_dir_all(&build_dir).unwrap();
    for i in 0..5 {
        let d = build_deb(
            &build_dir,
            &format!("pkg{i}"),
            &format!("1.{i}"),
            "amd64",
            &"x".repeat(20_000 * (i + 1)),
        );
        fs::copy(
            &d.path,
            t.path().join("debs").join(d.path.file_name().unwrap()),
        )
        .unwrap();
    }
    let root = t.path().join("repos");
    let env_dir = root.join("dev");
    let extra = build_deb(&build_dir, "extra", "1.0", "amd64", "extra");
    // A first generation so apt always has something to verify.
    repo::publish(
        &cfg(&root),
        &keys.signer,
        std::slice::from_ref(&extra),
        "setup",
        &q(),
    )
    .unwrap();

    let exe = std::env::current_exe().unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("sigkill test seed {seed}");
    let mut dirty_kills = 0;
    // Generations the publishes after a kill wrote (none when the repository already held
    // `extra` alone, e.g. the child was killed before its first publish finished).
    let mut written = Vec::new();
    let kills = 20;
    for round in 0..kills {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(30 + seed % 250);
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child_publisher",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_ENV, t.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = t.path().join("child-started");
        let _ = fs::remove_file(&started);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !started.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "round {round}: the child should die by signal, not exit ({status})"
        );
        if !leftovers(&env_dir).is_empty() {
            dirty_kills += 1;
        }
        // A fresh apt root each round: the repository as a new client sees it.
        let apt = HostApt::new(&env_dir, &keys.keyring);
        if let Err(e) = apt.update() {
            panic!("round {round} (killed after {delay:?}): apt-get update failed:\n{e}");
        }
        let o = gpgv(
            &keys.keyring,
            &[
                &dists(&root).join("Release.gpg"),
                &dists(&root).join("Release"),
            ],
        );
        assert!(o.status.success(), "round {round}: {}", HostApt::text(&o));
        // The next publish succeeds and cleans what the killed one left.
        let after = repo::publish(
            &cfg(&root),
            &keys.signer,
            std::slice::from_ref(&extra),
            "after-kill",
            &q(),
        )
        .unwrap();
        if !after.unchanged {
            written.push(after.number);
        }
        let left = leftovers(&env_dir);
        assert!(
            left.is_empty(),
            "round {round}: leftovers after the next publish: {left:?}"
        );
    }
    eprintln!("sigkill test: {kills} kills, {dirty_kills} left temporary files behind");
    // Every generation in the history is a real one, in order, and every generation a
    // publish after a kill reported is recorded: a kill never loses a later publish's record.
    let hist = repo::history(&cfg(&root)).unwrap();
    assert!(hist.windows(2).all(|w| w[0].generation < w[1].generation));
    for n in &written {
        assert!(
            hist.iter().any(|h| h.generation == *n),
            "generation {n} is missing from the history: {hist:?}"
        );
    }
}

#[test]
fn publish_timing_for_many_packages() {
    let t = tempfile::tempdir().unwrap();
    let keys = make_key(t.path(), "dev");
    let root = t.path().join("repos");
    let n = 40;
    let debs: Vec<_> = (0..n)
        .map(|i| {
            build_deb(
                t.path(),
                &format!("svc{i:02}"),
                "1.0",
                "amd64",
                &"y".repeat(50_000),
            )
        })
        .collect();
    let start = Instant::now();
    repo::publish(&cfg(&root), &keys.signer, &debs, "bulk", &q()).unwrap();
    let bulk = start.elapsed();
    let one = build_deb(t.path(), "svc00", "1.1", "amd64", "z");
    let start = Instant::now();
    repo::publish(&cfg(&root), &keys.signer, &[one], "one", &q()).unwrap();
    let incremental = start.elapsed();
    let start = Instant::now();
    let o = gpgv(&keys.keyring, &[&dists(&root).join("InRelease")]);
    let verify = start.elapsed();
    assert!(o.status.success());
    let apt = HostApt::new(&root.join("dev"), &keys.keyring);
    let start = Instant::now();
    apt.update().unwrap();
    let update = start.elapsed();
    assert_eq!(apt.madison("svc00"), ["1.1", "1.0"]);
    eprintln!(
        "timing: publish {n} packages {bulk:?}; publish 1 more into {n} {incremental:?}; \
         gpgv InRelease {verify:?}; apt-get update {update:?}"
    );
}

fn builder(args: &[&str], cwd: &Path) -> Output {
    common::builder()
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn cli_key_generate_repo_list_and_prune() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let project = t.path().join("project");
    fs::create_dir_all(project.join("dist")).unwrap();
    fs::create_dir_all(project.join("recipes")).unwrap();
    let p = project.to_str().unwrap();

    // Refused inside the project and dist/.
    for out in [project.join("dist/key.asc"), project.join("key.asc")] {
        let o = builder(
            &[
                "--project",
                p,
                "key",
                "generate",
                "--out",
                out.to_str().unwrap(),
            ],
            t.path(),
        );
        assert_eq!(o.status.code(), Some(2), "{}", HostApt::text(&o));
        assert!(HostApt::text(&o).contains("refusing to write a private key"));
        assert!(!out.exists());
    }
    let key = t.path().join("keys/signing.asc");
    let o = builder(
        &[
            "--project",
            p,
            "key",
            "generate",
            "--name",
            "CI",
            "--email",
            "ci@example.com",
            "--out",
            key.to_str().unwrap(),
        ],
        t.path(),
    );
    assert!(o.status.success(), "{}", HostApt::text(&o));
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let keyring = t.path().join("keys/signing.asc.pub.gpg");
    assert!(
        fs::read_to_string(t.path().join("keys/signing.asc.pub.asc"))
            .unwrap()
            .contains("PUBLIC KEY")
    );
    // Refuses to overwrite without --force.
    let o = builder(
        &[
            "--project",
            p,
            "key",
            "generate",
            "--out",
            key.to_str().unwrap(),
        ],
        t.path(),
    );
    assert_eq!(o.status.code(), Some(2));

    // Publish three versions with the generated key (library), then list and prune (CLI).
    let signer = Signer::from_file(&key).unwrap();
    let root = project.join("dist/repos");
    for v in ["1.0", "1.1", "1.2"] {
        let d = build_deb(t.path(), "hello", v, "amd64", v);
        repo::publish(&cfg(&root), &signer, &[d], "r", &q()).unwrap();
    }
    let o = builder(&["--project", p, "--json", "repo", "list", "dev"], t.path());
    assert!(o.status.success(), "{}", HostApt::text(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let versions: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(versions, ["1.0", "1.1", "1.2"]);

    let o = builder(
        &["--project", p, "repo", "prune", "dev", "--keep", "1"],
        t.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "no key: usage error: {}",
        HostApt::text(&o)
    );
    let o = builder(
        &[
            "--project",
            p,
            "--json",
            "repo",
            "prune",
            "dev",
            "--keep",
            "1",
            "--signing-key",
            key.to_str().unwrap(),
        ],
        t.path(),
    );
    assert!(o.status.success(), "{}", HostApt::text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["removed_versions"].as_array().unwrap().len(), 2);
    let pool: Vec<_> = fs::read_dir(root.join("dev/pool/main/h/hello"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(pool, ["hello_1.2_amd64.deb"]);
    let apt = HostApt::new(&root.join("dev"), &keyring);
    apt.update().unwrap();
    assert_eq!(apt.madison("hello"), ["1.2"]);

    let o = builder(&["--project", p, "repo", "history", "dev"], t.path());
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.lines().last().unwrap().contains("prune"), "{text}");
}

/// Packages from builder's own writer (xz and zstd data) go through the same real checks,
/// and the CLI rollback reads the key from `BUILDER_SIGNING_KEY_FILE`.
#[test]
fn builder_written_debs_publish_resolve_and_roll_back_via_cli() {
    use builder::archive::{FileSource, Tree};
    use builder::deb::{write_deb, Compression, DebSpec};
    let t = tempfile::tempdir().unwrap();
    let keys = make_key(t.path(), "dev");
    let root = t.path().join("repos");
    let mut debs = Vec::new();
    for (version, compression) in [("2.0.0", Compression::Xz), ("2.1.0~rc1", Compression::Zstd)] {
        let mut data = Tree::new();
        let bytes: std::sync::Arc<[u8]> =
            format!("#!/bin/sh\necho {version}\n").into_bytes().into();
        data.add_file("usr/bin/svc", 0o755, FileSource::Bytes(bytes))
            .unwrap();
        let out = t.path().join(format!("svc_{version}_amd64.deb"));
        let info = write_deb(
            &DebSpec {
                control: vec![
                    ("Package".into(), "svc".into()),
                    ("Version".into(), version.into()),
                    ("Architecture".into(), "amd64".into()),
                    ("Maintainer".into(), "Tests <tests@example.com>".into()),
                    ("Description".into(), "service\n made by builder".into()),
                ],
                data,
                conffiles: vec![],
                scripts: vec![],
                compression,
                mtime: 1_700_000_000,
            },
            &out,
        )
        .unwrap();
        debs.push(DebArtifact {
            path: out,
            sha256: info.sha256.hex(),
        });
    }
    repo::publish(&cfg(&root), &keys.signer, &debs[..1], "r1", &q()).unwrap();
    repo::publish(&cfg(&root), &keys.signer, &debs[1..], "r2", &q()).unwrap();
    let apt = HostApt::new(&root.join("dev"), &keys.keyring);
    apt.update().unwrap();
    // 2.1.0~rc1 sorts after 2.0.0: it is the candidate.
    assert_eq!(apt.madison("svc"), ["2.1.0~rc1", "2.0.0"]);
    let dl = apt.run("apt-get", &["download", "svc"]);
    assert!(dl.status.success(), "{}", HostApt::text(&dl));
    let got = apt.downloads().join("svc_2.1.0~rc1_amd64.deb");
    assert_eq!(sha256_file(&got), debs[1].sha256);

    let o = Command::new(env!("CARGO_BIN_EXE_builder"))
        .args(["repo", "rollback", "dev", "--root", root.to_str().unwrap()])
        .env("CI", "true")
        .env_remove(sign::ENV_KEY)
        .env(sign::ENV_KEY_FILE, &keys.secret)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", HostApt::text(&o));
    apt.update().unwrap();
    assert_eq!(apt.madison("svc"), ["2.0.0"]);
}

/// An older generation whose generation.json cannot be read is a rollback target with
/// unknown files: the next publish keeps it and every pool file, and prune refuses.
#[test]
fn unreadable_old_generation_is_kept_and_blocks_prune() {
    let t = tempfile::tempdir().unwrap();
    let keys = make_key(t.path(), "dev");
    let signer = Signer::from_file(&keys.secret).unwrap();
    let root = t.path().join("repos");
    for v in ["1.0", "1.1"] {
        let d = build_deb(t.path(), "hello", v, "amd64", v);
        repo::publish(&cfg(&root), &signer, &[d], "r", &q()).unwrap();
    }
    let gen1 = root.join("dev/.generations/1/generation.json");
    fs::write(&gen1, "{ not json").unwrap();

    let d = build_deb(t.path(), "hello", "1.2", "amd64", "1.2");
    let r = Reporter::capture(Verbosity::Normal);
    repo::publish(&cfg(&root), &signer, &[d], "r", &r).unwrap();
    assert!(gen1.exists(), "the unreadable generation was deleted");
    let warnings = r.captured_at(Level::Warning);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("generation(s) 1 (")
            && warnings[0].contains("cannot be read; left alone")
            && warnings[0].contains("`builder repo check dev --repair` removes them"),
        "{warnings:?}"
    );
    let pool = root.join("dev/pool/main/h/hello");
    for v in ["1.0", "1.1", "1.2"] {
        assert!(pool.join(format!("hello_{v}_amd64.deb")).exists(), "{v}");
    }

    let err = repo::prune(&cfg(&root), &signer, 1, &q()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("generation 1 cannot be read"), "{msg}");
    for v in ["1.0", "1.1", "1.2"] {
        assert!(pool.join(format!("hello_{v}_amd64.deb")).exists(), "{v}");
    }
}
