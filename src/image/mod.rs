//! The image operation: a recipe's `[image]` table plus its .deb become
//! `dist/images/<name>_<version>.tar` (OCI layout + Docker archive), optionally loaded into
//! the engine as `<name>:<version>`. No `docker build`, no container: layer 1 is the runtime
//! base's rootfs tar (from `crate::base`), layer 2 the package's data files
//! ([`layer::app_tree`]), the config comes from the recipe ([`config::image_config`]).
//!
//! Reproducible: the app layer depends only on the .deb (its mtime is the .deb's own
//! SOURCE_DATE_EPOCH), the base layer only on the base rootfs, the config on the recipe, the
//! .deb's sha256 and `ImageOptions::mtime`. Rebasing (`base_override`) keeps the app layer
//! digest and changes the image id.
//!
//! Every check ([`check::check_spec`]) runs before anything is written.

pub(crate) mod check;
pub(crate) mod config;
pub(crate) mod deps;
pub(crate) mod layer;
pub(crate) mod provider;
pub(crate) mod start;
pub(crate) mod view;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::archive::Tree;
use crate::base::BaseImages;
use crate::digest::Digest;
use crate::error::usage;
use crate::oci::{compress_tar_file, compress_tree, write_image_tar, ImageParts, LayerBlob};

use crate::project::Paths;
use crate::recipe::{ImageSpec, Recipe};
use crate::report::Reporter;

pub use check::{tag_for_version, BaseListing};

/// Where an image goes: the tag it is loaded under and the tar it is written to.
/// [`crate::plan`] decides it (through [`target`]); the writer only obeys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageTarget {
    /// `name:tag`, as loaded into Docker.
    pub tag: String,
    /// The tag part alone (the OCI layout's ref name): the version made fit for Docker.
    #[serde(skip)]
    pub reference: String,
    /// `dist/images/<name>_<version>.tar`
    pub path: PathBuf,
}

/// The tag and tar path of the image `spec` of `package`, under `dist`.
pub fn target(dist: &Path, package: &crate::recipe::Package, spec: &ImageSpec) -> ImageTarget {
    let reference = tag_for_version(&package.file_version());
    ImageTarget {
        tag: format!("{}:{reference}", spec.name),
        reference,
        path: dist
            .join("images")
            .join(format!("{}_{}.tar", spec.name, package.file_version())),
    }
}

/// [`target`] of `recipe`'s image; an error saying how to add one when it has none.
pub fn recipe_target(dist: &Path, recipe: &Recipe) -> anyhow::Result<ImageTarget> {
    Ok(target(dist, &recipe.package, spec_of(recipe)?))
}

/// How [`build_image`] runs.
#[derive(Debug, Clone, Default)]
pub struct ImageOptions {
    /// Where the image goes (from the plan, see [`target`]).
    pub target: ImageTarget,
    /// SOURCE_DATE_EPOCH: the config's `created` and the outer tar's mtimes.
    pub mtime: u64,
    /// Load the image into the Docker engine after writing it.
    pub load: bool,
    /// The git commit (`org.opencontainers.image.revision`).
    pub revision: Option<String>,
    /// Where the source lives (`org.opencontainers.image.source`).
    pub source: Option<String>,
}

/// What [`build_image`] made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageResult {
    pub name: String,
    /// `name:version`, as loaded into Docker.
    pub tag: String,
    /// `dist/images/<name>_<version>.tar`
    pub path: PathBuf,
    /// Digest of the config: the Docker image id.
    pub image_id: Digest,
    pub manifest_digest: Digest,
    /// The base layer's blob digest.
    pub base_layer_digest: Digest,
    /// The dependency layer's blob digest, when the base lacks some of the package's
    /// Depends.
    pub deps_layer_digest: Option<Digest>,
    /// The packages of the dependency layer (`name version`), as locked.
    pub dependencies: Vec<String>,
    /// The application layer's blob digest (unchanged by a rebase).
    pub app_layer_digest: Digest,
    pub base: String,
    /// Uncompressed size of the layers (about what `docker images` shows).
    pub size: u64,
    /// Size and sha256 of the tar file.
    pub tar_size: u64,
    pub tar_sha256: Digest,
    /// Whether it was loaded into the engine.
    pub loaded: bool,
}

fn spec_of(recipe: &Recipe) -> anyhow::Result<&ImageSpec> {
    recipe.image.as_ref().ok_or_else(|| {
        usage(format!(
            "recipe `{}` has no [image] table; add one (e.g. `[image]\\nbase = \"static\"\\n\
             entrypoint = [\"/usr/bin/{}\"]`) to make an image",
            recipe.file.display(),
            recipe.package.name
        ))
    })
}

fn require_base(bases: &BaseImages, recipe: &Recipe, name: &str) -> anyhow::Result<()> {
    let recipes_dir = recipe.file.parent().unwrap_or(Path::new("."));
    let builders = crate::recipe::builder_images(recipes_dir);
    if let Some((msg, help)) = crate::recipe::builder_base_problem(name, &builders, &recipe.project)
    {
        return Err(usage(format!(
            "base `{name}` refused for image of `{}`: {msg}; {help}",
            recipe.package.name
        )));
    }
    if bases.get(name).is_some() {
        return Ok(());
    }
    // `tag` reports an unknown base with the known names and a suggestion.
    bases
        .tag(name)
        .map(|_| ())
        .with_context(|| format!("`{}`: [image] base", recipe.file.display()))
}

/// The base listing, when the checks need it: the entrypoint is not in the package, or the
/// user is a name that only the base's /etc/passwd can confirm.
fn needs_listing(spec: &ImageSpec, data: &Tree) -> bool {
    let program = spec.entrypoint.first().or(spec.cmd.first());
    let in_package = program.is_some_and(|p| check::resolve(data, None, p).is_ok());
    let named_user = spec
        .user
        .split(':')
        .any(|p| !p.is_empty() && !p.bytes().all(|b| b.is_ascii_digit()));
    !in_package || named_user
}

/// Checks a recipe's `[image]` table against its package data and the project's bases,
/// before anything is written: the base exists, the entrypoint is an executable file of the
/// image, ports are 1-65535, the user and name are valid. A recipe without `[image]` passes.
/// May make the base rootfs (cached) when the entrypoint or user can only be found there.
pub fn check_image_spec(recipe: &Recipe, data: &Tree, bases: &BaseImages) -> anyhow::Result<()> {
    let Some(spec) = recipe.image.as_ref() else {
        return Ok(());
    };
    require_base(bases, recipe, &spec.base)?;
    // What the image will ship (before the .deb exists, every /etc file counts as a conffile,
    // as builder marks them).
    let app = layer::app_tree(data, spec, None);
    check::check_spec(recipe, spec, &spec.base, &app, None)?;
    if needs_listing(spec, &app) {
        let rootfs = bases.rootfs(&spec.base, &Reporter::quiet())?;
        let listing = BaseListing::read(&rootfs.tar)?;
        let app = layer::onto_base(&app, &listing);
        check::check_spec(recipe, spec, &spec.base, &app, Some(&listing))?;
    }
    Ok(())
}

/// Proves, before the .deb is written, that the recipe's image will start: its base and
/// dependency layer (resolved and locked now if needed) and the package's files `data`
/// hold the entrypoint's interpreter and libraries. `fields` are the package's control
/// fields (their Depends and Pre-Depends make the dependency layer). A recipe without
/// `[image]` passes.
pub fn check_image_starts(
    recipe: &Recipe,
    data: &Tree,
    fields: &[(String, String)],
    bases: &BaseImages,
    reporter: &Reporter,
) -> anyhow::Result<()> {
    let Some(spec) = recipe.image.as_ref() else {
        return Ok(());
    };
    let rootfs = bases.rootfs(&spec.base, reporter)?;
    let listing = BaseListing::read(&rootfs.tar)?;
    let app = layer::onto_base(&layer::app_tree(data, spec, None), &listing);
    let below = Below {
        bases,
        name: &spec.base,
        rootfs: &rootfs,
        listing: &listing,
    };
    dependencies_that_start(recipe, spec, fields, &below, &app, reporter).map(|_| ())
}

/// A base as an image is made on it.
struct Below<'a> {
    bases: &'a BaseImages,
    name: &'a str,
    rootfs: &'a crate::base::Rootfs,
    listing: &'a BaseListing,
}

/// The dependency layer of the package whose control `fields` are given, on `below`, and
/// the proof that the entrypoint starts over it (see [`prove_start`]).
fn dependencies_that_start(
    recipe: &Recipe,
    spec: &ImageSpec,
    fields: &[(String, String)],
    below: &Below<'_>,
    app: &Tree,
    reporter: &Reporter,
) -> anyhow::Result<Option<deps::DepsLayer>> {
    let deps = deps::dependency_layer(
        recipe,
        spec,
        fields,
        below.bases,
        below.name,
        &below.rootfs.diff_id,
        below.listing,
        reporter,
    )?;
    prove_start(recipe, spec, below, app, deps.as_ref(), reporter)?;
    Ok(deps)
}

/// The mtime of the .deb's first ar member: the SOURCE_DATE_EPOCH it was packaged with
/// (builder and `dpkg-deb` both stamp members with it). The app layer uses it so that its
/// digest depends on the .deb alone, whenever and with whatever epoch the image is made.
pub fn deb_mtime(deb: &Path) -> Option<u64> {
    use std::io::Read;
    let mut head = [0u8; 8 + 60];
    std::fs::File::open(deb).ok()?.read_exact(&mut head).ok()?;
    if &head[..8] != b"!<arch>\n" {
        return None;
    }
    std::str::from_utf8(&head[8 + 16..8 + 28])
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The gzip blob of a base rootfs, compressed once per diff_id into the cache.
fn base_blob(tar: &Path, diff_id: &str) -> anyhow::Result<LayerBlob> {
    #[derive(Serialize, Deserialize)]
    struct Meta {
        digest: Digest,
        size: u64,
        diff_id: Digest,
        uncompressed_size: u64,
    }
    let diff_id: Digest = diff_id
        .parse()
        .with_context(|| format!("the base rootfs `{}` has a bad diff_id", tar.display()))?;
    let dir = crate::project::cache_dir().join("oci-layers");
    let hex = diff_id.hex();
    let blob = dir.join(format!("{hex}.tar.gz"));
    let meta_path = dir.join(format!("{hex}.json"));
    if let Ok(text) = std::fs::read_to_string(&meta_path) {
        if let Ok(m) = serde_json::from_str::<Meta>(&text) {
            if m.diff_id == diff_id && std::fs::metadata(&blob).is_ok_and(|md| md.len() == m.size) {
                return Ok(LayerBlob {
                    path: blob,
                    digest: m.digest,
                    size: m.size,
                    diff_id: m.diff_id,
                    uncompressed_size: m.uncompressed_size,
                });
            }
        }
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("could not create the cache directory `{}`", dir.display()))?;
    // Concurrent builders write identical bytes; each renames its own temp file into place.
    let tmp = tempfile::Builder::new()
        .prefix(".layer-")
        .tempfile_in(&dir)
        .with_context(|| format!("could not create a temporary file in `{}`", dir.display()))?;
    let mut made = compress_tar_file(tar, tmp.path())?;
    if made.diff_id != diff_id {
        anyhow::bail!(
            "the base rootfs `{}` changed after it was made (its sha256 is {}, expected {diff_id}); \
             remove it from the cache and run again",
            tar.display(),
            made.diff_id
        );
    }
    crate::durable::persist(tmp, &blob)?;
    made.path = blob;
    let meta = Meta {
        digest: made.digest,
        size: made.size,
        diff_id: made.diff_id,
        uncompressed_size: made.uncompressed_size,
    };
    crate::durable::write(&meta_path, &serde_json::to_vec(&meta)?)?;
    Ok(made)
}

/// Everything up to the image tar: checks, layers, config, tar. Blocking.
fn write_image(
    paths: &Paths,
    recipe: &Recipe,
    deb: &Path,
    deb_sha256: &Digest,
    base_name: &str,
    opts: &ImageOptions,
    reporter: &Reporter,
) -> anyhow::Result<ImageResult> {
    let spec = spec_of(recipe)?;
    let bases = BaseImages::load(&paths.project)?;
    require_base(&bases, recipe, base_name)?;
    let data = crate::deb::read_data_tree(deb)
        .with_context(|| format!("could not read the files of `{}`", deb.display()))?;
    let contents =
        crate::deb::read_deb(deb).with_context(|| format!("could not read `{}`", deb.display()))?;
    // The checks look at what the image ships: the layer's tree (conffiles, docs and units
    // filtered as the spec says, paths moved through the base's symlinks) over the base.
    let rootfs = bases.rootfs(base_name, reporter)?;
    let listing = BaseListing::read(&rootfs.tar)?;
    let app = layer::onto_base(
        &layer::app_tree(&data, spec, Some(&contents.conffiles)),
        &listing,
    );
    check::check_spec(recipe, spec, base_name, &app, Some(&listing))?;
    let below = Below {
        bases: &bases,
        name: base_name,
        rootfs: &rootfs,
        listing: &listing,
    };
    let deps = dependencies_that_start(recipe, spec, &contents.fields, &below, &app, reporter)?;

    let tag = opts.target.reference.clone();
    let repo_tag = opts.target.tag.clone();
    let dst = opts.target.path.clone();
    let dir = dst.parent().unwrap_or(&paths.dist).to_path_buf();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("could not create `{}`", dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".work-")
        .tempdir_in(&dir)
        .with_context(|| {
            format!(
                "could not create a temporary directory in `{}`",
                dir.display()
            )
        })?;

    let base_layer = base_blob(&rootfs.tar, &rootfs.diff_id)
        .with_context(|| format!("could not compress base `{base_name}`"))?;
    let deps_layer =
        match &deps {
            Some(d) => Some(base_blob(&d.tar, &d.written.diff_id).with_context(|| {
                format!("could not compress the dependency layer of `{repo_tag}`")
            })?),
            None => None,
        };
    let app_mtime = deb_mtime(deb).unwrap_or(opts.mtime);
    let app_layer = compress_tree(&app, app_mtime, &work.path().join("app.tar.gz"))
        .with_context(|| format!("could not write the application layer of `{repo_tag}`"))?;

    let deb_file_name = deb
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| recipe.package.deb_file_name());
    let base_env: Vec<String> = rootfs.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let cfg = config::image_config(&config::ConfigInput {
        spec,
        package: &recipe.package,
        base_name,
        base_env: &base_env,
        deb_file_name: &deb_file_name,
        deb_sha256,
        base_diff_id: &base_layer.diff_id,
        deps: deps_layer
            .as_ref()
            .zip(deps.as_ref())
            .map(|(l, d)| (&l.diff_id, d.set.set.packages.as_slice())),
        app_diff_id: &app_layer.diff_id,
        created: opts.mtime,
        revision: opts.revision.as_deref(),
        source: opts.source.as_deref(),
    });
    let deps_layer_digest = deps_layer.as_ref().map(|l| l.digest);
    let app_layer_digest = app_layer.digest;
    let base_layer_digest = base_layer.digest;
    let layers: Vec<LayerBlob> = std::iter::once(base_layer)
        .chain(deps_layer)
        .chain(std::iter::once(app_layer))
        .collect();
    let written = write_image_tar(
        &dst,
        &ImageParts {
            config: &cfg,
            layers: &layers,
            repo_tag: &repo_tag,
            ref_name: &tag,
            mtime: opts.mtime,
        },
    )?;
    Ok(ImageResult {
        name: spec.name.clone(),
        tag: repo_tag,
        path: dst,
        image_id: written.config_digest,
        manifest_digest: written.manifest_digest,
        base_layer_digest,
        deps_layer_digest,
        dependencies: deps.map(|d| d.set.set.packages).unwrap_or_default(),
        app_layer_digest,
        base: base_name.to_string(),
        size: layers.iter().map(|l| l.uncompressed_size).sum(),
        tar_size: written.tar_size,
        tar_sha256: written.tar_digest,
        loaded: false,
    })
}

/// Proves the entrypoint can start in the image (see [`start`]): a refusal names every
/// missing file and, where the archive index can tell, the package that provides it.
fn prove_start(
    recipe: &Recipe,
    spec: &ImageSpec,
    below: &Below<'_>,
    app: &Tree,
    deps: Option<&deps::DepsLayer>,
    reporter: &Reporter,
) -> anyhow::Result<()> {
    let base_name = below.name;
    let (field, argv) = if spec.entrypoint.is_empty() {
        ("cmd", &spec.cmd)
    } else {
        ("entrypoint", &spec.entrypoint)
    };
    let Some(program) = argv.first() else {
        return Ok(());
    };
    let base_env: Vec<String> = below
        .rootfs
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let env = config::merge_env(&base_env, &spec.env);
    let mut lower = Vec::new();
    if let Some(d) = deps {
        lower.push(&d.listing);
    }
    lower.push(below.listing);
    let view = view::Layers { app, lower };
    let user = run_as(&spec.user, &view);
    let check = start::StartCheck {
        view: &view,
        env: &env,
        user,
    };
    match check.check(program) {
        Ok(started) => {
            if let Some(why) = wrong_machine(&started, &view, &recipe.package.architecture) {
                let at = match spec.line_of(field) {
                    Some(line) => format!("`{}:{line}`: [image] {field}", recipe.file.display()),
                    None => format!("`{}`: [image] {field}", recipe.file.display()),
                };
                return Err(usage(format!(
                    "{at}: `{program}` cannot start in this image: {why}; nothing was written"
                )));
            }
            reporter.verbose(format!(
                "image `{}`: `{program}` starts ({})",
                spec.name,
                started.describe()
            ));
            Ok(())
        }
        Err(missing) => {
            let at = match spec.line_of(field) {
                Some(line) => format!("`{}:{line}`: [image] {field}", recipe.file.display()),
                None => format!("`{}`: [image] {field}", recipe.file.display()),
            };
            // Who provides what is missing: the index confirms a guess when it can be read
            // (never under --locked, which promises no index is read).
            let index = if crate::debian::sets::frozen() {
                None
            } else {
                crate::base::BaseImages::load(&recipe.project)
                    .ok()
                    .and_then(|b| {
                        crate::debian::fetch::block_on(async move {
                            b.locker().index(&Reporter::quiet()).await.ok()
                        })
                        .ok()
                        .flatten()
                    })
            };
            let lines: Vec<String> = missing
                .iter()
                .map(|m| {
                    // A library the image has where ld.so does not look without a cache
                    // (an ld.so.conf.d directory): say where, and how to make it found.
                    if m.reason == start::MissingReason::Library {
                        if let Some(at) = find_elsewhere(&m.what, &view) {
                            return format!(
                                "  - {m}: the image has it at `/{at}`, a directory ld.so \
                                 searches only through /etc/ld.so.cache, which images do not \
                                 have; add `LD_LIBRARY_PATH = \"/{}\"` to [image] env",
                                at.rsplit_once('/').map_or("", |(d, _)| d)
                            );
                        }
                    }
                    match provider::hint(m, index.as_deref()) {
                        Some(h) => format!("  - {m}: {h}"),
                        None => format!("  - {m}"),
                    }
                })
                .collect();
            let fix = if deps.is_none()
                && recipe.package.relations.iter().all(|(k, _)| k != "Depends")
            {
                "add the packages that provide them to `depends` in [package] (their libraries then go into the image's dependency layer), or pick a base that holds them".to_string()
            } else {
                "add the packages that provide them to `depends` in [package], or pick a base that holds them".to_string()
            };
            Err(usage(format!(
                "{at}: `{program}` cannot start on base `{base_name}`; nothing was written:\n{}\n{fix}",
                lines.join("\n")
            )))
        }
    }
}

/// Where in the image a file named `soname` is, if anywhere (first in path order).
fn find_elsewhere(soname: &str, view: &view::Layers<'_>) -> Option<String> {
    let suffix = format!("/{soname}");
    view.app
        .iter()
        .map(|(k, _)| k.to_string())
        .chain(view.lower.iter().flat_map(|l| l.entries.keys().cloned()))
        .find(|k| k.ends_with(&suffix))
}

/// Why the ELF that `started` finally executes cannot run on the image's architecture
/// (the package's; `all` is the machine's own), if it cannot. An amd64 image runs i386
/// programs and an arm64 image 32-bit arm ones, as their kernels do.
fn wrong_machine(
    started: &start::Started,
    view: &dyn start::FsView,
    architecture: &str,
) -> Option<String> {
    let mut s = started;
    while let start::ProgramKind::Script { runs, .. } = &s.kind {
        s = runs;
    }
    let head = view.read(&s.program, 20)?;
    if head.len() < 20 || &head[..4] != b"\x7fELF" {
        return None;
    }
    let machine = if head[5] == 2 {
        u16::from_be_bytes([head[18], head[19]])
    } else {
        u16::from_le_bytes([head[18], head[19]])
    };
    // ELF e_machine values: 3 i386, 40 arm, 62 x86-64, 183 aarch64, 21 ppc64, 22 s390,
    // 243 riscv.
    let image = config::debian_to_oci_arch(architecture);
    let runs: &[u16] = match image {
        "amd64" => &[62, 3],
        "386" => &[3],
        "arm64" => &[183, 40],
        "arm" => &[40],
        "ppc64le" => &[21],
        "s390x" => &[22],
        "riscv64" => &[243],
        _ => return None,
    };
    let name = match machine {
        3 => "i386",
        40 => "arm",
        62 => "x86-64",
        183 => "aarch64",
        21 => "ppc64",
        22 => "s390",
        243 => "riscv",
        _ => "another machine",
    };
    (!runs.contains(&machine)).then(|| {
        format!(
            "`{}` is an ELF for {name} (e_machine {machine}), the image is for {image}",
            s.program
        )
    })
}

/// The `(uid, gid)` an image user (`uid`, `uid:gid`, `name`, `name:group`) runs as, names
/// looked up in the image's /etc/passwd and /etc/group as the runtime does (a uid without a
/// passwd entry runs with gid 0). `None` when a name cannot be found (the user check says
/// so).
fn run_as(user: &str, view: &dyn start::FsView) -> Option<(u32, u32)> {
    let db = |path: &str| {
        view.read(path, 1 << 20)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let passwd = db("/etc/passwd");
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && (f[0] == u || f[2] == u)).then(|| (f[2].parse().ok(), f[3].parse().ok()))
    });
    let uid: u32 = match u.parse() {
        Ok(n) => n,
        Err(_) => entry.and_then(|e| e.0)?,
    };
    let gid: u32 = if g.is_empty() {
        entry.and_then(|e| e.1).unwrap_or(0)
    } else {
        match g.parse() {
            Ok(n) => n,
            Err(_) => db("/etc/group").lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[0] == g)
                    .then(|| f[2].parse().ok())
                    .flatten()
            })?,
        }
    };
    Some((uid, gid))
}

/// Loads an image tar written by [`build_image`] and checks that the engine gives it the
/// expected id under the expected tag.
pub async fn load_image(result: &ImageResult, reporter: &Reporter) -> anyhow::Result<()> {
    let engine = crate::docker::connect().await?;
    crate::docker::load_image_tar(&engine, &result.path, reporter).await?;
    let inspect = engine.inspect_image(&result.tag).await?.ok_or_else(|| {
        crate::error::failed(format!(
            "the engine loaded `{}` but has no image `{}`",
            result.path.display(),
            result.tag
        ))
    })?;
    let id = inspect.id;
    if id.parse::<Digest>().ok() != Some(result.image_id) {
        return Err(crate::error::failed(format!(
            "the engine gave `{}` the id {id}, builder computed {}; the engine changed the image \
             while loading it",
            result.tag, result.image_id
        )));
    }
    Ok(())
}

/// Makes the image of `recipe` from its .deb `deb` (whose digest is `deb_sha256`) on
/// the recipe's base or on `base_override` (a rebase: no build, no container), writes
/// `dist/images/<name>_<version>.tar` atomically and, with `opts.load`, loads it into Docker.
pub async fn build_image(
    paths: &Paths,
    recipe: &Recipe,
    deb: &Path,
    deb_sha256: &Digest,
    base_override: Option<&str>,
    opts: &ImageOptions,
    reporter: &Reporter,
) -> anyhow::Result<ImageResult> {
    let spec = spec_of(recipe)?;
    let base_name = base_override.unwrap_or(&spec.base).to_string();
    let progress = reporter.progress("Image", None);
    progress.message(format!("{} on base `{base_name}`", spec.name));
    let (p, r, d, s, o, rep) = (
        paths.clone(),
        recipe.clone(),
        deb.to_path_buf(),
        *deb_sha256,
        opts.clone(),
        reporter.clone(),
    );
    let mut result =
        tokio::task::spawn_blocking(move || write_image(&p, &r, &d, &s, &base_name, &o, &rep))
            .await
            .context("the image writer stopped unexpectedly")??;
    if opts.load {
        progress.message(format!("loading {}", result.tag));
        load_image(&result, reporter).await?;
        result.loaded = true;
    }
    progress.finish(format!(
        "{} {} ({})",
        result.tag,
        &result.image_id.to_string()[..19],
        crate::oci::inspect::human_size(result.size)
    ));
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project with a `go` builder image used by `tool`, a `static` runtime base and the
    /// recipe `svc` with an [image] table; returns the dir and the loaded `svc`.
    fn project() -> (tempfile::TempDir, Recipe) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, text) in [
            ("base-images/go.toml", "kind = \"debootstrap\"\nsuite = \"bookworm\"\n"),
            ("base-images/bookworm.toml", "kind = \"debootstrap\"\nsuite = \"bookworm\"\n"),
            ("base-images/static.toml", "kind = \"static\"\nfrom = \"bookworm\"\n"),
            ("src/main.go", "package main\n"),
            (
                "recipes/tool.toml",
                "[package]\nname = \"tool\"\nversion = \"1.0\"\nmaintainer = \"A <a@example.com>\"\n\
                 description = \"t\"\n[build]\nbuilder = \"go\"\nsource = \"src\"\ncommand = \"true\"\n",
            ),
            (
                "recipes/svc.toml",
                "[package]\nname = \"svc\"\nversion = \"1.0\"\nmaintainer = \"A <a@example.com>\"\n\
                 description = \"s\"\n\n[image]\nbase = \"static\"\nentrypoint = [\"/usr/bin/svc\"]\n\
                 user = \"alice\"\n",
            ),
        ] {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let recipe = crate::recipe::load_file(&root.join("recipes/svc.toml"), root)
            .unwrap_or_else(|d| panic!("{d}"));
        (dir, recipe)
    }

    #[test]
    fn a_builder_image_is_refused_as_a_rebase_target() {
        let (dir, recipe) = project();
        let bases = BaseImages::load(dir.path()).unwrap();
        let err = require_base(&bases, &recipe, "go").unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("`go` is a builder image (the [build] builder of `tool.toml`)")
                && msg.contains("must not contain build tools")
                && msg.contains("use a runtime base such as `bookworm`, `static`"),
            "{msg}"
        );
        assert_eq!(crate::error::exit_code(&err), crate::error::EXIT_USAGE);
        require_base(&bases, &recipe, "static").unwrap();
    }

    #[test]
    fn package_time_image_errors_name_the_line_of_the_field() {
        let (_dir, recipe) = project();
        let spec = recipe.image.as_ref().unwrap();
        let base = BaseListing {
            passwd: "root:x:0:0::/root:/bin/sh\n".into(),
            ..Default::default()
        };
        let err = check::check_spec(&recipe, spec, "static", &Tree::new(), Some(&base))
            .unwrap_err()
            .to_string();
        assert!(err.contains("recipes/svc.toml:10`: [image] user"), "{err}");
        let mut spec = spec.clone();
        spec.user = "65532:65532".into();
        let err = check::check_spec(&recipe, &spec, "static", &Tree::new(), Some(&base))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("recipes/svc.toml:9`: [image] entrypoint"),
            "{err}"
        );
    }
}
