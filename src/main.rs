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
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            reporter.error(&err);
            builder::error::exit_code(&err)
        }
    };
    match reporter.take_output_error() {
        Some(e) => {
            reporter.error(&anyhow::Error::new(e).context(
                "could not write the results to stdout: check the disk or file it is redirected to",
            ));
            // The command's own failure says more; otherwise this is the environment's.
            ExitCode::from(if code == builder::error::EXIT_OK {
                builder::error::EXIT_ENVIRONMENT
            } else {
                code
            })
        }
        None => ExitCode::from(code),
    }
}
