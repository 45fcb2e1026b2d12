//! The smoke reports in `dist/smoke/<run>/`: `report.json` (everything, including the exact
//! artifacts under test, copied from `dist/manifest.json` so promotion can compare them byte
//! for byte; [`SmokeReport`] is also the type promotion reads it back as), `junit.xml` (one testcase per threshold) and `report.html` (see [`super::html`]).
//! A run that stopped before the gate (a deployment that never became healthy, a run over its
//! time budget) gets the same three files with one failed check saying why.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::deploy::Deployment;
use super::gate::{Check, ReportMode};
use super::monitor::{ContainerSummary, Restart};
use super::stack::{Overrides, Stack, Thresholds};
use crate::durable::write as write_atomic;
use crate::junit;
use crate::load::{LoadReport, Percentiles, Second};
use crate::manifest::Artifact;
use crate::sign::Signer;

/// What was run, as given.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Inputs {
    pub stack_file: String,
    pub overrides: Overrides,
    /// The stack after overrides, as deployed.
    pub stack: Stack,
}

/// One step of `--find-capacity`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CapacityStep {
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
pub(crate) struct Capacity {
    /// Highest step rate that passed every threshold (0 if none did).
    pub highest_passing_rate: f64,
    pub steps: Vec<CapacityStep>,
    pub step_duration_s: f64,
    pub step_warmup_s: f64,
}

/// `report.json`: written by the smoke stage, read back by promotion
/// (`crate::promote::smoke_report`), one type for both.
///
/// Promotion reads the verdict and what it approved: `run_id` (also spelled `run`), `mode`
/// (`gate` when absent), `passed`, `finished`, `artifacts`, `checks`, `reasons` and `error`,
/// tolerantly (unknown fields ignored, absent ones empty). Every field marked
/// `skip_deserializing` is the smoke stage's record of the run: never read back, so it is
/// empty (its default) in a report promotion read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SmokeReport {
    #[serde(skip_deserializing)]
    pub schema: u32,
    #[serde(alias = "run")]
    pub run_id: String,
    #[serde(default)]
    pub mode: ReportMode,
    pub passed: bool,
    #[serde(skip_deserializing)]
    pub started: String,
    #[serde(default)]
    pub finished: String,
    #[serde(skip_deserializing)]
    pub duration_s: f64,
    #[serde(skip_deserializing)]
    pub inputs: Inputs,
    /// The artifacts under test (every service's .deb and image), copied from the manifest.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// `dist/manifest.json`'s source commit, if any.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    /// `null` when the run stopped before every container was started.
    #[serde(skip_deserializing)]
    pub deployment: Option<Deployment>,
    #[serde(skip_deserializing)]
    pub thresholds: Thresholds,
    /// The thresholds and their outcomes, from which `passed` follows ([`verdict`]). Always
    /// written; `None` only in a report read without `checks`, whose verdict cannot be
    /// checked (promotion refuses it).
    ///
    /// [`verdict`]: super::gate::verdict
    #[serde(default)]
    pub checks: Option<Vec<Check>>,
    /// Messages of every broken threshold (empty when passed).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Why the run stopped before the gate (then `checks` holds that one failed check and
    /// `results` is `null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_deserializing)]
    pub percentiles: Percentiles,
    #[serde(skip_deserializing)]
    pub status_counts: std::collections::BTreeMap<String, u64>,
    #[serde(skip_deserializing)]
    pub error_counts: std::collections::BTreeMap<String, u64>,
    #[serde(skip_deserializing)]
    pub timeline: Vec<Second>,
    #[serde(skip_deserializing)]
    pub restarts: Vec<Restart>,
    #[serde(skip_deserializing)]
    pub containers: Vec<ContainerSummary>,
    /// The load generator's full report of the gated run; `null` when no load ran.
    #[serde(skip_deserializing)]
    pub results: Option<LoadReport>,
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
    /// The comparison with the baseline and the switch (`null`/absent without `[canary]`;
    /// promotion never reads it, so older reports read as before).
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub canary: Option<super::canary::CanaryReport>,
}

impl SmokeReport {
    pub(crate) const SCHEMA: u32 = 1;

    /// The checks (none in a report read without them).
    pub(crate) fn checks(&self) -> &[Check] {
        self.checks.as_deref().unwrap_or_default()
    }
}

/// The detached signature of `report.json` (armored OpenPGP, by the project's signing key):
/// what lets promotion trust the verdict and the artifact digests in the report.
pub(crate) const SIGNATURE_FILE: &str = "report.json.asc";

/// Writes report.json (with its signature when there is a key), junit.xml and report.html
/// into `dir`. The signature is written first: a report is never left looking signed by an
/// older signature.
pub(crate) fn write_all(
    dir: &Path,
    r: &SmokeReport,
    signer: Option<&Signer>,
) -> anyhow::Result<()> {
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
pub(crate) use crate::junit::esc;

/// The gate as a JUnit suite: a `<testcase>` per threshold; broken ones carry a `<failure>`
/// (of type `error` when the run stopped before the gate). The pipeline embeds this suite.
pub(crate) fn junit_suite(r: &SmokeReport) -> junit::Suite {
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
        .checks()
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
pub(crate) fn junit(r: &SmokeReport) -> String {
    junit::render(Some("builder smoke"), &[junit_suite(r)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::manifest::ArtifactKind;

    fn report() -> SmokeReport {
        // What promotion does not read comes back empty: a start for a report to write.
        let mut r: SmokeReport = serde_json::from_str(r#"{"run_id":"r1","passed":true}"#).unwrap();
        r.schema = SmokeReport::SCHEMA;
        r.mode = ReportMode::FindCapacity;
        r.started = "2030-01-01T00:00:00Z".into();
        r.finished = "2030-01-01T00:00:09Z".into();
        r.artifacts = vec![Artifact {
            kind: ArtifactKind::Image,
            name: "web".into(),
            version: "1.0".into(),
            architecture: Some("amd64".into()),
            path: "images/web_1.0.tar".into(),
            sha256: Digest::of(b"tar"),
            size: 3,
            image_id: Some(Digest::of(b"config")),
            digest: Some(Digest::of(b"manifest")),
            tag: Some("web:1.0".into()),
            source_commit: None,
        }];
        r.checks = Some(vec![Check {
            name: "capacity".into(),
            threshold: ">= 50 req/s".into(),
            actual: "60 req/s".into(),
            passed: true,
            message: "the deployment held 60 req/s".into(),
        }]);
        r
    }

    #[test]
    fn promotion_reads_back_what_smoke_writes() {
        let r = report();
        let json = serde_json::to_vec_pretty(&r).unwrap();
        let back: SmokeReport = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            (back.run_id.as_str(), back.mode, back.passed),
            ("r1", ReportMode::FindCapacity, true)
        );
        assert_eq!(back.finished, r.finished);
        assert_eq!(back.artifacts, r.artifacts);
        assert_eq!(back.checks, r.checks);
        // The spellings the file has always had: bare sha256, `sha256:` ids, kebab-case mode.
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["mode"], "find-capacity");
        assert_eq!(v["artifacts"][0]["kind"], "image");
        assert_eq!(v["artifacts"][0]["sha256"], Digest::of(b"tar").hex());
        assert_eq!(
            v["artifacts"][0]["image_id"],
            Digest::of(b"config").to_string()
        );
        // An artifact without `size` (promotion never read it) is still readable.
        let mut v = v;
        v["artifacts"][0].as_object_mut().unwrap().remove("size");
        let back: SmokeReport = serde_json::from_value(v).unwrap();
        assert_eq!(back.artifacts[0].size, 0);
        assert_eq!(back.artifacts[0].sha256, r.artifacts[0].sha256);
    }
}
