//! Reading the smoke stage's reports (`dist/smoke/<run>/report.json`) as promotion's input:
//! which run is the latest, whether it passed, and the artifacts (with digests) it approved.
//!
//! Tolerant by design: unknown fields are ignored (the smoke stage owns the format and adds
//! to it); the fields promotion relies on are required, and their values are checked as they
//! are read (artifact kinds, digests, the mode).
//!
//! Trusted only when verified ([`verify`]): the report's detached signature
//! (`report.json.asc`) must be by the key promotion signs with, and its `passed` must be what
//! its checks say. Reading alone trusts nothing.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::error::failed;
use crate::report::Reporter;
use crate::sign::Signer;
use crate::smoke::report::SmokeReport;

/// A smoke report as promotion read it: the smoke stage's own [`SmokeReport`] (the one type
/// for the file, which says what promotion reads of it), where it was read from and its bytes
/// as signed.
#[derive(Debug, Clone)]
pub(crate) struct ReadReport {
    pub report: SmokeReport,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

pub(crate) fn smoke_dir(dist: &Path) -> PathBuf {
    dist.join("smoke")
}

/// Reads one report.
pub(crate) fn read(path: &Path) -> anyhow::Result<ReadReport> {
    let bytes =
        std::fs::read(path).with_context(|| format!("could not read `{}`", path.display()))?;
    let report: SmokeReport = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "`{}` is not a smoke report promotion can read (it needs `run`, `passed` and \
             `artifacts`); run `builder smoke` again",
            path.display()
        )
    })?;
    Ok(ReadReport {
        report,
        path: path.to_path_buf(),
        bytes,
    })
}

/// Checks that `r` is what `builder smoke` wrote and signed with `signer`'s key, and that its
/// verdict follows from its checks. Errors say what is wrong and what to do.
pub(crate) fn verify(read: &ReadReport, signer: &Signer) -> anyhow::Result<()> {
    let r = &read.report;
    let sig_path = read
        .path
        .with_file_name(crate::smoke::report::SIGNATURE_FILE);
    let signature = match std::fs::read(&sig_path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(failed(format!(
                "smoke run {} is not signed (`{}` is missing): promotion only trusts reports \
                 that `builder smoke` signed with this project's key {}; run `builder smoke` \
                 again with that key configured (`{}`, `signing_key` in promote.toml or \
                 `--signing-key`)",
                r.run_id,
                sig_path.display(),
                signer.fingerprint(),
                crate::sign::ENV_KEY_FILE
            )))
        }
        Err(e) => {
            return Err(e).with_context(|| format!("could not read `{}`", sig_path.display()))
        }
    };
    signer
        .verify_detached(&read.bytes, &signature)
        .map_err(|e| {
            failed(format!(
            "smoke run {}: the report `{}` cannot be trusted: {e:#}; run `builder smoke` again \
             on what you mean to ship",
            r.run_id,
            read.path.display()
        ))
        })?;
    let mode = r.mode;
    let Some(checks) = &r.checks else {
        return Err(failed(format!(
            "smoke run {}: the report `{}` has no `checks`, so its verdict cannot be checked; \
             run `builder smoke` again",
            r.run_id,
            read.path.display()
        )));
    };
    let verdict = r.error.is_none() && crate::smoke::gate::verdict(mode, checks);
    if r.passed != verdict {
        let failed_checks: Vec<&str> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        let why = match (&r.error, failed_checks.is_empty(), checks.is_empty()) {
            (Some(e), _, _) => format!("the run stopped before the gate ({e})"),
            (None, _, true) => "it has no checks".to_string(),
            (None, true, false) => format!("every check passed in mode `{mode}`"),
            (None, false, false) => format!("these checks failed: {}", failed_checks.join(", ")),
        };
        return Err(failed(format!(
            "smoke run {}: the report `{}` says passed = {}, but {why}; the report is \
             inconsistent: run `builder smoke` again",
            r.run_id,
            read.path.display(),
            r.passed
        )));
    }
    Ok(())
}

/// The reports under `dist/smoke/`: those promotion can read, and those it cannot.
#[derive(Debug, Default)]
pub(crate) struct Reports {
    pub readable: Vec<ReadReport>,
    /// `report.json` files that cannot be read or parsed, with why.
    pub unreadable: Vec<(PathBuf, anyhow::Error)>,
}

/// Every complete report under `dist/smoke/` (runs still in progress have no report.json).
/// One damaged report does not hide the others: it goes to `unreadable`.
pub(crate) fn all(dist: &Path) -> anyhow::Result<Reports> {
    let dir = smoke_dir(dist);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Reports::default()),
        Err(e) => return Err(e).with_context(|| format!("could not list `{}`", dir.display())),
    };
    let mut out = Reports::default();
    for ent in rd {
        let ent = ent.with_context(|| format!("could not list `{}`", dir.display()))?;
        let p = ent.path().join("report.json");
        if p.is_file() {
            match read(&p) {
                Ok(r) => out.readable.push(r),
                Err(e) => out.unreadable.push((p, e)),
            }
        }
    }
    Ok(out)
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .unwrap_or(std::time::UNIX_EPOCH)
}

fn warn_unreadable(reporter: &Reporter, unreadable: &[(PathBuf, anyhow::Error)]) {
    for (p, e) in unreadable {
        reporter.warn(format!(
            "skipping `{}`: {e:#}; delete it (or its run directory) if that run is not needed",
            p.display()
        ));
    }
}

/// Every readable report, oldest first (by `finished`, then by file modification time);
/// unreadable ones are skipped with a warning.
pub(crate) fn sorted(dist: &Path, reporter: &Reporter) -> anyhow::Result<Vec<ReadReport>> {
    let reports = all(dist)?;
    warn_unreadable(reporter, &reports.unreadable);
    Ok(sorted_reports(reports.readable))
}

/// The most recently finished report (by `finished`, then by file modification time).
/// Unreadable reports are skipped with a warning, unless one is newer than every readable
/// one: then the latest run's result is unknown, which is an error.
pub(crate) fn latest(dist: &Path, reporter: &Reporter) -> anyhow::Result<Option<ReadReport>> {
    let Reports {
        readable,
        unreadable,
    } = all(dist)?;
    let newest_ok = readable.iter().map(|r| mtime(&r.path)).max();
    if let Some((p, e)) = unreadable
        .iter()
        .find(|(p, _)| newest_ok.is_none_or(|t| mtime(p) > t))
    {
        return Err(crate::error::failed(format!(
            "the newest smoke report `{}` cannot be read ({e:#}), so the latest run's result is \
             unknown; run `builder smoke` again, or delete it to promote an older run",
            p.display()
        )));
    }
    let mut readable = sorted_reports(readable);
    warn_unreadable(reporter, &unreadable);
    Ok(readable.pop())
}

fn sorted_reports(mut reports: Vec<ReadReport>) -> Vec<ReadReport> {
    reports.sort_by(|a, b| {
        a.report
            .finished
            .cmp(&b.report.finished)
            .then_with(|| mtime(&a.path).cmp(&mtime(&b.path)))
    });
    reports
}

/// The report of run `run`: `dist/smoke/<run>/report.json` (an error when unreadable), else
/// any readable report whose `run` is it (unreadable ones are skipped with a warning).
pub(crate) fn find(
    dist: &Path,
    run: &str,
    reporter: &Reporter,
) -> anyhow::Result<Option<ReadReport>> {
    let direct = smoke_dir(dist).join(run).join("report.json");
    if !run.contains('/') && direct.is_file() {
        let r = read(&direct)?;
        if r.report.run_id == run {
            return Ok(Some(r));
        }
    }
    let reports = all(dist)?;
    let found = reports
        .readable
        .into_iter()
        .find(|r| r.report.run_id == run);
    if found.is_none() {
        warn_unreadable(reporter, &reports.unreadable);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> Reporter {
        Reporter::quiet()
    }

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
                "sha256":"sha256:ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB","size":3}],"percentiles":{"p50":1}}"#,
        );
        write(
            t.path(),
            "b",
            r#"{"run":"b","finished":"2030-01-01T00:00:01Z","passed":true,"artifacts":[]}"#,
        );
        // A run still in progress has a directory but no report.
        std::fs::create_dir_all(t.path().join("smoke/c")).unwrap();
        let latest = latest(t.path(), &q()).unwrap().unwrap().report;
        assert_eq!(latest.run_id, "a");
        assert!(!latest.passed);
        assert_eq!(latest.reasons, ["p99 too high"]);
        assert_eq!(latest.artifacts[0].path, "debs/x.deb");
        assert_eq!(
            find(t.path(), "b", &q()).unwrap().unwrap().report.run_id,
            "b"
        );
        assert!(find(t.path(), "zzz", &q()).unwrap().is_none());
        assert!(latest_or_none_when_empty());
    }

    fn latest_or_none_when_empty() -> bool {
        let t = tempfile::tempdir().unwrap();
        latest(t.path(), &q()).unwrap().is_none()
    }

    #[test]
    fn a_report_without_passed_is_an_error_naming_the_file() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "a", r#"{"run":"a"}"#);
        let err = format!("{:#}", latest(t.path(), &q()).unwrap_err());
        assert!(
            err.contains("report.json") && err.contains("passed"),
            "{err}"
        );
    }

    #[test]
    fn an_unreadable_older_report_is_skipped_but_not_when_asked_for() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "old", "{");
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(
            t.path(),
            "new",
            r#"{"run":"new","passed":true,"artifacts":[]}"#,
        );
        assert_eq!(
            latest(t.path(), &q()).unwrap().unwrap().report.run_id,
            "new"
        );
        assert_eq!(
            find(t.path(), "new", &q()).unwrap().unwrap().report.run_id,
            "new"
        );
        let err = format!("{:#}", find(t.path(), "old", &q()).unwrap_err());
        assert!(err.contains("old/report.json"), "{err}");
    }

    #[test]
    fn bad_kinds_digests_and_modes_are_refused_naming_the_file() {
        let sha = crate::digest::Digest::of(b"x").hex();
        let id = crate::digest::Digest::of(b"x").to_string();
        for (mode, kind, image_id, want) in [
            ("fast", "image", id.as_str(), "unknown variant `fast`"),
            ("gate", "rpm", &id, "unknown variant `rpm`"),
            (
                "gate",
                "image",
                "sha256:zz",
                "`sha256:zz` is not a sha256 digest",
            ),
        ] {
            let t = tempfile::tempdir().unwrap();
            write(
                t.path(),
                "a",
                &format!(
                    r#"{{"run":"a","mode":"{mode}","passed":true,"artifacts":[{{"kind":"{kind}",
                        "name":"x","version":"1","path":"images/x.tar","sha256":"{sha}",
                        "size":3,"image_id":"{image_id}"}}]}}"#
                ),
            );
            let err = format!("{:#}", find(t.path(), "a", &q()).unwrap_err());
            assert!(
                err.contains("smoke/a/report.json") && err.contains(want),
                "{want}: {err}"
            );
        }
    }
}
