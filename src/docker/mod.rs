//! The only module that talks to the Docker engine (through bollard). It owns: connecting
//! (DOCKER_HOST or a pool of engines (`pool.rs`), TLS, API version negotiation, a ping), the labels every builder-made object
//! carries, run ids, the cleanup [`Guard`], Ctrl-C handling, `gc`, image helpers and tar
//! streams in and out of containers. It never prints except through a [`Reporter`] and knows
//! nothing about recipes.
//!
//! Everything builder creates carries `io.builder=1`, `io.builder.run=<run id>`,
//! `io.builder.stage=<stage>` and `io.builder.pid=<pid of the creating process>`; `gc` uses
//! the pid to leave the objects of a run that is still alive alone. The exception is the
//! persistent cache volumes (`volumes.rs`): no run or pid label, kept until `gc` is asked.
//!
//! Stages hold an [`Engine`] (the connection) and, for what they create, a [`Session`] (run
//! id, stage, cleanup guard, cancel token); they see builder's own types, never bollard's.
//! `clippy.toml` disallows bollard's client and types everywhere else; the allowance below
//! is the only one.
//!
//! [`Reporter`]: crate::report::Reporter
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use bollard::{Docker, API_DEFAULT_VERSION};

mod container;
mod copy;
mod engine;
pub(crate) mod gc;
mod guard;
mod images;
pub(crate) mod pool;
mod silence;
mod swarm;
mod volumes;

pub use container::{ContainerSpec, ExecSpec, RestartPolicy};
pub use copy::{download_to_dir, upload_dir_as_tar, upload_tar_file};
pub use engine::{
    cancellable, ContainerEvent, ContainerInfo, ContainerState, Engine, EngineInfo, ImageInfo,
    Session,
};
pub use gc::{gc, CacheVolumes, GcOptions, GcReport};
pub use guard::{cancel_on_signals, interrupted, Guard};
pub use images::{
    copy_image, image_exists, import_rootfs, load_image_tar, remove_image, tag_image, Copied,
    ImportOptions, LoadedImage,
};
pub use pool::{Endpoint, Pool, PoolEngine};
pub use silence::SILENCE;
pub(crate) use silence::{went_silent, Silent};
pub use swarm::{ServiceDef, SwarmRestart, SwarmState, SwarmUse, TaskInfo};
pub use volumes::{
    cache_labels, ensure_volume, volume_exists, LABEL_CACHE_SCOPE, LABEL_RECIPE, STAGE_CACHE,
};

/// Label set to `"1"` on everything builder creates.
pub const LABEL_ROOT: &str = "io.builder";
/// Label holding the run id.
pub const LABEL_RUN: &str = "io.builder.run";
/// Label holding the stage (`build`, `smoke`, `base`, ...).
pub const LABEL_STAGE: &str = "io.builder.stage";
/// Label holding the pid of the process that created the object (for `gc`).
pub const LABEL_PID: &str = "io.builder.pid";
/// Label holding where that pid lives: the host name and the pid namespace (see
/// [`pid_scope`]). `gc` judges only objects of its own scope by pid: CI jobs in containers
/// that share one engine (or a remote `DOCKER_HOST`) must not take each other's running
/// builds for leftovers.
pub const LABEL_PID_SCOPE: &str = "io.builder.pid-scope";
/// Label on base images: the base's name. Images never carry [`LABEL_ROOT`], [`LABEL_RUN`]
/// or [`LABEL_PID`]: containers inherit image labels, and `gc` would take a user's
/// container of a base image for a leftover of a dead run.
pub const LABEL_BASE: &str = "io.builder.base";
/// Label on base images: the pid of the importing process, so `gc` spares an import still
/// in progress.
pub const LABEL_IMAGE_PID: &str = "io.builder.image.pid";
/// Label on base images: the importer's pid scope (see [`LABEL_PID_SCOPE`]).
pub const LABEL_IMAGE_PID_SCOPE: &str = "io.builder.image.pid-scope";

/// Start of the import message (the image's `Comment`) of every base image builder imports.
/// Images built FROM a base inherit its labels but not its comment, so `gc` requires both
/// before it takes a dangling image for a half-made import of its own.
pub const IMPORT_COMMENT_PREFIX: &str = "builder base ";

/// A CPU limit in cores as Docker's `NanoCpus` (`--cpus 0.29` is 290000000, not the
/// 289999999 truncating `0.29 * 1e9` gives).
fn nano_cpus(cores: f64) -> i64 {
    (cores * 1e9).round() as i64
}

/// The socket used when `DOCKER_HOST` is not set.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Request timeout for calls to the engine. Generous because waiting for a build container
/// or importing a large image is a single request; reachability is checked with a short
/// timeout in [`connect`].
const REQUEST_TIMEOUT_SECS: u64 = 3600;
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The engine address builder uses: `DOCKER_HOST` or the default socket.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

fn unreachable(host: &str, cause: impl std::fmt::Display) -> anyhow::Error {
    crate::error::environment(format!(
        "could not reach the Docker engine at `{host}`: {cause}; is it running? start it with \
         `sudo systemctl start docker` (or `dockerd &`), or set DOCKER_HOST"
    ))
}

/// Makes rustls use the `ring` provider (bollard's `ssl` feature), once per process.
fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: a provider is installed already (by this process's other TLS users); keep it.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client for `ep` without any network traffic yet.
fn client_for(ep: &Endpoint) -> Result<Docker> {
    let host = ep.host.as_str();
    let made = if host.starts_with("unix://") {
        Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    } else if let (Some(_), Some(tls)) = (host.strip_prefix("tcp://"), &ep.tls) {
        install_tls_provider();
        Docker::connect_with_ssl(
            host,
            &tls.key(),
            &tls.cert(),
            &tls.ca(),
            REQUEST_TIMEOUT_SECS,
            API_DEFAULT_VERSION,
        )
    } else if let Some(rest) = host.strip_prefix("tcp://") {
        Docker::connect_with_http(
            &format!("http://{rest}"),
            REQUEST_TIMEOUT_SECS,
            API_DEFAULT_VERSION,
        )
    } else if host.starts_with("http://") {
        Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    } else {
        return Err(crate::error::usage(format!(
            "unsupported DOCKER_HOST `{host}`: use `unix:///path/to/docker.sock` or `tcp://host:port`"
        )));
    };
    made.map_err(|e| unreachable(host, e))
}

/// Connects to the engine named by `DOCKER_HOST` (unix socket or tcp; TLS when
/// `DOCKER_TLS_VERIFY` is set, as the docker CLI does), negotiates the API version down to
/// what the engine speaks and pings it. An unreachable engine is an environment error
/// (exit code 3) that says how to start Docker.
pub async fn connect() -> Result<Engine> {
    connect_endpoint(&Endpoint::from_docker_host()).await
}

/// [`connect`] for one engine of a pool.
pub async fn connect_endpoint(ep: &Endpoint) -> Result<Engine> {
    let host = ep.host.as_str();
    let docker = client_for(ep)?;
    let docker = match tokio::time::timeout(PING_TIMEOUT, docker.negotiate_version()).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return Err(unreachable(host, e)),
        Err(_) => return Err(unreachable(host, "no answer within 10 s")),
    };
    match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
        Ok(Ok(_)) => Ok(Engine::new(docker, ep.clone())),
        Ok(Err(e)) => Err(unreachable(host, e)),
        Err(_) => Err(unreachable(host, "no answer to ping within 10 s")),
    }
}

/// The labels for an object created by run `run_id` in `stage`.
pub fn labels(run_id: &str, stage: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_ROOT.to_string(), "1".to_string()),
        (LABEL_RUN.to_string(), run_id.to_string()),
        (LABEL_STAGE.to_string(), stage.to_string()),
        (LABEL_PID.to_string(), std::process::id().to_string()),
        (LABEL_PID_SCOPE.to_string(), pid_scope()),
    ])
}

/// This process's pid scope: `<host name>/<pid namespace inode>`. Two processes whose pids
/// are comparable (same host, same pid namespace) have the same scope.
pub fn pid_scope() -> String {
    static SCOPE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SCOPE
        .get_or_init(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default();
            let ns = std::fs::read_link("/proc/self/ns/pid")
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("{host}/{ns}")
        })
        .clone()
}

/// A short, unique run id that sorts by creation time: 11 hex digits of milliseconds since
/// the epoch, then 6 random hex digits (e.g. `19a3c5e7f21-4be0c1`).
pub fn new_run_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    // RandomState is seeded from the OS per process and per instance; mixing in the pid and
    // a counter keeps ids from one process distinct too.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u128(millis);
    format!("{:011x}-{:06x}", millis, h.finish() & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_unique_and_sortable() {
        let a = new_run_id();
        std::thread::sleep(Duration::from_millis(2));
        let b = new_run_id();
        assert_ne!(a, b);
        assert!(a < b, "{a} should sort before {b}");
        assert_eq!(a.len(), 18);
    }

    #[test]
    fn labels_carry_run_and_stage() {
        let l = labels("r1", "build");
        assert_eq!(l[LABEL_ROOT], "1");
        assert_eq!(l[LABEL_RUN], "r1");
        assert_eq!(l[LABEL_STAGE], "build");
        assert_eq!(l[LABEL_PID], std::process::id().to_string());
        assert!(
            l[LABEL_PID_SCOPE].contains("/pid:["),
            "{}",
            l[LABEL_PID_SCOPE]
        );
    }
}
