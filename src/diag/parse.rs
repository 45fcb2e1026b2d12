//! The one way a config file is read ([`read_text`]) and parsed ([`parse_toml`]): invalid
//! UTF-8, every TOML syntax error and every unknown key become diagnostics with positions;
//! serde's wording is turned into advice.

use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::{did_you_mean, Diagnostic, Diagnostics};

/// Reads a config file (`what` is e.g. "recipe") as UTF-8 text. Invalid UTF-8 is a
/// diagnostic at the line and column of the first bad byte, not a bare I/O error.
pub(crate) fn read_text(file: &Path, what: &str) -> Result<String, Diagnostics> {
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

/// Parses a TOML document into `T`. Syntax errors (all of them), unknown keys (with a
/// suggestion) and type errors become diagnostics with file, line and column.
pub(crate) fn parse_toml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, Diagnostics> {
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
pub(super) fn toml_error(
    file: &Path,
    text: &str,
    err: &toml::de::Error,
    fallback: &str,
) -> Diagnostic {
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
