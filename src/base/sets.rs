//! The bases builder.lock pins (`packages` and `debootstrap`): what each is resolved from,
//! its lock entry, and the unpacking of a package set into a rootfs tar.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::def::{BaseDef, BaseKind, UserDef};
use super::{pack, BaseImages};
use crate::report::Reporter;

impl BaseImages {
    /// The locker (builder.lock and the archive) of this project.
    pub fn locker(&self) -> &crate::debian::sets::Locker {
        &self.inner.locker
    }

    /// What a `packages` or `debootstrap` base is resolved from (debootstrap's choice:
    /// the required packages, those its variant adds, and `packages`).
    pub fn set_request(&self, name: &str) -> Result<crate::debian::sets::SetRequest> {
        let def = self.def(name)?;
        let who = format!("base-images/{name}.toml");
        let (packages, exclude, priorities): (Vec<String>, Vec<String>, Vec<String>) =
            match &def.kind {
                BaseKind::Packages {
                    packages,
                    exclude,
                    include_required,
                    ..
                } => (
                    packages.clone(),
                    exclude.clone(),
                    if *include_required {
                        vec!["required".to_string()]
                    } else {
                        Vec::new()
                    },
                ),
                BaseKind::Debootstrap {
                    variant, packages, ..
                } => {
                    // debootstrap's scripts/debian-common: what each variant adds. The
                    // rootfs is merged-/usr already, which `usr-is-merged` states (where the
                    // suite has it; base-files otherwise) so that init-system-helpers'
                    // `usrmerge | usr-is-merged` does not pull usrmerge and perl in.
                    let merged = "usr-is-merged | base-files";
                    let (extra, priorities): (&[&str], &[&str]) = match variant.as_str() {
                        "minbase" | "fakechroot" => (&["apt", merged], &["required"]),
                        "buildd" => (&["apt", "build-essential", merged], &["required"]),
                        _ => (&["apt", merged], &["required", "important"]),
                    };
                    let mut all = packages.clone();
                    all.extend(extra.iter().map(|s| s.to_string()));
                    (
                        all,
                        Vec::new(),
                        priorities.iter().map(|s| s.to_string()).collect(),
                    )
                }
                other => {
                    return Err(crate::error::usage(format!(
                        "base `{name}` is a {} base, not a package set",
                        other.name()
                    )))
                }
            };
        let mut roots = Vec::new();
        for p in &packages {
            for r in crate::debian::relation::parse(p).map_err(anyhow::Error::msg)? {
                roots.push((r, who.clone()));
            }
        }
        Ok(crate::debian::sets::SetRequest {
            roots,
            exclude: exclude.into_iter().collect(),
            priorities,
            ..Default::default()
        })
    }

    /// The locked set of a `packages` base, when builder.lock has a current one.
    pub fn locked_set(&self, name: &str) -> Result<Option<crate::debian::sets::ResolvedSet>> {
        let req = self.set_request(name)?;
        let identity = self.inner.locker.config()?.identity();
        let inputs = req.inputs(crate::debian::lock::SetKind::Base, &identity);
        Ok(self
            .inner
            .locker
            .current(crate::debian::lock::SetKind::Base, name, &inputs))
    }

    /// Whether the hash (and so the tag and cache files) of a base follows builder.lock:
    /// `packages` and `debootstrap` bases, and `static` bases made from one.
    pub(crate) fn follows_lock(&self, name: &str) -> Result<bool> {
        Ok(match &self.def(name)?.kind {
            BaseKind::Packages { .. } | BaseKind::Debootstrap { .. } => true,
            BaseKind::Static { from } => self.follows_lock(from)?,
            _ => false,
        })
    }

    /// Locks every set the hash of a base follows ([`Self::follows_lock`]): its own, or its
    /// source's for a `static` base. Call before computing a tag or cache path: one computed
    /// earlier is the "unlocked" hash, which names nothing once the lock is written. Under
    /// `--locked` nothing is written ([`crate::debian::sets::Locker::ensure`] refuses a set
    /// that is not current, naming `builder lock`).
    pub(crate) fn lock_chain(&self, name: &str, reporter: &Reporter) -> Result<()> {
        match &self.def(name)?.kind {
            BaseKind::Packages { .. } | BaseKind::Debootstrap { .. } => {
                self.ensure_locked(name, reporter).map(drop)
            }
            BaseKind::Static { from } => self.lock_chain(from, reporter),
            _ => Ok(()),
        }
    }

    /// Resolves a `packages` base into builder.lock when it has no current entry.
    pub fn ensure_locked(
        &self,
        name: &str,
        reporter: &Reporter,
    ) -> Result<crate::debian::sets::ResolvedSet> {
        self.ensure_locked_with(name, None, reporter)
    }

    /// [`Self::ensure_locked`], re-resolving (`lock --update`) with `update`.
    pub fn ensure_locked_with(
        &self,
        name: &str,
        update: Option<&std::collections::BTreeSet<String>>,
        reporter: &Reporter,
    ) -> Result<crate::debian::sets::ResolvedSet> {
        let req = self.set_request(name)?;
        let locker = &self.inner.locker;
        let set = crate::debian::fetch::block_on(locker.ensure(
            crate::debian::lock::SetKind::Base,
            name,
            &req,
            update,
            reporter,
        ))??;
        if set.changed {
            // The tag of this base (and of bases made from it) follows the lock.
            self.inner
                .hashes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            reporter.status(
                "Locked",
                format!(
                    "base `{name}`: {} packages in {}",
                    set.packages.len(),
                    crate::debian::lock::FILE
                ),
            );
        }
        Ok(set)
    }

    /// The locked packages of a base and their verified .deb files in the cache (downloaded
    /// if missing).
    pub(super) fn locked_debs(
        &self,
        name: &str,
        reporter: &Reporter,
    ) -> Result<Vec<(crate::debian::lock::LockedPackage, PathBuf)>> {
        let set = self.locked_set(name)?.ok_or_else(|| {
            anyhow::anyhow!("internal: base `{name}` is not locked after locking")
        })?;
        let archive = self.inner.locker.archive()?;
        let refs: Vec<_> = set.packages.iter().map(|p| p.deb_ref()).collect();
        let paths = crate::debian::fetch::block_on(archive.fetch_debs(&refs, reporter))??;
        Ok(set.packages.into_iter().zip(paths).collect())
    }

    /// Downloads (if needed) and unpacks a locked package set into the rootfs tar `out`.
    pub(super) fn make_packages(
        &self,
        def: &BaseDef,
        set: &crate::debian::sets::ResolvedSet,
        out: &Path,
        reporter: &Reporter,
    ) -> Result<pack::Written> {
        let BaseKind::Packages {
            users,
            groups,
            path_exclude,
            ..
        } = &def.kind
        else {
            anyhow::bail!("internal: base `{}` is not a package set", def.name);
        };
        let members: Vec<crate::debian::assemble::Member> = self
            .locked_debs(&def.name, reporter)?
            .into_iter()
            .map(|(locked, deb)| crate::debian::assemble::Member { locked, deb })
            .collect();
        let mut all_users: Vec<UserDef> = def.user.iter().cloned().collect();
        all_users.extend(users.iter().cloned());
        let progress = reporter.progress(format!("base {}", def.name), None);
        progress.message("unpacking");
        let assembled = crate::debian::assemble::assemble(
            &members,
            &crate::debian::assemble::Options {
                lower: None,
                base: true,
                users: &all_users,
                groups,
                path_exclude,
            },
        )
        .with_context(|| format!("could not assemble base `{}`", def.name))?;
        crate::debian::assemble::report(
            &format!("base `{}`", def.name),
            &assembled,
            &set.needed_by,
            reporter,
        );
        progress.message("writing rootfs tar");
        let written = pack::write_entries(out, &assembled.entries)?;
        progress.finish(format!(
            "{} packages, rootfs {} MB",
            set.packages.len(),
            written.size / 1_000_000
        ));
        Ok(written)
    }
}
