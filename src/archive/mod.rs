//! Deterministic tar trees shared by the .deb writer and the OCI layer writer.
//!
//! A [`Tree`] is an in-memory map of normalised relative paths (`usr/bin/backend`, never
//! `./usr/bin/backend`, `/usr/...` or `usr/bin/`) to nodes: directories, files (streamed
//! from disk or held in memory) and symlinks. [`write_tar`] turns a tree into a byte-stable
//! GNU tar (sorted, explicit parents, uid/gid 0, `root`, one mtime, never PAX headers);
//! [`read_tree`] reads any tar back into a tree.
//!
//! This module knows nothing about Debian or OCI; the callers choose the naming style
//! through [`TarOptions`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

mod read;
mod write;

pub use read::{read_tree, read_tree_limited};
pub use write::{write_tar, write_tar_observed, FileObserver, TarOptions};

/// Where a regular file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// Streamed from disk when the tar is written; never read whole into memory.
    Path(PathBuf),
    /// Held in memory (generated files, files read from another archive).
    Bytes(Arc<[u8]>),
}

impl FileSource {
    /// The size in bytes: the length of the buffer or the file's current size on disk.
    pub fn size(&self) -> anyhow::Result<u64> {
        match self {
            FileSource::Bytes(b) => Ok(b.len() as u64),
            FileSource::Path(p) => Ok(std::fs::metadata(p)
                .with_context(|| format!("could not read `{}`", p.display()))?
                .len()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File(FileSource),
    /// A symlink and its target, stored verbatim.
    Symlink(String),
    /// A hard link to the regular file at this tree key, which sorts before the link (a tar
    /// extractor must meet the file first). Its mode and owner are the file's.
    HardLink(String),
}

/// Who owns an entry: the numeric ids and the names written into the tar header. dpkg gives
/// the entry to the named user and group when they exist at unpack time and falls back to
/// the numbers otherwise; container engines use the numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
}

impl Owner {
    /// `root:root` (0:0), what every entry has unless a recipe says otherwise.
    pub fn root() -> Self {
        Owner {
            uid: 0,
            gid: 0,
            user: "root".into(),
            group: "root".into(),
        }
    }

    pub fn is_root(&self) -> bool {
        *self == Owner::root()
    }
}

impl Default for Owner {
    fn default() -> Self {
        Owner::root()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Permission bits (`0o7777` at most); written exactly as given.
    pub mode: u32,
    pub kind: NodeKind,
    pub owner: Owner,
}

impl Node {
    /// A node owned by `root:root`.
    pub fn new(mode: u32, kind: NodeKind) -> Self {
        Node {
            mode: mode & 0o7777,
            kind,
            owner: Owner::root(),
        }
    }
}

/// Symlink targets must be shorter than this (Linux's PATH_MAX, NUL included).
pub const MAX_SYMLINK_TARGET: usize = 4096;

/// Why a path could not be added to a [`Tree`]; callers turn these into recipe diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("invalid path `{path}`: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("`{0}` is added twice")]
    Duplicate(String),
    #[error("cannot add `{path}`: its parent `{parent}` is not a directory")]
    ParentNotDir { path: String, parent: String },
}

/// Normalises a path to the tree's key form: no leading `/` or `./`, no empty or `.`
/// components, no trailing `/`. Refuses `..` components and NUL bytes. The root gives "".
pub fn normalize(path: &str) -> Result<String, TreeError> {
    let invalid = |reason| TreeError::InvalidPath {
        path: path.to_string(),
        reason,
    };
    if path.contains('\0') {
        return Err(invalid("it contains a NUL byte"));
    }
    // dpkg refuses newlines in archive member names, and md5sums/conffiles are
    // line-based: no control characters at all.
    if path.chars().any(|c| c.is_control()) {
        return Err(invalid(
            "it contains a control character (a newline, tab, ...); rename the file",
        ));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(invalid("`..` components are not allowed")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// `key` (a normalised relative path) with every proper ancestor that is a symlink replaced
/// by its target, as the kernel resolves it: relative to the link's directory, from the
/// root for absolute targets, never above the root, at most 40 links (Linux's
/// MAXSYMLINKS). `link_at` gives the target of the symlink at a path, if one is there.
pub fn resolve_parents(key: &str, link_at: &dyn Fn(&str) -> Option<String>) -> String {
    let mut path: Vec<String> = key.split('/').map(str::to_string).collect();
    let mut hops = 0;
    'restart: while hops < 40 {
        for i in 1..path.len() {
            if let Some(target) = link_at(&path[..i].join("/")) {
                hops += 1;
                let mut new: Vec<String> = if target.starts_with('/') {
                    Vec::new()
                } else {
                    path[..i - 1].to_vec()
                };
                for part in target.split('/') {
                    match part {
                        "" | "." => {}
                        ".." => {
                            new.pop();
                        }
                        p => new.push(p.to_string()),
                    }
                }
                new.extend(path[i..].iter().cloned());
                path = new;
                continue 'restart;
            }
        }
        break;
    }
    path.join("/")
}

/// An ordered set of filesystem objects to archive. Keys are normalised relative paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a regular file; missing parents become 0755 directories.
    pub fn add_file(&mut self, path: &str, mode: u32, src: FileSource) -> Result<(), TreeError> {
        self.add_leaf(path, Node::new(mode, NodeKind::File(src)))
    }

    /// Adds a regular file owned by `owner`.
    pub fn add_file_owned(
        &mut self,
        path: &str,
        mode: u32,
        owner: Owner,
        src: FileSource,
    ) -> Result<(), TreeError> {
        self.add_leaf(
            path,
            Node {
                owner,
                ..Node::new(mode, NodeKind::File(src))
            },
        )
    }

    /// Adds `path` as a hard link to the regular file (or hard link) at `target`. The tree
    /// keeps the link group's first path in archive order as the file and makes the others
    /// links to it, so the tar always holds the file before its links.
    pub fn add_hardlink(&mut self, path: &str, target: &str) -> Result<(), TreeError> {
        let target_key = normalize(target)?;
        let leader = match self.nodes.get(&target_key).map(|n| &n.kind) {
            Some(NodeKind::File(_)) => target_key,
            Some(NodeKind::HardLink(t)) => t.clone(),
            _ => {
                return Err(TreeError::InvalidPath {
                    path: path.to_string(),
                    reason: "a hard link's target must be a regular file already in the package",
                })
            }
        };
        let key = normalize(path)?;
        if key > leader {
            let file = &self.nodes[&leader];
            let node = Node {
                mode: file.mode,
                owner: file.owner.clone(),
                kind: NodeKind::HardLink(leader),
            };
            return self.add_leaf(path, node);
        }
        // The new path sorts first: it becomes the file, the old leader and its links
        // point at it.
        let file = self.nodes[&leader].clone();
        self.add_leaf(path, file.clone())?;
        for node in self.nodes.values_mut() {
            if matches!(&node.kind, NodeKind::HardLink(t) if *t == leader) {
                node.kind = NodeKind::HardLink(key.clone());
            }
        }
        self.nodes.insert(
            leader,
            Node {
                kind: NodeKind::HardLink(key),
                ..file
            },
        );
        Ok(())
    }

    /// Adds a symlink (mode 0777, as Linux reports for every symlink).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), TreeError> {
        if target.is_empty() || target.contains('\0') {
            return Err(TreeError::InvalidPath {
                path: path.to_string(),
                reason: "the symlink target is empty or contains a NUL byte",
            });
        }
        // symlink(2) refuses targets of PATH_MAX bytes or more: such an entry could be
        // written but never unpacked (dpkg and container runtimes fail at install time).
        if target.len() >= MAX_SYMLINK_TARGET {
            return Err(TreeError::InvalidPath {
                path: path.to_string(),
                reason: "the symlink target is 4096 bytes or longer, more than Linux can \
                         store (PATH_MAX); shorten it",
            });
        }
        self.add_leaf(
            path,
            Node::new(0o777, NodeKind::Symlink(target.to_string())),
        )
    }

    /// Adds a directory. Adding an existing directory again is accepted and changes nothing.
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), TreeError> {
        self.add_dir_owned(path, mode, Owner::root())
    }

    /// Adds a directory owned by `owner`; an existing directory keeps its mode and owner.
    pub fn add_dir_owned(&mut self, path: &str, mode: u32, owner: Owner) -> Result<(), TreeError> {
        let key = self.prepare(path)?;
        match self.nodes.get(&key) {
            Some(Node {
                kind: NodeKind::Dir,
                ..
            }) => Ok(()),
            Some(_) => Err(TreeError::Duplicate(key)),
            None => {
                self.nodes.insert(
                    key,
                    Node {
                        owner,
                        ..Node::new(mode, NodeKind::Dir)
                    },
                );
                Ok(())
            }
        }
    }

    /// Makes `path` a directory with exactly this mode and owner, whether it was there
    /// already (then its mode and owner are replaced) or not. Returns the mode and owner it
    /// had, if it was there.
    pub fn set_dir(
        &mut self,
        path: &str,
        mode: u32,
        owner: Owner,
    ) -> Result<Option<(u32, Owner)>, TreeError> {
        let key = self.prepare(path)?;
        let node = Node {
            owner,
            ..Node::new(mode, NodeKind::Dir)
        };
        match self.nodes.get_mut(&key) {
            Some(old) if matches!(old.kind, NodeKind::Dir) => {
                let before = (old.mode, old.owner.clone());
                *old = node;
                Ok(Some(before))
            }
            Some(_) => Err(TreeError::Duplicate(key)),
            None => {
                self.nodes.insert(key, node);
                Ok(None)
            }
        }
    }

    /// Gives the entry at `path` (already in the tree) to `owner`.
    pub fn set_owner(&mut self, path: &str, owner: Owner) -> Result<(), TreeError> {
        let key = normalize(path)?;
        match self.nodes.get_mut(&key) {
            Some(n) => {
                n.owner = owner;
                Ok(())
            }
            None => Err(TreeError::InvalidPath {
                path: path.to_string(),
                reason: "it is not in the package",
            }),
        }
    }

    /// Adds a copy of `node` (any kind but a hard link, whose target may not be here: use
    /// [`Tree::materialized`] first) at `path`; a directory already there is kept.
    pub fn add_node(&mut self, path: &str, node: Node) -> Result<(), TreeError> {
        match node.kind {
            NodeKind::Dir => self.add_dir_owned(path, node.mode, node.owner),
            NodeKind::Symlink(ref target) => {
                self.add_symlink(path, target)?;
                self.set_owner(path, node.owner)
            }
            NodeKind::HardLink(_) => Err(TreeError::InvalidPath {
                path: path.to_string(),
                reason: "a hard link cannot be copied on its own",
            }),
            NodeKind::File(_) => self.add_leaf(path, node),
        }
    }

    /// `node` with a hard link replaced by a regular file holding its target's bytes (same
    /// mode and owner); other nodes as they are.
    pub fn materialized(&self, node: &Node) -> Node {
        match &node.kind {
            NodeKind::HardLink(target) => match self.nodes.get(target) {
                Some(Node {
                    kind: NodeKind::File(src),
                    ..
                }) => Node {
                    kind: NodeKind::File(src.clone()),
                    ..node.clone()
                },
                _ => node.clone(),
            },
            _ => node.clone(),
        }
    }

    fn add_leaf(&mut self, path: &str, node: Node) -> Result<(), TreeError> {
        let key = self.prepare(path)?;
        if self.nodes.contains_key(&key) {
            return Err(TreeError::Duplicate(key));
        }
        self.nodes.insert(key, node);
        Ok(())
    }

    /// Normalises `path`, refuses the root, and creates missing parent directories.
    fn prepare(&mut self, path: &str) -> Result<String, TreeError> {
        let key = normalize(path)?;
        if key.is_empty() {
            return Err(TreeError::InvalidPath {
                path: path.to_string(),
                reason: "it names the root directory",
            });
        }
        let mut end = 0;
        while let Some(i) = key[end..].find('/') {
            let parent = &key[..end + i];
            match self.nodes.get(parent) {
                Some(Node {
                    kind: NodeKind::Dir,
                    ..
                }) => {}
                Some(_) => {
                    return Err(TreeError::ParentNotDir {
                        path: key.clone(),
                        parent: parent.to_string(),
                    })
                }
                None => {
                    self.nodes
                        .insert(parent.to_string(), Node::new(0o755, NodeKind::Dir));
                }
            }
            end += i + 1;
        }
        Ok(key)
    }

    /// Inserts or replaces a node (later tar entries win), creating parents. For readers.
    fn put(&mut self, path: &str, node: Node) -> Result<(), TreeError> {
        let key = self.prepare(path)?;
        if let Some(old) = self.nodes.get(&key) {
            if matches!(old.kind, NodeKind::Dir) && !matches!(node.kind, NodeKind::Dir) {
                // A file replacing a directory would orphan its children.
                self.remove_prefix(&key);
            }
        }
        self.nodes.insert(key, node);
        Ok(())
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        let key = normalize(path).ok()?;
        self.nodes.get(&key)
    }

    /// Entries in archive order (byte-wise sorted paths; a parent precedes its children).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Removes `prefix` and everything below it.
    pub fn remove_prefix(&mut self, prefix: &str) {
        let Ok(key) = normalize(prefix) else { return };
        if key.is_empty() {
            self.nodes.clear();
            return;
        }
        let below = format!("{key}/");
        self.nodes.remove(&key);
        self.nodes.retain(|k, _| !k.starts_with(&below));
    }

    /// Installed-Size in KiB by dpkg-gencontrol's rule (dpkg 1.21, `scripts/dpkg-gencontrol.pl`):
    /// every regular file and symlink counts `ceil(size / 1024)` (a symlink's size is the
    /// length of its target, as `lstat` reports), every other object (directories, including
    /// the package root `.` that `File::Find` also visits) counts 1. A hard link counts
    /// nothing: dpkg-gencontrol counts each inode once. dpkg-gencontrol also walks the build
    /// tree's `DEBIAN/` directory: the .deb writer adds what the control files count there.
    pub fn installed_size_kib(&self) -> anyhow::Result<u64> {
        let mut total = 1; // the root directory
        for node in self.nodes.values() {
            total += match &node.kind {
                NodeKind::Dir => 1,
                NodeKind::File(src) => src.size()?.div_ceil(1024),
                NodeKind::Symlink(target) => (target.len() as u64).div_ceil(1024),
                NodeKind::HardLink(_) => 0,
            };
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests;
