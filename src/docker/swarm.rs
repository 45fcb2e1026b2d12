//! Docker Swarm through the engine API: the engine's swarm state, a single-node swarm builder
//! initialises (and leaves again, through the session's guard) when the engine is in none,
//! attachable overlay networks and replicated services, and the task list of a service.
//! Everything created carries the session's labels and is tracked by its [`super::Guard`].
//!
//! Endpoints are `dnsrr` (this kernel has no IPVS, so no virtual IP and no routing mesh) and
//! services publish no port: Swarm's port configuration has no host address, so a published
//! port listens on every address of the host (Docker's API reference, `EndpointPortConfig`;
//! moby/moby#26696, #32299). What must be reached from the host is a plain container on an
//! attachable overlay network, published on 127.0.0.1.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, Limit, LocalNodeState, NetworkAttachmentConfig,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, SwarmInitRequest, TaskSpec,
    TaskSpecContainerSpec, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{
    InspectNetworkOptions, LeaveSwarmOptionsBuilder, ListContainersOptionsBuilder,
    ListServicesOptionsBuilder, ListTasksOptionsBuilder, RemoveContainerOptionsBuilder,
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

/// A stack's restart policy as Swarm's restart condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SwarmRestart {
    /// `no`: a task that ends stays ended (condition `none`).
    Never,
    /// `on-failure`: a task that exits non-zero is replaced, at most this many times.
    OnFailure(i64),
    /// `always`, `unless-stopped`: every task that ends is replaced (condition `any`).
    #[default]
    Always,
}

impl SwarmRestart {
    /// The policy named in stack.toml (`no`, `on-failure`, `always`, `unless-stopped`).
    pub fn from_policy(policy: &str, max_retries: u32) -> SwarmRestart {
        match policy {
            "no" => SwarmRestart::Never,
            "on-failure" => SwarmRestart::OnFailure(i64::from(max_retries)),
            _ => SwarmRestart::Always,
        }
    }
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
    /// When Swarm starts a replacement for a task that ended.
    pub restart: SwarmRestart,
    pub cap_drop_all: bool,
    pub stop_grace: Option<Duration>,
    /// CPU limit of each task, in cores (`Resources.Limits.NanoCPUs`).
    pub cpus: Option<f64>,
    /// Memory limit of each task, in bytes (`Resources.Limits.MemoryBytes`).
    pub memory: Option<u64>,
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
            }
        })
        .collect())
}

/// Waits (at most `timeout`) until no task of `services` (names) is listed, then removes the
/// task containers still there (the agent removes them after their tasks are gone).
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
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A task leaves the task list before the agent has removed its container: remove what
    // is still there, so nothing of the run outlives it.
    for s in services {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("com.docker.swarm.service.name={s}")],
        )]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let Ok(containers) = docker.list_containers(Some(opts)).await else {
            continue;
        };
        let rm = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        for id in containers.into_iter().filter_map(|c| c.id) {
            // Gone meanwhile (404) or being removed by the agent (409): either way it goes.
            let _ = docker.remove_container(&id, Some(rm.clone())).await;
        }
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

/// The bridge Swarm creates for its tasks' traffic out of the overlay networks.
const GWBRIDGE: &str = "docker_gwbridge";

async fn gwbridge_exists(docker: &Docker) -> Result<bool> {
    match docker
        .inspect_network(GWBRIDGE, None::<InspectNetworkOptions>)
        .await
    {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(e).context("could not look up the network `docker_gwbridge`"),
    }
}

/// Removes `docker_gwbridge` after the swarm builder initialised is left, as `docker network
/// rm docker_gwbridge` would: only when no container is attached to it (a user's container
/// on it keeps it, and it is theirs then). Swarm's ingress sandbox leaves it a moment after
/// the swarm is left, so a refusal is retried for up to 10 s (moby/moby#37018: "network
/// docker_gwbridge has active endpoints" while `gateway_ingress-sbox` is attached).
pub(super) async fn remove_gwbridge(docker: &Docker) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let net = match docker
            .inspect_network(GWBRIDGE, None::<InspectNetworkOptions>)
            .await
        {
            Ok(n) => n,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(()),
            Err(e) => return Err(format!("the network `{GWBRIDGE}` ({e})")),
        };
        let users = net.containers.map_or(0, |c| c.len());
        if users > 0 && start.elapsed() >= Duration::from_secs(10) {
            // Someone else's containers: theirs to keep.
            return Ok(());
        }
        if users == 0 {
            match docker.remove_network(GWBRIDGE).await {
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(()),
                Err(e) if start.elapsed() >= Duration::from_secs(10) => {
                    return Err(format!(
                        "the network `{GWBRIDGE}` Swarm created ({e}; remove it with `docker network rm {GWBRIDGE}`)"
                    ))
                }
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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
                let gwbridge = gwbridge_exists(self.engine().client()).await?;
                self.guard().track_swarm_init(gwbridge);
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
                capability_drop: def.cap_drop_all.then(|| vec!["ALL".to_string()]),
                stop_signal: Some("SIGTERM".into()),
                stop_grace_period: def
                    .stop_grace
                    .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(match def.restart {
                    SwarmRestart::Never => TaskSpecRestartPolicyConditionEnum::NONE,
                    SwarmRestart::OnFailure(_) => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
                    SwarmRestart::Always => TaskSpecRestartPolicyConditionEnum::ANY,
                }),
                delay: Some(0),
                // Swarm reads 0 (or none) as "no limit", as Docker's `on-failure:0` does.
                max_attempts: match def.restart {
                    SwarmRestart::OnFailure(n) => Some(n),
                    _ => None,
                },
                ..Default::default()
            }),
            networks: Some(networks),
            resources: resources(def),
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
            ports: None,
        }),
        ..Default::default()
    }
}

/// The task's resource limits. Limits only, no reservations: a reservation makes the
/// scheduler hold a task back ("no suitable node (insufficient resources on 1 node)") until a
/// node has that much unreserved, so eight frontends reserving 0.5 CPU each would never all
/// start on a two-core smoke machine, while a limit caps each task as `docker run --cpus`
/// caps a container, the same on both targets.
fn resources(def: &ServiceDef) -> Option<TaskSpecResources> {
    if def.cpus.is_none() && def.memory.is_none() {
        return None;
    }
    Some(TaskSpecResources {
        limits: Some(Limit {
            nano_cpus: def.cpus.map(super::nano_cpus),
            memory_bytes: def.memory.map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(restart: SwarmRestart) -> TaskSpecRestartPolicy {
        let def = ServiceDef {
            restart,
            ..Default::default()
        };
        service_spec(&def, HashMap::new())
            .task_template
            .and_then(|t| t.restart_policy)
            .expect("a restart policy")
    }

    #[test]
    fn the_stacks_restart_policy_is_swarms_condition() {
        let no = policy(SwarmRestart::from_policy("no", 3));
        assert_eq!(no.condition, Some(TaskSpecRestartPolicyConditionEnum::NONE));
        let on_failure = policy(SwarmRestart::from_policy("on-failure", 3));
        assert_eq!(
            on_failure.condition,
            Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE)
        );
        assert_eq!(on_failure.max_attempts, Some(3));
        for p in ["always", "unless-stopped"] {
            let any = policy(SwarmRestart::from_policy(p, 3));
            assert_eq!(any.condition, Some(TaskSpecRestartPolicyConditionEnum::ANY));
            assert_eq!(any.max_attempts, None, "{p}");
        }
    }
}
