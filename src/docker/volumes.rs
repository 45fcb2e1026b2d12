//! Named volumes builder keeps on purpose between runs (tool caches such as Go's build
//! cache). Unlike run-scoped objects they carry no `io.builder.run` or pid label, so no
//! [`Guard`](super::Guard) removes them and `gc` leaves them alone unless asked
//! ([`GcOptions::cache`](super::GcOptions)).

use std::collections::HashMap;

use anyhow::{Context, Result};
use bollard::models::VolumeCreateRequest;

use super::Engine;

/// `io.builder.stage` of persistent cache volumes.
pub const STAGE_CACHE: &str = "build-cache";
/// Label naming the recipe a cache volume belongs to.
pub const LABEL_RECIPE: &str = "io.builder.recipe";
/// Label naming the cache scope (the project, or `BUILDER_CACHE_SCOPE`) a volume belongs to.
pub const LABEL_CACHE_SCOPE: &str = "io.builder.cache-scope";

/// The labels of the persistent cache volume of `recipe` in cache scope `scope` (no run, no
/// pid: it outlives runs).
pub fn cache_labels(recipe: &str, scope: &str) -> HashMap<String, String> {
    HashMap::from([
        (super::LABEL_ROOT.to_string(), "1".to_string()),
        (super::LABEL_STAGE.to_string(), STAGE_CACHE.to_string()),
        (LABEL_RECIPE.to_string(), recipe.to_string()),
        (LABEL_CACHE_SCOPE.to_string(), scope.to_string()),
    ])
}

/// Makes sure the named volume `name` exists, creating it with `labels` (local driver) if it
/// does not. An existing volume is kept as it is, contents and labels included.
pub async fn ensure_volume(
    engine: &Engine,
    name: &str,
    labels: HashMap<String, String>,
) -> Result<()> {
    let docker = engine.client();
    match docker.inspect_volume(name).await {
        Ok(_) => return Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => return Err(e).with_context(|| format!("could not inspect volume `{name}`")),
    }
    // Creating a volume that appeared meanwhile (a concurrent build) returns the existing one.
    let request = VolumeCreateRequest {
        name: Some(name.to_string()),
        driver: Some("local".to_string()),
        labels: Some(labels),
        ..Default::default()
    };
    docker
        .create_volume(request)
        .await
        .with_context(|| format!("could not create volume `{name}`"))?;
    Ok(())
}

/// Whether the engine has the volume `name`.
pub async fn volume_exists(engine: &Engine, name: &str) -> Result<bool> {
    match engine.client().inspect_volume(name).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("could not inspect volume `{name}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_labels_are_not_run_scoped() {
        let l = cache_labels("backend", "project-0123");
        assert_eq!(l[LABEL_CACHE_SCOPE], "project-0123");
        assert_eq!(l[super::super::LABEL_ROOT], "1");
        assert_eq!(l[super::super::LABEL_STAGE], STAGE_CACHE);
        assert_eq!(l[LABEL_RECIPE], "backend");
        assert!(!l.contains_key(super::super::LABEL_RUN));
        assert!(!l.contains_key(super::super::LABEL_PID));
    }
}
