//! Writing a .deb. One pass over the data files: each file is read once, its md5 taken and
//! its bytes fed to the (multi-threaded) compressor, which writes data.tar.<c> to a temp
//! file beside the output. Then control.tar.<c> (which needs the md5sums) is made in memory,
//! and the ar archive is assembled into a second temp file that is renamed into place.

use crate::digest::HashWriter;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use md5::{Digest, Md5};

use super::compress::Encoder;
use super::control::render_control;
use super::{ar, DebInfo, DebSpec};
use crate::archive::{
    write_tar, write_tar_observed, FileObserver, FileSource, NodeKind, TarOptions, Tree,
};

const IO_BUF: usize = 1 << 20;

/// Collects `md5sums` lines while data.tar is written. Like dh_md5sums (without
/// `--include-conffiles`), conffiles are left out: dpkg keeps their sums in its conffiles
/// database, and Debian's own packages list them there only.
struct Md5Sums {
    current: Option<(String, Md5)>,
    lines: String,
    /// Each file's md5, for the hard links to it (dh_md5sums lists every name of a file).
    sums: std::collections::HashMap<String, String>,
    /// Conffiles as tar paths (without the leading `/`).
    skip: HashSet<String>,
}

impl FileObserver for Md5Sums {
    fn start(&mut self, path: &str) {
        self.current = Some((path.to_string(), Md5::new()));
    }

    fn data(&mut self, chunk: &[u8]) {
        if let Some((_, h)) = &mut self.current {
            h.update(chunk);
        }
    }

    fn end(&mut self) {
        if let Some((path, h)) = self.current.take() {
            let sum = hex::encode(h.finalize());
            self.line(&sum, &path);
            self.sums.insert(path, sum);
        }
    }

    fn hardlink(&mut self, path: &str, target: &str) {
        if let Some(sum) = self.sums.get(target).cloned() {
            self.line(&sum, path);
        }
    }
}

impl Md5Sums {
    fn new(conffiles: &[String]) -> Self {
        Md5Sums {
            current: None,
            lines: String::new(),
            sums: std::collections::HashMap::new(),
            skip: conffiles
                .iter()
                .map(|c| c.trim_start_matches('/').to_string())
                .collect(),
        }
    }

    /// dpkg's format: `<md5>  <path relative to />`.
    fn line(&mut self, sum: &str, path: &str) {
        if self.skip.contains(path) {
            return;
        }
        self.lines.push_str(sum);
        self.lines.push_str("  ");
        self.lines.push_str(path);
        self.lines.push('\n');
    }
}

fn check_conffiles(spec: &DebSpec) -> anyhow::Result<String> {
    let mut text = String::new();
    let mut seen = HashSet::new();
    for c in &spec.conffiles {
        if !c.starts_with('/') {
            bail!("conffile `{c}` must be an absolute path");
        }
        if crate::archive::normalize(c).ok().as_deref() != Some(&c[1..]) {
            bail!(
                "conffile `{c}` is not a normalised path: write it as `/{}`",
                c.trim_matches('/')
            );
        }
        if !seen.insert(c.as_str()) {
            bail!("conffile `{c}` is listed twice");
        }
        match spec.data.get(c).map(|n| &n.kind) {
            Some(NodeKind::File(_)) => {}
            Some(_) => bail!("conffile `{c}` is not a regular file in the package"),
            None => bail!("conffile `{c}` is not in the package's files"),
        }
        text.push_str(c);
        text.push('\n');
    }
    Ok(text)
}

fn check_scripts(spec: &DebSpec) -> anyhow::Result<()> {
    let mut seen = HashSet::new();
    for (script, body) in &spec.scripts {
        let name = script.file_name();
        if !seen.insert(*script) {
            bail!("maintainer script `{name}` is given twice");
        }
        if script.is_program() && !body.starts_with(b"#!") {
            bail!(
                "maintainer script `{name}` must start with an interpreter line such as \
                 `#!/bin/sh`"
            );
        }
    }
    Ok(())
}

fn control_tree(spec: &DebSpec, control: String, md5sums: String) -> anyhow::Result<Tree> {
    let mut tree = Tree::new();
    let bytes = |s: String| FileSource::Bytes(Arc::from(s.into_bytes()));
    tree.add_file("control", 0o644, bytes(control))?;
    if !md5sums.is_empty() {
        tree.add_file("md5sums", 0o644, bytes(md5sums))?;
    }
    let conffiles = check_conffiles(spec)?;
    if !conffiles.is_empty() {
        tree.add_file("conffiles", 0o644, bytes(conffiles))?;
    }
    for (script, body) in &spec.scripts {
        let name = script.file_name();
        let mode = if script.is_program() { 0o755 } else { 0o644 };
        tree.add_file(name, mode, FileSource::Bytes(Arc::from(body.as_slice())))
            .map_err(|_| anyhow::anyhow!("maintainer script `{name}` is given twice"))?;
    }
    Ok(tree)
}

/// What the control files add to Installed-Size in a package built with debhelper:
/// dpkg-gencontrol walks the whole build tree, `DEBIAN/` included, and dh_installdeb (and
/// dh_installdebconf, dh_installdeb for triggers) put the maintainer scripts, `conffiles`,
/// `config`, `templates` and `triggers` there before dh_gencontrol runs; `control` is written
/// by dpkg-gencontrol itself and `md5sums` after it (dh_md5sums), so neither counts. The
/// directory counts 1 and each file `ceil(size / 1024)`, as in [`Tree::installed_size_kib`].
fn control_kib(spec: &DebSpec, conffiles: &str) -> u64 {
    let file = |n: usize| (n as u64).div_ceil(1024);
    1 + file(conffiles.len())
        + spec
            .scripts
            .iter()
            .map(|(_, body)| file(body.len()))
            .sum::<u64>()
}

/// Writes the .deb for `spec` to `out` (through a temp file in the same directory and a
/// rename) and returns its sha256, size and Installed-Size.
pub fn write_deb(spec: &DebSpec, out: &Path) -> anyhow::Result<DebInfo> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("could not create `{}`", dir.display()))?;
    // Refuse a bad spec before the expensive part.
    let conffiles = check_conffiles(spec)?;
    check_scripts(spec)?;
    let installed_size_kib = spec.data.installed_size_kib()? + control_kib(spec, &conffiles);
    let control = render_control(&spec.control, installed_size_kib)?;
    let ext = spec.compression.extension();
    let opts = TarOptions::deb(spec.mtime);

    // data.tar.<c>: files are read, hashed and compressed in one pass.
    let data_tmp = tempfile::Builder::new()
        .prefix(".builder-data-")
        .tempfile_in(&dir)
        .with_context(|| format!("could not create a temp file in `{}`", dir.display()))?;
    let mut md5 = Md5Sums::new(&spec.conffiles);
    let writer = BufWriter::with_capacity(IO_BUF, data_tmp.as_file());
    let encoder = Encoder::new(spec.compression, writer)?;
    let encoder = write_tar_observed(&spec.data, encoder, &opts, &mut md5)
        .context("could not write data.tar")?;
    let mut writer = encoder.finish().context("could not compress data.tar")?;
    writer.flush().context("could not write data.tar")?;
    drop(writer);
    let data_size = data_tmp
        .as_file()
        .metadata()
        .context("could not read the data.tar temp file")?
        .len();

    // control.tar.<c>, small, in memory.
    let ctree = control_tree(spec, control, md5.lines)?;
    let control_tar = write_tar(&ctree, Encoder::new(spec.compression, Vec::new())?, &opts)?
        .finish()
        .context("could not compress control.tar")?;

    // The ar archive.
    let out_tmp = tempfile::Builder::new()
        .prefix(".builder-deb-")
        .tempfile_in(&dir)
        .with_context(|| format!("could not create a temp file in `{}`", dir.display()))?;
    let tmp_path = out_tmp.path().to_path_buf();
    let (sha, len) = {
        let mut w = HashWriter::new(BufWriter::with_capacity(IO_BUF, out_tmp.as_file()));
        let write_err = || format!("could not write `{}`", tmp_path.display());
        w.write_all(ar::MAGIC).with_context(write_err)?;
        ar::write_member(&mut w, "debian-binary", spec.mtime, b"2.0\n").with_context(write_err)?;
        ar::write_member(
            &mut w,
            &format!("control.tar{ext}"),
            spec.mtime,
            &control_tar,
        )
        .with_context(write_err)?;
        ar::write_header(&mut w, &format!("data.tar{ext}"), spec.mtime, data_size)
            .with_context(write_err)?;
        let mut data = data_tmp
            .reopen()
            .context("could not reopen the data.tar temp file")?;
        copy_exact(&mut data, &mut w, data_size).with_context(write_err)?;
        ar::write_padding(&mut w, data_size).with_context(write_err)?;
        w.flush().with_context(write_err)?;
        let (_, digest, len) = w.finish();
        (digest, len)
    };

    set_mode_644(out_tmp.as_file())?;
    // On disk before the name points at it: manifest.json (synced) records its sha256.
    crate::durable::persist(out_tmp, out)?;
    Ok(DebInfo {
        path: out.to_path_buf(),
        sha256: sha,
        size: len,
        installed_size_kib,
    })
}

fn copy_exact<R: Read, W: Write>(r: &mut R, w: &mut W, size: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; IO_BUF];
    let mut left = size;
    while left > 0 {
        let want = left.min(IO_BUF as u64) as usize;
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the data.tar temp file shrank",
            ));
        }
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Temp files are created 0600; a package in dist/ is world-readable like dpkg-deb's.
fn set_mode_644(f: &File) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .context("could not set the permissions of the new .deb")
}
