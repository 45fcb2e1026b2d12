//! Fault injection on the real binary: `builder promote`, `repo rollback` and `repo prune` are
//! SIGKILLed by strace at every filesystem step they take (each rename, unlink, symlink,
//! rmdir and fsync, one at a time), on a copy of a repository with packages and images.
//! After every kill the environment must be either exactly as before or exactly as after the
//! command, real apt in a container (signatures and dates checked) must accept what it
//! serves right then, and `builder repo check --repair` (or simply running the command again)
//! must leave it consistent, apt verifying it and skopeo reading every image it lists.

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use common::apt::AptContainer;
use common::project::*;
use common::*;

/// The syscalls that change what a repository is; each is a kill point of its own because
/// strace counts `when=N` per syscall.
const KILL_POINTS: [&str; 6] = ["rename", "unlink", "unlinkat", "symlink", "rmdir", "fsync"];
/// No command here takes more steps of one kind than this; the loop stops at the first N
/// that the command survives.
const MAX_STEPS: u32 = 80;

fn strace_present() -> bool {
    Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn builder_in(dir: &Path, key: &Path, args: &[&str]) -> Command {
    let mut c = builder();
    c.arg("--project")
        .arg(dir)
        .args(args)
        .env("BUILDER_SIGNING_KEY_FILE", key)
        .env_remove("BUILDER_SIGNING_KEY")
        .env_remove("BUILDER_REGISTRY")
        .current_dir(dir);
    c
}

/// What an environment holds, as `repo list --json` says (kind, name, version, digest).
fn holdings(dir: &Path, key: &Path) -> Vec<String> {
    let o = run(&mut builder_in(
        dir,
        key,
        &["--json", "repo", "list", "dev"],
    ));
    assert!(o.status.success(), "repo list: {}", both(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["kind"],
                e["name"],
                e["version"],
                e.get("sha256").or(e.get("digest")).unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

/// The manifest digests `images/index.json` lists, sorted.
fn layout_digests(env: &Path) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(env.join("images/index.json")).unwrap()).unwrap();
    let mut v: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// Checks every way a consistent environment shows itself; returns what it holds.
fn assert_consistent(dir: &Path, p: &Project, what: &str) -> Vec<String> {
    let o = run(&mut builder_in(
        dir,
        &p.key(),
        &["--json", "repo", "check", "dev"],
    ));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{what}: repo check --json: {e}: {}", both(&o)));
    assert!(
        o.status.success() && report["findings"].as_array().unwrap().is_empty(),
        "{what}: repo check after repair: {report}\n{}",
        both(&o)
    );
    let env = dir.join("dist/repos/dev");
    apt_verifies(&env, &p.keyring()).unwrap_or_else(|e| panic!("{what}: apt: {e}"));
    // The image layout lists exactly the images the repository holds, and skopeo reads each.
    let held = holdings(dir, &p.key());
    let images: Vec<&String> = held.iter().filter(|h| h.starts_with("\"image\"")).collect();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(env.join("images/index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"].as_array().unwrap().len(),
        images.len(),
        "{what}: images/index.json against {held:?}: {index}"
    );
    for m in index["manifests"].as_array().unwrap() {
        let tag = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap();
        let digest = m["digest"].as_str().unwrap();
        assert_eq!(
            skopeo_digest(&format!("oci:{}:{tag}", env.join("images").display())),
            digest,
            "{what}"
        );
        assert!(
            images.iter().any(|h| h.contains(digest)),
            "{what}: {digest} in the layout but not in {held:?}"
        );
    }
    // The history's last entry describes the current generation.
    let o = run(&mut builder_in(
        dir,
        &p.key(),
        &["--json", "repo", "history", "dev"],
    ));
    let h: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        h.as_array().unwrap().last().unwrap()["generation"],
        report["current"],
        "{what}: history {h}"
    );
    held
}

/// A project with two promoted generations (a .deb and an image each) and a third release
/// approved by smoke but not promoted yet.
fn prepared() -> Project {
    let p = Project::new();
    for (i, v) in ["1.0.0", "2.0.0", "3.0.0"].iter().enumerate() {
        p.package(v, 4);
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(p.dist().join("manifest.json")).unwrap()).unwrap();
        let mut artifacts: Vec<serde_json::Value> = manifest["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "deb" && a["version"] == *v)
            .cloned()
            .collect();
        artifacts.push(write_image(&p.dist(), "web", v));
        write_report(
            &p,
            &format!("run-{i}"),
            true,
            &[],
            &serde_json::Value::Array(artifacts),
        );
        if i < 2 {
            let o = p.promote(&["--to", "dev"]);
            assert!(o.status.success(), "{}", both(&o));
        }
    }
    p
}

/// Runs `args` in `dir` under strace, injecting `inject` (e.g. `signal=KILL:when=3`) into
/// `call`; strace's own trace goes to `trace` when given.
fn traced(
    dir: &Path,
    p: &Project,
    args: &[&str],
    call: &str,
    inject: &str,
    trace: Option<&Path>,
) -> Output {
    let cmd = builder_in(dir, &p.key(), args);
    let mut traced = Command::new("strace");
    traced
        .args(["-f", "-qq", "-o"])
        .arg(trace.unwrap_or(Path::new("/dev/null")))
        .arg("-e")
        .arg(format!("trace={call}"))
        .arg("-e")
        .arg(format!("inject={call}:{inject}"))
        .arg(env!("CARGO_BIN_EXE_builder"))
        .args(cmd.get_args())
        .current_dir(dir);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => traced.env(k, v),
            None => traced.env_remove(k),
        };
    }
    run(&mut traced)
}

/// Kills `args` at every step in turn on fresh copies of `p`'s project and checks what is
/// left. Returns the number of kills.
fn kill_everywhere(p: &Project, args: &[&str]) -> u32 {
    let before = holdings(p.path(), &p.key());
    let clean = tempfile::tempdir().unwrap();
    copy_tree(p.path(), clean.path());
    let o = run(&mut builder_in(clean.path(), &p.key(), args));
    assert!(o.status.success(), "{args:?} without faults: {}", both(&o));
    let after = assert_consistent(clean.path(), p, &format!("{args:?} without faults"));
    assert_ne!(before, after, "{args:?} changes nothing: a useless test");

    // apt in a container reads every state a kill leaves, through one read-only mount.
    let scratch = tempfile::tempdir().unwrap();
    let apt = AptContainer::start(scratch.path(), &p.keyring());
    let mut kills = 0;
    for call in KILL_POINTS {
        for n in 1..=MAX_STEPS {
            let work = tempfile::tempdir_in(scratch.path()).unwrap();
            copy_tree(p.path(), work.path());
            let what = format!("{args:?} killed at {call} #{n}");
            let o = traced(
                work.path(),
                p,
                args,
                call,
                &format!("signal=KILL:when={n}"),
                None,
            );
            let killed = o.status.signal() == Some(9) || o.status.code() == Some(137);
            if !killed {
                assert!(
                    o.status.success(),
                    "{what}: not killed but failed: {}",
                    both(&o)
                );
                break;
            }
            kills += 1;
            // The repository is as before or as after, even before anything repairs it...
            let now = holdings(work.path(), &p.key());
            assert!(
                now == before || now == after,
                "{what}: holds {now:?}, neither {before:?} nor {after:?}"
            );
            // The image layout is part of the same switch: it agrees with apt's generation
            // at every moment, not only after a repair.
            let listed = layout_digests(&work.path().join("dist/repos/dev"));
            let mut held_images: Vec<String> = now
                .iter()
                .filter(|h| h.starts_with("\"image\""))
                .map(|h| h.rsplit(' ').next().unwrap().trim_matches('"').to_string())
                .collect();
            held_images.sort();
            assert_eq!(listed, held_images, "{what}: image layout against {now:?}");
            apt.verifies(&served_dir(&work), "dev", "demo")
                .unwrap_or_else(|e| panic!("{what}: apt in a container: {e}"));
            // ...and the next command leaves it consistent: on odd steps `repo check
            // --repair`, on even ones running the command again (what CI does on a retry).
            let next: Vec<&str> = if n % 2 == 1 || args[0] == "repo" && args[1] == "rollback" {
                vec!["repo", "check", "dev", "--repair"]
            } else {
                args.to_vec()
            };
            let o = run(&mut builder_in(work.path(), &p.key(), &next));
            assert!(o.status.success(), "{what}: then {next:?}: {}", both(&o));
            let held = assert_consistent(work.path(), p, &what);
            assert!(
                held == before || held == after,
                "{what}: then {next:?} holds {held:?}"
            );
            if next[0] != "repo" || next[1] != "check" {
                assert_eq!(held, after, "{what}: the retry did not finish the job");
            }
        }
    }
    kills
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn promote_rollback_and_prune_killed_at_every_step_leave_a_consistent_repository() {
    if !strace_present() {
        panic!("this test injects faults with strace: install Debian's `strace` package");
    }
    let p = prepared();
    let promote = kill_everywhere(&p, &["promote", "--to", "dev"]);
    let rollback = kill_everywhere(&p, &["repo", "rollback", "dev"]);
    let prune = kill_everywhere(&p, &["repo", "prune", "dev", "--keep", "1"]);
    eprintln!("kills: promote {promote}, rollback {rollback}, prune {prune}");
    // Each command changes the repository in several steps; a run that killed nothing
    // would prove nothing.
    for (name, k) in [
        ("promote", promote),
        ("rollback", rollback),
        ("prune", prune),
    ] {
        assert!(k >= 5, "{name}: only {k} kill points");
    }
}

/// What a `repo prune` killed mid-delete used to leave (a generation directory without its
/// generation.json) no longer blocks anything: `repo check` names it, `--repair` removes it,
/// and the pool files only it referenced are reclaimed.
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn a_half_deleted_generation_is_found_and_repaired() {
    let p = prepared();
    let env = p.env_dir("dev");
    let gen1 = env.join(".generations/1");
    fs::remove_file(gen1.join("generation.json")).unwrap();
    let o = p.builder(&["--json", "repo", "check", "dev"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["problem"].as_str().unwrap().contains("generation 1")
                && f["repairable"] == true),
        "{report}"
    );
    let o = p.builder(&["repo", "check", "dev", "--repair"]);
    assert!(o.status.success(), "{}", both(&o));
    assert!(both(&o).contains("repaired"), "{}", both(&o));
    assert!(!gen1.exists());
    assert_consistent(p.path(), &p, "after --repair");
    // Prune works again and reclaims version 1's pool file, referenced by no generation.
    let o = p.builder(&["repo", "prune", "dev", "--keep", "1"]);
    assert!(o.status.success(), "{}", both(&o));
    assert!(!pool_file(&p, "dev", "1.0.0").exists());
    assert_consistent(p.path(), &p, "after prune");
}

/// Where a full disk shows itself to a writer: creating a directory entry or flushing data.
const NO_SPACE_POINTS: [&str; 4] = ["fsync", "rename", "symlink", "mkdir"];

/// `args` with ENOSPC injected at every step in turn. A command that fails must fail as an
/// environment error (exit 3) naming the full disk, leave the environment exactly as before
/// and clean up after itself (repo check finds nothing, without a repair); one that
/// succeeds (the failure hit after the switch) holds the new state, and whatever it could
/// not finish is repairable. Returns (failures, runs).
fn disk_full_everywhere(p: &Project, args: &[&str]) -> (u32, u32) {
    let before = holdings(p.path(), &p.key());
    let (mut failures, mut runs) = (0, 0);
    for call in NO_SPACE_POINTS {
        for n in 1..=MAX_STEPS {
            let work = tempfile::tempdir().unwrap();
            copy_tree(p.path(), work.path());
            let trace = work.path().join("strace.log");
            let what = format!("{args:?} with a full disk at {call} #{n}");
            let o = traced(
                work.path(),
                p,
                args,
                call,
                &format!("error=ENOSPC:when={n}"),
                Some(&trace),
            );
            let injected = fs::read_to_string(&trace).unwrap().contains("(INJECTED)");
            if !injected {
                assert!(o.status.success(), "{what}: {}", both(&o));
                break;
            }
            runs += 1;
            let now = holdings(work.path(), &p.key());
            if o.status.success() {
                assert_ne!(now, before, "{what}: exit 0 but nothing changed");
                let o = run(&mut builder_in(
                    work.path(),
                    &p.key(),
                    &["repo", "check", "dev", "--repair"],
                ));
                assert!(o.status.success(), "{what}: then repair: {}", both(&o));
            } else {
                failures += 1;
                assert_eq!(o.status.code(), Some(3), "{what}: {}", both(&o));
                assert!(
                    both(&o).contains("No space left on device"),
                    "{what}: {}",
                    both(&o)
                );
                assert_eq!(now, before, "{what}: failed but changed the environment");
            }
            let what = format!("{what} (it said: {})", both(&o));
            let held = assert_consistent(work.path(), p, &what);
            assert_eq!(held, now, "{what}");
        }
    }
    (failures, runs)
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn promote_rollback_and_prune_on_a_full_disk_fail_cleanly_or_finish() {
    if !strace_present() {
        panic!("this test injects faults with strace: install Debian's `strace` package");
    }
    let p = prepared();
    let mut counts = Vec::new();
    for args in [
        &["promote", "--to", "dev"][..],
        &["repo", "rollback", "dev"],
        &["repo", "prune", "dev", "--keep", "1"],
    ] {
        let (failures, runs) = disk_full_everywhere(&p, args);
        assert!(runs >= 5, "{args:?}: only {runs} injection points");
        counts.push(format!("{args:?}: {failures} refused of {runs}"));
    }
    eprintln!("ENOSPC: {}", counts.join(", "));
}

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        sh(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size}"))
            .arg("builder-test")
            .arg(dir.path()));
        Tmpfs(dir)
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    fn available(&self) -> u64 {
        let out = sh(Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.path()));
        out.lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// A real full disk: the repositories on a small tmpfs, filled until a promotion no longer
/// fits, then freed step by step. Every refused promotion exits 3 and leaves the old
/// generation serving (apt verifies it, repo check is clean); the first that fits lands.
#[test]
fn a_full_disk_leaves_the_old_generation_serving() {
    let disk = Tmpfs::new("8m");
    let p = Project::new();
    let root = disk.path().join("repos");
    fs::write(
        p.path().join("promote.toml"),
        format!("root = \"{}\"\n", root.display()),
    )
    .unwrap();
    p.package("1.0.0", 4);
    p.report("disk-1", true, &[]);
    let o = p.promote(&["--to", "dev"]);
    assert!(o.status.success(), "{}", both(&o));
    let env = root.join("dev");
    p.package("2.0.0", 4);
    p.report("disk-2", true, &[]);

    let filler = disk.path().join("filler");
    let mut refused = 0;
    let mut landed = false;
    for free_kib in [
        0u64, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512, 1024, 2048,
    ] {
        let _ = fs::remove_file(&filler);
        let avail = disk.available();
        let fill = avail.saturating_sub(free_kib * 1024);
        fs::write(&filler, vec![0u8; fill as usize]).unwrap();
        let o = p.promote(&["--to", "dev"]);
        let gen = || {
            let o = p.builder(&["--json", "repo", "check", "dev"]);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert!(
                o.status.success() && v["findings"].as_array().unwrap().is_empty(),
                "{free_kib} KiB free: {v}"
            );
            v["current"].as_u64().unwrap()
        };
        if o.status.success() {
            let _ = fs::remove_file(&filler);
            assert_eq!(gen(), 2, "{}", both(&o));
            landed = true;
            break;
        }
        refused += 1;
        assert_eq!(
            o.status.code(),
            Some(3),
            "{free_kib} KiB free: {}",
            both(&o)
        );
        assert!(both(&o).contains("No space left on device"), "{}", both(&o));
        assert_eq!(gen(), 1, "{free_kib} KiB free");
        apt_verifies(&env, &p.keyring()).unwrap_or_else(|e| panic!("{free_kib} KiB free: {e}"));
    }
    eprintln!("full disk: {refused} promotions refused before one fitted");
    assert!(refused >= 1 && landed, "refused {refused}, landed {landed}");
    apt_verifies(&env, &p.keyring()).unwrap();
}

/// `dev`'s repository in `work`, as the apt container sees it under `/repos`.
fn served_dir(work: &tempfile::TempDir) -> String {
    format!(
        "{}/dist/repos/dev",
        work.path().file_name().unwrap().to_string_lossy()
    )
}

/// Every generation directory and pool file a repository holds, to show nothing was deleted.
fn everything(env: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(env)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(env).unwrap().display().to_string())
        .filter(|p| {
            p.starts_with(".generations/") || p.starts_with("pool/") || p.contains("blobs/")
        })
        .collect();
    out.sort();
    out
}

fn findings(dir: &Path, p: &Project) -> (Option<i32>, Vec<serde_json::Value>) {
    let o = run(&mut builder_in(
        dir,
        &p.key(),
        &["--json", "repo", "check", "dev"],
    ));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("repo check --json: {e}: {}", both(&o)));
    (
        o.status.code(),
        report["findings"].as_array().unwrap().clone(),
    )
}

/// `dists` removed, pointed back at an older generation, or into another environment by
/// hand: builder used to take every generation for an unswitched leftover and delete them
/// all with their pool files and blobs. Now every command refuses and deletes nothing,
/// `repo check` names it, and `--repair` points `dists` at the newest generation again.
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn a_removed_or_rewound_dists_link_is_refused_and_relinked_never_deleted() {
    let p = prepared();
    let before = holdings(p.path(), &p.key());
    for (what, target) in [
        ("removed", None),
        ("rewound", Some(".generations/1/dists")),
        ("into staging", Some("../staging/.generations/2/dists")),
    ] {
        let work = tempfile::tempdir().unwrap();
        copy_tree(p.path(), work.path());
        let env = work.path().join("dist/repos/dev");
        let files = everything(&env);
        fs::remove_file(env.join("dists")).unwrap();
        if let Some(t) = target {
            std::os::unix::fs::symlink(t, env.join("dists")).unwrap();
        }
        for args in [
            &["promote", "--to", "dev"][..],
            &["repo", "prune", "dev", "--keep", "1"],
            &["repo", "rollback", "dev"],
        ] {
            let o = run(&mut builder_in(work.path(), &p.key(), args));
            assert!(
                !o.status.success(),
                "{what}: {args:?} went on: {}",
                both(&o)
            );
            assert!(
                both(&o).contains("dists") && !both(&o).contains("panicked"),
                "{what}: {args:?}: {}",
                both(&o)
            );
            assert_eq!(
                everything(&env),
                files,
                "{what}: {args:?} deleted something"
            );
        }
        let (code, found) = findings(work.path(), &p);
        assert_eq!(code, Some(1), "{what}: {found:?}");
        assert!(
            found
                .iter()
                .any(|f| f["kind"] == "pointer" && f["repairable"] == true),
            "{what}: {found:?}"
        );
        let o = run(&mut builder_in(
            work.path(),
            &p.key(),
            &["repo", "check", "dev", "--repair"],
        ));
        assert!(o.status.success(), "{what}: --repair: {}", both(&o));
        assert_eq!(
            assert_consistent(work.path(), &p, what),
            before,
            "{what}: not relinked to the newest generation"
        );
    }
}

/// A history line that is not UTF-8, a stray directory among the blobs and a temp file of a
/// dead writer used to stop every command ("stream did not contain valid UTF-8", "Is a
/// directory") or survive `--repair`. Now the history reads around the bad line, `repo
/// check` names the leftovers and `--repair` removes them.
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn torn_history_and_stray_leftovers_block_nothing() {
    let p = prepared();
    let env = p.env_dir("dev");
    let mut h = fs::OpenOptions::new()
        .append(true)
        .open(env.join("history.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut h, b"{\"time\": \"\xff\xfe torn\n").unwrap();
    drop(h);
    let blobs = env.join("images/blobs/sha256");
    fs::create_dir_all(blobs.join(".x.tmp-1-1")).unwrap();
    fs::write(blobs.join(".x.tmp-1-1/part"), b"x").unwrap();
    fs::create_dir_all(blobs.join("0".repeat(64))).unwrap();
    fs::write(env.join(".signing-key.gpg.tmp-123"), b"half").unwrap();
    // Names that only look like temps are not builder's and stay.
    fs::write(env.join(".foo.tmp-123-0"), b"mine").unwrap();
    fs::create_dir_all(env.join(".tmp-mystuff")).unwrap();

    let generations = || {
        let o = p.builder(&["--json", "repo", "history", "dev"]);
        assert!(o.status.success(), "{}", both(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_array().unwrap().len()
    };
    assert_eq!(generations(), 2);
    let (code, found) = findings(p.path(), &p);
    assert_eq!(code, Some(1), "{found:?}");
    for name in [".x.tmp-1-1", ".signing-key.gpg.tmp-123", &"0".repeat(64)] {
        assert!(
            found
                .iter()
                .any(|f| f["path"].as_str().is_some_and(|p| p.ends_with(name))
                    && f["repairable"] == true),
            "{name} not found: {found:?}"
        );
    }
    let o = p.builder(&["repo", "check", "dev", "--repair"]);
    assert!(o.status.success(), "{}", both(&o));
    assert!(!blobs.join(".x.tmp-1-1").exists() && !blobs.join("0".repeat(64)).exists());
    assert!(!env.join(".signing-key.gpg.tmp-123").exists());
    assert!(env.join(".foo.tmp-123-0").is_file() && env.join(".tmp-mystuff").is_dir());
    assert_consistent(p.path(), &p, "after --repair");
    // The same leftovers do not stop the next promotion either.
    fs::create_dir_all(blobs.join("1".repeat(64))).unwrap();
    let o = p.promote(&["--to", "dev"]);
    assert!(o.status.success(), "{}", both(&o));
    assert_eq!(generations(), 3);
    assert_consistent(p.path(), &p, "after promote");
}

/// Flips a byte in the middle of `path`.
fn flip_byte(path: &Path) {
    let mut b = fs::read(path).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x20;
    fs::write(path, b).unwrap();
}

/// `repo check` verifies the signatures apt verifies (it used to check only that the files
/// were not empty) and hashes the pool files of every generation, not only the current one;
/// promoting the same artifacts again writes a fresh, signed generation instead of saying
/// "already holds these artifacts" over a repository apt refuses.
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn damaged_signatures_and_pool_files_are_found_and_promote_writes_them_anew() {
    let p = prepared();
    let o = p.promote(&["--to", "dev"]);
    assert!(o.status.success(), "{}", both(&o));
    let env = p.env_dir("dev");
    let inrelease = env.join(".generations/3/dists/dev/InRelease");
    let text = fs::read_to_string(&inrelease).unwrap();
    let damaged = text.replacen("Suite: dev", "Suite: dew", 1);
    assert_ne!(text, damaged);
    fs::write(&inrelease, damaged).unwrap();
    assert!(
        apt_verifies(&env, &p.keyring()).is_err(),
        "the damage is not real"
    );
    flip_byte(&pool_file(&p, "dev", "3.0.0"));
    let (code, found) = findings(p.path(), &p);
    assert_eq!(code, Some(1));
    assert!(
        found.iter().any(|f| f["kind"] == "index"
            && f["problem"].as_str().unwrap().contains("InRelease")
            && f["repairable"] == false),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f["kind"] == "pool" && f["path"].as_str().unwrap().contains("3.0.0")),
        "{found:?}"
    );
    let o = p.promote(&["--to", "dev"]);
    assert!(o.status.success(), "{}", both(&o));
    assert!(both(&o).contains("damaged"), "{}", both(&o));
    assert_consistent(p.path(), &p, "after promoting again");
    assert_eq!(history(&p, "dev").last().unwrap()["generation"], 4);

    // An older version's pool file, which only a rollback would publish, is hashed too.
    let old = pool_file(&p, "dev", "1.0.0");
    let good = fs::read(&old).unwrap();
    flip_byte(&old);
    let (code, found) = findings(p.path(), &p);
    assert_eq!(code, Some(1));
    assert!(
        found
            .iter()
            .any(|f| f["kind"] == "pool" && f["path"].as_str().unwrap().contains("1.0.0")),
        "{found:?}"
    );
    fs::write(&old, good).unwrap();
    assert_consistent(p.path(), &p, "restored");
}

/// A `--root` that holds someone else's files is not a repository builder may clean: it
/// used to delete every pool file there as "unreferenced".
#[test]
fn a_foreign_directory_is_never_cleaned() {
    let p = prepared();
    let foreign = p.path().join("foreign");
    write_files(
        &foreign,
        &[
            ("dev/pool/main/x/x_1_all.deb", "not ours"),
            ("dev/Release", "Origin: someone else\n"),
        ],
    );
    let root = foreign.to_str().unwrap();
    for args in [
        &["promote", "--to", "dev", "--root", root][..],
        &["repo", "check", "dev", "--repair", "--root", root],
        &["repo", "prune", "dev", "--keep", "1", "--root", root],
    ] {
        let o = p.builder(args);
        assert!(!o.status.success(), "{args:?}: {}", both(&o));
        assert!(
            both(&o).contains("not a builder repository"),
            "{args:?}: {}",
            both(&o)
        );
        assert!(foreign.join("dev/pool/main/x/x_1_all.deb").is_file());
        assert!(foreign.join("dev/Release").is_file());
    }
}

/// The first promotion into a new environment, killed at every step: nothing is served, or
/// the new generation is served whole, its key and image index included (the links into
/// `dists/` used to be made after the switch, so a kill there left a repository without
/// them).
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn the_first_promotion_killed_at_every_step_serves_nothing_or_everything() {
    if !strace_present() {
        panic!("this test injects faults with strace: install Debian's `strace` package");
    }
    let p = Project::new();
    p.package("1.0.0", 4);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(p.dist().join("manifest.json")).unwrap()).unwrap();
    let mut artifacts = manifest["artifacts"].as_array().unwrap().clone();
    artifacts.push(write_image(&p.dist(), "web", "1.0.0"));
    write_report(&p, "run-0", true, &[], &serde_json::Value::Array(artifacts));
    let args = ["promote", "--to", "dev"];
    let scratch = tempfile::tempdir().unwrap();
    let apt = AptContainer::start(scratch.path(), &p.keyring());
    let mut kills = 0;
    let mut served = 0;
    for call in KILL_POINTS {
        for n in 1..=MAX_STEPS {
            let work = tempfile::tempdir_in(scratch.path()).unwrap();
            copy_tree(p.path(), work.path());
            let what = format!("first promotion killed at {call} #{n}");
            let o = traced(
                work.path(),
                &p,
                &args,
                call,
                &format!("signal=KILL:when={n}"),
                None,
            );
            if !(o.status.signal() == Some(9) || o.status.code() == Some(137)) {
                assert!(o.status.success(), "{what}: failed: {}", both(&o));
                break;
            }
            kills += 1;
            let env = work.path().join("dist/repos/dev");
            if fs::symlink_metadata(env.join("dists")).is_ok() {
                served += 1;
                assert!(
                    fs::read(env.join("signing-key.gpg")).is_ok(),
                    "{what}: no key"
                );
                assert_eq!(layout_digests(&env).len(), 1, "{what}: no image index");
                apt.verifies(&served_dir(&work), "dev", "demo")
                    .unwrap_or_else(|e| panic!("{what}: apt in a container: {e}"));
            } else {
                assert!(
                    holdings(work.path(), &p.key()).is_empty(),
                    "{what}: serves without dists"
                );
            }
            let next: Vec<&str> = if n % 2 == 1 {
                vec!["repo", "check", "dev", "--repair"]
            } else {
                args.to_vec()
            };
            let o = run(&mut builder_in(work.path(), &p.key(), &next));
            assert!(o.status.success(), "{what}: then {next:?}: {}", both(&o));
            if fs::symlink_metadata(env.join("dists")).is_ok() {
                assert_consistent(work.path(), &p, &what);
            } else {
                let (code, found) = findings(work.path(), &p);
                assert!(code == Some(0) && found.is_empty(), "{what}: {found:?}");
            }
        }
    }
    eprintln!("first promotion: {kills} kills, {served} after the switch");
    assert!(kills >= 10 && served >= 1, "{kills} kills, {served} served");
}

/// Parts of a repository made links out of it (a pool moved to another disk, an image
/// layout elsewhere): builder used to delete the files it found there, or unlink the pool.
/// Now every command refuses, and nothing outside the repository (or in it) is touched.
#[test]
fn links_out_of_the_repository_are_refused_and_never_followed() {
    let p = prepared();
    for part in ["pool", "images", "images/blobs/sha256", "history.jsonl"] {
        let work = tempfile::tempdir().unwrap();
        copy_tree(p.path(), work.path());
        let env = work.path().join("dist/repos/dev");
        let outside = work.path().join("outside");
        fs::rename(env.join(part), &outside).unwrap();
        std::os::unix::fs::symlink(&outside, env.join(part)).unwrap();
        if outside.is_dir() {
            fs::write(outside.join("my-notes.txt"), b"mine").unwrap();
        }
        let files = everything(&outside);
        for args in [
            &["promote", "--to", "dev"][..],
            &["repo", "prune", "dev", "--keep", "1"],
            &["repo", "rollback", "dev"],
            &["repo", "check", "dev", "--repair"],
        ] {
            let o = run(&mut builder_in(work.path(), &p.key(), args));
            assert!(
                !o.status.success(),
                "{part}: {args:?} went on: {}",
                both(&o)
            );
            assert!(
                both(&o).contains("symbolic link"),
                "{part}: {args:?}: {}",
                both(&o)
            );
            assert!(fs::symlink_metadata(env.join(part)).unwrap().is_symlink());
            assert_eq!(everything(&outside), files, "{part}: {args:?}");
            if outside.is_dir() {
                assert!(outside.join("my-notes.txt").is_file(), "{part}: {args:?}");
            }
        }
    }
}

/// `dists` pointed back by hand when the newer generation's history line is lost (a torn
/// last line, a kill right after the switch): the generation's own `published` marker
/// still shows it was served, so nothing is deleted.
#[test]
fn a_rewound_dists_with_a_lost_history_line_deletes_nothing() {
    let p = prepared();
    let env = p.env_dir("dev");
    let h = fs::read(env.join("history.jsonl")).unwrap();
    fs::write(env.join("history.jsonl"), &h[..h.len() - 40]).unwrap();
    fs::remove_file(env.join("dists")).unwrap();
    std::os::unix::fs::symlink(".generations/1/dists", env.join("dists")).unwrap();
    let files = everything(&env);
    for args in [
        &["repo", "rollback", "dev"][..],
        &["repo", "prune", "dev", "--keep", "5"],
        &["promote", "--to", "dev"],
    ] {
        let o = p.builder(args);
        assert!(!o.status.success(), "{args:?}: {}", both(&o));
        assert!(
            both(&o).contains("changed by hand"),
            "{args:?}: {}",
            both(&o)
        );
        assert_eq!(everything(&env), files, "{args:?} deleted something");
    }
    let o = p.builder(&["repo", "check", "dev", "--repair"]);
    assert!(o.status.success(), "{}", both(&o));
    assert_eq!(
        fs::read_link(env.join("dists")).unwrap(),
        Path::new(".generations/2/dists")
    );
}

/// Damage the review found invisible or published: by-hash copies apt fetches, a damaged
/// pool file a rollback would serve, a key swapped by hand with a re-signed generation, a
/// key file gone (which let another key in without `--rotate-key`).
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn by_hash_damage_rollback_of_damaged_files_and_key_swaps_are_caught() {
    let p = prepared();
    let env = p.env_dir("dev");
    // by-hash: found by check, rewritten by promoting the same artifacts.
    let by_hash = env.join(".generations/2/dists/dev/main/binary-amd64/by-hash/SHA256");
    for f in fs::read_dir(&by_hash).unwrap() {
        fs::write(f.unwrap().path(), b"junk").unwrap();
    }
    let (code, found) = findings(p.path(), &p);
    assert_eq!(code, Some(1));
    assert!(
        found
            .iter()
            .any(|f| f["kind"] == "index" && f["problem"].as_str().unwrap().contains("by hash")),
        "{found:?}"
    );
    let o = p.promote(&["--to", "dev", "--run", "run-1"]);
    assert!(
        o.status.success() && both(&o).contains("damaged"),
        "{}",
        both(&o)
    );
    assert_consistent(p.path(), &p, "after promoting again");

    // A rollback target whose pool file is damaged is refused, naming the file.
    let work = tempfile::tempdir().unwrap();
    copy_tree(p.path(), work.path());
    let wenv = work.path().join("dist/repos/dev");
    let pool = wenv.join("pool/main/d/demo/demo_1.0.0_amd64.deb");
    let mut b = fs::read(&pool).unwrap();
    b.push(b'x');
    fs::write(&pool, b).unwrap();
    let key = p.key();
    let o = run(&mut builder_in(
        work.path(),
        &key,
        &["repo", "rollback", "dev"],
    ));
    assert!(
        !o.status.success() && both(&o).contains("damaged"),
        "rollback over a damaged pool file: {}",
        both(&o)
    );

    // Another key: refused without --rotate-key even when the key files are gone.
    let other = tempfile::tempdir().unwrap();
    let other_key = other.path().join("other.asc");
    let o = p.builder(&[
        "key",
        "generate",
        "--out",
        other_key.to_str().unwrap(),
        "--name",
        "x",
    ]);
    assert!(o.status.success(), "{}", both(&o));
    let current = fs::read_link(env.join("dists")).unwrap();
    fs::remove_file(env.join(&current).join("signing-key.gpg")).unwrap();
    let o = run(&mut builder_in(
        p.path(),
        &other_key,
        &["repo", "rollback", "dev"],
    ));
    assert!(
        !o.status.success() && both(&o).contains("--rotate-key"),
        "another key without --rotate-key: {}",
        both(&o)
    );
}

/// Hand-made generation.json cycles, a FIFO for a pool file and the last generation
/// number used to hang (`prune`, `check`) or wrap around to generation 0.
#[test]
fn cycles_fifos_and_the_last_generation_number_end_with_an_error() {
    let p = prepared();
    let env = p.env_dir("dev");
    let edit = |n: u64, f: &dyn Fn(&mut serde_json::Value)| {
        let path = env.join(format!(".generations/{n}/generation.json"));
        let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        f(&mut v);
        fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    let bounded = |args: &[&str]| {
        let c = p.builder_cmd(args);
        let mut t = Command::new("timeout");
        t.arg("60").arg(c.get_program()).args(c.get_args());
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => t.env(k, v),
                None => t.env_remove(k),
            };
        }
        run(&mut t)
    };
    edit(1, &|v| v["previous"] = 2.into());
    let o = bounded(&["repo", "prune", "dev", "--keep", "1"]);
    assert!(
        o.status.code() != Some(124) && !o.status.success(),
        "prune on a previous cycle: {}",
        both(&o)
    );
    assert!(both(&o).contains("previous"), "{}", both(&o));
    edit(1, &|v| v["previous"] = serde_json::Value::Null);

    let deb = pool_file(&p, "dev", "1.0.0");
    let good = fs::read(&deb).unwrap();
    fs::remove_file(&deb).unwrap();
    sh(Command::new("mkfifo").arg(&deb));
    let o = bounded(&["repo", "check", "dev"]);
    assert_eq!(o.status.code(), Some(1), "check with a FIFO: {}", both(&o));
    assert!(both(&o).contains("1.0.0"), "{}", both(&o));
    fs::remove_file(&deb).unwrap();
    fs::write(&deb, good).unwrap();

    let last = u64::MAX;
    fs::rename(
        env.join(".generations/2"),
        env.join(format!(".generations/{last}")),
    )
    .unwrap();
    edit(last, &|v| v["number"] = last.into());
    fs::remove_file(env.join("dists")).unwrap();
    std::os::unix::fs::symlink(format!(".generations/{last}/dists"), env.join("dists")).unwrap();
    let o = bounded(&["promote", "--to", "dev"]);
    assert!(
        !o.status.success() && both(&o).contains("last number"),
        "promote past the last generation: {}",
        both(&o)
    );
    assert!(!env.join(".generations/0").exists());
}
