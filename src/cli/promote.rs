//! `builder promote --to ENV [--from ENV] [--rollback]`: promote exactly what passed the
//! smoke test into an environment repository (and registry).

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::Paths;
use crate::promote::{self, PromoteOptions};
use crate::report::Reporter;

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Environment to promote into (e.g. dev, staging, prod)
    #[arg(long, value_name = "ENV")]
    pub to: String,
    /// Environment to take the artifacts from [default: the latest passed smoke report for
    /// the first environment, else the environment before --to]
    #[arg(long, value_name = "ENV", conflicts_with = "rollback")]
    pub from: Option<String>,
    /// Promote what this smoke run passed (its run id) instead of the latest passed report
    #[arg(long, value_name = "RUN", conflicts_with_all = ["rollback", "from"])]
    pub run: Option<String>,
    /// Make the previous generation of --to current again (packages and images)
    #[arg(long)]
    pub rollback: bool,
    /// Push images to this registry as <registry>/<env>/<name>:<version>: https://host[:port],
    /// http://host:port, or host:port (TLS unless loopback). Login from
    /// BUILDER_REGISTRY_USERNAME/BUILDER_REGISTRY_PASSWORD, extra CA from BUILDER_REGISTRY_CA
    #[arg(long, value_name = "REGISTRY", env = "BUILDER_REGISTRY")]
    pub registry: Option<String>,
    /// Directory holding the environment repositories [default: <dist>/repos]
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Armored secret key [default: $BUILDER_SIGNING_KEY, $BUILDER_SIGNING_KEY_FILE,
    /// `signing_key` in promote.toml, then the key pipeline/ci generated]
    #[arg(long, value_name = "PATH")]
    pub signing_key: Option<PathBuf>,
    /// Sign with a key other than the one the repository publishes, replacing its
    /// signing-key.gpg (clients pinned to the old key must install the new one)
    #[arg(long)]
    pub rotate_key: bool,
    /// Promotion config [default: <project>/promote.toml when it exists]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

pub(super) async fn run(
    args: PromoteArgs,
    paths: &Paths,
    reporter: &Reporter,
) -> anyhow::Result<u8> {
    let opts = PromoteOptions {
        to: args.to,
        from: args.from,
        run: args.run,
        rollback: args.rollback,
        config: args.config,
        registry: args.registry,
        root: args.root,
        signing_key: args.signing_key,
        rotate_key: args.rotate_key,
    };
    let result = promote::promote(paths, &opts, reporter).await?;
    if reporter.is_json() {
        reporter.json(&result)?;
    } else {
        let mut out = String::new();
        let unchanged = if result.unchanged { " (unchanged)" } else { "" };
        let _ = writeln!(
            out,
            "{}: generation {}{unchanged} from {} ({:.2}s)",
            result.env, result.generation, result.source, result.promote_seconds
        );
        for p in &result.packages {
            let _ = writeln!(
                out,
                "deb\t{}\t{}\t{}\t{}",
                p.name,
                p.version,
                p.arch,
                p.sha256.hex()
            );
        }
        for i in &result.images {
            let _ = writeln!(out, "image\t{}\t{}", i.ref_name(), i.digest);
        }
        for p in &result.pushed {
            let _ = writeln!(out, "pushed\t{}\t{}", p.reference, p.digest);
        }
        reporter.output(out.trim_end());
    }
    Ok(crate::error::EXIT_OK)
}
