//! Proves that an image's entrypoint can start, before the image is written.
//!
//! [`StartCheck::check`] models what happens on `execve` of the entrypoint inside the image,
//! reading only the image's merged filesystem through an [`FsView`]:
//!
//! * **The kernel** (Linux `binfmt_elf`/`binfmt_script`): the program must be a regular file
//!   with an execute bit; a `#!` line is parsed exactly as `fs/binfmt_script.c` does (first
//!   256 bytes, everything after the interpreter is *one* argument, a trailing `\r` is part
//!   of the name); at most [`MAX_SCRIPTS`] `#!` files may chain; an ELF's `PT_INTERP` must be
//!   an executable ELF of the program's class and machine.
//! * **`/usr/bin/env NAME`** in a `#!` line: `NAME` is looked up in the image's `PATH` as
//!   `execvp` does (also `env -S NAME ARGS`); whatever it finds is checked as a program.
//! * **glibc's `ld.so`** (Debian 12, glibc 2.36, `elf/dl-load.c`): every `DT_NEEDED`, breadth
//!   first in load order, each object loaded once (by requested name, `DT_SONAME` or file),
//!   searched in this order:
//!   1. a name containing `/` is used as a path (relative to the working directory, taken as `/`);
//!   2. `DT_RPATH` of the needing object, then of the object that loaded *it*, up to the
//!      executable; skipped entirely when the needing object has `DT_RUNPATH`, and an object
//!      with `DT_RUNPATH` never contributes its own `DT_RPATH`;
//!   3. `LD_LIBRARY_PATH` from the image's environment (`:` or `;` separated);
//!   4. `DT_RUNPATH` of the needing object only (not inherited);
//!   5. `/etc/ld.so.cache` when the image has one (both the `glibc-ld.so.cache1.1` format and
//!      the old `ld.so-1.7.0` one, entries filtered by the flags ld.so accepts for the
//!      architecture; when the needing object has `DF_1_NODEFLIB` (`-z nodefaultlib`),
//!      entries under the system directories are ignored);
//!   6. the system directories, unless the needing object has `DF_1_NODEFLIB`.
//!
//!   `$ORIGIN`, `$LIB` and `$PLATFORM` (also `${...}`) are expanded in paths; an empty list
//!   entry means the working directory (`/`). A candidate of another ELF class or machine is
//!   skipped (reported as [`MissingReason::WrongArchitecture`] when nothing else is found); a
//!   candidate that exists but is not a loadable shared object (not ELF, a directory, an
//!   executable, a PIE, truncated headers) stops ld.so with an error, reported as
//!   [`MissingReason::Invalid`].
//!
//!   Once all are loaded, every non-weak symbol version an object needs (`DT_VERNEED`) must
//!   be defined (`DT_VERDEF`) by the object it names, as glibc's `dl-version.c` checks:
//!   "version `GLIBC_2.38' not found" is [`MissingReason::Version`].
//!
//! Verified empirically on Debian 12 x86_64 (the tests build real programs with gcc, lay out
//! merged-usr image roots, and run each case for real in a chroot with `/proc`, comparing
//! success and ld.so's own `LD_TRACE_LOADED_OBJECTS=1` list with this check's answer):
//! * system directories: `ld.so --help` prints `/lib/x86_64-linux-gnu`,
//!   `/usr/lib/x86_64-linux-gnu`, `/lib`, `/usr/lib` (there is no `/lib64`); the same pattern
//!   with the multiarch triplet is compiled into the `ld.so` of Debian 12's `libc6` for i386,
//!   arm64 and armhf (the strings in the binaries);
//! * `LD_DEBUG=libs` shows `$LIB` = `lib/x86_64-linux-gnu`, `$PLATFORM` = `x86_64`, the
//!   main program's `$ORIGIN` is the directory of its *real* path (`/bin/true` gives
//!   `/usr/bin`), unknown `$NAME`s stay literal and empty entries mean the working directory;
//! * a `#!` chain of 5 scripts runs, 6 fail with `ELOOP`;
//! * a candidate library that is garbage, a directory, a PIE, an `ET_EXEC` or `ET_REL` makes
//!   ld.so fail instead of searching on;
//! * `-z nodefaultlib` (`DF_1_NODEFLIB`) also drops ld.so.cache entries under the system
//!   directories (`-z nodeflib` is silently ignored by GNU ld, it is not the same flag);
//! * a versioned reference to a library without version information makes ld.so warn and
//!   then fail an assertion when binding the symbol.
//!
//! Deliberate limits (all conservative or irrelevant for images):
//! * hardware-capability subdirectories (`glibc-hwcaps/x86-64-v3`, legacy `tls`, `x86_64`)
//!   and cache entries that need a capability are not used: which of them ld.so picks depends
//!   on the CPU, so a library found *only* there is reported missing;
//! * `LD_PRELOAD` and `/etc/ld.so.preload` are ignored (ld.so only warns when they are missing);
//! * the working directory is `/`; setuid "secure mode" is not modelled;
//! * a library truncated after its headers, dynamic section and string table is not noticed
//!   (only those parts are read);
//! * individual symbols are not resolved (only the versions above): a library that has the
//!   right version but lacks a symbol is not noticed;
//! * musl or other loaders are not modelled: the glibc rules are applied to every interpreter.
//!
//! Filesystem access goes only through [`FsView`]; paths handed to it are absolute,
//! normalised and free of symlinks in every directory component.
//! `DirView` (tests) is an [`FsView`] over an unpacked root directory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use object::elf;
use object::elf::{FileHeader32, FileHeader64};
use object::read::elf::{Dyn as _, FileHeader, ProgramHeader as _};
use object::{Endian as _, Endianness};

use crate::diag::escape_controls;

mod abi;
mod dst;
mod ldcache;
mod object_file;
mod paths;
mod run;
mod shebang;

use abi::*;
use dst::*;
use ldcache::*;
use object_file::*;
use paths::*;
use run::*;
use shebang::*;

/// Symlinks followed in one path lookup before giving up (Linux `MAXSYMLINKS`, `ELOOP`).
pub(crate) const MAX_SYMLINKS: usize = 40;
/// `#!` files allowed in one exec chain: Linux `exec_binprm` gives up after 5 interpreter
/// rewrites (measured: a chain of 5 scripts runs, 6 fail with `ELOOP`).
pub(crate) const MAX_SCRIPTS: usize = 5;
/// Programs started one after the other by `#!/usr/bin/env NAME` before this check calls it a loop.
const MAX_ENV_EXECS: usize = 8;
/// Shared objects one program may load before this check gives up.
pub(crate) const MAX_OBJECTS: usize = 1000;
/// The first read of a file: enough for a `#!` line and, nearly always, all ELF headers.
const HEAD_READ: u64 = 64 * 1024;
/// The most read of one ELF file to reach its program headers, dynamic section and strings.
const MAX_ELF_READ: u64 = 256 * 1024 * 1024;
/// The most read of `/etc/ld.so.cache`.
const MAX_CACHE_READ: u64 = 64 * 1024 * 1024;
/// Linux `BINPRM_BUF_SIZE`: how much of a file the kernel looks at for `#!`.
const BINPRM_BUF_SIZE: usize = 256;
/// The `PATH` a container gets when its image sets none (Docker's and containerd's default).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const LD_SO_CACHE: &str = "/etc/ld.so.cache";

// ---------------------------------------------------------------------------------------------
// Public interface
// ---------------------------------------------------------------------------------------------

/// What a filesystem path is in the image view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// A directory.
    Dir,
    /// A regular file; `mode` holds at least the permission bits (`st_mode & 0o7777`; file
    /// type bits, if present, are ignored). Other non-directory nodes (devices, FIFOs) may
    /// also be reported as `File` with a mode without execute bits.
    File { mode: u32 },
    /// A symbolic link and its target, exactly as stored.
    Symlink(String),
}

/// A read-only view of the image's merged filesystem (all layers applied).
///
/// Paths are absolute and normalised (`/usr/lib/x`, no `.`/`..`/`//`). This module only asks
/// about paths whose directory components are real directories (it resolves symlinks itself,
/// see [`resolve_path`]); an implementation may answer `None` when a parent is a symlink.
pub(crate) trait FsView {
    /// The node at exactly this path, WITHOUT following a final symlink (like `lstat`);
    /// `None` if absent.
    fn node(&self, path: &str) -> Option<Node>;
    /// The first `limit` bytes (or fewer, at the end of the file) of the regular file at this
    /// path; `None` if it is not a readable regular file. No symlink following is needed.
    fn read(&self, path: &str, limit: u64) -> Option<Vec<u8>>;
    /// The owner `(uid, gid)` of the node at this path (no symlink following); root when
    /// the view does not know.
    fn owner(&self, _path: &str) -> (u32, u32) {
        (0, 0)
    }
}

/// Checks that a program can start in an image.
#[derive(Clone, Copy)]
pub(crate) struct StartCheck<'a> {
    /// The image's merged filesystem.
    pub view: &'a dyn FsView,
    /// The image's environment, `KEY=VALUE` (the config's `Env`); `PATH` and
    /// `LD_LIBRARY_PATH` are taken from it (a later entry wins, as after the runtime's
    /// `setenv` of each entry).
    pub env: &'a [String],
    /// The `(uid, gid)` the program runs as: execute permission is judged for it as the
    /// kernel does (owner, group, other; root needs any execute bit). `None`: any bit.
    pub user: Option<(u32, u32)>,
}

/// A program that will start, and what it loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Started {
    /// The program's real path in the image (symlinks resolved; a bare name is looked up in
    /// `PATH` first, as the runtime does).
    pub program: String,
    /// For [`ProgramKind::DynamicElf`]: its `PT_INTERP`, as written. `None` otherwise.
    pub interpreter: Option<String>,
    /// For [`ProgramKind::DynamicElf`]: every shared object ld.so loads, in load order, as
    /// `(name asked for in DT_NEEDED, path ld.so opens)`, the path as ld.so composes it from
    /// the search directory (what `ldd` prints; not symlink-resolved). Does not include the
    /// interpreter. Empty otherwise.
    pub libraries: Vec<(String, String)>,
    /// How the kernel starts it.
    pub kind: ProgramKind,
}

/// How the kernel starts a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProgramKind {
    /// An ELF executable without `PT_INTERP` (static, or static-pie).
    StaticElf,
    /// An ELF executable with `PT_INTERP`: ld.so loads its libraries.
    DynamicElf,
    /// A `#!` script.
    Script {
        /// The interpreter path exactly as written in the `#!` line.
        interpreter: String,
        /// The optional argument: everything after the interpreter, as one string (Linux).
        argument: Option<String>,
        /// How the interpreter itself starts (its libraries are there).
        runs: Box<Started>,
        /// For `#!/usr/bin/env NAME`: how the program `NAME` found in `PATH` starts.
        command: Option<Box<Started>>,
    },
}

/// Something the program needs that the image does not provide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Missing {
    /// The missing or unusable file: a path, a `DT_NEEDED` soname, or a command name.
    pub what: String,
    /// The path of the object that needs it (the program itself, a script, a library);
    /// empty when `what` is the checked program itself.
    pub needed_by: String,
    /// Where it was looked for, in order (directories; `/etc/ld.so.cache` when consulted).
    pub searched: Vec<String>,
    /// Why it cannot be used.
    pub reason: MissingReason,
}

/// Why a [`Missing`] item stops the program. The first five say which role the absent file
/// has; the others say what is wrong with a file that exists, in whatever role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MissingReason {
    /// The program itself does not exist (for a bare name: not in `PATH`).
    NotFound,
    /// The ELF interpreter (`PT_INTERP`) does not exist.
    Interpreter,
    /// A `DT_NEEDED` library was found nowhere ld.so looks.
    Library,
    /// A `#!` interpreter does not exist, or the `NAME` of `#!/usr/bin/env NAME` is not in
    /// `PATH` (then `searched` lists the `PATH` directories).
    ScriptInterpreter,
    /// Exists, but is not a regular file with an execute bit.
    NotExecutable,
    /// Only files of another ELF class or machine exist under that name (ld.so skips them);
    /// or the interpreter is of another class or machine than the program.
    WrongArchitecture,
    /// Too many levels of symbolic links, or of `#!` interpreters.
    Loop,
    /// Exists but cannot be executed or loaded (not ELF, corrupt, wrong type); the text says
    /// why, mostly in ld.so's or the kernel's words.
    Invalid(String),
    /// More than [`MAX_OBJECTS`] shared objects: the check stopped.
    TooManyObjects,
    /// The symbol version `what` is not defined by the library named here (as in
    /// `DT_VERNEED`; its path is in `searched`): ld.so's "version `X' not found", e.g. a
    /// program built against a newer glibc than the image has.
    Version(String),
}

impl StartCheck<'_> {
    /// Checks that `program` (an entrypoint's `argv[0]`: a path, or a bare name looked up in
    /// `PATH`) can start. `Ok` describes how; `Err` lists every missing or unusable file,
    /// deduplicated, in the order found (not only the first: ld.so would stop at the first).
    pub(crate) fn check(&self, program: &str) -> Result<Started, Vec<Missing>> {
        let mut run = Run {
            view: self.view,
            env: self.env,
            user: self.user,
            missing: Vec::new(),
            seen: HashSet::new(),
            caches: HashMap::new(),
        };
        let started = run.entry(program);
        match started {
            Some(s) if run.missing.is_empty() => Ok(s),
            _ => Err(run.missing),
        }
    }
}

impl Started {
    /// A one-line summary, e.g. `dynamic ELF via /lib64/ld-linux-x86-64.so.2, 3 libraries`.
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            ProgramKind::StaticElf => "static ELF".to_string(),
            ProgramKind::DynamicElf => {
                let n = self.libraries.len();
                format!(
                    "dynamic ELF via {}, {n} librar{}",
                    self.interpreter.as_deref().unwrap_or("?"),
                    if n == 1 { "y" } else { "ies" }
                )
            }
            ProgramKind::Script {
                interpreter,
                argument,
                runs,
                command,
            } => {
                let arg = argument
                    .as_deref()
                    .map(|a| format!(" {a}"))
                    .unwrap_or_default();
                let mut s = format!("script #!{interpreter}{arg}; {}", runs.describe());
                if let Some(c) = command {
                    s.push_str(&format!("; runs {}: {}", c.program, c.describe()));
                }
                s
            }
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by = if self.needed_by.is_empty() {
            String::new()
        } else {
            format!(" (needed by `{}`)", self.needed_by)
        };
        let searched = if self.searched.is_empty() {
            String::new()
        } else {
            format!("; searched {}", self.searched.join(", "))
        };
        let what = &escape_controls(&self.what);
        if self.what.ends_with('\r') {
            return write!(
                f,
                "#! interpreter `{what}`{by}: the script has Windows (CRLF) line ends; the \
                 kernel takes the `\\r` as part of the name"
            );
        }
        match &self.reason {
            MissingReason::NotFound => write!(f, "`{what}` does not exist{searched}"),
            MissingReason::Interpreter => {
                write!(f, "ELF interpreter `{what}`{by} does not exist")
            }
            MissingReason::Library => write!(f, "library `{what}`{by} not found{searched}"),
            MissingReason::ScriptInterpreter if self.searched.is_empty() => {
                write!(f, "#! interpreter `{what}`{by} does not exist")
            }
            MissingReason::ScriptInterpreter => {
                write!(f, "command `{what}`{by} is not in PATH{searched}")
            }
            MissingReason::NotExecutable => {
                write!(f, "`{what}`{by} is not an executable file")
            }
            MissingReason::WrongArchitecture => write!(
                f,
                "`{what}`{by}: only files of another architecture or ELF class exist{searched}"
            ),
            MissingReason::Loop => write!(
                f,
                "`{what}`{by}: too many levels of symbolic links or #! interpreters"
            ),
            MissingReason::Invalid(why) => write!(f, "`{what}`{by} cannot be used: {why}"),
            MissingReason::Version(lib) => write!(
                f,
                "symbol version `{what}` of `{lib}`{by} is not defined by {}",
                self.searched.join(", ")
            ),
            MissingReason::TooManyObjects => write!(
                f,
                "`{what}`{by}: more than {MAX_OBJECTS} shared objects, check stopped"
            ),
        }
    }
}

/// Follows symlinks in every component of `path` (relative targets against the link's
/// directory, absolute ones against the image root; `..` never goes above the root; at most
/// [`MAX_SYMLINKS`] links) and returns the real path. A relative `path` is taken relative to
/// `/`. The final node may be a file or a directory. `Err` says why there is no such path.
#[cfg(test)]
pub(crate) fn resolve_path(view: &dyn FsView, path: &str) -> Result<String, String> {
    resolve(view, path).map_err(|e| match e {
        Lookup::NotFound(at) if at.is_empty() || at == path => {
            format!("`{path}`: no such file or directory")
        }
        Lookup::NotFound(at) => format!("`{path}`: no such file or directory (at `{at}`)"),
        Lookup::NotDir(at) => format!("`{path}`: `{at}` is not a directory"),
        Lookup::Loop => format!("`{path}`: too many levels of symbolic links"),
    })
}

/// An [`FsView`] over an unpacked root directory on the host. Never leaves the root: any
/// path whose parent components are not real directories (symlinks included) is absent,
/// and symlinks are reported, never followed.
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct DirView {
    root: std::path::PathBuf,
}

#[cfg(test)]
impl DirView {
    /// A view of the tree under `root`.
    pub(crate) fn new(root: impl Into<std::path::PathBuf>) -> Self {
        DirView { root: root.into() }
    }

    /// The host path for an image path, if all its parents are real directories.
    fn host_path(&self, path: &str) -> Option<std::path::PathBuf> {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut p = self.root.clone();
        for (i, c) in comps.iter().enumerate() {
            if *c == "." || *c == ".." {
                return None;
            }
            p.push(c);
            if i + 1 < comps.len() && !std::fs::symlink_metadata(&p).ok()?.is_dir() {
                return None;
            }
        }
        Some(p)
    }
}

#[cfg(test)]
impl FsView for DirView {
    fn node(&self, path: &str) -> Option<Node> {
        use std::os::unix::fs::PermissionsExt;
        let p = self.host_path(path)?;
        let md = std::fs::symlink_metadata(&p).ok()?;
        let ft = md.file_type();
        Some(if ft.is_symlink() {
            Node::Symlink(std::fs::read_link(&p).ok()?.to_string_lossy().into_owned())
        } else if ft.is_dir() {
            Node::Dir
        } else if ft.is_file() {
            Node::File {
                mode: md.permissions().mode() & 0o7777,
            }
        } else {
            // Devices, FIFOs, sockets: never executable, never read.
            Node::File { mode: 0 }
        })
    }

    fn read(&self, path: &str, limit: u64) -> Option<Vec<u8>> {
        use std::io::Read;
        let p = self.host_path(path)?;
        if !std::fs::symlink_metadata(&p).ok()?.file_type().is_file() {
            return None;
        }
        let mut buf = Vec::new();
        std::fs::File::open(&p)
            .ok()?
            .take(limit)
            .read_to_end(&mut buf)
            .ok()?;
        Some(buf)
    }
}

#[cfg(test)]
mod tests;
