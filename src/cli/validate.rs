//! `builder validate [RECIPE...]`: check recipes and report every problem.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::Paths;
use crate::diag::Diagnostics;
use crate::recipe;
use crate::report::Reporter;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Recipe files (or directories of them) to check [default: every recipe in the
    /// recipes directory]
    // Its own id: the global `--recipes DIR` shares the name `recipes`, and clap would put
    // that directory here as if it were a file to check.
    #[arg(id = "files", value_name = "RECIPE")]
    pub files: Vec<PathBuf>,
}

pub(super) fn run(args: ValidateArgs, paths: &Paths, reporter: &Reporter) -> anyhow::Result<u8> {
    let files = if args.files.is_empty() {
        let files = recipe::recipe_files(&paths.recipes)?;
        if files.is_empty() {
            return Err(crate::error::usage(format!(
                "no recipes in `{}`: add a <name>.toml there (see README's recipe reference)",
                paths.recipes.display()
            )));
        }
        files
    } else {
        let mut files = Vec::new();
        for f in args.files {
            if f.is_dir() {
                files.extend(recipe::recipe_files(&f)?);
            } else {
                files.push(f);
            }
        }
        files
    };
    match recipe::load_files(&files, &paths.project) {
        Ok(recipes) => {
            if reporter.is_json() {
                let list: Vec<_> = recipes
                    .iter()
                    .map(|r| json!({"file": r.file.to_string_lossy(), "package": r.package.name, "version": r.package.version()}))
                    .collect();
                reporter.json(&json!({"ok": true, "recipes": list, "errors": []}))?;
            } else {
                for r in &recipes {
                    reporter.output(format!(
                        "ok  {}  ({} {})",
                        r.file.display(),
                        r.package.name,
                        r.package.version()
                    ));
                }
            }
            Ok(crate::error::EXIT_OK)
        }
        Err(diags) if reporter.is_json() => {
            reporter.json(&json!({"ok": false, "errors": diagnostics_json(&diags)}))?;
            Ok(crate::error::EXIT_USAGE)
        }
        Err(diags) => Err(diags.into()),
    }
}

fn diagnostics_json(d: &Diagnostics) -> Vec<serde_json::Value> {
    d.items()
        .iter()
        .map(|d| {
            json!({
                "file": d.file.to_string_lossy(), "line": d.line, "column": d.col,
                "message": d.message, "label": d.label, "help": d.help,
            })
        })
        .collect()
}
