//! Checks on what dpkg will execute: maintainer scripts (read at validation time, so that
//! `validate` refuses what `package` or dpkg would fail on) and systemd unit names (they
//! are written into the generated maintainer scripts, so only systemd's own characters
//! are allowed). Paths are resolved by `validate.rs`; this file only looks at contents and
//! names and returns messages with a fix.

use crate::diag::escape_controls;
use std::path::Path;

/// Unit types dh_installsystemd installs, with their leading dot.
pub(super) const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".timer",
    ".path",
    ".target",
    ".mount",
    ".automount",
    ".slice",
];

/// systemd's longest unit name (`UNIT_NAME_MAX`).
const UNIT_NAME_MAX: usize = 255;

/// A problem: what is wrong, and how to fix it.
pub(super) struct Problem {
    pub message: String,
    pub help: String,
}

fn problem(message: String, help: impl Into<String>) -> Problem {
    Problem {
        message,
        help: help.into(),
    }
}

/// A character as a message shows it: backticked when printable, its code point otherwise.
fn show(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        c if c.is_control() || c.is_whitespace() => format!("U+{:04X}", c as u32),
        c => format!("`{c}`"),
    }
}

/// systemd's unit-name rules (`unit_name_is_valid`): letters, digits and `:-_.\@`, a
/// name before the type suffix (and before any `@`), a known type, at most 255 bytes.
pub(super) fn check_unit_name(name: &str) -> Result<(), Problem> {
    let shown = escape_controls(name);
    let help = "name the unit file with letters, digits and `:-_.\\@` only, e.g. \
                `backend.service` or the template `backend@.service`";
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":-_.\\@".contains(*c)))
    {
        return Err(problem(
            format!(
                "`{shown}` is not a valid systemd unit name: it contains {}",
                show(c)
            ),
            help,
        ));
    }
    if name.len() > UNIT_NAME_MAX {
        return Err(problem(
            format!(
                "the unit name `{shown}` is {} bytes long: systemd allows at most {UNIT_NAME_MAX}",
                name.len()
            ),
            "shorten the unit file's name",
        ));
    }
    let Some(suffix) = UNIT_SUFFIXES
        .iter()
        .find(|s| name.rsplit_once('.').is_some_and(|(_, t)| t == &s[1..]))
    else {
        return Err(problem(
            format!("`{shown}` is not a systemd unit name: it must end with a unit type"),
            format!("use one of {}", UNIT_SUFFIXES.join(", ")),
        ));
    };
    let prefix = &name[..name.len() - suffix.len()];
    if prefix.is_empty() || prefix.starts_with('@') {
        return Err(problem(
            format!("`{shown}` is not a valid systemd unit name: it has no name before `{suffix}`"),
            help,
        ));
    }
    Ok(())
}

/// The first line of a text, for messages.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// The bytes of `full` (shown as `rel`, described as `what`).
pub(super) fn read(full: &Path, rel: &Path, what: &str) -> Result<Vec<u8>, Problem> {
    std::fs::read(full).map_err(|e| {
        problem(
            format!("could not read {what} `{}`: {e}", rel.display()),
            "check the file's permissions",
        )
    })
}

/// The line of the first byte that is not UTF-8, for messages.
pub(super) fn invalid_utf8_line(bytes: &[u8], e: &std::str::Utf8Error) -> usize {
    bytes[..e.valid_up_to()]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A maintainer script must be something dpkg can execute and builder can merge the
/// generated snippets into: UTF-8 text starting with `#!` (no byte order mark), LF line
/// endings (with CRLF the interpreter would be `/bin/sh\r`, which dpkg reports as "No such
/// file or directory").
pub(super) fn check_script(full: &Path, rel: &Path, what: &str) -> Result<(), Problem> {
    let shown = rel.display();
    let bytes = read(full, rel, what)?;
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(problem(
            format!(
                "{what} `{shown}` starts with a UTF-8 byte order mark before `#!`, so it cannot be executed"
            ),
            format!("save it without the mark, e.g. `sed -i '1s/^\\xEF\\xBB\\xBF//' {shown}`"),
        ));
    }
    if !bytes.starts_with(b"#!") {
        return Err(problem(
            format!("{what} `{shown}` must start with a `#!` line"),
            "make the first line the interpreter, e.g. `#!/bin/sh`",
        ));
    }
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = invalid_utf8_line(&bytes, &e);
            return Err(problem(
                format!(
                    "{what} `{shown}` is not UTF-8 text (invalid byte on line {line}): builder merges the systemd snippets into it as text"
                ),
                format!("convert it to UTF-8, e.g. `iconv -f latin1 -t utf-8 {shown}`"),
            ));
        }
    };
    if let Some(at) = text.find("\r\n") {
        let line = line_of(text, at);
        let why = if line == 1 {
            let interpreter = text[2..at].trim();
            format!(
                ": dpkg would run the interpreter `{}\\r`, which does not exist",
                escape_controls(interpreter)
            )
        } else {
            String::new()
        };
        return Err(problem(
            format!("{what} `{shown}` has CRLF line endings: line {line} ends in a carriage return{why}"),
            format!("convert to LF line endings, e.g. `sed -i 's/\\r$//' {shown}`"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_follow_systemd() {
        for ok in [
            "backend.service",
            "backend@.service",
            "getty@tty1.service",
            "dev-disk-by\\x2dlabel.mount",
            "a:b_c-d.timer",
            "x.slice",
        ] {
            assert!(check_unit_name(ok).is_ok(), "{ok}");
        }
        let long = format!("{}.service", "a".repeat(248));
        assert_eq!(long.len(), 256);
        for bad in [
            "x'$(touch PWNED)'.service",
            "a b.service",
            ".service",
            "@.service",
            "@x.service",
            "backend",
            "backend.conf",
            "bäckend.service",
            "a\nb.service",
            long.as_str(),
        ] {
            assert!(check_unit_name(bad).is_err(), "{bad:?}");
        }
        let e = check_unit_name("a b.service").unwrap_err();
        assert!(e.message.contains("contains a space"), "{}", e.message);
    }

    #[test]
    fn scripts_must_be_executable_utf8_with_lf_endings() {
        let dir = tempfile::tempdir().unwrap();
        let check = |bytes: &[u8]| {
            let p = dir.path().join("s");
            std::fs::write(&p, bytes).unwrap();
            check_script(&p, Path::new("s"), "the postinst script").map_err(|e| e.message)
        };
        assert!(check(b"#!/bin/sh\nset -e\n#DEBHELPER#\n").is_ok());
        let crlf = check(b"#!/bin/sh\r\nset -e\r\n").unwrap_err();
        assert!(crlf.contains("line 1 ends in a carriage return"), "{crlf}");
        assert!(crlf.contains("`/bin/sh\\r`"), "{crlf}");
        assert!(check(b"#!/bin/sh\nset -e\r\n")
            .unwrap_err()
            .contains("line 2"));
        assert!(check(b"\xEF\xBB\xBF#!/bin/sh\n")
            .unwrap_err()
            .contains("byte order mark"));
        assert!(check(b"set -e\n").unwrap_err().contains("`#!`"));
        assert!(check(b"").unwrap_err().contains("`#!`"));
        assert!(check(b"#!/bin/sh\n\necho caf\xe9\n")
            .unwrap_err()
            .contains("not UTF-8 text (invalid byte on line 3)"));
    }
}
