//! Making rootfs tars on the host: `debootstrap` into a temp dir, or unpacking a project
//! tarball; then the build user, cleanup of caches/logs/machine-id, and a deterministic tar.
//! The `static` base is assembled from another base's tar. The cache dir and file lock live
//! here too.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use super::def::{BaseDef, BaseKind, UserDef};
use super::pack::{self, Data, Entry, Written};
use crate::report::Reporter;

/// A temp directory for a rootfs. On drop, anything still mounted below it (debootstrap
/// mounts /proc and /sys and may be killed before it unmounts) is unmounted first; if that
/// fails the directory is left alone rather than deleting through a mount.
struct TempRoot {
    path: PathBuf,
}

impl TempRoot {
    fn mounts_below(&self) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return Vec::new();
        };
        let prefix = format!("{}/", self.path.display());
        let mut found: Vec<String> = text
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix) || *m == self.path.to_string_lossy())
            .map(str::to_string)
            .collect();
        // deepest first
        found.sort_by_key(|m| std::cmp::Reverse(m.len()));
        found
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        for m in self.mounts_below() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        if self.mounts_below().is_empty() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The mirror the host's apt sources name for `suite` (deb822 `.sources` or one-line
/// `sources.list`), as `crate::debian::source` reads them.
pub(crate) fn host_mirror(suite: &str) -> Option<String> {
    crate::debian::source::host_sources()
        .get(suite)
        .map(|s| s.uri.clone())
}

/// Paths left out of every rootfs tar: caches, logs, package lists, identity files that the
/// engine provides (hostname, resolv.conf), backups, and the contents of pseudo filesystems.
pub(crate) fn excluded(rel: &str, is_dir: bool) -> bool {
    const UNDER: &[&str] = &[
        "dev/",
        "proc/",
        "sys/",
        "run/",
        "tmp/",
        "var/tmp/",
        "var/lib/apt/lists/",
        "var/cache/apt/archives/",
        "var/cache/man/",
    ];
    const EXACT: &[&str] = &[
        "etc/machine-id",
        "var/lib/dbus/machine-id",
        "etc/hostname",
        "etc/resolv.conf",
        "var/cache/ldconfig/aux-cache",
        "root/.bash_history",
        "etc/passwd-",
        "etc/group-",
        "etc/shadow-",
        "etc/gshadow-",
        "etc/subuid-",
        "etc/subgid-",
    ];
    if UNDER.iter().any(|p| rel.starts_with(p)) || EXACT.contains(&rel) {
        return true;
    }
    if !is_dir {
        if rel.starts_with("var/log/") {
            return true;
        }
        if rel.starts_with("var/cache/apt/") && rel.ends_with(".bin") {
            return true;
        }
        if (rel.starts_with("var/lib/dpkg/") || rel.starts_with("var/cache/debconf/"))
            && rel.ends_with("-old")
        {
            return true;
        }
    }
    false
}

/// Runs a command, feeding its output lines to `line`; on failure the error carries the
/// last lines of output.
fn run_logged(cmd: &mut Command, what: &str, line: &dyn Fn(&str)) -> Result<()> {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start {what}"))?;
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut tail: std::collections::VecDeque<String> = Default::default();
    if let Some(out) = child.stdout.take() {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            line(&l);
            tail.push_back(l);
            if tail.len() > 15 {
                tail.pop_front();
            }
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("{what} did not finish"))?;
    let err = err_thread.join().unwrap_or_default();
    if !status.success() {
        for l in err.lines() {
            tail.push_back(l.to_string());
        }
        while tail.len() > 20 {
            tail.pop_front();
        }
        let tail: Vec<String> = tail.into_iter().collect();
        anyhow::bail!(
            "{what} failed ({status}); last output:\n  {}",
            tail.join("\n  ")
        );
    }
    Ok(())
}

/// The locked packages of a base with their verified .deb files.
pub(crate) type LockedDebs = [(crate::debian::lock::LockedPackage, PathBuf)];

/// Writes a local, unsigned apt repository of exactly the locked .deb files under `root`
/// (`pool/`, `dists/<suite>/main/binary-<arch>/Packages`, `Release`), for debootstrap to
/// install from: the files were verified against the lock, so no signature is needed.
fn local_repository(root: &Path, suite: &str, debs: &LockedDebs) -> Result<()> {
    let arch = crate::debian::source::host_architecture();
    let pool = root.join("pool");
    let bin = root.join(format!("dists/{suite}/main/binary-{arch}"));
    std::fs::create_dir_all(&pool)
        .with_context(|| format!("could not create `{}`", pool.display()))?;
    std::fs::create_dir_all(&bin)
        .with_context(|| format!("could not create `{}`", bin.display()))?;
    let mut packages = String::new();
    for (locked, deb) in debs {
        let name = format!("{}.deb", locked.sha256);
        let dest = pool.join(&name);
        if std::fs::hard_link(deb, &dest).is_err() {
            std::fs::copy(deb, &dest)
                .with_context(|| format!("could not copy `{}`", deb.display()))?;
        }
        let control = crate::deb::read_control(deb)
            .with_context(|| format!("could not read package `{}`", locked.id()))?;
        packages.push_str(control.control_text.trim_end());
        packages.push_str(&format!(
            "\nFilename: pool/{name}\nSize: {}\nSHA256: {}\n\n",
            locked.size, locked.sha256
        ));
    }
    let index = bin.join("Packages");
    std::fs::write(&index, &packages)
        .with_context(|| format!("could not write `{}`", index.display()))?;
    let release = format!(
        "Suite: {suite}\nCodename: {suite}\nComponents: main\nArchitectures: {arch}\nSHA256:\n {} {} main/binary-{arch}/Packages\n",
        crate::digest::sha256_hex(packages.as_bytes()),
        packages.len()
    );
    let path = root.join(format!("dists/{suite}/Release"));
    std::fs::write(&path, release).with_context(|| format!("could not write `{}`", path.display()))
}

fn debootstrap(
    def: &BaseDef,
    dir: &Path,
    locked: Option<&LockedDebs>,
    reporter: &Reporter,
    progress: &crate::report::Progress,
) -> Result<()> {
    let BaseKind::Debootstrap {
        suite,
        variant,
        mirror,
        components,
        packages,
    } = &def.kind
    else {
        anyhow::bail!("internal: not a debootstrap base");
    };
    let tool = find_tool("debootstrap").ok_or_else(|| {
        crate::error::environment(format!(
            "base `{}` needs debootstrap, which is not installed: install it with `apt-get install debootstrap`",
            def.name
        ))
    })?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(crate::error::environment(format!(
            "base `{}`: debootstrap must run as root to create device nodes and set file owners; run `sudo builder base build {}`",
            def.name, def.name
        )));
    }
    let mirror = match mirror.clone().or_else(|| host_mirror(suite)) {
        Some(m) => m,
        None => {
            return Err(crate::error::usage(format!(
                "base `{}`: the host's apt sources name no mirror for suite `{suite}`; set \
                 `mirror = \"http://...\"` in base-images/{}.toml",
                def.name, def.name
            )))
        }
    };
    let mut cmd = Command::new(tool);
    if variant != "-" {
        cmd.arg(format!("--variant={variant}"));
    }
    // With a lock, debootstrap installs exactly the locked files from a local repository
    // beside the rootfs (named in --include, so its own choice cannot differ).
    // Named so that `sweep_leftovers` removes it when this process dies (`tmp-...-<pid>`).
    let repo = dir.with_file_name(
        dir.file_name()
            .map(|n| n.to_string_lossy().replacen("tmp-", "tmp-repo-", 1))
            .unwrap_or_else(|| "tmp-repo".into()),
    );
    let source = match locked {
        Some(debs) => {
            let _ = std::fs::remove_dir_all(&repo);
            local_repository(&repo, suite, debs)?;
            let names: Vec<&str> = debs.iter().map(|(p, _)| p.name.as_str()).collect();
            cmd.arg("--no-check-gpg")
                .arg(format!("--include={}", names.join(",")))
                .arg("--components=main");
            format!("file://{}", repo.display())
        }
        None => {
            if !packages.is_empty() {
                cmd.arg(format!("--include={}", packages.join(",")));
            }
            // Downloaded .debs are kept between bases (bookworm, go and haproxy share most
            // of them), which saves most of debootstrap's time after the first base.
            let debs = crate::project::cache_dir()
                .join("debootstrap")
                .join(format!("{suite}-{}", std::env::consts::ARCH));
            if std::fs::create_dir_all(&debs).is_ok() {
                if let Ok(abs) = debs.canonicalize() {
                    cmd.arg(format!("--cache-dir={}", abs.display()));
                }
            }
            cmd.arg(format!("--components={}", components.join(",")));
            mirror.clone()
        }
    };
    cmd.arg(suite)
        .arg(dir)
        .arg(&source)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("SOURCE_DATE_EPOCH", pack::EPOCH.to_string());
    reporter.verbose(format!(
        "debootstrap --variant={variant} {suite} {} {mirror}",
        dir.display()
    ));
    let ran = run_logged(
        &mut cmd,
        &format!(
            "debootstrap for base `{}` (suite `{suite}`, mirror `{source}`)",
            def.name
        ),
        &|l| progress.message(l),
    );
    let _ = std::fs::remove_dir_all(&repo);
    ran?;
    if locked.is_some() {
        // apt in the image points at the real mirror, not at the local repository.
        let list = dir.join("etc/apt/sources.list");
        std::fs::write(
            &list,
            format!("deb {mirror} {suite} {}\n", components.join(" ")),
        )
        .with_context(|| format!("could not write `{}`", list.display()))?;
    }
    Ok(())
}

fn append(path: &Path, line: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("could not open `{}`", path.display()))?;
    writeln!(f, "{line}").with_context(|| format!("could not write `{}`", path.display()))
}

/// Adds the build user by editing passwd/group/shadow directly (deterministic: no dates
/// from `useradd`) and creates its home directory.
fn add_user(root: &Path, u: &UserDef) -> Result<()> {
    let passwd = root.join("etc/passwd");
    let existing = std::fs::read_to_string(&passwd)
        .with_context(|| format!("could not read `{}`", passwd.display()))?;
    if existing
        .lines()
        .any(|l| l.split(':').next() == Some(u.name.as_str()))
    {
        return Ok(());
    }
    if existing
        .lines()
        .any(|l| l.split(':').nth(2) == Some(u.uid.to_string().as_str()))
    {
        anyhow::bail!(
            "uid {} is already taken in the rootfs; pick another uid for user `{}`",
            u.uid,
            u.name
        );
    }
    let shell = if root.join("bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    append(
        &passwd,
        &format!("{}:x:{}:{}::{}:{shell}", u.name, u.uid, u.gid, u.home),
    )?;
    let group = root.join("etc/group");
    let groups = std::fs::read_to_string(&group).unwrap_or_default();
    if !groups
        .lines()
        .any(|l| l.split(':').nth(2) == Some(u.gid.to_string().as_str()))
    {
        append(&group, &format!("{}:x:{}:", u.name, u.gid))?;
        if root.join("etc/gshadow").exists() {
            append(&root.join("etc/gshadow"), &format!("{}:!::", u.name))?;
        }
    }
    if root.join("etc/shadow").exists() {
        append(
            &root.join("etc/shadow"),
            &format!("{}:!:19000:0:99999:7:::", u.name),
        )?;
    }
    let home = root.join(u.home.trim_start_matches('/'));
    std::fs::create_dir_all(&home)
        .with_context(|| format!("could not create `{}`", home.display()))?;
    std::os::unix::fs::chown(&home, Some(u.uid), Some(u.gid))
        .with_context(|| format!("could not chown `{}`", home.display()))?;
    Ok(())
}

fn unpack_tarball(src: &Path, dir: &Path) -> Result<()> {
    let mut file =
        std::fs::File::open(src).with_context(|| format!("could not open `{}`", src.display()))?;
    let mut magic = [0u8; 2];
    let n = file
        .read(&mut magic)
        .with_context(|| format!("could not read `{}`", src.display()))?;
    let file =
        std::fs::File::open(src).with_context(|| format!("could not open `{}`", src.display()))?;
    let reader: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let mut a = tar::Archive::new(reader);
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(true);
    a.set_unpack_xattrs(false);
    a.set_overwrite(true);
    a.unpack(dir)
        .with_context(|| format!("could not unpack the rootfs tarball `{}`", src.display()))
}

/// Removals of temp rootfs trees still running in the background.
static PENDING: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Waits for the background removal of temp rootfs trees (started by [`make_tree_base`]).
pub(crate) fn wait_for_cleanup() {
    let handles = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()));
    for h in handles {
        let _ = h.join();
    }
}

use crate::fslock::pid_alive;

/// Removes, from the bases cache directory `dir`, what makers that died (Ctrl-C, kill) left:
/// temp rootfs trees `tmp-<stem>-<pid>` (also this process's own, whose background removal
/// may not have finished) and half-written files ([`crate::durable`] temps) whose pid is
/// gone.
pub(super) fn sweep_leftovers(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            let pid = name
                .strip_prefix("tmp-")
                .and_then(|rest| rest.rsplit('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(p) = pid {
                if p == std::process::id() || !pid_alive(p) {
                    drop(TempRoot { path: e.path() });
                }
            }
        }
    }
    crate::durable::sweep_dead_temps(dir);
}

/// Makes the rootfs tar of a `debootstrap` or `tarball` base at `out`.
pub(crate) fn make_tree_base(
    def: &BaseDef,
    project: &Path,
    out: &Path,
    locked: Option<&LockedDebs>,
    reporter: &Reporter,
) -> Result<Written> {
    let parent = out.parent().context("cache path without a parent")?;
    let tmp = TempRoot {
        path: parent.join(format!(
            "tmp-{}-{}",
            out.file_stem().unwrap_or_default().to_string_lossy(),
            std::process::id()
        )),
    };
    sweep_leftovers(parent);
    std::fs::create_dir_all(&tmp.path)
        .with_context(|| format!("could not create `{}`", tmp.path.display()))?;
    let progress = reporter.progress(format!("base {}", def.name), None);
    match &def.kind {
        BaseKind::Debootstrap { .. } => debootstrap(def, &tmp.path, locked, reporter, &progress)?,
        BaseKind::Tarball { path } => unpack_tarball(&project.join(path), &tmp.path)?,
        _ => anyhow::bail!("internal: base `{}` has no rootfs tree", def.name),
    }
    if let Some(u) = &def.user {
        add_user(&tmp.path, u)
            .with_context(|| format!("base `{}`: could not add user `{}`", def.name, u.name))?;
    }
    progress.message("writing rootfs tar");
    let written = pack::pack_dir(&tmp.path, out, &excluded)?;
    progress.finish(format!("rootfs {} MB", written.size / 1_000_000));
    // Deleting a big tree takes a while on a busy disk; nobody needs to wait for it. If the
    // process exits first, the next maker sweeps the directory (its pid is gone by then).
    let handle = std::thread::spawn(move || drop(tmp));
    PENDING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(handle);
    Ok(written)
}

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n";
const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n\
networks: files\nprotocols: files\nservices: files\nethers: files\nrpc: files\n";

/// The files a `static` base takes from its source base.
pub(crate) fn static_selects(path: &str) -> bool {
    path == "etc/ssl/certs/ca-certificates.crt"
        || path == "usr/share/zoneinfo"
        || path.starts_with("usr/share/zoneinfo/")
}

/// Assembles the `static` rootfs from the tar of its source base: CA bundle, zoneinfo,
/// generated passwd/group/nsswitch.conf, /tmp and /home/nonroot. Nothing else.
pub(crate) fn make_static(name: &str, from: &str, from_tar: &Path, out: &Path) -> Result<Written> {
    let mut entries = pack::read_entries(from_tar, &static_selects)?;
    if !entries.contains_key("etc/ssl/certs/ca-certificates.crt") {
        return Err(crate::error::usage(format!(
            "base `{name}` takes /etc/ssl/certs/ca-certificates.crt from base `{from}`, which has none: add `ca-certificates` to the packages of base-images/{from}.toml"
        )));
    }
    if !entries.keys().any(|k| k.starts_with("usr/share/zoneinfo/")) {
        return Err(crate::error::usage(format!(
            "base `{name}` takes /usr/share/zoneinfo from base `{from}`, which has none: add `tzdata` to the packages of base-images/{from}.toml"
        )));
    }
    let dir = |mode| Entry {
        mode,
        uid: 0,
        gid: 0,
        data: Data::Dir,
    };
    let file = |text: &str| Entry {
        mode: 0o644,
        uid: 0,
        gid: 0,
        data: Data::File(text.as_bytes().to_vec()),
    };
    for d in [
        "etc",
        "etc/ssl",
        "etc/ssl/certs",
        "usr",
        "usr/share",
        "usr/share/zoneinfo",
        "home",
    ] {
        entries.entry(d.to_string()).or_insert_with(|| dir(0o755));
    }
    entries.insert("tmp".into(), dir(0o1777));
    entries.insert(
        "home/nonroot".into(),
        Entry {
            mode: 0o755,
            uid: 65532,
            gid: 65532,
            data: Data::Dir,
        },
    );
    entries.insert("etc/passwd".into(), file(PASSWD));
    entries.insert("etc/group".into(), file(GROUP));
    entries.insert("etc/nsswitch.conf".into(), file(NSSWITCH));
    // normalise ownership of what we copied: a runtime base is root-owned
    for (p, e) in entries.iter_mut() {
        if p != "home/nonroot" {
            e.uid = 0;
            e.gid = 0;
        }
    }
    let _: &BTreeMap<String, Entry> = &entries;
    pack::write_entries(out, &entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_removes_temp_files_of_dead_makers_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // a pid above the kernel's limit (2^22) never runs
        let dead = 4_194_305u32;
        let me = std::process::id();
        let names = [
            format!(".go-0123456789abcdef.tar.tmp-{dead}-0"),
            format!(".go-0123456789abcdef.json.tmp-{dead}-1"),
            format!(".go-0123456789abcdef.tar.tmp-{me}-2"),
            format!(".go-0123456789abcdef.tar.tmp-x{dead}-0"),
            format!("notes.txt.tmp-{dead}-0"),
            "go-0123456789abcdef.tar".to_string(),
        ];
        for n in &names {
            std::fs::write(d.join(n), "x").unwrap();
        }
        std::fs::create_dir(d.join(format!("tmp-go-0123456789abcdef-{dead}"))).unwrap();
        sweep_leftovers(d);
        let mut left: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![
            names[2].clone(), // this process may still be writing it
            names[3].clone(),
            names[4].clone(),
            names[5].clone(),
        ];
        want.sort();
        assert_eq!(left, want);
    }

    #[test]
    fn exclusions() {
        assert!(excluded("var/lib/apt/lists/mirror.example_dists", false));
        assert!(!excluded("var/lib/apt/lists", true));
        assert!(excluded("var/log/dpkg.log", false));
        assert!(!excluded("var/log/apt", true));
        assert!(excluded("var/cache/apt/pkgcache.bin", false));
        assert!(excluded("etc/machine-id", false));
        assert!(excluded("dev/null", false));
        assert!(!excluded("dev", true));
        assert!(!excluded("etc/passwd", false));
        assert!(excluded("var/lib/dpkg/status-old", false));
    }

    #[test]
    fn a_suite_the_host_does_not_name_has_no_mirror() {
        assert_eq!(host_mirror("no-such-suite"), None);
    }
}
