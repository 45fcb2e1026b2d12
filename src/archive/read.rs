//! Reading any tar (GNU, ustar, PAX; as written by dpkg-deb, GNU tar, Docker) into a [`Tree`].

use std::io::Read;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use tar::EntryType;

use super::{normalize, FileSource, Node, NodeKind, Owner, Tree};

/// Reads a tar into a tree of in-memory files. `./` prefixes are dropped; absolute names,
/// `..` components, non-UTF-8 names and device nodes are refused. Hard links become copies.
/// Owners are kept (ids and names, as the headers have them).
pub fn read_tree<R: Read>(r: R) -> anyhow::Result<Tree> {
    read_tree_limited(r, u64::MAX)
}

/// [`read_tree`], refusing an archive whose regular files hold more than `max_total` bytes
/// together, before reading the file that would pass it: a crafted archive (many large
/// files of zeros compress to almost nothing) must not make the reader hold gigabytes.
pub fn read_tree_limited<R: Read>(r: R, max_total: u64) -> anyhow::Result<Tree> {
    let mut left = max_total;
    let mut archive = tar::Archive::new(r);
    let mut tree = Tree::new();
    for entry in archive
        .entries()
        .context("could not read the tar archive")?
    {
        let mut entry = entry.context("could not read a tar entry")?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8(raw).map_err(|e| {
            anyhow!(
                "tar entry name `{}` is not UTF-8",
                e.into_bytes().escape_ascii()
            )
        })?;
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue;
        }
        if name.starts_with('/') {
            bail!("tar entry `{name}` has an absolute path; archives must use relative names");
        }
        let key = normalize(&name).with_context(|| format!("bad tar entry `{name}`"))?;
        let mode = entry
            .header()
            .mode()
            .with_context(|| format!("tar entry `{name}` has a bad mode field"))?
            & 0o7777;
        if key.is_empty() {
            // The `./` root entry: the tree's root is implicit.
            continue;
        }
        let owner = owner_of(entry.header(), &name)?;
        let node = |kind| Node {
            owner: owner.clone(),
            ..Node::new(mode, kind)
        };
        let node = match kind {
            EntryType::Directory => node(NodeKind::Dir),
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.size();
                if size > left {
                    bail!(
                        "tar entry `{name}` is {size} bytes, more than the {left} left of the \
                         {max_total} its archive may hold in all"
                    );
                }
                left -= size;
                let mut data = Vec::with_capacity(size.min(64 << 20) as usize);
                entry
                    .read_to_end(&mut data)
                    .with_context(|| format!("could not read tar entry `{name}`"))?;
                node(NodeKind::File(FileSource::Bytes(Arc::from(data))))
            }
            EntryType::Symlink => {
                let target = link_target(&entry, &name)?;
                node(NodeKind::Symlink(target))
            }
            EntryType::Link => {
                let target = link_target(&entry, &name)?;
                let target_key =
                    normalize(&target).with_context(|| format!("bad hard link `{name}`"))?;
                match tree.get(&target_key) {
                    Some(Node {
                        kind: NodeKind::File(src),
                        ..
                    }) => node(NodeKind::File(src.clone())),
                    _ => bail!(
                        "tar entry `{name}` is a hard link to `{target}`, which is not an \
                         earlier regular file"
                    ),
                }
            }
            other => bail!("tar entry `{name}` has an unsupported type ({other:?})"),
        };
        tree.put(&key, node)
            .with_context(|| format!("bad tar entry `{name}`"))?;
    }
    Ok(tree)
}

/// The entry's owner: ids from the header (an empty or unreadable id field counts as 0, as
/// GNU tar reads it), names where the header has them (a header without names gets `root`
/// for id 0 and the number otherwise).
fn owner_of(h: &tar::Header, name: &str) -> anyhow::Result<Owner> {
    let id = |v: std::io::Result<u64>, what: &str| -> anyhow::Result<u32> {
        let v = v.unwrap_or(0);
        u32::try_from(v).with_context(|| format!("tar entry `{name}` has {what} {v}, above 2^32"))
    };
    let uid = id(h.uid(), "uid")?;
    let gid = id(h.gid(), "gid")?;
    let text = |v: Option<&[u8]>, n: u32| match v.map(String::from_utf8_lossy) {
        Some(s) if !s.is_empty() => s.into_owned(),
        _ if n == 0 => "root".to_string(),
        _ => n.to_string(),
    };
    Ok(Owner {
        uid,
        gid,
        user: text(h.username_bytes(), uid),
        group: text(h.groupname_bytes(), gid),
    })
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>, name: &str) -> anyhow::Result<String> {
    let target = entry
        .link_name_bytes()
        .ok_or_else(|| anyhow!("tar entry `{name}` is a link without a target"))?;
    String::from_utf8(target.into_owned())
        .map_err(|_| anyhow!("the link target of tar entry `{name}` is not UTF-8"))
}
