//! Error kinds that decide the process exit code. Operations use `anyhow` with context;
//! they wrap the root cause in [`Failure`] where the kind matters to the caller (CI reads exit codes).
//!
//! Exit codes (documented in README):
//! - 0: success
//! - 1: a stage failed (build failed, smoke gate failed, promotion refused)
//! - 2: recipe or usage error (bad TOML, bad flag, unknown recipe)
//! - 3: environment error (Docker unreachable, disk full, missing tool)
//! - 130: interrupted (Ctrl-C or SIGTERM), after cleaning up, as a shell reports it

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_ENVIRONMENT: u8 = 3;
pub const EXIT_INTERRUPTED: u8 = 130;

/// An error whose kind decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The user asked for something invalid: fix the recipe or the command line.
    #[error("{0}")]
    Usage(String),
    /// The machine is not ready: no Docker engine, no disk, a missing tool.
    #[error("{0}")]
    Environment(String),
    /// A stage ran and failed: a build, a gate, a check.
    #[error("{0}")]
    Failed(String),
    /// Stopped by Ctrl-C or SIGTERM (after cleanup): CI must not mistake it for a failure.
    #[error("{0}")]
    Interrupted(String),
}

/// Shorthand for a usage error (exit code 2).
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    Failure::Usage(msg.into()).into()
}

/// Shorthand for an environment error (exit code 3).
pub fn environment(msg: impl Into<String>) -> anyhow::Error {
    Failure::Environment(msg.into()).into()
}

/// Shorthand for a failed stage (exit code 1).
pub fn failed(msg: impl Into<String>) -> anyhow::Error {
    Failure::Failed(msg.into()).into()
}

/// Whether the first classified error in `err`'s chain is a failed stage ([`failed`]): the
/// work ran and failed on its own (a command's exit code, a timeout), which running it again
/// elsewhere would not change; not the engine or the machine.
pub fn is_own_failure(err: &anyhow::Error) -> bool {
    let first = err
        .downcast_ref::<Failure>()
        .or_else(|| err.chain().find_map(|c| c.downcast_ref::<Failure>()));
    matches!(first, Some(Failure::Failed(_)))
}

/// Maps an error chain to the exit code: the first classified error in the chain wins;
/// config-file diagnostics are usage errors; anything else is a failed stage.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    // A `Failure` given as context (`e.context(Failure::Usage(..))`) is found only this way:
    // `chain()` yields context layers as wrappers that do not downcast to it.
    let code = |f: &Failure| match f {
        Failure::Usage(_) => EXIT_USAGE,
        Failure::Environment(_) => EXIT_ENVIRONMENT,
        Failure::Failed(_) => EXIT_FAILED,
        Failure::Interrupted(_) => EXIT_INTERRUPTED,
    };
    if let Some(f) = err.downcast_ref::<Failure>() {
        return code(f);
    }
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return code(f);
        }
        if cause.downcast_ref::<crate::diag::Diagnostics>().is_some() {
            return EXIT_USAGE;
        }
        if cause.is::<crate::docker::Silent>() {
            return EXIT_ENVIRONMENT;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            // Only `crate::interrupt::check` surfaces this kind; I/O calls retry it.
            if io.kind() == std::io::ErrorKind::Interrupted {
                return EXIT_INTERRUPTED;
            }
            // A `Failure` inside an I/O error (`crate::interrupt::check_unretried`).
            if let Some(f) = io.get_ref().and_then(|e| e.downcast_ref::<Failure>()) {
                return code(f);
            }
            // The machine, not the input: a full disk, a read-only mount, a directory this user
            // may not write.
            if matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::QuotaExceeded
                    | std::io::ErrorKind::ReadOnlyFilesystem
                    | std::io::ErrorKind::PermissionDenied
            ) {
                return EXIT_ENVIRONMENT;
            }
        }
    }
    EXIT_FAILED
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn own_failures_are_failed_stages_only() {
        assert!(is_own_failure(&failed("`make` exited with 2")));
        assert!(is_own_failure(
            &failed("timed out after 60s").context("the build of `x`")
        ));
        // An unclassified error (the engine's connection dropped) is not one.
        let dropped = anyhow::Error::new(Error::from(ErrorKind::ConnectionReset));
        assert!(!is_own_failure(
            &dropped.context("could not exec in the build container")
        ));
        assert!(!is_own_failure(&environment("no engine")));
        assert!(!is_own_failure(&usage("bad recipe")));
    }

    #[test]
    fn the_machine_s_io_errors_are_environment_errors() {
        for kind in [
            ErrorKind::StorageFull,
            ErrorKind::QuotaExceeded,
            ErrorKind::ReadOnlyFilesystem,
            ErrorKind::PermissionDenied,
        ] {
            let err = anyhow::Error::new(Error::from(kind)).context("could not write `dist/x`");
            assert_eq!(exit_code(&err), EXIT_ENVIRONMENT, "{kind:?}");
        }
        let err = anyhow::Error::new(Error::from(ErrorKind::InvalidData)).context("bad");
        assert_eq!(exit_code(&err), EXIT_FAILED);
        let err = anyhow::Error::new(Error::new(ErrorKind::Interrupted, "interrupted"))
            .context("could not write the package");
        assert_eq!(exit_code(&err), EXIT_INTERRUPTED);
        let inside = Error::other(Failure::Interrupted("interrupted".into()));
        let err = anyhow::Error::from(inside).context("could not write `x.deb`");
        assert_eq!(exit_code(&err), EXIT_INTERRUPTED);
        let err = anyhow::Error::new(Error::from(ErrorKind::PermissionDenied))
            .context(Failure::Usage("`--dist` is a file".into()));
        assert_eq!(
            exit_code(&err),
            EXIT_USAGE,
            "the first classified error wins"
        );
    }
}
