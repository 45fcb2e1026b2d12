//! Recipes: TOML files in `recipes/`, parsed with spans and validated like a compiler: every
//! problem in every recipe is reported with file:line:column and a fix, not only the first.
//! `raw` holds the serde model; `validate` turns it into the `model` types the rest of
//! builder uses. Positions, the collector, did-you-mean and rendering are [`crate::diag`]'s.
//! `recipes/stack.toml` (the smoke deployment) is not a service recipe.

pub(crate) mod debian;
pub(crate) mod limits;
pub(crate) mod model;
pub(crate) mod owners;
mod raw;
mod validate;
mod validate_control;
mod validate_paths;
mod validate_scripts;
mod validate_tables;
pub(crate) mod vars;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;

pub use model::*;

use crate::diag::{self, Diagnostic, Diagnostics};
use crate::project::Paths;

/// The dpkg substvar a relation list may hold for the library dependencies builder computes
/// from the packaged ELF files (see `crate::package::shlibs`). Not a `${NAME}` variable of
/// [`vars`]: it is expanded at package time, and only in `depends` and `pre-depends`.
pub const SHLIBS_DEPENDS: &str = "${shlibs:Depends}";

/// File names in the recipes directory that are not service recipes.
pub const RESERVED: &[&str] = &["stack.toml"];

/// Reads and validates one recipe file.
pub fn load_file(file: &Path, project: &Path) -> Result<Recipe, Diagnostics> {
    let text = diag::read_text(file, "recipe")?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let vars = vars::Vars::new(project);
    load_file_with(file, project, &builder_images(dir), &vars, text)
}

fn load_file_with(
    file: &Path,
    project: &Path,
    builders: &BTreeMap<String, String>,
    vars: &vars::Vars,
    text: String,
) -> Result<Recipe, Diagnostics> {
    let raw: raw::RawRecipe = diag::parse_toml(file, &text)?;
    let canonical = project
        .canonicalize()
        .unwrap_or_else(|_| project.to_path_buf());
    let mut ctx = validate::Ctx {
        out: diag::Collector::new(file, &text),
        project,
        canonical,
        builders,
        build_outputs: None,
        vars,
    };
    let recipe = validate::recipe(&mut ctx, raw);
    match recipe {
        Some(r) if ctx.diags.is_empty() => Ok(r),
        _ => Err(ctx.out.into_diagnostics()),
    }
}

/// The builder images by role: each `[build] builder` named by a recipe in `recipes_dir`,
/// mapped to the first recipe file (name) that uses it. Unreadable or broken recipes are
/// skipped (validation reports them). Such an image holds a toolchain and a shell, so it is
/// never an image's runtime base.
pub fn builder_images(recipes_dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for file in recipe_files(recipes_dir).unwrap_or_default() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(value) = text.parse::<toml::Table>() else {
            continue;
        };
        let builder = value
            .get("build")
            .and_then(|b| b.get("builder"))
            .and_then(|b| b.as_str());
        if let Some(b) = builder {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.entry(b.to_string()).or_insert(name);
        }
    }
    out
}

/// The names of `<project>/base-images/*.toml`, in directory order, without reading them
/// (recipe validation must not fail on a broken base definition; `base` commands report it).
pub(crate) fn base_image_names(project: &Path) -> Vec<String> {
    std::fs::read_dir(project.join("base-images"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".toml")
                .map(str::to_string)
        })
        .collect()
}

/// The error for an image made on builder image `base` (used by `[image] base` validation
/// and `package --rebase --base`): images must stay minimal.
/// `builders` is [`builder_images`]; returns (message, help) or `None` when `base` is no
/// builder image.
pub fn builder_base_problem(
    base: &str,
    builders: &BTreeMap<String, String>,
    project: &Path,
) -> Option<(String, String)> {
    let recipe_file = builders.get(base)?;
    let mut runtime: Vec<String> = base_image_names(project)
        .into_iter()
        .filter(|n| n != base && !builders.contains_key(n))
        .collect();
    runtime.sort();
    let suggest = if runtime.is_empty() {
        "add a runtime base definition in base-images/ (e.g. kind = \"static\")".to_string()
    } else {
        format!(
            "use a runtime base such as {}",
            runtime
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Some((
        format!(
            "`{base}` is a builder image (the [build] builder of `{recipe_file}`): images must \
             not contain build tools (compiler, shell, package manager)"
        ),
        suggest,
    ))
}

/// The recipe files in a directory, sorted, without reserved names.
pub fn recipe_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        crate::error::usage(format!(
            "could not read the recipes directory `{}`: {e}; run builder from the project root or pass --project/--recipes",
            dir.display()
        ))
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("could not list `{}`", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".toml") && !RESERVED.contains(&name.as_str()) && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Loads the given recipe files (all of them are checked; every problem is reported) and
/// refuses two recipes for the same package.
pub fn load_files(files: &[PathBuf], project: &Path) -> Result<Vec<Recipe>, Diagnostics> {
    let mut all = Diagnostics::default();
    let mut recipes = Vec::new();
    let mut builders: HashMap<PathBuf, BTreeMap<String, String>> = HashMap::new();
    // One git lookup for all the recipes.
    let vars = vars::Vars::new(project);
    for f in files {
        let dir = f.parent().unwrap_or(Path::new(".")).to_path_buf();
        let builders = builders
            .entry(dir.clone())
            .or_insert_with(|| builder_images(&dir));
        let loaded = match diag::read_text(f, "recipe") {
            Ok(text) => load_file_with(f, project, builders, &vars, text),
            Err(d) => Err(d),
        };
        match loaded {
            Ok(r) => recipes.push(r),
            Err(d) => all.extend(d),
        }
    }
    let mut names: HashMap<&str, &Path> = HashMap::new();
    for r in &recipes {
        if let Some(first) = names.insert(&r.package.name, &r.file) {
            all.push(
                Diagnostic::in_file(
                    &r.file,
                    format!(
                        "package `{}` is also defined in `{}`",
                        r.package.name,
                        first.display()
                    ),
                )
                .help("each package name may have one recipe: rename one of them"),
            );
        }
    }
    all.into_result().map(|()| recipes)
}

/// Loads every recipe of the project. Errors are [`Diagnostics`] (exit code 2).
pub fn load_project(paths: &Paths) -> anyhow::Result<Vec<Recipe>> {
    let files = recipe_files(&paths.recipes)?;
    if files.is_empty() {
        return Err(crate::error::usage(format!(
            "no recipes in `{}`: add a <name>.toml there (see README's recipe reference)",
            paths.recipes.display()
        )));
    }
    Ok(load_files(&files, &paths.project)?)
}

/// Picks recipes by package name; no names means all. Unknown names are a usage error that
/// lists the known ones.
pub fn select<'a>(recipes: &'a [Recipe], names: &[String]) -> anyhow::Result<Vec<&'a Recipe>> {
    if names.is_empty() {
        return Ok(recipes.iter().collect());
    }
    let mut out = Vec::new();
    for n in names {
        match recipes.iter().find(|r| &r.package.name == n) {
            Some(r) => out.push(r),
            None => {
                let known: Vec<&str> = recipes.iter().map(|r| r.package.name.as_str()).collect();
                let hint = diag::did_you_mean(n, &known)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(crate::error::usage(format!(
                    "no recipe for package `{n}`{hint}; known: {}",
                    known.join(", ")
                )));
            }
        }
    }
    Ok(out)
}
