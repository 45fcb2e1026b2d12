//! builder: compiles services in builder containers, packages them as `.deb` archives and
//! minimal OCI images, smoke-tests the images behind a load balancer and promotes exactly
//! what passed into per-environment repositories.
//!
//! Map of the crate (data flows top to bottom):
//!
//! ```text
//! cli/        clap types → library option structs; one file per subcommand; never logic
//! recipe/     TOML recipes: raw serde model with spans → validated types, compiler-like diagnostics
//! plan        what each recipe will do (cache keys, outputs) before anything runs
//! archive/    deterministic tar trees shared by the .deb and OCI writers
//! deb/        .deb writer (ar + control.tar + data.tar) and reader (`builder inspect`)
//! debian/     Debian's archive read natively: verified InRelease/Packages, .deb downloads,
//!             the resolver, builder.lock, package sets unpacked into rootfs layers
//! base/       base images: package sets, debootstrap, tarballs → rootfs tars → engine images
//! image/      .deb + base (+ dependency layer) → OCI image; the start check (ELF, #!)
//! package/    recipe + build outputs → .deb (and image) in dist/, manifest.json
//! report      the one place that prints: progress bars on a TTY, plain lines in CI, JSON
//! error       exit codes: 0 ok, 1 stage failed, 2 usage/recipe error, 3 environment error
//! ```
//!
//! The library never prints directly; everything goes through [`report::Reporter`].
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod archive;
pub mod base;
pub mod build;
pub mod cli;
pub mod deb;
pub mod debian;
pub mod digest;
pub mod docker;
pub mod durable;
pub mod error;
pub mod fslock;
pub mod image;
pub mod interrupt;
pub mod load;
pub mod manifest;
pub mod oci;
pub mod package;
pub mod pipeline;
pub mod plan;
pub mod project;
pub mod promote;
pub mod recipe;
pub mod repo;
pub mod report;
pub mod sign;
pub mod smoke;
pub mod timefmt;
