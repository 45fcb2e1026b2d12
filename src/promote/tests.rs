//! Promotion through the library with a capturing reporter: what the gate refuses (and that
//! a refusal writes nothing), what it lets through, and what a user reads about either. The
//! binary-level tests in `tests/promote.rs` keep the exit codes and flags end to end.

use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::error::{exit_code, EXIT_FAILED, EXIT_USAGE};
use crate::report::{Level, Verbosity};
use crate::testkit::{self, gate_checks, passing, Project};

fn opts(p: &Project, to: &str) -> PromoteOptions {
    PromoteOptions {
        to: to.into(),
        signing_key: Some(p.key.clone()),
        ..PromoteOptions::default()
    }
}

fn from_run(p: &Project, run: &str) -> PromoteOptions {
    PromoteOptions {
        run: Some(run.into()),
        ..opts(p, "dev")
    }
}

/// One promotion, with a reporter that keeps everything down to `-v` lines.
fn promote_with(p: &Project, o: &PromoteOptions) -> (anyhow::Result<PromoteResult>, Reporter) {
    let r = Reporter::capture(Verbosity::Verbose);
    (testkit::block_on(promote(&p.paths, o, &r)), r)
}

/// A promotion that must be refused with `code`: its message. The target environment is
/// byte for byte what it was, and the reporter said nothing was published.
fn refused(p: &Project, o: &PromoteOptions, code: u8) -> String {
    let before = testkit::snapshot(&p.env_dir(&o.to));
    let (res, r) = promote_with(p, o);
    let Err(e) = res else {
        panic!("promoted: {}", r.captured_messages())
    };
    let msg = format!("{e:#}");
    assert_eq!(exit_code(&e), code, "{msg}");
    assert_eq!(
        testkit::snapshot(&p.env_dir(&o.to)),
        before,
        "a refused promotion changed `{}`: {msg}",
        o.to
    );
    assert!(
        !r.captured_messages().contains("Published"),
        "{}",
        r.captured_messages()
    );
    msg
}

fn rel_path(a: &serde_json::Value) -> PathBuf {
    PathBuf::from(a["path"].as_str().unwrap())
}

fn sha(a: &serde_json::Value) -> &str {
    a["sha256"].as_str().unwrap()
}

fn history(p: &Project, env: &str) -> Vec<crate::repo::history::HistoryEntry> {
    crate::repo::history(&RepoConfig::new(p.dist().join("repos"), env)).unwrap()
}

fn pool_file(p: &Project, env: &str, version: &str) -> PathBuf {
    p.env_dir(env)
        .join(format!("pool/main/d/demo/demo_{version}_amd64.deb"))
}

#[test]
fn nothing_is_promoted_without_a_passed_report_for_the_same_bytes() {
    let p = Project::new();
    let deb = p.deb("1.0");
    let msg = refused(&p, &opts(&p, "dev"), EXIT_FAILED);
    assert!(
        msg.contains("no smoke report in") && msg.contains("run `builder smoke` first"),
        "{msg}"
    );

    // The latest run failed the gate on success ratio and p99 (an older one passed): its
    // reasons, as the gate worded them, are the refusal.
    p.report("run-old", &passing(), &json!([&deb]));
    p.report("run-bad", &gate_checks(49.9, 0.91, 2500.0), &json!([&deb]));
    let msg = refused(&p, &opts(&p, "dev"), EXIT_FAILED);
    assert!(
        msg.contains(
            "the latest smoke run run-bad failed: success ratio 91.00% is below the threshold \
             min_success 98.00% (910 ok, 90 failed, 0 dropped; statuses: none; errors: none); \
             p99 latency 2500.0 ms is above the threshold max_p99_ms 1000 ms; fix it and run \
             `builder smoke` again"
        ),
        "{msg}"
    );

    // Passed, but the .deb changed afterwards: both digests are named.
    p.report("run-1", &passing(), &json!([&deb]));
    let file = p.dist().join(rel_path(&deb));
    let good = std::fs::read(&file).unwrap();
    testkit::flip_byte(&file);
    let msg = refused(&p, &opts(&p, "dev"), EXIT_FAILED);
    assert!(
        msg.contains("deb demo 1.0")
            && msg.contains(sha(&deb))
            && msg.contains(&testkit::sha256(&file))
            && msg.contains("the file changed after the smoke test"),
        "{msg}"
    );

    // Restored: promoted, with the run recorded, and the user told which key signed.
    std::fs::write(&file, good).unwrap();
    let (res, r) = promote_with(&p, &opts(&p, "dev"));
    let res = res.unwrap();
    assert_eq!((res.generation, res.unchanged), (1, false));
    assert_eq!(res.packages[0].sha256.hex(), sha(&deb));
    assert_eq!(res.packages[0].run.as_deref(), Some("run-1"));
    assert!(
        res.source.starts_with("smoke run run-1 ("),
        "{}",
        res.source
    );
    assert_eq!(
        r.captured_at(Level::Info),
        [format!(
            "signing with key {} from `{}` (--signing-key)",
            p.signer.fingerprint(),
            p.key.display()
        )]
    );
    assert_eq!(
        r.captured_at(Level::Verbose),
        ["promoting what smoke run run-1 passed"]
    );
    let status = r.captured_at(Level::Status);
    assert!(
        status.iter().any(|s| s.trim_start()
            == "Published 1 package(s) and 0 image(s) to `dev` (generation 1, 1 package(s) \
                and 0 image(s) in total)"),
        "{status:?}"
    );
    assert!(r.captured_at(Level::Warning).is_empty());
    assert_eq!(testkit::sha256(&pool_file(&p, "dev", "1.0")), sha(&deb));

    // The same report again: nothing new, and the user is told so.
    let (res, r) = promote_with(&p, &opts(&p, "dev"));
    assert!(res.unwrap().unchanged);
    assert!(r
        .captured_at(Level::Info)
        .contains(&"`dev` already holds these artifacts (generation 1)".to_string()));
    assert_eq!(history(&p, "dev").len(), 1);
}

/// Each forgery of a report is refused with what is wrong with it, and nothing is written;
/// then the genuine report promotes.
#[test]
fn forged_unsigned_and_inconsistent_reports_are_refused() {
    let p = Project::new();
    let deb = p.deb("1.0");
    let arts = json!([&deb]);
    let edited = |run: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = p.report_json(run, &passing(), &arts);
        edit(&mut v);
        p.write_report(run, &v, Some(&p.signer));
    };

    // `passed: true` while checks failed, signed as smoke signs.
    edited("all-failed", &|v| {
        v["checks"] = json!(gate_checks(49.9, 0.5, 2500.0));
    });
    let msg = refused(&p, &from_run(&p, "all-failed"), EXIT_FAILED);
    assert!(
        msg.contains("says passed = true, but these checks failed: success_ratio, p99_latency"),
        "{msg}"
    );

    // Edited after it was signed.
    let path = p.report("edited", &passing(), &arts);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"size\": 1", "\"size\": 2")).unwrap();
    let msg = refused(&p, &from_run(&p, "edited"), EXIT_FAILED);
    assert!(
        msg.contains("smoke run edited: the report") && msg.contains("cannot be trusted"),
        "{msg}"
    );

    // Not signed at all.
    let v = p.report_json("unsigned", &passing(), &arts);
    p.write_report("unsigned", &v, None);
    let msg = refused(&p, &from_run(&p, "unsigned"), EXIT_FAILED);
    assert!(
        msg.contains("smoke run unsigned is not signed") && msg.contains("report.json.asc"),
        "{msg}"
    );

    // Signed by a key that is not the project's.
    let (_, stranger) = testkit::key(&p.dir.path().join("keys"), "stranger");
    let v = p.report_json("stranger", &passing(), &arts);
    p.write_report("stranger", &v, Some(&stranger));
    let msg = refused(&p, &from_run(&p, "stranger"), EXIT_FAILED);
    assert!(
        msg.contains(&format!(
            "signed by key {}, not by this project's key {}",
            stranger.fingerprint(),
            p.signer.fingerprint()
        )),
        "{msg}"
    );

    // A run that stopped before the gate cannot say it passed.
    edited("stopped", &|v| v["error"] = "never became healthy".into());
    let msg = refused(&p, &from_run(&p, "stopped"), EXIT_FAILED);
    assert!(
        msg.contains("the run stopped before the gate (never became healthy)"),
        "{msg}"
    );

    // Artifacts outside dist/: `..`, absolute, and a link inside dist/ pointing out.
    let outside = p.dir.path().join("outside.deb");
    std::fs::copy(p.dist().join(rel_path(&deb)), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, p.dist().join("debs/link.deb")).unwrap();
    for (run, path) in [
        ("dotdot", "../outside.deb".to_string()),
        ("absolute", outside.display().to_string()),
        ("link-out", "debs/link.deb".to_string()),
    ] {
        edited(run, &|v| v["artifacts"][0]["path"] = path.clone().into());
        let msg = refused(&p, &from_run(&p, run), EXIT_FAILED);
        assert!(
            msg.contains(&format!("has path `{path}`, which is not inside"))
                && msg.contains("only takes artifacts from dist/"),
            "{run}: {msg}"
        );
    }

    p.report("genuine", &passing(), &arts);
    let (res, _) = promote_with(&p, &from_run(&p, "genuine"));
    assert_eq!(res.unwrap().packages[0].run.as_deref(), Some("genuine"));
}

/// `--from dev --to staging` takes what dev holds, traced to the report that passed it, and
/// hashes dev's pool files again on the way.
#[test]
fn promotion_from_an_environment_is_traced_to_its_report_and_hashed_again() {
    let p = Project::new();
    let v1 = p.deb("1.0");
    p.report("run-1", &passing(), &json!([&v1]));
    promote_with(&p, &opts(&p, "dev")).0.unwrap();

    // `--to staging` means from dev.
    let (res, r) = promote_with(&p, &opts(&p, "staging"));
    let res = res.unwrap();
    assert_eq!(res.source, "environment dev (smoke runs run-1)");
    assert_eq!(res.packages[0].run.as_deref(), Some("run-1"));
    assert_eq!(testkit::sha256(&pool_file(&p, "staging", "1.0")), sha(&v1));
    assert_eq!(history(&p, "staging")[0].from_env.as_deref(), Some("dev"));
    assert!(r.captured_at(Level::Warning).is_empty());

    // A pool file changed in dev after promotion stops it moving on.
    let v2 = p.deb("2.0");
    p.report("run-2", &passing(), &json!([&v2]));
    promote_with(&p, &opts(&p, "dev")).0.unwrap();
    let pooled = pool_file(&p, "dev", "2.0");
    testkit::flip_byte(&pooled);
    let msg = refused(&p, &opts(&p, "staging"), EXIT_FAILED);
    assert!(
        msg.contains("package demo 2.0 (amd64)")
            && msg.contains(sha(&v2))
            && msg.contains(&testkit::sha256(&pooled))
            && msg.contains("the pool file was changed after promotion"),
        "{msg}"
    );

    // So does a report that no longer says what dev recorded.
    testkit::flip_byte(&pooled);
    let mut v = p.report_json("run-2", &passing(), &json!([&v2]));
    v["artifacts"][0]["sha256"] = "ab".repeat(32).into();
    p.write_report("run-2", &v, Some(&p.signer));
    let msg = refused(&p, &opts(&p, "staging"), EXIT_FAILED);
    assert!(
        msg.contains(&format!(
            "`dev` recorded sha256 {}, but smoke run run-2 passed sha256 {}",
            sha(&v2),
            "ab".repeat(32)
        )),
        "{msg}"
    );
}

/// An unreadable old report is skipped with a warning; asked for by `--run`, or newer than
/// every readable one, it is an error; an unknown `--run` lists the runs there are.
#[test]
fn unreadable_reports_are_skipped_with_a_warning_unless_they_decide() {
    let p = Project::new();
    let deb = p.deb("1.0");
    let broken = p.dist().join("smoke/old/report.json");
    std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
    std::fs::write(&broken, "{").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    p.report("good-1", &passing(), &json!([&deb]));

    let (res, r) = promote_with(&p, &opts(&p, "dev"));
    res.unwrap();
    let warnings = r.captured_at(Level::Warning);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("warning: skipping `")
            && warnings[0].contains(&broken.display().to_string())
            && warnings[0].contains("delete it (or its run directory)"),
        "{warnings:?}"
    );

    let msg = refused(&p, &from_run(&p, "old"), EXIT_FAILED);
    assert!(msg.contains(&broken.display().to_string()), "{msg}");
    let msg = refused(&p, &from_run(&p, "nope"), EXIT_USAGE);
    assert!(
        msg.contains("`--run nope`: no smoke run `nope`")
            && msg.contains("the newest are `good-1`"),
        "{msg}"
    );

    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&broken, "{").unwrap();
    let msg = refused(&p, &opts(&p, "dev"), EXIT_FAILED);
    assert!(
        msg.contains("cannot be read") && msg.contains("the latest run's result is unknown"),
        "{msg}"
    );
}

fn order(allow_skip: bool) -> PromoteConfig {
    PromoteConfig {
        environments: vec!["dev".into(), "staging".into(), "prod".into()],
        allow_skip,
        root: PathBuf::from("repos"),
        registry: None,
        signing_key: None,
        file: None,
    }
}

/// Where `--to to [--from from] [--run run]` takes its artifacts from, as text.
fn source_of(cfg: &PromoteConfig, to: &str, from: Option<&str>, run: Option<&str>) -> String {
    let o = PromoteOptions {
        to: to.into(),
        from: from.map(str::to_string),
        run: run.map(str::to_string),
        ..PromoteOptions::default()
    };
    match resolve_source(cfg, &o) {
        Ok(Source::Report(None)) => "latest report".into(),
        Ok(Source::Report(Some(r))) => format!("run {r}"),
        Ok(Source::Env(e)) => format!("env {e}"),
        Err(e) => {
            assert_eq!(exit_code(&e), EXIT_USAGE, "{e:#}");
            format!("usage: {e:#}")
        }
    }
}

#[test]
fn promotions_go_forward_one_step_at_a_time_unless_skipping_is_allowed() {
    let strict = order(false);
    assert_eq!(source_of(&strict, "dev", None, None), "latest report");
    assert_eq!(source_of(&strict, "staging", None, None), "env dev");
    assert_eq!(source_of(&strict, "prod", None, None), "env staging");
    assert_eq!(source_of(&strict, "dev", None, Some("r")), "run r");
    for (to, from, run, want) in [
        (
            "prod",
            Some("dev"),
            None,
            "`dev` → `prod` skips staging: promotions go one step at a time (dev → staging → \
             prod); promote to `staging` first, or set `allow_skip = true` in promote.toml",
        ),
        (
            "dev",
            Some("staging"),
            None,
            "promotions go forward (dev → staging → prod): `staging` comes after `dev`; to go \
             back, use `builder promote --to dev --rollback`",
        ),
        ("dev", Some("dev"), None, "are the same environment"),
        (
            "staging",
            None,
            Some("r"),
            "only the first environment (`dev`) takes",
        ),
        ("dev", Some("dev"), Some("r"), "it takes no `--from`"),
        (
            "qa",
            None,
            None,
            "unknown environment `qa`: the environments are dev → staging → prod",
        ),
        ("dev", Some("qa"), None, "unknown environment `qa`"),
    ] {
        let got = source_of(&strict, to, from, run);
        assert!(
            got.starts_with("usage: ") && got.contains(want),
            "--to {to} --from {from:?} --run {run:?}: {got}"
        );
    }
    let skipping = order(true);
    assert_eq!(source_of(&skipping, "prod", Some("dev"), None), "env dev");
    assert_eq!(source_of(&skipping, "prod", None, Some("r")), "run r");
    assert!(source_of(&skipping, "dev", Some("prod"), None).contains("promotions go forward"));
}

/// `--rollback` restores the previous generation; one with `--from` is refused first.
#[test]
fn a_rollback_restores_the_previous_generation_and_says_so() {
    let p = Project::new();
    for v in ["1.0", "2.0"] {
        let deb = p.deb(v);
        p.report(&format!("run-{v}"), &passing(), &json!([&deb]));
        promote_with(&p, &opts(&p, "dev")).0.unwrap();
    }
    let back = PromoteOptions {
        rollback: true,
        ..opts(&p, "dev")
    };
    let msg = refused(
        &p,
        &PromoteOptions {
            from: Some("dev".into()),
            ..back.clone()
        },
        EXIT_USAGE,
    );
    assert!(msg.contains("`--rollback` takes no `--from`"), "{msg}");

    let (res, r) = promote_with(&p, &back);
    let res = res.unwrap();
    assert_eq!((res.source.as_str(), res.generation), ("rollback", 3));
    let versions: Vec<&str> = res.packages.iter().map(|p| p.version.as_str()).collect();
    assert_eq!(versions, ["1.0"]);
    assert!(
        r.captured_at(Level::Status).iter().any(|s| s.trim_start()
            == "Rolled back `dev` to the contents of generation 1 (now generation 3)"),
        "{}",
        r.captured_messages()
    );
}
