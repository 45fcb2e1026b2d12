//! `builder lock [--update [PKG...]] [--check]`: builder.lock, the exact Debian packages of
//! every package-set base and image dependency layer (see `crate::debian::project`).

use clap::Args;

use super::Paths;
use crate::base::BaseImages;
use crate::debian::project::{self, LockOptions, SetState};
use crate::recipe;
use crate::report::Reporter;

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Re-resolve against today's archive: every package, or only the ones named
    #[arg(long, value_name = "PKG", num_args = 0.., conflicts_with = "check")]
    pub update: Option<Vec<String>>,

    /// Only compare builder.lock with the recipes and bases (no network); exit 1 when it
    /// is out of date
    #[arg(long)]
    pub check: bool,
}

pub(super) async fn run(args: LockArgs, paths: &Paths, reporter: &Reporter) -> anyhow::Result<u8> {
    // A project of bases only (no recipe yet) still has package sets to lock.
    let has_recipes = std::fs::read_dir(&paths.recipes).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "toml"))
    });
    let recipes = if has_recipes {
        recipe::load_project(paths)?
    } else {
        Vec::new()
    };
    let bases = BaseImages::load(&paths.project)?;
    if args.check {
        let report = project::check(&recipes, &bases)?;
        if reporter.is_json() {
            reporter.json(&report)?;
        }
        if report.up_to_date {
            if !reporter.is_json() {
                reporter.output(format!(
                    "{} is up to date ({} sets, {} packages)",
                    report.file,
                    report.sets.len(),
                    report.packages
                ));
            }
            return Ok(crate::error::EXIT_OK);
        }
        let lines: Vec<String> = report
            .sets
            .iter()
            .filter(|s| s.state != SetState::Current)
            .map(|s| {
                let why = match s.state {
                    SetState::Missing => "not locked",
                    SetState::Stale => "changed since it was locked",
                    SetState::Unused => "locked but no longer used",
                    SetState::Edited => {
                        "lacks a package its definition names: builder.lock was edited"
                    }
                    SetState::Incomplete => {
                        "lacks a library `${shlibs:Depends}` finds in the built files"
                    }
                    _ => "",
                };
                format!("  {} `{}`: {why}", s.kind, s.name)
            })
            .collect();
        return Err(crate::error::failed(format!(
            "{} is out of date:\n{}\nrun `builder lock` and commit {}",
            report.file,
            lines.join("\n"),
            report.file
        )));
    }
    let opts = LockOptions {
        update: args.update.map(|v| v.into_iter().collect()),
    };
    let report = project::lock(&recipes, &bases, &opts, reporter).await?;
    if reporter.is_json() {
        reporter.json(&report)?;
        return Ok(crate::error::EXIT_OK);
    }
    for s in &report.sets {
        let what = match s.state {
            SetState::Resolved if s.added.is_empty() && s.removed.is_empty() => {
                format!("{} packages, unchanged", s.packages)
            }
            SetState::Resolved => {
                // A first lock adds a hundred packages: name a few, count the rest.
                let list = |v: &[String]| {
                    if v.len() <= 8 {
                        v.join(", ")
                    } else {
                        format!("{} and {} more", v[..6].join(", "), v.len() - 6)
                    }
                };
                let mut parts = Vec::new();
                if !s.added.is_empty() {
                    parts.push(format!("+ {}", list(&s.added)));
                }
                if !s.removed.is_empty() {
                    parts.push(format!("- {}", list(&s.removed)));
                }
                format!("{} packages ({})", s.packages, parts.join("; "))
            }
            _ => format!("{} packages, up to date", s.packages),
        };
        reporter.output(format!("{:<5} {:<20} {what}", s.kind.to_string(), s.name));
    }
    reporter.output(format!(
        "{}: {} packages in {} sets",
        report.file,
        report.packages,
        report.sets.len()
    ));
    Ok(crate::error::EXIT_OK)
}
