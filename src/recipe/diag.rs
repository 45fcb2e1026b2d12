//! Compiler-style diagnostics for TOML files (recipes, base images, the stack): every error
//! names the file, line and column, shows the offending line with a caret, and says how to
//! fix it. Also the shared TOML entry point [`parse_toml`] used for every config file.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::Diagnostics;

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
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
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

/// Reads a config file (`what` is e.g. "recipe") as UTF-8 text. Invalid UTF-8 is a
/// diagnostic at the line and column of the first bad byte, not a bare I/O error.
pub fn read_text(file: &Path, what: &str) -> Result<String, Diagnostics> {
    let bytes = std::fs::read(file).map_err(|e| {
        let d = Diagnostic::in_file(
            file,
            format!("could not read {what} `{}`: {e}", file.display()),
        );
        Diagnostics::new(vec![d])
    })?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let bad = bytes.get(at).copied().unwrap_or_default();
            // The text before the bad byte is valid, so offsets up to it are unchanged.
            let lossy = String::from_utf8_lossy(&bytes);
            let d = Diagnostic::at(
                file,
                &lossy,
                at..at + 1,
                format!("the {what} is not UTF-8 text: byte 0x{bad:02X} cannot start or continue a UTF-8 character"),
            )
            .label("not UTF-8")
            .help(format!(
                "TOML files are UTF-8: save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 {0} > {0}.new`, then rename it",
                file.display()
            ));
            Err(Diagnostics::new(vec![d]))
        }
    }
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Parses a TOML document into `T`. Syntax errors (all of them), unknown keys (with a
/// suggestion) and type errors become diagnostics with file, line and column.
pub fn parse_toml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, Diagnostics> {
    let (_, errors) = toml::de::DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(Diagnostics::new(
            errors
                .iter()
                .map(|e| toml_error(file, text, e, "this is not valid TOML"))
                .collect(),
        ));
    }
    // serde stops at the first unknown key. To report all of them, blank out each unknown
    // entry (keeping byte offsets, so later spans stay right) and try again.
    let mut work = text.to_string();
    let mut found = Vec::new();
    for _ in 0..64 {
        match toml::from_str::<T>(&work) {
            Ok(value) if found.is_empty() => return Ok(value),
            Ok(_) => break,
            Err(e) => {
                let unknown = e.message().starts_with("unknown field");
                let blank = match (unknown, e.span()) {
                    (true, Some(span)) => entry_range(&work, span),
                    _ => None,
                };
                found.push(toml_error(file, text, &e, "invalid value"));
                match blank {
                    Some(range) => blank_out(&mut work, range),
                    None => break,
                }
            }
        }
    }
    Err(Diagnostics::new(found))
}

/// The byte range of the whole `key = value` entry (or `[table]` with its body) whose key
/// starts at `key_span`, from the start of its line.
fn entry_range(text: &str, key_span: Range<usize>) -> Option<Range<usize>> {
    fn walk(table: &toml::de::DeTable<'_>, key_start: usize) -> Option<Range<usize>> {
        for (k, v) in table.iter() {
            if k.span().start == key_start {
                return Some(k.span().start..v.span().end.max(k.span().end));
            }
            if let Some(r) = walk_value(v.get_ref(), key_start) {
                return Some(r);
            }
        }
        None
    }
    fn walk_value(v: &toml::de::DeValue<'_>, key_start: usize) -> Option<Range<usize>> {
        match v {
            toml::de::DeValue::Table(t) => walk(t, key_start),
            toml::de::DeValue::Array(a) => {
                a.iter().find_map(|e| walk_value(e.get_ref(), key_start))
            }
            _ => None,
        }
    }
    let parsed = toml::de::DeTable::parse(text).ok()?;
    let range = walk(parsed.get_ref(), key_span.start)?;
    let line_start = text[..range.start].rfind('\n').map_or(0, |i| i + 1);
    if text[line_start..].trim_start().starts_with('[') {
        // A `[table]` header: blank the header and its body, up to the next header.
        let mut end = text.len();
        let mut offset = text[line_start..]
            .find('\n')
            .map_or(text.len(), |i| line_start + i + 1);
        while offset < text.len() {
            let line_end = text[offset..]
                .find('\n')
                .map_or(text.len(), |i| offset + i + 1);
            if text[offset..line_end].trim_start().starts_with('[') {
                end = offset;
                break;
            }
            offset = line_end;
        }
        return Some(line_start..end);
    }
    Some(line_start..range.end)
}

/// Replaces a range with spaces, keeping newlines, so offsets and line numbers do not move.
fn blank_out(text: &mut String, range: Range<usize>) {
    let replaced: String = text[range.clone()]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    text.replace_range(range, &replaced);
}

/// Turns a toml error into a diagnostic, rewording serde's messages into advice.
pub fn toml_error(file: &Path, text: &str, err: &toml::de::Error, fallback: &str) -> Diagnostic {
    let raw = err.message().trim().to_string();
    let (message, label, help) = reword(&raw);
    let message = if message.is_empty() {
        fallback.to_string()
    } else {
        message
    };
    let mut d = match err.span() {
        Some(span) => Diagnostic::at(file, text, span, message),
        None => Diagnostic::in_file(file, message),
    };
    d.label = label;
    d.help = help;
    d
}

/// serde says "unknown field `nmae`, expected one of `name`, `version`"; we say which key is
/// wrong, suggest the closest one and list the valid ones.
fn reword(raw: &str) -> (String, Option<String>, Option<String>) {
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        if let Some((key, tail)) = rest.split_once('`') {
            let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
            let label = did_you_mean(key, &expected).map(|s| format!("did you mean `{s}`?"));
            let help = if expected.is_empty() {
                "remove this key".to_string()
            } else {
                format!("valid keys here: {}", expected.join(", "))
            };
            return (format!("unknown key `{key}`"), label, Some(help));
        }
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        if let Some((key, _)) = rest.split_once('`') {
            return (
                format!("missing required key `{key}`"),
                None,
                Some(format!("add `{key} = ...` to this table")),
            );
        }
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        if let Some((v, tail)) = rest.split_once('`') {
            let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
            let label = did_you_mean(v, &expected).map(|s| format!("did you mean `{s}`?"));
            return (
                format!("unknown value `{v}`"),
                label,
                Some(format!("use one of: {}", expected.join(", "))),
            );
        }
    }
    (raw.to_string(), None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        name: String,
        version: Option<String>,
    }

    #[test]
    fn unknown_key_has_position_and_suggestion() {
        let text = "name = \"a\"\nverison = \"1\"\n";
        let err = parse_toml::<T>(Path::new("r.toml"), text).unwrap_err();
        let d = &err.items()[0];
        assert_eq!((d.line, d.col), (2, 1));
        let out = err.to_string();
        assert!(out.contains("unknown key `verison`"), "{out}");
        assert!(out.contains("did you mean `version`?"), "{out}");
        assert!(out.contains("r.toml:2:1"), "{out}");
    }

    #[test]
    fn every_unknown_key_is_reported() {
        let text = "nmae = \"a\"\nverison = \"1\"\nname = \"b\"\n";
        let err = parse_toml::<T>(Path::new("r.toml"), text).unwrap_err();
        let lines: Vec<_> = err.items().iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![1, 2], "{err}");
    }

    #[test]
    fn hidden_characters_are_escaped_and_the_caret_follows() {
        assert_eq!(escape_controls("plain /etc/x"), "plain /etc/x");
        assert_eq!(
            escape_controls("a\u{1b}[31mb\u{9b}c\u{202e}d\ne"),
            "a\\u{1b}[31mb\\u{9b}c\\u{202e}d\\ne"
        );
        let text = "to = \"\u{1b}x\"\n";
        let at = text.find('x').unwrap();
        let d = Diagnostic::at(Path::new("r\u{7}.toml"), text, at..at + 1, "bad `\u{1b}x`")
            .label("here\u{0}")
            .help("fix\r");
        let out = d.to_string();
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(out.contains("error: bad `\\u{1b}x`"), "{out}");
        assert!(out.contains("--> r\\u{7}.toml:1:8"), "{out}");
        // `\u{1b}` takes 6 columns on screen: the caret stays under `x`.
        assert!(
            out.contains("1 | to = \"\\u{1b}x\"\n  |             ^ here\\u{0}"),
            "{out}"
        );
        assert!(out.contains("help: fix\\r"), "{out}");
    }

    #[test]
    fn line_index_agrees_with_counting() {
        let text = "a\nbc\r\n\nd";
        let lines = LineIndex::new(text);
        for offset in 0..=text.len() {
            let line = text[..offset].matches('\n').count() + 1;
            let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
            assert_eq!(lines.line_of(offset), (line, start), "offset {offset}");
        }
    }

    #[test]
    fn invalid_utf8_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.toml");
        std::fs::write(&file, b"a = 1\nb = \"\xc3\x28\"\n").unwrap();
        let err = read_text(&file, "recipe").unwrap_err();
        let d = &err.items()[0];
        assert_eq!((d.line, d.col), (2, 6));
        assert!(d.message.contains("byte 0xC3"), "{}", d.message);
    }

    #[test]
    fn syntax_errors_are_all_reported() {
        let text = "name = \n[x\n";
        let err = parse_toml::<T>(Path::new("r.toml"), text).unwrap_err();
        assert!(!err.is_empty());
        assert!(err.items()[0].line >= 1);
    }
}
