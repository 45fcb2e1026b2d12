//! deb822 paragraphs (Packages, Release, control files), read without copying: a paragraph
//! is a list of `(field, value)` slices of the input. Continuation lines stay in the value
//! (`"a,\n b"`), comments (`#` at the start of a line) are skipped, field names compare
//! case-insensitively as Debian policy 5.1 says.

/// One paragraph: its fields in order, and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paragraph<'a> {
    pub fields: Vec<(&'a str, &'a str)>,
    pub line: usize,
}

impl<'a> Paragraph<'a> {
    /// The value of `name` (case-insensitive), trimmed.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

/// Why a text is not deb822.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub(crate) struct Deb822Error {
    pub line: usize,
    pub reason: String,
}

/// The paragraphs of `text`, in order. Blank lines (only spaces and tabs) separate them.
pub(crate) fn paragraphs(text: &str) -> Paragraphs<'_> {
    Paragraphs {
        text,
        pos: 0,
        line: 1,
    }
}

/// Iterator over the paragraphs of a text; see [`paragraphs`].
pub(crate) struct Paragraphs<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Iterator for Paragraphs<'a> {
    type Item = Result<Paragraph<'a>, Deb822Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let text = self.text;
        let mut fields: Vec<(&'a str, &'a str)> = Vec::new();
        let mut start_line = 0;
        // (name, value start) of the field being read
        let mut open: Option<(&'a str, usize, usize)> = None;
        loop {
            if self.pos >= text.len() {
                break;
            }
            let end = text[self.pos..]
                .find('\n')
                .map_or(text.len(), |i| self.pos + i);
            let line = &text[self.pos..end];
            let line_start = self.pos;
            let line_no = self.line;
            self.pos = (end + 1).min(text.len().max(end + 1));
            self.line += 1;
            let blank = line.trim_matches([' ', '\t', '\r']).is_empty();
            if blank {
                if !fields.is_empty() || open.is_some() {
                    break;
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if open.is_none() {
                    return Some(Err(Deb822Error {
                        line: line_no,
                        reason: "a continuation line before any field".into(),
                    }));
                }
                if let Some((_, _, value_end)) = open.as_mut() {
                    *value_end = end;
                }
                continue;
            }
            if let Some((name, vs, ve)) = open.take() {
                fields.push((name, &text[vs..ve.max(vs)]));
            }
            let Some(colon) = line.find(':') else {
                return Some(Err(Deb822Error {
                    line: line_no,
                    reason: format!(
                        "`{}` is not `Field: value`",
                        line.chars().take(60).collect::<String>()
                    ),
                }));
            };
            let name = &line[..colon];
            if name.is_empty() || name.contains([' ', '\t']) {
                return Some(Err(Deb822Error {
                    line: line_no,
                    reason: format!("`{name}` is not a field name"),
                }));
            }
            if fields.is_empty() {
                start_line = line_no;
            }
            let value_start = line_start + colon + 1;
            open = Some((name, value_start, end));
        }
        if let Some((name, vs, ve)) = open.take() {
            if fields.is_empty() {
                start_line = start_line.max(1);
            }
            fields.push((name, &text[vs..ve.max(vs)]));
        }
        if fields.is_empty() {
            return None;
        }
        Some(Ok(Paragraph {
            fields,
            line: start_line,
        }))
    }
}

/// The lines of a list field (e.g. the `SHA256:` list of a Release file, whose first line
/// is empty), trimmed, blank ones skipped.
pub(crate) fn list_lines(value: &str) -> impl Iterator<Item = &str> {
    value
        .split('\n')
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_paragraphs_with_continuations_and_comments() {
        let text =
            "\n\nPackage: aa\nDepends: bb,\n cc (>= 1)\n# comment\nDescription: x\n more\n .\n\n\n\
                    Package: d\r\nVersion: 1\n";
        let ps: Vec<_> = paragraphs(text).collect::<Result<_, _>>().unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].line, 3);
        assert_eq!(ps[0].get("package"), Some("aa"));
        assert_eq!(ps[0].get("DEPENDS"), Some("bb,\n cc (>= 1)"));
        assert_eq!(ps[0].get("Description"), Some("x\n more\n ."));
        assert_eq!(ps[1].get("Version"), Some("1"));
        assert_eq!(ps[1].line, 12);
        assert_eq!(
            list_lines(ps[0].get("Depends").unwrap()).collect::<Vec<_>>(),
            ["bb,", "cc (>= 1)"]
        );
    }

    #[test]
    fn bad_lines_are_errors_with_their_line() {
        let e = paragraphs("Package: a\nnot a field\n")
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(e.line, 2);
        let e = paragraphs(" leading\n").next().unwrap().unwrap_err();
        assert_eq!(e.line, 1);
        assert!(paragraphs("").next().is_none());
        assert!(paragraphs("\n \n\t\n").next().is_none());
    }
}
