//! `builder base list|build|rm`: the base images of `base-images/` (see `crate::base`).

use clap::{Args, Subcommand};

use super::Paths;
use crate::base::BaseImages;
use crate::report::Reporter;

#[derive(Debug, Args)]
pub struct BaseArgs {
    #[command(subcommand)]
    pub command: BaseCommand,
}

#[derive(Debug, Subcommand)]
pub enum BaseCommand {
    /// Show each base: kind, tag, whether the image and the rootfs tar exist, sizes
    List,
    /// Make base images (rootfs tar + image) that are not made yet [default: all]
    Build {
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
    /// Remove the images and cached rootfs tars of bases (current version; --all-versions for every one)
    Rm {
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
        /// Also every older `builder/<name>:*` tag and cached tar
        #[arg(long)]
        all_versions: bool,
    },
}

fn selected(bases: &BaseImages, names: &[String]) -> anyhow::Result<Vec<String>> {
    if names.is_empty() {
        return Ok(bases.names());
    }
    for n in names {
        bases.tag(n)?; // unknown names: a usage error listing the known ones
    }
    Ok(names.to_vec())
}

fn mb(n: Option<u64>) -> String {
    n.map(|n| format!("{:.1} MB", n as f64 / 1e6))
        .unwrap_or_else(|| "-".into())
}

pub(super) async fn run(args: BaseArgs, paths: &Paths, reporter: &Reporter) -> anyhow::Result<u8> {
    let bases = BaseImages::load(&paths.project)?;
    match args.command {
        BaseCommand::List => {
            let engine = match crate::docker::connect().await {
                Ok(d) => Some(d),
                Err(e) => {
                    reporter.warn(format!("{e:#}; image status unknown"));
                    None
                }
            };
            let mut rows = Vec::new();
            for n in bases.names() {
                rows.push(bases.status(engine.as_ref(), &n).await?);
            }
            if reporter.is_json() {
                reporter.json(&rows)?;
            } else {
                reporter.output(format!(
                    "{:<12} {:<12} {:<36} {:<6} {:>10} {:<7} {:>10}",
                    "NAME", "KIND", "TAG", "IMAGE", "IMAGE SIZE", "ROOTFS", "TAR SIZE"
                ));
                for r in rows {
                    let image = match r.image {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "?",
                    };
                    reporter.output(format!(
                        "{:<12} {:<12} {:<36} {:<6} {:>10} {:<7} {:>10}",
                        r.name,
                        r.kind,
                        r.tag,
                        image,
                        mb(r.image_size),
                        if r.rootfs_cached { "cached" } else { "-" },
                        mb(r.rootfs_size)
                    ));
                }
            }
            Ok(0)
        }
        BaseCommand::Build { names } => {
            let names = selected(&bases, &names)?;
            let engine = crate::docker::connect().await?;
            let cancel = crate::docker::cancel_on_signals();
            let mut all_made = Vec::new();
            for n in names {
                // The rootfs tar too (what images use as their base layer), even when the
                // engine already has the image: `base build` leaves the base fully made.
                let has_rootfs = !matches!(
                    bases.get(&n).map(|d| &d.kind),
                    Some(crate::base::BaseKind::Registry { .. })
                );
                if has_rootfs {
                    let (b, name, rep) = (bases.clone(), n.clone(), reporter.clone());
                    let rootfs = tokio::task::spawn_blocking(move || b.rootfs(&name, &rep));
                    tokio::select! {
                        r = rootfs => { r.map_err(|e| anyhow::anyhow!("the rootfs task failed: {e}"))??; }
                        _ = cancel.cancelled() => return Err(crate::docker::interrupted()),
                    }
                }
                let made = tokio::select! {
                    r = bases.ensure_image(&engine, &n, reporter) => r?,
                    _ = cancel.cancelled() => return Err(crate::docker::interrupted()),
                };
                if !reporter.is_json() {
                    reporter.output(format!("{:<12} {} {}", n, made.tag, made.id));
                }
                all_made.push(made);
            }
            // One JSON document for the whole command, whatever the number of bases.
            if reporter.is_json() {
                reporter.json(&all_made)?;
            }
            Ok(0)
        }
        BaseCommand::Rm {
            names,
            all_versions,
        } => {
            let names = selected(&bases, &names)?;
            let engine = crate::docker::connect().await?;
            let mut rows = Vec::new();
            for n in names {
                let removed = bases.remove(&engine, &n, all_versions).await?;
                if removed.is_empty() {
                    reporter.status("Nothing", format!("to remove for base `{n}`"));
                }
                for r in &removed {
                    reporter.status("Removed", r);
                }
                rows.push(serde_json::json!({ "base": n, "removed": removed }));
            }
            if reporter.is_json() {
                reporter.json(&rows)?;
            }
            Ok(0)
        }
    }
}
