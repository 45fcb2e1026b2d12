//! Reading around damaged digests, for `repo check` and the cleanup every command runs: one
//! malformed digest (a flipped hex digit) in a `generation.json` costs that entry, not the
//! whole generation, and a damaged `history.jsonl` line is named by its field.
//!
//! Owns: where digests are in a generation and a history entry, and how each is spelled.
//! What a damaged entry references stays referenced (a pool file by its name, the blobs whose
//! digests still read), so no cleanup deletes what a rollback to that generation needs.
//! Must not: write anything. Commands that change a repository read strictly
//! ([`Layout::read_meta`]): they refuse a damaged generation with the file and field instead
//! of publishing a guess.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use super::store::{GenerationMeta, Layout};
use crate::digest::Digest;

/// One digest field that does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldDamage {
    /// Where it is in the file: `packages[1].sha256`, `history.images[0].blobs[2]`.
    pub field: String,
    /// The entry it belongs to (`demo 1.0 amd64`, an index file's path), when it says.
    pub entry: String,
    /// What is wrong with the value.
    pub problem: String,
}

impl fmt::Display for FieldDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.field)?;
        if !self.entry.is_empty() {
            write!(f, " ({})", self.entry)?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// A generation read leniently: the entries with a damaged digest left out of `meta`.
#[derive(Debug, Clone)]
pub(crate) struct LenientMeta {
    pub meta: GenerationMeta,
    /// The file read.
    pub file: PathBuf,
    /// Each digest that does not read; empty for a whole generation.
    pub damage: Vec<FieldDamage>,
    /// Pool files the left-out entries name.
    kept_files: Vec<String>,
    /// Blobs the left-out images name with digests that read.
    kept_blobs: Vec<Digest>,
    /// Every blob the generation needs is known (no blob digest is damaged).
    pub blobs_known: bool,
}

impl LenientMeta {
    /// Adds the pool files and blobs this generation needs (its left-out entries' too) to
    /// the two sets. With `blobs_known` false, the blob set is incomplete.
    pub(crate) fn collect_references(
        &self,
        files: &mut BTreeSet<String>,
        blobs: &mut BTreeSet<Digest>,
    ) {
        self.meta.collect_references(files, blobs);
        files.extend(self.kept_files.iter().cloned());
        blobs.extend(self.kept_blobs.iter().copied());
    }
}

/// Generation `n`'s `generation.json` as [`Layout::read_meta`] reads it, except that an entry
/// whose digest does not read is left out and reported instead of making the whole file
/// unreadable. Anything else wrong with the file is the error `read_meta` gives.
pub(crate) fn read_meta(layout: &Layout, n: u64) -> anyhow::Result<LenientMeta> {
    let (path, text) = layout.meta_bytes(n)?;
    let could_not = || format!("could not parse `{}`", path.display());
    let (meta, damage, kept) = match serde_json::from_slice::<GenerationMeta>(&text) {
        Ok(meta) => (meta, Vec::new(), Kept::default()),
        Err(strict) => {
            let Ok(mut value) = serde_json::from_slice::<Value>(&text) else {
                return Err(strict).with_context(could_not);
            };
            let mut kept = Kept::default();
            let mut damage = take_damaged(&mut value, "", GENERATION, &mut kept);
            if let Some(history) = value.get_mut("history") {
                damage.extend(take_damaged(
                    history,
                    "history.",
                    HISTORY,
                    &mut Kept::default(),
                ));
            }
            if damage.is_empty() {
                return Err(strict).with_context(could_not);
            }
            let meta = serde_json::from_value(value).with_context(could_not)?;
            (meta, damage, kept)
        }
    };
    Ok(LenientMeta {
        meta: Layout::placed(n, &path, meta)?,
        file: path,
        damage,
        kept_files: kept.files,
        kept_blobs: kept.blobs,
        blobs_known: kept.blobs_known,
    })
}

/// The damaged digests of one `history.jsonl` line that is JSON but not a history entry.
pub(crate) fn history_damage(line: &Value) -> Vec<FieldDamage> {
    let mut line = line.clone();
    take_damaged(&mut line, "", HISTORY, &mut Kept::default())
}

/// How a field spells its digest.
#[derive(Clone, Copy)]
enum Spelling {
    /// 64 hex digits, as apt's indexes and the history spell it.
    Bare,
    /// `sha256:<hex>`, as OCI spells it.
    Prefixed,
}

/// An array of entries with digests.
struct Place {
    array: &'static str,
    fields: &'static [(&'static str, Spelling)],
    /// Entries carry `blobs`: `[[digest, size], ...]`.
    blobs: bool,
}

/// Images, in a generation and in its history entry alike.
const IMAGES: Place = Place {
    array: "images",
    fields: &[
        ("digest", Spelling::Prefixed),
        ("image_id", Spelling::Prefixed),
    ],
    blobs: true,
};

const GENERATION: &[Place] = &[
    Place {
        array: "packages",
        fields: &[("sha256", Spelling::Bare)],
        blobs: false,
    },
    Place {
        array: "index_files",
        fields: &[("sha256", Spelling::Bare)],
        blobs: false,
    },
    IMAGES,
];

const HISTORY: &[Place] = &[
    Place {
        array: "artifacts",
        fields: &[("sha256", Spelling::Bare)],
        blobs: false,
    },
    IMAGES,
];

/// What the left-out entries reference.
struct Kept {
    files: Vec<String>,
    blobs: Vec<Digest>,
    blobs_known: bool,
}

impl Default for Kept {
    fn default() -> Self {
        Kept {
            files: Vec::new(),
            blobs: Vec::new(),
            blobs_known: true,
        }
    }
}

/// Takes the entries with a digest that does not read out of `root`'s arrays; returns what is
/// wrong with each, and adds what they reference to `kept`.
fn take_damaged(
    root: &mut Value,
    prefix: &str,
    places: &[Place],
    kept: &mut Kept,
) -> Vec<FieldDamage> {
    let mut out = Vec::new();
    for place in places {
        let Some(entries) = root.get_mut(place.array).and_then(Value::as_array_mut) else {
            continue;
        };
        let mut i = 0;
        entries.retain(|entry| {
            let at = format!("{prefix}{}[{i}]", place.array);
            i += 1;
            let label = label(entry);
            let mut bad: Vec<FieldDamage> = place
                .fields
                .iter()
                .filter_map(|(name, spelling)| {
                    problem(entry.get(name), *spelling).map(|problem| FieldDamage {
                        field: format!("{at}.{name}"),
                        entry: label.clone(),
                        problem,
                    })
                })
                .collect();
            let blobs = if place.blobs {
                entry.get("blobs").and_then(Value::as_array)
            } else {
                None
            };
            let mut blob_digests = Vec::new();
            for (j, blob) in blobs.into_iter().flatten().enumerate() {
                match problem(blob.get(0), Spelling::Prefixed) {
                    Some(problem) => bad.push(FieldDamage {
                        field: format!("{at}.blobs[{j}]"),
                        entry: label.clone(),
                        problem,
                    }),
                    None => blob_digests.extend(digest(blob.get(0), Spelling::Prefixed)),
                }
            }
            if bad.is_empty() {
                return true;
            }
            if let Some(f) = entry.get("filename").and_then(Value::as_str) {
                kept.files.push(f.to_string());
            }
            if place.blobs {
                kept.blobs.extend(blob_digests);
                // Which blobs a damaged blob digest names is not known.
                kept.blobs_known &= !bad.iter().any(|d| d.field.contains(".blobs["));
            }
            out.extend(bad);
            false
        });
    }
    out
}

/// `name version arch` of an entry, or the path of an index file.
fn label(entry: &Value) -> String {
    let s = |k: &str| entry.get(k).and_then(Value::as_str);
    match (s("name"), s("path")) {
        (Some(name), _) => [Some(name), s("version"), s("arch")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
        (None, Some(path)) => path.to_string(),
        (None, None) => String::new(),
    }
}

fn digest(v: Option<&Value>, spelling: Spelling) -> Option<Digest> {
    let s = v?.as_str()?;
    match spelling {
        Spelling::Bare => Digest::parse_lenient(s).ok(),
        Spelling::Prefixed => s.parse().ok(),
    }
}

/// What is wrong with a digest field, if anything.
fn problem(v: Option<&Value>, spelling: Spelling) -> Option<String> {
    match v {
        None => Some("missing".into()),
        Some(Value::String(s)) => match spelling {
            Spelling::Bare => Digest::parse_lenient(s).err(),
            Spelling::Prefixed => s.parse::<Digest>().err(),
        }
        .map(|e| e.to_string()),
        Some(other) => Some(format!("`{other}` is not a sha256 digest: not a string")),
    }
}
