//! Dynamic string tokens (`$ORIGIN`, `$LIB`, `$PLATFORM`) in search paths.

use super::*;

// ---------------------------------------------------------------------------------------------
// Dynamic string tokens
// ---------------------------------------------------------------------------------------------

/// The length of `$NAME`/`${NAME}` at the start of `input` (after the `$`), as glibc's `is_dst`.
pub(super) fn dst_len(input: &str, name: &str) -> Option<usize> {
    if let Some(rest) = input.strip_prefix('{') {
        rest.strip_prefix(name)?
            .starts_with('}')
            .then_some(name.len() + 2)
    } else {
        let rest = input.strip_prefix(name)?;
        match rest.bytes().next() {
            Some(c) if c.is_ascii_alphanumeric() || c == b'_' => None,
            _ => Some(name.len()),
        }
    }
}

/// Expands `$ORIGIN`, `$PLATFORM`, `$LIB` as glibc's `_dl_dst_substitute`; `None` when a
/// known token has no value (ld.so then drops the path). Unknown `$NAME`s stay literal.
pub(super) fn expand_dst(s: &str, origin: &str, abi: &Abi) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let tokens = [
            ("ORIGIN", Some(origin)),
            ("PLATFORM", abi.platform),
            ("LIB", abi.lib),
        ];
        match tokens
            .iter()
            .find_map(|(name, value)| Some((dst_len(after, name)?, *value)))
        {
            Some((len, Some(value))) => {
                out.push_str(value);
                rest = &after[len..];
            }
            Some((_, None)) => return None,
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Some(out)
}

/// A search path list (RPATH, RUNPATH: `:`; LD_LIBRARY_PATH: `:` or `;`) as glibc's
/// `fillin_rpath` makes it: tokens expanded, empty entries the working directory (`/`),
/// trailing slashes dropped, duplicates removed.
pub(super) fn search_list(list: &str, seps: &[char], origin: &str, abi: &Abi) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    for part in list.split(|c| seps.contains(&c)) {
        let dir = if part.is_empty() {
            "/".to_string()
        } else {
            match expand_dst(part, origin, abi) {
                Some(d) if !d.is_empty() => absolute(&d),
                _ => continue,
            }
        };
        let trimmed = dir.trim_end_matches('/');
        let dir = if trimmed.is_empty() { "/" } else { trimmed }.to_string();
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}
