//! `history.jsonl`: one JSON line per change of an environment repository (publish, rollback,
//! prune): when, which generation, which artifacts (packages and images) with digests, from
//! where (smoke run ids, source environment), by whom.

use std::io::Write;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::store::Layout;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryArtifact {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Bare hex on disk.
    #[serde(with = "crate::digest::bare")]
    pub sha256: crate::digest::Digest,
    pub size: u64,
    /// The smoke run whose passed report approved this package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// What a history line records; written as `publish`, `rollback` or `prune`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryAction {
    Publish,
    Rollback,
    Prune,
}

impl HistoryAction {
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryAction::Publish => "publish",
            HistoryAction::Rollback => "rollback",
            HistoryAction::Prune => "prune",
        }
    }
}

impl std::fmt::Display for HistoryAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub time: String,
    pub generation: u64,
    pub action: HistoryAction,
    /// publish: the artifacts added; rollback: what the restored generation holds;
    /// prune: the versions removed.
    pub artifacts: Vec<HistoryArtifact>,
    /// A smoke report path, a source environment, or what the caller says.
    pub source: String,
    pub who: String,
    /// rollback: the generation whose contents were restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<u64>,
    /// Images added (publish) or restored (rollback), with their digests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<super::images::ImageEntry>,
    /// The smoke run ids whose passed reports approved what was added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<String>,
    /// promote --from: the environment the artifacts came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_env: Option<String>,
}

/// `$GITLAB_USER_LOGIN`, `$GITHUB_ACTOR`, then `$USER`.
pub(crate) fn who() -> String {
    ["GITLAB_USER_LOGIN", "GITHUB_ACTOR", "USER"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// Every line of the history that reads, oldest first.
pub(crate) fn read(layout: &Layout) -> anyhow::Result<Vec<HistoryEntry>> {
    read_checked(layout).map(|h| h.entries)
}

/// A `history.jsonl` line that does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadLine {
    /// 1-based.
    pub line: usize,
    pub problem: String,
    /// Not a JSON line at all: a write cut by a crash (or bytes damaged on disk), which
    /// builder expects and reads around. Otherwise a whole line with a damaged field.
    pub torn: bool,
}

/// The history and the lines it skipped.
#[derive(Debug, Clone, Default)]
pub(crate) struct History {
    pub entries: Vec<HistoryEntry>,
    pub bad: Vec<BadLine>,
}

/// Every line of the history, oldest first, and what is wrong with those that do not read.
pub(crate) fn read_checked(layout: &Layout) -> anyhow::Result<History> {
    let path = layout.history();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(History::default()),
        Err(e) => return Err(e).with_context(|| format!("could not read `{}`", path.display())),
    };
    // A line cut by a crash mid-append, or damaged on disk (not JSON, not even UTF-8), is
    // skipped, not fatal: the generations, not the history, say what is published.
    let mut out = History::default();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(entry) => out.entries.push(entry),
            Err(e) => out.bad.push(bad_line(i + 1, line, &e)),
        }
    }
    Ok(out)
}

/// What is wrong with line `n`: its damaged digests by field, else serde's word.
fn bad_line(n: usize, line: &[u8], e: &serde_json::Error) -> BadLine {
    let torn = !matches!(e.classify(), serde_json::error::Category::Data);
    let damage = serde_json::from_slice::<serde_json::Value>(line)
        .map(|v| super::lenient::history_damage(&v))
        .unwrap_or_default();
    let problem = if damage.is_empty() {
        e.to_string()
    } else {
        damage
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    BadLine {
        line: n,
        problem,
        torn,
    }
}

pub(crate) fn append(layout: &Layout, entry: &HistoryEntry) -> anyhow::Result<()> {
    let path = layout.history();
    let mut line = serde_json::to_string(entry).context("could not encode history entry")?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("could not open `{}`", path.display()))?;
    // A crash mid-line leaves a fragment without newline; start on a fresh line then.
    if last_byte(&path).is_some_and(|b| b != b'\n') {
        line.insert(0, '\n');
    }
    f.write_all(line.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("could not write `{}`", path.display()))
}

fn last_byte(path: &std::path::Path) -> Option<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::End(-1)).ok()?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b).ok()?;
    Some(b[0])
}

/// Appends `entry` unless the history already records its generation (a run that died
/// between its switch and its append is completed by the next one).
pub(crate) fn ensure_recorded(layout: &Layout, entry: &HistoryEntry) -> anyhow::Result<()> {
    if read(layout)?
        .iter()
        .any(|e| e.generation == entry.generation)
    {
        return Ok(());
    }
    append(layout, entry)
}
