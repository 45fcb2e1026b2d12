//! `builder inspect FILE`: what a .deb holds (control fields, members, conffiles, scripts and
//! a `dpkg-deb -c`-like file list), as text or with `--json` as data. Dispatches on the
//! file's magic so image tars can be added beside .debs.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use crate::deb::{read_deb, DebContents, DebFile};
use crate::error::usage;
use crate::report::Reporter;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The .deb or image tar (dist/images/*.tar) to inspect
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// What a file is, judged by its first bytes.
enum FileType {
    Deb,
    Tar,
    Unknown,
}

fn sniff(path: &Path) -> anyhow::Result<FileType> {
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path)
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .map_err(|e| usage(format!("could not read `{}`: {e}", path.display())))?;
    Ok(if head.starts_with(b"!<arch>\n") {
        FileType::Deb
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        FileType::Tar
    } else {
        FileType::Unknown
    })
}

pub(super) fn run(args: InspectArgs, reporter: &Reporter) -> anyhow::Result<u8> {
    let path = &args.file;
    match sniff(path)? {
        FileType::Deb => inspect_deb(path, reporter),
        FileType::Tar => crate::oci::inspect::print(path, reporter),
        FileType::Unknown => Err(usage(format!(
            "`{}` is not a Debian package (no ar signature `!<arch>`) nor an image tar; pass a .deb or a dist/images/*.tar file",
            path.display()
        ))),
    }
}

#[derive(Serialize)]
struct DebReport<'a> {
    path: &'a Path,
    #[serde(flatten)]
    contents: &'a DebContents,
}

fn inspect_deb(path: &Path, reporter: &Reporter) -> anyhow::Result<u8> {
    let contents = read_deb(path).map_err(|e| usage(e.to_string()))?;
    if reporter.is_json() {
        reporter.json(&DebReport {
            path,
            contents: &contents,
        })?;
    } else {
        reporter.output(render(path, &contents).trim_end());
    }
    Ok(crate::error::EXIT_OK)
}

fn render(path: &Path, c: &DebContents) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}: Debian binary package", path.display());
    let _ = writeln!(s, "members:");
    for (name, size) in &c.members {
        let _ = writeln!(s, "  {name:<16} {size:>12} bytes");
    }
    let _ = writeln!(s, "control:");
    for line in c.control_text.lines() {
        let _ = writeln!(s, "  {line}");
    }
    if !c.conffiles.is_empty() {
        let _ = writeln!(s, "conffiles:");
        for f in &c.conffiles {
            let _ = writeln!(s, "  {f}");
        }
    }
    if !c.scripts.is_empty() {
        let _ = writeln!(s, "scripts: {}", c.scripts.join(", "));
    }
    let _ = writeln!(s, "files ({}):", c.files.len());
    for f in &c.files {
        let _ = writeln!(s, "{}", file_line(f));
    }
    s
}

/// `drwxr-xr-x         0 ./usr/bin/` like `dpkg-deb -c`, without owner and date.
fn file_line(f: &DebFile) -> String {
    let mut perms = String::with_capacity(10);
    perms.push(f.kind);
    for (i, ch) in ['r', 'w', 'x', 'r', 'w', 'x', 'r', 'w', 'x']
        .iter()
        .enumerate()
    {
        let bit = 0o400 >> i;
        let special = match i {
            2 if f.mode & 0o4000 != 0 => Some('s'),
            5 if f.mode & 0o2000 != 0 => Some('s'),
            8 if f.mode & 0o1000 != 0 => Some('t'),
            _ => None,
        };
        let set = f.mode & bit != 0;
        perms.push(match (special, set) {
            (Some(c), true) => c,
            (Some(c), false) => c.to_ascii_uppercase(),
            (None, true) => *ch,
            (None, false) => '-',
        });
    }
    let name = match f.path.as_str() {
        "/" => "./".to_string(),
        p if f.kind == 'd' => format!(".{p}/"),
        p => format!(".{p}"),
    };
    let link = match (&f.link, f.kind) {
        (Some(t), 'l') => format!(" -> {t}"),
        (Some(t), _) => format!(" link to {t}"),
        _ => String::new(),
    };
    format!("{perms} {:>10} {name}{link}", f.size)
}
