//! Starting the smoke deployment through the Docker API: a labelled internal network
//! `builder-smoke-<run>` (no route out) plus an edge bridge for HAProxy's published ports,
//! every service's containers (restart policy, environment with
//! `{service}` references expanded to DNS names, a network alias per service) and HAProxy with
//! the generated config, published on 127.0.0.1 only. Everything is created through the run's
//! [`Session`], whose guard tracks it; waiting for health reads HAProxy's stats (minimal images have no shell to
//! probe from inside).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::haproxy::{self, ServerAddr, ServerStat, STATS_PORT, TRAFFIC_PORT};
use super::stack::{expand, Service, Stack};
use crate::docker::{ContainerSpec, Engine, RestartPolicy, Session};
use crate::report::Reporter;

/// Stage label of everything a smoke run creates.
pub(crate) const STAGE: &str = "smoke";
/// Label naming the service a container belongs to.
pub(crate) const LABEL_SERVICE: &str = "io.builder.service";

/// Which release a container runs: the candidate (just packaged) or the baseline (the
/// release an environment holds). Without a baseline everything is the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Variant {
    Candidate,
    Baseline,
}

impl Variant {
    pub(crate) const ALL: [Variant; 2] = [Variant::Candidate, Variant::Baseline];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Variant::Candidate => "candidate",
            Variant::Baseline => "baseline",
        }
    }

    fn is_candidate(&self) -> bool {
        *self == Variant::Candidate
    }

    /// The HAProxy server name (also the hostname) of replica `i` of `service`:
    /// `frontend-3` for the candidate, `base.frontend-3` for the baseline (unique across
    /// the deployment, which the stats lookups by server name rely on).
    pub(crate) fn server(self, service: &str, i: u32) -> String {
        match self {
            Variant::Candidate => format!("{service}-{i}"),
            Variant::Baseline => format!("base.{service}-{i}"),
        }
    }

    /// The container name of replica `i` of `service`: `builder-smoke-<run>-frontend-3`, or
    /// `builder-base-<run>-frontend-3` (one character shorter, so within the 63 bytes of a
    /// DNS label, see [`super::stack`]'s `MAX_SERVICE_NAME`).
    pub(crate) fn container(self, run_id: &str, service: &str, i: u32) -> String {
        match self {
            Variant::Candidate => format!("builder-smoke-{run_id}-{service}-{i}"),
            Variant::Baseline => format!("builder-base-{run_id}-{service}-{i}"),
        }
    }

    /// The variant's own internal network: the candidate's is the run's network, the
    /// baseline's sits beside it, so the same aliases (`{backend}`) name each variant's own
    /// service and a baseline frontend cannot reach a candidate backend.
    pub(crate) fn network(self, run_id: &str) -> String {
        match self {
            Variant::Candidate => network_name(run_id),
            Variant::Baseline => format!("{}-base", network_name(run_id)),
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One service container.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Member {
    #[serde(skip_serializing_if = "Variant::is_candidate")]
    pub variant: Variant,
    pub service: String,
    /// HAProxy server name and short name, e.g. `frontend-3`.
    pub server: String,
    /// Container name (also its DNS name on the network).
    pub container: String,
    pub id: String,
}

/// What is running.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Deployment {
    pub network: String,
    pub members: Vec<Member>,
    pub load_balancer: String,
    /// Host port on 127.0.0.1 that reaches HAProxy's traffic port.
    pub port: u16,
    /// Host port on 127.0.0.1 of HAProxy's stats page.
    pub stats_port: u16,
    /// Canary runs: the baseline's network and the host port of HAProxy's runtime API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_port: Option<u16>,
}

impl Deployment {
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub(crate) fn stats_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}{}",
            self.stats_port,
            haproxy::STATS_PATH
        )
    }
}

/// The name of the network of run `run_id`.
pub(crate) fn network_name(run_id: &str) -> String {
    format!("builder-smoke-{run_id}")
}

/// The labels a container of `service` carries besides the session's.
fn service_label(service: &str) -> HashMap<String, String> {
    HashMap::from([(LABEL_SERVICE.to_string(), service.to_string())])
}

/// The environment of `variant`'s replicas of `svc`: `env` with the variant's own
/// additions (`--candidate-env`, `--baseline-env`), `{service}` references expanded to the
/// service's alias on the variant's network.
pub(super) fn variant_env(svc: &Service, variant: Variant) -> Vec<String> {
    let extra = match variant {
        Variant::Candidate => &svc.candidate_env,
        Variant::Baseline => &svc.baseline_env,
    };
    let mut merged = svc.env.clone();
    merged.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged
        .iter()
        .map(|(k, v)| format!("{k}={}", expand(v, |n| n.to_string())))
        .collect()
}

/// The images each variant runs: service name → image id. Without `baseline`, the
/// deployment is a single level as it always was.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Images<'a> {
    pub candidate: &'a HashMap<String, String>,
    pub baseline: Option<&'a HashMap<String, String>>,
    /// The candidate's share of the traffic at start (canary runs), in percent.
    pub candidate_weight: u32,
}

/// Creates the networks and starts every service container of every variant (dependencies
/// first), then HAProxy. `lb_image` is HAProxy's image id.
pub(crate) async fn start(
    session: &Session,
    stack: &Stack,
    images: Images<'_>,
    lb_image: &str,
    reporter: &Reporter,
) -> Result<Deployment> {
    let run_id = session.run_id();
    // The services live on internal networks: no route out of them, so whatever a stack
    // file's environment points them at, the load stays on this machine. Only HAProxy is
    // also on an "edge" bridge, through which Docker publishes its ports on 127.0.0.1.
    let network = network_name(run_id);
    let edge = format!("{network}-edge");
    let variants: Vec<(Variant, &HashMap<String, String>)> =
        std::iter::once((Variant::Candidate, images.candidate))
            .chain(images.baseline.map(|b| (Variant::Baseline, b)))
            .collect();
    for (name, internal) in [(&network, true), (&edge, false)] {
        session.create_network(name, internal).await?;
    }
    if images.baseline.is_some() {
        session
            .create_network(&Variant::Baseline.network(run_id), true)
            .await?;
    }

    let mut members = Vec::new();
    let mut servers = Vec::new();
    for (variant, variant_images) in &variants {
        let variant = *variant;
        for svc in &stack.services {
            let image = variant_images.get(&svc.name).with_context(|| {
                format!("no {variant} image resolved for service `{}`", svc.name)
            })?;
            let env = variant_env(svc, variant);
            for i in 1..=svc.replicas {
                let server = variant.server(&svc.name, i);
                let container = variant.container(run_id, &svc.name, i);
                let spec = ContainerSpec {
                    name: container.clone(),
                    what: format!("the container `{container}`"),
                    image: image.clone(),
                    env: Some(env.clone()),
                    labels: service_label(&svc.name),
                    hostname: Some(server.replace('.', "-")),
                    // `docker kill` with the stop signal (or SIGKILL) counts as a manual stop
                    // that the restart policy ignores; other crashes are restarted.
                    stop_signal: Some("SIGTERM".into()),
                    stop_timeout: Some(5),
                    network_mode: Some(variant.network(run_id)),
                    restart: Some(RestartPolicy {
                        name: stack.restart.policy.clone(),
                        max_retries: (stack.restart.policy == "on-failure")
                            .then_some(stack.restart.max_retries as i64),
                    }),
                    // On the variant's own network the service's name is its own alias.
                    aliases: vec![svc.name.clone(), format!("{}-{i}", svc.name)],
                    cpus: svc.cpus,
                    memory: svc.memory,
                    ..Default::default()
                };
                let id = session.create_and_start(&spec).await?;
                reporter.verbose(format!("started {container} ({})", short(&id)));
                servers.push(ServerAddr {
                    service: svc.name.clone(),
                    server: server.clone(),
                    host: container.clone(),
                    port: svc.port,
                    variant,
                });
                members.push(Member {
                    variant,
                    service: svc.name.clone(),
                    server,
                    container,
                    id,
                });
            }
        }
    }

    let canary = images.baseline.is_some();
    let config = if canary {
        haproxy::canary_config(stack, &servers, images.candidate_weight)
    } else {
        haproxy::config(stack, &servers)
    };
    let lb = LoadBalancer {
        image: lb_image,
        config: &config,
        edge: &edge,
    };
    let baseline_network = canary.then(|| Variant::Baseline.network(run_id));
    start_load_balancer(session, lb, network, members, baseline_network).await
}

/// What HAProxy's container runs: its image (an image id), its configuration and the edge
/// bridge it is published through.
pub(super) struct LoadBalancer<'a> {
    pub image: &'a str,
    pub config: &'a str,
    pub edge: &'a str,
}

/// Starts HAProxy as a container, the one edge of both targets: on the `edge` bridge,
/// through which Docker publishes its ports on 127.0.0.1 only, and connected to `network`
/// (a bridge on containers, the attachable overlay on Swarm) and `baseline_network` (canary
/// runs, which also publish the runtime API), where it reaches the services. Returns the
/// deployment of `members` behind it.
pub(super) async fn start_load_balancer(
    session: &Session,
    lb: LoadBalancer<'_>,
    network: String,
    members: Vec<Member>,
    baseline_network: Option<String>,
) -> Result<Deployment> {
    let engine = session.engine();
    let api = baseline_network.is_some();
    let lb_name = format!("builder-smoke-{}-lb", session.run_id());
    let mut publish = vec![TRAFFIC_PORT, STATS_PORT];
    if api {
        publish.push(haproxy::API_PORT);
    }
    let spec = ContainerSpec {
        name: lb_name.clone(),
        what: format!("the load balancer container `{lb_name}`"),
        image: lb.image.to_string(),
        entrypoint: Some(vec!["/usr/sbin/haproxy".into()]),
        cmd: Some(vec![
            "-db".into(),
            "-f".into(),
            "/etc/haproxy/haproxy.cfg".into(),
        ]),
        labels: service_label("load-balancer"),
        // Unprivileged: every port is above 1024, the configuration is world-readable and
        // nothing is written (`-db`: foreground, no pid file); the package's own `haproxy`
        // user, no capability, no way to gain one.
        user: Some("haproxy".into()),
        network_mode: Some(lb.edge.to_string()),
        publish,
        cap_drop_all: true,
        no_new_privileges: true,
        ..Default::default()
    };
    let lb_id = session.create(&spec).await?;
    for net in std::iter::once(&network).chain(&baseline_network) {
        session
            .connect_network(net, &lb_id)
            .await?
            .with_context(|| format!("could not connect `{lb_name}` to the network `{net}`"))?;
    }
    upload_config(engine, &lb_id, lb.config).await?;
    session
        .start(&lb_id, &format!("the load balancer `{lb_name}`"))
        .await?;
    let info = engine
        .inspect_container(&lb_id)
        .await
        .with_context(|| format!("could not inspect the load balancer `{lb_name}`"))?;
    let host_port = |p: u16| -> Result<u16> {
        info.host_port(p).with_context(|| {
            format!("the load balancer `{lb_name}` has no published port for {p}/tcp; did it exit? see `docker logs {lb_name}`")
        })
    };
    Ok(Deployment {
        port: host_port(TRAFFIC_PORT)?,
        stats_port: host_port(STATS_PORT)?,
        api_port: if api {
            Some(host_port(haproxy::API_PORT)?)
        } else {
            None
        },
        network,
        members,
        load_balancer: lb_name,
        baseline_network,
    })
}

/// The first 12 hex digits of a container id, as `docker ps` shows it (container ids are
/// bare hex, no `sha256:`).
pub(crate) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Writes `haproxy.cfg` into `/etc/haproxy/` of the (created, not started) container.
async fn upload_config(engine: &Engine, id: &str, config: &str) -> Result<()> {
    let dir = tempfile::tempdir().context("could not create a temp directory")?;
    let tar_path = dir.path().join("haproxy-cfg.tar");
    {
        let file = std::fs::File::create(&tar_path)
            .with_context(|| format!("could not create `{}`", tar_path.display()))?;
        let mut tar = tar::Builder::new(file);
        let mut h = tar::Header::new_gnu();
        h.set_size(config.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, "haproxy.cfg", config.as_bytes())
            .and_then(|_| tar.finish())
            .with_context(|| format!("could not write `{}`", tar_path.display()))?;
    }
    crate::docker::upload_tar_file(engine, id, &tar_path, "/etc/haproxy").await
}

/// Waits until HAProxy reports every server UP with a completed, passing health check (a
/// server is `UP` before its first check, check status `INI`) within the stack's
/// `load_balancer.ready_timeout`; on timeout the error names the servers that are not, the
/// last check of each with a hint, the stack fields to look at and the end of their logs.
pub(crate) async fn wait_ready(session: &Session, dep: &Deployment, stack: &Stack) -> Result<()> {
    let engine = session.engine();
    let not_ready = wait_all_up(session, dep, stack).await?;
    let Err(NotReady { mut message, stats }) = not_ready else {
        return Ok(());
    };
    if let Some(stats) = stats {
        let stuck = dep
            .members
            .iter()
            .filter(|m| !stats.iter().any(|s| s.server == m.server && s.is_ready()));
        for m in stuck.take(3) {
            let logs = engine.logs_tail(&m.id, 10).await;
            message.push_str(&format!("\n--- last log lines of {}:\n{logs}", m.container));
        }
    }
    Err(crate::error::failed(message))
}

/// Why a deployment did not become ready: the message (which servers are not up and why, or
/// that the stats page never answered) and HAProxy's last stats, if it answered.
pub(super) struct NotReady {
    pub message: String,
    pub stats: Option<Vec<ServerStat>>,
}

/// The one readiness wait of both targets: polls HAProxy's stats every 500 ms until every
/// member's server slot is UP with a passing check, within `load_balancer.ready_timeout`.
/// HAProxy's container exiting ends the wait with its last log lines; Ctrl-C ends it too.
/// On timeout: `Ok(Err(NotReady))`, for the target to add what it knows (container logs,
/// Swarm task states).
pub(super) async fn wait_all_up(
    session: &Session,
    dep: &Deployment,
    stack: &Stack,
) -> Result<Result<(), NotReady>> {
    let engine = session.engine();
    let timeout = stack.load_balancer.ready_timeout;
    let start = Instant::now();
    let mut last_err = String::new();
    let mut last_stats: Option<Vec<ServerStat>> = None;
    while start.elapsed() < timeout {
        session.check_cancel()?;
        match haproxy::fetch_stats(dep.stats_port).await {
            Ok(stats) => {
                let ready = !stats.is_empty()
                    && dep
                        .members
                        .iter()
                        .all(|m| stats.iter().any(|s| s.server == m.server && s.is_ready()));
                if ready {
                    return Ok(Ok(()));
                }
                last_stats = Some(stats);
            }
            Err(e) => last_err = format!("{e:#}"),
        }
        if !engine.is_running(&dep.load_balancer).await {
            let logs = engine.logs_tail(&dep.load_balancer, 20).await;
            return Err(crate::error::failed(format!(
                "the load balancer `{}` exited; its last log lines:\n{logs}",
                dep.load_balancer
            )));
        }
        session
            .cancellable(tokio::time::sleep(Duration::from_millis(500)))
            .await?;
    }
    let message = match &last_stats {
        Some(stats) => not_ready_message(stack, &dep.members, stats, timeout),
        None => format!(
            "the deployment did not become healthy within {:.0}s; the HAProxy stats page did not answer: {last_err}",
            timeout.as_secs_f64()
        ),
    };
    Ok(Err(NotReady {
        message,
        stats: last_stats,
    }))
}

/// Most servers listed one per line in [`not_ready_message`].
const MAX_LISTED: usize = 10;

/// The "did not become healthy" message: which servers are not up (with HAProxy's status and
/// last check), a hint per server, and the stack fields of their services to check.
pub(super) fn not_ready_message(
    stack: &Stack,
    members: &[Member],
    stats: &[ServerStat],
    timeout: Duration,
) -> String {
    let stuck: Vec<(&Member, Option<&ServerStat>)> = members
        .iter()
        .map(|m| (m, stats.iter().find(|s| s.server == m.server)))
        .filter(|(_, s)| !s.is_some_and(|s| s.is_ready()))
        .collect();
    let summary: Vec<String> = stuck
        .iter()
        .map(|(m, s)| match s {
            Some(s) => format!(
                "{} ({}, last check {})",
                m.server,
                s.status,
                or_dash(check_name(&s.check_status))
            ),
            None => format!("{} (not in the stats)", m.server),
        })
        .collect();
    let mut msg = format!(
        "the deployment did not become healthy within {:.0}s; not up: {}",
        timeout.as_secs_f64(),
        summary.join(", ")
    );
    msg.push_str("\nlast HAProxy check per server:");
    for (m, s) in stuck.iter().take(MAX_LISTED) {
        let hint = match s {
            Some(s) => check_hint(s),
            None => "not in HAProxy's stats (see the load balancer's log)".to_string(),
        };
        msg.push_str(&format!("\n  {}: {hint}", m.server));
    }
    if stuck.len() > MAX_LISTED {
        msg.push_str(&format!("\n  ... and {} more", stuck.len() - MAX_LISTED));
    }
    let mut services: Vec<&str> = stuck.iter().map(|(m, _)| m.service.as_str()).collect();
    services.dedup();
    for name in services {
        if let Some(svc) = stack.services.iter().find(|s| s.name == name) {
            msg.push_str(&format!(
                "\ncheck `services.{name}.health` (now {:?}: `GET` must answer 200) and `services.{name}.port` (now {}) in `{}`",
                svc.health,
                svc.port,
                stack.file.display()
            ));
        }
    }
    msg
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// The check status without the `* ` HAProxy puts in front while a check is running.
fn check_name(check_status: &str) -> &str {
    check_status.trim_start_matches('*').trim()
}

/// HAProxy's last check of a server that is not ready, with what it most likely means in
/// terms of the stack file (`port`, `health`), e.g. `L7STS 404 (is `health` right?)`.
fn check_hint(s: &ServerStat) -> String {
    let status = check_name(&s.check_status);
    let said = |default: &str| {
        let t = s.last_check.trim();
        if t.is_empty() {
            default.to_string()
        } else {
            t.to_lowercase()
        }
    };
    if s.status.starts_with("MAINT") {
        return format!(
            "{} (HAProxy cannot resolve its name: is the container running? see its log)",
            s.status
        );
    }
    match status {
        "" | "INI" => {
            "not checked yet (did the container start? is `load_balancer.check_interval` long?)"
                .to_string()
        }
        "L4CON" => format!("L4CON ({}: is `port` right?)", said("connection refused")),
        "L4TOUT" => "L4TOUT (connection timed out: is `port` right?)".to_string(),
        "L7STS" => {
            let code = s.check_code.trim();
            let why = match code.chars().next() {
                Some('4') | Some('3') => "is `health` right?",
                Some('5') => "the service fails its own health check: see its log",
                _ => "`health` must answer 200",
            };
            format!("L7STS {} ({why})", or_dash(code))
        }
        "L7TOUT" => {
            "L7TOUT (no answer to `GET health` within `load_balancer.timeout_check`)".to_string()
        }
        "L7RSP" => "L7RSP (not an HTTP response: is `port` the service's HTTP port?)".to_string(),
        other if s.last_check.trim().is_empty() => other.to_string(),
        other => format!("{other} ({})", said("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn stack() -> Stack {
        let text = r#"
[services.backend]
image = "backend"
port = 8081
health = "/nosuch"

[services.frontend]
image = "frontend"
replicas = 2

[load_balancer]
kind = "haproxy"
service = "frontend"

[load]
rate = 50
duration = "30s"
paths = [{ path = "/", weight = 1 }]

[thresholds]
min_rate_ratio = 0.98
min_success = 0.98
max_p99_ms = 1000
"#;
        let images = [
            ("backend".to_string(), true),
            ("frontend".to_string(), true),
        ]
        .into_iter()
        .collect();
        super::super::stack::parse(Path::new("recipes/stack.toml"), text, &images).unwrap()
    }

    fn member(service: &str, server: &str) -> Member {
        Member {
            variant: Variant::Candidate,
            service: service.into(),
            server: server.into(),
            container: format!("builder-smoke-x-{server}"),
            id: server.into(),
        }
    }

    fn stat(server: &str, status: &str, check: &str, code: &str, last: &str) -> ServerStat {
        ServerStat {
            backend: String::new(),
            server: server.into(),
            status: status.into(),
            check_status: check.into(),
            check_fail: 3,
            check_code: code.into(),
            last_check: last.into(),
        }
    }

    #[test]
    fn not_healthy_names_the_check_and_the_stack_fields() {
        let members = [
            member("backend", "backend-1"),
            member("frontend", "frontend-1"),
            member("frontend", "frontend-2"),
        ];
        let stats = [
            stat("backend-1", "DOWN", "L4CON", "", "Connection refused"),
            stat("frontend-1", "UP", "L7OK", "200", "OK"),
            stat("frontend-2", "DOWN", "* L7STS", "404", "Not Found"),
        ];
        let msg = not_ready_message(&stack(), &members, &stats, Duration::from_secs(12));
        assert!(
            msg.starts_with(
                "the deployment did not become healthy within 12s; not up: \
                 backend-1 (DOWN, last check L4CON), frontend-2 (DOWN, last check L7STS)\n"
            ),
            "{msg}"
        );
        assert!(
            msg.contains("\n  backend-1: L4CON (connection refused: is `port` right?)"),
            "{msg}"
        );
        assert!(
            msg.contains("\n  frontend-2: L7STS 404 (is `health` right?)"),
            "{msg}"
        );
        assert!(!msg.contains("frontend-1"), "{msg}");
        assert!(
            msg.contains(
                "check `services.backend.health` (now \"/nosuch\": `GET` must answer 200) and \
                 `services.backend.port` (now 8081) in `recipes/stack.toml`"
            ),
            "{msg}"
        );
        assert!(msg.contains("`services.frontend.health`"), "{msg}");
    }

    #[test]
    fn check_hints() {
        let hint = |check: &str, code: &str| check_hint(&stat("s", "DOWN", check, code, ""));
        assert_eq!(
            hint("L4CON", ""),
            "L4CON (connection refused: is `port` right?)"
        );
        assert!(hint("L4TOUT", "").contains("`port`"));
        assert!(hint("L7STS", "503").contains("see its log"));
        assert!(hint("L7TOUT", "").contains("timeout_check"));
        assert!(hint("INI", "").starts_with("not checked yet"));
        assert!(
            check_hint(&stat("s", "MAINT (resolution)", "L4CON", "", ""))
                .contains("cannot resolve")
        );
    }
}
