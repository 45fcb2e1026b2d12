//! `/usr/share/doc/<name>/changelog(.Debian).gz`: from a file in debian/changelog format
//! (`[package] changelog = "debian/changelog"`), generated from git between release tags
//! (`changelog = "git"`), or a one-entry stub. The format is deb-changelog(5): each entry
//! `name (version) distribution; urgency=u`, change lines indented by two spaces, and a
//! trailer ` -- Maintainer <email>  date`. When the recipe's version is not the file's
//! newest entry (a snapshot version from git), an entry for it goes on top, as
//! `gbp dch --snapshot` does; the file's own entries follow unchanged.

use std::path::Path;
use std::process::Command;

use crate::recipe::Recipe;

/// Most release tags a generated changelog covers, and change lines per entry.
const MAX_ENTRIES: usize = 100;
const MAX_LINES: usize = 200;

/// One parsed entry: its header fields and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub package: String,
    pub version: String,
    pub line: usize,
}

/// Checks `text` as deb-changelog(5) and returns its entries, newest first. Errors say the
/// line and what is wrong.
pub(crate) fn parse(text: &str) -> Result<Vec<Entry>, (usize, String)> {
    let mut entries = Vec::new();
    // In an entry: header seen, waiting for the trailer.
    let mut open: Option<(usize, bool)> = None; // (header line, has a change line)
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err((n, "the line holds a control character".into()));
        }
        if line.trim().is_empty() {
            continue;
        }
        match open {
            None => {
                if line.starts_with(' ') || line.starts_with('\t') {
                    return Err((
                        n,
                        "expected an entry header such as `name (1.0-1) unstable; urgency=medium`"
                            .into(),
                    ));
                }
                let (package, rest) = line.split_once(" (").ok_or_else(|| {
                    (
                        n,
                        "expected `name (version) distribution; urgency=...`".to_string(),
                    )
                })?;
                let (version, rest) = rest
                    .split_once(')')
                    .ok_or_else(|| (n, "the version is not closed by `)`".to_string()))?;
                crate::recipe::debian::check_name(package).map_err(|e| (n, e))?;
                crate::recipe::debian::parse_version(version).map_err(|e| (n, e))?;
                let (dist, fields) = rest.split_once(';').ok_or_else(|| {
                    (
                        n,
                        "expected `; urgency=...` after the distribution".to_string(),
                    )
                })?;
                if dist.trim().is_empty() || !fields.contains("urgency=") {
                    return Err((n, "expected a distribution and `urgency=...`".into()));
                }
                entries.push(Entry {
                    package: package.to_string(),
                    version: version.to_string(),
                    line: n,
                });
                open = Some((n, false));
            }
            Some((start, changed)) => {
                if let Some(trailer) = line.strip_prefix(" -- ") {
                    let (who, date) = trailer.split_once("  ").ok_or_else(|| {
                        (
                            n,
                            "the trailer is ` -- Name <email>  date` (two spaces before the date)"
                                .to_string(),
                        )
                    })?;
                    if !(who.contains('<') && who.ends_with('>')) {
                        return Err((
                            n,
                            "the trailer names the maintainer as `Name <email>`".into(),
                        ));
                    }
                    if crate::debian::release::parse_date(date.trim()).is_err() {
                        return Err((n, format!("`{}` is not an RFC 2822 date such as `Thu, 04 Dec 2026 10:00:00 +0000`", date.trim())));
                    }
                    if !changed {
                        return Err((start, "the entry has no change lines".into()));
                    }
                    open = None;
                } else if line.starts_with("  ") || line.starts_with('\t') {
                    open = Some((start, true));
                } else {
                    return Err((
                        n,
                        format!("expected change lines (indented by two spaces) or the trailer ` -- Name <email>  date` of the entry at line {start}"),
                    ));
                }
            }
        }
    }
    if let Some((start, _)) = open {
        return Err((
            start,
            "the entry has no trailer ` -- Name <email>  date`".into(),
        ));
    }
    if entries.is_empty() {
        return Err((1, "the changelog has no entry".into()));
    }
    Ok(entries)
}

/// One entry in deb-changelog(5) form.
fn entry(name: &str, version: &str, changes: &[String], who: &str, when: i64) -> String {
    let mut t = format!("{name} ({version}) unstable; urgency=medium\n\n");
    for c in changes.iter().take(MAX_LINES) {
        t.push_str("  * ");
        t.push_str(c);
        t.push('\n');
    }
    if changes.len() > MAX_LINES {
        t.push_str(&format!(
            "  * ... and {} more changes.\n",
            changes.len() - MAX_LINES
        ));
    }
    let date = crate::timefmt::rfc2822_secs(when).replace(" UTC", " +0000");
    t.push_str(&format!("\n -- {who}  {date}\n"));
    t
}

/// The changelog text of `recipe` at `version`, dated `mtime` where nothing else dates it.
pub(crate) fn text(recipe: &Recipe, mtime: u64) -> anyhow::Result<String> {
    let p = &recipe.package;
    let version = p.version();
    let who = p.maintainer.as_str();
    let own = format!(
        "Packaged by builder from recipe {}.",
        recipe
            .file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    match &p.changelog {
        crate::recipe::Changelog::Stub => Ok(entry(&p.name, &version, &[own], who, mtime as i64)),
        crate::recipe::Changelog::File(rel) => {
            let path = recipe.project.join(rel);
            let file = std::fs::read_to_string(&path).map_err(|e| {
                crate::error::usage(format!(
                    "could not read the changelog `{}`: {e}",
                    path.display()
                ))
            })?;
            let entries = parse(&file).map_err(|(line, e)| {
                crate::error::usage(format!("{}:{line}: {e}", path.display()))
            })?;
            if entries[0].version == version {
                return Ok(file);
            }
            let top = entry(
                &entries[0].package,
                &version,
                &[format!(
                    "Snapshot {version}, after {}. {own}",
                    entries[0].version
                )],
                who,
                mtime as i64,
            );
            Ok(format!("{top}\n{file}"))
        }
        crate::recipe::Changelog::Git => from_git(recipe, &version, mtime),
    }
}

fn git(project: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(project)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| crate::error::usage(format!("`changelog = \"git\"` needs git: {e}")))?;
    if !out.status.success() {
        return Err(crate::error::usage(format!(
            "`changelog = \"git\"`: `git {}` failed in `{}`: {}",
            args.join(" "),
            project.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Subjects of the non-merge commits in `range`, oldest last, cleaned of control characters.
fn subjects(project: &Path, range: &str) -> anyhow::Result<Vec<String>> {
    Ok(git(project, &["log", "--no-merges", "--format=%s", range])?
        .lines()
        .map(|l| l.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|l| !l.trim().is_empty())
        .collect())
}

/// Entries from git: one per release tag reachable from HEAD (newest first, by version
/// order), each listing the commits since the previous tag, and one for HEAD's own version
/// when HEAD is not at the newest tag.
fn from_git(recipe: &Recipe, version: &str, mtime: u64) -> anyhow::Result<String> {
    let p = &recipe.package;
    let project = &recipe.project;
    let rev = p.revision.as_deref();
    let mut tags: Vec<(String, String)> = git(
        project,
        &["tag", "--merged", "HEAD", "--list", "v[0-9]*", "[0-9]*"],
    )?
    .lines()
    .filter_map(|t| Some((t.to_string(), crate::recipe::vars::tag_version(t)?)))
    .collect();
    tags.sort_by(|a, b| crate::repo::version::compare(&b.1, &a.1));
    tags.truncate(MAX_ENTRIES);
    let dated = |rev: &str| -> anyhow::Result<(String, i64)> {
        let t = git(project, &["log", "-1", "--format=%an <%ae>%x00%ct", rev])?;
        let (who, when) = t.trim_end().split_once('\0').unwrap_or((t.trim_end(), "0"));
        Ok((who.to_string(), when.parse().unwrap_or(mtime as i64)))
    };
    let full = |v: &str| match rev {
        Some(r) => format!("{v}-{r}"),
        None => v.to_string(),
    };
    let mut out = Vec::new();
    let newest_tag = tags.first().map(|t| t.0.clone());
    let head_at_tag = match &newest_tag {
        Some(t) => {
            git(project, &["rev-list", "-n1", t])?.trim()
                == git(project, &["rev-parse", "HEAD"])?.trim()
        }
        None => false,
    };
    if !head_at_tag || tags.first().is_some_and(|t| full(&t.1) != version) {
        let range = match &newest_tag {
            Some(t) => format!("{t}..HEAD"),
            None => "HEAD".to_string(),
        };
        let mut changes = subjects(project, &range)?;
        if changes.is_empty() {
            changes.push("No changes since the last release.".into());
        }
        let (_, when) = dated("HEAD")?;
        out.push(entry(&p.name, version, &changes, &p.maintainer, when));
    }
    for (i, (tag, v)) in tags.iter().enumerate() {
        let range = match tags.get(i + 1) {
            Some((older, _)) => format!("{older}..{tag}"),
            None => tag.clone(),
        };
        let mut changes = subjects(project, &range)?;
        if changes.is_empty() {
            changes.push(format!("Release {v}."));
        }
        let (who, when) = dated(tag)?;
        let who = if crate::recipe::debian::check_maintainer(&who).is_ok() {
            who
        } else {
            p.maintainer.clone()
        };
        out.push(entry(&p.name, &full(v), &changes, &who, when));
    }
    Ok(out.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_debian_writes_and_names_the_line_of_a_mistake() {
        let good = "demo (1.1-1) unstable; urgency=medium\n\n  * Two.\n    More.\n\n -- A B <a@example.com>  Thu, 04 Dec 2026 10:00:00 +0000\n\ndemo (1.0-1) unstable; urgency=low\n\n  * One.\n\n -- A B <a@example.com>  Wed, 03 Dec 2026 10:00:00 +0000\n";
        let e = parse(good).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].version.as_str(), e[1].line), ("1.1-1", 8));
        let bad = good.replace("  Thu,", " Thu,");
        assert_eq!(parse(&bad).unwrap_err().0, 6);
        let no_urgency = good.replace("; urgency=medium", "");
        assert_eq!(parse(&no_urgency).unwrap_err().0, 1);
        let no_trailer = "demo (1.0) unstable; urgency=low\n\n  * One.\n";
        assert_eq!(parse(no_trailer).unwrap_err().0, 1);
        assert!(parse("").is_err());
    }
}
