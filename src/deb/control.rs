//! The `control` file: rendering ordered fields (with Installed-Size inserted) and parsing a
//! deb822 stanza back. Multi-line values keep their continuation lines verbatim
//! (`"short\n long line\n .\n more"`), so parse(render(fields)) gives the fields back.

use super::DebError;

fn bad(reason: impl Into<String>) -> DebError {
    DebError::BadControl {
        path: None,
        reason: reason.into(),
    }
}

fn check_name(name: &str) -> Result<(), DebError> {
    let ok = !name.is_empty()
        && !name.starts_with(['#', '-'])
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "`{name}` is not a valid field name (ASCII letters, digits and `-`, no `:`, \
             not starting with `#` or `-`)"
        )))
    }
}

fn check_value(name: &str, value: &str) -> Result<(), DebError> {
    let mut lines = value.split('\n');
    let first = lines.next().unwrap_or_default();
    if first.trim().is_empty() && !value.contains('\n') {
        return Err(bad(format!("field `{name}` is empty")));
    }
    for line in lines {
        if !line.starts_with([' ', '\t']) {
            return Err(bad(format!(
                "continuation line `{line}` of field `{name}` must start with a space"
            )));
        }
        if line.trim().is_empty() {
            return Err(bad(format!(
                "field `{name}` has an empty continuation line; write ` .` for a blank line"
            )));
        }
    }
    Ok(())
}

/// Renders the control file: fields in order, `Installed-Size` inserted after `Maintainer`
/// (or after `Architecture` without one, or last).
pub(crate) fn render_control(
    fields: &[(String, String)],
    installed_size_kib: u64,
) -> Result<String, DebError> {
    let mut out = String::new();
    for required in ["Package", "Version", "Architecture"] {
        if !fields.iter().any(|(k, _)| k.eq_ignore_ascii_case(required)) {
            return Err(bad(format!("the `{required}` field is missing")));
        }
    }
    let find = |name: &str| {
        fields
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(name))
    };
    let insert_after = find("Maintainer")
        .or_else(|| find("Architecture"))
        .unwrap_or(fields.len() - 1);
    let mut seen = std::collections::HashSet::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        check_name(name)?;
        if name.eq_ignore_ascii_case("Installed-Size") {
            return Err(bad(
                "Installed-Size is computed by builder from the data files; do not set it",
            ));
        }
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(bad(format!("field `{name}` appears twice")));
        }
        check_value(name, value)?;
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value.trim_start_matches([' ', '\t']));
        out.push('\n');
        if i == insert_after {
            out.push_str(&format!("Installed-Size: {installed_size_kib}\n"));
        }
    }
    Ok(out)
}

/// Parses one deb822 stanza (a .deb's control file). Leading blank lines are skipped;
/// anything after the first blank line that ends the stanza is an error.
pub fn parse_control(text: &str) -> Result<Vec<(String, String)>, DebError> {
    let mut fields: Vec<(String, String)> = Vec::new();
    // Lowercased names: a linear duplicate check (200,000 fields took minutes when quadratic).
    let mut seen = std::collections::HashSet::new();
    let mut ended_at = None;
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.trim_end();
        if line.is_empty() {
            if !fields.is_empty() && ended_at.is_none() {
                ended_at = Some(lineno);
            }
            continue;
        }
        if let Some(end) = ended_at {
            return Err(bad(format!(
                "line {lineno}: a second stanza starts after the blank line {end}; a control \
                 file holds one"
            )));
        }
        if line.starts_with([' ', '\t']) {
            let Some((_, value)) = fields.last_mut() else {
                return Err(bad(format!(
                    "line {lineno}: continuation line before any field"
                )));
            };
            value.push('\n');
            value.push_str(line);
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(format!(
                "line {lineno}: `{line}` is neither `Field: value` nor a continuation line"
            )));
        };
        check_name(name).map_err(|e| bad(format!("line {lineno}: {}", strip(e))))?;
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(bad(format!("line {lineno}: field `{name}` appears twice")));
        }
        fields.push((name.to_string(), value.trim().to_string()));
    }
    if fields.is_empty() {
        return Err(bad("the control file is empty"));
    }
    if !fields
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("Package"))
    {
        return Err(bad("the `Package` field is missing"));
    }
    Ok(fields)
}

fn strip(e: DebError) -> String {
    match e {
        DebError::BadControl { reason, .. } => reason,
        other => other.to_string(),
    }
}
