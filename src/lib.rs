//! builder: compiles services in builder containers, packages them as `.deb` archives and
//! minimal OCI images, smoke-tests the images behind a load balancer and promotes exactly
//! what passed into per-environment repositories.
//!
//! Map of the crate, every module, in the order data flows (top to bottom):
//!
//! ```text
//! main.rs     thin entry point: parse, one tokio runtime, error → exit code
//! cli/        clap types → library option structs; one file per subcommand; never logic
//! project     where things live (project root, recipes/, dist/, cache) and the one clock
//! diag/       diagnostics for every config file: file:line:col, caret, did-you-mean, help;
//!             the collector validators report into; the one TOML read and parse
//! recipe/     TOML recipes: raw serde model with spans → validated types
//! plan        what each recipe will do (paths, tags, cache keys), computed once: `plan`
//!             prints it; build, package and pipeline execute it
//! pipeline/   `pipeline` and `ci`: validate → build → package → smoke → promote, summary, JUnit
//!
//! stages, each reading what the previous one left in dist/:
//! base/       base images: package sets, debootstrap, tarballs → rootfs tars → engine images
//! build/      `build`: a recipe's [build] in a builder container, content-addressed cache
//! package/    recipe + build outputs → .deb (and image) in dist/, manifest.json;
//!             `${shlibs:Depends}` from the packaged ELF files (package/shlibs)
//! image/      .deb + base (+ dependency layer) → OCI image; the start check (ELF, #!)
//! smoke/      `smoke`: the stack behind HAProxy on a private network, load, gate, reports;
//!             canary: the environment's release beside the candidate, verdict, blue-green switch
//! load/       the open-model HTTP load generator smoke uses (and `builder load`)
//! promote/    exactly what passed smoke → the next environment; gate verification, registries
//! repo/       environment repositories: signed apt indexes, OCI layout, generations, check
//!
//! formats and the engine, used by the stages:
//! debian/     Debian's archive read natively: verified InRelease/Packages, .deb downloads,
//!             the resolver, builder.lock, package sets unpacked into rootfs layers
//! deb/        .deb writer (ar + control.tar + data.tar) and reader (`builder inspect`)
//! oci/        OCI image files: deterministic layer blobs, config, manifest, index, image tars
//! archive/    deterministic tar trees shared by the .deb and OCI writers
//! sign/       OpenPGP signing and verification for repositories and smoke reports: the
//!             subset apt needs (packets, armor, v4 keys and signatures, cleartext) on ring
//! docker/     the only module that talks to the Docker engine (clippy.toml holds the rule):
//!             Engine (connection) and Session (run, stage, cleanup guard, cancel), gc
//! manifest    dist/manifest.json: every artifact with sha256, size, version, commit
//! junit       the one JUnit XML writer: the smoke gate's suite and the pipeline's stages
//!
//! utilities:
//! digest      the sha256 `Digest` (one parse, one display, bare-hex serde) and file hashing
//! durable     the one durable write: temp beside, fsync, rename, fsync the directory
//! fslock      exclusive flock on a lock file for work that must be serialised
//! interrupt   the process-wide stop flag for synchronous work (Ctrl-C)
//! timefmt     RFC 3339 and RFC 2822 (apt Release) dates without a calendar crate
//! stats       two-sample tests for the canary verdict: Mann-Whitney U, Fisher's exact test,
//!             proportion intervals; pure
//! report      the one place that prints: progress bars on a TTY, plain lines in CI, JSON;
//!             a capturing reporter for tests
//! error       exit codes: 0 ok, 1 stage failed, 2 usage/recipe error, 3 environment error
//! testkit     (tests only) fixtures the in-crate tests share: a project with a key, .debs,
//!             signed smoke reports, gate checks of a made-up load run
//! ```
//!
//! The library never prints directly; everything goes through [`report::Reporter`].
#![warn(clippy::print_stdout, clippy::print_stderr)]
// An item is `pub` only when benches, tests or main.rs reach it; everything else is
// `pub(crate)`, so the compiler reports what nothing uses.
#![warn(unreachable_pub)]

pub mod archive;
pub mod base;
pub(crate) mod build;
pub mod cli;
pub mod deb;
pub mod debian;
pub(crate) mod diag;
pub mod digest;
pub mod docker;
pub(crate) mod durable;
pub mod error;
pub mod fslock;
pub mod image;
pub(crate) mod interrupt;
pub(crate) mod junit;
pub mod load;
pub(crate) mod manifest;
pub mod oci;
pub(crate) mod package;
pub(crate) mod pipeline;
pub(crate) mod plan;
pub mod project;
pub(crate) mod promote;
pub mod recipe;
pub mod repo;
pub mod report;
pub mod sign;
pub(crate) mod smoke;
pub mod stats;
#[cfg(test)]
pub(crate) mod testkit;
pub(crate) mod timefmt;
