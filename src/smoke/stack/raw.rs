//! The serde model of `stack.toml`: every value with its span, unknown keys refused.
//! Only [`super::validate`] reads it.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStack {
    pub(super) services: S<BTreeMap<String, S<RawService>>>,
    pub(super) load_balancer: S<RawLb>,
    pub(super) load: S<RawLoad>,
    pub(super) thresholds: S<RawThresholds>,
    #[serde(default)]
    pub(super) restart: Option<S<RawRestart>>,
    #[serde(default)]
    pub(super) canary: Option<S<RawCanary>>,
    /// `containers` (default) or `swarm`.
    #[serde(default)]
    pub(super) target: Option<S<String>>,
    /// The registry `target = "swarm"` pushes the images to (`host:port`).
    #[serde(default)]
    pub(super) registry: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) image: S<String>,
    #[serde(default)]
    pub(super) replicas: Option<S<i64>>,
    #[serde(default)]
    pub(super) port: Option<S<i64>>,
    #[serde(default)]
    pub(super) health: Option<S<String>>,
    #[serde(default)]
    pub(super) env: BTreeMap<S<String>, S<String>>,
    /// CPU limit of each replica, in cores (`0.5`).
    #[serde(default)]
    pub(super) cpus: Option<S<f64>>,
    /// Memory limit of each replica: bytes, or with a unit (`"256M"`).
    #[serde(default)]
    pub(super) memory: Option<S<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) path_prefix: S<String>,
    pub(super) service: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLb {
    pub(super) kind: S<String>,
    #[serde(default)]
    pub(super) base: Option<S<String>>,
    pub(super) service: S<String>,
    #[serde(default)]
    pub(super) routes: Vec<S<RawRoute>>,
    #[serde(default)]
    pub(super) balance: Option<S<String>>,
    #[serde(default)]
    pub(super) check_interval: Option<S<String>>,
    #[serde(default)]
    pub(super) rise: Option<S<i64>>,
    #[serde(default)]
    pub(super) fall: Option<S<i64>>,
    #[serde(default)]
    pub(super) retries: Option<S<i64>>,
    #[serde(default)]
    pub(super) redispatch: Option<bool>,
    #[serde(default)]
    pub(super) retry_on: Option<S<Vec<String>>>,
    #[serde(default)]
    pub(super) timeout_connect: Option<S<String>>,
    #[serde(default)]
    pub(super) timeout_client: Option<S<String>>,
    #[serde(default)]
    pub(super) timeout_server: Option<S<String>>,
    #[serde(default)]
    pub(super) timeout_check: Option<S<String>>,
    #[serde(default)]
    pub(super) ready_timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPath {
    pub(super) path: S<String>,
    #[serde(default)]
    pub(super) weight: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoad {
    pub(super) rate: S<f64>,
    pub(super) duration: S<String>,
    #[serde(default)]
    pub(super) warmup: Option<S<String>>,
    #[serde(default)]
    pub(super) timeout: Option<S<String>>,
    pub(super) paths: S<Vec<S<RawPath>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThresholds {
    pub(super) min_rate_ratio: S<f64>,
    pub(super) min_success: S<f64>,
    pub(super) max_p99_ms: S<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRestart {
    #[serde(default)]
    pub(super) policy: Option<S<String>>,
    #[serde(default)]
    pub(super) max_retries: Option<S<i64>>,
    #[serde(default)]
    pub(super) unhealthy_grace: Option<S<String>>,
    #[serde(default)]
    pub(super) builder_max: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCanary {
    #[serde(default)]
    pub(super) baseline: Option<S<String>>,
    #[serde(default)]
    pub(super) alpha: Option<S<f64>>,
    #[serde(default)]
    pub(super) max_latency_increase: Option<S<f64>>,
    #[serde(default)]
    pub(super) min_latency_increase_ms: Option<S<f64>>,
    #[serde(default)]
    pub(super) max_error_increase: Option<S<f64>>,
    #[serde(default)]
    pub(super) min_requests: Option<S<i64>>,
    #[serde(default)]
    pub(super) weight: Option<S<i64>>,
    #[serde(default)]
    pub(super) switch_steps: Option<S<Vec<S<i64>>>>,
    #[serde(default)]
    pub(super) step_duration: Option<S<String>>,
    #[serde(default)]
    pub(super) max_switch_failures: Option<S<i64>>,
}
