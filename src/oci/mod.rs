//! OCI images as files: deterministic gzip layer blobs with their digests ([`blob`]), the
//! config/manifest/index JSON documents ([`spec`]), the image tar that is both an OCI layout
//! and a Docker archive ([`layout`]), and reading such a tar back ([`inspect`]).
//!
//! This module knows nothing about recipes, Debian packages or the Docker engine: the image
//! operation in `crate::image` decides what goes into an image; loading goes through
//! `crate::docker`.

pub(crate) mod blob;
pub mod inspect;
pub(crate) mod layout;
pub mod spec;

pub use blob::{compress_tar_file, compress_tree, LayerBlob};
pub use inspect::{inspect, render, ImageInspect};
pub use layout::{write_image_tar, ImageParts, WrittenImage};
