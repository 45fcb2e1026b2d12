//! `#!` lines, parsed as Linux `fs/binfmt_script.c` does.

use super::*;

// ---------------------------------------------------------------------------------------------
// #! scripts
// ---------------------------------------------------------------------------------------------

/// The interpreter and optional argument of a `#!` line, exactly as Linux's
/// `fs/binfmt_script.c` (5.x+) parses the first [`BINPRM_BUF_SIZE`] bytes. `None` if the
/// kernel would refuse it (`ENOEXEC`). Assumes `head` starts with `#!`.
pub(super) fn parse_shebang(head: &[u8]) -> Option<(String, Option<String>)> {
    // The kernel's buffer is zero-filled past the end of a short file.
    let mut buf = [0u8; BINPRM_BUF_SIZE];
    let n = head.len().min(BINPRM_BUF_SIZE);
    buf[..n].copy_from_slice(&head[..n]);
    let spacetab = |c: u8| c == b' ' || c == b'\t';
    // Both helpers scan [first, last], inclusive, like the kernel's.
    let next_non_spacetab = |first: usize, last: usize| (first..=last).find(|&i| !spacetab(buf[i]));
    let next_terminator =
        |first: usize, last: usize| (first..=last).find(|&i| spacetab(buf[i]) || buf[i] == 0);
    let buf_end = BINPRM_BUF_SIZE - 1;

    // strnchr stops at a NUL.
    let newline = buf
        .iter()
        .take_while(|&&c| c != 0)
        .position(|&c| c == b'\n');
    let mut i_end = match newline {
        Some(i) => i,
        None => {
            let first = next_non_spacetab(2, buf_end)?;
            // No terminator after it: the interpreter path may be cut off.
            next_terminator(first, buf_end)?;
            buf_end
        }
    };
    while i_end > 0 && spacetab(buf[i_end - 1]) {
        i_end -= 1;
    }
    if i_end < 2 {
        return None;
    }
    let i_name = next_non_spacetab(2, i_end)?;
    if i_name == i_end {
        return None;
    }
    let i_sep = next_terminator(i_name, i_end);
    let i_arg = match i_sep {
        Some(s) if buf[s] != 0 => next_non_spacetab(s, i_end),
        _ => None,
    };
    // The kernel writes NULs at i_end and i_sep; strings also stop at any earlier NUL.
    let cstr = |from: usize, to: usize| {
        let bytes = &buf[from..to];
        let len = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..len]).into_owned()
    };
    let name = cstr(i_name, i_sep.unwrap_or(i_end).min(i_end));
    let arg = i_arg.filter(|&a| a < i_end).map(|a| cstr(a, i_end));
    Some((name, arg.filter(|a| !a.is_empty())))
}

/// The command `env` runs for a `#!/usr/bin/env ARG` line, `None` when this check cannot
/// tell (options other than `-S`). Linux passes `ARG` as one argument, so `python3 -u` is
/// looked up as a command named `python3 -u`, as env does; `-S` splits it.
pub(super) fn env_command(arg: &str) -> Option<String> {
    let split = arg
        .strip_prefix("--split-string=")
        .or_else(|| arg.strip_prefix("-S"));
    if let Some(rest) = split {
        return rest
            .split_whitespace()
            .find(|w| !w.contains('='))
            .filter(|w| !w.starts_with('-'))
            .map(str::to_string);
    }
    if arg.starts_with('-') || arg.contains('=') {
        return None;
    }
    Some(arg.to_string())
}
