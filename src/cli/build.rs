//! `builder build [NAME...]`: compile recipes in builder containers (see `crate::build`).

use clap::Args;
use serde::Serialize;

use super::Paths;
use crate::build::{BuildOptions, BuildResult};
use crate::report::Reporter;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Recipes to build [default: every recipe with a [build] table]
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,

    /// Build even when the outputs for the cache key are already in dist/build/
    #[arg(long)]
    pub no_cache: bool,

    /// Builds running at once [default: number of cores]
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    builds: &'a [BuildResult],
    /// Containers this run started (one per recipe that was not cached).
    containers_started: usize,
}

pub(super) async fn run(args: BuildArgs, paths: &Paths, reporter: &Reporter) -> anyhow::Result<u8> {
    let recipes = crate::recipe::load_project(paths)?;
    let selected = crate::recipe::select(&recipes, &args.names)?;
    let opts = BuildOptions {
        no_cache: args.no_cache,
        jobs: args
            .jobs
            .map(usize::from)
            .unwrap_or_else(crate::build::default_jobs),
    };
    let mut plan = crate::plan::plan(paths, &selected, &Default::default());
    let cancel = crate::docker::cancel_on_signals();
    let results = crate::build::build(paths, &mut plan, &opts, reporter, cancel).await?;
    if reporter.is_json() {
        reporter.json(&JsonReport {
            builds: &results,
            containers_started: results.iter().filter(|r| !r.cached).count(),
        })?;
    } else {
        for r in &results {
            // Where it ran, once there is more than the DOCKER_HOST engine to tell apart.
            let on = match r.engine.as_deref() {
                Some(e) if e != crate::docker::pool::DEFAULT_NAME => format!("  on `{e}`"),
                _ => String::new(),
            };
            let retried = r
                .retried
                .as_ref()
                .map(|t| format!(" (retried: engine `{}` lost it)", t.engine))
                .unwrap_or_default();
            reporter.output(format!(
                "{:<20} {:<6} key {}  {:>6.1}s  {}{on}{retried}",
                r.name,
                if r.cached { "cached" } else { "built" },
                &r.key[..12],
                r.seconds,
                r.out_dir.display()
            ));
        }
    }
    Ok(crate::error::EXIT_OK)
}
