//! The handles stages hold. [`Engine`] is a connection to the engine with the operations that
//! need no cleanup (images, container state, logs, events, restarts). [`Session`] is one
//! stage's scope on it: the run id and stage its objects are labelled with, the cleanup
//! [`Guard`] that removes them and the cancel token every wait stops on. Stages get
//! builder-owned types ([`ContainerSpec`], [`ImageInfo`], [`ContainerInfo`], ...), never
//! bollard's.

use std::collections::HashMap;

use anyhow::{Context, Result};
use bollard::models::ContainerStateStatusEnum;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, EventsOptions, ListImagesOptionsBuilder, LogsOptionsBuilder,
    RestartContainerOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use super::container::ContainerSpec;
use super::{interrupted, Guard};

/// A connection to the Docker engine (cheap to clone). Made by [`super::connect`].
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    endpoint: std::sync::Arc<super::Endpoint>,
}

/// What builder reads from an engine's `/info`.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    pub cpus: u32,
    /// Bytes.
    pub memory: u64,
    /// In Go's words (`amd64`), as images state theirs.
    pub arch: String,
}

/// What builder reads from an image.
#[derive(Debug, Clone, Default)]
pub struct ImageInfo {
    /// `sha256:` of the config (empty if the engine did not say).
    pub id: String,
    pub size: Option<u64>,
    /// The image's `User` (empty when unset).
    pub user: Option<String>,
    /// The image's `Architecture` (`amd64`, ...), if it says.
    pub architecture: Option<String>,
}

/// What builder reads from a container.
#[derive(Debug, Clone, Default)]
pub struct ContainerInfo {
    /// Docker's `RestartCount` (0 if the engine did not say).
    pub restart_count: i64,
    pub state: Option<ContainerState>,
    /// `"<port>/tcp"` → host ports it is published on.
    pub ports: HashMap<String, Vec<u16>>,
}

/// A container's state.
#[derive(Debug, Clone, Default)]
pub struct ContainerState {
    /// Docker's status word (`running`, `exited`, ...), if any.
    pub status: Option<String>,
    pub running: Option<bool>,
    pub restarting: Option<bool>,
    /// The status is `exited` or `dead`.
    pub stopped: bool,
    pub exit_code: Option<i64>,
    pub started_at: Option<String>,
}

impl ContainerInfo {
    /// The first host port `port/tcp` is published on.
    pub fn host_port(&self, port: u16) -> Option<u16> {
        self.ports
            .get(&format!("{port}/tcp"))
            .and_then(|p| p.first().copied())
    }
}

/// One container event (`die`, `start`, ...).
#[derive(Debug, Clone)]
pub struct ContainerEvent {
    pub id: String,
    pub action: Option<String>,
    pub attributes: HashMap<String, String>,
}

impl Engine {
    pub(super) fn new(docker: Docker, endpoint: super::Endpoint) -> Engine {
        Engine {
            docker,
            endpoint: std::sync::Arc::new(endpoint),
        }
    }

    /// Where this engine is.
    pub fn endpoint(&self) -> &super::Endpoint {
        &self.endpoint
    }

    /// CPUs, memory and architecture (`/info`).
    pub async fn info(&self) -> Result<EngineInfo> {
        let info = self
            .docker
            .info()
            .await
            .with_context(|| format!("could not read /info of `{}`", self.endpoint.host))?;
        Ok(EngineInfo {
            cpus: info.ncpu.unwrap_or(1).max(1) as u32,
            memory: info.mem_total.unwrap_or(0).max(0) as u64,
            arch: super::pool::go_arch(info.architecture.as_deref().unwrap_or("")),
        })
    }

    /// Whether the engine answers a ping within `within`.
    pub async fn answers(&self, within: std::time::Duration) -> bool {
        matches!(
            tokio::time::timeout(within, self.docker.ping()).await,
            Ok(Ok(_))
        )
    }

    /// Awaits `fut` unless this engine answers no ping for [`super::SILENCE`] first: then
    /// the error names the engine and `fut` is dropped (its requests abandoned).
    pub async fn unless_silent<T>(&self, fut: impl std::future::Future<Output = T>) -> Result<T> {
        super::silence::unless_silent(&self.docker, &self.endpoint, super::SILENCE, fut).await
    }

    /// Returns, as the error naming the engine, once this engine has answered no ping for
    /// [`super::SILENCE`]; never while it answers.
    pub async fn until_silent(&self) -> anyhow::Error {
        super::silence::until_silent(&self.docker, super::SILENCE).await;
        super::silence::silent_error(&self.endpoint, super::SILENCE)
    }

    pub(super) fn client(&self) -> &Docker {
        &self.docker
    }

    /// A stage's scope on this engine: objects it creates are labelled with `run_id` and
    /// `stage` and removed by its guard; its waits stop when `cancel` is cancelled.
    pub fn session(&self, run_id: &str, stage: &str, cancel: &CancellationToken) -> Session {
        Session {
            engine: self.clone(),
            guard: Guard::new(self.clone()),
            run_id: run_id.to_string(),
            stage: stage.to_string(),
            cancel: cancel.clone(),
        }
    }

    /// The image named `name` (tag, id or digest), or `None` if the engine does not have it.
    pub async fn inspect_image(&self, name: &str) -> Result<Option<ImageInfo>> {
        Ok(super::images::inspect(&self.docker, name)
            .await?
            .map(|i| ImageInfo {
                id: i.id.unwrap_or_default(),
                size: i.size.map(|s| s as u64),
                user: i.config.and_then(|c| c.user),
                architecture: i.architecture,
            }))
    }

    /// Pulls `reference` from its registry, passing each progress status to `status`.
    /// Errors carry the engine's message only; the caller says what the pull was for.
    pub async fn pull_image(&self, reference: &str, mut status: impl FnMut(String)) -> Result<()> {
        let opts = CreateImageOptionsBuilder::default()
            .from_image(reference)
            .build();
        let mut stream = self.docker.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            if let Some(s) = item?.status {
                status(s);
            }
        }
        Ok(())
    }

    /// The `repo:tag` names of the images whose reference matches `reference` (a repository
    /// name or pattern), image by image.
    pub async fn image_tags(&self, reference: &str) -> Result<Vec<String>> {
        let filters = HashMap::from([("reference".to_string(), vec![reference.to_string()])]);
        let images = self
            .docker
            .list_images(Some(
                ListImagesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await?;
        Ok(images.into_iter().flat_map(|i| i.repo_tags).collect())
    }

    /// Creates a container from `spec` as it is (no session labels, not tracked): for tests
    /// and tools that manage the container themselves. Stages use [`Session::create`].
    pub async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let created = super::container::create(&self.docker, spec, spec.labels.clone())
            .await
            .with_context(|| format!("could not create {}", spec.what))?;
        Ok(created)
    }

    /// The container `id` (or name).
    pub async fn inspect_container(&self, id: &str) -> Result<ContainerInfo> {
        let info = self.docker.inspect_container(id, None).await?;
        let state = info.state.map(|s| ContainerState {
            stopped: matches!(
                s.status,
                Some(ContainerStateStatusEnum::EXITED) | Some(ContainerStateStatusEnum::DEAD)
            ),
            status: s.status.map(|s| s.to_string()),
            running: s.running,
            restarting: s.restarting,
            exit_code: s.exit_code,
            started_at: s.started_at,
        });
        let ports = info
            .network_settings
            .and_then(|n| n.ports)
            .unwrap_or_default()
            .into_iter()
            .map(|(port, bindings)| {
                let hosts = bindings
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|b| b.host_port.as_deref()?.parse().ok())
                    .collect();
                (port, hosts)
            })
            .collect();
        Ok(ContainerInfo {
            restart_count: info.restart_count.unwrap_or(0),
            state,
            ports,
        })
    }

    /// Whether the container `id` (or name) is running; `false` when it cannot be inspected.
    pub async fn is_running(&self, id: &str) -> bool {
        self.inspect_container(id)
            .await
            .ok()
            .and_then(|i| i.state?.running)
            .unwrap_or(false)
    }

    /// Starts an existing (created or exited) container.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        Ok(self.docker.start_container(id, None).await?)
    }

    /// Restarts a container, giving it `stop_timeout_s` seconds to stop.
    pub async fn restart_container(&self, id: &str, stop_timeout_s: i32) -> Result<()> {
        let opts = RestartContainerOptionsBuilder::default()
            .t(stop_timeout_s)
            .build();
        Ok(self.docker.restart_container(id, Some(opts)).await?)
    }

    /// The last `n` log lines of a container (stdout and stderr), for error messages: at most
    /// 5 s of reading, `(no output)` when there is none.
    pub async fn logs_tail(&self, id: &str, n: usize) -> String {
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&n.to_string())
            .build();
        let mut stream = self.docker.logs(id, Some(opts));
        let mut out = String::new();
        let read = async {
            while let Some(Ok(chunk)) = stream.next().await {
                out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
        if out.trim().is_empty() {
            "(no output)".to_string()
        } else {
            out.trim_end().to_string()
        }
    }

    /// The events `actions` (e.g. `die`, `start`) of the containers of run `run_id`, as they
    /// happen. Events without a container id are left out.
    pub fn container_events(
        &self,
        run_id: &str,
        actions: &[&str],
    ) -> impl Stream<Item = Result<ContainerEvent>> + Send + 'static {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![format!("{}={run_id}", super::LABEL_RUN)],
            ),
            (
                "event".to_string(),
                actions.iter().map(|a| a.to_string()).collect(),
            ),
        ]);
        self.docker
            .events(Some(EventsOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .filter_map(|ev| async move {
                match ev {
                    Err(e) => Some(Err(e.into())),
                    Ok(ev) => {
                        let actor = ev.actor?;
                        Some(Ok(ContainerEvent {
                            id: actor.id?,
                            action: ev.action,
                            attributes: actor.attributes.unwrap_or_default(),
                        }))
                    }
                }
            })
    }

    /// Uploads a tar stream into the directory `dest` of a container.
    pub async fn upload_tar_stream(
        &self,
        container: &str,
        dest: &str,
        tar: impl Stream<Item = Bytes> + Send + 'static,
    ) -> Result<()> {
        let opts = bollard::query_parameters::UploadToContainerOptionsBuilder::default()
            .path(dest)
            .build();
        Ok(self
            .docker
            .upload_to_container(container, Some(opts), bollard::body_stream(tar))
            .await?)
    }
}

/// One stage's scope on the engine: labels (run id, stage), the cleanup guard and the cancel
/// token. Every container and network it creates is tracked by its guard before the request
/// goes out, so cleanup removes it on every path.
pub struct Session {
    engine: Engine,
    guard: Guard,
    run_id: String,
    stage: String,
    cancel: CancellationToken,
}

impl Session {
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub(super) fn guard(&self) -> &Guard {
        &self.guard
    }

    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The labels of everything this session creates.
    pub fn labels(&self) -> HashMap<String, String> {
        super::labels(&self.run_id, &self.stage)
    }

    /// Awaits `fut` unless the session is cancelled first ([`interrupted`] then).
    pub async fn cancellable<T>(&self, fut: impl std::future::Future<Output = T>) -> Result<T> {
        cancellable(&self.cancel, fut).await
    }

    /// Fails with [`interrupted`] if the session was cancelled.
    pub fn check_cancel(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            Err(interrupted())
        } else {
            Ok(())
        }
    }

    /// Creates (does not start) the container `spec.name` with the session's labels plus
    /// `spec.labels`; returns its id.
    ///
    /// The container is tracked by its name before the request (if Ctrl-C comes while the
    /// engine makes it, cleanup still removes it: a name that never came to be is a 404,
    /// which cleanup counts as removed); a container without a name by its id after. The
    /// request itself is not abandoned halfway, so the engine cannot finish creating after
    /// cleanup ran; it is quick (the image is local). Cancelled meanwhile: [`interrupted`].
    pub async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let mut labels = self.labels();
        labels.extend(spec.labels.clone());
        // By name when it has one (the name is what a user can read in a list of
        // leftovers), else by id once the engine gave one.
        if !spec.name.is_empty() {
            self.guard.track_container(&spec.name);
        }
        let id = super::container::create(self.engine.client(), spec, labels)
            .await
            .with_context(|| format!("could not create {}", spec.what))?;
        if spec.name.is_empty() {
            self.guard.track_container(&id);
        }
        self.check_cancel()?;
        Ok(id)
    }

    /// Starts the created container `id`; `what` names it in the error.
    pub async fn start(&self, id: &str, what: &str) -> Result<()> {
        self.cancellable(self.engine.client().start_container(id, None))
            .await?
            .with_context(|| format!("could not start {what}"))
    }

    /// [`Session::create`], then [`Session::start`]; returns the container's id.
    pub async fn create_and_start(&self, spec: &ContainerSpec) -> Result<String> {
        let id = self.create(spec).await?;
        self.start(&id, &spec.what).await?;
        Ok(id)
    }

    /// Creates the bridge network `name` (`internal`: no route out) with the session's
    /// labels. Tracked by name before the request, which is not abandoned on Ctrl-C (an
    /// abandoned create may still complete in the engine after cleanup ran).
    pub async fn create_network(&self, name: &str, internal: bool) -> Result<()> {
        self.guard.track_network(name);
        self.engine
            .client()
            .create_network(bollard::models::NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                internal: Some(internal),
                labels: Some(self.labels()),
                ..Default::default()
            })
            .await
            .with_context(|| format!("could not create the network `{name}`"))?;
        self.check_cancel()
    }

    /// Connects the container `id` to `network`. The error is the engine's; the caller says
    /// which container it was.
    pub async fn connect_network(&self, network: &str, id: &str) -> Result<Result<()>> {
        let request = bollard::models::NetworkConnectRequest {
            container: id.to_string(),
            endpoint_config: None,
        };
        Ok(self
            .cancellable(self.engine.client().connect_network(network, request))
            .await?
            .map_err(anyhow::Error::from))
    }

    /// Removes everything the session created. Reports every failure, not only the first.
    pub async fn cleanup(&self) -> Result<()> {
        self.guard.cleanup().await
    }

    /// Leaves everything the session created in place: its guard never runs (its drop
    /// would remove it all).
    pub fn keep(self) {
        std::mem::forget(self.guard);
    }

    /// The stage, for messages.
    pub(super) fn stage(&self) -> &str {
        &self.stage
    }
}

/// Awaits `fut` unless `cancel` is cancelled first (checked first when both are ready).
pub async fn cancellable<T>(
    cancel: &CancellationToken,
    fut: impl std::future::Future<Output = T>,
) -> Result<T> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(interrupted()),
        v = fut => Ok(v),
    }
}
