//! A process-wide "stop" flag for synchronous work. The signal watcher
//! ([`crate::docker::cancel_on_signals`]) sets it on Ctrl-C or SIGTERM; long loops that
//! cannot be cancelled by dropping a future (writing a .deb or a layer) check it and return
//! an error, so their temp files are dropped (removed) on the way out instead of being left
//! half-written when the process ends.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Asks every checking loop to stop.
pub(crate) fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Whether a stop was asked for.
pub(crate) fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// An `Interrupted` I/O error once a stop was asked for.
pub(crate) fn check() -> std::io::Result<()> {
    if requested() {
        Err(std::io::Error::new(
            std::io::ErrorKind::Interrupted,
            "interrupted (Ctrl-C or SIGTERM)",
        ))
    } else {
        Ok(())
    }
}

/// Like [`check`], for code under `write_all` or `read_exact`, which retry an `Interrupted`
/// error: the stop is an `Other` error carrying [`crate::error::Failure::Interrupted`], which
/// [`crate::error::exit_code`] maps to 130 all the same.
pub(crate) fn check_unretried() -> std::io::Result<()> {
    if requested() {
        Err(std::io::Error::other(crate::error::Failure::Interrupted(
            "interrupted (Ctrl-C or SIGTERM)".into(),
        )))
    } else {
        Ok(())
    }
}
