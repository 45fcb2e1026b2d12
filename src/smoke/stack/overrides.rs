//! Command-line changes to a validated stack (`--rate`, `--replicas`, `--env`, thresholds):
//! each bad value is a usage error naming the flag.

use std::time::Duration;

use serde::Serialize;

use super::model::{CanarySpec, Service, Stack};
use super::values::*;
use super::MAX_REPLICAS;
use crate::diag::{did_you_mean, escape_controls};
use crate::error::usage;

/// Command-line changes to the stack, applied after validation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    pub rate: Option<f64>,
    #[serde(skip)]
    pub duration: Option<Duration>,
    #[serde(skip)]
    pub warmup: Option<Duration>,
    /// `--frontends N`: replicas of the load balancer's default-route service (applied before
    /// `replicas`, which may name that service too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frontends: Option<u32>,
    /// `service=N`
    pub replicas: Vec<String>,
    /// `service:KEY=VALUE`
    pub env: Vec<String>,
    /// `--candidate-env service:KEY=VALUE`: the candidate's containers only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidate_env: Vec<String>,
    /// `--baseline-env service:KEY=VALUE`: the baseline's containers only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub baseline_env: Vec<String>,
    /// `--baseline ENV`: compare with the release of this environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// `--no-canary`: test the candidate alone, whatever `[canary]` says.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_canary: bool,
    pub min_rate_ratio: Option<f64>,
    pub min_success: Option<f64>,
    pub max_p99_ms: Option<f64>,
}

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.rate.is_none()
            && self.duration.is_none()
            && self.warmup.is_none()
            && self.frontends.is_none()
            && self.replicas.is_empty()
            && self.env.is_empty()
            && self.candidate_env.is_empty()
            && self.baseline_env.is_empty()
            && self.baseline.is_none()
            && !self.no_canary
            && self.min_rate_ratio.is_none()
            && self.min_success.is_none()
            && self.max_p99_ms.is_none()
    }
}

impl Stack {
    fn service_mut(&mut self, name: &str, flag: &str) -> anyhow::Result<&mut Service> {
        let known: Vec<String> = self.services.iter().map(|s| s.name.clone()).collect();
        self.services
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                let refs: Vec<&str> = known.iter().map(String::as_str).collect();
                let hint = did_you_mean(name, &refs)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                usage(format!(
                    "{flag}: no service `{}` in the stack{hint}; services: {}",
                    escape_controls(name),
                    known.join(", ")
                ))
            })
    }

    /// Applies command-line overrides; every bad value is a usage error naming the flag.
    pub(crate) fn apply(&mut self, o: &Overrides) -> anyhow::Result<()> {
        if let Some(r) = o.rate {
            if !(r > 0.0 && r <= crate::load::MAX_RATE) {
                return Err(usage(format!(
                    "--rate {r} is out of range; use above 0 and at most {}",
                    crate::load::MAX_RATE
                )));
            }
            self.load.rate = r;
        }
        if let Some(d) = o.duration {
            if d.is_zero() {
                return Err(usage("--duration must be above 0, e.g. 30s"));
            }
            self.load.duration = d;
        }
        if let Some(w) = o.warmup {
            self.load.warmup = w;
        }
        let total = self.load.duration.saturating_add(self.load.warmup);
        if total > crate::load::MAX_DURATION {
            return Err(usage(format!(
                "warm-up plus duration is {:.0}s (--warmup/--duration or the stack's `load.warmup`/`load.duration`); the limit is {}s: pass a shorter --duration or --warmup",
                total.as_secs_f64(),
                crate::load::MAX_DURATION.as_secs()
            )));
        }
        if let Some(n) = o.frontends {
            if !(1..=MAX_REPLICAS).contains(&n) {
                return Err(usage(format!(
                    "--frontends {n}: N must be from 1 to {MAX_REPLICAS}"
                )));
            }
            let svc = self.load_balancer.service.clone();
            self.service_mut(&svc, "--frontends")?.replicas = n;
        }
        for r in &o.replicas {
            let (svc, n) = r.split_once('=').ok_or_else(|| {
                usage(format!(
                    "--replicas `{}`: write SERVICE=N, e.g. frontend=8",
                    escape_controls(r)
                ))
            })?;
            let n: u32 = n
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=MAX_REPLICAS).contains(n))
                .ok_or_else(|| {
                    usage(format!(
                        "--replicas `{}`: N must be from 1 to {MAX_REPLICAS}",
                        escape_controls(r)
                    ))
                })?;
            self.service_mut(svc.trim(), "--replicas")?.replicas = n;
        }
        for e in &o.env {
            let (svc, k, v) = self.env_flag("--env", e)?;
            self.service_mut(&svc, "--env")?.env.insert(k, v);
        }
        self.apply_canary(o)?;
        for e in &o.candidate_env {
            let (svc, k, v) = self.env_flag("--candidate-env", e)?;
            self.service_mut(&svc, "--candidate-env")?
                .candidate_env
                .insert(k, v);
        }
        for e in &o.baseline_env {
            if self.baseline().is_none() {
                return Err(usage(format!(
                    "--baseline-env `{}`: there is no baseline to give it to; pass --baseline ENV or set `baseline` in the stack's [canary] table",
                    escape_controls(e)
                )));
            }
            let (svc, k, v) = self.env_flag("--baseline-env", e)?;
            self.service_mut(&svc, "--baseline-env")?
                .baseline_env
                .insert(k, v);
        }
        let ratio = |x: f64, flag: &str| {
            if (0.0..=1.0).contains(&x) {
                Ok(x)
            } else {
                Err(usage(format!(
                    "{flag} {x} is out of range; write a ratio from 0 to 1"
                )))
            }
        };
        if let Some(x) = o.min_rate_ratio {
            self.thresholds.min_rate_ratio = ratio(x, "--min-rate-ratio")?;
        }
        if let Some(x) = o.min_success {
            self.thresholds.min_success = ratio(x, "--min-success")?;
        }
        if let Some(x) = o.max_p99_ms {
            if !(x > 0.0 && x.is_finite()) {
                return Err(usage(format!(
                    "--max-p99 {x} must be a positive number of milliseconds"
                )));
            }
            self.thresholds.max_p99_ms = x;
        }
        Ok(())
    }

    /// `--baseline` and `--no-canary` (which wins).
    fn apply_canary(&mut self, o: &Overrides) -> anyhow::Result<()> {
        if o.no_canary {
            if o.baseline.is_some() {
                return Err(usage(
                    "--baseline and --no-canary contradict each other: pass one",
                ));
            }
            self.canary = None;
            return Ok(());
        }
        if let Some(env) = &o.baseline {
            crate::repo::check_env_name(env).map_err(|m| usage(format!("--baseline: {m}")))?;
            self.canary.get_or_insert_with(CanarySpec::default).baseline = Some(env.clone());
        }
        Ok(())
    }

    /// The environment to compare with, if any.
    pub(crate) fn baseline(&self) -> Option<&str> {
        self.canary.as_ref().and_then(|c| c.baseline.as_deref())
    }

    /// Parses `SERVICE:KEY=VALUE` of `flag`; every problem is a usage error naming it.
    fn env_flag(&self, flag: &str, e: &str) -> anyhow::Result<(String, String, String)> {
        let form = || {
            usage(format!(
                "{flag} `{}`: write SERVICE:KEY=VALUE, e.g. backend:FAILURE_RATE=0.2",
                escape_controls(e)
            ))
        };
        let (svc, kv) = e.split_once(':').ok_or_else(form)?;
        let (k, v) = kv
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(form)?;
        if let Some(problem) = env_key_problem(k) {
            return Err(usage(format!(
                "{flag} `{}`: invalid environment variable name `{}`: it {problem}; {ENV_KEY_HELP}",
                escape_controls(e),
                escape_controls(k)
            )));
        }
        if let Some(problem) = env_value_problem(v) {
            return Err(usage(format!(
                "{flag} `{}`: the value {problem}, which Docker cannot pass",
                escape_controls(e)
            )));
        }
        let known: Vec<String> = self.services.iter().map(|s| s.name.clone()).collect();
        let refs =
            references(v).map_err(|m| usage(format!("{flag} `{}`: {m}", escape_controls(e))))?;
        for r in refs {
            if !known.contains(&r) || r == svc {
                return Err(usage(format!(
                    "{flag} `{}`: `{{{}}}` is not another service of the stack; services: {}",
                    escape_controls(e),
                    escape_controls(&r),
                    known.join(", ")
                )));
            }
        }
        Ok((svc.to_string(), k.to_string(), v.to_string()))
    }

    #[cfg(test)]
    pub(crate) fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}
