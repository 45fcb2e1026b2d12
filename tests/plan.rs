//! `builder plan` and the commands that execute it agree (fast tier: no engine needed).
//! `package` and `pipeline`/`ci` execute the plan `plan` prints, so the .deb paths, image
//! tags and paths, build directories and their order are the same in both.

mod common;

use std::path::Path;

use common::*;

const NO_ENGINE: &str = "unix:///nonexistent/docker.sock";

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn plan_json(dir: &Path) -> serde_json::Value {
    json(&run(builder()
        .arg("--project")
        .arg(dir)
        .args(["--json", "plan"])
        .env("DOCKER_HOST", NO_ENGINE)))
}

/// What a plan says each recipe produces, in order, without what needs the engine.
fn produces(plan: &serde_json::Value) -> Vec<serde_json::Value> {
    plan["recipes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r["name"],
                "deb": r["deb"],
                "compression": r["compression"],
                "image": r["image"],
                "out_dir": r["build"]["out_dir"],
                "builder": r["build"]["builder"],
            })
        })
        .collect()
}

#[test]
fn package_writes_the_debs_plan_prints_in_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = |name: &str| {
        format!(
            "[package]\nname = \"{name}\"\nversion = \"2.0-1\"\nmaintainer = \"Ops <ops@example.com>\"\n\
             description = \"{name}\"\n\n[[files]]\nfrom = \"services/app.env\"\nto = \"/etc/{name}/app.env\"\n"
        )
    };
    write_files(
        dir.path(),
        &[
            ("services/app.env", "PORT=8080\n"),
            ("recipes/zeta.toml", &recipe("zeta")),
            ("recipes/alpha.toml", &recipe("alpha")),
        ],
    );
    let plan = plan_json(dir.path());
    let planned: Vec<&str> = plan["recipes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["deb"].as_str().unwrap())
        .collect();
    assert_eq!(planned.len(), 2, "{plan}");
    let packaged = json(&run(builder().arg("--project").arg(dir.path()).args([
        "--json",
        "package",
        "--no-image",
    ])));
    let written: Vec<&str> = packaged
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["deb"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(planned, written, "{plan}\n{packaged}");
    for deb in written {
        assert!(Path::new(deb).is_file(), "{deb}");
    }
}

/// The pipeline records the plan it executes in pipeline.json: the same steps `builder plan
/// --json` prints. Without an engine the build stage stops it before anything is written,
/// and the plan says the cache was not resolved (that needs the builder images).
#[test]
fn pipeline_json_holds_the_plan_that_plan_prints() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["recipes", "services", "base-images"] {
        copy_tree(&repo().join(sub), &dir.path().join(sub));
    }
    let config = tempfile::tempdir().unwrap();
    let printed = plan_json(dir.path());
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .arg("ci")
        .env("DOCKER_HOST", NO_ENGINE)
        .env("XDG_CONFIG_HOME", config.path()));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("dist/pipeline.json")).unwrap())
            .unwrap();
    let executed = &summary["plan"];
    assert!(executed.is_object(), "{summary}");
    assert_eq!(
        produces(&printed),
        produces(executed),
        "{printed}\n{summary}"
    );
    assert!(
        produces(executed)
            .iter()
            .any(|r| r["image"].is_object() && r["out_dir"].is_string()),
        "the bundled project builds and makes images: {executed}"
    );
    for r in executed["recipes"].as_array().unwrap() {
        let cache = r["build"]["cache"].as_str().unwrap_or("unknown (no build)");
        assert!(cache.starts_with("unknown ("), "{r}");
    }

    // The human plan says which part needs the engine.
    let out = run(builder()
        .arg("--project")
        .arg(dir.path())
        .arg("plan")
        .env("DOCKER_HOST", NO_ENGINE));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let human = text(&out.stdout);
    assert!(
        human.contains("[cache unknown (Docker engine unreachable): -]")
            && human.contains("resolve them before building"),
        "{human}"
    );
}
