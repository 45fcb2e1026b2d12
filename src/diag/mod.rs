//! Compiler-style diagnostics for every config file builder reads (recipes, `stack.toml`,
//! `base-images/*.toml`, `promote.toml`, `builder.lock`, package sources): each problem names
//! the file, line and column, shows the offending line with a caret, and says how to fix it.
//!
//! - this file: [`Diagnostic`] (one problem), [`Diagnostics`] (all of them, the error type
//!   config readers return; exit code 2), [`LineIndex`] (byte offset → line);
//! - `collect`: [`Collector`], what validators push problems into, with the usual checks
//!   (one of a list, did-you-mean) so every reader words them the same way;
//! - `parse`: [`read_text`] and [`parse_toml`], the one way a config file is read and parsed
//!   (all syntax errors, every unknown key with a suggestion);
//! - `suggest`: [`did_you_mean`];
//! - `render`: `file:line:col` rendering with the source line, caret, label and help, with
//!   control characters escaped.
//!
//! Must not: know any config format's fields, or depend on the modules that use it (the
//! error module reads [`Diagnostics`] to choose the exit code).

mod collect;
mod parse;
mod render;
mod suggest;
#[cfg(test)]
mod tests;

use std::ops::Range;
use std::path::{Path, PathBuf};

pub(crate) use collect::Collector;
pub(crate) use parse::{parse_toml, read_text};
pub(crate) use render::escape_controls;
pub(crate) use suggest::{did_you_mean, suggestion};

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line and column; 0 when the problem concerns the whole file.
    pub line: usize,
    pub col: usize,
    pub message: String,
    /// Text under the caret ("did you mean `name`?").
    pub label: Option<String>,
    pub help: Option<String>,
    snippet: Option<(String, usize)>, // (source line, caret width)
}

impl Diagnostic {
    /// A problem at a byte span of `source`. Counts lines from the start: for many
    /// diagnostics in one long file use [`Diagnostic::at_indexed`].
    pub fn at(file: &Path, source: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        Self::at_indexed(file, source, &LineIndex::new(source), span, message)
    }

    /// A problem at a byte span of `source`, whose line starts `lines` holds: the cost is
    /// the length of one line, not of the file before it.
    pub fn at_indexed(
        file: &Path,
        source: &str,
        lines: &LineIndex,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        let mut start = span.start.min(source.len());
        while !source.is_char_boundary(start) {
            start -= 1;
        }
        let (line, line_start) = lines.line_of(start);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let col = source[line_start..start].chars().count() + 1;
        let text = source[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        let mut end = span.end.clamp(start, line_end);
        while !source.is_char_boundary(end) {
            end -= 1;
        }
        let width = source[start..end].chars().count().max(1);
        Diagnostic {
            file: file.to_path_buf(),
            line,
            col,
            message: message.into(),
            label: None,
            help: None,
            snippet: Some((text, width)),
        }
    }

    /// A problem with the file as a whole (missing, unreadable).
    pub fn in_file(file: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line: 0,
            col: 0,
            message: message.into(),
            label: None,
            help: None,
            snippet: None,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Where each line of a text starts, to turn byte offsets into line numbers in O(log n).
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// The 1-based line holding byte `offset`, and the offset where that line starts.
    pub fn line_of(&self, offset: usize) -> (usize, usize) {
        let i = self.starts.partition_point(|&s| s <= offset).max(1) - 1;
        (i + 1, self.starts[i])
    }
}

/// All diagnostics found in one or more files. Its `Display` renders every one of them.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl std::error::Error for Diagnostics {}

impl Diagnostics {
    pub fn new(items: Vec<Diagnostic>) -> Self {
        Diagnostics { items }
    }

    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    /// `Ok(())` when there is nothing to report.
    pub fn into_result(self) -> Result<(), Diagnostics> {
        if self.items.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}
