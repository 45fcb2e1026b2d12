//! The pipeline's summary and outputs through the library with a capturing reporter, on
//! projects whose chain stops before anything needs the engine (a recipe error, a refused
//! promotion target, no stack file): which stages ran and how they ended, what
//! `pipeline.json`, `junit.xml` and `SHA256SUMS` say, and what the user read.
//! `tests/pipeline.rs` runs the whole chain against the engine.

use super::*;
use crate::error::EXIT_USAGE;
use crate::report::{Level, Verbosity};
use crate::testkit;

/// A recipe without `[build]` or `[image]`: validate and package need no engine.
const DEMO: &str = r#"[package]
name = "demo"
version = "1.0"
architecture = "amd64"
maintainer = "Tests <tests@example.com>"
description = """
Demo service for the pipeline's tests

A script and nothing else."""
compression = "gzip"

[[files]]
from = "app/demo.sh"
to = "/usr/bin/demo"
mode = "0755"
"#;

/// A project with the demo recipe as `recipe` makes it, and a signing key outside it (so no
/// key is generated under the user's configuration).
fn project(recipe: &str) -> (tempfile::TempDir, Paths, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path());
    std::fs::create_dir_all(&paths.recipes).unwrap();
    std::fs::write(paths.recipes.join("demo.toml"), recipe).unwrap();
    std::fs::create_dir_all(dir.path().join("app")).unwrap();
    std::fs::write(dir.path().join("app/demo.sh"), "#!/bin/sh\necho demo\n").unwrap();
    let (key, _) = testkit::key(&dir.path().join("keys"), "pipeline");
    (dir, paths, key)
}

fn run_pipeline(
    paths: &Paths,
    opts: &PipelineOptions,
) -> (PipelineSummary, anyhow::Result<()>, Reporter) {
    let r = Reporter::capture(Verbosity::Verbose);
    let (summary, result) = testkit::block_on(run(paths, opts, &r, CancellationToken::new()));
    (summary, result, r)
}

fn statuses(s: &PipelineSummary) -> Vec<(&str, StageStatus)> {
    s.stages
        .iter()
        .map(|s| (s.stage.as_str(), s.status))
        .collect()
}

/// The `Stage` lines the user read, e.g. `validate (1/5)`.
fn stage_lines(r: &Reporter) -> Vec<String> {
    r.captured_at(Level::Status)
        .iter()
        .filter_map(|s| s.trim_start().strip_prefix("Stage ").map(str::to_string))
        .collect()
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Validate failed, nothing else ran: the summary files say so, and SHA256SUMS is empty.
fn assert_stopped_in_validate(paths: &Paths, s: &PipelineSummary, r: &Reporter) {
    use StageStatus::*;
    assert_eq!(
        statuses(s),
        [
            ("validate", Failed),
            ("build", Skipped),
            ("package", Skipped),
            ("smoke", Skipped),
            ("promote", Skipped)
        ]
    );
    assert_eq!((s.passed, s.exit_code), (false, EXIT_USAGE));
    assert_eq!(stage_lines(r), ["validate (1/5)"]);
    let written = read_json(&paths.dist.join("pipeline.json"));
    assert_eq!(written["exit_code"], EXIT_USAGE);
    assert_eq!(
        written["stages"][0]["detail"].as_str(),
        Some(s.stages[0].detail.as_str())
    );
    let junit = std::fs::read_to_string(paths.dist.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<failure").count(), 1, "{junit}");
    assert_eq!(junit.matches("<skipped").count(), 4, "{junit}");
    assert_eq!(
        std::fs::read_to_string(paths.dist.join("SHA256SUMS")).unwrap(),
        ""
    );
    assert!(paths.dist.join("manifest.json").is_file());
    assert!(!paths.dist.join("debs").exists());
}

#[test]
fn a_recipe_error_stops_the_chain_in_validate_and_the_summary_is_still_written() {
    let (_dir, paths, key) = project(&DEMO.replace("name = \"demo\"", "nmae = \"demo\""));
    let opts = PipelineOptions {
        signing_key: Some(key),
        ..PipelineOptions::default()
    };
    let (s, result, r) = run_pipeline(&paths, &opts);
    let e = result.unwrap_err();
    assert_eq!(crate::error::exit_code(&e), EXIT_USAGE, "{e:#}");
    assert!(
        s.stages[0].detail.contains("demo.toml:")
            && s.stages[0].detail.contains("did you mean `name`?"),
        "{}",
        s.stages[0].detail
    );
    assert_stopped_in_validate(&paths, &s, &r);
}

/// The promotion target is checked before a build: an unknown environment, or one that is
/// not first, fails validate.
#[test]
fn the_promotion_target_is_checked_before_anything_is_built() {
    let (dir, paths, key) = project(DEMO);
    std::fs::write(
        dir.path().join("promote.toml"),
        "environments = [\"qa\", \"prod\"]\n",
    )
    .unwrap();
    for (target, want) in [
        (
            "dev",
            "unknown environment `dev`: the environments are qa → prod",
        ),
        (
            "prod",
            "promote on with `builder promote --from qa --to prod`",
        ),
    ] {
        let opts = PipelineOptions {
            promote: true,
            promote_to: Some(target.into()),
            signing_key: Some(key.clone()),
            ..PipelineOptions::default()
        };
        let (s, result, r) = run_pipeline(&paths, &opts);
        assert!(result.is_err());
        assert!(
            s.stages[0].detail.contains(want),
            "{target}: {}",
            s.stages[0].detail
        );
        assert_stopped_in_validate(&paths, &s, &r);
    }
}

/// Without a stack file the chain builds nothing, packages the .deb and stops at smoke;
/// SHA256SUMS lists what this run packaged, and leaves out, with a warning, a file that
/// changed after packaging.
#[test]
fn a_run_that_stops_at_smoke_lists_exactly_what_it_packaged() {
    let (_dir, paths, key) = project(DEMO);
    let opts = PipelineOptions {
        promote: true,
        signing_key: Some(key),
        ..PipelineOptions::default()
    };
    let (s, result, r) = run_pipeline(&paths, &opts);
    let e = result.unwrap_err();
    use StageStatus::*;
    assert_eq!(
        statuses(&s),
        [
            ("validate", Passed),
            ("build", Passed),
            ("package", Passed),
            ("smoke", Failed),
            ("promote", Skipped)
        ]
    );
    let details: Vec<&str> = s.stages.iter().map(|s| s.detail.as_str()).collect();
    assert_eq!(
        details[..3],
        ["1 recipes", "0 built, 0 from cache", "1 packages, 0 images"]
    );
    assert!(details[3].contains("stack.toml"), "{}", details[3]);
    assert_eq!(s.exit_code, crate::error::exit_code(&e));
    assert_eq!(
        stage_lines(&r),
        [
            "validate (1/5)",
            "build (2/5)",
            "package (3/5)",
            "smoke (4/5)"
        ]
    );
    assert!(
        r.captured_at(Level::Info)
            .contains(&"nothing to build: no selected recipe has a [build] table".to_string()),
        "{}",
        r.captured_messages()
    );
    assert!(
        r.captured_at(Level::Warning).is_empty(),
        "{}",
        r.captured_messages()
    );

    let deb = paths.dist.join("debs/demo_1.0_amd64.deb");
    let sums = std::fs::read_to_string(paths.dist.join("SHA256SUMS")).unwrap();
    // The .deb's `.changes` is listed with it (what an upload to a repository takes).
    let changes = paths.dist.join("debs/demo_1.0_amd64.changes");
    assert_eq!(
        sums,
        format!(
            "{}  debs/demo_1.0_amd64.deb\n{}  debs/demo_1.0_amd64.changes\n",
            testkit::sha256(&deb),
            testkit::sha256(&changes)
        )
    );
    let junit = std::fs::read_to_string(paths.dist.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<failure").count(), 1, "{junit}");

    // The same outputs again after the .deb changed: left out, with a warning naming both
    // digests; what another run packaged is never listed.
    let packaged = testkit::sha256(&deb);
    testkit::flip_byte(&deb);
    let produced: std::collections::BTreeSet<PathBuf> = [deb.clone()].into();
    let r = Reporter::capture(Verbosity::Verbose);
    write_outputs(&paths, &s, None, Some(&produced), &r).unwrap();
    assert_eq!(
        r.captured_at(Level::Warning),
        [format!(
            "warning: left `debs/demo_1.0_amd64.deb` out of SHA256SUMS: it has sha256 {}, but \
             manifest.json records {packaged}; it changed after packaging",
            testkit::sha256(&deb)
        )]
    );
    assert_eq!(
        std::fs::read_to_string(paths.dist.join("SHA256SUMS")).unwrap(),
        ""
    );
    write_outputs(&paths, &s, None, None, &r).unwrap();
    assert_eq!(
        std::fs::read_to_string(paths.dist.join("SHA256SUMS")).unwrap(),
        ""
    );
}
