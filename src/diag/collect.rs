//! [`Collector`]: what a config validator reports into. It holds the file, its text and the
//! line index, so each problem costs one line of code and every reader words the common
//! checks (a value from a list, a reference to a name) the same way.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::{escape_controls, suggestion, Diagnostic, Diagnostics, LineIndex};

/// Every problem found in one file, in the order found.
pub(crate) struct Collector<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    /// Line starts of `text`: positions cost O(log n), so validation stays linear.
    pub lines: LineIndex,
    pub diags: Vec<Diagnostic>,
}

impl<'a> Collector<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Collector {
            file,
            text,
            lines: LineIndex::new(text),
            diags: Vec::new(),
        }
    }

    /// How many problems so far.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.diags.len()
    }

    /// A diagnostic at `span` of this file, not yet reported: give it to [`Self::push`].
    pub(crate) fn at(&self, span: Range<usize>, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::at_indexed(self.file, self.text, &self.lines, span, msg)
    }

    /// A problem at `span`; the returned diagnostic takes a label or help.
    pub(crate) fn err(&mut self, span: Range<usize>, msg: impl Into<String>) -> &mut Diagnostic {
        let d = self.at(span, msg);
        self.push(d);
        self.diags.last_mut().expect("just pushed")
    }

    /// A problem at `span` with how to fix it.
    pub(crate) fn err_help(
        &mut self,
        span: Range<usize>,
        msg: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.err(span, msg).help = Some(help.into());
    }

    /// A problem with the file as a whole, or one without a position.
    pub(crate) fn in_file(&mut self, msg: impl Into<String>) -> &mut Diagnostic {
        self.push(Diagnostic::in_file(self.file, msg));
        self.diags.last_mut().expect("just pushed")
    }

    pub(crate) fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Reports `result`'s message at `value`'s position.
    pub(crate) fn check<T>(&mut self, value: &Spanned<T>, result: Result<(), String>) {
        if let Err(msg) = result {
            self.err(value.span(), msg);
        }
    }

    /// Reports `v` unless it is one of `allowed`: "unknown {what} `v`", did-you-mean under
    /// the caret, the valid values as help. Returns whether `v` is allowed.
    pub(crate) fn one_of(&mut self, v: &Spanned<String>, allowed: &[&str], what: &str) -> bool {
        let value = v.get_ref();
        if allowed.contains(&value.as_str()) {
            return true;
        }
        let d = self.err(
            v.span(),
            format!("unknown {what} `{}`", escape_controls(value)),
        );
        d.label = suggestion(value, allowed);
        d.help = Some(format!("use one of: {}", allowed.join(", ")));
        false
    }

    /// Everything reported, or `value` when nothing was.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.diags.is_empty() {
            Ok(value)
        } else {
            Err(Diagnostics::new(self.diags))
        }
    }

    pub(crate) fn into_diagnostics(self) -> Diagnostics {
        Diagnostics::new(self.diags)
    }
}
