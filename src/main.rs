//! Thin entry point: parse the command line, run one tokio runtime, map the error to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = builder::cli::Cli::parse();
    let reporter = cli.reporter();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            reporter.error(&anyhow::Error::new(err).context("could not start the async runtime"));
            return ExitCode::from(builder::error::EXIT_ENVIRONMENT);
        }
    };
    let result = runtime.block_on(builder::cli::run(cli, reporter.clone()));
    // Do not wait for stray blocking tasks (e.g. a stdin reader) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            reporter.error(&err);
            ExitCode::from(builder::error::exit_code(&err))
        }
    }
}
