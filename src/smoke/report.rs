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

/// Escapes text for XML/HTML attribute and element content. Characters XML 1.0 does not
/// allow at all (control characters such as the ESC of a build log's colour codes, U+FFFE,
/// U+FFFF) become spaces, so a report stays parseable whatever it quotes.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            '\u{FFFE}' | '\u{FFFF}' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// One `<testsuite>` with a `<testcase>` per threshold; broken ones carry a `<failure>`.
pub fn junit(r: &SmokeReport) -> String {
    let failures = r.checks.iter().filter(|c| !c.passed).count();
    let time = r.results.as_ref().map_or(r.duration_s, |l| l.duration_s);
    let kind = if r.error.is_some() {
        "error"
    } else {
        "threshold"
    };
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"builder smoke\" tests=\"{}\" failures=\"{failures}\" time=\"{time:.3}\">\n",
        r.checks.len()
    ));
    x.push_str(&format!(
        "  <testsuite name=\"smoke {}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\" timestamp=\"{}\">\n",
        esc(&r.run_id),
        r.checks.len(),
        esc(&r.started)
    ));
    x.push_str("    <properties>\n");
    let mut prop = |k: &str, v: &str| {
        x.push_str(&format!(
            "      <property name=\"{}\" value=\"{}\"/>\n",
            esc(k),
            esc(v)
        ))
    };
    prop("run_id", &r.run_id);
    prop("stack", &r.inputs.stack_file);
    prop("rate", &r.inputs.stack.load.rate.to_string());
    for a in &r.artifacts {
        prop(&format!("{}:{}", a.kind, a.name), &a.sha256.hex());
    }
    x.push_str("    </properties>\n");
    for c in &r.checks {
        x.push_str(&format!(
            "    <testcase classname=\"smoke.gate\" name=\"{}\" time=\"{time:.3}\">\n",
            esc(&c.name)
        ));
        if c.passed {
            x.push_str(&format!(
                "      <system-out>{}: {} (threshold {})</system-out>\n",
                esc(&c.name),
                esc(&c.actual),
                esc(&c.threshold)
            ));
        } else {
            x.push_str(&format!(
                "      <failure message=\"{}\" type=\"{kind}\">{} (threshold {}, actual {})</failure>\n",
                esc(c.message.lines().next().unwrap_or_default()),
                esc(&c.message),
                esc(&c.threshold),
                esc(&c.actual)
            ));
        }
        x.push_str("    </testcase>\n");
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn esc_keeps_reports_parseable() {
        assert_eq!(
            esc("\u{1b}[31merror\u{1b}[0m: a<b & \"c\"\tok\n"),
            " [31merror [0m: a&lt;b &amp; &quot;c&quot;\tok\n"
        );
        assert_eq!(esc("\u{0}\u{7}\u{FFFE}é'"), "   é&apos;");
    }
}
