//! The application layer: the .deb's data tree seen as an image layer. Documentation and
//! lintian overrides are always left out; conffiles and systemd units per the recipe's
//! `[image]` flags. Directories emptied by that filtering go too; directories the package
//! ships empty stay.

use std::collections::{BTreeMap, BTreeSet};

use crate::archive::{NodeKind, Tree};
use crate::recipe::ImageSpec;

/// Always left out of images: nobody reads them in a container.
const ALWAYS_DROPPED: &[&str] = &["usr/share/doc", "usr/share/lintian"];
/// Where packages ship systemd units.
const SYSTEMD_DIRS: &[&str] = &["lib/systemd/system", "usr/lib/systemd/system"];

/// The tree that goes into the image's application layer. `conffiles` are the package's
/// conffiles (absolute paths, as in `DEBIAN/conffiles`); `None` means "every file under /etc".
pub(crate) fn app_tree(data: &Tree, spec: &ImageSpec, conffiles: Option<&[String]>) -> Tree {
    let mut dropped: Vec<String> = ALWAYS_DROPPED.iter().map(|s| s.to_string()).collect();
    if !spec.include_systemd {
        dropped.extend(SYSTEMD_DIRS.iter().map(|s| s.to_string()));
    }
    if !spec.include_conffiles {
        match conffiles {
            Some(list) => {
                dropped.extend(list.iter().map(|c| c.trim_start_matches('/').to_string()))
            }
            None => dropped.push("etc".to_string()),
        }
    }
    let below = |key: &str| {
        dropped
            .iter()
            .any(|d| key == d || (key.starts_with(d.as_str()) && key.as_bytes()[d.len()] == b'/'))
    };

    // Directories that had children before filtering: if they end up empty, they go.
    let mut had_children = BTreeSet::new();
    for (key, _) in data.iter() {
        if let Some((parent, _)) = key.rsplit_once('/') {
            had_children.insert(parent.to_string());
        }
    }
    let mut kept: BTreeMap<&str, &crate::archive::Node> =
        data.iter().filter(|(k, _)| !below(k)).collect();
    // Children sort after their parent, so walking backwards settles every child first.
    let mut children: BTreeMap<String, usize> = BTreeMap::new();
    for key in kept.keys() {
        if let Some((parent, _)) = key.rsplit_once('/') {
            *children.entry(parent.to_string()).or_default() += 1;
        }
    }
    let dirs: Vec<&str> = kept
        .iter()
        .filter(|(_, n)| matches!(n.kind, NodeKind::Dir))
        .map(|(k, _)| *k)
        .collect();
    for dir in dirs.into_iter().rev() {
        if had_children.contains(dir) && children.get(dir).copied().unwrap_or(0) == 0 {
            kept.remove(dir);
            if let Some((parent, _)) = dir.rsplit_once('/') {
                if let Some(n) = children.get_mut(parent) {
                    *n -= 1;
                }
            }
        }
    }

    let mut out = Tree::new();
    for (key, node) in kept {
        // Keys come from a valid tree in sorted order (parents first), so adding cannot fail.
        // A hard link becomes a copy: its target may have been left out.
        let _ = out.add_node(key, data.materialized(node));
    }
    out
}

/// Moves `app` entries off paths that are symlinks in the base: a layer that holds a
/// directory where a lower layer has a symlink replaces the symlink (the OCI and Docker
/// unpack rule), so `lib/systemd/...` over a merged-usr base (`lib -> usr/lib`) would leave
/// a `/lib` holding only `systemd/`, and the loader and libc gone. Such entries go where the
/// base's symlinks lead (`usr/lib/systemd/...`); a directory entry at the symlink itself is
/// dropped, so the base's link stays.
pub(crate) fn onto_base(app: &Tree, base: &super::BaseListing) -> Tree {
    let mut out = Tree::new();
    for (key, node) in app.iter() {
        let resolved = through_base_links(key, base);
        let at_link = matches!(
            base.entries.get(&resolved),
            Some((super::check::Kind::Symlink(_), _))
        );
        if at_link && matches!(node.kind, NodeKind::Dir) {
            continue;
        }
        // Keys are valid and sorted; two entries meeting at one path keep the first. A hard
        // link becomes a copy: its target may have moved to another path.
        let _ = out.add_node(&resolved, app.materialized(node));
    }
    out
}

/// `key` with every proper ancestor that is a symlink in the base replaced by its target.
fn through_base_links(key: &str, base: &super::BaseListing) -> String {
    crate::archive::resolve_parents(key, &|p| match base.entries.get(p) {
        Some((super::check::Kind::Symlink(t), _)) => Some(t.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::FileSource;

    #[test]
    fn entries_follow_the_bases_merged_usr_links() {
        use super::super::check::Kind;
        let mut base = super::super::BaseListing::default();
        base.entries.insert("usr".into(), (Kind::Dir, 0o755));
        base.entries.insert("usr/lib".into(), (Kind::Dir, 0o755));
        base.entries
            .insert("lib".into(), (Kind::Symlink("usr/lib".into()), 0o777));
        base.entries
            .insert("bin".into(), (Kind::Symlink("/usr/bin".into()), 0o777));
        base.entries.insert(
            "usr/lib/x".into(),
            (Kind::Symlink("../share/y".into()), 0o777),
        );
        let mut app = Tree::new();
        let f = || FileSource::Bytes(std::sync::Arc::from(&b"x"[..]));
        app.add_file("lib/systemd/system/svc.service", 0o644, f())
            .unwrap();
        app.add_file("bin/svc", 0o755, f()).unwrap();
        app.add_file("usr/lib/x/z", 0o644, f()).unwrap();
        app.add_file("etc/svc/env", 0o644, f()).unwrap();
        let out = onto_base(&app, &base);
        let keys: Vec<&str> = out.iter().map(|(k, _)| k).collect();
        assert!(!keys.contains(&"lib") && !keys.contains(&"bin"), "{keys:?}");
        for want in [
            "usr/lib/systemd/system/svc.service",
            "usr/bin/svc",
            "usr/share/y/z",
            "etc/svc/env",
        ] {
            assert!(keys.contains(&want), "{want} missing from {keys:?}");
        }
        // a link loop ends
        base.entries
            .insert("a".into(), (Kind::Symlink("b".into()), 0o777));
        base.entries
            .insert("b".into(), (Kind::Symlink("a".into()), 0o777));
        let _ = through_base_links("a/c", &base);
    }

    fn spec(conffiles: bool, systemd: bool) -> ImageSpec {
        ImageSpec {
            base: "static".into(),
            entrypoint: vec!["/usr/bin/svc".into()],
            cmd: vec![],
            env: Default::default(),
            user: "65532:65532".into(),
            workdir: "/".into(),
            ports: vec![8080],
            labels: Default::default(),
            include_conffiles: conffiles,
            include_systemd: systemd,
            exclude: vec![],
            name: "svc".into(),
            lines: Default::default(),
        }
    }

    fn data() -> Tree {
        let b = |s: &str| FileSource::Bytes(s.as_bytes().to_vec().into());
        let mut t = Tree::new();
        t.add_file("usr/bin/svc", 0o755, b("bin")).unwrap();
        t.add_file("usr/share/doc/svc/copyright", 0o644, b("c"))
            .unwrap();
        t.add_file("usr/share/lintian/overrides/svc", 0o644, b("o"))
            .unwrap();
        t.add_file("etc/svc/svc.conf", 0o644, b("conf")).unwrap();
        t.add_file("etc/default/svc", 0o644, b("d")).unwrap();
        t.add_file("lib/systemd/system/svc.service", 0o644, b("u"))
            .unwrap();
        t.add_dir("var/lib/svc", 0o750).unwrap();
        t
    }

    fn keys(t: &Tree) -> Vec<&str> {
        t.iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn drops_docs_units_and_conffiles_and_prunes_emptied_dirs() {
        let conffiles = vec!["/etc/svc/svc.conf".to_string()];
        let t = app_tree(&data(), &spec(false, false), Some(&conffiles));
        assert_eq!(
            keys(&t),
            [
                "etc",
                "etc/default",
                "etc/default/svc",
                "usr",
                "usr/bin",
                "usr/bin/svc",
                "var",
                "var/lib",
                "var/lib/svc"
            ]
        );
        assert_eq!(t.get("var/lib/svc").unwrap().mode, 0o750);
    }

    #[test]
    fn keeps_conffiles_and_units_when_asked() {
        let t = app_tree(&data(), &spec(true, true), None);
        assert!(t.get("etc/svc/svc.conf").is_some());
        assert!(t.get("lib/systemd/system/svc.service").is_some());
        assert!(t.get("usr/share").is_none());
        // Without a conffiles list, everything under /etc is a conffile.
        let t = app_tree(&data(), &spec(false, true), None);
        assert!(t.get("etc").is_none());
    }
}
