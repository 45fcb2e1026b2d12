//! The one place that writes to the terminal. Operations report through a [`Reporter`]:
//! progress bars and colours on a TTY, plain timestamped lines in CI (`CI=true` or no TTY),
//! and machine-readable results on stdout with `--json`. Human messages go to stderr so that
//! stdout stays clean for results.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How human-facing output looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Interactive terminal: progress bars, spinners.
    Tty,
    /// CI or a pipe: one plain line per event, each with a UTC timestamp.
    Plain,
}

/// Verbosity: -q gives `Quiet`, -v gives `Verbose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

#[derive(Clone)]
pub struct Reporter {
    inner: Arc<Inner>,
}

struct Inner {
    style: Style,
    verbosity: Verbosity,
    json: bool,
    multi: Option<MultiProgress>,
    start: Instant,
    // Serialises plain lines from concurrent tasks so they never interleave mid-line; holds
    // the first error writing results to stdout.
    lock: Mutex<Option<std::io::Error>>,
    // With [`Reporter::capture`]: every line (messages, errors, results) kept here instead
    // of written, for tests of library code that assert on what a user would read.
    captured: Option<Mutex<Vec<Captured>>>,
}

/// A line a capturing reporter kept, and where a real one would have written it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Captured {
    /// A human message for stderr, as a user would read it (a warning with its `warning: `
    /// prefix, a status line padded), with the call that made it.
    Message(Level, String),
    /// A result for stdout.
    Output(String),
}

/// Which [`Reporter`] call made a human message: what tests ask for when they check that a
/// refusal was an error, or a repair a warning, not just that the words appeared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// [`Reporter::status`], and the start and finish lines of [`Reporter::progress`].
    Status,
    Info,
    /// [`Reporter::verbose`], and [`Progress::message`] in plain mode.
    Verbose,
    Warning,
    /// [`Reporter::log`]: a child process's line.
    Log,
    Error,
}

impl Reporter {
    pub fn new(style: Style, verbosity: Verbosity, json: bool) -> Self {
        let multi = (style == Style::Tty).then(|| {
            let m = MultiProgress::new();
            m.set_draw_target(ProgressDrawTarget::stderr());
            m
        });
        Reporter {
            inner: Arc::new(Inner {
                style,
                verbosity,
                json,
                multi,
                start: Instant::now(),
                lock: Mutex::new(None),
                captured: None,
            }),
        }
    }

    /// A reporter that writes nothing and keeps every line at `verbosity` instead, in order;
    /// read them with [`Reporter::captured`]. Tests of library code use it to assert on what
    /// a user would read, without running the binary.
    pub fn capture(verbosity: Verbosity) -> Self {
        Reporter {
            inner: Arc::new(Inner {
                style: Style::Plain,
                verbosity,
                json: false,
                multi: None,
                start: Instant::now(),
                lock: Mutex::new(None),
                captured: Some(Mutex::new(Vec::new())),
            }),
        }
    }

    /// What a [`Reporter::capture`] reporter kept so far (empty for any other reporter).
    pub fn captured(&self) -> Vec<Captured> {
        self.inner
            .captured
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    /// The captured human messages joined by newlines, for `contains` checks.
    pub fn captured_messages(&self) -> String {
        self.captured()
            .into_iter()
            .filter_map(|c| match c {
                Captured::Message(_, m) => Some(m),
                Captured::Output(_) => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The captured human messages `level` made, in order, as [`Reporter::captured`] holds
    /// them.
    pub fn captured_at(&self, level: Level) -> Vec<String> {
        self.captured()
            .into_iter()
            .filter_map(|c| match c {
                Captured::Message(l, m) if l == level => Some(m),
                _ => None,
            })
            .collect()
    }

    /// The captured results (what a real reporter writes to stdout), in order.
    pub fn captured_output(&self) -> Vec<String> {
        self.captured()
            .into_iter()
            .filter_map(|c| match c {
                Captured::Output(o) => Some(o),
                Captured::Message(..) => None,
            })
            .collect()
    }

    /// Keeps `line` if this reporter captures; true when it did (nothing is written then).
    fn keep(&self, line: impl FnOnce() -> Captured) -> bool {
        match &self.inner.captured {
            Some(c) => {
                c.lock().unwrap_or_else(|e| e.into_inner()).push(line());
                true
            }
            None => false,
        }
    }

    /// Picks the style from the environment: plain when `CI` is set to a true value or
    /// stderr is not a terminal.
    pub fn detect(force_plain: bool, verbosity: Verbosity, json: bool) -> Self {
        let ci = std::env::var("CI")
            .map(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
            .unwrap_or(false);
        let style = if force_plain || ci || !std::io::stderr().is_terminal() {
            Style::Plain
        } else {
            Style::Tty
        };
        Self::new(style, verbosity, json)
    }

    /// A reporter that prints nothing but errors; for tests and library callers.
    pub fn quiet() -> Self {
        Self::new(Style::Plain, Verbosity::Quiet, false)
    }

    pub fn style(&self) -> Style {
        self.inner.style
    }

    pub fn is_json(&self) -> bool {
        self.inner.json
    }

    pub fn verbosity(&self) -> Verbosity {
        self.inner.verbosity
    }

    fn line(&self, level: Level, text: &str) {
        if self.keep(|| Captured::Message(level, text.to_string())) {
            return;
        }
        let _guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        match (&self.inner.multi, self.inner.style) {
            (Some(multi), _) => {
                // println on MultiProgress keeps bars below the text.
                if multi.println(text).is_err() {
                    stderr_line(text);
                }
            }
            (None, Style::Plain) => {
                let stamp = crate::timefmt::rfc3339(SystemTime::now());
                let mut err = std::io::stderr().lock();
                for l in text.lines() {
                    let _ = writeln!(err, "{stamp} {l}");
                }
            }
            (None, Style::Tty) => stderr_line(text),
        }
    }

    /// A cargo-like status line: `   Packaging backend 1.4.0`.
    pub fn status(&self, verb: &str, msg: impl Display) {
        if self.inner.verbosity >= Verbosity::Normal {
            self.line(Level::Status, &format!("{verb:>12} {msg}"));
        }
    }

    /// An informational line at normal verbosity.
    pub fn info(&self, msg: impl Display) {
        if self.inner.verbosity >= Verbosity::Normal {
            self.line(Level::Info, &msg.to_string());
        }
    }

    /// Detail shown with `-v`.
    pub fn verbose(&self, msg: impl Display) {
        if self.inner.verbosity >= Verbosity::Verbose {
            self.line(Level::Verbose, &msg.to_string());
        }
    }

    /// A warning, shown unless `-q`.
    pub fn warn(&self, msg: impl Display) {
        if self.inner.verbosity >= Verbosity::Normal {
            self.line(Level::Warning, &format!("warning: {msg}"));
        }
    }

    /// A line of a child process's log (build output, container logs), prefixed with its source.
    pub fn log(&self, prefix: &str, line: &str) {
        if self.inner.verbosity >= Verbosity::Normal {
            self.line(Level::Log, &format!("{prefix:>12} | {line}"));
        }
    }

    /// Prints an error with its chain of causes. Always shown, even with `-q`.
    pub fn error(&self, err: &anyhow::Error) {
        let mut text = String::new();
        let mut chain = err.chain();
        if let Some(first) = chain.next() {
            let first = first.to_string();
            // Diagnostics already carry their own `error:` prefixes.
            if first.starts_with("error") {
                text.push_str(&first);
            } else {
                text.push_str("error: ");
                text.push_str(&first);
            }
        }
        for cause in chain {
            text.push_str("\n  caused by: ");
            text.push_str(&cause.to_string());
        }
        if self.keep(|| Captured::Message(Level::Error, text.clone())) {
            return;
        }
        let _guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(multi) = &self.inner.multi {
            let _ = multi.clear();
        }
        stderr_line(&text);
    }

    /// Writes a result to stdout (tables, paths). Not affected by `-q`. A failed write (a full
    /// disk behind `> file`) is kept for [`Reporter::take_output_error`], so the command
    /// still ends with an error instead of exit 0 and a short file.
    pub fn output(&self, text: impl Display) {
        if self.keep(|| Captured::Output(text.to_string())) {
            return;
        }
        let mut failed = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
            // A reader that stopped early (`| head`) is not a failure of ours.
            if e.kind() != std::io::ErrorKind::BrokenPipe && failed.is_none() {
                *failed = Some(e);
            }
        }
    }

    /// The first error writing results to stdout, if any (a closed pipe is not one).
    pub fn take_output_error(&self) -> Option<std::io::Error> {
        self.inner
            .lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Writes a JSON document to stdout (`--json`).
    pub fn json<T: serde::Serialize + ?Sized>(&self, value: &T) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(value)?;
        self.output(text);
        Ok(())
    }

    /// Starts a progress indicator: a bar (with `total`) or spinner on a TTY; a start line and
    /// a finish line in plain mode.
    pub fn progress(&self, label: impl Into<String>, total: Option<u64>) -> Progress {
        let label = label.into();
        let bar = match (&self.inner.multi, self.inner.verbosity >= Verbosity::Normal) {
            (Some(multi), true) => {
                let bar = match total {
                    Some(n) => {
                        let b = ProgressBar::new(n);
                        b.set_style(
                            ProgressStyle::with_template(
                                "{prefix:>12.cyan.bold} [{bar:30}] {pos}/{len} {msg}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                        );
                        b
                    }
                    None => {
                        let b = ProgressBar::new_spinner();
                        b.set_style(
                            ProgressStyle::with_template("{prefix:>12.cyan.bold} {spinner} {msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        b.enable_steady_tick(Duration::from_millis(120));
                        b
                    }
                };
                bar.set_prefix(label.clone());
                Some(multi.add(bar))
            }
            _ => {
                self.status(&label, "started");
                None
            }
        };
        Progress {
            reporter: self.clone(),
            label,
            bar,
            started: Instant::now(),
        }
    }

    /// Time since the reporter was made.
    pub fn elapsed(&self) -> Duration {
        self.inner.start.elapsed()
    }
}

/// A running progress indicator; see [`Reporter::progress`].
pub struct Progress {
    reporter: Reporter,
    label: String,
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Progress {
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub fn set_position(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(n);
        }
    }

    /// Updates the message beside the bar; in plain mode only shown with `-v`.
    pub fn message(&self, msg: impl Display) {
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None => self.reporter.verbose(format!("{:>12} {msg}", self.label)),
        }
    }

    /// Ends the indicator with a final status line.
    pub fn finish(self, msg: impl Display) {
        let secs = self.started.elapsed().as_secs_f64();
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        self.reporter
            .status(&self.label, format!("{msg} ({secs:.1}s)"));
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            if !b.is_finished() {
                b.finish_and_clear();
            }
        }
    }
}

/// One line to stderr. A closed stderr (`2>&-`, a reader gone) is ignored: `eprintln!`
/// would panic there and turn any exit code into 101.
fn stderr_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capturing_reporter_keeps_lines_in_order_at_its_verbosity() {
        let r = Reporter::capture(Verbosity::Normal);
        r.status("Packaging", "demo 1.0");
        r.verbose("not at normal verbosity");
        r.warn("disk almost full");
        r.output("dist/debs/demo_1.0_amd64.deb");
        r.error(&anyhow::anyhow!("inner").context("outer"));
        let p = r.progress("Loading", None);
        p.finish("done");
        let lines = r.captured();
        assert_eq!(
            lines[..5],
            [
                Captured::Message(Level::Status, "   Packaging demo 1.0".into()),
                Captured::Message(Level::Warning, "warning: disk almost full".into()),
                Captured::Output("dist/debs/demo_1.0_amd64.deb".into()),
                Captured::Message(Level::Error, "error: outer\n  caused by: inner".into()),
                Captured::Message(Level::Status, "     Loading started".into()),
            ]
        );
        assert_eq!(lines.len(), 6, "{lines:?}");
        assert!(
            matches!(&lines[5], Captured::Message(Level::Status, m) if m.starts_with("     Loading done (")),
            "{lines:?}"
        );
        assert!(!r.captured_messages().contains("dist/debs"));
        assert_eq!(r.captured_at(Level::Warning), ["warning: disk almost full"]);
        assert_eq!(r.captured_output(), ["dist/debs/demo_1.0_amd64.deb"]);
        assert!(r.captured_at(Level::Verbose).is_empty());
        assert!(Reporter::quiet().captured().is_empty());
    }
}
