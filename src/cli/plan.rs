//! `builder plan`: what each recipe will produce, without running anything.

use clap::Args;

use super::Paths;
use crate::recipe;
use crate::report::Reporter;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Recipes to plan [default: all]
    pub names: Vec<String>,
}

pub(super) async fn run(args: PlanArgs, paths: &Paths, reporter: &Reporter) -> anyhow::Result<u8> {
    let recipes = recipe::load_project(paths)?;
    let selected = recipe::select(&recipes, &args.names)?;
    let mut plan = crate::plan::plan(paths, &selected, &Default::default());
    crate::plan::resolve_cache(paths, &mut plan, reporter).await?;
    if reporter.is_json() {
        reporter.json(&plan)?;
        return Ok(crate::error::EXIT_OK);
    }
    for r in &plan.recipes {
        reporter.output(format!("{} {} ({})", r.name, r.version, r.recipe.display()));
        if let Some(b) = &r.build {
            let key = b
                .cache_key
                .as_deref()
                .map(|k| &k[..k.len().min(16)])
                .unwrap_or("-");
            reporter.output(format!(
                "  build    {} in builder `{}` → {}  [cache {}: {}]",
                b.source.display(),
                b.builder,
                b.out_dir.display(),
                b.cache,
                key
            ));
            if let Some(engine) = &b.engine {
                reporter.output(format!("  engine   {engine}"));
            }
        }
        reporter.output(format!(
            "  deb      {} ({}, {} file entries{})",
            r.deb.display(),
            r.compression,
            r.files,
            if r.systemd_units.is_empty() {
                String::new()
            } else {
                format!(", units: {}", r.systemd_units.join(" "))
            }
        ));
        if let Some(i) = &r.image {
            reporter.output(format!(
                "  image    {} on `{}` → {}",
                i.target.tag,
                i.base,
                i.target.path.display()
            ));
        }
    }
    if plan
        .recipes
        .iter()
        .filter_map(|r| r.build.as_ref())
        .any(|b| !b.cache.is_resolved())
    {
        reporter.output(
            "cache    keys include the builder image id: `build` and `pipeline` make missing \
             builder images and resolve them before building",
        );
    }
    let drift: Vec<String> = plan
        .lock
        .iter()
        .filter(|s| s.state != crate::debian::project::SetState::Current)
        .map(|s| {
            let why = match s.state {
                crate::debian::project::SetState::Missing => "not locked yet",
                crate::debian::project::SetState::Stale => "changed since it was locked",
                crate::debian::project::SetState::Edited => "was edited by hand",
                crate::debian::project::SetState::Incomplete => {
                    "lacks a library `${shlibs:Depends}` finds in the built files"
                }
                _ => "locked but no longer used",
            };
            format!("{} `{}` {why}", s.kind, s.name)
        })
        .collect();
    let file = crate::debian::lock::FILE;
    match (&plan.lock_error, drift.is_empty()) {
        (Some(e), _) => reporter.output(format!("lock     {file}: cannot compare: {e}")),
        (None, true) if plan.lock.is_empty() => {}
        (None, true) => reporter.output(format!(
            "lock     {file} is up to date ({} package sets)",
            plan.lock.len()
        )),
        (None, false) => reporter.output(format!(
            "lock     {file} drift: {}; `builder lock` (or `package`) resolves it, `--locked` refuses",
            drift.join("; ")
        )),
    }
    Ok(crate::error::EXIT_OK)
}
