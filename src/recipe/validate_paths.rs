//! Where a recipe installs things, checked the way `package` and dpkg will see them: each
//! `to` alone (dpkg's name and path limits, never under a kernel filesystem), each `mode`
//! (no write access for others to a setuid program), and all entries together (no path
//! installed twice, no path both a file and a directory) in time linear in the number of
//! paths, so a recipe with 20,000 `[[files]]` validates in a moment.
//!
//! This file only reads the project (directory trees and globs that entries copy); it
//! never builds a package. Build outputs do not exist yet at validation time: their kind
//! is unknown, and only what is certain about them is checked.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::model::*;
use toml::Spanned;

use super::validate::{check_dest, Ctx};

/// The longest file name dpkg can install: it unpacks every file as `<name>.dpkg-new`
/// first, and Linux file names hold 255 bytes (the same limit `package` applies).
pub(super) const MAX_NAME: usize = 255 - ".dpkg-new".len();

/// The longest path dpkg can install: Linux's PATH_MAX (4096 with the terminating NUL)
/// less the `.dpkg-new` dpkg appends while unpacking.
pub(super) const MAX_PATH: usize = 4095 - ".dpkg-new".len();

/// Where the kernel mounts its own filesystems: whatever a package installs below is
/// hidden by the mount, or written into the running kernel's interface.
const KERNEL_FS: &[(&str, &str)] = &[("/proc", "procfs"), ("/sys", "sysfs"), ("/dev", "devtmpfs")];

/// The kernel filesystem `path` lies on (`/proc`, `/sys`, `/dev` or below), with its type.
pub(super) fn kernel_fs(path: &str) -> Option<(&'static str, &'static str)> {
    KERNEL_FS.iter().copied().find(|(root, _)| {
        path.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Why dpkg could not install `path` (absolute, normalised), if it could not.
pub(super) fn install_problem(path: &str) -> Option<String> {
    let shown = shorten(path);
    if let Some(long) = path.split('/').find(|p| p.len() > MAX_NAME) {
        return Some(format!(
            "`{shown}` has a name of {} bytes (`{}`): dpkg installs names of at most \
             {MAX_NAME} bytes, since it appends `.dpkg-new` while unpacking",
            long.len(),
            shorten(long)
        ));
    }
    if path.len() > MAX_PATH {
        return Some(format!(
            "`{shown}` is {} bytes long: dpkg installs paths of at most {MAX_PATH} bytes \
             (Linux's PATH_MAX, less the `.dpkg-new` it appends while unpacking)",
            path.len()
        ));
    }
    None
}

/// `s`, cut to its first 60 characters for a message.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Why the mode of a `dir` entry is refused, and how to fix it: a directory every user may
/// write needs the sticky bit (as /tmp has), and setuid means nothing on a directory.
pub(crate) fn dir_mode_problem(mode: u32) -> Option<(String, String)> {
    if mode & 0o4000 != 0 {
        return Some((
            format!("mode {mode:04o} sets the setuid bit, which Linux ignores on a directory"),
            format!("drop it: `mode = \"{:04o}\"`", mode & !0o4000),
        ));
    }
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Some((
            format!(
                "mode {mode:04o} lets every user delete and replace anything in the directory"
            ),
            format!(
                "add the sticky bit as /tmp has (`mode = \"{:04o}\"`), or drop the write bit for others (`mode = \"{:04o}\"`)",
                mode | 0o1000,
                mode & !0o002
            ),
        ));
    }
    None
}

/// Why a `[[files]]` mode is refused, and how to fix it: the permission bits a package may
/// give a file are the ones dpkg, lintian and a reviewer would accept without a second look.
pub(crate) fn mode_problem(mode: u32) -> Option<(String, String)> {
    let special = mode & 0o6000;
    if special != 0 && mode & 0o022 != 0 {
        let bit = match special {
            0o4000 => "setuid",
            0o2000 => "setgid",
            _ => "setuid and setgid",
        };
        let who = if mode & 0o002 != 0 {
            "every user"
        } else {
            "its group"
        };
        return Some((
            format!(
                "mode {mode:04o} makes a {bit} program writable by {who}: anyone who can write \
                 it runs code with its owner's rights (root)"
            ),
            format!(
                "drop the write bits for group and others, e.g. `mode = \"{:04o}\"`",
                mode & !0o7022 | special
            ),
        ));
    }
    if mode & 0o1000 != 0 {
        return Some((
            format!(
                "mode {mode:04o} sets the sticky bit, which Linux ignores on files (it only \
                 means something on a directory, and `mode` applies to the files an entry installs)"
            ),
            format!("drop it: `mode = \"{:04o}\"`", mode & 0o6777),
        ));
    }
    if mode & 0o002 != 0 {
        return Some((
            format!(
                "mode {mode:04o} makes the file writable by every user: any local account could \
                 change what the package installed"
            ),
            format!(
                "drop the write bit for others, e.g. `mode = \"{:04o}\"`",
                mode & !0o002
            ),
        ));
    }
    None
}

/// A `[[files]]` `to`: absolute and normalised, not under a kernel filesystem, within
/// dpkg's name and path limits.
pub(super) fn check_to(ctx: &mut Ctx<'_>, to: &Spanned<String>) {
    let span = to.span();
    let to = to.get_ref();
    match check_dest(to) {
        Err(e) => {
            ctx.err(span.clone(), e);
        }
        Ok(()) => {
            if let Some((root, fs)) = kernel_fs(to) {
                ctx.err(
                    span.clone(),
                    format!(
                        "`{to}` is under `{root}`, where the kernel mounts {fs}: what a package \
                         installs there is hidden by the mount, or written into the running kernel"
                    ),
                )
                .help = Some(kernel_fs_help(root).into());
            } else if let Some(why) = install_problem(to.trim_end_matches('/')) {
                ctx.err(span.clone(), why).help = Some("choose a shorter `to`".into());
            }
        }
    }
}

/// How to do what a `to` under a kernel filesystem was probably meant for.
fn kernel_fs_help(root: &str) -> &'static str {
    match root {
        "/proc" | "/sys" => {
            "install kernel settings as files the system applies at boot, e.g. \
             /usr/lib/sysctl.d/<name>.conf or /usr/lib/tmpfiles.d/<name>.conf"
        }
        _ => "ship a udev rule in /usr/lib/udev/rules.d/ to create or configure devices",
    }
}

/// `conffile = true` marks one regular file: refused on a glob or a directory.
pub(super) fn conffile_source(ctx: &mut Ctx<'_>, source: Option<&Source>, from: &Spanned<String>) {
    let why = match source {
        Some(Source::Glob { .. }) => "`from` is a glob, which may install many files",
        Some(Source::Path { path }) if ctx.project.join(path).is_dir() => "`from` is a directory",
        _ => return,
    };
    ctx.err(
        from.span(),
        format!("`conffile = true` marks one regular file, but {why}"),
    )
    .help = Some(
        "give each configuration file its own [[files]] entry with `conffile = true` \
         (files under /etc are conffiles anyway)"
            .into(),
    );
}

/// What a path is in the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    /// A build output: a file or a directory, known only once it is built.
    Unknown,
}

impl Kind {
    fn holds_children(self) -> bool {
        matches!(self, Kind::Dir | Kind::Unknown)
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Dir => "a directory",
            Kind::File => "a file",
            Kind::Symlink => "a symlink",
            Kind::Unknown => "a build output",
        }
    }
}

/// Who puts a path into the package: a `[[files]]` entry (with the span of its `to`) or
/// something builder generates.
struct Owner {
    span: Option<Range<usize>>,
    /// Who it is, as the subject of a sentence ("the [[files]] entry at line 6").
    what: String,
    /// The unit's name, for a `[[systemd]]` unit.
    unit: Option<String>,
}

/// The paths of a package and who installs each.
struct Paths {
    owners: Vec<Owner>,
    /// Path → (kind, owner), with a leading `/` and no trailing one.
    claims: HashMap<String, (Kind, usize)>,
    /// Paths in the order they were claimed, so reports do not depend on hashing.
    order: Vec<String>,
    reported: HashSet<(usize, usize)>,
}

/// One `[[files]]` entry as validated, with the span of its `to`.
pub(super) struct Entry<'a> {
    pub spec: &'a FileSpec,
    pub to_span: Range<usize>,
}

/// Every path the entries, the systemd units and builder's generated files put into the
/// package: refuses a path installed twice and a path both a file (or symlink) and a
/// directory, naming both entries.
pub(super) fn check_layout(
    ctx: &mut Ctx<'_>,
    entries: &[Entry<'_>],
    units: &[SystemdUnit],
    package: &Package,
) {
    let mut paths = Paths {
        owners: Vec::new(),
        claims: HashMap::new(),
        order: Vec::new(),
        reported: HashSet::new(),
    };
    let before = ctx.diags.len();
    let skip = Skip::new(ctx.project);
    for e in entries {
        let line = e.spec.line;
        let owner = paths.owner(
            Some(e.to_span.clone()),
            format!("the [[files]] entry at line {line}"),
        );
        expand(ctx, &mut paths, &skip, e, owner);
    }
    for u in units {
        let owner = paths.owner(None, format!("the [[systemd]] unit `{}`", u.name));
        paths.owners[owner].unit = Some(u.name.clone());
        paths.claim(
            ctx,
            &format!("/lib/systemd/system/{}", u.name),
            Kind::File,
            owner,
        );
    }
    let doc = paths.owner(
        None,
        "builder, for the package's copyright file,".to_string(),
    );
    paths.claim(
        ctx,
        &format!("/usr/share/doc/{}", package.name),
        Kind::Dir,
        doc,
    );
    if !package.lintian_overrides.is_empty() {
        let owner = paths.owner(
            None,
            "builder (from `lintian-overrides` in [package])".to_string(),
        );
        let path = format!("/usr/share/lintian/overrides/{}", package.name);
        paths.claim(ctx, &path, Kind::File, owner);
    }
    paths.check_parents(ctx);
    // Parents are checked after every path is known: report in the order of the file.
    ctx.diags[before..].sort_by_key(|d| (d.line, d.col));
}

impl Paths {
    fn owner(&mut self, span: Option<Range<usize>>, what: String) -> usize {
        self.owners.push(Owner {
            span,
            what,
            unit: None,
        });
        self.owners.len() - 1
    }

    fn claim(&mut self, ctx: &mut Ctx<'_>, path: &str, kind: Kind, owner: usize) {
        let Some(&(old, first)) = self.claims.get(path) else {
            self.claims.insert(path.to_string(), (kind, owner));
            self.order.push(path.to_string());
            return;
        };
        let help_twice = "each destination may appear once: remove or rename one entry";
        let help_kind = "a path is either a file or a directory: change the `to` of one entry";
        match (old, kind) {
            (Kind::Dir, Kind::Dir) => {}
            // A build output may be a directory: only a build proves otherwise.
            (Kind::Dir, Kind::Unknown) => {}
            (Kind::Unknown, Kind::Dir) => {
                self.claims.insert(path.to_string(), (Kind::Dir, owner));
            }
            _ if first == owner => self.report(ctx, first, owner, help_twice, |_, at, _| {
                format!(
                    "{at} installs `{path}` twice: two of the paths it matches have the same name"
                )
            }),
            (Kind::Dir, _) | (_, Kind::Dir) => {
                let (dir_owner, noun) = if old == Kind::Dir {
                    (first, kind.noun())
                } else {
                    (owner, old.noun())
                };
                self.report(ctx, first, owner, help_kind, |at_b, at, other| {
                    let at_dir = (if at_b { owner } else { first }) == dir_owner;
                    let (file_what, dir_what) = if at_dir { (other, at) } else { (at, other) };
                    format!(
                        "{file_what} installs `{path}` as {noun}, not a directory, but {dir_what} \
                         puts a directory there"
                    )
                })
            }
            _ => {
                let unit = [first, owner]
                    .iter()
                    .find_map(|&o| self.owners[o].unit.clone());
                match unit {
                    Some(name) => self.report(
                        ctx,
                        first,
                        owner,
                        "remove this entry: [[systemd]] ships the unit file itself",
                        |_, at, other| {
                            let entry = if at.starts_with("the [[files]]") {
                                at
                            } else {
                                other
                            };
                            format!(
                                "[[systemd]] already installs the unit `{name}` at `{path}`, \
                                 and {entry} installs it too"
                            )
                        },
                    ),
                    None => self.report(ctx, first, owner, help_twice, |_, at, other| {
                        format!("two entries install to `{path}`: {at} and {other}")
                    }),
                }
            }
        }
    }

    /// Every claimed path's parents must be directories: linear in the total length of
    /// the paths (a map lookup per parent), however many entries there are.
    fn check_parents(&mut self, ctx: &mut Ctx<'_>) {
        let order = std::mem::take(&mut self.order);
        for path in &order {
            let (_, owner) = self.claims[path];
            let mut end = 0;
            while let Some(i) = path[end + 1..].find('/') {
                end += i + 1;
                let parent = &path[..end];
                let Some(&(kind, parent_owner)) = self.claims.get(parent) else {
                    continue;
                };
                if kind.holds_children() {
                    continue;
                }
                let noun = kind.noun();
                let help = format!(
                    "a path is either a file or a directory: change one entry's `to` so that \
                     `{parent}` stays a directory (a `to` ending in `/` installs into it)"
                );
                self.report(ctx, parent_owner, owner, &help, |at_child, at, other| {
                    if parent_owner == owner {
                        format!(
                            "{at} installs `{path}` inside `{parent}`, which it installs as {noun}"
                        )
                    } else if at_child {
                        format!(
                            "{at} installs `{path}` inside `{parent}`, but {other} installs \
                             `{parent}` as {noun}, not a directory"
                        )
                    } else {
                        format!(
                            "{at} installs `{parent}` as {noun}, not a directory, but {other} \
                             puts `{path}` inside it"
                        )
                    }
                });
                break;
            }
        }
    }

    /// Reports a conflict between owners `a` and `b` once, at the later one's `to` (the
    /// earlier one's when the later is generated by builder). `message` gets whether it is
    /// shown at `b`, the owner it is shown at and the other owner.
    fn report(
        &mut self,
        ctx: &mut Ctx<'_>,
        a: usize,
        b: usize,
        help: &str,
        message: impl FnOnce(bool, &str, &str) -> String,
    ) {
        if !self.reported.insert((a.min(b), a.max(b))) {
            return;
        }
        let (later, earlier) = (a.max(b), a.min(b));
        let at = if self.owners[later].span.is_some() {
            later
        } else {
            earlier
        };
        let other = if at == a { b } else { a };
        let msg = message(at == b, &self.owners[at].what, &self.owners[other].what);
        match self.owners[at].span.clone() {
            Some(span) => ctx.err(span, msg).help = Some(help.to_string()),
            None => ctx.in_file(msg).help = Some(help.to_string()),
        }
    }
}

/// What `package` leaves out of directory trees and globs: `.git`, and builder's own
/// output and cache directories.
struct Skip {
    dirs: Vec<PathBuf>,
}

impl Skip {
    fn new(project: &Path) -> Self {
        let dirs = [project.join("dist"), crate::project::cache_dir()]
            .iter()
            .filter_map(|d| d.canonicalize().ok())
            .collect();
        Skip { dirs }
    }

    fn skipped(&self, path: &Path) -> bool {
        path.file_name().is_some_and(|n| n == ".git")
            || (!self.dirs.is_empty()
                && path
                    .canonicalize()
                    .is_ok_and(|c| self.dirs.iter().any(|d| c.starts_with(d))))
    }
}

/// Claims what one entry installs. A directory tree or a glob is read, as `package` will.
fn expand(ctx: &mut Ctx<'_>, paths: &mut Paths, skip: &Skip, e: &Entry<'_>, owner: usize) {
    let spec = e.spec;
    let to = spec.to.trim_end_matches('/');
    let into_dir = spec.to.ends_with('/');
    if into_dir && !to.is_empty() {
        paths.claim(ctx, to, Kind::Dir, owner);
    }
    match &spec.source {
        Source::Symlink { .. } => paths.claim(ctx, to, Kind::Symlink, owner),
        Source::Dir => paths.claim(ctx, to, Kind::Dir, owner),
        Source::Build { .. } if !into_dir => paths.claim(ctx, to, Kind::Unknown, owner),
        Source::Build { .. } => {}
        Source::Path { path } => {
            let src = ctx.project.join(path);
            if src.is_dir() {
                if !to.is_empty() {
                    paths.claim(ctx, to, Kind::Dir, owner);
                }
                walk(ctx, paths, skip, e, owner, &src, to);
            } else {
                let dest = match (into_dir, path.file_name().and_then(|n| n.to_str())) {
                    (true, Some(name)) => format!("{to}/{name}"),
                    _ => to.to_string(),
                };
                paths.claim(ctx, &dest, Kind::File, owner);
            }
        }
        Source::Glob { pattern } => {
            let full = format!(
                "{}/{pattern}",
                glob::Pattern::escape(&ctx.project.to_string_lossy())
            );
            let Ok(matches) = glob::glob(&full) else {
                return;
            };
            let mut matches: Vec<PathBuf> = matches.filter_map(Result::ok).collect();
            matches.sort();
            for m in matches {
                let below = m.strip_prefix(ctx.project).unwrap_or(&m);
                if below.components().any(|c| c.as_os_str() == ".git") || skip.skipped(&m) {
                    continue;
                }
                let Some(name) = m.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let dest = format!("{to}/{name}");
                if m.is_dir() {
                    paths.claim(ctx, &dest, Kind::Dir, owner);
                    walk(ctx, paths, skip, e, owner, &m, &dest);
                } else {
                    let kind = if m.is_symlink() {
                        Kind::Symlink
                    } else {
                        Kind::File
                    };
                    if !path_ok(ctx, e, &dest) {
                        return;
                    }
                    paths.claim(ctx, &dest, kind, owner);
                }
            }
        }
    }
}

/// Reports a path from a tree or glob that dpkg could not install, at the entry's `to`.
fn path_ok(ctx: &mut Ctx<'_>, e: &Entry<'_>, dest: &str) -> bool {
    match install_problem(dest) {
        None => true,
        Some(why) => {
            ctx.err(e.to_span.clone(), format!("this entry would install {why}"))
                .help = Some("rename the file in the project, or choose a shorter `to`".into());
            false
        }
    }
}

/// Claims the contents of directory `src` installed at `dest`; the first problem with
/// them (a name dpkg cannot install, a name that is not UTF-8, a special file) is reported
/// and ends the walk.
fn walk(
    ctx: &mut Ctx<'_>,
    paths: &mut Paths,
    skip: &Skip,
    e: &Entry<'_>,
    owner: usize,
    src: &Path,
    dest: &str,
) {
    let mut walker = walkdir::WalkDir::new(src)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    while let Some(Ok(entry)) = walker.next() {
        let ft = entry.file_type();
        if skip.skipped(entry.path()) {
            if ft.is_dir() {
                walker.skip_current_dir();
            }
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(src) else {
            continue;
        };
        let Some(rel) = rel.to_str() else {
            let shown = entry
                .path()
                .strip_prefix(ctx.project)
                .unwrap_or(entry.path());
            ctx.err(
                e.to_span.clone(),
                format!(
                    "this entry would install `{}`, whose name is not valid UTF-8",
                    shown.display()
                ),
            )
            .help =
                Some("rename it: the package's file lists (md5sums, conffiles) are UTF-8".into());
            return;
        };
        let d = format!("{dest}/{rel}");
        if !path_ok(ctx, e, &d) {
            return;
        }
        let kind = if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else {
            use std::os::unix::fs::FileTypeExt;
            let what = if ft.is_fifo() {
                "a FIFO (named pipe)"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_char_device() {
                "a character device"
            } else if ft.is_block_device() {
                "a block device"
            } else {
                "a special file"
            };
            let shown = entry
                .path()
                .strip_prefix(ctx.project)
                .unwrap_or(entry.path());
            ctx.err(
                e.to_span.clone(),
                format!(
                    "this entry would install `{}`, which is {what}: only regular files, \
                     directories and symlinks can be packaged",
                    shown.display()
                ),
            )
            .help = Some("remove it from the directory, or point `from` elsewhere".into());
            return;
        };
        paths.claim(ctx, &d, kind, owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_filesystems_by_component() {
        assert_eq!(kernel_fs("/proc").map(|k| k.0), Some("/proc"));
        assert_eq!(kernel_fs("/proc/sys/x").map(|k| k.0), Some("/proc"));
        assert_eq!(kernel_fs("/dev/null").map(|k| k.0), Some("/dev"));
        assert_eq!(kernel_fs("/sys/").map(|k| k.0), Some("/sys"));
        assert_eq!(kernel_fs("/process"), None);
        assert_eq!(kernel_fs("/usr/share/dev"), None);
        assert_eq!(kernel_fs("/device"), None);
    }

    #[test]
    fn modes_a_reviewer_would_accept() {
        for ok in [0o644, 0o755, 0o4755, 0o2755, 0o6755, 0o600, 0o775, 0o664] {
            assert_eq!(mode_problem(ok), None, "{ok:o}");
        }
        for bad in [0o7777, 0o4777, 0o4775, 0o2757, 0o1755, 0o666, 0o777] {
            assert!(mode_problem(bad).is_some(), "{bad:o}");
        }
        let (msg, help) = mode_problem(0o7777).unwrap();
        assert!(
            msg.contains("setuid and setgid program writable by every user"),
            "{msg}"
        );
        assert!(help.contains("\"6755\""), "{help}");
        let (_, help) = mode_problem(0o4775).unwrap();
        assert!(help.contains("\"4755\""), "{help}");
    }

    #[test]
    fn dpkg_name_and_path_limits() {
        assert_eq!(
            install_problem(&format!("/opt/{}", "a".repeat(MAX_NAME))),
            None
        );
        let long_name = install_problem(&format!("/opt/{}", "a".repeat(MAX_NAME + 1))).unwrap();
        assert!(long_name.contains("247 bytes"), "{long_name}");
        let deep = format!("/{}", vec!["d".repeat(200); 21].join("/"));
        let msg = install_problem(&deep).unwrap();
        assert!(msg.contains("at most 4086 bytes"), "{msg}");
    }
}
