//! `builder package [NAME...]`: write .deb packages into dist/debs and images into
//! dist/images (loaded into Docker); `--rebase NAME --base OTHER` remakes one image on
//! another base from the .deb already there.

use clap::Args;

use super::Paths;
use crate::package::{self, PackageOptions};
use crate::plan::PlanOptions;
use crate::recipe::{self, Compression};
use crate::report::Reporter;

#[derive(Debug, Args)]
pub struct PackageArgs {
    /// Packages to make [default: all recipes]
    pub names: Vec<String>,

    /// Compression of control.tar and data.tar, overriding the recipes: xz, zstd, gzip, none
    #[arg(long, value_parser = parse_compression)]
    pub compression: Option<Compression>,

    /// Only .deb packages, no images
    #[arg(long)]
    pub no_image: bool,

    /// Write image tars but do not load them into Docker
    #[arg(long, conflicts_with = "no_image")]
    pub no_load: bool,

    /// Remake the image of this package on `--base` from its existing .deb (no build)
    #[arg(long, value_name = "NAME", requires = "base", conflicts_with_all = ["names", "no_image"])]
    pub rebase: Option<String>,

    /// Runtime base for --rebase (base-images/<BASE>.toml)
    #[arg(long, value_name = "BASE", requires = "rebase")]
    pub base: Option<String>,
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    Compression::parse(s)
        .ok_or_else(|| format!("unknown compression `{s}`: use xz, zstd, gzip or none"))
}

pub(super) async fn run(
    args: PackageArgs,
    paths: &Paths,
    reporter: &Reporter,
) -> anyhow::Result<u8> {
    // Ctrl-C or SIGTERM stops the writers at their next block and removes their temp files.
    let cancel = crate::docker::cancel_on_signals();
    let _stop_watching = cancel.clone().drop_guard();
    let recipes = recipe::load_project(paths)?;
    if let (Some(name), Some(base)) = (&args.rebase, &args.base) {
        let selected = recipe::select(&recipes, std::slice::from_ref(name))?;
        let image = package::rebase(paths, selected[0], base, !args.no_load, reporter).await?;
        if reporter.is_json() {
            reporter.json(&image)?;
        } else {
            reporter.output(format!(
                "{}  {}  {}",
                image.image_id,
                image.tag,
                image.path.display()
            ));
        }
        return Ok(crate::error::EXIT_OK);
    }
    let selected = recipe::select(&recipes, &args.names)?;
    let plan = crate::plan::plan(
        paths,
        &selected,
        &PlanOptions {
            compression: args.compression,
            images: !args.no_image,
        },
    );
    let opts = PackageOptions {
        load: !args.no_load,
    };
    let results = package::package(paths, &plan, &opts, reporter).await?;
    if args.names.is_empty() {
        for a in package::forget_removed(paths, &selected)? {
            reporter.status(
                "Forgot",
                format!(
                    "{} {} {}: no recipe makes it any more",
                    a.kind, a.name, a.path
                ),
            );
        }
    }
    if reporter.is_json() {
        reporter.json(&results)?;
    } else {
        for r in &results {
            reporter.output(format!("{}  {}", r.deb.sha256.hex(), r.deb.path.display()));
            if let Some(i) = &r.image {
                reporter.output(format!("{}  {}  {}", i.image_id, i.tag, i.path.display()));
            }
        }
    }
    Ok(crate::error::EXIT_OK)
}
