//! Command-line interface: clap types and the bridge from each subcommand to the library.
//! One file per subcommand; each converts its arguments into library options and calls one
//! operation. No logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::report::{Reporter, Verbosity};

mod base;
mod build;
mod gc;
mod inspect;
mod key;
mod load;
mod lock;
mod package;
mod pipeline;
mod plan;
mod promote;
mod repo;
mod smoke;
mod validate;

/// Build services in containers, package them as .deb and minimal OCI images,
/// smoke-test them and promote exactly what passed.
#[derive(Debug, Parser)]
#[command(name = "builder", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Project root: recipe `from` paths resolve against it
    #[arg(long, global = true, value_name = "DIR", default_value = ".")]
    pub project: PathBuf,

    /// Directory with recipe files [default: <project>/recipes]
    #[arg(long, global = true, value_name = "DIR")]
    pub recipes: Option<PathBuf>,

    /// Output directory [default: <project>/dist]
    #[arg(long, global = true, value_name = "DIR")]
    pub dist: Option<PathBuf>,

    /// Machine-readable output on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// Never change builder.lock: a package set that is not locked, or whose recipe or base
    /// changed, is an error (for CI, like `cargo --locked`)
    #[arg(long, global = true)]
    pub locked: bool,

    /// More output (-v shows details)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// No progress or status lines on stderr: only errors there, and the results on stdout
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check recipes and report every error with file:line:column
    Validate(validate::ValidateArgs),
    /// Show what each recipe will produce, without running anything
    Plan(plan::PlanArgs),
    /// Compile recipes in builder containers into dist/build/<name>/
    Build(build::BuildArgs),
    /// Write .deb packages (and images) for recipes into dist/
    Package(package::PackageArgs),
    /// Print the control fields and file list of a .deb, or the manifest and layers of an image tar
    Inspect(inspect::InspectArgs),
    /// Send constant-rate HTTP load to local URLs and report latency and errors
    Load(load::LoadArgs),
    /// Lock the Debian packages of every package-set base and image (builder.lock)
    Lock(lock::LockArgs),
    /// Make, list and remove base images (base-images/*.toml)
    Base(base::BaseArgs),
    /// Remove containers, networks, volumes and dangling images that crashed runs left
    Gc(gc::GcArgs),
    /// Deploy the packaged images behind HAProxy, load them at a constant rate and gate on the thresholds
    Smoke(smoke::SmokeArgs),
    /// Make a signing key for environment repositories
    Key(key::KeyArgs),
    /// List, prune and roll back environment repositories (dist/repos/<env>)
    Repo(repo::RepoArgs),
    /// Promote what passed the smoke test into an environment (dev → staging → prod)
    Promote(promote::PromoteArgs),
    /// Run validate → build → package → smoke → promote (to dev) with progress bars
    Pipeline(pipeline::PipelineArgs),
    /// The CI artifact stage: the pipeline, non-interactive, leaving dist/ with artifacts,
    /// SHA256SUMS, manifest.json, reports and junit.xml; exit 0 pass, 1 failed, 2 usage, 3 environment
    Ci(pipeline::PipelineArgs),
}

impl Cli {
    /// The reporter this invocation's flags and environment ask for.
    pub fn reporter(&self) -> Reporter {
        let verbosity = if self.global.quiet {
            Verbosity::Quiet
        } else if self.global.verbose > 0 {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        };
        // `ci` never draws progress bars, terminal or not.
        let plain = matches!(self.command, Command::Ci(_));
        Reporter::detect(plain, verbosity, self.global.json)
    }
}

pub use crate::project::Paths;

impl GlobalArgs {
    pub fn paths(&self) -> Paths {
        let mut paths = Paths::new(self.project.clone());
        if let Some(r) = &self.recipes {
            paths.recipes = r.clone();
        }
        if let Some(d) = &self.dist {
            paths.dist = d.clone();
        }
        paths
    }
}

/// The whole process: parse the command line, run one tokio runtime, map the error to an
/// exit code. It lives in the library, not in `main.rs`, so that the runtime's `block_on`
/// and every async function it polls are compiled once, here. When `main.rs` called
/// `block_on(cli::run(..))` itself, a release build compiled that code a second time in
/// the binary: 60 of builder's own 198 CPU-seconds, against 173 in all now.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let reporter = cli.reporter();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            reporter.error(&anyhow::Error::new(err).context("could not start the async runtime"));
            return ExitCode::from(crate::error::EXIT_ENVIRONMENT);
        }
    };
    let result = runtime.block_on(run(cli, reporter.clone()));
    // Do not wait for stray blocking tasks (e.g. a stdin reader) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            reporter.error(&err);
            crate::error::exit_code(&err)
        }
    };
    match reporter.take_output_error() {
        Some(e) => {
            reporter.error(&anyhow::Error::new(e).context(
                "could not write the results to stdout: check the disk or file it is redirected to",
            ));
            // The command's own failure says more; otherwise this is the environment's.
            ExitCode::from(if code == crate::error::EXIT_OK {
                crate::error::EXIT_ENVIRONMENT
            } else {
                code
            })
        }
        None => ExitCode::from(code),
    }
}

/// Runs the parsed command; returns the exit code for a run that completed.
pub async fn run(cli: Cli, reporter: Reporter) -> anyhow::Result<u8> {
    let paths = cli.global.paths();
    crate::debian::sets::set_frozen(cli.global.locked);
    match cli.command {
        Command::Validate(args) => validate::run(args, &paths, &reporter),
        Command::Plan(args) => plan::run(args, &paths, &reporter).await,
        Command::Build(args) => build::run(args, &paths, &reporter).await,
        Command::Package(args) => package::run(args, &paths, &reporter).await,
        Command::Inspect(args) => inspect::run(args, &reporter),
        Command::Load(args) => load::run(args, &reporter).await,
        Command::Base(args) => base::run(args, &paths, &reporter).await,
        Command::Lock(args) => lock::run(args, &paths, &reporter).await,
        Command::Gc(args) => gc::run(args, &paths, &reporter).await,
        Command::Smoke(args) => smoke::run(args, &paths, &reporter).await,
        Command::Key(args) => key::run(args, &paths, &reporter),
        Command::Repo(args) => repo::run(args, &paths, &reporter),
        Command::Promote(args) => promote::run(args, &paths, &reporter).await,
        Command::Pipeline(args) | Command::Ci(args) => pipeline::run(args, &paths, &reporter).await,
    }
}
