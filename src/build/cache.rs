//! The build cache: `dist/build/<name>/` holds a recipe's outputs plus a stamp
//! (`.builder-build.json`) naming the cache key that produced them and each output's sha256.
//! A stamp whose key matches and whose outputs are intact is a hit. New outputs are prepared
//! beside the old directory and swapped in with renames, so a failed or interrupted build never
//! leaves a half-written `dist/build/<name>/`.

use crate::digest::sha256_file;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// File name of the stamp inside `dist/build/<name>/`.
pub(crate) const STAMP: &str = ".builder-build.json";

/// What `.builder-build.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stamp {
    pub key: String,
    pub recipe: String,
    pub builder_image: String,
    /// `(relative path, sha256 hex)` for every declared output, in declaration order.
    pub outputs: Vec<(String, String)>,
}

/// `dist/build/<name>/`.
pub(crate) fn out_dir(dist: &Path, name: &str) -> PathBuf {
    dist.join("build").join(name)
}

/// Reads the stamp and checks the key and every output's hash.
pub(crate) fn check(dir: &Path, key: &str) -> Option<Stamp> {
    let text = std::fs::read_to_string(dir.join(STAMP)).ok()?;
    let stamp: Stamp = serde_json::from_str(&text).ok()?;
    if stamp.key != key {
        return None;
    }
    for (rel, sha) in &stamp.outputs {
        match sha256_file(&dir.join(rel)) {
            Ok(actual) if &actual == sha => {}
            _ => return None,
        }
    }
    Some(stamp)
}

/// A fresh staging directory beside `out_dir` (`dist/build/<name>/`; same filesystem, so
/// renames are atomic).
pub(crate) fn staging_dir(out_dir: &Path) -> anyhow::Result<tempfile::TempDir> {
    let parent = out_dir.parent().unwrap_or(Path::new("."));
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::create_dir_all(parent)
        .with_context(|| format!("could not create `{}`", parent.display()))?;
    tempfile::Builder::new()
        .prefix(&format!(".{name}.new-"))
        .tempdir_in(parent)
        .with_context(|| {
            format!(
                "could not create a staging directory in `{}`",
                parent.display()
            )
        })
}

/// Checks that every declared output exists in `staged`, hashes them and writes the stamp.
pub(crate) fn seal(
    staged: &Path,
    outputs: &[String],
    key: &str,
    recipe: &str,
    builder_image: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut missing = Vec::new();
    let mut hashed = Vec::new();
    // What stays in dist/build/<name>/: the declared outputs (and what their links lead to).
    let mut keep = std::collections::BTreeSet::new();
    for rel in outputs {
        let path = match resolve_output(staged, rel) {
            Ok(Some(path)) => path,
            Ok(None) => {
                missing.push(rel.as_str());
                continue;
            }
            Err(problem) => {
                return Err(crate::error::failed(format!(
                    "build of `{recipe}` produced output `{rel}` but {problem}; outputs must be \
                     regular files, and a symlink among them must be relative and point inside \
                     /out (e.g. `ln -s backend /out/alias`): copy the file into /out instead"
                )))
            }
        };
        hashed.push((rel.clone(), sha256_file(&path)?));
        keep.insert(staged.join(rel));
        if let Ok(real) = path.canonicalize() {
            keep.insert(real);
        }
    }
    if !missing.is_empty() {
        let found = list_relative(staged);
        return Err(crate::error::failed(format!(
            "build of `{recipe}` finished but did not produce {} under /out (found: {}); \
             make the build command write them to /out or fix `outputs` in [build]",
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if found.is_empty() {
                "nothing".to_string()
            } else {
                found.join(", ")
            }
        )));
    }
    prune_undeclared(staged, &keep)?;
    let stamp = Stamp {
        key: key.to_string(),
        recipe: recipe.to_string(),
        builder_image: builder_image.to_string(),
        outputs: hashed.clone(),
    };
    let path = staged.join(STAMP);
    let text = serde_json::to_string_pretty(&stamp)?;
    std::fs::write(&path, text).with_context(|| format!("could not write `{}`", path.display()))?;
    Ok(hashed)
}

/// The real path of output `rel` in `staged`: `None` when it does not exist (or is not a
/// file), an error saying why when a symlink on the way leaves `staged` (the host's files
/// must never be hashed or installed as outputs) or the output is not a regular file.
fn resolve_output(staged: &Path, rel: &str) -> Result<Option<PathBuf>, String> {
    let root = staged
        .canonicalize()
        .map_err(|e| format!("the staging directory is unreadable ({e})"))?;
    let mut prefix = PathBuf::new();
    for part in Path::new(rel).components() {
        prefix.push(part);
        let path = staged.join(&prefix);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return Ok(None);
        };
        if !meta.file_type().is_symlink() {
            continue;
        }
        let target = std::fs::read_link(&path).unwrap_or_default();
        let what = if prefix.as_path() == Path::new(rel) {
            "it is a symlink".to_string()
        } else {
            format!("`{}` is a symlink", prefix.display())
        };
        if target.is_absolute() {
            return Err(format!(
                "{what} to the absolute path `{}`",
                target.display()
            ));
        }
        match path.canonicalize() {
            Ok(real) if real.starts_with(&root) => {}
            Ok(_) => return Err(format!("{what} to `{}`, outside /out", target.display())),
            Err(_) => {
                return Err(format!(
                    "{what} to `{}`, which does not exist",
                    target.display()
                ))
            }
        }
    }
    let real = staged
        .join(rel)
        .canonicalize()
        .map_err(|e| format!("it cannot be resolved ({e})"))?;
    if !real.starts_with(&root) {
        return Err("it resolves outside /out".to_string());
    }
    match std::fs::metadata(&real) {
        Ok(m) if m.is_file() => Ok(Some(real)),
        Ok(m) if m.is_dir() => Ok(None),
        Ok(_) => Err("it is not a regular file".to_string()),
        Err(_) => Ok(None),
    }
}

/// Removes from `staged` everything but `keep` and the directories leading to it: a build
/// may leave more in /out (temporary files, a symlink to /etc/shadow), and only declared
/// outputs are installed.
fn prune_undeclared(
    staged: &Path,
    keep: &std::collections::BTreeSet<PathBuf>,
) -> anyhow::Result<()> {
    let root = staged
        .canonicalize()
        .unwrap_or_else(|_| staged.to_path_buf());
    let kept = |p: &Path| {
        keep.iter().any(|k| {
            k == p || k.starts_with(p) || {
                // keep entries may be canonical (through the staging dir's real path)
                p.strip_prefix(staged)
                    .map(|rel| root.join(rel))
                    .is_ok_and(|q| k == &q || k.starts_with(&q))
            }
        })
    };
    for e in walkdir::WalkDir::new(staged)
        .min_depth(1)
        .contents_first(true)
        .into_iter()
        .filter_map(Result::ok)
    {
        let p = e.path();
        if kept(p) {
            continue;
        }
        let removed = if e.file_type().is_dir() {
            std::fs::remove_dir(p).or_else(|_| std::fs::remove_dir_all(p))
        } else {
            std::fs::remove_file(p)
        };
        removed.with_context(|| format!("could not remove `{}`", p.display()))?;
    }
    Ok(())
}

/// What the build left in `dir`: files and symlinks (shown as `link -> target`).
fn list_relative(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() || e.file_type().is_symlink())
        .filter_map(|e| {
            let rel = e.path().strip_prefix(dir).ok()?.display().to_string();
            Some(if e.file_type().is_symlink() {
                let target = std::fs::read_link(e.path()).unwrap_or_default();
                format!("{rel} -> {}", target.display())
            } else {
                rel
            })
        })
        .filter(|p| p != STAMP)
        .take(20)
        .collect()
}

/// Replaces `dist/build/<name>/` with `staged`: the old directory is renamed aside, the new one
/// renamed into place, then the old one removed. Serialised per recipe across processes by
/// `dist/build/.<name>.lock`, so concurrent builders never interleave their renames. Blocking.
pub(crate) fn install(staged: tempfile::TempDir, target: &Path) -> anyhow::Result<()> {
    let parent = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _lock = crate::fslock::FileLock::acquire(&parent.join(format!(".{name}.lock")), || {})?;
    // Until the final rename, dropping `staged` (an error) removes the staging directory.
    let old = if target.exists() {
        let old = tempfile::Builder::new()
            .prefix(&format!(".{name}.old-"))
            .tempdir_in(parent)
            .with_context(|| format!("could not create a directory in `{}`", parent.display()))?;
        // rename(2) replaces an empty directory.
        std::fs::rename(target, old.path()).with_context(|| {
            format!(
                "could not move `{}` aside to `{}`",
                target.display(),
                old.path().display()
            )
        })?;
        Some(old)
    } else {
        None
    };
    let staged = staged.keep();
    if let Err(e) = std::fs::rename(&staged, target) {
        let _ = std::fs::remove_dir_all(&staged);
        if let Some(old) = old {
            // Never let the guard delete the previous outputs: put them back, or leave them.
            let old = old.keep();
            let _ = std::fs::rename(&old, target);
        }
        return Err(e)
            .with_context(|| format!("could not move the outputs into `{}`", target.display()));
    }
    if let Some(old) = old {
        let path = old.path().to_path_buf();
        old.close()
            .with_context(|| format!("could not remove `{}`", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_install_then_check() {
        let dist = tempfile::tempdir().unwrap();
        let target = out_dir(dist.path(), "svc");
        for round in 0..2 {
            let staged = staging_dir(&target).unwrap();
            std::fs::write(staged.path().join("bin"), format!("round {round}")).unwrap();
            let key = format!("key{round}");
            let outs = seal(staged.path(), &["bin".into()], &key, "svc", "img").unwrap();
            assert_eq!(outs.len(), 1);
            install(staged, &target).unwrap();
            assert!(check(&target, &key).is_some());
            assert!(check(&target, "other").is_none());
        }
        assert_eq!(
            std::fs::read_to_string(target.join("bin")).unwrap(),
            "round 1"
        );
        // Only the target is left: no staging or old directories.
        assert_eq!(names_in(&dist.path().join("build")), [".svc.lock", "svc"]);
        // A tampered output is a miss.
        std::fs::write(target.join("bin"), "tampered").unwrap();
        assert!(check(&target, "key1").is_none());
    }

    #[test]
    fn only_declared_outputs_are_kept() {
        let dist = tempfile::tempdir().unwrap();
        let staged = staging_dir(&out_dir(dist.path(), "svc")).unwrap();
        let s = staged.path();
        std::fs::create_dir_all(s.join("bin")).unwrap();
        std::fs::create_dir_all(s.join("junk/deep")).unwrap();
        std::fs::write(s.join("bin/app"), "app").unwrap();
        std::fs::write(s.join("bin/helper.o"), "obj").unwrap();
        std::fs::write(s.join("junk/deep/x"), "x").unwrap();
        std::os::unix::fs::symlink("bin/app", s.join("alias")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", s.join("shadow")).unwrap();
        std::os::unix::fs::symlink("/etc", s.join("etc")).unwrap();
        seal(s, &["alias".into()], "k", "svc", "img").unwrap();
        let mut left: Vec<String> = walkdir::WalkDir::new(s)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter()
            .map(|e| {
                e.unwrap()
                    .path()
                    .strip_prefix(s)
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        left.sort();
        // the declared link and the file it leads to, the stamp; nothing undeclared
        assert_eq!(left, [STAMP, "alias", "bin", "bin/app"]);
    }

    /// The sorted names in `dir`.
    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn concurrent_installs_of_one_recipe_all_succeed() {
        let dist = tempfile::tempdir().unwrap();
        let target = out_dir(dist.path(), "svc");
        std::thread::scope(|s| {
            for i in 0..8 {
                let target = &target;
                s.spawn(move || {
                    let staged = staging_dir(target).unwrap();
                    std::fs::write(staged.path().join("bin"), format!("build {i}")).unwrap();
                    seal(
                        staged.path(),
                        &["bin".into()],
                        &format!("k{i}"),
                        "svc",
                        "img",
                    )
                    .unwrap();
                    install(staged, target).unwrap();
                });
            }
        });
        let stamp: Stamp =
            serde_json::from_str(&std::fs::read_to_string(target.join(STAMP)).unwrap()).unwrap();
        assert!(
            check(&target, &stamp.key).is_some(),
            "one complete build won"
        );
        assert_eq!(
            names_in(&dist.path().join("build")),
            [".svc.lock", "svc"],
            "no staging or old dirs left"
        );
    }

    #[test]
    fn symlinked_outputs_must_stay_inside_out() {
        let dist = tempfile::tempdir().unwrap();
        let staged = staging_dir(&out_dir(dist.path(), "svc")).unwrap();
        let s = staged.path();
        std::fs::write(s.join("real"), "bytes").unwrap();
        std::fs::create_dir(s.join("d")).unwrap();
        std::fs::write(s.join("d/f"), "in d").unwrap();
        let link = |target: &str, name: &str| std::os::unix::fs::symlink(target, s.join(name));
        link("/etc/passwd", "abs").unwrap();
        link("../../../../../../../../etc/passwd", "rel-out").unwrap();
        link("nowhere", "dangling").unwrap();
        link("/etc", "dir-out").unwrap();
        link("real", "alias").unwrap();
        link("d", "dir-in").unwrap();
        for (out, expect) in [
            (
                "abs",
                "`abs` but it is a symlink to the absolute path `/etc/passwd`",
            ),
            ("rel-out", "outside /out"),
            ("dangling", "`nowhere`, which does not exist"),
            (
                "dir-out/passwd",
                "`dir-out` is a symlink to the absolute path `/etc`",
            ),
        ] {
            let err = seal(s, &[out.into()], "k", "svc", "img").unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(expect), "{out}: {msg}");
            assert_eq!(crate::error::exit_code(&err), crate::error::EXIT_FAILED);
        }
        // Relative links inside /out are fine and hash their target.
        let outs = seal(s, &["alias".into(), "dir-in/f".into()], "k", "svc", "img").unwrap();
        assert_eq!(
            outs[0].1,
            crate::digest::sha256_file(&s.join("real")).unwrap()
        );
    }

    #[test]
    fn missing_outputs_list_symlinks_that_were_produced() {
        let dist = tempfile::tempdir().unwrap();
        let staged = staging_dir(&out_dir(dist.path(), "svc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", staged.path().join("p2")).unwrap();
        let err = seal(staged.path(), &["p".into()], "k", "svc", "img").unwrap_err();
        assert!(
            err.to_string().contains("found: p2 -> /etc/passwd"),
            "{err}"
        );
    }

    #[test]
    fn missing_output_is_a_failure_naming_it() {
        let dist = tempfile::tempdir().unwrap();
        let staged = staging_dir(&out_dir(dist.path(), "svc")).unwrap();
        std::fs::write(staged.path().join("other"), "x").unwrap();
        let err = seal(staged.path(), &["bin".into()], "k", "svc", "img").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`bin`") && msg.contains("other"), "{msg}");
        assert_eq!(crate::error::exit_code(&err), crate::error::EXIT_FAILED);
    }
}
