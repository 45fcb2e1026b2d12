//! Path lookup inside the image: symlinks followed as the kernel does, never above the root.

use super::*;

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// Why a path lookup failed, as the errno the kernel would give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lookup {
    /// `ENOENT`, at this (real) path.
    NotFound(String),
    /// `ENOTDIR`: this (real) path is a file but more components follow.
    NotDir(String),
    /// `ELOOP`.
    Loop,
}

pub(super) fn join_components(dir: &[String]) -> String {
    if dir.is_empty() {
        "/".to_string()
    } else {
        let mut s = String::new();
        for c in dir {
            s.push('/');
            s.push_str(c);
        }
        s
    }
}

/// Pushes the components of `path` onto a stack so that they pop in order. A trailing `/`
/// becomes a final `.`, which makes a file there fail with `ENOTDIR`, as in the kernel.
pub(super) fn push_components(stack: &mut Vec<String>, path: &str) {
    let mut comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if path.ends_with('/') && !comps.is_empty() {
        comps.push(".");
    }
    stack.extend(comps.into_iter().rev().map(str::to_string));
}

/// Kernel path walk inside the view (see [`resolve_path`]).
pub(super) fn resolve(view: &dyn FsView, path: &str) -> Result<String, Lookup> {
    if path.is_empty() {
        return Err(Lookup::NotFound(String::new()));
    }
    // `dir` only ever holds real directories, except a file as the very last component.
    let mut dir: Vec<String> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    push_components(&mut pending, path);
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                // `..` is physical: the parent of the resolved directory; the root is its own parent.
                dir.pop();
                continue;
            }
            _ => {}
        }
        dir.push(c);
        let here = join_components(&dir);
        match view.node(&here) {
            None => return Err(Lookup::NotFound(here)),
            Some(Node::Dir) => {}
            Some(Node::File { .. }) => {
                if !pending.is_empty() {
                    return Err(Lookup::NotDir(here));
                }
            }
            Some(Node::Symlink(target)) => {
                dir.pop();
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(Lookup::Loop);
                }
                if target.is_empty() {
                    return Err(Lookup::NotFound(here));
                }
                if target.starts_with('/') {
                    dir.clear();
                }
                push_components(&mut pending, &target);
            }
        }
    }
    Ok(join_components(&dir))
}

/// A path as the process sees it: relative ones are relative to the working directory, `/`.
pub(super) fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// `dir` + `/` + `name`, without doubling a slash.
pub(super) fn join_dir(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The directory part of a path string, as glibc computes `l_origin` (`/x` gives `/`).
pub(super) fn dirname(path: &str) -> String {
    match path.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => path[..i].to_string(),
        None => "/".to_string(),
    }
}

pub(super) fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// An environment variable; a later entry wins (ld.so keeps the last `LD_LIBRARY_PATH`, and
/// the runtime `setenv`s the entries in order).
pub(super) fn env_var<'e>(env: &'e [String], key: &str) -> Option<&'e str> {
    env.iter()
        .rev()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// The directories of a `PATH` value; an empty entry is the working directory, `/`.
pub(super) fn path_dirs(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in path.split(':') {
        let d = if d.is_empty() { "/" } else { d }.to_string();
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}
