//! Rendering: `error: message`, `--> file:line:col`, the source line with a caret under the
//! span and its label, then `= help: ...`. Text from a config file never reaches the terminal
//! as control characters.

use std::fmt;

use super::{Diagnostic, Diagnostics};

/// Whether a character must not reach a terminal as itself: C0/C1 controls (escape
/// sequences start with ESC or CSI) and the bidirectional overrides that reorder what a
/// reader sees.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `c` as a diagnostic shows it: `\u{1b}` (or `\n`, `\t`) for a hidden character.
fn shown(c: char) -> String {
    if c.is_control() {
        c.escape_default().to_string()
    } else if hidden(c) {
        c.escape_unicode().to_string()
    } else {
        c.to_string()
    }
}

/// `s` with every control character and bidirectional override escaped, so that text from
/// a recipe (a `to` holding a terminal escape sequence, a name with a newline) can neither
/// drive the terminal nor forge lines of the report. Every diagnostic goes through here.
pub(crate) fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(hidden) {
        std::borrow::Cow::Owned(s.chars().map(shown).collect())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display().to_string();
        let file = escape_controls(&file);
        writeln!(f, "error: {}", escape_controls(&self.message))?;
        if self.line == 0 {
            writeln!(f, "  --> {file}")?;
        } else {
            writeln!(f, "  --> {file}:{}:{}", self.line, self.col)?;
        }
        if let Some((text, width)) = &self.snippet {
            let num = self.line.to_string();
            let pad = " ".repeat(num.len());
            // Tabs stay (the caret line repeats them); other hidden characters are shown
            // escaped, and the caret moves by as many columns as their escapes take.
            let show = |c: char| {
                if c == '\t' {
                    "\t".to_string()
                } else {
                    shown(c)
                }
            };
            let line: String = text.chars().map(show).collect();
            writeln!(f, "{pad} |")?;
            writeln!(f, "{num} | {line}")?;
            let before = self.col.saturating_sub(1);
            let indent: String = text
                .chars()
                .take(before)
                .map(|c| match c {
                    '\t' => "\t".to_string(),
                    c => " ".repeat(show(c).chars().count()),
                })
                .collect();
            let carets: usize = text
                .chars()
                .skip(before)
                .take(*width)
                .map(|c| show(c).chars().count())
                .sum();
            write!(f, "{pad} | {indent}{}", "^".repeat(carets.max(1)))?;
            match &self.label {
                Some(label) => writeln!(f, " {}", escape_controls(label))?,
                None => writeln!(f)?,
            }
        } else if let Some(label) = &self.label {
            writeln!(f, "  = note: {}", escape_controls(label))?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "  = help: {}", escape_controls(help))?;
        }
        Ok(())
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}")?;
        }
        let n = self.items.len();
        let files: std::collections::BTreeSet<_> = self.items.iter().map(|d| &d.file).collect();
        write!(
            f,
            "error: {n} problem{} found in {} file{}",
            if n == 1 { "" } else { "s" },
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        )
    }
}
