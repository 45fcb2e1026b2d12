//! The start check against real programs built with gcc and run for real in a chroot.
#![allow(clippy::print_stderr)]

use super::*;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

// ---- an in-memory view, for rules that need no real files ----

#[derive(Default)]
struct MemView {
    nodes: HashMap<String, Node>,
    data: HashMap<String, Vec<u8>>,
}

impl MemView {
    fn parents(&mut self, path: &str) {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut p = String::new();
        for c in &comps[..comps.len().saturating_sub(1)] {
            p.push('/');
            p.push_str(c);
            self.nodes.entry(p.clone()).or_insert(Node::Dir);
        }
    }
    fn file(&mut self, path: &str, bytes: &[u8], mode: u32) -> &mut Self {
        self.parents(path);
        self.nodes.insert(path.to_string(), Node::File { mode });
        self.data.insert(path.to_string(), bytes.to_vec());
        self
    }
    fn link(&mut self, path: &str, target: &str) -> &mut Self {
        self.parents(path);
        self.nodes
            .insert(path.to_string(), Node::Symlink(target.to_string()));
        self
    }
    fn dir(&mut self, path: &str) -> &mut Self {
        self.parents(path);
        self.nodes.insert(path.to_string(), Node::Dir);
        self
    }
}

impl FsView for MemView {
    fn node(&self, path: &str) -> Option<Node> {
        if path == "/" {
            return Some(Node::Dir);
        }
        self.nodes.get(path).cloned()
    }
    fn read(&self, path: &str, limit: u64) -> Option<Vec<u8>> {
        let d = self.data.get(path)?;
        Some(d[..d.len().min(limit as usize)].to_vec())
    }
}

fn strings(env: &[&str]) -> Vec<String> {
    env.iter().map(|s| s.to_string()).collect()
}

fn check_view(view: &dyn FsView, env: &[&str], program: &str) -> Result<Started, Vec<Missing>> {
    let env = strings(env);
    StartCheck {
        view,
        env: &env,
        user: None,
    }
    .check(program)
}

// ---- rules without real programs ----

#[test]
fn resolve_path_follows_links_inside_the_root() {
    let mut v = MemView::default();
    v.dir("/usr/bin")
        .link("/bin", "usr/bin")
        .file("/usr/bin/dash", b"x", 0o755)
        .link("/usr/bin/sh", "dash")
        .link("/usr/bin/abs", "/usr/bin/sh")
        .link("/usr/bin/up", "../../../../../../usr/bin/dash")
        .link("/usr/bin/out", "../../../../../etc/passwd")
        .link("/usr/bin/a", "b")
        .link("/usr/bin/b", "a")
        .link("/usr/bin/self", "self")
        .link("/usr/bin/empty", "")
        .link("/usr/bin/dotdir", "/bin/../bin/./")
        .link("/lnk", "/usr/bin");
    let r = |p: &str| resolve_path(&v, p);
    assert_eq!(r("/bin/sh").unwrap(), "/usr/bin/dash");
    assert_eq!(r("bin/sh").unwrap(), "/usr/bin/dash", "relative to /");
    assert_eq!(r("/usr/bin/abs").unwrap(), "/usr/bin/dash");
    assert_eq!(
        r("/usr/bin/up").unwrap(),
        "/usr/bin/dash",
        ".. stops at the root"
    );
    assert_eq!(r("/../../bin//./sh").unwrap(), "/usr/bin/dash");
    assert_eq!(r("/").unwrap(), "/");
    assert_eq!(r("/bin").unwrap(), "/usr/bin");
    assert_eq!(r("/usr/bin/dotdir/sh").unwrap(), "/usr/bin/dash");
    // `..` is physical: /lnk/.. is the parent of /usr/bin, not /.
    assert_eq!(r("/lnk/../bin/sh").unwrap(), "/usr/bin/dash");
    // Pointing "outside" stays inside: /etc/passwd of the image, which is absent.
    assert!(r("/usr/bin/out").unwrap_err().contains("no such file"));
    assert!(r("/usr/bin/a").unwrap_err().contains("too many levels"));
    assert!(r("/usr/bin/self").unwrap_err().contains("too many levels"));
    assert!(r("/usr/bin/empty").is_err());
    assert!(r("/usr/bin/dash/x")
        .unwrap_err()
        .contains("not a directory"));
    assert!(r("/usr/bin/dash/").unwrap_err().contains("not a directory"));
    assert!(r("").is_err());

    // Exactly MAX_SYMLINKS links are followed, one more is a loop.
    let mut v = MemView::default();
    v.file("/f", b"", 0o644);
    for i in 0..=MAX_SYMLINKS {
        let target = if i == 0 {
            "/f".to_string()
        } else {
            format!("/l{}", i - 1)
        };
        v.link(&format!("/l{i}"), &target);
    }
    assert_eq!(
        resolve_path(&v, &format!("/l{}", MAX_SYMLINKS - 1)).unwrap(),
        "/f"
    );
    assert!(resolve_path(&v, &format!("/l{MAX_SYMLINKS}")).is_err());
}

#[test]
fn shebang_lines_parse_like_linux() {
    let p = |s: &[u8]| parse_shebang(s);
    let some = |i: &str, a: Option<&str>| Some((i.to_string(), a.map(str::to_string)));
    assert_eq!(p(b"#!/bin/sh\necho\n"), some("/bin/sh", None));
    assert_eq!(
        p(b"#!/bin/sh"),
        some("/bin/sh", None),
        "no newline, short file"
    );
    assert_eq!(p(b"#! \t/bin/sh -e  \t\n"), some("/bin/sh", Some("-e")));
    // Everything after the interpreter is one argument.
    assert_eq!(
        p(b"#!/usr/bin/env python3 -u\n"),
        some("/usr/bin/env", Some("python3 -u"))
    );
    // A CRLF line keeps the \r: the interpreter "/bin/sh\r" does not exist.
    assert_eq!(p(b"#!/bin/sh\r\n"), some("/bin/sh\r", None));
    assert_eq!(p(b"#!/bin/sh -x\r\n"), some("/bin/sh", Some("-x\r")));
    assert_eq!(p(b"#!\n"), None);
    assert_eq!(p(b"#!   \n"), None);
    // A NUL ends the line for the kernel.
    assert_eq!(p(b"#!/bin/sh\0garbage\n"), some("/bin/sh", None));
    // 300 bytes of path and no terminator in the first 256: possibly truncated, refused.
    let mut long = b"#!/".to_vec();
    long.extend(std::iter::repeat_n(b'a', 300));
    assert_eq!(p(&long), None);
    // A long line whose interpreter ends inside the buffer: the argument is cut at 255.
    let mut cut = b"#!/bin/sh ".to_vec();
    cut.extend(std::iter::repeat_n(b'b', 300));
    let (i, a) = p(&cut).unwrap();
    assert_eq!(i, "/bin/sh");
    assert_eq!(a.unwrap().len(), BINPRM_BUF_SIZE - 1 - 10);
}

#[test]
fn env_arguments_name_the_command() {
    assert_eq!(env_command("python3").as_deref(), Some("python3"));
    assert_eq!(env_command("python3 -u").as_deref(), Some("python3 -u"));
    assert_eq!(env_command("-S python3 -u").as_deref(), Some("python3"));
    assert_eq!(env_command("-SA=1 B=2 node x").as_deref(), Some("node"));
    assert_eq!(env_command("-i"), None);
    assert_eq!(env_command("A=1"), None);
}

#[test]
fn dynamic_string_tokens_expand_like_glibc() {
    let info = ElfInfo {
        class64: true,
        machine: elf::EM_X86_64.0,
        ..ElfInfo::default()
    };
    let abi = Abi::of(&info);
    let x = |s: &str| expand_dst(s, "/opt/app/bin", &abi);
    assert_eq!(x("$ORIGIN/../lib").as_deref(), Some("/opt/app/bin/../lib"));
    assert_eq!(x("${ORIGIN}/x").as_deref(), Some("/opt/app/bin/x"));
    assert_eq!(x("/a/$LIB/b").as_deref(), Some("/a/lib/x86_64-linux-gnu/b"));
    assert_eq!(x("/a/${PLATFORM}").as_deref(), Some("/a/x86_64"));
    assert_eq!(x("/a/$ORIGINAL").as_deref(), Some("/a/$ORIGINAL"));
    assert_eq!(x("/a/$FOO/${LIB").as_deref(), Some("/a/$FOO/${LIB"));
    assert_eq!(x("$").as_deref(), Some("$"));
    // $PLATFORM has no fixed value on armhf: ld.so would drop such a path.
    let arm = Abi::of(&ElfInfo {
        machine: elf::EM_ARM.0,
        e_flags: EF_ARM_ABI_FLOAT_HARD,
        ..ElfInfo::default()
    });
    assert_eq!(expand_dst("/x/$PLATFORM", "/", &arm), None);
    assert_eq!(
        search_list("$ORIGIN/../lib::/a//:/a:$LIB", &[':'], "/o/bin", &abi),
        ["/o/bin/../lib", "/", "/a", "/lib/x86_64-linux-gnu"]
    );
    assert_eq!(
        search_list("/x;/y:", &[':', ';'], "/", &abi),
        ["/x", "/y", "/"]
    );
    assert_eq!(
        abi.system_dirs(),
        [
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib",
            "/usr/lib"
        ]
    );
}

#[test]
fn dir_view_never_leaves_its_root() {
    let tmp = TempDir::new("dirview");
    let root = tmp.path();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
    symlink("/etc", root.join("abs")).unwrap();
    symlink("../../../../../../../../etc", root.join("rel")).unwrap();
    symlink("/etc/hostname", root.join("usr/bin/host")).unwrap();
    let v = DirView::new(root);
    assert_eq!(v.node("/abs"), Some(Node::Symlink("/etc".to_string())));
    // A parent that is a symlink is never followed by the view itself…
    assert_eq!(v.node("/abs/hostname"), None);
    assert_eq!(v.read("/rel/hostname", 100), None);
    assert_eq!(v.node("/usr/../etc"), None);
    // …and resolution keeps them inside the image, where there is no /etc.
    assert!(resolve_path(&v, "/abs/hostname").is_err());
    assert!(resolve_path(&v, "/rel/hostname").is_err());
    assert!(resolve_path(&v, "/usr/bin/host").is_err());
    assert_eq!(
        v.read("/usr/bin/host", 100),
        None,
        "final symlinks are not read"
    );
    assert_eq!(v.read("/usr/bin/tool", 4).unwrap(), b"#!/b");
    assert!(matches!(v.node("/usr/bin/tool"), Some(Node::File { .. })));
    assert_eq!(v.node("/usr"), Some(Node::Dir));
}

// ---- real programs, real loader ----

const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";
const MULTIARCH: &str = "/lib/x86_64-linux-gnu";
const SYSTEM_DIRS: [&str; 4] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
];

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("start-{}-{tag}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Whether this host can build and host the real-program tests: Debian-like x86_64
/// with gcc and zlib.
fn host_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    let ready = *READY.get_or_init(|| {
        cfg!(all(target_os = "linux", target_arch = "x86_64"))
            && Path::new(LOADER).exists()
            && Path::new(MULTIARCH).join("libc.so.6").exists()
            && Path::new(MULTIARCH).join("libz.so.1").exists()
            && Command::new("gcc")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
    });
    if !ready {
        eprintln!("skipped: needs x86_64 Debian with gcc, {LOADER} and libz");
    }
    ready
}

/// Runs a program in an image root as a container runtime would: `runner ROOT PROG
/// [KEY=VALUE...]` makes a private mount namespace, mounts /proc in the root (glibc reads
/// /proc/self/exe for the program's $ORIGIN), chroots, and execs PROG with exactly that
/// environment. The environment comes as arguments so that `LD_TRACE_LOADED_OBJECTS`
/// reaches only PROG.
const RUNNER: &str = r#"#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
char proc[4096];
char *args[2] = {argv[2], 0};
if (argc < 3) return 126;
if (unshare(CLONE_NEWNS) || mount(0, "/", 0, MS_REC | MS_PRIVATE, 0)) { perror("ns"); return 126; }
snprintf(proc, sizeof proc, "%s/proc", argv[1]);
mkdir(proc, 0555);
if (mount("proc", proc, "proc", 0, 0)) { perror("proc"); return 126; }
if (chroot(argv[1]) || chdir("/")) { perror("chroot"); return 126; }
execve(argv[2], args, argv + 3);
perror("execve");
return 127;
}
"#;

/// The runner, built once; `None` where it cannot work (then real runs are skipped).
fn runner() -> Option<&'static Path> {
    static RUNNER_PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    RUNNER_PATH
        .get_or_init(|| {
            let tmp = TempDir::new("runner");
            let built = gcc(tmp.path(), "runner", RUNNER, &[]);
            // Kept under a fixed name (one file, reused by later runs), replaced atomically.
            let keep = std::env::temp_dir().join(format!("start-check-runner-{}", RUNNER.len()));
            fs::rename(&built, &keep).ok()?;
            let probe = TempDir::new("probe");
            let works = Command::new(&keep)
                .arg(probe.path())
                .arg("/nonexistent")
                .env_clear()
                .output()
                .is_ok_and(|o| o.status.code() == Some(127));
            if !works {
                eprintln!("cannot chroot and mount /proc here: real runs are not compared");
                let _ = fs::remove_file(&keep);
                return None;
            }
            Some(keep)
        })
        .as_deref()
}

/// Compiles `src` with gcc into `dir/name`, with `args` after the source.
fn gcc(dir: &Path, name: &str, src: &str, args: &[&str]) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    fs::write(&c, src).unwrap();
    let out = dir.join(name);
    let o = Command::new("gcc")
        .current_dir(dir)
        .arg(&c)
        .arg("-o")
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "gcc {name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

const USES_Z_AND_M: &str = "const char *zlibVersion(void);\ndouble cos(double);\n\
    int main(int argc, char **argv) { volatile double x = argc; (void)argv;\n\
    return zlibVersion() != 0 && cos(x) < 2.0 ? 0 : 1; }\n";
const CUSTOM_LIB: &str = "int custom(void) { return 7; }\n";
const USES_CUSTOM: &str = "int custom(void);\nint main(void) { return custom() == 7 ? 0 : 1; }\n";
const TRIVIAL: &str = "int main(void) { return 0; }\n";

/// A Debian 12 style merged-usr image root in a temp dir.
struct Root {
    dir: TempDir,
}

impl Root {
    fn new() -> Root {
        let dir = TempDir::new("root");
        let r = dir.path();
        for d in [
            "usr/bin",
            "usr/sbin",
            "usr/lib/x86_64-linux-gnu",
            "usr/lib64",
            "usr/local/bin",
            "etc",
            "opt",
        ] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        for (l, t) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            symlink(t, r.join(l)).unwrap();
        }
        Root { dir }
    }

    /// A root with the loader and libc.
    fn with_libc() -> Root {
        let r = Root::new();
        r.copy_host(LOADER);
        r.copy_host("/lib/x86_64-linux-gnu/libc.so.6");
        r
    }

    fn host(&self, path: &str) -> PathBuf {
        self.dir.path().join(path.trim_start_matches('/'))
    }

    /// Copies a host file to the same real place, with every symlink on the way.
    fn copy_host(&self, host: &str) {
        let host = Path::new(host);
        let parent = fs::canonicalize(host.parent().unwrap()).unwrap();
        let src = parent.join(host.file_name().unwrap());
        let dst = self
            .host(parent.to_str().unwrap())
            .join(host.file_name().unwrap());
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        if fs::symlink_metadata(&src).unwrap().file_type().is_symlink() {
            let target = fs::read_link(&src).unwrap();
            if fs::symlink_metadata(&dst).is_err() {
                symlink(&target, &dst).unwrap();
            }
            let next = if target.is_absolute() {
                target
            } else {
                parent.join(target)
            };
            self.copy_host(next.to_str().unwrap());
        } else if fs::symlink_metadata(&dst).is_err() {
            fs::copy(&src, &dst).unwrap();
        }
    }

    fn install(&self, src: &Path, dest: &str) {
        let d = self.host(dest);
        fs::create_dir_all(d.parent().unwrap()).unwrap();
        fs::copy(src, &d).unwrap();
    }

    fn write(&self, dest: &str, bytes: &[u8], mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let d = self.host(dest);
        fs::create_dir_all(d.parent().unwrap()).unwrap();
        fs::write(&d, bytes).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn link(&self, path: &str, target: &str) {
        let d = self.host(path);
        fs::create_dir_all(d.parent().unwrap()).unwrap();
        symlink(target, d).unwrap();
    }

    fn remove(&self, path: &str) {
        fs::remove_file(self.host(path)).unwrap();
    }

    fn check(&self, program: &str, env: &[&str]) -> Result<Started, Vec<Missing>> {
        check_view(&DirView::new(self.dir.path()), env, program)
    }

    /// Runs `program` in the root, for real, with the runtime's default PATH if `env`
    /// has none.
    fn run(&self, program: &str, env: &[&str]) -> Option<Output> {
        let mut c = Command::new(runner()?);
        c.arg(self.dir.path()).arg(program).args(env).env_clear();
        if !env.iter().any(|kv| kv.starts_with("PATH=")) {
            c.arg(format!("PATH={DEFAULT_PATH}"));
        }
        // Another test thread forking while this one wrote the program holds its write
        // descriptor until that child execs: exec then fails with ETXTBSY. Retry that.
        let mut out = c.output().unwrap();
        for _ in 0..20 {
            if !String::from_utf8_lossy(&out.stderr).contains("Text file busy") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            out = c.output().unwrap();
        }
        assert_ne!(
            out.status.code(),
            Some(126),
            "runner: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(out)
    }

    /// The check's verdict for `program`, compared with running it for real: it starts
    /// exactly when the check passes; for dynamic ELF programs, ld.so's own list
    /// (`LD_TRACE_LOADED_OBJECTS=1`, what ldd prints) has the same libraries, in the
    /// same order, at the same paths, and the same missing names.
    fn check_agrees(&self, program: &str, env: &[&str]) -> Result<Started, Vec<Missing>> {
        let result = self.check(program, env);
        let Some(out) = self.run(program, env) else {
            return result;
        };
        assert_eq!(
            out.status.success(),
            result.is_ok(),
            "the real run of {program} disagrees with {result:#?}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let traceable = match &result {
            Ok(s) => s.kind == ProgramKind::DynamicElf,
            Err(ms) => ms.iter().all(|m| {
                matches!(
                    m.reason,
                    MissingReason::Library | MissingReason::WrongArchitecture
                )
            }),
        };
        if !traceable {
            return result;
        }
        let mut env = env.to_vec();
        env.push("LD_TRACE_LOADED_OBJECTS=1");
        let out = self.run(program, &env).unwrap();
        if !out.status.success() {
            // ld.so stopped on something beyond this check (e.g. a symbol version of
            // a library that is missing): no list to compare.
            return result;
        }
        let (found, not_found) = parse_trace(&String::from_utf8_lossy(&out.stdout));
        match &result {
            Ok(s) => {
                assert_eq!(found, s.libraries, "ld.so's list differs");
                assert!(not_found.is_empty());
            }
            Err(ms) => {
                let ours: BTreeSet<String> = ms.iter().map(|m| m.what.clone()).collect();
                assert_eq!(not_found, ours, "ld.so's missing list differs");
            }
        }
        result
    }
}

/// ld.so's trace output: loaded `(name, path)` in order, and the names not found.
fn parse_trace(out: &str) -> (Vec<(String, String)>, BTreeSet<String>) {
    let mut found = Vec::new();
    let mut not_found = BTreeSet::new();
    for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let strip = |s: &str| s.rsplit_once(" (0x").map_or(s, |(p, _)| p).to_string();
        if let Some((name, rest)) = line.split_once(" => ") {
            if rest.trim() == "not found" {
                not_found.insert(name.to_string());
            } else {
                found.push((name.to_string(), strip(rest)));
            }
        } else {
            let name = strip(line);
            if !name.starts_with("linux-vdso") && name != LOADER {
                found.push((name.clone(), name));
            }
        }
    }
    (found, not_found)
}

/// The real path of a host file (the same path in a root laid out by [`Root`]).
fn host_real(path: &str) -> String {
    fs::canonicalize(path)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn libs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn only_missing(result: Result<Started, Vec<Missing>>) -> Missing {
    let ms = result.unwrap_err();
    assert_eq!(ms.len(), 1, "{ms:#?}");
    ms.into_iter().next().unwrap()
}

fn system_dirs() -> Vec<String> {
    SYSTEM_DIRS.iter().map(|s| s.to_string()).collect()
}

#[test]
fn complete_root_resolves_like_ld_so() {
    if !host_ready() {
        return;
    }
    let b = TempDir::new("build");
    let prog = gcc(
        b.path(),
        "prog",
        USES_Z_AND_M,
        &["-Wl,--no-as-needed", "-lz", "-lm"],
    );
    let root = Root::with_libc();
    root.copy_host("/lib/x86_64-linux-gnu/libz.so.1");
    root.copy_host("/lib/x86_64-linux-gnu/libm.so.6");
    root.install(&prog, "/usr/bin/prog");
    let started = root.check_agrees("/usr/bin/prog", &[]).unwrap();
    assert_eq!(started.program, "/usr/bin/prog");
    assert_eq!(started.kind, ProgramKind::DynamicElf);
    assert_eq!(started.interpreter.as_deref(), Some(LOADER));
    let expected = libs(&[
        ("libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1"),
        ("libm.so.6", "/lib/x86_64-linux-gnu/libm.so.6"),
        ("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"),
    ]);
    assert_eq!(started.libraries, expected);
    assert_eq!(
        started.describe(),
        "dynamic ELF via /lib64/ld-linux-x86-64.so.2, 3 libraries"
    );
    // Through the merged-usr symlink and as a bare name found in PATH.
    let via_link = root.check_agrees("/bin/prog", &[]).unwrap();
    assert_eq!(via_link.program, "/usr/bin/prog");
    let bare = root.check("prog", &[]).unwrap();
    assert_eq!(bare.libraries, expected);
    let m = only_missing(root.check("prog", &["PATH=/usr/local/bin:/sbin"]));
    assert_eq!(m.reason, MissingReason::NotFound);
    assert_eq!(m.searched, ["/usr/local/bin", "/sbin"]);
}

#[test]
fn missing_library_is_named_with_its_needer() {
    if !host_ready() {
        return;
    }
    let b = TempDir::new("build");
    let prog = gcc(
        b.path(),
        "prog",
        USES_Z_AND_M,
        &["-Wl,--no-as-needed", "-lz", "-lm"],
    );
    let root = Root::with_libc();
    root.copy_host("/lib/x86_64-linux-gnu/libm.so.6");
    root.install(&prog, "/usr/bin/prog");
    let m = only_missing(root.check_agrees("/usr/bin/prog", &[]));
    assert_eq!(
        m,
        Missing {
            what: "libz.so.1".into(),
            needed_by: "/usr/bin/prog".into(),
            searched: system_dirs(),
            reason: MissingReason::Library,
        }
    );
    assert_eq!(
        m.to_string(),
        "library `libz.so.1` (needed by `/usr/bin/prog`) not found; searched \
         /lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu, /lib, /usr/lib"
    );

    // Without libc every object that needs it is named, each once.
    root.copy_host("/lib/x86_64-linux-gnu/libz.so.1");
    root.remove(&host_real("/lib/x86_64-linux-gnu/libc.so.6"));
    let ms = root.check_agrees("/usr/bin/prog", &[]).unwrap_err();
    let got: Vec<(&str, &str)> = ms
        .iter()
        .map(|m| (m.what.as_str(), m.needed_by.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("libc.so.6", "/usr/bin/prog"),
            ("libc.so.6", "/lib/x86_64-linux-gnu/libz.so.1"),
            ("libc.so.6", "/lib/x86_64-linux-gnu/libm.so.6"),
        ]
    );
}

#[test]
fn missing_interpreter_is_reported() {
    if !host_ready() {
        return;
    }
    let b = TempDir::new("build");
    let prog = gcc(b.path(), "prog", TRIVIAL, &[]);
    let root = Root::with_libc();
    root.install(&prog, "/usr/bin/prog");
    root.check_agrees("/usr/bin/prog", &[]).unwrap();
    root.remove(&host_real(LOADER));
    let m = only_missing(root.check_agrees("/usr/bin/prog", &[]));
    assert_eq!(m.what, LOADER);
    assert_eq!(m.needed_by, "/usr/bin/prog");
    assert_eq!(m.reason, MissingReason::Interpreter);
    // An interpreter that is not executable cannot be exec'd by the kernel either.
    root.copy_host(LOADER);
    use std::os::unix::fs::PermissionsExt;
    let ld = root.host(&host_real(LOADER));
    fs::set_permissions(&ld, fs::Permissions::from_mode(0o644)).unwrap();
    let m = only_missing(root.check_agrees("/usr/bin/prog", &[]));
    assert_eq!(m.reason, MissingReason::NotExecutable);
}

#[test]
fn static_program_needs_nothing() {
    if !host_ready() {
        return;
    }
    if !Path::new("/usr/lib/x86_64-linux-gnu/libc.a").exists() {
        eprintln!("skipped: no libc.a for -static");
        return;
    }
    let b = TempDir::new("build");
    let prog = gcc(b.path(), "prog", TRIVIAL, &["-static"]);
    let pie = gcc(b.path(), "pie", TRIVIAL, &["-static-pie"]);
    let root = Root::new();
    root.install(&prog, "/usr/bin/prog");
    root.install(&pie, "/usr/bin/pie");
    for p in ["/usr/bin/prog", "/usr/bin/pie"] {
        let s = root.check_agrees(p, &[]).unwrap();
        assert_eq!(s.kind, ProgramKind::StaticElf);
        assert!(s.libraries.is_empty() && s.interpreter.is_none());
    }
}

#[test]
fn rpath_origin_finds_a_private_library() {
    if !host_ready() {
        return;
    }
    let b = TempDir::new("build");
    let lib = gcc(
        b.path(),
        "libcustom.so.1",
        CUSTOM_LIB,
        &["-shared", "-fPIC", "-Wl,-soname,libcustom.so.1"],
    );
    let root = Root::with_libc();
    root.install(&lib, "/opt/app/lib/libcustom.so.1");
    for dtags in ["--disable-new-dtags", "--enable-new-dtags"] {
        let prog = gcc(
            b.path(),
            "prog",
            USES_CUSTOM,
            &[
                "-L.",
                "-l:libcustom.so.1",
                &format!("-Wl,{dtags}"),
                "-Wl,-rpath,$ORIGIN/../lib",
            ],
        );
        root.install(&prog, "/opt/app/bin/prog");
        // Called through a symlink: $ORIGIN is the real directory, as from /proc/self/exe.
        let _ = fs::remove_file(root.host("/usr/bin/app"));
        root.link("/usr/bin/app", "/opt/app/bin/prog");
        let s = root.check_agrees("/usr/bin/app", &[]).unwrap();
        assert_eq!(
            s.libraries,
            libs(&[
                ("libcustom.so.1", "/opt/app/bin/../lib/libcustom.so.1"),
                ("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"),
            ])
        );
    }
    // $ORIGIN in LD_LIBRARY_PATH is the executable's directory too.
    let prog = gcc(
        b.path(),
        "prog2",
        USES_CUSTOM,
        &["-L.", "-l:libcustom.so.1"],
    );
    root.install(&prog, "/opt/app/bin/prog2");
    let m = only_missing(root.check_agrees("/opt/app/bin/prog2", &[]));
    assert_eq!(m.what, "libcustom.so.1");
    let s = root
        .check_agrees(
            "/opt/app/bin/prog2",
            &["LD_LIBRARY_PATH=/nowhere:${ORIGIN}/../lib"],
        )
        .unwrap();
    assert_eq!(s.libraries[0].1, "/opt/app/bin/../lib/libcustom.so.1");
}

/// libA (in /opt/dep) needs libB (also there); only the program says where /opt/dep is.
#[test]
fn rpath_is_inherited_runpath_is_not() {
    if !host_ready() {
        return;
    }
    let b = TempDir::new("build");
    gcc(
        b.path(),
        "libB.so",
        "int b(void) { return 1; }\n",
        &["-shared", "-fPIC", "-Wl,-soname,libB.so"],
    );
    gcc(
        b.path(),
        "libA.so",
        "int b(void);\nint a(void) { return b(); }\n",
        &["-shared", "-fPIC", "-Wl,-soname,libA.so", "-L.", "-lB"],
    );
    let root = Root::with_libc();
    root.install(&b.path().join("libA.so"), "/opt/dep/libA.so");
    root.install(&b.path().join("libB.so"), "/opt/dep/libB.so");
    let main = "int a(void);\nint main(void) { return a() == 1 ? 0 : 1; }\n";
    let build = |dtags: &str| {
        gcc(
            b.path(),
            "prog",
            main,
            &[
                "-L.",
                "-lA",
                "-Wl,-rpath-link,.",
                &format!("-Wl,{dtags}"),
                "-Wl,-rpath,/opt/dep",
            ],
        )
    };
    root.install(&build("--disable-new-dtags"), "/usr/bin/rpath");
    root.install(&build("--enable-new-dtags"), "/usr/bin/runpath");

    let s = root.check_agrees("/usr/bin/rpath", &[]).unwrap();
    assert_eq!(
        s.libraries,
        libs(&[
            ("libA.so", "/opt/dep/libA.so"),
            ("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"),
            ("libB.so", "/opt/dep/libB.so"),
        ])
    );
    let m = only_missing(root.check_agrees("/usr/bin/runpath", &[]));
    assert_eq!(m.what, "libB.so");
    assert_eq!(m.needed_by, "/opt/dep/libA.so");
    assert_eq!(
        m.searched,
        system_dirs(),
        "RUNPATH is not searched for libA's needs"
    );
}

#[test]
fn rpath_then_ld_library_path_then_runpath() {
    if !host_ready() {
        return;
    }
    let b = TempDir::new("build");
    let lib = gcc(
        b.path(),
        "libcustom.so.1",
        CUSTOM_LIB,
        &["-shared", "-fPIC", "-Wl,-soname,libcustom.so.1"],
    );
    let root = Root::with_libc();
    root.install(&lib, "/opt/r/libcustom.so.1");
    root.install(&lib, "/opt/l/libcustom.so.1");
    for (dtags, name) in [
        ("--disable-new-dtags", "rpath"),
        ("--enable-new-dtags", "runpath"),
    ] {
        let prog = gcc(
            b.path(),
            name,
            USES_CUSTOM,
            &[
                "-L.",
                "-l:libcustom.so.1",
                &format!("-Wl,{dtags}"),
                "-Wl,-rpath,/opt/r",
            ],
        );
        root.install(&prog, &format!("/usr/bin/{name}"));
    }
    let env = ["LD_LIBRARY_PATH=/opt/l"];
    let s = root.check_agrees("/usr/bin/rpath", &env).unwrap();
    assert_eq!(
        s.libraries[0].1, "/opt/r/libcustom.so.1",
        "RPATH comes first"
    );
    let s = root.check_agrees("/usr/bin/runpath", &env).unwrap();
    assert_eq!(
        s.libraries[0].1, "/opt/l/libcustom.so.1",
        "LD_LIBRARY_PATH beats RUNPATH"
    );
    let s = root.check_agrees("/usr/bin/runpath", &[]).unwrap();
    assert_eq!(s.libraries[0].1, "/opt/r/libcustom.so.1");
    // ld.so keeps the last LD_LIBRARY_PATH.
    let s = root
        .check_agrees(
            "/usr/bin/runpath",
            &["LD_LIBRARY_PATH=/opt/r", "LD_LIBRARY_PATH=/opt/l"],
        )
        .unwrap();
    assert_eq!(s.libraries[0].1, "/opt/l/libcustom.so.1");
}

fn ldconfig(root: &Root, format: &str) -> bool {
    let o = Command::new("ldconfig")
        .arg("-r")
        .arg(root.dir.path())
        .args(["-c", format])
        .output();
    match o {
        Ok(o) if o.status.success() => true,
        _ => {
            eprintln!("ldconfig -r does not work here: cache tests skipped");
            false
        }
    }
}

#[test]
fn ld_so_cache_is_honoured() {
    if !host_ready() {
        return;
    }
    let b = TempDir::new("build");
    let lib = gcc(
        b.path(),
        "libcustom.so.1",
        CUSTOM_LIB,
        &["-shared", "-fPIC", "-Wl,-soname,libcustom.so.1"],
    );
    let prog = gcc(b.path(), "prog", USES_CUSTOM, &["-L.", "-l:libcustom.so.1"]);
    let root = Root::with_libc();
    root.install(&lib, "/opt/custom/lib/libcustom.so.1");
    root.install(&prog, "/usr/bin/prog");
    root.write(
        "/etc/ld.so.conf",
        b"include /etc/ld.so.conf.d/*.conf\n",
        0o644,
    );
    root.write("/etc/ld.so.conf.d/custom.conf", b"/opt/custom/lib\n", 0o644);
    let m = only_missing(root.check_agrees("/usr/bin/prog", &[]));
    assert_eq!(m.searched, system_dirs(), "no cache yet");
    if !ldconfig(&root, "new") {
        return;
    }
    let s = root.check_agrees("/usr/bin/prog", &[]).unwrap();
    assert_eq!(
        s.libraries[0],
        (
            "libcustom.so.1".into(),
            "/opt/custom/lib/libcustom.so.1".into()
        )
    );
    // The same with the old and the compat cache formats.
    for format in ["old", "compat"] {
        assert!(ldconfig(&root, format));
        let s2 = root.check_agrees("/usr/bin/prog", &[]).unwrap();
        assert_eq!(s2.libraries, s.libraries, "format {format}");
    }
    // A cache entry whose file is gone: ld.so falls back to the system directories.
    root.remove("/opt/custom/lib/libcustom.so.1");
    let m = only_missing(root.check_agrees("/usr/bin/prog", &[]));
    assert_eq!(
        m.searched.first().map(String::as_str),
        Some("/etc/ld.so.cache")
    );
    assert_eq!(&m.searched[1..], system_dirs().as_slice());
}

#[test]
fn ld_so_cache_formats_parse() {
    // The host's own cache, written by its ldconfig: libc6 x86-64 entries carry 0x303.
    if let Ok(data) = fs::read("/etc/ld.so.cache") {
        if cfg!(target_arch = "x86_64") && host_ready() {
            let entries = parse_ld_cache(&data, false).unwrap();
            let libc: Vec<&CacheEntry> = entries.iter().filter(|e| e.key == "libc.so.6").collect();
            assert!(!libc.is_empty());
            assert!(
                libc.iter().any(|e| e.flags == 0x303 && e.hwcap == 0),
                "{libc:?}"
            );
            let abi = Abi::of(&ElfInfo {
                class64: true,
                machine: elf::EM_X86_64.0,
                ..ElfInfo::default()
            });
            let p = cache_lookup(&entries, "libc.so.6", &abi).unwrap();
            assert!(p.ends_with("/x86_64-linux-gnu/libc.so.6"), "{p}");
        }
    }
    // A hand-made old-format cache: flags, key, value; strings after the table.
    let mut d = b"ld.so-1.7.0\0".to_vec();
    d.extend(2u32.to_le_bytes());
    let strings = b"libx.so.1\0/opt/libx.so.1\0libx.so.1\0/i386/libx.so.1\0";
    for (flags, k, v) in [(0x303u32, 0u32, 10u32), (3, 25, 35)] {
        d.extend(flags.to_le_bytes());
        d.extend(k.to_le_bytes());
        d.extend(v.to_le_bytes());
    }
    d.extend(strings);
    let entries = parse_ld_cache(&d, false).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].value, "/i386/libx.so.1");
    let i386 = Abi::of(&ElfInfo {
        machine: elf::EM_386.0,
        ..ElfInfo::default()
    });
    assert_eq!(
        cache_lookup(&entries, "libx.so.1", &i386),
        Some("/i386/libx.so.1")
    );
    // Truncations are refused or read safely, never out of bounds.
    for n in 0..d.len() {
        let _ = parse_ld_cache(&d[..n], false);
    }
    assert!(parse_ld_cache(b"glibc-ld.so.cache1.1", false).is_none());
}

#[test]
fn nodeflib_skips_the_system_directories() {
    if !host_ready() {
        return;
    }
    let b = TempDir::new("build");
    let prog = gcc(
        b.path(),
        "prog",
        USES_Z_AND_M,
        &["-Wl,--no-as-needed", "-lz", "-lm", "-Wl,-z,nodefaultlib"],
    );
    let root = Root::with_libc();
    root.copy_host("/lib/x86_64-linux-gnu/libz.so.1");
    root.copy_host("/lib/x86_64-linux-gnu/libm.so.6");
    root.install(&prog, "/usr/bin/prog");
    let ms = root.check_agrees("/usr/bin/prog", &[]).unwrap_err();
    let names: Vec<&str> = ms.iter().map(|m| m.what.as_str()).collect();
    assert_eq!(names, ["libz.so.1", "libm.so.6", "libc.so.6"]);
    assert!(ms.iter().all(|m| m.searched.is_empty()));
    // LD_LIBRARY_PATH still counts; the libraries themselves may use the defaults.
    let s = root
        .check_agrees(
            "/usr/bin/prog",
            &["LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu"],
        )
        .unwrap();
    assert_eq!(s.libraries[0].1, "/usr/lib/x86_64-linux-gnu/libz.so.1");
    // Cache entries in the system directories do not count either.
    root.write("/etc/ld.so.conf", b"", 0o644);
    if ldconfig(&root, "new") {
        let ms = root.check_agrees("/usr/bin/prog", &[]).unwrap_err();
        assert_eq!(ms.len(), 3);
        assert!(ms.iter().all(|m| m.searched == ["/etc/ld.so.cache"]));
    }
}

/// Patches a copy of a real library to another machine or class.
fn patched(bytes: &[u8], at: usize, value: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at..at + value.len()].copy_from_slice(value);
    b
}

#[test]
fn wrong_architecture_candidates_are_skipped() {
    if !host_ready() {
        return;
    }
    let b = TempDir::new("build");
    let prog = gcc(
        b.path(),
        "prog",
        USES_Z_AND_M,
        &["-Wl,--no-as-needed", "-lz", "-lm"],
    );
    let root = Root::with_libc();
    root.copy_host("/lib/x86_64-linux-gnu/libz.so.1");
    root.copy_host("/lib/x86_64-linux-gnu/libm.so.6");
    root.install(&prog, "/usr/bin/prog");
    let z = fs::read("/lib/x86_64-linux-gnu/libz.so.1").unwrap();
    let aarch64 = patched(&z, 18, &elf::EM_AARCH64.0.to_le_bytes());
    let class32 = patched(&z, 4, &[elf::ELFCLASS32.0]);
    root.write("/opt/arm/libz.so.1", &aarch64, 0o644);
    root.write("/opt/c32/libz.so.1", &class32, 0o644);
    for dir in ["/opt/arm", "/opt/c32"] {
        let env = format!("LD_LIBRARY_PATH={dir}");
        let s = root.check_agrees("/usr/bin/prog", &[env.as_str()]).unwrap();
        assert_eq!(s.libraries[0].1, "/lib/x86_64-linux-gnu/libz.so.1");
    }
    root.remove(&host_real("/lib/x86_64-linux-gnu/libz.so.1"));
    let m =
        only_missing(root.check_agrees("/usr/bin/prog", &["LD_LIBRARY_PATH=/opt/arm:/opt/c32"]));
    assert_eq!(m.what, "libz.so.1");
    assert_eq!(m.reason, MissingReason::WrongArchitecture);
    assert_eq!(m.searched[..2], ["/opt/arm", "/opt/c32"]);
}

#[test]
fn unusable_candidate_stops_ld_so() {
    if !host_ready() {
        return;
    }
    let b = TempDir::new("build");
    let lib = gcc(
        b.path(),
        "libcustom.so.1",
        CUSTOM_LIB,
        &["-shared", "-fPIC", "-Wl,-soname,libcustom.so.1"],
    );
    let prog = gcc(b.path(), "prog", USES_CUSTOM, &["-L.", "-l:libcustom.so.1"]);
    let pie = gcc(b.path(), "pie", TRIVIAL, &["-pie", "-fPIE"]);
    let exec = gcc(b.path(), "exec", TRIVIAL, &["-no-pie"]);
    let root = Root::with_libc();
    root.install(&lib, "/usr/lib/x86_64-linux-gnu/libcustom.so.1");
    root.install(&prog, "/usr/bin/prog");
    root.check_agrees("/usr/bin/prog", &[]).unwrap();
    let env = ["LD_LIBRARY_PATH=/opt/bad"];
    let full = fs::read(&lib).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("file too short", b"garbage".to_vec()),
        ("invalid ELF header", vec![b'x'; 100]),
        ("cannot read file data", full[..200].to_vec()),
        ("file is truncated", full[..full.len() / 2].to_vec()),
        ("position-independent executable", fs::read(&pie).unwrap()),
        (
            "cannot dynamically load executable",
            fs::read(&exec).unwrap(),
        ),
    ];
    for (why, bytes) in cases {
        root.write("/opt/bad/libcustom.so.1", &bytes, 0o755);
        let m = only_missing(root.check_agrees("/usr/bin/prog", &env));
        assert_eq!(m.what, "/opt/bad/libcustom.so.1");
        assert_eq!(m.needed_by, "/usr/bin/prog");
        assert!(
            matches!(&m.reason, MissingReason::Invalid(w) if w.contains(why)),
            "{why}: {m:?}"
        );
    }
    root.remove("/opt/bad/libcustom.so.1");
    fs::create_dir(root.host("/opt/bad/libcustom.so.1")).unwrap();
    let m = only_missing(root.check_agrees("/usr/bin/prog", &env));
    assert!(matches!(&m.reason, MissingReason::Invalid(w) if w.contains("Is a directory")));
}

#[test]
fn scripts_need_their_interpreter() {
    if !host_ready() {
        return;
    }
    let root = Root::with_libc();
    root.write("/usr/bin/hello", b"#!/bin/sh\nexit 0\n", 0o755);
    root.write("/usr/bin/crlf", b"#!/bin/sh\r\nexit 0\r\n", 0o755);
    let m = only_missing(root.check_agrees("/usr/bin/hello", &[]));
    assert_eq!(
        m,
        Missing {
            what: "/bin/sh".into(),
            needed_by: "/usr/bin/hello".into(),
            searched: vec![],
            reason: MissingReason::ScriptInterpreter,
        }
    );
    root.copy_host("/usr/bin/dash");
    root.link("/usr/bin/sh", "dash");
    let s = root.check_agrees("/usr/bin/hello", &[]).unwrap();
    let ProgramKind::Script {
        interpreter,
        argument,
        runs,
        command,
    } = &s.kind
    else {
        panic!("{s:?}");
    };
    assert_eq!(
        (interpreter.as_str(), argument, command),
        ("/bin/sh", &None, &None)
    );
    assert_eq!(runs.program, "/usr/bin/dash");
    assert_eq!(
        runs.libraries,
        libs(&[("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6")])
    );
    // A CRLF script asks for "/bin/sh\r".
    let m = only_missing(root.check_agrees("/usr/bin/crlf", &[]));
    assert_eq!(m.what, "/bin/sh\r");
    // The interpreter's own libraries count.
    root.remove(&host_real("/lib/x86_64-linux-gnu/libc.so.6"));
    let m = only_missing(root.check_agrees("/usr/bin/hello", &[]));
    assert_eq!(
        (m.what.as_str(), m.needed_by.as_str()),
        ("libc.so.6", "/usr/bin/dash")
    );
}

#[test]
fn env_shebang_searches_path() {
    if !host_ready() {
        return;
    }
    let b = TempDir::new("build");
    let ok = gcc(b.path(), "ok", TRIVIAL, &[]);
    let root = Root::with_libc();
    root.copy_host("/usr/bin/env");
    root.install(&ok, "/usr/local/bin/python3");
    root.write("/usr/bin/tool", b"#!/usr/bin/env python3\n", 0o755);
    root.write("/usr/bin/tool-u", b"#!/usr/bin/env python3 -u\n", 0o755);
    root.write("/usr/bin/tool-s", b"#!/usr/bin/env -S python3 -u\n", 0o755);
    let s = root.check_agrees("/usr/bin/tool", &[]).unwrap();
    let ProgramKind::Script { runs, command, .. } = &s.kind else {
        panic!("{s:?}");
    };
    assert_eq!(runs.program, "/usr/bin/env");
    assert_eq!(command.as_ref().unwrap().program, "/usr/local/bin/python3");
    assert!(s.describe().contains("runs /usr/local/bin/python3"));
    root.check_agrees("/usr/bin/tool-s", &[]).unwrap();
    // Linux passes "python3 -u" as one argument: env looks for a command of that name.
    let m = only_missing(root.check_agrees("/usr/bin/tool-u", &[]));
    assert_eq!(m.what, "python3 -u");
    // Not in this PATH.
    let m = only_missing(root.check_agrees("/usr/bin/tool", &["PATH=/usr/bin:/bin"]));
    assert_eq!(
        m,
        Missing {
            what: "python3".into(),
            needed_by: "/usr/bin/tool".into(),
            searched: vec!["/usr/bin".into(), "/bin".into()],
            reason: MissingReason::ScriptInterpreter,
        }
    );
    // A non-executable python3 earlier in PATH is skipped, as execvp does.
    root.write("/usr/bin/python3", b"not me", 0o644);
    let s = root
        .check_agrees("/usr/bin/tool", &["PATH=/usr/bin:/usr/local/bin"])
        .unwrap();
    let ProgramKind::Script { command, .. } = &s.kind else {
        panic!("{s:?}");
    };
    assert_eq!(command.as_ref().unwrap().program, "/usr/local/bin/python3");
}

#[test]
fn shebang_chain_is_bounded_like_linux() {
    if !host_ready() || !Path::new("/usr/lib/x86_64-linux-gnu/libc.a").exists() {
        return;
    }
    let b = TempDir::new("build");
    let ok = gcc(b.path(), "ok", TRIVIAL, &["-static"]);
    let root = Root::new();
    root.install(&ok, "/usr/bin/ok");
    let mut prev = "/usr/bin/ok".to_string();
    for i in 1..=MAX_SCRIPTS + 1 {
        let path = format!("/usr/bin/s{i}");
        root.write(&path, format!("#!{prev}\n").as_bytes(), 0o755);
        let result = root.check_agrees(&path, &[]);
        if i <= MAX_SCRIPTS {
            result.unwrap();
        } else {
            let m = only_missing(result);
            assert_eq!(m.reason, MissingReason::Loop);
        }
        prev = path;
    }
    // A script that names itself.
    root.write("/usr/bin/me", b"#!/usr/bin/me\n", 0o755);
    assert_eq!(
        only_missing(root.check_agrees("/usr/bin/me", &[])).reason,
        MissingReason::Loop
    );
}

#[test]
fn program_must_be_an_executable_file() {
    if !host_ready() {
        return;
    }
    let root = Root::with_libc();
    root.write("/usr/bin/data", b"#!/bin/sh\n", 0o644);
    root.write("/usr/bin/text", b"echo hi\n", 0o755);
    fs::create_dir_all(root.host("/usr/bin/dir")).unwrap();
    root.link("/usr/bin/loop", "loop");
    let reason = |p: &str| only_missing(root.check_agrees(p, &[])).reason;
    assert_eq!(reason("/usr/bin/nothing"), MissingReason::NotFound);
    assert_eq!(reason("/usr/bin/data"), MissingReason::NotExecutable);
    assert_eq!(reason("/usr/bin/dir"), MissingReason::NotExecutable);
    assert_eq!(reason("/usr/bin/loop"), MissingReason::Loop);
    assert!(
        matches!(reason("/usr/bin/text"), MissingReason::Invalid(w) if w.contains("exec format"))
    );
    let m = only_missing(root.check("nothing", &[]));
    assert_eq!(m.searched, path_dirs(DEFAULT_PATH));
    assert_eq!(
        m.to_string(),
        format!(
            "`nothing` does not exist; searched {}",
            path_dirs(DEFAULT_PATH).join(", ")
        )
    );
}

#[test]
fn needed_path_with_a_slash_is_opened_directly() {
    if !host_ready() {
        return;
    }
    let b = TempDir::new("build");
    // No soname: the link records the path given to the linker, relative to the cwd.
    fs::create_dir_all(b.path().join("opt/x")).unwrap();
    gcc(
        b.path(),
        "opt/x/libnoso.so",
        CUSTOM_LIB,
        &["-shared", "-fPIC"],
    );
    let prog = gcc(b.path(), "prog", USES_CUSTOM, &["opt/x/libnoso.so"]);
    let root = Root::with_libc();
    root.install(&prog, "/usr/bin/prog");
    let m = only_missing(root.check_agrees("/usr/bin/prog", &[]));
    assert_eq!(
        (m.what.as_str(), m.searched.as_slice()),
        ("opt/x/libnoso.so", &["/opt/x/libnoso.so".to_string()][..])
    );
    root.install(&b.path().join("opt/x/libnoso.so"), "/opt/x/libnoso.so");
    let s = root.check_agrees("/usr/bin/prog", &[]).unwrap();
    assert_eq!(
        s.libraries[0],
        ("opt/x/libnoso.so".into(), "opt/x/libnoso.so".into())
    );
}

#[test]
fn symbol_versions_are_checked() {
    if !host_ready() {
        return;
    }
    let b = TempDir::new("build");
    fs::write(
        b.path().join("v1.map"),
        "VERS_1 { global: f1; local: *; };\n",
    )
    .unwrap();
    fs::write(
        b.path().join("v2.map"),
        "VERS_1 { global: f1; local: *; };\nVERS_2 { global: f2; } VERS_1;\n",
    )
    .unwrap();
    let src = "int f1(void) { return 1; }\nint f2(void) { return 2; }\n";
    let lib = |name: &str, map: Option<&str>| {
        let mut args = vec!["-shared", "-fPIC", "-Wl,-soname,libver.so.1"];
        let script = map.map(|m| format!("-Wl,--version-script={m}"));
        args.extend(script.as_deref());
        gcc(b.path(), name, src, &args)
    };
    let v2 = lib("libver-v2.so", Some("v2.map"));
    let v1 = lib("libver-v1.so", Some("v1.map"));
    let plain = lib("libver-plain.so", None);
    let prog = gcc(
        b.path(),
        "prog",
        "int f2(void);\nint main(void) { return f2() == 2 ? 0 : 1; }\n",
        &["-L.", "-l:libver-v2.so"],
    );
    let root = Root::with_libc();
    root.install(&prog, "/usr/bin/prog");
    let dest = "/usr/lib/x86_64-linux-gnu/libver.so.1";
    root.install(&v2, dest);
    root.check_agrees("/usr/bin/prog", &[]).unwrap();
    // The library of the image is older: VERS_2 is not there.
    root.install(&v1, dest);
    let m = only_missing(root.check_agrees("/usr/bin/prog", &[]));
    assert_eq!(
        m,
        Missing {
            what: "VERS_2".into(),
            needed_by: "/usr/bin/prog".into(),
            searched: vec!["/lib/x86_64-linux-gnu/libver.so.1".into()],
            reason: MissingReason::Version("libver.so.1".into()),
        }
    );
    assert_eq!(
        m.to_string(),
        "symbol version `VERS_2` of `libver.so.1` (needed by `/usr/bin/prog`) is not \
         defined by /lib/x86_64-linux-gnu/libver.so.1"
    );
    // A library without any version information: ld.so warns, then fails binding f2.
    root.install(&plain, dest);
    let m = only_missing(root.check_agrees("/usr/bin/prog", &[]));
    assert_eq!(m.reason, MissingReason::Version("libver.so.1".into()));
    // glibc's own versions are checked too (every real run above passed them).
    let exe = fs::read(&prog).unwrap();
    let info = parse_elf(&exe, true).unwrap();
    let libc = info.verneed.iter().find(|(f, _)| f == "libc.so.6").unwrap();
    assert!(libc.1.iter().any(|v| v.name.starts_with("GLIBC_2.")));
}

// ---- hostile input ----

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    match rng.below(4) {
        0 => b.truncate(rng.below(base.len() + 1)),
        1 => {
            // Flip bytes where the headers are.
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(b.len().min(4096));
                b[at] = rng.next() as u8;
            }
        }
        2 => {
            // Plant big numbers in header fields.
            let at = rng.below(b.len().min(256).saturating_sub(8));
            b[at..at + 8].copy_from_slice(&rng.next().to_le_bytes());
        }
        _ => {
            for _ in 0..1 + rng.below(16) {
                let at = rng.below(b.len());
                b[at] = rng.next() as u8;
            }
        }
    }
    b
}

#[test]
fn hostile_inputs_never_panic() {
    // A small real dynamic program of the host (this test binary where there is none).
    let exe = fs::read("/usr/bin/true")
        .or_else(|_| fs::read(std::env::current_exe().unwrap()))
        .unwrap();
    let head = exe.as_slice();
    let info = parse_elf(head, true).expect("the program parses");
    let interp = info.interp.clone().unwrap_or_else(|| LOADER.to_string());
    let lib = fs::read("/lib/x86_64-linux-gnu/libz.so.1").unwrap_or_else(|_| head.to_vec());
    let cache = fs::read("/etc/ld.so.cache").unwrap_or_else(|_| b"glibc-ld.so.cache1.1".to_vec());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    let mut v = MemView::default();
    v.file("/usr/bin/prog", head, 0o755)
        .file(&interp, head, 0o755);
    let lib_paths: Vec<String> = info
        .needed
        .iter()
        .map(|n| format!("/usr/lib/{n}"))
        .collect();
    for p in &lib_paths {
        v.file(p, &lib, 0o644);
    }
    v.file("/etc/ld.so.cache", &cache, 0o644);
    let env = ["LD_LIBRARY_PATH=/usr/lib:$ORIGIN/../$LIB:;/loop"];
    v.link("/loop", "/loop");
    let _ = check_view(&v, &env, "/usr/bin/prog");

    for round in 0..1500 {
        match round % 4 {
            0 => {
                let b = mutate(&mut rng, head);
                v.file("/usr/bin/prog", &b, 0o755);
            }
            1 => {
                let b = mutate(&mut rng, &lib);
                let p = &lib_paths[rng.below(lib_paths.len())];
                v.file(p, &b, 0o644);
            }
            2 => {
                let b = mutate(&mut rng, &cache);
                v.file("/etc/ld.so.cache", &b, 0o644);
            }
            _ => {
                let b = mutate(&mut rng, head);
                v.file(&interp, &b, 0o755);
            }
        }
        let _ = check_view(&v, &env, "/usr/bin/prog");
    }

    // Truncated programs at every length of the first few KiB, and random bytes.
    for n in (0..head.len().min(6000)).step_by(7) {
        v.file("/usr/bin/prog", &head[..n], 0o755);
        assert!(
            check_view(&v, &env, "/usr/bin/prog").is_err(),
            "truncated at {n}"
        );
    }
    for len in [0usize, 1, 2, 3, 4, 16, 64, 300, 5000] {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        v.file("/usr/bin/prog", &bytes, 0o755);
        assert!(check_view(&v, &env, "/usr/bin/prog").is_err());
        let mut script = b"#!".to_vec();
        script.extend(&bytes);
        v.file("/usr/bin/prog", &script, 0o755);
        let _ = check_view(&v, &env, "/usr/bin/prog");
        let _ = parse_ld_cache(&bytes, false);
        let _ = parse_ld_cache(&[b"ld.so-1.7.0\0".as_slice(), &bytes].concat(), true);
    }

    // Symlink loops in every role.
    let mut v = MemView::default();
    v.link("/usr/bin/a", "b").link("/usr/bin/b", "a");
    assert_eq!(
        only_missing(check_view(&v, &[], "/usr/bin/a")).reason,
        MissingReason::Loop
    );
    v.file("/usr/bin/s", b"#!/usr/bin/a\n", 0o755);
    assert_eq!(
        only_missing(check_view(&v, &[], "/usr/bin/s")).reason,
        MissingReason::Loop
    );
    v.file("/usr/bin/prog", head, 0o755)
        .link(&interp, "/usr/bin/a");
    let ms = check_view(&v, &[], "/usr/bin/prog").unwrap_err();
    assert_eq!(ms[0].reason, MissingReason::Loop);
    // A link "outside" the root lands inside it.
    v.link("/usr/bin/out", "../../../../../../bin/true");
    assert_eq!(
        only_missing(check_view(&v, &[], "/usr/bin/out")).reason,
        MissingReason::NotFound
    );
}
