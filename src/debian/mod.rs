//! Debian's archive, read natively: verified `InRelease`/`Packages` indexes and `.deb`
//! downloads ([`archive`]), deb822 and relation parsing ([`deb822`], [`relation`]), the
//! resolver ([`resolve`]), the lock file ([`lock`]) and the assembly of package sets into
//! deterministic rootfs layers ([`assemble`]).
//!
//! Must not: run maintainer scripts, chroot, or need root. Nothing here talks to Docker.

pub mod alternatives;
pub mod archive;
pub mod assemble;
pub mod cacerts;
pub mod deb822;
pub mod fetch;
pub mod index;
pub mod keyring;
pub mod lock;
pub mod project;
pub mod relation;
pub mod release;
pub mod resolve;
pub mod sets;
pub mod source;
