//! `builder gc`: removes what crashed runs left behind: every container, network and volume
//! labelled `io.builder=1` whose creating process is gone, and dangling builder images
//! (half-made imports). Objects of a run whose process is still alive are left alone unless
//! asked, so `gc` never pulls the rug from under a running build or smoke test.
//!
//! Persistent cache volumes (stage `build-cache`, see `volumes.rs`) are kept on purpose
//! between runs: `gc` removes them only when [`GcOptions::cache`] asks for it, and never one
//! that a container still uses.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    RemoveVolumeOptions, RemoveVolumeOptionsBuilder,
};
use bollard::Docker;

use super::Engine;
use serde::Serialize;

use super::volumes::{LABEL_RECIPE, STAGE_CACHE};
use super::{
    IMPORT_COMMENT_PREFIX, LABEL_IMAGE_PID, LABEL_IMAGE_PID_SCOPE, LABEL_PID, LABEL_PID_SCOPE,
    LABEL_ROOT, LABEL_RUN, LABEL_STAGE,
};
use crate::fslock::pid_alive;
use crate::report::Reporter;

/// What to collect.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Only objects of this run.
    pub run: Option<String>,
    /// Also objects whose creating process is still running.
    pub include_live: bool,
    /// Only list what would be removed.
    pub dry_run: bool,
    /// Which persistent cache volumes to remove too (none by default).
    pub cache: CacheVolumes,
    /// Only cache volumes of this cache scope (one project's, see
    /// `crate::build::cache_scope`); `None`: every project's.
    pub cache_scope: Option<String>,
}

/// Which persistent cache volumes (`io.builder.stage=build-cache`) `gc` removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CacheVolumes {
    /// Leave them: they outlive runs on purpose.
    #[default]
    Keep,
    /// All of them.
    All,
    /// Only those labelled `io.builder.recipe=<name>`.
    Recipe(String),
}

/// What `gc` removed (or would remove with `dry_run`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Swarm services (only when the engine is a swarm manager).
    pub services: Vec<String>,
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    pub images: Vec<String>,
    /// Objects left alone because their run is still alive.
    pub skipped_live: usize,
    /// Objects that could not be removed, with the reason.
    pub failed: Vec<String>,
}

impl GcReport {
    pub fn removed(&self) -> usize {
        self.services.len()
            + self.containers.len()
            + self.networks.len()
            + self.volumes.len()
            + self.images.len()
    }
}

/// Removes every builder-labelled container, network and volume left by runs that are no
/// longer alive, and dangling builder images.
pub async fn gc(engine: &Engine, reporter: &Reporter) -> Result<GcReport> {
    gc_with(engine, &GcOptions::default(), reporter).await
}

/// Whether the process that created an object may still be running: its pid is alive
/// here, or it was created in another pid scope (another host or container sharing the
/// engine), where this process cannot tell, so the object is left to its own side or to
/// `gc --all`.
fn owner_alive(labels: Option<&HashMap<String, String>>, scope: &str) -> bool {
    owner_alive_by(labels, LABEL_PID, LABEL_PID_SCOPE, scope)
}

/// [`owner_alive`] with the label keys that hold the pid and its scope (base images use
/// their own keys, which containers made from them inherit but gc never reads for them).
fn owner_alive_by(
    labels: Option<&HashMap<String, String>>,
    pid_key: &str,
    scope_key: &str,
    scope: &str,
) -> bool {
    let Some(labels) = labels else { return false };
    if labels
        .get(scope_key)
        .is_some_and(|s| !s.is_empty() && s != scope)
    {
        return true;
    }
    labels
        .get(pid_key)
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(pid_alive)
}

/// The label filter for containers, networks and volumes of builder runs. Requiring the run
/// label, which builder sets on each object it creates and never on an image, keeps `gc` off
/// containers that merely inherited `io.builder=1` from an image (a user's `docker run` of a
/// base image made by an older builder).
fn filters(opts: &GcOptions) -> HashMap<String, Vec<String>> {
    let mut labels = vec![format!("{LABEL_ROOT}=1")];
    match &opts.run {
        Some(run) => labels.push(format!("{LABEL_RUN}={run}")),
        None => labels.push(LABEL_RUN.to_string()),
    }
    HashMap::from([("label".to_string(), labels)])
}

/// [`gc`] with options.
pub(crate) async fn gc_with(
    engine: &Engine,
    opts: &GcOptions,
    reporter: &Reporter,
) -> Result<GcReport> {
    let docker = engine.client();
    let mut report = GcReport::default();
    let keep = |labels: Option<&HashMap<String, String>>, report: &mut GcReport| {
        let live = !opts.include_live && owner_alive(labels, &super::pid_scope());
        if live {
            report.skipped_live += 1;
        }
        live
    };

    // Services first: their tasks' containers and networks go with them. An engine that is no
    // swarm manager has none to list (the API answers 503).
    if matches!(engine.swarm_state().await, Ok(super::SwarmState::Manager)) {
        let services = super::swarm::labelled_services(docker)
            .await
            .context("could not list swarm services")?;
        let mut removed = Vec::new();
        for (id, labels) in services {
            if opts
                .run
                .as_ref()
                .is_some_and(|r| labels.get(LABEL_RUN) != Some(r))
                || !labels.contains_key(LABEL_RUN)
                || keep(Some(&labels), &mut report)
            {
                continue;
            }
            let name = id.chars().take(12).collect::<String>();
            if !opts.dry_run {
                if let Err(e) = super::swarm::remove_service(docker, &id).await {
                    report.failed.push(format!("{e:#}"));
                    continue;
                }
                removed.push(id);
            }
            reporter.verbose(format!("removed service {name}"));
            report.services.push(name);
        }
        super::swarm::wait_tasks_gone(docker, &removed, Duration::from_secs(30)).await;
    }

    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters(opts))
                .build(),
        ))
        .await
        .context("could not list containers")?;
    let rm = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    for c in containers {
        let Some(id) = c.id else { continue };
        if keep(c.labels.as_ref(), &mut report) {
            continue;
        }
        let name = c
            .names
            .and_then(|n| n.first().map(|s| s.trim_start_matches('/').to_string()))
            .unwrap_or_else(|| id.chars().take(12).collect());
        if !opts.dry_run {
            if let Err(e) = docker.remove_container(&id, Some(rm.clone())).await {
                report.failed.push(format!("container `{name}`: {e}"));
                continue;
            }
        }
        reporter.verbose(format!("removed container {name}"));
        report.containers.push(name);
    }

    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filters(opts))
                .build(),
        ))
        .await
        .context("could not list networks")?;
    for n in networks {
        let Some(id) = n.id else { continue };
        if keep(n.labels.as_ref(), &mut report) {
            continue;
        }
        let name = n.name.unwrap_or_else(|| id.clone());
        if !opts.dry_run {
            if let Err(e) = docker.remove_network(&id).await {
                report.failed.push(format!("network `{name}`: {e}"));
                continue;
            }
        }
        reporter.verbose(format!("removed network {name}"));
        report.networks.push(name);
    }

    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&filters(opts))
                .build(),
        ))
        .await
        .context("could not list volumes")?;
    for v in volumes.volumes.unwrap_or_default() {
        if v.labels.get(LABEL_STAGE).map(String::as_str) == Some(STAGE_CACHE) {
            continue; // handled below, only when asked
        }
        if keep(Some(&v.labels), &mut report) {
            continue;
        }
        if !opts.dry_run {
            let o = RemoveVolumeOptionsBuilder::default().force(true).build();
            if let Err(e) = docker.remove_volume(&v.name, Some(o)).await {
                report.failed.push(format!("volume `{}`: {e}", v.name));
                continue;
            }
        }
        reporter.verbose(format!("removed volume {}", v.name));
        report.volumes.push(v.name);
    }

    remove_cache_volumes(docker, opts, reporter, &mut report).await?;

    // Half-made base imports: untagged images that carry the importer's pid, a key that
    // container gc never reads (containers inherit image labels). They belong to no run.
    // Images built FROM a base inherit that label too, so each candidate must also carry
    // builder's import message as its comment, which derived images do not inherit.
    if opts.run.is_some() {
        return Ok(report);
    }
    let image_filters = HashMap::from([
        ("label".to_string(), vec![LABEL_IMAGE_PID.to_string()]),
        ("dangling".to_string(), vec!["true".to_string()]),
    ]);
    let images = docker
        .list_images(Some(
            ListImagesOptionsBuilder::default()
                .all(false)
                .filters(&image_filters)
                .build(),
        ))
        .await
        .context("could not list images")?;
    for i in images {
        match super::images::inspect(docker, &i.id).await {
            Ok(Some(info)) if is_builder_import(info.comment.as_deref()) => {}
            Ok(_) => continue, // a user's image derived from a base, or already gone
            Err(e) => {
                report.failed.push(format!("image `{}`: {e:#}", i.id));
                continue;
            }
        }
        let live = owner_alive_by(
            Some(&i.labels),
            LABEL_IMAGE_PID,
            LABEL_IMAGE_PID_SCOPE,
            &super::pid_scope(),
        );
        if !opts.include_live && live {
            report.skipped_live += 1;
            continue;
        }
        if !opts.dry_run {
            let o = RemoveImageOptionsBuilder::default().build();
            if let Err(e) = docker.remove_image(&i.id, Some(o), None).await {
                report.failed.push(format!("image `{}`: {e}", i.id));
                continue;
            }
        }
        reporter.verbose(format!("removed image {}", i.id));
        report.images.push(i.id);
    }
    Ok(report)
}

/// Whether an image's `Comment` is the message builder sets when it imports a base (see
/// [`IMPORT_COMMENT_PREFIX`]); `docker build` and `docker commit` do not copy it.
fn is_builder_import(comment: Option<&str>) -> bool {
    comment.is_some_and(|c| c.starts_with(IMPORT_COMMENT_PREFIX))
}

/// Removes the cache volumes `opts.cache` selects. One still in use belongs to a running
/// build (the containers of dead runs are already gone): it counts as left alone.
async fn remove_cache_volumes(
    docker: &Docker,
    opts: &GcOptions,
    reporter: &Reporter,
    report: &mut GcReport,
) -> Result<()> {
    let mut labels = vec![
        format!("{LABEL_ROOT}=1"),
        format!("{LABEL_STAGE}={STAGE_CACHE}"),
    ];
    match &opts.cache {
        CacheVolumes::Keep => return Ok(()),
        CacheVolumes::All => {}
        CacheVolumes::Recipe(name) => labels.push(format!("{LABEL_RECIPE}={name}")),
    }
    if let Some(scope) = &opts.cache_scope {
        labels.push(format!("{}={scope}", super::LABEL_CACHE_SCOPE));
    }
    let filters = HashMap::from([("label".to_string(), labels)]);
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .context("could not list cache volumes")?;
    for v in volumes.volumes.unwrap_or_default() {
        if !opts.dry_run {
            match docker
                .remove_volume(&v.name, None::<RemoveVolumeOptions>)
                .await
            {
                Ok(()) => {}
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) => {
                    reporter.verbose(format!("cache volume {} is in use; left alone", v.name));
                    report.skipped_live += 1;
                    continue;
                }
                Err(e) => {
                    report.failed.push(format!("volume `{}`: {e}", v.name));
                    continue;
                }
            }
        }
        reporter.verbose(format!("removed cache volume {}", v.name));
        report.volumes.push(v.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_in_another_pid_scope_are_never_judged_by_pid() {
        let dead = u32::MAX.to_string();
        let mine = super::super::pid_scope();
        let with = |pid: &str, scope: &str| {
            HashMap::from([
                (LABEL_PID.to_string(), pid.to_string()),
                (LABEL_PID_SCOPE.to_string(), scope.to_string()),
            ])
        };
        // same scope: the pid decides
        assert!(!owner_alive(Some(&with(&dead, &mine)), &mine));
        assert!(owner_alive(
            Some(&with(&std::process::id().to_string(), &mine)),
            &mine
        ));
        // another host or container sharing the engine: left alone
        assert!(owner_alive(
            Some(&with(&dead, "ci-runner-7/pid:[1]")),
            &mine
        ));
        // objects of older builders carry no scope: judged by pid as before
        let old = HashMap::from([(LABEL_PID.to_string(), dead)]);
        assert!(!owner_alive(Some(&old), &mine));
        assert!(!owner_alive(None, &mine));
    }

    #[test]
    fn only_builder_imports_count_as_half_made_bases() {
        assert!(is_builder_import(Some("builder base go (debootstrap)")));
        // what images built FROM a base carry: its labels, but no (or another) comment
        assert!(!is_builder_import(None));
        assert!(!is_builder_import(Some("")));
        assert!(!is_builder_import(Some("buildkit.dockerfile.v0")));
        assert!(!is_builder_import(Some("my builder base tweak")));
    }
}
