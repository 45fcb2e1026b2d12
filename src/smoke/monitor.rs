//! Watching the deployment while the load runs. Docker restarts containers that exit with an
//! error (restart policy); builder records those restarts from the engine's `die`/`start`
//! events. Docker does not restart a container that stays up but fails its health check, nor
//! one stopped by `docker kill` (a manual stop for the engine): builder polls HAProxy's stats
//! and the containers' state once a second and restarts such containers itself after a grace
//! period, recording why. Every restart ends up in the report. Health-based restarts wait for
//! the load to start: until then `load_balancer.ready_timeout` judges health, and restarting a
//! server that never passed its check would only hide why (its last check becomes `L4CON`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::deploy::{Deployment, Member};
use super::haproxy;
use super::stack::RestartSpec;
use crate::docker::Engine;
use crate::report::Reporter;

/// How long an exited container that Docker is not restarting may stay down.
const EXITED_GRACE: Duration = Duration::from_secs(2);

/// One restart of a service container.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Restart {
    pub container: String,
    pub server: String,
    pub service: String,
    /// `docker` (restart policy) or `builder` (health check failing, or not restarted by Docker).
    pub by: String,
    /// RFC 3339 time.
    pub at: String,
    /// Seconds since the load started (negative: before).
    pub t_s: f64,
    pub reason: String,
}

/// Final state of one container.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct ContainerSummary {
    pub container: String,
    pub service: String,
    /// Docker's RestartCount at the end of the run.
    pub docker_restarts: i64,
    pub builder_restarts: u32,
    pub status: String,
}

#[derive(Default)]
struct Shared {
    restarts: Vec<Restart>,
    /// Containers builder is restarting itself: their next `start` event is ours.
    ours: HashSet<String>,
    /// Last `die` seen per container id: (exit code, time).
    died: HashMap<String, String>,
}

/// The monitor's background tasks. Dropping it (an error, a timeout or Ctrl-C dropped the
/// [`Monitor`] before [`Monitor::finish`]) cancels them and aborts them at once, so the poll
/// loop can neither run forever nor restart containers while the deployment is torn down.
struct Tasks {
    stop: CancellationToken,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Tasks {
    /// Stops the tasks and waits for them to end (they return at the next `select!`).
    async fn stop(&mut self) {
        self.stop.cancel();
        for t in std::mem::take(&mut self.handles) {
            let _ = t.await;
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.stop.cancel();
        for t in &self.handles {
            t.abort();
        }
    }
}

pub(crate) struct Monitor {
    tasks: Tasks,
    shared: Arc<Mutex<Shared>>,
    builder_counts: Arc<Mutex<HashMap<String, u32>>>,
    engine: Engine,
    members: Vec<Member>,
    /// Restarts that happened while no load was running are still reported; offsets are
    /// relative to this instant (the start of the load).
    t0: Arc<Mutex<Instant>>,
    /// The load started: from now on a server failing its health check gets restarted.
    loaded: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn offset(t0: &Mutex<Instant>) -> f64 {
    let t0 = *lock(t0);
    let now = Instant::now();
    if now >= t0 {
        (now - t0).as_secs_f64()
    } else {
        -(t0 - now).as_secs_f64()
    }
}

impl Monitor {
    /// Starts watching `dep` (events and a 1 s poll loop).
    pub(crate) fn start(
        engine: &Engine,
        dep: &Deployment,
        run_id: &str,
        spec: &RestartSpec,
        reporter: &Reporter,
    ) -> Monitor {
        let stop = CancellationToken::new();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let builder_counts = Arc::new(Mutex::new(HashMap::new()));
        let t0 = Arc::new(Mutex::new(Instant::now()));
        let loaded = Arc::new(AtomicBool::new(false));
        let events = tokio::spawn(watch_events(
            engine.clone(),
            dep.members.clone(),
            run_id.to_string(),
            shared.clone(),
            t0.clone(),
            reporter.clone(),
            stop.clone(),
        ));
        let poll = tokio::spawn(poll_loop(
            engine.clone(),
            dep.members.clone(),
            dep.stats_port,
            spec.clone(),
            Watched {
                shared: shared.clone(),
                counts: builder_counts.clone(),
                t0: t0.clone(),
                loaded: loaded.clone(),
            },
            reporter.clone(),
            stop.clone(),
        ));
        Monitor {
            tasks: Tasks {
                stop,
                handles: vec![events, poll],
            },
            shared,
            builder_counts,
            engine: engine.clone(),
            members: dep.members.clone(),
            t0,
            loaded,
        }
    }

    /// Offsets in the report count from now (call it when the load starts).
    pub(crate) fn mark_load_start(&self) {
        *lock(&self.t0) = Instant::now();
        self.loaded.store(true, Ordering::SeqCst);
    }

    /// Stops watching and returns every restart plus each container's final state. Dropping a
    /// `Monitor` without calling this stops its tasks too (without the summary).
    pub(crate) async fn finish(mut self) -> (Vec<Restart>, Vec<ContainerSummary>) {
        // Let the last events arrive (a restart right at the end).
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.tasks.stop().await;
        let mut restarts = lock(&self.shared).restarts.clone();
        let counts = lock(&self.builder_counts).clone();
        let mut summary = Vec::new();
        for m in &self.members {
            let info = self.engine.inspect_container(&m.id).await.ok();
            let docker_restarts = info.as_ref().map_or(0, |i| i.restart_count);
            let status = info
                .and_then(|i| i.state?.status)
                .unwrap_or_else(|| "unknown".to_string());
            // Events can be missed (a reconnect); Docker's own count is authoritative.
            let seen = restarts
                .iter()
                .filter(|r| r.container == m.container && r.by == "docker")
                .count() as i64;
            for _ in seen..docker_restarts {
                restarts.push(Restart {
                    container: m.container.clone(),
                    server: m.server.clone(),
                    service: m.service.clone(),
                    by: "docker".into(),
                    at: crate::timefmt::rfc3339(SystemTime::now()),
                    t_s: offset(&self.t0),
                    reason: "restarted by its restart policy (counted from RestartCount)".into(),
                });
            }
            summary.push(ContainerSummary {
                container: m.container.clone(),
                service: m.service.clone(),
                docker_restarts,
                builder_restarts: counts.get(&m.id).copied().unwrap_or(0),
                status,
            });
        }
        restarts.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        (restarts, summary)
    }
}

async fn watch_events(
    engine: Engine,
    members: Vec<Member>,
    run_id: String,
    shared: Arc<Mutex<Shared>>,
    t0: Arc<Mutex<Instant>>,
    reporter: Reporter,
    stop: CancellationToken,
) {
    let stream = engine.container_events(&run_id, &["die", "start"]);
    tokio::pin!(stream);
    loop {
        let ev = tokio::select! {
            _ = stop.cancelled() => return,
            ev = stream.next() => ev,
        };
        let Some(Ok(ev)) = ev else { return };
        let id = ev.id;
        let Some(m) = members.iter().find(|m| m.id == id) else {
            continue;
        };
        let attrs = ev.attributes;
        match ev.action.as_deref() {
            Some("die") => {
                let code = attrs.get("exitCode").cloned().unwrap_or_else(|| "?".into());
                lock(&shared).died.insert(id.clone(), code);
            }
            Some("start") => {
                let mut s = lock(&shared);
                if s.ours.remove(&id) {
                    continue;
                }
                let Some(code) = s.died.remove(&id) else {
                    continue;
                };
                let reason = format!("exited with code {code}{}", exit_meaning(&code));
                reporter.warn(format!("{} {reason}; Docker restarted it", m.container));
                s.restarts.push(Restart {
                    container: m.container.clone(),
                    server: m.server.clone(),
                    service: m.service.clone(),
                    by: "docker".into(),
                    at: crate::timefmt::rfc3339(SystemTime::now()),
                    t_s: offset(&t0),
                    reason,
                });
            }
            _ => {}
        }
    }
}

fn exit_meaning(code: &str) -> &'static str {
    match code {
        "1" => " (error)",
        "2" => " (Go runtime crash or usage error)",
        "137" => " (SIGKILL)",
        "139" => " (SIGSEGV)",
        "143" => " (SIGTERM)",
        _ => "",
    }
}

#[derive(Default)]
struct Track {
    down_since: Option<Instant>,
    exited_since: Option<Instant>,
    started_at: String,
}

/// What the poll loop shares with the [`Monitor`].
struct Watched {
    shared: Arc<Mutex<Shared>>,
    /// Restarts builder made, per container id.
    counts: Arc<Mutex<HashMap<String, u32>>>,
    t0: Arc<Mutex<Instant>>,
    loaded: Arc<AtomicBool>,
}

async fn poll_loop(
    engine: Engine,
    members: Vec<Member>,
    stats_port: u16,
    spec: RestartSpec,
    watched: Watched,
    reporter: Reporter,
    stop: CancellationToken,
) {
    let Watched {
        shared,
        counts,
        t0,
        loaded,
    } = watched;
    let mut track: HashMap<String, Track> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let stats = haproxy::fetch_stats(stats_port).await.ok();
        for m in &members {
            let Ok(info) = engine.inspect_container(&m.id).await else {
                continue;
            };
            let Some(state) = info.state else { continue };
            let t = track.entry(m.id.clone()).or_default();
            let started = state.started_at.clone().unwrap_or_default();
            if started != t.started_at {
                // A fresh start: give it a full grace period before judging its health.
                t.started_at = started;
                t.down_since = None;
            }
            let now = Instant::now();
            let running = state.running.unwrap_or(false);
            let restarting = state.restarting.unwrap_or(false);
            let done = lock(&counts).get(&m.id).copied().unwrap_or(0);
            if running {
                t.exited_since = None;
            }
            let exited = state.stopped && !restarting;
            if exited {
                let since = *t.exited_since.get_or_insert(now);
                if now - since >= EXITED_GRACE && done < spec.builder_max {
                    let code = state.exit_code.unwrap_or(-1);
                    let reason = format!(
                        "exited with code {code}{} and Docker did not restart it (a manual kill/stop, or out of restart retries); builder started it again",
                        exit_meaning(&code.to_string())
                    );
                    lock(&shared).ours.insert(m.id.clone());
                    lock(&shared).died.remove(&m.id);
                    if engine.start_container(&m.id).await.is_ok() {
                        record(&shared, &counts, &t0, m, &reporter, reason);
                    } else {
                        lock(&shared).ours.remove(&m.id);
                    }
                    t.exited_since = None;
                }
                continue;
            }
            let Some(stats) = &stats else { continue };
            let Some(s) = stats.iter().find(|s| s.server == m.server) else {
                continue;
            };
            if !running || s.is_up() || !loaded.load(Ordering::SeqCst) {
                t.down_since = None;
                continue;
            }
            let since = *t.down_since.get_or_insert(now);
            if now - since >= spec.unhealthy_grace && done < spec.builder_max {
                let reason = format!(
                    "running but failing its health check for {:.0}s (HAProxy: {}, last check {}); builder restarted it",
                    (now - since).as_secs_f64(),
                    s.status,
                    if s.check_status.is_empty() { "-" } else { &s.check_status }
                );
                lock(&shared).ours.insert(m.id.clone());
                if engine.restart_container(&m.id, 2).await.is_ok() {
                    record(&shared, &counts, &t0, m, &reporter, reason);
                } else {
                    lock(&shared).ours.remove(&m.id);
                }
                t.down_since = None;
            }
        }
    }
}

fn record(
    shared: &Mutex<Shared>,
    counts: &Mutex<HashMap<String, u32>>,
    t0: &Mutex<Instant>,
    m: &Member,
    reporter: &Reporter,
    reason: String,
) {
    reporter.warn(format!("{}: {reason}", m.container));
    *lock(counts).entry(m.id.clone()).or_default() += 1;
    lock(shared).restarts.push(Restart {
        container: m.container.clone(),
        server: m.server.clone(),
        service: m.service.clone(),
        by: "builder".into(),
        at: crate::timefmt::rfc3339(SystemTime::now()),
        t_s: offset(t0),
        reason,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Sets its flag when dropped: tells whether a task's future was dropped (aborted or ended).
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn dropping_the_tasks_cancels_and_aborts_them() {
        let stop = CancellationToken::new();
        let ended = Arc::new(AtomicBool::new(false));
        let flag = Flag(ended.clone());
        // A task that ignores the token: only an abort ends it.
        let handle = tokio::spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        });
        let tasks = Tasks {
            stop: stop.clone(),
            handles: vec![handle],
        };
        drop(tasks);
        assert!(stop.is_cancelled());
        for _ in 0..100 {
            if ended.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ended.load(Ordering::SeqCst), "the task was not aborted");
    }

    #[tokio::test]
    async fn stop_waits_for_tasks_that_honour_the_token() {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let ended = Arc::new(AtomicBool::new(false));
        let done = ended.clone();
        let handle = tokio::spawn(async move {
            token.cancelled().await;
            done.store(true, Ordering::SeqCst);
        });
        let mut tasks = Tasks {
            stop,
            handles: vec![handle],
        };
        tokio::time::timeout(Duration::from_secs(5), tasks.stop())
            .await
            .expect("stop returns");
        assert!(ended.load(Ordering::SeqCst));
        assert!(tasks.handles.is_empty());
    }
}
