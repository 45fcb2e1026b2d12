//! Checks of a recipe's `[image]` table against the package and the base, made before
//! anything is written: the base exists, the entrypoint is an executable file of the image
//! (package first, then base), ports are in range, the user and the image name are valid.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::Context;

use crate::archive::{NodeKind, Tree};
use crate::error::usage;
use crate::recipe::{ImageSpec, Recipe};

/// A filesystem object as far as the checks care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink(String),
}

/// Files of a base rootfs: kinds and modes, plus the bytes of /etc/passwd and /etc/group,
/// the dpkg database, and where each file's bytes lie in the tar (read on demand).
#[derive(Debug, Clone, Default)]
pub struct BaseListing {
    pub entries: BTreeMap<String, (Kind, u32)>,
    pub passwd: String,
    pub group: String,
    /// The rootfs tar the listing was read from.
    pub tar: Option<std::path::PathBuf>,
    /// Regular file → (offset of its bytes in the tar, size).
    pub files: std::collections::HashMap<String, (u64, u64)>,
    /// `/var/lib/dpkg/status` and the paragraphs of `/var/lib/dpkg/status.d/*`.
    pub dpkg_status: String,
    /// Owners `(uid, gid)` of the entries not owned by root.
    pub owners: std::collections::HashMap<String, (u32, u32)>,
}

/// Most bytes of dpkg database the listing keeps.
const MAX_STATUS: usize = 64 << 20;

impl BaseListing {
    /// Lists a rootfs tar (headers only, except passwd and group).
    pub fn read(tar: &Path) -> anyhow::Result<BaseListing> {
        let file = std::fs::File::open(tar)
            .with_context(|| format!("could not open the base rootfs `{}`", tar.display()))?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(file));
        let mut out = BaseListing::default();
        let bad = || format!("could not read the base rootfs `{}`", tar.display());
        // Seeking past file bytes: a 100 MB base is listed without reading it.
        for entry in archive.entries_with_seek().with_context(bad)? {
            let mut entry = entry.with_context(bad)?;
            let raw = entry
                .path()
                .with_context(bad)?
                .to_string_lossy()
                .into_owned();
            let Ok(key) = crate::archive::normalize(&raw) else {
                continue;
            };
            if key.is_empty() {
                continue;
            }
            let header = entry.header();
            let mode = header.mode().unwrap_or(0) & 0o7777;
            let owner = (
                header.uid().unwrap_or(0) as u32,
                header.gid().unwrap_or(0) as u32,
            );
            if owner != (0, 0) {
                out.owners.insert(key.clone(), owner);
            }
            let kind = match header.entry_type() {
                tar::EntryType::Directory => Kind::Dir,
                tar::EntryType::Symlink => Kind::Symlink(
                    entry
                        .link_name()
                        .with_context(bad)?
                        .map(|l| l.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                _ => Kind::File,
            };
            match header.entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    out.files
                        .insert(key.clone(), (entry.raw_file_position(), entry.size()));
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .with_context(bad)?
                        .map(|l| l.to_string_lossy().into_owned())
                        .and_then(|l| crate::archive::normalize(&l).ok());
                    if let Some(at) = target.and_then(|t| out.files.get(&t).copied()) {
                        out.files.insert(key.clone(), at);
                    }
                }
                _ => {}
            }
            let status_d = key
                .strip_prefix("var/lib/dpkg/status.d/")
                .is_some_and(|n| !n.ends_with(".md5sums") && !n.contains('/'));
            let wanted = matches!(
                key.as_str(),
                "etc/passwd" | "etc/group" | "var/lib/dpkg/status"
            ) || status_d;
            if wanted && matches!(kind, Kind::File) {
                let mut text = String::new();
                entry.read_to_string(&mut text).with_context(bad)?;
                match key.as_str() {
                    "etc/passwd" => out.passwd = text,
                    "etc/group" => out.group = text,
                    _ if out.dpkg_status.len() + text.len() <= MAX_STATUS => {
                        out.dpkg_status.push_str(text.trim_end());
                        out.dpkg_status.push_str("\n\n");
                    }
                    _ => anyhow::bail!(
                        "the dpkg database of the base rootfs `{}` is larger than {MAX_STATUS} bytes",
                        tar.display()
                    ),
                }
            }
            out.entries.insert(key, (kind, mode));
        }
        out.tar = Some(tar.to_path_buf());
        Ok(out)
    }

    /// The bytes of a regular file of the base (not following symlinks), at most `limit`.
    pub fn read_file(&self, key: &str, limit: u64) -> Option<Vec<u8>> {
        use std::io::{Seek, SeekFrom};
        let (offset, size) = *self.files.get(key)?;
        let mut f = std::fs::File::open(self.tar.as_ref()?).ok()?;
        f.seek(SeekFrom::Start(offset)).ok()?;
        let mut buf = Vec::new();
        f.take(size.min(limit)).read_to_end(&mut buf).ok()?;
        Some(buf)
    }

    /// The packages the base's dpkg database says are installed.
    pub fn installed(&self) -> anyhow::Result<Vec<crate::debian::index::Package>> {
        crate::debian::index::installed_from_status(&self.dpkg_status).map_err(|e| {
            anyhow::anyhow!(
                "the dpkg database of the base rootfs `{}` is damaged: {e}",
                self.tar
                    .as_ref()
                    .map(|t| t.display().to_string())
                    .unwrap_or_default()
            )
        })
    }
}

/// Looks `path` up in the image's merged view (package over base), following symlinks in
/// every component. Returns the final object's kind and mode, or why it was not found.
pub(crate) fn resolve(
    data: &Tree,
    base: Option<&BaseListing>,
    path: &str,
) -> Result<(Kind, u32), String> {
    let lookup = |key: &str| -> Option<(Kind, u32)> {
        if let Some(n) = data.get(key) {
            return Some(match &n.kind {
                NodeKind::Dir => (Kind::Dir, n.mode),
                NodeKind::File(_) | NodeKind::HardLink(_) => (Kind::File, n.mode),
                NodeKind::Symlink(t) => (Kind::Symlink(t.clone()), n.mode),
            });
        }
        base.and_then(|b| b.entries.get(key).cloned())
    };
    let mut pending: Vec<String> = path.split('/').rev().map(str::to_string).collect();
    let mut current: Vec<String> = Vec::new();
    let mut hops = 0;
    let mut last = (Kind::Dir, 0o755);
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                current.pop();
                continue;
            }
            _ => {}
        }
        current.push(part);
        let key = current.join("/");
        match lookup(&key) {
            None => return Err(format!("`/{key}` does not exist")),
            Some((Kind::Symlink(target), _)) => {
                hops += 1;
                if hops > 32 {
                    return Err(format!("too many levels of symlinks at `/{key}`"));
                }
                current.pop();
                if target.starts_with('/') {
                    current.clear();
                }
                pending.extend(target.split('/').rev().map(str::to_string));
            }
            Some(found) => {
                if found.0 != Kind::Dir && !pending.iter().all(|p| p.is_empty() || p == ".") {
                    return Err(format!("`/{key}` is not a directory"));
                }
                last = found;
            }
        }
    }
    Ok(last)
}

/// Docker's reference grammar for a repository name (lowercase components).
fn valid_image_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && c.bytes()
                    .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || b"._-".contains(&x))
                && !c.contains("..")
        })
}

/// A Docker tag made from a Debian version: characters Docker refuses (`+`, `~`, `:`) become `_`.
pub fn tag_for_version(version: &str) -> String {
    let t: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    t.chars().take(128).collect()
}

fn valid_user_part(s: &str) -> bool {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return !s.is_empty() && s.parse::<u32>().is_ok_and(|n| n < u32::MAX);
    }
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b == b'_')
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn names_in(db: &str) -> impl Iterator<Item = &str> {
    db.lines()
        .filter_map(|l| l.split(':').next())
        .filter(|n| !n.is_empty())
}

/// Checks `spec` (with base `base_name`, the recipe's or a `--base` override) against the package `data` and, when known,
/// the base's files. Names in `user` are checked against the base's /etc/passwd and
/// /etc/group when the listing is given.
pub(crate) fn check_spec(
    recipe: &Recipe,
    spec: &ImageSpec,
    base_name: &str,
    data: &Tree,
    base: Option<&BaseListing>,
) -> anyhow::Result<()> {
    let file = recipe.file.display();
    let at = |field: &str| match spec.line_of(field) {
        Some(line) => format!("`{file}:{line}`: [image] {field}"),
        None => format!("`{file}`: [image] {field}"),
    };
    if !valid_image_name(&spec.name) {
        return Err(usage(format!(
            "{}: `{}` is not a valid image name; use lowercase letters, digits and `.`, `_`, `-` \
             (set `name` in [image])",
            at("name"),
            spec.name
        )));
    }
    if let Some(port) = spec.ports.iter().find(|&&p| p == 0) {
        return Err(usage(format!(
            "{}: port {port} is out of range; ports are 1-65535",
            at("ports")
        )));
    }
    let user = spec.user.trim();
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    if user.is_empty() || !valid_user_part(u) || (user.contains(':') && !valid_user_part(g)) {
        return Err(usage(format!(
            "{}: `{}` is not a valid user; use `uid`, `uid:gid` or a user name (default \
             `65532:65532`, the nonroot user)",
            at("user"),
            spec.user
        )));
    }
    if let Some(b) = base {
        let numeric = |s: &str| s.bytes().all(|x| x.is_ascii_digit());
        if !numeric(u) && !names_in(&b.passwd).any(|n| n == u) {
            return Err(usage(format!(
                "{}: user `{u}` does not exist in base `{}` (its /etc/passwd has: {}); use a \
                 numeric `uid:gid` such as `65532:65532`",
                at("user"),
                base_name,
                names_in(&b.passwd).collect::<Vec<_>>().join(", ")
            )));
        }
        if !g.is_empty() && !numeric(g) && !names_in(&b.group).any(|n| n == g) {
            return Err(usage(format!(
                "{}: group `{g}` does not exist in base `{}`",
                at("user"),
                base_name
            )));
        }
    }
    if !spec.workdir.is_empty() && !spec.workdir.starts_with('/') {
        return Err(usage(format!(
            "{}: `{}` must be an absolute path",
            at("workdir"),
            spec.workdir
        )));
    }
    let (field, argv) = if spec.entrypoint.is_empty() {
        ("cmd", &spec.cmd)
    } else {
        ("entrypoint", &spec.entrypoint)
    };
    let Some(program) = argv.first() else {
        return Err(usage(format!(
            "{}: the image has neither an entrypoint nor a cmd; set `entrypoint = [\"/usr/bin/{}\"]`",
            at("entrypoint"),
            recipe.package.name
        )));
    };
    // A bare name is looked up in the image's PATH by the runtime (and by the start
    // check); a relative path with a `/` would depend on the working directory.
    if !program.contains('/') {
        return Ok(());
    }
    if !program.starts_with('/') {
        return Err(usage(format!(
            "{}: `{program}` must be an absolute path or a bare name found in PATH; e.g. \
             `/usr/bin/{}`",
            at(field),
            program.rsplit('/').next().unwrap_or(program)
        )));
    }
    // The package's Depends go into a dependency layer, which may hold the program: the
    // start check judges it on every layer.
    let has_depends = recipe
        .package
        .relations
        .iter()
        .any(|(k, _)| k == "Depends" || k == "Pre-Depends");
    let packaged: Vec<String> = data
        .iter()
        .filter(|(_, n)| matches!(n.kind, NodeKind::File(_)))
        .map(|(k, _)| format!("/{k}"))
        .take(5)
        .collect();
    match resolve(data, base, program) {
        Ok((Kind::File, mode)) if mode & 0o111 != 0 => Ok(()),
        Ok((Kind::File, mode)) => Err(usage(format!(
            "{}: `{program}` is not executable (mode {mode:04o}); give it `mode = \"0755\"` in \
             its [[files]] entry",
            at(field)
        ))),
        Ok(_) => Err(usage(format!("{}: `{program}` is a directory", at(field)))),
        // Without the base's listing a program outside the package cannot be judged yet;
        // the image operation checks again once the base rootfs is at hand.
        Err(_) if base.is_none() && data.get(program).is_none() => Ok(()),
        Err(_) if has_depends => Ok(()),
        Err(why) => Err(usage(format!(
            "{}: `{program}` is not in package `{}` nor in base `{}`: {why}; the package \
             installs {}",
            at(field),
            recipe.package.name,
            base_name,
            if packaged.is_empty() {
                "no files".to_string()
            } else {
                packaged.join(", ")
            }
        ))),
    }
}
