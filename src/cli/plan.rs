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

pub async fn run(args: PlanArgs, paths: &Paths, reporter: &Reporter) -> anyhow::Result<u8> {
    let recipes = recipe::load_project(paths)?;
    let selected = recipe::select(&recipes, &args.names)?;
    let mut plan = crate::plan::plan(paths, &selected);
    crate::plan::resolve_cache(paths, &selected, &mut plan).await;
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
                i.tag,
                i.base,
                i.path.display()
            ));
        }
    }
    Ok(crate::error::EXIT_OK)
}
