//! Docker Swarm through the engine API: the engine's swarm state, a single-node swarm builder
//! initialises (and leaves again, through the session's guard) when the engine is in none,
//! overlay networks, configs and replicated services, and the task list of a service.
//! Everything created carries the session's labels and is tracked by its [`super::Guard`].
//!
//! Endpoints are `dnsrr` (this kernel has no IPVS, so no virtual IP and no routing mesh) and
//! ports are published in `host` mode; Swarm's port configuration has no host address, so a
//! published port listens on every address of the host (Docker's API reference,
//! `EndpointPortConfig`), unlike a container's `127.0.0.1` binding.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine as _;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum,
    LocalNodeState, NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, SwarmInitRequest, TaskSpec, TaskSpecContainerSpec,
    TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile1, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{
    LeaveSwarmOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptionsBuilder,
};
use bollard::Docker;

use super::{Engine, Session};

/// The engine's place in a swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmState {
    /// Not in a swarm.
    Inactive,
    /// A manager of an active swarm: services can be created on it.
    Manager,
    /// Anything else (a worker, pending, locked, an error), as the engine words it.
    Other(String),
}

/// How a session came to use the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwarmUse {
    /// The engine was already a swarm manager: used as it is, left in place.
    Existing,
    /// builder initialised a single-node swarm; the session's cleanup leaves it.
    Initialised,
}

/// A replicated service.
#[derive(Debug, Clone, Default)]
pub struct ServiceDef {
    pub name: String,
    /// What the service is, for messages ("the service `...`").
    pub what: String,
    /// `registry/name@sha256:...`.
    pub image: String,
    pub replicas: u32,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// (network, aliases on it).
    pub networks: Vec<(String, Vec<String>)>,
    /// Swarm restarts a task that exits non-zero, at most this many times (0: no limit).
    pub max_attempts: Option<i64>,
    /// Container ports (tcp) published in `host` mode on a port the engine picks.
    pub publish: Vec<u16>,
    /// (config id, config name, file path in the container), mode 0444.
    pub configs: Vec<(String, String, String)>,
    pub cap_drop_all: bool,
    pub stop_grace: Option<Duration>,
}

/// One task of a service, as builder reads it.
#[derive(Debug, Clone, Default)]
pub struct TaskInfo {
    pub id: String,
    pub slot: i64,
    /// Swarm's state word (`running`, `failed`, `shutdown`, ...).
    pub state: String,
    pub desired: String,
    pub message: String,
    pub err: String,
    pub exit_code: Option<i64>,
    pub container_id: Option<String>,
    /// RFC 3339 time of the last state change.
    pub timestamp: String,
    /// Host ports the task publishes: container port → host port.
    pub ports: HashMap<u16, u16>,
}

impl TaskInfo {
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }
    /// The task ended for good (Swarm replaces it with a new one if the service wants it).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.state.as_str(),
            "complete" | "shutdown" | "failed" | "rejected" | "orphaned" | "remove"
        )
    }
}

impl Engine {
    /// The engine's swarm state (`docker info`'s `Swarm`).
    pub async fn swarm_state(&self) -> Result<SwarmState> {
        let info = self
            .client()
            .info()
            .await
            .context("could not read the engine's swarm state (`docker info`)")?;
        let swarm = info.swarm.unwrap_or_default();
        Ok(match swarm.local_node_state {
            None | Some(LocalNodeState::INACTIVE) | Some(LocalNodeState::EMPTY) => {
                SwarmState::Inactive
            }
            Some(LocalNodeState::ACTIVE) if swarm.control_available == Some(true) => {
                SwarmState::Manager
            }
            Some(LocalNodeState::ACTIVE) => SwarmState::Other("a worker node".into()),
            Some(s) => SwarmState::Other(format!(
                "{s}{}",
                swarm.error.map(|e| format!(": {e}")).unwrap_or_default()
            )),
        })
    }

    /// The tasks of the service `service` (id or name), every state.
    pub async fn service_tasks(&self, service: &str) -> Result<Vec<TaskInfo>> {
        tasks_of(self.client(), service).await
    }

    /// The first log lines of a task's container (empty when it has none).
    pub async fn task_logs_tail(&self, task: &TaskInfo, lines: usize) -> String {
        match &task.container_id {
            Some(id) => self.logs_tail(id, lines).await,
            None => String::new(),
        }
    }
}

async fn tasks_of(docker: &Docker, service: &str) -> Result<Vec<TaskInfo>> {
    let filters = HashMap::from([("service".to_string(), vec![service.to_string()])]);
    let tasks = docker
        .list_tasks(Some(
            ListTasksOptionsBuilder::default().filters(&filters).build(),
        ))
        .await
        .with_context(|| format!("could not list the tasks of the service `{service}`"))?;
    Ok(tasks
        .into_iter()
        .map(|t| {
            let status = t.status.unwrap_or_default();
            let container = status.container_status.clone().unwrap_or_default();
            let ports = status
                .port_status
                .and_then(|p| p.ports)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| {
                    Some((
                        u16::try_from(p.target_port?).ok()?,
                        u16::try_from(p.published_port?).ok()?,
                    ))
                })
                .collect();
            TaskInfo {
                id: t.id.unwrap_or_default(),
                slot: t.slot.unwrap_or(0),
                state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                desired: t.desired_state.map(|s| s.to_string()).unwrap_or_default(),
                message: status.message.unwrap_or_default(),
                err: status.err.unwrap_or_default(),
                exit_code: container.exit_code,
                container_id: container.container_id.filter(|c| !c.is_empty()),
                timestamp: status.timestamp.map(|t| t.to_string()).unwrap_or_default(),
                ports,
            }
        })
        .collect())
}

/// Waits (at most `timeout`) until no task of `services` has a container left.
pub(super) async fn wait_tasks_gone(docker: &Docker, services: &[String], timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let mut left = false;
        for s in services {
            let filters = HashMap::from([("service".to_string(), vec![s.clone()])]);
            let opts = ListTasksOptionsBuilder::default().filters(&filters).build();
            if let Ok(tasks) = docker.list_tasks(Some(opts)).await {
                left |= !tasks.is_empty();
            }
        }
        if !left {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Leaves the swarm (forced: a single-node swarm's only manager cannot leave otherwise).
pub(super) async fn leave(docker: &Docker) -> Result<(), bollard::errors::Error> {
    docker
        .leave_swarm(Some(
            LeaveSwarmOptionsBuilder::default().force(true).build(),
        ))
        .await
}

/// Ids of every service labelled `io.builder=1`, with their labels (for `gc`).
pub(super) async fn labelled_services(
    docker: &Docker,
) -> Result<Vec<(String, HashMap<String, String>)>> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{}=1", super::LABEL_ROOT)],
    )]);
    let services = docker
        .list_services(Some(
            ListServicesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await?;
    Ok(services
        .into_iter()
        .filter_map(|s| {
            let labels = s.spec.and_then(|sp| sp.labels).unwrap_or_default();
            Some((s.id?, labels))
        })
        .collect())
}

pub(super) async fn remove_service(docker: &Docker, id: &str) -> Result<()> {
    docker
        .delete_service(id)
        .await
        .with_context(|| format!("could not remove the service `{id}`"))
}

impl Session {
    /// Makes sure the engine is a swarm manager: an engine in no swarm gets a single-node
    /// swarm advertised on 127.0.0.1 that the session's cleanup leaves again; a manager is
    /// used as it is. A worker (or a swarm in trouble) is an environment error.
    pub async fn ensure_swarm(&self) -> Result<SwarmUse> {
        match self.engine().swarm_state().await? {
            SwarmState::Manager => Ok(SwarmUse::Existing),
            SwarmState::Inactive => {
                // Tracked before the call: an init that succeeds after a timeout is left too.
                self.guard().track_swarm_init();
                self.engine()
                    .client()
                    .init_swarm(SwarmInitRequest {
                        listen_addr: Some("127.0.0.1:2377".into()),
                        advertise_addr: Some("127.0.0.1".into()),
                        ..Default::default()
                    })
                    .await
                    .context("could not initialise a single-node swarm (`docker swarm init --advertise-addr 127.0.0.1`)")?;
                self.check_cancel()?;
                Ok(SwarmUse::Initialised)
            }
            SwarmState::Other(s) => Err(crate::error::environment(format!(
                "the Docker engine is in a swarm but not as a manager ({s}); run the smoke test against a manager (DOCKER_HOST) or leave the swarm with `docker swarm leave`"
            ))),
        }
    }

    /// Creates a labelled, attachable overlay network (`internal`: no route out).
    pub async fn create_overlay_network(&self, name: &str, internal: bool) -> Result<()> {
        self.guard().track_network(name);
        self.engine()
            .client()
            .create_network(bollard::models::NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("overlay".into()),
                attachable: Some(true),
                internal: Some(internal),
                labels: Some(self.labels()),
                ..Default::default()
            })
            .await
            .with_context(|| format!("could not create the overlay network `{name}`"))?;
        self.check_cancel()
    }

    /// Creates a labelled swarm config holding `data`; returns its id.
    pub async fn create_config(&self, name: &str, data: &[u8]) -> Result<String> {
        let created = self
            .engine()
            .client()
            .create_config(bollard::models::ConfigSpec {
                name: Some(name.to_string()),
                labels: Some(self.labels()),
                data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
                ..Default::default()
            })
            .await
            .with_context(|| format!("could not create the swarm config `{name}`"))?;
        self.guard().track_config(&created.id);
        self.check_cancel()?;
        Ok(created.id)
    }

    /// Creates a replicated service from `def` (labelled with the session's labels and
    /// `def.labels`, on the service and its containers); returns its id.
    pub async fn create_service(&self, def: &ServiceDef) -> Result<String> {
        let mut labels = self.labels();
        labels.extend(def.labels.clone());
        let spec = service_spec(def, labels);
        self.guard().track_service(&def.name);
        let created = self
            .engine()
            .client()
            .create_service(spec, None)
            .await
            .with_context(|| format!("could not create {}", def.what))?;
        self.check_cancel()?;
        Ok(created.id.unwrap_or_else(|| def.name.clone()))
    }
}

fn service_spec(def: &ServiceDef, labels: HashMap<String, String>) -> ServiceSpec {
    let networks: Vec<NetworkAttachmentConfig> = def
        .networks
        .iter()
        .map(|(n, aliases)| NetworkAttachmentConfig {
            target: Some(n.clone()),
            aliases: (!aliases.is_empty()).then(|| aliases.clone()),
            ..Default::default()
        })
        .collect();
    let configs: Vec<TaskSpecContainerSpecConfigs> = def
        .configs
        .iter()
        .map(|(id, name, path)| TaskSpecContainerSpecConfigs {
            file: Some(TaskSpecContainerSpecFile1 {
                name: Some(path.clone()),
                uid: Some("0".into()),
                gid: Some("0".into()),
                mode: Some(0o444),
            }),
            config_id: Some(id.clone()),
            config_name: Some(name.clone()),
            ..Default::default()
        })
        .collect();
    let ports: Vec<EndpointPortConfig> = def
        .publish
        .iter()
        .map(|p| EndpointPortConfig {
            target_port: Some(i64::from(*p)),
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            protocol: Some(bollard::models::EndpointPortConfigProtocolEnum::TCP),
            ..Default::default()
        })
        .collect();
    ServiceSpec {
        name: Some(def.name.clone()),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(def.image.clone()),
                labels: Some(labels),
                command: def.command.clone(),
                args: def.args.clone(),
                hostname: def.hostname.clone(),
                env: Some(def.env.clone()),
                user: def.user.clone(),
                configs: (!configs.is_empty()).then_some(configs),
                capability_drop: def.cap_drop_all.then(|| vec!["ALL".to_string()]),
                stop_signal: Some("SIGTERM".into()),
                stop_grace_period: def
                    .stop_grace
                    .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
                delay: Some(0),
                max_attempts: def.max_attempts,
                ..Default::default()
            }),
            networks: Some(networks),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::from(def.replicas)),
            }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: (!ports.is_empty()).then_some(ports),
        }),
        ..Default::default()
    }
}
