//! A `.changes` file beside each .deb (deb-changes(5), `Format: 1.8`), for the tools that
//! upload packages to repositories: reprepro `include`, aptly `repo include`, dput. It is
//! written unsigned (sign it with `debsign` where the repository asks for a signature);
//! `Changes` is the changelog's newest entry, as dpkg-genchanges takes it.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::recipe::Recipe;

/// The `.changes` path for a .deb: `<name>_<version>_<arch>.changes` in the same directory
/// (the version without its epoch, as in the .deb's own name).
pub(crate) fn path_for(deb: &Path) -> std::path::PathBuf {
    deb.with_extension("changes")
}

/// The newest entry of a changelog: (distribution, urgency, `Changed-By`, its lines).
fn newest(changelog: &str) -> (String, String, String, Vec<String>) {
    let mut lines = changelog.lines();
    let header = lines.next().unwrap_or_default();
    let (dist, urgency) = header
        .split_once(") ")
        .and_then(|(_, rest)| rest.split_once(';'))
        .map(|(d, f)| {
            let u = f
                .split(',')
                .find_map(|kv| kv.trim().strip_prefix("urgency="))
                .unwrap_or("medium");
            (d.trim().to_string(), u.trim().to_string())
        })
        .unwrap_or_else(|| ("unstable".into(), "medium".into()));
    let mut body = vec![header.to_string()];
    let mut by = String::new();
    for l in lines {
        if let Some(t) = l.strip_prefix(" -- ") {
            by = t.split_once("  ").map_or(t, |(w, _)| w).to_string();
            break;
        }
        body.push(l.to_string());
    }
    while body.last().is_some_and(|l| l.trim().is_empty()) {
        body.pop();
    }
    (dist, urgency, by, body)
}

/// The `.changes` text for `recipe`'s .deb at `deb`, dated `mtime`.
pub(crate) fn text(
    recipe: &Recipe,
    deb: &Path,
    changelog: &str,
    mtime: u64,
) -> anyhow::Result<String> {
    let p = &recipe.package;
    let mut f =
        std::fs::File::open(deb).with_context(|| format!("could not read `{}`", deb.display()))?;
    let (mut md5, mut sha1, mut sha256) = (Md5::new(), Sha1::new(), Sha256::new());
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("could not read `{}`", deb.display()))?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        sha1.update(&buf[..n]);
        sha256.update(&buf[..n]);
        size += n as u64;
    }
    let file = deb
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let source = p
        .source
        .as_deref()
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or(&p.name);
    let (dist, urgency, by, body) = newest(changelog);
    let date = crate::timefmt::rfc2822_secs(mtime as i64).replace(" UTC", " +0000");
    let mut t = String::new();
    let mut field = |k: &str, v: &str| {
        t.push_str(k);
        t.push_str(": ");
        t.push_str(v);
        t.push('\n');
    };
    field("Format", "1.8");
    field("Date", &date);
    field("Source", source);
    field("Binary", &p.name);
    field("Architecture", &p.architecture);
    field("Version", &p.version());
    field("Distribution", &dist);
    field("Urgency", &urgency);
    field("Maintainer", &p.maintainer);
    field(
        "Changed-By",
        if by.is_empty() { &p.maintainer } else { &by },
    );
    t.push_str(&format!("Description:\n {} - {}\n", p.name, p.synopsis));
    t.push_str("Changes:\n");
    for l in &body {
        if l.trim().is_empty() {
            t.push_str(" .\n");
        } else {
            t.push(' ');
            t.push_str(l);
            t.push('\n');
        }
    }
    t.push_str(&format!(
        "Checksums-Sha1:\n {} {size} {file}\nChecksums-Sha256:\n {} {size} {file}\nFiles:\n {} {size} {} {} {file}\n",
        hex::encode(sha1.finalize()),
        hex::encode(sha256.finalize()),
        hex::encode(md5.finalize()),
        p.section,
        p.priority,
    ));
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_entry_gives_distribution_urgency_and_changed_by() {
        let log = "a (2-1) bookworm; urgency=high\n\n  * Two.\n\n  * More.\n\n -- Dev <d@example.com>  Thu, 04 Dec 2026 10:00:00 +0000\n\na (1-1) unstable; urgency=low\n\n  * One.\n\n -- X <x@example.com>  Wed, 03 Dec 2026 10:00:00 +0000\n";
        let (dist, urgency, by, body) = newest(log);
        assert_eq!(
            (dist.as_str(), urgency.as_str(), by.as_str()),
            ("bookworm", "high", "Dev <d@example.com>")
        );
        assert_eq!(
            body,
            [
                "a (2-1) bookworm; urgency=high",
                "",
                "  * Two.",
                "",
                "  * More."
            ]
        );
    }
}
