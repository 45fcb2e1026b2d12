//! Image helpers: exists/inspect/tag/remove, importing a rootfs tar as an image
//! (`/images/create?fromSrc=-`) and loading a docker-archive tar (`/images/load`). Both stream
//! the file from disk and turn an `errorDetail` in the JSON progress stream (sent with HTTP
//! 200) into an error.

use std::path::Path;

use anyhow::{Context, Result};
use bollard::models::ImageInspect;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, ImportImageOptionsBuilder, RemoveImageOptionsBuilder,
    TagImageOptionsBuilder,
};
use bollard::Docker;

use super::Engine;
use futures_util::StreamExt;
use tokio_util::io::ReaderStream;

use crate::report::Reporter;

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The image named `name` (tag, id or digest), or `None` if the engine does not have it.
pub(super) async fn inspect(docker: &Docker, name: &str) -> Result<Option<ImageInspect>> {
    match docker.inspect_image(name).await {
        Ok(i) => Ok(Some(i)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("could not inspect image `{name}`")),
    }
}

/// Whether the engine has an image named `name`.
pub async fn image_exists(engine: &Engine, name: &str) -> Result<bool> {
    Ok(inspect(engine.client(), name).await?.is_some())
}

/// Tags `image` (id or name) as `repo:tag`, replacing an existing tag of that name.
pub async fn tag_image(engine: &Engine, image: &str, repo: &str, tag: &str) -> Result<()> {
    let docker = engine.client();
    docker
        .tag_image(
            image,
            Some(
                TagImageOptionsBuilder::default()
                    .repo(repo)
                    .tag(tag)
                    .build(),
            ),
        )
        .await
        .with_context(|| format!("could not tag image `{image}` as `{repo}:{tag}`"))
}

/// Removes the image (or only the tag, if other tags point at the same image). Returns
/// `false` if it did not exist.
pub async fn remove_image(engine: &Engine, name: &str, force: bool) -> Result<bool> {
    let docker = engine.client();
    let opts = RemoveImageOptionsBuilder::default().force(force).build();
    match docker.remove_image(name, Some(opts), None).await {
        Ok(_) => Ok(true),
        Err(e) if not_found(&e) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("could not remove image `{name}`")),
    }
}

async fn file_stream(path: &Path) -> Result<ReaderStream<tokio::fs::File>> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("could not open `{}`", path.display()))?;
    // 256 KiB reads: far fewer frames than the 4 KiB default for multi-hundred-MB tars.
    Ok(ReaderStream::with_capacity(file, 256 * 1024))
}

/// Options for [`import_rootfs`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Dockerfile-like instructions applied to the config: `ENV K=V`, `USER u`,
    /// `LABEL k=v`, `WORKDIR /x`, `CMD [...]`.
    pub changes: Vec<String>,
    /// Commit message stored in the image history.
    pub message: Option<String>,
}

/// Imports a rootfs tar as a new, untagged image and returns its id (`sha256:...`). The
/// caller tags it once it is complete, so a failed import never leaves a tag behind.
pub async fn import_rootfs(engine: &Engine, tar: &Path, opts: &ImportOptions) -> Result<String> {
    let docker = engine.client();
    let body = bollard::body_try_stream(file_stream(tar).await?);
    let mut builder = CreateImageOptionsBuilder::default()
        .from_src("-")
        .changes(opts.changes.clone());
    if let Some(m) = &opts.message {
        builder = builder.message(m);
    }
    let mut stream = docker.create_image(Some(builder.build()), Some(body), None);
    let mut id = None;
    while let Some(item) = stream.next().await {
        let info = item.with_context(|| {
            format!(
                "the Docker engine refused to import `{}` as an image",
                tar.display()
            )
        })?;
        if let Some(detail) = info.error_detail.and_then(|d| d.message) {
            anyhow::bail!("importing `{}` failed: {detail}", tar.display());
        }
        if let Some(status) = info.status {
            if status.starts_with("sha256:") {
                id = Some(status.trim().to_string());
            }
        }
    }
    id.with_context(|| {
        format!(
            "the engine imported `{}` but did not report an image id",
            tar.display()
        )
    })
}

/// One image named in the answer of `/images/load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadedImage {
    /// `Loaded image: name:tag`
    Reference(String),
    /// `Loaded image ID: sha256:...` (an untagged image)
    Id(String),
}

/// Loads a docker-archive tar (`docker load`) by streaming the file; returns what the
/// engine says it loaded. An `errorDetail` in the progress stream becomes an error.
pub async fn load_image_tar(
    engine: &Engine,
    tar: &Path,
    reporter: &Reporter,
) -> Result<Vec<LoadedImage>> {
    let docker = engine.client();
    let body = file_stream(tar).await?;
    let opts = ImportImageOptionsBuilder::default().quiet(true).build();
    let mut stream = docker.import_image_stream(opts, body, None);
    let mut loaded = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.with_context(|| {
            format!(
                "the Docker engine could not load the image archive `{}`",
                tar.display()
            )
        })?;
        if let Some(detail) = info.error_detail.and_then(|d| d.message) {
            anyhow::bail!(
                "the Docker engine could not load the image archive `{}`: {detail}",
                tar.display()
            );
        }
        for line in info.stream.iter().flat_map(|s| s.lines()) {
            if let Some(r) = line.strip_prefix("Loaded image: ") {
                loaded.push(LoadedImage::Reference(r.trim().to_string()));
            } else if let Some(r) = line.strip_prefix("Loaded image ID: ") {
                loaded.push(LoadedImage::Id(r.trim().to_string()));
            } else if !line.trim().is_empty() {
                reporter.verbose(line.trim());
            }
        }
    }
    if loaded.is_empty() {
        anyhow::bail!(
            "the Docker engine loaded nothing from `{}`; is it a docker-archive tar with a manifest.json?",
            tar.display()
        );
    }
    Ok(loaded)
}

/// A send with no bytes moving for this long, plus a second per [`STALL_BYTES_PER_SEC`]
/// bytes of the image, has stalled. Generous on purpose: the legacy image store writes the
/// whole archive to a temporary directory before the first byte leaves the source, and the
/// destination unpacks every layer after the last byte came.
const STALL_BASE: std::time::Duration = std::time::Duration::from_secs(60);
const STALL_BYTES_PER_SEC: u64 = 10_000_000;

/// How long a send of an image of `size` bytes may go without progress.
pub(crate) fn stall_bound(size: Option<u64>) -> std::time::Duration {
    STALL_BASE + std::time::Duration::from_secs(size.unwrap_or(0) / STALL_BYTES_PER_SEC)
}

/// Sends the image `image` (id or tag; its tags go with it) from engine `from` to engine
/// `to`: `/images/{image}/get` streamed straight into `/images/load`, no file in between
/// (what `docker save IMAGE | docker -H OTHER load` does). Both engines then hold the same
/// image id: the config digest is the id, and the archive carries the config as it is.
/// Returns what the destination then holds under `image`.
///
/// Bounded: either engine going silent ([`super::SILENCE`] without answering a ping) ends
/// the send with an error naming it (the source only while it sends), and so does no
/// progress for [`stall_bound`] of the image's size (no byte sent), or four times that
/// for the destination to load after the last byte.
pub async fn copy_image(from: &Engine, to: &Engine, image: &str) -> Result<Copied> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    let (src, dst) = (&from.endpoint().name, &to.endpoint().name);
    let failed = || format!("could not send image `{image}` from engine `{src}` to engine `{dst}`");
    let size = from
        .unless_silent(inspect(from.client(), image))
        .await
        .with_context(failed)??
        .and_then(|i| i.size)
        .map(|s| s.max(0) as u64);
    let stall = stall_bound(size);
    let moved = Arc::new(AtomicU64::new(0));
    // When bytes last moved, or the source finished sending.
    let progress = Arc::new(Mutex::new(Instant::now()));
    // True once the source sent its last byte: from then on only the destination matters,
    // and it gets four times the bound to unpack every layer (vfs, a busy host's disk).
    let (sent_all, sent) = tokio::sync::watch::channel(false);
    let loading = stall * 4;
    let mark = |p: &Mutex<Instant>| *p.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    let (counted, marks, ended) = (moved.clone(), progress.clone(), progress.clone());
    let body = from
        .client()
        .export_image(image)
        .map(move |chunk| {
            if let Ok(b) = &chunk {
                counted.fetch_add(b.len() as u64, Ordering::Relaxed);
                mark(&marks);
            }
            chunk
        })
        .chain(
            futures_util::stream::once(async move {
                mark(&ended);
                sent_all.send_replace(true);
                None
            })
            .filter_map(|x| async move { x }),
        );
    let opts = ImportImageOptionsBuilder::default().quiet(true).build();
    let load = async {
        let mut stream = to.client().import_image_stream(opts, body, None);
        while let Some(item) = stream.next().await {
            let info = item.with_context(failed)?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                anyhow::bail!(
                    "engine `{dst}` could not load image `{image}` sent from engine `{src}`: {detail}"
                );
            }
        }
        anyhow::Ok(())
    };
    let stalled = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let since = progress.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
            if since >= if *sent.borrow() { loading } else { stall } {
                return;
            }
        }
    };
    // The source's silence matters only while it sends.
    let mut sending = sent.clone();
    let source_silent = async {
        tokio::select! {
            e = from.until_silent() => Some(e),
            _ = sending.wait_for(|all| *all) => None,
        }
    };
    tokio::select! {
        loaded = load => loaded?,
        Some(e) = source_silent => return Err(e.context(failed())),
        e = to.until_silent() => return Err(e.context(failed())),
        _ = stalled => {
            let moved = moved.load(Ordering::Relaxed);
            if *sent.borrow() {
                anyhow::bail!(
                    "{}: engine `{dst}` did not finish loading the image ({moved} bytes) in {} s \
                     after the last byte; it is overloaded or its disk hangs",
                    failed(),
                    loading.as_secs()
                )
            }
            anyhow::bail!(
                "{}: no progress for {} s ({moved} bytes sent); engine `{src}` or `{dst}` is \
                 overloaded or its disk hangs",
                failed(),
                stall.as_secs()
            )
        }
    }
    let bytes = moved.load(Ordering::Relaxed);
    let Some(held) = to
        .unless_silent(inspect(to.client(), image))
        .await
        .with_context(failed)??
    else {
        anyhow::bail!(
            "engine `{dst}` does not hold image `{image}` after loading it from engine `{src}` \
             ({bytes} bytes sent)"
        );
    };
    Ok(Copied {
        bytes,
        id: held.id.unwrap_or_default(),
    })
}

/// What [`copy_image`] moved and what the destination holds after it.
#[derive(Debug)]
pub struct Copied {
    /// Bytes of the image archive sent.
    pub bytes: u64,
    /// The id the destination holds the image under.
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bigger_image_may_take_longer_without_progress() {
        assert_eq!(stall_bound(None).as_secs(), 60);
        assert_eq!(stall_bound(Some(5_000_000)).as_secs(), 60);
        assert_eq!(stall_bound(Some(1_000_000_000)).as_secs(), 160);
    }
}
