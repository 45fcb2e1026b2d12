//! Telling an engine that went silent from one that is merely slow. A request to an engine
//! whose process stopped (SIGSTOP, a hung host, packets dropped rather than refused) never
//! fails: the connection stays open and no answer comes, and bollard's request timeout is
//! an hour (image loads and build waits are single requests). So long waits on an engine
//! of a pool run beside [`until_silent`], which pings the engine every few seconds and
//! returns once it has not answered any ping for [`SILENCE`]; a slow engine still answers
//! pings (`/_ping` takes no daemon lock), a stopped one does not.
//!
//! This module owns the rule and the message; the callers decide what silence costs (the
//! build is retried elsewhere, the image is sent from another engine, cleanup lists what
//! it left behind).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Result;
use bollard::Docker;

/// No answer to any ping for this long: the engine is silent.
pub const SILENCE: Duration = Duration::from_secs(30);
/// How often a waiting caller pings the engine (and how long each ping may take).
const PING_EVERY: Duration = Duration::from_secs(5);
/// How long an engine already found silent gets to answer one ping before a cleanup gives up
/// on it (see [`recheck`]).
pub(super) const RECHECK: Duration = PING_EVERY;
/// How long an engine found silent is remembered as such.
const REMEMBER: Duration = Duration::from_secs(120);

/// Engines found silent, by address, and when.
static FOUND: std::sync::Mutex<Vec<(String, Instant)>> = std::sync::Mutex::new(Vec::new());

fn found() -> std::sync::MutexGuard<'static, Vec<(String, Instant)>> {
    FOUND.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `ep` was found silent in the last two minutes.
pub(super) fn known_silent(ep: &super::Endpoint) -> bool {
    let mut f = found();
    f.retain(|(_, at)| at.elapsed() < REMEMBER);
    f.iter().any(|(host, _)| *host == ep.host)
}

/// Forgets that `ep` was found silent: it answered.
pub(super) fn answered(ep: &super::Endpoint) {
    found().retain(|(host, _)| *host != ep.host);
}

/// Before a cleanup: whether an engine found silent in the last two minutes answers one
/// ping within [`RECHECK`]. `true` for an engine not known silent (it is asked as usual,
/// under [`SILENCE`]); an engine that answers is forgotten as silent. A cleanup after a
/// build lost to silence, or after Ctrl-C, so gives up on a still silent engine after one
/// ping instead of waiting out a second full silence.
pub(super) async fn recheck(docker: &Docker, ep: &super::Endpoint) -> bool {
    if !known_silent(ep) {
        return true;
    }
    let answers = matches!(
        tokio::time::timeout(RECHECK, docker.ping()).await,
        Ok(Ok(_))
    );
    if answers {
        answered(ep);
    }
    answers
}

/// Returns once `docker` has answered no ping for `after` (never while it answers). A ping
/// may take all the time left: a slow answer (a saturated link, a host under memory
/// pressure) is still an answer.
pub(super) async fn until_silent(docker: &Docker, after: Duration) {
    let every = PING_EVERY.min(after);
    let mut last_answer = Instant::now();
    loop {
        let asked = Instant::now();
        let budget = after.saturating_sub(last_answer.elapsed());
        if budget.is_zero() {
            return;
        }
        match tokio::time::timeout(budget, docker.ping()).await {
            Ok(Ok(_)) => last_answer = Instant::now(),
            // Refused or reset: no answer; ask again after the interval.
            Ok(Err(_)) => {}
            Err(_) => return,
        }
        tokio::time::sleep(every.saturating_sub(asked.elapsed())).await;
    }
}

/// The error of an engine that went silent (an environment error, exit code 3): callers
/// tell it from the engine's own refusals with [`went_silent`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Silent(String);

/// Whether `err` is (or was caused by) an engine going silent.
pub(crate) fn went_silent(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.is::<Silent>())
}

/// The error for an engine that went silent: which one, and for how long. The engine is
/// remembered as silent (see [`recheck`]).
pub(super) fn silent_error(ep: &super::Endpoint, after: Duration) -> anyhow::Error {
    mark(ep);
    Silent(silent_text(ep, after)).into()
}

/// Remembers `ep` as found silent now.
pub(super) fn mark(ep: &super::Endpoint) {
    let mut f = found();
    f.retain(|(host, _)| *host != ep.host);
    f.push((ep.host.clone(), Instant::now()));
}

/// `engine `b` (tcp://…) stopped answering: no answer to a ping for 30 s`.
pub(super) fn silent_text(ep: &super::Endpoint, after: Duration) -> String {
    format!(
        "engine `{}` ({}) stopped answering: no answer to a ping for {} s",
        ep.name,
        ep.host,
        after.as_secs()
    )
}

/// Awaits `fut` unless `docker` goes silent first ([`silent_error`] then; `fut` is dropped,
/// abandoning its requests).
pub(super) async fn unless_silent<T>(
    docker: &Docker,
    ep: &super::Endpoint,
    after: Duration,
    fut: impl Future<Output = T>,
) -> Result<T> {
    tokio::select! {
        v = fut => Ok(v),
        _ = until_silent(docker, after) => Err(silent_error(ep, after)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_an_environment_error_callers_can_tell_from_others() {
        let ep = crate::docker::Endpoint {
            name: "b".into(),
            host: "tcp://10.0.0.2:2376".into(),
            tls: None,
        };
        let e = silent_error(&ep, SILENCE).context("could not send image `x`");
        assert!(went_silent(&e));
        assert_eq!(crate::error::exit_code(&e), crate::error::EXIT_ENVIRONMENT);
        assert_eq!(
            format!("{e:#}"),
            "could not send image `x`: engine `b` (tcp://10.0.0.2:2376) stopped answering: \
             no answer to a ping for 30 s"
        );
        assert!(!went_silent(&crate::error::environment(
            "engine `b` refused"
        )));
    }
}
