//! `builder repo list|prune|rollback|history|check <env>`: inspect and maintain environment
//! repositories under `--root` (default `<dist>/repos`).

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Paths;
use crate::promote::PromoteConfig;
use crate::repo::{self, RepoConfig};
use crate::report::Reporter;
use crate::sign::Signer;

#[derive(Debug, Args)]
pub struct RepoArgs {
    #[command(subcommand)]
    pub command: RepoCommand,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Environment name (e.g. dev, staging, prod)
    pub env: String,
    /// Directory holding the environment repositories [default: <dist>/repos]
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Armored secret key [default: $BUILDER_SIGNING_KEY, $BUILDER_SIGNING_KEY_FILE,
    /// `signing_key` in promote.toml, then the key pipeline/ci generated]
    #[arg(long, value_name = "PATH")]
    pub signing_key: Option<PathBuf>,
    /// Sign with a key other than the one the repository publishes, replacing its
    /// signing-key.gpg (clients pinned to the old key must install the new one)
    #[arg(long)]
    pub rotate_key: bool,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Show the packages and images the environment holds now
    List(EnvArgs),
    /// Keep the N newest versions of each package and image; delete pool files and image
    /// blobs no generation needs
    Prune {
        #[command(flatten)]
        env: EnvArgs,
        /// Versions to keep per package (name and architecture) and per image name
        #[arg(long, value_name = "N")]
        keep: usize,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Make the previous generation's contents current again
    Rollback {
        #[command(flatten)]
        env: EnvArgs,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Show who changed the environment, when, and with what
    History(EnvArgs),
    /// Find what an interrupted or damaged command left (half-written generations, an
    /// unfinished prune, missing links or history, damaged pool files and blobs); exit 1
    /// when the repository is not consistent
    Check {
        #[command(flatten)]
        env: EnvArgs,
        /// Fix what can be fixed without the artifacts' source: leftovers, unfinished
        /// steps, unreadable old generations, files no generation needs
        #[arg(long)]
        repair: bool,
    },
}

/// The repository `env` names: `--root`, else `root` from promote.toml, else
/// `<dist>/repos`, the same place `builder promote` writes to. `env` must be one of
/// promote.toml's environments (checked before anything is created).
fn config(env: &EnvArgs, paths: &Paths) -> anyhow::Result<(RepoConfig, PromoteConfig)> {
    let promote = PromoteConfig::load(paths, None)?;
    promote.position(&env.env)?;
    let root = env.root.clone().unwrap_or_else(|| promote.root.clone());
    Ok((RepoConfig::new(root, &env.env), promote))
}

/// The signing key as `builder promote` finds it (see [`PromoteConfig::signer`]).
fn signer(
    sign: &SignArgs,
    promote: &PromoteConfig,
    cfg: &mut RepoConfig,
    reporter: &Reporter,
) -> anyhow::Result<Signer> {
    cfg.rotate_key = sign.rotate_key;
    promote.signer(sign.signing_key.as_deref(), reporter)
}

pub(super) fn run(args: RepoArgs, paths: &Paths, reporter: &Reporter) -> anyhow::Result<u8> {
    match args.command {
        RepoCommand::List(env) => {
            let (cfg, _) = config(&env, paths)?;
            let (packages, images) = repo::contents(&cfg)?;
            if reporter.is_json() {
                let rows: Vec<_> = packages
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "kind": "deb", "name": p.name, "version": p.version, "arch": p.arch,
                            "filename": p.filename, "size": p.size, "sha256": p.sha256.hex(),
                            "run": p.run,
                        })
                    })
                    .chain(images.iter().map(|i| {
                        serde_json::json!({
                            "kind": "image", "name": i.name, "version": i.version,
                            "ref": i.ref_name(), "digest": i.digest, "image_id": i.image_id,
                            "run": i.run,
                        })
                    }))
                    .collect();
                reporter.json(&rows)?;
            } else if packages.is_empty() && images.is_empty() {
                reporter.info(format!("`{}` holds nothing", cfg.env_dir().display()));
            } else {
                let mut out = String::new();
                for p in &packages {
                    let _ = writeln!(
                        out,
                        "deb\t{}\t{}\t{}\t{}",
                        p.name, p.version, p.arch, p.sha256
                    );
                }
                for i in &images {
                    let _ = writeln!(out, "image\t{}\t{}\t-\t{}", i.name, i.version, i.digest);
                }
                reporter.output(out.trim_end());
            }
        }
        RepoCommand::Prune { env, keep, sign } => {
            let (mut cfg, promote) = config(&env, paths)?;
            let signer = signer(&sign, &promote, &mut cfg, reporter)?;
            let report = repo::prune(&cfg, &signer, keep, reporter)?;
            if reporter.is_json() {
                reporter.json(&report)?;
            }
        }
        RepoCommand::Rollback { env, sign } => {
            let (mut cfg, promote) = config(&env, paths)?;
            let signer = signer(&sign, &promote, &mut cfg, reporter)?;
            let g = repo::rollback(&cfg, &signer, reporter)?;
            if reporter.is_json() {
                reporter.json(&serde_json::json!({ "generation": g.number }))?;
            }
        }
        RepoCommand::Check { env, repair } => {
            let (cfg, _) = config(&env, paths)?;
            let report = repo::check::check(&cfg, repair, reporter)?;
            if reporter.is_json() {
                reporter.json(&report)?;
            } else {
                for f in &report.findings {
                    let state = match (f.repaired, f.repairable) {
                        (true, _) => "repaired",
                        (false, true) => "repairable (--repair)",
                        (false, false) => "needs you",
                    };
                    reporter.output(format!("{state}: {}", f.problem));
                }
            }
            let open = report.findings.iter().filter(|f| !f.repaired).count();
            let what = match report.current {
                Some(c) => format!("generation {c}, {} generation(s)", report.generations),
                None => "no generation".to_string(),
            };
            if open == 0 {
                let fixed = report.findings.len();
                reporter.status(
                    "Checked",
                    if fixed == 0 {
                        format!("`{}` is consistent ({what})", cfg.env)
                    } else {
                        format!(
                            "`{}` is consistent again: {fixed} problem(s) repaired ({what})",
                            cfg.env
                        )
                    },
                );
            } else {
                return Err(crate::error::failed(format!(
                    "`{}` is not consistent: {open} problem(s){}",
                    cfg.env,
                    if !repair && report.findings.iter().any(|f| f.repairable && !f.repaired) {
                        format!(
                            "; `builder repo check {} --repair` fixes the repairable ones",
                            cfg.env
                        )
                    } else {
                        String::new()
                    }
                )));
            }
        }
        RepoCommand::History(env) => {
            let (cfg, _) = config(&env, paths)?;
            let entries = repo::history(&cfg)?;
            if reporter.is_json() {
                reporter.json(&entries)?;
            } else if entries.is_empty() {
                reporter.info(format!(
                    "`{}` has no history yet: `builder promote` makes its first generation",
                    cfg.env_dir().display()
                ));
            } else {
                let mut out = String::new();
                for e in &entries {
                    let what: Vec<String> = e
                        .artifacts
                        .iter()
                        .map(|a| format!("{}={}", a.name, a.version))
                        .collect();
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        e.generation,
                        e.time,
                        e.action,
                        e.who,
                        e.source,
                        what.join(" ")
                    );
                }
                reporter.output(out.trim_end());
            }
        }
    }
    Ok(crate::error::EXIT_OK)
}
