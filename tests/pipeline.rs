//! `builder ci` end to end on a copy of the bundled project: the whole chain against the
//! real engine, the files CI publishes, and the documented exit codes (0 pass, 1 gate failed,
//! 2 recipe error, 3 environment error).

mod common;

use std::path::Path;

use common::apt::{AptContainer, APT};
use common::*;

/// A copy of the project as a fresh clone has it (recipes, services, base images).
fn project() -> TempProject {
    let dir = TempProject::new();
    for sub in ["recipes", "services", "base-images"] {
        copy_tree(&repo().join(sub), &dir.path().join(sub));
    }
    dir
}

fn ci(dir: &Path, config: &Path, extra: &[&str]) -> std::process::Output {
    run(builder()
        .arg("--project")
        .arg(dir)
        .arg("ci")
        .args(["--duration", "12s", "--warmup", "3s"])
        .args(extra)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("BUILDER_SIGNING_KEY")
        .env_remove("BUILDER_SIGNING_KEY_FILE"))
}

/// `builder --json plan` of the project in `dir`.
fn plan_json(dir: &Path) -> serde_json::Value {
    let out = run(builder().arg("--project").arg(dir).args(["--json", "plan"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn ci_passes_then_fails_the_gate_with_exit_1() {
    let dir = project();
    let config = tempfile::tempdir().unwrap();
    let out = ci(dir.path(), config.path(), &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "no terminal escape codes under ci:\n{err}"
    );
    let dist = dir.path().join("dist");

    // SHA256SUMS lists every artifact and matches the bytes.
    let sums = std::fs::read_to_string(dist.join("SHA256SUMS")).unwrap();
    for f in [
        "debs/backend_1.0.0-1_amd64.deb",
        "debs/frontend_1.0.0-1_amd64.deb",
        "images/backend_1.0.0-1.tar",
        "images/frontend_1.0.0-1.tar",
    ] {
        assert!(
            sums.contains(&format!("  {f}\n")),
            "{f} missing from SHA256SUMS:\n{sums}"
        );
    }
    sh(std::process::Command::new("sha256sum")
        .arg("--check")
        .arg("--quiet")
        .arg("SHA256SUMS")
        .current_dir(&dist));

    // manifest.json: every artifact with sha256, size and version; the smoke report names the
    // same bytes; the pipeline summary says every stage passed.
    let manifest = json(&dist.join("manifest.json"));
    let artifacts = manifest["artifacts"].as_array().unwrap();
    // two .debs, their .changes, two images
    assert_eq!(artifacts.len(), 6, "{manifest}");
    for a in artifacts {
        assert!(sums.contains(a["sha256"].as_str().unwrap()), "{a}");
        assert!(
            a["size"].as_u64().unwrap() > 0 && a["version"] == "1.0.0-1",
            "{a}"
        );
    }
    let summary = json(&dist.join("pipeline.json"));
    assert_eq!(summary["passed"], true);
    let stages: Vec<_> = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stages, vec!["passed"; 5], "{summary}");
    // The run executed the plan it records: the steps `builder plan` prints, the artifacts
    // SHA256SUMS lists, every build resolved (a fresh project: all misses).
    let executed = summary["plan"]["recipes"].as_array().unwrap();
    let printed = plan_json(dir.path());
    let printed = printed["recipes"].as_array().unwrap();
    assert_eq!(executed.len(), printed.len());
    for (e, p) in executed.iter().zip(printed) {
        for field in ["name", "deb", "compression", "image"] {
            assert_eq!(e[field], p[field], "{field}: {e} vs {p}");
        }
        let deb = e["deb"].as_str().unwrap();
        let rel = Path::new(deb)
            .strip_prefix(&dist)
            .unwrap()
            .display()
            .to_string();
        assert!(
            sums.contains(&format!("  {rel}\n")),
            "{rel} not in SHA256SUMS"
        );
        assert_eq!(e["build"]["cache"], "miss", "{e}");
        assert!(e["build"]["cache_key"].is_string(), "{e}");
    }
    let report = json(Path::new(summary["smoke_report"].as_str().unwrap()));
    assert_eq!(report["passed"], true);
    let junit = std::fs::read_to_string(dist.join("junit.xml")).unwrap();
    assert!(
        junit.contains("name=\"smoke\"") && junit.contains("name=\"success_ratio\""),
        "{junit}"
    );
    assert!(!junit.contains("<failure"), "{junit}");

    // Promoted into dev; the key was generated outside the project.
    // The repository verifies with the public key exported beside it.
    sh(std::process::Command::new("gpgv")
        .arg("--keyring")
        .arg(dist.join("repos/dev/signing-key.gpg"))
        .arg(dist.join("repos/dev/dists/dev/InRelease")));
    assert!(config.path().join("builder/signing-key.asc").is_file());
    assert!(!dir.path().join("dist").join("signing-key.asc").exists());
    // The smoke report that approved them is signed by the same key (gpgv agrees).
    let report_path = Path::new(summary["smoke_report"].as_str().unwrap());
    sh(std::process::Command::new("gpgv")
        .arg("--keyring")
        .arg(dist.join("repos/dev/signing-key.gpg"))
        .arg(report_path.with_file_name("report.json.asc"))
        .arg(report_path));

    // Rebase: a new image of the same .deb on the Debian-slim base, with no build and no
    // container: a new image id, the same application layer.
    let inspect = |dir: &Path| -> serde_json::Value {
        let out = run(builder()
            .arg("--project")
            .arg(dir)
            .args(["--json", "inspect", "dist/images/backend_1.0.0-1.tar"])
            .current_dir(dir));
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before = inspect(dir.path());
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .args(["--json", "package", "--rebase", "backend", "--base", "slim"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let after = inspect(dir.path());
    assert_ne!(before["image_id"], after["image_id"]);
    let app_layer =
        |v: &serde_json::Value| v["layers"].as_array().unwrap().last().unwrap()["digest"].clone();
    assert_eq!(app_layer(&before), app_layer(&after));
    assert!(before["layers"][0]["digest"] != after["layers"][0]["digest"]);
    // Back to the recipe's base for the next run (the same bytes as before: reproducible).
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .args(["package", "--rebase", "backend", "--base", "static"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(inspect(dir.path())["image_id"], before["image_id"]);

    // Same project again with a backend that fails half the requests: the build cache hits,
    // the gate fails, exit code 1, nothing promoted, the reports say why.
    let out = ci(
        dir.path(),
        config.path(),
        &["--env", "backend:FAILURE_RATE=0.5"],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("smoke gate failed"), "{err}");
    let summary = json(&dist.join("pipeline.json"));
    assert_eq!(summary["passed"], false);
    assert_eq!(summary["exit_code"], 1);
    assert_eq!(
        summary["stages"][1]["detail"], "0 built, 2 from cache",
        "{summary}"
    );
    // The first run wrote builder.lock, which names the builder image anew; from this run on
    // `builder plan` prints the keys the build used, and that they hit.
    let printed = plan_json(dir.path());
    for (e, p) in summary["plan"]["recipes"]
        .as_array()
        .unwrap()
        .iter()
        .zip(printed["recipes"].as_array().unwrap())
    {
        assert_eq!(e["build"]["cache"], "hit", "{e}");
        assert_eq!(p["build"]["cache"], "hit", "{p}");
        assert_eq!(e["build"]["cache_key"], p["build"]["cache_key"]);
    }
    assert_eq!(summary["stages"][3]["status"], "failed");
    assert_eq!(summary["stages"][4]["status"], "skipped");
    let junit = std::fs::read_to_string(dist.join("junit.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");
    let history = std::fs::read_to_string(dist.join("repos/dev/history.jsonl")).unwrap();
    assert_eq!(
        history.lines().count(),
        1,
        "a failed gate promoted something:\n{history}"
    );
}

#[test]
fn ci_recipe_error_exits_2_and_still_writes_the_summary() {
    let dir = project();
    let config = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("recipes/backend.toml");
    let text_ = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace("name = \"backend\"", "nmae = \"backend\"");
    std::fs::write(&recipe, text_).unwrap();
    let out = ci(dir.path(), config.path(), &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("recipes/backend.toml:") && err.contains("did you mean `name`?"),
        "{err}"
    );
    let summary = json(&dir.path().join("dist/pipeline.json"));
    assert_eq!(summary["exit_code"], 2);
    assert_eq!(summary["stages"][0]["status"], "failed");
    assert!(dir.path().join("dist/junit.xml").is_file());
}

#[test]
fn ci_without_an_engine_exits_3() {
    let dir = project();
    let config = tempfile::tempdir().unwrap();
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .arg("ci")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("XDG_CONFIG_HOME", config.path()));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("Docker engine"), "{err}");
}

/// The promotion target is checked in the validate stage, before a build or smoke run: an
/// environment promote.toml does not list, or one that is not first, is a usage error.
#[test]
fn ci_checks_the_promotion_target_before_building() {
    let dir = project();
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("promote.toml"),
        "environments = [\"qa\", \"prod\"]\n",
    )
    .unwrap();
    for (args, want) in [
        (["--promote-to", "dev"], "unknown environment `dev`"),
        (
            ["--promote-to", "prod"],
            "builder promote --from qa --to prod",
        ),
    ] {
        let out = ci(dir.path(), config.path(), &args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        let summary = json(&dir.path().join("dist/pipeline.json"));
        assert_eq!(summary["stages"][0]["status"], "failed", "{summary}");
        assert_eq!(summary["stages"][1]["status"], "skipped", "{summary}");
    }
}

/// `git` in `dir` with a fixed identity (the host's git config is not needed).
fn git(dir: &Path, args: &[&str]) -> String {
    sh(std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "CI Test")
        .env("GIT_AUTHOR_EMAIL", "ci@example.com")
        .env("GIT_COMMITTER_NAME", "CI Test")
        .env("GIT_COMMITTER_EMAIL", "ci@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir))
}

/// `dpkg --compare-versions a op b` of the real dpkg.
fn dpkg_compare(a: &str, op: &str, b: &str) -> bool {
    std::process::Command::new("dpkg")
        .args(["--compare-versions", a, op, b])
        .status()
        .unwrap()
        .success()
}

/// `ci` in `dir` must pass and promote to `dev`; returns the version (`upstream-revision`)
/// every artifact of the run carries, from dist/manifest.json.
/// Runs `builder ci`, which must promote one version of both packages to `dev`; returns
/// that version and the smoke report that approved it.
fn ci_promotes(dir: &Path, config: &Path) -> (String, serde_json::Value) {
    let out = ci(dir, config, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let dist = dir.join("dist");
    let summary = json(&dist.join("pipeline.json"));
    assert_eq!(summary["passed"], true, "{summary}");
    assert_eq!(summary["stages"][4]["status"], "passed", "{summary}");
    let manifest = json(&dist.join("manifest.json"));
    let versions: std::collections::BTreeSet<_> = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(versions.len(), 1, "{manifest}");
    let version = versions.into_iter().next().unwrap();
    // SHA256SUMS lists each .deb's `.changes` (for an upload) beside it, and checks.
    let sums = std::fs::read_to_string(dist.join("SHA256SUMS")).unwrap();
    for name in ["backend", "frontend"] {
        let changes = format!("  debs/{name}_{version}_amd64.changes\n");
        assert!(sums.contains(&changes), "{changes} missing:\n{sums}");
    }
    sh(std::process::Command::new("sha256sum")
        .args(["--check", "--quiet", "SHA256SUMS"])
        .current_dir(&dist));
    let packages =
        std::fs::read_to_string(dist.join("repos/dev/dists/dev/main/binary-amd64/Packages"))
            .unwrap();
    for name in ["backend", "frontend"] {
        assert!(
            packages.contains(&format!("Package: {name}\n"))
                && packages.contains(&format!("Version: {version}\n")),
            "{name} {version} not in dev's Packages:\n{packages}"
        );
    }
    let report = json(Path::new(summary["smoke_report"].as_str().unwrap()));
    (version, report)
}

/// Checks that `report`'s canary run compared the candidate with `dev`'s release (the
/// images of `baseline_version`) and switched all traffic to it.
fn assert_compared_and_switched(report: &serde_json::Value, baseline_version: &str) {
    let canary = &report["canary"];
    assert_eq!(canary["baseline_env"], "dev", "{canary}");
    assert!(canary["skipped"].is_null(), "{canary}");
    let images = canary["baseline_images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{canary}");
    for image in images {
        assert_eq!(image["version"], baseline_version, "{image}");
        let digest = image["digest"].as_str().unwrap_or_default();
        assert!(digest.starts_with("sha256:"), "by digest: {image}");
    }
    let comparison = &canary["comparison"];
    for variant in ["baseline", "candidate"] {
        let group = &comparison[variant];
        let requests = group["ok"].as_u64().unwrap_or(0) + group["failed"].as_u64().unwrap_or(0);
        assert!(requests >= 100, "{variant}: {comparison}");
    }
    let switch = &canary["switch"];
    assert_eq!(switch["completed"], true, "{switch}");
    assert_eq!(switch["failures"], 0, "{switch}");
}

/// The check of issue 14: `builder ci` on two consecutive commits of an untouched sample
/// project (recipes say `${GIT_VERSION:-1.0.0}`) both promote to `dev`, the second version
/// sorts after the first for dpkg, and apt in a container installs the first and upgrades to
/// the second from the `dev` repository. A release tag then gives the plain version, which
/// sorts after both snapshots and upgrades them too. With `[canary]` in stack.toml (issue
/// 13), the first run skips the comparison (`dev` is empty) and each later run compares its
/// candidate with the release `dev` holds, by digest, and switches the traffic to it.
#[test]
#[cfg_attr(not(feature = "engine-tests"), ignore = "engine tier")]
fn ci_on_consecutive_commits_promotes_upgradable_versions() {
    let dir = project();
    let config = tempfile::tempdir().unwrap();
    let root = dir.path();
    // dist/ is what CI writes, never committed (a dirty tree would mark the versions).
    std::fs::write(root.join(".gitignore"), "/dist/\n").unwrap();
    // With `[canary]`, each run after the first compares with what `dev` holds. Wide
    // tolerances: the comparison's power is tests/canary.rs's subject; this is its path.
    let stack = root.join("recipes/stack.toml");
    let mut toml = std::fs::read_to_string(&stack).unwrap();
    toml.push_str(
        "\n[canary]\nbaseline = \"dev\"\nmin_requests = 100\nmax_latency_increase = 1.0\n\
         max_error_increase = 0.05\nswitch_steps = [50, 100]\nstep_duration = \"2s\"\n",
    );
    std::fs::write(&stack, toml).unwrap();
    git(root, &["init", "-q", "-b", "main"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "sample project"]);

    let started = std::time::Instant::now();
    let (first, report) = ci_promotes(root, config.path());
    let first_secs = started.elapsed().as_secs_f64();
    assert!(first.starts_with("0~git"), "untagged: {first}");
    // `[canary]` compares with the environment ci promotes into, which holds nothing yet.
    let skipped = report["canary"]["skipped"].as_str().unwrap_or_default();
    assert!(
        skipped.starts_with("no comparison: environment `dev` has no repository yet"),
        "{}",
        report["canary"]
    );

    // apt in a container installs the first version from `dev` as promoted.
    let dist = root.join("dist");
    let apt = AptContainer::start(&dist.join("repos"), &dist.join("repos/dev/signing-key.gpg"));
    // Runs an apt command, which must succeed without a warning, then checks that both
    // packages are installed at `version`.
    let apt_to = |apt: &AptContainer, command: &str, version: &str| {
        let o = apt.exec(command);
        let t = text(&o.stdout) + &text(&o.stderr);
        assert!(
            o.status.success() && !t.contains("W:") && !t.contains("E:"),
            "{t}"
        );
        let o = apt.exec("dpkg-query -W -f='${Package} ${Version}\\n' backend frontend");
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(
            text(&o.stdout),
            format!("backend {version}\nfrontend {version}\n")
        );
    };
    apt_to(
        &apt,
        &format!(
            "{} && {APT} update && {APT} install -y backend frontend",
            AptContainer::source("dev", "dev")
        ),
        &first,
    );

    // One source file of one service changes; nothing else.
    let main_go = root.join("services/backend/main.go");
    let mut src = std::fs::read_to_string(&main_go).unwrap();
    src.push_str("\n// second commit\n");
    std::fs::write(&main_go, src).unwrap();
    git(root, &["commit", "-q", "-am", "backend: a comment"]);
    let started = std::time::Instant::now();
    let (second, report) = ci_promotes(root, config.path());
    let second_secs = started.elapsed().as_secs_f64();
    assert!(second.starts_with("0~git"), "untagged: {second}");
    assert!(dpkg_compare(&second, "gt", &first), "{second} <= {first}");
    // The candidate ran beside dev's release (the first commit's images) and took its traffic.
    assert_compared_and_switched(&report, &first);
    apt_to(
        &apt,
        &format!("{APT} update && {APT} install -y --only-upgrade backend frontend"),
        &second,
    );

    // A release tag on a third commit: the plain version, after both snapshots.
    let readme = root.join("services/README.md");
    let mut doc = std::fs::read_to_string(&readme).unwrap();
    doc.push_str("\nRelease 1.1.0.\n");
    std::fs::write(&readme, doc).unwrap();
    git(root, &["commit", "-q", "-am", "release 1.1.0"]);
    git(root, &["tag", "v1.1.0"]);
    let (release, report) = ci_promotes(root, config.path());
    assert_eq!(release, "1.1.0-1");
    assert_compared_and_switched(&report, &second);
    assert!(
        dpkg_compare(&release, "gt", &second),
        "{release} <= {second}"
    );
    apt_to(
        &apt,
        &format!("{APT} update && {APT} upgrade -y"),
        "1.1.0-1",
    );
    eprintln!(
        "ci: first commit {first_secs:.1}s, second commit {second_secs:.1}s; versions {first} < {second} < {release}"
    );
}
