//! Reading the smoke stage's reports (`dist/smoke/<run>/report.json`) as promotion's input:
//! which run is the latest, whether it passed, and the artifacts (with digests) it approved.
//!
//! Tolerant by design: unknown fields are ignored (the smoke stage owns the format and adds
//! to it); the fields promotion relies on are required.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The part of a smoke report promotion reads.
#[derive(Debug, Clone, Deserialize)]
pub struct SmokeReport {
    /// The run id (`run_id` in the smoke stage's own writer).
    #[serde(alias = "run_id")]
    pub run: String,
    #[serde(default)]
    pub finished: String,
    pub passed: bool,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub artifacts: Vec<ReportArtifact>,
    /// Where it was read from (not in the file).
    #[serde(skip)]
    pub path: PathBuf,
}

/// An artifact as `dist/manifest.json` describes it, copied into the report.
#[derive(Debug, Clone, Deserialize)]
pub struct ReportArtifact {
    /// `deb` or `image`.
    pub kind: String,
    pub name: String,
    pub version: String,
    /// Relative to dist/.
    pub path: String,
    pub sha256: String,
    #[serde(default)]
    pub image_id: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
}

pub fn smoke_dir(dist: &Path) -> PathBuf {
    dist.join("smoke")
}

/// Reads one report.
pub fn read(path: &Path) -> anyhow::Result<SmokeReport> {
    let bytes =
        std::fs::read(path).with_context(|| format!("could not read `{}`", path.display()))?;
    let mut r: SmokeReport = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "`{}` is not a smoke report promotion can read (it needs `run`, `passed` and \
             `artifacts`); run `builder smoke` again",
            path.display()
        )
    })?;
    r.path = path.to_path_buf();
    Ok(r)
}

/// Every complete report under `dist/smoke/` (runs still in progress have no report.json).
pub fn all(dist: &Path) -> anyhow::Result<Vec<SmokeReport>> {
    let dir = smoke_dir(dist);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("could not list `{}`", dir.display())),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.with_context(|| format!("could not list `{}`", dir.display()))?;
        let p = ent.path().join("report.json");
        if p.is_file() {
            out.push(read(&p)?);
        }
    }
    Ok(out)
}

/// The most recently finished report (by `finished`, then by file modification time).
pub fn latest(dist: &Path) -> anyhow::Result<Option<SmokeReport>> {
    let mut reports = all(dist)?;
    let mtime = |r: &SmokeReport| {
        std::fs::metadata(&r.path)
            .and_then(|m| m.modified())
            .ok()
            .unwrap_or(std::time::UNIX_EPOCH)
    };
    reports.sort_by(|a, b| {
        a.finished
            .cmp(&b.finished)
            .then_with(|| mtime(a).cmp(&mtime(b)))
    });
    Ok(reports.pop())
}

/// The report of run `run`: `dist/smoke/<run>/report.json`, else any report whose `run` is it.
pub fn find(dist: &Path, run: &str) -> anyhow::Result<Option<SmokeReport>> {
    let direct = smoke_dir(dist).join(run).join("report.json");
    if !run.contains('/') && direct.is_file() {
        let r = read(&direct)?;
        if r.run == run {
            return Ok(Some(r));
        }
    }
    Ok(all(dist)?.into_iter().find(|r| r.run == run))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, run: &str, json: &str) {
        let d = dir.join("smoke").join(run);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("report.json"), json).unwrap();
    }

    #[test]
    fn reads_both_field_spellings_ignores_extra_fields_and_picks_the_latest() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "a",
            r#"{"schema":1,"run_id":"a","mode":"gate","finished":"2030-01-01T00:00:02Z",
                "passed":false,"reasons":["p99 too high"],"artifacts":[{"kind":"deb",
                "name":"x","version":"1","architecture":"amd64","path":"debs/x.deb",
                "sha256":"00","size":3}],"percentiles":{"p50":1}}"#,
        );
        write(
            t.path(),
            "b",
            r#"{"run":"b","finished":"2030-01-01T00:00:01Z","passed":true,"artifacts":[]}"#,
        );
        // A run still in progress has a directory but no report.
        std::fs::create_dir_all(t.path().join("smoke/c")).unwrap();
        let latest = latest(t.path()).unwrap().unwrap();
        assert_eq!(latest.run, "a");
        assert!(!latest.passed);
        assert_eq!(latest.reasons, ["p99 too high"]);
        assert_eq!(latest.artifacts[0].path, "debs/x.deb");
        assert_eq!(find(t.path(), "b").unwrap().unwrap().run, "b");
        assert!(find(t.path(), "zzz").unwrap().is_none());
        assert!(latest_or_none_when_empty());
    }

    fn latest_or_none_when_empty() -> bool {
        let t = tempfile::tempdir().unwrap();
        latest(t.path()).unwrap().is_none()
    }

    #[test]
    fn a_report_without_passed_is_an_error_naming_the_file() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "a", r#"{"run":"a"}"#);
        let err = format!("{:#}", latest(t.path()).unwrap_err());
        assert!(
            err.contains("report.json") && err.contains("passed"),
            "{err}"
        );
    }
}
