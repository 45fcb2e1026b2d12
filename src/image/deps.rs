//! The dependency layer of an image: the closure of the package's `Depends` and
//! `Pre-Depends` that its base does not already hold, resolved against the archive and
//! locked in `builder.lock` (set `image <name>`), unpacked the way a `packages` base is
//! (see `crate::debian::assemble`) over the base's files. No layer when the base already
//! holds everything.
//!
//! The layer tar is kept in the cache under the hash of what makes it (the base's diff_id
//! and the locked files), so a warm package run does not unpack again.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::check::BaseListing;
use crate::base::pack::Written;
use crate::base::BaseImages;
use crate::debian::assemble::{self, Member};
use crate::debian::lock::SetKind;
use crate::debian::relation;
use crate::debian::sets::{ResolvedSet, SetRequest};
use crate::recipe::{ImageSpec, Recipe};
use crate::report::Reporter;

/// A dependency layer tar and what it holds.
#[derive(Debug, Clone)]
pub(crate) struct DepsLayer {
    pub tar: PathBuf,
    pub written: Written,
    pub set: ResolvedSet,
    /// The layer's files, for the start check.
    pub listing: BaseListing,
}

/// The name of an image's set in builder.lock: the package name, or `name@base` when the
/// image is made on another base than the recipe's (a rebase).
pub(crate) fn set_name(recipe: &Recipe, spec: &ImageSpec, base_name: &str) -> String {
    if base_name == spec.base {
        recipe.package.name.clone()
    } else {
        format!("{}@{base_name}", recipe.package.name)
    }
}

/// What an image's dependency set is resolved from: the .deb's Depends and Pre-Depends
/// (`fields`), the `[image] exclude` list and the base (its name and content hash). The
/// base's installed packages are left for the caller to fill in: they do not change the
/// set's inputs.
pub(crate) fn set_request(
    recipe: &Recipe,
    spec: &ImageSpec,
    fields: &[(String, String)],
    bases: &BaseImages,
    base_name: &str,
) -> anyhow::Result<SetRequest> {
    let who = recipe
        .file
        .file_name()
        .map(|f| format!("recipes/{}", f.to_string_lossy()))
        .unwrap_or_else(|| recipe.package.name.clone());
    let relations = &recipe.package.relations;
    let (roots, computed) = if crate::package::shlibs::wanted(relations) {
        // The set is keyed by what the recipe writes (known before the build, so `builder
        // lock` and `package` agree); what `${shlibs:Depends}` added must be in it too.
        let declared = roots_of(
            recipe,
            &who,
            &crate::package::shlibs::without_substvars(relations),
        )?;
        let computed = roots_of(recipe, &who, fields)?
            .into_iter()
            .filter(|(r, _)| !declared.iter().any(|(d, _)| d == r))
            .collect();
        (declared, computed)
    } else {
        (roots_of(recipe, &who, fields)?, Vec::new())
    };
    Ok(SetRequest {
        roots,
        exclude: spec.exclude.iter().cloned().collect::<BTreeSet<_>>(),
        priorities: Vec::new(),
        installed: Default::default(),
        below: below_identity(bases, base_name)?,
        computed,
    })
}

/// The Depends and Pre-Depends relations of `fields`, each with `who` asks for it.
fn roots_of(
    recipe: &Recipe,
    who: &str,
    fields: &[(String, String)],
) -> anyhow::Result<Vec<(relation::Relation, String)>> {
    let mut roots = Vec::new();
    for (k, v) in fields {
        if k.eq_ignore_ascii_case("Depends") || k.eq_ignore_ascii_case("Pre-Depends") {
            let rels = relation::parse(v).map_err(|e| {
                crate::error::usage(format!("`{}`: {k}: {e}", recipe.file.display()))
            })?;
            roots.extend(rels.into_iter().map(|r| (r, who.to_string())));
        }
    }
    Ok(roots)
}

/// What an image's dependencies are resolved on top of: a `packages` base's locked
/// packages (so neither its users nor builder's assembly format matter), else the base's
/// content hash.
fn below_identity(bases: &BaseImages, base_name: &str) -> anyhow::Result<String> {
    if matches!(
        bases.get(base_name).map(|d| &d.kind),
        Some(crate::base::BaseKind::Packages { .. })
    ) {
        if let Some(set) = bases.locked_set(base_name)? {
            return Ok(format!("packages:{}", set.set.packages.join(",")));
        }
    }
    Ok(format!("{base_name}:{}", bases.hash(base_name)?))
}

/// The installed packages of a base listing, by name.
pub(crate) fn installed_of(
    listing: &BaseListing,
) -> anyhow::Result<std::collections::BTreeMap<String, Arc<crate::debian::index::Package>>> {
    Ok(listing
        .installed()?
        .into_iter()
        .map(|p| (p.name.clone(), Arc::new(p)))
        .collect())
}

#[derive(Serialize, Deserialize)]
struct Meta {
    key: String,
    diff_id: String,
    size: u64,
}

/// Resolves (or reads from the lock), downloads and unpacks the dependency layer of an
/// image; `None` when the base holds every dependency.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dependency_layer(
    recipe: &Recipe,
    spec: &ImageSpec,
    fields: &[(String, String)],
    bases: &BaseImages,
    base_name: &str,
    base_diff_id: &str,
    listing: &BaseListing,
    reporter: &Reporter,
) -> anyhow::Result<Option<DepsLayer>> {
    let mut req = set_request(recipe, spec, fields, bases, base_name)?;
    req.installed = installed_of(listing)?;
    let name = set_name(recipe, spec, base_name);
    let locker = bases.locker();
    let set = crate::debian::fetch::block_on(locker.ensure(
        SetKind::Image,
        &name,
        &req,
        None,
        reporter,
    ))??;
    if set.changed {
        reporter.status(
            "Locked",
            format!(
                "image `{name}`: {} packages beyond base `{base_name}` in {}",
                set.packages.len(),
                crate::debian::lock::FILE
            ),
        );
    }
    if !set.set.excluded.is_empty() {
        reporter.verbose(format!(
            "image `{name}`: left out on purpose ([image] exclude): {}",
            set.set.excluded.join(", ")
        ));
    }
    if set.packages.is_empty() {
        return Ok(None);
    }
    let mut key_src = format!("{}\n{base_diff_id}\n", assemble::FORMAT);
    for p in &set.packages {
        key_src.push_str(&p.sha256);
        key_src.push('\n');
    }
    let key = crate::digest::sha256_hex(key_src.as_bytes());
    let dir = crate::debian::archive::cache_root().join("layers");
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("could not create the cache directory `{}`", dir.display()))?;
    let tar = dir.join(format!("{key}.tar"));
    let meta_path = dir.join(format!("{key}.json"));
    let cached = std::fs::read_to_string(&meta_path)
        .ok()
        .and_then(|t| serde_json::from_str::<Meta>(&t).ok())
        .filter(|m| m.key == key && std::fs::metadata(&tar).is_ok_and(|md| md.len() == m.size));
    let written = match cached {
        Some(m) => Written {
            diff_id: m.diff_id,
            size: m.size,
        },
        None => {
            let archive = locker.archive()?;
            let refs: Vec<_> = set.packages.iter().map(|p| p.deb_ref()).collect();
            let debs = crate::debian::fetch::block_on(archive.fetch_debs(&refs, reporter))??;
            let members: Vec<Member> = set
                .packages
                .iter()
                .zip(debs)
                .map(|(locked, deb)| Member {
                    locked: locked.clone(),
                    deb,
                })
                .collect();
            let assembled = assemble::assemble(
                &members,
                &assemble::Options {
                    lower: Some(listing),
                    base: false,
                    users: &[],
                    groups: &[],
                    path_exclude: &[],
                },
            )
            .with_context(|| {
                format!("could not assemble the dependency layer of image `{name}`")
            })?;
            assemble::report(
                &format!("image `{name}`"),
                &assembled,
                &set.needed_by,
                reporter,
            );
            let _lock = crate::fslock::FileLock::acquire(&dir.join(format!("{key}.lock")), || {})?;
            let w = crate::base::pack::write_entries(&tar, &assembled.entries)?;
            let meta = Meta {
                key: key.clone(),
                diff_id: w.diff_id.clone(),
                size: w.size,
            };
            crate::durable::write(&meta_path, &serde_json::to_vec(&meta)?)?;
            w
        }
    };
    let layer_listing = BaseListing::read(&tar)?;
    Ok(Some(DepsLayer {
        tar,
        written,
        set,
        listing: layer_listing,
    }))
}
