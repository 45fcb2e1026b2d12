//! `builder gc`: remove what crashed runs left in the engine (see `crate::docker::gc`).

use anyhow::Context;
use clap::Args;

use super::Paths;
use crate::docker::{CacheVolumes, GcOptions};
use crate::report::Reporter;

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only objects of this run id
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// Also objects of runs whose process is still alive
    #[arg(long)]
    pub all: bool,
    /// Only show what would be removed
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove this project's persistent build cache volumes (all, or only RECIPE's)
    #[arg(long, value_name = "RECIPE", num_args = 0..=1, default_missing_value = "")]
    pub cache: Option<String>,
    /// With --cache: every project's cache volumes on this engine, including those made
    /// before volumes carried their project (the cache scope)
    #[arg(long, requires = "cache")]
    pub all_projects: bool,
}

pub(super) async fn run(args: GcArgs, paths: &Paths, reporter: &Reporter) -> anyhow::Result<u8> {
    let cache_scope = match (&args.cache, args.all_projects) {
        (Some(_), false) => Some(crate::build::cache_scope(&paths.project)?),
        _ => None,
    };
    let pool = crate::docker::Pool::connect(&paths.project, reporter).await?;
    let opts = GcOptions {
        cache_scope,
        run: args.run,
        include_live: args.all,
        dry_run: args.dry_run,
        cache: match args.cache {
            None => CacheVolumes::Keep,
            Some(r) if r.is_empty() => CacheVolumes::All,
            Some(r) => CacheVolumes::Recipe(r),
        },
    };
    // Every engine of the pool (BUILDER_ENGINES / engines.toml), or the DOCKER_HOST one. With
    // a pool, each name says its engine (`engine: name`).
    let mut report = crate::docker::GcReport::default();
    for e in &pool.engines {
        let one = crate::docker::gc::gc_with(&e.engine, &opts, reporter)
            .await
            .with_context(|| format!("gc on engine `{}` ({})", e.name, e.host))?;
        let named = |list: Vec<String>| -> Vec<String> {
            if pool.configured {
                list.into_iter()
                    .map(|n| format!("{}: {n}", e.name))
                    .collect()
            } else {
                list
            }
        };
        report.services.extend(named(one.services));
        report.containers.extend(named(one.containers));
        report.networks.extend(named(one.networks));
        report.volumes.extend(named(one.volumes));
        report.images.extend(named(one.images));
        report.failed.extend(named(one.failed));
        report.skipped_live += one.skipped_live;
    }
    for l in &pool.left_out {
        report.failed.push(format!(
            "anything on engine `{}` ({}): it did not answer: {}",
            l.name, l.host, l.reason
        ));
    }
    if reporter.is_json() {
        reporter.json(&report)?;
    } else {
        let verb = if opts.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for (what, list) in [
            ("service", &report.services),
            ("container", &report.containers),
            ("network", &report.networks),
            ("volume", &report.volumes),
            ("image", &report.images),
        ] {
            for name in list {
                reporter.output(format!("{verb} {what} {name}"));
            }
        }
        reporter.info(format!(
            "{verb} {} object(s); {} left alone (their run is still alive or in use; --all removes \
             those of live runs)",
            report.removed(),
            report.skipped_live
        ));
        for f in &report.failed {
            reporter.warn(format!("could not remove {f}"));
        }
    }
    Ok(if report.failed.is_empty() { 0 } else { 1 })
}
