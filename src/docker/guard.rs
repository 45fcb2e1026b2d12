//! Cleanup of what one run created: [`Guard`] owns containers and networks and removes them
//! on `cleanup()`, and best-effort on drop (early return, error, panic). Cleanup on an
//! engine that went silent (no answer to a ping for [`super::SILENCE`]) gives up on that
//! engine and says what it left there, by name. Ctrl-C handling: [`cancel_on_signals`]
//! gives the one cancellation token operations `select!` on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use bollard::Docker;
use tokio_util::sync::CancellationToken;

/// How long the drop path may spend removing leftovers before giving up.
const DROP_CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Owns the containers and networks created by one run. Clones share the same set; the
/// objects are removed (forced) by [`Guard::cleanup`] or, if that never ran, when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
    /// Where the engine is, for the drop path's fresh connection.
    endpoint: super::Endpoint,
    tracked: Mutex<Tracked>,
}

#[derive(Default)]
struct Tracked {
    containers: Vec<String>,
    networks: Vec<String>,
    /// Swarm services (removed first: their tasks hold the networks).
    services: Vec<String>,
    /// This run initialised the engine's swarm: leave it after everything else.
    leave_swarm: bool,
    /// The engine had no `docker_gwbridge` before this run initialised the swarm: remove the
    /// one Swarm made once the swarm is left (if no container uses it).
    remove_gwbridge: bool,
}

impl Tracked {
    fn is_empty(&self) -> bool {
        self.containers.is_empty()
            && self.networks.is_empty()
            && self.services.is_empty()
            && !self.leave_swarm
    }
}

impl Guard {
    pub fn new(engine: super::Engine) -> Self {
        Guard {
            inner: Arc::new(Inner {
                docker: engine.client().clone(),
                endpoint: engine.endpoint().clone(),
                tracked: Mutex::new(Tracked::default()),
            }),
        }
    }

    fn tracked(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.inner.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes this container (force, with its anonymous volumes) at cleanup.
    pub fn track_container(&self, id: &str) {
        let mut t = self.tracked();
        if !t.containers.iter().any(|c| c == id) {
            t.containers.push(id.to_string());
        }
    }

    /// Removes this network at cleanup (after the containers).
    pub fn track_network(&self, id: &str) {
        let mut t = self.tracked();
        if !t.networks.iter().any(|n| n == id) {
            t.networks.push(id.to_string());
        }
    }

    /// Removes this swarm service at cleanup (before containers and networks).
    pub fn track_service(&self, id: &str) {
        let mut t = self.tracked();
        if !t.services.iter().any(|c| c == id) {
            t.services.push(id.to_string());
        }
    }

    /// This run initialised the swarm: leave it (forced) once everything else is removed,
    /// then remove `docker_gwbridge` unless it `existed` before.
    pub fn track_swarm_init(&self, gwbridge_existed: bool) {
        let mut t = self.tracked();
        t.leave_swarm = true;
        t.remove_gwbridge = !gwbridge_existed;
    }

    /// Stops tracking a container that the caller already removed.
    pub fn forget_container(&self, id: &str) {
        self.tracked().containers.retain(|c| c != id);
    }

    /// Removes everything tracked: containers first (forced), then networks. Objects that
    /// are already gone count as removed. Reports every failure, not only the first. An
    /// engine that stops answering meanwhile ([`super::SILENCE`] without an answer to a
    /// ping) ends the cleanup: the error names the engine and everything left on it.
    pub async fn cleanup(&self) -> Result<()> {
        let taken = std::mem::take(&mut *self.tracked());
        let ep = &self.inner.endpoint;
        let answers = super::silence::recheck(&self.inner.docker, ep).await;
        let left = remove_all(&self.inner.docker, &taken, answers).await;
        if left.silent.is_some() {
            super::silence::mark(ep);
        }
        match left.message(&self.inner.endpoint) {
            None => Ok(()),
            Some(msg) => Err(anyhow::anyhow!(msg)),
        }
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// What a cleanup could not remove.
#[derive(Debug, Default)]
struct Left {
    /// Objects whose removal failed, with the engine's reason.
    failures: Vec<String>,
    /// Set when the engine went silent: how long it answered no ping, and the objects not
    /// removed because of that.
    silent: Option<(Duration, Vec<String>)>,
}

impl Left {
    /// `None` when everything went; else what is left on engine `ep` and how to remove it.
    fn message(&self, ep: &super::Endpoint) -> Option<String> {
        let mut parts = Vec::new();
        if !self.failures.is_empty() {
            parts.push(format!(
                "could not remove {}; remove them with `builder gc`",
                self.failures.join(", ")
            ));
        }
        if let Some((after, left)) = &self.silent {
            parts.push(format!(
                "{}, so these are left on it: {}; once it answers again, remove them with \
                 `builder gc`",
                super::silence::silent_text(ep, *after),
                left.join(", ")
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Asks `docker` for `fut` unless it went silent before (`left.silent` set): then, or when
/// it goes silent now, `None`, and `what` joins the list of what is left.
async fn ask<T>(
    docker: &Docker,
    left: &mut Left,
    silence: Duration,
    what: String,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    if let Some((_, l)) = left.silent.as_mut() {
        l.push(what);
        return None;
    }
    tokio::select! {
        v = fut => Some(v),
        _ = super::silence::until_silent(docker, silence) => {
            left.silent = Some((silence, vec![what]));
            None
        }
    }
}

/// Removes what `t` tracks. `answers`: the engine answered the recheck (or was not known
/// silent); when it did not, nothing is asked and everything is listed as left.
async fn remove_all(docker: &Docker, t: &Tracked, answers: bool) -> Left {
    remove_all_within(docker, t, answers, super::SILENCE).await
}

async fn remove_all_within(docker: &Docker, t: &Tracked, answers: bool, silence: Duration) -> Left {
    let mut left = Left::default();
    if !answers {
        left.silent = Some((super::silence::RECHECK, Vec::new()));
    }
    for id in &t.services {
        let what = format!("service `{id}`");
        match ask(
            docker,
            &mut left,
            silence,
            what.clone(),
            docker.delete_service(id),
        )
        .await
        {
            None | Some(Ok(())) => {}
            Some(Err(e)) if is_not_found(&e) => {}
            Some(Err(e)) => left.failures.push(format!("{what} ({e})")),
        }
    }
    if !t.services.is_empty() && left.silent.is_none() {
        // The tasks' containers stop asynchronously and hold the overlay network until
        // they are gone.
        super::swarm::wait_tasks_gone(docker, &t.services, Duration::from_secs(30)).await;
    }
    let opts = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    for id in &t.containers {
        let what = format!("container `{id}`");
        let removed = docker.remove_container(id, Some(opts.clone()));
        match ask(docker, &mut left, silence, what.clone(), removed).await {
            None | Some(Ok(())) => {}
            Some(Err(e)) if is_not_found(&e) => {}
            // 409: removal already in progress (e.g. AutoRemove); the engine finishes it.
            Some(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                ..
            })) => {}
            Some(Err(e)) => left.failures.push(format!("{what} ({e})")),
        }
    }
    for id in &t.networks {
        let what = format!("network `{id}`");
        // An overlay network stays in use for a moment after its last task is gone.
        let mut tries = if t.services.is_empty() { 1 } else { 20 };
        loop {
            tries -= 1;
            match ask(
                docker,
                &mut left,
                silence,
                what.clone(),
                docker.remove_network(id),
            )
            .await
            {
                None | Some(Ok(())) => {}
                Some(Err(e)) if is_not_found(&e) => {}
                Some(Err(_)) if tries > 0 => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Some(Err(e)) => left.failures.push(format!("{what} ({e})")),
            }
            break;
        }
    }
    if t.leave_swarm {
        let what = "the swarm builder initialised (leave it with `docker swarm leave --force`)";
        match ask(
            docker,
            &mut left,
            silence,
            what.into(),
            super::swarm::leave(docker),
        )
        .await
        {
            None => {}
            Some(Ok(())) if t.remove_gwbridge => {
                if let Err(e) = super::swarm::remove_gwbridge(docker).await {
                    left.failures.push(e);
                }
            }
            Some(Ok(())) => {}
            Some(Err(e)) => left.failures.push(format!(
                "the swarm builder initialised ({e}; leave it with `docker swarm leave --force`)"
            )),
        }
    }
    left
}

impl Drop for Inner {
    fn drop(&mut self) {
        let taken = std::mem::take(&mut *self.tracked.lock().unwrap_or_else(|e| e.into_inner()));
        if taken.is_empty() {
            return;
        }
        // We may be inside a runtime (cannot block_on there) or past its shutdown, so the
        // removal runs on a fresh thread with its own small runtime and a fresh connection,
        // and we wait for it: the process may be about to exit.
        let endpoint = self.endpoint.clone();
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(docker) = super::client_for(&endpoint) else {
                    return;
                };
                let Ok(Ok(docker)) =
                    tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version()).await
                else {
                    return;
                };
                // It answered: whatever was found before, it is asked as usual.
                super::silence::answered(&endpoint);
                let _ =
                    tokio::time::timeout(DROP_CLEANUP_TIMEOUT, remove_all(&docker, &taken, true))
                        .await;
            });
        });
        let _ = handle.join();
    }
}

/// A token cancelled on the first SIGINT (Ctrl-C) or SIGTERM. Operations `select!` on
/// `token.cancelled()`, run their guard's cleanup and return [`interrupted`]. Must be called
/// inside a tokio runtime; outside one the token is never cancelled.
pub fn cancel_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return token;
    };
    let child = token.clone();
    handle.spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).ok();
            let term_recv = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term_recv => {}
                _ = child.cancelled() => return,
            }
        }
        #[cfg(not(unix))]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = child.cancelled() => return,
            }
        }
        crate::interrupt::request();
        child.cancel();
        // Cleanup is under way; a second Ctrl-C means "stop now" (exit code 130, like a shell).
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    token
}

/// The error an operation returns after it was cancelled by a signal and cleaned up.
pub fn interrupted() -> anyhow::Error {
    crate::error::Failure::Interrupted("interrupted".into()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that accepts connections and never answers: an engine whose host hangs.
    /// Cleanup there ends within the silence bound and names everything it left.
    #[tokio::test]
    async fn cleanup_on_a_silent_engine_ends_and_names_what_it_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silent.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                open.push(conn);
            }
        });
        let ep = super::super::Endpoint {
            name: "b".into(),
            host: format!("unix://{}", path.display()),
            tls: None,
        };
        let docker = super::super::client_for(&ep).unwrap();
        let tracked = Tracked {
            containers: vec!["builder-build-x-r1".into(), "builder-build-y-r1".into()],
            networks: vec!["builder-build-x-r1".into()],
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let left = tokio::time::timeout(
            Duration::from_secs(20),
            remove_all_within(&docker, &tracked, true, Duration::from_secs(1)),
        )
        .await
        .expect("cleanup on a silent engine must end");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "one silence, not three"
        );
        assert!(left.failures.is_empty(), "{:?}", left.failures);
        let msg = left.message(&ep).unwrap();
        assert!(msg.contains("engine `b` (unix://"), "{msg}");
        assert!(msg.contains("stopped answering"), "{msg}");
        assert!(msg.contains("no answer to a ping for 1 s"), "{msg}");
        assert!(
            msg.contains(
                "left on it: container `builder-build-x-r1`, container `builder-build-y-r1`, \
                 network `builder-build-x-r1`"
            ),
            "{msg}"
        );
        assert!(msg.contains("builder gc"), "{msg}");
        assert!(Left::default().message(&ep).is_none());

        // Once found silent, the engine's next cleanup (a guard's, after the build it lost,
        // or after Ctrl-C) waits one ping, not a second full silence.
        assert!(!super::super::silence::known_silent(&ep));
        let engine = super::super::Engine::new(docker, ep.clone());
        let guard = Guard::new(engine);
        guard.track_container("builder-build-z-r1");
        // What a build's wait does when the engine stops answering (`silent_error`).
        let err = super::super::silence::silent_error(&ep, super::super::SILENCE);
        assert!(super::super::went_silent(&err), "{err:#}");
        assert!(super::super::silence::known_silent(&ep));
        let started = std::time::Instant::now();
        let msg = guard.cleanup().await.unwrap_err().to_string();
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "took {:?}",
            started.elapsed()
        );
        assert!(msg.contains("no answer to a ping for 5 s"), "{msg}");
        assert!(msg.contains("container `builder-build-z-r1`"), "{msg}");
        held.abort();
    }
}
