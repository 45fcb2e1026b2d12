//! The validated stack: what smoke deploys, loads and gates, and what its report records.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// One service of the deployment: `replicas` containers of the image made by recipe `image`.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub name: String,
    /// The recipe (package name) whose `[image]` is run.
    pub image: String,
    pub replicas: u32,
    pub port: u16,
    /// Health check path (`GET <health>` must answer 200).
    pub health: String,
    /// Environment; `{svc}` in a value is replaced by the DNS name of service `svc`.
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub path_prefix: String,
    pub service: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadBalancer {
    pub kind: String,
    /// Base image definition the load balancer runs from (`base-images/<base>.toml`).
    pub base: String,
    /// The service that gets every request no route matches.
    pub service: String,
    pub routes: Vec<Route>,
    pub balance: String,
    #[serde(serialize_with = "secs")]
    pub check_interval: Duration,
    pub rise: u32,
    pub fall: u32,
    pub retries: u32,
    pub redispatch: bool,
    pub retry_on: Vec<String>,
    #[serde(serialize_with = "secs")]
    pub timeout_connect: Duration,
    #[serde(serialize_with = "secs")]
    pub timeout_client: Duration,
    #[serde(serialize_with = "secs")]
    pub timeout_server: Duration,
    #[serde(serialize_with = "secs")]
    pub timeout_check: Duration,
    /// How long every server may take to pass its health checks after start.
    #[serde(serialize_with = "secs")]
    pub ready_timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadPath {
    pub path: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadSpec {
    pub rate: f64,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    #[serde(serialize_with = "secs")]
    pub warmup: Duration,
    #[serde(serialize_with = "secs")]
    pub timeout: Duration,
    pub paths: Vec<LoadPath>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Thresholds {
    /// Achieved rate / requested rate must be at least this.
    pub min_rate_ratio: f64,
    /// Success ratio must be at least this.
    pub min_success: f64,
    /// p99 latency must be at most this many milliseconds.
    pub max_p99_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RestartSpec {
    /// Docker restart policy of the service containers.
    pub policy: String,
    pub max_retries: u32,
    /// A running container whose health check fails this long is restarted by builder.
    #[serde(serialize_with = "secs")]
    pub unhealthy_grace: Duration,
    /// Restarts builder itself makes per container, at most.
    pub builder_max: u32,
}

/// The validated stack. `Default` (empty, no services) only stands in for the stack of a
/// smoke report promotion read, which does not read it back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stack {
    pub file: PathBuf,
    /// In start order: a service comes after every service its environment refers to.
    pub services: Vec<Service>,
    pub load_balancer: LoadBalancer,
    pub load: LoadSpec,
    pub thresholds: Thresholds,
    pub restart: RestartSpec,
}

/// What the stack validation needs to know about the project's recipes: package name →
/// whether the recipe has an `[image]` table.
pub type RecipeImages = BTreeMap<String, bool>;
