//! What maintainer scripts and dpkg would have written, written natively for a package set:
//! alternatives links, the CA outputs, /etc/passwd and /etc/group, and the package
//! database.

use super::*;

/// Links `update-alternatives --install` would make (see [`super::super::alternatives`]).
pub(super) fn make_alternatives(
    b: &mut Builder<'_>,
    installs: &[super::super::alternatives::Install],
    result: &mut Assembled,
) -> anyhow::Result<()> {
    let builder_pkg = BUILDER;
    let exists = |b: &Builder<'_>, path: &str| {
        let key = b.place(path.trim_start_matches('/'));
        matches!(b.kind_at(&key), Some(Kind::File | Kind::Symlink(_)))
    };
    for win in super::super::alternatives::select(installs, &|p| exists(b, p)) {
        let main = (win.link.clone(), win.name.clone(), win.path.clone());
        for (link, name, path) in std::iter::once(main).chain(win.slaves.iter().cloned()) {
            let key = b.place(link.trim_start_matches('/'));
            // Never over a file a package ships; a slave whose target was left out
            // (documentation) is left out too.
            if !exists(b, &path) || b.kind_at(&key).is_some() {
                continue;
            }
            let through = format!("etc/alternatives/{name}");
            for (at, target) in [
                (through.clone(), path.clone()),
                (key, format!("/{through}")),
            ] {
                b.put(
                    builder_pkg,
                    at,
                    Entry {
                        mode: 0o777,
                        uid: 0,
                        gid: 0,
                        data: Data::Symlink(target),
                    },
                )?;
            }
            result.alternatives.push((name, path));
        }
    }
    Ok(())
}

/// What ca-certificates' postinst, update-ca-certificates and `openssl rehash` would make
/// of the certificates `ca_files` (see [`super::super::cacerts`]).
pub(super) fn make_ca_outputs(
    b: &mut Builder<'_>,
    ca_files: &[super::super::cacerts::CaFile],
    excludes: &[glob::Pattern],
    lower: Option<&BaseListing>,
) -> anyhow::Result<()> {
    let builder_pkg = BUILDER;
    if !ca_files.is_empty() {
        // ca-certificates' postinst makes the directory for local certificates.
        let local = b.place("usr/local/share/ca-certificates");
        b.put(builder_pkg, local, dir(0o755))?;
        let made = super::super::cacerts::ca_certificates_outputs(ca_files)
            .map_err(|e| anyhow::anyhow!("could not make the CA bundle: {e}"))?;
        // Links to a certificate left out (`path-exclude`) would dangle, and so would the
        // hash links to those links: both are left out too.
        let dangling: std::collections::HashSet<String> = made
            .iter()
            .filter_map(|m| match m {
                super::super::cacerts::Made::Symlink { path, target }
                    if target.starts_with('/')
                        && excluded(excludes, target.trim_start_matches('/')) =>
                {
                    Some(path.rsplit('/').next().unwrap_or_default().to_string())
                }
                _ => None,
            })
            .collect();
        // A dependency layer over a base that has a bundle adds its certificates to the
        // base's bundle and conf, as update-ca-certificates would on that system.
        let below =
            |path: &str| lower.and_then(|l| l.read_file(path.trim_start_matches('/'), 64 << 20));
        for m in made {
            let (path, entry) = match m {
                super::super::cacerts::Made::File { path, bytes, mode } => {
                    let merged = match below(&path) {
                        Some(mut old) if path.ends_with(".conf") => {
                            for l in String::from_utf8_lossy(&bytes).lines() {
                                if !l.is_empty() && !l.starts_with('#') {
                                    old.extend_from_slice(l.as_bytes());
                                    old.push(b'\n');
                                }
                            }
                            old
                        }
                        Some(mut old) => {
                            old.extend_from_slice(&bytes);
                            old
                        }
                        None => bytes,
                    };
                    (path, file(mode, merged))
                }
                super::super::cacerts::Made::Symlink { path, target } => {
                    let name = path.rsplit('/').next().unwrap_or_default();
                    if dangling.contains(name) || dangling.contains(&target) {
                        continue;
                    }
                    // A hash link the base has already (another certificate) stays.
                    if lower.is_some_and(|l| l.entries.contains_key(path.trim_start_matches('/'))) {
                        continue;
                    }
                    let link = Entry {
                        mode: 0o777,
                        uid: 0,
                        gid: 0,
                        data: Data::Symlink(target),
                    };
                    (path, link)
                }
            };
            let key = b.place(path.trim_start_matches('/'));
            b.out.remove(&key);
            b.put(builder_pkg, key, entry)?;
        }
    }
    Ok(())
}

pub(super) const MIN_PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n";
pub(super) const MIN_GROUP: &str = "root:x:0:\ntty:x:5:\nstaff:x:50:\nnogroup:x:65534:\n";
pub(super) const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n\
networks: files\nprotocols: files\nservices: files\nethers: files\nrpc: files\n";

/// The package database. A set without dpkg gets it the way distroless writes it
/// (`status.d/<package>` and `<package>.md5sums`, read by scanners); a set with dpkg (or a
/// layer over a base that has a real database) gets dpkg's own layout, `status` plus
/// `info/<package>.list` and `.md5sums`, so `dpkg -l` and `dpkg -L` work in the image and
/// scanners see each package once.
pub(super) fn write_database(
    b: &mut Builder<'_>,
    status: Vec<(String, String, String, String)>,
    lower: Option<&BaseListing>,
) -> anyhow::Result<()> {
    if status.is_empty() {
        return Ok(());
    }
    let below = lower.and_then(|l| {
        l.entries
            .contains_key("var/lib/dpkg/status")
            .then(|| l.read_file("var/lib/dpkg/status", 256 << 20))
            .flatten()
    });
    let has_dpkg = status.iter().any(|(n, ..)| n == "dpkg");
    if below.is_none() && !has_dpkg {
        for (name, text, md5, _) in status {
            b.put(
                BUILDER,
                format!("{STATUS_D}/{name}"),
                file(0o644, text.into_bytes()),
            )?;
            if !md5.is_empty() {
                b.put(
                    BUILDER,
                    format!("{STATUS_D}/{name}.md5sums"),
                    file(0o644, md5.into_bytes()),
                )?;
            }
        }
        return Ok(());
    }
    let mut db = below
        .map(|b| String::from_utf8_lossy(&b).trim_end().to_string())
        .unwrap_or_default();
    for (name, text, md5, list) in status {
        if !db.is_empty() {
            db.push_str("\n\n");
        }
        db.push_str(text.trim_end());
        b.put(
            BUILDER,
            format!("var/lib/dpkg/info/{name}.list"),
            file(0o644, list.into_bytes()),
        )?;
        if !md5.is_empty() {
            b.put(
                BUILDER,
                format!("var/lib/dpkg/info/{name}.md5sums"),
                file(0o644, md5.into_bytes()),
            )?;
        }
    }
    db.push('\n');
    b.out.remove("var/lib/dpkg/status");
    b.put(
        BUILDER,
        "var/lib/dpkg/status".into(),
        file(0o644, db.into_bytes()),
    )
}

/// The status.d paragraph: the control file with `Status: install ok installed` after
/// `Package`, and `Conffiles` with their md5sums as dpkg records them.
pub(super) fn status_text(c: &crate::deb::DebContents, data: &[crate::deb::DataEntry]) -> String {
    use md5::{Digest, Md5};
    let mut out = String::new();
    for line in c.control_text.trim_end().lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("Package:") {
            out.push_str("Status: install ok installed\n");
        }
    }
    if !c.conffiles.is_empty() {
        out.push_str("Conffiles:\n");
        for cf in &c.conffiles {
            let rel = cf.trim_start_matches('/');
            // The md5sums file leaves conffiles out (dh_md5sums): hash the shipped bytes, as
            // dpkg records them on install.
            let md5 = data
                .iter()
                .find(|e| e.path == rel && e.kind == '-')
                .map(|e| hex::encode(Md5::digest(&e.data)))
                .unwrap_or_else(|| "newconffile".to_string());
            out.push_str(&format!(" {cf} {md5}\n"));
        }
    }
    out
}

pub(super) fn md5sums_text(c: &crate::deb::DebContents) -> String {
    c.md5sums
        .iter()
        .map(|(p, m)| format!("{m}  {p}\n"))
        .collect()
}

/// /etc/passwd and /etc/group: base-passwd's master files when the set has them (what its
/// postinst copies on a fresh system), else a minimal set; then the definition's users.
pub(super) fn write_accounts(
    b: &mut Builder<'_>,
    users: &[UserDef],
    groups: &[GroupDef],
) -> anyhow::Result<()> {
    let read = |b: &Builder<'_>, key: &str| match b.out.get(key).map(|e| &e.data) {
        Some(Data::File(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => None,
    };
    let mut passwd = read(b, "etc/passwd")
        .or_else(|| read(b, "usr/share/base-passwd/passwd.master"))
        .unwrap_or_else(|| MIN_PASSWD.into());
    let mut group = read(b, "etc/group")
        .or_else(|| read(b, "usr/share/base-passwd/group.master"))
        .unwrap_or_else(|| MIN_GROUP.into());
    for g in groups {
        let taken = group.lines().any(|l| {
            let mut f = l.split(':');
            let (n, _, id) = (f.next(), f.next(), f.next());
            n == Some(g.name.as_str()) || id == Some(g.gid.to_string().as_str())
        });
        if taken {
            anyhow::bail!(
                "group `{}` or gid {} is already in /etc/group",
                g.name,
                g.gid
            );
        }
        group.push_str(&format!("{}:x:{}:\n", g.name, g.gid));
    }
    let shell = if b.kind_at("usr/bin/sh").is_some() {
        "/bin/sh"
    } else {
        "/sbin/nologin"
    };
    for u in users {
        let has = |db: &str, field: usize, v: &str| {
            db.lines().any(|l| l.split(':').nth(field) == Some(v))
        };
        if has(&passwd, 0, &u.name) {
            // base-passwd's accounts are fixed: the same name with another uid would be
            // silently a different user.
            if passwd.lines().any(|l| {
                let f: Vec<&str> = l.split(':').collect();
                f.first() == Some(&u.name.as_str()) && f.get(2) == Some(&u.uid.to_string().as_str())
            }) {
                continue;
            }
            anyhow::bail!(
                "user `{}` already exists in /etc/passwd with another uid than {}; pick another \
                 name",
                u.name,
                u.uid
            );
        }
        if has(&passwd, 2, &u.uid.to_string()) {
            anyhow::bail!(
                "uid {} of user `{}` is already taken in /etc/passwd",
                u.uid,
                u.name
            );
        }
        passwd.push_str(&format!(
            "{}:x:{}:{}:{}:{}:{shell}\n",
            u.name, u.uid, u.gid, u.name, u.home
        ));
        if !has(&group, 2, &u.gid.to_string()) {
            group.push_str(&format!("{}:x:{}:\n", u.name, u.gid));
        }
        let home = b.place(u.home.trim_start_matches('/'));
        b.out.remove(&home);
        b.put(
            BUILDER,
            home,
            Entry {
                mode: 0o755,
                uid: u.uid as u64,
                gid: u.gid as u64,
                data: Data::Dir,
            },
        )?;
    }
    b.out.remove("etc/passwd");
    b.out.remove("etc/group");
    b.put(
        BUILDER,
        "etc/passwd".into(),
        file(0o644, passwd.into_bytes()),
    )?;
    b.put(BUILDER, "etc/group".into(), file(0o644, group.into_bytes()))?;
    Ok(())
}
