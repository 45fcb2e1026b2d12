//! The image's merged filesystem as the start check sees it: the application layer over
//! the dependency layer over the base, without unpacking anything (file bytes are read
//! from the trees in memory or from the layer tars on demand).

use super::check::{BaseListing, Kind};
use super::start::{FsView, Node};
use crate::archive::{FileSource, NodeKind, Tree};

/// Layers, topmost first.
pub(crate) struct Layers<'a> {
    pub app: &'a Tree,
    pub lower: Vec<&'a BaseListing>,
}

fn key(path: &str) -> &str {
    path.trim_start_matches('/')
}

impl FsView for Layers<'_> {
    fn node(&self, path: &str) -> Option<Node> {
        let k = key(path);
        if k.is_empty() {
            return Some(Node::Dir);
        }
        if let Some(n) = self.app.get(k) {
            return Some(match &n.kind {
                NodeKind::Dir => Node::Dir,
                NodeKind::File(_) | NodeKind::HardLink(_) => Node::File { mode: n.mode },
                NodeKind::Symlink(t) => Node::Symlink(t.clone()),
            });
        }
        for l in &self.lower {
            if let Some((kind, mode)) = l.entries.get(k) {
                return Some(match kind {
                    Kind::Dir => Node::Dir,
                    Kind::File => Node::File { mode: *mode },
                    Kind::Symlink(t) => Node::Symlink(t.clone()),
                });
            }
        }
        None
    }

    fn owner(&self, path: &str) -> (u32, u32) {
        let k = key(path);
        if let Some(n) = self.app.get(k) {
            return (n.owner.uid, n.owner.gid);
        }
        self.lower
            .iter()
            .find(|l| l.entries.contains_key(k))
            .and_then(|l| l.owners.get(k).copied())
            .unwrap_or((0, 0))
    }

    fn read(&self, path: &str, limit: u64) -> Option<Vec<u8>> {
        let k = key(path);
        if let Some(n) = self.app.get(k) {
            return match &self.app.materialized(n).kind {
                NodeKind::File(FileSource::Bytes(b)) => {
                    Some(b[..b.len().min(limit as usize)].to_vec())
                }
                NodeKind::File(FileSource::Path(p)) => {
                    use std::io::Read;
                    let mut buf = Vec::new();
                    std::fs::File::open(p)
                        .ok()?
                        .take(limit)
                        .read_to_end(&mut buf)
                        .ok()?;
                    Some(buf)
                }
                _ => None,
            };
        }
        for l in &self.lower {
            if l.entries.contains_key(k) {
                return l.read_file(k, limit);
            }
        }
        None
    }
}
