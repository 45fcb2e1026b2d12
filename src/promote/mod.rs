//! `builder promote`: moves exactly what passed the smoke test into the next environment.
//!
//! ```text
//! --to <first env>        latest smoke report (must have passed) ─gate─▶ repo::publish_full
//! --from A --to B         what A holds, traced to its passed reports ─gate─▶ repo::publish_full
//! --to B --rollback       repo::rollback (packages and images: the previous generation)
//! then, with a registry   push every added image to <registry>/<B>/<name>:<tag>, same digest
//! ```
//!
//! Owns: the promotion order and its rules ([`config`]), reading smoke reports
//! ([`smoke_report`]), the gate ([`gate`]: every digest checked before anything is written)
//! and the registry push ([`registry`]). The repository mechanics (lock, generations, atomic
//! switch, history) are `crate::repo`'s. There is no way to skip the gate.

pub(crate) mod config;
pub(crate) mod gate;
pub(crate) mod registry;
pub(crate) mod smoke_report;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use crate::error::usage;
use crate::project::Paths;
use crate::repo::{self, images::ImageEntry, RepoConfig};
use crate::report::Reporter;

pub(crate) use config::PromoteConfig;

/// What to promote where.
#[derive(Debug, Clone, Default)]
pub(crate) struct PromoteOptions {
    /// Target environment.
    pub to: String,
    /// Source environment; `None` promotes from the latest smoke report (into the first
    /// environment), or from the environment before `to` when `to` is not the first.
    pub from: Option<String>,
    /// Promote what this smoke run passed (its report), instead of the latest report or an
    /// environment. `to` must be the first environment unless `allow_skip`.
    pub run: Option<String>,
    /// Make the previous generation of `to` current again instead.
    pub rollback: bool,
    /// `promote.toml` to read instead of `<project>/promote.toml`.
    pub config: Option<PathBuf>,
    /// Overrides the config's registry (`host:port`).
    pub registry: Option<String>,
    /// Overrides the config's repositories root.
    pub root: Option<PathBuf>,
    /// The signing key; wins over the environment and the config (see
    /// [`PromoteConfig::signer`]).
    pub signing_key: Option<PathBuf>,
    /// Allow signing with a key other than the one the target repository publishes.
    pub rotate_key: bool,
}

/// What one promotion did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PromoteResult {
    pub env: String,
    /// `smoke run <id> (...)`, `environment <env> (...)` or `rollback`.
    pub source: String,
    pub generation: u64,
    /// `to` already held exactly these artifacts: nothing was written.
    pub unchanged: bool,
    pub packages: Vec<PromotedPackage>,
    pub images: Vec<ImageEntry>,
    pub pushed: Vec<registry::Pushed>,
    /// Gate + repository write, seconds.
    pub promote_seconds: f64,
    /// Registry push, seconds (0 without a registry).
    pub push_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PromotedPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Bare hex, as the repository's `Packages` spells it.
    #[serde(serialize_with = "crate::digest::bare::serialize")]
    pub sha256: crate::digest::Digest,
    pub run: Option<String>,
}

/// Where a promotion takes its artifacts from.
enum Source {
    /// The latest smoke report, or the report of the given run.
    Report(Option<String>),
    Env(String),
}

fn resolve_source(cfg: &PromoteConfig, opts: &PromoteOptions) -> anyhow::Result<Source> {
    let to = cfg.position(&opts.to)?;
    if let Some(run) = &opts.run {
        if opts.from.is_some() {
            return Err(usage(
                "`--run` promotes a smoke run's artifacts: it takes no `--from`",
            ));
        }
        if to > 0 && !cfg.allow_skip {
            return Err(usage(format!(
                "`--run {run}` promotes straight from a smoke run, which only the first \
                 environment (`{}`) takes; set `allow_skip = true` in {} to allow `{}`",
                cfg.environments[0],
                config::FILE,
                opts.to
            )));
        }
        return Ok(Source::Report(Some(run.clone())));
    }
    let from = match &opts.from {
        Some(f) if f == &opts.to => {
            return Err(usage(format!(
                "`--from {f}` and `--to {f}` are the same environment"
            )))
        }
        Some(f) => Some(cfg.position(f)?),
        None if to == 0 => None,
        None => Some(to - 1),
    };
    let order = cfg.environments.join(" → ");
    match from {
        None => Ok(Source::Report(None)),
        Some(f) if f > to => Err(usage(format!(
            "promotions go forward ({order}): `{}` comes after `{}`; to go back, use \
             `builder promote --to {} --rollback`",
            cfg.environments[f], opts.to, opts.to
        ))),
        Some(f) if f + 1 != to && !cfg.allow_skip => Err(usage(format!(
            "`{}` → `{}` skips {}: promotions go one step at a time ({order}); promote to `{}` \
             first, or set `allow_skip = true` in {}",
            cfg.environments[f],
            opts.to,
            cfg.environments[f + 1..to].join(", "),
            cfg.environments[f + 1],
            config::FILE
        ))),
        Some(f) => Ok(Source::Env(cfg.environments[f].clone())),
    }
}

/// Runs one promotion (or rollback). Every check happens before anything is written; a
/// refusal is an error with exit code 1 naming the artifact and both digests.
pub(crate) async fn promote(
    paths: &Paths,
    opts: &PromoteOptions,
    reporter: &Reporter,
) -> anyhow::Result<PromoteResult> {
    let mut cfg = PromoteConfig::load(paths, opts.config.as_deref())?;
    if let Some(r) = &opts.registry {
        cfg.registry = Some(r.clone());
    }
    if let Some(r) = &opts.root {
        cfg.root = r.clone();
    }
    let registry = cfg
        .registry
        .as_deref()
        .map(registry::Registry::parse)
        .transpose()?;
    let start = Instant::now();
    let source = if opts.rollback {
        if opts.from.is_some() {
            return Err(usage(
                "`--rollback` takes no `--from`: it restores `--to`'s previous generation",
            ));
        }
        cfg.position(&opts.to)?;
        None
    } else {
        Some(resolve_source(&cfg, opts)?)
    };
    let signer = cfg.signer(opts.signing_key.as_deref(), reporter)?;
    let mut target = RepoConfig::new(&cfg.root, &opts.to);
    target.rotate_key = opts.rotate_key;
    let dist = paths.dist.clone();
    let rep = reporter.clone();
    let root = cfg.root.clone();
    let (g, source_text) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        match source {
            None => {
                let g = repo::rollback(&target, &signer, &rep)?;
                Ok((g, "rollback".to_string()))
            }
            Some(source) => {
                let publication = match source {
                    Source::Report(run) => {
                        let r = gate::passed_report(&dist, run.as_deref(), &signer, &rep)?;
                        rep.verbose(format!(
                            "promoting what smoke run {} passed",
                            r.report.run_id
                        ));
                        gate::from_report(&dist, &r)?
                    }
                    Source::Env(env) => {
                        // The source stays locked from reading it until the target switched:
                        // a rollback of the source in between must not be promoted past.
                        // Locks are taken in promotion order (source, then target).
                        let src = RepoConfig::new(&root, &env);
                        let layout = repo::store::Layout::new(&src.root, &src.env);
                        let lock = match layout.env_dir.exists() {
                            true => Some(repo::store::RepoLock::acquire(&layout, &rep)?),
                            false => None, // from_env says it holds nothing
                        };
                        let p = gate::from_env(&dist, &src, &signer, &rep)?;
                        let text = p.source.clone();
                        let g = repo::publish_full(&target, &signer, &p, &rep)?;
                        drop(lock);
                        return Ok((g, text));
                    }
                };
                let text = publication.source.clone();
                let g = repo::publish_full(&target, &signer, &publication, &rep)?;
                Ok((g, text))
            }
        }
    })
    .await
    .context("the promotion stopped unexpectedly")??;
    let promote_seconds = start.elapsed().as_secs_f64();

    let mut pushed = Vec::new();
    let push_start = Instant::now();
    if let Some(reg) = &registry {
        let images_dir = repo::images::images_dir(&cfg.root.join(&opts.to));
        // A rollback re-pushes what is current again (the tags exist; this re-checks them).
        for img in &g.images {
            let repo_name = format!("{}/{}", opts.to, img.name);
            let p = reg
                .push(&images_dir, &repo_name, img)
                .await
                .with_context(|| {
                    format!(
                        "`{}` now holds {} but pushing it to `{}` failed; run the same `builder \
                     promote` again to retry the push",
                        opts.to,
                        img.ref_name(),
                        reg.host()
                    )
                })?;
            reporter.status("Pushed", format!("{} {}", p.reference, p.digest));
            pushed.push(p);
        }
    }
    let push_seconds = if registry.is_some() {
        push_start.elapsed().as_secs_f64()
    } else {
        0.0
    };
    Ok(PromoteResult {
        env: opts.to.clone(),
        source: source_text,
        generation: g.number,
        unchanged: g.unchanged,
        packages: g
            .packages
            .iter()
            .map(|p| PromotedPackage {
                name: p.name.clone(),
                version: p.version.clone(),
                arch: p.arch.clone(),
                sha256: p.sha256,
                run: p.run.clone(),
            })
            .collect(),
        images: g.images.clone(),
        pushed,
        promote_seconds,
        push_seconds,
    })
}
