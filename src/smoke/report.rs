//! The smoke reports in `dist/smoke/<run>/`: `report.json` (everything, including the exact
//! artifacts under test, copied from `dist/manifest.json` so promotion can compare them byte
//! for byte), `junit.xml` (one testcase per threshold) and `report.html` (see [`super::html`]).
//! A run that stopped before the gate (a deployment that never became healthy, a run over its
//! time budget) gets the same three files with one failed check saying why.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::deploy::Deployment;
use super::gate::Check;
use super::monitor::{ContainerSummary, Restart};
use super::stack::{Overrides, Stack, Thresholds};
use crate::durable::write as write_atomic;
use crate::junit;
use crate::load::{LoadReport, Percentiles, Second};
use crate::manifest::Artifact;
use crate::sign::Signer;

/// What was run, as given.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    pub stack_file: String,
    pub overrides: Overrides,
    /// The stack after overrides, as deployed.
    pub stack: Stack,
}

/// One step of `--find-capacity`.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityStep {
    pub rate: f64,
    pub achieved_rate: f64,
    pub success_ratio: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub passed: bool,
    /// Messages of the thresholds that broke.
    pub broken: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    /// Highest step rate that passed every threshold (0 if none did).
    pub highest_passing_rate: f64,
    pub steps: Vec<CapacityStep>,
    pub step_duration_s: f64,
    pub step_warmup_s: f64,
}

/// `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct SmokeReport {
    pub schema: u32,
    pub run_id: String,
    /// `gate` or `find-capacity`.
    pub mode: String,
    pub passed: bool,
    pub started: String,
    pub finished: String,
    pub duration_s: f64,
    pub inputs: Inputs,
    /// The artifacts under test (every service's .deb and image), copied from the manifest.
    pub artifacts: Vec<Artifact>,
    /// `dist/manifest.json`'s source commit, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    /// `null` when the run stopped before every container was started.
    pub deployment: Option<Deployment>,
    pub thresholds: Thresholds,
    pub checks: Vec<Check>,
    /// Messages of every broken threshold (empty when passed).
    pub reasons: Vec<String>,
    /// Why the run stopped before the gate (then `checks` holds that one failed check and
    /// `results` is `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub percentiles: Percentiles,
    pub status_counts: std::collections::BTreeMap<String, u64>,
    pub error_counts: std::collections::BTreeMap<String, u64>,
    pub timeline: Vec<Second>,
    pub restarts: Vec<Restart>,
    pub containers: Vec<ContainerSummary>,
    /// The load generator's full report of the gated run; `null` when no load ran.
    pub results: Option<LoadReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
}

impl SmokeReport {
    pub const SCHEMA: u32 = 1;
}

/// The detached signature of `report.json` (armored OpenPGP, by the project's signing key):
/// what lets promotion trust the verdict and the artifact digests in the report.
pub const SIGNATURE_FILE: &str = "report.json.asc";

/// Writes report.json (with its signature when there is a key), junit.xml and report.html
/// into `dir`. The signature is written first: a report is never left looking signed by an
/// older signature.
pub fn write_all(dir: &Path, r: &SmokeReport, signer: Option<&Signer>) -> anyhow::Result<()> {
    let mut json = serde_json::to_vec_pretty(r)?;
    json.push(b'\n');
    let signature = dir.join(SIGNATURE_FILE);
    match signer {
        Some(s) => write_atomic(&signature, &s.detached_sign(&json)?)?,
        None => match std::fs::remove_file(&signature) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e)
                    .with_context(|| format!("could not remove `{}`", signature.display()))
            }
            _ => {}
        },
    }
    write_atomic(&dir.join("report.json"), &json)?;
    write_atomic(&dir.join("junit.xml"), junit(r).as_bytes())?;
    write_atomic(&dir.join("report.html"), super::html::render(r).as_bytes())?;
    Ok(())
}

/// The XML escaping the JUnit writer uses, for the HTML report too.
pub use crate::junit::esc;

/// The gate as a JUnit suite: a `<testcase>` per threshold; broken ones carry a `<failure>`
/// (of type `error` when the run stopped before the gate). The pipeline embeds this suite.
pub fn junit_suite(r: &SmokeReport) -> junit::Suite {
    let time = r.results.as_ref().map_or(r.duration_s, |l| l.duration_s);
    let kind = if r.error.is_some() {
        "error"
    } else {
        "threshold"
    };
    let mut properties = vec![
        ("run_id".to_string(), r.run_id.clone()),
        ("stack".to_string(), r.inputs.stack_file.clone()),
        ("rate".to_string(), r.inputs.stack.load.rate.to_string()),
    ];
    for a in &r.artifacts {
        properties.push((format!("{}:{}", a.kind, a.name), a.sha256.hex()));
    }
    let cases = r
        .checks
        .iter()
        .map(|c| junit::Case {
            classname: "smoke.gate".into(),
            name: c.name.clone(),
            time,
            outcome: if c.passed {
                junit::Outcome::Passed(Some(format!(
                    "{}: {} (threshold {})",
                    c.name, c.actual, c.threshold
                )))
            } else {
                junit::Outcome::Failed {
                    message: c.message.lines().next().unwrap_or_default().to_string(),
                    kind: Some(kind.to_string()),
                    text: format!(
                        "{} (threshold {}, actual {})",
                        c.message, c.threshold, c.actual
                    ),
                }
            },
        })
        .collect();
    junit::Suite {
        name: format!("smoke {}", r.run_id),
        time,
        timestamp: r.started.clone(),
        properties,
        cases,
        counts: junit::Counts::Errors,
    }
}

/// `junit.xml` of a smoke run: the gate's suite in a `<testsuites name="builder smoke">`.
pub fn junit(r: &SmokeReport) -> String {
    junit::render(Some("builder smoke"), &[junit_suite(r)])
}
