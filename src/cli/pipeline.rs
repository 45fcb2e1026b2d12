//! `builder pipeline` (a developer's terminal, progress bars) and `builder ci` (the CI
//! artifact stage: plain timestamped output, documented exit codes): validate → build →
//! package → smoke → promote, arguments → [`crate::pipeline`].

use std::path::PathBuf;

use clap::Args;

use super::Paths;
use crate::pipeline::{self, PipelineOptions};
use crate::report::Reporter;

#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Rebuild even when the build cache hits
    #[arg(long)]
    pub no_cache: bool,

    /// Environment to promote into after the smoke gate passes [default: the first of
    /// promote.toml's `environments`, `dev` without one]
    #[arg(long, value_name = "ENV")]
    pub promote_to: Option<String>,

    /// Stop after the smoke gate: promote nothing
    #[arg(long)]
    pub no_promote: bool,

    /// Signing key for the repositories [default: promote.toml, BUILDER_SIGNING_KEY(_FILE),
    /// or a key generated once under ~/.config/builder]
    #[arg(long, value_name = "PATH")]
    pub signing_key: Option<PathBuf>,

    /// Smoke stack and load settings
    #[command(flatten)]
    pub smoke: super::smoke::StackArgs,
}

pub(super) async fn run(
    args: PipelineArgs,
    paths: &Paths,
    reporter: &Reporter,
) -> anyhow::Result<u8> {
    let opts = PipelineOptions {
        no_cache: args.no_cache,
        promote: !args.no_promote,
        promote_to: args.promote_to,
        signing_key: args.signing_key,
        smoke: args.smoke.options()?,
    };
    let cancel = crate::docker::cancel_on_signals();
    let (summary, result) = pipeline::run(paths, &opts, reporter, cancel).await;
    if reporter.is_json() {
        reporter.json(&summary)?;
    } else {
        for s in &summary.stages {
            reporter.output(format!(
                "{:<9} {:<8} {:>7.1}s  {}",
                s.stage, s.status, s.seconds, s.detail
            ));
        }
        reporter.output(format!(
            "artifacts, SHA256SUMS, manifest.json, pipeline.json and junit.xml are in {}",
            paths.dist.display()
        ));
    }
    result.map(|()| crate::error::EXIT_OK)
}
