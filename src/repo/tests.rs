//! Publishing, rollback and prune through the library with a capturing reporter: a refused
//! change leaves the served repository byte for byte as it was, and what each change did is
//! said at the right level. `tests/repo.rs` checks the result with gpgv and apt.

use super::*;
use crate::error::{exit_code, EXIT_FAILED, EXIT_USAGE};
use crate::report::{Level, Verbosity};
use crate::testkit;

/// An empty `dev` repository under a temp directory, and the key it is signed with.
struct Repo {
    dir: tempfile::TempDir,
    cfg: RepoConfig,
    signer: Signer,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let (_, signer) = testkit::key(dir.path(), "repo");
        let cfg = RepoConfig::new(dir.path().join("repos"), "dev");
        Repo { dir, cfg, signer }
    }

    /// A .deb of `demo` `version` with `payload`, approved with its own sha256.
    fn deb(&self, version: &str, payload: &str) -> DebArtifact {
        let path = self
            .dir
            .path()
            .join(format!("debs/{payload}/demo_{version}_amd64.deb"));
        let sha256 = testkit::write_deb(&path, "demo", version, payload);
        DebArtifact { path, sha256 }
    }

    fn publish(
        &self,
        debs: &[DebArtifact],
        signer: &Signer,
    ) -> (anyhow::Result<Generation>, Reporter) {
        let r = Reporter::capture(Verbosity::Verbose);
        (publish(&self.cfg, signer, debs, "tests", &r), r)
    }

    /// A change that must fail with `code`: its message. The repository is byte for byte
    /// what it was, and nothing was reported as done.
    fn refused(&self, change: impl FnOnce(&Reporter) -> anyhow::Result<()>, code: u8) -> String {
        let before = testkit::snapshot(&self.cfg.env_dir());
        let r = Reporter::capture(Verbosity::Verbose);
        let e = change(&r).expect_err("the change should be refused");
        let msg = format!("{e:#}");
        assert_eq!(exit_code(&e), code, "{msg}");
        assert_eq!(testkit::snapshot(&self.cfg.env_dir()), before, "{msg}");
        assert!(
            r.captured_at(Level::Status).is_empty(),
            "{}",
            r.captured_messages()
        );
        msg
    }

    fn versions(&self) -> Vec<String> {
        list(&self.cfg)
            .unwrap()
            .into_iter()
            .map(|p| p.version)
            .collect()
    }

    fn pool_file(&self, version: &str) -> PathBuf {
        self.cfg
            .env_dir()
            .join(format!("pool/main/d/demo/demo_{version}_amd64.deb"))
    }
}

/// The status lines, without their padding.
/// The status lines, without "Waiting for another promoter": in a test process another
/// thread's fork can hold a duplicate of the lock's descriptor until that child execs, so
/// the lock is briefly busy (a flock belongs to the open file description).
fn statuses(r: &Reporter) -> Vec<String> {
    r.captured_at(Level::Status)
        .iter()
        .map(|s| s.trim_start().to_string())
        .filter(|s| !(s.starts_with("Waiting") && s.contains("another promoter")))
        .collect()
}

#[test]
fn a_refused_publish_leaves_the_served_repository_as_it_was() {
    let t = Repo::new();
    let v1 = t.deb("1.0", "one");
    let (g, r) = t.publish(std::slice::from_ref(&v1), &t.signer);
    assert_eq!(g.unwrap().number, 1);
    assert_eq!(
        statuses(&r),
        [
            "Published 1 package(s) and 0 image(s) to `dev` (generation 1, 1 package(s) and 0 \
          image(s) in total)"
        ]
    );

    // Bytes that are not what was approved: refused before anything is locked or read.
    let mut unapproved = t.deb("2.0", "two");
    unapproved.sha256 = "00".repeat(32);
    let msg = t.refused(
        |r| publish(&t.cfg, &t.signer, &[unapproved], "tests", r).map(drop),
        EXIT_FAILED,
    );
    assert!(
        msg.contains(&format!("but {} was approved", "00".repeat(32)))
            && msg.contains("the file changed after the smoke test"),
        "{msg}"
    );

    // A published version with other bytes: refused under the lock, before writing.
    let changed = t.deb("1.0", "changed");
    let msg = t.refused(
        |r| {
            publish(
                &t.cfg,
                &t.signer,
                std::slice::from_ref(&changed),
                "tests",
                r,
            )
            .map(drop)
        },
        EXIT_FAILED,
    );
    assert!(
        msg.contains(&format!(
            "demo 1.0 (amd64) is already in `dev` with sha256 {}",
            v1.sha256
        )) && msg.contains("a published version never changes; bump the version"),
        "{msg}"
    );

    // Two files claiming one version in one publication.
    let v2 = t.deb("2.0", "two");
    let other = t.deb("2.0", "other");
    let msg = t.refused(
        |r| publish(&t.cfg, &t.signer, &[v2, other], "tests", r).map(drop),
        EXIT_FAILED,
    );
    assert!(
        msg.contains("are both demo 2.0 (amd64) with different content"),
        "{msg}"
    );

    // An environment name that is not a directory name.
    let bad = RepoConfig::new(t.dir.path().join("repos"), "../x");
    let msg = t.refused(
        |r| publish(&bad, &t.signer, std::slice::from_ref(&v1), "tests", r).map(drop),
        EXIT_USAGE,
    );
    assert!(
        msg.contains("`../x` is not a valid environment name"),
        "{msg}"
    );

    assert_eq!(t.versions(), ["1.0"]);
    assert_eq!(history(&t.cfg).unwrap().len(), 1);
}

#[test]
fn the_same_artifacts_write_nothing_and_a_damaged_pool_file_is_copied_again() {
    let t = Repo::new();
    let v1 = t.deb("1.0", "one");
    t.publish(std::slice::from_ref(&v1), &t.signer).0.unwrap();

    let (g, r) = t.publish(std::slice::from_ref(&v1), &t.signer);
    let g = g.unwrap();
    assert_eq!((g.number, g.unchanged), (1, true));
    assert_eq!(
        r.captured_at(Level::Info),
        ["`dev` already holds these artifacts (generation 1)"]
    );
    assert!(statuses(&r).is_empty(), "{}", r.captured_messages());

    let pooled = t.pool_file("1.0");
    testkit::flip_byte(&pooled);
    let (g, r) = t.publish(std::slice::from_ref(&v1), &t.signer);
    assert!(g.unwrap().unchanged);
    let warnings = r.captured_at(Level::Warning);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "warning: `dev`: the pool file `pool/main/d/demo/demo_1.0_amd64.deb` was damaged"
        ) && warnings[0].contains(&format!("copied it again from `{}`", v1.path.display())),
        "{warnings:?}"
    );
    assert_eq!(testkit::sha256(&pooled), v1.sha256);
    assert_eq!(history(&t.cfg).unwrap().len(), 1);
}

#[test]
fn another_key_is_refused_unless_rotated_and_a_rotation_is_a_warning() {
    let mut t = Repo::new();
    t.publish(&[t.deb("1.0", "one")], &t.signer).0.unwrap();
    let (_, other) = testkit::key(t.dir.path(), "other");
    let v2 = t.deb("2.0", "two");

    let msg = t.refused(
        |r| publish(&t.cfg, &other, std::slice::from_ref(&v2), "tests", r).map(drop),
        EXIT_USAGE,
    );
    assert!(
        msg.contains(&format!("holds key {}", t.signer.fingerprint()))
            && msg.contains(&format!("the signing key is {}", other.fingerprint()))
            && msg.contains("pass `--rotate-key`"),
        "{msg}"
    );

    t.cfg.rotate_key = true;
    let (g, r) = t.publish(&[v2], &other);
    assert_eq!(g.unwrap().number, 2);
    let warnings = r.captured_at(Level::Warning);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("warning: rotating the signing key of `dev`")
            && warnings[0].contains(&t.signer.fingerprint())
            && warnings[0].contains(&format!("now {}", other.fingerprint())),
        "{warnings:?}"
    );
    let published = std::fs::read(t.cfg.env_dir().join("signing-key.gpg")).unwrap();
    assert_eq!(
        crate::sign::public_key_fingerprint(&published).unwrap(),
        other.fingerprint()
    );
}

#[test]
fn rollback_and_prune_refuse_what_they_cannot_do_and_say_what_they_did() {
    let t = Repo::new();
    let e = rollback(&t.cfg, &t.signer, &Reporter::capture(Verbosity::Verbose)).unwrap_err();
    assert_eq!(exit_code(&e), EXIT_USAGE, "{e:#}");
    assert!(
        format!("{e:#}").contains("has no published generation to roll back"),
        "{e:#}"
    );

    t.publish(&[t.deb("1.0", "one")], &t.signer).0.unwrap();
    let msg = t.refused(|r| rollback(&t.cfg, &t.signer, r).map(drop), EXIT_FAILED);
    assert!(
        msg.contains("generation 1 of `dev` has no previous generation to roll back to"),
        "{msg}"
    );
    t.publish(&[t.deb("2.0", "two")], &t.signer).0.unwrap();
    let msg = t.refused(|r| prune(&t.cfg, &t.signer, 0, r).map(drop), EXIT_USAGE);
    assert!(
        msg.contains("`--keep 0` would empty the repository"),
        "{msg}"
    );

    let r = Reporter::capture(Verbosity::Verbose);
    let g = rollback(&t.cfg, &t.signer, &r).unwrap();
    assert_eq!(g.number, 3);
    assert_eq!(
        statuses(&r),
        ["Rolled back `dev` to the contents of generation 1 (now generation 3)"]
    );
    assert_eq!(t.versions(), ["1.0"]);

    // Every generation holds 1.0: keeping one version removes it, every generation that
    // holds it, and the pool files only those referenced (2.0's, from generation 2, too).
    t.publish(&[t.deb("3.0", "three")], &t.signer).0.unwrap();
    let r = Reporter::capture(Verbosity::Verbose);
    let report = prune(&t.cfg, &t.signer, 1, &r).unwrap();
    let removed: Vec<&str> = report
        .removed_versions
        .iter()
        .map(|a| a.version.as_str())
        .collect();
    assert_eq!(removed, ["1.0"]);
    assert_eq!(t.versions(), ["3.0"]);
    assert_eq!(
        statuses(&r),
        [format!(
            "Pruned `dev`: 1 package version(s), {} pool file(s), 0 image version(s), 0 image \
             blob(s), {} generation(s) removed",
            report.removed_files.len(),
            report.removed_generations.len()
        )]
    );
    assert_eq!(report.removed_generations, [1, 2, 3, 4]);
    assert_eq!(report.removed_files.len(), 2, "{:?}", report.removed_files);
    assert!(!t.pool_file("1.0").exists() && !t.pool_file("2.0").exists());
    assert!(t.pool_file("3.0").exists());
    assert!(r.captured_at(Level::Warning).is_empty());
}

/// A digest with one hex digit that is no hex digit.
fn damaged(hex: &str) -> String {
    format!("g{}", &hex[1..])
}

#[test]
fn a_malformed_digest_costs_its_entry_not_the_generation_and_repair_keeps_it() {
    let t = Repo::new();
    let (v1, v2) = (t.deb("1.0", "one"), t.deb("2.0", "two"));
    t.publish(std::slice::from_ref(&v1), &t.signer).0.unwrap();
    t.publish(std::slice::from_ref(&v2), &t.signer).0.unwrap();
    // Generation 3 serves 1.0 again: 2.0's pool file is generation 2's only.
    let g = rollback(&t.cfg, &t.signer, &Reporter::capture(Verbosity::Verbose)).unwrap();
    assert_eq!(g.number, 3);
    let file = t.cfg.env_dir().join(".generations/2/generation.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let packages = meta["packages"].as_array_mut().unwrap();
    let i = packages.iter().position(|p| p["version"] == "2.0").unwrap();
    packages[i]["sha256"] = damaged(&v2.sha256).into();
    std::fs::write(&file, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    let field = format!("packages[{i}].sha256");

    let r = Reporter::capture(Verbosity::Verbose);
    let report = check::check(&t.cfg, false, &r).unwrap();
    let damage: Vec<&check::Finding> = report
        .findings
        .iter()
        .filter(|f| f.kind == check::FindingKind::Generation)
        .collect();
    assert_eq!(damage.len(), 1, "{:#?}", report.findings);
    let problem = &damage[0].problem;
    assert!(
        problem.contains("`.generations/2/generation.json`")
            && problem.contains(&format!("`{field}` (demo 2.0 amd64)"))
            && problem.contains(&format!("`{}` is not a sha256 digest", damaged(&v2.sha256)))
            && problem.contains("generation 2 is kept"),
        "{problem}"
    );
    assert!(!damage[0].repairable, "{problem}");
    assert!(!problem.contains("cannot be read"), "{problem}");
    // The entry's pool file still belongs to generation 2.
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.kind == check::FindingKind::Unreferenced),
        "{:#?}",
        report.findings
    );
    assert!(!report.consistent);

    let r = Reporter::capture(Verbosity::Verbose);
    let report = check::check(&t.cfg, true, &r).unwrap();
    assert!(
        t.cfg.env_dir().join(".generations/2").is_dir(),
        "--repair deleted the generation"
    );
    assert!(
        t.pool_file("2.0").is_file(),
        "--repair deleted its pool file"
    );
    assert!(
        report.findings.iter().all(|f| !f.repaired),
        "{:#?}",
        report.findings
    );

    // The cleanup every command runs reads around it too, and says so.
    let (g, r) = t.publish(&[t.deb("3.0", "three")], &t.signer);
    assert_eq!(g.unwrap().number, 4);
    let warnings = r.captured_at(Level::Warning);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(".generations/2/generation.json`")
            && warnings[0].contains(&format!("`{field}` (demo 2.0 amd64)"))
            && warnings[0].contains("generation 2 is kept"),
        "{warnings:?}"
    );
    assert!(t.cfg.env_dir().join(".generations/2").is_dir());
    assert!(t.pool_file("2.0").is_file());

    // A command that would publish it refuses with the file and the value.
    let layout = store::Layout::new(&t.cfg.root, &t.cfg.env);
    let e = layout.read_meta(2).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("generation.json") && msg.contains(&damaged(&v2.sha256)),
        "{msg}"
    );
}

#[test]
fn history_lines_that_do_not_read_are_named_by_file_line_and_field() {
    let t = Repo::new();
    let (v1, v2) = (t.deb("1.0", "one"), t.deb("2.0", "two"));
    t.publish(std::slice::from_ref(&v1), &t.signer).0.unwrap();
    t.publish(std::slice::from_ref(&v2), &t.signer).0.unwrap();
    let path = t.cfg.env_dir().join("history.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen(&v1.sha256, &damaged(&v1.sha256), 1);
    std::fs::write(&path, format!("{text}{{\"time\": \"torn")).unwrap();

    let layout = store::Layout::new(&t.cfg.root, &t.cfg.env);
    let h = history::read_checked(&layout).unwrap();
    assert_eq!(
        h.entries.iter().map(|e| e.generation).collect::<Vec<_>>(),
        [2]
    );
    assert_eq!(h.bad.len(), 2, "{:?}", h.bad);
    assert_eq!((h.bad[0].line, h.bad[0].torn), (1, false));
    assert!(
        h.bad[0]
            .problem
            .starts_with("`artifacts[0].sha256` (demo 1.0 amd64): `g"),
        "{:?}",
        h.bad[0]
    );
    assert_eq!((h.bad[1].line, h.bad[1].torn), (3, true));

    let r = Reporter::capture(Verbosity::Verbose);
    let report = check::check(&t.cfg, false, &r).unwrap();
    let found: Vec<&check::Finding> = report
        .findings
        .iter()
        .filter(|f| f.kind == check::FindingKind::History)
        .collect();
    assert_eq!(found.len(), 1, "{:#?}", report.findings);
    assert_eq!(found[0].path.as_deref(), Some("history.jsonl:1"));
    assert!(
        found[0]
            .problem
            .starts_with("`history.jsonl:1`: `artifacts[0].sha256` (demo 1.0 amd64)"),
        "{}",
        found[0].problem
    );
    assert!(!report.consistent);
    // The torn last line is what a crash leaves: said, not a finding.
    let warnings = r.captured_at(Level::Warning);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("`history.jsonl:3` is not a history line"),
        "{warnings:?}"
    );
}
