//! Package sets into rootfs trees, without dpkg, chroot or root: each .deb's data.tar is
//! unpacked into an in-memory tree (owners and modes as the .deb has them, mtimes clamped by
//! the writer), in package-name order, the way dpkg would lay the files out:
//!
//! - a base starts from Debian 12's merged-/usr skeleton (`bin`, `sbin`, `lib`, `lib64` are
//!   links into `usr/`), and every path is placed through the links of what is already
//!   there (a dependency layer goes through its base's links too), so `/lib/x.so` lands in
//!   `usr/lib/x.so` and never replaces the link;
//! - a file that two packages ship is an error unless the bytes are equal or one package
//!   `Replaces` the other (dpkg's rule);
//! - documentation is left out as Debian's slim images leave it out (`/usr/share/doc` but
//!   each `copyright`, `man`, `info`, `groff`, `lintian`, `linda`);
//! - no maintainer script runs: what the runtime needs from them is written natively
//!   (`/etc/passwd` and `/etc/group` from base-passwd's masters or a minimal set plus the
//!   definition's users, the CA bundle and links `update-ca-certificates` would make), and
//!   the scripts that did not run are reported;
//! - the package database is written the way distroless writes it:
//!   `/var/lib/dpkg/status.d/<package>` (the control file with `Status: install ok installed`)
//!   and `<package>.md5sums`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::Context;

use super::lock::LockedPackage;
use crate::base::def::GroupDef;
use crate::base::pack::{Data, Entry};
use crate::base::UserDef;
use crate::image::check::{BaseListing, Kind};
use crate::report::Reporter;

mod scripts;

/// Bumped whenever the assembled bytes change for the same packages, so cached package-set
/// rootfs tars and dependency layers are made again.
pub(crate) const FORMAT: u32 = 5;

/// Most bytes of files one .deb may unpack to.
const MAX_DEB_DATA: u64 = 4 << 30;

/// Where the package database goes.
pub(crate) const STATUS_D: &str = "var/lib/dpkg/status.d";

/// The "package" of what builder writes itself (skeleton, accounts, CA outputs, database).
const BUILDER: usize = usize::MAX;
/// Files builder writes and no package may ship.
const ACCOUNTS: &[&str] = &["etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"];
/// Debian 12's merged-/usr links.
const MERGED_USR: &[(&str, &str)] = &[
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib64"),
];

/// Maintainer scripts (control.tar members that would run).
const SCRIPTS: &[&str] = &["preinst", "postinst", "prerm", "postrm", "config"];

/// A package to unpack: its lock entry and the verified .deb in the cache.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub locked: LockedPackage,
    pub deb: PathBuf,
}

/// How to assemble.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options<'a> {
    /// The layers below (a dependency layer's base): their links are followed and their
    /// files are not shipped again.
    pub lower: Option<&'a BaseListing>,
    /// A base from nothing: the merged-/usr skeleton, `/tmp`, `/etc/passwd` and `/etc/group`.
    pub base: bool,
    /// Users (and their groups and homes) a base adds.
    pub users: &'a [UserDef],
    /// Groups a base adds.
    pub groups: &'a [GroupDef],
    /// Paths left out besides the documentation (dpkg `path-exclude` globs, absolute).
    pub path_exclude: &'a [String],
}

/// What was assembled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Assembled {
    pub entries: BTreeMap<String, Entry>,
    /// `(package, scripts)` for every package whose maintainer scripts did not run.
    pub skipped_scripts: Vec<(String, Vec<String>)>,
    /// `name version` of every package unpacked, in order.
    pub packages: Vec<String>,
    /// Files the layer leaves out (documentation).
    pub dropped: usize,
    /// Alternatives made as `update-alternatives` would: `(name, path)`.
    pub alternatives: Vec<(String, String)>,
    /// `update-alternatives` calls that could not be read without running the script:
    /// `(package, command)`.
    pub unread_alternatives: Vec<(String, String)>,
}

/// Documentation left out of every package set (Debian's slim images' dpkg excludes).
pub(crate) fn dropped_path(p: &str) -> bool {
    const UNDER: &[&str] = &[
        "usr/share/man/",
        "usr/share/info/",
        "usr/share/groff/",
        "usr/share/lintian/",
        "usr/share/linda/",
    ];
    if let Some(rest) = p.strip_prefix("usr/share/doc/") {
        // keep usr/share/doc/<pkg>/copyright (licence compliance), and the dirs to it
        return !(rest.ends_with("/copyright") && rest.matches('/').count() == 1);
    }
    UNDER.iter().any(|u| p.starts_with(u))
}

/// Whether `path` (relative) matches one of the `path-exclude` globs (`*` matches `/`, as
/// in dpkg's fnmatch without FNM_PATHNAME).
fn excluded(patterns: &[glob::Pattern], path: &str) -> bool {
    let abs = format!("/{path}");
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: false,
        require_literal_leading_dot: false,
    };
    patterns.iter().any(|p| p.matches_with(&abs, opts))
}

struct Builder<'a> {
    out: BTreeMap<String, Entry>,
    owner: HashMap<String, usize>,
    lower: Option<&'a BaseListing>,
    members: &'a [(Member, Vec<String>)],
}

impl Builder<'_> {
    fn kind_at(&self, key: &str) -> Option<Kind> {
        match self.out.get(key) {
            Some(e) => Some(match &e.data {
                Data::Dir => Kind::Dir,
                Data::Symlink(t) => Kind::Symlink(t.clone()),
                Data::File(_) | Data::HardLink(_) => Kind::File,
            }),
            None => self
                .lower
                .and_then(|l| l.entries.get(key).map(|(k, _)| k.clone())),
        }
    }

    /// `key` with every proper ancestor that is a symlink replaced by its target (as the
    /// kernel resolves it), bounded like the kernel's 40 hops.
    fn place(&self, key: &str) -> String {
        crate::archive::resolve_parents(key, &|p| match self.kind_at(p) {
            Some(Kind::Symlink(t)) => Some(t),
            _ => None,
        })
    }

    fn ensure_parents(&mut self, key: &str) {
        let mut end = 0;
        while let Some(i) = key[end..].find('/') {
            let parent = &key[..end + i];
            if self.kind_at(parent).is_none() {
                self.out.insert(
                    parent.to_string(),
                    Entry {
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        data: Data::Dir,
                    },
                );
            }
            end += i + 1;
        }
    }

    /// Whether package `a` (index) declares `Replaces` on package `b`.
    fn replaces(&self, a: usize, b: usize) -> bool {
        let (Some((_, ra)), Some((mb, _))) = (self.members.get(a), self.members.get(b)) else {
            return false;
        };
        ra.iter().any(|r| {
            super::relation::parse_flat(r).is_ok_and(|atoms| {
                atoms
                    .iter()
                    .any(|x| x.name == mb.locked.name && x.version_ok(&mb.locked.version))
            })
        })
    }

    fn name(&self, i: usize) -> String {
        self.members
            .get(i)
            .map(|(m, _)| m.locked.id())
            .unwrap_or_else(|| "builder".into())
    }

    fn put(&mut self, pkg: usize, key: String, entry: Entry) -> anyhow::Result<()> {
        let existing = self.kind_at(&key);
        if pkg != BUILDER {
            if ACCOUNTS.contains(&key.as_str()) {
                anyhow::bail!(
                    "`{}` ships `/{key}`, which builder writes (users and groups come from the \
                     base definition); leave the package out of the set",
                    self.name(pkg)
                );
            }
            if MERGED_USR.iter().any(|(l, _)| *l == key)
                && matches!(existing, Some(Kind::Symlink(_)))
                && !matches!(entry.data, Data::Dir)
            {
                anyhow::bail!(
                    "`{}` ships `/{key}`, which would replace the merged-/usr link `/{key}`: \
                     dpkg keeps such a link, and the image's programs and loader are behind \
                     it; leave the package out of the set",
                    self.name(pkg)
                );
            }
        }
        match (&entry.data, existing) {
            (Data::Dir, Some(Kind::Dir)) => return Ok(()),
            // A directory the package ships where a link already is: the link stays (dpkg).
            (Data::Dir, Some(Kind::Symlink(_))) => return Ok(()),
            (Data::Dir, Some(Kind::File)) => anyhow::bail!(
                "`{}` ships the directory `/{key}`, where {} has a file",
                self.name(pkg),
                self.owner
                    .get(&key)
                    .map(|o| format!("`{}`", self.name(*o)))
                    .unwrap_or_else(|| "the base".into())
            ),
            (_, None) => {}
            (_, Some(_)) => {
                let same = match (self.out.get(&key), &entry.data) {
                    (Some(old), new) => &old.data == new,
                    (None, _) => false,
                };
                // A file of the layers below is shadowed by this layer's copy; between two
                // packages of this set, dpkg's rule decides.
                if let (false, Some(&other)) = (same, self.owner.get(&key)) {
                    if other != pkg && !self.replaces(pkg, other) {
                        if self.replaces(other, pkg) {
                            return Ok(());
                        }
                        anyhow::bail!(
                            "`{}` and `{}` both ship `/{key}` with different contents, and \
                             neither Replaces the other: dpkg would refuse to install them \
                             together; drop one of them from the set",
                            self.name(other),
                            self.name(pkg)
                        );
                    }
                }
            }
        }
        self.ensure_parents(&key);
        self.owner.insert(key.clone(), pkg);
        self.out.insert(key, entry);
        Ok(())
    }
}

/// Reads one member (the archive client has checked the file against the lock).
fn read_member(
    m: &Member,
) -> anyhow::Result<(crate::deb::DebContents, Vec<crate::deb::DataEntry>)> {
    let control = crate::deb::read_control(&m.deb)
        .with_context(|| format!("could not read package `{}`", m.locked.id()))?;
    let field = |f: &str| {
        control
            .fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(f))
            .map(|(_, v)| v.trim().to_string())
    };
    if field("Package").as_deref() != Some(m.locked.name.as_str())
        || field("Version").as_deref() != Some(m.locked.version.as_str())
    {
        return Err(crate::error::failed(format!(
            "`{}` holds package {} {}, not `{}`",
            m.deb.display(),
            field("Package").unwrap_or_default(),
            field("Version").unwrap_or_default(),
            m.locked.id()
        )));
    }
    let data = crate::deb::read_data_entries(&m.deb, MAX_DEB_DATA)
        .with_context(|| format!("could not unpack package `{}`", m.locked.id()))?;
    Ok((control, data))
}

fn file(mode: u32, bytes: Vec<u8>) -> Entry {
    Entry {
        mode,
        uid: 0,
        gid: 0,
        data: Data::File(bytes),
    }
}

fn dir(mode: u32) -> Entry {
    Entry {
        mode,
        uid: 0,
        gid: 0,
        data: Data::Dir,
    }
}

/// Unpacks `members` (sorted by name here) into one tree.
pub(crate) fn assemble(members: &[Member], opts: &Options<'_>) -> anyhow::Result<Assembled> {
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_by(|a, b| a.locked.name.cmp(&b.locked.name));
    // Read (hash, decompress) in parallel: that is most of the time.
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let mut read: Vec<Option<anyhow::Result<_>>> = (0..sorted.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let chunks: Vec<Vec<(usize, &Member)>> = (0..threads)
            .map(|t| {
                sorted
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % threads == t)
                    .map(|(i, m)| (i, *m))
                    .collect()
            })
            .collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|(i, m)| (i, read_member(m)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            if let Ok(results) = h.join() {
                for (i, r) in results {
                    read[i] = Some(r);
                }
            }
        }
    });
    let mut unpacked = Vec::new();
    for (m, r) in sorted.iter().zip(read) {
        let r =
            r.ok_or_else(|| anyhow::anyhow!("reading `{}` stopped unexpectedly", m.locked.id()))??;
        unpacked.push(((*m).clone(), r));
    }
    let with_replaces: Vec<(Member, Vec<String>)> = unpacked
        .iter()
        .map(|(m, (c, _))| {
            let r = c
                .fields
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("Replaces"))
                .map(|(_, v)| v.clone())
                .collect();
            (m.clone(), r)
        })
        .collect();
    let mut b = Builder {
        out: BTreeMap::new(),
        owner: HashMap::new(),
        lower: opts.lower,
        members: &with_replaces,
    };
    let builder_pkg = BUILDER;
    if opts.base {
        for d in [
            "usr",
            "usr/bin",
            "usr/sbin",
            "usr/lib",
            "usr/lib64",
            "etc",
            "var",
            "home",
        ] {
            b.put(builder_pkg, d.into(), dir(0o755))?;
        }
        b.put(builder_pkg, "tmp".into(), dir(0o1777))?;
        b.put(builder_pkg, "root".into(), dir(0o700))?;
        for (link, target) in MERGED_USR {
            b.put(
                builder_pkg,
                link.to_string(),
                Entry {
                    mode: 0o777,
                    uid: 0,
                    gid: 0,
                    data: Data::Symlink(target.to_string()),
                },
            )?;
        }
    }
    let excludes: Vec<glob::Pattern> = opts
        .path_exclude
        .iter()
        .filter_map(|p| glob::Pattern::new(p).ok())
        .collect();
    let mut result = Assembled::default();
    let mut installs: Vec<super::alternatives::Install> = Vec::new();
    let mut ca_files: Vec<super::cacerts::CaFile> = Vec::new();
    let mut status: Vec<(String, String, String, String)> = Vec::new();
    // The entries are moved into the tree (not copied): a set's bytes are held once.
    for (pkg, (m, (control, data))) in unpacked.into_iter().enumerate() {
        result.packages.push(m.locked.id());
        let scripts: Vec<String> = control
            .scripts
            .iter()
            .filter(|s| SCRIPTS.contains(&s.as_str()))
            .cloned()
            .collect();
        if !scripts.is_empty() {
            result
                .skipped_scripts
                .push((m.locked.name.clone(), scripts));
        }
        if let Some(script) = &control.postinst {
            let (found, unread) = super::alternatives::parse(&m.locked.name, script);
            installs.extend(found);
            result
                .unread_alternatives
                .extend(unread.into_iter().map(|u| (m.locked.name.clone(), u)));
        }
        status.push((
            m.locked.name.clone(),
            scripts::status_text(&control, &data),
            scripts::md5sums_text(&control),
            String::new(),
        ));
        let mut list = String::from("/.\n");
        // The bytes of files that hard links point at, for a link whose target is left out
        // (documentation): it then becomes a copy.
        let link_targets: std::collections::HashSet<&str> = data
            .iter()
            .filter(|e| e.kind == 'h')
            .filter_map(|e| e.link.as_deref())
            .collect();
        let bytes_of: HashMap<String, Vec<u8>> = data
            .iter()
            .filter(|e| e.kind == '-' && link_targets.contains(e.path.as_str()))
            .map(|e| (e.path.clone(), e.data.clone()))
            .collect();
        // Where each of this package's paths went (hard links point at the placed path).
        let mut placed: HashMap<String, String> = HashMap::new();
        for e in data {
            // The certificates make the bundle even when they are left out themselves.
            if e.kind == '-'
                && e.path.starts_with("usr/share/ca-certificates/")
                && e.path.ends_with(".crt")
            {
                ca_files.push(super::cacerts::CaFile {
                    path: format!("/{}", e.path),
                    bytes: e.data.clone(),
                });
            }
            if e.kind != 'd' && (dropped_path(&e.path) || excluded(&excludes, &e.path)) {
                result.dropped += 1;
                continue;
            }
            if e.kind == 'd' && dropped_path(&format!("{}/", e.path)) && e.path != "usr/share/doc" {
                continue;
            }
            let key = b.place(&e.path);
            let mode = if e.kind == 'l' { 0o777 } else { e.mode };
            let (uid, gid) = (e.uid, e.gid);
            let data = match e.kind {
                'd' => Data::Dir,
                '-' => Data::File(e.data),
                'l' => Data::Symlink(e.link.unwrap_or_default()),
                _ => {
                    let target = e.link.unwrap_or_default();
                    match placed.get(&target) {
                        Some(t) => Data::HardLink(t.clone()),
                        None => match bytes_of.get(&target) {
                            Some(bytes) => Data::File(bytes.clone()),
                            None => anyhow::bail!(
                                "package `{}`: hard link `/{}` points at `/{target}`, which \
                                 the package does not ship",
                                m.locked.id(),
                                e.path
                            ),
                        },
                    }
                }
            };
            list.push('/');
            list.push_str(&e.path);
            list.push('\n');
            placed.insert(e.path, key.clone());
            b.put(
                pkg,
                key,
                Entry {
                    mode,
                    uid,
                    gid,
                    data,
                },
            )?;
        }
        if let Some(last) = status.last_mut() {
            last.3 = list;
        }
    }
    // What maintainer scripts would have made.
    scripts::make_alternatives(&mut b, &installs, &mut result)?;
    scripts::make_ca_outputs(&mut b, &ca_files, &excludes, opts.lower)?;
    if opts.base {
        scripts::write_accounts(&mut b, opts.users, opts.groups)?;
        if b.kind_at("etc/nsswitch.conf").is_none() {
            b.put(
                builder_pkg,
                "etc/nsswitch.conf".into(),
                file(0o644, scripts::NSSWITCH.into()),
            )?;
        }
    }
    scripts::write_database(&mut b, status, opts.lower)?;
    fix_hard_link_order(&mut b.out);
    result.entries = b.out;
    Ok(result)
}

/// Shells and package managers: worth a line when a set brings one into an image.
const SHELLS: &[&str] = &[
    "dash", "bash", "busybox", "zsh", "mksh", "ksh", "posh", "yash",
];
const PACKAGE_MANAGERS: &[&str] = &["dpkg", "apt"];

/// Reports what a set holds that a reader of the image should know: maintainer scripts that
/// did not run, and any shell or package manager the closure brought.
pub(crate) fn report(
    what: &str,
    a: &Assembled,
    needed_by: &BTreeMap<String, String>,
    reporter: &Reporter,
) {
    if !a.skipped_scripts.is_empty() {
        reporter.info(format!(
            "{what}: maintainer scripts of {} packages did not run (no script runs in an \
             image; passwd, group and the CA bundle are written by builder): {}",
            a.skipped_scripts.len(),
            a.skipped_scripts
                .iter()
                .map(|(p, s)| format!("{p} ({})", s.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    if !a.unread_alternatives.is_empty() {
        reporter.warn(format!(
            "{what}: update-alternatives calls built by the scripts themselves were not \
             made (set the program's full path, or add the link as a file of your package): {}",
            a.unread_alternatives
                .iter()
                .map(|(p, c)| format!("{p}: `{}`", c.chars().take(100).collect::<String>()))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    if !a.alternatives.is_empty() {
        reporter.verbose(format!(
            "{what}: alternatives made as update-alternatives would: {}",
            a.alternatives
                .iter()
                .map(|(n, p)| format!("{n} → {p}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let names: Vec<&str> = a
        .packages
        .iter()
        .filter_map(|id| id.split(' ').next())
        .collect();
    for (label, list) in [("a shell", SHELLS), ("a package manager", PACKAGE_MANAGERS)] {
        for n in names.iter().filter(|n| list.contains(n)) {
            let why = needed_by
                .get(*n)
                .map(|w| format!(", needed by {w}"))
                .unwrap_or_default();
            reporter.info(format!("{what} holds {label}: `{n}`{why}"));
        }
    }
}

/// A tar hard link must come after its target: of all the names of one file, the first in
/// write order ([`crate::base::pack::tree_order`]) holds the bytes and the others link to it
/// (a hard link is the same file under several names).
fn fix_hard_link_order(out: &mut BTreeMap<String, Entry>) {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, e) in out.iter() {
        if let Data::HardLink(t) = &e.data {
            groups.entry(t.clone()).or_default().push(k.clone());
        }
    }
    for (target, mut names) in groups {
        let Some(data) = out.get(&target).map(|e| e.data.clone()) else {
            continue;
        };
        names.push(target.clone());
        names.sort_by(|a, b| crate::base::pack::tree_order(a, b));
        let first = names[0].clone();
        if first == target {
            continue;
        }
        for name in &names {
            if let Some(e) = out.get_mut(name) {
                e.data = if *name == first {
                    data.clone()
                } else {
                    Data::HardLink(first.clone())
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documentation_is_dropped_but_copyright_kept() {
        assert!(dropped_path("usr/share/doc/libc6/changelog.Debian.gz"));
        assert!(!dropped_path("usr/share/doc/libc6/copyright"));
        assert!(dropped_path("usr/share/doc/libc6/examples/copyright"));
        assert!(dropped_path("usr/share/man/man1/ls.1.gz"));
        assert!(!dropped_path("usr/share/zoneinfo/UTC"));
        assert!(!dropped_path("usr/share/doc"));
    }

    #[test]
    fn hard_links_come_after_their_target() {
        let mut out = BTreeMap::new();
        out.insert("b".to_string(), file(0o644, b"x".to_vec()));
        out.insert(
            "c".to_string(),
            Entry {
                mode: 0o644,
                uid: 0,
                gid: 0,
                data: Data::HardLink("b".into()),
            },
        );
        out.insert(
            "a".to_string(),
            Entry {
                mode: 0o644,
                uid: 0,
                gid: 0,
                data: Data::HardLink("b".into()),
            },
        );
        fix_hard_link_order(&mut out);
        assert_eq!(out["a"].data, Data::File(b"x".to_vec()));
        assert_eq!(out["b"].data, Data::HardLink("a".into()));
        assert_eq!(out["c"].data, Data::HardLink("a".into()));
    }
}
