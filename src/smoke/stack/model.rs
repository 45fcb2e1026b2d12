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
pub(crate) struct Service {
    pub name: String,
    /// The recipe (package name) whose `[image]` is run.
    pub image: String,
    pub replicas: u32,
    pub port: u16,
    /// Health check path (`GET <health>` must answer 200).
    pub health: String,
    /// Environment; `{svc}` in a value is replaced by the DNS name of service `svc`.
    pub env: BTreeMap<String, String>,
    /// Added to `env` in the candidate's containers only (`--candidate-env`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub candidate_env: BTreeMap<String, String>,
    /// Added to `env` in the baseline's containers only (`--baseline-env`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub baseline_env: BTreeMap<String, String>,
    /// CPU limit of each replica, in cores (containers: `NanoCpus`; Swarm: the task's
    /// `Resources.Limits.NanoCPUs`). `None`: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory limit of each replica, in bytes (`Memory`; `Resources.Limits.MemoryBytes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Route {
    pub path_prefix: String,
    pub service: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct LoadBalancer {
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
pub(crate) struct LoadPath {
    pub path: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct LoadSpec {
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
pub(crate) struct Thresholds {
    /// Achieved rate / requested rate must be at least this.
    pub min_rate_ratio: f64,
    /// Success ratio must be at least this.
    pub min_success: f64,
    /// p99 latency must be at most this many milliseconds.
    pub max_p99_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct RestartSpec {
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
pub(crate) struct Stack {
    pub file: PathBuf,
    /// In start order: a service comes after every service its environment refers to.
    pub services: Vec<Service>,
    pub load_balancer: LoadBalancer,
    pub load: LoadSpec,
    pub thresholds: Thresholds,
    pub restart: RestartSpec,
    /// `[canary]`: compare with the release an environment holds, then switch to it. `None`
    /// when the table is absent and no `--baseline` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanarySpec>,
    /// Where the stack runs: containers on a bridge network, or services on Docker Swarm.
    pub target: DeployTarget,
    /// The registry the images are pushed to for `target = "swarm"` (`host:port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
}

/// `target` in stack.toml, `--target` on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployTarget {
    /// Containers on a private bridge network (the default).
    #[default]
    Containers,
    /// Services on Docker Swarm, images from a registry by digest.
    Swarm,
}

impl DeployTarget {
    pub const NAMES: [&'static str; 2] = ["containers", "swarm"];

    pub fn parse(s: &str) -> Option<DeployTarget> {
        match s {
            "containers" => Some(DeployTarget::Containers),
            "swarm" => Some(DeployTarget::Swarm),
            _ => None,
        }
    }
}

/// What the stack validation needs to know about the project's recipes: package name →
/// whether the recipe has an `[image]` table.
pub(crate) type RecipeImages = BTreeMap<String, bool>;

/// `[canary]`: the candidate beside the release an environment holds, compared under one
/// load, then a blue-green switch. Tolerances are those of [`crate::smoke::compare`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct CanarySpec {
    /// The environment whose release is the baseline; `None`: no comparison (the table sets
    /// tolerances for a `--baseline` given on the command line, or the pipeline's target).
    pub baseline: Option<String>,
    /// Significance level of the tests.
    pub alpha: f64,
    /// Largest tolerated relative increase of the candidate's p50 or p99 latency (0.1 = 10%).
    pub max_latency_increase: f64,
    /// The smallest increase of p50 or p99, in milliseconds, that counts as worse: a 10%
    /// rise of a 4 ms p50 is half a millisecond, below what a shared host resolves.
    pub min_latency_increase_ms: f64,
    /// Largest tolerated increase of the error rate, in absolute terms (0.01 = 1 point).
    pub max_error_increase: f64,
    /// Fewest measured requests per variant for a verdict.
    pub min_requests: u64,
    /// The candidate's share of the traffic during the comparison, in percent.
    pub weight: u32,
    /// The candidate's share at each step of the switch, in percent, rising, the last 100.
    pub switch_steps: Vec<u32>,
    /// How long each step of the switch (and the drained baseline after it) is held.
    #[serde(serialize_with = "secs")]
    pub step_duration: Duration,
    /// Most requests that may fail because of the switch (gate check `switch_failures`).
    pub max_switch_failures: u64,
}

impl Default for CanarySpec {
    fn default() -> Self {
        CanarySpec {
            baseline: None,
            alpha: 0.01,
            max_latency_increase: 0.10,
            min_latency_increase_ms: 2.0,
            max_error_increase: 0.01,
            min_requests: 200,
            weight: 50,
            switch_steps: vec![10, 50, 100],
            step_duration: Duration::from_secs(5),
            max_switch_failures: 0,
        }
    }
}

impl CanarySpec {
    /// Time the switch takes: every step plus the drained baseline, held `step_duration` each.
    pub(crate) fn switch_time(&self) -> Duration {
        let steps = u32::try_from(self.switch_steps.len()).unwrap_or(u32::MAX);
        self.step_duration
            .checked_mul(steps.saturating_add(1))
            .unwrap_or(Duration::MAX)
    }
}
