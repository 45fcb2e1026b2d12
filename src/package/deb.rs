//! Recipe + build outputs → [`DebSpec`]: expands `[[files]]` (files, trees, globs, build
//! outputs, symlinks) into a data tree, adds systemd units, the copyright file and the
//! changelog, decides the conffiles, merges maintainer scripts with systemd snippets and
//! orders the control fields.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};

use super::systemd;
use crate::archive::{FileSource, NodeKind, Tree};
use crate::deb::{DebSpec, Script};
use crate::recipe::{debian, Compression, FileSpec, Recipe, Source};

/// Where a recipe's build outputs are: `dist/build/<name>/`.
pub fn build_dir(dist: &Path, recipe: &Recipe) -> PathBuf {
    dist.join("build").join(&recipe.package.name)
}

fn default_mode(meta: &std::fs::Metadata) -> u32 {
    if meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

fn entry_error(recipe: &Recipe, spec: &FileSpec, msg: impl std::fmt::Display) -> anyhow::Error {
    crate::error::usage(format!("{}:{}: {msg}", recipe.file.display(), spec.line))
}

/// Adds a file or a directory tree from disk at `dest` (a tree path without leading `/`).
fn add_path(tree: &mut Tree, src: &Path, dest: &str, mode: Option<u32>) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(src).with_context(|| format!("could not read `{}`", src.display()))?;
    if meta.is_file() {
        tree.add_file(
            dest,
            mode.unwrap_or_else(|| default_mode(&meta)),
            FileSource::Path(src.to_path_buf()),
        )?;
        return Ok(());
    }
    if !dest.is_empty() {
        tree.add_dir(dest, 0o755)?;
    }
    for entry in walkdir::WalkDir::new(src).min_depth(1).sort_by_file_name() {
        let entry = entry.with_context(|| format!("could not walk `{}`", src.display()))?;
        let rel = entry
            .path()
            .strip_prefix(src)
            .context("walkdir left its root")?;
        let rel = rel.to_str().with_context(|| {
            format!("`{}` is not valid UTF-8: rename it", entry.path().display())
        })?;
        let d = if dest.is_empty() {
            rel.to_string()
        } else {
            format!("{dest}/{rel}")
        };
        let ft = entry.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(entry.path())
                .with_context(|| format!("could not read link `{}`", entry.path().display()))?;
            tree.add_symlink(&d, &target.to_string_lossy())?;
        } else if ft.is_dir() {
            tree.add_dir(&d, 0o755)?;
        } else if ft.is_file() {
            let m = entry
                .metadata()
                .with_context(|| format!("could not read `{}`", entry.path().display()))?;
            tree.add_file(
                &d,
                mode.unwrap_or_else(|| default_mode(&m)),
                FileSource::Path(entry.path().to_path_buf()),
            )?;
        } else {
            bail!(
                "`{}` is not a regular file, directory or symlink: remove it from the package",
                entry.path().display()
            );
        }
    }
    Ok(())
}

fn file_name(p: &Path) -> anyhow::Result<&str> {
    p.file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("`{}` has no UTF-8 file name", p.display()))
}

/// Expands the `[[files]]` entries into `tree`; returns the flagged conffiles.
/// Refuses a source that resolves (through symlinks) outside `root`: a recipe may only
/// package files of the project, and build outputs only from the build directory.
fn ensure_within(path: &Path, root: &Path, what: &str) -> anyhow::Result<()> {
    let canonical = path
        .canonicalize()
        .with_context(|| format!("could not resolve `{}`", path.display()))?;
    let root = root
        .canonicalize()
        .with_context(|| format!("could not resolve `{}`", root.display()))?;
    if canonical.starts_with(&root) {
        Ok(())
    } else {
        Err(crate::error::usage(format!(
            "{what} `{}` resolves to `{}`, outside `{}`: symlinks may not point out",
            path.display(),
            canonical.display(),
            root.display()
        )))
    }
}

/// Where a file source lands: inside `to` when it names a directory (trailing `/`).
fn destination(to: &str, into_dir: bool, src: &Path) -> anyhow::Result<String> {
    Ok(if into_dir && src.is_file() {
        format!("{}{}", to, file_name(src)?)
    } else {
        to.trim_end_matches('/').to_string()
    })
}

/// Expands the `[[files]]` entries into `tree`; returns the flagged conffiles.
fn add_files(recipe: &Recipe, dist: &Path, tree: &mut Tree) -> anyhow::Result<Vec<String>> {
    let mut conffiles = Vec::new();
    for spec in &recipe.files {
        let to = spec.to.trim_start_matches('/');
        let into_dir = spec.to.ends_with('/');
        // The single path this entry installs (None for globs), for the conffile check.
        let result: anyhow::Result<Option<String>> = (|| {
            Ok(match &spec.source {
                Source::Symlink { target } => {
                    tree.add_symlink(to, target)?;
                    None
                }
                Source::Path { path } => {
                    let src = recipe.project.join(path);
                    ensure_within(&src, &recipe.project, "the file")?;
                    let dest = destination(to, into_dir, &src)?;
                    add_path(tree, &src, &dest, spec.mode)?;
                    Some(dest)
                }
                Source::Build { path } => {
                    let out = build_dir(dist, recipe);
                    let src = out.join(path);
                    if !src.exists() {
                        return Err(crate::error::usage(format!(
                            "build output `{}` is missing (`{}`): run `builder build {}` first",
                            path.display(),
                            src.display(),
                            recipe.package.name
                        )));
                    }
                    ensure_within(&src, &out, "the build output")?;
                    let dest = destination(to, into_dir, &src)?;
                    add_path(tree, &src, &dest, spec.mode)?;
                    if src.is_dir() {
                        // The build cache's stamp is not an output.
                        let stamp = format!("{dest}/{}", crate::build::cache::STAMP);
                        tree.remove_prefix(stamp.trim_start_matches('/'));
                    }
                    Some(dest)
                }
                Source::Glob { pattern } => {
                    let root = glob::Pattern::escape(&recipe.project.to_string_lossy());
                    let full = format!("{root}/{pattern}");
                    let mut matches: Vec<PathBuf> = glob::glob(&full)
                        .with_context(|| format!("bad glob `{pattern}`"))?
                        .filter_map(Result::ok)
                        .collect();
                    matches.sort();
                    if matches.is_empty() {
                        bail!("the glob `{pattern}` matches no file");
                    }
                    let dir = to.trim_end_matches('/');
                    for m in matches {
                        ensure_within(&m, &recipe.project, "the glob match")?;
                        let name = file_name(&m)?;
                        let dest = if dir.is_empty() {
                            name.to_string()
                        } else {
                            format!("{dir}/{name}")
                        };
                        add_path(tree, &m, &dest, spec.mode)?;
                    }
                    None
                }
            })
        })();
        let dest = result.map_err(|e| entry_error(recipe, spec, format!("{e:#}")))?;
        if spec.conffile {
            match dest.as_deref().and_then(|d| tree.get(d)) {
                Some(node) if matches!(node.kind, NodeKind::File(_)) => {
                    conffiles.push(format!("/{}", dest.unwrap_or_default()))
                }
                _ => {
                    return Err(entry_error(
                        recipe,
                        spec,
                        format!("`conffile = true` needs the entry to install a single regular file, but `{}` is not one", spec.to),
                    ))
                }
            }
        }
    }
    Ok(conffiles)
}

fn gzip_n(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    // Like `gzip -9n`: no name, no timestamp, so the bytes depend only on the content.
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

/// `/usr/share/doc/<name>/copyright` (machine-readable format) and the changelog, which
/// Debian policy requires and lintian checks; skipped where the recipe ships its own.
fn add_docs(recipe: &Recipe, tree: &mut Tree, mtime: u64) -> anyhow::Result<()> {
    let p = &recipe.package;
    let doc = format!("usr/share/doc/{}", p.name);
    if tree.get(&format!("{doc}/copyright")).is_none() {
        let mut text = format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: {}\n",
            p.name
        );
        if let Some(h) = &p.homepage {
            text.push_str(&format!("Source: {h}\n"));
        }
        let license = p.license.clone().unwrap_or_else(|| "other".to_string());
        let year = crate::timefmt::rfc3339_secs(mtime as i64)[..4].to_string();
        text.push_str(&format!(
            "\nFiles: *\nCopyright: {year} {}\nLicense: {license}\n",
            p.maintainer
        ));
        if p.license.is_none() {
            text.push_str(" No license was stated in the recipe; set `license` in [package].\n");
        }
        tree.add_file(
            &format!("{doc}/copyright"),
            0o644,
            FileSource::Bytes(Arc::from(text.into_bytes())),
        )?;
    }
    if !p.lintian_overrides.is_empty() {
        let path = format!("usr/share/lintian/overrides/{}", p.name);
        let text: String = p
            .lintian_overrides
            .iter()
            .map(|t| format!("{}: {t}\n", p.name))
            .collect();
        tree.add_file(
            &path,
            0o644,
            FileSource::Bytes(Arc::from(text.into_bytes())),
        )?;
    }
    // Policy 12.7: changelog.Debian.gz for non-native packages (with a revision), else changelog.gz.
    let name = if p.revision.is_some() {
        "changelog.Debian.gz"
    } else {
        "changelog.gz"
    };
    if tree.get(&format!("{doc}/{name}")).is_none() {
        let date = crate::timefmt::rfc2822_secs(mtime as i64).replace(" UTC", " +0000");
        let text = format!(
            "{} ({}) unstable; urgency=medium\n\n  * Packaged by builder from recipe {}.\n\n -- {}  {date}\n",
            p.name,
            p.version(),
            recipe.file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            p.maintainer
        );
        tree.add_file(
            &format!("{doc}/{name}"),
            0o644,
            FileSource::Bytes(Arc::from(gzip_n(text.as_bytes())?)),
        )?;
    }
    Ok(())
}

fn read_script(recipe: &Recipe, path: &Option<PathBuf>) -> anyhow::Result<Option<String>> {
    let Some(p) = path else { return Ok(None) };
    let full = recipe.project.join(p);
    let text = std::fs::read_to_string(&full)
        .with_context(|| format!("could not read maintainer script `{}`", full.display()))?;
    if !text.starts_with("#!") {
        return Err(crate::error::usage(format!(
            "maintainer script `{}` must start with a `#!` line, e.g. `#!/bin/sh`",
            p.display()
        )));
    }
    Ok(Some(text))
}

/// The control fields in the order dpkg-gencontrol writes them (Installed-Size is added by
/// the writer).
pub fn control_fields(recipe: &Recipe) -> Vec<(String, String)> {
    let p = &recipe.package;
    let mut c = vec![
        ("Package".to_string(), p.name.clone()),
        ("Version".to_string(), p.version()),
        ("Architecture".to_string(), p.architecture.clone()),
        ("Maintainer".to_string(), p.maintainer.clone()),
    ];
    c.extend(p.relations.iter().cloned());
    c.push(("Section".to_string(), p.section.clone()));
    c.push(("Priority".to_string(), p.priority.clone()));
    if let Some(h) = &p.homepage {
        c.push(("Homepage".to_string(), h.clone()));
    }
    c.push((
        "Description".to_string(),
        debian::format_description(&p.synopsis, &p.long_description),
    ));
    c
}

/// Everything needed to write the recipe's .deb.
pub fn spec(
    recipe: &Recipe,
    dist: &Path,
    compression: Option<Compression>,
    mtime: u64,
) -> anyhow::Result<DebSpec> {
    let mut tree = Tree::new();
    let mut conffiles = add_files(recipe, dist, &mut tree)?;
    for unit in &recipe.systemd {
        let src = recipe.project.join(&unit.path);
        let dest = format!("lib/systemd/system/{}", unit.name);
        tree.add_file(&dest, 0o644, FileSource::Path(src))
            .with_context(|| format!("{}: systemd unit `{}`", recipe.file.display(), unit.name))?;
    }
    add_docs(recipe, &mut tree, mtime)?;
    if recipe.package.etc_conffiles {
        for (path, node) in tree.iter() {
            if path.starts_with("etc/") && matches!(node.kind, NodeKind::File(_)) {
                conffiles.push(format!("/{path}"));
            }
        }
    }
    conffiles.sort();
    conffiles.dedup();

    let s = &recipe.scripts;
    let mut scripts = Vec::new();
    for (kind, user, generated) in [
        (
            Script::Preinst,
            read_script(recipe, &s.preinst)?,
            String::new(),
        ),
        (
            Script::Postinst,
            read_script(recipe, &s.postinst)?,
            systemd::postinst(&recipe.systemd),
        ),
        (
            Script::Prerm,
            read_script(recipe, &s.prerm)?,
            systemd::prerm(&recipe.systemd),
        ),
        (
            Script::Postrm,
            read_script(recipe, &s.postrm)?,
            systemd::postrm(&recipe.systemd),
        ),
    ] {
        if let Some(text) = systemd::merge(user.as_deref(), &generated) {
            scripts.push((kind, text.into_bytes()));
        }
    }

    Ok(DebSpec {
        control: control_fields(recipe),
        data: tree,
        conffiles,
        scripts,
        compression: compression.unwrap_or(recipe.package.compression),
        mtime,
    })
}

/// Every input file of a recipe (for the SOURCE_DATE_EPOCH fallback).
pub fn inputs(recipe: &Recipe) -> Vec<PathBuf> {
    let mut v = vec![recipe.file.clone()];
    for f in &recipe.files {
        if let Source::Path { path } = &f.source {
            v.push(recipe.project.join(path));
        }
    }
    v.extend(recipe.systemd.iter().map(|u| recipe.project.join(&u.path)));
    v
}
