//! A library package's dependency information, as dpkg-shlibdeps reads it: the `symbols`
//! control file (deb-symbols(5), parsed like `Dpkg::Shlibs::SymbolFile::parse`) and the
//! `shlibs` control file (deb-shlibs(5), looked up like `extract_from_shlibs` in
//! dpkg-shlibdeps).
//!
//! What is read of a `symbols` file and what is skipped:
//! - header lines `libfoo.so.1 libfoo1 #MINVER#` start an object; `| template` lines add
//!   alternative dependency templates (symbol lines pick one by their dep id); `* Field:
//!   value` meta lines are kept as fields;
//! - symbol lines ` name@VERSION minver [dep-id]`, and `#MISSING: v# name@V minver` /
//!   `#DEPRECATED: v# ...` lines (kept for the smallest version, never matched, as
//!   dpkg-shlibdeps does);
//! - tagged lines `(tag|tag=value)name@V minver`: `arch=` lists are applied to the package's
//!   architecture; patterns (`c++`, `regex`, `wildcard` tags) are skipped: matching them
//!   needs demangling or regexes over the library's own symbol table. A symbol only a pattern
//!   covers then counts with the soname's smallest version, which is lower than or equal to
//!   what dpkg-shlibdeps would compute;
//! - `#include` lines are skipped (a packaged symbols file has them expanded already);
//!   comments and blank lines are ignored.
//!
//! Nothing here panics on malformed text: a line that cannot be read is skipped and counted.

use std::collections::{BTreeMap, HashMap};

/// One object (soname) of a `symbols` file.
#[derive(Debug, Clone, Default)]
pub(crate) struct SymObject {
    /// Dependency templates: the header's (id 0), then each `|` alternative.
    pub deps: Vec<String>,
    /// `* Build-Depends-Package: ...` and other meta fields.
    pub fields: BTreeMap<String, String>,
    /// `name@version` → its entry.
    syms: HashMap<String, Sym>,
}

#[derive(Debug, Clone)]
struct Sym {
    minver: String,
    dep_id: usize,
    deprecated: bool,
}

/// A symbol found in a `symbols` file: the minimum version and the template it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found<'a> {
    pub minver: &'a str,
    pub template: &'a str,
}

impl SymObject {
    /// `Dpkg::Shlibs::SymbolFile::lookup_symbol` without deprecated symbols: `name` is
    /// `symbol@VERSION` (or `symbol@Base` for an unversioned one).
    pub(crate) fn lookup(&self, name: &str) -> Option<Found<'_>> {
        let s = self.syms.get(name).filter(|s| !s.deprecated)?;
        Some(Found {
            minver: &s.minver,
            template: self.deps.get(s.dep_id)?,
        })
    }

    /// `get_smallest_version`: the lowest minimum version among the symbols of template 0.
    pub(crate) fn smallest_version(&self) -> Option<&str> {
        self.syms
            .values()
            .filter(|s| s.dep_id == 0)
            .map(|s| s.minver.as_str())
            .min_by(|a, b| crate::repo::version::compare(a, b))
    }
}

/// A parsed `symbols` file: objects by soname, and how many lines were skipped.
#[derive(Debug, Clone, Default)]
pub(crate) struct SymbolsFile {
    pub objects: BTreeMap<String, SymObject>,
    /// Lines not understood or deliberately skipped (patterns, includes, other arches).
    pub skipped: usize,
}

/// Whether an `arch=` tag value (`amd64 i386` or `!armel !armhf`, also wildcards such as
/// `any-amd64`, taken loosely) applies to `arch`.
fn arch_applies(list: &str, arch: &str) -> bool {
    let items: Vec<&str> = list.split_whitespace().collect();
    let matches = |a: &str| a == arch || a == "any" || a.ends_with(&format!("-{arch}"));
    if items.iter().all(|a| a.starts_with('!')) {
        !items.iter().any(|a| matches(&a[1..]))
    } else {
        items.iter().any(|a| matches(a))
    }
}

/// Parses a symbol spec after the leading whitespace or `#MISSING: v#` marker.
fn parse_symbol(spec: &str, arch: &str) -> Option<(String, Sym)> {
    let mut rest = spec;
    if let Some(r) = rest.strip_prefix('(') {
        let close = r.find(')')?;
        for tag in r[..close].split('|') {
            let (name, value) = tag.split_once('=').unwrap_or((tag, ""));
            match name.trim() {
                "c++" | "regex" | "wildcard" => return None,
                "arch" if !arch_applies(value, arch) => return None,
                _ => {}
            }
        }
        rest = &r[close + 1..];
        // A quoted name after tags: `(c++)"Foo::bar()@Base" 1.0` (c++ is skipped above).
        if let Some(q) = rest.strip_prefix(['"', '\'']) {
            let quote = rest.as_bytes()[0] as char;
            let end = q.find(quote)?;
            let name = &q[..end];
            return minver_of(&q[end + 1..]).map(|s| (name.to_string(), s));
        }
    }
    let end = rest.find(char::is_whitespace)?;
    let name = &rest[..end];
    if name.is_empty() {
        return None;
    }
    minver_of(&rest[end..]).map(|s| (name.to_string(), s))
}

/// ` minver [dep-id]` as `parse_symbolspec` reads it (`^\s(\S+)(?:\s(\d+))?`).
fn minver_of(rest: &str) -> Option<Sym> {
    let rest = rest.strip_prefix(char::is_whitespace)?;
    let mut words = rest.split_whitespace();
    let minver = words.next()?.to_string();
    let dep_id = match words.next() {
        Some(w) if w.bytes().all(|b| b.is_ascii_digit()) => w.parse().ok()?,
        _ => 0,
    };
    Some(Sym {
        minver,
        dep_id,
        deprecated: false,
    })
}

/// Parses a `symbols` control file for a package of architecture `arch`.
pub(crate) fn parse_symbols(text: &str, arch: &str) -> SymbolsFile {
    let mut file = SymbolsFile::default();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (deprecated, spec) = if line.starts_with(char::is_whitespace) {
            (false, Some(line.trim_start()))
        } else if let Some(r) = line
            .strip_prefix("#MISSING: ")
            .or_else(|| line.strip_prefix("#DEPRECATED: "))
        {
            match r.split_once('#') {
                Some((_, s)) => (true, Some(s.trim_start())),
                None => {
                    file.skipped += 1;
                    continue;
                }
            }
        } else {
            (false, None)
        };
        if let Some(spec) = spec {
            let obj = current.as_ref().and_then(|c| file.objects.get_mut(c));
            match (obj, parse_symbol(spec, arch)) {
                (Some(obj), Some((name, mut sym))) => {
                    sym.deprecated = deprecated;
                    obj.syms.insert(name, sym);
                }
                _ => file.skipped += 1,
            }
        } else if line.is_empty() || line.starts_with('#') {
            // A comment, or `#include` (expanded already in a packaged file).
            if line.contains("#include") {
                file.skipped += 1;
            }
        } else if line.starts_with('(') && line.contains("#include") {
            file.skipped += 1;
        } else if let Some(alt) = line.strip_prefix('|') {
            match current.as_ref().and_then(|c| file.objects.get_mut(c)) {
                Some(obj) => obj.deps.push(alt.trim().to_string()),
                None => file.skipped += 1,
            }
        } else if let Some(meta) = line.strip_prefix('*') {
            let obj = current.as_ref().and_then(|c| file.objects.get_mut(c));
            match (obj, meta.split_once(':')) {
                (Some(obj), Some((k, v))) if !v.trim().is_empty() => {
                    obj.fields
                        .insert(k.trim().to_string(), v.trim().to_string());
                }
                _ => file.skipped += 1,
            }
        } else if let Some((soname, template)) = line.split_once(char::is_whitespace) {
            let template = template.trim().to_string();
            let obj = file.objects.entry(soname.to_string()).or_default();
            // A repeated header updates the templates only, as dpkg does.
            obj.deps = vec![template];
            current = Some(soname.to_string());
        } else {
            file.skipped += 1;
        }
    }
    file
}

/// `split_soname` of dpkg-shlibdeps: `libfoo.so.1` → (`libfoo`, `1`), `libfoo-1.2.so` →
/// (`libfoo`, `1.2`).
pub(crate) fn split_soname(soname: &str) -> Option<(&str, &str)> {
    if let Some(i) = soname.rfind(".so.") {
        return Some((&soname[..i], &soname[i + 4..]));
    }
    let stem = soname.strip_suffix(".so")?;
    let dash = stem
        .char_indices()
        .filter(|&(i, c)| c == '-' && stem[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
        .map(|(i, _)| i)
        .next_back()?;
    Some((&stem[..dash], &stem[dash + 1..]))
}

/// The dependency a `shlibs` file gives `soname` (`libname version dependency`), for a
/// binary package: an untyped line is a default a `deb:` line overrides; other types
/// (`udeb:`) are ignored. `Some("")` is a line without dependencies.
pub(crate) fn shlibs_dependency(text: &str, soname: &str) -> Option<String> {
    let (name, version) = split_soname(soname)?;
    let mut dep: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let mut rest = line;
        let mut kind = None;
        if let Some((first, after)) = rest.split_once(char::is_whitespace) {
            if let Some(k) = first.strip_suffix(':') {
                kind = Some(k);
                rest = after.trim_start();
            }
        }
        let mut words = rest.splitn(3, char::is_whitespace);
        let (Some(lib), Some(ver)) = (words.next(), words.next()) else {
            continue;
        };
        if lib != name || ver != version {
            continue;
        }
        let d = words.next().unwrap_or("").trim().to_string();
        match kind {
            Some("deb") => return Some(d),
            Some(_) => {}
            None => {
                dep.get_or_insert(d);
            }
        }
    }
    dep
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIBC: &str = "\
libc.so.6 libc6 #MINVER#
| libc6 (>> 2.36), libc6 (<< 2.37)
* Build-Depends-Package: libc-dev
 GLIBC_2.2.5@GLIBC_2.2.5 2.2.5
 GLIBC_PRIVATE@GLIBC_PRIVATE 0 1
 __libc_enable_secure@GLIBC_PRIVATE 0 1
 puts@GLIBC_2.2.5 2.2.5
 __libc_start_main@GLIBC_2.34 2.34
 (arch=armel armhf)__aeabi_x@GLIBC_2.4 2.4
 (arch=!armel !armhf)only_here@GLIBC_2.3 2.3
 (c++)\"foo()@Base\" 2.0
 (regex)\"^bar.*@Base$\" 2.0
#MISSING: 2.30# gone@GLIBC_2.0 2.0
libm.so.6 libc6 #MINVER#
 sin@GLIBC_2.2.5 2.2.5
";

    #[test]
    fn symbols_files_read_like_dpkg() {
        let f = parse_symbols(LIBC, "amd64");
        let c = &f.objects["libc.so.6"];
        assert_eq!(
            c.deps,
            vec!["libc6 #MINVER#", "libc6 (>> 2.36), libc6 (<< 2.37)"]
        );
        assert_eq!(c.fields["Build-Depends-Package"], "libc-dev");
        let found = c.lookup("__libc_start_main@GLIBC_2.34").unwrap();
        assert_eq!((found.minver, found.template), ("2.34", "libc6 #MINVER#"));
        let private = c.lookup("__libc_enable_secure@GLIBC_PRIVATE").unwrap();
        assert_eq!(private.template, "libc6 (>> 2.36), libc6 (<< 2.37)");
        // other architectures' symbols and patterns are not there; deprecated ones never match
        assert!(c.lookup("__aeabi_x@GLIBC_2.4").is_none());
        assert!(c.lookup("only_here@GLIBC_2.3").is_some());
        assert!(c.lookup("gone@GLIBC_2.0").is_none());
        assert_eq!(f.skipped, 3);
        // the smallest version counts only template 0 (the GLIBC_PRIVATE ones are id 1), and
        // deprecated symbols too, as get_smallest_version does
        assert_eq!(c.smallest_version(), Some("2.0"));
        assert_eq!(f.objects["libm.so.6"].smallest_version(), Some("2.2.5"));
        let armel = parse_symbols(LIBC, "armel");
        assert!(armel.objects["libc.so.6"]
            .lookup("__aeabi_x@GLIBC_2.4")
            .is_some());
    }

    #[test]
    fn hostile_symbols_text_does_not_panic() {
        for text in [
            " orphan@Base 1.0\n",
            "(\n",
            " (unclosed\n",
            "libx.so.1 libx1 #MINVER#\n (tag)\"unterminated 1\n ()\n x\n |\n*\n* :\n",
            "\u{0}\u{ff}\r\n|alt\n",
            "#MISSING: no-hash\n",
        ] {
            let f = parse_symbols(text, "amd64");
            assert!(f.skipped > 0, "{text:?}");
        }
    }

    #[test]
    fn sonames_split_like_dpkg() {
        assert_eq!(split_soname("libc.so.6"), Some(("libc", "6")));
        assert_eq!(split_soname("libssl.so.3"), Some(("libssl", "3")));
        assert_eq!(split_soname("libfoo-1.2.so"), Some(("libfoo", "1.2")));
        assert_eq!(split_soname("libbar-baz-3.so"), Some(("libbar-baz", "3")));
        assert_eq!(split_soname("libmemusage.so"), None);
        assert_eq!(
            split_soname("ld-linux-x86-64.so.2"),
            Some(("ld-linux-x86-64", "2"))
        );
    }

    #[test]
    fn shlibs_lines_typed_and_untyped() {
        let text = "# comment\nlibz 1 zlib1g (>= 1:1.2.3.3.dfsg-1)\nudeb: libz 1 zlib1g-udeb (>= 1:1.2.3.3.dfsg-1)\nlibfoo 2\n";
        assert_eq!(
            shlibs_dependency(text, "libz.so.1").as_deref(),
            Some("zlib1g (>= 1:1.2.3.3.dfsg-1)")
        );
        assert_eq!(shlibs_dependency(text, "libz.so.2"), None);
        assert_eq!(shlibs_dependency(text, "libfoo.so.2").as_deref(), Some(""));
        let typed = "libq 1 libq1\ndeb: libq 1 libq1 (>= 2)\n";
        assert_eq!(
            shlibs_dependency(typed, "libq.so.1").as_deref(),
            Some("libq1 (>= 2)")
        );
        assert_eq!(shlibs_dependency("garbage\n:\n: :\n", "libq.so.1"), None);
    }
}
