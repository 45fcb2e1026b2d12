//! The smoke stack on Docker Swarm (`--target swarm`, `target = "swarm"` in stack.toml).
//!
//! - Swarm: an engine in no swarm gets a single-node swarm (advertised on 127.0.0.1) that the
//!   run's cleanup leaves again on every path; a manager's swarm is used and left as it is.
//! - Images reach the swarm as in production: the packaged image tars are pushed to the
//!   registry (`--registry` / `registry` in stack.toml) with the promotion's push code (the
//!   same manifest bytes, so the same digest) and services run `REGISTRY/name@sha256:...`.
//! - Services: one per stack service (replicas, the stack's restart policy as Swarm's restart
//!   condition: `no` none, `on-failure` with `restart.max_retries`, `always`/`unless-stopped`
//!   any; `cpus`/`memory` as resource limits) on an internal, attachable
//!   overlay network where the service's name is a network alias; endpoints are `dnsrr` (no
//!   IPVS here). HAProxy is not a service: a service's published port listens on every host
//!   address (moby/moby#26696), so HAProxy is the containers target's own container
//!   ([`super::deploy::start_load_balancer`]) on an edge bridge published on 127.0.0.1,
//!   attached to the overlay; its backends are `server-template`s resolving the tasks
//!   through Docker's DNS.
//! - Canary: the baseline's images are pushed from the environment's OCI layout and run as
//!   `builder-base-<run>-<service>` services on the baseline's own overlay network; HAProxy
//!   joins it too and runs the canary's two-level config, each version's slots templated
//!   from its service's name ([`haproxy::Servers::Templates`]).
//! - Health: HAProxy's checks, as on containers; builder's monitor reads each service's task
//!   list once a second and records every task that ended (Swarm starts a replacement) as a
//!   restart `by: swarm`. builder restarts nothing itself on Swarm.
//!
//! Everything is labelled and tracked by the run's session: services, HAProxy's container
//! and the networks are removed (and the swarm left, if builder made it) on success, failure and
//! Ctrl-C; `builder gc` removes labelled services a crashed run left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::artifacts::UnderTest;
use super::canary::BaselineImage;
use super::deploy::{
    network_name, variant_env, Deployment, Images, Member, NotReady, Variant, LABEL_SERVICE,
};
use super::haproxy;
use super::monitor::{ContainerSummary, Restart};
use super::stack::Stack;
use crate::docker::{Engine, ServiceDef, Session, SwarmRestart, SwarmUse, TaskInfo};
use crate::project::Paths;
use crate::repo::images::ImageEntry;
use crate::report::Reporter;

/// The name of service `service` of run `run_id` (also the container name prefix).
pub(crate) fn service_name(run_id: &str, service: &str) -> String {
    format!("builder-smoke-{run_id}-{service}")
}

fn parse_registry(registry: &str) -> Result<crate::promote::registry::Registry> {
    crate::promote::registry::Registry::parse(registry).with_context(|| {
        format!("bad registry `{registry}` (--registry or `registry` in the stack file)")
    })
}

/// Pushes each service's packaged image to `registry` and returns service → `host/name@digest`.
pub(crate) async fn push_images(
    paths: &Paths,
    under: &UnderTest,
    registry: &str,
    reporter: &Reporter,
) -> Result<HashMap<String, String>> {
    let reg = parse_registry(registry)?;
    let blobs = tempfile::tempdir().context("could not create a temp directory")?;
    let mut pushed: HashMap<String, String> = HashMap::new();
    let mut out = HashMap::new();
    for (service, a) in &under.images {
        if let Some(r) = pushed.get(&a.name) {
            out.insert(service.clone(), r.clone());
            continue;
        }
        let tar = paths.dist.join(&a.path);
        let entry = crate::repo::images::read_image_tar(&tar, &a.name, &a.version, None)?;
        crate::repo::images::import(
            blobs.path(),
            &crate::repo::images::ImageArtifact {
                entry: entry.clone(),
                source: crate::repo::images::ImageSource::Tar(tar.clone()),
            },
        )?;
        let p = reg.push(blobs.path(), &a.name, &entry).await?;
        let reference = format!("{}/{}@{}", reg.host(), a.name, p.digest);
        reporter.status(
            "Pushed",
            format!("{} ({} blobs sent)", reference, p.blobs_uploaded),
        );
        pushed.insert(a.name.clone(), reference.clone());
        out.insert(service.clone(), reference);
    }
    Ok(out)
}

/// The swarm service of `service` in `variant`: `builder-smoke-<run>-frontend`, or
/// `builder-base-<run>-frontend` for a canary run's baseline.
pub(crate) fn variant_service_name(variant: Variant, run_id: &str, service: &str) -> String {
    match variant {
        Variant::Candidate => service_name(run_id, service),
        Variant::Baseline => format!("builder-base-{run_id}-{service}"),
    }
}

/// Pushes the baseline's images from environment `env`'s OCI layout (the repository the
/// promotion wrote, verified as on containers) to `registry`; returns service →
/// `host/name@digest`, the digest the environment holds.
pub(crate) async fn push_baseline(
    paths: &Paths,
    env: &str,
    found: &[(BaselineImage, ImageEntry)],
    registry: &str,
    reporter: &Reporter,
) -> Result<HashMap<String, String>> {
    let reg = parse_registry(registry)?;
    let layout = super::canary::baseline::verified_layout(paths, env, found)?;
    let mut out = HashMap::new();
    for (b, entry) in found {
        let p = reg.push(&layout, &entry.name, entry).await?;
        let reference = format!("{}/{}@{}", reg.host(), entry.name, p.digest);
        reporter.status(
            "Pushed",
            format!(
                "baseline {reference} from environment `{env}` ({} blobs sent)",
                p.blobs_uploaded
            ),
        );
        out.insert(b.service.clone(), reference);
    }
    Ok(out)
}

/// Sets the swarm up, creates the services of every variant (each on its own overlay
/// network, where the service names are aliases) and starts HAProxy's container in front of
/// them: the single-level config, or with a baseline the canary's two-level one, each
/// variant's servers resolved from its own swarm service's name.
pub(crate) async fn start(
    session: &Session,
    stack: &Stack,
    images: Images<'_>,
    lb_image: &str,
    reporter: &Reporter,
) -> Result<Deployment> {
    let run_id = session.run_id();
    match session.ensure_swarm().await? {
        SwarmUse::Initialised => reporter.status(
            "Swarm",
            "initialised a single-node swarm (advertised on 127.0.0.1); builder leaves it at the end",
        ),
        SwarmUse::Existing => reporter.status(
            "Swarm",
            "the engine is a swarm manager: using its swarm and leaving it as it is",
        ),
    }
    let network = network_name(run_id);
    let edge = format!("{network}-edge");
    let variants: Vec<(Variant, &HashMap<String, String>)> =
        std::iter::once((Variant::Candidate, images.candidate))
            .chain(images.baseline.map(|b| (Variant::Baseline, b)))
            .collect();
    for (v, _) in &variants {
        session
            .create_overlay_network(&v.network(run_id), true)
            .await?;
    }
    // HAProxy's edge is a plain bridge on this engine, as on containers: a Swarm service's
    // published port has no host address and listens on every address of the host.
    session.create_network(&edge, false).await?;

    let restart = SwarmRestart::from_policy(&stack.restart.policy, stack.restart.max_retries);
    let mut members = Vec::new();
    for (variant, variant_images) in &variants {
        let variant = *variant;
        for svc in &stack.services {
            let image = variant_images
                .get(&svc.name)
                .with_context(|| format!("no {variant} image pushed for service `{}`", svc.name))?;
            let name = variant_service_name(variant, run_id, &svc.name);
            session
                .create_service(&ServiceDef {
                    name: name.clone(),
                    what: format!("the swarm service `{name}`"),
                    image: image.clone(),
                    replicas: svc.replicas,
                    env: variant_env(svc, variant),
                    labels: HashMap::from([(LABEL_SERVICE.to_string(), svc.name.clone())]),
                    networks: vec![(variant.network(run_id), vec![svc.name.clone()])],
                    restart,
                    stop_grace: Some(Duration::from_secs(5)),
                    cpus: svc.cpus,
                    memory: svc.memory,
                    ..Default::default()
                })
                .await?;
            reporter.verbose(format!("created service {name} ({image})"));
            for i in 1..=svc.replicas {
                members.push(Member {
                    variant,
                    service: svc.name.clone(),
                    server: variant.server(&svc.name, i),
                    container: format!("{name}.{i}"),
                    id: name.clone(),
                });
            }
        }
    }

    let config = match images.baseline {
        None => haproxy::swarm_config(stack, |s| s.to_string()),
        Some(_) => {
            let dns = |v: Variant, s: &str| variant_service_name(v, run_id, s);
            haproxy::canary_config_of(
                stack,
                haproxy::Servers::Templates(&dns),
                images.candidate_weight,
            )
        }
    };
    let lb = super::deploy::LoadBalancer {
        image: lb_image,
        config: &config,
        edge: &edge,
    };
    let baseline_network = images.baseline.map(|_| Variant::Baseline.network(run_id));
    super::deploy::start_load_balancer(session, lb, network, members, baseline_network).await
}

/// Waits until HAProxy reports every server slot UP with a passing check, within the stack's
/// `load_balancer.ready_timeout` (the containers target's wait); on timeout the error says
/// which are not (as on containers) and the state of each service's tasks.
pub(crate) async fn wait_ready(session: &Session, dep: &Deployment, stack: &Stack) -> Result<()> {
    let Err(NotReady { mut message, .. }) = super::deploy::wait_all_up(session, dep, stack).await?
    else {
        return Ok(());
    };
    let mut services: Vec<&str> = dep.members.iter().map(|m| m.id.as_str()).collect();
    services.dedup();
    services.push(&dep.load_balancer);
    for s in services {
        if let Ok(tasks) = session.engine().service_tasks(s).await {
            let states: Vec<String> = tasks
                .iter()
                .map(|t| format!("{}.{} {} {}", s, t.slot, t.state, t.err))
                .collect();
            message.push_str(&format!("\ntasks of {s}: {}", states.join(", ")));
        }
    }
    Err(crate::error::failed(message))
}

/// builder's monitor on Swarm: the task list of every service, once a second.
pub(crate) struct TaskMonitor {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
    state: Arc<Mutex<Seen>>,
    engine: Engine,
    members: Vec<Member>,
}

#[derive(Default)]
struct Seen {
    restarts: Vec<Restart>,
    /// Ended tasks already recorded.
    ended: std::collections::HashSet<String>,
    t0: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// (swarm service, stack service, variant) of each service of a deployment.
fn services(members: &[Member]) -> Vec<(String, String, Variant)> {
    let mut out: Vec<(String, String, Variant)> = Vec::new();
    for m in members {
        if !out.iter().any(|(id, _, _)| id == &m.id) {
            out.push((m.id.clone(), m.service.clone(), m.variant));
        }
    }
    out
}

impl TaskMonitor {
    pub(crate) fn start(engine: &Engine, dep: &Deployment, reporter: &Reporter) -> TaskMonitor {
        let stop = CancellationToken::new();
        let state = Arc::new(Mutex::new(Seen::default()));
        let handle = tokio::spawn(poll(
            engine.clone(),
            services(&dep.members),
            state.clone(),
            reporter.clone(),
            stop.clone(),
        ));
        TaskMonitor {
            stop,
            handle,
            state,
            engine: engine.clone(),
            members: dep.members.clone(),
        }
    }

    pub(crate) fn mark_load_start(&self) {
        lock(&self.state).t0 = Some(Instant::now());
    }

    /// Stops watching; every ended task as a restart, and each task slot's final state.
    pub(crate) async fn finish(mut self) -> (Vec<Restart>, Vec<ContainerSummary>) {
        self.stop.cancel();
        let _ = (&mut self.handle).await;
        let all = services(&self.members);
        record(&self.engine, &all, &self.state, None).await;
        let restarts = lock(&self.state).restarts.clone();
        let mut summary = Vec::new();
        for (id, service, _) in &all {
            let tasks = self.engine.service_tasks(id).await.unwrap_or_default();
            let mut slots: Vec<i64> = tasks.iter().map(|t| t.slot).collect();
            slots.sort_unstable();
            slots.dedup();
            for slot in slots {
                let of_slot: Vec<&TaskInfo> = tasks.iter().filter(|t| t.slot == slot).collect();
                let current = of_slot
                    .iter()
                    .find(|t| !t.is_terminal())
                    .or_else(|| of_slot.iter().max_by(|a, b| a.timestamp.cmp(&b.timestamp)));
                summary.push(ContainerSummary {
                    container: format!("{id}.{slot}"),
                    service: service.clone(),
                    docker_restarts: of_slot.iter().filter(|t| t.is_terminal()).count() as i64,
                    builder_restarts: 0,
                    status: current.map_or_else(|| "unknown".to_string(), |t| t.state.clone()),
                });
            }
        }
        (restarts, summary)
    }
}

impl Drop for TaskMonitor {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn poll(
    engine: Engine,
    services: Vec<(String, String, Variant)>,
    state: Arc<Mutex<Seen>>,
    reporter: Reporter,
    stop: CancellationToken,
) {
    // Bounded by the run's own time budget: the run stops this loop through `stop`.
    while !stop.is_cancelled() {
        record(&engine, &services, &state, Some(&reporter)).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Records every task that ended since the last look.
async fn record(
    engine: &Engine,
    services: &[(String, String, Variant)],
    state: &Mutex<Seen>,
    reporter: Option<&Reporter>,
) {
    for (id, service, variant) in services {
        let Ok(tasks) = engine.service_tasks(id).await else {
            continue;
        };
        for t in tasks.iter().filter(|t| t.is_terminal()) {
            let mut s = lock(state);
            if !s.ended.insert(t.id.clone()) {
                continue;
            }
            let t_s = s.t0.map_or(0.0, |t0| t0.elapsed().as_secs_f64());
            let reason = format!(
                "task {} {}{}{}; its replacement is up to the restart policy",
                t.id.get(..12).unwrap_or(&t.id),
                t.state,
                if t.err.is_empty() {
                    String::new()
                } else {
                    format!(": {}", t.err)
                },
                t.exit_code
                    .map(|c| format!(" (exit code {c})"))
                    .unwrap_or_default()
            );
            if let Some(r) = reporter {
                r.warn(format!("{service}-{}: {reason}", t.slot));
            }
            s.restarts.push(Restart {
                container: format!("{id}.{}", t.slot),
                server: variant.server(service, u32::try_from(t.slot).unwrap_or(0)),
                service: service.clone(),
                by: "swarm".into(),
                at: if t.timestamp.is_empty() {
                    crate::timefmt::rfc3339(SystemTime::now())
                } else {
                    t.timestamp.clone()
                },
                t_s,
                reason,
            });
        }
    }
}
