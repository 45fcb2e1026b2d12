//! Checks of single stack values that reach HAProxy's configuration, a container's
//! environment, DNS names or a request line: environment references, service names, HTTP
//! paths, environment keys and values. Used by the file's validation and by the command-line
//! overrides alike.

use crate::diag::escape_controls;

/// `{name}` references in an environment value; `{{` and `}}` are literal braces.
pub(crate) fn references(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => {
                            return Err(format!("unclosed `{{` in `{}`", escape_controls(value)))
                        }
                    }
                }
                out.push(name);
            }
            '}' => {
                return Err(format!(
                    "unmatched `}}` in `{}`; write `}}}}` for a literal brace",
                    escape_controls(value)
                ))
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Replaces `{name}` with `lookup(name)`; `{{`/`}}` become single braces. Only called on
/// values whose references were validated.
pub(crate) fn expand(value: &str, lookup: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                out.push_str(&lookup(&name));
            }
            c => out.push(c),
        }
    }
    out
}

/// Longest service name. A replica's container is named
/// `builder-smoke-<run id>-<service>-<replica>` and HAProxy finds it by that name through
/// Docker's DNS, where one label holds at most 63 bytes (RFC 1035 §2.3.4): 63 minus
/// `builder-smoke-` (14), the run id (18, [`crate::docker::new_run_id`]), two `-` and the
/// replica number (2 digits, [`super::MAX_REPLICAS`]).
pub(crate) const MAX_SERVICE_NAME: usize = 63 - 14 - 18 - 2 - 2;

pub(super) fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_SERVICE_NAME
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A character as a message names it: backticked when printable, its code point otherwise.
pub(super) fn char_name(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        c if c.is_control() || c.is_whitespace() => format!("U+{:04X}", c as u32),
        c => format!("`{c}`"),
    }
}

/// `c` percent-encoded (its UTF-8 bytes), e.g. `%22` for `"`.
pub(super) fn percent_encoded(c: char) -> String {
    let mut buf = [0; 4];
    c.encode_utf8(&mut buf)
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect()
}

/// Longest HTTP path accepted: well inside HAProxy's 16 KiB buffer for a health-check request.
pub(crate) const MAX_HTTP_PATH: usize = 4096;

/// What an HTTP path in the stack is used as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PathUse {
    /// A request target (health check, load path): `?query` allowed.
    Target,
    /// A `path_beg` prefix: HAProxy's `path` has no query string, so neither may the prefix.
    Prefix,
}

/// Why `p` is not an origin-form request target (RFC 9112 §3.2.1: `absolute-path [ "?"
/// query ]`, RFC 3986 `pchar`s and `/`, `?` in the query), as (problem, fix); `None` if it is.
/// Refuses exactly what could end an HAProxy word or line or a request line: spaces, quotes,
/// `#`, `\`, control characters, NUL, non-ASCII.
pub(super) fn http_path_problem(p: &str, what: PathUse) -> Option<(String, String)> {
    let example = match what {
        PathUse::Target => "`/api/items?limit=10`",
        PathUse::Prefix => "`/api/`",
    };
    if p.is_empty() {
        return Some((
            "is empty".into(),
            format!("write an absolute path, e.g. {example}"),
        ));
    }
    if p.len() > MAX_HTTP_PATH {
        return Some((
            format!("is {} bytes long", p.len()),
            format!("write at most {MAX_HTTP_PATH} bytes"),
        ));
    }
    let chars: Vec<char> = p.chars().collect();
    if chars[0] != '/' {
        return Some((
            format!("starts with {}, not `/`", char_name(chars[0])),
            format!("write an absolute path, e.g. {example}"),
        ));
    }
    let mut in_query = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        let ok = c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/".contains(c);
        match c {
            _ if ok => {}
            '%' => {
                let hex = |j: usize| chars.get(j).is_some_and(char::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return Some((
                        format!("has a `%` at character {at} that does not start a percent-escape"),
                        "a `%` must be followed by two hex digits (`%2F`); write `%25` for a literal `%`"
                            .into(),
                    ));
                }
                i += 2;
            }
            '?' if what == PathUse::Prefix => {
                return Some((
                    format!("has a `?` at character {at}"),
                    "HAProxy matches `path_prefix` against the path without its query string, so a prefix with `?` never matches; remove the query, or write `%3F` for a literal `?`".into(),
                ));
            }
            '?' => in_query = true,
            '#' => {
                return Some((
                    format!("has a `#` at character {at}"),
                    "`#` starts a fragment, which is never sent to a server; write `%23` if it belongs to the path".into(),
                ));
            }
            c => {
                let part = if in_query {
                    "an HTTP query"
                } else {
                    "an HTTP path"
                };
                return Some((
                    format!(
                        "has {} at character {at}, which cannot appear in {part}",
                        char_name(c)
                    ),
                    format!("percent-encode it as `{}`", percent_encoded(c)),
                ));
            }
        }
        i += 1;
    }
    None
}

/// Why `k` is not a portable environment variable name (`[A-Za-z_][A-Za-z0-9_]*`, POSIX.1
/// §8.1), `None` if it is. `=` would split the `KEY=VALUE` pair Docker is given elsewhere.
pub(super) fn env_key_problem(k: &str) -> Option<String> {
    let Some(first) = k.chars().next() else {
        return Some("is empty".into());
    };
    if let Some((i, c)) = k
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Some(format!("has {} at character {}", char_name(c), i + 1));
    }
    first
        .is_ascii_digit()
        .then(|| "starts with a digit".to_string())
}

pub(super) const ENV_KEY_HELP: &str =
    "an environment variable name is letters, digits and `_`, not starting with a digit, e.g. `BACKEND_URL`";

/// Why an environment value cannot be given to a container, `None` if it can. Docker refuses
/// a NUL (the environment is C strings); newlines are fine in a container's environment and
/// never reach a configuration file, so multi-line values are allowed.
pub(super) fn env_value_problem(v: &str) -> Option<String> {
    v.chars()
        .position(|c| c == '\0')
        .map(|i| format!("has a NUL (U+0000) at character {}", i + 1))
}
