//! Validated recipe types: what the rest of builder works with. Every value here has passed
//! validation (Debian policy for names, versions and relationships; absolute normalised
//! destinations; sources inside the project). Raw serde types live in `raw.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

/// One service recipe (`recipes/<name>.toml`).
#[derive(Debug, Clone, Serialize)]
pub struct Recipe {
    /// The recipe file, as given (for messages).
    pub file: PathBuf,
    /// The project root that relative `from` paths resolve against.
    pub project: PathBuf,
    pub package: Package,
    pub files: Vec<FileSpec>,
    pub scripts: Scripts,
    pub systemd: Vec<SystemdUnit>,
    /// The `[triggers]` table, in the order the control.tar `triggers` file lists them.
    pub triggers: Vec<Trigger>,
    pub build: Option<BuildSpec>,
    pub image: Option<ImageSpec>,
}

/// Compression of control.tar and data.tar inside the .deb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    #[default]
    Xz,
    Zstd,
    None,
}

impl std::fmt::Display for Compression {
    /// The name recipes use (`xz`), as serialised.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        })
    }
}

impl Compression {
    /// Suffix of the member name: `data.tar.xz`.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => ".gz",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
            Compression::None => "",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "gzip" | "gz" => Compression::Gzip,
            "xz" => Compression::Xz,
            "zstd" | "zst" => Compression::Zstd,
            "none" => Compression::None,
            _ => return None,
        })
    }
}

/// The `[package]` table: Debian control fields.
#[derive(Debug, Clone, Serialize)]
pub struct Package {
    pub name: String,
    /// Upstream version (no epoch, no revision).
    pub upstream_version: String,
    pub revision: Option<String>,
    pub epoch: Option<u32>,
    pub architecture: String,
    pub maintainer: String,
    /// Synopsis: the first line of `description`.
    pub synopsis: String,
    /// Extended description lines, not yet formatted for the control file.
    pub long_description: Vec<String>,
    pub section: String,
    pub priority: String,
    pub homepage: Option<String>,
    pub license: Option<String>,
    /// Relationship fields in control-file order, e.g. `("Depends", "libc6 (>= 2.31), adduser")`,
    /// Built-Using and Static-Built-Using included.
    pub relations: Vec<(String, String)>,
    /// `Source`: the source package (and its version, when it differs), if not the package's
    /// own name.
    pub source: Option<String>,
    /// `Multi-Arch`: same, foreign, allowed or no.
    pub multi_arch: Option<String>,
    /// Where `changelog.Debian.gz` comes from.
    pub changelog: Changelog,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Protected: yes`.
    pub protected: bool,
    /// User-defined fields as they go into the control file (`XB-Foo` becomes `Foo`), in
    /// the recipe's (sorted) order.
    pub user_fields: Vec<(String, String)>,
    pub compression: Compression,
    /// Whether every file under /etc is a conffile (dpkg-deb/debhelper behaviour). Default true.
    pub etc_conffiles: bool,
    /// Lintian tags to override (shipped in /usr/share/lintian/overrides/<name>), e.g.
    /// `statically-linked-binary` for Go services.
    pub lintian_overrides: Vec<String>,
}

impl Package {
    /// Full Debian version: `[epoch:]upstream[-revision]`.
    pub fn version(&self) -> String {
        let mut v = String::new();
        if let Some(e) = self.epoch {
            v.push_str(&format!("{e}:"));
        }
        v.push_str(&self.upstream_version);
        if let Some(r) = &self.revision {
            v.push('-');
            v.push_str(r);
        }
        v
    }

    /// Version as used in file names: the epoch is left out.
    pub fn file_version(&self) -> String {
        let mut v = self.upstream_version.clone();
        if let Some(r) = &self.revision {
            v.push('-');
            v.push_str(r);
        }
        v
    }

    /// `<name>_<version>_<arch>.deb`
    pub fn deb_file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.name,
            self.file_version(),
            self.architecture
        )
    }
}

/// Where a package's changelog comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "lowercase")]
pub enum Changelog {
    /// One entry: "Packaged by builder".
    Stub,
    /// A debian/changelog-format file, relative to the project root.
    File(PathBuf),
    /// Entries from git: one per release tag, the commits between them.
    Git,
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// A path relative to the project root: a file, or a directory copied recursively.
    Path { path: PathBuf },
    /// A glob relative to the project root; matches are placed under the destination directory.
    Glob { pattern: String },
    /// An output of this recipe's build, relative to `dist/build/<name>/` (`from = "build:..."`).
    Build { path: PathBuf },
    /// A symbolic link to `target`.
    Symlink { target: String },
    /// A directory of its own (`dir = "/var/lib/x"`), made with the entry's mode and owner.
    Dir,
}

/// One `[[files]]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct FileSpec {
    pub source: Source,
    /// Absolute, normalised destination. Ends with `/` when it names a directory for a tree or glob.
    pub to: String,
    /// Permission bits of the files the entry installs (of the directory, for `dir`);
    /// `None` keeps each file's mode on disk, special bits included.
    pub mode: Option<u32>,
    /// Owner and group of everything the entry installs, by name (`None`: root).
    pub owner: Option<String>,
    pub group: Option<String>,
    pub conffile: bool,
    /// Line of the entry in the recipe, for messages at package time.
    pub line: usize,
}

/// Maintainer scripts and debconf files, as paths relative to the project root.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scripts {
    pub preinst: Option<PathBuf>,
    pub postinst: Option<PathBuf>,
    pub prerm: Option<PathBuf>,
    pub postrm: Option<PathBuf>,
    /// debconf's `config` script (a program dpkg-preconfigure and the confmodule run).
    pub config: Option<PathBuf>,
    /// debconf's `templates` (a data file of deb822 stanzas with `Template:` and `Type:`).
    pub templates: Option<PathBuf>,
}

impl Scripts {
    /// Whether the package uses debconf, as dh_installdebconf decides it: a config script
    /// or templates.
    pub fn uses_debconf(&self) -> bool {
        self.config.is_some() || self.templates.is_some()
    }
}

/// One line of the control.tar `triggers` file (deb-triggers(5)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trigger {
    /// `interest`, `interest-await`, `interest-noawait`, `activate`, `activate-await` or
    /// `activate-noawait`.
    pub directive: &'static str,
    /// A file trigger (an absolute path) or an explicit trigger name.
    pub name: String,
}

/// A systemd unit shipped to /lib/systemd/system with debhelper-style script snippets.
#[derive(Debug, Clone, Serialize)]
pub struct SystemdUnit {
    /// Unit file, relative to the project root.
    pub path: PathBuf,
    /// Unit name (file name), e.g. `backend.service`.
    pub name: String,
    /// Enable on install (deb-systemd-helper); default true, always false for templates.
    pub enable: bool,
    /// Start on install (dh_installsystemd without `--no-start`); default true, always
    /// false for templates.
    pub start: bool,
    /// Restart in postinst on upgrade instead of stopping in prerm/preinst
    /// (`--restart-after-upgrade`); default true unless `start` or `stop_on_upgrade` is
    /// false, as in dh_installsystemd.
    pub restart_after_upgrade: bool,
    /// Stop the unit before an upgrade (false: `--no-stop-on-upgrade`); default true.
    pub stop_on_upgrade: bool,
    /// Whether the unit file has an `[Install]` section: dh_installsystemd enables (and
    /// purges the enable state of) only such units.
    pub install_section: bool,
    /// The units its `Also=` lines name: dh_installsystemd handles them with it (each is
    /// a `[[systemd]]` unit of the recipe too; validation sees to that).
    pub also: Vec<String>,
}

impl SystemdUnit {
    /// A template unit such as `getty@.service` (debhelper's test: the name has an `@`).
    /// dh_installsystemd never enables, starts or stops one: that needs an instance name.
    pub fn is_template(&self) -> bool {
        self.name.contains('@')
    }
}

/// Build command: exec form, or a shell string run with `sh -c`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Command(pub Vec<String>);

/// Network mode of the build container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildNetwork {
    None,
    Bridge,
}

/// The `[build]` table.
#[derive(Debug, Clone, Serialize)]
pub struct BuildSpec {
    /// Builder image definition name (`base-images/<builder>.toml`).
    pub builder: String,
    /// Source directory relative to the project root; uploaded to `workdir`.
    pub source: PathBuf,
    pub command: Command,
    pub test: Option<Command>,
    pub env: BTreeMap<String, String>,
    /// Files the build must leave under /out (relative names).
    pub outputs: Vec<String>,
    /// Extra ignore patterns (gitignore-like globs) for the source upload.
    pub ignore: Vec<String>,
    pub network: BuildNetwork,
    /// CPU limit in cores (e.g. 1.5); `None` means no limit.
    pub cpus: Option<f64>,
    /// Memory limit in bytes; `None` means no limit.
    pub memory: Option<u64>,
    /// User to run as inside the container (`uid[:gid]` or a name); `None` means the image default.
    pub user: Option<String>,
    /// Where the sources are uploaded inside the container.
    pub workdir: String,
    /// Directories kept between builds of this recipe in a builder-managed volume (e.g. the
    /// Go build cache). They speed builds up; they are not inputs of the cache key, so only
    /// content-addressed tool caches belong here.
    pub cache: Vec<String>,
    /// How long the build container may run (`timeout = "30m"`, default 1h). Not part of
    /// the cache key (it never changes an output), so left out of the serialised form.
    #[serde(skip)]
    pub timeout: std::time::Duration,
    /// `timeout` as written (or the default `1h`), for messages.
    #[serde(skip)]
    pub timeout_text: String,
}

/// The `[build] timeout` when the recipe sets none.
pub const DEFAULT_BUILD_TIMEOUT: &str = "1h";

/// The `[image]` table.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSpec {
    /// Runtime base definition name (`base-images/<base>.toml`).
    pub base: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// `uid:gid` or a user name; default `65532:65532` (nonroot).
    pub user: String,
    pub workdir: String,
    pub ports: Vec<u16>,
    pub labels: BTreeMap<String, String>,
    /// Keep conffiles (/etc) in the image; default true (the service needs its config).
    pub include_conffiles: bool,
    /// Keep systemd units in the image; default false.
    pub include_systemd: bool,
    /// Names among the package's Depends that count as met in the image without being
    /// installed (tools only maintainer scripts use, such as `adduser` or `debconf`).
    pub exclude: Vec<String>,
    /// Image name; default the package name.
    pub name: String,
    /// Line of each field as written (`entrypoint`, `user`, ...; `[image]` for the table
    /// itself), so checks at package time can point at it. Not part of the image.
    #[serde(skip)]
    pub lines: BTreeMap<String, usize>,
}

impl ImageSpec {
    /// The line of `field`, else of the `[image]` table, when known.
    pub fn line_of(&self, field: &str) -> Option<usize> {
        self.lines
            .get(field)
            .or_else(|| self.lines.get("[image]"))
            .copied()
    }
}
