//! Debian's archive, read natively: verified `InRelease`/`Packages` indexes and `.deb`
//! downloads ([`archive`]), deb822 and relation parsing ([`deb822`], [`relation`]), the
//! resolver ([`resolve`]), the lock file ([`lock`]) and the assembly of package sets into
//! deterministic rootfs layers ([`assemble`]).
//!
//! Must not: run maintainer scripts, chroot, or need root. Nothing here talks to Docker.

pub(crate) mod alternatives;
pub(crate) mod archive;
pub(crate) mod assemble;
pub(crate) mod cacerts;
pub(crate) mod deb822;
pub(crate) mod fetch;
pub(crate) mod index;
pub mod keyring;
pub(crate) mod lock;
pub(crate) mod project;
pub(crate) mod relation;
pub(crate) mod release;
pub(crate) mod resolve;
pub(crate) mod sets;
pub mod source;
